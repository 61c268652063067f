//! Events as kubelet records them (`core/v1` Event, source `kubelet` on this node), so
//! `kubectl describe pod` and `kubectl get events` read as on Kubernetes: `Pulled`,
//! `Created`, `Started`, `Killing`, `BackOff`, `Unhealthy`, `Failed`. Best effort: a failed
//! write is logged, never retried.

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

/// Records an event about container `container` (or the pod, when `None`) of `pod`.
pub async fn record(
    client: &Client,
    node: &str,
    pod: &Pod,
    container: Option<&str>,
    warning: bool,
    reason: &str,
    message: &str,
) {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let now = crate::time::now();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut involved = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "name": name,
        "namespace": ns,
        "uid": pod.metadata.uid,
        "resourceVersion": pod.metadata.resource_version,
    });
    if let Some(c) = container {
        involved["fieldPath"] = json!(format!("spec.containers{{{c}}}"));
    }
    let ev = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{name}.{nanos:x}"), "namespace": ns},
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "type": if warning { "Warning" } else { "Normal" },
        "source": {"component": "kubelet", "host": node},
        "reportingComponent": "kubelet",
        "reportingInstance": node,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    });
    let Ok(ev) = serde_json::from_value::<Event>(ev) else {
        return;
    };
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    if let Err(e) = api.create(&PostParams::default(), &ev).await {
        tracing::debug!("event {reason} for pod {ns}/{name}: {e}");
    }
}
