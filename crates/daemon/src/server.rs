//! Start-up, the listener and the router.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use axum::extract::Request;
use axum::http::Uri;
use barge_container::{ContainerEvent, Containers, RuntimeConfig};
use barge_image::ImageStore;
use tokio::net::UnixListener;
use tower::ServiceExt as _;

use crate::args::DaemonArgs;
use crate::events::EventBus;
use crate::state::{AppState, Inner};

/// Finds an executable by name in `PATH` (plus the sbin directories root usually has).
pub(crate) fn find_in_path(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain([
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

fn socket_path(host: &str) -> Result<PathBuf> {
    match host.strip_prefix("unix://") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => bail!("unsupported host {host:?}: only unix://PATH is supported"),
    }
}

/// Runs the daemon until SIGINT/SIGTERM. Engine set-up (which may spawn engine threads) happens
/// before the tokio runtime starts.
pub fn run(args: DaemonArgs) -> Result<()> {
    crate::memory::limit_arenas();
    init_tracing(&args.log_level);
    let prepared = prepare(args)?;
    let rt = runtime()?;
    let r = rt.block_on(prepared.serve(shutdown_signal()));
    end_runtime(rt);
    r
}

/// How long a stopping daemon waits for engine calls still running on the blocking pool.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Ends the daemon's runtime once it has served: engine calls still in flight on the blocking
/// pool (a `stop -t 60` waiting out its timeout, a `save` streaming to a slow client, a pod's
/// grace period) get [`SHUTDOWN_GRACE`], then are abandoned with the process, as dockerd's
/// shutdown cancels in-flight requests. Nothing is lost: records are written atomically, a
/// removal half done is finished at the next start, and containers outlive the daemon. (A
/// dropped runtime would wait for every one of them.)
pub fn end_runtime(rt: tokio::runtime::Runtime) {
    rt.shutdown_timeout(SHUTDOWN_GRACE);
}

/// Installs the process' tracing subscriber (stderr; `BARGE_LOG` overrides `level`).
pub fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BARGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// The daemon's tokio runtime (2 workers, a large blocking pool for engine calls).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(256)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Resolves on the first SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}

/// The engine, opened and ready to serve: what [`prepare`] makes before tokio starts.
pub struct Prepared {
    args: DaemonArgs,
    state: AppState,
    event_rx: tokio::sync::mpsc::UnboundedReceiver<ContainerEvent>,
    /// Held until the daemon exits: a second daemon on the same bridge refuses to start.
    bridge_claim: barge_network::BridgeClaim,
}

/// The engine's stores, shared with an in-process node agent (`barge server`): the same
/// instances the Docker Engine API serves, so what `docker load`/`build` stores is what pods
/// run and `docker ps` shows pods' containers.
#[derive(Clone)]
pub struct Engine {
    pub images: Arc<ImageStore>,
    pub containers: Arc<Containers>,
    pub networks: Arc<barge_network::Networks>,
    /// `--data-root`.
    pub data_root: PathBuf,
}

impl Prepared {
    /// The engine's stores (see [`Engine`]).
    pub fn engine(&self) -> Engine {
        Engine {
            images: self.state.images.clone(),
            containers: self.state.containers.clone(),
            networks: self.state.networks.clone(),
            data_root: self.state.data_root.clone(),
        }
    }

    /// Serves the Docker Engine API on every `-H` socket until `shutdown` resolves (or a
    /// listener fails), then removes the sockets and the pidfile and releases the networks.
    /// Must run inside a tokio runtime (e.g. [`runtime`]).
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
        let r = serve(self.args, self.state, self.event_rx, shutdown).await;
        drop(self.bridge_claim);
        r
    }
}

/// Opens the engine (image, network and container stores) from `args`, before any tokio
/// runtime exists: the daemon never forks after tokio starts.
pub fn prepare(args: DaemonArgs) -> Result<Prepared> {
    let self_exe = std::env::current_exe().context("finding the barge binary")?;
    let mut runtimes = BTreeMap::new();
    // The embedded runtime (youki's libcontainer): this binary, run as `barge runtime ...` by
    // the single-threaded monitor, never inside the daemon.
    runtimes.insert("barge".to_string(), self_exe.clone());
    let mut runtime_args = BTreeMap::new();
    runtime_args.insert("barge".to_string(), vec!["runtime".to_string()]);
    if let Some(runc) = find_in_path("runc") {
        runtimes.insert("runc".to_string(), runc);
    }
    for spec in &args.add_runtime {
        let (name, path) = spec
            .split_once('=')
            .with_context(|| format!("--add-runtime {spec:?}: expected NAME=PATH"))?;
        runtimes.insert(name.to_string(), PathBuf::from(path));
        runtime_args.remove(name);
    }
    if !runtimes.contains_key(&args.default_runtime) {
        bail!(
            "default runtime {:?} not found (the embedded one is \"barge\"; install runc, e.g. `apt-get install runc`, or pass --add-runtime NAME=PATH)",
            args.default_runtime
        );
    }
    let init_path = args.init_path.clone().unwrap_or_else(|| {
        self_exe
            .parent()
            .map(|d| d.join("barge-init"))
            .unwrap_or_else(|| PathBuf::from("barge-init"))
    });
    if !init_path.is_file() {
        tracing::warn!(path = %init_path.display(), "init binary not found; --init will fail");
    }

    barge_registry::install_crypto_provider();
    let registry = if args.config_file.exists() {
        barge_registry::RegistryConfig::from_file(&args.config_file).map_err(anyhow::Error::msg)?
    } else {
        barge_registry::RegistryConfig::default()
    };
    crate::api::images::set_registry_config(registry);

    std::fs::create_dir_all(&args.data_root)
        .with_context(|| format!("creating data root {}", args.data_root.display()))?;
    std::fs::create_dir_all(&args.exec_root)
        .with_context(|| format!("creating exec root {}", args.exec_root.display()))?;

    let images = Arc::new(
        ImageStore::open(&args.data_root.join("image")).context("opening the image store")?,
    );
    let mut net_cfg =
        barge_network::NetworkConfig::new(args.data_root.clone(), args.exec_root.clone());
    net_cfg.data_root = std::fs::canonicalize(&args.data_root)?;
    net_cfg.exec_root = std::fs::canonicalize(&args.exec_root)?;
    if let Some(bridge) = &args.bridge {
        if bridge.is_empty() || bridge.len() > 15 {
            bail!("invalid --bridge {bridge:?}: interface names have 1 to 15 characters");
        }
        net_cfg.bridge = bridge.clone();
    }
    let bridge_claim = barge_network::claim_bridge(&net_cfg.bridge)?;
    if let Some(bip) = &args.bip {
        net_cfg.bip = Some(
            bip.parse::<ipnet::Ipv4Net>()
                .with_context(|| format!("invalid --bip {bip}: want ADDRESS/PREFIX"))?,
        );
    }
    net_cfg.ipv6 = args.ipv6;
    if let Some(cidr) = &args.fixed_cidr_v6 {
        if !args.ipv6 {
            bail!("--fixed-cidr-v6 needs --ipv6");
        }
        net_cfg.fixed_cidr_v6 = Some(cidr.parse::<ipnet::Ipv6Net>().with_context(|| {
            format!("invalid --fixed-cidr-v6 {cidr}: want an IPv6 ADDRESS/PREFIX")
        })?);
    }
    for d in &args.dns {
        net_cfg.dns.push(
            d.parse()
                .with_context(|| format!("invalid --dns {d}: want an IP address"))?,
        );
    }
    net_cfg.pool = args.default_address_pool.parse().with_context(|| {
        format!(
            "invalid --default-address-pool {}",
            args.default_address_pool
        )
    })?;
    let networks = barge_network::Networks::open(net_cfg).context("opening the network store")?;
    let (event_tx, event_rx) = tokio::sync::mpsc::unbounded_channel::<ContainerEvent>();
    let containers = Containers::open(
        RuntimeConfig {
            data_root: args.data_root.clone(),
            exec_root: args.exec_root.clone(),
            self_exe,
            runtimes: runtimes.clone(),
            runtime_args: runtime_args.clone(),
            default_runtime: args.default_runtime.clone(),
            init_path,
            networks: Some(networks.clone()),
        },
        images.clone(),
        Box::new(move |e| {
            let _ = event_tx.send(e);
        }),
    )
    .context("opening the container store")?;

    let state = AppState(Arc::new(Inner {
        images,
        containers,
        networks,
        events: EventBus::new(),
        pending_attach: Mutex::new(HashMap::new()),
        data_root: args.data_root.clone(),
        runtimes,
        runtime_args,
        default_runtime: args.default_runtime.clone(),
    }));

    Ok(Prepared {
        args,
        state,
        event_rx,
        bridge_claim,
    })
}

async fn serve(
    args: DaemonArgs,
    state: AppState,
    event_rx: tokio::sync::mpsc::UnboundedReceiver<ContainerEvent>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let mut listeners = Vec::new();
    let mut paths = Vec::new();
    for host in &args.host {
        let path = socket_path(host)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        if path.exists() {
            if tokio::net::UnixStream::connect(&path).await.is_ok() {
                bail!("another daemon is already listening on {}", path.display());
            }
            std::fs::remove_file(&path)
                .with_context(|| format!("removing stale socket {}", path.display()))?;
        }
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("listening on {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
        if let Some(group) = &args.group {
            match nix::unistd::Group::from_name(group) {
                Ok(Some(g)) => nix::unistd::chown(&path, None, Some(g.gid))
                    .with_context(|| format!("chown {} to group {group}", path.display()))?,
                _ => tracing::warn!(group, "group not found; socket stays root-only"),
            }
        }
        tracing::info!(socket = %path.display(), "API listening");
        listeners.push(listener);
        paths.push(path);
    }
    if let Some(pidfile) = &args.pidfile {
        std::fs::write(pidfile, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", pidfile.display()))?;
    }

    let event_rx = Arc::new(tokio::sync::Mutex::new(event_rx));
    let pump_state = state.clone();
    supervise("event pump", move || {
        crate::api::containers::event_pump(pump_state.clone(), event_rx.clone())
    });

    let router = crate::api::router(state.clone());
    let app = tower::service_fn(move |req: Request| {
        let router = router.clone();
        async move { router.oneshot(strip_version(req)).await }
    });

    let shutdown = async {
        shutdown.await;
        tracing::info!("shutting down; containers keep running");
    };
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        let app = app.clone();
        tasks.spawn(async move {
            axum::serve(
                listener,
                axum::ServiceExt::<Request>::into_make_service(app),
            )
            .await
        });
    }
    tokio::select! {
        _ = shutdown => {},
        r = tasks.join_next() => {
            if let Some(Ok(Err(e))) = r { tracing::error!("server error: {e}"); }
        }
    }
    for path in paths {
        let _ = std::fs::remove_file(path);
    }
    // With no container left, nothing of barge's stays in the kernel (bridges, rules).
    let nets = state.networks.clone();
    let _ = tokio::task::spawn_blocking(move || nets.shutdown()).await;
    if let Some(pidfile) = &args.pidfile {
        let _ = std::fs::remove_file(pidfile);
    }
    Ok(())
}

/// Runs a long-lived background task made by `make`, restarting it (after a short pause, so a
/// task that panics at once cannot spin) whenever it panics; each panic is logged. Ends when
/// the task returns normally.
pub(crate) fn supervise<F, Fut>(name: &'static str, make: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            match tokio::spawn(make()).await {
                Ok(()) => return,
                Err(e) if e.is_panic() => {
                    tracing::error!(
                        task = name,
                        "background task panicked, restarting it: {}",
                        crate::panic_message(e)
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(_) => return,
            }
        }
    });
}

