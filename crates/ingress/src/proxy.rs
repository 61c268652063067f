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
//! - Backend connections are kept alive and reused ([`crate::pool`]).
//! - Each accepted connection is served whole on one of the [`Workers`] (one thread and
//!   runtime each, with its own pool), as nginx's worker processes.

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
use hyper_util::rt::TokioIo;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;

use crate::pool::{Checkin, Pool};
use crate::routes::{normalize_host, Route, Table};
use crate::workers::Workers;

/// The error of a response body: the backend's, or [`ReadTimeout`].
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the proxy sends.
pub type Body = BoxBody<Bytes, BodyError>;

/// A backend's response body stayed silent longer than its read timeout.
#[derive(Debug, thiserror::Error)]
#[error("the backend sent nothing for {0:?} (proxy-read-timeout)")]
pub struct ReadTimeout(pub Duration);

pub use crate::pool::CONNECT_TIMEOUT;

/// The proxy: the current routing table (the pools of backend connections are the
/// [`Workers`]').
pub struct Proxy {
    table: RwLock<Arc<Table>>,
    default_cert: Arc<CertifiedKey>,
}

impl Proxy {
    /// A proxy with an empty table (every request 404).
    pub fn new() -> Result<Arc<Proxy>, crate::IngressError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
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

    /// Routes a request with the current table (read under its lock, no copy of the table).
    fn route(&self, host: &str, path: &str) -> Route {
        self.table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .route(host, path)
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

/// Accepts the next connection on `listener` (`TCP_NODELAY` set), detached from the
/// caller's runtime to be registered on a worker's.
async fn accept(listener: &TcpListener) -> (std::net::TcpStream, SocketAddr) {
    loop {
        let Ok((conn, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = conn.set_nodelay(true);
        match conn.into_std() {
            Ok(conn) => return (conn, peer),
            Err(e) => tracing::debug!(%peer, "ingress connection: {e}"),
        }
    }
}

/// Serves plain HTTP on `listener` until the task is aborted: accepts here, serves each
/// connection on one of `workers`.
pub async fn serve_http(listener: TcpListener, proxy: Arc<Proxy>, workers: Arc<Workers>) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        let (conn, peer) = accept(&listener).await;
        let proxy = proxy.clone();
        workers.dispatch(move |pool| async move {
            match tokio::net::TcpStream::from_std(conn) {
                Ok(conn) => {
                    let down = Downstream::new(peer, "http", port);
                    serve_conn(TokioIo::new(conn), proxy, pool, down).await
                }
                Err(e) => tracing::debug!(%peer, "ingress connection: {e}"),
            }
        });
    }
}

/// Serves HTTPS on `listener` until the task is aborted: accepts here, makes the TLS
/// handshake and serves each connection on one of `workers`.
pub async fn serve_https(listener: TcpListener, proxy: Arc<Proxy>, workers: Arc<Workers>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(proxy.tls_config());
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        let (conn, peer) = accept(&listener).await;
        let (proxy, acceptor) = (proxy.clone(), acceptor.clone());
        workers.dispatch(move |pool| async move {
            let conn = match tokio::net::TcpStream::from_std(conn) {
                Ok(conn) => conn,
                Err(e) => return tracing::debug!(%peer, "ingress connection: {e}"),
            };
            match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(conn)).await {
                Ok(Ok(tls)) => {
                    let down = Downstream::new(peer, "https", port);
                    serve_conn(TokioIo::new(tls), proxy, pool, down).await
                }
                Ok(Err(e)) => tracing::debug!(%peer, "ingress TLS handshake: {e}"),
                Err(_) => tracing::debug!(%peer, "ingress TLS handshake timed out"),
            }
        });
    }
}

/// One client connection: who it is from and where it came in, with the values of the
/// `X-Real-IP`/`X-Forwarded-*` headers that do not change from one request to the next.
#[derive(Debug, Clone)]
pub struct Downstream {
    /// The client's address.
    pub peer: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The listener's port.
    pub port: u16,
    client_ip: HeaderValue,
    port_value: HeaderValue,
}

impl Downstream {
    /// A connection from `peer` on the listener of `scheme` (`http`/`https`) and `port`.
    pub fn new(peer: SocketAddr, scheme: &'static str, port: u16) -> Downstream {
        Downstream {
            peer,
            scheme,
            port,
            client_ip: HeaderValue::try_from(peer.ip().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("")),
            port_value: HeaderValue::from(port),
        }
    }
}

