//! The pods bound to this node: one worker per pod (a tokio task, woken by the pod's watch
//! events and every second), which makes the pod's sandbox, starts its containers, restarts
//! them by `restartPolicy` with kubelet's back-off, writes the pod's status and carries out
//! its graceful deletion.
//!
//! The engine is the record of what runs: a pod's containers are engine containers named as
//! dockershim named them (`k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`) and labelled
//! ([`LABEL_UID`] …), in network, IPC and UTS modes `sandbox:<key>` where `key` =
//! [`sandbox_key`] of the pod's uid (the sandbox holds the pod's network, IPC and UTS
//! namespaces and `/dev/shm`; `shareProcessNamespace` adds a PID namespace holder,
//! [`crate::holder`]); after an agent restart the workers find them again and adopt them as they are.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use barge_container::{Container, CreateOptions, HostOptions, Status};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::Notify;

use crate::status::{ContainerView, State, Terminated};
use crate::{AgentError, Config, Engine, BACKOFF_RESET, MAX_BACKOFF};

/// Label: the pod's namespace.
pub const LABEL_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// Label: the pod's name.
pub const LABEL_NAME: &str = "io.kubernetes.pod.name";
/// Label: the pod's uid (what the agent finds its containers by).
pub const LABEL_UID: &str = "io.kubernetes.pod.uid";
/// Label: the container's name in the pod spec.
pub const LABEL_CONTAINER: &str = "io.kubernetes.container.name";
/// Label: the container's restart count (its attempt number: 0 for the first container).
pub const LABEL_RESTARTS: &str = "io.kubernetes.container.restartCount";
/// The engine network pods' sandboxes are on: a bridge over this node's podCIDR.
pub const POD_NETWORK: &str = "barge-pods";

/// The engine sandbox key of the pod with `uid` (`pod-<uid without dashes>`).
pub fn sandbox_key(uid: &str) -> String {
    format!(
        "{}{}",
        barge_network::POD_SANDBOX_PREFIX,
        uid.replace('-', "")
    )
}

/// The pod's sandbox as its containers join it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SandboxRef<'a> {
    /// The engine sandbox key ([`sandbox_key`]): network mode `sandbox:<key>`.
    pub key: &'a str,
    /// Whether the sandbox holds the pod's IPC and UTS namespaces and `/dev/shm` (IPC and UTS
    /// modes `sandbox:<key>`); sandboxes made before barge shared them do not.
    pub shares_ipc_uts: bool,
}

/// The pod's host name (its UTS namespace's): `spec.hostname`, else the pod's name cut to 63
/// characters (kubelet's `GeneratePodHostNameAndDomain`).
fn pod_hostname(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            name.chars().take(63).collect()
        })
}

/// What the workers share.
struct Ctx {
    client: Client,
    engine: Engine,
    cfg: Arc<Config>,
    /// Pods as JSON: one pod the typed model cannot read (the API server let it in) must not
    /// stop the watch of every other pod; it is skipped by its worker.
    pods: Store<DynamicObject>,
    /// The ConfigMaps and Secrets behind the pods' volumes (the node's watch cache).
    sources: crate::volumes::Sources,
    host_ip: String,
}

impl Ctx {
    /// Records kubelet's event `reason` about container `container` (or the pod) of `pod`.
    async fn event(
        &self,
        pod: &Pod,
        container: Option<&str>,
        warning: bool,
        reason: &str,
        message: &str,
    ) {
        crate::events::record(
            &self.client,
            &self.cfg.node_name,
            pod,
            container,
            warning,
            reason,
            message,
        )
        .await;
    }
}

/// The typed pod of a watched object (`None`, logged, if it does not fit kube's model).
fn typed(o: &DynamicObject) -> Option<Pod> {
    let v = serde_json::to_value(o).ok()?;
    match serde_json::from_value::<Pod>(v) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(
                "pod {}/{}: not a valid Pod, left alone: {e}",
                o.metadata.namespace.as_deref().unwrap_or_default(),
                o.metadata.name.as_deref().unwrap_or_default()
            );
            None
        }
    }
}

/// Runs the pod workers until aborted.
pub async fn run(client: Client, engine: Engine, cfg: Arc<Config>) {
    let ar = ApiResource::erase::<Pod>(&());
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let wc = watcher::Config::default().fields(&format!("spec.nodeName={}", cfg.node_name));
    let writer = reflector::store::Writer::new(ar.clone());
    let reader = writer.as_reader();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ObjectRef<DynamicObject>>();
    tokio::spawn(async move {
        let stream = reflector::reflector(writer, watcher(api, wc))
            .default_backoff()
            .touched_objects();
        futures_util::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(pod) => {
                    let _ = tx.send(ObjectRef::from_obj_with(&pod, ar.clone()));
                }
                Err(e) => tracing::debug!("pod watch: {e}"),
            }
        }
    });
    if reader.wait_until_ready().await.is_err() {
        return;
    }
    let sources = crate::volumes::Sources::start(client.clone()).await;
    let ctx = Arc::new(Ctx {
        host_ip: crate::node::node_ip(&cfg).to_string(),
        sources,
        client,
        engine,
        cfg,
        pods: reader,
    });
    // uid → the worker's wake-up and its task.
    let mut workers: HashMap<String, (Arc<Notify>, tokio::task::JoinHandle<()>)> = HashMap::new();
    // Pods whose worker finished (deleted): not restarted while the watch still shows them.
    let mut finished: HashSet<String> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let wake: Vec<ObjectRef<DynamicObject>> = tokio::select! {
            Some(r) = rx.recv() => vec![r],
            _ = tick.tick() => ctx
                .pods
                .state()
                .iter()
                .map(|p| ObjectRef::from_obj_with(&**p, ApiResource::erase::<Pod>(&())))
                .collect(),
        };
        for r in wake {
            let Some(pod) = ctx.pods.get(&r) else {
                continue;
            };
            let Some(uid) = pod.metadata.uid.clone() else {
                continue;
            };
            if finished.contains(&uid) {
                continue;
            }
            let entry = workers.entry(uid.clone()).or_insert_with(|| {
                let notify = Arc::new(Notify::new());
                let task =
                    tokio::spawn(worker(ctx.clone(), r.clone(), uid.clone(), notify.clone()));
                (notify, task)
            });
            entry.0.notify_one();
        }
        // Reap finished workers.
        let done: Vec<String> = workers
            .iter()
            .filter(|(_, (_, t))| t.is_finished())
            .map(|(u, _)| u.clone())
            .collect();
        for u in done {
            workers.remove(&u);
            ctx.sources.forget_pod(&ctx.engine.data_root, &u);
            finished.insert(u);
        }
        let live: HashSet<String> = ctx
            .pods
            .state()
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        finished.retain(|u| live.contains(u));
        // Orphans: containers and sandboxes of pods this node no longer has.
        let known: HashSet<String> = live
            .union(&workers.keys().cloned().collect())
            .cloned()
            .collect();
        let engine = ctx.engine.clone();
        let _ = blocking(move || {
            remove_orphans(&engine, &known);
            Ok(())
        })
        .await;
    }
}

/// Runs a blocking engine call on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AgentError> + Send + 'static,
) -> Result<T, AgentError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AgentError::engine("engine call", e))?
}

