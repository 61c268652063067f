//! NetworkPolicy enforcement (networking.k8s.io/v1) for this node's pods: NetworkPolicies,
//! Namespaces and Pods are watched; after each burst of changes [`compile`] turns them into
//! what `barge_network::netpol::PolicyTable::sync` writes (only the difference, in one
//! nftables transaction).
//!
//! Semantics as the API reference gives them
//! (<https://kubernetes.io/docs/concepts/services-networking/network-policies/>, and as
//! kube-network-policies and Calico implement them):
//! - a pod is isolated for a direction once any policy of its namespace selects it (an empty
//!   or omitted `podSelector`: every pod of the namespace) with that direction in
//!   `policyTypes`; omitted `policyTypes` means `Ingress`, plus `Egress` when the policy has
//!   egress rules;
//! - what an isolated pod may do is the union of the selecting policies' rules; a rule
//!   allows traffic matching one of its peers (`from`/`to`; omitted or empty: any address)
//!   and one of its ports (omitted or empty: every port and protocol);
//! - a peer is a `podSelector` (pods of the policy's namespace), a `namespaceSelector` (all
//!   pods of the matching namespaces), both (the matching pods of the matching namespaces),
//!   or an `ipBlock` (`cidr` minus `except`);
//! - a port is a protocol (TCP by default, UDP, SCTP) with a number (up to `endPort`), a
//!   name — resolved against the destination pod's container ports (ingress: the isolated
//!   pod; egress: each peer pod, grouped by the number the name gives), a name no container
//!   declares matches nothing — or nothing (every port of the protocol);
//! - replies of allowed connections and traffic from the node itself always pass.
//!
//! Pods are known by `status.podIP` (IPv4; host-network pods and finished pods are not
//! selectable, as in kube-network-policies). A policy that slipped past validation (an
//! unparsable CIDR) loses only the peer concerned, which then matches nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use barge_network::netpol::{Addrs, Clause, Desired, PodRules, PolicyTable, PortMatch};
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Client;
use tokio::sync::watch;

use crate::watch_all;

type Labels = BTreeMap<String, String>;

/// `labels` matched by a label selector (`metav1.LabelSelectorAsSelector`; empty: all).
pub fn selector_matches(sel: &LabelSelector, labels: &Labels) -> bool {
    if let Some(ml) = &sel.match_labels {
        if !ml.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    sel.match_expressions.iter().flatten().all(|e| {
        let v = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => v.is_some_and(|v| values.contains(v)),
            "NotIn" => v.is_none_or(|v| !values.contains(v)),
            "Exists" => v.is_some(),
            "DoesNotExist" => v.is_none(),
            _ => false,
        }
    })
}

/// A pod policies can select: running or pending with an IPv4 address, not on the host's
/// network.
struct PodInfo<'a> {
    ns: &'a str,
    ip: Ipv4Addr,
    labels: Labels,
    node: Option<&'a str>,
    pod: &'a Pod,
}

fn pod_info(p: &Pod) -> Option<PodInfo<'_>> {
    let spec = p.spec.as_ref()?;
    if spec.host_network == Some(true) {
        return None;
    }
    let st = p.status.as_ref()?;
    if matches!(st.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    let ip = st.pod_ip.as_deref()?.parse().ok()?;
    Some(PodInfo {
        ns: p.metadata.namespace.as_deref()?,
        ip,
        labels: p.metadata.labels.clone().unwrap_or_default(),
        node: spec.node_name.as_deref(),
        pod: p,
    })
}

/// The number `name` gives for `proto` among `pod`'s container ports.
fn named_port(pod: &Pod, name: &str, proto: &str) -> Option<u16> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| {
            p.name.as_deref() == Some(name)
                && p.protocol
                    .as_deref()
                    .unwrap_or("TCP")
                    .eq_ignore_ascii_case(proto)
        })
        .and_then(|p| u16::try_from(p.container_port).ok())
}

fn proto_of(p: &NetworkPolicyPort) -> String {
    p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase()
}

