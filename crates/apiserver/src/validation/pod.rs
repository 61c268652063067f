//! Pod specs as kube's `ValidatePodSpec` checks them
//! (`k8s.io/kubernetes/pkg/apis/core/validation`): containers (names, images, ports, volume
//! mounts, env, resources, pull and termination-message policies), volumes, `restartPolicy`
//! and `dnsPolicy`. Paths are given from the object's root (`spec.containers[0].image` for a
//! Pod, `spec.template.spec.…` for a workload's template).

use std::collections::HashSet;

use serde_json::Value;

use super::{
    duplicate, invalid_num, is_dns_label, not_found, not_supported, port_name_errors,
    DNS1123_LABEL_MSG, PORT_NUM_MSG,
};
use crate::admission::quantity;
use crate::status::Cause;

const PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];

/// A pod template (`template` of a workload or PodTemplate): its labels' match is the
/// caller's; here its pod spec.
pub(crate) fn template_causes(template: &Value, path: &str) -> Vec<Cause> {
    if template.is_null() {
        return vec![Cause::required(path, "")];
    }
    pod_spec_causes(&template["spec"], &format!("{path}.spec"))
}

/// `ValidatePodSpec`'s checks of `spec` (at `path`).
pub(crate) fn pod_spec_causes(spec: &Value, path: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    let volumes = volume_causes(spec, path, &mut out);
    let containers = spec["containers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if containers.is_empty() {
        out.push(Cause::required(&format!("{path}.containers"), ""));
    }
    let mut names = HashSet::new();
    for kind in ["initContainers", "containers"] {
        for (i, c) in spec[kind].as_array().into_iter().flatten().enumerate() {
            container_causes(
                c,
                &format!("{path}.{kind}[{i}]"),
                &volumes,
                &mut names,
                &mut out,
            );
        }
    }
    if let Some(p) = spec["restartPolicy"].as_str() {
        match p {
            "Always" | "OnFailure" | "Never" => {}
            "" => out.push(Cause::required(&format!("{path}.restartPolicy"), "")),
            _ => out.push(not_supported(
                &format!("{path}.restartPolicy"),
                p,
                &["Always", "OnFailure", "Never"],
            )),
        }
    }
    if let Some(p) = spec["dnsPolicy"].as_str() {
        let valid = ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"];
        if !valid.contains(&p) {
            out.push(not_supported(&format!("{path}.dnsPolicy"), p, &valid));
        }
    }
    if let Some(n) = spec["activeDeadlineSeconds"].as_i64() {
        if n < 1 {
            out.push(invalid_num(
                &format!("{path}.activeDeadlineSeconds"),
                n,
                "must be between 1 and 2147483647, inclusive",
            ));
        }
    }
    if let Some(sel) = spec.get("nodeSelector").filter(|s| s.is_object()) {
        for (k, v) in sel.as_object().into_iter().flatten() {
            let v = v.as_str().unwrap_or_default();
            for e in super::qualified_name_errors(k) {
                out.push(Cause::invalid(&format!("{path}.nodeSelector"), k, &e));
            }
            for e in super::label_value_errors(v) {
                out.push(Cause::invalid(&format!("{path}.nodeSelector"), v, &e));
            }
        }
    }
    out
}

/// The volumes' names (each a unique DNS-1123 label); returns them for the mounts' check.
fn volume_causes(spec: &Value, path: &str, out: &mut Vec<Cause>) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, v) in spec["volumes"].as_array().into_iter().flatten().enumerate() {
        let p = format!("{path}.volumes[{i}].name");
        let name = v["name"].as_str().unwrap_or_default();
        if name.is_empty() {
            out.push(Cause::required(&p, ""));
        } else if !is_dns_label(name) {
            out.push(Cause::invalid(&p, name, DNS1123_LABEL_MSG));
        } else if !names.insert(name.to_string()) {
            out.push(duplicate(&p, name));
        }
    }
    names
}

