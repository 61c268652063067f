//! NetworkPolicy enforcement (networking.k8s.io/v1) in nftables, in a table of the node
//! agent's own (`ip <engine table>-netpol`, next to the engine's and the Service proxy's,
//! never shared with them). The agent compiles the cluster's policies into [`Desired`]: per
//! pod of this node (by address), the clauses that allow its ingress and egress when a policy
//! isolates it, and named sets of peer pod addresses; [`PolicyTable::sync`] writes only the
//! difference with what it applied last, in **one** `nft -j` transaction.
//!
//! Layout:
//! - base chains `forward` and `input` (filter, priority -5, policy accept): replies of allowed
//!   connections pass (`ct state established,related accept`), then `ip saddr vmap @egress`
//!   (a pod of this node isolated for egress: `jump egress-<ip>`), then, in `forward` only,
//!   `ip daddr vmap @ingress` (`jump ingress-<ip>`). Traffic the node itself sends (kubelet's
//!   probes, `kubectl port-forward`, node ports after DNAT from the host) goes through
//!   `output`, which has no chain here: it always passes, as kube requires;
//! - `ingress-<ip>`/`egress-<ip>`: one rule per allowed (peer, port) clause ending in
//!   `return` (on to the next check), then `drop`;
//! - `peer-<hash>-…` (`ipv4_addr` sets): the pods a peer selector matches, kept in step
//!   element by element, so a label change touches set elements, never chains.
//!
//! Bridged pod-to-pod traffic reaches the `ip` hooks through `br_netfilter`
//! (`net.bridge.bridge-nf-call-iptables=1`), as kube-proxy and kube-router require too.
//!
//! Invariants: [`PolicyTable::new`] makes the table whole (an old one is replaced); every
//! later change is one atomic transaction; if one fails (someone flushed the table), the next
//! sync rebuilds it from scratch. [`crate::kubeproxy::delete_table`] removes it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Mutex;

use ipnet::Ipv4Net;
use serde_json::{json, Value};

use crate::error::NetworkError;
use crate::nft::{run_cmds, IpTable};

/// Addresses one clause allows (the peer side: sources for ingress, destinations for egress).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Addrs {
    /// Any address (`from`/`to` omitted or empty).
    Any,
    /// The members of named set `.0` (pods matched by a selector); see [`Desired::sets`].
    Set(String),
    /// An `ipBlock`: `cidr` minus each of `except`.
    Cidr { net: Ipv4Net, except: Vec<Ipv4Net> },
}

/// One protocol and port (range) a clause allows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortMatch {
    /// `tcp`, `udp` or `sctp`.
    pub proto: String,
    /// Inclusive destination port range; `None`: every port of `proto`.
    pub ports: Option<(u16, u16)>,
}

/// Traffic a policy rule allows: from/to `addrs`, on any of `ports` (empty: every port and
/// protocol).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Clause {
    pub addrs: Addrs,
    pub ports: Vec<PortMatch>,
}

/// What applies to one pod of this node: `None` for a direction no policy selects it for
/// (not isolated: everything passes); `Some(clauses)`: only what one clause allows (an empty
/// list: nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRules {
    pub ingress: Option<Vec<Clause>>,
    pub egress: Option<Vec<Clause>>,
}

/// Everything the table should hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// This node's pods by address.
    pub pods: BTreeMap<Ipv4Addr, PodRules>,
    /// Named peer sets (names as [`Addrs::Set`] uses them) and their members.
    pub sets: BTreeMap<String, BTreeSet<Ipv4Addr>>,
}

/// What a sync changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncStats {
    /// Commands in the transaction (0: nothing to do).
    pub commands: usize,
    /// Whether the table was rebuilt from scratch.
    pub full: bool,
}

/// The kernel objects [`Desired`] turns into.
#[derive(Debug, Clone, Default, PartialEq)]
struct Rendered {
    /// set name → members
    sets: BTreeMap<String, BTreeSet<Ipv4Addr>>,
    /// chain name → rules (expression lists)
    chains: BTreeMap<String, Vec<Vec<Value>>>,
    /// (map, pod address) → chain
    elements: BTreeMap<(String, Ipv4Addr), String>,
}

