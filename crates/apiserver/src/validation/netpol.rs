//! NetworkPolicy (`networking.k8s.io/v1`) as kube's `ValidateNetworkPolicySpec` checks it.

use super::{
    invalid_num, masked, not_supported, parse_cidr, port_name_errors, CIDR_MSG, PORT_NUM_MSG,
};
use crate::status::Cause;

/// A NetworkPolicy's spec checked as kube's `ValidateNetworkPolicySpec` checks it (peers,
/// `ipBlock` CIDRs and `except`, ports and `endPort`, `policyTypes`), with its messages:
/// `spec.ingress[0].from[0].ipBlock.cidr: Invalid value: "10.0.0.0/33": must be a valid
/// CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)`.
pub fn network_policy_causes(obj: &serde_json::Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let spec = &obj["spec"];
    for (dir, peers_key) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in spec[dir].as_array().into_iter().flatten().enumerate() {
            let rp = format!("spec.{dir}[{i}]");
            for (j, port) in rule["ports"].as_array().into_iter().flatten().enumerate() {
                let pp = format!("{rp}.ports[{j}]");
                if let Some(proto) = port["protocol"].as_str() {
                    if !["TCP", "UDP", "SCTP"].contains(&proto) {
                        out.push(not_supported(
                            &format!("{pp}.protocol"),
                            proto,
                            &["TCP", "UDP", "SCTP"],
                        ));
                    }
                }
                let end = port["endPort"].as_i64();
                match &port["port"] {
                    serde_json::Value::Number(n) => {
                        let n = n.as_i64().unwrap_or(0);
                        if !(1..=65535).contains(&n) {
                            out.push(invalid_num(&format!("{pp}.port"), n, PORT_NUM_MSG));
                        }
                        if let Some(e) = end {
                            if e < n {
                                out.push(invalid_num(
                                    &format!("{pp}.endPort"),
                                    n,
                                    "must be greater than or equal to `port`",
                                ));
                            }
                            if !(1..=65535).contains(&e) {
                                out.push(invalid_num(&format!("{pp}.endPort"), e, PORT_NUM_MSG));
                            }
                        }
                    }
                    serde_json::Value::String(name) => {
                        if let Some(e) = end {
                            out.push(invalid_num(
                                &format!("{pp}.endPort"),
                                e,
                                "may not be specified when `port` is non-numeric",
                            ));
                        }
                        for e in port_name_errors(name) {
                            out.push(Cause::invalid(&format!("{pp}.port"), name, e));
                        }
                    }
                    _ => {
                        if let Some(e) = end {
                            out.push(invalid_num(
                                &format!("{pp}.endPort"),
                                e,
                                "may not be specified when `port` is not specified",
                            ));
                        }
                    }
                }
            }
            for (j, peer) in rule[peers_key].as_array().into_iter().flatten().enumerate() {
                let pp = format!("{rp}.{peers_key}[{j}]");
                let has = |k: &str| peer.get(k).is_some_and(|v| !v.is_null());
                let n = ["podSelector", "namespaceSelector", "ipBlock"]
                    .iter()
                    .filter(|k| has(k))
                    .count();
                if has("ipBlock") {
                    out.extend(ip_block_causes(&peer["ipBlock"], &format!("{pp}.ipBlock")));
                }
                if n == 0 {
                    out.push(Cause::required(&pp, "must specify a peer"));
                } else if n > 1 && has("ipBlock") {
                    out.push(Cause {
                        reason: "FieldValueForbidden".into(),
                        message: "Forbidden: may not specify both ipBlock and another peer".into(),
                        field: pp,
                    });
                }
            }
        }
    }
    let types = spec["policyTypes"].as_array().cloned().unwrap_or_default();
    if types.len() > 2 {
        let list: Vec<&str> = types.iter().filter_map(|t| t.as_str()).collect();
        out.push(Cause::invalid(
            "spec.policyTypes",
            &format!("{list:?}"),
            "may not specify more than two policyTypes",
        ));
    } else {
        for (i, t) in types.iter().enumerate() {
            let t = t.as_str().unwrap_or_default();
            if t != "Ingress" && t != "Egress" {
                out.push(not_supported(
                    &format!("spec.policyTypes[{i}]"),
                    t,
                    &["Ingress", "Egress"],
                ));
            }
        }
    }
    out
}

/// kube's `ValidateIPBlock`.
fn ip_block_causes(b: &serde_json::Value, path: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    let cidr = b["cidr"].as_str().unwrap_or_default();
    if cidr.is_empty() {
        out.push(Cause::required(&format!("{path}.cidr"), ""));
        return out;
    }
    let Some((ip, len, width)) = parse_cidr(cidr) else {
        out.push(Cause::invalid(&format!("{path}.cidr"), cidr, CIDR_MSG));
        return out;
    };
    for (i, e) in b["except"].as_array().into_iter().flatten().enumerate() {
        let e = e.as_str().unwrap_or_default();
        let ep = format!("{path}.except[{i}]");
        let Some((eip, elen, ewidth)) = parse_cidr(e) else {
            out.push(Cause::invalid(&ep, e, CIDR_MSG));
            continue;
        };
        let inside = ewidth == width && masked(eip, len, width) == masked(ip, len, width);
        if !inside || len >= elen {
            out.push(Cause::invalid(&ep, e, "must be a strict subset of `cidr`"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_policies_as_kube_validates_them() {
        let np = serde_json::json!({"spec": {
            "policyTypes": ["Ingress", "Sideways"],
            "ingress": [{"from": [
                {"ipBlock": {"cidr": "10.0.0.0/33"}},
                {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24", "10.1.0.0/24", "bad"]}},
                {},
                {"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}
            ], "ports": [{"protocol": "ICMP"}, {"port": 80, "endPort": 79}, {"port": "http", "endPort": 90}]}],
            "egress": [{"to": [{"ipBlock": {"cidr": "2001:db8::/64", "except": ["2001:db8::/80"]}}]}]
        }});
        let lines: Vec<String> = network_policy_causes(&np)
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(
            lines,
            [
                r#"spec.ingress[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP""#,
                "spec.ingress[0].ports[1].endPort: Invalid value: 80: must be greater than or equal to `port`",
                "spec.ingress[0].ports[2].endPort: Invalid value: 90: may not be specified when `port` is non-numeric",
                r#"spec.ingress[0].from[0].ipBlock.cidr: Invalid value: "10.0.0.0/33": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"#,
                r#"spec.ingress[0].from[1].ipBlock.except[1]: Invalid value: "10.1.0.0/24": must be a strict subset of `cidr`"#,
                r#"spec.ingress[0].from[1].ipBlock.except[2]: Invalid value: "bad": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"#,
                "spec.ingress[0].from[2]: Required value: must specify a peer",
                "spec.ingress[0].from[3]: Forbidden: may not specify both ipBlock and another peer",
                r#"spec.policyTypes[1]: Unsupported value: "Sideways": supported values: "Ingress", "Egress""#,
            ]
        );
    }
}