/// Creates the pod network (a bridge over `cidr`) unless it exists. Its masquerade leaves
/// traffic to `cluster` (the cluster CIDR) alone, so pods on other nodes see pod IPs
/// ([`barge_network::NO_MASQUERADE_OPTION`]; set on a network made before it existed too).
fn ensure_network(
    engine: &Engine,
    cidr: &str,
    cluster: &str,
    mtu: Option<u32>,
) -> Result<(), AgentError> {
    let opt = barge_network::NO_MASQUERADE_OPTION;
    let mtu = mtu.map(|m| m.to_string());
    if let Ok(n) = engine.networks.get(POD_NETWORK) {
        let wanted = [
            (opt, Some(cluster)),
            (barge_network::MTU_OPTION, mtu.as_deref()),
        ];
        for (key, value) in wanted {
            if n.options.get(key).map(String::as_str) != value {
                engine
                    .networks
                    .set_option(POD_NETWORK, key, value)
                    .map_err(|e| AgentError::engine("updating the pod network", e))?;
            }
        }
        return Ok(());
    }
    let mut labels = BTreeMap::new();
    labels.insert("io.barge.pod-network".to_string(), "true".to_string());
    let mut options = BTreeMap::new();
    options.insert(opt.to_string(), cluster.to_string());
    if let Some(m) = mtu {
        // flannel's FLANNEL_MTU: pods' interfaces fit inside the VXLAN encapsulation.
        options.insert(barge_network::MTU_OPTION.to_string(), m);
    }
    engine
        .networks
        .create(barge_network::CreateRequest {
            name: POD_NETWORK.into(),
            driver: Some("bridge".into()),
            subnet: Some(cidr.into()),
            labels,
            options,
            ..Default::default()
        })
        .map_err(|e| AgentError::engine(format!("creating the pod network {cidr}"), e))?;
    Ok(())
}

/// The engine containers of pod `uid`, oldest attempt first.
pub(crate) fn pod_containers(engine: &Engine, uid: &str) -> Vec<Container> {
    let mut cs: Vec<Container> = engine
        .containers
        .list()
        .into_iter()
        .filter(|c| c.options.labels.get(LABEL_UID).map(String::as_str) == Some(uid))
        .collect();
    cs.sort_by_key(attempt);
    cs
}

