//! PodTopologySpread: `DoNotSchedule` constraints as a filter (skew = matching pods in the
//! node's domain + the pod itself − the least loaded domain, `minDomains` making that 0 while
//! too few domains exist), `ScheduleAnyway` constraints as a score (count × log(domains + 2) +
//! maxSkew − 1, normalised so the emptiest domain scores 100). Nodes count when they match the
//! pod's node affinity (`nodeAffinityPolicy: Honor`, the default) and, with
//! `nodeTaintsPolicy: Honor` (default `Ignore`), tolerate its taints; and carry every
//! constraint's topology key.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Pod, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::node::{node_matches_pod, taint_filter};
use super::selector_matches;
use crate::framework::{NodeInfo, Snapshot, Status, MAX_NODE_SCORE};

/// The skew reason.
pub const ERR_CONSTRAINTS: &str = "node(s) didn't match pod topology spread constraints";
/// The missing-label reason.
pub const ERR_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

const HOSTNAME: &str = "kubernetes.io/hostname";

/// One constraint, its selector completed with `matchLabelKeys`.
struct Constraint {
    max_skew: i64,
    key: String,
    min_domains: Option<i64>,
    selector: Option<LabelSelector>,
    honor_affinity: bool,
    honor_taints: bool,
}

fn constraints(pod: &Pod, when: &str) -> Vec<Constraint> {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    pod.spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.when_unsatisfiable == when)
        .map(|c: &TopologySpreadConstraint| {
            let mut selector = c.label_selector.clone();
            if let (Some(sel), Some(keys)) = (selector.as_mut(), c.match_label_keys.as_ref()) {
                for k in keys {
                    if let Some(v) = labels.get(k) {
                        sel.match_expressions.get_or_insert_with(Vec::new).push(
                            LabelSelectorRequirement {
                                key: k.clone(),
                                operator: "In".into(),
                                values: Some(vec![v.clone()]),
                            },
                        );
                    }
                }
            }
            Constraint {
                max_skew: c.max_skew as i64,
                key: c.topology_key.clone(),
                min_domains: c.min_domains.map(|m| m as i64),
                selector,
                honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            }
        })
        .collect()
}

fn has_keys(node: &NodeInfo, cs: &[Constraint]) -> bool {
    cs.iter().all(|c| node.labels().contains_key(&c.key))
}

/// Whether `node` counts for `c` (policies; taints checked as the filter would).
fn eligible(pod: &Pod, node: &NodeInfo, c: &Constraint) -> bool {
    (!c.honor_affinity || node_matches_pod(pod, &node.node))
        && (!c.honor_taints || taint_filter(pod, node).is_success())
}

/// Matching pods on `node`: same namespace, selected, not being deleted.
fn count_on(node: &NodeInfo, selector: Option<&LabelSelector>, ns: &str) -> i64 {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    node.pods
        .iter()
        .filter(|p| p.pod.metadata.deletion_timestamp.is_none())
        .filter(|p| p.pod.metadata.namespace.as_deref().unwrap_or("default") == ns)
        .filter(|p| selector_matches(selector, p.pod.metadata.labels.as_ref().unwrap_or(&EMPTY)))
        .count() as i64
}

