//! The StatefulSet controller (kube's `pkg/controller/statefulset`): pods `<set>-<ordinal>`
//! with a stable identity — hostname = pod name, subdomain = `serviceName`, labels
//! `statefulset.kubernetes.io/pod-name` and `apps.kubernetes.io/pod-index` — and their own
//! claims from `volumeClaimTemplates` (`<template>-<set>-<ordinal>`, created before the pod).
//! Ordinals run from `spec.ordinals.start` (default 0) for `replicas`.
//!
//! Claims are kept or deleted by `persistentVolumeClaimRetentionPolicy` through owner
//! references, as kube's `updateClaimOwnerRefForSetAndPod` sets them (controller references,
//! so the garbage collector deletes the claim with its owner): `whenDeleted: Delete` makes the
//! set own the claims of the pods in range; `whenScaled: Delete` makes a condemned pod (its
//! ordinal out of range) own its claims, so they go with it; `Retain` for both (the default)
//! leaves them unowned. A claim with a reference to an older set or pod of the same name, or
//! another controller, is left alone.
//!
//! Revisions are ControllerRevisions `<set>-<hash>` owned by the set, whose `data` is the
//! template as kube's strategic patch (`{"spec":{"template":{…,"$patch":"replace"}}}`); each
//! pod carries its revision in `controller-revision-hash`.
//!
//! Per sync (kube's `updateStatefulSet`, `OrderedReady` when not `Parallel`): ordinals
//! `0..replicas` are made in order — a missing pod is created (the current revision below the
//! RollingUpdate `partition`, else the update revision), a failed one deleted to be made again;
//! with `OrderedReady` nothing further happens until the pod is Running and Ready. Surplus
//! ordinals are deleted highest first (one at a time, when every other pod is healthy, with
//! `OrderedReady`). With `RollingUpdate`, once every pod is Running and Ready, the
//! highest-ordinal pod at or above the partition that is not at the update revision is deleted
//! (it comes back at the update revision); `OnDelete` only makes deleted pods at the update
//! revision. The status (replicas, readyReplicas, currentReplicas, updatedReplicas,
//! availableReplicas, currentRevision, updateRevision, observedGeneration, collisionCount) lets
//! `kubectl rollout status sts/<name>` follow it; old revisions beyond
//! `revisionHistoryLimit` (10) not used by a pod are deleted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, StatefulSet, StatefulSetSpec, StatefulSetStatus,
};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use serde_json::json;

use super::events::{self, Kind};
use super::pods;
use super::replicaset::{ns_of, nz};
use super::rollout::compute_hash;
use super::Ctx;
use crate::ControllerError;

/// The pod label naming its revision (the ControllerRevision's name).
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// The pod label naming the pod (for per-pod Services).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The pod label with its ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// The ControllerRevision label with the template hash.
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";
const COMPONENT: &str = "statefulset-controller";

/// The ordinal of pod `name` of set `set` (`<set>-<n>`), if it is one of its names.
pub fn ordinal(set: &str, name: &str) -> Option<i32> {
    let n = name.strip_prefix(set)?.strip_prefix('-')?;
    if n.is_empty() || (n.len() > 1 && n.starts_with('0')) {
        return None;
    }
    n.parse().ok()
}

/// A claim's name: `<template>-<set>-<ordinal>`.
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

/// The revision data kube stores for a template (`getPatch`: the template replacing the
/// set's).
pub fn revision_data(template: &PodTemplateSpec) -> serde_json::Value {
    let mut t = serde_json::to_value(template).unwrap_or_default();
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The template a revision's data holds.
pub fn revision_template(cr: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = cr.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// Pod `ordinal` of `set` at `revision` (kube's `newVersionedStatefulSetPod`).
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let spec = set.spec.clone().unwrap_or_default();
    let name = set.metadata.name.clone().unwrap_or_default();
    let pod_name = format!("{name}-{ordinal}");
    let mut pod = pods::pod_from_template(
        template,
        &ns_of(&set.metadata),
        "",
        pods::controller_ref("apps/v1", "StatefulSet", &set.metadata),
    );
    pod.metadata.generate_name = None;
    pod.metadata.name = Some(pod_name.clone());
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), pod_name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.to_string());
    if let Some(ps) = pod.spec.as_mut() {
        ps.hostname = Some(pod_name.clone());
        if !spec.service_name.as_deref().unwrap_or_default().is_empty() {
            ps.subdomain = spec.service_name.clone();
        }
        let vols = ps.volumes.get_or_insert_with(Vec::new);
        for t in spec.volume_claim_templates.iter().flatten() {
            let tname = t.metadata.name.clone().unwrap_or_default();
            let v = Volume {
                name: tname.clone(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name(&tname, &name, ordinal),
                    read_only: None,
                }),
                ..Default::default()
            };
            match vols.iter_mut().find(|v| v.name == tname) {
                Some(old) => *old = v,
                None => vols.push(v),
            }
        }
    }
    pod
}

