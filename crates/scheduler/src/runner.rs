//! The scheduler's loop against the API: reflectors of nodes, pods and namespaces (and of
//! Services, ReplicaSets, StatefulSets and ReplicationControllers for the default spreading, of
//! PodDisruptionBudgets for preemption); a queue of
//! the pods waiting (empty `spec.nodeName`, `schedulerName: default-scheduler`, no scheduling
//! gates, not being deleted) taken highest priority first, then oldest; one cycle per pod;
//! the binding (`pods/NAME/binding`) and a `Scheduled` event, or a `FailedScheduling` event and
//! the `PodScheduled=False/Unschedulable` condition.
//!
//! Retries as kube's scheduling queue: a pod that failed waits for a change that could help
//! (a node added or changed, a bound pod changed or deleted, an edit of its own spec or labels)
//! and for its back-off (1 s doubling to 10 s per attempt), or at most 5 minutes. Each binding is "assumed" (counted on its node)
//! until the pod watch shows it bound, so the next cycle never overcommits a node.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, PodSpec, ReplicationController, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;
use tokio::sync::Notify;

use crate::framework::{Pdb, Snapshot};
use crate::schedule::{queue_order, schedule, Decision};
use crate::SCHEDULER_NAME;

/// kube's `podInitialBackoffSeconds`.
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// kube's `podMaxBackoffSeconds`.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// kube's `podMaxInUnschedulablePodsDuration`.
const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);
/// How long an assumed binding is counted without the watch confirming it.
const ASSUME_TTL: Duration = Duration::from_secs(30);

/// A pod's spec and labels as a failed attempt saw them.
type Seen = (Option<PodSpec>, Option<BTreeMap<String, String>>);

/// A failed pod's place in the queue.
struct Backoff {
    attempts: u32,
    failed_at: Instant,
    /// The cluster change counter when it failed.
    changes_then: u64,
    /// The pod's spec and labels when it failed (an edit of either retries it).
    seen: Option<Seen>,
}

impl Backoff {
    fn until(&self) -> Instant {
        let d = INITIAL_BACKOFF
            .saturating_mul(1 << self.attempts.saturating_sub(1).min(10))
            .min(MAX_BACKOFF);
        self.failed_at + d
    }
}

/// Whether the scheduler should place `pod`.
pub fn is_pending(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.node_name.as_deref().unwrap_or("").is_empty()
        && spec.scheduler_name.as_deref().unwrap_or(SCHEDULER_NAME) == SCHEDULER_NAME
        && spec.scheduling_gates.as_ref().is_none_or(|g| g.is_empty())
        && pod.metadata.deletion_timestamp.is_none()
        && !crate::framework::is_terminated(pod)
}

fn now_time() -> Time {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Time(Timestamp::new(d.as_secs() as i64, 0).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

/// Spawns a reflector for `api`, bumping `changes` for events `relevant` says could unblock a
/// pod, and waking `wake` on every event.
fn reflect<K>(
    api: Api<K>,
    wake: Arc<Notify>,
    changes: Arc<AtomicU64>,
    relevant: fn(&watcher::Event<K>) -> bool,
) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(ev) => {
                    if relevant(&ev) {
                        changes.fetch_add(1, Ordering::SeqCst);
                    }
                    wake.notify_one();
                }
                Err(e) => tracing::debug!("scheduler watch: {e}"),
            }
        }
    });
    (reader, task)
}

fn node_event(_: &watcher::Event<Node>) -> bool {
    true
}

fn pod_event(ev: &watcher::Event<Pod>) -> bool {
    match ev {
        watcher::Event::Delete(_) | watcher::Event::InitDone => true,
        watcher::Event::Apply(p) | watcher::Event::InitApply(p) => !is_pending(p),
        watcher::Event::Init => false,
    }
}

fn namespace_event(_: &watcher::Event<Namespace>) -> bool {
    true
}