fn ns(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

/// The filter for `pod` on `node`.
pub fn filter(pod: &Pod, node: &NodeInfo, snap: &Snapshot) -> Status {
    let cs = constraints(pod, "DoNotSchedule");
    if cs.is_empty() {
        return Status::Success;
    }
    if !has_keys(node, &cs) {
        return Status::unresolvable(ERR_MISSING_LABEL);
    }
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    let own_labels = pod.metadata.labels.as_ref().unwrap_or(&EMPTY);
    for c in &cs {
        // Pods per domain over the eligible nodes.
        let mut domains: HashMap<&str, i64> = HashMap::new();
        for n in &snap.nodes {
            if !has_keys(n, &cs) || !eligible(pod, n, c) {
                continue;
            }
            let v = n.labels()[&c.key].as_str();
            *domains.entry(v).or_default() += count_on(n, c.selector.as_ref(), ns(pod));
        }
        let mut min = domains.values().copied().min().unwrap_or(0);
        if c.min_domains.is_some_and(|m| (domains.len() as i64) < m) {
            min = 0;
        }
        let self_match = i64::from(selector_matches(c.selector.as_ref(), own_labels));
        let here = domains
            .get(node.labels()[&c.key].as_str())
            .copied()
            .unwrap_or(0);
        if here + self_match - min > c.max_skew {
            return Status::unschedulable(ERR_CONSTRAINTS);
        }
    }
    Status::Success
}

/// Raw scores for the feasible `nodes`; `None` for a node missing a topology key (it scores 0
/// after [`normalize`]). All `Some(0)` when the pod has no `ScheduleAnyway` constraint.
pub fn scores(pod: &Pod, nodes: &[&NodeInfo], snap: &Snapshot) -> Vec<Option<i64>> {
    let own = pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .is_some_and(|c| !c.is_empty());
    // Nodes missing a key are ignored only for the pod's own constraints.
    let (cs, require_all) = if own {
        (constraints(pod, "ScheduleAnyway"), true)
    } else {
        (system_defaults(pod, snap), false)
    };
    if cs.is_empty() {
        return vec![Some(0); nodes.len()];
    }
    let keys_ok = |n: &NodeInfo| !require_all || has_keys(n, &cs);
    let scored: Vec<&&NodeInfo> = nodes.iter().filter(|n| keys_ok(n)).collect();
    let mut weights = Vec::new();
    let mut counts: Vec<HashMap<String, i64>> = Vec::new();
    for c in &cs {
        let mut domains: HashMap<String, i64> = HashMap::new();
        if c.key != HOSTNAME {
            for n in &scored {
                if let Some(v) = n.labels().get(&c.key) {
                    domains.insert(v.clone(), 0);
                }
            }
            for n in &snap.nodes {
                if !keys_ok(n) || !eligible(pod, n, c) {
                    continue;
                }
                if let Some(v) = n.labels().get(&c.key).and_then(|v| domains.get_mut(v)) {
                    *v += count_on(n, c.selector.as_ref(), ns(pod));
                }
            }
        }
        let size = if c.key == HOSTNAME {
            scored.len()
        } else {
            domains.len()
        };
        weights.push(((size + 2) as f64).ln());
        counts.push(domains);
    }
    nodes
        .iter()
        .map(|n| {
            if !keys_ok(n) {
                return None;
            }
            let mut score = 0.0;
            for (i, c) in cs.iter().enumerate() {
                let Some(value) = n.labels().get(&c.key) else {
                    continue;
                };
                let cnt = if c.key == HOSTNAME {
                    count_on(n, c.selector.as_ref(), ns(pod))
                } else {
                    counts[i].get(value).copied().unwrap_or(0)
                };
                score += cnt as f64 * weights[i] + (c.max_skew - 1) as f64;
            }
            Some(score.round() as i64)
        })
        .collect()
}

/// kube's `helper.DefaultSelector`: the selectors of the Services selecting the pod, and of
/// the ReplicaSet, StatefulSet or ReplicationController controlling it, ANDed; `None` when
/// nothing selects it.
pub fn default_selector(pod: &Pod, snap: &Snapshot) -> Option<LabelSelector> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&EMPTY);
    let mut sel = LabelSelector::default();
    let mut set: BTreeMap<String, String> = BTreeMap::new();
    for (svc_ns, selector) in &snap.services {
        if svc_ns == ns(pod)
            && !selector.is_empty()
            && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        {
            set.extend(selector.clone());
        }
    }
    let owner = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    if let Some(o) = owner {
        let group = o.api_version.split_once('/').map_or("", |(g, _)| g);
        let known = matches!(
            (group, o.kind.as_str()),
            ("", "ReplicationController") | ("apps", "ReplicaSet") | ("apps", "StatefulSet")
        );
        let key = (o.kind.clone(), ns(pod).to_string(), o.name.clone());
        if let Some(s) = snap.controllers.get(&key).filter(|_| known) {
            set.extend(s.match_labels.clone().unwrap_or_default());
            sel.match_expressions = s.match_expressions.clone();
        }
    }
    if set.is_empty() && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty()) {
        return None;
    }
    sel.match_labels = Some(set);
    Some(sel)
}

