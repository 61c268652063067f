//! Services as kube's `ValidateService` checks them: the type, ports (numbers, names,
//! protocols, target ports, node ports only where the type has them), session affinity and
//! ExternalName's name.

use std::collections::HashSet;

use serde_json::Value;

use super::{
    duplicate, forbidden, invalid_num, is_dns_label, not_supported, port_name_errors,
    DNS1123_LABEL_MSG, PORT_NUM_MSG,
};
use crate::status::Cause;

const TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

/// `ValidateService`'s checks of a Service's spec.
pub(crate) fn service_causes(obj: &Value) -> Vec<Cause> {
    let spec = &obj["spec"];
    let mut out = Vec::new();
    let kind = spec["type"].as_str().unwrap_or("ClusterIP");
    if !TYPES.contains(&kind) {
        out.push(not_supported("spec.type", kind, &TYPES));
    }
    let ports = spec["ports"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let headless = spec["clusterIP"].as_str() == Some("None");
    if kind == "ExternalName" {
        if spec["externalName"].as_str().unwrap_or_default().is_empty() {
            out.push(Cause::required("spec.externalName", ""));
        }
    } else if ports.is_empty() && !headless {
        out.push(Cause::required("spec.ports", ""));
    }
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = format!("spec.ports[{i}]");
        let name = port["name"].as_str().unwrap_or_default();
        if name.is_empty() {
            if ports.len() > 1 {
                out.push(Cause::required(&format!("{p}.name"), ""));
            }
        } else if !is_dns_label(name) {
            out.push(Cause::invalid(
                &format!("{p}.name"),
                name,
                DNS1123_LABEL_MSG,
            ));
        } else if !names.insert(name.to_string()) {
            out.push(duplicate(&format!("{p}.name"), name));
        }
        let number = port["port"].as_i64().unwrap_or(0);
        if !(1..=65535).contains(&number) {
            out.push(invalid_num(&format!("{p}.port"), number, PORT_NUM_MSG));
        }
        if let Some(proto) = port["protocol"].as_str() {
            let valid = ["SCTP", "TCP", "UDP"];
            if !valid.contains(&proto) {
                out.push(not_supported(&format!("{p}.protocol"), proto, &valid));
            }
        }
        match &port["targetPort"] {
            Value::Number(n) => {
                let n = n.as_i64().unwrap_or(0);
                if !(1..=65535).contains(&n) {
                    out.push(invalid_num(&format!("{p}.targetPort"), n, PORT_NUM_MSG));
                }
            }
            Value::String(s) => {
                for e in port_name_errors(s) {
                    out.push(Cause::invalid(&format!("{p}.targetPort"), s, e));
                }
            }
            _ => {}
        }
        if let Some(node_port) = port["nodePort"].as_i64().filter(|n| *n != 0) {
            if kind == "ClusterIP" {
                out.push(forbidden(
                    &format!("{p}.nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            } else if !(1..=65535).contains(&node_port) {
                out.push(invalid_num(
                    &format!("{p}.nodePort"),
                    node_port,
                    PORT_NUM_MSG,
                ));
            }
        }
    }
    if let Some(a) = spec["sessionAffinity"].as_str() {
        if a != "ClientIP" && a != "None" {
            out.push(not_supported(
                "spec.sessionAffinity",
                a,
                &["ClientIP", "None"],
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(obj: Value) -> Vec<String> {
        service_causes(&obj)
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn services_as_kube_validates_them() {
        assert_eq!(
            lines(json!({"spec": {"type": "Weird", "ports": [{"port": 0}]}})),
            vec![
                "spec.type: Unsupported value: \"Weird\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
                "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            ]
        );
        assert_eq!(
            lines(json!({"spec": {"type": "ClusterIP", "ports": [
                {"port": 80, "targetPort": "http", "nodePort": 30080},
                {"port": 81, "targetPort": 8081}]}})),
            vec![
                "spec.ports[0].name: Required value",
                "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
                "spec.ports[1].name: Required value",
            ]
        );
        assert!(lines(json!({"spec": {"clusterIP": "None"}})).is_empty());
        assert!(
            lines(json!({"spec": {"type": "ExternalName", "externalName": "db.example"}}))
                .is_empty()
        );
        assert!(lines(json!({"spec": {"type": "NodePort", "ports": [
            {"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"}]}}))
        .is_empty());
    }
}
