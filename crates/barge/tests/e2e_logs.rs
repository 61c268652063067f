//! End-to-end: `logs` and attach's `logs=1` replay stream from the json-file log with bounded
//! memory: on a 1 GB log `logs --tail 10` answers in milliseconds (read backwards from the
//! end), and full replays (`logs`, attach `logs=1`) stream forward without the daemon's RSS
//! following the log's size.

mod common;

use std::io::Write;
use std::time::Instant;

use common::*;

/// The daemon's pid (from `--pidfile`).
fn daemon_pid(d: &Daemon) -> i32 {
    std::fs::read_to_string(d.dir.join("daemon.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// `(VmRSS, VmHWM)` of a process, in KiB.
fn rss(pid: i32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

const MIB: usize = 1024 * 1024;

/// The message of every filler line [`grow_log`] writes.
const FILLER: &str = "filler line of a big log, nothing to see here\n";

/// Appends about `mib` MiB of json-file lines to `path` (a stopped container's log, so no
/// other writer), then `tail` distinct lines `last <n>`; returns the number of filler lines.
fn grow_log(path: &str, mib: usize, tail: usize) -> u64 {
    let mut chunk = Vec::with_capacity(MIB + 256);
    let line = format!(
        r#"{{"log":{},"stream":"stdout","time":"2026-12-05T10:00:00.000000000Z"}}"#,
        serde_json::to_string(FILLER).unwrap()
    );
    let line = line.as_bytes();
    while chunk.len() < MIB {
        chunk.extend_from_slice(line);
        chunk.push(b'\n');
    }
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    let mut written = 0;
    let mut lines = 0;
    let per_chunk = chunk.iter().filter(|b| **b == b'\n').count() as u64;
    while written < mib * MIB {
        f.write_all(&chunk).unwrap();
        written += chunk.len();
        lines += per_chunk;
    }
    for n in 1..=tail {
        writeln!(
            f,
            r#"{{"log":"last {n}\n","stream":"{}","time":"2026-12-05T10:00:01.000000000Z"}}"#,
            if n % 2 == 0 { "stderr" } else { "stdout" }
        )
        .unwrap();
    }
    f.sync_all().unwrap();
    lines
}

#[test]
fn logs_tail_and_replays_of_a_1gb_log_use_bounded_memory() {
    let d = Daemon::start_with(&["--pidfile", "{dir}/daemon.pid"]);
    d.load_layout();
    d.ok(&["run", "--name", "big", "busybox:1.35", "echo", "first"]);
    let path = d.inspect("big", "{{.LogPath}}");
    grow_log(&path, 1024, 20);
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 1 << 30, "{size}");
    let pid = daemon_pid(&d);
    let (rss0, hwm0) = rss(pid);

    // --tail: from the end, whatever the size.
    let t = Instant::now();
    let out = d.docker(&["logs", "--tail", "10", "big"]);
    let took = t.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    let want_out: String = (11..=20)
        .filter(|n| n % 2 == 1)
        .map(|n| format!("last {n}\n"))
        .collect();
    let want_err: String = (11..=20)
        .filter(|n| n % 2 == 0)
        .map(|n| format!("last {n}\n"))
        .collect();
    assert_eq!(stdout(&out), want_out);
    assert_eq!(stderr(&out), want_err);
    eprintln!("logs --tail 10 of a {} MiB log: {took:?}", size >> 20);
    assert!(took.as_millis() < 1500, "tail took {took:?}");
    let (_, hwm1) = rss(pid);
    assert!(
        hwm1 < hwm0 + 16 * 1024,
        "daemon peak RSS grew from {hwm0} to {hwm1} KiB for a tail"
    );

    // The whole log, forward: streamed, memory stays flat. (A smaller log: a debug build
    // parses a few million lines a minute.)
    d.ok(&["run", "--name", "mid", "busybox:1.35", "echo", "first"]);
    let filler = grow_log(&d.inspect("mid", "{{.LogPath}}"), 256, 20);
    let (_, hwm0) = rss(pid);
    let t = Instant::now();
    let mut child = std::process::Command::new(docker_cli())
        .env("DOCKER_HOST", &d.host)
        .args(["logs", "mid"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut n = 0u64;
    let mut last = Vec::new();
    {
        use std::io::Read;
        let mut r = child.stdout.take().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let k = r.read(&mut buf).unwrap();
            if k == 0 {
                break;
            }
            n += k as u64;
            last = buf[k.saturating_sub(64)..k].to_vec();
        }
    }
    assert!(child.wait().unwrap().success());
    eprintln!("full logs ({n} bytes): {:?}", t.elapsed());
    assert!(n > filler * FILLER.len() as u64, "{n}");
    assert!(String::from_utf8_lossy(&last).ends_with("last 19\n"));
    let (_, hwm2) = rss(pid);
    assert!(
        hwm2 < hwm0 + 64 * 1024,
        "daemon peak RSS grew from {hwm0} to {hwm2} KiB streaming a 256 MiB log (RSS before {rss0})"
    );

    // attach logs=1&stream=0: the replay streams too.
    let sock = d.sock.to_str().unwrap();
    let script = format!(
        r#"import socket
s = socket.socket(socket.AF_UNIX)
s.connect({sock:?})
s.sendall(b"POST /containers/mid/attach?logs=1&stream=0&stdout=1&stderr=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
n = 0
tail = b""
while True:
    b = s.recv(1 << 20)
    if not b:
        break
    n += len(b)
    tail = (tail + b)[-64:]
print(n, tail.endswith(b"last 20\n"))
"#
    );
    let out = python(&script);
    let mut it = out.split_whitespace();
    let n: u64 = it.next().unwrap().parse().unwrap();
    // Each message in an 8-byte frame.
    assert!(n > filler * (FILLER.len() as u64 + 8), "{out}");
    assert_eq!(it.next(), Some("True"), "{out}");
    let (_, hwm3) = rss(pid);
    eprintln!("daemon VmHWM KiB: start {hwm0}, after logs {hwm2}, after attach replay {hwm3}");
    assert!(
        hwm3 < hwm0 + 64 * 1024,
        "daemon peak RSS grew from {hwm0} to {hwm3} KiB replaying a 256 MiB log on attach"
    );
    d.ok(&["rm", "big", "mid"]);
}

#[test]
fn follow_goes_on_where_the_replay_stopped() {
    let d = Daemon::start();
    d.load_layout();
    // A fast writer: every number once, in order, as long as it runs.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "counter",
        "busybox:1.35",
        "sh",
        "-c",
        "i=0; while true; do echo $i; i=$((i+1)); done",
    ]);
    d.wait_for("some output", 10, || {
        !d.ok(&["logs", "--tail", "1", "counter"]).is_empty()
    });
    for args in [
        vec!["logs", "-f", "counter"],
        vec!["logs", "-f", "--tail", "5", "counter"],
    ] {
        let mut child = std::process::Command::new(docker_cli())
            .env("DOCKER_HOST", &d.host)
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut out = Vec::new();
        {
            use std::io::Read;
            let mut r = child.stdout.take().unwrap();
            let mut buf = vec![0u8; 1 << 16];
            let t = Instant::now();
            while t.elapsed().as_millis() < 1500 {
                let k = r.read(&mut buf).unwrap();
                if k == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..k]);
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        let text = String::from_utf8_lossy(&out);
        let nums: Vec<u64> = text
            .lines()
            .take(text.lines().count().saturating_sub(1)) // the last may be cut
            .map(|l| l.trim().parse().unwrap())
            .collect();
        assert!(nums.len() > 10, "{args:?}: {} lines", nums.len());
        for w in nums.windows(2) {
            assert_eq!(w[1], w[0] + 1, "{args:?}: a gap or repeat after {}", w[0]);
        }
        if args.contains(&"--tail") {
            assert!(nums[0] > 0, "--tail starts near the end");
        } else {
            assert_eq!(nums[0], 0);
        }
    }
    d.ok(&["rm", "-f", "counter"]);
}
