//! DefaultPreemption's post-filter (kube's `preemption.Evaluator`): a pod that fits nowhere may
//! evict lower-priority pods. Nodes whose failure preemption cannot fix (unresolvable) are
//! skipped ("Preemption is not helpful for scheduling"); on the others every lower-priority pod
//! is removed in a dry run, the filters run again, and the victims the pod can live with are
//! reprieved (those a PodDisruptionBudget protects first, then highest priority first). The
//! node chosen has the fewest PDB violations, then the lowest highest-priority victim, then the
//! lowest priority sum, then the fewest victims.

use std::collections::BTreeMap;

use crate::framework::{is_terminated, NodeInfo, Pdb, PodInfo, Snapshot, Status};
use crate::plugins::selector_matches;
use crate::schedule::{filter_node, FitError};

/// The post-filter's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No candidate: the message after `preemption: `.
    Message(String),
    /// Evict `victims` (namespace, name, uid) on `node`.
    Victims {
        /// The node.
        node: String,
        /// The pods to evict.
        victims: Vec<(String, String, String)>,
    },
}

const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

fn with_node(snap: &Snapshot, node: NodeInfo) -> Snapshot {
    let mut s = snap.clone();
    if let Some(slot) = s.nodes.iter_mut().find(|n| n.name() == node.name()) {
        *slot = node;
    }
    s
}

/// Splits victims (in importance order) into those whose eviction would exceed a matching
/// PodDisruptionBudget's `disruptionsAllowed` and the others (kube's
/// `filterPodsWithPDBViolation`).
fn split_by_pdb(victims: Vec<PodInfo>, pdbs: &[Pdb]) -> (Vec<PodInfo>, Vec<PodInfo>) {
    let mut allowed: Vec<i32> = pdbs.iter().map(|p| p.disruptions_allowed).collect();
    let (mut violating, mut rest) = (Vec::new(), Vec::new());
    for v in victims {
        let meta = &v.pod.metadata;
        let mut violated = false;
        if let Some(labels) = meta.labels.as_ref().filter(|l| !l.is_empty()) {
            for (i, pdb) in pdbs.iter().enumerate() {
                let empty = pdb.selector.as_ref().is_none_or(|s| {
                    s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                        && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
                });
                if meta.namespace.as_deref() != Some(pdb.namespace.as_str())
                    || empty
                    || !selector_matches(pdb.selector.as_ref(), labels)
                    || meta
                        .name
                        .as_ref()
                        .is_some_and(|n| pdb.disrupted.contains(n))
                {
                    continue;
                }
                allowed[i] -= 1;
                if allowed[i] < 0 {
                    violated = true;
                }
            }
        }
        if violated {
            violating.push(v);
        } else {
            rest.push(v);
        }
    }
    (violating, rest)
}