/// The claims of pod `ordinal` (kube's `getPersistentVolumeClaims`: the template, its name,
/// the set's namespace and `matchLabels`).
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let spec = set.spec.clone().unwrap_or_default();
    let name = set.metadata.name.clone().unwrap_or_default();
    let ns = ns_of(&set.metadata);
    spec.volume_claim_templates
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let tname = t.metadata.name.clone().unwrap_or_default();
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            labels.extend(spec.selector.match_labels.clone().unwrap_or_default());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(&tname, &name, ordinal)),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    ..Default::default()
                },
                spec: t.spec.clone(),
                status: None,
            }
        })
        .collect()
}

fn revision_of(p: &Pod) -> &str {
    p.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_LABEL))
        .map(String::as_str)
        .unwrap_or("")
}

fn running_and_ready(p: &Pod) -> bool {
    pods::pod_phase(p) == "Running" && pods::is_ready(p)
}

fn terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

/// What one sync wants done (pure, so the ordering rules are unit-tested).
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Create pod `ordinal` at the current (`false`) or update (`true`) revision.
    Create(i32, bool),
    /// Delete the pod with this ordinal.
    Delete(i32),
}

/// The policy knobs of [`plan`].
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// `spec.ordinals.start`: the first ordinal.
    pub start: i32,
    pub replicas: i32,
    pub ordered: bool,
    pub rolling: bool,
    pub partition: i32,
}

/// kube's `updateStatefulSet` decisions over the pods by ordinal (`pods`: ordinal, pod, at the
/// update revision).
pub fn plan(policy: Policy, pods: &[(i32, &Pod, bool)]) -> Vec<Step> {
    let mut steps = Vec::new();
    let get = |i: i32| pods.iter().find(|(o, _, _)| *o == i);
    let end = policy.start + policy.replicas;
    // Make and repair start..start+replicas.
    for i in policy.start..end {
        match get(i) {
            None => {
                let update = !policy.rolling || i >= policy.start + policy.partition;
                steps.push(Step::Create(i, update));
                if policy.ordered {
                    return steps;
                }
            }
            Some((_, p, _)) if pods::is_terminal(p) && !terminating(p) => {
                steps.push(Step::Delete(i));
                if policy.ordered {
                    return steps;
                }
            }
            Some((_, p, _)) if policy.ordered && (terminating(p) || !running_and_ready(p)) => {
                return steps;
            }
            Some(_) => {}
        }
    }
    // Condemned ordinals (out of range), highest first.
    let mut condemned: Vec<&(i32, &Pod, bool)> = pods
        .iter()
        .filter(|(o, _, _)| *o < policy.start || *o >= end)
        .collect();
    condemned.sort_by_key(|(o, _, _)| std::cmp::Reverse(*o));
    let healthy = |skip: i32| {
        pods.iter()
            .filter(|(o, _, _)| *o != skip)
            .all(|(_, p, _)| running_and_ready(p) && !terminating(p))
    };
    for (o, p, _) in &condemned {
        if terminating(p) {
            if policy.ordered {
                return steps;
            }
            continue;
        }
        if policy.ordered && !healthy(*o) {
            return steps;
        }
        steps.push(Step::Delete(*o));
        if policy.ordered {
            return steps;
        }
    }
    if !condemned.is_empty() || !steps.is_empty() {
        return steps;
    }
    // RollingUpdate: every pod healthy, then the highest outdated ordinal ≥ partition.
    if policy.rolling {
        if !pods
            .iter()
            .all(|(_, p, _)| running_and_ready(p) && !terminating(p))
        {
            return steps;
        }
        let mut live: Vec<&(i32, &Pod, bool)> = pods.iter().collect();
        live.sort_by_key(|(o, _, _)| std::cmp::Reverse(*o));
        if let Some((o, _, _)) = live
            .into_iter()
            .find(|(o, _, updated)| *o >= policy.start + policy.partition && !*updated)
        {
            steps.push(Step::Delete(*o));
        }
    }
    steps
}

