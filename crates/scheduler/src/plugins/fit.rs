//! NodeResourcesFit (filter; score with the default `LeastAllocated` strategy, cpu and memory
//! weighted 1 each) and NodeResourcesBalancedAllocation (score).

use crate::framework::{NodeInfo, PodInfo, Status, MAX_NODE_SCORE};

/// The filter: room for one more pod (`Too many pods`), then each requested resource against
/// allocatable minus what the node's pods request (`Insufficient cpu`, …; every shortfall is a
/// reason). A request above the node's whole allocatable cannot be helped by preemption
/// (`UnschedulableAndUnresolvable`).
pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Status {
    let mut reasons = Vec::new();
    let mut unresolvable = false;
    if node.pods.len() as i64 + 1 > node.allocatable.allowed_pods {
        reasons.push("Too many pods".to_string());
    }
    let req = &pod.requests;
    if req.is_zero() {
        return if reasons.is_empty() {
            Status::Success
        } else {
            Status::Unschedulable(reasons)
        };
    }
    let alloc = &node.allocatable;
    let used = &node.requested;
    let mut check = |name: &str, want: i64, alloc: i64, used: i64| {
        if want > 0 && want > alloc - used {
            reasons.push(format!("Insufficient {name}"));
            if want > alloc {
                unresolvable = true;
            }
        }
    };
    check("cpu", req.milli_cpu, alloc.milli_cpu, used.milli_cpu);
    check("memory", req.memory, alloc.memory, used.memory);
    check(
        "ephemeral-storage",
        req.ephemeral_storage,
        alloc.ephemeral_storage,
        used.ephemeral_storage,
    );
    for (name, want) in &req.scalar {
        let a = alloc.scalar.get(name).copied().unwrap_or(0);
        let u = used.scalar.get(name).copied().unwrap_or(0);
        check(name, *want, a, u);
    }
    match (reasons.is_empty(), unresolvable) {
        (true, _) => Status::Success,
        (false, true) => Status::Unresolvable(reasons),
        (false, false) => Status::Unschedulable(reasons),
    }
}

