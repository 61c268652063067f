//! kube-proxy's service health checks (`pkg/proxy/healthcheck/service_health.go`): for each
//! LoadBalancer Service with `externalTrafficPolicy: Local`, an HTTP server on its
//! `healthCheckNodePort` on every node address answers how many of the Service's endpoints
//! run on this node — 200 when some do, 503 when none — so an external load balancer sends
//! traffic only to nodes that keep it local. The body and headers are kube-proxy's.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::task::JoinHandle;

/// What one health check reports: the Service and its endpoints on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub namespace: String,
    pub name: String,
    pub local_endpoints: usize,
}

impl Health {
    /// kube-proxy's answer: the status, its headers and its JSON body (same layout).
    fn response(&self) -> Response<Body> {
        let body = format!(
            "{{\n\t\"service\": {{\n\t\t\"namespace\": {:?},\n\t\t\"name\": {:?}\n\t}},\n\t\"localEndpoints\": {},\n\t\"serviceProxyHealthy\": true\n}}",
            self.namespace, self.name, self.local_endpoints
        );
        Response::builder()
            .status(if self.local_endpoints > 0 {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            })
            .header("content-type", "application/json")
            .header("x-content-type-options", "nosniff")
            .header(
                "x-load-balancing-endpoint-weight",
                self.local_endpoints.to_string(),
            )
            .body(Body::from(body))
            .expect("a static response")
    }
}

/// The running health check servers, by port.
#[derive(Default)]
pub struct HealthChecks {
    servers: BTreeMap<u16, (Arc<Mutex<Health>>, JoinHandle<()>)>,
}

impl HealthChecks {
    /// Serves exactly `want` (port → health): new ports get a server, gone ones are stopped,
    /// the others answer the new figures at once. A port that cannot be bound is logged and
    /// tried again on the next sync.
    pub async fn sync(&mut self, want: BTreeMap<u16, Health>) {
        self.servers.retain(|port, (_, task)| {
            let keep = want.contains_key(port) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for (port, health) in want {
            if let Some((current, _)) = self.servers.get(&port) {
                *current.lock().unwrap_or_else(|e| e.into_inner()) = health;
                continue;
            }
            let listener = match tokio::net::TcpListener::bind(("0.0.0.0", port)).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(port, service = %health.name, "service health check: {e}");
                    continue;
                }
            };
            let current = Arc::new(Mutex::new(health));
            let task = tokio::spawn(serve(listener, current.clone()));
            self.servers.insert(port, (current, task));
        }
    }
}

impl Drop for HealthChecks {
    fn drop(&mut self) {
        for (_, task) in self.servers.values() {
            task.abort();
        }
    }
}

/// Answers every request on `listener` with the current health.
async fn serve(listener: tokio::net::TcpListener, health: Arc<Mutex<Health>>) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        let health = health.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |_req| {
                let resp = health.lock().unwrap_or_else(|e| e.into_inner()).response();
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(conn), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_as_kube_proxy() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut hc = HealthChecks::default();
        let health = |n| Health {
            namespace: "default".into(),
            name: "web".into(),
            local_endpoints: n,
        };
        hc.sync(BTreeMap::from([(port, health(2))])).await;
        let get = || async move {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let r = get().await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.contains("x-load-balancing-endpoint-weight: 2"), "{r}");
        assert!(
            r.contains("\"localEndpoints\": 2,\n\t\"serviceProxyHealthy\": true"),
            "{r}"
        );
        hc.sync(BTreeMap::from([(port, health(0))])).await;
        assert!(get().await.starts_with("HTTP/1.1 503"));
        hc.sync(BTreeMap::new()).await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err());
    }
}
