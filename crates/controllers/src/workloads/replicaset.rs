//! The ReplicaSet and ReplicationController controllers (kube's `pkg/controller/replicaset`,
//! which serves both: an RC is handled as an older version of a ReplicaSet with a map
//! selector). Per owner: claim pods (adopt matching orphans, release owned pods that stopped
//! matching), then — once earlier creations/deletions are observed — create or delete pods to
//! match `spec.replicas` (creations in slow-start batches 1, 2, 4, …; deletions ranked by
//! [`pods::pods_to_delete`]), then write `status` (replicas, fullyLabeledReplicas,
//! readyReplicas, availableReplicas, observedGeneration).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{
    Pod, PodTemplateSpec, ReplicationController, ReplicationControllerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;

use super::pods::{self, BURST_REPLICAS};
use super::Ctx;
use crate::ControllerError;

enum Owner {
    Rs(Arc<ReplicaSet>),
    Rc(Arc<ReplicationController>),
}

/// What the controller needs of a ReplicaSet or a ReplicationController.
struct View {
    owner: Owner,
    meta: ObjectMeta,
    replicas: i32,
    selector: Selector,
    template: Option<PodTemplateSpec>,
    min_ready: i32,
}

enum Selector {
    Labels(LabelSelector),
    Map(BTreeMap<String, String>),
}

impl Selector {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Selector::Labels(s) => !pods::selector_is_empty(s) && pods::selector_matches(s, labels),
            Selector::Map(m) => !m.is_empty() && pods::map_matches(m, labels),
        }
    }
}

/// The counts written to `status`.
#[derive(Debug, Default, PartialEq)]
struct Counts {
    replicas: i32,
    fully_labeled: i32,
    ready: i32,
    available: i32,
}

impl View {
    fn kind(&self) -> (&'static str, &'static str, &'static str) {
        match self.owner {
            Owner::Rs(_) => ("apps/v1", "ReplicaSet", "replicaset-controller"),
            Owner::Rc(_) => ("v1", "ReplicationController", "replication-controller"),
        }
    }
}

/// Reconciles one ReplicaSet.
pub async fn reconcile_rs(rs: Arc<ReplicaSet>, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let spec = rs.spec.clone().unwrap_or_default();
    let view = View {
        meta: rs.metadata.clone(),
        replicas: spec.replicas.unwrap_or(1),
        selector: Selector::Labels(spec.selector),
        template: spec.template,
        min_ready: spec.min_ready_seconds.unwrap_or(0),
        owner: Owner::Rs(rs.clone()),
    };
    let (counts, requeue) = sync(&view, &ctx).await?;
    let old = rs.status.clone().unwrap_or_default();
    let status = ReplicaSetStatus {
        replicas: counts.replicas,
        fully_labeled_replicas: nz(counts.fully_labeled),
        ready_replicas: nz(counts.ready),
        available_replicas: nz(counts.available),
        observed_generation: rs.metadata.generation,
        conditions: old.conditions.clone(),
        terminating_replicas: old.terminating_replicas,
    };
    if status != old {
        let mut new = (*rs).clone();
        new.status = Some(status);
        let name = rs.metadata.name.clone().unwrap_or_default();
        Api::<ReplicaSet>::namespaced(ctx.client.clone(), &ns_of(&rs.metadata))
            .replace_status(&name, &PostParams::default(), &new)
            .await
            .map_err(|e| {
                ControllerError::api(format!("updating the status of replicaset {name}"), e)
            })?;
    }
    Ok(requeue)
}

/// Reconciles one ReplicationController.
pub async fn reconcile_rc(
    rc: Arc<ReplicationController>,
    ctx: Arc<Ctx>,
) -> Result<Action, ControllerError> {
    let spec = rc.spec.clone().unwrap_or_default();
    let template = spec.template.clone();
    // An RC without a selector selects its template's labels (kube defaults it so).
    let selector = spec
        .selector
        .clone()
        .or_else(|| {
            template
                .as_ref()
                .and_then(|t| t.metadata.as_ref()?.labels.clone())
        })
        .unwrap_or_default();
    let view = View {
        meta: rc.metadata.clone(),
        replicas: spec.replicas.unwrap_or(1),
        selector: Selector::Map(selector),
        template,
        min_ready: spec.min_ready_seconds.unwrap_or(0),
        owner: Owner::Rc(rc.clone()),
    };
    let (counts, requeue) = sync(&view, &ctx).await?;
    let old = rc.status.clone().unwrap_or_default();
    let status = ReplicationControllerStatus {
        replicas: counts.replicas,
        fully_labeled_replicas: nz(counts.fully_labeled),
        ready_replicas: nz(counts.ready),
        available_replicas: nz(counts.available),
        observed_generation: rc.metadata.generation,
        conditions: old.conditions.clone(),
    };
    if status != old {
        let mut new = (*rc).clone();
        new.status = Some(status);
        let name = rc.metadata.name.clone().unwrap_or_default();
        Api::<ReplicationController>::namespaced(ctx.client.clone(), &ns_of(&rc.metadata))
            .replace_status(&name, &PostParams::default(), &new)
            .await
            .map_err(|e| {
                ControllerError::api(
                    format!("updating the status of replicationcontroller {name}"),
                    e,
                )
            })?;
    }
    Ok(requeue)
}

