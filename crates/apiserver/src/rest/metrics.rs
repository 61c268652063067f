//! `metrics.k8s.io/v1beta1`, the resource metrics API metrics-server serves
//! (kubernetes-sigs/metrics-server `pkg/api`): `NodeMetrics` and `PodMetrics`, read-only,
//! computed on each request from the node agents' kubelet Summaries (`GET /stats/summary` on
//! the kubelet port, reached through the [`NodeDialer`](super::proxy::NodeDialer) as the
//! streaming subresources are). One source for `kubectl top` and the HorizontalPodAutoscaler
//! controller (which reads this API, as kube-controller-manager does).
//!
//! Shapes as metrics-server's: `metadata` carries the object's name, namespace and labels
//! and `creationTimestamp` now; `timestamp` is the sample's time, `window` the CPU rate's
//! window; usage `cpu` in nanocores (`"12345n"`), `memory` the working set in bytes
//! (`"1024Ki"`). A pod appears only when every one of its containers has a CPU rate (a fresh
//! container has none until its second sample), as metrics-server drops incomplete pods; a
//! node or pod without metrics is metrics-server's 404 (`pods.metrics.k8s.io "x" not found`).
//! An unreachable node is left out of lists (logged), never an error of the whole request.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use super::json_response;
use super::object::now;
use crate::registry::ResourceInfo;
use crate::request::{PathInfo, Query};
use crate::selectors::LabelSelector;
use crate::status::{ApiError, ApiResult, Target};
use crate::ApiServer;

/// metrics-server's per-node scrape timeout.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest Summary read from an agent.
const MAX_SUMMARY: usize = 16 << 20;

/// `12345n`: nanocores as a quantity.
pub(crate) fn cpu_quantity(nanocores: u64) -> String {
    format!("{nanocores}n")
}

/// Bytes as metrics-server prints them (binary SI: `1024Ki` when a multiple of 1 Ki).
pub(crate) fn memory_quantity(bytes: u64) -> String {
    if bytes != 0 && bytes.is_multiple_of(1 << 20) {
        format!("{}Mi", bytes >> 20)
    } else if bytes != 0 && bytes.is_multiple_of(1024) {
        format!("{}Ki", bytes >> 10)
    } else {
        bytes.to_string()
    }
}

/// A Go `time.Duration` string of whole or fractional seconds under an hour (`10s`,
/// `1.5s`, `1m0s`).
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    let (m, s, frac) = (ms / 60_000, (ms / 1000) % 60, ms % 1000);
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        format!("{s}.{}s", format!("{frac:03}").trim_end_matches('0'))
    };
    if m > 0 {
        format!("{m}m{secs}")
    } else {
        secs
    }
}

