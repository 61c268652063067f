//! The streaming subresources of pods — `log`, `exec`, `attach`, `portforward` — proxied to
//! the node agent of the pod's node, as kube-apiserver proxies them to the kubelet
//! (`pkg/registry/core/pod/rest/subresources.go`, `pkg/registry/core/pod/strategy.go`'s
//! `LogLocation`/`streamLocation`/`PortForwardLocation`).
//!
//! The pod's `spec.nodeName` gives the Node; its InternalIP and
//! `status.daemonEndpoints.kubeletEndpoint.Port` the agent's address. The connection itself
//! (TLS with the API server's kubelet-client certificate, the node verified against the
//! cluster CA) is made by the [`NodeDialer`] the transport layer supplies (this crate knows no
//! TLS). The request goes on as kubelet's path (`/containerLogs/NS/POD/CONTAINER`,
//! `/exec/NS/POD/CONTAINER`, `/attach/NS/POD/CONTAINER`, `/portForward/NS/POD`) with the
//! client's query, over HTTP/1.1; a `101 Switching Protocols` answer (WebSocket, SPDY) is
//! passed back and both upgraded connections are then copied into each other until either
//! side closes. Other answers (logs, errors) stream back as they come.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

use super::object::decode;
use crate::registry::ResourceInfo;
use crate::request::{PathInfo, Query};
use crate::status::{ApiError, ApiResult, Target};
use crate::ApiServer;

/// A byte stream to a node agent (TLS in `barge server`).
pub trait NodeStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> NodeStream for T {}

/// What a dial returns.
pub type DialFuture =
    Pin<Box<dyn Future<Output = std::io::Result<Box<dyn NodeStream>>> + Send + 'static>>;

/// Opens authenticated connections to node agents (kube-apiserver's `--kubelet-client-*`
/// and `--kubelet-certificate-authority`).
pub trait NodeDialer: Send + Sync + 'static {
    /// A connection to the agent at `addr`, ready for HTTP/1.1.
    fn dial(&self, addr: SocketAddr) -> DialFuture;
}

/// Whether the request is one of the four streaming subresources this module serves.
pub(crate) fn is_streaming(info: &ResourceInfo, path: &PathInfo) -> bool {
    info.plural == "pods"
        && info.group.is_empty()
        && matches!(
            path.subresource.as_deref(),
            Some("log" | "exec" | "attach" | "portforward")
        )
}

/// The container a `log`/`exec`/`attach` request is for: the `container` parameter (which
/// must name one of the pod's containers), else the only container, else kube's 400.
fn container_of(pod: &Value, name: &str, query: &Query) -> ApiResult<String> {
    let names = |key: &str| -> Vec<String> {
        pod["spec"][key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect()
    };
    let containers = names("containers");
    let init = names("initContainers");
    let ephemeral = names("ephemeralContainers");
    match query.non_empty("container") {
        Some(c) => {
            if containers
                .iter()
                .chain(&init)
                .chain(&ephemeral)
                .any(|n| n == c)
            {
                Ok(c.to_string())
            } else {
                Err(ApiError::BadRequest(format!(
                    "container {c} is not valid for pod {name}"
                )))
            }
        }
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut m = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                m.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            if !ephemeral.is_empty() {
                m.push_str(&format!(
                    " or one of the ephemeral containers: [{}]",
                    ephemeral.join(" ")
                ));
            }
            Err(ApiError::BadRequest(m))
        }
    }
}