/// Aborts the reflector tasks when the runner is dropped (cancelled on lost leadership).
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// The scheduling loop; runs until cancelled. `identity` names this instance in events.
pub async fn run(client: Client, identity: String) {
    let wake = Arc::new(Notify::new());
    let changes = Arc::new(AtomicU64::new(0));
    let (nodes, t1) = reflect(
        Api::<Node>::all(client.clone()),
        wake.clone(),
        changes.clone(),
        node_event,
    );
    let (pods, t2) = reflect(
        Api::<Pod>::all(client.clone()),
        wake.clone(),
        changes.clone(),
        pod_event,
    );
    let (namespaces, t3) = reflect(
        Api::<Namespace>::all(client.clone()),
        wake.clone(),
        changes.clone(),
        namespace_event,
    );
    // For the default spreading: what selects a pod.
    let (services, t4) = reflect(
        Api::<Service>::all(client.clone()),
        wake.clone(),
        changes.clone(),
        |_| false,
    );
    let (replicasets, t5) = reflect(
        Api::<ReplicaSet>::all(client.clone()),
        wake.clone(),
        changes.clone(),
        |_| false,
    );
    let (statefulsets, t6) = reflect(
        Api::<StatefulSet>::all(client.clone()),
        wake.clone(),
        changes.clone(),
        |_| false,
    );
    let (rcs, t7) = reflect(
        Api::<ReplicationController>::all(client.clone()),
        wake.clone(),
        changes.clone(),
        |_| false,
    );
    // For preemption.
    let (pdbs, t8) = reflect(
        Api::<PodDisruptionBudget>::all(client.clone()),
        wake.clone(),
        changes.clone(),
        |_| false,
    );
    // For VolumeBinding: a claim created or bound may make a waiting pod schedulable.
    let (_claims, t9) = reflect(
        Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::all(client.clone()),
        wake.clone(),
        changes.clone(),
        |_| true,
    );
    let _tasks = Tasks(vec![t1, t2, t3, t4, t5, t6, t7, t8, t9]);
    for ready in [
        nodes.wait_until_ready().await,
        pods.wait_until_ready().await,
        namespaces.wait_until_ready().await,
    ] {
        if ready.is_err() {
            return;
        }
    }
    tracing::info!("scheduler started");
    let mut s = Scheduler {
        client,
        identity,
        backoff: HashMap::new(),
        assumed: HashMap::new(),
        rng: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1,
    };
    loop {
        let all_pods: Vec<Pod> = pods.state().iter().map(|p| (**p).clone()).collect();
        let change_count = changes.load(Ordering::SeqCst);
        let now = Instant::now();
        // Forget what is no longer pending; drop assumptions the watch has confirmed.
        let by_uid: HashMap<String, &Pod> = all_pods.iter().map(|p| (uid(p), p)).collect();
        s.assumed.retain(|u, (_, at)| {
            at.elapsed() < ASSUME_TTL && by_uid.get(u).is_some_and(|p| is_pending(p))
        });
        s.backoff
            .retain(|u, _| by_uid.get(u).is_some_and(|p| is_pending(p)));
        let mut ready: Vec<&Pod> = Vec::new();
        let mut next_wake: Option<Instant> = None;
        for p in all_pods.iter().filter(|p| is_pending(p)) {
            let u = uid(p);
            if s.assumed.contains_key(&u) {
                continue;
            }
            match s.backoff.get(&u) {
                None => ready.push(p),
                Some(b) => {
                    let flush = b.failed_at + MAX_UNSCHEDULABLE;
                    let edited = b.seen.as_ref().is_some_and(|(spec, labels)| {
                        *spec != p.spec || *labels != p.metadata.labels
                    });
                    let due = if change_count > b.changes_then || edited {
                        b.until().min(flush)
                    } else {
                        flush
                    };
                    if due <= now {
                        ready.push(p);
                    } else {
                        next_wake = Some(next_wake.map_or(due, |w: Instant| w.min(due)));
                    }
                }
            }
        }
        let Some(pod) = ready.into_iter().min_by(|a, b| queue_order(a, b)).cloned() else {
            let sleep = next_wake
                .map(|w| w.saturating_duration_since(now))
                .unwrap_or(MAX_UNSCHEDULABLE);
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
            continue;
        };
        let mut bound = with_nominated(all_pods, &pod);
        for (p, _) in s.assumed.values() {
            bound.retain(|b| uid(b) != uid(p));
            bound.push(p.clone());
        }
        let mut snap = Snapshot::new(
            nodes.state().iter().map(|n| (**n).clone()).collect(),
            bound,
            namespaces.state().iter().map(|n| (**n).clone()).collect(),
        );
        snap.services = services
            .state()
            .iter()
            .filter_map(|s| {
                let sel = s.spec.as_ref()?.selector.clone()?;
                Some((s.metadata.namespace.clone().unwrap_or_default(), sel))
            })
            .collect();
        let key = |kind: &str, m: &ObjectMeta| {
            (
                kind.to_string(),
                m.namespace.clone().unwrap_or_default(),
                m.name.clone().unwrap_or_default(),
            )
        };
        snap.pdbs = pdbs
            .state()
            .iter()
            .map(|p| Pdb {
                namespace: p.metadata.namespace.clone().unwrap_or_default(),
                selector: p.spec.as_ref().and_then(|s| s.selector.clone()),
                disruptions_allowed: p.status.as_ref().map_or(0, |s| s.disruptions_allowed),
                disrupted: p
                    .status
                    .as_ref()
                    .and_then(|s| s.disrupted_pods.as_ref())
                    .map(|d| d.keys().cloned().collect())
                    .unwrap_or_default(),
            })
            .collect();
        for r in replicasets.state() {
            if let Some(spec) = &r.spec {
                snap.controllers
                    .insert(key("ReplicaSet", &r.metadata), spec.selector.clone());
            }
        }
        for r in statefulsets.state() {
            if let Some(spec) = &r.spec {
                snap.controllers
                    .insert(key("StatefulSet", &r.metadata), spec.selector.clone());
            }
        }
        for r in rcs.state() {
            if let Some(sel) = r.spec.as_ref().and_then(|s| s.selector.clone()) {
                let selector = LabelSelector {
                    match_labels: Some(sel),
                    ..Default::default()
                };
                snap.controllers
                    .insert(key("ReplicationController", &r.metadata), selector);
            }
        }
        s.cycle(&pod, &snap, change_count).await;
    }
}

