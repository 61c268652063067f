//! barge's controllers: what kube-controller-manager does, written on kube's runtime against
//! the Kubernetes API (they would run against any Kubernetes), run by `barge server`.
//!
//! - [`endpointslice`], [`endpoints`]: each Service's EndpointSlices (discovery.k8s.io/v1)
//!   and legacy Endpoints, from the pods its selector matches.
//! - [`gc`]: the garbage collector — dependents of deleted owners go (`ownerReferences`),
//!   foreground deletion waits for blocking dependents, orphaning strips references.
//! - [`serviceaccounts`]: a `default` ServiceAccount in every active namespace.
//! - [`quota`]: ResourceQuotas' `status.hard`/`status.used`.
//! - [`pdb`]: PodDisruptionBudgets' status (what `pods/eviction` reads and decrements).
//! - [`rootca`]: the `kube-root-ca.crt` ConfigMap (the cluster CA) in every active namespace.
//! - [`storage`]: the PersistentVolume binder and the built-in local-path provisioner
//!   (default StorageClass `local-path`).
//! - [`protection`]: the `pvc-protection`/`pv-protection` finalizers removed once a deleted
//!   claim has no scheduled pod / a deleted volume is no longer `Bound`.
//! - [`nodelifecycle`]: nodes silent past the grace period become `Unknown` and
//!   `unreachable`-tainted; the taint manager evicts pods after their `tolerationSeconds`.
//! - [`nodeipam`]: each Node's `spec.podCIDR`, the lowest free /24 of the cluster CIDR
//!   (`--allocate-node-cidrs`' range allocator).
//! - [`hpa`]: HorizontalPodAutoscalers (autoscaling/v2) over the targets' `scale`
//!   subresource and `metrics.k8s.io`.
//! - [`servicelb`]: the built-in service load balancer (k3s's ServiceLB): LoadBalancer
//!   Services admitted oldest first, `status.loadBalancer.ingress` = the nodes' InternalIPs.
//! - [`workloads`]: ReplicaSet, ReplicationController, Deployment and Job controllers over
//!   shared reflector stores, with kube's expectations, events, conditions and annotations.
//!
//! (A deleted namespace is emptied by the API server itself for now: barge-apiserver's
//! `namespaces.rs`.)
//!
//! Invariants: controllers only act through the API (no datastore access); every write is
//! conditional on the `resourceVersion` it was computed from (a conflict retries later); an
//! owner is taken as gone only after a live read confirms it (a watch may lag).

pub mod endpoints;
pub mod endpointslice;
pub mod gc;
pub mod hpa;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod pdb;
pub mod protection;
pub mod quota;
mod resources;
pub mod rootca;
pub mod serviceaccounts;
pub mod servicelb;
pub mod storage;
pub mod workloads;

use kube::Client;

pub use resources::{discover, Resource};

/// Errors of a controller's API calls (each is retried on the next pass).
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("{what}: {source}")]
    Api { what: String, source: kube::Error },
}

impl ControllerError {
    fn api(what: impl Into<String>, source: kube::Error) -> Self {
        ControllerError::Api {
            what: what.into(),
            source,
        }
    }
}

/// What the controllers need to know that the API does not tell them.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// The PEM of the CA that signs the API server's certificate (published in every
    /// namespace as `kube-root-ca.crt`; empty: not published).
    pub root_ca_pem: String,
    /// Where the built-in local-path provisioner makes volumes (this server's node's
    /// `<data-root>/storage`); `None`: claims are bound to existing volumes only.
    pub local_path_dir: Option<std::path::PathBuf>,
    /// How long a node may be silent before it is `Unknown` (`None`: kube's 40 s).
    pub node_monitor_grace_period: Option<std::time::Duration>,
    /// The HorizontalPodAutoscaler controller's settings (kube-controller-manager's
    /// `--horizontal-pod-autoscaler-*`).
    pub hpa: hpa::HpaConfig,
    /// TCP ports of the nodes that LoadBalancer Services may not take (the Ingress proxy's).
    pub reserved_node_ports: Vec<u16>,
    /// The cluster CIDR nodes' podCIDRs are cut from ([`nodeipam`]; `None`: no node IPAM).
    pub cluster_cidr: Option<ipnet::IpNet>,
}

/// Runs every controller until `shutdown` completes, only while this process holds the
/// `kube-system/kube-controller-manager` Lease (kube's leader election, shared with the
/// scheduler's [`barge_scheduler::leader`]): of several servers on one datastore, one runs
/// the controllers at a time.
pub async fn run(client: Client, config: Config, shutdown: impl std::future::Future<Output = ()>) {
    let lease = barge_scheduler::leader::Config::new("kube-system", "kube-controller-manager");
    barge_scheduler::leader::run(client.clone(), lease, shutdown, move || {
        run_all(client.clone(), config.clone())
    })
    .await;
}

/// Tasks aborted when dropped (the leader's work is cancelled as a whole).
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        self.0.iter().for_each(|t| t.abort());
    }
}

/// Every controller, until cancelled.
async fn run_all(client: Client, config: Config) {
    let mut tasks = vec![
        tokio::spawn(gc::run(client.clone())),
        tokio::spawn(serviceaccounts::run(client.clone())),
        tokio::spawn(quota::run(client.clone())),
        tokio::spawn(pdb::run(client.clone())),
        tokio::spawn(workloads::run(client.clone())),
        tokio::spawn(storage::run(
            client.clone(),
            storage::StorageConfig {
                local_path_dir: config.local_path_dir.clone(),
            },
        )),
        tokio::spawn(protection::run(client.clone())),
        tokio::spawn(nodelifecycle::run(
            client.clone(),
            nodelifecycle::LifecycleConfig {
                grace_period: config
                    .node_monitor_grace_period
                    .unwrap_or(nodelifecycle::DEFAULT_GRACE_PERIOD),
            },
        )),
        tokio::spawn(endpointslice::run(client.clone())),
        tokio::spawn(endpoints::run(client.clone())),
        tokio::spawn(hpa::run(client.clone(), config.hpa.clone())),
        tokio::spawn(servicelb::run(
            client.clone(),
            config.reserved_node_ports.clone(),
        )),
    ];
    if let Some(cidr) = config.cluster_cidr {
        tasks.push(tokio::spawn(nodeipam::run(client.clone(), cidr)));
    }
    if !config.root_ca_pem.is_empty() {
        tasks.push(tokio::spawn(rootca::run(client, config.root_ca_pem)));
    }
    // The controllers run until this future is dropped (shutdown or lost leadership).
    let _tasks = Tasks(tasks);
    std::future::pending::<()>().await;
}
