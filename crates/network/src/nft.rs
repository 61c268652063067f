//! barge's kernel packet rules: one nftables table (`ip <table>`, barge's own, so docker's and
//! podman's tables are never touched), regenerated as a whole and applied in one atomic
//! transaction through `nft -j` (the nftables JSON API, via the `nftables` crate), like
//! kube-proxy's nftables mode. The table is a pure function of the networks in use and the
//! published ports, so a reconcile after a crash is the same operation as any change.
//!
//! Chains:
//! - `prerouting`/`output` (nat, dstnat): traffic to a local address (`fib daddr type local`)
//!   jumps to `ports`, which DNATs published ports to containers — from other hosts, from the
//!   host itself (127.0.0.1 and its other addresses), and from containers via the host's address.
//! - `postrouting` (nat, srcnat): outbound NAT (masquerade) for each non-internal network;
//!   masquerade of DNATed traffic coming from loopback or from a container network (so replies
//!   come back through the host).
//! - `forward` (filter): DNATed (published) traffic is accepted; otherwise traffic between
//!   two different barge networks is dropped, and internal networks reach nothing outside.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::{json, Value};

use crate::error::NetworkError;

/// A bridge network as the rules see it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RuleNet {
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub internal: bool,
}

/// A published port as the rules see it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RulePort {
    pub proto: String,
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
}

