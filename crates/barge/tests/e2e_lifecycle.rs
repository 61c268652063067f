//! End-to-end: restart policies (incl. across a daemon `kill -9`), health checks, pause and
//! unpause, stats, update, rename — with the barge CLI and the stock docker CLI.

mod common;

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use common::*;

static D: LazyLock<Daemon> = LazyLock::new(|| {
    let d = Daemon::start();
    d.load_layout();
    d
});

const BB: &str = "busybox:1.35";

fn state(d: &Daemon, name: &str) -> String {
    d.inspect(name, "{{.State.Status}} {{.RestartCount}}")
}

/// Lines of the container's log so far.
fn log_lines(d: &Daemon, name: &str) -> usize {
    stdout(&d.barge(&["logs", name])).lines().count()
}

/// SIGKILL to host process `pid`, then waits (up to 10 s) until it is gone.
fn kill_and_wait_gone(pid: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn on_failure_restarts_exactly_n_times() {
    D.ok(&[
        "run",
        "-d",
        "--name",
        "onf3",
        "--restart",
        "on-failure:3",
        BB,
        "sh",
        "-c",
        "exit 1",
    ]);
    // Back-off 100 + 200 + 400 ms: done well within 20 s.
    D.wait_for("on-failure:3 to give up", 20, || {
        state(&D, "onf3") == "exited 3"
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(state(&D, "onf3"), "exited 3");
    assert_eq!(D.inspect("onf3", "{{.State.ExitCode}}"), "1");
    // One start by the user and three by the policy, each followed by a `die`.
    let ev = D.docker_ok(&[
        "events",
        "--since",
        "0",
        "--until",
        "0s",
        "--filter",
        "container=onf3",
        "--filter",
        "event=start",
        "--filter",
        "event=die",
        "--format",
        "{{.Action}}",
    ]);
    assert_eq!(
        ev.trim().lines().collect::<Vec<_>>(),
        ["start", "die"].repeat(4),
        "{ev}"
    );
    assert_eq!(
        D.docker_ok(&[
            "inspect",
            "-f",
            "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}",
            "onf3"
        ])
        .trim(),
        "on-failure:3"
    );
    // Exit 0 is no failure: no restart.
    D.ok(&[
        "run",
        "-d",
        "--name",
        "onf0",
        "--restart",
        "on-failure",
        BB,
        "true",
    ]);
    D.wait_for("onf0 to exit", 10, || {
        D.inspect("onf0", "{{.State.Status}}") == "exited"
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(state(&D, "onf0"), "exited 0");
    // A user's start resets the count (and restarts again three times).
    D.ok(&["start", "onf3"]);
    D.wait_for("restarted on-failure:3 to give up again", 20, || {
        state(&D, "onf3") == "exited 3"
    });
    D.ok(&["rm", "onf3", "onf0"]);
}

#[test]
fn restart_policy_validation() {
    let out = D.barge(&["run", "--rm", "--restart", "always", BB, "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--restart and --rm"),
        "{}",
        stderr(&out)
    );
    // The daemon checks too (docker's CLI passes these through).
    let out = D.docker(&["create", "--restart", "always:3", BB, "true"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("maximum retry count can only be used with 'on-failure'"),
        "{}",
        stderr(&out)
    );
    let out = D.docker(&["create", "--health-interval", "1ns", BB, "true"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Healthcheck.Interval"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn stop_disables_restart_and_exit_restarts() {
    // Exits once (status 3), then runs: `always` brings it back, RestartCount 1.
    D.ok(&[
        "run",
        "-d",
        "--name",
        "alw1",
        "--restart",
        "always",
        BB,
        "sh",
        "-c",
        "[ -e /ran ] || { : > /ran; exit 3; }; exec sleep 1000",
    ]);
    D.wait_for("alw1 to run again", 20, || state(&D, "alw1") == "running 1");
    // A user's stop is final until the next start.
    D.ok(&["stop", "-t", "1", "alw1"]);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(state(&D, "alw1"), "exited 1");
    D.ok(&["start", "alw1"]);
    assert_eq!(state(&D, "alw1"), "running 0");
    // So is docker kill.
    D.docker_ok(&["kill", "alw1"]);
    D.wait_for("alw1 killed", 10, || {
        D.inspect("alw1", "{{.State.Status}}") == "exited"
    });
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(state(&D, "alw1"), "exited 0");
    D.ok(&["rm", "alw1"]);
}

#[test]
fn restart_policies_survive_daemon_kill9() {
    let mut d = Daemon::start();
    d.load_layout();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "always",
        "--restart",
        "always",
        BB,
        "sleep",
        "1000",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "stopped-always",
        "--restart",
        "always",
        BB,
        "sleep",
        "1000",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "stopped-unless",
        "--restart",
        "unless-stopped",
        BB,
        "sleep",
        "1000",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "unless",
        "--restart",
        "unless-stopped",
        BB,
        "sleep",
        "1000",
    ]);
    d.ok(&["stop", "-t", "0", "stopped-always", "stopped-unless"]);
    let pid: i32 = d.inspect("always", "{{.State.Pid}}").parse().unwrap();
    let unless_pid = d.inspect("unless", "{{.State.Pid}}");
    d.kill9();
    // The container dies while no daemon watches.
    kill_and_wait_gone(pid);
    std::thread::sleep(Duration::from_millis(300));
    d.restart();
    d.wait_for("always to run again", 20, || {
        d.inspect("always", "{{.State.Status}}") == "running"
            && d.inspect("always", "{{.State.Pid}}") != pid.to_string()
    });
    assert_eq!(d.inspect("always", "{{.State.ExitCode}}"), "0");
    // `always` comes back even after a stop; `unless-stopped` only if not stopped.
    d.wait_for("stopped-always to run", 20, || {
        d.inspect("stopped-always", "{{.State.Status}}") == "running"
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.inspect("stopped-unless", "{{.State.Status}}"), "exited");
    // Untouched containers keep running (same process).
    assert_eq!(d.inspect("unless", "{{.State.Pid}}"), unless_pid);
    // And stock docker sees the state.
    let ps = d.docker_ok(&["ps", "--format", "{{.Names}}"]);
    for n in ["always", "stopped-always", "unless"] {
        assert!(ps.lines().any(|l| l == n), "{ps}");
    }
    d.ok(&[
        "rm",
        "-f",
        "always",
        "stopped-always",
        "stopped-unless",
        "unless",
    ]);
}

/// As dockerd's restore: `--rm` containers the daemon finds not running when it starts (their
/// exit went unseen, or they were never started) are removed; others stay. Trees a stopped
/// daemon was still deleting (`containers/.removing`) are deleted too.
#[test]
fn rm_containers_left_not_running_are_removed_at_daemon_start() {
    let mut d = Daemon::start();
    d.load_layout();
    d.ok(&["create", "--rm", "--name", "rm-created", BB, "true"]);
    d.ok(&[
        "run", "-d", "--rm", "--name", "rm-died", BB, "sleep", "1000",
    ]);
    d.ok(&[
        "run", "-d", "--rm", "--name", "rm-alive", BB, "sleep", "1000",
    ]);
    d.ok(&["run", "-d", "--name", "kept", BB, "sleep", "1000"]);
    d.ok(&["stop", "-t", "0", "kept"]);
    let died_id = d.inspect("rm-died", "{{.Id}}");
    let pid: i32 = d.inspect("rm-died", "{{.State.Pid}}").parse().unwrap();
    d.kill9();
    // This one dies while no daemon watches.
    kill_and_wait_gone(pid);
    let leftover = d.dir.join("data/containers/.removing/deadbeef.1");
    std::fs::create_dir_all(leftover.join("upper/etc")).unwrap();
    std::fs::write(leftover.join("upper/etc/hosts"), "x").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    d.restart();
    let names = d.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    let names: Vec<&str> = names.lines().collect();
    assert!(!names.contains(&"rm-created"), "{names:?}");
    assert!(!names.contains(&"rm-died"), "{names:?}");
    assert!(names.contains(&"rm-alive"), "{names:?}");
    assert!(names.contains(&"kept"), "{names:?}");
    d.wait_for("the removed trees to go", 20, || {
        !d.dir.join("data/containers").join(&died_id).exists() && !leftover.exists()
    });
    // And the running `--rm` container is still removed when it exits.
    d.ok(&["kill", "rm-alive"]);
    d.wait_for("rm-alive's removal", 20, || {
        !d.ok(&["ps", "-a", "--format", "{{.Names}}"])
            .lines()
            .any(|n| n == "rm-alive")
    });
    d.ok(&["rm", "-f", "kept"]);
}

#[test]
fn image_healthcheck_turns_healthy() {
    // multilayer:1's HEALTHCHECK: --interval=5s --timeout=2s --retries=3 (used as is).
    D.ok(&["run", "-d", "--name", "hc-app", "multilayer:1"]);
    assert_eq!(D.inspect("hc-app", "{{.State.Health.Status}}"), "starting");
    let ps = D.ok(&["ps", "--filter", "name=hc-app", "--format", "{{.Status}}"]);
    assert!(ps.contains("(health: starting)"), "{ps}");
    D.wait_for("hc-app healthy", 40, || {
        D.inspect("hc-app", "{{.State.Health.Status}}") == "healthy"
    });
    let log = D.inspect("hc-app", "{{json .State.Health}}");
    let v: serde_json::Value = serde_json::from_str(&log).unwrap();
    assert_eq!(v["FailingStreak"], 0);
    let last = v["Log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["ExitCode"], 0, "{v}");
    assert!(last["Start"].as_str().unwrap() <= last["End"].as_str().unwrap());
    // ps shows it like docker, and filters by it.
    let ps = D.docker_ok(&[
        "ps",
        "--filter",
        "health=healthy",
        "--format",
        "{{.Names}} {{.Status}}",
    ]);
    assert!(
        ps.lines()
            .any(|l| l.starts_with("hc-app Up ") && l.ends_with("(healthy)")),
        "{ps}"
    );
    // The event went out.
    let ev = D.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        "0s",
        "--filter",
        "container=hc-app",
        "--format",
        "{{.Action}}",
    ]);
    assert!(ev.lines().any(|l| l == "health_status: healthy"), "{ev}");
    // --no-healthcheck disables the image's check.
    D.ok(&[
        "create",
        "--name",
        "hc-none",
        "--no-healthcheck",
        "multilayer:1",
    ]);
    assert_eq!(
        D.inspect("hc-none", "{{json .Config.Healthcheck.Test}}"),
        r#"["NONE"]"#
    );
    D.ok(&["rm", "-f", "hc-app", "hc-none"]);
}

#[test]
fn failing_health_cmd_turns_unhealthy() {
    D.docker_ok(&[
        "run",
        "-d",
        "--name",
        "hc-bad",
        "--health-cmd",
        "echo probing; exit 1",
        "--health-interval",
        "300ms",
        "--health-retries",
        "2",
        BB,
        "sleep",
        "1000",
    ]);
    D.wait_for("hc-bad unhealthy", 30, || {
        D.inspect("hc-bad", "{{.State.Health.Status}}") == "unhealthy"
    });
    let v: serde_json::Value =
        serde_json::from_str(&D.inspect("hc-bad", "{{json .State.Health}}")).unwrap();
    assert!(v["FailingStreak"].as_i64().unwrap() >= 2, "{v}");
    let log = v["Log"].as_array().unwrap();
    assert!(!log.is_empty() && log.len() <= 5, "{v}");
    assert_eq!(log[0]["ExitCode"], 1);
    assert_eq!(log[0]["Output"], "probing\n");
    // Keeps at most 5 results.
    D.wait_for("5 health results", 30, || {
        let v: serde_json::Value =
            serde_json::from_str(&D.inspect("hc-bad", "{{json .State.Health}}")).unwrap();
        v["FailingStreak"].as_i64().unwrap() >= 6 && v["Log"].as_array().unwrap().len() == 5
    });
    // A probe that outlives its timeout is killed and counts as a failure.
    D.ok(&[
        "run",
        "-d",
        "--name",
        "hc-slow",
        "--health-cmd",
        "sleep 10",
        "--health-timeout",
        "300ms",
        "--health-interval",
        "200ms",
        "--health-retries",
        "1",
        BB,
        "sleep",
        "1000",
    ]);
    D.wait_for("hc-slow unhealthy", 30, || {
        D.inspect("hc-slow", "{{.State.Health.Status}}") == "unhealthy"
    });
    let log: serde_json::Value =
        serde_json::from_str(&D.inspect("hc-slow", "{{json .State.Health.Log}}")).unwrap();
    assert_eq!(
        log[0]["Output"], "Health check exceeded timeout (300ms)",
        "{log}"
    );
    assert_eq!(log[0]["ExitCode"], -1, "{log}");
    // A passing check, within a start period.
    D.ok(&[
        "run",
        "-d",
        "--name",
        "hc-ok",
        "--health-cmd",
        "true",
        "--health-interval",
        "10s",
        "--health-start-period",
        "30s",
        "--health-start-interval",
        "200ms",
        BB,
        "sleep",
        "1000",
    ]);
    D.wait_for("hc-ok healthy", 20, || {
        D.inspect("hc-ok", "{{.State.Health.Status}}") == "healthy"
    });
    D.ok(&["rm", "-f", "hc-bad", "hc-slow", "hc-ok"]);
}

#[test]
fn pause_and_unpause_freeze_the_processes() {
    D.ok(&[
        "run",
        "-d",
        "--name",
        "pz",
        BB,
        "sh",
        "-c",
        "while true; do echo tick; sleep 0.1; done",
    ]);
    D.wait_for("ticks", 10, || log_lines(&D, "pz") > 3);
    D.ok(&["pause", "pz"]);
    assert_eq!(
        D.inspect("pz", "{{.State.Status}} {{.State.Paused}}"),
        "paused true"
    );
    let ps = D.ok(&["ps", "--filter", "name=pz", "--format", "{{.Status}}"]);
    assert!(ps.contains("(Paused)"), "{ps}");
    std::thread::sleep(Duration::from_millis(300));
    let frozen = log_lines(&D, "pz");
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        log_lines(&D, "pz"),
        frozen,
        "a paused container made progress"
    );
    // exec and a second pause are refused.
    assert!(!D.barge(&["exec", "pz", "true"]).status.success());
    assert!(!D.barge(&["pause", "pz"]).status.success());
    D.docker_ok(&["unpause", "pz"]);
    assert_eq!(D.inspect("pz", "{{.State.Status}}"), "running");
    D.wait_for("ticks after unpause", 10, || {
        log_lines(&D, "pz") > frozen + 3
    });
    assert!(!D.barge(&["unpause", "pz"]).status.success());
    // A paused container stops (and is killed) as docker's does.
    D.docker_ok(&["pause", "pz"]);
    D.ok(&["stop", "-t", "1", "pz"]);
    assert_eq!(D.inspect("pz", "{{.State.Status}}"), "exited");
    D.ok(&["start", "pz"]);
    D.ok(&["pause", "pz"]);
    D.ok(&["kill", "pz"]);
    D.wait_for("paused container killed", 10, || {
        D.inspect("pz", "{{.State.Status}}") == "exited"
    });
    assert_eq!(D.inspect("pz", "{{.State.ExitCode}}"), "137");
    D.ok(&["rm", "pz"]);
}

#[test]
fn stats_with_barge_and_docker() {
    D.ok(&[
        "run",
        "-d",
        "--name",
        "st",
        "-m",
        "64m",
        "--cpus",
        "0.5",
        BB,
        "sh",
        "-c",
        "while :; do :; done",
    ]);
    let out = D.ok(&["stats", "--no-stream", "st"]);
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    for col in [
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET I/O",
        "BLOCK I/O",
        "PIDS",
    ] {
        assert!(header.contains(col), "{out}");
    }
    let row = lines.next().unwrap();
    assert!(row.contains(" st ") && row.contains("/ 64MiB"), "{out}");
    let fmt = "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}";
    for (who, text) in [
        (
            "barge",
            D.ok(&["stats", "--no-stream", "--format", fmt, "st"]),
        ),
        (
            "docker",
            D.docker_ok(&["stats", "--no-stream", "--format", fmt, "st"]),
        ),
    ] {
        let f: Vec<&str> = text.trim().split('|').collect();
        assert_eq!(f.len(), 4, "{who}: {text}");
        assert_eq!(f[0], "st", "{who}: {text}");
        let cpu: f64 = f[1].trim_end_matches('%').parse().unwrap();
        // A busy loop capped at half a CPU.
        assert!(cpu > 10.0 && cpu < 75.0, "{who}: cpu {cpu}: {text}");
        assert!(f[2].ends_with(" / 64MiB"), "{who}: {text}");
        assert!(!f[2].starts_with("0B"), "{who}: {text}");
        // The shell is the only process.
        assert_eq!(f[3], "1", "{who}: {text}");
    }
    // -a lists stopped containers too; the JSON API has docker's fields.
    D.ok(&["create", "--name", "st-off", BB, "true"]);
    let all = D.ok(&[
        "stats",
        "--no-stream",
        "-a",
        "--format",
        "{{.Name}} {{.CPUPerc}}",
    ]);
    assert!(all.lines().any(|l| l == "st-off --"), "{all}");
    let running = D.ok(&["stats", "--no-stream", "--format", "{{.Name}}"]);
    assert!(!running.contains("st-off"), "{running}");
    D.ok(&["rm", "-f", "st", "st-off"]);
}

fn cgroup_file(controller: &str, id: &str, file: &str) -> String {
    let v1 = format!("/sys/fs/cgroup/{controller}/barge/{id}/{file}");
    std::fs::read_to_string(&v1)
        .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup/barge/{id}/{file}")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn update_limits_and_policy_of_a_running_container() {
    let id = D
        .ok(&[
            "run", "-d", "--name", "upd", "-m", "64m", BB, "sleep", "1000",
        ])
        .trim()
        .to_string();
    let v1 = std::path::Path::new("/sys/fs/cgroup/memory").is_dir();
    let mem_file = if v1 {
        "memory.limit_in_bytes"
    } else {
        "memory.max"
    };
    assert_eq!(
        cgroup_file("memory", &id, mem_file),
        (64u64 << 20).to_string()
    );
    assert_eq!(
        D.ok(&[
            "update",
            "-m",
            "128m",
            "--pids-limit",
            "20",
            "--cpus",
            "0.5",
            "--restart",
            "on-failure:2",
            "upd"
        ])
        .trim(),
        "upd"
    );
    assert_eq!(
        cgroup_file("memory", &id, mem_file),
        (128u64 << 20).to_string()
    );
    assert_eq!(cgroup_file("pids", &id, "pids.max"), "20");
    if v1 {
        assert_eq!(cgroup_file("cpu", &id, "cpu.cfs_quota_us"), "50000");
    } else {
        assert_eq!(cgroup_file("cpu", &id, "cpu.max"), "50000 100000");
    }
    assert_eq!(
        D.inspect("upd", "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.NanoCpus}} {{.HostConfig.RestartPolicy.Name}}"),
        format!("{} 20 500000000 on-failure", 128u64 << 20)
    );
    // The stock docker CLI too; the limit shrinks again.
    D.docker_ok(&["update", "--memory", "96m", "upd"]);
    assert_eq!(
        cgroup_file("memory", &id, mem_file),
        (96u64 << 20).to_string()
    );
    let out = D.barge(&["update", "-m", "1k", "upd"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Minimum memory limit"),
        "{}",
        stderr(&out)
    );
    // The new policy applies to the next exit.
    D.ok(&["update", "--restart", "always", "upd"]);
    let pid: i32 = D.inspect("upd", "{{.State.Pid}}").parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    D.wait_for("upd restarted by its updated policy", 20, || {
        state(&D, "upd") == "running 1"
    });
    D.ok(&["rm", "-f", "upd"]);
}

#[test]
fn rename_containers() {
    D.ok(&["create", "--name", "ren-a", BB, "true"]);
    D.ok(&["create", "--name", "ren-b", BB, "true"]);
    D.ok(&["rename", "ren-a", "ren-c"]);
    assert_eq!(D.inspect("ren-c", "{{.Name}}"), "/ren-c");
    assert!(!D.barge(&["inspect", "ren-a"]).status.success());
    let out = D.barge(&["rename", "ren-c", "ren-b"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is already in use"),
        "{}",
        stderr(&out)
    );
    assert!(!D.barge(&["rename", "ren-c", "bad/name"]).status.success());
    D.docker_ok(&["rename", "ren-c", "ren-d"]);
    let ev = D.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        "0s",
        "--filter",
        "event=rename",
        "--format",
        "{{.Actor.Attributes.oldName}}>{{.Actor.Attributes.name}}",
    ]);
    assert!(ev.lines().any(|l| l == "/ren-a>ren-c"), "{ev}");
    assert!(ev.lines().any(|l| l == "/ren-c>ren-d"), "{ev}");
    D.ok(&["rm", "ren-b", "ren-d"]);
}
