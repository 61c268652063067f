//! One scheduling cycle (kube's `schedulePod`): every node through the filters in the default
//! profile's order — the first failing plugin decides a node's reasons — then the feasible
//! nodes scored by each plugin, normalised, weighted (TaintToleration 3, NodeAffinity 2,
//! PodTopologySpread 2, InterPodAffinity 2, NodeResourcesFit 1, BalancedAllocation 1,
//! ImageLocality 1) and
//! summed; the best node wins, ties broken at random. When no node fits, the [`FitError`]
//! carries kube's aggregated message, with DefaultPreemption's post-filter verdict.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{default_normalize, priority, NodeInfo, PodInfo, Snapshot, Status};
use crate::plugins::{fit, image, interpod, node, spread, volume};

/// Runs the filters on one node, in kube's default order; the first failure is the verdict.
pub fn filter_node(pod: &PodInfo, n: &NodeInfo, snap: &Snapshot) -> Status {
    let p = &pod.pod;
    for s in [
        node::unschedulable_filter(p, n),
        node::node_name_filter(p, n),
        node::taint_filter(p, n),
        node::affinity_filter(p, n),
        node::ports_filter(p, n),
        fit::filter(pod, n),
        volume::filter(n, snap),
    ] {
        if !s.is_success() {
            return s;
        }
    }
    for s in [spread::filter(p, n, snap), interpod::filter(p, n, snap)] {
        if !s.is_success() {
            return s;
        }
    }
    Status::Success
}

/// The total score of each node of `feasible` (same order).
pub fn score_nodes(pod: &PodInfo, feasible: &[&NodeInfo], snap: &Snapshot) -> Vec<i64> {
    let p = &pod.pod;
    let mut taint: Vec<i64> = feasible.iter().map(|n| node::taint_score(p, n)).collect();
    default_normalize(&mut taint, true);
    let mut affinity: Vec<i64> = feasible
        .iter()
        .map(|n| node::affinity_score(p, n))
        .collect();
    default_normalize(&mut affinity, false);
    // (Uniform when the pod has no ScheduleAnyway constraint and no default one applies.)
    let spread_scores = spread::normalize(&spread::scores(p, feasible, snap));
    let mut inter = interpod::scores(p, feasible, snap);
    interpod::normalize(&mut inter);
    feasible
        .iter()
        .enumerate()
        .map(|(i, n)| {
            3 * taint[i]
                + 2 * affinity[i]
                + 2 * spread_scores[i]
                + 2 * inter[i]
                + fit::least_allocated_score(pod, n)
                + fit::balanced_allocation_score(pod, n)
                + image::score(p, n, snap)
        })
        .collect()
}

/// Why a pod fits nowhere: kube's `FitError`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FitError {
    /// How many nodes there were.
    pub num_nodes: usize,
    /// Each failing node's verdict, by name.
    pub statuses: BTreeMap<String, Status>,
    /// DefaultPreemption's message (`preemption: …`), when it ran.
    pub post_filter: Option<String>,
}

/// `0/N nodes are available: <sorted "count reason" list>.`
fn histogram_message(num_nodes: usize, statuses: &BTreeMap<String, Status>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in statuses.values() {
        for r in s.reasons() {
            *counts.entry(r.as_str()).or_default() += 1;
        }
    }
    let mut lines: Vec<String> = counts.iter().map(|(r, c)| format!("{c} {r}")).collect();
    lines.sort();
    let mut msg = format!("0/{num_nodes} nodes are available:");
    if !lines.is_empty() {
        msg.push_str(&format!(" {}.", lines.join(", ")));
    }
    msg
}

impl std::fmt::Display for FitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut msg = histogram_message(self.num_nodes, &self.statuses);
        // The post-filter's own message usually ends with a full stop already; kube's
        // output shows one, not two.
        if let Some(p) = &self.post_filter {
            msg.push(' ');
            msg.push_str(p);
            if !p.ends_with('.') {
                msg.push('.');
            }
        }
        f.write_str(&msg)
    }
}

/// What a cycle decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Bind to this node.
    Bind(String),
    /// Nothing fits; preemption of `victims` (uids) on `node` would make room.
    Preempt {
        /// The node the pod is nominated to.
        node: String,
        /// The pods to evict (namespace, name, uid).
        victims: Vec<(String, String, String)>,
        /// The failure, for the event.
        error: FitError,
    },
    /// Nothing fits and preemption does not help.
    Unschedulable(FitError),
    /// The cycle could not run (kube's `SchedulerError` reason): no nodes at all.
    Error(String),
}

/// kube's `ErrNoNodesAvailable`.
pub const ERR_NO_NODES: &str = "no nodes available to schedule pods";