/// The agent's address of node `node` (InternalIP, kubelet port).
pub(crate) async fn node_address(api: &ApiServer, node: &str) -> ApiResult<SocketAddr> {
    let registry = api.registry();
    let info = registry
        .lookup("", "v1", "nodes")
        .ok_or_else(|| ApiError::Internal("no nodes resource".into()))?;
    let (_, kv) = api.store.get(&info.key(None, node), None).await?;
    let kv = kv.ok_or_else(|| ApiError::NotFound(Target::resource(info, node)))?;
    let n = decode(&kv)?;
    let addrs = n["status"]["addresses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let pick = |t: &str| {
        addrs
            .iter()
            .find(|a| a["type"] == t)
            .and_then(|a| a["address"].as_str())
            .and_then(|a| a.parse::<IpAddr>().ok())
    };
    let ip = pick("InternalIP")
        .or_else(|| pick("ExternalIP"))
        .ok_or_else(|| ApiError::BadRequest(format!("node {node} has no InternalIP address")))?;
    let port = n["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .filter(|p| *p > 0 && *p < 65536)
        .unwrap_or(10250) as u16;
    Ok(SocketAddr::new(ip, port))
}

impl ApiServer {
    /// Proxies `pods/{log,exec,attach,portforward}` to the pod's node agent.
    pub(crate) async fn stream_subresource(
        &self,
        info: &ResourceInfo,
        path: &PathInfo,
        parts: Parts,
        body: Body,
    ) -> ApiResult<Response> {
        let ns = path.namespace.clone().unwrap_or_default();
        let name = path.name.clone().unwrap_or_default();
        let sub = path.subresource.clone().unwrap_or_default();
        let query = Query::parse(parts.uri.query());
        let (_, kv) = self.store.get(&info.key(Some(&ns), &name), None).await?;
        let kv = kv.ok_or_else(|| ApiError::NotFound(Target::resource(info, &name)))?;
        let pod = decode(&kv)?;
        let upstream = match sub.as_str() {
            "portforward" => format!("/portForward/{ns}/{name}"),
            _ => {
                let c = container_of(&pod, &name, &query)?;
                let kind = match sub.as_str() {
                    "log" => "containerLogs",
                    other => other,
                };
                format!("/{kind}/{ns}/{name}/{c}")
            }
        };
        let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
        if node.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "pod {name} does not have a host assigned"
            )));
        }
        let addr = node_address(self, node).await?;
        let dialer = self.node_dialer.clone().ok_or_else(|| {
            ApiError::Internal("no connection to node agents is configured".into())
        })?;
        let uri = match parts.uri.query() {
            Some(q) => format!("{upstream}?{q}"),
            None => upstream,
        };
        let stream = dialer
            .dial(addr)
            .await
            .map_err(|e| ApiError::Internal(format!("error dialing backend: {e}")))?;
        forward(stream, parts, body, &uri, addr).await
    }
}

/// Sends the request on `stream` to `uri` and returns the agent's answer; a 101 joins both
/// upgraded connections.
async fn forward(
    stream: Box<dyn NodeStream>,
    mut parts: Parts,
    body: Body,
    uri: &str,
    addr: SocketAddr,
) -> ApiResult<Response> {
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ApiError::Internal(format!("error dialing backend: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("node agent connection: {e}");
        }
    });
    let client_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let mut req = hyper::Request::builder()
        .method(parts.method.clone())
        .uri(uri);
    for (k, v) in &parts.headers {
        if k == header::HOST || k == header::AUTHORIZATION {
            continue;
        }
        req = req.header(k, v);
    }
    let host = HeaderValue::from_str(&addr.to_string()).expect("an address is a header value");
    let req = req
        .header(header::HOST, host)
        .body(body)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut resp = send
        .send_request(req)
        .await
        .map_err(|e| ApiError::Internal(format!("error trying to reach the node agent: {e}")))?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let agent_upgrade = hyper::upgrade::on(&mut resp);
        let client_upgrade = client_upgrade
            .ok_or_else(|| ApiError::BadRequest("the connection cannot be upgraded".into()))?;
        tokio::spawn(async move {
            let (client, agent) = match tokio::try_join!(client_upgrade, agent_upgrade) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!("stream upgrade failed: {e}");
                    return;
                }
            };
            let (mut client, mut agent) = (TokioIo::new(client), TokioIo::new(agent));
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut agent).await {
                tracing::debug!("stream proxy ended: {e}");
            }
        });
        let (p, _) = resp.into_parts();
        return Ok(Response::from_parts(p, Body::empty()));
    }
    let (mut p, b) = resp.into_parts();
    // Hop-by-hop headers stay on the agent's connection (the client may speak h2).
    for h in [
        header::TRANSFER_ENCODING,
        header::CONNECTION,
        header::UPGRADE,
    ] {
        p.headers.remove(h);
    }
    p.headers.remove("keep-alive");
    Ok(Response::from_parts(p, Body::new(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_container_is_named_or_the_only_one() {
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}],
                                  "initContainers": [{"name": "i"}]}});
        let q = |s: &str| Query::parse(Some(s));
        assert_eq!(container_of(&pod, "p", &q("container=b")).unwrap(), "b");
        assert_eq!(container_of(&pod, "p", &q("container=i")).unwrap(), "i");
        let e = container_of(&pod, "p", &q("")).unwrap_err().to_string();
        assert_eq!(
            e,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
        let e = container_of(&pod, "p", &q("container=x"))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "container x is not valid for pod p");
        let one = json!({"spec": {"containers": [{"name": "only"}]}});
        assert_eq!(container_of(&one, "p", &q("")).unwrap(), "only");
    }
}
