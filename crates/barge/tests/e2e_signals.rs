//! End-to-end: stop/kill/rm signal the container's process through its monitor (a pidfd),
//! never through the pid stored in the record, which may name another process by then.
//! The test makes the record lie: its pid is replaced (daemon down) by an unrelated host
//! process's, which must survive every stop, kill and rm of the container.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// An unrelated host process, killed on drop.
struct Decoy(Child);
impl Drop for Decoy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
impl Decoy {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

fn host_sleeper() -> Decoy {
    Decoy(
        Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
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

fn alive(c: &mut Decoy) -> bool {
    c.0.try_wait().unwrap().is_none()
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
    let mut decoys: Vec<Decoy> = (0..3).map(|_| host_sleeper()).collect();
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
}

/// The pid of the monitor of container `id` (its argv names `<exec-root>/c/<id[..16]>/`).
fn monitor_pid(d: &Daemon, id: &str) -> i32 {
    let needle = d.dir.join("run/c").join(&id[..16]);
    let needle = needle.to_string_lossy();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(p.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.contains("\0monitor\0") && cmd.contains(&*needle) {
                return pid;
            }
        }
    }
    panic!("no monitor for {id}");
}

fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
}

#[test]
fn a_monitor_that_does_not_answer_is_bypassed_only_for_the_containers_own_process() {
    use nix::sys::signal::Signal::{SIGCONT, SIGSTOP};
    let mut d = Daemon::start();
    d.load_layout();
    let real = d
        .ok(&[
            "run",
            "-d",
            "--name",
            "real",
            "busybox:1.35",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    let forged = d
        .ok(&[
            "run",
            "-d",
            "--name",
            "forged",
            "busybox:1.35",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    let mut decoy = host_sleeper();
    d.kill9();
    forge_pid(&d, &forged, decoy.id());
    d.restart();

    // The monitor is stopped: the daemon gives up waiting for its answer and signals the
    // recorded pid, which is the container's own process.
    let mon = monitor_pid(&d, &real);
    signal(mon, SIGSTOP);
    let t = std::time::Instant::now();
    let out = d.barge(&["kill", "real"]);
    signal(mon, SIGCONT);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "the monitor was bypassed"
    );
    d.wait_for("real exited", 10, || {
        d.inspect("real", "{{.State.Status}}") == "exited"
    });
    assert_eq!(d.inspect("real", "{{.State.ExitCode}}"), "137");

    // Same with a record whose pid names another process: refused, nothing signalled.
    let mon = monitor_pid(&d, &forged);
    signal(mon, SIGSTOP);
    let out = d.barge(&["kill", "forged"]);
    signal(mon, SIGCONT);
    assert!(!out.status.success());
    assert!(alive(&mut decoy), "the decoy was signalled");
    // The abandoned request is not carried out late by the resumed monitor either.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.inspect("forged", "{{.State.Status}}"), "running");
    // With the monitor answering again, the container is killed as usual.
    d.ok(&["kill", "forged"]);
    d.wait_for("forged exited", 10, || {
        d.inspect("forged", "{{.State.Status}}") == "exited"
    });
    assert!(alive(&mut decoy));
}

/// Children of `parent` whose argv is a warm monitor's (`barge monitor --warm ...`).
fn warm_monitors(parent: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(p.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
            .and_then(|f| f.parse::<i32>().ok());
        let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        if ppid == Some(parent) && String::from_utf8_lossy(&cmd).contains("\0monitor\0--warm\0") {
            out.push(pid);
        }
    }
    out
}

/// Gone, or a zombie nobody reaped yet.
fn ended(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 1..].split_whitespace().next())
                == Some("Z")
        })
        .unwrap_or(true)
}

/// The engine keeps one monitor started ahead of the next start (`barge monitor --warm`,
/// containers/warm.rs): the next container's monitor is that very process, which then names its
/// container in its argv as a cold monitor does; a new one is made for the start after; and it
/// ends with the daemon (EOF on its stdin).
#[test]
fn a_warm_monitor_serves_the_next_start_and_ends_with_the_daemon() {
    let mut d = Daemon::start();
    d.load_layout();
    d.ok(&["run", "--rm", "busybox:1.35", "true"]);
    let daemon = d.pid().expect("daemon runs") as i32;
    d.wait_for("a warm monitor", 10, || warm_monitors(daemon).len() == 1);
    let warm = warm_monitors(daemon)[0];
    let id = d
        .ok(&[
            "run",
            "-d",
            "--name",
            "warmed",
            "busybox:1.35",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    assert_eq!(
        monitor_pid(&d, &id),
        warm,
        "the warm monitor serves the start"
    );
    d.wait_for("the next warm monitor", 10, || {
        warm_monitors(daemon).iter().any(|&p| p != warm)
    });
    let next = warm_monitors(daemon)[0];
    // Output, exit code and removal through it, as through a cold one.
    let out = d.barge(&[
        "run",
        "--rm",
        "busybox:1.35",
        "sh",
        "-c",
        "echo warm; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "warm");
    assert!(ended(next) || !warm_monitors(daemon).contains(&next));
    d.ok(&["rm", "-f", "warmed"]);
    d.wait_for("a warm monitor again", 10, || {
        warm_monitors(daemon).len() == 1
    });
    let last = warm_monitors(daemon)[0];
    d.kill9();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !ended(last) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ended(last), "the warm monitor outlived its daemon");
}

/// SIGTERM ends the daemon promptly even while a request waits on a slow engine call (a
/// `stop -t 60` of a container that ignores SIGTERM): in-flight calls are abandoned, as
/// dockerd's shutdown cancels requests, and the container outlives the daemon, as every
/// container does. (The runtime's drop used to wait for every blocking call to return.)
#[test]
fn sigterm_ends_the_daemon_while_a_slow_stop_is_in_flight() {
    let mut d = Daemon::start();
    d.load_layout();
    // PID 1 without a SIGTERM handler: the signal is ignored, the stop waits its whole timeout.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        "busybox:1.35",
        "sleep",
        "1000",
    ]);
    let mut stop = Command::new(BARGE)
        .args(["-H", &d.host, "stop", "-t", "60", "stubborn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The stop is under way (it sent SIGTERM and waits for the timeout).
    std::thread::sleep(Duration::from_secs(1));
    let pid = d.pid().expect("daemon runs") as i32;
    signal(pid, nix::sys::signal::Signal::SIGTERM);
    let t = std::time::Instant::now();
    while !ended(pid) && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = t.elapsed();
    let _ = stop.kill();
    let _ = stop.wait();
    assert!(
        ended(pid) && took < Duration::from_secs(10),
        "the daemon took {took:?} to end after SIGTERM (a 60 s stop was in flight)"
    );
    // The container is still there for the next daemon.
    d.restart();
    assert_eq!(d.inspect("stubborn", "{{.State.Running}}"), "true");
    d.ok(&["rm", "-f", "stubborn"]);
}
