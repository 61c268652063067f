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
    for kind in ["initContainers", "containers", "ephemeralContainers"] {
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
    ephemeral_causes(spec, path, &mut out);
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
        volume_source_causes(v, &format!("{path}.volumes[{i}]"), out);
    }
    names
}

/// The volume sources in the order kube's `validateVolumeSource` counts them.
pub(crate) const VOLUME_SOURCES: [&str; 30] = [
    "emptyDir",
    "hostPath",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flocker",
    "persistentVolumeClaim",
    "rbd",
    "quobyte",
    "cinder",
    "cephfs",
    "downwardAPI",
    "fc",
    "flexVolume",
    "configMap",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "azureDisk",
    "storageos",
    "scaleIO",
    "csi",
    "ephemeral",
    "image",
];

/// kube's `validateVolumeSource` for the checks clients hit: exactly one source, the names
/// and paths the common sources need, and projected ServiceAccount tokens' lifetimes.
fn volume_source_causes(v: &Value, p: &str, out: &mut Vec<Cause>) {
    let set: Vec<&str> = VOLUME_SOURCES
        .iter()
        .copied()
        .filter(|k| v.get(*k).is_some_and(|x| !x.is_null()))
        .collect();
    match set.as_slice() {
        [] => {
            out.push(Cause::required(p, "must specify a volume type"));
            return;
        }
        [_] => {}
        [_, rest @ ..] => {
            for k in rest {
                out.push(super::forbidden(
                    &format!("{p}.{k}"),
                    "may not specify more than 1 volume type",
                ));
            }
        }
    }
    let empty = |x: &Value| x.as_str().unwrap_or_default().is_empty();
    if v.get("hostPath").is_some_and(|h| empty(&h["path"])) {
        out.push(Cause::required(&format!("{p}.hostPath.path"), ""));
    }
    if v.get("persistentVolumeClaim")
        .is_some_and(|c| empty(&c["claimName"]))
    {
        out.push(Cause::required(
            &format!("{p}.persistentVolumeClaim.claimName"),
            "",
        ));
    }
    if v.get("secret").is_some_and(|c| empty(&c["secretName"])) {
        out.push(Cause::required(&format!("{p}.secret.secretName"), ""));
    }
    if v.get("configMap").is_some_and(|c| empty(&c["name"])) {
        out.push(Cause::required(&format!("{p}.configMap.name"), ""));
    }
    let sources = v["projected"]["sources"].as_array().into_iter().flatten();
    for (j, src) in sources.enumerate() {
        let Some(t) = src.get("serviceAccountToken").filter(|t| !t.is_null()) else {
            continue;
        };
        let tp = format!("{p}.projected.sources[{j}].serviceAccountToken");
        if let Some(secs) = t["expirationSeconds"].as_i64() {
            if secs < 600 {
                out.push(invalid_num(
                    &format!("{tp}.expirationSeconds"),
                    secs,
                    "may not specify a duration less than 10 minutes",
                ));
            } else if secs > 1 << 32 {
                out.push(invalid_num(
                    &format!("{tp}.expirationSeconds"),
                    secs,
                    "may not specify a duration larger than 2^32 seconds",
                ));
            }
        }
        if empty(&t["path"]) {
            out.push(Cause::required(&format!("{tp}.path"), ""));
        }
    }
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

/// The fields an ephemeral container may not set (kube's `validateEphemeralContainers`
/// allows a list of fields; these are the others that exist in v1.33).
const EPHEMERAL_FORBIDDEN: [&str; 8] = [
    "ports",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
];

/// kube's `validateEphemeralContainers` beyond what every container gets: no lifecycle,
/// probes, ports or resources, and a `targetContainerName` naming a (init) container.
fn ephemeral_causes(spec: &Value, path: &str, out: &mut Vec<Cause>) {
    let others: HashSet<&str> = ["initContainers", "containers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    let ephemeral = spec["ephemeralContainers"].as_array().into_iter().flatten();
    for (i, c) in ephemeral.enumerate() {
        let p = format!("{path}.ephemeralContainers[{i}]");
        for f in EPHEMERAL_FORBIDDEN {
            let set = match c.get(f) {
                None | Some(Value::Null) => false,
                Some(Value::Object(m)) => !m.is_empty(),
                Some(Value::Array(a)) => !a.is_empty(),
                Some(Value::String(s)) => !s.is_empty(),
                Some(_) => true,
            };
            if set {
                out.push(super::forbidden(
                    &format!("{p}.{f}"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
        if let Some(t) = c["targetContainerName"].as_str().filter(|t| !t.is_empty()) {
            if !others.contains(t) {
                out.push(not_found(&format!("{p}.targetContainerName"), t));
            }
        }
    }
}

/// kube's `ValidatePodCreate` beyond the spec: ephemeral containers come only through the
/// `ephemeralcontainers` subresource.
pub(crate) fn pod_create_causes(pod: &Value) -> Vec<Cause> {
    match pod["spec"]["ephemeralContainers"].as_array() {
        Some(a) if !a.is_empty() => vec![super::forbidden(
            "spec.ephemeralContainers",
            "cannot be set on create",
        )],
        _ => Vec::new(),
    }
}

/// What kube's `ValidatePodUpdate` lists as the spec fields an update may change.
const UPDATABLE_POD_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// A diff of two pod specs for kube's "pod updates may not change" message (kube prints
/// `cmp.Diff` of the Go structs; this prints the differing fields as JSON in that layout).
fn spec_diff(old: &Value, new: &Value) -> String {
    let mut keys: Vec<&String> = old
        .as_object()
        .into_iter()
        .chain(new.as_object())
        .flat_map(|m| m.keys())
        .collect();
    keys.sort();
    keys.dedup();
    let mut out = String::from("  core.PodSpec{\n");
    for k in keys {
        let (o, n) = (old.get(k), new.get(k));
        if o == n {
            continue;
        }
        if let Some(o) = o {
            out.push_str(&format!("- \t{k}: {o},\n"));
        }
        if let Some(n) = n {
            out.push_str(&format!("+ \t{k}: {n},\n"));
        }
    }
    out.push_str("  }\n");
    out
}

/// kube's `ValidatePodUpdate` of the spec (`old` and `new` are whole, defaulted pods):
/// only the containers' images, `activeDeadlineSeconds` (set or lowered),
/// `terminationGracePeriodSeconds` (to 1 from a negative value), added tolerations and
/// removed scheduling gates may change; anything else is one Forbidden cause on `spec`.
pub(crate) fn pod_update_causes(old: &Value, new: &Value) -> Vec<Cause> {
    let (o, n) = (&old["spec"], &new["spec"]);
    let mut out = Vec::new();
    let mut munged = n.clone();
    if !munged.is_object() {
        return out;
    }
    for kind in ["containers", "initContainers"] {
        let len = |v: &Value| v[kind].as_array().map_or(0, Vec::len);
        if len(o) != len(n) {
            out.push(super::forbidden(
                &format!("spec.{kind}"),
                "pod updates may not add or remove containers",
            ));
            return out;
        }
    }
    for kind in ["containers", "initContainers"] {
        let olds = o[kind].as_array().map(Vec::as_slice).unwrap_or_default();
        if let Some(news) = munged[kind].as_array_mut() {
            if news.len() == olds.len() {
                for (nc, oc) in news.iter_mut().zip(olds) {
                    if nc.is_object() {
                        nc["image"] = oc["image"].clone();
                    }
                }
            }
        }
    }
    let deadline = "spec.activeDeadlineSeconds";
    match (
        o["activeDeadlineSeconds"].as_i64(),
        &n["activeDeadlineSeconds"],
    ) {
        (_, Value::Number(v)) => {
            let v = v.as_i64().unwrap_or(-1);
            if !(0..=i64::from(i32::MAX)).contains(&v) {
                out.push(invalid_num(
                    deadline,
                    v,
                    "must be between 0 and 2147483647, inclusive",
                ));
            } else if o["activeDeadlineSeconds"]
                .as_i64()
                .is_some_and(|was| was < v)
            {
                out.push(invalid_num(
                    deadline,
                    v,
                    "must be less than or equal to previous value",
                ));
            }
        }
        (Some(_), _) => out.push(super::invalid_raw(
            deadline,
            "null",
            "must not update from a positive integer to nil value",
        )),
        (None, _) => {}
    }
    munged["activeDeadlineSeconds"] = o["activeDeadlineSeconds"].clone();
    let grace = "terminationGracePeriodSeconds";
    if o[grace].as_i64().is_some_and(|g| g < 0) && n[grace].as_i64() == Some(1) {
        munged[grace] = o[grace].clone();
    }
    // Tolerations: only additions (an existing one may only lower its tolerationSeconds).
    let new_tols = n["tolerations"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for t in o["tolerations"].as_array().into_iter().flatten() {
        let kept = new_tols.iter().any(|nt| {
            let mut a = nt.clone();
            let mut b = t.clone();
            let lowered = match (
                a["tolerationSeconds"].as_i64(),
                b["tolerationSeconds"].as_i64(),
            ) {
                (Some(x), Some(y)) => x <= y,
                (x, y) => x == y,
            };
            for v in [&mut a, &mut b] {
                if let Some(m) = v.as_object_mut() {
                    m.remove("tolerationSeconds");
                }
            }
            a == b && lowered
        });
        if !kept {
            out.push(super::forbidden(
                "spec.tolerations",
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            break;
        }
    }
    munged["tolerations"] = o["tolerations"].clone();
    // Scheduling gates: only removals.
    let gates =
        |v: &Value| -> Vec<Value> { v["schedulingGates"].as_array().cloned().unwrap_or_default() };
    if gates(n).iter().all(|g| gates(o).contains(g)) {
        munged["schedulingGates"] = o["schedulingGates"].clone();
    }
    // Unset fields compare as absent.
    let strip = |v: &mut Value| {
        if let Some(m) = v.as_object_mut() {
            m.retain(|_, x| !x.is_null());
        }
    };
    let mut old_spec = o.clone();
    strip(&mut munged);
    strip(&mut old_spec);
    if munged != old_spec {
        out.push(super::forbidden(
            "spec",
            &format!(
                "pod updates may not change fields other than {UPDATABLE_POD_FIELDS}\n{}",
                spec_diff(&old_spec, &munged)
            ),
        ));
    }
    out
}

/// kube's `ValidatePodEphemeralContainersUpdate`: existing ephemeral containers may be
/// neither removed nor changed (the new ones are checked with the rest of the spec).
pub(crate) fn ephemeral_update_causes(old: &Value, new: &Value) -> Vec<Cause> {
    let path = "spec.ephemeralContainers";
    let news = new["spec"]["ephemeralContainers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut out = Vec::new();
    for oc in old["spec"]["ephemeralContainers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = oc["name"].as_str().unwrap_or_default();
        match news.iter().find(|c| c["name"].as_str() == Some(name)) {
            None => out.push(super::forbidden(
                path,
                &format!("existing ephemeral containers {name:?} may not be removed\n"),
            )),
            Some(nc) if nc != oc => out.push(super::forbidden(
                path,
                &format!(
                    "existing ephemeral containers {name:?} may not be changed\n{}",
                    spec_diff(oc, nc).replace("core.PodSpec", "core.EphemeralContainer")
                ),
            )),
            Some(_) => {}
        }
    }
    out
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

    fn pod(spec: serde_json::Value) -> Value {
        serde_json::json!({"metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn pod_updates_change_only_images_deadlines_and_added_tolerations() {
        let old = pod(serde_json::json!({
            "containers": [{"name": "app", "image": "a:1", "ports": [{"containerPort": 80}]}],
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
        }));
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = serde_json::json!("a:2");
        new["spec"]["activeDeadlineSeconds"] = serde_json::json!(60);
        new["spec"]["tolerations"][0]["tolerationSeconds"] = serde_json::json!(10);
        new["spec"]["tolerations"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"key": "x", "operator": "Exists"}));
        assert!(pod_update_causes(&old, &new).is_empty());

        let mut ports = old.clone();
        ports["spec"]["containers"][0]["ports"][0]["containerPort"] = serde_json::json!(81);
        let c = pod_update_causes(&old, &ports);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].field, "spec");
        assert!(c[0].message.starts_with(
            "Forbidden: pod updates may not change fields other than `spec.containers[*].image`"
        ));
        assert!(c[0].message.contains("containers"), "{}", c[0].message);

        let mut removed = old.clone();
        removed["spec"]["tolerations"] = serde_json::json!([]);
        let c = pod_update_causes(&old, &removed);
        assert_eq!(c[0].field, "spec.tolerations");

        let mut more = old.clone();
        more["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "b", "image": "b"}));
        let c = pod_update_causes(&old, &more);
        assert_eq!(
            c[0].message,
            "Forbidden: pod updates may not add or remove containers"
        );

        let mut raised = new.clone();
        raised["spec"]["activeDeadlineSeconds"] = serde_json::json!(61);
        let c = pod_update_causes(&new, &raised);
        assert_eq!(c[0].field, "spec.activeDeadlineSeconds");
        assert!(c[0]
            .message
            .ends_with("must be less than or equal to previous value"));
    }

    #[test]
    fn ephemeral_containers_are_added_never_changed() {
        let base = pod(serde_json::json!({"containers": [{"name": "app", "image": "a"}]}));
        assert_eq!(pod_create_causes(&base).len(), 0);
        let mut with = base.clone();
        with["spec"]["ephemeralContainers"] =
            serde_json::json!([{"name": "dbg", "image": "busybox", "targetContainerName": "app"}]);
        assert_eq!(
            pod_create_causes(&with)[0].message,
            "Forbidden: cannot be set on create"
        );
        assert!(ephemeral_update_causes(&base, &with).is_empty());
        assert!(pod_spec_causes(&with["spec"], "spec").is_empty());

        let mut changed = with.clone();
        changed["spec"]["ephemeralContainers"][0]["image"] = serde_json::json!("other");
        let c = ephemeral_update_causes(&with, &changed);
        assert!(c[0]
            .message
            .starts_with("Forbidden: existing ephemeral containers \"dbg\" may not be changed"));
        let c = ephemeral_update_causes(&with, &base);
        assert!(c[0].message.contains("may not be removed"));

        let mut bad = with.clone();
        bad["spec"]["ephemeralContainers"][0]["ports"] = serde_json::json!([{"containerPort": 1}]);
        bad["spec"]["ephemeralContainers"][0]["targetContainerName"] = serde_json::json!("nope");
        bad["spec"]["ephemeralContainers"][0]["resources"] = serde_json::json!({});
        let fields: Vec<String> = pod_spec_causes(&bad["spec"], "spec")
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.ephemeralContainers[0].ports",
                "spec.ephemeralContainers[0].targetContainerName"
            ]
        );
        let mut dup = with.clone();
        dup["spec"]["ephemeralContainers"][0]["name"] = serde_json::json!("app");
        let c = pod_spec_causes(&dup["spec"], "spec");
        assert_eq!(c[0].field, "spec.ephemeralContainers[0].name");
    }

    #[test]
    fn volume_sources_as_kube_checks_them() {
        let spec = serde_json::json!({
            "containers": [{"name": "c", "image": "i"}],
            "volumes": [
                {"name": "none"},
                {"name": "two", "emptyDir": {}, "configMap": {"name": "x"}},
                {"name": "tok", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 599}},
                    {"serviceAccountToken": {"path": "", "expirationSeconds": 3600}}
                ]}},
                {"name": "hp", "hostPath": {"path": ""}},
                {"name": "ok", "secret": {"secretName": "s"}},
            ],
        });
        let c: Vec<(String, String)> = pod_spec_causes(&spec, "spec")
            .into_iter()
            .map(|c| (c.field, c.message))
            .collect();
        let want = [
            (
                "spec.volumes[0]",
                "Required value: must specify a volume type",
            ),
            (
                "spec.volumes[1].configMap",
                "Forbidden: may not specify more than 1 volume type",
            ),
            (
                "spec.volumes[2].projected.sources[0].serviceAccountToken.expirationSeconds",
                "Invalid value: 599: may not specify a duration less than 10 minutes",
            ),
            (
                "spec.volumes[2].projected.sources[1].serviceAccountToken.path",
                "Required value",
            ),
            ("spec.volumes[3].hostPath.path", "Required value"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(f, m)| (f.to_string(), m.to_string()))
            .collect();
        assert_eq!(c, want);
    }
}
