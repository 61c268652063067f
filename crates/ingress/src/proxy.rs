//! The reverse proxy: HTTP and HTTPS listeners (hyper, HTTP/1.1; rustls on ring with the
//! certificate chosen by SNI from the routing table), each request routed by the current
//! [`Table`] and forwarded to one endpoint of its backend.
//!
//! - The table is swapped whole ([`Proxy::swap`]): a request reads the table once, when it
//!   arrives, so a reload never drops or splits a connection; listeners never restart.
//! - Answers of the proxy itself, as ingress-nginx's: 404 when nothing matches, 503 when the
//!   backend has no endpoint, 502 when the endpoint cannot be reached, 504 when it does not
//!   send its response headers within the read timeout (60 s, or the Ingress's
//!   `nginx.ingress.kubernetes.io/proxy-read-timeout`, see [`crate::routes::Timeouts`]); a
//!   response body that stays silent longer than that between two pieces is cut (the
//!   connection closed), as nginx's `proxy_read_timeout` does.
//! - The backend sees `X-Forwarded-For` (the client appended), `X-Forwarded-Proto`,
//!   `X-Forwarded-Host`, `X-Forwarded-Port`, `X-Real-IP`; hop-by-hop headers are not
//!   forwarded, but an `Upgrade` (WebSocket) is: both upgraded connections are then joined.
//! - Bodies stream both ways (never buffered whole).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;

use crate::routes::{normalize_host, Route, Table};

/// The error of a response body: the backend's, or [`ReadTimeout`].
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the proxy sends.
pub type Body = BoxBody<Bytes, BodyError>;

/// A backend's response body stayed silent longer than its read timeout.
#[derive(Debug, thiserror::Error)]
#[error("the backend sent nothing for {0:?} (proxy-read-timeout)")]
pub struct ReadTimeout(pub Duration);
/// How long connecting to a backend may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The proxy: the current routing table and the connection pool to backends.
pub struct Proxy {
    table: RwLock<Arc<Table>>,
    client: Client<HttpConnector, Incoming>,
    default_cert: Arc<CertifiedKey>,
}

impl Proxy {
    /// A proxy with an empty table (every request 404).
    pub fn new() -> Result<Arc<Proxy>, crate::IngressError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(http);
        // ingress-nginx's "Kubernetes Ingress Controller Fake Certificate": answers TLS for
        // names no Secret covers.
        let fake = rcgen::generate_simple_self_signed(vec!["ingress.local".to_string()])
            .map_err(|e| crate::IngressError::Tls(e.to_string()))?;
        let default_cert = crate::routes::certified_key_from_pem(
            fake.cert.pem().as_bytes(),
            fake.signing_key.serialize_pem().as_bytes(),
        )
        .map_err(crate::IngressError::Tls)?;
        Ok(Arc::new(Proxy {
            table: RwLock::new(Arc::new(Table::default())),
            client,
            default_cert: Arc::new(default_cert),
        }))
    }

    /// Replaces the routing table (requests already routed keep the old one).
    pub fn swap(&self, t: Table) {
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(t);
    }

    /// The current routing table.
    pub fn table(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The TLS configuration of the HTTPS listener (certificates by SNI, HTTP/1.1).
    pub fn tls_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(self.clone())));
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }
}

struct Resolver(Arc<Proxy>);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ingress certificate resolver")
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|n| self.0.table().cert(n))
            .or_else(|| Some(self.0.default_cert.clone()))
    }
}