/// A numeric port entry (or a protocol alone) as a [`PortMatch`]; `None` for a named port.
fn numeric_port(p: &NetworkPolicyPort) -> Option<PortMatch> {
    let proto = proto_of(p);
    match &p.port {
        None => Some(PortMatch { proto, ports: None }),
        Some(IntOrString::Int(n)) => {
            let lo = u16::try_from(*n).ok()?;
            let hi = p
                .end_port
                .and_then(|e| u16::try_from(e).ok())
                .filter(|e| *e >= lo)
                .unwrap_or(lo);
            Some(PortMatch {
                proto,
                ports: Some((lo, hi)),
            })
        }
        Some(IntOrString::String(s)) => s.parse::<u16>().ok().map(|n| PortMatch {
            proto,
            ports: Some((n, n)),
        }),
    }
}

fn is_named(p: &NetworkPolicyPort) -> Option<&str> {
    match &p.port {
        Some(IntOrString::String(s)) if s.parse::<u16>().is_err() => Some(s),
        _ => None,
    }
}

/// An `ipBlock` as IPv4 networks; `None` when it cannot be read (or is IPv6: this table
/// sees IPv4 only), so it matches nothing.
fn ip_block(b: &k8s_openapi::api::networking::v1::IPBlock) -> Option<(Ipv4Net, Vec<Ipv4Net>)> {
    let net: Ipv4Net = b.cidr.parse().ok()?;
    let mut except = Vec::new();
    for e in b.except.iter().flatten() {
        match e.parse::<ipnet::IpNet>() {
            Ok(ipnet::IpNet::V4(n)) => except.push(n.trunc()),
            Ok(ipnet::IpNet::V6(_)) => {}
            Err(_) => return None,
        }
    }
    Some((net.trunc(), except))
}

/// Who a peer is: an address block, or the set of pods it selects.
enum PeerKind {
    Block(Ipv4Net, Vec<Ipv4Net>),
    Pods(BTreeSet<Ipv4Addr>),
}

/// The cluster as the compiler sees it.
struct Cluster<'a> {
    pods: Vec<PodInfo<'a>>,
    ns_labels: BTreeMap<&'a str, Labels>,
}

impl Cluster<'_> {
    fn peer(&self, policy_ns: &str, peer: &NetworkPolicyPeer) -> Option<PeerKind> {
        if let Some(b) = &peer.ip_block {
            let Some((net, except)) = ip_block(b) else {
                tracing::warn!(cidr = %b.cidr, "network policy: unusable ipBlock ignored");
                return None;
            };
            return Some(PeerKind::Block(net, except));
        }
        if peer.pod_selector.is_none() && peer.namespace_selector.is_none() {
            return None;
        }
        let empty = Labels::new();
        let members = self
            .pods
            .iter()
            .filter(|p| match &peer.namespace_selector {
                None => p.ns == policy_ns,
                Some(sel) => selector_matches(sel, self.ns_labels.get(p.ns).unwrap_or(&empty)),
            })
            .filter(|p| {
                peer.pod_selector
                    .as_ref()
                    .is_none_or(|sel| selector_matches(sel, &p.labels))
            })
            .map(|p| p.ip)
            .collect();
        Some(PeerKind::Pods(members))
    }
}

fn block_contains(net: &Ipv4Net, except: &[Ipv4Net], ip: Ipv4Addr) -> bool {
    net.contains(&ip) && !except.iter().any(|e| e.contains(&ip))
}

/// The policy types a policy has (kube's defaulting when omitted).
fn policy_types(np: &NetworkPolicy) -> (bool, bool) {
    let Some(spec) = &np.spec else {
        return (true, false);
    };
    match spec.policy_types.as_deref() {
        Some(t) if !t.is_empty() => (
            t.iter().any(|t| t == "Ingress"),
            t.iter().any(|t| t == "Egress"),
        ),
        _ => (true, spec.egress.as_ref().is_some_and(|e| !e.is_empty())),
    }
}

