//! barge's controllers: what kube-controller-manager does, written on kube's runtime against
//! the Kubernetes API (they would run against any Kubernetes), run by `barge server`.
//!
//! - [`endpointslice`], [`endpoints`]: each Service's EndpointSlices (discovery.k8s.io/v1)
//!   and legacy Endpoints, from the pods its selector matches.
//! - [`gc`]: the garbage collector — dependents of deleted owners go (`ownerReferences`),
//!   foreground deletion waits for blocking dependents, orphaning strips references.
//! - [`serviceaccounts`]: a `default` ServiceAccount in every active namespace.
//! - [`quota`]: ResourceQuotas' `status.hard`/`status.used`.
//! - [`rootca`]: the `kube-root-ca.crt` ConfigMap (the cluster CA) in every active namespace.
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
pub mod quota;
mod resources;
pub mod rootca;
pub mod serviceaccounts;
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
}

/// Runs every controller until `shutdown` completes.
pub async fn run(client: Client, config: Config, shutdown: impl std::future::Future<Output = ()>) {
    let mut tasks = vec![
        tokio::spawn(gc::run(client.clone())),
        tokio::spawn(serviceaccounts::run(client.clone())),
        tokio::spawn(quota::run(client.clone())),
        tokio::spawn(workloads::run(client.clone())),
        tokio::spawn(endpointslice::run(client.clone())),
        tokio::spawn(endpoints::run(client.clone())),
    ];
    if !config.root_ca_pem.is_empty() {
        tasks.push(tokio::spawn(rootca::run(client, config.root_ca_pem)));
    }
    shutdown.await;
    tasks.iter().for_each(|t| t.abort());
}