/// The attempt number of a pod's engine container (its restart count label).
pub(crate) fn attempt(c: &Container) -> i64 {
    c.options
        .labels
        .get(LABEL_RESTARTS)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Removes containers and sandboxes of pods not in `known` (uids).
fn remove_orphans(engine: &Engine, known: &HashSet<String>) {
    for c in engine.containers.list() {
        let Some(uid) = c.options.labels.get(LABEL_UID) else {
            continue;
        };
        if !known.contains(uid) {
            tracing::info!(container = %c.name, "removing the container of a pod gone from this node");
            if let Err(e) = engine.containers.remove(&c.id, true) {
                tracing::warn!("removing {}: {e}", c.name);
            }
        }
    }
    let keys: HashSet<String> = known.iter().map(|u| sandbox_key(u)).collect();
    for key in engine.networks.pod_sandboxes() {
        if !keys.contains(&key) {
            tracing::info!(sandbox = %key, "removing the sandbox of a pod gone from this node");
            engine.networks.teardown(&key);
        }
    }
}

/// Kubelet's per-container restart back-off (`flowcontrol.Backoff`).
#[derive(Debug, Clone, Copy)]
struct Backoff {
    current: Duration,
    updated: Instant,
}

/// A worker's memory of its pod (none of it is needed to adopt running containers).
#[derive(Default)]
struct PodState {
    backoff: HashMap<String, Backoff>,
    /// Why a container could not be started (`ErrImageNeverPull`, `CreateContainerConfigError`
    /// …) with kube's message; cleared by a start.
    waiting: HashMap<String, (String, String)>,
    /// The last status written.
    written: Option<serde_json::Value>,
    /// Ended containers whose back-off was reported (one `BackOff` event each).
    backoff_reported: HashSet<String>,
    /// kubelet's image pull back-off, by image.
    pull_backoff: BTreeMap<String, crate::images::PullBackoff>,
    /// Probe states by (container name, `liveness`|`readiness`).
    probes: HashMap<(String, &'static str), crate::probes::ProbeState>,
    /// When the pod's projected ServiceAccount tokens were last checked for refresh.
    tokens_checked: Option<Instant>,
}

impl PodState {
    /// Whether the running engine container `id` (spec `c`) is ready: its readiness probe's
    /// result, or running at all when it has none.
    fn ready(&self, c: &k8s_openapi::api::core::v1::Container, id: &str) -> bool {
        // Not started (its startup probe has not succeeded yet): not ready.
        if c.startup_probe.is_some()
            && !self
                .probes
                .get(&(c.name.clone(), "startup"))
                .is_some_and(|s| s.container_id == id && s.result)
        {
            return false;
        }
        if c.readiness_probe.is_none() {
            return true;
        }
        self.probes
            .get(&(c.name.clone(), "readiness"))
            .is_some_and(|s| s.container_id == id && s.result)
    }
}

/// Runs the container's liveness and readiness probes when due; a liveness probe that fails
/// its threshold stops the container (its grace period), and its restart policy takes over.
async fn run_probes(
    ctx: &Ctx,
    st: &mut PodState,
    pod: &Pod,
    c: &k8s_openapi::api::core::v1::Container,
    l: &Container,
    pod_ip: &str,
) {
    let running_for = crate::time::parse(&l.state.started_at)
        .map(|t| time::OffsetDateTime::now_utc() - t)
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or_default();
    // The startup probe gates the others until it succeeds; failing its threshold restarts
    // the container.
    if let Some(sp) = &c.startup_probe {
        let s = st
            .probes
            .entry((c.name.clone(), "startup"))
            .or_insert_with(|| crate::probes::ProbeState::new(&l.id, false));
        if s.container_id != l.id {
            *s = crate::probes::ProbeState::new(&l.id, false);
        }
        if !s.result {
            if s.due(sp, running_for) {
                let r = crate::probes::run(&ctx.engine, c, &l.id, pod_ip, sp).await;
                if let Err(m) = &r {
                    let m = format!("Startup probe failed: {m}");
                    ctx.event(pod, Some(&c.name), true, "Unhealthy", &m).await;
                }
                s.record(sp, r.is_ok());
                if !s.result && s.failed(sp) {
                    let m = format!(
                        "Container {} failed startup probe, will be restarted",
                        c.name
                    );
                    ctx.event(pod, Some(&c.name), false, "Killing", &m).await;
                    let grace = grace_period(pod);
                    let (containers, id) = (ctx.engine.containers.clone(), l.id.clone());
                    let _ = blocking(move || {
                        containers
                            .stop(&id, Some(grace), None)
                            .map_err(|e| AgentError::engine("stop after startup probe", e))
                    })
                    .await;
                }
            }
            return;
        }
    }
    for (kind, probe, initial) in [
        ("liveness", &c.liveness_probe, true),
        ("readiness", &c.readiness_probe, false),
    ] {
        let Some(p) = probe else { continue };
        let s = st
            .probes
            .entry((c.name.clone(), kind))
            .or_insert_with(|| crate::probes::ProbeState::new(&l.id, initial));
        if s.container_id != l.id {
            *s = crate::probes::ProbeState::new(&l.id, initial);
        }
        if !s.due(p, running_for) {
            continue;
        }
        let r = crate::probes::run(&ctx.engine, c, &l.id, pod_ip, p).await;
        if let Err(m) = &r {
            tracing::info!(container = %c.name, "{kind} probe failed: {m}");
            let what = if kind == "liveness" {
                "Liveness"
            } else {
                "Readiness"
            };
            ctx.event(
                pod,
                Some(&c.name),
                true,
                "Unhealthy",
                &format!("{what} probe failed: {m}"),
            )
            .await;
        }
        if s.record(p, r.is_ok()) && !s.result && kind == "liveness" {
            tracing::info!(container = %c.name, "failed liveness probe, will be restarted");
            let m = format!(
                "Container {} failed liveness probe, will be restarted",
                c.name
            );
            ctx.event(pod, Some(&c.name), false, "Killing", &m).await;
            let grace = pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30);
            let (containers, id) = (ctx.engine.containers.clone(), l.id.clone());
            let _ = blocking(move || {
                containers
                    .stop(&id, Some(grace), None)
                    .map_err(|e| AgentError::engine("stop after liveness", e))
            })
            .await;
        }
    }
}

/// How often a pod's projected tokens are checked for refresh.
const TOKEN_CHECK_PERIOD: Duration = Duration::from_secs(10);

async fn worker(ctx: Arc<Ctx>, oref: ObjectRef<DynamicObject>, uid: String, wake: Arc<Notify>) {
    let mut st = PodState::default();
    loop {
        let pod = ctx
            .pods
            .get(&oref)
            .filter(|p| p.metadata.uid.as_deref() == Some(uid.as_str()));
        let Some(pod) = pod else {
            // Gone from the API (deleted with no grace, or moved): nothing of it may run.
            let (engine, u) = (ctx.engine.clone(), uid.clone());
            let _ = blocking(move || {
                kill_pod(&engine, &u, 0);
                Ok(())
            })
            .await;
            return;
        };
        let Some(pod) = typed(&pod) else {
            wake.notified().await;
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            match terminate(&ctx, &pod).await {
                Ok(()) => return,
                Err(e) => tracing::warn!("pod {}: {e}", oref),
            }
        } else {
            if let Err(e) = sync(&ctx, &pod, &mut st).await {
                tracing::warn!("pod {}: {e}", oref);
            }
            // kubelet's token manager: tokens renewed at 80 % of their life (or 24 h).
            if st
                .tokens_checked
                .is_none_or(|t| t.elapsed() >= TOKEN_CHECK_PERIOD)
            {
                st.tokens_checked = Some(Instant::now());
                match crate::volumes::refresh_tokens(&ctx.client, &ctx.engine.data_root, &pod).await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("pod {}: {n} token(s) refreshed", oref),
                    Err(e) => tracing::warn!("pod {}: refreshing tokens: {e}", oref),
                }
                // kubelet's volume manager: updated ConfigMaps/Secrets/labels reach the
                // pod's volumes (kubelet's `..data` swap).
                // (Once the status has the pod's IP, which the downward API may show.)
                let pod_ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
                if let Some(pod_ip) = pod_ip {
                    let facts = crate::volumes::PodFacts {
                        pod_ip: &pod_ip,
                        host_ip: &ctx.host_ip,
                    };
                    let root = &ctx.engine.data_root;
                    let n =
                        crate::volumes::resync(&ctx.client, &ctx.sources, root, &pod, facts).await;
                    if n > 0 {
                        tracing::info!("pod {}: {n} volume(s) updated", oref);
                    }
                }
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Stops the pod's containers (the stop signal, then SIGKILL after `grace` seconds), removes
/// them and the sandbox.
fn kill_pod(engine: &Engine, uid: &str, grace: i64) {
    let cs = pod_containers(engine, uid);
    // The PID namespace holder last: its end kills whatever still runs in its namespace.
    let stops: Vec<_> = cs
        .iter()
        .filter(|c| !crate::holder::is_holder(c))
        .filter(|c| {
            matches!(
                c.state.status,
                Status::Running | Status::Paused | Status::Restarting
            )
        })
        .map(|c| {
            let (containers, id) = (engine.containers.clone(), c.id.clone());
            std::thread::spawn(move || {
                if let Err(e) = containers.stop(&id, Some(grace), None) {
                    tracing::warn!("stopping {id}: {e}");
                }
            })
        })
        .collect();
    for s in stops {
        let _ = s.join();
    }
    crate::holder::stop(engine, uid);
    for c in &cs {
        if let Err(e) = engine.containers.remove(&c.id, true) {
            tracing::warn!("removing {}: {e}", c.name);
        }
    }
    engine.networks.teardown(&sandbox_key(uid));
    crate::volumes::remove(&engine.data_root, uid);
}

/// A pod being deleted: its containers get their grace period, then the object goes
/// (`gracePeriodSeconds=0`, preconditioned on its uid), as kubelet's status manager does.
async fn terminate(ctx: &Ctx, pod: &Pod) -> Result<(), AgentError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let grace = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    let running: Vec<Container> = {
        let (engine, u) = (ctx.engine.clone(), uid.clone());
        blocking(move || Ok(pod_containers(&engine, &u)))
            .await?
            .into_iter()
            .filter(is_running)
            .filter(|c| !crate::holder::is_holder(c))
            .collect()
    };
    // The app containers stop first, then the sidecars, last one first (kubelet's order).
    let sidecars: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| is_sidecar(c))
        .map(|c| c.name.clone())
        .collect();
    let label = |c: &Container| {
        c.options
            .labels
            .get(LABEL_CONTAINER)
            .cloned()
            .unwrap_or_default()
    };
    let apps: Vec<&Container> = running
        .iter()
        .filter(|c| !sidecars.contains(&label(c)))
        .collect();
    for c in &apps {
        let n = label(c);
        ctx.event(
            pod,
            Some(&n),
            false,
            "Killing",
            &format!("Stopping container {n}"),
        )
        .await;
    }
    let pod_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default();
    let hooks_from = Instant::now();
    pre_stop(ctx, pod, &apps, &pod_ip).await;
    // kubelet: what the hooks took comes off the grace period, leaving at least 2 s.
    let stop_grace = (grace - hooks_from.elapsed().as_secs() as i64).max(2.min(grace));
    let ids: Vec<String> = apps.iter().map(|c| c.id.clone()).collect();
    let containers = ctx.engine.containers.clone();
    blocking(move || {
        let stops: Vec<_> = ids
            .into_iter()
            .map(|id| {
                let containers = containers.clone();
                std::thread::spawn(move || {
                    if let Err(e) = containers.stop(&id, Some(stop_grace), None) {
                        tracing::warn!("stopping {id}: {e}");
                    }
                })
            })
            .collect();
        for s in stops {
            let _ = s.join();
        }
        Ok(())
    })
    .await?;
    let side_ids: Vec<(String, String)> = sidecars
        .iter()
        .rev()
        .filter_map(|n| {
            let c = running.iter().find(|c| &label(c) == n)?;
            Some((c.id.clone(), n.clone()))
        })
        .collect();
    stop_in_order(ctx, pod, side_ids).await;
    let (engine, u) = (ctx.engine.clone(), uid.clone());
    blocking(move || {
        kill_pod(&engine, &u, grace);
        Ok(())
    })
    .await?;
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(()),
        Err(e) if crate::not_found(&e) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(AgentError::api(format!("delete pod {ns}/{name}"), e)),
    }
}

/// How a terminated engine container reads in kube's terms.
fn terminated(c: &Container) -> Terminated {
    let s = &c.state;
    let start_error = !s.error.is_empty();
    let (exit_code, reason) = if start_error {
        // containerd's code and reason for a process that could not start.
        (128, "StartError")
    } else if s.oom_killed {
        (s.exit_code, "OOMKilled")
    } else if s.exit_code == 0 {
        (0, "Completed")
    } else {
        (s.exit_code, "Error")
    };
    Terminated {
        exit_code,
        reason: reason.into(),
        message: start_error.then(|| s.error.clone()),
        started_at: if start_error {
            None
        } else {
            crate::time::engine_to_kube(&s.started_at)
        },
        finished_at: crate::time::engine_to_kube(&s.finished_at),
        container_id: format!("barge://{}", c.id),
    }
}

/// Whether an engine container ran and ended (neither created nor running).
fn ended(c: &Container) -> bool {
    !is_running(c) && c.state.status != Status::Created
}

/// Whether init container `c` is a sidecar (`restartPolicy: Always`).
fn is_sidecar(c: &k8s_openapi::api::core::v1::Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The restart policy of init container `c` in a pod with `policy`: a sidecar always
/// restarts; a regular init container is retried on failure unless the pod's is `Never`.
fn init_policy(c: &k8s_openapi::api::core::v1::Container, policy: &str) -> &'static str {
    if is_sidecar(c) {
        "Always"
    } else if policy == "Never" {
        "Never"
    } else {
        "OnFailure"
    }
}

/// Stops the engine containers `ids` one after the other (sidecars, last first), each with
/// the pod's grace period.
async fn stop_in_order(ctx: &Ctx, pod: &Pod, ids: Vec<(String, String)>) {
    let grace = grace_period(pod);
    for (id, cname) in ids {
        let containers = ctx.engine.containers.clone();
        let m = format!("Stopping container {cname}");
        ctx.event(pod, Some(&cname), false, "Killing", &m).await;
        let _ = blocking(move || {
            containers
                .stop(&id, Some(grace), None)
                .map_err(|e| AgentError::engine("stop sidecar", e))
        })
        .await;
    }
}

fn is_running(c: &Container) -> bool {
    matches!(c.state.status, Status::Running | Status::Paused)
}

/// Whether `policy` restarts a container that ended with `t`.
fn wants_restart(policy: &str, t: &Terminated) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => t.exit_code != 0,
        _ => true,
    }
}

