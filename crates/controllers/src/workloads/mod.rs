//! The workload controllers (kube-controller-manager's `replicaset`, `replicationcontroller`,
//! `deployment`, `job`, `cronjob`, `statefulset` and `daemonset` controllers), on kube's runtime: one watcher per kind feeds a
//! reflector store shared by every controller ([`Informers`]), and each controller is a
//! [`applier`] over its kind's store, queued by the events of its own kind and of the kinds it
//! owns (a pod event queues the ReplicaSet or Job that controls it, or — for an orphan — every
//! one whose selector matches it, as kube's `addPod`/`updatePod` do).
//!
//! Creations and deletions go through kube's *expectations* ([`expectations`]): after a
//! controller asks for N pods, it does not act on that owner again until the N creations have
//! been observed through the pod watch (or 5 minutes passed), so a slow watch never makes it
//! create twice.

pub mod cron;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod events;
pub mod expectations;
pub mod job;
pub mod pods;
pub mod replicaset;
pub mod rollout;
pub mod statefulset;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Node, Pod, ReplicationController};
use kube::api::Api;
use kube::runtime::controller::{applier, Action, Config};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use self::expectations::Expectations;
use crate::ControllerError;

/// The shared caches every workload controller reads (never writes: writes go to the API).
#[derive(Clone)]
pub struct Informers {
    pub pods: Store<Pod>,
    pub replicasets: Store<ReplicaSet>,
    pub rcs: Store<ReplicationController>,
    pub deployments: Store<Deployment>,
    pub jobs: Store<Job>,
    pub cronjobs: Store<CronJob>,
    pub statefulsets: Store<StatefulSet>,
    pub daemonsets: Store<DaemonSet>,
    pub nodes: Store<Node>,
}

/// What each reconciler gets: the client, the caches, the expectations.
pub struct Ctx {
    pub client: Client,
    pub informers: Informers,
    pub expectations: Expectations,
    /// Per-object retry delays after failed syncs.
    pub backoff: Backoff,
}

/// client-go's `ItemExponentialFailureRateLimiter(5ms, 1000s)`, the per-item part of the
/// workqueue's default rate limiter: an object whose sync keeps failing (a quota refusing its
/// pods, a webhook down) is retried after 5 ms, 10 ms, 20 ms … up to 1000 s, not every
/// second forever; a successful sync forgets its failures (`queue.Forget`), and so does the
/// object's deletion (client-go's rate limiter is keyed by name and forgotten when the
/// deleted key's sync finds nothing; here keys are UIDs, so a deleted object's count would
/// otherwise stay for good).
#[derive(Default)]
pub struct Backoff(std::sync::Mutex<std::collections::HashMap<String, u32>>);

impl Backoff {
    const BASE: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1000);

    /// Records one more failure of `key` and returns the delay before its retry.
    pub fn failed(&self, key: &str) -> Duration {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(key.to_string()).or_insert(0);
        let delay = Self::BASE
            .checked_mul(1u32.checked_shl(*n).unwrap_or(u32::MAX))
            .map_or(Self::MAX, |d| d.min(Self::MAX));
        *n = n.saturating_add(1);
        delay
    }

    /// Forgets `key`'s failures after a successful sync.
    pub fn forget(&self, key: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// Forgets the failures of the object a `Delete` event names.
    pub fn observe<K: Resource>(&self, ev: &watcher::Event<K>) {
        if let watcher::Event::Delete(o) = ev {
            if let Some(uid) = &o.meta().uid {
                self.forget(uid);
            }
        }
    }

    /// Keeps only the failures of objects `live` still knows (a re-list reports objects
    /// deleted meanwhile by no event).
    pub fn retain(&self, live: impl Fn(&str) -> bool) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| live(k));
    }

    /// How many objects have failures recorded.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no object has failures recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Informers {
    /// Whether a workload object (one the controllers here reconcile) of UID `uid` is cached.
    fn knows(&self, uid: &str) -> bool {
        fn has<K: Resource + Clone + 'static>(s: &Store<K>, uid: &str) -> bool
        where
            K::DynamicType: Eq + std::hash::Hash + Clone,
        {
            s.state()
                .iter()
                .any(|o| o.meta().uid.as_deref() == Some(uid))
        }
        has(&self.replicasets, uid)
            || has(&self.rcs, uid)
            || has(&self.deployments, uid)
            || has(&self.jobs, uid)
            || has(&self.cronjobs, uid)
            || has(&self.statefulsets, uid)
            || has(&self.daemonsets, uid)
    }
}