fn container_causes(
    c: &Value,
    p: &str,
    volumes: &HashSet<String>,
    names: &mut HashSet<String>,
    out: &mut Vec<Cause>,
) {
    let name = c["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        out.push(Cause::required(&format!("{p}.name"), ""));
    } else if !is_dns_label(name) {
        out.push(Cause::invalid(
            &format!("{p}.name"),
            name,
            DNS1123_LABEL_MSG,
        ));
    } else if !names.insert(name.to_string()) {
        out.push(duplicate(&format!("{p}.name"), name));
    }
    if c["image"].as_str().unwrap_or_default().trim().is_empty() {
        out.push(Cause::required(&format!("{p}.image"), ""));
    }
    port_causes(c, p, out);
    let mut mount_paths = HashSet::new();
    for (j, m) in c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let mp = format!("{p}.volumeMounts[{j}]");
        let name = m["name"].as_str().unwrap_or_default();
        if name.is_empty() {
            out.push(Cause::required(&format!("{mp}.name"), ""));
        } else if !volumes.contains(name) {
            out.push(not_found(&format!("{mp}.name"), name));
        }
        let mount_path = m["mountPath"].as_str().unwrap_or_default();
        if mount_path.is_empty() {
            out.push(Cause::required(&format!("{mp}.mountPath"), ""));
        } else if !mount_paths.insert(mount_path.to_string()) {
            out.push(Cause::invalid(
                &format!("{mp}.mountPath"),
                mount_path,
                "must be unique",
            ));
        }
    }
    for (j, e) in c["env"].as_array().into_iter().flatten().enumerate() {
        if e["name"].as_str().unwrap_or_default().is_empty() {
            out.push(Cause::required(&format!("{p}.env[{j}].name"), ""));
        }
    }
    if let Some(policy) = c["imagePullPolicy"].as_str() {
        let valid = ["Always", "IfNotPresent", "Never"];
        if !valid.contains(&policy) {
            out.push(not_supported(
                &format!("{p}.imagePullPolicy"),
                policy,
                &valid,
            ));
        }
    }
    if let Some(policy) = c["terminationMessagePolicy"].as_str() {
        let valid = ["FallbackToLogsOnError", "File"];
        if !valid.contains(&policy) {
            out.push(not_supported(
                &format!("{p}.terminationMessagePolicy"),
                policy,
                &valid,
            ));
        }
    }
    resource_causes(&c["resources"], &format!("{p}.resources"), out);
}

/// `validateContainerPorts`: numbers in range, unique names, known protocols.
fn port_causes(c: &Value, p: &str, out: &mut Vec<Cause>) {
    let mut port_names = HashSet::new();
    for (j, port) in c["ports"].as_array().into_iter().flatten().enumerate() {
        let pp = format!("{p}.ports[{j}]");
        if let Some(name) = port["name"].as_str().filter(|n| !n.is_empty()) {
            for e in port_name_errors(name) {
                out.push(Cause::invalid(&format!("{pp}.name"), name, e));
            }
            if !port_names.insert(name.to_string()) {
                out.push(duplicate(&format!("{pp}.name"), name));
            }
        }
        match port["containerPort"].as_i64().unwrap_or(0) {
            0 => out.push(Cause::required(&format!("{pp}.containerPort"), "")),
            n if !(1..=65535).contains(&n) => {
                out.push(invalid_num(&format!("{pp}.containerPort"), n, PORT_NUM_MSG))
            }
            _ => {}
        }
        if let Some(n) = port["hostPort"].as_i64().filter(|n| *n != 0) {
            if !(1..=65535).contains(&n) {
                out.push(invalid_num(&format!("{pp}.hostPort"), n, PORT_NUM_MSG));
            }
        }
        if let Some(proto) = port["protocol"].as_str() {
            if !PROTOCOLS.contains(&proto) {
                out.push(not_supported(&format!("{pp}.protocol"), proto, &PROTOCOLS));
            }
        }
    }
}

/// `ValidateResourceRequirements`: quantities parse, none negative, requests ≤ limits.
fn resource_causes(r: &Value, p: &str, out: &mut Vec<Cause>) {
    for part in ["limits", "requests"] {
        for (name, v) in r[part].as_object().into_iter().flatten() {
            let path = format!("{p}.{part}[{name}]");
            match quantity::of(v) {
                None => out.push(Cause::invalid(
                    &path,
                    &v.as_str().map(String::from).unwrap_or_else(|| v.to_string()),
                    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                )),
                Some(q) if q.milli < 0 => {
                    out.push(Cause::invalid(&path, &q.to_string(), super::IS_NEGATIVE_MSG))
                }
                Some(_) => {}
            }
        }
    }
    for (name, req) in r["requests"].as_object().into_iter().flatten() {
        let (Some(req), Some(limit)) = (
            quantity::of(req),
            r["limits"].get(name).and_then(quantity::of),
        ) else {
            continue;
        };
        if req.milli > limit.milli {
            out.push(Cause::invalid(
                &format!("{p}.requests"),
                &req.to_string(),
                &format!("must be less than or equal to {name} limit of {limit}"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(spec: Value) -> Vec<String> {
        pod_spec_causes(&spec, "spec")
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn a_valid_spec_has_no_causes() {
        let spec = json!({"restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
            "volumes": [{"name": "data", "emptyDir": {}}],
            "containers": [{"name": "web", "image": "busybox:1.35",
                "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "1"}}}]});
        assert_eq!(lines(spec), Vec::<String>::new());
    }

    #[test]
    fn kube_messages_for_a_broken_spec() {
        let spec = json!({"restartPolicy": "Sometimes",
            "containers": [
                {"name": "c", "image": "busybox", "volumeMounts": [{"name": "nope", "mountPath": "/x"}],
                 "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}},
                {"name": "c", "image": "", "ports": [{"containerPort": 70000, "protocol": "ICMP"}]}]});
        assert_eq!(
            lines(spec),
            vec![
                "spec.containers[0].volumeMounts[0].name: Not found: \"nope\"",
                "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
                "spec.containers[1].name: Duplicate value: \"c\"",
                "spec.containers[1].image: Required value",
                "spec.containers[1].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.containers[1].ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ]
        );
        assert_eq!(lines(json!({})), vec!["spec.containers: Required value"]);
    }
}
