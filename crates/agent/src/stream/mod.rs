//! The agent's kubelet-like HTTPS endpoint (kubelet's `:10250` server,
//! `pkg/kubelet/server/server.go`): what the API server proxies `pods/log`, `pods/exec`,
//! `pods/attach` and `pods/portforward` to.
//!
//! | path | what |
//! |---|---|
//! | `GET /containerLogs/NS/POD/CONTAINER` | the container's log ([`logs`]) |
//! | `GET\|POST /exec/NS/POD/CONTAINER?command=…` | a process in the container over WebSocket ([`exec`]) |
//! | `GET\|POST /attach/NS/POD/CONTAINER` | the container's own stdio over WebSocket ([`exec`]) |
//! | `GET\|POST /portForward/NS/POD` | TCP connections into the pod's network namespace ([`portforward`]) |
//! | `GET /stats/summary` | kubelet's Summary API: the node's and pods' CPU and memory ([`crate::metrics`]) |
//!
//! TLS: the serving certificate is signed by the cluster's server CA; a client must present a
//! certificate of the cluster's client CA with CN [`API_SERVER_CLIENT`] (the API server's
//! kubelet-client certificate) or of group `system:masters`; any other request is a 403.
//!
//! Invariants: engine calls run on the blocking pool; a container's streams are the engine's
//! (its json-file log, its monitor's attach socket, its exec instances); a port connection is
//! made by a thread of its own that enters the pod's network namespace (never a tokio worker).

pub mod exec;
pub mod logs;
pub mod portforward;
pub mod spdy;
pub mod spdyexec;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::Pod;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::net::TcpListener;

use crate::Engine;

/// The CN of the API server's client certificate for node agents (kube's
/// `system:kube-apiserver-kubelet-client`, k3s's `client-kube-apiserver.crt`).
pub const API_SERVER_CLIENT: &str = "system:kube-apiserver-kubelet-client";

/// kubelet's default port (`--port`).
pub const DEFAULT_PORT: u16 = 10250;

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The endpoint's certificates (PEM).
#[derive(Clone)]
pub struct StreamTls {
    /// The serving certificate (signed by the cluster's server CA) and its key.
    pub cert_pem: String,
    pub key_pem: String,
    /// The CA client certificates are verified against (the cluster's client CA).
    pub client_ca_pem: String,
}

impl std::fmt::Debug for StreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTls").finish_non_exhaustive()
    }
}

/// Errors setting up the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("the agent's TLS configuration: {0}")]
    Tls(String),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// The TLS configuration: `tls`' certificate, client certificates required and verified
/// against its client CA, HTTP/1.1 only (upgrades).
pub fn server_config(tls: &StreamTls) -> Result<Arc<rustls::ServerConfig>, StreamError> {
    let e = |w: &str, x: &dyn std::fmt::Display| StreamError::Tls(format!("{w}: {x}"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(tls.client_ca_pem.as_bytes()) {
        let c = c.map_err(|x| e("the client CA", &x))?;
        roots.add(c).map_err(|x| e("the client CA", &x))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|x| e("the client verifier", &x))?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|x| e("the serving certificate", &x))?;
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes())
        .map_err(|x| e("the serving key", &x))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|x| e("protocol versions", &x))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|x| e("the serving certificate", &x))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Whether a verified client certificate (DER) may use the endpoint: CN
/// [`API_SERVER_CLIENT`], or group `system:masters`. Returns its CN.
fn allowed(der: &[u8]) -> Result<String, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let masters = subject
        .iter_organization()
        .any(|o| o.as_str().is_ok_and(|s| s == "system:masters"));
    if cn == API_SERVER_CLIENT || masters {
        Ok(cn)
    } else {
        Err(cn)
    }
}

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct Shared {
    pub engine: Engine,
    pub client: kube::Client,
    pub metrics: Arc<crate::metrics::Sampler>,
}

/// Binds `addr` (kubelet: all addresses, port 10250).
pub async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, StreamError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StreamError::Listen { addr, source })
}

/// Serves the endpoint on `listener` forever.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    engine: Engine,
    client: kube::Client,
    metrics: Arc<crate::metrics::Sampler>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let shared = Shared {
        engine,
        client,
        metrics,
    };
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accepting a kubelet-endpoint connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "kubelet endpoint: TLS handshake failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            let who = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| allowed(c.as_ref()))
                .unwrap_or_else(|| Err("anonymous".into()));
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let shared = shared.clone();
                let who = who.clone();
                async move {
                    let req = req.map(Body::new);
                    Ok::<_, std::convert::Infallible>(match who {
                        Ok(_) => route(&shared, req).await,
                        Err(user) => text(
                            StatusCode::FORBIDDEN,
                            &format!(
                                "Forbidden (user={user}, verb={}, resource=nodes, subresource=proxy)",
                                req.method().as_str().to_lowercase()
                            ),
                        ),
                    })
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                .await
            {
                tracing::debug!(%peer, "kubelet endpoint connection ended: {e}");
            }
        });
    }
}

/// A plain-text answer (kubelet's errors are text).
pub(crate) fn text(code: StatusCode, msg: &str) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Body::from(format!("{msg}\n")))
        .expect("a static response")
}

