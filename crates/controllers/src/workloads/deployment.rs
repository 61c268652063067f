//! The Deployment controller (kube's `pkg/controller/deployment`: `sync.go`, `rolling.go`,
//! `recreate.go`, `progress.go`): one ReplicaSet per pod template, named
//! `<deployment>-<pod-template-hash>` with that label in its selector and template; rolling
//! updates bounded by maxSurge/maxUnavailable, Recreate, proportional scaling of a scaling
//! event during a rollout, paused Deployments, the revision annotations `kubectl rollout
//! history|undo` read, `revisionHistoryLimit` cleanup, the Progressing and Available
//! conditions with kube's reasons and messages, and `ScalingReplicaSet` events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use serde_json::json;

use super::events::{self, Kind};
use super::pods;
use super::replicaset::ns_of;
use super::rollout::{self, POD_TEMPLATE_HASH};
use super::Ctx;
use crate::ControllerError;

const COMPONENT: &str = "deployment-controller";
/// The revision of a ReplicaSet (and the Deployment's current one).
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// The earlier revisions a ReplicaSet served (after a rollback to it).
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// `spec.replicas` of the Deployment when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// `spec.replicas + maxSurge` then.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const MAX_REV_HISTORY_CHARS: usize = 2000;

fn skip_copy(k: &str) -> bool {
    matches!(
        k,
        LAST_APPLIED
            | REVISION
            | REVISION_HISTORY
            | DESIRED_REPLICAS
            | MAX_REPLICAS
            | "deployment.kubernetes.io/error-selector-overlapping-with"
            | "deployment.kubernetes.io/selector-updated-at"
    )
}

/// Reconciles one Deployment (kube's `syncDeployment`).
pub async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let mut dc = Dc {
        ctx: &ctx,
        d: (*d).clone(),
        rss: Vec::new(),
        requeue: None,
    };
    let selector = d
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    if pods::selector_is_empty(&selector) {
        dc.event(
            Kind::Warning,
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.".into(),
        )
        .await;
        return Ok(Action::await_change());
    }
    dc.claim().await?;
    if dc.d.metadata.deletion_timestamp.is_some() {
        let (new, old) = dc.get_all(false).await?;
        dc.sync_status(new, &old).await?;
        return Ok(dc.action());
    }
    dc.check_paused_conditions().await?;
    let paused = dc.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    if paused || dc.is_scaling_event().await? {
        dc.sync().await?;
    } else if rollout::is_rolling(&dc.d) {
        dc.rollout_rolling().await?;
    } else {
        dc.rollout_recreate().await?;
    }
    Ok(dc.action())
}

struct Dc<'a> {
    ctx: &'a Ctx,
    d: Deployment,
    rss: Vec<ReplicaSet>,
    requeue: Option<Duration>,
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}
fn status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}
fn available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}
fn ready(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}
fn annotation_int(meta: &ObjectMeta, key: &str) -> Option<i64> {
    meta.annotations.as_ref()?.get(key)?.parse().ok()
}
fn revision(rs: &ReplicaSet) -> i64 {
    annotation_int(&rs.metadata, REVISION).unwrap_or(0)
}
fn created(rs: &ReplicaSet) -> (i128, String) {
    (
        rs.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_nanosecond())
            .unwrap_or_default(),
        rs.metadata.name.clone().unwrap_or_default(),
    )
}

/// Templates equal but for the `pod-template-hash` label (kube's `EqualIgnoreHash`).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(m) = t.metadata.as_mut() {
            if let Some(l) = m.labels.as_mut() {
                l.remove(POD_TEMPLATE_HASH);
                if l.is_empty() {
                    m.labels = None;
                }
            }
        }
        serde_json::to_value(t).unwrap_or_default()
    };
    strip(a) == strip(b)
}

