//! Events as kube's controllers record them (`client-go/tools/record`), through
//! [`barge_events`] (one recorder for the cluster, with client-go's correlation of repeats):
//! `source.component` and `reportingComponent` are the controller's name
//! (`replicaset-controller`, `deployment-controller`, `job-controller`), so `kubectl describe`
//! and `kubectl events` show them as on Kubernetes.

pub use barge_events::Kind;
use kube::{Client, Resource};

/// Records one event about `obj` (best effort: a failure is logged, never retried).
pub async fn record<K>(
    client: &Client,
    component: &str,
    obj: &K,
    kind: Kind,
    reason: &str,
    message: String,
) where
    K: Resource<DynamicType = ()>,
{
    let record = barge_events::Record {
        involved: barge_events::reference(obj),
        kind,
        reason,
        action: None,
        message,
    };
    barge_events::record(client, &barge_events::Source::component(component), record).await;
}