/// The backoff bookkeeping of a workload informer's event: a deleted object's failures are
/// forgotten; after a re-list, those of objects no longer cached.
fn forget_gone<K: Resource>(ctx: &Ctx, ev: &watcher::Event<K>) {
    ctx.backoff.observe(ev);
    if matches!(ev, watcher::Event::InitDone) && !ctx.backoff.is_empty() {
        ctx.backoff.retain(|uid| ctx.informers.knows(uid));
    }
}

/// Runs one reconcile and forgets the object's failures when it succeeds.
async fn tracked<K, F, Fut>(obj: Arc<K>, ctx: Arc<Ctx>, f: F) -> Result<Action, ControllerError>
where
    K: Resource,
    F: FnOnce(Arc<K>, Arc<Ctx>) -> Fut,
    Fut: std::future::Future<Output = Result<Action, ControllerError>>,
{
    let key = obj.meta().uid.clone().unwrap_or_default();
    let r = f(obj, ctx.clone()).await;
    if r.is_ok() {
        ctx.backoff.forget(&key);
    }
    r
}

type Queue<K> = mpsc::UnboundedSender<ObjectRef<K>>;

/// The queues of the controllers, which informers' event handlers fill.
#[derive(Clone)]
struct Queues {
    rs: Queue<ReplicaSet>,
    rc: Queue<ReplicationController>,
    deploy: Queue<Deployment>,
    job: Queue<Job>,
    cronjob: Queue<CronJob>,
    sts: Queue<StatefulSet>,
    ds: Queue<DaemonSet>,
}