/// Docker clients call `/v1.47/containers/json`; the router knows `/containers/json`.
fn strip_version(mut req: Request) -> Request {
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix("/v") {
        if let Some(idx) = rest.find('/') {
            let version = &rest[..idx];
            if !version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.') {
                let ver = crate::api::ApiVersion(version.to_string());
                let new_path = rest[idx..].to_string();
                let pq = match req.uri().query() {
                    Some(q) => format!("{new_path}?{q}"),
                    None => new_path,
                };
                let mut parts = req.uri().clone().into_parts();
                if let Ok(p) = pq.parse() {
                    parts.path_and_query = Some(p);
                    if let Ok(uri) = Uri::from_parts(parts) {
                        *req.uri_mut() = uri;
                    }
                }
                // Handlers whose behaviour depends on the client's API version read it.
                req.extensions_mut().insert(ver);
            }
        }
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_background_task_is_restarted() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        rt.block_on(async move {
            supervise("test task", move || {
                let n = r.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 2 {
                        panic!("boom {n}");
                    }
                }
            });
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while runs.load(Ordering::SeqCst) < 3 && std::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            // Two panics, then a normal end: three runs, and no fourth.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            assert_eq!(runs.load(Ordering::SeqCst), 3);
        });
    }

    #[test]
    fn strips_api_version_prefix() {
        let req = Request::builder()
            .uri("/v1.47/containers/json?all=1")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(
            strip_version(req).uri().to_string(),
            "/containers/json?all=1"
        );
        let req = Request::builder()
            .uri("/_ping")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(strip_version(req).uri().to_string(), "/_ping");
        let req = Request::builder()
            .uri("/volumes/v1/x")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(strip_version(req).uri().to_string(), "/volumes/v1/x");
    }
}
