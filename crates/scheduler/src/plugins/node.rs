//! The node-local plugins: NodeUnschedulable, NodeName, NodePorts, TaintToleration (filter and
//! PreferNoSchedule score) and NodeAffinity (nodeSelector and required terms as a filter,
//! preferred terms as a score).

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};

use crate::framework::{NodeInfo, Status};

/// NodeUnschedulable's reason.
pub const ERR_UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// NodeName's reason.
pub const ERR_NODE_NAME: &str = "node(s) didn't match the requested node name";
/// NodePorts' reason.
pub const ERR_NODE_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
/// NodeAffinity's reason.
pub const ERR_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";

/// The taint kube puts on a cordoned node's behalf (`node.kubernetes.io/unschedulable`).
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

fn taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

/// NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes only pods tolerating the
/// `node.kubernetes.io/unschedulable:NoSchedule` taint.
pub fn unschedulable_filter(pod: &Pod, node: &NodeInfo) -> Status {
    let cordoned = node
        .node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    if !cordoned {
        return Status::Success;
    }
    let taint = Taint {
        key: TAINT_UNSCHEDULABLE.into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    if tolerations(pod).iter().any(|t| tolerates(t, &taint)) {
        return Status::Success;
    }
    Status::unresolvable(ERR_UNSCHEDULABLE)
}

/// NodeName: `spec.nodeName`, when set, must be this node.
pub fn node_name_filter(pod: &Pod, node: &NodeInfo) -> Status {
    match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
        Some(n) if !n.is_empty() && n != node.name() => Status::unresolvable(ERR_NODE_NAME),
        _ => Status::Success,
    }
}

/// One host port a pod wants: (hostIP, protocol, port), kube's defaults applied
/// (`0.0.0.0`, `TCP`).
fn host_ports(pod: &Pod) -> Vec<(String, String, i32)> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| {
            let ip = p.host_ip.clone().filter(|s| !s.is_empty());
            (
                ip.unwrap_or_else(|| "0.0.0.0".into()),
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.host_port.unwrap_or(0),
            )
        })
        .collect()
}

/// NodePorts: no host port of the pod may be taken on the node (same protocol and port, and
/// the same IP or either side's `0.0.0.0`).
pub fn ports_filter(pod: &Pod, node: &NodeInfo) -> Status {
    let want = host_ports(pod);
    if want.is_empty() {
        return Status::Success;
    }
    for other in &node.pods {
        for (ip, proto, port) in host_ports(&other.pod) {
            for (wip, wproto, wport) in &want {
                if *wport == port
                    && *wproto == proto
                    && (ip == *wip || ip == "0.0.0.0" || wip == "0.0.0.0")
                {
                    return Status::unschedulable(ERR_NODE_PORTS);
                }
            }
        }
    }
    Status::Success
}

/// Whether `t` tolerates `taint` (kube's `Toleration.ToleratesTaint`): the effect matches (or
/// the toleration has none), the key matches (an empty key with `Exists` matches any), and
/// `Exists` or an equal value.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    let op = t.operator.as_deref().unwrap_or("Equal");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match op {
        "Exists" => true,
        "Equal" | "" => {
            // An empty key is only valid with Exists.
            !key.is_empty()
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// TaintToleration's filter: every `NoSchedule`/`NoExecute` taint must be tolerated; the first
/// that is not is the reason (`node(s) had untolerated taint {key: value}`).
pub fn taint_filter(pod: &Pod, node: &NodeInfo) -> Status {
    let tols = tolerations(pod);
    for taint in taints(&node.node) {
        if !matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute") {
            continue;
        }
        if !tols.iter().any(|t| tolerates(t, taint)) {
            return Status::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or("")
            ));
        }
    }
    Status::Success
}

/// TaintToleration's raw score: how many `PreferNoSchedule` taints the pod does not tolerate
/// (counting only its tolerations with an empty or `PreferNoSchedule` effect); normalised
/// reversed.
pub fn taint_score(pod: &Pod, node: &NodeInfo) -> i64 {
    let tols: Vec<&Toleration> = tolerations(pod)
        .iter()
        .filter(|t| {
            matches!(
                t.effect.as_deref(),
                None | Some("") | Some("PreferNoSchedule")
            )
        })
        .collect();
    taints(&node.node)
        .iter()
        .filter(|taint| taint.effect == "PreferNoSchedule")
        .filter(|taint| !tols.iter().any(|t| tolerates(t, taint)))
        .count() as i64
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), [bound]) = (value, values) else {
                return false;
            };
            let (Ok(v), Ok(bound)) = (v.parse::<i64>(), bound.parse::<i64>()) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether a node selector term matches `node`: all its `matchExpressions` on labels and all