/// Runs the ReplicaSet, ReplicationController, Deployment, Job and CronJob controllers forever.
pub async fn run(client: Client) {
    let (pods, pods_w) = reflector::store::<Pod>();
    let (rss, rss_w) = reflector::store::<ReplicaSet>();
    let (rcs, rcs_w) = reflector::store::<ReplicationController>();
    let (deps, deps_w) = reflector::store::<Deployment>();
    let (jobs, jobs_w) = reflector::store::<Job>();
    let (cjs, cjs_w) = reflector::store::<CronJob>();
    let (stss, stss_w) = reflector::store::<StatefulSet>();
    let (dss, dss_w) = reflector::store::<DaemonSet>();
    let (nodes, nodes_w) = reflector::store::<Node>();
    let informers = Informers {
        pods,
        replicasets: rss,
        rcs,
        deployments: deps,
        jobs,
        cronjobs: cjs,
        statefulsets: stss,
        daemonsets: dss,
        nodes,
    };
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        informers: informers.clone(),
        expectations: Expectations::default(),
        backoff: Backoff::default(),
    });
    let (rs_tx, rs_rx) = mpsc::unbounded_channel();
    let (rc_tx, rc_rx) = mpsc::unbounded_channel();
    let (dep_tx, dep_rx) = mpsc::unbounded_channel();
    let (job_tx, job_rx) = mpsc::unbounded_channel();
    let (cj_tx, cj_rx) = mpsc::unbounded_channel();
    let (sts_tx, sts_rx) = mpsc::unbounded_channel();
    let (ds_tx, ds_rx) = mpsc::unbounded_channel();
    let queues = Queues {
        rs: rs_tx,
        rc: rc_tx,
        deploy: dep_tx,
        job: job_tx,
        cronjob: cj_tx,
        sts: sts_tx,
        ds: ds_tx,
    };

    let mut tasks = Vec::new();
    {
        let (q, c) = (queues.clone(), ctx.clone());
        tasks.push(tokio::spawn(inform(
            Api::<Pod>::all(client.clone()),
            pods_w,
            move |ev, old| on_pod(&q, &c, ev, old),
        )));
    }
    {
        let (q, c) = (queues.clone(), ctx.clone());
        tasks.push(tokio::spawn(inform(
            Api::<ReplicaSet>::all(client.clone()),
            rss_w,
            move |ev, _| on_replicaset(&q, &c, ev),
        )));
    }
    {
        let (q, c) = (queues.clone(), ctx.clone());
        tasks.push(tokio::spawn(inform(
            Api::<ReplicationController>::all(client.clone()),
            rcs_w,
            move |ev, _| {
                forget_gone(&c, ev);
                for o in touched(ev) {
                    let _ = q.rc.send(ObjectRef::from(o));
                }
            },
        )));
    }
    {
        let (q, c) = (queues.clone(), ctx.clone());
        tasks.push(tokio::spawn(inform(
            Api::<Deployment>::all(client.clone()),
            deps_w,
            move |ev, _| {
                forget_gone(&c, ev);
                for o in touched(ev) {
                    let _ = q.deploy.send(ObjectRef::from(o));
                }
            },
        )));
    }
    {
        let (q, c) = (queues.clone(), ctx.clone());
        tasks.push(tokio::spawn(inform(
            Api::<Job>::all(client.clone()),
            jobs_w,
            move |ev, _| {
                forget_gone(&c, ev);
                for o in touched(ev) {
                    let _ = q.job.send(ObjectRef::from(o));
                    if let Some(c) = pods::controller_of(&o.metadata) {
                        if c.kind == "CronJob" {
                            let ns = o.metadata.namespace.clone().unwrap_or_default();
                            let _ = q.cronjob.send(ObjectRef::new(&c.name).within(&ns));
                        }
                    }
                }
            },
        )));
    }
    {
        let (q, c) = (queues.clone(), ctx.clone());
        tasks.push(tokio::spawn(inform(
            Api::<CronJob>::all(client.clone()),
            cjs_w,
            move |ev, _| {
                forget_gone(&c, ev);
                for o in touched(ev) {
                    let _ = q.cronjob.send(ObjectRef::from(o));
                }
            },
        )));
    }

    {
        let (q, c) = (queues.clone(), ctx.clone());
        tasks.push(tokio::spawn(inform(
            Api::<StatefulSet>::all(client.clone()),
            stss_w,
            move |ev, _| {
                forget_gone(&c, ev);
                for o in touched(ev) {
                    let _ = q.sts.send(ObjectRef::from(o));
                }
            },
        )));
    }

    {
        let (q, c) = (queues.clone(), ctx.clone());
        tasks.push(tokio::spawn(inform(
            Api::<DaemonSet>::all(client.clone()),
            dss_w,
            move |ev, _| {
                forget_gone(&c, ev);
                for o in touched(ev) {
                    let _ = q.ds.send(ObjectRef::from(o));
                }
            },
        )));
    }
    {
        // A node added, relabelled or tainted changes where daemon pods belong.
        let (q, c) = (queues.clone(), ctx.clone());
        tasks.push(tokio::spawn(inform(
            Api::<Node>::all(client.clone()),
            nodes_w,
            move |ev, _| {
                if !touched(ev).is_empty() || matches!(ev, watcher::Event::InitDone) {
                    for d in c.informers.daemonsets.state() {
                        let _ = q.ds.send(ObjectRef::from(d.as_ref()));
                    }
                }
            },
        )));
    }

    // kube-controller-manager's WaitForCacheSync: nothing reconciles on a partial view. A
    // leader taking over (or a restarted server) would otherwise see a ReplicaSet before its
    // pods and create them all again.
    let i = &informers;
    let _ = tokio::join!(
        i.pods.wait_until_ready(),
        i.replicasets.wait_until_ready(),
        i.rcs.wait_until_ready(),
        i.deployments.wait_until_ready(),
        i.jobs.wait_until_ready(),
        i.cronjobs.wait_until_ready(),
        i.statefulsets.wait_until_ready(),
        i.daemonsets.wait_until_ready(),
        i.nodes.wait_until_ready(),
    );
    let cfg = Config::default().concurrency(4);
    let rs = applier(
        |o, c| Box::pin(tracked(o, c, replicaset::reconcile_rs)),
        error_policy,
        ctx.clone(),
        informers.replicasets.clone(),
        queue(rs_rx),
        cfg.clone(),
    )
    .for_each(|_| async {});
    let rc = applier(
        |o, c| Box::pin(tracked(o, c, replicaset::reconcile_rc)),
        error_policy,
        ctx.clone(),
        informers.rcs.clone(),
        queue(rc_rx),
        cfg.clone(),
    )
    .for_each(|_| async {});
    let dep = applier(
        |o, c| Box::pin(tracked(o, c, deployment::reconcile)),
        error_policy,
        ctx.clone(),
        informers.deployments.clone(),
        queue(dep_rx),
        cfg.clone(),
    )
    .for_each(|_| async {});
    let job = applier(
        |o, c| Box::pin(tracked(o, c, job::reconcile)),
        error_policy,
        ctx.clone(),
        informers.jobs.clone(),
        queue(job_rx),
        cfg.clone(),
    )
    .for_each(|_| async {});
    let cj = applier(
        |o, c| Box::pin(tracked(o, c, cronjob::reconcile)),
        error_policy,
        ctx.clone(),
        informers.cronjobs.clone(),
        queue(cj_rx),
        cfg.clone(),
    )
    .for_each(|_| async {});
    let sts = applier(
        |o, c| Box::pin(tracked(o, c, statefulset::reconcile)),
        error_policy,
        ctx.clone(),
        informers.statefulsets.clone(),
        queue(sts_rx),
        cfg.clone(),
    )
    .for_each(|_| async {});
    let ds = applier(
        |o, c| Box::pin(tracked(o, c, daemonset::reconcile)),
        error_policy,
        ctx.clone(),
        informers.daemonsets.clone(),
        queue(ds_rx),
        cfg.clone(),
    )
    .for_each(|_| async {});
    tokio::join!(rs, rc, dep, job, cj, sts, ds);
    for t in tasks {
        t.abort();
    }
}

