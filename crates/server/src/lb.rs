//! The agent's client-side load balancer over the cluster's servers (k3s's agent
//! `loadbalancer` package): a TCP proxy on `127.0.0.1:<ephemeral>` that forwards each
//! connection to the server it currently uses, moving on to the next of the list (wrapping
//! round) when that one cannot be reached. The agent's Kubernetes client talks to it, so a
//! server going away costs one reconnect (server certificates carry the SAN `127.0.0.1`).
//!
//! TCP only: TLS goes through end to end, so the client still verifies the server against
//! the cluster CA.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// How long one server may take to accept a connection before the next is tried.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(3);

/// A running load balancer (its accept loop ends with the runtime or [`LoadBalancer::abort`]).
pub struct LoadBalancer {
    addr: std::net::SocketAddr,
    current: Arc<AtomicUsize>,
    servers: Arc<Vec<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl LoadBalancer {
    /// Binds `127.0.0.1:0` and forwards to `servers` (`HOST:PORT` each, tried in order).
    pub async fn start(servers: Vec<String>) -> std::io::Result<LoadBalancer> {
        if servers.is_empty() {
            return Err(std::io::Error::other("no server to balance over"));
        }
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let current = Arc::new(AtomicUsize::new(0));
        let servers = Arc::new(servers);
        let (c, s) = (current.clone(), servers.clone());
        let task = tokio::spawn(async move {
            loop {
                let (conn, _) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("load balancer: accepting: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (c, s) = (c.clone(), s.clone());
                tokio::spawn(async move {
                    if let Some(mut upstream) = dial(&s, &c).await {
                        let mut conn = conn;
                        let _ = conn.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                    }
                });
            }
        });
        tracing::info!(%addr, servers = ?servers, "agent load balancer listening");
        Ok(LoadBalancer {
            addr,
            current,
            servers,
            task,
        })
    }

    /// The local address clients connect to.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// The server connections go to now.
    pub fn current(&self) -> &str {
        &self.servers[self.current.load(Ordering::Relaxed) % self.servers.len()]
    }

    /// Stops accepting.
    pub fn abort(&self) {
        self.task.abort();
    }
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects to the current server, else to each next one in turn (the first that answers
/// becomes current); `None` when none does.
async fn dial(servers: &[String], current: &AtomicUsize) -> Option<TcpStream> {
    let start = current.load(Ordering::Relaxed);
    for i in 0..servers.len() {
        let idx = (start + i) % servers.len();
        let server = &servers[idx];
        match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(server.as_str())).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                if idx != start % servers.len() {
                    tracing::warn!(server = %server, "load balancer: failed over");
                    current.store(idx, Ordering::Relaxed);
                }
                return Some(s);
            }
            Ok(Err(e)) => tracing::warn!(server = %server, "load balancer: dial: {e}"),
            Err(_) => tracing::warn!(server = %server, "load balancer: dial timed out"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server answering each connection with `tag` then closing it.
    async fn tagged(tag: &'static [u8]) -> (String, tokio::task::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let t = tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                let _ = c.write_all(tag).await;
            }
        });
        (addr, t)
    }

    async fn read_via(lb: &LoadBalancer) -> Vec<u8> {
        let mut c = TcpStream::connect(lb.local_addr()).await.unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out).await;
        out
    }

    #[tokio::test]
    async fn forwards_to_the_first_server_and_fails_over_to_the_next() {
        let (a, ta) = tagged(b"a").await;
        let (b, _tb) = tagged(b"b").await;
        // A closed port first: the list is walked to the first that answers.
        let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_addr = dead.local_addr().unwrap().to_string();
        drop(dead);
        let lb = LoadBalancer::start(vec![dead_addr, a.clone(), b.clone()])
            .await
            .unwrap();
        assert_eq!(read_via(&lb).await, b"a");
        assert_eq!(lb.current(), a);
        // It stays on a while a answers.
        assert_eq!(read_via(&lb).await, b"a");
        // a goes away: the next connection goes to b, which becomes current.
        ta.abort();
        let _ = ta.await;
        assert_eq!(read_via(&lb).await, b"b");
        assert_eq!(lb.current(), b);
        assert_eq!(read_via(&lb).await, b"b");
    }

    #[tokio::test]
    async fn no_server_reachable_closes_the_connection() {
        let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_addr = dead.local_addr().unwrap().to_string();
        drop(dead);
        let lb = LoadBalancer::start(vec![dead_addr]).await.unwrap();
        assert!(read_via(&lb).await.is_empty());
        assert!(LoadBalancer::start(Vec::new()).await.is_err());
    }
}
