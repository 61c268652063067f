//! The keep-alive connections from the proxy to backend endpoints: HTTP/1.1 connections
//! (hyper's `client::conn::http1`) kept idle per endpoint, as nginx's upstream `keepalive`.
//!
//! - A connection goes back to the pool when the response body it carried has been read to
//!   its end ([`Checkin`], dropped by the body wrapper); a response cut short, an error or an
//!   upgrade (WebSocket) closes it instead.
//! - Idle connections are reused newest first; at most [`MAX_IDLE_PER_ENDPOINT`] are kept per
//!   endpoint and none longer than [`IDLE_TIMEOUT`] (a sweeper task closes the stale ones).
//! - A request that a reused connection closed before sending (the backend closed it while
//!   idle) is sent again on another connection, as hyper-util's client does; a request already
//!   (partly) sent is never repeated.
//!
//! Invariant: the pool's lock is held only to push or pop an entry, never across an await.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// How long connecting to a backend may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an idle connection is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Idle connections kept per endpoint (ingress-nginx's `upstream-keepalive-connections`).
pub const MAX_IDLE_PER_ENDPOINT: usize = 320;

/// Errors of sending a request to a backend endpoint (the proxy answers 502).
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("connecting to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("connecting to {0}: timed out after {CONNECT_TIMEOUT:?}")]
    ConnectTimeout(SocketAddr),
    #[error("HTTP/1.1 handshake with {0}: {1}")]
    Handshake(SocketAddr, hyper::Error),
    #[error("sending the request to {0}: {1}")]
    Send(SocketAddr, hyper::Error),
}

struct Idle {
    tx: SendRequest<Incoming>,
    since: Instant,
}

#[derive(Default)]
struct Inner {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
    /// Set once the sweeper task runs.
    sweeper: std::sync::OnceLock<()>,
}

/// The pool (cheap to share: one per proxy).
#[derive(Default)]
pub struct Pool {
    inner: Arc<Inner>,
}

/// A connection lent to one request: [`Checkin::done`] gives it back once its response has
/// been read whole; dropping it closes the connection.
pub struct Checkin {
    pool: Arc<Inner>,
    ep: SocketAddr,
    tx: SendRequest<Incoming>,
}

impl Pool {
    /// Sends `req` (origin-form URI, `Host` set) to `ep` on an idle connection or a new one;
    /// returns the response head and the connection to give back after its body.
    pub async fn send(
        &self,
        ep: SocketAddr,
        mut req: Request<Incoming>,
    ) -> Result<(Response<Incoming>, Checkin), PoolError> {
        loop {
            let (mut tx, reused) = match self.take_idle(ep) {
                Some(tx) => (tx, true),
                None => (connect(ep).await?, false),
            };
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    let checkin = Checkin {
                        pool: self.inner.clone(),
                        ep,
                        tx,
                    };
                    return Ok((resp, checkin));
                }
                Err(mut e) => match e.take_message() {
                    // Never sent: the idle connection was closed under it; try another.
                    Some(r) if reused => req = r,
                    _ => return Err(PoolError::Send(ep, e.into_error())),
                },
            }
        }
    }

    /// The newest ready idle connection to `ep`; stale and closed ones are dropped.
    fn take_idle(&self, ep: SocketAddr) -> Option<SendRequest<Incoming>> {
        let mut idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(&ep)?;
        while let Some(i) = list.pop() {
            if i.tx.is_ready() && i.since.elapsed() < IDLE_TIMEOUT {
                return Some(i.tx);
            }
        }
        None
    }

    /// Idle connections to `ep` (for tests).
    #[cfg(test)]
    fn idle(&self, ep: SocketAddr) -> usize {
        let idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        idle.get(&ep).map_or(0, Vec::len)
    }
}

async fn connect(ep: SocketAddr) -> Result<SendRequest<Incoming>, PoolError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(ep))
        .await
        .map_err(|_| PoolError::ConnectTimeout(ep))?
        .map_err(|e| PoolError::Connect(ep, e))?;
    let _ = stream.set_nodelay(true);
    let (tx, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| PoolError::Handshake(ep, e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(%ep, "ingress backend connection: {e}");
        }
    });
    Ok(tx)
}