fn error_policy<K: Resource>(obj: Arc<K>, e: &ControllerError, ctx: Arc<Ctx>) -> Action {
    tracing::debug!("workloads: {e}");
    let key = obj.meta().uid.clone().unwrap_or_default();
    Action::requeue(ctx.backoff.failed(&key))
}

fn queue<K>(
    mut rx: mpsc::UnboundedReceiver<ObjectRef<K>>,
) -> impl Stream<Item = Result<ObjectRef<K>, Infallible>> + Send + 'static
where
    K: Resource + Send + 'static,
    K::DynamicType: Send,
{
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|o| o.map(Ok)))
}

/// The objects an event names (none for the markers of a re-list).
fn touched<K>(ev: &watcher::Event<K>) -> Vec<&K> {
    match ev {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o) => {
            vec![o]
        }
        _ => vec![],
    }
}

/// One informer: a watcher of every `K` feeding `writer`; `handler` sees each event once the
/// store has it, with the object as the store had it *before* the event (so it can tell a
/// creation from an update).
async fn inform<K>(
    api: Api<K>,
    mut writer: reflector::store::Writer<K>,
    mut handler: impl FnMut(&watcher::Event<K>, Option<Arc<K>>) + Send,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let reader = writer.as_reader();
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(ev) => {
                // The object as the store had it before this event; the handler runs after the
                // store has the event, so that a reconcile it queues (on another task) finds
                // the object: queued first, a new object could be looked up before it was
                // stored, and its reconcile would be skipped for good.
                let old = match &ev {
                    watcher::Event::Apply(o)
                    | watcher::Event::InitApply(o)
                    | watcher::Event::Delete(o) => reader.get(&ObjectRef::from(o)),
                    _ => None,
                };
                writer.apply_watcher_event(&ev);
                handler(&ev, old);
            }
            Err(e) => {
                tracing::debug!("workloads: watching: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// kube's `addPod`/`updatePod`/`deletePod` of the ReplicaSet and Job controllers: observe
/// expectations and queue the controller (or, for an orphan, every matching one).
fn on_pod(q: &Queues, ctx: &Ctx, ev: &watcher::Event<Pod>, old: Option<Arc<Pod>>) {
    let (pod, deleted) = match ev {
        watcher::Event::Apply(p) | watcher::Event::InitApply(p) => (p, false),
        watcher::Event::Delete(p) => (p, true),
        _ => return,
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let owner = pods::controller_of(&pod.metadata);
    if let Some(o) = owner {
        let now_deleting = deleted || pod.metadata.deletion_timestamp.is_some();
        let was_deleting = old
            .as_ref()
            .is_some_and(|p| p.metadata.deletion_timestamp.is_some());
        if old.is_none() && !deleted {
            ctx.expectations.creation_observed(&o.uid);
        }
        if now_deleting && !was_deleting {
            ctx.expectations.deletion_observed(&o.uid, &uid);
        }
    }
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut owners = vec![owner.cloned()];
    // A pod whose controller changed queues the old one too (kube's updatePod).
    if let Some(old) = &old {
        if let Some(prev) = pods::controller_of(&old.metadata) {
            if Some(&prev.uid) != owner.map(|o| &o.uid) {
                owners.push(Some(prev.clone()));
            }
        }
    }
    for owner in owners {
        match owner {
            Some(o) => match o.kind.as_str() {
                "ReplicaSet" => {
                    let _ = q.rs.send(ObjectRef::new(&o.name).within(&ns));
                    // The Deployment waits for pods of old ReplicaSets to go (Recreate).
                    if deleted {
                        if let Some(rs) = ctx
                            .informers
                            .replicasets
                            .get(&ObjectRef::new(&o.name).within(&ns))
                        {
                            if let Some(d) = pods::controller_of(&rs.metadata) {
                                let _ = q.deploy.send(ObjectRef::new(&d.name).within(&ns));
                            }
                        }
                    }
                }
                "ReplicationController" => {
                    let _ = q.rc.send(ObjectRef::new(&o.name).within(&ns));
                }
                "Job" => {
                    let _ = q.job.send(ObjectRef::new(&o.name).within(&ns));
                }
                "StatefulSet" => {
                    let _ = q.sts.send(ObjectRef::new(&o.name).within(&ns));
                }
                "DaemonSet" => {
                    let _ = q.ds.send(ObjectRef::new(&o.name).within(&ns));
                }
                _ => {}
            },
            None if !deleted && pod.metadata.deletion_timestamp.is_none() => {
                let labels = pod.metadata.labels.clone().unwrap_or_default();
                for rs in ctx.informers.replicasets.state() {
                    if rs.metadata.namespace.as_deref() == Some(&ns)
                        && rs
                            .spec
                            .as_ref()
                            .is_some_and(|s| pods::selector_matches(&s.selector, &labels))
                    {
                        let _ = q.rs.send(ObjectRef::from(rs.as_ref()));
                    }
                }
                for rc in ctx.informers.rcs.state() {
                    if rc.metadata.namespace.as_deref() == Some(&ns)
                        && rc
                            .spec
                            .as_ref()
                            .and_then(|s| s.selector.as_ref())
                            .is_some_and(|s| pods::map_matches(s, &labels))
                    {
                        let _ = q.rc.send(ObjectRef::from(rc.as_ref()));
                    }
                }
                for job in ctx.informers.jobs.state() {
                    if job.metadata.namespace.as_deref() == Some(&ns)
                        && job
                            .spec
                            .as_ref()
                            .and_then(|s| s.selector.as_ref())
                            .is_some_and(|s| pods::selector_matches(s, &labels))
                    {
                        let _ = q.job.send(ObjectRef::from(job.as_ref()));
                    }
                }
            }
            None => {}
        }
    }
}

/// A ReplicaSet event queues itself and the Deployment controlling it (or, for an orphan,
/// every Deployment of its namespace, which adopts it if its selector matches).
fn on_replicaset(q: &Queues, ctx: &Ctx, ev: &watcher::Event<ReplicaSet>) {
    forget_gone(ctx, ev);
    for rs in touched(ev) {
        let _ = q.rs.send(ObjectRef::from(rs));
        let ns = rs.metadata.namespace.clone().unwrap_or_default();
        if let Some(d) = pods::controller_of(&rs.metadata) {
            if d.kind == "Deployment" {
                let _ = q.deploy.send(ObjectRef::new(&d.name).within(&ns));
            }
        } else if rs.metadata.deletion_timestamp.is_none() {
            let labels = rs.metadata.labels.clone().unwrap_or_default();
            for d in ctx.informers.deployments.state() {
                if d.metadata.namespace.as_deref() == Some(&ns)
                    && d.spec
                        .as_ref()
                        .is_some_and(|s| pods::selector_matches(&s.selector, &labels))
                {
                    let _ = q.deploy.send(ObjectRef::from(d.as_ref()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_syncs_back_off_exponentially_until_forgotten() {
        let b = Backoff::default();
        let delays: Vec<_> = (0..4).map(|_| b.failed("uid-1")).collect();
        assert_eq!(
            delays,
            [5, 10, 20, 40].map(Duration::from_millis).to_vec(),
            "client-go's 5 ms base, doubling"
        );
        // Another object has its own count.
        assert_eq!(b.failed("uid-2"), Duration::from_millis(5));
        for _ in 0..40 {
            b.failed("uid-1");
        }
        assert_eq!(
            b.failed("uid-1"),
            Duration::from_secs(1000),
            "capped at 1000 s"
        );
        b.forget("uid-1");
        assert_eq!(b.failed("uid-1"), Duration::from_millis(5));
    }

    fn rs(uid: &str) -> ReplicaSet {
        let mut rs = ReplicaSet::default();
        rs.metadata.name = Some(format!("rs-{uid}"));
        rs.metadata.namespace = Some("default".into());
        rs.metadata.uid = Some(uid.into());
        rs
    }

    #[test]
    fn a_deleted_objects_failures_are_forgotten() {
        let b = Backoff::default();
        b.failed("a");
        b.failed("a");
        b.failed("b");
        // An update of a failing object keeps its count; its deletion drops it.
        b.observe(&watcher::Event::Apply(rs("a")));
        assert_eq!(b.len(), 2);
        b.observe(&watcher::Event::Delete(rs("a")));
        assert_eq!(b.len(), 1);
        assert_eq!(b.failed("a"), Duration::from_millis(5), "a new count");
        // After a re-list, only the objects still there keep theirs.
        b.retain(|uid| uid == "b");
        assert_eq!(b.len(), 1);
        assert_eq!(b.failed("b"), Duration::from_millis(10));
        b.observe(&watcher::Event::Delete(rs("b")));
        assert!(b.is_empty());
    }
}