async fn serve_conn<I>(io: I, proxy: Arc<Proxy>, pool: Arc<Pool>, down: Downstream)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let peer = down.peer;
    let down = Arc::new(down);
    let svc = hyper::service::service_fn(move |req| {
        let (proxy, pool, down) = (proxy.clone(), pool.clone(), down.clone());
        async move { Ok::<_, Infallible>(handle(&proxy, &pool, req, &down).await) }
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

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

/// Hop-by-hop headers (RFC 9110 §7.6.1) and those named in `Connection`.
fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    use hyper::header::{
        CONNECTION, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING,
        UPGRADE,
    };
    if h.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = h
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for n in named {
            if !(keep_upgrade && n == UPGRADE) {
                h.remove(n);
            }
        }
        h.remove(CONNECTION);
    }
    for n in [
        KEEP_ALIVE,
        PROXY_CONNECTION,
        PROXY_AUTHENTICATE,
        PROXY_AUTHORIZATION,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
    ] {
        h.remove(n);
    }
    if keep_upgrade {
        h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        h.remove(UPGRADE);
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

/// Routes and forwards one request that came in on `down`, over a connection of `pool`.
pub async fn handle(
    proxy: &Proxy,
    pool: &Pool,
    mut req: Request<Incoming>,
    down: &Downstream,
) -> Response<Body> {
    // The request's Host, else its URI's authority (absolute-form), else empty.
    let host_value = match req.headers().get(hyper::header::HOST) {
        Some(h) => h.clone(),
        None => req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .unwrap_or_else(|| HeaderValue::from_static("")),
    };
    let route = {
        let host = normalize_host(host_value.to_str().unwrap_or_default());
        proxy.route(&host, req.uri().path())
    };
    let (backend, timeouts) = match route {
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
    // Origin-form to the backend (an absolute-form request keeps only its path and query).
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let mut u = hyper::http::uri::Parts::default();
        u.path_and_query = Some(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| hyper::http::uri::PathAndQuery::from_static("/")),
        );
        parts.uri = match hyper::Uri::from_parts(u) {
            Ok(u) => u,
            Err(_) => return text(StatusCode::BAD_REQUEST, "barge ingress"),
        };
    }
    parts.version = hyper::Version::HTTP_11;
    let h = &mut parts.headers;
    strip_hop_by_hop(h, upgrade);
    if !h.contains_key(hyper::header::HOST) {
        // HTTP/1.1 needs one: the client's authority, else the endpoint (as hyper's client).
        let host = if host_value.is_empty() {
            HeaderValue::from_str(&ep.to_string()).unwrap_or(host_value.clone())
        } else {
            host_value.clone()
        };
        h.insert(hyper::header::HOST, host);
    }
    let xff = match h.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) => HeaderValue::from_str(&format!(
            "{prev}, {}",
            down.client_ip.to_str().unwrap_or_default()
        ))
        .unwrap_or_else(|_| down.client_ip.clone()),
        None => down.client_ip.clone(),
    };
    h.insert(X_FORWARDED_FOR, xff);
    h.insert(X_REAL_IP, down.client_ip.clone());
    h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(down.scheme));
    h.insert(X_FORWARDED_HOST, host_value);
    h.insert(X_FORWARDED_PORT, down.port_value.clone());
    let out = Request::from_parts(parts, body);
    let (mut resp, checkin) = match tokio::time::timeout(timeouts.read, pool.send(ep, out)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::debug!(backend = %backend.name, %ep, "backend: {e}");
            return text(StatusCode::BAD_GATEWAY, "barge ingress");
        }
        Err(_) => return text(StatusCode::GATEWAY_TIMEOUT, "barge ingress"),
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // The backend connection becomes the upgraded stream: never back to the pool.
        drop(checkin);
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
    let body = IdleTimeout::new(body, timeouts.read);
    Response::from_parts(parts, Returning::new(body, checkin).boxed())
}

/// A backend's response body, streamed frame by frame, that fails with [`ReadTimeout`] when
/// the backend stays silent for `timeout` while the proxy waits to read from it (nginx's
/// `proxy_read_timeout`: the time between two reads, not the whole response; a client slow
/// to take the body does not count). The timer is armed only while waiting.
pub struct IdleTimeout<B> {
    inner: B,
    timeout: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
}

