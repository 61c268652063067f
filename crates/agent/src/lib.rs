//! barge's node agent: what kubelet does, on barge's own engine crates in-process.
//!
//! `barge server` runs one (unless `--disable-agent`) on the engine it serves the Docker Engine
//! API with, so one command is a one-node cluster:
//! - [`node`]: registers the Node (capacity, allocatable, addresses, nodeInfo, conditions;
//!   its podCIDR is the node IPAM controller's to assign, and waited for), renews its Lease in `kube-node-lease` every 10 s and patches its status as
//!   kubelet does (on change, else every 5 min);
//! - [`pods`]: one worker per pod bound to this node (`spec.nodeName`): its sandbox (a network
//!   namespace on the pod network, made by `barge-network` without any container — no pause
//!   container), its containers (engine containers of network mode `sandbox:<key>`, each with
//!   its own monitor process, labelled with the pod's namespace, name, uid, container name and
//!   restart count), restarts with kubelet's back-off, status written to the `status`
//!   subresource ([`status`] computes it), graceful deletion;
//! - [`probes`]: readiness and liveness probes (exec, httpGet, tcpSocket) feeding `Ready`
//!   and restarts;
//! - [`images`]: kubelet's image manager (pull policy, pulls through `barge-registry`,
//!   `imagePullSecrets`, `ErrImagePull`/`ImagePullBackOff`);
//! - [`security`]: `securityContext` onto the engine's container options;
//! - [`volumes`]: emptyDir, configMap, secret, downwardAPI, projected (with ServiceAccount
//!   tokens from the API server's TokenRequest), hostPath and persistentVolumeClaim volumes as
//!   bind mounts (`subPath`, `readOnly`);
//! - [`events`]: kubelet's events (Pulled, Created, Started, Killing, BackOff, Unhealthy, Failed);
//! - [`env`]: a container's environment (`env`, `valueFrom`, `envFrom`, `$(VAR)` expansion);
//! - [`podnet`]: the pod network between nodes (flannel's daemon: host-gw routes or VXLAN,
//!   from the watched Nodes' podCIDRs, addresses and flannel annotations);
//! - [`netpol`]: NetworkPolicy enforcement for this node's pods (nftables, incremental);
//! - [`proxy`]: the Service proxy (kube-proxy's nftables mode) over the watched Services and
//!   EndpointSlices; [`dns`]: cluster DNS (CoreDNS's `kubernetes` plugin) and pods'
//!   resolv.conf.
//!
//! Invariants:
//! - The engine's records are the truth: the agent keeps no state on disk; after a restart it
//!   finds its pods' containers and sandboxes by their labels and keys and adopts them, so a
//!   running container is never restarted because the agent restarted.
//! - Engine calls block, so they run on tokio's blocking pool (`spawn_blocking`), never on a
//!   worker thread; the engine forks only through its monitor processes.
//! - The agent acts on the cluster only through the Kubernetes API (kube-rs), as kubelet does:
//!   pod status through the `status` subresource, the final pod deletion with
//!   `gracePeriodSeconds=0` and a uid precondition.