/// The kernel name of peer set `name` (short, unique: a hash, then the readable name cut to
/// fit the kernel's 256-byte limit).
pub fn set_name(name: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(name.as_bytes());
    let hex: String = h.iter().take(4).map(|b| format!("{b:02X}")).collect();
    let mut readable: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_./".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    readable.truncate(200);
    format!("peer-{hex}-{readable}")
}

fn m(op: &str, left: Value, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}
fn ip_field(field: &str) -> Value {
    json!({"payload": {"protocol": "ip", "field": field}})
}
fn prefix(n: &Ipv4Net) -> Value {
    json!({"prefix": {"addr": n.network().to_string(), "len": n.prefix_len()}})
}
fn ct_established() -> Value {
    m(
        "in",
        json!({"ct": {"key": "state"}}),
        json!(["established", "related"]),
    )
}

/// The rules of one pod's chain for one direction (`field`: the peer's address, `saddr` for
/// ingress, `daddr` for egress).
fn clause_rules(clauses: &[Clause], field: &str) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    for c in clauses {
        let mut addr = Vec::new();
        match &c.addrs {
            Addrs::Any => {}
            Addrs::Set(name) => addr.push(m(
                "==",
                ip_field(field),
                json!(format!("@{}", set_name(name))),
            )),
            Addrs::Cidr { net, except } => {
                if net.prefix_len() > 0 {
                    addr.push(m("==", ip_field(field), prefix(net)));
                }
                if !except.is_empty() {
                    let items: Vec<Value> = except.iter().map(prefix).collect();
                    addr.push(m("!=", ip_field(field), json!({"set": items})));
                }
            }
        }
        if c.ports.is_empty() {
            let mut r = addr.clone();
            r.push(json!({"return": null}));
            out.push(r);
            continue;
        }
        for p in &c.ports {
            let mut r = addr.clone();
            r.push(m("==", json!({"meta": {"key": "l4proto"}}), json!(p.proto)));
            match p.ports {
                Some((lo, hi)) if lo == hi => r.push(m(
                    "==",
                    json!({"payload": {"protocol": "th", "field": "dport"}}),
                    json!(lo),
                )),
                Some((lo, hi)) => r.push(m(
                    "==",
                    json!({"payload": {"protocol": "th", "field": "dport"}}),
                    json!({"range": [lo, hi]}),
                )),
                None => {}
            }
            r.push(json!({"return": null}));
            out.push(r);
        }
    }
    out.push(vec![json!({"drop": null})]);
    out
}

fn render(d: &Desired) -> Rendered {
    let mut r = Rendered::default();
    for (ip, rules) in &d.pods {
        for (dir, clauses, field) in [
            ("ingress", &rules.ingress, "saddr"),
            ("egress", &rules.egress, "daddr"),
        ] {
            let Some(clauses) = clauses else { continue };
            let chain = format!("{dir}-{ip}");
            r.chains.insert(chain.clone(), clause_rules(clauses, field));
            r.elements.insert((dir.to_string(), *ip), chain);
        }
    }
    // Only the sets some chain refers to.
    let used: BTreeSet<&String> = d
        .pods
        .values()
        .flat_map(|p| p.ingress.iter().chain(p.egress.iter()).flatten())
        .filter_map(|c| match &c.addrs {
            Addrs::Set(n) => Some(n),
            _ => None,
        })
        .collect();
    for name in used {
        let members = d.sets.get(name).cloned().unwrap_or_default();
        r.sets.insert(set_name(name), members);
    }
    r
}

/// The NetworkPolicy table of one node.
pub struct PolicyTable {
    table: String,
    /// What is in the kernel now; `None`: unknown (rebuild next).
    applied: Mutex<Option<Rendered>>,
}