impl Inner {
    fn put(self: &Arc<Self>, ep: SocketAddr, tx: SendRequest<Incoming>) {
        {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            let list = idle.entry(ep).or_default();
            if list.len() >= MAX_IDLE_PER_ENDPOINT {
                return;
            }
            list.push(Idle {
                tx,
                since: Instant::now(),
            });
        }
        self.sweeper.get_or_init(|| {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(sweep(Arc::downgrade(self)));
            }
        });
    }
}

/// Closes idle connections older than [`IDLE_TIMEOUT`] (or closed by the backend) every
/// [`IDLE_TIMEOUT`], until the pool is dropped.
async fn sweep(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(IDLE_TIMEOUT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let stale: Vec<Idle> = {
            let mut idle = inner.idle.lock().unwrap_or_else(PoisonError::into_inner);
            let mut stale = Vec::new();
            for list in idle.values_mut() {
                let (keep, old) = std::mem::take(list)
                    .into_iter()
                    .partition(|i| !i.tx.is_closed() && i.since.elapsed() < IDLE_TIMEOUT);
                *list = keep;
                stale.extend::<Vec<Idle>>(old);
            }
            idle.retain(|_, l| !l.is_empty());
            stale
        };
        // Dropping a sender closes its connection; done outside the lock.
        drop(stale);
    }
}

impl Checkin {
    /// Gives the connection back: at once when it is ready for the next request, else (the
    /// request body still going out) once it is; a closed connection is dropped.
    pub fn done(self) {
        let Checkin { pool, ep, mut tx } = self;
        if tx.is_closed() {
            return;
        }
        if tx.is_ready() {
            pool.put(ep, tx);
        } else if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if tx.ready().await.is_ok() {
                    pool.put(ep, tx);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A backend counting its connections; it closes each after `per_conn` responses.
    async fn backend(per_conn: usize) -> (SocketAddr, Arc<AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let c = conns.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let served = Arc::new(AtomicUsize::new(0));
                    let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                        let n = served.fetch_add(1, Ordering::SeqCst) + 1;
                        async move {
                            let mut r = Response::new(Full::new(Bytes::from_static(b"ok")));
                            if n >= per_conn {
                                r.headers_mut()
                                    .insert("connection", "close".parse().unwrap());
                            }
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        (addr, conns)
    }

    /// A request with an empty `Incoming` body, as the proxy forwards: taken from a server.
    async fn get(pool: &Pool, ep: SocketAddr) -> Bytes {
        // `Incoming` cannot be built directly: round-trip a request through a local server.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Request<Incoming>>(1);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let tx = tx.clone();
                async move {
                    tx.send(req).await.unwrap();
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
        let s = tokio::net::TcpStream::connect(front).await.unwrap();
        let (mut client, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .unwrap();
        tokio::spawn(conn);
        let sent = client.send_request(
            Request::get("/")
                .header("host", "x")
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap(),
        );
        let req = rx.recv().await.unwrap();
        let (resp, checkin) = pool.send(ep, req).await.expect("a response");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        checkin.done();
        let _ = sent.await;
        server.abort();
        body
    }

    #[tokio::test]
    async fn reuses_a_connection_and_replaces_one_the_backend_closed() {
        let (ep, conns) = backend(3).await;
        let pool = Pool::default();
        for i in 1..=3 {
            assert_eq!(&get(&pool, ep).await[..], b"ok");
            assert_eq!(
                conns.load(Ordering::SeqCst),
                1,
                "request {i} reused the connection"
            );
        }
        // The backend closed the connection after the third response ("connection: close"):
        // the pool does not keep it, the fourth request opens a new one.
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.idle(ep) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(&get(&pool, ep).await[..], b"ok");
        assert_eq!(conns.load(Ordering::SeqCst), 2);
        assert_eq!(pool.idle(ep), 1);
    }

    #[tokio::test]
    async fn a_connection_not_read_to_its_end_is_not_reused() {
        let (ep, conns) = backend(100).await;
        let pool = Pool::default();
        assert_eq!(&get(&pool, ep).await[..], b"ok");
        assert_eq!(pool.idle(ep), 1);
        // Checked out and dropped without `done`: closed, not returned.
        let tx = pool.take_idle(ep).expect("the idle connection");
        drop(tx);
        assert_eq!(pool.idle(ep), 0);
        assert_eq!(&get(&pool, ep).await[..], b"ok");
        assert_eq!(conns.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_a_connect_error() {
        let ep = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        assert!(matches!(connect(ep).await, Err(PoolError::Connect(..))));
    }
}