/// its `matchFields` (only `metadata.name`) hold; a term with neither matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.as_ref();
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.and_then(|l| l.get(&r.key)).map(String::as_str)))
        && fields.iter().all(|r| {
            r.key == "metadata.name"
                && requirement_matches(r, node.metadata.name.as_deref())
                && !matches!(r.operator.as_str(), "Gt" | "Lt" | "Exists" | "DoesNotExist")
        })
}

/// Whether `node` satisfies `pod`'s `nodeSelector` and required node affinity (terms ORed):
/// kube's `RequiredNodeAffinity.Match`.
pub fn node_matches_pod(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    if let Some(sel) = &spec.node_selector {
        let labels = node.metadata.labels.as_ref();
        if !sel
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        Some(r) => r.node_selector_terms.iter().any(|t| term_matches(t, node)),
        None => true,
    }
}

/// NodeAffinity's filter.
pub fn affinity_filter(pod: &Pod, node: &NodeInfo) -> Status {
    if node_matches_pod(pod, &node.node) {
        Status::Success
    } else {
        Status::unresolvable(ERR_NODE_AFFINITY)
    }
}

/// NodeAffinity's raw score: the sum of the weights of the preferred terms the node matches;
/// normalised by the highest.
pub fn affinity_score(pod: &Pod, node: &NodeInfo) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .filter(|p| p.weight != 0 && term_matches(&p.preference, &node.node))
        .map(|p| p.weight as i64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::PodInfo;
    use serde_json::{json, Value};

    fn pod(spec: Value) -> Pod {
        let mut spec = spec;
        if spec.get("containers").is_none() {
            spec["containers"] = json!([{"name": "c"}]);
        }
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec}),
        )
        .unwrap()
    }

    fn node(name: &str, labels: Value, spec: Value) -> NodeInfo {
        NodeInfo::new(
            serde_json::from_value(
                json!({"metadata": {"name": name, "labels": labels}, "spec": spec}),
            )
            .unwrap(),
        )
    }

    #[test]
    fn cordoned_nodes_take_only_pods_tolerating_unschedulable() {
        let n = node("n", json!({}), json!({"unschedulable": true}));
        let s = unschedulable_filter(&pod(json!({})), &n);
        assert_eq!(s, Status::unresolvable("node(s) were unschedulable"));
        let tolerant = pod(json!({"tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}
        ]}));
        assert!(unschedulable_filter(&tolerant, &n).is_success());
        assert!(
            unschedulable_filter(&pod(json!({})), &node("m", json!({}), json!({}))).is_success()
        );
    }

    #[test]
    fn node_name() {
        let n = node("n1", json!({}), json!({}));
        assert!(node_name_filter(&pod(json!({"nodeName": "n1"})), &n).is_success());
        assert_eq!(
            node_name_filter(&pod(json!({"nodeName": "n2"})), &n),
            Status::unresolvable("node(s) didn't match the requested node name")
        );
    }

    #[test]
    fn host_port_conflicts() {
        let with_port = |ip: &str, proto: &str, port: i32| {
            pod(json!({"containers": [{"name": "c", "ports": [
                {"containerPort": 80, "hostPort": port, "hostIP": ip, "protocol": proto}
            ]}]}))
        };
        let mut n = node("n", json!({}), json!({}));
        n.add_pod(PodInfo::new(with_port("127.0.0.1", "TCP", 8080)));
        let conflict =
            Status::unschedulable("node(s) didn't have free ports for the requested pod ports");
        assert_eq!(ports_filter(&with_port("", "TCP", 8080), &n), conflict);
        assert_eq!(
            ports_filter(&with_port("127.0.0.1", "TCP", 8080), &n),
            conflict
        );
        assert!(ports_filter(&with_port("127.0.0.2", "TCP", 8080), &n).is_success());
        assert!(ports_filter(&with_port("", "UDP", 8080), &n).is_success());
        assert!(ports_filter(&with_port("", "TCP", 8081), &n).is_success());
    }

    #[test]
    fn taints_and_tolerations() {
        let n = node(
            "n",
            json!({}),
            json!({"taints": [
                {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
                {"key": "soft", "effect": "PreferNoSchedule"},
                {"key": "evict", "value": "x", "effect": "NoExecute"}
            ]}),
        );
        assert_eq!(
            taint_filter(&pod(json!({})), &n),
            Status::unresolvable("node(s) had untolerated taint {dedicated: gpu}")
        );
        let p = pod(json!({"tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
        ]}));
        assert_eq!(
            taint_filter(&p, &n),
            Status::unresolvable("node(s) had untolerated taint {evict: x}")
        );
        // Empty key + Exists tolerates everything.
        let all = pod(json!({"tolerations": [{"operator": "Exists"}]}));
        assert!(taint_filter(&all, &n).is_success());
        assert_eq!(taint_score(&all, &n), 0);
        // A wrong value, or an effect mismatch, does not tolerate.
        let wrong = pod(json!({"tolerations": [
            {"key": "dedicated", "value": "cpu"}, {"key": "evict", "operator": "Exists", "effect": "NoSchedule"}
        ]}));
        assert!(!taint_filter(&wrong, &n).is_success());
        // PreferNoSchedule counts for the score only.
        assert_eq!(taint_score(&pod(json!({})), &n), 1);
        let mut scores = [1, 0];
        crate::framework::default_normalize(&mut scores, true);
        assert_eq!(scores, [0, 100]);
    }

    #[test]
    fn node_affinity_operators_and_fields() {
        let n = node(
            "n1",
            json!({"zone": "a", "gen": "5", "disk": "ssd"}),
            json!({}),
        );
        let req = |terms: Value| {
            pod(json!({"affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}))
        };
        let ok = |p: &Pod| affinity_filter(p, &n).is_success();
        assert!(ok(&req(
            json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}])
        )));
        assert!(!ok(&req(
            json!([{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}])
        )));
        assert!(ok(&req(
            json!([{"matchExpressions": [{"key": "gpu", "operator": "NotIn", "values": ["x"]}]}])
        )));
        assert!(ok(&req(
            json!([{"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}]}])
        )));
        assert!(!ok(&req(
            json!([{"matchExpressions": [{"key": "gen", "operator": "Lt", "values": ["5"]}]}])
        )));
        assert!(!ok(&req(
            json!([{"matchExpressions": [{"key": "disk", "operator": "Gt", "values": ["1"]}]}])
        )));
        assert!(ok(&req(
            json!([{"matchExpressions": [{"key": "disk", "operator": "Exists"}]}])
        )));
        assert!(!ok(&req(
            json!([{"matchExpressions": [{"key": "disk", "operator": "DoesNotExist"}]}])
        )));
        assert!(ok(&req(
            json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}])
        )));
        assert!(!ok(&req(
            json!([{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}])
        )));
        // Terms are ORed; an empty term matches nothing.
        assert!(ok(&req(
            json!([{}, {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}])
        )));
        assert!(!ok(&req(json!([{}]))));
        // nodeSelector is ANDed with the terms.
        assert_eq!(
            affinity_filter(&pod(json!({"nodeSelector": {"zone": "b"}})), &n),
            Status::unresolvable("node(s) didn't match Pod's node affinity/selector")
        );
        assert!(ok(&pod(
            json!({"nodeSelector": {"zone": "a", "disk": "ssd"}})
        )));
    }

    #[test]
    fn preferred_node_affinity_score() {
        let p = pod(
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 2, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}},
                {"weight": 5, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}
            ]}}}),
        );
        let a = node("a", json!({"zone": "a"}), json!({}));
        let b = node("b", json!({"zone": "a", "disk": "ssd"}), json!({}));
        let c = node("c", json!({}), json!({}));
        let mut s = [
            affinity_score(&p, &a),
            affinity_score(&p, &b),
            affinity_score(&p, &c),
        ];
        assert_eq!(s, [2, 7, 0]);
        crate::framework::default_normalize(&mut s, false);
        assert_eq!(s, [28, 100, 0]);
    }
}
