//! `portForward`: TCP connections to ports of a pod, made inside its network namespace.
//!
//! Served over WebSocket in kubelet's `v4.channel.k8s.io` port-forward scheme
//! (`pkg/kubelet/cri/streaming/portforward/websocket.go`, what the Python client speaks):
//! the request's `ports` give the ports; port `i` has data channel `2i` and error channel
//! `2i+1`; the server first sends each channel's port (2 bytes, little-endian), then copies
//! bytes between the data channel and one connection to the port, and writes a failure's
//! text to the error channel.
//!
//! The connection is made by a thread of its own that enters the pod's sandbox namespace
//! (`setns`) and connects to `127.0.0.1:PORT` there; the socket stays in that namespace after
//! the thread ends. Never on a tokio worker, never a fork.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use super::exec::{accept, choose_protocol, is_websocket, refuse};
use super::logs::url_pairs;
use super::{blocking, status, Shared};

/// The WebSocket subprotocols served.
const PROTOCOLS: &[&str] = &["v4.channel.k8s.io"];

/// How long a connection to a pod's port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `127.0.0.1:port` inside the network namespace at `netns` (blocking; on a
/// thread of its own).
pub fn connect_in_netns(
    netns: std::path::PathBuf,
    port: u16,
) -> std::io::Result<std::net::TcpStream> {
    std::thread::Builder::new()
        .name("agent-portfwd".into())
        .spawn(move || {
            let f = std::fs::File::open(&netns)?;
            nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            std::net::TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        })?
        .join()
        .map_err(|_| std::io::Error::other("the port-forward thread panicked"))?
}

/// The requested ports (`ports=8080&ports=9090` or `ports=8080,9090`).
fn ports(query: Option<&str>) -> Result<Vec<u16>, String> {
    let mut out = Vec::new();
    for (k, v) in url_pairs(query) {
        if k != "ports" && k != "port" {
            continue;
        }
        for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => out.push(n),
                _ => return Err(format!("unable to parse {p:?} as a port: invalid port")),
            }
        }
    }
    if out.is_empty() {
        return Err("at least 1 port must be specified".into());
    }
    Ok(out)
}

/// The pod's sandbox namespace file.
async fn netns_of(shared: &Shared, uid: &str) -> Option<std::path::PathBuf> {
    let (engine, key) = (shared.engine.clone(), crate::pods::sandbox_key(uid));
    blocking(move || engine.networks.sandbox(&key).map(|s| s.netns)).await
}

pub(crate) async fn handle(
    shared: &Shared,
    ns: &str,
    pod: &str,
    mut req: Request<Body>,
) -> Response<Body> {
    let p = match super::pod(shared, ns, pod).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let uid = p.metadata.uid.clone().unwrap_or_default();
    let Some(netns) = netns_of(shared, &uid).await else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("pod {pod} has no network sandbox on this node"),
        );
    };
    if !is_websocket(&req) {
        return refuse(&req, PROTOCOLS);
    }
    if let Some(proto) = choose_protocol(&req, &[super::spdy::PROTOCOL]) {
        let (resp, ws) = match accept(&mut req, proto) {
            Ok(x) => x,
            Err(r) => return r,
        };
        tokio::spawn(async move {
            if let Some(ws) = ws.await {
                super::spdy::serve_portforward(ws, netns).await;
            }
        });
        return resp;
    }
    let ports = match ports(req.uri().query()) {
        Ok(p) => p,
        Err(m) => return status(StatusCode::BAD_REQUEST, "BadRequest", &m),
    };
    let Some(proto) = choose_protocol(&req, PROTOCOLS) else {
        return refuse(&req, PROTOCOLS);
    };
    let (resp, ws) = match accept(&mut req, proto) {
        Ok(x) => x,
        Err(r) => return r,
    };
    tokio::spawn(async move {
        if let Some(ws) = ws.await {
            v4(ws, netns, ports).await;
        }
    });
    resp
}

/// The v4 channel scheme: one connection per requested port.
async fn v4(
    ws: tokio_tungstenite::WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>,
    netns: std::path::PathBuf,
    ports: Vec<u16>,
) {
    let (mut sink, mut source) = ws.split();
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Message>(64);
    let mut writers = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let (data, err) = ((2 * i) as u8, (2 * i + 1) as u8);
        let pb = port.to_le_bytes();
        for ch in [data, err] {
            let _ = sink
                .send(Message::Binary(vec![ch, pb[0], pb[1]].into()))
                .await;
        }
        let (in_tx, mut in_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
        writers.push(in_tx);
        let (out, netns, port) = (out_tx.clone(), netns.clone(), *port);
        tokio::spawn(async move {
            let conn = blocking(move || connect_in_netns(netns, port))
                .await
                .and_then(|s| {
                    s.set_nonblocking(true)?;
                    tokio::net::TcpStream::from_std(s)
                });
            let conn = match conn {
                Ok(c) => c,
                Err(e) => {
                    let msg = format!(
                        "error forwarding port {port} to pod: failed to connect to localhost:{port} inside namespace: {e}"
                    );
                    let mut m = vec![err];
                    m.extend_from_slice(msg.as_bytes());
                    let _ = out.send(Message::Binary(m.into())).await;
                    return;
                }
            };
            let (mut rd, mut wr) = conn.into_split();
            let up = tokio::spawn(async move {
                while let Some(b) = in_rx.recv().await {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                let _ = wr.shutdown().await;
            });
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let mut m = Vec::with_capacity(n + 1);
                        m.push(data);
                        m.extend_from_slice(&buf[..n]);
                        if out.send(Message::Binary(m.into())).await.is_err() {
                            break;
                        }
                    }
                }
            }
            up.abort();
        });
    }
    drop(out_tx);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    while let Some(Ok(m)) = source.next().await {
        if let Message::Close(_) = m {
            break;
        }
        if let Some(b) = super::exec::channel_frame(&m).filter(|b| !b.is_empty()) {
            let ch = b[0] as usize;
            if ch.is_multiple_of(2) {
                if let Some(w) = writers.get(ch / 2) {
                    let _ = w.send(b[1..].to_vec()).await;
                }
            }
        }
    }
    drop(writers);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse() {
        assert_eq!(
            ports(Some("ports=8080&ports=90,91")).unwrap(),
            [8080, 90, 91]
        );
        assert!(ports(Some("ports=x")).is_err());
        assert!(ports(None).is_err());
    }
}
