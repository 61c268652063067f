//! `exec` and `attach` over WebSocket, in kubelet's channel protocols
//! (`k8s.io/apimachinery/pkg/util/httpstream/wsstream`, `remotecommand`'s
//! `v4.channel.k8s.io` and `v5.channel.k8s.io`): every binary message starts with its channel
//! — 0 stdin, 1 stdout, 2 stderr, 3 error (a `Status` in JSON once the process ended), 4
//! resize (`{"Width":w,"Height":h}`), and in v5 255 "close": `[255, ch]` is the client's end
//! of stream `ch` (stdin's EOF).
//!
//! `exec` runs the command through the engine's exec instances (as `docker exec`); `attach`
//! connects to the container's monitor like `docker attach`. A non-zero exit is kube's
//! `NonZeroExitCode` status whose `ExitCode` cause kubectl exits with. A plain SPDY/3.1
//! upgrade (client-go's SPDY executor, kubectl's fallback) is bridged to the same channels by
//! [`super::spdyexec`].

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use barge_container::{ExecOptions, Status};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::logs::url_pairs;
use super::{blocking, status, text, Shared};

/// kubelet's stream channels.
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// The WebSocket subprotocols served, preferred first.
pub const PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// How long a TTY exec waits for the client's first size before it starts.
const FIRST_SIZE_WAIT: Duration = Duration::from_millis(300);

/// Which endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Exec,
    Attach,
}