/// Sets `key` in a condition list as kube's `SetDeploymentCondition`: unchanged when status and
/// reason are; the transition time kept when only the reason changes.
fn set_condition(status: &mut DeploymentStatus, mut c: DeploymentCondition) {
    let conds = status.conditions.get_or_insert_with(Vec::new);
    if let Some(cur) = conds.iter().find(|x| x.type_ == c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    conds.retain(|x| x.type_ != c.type_);
    conds.push(c);
}

fn condition(type_: &str, status: &str, reason: &str, message: String) -> DeploymentCondition {
    let now = pods::now_time();
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

fn get_condition<'s>(status: &'s DeploymentStatus, type_: &str) -> Option<&'s DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

impl Dc<'_> {
    fn ns(&self) -> String {
        ns_of(&self.d.metadata)
    }
    fn name(&self) -> String {
        self.d.metadata.name.clone().unwrap_or_default()
    }
    fn replicas(&self) -> i32 {
        rollout::replicas(&self.d)
    }
    fn template(&self) -> PodTemplateSpec {
        self.d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default()
    }
    fn progress_deadline(&self) -> Option<i32> {
        self.d
            .spec
            .as_ref()
            .and_then(|s| s.progress_deadline_seconds)
            .filter(|s| *s != i32::MAX)
    }
    fn status(&self) -> DeploymentStatus {
        self.d.status.clone().unwrap_or_default()
    }
    fn rs_api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.ctx.client.clone(), &self.ns())
    }
    fn action(&self) -> Action {
        match self.requeue {
            Some(d) => Action::requeue(d),
            None => Action::await_change(),
        }
    }
    async fn event(&self, kind: Kind, reason: &str, message: String) {
        events::record(&self.ctx.client, COMPONENT, &self.d, kind, reason, message).await;
    }

    /// The ReplicaSets this Deployment controls, adopting matching orphans and releasing
    /// owned ones that stopped matching (kube's `getReplicaSetsForDeployment`).
    async fn claim(&mut self) -> Result<(), ControllerError> {
        let ns = self.ns();
        let uid = self.d.metadata.uid.clone().unwrap_or_default();
        let selector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let deleting = self.d.metadata.deletion_timestamp.is_some();
        let mut out = Vec::new();
        for rs in self.ctx.informers.replicasets.state() {
            if rs.metadata.namespace.as_deref() != Some(ns.as_str()) {
                continue;
            }
            let labels = rs.metadata.labels.clone().unwrap_or_default();
            let matches = pods::selector_matches(&selector, &labels);
            let name = rs.metadata.name.clone().unwrap_or_default();
            match pods::controller_of(&rs.metadata) {
                Some(c) if c.uid == uid => {
                    if matches || deleting {
                        out.push((*rs).clone());
                    } else {
                        let patch = pods::release_patch(&rs.metadata, &uid);
                        self.rs_api()
                            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                            .await
                            .map_err(|e| {
                                ControllerError::api(format!("releasing replicaset {name}"), e)
                            })?;
                    }
                }
                None if matches && !deleting && rs.metadata.deletion_timestamp.is_none() => {
                    let owner = pods::controller_ref("apps/v1", "Deployment", &self.d.metadata);
                    let patch = pods::adopt_patch(&rs.metadata, owner);
                    let adopted = self
                        .rs_api()
                        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                        .await
                        .map_err(|e| {
                            ControllerError::api(format!("adopting replicaset {name}"), e)
                        })?;
                    out.push(adopted);
                }
                _ => {}
            }
        }
        out.sort_by_key(created);
        self.rss = out;
        Ok(())
    }

    /// The new ReplicaSet (index) and the old ones, syncing revisions and annotations, and
    /// creating the new one when `create` (kube's `getAllReplicaSetsAndSyncRevision`).
    async fn get_all(
        &mut self,
        create: bool,
    ) -> Result<(Option<usize>, Vec<usize>), ControllerError> {
        let template = self.template();
        let new = self.rss.iter().position(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignore_hash(t, &template))
        });
        let old: Vec<usize> = (0..self.rss.len()).filter(|i| Some(*i) != new).collect();
        let max_old = old
            .iter()
            .map(|i| revision(&self.rss[*i]))
            .max()
            .unwrap_or(0);
        let new_revision = (max_old + 1).to_string();
        match new {
            Some(i) => {
                self.sync_existing_new(i, &new_revision).await?;
                Ok((Some(i), old))
            }
            None if create => {
                let i = self.create_new(&old, &new_revision).await?;
                Ok((Some(i), old))
            }
            None => Ok((None, old)),
        }
    }

    /// kube's `SetNewReplicaSetAnnotations`; true when something changed.
    fn set_new_rs_annotations(
        &self,
        rs: &mut ReplicaSet,
        new_revision: &str,
        exists: bool,
    ) -> bool {
        let mut changed = false;
        let anns = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
        for (k, v) in self.d.metadata.annotations.iter().flatten() {
            if skip_copy(k) || anns.get(k) == Some(v) {
                continue;
            }
            anns.insert(k.clone(), v.clone());
            changed = true;
        }
        let old = anns.get(REVISION).cloned();
        let old_int: i64 = old.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
        let new_int: i64 = new_revision.parse().unwrap_or(0);
        if old_int < new_int {
            anns.insert(REVISION.into(), new_revision.into());
            changed = true;
            if let Some(old) = old {
                let history = anns.get(REVISION_HISTORY).cloned().unwrap_or_default();
                if history.is_empty() {
                    anns.insert(REVISION_HISTORY.into(), old);
                } else {
                    let mut parts: Vec<&str> = history.split(',').collect();
                    let mut total = history.len() + old.len() + 1;
                    let mut start = 0;
                    while total > MAX_REV_HISTORY_CHARS && start < parts.len() {
                        total -= parts[start].len() + 1;
                        start += 1;
                    }
                    if total <= MAX_REV_HISTORY_CHARS {
                        parts = parts.split_off(start);
                        parts.push(&old);
                        let joined = parts.join(",");
                        anns.insert(REVISION_HISTORY.into(), joined);
                    }
                }
            }
        }
        if !exists && self.set_replicas_annotations(rs) {
            changed = true;
        }
        changed
    }

    /// kube's `SetReplicasAnnotations`: desired-replicas and max-replicas.
    fn set_replicas_annotations(&self, rs: &mut ReplicaSet) -> bool {
        let desired = self.replicas().to_string();
        let max = (self.replicas() + rollout::max_surge(&self.d)).to_string();
        let anns = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
        let mut changed = false;
        for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
            if anns.get(k) != Some(&v) {
                anns.insert(k.into(), v);
                changed = true;
            }
        }
        changed
    }

    async fn replace_rs(&mut self, i: usize, rs: ReplicaSet) -> Result<(), ControllerError> {
        let name = rs.metadata.name.clone().unwrap_or_default();
        let updated = self
            .rs_api()
            .replace(&name, &PostParams::default(), &rs)
            .await
            .map_err(|e| ControllerError::api(format!("updating replicaset {name}"), e))?;
        self.rss[i] = updated;
        Ok(())
    }

    async fn sync_existing_new(
        &mut self,
        i: usize,
        new_revision: &str,
    ) -> Result<(), ControllerError> {
        let mut rs = self.rss[i].clone();
        let changed = self.set_new_rs_annotations(&mut rs, new_revision, true);
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        let spec = rs.spec.get_or_insert_with(ReplicaSetSpec::default);
        let min_ready_changed = spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0);
        if changed || min_ready_changed {
            spec.min_ready_seconds = min_ready;
            self.replace_rs(i, rs).await?;
        }
        let rev = self.rss[i]
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION).cloned())
            .unwrap_or_default();
        let mut needs_status = self.set_revision(&rev).await?;
        let mut status = self.status();
        if self.progress_deadline().is_some() && get_condition(&status, "Progressing").is_none() {
            let msg = format!(
                "Found new replica set {:?}",
                self.rss[i].metadata.name.clone().unwrap_or_default()
            );
            set_condition(
                &mut status,
                condition("Progressing", "True", "FoundNewReplicaSet", msg),
            );
            self.d.status = Some(status);
            needs_status = true;
        }
        if needs_status {
            self.update_status().await?;
        }
        Ok(())
    }

    /// Sets the Deployment's revision annotation (a patch of its metadata, conditional on
    /// its resourceVersion); returns whether it changed (kube then writes the status too).
    async fn set_revision(&mut self, rev: &str) -> Result<bool, ControllerError> {
        let cur = self
            .d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION));
        if cur.map(String::as_str) == Some(rev) {
            return Ok(false);
        }
        let name = self.name();
        let patch = json!({"metadata": {"annotations": {REVISION: rev}, "resourceVersion": self.d.metadata.resource_version}});
        let status = self.d.status.clone();
        let mut d = Api::<Deployment>::namespaced(self.ctx.client.clone(), &self.ns())
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(|e| {
                ControllerError::api(format!("setting the revision of deployment {name}"), e)
            })?;
        d.status = status;
        self.d = d;
        Ok(true)
    }

    async fn update_status(&mut self) -> Result<(), ControllerError> {
        let name = self.name();
        let updated = Api::<Deployment>::namespaced(self.ctx.client.clone(), &self.ns())
            .replace_status(&name, &PostParams::default(), &self.d)
            .await
            .map_err(|e| {
                ControllerError::api(format!("updating the status of deployment {name}"), e)
            })?;
        self.d = updated;
        Ok(())
    }

    async fn create_new(
        &mut self,
        old: &[usize],
        new_revision: &str,
    ) -> Result<usize, ControllerError> {
        let status = self.status();
        let collision = status.collision_count;
        let template = self.template();
        let hash = rollout::compute_hash(&template, collision);
        let mut new_template = template.clone();
        new_template
            .metadata
            .get_or_insert_with(ObjectMeta::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector: LabelSelector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let all_old: i32 = old.iter().map(|i| spec_replicas(&self.rss[*i])).sum();
        let new_replicas = rollout::new_rs_new_replicas(&self.d, all_old, 0);
        let name = format!("{}-{}", self.name(), hash);
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.ns()),
                owner_references: Some(vec![pods::controller_ref(
                    "apps/v1",
                    "Deployment",
                    &self.d.metadata,
                )]),
                labels: new_template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.labels.clone()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(new_replicas),
                min_ready_seconds: self.d.spec.as_ref().and_then(|s| s.min_ready_seconds),
                selector,
                template: Some(new_template),
            }),
            status: None,
        };
        self.set_new_rs_annotations(&mut rs, new_revision, false);
        let created = match self.rs_api().create(&PostParams::default(), &rs).await {
            Ok(c) => c,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // kube: an existing RS of ours with this template is the new one; any other
                // is a hash collision — bump collisionCount and try again.
                let existing =
                    self.rs_api().get(&name).await.map_err(|e| {
                        ControllerError::api(format!("reading replicaset {name}"), e)
                    })?;
                let ours = pods::controller_of(&existing.metadata)
                    .is_some_and(|c| Some(&c.uid) == self.d.metadata.uid.as_ref());
                let same = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignore_hash(t, &template));
                if ours && same {
                    self.rss.push(existing);
                    return Ok(self.rss.len() - 1);
                }
                let mut st = self.status();
                st.collision_count = Some(collision.unwrap_or(0) + 1);
                self.d.status = Some(st);
                self.update_status().await?;
                return Err(ControllerError::api(
                    format!("replicaset {name}: hash collision"),
                    kube::Error::Api(s),
                ));
            }
            Err(e) => {
                let msg = format!(
                    "Failed to create new replica set {name:?}: {}",
                    barge_events::error_message(&e)
                );
                self.event(Kind::Warning, "FailedCreate", msg.clone()).await;
                if self.progress_deadline().is_some() {
                    let mut st = self.status();
                    set_condition(
                        &mut st,
                        condition("Progressing", "False", "ReplicaSetCreateError", msg),
                    );
                    self.d.status = Some(st);
                    let _ = self.update_status().await;
                }
                return Err(ControllerError::api(
                    format!("creating replicaset {name}"),
                    e,
                ));
            }
        };
        if new_replicas > 0 {
            self.event(
                Kind::Normal,
                "ScalingReplicaSet",
                format!("Scaled up replica set {name} from 0 to {new_replicas}"),
            )
            .await;
        }
        self.rss.push(created);
        let i = self.rss.len() - 1;
        let mut needs = self.set_revision(new_revision).await?;
        if self.progress_deadline().is_some() {
            let mut st = self.status();
            set_condition(
                &mut st,
                condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetCreated",
                    format!("Created new replica set {name:?}"),
                ),
            );
            self.d.status = Some(st);
            needs = true;
        }
        if needs {
            self.update_status().await?;
        }
        Ok(i)
    }

    /// kube's `scaleReplicaSet`: size and replica annotations; a `ScalingReplicaSet` event
    /// when the size changes.
    async fn scale_rs(&mut self, i: usize, size: i32, op: &str) -> Result<bool, ControllerError> {
        let mut rs = self.rss[i].clone();
        let old = spec_replicas(&rs);
        let size_changed = old != size;
        let anns_changed = self.set_replicas_annotations(&mut rs);
        if !size_changed && !anns_changed {
            return Ok(false);
        }
        rs.spec.get_or_insert_with(ReplicaSetSpec::default).replicas = Some(size);
        self.replace_rs(i, rs).await?;
        if size_changed {
            let name = self.rss[i].metadata.name.clone().unwrap_or_default();
            self.event(
                Kind::Normal,
                "ScalingReplicaSet",
                format!("Scaled {op} replica set {name} from {old} to {size}"),
            )
            .await;
        }
        Ok(size_changed)
    }

    /// kube's `scaleReplicaSetAndRecordEvent`.
    async fn scale_and_record(&mut self, i: usize, size: i32) -> Result<bool, ControllerError> {
        let cur = spec_replicas(&self.rss[i]);
        if cur == size {
            return Ok(false);
        }
        let op = if cur < size { "up" } else { "down" };
        self.scale_rs(i, size, op).await
    }

    async fn is_scaling_event(&mut self) -> Result<bool, ControllerError> {
        let (new, old) = self.get_all(false).await?;
        let replicas = self.replicas();
        Ok(old.iter().copied().chain(new).any(|i| {
            let rs = &self.rss[i];
            spec_replicas(rs) > 0
                && annotation_int(&rs.metadata, DESIRED_REPLICAS)
                    .is_some_and(|d| d != i64::from(replicas))
        }))
    }

    /// kube's `sync`: scaling (and cleanup when paused), then the status.
    async fn sync(&mut self) -> Result<(), ControllerError> {
        let (new, old) = self.get_all(false).await?;
        self.scale(new, &old).await?;
        if self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false) {
            self.cleanup(&old).await?;
        }
        self.sync_status(new, &old).await
    }

    /// kube's `scale`: proportional scaling of the active ReplicaSets.
    async fn scale(&mut self, new: Option<usize>, old: &[usize]) -> Result<(), ControllerError> {
        let replicas = self.replicas();
        let mut olds_newest_first: Vec<usize> = old.to_vec();
        olds_newest_first.sort_by_key(|i| std::cmp::Reverse(created(&self.rss[*i])));
        let active: Vec<usize> = olds_newest_first
            .iter()
            .copied()
            .chain(new)
            .filter(|i| spec_replicas(&self.rss[*i]) > 0)
            .collect();
        let active_or_latest = match active.len() {
            0 => new.or(olds_newest_first.first().copied()),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(i) = active_or_latest {
            if spec_replicas(&self.rss[i]) != replicas {
                self.scale_and_record(i, replicas).await?;
            } else {
                // Only the replica annotations, if stale: they decide `is_scaling_event`.
                self.scale_rs(i, replicas, "").await?;
            }
            return Ok(());
        }
        if let Some(n) = new {
            let rs = &self.rss[n];
            let saturated = annotation_int(&rs.metadata, DESIRED_REPLICAS)
                == Some(i64::from(replicas))
                && spec_replicas(rs) == replicas
                && available(rs) == replicas;
            if saturated {
                for i in old
                    .iter()
                    .copied()
                    .filter(|i| spec_replicas(&self.rss[*i]) > 0)
                    .collect::<Vec<_>>()
                {
                    self.scale_and_record(i, 0).await?;
                }
                return Ok(());
            }
        }
        if !rollout::is_rolling(&self.d) {
            return Ok(());
        }
        let all_replicas: i32 = self.rss.iter().map(spec_replicas).sum();
        let allowed = if replicas > 0 {
            replicas + rollout::max_surge(&self.d)
        } else {
            0
        };
        let to_add = allowed - all_replicas;
        // With nothing to add, every ReplicaSet keeps its size but still gets the
        // deployment's replica annotations (kube's `scale` calls `scaleReplicaSet` for each):
        // returning early left them stale when an earlier pass failed half-way (a conflict on
        // the second ReplicaSet), and `is_scaling_event` then stayed true, so the rollout never
        // went on (a `rollout undo` under an HPA's scale-up stalled at "1 out of 10").
        let op = match to_add {
            n if n > 0 => "up",
            n if n < 0 => "down",
            _ => "",
        };
        let mut order = active.clone();
        // Larger first; ties: newer first when scaling up, older first when down.
        order.sort_by(|a, b| {
            let (ra, rb) = (&self.rss[*a], &self.rss[*b]);
            spec_replicas(rb).cmp(&spec_replicas(ra)).then_with(|| {
                if to_add > 0 {
                    created(rb).cmp(&created(ra))
                } else {
                    created(ra).cmp(&created(rb))
                }
            })
        });
        let mut added = 0;
        let mut sizes = Vec::new();
        for i in &order {
            let rs = &self.rss[*i];
            let proportion = if spec_replicas(rs) == 0 || to_add == added {
                0
            } else {
                let max = annotation_int(&rs.metadata, MAX_REPLICAS).map(|v| v as i32);
                let fraction = rollout::replica_set_fraction(&self.d, spec_replicas(rs), max);
                let allowed = to_add - added;
                if to_add > 0 {
                    fraction.min(allowed)
                } else {
                    fraction.max(allowed)
                }
            };
            sizes.push(spec_replicas(rs) + proportion);
            added += proportion;
        }
        for (k, i) in order.iter().enumerate() {
            let mut size = sizes[k];
            if k == 0 {
                size = (size + to_add - added).max(0);
            }
            self.scale_rs(*i, size, op).await?;
        }
        Ok(())
    }

    /// kube's `checkPausedConditions`.
    async fn check_paused_conditions(&mut self) -> Result<(), ControllerError> {
        if self.progress_deadline().is_none() {
            return Ok(());
        }
        let mut status = self.status();
        let cond = get_condition(&status, "Progressing");
        if cond.and_then(|c| c.reason.as_deref()) == Some("ProgressDeadlineExceeded") {
            return Ok(());
        }
        let paused_exists = cond.and_then(|c| c.reason.as_deref()) == Some("DeploymentPaused");
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let c = if paused && !paused_exists {
            condition(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused".into(),
            )
        } else if !paused && paused_exists {
            condition(
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed".into(),
            )
        } else {
            return Ok(());
        };
        set_condition(&mut status, c);
        self.d.status = Some(status);
        self.update_status().await
    }

    async fn rollout_rolling(&mut self) -> Result<(), ControllerError> {
        let (new, old) = self.get_all(true).await?;
        let n = new.expect("created");
        if self.reconcile_new(n).await? {
            return self.sync_rollout_status(new, &old).await;
        }
        if self.reconcile_old(n, &old).await? {
            return self.sync_rollout_status(new, &old).await;
        }
        let status = self.calculate_status(new, &old);
        if self.complete(&status) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(new, &old).await
    }

    /// kube's `reconcileNewReplicaSet`.
    async fn reconcile_new(&mut self, n: usize) -> Result<bool, ControllerError> {
        let replicas = self.replicas();
        let cur = spec_replicas(&self.rss[n]);
        if cur == replicas {
            return Ok(false);
        }
        if cur > replicas {
            return self.scale_and_record(n, replicas).await;
        }
        let all: i32 = self.rss.iter().map(spec_replicas).sum();
        let size = rollout::new_rs_new_replicas(&self.d, all, cur);
        self.scale_and_record(n, size).await
    }

    /// kube's `reconcileOldReplicaSets`.
    async fn reconcile_old(&mut self, n: usize, old: &[usize]) -> Result<bool, ControllerError> {
        let old_count: i32 = old.iter().map(|i| spec_replicas(&self.rss[*i])).sum();
        if old_count == 0 {
            return Ok(false);
        }
        let all: i32 = self.rss.iter().map(spec_replicas).sum();
        let min_available = self.replicas() - rollout::max_unavailable(&self.d);
        let new_unavailable = spec_replicas(&self.rss[n]) - available(&self.rss[n]);
        let max_scaled_down = all - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let mut olds: Vec<usize> = old.to_vec();
        olds.sort_by_key(|i| created(&self.rss[*i]));
        // Unhealthy replicas of old ReplicaSets go first.
        let mut cleaned = 0;
        for i in &olds {
            if cleaned >= max_scaled_down {
                break;
            }
            let rs = &self.rss[*i];
            let unhealthy = spec_replicas(rs) - available(rs);
            if spec_replicas(rs) == 0 || unhealthy <= 0 {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(unhealthy);
            let size = spec_replicas(rs) - down;
            self.scale_and_record(*i, size).await?;
            cleaned += down;
        }
        // Then available ones, down to minAvailable.
        let available_count: i32 = self.rss.iter().map(available).sum();
        let mut scaled = 0;
        if available_count > min_available {
            let total = available_count - min_available;
            for i in &olds {
                if scaled >= total {
                    break;
                }
                let cur = spec_replicas(&self.rss[*i]);
                if cur == 0 {
                    continue;
                }
                let down = cur.min(total - scaled);
                self.scale_and_record(*i, cur - down).await?;
                scaled += down;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    async fn rollout_recreate(&mut self) -> Result<(), ControllerError> {
        let (mut new, mut old) = self.get_all(false).await?;
        let mut scaled = false;
        for i in old.clone() {
            if spec_replicas(&self.rss[i]) > 0 && self.scale_and_record(i, 0).await? {
                scaled = true;
            }
        }
        if scaled {
            return self.sync_rollout_status(new, &old).await;
        }
        if self.old_pods_running(new, &old) {
            return self.sync_rollout_status(new, &old).await;
        }
        if new.is_none() {
            (new, old) = self.get_all(true).await?;
        }
        if let Some(n) = new {
            let replicas = self.replicas();
            self.scale_and_record(n, replicas).await?;
        }
        let status = self.calculate_status(new, &old);
        if self.complete(&status) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(new, &old).await
    }

    /// kube's `oldPodsRunning`.
    fn old_pods_running(&self, new: Option<usize>, old: &[usize]) -> bool {
        if old
            .iter()
            .map(|i| status_replicas(&self.rss[*i]))
            .sum::<i32>()
            > 0
        {
            return true;
        }
        let old_uids: Vec<String> = old
            .iter()
            .filter_map(|i| self.rss[*i].metadata.uid.clone())
            .collect();
        let new_uid = new.and_then(|n| self.rss[n].metadata.uid.clone());
        let ns = self.ns();
        self.ctx.informers.pods.state().iter().any(|p: &Arc<Pod>| {
            p.metadata.namespace.as_deref() == Some(ns.as_str())
                && pods::controller_of(&p.metadata)
                    .is_some_and(|c| old_uids.contains(&c.uid) && Some(&c.uid) != new_uid.as_ref())
                && !pods::is_terminal(p)
        })
    }

    /// kube's `cleanupDeployment`: old ReplicaSets beyond revisionHistoryLimit, lowest
    /// revision first, only once they have no pods.
    async fn cleanup(&mut self, old: &[usize]) -> Result<(), ControllerError> {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let mut cleanable: Vec<usize> = old
            .iter()
            .copied()
            .filter(|i| self.rss[*i].metadata.deletion_timestamp.is_none())
            .collect();
        let diff = cleanable.len() as i64 - i64::from(limit);
        if diff <= 0 {
            return Ok(());
        }
        cleanable.sort_by_key(|i| (revision(&self.rss[*i]), created(&self.rss[*i])));
        for i in cleanable.into_iter().take(diff as usize) {
            let rs = &self.rss[i];
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if status_replicas(rs) != 0
                || spec_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            let name = rs.metadata.name.clone().unwrap_or_default();
            match self.rs_api().delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    return Err(ControllerError::api(
                        format!("deleting replicaset {name}"),
                        e,
                    ))
                }
            }
        }
        Ok(())
    }

    /// kube's `calculateStatus`.
    fn calculate_status(&self, new: Option<usize>, old: &[usize]) -> DeploymentStatus {
        let all: Vec<&ReplicaSet> = old
            .iter()
            .chain(new.iter())
            .map(|i| &self.rss[*i])
            .collect();
        let available_n: i32 = all.iter().map(|r| available(r)).sum();
        let total: i32 = all.iter().map(|r| spec_replicas(r)).sum();
        let unavailable = (total - available_n).max(0);
        let prev = self.status();
        let nz = super::replicaset::nz;
        let mut status = DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: nz(all.iter().map(|r| status_replicas(r)).sum()),
            updated_replicas: nz(new.map(|n| status_replicas(&self.rss[n])).unwrap_or(0)),
            ready_replicas: nz(all.iter().map(|r| ready(r)).sum()),
            available_replicas: nz(available_n),
            unavailable_replicas: nz(unavailable),
            collision_count: prev.collision_count,
            conditions: prev.conditions.clone(),
            terminating_replicas: None,
        };
        let c = if available_n >= self.replicas() - rollout::max_unavailable(&self.d) {
            condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
            )
        } else {
            condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
            )
        };
        set_condition(&mut status, c);
        status
    }

    /// kube's `DeploymentComplete`.
    fn complete(&self, s: &DeploymentStatus) -> bool {
        let r = self.replicas();
        s.updated_replicas.unwrap_or(0) == r
            && s.replicas.unwrap_or(0) == r
            && s.available_replicas.unwrap_or(0) == r
            && s.observed_generation.unwrap_or(0) >= self.d.metadata.generation.unwrap_or(0)
    }

    /// kube's `syncDeploymentStatus`.
    async fn sync_status(
        &mut self,
        new: Option<usize>,
        old: &[usize],
    ) -> Result<(), ControllerError> {
        let status = self.calculate_status(new, old);
        if Some(&status) == self.d.status.as_ref() {
            return Ok(());
        }
        self.d.status = Some(status);
        self.update_status().await
    }

    /// kube's `syncRolloutStatus`: the Progressing condition, then the status.
    async fn sync_rollout_status(
        &mut self,
        new: Option<usize>,
        old: &[usize],
    ) -> Result<(), ControllerError> {
        let mut status = self.calculate_status(new, old);
        let deadline = self.progress_deadline();
        if deadline.is_none() {
            if let Some(c) = status.conditions.as_mut() {
                c.retain(|c| c.type_ != "Progressing");
            }
        }
        let prev = self.status();
        let cur = get_condition(&prev, "Progressing").cloned();
        let complete_before = status.replicas == status.updated_replicas
            && cur.as_ref().and_then(|c| c.reason.as_deref()) == Some("NewReplicaSetAvailable");
        let rs_name = new.map(|n| self.rss[n].metadata.name.clone().unwrap_or_default());
        let what = match &rs_name {
            Some(n) => format!("ReplicaSet {n:?}"),
            None => format!("Deployment {:?}", self.name()),
        };
        if let (Some(deadline), false) = (deadline, complete_before) {
            let old_of =
                |s: &DeploymentStatus| s.replicas.unwrap_or(0) - s.updated_replicas.unwrap_or(0);
            if self.complete(&status) {
                set_condition(
                    &mut status,
                    condition(
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        format!("{what} has successfully progressed."),
                    ),
                );
            } else if status.updated_replicas.unwrap_or(0) > prev.updated_replicas.unwrap_or(0)
                || old_of(&status) < old_of(&prev)
                || status.ready_replicas.unwrap_or(0) > prev.ready_replicas.unwrap_or(0)
                || status.available_replicas.unwrap_or(0) > prev.available_replicas.unwrap_or(0)
            {
                let mut c = condition(
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    format!("{what} is progressing."),
                );
                if let Some(cur) = &cur {
                    if cur.status == "True" {
                        c.last_transition_time = cur.last_transition_time.clone();
                    }
                }
                if let Some(cs) = status.conditions.as_mut() {
                    cs.retain(|c| c.type_ != "Progressing");
                }
                set_condition(&mut status, c);
            } else if self.timed_out(cur.as_ref(), deadline) {
                set_condition(
                    &mut status,
                    condition(
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        format!("{what} has timed out progressing."),
                    ),
                );
            }
        }
        if Some(&status) != self.d.status.as_ref() {
            self.d.status = Some(status.clone());
            self.update_status().await?;
        } else {
            // kube's requeueStuckDeployment: look again when the deadline passes.
            let c = get_condition(&status, "Progressing");
            if let (Some(deadline), Some(c)) = (deadline, c) {
                if !self.complete(&status)
                    && !matches!(
                        c.reason.as_deref(),
                        Some("NewReplicaSetAvailable" | "ProgressDeadlineExceeded")
                    )
                {
                    let since = c
                        .last_update_time
                        .as_ref()
                        .map(|t| pods::seconds_between(t, pods::now()))
                        .unwrap_or(0.0);
                    let left = (f64::from(deadline) - since).max(1.0);
                    self.requeue = Some(Duration::from_secs_f64(left));
                }
            }
        }
        Ok(())
    }

    /// kube's `DeploymentTimedOut`.
    fn timed_out(&self, cur: Option<&DeploymentCondition>, deadline: i32) -> bool {
        let Some(c) = cur else { return false };
        match c.reason.as_deref() {
            Some("NewReplicaSetAvailable") => false,
            Some("ProgressDeadlineExceeded") => true,
            _ => c
                .last_update_time
                .as_ref()
                .is_some_and(|t| pods::seconds_between(t, pods::now()) > f64::from(deadline)),
        }
    }
}
