//! End-to-end: the daemon never stalls, whatever a client does. With hundreds of parked
//! `wait` clients, a `save` whose reader stopped reading, and a `logs -f` that never reads,
//! `ps`, `images` and `run --rm` still answer in their usual time; bad numeric parameters
//! are 400s, never a panic.
//!
//! Run: `cargo test -p barge --test e2e_stall -- --test-threads=1` (root).

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Parked `wait` clients: more than tokio's blocking pool (256 threads) holds, so a wait
/// that occupies a thread would starve every other engine call.
const WAITERS: usize = 300;
/// The "generous bound": each command normally takes well under a second.
const BOUND: Duration = Duration::from_secs(15);

/// Sends a raw HTTP/1.1 request on the daemon's socket; returns the open stream.
fn send(sock: &Path, method: &str, path: &str) -> UnixStream {
    let mut s = UnixStream::connect(sock).expect("connect to the daemon");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    s
}

/// Reads the response head (status line and headers).
fn read_head(s: &mut UnixStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A whole short response (`Connection: close`): status line, headers and body.
fn request(sock: &Path, method: &str, path: &str) -> String {
    let mut s = UnixStream::connect(sock).expect("connect to the daemon");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Runs `barge ARGS` and returns how long it took; fails the test if it exceeds `BOUND` or
/// fails.
fn timed(d: &Daemon, args: &[&str]) -> Duration {
    let t = Instant::now();
    let mut child = Command::new(BARGE)
        .env("BARGE_HOST", &d.host)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running barge");
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            assert!(
                status.success(),
                "barge {args:?} failed: {}\n{}",
                stdout(&out),
                stderr(&out)
            );
            return t.elapsed();
        }
        if t.elapsed() > BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "barge {args:?} took more than {BOUND:?}: the daemon stalled; log tail:\n{}",
                tail(&d.log(), 30)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn daemon_answers_under_parked_waits_stalled_save_and_unread_logs() {
    let d = Daemon::start();
    d.load_layout();
    // Unpack the images once, so the timed `run --rm` measures the daemon, not an unpack.
    d.ok(&["run", "--rm", "--network", "none", "busybox:1.35", "true"]);
    let before = [
        timed(&d, &["ps"]),
        timed(&d, &["images"]),
        timed(
            &d,
            &["run", "--rm", "--network", "none", "busybox:1.35", "true"],
        ),
    ];

    d.ok(&[
        "run",
        "-d",
        "--name",
        "parked",
        "--network",
        "none",
        "busybox:1.35",
        "sleep",
        "600",
    ]);
    // A container whose log is far larger than what the socket buffers take.
    d.ok(&[
        "run", "-d", "--name", "chatty", "--network", "none", "busybox:1.35", "sh", "-c",
        "i=0; while [ $i -lt 30000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done; sleep 600",
    ]);
    d.wait_for("chatty's output", 60, || {
        d.ok(&["logs", "chatty"]).contains("line-29999-")
    });

    // 1. Parked waits: the response head comes at once, the body at the exit.
    let mut waiters = Vec::new();
    for _ in 0..WAITERS {
        waiters.push(send(&d.sock, "POST", "/v1.47/containers/parked/wait"));
    }
    for w in waiters.iter_mut() {
        let head = read_head(w);
        assert!(head.starts_with("HTTP/1.1 200"), "wait: {head}");
    }
    // 2. A save of the biggest image whose reader stops after the first bytes.
    let mut save = send(&d.sock, "GET", "/v1.47/images/get?names=multilayer%3A1");
    let head = read_head(&mut save);
    assert!(head.starts_with("HTTP/1.1 200"), "save: {head}");
    let mut first = [0u8; 4096];
    save.read_exact(&mut first).unwrap();
    // 3. A followed log nobody reads.
    let mut logs = send(
        &d.sock,
        "GET",
        "/v1.47/containers/chatty/logs?follow=1&stdout=1&stderr=1",
    );
    let head = read_head(&mut logs);
    assert!(head.starts_with("HTTP/1.1 200"), "logs: {head}");
    // Let the stalled streams fill every buffer on the way.
    std::thread::sleep(Duration::from_secs(2));

    let under_load = [
        timed(&d, &["ps"]),
        timed(&d, &["images"]),
        timed(
            &d,
            &["run", "--rm", "--network", "none", "busybox:1.35", "true"],
        ),
    ];
    eprintln!("ps/images/run --rm: before {before:?}, under load {under_load:?}");
    // `pull`'s and `load`'s writes do not wait for the stalled save either: a load commits.
    let t = Instant::now();
    let tar = d.dir.join("busybox.tar");
    d.ok(&["save", "-o", tar.to_str().unwrap(), "busybox:1.35"]);
    d.ok(&["rmi", "busybox:1.35"]);
    d.ok(&["load", "-i", tar.to_str().unwrap()]);
    assert!(t.elapsed() < BOUND, "save/rmi/load took {:?}", t.elapsed());

    // The parked waits still complete when their container exits, with its code.
    d.ok(&["kill", "parked"]);
    for w in waiters.iter_mut().take(5) {
        w.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = [0u8; 256];
        let n = w.read(&mut buf).unwrap_or(0);
        let body = String::from_utf8_lossy(&buf[..n]);
        assert!(body.contains("\"StatusCode\":137"), "wait body: {body}");
    }
    drop(waiters);
    drop(save);
    drop(logs);
    // Still answering after the clients went away.
    timed(&d, &["ps", "-a"]);
    d.ok(&["rm", "-f", "parked", "chatty"]);
}

#[test]
fn abandoned_waits_are_cancelled() {
    let d = Daemon::start();
    d.load_layout();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "ww",
        "--network",
        "none",
        "busybox:1.35",
        "sleep",
        "600",
    ]);
    let mut waiters = Vec::new();
    for _ in 0..20 {
        let mut s = send(&d.sock, "POST", "/v1.47/containers/ww/wait");
        assert!(read_head(&mut s).starts_with("HTTP/1.1 200"));
        waiters.push(s);
    }
    d.wait_for("the waits to be registered", 20, || {
        d.log().matches("wait registered").count() >= 20
    });
    assert_eq!(d.log().matches("wait cancelled").count(), 0);
    drop(waiters);
    d.wait_for("the abandoned waits to be cancelled", 20, || {
        d.log().matches("wait cancelled").count() >= 20
    });
    d.ok(&["rm", "-f", "ww"]);
}

