//! Readiness and liveness probes as kubelet runs them (`pkg/kubelet/prober`): exec (an engine
//! exec, as a health check), httpGet (HTTP/1.1 to the pod's address; 200–399 is success) and
//! tcpSocket (a connection) and grpc (`grpc.health.v1.Health/Check` over plaintext HTTP/2,
//! `pkg/probe/grpc`: `SERVING` is success). Each probe waits `initialDelaySeconds` after the container
//! started, then runs every `periodSeconds` with `timeoutSeconds`; its result flips after
//! `successThreshold` successes or `failureThreshold` failures in a row. A readiness probe
//! starts as failed, a liveness probe as succeeded.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Engine;

/// One probe's memory, for one engine container.
#[derive(Debug, Clone)]
pub struct ProbeState {
    /// The engine container it probes (a new container starts a new state).
    pub container_id: String,
    pub result: bool,
    successes: i32,
    failures: i32,
    last: Option<Instant>,
}

impl ProbeState {
    /// A fresh state: readiness starts failed, liveness succeeded.
    pub fn new(container_id: &str, initial: bool) -> Self {
        ProbeState {
            container_id: container_id.to_string(),
            result: initial,
            successes: 0,
            failures: 0,
            last: None,
        }
    }

    /// Whether the probe is due, `running_for` after the container started.
    pub fn due(&self, p: &Probe, running_for: Duration) -> bool {
        let delay = Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        let period = Duration::from_secs(p.period_seconds.unwrap_or(10).max(1) as u64);
        running_for >= delay && self.last.is_none_or(|l| l.elapsed() >= period)
    }

    /// Whether the probe failed its `failureThreshold` in a row (a startup probe that never
    /// succeeded: the container is restarted).
    pub fn failed(&self, p: &Probe) -> bool {
        self.failures >= p.failure_threshold.unwrap_or(3).max(1)
    }

    /// Records one outcome; returns whether the result changed.
    pub fn record(&mut self, p: &Probe, ok: bool) -> bool {
        self.last = Some(Instant::now());
        if ok {
            self.successes += 1;
            self.failures = 0;
            if !self.result && self.successes >= p.success_threshold.unwrap_or(1).max(1) {
                self.result = true;
                return true;
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.result && self.failures >= p.failure_threshold.unwrap_or(3).max(1) {
                self.result = false;
                return true;
            }
        }
        false
    }
}

/// A port of a probe: a number, or the name of one of the container's ports.
fn port(c: &Container, p: &IntOrString) -> Option<u16> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|cp| cp.name.as_deref() == Some(name.as_str()))
            .and_then(|cp| u16::try_from(cp.container_port).ok()),
    }
}

/// Runs probe `p` once against container `c` (engine ID `id`) of a pod at `pod_ip`; `Ok` on
/// success, else kube's failure text.
pub async fn run(
    engine: &Engine,
    c: &Container,
    id: &str,
    pod_ip: &str,
    p: &Probe,
) -> Result<(), String> {
    let timeout = Duration::from_secs(p.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(e) = &p.exec {
        let argv = e.command.clone().unwrap_or_default();
        let (containers, id) = (engine.containers.clone(), id.to_string());
        let (code, out) =
            tokio::task::spawn_blocking(move || containers.exec_probe(&id, argv, timeout))
                .await
                .map_err(|e| e.to_string())?;
        return if code == 0 {
            Ok(())
        } else {
            Err(format!(
                "command failed with exit code {code}: {}",
                out.trim()
            ))
        };
    }
    if let Some(t) = &p.tcp_socket {
        let port = port(c, &t.port).ok_or("invalid port")?;
        let host = t.host.clone().unwrap_or_else(|| pod_ip.to_string());
        return match tokio::time::timeout(
            timeout,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: connect: {e}")),
            Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    if let Some(h) = &p.http_get {
        let port = port(c, &h.port).ok_or("invalid port")?;
        let host = h.host.clone().unwrap_or_else(|| pod_ip.to_string());
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n"
        );
        for hh in h.http_headers.iter().flatten() {
            req.push_str(&format!("{}: {}\r\n", hh.name, hh.value));
        }
        req.push_str("\r\n");
        let url = format!("http://{host}:{port}{path}");
        let attempt = async {
            let mut s = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| format!("Get \"{url}\": dial tcp {host}:{port}: connect: {e}"))?;
            s.write_all(req.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 256];
            let mut n = 0;
            while n < buf.len() {
                let r = s.read(&mut buf[n..]).await.map_err(|e| e.to_string())?;
                if r == 0 || buf[..n + r].windows(2).any(|w| w == b"\r\n") {
                    n += r;
                    break;
                }
                n += r;
            }
            let line = String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            let code: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("Get \"{url}\": malformed HTTP response"))?;
            if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(format!("HTTP probe failed with statuscode: {code}"))
            }
        };
        return match tokio::time::timeout(timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            )),
        };
    }
    if let Some(g) = &p.grpc {
        let port = u16::try_from(g.port).map_err(|_| "invalid port".to_string())?;
        return grpc_check(
            pod_ip,
            port,
            g.service.as_deref().unwrap_or_default(),
            timeout,
        )
        .await;
    }
    Ok(())
}