/// The stream options of a request (`PodExecOptions`/`PodAttachOptions`).
#[derive(Debug, Default, Clone)]
struct Opts {
    command: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

fn opts(query: Option<&str>) -> Opts {
    let mut o = Opts::default();
    let t = |v: &str| matches!(v, "true" | "1" | "True" | "TRUE" | "t" | "T");
    for (k, v) in url_pairs(query) {
        match k.as_str() {
            "command" => o.command.push(v),
            "input" | "stdin" => o.stdin = t(&v),
            "output" | "stdout" => o.stdout = t(&v),
            "error" | "stderr" => o.stderr = t(&v),
            "tty" => o.tty = t(&v),
            _ => {}
        }
    }
    o
}

/// The subprotocol chosen among the client's `Sec-WebSocket-Protocol` offers.
pub(crate) fn choose_protocol(
    req: &Request<Body>,
    served: &[&'static str],
) -> Option<&'static str> {
    let offered: Vec<String> = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .collect();
    served
        .iter()
        .find(|p| offered.iter().any(|o| o == *p))
        .copied()
}

/// Whether the request asks for a WebSocket.
pub(crate) fn is_websocket(req: &Request<Body>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Checks the upgrade request and answers 101 with `protocol`; the returned future resolves
/// to the WebSocket once hyper has switched the connection. The error is the refusal to send
/// (a whole response, hence large and `impl Future` in the tuple).
#[allow(clippy::result_large_err, clippy::type_complexity)]
pub(crate) fn accept(
    req: &mut Request<Body>,
    protocol: &'static str,
) -> Result<
    (
        Response<Body>,
        impl std::future::Future<Output = Option<WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>>>,
    ),
    Response<Body>,
> {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return Err(text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key"));
    };
    let upgrade = hyper::upgrade::on(req);
    let resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(
            header::SEC_WEBSOCKET_ACCEPT,
            tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()),
        )
        .header(header::SEC_WEBSOCKET_PROTOCOL, protocol)
        .body(Body::empty())
        .expect("a static response");
    let ws = async move {
        match upgrade.await {
            Ok(u) => {
                Some(WebSocketStream::from_raw_socket(TokioIo::new(u), Role::Server, None).await)
            }
            Err(e) => {
                tracing::debug!("stream upgrade failed: {e}");
                None
            }
        }
    };
    Ok((resp, ws))
}

/// The answer to an upgrade not served: plain SPDY for port forwarding, unknown protocols.
pub(crate) fn refuse(req: &Request<Body>, served: &[&str]) -> Response<Body> {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if upgrade.to_ascii_lowercase().starts_with("spdy") {
        return text(
            StatusCode::BAD_REQUEST,
            "SPDY/3.1 port forwarding is not served by this node agent: use WebSocket (kubectl 1.31+)",
        );
    }
    text(
        StatusCode::BAD_REQUEST,
        &format!(
            "a WebSocket upgrade with one of the subprotocols {} is required",
            served.join(", ")
        ),
    )
}

/// kube's status for the end of a command: Success, or `NonZeroExitCode` with the code.
fn exit_status(command: &[String], code: i64) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// kube's status for a failure that is not an exit code.
fn failure(message: &str) -> Value {
    json!({"metadata": {}, "status": "Failure", "message": message,
           "reason": "InternalError", "code": 500})
}

/// The channel-prefixed bytes of a client's frame. Binary frames are the protocol's, but
/// kubelet reads text frames the same way (x/net/websocket's `Message.Receive`), and the
/// Kubernetes Python client sends its `write_stdin(str)` as text frames `"\x00…"`.
pub(crate) fn channel_frame(m: &Message) -> Option<&[u8]> {
    match m {
        Message::Binary(b) => Some(b),
        Message::Text(t) => Some(t.as_bytes()),
        _ => None,
    }
}

fn channel_msg(ch: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(ch);
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

/// A resize message's (rows, columns).
fn size_of(data: &[u8]) -> Option<(u16, u16)> {
    let v: Value = serde_json::from_slice(data).ok()?;
    let w = v["Width"].as_u64()? as u16;
    let h = v["Height"].as_u64()? as u16;
    Some((h, w))
}

pub(crate) async fn handle(
    shared: &Shared,
    ns: &str,
    pod: &str,
    c: &str,
    kind: Kind,
    mut req: Request<Body>,
) -> Response<Body> {
    let o = opts(req.uri().query());
    if kind == Kind::Exec && o.command.is_empty() {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "you must specify at least 1 command",
        );
    }
    if !(o.stdin || o.stdout || o.stderr) {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "you must specify at least 1 of stdin, stdout, stderr",
        );
    }
    let p = match super::pod(shared, ns, pod).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let id = match super::container_id(&p, c, false) {
        Ok(id) => id,
        Err(m) => return status(StatusCode::BAD_REQUEST, "BadRequest", &m),
    };
    let running = {
        let (engine, id) = (shared.engine.clone(), id.clone());
        blocking(move || engine.containers.get(&id))
            .await
            .is_ok_and(|c| c.state.status == Status::Running)
    };
    if !running {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("container {c} is not running in pod {pod}"),
        );
    }
    if super::spdyexec::is_spdy(&req) {
        let (resp, ws) = match super::spdyexec::accept(&mut req) {
            Ok(x) => x,
            Err(r) => return r,
        };
        spawn_session(shared.clone(), kind, id, o, ws);
        return resp;
    }
    if !is_websocket(&req) {
        return refuse(&req, PROTOCOLS);
    }
    let Some(protocol) = choose_protocol(&req, PROTOCOLS) else {
        return refuse(&req, PROTOCOLS);
    };
    let (resp, ws) = match accept(&mut req, protocol) {
        Ok(x) => x,
        Err(r) => return r,
    };
    spawn_session(shared.clone(), kind, id, o, ws);
    resp
}

/// Runs the exec or attach session on the channel WebSocket `ws` resolves to (the upgraded
/// connection's, or the one a SPDY session is bridged to) once the client has switched.
fn spawn_session<S: Io>(
    shared: Shared,
    kind: Kind,
    id: String,
    o: Opts,
    ws: impl std::future::Future<Output = Option<WebSocketStream<S>>> + Send + 'static,
) {
    tokio::spawn(async move {
        let Some(ws) = ws.await else { return };
        let r = match kind {
            Kind::Exec => run_exec(shared, id, o, ws).await,
            Kind::Attach => run_attach(shared, id, o, ws).await,
        };
        if let Err(e) = r {
            tracing::debug!("stream ended: {e}");
        }
    });
}