/// Serves plain HTTP on `listener` until the task is aborted.
pub async fn serve_http(listener: TcpListener, proxy: Arc<Proxy>) {
    loop {
        let Ok((conn, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = conn.set_nodelay(true);
        let proxy = proxy.clone();
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        tokio::spawn(serve_conn(TokioIo::new(conn), proxy, peer, "http", port));
    }
}

/// Serves HTTPS on `listener` until the task is aborted.
pub async fn serve_https(listener: TcpListener, proxy: Arc<Proxy>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(proxy.tls_config());
    loop {
        let Ok((conn, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = conn.set_nodelay(true);
        let (proxy, acceptor) = (proxy.clone(), acceptor.clone());
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        tokio::spawn(async move {
            match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(conn)).await {
                Ok(Ok(tls)) => serve_conn(TokioIo::new(tls), proxy, peer, "https", port).await,
                Ok(Err(e)) => tracing::debug!(%peer, "ingress TLS handshake: {e}"),
                Err(_) => tracing::debug!(%peer, "ingress TLS handshake timed out"),
            }
        });
    }
}

async fn serve_conn<I>(io: I, proxy: Arc<Proxy>, peer: SocketAddr, scheme: &'static str, port: u16)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(handle(&proxy, req, peer, scheme, port).await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(60))
        .serve_connection(io, svc)
        .with_upgrades()
        .await
    {
        tracing::debug!(%peer, "ingress connection: {e}");
    }
}

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(format!(
            "<html>\r\n<head><title>{status}</title></head>\r\n<body>\r\n<center><h1>{status}</h1></center>\r\n<hr><center>{msg}</center>\r\n</body>\r\n</html>\r\n"
        )))
        .map_err(|never| match never {})
        .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/html"),
    );
    r
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and those named in `Connection`.
fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = h
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        if !(keep_upgrade && n == hyper::header::UPGRADE) {
            h.remove(n);
        }
    }
    for n in [
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
    ] {
        h.remove(n);
    }
    h.remove(hyper::header::CONNECTION);
    if keep_upgrade {
        h.insert(
            hyper::header::CONNECTION,
            HeaderValue::from_static("upgrade"),
        );
    } else {
        h.remove(hyper::header::UPGRADE);
    }
}

fn wants_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(hyper::header::UPGRADE)
        && h.get_all(hyper::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Routes and forwards one request.
pub async fn handle(
    proxy: &Proxy,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    scheme: &'static str,
    port: u16,
) -> Response<Body> {
    let host_header = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let host = normalize_host(&host_header);
    let path = req.uri().path().to_string();
    let (backend, timeouts) = match proxy.table().route(&host, &path) {
        Route::Backend(b, t) => (b, t),
        Route::NotFound => return text(StatusCode::NOT_FOUND, "barge ingress"),
    };
    let Some(ep) = backend.pick() else {
        tracing::debug!(backend = %backend.name, "no endpoint");
        return text(StatusCode::SERVICE_UNAVAILABLE, "barge ingress");
    };
    let upgrade = wants_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    parts.uri = match format!("http://{ep}{pq}").parse() {
        Ok(u) => u,
        Err(_) => return text(StatusCode::BAD_REQUEST, "barge ingress"),
    };
    parts.version = hyper::Version::HTTP_11;
    let h = &mut parts.headers;
    strip_hop_by_hop(h, upgrade);
    let client_ip = peer.ip().to_string();
    let xff = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {client_ip}"),
        None => client_ip.clone(),
    };
    let set = |h: &mut HeaderMap, k: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    set(h, "x-forwarded-for", &xff);
    set(h, "x-real-ip", &client_ip);
    set(h, "x-forwarded-proto", scheme);
    set(h, "x-forwarded-host", &host_header);
    set(h, "x-forwarded-port", &port.to_string());
    let out = Request::from_parts(parts, body);
    let mut resp = match tokio::time::timeout(timeouts.read, proxy.client.request(out)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::debug!(backend = %backend.name, %ep, "backend: {e}");
            return text(StatusCode::BAD_GATEWAY, "barge ingress");
        }
        Err(_) => return text(StatusCode::GATEWAY_TIMEOUT, "barge ingress"),
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let backend_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                match (client_upgrade.await, backend_upgrade.await) {
                    (Ok(c), Ok(b)) => {
                        let (mut c, mut b) = (TokioIo::new(c), TokioIo::new(b));
                        let _ = tokio::io::copy_bidirectional(&mut c, &mut b).await;
                    }
                    (Err(e), _) | (_, Err(e)) => tracing::debug!("ingress upgrade: {e}"),
                }
            });
        }
        let (parts, _) = resp.into_parts();
        return Response::from_parts(
            parts,
            Full::new(Bytes::new()).map_err(|n| match n {}).boxed(),
        );
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    Response::from_parts(parts, IdleTimeout::new(body, timeouts.read).boxed())
}

/// A backend's response body, streamed frame by frame, that fails with [`ReadTimeout`] when
/// no frame comes within `timeout` of the previous one (nginx's `proxy_read_timeout` is the
/// time between two reads, not the whole response).
pub struct IdleTimeout<B> {
    inner: B,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<B> IdleTimeout<B> {
    /// Wraps `inner`, allowing `timeout` of silence between frames.
    pub fn new(inner: B, timeout: Duration) -> Self {
        IdleTimeout {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl<B> hyper::body::Body for IdleTimeout<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BodyError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(f)) => {
                let next = tokio::time::Instant::now() + this.timeout;
                this.deadline.as_mut().reset(next);
                Poll::Ready(Some(f.map_err(Into::into)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(ReadTimeout(this.timeout).into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
