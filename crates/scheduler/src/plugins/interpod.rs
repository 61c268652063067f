//! InterPodAffinity: required pod affinity/anti-affinity (the incoming pod's, and the existing
//! pods' anti-affinity against it) as a filter, preferred terms (both sides, plus existing pods'
//! required affinity at `hardPodAffinityWeight` 1) as a score normalised by min/max.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm};

use super::selector_matches;
use crate::framework::{NodeInfo, Snapshot, Status, MAX_NODE_SCORE};

/// The existing pods' anti-affinity reason.
pub const ERR_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";
/// The incoming pod's affinity reason.
pub const ERR_AFFINITY: &str = "node(s) didn't match pod affinity rules";
/// The incoming pod's anti-affinity reason.
pub const ERR_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";

/// kube's default `hardPodAffinityWeight`.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

fn labels(pod: &Pod) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    pod.metadata.labels.as_ref().unwrap_or(&EMPTY)
}

fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

/// Whether `term` of `owner` selects `candidate`: the candidate's namespace is in the term's
/// `namespaces`, or selected by its `namespaceSelector` (`{}` = all), or — with neither — is
/// the owner's; and its labels match the term's `labelSelector`.
pub fn term_selects(
    term: &PodAffinityTerm,
    owner: &Pod,
    candidate: &Pod,
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
) -> bool {
    let ns = namespace(candidate);
    let listed = term.namespaces.as_deref().unwrap_or(&[]);
    let ns_ok = match &term.namespace_selector {
        None if listed.is_empty() => ns == namespace(owner),
        None => listed.iter().any(|n| n == ns),
        Some(sel) => {
            listed.iter().any(|n| n == ns) || {
                static EMPTY: BTreeMap<String, String> = BTreeMap::new();
                selector_matches(Some(sel), namespaces.get(ns).unwrap_or(&EMPTY))
            }
        }
    };
    ns_ok && selector_matches(term.label_selector.as_ref(), labels(candidate))
}