/// What the policies mean for the pods of `node` (every pod of the cluster and every
/// namespace are needed for the peers).
pub fn compile(
    policies: &[Arc<NetworkPolicy>],
    namespaces: &[Arc<Namespace>],
    pods: &[Arc<Pod>],
    node: &str,
) -> Desired {
    let cluster = Cluster {
        pods: pods.iter().filter_map(|p| pod_info(p)).collect(),
        ns_labels: namespaces
            .iter()
            .filter_map(|n| {
                Some((
                    n.metadata.name.as_deref()?,
                    n.metadata.labels.clone().unwrap_or_default(),
                ))
            })
            .collect(),
    };
    let mut policies: Vec<&Arc<NetworkPolicy>> = policies.iter().collect();
    policies.sort_by_key(|p| (p.metadata.namespace.clone(), p.metadata.name.clone()));
    let mut out = Desired::default();
    for pod in cluster.pods.iter().filter(|p| p.node == Some(node)) {
        if out.pods.contains_key(&pod.ip) {
            continue;
        }
        let mut rules = PodRules::default();
        for np in &policies {
            let (Some(ns), Some(name), Some(spec)) = (
                np.metadata.namespace.as_deref(),
                np.metadata.name.as_deref(),
                np.spec.as_ref(),
            ) else {
                continue;
            };
            if ns != pod.ns
                || !spec
                    .pod_selector
                    .as_ref()
                    .is_none_or(|s| selector_matches(s, &pod.labels))
            {
                continue;
            }
            let (ingress, egress) = policy_types(np);
            let id = format!("{ns}/{name}");
            if ingress {
                let clauses = rules.ingress.get_or_insert_with(Vec::new);
                for (i, r) in spec.ingress.iter().flatten().enumerate() {
                    ingress_rule(
                        &cluster,
                        &mut out,
                        clauses,
                        pod,
                        &format!("{id}/ingress/{i}"),
                        ns,
                        r.from.as_deref(),
                        r.ports.as_deref(),
                    );
                }
            }
            if egress {
                let clauses = rules.egress.get_or_insert_with(Vec::new);
                for (i, r) in spec.egress.iter().flatten().enumerate() {
                    egress_rule(
                        &cluster,
                        &mut out,
                        clauses,
                        &format!("{id}/egress/{i}"),
                        ns,
                        r.to.as_deref(),
                        r.ports.as_deref(),
                    );
                }
            }
        }
        for c in [&mut rules.ingress, &mut rules.egress]
            .into_iter()
            .flatten()
        {
            c.sort();
            c.dedup();
        }
        out.pods.insert(pod.ip, rules);
    }
    out
}

/// The peers of a rule as clause addresses (sets registered in `out`); `None` entries are
/// peers that match nothing.
fn peer_addrs(
    cluster: &Cluster,
    out: &mut Desired,
    id: &str,
    ns: &str,
    peers: Option<&[NetworkPolicyPeer]>,
) -> Vec<Addrs> {
    let Some(peers) = peers.filter(|p| !p.is_empty()) else {
        return vec![Addrs::Any];
    };
    let mut v = Vec::new();
    for (j, peer) in peers.iter().enumerate() {
        match cluster.peer(ns, peer) {
            Some(PeerKind::Block(net, except)) => v.push(Addrs::Cidr { net, except }),
            Some(PeerKind::Pods(members)) => {
                let set = format!("{id}/{j}");
                out.sets.insert(set.clone(), members);
                v.push(Addrs::Set(set));
            }
            None => {}
        }
    }
    v
}

#[allow(clippy::too_many_arguments)]
fn ingress_rule(
    cluster: &Cluster,
    out: &mut Desired,
    clauses: &mut Vec<Clause>,
    pod: &PodInfo,
    id: &str,
    ns: &str,
    from: Option<&[NetworkPolicyPeer]>,
    ports: Option<&[NetworkPolicyPort]>,
) {
    // Ports resolved against this (the destination) pod.
    let ports: Option<Vec<PortMatch>> = ports.filter(|p| !p.is_empty()).map(|ps| {
        ps.iter()
            .filter_map(|p| match is_named(p) {
                Some(name) => {
                    let proto = proto_of(p);
                    named_port(pod.pod, name, &proto).map(|n| PortMatch {
                        proto,
                        ports: Some((n, n)),
                    })
                }
                None => numeric_port(p),
            })
            .collect()
    });
    if ports.as_ref().is_some_and(Vec::is_empty) {
        return; // only ports this pod does not have: the rule allows nothing
    }
    for addrs in peer_addrs(cluster, out, id, ns, from) {
        clauses.push(Clause {
            addrs,
            ports: ports.clone().unwrap_or_default(),
        });
    }
}