/// The byte streams a channel WebSocket runs on: the upgraded connection, or the in-memory
/// one a SPDY session is bridged to.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Io for T {}

/// Runs `o.command` in container `id` with its streams on `ws`.
async fn run_exec<S: Io>(
    shared: Shared,
    id: String,
    o: Opts,
    mut ws: WebSocketStream<S>,
) -> Result<(), String> {
    // A TTY starts at the client's size: wait a moment for its first resize message, keeping
    // whatever stdin came with it.
    let mut early: Vec<Message> = Vec::new();
    let mut size = None;
    if o.tty {
        let deadline = tokio::time::Instant::now() + FIRST_SIZE_WAIT;
        while size.is_none() {
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Ok(Some(Ok(m))) => {
                    if let Some(b) = channel_frame(&m) {
                        if b.first() == Some(&RESIZE) {
                            size = size_of(&b[1..]);
                            continue;
                        }
                    }
                    early.push(m);
                }
                _ => break,
            }
        }
    }
    let eo = ExecOptions {
        cmd: o.command.clone(),
        tty: o.tty,
        attach_stdin: o.stdin,
        attach_stdout: o.stdout,
        attach_stderr: o.stderr,
        console_size: size,
        ..Default::default()
    };
    let created = {
        let (engine, id) = (shared.engine.clone(), id.clone());
        blocking(move || engine.containers.exec_create(&id, eo)).await
    };
    let exec = match created {
        Ok(e) => e,
        Err(e) => return end(ws, failure(&e.to_string())).await,
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    {
        let (engine, eid) = (shared.engine.clone(), exec.id.clone());
        tokio::task::spawn_blocking(move || {
            let mut tx = Some(tx);
            let r = engine.containers.exec_start(&eid, false, 1, &mut |p| {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(Ok(p.clone()));
                }
            });
            if let (Err(e), Some(tx)) = (r, tx.take()) {
                let _ = tx.send(Err(e.to_string()));
            }
        });
    }
    let point = match rx.await {
        Ok(Ok(p)) => p,
        Ok(Err(message)) => {
            let eid = exec.id.clone();
            let engine = shared.engine.clone();
            let code = blocking(move || engine.containers.exec_inspect(&eid))
                .await
                .ok()
                .and_then(|e| e.exit_code);
            let st = match code {
                Some(code) if code != 0 => {
                    let mut s = exit_status(&o.command, code);
                    s["message"] = json!(format!(
                        "command terminated with non-zero exit code: {message}, exit code {code}"
                    ));
                    s
                }
                _ => failure(&message),
            };
            return end(ws, st).await;
        }
        Err(_) => return end(ws, failure("the exec did not start")).await,
    };
    let eid = exec.id.clone();
    let engine = shared.engine.clone();
    let resize = move |h: u16, w: u16| {
        let (engine, eid) = (engine.clone(), eid.clone());
        tokio::task::spawn_blocking(move || {
            let _ = engine.containers.exec_resize(&eid, h, w);
        });
    };
    let ws = pump(ws, &point.socket, o.clone(), early, resize).await?;
    let eid = exec.id.clone();
    let engine = shared.engine.clone();
    let code = blocking(move || engine.containers.exec_wait(&eid))
        .await
        .map_err(|e| e.to_string());
    let st = match code {
        Ok(code) => exit_status(&o.command, code),
        Err(e) => failure(&e),
    };
    end(ws, st).await
}

/// Attaches `ws` to container `id`'s own stdio.
async fn run_attach<S: Io>(
    shared: Shared,
    id: String,
    o: Opts,
    ws: WebSocketStream<S>,
) -> Result<(), String> {
    let point = {
        let (engine, id) = (shared.engine.clone(), id.clone());
        blocking(move || engine.containers.attach_point(&id)).await
    };
    let point = match point {
        Ok(p) => p,
        Err(e) => return end(ws, failure(&e.to_string())).await,
    };
    let engine = shared.engine.clone();
    let resize = move |h: u16, w: u16| {
        let (engine, id) = (engine.clone(), id.clone());
        tokio::task::spawn_blocking(move || {
            let _ = engine.containers.resize(&id, h, w);
        });
    };
    let ws = pump(ws, &point.socket, o, Vec::new(), resize).await?;
    end(ws, json!({"metadata": {}, "status": "Success"})).await
}

