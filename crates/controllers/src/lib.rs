//! barge's controllers: what kube-controller-manager does, written on kube's runtime against
//! the Kubernetes API (they would run against any Kubernetes), run by `barge server`.
//!
//! - [`gc`]: the garbage collector — dependents of deleted owners go (`ownerReferences`),
//!   foreground deletion waits for blocking dependents, orphaning strips references.
//! - [`workloads`]: ReplicaSet, ReplicationController, Deployment and Job controllers over
//!   shared reflector stores, with kube's expectations, events, conditions and annotations.
//!
//! (A deleted namespace is emptied by the API server itself for now: barge-apiserver's
//! `namespaces.rs`.)
//!
//! Invariants: controllers only act through the API (no datastore access); every write is
//! conditional on the `resourceVersion` it was computed from (a conflict retries later); an
//! owner is taken as gone only after a live read confirms it (a watch may lag).

pub mod gc;
mod resources;
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

/// Runs every controller until `shutdown` completes.
pub async fn run(client: Client, shutdown: impl std::future::Future<Output = ()>) {
    let gc = tokio::spawn(gc::run(client.clone()));
    let workloads = tokio::spawn(workloads::run(client));
    shutdown.await;
    gc.abort();
    workloads.abort();
}