fn egress_rule(
    cluster: &Cluster,
    out: &mut Desired,
    clauses: &mut Vec<Clause>,
    id: &str,
    ns: &str,
    to: Option<&[NetworkPolicyPeer]>,
    ports: Option<&[NetworkPolicyPort]>,
) {
    let ports = ports.filter(|p| !p.is_empty());
    let numeric: Vec<PortMatch> = ports
        .into_iter()
        .flatten()
        .filter(|p| is_named(p).is_none())
        .filter_map(numeric_port)
        .collect();
    if ports.is_none() || !numeric.is_empty() {
        for addrs in peer_addrs(cluster, out, id, ns, to) {
            clauses.push(Clause {
                addrs,
                ports: numeric.clone(),
            });
        }
    }
    // Named ports: resolved against each destination pod among the peers, one set per
    // number the name gives.
    let named: Vec<(&str, String)> = ports
        .into_iter()
        .flatten()
        .filter_map(|p| is_named(p).map(|n| (n, proto_of(p))))
        .collect();
    if named.is_empty() {
        return;
    }
    let peers: Vec<Option<PeerKind>> = match to.filter(|t| !t.is_empty()) {
        None => vec![Some(PeerKind::Block(Ipv4Net::default(), Vec::new()))],
        Some(t) => t.iter().map(|p| cluster.peer(ns, p)).collect(),
    };
    for (name, proto) in named {
        let mut groups: BTreeMap<u16, BTreeSet<Ipv4Addr>> = BTreeMap::new();
        for p in &cluster.pods {
            let selected = peers.iter().flatten().any(|k| match k {
                PeerKind::Block(net, except) => block_contains(net, except, p.ip),
                PeerKind::Pods(m) => m.contains(&p.ip),
            });
            if !selected {
                continue;
            }
            if let Some(n) = named_port(p.pod, name, &proto) {
                groups.entry(n).or_default().insert(p.ip);
            }
        }
        for (n, members) in groups {
            let set = format!("{id}/{name}/{proto}/{n}");
            out.sets.insert(set.clone(), members);
            clauses.push(Clause {
                addrs: Addrs::Set(set),
                ports: vec![PortMatch {
                    proto: proto.clone(),
                    ports: Some((n, n)),
                }],
            });
        }
    }
}

