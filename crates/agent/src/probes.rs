//! Readiness and liveness probes as kubelet runs them (`pkg/kubelet/prober`): exec (an engine
//! exec, as a health check), httpGet (HTTP/1.1 to the pod's address; 200–399 is success) and
//! tcpSocket (a connection). Each probe waits `initialDelaySeconds` after the container
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
    // grpc: not yet; counted as success so the pod is not held back.
    Ok(())
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
