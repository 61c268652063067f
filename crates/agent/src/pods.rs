//! The pods bound to this node: one worker per pod (a tokio task, woken by the pod's watch
//! events and every second), which makes the pod's sandbox, starts its containers, restarts
//! them by `restartPolicy` with kubelet's back-off, writes the pod's status and carries out
//! its graceful deletion.
//!
//! The engine is the record of what runs: a pod's containers are engine containers named as
//! dockershim named them (`k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`) and labelled
//! ([`LABEL_UID`] …), in network mode `sandbox:<key>` where `key` = [`sandbox_key`] of the
//! pod's uid; after an agent restart the workers find them again and adopt them as they are.

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

/// What the workers share.
struct Ctx {
    client: Client,
    engine: Engine,
    cfg: Arc<Config>,
    /// Pods as JSON: one pod the typed model cannot read (the API server let it in) must not
    /// stop the watch of every other pod; it is skipped by its worker.
    pods: Store<DynamicObject>,
    host_ip: String,
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
    let ctx = Arc::new(Ctx {
        host_ip: crate::node::node_ip(&cfg).to_string(),
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

/// Creates the pod network (a bridge over `cidr`) unless it exists.
fn ensure_network(engine: &Engine, cidr: &str) -> Result<(), AgentError> {
    if engine.networks.get(POD_NETWORK).is_ok() {
        return Ok(());
    }
    let mut labels = BTreeMap::new();
    labels.insert("io.barge.pod-network".to_string(), "true".to_string());
    engine
        .networks
        .create(barge_network::CreateRequest {
            name: POD_NETWORK.into(),
            driver: Some("bridge".into()),
            subnet: Some(cidr.into()),
            labels,
            ..Default::default()
        })
        .map_err(|e| AgentError::engine(format!("creating the pod network {cidr}"), e))?;
    Ok(())
}

/// The engine containers of pod `uid`, oldest attempt first.
fn pod_containers(engine: &Engine, uid: &str) -> Vec<Container> {
    let mut cs: Vec<Container> = engine
        .containers
        .list()
        .into_iter()
        .filter(|c| c.options.labels.get(LABEL_UID).map(String::as_str) == Some(uid))
        .collect();
    cs.sort_by_key(attempt);
    cs
}

fn attempt(c: &Container) -> i64 {
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
    /// Probe states by (container name, `liveness`|`readiness`).
    probes: HashMap<(String, &'static str), crate::probes::ProbeState>,
}

impl PodState {
    /// Whether the running engine container `id` (spec `c`) is ready: its readiness probe's
    /// result, or running at all when it has none.
    fn ready(&self, c: &k8s_openapi::api::core::v1::Container, id: &str) -> bool {
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
            crate::events::record(
                &ctx.client,
                &ctx.cfg.node_name,
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
            crate::events::record(
                &ctx.client,
                &ctx.cfg.node_name,
                pod,
                Some(&c.name),
                false,
                "Killing",
                &m,
            )
            .await;
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
        } else if let Err(e) = sync(&ctx, &pod, &mut st).await {
            tracing::warn!("pod {}: {e}", oref);
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
    let stops: Vec<_> = cs
        .iter()
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
    let running: Vec<String> = {
        let (engine, u) = (ctx.engine.clone(), uid.clone());
        blocking(move || Ok(pod_containers(&engine, &u)))
            .await?
            .into_iter()
            .filter(is_running)
            .filter_map(|c| c.options.labels.get(LABEL_CONTAINER).cloned())
            .collect()
    };
    for c in &running {
        let m = format!("Stopping container {c}");
        crate::events::record(
            &ctx.client,
            &ctx.cfg.node_name,
            pod,
            Some(c),
            false,
            "Killing",
            &m,
        )
        .await;
    }
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
        let cidr = crate::node::pod_cidr(&ctx.cfg.cluster_cidr).to_string();
        blocking(move || {
            if let Some(sb) = engine.networks.sandbox(&key) {
                return Ok(Some(sb));
            }
            if terminal {
                return Ok(None);
            }
            // The pod network is made with the first sandbox (a node without pods has none).
            ensure_network(&engine, &cidr)?;
            let req = barge_network::SandboxRequest {
                container_id: key.clone(),
                name,
                networks: vec![barge_network::EndpointRequest {
                    network: POD_NETWORK.into(),
                    ..Default::default()
                }],
                ports: vec![],
                dns: vec![],
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
    let pod_ip = sandbox
        .as_ref()
        .and_then(|sb| sb.endpoints.first())
        .map(|ep| ep.ip.to_string());

    // Start what should run.
    let existing = {
        let (engine, u) = (ctx.engine.clone(), uid.clone());
        blocking(move || Ok(pod_containers(&engine, &u))).await?
    };
    if let (Some(_), false) = (&sandbox, terminal) {
        for c in &spec.containers {
            let mine: Vec<&Container> = existing
                .iter()
                .filter(|e| e.options.labels.get(LABEL_CONTAINER) == Some(&c.name))
                .collect();
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
                    if let Some(ip) = pod_ip.as_deref() {
                        run_probes(ctx, st, pod, c, l, ip).await;
                    }
                    continue;
                }
                Some(l) if l.state.status == Status::Created => attempt(l),
                Some(l) => {
                    let t = terminated(l);
                    if !wants_restart(&policy, &t) {
                        continue;
                    }
                    if in_backoff(st, &c.name, l) {
                        if st.backoff_reported.insert(l.id.clone()) {
                            let m = format!(
                                "Back-off restarting failed container {} in pod {name}_{ns}({uid})",
                                c.name
                            );
                            crate::events::record(
                                &ctx.client,
                                &ctx.cfg.node_name,
                                pod,
                                Some(&c.name),
                                true,
                                "BackOff",
                                &m,
                            )
                            .await;
                        }
                        continue;
                    }
                    next_backoff(st, &c.name, ctx.cfg.backoff_base);
                    attempt(l) + 1
                }
            };
            match start_container(ctx, pod, c, next_attempt, pod_ip.as_deref(), &key, &mine).await {
                Ok(()) => {
                    st.waiting.remove(&c.name);
                }
                Err(StartError::Waiting(reason, message)) => {
                    let new = (reason, message);
                    if st.waiting.get(&c.name) != Some(&new) {
                        let (r, m) = if new.0 == "ErrImageNeverPull" {
                            (new.0.as_str(), new.1.clone())
                        } else {
                            ("Failed", format!("Error: {}", new.1))
                        };
                        crate::events::record(
                            &ctx.client,
                            &ctx.cfg.node_name,
                            pod,
                            Some(&c.name),
                            true,
                            r,
                            &m,
                        )
                        .await;
                    }
                    st.waiting.insert(c.name.clone(), new);
                }
                Err(StartError::Other(e)) => tracing::warn!("pod {ns}/{name}: {e}"),
            }
        }
    }

    // Status.
    let existing = {
        let (engine, u) = (ctx.engine.clone(), uid.clone());
        blocking(move || Ok(pod_containers(&engine, &u))).await?
    };
    let image_ids: HashMap<String, String> = existing
        .iter()
        .map(|c| (c.id.clone(), c.image_id.clone()))
        .collect();
    let mut views = Vec::new();
    for c in &spec.containers {
        let mine: Vec<&Container> = existing
            .iter()
            .filter(|e| e.options.labels.get(LABEL_CONTAINER) == Some(&c.name))
            .collect();
        let latest = mine.last().copied();
        let prev = if mine.len() > 1 {
            Some(terminated(mine[mine.len() - 2]))
        } else {
            None
        };
        let image = c.image.clone().unwrap_or_default();
        let view = match latest {
            None => {
                let (reason, message) = st
                    .waiting
                    .get(&c.name)
                    .map(|(r, m)| (r.clone(), Some(m.clone())))
                    .unwrap_or_else(|| ("ContainerCreating".into(), None));
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
                        reason: "ContainerCreating".into(),
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
                    let restarting = !terminal && wants_restart(&policy, &t);
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
        };
        views.push(view);
    }
    let now = crate::time::now();
    let status = crate::status::pod_status(
        pod,
        &views,
        &crate::status::Inputs {
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
    /// The container waits with this reason and message (kube's).
    Waiting(String, String),
    Other(AgentError),
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
async fn start_container(
    ctx: &Ctx,
    pod: &Pod,
    c: &k8s_openapi::api::core::v1::Container,
    n: i64,
    pod_ip: Option<&str>,
    key: &str,
    mine: &[&Container],
) -> Result<(), StartError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let image = c.image.clone().unwrap_or_default();
    let policy = c.image_pull_policy.clone().unwrap_or_else(|| {
        let tagged = image.rsplit('/').next().is_some_and(|l| l.contains(':'));
        if image.contains('@') || (tagged && !image.ends_with(":latest")) {
            "IfNotPresent".into()
        } else {
            "Always".into()
        }
    });
    let present = {
        let (engine, image) = (ctx.engine.clone(), image.clone());
        blocking(move || Ok(engine.images.get(&image).is_ok()))
            .await
            .map_err(StartError::Other)?
    };
    if !present {
        return Err(if policy == "Never" {
            StartError::Waiting(
                "ErrImageNeverPull".into(),
                format!("Container image {image:?} is not present with pull policy of Never"),
            )
        } else {
            StartError::Waiting(
                "ErrImagePull".into(),
                format!("failed to pull image {image:?}: the node agent does not pull images yet; load it into this node's engine"),
            )
        });
    }
    let env = match crate::env::container_env(
        &ctx.client,
        pod,
        c,
        pod_ip.unwrap_or_default(),
        &ctx.host_ip,
    )
    .await
    {
        Ok(env) => env,
        Err(crate::env::EnvError::Config(m)) => {
            return Err(StartError::Waiting("CreateContainerConfigError".into(), m))
        }
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
    let hostname = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .unwrap_or_else(|| name.chars().take(63).collect());
    let mut binds =
        match crate::volumes::container_binds(&ctx.client, &ctx.engine.data_root, pod, c).await {
            Ok(b) => b,
            Err(crate::volumes::VolumeError::Config(m)) => {
                return Err(StartError::Waiting("CreateContainerConfigError".into(), m))
            }
            Err(crate::volumes::VolumeError::Api(e)) => {
                return Err(StartError::Other(AgentError::api("container volumes", e)))
            }
        };
    binds.extend(crate::dns::resolv_bind(
        &ctx.cfg,
        &ctx.engine.data_root,
        pod,
    ));
    let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
    let limit = |k: &str| limits.and_then(|l| l.get(k)).map(|q| q.0.clone());
    let opts = CreateOptions {
        name: Some(format!("k8s_{}_{name}_{ns}_{uid}_{n}", c.name)),
        image: image.clone(),
        entrypoint: expand(&c.command),
        cmd: expand(&c.args),
        env: env.clone(),
        working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
        hostname: Some(hostname),
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
        host: HostOptions {
            network_mode: format!("sandbox:{key}"),
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
        },
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
    let started = blocking(move || {
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
            Ok(()) => Ok(None),
            Err(e) => {
                tracing::info!("container {created_name} did not start: {e}");
                Ok(Some(e.to_string()))
            }
        }
    })
    .await
    .map_err(StartError::Other)?;
    let node = &ctx.cfg.node_name;
    let cn = Some(c.name.as_str());
    let client = &ctx.client;
    crate::events::record(
        client,
        node,
        pod,
        cn,
        false,
        "Pulled",
        &format!("Container image {image:?} already present on machine"),
    )
    .await;
    crate::events::record(
        client,
        node,
        pod,
        cn,
        false,
        "Created",
        &format!("Created container: {}", c.name),
    )
    .await;
    match started {
        None => {
            crate::events::record(
                client,
                node,
                pod,
                cn,
                false,
                "Started",
                &format!("Started container {}", c.name),
            )
            .await
        }
        Some(e) => {
            crate::events::record(
                client,
                node,
                pod,
                cn,
                true,
                "Failed",
                &format!("Error: {e}"),
            )
            .await
        }
    }
    Ok(())
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