/// Reconciles one StatefulSet.
pub async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = ns_of(&set.metadata);
    let name = set.metadata.name.clone().unwrap_or_default();
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let spec = set.spec.clone().unwrap_or_default();
    let old_status = set.status.clone().unwrap_or_default();

    // Revisions.
    let crs: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let mut revisions: Vec<ControllerRevision> = crs
        .list(&ListParams::default())
        .await
        .map_err(|e| ControllerError::api(format!("listing revisions of {name}"), e))?
        .items
        .into_iter()
        .filter(|c| pods::controller_of(&c.metadata).is_some_and(|o| o.uid == uid))
        .collect();
    revisions.sort_by_key(|c| c.revision);
    let collision = old_status.collision_count;
    let hash = compute_hash(&spec.template, collision);
    let update_name = format!("{name}-{hash}");
    if !revisions
        .iter()
        .any(|c| c.metadata.name.as_deref() == Some(update_name.as_str()))
    {
        let mut labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(HASH_LABEL.into(), hash.clone());
        let cr = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(update_name.clone()),
                namespace: Some(ns.clone()),
                labels: Some(labels),
                owner_references: Some(vec![pods::controller_ref(
                    "apps/v1",
                    "StatefulSet",
                    &set.metadata,
                )]),
                ..Default::default()
            },
            data: Some(RawExtension(revision_data(&spec.template))),
            revision: revisions.last().map_or(1, |c| c.revision + 1),
        };
        match crs.create(&PostParams::default(), &cr).await {
            Ok(c) => revisions.push(c),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                return Ok(Action::requeue(Duration::from_millis(200)))
            }
            Err(e) => {
                return Err(ControllerError::api(
                    format!("creating revision {update_name}"),
                    e,
                ))
            }
        }
    }
    let current_name = old_status
        .current_revision
        .clone()
        .filter(|c| {
            revisions
                .iter()
                .any(|r| r.metadata.name.as_ref() == Some(c))
        })
        .unwrap_or_else(|| update_name.clone());
    let current_template = revisions
        .iter()
        .find(|r| r.metadata.name.as_ref() == Some(&current_name))
        .and_then(revision_template)
        .unwrap_or_else(|| spec.template.clone());

    // Pods by ordinal.
    let owned: Vec<Arc<Pod>> = ctx
        .informers
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|p| pods::controller_of(&p.metadata).is_some_and(|o| o.uid == uid))
        .collect();
    let by_ordinal: Vec<(i32, &Pod, bool)> = owned
        .iter()
        .filter_map(|p| {
            let o = ordinal(&name, p.metadata.name.as_deref()?)?;
            Some((o, p.as_ref(), revision_of(p) == update_name))
        })
        .collect();
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
    let policy = Policy {
        start: start_ordinal(&spec),
        replicas: spec.replicas.unwrap_or(1),
        ordered: spec.pod_management_policy.as_deref() != Some("Parallel"),
        rolling,
        partition: strategy
            .rolling_update
            .as_ref()
            .and_then(|r| r.partition)
            .unwrap_or(0),
    };
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    // Claims' owners by the retention policy, before any condemned pod goes.
    if !spec
        .volume_claim_templates
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        sync_claim_owners(&ctx, &set, &by_ordinal, policy).await?;
    }
    for step in plan(policy, &by_ordinal) {
        match step {
            Step::Create(i, update) => {
                let pod_name = format!("{name}-{i}");
                if !ensure_claims(&ctx, &set, i, &pod_name, policy).await? {
                    // A claim of the pod is still being deleted: wait for it (kube's
                    // PodClaimIsStale).
                    continue;
                }
                let (template, rev) = if update {
                    (&spec.template, &update_name)
                } else {
                    (&current_template, &current_name)
                };
                let pod = new_pod(&set, template, rev, i);
                match pod_api.create(&PostParams::default(), &pod).await {
                    Ok(_) => {
                        events::record(
                            &ctx.client,
                            COMPONENT,
                            set.as_ref(),
                            Kind::Normal,
                            "SuccessfulCreate",
                            format!("create Pod {pod_name} in StatefulSet {name} successful"),
                        )
                        .await
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => {
                        events::record(
                            &ctx.client,
                            COMPONENT,
                            set.as_ref(),
                            Kind::Warning,
                            "FailedCreate",
                            format!(
                                "create Pod {pod_name} in StatefulSet {name} failed error: {e}"
                            ),
                        )
                        .await;
                        return Err(ControllerError::api(format!("creating pod {pod_name}"), e));
                    }
                }
            }
            Step::Delete(i) => {
                let pod_name = format!("{name}-{i}");
                match pod_api.delete(&pod_name, &DeleteParams::default()).await {
                    Ok(_) => {
                        events::record(
                            &ctx.client,
                            COMPONENT,
                            set.as_ref(),
                            Kind::Normal,
                            "SuccessfulDelete",
                            format!("delete Pod {pod_name} in StatefulSet {name} successful"),
                        )
                        .await
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => {
                        return Err(ControllerError::api(format!("deleting pod {pod_name}"), e))
                    }
                }
            }
        }
    }

    // Status.
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let now = pods::now();
    let mut st = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        collision_count: collision,
        update_revision: Some(update_name.clone()),
        current_revision: Some(current_name.clone()),
        conditions: old_status.conditions.clone(),
        ..Default::default()
    };
    let (mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0);
    let mut next: Option<f64> = None;
    for (_, p, _) in &by_ordinal {
        st.replicas += 1;
        if running_and_ready(p) {
            ready += 1;
            if pods::is_available(p, min_ready, now) {
                available += 1;
            } else if let Some(s) = pods::seconds_to_available(p, min_ready, now) {
                next = Some(next.map_or(s, |n: f64| n.min(s)));
            }
        }
        if !terminating(p) {
            if revision_of(p) == current_name {
                current += 1;
            }
            if revision_of(p) == update_name {
                updated += 1;
            }
        }
    }
    // kube's completeRollingUpdate.
    if rolling && updated == st.replicas && ready == st.replicas && st.replicas == policy.replicas {
        current = updated;
        st.current_revision = Some(update_name.clone());
    }
    st.ready_replicas = nz(ready);
    st.available_replicas = Some(available);
    st.current_replicas = nz(current);
    st.updated_replicas = nz(updated);
    if st != old_status {
        let mut new = (*set).clone();
        new.status = Some(st.clone());
        Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns)
            .replace_status(&name, &PostParams::default(), &new)
            .await
            .map_err(|e| {
                ControllerError::api(format!("updating the status of statefulset {name}"), e)
            })?;
    }

    // History: keep revisionHistoryLimit revisions besides those in use.
    let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
    let in_use: Vec<String> = by_ordinal
        .iter()
        .map(|(_, p, _)| revision_of(p).to_string())
        .chain([update_name, st.current_revision.clone().unwrap_or_default()])
        .collect();
    let unused: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| !in_use.iter().any(|u| r.metadata.name.as_ref() == Some(u)))
        .collect();
    if unused.len() > limit {
        for r in &unused[..unused.len() - limit] {
            let rn = r.metadata.name.clone().unwrap_or_default();
            let _ = crs.delete(&rn, &DeleteParams::default()).await;
        }
    }
    Ok(match next {
        Some(s) => Action::requeue(Duration::from_secs_f64(s + 0.05)),
        None => Action::requeue(Duration::from_secs(30)),
    })
}