/// Runs the post-filter for `pod`, given the filters' `statuses` of every node.
pub fn preempt(pod: &PodInfo, snap: &Snapshot, statuses: &BTreeMap<String, Status>) -> Outcome {
    let spec = pod.pod.spec.as_ref();
    if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Outcome::Message("not eligible due to preemptionPolicy=Never.".into());
    }
    let prio = pod.priority();
    if let Some(nominated) = pod
        .pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|n| !n.is_empty())
    {
        if let Some(n) = snap.node(nominated) {
            if !matches!(statuses.get(nominated), Some(Status::Unresolvable(_)))
                && n.pods
                    .iter()
                    .any(|p| p.pod.metadata.deletion_timestamp.is_some() && p.priority() < prio)
            {
                return Outcome::Message(
                    "not eligible due to a terminating pod on the nominated node.".into(),
                );
            }
        }
    }
    let mut verdicts: BTreeMap<String, Status> = BTreeMap::new();
    // (PDB violations, max victim priority, priority sum, count, node, victims)
    type Candidate = (usize, i32, i64, usize, String, Vec<PodInfo>);
    let mut best: Option<Candidate> = None;
    for n in &snap.nodes {
        let name = n.name().to_string();
        match statuses.get(&name) {
            Some(Status::Unresolvable(_)) | None => {
                verdicts.insert(name, Status::unresolvable(NOT_HELPFUL));
                continue;
            }
            Some(_) => {}
        }
        let mut trial = n.clone();
        let mut victims: Vec<PodInfo> = n
            .pods
            .iter()
            .filter(|p| p.priority() < prio && !is_terminated(&p.pod))
            .cloned()
            .collect();
        if victims.is_empty() {
            verdicts.insert(name, Status::unresolvable(NO_VICTIMS));
            continue;
        }
        for v in &victims {
            trial.remove_pod(v.pod.metadata.uid.as_deref().unwrap_or(""));
        }
        let s = with_node(snap, trial.clone());
        let status = filter_node(pod, &trial, &s);
        if !status.is_success() {
            verdicts.insert(name, status);
            continue;
        }
        // Reprieve, most important first.
        victims.sort_by(|a, b| {
            b.priority().cmp(&a.priority()).then_with(|| {
                a.pod
                    .metadata
                    .creation_timestamp
                    .cmp(&b.pod.metadata.creation_timestamp)
            })
        });
        // Those whose eviction would violate a PodDisruptionBudget are reprieved first.
        let (violating, rest) = split_by_pdb(victims, &snap.pdbs);
        let mut kept = Vec::new();
        let mut violations = 0usize;
        for (v, violates) in violating
            .into_iter()
            .map(|v| (v, true))
            .chain(rest.into_iter().map(|v| (v, false)))
        {
            trial.add_pod(v.clone());
            let s = with_node(snap, trial.clone());
            if filter_node(pod, &trial, &s).is_success() {
                continue;
            }
            trial.remove_pod(v.pod.metadata.uid.as_deref().unwrap_or(""));
            violations += usize::from(violates);
            kept.push(v);
        }
        let max = kept.iter().map(PodInfo::priority).max().unwrap_or(i32::MIN);
        let sum: i64 = kept.iter().map(|p| p.priority() as i64).sum();
        let key = (violations, max, sum, kept.len());
        if best.as_ref().is_none_or(|b| key < (b.0, b.1, b.2, b.3)) {
            best = Some((violations, max, sum, kept.len(), name, kept));
        }
    }
    match best {
        Some((_, _, _, _, node, victims)) => Outcome::Victims {
            node,
            victims: victims
                .iter()
                .map(|v| {
                    (
                        v.pod.metadata.namespace.clone().unwrap_or_default(),
                        v.pod.metadata.name.clone().unwrap_or_default(),
                        v.pod.metadata.uid.clone().unwrap_or_default(),
                    )
                })
                .collect(),
        },
        None => {
            let e = FitError {
                num_nodes: verdicts.len(),
                statuses: verdicts,
                post_filter: None,
            };
            Outcome::Message(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{schedule, Decision};
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::{json, Value};

    fn node(name: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}}}))
        .unwrap()
    }

    fn pod(name: &str, node: &str, cpu: &str, priority: i32, extra: Value) -> Pod {
        let mut spec = json!({"nodeName": node, "priority": priority,
            "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]});
        if let Value::Object(m) = extra {
            for (k, v) in m {
                spec[k] = v;
            }
        }
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": "default", "uid": name},
            "spec": spec}),
        )
        .unwrap()
    }

    #[test]
    fn preemption_picks_the_node_with_the_least_important_victims() {
        let snap = Snapshot::new(
            vec![node("a"), node("b")],
            vec![
                pod("a1", "a", "1", 10, json!({})),
                pod("a2", "a", "1", 10, json!({})),
                pod("b1", "b", "1", 5, json!({})),
                pod("b2", "b", "1", 500, json!({})),
            ],
            vec![],
        );
        let p = pod("hi", "", "1", 100, json!({}));
        match schedule(&p, &snap, &mut |_| 0) {
            Decision::Preempt {
                node,
                victims,
                error,
            } => {
                assert_eq!(node, "b");
                assert_eq!(victims, vec![("default".into(), "b1".into(), "b1".into())]);
                assert_eq!(
                    error.to_string(),
                    "0/2 nodes are available: 2 Insufficient cpu."
                );
            }
            d => panic!("{d:?}"),
        }
        // A PodDisruptionBudget protecting b1 (none allowed) moves the choice to node a.
        let mut guarded = snap.clone();
        guarded.nodes[1].pods[0]
            .pod
            .metadata
            .labels
            .replace([("app".to_string(), "db".to_string())].into());
        guarded.pdbs.push(Pdb {
            namespace: "default".into(),
            selector: Some(serde_json::from_value(json!({"matchLabels": {"app": "db"}})).unwrap()),
            disruptions_allowed: 0,
            disrupted: vec![],
        });
        match schedule(&pod("hi", "", "1", 100, json!({})), &guarded, &mut |_| 0) {
            Decision::Preempt { node, victims, .. } => {
                assert_eq!(node, "a");
                assert_eq!(victims.len(), 1);
            }
            d => panic!("{d:?}"),
        }
        // Equal priority: no victims anywhere.
        let p = pod("eq", "", "1", 5, json!({}));
        let Decision::Unschedulable(e) = schedule(&p, &snap, &mut |_| 0) else {
            panic!()
        };
        assert_eq!(
            e.to_string(),
            "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
        );
        // preemptionPolicy Never.
        let p = pod("never", "", "1", 100, json!({"preemptionPolicy": "Never"}));
        let Decision::Unschedulable(e) = schedule(&p, &snap, &mut |_| 0) else {
            panic!()
        };
        assert_eq!(
            e.to_string(),
            "0/2 nodes are available: 2 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
        );
    }
}
