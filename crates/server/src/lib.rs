//! `barge server`: the cluster server, k3s-style — the Kubernetes API server
//! (`barge-apiserver`'s router over a `barge-datastore` store) behind HTTPS, and, unless
//! `--disable-agent`, this node's engine serving the Docker Engine API on `-H` exactly as
//! `barge daemon` does, in one process.
//!
//! Start-up, in order:
//! 1. the engine is opened ([`barge_daemon::prepare`]) — before tokio starts, since the
//!    daemon never forks after that;
//! 2. the certificates ([`pki`], `DATA-DIR/tls`), the join token ([`token`],
//!    `DATA-DIR/token`) and the admin kubeconfig ([`kubeconfig`], `--write-kubeconfig`) are
//!    made or reused; the datastore is opened and the HTTPS port bound;
//! 3. one tokio runtime serves both until SIGINT/SIGTERM ([`https`] authenticates each
//!    request with [`auth`]), and runs the controllers and, unless `--disable-agent`, the
//!    node agent (`barge-agent`) on the engine of step 1 — both clients of this API with the
//!    admin kubeconfig.
//!
//! `barge agent` ([`agent`]) is the same node start ([`node`]) on another machine, joined to
//! a server's cluster with the token ([`join`]), its client behind a local load balancer
//! over the servers ([`lb`]).
//!
//! Invariants:
//! - Secrets (keys, the token, the kubeconfig by default) are written `0600`, atomically.
//! - A restart reuses the CAs, so kubeconfigs written earlier keep working.
//! - `/readyz` answers 200 as soon as the port is bound (well under a second: see
//!   `scripts/bench-server.sh`).

pub mod agent;
pub mod args;
pub mod auth;
pub mod host;
pub mod https;
pub mod join;
pub mod kubeconfig;
pub mod kubelet;
pub mod lb;
pub mod node;
pub mod pki;
pub mod token;

use std::net::IpAddr;
use std::time::Instant;

use anyhow::{Context, Result};

pub use args::ServerArgs;

/// Runs `barge server` with `args` (the arguments after `server`); returns the exit code.
pub fn main(args: &[String]) -> i32 {
    use clap::Parser;
    if args.first().map(String::as_str) == Some("backup") {
        return backup_main(&args[1..]);
    }
    let parsed = match ServerArgs::try_parse_from(
        std::iter::once("barge server".to_string()).chain(args.iter().cloned()),
    ) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 125 } else { 0 };
        }
    };
    match run(parsed) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("barge server: {e:#}");
            1
        }
    }
}

/// `barge server backup [--data-dir D] FILE`: an online copy of the SQLite datastore.
fn backup_main(args: &[String]) -> i32 {
    use clap::Parser;
    let parsed = match args::BackupArgs::try_parse_from(
        std::iter::once("barge server backup".to_string()).chain(args.iter().cloned()),
    ) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 125 } else { 0 };
        }
    };
    let db = barge_datastore::ops::sqlite_path(&parsed.data_dir);
    match barge_datastore::ops::backup_sqlite(&db, &parsed.file) {
        Ok(r) => {
            println!(
                "backed up {} keys at revision {} to {}",
                r.keys,
                r.revision,
                parsed.file.display()
            );
            0
        }
        Err(e) => {
            eprintln!("barge server backup: {e}");
            1
        }
    }
}

/// `--cluster-reset`, then the process exits (k3s's flow: start again without the flags):
/// with `--cluster-reset-restore-path FILE`, restores the SQLite datastore of the data dir;
/// on etcd (`--datastore-endpoint`, restored beforehand with `etcdctl snapshot restore`),
/// moves the revisions ahead and compacts below them
/// ([`barge_datastore::EtcdStore::reset_after_restore`]) so clients relist.
fn cluster_reset(args: &ServerArgs) -> Result<()> {
    let endpoint = args.datastore_endpoint.trim();
    if !endpoint.is_empty() {
        if args.cluster_reset_restore_path.is_some() {
            anyhow::bail!(
                "--cluster-reset-restore-path restores the embedded SQLite datastore; an etcd \
                 is restored with `etcdctl snapshot restore`, then `barge server --cluster-reset \
                 --datastore-endpoint …` (docs/operations.md)"
            );
        }
        let endpoints = barge_datastore::etcd_endpoints(endpoint)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let r = rt.block_on(async {
            let store = barge_datastore::EtcdStore::connect(&endpoints).await?;
            store.reset_after_restore().await
        })?;
        println!(
            "reset the datastore at {endpoint} after its restore (restored revision {}, \
             datastore revision now {}; older ones compacted, clients relist); start the \
             server again without --cluster-reset",
            r.restored_revision, r.revision
        );
        return Ok(());
    }
    let Some(backup) = args.cluster_reset_restore_path.as_deref() else {
        anyhow::bail!(
            "--cluster-reset on the embedded SQLite datastore needs \
             --cluster-reset-restore-path FILE (a backup written by `barge server backup`)"
        );
    };
    let r = barge_datastore::ops::restore_sqlite(backup, &args.data_dir)
        .with_context(|| format!("restoring {}", backup.display()))?;
    println!(
        "restored {} keys from {} (backup revision {}, datastore revision now {}{}); \
         start the server again without --cluster-reset",
        r.keys,
        backup.display(),
        r.backup_revision,
        r.revision,
        r.previous
            .as_ref()
            .map(|p| format!(", previous datastore kept as {}", p.display()))
            .unwrap_or_default()
    );
    Ok(())
}