/// Schedules `pod` on `snap`: filters, scores, picks; on failure runs the preemption dry run.
/// `pick` chooses among equally best nodes (given their count; kube picks at random).
pub fn schedule(pod: &Pod, snap: &Snapshot, pick: &mut dyn FnMut(usize) -> usize) -> Decision {
    if snap.nodes.is_empty() {
        return Decision::Error(ERR_NO_NODES.into());
    }
    let info = PodInfo::new(pod.clone());
    let mut statuses = BTreeMap::new();
    let mut feasible = Vec::new();
    for n in &snap.nodes {
        match filter_node(&info, n, snap) {
            Status::Success => feasible.push(n),
            s => {
                statuses.insert(n.name().to_string(), s);
            }
        }
    }
    if feasible.len() == 1 {
        return Decision::Bind(feasible[0].name().to_string());
    }
    if !feasible.is_empty() {
        let scores = score_nodes(&info, &feasible, snap);
        let best = *scores.iter().max().expect("non-empty");
        let top: Vec<usize> = (0..scores.len()).filter(|i| scores[*i] == best).collect();
        let i = top[pick(top.len()) % top.len()];
        return Decision::Bind(feasible[i].name().to_string());
    }
    let mut error = FitError {
        num_nodes: snap.nodes.len(),
        statuses,
        post_filter: None,
    };
    match crate::preemption::preempt(&info, snap, &error.statuses) {
        crate::preemption::Outcome::Message(m) => {
            error.post_filter = Some(format!("preemption: {m}"));
            Decision::Unschedulable(error)
        }
        crate::preemption::Outcome::Victims { node, victims } => {
            error.post_filter = None;
            Decision::Preempt {
                node,
                victims,
                error,
            }
        }
    }
}

/// The `(priority, creation)` order of the active queue (kube's PrioritySort): higher
/// priority first, then older.
pub fn queue_order(a: &Pod, b: &Pod) -> std::cmp::Ordering {
    priority(b)
        .cmp(&priority(a))
        .then_with(|| {
            a.metadata
                .creation_timestamp
                .cmp(&b.metadata.creation_timestamp)
        })
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::{json, Value};

    fn node(name: &str, cpu: &str, labels: Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels},
            "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"}}}))
        .unwrap()
    }

    fn pod(spec: Value) -> Pod {
        let mut spec = spec;
        let req = spec
            .as_object_mut()
            .unwrap()
            .remove("req")
            .unwrap_or(json!({}));
        spec["containers"] = json!([{"name": "c", "resources": {"requests": req}}]);
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "default", "uid": "u"},
            "spec": spec}),
        )
        .unwrap()
    }

    #[test]
    fn the_aggregated_message_as_kube() {
        let snap = Snapshot::new(
            vec![
                node("a", "1", json!({"zone": "x"})),
                node("b", "8", json!({"zone": "y"})),
                node("c", "8", json!({"zone": "y"})),
            ],
            vec![],
            vec![],
        );
        let p = pod(json!({"req": {"cpu": "2"}, "nodeSelector": {"zone": "x"}}));
        let Decision::Unschedulable(e) = schedule(&p, &snap, &mut |_| 0) else {
            panic!("scheduled");
        };
        assert_eq!(
            e.to_string(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn pods_go_to_the_least_allocated_node_and_honour_selectors() {
        let mut pods = Vec::new();
        let busy: Pod = serde_json::from_value(json!({"metadata": {"name": "b", "namespace": "default", "uid": "b"},
            "spec": {"nodeName": "a", "containers": [{"name": "c", "resources": {"requests": {"cpu": "3"}}}]}}))
        .unwrap();
        pods.push(busy);
        let snap = Snapshot::new(
            vec![
                node("a", "4", json!({})),
                node("b", "4", json!({})),
                node("c", "4", json!({"gpu": "1"})),
            ],
            pods,
            vec![],
        );
        let p = pod(json!({"req": {"cpu": "1"}}));
        // b and c tie; the pick decides.
        assert_eq!(schedule(&p, &snap, &mut |_| 0), Decision::Bind("b".into()));
        assert_eq!(schedule(&p, &snap, &mut |_| 1), Decision::Bind("c".into()));
        let g = pod(json!({"req": {"cpu": "1"}, "nodeSelector": {"gpu": "1"}}));
        assert_eq!(schedule(&g, &snap, &mut |_| 0), Decision::Bind("c".into()));
    }

    #[test]
    fn histogram_sorts_as_strings() {
        let mut st = BTreeMap::new();
        for i in 0..10 {
            st.insert(format!("n{i}"), Status::unschedulable("Insufficient cpu"));
        }
        st.insert(
            "m".into(),
            Status::unresolvable("node(s) were unschedulable"),
        );
        st.insert(
            "m2".into(),
            Status::unresolvable("node(s) were unschedulable"),
        );
        assert_eq!(
            histogram_message(12, &st),
            "0/12 nodes are available: 10 Insufficient cpu, 2 node(s) were unschedulable."
        );
    }
}