/// The scheduler's default constraints for a pod without its own (kube's `systemDefaulted`):
/// ScheduleAnyway by hostname (maxSkew 3) and by zone (maxSkew 5), over the pod's
/// [`default_selector`].
fn system_defaults(pod: &Pod, snap: &Snapshot) -> Vec<Constraint> {
    let Some(selector) = default_selector(pod, snap) else {
        return Vec::new();
    };
    [(HOSTNAME, 3), ("topology.kubernetes.io/zone", 5)]
        .into_iter()
        .map(|(key, max_skew)| Constraint {
            max_skew,
            key: key.into(),
            min_domains: None,
            selector: Some(selector.clone()),
            honor_affinity: true,
            honor_taints: false,
        })
        .collect()
}

/// PodTopologySpread's normaliser: `100 * (max + min - s) / max` over the scored nodes, 100
/// for all when `max` is 0, 0 for nodes without the keys.
pub fn normalize(raw: &[Option<i64>]) -> Vec<i64> {
    let present: Vec<i64> = raw.iter().flatten().copied().collect();
    let min = present.iter().copied().min().unwrap_or(0);
    let max = present.iter().copied().max().unwrap_or(0).max(0);
    raw.iter()
        .map(|s| match s {
            None => 0,
            Some(_) if max == 0 => MAX_NODE_SCORE,
            Some(s) => MAX_NODE_SCORE * (max + min - s) / max,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::{json, Value};

    fn node(name: &str, zone: Option<&str>) -> Node {
        let mut labels = json!({"kubernetes.io/hostname": name});
        if let Some(z) = zone {
            labels["zone"] = json!(z);
        }
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
    }

    fn pod(name: &str, node: &str, constraints: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "spec": {"nodeName": node, "containers": [{"name": "c"}],
                     "topologySpreadConstraints": constraints}
        }))
        .unwrap()
    }

    fn c(key: &str, skew: i32, when: &str) -> Value {
        json!({"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": when,
               "labelSelector": {"matchLabels": {"app": "web"}}})
    }

    // kube's filtering_test.go shape: zone1 {n1: 2 pods, n2: 1}, zone2 {n3: 0}; maxSkew 1 by
    // zone: zone1 has 3, zone2 0 → only zone2 fits (0 + 1 - 0 = 1).
    #[test]
    fn do_not_schedule_skew_by_zone() {
        let s = Snapshot::new(
            vec![
                node("n1", Some("z1")),
                node("n2", Some("z1")),
                node("n3", Some("z2")),
                node("n4", None),
            ],
            vec![
                pod("a", "n1", json!(null)),
                pod("b", "n1", json!(null)),
                pod("c", "n2", json!(null)),
            ],
            vec![],
        );
        let p = pod("new", "", json!([c("zone", 1, "DoNotSchedule")]));
        let v: Vec<Status> = s.nodes.iter().map(|n| filter(&p, n, &s)).collect();
        assert_eq!(v[0], Status::unschedulable(ERR_CONSTRAINTS));
        assert_eq!(v[1], Status::unschedulable(ERR_CONSTRAINTS));
        assert!(v[2].is_success());
        assert_eq!(v[3], Status::unresolvable(ERR_MISSING_LABEL));
        // maxSkew 3: zone1 passes too (3 + 1 - 0 = 4 > 3 fails; skew 4 → still no).
        let p4 = pod("new", "", json!([c("zone", 4, "DoNotSchedule")]));
        assert!(filter(&p4, &s.nodes[0], &s).is_success());
        // minDomains 3 with 2 domains: the min counts as 0 — zone2 still fits, and with
        // maxSkew 1 zone1 still does not.
        let mut md = c("zone", 1, "DoNotSchedule");
        md["minDomains"] = json!(3);
        let pm = pod("new", "", json!([md]));
        assert!(filter(&pm, &s.nodes[2], &s).is_success());
        // By hostname with maxSkew 1: n3 (0 pods) and... the min is 0, n2 has 1 → 1+1-0 = 2.
        let h = pod(
            "new",
            "",
            json!([c("kubernetes.io/hostname", 1, "DoNotSchedule")]),
        );
        assert!(!filter(&h, &s.nodes[1], &s).is_success());
        assert!(filter(&h, &s.nodes[2], &s).is_success());
    }

    #[test]
    fn node_affinity_policy_honor_excludes_nodes_from_domains() {
        // zone z2's only node is excluded by the pod's nodeSelector: z1 is then the only
        // domain, min = its count, skew stays low.
        let mut n3 = node("n3", Some("z2"));
        n3.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("disk".into(), "hdd".into());
        let mut n1 = node("n1", Some("z1"));
        n1.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("disk".into(), "ssd".into());
        let s = Snapshot::new(vec![n1, n3], vec![pod("a", "n1", json!(null))], vec![]);
        let mut p = pod("new", "", json!([c("zone", 1, "DoNotSchedule")]));
        p.spec.as_mut().unwrap().node_selector =
            Some([("disk".to_string(), "ssd".to_string())].into());
        assert!(filter(&p, &s.nodes[0], &s).is_success());
        // With nodeAffinityPolicy Ignore, z2 (0 pods) counts: 1 + 1 - 0 = 2 > 1.
        let mut ci = c("zone", 1, "DoNotSchedule");
        ci["nodeAffinityPolicy"] = json!("Ignore");
        let mut q = pod("new", "", json!([ci]));
        q.spec.as_mut().unwrap().node_selector = p.spec.as_ref().unwrap().node_selector.clone();
        assert!(!filter(&q, &s.nodes[0], &s).is_success());
    }

    // kube's scoring_test.go "one constraint on node, all 4 nodes are candidates" shape:
    // hostname constraint, maxSkew 1; pods per node 2,1,0,3 → weight ln(4+2) = 1.79;
    // raw = round(cnt × 1.79): 4, 2, 0, 5; normalised 100 × (5 + 0 − s) / 5 = 20, 60, 100, 0.
    #[test]
    fn schedule_anyway_scores_as_kube() {
        let nodes = vec![
            node("a", None),
            node("b", None),
            node("c", None),
            node("d", None),
        ];
        let mut pods = Vec::new();
        for (n, k) in [("a", 2), ("b", 1), ("d", 3)] {
            for i in 0..k {
                pods.push(pod(&format!("{n}{i}"), n, json!(null)));
            }
        }
        let s = Snapshot::new(nodes, pods, vec![]);
        let p = pod(
            "new",
            "",
            json!([c("kubernetes.io/hostname", 1, "ScheduleAnyway")]),
        );
        let feasible: Vec<&NodeInfo> = s.nodes.iter().collect();
        let raw = scores(&p, &feasible, &s);
        assert_eq!(raw, vec![Some(4), Some(2), Some(0), Some(5)]);
        assert_eq!(normalize(&raw), vec![20, 60, 100, 0]);
        // No constraint and nothing selecting the pod: no effect.
        let q = pod("new", "", json!(null));
        assert_eq!(scores(&q, &feasible, &s), vec![Some(0); 4]);
    }

    // The system defaults: a pod of a ReplicaSet spreads by hostname (maxSkew 3, weight
    // ln(4 + 2)) over its siblings; nodes without a zone label are not ignored.
    #[test]
    fn system_default_spreading_follows_the_owner() {
        let mut c = node("c", None);
        c.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("topology.kubernetes.io/zone".into(), "z".into());
        let nodes = vec![node("a", None), node("b", None), c];
        let owned = |name: &str, node: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "name": "web-1", "uid": "rs", "controller": true}]},
                "spec": {"nodeName": node, "containers": [{"name": "c"}]}
            }))
            .unwrap()
        };
        let mut s = Snapshot::new(
            nodes,
            vec![owned("w1", "a"), owned("w2", "a"), owned("w3", "b")],
            vec![],
        );
        let p = owned("new", "");
        let feasible: Vec<&NodeInfo> = s.nodes.iter().collect();
        // Without the ReplicaSet known: no selector, no effect.
        assert_eq!(scores(&p, &feasible, &s), vec![Some(0); 3]);
        s.controllers.insert(
            ("ReplicaSet".into(), "default".into(), "web-1".into()),
            serde_json::from_value(json!({"matchLabels": {"app": "web"}})).unwrap(),
        );
        let feasible: Vec<&NodeInfo> = s.nodes.iter().collect();
        let raw = scores(&p, &feasible, &s);
        // hostname: ln(5) = 1.609: a 2 → 3.22 + 2, b 1 → 1.61 + 2, c 0 → 2; zone (one
        // domain, only c): ln(3) × 0 + 4 on c.
        assert_eq!(raw, vec![Some(5), Some(4), Some(6)]);
        assert_eq!(normalize(&raw), vec![83, 100, 66]);
    }
}
