//! End-to-end: container lifecycle through the barge CLI — exit codes, logs, exec, stop and
//! --init, limits and OOM, isolation defaults, ps/wait/top/inspect, and surviving a daemon
//! `kill -9`.

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

fn code(args: &[&str]) -> Option<i32> {
    D.barge(args).status.code()
}

#[test]
fn exit_codes_follow_docker() {
    assert_eq!(code(&["run", "--rm", BB, "true"]), Some(0));
    assert_eq!(code(&["run", "--rm", BB, "sh", "-c", "exit 3"]), Some(3));
    let out = D.barge(&["run", "--rm", BB, "nonexistent-binary"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    let out = D.barge(&["run", "--rm", BB, "/etc/hostname"]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    // PID 1 ignores signals it has no handler for, even from itself; under --init the shell
    // is not PID 1 and dies: 128+N.
    assert_eq!(
        code(&["run", "--rm", BB, "sh", "-c", "kill -9 $$; exit 0"]),
        Some(0)
    );
    assert_eq!(
        code(&["run", "--rm", "--init", BB, "sh", "-c", "kill -9 $$"]),
        Some(137)
    );
    assert_eq!(
        code(&["run", "--rm", "--init", BB, "sh", "-c", "kill -15 $$"]),
        Some(143)
    );
    // --rm leaves nothing behind.
    assert!(!D
        .ok(&["ps", "-a", "--format", "{{.Image}}"])
        .contains("nonexistent"));
}

#[test]
fn stdout_stderr_logs_and_timestamps() {
    let id = D
        .ok(&[
            "run",
            "-d",
            "--name",
            "logger",
            BB,
            "sh",
            "-c",
            "echo out1; sleep 0.1; echo err1 >&2; sleep 0.1; echo out2",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    assert_eq!(D.ok(&["wait", "logger"]).trim(), "0");
    let out = D.barge(&["logs", "logger"]);
    assert_eq!(stdout(&out), "out1\nout2\n");
    assert_eq!(stderr(&out), "err1\n");
    assert_eq!(D.ok(&["logs", "--tail", "1", "logger"]), "out2\n");
    let ts = D.ok(&["logs", "-t", "logger"]);
    assert!(
        ts.lines().all(|l| l.len() > 30 && l.as_bytes()[4] == b'-'),
        "{ts}"
    );
    // json-file on disk, docker's format.
    let path = D.inspect("logger", "{{.LogPath}}");
    let first = std::fs::read_to_string(path).unwrap();
    let v: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    assert!(v["log"].is_string() && v["stream"].is_string() && v["time"].is_string());
    D.ok(&["rm", "logger"]);
}

#[test]
fn logs_follow_streams_until_exit() {
    D.ok(&[
        "run",
        "-d",
        "--name",
        "follower",
        BB,
        "sh",
        "-c",
        "for i in 1 2 3; do echo tick$i; sleep 0.3; done",
    ]);
    let out = D.ok(&["logs", "-f", "follower"]);
    assert_eq!(out, "tick1\ntick2\ntick3\n");
    D.ok(&["rm", "follower"]);
}

#[test]
fn attached_stdin_reaches_the_container() {
    let out = D.barge_stdin(
        &["run", "--rm", "-i", BB, "sh", "-c", "read x; echo got:$x"],
        b"hello\n",
    );
    assert_eq!(stdout(&out), "got:hello\n", "{}", stderr(&out));
}

#[test]
fn exec_runs_in_the_container_with_env_user_workdir() {
    D.ok(&[
        "run",
        "-d",
        "--name",
        "exec-target",
        "-e",
        "FOO=bar",
        BB,
        "sleep",
        "60",
    ]);
    assert_eq!(
        D.ok(&["exec", "exec-target", "sh", "-c", "echo $FOO"]),
        "bar\n"
    );
    assert_eq!(
        D.ok(&[
            "exec",
            "-e",
            "FOO=baz",
            "exec-target",
            "sh",
            "-c",
            "echo $FOO"
        ]),
        "baz\n"
    );
    assert_eq!(
        D.ok(&["exec", "-w", "/bin", "exec-target", "sh", "-c", "pwd"]),
        "/bin\n"
    );
    assert_eq!(
        D.ok(&[
            "exec",
            "-u",
            "1000:1000",
            "exec-target",
            "sh",
            "-c",
            "echo $(busybox id -u):$(busybox id -g)"
        ]),
        "1000:1000\n"
    );
    assert_eq!(
        code(&["exec", "exec-target", "sh", "-c", "exit 7"]),
        Some(7)
    );
    for _ in 0..5 {
        // 126, not `run`'s 127: dockerd's `ContainerExecStart` sets 126 for any exec that
        // fails to start (docker-py's `test_exec_run_failed`, which dockerd 20.10 passes).
        let out = D.barge(&["exec", "exec-target", "no-such-binary"]);
        assert_eq!(out.status.code(), Some(126), "{}", stdout(&out));
        assert!(
            stdout(&out).contains("executable file not found"),
            "{}",
            stdout(&out)
        );
    }
    let out = D.barge_stdin(&["exec", "-i", "exec-target", "cat"], b"piped\n");
    assert_eq!(stdout(&out), "piped\n");
    // The exec'd process shares the container's pid namespace: pid 1 is sleep.
    assert_eq!(
        D.ok(&["exec", "exec-target", "cat", "/proc/1/cmdline"])
            .replace('\0', " ")
            .trim(),
        "sleep 60"
    );
    let top = D.ok(&["top", "exec-target"]);
    assert!(top.contains("sleep 60"), "{top}");
    D.ok(&["rm", "-f", "exec-target"]);
}

#[test]
fn stop_without_init_waits_for_the_timeout_with_init_is_immediate() {
    // multilayer:1's app ignores SIGTERM as PID 1.
    D.ok(&["run", "-d", "--name", "noinit", "multilayer:1"]);
    D.ok(&["run", "-d", "--init", "--name", "withinit", "multilayer:1"]);
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    D.ok(&["stop", "-t", "3", "noinit"]);
    let slow = t.elapsed();
    let t = Instant::now();
    D.ok(&["stop", "-t", "3", "withinit"]);
    let fast = t.elapsed();
    assert!(
        slow >= Duration::from_millis(2900),
        "stop without init took {slow:?}"
    );
    assert!(
        fast < Duration::from_millis(2000),
        "stop with init took {fast:?}"
    );
    assert_eq!(D.inspect("noinit", "{{.State.ExitCode}}"), "137");
    assert_eq!(D.inspect("withinit", "{{.State.ExitCode}}"), "143");
    D.ok(&["rm", "noinit", "withinit"]);
}

#[test]
fn init_reaps_zombies_and_is_pid1() {
    let out = D.ok(&[
        "run",
        "--rm",
        "--init",
        BB,
        "sh",
        "-c",
        "cat /proc/1/cmdline | busybox tr '\\0' ' '; echo",
    ]);
    assert!(out.starts_with("/sbin/docker-init"), "{out}");
}

#[test]
fn memory_limit_oom_kill_is_reported() {
    let out = D.barge(&[
        "run",
        "--name",
        "oom",
        "--memory",
        "16m",
        "--memory-swap",
        "16m",
        BB,
        "sh",
        "-c",
        "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert_eq!(D.inspect("oom", "{{.State.OOMKilled}}"), "true");
    assert_eq!(D.inspect("oom", "{{.State.ExitCode}}"), "137");
    D.ok(&["rm", "oom"]);
}

#[test]
fn limits_and_isolation_defaults() {
    let script = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
                  cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; \
                  cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max; \
                  busybox hostname; busybox grep CapEff /proc/self/status; busybox grep NoNewPrivs /proc/self/status; busybox grep Seccomp: /proc/self/status; \
                  echo x > /proc/sys/kernel/domainname 2>/dev/null || echo ro-proc";
    let out = D.ok(&[
        "run",
        "--rm",
        "--hostname",
        "boxy",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "--cpus",
        "0.5",
        "--security-opt",
        "no-new-privileges",
        BB,
        "sh",
        "-c",
        script,
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "67108864", "{out}");
    assert_eq!(lines[1], "50", "{out}");
    assert_eq!(lines[2], "50000", "{out}");
    assert_eq!(lines[3], "boxy");
    // Docker's default capability set is 0x00000000a80425fb.
    assert_eq!(
        lines[4].split_whitespace().nth(1),
        Some("00000000a80425fb"),
        "{out}"
    );
    assert_eq!(lines[5].split_whitespace().nth(1), Some("1"));
    assert_eq!(
        lines[6].split_whitespace().nth(1),
        Some("2"),
        "seccomp filter mode expected: {out}"
    );
    assert!(out.contains("ro-proc"), "{out}");
    // Namespaces differ from the host's.
    let host_pidns = std::fs::read_link("/proc/self/ns/pid").unwrap();
    let ns = D.ok(&[
        "run",
        "--rm",
        BB,
        "sh",
        "-c",
        "busybox readlink /proc/1/ns/pid; busybox readlink /proc/1/ns/net",
    ]);
    assert!(!ns.contains(host_pidns.to_str().unwrap()), "{ns}");
    // cap-drop ALL / cap-add, privileged, read-only root.
    let caps = D.ok(&[
        "run",
        "--rm",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "NET_BIND_SERVICE",
        BB,
        "busybox",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert!(caps.contains("0000000000000400"), "{caps}");
    let caps = D.ok(&[
        "run",
        "--rm",
        "--privileged",
        BB,
        "busybox",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    // --privileged grants every capability the daemon itself has (Docker's GetAllCapabilities).
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let host_caps = status
        .lines()
        .find(|l| l.starts_with("CapEff"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    assert_eq!(
        caps.split_whitespace().nth(1),
        Some(host_caps.as_str()),
        "{caps}"
    );
    assert_ne!(
        code(&["run", "--rm", "--read-only", BB, "busybox", "touch", "/x"]),
        Some(0)
    );
    // --network host shares the host's net namespace; none has only lo.
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_eq!(
        D.ok(&[
            "run",
            "--rm",
            "--network",
            "host",
            BB,
            "busybox",
            "readlink",
            "/proc/self/ns/net"
        ])
        .trim(),
        host_net.to_str().unwrap()
    );
    let ifs = D.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        BB,
        "ls",
        "/sys/class/net",
    ]);
    assert_eq!(ifs.trim(), "lo");
}

#[test]
fn user_workdir_entrypoint_env_file() {
    assert_eq!(
        D.ok(&[
            "run",
            "--rm",
            "-u",
            "1234:5",
            BB,
            "sh",
            "-c",
            "echo $(busybox id -u) $(busybox id -g)"
        ]),
        "1234 5\n"
    );
    assert_eq!(
        D.ok(&["run", "--rm", "-w", "/bin", BB, "sh", "-c", "pwd"]),
        "/bin\n"
    );
    // Docker creates a missing working directory.
    assert_eq!(
        D.ok(&["run", "--rm", "-w", "/new/work", BB, "sh", "-c", "pwd"]),
        "/new/work\n"
    );
    assert_eq!(
        D.ok(&["run", "--rm", "--entrypoint", "echo", BB, "a", "b"]),
        "a b\n"
    );
    let env_file = D.dir.join("env.list");
    std::fs::write(&env_file, "# comment\nA=1\nB=two words\n").unwrap();
    assert_eq!(
        D.ok(&[
            "run",
            "--rm",
            "--env-file",
            env_file.to_str().unwrap(),
            "-e",
            "C=3",
            BB,
            "sh",
            "-c",
            "echo $A-$B-$C"
        ]),
        "1-two words-3\n"
    );
    // Image config: multilayer runs as app (1234) in /app.
    assert_eq!(
        D.ok(&[
            "run",
            "--rm",
            "--entrypoint",
            "sh",
            "multilayer:1",
            "-c",
            "echo $(id -u) $PWD $PORT"
        ]),
        "1234 /app 8080\n"
    );
}

#[test]
fn ps_filters_format_inspect_wait_restart_kill_rm() {
    D.ok(&[
        "run", "-d", "--name", "psa", "-l", "team=x", BB, "sleep", "60",
    ]);
    D.ok(&["create", "--name", "psb", BB, "true"]);
    let running = D.ok(&["ps", "--format", "{{.Names}}"]);
    assert!(
        running.lines().any(|l| l == "psa") && !running.contains("psb"),
        "{running}"
    );
    let all = D.ok(&[
        "ps",
        "-a",
        "--filter",
        "name=ps",
        "--format",
        "{{.Names}} {{.State}}",
    ]);
    assert!(
        all.contains("psa running") && all.contains("psb created"),
        "{all}"
    );
    assert_eq!(
        D.ok(&["ps", "-q", "--filter", "label=team=x"]).trim().len(),
        12
    );
    assert_eq!(D.inspect("psb", "{{.State.Status}}"), "created");
    D.ok(&["start", "psb"]);
    assert_eq!(D.ok(&["wait", "psb"]).trim(), "0");
    let started = D.inspect("psa", "{{.State.StartedAt}}");
    D.ok(&["restart", "-t", "1", "psa"]);
    assert_eq!(D.inspect("psa", "{{.State.Status}}"), "running");
    assert_ne!(D.inspect("psa", "{{.State.StartedAt}}"), started);
    D.ok(&["kill", "psa"]);
    assert_eq!(D.ok(&["wait", "psa"]).trim(), "137");
    let out = D.barge(&["kill", "psa"]);
    assert!(!out.status.success());
    let out = D.barge(&["run", "--name", "psa", BB, "true"]);
    assert_eq!(
        out.status.code(),
        Some(125),
        "duplicate name must be refused"
    );
    D.ok(&["rm", "psa", "psb"]);
    assert!(D.barge(&["inspect", "psa"]).status.code() != Some(0));
}

#[test]
fn containers_survive_daemon_kill9() {
    let mut d = Daemon::start();
    d.load_layout();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "survivor",
        BB,
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo line$i; sleep 0.2; done",
    ]);
    d.ok(&["run", "-d", "--name", "survivor2", "--init", "multilayer:1"]);
    let pid = d.inspect("survivor", "{{.State.Pid}}");
    d.kill9();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "container died with the daemon"
    );
    d.restart();
    assert_eq!(d.inspect("survivor", "{{.State.Status}}"), "running");
    assert_eq!(d.inspect("survivor", "{{.State.Pid}}"), pid);
    let ps = d.ok(&["ps", "--format", "{{.Names}}"]);
    assert!(ps.contains("survivor") && ps.contains("survivor2"), "{ps}");
    assert_eq!(d.ok(&["exec", "survivor", "echo", "alive"]), "alive\n");
    // logs -f keeps streaming output written after the restart.
    let child = std::process::Command::new(BARGE)
        .env("BARGE_HOST", &d.host)
        .args(["logs", "-f", "--tail", "1", "survivor"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    d.ok(&["stop", "-t", "1", "survivor"]);
    let out = child.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).lines().count() >= 3,
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let t = Instant::now();
    d.ok(&["stop", "survivor2"]);
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(d.inspect("survivor", "{{.State.Status}}"), "exited");
    // A container that exited while the daemon was down is reported exited after restart.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "short",
        BB,
        "sh",
        "-c",
        "sleep 1; exit 4",
    ]);
    d.kill9();
    std::thread::sleep(Duration::from_millis(1800));
    d.restart();
    d.wait_for("short to be exited", 10, || {
        d.inspect("short", "{{.State.Status}}") == "exited"
    });
    assert_eq!(d.inspect("short", "{{.State.ExitCode}}"), "4");
}

#[test]
fn kill9_during_load_leaves_a_loadable_store() {
    let mut d = Daemon::start();
    let layout = images_dir().join("oci-layout");
    let mut child = std::process::Command::new(BARGE)
        .env("BARGE_HOST", &d.host)
        .args(["load", "-i", layout.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    d.kill9();
    let _ = child.wait();
    d.restart();
    d.load_layout();
    assert_eq!(
        d.ok(&["run", "--rm", "tiny-multilayer:1"]),
        "hello\n/data:\nkeep\n\n/data/keep:\nc\n"
    );
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "debian-python:bookworm",
            "python3",
            "-c",
            "print(1)"
        ]),
        "1\n"
    );
}

#[test]
fn json_file_log_rotation_with_log_opts() {
    D.ok(&[
        "run",
        "--name",
        "rotator",
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=2",
        BB,
        "sh",
        "-c",
        "i=0; while [ $i -lt 200 ]; do echo line-$i-padding-padding-padding; i=$((i+1)); done",
    ]);
    let path = std::path::PathBuf::from(D.inspect("rotator", "{{.LogPath}}"));
    let dir = path.parent().unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with(&name))
        .collect();
    assert!(files.len() <= 2, "max-file=2 but found {files:?}");
    for f in &files {
        let len = std::fs::metadata(dir.join(f)).unwrap().len();
        // max-size is decimal (1k = 1000 bytes), as dockerd's json-file driver.
        assert!(len <= 1000 + 200, "{f} is {len} bytes");
    }
    let logs = D.ok(&["logs", "rotator"]);
    assert!(
        logs.ends_with("line-199-padding-padding-padding\n"),
        "{logs}"
    );
    assert!(
        !logs.contains("line-0-"),
        "oldest lines should have rotated away"
    );
    D.ok(&["rm", "rotator"]);
}

/// `HostConfig.ConsoleSize` sizes the TTY before the process starts (not only on a later
/// resize): the first thing the process sees is the requested size.
#[test]
fn console_size_applies_from_the_start() {
    let d = Daemon::start();
    d.load_layout();
    let sock = d.sock.display().to_string();
    let script = format!(
        r#"
import http.client, json, socket
class U(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect("{sock}")
def req(method, path, body=None):
    c = U("localhost")
    c.request(method, path, json.dumps(body) if body is not None else None, {{"Content-Type": "application/json"}})
    r = c.getresponse()
    return r.status, r.read()
st, d = req("POST", "/containers/create", {{"Image": "busybox:1.35", "Cmd": ["busybox", "stty", "size"], "Tty": True, "HostConfig": {{"ConsoleSize": [33, 101]}}}})
assert st == 201, (st, d)
cid = json.loads(d)["Id"]
assert req("POST", "/containers/%s/start" % cid)[0] == 204
req("POST", "/containers/%s/wait" % cid)
print(req("GET", "/containers/%s/logs?stdout=1" % cid)[1].decode().strip())
print(json.loads(req("GET", "/containers/%s/json" % cid)[1])["HostConfig"]["ConsoleSize"])
"#
    );
    assert_eq!(python(&script), "33 101\n[33, 101]\n");
}

/// Attach's `logs=1` replays the output so far; with `stream=0` it returns just that
/// (docker-py's `attach(logs=True, stream=False)`, used by compose-like tools).
#[test]
fn attach_replays_logs() {
    let d = Daemon::start();
    d.load_layout();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "talker",
        "busybox:1.35",
        "sh",
        "-c",
        "echo first; echo oops >&2; sleep 100",
    ]);
    d.wait_for("output", 10, || d.ok(&["logs", "talker"]).contains("first"));
    let script = format!(
        r#"
import docker
c = docker.DockerClient(base_url="{host}").containers.get("talker")
print(repr(c.attach(stdout=True, stderr=True, logs=True, stream=False)))
print(repr(c.attach(stdout=True, stderr=False, logs=True, stream=False)))
"#,
        host = d.host
    );
    let s = python(&script);
    let lines: Vec<&str> = s.lines().collect();
    assert!(
        lines[0].contains("first") && lines[0].contains("oops"),
        "{s}"
    );
    assert!(
        lines[1].contains("first") && !lines[1].contains("oops"),
        "{s}"
    );
    d.ok(&["rm", "-f", "talker"]);
}

/// The detach sequence on an attached stdin (`detachKeys`, docker's ctrl-p ctrl-q by default)
/// ends the attach and leaves the container running.
#[test]
fn detach_keys_end_the_attach_only() {
    let d = Daemon::start();
    d.load_layout();
    d.ok(&[
        "run",
        "-d",
        "-i",
        "-t",
        "--name",
        "shell1",
        "busybox:1.35",
        "sh",
    ]);
    let sock = d.sock.display().to_string();
    let script = format!(
        r#"
import socket, time
s = socket.socket(socket.AF_UNIX)
s.connect("{sock}")
s.sendall(b"POST /containers/shell1/attach?stream=1&stdin=1&stdout=1&stderr=1&detachKeys=ctrl-x,y HTTP/1.1\r\nHost: x\r\nUpgrade: tcp\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n")
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
data = buf.split(b"\r\n\r\n", 1)[1]
s.sendall(b"echo mark$((40+2))\n")
time.sleep(0.5)
s.sendall(b"\x18y")
s.settimeout(5)
try:
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    print("closed")
except socket.timeout:
    print("still open")
print("mark42" in data.decode(errors="replace"))
"#
    );
    assert_eq!(python(&script), "closed\nTrue\n");
    assert_eq!(d.inspect("shell1", "{{.State.Running}}"), "true");
    d.ok(&["rm", "-f", "shell1"]);
}

/// `barge images | head -1`-style pipelines: a reader that goes away ends the CLI quietly
/// (exit 141, nothing on stderr), as docker's does — never a panic and a backtrace.
#[test]
fn a_closed_stdout_ends_the_cli_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_barge"))
        .env("BARGE_HOST", D.host.as_str())
        .args(["images"])
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(141), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
}