/// `grpc.health.v1.HealthCheckRequest` (`grpc/health/v1/health.proto`).
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

/// `grpc.health.v1.HealthCheckResponse`: `status` is the `ServingStatus` enum.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

/// `HealthCheckResponse.ServingStatus`'s names by number, as Go's `String()` gives them.
fn serving_status_name(n: i32) -> String {
    match n {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        n => n.to_string(),
    }
}

/// How a Go `time.Duration` of whole seconds prints (`1s`, `1m30s`).
fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

/// kubelet's gRPC probe (`pkg/probe/grpc/grpc.go`): dials `host:port` in plaintext (retrying,
/// as grpc-go's blocking dial, until `timeout`), calls `grpc.health.v1.Health/Check` for
/// `service` (empty: the server as a whole) with user agent `kube-probe/1.33`, all within
/// `timeout`. `Ok` only for `SERVING`; every failure is kubelet's message.
pub async fn grpc_check(
    host: &str,
    port: u16,
    service: &str,
    timeout: Duration,
) -> Result<(), String> {
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .and_then(|e| e.user_agent("kube-probe/1.33"))
        .map_err(|e| format!("error: failed to connect service at \"{addr}\": {e}"))?
        .connect_timeout(timeout);
    // grpc-go's blocking dial retries a refused connection until the context ends.
    let channel = loop {
        match tokio::time::timeout_at(deadline, endpoint.connect()).await {
            Ok(Ok(c)) => break c,
            Ok(Err(_)) if tokio::time::Instant::now() + Duration::from_millis(100) < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => {
                return Err(format!(
                    "timeout: failed to connect service \"{addr}\" within {}: context deadline exceeded",
                    go_duration(timeout)
                ))
            }
        }
    };
    let mut client = tonic::client::Grpc::new(channel);
    let call = async {
        client
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        client
            .unary(
                tonic::Request::new(HealthCheckRequest {
                    service: service.to_string(),
                }),
                tonic::codegen::http::uri::PathAndQuery::from_static(
                    "/grpc.health.v1.Health/Check",
                ),
                tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default(),
            )
            .await
    };
    let resp = match tokio::time::timeout_at(deadline, call).await {
        Err(_) => {
            return Err(format!(
                "timeout: health rpc did not complete within {}",
                go_duration(timeout)
            ))
        }
        Ok(Err(st)) => {
            return Err(match st.code() {
                tonic::Code::Unimplemented => format!(
                    "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
                    st.message()
                ),
                tonic::Code::DeadlineExceeded => format!(
                    "timeout: health rpc did not complete within {}",
                    go_duration(timeout)
                ),
                code => format!(
                    "error: health rpc probe failed: rpc error: code = {code:?} desc = {}",
                    st.message()
                ),
            })
        }
        Ok(Ok(r)) => r.into_inner(),
    };
    if resp.status == 1 {
        Ok(())
    } else {
        Err(format!(
            "service unhealthy (responded with \"{}\")",
            serving_status_name(resp.status)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(v: serde_json::Value) -> Probe {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn thresholds_and_timing() {
        let p = probe(
            serde_json::json!({"periodSeconds": 5, "initialDelaySeconds": 2,
            "failureThreshold": 2, "successThreshold": 1}),
        );
        let mut s = ProbeState::new("c1", false);
        assert!(!s.due(&p, Duration::from_secs(1)));
        assert!(s.due(&p, Duration::from_secs(2)));
        assert!(s.record(&p, true));
        assert!(s.result);
        assert!(!s.due(&p, Duration::from_secs(3)), "within the period");
        assert!(!s.record(&p, false), "one failure of two");
        assert!(s.record(&p, false));
        assert!(!s.result);
    }

    /// A `grpc.health.v1.Health` server on loopback answering `status` for service `""` and
    /// `SERVICE_UNKNOWN` (as grpc-go's health server's NotFound is not modelled) for others;
    /// served under `name` so another name makes the server not implement the protocol.
    mod health {
        use super::super::{HealthCheckRequest, HealthCheckResponse};
        use std::convert::Infallible;
        use tonic::codegen::{http, BoxFuture, Context, Poll, Service};

        #[derive(Clone)]
        pub struct Check(pub i32);

        impl Service<tonic::Request<HealthCheckRequest>> for Check {
            type Response = tonic::Response<HealthCheckResponse>;
            type Error = tonic::Status;
            type Future = BoxFuture<Self::Response, tonic::Status>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), tonic::Status>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, req: tonic::Request<HealthCheckRequest>) -> Self::Future {
                let status = if req.get_ref().service.is_empty() {
                    self.0
                } else {
                    3
                };
                let slow = req.get_ref().service == "slow";
                Box::pin(async move {
                    if slow {
                        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                    }
                    Ok(tonic::Response::new(HealthCheckResponse { status }))
                })
            }
        }

        macro_rules! server {
            ($ty:ident, $name:literal) => {
                #[derive(Clone)]
                pub struct $ty(pub i32);
                impl tonic::server::NamedService for $ty {
                    const NAME: &'static str = $name;
                }
                impl Service<http::Request<tonic::body::Body>> for $ty {
                    type Response = http::Response<tonic::body::Body>;
                    type Error = Infallible;
                    type Future = BoxFuture<Self::Response, Infallible>;
                    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
                        Poll::Ready(Ok(()))
                    }
                    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
                        let check = Check(self.0);
                        Box::pin(async move {
                            let mut g = tonic::server::Grpc::new(tonic_prost::ProstCodec::<
                                HealthCheckResponse,
                                HealthCheckRequest,
                            >::default());
                            Ok(g.unary(check, req).await)
                        })
                    }
                }
            };
        }
        server!(Health, "grpc.health.v1.Health");
        server!(Other, "other.v1.Other");
    }

    /// Serves `svc` on a loopback port; the server task ends with the test's runtime.
    async fn serve<S>(svc: S) -> u16
    where
        S: tonic::codegen::Service<
                tonic::codegen::http::Request<tonic::body::Body>,
                Response = tonic::codegen::http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let incoming = tonic::transport::server::TcpIncoming::from(l);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(incoming),
        );
        port
    }

    #[tokio::test]
    async fn grpc_probe_against_a_health_server() {
        let t = Duration::from_secs(5);
        let serving = serve(health::Health(1)).await;
        assert_eq!(grpc_check("127.0.0.1", serving, "", t).await, Ok(()));
        assert_eq!(
            grpc_check("127.0.0.1", serving, "db", t).await,
            Err("service unhealthy (responded with \"SERVICE_UNKNOWN\")".into())
        );
        let not_serving = serve(health::Health(2)).await;
        assert_eq!(
            grpc_check("127.0.0.1", not_serving, "", t).await,
            Err("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
        let other = serve(health::Other(1)).await;
        let e = grpc_check("127.0.0.1", other, "", t).await.unwrap_err();
        assert!(
            e.starts_with("error: this server does not implement the grpc health protocol (grpc.health.v1.Health)"),
            "{e}"
        );
        let e = grpc_check("127.0.0.1", serving, "slow", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(e, "timeout: health rpc did not complete within 1s");
        // A closed port: grpc-go keeps dialing until the probe's timeout.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = grpc_check("127.0.0.1", closed, "", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            format!("timeout: failed to connect service \"127.0.0.1:{closed}\" within 1s: context deadline exceeded")
        );
    }

    #[test]
    fn grpc_names_and_durations() {
        assert_eq!(serving_status_name(2), "NOT_SERVING");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3601)), "1h0m1s");
    }

    #[test]
    fn named_ports() {
        let c: Container = serde_json::from_value(serde_json::json!({"name": "a",
            "ports": [{"name": "http", "containerPort": 8080}]}))
        .unwrap();
        assert_eq!(port(&c, &IntOrString::String("http".into())), Some(8080));
        assert_eq!(port(&c, &IntOrString::Int(81)), Some(81));
        assert_eq!(port(&c, &IntOrString::String("nope".into())), None);
    }
}
