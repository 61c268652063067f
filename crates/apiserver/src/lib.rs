//! barge's Kubernetes API server (target: Kubernetes v1.33): the API machinery of
//! kube-apiserver — discovery, CRUD/list/watch/patch of built-in kinds and CRDs, `Status`
//! errors, server-side printing — as an [`axum::Router`] over a [`barge_datastore::Store`].
//!
//! Invariants:
//! - This crate knows HTTP and Kubernetes wire shapes, not TLS or certificates: the caller
//!   (`barge server`) terminates TLS, authenticates the client and attaches its [`Identity`]
//!   to each request as an extension. A request without one is anonymous.
//! - Objects are stored as JSON under kube-apiserver's etcd keys (see [`registry`]); an
//!   object's `metadata.resourceVersion` is its key's `mod_revision` and is not stored inside
//!   the value. Built-ins and CRDs share one code path.
//! - Every error leaves as a kube `Status` built in one place ([`status::ApiError`]).
//!
//! Modules: [`registry`] (the table of kinds), `discovery` (version, discovery, health),
//! [`request`] (URL/verb/query/body parsing), `rest` (one module per verb family),
//! [`selectors`], [`validation`], `namespaces` (bootstrap and namespace finalization).

// `ApiError` carries kube's Status details by value; errors are the cold path of a request.
#![allow(clippy::result_large_err)]

pub mod admission;
mod authz;
mod discovery;
mod impersonation;
mod namespaces;
pub mod proto;
pub mod registry;
pub mod request;
mod rest;
pub mod selectors;
mod serviceaccounts;
pub mod status;
pub mod table;
pub mod validation;
mod watchcache;

pub mod cel;
pub mod crd;
pub mod custom;
pub mod fields;
pub mod formats;
pub mod openapi;
pub mod rbac;
pub mod schema;
pub mod strategic;
pub mod tokens;
pub mod unknown;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use barge_datastore::Store;

pub use discovery::{go_arch, KUBE_VERSION};
pub use namespaces::SYSTEM_NAMESPACES;
use registry::Registry;
pub use rest::masterleases::RECONCILE_INTERVAL as ENDPOINT_RECONCILE_INTERVAL;
pub use rest::proxy::{DialFuture, NodeDialer, NodeStream};
pub use rest::services::service_ip;
use status::{ApiError, Target};

/// Who is making a request, as established by the transport (client certificate CN/O,
/// bearer token). Kubernetes's `user.Info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `system:admin`, `system:serviceaccount:ns:name`, `system:node:NAME`, …
    pub user: String,
    /// `system:masters`, `system:authenticated`, …
    pub groups: Vec<String>,
}

/// The anonymous user's name.
pub const ANONYMOUS: &str = "system:anonymous";

/// A bearer token the transport could not authenticate itself (not its join token), handed
/// to the API server as a request extension: a ServiceAccount token is verified here.
#[derive(Clone, Debug)]
pub struct BearerToken(pub String);

/// Settings of the API server that do not live in the datastore.
#[derive(Clone, Debug)]
pub struct Config {
    /// The range ClusterIPs come from (`--service-cidr`, default 10.43.0.0/16).
    pub service_cidr: String,
    /// The pods' range (`--cluster-cidr`, default 10.42.0.0/16).
    pub cluster_cidr: String,
    /// The PKCS#8 P-256 key ServiceAccount tokens are signed with (`None`: no TokenRequest).
    pub service_account_key: Option<Vec<u8>>,
    /// The DefaultTolerationSeconds admission's `tolerationSeconds` for
    /// `node.kubernetes.io/not-ready` and `…/unreachable` (kube-apiserver's
    /// `--default-not-ready-toleration-seconds` / `--default-unreachable-toleration-seconds`,
    /// 300 each).
    pub default_toleration_seconds: admission::tolerations::DefaultTolerations,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            service_cidr: "10.43.0.0/16".into(),
            cluster_cidr: "10.42.0.0/16".into(),
            service_account_key: None,
            default_toleration_seconds: Default::default(),
        }
    }
}