/// One container's or node's usage out of a Summary's `cpu`/`memory` objects.
fn usage(stats: &Value) -> Option<(u64, u64, String)> {
    let cpu = stats["cpu"]["usageNanoCores"].as_u64()?;
    let mem = stats["memory"]["workingSetBytes"].as_u64()?;
    let time = stats["cpu"]["time"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Some((cpu, mem, time))
}

/// A pod's metrics from its Summary entry (`None` when a container has no CPU rate yet).
fn pod_metrics(pod: &Value, entry: &Value, window: &str) -> Option<Value> {
    let mut containers = Vec::new();
    let mut timestamp = String::new();
    for c in entry["containers"].as_array()? {
        let (cpu, mem, time) = usage(c)?;
        if timestamp.is_empty() {
            timestamp = time;
        }
        containers.push(json!({
            "name": c["name"],
            "usage": {"cpu": cpu_quantity(cpu), "memory": memory_quantity(mem)},
        }));
    }
    if containers.is_empty() {
        return None;
    }
    let meta = &pod["metadata"];
    let mut m =
        json!({"name": meta["name"], "namespace": meta["namespace"], "creationTimestamp": now()});
    if let Some(l) = meta.get("labels").filter(|l| l.is_object()) {
        m["labels"] = l.clone();
    }
    Some(json!({
        "kind": "PodMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": m,
        "timestamp": timestamp,
        "window": window,
        "containers": containers,
    }))
}

/// A node's metrics from its Summary.
fn node_metrics(node: &Value, summary: &Value, window: &str) -> Option<Value> {
    let (cpu, mem, time) = usage(&summary["node"])?;
    let meta = &node["metadata"];
    let mut m = json!({"name": meta["name"], "creationTimestamp": now()});
    if let Some(l) = meta.get("labels").filter(|l| l.is_object()) {
        m["labels"] = l.clone();
    }
    Some(json!({
        "kind": "NodeMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": m,
        "timestamp": time,
        "window": window,
        "usage": {"cpu": cpu_quantity(cpu), "memory": memory_quantity(mem)},
    }))
}

/// The Summary's window (barge's agent adds `windowSeconds`; kubelet's default resolution
/// otherwise).
fn window_of(summary: &Value) -> String {
    let secs = summary["windowSeconds"].as_f64().unwrap_or(10.0).max(0.0);
    go_duration(Duration::from_secs_f64(secs))
}

impl ApiServer {
    /// Serves `GET` of `metrics.k8s.io/v1beta1` `nodes` and `pods`.
    pub(crate) async fn metrics(
        &self,
        info: &ResourceInfo,
        path: &PathInfo,
        query: &Query,
        _headers: &HeaderMap,
    ) -> ApiResult<Response> {
        let selector = LabelSelector::parse(query.get("labelSelector").unwrap_or_default())
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let registry = self.registry();
        let lookup = |plural: &str| {
            registry
                .lookup("", "v1", plural)
                .cloned()
                .ok_or_else(|| ApiError::Internal(format!("no {plural} resource")))
        };
        let name = path.name.as_deref();
        if info.namespaced {
            let pods_info = lookup("pods")?;
            let ns = path.namespace.as_deref();
            let mut pods = match (ns, name) {
                (Some(ns), Some(n)) => {
                    let (_, kv) = self.store.get(&pods_info.key(Some(ns), n), None).await?;
                    let kv = kv.ok_or_else(|| ApiError::NotFound(Target::resource(info, n)))?;
                    vec![super::object::decode(&kv)?]
                }
                _ => self.stored_objects(&pods_info.prefix(ns)).await?,
            };
            pods.retain(|p| {
                selector.matches(p["metadata"].get("labels"))
                    && p["spec"]["nodeName"]
                        .as_str()
                        .is_some_and(|n| !n.is_empty())
                    && !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
            });
            let mut nodes: Vec<String> = pods
                .iter()
                .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
                .collect();
            nodes.sort();
            nodes.dedup();
            let summaries = self.summaries(nodes).await;
            let mut items = Vec::new();
            for p in &pods {
                let node = p["spec"]["nodeName"].as_str().unwrap_or_default();
                let Some(summary) = summaries.get(node) else {
                    continue;
                };
                let meta = &p["metadata"];
                let entry = summary["pods"].as_array().into_iter().flatten().find(|e| {
                    let r = &e["podRef"];
                    r["name"] == meta["name"]
                        && r["namespace"] == meta["namespace"]
                        && (r["uid"] == meta["uid"] || !meta["uid"].is_string())
                });
                if let Some(m) = entry.and_then(|e| pod_metrics(p, e, &window_of(summary))) {
                    items.push(m);
                }
            }
            return self.metrics_answer(info, name, items);
        }
        let nodes_info = lookup("nodes")?;
        let mut nodes = match name {
            Some(n) => {
                let (_, kv) = self.store.get(&nodes_info.key(None, n), None).await?;
                let kv = kv.ok_or_else(|| ApiError::NotFound(Target::resource(info, n)))?;
                vec![super::object::decode(&kv)?]
            }
            None => self.stored_objects(&nodes_info.prefix(None)).await?,
        };
        nodes.retain(|n| selector.matches(n["metadata"].get("labels")));
        let names: Vec<String> = nodes
            .iter()
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        let summaries = self.summaries(names).await;
        let items = nodes
            .iter()
            .filter_map(|n| {
                let s = summaries.get(n["metadata"]["name"].as_str()?)?;
                node_metrics(n, s, &window_of(s))
            })
            .collect();
        self.metrics_answer(info, name, items)
    }

    /// One object (404 when it has no metrics) or the list.
    fn metrics_answer(
        &self,
        info: &ResourceInfo,
        name: Option<&str>,
        mut items: Vec<Value>,
    ) -> ApiResult<Response> {
        if let Some(n) = name {
            return match items.pop() {
                Some(m) => Ok(json_response(StatusCode::OK, &m)),
                None => Err(ApiError::NotFound(Target::resource(info, n))),
            };
        }
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "kind": info.list_kind(),
                "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {},
                "items": items,
            }),
        ))
    }

    /// The Summaries of `nodes`, fetched concurrently; a node that cannot be reached is left
    /// out.
    async fn summaries(&self, nodes: Vec<String>) -> HashMap<String, Value> {
        let fetches = nodes.into_iter().map(|n| async move {
            let r = tokio::time::timeout(SCRAPE_TIMEOUT, self.summary(&n)).await;
            match r {
                Ok(Ok(v)) => Some((n, v)),
                Ok(Err(e)) => {
                    tracing::debug!(node = %n, "metrics: {e}");
                    None
                }
                Err(_) => {
                    tracing::debug!(node = %n, "metrics: the node agent did not answer in time");
                    None
                }
            }
        });
        futures_util::future::join_all(fetches)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// `GET /stats/summary` of node `node`'s agent.
    async fn summary(&self, node: &str) -> ApiResult<Value> {
        let addr = super::proxy::node_address(self, node).await?;
        let dialer = self.node_dialer.clone().ok_or_else(|| {
            ApiError::Internal("no connection to node agents is configured".into())
        })?;
        let stream = dialer
            .dial(addr)
            .await
            .map_err(|e| ApiError::Internal(format!("error dialing backend: {e}")))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ApiError::Internal(format!("error dialing backend: {e}")))?;
        let conn = tokio::spawn(conn);
        let req = hyper::Request::get("/stats/summary")
            .header(hyper::header::HOST, addr.to_string())
            .body(axum::body::Body::empty())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| ApiError::Internal(format!("reaching the node agent: {e}")))?;
        if resp.status() != StatusCode::OK {
            conn.abort();
            return Err(ApiError::Internal(format!(
                "the node agent answered {}",
                resp.status()
            )));
        }
        let body = axum::body::to_bytes(axum::body::Body::new(resp.into_body()), MAX_SUMMARY)
            .await
            .map_err(|e| ApiError::Internal(format!("reading the summary: {e}")))?;
        conn.abort();
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::Internal(format!("decoding the summary: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_as_metrics_server_prints_them() {
        assert_eq!(cpu_quantity(1_500_000), "1500000n");
        assert_eq!(memory_quantity(1 << 20), "1Mi");
        assert_eq!(memory_quantity(3 << 10), "3Ki");
        assert_eq!(memory_quantity(1000), "1000");
        assert_eq!(memory_quantity(0), "0");
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(60)), "1m0s");
    }

    #[test]
    fn a_pod_needs_every_container_rate() {
        let pod = json!({"metadata": {"name": "p", "namespace": "d", "labels": {"a": "b"}}});
        let full = json!({"containers": [
            {"name": "c", "cpu": {"time": "t", "usageNanoCores": 5}, "memory": {"workingSetBytes": 2048}},
        ]});
        let m = pod_metrics(&pod, &full, "10s").unwrap();
        assert_eq!(
            m["containers"][0]["usage"],
            json!({"cpu": "5n", "memory": "2Ki"})
        );
        assert_eq!(m["metadata"]["labels"], json!({"a": "b"}));
        assert_eq!(m["timestamp"], "t");
        let partial = json!({"containers": [
            {"name": "c", "cpu": {"time": "t", "usageNanoCores": 5}, "memory": {"workingSetBytes": 1}},
            {"name": "d", "cpu": {"time": "t"}, "memory": {"workingSetBytes": 1}},
        ]});
        assert!(pod_metrics(&pod, &partial, "10s").is_none());
    }
}
