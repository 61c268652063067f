//! The cluster's Service proxy in nftables, with kube-proxy's nftables-mode semantics
//! (kubernetes `pkg/proxy/nftables/proxier.go`) in a table of its own (`ip <name>`, next to
//! the engine's, never shared with it): the node agent computes what each Service port should
//! do ([`ServicePort`]: its ClusterIP, node port, the endpoints to spread over) and
//! [`ServiceProxy::sync`] turns the difference with what was applied last into **one**
//! `nft -j` transaction — a changed endpoint rewrites only its Service's chain and the map
//! elements that point at it, never the whole table (kube-proxy's partial sync).
//!
//! Layout (kube-proxy's names):
//! - base chains `nat-prerouting`/`nat-output` (nat, dstnat) jump to `services`, which looks
//!   the destination up in the verdict map `service-ips` (`ip . proto . port` → `goto
//!   service-…`) and, for a local destination other than loopback, `service-nodeports`
//!   (`proto . port`: node ports, and the ports of admitted LoadBalancer Services — k3s's
//!   ServiceLB without its helper pods);
//! - `service-<hash>-<ns>/<name>/<proto>/<port name>`: marks traffic for masquerade when it
//!   comes from outside the cluster CIDR (for node ports: always), sends a client back to its
//!   endpoint while it has ClientIP affinity, then spreads new connections with `numgen random
//!   mod N` over `endpoint-<hash>-…__<ip>/<port>` chains, which mark hairpin traffic (an
//!   endpoint reaching itself) and DNAT;
//! - `nat-postrouting` (srcnat) masquerades marked packets (`0x4000`, kube's bit);
//! - `filter-input`/`filter-forward`/`filter-output` (filter, priority -110, before DNAT)
//!   REJECT new connections to a Service port without endpoints (`no-endpoint-services`,
//!   `no-endpoint-nodeports`), so clients are refused at once instead of timing out.
//!
//! Invariants: the table is made whole by [`ServiceProxy::new`] (an old one is replaced);
//! after that every change is one atomic transaction; if one fails (someone flushed the
//! table), the next sync rebuilds the table from scratch. [`delete_table`] removes it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Mutex;

use ipnet::Ipv4Net;
use serde_json::{json, Value};

use crate::error::NetworkError;
use crate::nft::{run_cmds, IpTable};

/// One endpoint (pod address and target port) of a Service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// What one port of one Service should do on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// `ns/name/proto/port-name` (kube-proxy's ServicePortName), unique per port.
    pub id: String,
    /// `tcp`, `udp` or `sctp`.
    pub proto: String,
    /// The ClusterIP (`None` for headless and ExternalName Services, which have no rules).
    pub cluster_ip: Option<Ipv4Addr>,
    pub port: u16,
    /// The node port (NodePort/LoadBalancer Services).
    pub node_port: Option<u16>,
    /// An admitted LoadBalancer Service (k3s's ServiceLB): `port` also answers on the
    /// node's own addresses (not loopback), as a node port does.
    pub load_balancer: bool,
    /// `sessionAffinity: ClientIP`'s timeout in seconds.
    pub affinity_timeout: Option<u32>,
    /// Where connections go (ready endpoints, else serving terminating ones); empty: REJECT.
    pub endpoints: Vec<Endpoint>,
    /// The endpoints of `endpoints` on this node (for the `Local` traffic policies).
    pub local_endpoints: Vec<Endpoint>,
    /// `internalTrafficPolicy: Local`: ClusterIP traffic goes only to `local_endpoints`, and is
    /// dropped when there are none (while other nodes have some).
    pub internal_local: bool,
    /// `externalTrafficPolicy: Local` (node ports, LoadBalancer ports): traffic from outside
    /// the node goes only to `local_endpoints`, its source kept (no masquerade), and is
    /// dropped when there are none; the node's own and its pods' traffic still goes to every
    /// endpoint (kube-proxy's short-circuit).
    pub external_local: bool,
}

