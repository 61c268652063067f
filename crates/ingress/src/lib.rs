//! barge's built-in Ingress controller (networking.k8s.io/v1), as ingress-nginx users expect
//! it: one job, a reverse proxy on this node's HTTP and HTTPS ports and its routing table.
//!
//! - [`routes`]: the routing table, built whole from the handled Ingresses, their Services'
//!   EndpointSlices and their TLS Secrets (host rules exact and `*.`, `Prefix`/`Exact`/
//!   `ImplementationSpecific` paths, longest match, `defaultBackend`), with the problems
//!   of each Ingress (a missing Service or Secret) that become Warning Events;
//! - [`proxy`]: the listeners (hyper HTTP/1.1; rustls on ring, certificates by SNI), routing
//!   each request with the current table, forwarding it with `X-Forwarded-*`, streaming
//!   bodies, passing `Upgrade` (WebSocket) through; 404/503/502/504 as ingress-nginx;
//! - [`workers`]: the proxy's worker threads (one per core, a single-threaded runtime and a
//!   [`pool`] of backend connections each), each serving whole client connections;
//! - [`controller`]: the IngressClass `barge` (the default class), the watch that rebuilds
//!   the table and swaps it in atomically after each burst of changes, and the Ingresses'
//!   `status.loadBalancer.ingress` (every Ready node's InternalIP: each node runs the proxy).
//!
//! Invariants: a table is never changed, only replaced whole, so a reload drops no connection
//! and no request sees half a table; the controller acts on the cluster only through the API
//! (IngressClass, Ingress status, Events); a bad Ingress affects only its own paths.

pub mod controller;
pub mod pool;
pub mod proxy;
pub mod routes;
pub mod workers;

use std::net::SocketAddr;
use std::sync::Arc;

/// Errors of starting the controller.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("TLS: {0}")]
    Tls(String),
    #[error("starting the proxy's worker threads: {0}")]
    Workers(std::io::Error),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Where the proxy listens.
#[derive(Debug, Clone)]
pub struct Config {
    /// The HTTP port (ingress-nginx: 80); 0: none.
    pub http_port: u16,
    /// The HTTPS port (ingress-nginx: 443); 0: none.
    pub https_port: u16,
}

/// Binds the listeners and runs the proxy and its controller until aborted. With both ports
/// 0 it returns at once (the controller is off).
pub async fn run(client: kube::Client, cfg: Config) -> Result<(), IngressError> {
    if cfg.http_port == 0 && cfg.https_port == 0 {
        return Ok(());
    }
    let proxy = proxy::Proxy::new()?;
    let bind = |port: u16| async move {
        let addr = SocketAddr::from(([0, 0, 0, 0], port));
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| IngressError::Bind { addr, source })
    };
    let workers = workers::Workers::start(workers::Workers::default_count(), "barge-ingress")
        .map(Arc::new)
        .map_err(IngressError::Workers)?;
    let mut tasks = Vec::new();
    if cfg.http_port != 0 {
        let l = bind(cfg.http_port).await?;
        let (p, w) = (proxy.clone(), workers.clone());
        tasks.push(tokio::spawn(proxy::serve_http(l, p, w)));
    }
    if cfg.https_port != 0 {
        let l = bind(cfg.https_port).await?;
        let (p, w) = (proxy.clone(), workers.clone());
        tasks.push(tokio::spawn(proxy::serve_https(l, p, w)));
    }
    tracing::info!(
        http = cfg.http_port,
        https = cfg.https_port,
        "ingress controller listening"
    );
    struct Abort(Vec<tokio::task::JoinHandle<()>>);
    impl Drop for Abort {
        fn drop(&mut self) {
            self.0.iter().for_each(|t| t.abort());
        }
    }
    let _tasks = Abort(tasks);
    controller::run(client, proxy).await;
    Ok(())
}