/// `spec.ordinals.start` (0 when unset).
pub fn start_ordinal(spec: &StatefulSetSpec) -> i32 {
    spec.ordinals
        .as_ref()
        .and_then(|o| o.start)
        .unwrap_or(0)
        .max(0)
}

/// The retention policy's two answers: whether claims go with the set (`whenDeleted`) and
/// with a scaled-down pod (`whenScaled`); `Retain` (kube's default) is `false`.
pub fn retention(spec: &StatefulSetSpec) -> (bool, bool) {
    let p = spec.persistent_volume_claim_retention_policy.as_ref();
    let delete = |v: Option<&String>| v.map(String::as_str) == Some("Delete");
    (
        delete(p.and_then(|p| p.when_deleted.as_ref())),
        delete(p.and_then(|p| p.when_scaled.as_ref())),
    )
}

/// A reference's identity as kube's `matchesRef`: same kind, group and name (any uid).
fn matches_ref(r: &OwnerReference, api_version: &str, kind: &str, name: &str) -> bool {
    let group = |v: &str| v.rsplit_once('/').map_or("", |(g, _)| g).to_string();
    r.kind == kind && r.name == name && group(&r.api_version) == group(api_version)
}

/// The owner references claim `refs` should have (kube's `isClaimOwnerUpToDate` and
/// `updateClaimOwnerRefForSetAndPod`) for `set` and its pod `pod` (in the ordinal range or
/// not: `in_range`); `None` when they are right already or must not be touched (a stale
/// reference to an older set/pod of the same name). `whenDeleted: Delete` → a controller
/// reference to the set (in range); `whenScaled: Delete` → one to the pod once out of range.
pub fn claim_owners(
    refs: &[OwnerReference],
    set: &StatefulSet,
    pod: &ObjectMeta,
    in_range: bool,
) -> Option<Vec<OwnerReference>> {
    let set_name = set.metadata.name.as_deref().unwrap_or_default();
    let set_uid = set.metadata.uid.as_deref().unwrap_or_default();
    let pod_name = pod.name.as_deref().unwrap_or_default();
    let pod_uid = pod.uid.as_deref().unwrap_or_default();
    let is_set = |r: &OwnerReference| matches_ref(r, "apps/v1", "StatefulSet", set_name);
    let is_pod = |r: &OwnerReference| matches_ref(r, "v1", "Pod", pod_name);
    if refs
        .iter()
        .any(|r| (is_set(r) && r.uid != set_uid) || (is_pod(r) && r.uid != pod_uid))
    {
        return None; // A previous controller's claim: not touched.
    }
    let mut out: Vec<OwnerReference> = refs
        .iter()
        .filter(|r| !is_set(r) && !is_pod(r))
        .cloned()
        .collect();
    let unexpected = out.iter().any(|r| r.controller == Some(true));
    if !unexpected {
        let (when_deleted, when_scaled) = retention(&set.spec.clone().unwrap_or_default());
        if when_scaled && !in_range {
            out.push(pods::controller_ref("v1", "Pod", pod));
        } else if when_deleted && in_range {
            out.push(pods::controller_ref(
                "apps/v1",
                "StatefulSet",
                &set.metadata,
            ));
        }
    }
    let same = out.len() == refs.len() && out.iter().all(|r| refs.contains(r));
    (!same).then_some(out)
}

