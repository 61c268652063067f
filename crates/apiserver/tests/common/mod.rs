//! Test support for the API server's integration tests: the router served over plain HTTP on
//! loopback, over a fresh store of a given backend, every request carrying an admin identity
//! (`system:admin`, `system:masters`) as the TLS transport of `barge server` would attach it;
//! and [`backends!`], which runs a scenario on SQLite and on a real etcd.

use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::middleware::Next;
use barge_apiserver::{ApiServer, Config, Identity};
use barge_datastore::testing::{Backend, Fixture};

/// A served API server: its loopback port and its store (dropping it stops the store).
pub struct Served {
    pub port: u16,
    pub fixture: Fixture,
}

/// Serves a bootstrapped API server over a fresh `backend` store on `127.0.0.1:<random>`,
/// after `configure`; each request's `METHOD uri content-type [accept]` is pushed to `log`.
/// Call inside a tokio runtime (the server runs on it).
pub async fn serve(
    backend: Backend,
    configure: impl FnOnce(ApiServer) -> ApiServer,
    log: Arc<Mutex<Vec<String>>>,
) -> Served {
    let fixture = backend.open().await;
    // No controllers run here: pods need no `default` ServiceAccount.
    let api = configure(
        ApiServer::new(fixture.store.clone(), Config::default()).without_service_account_lookup(),
    );
    api.bootstrap().await.unwrap();
    let app = api.router().layer(axum::middleware::from_fn(
        move |mut req: Request, next: Next| {
            let log = log.clone();
            async move {
                let line = {
                    let header = |name: &str| {
                        req.headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string()
                    };
                    format!(
                        "{} {} {} [{}]",
                        req.method(),
                        req.uri(),
                        header("content-type"),
                        header("accept")
                    )
                };
                log.lock().unwrap().push(line);
                req.extensions_mut().insert(Identity {
                    user: "system:admin".into(),
                    groups: vec!["system:masters".into()],
                });
                next.run(req).await
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Served { port, fixture }
}

/// Runs `fn name(backend: Backend)` scenarios (sync, or async with `async`) on SQLite
/// (`name::sqlite`) and on a real etcd started on loopback (`name::etcd`).
#[macro_export]
macro_rules! backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use barge_datastore::testing::Backend;

            #[test]
            fn sqlite() {
                super::$name(Backend::Sqlite);
            }

            #[test]
            fn etcd() {
                super::$name(Backend::Etcd);
            }
        }
    )*};
    (async $($name:ident),* $(,)?) => {$(
        mod $name {
            use barge_datastore::testing::Backend;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn etcd() {
                super::$name(Backend::Etcd).await;
            }
        }
    )*};
}