/// Runs enforcement on table `table` until aborted: the table is made at start, then synced
/// after each burst of changes (50 ms of quiet) and every 30 s.
pub async fn run(client: Client, table: String, node: String) {
    // Pod-to-pod traffic over the pod bridge reaches the `ip` hooks only through br_netfilter.
    let nf = std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables");
    if nf.ok().as_deref().map(str::trim) != Some("1") {
        tracing::warn!(
            "net.bridge.bridge-nf-call-iptables is not 1 (br_netfilter): network policies \
             cannot filter traffic between pods of this node"
        );
    }
    let (tx, mut changed) = watch::channel(0u64);
    let tx = Arc::new(tx);
    let policies = watch_all::<NetworkPolicy>(client.clone(), Some(tx.clone()), "networkpolicy");
    let namespaces = watch_all::<Namespace>(client.clone(), Some(tx.clone()), "namespace");
    let pods = watch_all::<Pod>(client, Some(tx), "pod");
    let _ = policies.wait_until_ready().await;
    let _ = namespaces.wait_until_ready().await;
    let _ = pods.wait_until_ready().await;
    let t = {
        let name = table.clone();
        match tokio::task::spawn_blocking(move || PolicyTable::new(&name)).await {
            Ok(Ok(t)) => Arc::new(t),
            Ok(Err(e)) => {
                tracing::error!(%table, "network policies not enforced: {e}");
                return;
            }
            Err(_) => return,
        }
    };
    loop {
        let want = compile(&policies.state(), &namespaces.state(), &pods.state(), &node);
        let t2 = t.clone();
        match tokio::task::spawn_blocking(move || t2.sync(&want)).await {
            Ok(Ok(s)) if s.commands > 0 => {
                tracing::debug!(commands = s.commands, full = s.full, "policy rules synced")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("policy rules: {e}"),
            Err(_) => return,
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        changed.borrow_and_update();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(ns: &str, name: &str, ip: &str, labels: serde_json::Value, node: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i",
                    "ports": [{"name": "http", "containerPort": 8080},
                              {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]},
                "status": {"phase": "Running", "podIP": ip}
            }))
            .unwrap(),
        )
    }
    fn ns(name: &str, labels: serde_json::Value) -> Arc<Namespace> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap(),
        )
    }
    fn np(ns: &str, name: &str, spec: serde_json::Value) -> Arc<NetworkPolicy> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": name, "namespace": ns}, "spec": spec}),
            )
            .unwrap(),
        )
    }
    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }
    fn world() -> (Vec<Arc<Namespace>>, Vec<Arc<Pod>>) {
        (
            vec![ns("a", json!({"team": "a"})), ns("b", json!({"team": "b"}))],
            vec![
                pod("a", "web", "10.42.0.2", json!({"app": "web"}), "n1"),
                pod("a", "cli", "10.42.0.3", json!({"app": "cli"}), "n1"),
                pod("b", "cli", "10.42.0.4", json!({"app": "cli"}), "n1"),
                pod("b", "far", "10.42.1.4", json!({"app": "web"}), "n2"),
            ],
        )
    }

    #[test]
    fn no_policy_isolates_nothing_and_default_deny_isolates_the_selected() {
        let (nss, pods) = world();
        let d = compile(&[], &nss, &pods, "n1");
        assert_eq!(d.pods.len(), 3, "only this node's pods");
        assert!(d
            .pods
            .values()
            .all(|r| r.ingress.is_none() && r.egress.is_none()));
        // podSelector {} and no rules, policyTypes omitted: ingress default-deny for the
        // namespace's pods only.
        let deny = np("a", "deny", json!({"podSelector": {}}));
        let d = compile(&[deny], &nss, &pods, "n1");
        assert_eq!(d.pods[&ip("10.42.0.2")].ingress, Some(vec![]));
        assert_eq!(d.pods[&ip("10.42.0.2")].egress, None);
        assert_eq!(d.pods[&ip("10.42.0.4")].ingress, None);
        // Egress rules present and policyTypes omitted: egress too.
        let e = np(
            "a",
            "e",
            json!({"podSelector": {"matchLabels": {"app": "cli"}},
            "egress": [{"to": [{"ipBlock": {"cidr": "10.42.0.0/24", "except": ["10.42.0.4/32"]}}]}]}),
        );
        let d = compile(&[e], &nss, &pods, "n1");
        let r = &d.pods[&ip("10.42.0.3")];
        assert_eq!(r.ingress, Some(vec![]));
        assert_eq!(
            r.egress,
            Some(vec![Clause {
                addrs: Addrs::Cidr {
                    net: "10.42.0.0/24".parse().unwrap(),
                    except: vec!["10.42.0.4/32".parse().unwrap()]
                },
                ports: vec![]
            }])
        );
        assert_eq!(d.pods[&ip("10.42.0.2")].egress, None);
    }

    #[test]
    fn peers_and_ports_follow_the_spec() {
        let (nss, pods) = world();
        let p = np(
            "a",
            "allow",
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}],
                 "ports": [{"port": 8080}, {"port": 9000, "endPort": 9010, "protocol": "UDP"}]},
                {"from": [{"podSelector": {"matchLabels": {"app": "cli"}}}],
                 "ports": [{"port": "http"}, {"port": "nope"}, {"protocol": "SCTP"}]},
                {"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}},
                           "podSelector": {"matchLabels": {"app": "web"}}}]},
                {"from": [{"ipBlock": {"cidr": "not-a-cidr"}}]},
                {"ports": [{"port": "nope"}]}
            ]}),
        );
        let d = compile(&[p], &nss, &pods, "n1");
        let r = d.pods[&ip("10.42.0.2")].ingress.clone().unwrap();
        let set = |s: &str| d.sets[s].iter().map(|i| i.to_string()).collect::<Vec<_>>();
        // namespaceSelector alone: every pod of namespace b, on any node.
        assert_eq!(set("a/allow/ingress/0/0"), ["10.42.0.4", "10.42.1.4"]);
        // podSelector alone: the policy's namespace only.
        assert_eq!(set("a/allow/ingress/1/0"), ["10.42.0.3"]);
        // both in one peer: AND.
        assert_eq!(set("a/allow/ingress/2/0"), ["10.42.1.4"]);
        let find = |s: &str| r.iter().find(|c| c.addrs == Addrs::Set(s.into())).unwrap();
        assert_eq!(
            find("a/allow/ingress/0/0").ports,
            vec![
                PortMatch {
                    proto: "tcp".into(),
                    ports: Some((8080, 8080))
                },
                PortMatch {
                    proto: "udp".into(),
                    ports: Some((9000, 9010))
                },
            ]
        );
        // "http" resolved against the pod, "nope" dropped, SCTP alone: every SCTP port.
        assert_eq!(
            find("a/allow/ingress/1/0").ports,
            vec![
                PortMatch {
                    proto: "tcp".into(),
                    ports: Some((8080, 8080))
                },
                PortMatch {
                    proto: "sctp".into(),
                    ports: None
                },
            ]
        );
        assert!(find("a/allow/ingress/2/0").ports.is_empty());
        // The bad CIDR and the rule with only unknown port names allow nothing; nothing else
        // was lost.
        assert_eq!(r.len(), 3, "{r:?}");
    }

    #[test]
    fn egress_named_ports_resolve_against_each_destination() {
        let (nss, mut pods) = world();
        pods.push(Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "alt", "namespace": "b", "labels": {"app": "web"}},
                "spec": {"nodeName": "n2", "containers": [{"name": "c", "image": "i",
                    "ports": [{"name": "http", "containerPort": 80}]}]},
                "status": {"phase": "Running", "podIP": "10.42.1.9"}
            }))
            .unwrap(),
        ));
        let p = np(
            "a",
            "out",
            json!({"podSelector": {"matchLabels": {"app": "cli"}}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}],
                        "ports": [{"port": "http"}, {"port": 53, "protocol": "UDP"}]}]}),
        );
        let d = compile(&[p], &nss, &pods, "n1");
        let r = d.pods[&ip("10.42.0.3")].egress.clone().unwrap();
        assert_eq!(d.pods[&ip("10.42.0.3")].ingress, None);
        assert!(r.contains(&Clause {
            addrs: Addrs::Set("a/out/egress/0/0".into()),
            ports: vec![PortMatch {
                proto: "udp".into(),
                ports: Some((53, 53))
            }],
        }));
        assert_eq!(
            d.sets["a/out/egress/0/http/tcp/80"],
            [ip("10.42.1.9")].into()
        );
        assert_eq!(
            d.sets["a/out/egress/0/http/tcp/8080"],
            [ip("10.42.0.2"), ip("10.42.1.4")].into()
        );
        assert_eq!(r.len(), 3, "{r:?}");
    }

    #[test]
    fn finished_pods_are_not_selectable() {
        let (nss, mut pods) = world();
        let mut done = (*pods[1]).clone();
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        pods[1] = Arc::new(done);
        let p = np(
            "a",
            "p",
            json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
        );
        let d = compile(&[p], &nss, &pods, "n1");
        assert_eq!(d.sets["a/p/ingress/0/0"], [ip("10.42.0.2")].into());
        assert!(!d.pods.contains_key(&ip("10.42.0.3")));
    }
}