/// The ports the pod publishes on the node (`hostPort`, as `docker run -p`), of every
/// container and init container.
fn host_ports(spec: &k8s_openapi::api::core::v1::PodSpec) -> Vec<barge_network::PortBinding> {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let hp = p.host_port.filter(|h| *h > 0)?;
            Some(barge_network::PortBinding {
                container_port: u16::try_from(p.container_port).ok()?,
                proto: p.protocol.as_deref().unwrap_or("TCP").to_lowercase(),
                // The pod's family only (CNI portmap's hostPort), not the engine's extra
                // IPv6 binding of `-p` ports.
                host_ip: p
                    .host_ip
                    .clone()
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or_else(|| "0.0.0.0".into()),
                host_port: hp.to_string(),
            })
        })
        .collect()
}

/// Brings the pod's containers in line with its spec, then writes its status.
async fn sync(ctx: &Ctx, pod: &Pod, st: &mut PodState) -> Result<(), AgentError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let Some(spec) = pod.spec.clone() else {
        return Ok(());
    };
    let policy = spec
        .restart_policy
        .clone()
        .unwrap_or_else(|| "Always".into());
    let terminal = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );

    // The sandbox: a namespace with an address on the pod network.
    let key = sandbox_key(&uid);
    let sandbox = {
        let (engine, key, name) = (ctx.engine.clone(), key.clone(), name.clone());
        let hostname = pod_hostname(pod);
        let spec = spec.clone();
        let cidr = ctx.cfg.pod_cidr().to_string();
        let cluster = ctx.cfg.cluster_cidr.trunc().to_string();
        let host_net = spec.host_network == Some(true);
        let vxlan_on = matches!(
            ctx.cfg.pod_network_backend,
            barge_network::podnet::Backend::Vxlan
        )
        .then(|| ctx.host_ip.parse::<std::net::Ipv4Addr>().ok())
        .flatten();
        blocking(move || {
            if let Some(sb) = engine.networks.sandbox(&key) {
                return Ok(Some(sb));
            }
            if terminal || host_net {
                return Ok(None);
            }
            let mtu = vxlan_on.and_then(barge_network::podnet::vxlan_pod_mtu);
            // The pod network is made with the first sandbox (a node without pods has none).
            ensure_network(&engine, &cidr, &cluster, mtu)?;
            let req = barge_network::SandboxRequest {
                container_id: key.clone(),
                name,
                networks: vec![barge_network::EndpointRequest {
                    network: POD_NETWORK.into(),
                    ..Default::default()
                }],
                ports: host_ports(&spec),
                dns: vec![],
                // The pod's IPC and UTS namespaces and `/dev/shm`, shared by its containers.
                pod: Some(barge_network::PodNamespacesRequest {
                    hostname,
                    shm_size: 0,
                }),
            };
            engine
                .networks
                .setup(&req)
                .map(Some)
                .map_err(|e| AgentError::engine(format!("pod sandbox {key}"), e))
        })
        .await
    };
    let sandbox = match sandbox {
        Ok(sb) => sb,
        Err(e) => {
            tracing::warn!("{e}");
            None
        }
    };
    let sb = SandboxRef {
        key: &key,
        shares_ipc_uts: sandbox.as_ref().is_some_and(|s| s.pod.is_some()),
    };
    // A terminal pod's PID namespace holder goes (kubelet stops a finished pod's sandbox).
    if terminal && crate::holder::shares_pid(pod) {
        let (engine, u) = (ctx.engine.clone(), uid.clone());
        let _ = blocking(move || {
            crate::holder::stop(&engine, &u);
            Ok(())
        })
        .await;
    }
    // A `hostNetwork` pod has no sandbox of its own: its IP is the node's.
    let pod_ip = if host_network(pod) {
        Some(ctx.host_ip.clone())
    } else {
        sandbox
            .as_ref()
            .and_then(|sb| sb.endpoints.first())
            .map(|ep| ep.ip.to_string())
    };

    // Start what should run.
    let existing = {
        let (engine, u) = (ctx.engine.clone(), uid.clone());
        blocking(move || Ok(pod_containers(&engine, &u))).await?
    };
    if (sandbox.is_some() || host_network(pod)) && !terminal {
        let of = |n: &str| -> Vec<&Container> {
            existing
                .iter()
                .filter(|e| e.options.labels.get(LABEL_CONTAINER).map(String::as_str) == Some(n))
                .collect()
        };
        let inits = spec.init_containers.clone().unwrap_or_default();
        let app_started = spec.containers.iter().any(|c| !of(&c.name).is_empty());
        // Every app container ended for good: the sidecars stop, last one first.
        let apps_done = spec.containers.iter().all(|c| {
            of(&c.name)
                .last()
                .is_some_and(|l| ended(l) && !wants_restart(&policy, &terminated(l)))
        });
        if apps_done && app_started {
            let running: Vec<(String, String)> = inits
                .iter()
                .rev()
                .filter(|ic| is_sidecar(ic))
                .filter_map(|ic| {
                    let l = of(&ic.name).last().copied().filter(|l| is_running(l))?;
                    Some((l.id.clone(), ic.name.clone()))
                })
                .collect();
            if !running.is_empty() {
                stop_in_order(ctx, pod, running).await;
            }
        } else {
            // Init containers in order: each runs to completion (a sidecar: is started) before
            // the next one; the app containers start once all did.
            let mut initialized = true;
            for ic in &inits {
                let sidecar = is_sidecar(ic);
                let mine = of(&ic.name);
                let done = mine
                    .last()
                    .is_some_and(|l| ended(l) && terminated(l).exit_code == 0);
                if !sidecar && (app_started || done) {
                    continue;
                }
                let p = init_policy(ic, &policy);
                let running =
                    sync_container(ctx, st, pod, ic, p, &mine, pod_ip.as_deref(), sb).await;
                if !(sidecar && (running || app_started)) {
                    initialized = false;
                    break;
                }
            }
            if initialized {
                for c in &spec.containers {
                    let mine = of(&c.name);
                    sync_container(ctx, st, pod, c, &policy, &mine, pod_ip.as_deref(), sb).await;
                }
                // Ephemeral containers (`kubectl debug`) run once, never restarted.
                for c in ephemeral_containers(&spec) {
                    let mine = of(&c.name);
                    sync_container(ctx, st, pod, &c, "Never", &mine, pod_ip.as_deref(), sb).await;
                }
            }
        }
    }

    // Status.
    let (existing, messages) = {
        let (engine, u, spec) = (ctx.engine.clone(), uid.clone(), spec.clone());
        blocking(move || {
            let cs = pod_containers(&engine, &u);
            let dir = crate::volumes::pod_dir(&engine.data_root, &u);
            let m = termination_messages(&dir, &spec, &cs);
            Ok((cs, m))
        })
        .await?
    };
    let image_ids: HashMap<String, String> = existing
        .iter()
        .map(|c| (c.id.clone(), c.image_id.clone()))
        .collect();
    let of = |n: &str| -> Vec<&Container> {
        existing
            .iter()
            .filter(|e| e.options.labels.get(LABEL_CONTAINER).map(String::as_str) == Some(n))
            .collect()
    };
    let inits = spec.init_containers.clone().unwrap_or_default();
    // kubelet: with init containers, what has not started is `PodInitializing`.
    let default_reason = if inits.is_empty() {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    // One view per container of a list, each under its restart policy.
    let views_of = |cs: &[k8s_openapi::api::core::v1::Container],
                    policy_of: &dyn Fn(&k8s_openapi::api::core::v1::Container) -> String,
                    reason: &str|
     -> Vec<ContainerView> {
        cs.iter()
            .map(|c| {
                let mine = of(&c.name);
                let p = policy_of(c);
                let mut v = view(st, pod, c, &mine, &p, terminal, reason, &image_ids);
                fill_messages(&mut v, &messages);
                v
            })
            .collect()
    };
    let views = views_of(&spec.containers, &|_| policy.clone(), default_reason);
    let init_views = views_of(&inits, &|c| init_policy(c, &policy).into(), default_reason);
    let ephemeral = ephemeral_containers(&spec);
    let ephemeral_views = views_of(&ephemeral, &|_| "Never".into(), "ContainerCreating");
    let now = crate::time::now();
    let status = crate::status::pod_status(
        pod,
        &views,
        &crate::status::Inputs {
            init: &init_views,
            ephemeral: &ephemeral_views,
            pod_ip: pod_ip.as_deref(),
            host_ip: &ctx.host_ip,
            now: &now,
        },
    );
    if st.written.as_ref() != Some(&status) {
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": status })),
        )
        .await
        .map_err(|e| AgentError::api(format!("patch pod {ns}/{name} status"), e))?;
        st.written = Some(status);
    }
    Ok(())
}

