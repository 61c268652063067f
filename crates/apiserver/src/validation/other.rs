//! Ingresses (`ValidateIngressSpec`), HorizontalPodAutoscalers (`ValidateHorizontalPodAutoscaler`)
//! and PodDisruptionBudgets (`ValidatePodDisruptionBudgetSpec`) as kube checks them.

use serde_json::Value;

use super::{invalid_num, invalid_raw, name_errors, not_supported, NameRule, IS_NEGATIVE_MSG};
use crate::status::Cause;

const PATH_TYPES: [&str; 3] = ["Exact", "ImplementationSpecific", "Prefix"];

/// An `IngressBackend` at `p`: a service (name and a port name or number) or a resource.
fn backend_causes(b: &Value, p: &str, out: &mut Vec<Cause>) {
    let (svc, res) = (&b["service"], &b["resource"]);
    match (svc.is_null(), res.is_null()) {
        (false, false) => out.push(invalid_raw(
            p,
            "\"\"",
            "cannot set both service and resource backends",
        )),
        (true, true) => out.push(invalid_raw(
            p,
            "\"\"",
            "resource or service backend is required",
        )),
        (false, true) => {
            let name = svc["name"].as_str().unwrap_or_default();
            if name.is_empty() {
                out.push(Cause::required(&format!("{p}.service.name"), ""));
            } else {
                for e in name_errors(name, NameRule::Dns1035) {
                    out.push(Cause::invalid(&format!("{p}.service.name"), name, &e));
                }
            }
            let port = &svc["port"];
            let (named, number) = (port["name"].as_str(), port["number"].as_i64());
            match (named.filter(|n| !n.is_empty()), number.filter(|n| *n != 0)) {
                (Some(_), Some(_)) => out.push(invalid_raw(
                    &format!("{p}.service.port"),
                    "\"\"",
                    "cannot set both port name & port number",
                )),
                (None, None) => out.push(invalid_raw(
                    &format!("{p}.service.port"),
                    "\"\"",
                    "port name or number is required",
                )),
                (None, Some(n)) if !(1..=65535).contains(&n) => out.push(invalid_num(
                    &format!("{p}.service.port.number"),
                    n,
                    super::PORT_NUM_MSG,
                )),
                _ => {}
            }
        }
        (true, false) => {}
    }
}

