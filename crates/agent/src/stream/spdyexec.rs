//! `exec` and `attach` over a plain SPDY/3.1 upgrade (client-go's SPDY executor: kubectl with
//! `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false` or when its WebSocket upgrade fails, older
//! kubectls, tools built on client-go's `remotecommand.NewSPDYExecutor` such as k9s), in
//! kubelet's `v4.channel.k8s.io` stream protocol
//! (`k8s.io/apimachinery/pkg/util/httpstream/spdy`, `kubelet/cri/streaming/remotecommand`):
//! the client opens one SPDY stream per kind (`streamtype` header `error`, `stdin`, `stdout`,
//! `stderr`, `resize`), each answered with a SYN_REPLY; stdin and resize (`{"Width":…,
//! "Height":…}` values) come as DATA on theirs, stdin's FIN being its end; the output streams
//! carry the process's output and end with FIN; the error stream carries the final `Status`.
//!
//! The session is bridged to the same channel messages the WebSocket protocols use (an
//! in-memory WebSocket), so [`super::exec`] runs the command the same way for both: stream
//! kind ↔ channel number, stdin's FIN ↔ v5's close of channel 0. Output for a stream the
//! client has not opened yet is held until it does.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::spdy::{self, HeaderCodec};
use super::text;

/// The header client-go offers its stream protocols in, and the server names its choice in.
const VERSION_HEADER: &str = "x-stream-protocol-version";

/// The stream protocols served over SPDY, preferred first (v5 adds nothing over SPDY; v4's
/// error stream is a JSON `Status`).
const SERVED: &[&str] = &["v4.channel.k8s.io", "v5.channel.k8s.io"];

/// Whether the request asks for a SPDY/3.1 upgrade.
pub(crate) fn is_spdy(req: &Request<Body>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("SPDY/3.1"))
}

/// Answers the upgrade (101 with the chosen protocol) and returns, once hyper has switched the
/// connection, the server side of an in-memory WebSocket whose client side is bridged to the
/// SPDY session. The error is the refusal (400: no protocol in common).
#[allow(clippy::result_large_err, clippy::type_complexity)]
pub(crate) fn accept(
    req: &mut Request<Body>,
) -> Result<
    (
        Response<Body>,
        impl std::future::Future<Output = Option<WebSocketStream<DuplexStream>>>,
    ),
    Response<Body>,
> {
    let offered: Vec<String> = req
        .headers()
        .get_all(VERSION_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .collect();
    let Some(protocol) = SERVED
        .iter()
        .find(|p| offered.iter().any(|o| o == *p))
        .copied()
    else {
        return Err(text(
            StatusCode::BAD_REQUEST,
            &format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {SERVED:?}"
            ),
        ));
    };
    let upgrade = hyper::upgrade::on(req);
    let resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header(VERSION_HEADER, protocol)
        .body(Body::empty())
        .expect("a static response");
    let ws = async move {
        let io = match upgrade.await {
            Ok(u) => TokioIo::new(u),
            Err(e) => {
                tracing::debug!("SPDY upgrade failed: {e}");
                return None;
            }
        };
        let (a, b) = tokio::io::duplex(256 * 1024);
        let server = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
        let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        tokio::spawn(bridge(io, client));
        Some(server)
    };
    Ok((resp, ws))
}

/// Writes one frame; false when the client is gone.
async fn send<W: tokio::io::AsyncWrite + Unpin>(wr: &mut W, frame: &[u8]) -> bool {
    wr.write_all(frame).await.is_ok()
}

/// The channel of a stream kind (`streamtype`), as the WebSocket protocols number them.
fn channel(kind: &str) -> Option<u8> {
    Some(match kind {
        "stdin" => 0,
        "stdout" => 1,
        "stderr" => 2,
        "error" => 3,
        "resize" => 4,
        _ => return None,
    })
}

