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
//!   masquerade of traffic DNATed by `ports` coming from loopback or from a container network
//!   (so replies come back through the host). `ports` tags the packets it DNATs with
//!   [`PORTS_MARK`] and only tagged packets are masqueraded there: the cluster's Service proxy
//!   (`kubeproxy.rs`) DNATs pod traffic to pods on the same bridge too, and kube-proxy keeps
//!   that traffic's source (it masquerades only what its own rules mark).
//! - `forward` (filter): DNATed (published) traffic is accepted; otherwise traffic between
//!   two different barge networks is dropped, and internal networks reach nothing outside.
//!
//! Networks with IPv6 get the same isolation and outbound masquerade for their IPv6 subnets in
//! a second table of the same name in family `ip6`, made and removed in the same transaction
//! as the `ip` one. A port published on every address (`-p 8080:80`) of a container with an
//! IPv6 address is DNATed there too, from the host's IPv6 addresses — but not from `::1`:
//! IPv6 has no `route_localnet`, so loopback traffic cannot be DNATed out of `lo` (dockerd
//! serves `[::1]` with its userland proxy, which barge does not have).

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::{json, Value};

use crate::error::NetworkError;

/// A bridge network as the rules see it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RuleNet {
    pub bridge: String,
    pub subnet: Ipv4Net,
    /// The network's IPv6 subnet, if it has IPv6.
    pub subnet6: Option<Ipv6Net>,
    pub internal: bool,
    /// Destinations not masqueraded, whose traffic may enter the bridge from any link
    /// ([`crate::NO_MASQUERADE_OPTION`]: the cluster CIDR of the pod network).
    pub no_masquerade: Vec<Ipv4Net>,
}

/// A published port as the rules see it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RulePort {
    pub proto: String,
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    /// The container's IPv6 address, for a port published on every address.
    pub container_ip6: Option<Ipv6Addr>,
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
/// The packet mark bit (`meta mark`) `ports` sets on the first packet of each connection it
/// DNATs, so `postrouting` masquerades the hairpin traffic of published ports and nothing
/// another table DNATed (kube-proxy's own bit is `0x4000`, [`crate::kubeproxy`]). Only the
/// bit is set, other bits of the mark are kept.
pub(crate) const PORTS_MARK: u32 = 0x2000;

/// `meta mark set meta mark | PORTS_MARK`.
fn set_ports_mark() -> Value {
    json!({"mangle": {"key": {"meta": {"key": "mark"}},
        "value": {"|": [{"meta": {"key": "mark"}}, PORTS_MARK]}}})
}