/// kube's omitempty for the optional counts.
pub(crate) fn nz(v: i32) -> Option<i32> {
    (v != 0).then_some(v)
}

pub(crate) fn ns_of(meta: &ObjectMeta) -> String {
    meta.namespace.clone().unwrap_or_else(|| "default".into())
}

/// Claims, manages and counts the pods of `view`; returns the status counts and when to look
/// again.
async fn sync(view: &View, ctx: &Ctx) -> Result<(Counts, Action), ControllerError> {
    let ns = ns_of(&view.meta);
    let uid = view.meta.uid.clone().unwrap_or_default();
    let deleting = view.meta.deletion_timestamp.is_some();
    let all: Vec<Arc<Pod>> = ctx
        .informers
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .collect();
    let mut owned: Vec<Arc<Pod>> = Vec::new();
    for p in all {
        let labels = p.metadata.labels.clone().unwrap_or_default();
        match pods::controller_of(&p.metadata) {
            Some(c) if c.uid == uid => {
                if view.selector.matches(&labels) || deleting {
                    owned.push(p);
                } else {
                    release(ctx, &p, &uid).await?;
                }
            }
            Some(_) => {}
            None => {
                if !deleting
                    && p.metadata.deletion_timestamp.is_none()
                    && view.selector.matches(&labels)
                    && adopt(ctx, view, &p).await?
                {
                    owned.push(p);
                }
            }
        }
    }
    let active: Vec<&Pod> = owned
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| pods::is_active(p))
        .collect();
    if !deleting && ctx.expectations.satisfied(&uid) {
        manage(view, ctx, &active).await?;
    }
    let now = pods::now();
    let template_labels = view
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref()?.labels.clone())
        .unwrap_or_default();
    let mut counts = Counts {
        replicas: active.len() as i32,
        ..Default::default()
    };
    let mut next: Option<f64> = None;
    for p in &active {
        let labels = p.metadata.labels.clone().unwrap_or_default();
        if pods::map_matches(&template_labels, &labels) {
            counts.fully_labeled += 1;
        }
        if pods::is_ready(p) {
            counts.ready += 1;
        }
        if pods::is_available(p, view.min_ready, now) {
            counts.available += 1;
        } else if let Some(s) = pods::seconds_to_available(p, view.min_ready, now) {
            next = Some(next.map_or(s, |n: f64| n.min(s)));
        }
    }
    let action = match next {
        Some(s) => Action::requeue(Duration::from_secs_f64(s + 0.05)),
        None => Action::await_change(),
    };
    Ok((counts, action))
}

/// Adopts an orphan (kube's `ClaimPods` adoption: a patch adding the controller reference,
/// conditional on the pod's resourceVersion). Returns whether it is now ours.
async fn adopt(ctx: &Ctx, view: &View, pod: &Pod) -> Result<bool, ControllerError> {
    let (api_version, kind, _) = view.kind();
    let owner = pods::controller_ref(api_version, kind, &view.meta);
    let patch = pods::adopt_patch(&pod.metadata, owner);
    let name = pod.metadata.name.clone().unwrap_or_default();
    match Api::<Pod>::namespaced(ctx.client.clone(), &ns_of(&pod.metadata))
        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(ControllerError::api(format!("adopting pod {name}"), e)),
    }
}

/// Releases a pod that no longer matches (drops the controller reference).
async fn release(ctx: &Ctx, pod: &Pod, uid: &str) -> Result<(), ControllerError> {
    let patch = pods::release_patch(&pod.metadata, uid);
    let name = pod.metadata.name.clone().unwrap_or_default();
    match Api::<Pod>::namespaced(ctx.client.clone(), &ns_of(&pod.metadata))
        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(ControllerError::api(format!("releasing pod {name}"), e)),
    }
}

/// kube's `manageReplicas`.
async fn manage(view: &View, ctx: &Ctx, active: &[&Pod]) -> Result<(), ControllerError> {
    let ns = ns_of(&view.meta);
    let name = view.meta.name.clone().unwrap_or_default();
    let diff = active.len() as i64 - i64::from(view.replicas);
    let api = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
    let (api_version, kind, component) = view.kind();
    if diff < 0 {
        let Some(template) = &view.template else {
            return Ok(());
        };
        let want = ((-diff) as usize).min(BURST_REPLICAS);
        let pod = pods::pod_from_template(
            template,
            &ns,
            &format!("{name}-"),
            pods::controller_ref(api_version, kind, &view.meta),
        );
        let new = vec![pod; want];
        let r = match &view.owner {
            Owner::Rs(o) => pods::create_pods(ctx, component, o.as_ref(), &api, &new).await,
            Owner::Rc(o) => pods::create_pods(ctx, component, o.as_ref(), &api, &new).await,
        };
        r.map_err(|e| ControllerError::api(format!("creating pods of {name}"), e))?;
    } else if diff > 0 {
        let n = (diff as usize).min(BURST_REPLICAS);
        let victims = pods::pods_to_delete(active, n, pods::now());
        match &view.owner {
            Owner::Rs(o) => pods::delete_pods(ctx, component, o.as_ref(), &api, &victims).await,
            Owner::Rc(o) => pods::delete_pods(ctx, component, o.as_ref(), &api, &victims).await,
        }
    }
    Ok(())
}
