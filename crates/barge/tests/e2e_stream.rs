//! Streaming through the API server to the node agent's HTTPS endpoint: `kubectl logs`
//! (follow, previous, since, tail, timestamps, limit, all containers), `exec` (exit codes,
//! stdin, `-it` through a real pty), `attach`, `cp` both ways, and the Python client's exec
//! and port-forward (`v4.channel.k8s.io`). Each test has its own `barge server` with its
//! agent on a free kubelet port; pods and everything they made are removed on drop.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::server::*;
use common::*;

const NODE: &str = "node1";

/// A server with its agent (node `node1`, 1 s restart back-off, its own kubelet port) and the
/// shared images loaded.
fn cluster() -> Server {
    let cidr = cluster_cidr();
    let port = free_port().to_string();
    let s = Server::start(
        true,
        &[
            "--node-name",
            NODE,
            "--cluster-cidr",
            &cidr,
            "--pod-restart-backoff",
            "1s",
            "--kubelet-port",
            &port,
        ],
    );
    let layout = images_dir().join("oci-layout");
    let out = s.barge(&["load", "-i", layout.to_str().unwrap()]);
    assert!(out.status.success(), "load: {}", stderr(&out));
    s
}

fn kubectl(s: &Server) -> Command {
    let mut c = Command::new("kubectl");
    c.env("KUBECONFIG", s.kubeconfig()).env("HOME", &s.dir);
    c
}

/// `kubectl ARGS` (any exit): (status code, stdout, stderr).
fn kc(s: &Server, args: &[&str]) -> (i32, String, String) {
    let out = kubectl(s).args(args).stdin(Stdio::null()).output().unwrap();
    (out.status.code().unwrap_or(-1), stdout(&out), stderr(&out))
}

/// `kubectl ARGS` with `input` on stdin.
fn kc_in(s: &Server, args: &[&str], input: &[u8]) -> (i32, String, String) {
    let out = s.kubectl_in(args, input);
    (out.status.code().unwrap_or(-1), stdout(&out), stderr(&out))
}

/// `kubectl ARGS` over SPDY/3.1 instead of WebSocket (client-go's SPDY executor, as
/// kubectl falls back to and older clients use), with `input` on stdin.
fn kc_spdy(s: &Server, args: &[&str], input: &[u8]) -> (i32, String, String) {
    use std::io::Write;
    let mut child = kubectl(s)
        .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), stdout(&out), stderr(&out))
}

fn wait_running(s: &Server, pod: &str) {
    s.wait_pod(pod, "{.status.phase}", 60, |p| p == "Running");
}

/// Two busybox containers: `a` counts a line every 200 ms, `b` prints to both streams once.
const TALKER: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: talker}
spec:
  nodeName: node1
  terminationGracePeriodSeconds: 1
  containers:
  - name: a
    image: busybox:1.35
    command: [sh, -c, 'i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.2; done']
  - name: b
    image: busybox:1.35
    command: [sh, -c, 'echo from-b; echo err-b >&2; sleep 3600']
"#;