/// Sends the final status on the error channel and closes the WebSocket.
async fn end<S: Io>(mut ws: WebSocketStream<S>, st: Value) -> Result<(), String> {
    let _ = ws.send(channel_msg(ERROR, st.to_string().as_bytes())).await;
    // A normal closure (1000): client-go treats any other end as an error of every stream.
    let _ = ws
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .await;
    // Let the close handshake finish (bounded).
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    Ok(())
}

/// Copies between the WebSocket and the monitor's attach socket until the process' output
/// ends; returns the WebSocket for the final status.
async fn pump<S: Io>(
    ws: WebSocketStream<S>,
    socket: &std::path::Path,
    o: Opts,
    early: Vec<Message>,
    resize: impl Fn(u16, u16) + Send + 'static,
) -> Result<WebSocketStream<S>, String> {
    let monitor = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| format!("connecting to {}: {e}", socket.display()))?;
    let (mut mon_rd, mut mon_wr) = monitor.into_split();
    let (mut sink, mut source) = ws.split();
    let stdin = o.stdin;
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let input = tokio::spawn(async move {
        let mut early = early.into_iter();
        loop {
            let m = match early.next() {
                Some(m) => m,
                None => tokio::select! {
                    _ = &mut stop_rx => break,
                    r = source.next() => match r {
                        Some(Ok(m)) => m,
                        _ => break,
                    },
                },
            };
            if let Message::Close(_) = m {
                break;
            }
            let Some(b) = channel_frame(&m).filter(|b| !b.is_empty()) else {
                continue;
            };
            match b[0] {
                STDIN if stdin && mon_wr.write_all(&b[1..]).await.is_err() => {
                    break;
                }
                RESIZE => {
                    if let Some((h, w)) = size_of(&b[1..]) {
                        resize(h, w);
                    }
                }
                CLOSE if b.get(1) == Some(&STDIN) => {
                    let _ = mon_wr.shutdown().await;
                }
                _ => {}
            }
        }
        source
    });
    let mut header = [0u8; 8];
    let mut payload = Vec::new();
    let result: Result<(), String> = async {
        loop {
            match mon_rd.read_exact(&mut header).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e.to_string()),
            }
            let len = barge_stdx::stdcopy::payload_len(&header);
            payload.resize(len, 0);
            mon_rd
                .read_exact(&mut payload)
                .await
                .map_err(|e| e.to_string())?;
            let ch = if header[0] == 2 && !o.tty {
                STDERR
            } else {
                STDOUT
            };
            if (ch == STDOUT && !o.stdout) || (ch == STDERR && !o.stderr) {
                continue;
            }
            sink.send(channel_msg(ch, &payload))
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    .await;
    let _ = stop_tx.send(());
    let source = input.await.map_err(|e| e.to_string())?;
    result?;
    sink.reunite(source).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_kube_statuses() {
        let s = exit_status(&["sh".into(), "-c".into(), "exit 3".into()], 3);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        assert_eq!(
            s["message"],
            "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
        );
        assert_eq!(exit_status(&[], 0)["status"], "Success");
    }

    #[test]
    fn query_options() {
        let o = opts(Some(
            "command=sh&command=-c&command=echo+hi&stdin=true&stdout=true&tty=true",
        ));
        assert_eq!(o.command, ["sh", "-c", "echo hi"]);
        assert!(o.stdin && o.stdout && !o.stderr && o.tty);
        assert_eq!(size_of(br#"{"Width":80,"Height":24}"#), Some((24, 80)));
    }
}
