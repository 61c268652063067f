//! Events as kubelet records them (`core/v1` Event, source `kubelet` on this node), so
//! `kubectl describe pod` and `kubectl get events` read as on Kubernetes: `Pulled`,
//! `Created`, `Started`, `Killing`, `BackOff`, `Unhealthy`, `Failed`. Best effort: a failed
//! write is logged, never retried.

use k8s_openapi::api::core::v1::Pod;
use kube::Client;

/// Records an event about container `container` (or the pod, when `None`) of `pod`, through
/// [`barge_events`] (repeats raise the count of one Event, as kubelet's recorder does).
pub async fn record(
    client: &Client,
    node: &str,
    pod: &Pod,
    container: Option<&str>,
    warning: bool,
    reason: &str,
    message: &str,
) {
    let mut involved = barge_events::reference(pod);
    if let Some(c) = container {
        involved.field_path = Some(format!("spec.containers{{{c}}}"));
    }
    let source = barge_events::Source {
        component: "kubelet".into(),
        host: Some(node.to_string()),
        instance: Some(node.to_string()),
    };
    let kind = if warning {
        barge_events::Kind::Warning
    } else {
        barge_events::Kind::Normal
    };
    let record = barge_events::Record {
        involved,
        kind,
        reason,
        action: None,
        message: message.to_string(),
    };
    barge_events::record(client, &source, record).await;
}
