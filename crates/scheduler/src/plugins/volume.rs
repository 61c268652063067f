//! VolumeBinding (kube's `volumebinding` plugin), the part a one-node local-path cluster needs:
//! a pod's PersistentVolumeClaims must exist; a bound claim's PersistentVolume's
//! `nodeAffinity` limits the nodes (`node(s) had volume node affinity conflict`); an unbound
//! claim of a `WaitForFirstConsumer` class gets the chosen node in the
//! `volume.kubernetes.io/selected-node` annotation before the pod is bound (kube's PreBind),
//! which the PV controller's provisioner acts on; an unbound claim of an `Immediate` class
//! makes the pod wait (`pod has unbound immediate PersistentVolumeClaims`).

use k8s_openapi::api::core::v1::{NodeSelector, Pod};

use crate::framework::{NodeInfo, Snapshot, Status};
use crate::plugins::node::term_matches;

/// kube's `ErrReasonNodeConflict`.
pub const ERR_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
/// kube's `ErrReasonBindConflict` (an unbound claim of an `Immediate` class).
pub const ERR_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
/// The annotation naming the node a `WaitForFirstConsumer` claim is provisioned for.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

/// The names of the claims `pod` mounts.
pub fn claims(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| Some(v.persistent_volume_claim.as_ref()?.claim_name.clone()))
        .collect()
}

/// The filter: every bound volume's node affinity (`snap.volume_affinity`, computed for the pod
/// of this cycle) admits the node.
pub fn filter(node: &NodeInfo, snap: &Snapshot) -> Status {
    let ok = snap.volume_affinity.iter().all(|sel: &NodeSelector| {
        sel.node_selector_terms
            .iter()
            .any(|t| term_matches(t, &node.node))
    });
    if ok {
        Status::Success
    } else {
        Status::unresolvable(ERR_NODE_CONFLICT)
    }
}

/// kube's `FitError` text for a pod rejected before any node was filtered (PreFilter), with
/// DefaultPreemption's verdict.
pub fn prefilter_message(nodes: usize, reason: &str) -> String {
    format!(
        "0/{nodes} nodes are available: {reason}. preemption: 0/{nodes} nodes are available: {nodes} Preemption is not helpful for scheduling."
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;

    fn node(name: &str) -> NodeInfo {
        let n: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}
        }))
        .unwrap();
        NodeInfo::new(n)
    }

    #[test]
    fn bound_volumes_pin_their_node() {
        let mut snap = Snapshot::default();
        assert!(filter(&node("a"), &snap).is_success());
        snap.volume_affinity.push(
            serde_json::from_value(serde_json::json!({"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["a"]}]}
            ]}))
            .unwrap(),
        );
        assert!(filter(&node("a"), &snap).is_success());
        assert_eq!(filter(&node("b"), &snap).reasons(), [ERR_NODE_CONFLICT]);
        assert_eq!(
            prefilter_message(1, "persistentvolumeclaim \"data\" not found"),
            "0/1 nodes are available: persistentvolumeclaim \"data\" not found. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        );
        let pod: Pod = serde_json::from_value(serde_json::json!({"spec": {"containers": [], "volumes": [
            {"name": "d", "persistentVolumeClaim": {"claimName": "data-web-0"}}, {"name": "e", "emptyDir": {}}
        ]}}))
        .unwrap();
        assert_eq!(claims(&pod), ["data-web-0"]);
    }
}