/// Whether the pod runs in the node's network namespace (`spec.hostNetwork`).
fn host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network) == Some(true)
}

/// The pod's ephemeral containers as containers (the fields they share; kube's
/// `EphemeralContainerCommon` is `Container`'s, so the conversion loses only
/// `targetContainerName`, which [`ephemeral_target`] reads).
fn ephemeral_containers(
    spec: &k8s_openapi::api::core::v1::PodSpec,
) -> Vec<k8s_openapi::api::core::v1::Container> {
    spec.ephemeral_containers
        .iter()
        .flatten()
        .filter_map(|e| serde_json::to_value(e).ok())
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect()
}

/// The container whose PID namespace ephemeral container `name` joins
/// (`targetContainerName`, `kubectl debug --target`), if any.
fn ephemeral_target<'a>(pod: &'a Pod, name: &str) -> Option<&'a str> {
    pod.spec
        .as_ref()?
        .ephemeral_containers
        .iter()
        .flatten()
        .find(|e| e.name == name)?
        .target_container_name
        .as_deref()
        .filter(|t| !t.is_empty())
}

/// Brings one container of the pod in line with `policy` (its restart policy): starts its
/// first attempt, runs its probes while it runs, restarts it after its back-off. Whether it
/// runs now.
#[allow(clippy::too_many_arguments)]
async fn sync_container(
    ctx: &Ctx,
    st: &mut PodState,
    pod: &Pod,
    c: &k8s_openapi::api::core::v1::Container,
    policy: &str,
    mine: &[&Container],
    pod_ip: Option<&str>,
    sb: SandboxRef<'_>,
) -> bool {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let latest = mine.last().copied();
    let next_attempt = match latest {
        None => 0,
        Some(l) if is_running(l) => {
            // Running long enough: the back-off is forgotten.
            let since = crate::time::parse(&l.state.started_at);
            if since.is_some_and(|t| {
                (time::OffsetDateTime::now_utc() - t).whole_seconds()
                    >= BACKOFF_RESET.as_secs() as i64
            }) {
                st.backoff.remove(&c.name);
            }
            if let Some(ip) = pod_ip {
                run_probes(ctx, st, pod, c, l, ip).await;
            }
            return true;
        }
        Some(l) if l.state.status == Status::Created => attempt(l),
        Some(l) => {
            let t = terminated(l);
            if !wants_restart(policy, &t) {
                return false;
            }
            if in_backoff(st, &c.name, l) {
                if st.backoff_reported.insert(l.id.clone()) {
                    let m = format!(
                        "Back-off restarting failed container {} in pod {name}_{ns}({uid})",
                        c.name
                    );
                    ctx.event(pod, Some(&c.name), true, "BackOff", &m).await;
                }
                return false;
            }
            next_backoff(st, &c.name, ctx.cfg.backoff_base);
            attempt(l) + 1
        }
    };
    match start_container(ctx, st, pod, c, next_attempt, pod_ip, sb, mine).await {
        Ok(started) => {
            st.waiting.remove(&c.name);
            started
        }
        Err(StartError::Waiting(reason, message, events)) => {
            let new = (reason, message);
            if st.waiting.get(&c.name) != Some(&new) {
                for (warning, reason, m) in &events {
                    ctx.event(pod, Some(&c.name), *warning, reason, m).await;
                }
            }
            st.waiting.insert(c.name.clone(), new);
            false
        }
        Err(StartError::Other(e)) => {
            tracing::warn!("pod {ns}/{name}: {e}");
            false
        }
    }
}

/// What the engine shows of container `c` (its attempts `mine`, oldest first) in kube's terms;
/// `default_reason` is the waiting reason of a container not made yet.
#[allow(clippy::too_many_arguments)]
fn view(
    st: &PodState,
    pod: &Pod,
    c: &k8s_openapi::api::core::v1::Container,
    mine: &[&Container],
    policy: &str,
    terminal: bool,
    default_reason: &str,
    image_ids: &HashMap<String, String>,
) -> ContainerView {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let latest = mine.last().copied();
    let prev = if mine.len() > 1 {
        Some(terminated(mine[mine.len() - 2]))
    } else {
        None
    };
    let image = c.image.clone().unwrap_or_default();
    match latest {
        None => {
            let (reason, message) = st
                .waiting
                .get(&c.name)
                .map(|(r, m)| (r.clone(), Some(m.clone())))
                .unwrap_or_else(|| (default_reason.into(), None));
            ContainerView {
                name: c.name.clone(),
                image,
                image_id: String::new(),
                container_id: None,
                restart_count: 0,
                state: State::Waiting { reason, message },
                last: None,
                ready: false,
            }
        }
        Some(l) => {
            let base = ContainerView {
                name: c.name.clone(),
                image,
                image_id: image_ids.get(&l.id).cloned().unwrap_or_default(),
                container_id: Some(format!("barge://{}", l.id)),
                restart_count: attempt(l),
                state: State::Waiting {
                    reason: default_reason.into(),
                    message: None,
                },
                last: prev,
                ready: false,
            };
            if is_running(l) {
                ContainerView {
                    state: State::Running {
                        started_at: crate::time::engine_to_kube(&l.state.started_at)
                            .unwrap_or_else(crate::time::now),
                    },
                    ready: st.ready(c, &l.id),
                    ..base
                }
            } else if l.state.status == Status::Created {
                base
            } else {
                let t = terminated(l);
                let restarting = !terminal && wants_restart(policy, &t);
                if let (true, Some((reason, message))) = (restarting, st.waiting.get(&c.name)) {
                    ContainerView {
                        state: State::Waiting {
                            reason: reason.clone(),
                            message: Some(message.clone()),
                        },
                        last: Some(t),
                        ..base
                    }
                } else if restarting && in_backoff(st, &c.name, l) {
                    let b = st.backoff[&c.name].current;
                    ContainerView {
                        state: State::Waiting {
                            reason: "CrashLoopBackOff".into(),
                            message: Some(format!(
                                "back-off {} restarting failed container={} pod={name}_{ns}({uid})",
                                go_duration(b),
                                c.name
                            )),
                        },
                        last: Some(t),
                        ..base
                    }
                } else {
                    ContainerView {
                        state: State::Terminated(t),
                        ..base
                    }
                }
            }
        }
    }
}