/// The API server's shared state.
#[derive(Clone)]
pub struct ApiServer {
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
    /// The served kinds: the built-in table plus the custom resources of the established
    /// CRDs, replaced whenever a CRD changes (`custom.rs`).
    registry: Arc<custom::Dynamic>,
    /// One datastore watch fanned out to every API watch.
    watch_cache: Arc<watchcache::WatchCache>,
    /// How often a watch with `allowWatchBookmarks` gets a BOOKMARK.
    bookmark_interval: Duration,
    /// The RBAC policy in force.
    authz: Arc<authz::Authorizer>,
    /// Signs and verifies ServiceAccount tokens.
    tokens: Option<Arc<tokens::TokenIssuer>>,
    /// Whether the ServiceAccount admission refuses pods whose ServiceAccount is missing
    /// (kube's behaviour; off only for tests that run no ServiceAccount controller).
    service_account_lookup: bool,
    /// Connections to node agents for the streaming subresources (`rest::proxy`).
    node_dialer: Option<Arc<dyn rest::proxy::NodeDialer>>,
}

impl ApiServer {
    pub fn new(store: Arc<dyn Store>, config: Config) -> Self {
        let tokens = config.service_account_key.as_deref().and_then(|key| {
            tokens::TokenIssuer::new(key, tokens::DEFAULT_ISSUER)
                .map_err(|e| tracing::error!("service account key: {e}"))
                .ok()
                .map(Arc::new)
        });
        ApiServer {
            tokens,
            watch_cache: Arc::new(watchcache::WatchCache::new(store.clone())),
            store,
            config: Arc::new(config),
            registry: Arc::default(),
            bookmark_interval: Duration::from_secs(60),
            authz: Arc::default(),
            service_account_lookup: true,
            node_dialer: None,
        }
    }

    /// How the streaming subresources (`pods/log|exec|attach|portforward`) reach node agents;
    /// without it they answer 500.
    pub fn with_node_dialer(mut self, dialer: Arc<dyn NodeDialer>) -> Self {
        self.node_dialer = Some(dialer);
        self
    }

    /// Turns off the ServiceAccount admission's existence check (a missing ServiceAccount is
    /// then one without settings): for tests that run no ServiceAccount controller.
    pub fn without_service_account_lookup(mut self) -> Self {
        self.service_account_lookup = false;
        self
    }

    /// Sets the bookmark period of watches (kube-apiserver: about a minute).
    pub fn with_bookmark_interval(mut self, every: Duration) -> Self {
        self.bookmark_interval = every;
        self
    }

    /// Bounds the watch cache's window to `events` events (default 10,000);
    /// a watch from before the window goes to the datastore. Tests use a small window to
    /// reach the datastore's 410 quickly.
    pub fn with_watch_window(mut self, events: usize) -> Self {
        self.watch_cache = Arc::new(watchcache::WatchCache::with_limits(
            self.store.clone(),
            events,
            watchcache::WINDOW_BYTES,
        ));
        self
    }

    /// The resources this server serves now (built-ins and established custom resources).
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.current()
    }

    /// Every route of the API (health, version, discovery, resources). Requests without an
    /// [`Identity`] extension (or from `system:anonymous`) may only reach `/healthz`,
    /// `/livez`, `/readyz` and `/version` (kube's `system:public-info-viewer`).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(discovery::healthz))
            .route("/livez", get(discovery::livez))
            .route("/readyz", get(discovery::readyz))
            .route("/version", get(discovery::version))
            .route("/version/", get(discovery::version))
            .route("/api", get(discovery::api))
            .route("/api/", get(discovery::api))
            .route("/api/v1", get(discovery::core_v1))
            .route("/api/v1/", get(discovery::core_v1))
            .route("/apis", get(discovery::apis))
            .route("/apis/", get(discovery::apis))
            .route("/apis/{group}", get(discovery::group))
            .route("/apis/{group}/", get(discovery::group))
            .route(
                "/apis/{group}/{version}",
                get(discovery::named_group_version),
            )
            .route(
                "/apis/{group}/{version}/",
                get(discovery::named_group_version),
            )
            .route("/openapi/v3", get(openapi::index))
            .route("/openapi/v3/", get(openapi::index))
            .route("/openapi/v3/{*path}", get(openapi::group_version))
            .route("/openapi/v2", get(openapi::v2))
            .route(
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                axum::routing::post(authz::self_subject_access_review),
            )
            .route(
                "/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
                axum::routing::post(serviceaccounts::token_request),
            )
            .route(
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                axum::routing::post(authz::self_subject_review),
            )
            .fallback(rest::handle)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                authorize,
            ))
            .with_state(self.clone())
    }
}