/// `pods` with the pending pods nominated to a node (after a preemption) placed on it when
/// their priority is at least `pod`'s, so the room preemption made is not taken by a less
/// important pod (kube's `RunFilterPluginsWithNominatedPods`, its first pass).
pub fn with_nominated(mut pods: Vec<Pod>, pod: &Pod) -> Vec<Pod> {
    let prio = crate::framework::priority(pod);
    let me = uid(pod);
    let nominated: Vec<Pod> = pods
        .iter()
        .filter(|p| is_pending(p) && uid(p) != me && crate::framework::priority(p) >= prio)
        .filter_map(|p| {
            let node = p
                .status
                .as_ref()
                .and_then(|s| s.nominated_node_name.clone())
                .filter(|n| !n.is_empty())?;
            let mut q = p.clone();
            q.spec.as_mut()?.node_name = Some(node);
            Some(q)
        })
        .collect();
    pods.extend(nominated);
    pods
}

struct Scheduler {
    client: Client,
    identity: String,
    backoff: HashMap<String, Backoff>,
    /// Pods bound by this scheduler, not yet seen bound: uid → (pod with nodeName, when).
    assumed: HashMap<String, (Pod, Instant)>,
    rng: u64,
}

impl Scheduler {
    fn next_random(&mut self) -> u64 {
        // xorshift64
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// VolumeBinding's PreFilter: the pod's claims must exist and an `Immediate` one must be
    /// bound; returns the claims to annotate with the chosen node (unbound, of a
    /// `WaitForFirstConsumer` class) and the bound volumes' node affinities, or kube's reason.
    async fn volumes(
        &self,
        pod: &Pod,
    ) -> Result<(Vec<String>, Vec<k8s_openapi::api::core::v1::NodeSelector>), String> {
        use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
        use k8s_openapi::api::storage::v1::StorageClass;
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        let (mut delayed, mut affinity) = (Vec::new(), Vec::new());
        for name in crate::plugins::volume::claims(pod) {
            let pvc = match claims.get_opt(&name).await {
                Ok(Some(p)) => p,
                Ok(None) => return Err(format!("persistentvolumeclaim \"{name}\" not found")),
                Err(e) => return Err(format!("persistentvolumeclaim \"{name}\": {e}")),
            };
            if pvc.metadata.deletion_timestamp.is_some() {
                return Err(format!("persistentvolumeclaim \"{name}\" is being deleted"));
            }
            let spec = pvc.spec.clone().unwrap_or_default();
            if let Some(pv) = spec.volume_name.filter(|v| !v.is_empty()) {
                let pvs: Api<PersistentVolume> = Api::all(self.client.clone());
                if let Ok(Some(pv)) = pvs.get_opt(&pv).await {
                    if let Some(req) = pv.spec.and_then(|s| s.node_affinity?.required) {
                        affinity.push(req);
                    }
                }
                continue;
            }
            let classes: Api<StorageClass> = Api::all(self.client.clone());
            let class = match spec.storage_class_name.as_deref() {
                Some("") => None,
                Some(c) => classes.get_opt(c).await.ok().flatten(),
                None => classes.list(&Default::default()).await.ok().and_then(|l| {
                    l.items.into_iter().find(|c| {
                        c.metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get("storageclass.kubernetes.io/is-default-class"))
                            .map(String::as_str)
                            == Some("true")
                    })
                }),
            };
            let wait = class
                .as_ref()
                .and_then(|c| c.volume_binding_mode.as_deref())
                == Some("WaitForFirstConsumer");
            if !wait {
                return Err(crate::plugins::volume::ERR_UNBOUND_IMMEDIATE.into());
            }
            delayed.push(name);
        }
        Ok((delayed, affinity))
    }