/// Go's `time.Duration` spelling of whole seconds (`10s`, `2m40s`, `5m0s`).
fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else if d.subsec_millis() > 0 && s == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{s}s")
    }
}

/// Whether the container's restart must still wait (kubelet's `IsInBackOffSince` its end).
fn in_backoff(st: &PodState, name: &str, c: &Container) -> bool {
    let Some(b) = st.backoff.get(name) else {
        return false;
    };
    let Some(finished) = crate::time::parse(&c.state.finished_at) else {
        return false;
    };
    let since = time::OffsetDateTime::now_utc() - finished;
    since < time::Duration::try_from(b.current).unwrap_or(time::Duration::ZERO)
}

/// kubelet's `Backoff.Next`: the base the first time (or after 10 minutes without a restart),
/// else doubled up to [`MAX_BACKOFF`].
fn next_backoff(st: &mut PodState, name: &str, base: Duration) {
    let now = Instant::now();
    let b = match st.backoff.get(name) {
        Some(b) if now.duration_since(b.updated) <= BACKOFF_RESET => Backoff {
            current: (b.current * 2).min(MAX_BACKOFF),
            updated: now,
        },
        _ => Backoff {
            current: base,
            updated: now,
        },
    };
    st.backoff.insert(name.to_string(), b);
}

enum StartError {
    /// The container waits with this reason and message (kube's); the events are recorded
    /// when this is news.
    Waiting(String, String, Vec<crate::images::Event>),
    Other(AgentError),
}

/// The host file behind attempt `n` of container `name`'s `terminationMessagePath`.
fn termination_file(
    data_root: &std::path::Path,
    uid: &str,
    name: &str,
    n: i64,
) -> std::path::PathBuf {
    crate::volumes::pod_dir(data_root, uid)
        .join("containers")
        .join(name)
        .join(n.to_string())
}

/// kubelet's limits: a termination message file is read up to 4 KiB; the log fallback
/// takes the last 80 lines, up to 2 KiB.
const MAX_TERMINATION_MESSAGE: usize = 4096;
const MAX_FALLBACK_LINES: usize = 80;
const MAX_FALLBACK_BYTES: usize = 2048;

/// The termination messages of the ended containers `cs` of a pod (engine ID → message):
/// the file at `terminationMessagePath`, else with `FallbackToLogsOnError` and a failure the
/// tail of the log. Blocking (file reads).
fn termination_messages(
    pod_dir: &std::path::Path,
    spec: &k8s_openapi::api::core::v1::PodSpec,
    cs: &[Container],
) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for c in cs.iter().filter(|c| ended(c)) {
        let Some(name) = c.options.labels.get(LABEL_CONTAINER) else {
            continue;
        };
        let Some(sc) = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .find(|s| &s.name == name)
        else {
            continue;
        };
        let file = pod_dir
            .join("containers")
            .join(name)
            .join(attempt(c).to_string());
        let mut msg = std::fs::read(&file).unwrap_or_default();
        msg.truncate(MAX_TERMINATION_MESSAGE);
        if msg.is_empty()
            && c.state.exit_code != 0
            && sc.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
        {
            if let Ok((entries, _)) =
                barge_container::logs::tail_entries(&c.log_path, MAX_FALLBACK_LINES)
            {
                let all: Vec<u8> = entries.into_iter().flat_map(|e| e.log).collect();
                let from = all.len().saturating_sub(MAX_FALLBACK_BYTES);
                msg = all[from..].to_vec();
            }
        }
        if !msg.is_empty() {
            out.insert(c.id.clone(), String::from_utf8_lossy(&msg).into_owned());
        }
    }
    out
}

/// Puts the termination messages into a view's terminated states (a start error keeps its own).
fn fill_messages(v: &mut ContainerView, msgs: &HashMap<String, String>) {
    let fill = |t: &mut Terminated| {
        if t.message.is_none() {
            if let Some(m) = t
                .container_id
                .strip_prefix("barge://")
                .and_then(|id| msgs.get(id))
            {
                t.message = Some(m.clone());
            }
        }
    };
    if let State::Terminated(t) = &mut v.state {
        fill(t);
    }
    if let Some(t) = &mut v.last {
        fill(t);
    }
}

/// kubelet's `SetVolumeOwnership` for `fsGroup` on a volume directory: group `gid`, group
/// read-write, and the set-group-ID bit on directories so new files get the group.
fn fs_group(dir: &std::path::Path, gid: u32) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if meta.file_type().is_symlink() {
        return;
    }
    if let Err(e) = std::os::unix::fs::lchown(dir, None, Some(gid)) {
        tracing::warn!("fsGroup on {}: {e}", dir.display());
    }
    let mut mode = meta.permissions().mode() | 0o060;
    if meta.is_dir() {
        mode |= 0o2010;
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            fs_group(&e.path(), gid);
        }
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o7777));
}

/// `CreateContainerConfigError` with kubelet's message (event `Failed`, `Error: <message>`).
fn config_error(m: String) -> StartError {
    let ev = (true, "Failed", format!("Error: {m}"));
    StartError::Waiting("CreateContainerConfigError".into(), m, vec![ev])
}

/// A quantity as bytes (`128Mi`, `1G`, `1e3`, plain bytes); `None` when unparsable.
fn quantity_bytes(q: &str) -> Option<i64> {
    let units: [(&str, f64); 12] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (suffix, mult) in units {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<f64>().ok().map(|n| (n * mult).ceil() as i64);
        }
    }
    if let Some(n) = q.strip_suffix('m') {
        return n.parse::<f64>().ok().map(|n| (n / 1000.0).ceil() as i64);
    }
    q.parse::<f64>().ok().map(|n| n.ceil() as i64)
}

/// A CPU quantity in 1e-9 CPUs (`500m` = 500_000_000).
fn quantity_nano_cpus(q: &str) -> Option<i64> {
    match q.strip_suffix('m') {
        Some(m) => m.parse::<f64>().ok().map(|m| (m * 1e6) as i64),
        None => q.parse::<f64>().ok().map(|c| (c * 1e9) as i64),
    }
}

