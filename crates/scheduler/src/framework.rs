//! The scheduling framework's data: a [`Snapshot`] of nodes with the pods bound (or assumed) on
//! them ([`NodeInfo`], kube's `framework.NodeInfo`), the statuses filters return
//! ([`Status`]), and score normalisation helpers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::resources::{pod_requests, Resource};

/// kube's `framework.MaxNodeScore`.
pub const MAX_NODE_SCORE: i64 = 100;

/// A filter's verdict on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// The pod fits.
    Success,
    /// It does not fit, but removing pods (preemption) could change that.
    Unschedulable(Vec<String>),
    /// It does not fit and preemption cannot help (`UnschedulableAndUnresolvable`).
    Unresolvable(Vec<String>),
}

impl Status {
    /// A resolvable failure with one reason.
    pub fn unschedulable(reason: impl Into<String>) -> Self {
        Status::Unschedulable(vec![reason.into()])
    }

    /// An unresolvable failure with one reason.
    pub fn unresolvable(reason: impl Into<String>) -> Self {
        Status::Unresolvable(vec![reason.into()])
    }

    /// Whether the pod fits.
    pub fn is_success(&self) -> bool {
        matches!(self, Status::Success)
    }

    /// The failure reasons (empty on success).
    pub fn reasons(&self) -> &[String] {
        match self {
            Status::Success => &[],
            Status::Unschedulable(r) | Status::Unresolvable(r) => r,
        }
    }
}

/// One pod as the scheduler sees it on a node.
#[derive(Clone, Debug)]
pub struct PodInfo {
    /// The pod.
    pub pod: Pod,
    /// Its effective request.
    pub requests: Resource,
    /// Its request with 100m/200Mi for containers that ask none (scoring).
    pub non_zero: Resource,
}

impl PodInfo {
    /// Computes the requests of `pod`.
    pub fn new(pod: Pod) -> Self {
        PodInfo {
            requests: pod_requests(&pod, false),
            non_zero: pod_requests(&pod, true),
            pod,
        }
    }

    /// The pod's priority (`spec.priority`, 0 when unset).
    pub fn priority(&self) -> i32 {
        priority(&self.pod)
    }
}

/// A pod's `spec.priority` (0 when unset, as kube's `corev1helpers.PodPriority`).
pub fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// A node and what is bound to it: kube's `NodeInfo`.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// The node.
    pub node: Node,
    /// The pods on it (bound or assumed), terminated ones excluded.
    pub pods: Vec<PodInfo>,
    /// The node's allocatable resources (`status.allocatable`).
    pub allocatable: Resource,
    /// The sum of its pods' requests.
    pub requested: Resource,
    /// The sum of its pods' non-zero requests (scoring).
    pub non_zero_requested: Resource,
}

impl NodeInfo {
    /// A node without pods.
    pub fn new(node: Node) -> Self {
        let allocatable =
            Resource::from_list(node.status.as_ref().and_then(|s| s.allocatable.as_ref()));
        NodeInfo {
            node,
            pods: Vec::new(),
            allocatable,
            requested: Resource::default(),
            non_zero_requested: Resource::default(),
        }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or("")
    }

    /// The node's labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.node.metadata.labels.as_ref().unwrap_or(&EMPTY)
    }

    /// Adds a pod.
    pub fn add_pod(&mut self, p: PodInfo) {
        self.requested.add(&p.requests);
        self.non_zero_requested.add(&p.non_zero);
        self.pods.push(p);
    }

    /// Removes the pod with `uid` (preemption's dry run).
    pub fn remove_pod(&mut self, uid: &str) -> Option<PodInfo> {
        let i = self
            .pods
            .iter()
            .position(|p| p.pod.metadata.uid.as_deref() == Some(uid))?;
        let p = self.pods.remove(i);
        self.requested.sub(&p.requests);
        self.non_zero_requested.sub(&p.non_zero);
        Some(p)
    }
}

/// The cluster at one instant, for one scheduling cycle.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Every node, in name order.
    pub nodes: Vec<NodeInfo>,
    /// Namespaces' labels by name (for `namespaceSelector`s).
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Services' selectors: (namespace, `spec.selector`), for the default spreading.
    pub services: Vec<(String, BTreeMap<String, String>)>,
    /// The selectors of ReplicaSets, StatefulSets and ReplicationControllers by
    /// (kind, namespace, name), for the default spreading of the pods they own.
    pub controllers: BTreeMap<(String, String, String), LabelSelector>,
    /// PodDisruptionBudgets, for preemption.
    pub pdbs: Vec<Pdb>,
    /// The `nodeAffinity` of the PersistentVolumes bound to the claims of the pod being
    /// scheduled (VolumeBinding's filter: a node must satisfy each).
    pub volume_affinity: Vec<k8s_openapi::api::core::v1::NodeSelector>,
}

/// What preemption needs of a PodDisruptionBudget.
#[derive(Clone, Debug, Default)]
pub struct Pdb {
    /// Its namespace.
    pub namespace: String,
    /// `spec.selector` (nil or empty selects nothing).
    pub selector: Option<LabelSelector>,
    /// `status.disruptionsAllowed`.
    pub disruptions_allowed: i32,
    /// `status.disruptedPods`' names (already being evicted: not counted again).
    pub disrupted: Vec<String>,
}

impl Snapshot {
    /// Builds a snapshot from nodes, pods (those bound to a node are placed on it; terminated
    /// ones ignored) and namespaces.
    pub fn new(nodes: Vec<Node>, pods: Vec<Pod>, namespaces: Vec<Namespace>) -> Self {
        let mut infos: Vec<NodeInfo> = nodes.into_iter().map(NodeInfo::new).collect();
        infos.sort_by(|a, b| a.name().cmp(b.name()));
        for pod in pods {
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                continue;
            };
            if node.is_empty() || is_terminated(&pod) {
                continue;
            }
            if let Ok(i) = infos.binary_search_by(|n| n.name().cmp(&node)) {
                infos[i].add_pod(PodInfo::new(pod));
            }
        }
        let namespaces = namespaces
            .into_iter()
            .map(|n| {
                (
                    n.metadata.name.unwrap_or_default(),
                    n.metadata.labels.unwrap_or_default(),
                )
            })
            .collect();
        Snapshot {
            nodes: infos,
            namespaces,
            ..Default::default()
        }
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.name() == name)
    }
}

/// A pod that has finished (`Succeeded`/`Failed`) holds no resources.
pub fn is_terminated(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// kube's `helper.DefaultNormalizeScore`: scores scaled to `0..=MAX_NODE_SCORE` by the
/// highest one (reversed: high counts score low).
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0).max(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let v = MAX_NODE_SCORE * *s / max;
        *s = if reverse { MAX_NODE_SCORE - v } else { v };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_normalize_as_kube() {
        let mut s = [1, 2, 4];
        default_normalize(&mut s, false);
        assert_eq!(s, [25, 50, 100]);
        let mut s = [1, 2, 4];
        default_normalize(&mut s, true);
        assert_eq!(s, [75, 50, 0]);
        let mut s = [0, 0];
        default_normalize(&mut s, true);
        assert_eq!(s, [100, 100]);
        let mut s = [0, 0];
        default_normalize(&mut s, false);
        assert_eq!(s, [0, 0]);
    }
}