struct Terms<'a> {
    required_affinity: &'a [PodAffinityTerm],
    required_anti: &'a [PodAffinityTerm],
    preferred_affinity: Vec<(i64, &'a PodAffinityTerm)>,
    preferred_anti: Vec<(i64, &'a PodAffinityTerm)>,
}

fn terms(pod: &Pod) -> Terms<'_> {
    let a = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
    let aff = a.and_then(|a| a.pod_affinity.as_ref());
    let anti = a.and_then(|a| a.pod_anti_affinity.as_ref());
    Terms {
        required_affinity: aff
            .and_then(|x| {
                x.required_during_scheduling_ignored_during_execution
                    .as_deref()
            })
            .unwrap_or(&[]),
        required_anti: anti
            .and_then(|x| {
                x.required_during_scheduling_ignored_during_execution
                    .as_deref()
            })
            .unwrap_or(&[]),
        preferred_affinity: aff
            .and_then(|x| {
                x.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
            .map(|w| (w.weight as i64, &w.pod_affinity_term))
            .collect(),
        preferred_anti: anti
            .and_then(|x| {
                x.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
            .map(|w| (w.weight as i64, &w.pod_affinity_term))
            .collect(),
    }
}

fn same_domain(a: &NodeInfo, b: &NodeInfo, key: &str) -> bool {
    match (a.labels().get(key), b.labels().get(key)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// The filter for `pod` on `node`, given the whole `snap`.
pub fn filter(pod: &Pod, node: &NodeInfo, snap: &Snapshot) -> Status {
    // 1. Existing pods' required anti-affinity that selects the incoming pod.
    for other in &snap.nodes {
        for p in &other.pods {
            for t in terms(&p.pod).required_anti {
                if same_domain(other, node, &t.topology_key)
                    && term_selects(t, &p.pod, pod, &snap.namespaces)
                {
                    return Status::unschedulable(ERR_EXISTING_ANTI_AFFINITY);
                }
            }
        }
    }
    let mine = terms(pod);
    // 2. The incoming pod's required affinity: every term has a matching pod in the node's
    //    domain — unless no pod anywhere matches and the pod matches its own terms (the first
    //    pod of a group).
    if !mine.required_affinity.is_empty() {
        let ok = mine.required_affinity.iter().all(|t| {
            snap.nodes.iter().any(|other| {
                same_domain(other, node, &t.topology_key)
                    && other
                        .pods
                        .iter()
                        .any(|p| term_selects(t, pod, &p.pod, &snap.namespaces))
            })
        });
        if !ok {
            let any_match = mine.required_affinity.iter().any(|t| {
                snap.nodes.iter().any(|o| {
                    o.pods
                        .iter()
                        .any(|p| term_selects(t, pod, &p.pod, &snap.namespaces))
                })
            });
            let self_match = mine
                .required_affinity
                .iter()
                .all(|t| term_selects(t, pod, pod, &snap.namespaces));
            let has_keys = mine
                .required_affinity
                .iter()
                .all(|t| node.labels().contains_key(&t.topology_key));
            if any_match || !self_match || !has_keys {
                return Status::unresolvable(ERR_AFFINITY);
            }
        }
    }
    // 3. The incoming pod's required anti-affinity: no matching pod in the node's domain.
    for t in mine.required_anti {
        for other in &snap.nodes {
            if same_domain(other, node, &t.topology_key)
                && other
                    .pods
                    .iter()
                    .any(|p| term_selects(t, pod, &p.pod, &snap.namespaces))
            {
                return Status::unschedulable(ERR_ANTI_AFFINITY);
            }
        }
    }
    Status::Success
}

/// Raw scores for `nodes` (the feasible ones): per topology pair (key, value), the sum of
/// weights of terms linking the incoming pod and the existing pods in that domain, then each
/// node the sum of its pairs; normalised with [`normalize`].
pub fn scores(pod: &Pod, nodes: &[&NodeInfo], snap: &Snapshot) -> Vec<i64> {
    let mine = terms(pod);
    let mut pairs: HashMap<(String, String), i64> = HashMap::new();
    let mut add = |node: &NodeInfo, key: &str, w: i64| {
        if let Some(v) = node.labels().get(key) {
            *pairs.entry((key.to_string(), v.clone())).or_default() += w;
        }
    };
    for other in &snap.nodes {
        for p in &other.pods {
            for (w, t) in &mine.preferred_affinity {
                if term_selects(t, pod, &p.pod, &snap.namespaces) {
                    add(other, &t.topology_key, *w);
                }
            }
            for (w, t) in &mine.preferred_anti {
                if term_selects(t, pod, &p.pod, &snap.namespaces) {
                    add(other, &t.topology_key, -*w);
                }
            }
            let theirs = terms(&p.pod);
            for t in theirs.required_affinity {
                if term_selects(t, &p.pod, pod, &snap.namespaces) {
                    add(other, &t.topology_key, HARD_POD_AFFINITY_WEIGHT);
                }
            }
            for (w, t) in &theirs.preferred_affinity {
                if term_selects(t, &p.pod, pod, &snap.namespaces) {
                    add(other, &t.topology_key, *w);
                }
            }
            for (w, t) in &theirs.preferred_anti {
                if term_selects(t, &p.pod, pod, &snap.namespaces) {
                    add(other, &t.topology_key, -*w);
                }
            }
        }
    }
    nodes
        .iter()
        .map(|n| {
            pairs
                .iter()
                .filter(|((k, v), _)| n.labels().get(k) == Some(v))
                .map(|(_, w)| *w)
                .sum()
        })
        .collect()
}

/// InterPodAffinity's normaliser: `100 * (s - min) / (max - min)`, all 0 when equal.
pub fn normalize(scores: &mut [i64]) {
    let (Some(min), Some(max)) = (scores.iter().min().copied(), scores.iter().max().copied())
    else {
        return;
    };
    let diff = max - min;
    for s in scores.iter_mut() {
        *s = if diff > 0 {
            (MAX_NODE_SCORE as f64 * ((*s - min) as f64 / diff as f64)) as i64
        } else {
            0
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Namespace, Node};
    use serde_json::{json, Value};

    fn pod(name: &str, ns: &str, labels: Value, node: &str, affinity: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns, "labels": labels, "uid": name},
            "spec": {"nodeName": node, "containers": [{"name": "c"}], "affinity": affinity}
        }))
        .unwrap()
    }

    fn node(name: &str, zone: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "zone": zone}}}))
        .unwrap()
    }

    fn snap(pods: Vec<Pod>) -> Snapshot {
        let ns: Vec<Namespace> = vec![
            serde_json::from_value(
                json!({"metadata": {"name": "default", "labels": {"team": "a"}}}),
            )
            .unwrap(),
            serde_json::from_value(json!({"metadata": {"name": "other", "labels": {"team": "b"}}}))
                .unwrap(),
        ];
        Snapshot::new(
            vec![node("n1", "z1"), node("n2", "z1"), node("n3", "z2")],
            pods,
            ns,
        )
    }

    fn term(key: &str, app: &str) -> Value {
        json!({"topologyKey": key, "labelSelector": {"matchLabels": {"app": app}}})
    }

    fn verdicts(p: &Pod, s: &Snapshot) -> Vec<Status> {
        s.nodes.iter().map(|n| filter(p, n, s)).collect()
    }

    #[test]
    fn required_affinity_by_zone_and_the_first_pod_of_a_group() {
        let s = snap(vec![pod(
            "db",
            "default",
            json!({"app": "db"}),
            "n3",
            json!(null),
        )]);
        let p = pod(
            "web",
            "default",
            json!({}),
            "",
            json!({"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [term("zone", "db")]}}),
        );
        let v = verdicts(&p, &s);
        assert_eq!(v[0], Status::unresolvable(ERR_AFFINITY));
        assert_eq!(v[1], Status::unresolvable(ERR_AFFINITY));
        assert!(v[2].is_success());
        // A term in another namespace does not see the db pod...
        let other = pod(
            "web",
            "other",
            json!({}),
            "",
            json!({"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [term("zone", "db")]}}),
        );
        assert!(!verdicts(&other, &s)[2].is_success());
        // ...unless its namespaceSelector selects `default`.
        let mut t = term("zone", "db");
        t["namespaceSelector"] = json!({"matchLabels": {"team": "a"}});
        let sel = pod(
            "web",
            "other",
            json!({}),
            "",
            json!({"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [t]}}),
        );
        assert!(verdicts(&sel, &s)[2].is_success());
        // The first pod of a self-affine group goes anywhere.
        let first = pod(
            "a",
            "default",
            json!({"app": "cache"}),
            "",
            json!({"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [term("zone", "cache")]}}),
        );
        assert!(verdicts(&first, &s).iter().all(Status::is_success));
    }

    #[test]
    fn anti_affinity_both_ways() {
        let s = snap(vec![pod(
            "w1",
            "default",
            json!({"app": "web"}),
            "n1",
            json!({"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [term("kubernetes.io/hostname", "web")]}}),
        )]);
        // The incoming pod's anti-affinity by hostname.
        let p = pod(
            "w2",
            "default",
            json!({"app": "web"}),
            "",
            json!({"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [term("kubernetes.io/hostname", "web")]}}),
        );
        let v = verdicts(&p, &s);
        // The existing pod's rule is checked first.
        assert_eq!(v[0], Status::unschedulable(ERR_EXISTING_ANTI_AFFINITY));
        assert!(v[1].is_success() && v[2].is_success());
        // Anti-affinity by zone from the incoming pod only.
        let z = pod(
            "x",
            "default",
            json!({}),
            "",
            json!({"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [term("zone", "web")]}}),
        );
        let v = verdicts(&z, &s);
        assert_eq!(v[0], Status::unschedulable(ERR_ANTI_AFFINITY));
        assert_eq!(v[1], Status::unschedulable(ERR_ANTI_AFFINITY));
        assert!(v[2].is_success());
    }

    #[test]
    fn preferred_terms_score_by_domain() {
        let s = snap(vec![
            pod("db", "default", json!({"app": "db"}), "n1", json!(null)),
            pod(
                "cache",
                "default",
                json!({"app": "cache"}),
                "n3",
                json!(null),
            ),
        ]);
        let p = pod(
            "web",
            "default",
            json!({}),
            "",
            json!({
                "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 10, "podAffinityTerm": term("zone", "db")}]},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 5, "podAffinityTerm": term("kubernetes.io/hostname", "db")}]}
            }),
        );
        let nodes: Vec<&NodeInfo> = s.nodes.iter().collect();
        let mut sc = scores(&p, &nodes, &s);
        assert_eq!(sc, vec![5, 10, 0]);
        normalize(&mut sc);
        assert_eq!(sc, vec![50, 100, 0]);
    }
}
