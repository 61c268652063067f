//! End-to-end checks of `barge_cli::main` against a tiny in-process fake of the
//! Docker Engine API (version negotiation, create/attach/wait/start, errors and
//! exit codes). No real daemon is needed.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;

/// Requests seen by the fake daemon: ("METHOD /path?query", body).
type Log = Arc<Mutex<Vec<(String, String)>>>;

fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![stream, 0, 0, 0];
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn reply(status: u16, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .header("Api-Version", "1.41")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid response")
}

async fn handle(req: Request<Incoming>, log: Log) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let line = format!("{} {target}", req.method());
    if target.contains("/attach") {
        log.lock().unwrap().push((line, String::new()));
        tokio::spawn(async move {
            let Ok(upgraded) = hyper::upgrade::on(req).await else {
                return;
            };
            let mut io = TokioIo::new(upgraded);
            let mut out = frame(1, b"hello\n");
            out.extend(frame(2, b"oops\n"));
            let _ = io.write_all(&out).await;
            let _ = io.shutdown().await;
        });
        return Ok(Response::builder()
            .status(101)
            .header("Connection", "Upgrade")
            .header("Upgrade", "tcp")
            .header("Content-Type", "application/vnd.docker.multiplexed-stream")
            .body(Full::default())
            .expect("valid response"));
    }
    let body = req.into_body().collect().await?.to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    log.lock().unwrap().push((line.clone(), body.clone()));
    let path = target.split('?').next().unwrap_or_default().to_string();
    Ok(match path.as_str() {
        "/_ping" => reply(200, "OK"),
        "/v1.41/containers/create" if body.contains("\"Image\":\"nope\"") => {
            reply(404, r#"{"message":"No such image: nope:latest"}"#)
        }
        "/v1.41/containers/create" if body.contains("\"Image\":\"noexec\"") => {
            reply(201, r#"{"Id":"noexec","Warnings":[]}"#)
        }
        "/v1.41/containers/create" => reply(201, r#"{"Id":"abc123","Warnings":[]}"#),
        "/v1.41/containers/noexec/start" => reply(
            400,
            r#"{"message":"exec: \"nope\": executable file not found in $PATH"}"#,
        ),
        p if p.ends_with("/start") => reply(204, ""),
        p if p.ends_with("/wait") => reply(200, r#"{"StatusCode":7}"#),
        "/v1.41/containers/json" => reply(500, r#"{"message":"boom"}"#),
        _ => reply(404, r#"{"message":"page not found"}"#),
    })
}

/// Starts the fake daemon on its own thread; returns its socket and request log.
/// The fake daemon's socket path, removed when the test ends.
struct Sock(PathBuf);

impl std::ops::Deref for Sock {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Sock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn start_fake_daemon(name: &str) -> (Sock, Log) {
    let sock = std::env::temp_dir().join(format!("barge-cli-{name}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let log: Log = Arc::default();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (path, server_log) = (sock.clone(), log.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = UnixListener::bind(&path).expect("bind fake daemon socket");
            ready_tx.send(()).expect("signal readiness");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let log = server_log.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(req, log.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
    });
    ready_rx.recv().expect("fake daemon started");
    (Sock(sock), log)
}

fn barge(sock: &std::path::Path, args: &[&str]) -> i32 {
    let mut argv = vec![
        "barge".to_string(),
        "-H".to_string(),
        format!("unix://{}", sock.display()),
    ];
    argv.extend(args.iter().map(|s| s.to_string()));
    barge_cli::main(&argv)
}

#[test]
fn run_attaches_waits_starts_and_exits_with_the_container_code() {
    let (sock, log) = start_fake_daemon("run");
    let code = barge(
        &sock,
        &["run", "--name", "c1", "-e", "A=1", "img:1", "echo", "hi"],
    );
    assert_eq!(code, 7);
    let log = log.lock().unwrap().clone();
    let lines: Vec<&str> = log.iter().map(|(l, _)| l.as_str()).collect();
    let create = log
        .iter()
        .find(|(l, _)| l.starts_with("POST /v1.41/containers/create?name=c1"))
        .unwrap_or_else(|| panic!("no create in {lines:?}"));
    let body: serde_json::Value = serde_json::from_str(&create.1).unwrap();
    assert_eq!(body["Image"], "img:1");
    assert_eq!(body["Cmd"], serde_json::json!(["echo", "hi"]));
    assert_eq!(body["Env"], serde_json::json!(["A=1"]));
    assert_eq!(body["AttachStdout"], true);
    let pos = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} missing from {lines:?}"))
    };
    let (attach, wait, start) = (
        pos("/attach?"),
        pos("/wait?condition=next-exit"),
        pos("/start"),
    );
    assert!(attach < start && wait < start, "order: {lines:?}");
}

#[test]
fn run_maps_daemon_failures_to_docker_exit_codes() {
    let (sock, _log) = start_fake_daemon("codes");
    assert_eq!(barge(&sock, &["run", "nope"]), 125);
    assert_eq!(barge(&sock, &["run", "noexec"]), 127);
    assert_eq!(barge(&sock, &["run", "--memory", "lots", "img"]), 125);
    assert_eq!(barge(&sock, &["run", "-d", "img"]), 0);
    assert_eq!(barge(&sock, &["ps"]), 1);
}

#[test]
fn run_with_rm_waits_for_removal() {
    let (sock, log) = start_fake_daemon("rm");
    assert_eq!(barge(&sock, &["run", "--rm", "img"]), 7);
    let log = log.lock().unwrap();
    assert!(log
        .iter()
        .any(|(l, _)| l.contains("/wait?condition=removed")));
    let create = log
        .iter()
        .find(|(l, _)| l.contains("/containers/create"))
        .unwrap();
    assert!(create.1.contains("\"AutoRemove\":true"), "{}", create.1);
}