/// Copies between the SPDY session on `io` and the channel messages on `ws` until the command
/// side closes `ws`; then ends every stream the client opened (FIN) and waits briefly for the
/// client to hang up.
async fn bridge<S>(io: S, mut ws: WebSocketStream<DuplexStream>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut codec = HeaderCodec::default();
    let mut streams: HashMap<u8, u32> = HashMap::new();
    let mut by_id: HashMap<u32, u8> = HashMap::new();
    let mut held: HashMap<u8, Vec<Vec<u8>>> = HashMap::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut client_open = true;
    loop {
        tokio::select! {
            r = rd.read(&mut chunk), if client_open => {
                let n = match r {
                    Ok(0) | Err(_) => {
                        client_open = false;
                        // The client is gone: stdin ends.
                        let _ = ws.send(Message::Binary(vec![255, 0].into())).await;
                        continue;
                    }
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                while let Some((frame, rest)) = spdy::split_frame(&buf) {
                    let frame = frame.to_vec();
                    buf.drain(..buf.len() - rest);
                    match spdy::parse(&frame) {
                        spdy::Frame::Data { stream, fin, payload } => {
                            match by_id.get(&stream) {
                                Some(0) => {
                                    if !payload.is_empty() {
                                        let mut m = vec![0u8];
                                        m.extend_from_slice(payload);
                                        let _ = ws.send(Message::Binary(m.into())).await;
                                    }
                                    if fin {
                                        let _ = ws.send(Message::Binary(vec![255, 0].into())).await;
                                    }
                                }
                                Some(4) if !payload.is_empty() => {
                                    let mut m = vec![4u8];
                                    m.extend_from_slice(payload);
                                    let _ = ws.send(Message::Binary(m.into())).await;
                                }
                                _ => {}
                            }
                        }
                        spdy::Frame::SynStream { stream, headers } => {
                            let Ok(headers) = codec.decode(headers) else { return };
                            let kind = headers
                                .iter()
                                .find(|(k, _)| k == "streamtype")
                                .map(|(_, v)| v.as_str())
                                .unwrap_or("");
                            if !send(&mut wr, &spdy::syn_reply(stream, &mut codec)).await {
                                return;
                            }
                            if let Some(ch) = channel(kind) {
                                streams.insert(ch, stream);
                                by_id.insert(stream, ch);
                                for p in held.remove(&ch).unwrap_or_default() {
                                    for f in spdy::data_frames(stream, &p) {
                                        if !send(&mut wr, &f).await {
                                            return;
                                        }
                                    }
                                }
                            }
                        }
                        spdy::Frame::Ping(f) => {
                            if !send(&mut wr, f).await {
                                return;
                            }
                        }
                        spdy::Frame::GoAway => client_open = false,
                        spdy::Frame::Other => {}
                    }
                }
            }
            m = ws.next() => {
                let b = match m {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let Some((&ch, payload)) = b.split_first() else { continue };
                match streams.get(&ch) {
                    Some(&id) => {
                        for f in spdy::data_frames(id, payload) {
                            if !send(&mut wr, &f).await {
                                return;
                            }
                        }
                    }
                    None => held.entry(ch).or_default().push(payload.to_vec()),
                }
            }
        }
    }
    // The command ended: every stream of ours ends.
    for (&ch, &id) in &streams {
        if ch != 0 && ch != 4 && !send(&mut wr, &spdy::fin(id)).await {
            return;
        }
    }
    let _ = wr.flush().await;
    // client-go closes the connection once it has read every stream to its end.
    if client_open {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while let Ok(n) = rd.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }
    let _ = wr.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_kinds_are_the_websocket_channels() {
        assert_eq!(
            ["stdin", "stdout", "stderr", "error", "resize", "other"].map(channel),
            [Some(0), Some(1), Some(2), Some(3), Some(4), None]
        );
    }

    /// A client on the SPDY side (as client-go's executor): opens error, stdin and stdout,
    /// sends stdin and its end; what the command side writes on channels 1 and 3 — before
    /// and after the streams exist — comes back on those streams, ended with FIN.
    #[tokio::test]
    async fn bridges_streams_to_channels() {
        let (client, server_io) = tokio::io::duplex(64 * 1024);
        let (a, b) = tokio::io::duplex(64 * 1024);
        let mut command = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
        let bridged = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        let task = tokio::spawn(bridge(server_io, bridged));
        // Output before the client opened stdout is held.
        command
            .send(Message::Binary(
                vec![1, b'e', b'a', b'r', b'l', b'y'].into(),
            ))
            .await
            .unwrap();
        let (mut crd, mut cwr) = tokio::io::split(client);
        let mut codec = HeaderCodec::default();
        for (id, kind) in [(1u32, "error"), (3, "stdin"), (5, "stdout")] {
            cwr.write_all(&spdy::syn_stream(id, &[("streamtype", kind)], &mut codec))
                .await
                .unwrap();
        }
        cwr.write_all(&spdy::data_frames(3, b"hello")[0])
            .await
            .unwrap();
        cwr.write_all(&spdy::fin(3)).await.unwrap();
        // The command side sees stdin, then its end.
        let m = command.next().await.unwrap().unwrap();
        assert_eq!(m.into_data().as_ref(), b"\0hello");
        let m = command.next().await.unwrap().unwrap();
        assert_eq!(m.into_data().as_ref(), [255, 0]);
        command
            .send(Message::Binary(vec![3, b'{', b'}'].into()))
            .await
            .unwrap();
        command.close(None).await.unwrap();
        // The client reads: three replies, the held output, the status, FINs.
        let mut got = Vec::new();
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 4096];
        while got.iter().filter(|f| matches!(f, (_, true, _))).count() < 2 {
            let n = crd.read(&mut chunk).await.unwrap();
            assert!(n > 0, "{got:?}");
            buf.extend_from_slice(&chunk[..n]);
            while let Some((frame, rest)) = spdy::split_frame(&buf) {
                let frame = frame.to_vec();
                buf.drain(..buf.len() - rest);
                if let spdy::Frame::Data {
                    stream,
                    fin,
                    payload,
                } = spdy::parse(&frame)
                {
                    got.push((stream, fin, payload.to_vec()));
                }
            }
        }
        assert!(got.contains(&(5, false, b"early".to_vec())), "{got:?}");
        assert!(got.contains(&(1, false, b"{}".to_vec())), "{got:?}");
        assert!(got.contains(&(1, true, Vec::new())) && got.contains(&(5, true, Vec::new())));
        drop(cwr);
        drop(crd);
        task.await.unwrap();
    }
}
