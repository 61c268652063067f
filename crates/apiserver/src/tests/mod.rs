//! Router-level tests: every request goes through `router()` as the transport would send it.
//! Most run over [`MemStore`]; those that exercise storage (watch, lists and `continue`,
//! conflicts, compaction and 410) run on every backend through [`backends!`] — SQLite and a
//! real etcd as `barge server` uses them. Helpers here; the tests by area in the submodules.

mod admission;
mod badinput;
mod bench;
mod binding;
mod crd;
mod discovery;
mod eviction;
mod lists;
mod rest;
mod types;
mod versions;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use barge_datastore::testing::{Backend, Fixture};
use barge_datastore::Store;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::{ApiServer, Config, Identity};

pub(super) struct T {
    pub(super) app: Router,
    pub(super) store: Arc<dyn Store>,
    _fixture: Fixture,
}

pub(super) struct Resp {
    pub(super) code: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Vec<u8>,
}

impl Resp {
    pub(super) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub(super) fn admin() -> Identity {
    Identity {
        user: "system:admin".into(),
        groups: vec!["system:masters".into()],
    }
}

pub(super) async fn server() -> T {
    server_on(Backend::Memory).await
}

/// A bootstrapped API server over a fresh store of `backend`.
pub(super) async fn server_on(backend: Backend) -> T {
    server_with(backend, Config::default()).await
}

/// A bootstrapped API server with `config` over a fresh store of `backend`.
pub(super) async fn server_with(backend: Backend, config: Config) -> T {
    let fixture = backend.open().await;
    let store = fixture.store.clone();
    let api = ApiServer::new(store.clone(), config)
        .with_bookmark_interval(Duration::from_millis(100))
        .without_service_account_lookup();
    api.bootstrap().await.unwrap();
    T {
        app: api.router(),
        store,
        _fixture: fixture,
    }
}

/// Runs `async fn name(t: T)` tests on each storage backend: `name::memory`, `name::sqlite`
/// and `name::etcd` (a real etcd on loopback; a missing etcd fails the test).
macro_rules! backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use barge_datastore::testing::Backend;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$name(super::server_on(Backend::Memory).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::server_on(Backend::Sqlite).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn etcd() {
                super::$name(super::server_on(Backend::Etcd).await).await;
            }
        }
    )*};
}
pub(super) use backends;

impl T {
    pub(super) async fn req(
        &self,
        method: Method,
        uri: &str,
        ctype: &str,
        body: impl Into<Body>,
        who: Option<Identity>,
        accept: Option<&str>,
    ) -> Resp {
        let mut r = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, ctype)
            .body(body.into())
            .unwrap();
        if let Some(a) = accept {
            r.headers_mut().insert(header::ACCEPT, a.parse().unwrap());
        }
        if let Some(i) = who {
            r.extensions_mut().insert(i);
        }
        let resp = self.app.clone().oneshot(r).await.unwrap();
        let code = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Resp {
            code,
            headers,
            body,
        }
    }
    pub(super) async fn get(&self, uri: &str) -> Resp {
        self.req(
            Method::GET,
            uri,
            "application/json",
            Body::empty(),
            Some(admin()),
            None,
        )
        .await
    }
    pub(super) async fn send(&self, method: Method, uri: &str, body: Value) -> Resp {
        self.req(
            method,
            uri,
            "application/json",
            body.to_string(),
            Some(admin()),
            None,
        )
        .await
    }
    pub(super) async fn patch(&self, uri: &str, ctype: &str, body: &str) -> Resp {
        self.req(
            Method::PATCH,
            uri,
            ctype,
            body.to_string(),
            Some(admin()),
            None,
        )
        .await
    }
}

pub(super) fn cm(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
}

pub(super) const CMS: &str = "/api/v1/namespaces/default/configmaps";