/// Creates and starts attempt `n` of container `c`; removes attempts older than the previous
/// one (kept for `lastState`).
#[allow(clippy::too_many_arguments)]
async fn start_container(
    ctx: &Ctx,
    st: &mut PodState,
    pod: &Pod,
    c: &k8s_openapi::api::core::v1::Container,
    n: i64,
    pod_ip: Option<&str>,
    sb: SandboxRef<'_>,
    mine: &[&Container],
) -> Result<bool, StartError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let image = c.image.clone().unwrap_or_default();
    // The image, as kubelet's image manager gets it (its events go out either way).
    let mut image_events = Vec::new();
    let got = crate::images::ensure(
        &ctx.engine,
        &ctx.client,
        pod,
        c,
        &mut st.pull_backoff,
        ctx.cfg.backoff_base,
        &mut image_events,
    )
    .await;
    // A pull's events go out now; "already present" only with the container it makes (a
    // container waiting for its config would repeat it every second).
    if image_events.iter().any(|e| e.1 == "Pulling") {
        for (warning, reason, message) in image_events.drain(..) {
            ctx.event(pod, Some(&c.name), warning, reason, &message)
                .await;
        }
    }
    if let Err(mut w) = got {
        w.events
            .push((true, "Failed", format!("Error: {}", w.reason)));
        return Err(StartError::Waiting(w.reason.into(), w.message, w.events));
    }
    let image_user = {
        let (engine, image) = (ctx.engine.clone(), image.clone());
        blocking(move || {
            Ok(engine
                .images
                .get(&image)
                .ok()
                .and_then(|i| i.config.config.user)
                .unwrap_or_default())
        })
        .await
        .map_err(StartError::Other)?
    };
    if let Err(m) = crate::security::verify_run_as_non_root(pod, c, &image_user) {
        return Err(config_error(m));
    }
    let env = match crate::env::container_env(
        &ctx.client,
        &ctx.sources,
        pod,
        c,
        pod_ip.unwrap_or_default(),
        &ctx.host_ip,
    )
    .await
    {
        Ok(env) => env,
        Err(crate::env::EnvError::Config(m)) => return Err(config_error(m)),
        Err(crate::env::EnvError::Api(e)) => {
            return Err(StartError::Other(AgentError::api(
                "container environment",
                e,
            )))
        }
    };
    let vars: BTreeMap<&str, &str> = env.iter().filter_map(|l| l.split_once('=')).collect();
    let expand = |v: &Option<Vec<String>>| {
        v.as_ref().filter(|v| !v.is_empty()).map(|v| {
            v.iter()
                .map(|s| crate::env::expand(s, &vars))
                .collect::<Vec<_>>()
        })
    };
    let mut labels = BTreeMap::new();
    labels.insert(LABEL_NAMESPACE.to_string(), ns.clone());
    labels.insert(LABEL_NAME.to_string(), name.clone());
    labels.insert(LABEL_UID.to_string(), uid.clone());
    labels.insert(LABEL_CONTAINER.to_string(), c.name.clone());
    labels.insert(LABEL_RESTARTS.to_string(), n.to_string());
    let hostname = pod_hostname(pod);
    let mut binds = match crate::volumes::container_binds(
        &ctx.client,
        &ctx.sources,
        &ctx.engine.data_root,
        pod,
        c,
        crate::volumes::PodFacts {
            pod_ip: pod_ip.unwrap_or_default(),
            host_ip: &ctx.host_ip,
        },
    )
    .await
    {
        Ok(b) => b,
        Err(crate::volumes::VolumeError::Config(m)) => return Err(config_error(m)),
        // kubelet: the pod stays ContainerCreating, with a FailedMount event.
        Err(crate::volumes::VolumeError::Mount(m)) => {
            let ev = (true, "FailedMount", m.clone());
            return Err(StartError::Waiting("ContainerCreating".into(), m, vec![ev]));
        }
        Err(crate::volumes::VolumeError::Api(e)) => {
            return Err(StartError::Other(AgentError::api("container volumes", e)))
        }
    };
    // The termination message file (kubelet's `terminationMessagePath`), one per attempt.
    let term_path = c
        .termination_message_path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/dev/termination-log".into());
    let term_file = termination_file(&ctx.engine.data_root, &uid, &c.name, n);
    {
        let f = term_file.clone();
        blocking(move || {
            use std::os::unix::fs::PermissionsExt;
            let made = f
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&f, b""))
                .and_then(|()| {
                    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666))
                });
            made.map_err(|e| {
                AgentError::engine(format!("termination message file {}", f.display()), e)
            })
        })
        .await
        .map_err(StartError::Other)?;
    }
    binds.push(format!("{}:{term_path}", term_file.display()));
    if let Some(gid) = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.fs_group)
    {
        let dir = crate::volumes::pod_dir(&ctx.engine.data_root, &uid);
        let empty: Vec<_> = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .into_iter()
            .flatten()
            .filter(|v| v.empty_dir.is_some())
            .map(|v| dir.join("volumes/kubernetes.io~empty-dir").join(&v.name))
            .collect();
        blocking(move || {
            empty.iter().for_each(|d| fs_group(d, gid as u32));
            Ok(())
        })
        .await
        .map_err(StartError::Other)?;
    }
    binds.extend(crate::dns::resolv_bind(
        &ctx.cfg,
        &ctx.engine.data_root,
        pod,
    ));
    let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
    let limit = |k: &str| limits.and_then(|l| l.get(k)).map(|q| q.0.clone());
    let mut host = HostOptions {
        // `hostNetwork` pods share the node's network and UTS namespaces (kubelet's).
        network_mode: if host_network(pod) {
            "host".into()
        } else {
            format!("sandbox:{}", sb.key)
        },
        // The pod's UTS and IPC namespaces and `/dev/shm` are its sandbox's (`hostIPC`:
        // the node's, set by `security::apply`).
        uts_mode: match (host_network(pod), sb.shares_ipc_uts) {
            (true, _) => "host".into(),
            (false, true) => format!("sandbox:{}", sb.key),
            (false, false) => String::new(),
        },
        ipc_mode: if !host_network(pod) && sb.shares_ipc_uts {
            format!("sandbox:{}", sb.key)
        } else {
            String::new()
        },
        log_type: "json-file".into(),
        restart_policy: "no".into(),
        binds,
        memory: limit("memory")
            .and_then(|q| quantity_bytes(&q))
            .unwrap_or(0),
        nano_cpus: limit("cpu")
            .and_then(|q| quantity_nano_cpus(&q))
            .unwrap_or(0),
        ..Default::default()
    };
    crate::security::apply(pod, c, &mut host);
    if crate::holder::shares_pid(pod) {
        // `shareProcessNamespace`: the holder's PID namespace (made on this image if none runs).
        let (engine, p, img, h) = (
            ctx.engine.clone(),
            pod.clone(),
            image.clone(),
            hostname.clone(),
        );
        let (key, shares) = (sb.key.to_string(), sb.shares_ipc_uts);
        let id = blocking(move || {
            let sb = SandboxRef {
                key: &key,
                shares_ipc_uts: shares,
            };
            crate::holder::ensure(&engine, &p, &img, &sb, &h)
        })
        .await
        .map_err(StartError::Other)?;
        host.pid_mode = format!("container:{id}");
    }
    if let Some(target) = ephemeral_target(pod, &c.name) {
        // `kubectl debug --target`: the target's PID namespace (it must run).
        let (engine, u, t) = (ctx.engine.clone(), uid.clone(), target.to_string());
        let running = blocking(move || {
            Ok(pod_containers(&engine, &u)
                .into_iter()
                .filter(|c| c.options.labels.get(LABEL_CONTAINER) == Some(&t))
                .find(is_running)
                .map(|c| c.id))
        })
        .await
        .map_err(StartError::Other)?;
        match running {
            Some(id) => host.pid_mode = format!("container:{id}"),
            None => {
                let m = format!("target container {target:?} is not running");
                return Err(StartError::Waiting("ContainerCreating".into(), m, vec![]));
            }
        }
    }
    let opts = CreateOptions {
        name: Some(format!("k8s_{}_{name}_{ns}_{uid}_{n}", c.name)),
        user: crate::security::user(pod, c, &image_user),
        image: image.clone(),
        entrypoint: expand(&c.command),
        cmd: expand(&c.args),
        env: env.clone(),
        working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
        hostname: (!host_network(pod)).then_some(hostname),
        tty: c.tty.unwrap_or(false),
        open_stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        labels,
        // Image health checks are Docker's, not Kubernetes' (probes are).
        healthcheck: Some(barge_image::HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        }),
        exposed_ports: c
            .ports
            .iter()
            .flatten()
            .map(|p| {
                format!(
                    "{}/{}",
                    p.container_port,
                    p.protocol.as_deref().unwrap_or("TCP").to_lowercase()
                )
            })
            .collect(),
        host,
        ..Default::default()
    };
    let engine = ctx.engine.clone();
    let old: Vec<String> = if mine.len() > 1 {
        mine[..mine.len() - 1]
            .iter()
            .map(|c| c.id.clone())
            .collect()
    } else {
        Vec::new()
    };
    let created_name = c.name.clone();
    let (id, started) = blocking(move || {
        // Keep only the latest ended container (for `lastState`).
        for id in old {
            let _ = engine.containers.remove(&id, true);
        }
        let existing = engine
            .containers
            .get(opts.name.as_deref().unwrap_or_default())
            .ok()
            .filter(|c| c.state.status == Status::Created);
        let created = match existing {
            Some(c) => c,
            None => engine
                .containers
                .create(opts)
                .map_err(|e| AgentError::engine(format!("create container {created_name}"), e))?,
        };
        // A failed start leaves the container exited with the error: its status says so.
        match engine.containers.start(&created.id, 0, &mut |_| {}) {
            Ok(()) => Ok((created.id, None)),
            Err(e) => {
                tracing::info!("container {created_name} did not start: {e}");
                Ok((created.id, Some(e.to_string())))
            }
        }
    })
    .await
    .map_err(StartError::Other)?;
    let cn = Some(c.name.as_str());
    for (warning, reason, message) in image_events {
        ctx.event(pod, cn, warning, reason, &message).await;
    }
    let created = format!("Created container: {}", c.name);
    ctx.event(pod, cn, false, "Created", &created).await;
    match &started {
        None => {
            let m = format!("Started container {}", c.name);
            ctx.event(pod, cn, false, "Started", &m).await
        }
        Some(e) => {
            ctx.event(pod, cn, true, "Failed", &format!("Error: {e}"))
                .await
        }
    }
    // postStart runs once the container started; its failure kills the container.
    let post_start = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref());
    if let (None, Some(h)) = (&started, post_start) {
        let grace = grace_period(pod);
        let ip = pod_ip.unwrap_or_default();
        let timeout = Duration::from_secs(grace.max(30) as u64);
        if let Err(m) = run_hook(ctx, pod, c, &id, ip, h, timeout).await {
            ctx.event(pod, cn, true, "FailedPostStartHook", &m).await;
            let containers = ctx.engine.containers.clone();
            let _ = blocking(move || {
                containers
                    .stop(&id, Some(grace), None)
                    .map_err(|e| AgentError::engine("stop after postStart", e))
            })
            .await;
            return Ok(false);
        }
    }
    Ok(started.is_none())
}

