//! barge's Kubernetes API server (target: Kubernetes v1.33): the API machinery of
//! kube-apiserver — discovery, CRUD/list/watch/patch of built-in kinds and CRDs, `Status`
//! errors, server-side printing — as an [`axum::Router`] over a [`barge_datastore::Store`].
//!
//! Invariants:
//! - This crate knows HTTP and Kubernetes wire shapes, not TLS or certificates: the caller
//!   (`barge server`) terminates TLS, authenticates the client and attaches its [`Identity`]
//!   to each request as an extension. A request without one is anonymous.
//! - Objects are stored as JSON under `/registry/<group>/<resource>/<namespace>/<name>`
//!   (core group: `/registry/<resource>/…`, as kube-apiserver's etcd layout); an object's
//!   `metadata.resourceVersion` is its key's `mod_revision`. Built-ins and CRDs share one
//!   code path.

pub mod crd;
pub mod fields;
pub mod openapi;
pub mod rbac;
pub mod schema;
pub mod ssa;
pub mod strategic;
pub mod tokens;
pub mod unknown;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use barge_datastore::Store;

/// Who is making a request, as established by the transport (client certificate CN/O,
/// bearer token). Kubernetes's `user.Info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `system:admin`, `system:serviceaccount:ns:name`, `system:node:NAME`, …
    pub user: String,
    /// `system:masters`, `system:authenticated`, …
    pub groups: Vec<String>,
}

/// Settings of the API server that do not live in the datastore.
#[derive(Clone, Debug)]
pub struct Config {
    /// The range ClusterIPs come from (`--service-cidr`, default 10.43.0.0/16).
    pub service_cidr: String,
    /// The pods' range (`--cluster-cidr`, default 10.42.0.0/16).
    pub cluster_cidr: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            service_cidr: "10.43.0.0/16".into(),
            cluster_cidr: "10.42.0.0/16".into(),
        }
    }
}

/// The API server's shared state.
#[derive(Clone)]
pub struct ApiServer {
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
}

impl ApiServer {
    pub fn new(store: Arc<dyn Store>, config: Config) -> Self {
        ApiServer {
            store,
            config: Arc::new(config),
        }
    }

    /// Every route of the API (health, version, discovery, resources).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/livez", get(|| async { "ok" }))
            .route("/readyz", get(|| async { "ok" }))
            .with_state(self.clone())
    }
}