/// Sets the owner references of the claims of every pod of the set by the retention policy
/// (kube's `UpdatePodClaimForRetentionPolicy`, for the pods in range and the condemned).
async fn sync_claim_owners(
    ctx: &Ctx,
    set: &StatefulSet,
    pods_by_ordinal: &[(i32, &Pod, bool)],
    policy: Policy,
) -> Result<(), ControllerError> {
    let ns = ns_of(&set.metadata);
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let claims = api
        .list(&ListParams::default())
        .await
        .map_err(|e| ControllerError::api(format!("listing claims of {ns}"), e))?
        .items;
    for (o, pod, _) in pods_by_ordinal {
        if terminating(pod) {
            continue;
        }
        let in_range = *o >= policy.start && *o < policy.start + policy.replicas;
        for want in claims_for(set, *o) {
            let Some(claim) = claims
                .iter()
                .find(|c| c.metadata.name == want.metadata.name)
            else {
                continue;
            };
            if claim.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let refs = claim.metadata.owner_references.clone().unwrap_or_default();
            let Some(new) = claim_owners(&refs, set, &pod.metadata, in_range) else {
                continue;
            };
            let cname = claim.metadata.name.clone().unwrap_or_default();
            let patch = json!({"metadata": {"resourceVersion": claim.metadata.resource_version,
                "ownerReferences": new}});
            match api
                .patch(&cname, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(ControllerError::api(format!("owners of claim {cname}"), e)),
            }
        }
    }
    Ok(())
}