pub mod dns;
pub mod env;
pub mod events;
pub mod healthcheck;
pub mod holder;
pub mod images;
pub mod metrics;
pub mod netpol;
pub mod node;
pub mod podnet;
pub mod pods;
pub mod probes;
pub mod proxy;
pub mod security;
pub mod status;
pub mod stream;
mod time;
pub mod volumes;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The engine the agent runs pods on: the stores `barge_daemon::prepare` opened (the same
/// instances the Docker Engine API serves).
#[derive(Clone)]
pub struct Engine {
    pub images: Arc<barge_image::ImageStore>,
    pub containers: Arc<barge_container::Containers>,
    pub networks: Arc<barge_network::Networks>,
    /// The engine's `--data-root` (ephemeral-storage capacity is its file system's).
    pub data_root: PathBuf,
}

/// The agent's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Node's name (`--node-name`, default the host name), lower-cased as kubelet does.
    pub node_name: String,
    /// The node's InternalIP (`--node-ip`), else the address of the default route's interface.
    pub node_ip: Option<std::net::IpAddr>,
    /// The cluster's pod network (`--cluster-cidr`; the Service proxy's "from a pod" match).
    pub cluster_cidr: ipnet::IpNet,
    /// This node's podCIDR: `None` until [`run`] reads it from the Node's `spec.podCIDR`,
    /// which the node IPAM controller (`barge_controllers::nodeipam`) assigns.
    pub pod_cidr: Option<ipnet::IpNet>,
    /// The first restart back-off (kubelet: 10 s, doubling up to [`MAX_BACKOFF`]).
    pub backoff_base: Duration,
    /// barge's version (nodeInfo's `containerRuntimeVersion` is `barge://<version>`).
    pub version: String,
    /// The port of the kubelet-like HTTPS endpoint ([`stream`]; kubelet's 10250), reported as
    /// `status.daemonEndpoints.kubeletEndpoint.Port`.
    pub kubelet_port: u16,
    /// Its certificates; `None`: no endpoint (logs, exec, attach and port-forward fail).
    pub stream_tls: Option<stream::StreamTls>,
    /// The ClusterIPs' range (`--service-cidr`).
    pub service_cidr: ipnet::IpNet,
    /// The cluster DNS address pods are given (`--cluster-dns`, the `kube-dns` Service's).
    pub cluster_dns: std::net::Ipv4Addr,
    /// The cluster domain (`--cluster-domain`, `cluster.local`).
    pub cluster_domain: String,
    /// How often the pods' cgroups are sampled for `/stats/summary` ([`metrics`];
    /// cAdvisor's housekeeping interval, 10 s): CPU usage is the rate over this window.
    pub metrics_resolution: Duration,
    /// How pods reach pods on other nodes (`--flannel-backend`, k3s's name: `vxlan` by
    /// default, `host-gw`, `none`; [`podnet`]).
    pub pod_network_backend: barge_network::podnet::Backend,
}

/// The longest restart back-off (kubelet's `MaxContainerBackOff`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// kubelet's back-off is forgotten once a container ran this long.
pub const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// Errors of the agent's API and engine calls (each is retried on the next sync).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{what}: {source}")]
    Api { what: String, source: kube::Error },
    #[error("{what}: {message}")]
    Engine { what: String, message: String },
}

impl AgentError {
    fn api(what: impl Into<String>, source: kube::Error) -> Self {
        AgentError::Api {
            what: what.into(),
            source,
        }
    }
    fn engine(what: impl Into<String>, e: impl std::fmt::Display) -> Self {
        AgentError::Engine {
            what: what.into(),
            message: e.to_string(),
        }
    }
}

impl Config {
    /// This node's podCIDR (the first /24 of the cluster CIDR until [`run`] has read the
    /// assigned one, which it does before anything uses it).
    pub fn pod_cidr(&self) -> ipnet::IpNet {
        self.pod_cidr
            .unwrap_or_else(|| node::first_block(&self.cluster_cidr))
    }
}

/// A reflector over every `K` of the cluster (a task living until the runtime ends) whose
/// store is returned at once (empty until its first list: see `Store::wait_until_ready`);
/// `tx`, when given, ticks after each event. Watch errors are logged at debug level as
/// `"<what> watch: …"` and retried with kube-rs' default back-off.
pub(crate) fn watch_all<K>(
    client: kube::Client,
    tx: Option<Arc<tokio::sync::watch::Sender<u64>>>,
    what: &'static str,
) -> kube::runtime::reflector::Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + k8s_openapi::serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    use futures_util::StreamExt;
    use kube::runtime::{reflector, watcher, WatchStreamExt};
    let (store, w) = reflector::store::<K>();
    let api: kube::Api<K> = kube::Api::all(client);
    tokio::spawn(async move {
        let s = reflector::reflector(w, watcher(api, watcher::Config::default()))
            .default_backoff()
            .touched_objects();
        futures_util::pin_mut!(s);
        while let Some(ev) = s.next().await {
            if let Err(e) = ev {
                tracing::debug!("{what} watch: {e}");
            }
            if let Some(tx) = &tx {
                tx.send_modify(|n| *n += 1);
            }
        }
    });
    store
}