impl<B> IdleTimeout<B> {
    /// Wraps `inner`, allowing `timeout` of silence between frames.
    pub fn new(inner: B, timeout: Duration) -> Self {
        IdleTimeout {
            inner,
            timeout,
            deadline: None,
            armed: false,
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
                this.armed = false;
                Poll::Ready(Some(f.map_err(Into::into)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if !this.armed {
                    let next = tokio::time::Instant::now() + this.timeout;
                    match &mut this.deadline {
                        Some(d) => d.as_mut().reset(next),
                        None => this.deadline = Some(Box::pin(tokio::time::sleep_until(next))),
                    }
                    this.armed = true;
                }
                let d = this.deadline.as_mut().expect("armed above");
                match d.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(ReadTimeout(this.timeout).into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A backend's response body that gives its connection back to the pool once read to its
/// end (see [`crate::pool`]); dropped before that, the connection is closed.
struct Returning<B: hyper::body::Body> {
    inner: B,
    checkin: Option<Checkin>,
    ended: bool,
}

impl<B: hyper::body::Body> Returning<B> {
    fn new(inner: B, checkin: Checkin) -> Self {
        Returning {
            inner,
            checkin: Some(checkin),
            ended: false,
        }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Returning<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = r {
            this.ended = true;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl<B: hyper::body::Body> Drop for Returning<B> {
    fn drop(&mut self) {
        if let Some(c) = self.checkin.take() {
            if self.ended || self.inner.is_end_stream() {
                c.done();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use http_body_util::Empty;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use k8s_openapi::api::networking::v1::Ingress;

    /// A backend recording the headers of each request and counting its connections.
    async fn backend() -> (SocketAddr, Arc<Mutex<Vec<HeaderMap>>>, Arc<Mutex<usize>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (seen, conns) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(0)));
        let (s, c) = (seen.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((io, _)) = l.accept().await {
                *c.lock().unwrap() += 1;
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        s.lock().unwrap().push(req.headers().clone());
                        async {
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                                b"hello",
                            ))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(io), svc)
                        .await;
                });
            }
        });
        (addr, seen, conns)
    }

    fn table(backend: SocketAddr) -> Table {
        let ingress: Ingress = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "t"},
            "spec": {"rules": [{"host": "a.example", "http": {"paths": [{"path": "/",
                "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}
        }))
        .unwrap();
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "t"},
            "spec": {"ports": [{"port": 80}]}
        }))
        .unwrap();
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "t",
                "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"port": backend.port()}],
            "endpoints": [{"addresses": [backend.ip().to_string()], "conditions": {"ready": true}}]
        }))
        .unwrap();
        let (t, problems) = Table::build(&crate::routes::Inputs {
            ingresses: vec![&ingress],
            services: &[Arc::new(service)],
            slices: &[Arc::new(slice)],
            secrets: &[],
        });
        assert!(problems.is_empty(), "{problems:?}");
        t
    }

    #[tokio::test]
    async fn forwards_with_forwarded_headers_without_hop_by_hop_ones_on_one_kept_connection() {
        let (be, seen, conns) = backend().await;
        let proxy = Proxy::new().unwrap();
        proxy.swap(table(be));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = l.local_addr().unwrap();
        let workers = Arc::new(Workers::start(1, "test-proxy").unwrap());
        let server = tokio::spawn(serve_http(l, proxy, workers));
        let io = tokio::net::TcpStream::connect(front).await.unwrap();
        let (mut client, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .unwrap();
        tokio::spawn(conn);
        for i in 0..3 {
            let mut req = Request::get("/x?y=1")
                .header("host", "A.example:8080")
                .header("keep-alive", "timeout=5")
                .header("connection", "x-hop");
            if i == 2 {
                req = req.header("x-forwarded-for", "192.0.2.1");
            }
            req = req.header("x-hop", "1");
            client.ready().await.unwrap();
            let resp = client
                .send_request(req.body(Empty::<Bytes>::new()).unwrap())
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"hello");
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3);
        for (i, h) in seen.iter().enumerate() {
            let get = |k: &str| h.get(k).map(|v| v.to_str().unwrap().to_string());
            assert_eq!(get("host").as_deref(), Some("A.example:8080"));
            assert_eq!(get("x-forwarded-host").as_deref(), Some("A.example:8080"));
            assert_eq!(get("x-real-ip").as_deref(), Some("127.0.0.1"));
            assert_eq!(get("x-forwarded-proto").as_deref(), Some("http"));
            assert_eq!(get("x-forwarded-port"), Some(front.port().to_string()));
            let xff = if i == 2 {
                "192.0.2.1, 127.0.0.1"
            } else {
                "127.0.0.1"
            };
            assert_eq!(get("x-forwarded-for").as_deref(), Some(xff));
            assert_eq!(get("keep-alive"), None);
            assert_eq!(get("x-hop"), None, "named in Connection: hop-by-hop");
        }
        // The three requests went over one kept-alive backend connection.
        assert_eq!(*conns.lock().unwrap(), 1);
        server.abort();
    }

    #[tokio::test]
    async fn the_read_timer_is_armed_only_while_waiting() {
        // A body that is ready at once: no timer is made.
        let mut b = IdleTimeout::new(
            Full::new(Bytes::from_static(b"x")).map_err(|n| -> BodyError { match n {} }),
            Duration::from_millis(10),
        );
        let f = b.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), Bytes::from_static(b"x"));
        assert!(b.deadline.is_none());
        // A body that never sends: ReadTimeout after the timeout.
        let (_tx, rx) =
            tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, BodyError>>(1);
        let silent = http_body_util::StreamBody::new(tokio_stream_like(rx));
        let mut b = IdleTimeout::new(silent, Duration::from_millis(50));
        let err = tokio::time::timeout(Duration::from_secs(10), b.frame())
            .await
            .expect("the read timeout fires")
            .unwrap()
            .unwrap_err();
        assert!(err.is::<ReadTimeout>(), "{err}");
    }

    /// An mpsc receiver as a `Stream` (no tokio-stream dependency).
    fn tokio_stream_like<T>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> + Unpin {
        Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }
}