    async fn cycle(&mut self, pod: &Pod, snap: &Snapshot, change_count: u64) {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut with_volumes;
        let mut snap = snap;
        let mut delayed = Vec::new();
        if !crate::plugins::volume::claims(pod).is_empty() {
            match self.volumes(pod).await {
                Ok((d, affinity)) => {
                    delayed = d;
                    with_volumes = snap.clone();
                    with_volumes.volume_affinity = affinity;
                    snap = &with_volumes;
                }
                Err(reason) => {
                    let msg = crate::plugins::volume::prefilter_message(snap.nodes.len(), &reason);
                    self.failed(pod, &msg, None, change_count).await;
                    return;
                }
            }
        }
        let mut r = self.next_random();
        let decision = schedule(pod, snap, &mut |n| {
            r = r.wrapping_mul(6364136223846793005).wrapping_add(1);
            ((r >> 33) % n as u64) as usize
        });
        match decision {
            Decision::Bind(node) => {
                // kube's PreBind: the claims waiting for a consumer learn their node.
                let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
                    Api::namespaced(self.client.clone(), &ns);
                let selected = crate::plugins::volume::SELECTED_NODE;
                for c in &delayed {
                    let patch = json!({"metadata": {"annotations": {selected: node}}});
                    if let Err(e) = claims
                        .patch(c, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        let msg = format!("running PreBind plugin \"VolumeBinding\": {e}");
                        self.failed_with(pod, "SchedulerError", &msg, None, change_count)
                            .await;
                        return;
                    }
                }
                self.bind(pod, &ns, &name, &node, change_count).await
            }
            Decision::Unschedulable(err) => {
                self.failed(pod, &err.to_string(), None, change_count).await
            }
            Decision::Error(msg) => {
                self.failed_with(pod, "SchedulerError", &msg, None, change_count)
                    .await
            }
            Decision::Preempt {
                node,
                victims,
                error,
            } => {
                self.preempt(pod, &node, &victims).await;
                self.failed(pod, &error.to_string(), Some(&node), change_count)
                    .await
            }
        }
    }