/// `ValidateIngressSpec`: rules or a default backend; hosts are DNS names (a leading `*.`
/// allowed), paths absolute with a known `pathType`, backends complete.
pub(crate) fn ingress_causes(obj: &Value) -> Vec<Cause> {
    let spec = &obj["spec"];
    let mut out = Vec::new();
    let rules = spec["rules"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if rules.is_empty() && spec["defaultBackend"].is_null() {
        out.push(invalid_raw(
            "spec",
            "[]networking.IngressRule(nil)",
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if !spec["defaultBackend"].is_null() {
        backend_causes(&spec["defaultBackend"], "spec.defaultBackend", &mut out);
    }
    for (i, rule) in rules.iter().enumerate() {
        let rp = format!("spec.rules[{i}]");
        if let Some(host) = rule["host"].as_str().filter(|h| !h.is_empty()) {
            if host.parse::<std::net::IpAddr>().is_ok() {
                out.push(Cause::invalid(
                    &format!("{rp}.host"),
                    host,
                    "must be a DNS name, not an IP address",
                ));
            } else {
                let bare = host.strip_prefix("*.").unwrap_or(host);
                for e in name_errors(bare, NameRule::Subdomain) {
                    out.push(Cause::invalid(&format!("{rp}.host"), host, &e));
                }
            }
        }
        for (j, path) in rule["http"]["paths"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let pp = format!("{rp}.http.paths[{j}]");
            match path["pathType"].as_str() {
                None | Some("") => out.push(Cause::required(
                    &format!("{pp}.pathType"),
                    "pathType must be specified",
                )),
                Some(t) if !PATH_TYPES.contains(&t) => {
                    out.push(not_supported(&format!("{pp}.pathType"), t, &PATH_TYPES))
                }
                Some(_) => {}
            }
            // ImplementationSpecific may leave the path empty; a given path is absolute.
            let value = path["path"].as_str().unwrap_or_default();
            let optional = path["pathType"] == "ImplementationSpecific" && value.is_empty();
            if !optional && !value.starts_with('/') {
                out.push(Cause::invalid(
                    &format!("{pp}.path"),
                    value,
                    "must be an absolute path",
                ));
            }
            backend_causes(&path["backend"], &format!("{pp}.backend"), &mut out);
        }
    }
    out
}

/// `ValidateHorizontalPodAutoscaler`'s spec checks: replica bounds, the target reference,
/// positive utilisation targets.
pub(crate) fn hpa_causes(obj: &Value) -> Vec<Cause> {
    let spec = &obj["spec"];
    let mut out = Vec::new();
    let min = spec["minReplicas"].as_i64();
    if let Some(m) = min.filter(|m| *m < 1) {
        out.push(invalid_num(
            "spec.minReplicas",
            m,
            "must be greater than or equal to 1",
        ));
    }
    let max = spec["maxReplicas"].as_i64().unwrap_or(0);
    if max < 1 {
        out.push(invalid_num(
            "spec.maxReplicas",
            max,
            "must be greater than 0",
        ));
    }
    if min.is_some_and(|m| m > max && max >= 1) {
        out.push(invalid_num(
            "spec.maxReplicas",
            max,
            "must be greater than or equal to `minReplicas`",
        ));
    }
    for key in ["kind", "name"] {
        if spec["scaleTargetRef"][key]
            .as_str()
            .unwrap_or_default()
            .is_empty()
        {
            out.push(Cause::required(&format!("spec.scaleTargetRef.{key}"), ""));
        }
    }
    for (i, m) in spec["metrics"].as_array().into_iter().flatten().enumerate() {
        for source in ["resource", "containerResource"] {
            if let Some(u) = m[source]["target"]["averageUtilization"].as_i64() {
                if u < 1 {
                    out.push(invalid_num(
                        &format!("spec.metrics[{i}].{source}.target.averageUtilization"),
                        u,
                        "must be greater than 0",
                    ));
                }
            }
        }
    }
    // autoscaling/v1's single target.
    if let Some(u) = spec["targetCPUUtilizationPercentage"].as_i64() {
        if u < 1 {
            out.push(invalid_num(
                "spec.targetCPUUtilizationPercentage",
                u,
                "must be greater than 0",
            ));
        }
    }
    out
}

/// An int-or-percent of a disruption budget: ≥ 0, at most 100 %.
fn int_or_percent(v: &Value, p: &str, out: &mut Vec<Cause>) {
    match v {
        Value::Number(n) => {
            if let Some(n) = n.as_i64().filter(|n| *n < 0) {
                out.push(invalid_num(p, n, IS_NEGATIVE_MSG));
            }
        }
        Value::String(s) => match s.strip_suffix('%').map(str::parse::<i64>) {
            Some(Ok(n)) if n > 100 => out.push(Cause::invalid(p, s, "must not be greater than 100%")),
            Some(Ok(n)) if n < 0 => out.push(Cause::invalid(p, s, IS_NEGATIVE_MSG)),
            Some(Ok(_)) => {}
            _ => out.push(Cause::invalid(
                p,
                s,
                "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
            )),
        },
        _ => {}
    }
}

/// `ValidatePodDisruptionBudgetSpec`: one of `minAvailable`/`maxUnavailable`, each ≥ 0 and at
/// most 100 %.
pub(crate) fn pdb_causes(obj: &Value) -> Vec<Cause> {
    let spec = &obj["spec"];
    let mut out = Vec::new();
    if !spec["minAvailable"].is_null() && !spec["maxUnavailable"].is_null() {
        out.push(invalid_raw(
            "spec",
            "policy.PodDisruptionBudgetSpec{…}",
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    int_or_percent(&spec["minAvailable"], "spec.minAvailable", &mut out);
    int_or_percent(&spec["maxUnavailable"], "spec.maxUnavailable", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(causes: Vec<Cause>) -> Vec<String> {
        causes
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn ingresses_as_kube_validates_them() {
        let ok = json!({"spec": {"rules": [{"host": "*.model.localhost", "http": {"paths": [
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": "model", "port": {"number": 80}}}}]}}]}});
        assert!(lines(ingress_causes(&ok)).is_empty());
        let bad = json!({"spec": {"rules": [{"host": "10.0.0.1", "http": {"paths": [
            {"path": "api", "backend": {"service": {"name": "model", "port": {}}}}]}}]}});
        assert_eq!(
            lines(ingress_causes(&bad)),
            vec![
                "spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address",
                "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified",
                "spec.rules[0].http.paths[0].path: Invalid value: \"api\": must be an absolute path",
                "spec.rules[0].http.paths[0].backend.service.port: Invalid value: \"\": port name or number is required",
            ]
        );
        assert_eq!(lines(ingress_causes(&json!({"spec": {}}))).len(), 1);
    }

    #[test]
    fn hpas_and_budgets_as_kube_validates_them() {
        let hpa = json!({"spec": {"minReplicas": 5, "maxReplicas": 2,
            "scaleTargetRef": {"kind": "Deployment", "name": "web"},
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 0}}}]}});
        assert_eq!(
            lines(hpa_causes(&hpa)),
            vec![
                "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`",
                "spec.metrics[0].resource.target.averageUtilization: Invalid value: 0: must be greater than 0",
            ]
        );
        let pdb = json!({"spec": {"minAvailable": "150%"}});
        assert_eq!(
            lines(pdb_causes(&pdb)),
            vec!["spec.minAvailable: Invalid value: \"150%\": must not be greater than 100%"]
        );
        assert!(lines(pdb_causes(&json!({"spec": {"maxUnavailable": 1}}))).is_empty());
    }
}