/// The pod's grace period: the deletion's, else `terminationGracePeriodSeconds` (30).
fn grace_period(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
}

/// Runs lifecycle handler `h` (postStart/preStop: exec, httpGet, tcpSocket, sleep) of
/// container `c` (engine ID `id`); `Err` is kubelet's message.
async fn run_hook(
    ctx: &Ctx,
    pod: &Pod,
    c: &k8s_openapi::api::core::v1::Container,
    id: &str,
    pod_ip: &str,
    h: &k8s_openapi::api::core::v1::LifecycleHandler,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(s) = &h.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64).min(timeout)).await;
        return Ok(());
    }
    let probe = k8s_openapi::api::core::v1::Probe {
        exec: h.exec.clone(),
        http_get: h.http_get.clone(),
        tcp_socket: h.tcp_socket.clone(),
        timeout_seconds: Some(timeout.as_secs().clamp(1, i32::MAX as u64) as i32),
        ..Default::default()
    };
    crate::probes::run(&ctx.engine, c, id, pod_ip, &probe)
        .await
        .map_err(|e| {
            let who = format!(
                "{}_{}({})",
                pod.metadata.name.as_deref().unwrap_or_default(),
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.uid.as_deref().unwrap_or_default()
            );
            match (&h.exec, &h.http_get) {
                (Some(x), _) => format!(
                    "Exec lifecycle hook ([{}]) for Container {:?} in Pod {who:?} failed - error: {e}",
                    x.command.clone().unwrap_or_default().join(" "),
                    c.name
                ),
                (None, Some(g)) => format!(
                    "HTTP lifecycle hook ({}) for Container {:?} in Pod {who:?} failed - error: {e}",
                    g.path.as_deref().unwrap_or("/"),
                    c.name
                ),
                _ => format!(
                    "lifecycle hook for Container {:?} in Pod {who:?} failed - error: {e}",
                    c.name
                ),
            }
        })
}

/// Runs the preStop hooks of the running engine containers `cs` side by side, within the
/// grace period; a failure is a `FailedPreStopHook` event (the container stops anyway).
async fn pre_stop(ctx: &Ctx, pod: &Pod, cs: &[&Container], pod_ip: &str) {
    let grace = Duration::from_secs(grace_period(pod).max(1) as u64);
    let spec = pod.spec.clone().unwrap_or_default();
    let hooks = cs.iter().filter_map(|l| {
        let name = l.options.labels.get(LABEL_CONTAINER)?;
        let c = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .find(|c| &c.name == name)?;
        let h = c.lifecycle.as_ref()?.pre_stop.clone()?;
        Some(async move {
            let r =
                tokio::time::timeout(grace, run_hook(ctx, pod, c, &l.id, pod_ip, &h, grace)).await;
            let m = match r {
                Ok(Ok(())) => return,
                Ok(Err(m)) => m,
                Err(_) => format!(
                    "PreStopHook for Container {:?} did not complete within {}s",
                    c.name,
                    grace.as_secs()
                ),
            };
            ctx.event(pod, Some(&c.name), true, "FailedPreStopHook", &m)
                .await;
        })
    });
    futures_util::future::join_all(hooks).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(quantity_bytes("128Mi"), Some(128 << 20));
        assert_eq!(quantity_bytes("1G"), Some(1_000_000_000));
        assert_eq!(quantity_bytes("1000"), Some(1000));
        assert_eq!(quantity_nano_cpus("500m"), Some(500_000_000));
        assert_eq!(quantity_nano_cpus("2"), Some(2_000_000_000));
    }

    #[test]
    fn backoff_doubles_to_five_minutes() {
        let mut st = PodState::default();
        let base = Duration::from_secs(10);
        let mut seen = Vec::new();
        for _ in 0..7 {
            next_backoff(&mut st, "a", base);
            seen.push(st.backoff["a"].current.as_secs());
        }
        assert_eq!(seen, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(go_duration(Duration::from_secs(160)), "2m40s");
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
    }

    #[test]
    fn sandbox_keys_are_pod_sandboxes() {
        let k = sandbox_key("0b6f3c1e-1d2a-4c5b-9e8f-7a6b5c4d3e2f");
        assert_eq!(k, "pod-0b6f3c1e1d2a4c5b9e8f7a6b5c4d3e2f");
        assert!(barge_network::is_pod_sandbox(&k));
    }
}
