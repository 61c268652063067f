//! A node's start-up, one home for `barge server` (its own node) and `barge agent` (a joined
//! one): the node agent (`barge-agent`) and the built-in Ingress controller (`barge-ingress`)
//! on this process's engine (opened by [`barge_daemon::prepare`]), as clients of the cluster's
//! API; and, when the process stops, the removal of the Service proxy's and the
//! NetworkPolicies' nftables tables (kube-proxy's `--cleanup`).

use std::future::Future;

use crate::args::NodeArgs;
use crate::join::ClusterSettings;

/// The certificates of the node agent's HTTPS endpoint (kubelet's `:10250`).
pub struct KubeletTls {
    /// Its serving certificate and key (signed by the server CA).
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    /// The CA of the client certificates it accepts (the API server's).
    pub client_ca_pem: String,
}

/// The node's name: `--node-name`, else the host name, lower-cased as kubelet does.
pub fn node_name(args: &NodeArgs) -> String {
    args.node_name
        .clone()
        .or_else(crate::host::hostname)
        .unwrap_or_else(|| "localhost".into())
        .to_lowercase()
}

/// Starts the node agent and the Ingress controller on `engine` with `client`, until `stop`
/// resolves (each gets its own copy of the stop future from `stop`).
pub fn start<S, F>(
    client: kube::Client,
    engine: &barge_daemon::Prepared,
    args: &NodeArgs,
    cluster: &ClusterSettings,
    tls: KubeletTls,
    stop: S,
) where
    S: Fn() -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let e = engine.engine();
    let cfg = barge_agent::Config {
        node_name: node_name(args),
        node_ip: args.node_ip,
        cluster_cidr: cluster.cluster_cidr,
        pod_cidr: None,
        backoff_base: args.pod_restart_backoff,
        version: env!("CARGO_PKG_VERSION").to_string(),
        kubelet_port: args.kubelet_port,
        stream_tls: Some(barge_agent::stream::StreamTls {
            cert_pem: tls.serving_cert_pem,
            key_pem: tls.serving_key_pem,
            client_ca_pem: tls.client_ca_pem,
        }),
        service_cidr: cluster.service_cidr,
        cluster_dns: cluster.cluster_dns,
        cluster_domain: cluster.cluster_domain.clone(),
        metrics_resolution: args.metrics_resolution,
        pod_network_backend: cluster.flannel_backend,
    };
    let engine = barge_agent::Engine {
        images: e.images,
        containers: e.containers,
        networks: e.networks,
        data_root: e.data_root,
    };
    // The built-in Ingress controller on this node's ports 80/443.
    let ingress = barge_ingress::Config {
        http_port: args.ingress_http_port,
        https_port: args.ingress_https_port,
    };
    let (c, halt) = (client.clone(), stop());
    tokio::spawn(async move {
        tokio::select! {
            r = barge_ingress::run(c, ingress) => if let Err(e) = r {
                tracing::error!("ingress controller not started: {e}");
            },
            _ = halt => {}
        }
    });
    tokio::spawn(barge_agent::run(client, engine, cfg, stop()));
}

/// The node's nftables tables (Service proxy, NetworkPolicies) of `engine`, to remove with
/// [`remove_tables`] when the process stops.
pub fn tables(engine: &barge_daemon::Prepared) -> Vec<String> {
    let n = &engine.engine().networks;
    vec![n.proxy_table(), n.netpol_table()]
}

/// Deletes the node's nftables tables (kube-proxy's `--cleanup`): pods left running are no
/// longer proxied nor isolated.
pub fn remove_tables(tables: &[String]) {
    for table in tables {
        if let Err(e) = barge_network::kubeproxy::delete_table(table) {
            tracing::warn!(%table, "removing the node's nftables table: {e}");
        }
    }
}

/// The reserved node ports for LoadBalancer Services (the Ingress proxy's).
pub fn ingress_ports(args: &NodeArgs) -> Vec<u16> {
    [args.ingress_http_port, args.ingress_https_port]
        .into_iter()
        .filter(|p| *p != 0)
        .collect()
}