#[test]
fn numeric_parameters_are_range_checked() {
    let d = Daemon::start();
    d.load_layout();
    d.ok(&[
        "run",
        "-d",
        "--init",
        "--name",
        "tt",
        "--network",
        "none",
        "busybox:1.35",
        "sleep",
        "600",
    ]);
    // This used to panic a worker after the signal was sent.
    let r = request(
        &d.sock,
        "POST",
        "/v1.47/containers/tt/stop?t=9223372036854775807",
    );
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(
        r.contains(r#"strconv.Atoi: parsing \"9223372036854775807\": value out of range"#),
        "{r}"
    );
    assert_eq!(d.inspect("tt", "{{.State.Status}}"), "running");
    for (method, path, want) in [
        ("POST", "/v1.47/containers/tt/stop?t=abc", "invalid syntax"),
        (
            "POST",
            "/v1.47/containers/tt/restart?t=1e3",
            "invalid syntax",
        ),
        ("GET", "/v1.47/containers/json?limit=x", "invalid syntax"),
        (
            "POST",
            "/v1.47/containers/tt/resize?h=-1&w=80",
            "value out of range",
        ),
        (
            "POST",
            "/v1.47/containers/tt/resize?h=24&w=70000",
            "value out of range",
        ),
        (
            "GET",
            "/v1.47/containers/tt/logs?stdout=1&since=x",
            "invalid syntax",
        ),
        (
            "GET",
            "/v1.47/containers/tt/logs?stdout=1&until=99999999999999",
            "value out of range",
        ),
        ("GET", "/v1.47/events?since=abc", "invalid syntax"),
        (
            "GET",
            "/v1.47/events?until=99999999999999999999",
            "value out of range",
        ),
    ] {
        let r = request(&d.sock, method, path);
        assert!(r.starts_with("HTTP/1.1 400"), "{path}: {r}");
        assert!(r.contains(want), "{path}: {r}");
    }
    // A huge but valid stop timeout still stops (SIGTERM; busybox sleep dies of it).
    let r = request(&d.sock, "POST", "/v1.47/containers/tt/stop?t=9223372036");
    assert!(r.starts_with("HTTP/1.1 204"), "{r}");
    assert!(
        !d.log().contains("panicked"),
        "a handler panicked:\n{}",
        tail(&d.log(), 30)
    );
    d.ok(&["rm", "-f", "tt"]);
}