/// Joins the cluster of `server` ([`join::ensure_joined`]), retrying every 2 s for up to
/// 2 minutes while the server cannot be reached; a refusal (wrong token, another CA) is final.
fn join_with_retry(
    server: &str,
    token: &token::JoinToken,
    tls_dir: &std::path::Path,
) -> Result<()> {
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    loop {
        match join::ensure_joined(server, token, tls_dir) {
            Ok(()) => return Ok(()),
            Err(e) => {
                let unreachable = e
                    .chain()
                    .any(|c| c.downcast_ref::<std::io::Error>().is_some())
                    && !e.to_string().contains("refused the join token");
                if !unreachable || Instant::now() > deadline {
                    return Err(e.context(format!("joining the cluster of --server {server}")));
                }
                eprintln!("barge server: --server {server} unreachable, retrying in 2s: {e:#}");
                std::thread::sleep(std::time::Duration::from_secs(2));
            }
        }
    }
}

/// How long `barge server` waits between two attempts to reach its datastore.
const DATASTORE_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens the datastore, retrying every [`DATASTORE_RETRY`] while it cannot be reached (each
/// failure logged with its cause) until it can or the process is asked to stop (`None`).
async fn open_datastore(
    args: &ServerArgs,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Option<std::sync::Arc<dyn barge_datastore::Store>>> {
    loop {
        match barge_datastore::open(&args.datastore_endpoint, &args.data_dir).await {
            Ok(s) => return Ok(Some(s)),
            // SQLite's failures (a held lock, a bad file) do not get better by waiting.
            Err(e) if args.datastore_endpoint.trim().is_empty() => {
                return Err(e).context("opening the datastore");
            }
            Err(e) => {
                tracing::error!(
                    endpoint = %args.datastore_endpoint,
                    "datastore unreachable, retrying in {}s: {e}",
                    DATASTORE_RETRY.as_secs()
                );
                eprintln!(
                    "barge server: datastore {} unreachable, retrying in {}s: {e}",
                    args.datastore_endpoint,
                    DATASTORE_RETRY.as_secs()
                );
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(DATASTORE_RETRY) => {}
            _ = stop.wait_for(|s| *s) => return Ok(None),
        }
    }
}

/// `--migrate-from-sqlite`: copies the data dir's SQLite store into `dst` (empty), then renames
/// the SQLite file so a second start does not copy it again.
async fn migrate_from_sqlite(args: &ServerArgs, dst: &dyn barge_datastore::Store) -> Result<()> {
    let db = barge_datastore::ops::sqlite_path(&args.data_dir);
    if !db.exists() {
        anyhow::bail!(
            "--migrate-from-sqlite: no SQLite datastore at {} (already migrated?)",
            db.display()
        );
    }
    let dir = db
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let lock =
        tokio::task::spawn_blocking(move || barge_datastore::ops::lock_db_dir(&dir)).await??;
    let src = barge_datastore::SqliteStore::open(&db).await?;
    let r = barge_datastore::ops::copy_store(&src, dst)
        .await
        .context("--migrate-from-sqlite")?;
    drop(src);
    let mut done = db.clone().into_os_string();
    done.push(".migrated");
    std::fs::rename(&db, &done).with_context(|| format!("renaming {}", db.display()))?;
    let wal = db.with_file_name("state.db-wal");
    if wal.exists() {
        let mut w = done.clone();
        w.push("-wal");
        std::fs::rename(&wal, w)?;
    }
    let _ = std::fs::remove_file(db.with_file_name("state.db-shm"));
    drop(lock);
    tracing::info!(
        keys = r.keys,
        sqlite_revision = r.revision,
        "migrated the SQLite datastore into etcd; the SQLite file is now {}",
        std::path::Path::new(&done).display()
    );
    Ok(())
}

/// The key ServiceAccount tokens are signed with (PKCS#8 P-256), made on first start (mode
/// 0600) and reused after.
fn service_account_key(path: &std::path::Path) -> Result<Vec<u8>> {
    if let Ok(key) = std::fs::read(path) {
        return Ok(key);
    }
    let key = barge_apiserver::tokens::TokenIssuer::generate_key()
        .map_err(|e| anyhow::anyhow!("making the service account key: {e}"))?;
    barge_stdx::fs::write_atomic_mode(path, &key, 0o600)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(key)
}

/// A Kubernetes client from a kubeconfig's text (the admin's for the in-process controllers,
/// the node's for `barge agent`) that introduces itself as `component` (`kube-controller-manager`,
/// `kube-scheduler`, `kubelet`): kube-apiserver names the field manager of a request without
/// `fieldManager` after its User-Agent's product, so `managedFields` shows the component as on
/// Kubernetes instead of `unknown`.
async fn controller_client(kubeconfig: &str, component: &str) -> Result<kube::Client> {
    // kube's TLS uses the process's rustls provider: ring, as everywhere in barge.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc =
        kube::config::Kubeconfig::from_yaml(kubeconfig).context("parsing the admin kubeconfig")?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .context("loading the kubeconfig")?;
    // client-go's default User-Agent shape: `<component>/<version> (<os>/<arch>) kubernetes/<commit>`.
    let agent = format!(
        "{component}/v{} ({}/{}) kubernetes/barge",
        barge_apiserver::KUBE_VERSION.trim_start_matches('v'),
        std::env::consts::OS,
        barge_apiserver::go_arch()
    );
    config.headers.push((
        hyper::header::USER_AGENT,
        hyper::header::HeaderValue::from_str(&agent).context("the User-Agent header")?,
    ));
    kube::Client::try_from(config).context("building the Kubernetes client")
}

/// The first usable address of `net` (the `kubernetes` Service's ClusterIP: 10.43.0.1 for
/// 10.43.0.0/16).
pub fn first_service_ip(net: &ipnet::IpNet) -> IpAddr {
    match net.trunc() {
        ipnet::IpNet::V4(n) => IpAddr::from(u32::from(n.network()).wrapping_add(1).to_be_bytes()),
        ipnet::IpNet::V6(n) => IpAddr::from(u128::from(n.network()).wrapping_add(1).to_be_bytes()),
    }
}

/// Runs the server until SIGINT/SIGTERM.
pub fn run(args: ServerArgs) -> Result<()> {
    let started = Instant::now();
    barge_daemon::init_tracing(&args.engine.log_level);
    if args.cluster_reset {
        return cluster_reset(&args);
    }
    if args.migrate_from_sqlite && args.datastore_endpoint.trim().is_empty() {
        anyhow::bail!("--migrate-from-sqlite needs --datastore-endpoint (the etcd to fill)");
    }

    // 1. The engine, before any tokio runtime (it may spawn engine threads; never a fork
    //    after tokio starts).
    let engine = if args.disable_agent {
        None
    } else {
        Some(barge_daemon::prepare(args.engine.clone()).context("starting the engine")?)
    };

    // 2. State on disk: certificates, token, kubeconfig.
    let fresh = !args.data_dir.exists();
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    if fresh {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&args.data_dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let host_addrs = host::addresses();
    let mut extra = args.tls_san.clone();
    if let Some(a) = args.advertise_address {
        extra.push(a.to_string());
    }
    let sans = pki::Sans::wanted(
        first_service_ip(&args.service_cidr),
        host::hostname().as_deref(),
        &host_addrs,
        &extra,
    )?;
    if let Some(server) = &args.server {
        if args.datastore_endpoint.trim().is_empty() {
            anyhow::bail!(
                "--server joins a cluster whose servers share an etcd: give --datastore-endpoint too"
            );
        }
        let token = args
            .join
            .given()?
            .context("--server needs the cluster's join token (--token or --token-file)")?;
        join_with_retry(server, &token, &args.data_dir.join("tls"))?;
    }
    let pki = pki::ensure(&args.data_dir.join("tls"), &sans).context("certificates")?;
    let sa_key = service_account_key(&args.data_dir.join("tls").join("service-account.key"))?;
    let token = token::resolve(
        args.join.token.as_deref(),
        args.join.token_file.as_deref(),
        &args.data_dir,
        &pki.server_ca_pem,
    )?;
    let url = kubeconfig::local_server_url(args.bind_address, args.https_listen_port);
    let kc = kubeconfig::render(
        &url,
        &pki.server_ca_pem,
        &pki.admin_cert_pem,
        &pki.admin_key_pem,
    );
    if let Some(dir) = args.write_kubeconfig.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    barge_stdx::fs::write_atomic_mode(
        &args.write_kubeconfig,
        kc.as_bytes(),
        args.write_kubeconfig_mode,
    )
    .with_context(|| format!("writing the kubeconfig {}", args.write_kubeconfig.display()))?;
    let tls = https::server_config(&pki)?;

    let addr = std::net::SocketAddr::new(args.bind_address, args.https_listen_port);

    // The address the `kubernetes` Service's endpoints name: --advertise-address, else
    // --node-ip, else the host's first IPv4 address, else the bind address.
    let api_address = args
        .advertise_address
        .or(args.node.node_ip)
        .or_else(|| host_addrs.iter().find(|a| a.is_ipv4()).copied())
        .unwrap_or(args.bind_address);
    let cluster_dns = match args.cluster_dns {
        Some(ip) => ip,
        None => barge_apiserver::service_ip(&args.service_cidr.to_string(), 10)
            .context("--service-cidr is too small for the cluster DNS address (its 10th)")?,
    };
    let node_tables = engine.as_ref().map(node::tables).unwrap_or_default();
    let settings = join::ClusterSettings {
        cluster_cidr: args.cluster_cidr,
        service_cidr: args.service_cidr,
        cluster_dns,
        cluster_domain: args.cluster_domain.clone(),
        flannel_backend: args.flannel_backend,
    };

    // 3. One runtime for both APIs.
    let rt = barge_daemon::runtime()?;
    // Written by this process only with --disable-agent (the engine writes its own).
    let own_pidfile = args.engine.pidfile.clone().filter(|_| args.disable_agent);
    let r = rt.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            barge_daemon::shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        // The datastore: SQLite in the data dir, or etcd (`--datastore-endpoint`), retried
        // while etcd cannot be reached — before the port is bound, so no client ever meets a
        // half-started server.
        let Some(store) = open_datastore(&args, stop_rx.clone()).await? else {
            return Ok(());
        };
        if args.migrate_from_sqlite {
            migrate_from_sqlite(&args, store.as_ref()).await?;
        }
        let listener = std::net::TcpListener::bind(addr).with_context(|| {
            format!("listening on {addr} (--bind-address, --https-listen-port)")
        })?;
        listener.set_nonblocking(true)?;
        if args.disable_agent {
            if let Some(p) = &args.engine.pidfile {
                std::fs::write(p, format!("{}\n", std::process::id()))
                    .with_context(|| format!("writing {}", p.display()))?;
            }
        }
        let api = barge_apiserver::ApiServer::new(
            store,
            barge_apiserver::Config {
                service_cidr: args.service_cidr.to_string(),
                cluster_cidr: args.cluster_cidr.to_string(),
                service_account_key: Some(sa_key),
                default_toleration_seconds:
                    barge_apiserver::admission::tolerations::DefaultTolerations {
                        not_ready: args.default_not_ready_toleration_seconds,
                        unreachable: args.default_unreachable_toleration_seconds,
                    },
            },
        );
        let api = api.with_node_dialer(std::sync::Arc::new(kubelet::KubeletDialer::new(&pki)?));
        // default, kube-system, kube-public and kube-node-lease.
        api.bootstrap()
            .await
            .map_err(|e| anyhow::anyhow!("creating the system namespaces: {e:?}"))?;
        // The `kubernetes` Service (pointing at this server) and `kube-dns`.
        let advertised = std::net::SocketAddr::new(api_address, args.https_listen_port);
        if let Err(e) = api
            .ensure_default_services(advertised, Some(cluster_dns))
            .await
        {
            tracing::warn!("creating the kubernetes and kube-dns Services: {e:?}");
        }
        // The `kubernetes` endpoints list every live server (kube's lease reconciler); this
        // server leaves them when it stops.
        let reconciler = {
            let (api, mut stop) = (api.clone(), stop_rx.clone());
            tokio::spawn(async move {
                loop {
                    if let Err(e) = api.reconcile_api_endpoints(advertised, true).await {
                        tracing::debug!("kubernetes endpoints: {e:?}");
                    }
                    let interval = barge_apiserver::ENDPOINT_RECONCILE_INTERVAL;
                    tokio::select! {
                        _ = tokio::time::sleep(interval) => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                }
                if let Err(e) = api.reconcile_api_endpoints(advertised, false).await {
                    tracing::debug!("kubernetes endpoints at stop: {e:?}");
                }
            })
        };
        let router = join::routes(
            args.data_dir.join("tls"),
            pki.server_ca_pem.clone(),
            settings.clone(),
        )
        .merge(api.router());
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tracing::info!(
            %addr,
            kubeconfig = %args.write_kubeconfig.display(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Kubernetes API server listening"
        );
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        // The controllers (kube-controller-manager's part), as a client of this API with the
        // admin credentials, started once the listener is bound.
        match controller_client(&kc, "kube-controller-manager").await {
            Ok(client) => {
                let config = barge_controllers::Config {
                    root_ca_pem: pki.server_ca_pem.clone(),
                    // The local-path provisioner's volumes live beside this node's engine.
                    local_path_dir: engine
                        .as_ref()
                        .map(|e| e.engine().data_root.join("storage")),
                    node_monitor_grace_period: Some(args.node_monitor_grace_period),
                    hpa: barge_controllers::hpa::HpaConfig {
                        sync_period: args.hpa_sync_period,
                        downscale_stabilization: args.hpa_downscale_stabilization,
                        tolerance: args.hpa_tolerance,
                        ..Default::default()
                    },
                    // LoadBalancer Services may not take the Ingress proxy's ports.
                    reserved_node_ports: if args.disable_agent {
                        Vec::new()
                    } else {
                        node::ingress_ports(&args.node)
                    },
                    // Node IPAM (`--allocate-node-cidrs`): each Node's podCIDR.
                    cluster_cidr: Some(args.cluster_cidr),
                };
                tokio::spawn(barge_controllers::run(
                    client.clone(),
                    config,
                    stopped(stop_rx.clone()),
                ));
                // The scheduler (kube-scheduler's part), leading through its Lease.
                match controller_client(&kc, "kube-scheduler").await {
                    Ok(client) => {
                        tokio::spawn(barge_scheduler::run(client, stopped(stop_rx.clone())));
                    }
                    Err(e) => tracing::warn!("scheduler not started: {e:#}"),
                }
            }
            Err(e) => tracing::warn!("controllers not started: {e:#}"),
        }
        // The node agent (kubelet's part) on this node's engine, as a client of this API.
        if let Some(engine) = &engine {
            match controller_client(&kc, "kubelet").await {
                Ok(client) => node::start(
                    client,
                    engine,
                    &args.node,
                    &settings,
                    node::KubeletTls {
                        serving_cert_pem: pki.kubelet_serving_cert_pem.clone(),
                        serving_key_pem: pki.kubelet_serving_key_pem.clone(),
                        client_ca_pem: pki.client_ca_pem.clone(),
                    },
                    || stopped(stop_rx.clone()),
                ),
                Err(e) => tracing::warn!("node agent not started: {e:#}"),
            }
        }
        let api = https::serve(listener, tls, router, token, stopped(stop_rx.clone()));
        let engine = async {
            match engine {
                Some(e) => e.serve(stopped(stop_rx.clone())).await,
                None => Ok(()),
            }
        };
        let r = tokio::try_join!(api, engine).map(|_| ());
        // Its lease out of the `kubernetes` endpoints before the process ends.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), reconciler).await;
        r
    });
    // Engine calls still in flight (a pod's stop waiting out its grace period) are abandoned
    // after a moment, as k3s leaves its pods to the next start.
    barge_daemon::end_runtime(rt);
    if let Some(p) = &own_pidfile {
        let _ = std::fs::remove_file(p);
    }
    // The Service proxy's and the NetworkPolicies' rules go with the server.
    node::remove_tables(&node_tables);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_service_ip_of_each_family() {
        let f = |s: &str| first_service_ip(&s.parse().unwrap()).to_string();
        assert_eq!(f("10.43.0.0/16"), "10.43.0.1");
        assert_eq!(f("10.43.7.9/16"), "10.43.0.1");
        assert_eq!(f("fd00:43::/112"), "fd00:43::1");
    }
}