/// Paths anonymous users may read (`system:public-info-viewer`).
const PUBLIC_PATHS: &[&str] = &["/healthz", "/livez", "/readyz", "/version", "/version/"];

/// Every request is authorized by RBAC (`authz.rs`); anonymous requests (no [`Identity`])
/// are `system:anonymous` in `system:unauthenticated`, which the default policy lets read only
/// the public-info paths. A denial is kube's 403.
async fn authorize(State(api): State<ApiServer>, mut req: Request, next: Next) -> Response {
    // A bearer token the transport did not know: one of this server's ServiceAccount tokens,
    // or kube's 401.
    if let Some(BearerToken(token)) = req.extensions_mut().remove::<BearerToken>() {
        if req.extensions().get::<Identity>().is_none() {
            match api.authenticate_service_account(&token).await {
                Some(id) => {
                    req.extensions_mut().insert(id);
                }
                None => return status::unauthorized(),
            }
        }
    }
    let identity = req
        .extensions()
        .get::<Identity>()
        .cloned()
        .unwrap_or_else(|| Identity {
            user: ANONYMOUS.to_string(),
            groups: vec!["system:unauthenticated".to_string()],
        });
    // `Impersonate-*` headers: the request goes on as the impersonated identity.
    let identity = match api.impersonate(&identity, req.headers()) {
        Ok(Some((acting, extras))) => {
            req.extensions_mut().insert(acting.clone());
            req.extensions_mut().insert(extras);
            acting
        }
        Ok(None) => identity,
        Err(e) => return e.into_response(),
    };
    if identity.user == ANONYMOUS && PUBLIC_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let attrs = authz::attributes(req.method(), req.uri().path(), req.uri().query());
    if api.allowed(&identity, &attrs) {
        return next.run(req).await;
    }
    forbidden(&req, &identity.user).into_response()
}

/// kube's `forbiddenMessage` for `user` on `req`.
fn forbidden(req: &Request, user: &str) -> ApiError {
    let path = req.uri().path();
    let query = request::Query::parse(req.uri().query());
    let info = request::parse_path(path);
    let verb = info
        .as_ref()
        .and_then(|i| request::verb(req.method(), i, &query));
    match (info, verb) {
        (Some(info), Some(verb)) => {
            let mut resource = info.resource.clone();
            if let Some(sub) = &info.subresource {
                resource = format!("{resource}/{sub}");
            }
            let scope = match info.namespace.as_deref() {
                Some(ns) => format!("in the namespace {ns:?}"),
                None => "at the cluster scope".to_string(),
            };
            let qualified = if info.group.is_empty() {
                info.resource.clone()
            } else {
                format!("{}.{}", info.resource, info.group)
            };
            ApiError::Forbidden {
                target: Target {
                    name: info.name.clone().unwrap_or_default(),
                    group: info.group.clone(),
                    kind: info.resource.clone(),
                    qualified,
                },
                why: format!(
                    "User {user:?} cannot {} resource {resource:?} in API group {:?} {scope}",
                    verb.as_str(),
                    info.group
                ),
                causes: vec![],
            }
        }
        _ => ApiError::Forbidden {
            target: Target::default(),
            why: format!(
                "User {user:?} cannot {} path {path:?}",
                req.method().as_str().to_ascii_lowercase()
            ),
            causes: vec![],
        },
    }
}

#[cfg(test)]
mod tests;
