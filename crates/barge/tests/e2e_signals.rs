//! End-to-end: stop/kill/rm signal the container's process through its monitor (a pidfd),
//! never through the pid stored in the record, which may name another process by then.
//! The test makes the record lie: its pid is replaced (daemon down) by an unrelated host
//! process's, which must survive every stop, kill and rm of the container.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

fn host_sleeper() -> Child {
    Command::new("sleep")
        .arg("1000")
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

/// Rewrites `State.Pid` of container `id` in its record (daemon must be down).
fn forge_pid(d: &Daemon, id: &str, pid: u32) {
    let p = d
        .dir
        .join("data/containers")
        .join(id)
        .join("container.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    v["state"]["pid"] = serde_json::json!(pid);
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
}

fn alive(c: &mut Child) -> bool {
    c.try_wait().unwrap().is_none()
}

#[test]
fn stop_kill_and_rm_never_signal_a_stale_pid() {
    let mut d = Daemon::start();
    d.load_layout();
    let mut ids = Vec::new();
    for name in ["kk", "ss", "rr"] {
        let id = d.ok(&["run", "-d", "--name", name, "busybox:1.35", "sleep", "1000"]);
        ids.push(id.trim().to_string());
    }
    let mut decoys: Vec<Child> = (0..3).map(|_| host_sleeper()).collect();
    d.kill9();
    for (id, decoy) in ids.iter().zip(&decoys) {
        forge_pid(&d, id, decoy.id());
    }
    d.restart();
    assert_eq!(d.inspect("kk", "{{.State.Status}}"), "running");
    // The record now names the decoy (what a reused pid looks like to the daemon).
    assert_eq!(
        d.inspect("kk", "{{.State.Pid}}"),
        decoys[0].id().to_string()
    );

    // kill: the container dies (SIGKILL), the decoy with the recorded pid lives.
    d.ok(&["kill", "kk"]);
    d.wait_for("kk exited", 10, || {
        d.inspect("kk", "{{.State.Status}}") == "exited"
    });
    assert_eq!(d.inspect("kk", "{{.State.ExitCode}}"), "137");
    // stop: busybox sleep as PID 1 ignores SIGTERM, so the SIGKILL after the timeout.
    d.ok(&["stop", "-t", "1", "ss"]);
    assert_eq!(d.inspect("ss", "{{.State.Status}}"), "exited");
    // rm -f.
    d.ok(&["rm", "-f", "rr"]);
    assert!(!d.barge(&["inspect", "rr"]).status.success());
    std::thread::sleep(Duration::from_millis(200));
    for (i, decoy) in decoys.iter_mut().enumerate() {
        assert!(
            alive(decoy),
            "decoy {i} (the record's stale pid) was signalled"
        );
    }
    // A signal to a container that is no longer running is refused, not sent anywhere.
    let out = d.barge(&["kill", "kk"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is not running"), "{}", stderr(&out));
    for mut decoy in decoys {
        let _ = decoy.kill();
        let _ = decoy.wait();
    }
}