    async fn bind(&mut self, pod: &Pod, ns: &str, name: &str, node: &str, change_count: u64) {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": ns, "uid": uid(pod)},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        let mut assumed = pod.clone();
        if let Some(s) = assumed.spec.as_mut() {
            s.node_name = Some(node.to_string());
        }
        self.assumed.insert(uid(pod), (assumed, Instant::now()));
        match pods
            .create_subresource::<_, serde_json::Value>(
                "binding",
                name,
                &PostParams::default(),
                &binding,
            )
            .await
        {
            Ok(_) => {
                self.backoff.remove(&uid(pod));
                tracing::debug!(pod = %format!("{ns}/{name}"), node, "bound");
                self.event(
                    pod,
                    "Normal",
                    "Scheduled",
                    "Binding",
                    &format!("Successfully assigned {ns}/{name} to {node}"),
                )
                .await;
            }
            Err(e) => {
                self.assumed.remove(&uid(pod));
                tracing::warn!(pod = %format!("{ns}/{name}"), node, "binding failed: {e}");
                let msg = format!("Binding rejected: {e}");
                self.failed_with(pod, "SchedulerError", &msg, None, change_count)
                    .await;
            }
        }
    }

    /// Records a failed attempt: back-off, the event (aggregated while its message is the
    /// same), the condition (and `nominatedNodeName` after a preemption).
    async fn failed(&mut self, pod: &Pod, msg: &str, nominated: Option<&str>, change_count: u64) {
        self.failed_with(pod, "Unschedulable", msg, nominated, change_count)
            .await
    }