/// Creates the claims of pod `ordinal` that do not exist yet (kube's
/// `createPersistentVolumeClaims`), owned as the retention policy says; `false` when one of
/// them is still being deleted (the pod must wait, kube's `PodClaimIsStale`).
async fn ensure_claims(
    ctx: &Ctx,
    set: &StatefulSet,
    ordinal: i32,
    pod_name: &str,
    policy: Policy,
) -> Result<bool, ControllerError> {
    let ns = ns_of(&set.metadata);
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let in_range = ordinal >= policy.start && ordinal < policy.start + policy.replicas;
    let (when_deleted, _) = retention(&set.spec.clone().unwrap_or_default());
    for mut claim in claims_for(set, ordinal) {
        let cname = claim.metadata.name.clone().unwrap_or_default();
        let existing = api
            .get_opt(&cname)
            .await
            .map_err(|e| ControllerError::api(format!("reading claim {cname}"), e))?;
        if let Some(c) = existing {
            if c.metadata.deletion_timestamp.is_some() {
                return Ok(false);
            }
            continue;
        }
        // The pod does not exist yet: only the set can own the new claim.
        if when_deleted && in_range {
            claim.metadata.owner_references = Some(vec![pods::controller_ref(
                "apps/v1",
                "StatefulSet",
                &set.metadata,
            )]);
        }
        match api.create(&PostParams::default(), &claim).await {
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Ok(_) => {
                events::record(
                    &ctx.client,
                    COMPONENT,
                    set,
                    Kind::Normal,
                    "SuccessfulCreate",
                    format!(
                        "create Claim {cname} Pod {pod_name} in StatefulSet {set_name} success"
                    ),
                )
                .await
            }
            Err(e) => return Err(ControllerError::api(format!("creating claim {cname}"), e)),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {"phase": if ready {"Running"} else {"Pending"},
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .unwrap()
    }

    fn ordered(replicas: i32) -> Policy {
        Policy {
            start: 0,
            replicas,
            ordered: true,
            rolling: true,
            partition: 0,
        }
    }

    #[test]
    fn ordinals_and_names() {
        assert_eq!(ordinal("web", "web-0"), Some(0));
        assert_eq!(ordinal("web", "web-12"), Some(12));
        assert_eq!(ordinal("web", "web-01"), None);
        assert_eq!(ordinal("web", "webx-1"), None);
        assert_eq!(ordinal("web", "web-"), None);
        assert_eq!(claim_name("data", "web", 1), "data-web-1");
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time() {
        assert_eq!(plan(ordered(3), &[]), [Step::Create(0, true)]);
        let p0 = pod("web-0", false);
        assert_eq!(plan(ordered(3), &[(0, &p0, true)]), []);
        let p0 = pod("web-0", true);
        assert_eq!(plan(ordered(3), &[(0, &p0, true)]), [Step::Create(1, true)]);
        let parallel = Policy {
            ordered: false,
            ..ordered(3)
        };
        assert_eq!(
            plan(parallel, &[]),
            [
                Step::Create(0, true),
                Step::Create(1, true),
                Step::Create(2, true)
            ]
        );
    }

    #[test]
    fn scale_down_highest_first_and_rolling_updates_from_the_top() {
        let (a, b, c) = (pod("web-0", true), pod("web-1", true), pod("web-2", true));
        let all = [(0, &a, true), (1, &b, true), (2, &c, true)];
        assert_eq!(plan(ordered(1), &all), [Step::Delete(2)]);
        let outdated = [(0, &a, false), (1, &b, false), (2, &c, false)];
        assert_eq!(plan(ordered(3), &outdated), [Step::Delete(2)]);
        let part = Policy {
            partition: 2,
            ..ordered(3)
        };
        let mixed = [(0, &a, false), (1, &b, false), (2, &c, true)];
        assert_eq!(plan(part, &mixed), []);
        let onde = Policy {
            rolling: false,
            ..ordered(3)
        };
        assert_eq!(plan(onde, &outdated), []);
        // Below the partition, a missing pod comes back at the current revision.
        assert_eq!(plan(part, &[(0, &a, false)]), [Step::Create(1, false)]);
    }

    #[test]
    fn ordinals_start_shifts_the_range_and_the_partition() {
        let p = Policy {
            start: 5,
            ..ordered(2)
        };
        assert_eq!(plan(p, &[]), [Step::Create(5, true)]);
        let (a, b, z) = (pod("web-5", true), pod("web-6", true), pod("web-0", true));
        // web-0 is below the range: condemned.
        assert_eq!(
            plan(p, &[(0, &z, true), (5, &a, true), (6, &b, true)]),
            [Step::Delete(0)]
        );
        let part = Policy { partition: 1, ..p };
        assert_eq!(
            plan(part, &[(5, &a, false), (6, &b, false)]),
            [Step::Delete(6)]
        );
        assert_eq!(plan(part, &[(5, &a, false), (6, &b, true)]), []);
        assert_eq!(plan(part, &[(6, &b, true)]), [Step::Create(5, false)]);
    }

    #[test]
    fn claim_owners_follow_the_retention_policy() {
        let set = |deleted: &str, scaled: &str| -> StatefulSet {
            serde_json::from_value(json!({
                "metadata": {"name": "web", "namespace": "default", "uid": "set-uid"},
                "spec": {"selector": {}, "template": {},
                    "persistentVolumeClaimRetentionPolicy": {"whenDeleted": deleted, "whenScaled": scaled}}
            }))
            .unwrap()
        };
        let pod: ObjectMeta =
            serde_json::from_value(json!({"name": "web-1", "uid": "pod-uid"})).unwrap();
        let uids = |r: Option<Vec<OwnerReference>>| {
            r.map(|v| v.into_iter().map(|r| r.uid).collect::<Vec<_>>())
        };
        // Retain/Retain: nothing to add; refs of ours are removed.
        assert_eq!(
            uids(claim_owners(&[], &set("Retain", "Retain"), &pod, true)),
            None
        );
        let by_set = vec![pods::controller_ref(
            "apps/v1",
            "StatefulSet",
            &set("Retain", "Retain").metadata,
        )];
        assert_eq!(
            uids(claim_owners(&by_set, &set("Retain", "Retain"), &pod, true)),
            Some(vec![])
        );
        // whenDeleted: Delete → the set owns the claims of pods in range.
        let r = claim_owners(&[], &set("Delete", "Retain"), &pod, true).unwrap();
        assert_eq!(r[0].uid, "set-uid");
        assert_eq!(r[0].controller, Some(true));
        assert_eq!(claim_owners(&r, &set("Delete", "Retain"), &pod, true), None);
        // whenScaled: Delete → a condemned pod owns its claims, the set no longer.
        assert_eq!(
            uids(claim_owners(&r, &set("Delete", "Delete"), &pod, false)),
            Some(vec!["pod-uid".to_string()])
        );
        assert_eq!(
            uids(claim_owners(&[], &set("Retain", "Delete"), &pod, true)),
            None
        );
        // A stale reference (an older set of the same name) or another controller: kept.
        let mut stale = by_set.clone();
        stale[0].uid = "old".into();
        assert_eq!(
            claim_owners(&stale, &set("Delete", "Delete"), &pod, true),
            None
        );
        let other = vec![OwnerReference {
            api_version: "example.com/v1".into(),
            kind: "Thing".into(),
            name: "t".into(),
            uid: "t".into(),
            controller: Some(true),
            block_owner_deletion: None,
        }];
        assert_eq!(
            claim_owners(&other, &set("Delete", "Delete"), &pod, true),
            None
        );
    }

    #[test]
    fn pods_get_identity_and_claims() {
        let set: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u"},
            "spec": {"serviceName": "nginx", "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}
        }))
        .unwrap();
        let t = set.spec.as_ref().unwrap().template.clone();
        let p = new_pod(&set, &t, "web-abc", 1);
        assert_eq!(p.metadata.name.as_deref(), Some("web-1"));
        let l = p.metadata.labels.unwrap();
        assert_eq!(l[REVISION_LABEL], "web-abc");
        assert_eq!(l[POD_NAME_LABEL], "web-1");
        assert_eq!(l[POD_INDEX_LABEL], "1");
        let s = p.spec.unwrap();
        assert_eq!(s.hostname.as_deref(), Some("web-1"));
        assert_eq!(s.subdomain.as_deref(), Some("nginx"));
        let v = &s.volumes.unwrap()[0];
        assert_eq!(
            v.persistent_volume_claim.as_ref().unwrap().claim_name,
            "data-web-1"
        );
        let c = &claims_for(&set, 1)[0];
        assert_eq!(c.metadata.name.as_deref(), Some("data-web-1"));
        assert_eq!(c.metadata.labels.as_ref().unwrap()["app"], "web");
        let cr = ControllerRevision {
            data: Some(RawExtension(revision_data(&t))),
            ..Default::default()
        };
        assert_eq!(revision_template(&cr), Some(t));
    }
}