impl PolicyTable {
    /// Makes table `table` (replacing any table of that name) with its base chains and maps,
    /// isolating nothing yet.
    pub fn new(table: &str) -> Result<Self, NetworkError> {
        let t = PolicyTable {
            table: table.to_string(),
            applied: Mutex::new(None),
        };
        run_cmds(t.base())?;
        *t.applied.lock().unwrap_or_else(|e| e.into_inner()) = Some(Rendered::default());
        Ok(t)
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn cmd(&self, verb: &str, what: &str, body: Value) -> Value {
        self.nft().cmd(verb, what, body)
    }

    fn rule(&self, chain: &str, expr: Vec<Value>) -> Value {
        self.nft().rule(chain, expr)
    }

    fn nft(&self) -> IpTable {
        IpTable {
            name: self.table.clone(),
        }
    }

    fn base(&self) -> Vec<Value> {
        let mut c = self.nft().recreate_cmds();
        for map in ["ingress", "egress"] {
            c.push(self.cmd(
                "add",
                "map",
                json!({"name": map, "type": "ipv4_addr", "map": "verdict"}),
            ));
        }
        let vmap = |field: &str, map: &str| json!({"vmap": {"key": ip_field(field), "data": format!("@{map}")}});
        for (chain, hook) in [("forward", "forward"), ("input", "input")] {
            c.push(self.cmd(
                "add",
                "chain",
                json!({"name": chain, "type": "filter", "hook": hook, "prio": -5,
                    "policy": "accept"}),
            ));
            c.push(self.rule(chain, vec![ct_established(), json!({"accept": null})]));
            c.push(self.rule(chain, vec![vmap("saddr", "egress")]));
        }
        c.push(self.rule("forward", vec![vmap("daddr", "ingress")]));
        c
    }

    /// Brings the table to `desired` in one transaction holding only what changed since the
    /// last sync (set elements, the chains of pods whose rules changed, map elements).
    pub fn sync(&self, desired: &Desired) -> Result<SyncStats, NetworkError> {
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        let want = render(desired);
        let mut stats = SyncStats::default();
        let (mut cmds, old) = match applied.take() {
            Some(old) => (Vec::new(), old),
            None => {
                stats.full = true;
                (self.base(), Rendered::default())
            }
        };
        cmds.extend(self.diff(&old, &want));
        stats.commands = cmds.len();
        if cmds.is_empty() {
            *applied = Some(old);
            return Ok(stats);
        }
        match run_cmds(cmds) {
            Ok(()) => {
                *applied = Some(want);
                Ok(stats)
            }
            Err(e) if !stats.full => {
                tracing::warn!(table = %self.table, "policy rules out of step, rebuilding: {e}");
                drop(applied);
                self.sync(desired).map(|mut s| {
                    s.full = true;
                    s
                })
            }
            Err(e) => Err(e),
        }
    }

    /// The commands that turn `old` into `new`, ordered so nothing is referred to before it
    /// exists or deleted while referred to.
    fn diff(&self, old: &Rendered, new: &Rendered) -> Vec<Value> {
        let mut c = Vec::new();
        let ip_elems = |ips: Vec<&Ipv4Addr>| -> Value {
            json!(ips.iter().map(|i| i.to_string()).collect::<Vec<_>>())
        };
        // Sets: new ones, then element changes.
        for (name, members) in &new.sets {
            let was = old.sets.get(name);
            if was.is_none() {
                c.push(self.cmd("add", "set", json!({"name": name, "type": "ipv4_addr"})));
            }
            let empty = BTreeSet::new();
            let was = was.unwrap_or(&empty);
            let added: Vec<&Ipv4Addr> = members.difference(was).collect();
            let gone: Vec<&Ipv4Addr> = was.difference(members).collect();
            if !added.is_empty() {
                c.push(self.cmd(
                    "add",
                    "element",
                    json!({"name": name, "elem": ip_elems(added)}),
                ));
            }
            if !gone.is_empty() {
                c.push(self.cmd(
                    "delete",
                    "element",
                    json!({"name": name, "elem": ip_elems(gone)}),
                ));
            }
        }
        // Chains: new ones made, changed ones rewritten.
        for (name, rules) in &new.chains {
            match old.chains.get(name) {
                Some(was) if was == rules => continue,
                Some(_) => c.push(self.cmd("flush", "chain", json!({"name": name}))),
                None => c.push(self.cmd("add", "chain", json!({"name": name}))),
            }
            for r in rules {
                c.push(self.rule(name, r.clone()));
            }
        }
        // Map elements: removed or changed ones out, then the new ones in.
        for (key, chain) in &old.elements {
            if new.elements.get(key) != Some(chain) {
                c.push(self.cmd(
                    "delete",
                    "element",
                    json!({"name": key.0, "elem": [key.1.to_string()]}),
                ));
            }
        }
        for (key, chain) in &new.elements {
            if old.elements.get(key) != Some(chain) {
                c.push(self.cmd(
                    "add",
                    "element",
                    json!({"name": key.0, "elem": [[key.1.to_string(),
                        {"jump": {"target": chain}}]]}),
                ));
            }
        }
        // What nothing refers to any more goes last.
        for name in old.chains.keys() {
            if !new.chains.contains_key(name) {
                c.push(self.cmd("flush", "chain", json!({"name": name})));
                c.push(self.cmd("delete", "chain", json!({"name": name})));
            }
        }
        for name in old.sets.keys() {
            if !new.sets.contains_key(name) {
                c.push(self.cmd("delete", "set", json!({"name": name})));
            }
        }
        c
    }

    /// Deletes this table.
    pub fn delete(&self) -> Result<(), NetworkError> {
        *self.applied.lock().unwrap_or_else(|e| e.into_inner()) = None;
        crate::kubeproxy::delete_table(&self.table)
    }
}

impl crate::Networks {
    /// The name of the NetworkPolicy table for this engine: `<engine table>-netpol`
    /// (`barge-netpol` for the default exec root).
    pub fn netpol_table(&self) -> String {
        format!("{}-netpol", self.table())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn table() -> PolicyTable {
        PolicyTable {
            table: "t".into(),
            applied: Mutex::new(Some(Rendered::default())),
        }
    }

    #[test]
    fn clauses_become_return_rules_then_drop() {
        let rules = clause_rules(
            &[
                Clause {
                    addrs: Addrs::Set("ns/p/ingress/0/0".into()),
                    ports: vec![
                        PortMatch {
                            proto: "tcp".into(),
                            ports: Some((80, 80)),
                        },
                        PortMatch {
                            proto: "udp".into(),
                            ports: Some((1000, 2000)),
                        },
                    ],
                },
                Clause {
                    addrs: Addrs::Cidr {
                        net: "10.0.0.0/8".parse().unwrap(),
                        except: vec!["10.1.0.0/16".parse().unwrap()],
                    },
                    ports: vec![],
                },
            ],
            "saddr",
        );
        assert_eq!(rules.len(), 4);
        let s: Vec<String> = rules.iter().map(|r| json!(r).to_string()).collect();
        assert!(s[0].contains(&set_name("ns/p/ingress/0/0")), "{}", s[0]);
        assert!(s[0].contains(r#""right":80"#), "{}", s[0]);
        assert!(s[1].contains(r#""range":[1000,2000]"#), "{}", s[1]);
        assert!(
            s[2].contains(r#""op":"!=""#) && s[2].contains("10.1.0.0"),
            "{}",
            s[2]
        );
        assert!(s[2].ends_with(r#"{"return":null}]"#), "{}", s[2]);
        assert_eq!(s[3], r#"[{"drop":null}]"#);
        // No clause at all: deny everything.
        assert_eq!(
            clause_rules(&[], "daddr"),
            vec![vec![json!({"drop": null})]]
        );
    }

    #[test]
    fn a_label_change_touches_set_elements_only() {
        let t = table();
        let mut d = Desired::default();
        d.pods.insert(
            ip("10.42.0.5"),
            PodRules {
                ingress: Some(vec![Clause {
                    addrs: Addrs::Set("s".into()),
                    ports: vec![],
                }]),
                egress: None,
            },
        );
        d.sets.insert("s".into(), [ip("10.42.0.6")].into());
        let first = t.diff(&Rendered::default(), &render(&d));
        let text = json!(first).to_string();
        assert!(text.contains(r#""name":"ingress-10.42.0.5""#), "{text}");
        assert!(
            text.contains(r#""jump":{"target":"ingress-10.42.0.5"}"#),
            "{text}"
        );
        let before = render(&d);
        d.sets.insert("s".into(), [ip("10.42.0.7")].into());
        let second = t.diff(&before, &render(&d));
        assert_eq!(second.len(), 2, "{second:?}");
        assert!(second.iter().all(|c| c.to_string().contains("element")));
        // Dropping the pod's isolation removes its map element, chain and the set.
        let third = t.diff(&render(&d), &render(&Desired::default()));
        let text = json!(third).to_string();
        assert!(text.starts_with(r#"[{"delete":{"element""#), "{text}");
        assert!(text.contains(r#"{"delete":{"set""#), "{text}");
        // Nothing changed: nothing to do.
        assert!(t.diff(&render(&d), &render(&d)).is_empty());
    }
}