/// What a sync changed (for logs and the rule-sync benchmark).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncStats {
    /// Service ports whose chains or map entries changed.
    pub changed: usize,
    /// Commands in the transaction (0: nothing to do).
    pub commands: usize,
    /// Whether the table was rebuilt from scratch.
    pub full: bool,
}

const MASQ_BIT: u32 = 0x4000;
const FAM: &str = "ip";

/// Deletes the proxy table `table` (missing is fine).
pub fn delete_table(table: &str) -> Result<(), NetworkError> {
    run_cmds(
        IpTable {
            name: table.to_string(),
        }
        .drop_cmds(),
    )
}

/// kube-proxy's chain-name hash: the first 8 characters of the base32 SHA-256 of `s`
/// (upper-case hex here; it only keeps names unique and short to compare).
fn hash8(s: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(s.as_bytes());
    h.iter()
        .take(4)
        .map(|b| format!("{b:02X}"))
        .collect::<String>()
}

fn service_chain(id: &str) -> String {
    format!("service-{}-{id}", hash8(id))
}

/// The chain spreading over this node's endpoints only (kube-proxy's `local-…` policy chain).
fn local_chain(id: &str) -> String {
    format!("local-{}-{id}", hash8(id))
}

/// The chain node-port traffic of an `externalTrafficPolicy: Local` Service goes to first
/// (kube-proxy's `external-…` chain).
fn external_chain(id: &str) -> String {
    format!("external-{}-{id}", hash8(id))
}

fn endpoint_chain(id: &str, ep: &Endpoint) -> String {
    let full = format!("{id}__{}/{}", ep.ip, ep.port);
    format!("endpoint-{}-{full}", hash8(&full))
}

fn affinity_set(id: &str, ep: &Endpoint) -> String {
    let full = format!("{id}__{}/{}", ep.ip, ep.port);
    format!("affinity-{}", hash8(&full))
}

