//! ImageLocality (score, weight 1): nodes that already have the pod's images score higher, by
//! the images' sizes scaled by how many nodes have them (so one node holding a rare image does
//! not attract every pod), clamped between 23 MiB and 1000 MiB per container.

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{NodeInfo, Snapshot, MAX_NODE_SCORE};

const MB: i64 = 1024 * 1024;
/// kube's `minThreshold`.
const MIN_THRESHOLD: i64 = 23 * MB;
/// kube's `maxContainerThreshold`.
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// kube's `normalizedImageName`: `:latest` added when the reference has no tag.
fn normalized(name: &str) -> String {
    let colon = name.rfind(':').map_or(-1, |i| i as i64);
    let slash = name.rfind('/').map_or(-1, |i| i as i64);
    if colon <= slash {
        format!("{name}:latest")
    } else {
        name.to_string()
    }
}

/// The node's image of that name: its size.
fn image_size(node: &NodeInfo, name: &str) -> Option<i64> {
    node.node
        .status
        .as_ref()?
        .images
        .as_ref()?
        .iter()
        .find(|i| i.names.iter().flatten().any(|n| n == name))
        .map(|i| i.size_bytes.unwrap_or(0))
}

/// The score of `node` for `pod` (already in `0..=100`).
pub fn score(pod: &Pod, node: &NodeInfo, snap: &Snapshot) -> i64 {
    let Some(spec) = pod.spec.as_ref() else {
        return 0;
    };
    let total = snap.nodes.len().max(1) as f64;
    let containers: Vec<&str> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .filter_map(|c| c.image.as_deref())
        .collect();
    let mut sum = 0i64;
    for image in &containers {
        let name = normalized(image);
        if let Some(size) = image_size(node, &name) {
            let with = snap
                .nodes
                .iter()
                .filter(|n| image_size(n, &name).is_some())
                .count() as f64;
            sum += (size as f64 * (with / total)) as i64;
        }
    }
    let max = MAX_CONTAINER_THRESHOLD * containers.len().max(1) as i64;
    let sum = sum.clamp(MIN_THRESHOLD, max);
    MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::json;

    #[test]
    fn names_get_latest() {
        assert_eq!(normalized("nginx"), "nginx:latest");
        assert_eq!(normalized("nginx:1.25"), "nginx:1.25");
        assert_eq!(
            normalized("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
    }

    // kube's image_locality_test.go: "two images spread on two nodes, prefer the larger image
    // one": pod gcr.io/40:latest + gcr.io/300:latest; node1 has 40 MB, node2 300 MB →
    // node1 (40 MB × 1/2 = 20 MB < 23 MB) 0, node2 (150 MB) 100 × (150 − 23) / (2000 − 23) = 6.
    #[test]
    fn scores_as_kube() {
        let node = |name: &str, image: &str, size: i64| -> Node {
            serde_json::from_value(json!({"metadata": {"name": name}, "status": {"images": [
                {"names": [image], "sizeBytes": size}
            ]}}))
            .unwrap()
        };
        let snap = Snapshot::new(
            vec![
                node("n1", "gcr.io/40:latest", 40 * MB),
                node("n2", "gcr.io/300:latest", 300 * MB),
            ],
            vec![],
            vec![],
        );
        let pod: Pod = serde_json::from_value(json!({"spec": {"containers": [
            {"name": "a", "image": "gcr.io/40"}, {"name": "b", "image": "gcr.io/300"}
        ]}}))
        .unwrap();
        assert_eq!(score(&pod, &snap.nodes[0], &snap), 0);
        assert_eq!(score(&pod, &snap.nodes[1], &snap), 6);
    }
}