/// A kube `Status` answer (the API server passes it on to kubectl as the request's error).
pub(crate) fn status(code: StatusCode, reason: &str, msg: &str) -> Response<Body> {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": msg, "reason": reason, "code": code.as_u16(),
    });
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("a static response")
}

async fn route(shared: &Shared, req: Request<Body>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let parts: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|p| {
            urlencoding::decode(p)
                .map(|s| s.into_owned())
                .unwrap_or_default()
        })
        .collect();
    let p: Vec<&str> = parts.iter().map(String::as_str).collect();
    match p.as_slice() {
        ["containerLogs", ns, pod, c] => logs::handle(shared, ns, pod, c, req).await,
        ["exec", ns, pod, c] => exec::handle(shared, ns, pod, c, exec::Kind::Exec, req).await,
        ["attach", ns, pod, c] => exec::handle(shared, ns, pod, c, exec::Kind::Attach, req).await,
        ["portForward", ns, pod] => portforward::handle(shared, ns, pod, req).await,
        ["healthz"] => text(StatusCode::OK, "ok"),
        ["stats", "summary"] => Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(Body::from(shared.metrics.summary().to_string()))
            .expect("a static response"),
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

/// The pod `ns/name` as the API has it (its status names its containers' engine IDs), or the
/// answer to give.
pub(crate) async fn pod(shared: &Shared, ns: &str, name: &str) -> Result<Pod, Response<Body>> {
    let api: kube::Api<Pod> = kube::Api::namespaced(shared.client.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("pods \"{name}\" not found"),
        )),
        Err(e) => Err(status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            &format!("getting pod {ns}/{name}: {e}"),
        )),
    }
}

/// The engine container ID of the pod's container `c` as kubelet's
/// `validateContainerLogStatus` picks it: the last terminated one for `previous`, else the
/// running one, else the terminated one, else the last terminated one; kube's messages when
/// there is none.
pub(crate) fn container_id(pod: &Pod, c: &str, previous: bool) -> Result<String, String> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let st = pod.status.as_ref();
    let statuses = st
        .into_iter()
        .flat_map(|s| {
            let a = s.container_statuses.iter().flatten();
            let b = s.init_container_statuses.iter().flatten();
            let e = s.ephemeral_container_statuses.iter().flatten();
            a.chain(b).chain(e)
        })
        .find(|s| s.name == c);
    let Some(cs) = statuses else {
        return Err(format!(
            "container {c:?} in pod {name:?} is waiting to start: ContainerCreating"
        ));
    };
    let strip = |id: &str| id.split_once("://").map_or(id, |(_, i)| i).to_string();
    let last = cs
        .last_state
        .as_ref()
        .and_then(|l| l.terminated.as_ref())
        .and_then(|t| t.container_id.as_deref())
        .filter(|i| !i.is_empty());
    let state = cs.state.as_ref();
    if previous {
        return last.map(strip).ok_or_else(|| {
            format!("previous terminated container {c:?} in pod {name:?} not found")
        });
    }
    if state.and_then(|s| s.running.as_ref()).is_some() {
        if let Some(id) = cs.container_id.as_deref().filter(|i| !i.is_empty()) {
            return Ok(strip(id));
        }
    }
    if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
        if let Some(id) = t.container_id.as_deref().filter(|i| !i.is_empty()) {
            return Ok(strip(id));
        }
        if let Some(id) = last {
            return Ok(strip(id));
        }
    }
    if let Some(id) = last {
        return Ok(strip(id));
    }
    let reason = state
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.clone())
        .unwrap_or_else(|| "ContainerCreating".into());
    Err(match reason.as_str() {
        "ErrImagePull" => {
            format!("container {c:?} in pod {name:?} is waiting to start: image can't be pulled")
        }
        "ImagePullBackOff" => format!(
            "container {c:?} in pod {name:?} is waiting to start: trying and failing to pull image"
        ),
        r => format!("container {c:?} in pod {name:?} is waiting to start: {r}"),
    })
}

/// Runs blocking engine work on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("a blocking engine call panicked")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status})).unwrap()
    }

    #[test]
    fn container_ids_follow_kubelet() {
        let running = pod(json!({"containerStatuses": [{
            "name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": 1,
            "containerID": "barge://new",
            "state": {"running": {}},
            "lastState": {"terminated": {"exitCode": 1, "containerID": "barge://old"}},
        }]}));
        assert_eq!(container_id(&running, "c", false).unwrap(), "new");
        assert_eq!(container_id(&running, "c", true).unwrap(), "old");
        let first = pod(json!({"containerStatuses": [{
            "name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
            "containerID": "barge://new", "state": {"running": {}},
        }]}));
        assert_eq!(
            container_id(&first, "c", true).unwrap_err(),
            "previous terminated container \"c\" in pod \"p\" not found"
        );
        let waiting = pod(json!({"containerStatuses": [{
            "name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ErrImagePull"}},
        }]}));
        assert_eq!(
            container_id(&waiting, "c", false).unwrap_err(),
            "container \"c\" in pod \"p\" is waiting to start: image can't be pulled"
        );
        let crashing = pod(json!({"containerStatuses": [{
            "name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 2,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "containerID": "barge://dead"}},
        }]}));
        assert_eq!(container_id(&crashing, "c", false).unwrap(), "dead");
        assert_eq!(container_id(&crashing, "c", true).unwrap(), "dead");
    }
}