#[test]
fn kubectl_logs_with_its_options() {
    let s = cluster();
    s.apply(TALKER);
    wait_running(&s, "talker");
    s.wait_pod("talker", "{.status.containerStatuses[*].ready}", 30, |r| {
        r == "true true"
    });
    std::thread::sleep(Duration::from_millis(800));

    // The API server's own 400 for a pod of several containers and no container named.
    let (code, _, err) = kc(
        &s,
        &["get", "--raw", "/api/v1/namespaces/default/pods/talker/log"],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("a container name must be specified for pod talker, choose one of: [a b]"),
        "{err}"
    );
    let (code, _, err) = kc(&s, &["logs", "talker", "-c", "nope"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("container nope is not valid for pod talker"),
        "{err}"
    );

    // stdout and stderr, as written.
    let (code, out, err) = kc(&s, &["logs", "talker", "-c", "b"]);
    assert_eq!(code, 0, "{err}\n{}", s.log());
    assert_eq!(out, "from-b\nerr-b\n");
    // --tail, --limit-bytes, --timestamps, --since, --since-time.
    let (_, out, _) = kc(&s, &["logs", "talker", "-c", "a", "--tail=2"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines.iter().all(|l| l.starts_with("line-")), "{out}");
    let (_, out, _) = kc(&s, &["logs", "talker", "-c", "b", "--limit-bytes=5"]);
    assert_eq!(out, "from-");
    let (_, out, _) = kc(&s, &["logs", "talker", "-c", "b", "--timestamps"]);
    for l in out.lines() {
        let (ts, rest) = l.split_once(' ').unwrap();
        assert!(
            ts.ends_with('Z') && ts.contains('T') && ts.len() >= 20,
            "{l}"
        );
        assert!(rest == "from-b" || rest == "err-b", "{l}");
    }
    let (_, out, _) = kc(&s, &["logs", "talker", "-c", "b", "--since=1h"]);
    assert_eq!(out, "from-b\nerr-b\n");
    let (_, out, _) = kc(
        &s,
        &[
            "logs",
            "talker",
            "-c",
            "b",
            "--since-time=2099-01-01T00:00:00Z",
        ],
    );
    assert_eq!(out, "");
    // --all-containers: both containers' logs.
    let (_, out, _) = kc(&s, &["logs", "talker", "--all-containers", "--tail=1"]);
    assert!(out.contains("line-") && out.contains("err-b"), "{out}");
    // --previous of a container that never restarted: kube's message.
    let (code, _, err) = kc(&s, &["logs", "talker", "-c", "b", "--previous"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("previous terminated container \"b\" in pod \"talker\" not found"),
        "{err}"
    );

    // -f: lines written after the request arrive while it runs.
    let mut child = kubectl(&s)
        .args(["logs", "-f", "talker", "-c", "a", "--tail=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut r = BufReader::new(child.stdout.take().unwrap());
    let mut seen = Vec::new();
    let started = Instant::now();
    while seen.len() < 6 && started.elapsed() < Duration::from_secs(20) {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap() == 0 {
            break;
        }
        seen.push(l.trim().to_string());
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(seen.len(), 6, "{seen:?}");
    let n: Vec<u64> = seen
        .iter()
        .map(|l| l.strip_prefix("line-").unwrap().parse().unwrap())
        .collect();
    assert!(n.windows(2).all(|w| w[1] == w[0] + 1), "{n:?}");

    // --previous after a restart: the last run's output.
    s.apply(
        r#"apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  nodeName: node1
  containers:
  - name: c
    image: busybox:1.35
    command: [sh, -c, 'echo run-$(cat /proc/uptime); sleep 1; exit 1']
"#,
    );
    s.wait_pod(
        "crash",
        "{.status.containerStatuses[0].restartCount}",
        60,
        |n| n.parse::<u32>().is_ok_and(|n| n >= 1),
    );
    let (code, out, err) = kc(&s, &["logs", "crash", "--previous"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("run-"), "{out}");
}

#[test]
fn kubectl_exec_attach_and_cp() {
    let s = cluster();
    s.apply(TALKER);
    s.apply(
        r#"apiVersion: v1
kind: Pod
metadata: {name: deb}
spec:
  nodeName: node1
  terminationGracePeriodSeconds: 1
  containers:
  - name: d
    image: debian-python:bookworm
    command: [sleep, '3600']
---
apiVersion: v1
kind: Pod
metadata: {name: reader}
spec:
  nodeName: node1
  restartPolicy: Never
  containers:
  - name: r
    image: busybox:1.35
    stdin: true
    stdinOnce: true
    command: [sh, -c, 'read x; echo got-$x']
"#,
    );
    for p in ["talker", "deb", "reader"] {
        wait_running(&s, p);
    }

    // Output on both streams and the exit code.
    let (code, out, err) = kc(
        &s,
        &[
            "exec",
            "talker",
            "-c",
            "b",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
    );
    assert_eq!(code, 3, "{out}\n{err}\n{}", s.log());
    assert_eq!(out, "out\n");
    assert!(err.contains("err\n"), "{err}");
    assert!(err.contains("command terminated with exit code 3"), "{err}");
    // stdin, closed at its end (v5's close channel).
    let (code, out, err) = kc_in(
        &s,
        &["exec", "-i", "talker", "-c", "b", "--", "cat"],
        b"hello\nworld\n",
    );
    assert_eq!((code, out.as_str()), (0, "hello\nworld\n"), "{err}");
    // The same over SPDY/3.1: both streams and the exit code, stdin to its end, and a larger
    // output than one frame.
    let (code, out, err) = kc_spdy(
        &s,
        &[
            "exec",
            "talker",
            "-c",
            "b",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        b"",
    );
    assert_eq!(code, 3, "{out}\n{err}\n{}", s.log());
    assert_eq!(out, "out\n");
    assert!(err.contains("err\n"), "{err}");
    assert!(err.contains("command terminated with exit code 3"), "{err}");
    let (code, out, err) = kc_spdy(
        &s,
        &["exec", "-i", "talker", "-c", "b", "--", "cat"],
        b"hello\nworld\n",
    );
    assert_eq!((code, out.as_str()), (0, "hello\nworld\n"), "{err}");
    let (code, out, err) = kc_spdy(
        &s,
        &["exec", "talker", "-c", "b", "--", "sh", "-c", "seq 1 20000"],
        b"",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 20000, "{err}");
    assert_eq!(out.lines().last(), Some("20000"));

    // -it through a real pty: a TTY in the container, its size, typed input, the exit code.
    let script = format!(
        r#"
import os, pty, sys, time, select, fcntl, termios, struct
pid, fd = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    os.environ["KUBECONFIG"] = {kc:?}
    os.environ["HOME"] = {home:?}
    os.execvp("kubectl", ["kubectl", "exec", "-it", "deb", "--", "sh"])
out = b""
def pump(t):
    global out
    end = time.time() + t
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                d = os.read(fd, 4096)
            except OSError:
                return False
            if not d:
                return False
            out += d
    return True
pump(3)
os.write(fd, b"tty; stty size; echo $((6*7))-done; exit 4\n")
while pump(1):
    pass
_, st = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
print("EXIT", os.waitstatus_to_exitcode(st))
"#,
        kc = s.kubeconfig().display().to_string(),
        home = s.dir.display().to_string(),
    );
    let out = python(&script);
    assert!(out.contains("/dev/pts/"), "{out}");
    assert!(out.contains("33 101"), "{out}");
    assert!(out.contains("42-done"), "{out}");
    assert!(out.trim_end().ends_with("EXIT 4"), "{out}");

    // attach: the container's own stdout, and its stdin.
    let mut child = kubectl(&s)
        .args(["attach", "talker", "-c", "a"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut r = BufReader::new(child.stdout.take().unwrap());
    let mut l = String::new();
    let started = Instant::now();
    while !l.starts_with("line-") && started.elapsed() < Duration::from_secs(15) {
        l.clear();
        if r.read_line(&mut l).unwrap() == 0 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(l.starts_with("line-"), "{l:?}");
    let (code, out, err) = kc_in(&s, &["attach", "-i", "reader", "-c", "r"], b"xyz\n");
    assert_eq!(code, 0, "{out}\n{err}");
    s.wait_pod("reader", "{.status.phase}", 30, |p| p == "Succeeded");
    let (_, logs, _) = kc(&s, &["logs", "reader"]);
    assert_eq!(logs, "got-xyz\n");

    // cp both ways (tar over exec).
    let local = s.dir.join("payload.txt");
    let body: String = (0..2000).map(|i| format!("row {i}\n")).collect();
    std::fs::write(&local, &body).unwrap();
    let (code, _, err) = kc(&s, &["cp", local.to_str().unwrap(), "deb:/tmp/payload.txt"]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = kc(&s, &["exec", "deb", "--", "sha256sum", "/tmp/payload.txt"]);
    let (_, back, _) = kc(&s, &["exec", "deb", "--", "wc", "-l", "/tmp/payload.txt"]);
    assert!(back.starts_with("2000 "), "{back} {out}");
    let back_path = s.dir.join("back.txt");
    let (code, _, err) = kc(
        &s,
        &["cp", "deb:/tmp/payload.txt", back_path.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&back_path).unwrap(), body);
}

/// `kubectl debug`: an ephemeral container added through the `ephemeralcontainers`
/// subresource runs in the pod (in its target's PID namespace with `--target`), reports in
/// `ephemeralContainerStatuses`, has logs, and `-i` attaches to it; pod updates that kube
/// forbids are refused with kube's message.
#[test]
fn kubectl_debug_runs_ephemeral_containers() {
    let s = cluster();
    s.apply(TALKER);
    wait_running(&s, "talker");

    // Non-interactive, in container a's PID namespace: PID 1 is a's shell loop.
    let (code, out, err) = kc(
        &s,
        &[
            "debug",
            "talker",
            "--image=busybox:1.35",
            "--target=a",
            "-c",
            "dbg",
            "--",
            "cat",
            "/proc/1/cmdline",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}\n{}", s.log());
    s.wait_pod(
        "talker",
        "{.status.ephemeralContainerStatuses[0].state.terminated.reason}",
        60,
        |r| r == "Completed",
    );
    let (_, logs, _) = kc(&s, &["logs", "talker", "-c", "dbg"]);
    assert!(logs.contains("while true"), "{logs:?}");
    let (_, ready, _) = kc(
        &s,
        &[
            "get",
            "pod",
            "talker",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
    );
    assert_eq!(
        ready, "True",
        "an ended ephemeral container leaves the pod Ready"
    );

    // Interactive: kubectl waits for it to run and attaches its stdin.
    let (code, out, err) = kc_in(
        &s,
        &[
            "debug",
            "-i",
            "talker",
            "--image=busybox:1.35",
            "-c",
            "dbg2",
            "--",
            "sh",
            "-c",
            "read x; echo got-$x",
        ],
        b"xyz\n",
    );
    assert_eq!(code, 0, "{out}\n{err}\n{}", s.log());
    assert!(out.contains("got-xyz"), "{out}\n{err}");
    let (_, names, _) = kc(
        &s,
        &[
            "get",
            "pod",
            "talker",
            "-o",
            "jsonpath={.spec.ephemeralContainers[*].name}",
        ],
    );
    assert_eq!(names, "dbg dbg2");
    // A name already taken is refused by the API.
    let (code, _, err) = kc(
        &s,
        &[
            "debug",
            "talker",
            "--image=busybox:1.35",
            "-c",
            "a",
            "--",
            "true",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("Duplicate value: \"a\""), "{err}");

    // Pod updates change only what kube lets them.
    let (code, _, err) = kc(
        &s,
        &[
            "patch",
            "pod",
            "talker",
            "-p",
            r#"{"spec":{"hostname":"other"}}"#,
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"),
        "{err}"
    );
    let (code, _, err) = kc(
        &s,
        &[
            "patch",
            "pod",
            "talker",
            "-p",
            r#"{"spec":{"activeDeadlineSeconds":3600}}"#,
        ],
    );
    assert_eq!(code, 0, "{err}");

    // A node debugging pod (posted as protobuf): the node's namespaces, its root at /host.
    let (code, out, err) = kc(
        &s,
        &[
            "debug",
            "node/node1",
            "--image=busybox:1.35",
            "--",
            "ls",
            "/host/etc/hostname",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let (_, names, _) = kc(&s, &["get", "pods", "-o", "name"]);
    let pod = names
        .lines()
        .find_map(|l| {
            l.strip_prefix("pod/")
                .filter(|n| n.starts_with("node-debugger-node1-"))
        })
        .unwrap_or_else(|| panic!("no debugger pod: {names}"))
        .to_string();
    let spec = s.wait_pod(
        &pod,
        "{.spec.hostPID} {.spec.hostIPC} {.spec.hostNetwork} {.spec.volumes[0].hostPath.path}",
        10,
        |_| true,
    );
    assert_eq!(spec, "true true true /");
    s.wait_pod(&pod, "{.status.phase}", 60, |p| p == "Succeeded");
    let (_, logs, _) = kc(&s, &["logs", &pod]);
    assert_eq!(logs.trim(), "/host/etc/hostname");
}

/// The Python client's exec (v4.channel.k8s.io; interactive stdin comes as text frames) and
/// port-forward (its v4 port scheme).
#[test]
fn python_client_exec_and_port_forward() {
    let s = cluster();
    s.apply(
        r#"apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  nodeName: node1
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: multilayer:1
    ports: [{containerPort: 8080}]
"#,
    );
    wait_running(&s, "web");
    let script = format!(
        r#"
import json, time
from kubernetes import client, config
from kubernetes.stream import stream, portforward
config.load_kube_config({kc:?})
api = client.CoreV1Api()
out = stream(api.connect_get_namespaced_pod_exec, "web", "default",
             command=["sh", "-c", "echo py-out; echo py-err >&2"],
             stderr=True, stdin=False, stdout=True, tty=False)
print("EXEC", out.replace("\n", "|"))
r = stream(api.connect_get_namespaced_pod_exec, "web", "default",
           command=["sh", "-c", "exit 5"], stderr=True, stdin=False, stdout=True,
           tty=False, _preload_content=False)
r.run_forever(timeout=20)
print("CODE", r.returncode)
# Interactive stdin: the client sends `write_stdin(str)` as text frames.
r = stream(api.connect_get_namespaced_pod_exec, "web", "default", command=["sh"],
           stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False)
r.write_stdin("echo py-stdin-$((40 + 2))\nexit 3\n")
got = ""
deadline = time.time() + 20
while r.is_open() and time.time() < deadline:
    r.update(timeout=1)
    if r.peek_stdout():
        got += r.read_stdout()
print("STDIN", got.strip(), r.returncode)
body = b""
for attempt in range(40):
    try:
        pf = portforward(api.connect_get_namespaced_pod_portforward, "web", "default", ports="8080")
        sock = pf.socket(8080)
        sock.setblocking(True)
        sock.settimeout(10)
        sock.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        body = b""
        while True:
            d = sock.recv(4096)
            if not d:
                break
            body += d
        sock.close()
        if body:
            break
    except Exception as e:
        print("retry", e)
    time.sleep(0.5)
print("HTTP", body.split(b"\r\n")[0].decode())
"#,
        kc = s.kubeconfig().display().to_string(),
    );
    let out = python(&script);
    assert!(
        out.contains("EXEC py-out|py-err|") || out.contains("EXEC py-out|"),
        "{out}"
    );
    assert!(out.contains("CODE 5"), "{out}");
    assert!(out.contains("STDIN py-stdin-42 3"), "{out}");
    assert!(out.contains("HTTP HTTP/1.0 200"), "{out}\n{}", s.log());

    // kubectl port-forward: SPDY/3.1 frames tunnelled in a WebSocket; two connections in a
    // row through one forward.
    let lport = free_port();
    let mut pf = kubectl(&s)
        .args(["port-forward", "pod/web", &format!("{lport}:8080")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut r = BufReader::new(pf.stdout.take().unwrap());
    let mut l = String::new();
    r.read_line(&mut l).unwrap();
    assert!(l.contains("Forwarding from 127.0.0.1"), "{l:?}");
    for _ in 0..2 {
        let out = curl(&["-s", "-m", "10", &format!("http://127.0.0.1:{lport}/")]);
        let body = stdout(&out);
        if !out.status.success() || !body.contains('{') {
            let _ = pf.kill();
            let o = pf.wait_with_output().unwrap();
            panic!(
                "curl: {body} {}\nkubectl: {}\n{}",
                stderr(&out),
                stderr(&o),
                s.log()
            );
        }
    }
    let _ = pf.kill();
    let _ = pf.wait();
}