/// `meta mark & PORTS_MARK != 0`: a packet `ports` DNATed.
fn has_ports_mark() -> Value {
    m_ne(
        json!({"&": [{"meta": {"key": "mark"}}, PORTS_MARK]}),
        json!(0),
    )
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
        expr.push(set_ports_mark());
        expr.push(json!({"dnat": {"addr": p.container_ip.to_string(), "port": p.container_port}}));
        cmds.push(rule("ports", expr));
    }
    // Sources whose traffic to a published port is masqueraded: loopback and every barge
    // network (as docker-proxy, which connects from the host, makes it look). Only what
    // `ports` DNATed: the Service proxy's DNAT keeps the pod's source, as kube-proxy's.
    let mut hairpin = vec![json!({"prefix": {"addr": "127.0.0.0", "len": 8}})];
    hairpin.extend(nets.iter().map(|n| prefix(&n.subnet)));
    for n in nets {
        cmds.push(rule(
            "postrouting",
            vec![
                m(meta("oifname"), json!(n.bridge)),
                has_ports_mark(),
                m(payload("ip", "saddr"), json!({"set": hairpin.clone()})),
                json!({"masquerade": null}),
            ],
        ));
        if !n.internal {
            let mut expr = vec![
                m(payload("ip", "saddr"), prefix(&n.subnet)),
                m_ne(meta("oifname"), json!(n.bridge)),
            ];
            if !n.no_masquerade.is_empty() {
                let set: Vec<Value> = n.no_masquerade.iter().map(prefix).collect();
                expr.push(m_ne(payload("ip", "daddr"), json!({ "set": set })));
            }
            expr.push(json!({"masquerade": null}));
            cmds.push(rule("postrouting", expr));
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
            isolate(&mut cmds, &n.bridge, &rule);
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
    cmds.extend(ruleset6(table, nets, ports));
    json!({"nftables": cmds})
}

/// The `ip6` half of [`ruleset`]: the table `ip6 <table>` for the networks with IPv6
/// (masquerade out of non-internal ones, isolation between networks and of internal ones), or
/// its removal when no network has IPv6.
fn ruleset6(table: &str, nets: &[RuleNet], ports: &[RulePort]) -> Vec<Value> {
    let fam = "ip6";
    let mut cmds = vec![
        json!({"add": {"table": {"family": fam, "name": table}}}),
        json!({"delete": {"table": {"family": fam, "name": table}}}),
    ];
    let v6: Vec<(&RuleNet, Ipv6Net)> = nets
        .iter()
        .filter_map(|n| n.subnet6.map(|s| (n, s)))
        .collect();
    if v6.is_empty() {
        return cmds;
    }
    cmds.push(json!({"add": {"table": {"family": fam, "name": table}}}));
    for (name, hook, ty, prio) in [
        ("postrouting", "postrouting", "nat", 100),
        ("forward", "forward", "filter", 0),
    ] {
        cmds.push(json!({"add": {"chain": {
            "family": fam, "table": table, "name": name,
            "type": ty, "hook": hook, "prio": prio, "policy": "accept"}}}));
    }
    let rule = |chain: &str, expr: Vec<Value>| -> Value {
        json!({"add": {"rule": {"family": fam, "table": table, "chain": chain, "expr": expr}}})
    };
    let prefix6 =
        |n: &Ipv6Net| json!({"prefix": {"addr": n.network().to_string(), "len": n.prefix_len()}});
    let ports6: Vec<(&RulePort, Ipv6Addr)> = ports
        .iter()
        .filter_map(|p| p.container_ip6.map(|ip| (p, ip)))
        .collect();
    if !ports6.is_empty() {
        cmds.push(json!({"add": {"chain": {"family": fam, "table": table, "name": "ports"}}}));
        for (name, hook) in [("prerouting", "prerouting"), ("output", "output")] {
            cmds.push(json!({"add": {"chain": {
                "family": fam, "table": table, "name": name,
                "type": "nat", "hook": hook, "prio": -100, "policy": "accept"}}}));
            cmds.push(rule(
                name,
                vec![local_daddr(), json!({"jump": {"target": "ports"}})],
            ));
        }
        for (p, ip) in &ports6 {
            cmds.push(rule(
                "ports",
                vec![
                    m(meta("l4proto"), json!(p.proto)),
                    m(payload("th", "dport"), json!(p.host_port)),
                    set_ports_mark(),
                    json!({"dnat": {"addr": ip.to_string(), "port": p.container_port}}),
                ],
            ));
        }
        // Traffic `ports` DNATed from a container network (hairpin) leaves with the host's
        // address.
        let hairpin: Vec<Value> = v6.iter().map(|(_, s)| prefix6(s)).collect();
        for (n, _) in &v6 {
            cmds.push(rule(
                "postrouting",
                vec![
                    m(meta("oifname"), json!(n.bridge)),
                    has_ports_mark(),
                    m(payload("ip6", "saddr"), json!({"set": hairpin.clone()})),
                    json!({"masquerade": null}),
                ],
            ));
        }
    }
    for (n, s) in &v6 {
        if !n.internal {
            cmds.push(rule(
                "postrouting",
                vec![
                    m(payload("ip6", "saddr"), prefix6(s)),
                    m_ne(meta("oifname"), json!(n.bridge)),
                    json!({"masquerade": null}),
                ],
            ));
        }
    }
    cmds.push(rule("forward", vec![ct_dnat(), json!({"accept": null})]));
    for (n, _) in &v6 {
        if n.internal {
            isolate(&mut cmds, &n.bridge, &rule);
            continue;
        }
        // Every other barge bridge, with IPv6 or not (a route to it may exist all the same).
        let others: Vec<Value> = nets
            .iter()
            .filter(|o| o.bridge != n.bridge)
            .map(|o| json!(o.bridge))
            .collect();
        if !others.is_empty() {
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
    cmds
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

/// Deletes table `table`, `ip` and `ip6` (missing is fine).
pub(crate) fn delete(table: &str) -> Result<(), NetworkError> {
    run(&json!({"nftables": [
        {"add": {"table": {"family": "ip", "name": table}}},
        {"delete": {"table": {"family": "ip", "name": table}}},
        {"add": {"table": {"family": "ip6", "name": table}}},
        {"delete": {"table": {"family": "ip6", "name": table}}},
    ]}))
}

/// Another firewall's forward chain that would drop barge's traffic: Docker's `DOCKER-USER`
/// (evaluated first in its `FORWARD`, meant for rules like these), else an `ip filter`
/// `FORWARD` chain whose policy is drop (Docker after it enabled forwarding itself, ufw, ...).
/// A drop in any base chain is final, so barge's own table cannot override it.
fn foreign_chain(filter: &Value) -> Option<String> {
    let mut forward_drops = false;
    let mut docker_user = false;
    for o in filter["nftables"].as_array().into_iter().flatten() {
        let c = &o["chain"];
        match c["name"].as_str() {
            Some("DOCKER-USER") => docker_user = true,
            Some("FORWARD") => forward_drops = c["policy"] == "drop",
            _ => {}
        }
    }
    if docker_user {
        Some("DOCKER-USER".into())
    } else if forward_drops {
        Some("FORWARD".into())
    } else {
        None
    }
}

/// [`foreign_commands_in`] for `ip filter`.
/// Drops what enters or leaves an internal network's bridge from or to another interface.
fn isolate(cmds: &mut Vec<Value>, bridge: &str, rule: &dyn Fn(&str, Vec<Value>) -> Value) {
    for (this, other) in [("iifname", "oifname"), ("oifname", "iifname")] {
        cmds.push(rule(
            "forward",
            vec![
                m(meta(this), json!(bridge)),
                m_ne(meta(other), json!(bridge)),
                json!({"drop": null}),
            ],
        ));
    }
}

#[cfg(test)]
pub(crate) fn foreign_commands(filter: &Value, table: &str, bridges: &[String]) -> Vec<Value> {
    let nets: Vec<RuleNet> = bridges
        .iter()
        .map(|b| RuleNet {
            bridge: b.clone(),
            subnet: "10.0.0.0/24".parse().expect("subnet"),
            subnet6: None,
            internal: false,
            no_masquerade: Vec::new(),
        })
        .collect();
    foreign_commands_in("ip", filter, table, &nets)
}

/// The commands that make the `filter` table's chain of `family` accept barge's bridges as
/// Docker accepts its own (out of a bridge: anything; into it: replies and DNATed traffic, and
/// in `ip` traffic from its [`RuleNet::no_masquerade`] destinations: other nodes' pods),
/// replacing barge's earlier rules (marked with the comment `barge:<table>`). Empty when
/// nothing changes. `family` is `ip`, or `ip6`: Docker's ip6tables (on by default since
/// Docker 27) has the same `FORWARD` drop policy and `DOCKER-USER` chain, and with
/// `br_netfilter` sees bridged IPv6 traffic too.
pub(crate) fn foreign_commands_in(
    family: &str,
    filter: &Value,
    table: &str,
    nets: &[RuleNet],
) -> Vec<Value> {
    let marker = format!("barge:{table}");
    let mut cmds = Vec::new();
    let mut present: Vec<(String, String)> = Vec::new();
    for o in filter["nftables"].as_array().into_iter().flatten() {
        let r = &o["rule"];
        if r["comment"].as_str() == Some(marker.as_str()) {
            cmds.push(
                json!({"delete": {"rule": {"family": family, "table": "filter",
                "chain": r["chain"], "handle": r["handle"]}}}),
            );
            present.push((
                r["chain"].as_str().unwrap_or_default().to_string(),
                r["expr"].to_string(),
            ));
        }
    }
    let Some(chain) = foreign_chain(filter) else {
        return cmds;
    };
    let mut wanted = Vec::new();
    for n in nets {
        let b = &n.bridge;
        wanted.push(vec![m(meta("iifname"), json!(b)), json!({"accept": null})]);
        if family == "ip" && !n.no_masquerade.is_empty() {
            let set: Vec<Value> = n.no_masquerade.iter().map(prefix).collect();
            wanted.push(vec![
                m(meta("oifname"), json!(b)),
                m(payload("ip", "saddr"), json!({ "set": set })),
                json!({"accept": null}),
            ]);
        }
        wanted.push(vec![
            m(meta("oifname"), json!(b)),
            json!({"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}),
            json!({"accept": null}),
        ]);
        wanted.push(vec![
            m(meta("oifname"), json!(b)),
            ct_dnat(),
            json!({"accept": null}),
        ]);
    }
    // Nothing to do when exactly these rules are already there.
    let same = present.len() == wanted.len()
        && wanted.iter().all(|w| {
            let w = Value::Array(w.clone()).to_string();
            present.iter().any(|(c, e)| *c == chain && *e == w)
        });
    if same {
        return Vec::new();
    }
    for expr in wanted {
        cmds.push(
            json!({"insert": {"rule": {"family": family, "table": "filter",
            "chain": chain, "expr": expr, "comment": marker}}}),
        );
    }
    cmds
}

/// Keeps barge's accept rules in another firewall's `ip filter` and `ip6 filter` tables in
/// line with `bridges` (see [`foreign_commands_in`]); a family without a `filter` table:
/// nothing to do there.
pub(crate) fn sync_foreign(table: &str, nets: &[RuleNet]) -> Result<(), NetworkError> {
    for family in ["ip", "ip6"] {
        let Ok(out) = nftables::helper::get_current_ruleset_raw(
            nftables::helper::DEFAULT_NFT,
            ["list", "table", family, "filter"],
        ) else {
            continue;
        };
        let filter: Value =
            serde_json::from_str(&out).map_err(|e| NetworkError::Nft(format!("nft -j: {e}")))?;
        let cmds = foreign_commands_in(family, &filter, table, nets);
        if !cmds.is_empty() {
            run(&json!({ "nftables": cmds }))?;
        }
    }
    Ok(())
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
                subnet6: None,
                internal: false,
                no_masquerade: Vec::new(),
            },
            RuleNet {
                bridge: "br-1".into(),
                subnet: "10.120.0.0/24".parse().unwrap(),
                subnet6: None,
                internal: true,
                no_masquerade: Vec::new(),
            },
        ];
        let ports = vec![RulePort {
            proto: "tcp".into(),
            host_ip: Ipv4Addr::UNSPECIFIED,
            host_port: 18080,
            container_ip: "10.87.0.2".parse().unwrap(),
            container_ip6: None,
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
        // The published port's DNAT tags the packet; the hairpin masquerade takes tagged
        // packets only (not any DNATed one: the Service proxy's keep their source).
        let dnat = cmds
            .iter()
            .find(|c| c["add"]["rule"]["expr"].to_string().contains("dnat"))
            .unwrap()["add"]["rule"]["expr"]
            .clone();
        assert_eq!(
            dnat[dnat.as_array().unwrap().len() - 2],
            json!({"mangle": {"key": {"meta": {"key": "mark"}},
                "value": {"|": [{"meta": {"key": "mark"}}, PORTS_MARK]}}}),
            "{dnat}"
        );
        let hairpin: Vec<String> = cmds
            .iter()
            .filter(|c| c["add"]["rule"]["chain"] == "postrouting")
            .map(|c| c["add"]["rule"]["expr"].to_string())
            .filter(|e| e.contains("127.0.0.0"))
            .collect();
        assert_eq!(hairpin.len(), 2, "one per bridge: {hairpin:?}");
        for e in &hairpin {
            assert!(e.contains(&has_ports_mark().to_string()), "{e}");
            assert!(!e.contains("status"), "any DNATed packet: {e}");
        }
        assert!(cmds[1]["delete"]["table"]["name"] == "barge");
        // No IPv6 network: the ip6 table is removed (made and deleted), never left behind.
        let last = &cmds[cmds.len() - 1]["delete"]["table"];
        assert_eq!(last["family"], "ip6");
    }

    #[test]
    fn ipv6_networks_get_an_ip6_table() {
        let net = |bridge: &str, v6: Option<&str>, internal: bool| RuleNet {
            bridge: bridge.into(),
            subnet: "10.120.0.0/24".parse().unwrap(),
            subnet6: v6.map(|s| s.parse().unwrap()),
            internal,
            no_masquerade: Vec::new(),
        };
        let nets = vec![
            net("br-a", Some("fd00:a::/64"), false),
            net("br-b", Some("fd00:b::/64"), false),
            net("br-c", Some("fd00:c::/64"), true),
            net("barge0", None, false),
        ];
        let v = ruleset("barge", &nets, &[]);
        let cmds = v["nftables"].as_array().unwrap();
        let six: Vec<&Value> = cmds
            .iter()
            .filter(|c| {
                c.as_object()
                    .and_then(|o| o.values().next())
                    .and_then(|x| x.as_object())
                    .and_then(|x| x.values().next())
                    .is_some_and(|x| x["family"] == "ip6")
            })
            .collect();
        let s = Value::Array(six.into_iter().cloned().collect()).to_string();
        assert!(s.contains(r#""addr":"fd00:a::","len":64"#), "{s}");
        // Masquerade for the two non-internal IPv6 networks only.
        assert_eq!(s.matches(r#""masquerade":null"#).count(), 2, "{s}");
        // br-a and br-b drop towards the others, br-c both ways.
        assert_eq!(s.matches(r#""drop":null"#).count(), 4, "{s}");
        assert!(s.contains(r#""set":["br-b","br-c","barge0"]"#), "{s}");
        // A port published on every address of a container with IPv6: DNAT in ip6 too.
        let port = |ip6: Option<&str>| RulePort {
            proto: "tcp".into(),
            host_ip: Ipv4Addr::UNSPECIFIED,
            host_port: 18080,
            container_ip: "10.120.0.2".parse().unwrap(),
            container_ip6: ip6.map(|a| a.parse().unwrap()),
            container_port: 8080,
        };
        let v = ruleset("barge", &nets, &[port(Some("fd00:a::2")), port(None)]);
        let s = v.to_string();
        assert_eq!(
            s.matches(r#""dnat":{"addr":"fd00:a::2","port":8080}"#)
                .count(),
            1,
            "{s}"
        );
        // Its hairpin masquerade, too, takes only what `ports` DNATed.
        assert_eq!(s.matches(&set_ports_mark().to_string()).count(), 3, "{s}");
        let six_masq: Vec<&Value> = v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| {
                c["add"]["rule"]["family"] == "ip6"
                    && c["add"]["rule"]["chain"] == "postrouting"
                    && c["add"]["rule"]["expr"]
                        .to_string()
                        .contains(r#""oifname"}},"op":"==""#)
            })
            .collect();
        assert_eq!(six_masq.len(), 3, "{s}");
        assert!(six_masq.iter().all(|c| c["add"]["rule"]["expr"]
            .to_string()
            .contains(&has_ports_mark().to_string())));
        // The ports chain exists before the jumps to it.
        let chain = s.find(r#""family":"ip6","name":"ports""#).unwrap();
        let jump = s.rfind(r#""jump":{"target":"ports"}"#).unwrap();
        assert!(chain < jump, "{s}");
    }

    fn filter_table(chains: &[(&str, &str)], rules: Value) -> Value {
        let mut objs: Vec<Value> = chains
            .iter()
            .map(|(name, policy)| {
                let mut c = json!({"family": "ip", "table": "filter", "name": name});
                if !policy.is_empty() {
                    c["policy"] = json!(policy);
                }
                json!({ "chain": c })
            })
            .collect();
        objs.extend(rules.as_array().cloned().unwrap_or_default());
        json!({ "nftables": objs })
    }

    #[test]
    fn docker_forward_drop_gets_accepts_in_docker_user() {
        let t = filter_table(&[("FORWARD", "drop"), ("DOCKER-USER", "")], json!([]));
        let cmds = foreign_commands(&t, "barge", &["barge0".to_string()]);
        assert_eq!(cmds.len(), 3);
        assert!(cmds
            .iter()
            .all(|c| c["insert"]["rule"]["chain"] == "DOCKER-USER"
                && c["insert"]["rule"]["comment"] == "barge:barge"));
        // Applied once: the same rules are found and nothing changes.
        let present: Vec<Value> = cmds
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut r = c["insert"]["rule"].clone();
                r["handle"] = json!(i + 10);
                json!({ "rule": r })
            })
            .collect();
        let t2 = filter_table(&[("FORWARD", "drop"), ("DOCKER-USER", "")], json!(present));
        assert!(foreign_commands(&t2, "barge", &["barge0".to_string()]).is_empty());
        // No bridges left: barge's rules are deleted, nobody else's.
        let del = foreign_commands(&t2, "barge", &[]);
        assert_eq!(del.len(), 3);
        assert!(del.iter().all(|c| c.get("delete").is_some()));
        assert!(foreign_commands(&t2, "barge-other", &[]).is_empty());
    }

    #[test]
    fn pod_network_is_not_masqueraded_towards_the_cluster() {
        let pods = RuleNet {
            bridge: "barge-pods".into(),
            subnet: "10.42.0.0/24".parse().unwrap(),
            subnet6: None,
            internal: false,
            no_masquerade: vec!["10.42.0.0/16".parse().unwrap()],
        };
        let v = ruleset("barge", std::slice::from_ref(&pods), &[]);
        let cmds = v["nftables"].as_array().unwrap();
        let masq: Vec<&Value> = cmds
            .iter()
            .filter(|c| {
                let e = c["add"]["rule"]["expr"].to_string();
                e.contains("masquerade") && !e.contains(&has_ports_mark().to_string())
            })
            .collect();
        assert_eq!(masq.len(), 1, "{v}");
        let e = masq[0]["add"]["rule"]["expr"].to_string();
        assert!(
            e.contains(r#"{"match":{"left":{"payload":{"field":"daddr","protocol":"ip"}},"op":"!=","right":{"set":[{"prefix":{"addr":"10.42.0.0","len":16}}]}}}"#),
            "{e}"
        );
        // Another firewall's drop policy lets other nodes' pods into the bridge.
        let t = filter_table(&[("FORWARD", "drop"), ("DOCKER-USER", "")], json!([]));
        let cmds = foreign_commands_in("ip", &t, "barge", std::slice::from_ref(&pods));
        assert_eq!(cmds.len(), 4);
        let s = Value::Array(cmds).to_string();
        assert!(s.contains(r#""field":"saddr""#), "{s}");
        let cmds6 = foreign_commands_in("ip6", &t, "barge", &[pods]);
        assert_eq!(cmds6.len(), 3);
    }

    #[test]
    fn ip6_filter_gets_its_own_accepts() {
        let t = filter_table(&[("FORWARD", "drop"), ("DOCKER-USER", "")], json!([]));
        let br = RuleNet {
            bridge: "br-1".into(),
            subnet: "10.0.0.0/24".parse().unwrap(),
            subnet6: None,
            internal: false,
            no_masquerade: Vec::new(),
        };
        let cmds = foreign_commands_in("ip6", &t, "barge", &[br]);
        assert_eq!(cmds.len(), 3);
        assert!(cmds.iter().all(|c| c["insert"]["rule"]["family"] == "ip6"));
    }

    #[test]
    fn accepting_forward_chain_is_left_alone() {
        let t = filter_table(&[("FORWARD", "accept")], json!([]));
        assert!(foreign_commands(&t, "barge", &["barge0".to_string()]).is_empty());
        let t = filter_table(&[("FORWARD", "drop")], json!([]));
        let cmds = foreign_commands(&t, "barge", &["barge0".to_string()]);
        assert_eq!(cmds[0]["insert"]["rule"]["chain"], "FORWARD");
    }
}

/// Runs `cmds` (nftables JSON commands, `libnftables-json(5)`) as one `nft -j -f -`
/// transaction: all or nothing.
pub(crate) fn run_cmds(cmds: Vec<serde_json::Value>) -> Result<(), NetworkError> {
    run(&json!({ "nftables": cmds }))
}

/// Builds the JSON commands of one `ip`-family table of the cluster's (the Service proxy's,
/// the NetworkPolicy table): every object it names is in that table.
#[derive(Debug, Clone)]
pub(crate) struct IpTable {
    pub(crate) name: String,
}

impl IpTable {
    /// `{verb: {what: body + family + table}}`, e.g. `cmd("add", "chain", {"name": "x"})`.
    pub(crate) fn cmd(&self, verb: &str, what: &str, body: serde_json::Value) -> serde_json::Value {
        let mut b = body;
        b["family"] = json!("ip");
        b["table"] = json!(self.name);
        json!({ verb: { what: b } })
    }

    /// `add rule` of `expr` to `chain`.
    pub(crate) fn rule(&self, chain: &str, expr: Vec<serde_json::Value>) -> serde_json::Value {
        self.cmd("add", "rule", json!({"chain": chain, "expr": expr}))
    }

    /// The commands that remove the table if it exists (`add` first, so a missing table is not
    /// an error).
    pub(crate) fn drop_cmds(&self) -> Vec<serde_json::Value> {
        vec![
            json!({"add": {"table": {"family": "ip", "name": self.name}}}),
            json!({"delete": {"table": {"family": "ip", "name": self.name}}}),
        ]
    }

    /// The commands that make the table anew, empty ([`IpTable::drop_cmds`], then `add`).
    pub(crate) fn recreate_cmds(&self) -> Vec<serde_json::Value> {
        let mut c = self.drop_cmds();
        c.push(json!({"add": {"table": {"family": "ip", "name": self.name}}}));
        c
    }
}