/// `LeastAllocated` for one resource: `(capacity - requested) * 100 / capacity`, 0 when the
/// capacity is 0 or exceeded.
fn least_requested(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

/// NodeResourcesFit's score (`LeastAllocated`, cpu and memory weight 1): the node's non-zero
/// requests plus the pod's, against allocatable. Already in `0..=100`.
pub fn least_allocated_score(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let cpu = least_requested(
        node.non_zero_requested.milli_cpu + pod.non_zero.milli_cpu,
        node.allocatable.milli_cpu,
    );
    let mem = least_requested(
        node.non_zero_requested.memory + pod.non_zero.memory,
        node.allocatable.memory,
    );
    (cpu + mem) / 2
}

/// NodeResourcesBalancedAllocation's score: `(1 - std) * 100` of the cpu and memory fractions
/// (requested incl. the pod, actual requests, capped at 1), resources with no allocatable
/// skipped. Already in `0..=100`.
pub fn balanced_allocation_score(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let mut fractions = Vec::new();
    for (req, alloc) in [
        (
            node.requested.milli_cpu + pod.requests.milli_cpu,
            node.allocatable.milli_cpu,
        ),
        (
            node.requested.memory + pod.requests.memory,
            node.allocatable.memory,
        ),
    ] {
        if alloc == 0 {
            continue;
        }
        fractions.push((req as f64 / alloc as f64).min(1.0));
    }
    let std = match fractions.as_slice() {
        [a, b] => ((a - b) / 2.0).abs(),
        _ => 0.0,
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::{json, Value};

    fn pod(requests: Value) -> PodInfo {
        PodInfo::new(
            serde_json::from_value::<Pod>(
                json!({"metadata": {"name": "p"}, "spec": {"containers": [
                    {"name": "c", "resources": {"requests": requests}}
                ]}}),
            )
            .unwrap(),
        )
    }

    fn node(alloc: Value, pods: &[Value]) -> NodeInfo {
        let mut n = NodeInfo::new(
            serde_json::from_value(
                json!({"metadata": {"name": "n"}, "status": {"allocatable": alloc}}),
            )
            .unwrap(),
        );
        for p in pods {
            n.add_pod(pod(p.clone()));
        }
        n
    }

    #[test]
    fn filter_reasons_as_kube() {
        let n = node(
            json!({"cpu": "2", "memory": "2Gi", "pods": "2", "example.com/gpu": "1"}),
            &[json!({"cpu": "1500m", "memory": "1Gi"})],
        );
        assert!(filter(&pod(json!({"cpu": "500m"})), &n).is_success());
        assert_eq!(
            filter(&pod(json!({"cpu": "600m", "memory": "1536Mi"})), &n),
            Status::Unschedulable(vec![
                "Insufficient cpu".into(),
                "Insufficient memory".into()
            ])
        );
        // More than the node has at all: preemption cannot help.
        assert_eq!(
            filter(&pod(json!({"cpu": "3"})), &n),
            Status::Unresolvable(vec!["Insufficient cpu".into()])
        );
        assert_eq!(
            filter(&pod(json!({"example.com/gpu": "2"})), &n),
            Status::Unresolvable(vec!["Insufficient example.com/gpu".into()])
        );
        let full = node(json!({"cpu": "2", "pods": "1"}), &[json!({})]);
        assert_eq!(
            filter(&pod(json!({})), &full),
            Status::Unschedulable(vec!["Too many pods".into()])
        );
    }

    // kube's least_allocated_test.go: "nothing scheduled, resources requested, differently
    // sized nodes": cpu 3000m/4000m, memory 5000/10000 → ((25 + 50) / 2) = 37; and
    // cpu 3000/6000, memory 5000/10000 → (50 + 50) / 2 = 50.
    #[test]
    fn least_allocated_as_kube() {
        let p = pod(json!({"cpu": "3", "memory": "5000"}));
        let n1 = node(json!({"cpu": "4", "memory": "10000"}), &[]);
        let n2 = node(json!({"cpu": "6", "memory": "10000"}), &[]);
        assert_eq!(least_allocated_score(&p, &n1), 37);
        assert_eq!(least_allocated_score(&p, &n2), 50);
        // A pod without requests counts 100m/200Mi.
        let empty = pod(json!({}));
        let big = node(json!({"cpu": "1", "memory": "400Mi"}), &[]);
        assert_eq!(least_allocated_score(&empty, &big), (90 + 50) / 2);
        // Over capacity: 0 for that resource.
        let over = pod(json!({"cpu": "5", "memory": "5000"}));
        assert_eq!(least_allocated_score(&over, &n1), 25);
    }

    // kube's balanced_allocation_test.go: "nothing scheduled, resources requested, differently
    // sized nodes": cpu 3000/4000 = 0.75, memory 5000/10000 = 0.5 → std 0.125 → 87;
    // cpu 3000/6000 = 0.5, memory 5000/10000 = 0.5 → 100.
    #[test]
    fn balanced_allocation_as_kube() {
        let p = pod(json!({"cpu": "3", "memory": "5000"}));
        assert_eq!(
            balanced_allocation_score(&p, &node(json!({"cpu": "4", "memory": "10000"}), &[])),
            87
        );
        assert_eq!(
            balanced_allocation_score(&p, &node(json!({"cpu": "6", "memory": "10000"}), &[])),
            100
        );
        // Fractions are capped at 1: cpu 8/4 → 1, memory 0.5 → std 0.25 → 75.
        assert_eq!(
            balanced_allocation_score(
                &pod(json!({"cpu": "8", "memory": "5000"})),
                &node(json!({"cpu": "4", "memory": "10000"}), &[])
            ),
            75
        );
    }
}