    /// [`Self::failed`] with the condition's reason (`Unschedulable`, `SchedulerError`).
    async fn failed_with(
        &mut self,
        pod: &Pod,
        reason: &str,
        msg: &str,
        nominated: Option<&str>,
        change_count: u64,
    ) {
        let u = uid(pod);
        let b = self.backoff.entry(u.clone()).or_insert(Backoff {
            attempts: 0,
            failed_at: Instant::now(),
            changes_then: change_count,
            seen: None,
        });
        b.attempts += 1;
        b.failed_at = Instant::now();
        b.changes_then = change_count;
        b.seen = Some((pod.spec.clone(), pod.metadata.labels.clone()));
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        tracing::debug!(pod = %format!("{ns}/{name}"), "unschedulable: {msg}");
        // Repeats of one message raise one Event's count (barge_events correlates them).
        self.event(pod, "Warning", "FailedScheduling", "Scheduling", msg)
            .await;
        // The condition, unless it already says this.
        let current = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        let same = current.is_some_and(|c| {
            c.status == "False"
                && c.reason.as_deref() == Some(reason)
                && c.message.as_deref() == Some(msg)
        });
        let nominated_same = nominated.is_none()
            || pod
                .status
                .as_ref()
                .and_then(|s| s.nominated_node_name.as_deref())
                == nominated;
        if same && nominated_same {
            return;
        }
        let transition = match current {
            Some(c) if c.status == "False" => c.last_transition_time.clone(),
            _ => None,
        }
        .unwrap_or_else(now_time);
        let mut status = json!({"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": reason,
            "message": msg, "lastProbeTime": null, "lastTransitionTime": transition,
        }]});
        if let Some(n) = nominated {
            status["nominatedNodeName"] = json!(n);
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        if let Err(e) = pods
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Strategic(json!({"status": status})),
            )
            .await
        {
            tracing::debug!(pod = %format!("{ns}/{name}"), "updating the condition: {e}");
        }
    }

    /// Evicts `victims` for `pod` (a `Preempted` event on each, then a delete).
    async fn preempt(&mut self, pod: &Pod, node: &str, victims: &[(String, String, String)]) {
        for (ns, name, victim_uid) in victims {
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
            let victim = Pod {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    uid: Some(victim_uid.clone()),
                    ..Default::default()
                },
                ..Default::default()
            };
            self.event(
                &victim,
                "Normal",
                "Preempted",
                "Preempting",
                &format!("Preempted by pod {} on node {node}", uid(pod)),
            )
            .await;
            let dp = DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid: Some(victim_uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            if let Err(e) = pods.delete(name, &dp).await {
                tracing::debug!(pod = %format!("{ns}/{name}"), "preempting: {e}");
            }
        }
    }

    /// Records an Event about `pod` (through [`barge_events`], which correlates repeats).
    async fn event(&self, pod: &Pod, kind: &str, reason: &str, action: &str, message: &str) {
        let source = barge_events::Source {
            component: SCHEDULER_NAME.into(),
            host: None,
            instance: Some(self.identity.clone()),
        };
        let record = barge_events::Record {
            involved: barge_events::reference(pod),
            kind: if kind == "Warning" {
                barge_events::Kind::Warning
            } else {
                barge_events::Kind::Normal
            },
            reason,
            action: Some(action),
            message: message.to_string(),
        };
        barge_events::record(&self.client, &source, record).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_ten_seconds() {
        let at = Instant::now();
        let b = |attempts| Backoff {
            attempts,
            failed_at: at,
            changes_then: 0,
            seen: None,
        };
        assert_eq!(b(1).until() - at, Duration::from_secs(1));
        assert_eq!(b(2).until() - at, Duration::from_secs(2));
        assert_eq!(b(4).until() - at, Duration::from_secs(8));
        assert_eq!(b(5).until() - at, Duration::from_secs(10));
        assert_eq!(b(40).until() - at, Duration::from_secs(10));
    }

    #[test]
    fn nominated_pods_hold_their_room_against_less_important_ones() {
        let p = |name: &str, prio: i32, nominated: Option<&str>| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": name, "uid": name},
                "spec": {"containers": [], "priority": prio},
                "status": {"nominatedNodeName": nominated}
            }))
            .unwrap()
        };
        let pods = vec![
            p("vip", 100, Some("n1")),
            p("low", 1, None),
            p("peer", 100, None),
        ];
        let on_node = |v: Vec<Pod>| -> Vec<String> {
            v.iter()
                .filter(|p| p.spec.as_ref().unwrap().node_name.is_some())
                .map(|p| p.metadata.name.clone().unwrap())
                .collect()
        };
        assert_eq!(on_node(with_nominated(pods.clone(), &pods[1])), ["vip"]);
        assert_eq!(on_node(with_nominated(pods.clone(), &pods[2])), ["vip"]);
        assert!(on_node(with_nominated(pods.clone(), &pods[0])).is_empty());
        let higher = p("higher", 1000, None);
        assert!(on_node(with_nominated(pods, &higher)).is_empty());
    }

    #[test]
    fn pending_pods() {
        let p = |v: serde_json::Value| -> Pod { serde_json::from_value(v).unwrap() };
        assert!(is_pending(&p(json!({"spec": {"containers": []}}))));
        assert!(is_pending(&p(
            json!({"spec": {"containers": [], "schedulerName": "default-scheduler"}})
        )));
        assert!(!is_pending(&p(
            json!({"spec": {"containers": [], "schedulerName": "other"}})
        )));
        assert!(!is_pending(&p(
            json!({"spec": {"containers": [], "nodeName": "n"}})
        )));
        assert!(!is_pending(&p(
            json!({"spec": {"containers": [], "schedulingGates": [{"name": "g"}]}})
        )));
    }
}