fn m(left: Value, right: Value) -> Value {
    json!({"match": {"op": "==", "left": left, "right": right}})
}
fn m_ne(left: Value, right: Value) -> Value {
    json!({"match": {"op": "!=", "left": left, "right": right}})
}
fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}
fn payload(proto: &str, field: &str) -> Value {
    json!({"payload": {"protocol": proto, "field": field}})
}
fn prefix(net: &Ipv4Net) -> Value {
    json!({"prefix": {"addr": net.network().to_string(), "len": net.prefix_len()}})
}
fn ct_dnat() -> Value {
    json!({"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}})
}
fn local_daddr() -> Value {
    json!({"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}})
}

/// The JSON commands that replace table `table` with the rules for `nets` and `ports`.
pub(crate) fn ruleset(table: &str, nets: &[RuleNet], ports: &[RulePort]) -> Value {
    let fam = "ip";
    let mut cmds: Vec<Value> = vec![
        json!({"add": {"table": {"family": fam, "name": table}}}),
        json!({"delete": {"table": {"family": fam, "name": table}}}),
        json!({"add": {"table": {"family": fam, "name": table}}}),
    ];
    let chain = |name: &str, ty: Option<(&str, &str, i32)>| -> Value {
        match ty {
            Some((t, hook, prio)) => json!({"add": {"chain": {
                "family": fam, "table": table, "name": name,
                "type": t, "hook": hook, "prio": prio, "policy": "accept"}}}),
            None => json!({"add": {"chain": {"family": fam, "table": table, "name": name}}}),
        }
    };
    cmds.push(chain("prerouting", Some(("nat", "prerouting", -100))));
    cmds.push(chain("output", Some(("nat", "output", -100))));
    cmds.push(chain("ports", None));
    cmds.push(chain("postrouting", Some(("nat", "postrouting", 100))));
    cmds.push(chain("forward", Some(("filter", "forward", 0))));
    let rule = |chain: &str, expr: Vec<Value>| -> Value {
        json!({"add": {"rule": {"family": fam, "table": table, "chain": chain, "expr": expr}}})
    };
    for c in ["prerouting", "output"] {
        cmds.push(rule(
            c,
            vec![local_daddr(), json!({"jump": {"target": "ports"}})],
        ));
    }
    for p in ports {
        let mut expr = Vec::new();
        if !p.host_ip.is_unspecified() {
            expr.push(m(payload("ip", "daddr"), json!(p.host_ip.to_string())));
        }
        expr.push(m(meta("l4proto"), json!(p.proto)));
        expr.push(m(payload("th", "dport"), json!(p.host_port)));
        expr.push(json!({"dnat": {"addr": p.container_ip.to_string(), "port": p.container_port}}));
        cmds.push(rule("ports", expr));
    }
    // Sources whose DNATed traffic is masqueraded: loopback and every barge network.
    let mut hairpin = vec![json!({"prefix": {"addr": "127.0.0.0", "len": 8}})];
    hairpin.extend(nets.iter().map(|n| prefix(&n.subnet)));
    for n in nets {
        cmds.push(rule(
            "postrouting",
            vec![
                m(meta("oifname"), json!(n.bridge)),
                ct_dnat(),
                m(payload("ip", "saddr"), json!({"set": hairpin.clone()})),
                json!({"masquerade": null}),
            ],
        ));
        if !n.internal {
            cmds.push(rule(
                "postrouting",
                vec![
                    m(payload("ip", "saddr"), prefix(&n.subnet)),
                    m_ne(meta("oifname"), json!(n.bridge)),
                    json!({"masquerade": null}),
                ],
            ));
        }
    }
    cmds.push(rule("forward", vec![ct_dnat(), json!({"accept": null})]));
    for n in nets {
        let others: Vec<Value> = nets
            .iter()
            .filter(|o| o.bridge != n.bridge)
            .map(|o| json!(o.bridge))
            .collect();
        if n.internal {
            // Nothing leaves or enters an internal network.
            for (this, other) in [("iifname", "oifname"), ("oifname", "iifname")] {
                cmds.push(rule(
                    "forward",
                    vec![
                        m(meta(this), json!(n.bridge)),
                        m_ne(meta(other), json!(n.bridge)),
                        json!({"drop": null}),
                    ],
                ));
            }
        } else if !others.is_empty() {
            cmds.push(rule(
                "forward",
                vec![
                    m(meta("iifname"), json!(n.bridge)),
                    m(meta("oifname"), json!({"set": others})),
                    json!({"drop": null}),
                ],
            ));
        }
    }
    json!({"nftables": cmds})
}

/// Runs one `nft -j -f -` transaction.
fn run(payload: &serde_json::Value) -> Result<(), NetworkError> {
    nftables::helper::apply_ruleset_raw(
        &payload.to_string(),
        nftables::helper::DEFAULT_NFT,
        nftables::helper::DEFAULT_ARGS,
    )
    .map(|_| ())
    .map_err(|e| NetworkError::Nft(e.to_string()))
}

/// Applies [`ruleset`] atomically (one transaction).
pub(crate) fn apply(table: &str, nets: &[RuleNet], ports: &[RulePort]) -> Result<(), NetworkError> {
    run(&ruleset(table, nets, ports))
}

/// Deletes table `table` (missing is fine).
pub(crate) fn delete(table: &str) -> Result<(), NetworkError> {
    run(&json!({"nftables": [
        {"add": {"table": {"family": "ip", "name": table}}},
        {"delete": {"table": {"family": "ip", "name": table}}},
    ]}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_shape() {
        let nets = vec![
            RuleNet {
                bridge: "barge0".into(),
                subnet: "10.87.0.0/16".parse().unwrap(),
                internal: false,
            },
            RuleNet {
                bridge: "br-1".into(),
                subnet: "10.120.0.0/24".parse().unwrap(),
                internal: true,
            },
        ];
        let ports = vec![RulePort {
            proto: "tcp".into(),
            host_ip: Ipv4Addr::UNSPECIFIED,
            host_port: 18080,
            container_ip: "10.87.0.2".parse().unwrap(),
            container_port: 8080,
        }];
        let v = ruleset("barge", &nets, &ports);
        let s = v.to_string();
        assert!(
            s.contains(r#""dnat":{"addr":"10.87.0.2","port":8080}"#),
            "{s}"
        );
        // Internal network: no masquerade rule for it, but drop rules both ways.
        let masq = s.matches(r#""masquerade":null"#).count();
        assert_eq!(masq, 3, "{s}");
        assert_eq!(s.matches(r#""drop":null"#).count(), 3, "{s}");
        // The table is recreated first, so the result does not depend on what was there.
        let cmds = v["nftables"].as_array().unwrap();
        assert!(cmds[1]["delete"]["table"]["name"] == "barge");
    }
}
