//! Events as kube's controllers record them (`client-go/tools/record`): core/v1 `Event`s named
//! `<object>.<hex nanoseconds>`, with `source.component` and `reportingComponent` set to the
//! controller's name (`replicaset-controller`, `deployment-controller`, `job-controller`), so
//! `kubectl describe` and `kubectl events` show them as on Kubernetes.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};

/// `Normal` or `Warning`.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Normal,
    Warning,
}

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
    let ns = obj.namespace().unwrap_or_else(|| "default".into());
    let now = super::pods::now();
    let nanos = now.as_nanosecond();
    let ev = Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{:x}", obj.name_any(), nanos)),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(K::kind(&()).into_owned()),
            name: Some(obj.name_any()),
            namespace: Some(ns.clone()),
            uid: obj.meta().uid.clone(),
            resource_version: obj.meta().resource_version.clone(),
            ..Default::default()
        },
        reason: Some(reason.to_string()),
        message: Some(message),
        type_: Some(
            match kind {
                Kind::Normal => "Normal",
                Kind::Warning => "Warning",
            }
            .into(),
        ),
        source: Some(EventSource {
            component: Some(component.to_string()),
            host: None,
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        reporting_component: Some(component.to_string()),
        reporting_instance: Some(String::new()),
        ..Default::default()
    };
    if let Err(e) = Api::<Event>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &ev)
        .await
    {
        tracing::debug!("{component}: recording {reason}: {e}");
    }
}