fn m(left: Value, right: Value) -> Value {
    json!({"match": {"op": "==", "left": left, "right": right}})
}
fn m_ne(left: Value, right: Value) -> Value {
    json!({"match": {"op": "!=", "left": left, "right": right}})
}
fn payload(proto: &str, field: &str) -> Value {
    json!({"payload": {"protocol": proto, "field": field}})
}
fn l4proto() -> Value {
    json!({"meta": {"key": "l4proto"}})
}
fn th_dport() -> Value {
    payload("th", "dport")
}
fn jump(t: &str) -> Value {
    json!({"jump": {"target": t}})
}
fn goto(t: &str) -> Value {
    json!({"goto": {"target": t}})
}
fn local_daddr() -> Value {
    json!({"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}})
}
fn not_loopback() -> Value {
    m_ne(
        payload("ip", "daddr"),
        json!({"prefix": {"addr": "127.0.0.0", "len": 8}}),
    )
}
fn ct_new() -> Value {
    json!({"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}})
}

/// What one Service port looks like in the table (equal when the rules are, whatever the
/// input).
#[derive(Debug, Clone, Default)]
struct Rendered {
    /// The Service port's own chains (name → rules): the cluster-policy chain `service-…`,
    /// and for the Local policies `local-…` (this node's endpoints) and `external-…` (the
    /// node-port dispatch); none when the port has no endpoints.
    chains: BTreeMap<String, Vec<Value>>,
    /// Endpoint chains (name → rules) and affinity sets it uses.
    endpoints: BTreeMap<String, Vec<Value>>,
    affinity: BTreeMap<String, u32>,
    /// Map elements: (map, key, verdict).
    elements: Vec<(String, Value, Value)>,
    /// What it was rendered from: a sync re-renders only the ports whose input changed.
    input: Option<ServicePort>,
}

impl PartialEq for Rendered {
    fn eq(&self, other: &Self) -> bool {
        self.chains == other.chains
            && self.endpoints == other.endpoints
            && self.affinity == other.affinity
            && self.elements == other.elements
    }
}

/// The Service proxy of one node (one table).
pub struct ServiceProxy {
    table: String,
    cluster_cidr: Ipv4Net,
    service_cidr: Ipv4Net,
    /// What is in the kernel now, per Service port id; `None`: unknown (rebuild next).
    applied: Mutex<Option<BTreeMap<String, Rendered>>>,
}

impl ServiceProxy {
    /// Makes table `table` (replacing any table of that name) with the base chains and maps.
    /// `cluster_cidr` is the pods' range: traffic from outside it is masqueraded;
    /// `service_cidr` the ClusterIPs': what is still addressed to it after DNAT (an address
    /// or port no Service has) is rejected, never routed off the node.
    pub fn new(
        table: &str,
        cluster_cidr: Ipv4Net,
        service_cidr: Ipv4Net,
    ) -> Result<Self, NetworkError> {
        let p = ServiceProxy {
            table: table.to_string(),
            cluster_cidr,
            service_cidr,
            applied: Mutex::new(None),
        };
        run_cmds(p.base())?;
        *p.applied.lock().unwrap_or_else(|e| e.into_inner()) = Some(BTreeMap::new());
        Ok(p)
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

    /// The commands that (re)make the table with its base chains, maps and rules.
    fn base(&self) -> Vec<Value> {
        let t = &self.table;
        let mut c = self.nft().recreate_cmds();
        let base = |name: &str, ty: &str, hook: &str, prio: i32| {
            json!({"add": {"chain": {"family": FAM, "table": t, "name": name,
                "type": ty, "hook": hook, "prio": prio, "policy": "accept"}}})
        };
        let chain =
            |name: &str| json!({"add": {"chain": {"family": FAM, "table": t, "name": name}}});
        c.push(base("nat-prerouting", "nat", "prerouting", -100));
        c.push(base("nat-output", "nat", "output", -100));
        c.push(base("nat-postrouting", "nat", "postrouting", 100));
        c.push(base("filter-input", "filter", "input", -110));
        c.push(base("filter-forward", "filter", "forward", -110));
        c.push(base("filter-output", "filter", "output", -110));
        c.push(base("filter-output-post-dnat", "filter", "output", -90));
        for n in [
            "services",
            "masquerading",
            "mark-for-masquerade",
            "service-endpoints-check",
            "nodeport-endpoints-check",
            "reject-chain",
            "cluster-ips-check",
        ] {
            c.push(chain(n));
        }
        let map = |name: &str, ty: Vec<&str>| {
            json!({"add": {"map": {"family": FAM, "table": t, "name": name,
                "type": ty, "map": "verdict"}}})
        };
        c.push(map(
            "service-ips",
            vec!["ipv4_addr", "inet_proto", "inet_service"],
        ));
        c.push(map("service-nodeports", vec!["inet_proto", "inet_service"]));
        c.push(map(
            "no-endpoint-services",
            vec!["ipv4_addr", "inet_proto", "inet_service"],
        ));
        c.push(map(
            "no-endpoint-nodeports",
            vec!["inet_proto", "inet_service"],
        ));
        let ip_key = json!({"concat": [payload("ip", "daddr"), l4proto(), th_dport()]});
        let port_key = json!({"concat": [l4proto(), th_dport()]});
        let vmap =
            |key: &Value, map: &str| json!({"vmap": {"key": key, "data": format!("@{map}")}});
        c.push(self.rule("nat-prerouting", vec![jump("services")]));
        c.push(self.rule("nat-output", vec![jump("services")]));
        c.push(self.rule("nat-postrouting", vec![jump("masquerading")]));
        c.push(self.rule("services", vec![vmap(&ip_key, "service-ips")]));
        c.push(self.rule(
            "services",
            vec![
                local_daddr(),
                not_loopback(),
                vmap(&port_key, "service-nodeports"),
            ],
        ));
        c.push(self.rule(
            "masquerading",
            vec![
                m(
                    json!({"&": [{"meta": {"key": "mark"}}, MASQ_BIT]}),
                    json!(0),
                ),
                json!({"return": null}),
            ],
        ));
        c.push(self.rule(
            "masquerading",
            vec![
                json!({"mangle": {"key": {"meta": {"key": "mark"}},
                    "value": {"^": [{"meta": {"key": "mark"}}, MASQ_BIT]}}}),
                json!({"masquerade": {"flags": ["fully-random"]}}),
            ],
        ));
        c.push(self.rule(
            "mark-for-masquerade",
            vec![json!({"mangle": {"key": {"meta": {"key": "mark"}},
                "value": {"|": [{"meta": {"key": "mark"}}, MASQ_BIT]}}})],
        ));
        for ch in ["filter-input", "filter-forward", "filter-output"] {
            c.push(self.rule(ch, vec![ct_new(), jump("service-endpoints-check")]));
        }
        c.push(self.rule(
            "filter-input",
            vec![ct_new(), jump("nodeport-endpoints-check")],
        ));
        c.push(self.rule(
            "service-endpoints-check",
            vec![vmap(&ip_key, "no-endpoint-services")],
        ));
        c.push(self.rule(
            "nodeport-endpoints-check",
            vec![
                local_daddr(),
                not_loopback(),
                vmap(&port_key, "no-endpoint-nodeports"),
            ],
        ));
        c.push(self.rule("reject-chain", vec![json!({"reject": null})]));
        // After DNAT, anything still addressed to the service range has no Service behind it
        // (kube-proxy drops unallocated addresses and rejects unknown ports; barge rejects
        // both, so clients fail fast and nothing is routed to the default gateway).
        for ch in ["filter-forward", "filter-output-post-dnat"] {
            c.push(self.rule(ch, vec![ct_new(), jump("cluster-ips-check")]));
        }
        c.push(self.rule(
            "cluster-ips-check",
            vec![
                m(
                    payload("ip", "daddr"),
                    json!({"prefix": {"addr": self.service_cidr.network().to_string(),
                        "len": self.service_cidr.prefix_len()}}),
                ),
                goto("reject-chain"),
            ],
        ));
        c
    }

    /// How Service port `sp` looks in the table.
    fn render(&self, sp: &ServicePort) -> Rendered {
        let mut r = Rendered::default();
        let Some(cip) = sp.cluster_ip else {
            return r;
        };
        let proto = sp.proto.as_str();
        let node_ports: Vec<u16> = sp
            .node_port
            .into_iter()
            .chain(sp.load_balancer.then_some(sp.port))
            .collect();
        let ip_key = json!({"concat": [cip.to_string(), proto, sp.port]});
        let port_key = |np: u16| json!({"concat": [proto, np]});
        if sp.endpoints.is_empty() {
            r.elements
                .push(("no-endpoint-services".into(), ip_key, goto("reject-chain")));
            for np in node_ports {
                r.elements.push((
                    "no-endpoint-nodeports".into(),
                    port_key(np),
                    goto("reject-chain"),
                ));
            }
            return r;
        }
        let (cluster, local, external) = (
            service_chain(&sp.id),
            local_chain(&sp.id),
            external_chain(&sp.id),
        );
        let has_local = !sp.local_endpoints.is_empty();
        let drop = || json!({"drop": null});
        // The ClusterIP: the cluster chain, or this node's endpoints (none: dropped, as
        // kube-proxy does while other nodes have endpoints).
        if sp.internal_local && !has_local {
            r.elements
                .push(("no-endpoint-services".into(), ip_key, drop()));
        } else {
            let to = if sp.internal_local { &local } else { &cluster };
            r.elements.push(("service-ips".into(), ip_key, goto(to)));
        }
        let to = if sp.external_local {
            &external
        } else {
            &cluster
        };
        for &np in &node_ports {
            r.elements
                .push(("service-nodeports".into(), port_key(np), goto(to)));
            if sp.external_local && !has_local {
                // What the external chain did not send to the cluster chain is dropped at
                // the input hook.
                r.elements
                    .push(("no-endpoint-nodeports".into(), port_key(np), drop()));
            }
        }
        let cidr = json!({"prefix": {"addr": self.cluster_cidr.network().to_string(),
            "len": self.cluster_cidr.prefix_len()}});
        // Traffic to the ClusterIP from outside the pod network is masqueraded (replies
        // must come back through this node).
        let cluster_ip_masq: Value = vec![
            m(payload("ip", "daddr"), json!(cip.to_string())),
            m(th_dport(), json!(sp.port)),
            m_ne(payload("ip", "saddr"), cidr.clone()),
            jump("mark-for-masquerade"),
        ]
        .into();
        let eps: Vec<(String, &Endpoint)> = sp
            .endpoints
            .iter()
            .map(|e| (endpoint_chain(&sp.id, e), e))
            .collect();
        // The cluster chain: every endpoint; node-port traffic always masqueraded.
        let mut rules = vec![cluster_ip_masq.clone()];
        if !node_ports.is_empty() {
            rules.push(
                vec![
                    m_ne(payload("ip", "daddr"), json!(cip.to_string())),
                    jump("mark-for-masquerade"),
                ]
                .into(),
            );
        }
        rules.extend(self.spread(sp, &eps, &mut r));
        r.chains.insert(cluster.clone(), rules);
        // The local chain: this node's endpoints, node-port traffic's source kept.
        if has_local && (sp.internal_local || sp.external_local) {
            let mine: Vec<(String, &Endpoint)> = eps
                .iter()
                .filter(|(_, e)| sp.local_endpoints.contains(e))
                .cloned()
                .collect();
            let mut rules = vec![cluster_ip_masq];
            rules.extend(self.spread(sp, &mine, &mut r));
            r.chains.insert(local.clone(), rules);
        }
        // The external chain: the node's own traffic (masqueraded) and its pods' go to every
        // endpoint, the rest to this node's.
        if sp.external_local && !node_ports.is_empty() {
            let local_saddr = json!({"match": {"op": "==",
                "left": {"fib": {"result": "type", "flags": ["saddr"]}}, "right": "local"}});
            let mut rules: Vec<Value> = vec![
                vec![local_saddr.clone(), jump("mark-for-masquerade")].into(),
                vec![local_saddr, goto(&cluster)].into(),
                vec![m(payload("ip", "saddr"), cidr), goto(&cluster)].into(),
            ];
            if has_local {
                rules.push(vec![goto(&local)].into());
            }
            r.chains.insert(external, rules);
        }
        for (name, e) in &eps {
            let mut rules: Vec<Value> = vec![vec![
                m(payload("ip", "saddr"), json!(e.ip.to_string())),
                jump("mark-for-masquerade"),
            ]
            .into()];
            if sp.affinity_timeout.is_some() {
                let set = affinity_set(&sp.id, e);
                rules.push(
                    vec![
                        json!({"set": {"op": "update", "elem": payload("ip", "saddr"),
                        "set": format!("@{set}")}}),
                    ]
                    .into(),
                );
            }
            rules.push(
                vec![
                    m(l4proto(), json!(proto)),
                    json!({"dnat": {"addr": e.ip.to_string(), "port": e.port}}),
                ]
                .into(),
            );
            r.endpoints.insert(name.clone(), rules);
        }
        r
    }

    /// The rules that spread new connections over `eps` (endpoint chain names and
    /// endpoints): a client with ClientIP affinity back to its endpoint first, then `numgen
    /// random mod N`. Affinity sets used are recorded in `r`.
    fn spread(
        &self,
        sp: &ServicePort,
        eps: &[(String, &Endpoint)],
        r: &mut Rendered,
    ) -> Vec<Value> {
        let mut rules = Vec::new();
        if let Some(timeout) = sp.affinity_timeout {
            for (name, e) in eps {
                let set = affinity_set(&sp.id, e);
                r.affinity.insert(set.clone(), timeout);
                rules.push(
                    vec![
                        m(payload("ip", "saddr"), json!(format!("@{set}"))),
                        goto(name),
                    ]
                    .into(),
                );
            }
        }
        let spread: Vec<Value> = eps
            .iter()
            .enumerate()
            .map(|(i, (name, _))| json!([i, goto(name)]))
            .collect();
        rules.push(
            vec![json!({"vmap": {
                "key": {"numgen": {"mode": "random", "mod": eps.len(), "offset": 0}},
                "data": {"set": spread}}})]
            .into(),
        );
        rules
    }

    /// Brings the table to `desired` (every Service port of the cluster, by id) in one
    /// transaction holding only what changed since the last sync.
    pub fn sync(&self, desired: &[ServicePort]) -> Result<SyncStats, NetworkError> {
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        let mut stats = SyncStats::default();
        let (mut cmds, mut old) = match applied.take() {
            Some(old) => (Vec::new(), old),
            None => {
                stats.full = true;
                (self.base(), BTreeMap::new())
            }
        };
        // Ports whose input is what was applied keep their rendering (and send nothing).
        let mut want: BTreeMap<String, Rendered> = BTreeMap::new();
        let mut unchanged: BTreeSet<String> = BTreeSet::new();
        for sp in desired {
            let kept = old
                .get(&sp.id)
                .is_some_and(|r| r.input.as_ref() == Some(sp));
            let r = if kept {
                unchanged.insert(sp.id.clone());
                old.remove(&sp.id).expect("checked")
            } else {
                let mut r = self.render(sp);
                r.input = Some(sp.clone());
                r
            };
            want.insert(sp.id.clone(), r);
        }
        let empty = Rendered::default();
        let ids: BTreeSet<&String> = want
            .keys()
            .filter(|id| !unchanged.contains(*id))
            .chain(old.keys())
            .collect();
        let (mut creates, mut adds, mut flushes, mut elems_del, mut elems_add) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut deletes, mut removals) = (Vec::new(), Vec::new());
        for id in ids {
            let (new, was) = (
                want.get(id).unwrap_or(&empty),
                old.get(id).unwrap_or(&empty),
            );
            if new == was {
                continue;
            }
            stats.changed += 1;
            // Affinity sets and endpoint chains that are new.
            for (set, timeout) in &new.affinity {
                if !was.affinity.contains_key(set) {
                    adds.push(self.cmd(
                        "add",
                        "set",
                        json!({"name": set,
                        "type": "ipv4_addr", "flags": ["timeout"],
                        "timeout": timeout}),
                    ));
                }
            }
            for (name, rules) in &new.endpoints {
                if !was.endpoints.contains_key(name) {
                    adds.push(self.cmd("add", "chain", json!({"name": name})));
                    for r in rules {
                        adds.push(self.rule(name, r.as_array().cloned().unwrap_or_default()));
                    }
                }
            }
            // The Service port's chains: new ones made first (they may refer to each other),
            // changed ones rewritten.
            for (name, rules) in &new.chains {
                match was.chains.get(name) {
                    Some(old) if old == rules => continue,
                    Some(_) => flushes.push(self.cmd("flush", "chain", json!({"name": name}))),
                    None => creates.push(self.cmd("add", "chain", json!({"name": name}))),
                }
                for r in rules {
                    flushes.push(self.rule(name, r.as_array().cloned().unwrap_or_default()));
                }
            }
            // Map elements.
            for e in &was.elements {
                if !new.elements.contains(e) {
                    elems_del.push(self.cmd(
                        "delete",
                        "element",
                        json!({"name": e.0, "elem": [e.1]}),
                    ));
                }
            }
            for e in &new.elements {
                if !was.elements.contains(e) {
                    elems_add.push(self.cmd(
                        "add",
                        "element",
                        json!({"name": e.0, "elem": [[e.1, e.2]]}),
                    ));
                }
            }
            // What is no longer used goes last (nothing refers to it by then): every chain
            // flushed before any is deleted.
            for name in was.chains.keys() {
                if !new.chains.contains_key(name) {
                    deletes.push(self.cmd("flush", "chain", json!({"name": name})));
                    removals.push(self.cmd("delete", "chain", json!({"name": name})));
                }
            }
            for name in was.endpoints.keys() {
                if !new.endpoints.contains_key(name) {
                    deletes.push(self.cmd("flush", "chain", json!({"name": name})));
                    removals.push(self.cmd("delete", "chain", json!({"name": name})));
                }
            }
            for set in was.affinity.keys() {
                if !new.affinity.contains_key(set) {
                    removals.push(self.cmd("delete", "set", json!({"name": set})));
                }
            }
        }
        // Map elements must not be deleted and re-added in one go for the same key: a
        // changed verdict for a key is a delete, then an add (in this order).
        cmds.extend(creates);
        cmds.extend(adds);
        cmds.extend(flushes);
        cmds.extend(elems_del);
        cmds.extend(elems_add);
        cmds.extend(deletes);
        cmds.extend(removals);
        stats.commands = cmds.len();
        if cmds.is_empty() {
            *applied = Some(want);
            return Ok(stats);
        }
        match run_cmds(cmds) {
            Ok(()) => {
                *applied = Some(want);
                Ok(stats)
            }
            Err(e) if !stats.full => {
                // The kernel is not what we think: rebuild the table whole.
                tracing::warn!(table = %self.table, "service rules out of step, rebuilding: {e}");
                drop(applied);
                self.sync(desired).map(|mut s| {
                    s.full = true;
                    s
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes this proxy's table.
    pub fn delete(&self) -> Result<(), NetworkError> {
        *self.applied.lock().unwrap_or_else(|e| e.into_inner()) = None;
        delete_table(&self.table)
    }
}

impl crate::Networks {
    /// The name of the cluster Service proxy's table for this engine: `<engine table>-proxy`
    /// (`barge-proxy` for the default exec root), so servers with their own exec roots never
    /// share one.
    pub fn proxy_table(&self) -> String {
        format!("{}-proxy", self.table())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy() -> ServiceProxy {
        ServiceProxy {
            table: "t".into(),
            cluster_cidr: "10.42.0.0/16".parse().unwrap(),
            service_cidr: "10.43.0.0/16".parse().unwrap(),
            applied: Mutex::new(Some(BTreeMap::new())),
        }
    }

    fn sp(eps: &[(&str, u16)]) -> ServicePort {
        ServicePort {
            id: "ns/api/tcp/http".into(),
            proto: "tcp".into(),
            cluster_ip: Some("10.43.1.2".parse().unwrap()),
            port: 80,
            node_port: Some(30080),
            load_balancer: false,
            affinity_timeout: None,
            endpoints: eps
                .iter()
                .map(|(ip, port)| Endpoint {
                    ip: ip.parse().unwrap(),
                    port: *port,
                })
                .collect(),
            local_endpoints: Vec::new(),
            internal_local: false,
            external_local: false,
        }
    }

    #[test]
    fn no_endpoints_reject_and_endpoints_spread() {
        let p = proxy();
        let r = p.render(&sp(&[]));
        assert!(r.chains.is_empty());
        assert_eq!(r.elements.len(), 2);
        assert!(r.elements.iter().all(|e| e.0.starts_with("no-endpoint-")));
        let r = p.render(&sp(&[("10.42.0.5", 8080), ("10.42.0.6", 8080)]));
        assert_eq!(r.endpoints.len(), 2);
        let last = r.chains[&service_chain("ns/api/tcp/http")]
            .last()
            .unwrap()
            .to_string();
        assert!(last.contains(r#""mod":2"#), "{last}");
        assert!(r.elements.iter().any(|e| e.0 == "service-nodeports"));
    }

    #[test]
    fn load_balancer_ports_answer_on_the_node_as_node_ports_do() {
        let p = proxy();
        let mut s = sp(&[("10.42.0.5", 8080)]);
        s.load_balancer = true;
        let r = p.render(&s);
        let keys: Vec<String> = r
            .elements
            .iter()
            .filter(|e| e.0 == "service-nodeports")
            .map(|e| e.1.to_string())
            .collect();
        assert_eq!(
            keys,
            vec![r#"{"concat":["tcp",30080]}"#, r#"{"concat":["tcp",80]}"#]
        );
        s.endpoints.clear();
        let r = p.render(&s);
        assert_eq!(
            r.elements
                .iter()
                .filter(|e| e.0 == "no-endpoint-nodeports")
                .count(),
            2
        );
    }

    #[test]
    fn local_traffic_policies_use_this_nodes_endpoints() {
        let p = proxy();
        let mut s = sp(&[("10.42.0.5", 8080), ("10.42.1.7", 8080)]);
        s.internal_local = true;
        s.external_local = true;
        // No endpoint here: the ClusterIP and (past the short-circuit) the node port drop.
        let r = p.render(&s);
        let verdicts: Vec<(String, String)> = r
            .elements
            .iter()
            .map(|e| (e.0.clone(), e.2.to_string()))
            .collect();
        assert!(verdicts.contains(&("no-endpoint-services".into(), r#"{"drop":null}"#.into())));
        assert!(verdicts.contains(&("no-endpoint-nodeports".into(), r#"{"drop":null}"#.into())));
        let ext = external_chain(&s.id);
        assert!(verdicts.contains(&("service-nodeports".into(), goto(&ext).to_string())));
        assert!(!r.chains.contains_key(&local_chain(&s.id)));
        assert_eq!(r.chains[&ext].len(), 3, "only the short-circuit rules");
        // One endpoint here: the ClusterIP and outside traffic go to it alone, unmasqueraded.
        s.local_endpoints = vec![s.endpoints[0].clone()];
        let r = p.render(&s);
        let local = local_chain(&s.id);
        assert!(r
            .elements
            .iter()
            .any(|e| e.0 == "service-ips" && e.2 == goto(&local)));
        assert!(!r.elements.iter().any(|e| e.0.starts_with("no-endpoint-")));
        let spread = r.chains[&local].last().unwrap().to_string();
        assert!(spread.contains(r#""mod":1"#), "{spread}");
        assert_eq!(r.chains[&ext].last().unwrap(), &json!([goto(&local)]));
        // Cluster policies leave the local chains out.
        s.internal_local = false;
        s.external_local = false;
        let r = p.render(&s);
        assert_eq!(r.chains.len(), 1);
        let cluster = service_chain(&s.id);
        assert!(r
            .elements
            .iter()
            .all(|e| e.0 != "service-ips" || e.2 == goto(&cluster)));
    }

    #[test]
    fn only_off_cluster_sources_node_ports_and_hairpin_are_masqueraded() {
        let p = proxy();
        let s = sp(&[("10.42.0.5", 8080), ("10.42.0.6", 8080)]);
        let r = p.render(&s);
        let mark = jump("mark-for-masquerade");
        // The cluster chain: ClusterIP traffic from outside the cluster CIDR, and node-port
        // traffic (its destination is not the ClusterIP); a pod's ClusterIP traffic is not.
        let rules = &r.chains[&service_chain(&s.id)];
        let marking: Vec<&Value> = rules
            .iter()
            .filter(|x| x.as_array().unwrap().contains(&mark))
            .collect();
        assert_eq!(marking.len(), 2, "{rules:?}");
        assert_eq!(
            marking[0][2],
            m_ne(
                payload("ip", "saddr"),
                json!({"prefix": {"addr": "10.42.0.0", "len": 16}})
            )
        );
        assert_eq!(
            marking[1][0],
            m_ne(payload("ip", "daddr"), json!("10.43.1.2"))
        );
        // Each endpoint chain: only the endpoint reaching itself (hairpin), before its DNAT.
        for (name, rules) in &r.endpoints {
            let ip = name.rsplit("__").next().unwrap().split('/').next().unwrap();
            assert_eq!(
                rules[0],
                json!([m(payload("ip", "saddr"), json!(ip)), mark.clone()]),
                "{name}"
            );
            assert!(rules[1..]
                .iter()
                .all(|x| !x.as_array().unwrap().contains(&mark)));
        }
    }

    #[test]
    fn chain_names_are_kube_proxys() {
        let n = endpoint_chain(
            "ns/api/tcp/http",
            &Endpoint {
                ip: "10.42.0.5".parse().unwrap(),
                port: 8080,
            },
        );
        assert!(n.starts_with("endpoint-"));
        assert!(n.ends_with("-ns/api/tcp/http__10.42.0.5/8080"));
        assert!(service_chain("ns/api/tcp/http").ends_with("-ns/api/tcp/http"));
    }
}
