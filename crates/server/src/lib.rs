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
//! Invariants:
//! - Secrets (keys, the token, the kubeconfig by default) are written `0600`, atomically.
//! - A restart reuses the CAs, so kubeconfigs written earlier keep working.
//! - `/readyz` answers 200 as soon as the port is bound (well under a second: see
//!   `scripts/bench-server.sh`).

pub mod args;
pub mod auth;
pub mod host;
pub mod https;
pub mod kubeconfig;
pub mod kubelet;
pub mod pki;
pub mod token;

use std::net::IpAddr;
use std::time::Instant;

use anyhow::{Context, Result};

pub use args::ServerArgs;

/// Runs `barge server` with `args` (the arguments after `server`); returns the exit code.
pub fn main(args: &[String]) -> i32 {
    use clap::Parser;
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

/// A Kubernetes client for the in-process controllers, from the admin kubeconfig.
async fn controller_client(kubeconfig: &str) -> Result<kube::Client> {
    // kube's TLS uses the process's rustls provider: ring, as everywhere in barge.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc =
        kube::config::Kubeconfig::from_yaml(kubeconfig).context("parsing the admin kubeconfig")?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .context("loading the admin kubeconfig")?;
    kube::Client::try_from(config).context("building the controllers' client")
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
    let pki = pki::ensure(&args.data_dir.join("tls"), &sans).context("certificates")?;
    let sa_key = service_account_key(&args.data_dir.join("tls").join("service-account.key"))?;
    let token = token::resolve(
        args.token.as_deref(),
        args.token_file.as_deref(),
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
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("listening on {addr} (--bind-address, --https-listen-port)"))?;
    listener.set_nonblocking(true)?;
    if args.disable_agent {
        if let Some(p) = &args.engine.pidfile {
            std::fs::write(p, format!("{}\n", std::process::id()))
                .with_context(|| format!("writing {}", p.display()))?;
        }
    }

    // kubelet lower-cases the host name it registers as.
    let node_name = args
        .node_name
        .clone()
        .or_else(host::hostname)
        .unwrap_or_else(|| "localhost".into())
        .to_lowercase();

    // The address the `kubernetes` Service's endpoints name: --advertise-address, else
    // --node-ip, else the host's first IPv4 address, else the bind address.
    let api_address = args
        .advertise_address
        .or(args.node_ip)
        .or_else(|| host_addrs.iter().find(|a| a.is_ipv4()).copied())
        .unwrap_or(args.bind_address);
    let cluster_dns = match args.cluster_dns {
        Some(ip) => ip,
        None => barge_apiserver::service_ip(&args.service_cidr.to_string(), 10)
            .context("--service-cidr is too small for the cluster DNS address (its 10th)")?,
    };
    let proxy_table = engine.as_ref().map(|e| e.engine().networks.proxy_table());

    // 3. One runtime for both APIs.
    let rt = barge_daemon::runtime()?;
    let r = rt.block_on(async move {
        // The datastore: SQLite in the data dir, or etcd (`--datastore-endpoint`).
        let store = barge_datastore::open(&args.datastore_endpoint, &args.data_dir)
            .await
            .context("opening the datastore (--datastore-endpoint)")?;
        let api = barge_apiserver::ApiServer::new(
            store,
            barge_apiserver::Config {
                service_cidr: args.service_cidr.to_string(),
                cluster_cidr: args.cluster_cidr.to_string(),
                service_account_key: Some(sa_key),
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
        let router = api.router();
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tracing::info!(
            %addr,
            kubeconfig = %args.write_kubeconfig.display(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Kubernetes API server listening"
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            barge_daemon::shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        // The controllers (kube-controller-manager's part), as a client of this API with the
        // admin credentials, started once the listener is bound.
        match controller_client(&kc).await {
            Ok(client) => {
                let config = barge_controllers::Config {
                    root_ca_pem: pki.server_ca_pem.clone(),
                    // The local-path provisioner's volumes live beside this node's engine.
                    local_path_dir: engine
                        .as_ref()
                        .map(|e| e.engine().data_root.join("storage")),
                    node_monitor_grace_period: Some(args.node_monitor_grace_period),
                };
                tokio::spawn(barge_controllers::run(
                    client.clone(),
                    config,
                    stopped(stop_rx.clone()),
                ));
                // The scheduler (kube-scheduler's part), leading through its Lease.
                tokio::spawn(barge_scheduler::run(client, stopped(stop_rx.clone())));
            }
            Err(e) => tracing::warn!("controllers not started: {e:#}"),
        }
        // The node agent (kubelet's part) on this node's engine, as a client of this API.
        if let Some(engine) = &engine {
            match controller_client(&kc).await {
                Ok(client) => {
                    let e = engine.engine();
                    let cfg = barge_agent::Config {
                        node_name: node_name.clone(),
                        node_ip: args.node_ip,
                        cluster_cidr: args.cluster_cidr,
                        backoff_base: args.pod_restart_backoff,
                        version: env!("CARGO_PKG_VERSION").to_string(),
                        kubelet_port: args.kubelet_port,
                        stream_tls: Some(barge_agent::stream::StreamTls {
                            cert_pem: pki.kubelet_serving_cert_pem.clone(),
                            key_pem: pki.kubelet_serving_key_pem.clone(),
                            client_ca_pem: pki.client_ca_pem.clone(),
                        }),
                        service_cidr: args.service_cidr,
                        cluster_dns,
                        cluster_domain: args.cluster_domain.clone(),
                    };
                    let engine = barge_agent::Engine {
                        images: e.images,
                        containers: e.containers,
                        networks: e.networks,
                        data_root: e.data_root,
                    };
                    tokio::spawn(barge_agent::run(
                        client,
                        engine,
                        cfg,
                        stopped(stop_rx.clone()),
                    ));
                }
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
        tokio::try_join!(api, engine).map(|_| ())
    });
    if args.disable_agent {
        if let Some(p) = &args.engine.pidfile {
            let _ = std::fs::remove_file(p);
        }
    }
    // The Service proxy's rules go with the server (kube-proxy's `--cleanup`).
    if let Some(table) = proxy_table {
        if let Err(e) = barge_network::kubeproxy::delete_table(&table) {
            tracing::warn!(%table, "removing the service proxy's table: {e}");
        }
    }
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