/// Whether a kube error is the API's 404.
pub(crate) fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// The node setup the pod bridge needs from the kernel
/// ([`barge_network::host::ensure_bridge_netfilter`]): without `br_netfilter`, a pod's
/// connection to a Service whose endpoint is on this node gets replies it does not recognise
/// (nothing un-DNATs them) and NetworkPolicies cannot filter traffic between its pods. Logs
/// what it did; a failure is a warning (the rest of the node still works).
async fn ensure_bridge_netfilter() {
    use barge_network::host::BridgeNetfilter;
    match tokio::task::spawn_blocking(barge_network::host::ensure_bridge_netfilter).await {
        Ok(Ok(BridgeNetfilter::AlreadyOn)) => {
            tracing::debug!("net.bridge.bridge-nf-call-iptables is 1 (br_netfilter)")
        }
        Ok(Ok(BridgeNetfilter::TurnedOn { loaded })) => tracing::info!(
            loaded_br_netfilter = loaded,
            "set net.bridge.bridge-nf-call-iptables=1 (as kube-proxy and flannel need): pod \
             traffic switched on the pod bridge now passes conntrack, so Service replies from \
             a pod on this node are un-DNATed and NetworkPolicies apply; left on at exit"
        ),
        Ok(Err(e)) => tracing::warn!(
            "{e}: pods cannot reach Services whose endpoints are on this node, and network \
             policies cannot filter traffic between its pods"
        ),
        Err(e) => tracing::warn!("br_netfilter check: {e}"),
    }
}

/// Runs the agent until `shutdown` completes: registers the node, then keeps its lease and
/// status and runs its pods. Pods keep running after it returns (their monitors hold them).
pub async fn run(
    client: kube::Client,
    engine: Engine,
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let node = node::NodeAgent::new(client.clone(), engine.clone(), Arc::new(cfg.clone()));
    let node_task = tokio::spawn(async move { node.run().await });
    // Pods, DNS and the proxy need this node's podCIDR: the node IPAM controller's.
    let mut cfg = cfg;
    if cfg.pod_cidr.is_none() {
        tokio::select! {
            c = node::wait_pod_cidr(&client, &cfg.node_name) => cfg.pod_cidr = Some(c),
            _ = &mut shutdown => {
                node_task.abort();
                return;
            }
        }
    }
    let cfg = Arc::new(cfg);
    let sampler = metrics::Sampler::new(
        engine.clone(),
        cfg.node_name.clone(),
        cfg.metrics_resolution,
    );
    let sampling = tokio::spawn(sampler.clone().run());
    let streams = match &cfg.stream_tls {
        Some(tls) => match stream::server_config(tls) {
            Ok(tls) => {
                let addr = std::net::SocketAddr::from(([0, 0, 0, 0], cfg.kubelet_port));
                match stream::bind(addr).await {
                    Ok(l) => Some(tokio::spawn(stream::serve(
                        l,
                        tls,
                        engine.clone(),
                        client.clone(),
                        sampler,
                    ))),
                    Err(e) => {
                        tracing::error!("{e}");
                        None
                    }
                }
            }
            Err(e) => {
                tracing::error!("{e}");
                None
            }
        },
        None => None,
    };
    // Bridged pod traffic through conntrack, before any pod or Service rule relies on it.
    ensure_bridge_netfilter().await;
    let pods = tokio::spawn(pods::run(client.clone(), engine.clone(), cfg.clone()));
    // Routes to the other nodes' pods (left in place when the agent stops, as flannel's).
    let podnet = tokio::spawn(podnet::run(client.clone(), cfg.clone()));
    // NetworkPolicies: enforced for this node's pods (the table is deleted by `barge server`
    // when it stops).
    let policies = tokio::spawn(netpol::run(
        client.clone(),
        engine.networks.netpol_table(),
        cfg.node_name.clone(),
    ));
    // Services: the proxy and cluster DNS over one watch of Services and EndpointSlices.
    let services = {
        let (cfg, table) = (cfg.clone(), engine.networks.proxy_table());
        tokio::spawn(async move {
            let view = proxy::ClusterView::start(client.clone()).await;
            let dns = tokio::spawn(dns::run(client, view.clone(), cfg.clone()));
            match (cfg.cluster_cidr, cfg.service_cidr) {
                (ipnet::IpNet::V4(pods), ipnet::IpNet::V4(services)) => {
                    proxy::run(view, table, cfg.node_name.clone(), pods, services).await
                }
                _ => tracing::warn!("service proxy: IPv4 cluster and service CIDRs only"),
            }
            let _ = dns.await;
        })
    };
    shutdown.await;
    node_task.abort();
    sampling.abort();
    pods.abort();
    podnet.abort();
    services.abort();
    policies.abort();
    if let Some(s) = streams {
        s.abort();
    }
}
