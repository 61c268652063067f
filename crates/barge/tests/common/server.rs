//! `barge server` for end-to-end tests: a server with its own directories (data dir, data
//! root, exec root, socket, kubeconfig) and a free loopback port, stopped and removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// A running `barge server` with its own directories and port.
pub struct Server {
    pub dir: PathBuf,
    pub port: u16,
    pub agent: bool,
    pub extra: Vec<String>,
    pub child: Option<Child>,
}

/// A fresh `/tmp/be-srv<random>` directory (removed by `cleanup_dir` on drop).
pub fn unique_dir() -> PathBuf {
    use std::io::Read;
    let mut b = [0u8; 5];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .unwrap();
    let name: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let dir = PathBuf::from(format!("/tmp/be-srv{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A pod network of its own for each server started by this process (a /24: the node's
/// podCIDR is then the whole of it), so servers side by side never share a subnet.
pub fn cluster_cidr() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    format!("10.{}.{}.0/24", 150 + std::process::id() % 20, n % 250)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// Starts a server in a fresh directory; `agent`: also run the engine.
    pub fn start(agent: bool, extra: &[&str]) -> Server {
        require_root();
        let dir = unique_dir();
        let mut s = Server {
            dir,
            port: free_port(),
            agent,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        s.spawn();
        s
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("server")
    }
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig.yaml")
    }
    pub fn sock(&self) -> PathBuf {
        self.dir.join("barge.sock")
    }
    pub fn host(&self) -> String {
        format!("unix://{}", self.sock().display())
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Starts the process and waits until `/readyz` answers `ok`; returns how long that took.
    pub fn spawn(&mut self) -> Duration {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let mut cmd = Command::new(BARGE);
        cmd.arg("server")
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--https-listen-port", &self.port.to_string()])
            .arg("--write-kubeconfig")
            .arg(self.kubeconfig())
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("run"))
            .arg("-H")
            .arg(self.host())
            .arg("--init-path")
            .arg(init_path())
            .args(["--log-level", "debug"]);
        // Loopback only, unless the test gives its own (e2e_multinode: its LAN's address too).
        if !self.extra.iter().any(|a| a == "--bind-address") {
            cmd.args(["--bind-address", "127.0.0.1"]);
        }
        if self.agent {
            let (b, bip) = bridge_for(&self.dir);
            cmd.args(["--bridge", &b, "--bip", &bip]);
            if !self.extra.iter().any(|a| a == "--cluster-cidr") {
                cmd.args(["--cluster-cidr", &cluster_cidr()]);
            }
            // The agent's endpoint (kubelet's 10250) on a port of this server's own.
            if !self.extra.iter().any(|a| a == "--kubelet-port") {
                cmd.args(["--kubelet-port", &free_port().to_string()]);
            }
            // No Ingress proxy on the host's 80/443 unless a test asks for one (on its ports).
            for flag in ["--ingress-http-port", "--ingress-https-port"] {
                if !self.extra.iter().any(|a| a == flag) {
                    cmd.args([flag, "0"]);
                }
            }
        } else {
            cmd.arg("--disable-agent");
        }
        let started = Instant::now();
        let child = cmd
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting barge server");
        self.child = Some(child);
        let deadline = started + Duration::from_secs(20);
        while Instant::now() < deadline {
            let out = curl(&["-sk", &format!("{}/readyz", self.url())]);
            if out.status.success() && stdout(&out) == "ok" {
                return started.elapsed();
            }
            if let Some(Some(status)) = self.child.as_mut().map(|c| c.try_wait().unwrap()) {
                panic!("barge server exited ({status}); log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("barge server did not become ready; log:\n{}", self.log());
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// SIGTERM, waiting for the exit (the engine removes its socket and bridge).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `kill -9` of the server (its containers' monitors keep running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again after [`Server::stop`] or [`Server::kill9`], same flags.
    pub fn restart(&mut self) -> Duration {
        assert!(self.child.is_none(), "restart of a running server");
        self.spawn()
    }

    /// Removes what the node agent runs before the server stops: every pod, force-deleted (the
    /// agent removes their containers and sandboxes), waiting up to 20 s for the engine to have
    /// no container left; then any container process left is killed through its cgroup.
    fn remove_pods(&mut self) {
        if self.agent && self.child.is_some() {
            let _ = self.kubectl_with(
                &self.kubeconfig(),
                &[
                    "delete",
                    "pods",
                    "--all",
                    "-A",
                    "--grace-period=0",
                    "--force",
                    "--wait=false",
                ],
            );
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                let out = self.docker(&["ps", "-aq"]);
                if out.status.success() && stdout(&out).trim().is_empty() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    /// Node `node`'s InternalIP (`status.addresses`), as kubectl prints it.
    pub fn node_ip(&self, node: &str) -> String {
        self.k(&[
            "get",
            "node",
            node,
            "-o",
            r#"jsonpath={.status.addresses[?(@.type=="InternalIP")].address}"#,
        ])
    }

    /// `kubectl ARGS` with the server's admin kubeconfig, which must succeed; its stdout,
    /// trimmed.
    pub fn k(&self, args: &[&str]) -> String {
        let out = self.kubectl_with(&self.kubeconfig(), args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `kubectl ARGS` with `KUBECONFIG=kubeconfig`.
    pub fn kubectl_with(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        Command::new("kubectl")
            .env("KUBECONFIG", kubeconfig)
            .env("HOME", &self.dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running kubectl")
    }

    /// `kubectl ARGS` with the admin kubeconfig and `input` on stdin (any exit).
    pub fn kubectl_in(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write as _;
        let mut child = Command::new("kubectl")
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", &self.dir)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl");
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    /// `kubectl apply -f -` of `yaml`: whether it succeeded, and its stdout and stderr.
    pub fn try_apply(&self, yaml: &str) -> (bool, String) {
        let out = self.kubectl_in(&["apply", "-f", "-"], yaml.as_bytes());
        (
            out.status.success(),
            format!("{}{}", stdout(&out), stderr(&out)),
        )
    }

    /// `kubectl apply -f -` of `yaml`, which must succeed.
    pub fn apply(&self, yaml: &str) {
        let (ok, out) = self.try_apply(yaml);
        assert!(ok, "apply: {out}\n{}", tail(&self.log(), 60));
    }

    /// Repeats `step` every 250 ms until it gives `Some`, failing after `secs` with `what` and
    /// the end of the server's log.
    pub fn until<T>(&self, secs: u64, what: &str, mut step: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = step() {
                return v;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}\n{}", tail(&self.log(), 60));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Polls `kubectl get pod POD -o jsonpath=PATH` until `want(value)`, for `secs`
    /// ([`Server::wait_get`]).
    pub fn wait_pod(
        &self,
        pod: &str,
        path: &str,
        secs: u64,
        want: impl Fn(&str) -> bool,
    ) -> String {
        self.wait_get(&["pod", pod], path, secs, want)
    }

    /// Polls `kubectl get WHAT -o jsonpath=PATH` until `want(value)`, for `secs`; on a
    /// timeout, fails with the object's YAML and the agent's and controllers' log lines.
    pub fn wait_get(
        &self,
        what: &[&str],
        path: &str,
        secs: u64,
        want: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut last = String::new();
        let jsonpath = format!("jsonpath={path}");
        let args: Vec<&str> = [&["get"][..], what, &["-o", &jsonpath]].concat();
        while Instant::now() < deadline {
            let out = self.kubectl_with(&self.kubeconfig(), &args);
            last = stdout(&out).trim().to_string();
            if out.status.success() && want(&last) {
                return last;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let yaml_args: Vec<&str> = [&["get"][..], what, &["-o", "yaml"]].concat();
        let yaml = self.kubectl_with(&self.kubeconfig(), &yaml_args);
        let log: Vec<String> = self
            .log()
            .lines()
            .filter(|l| {
                ["WARN", "barge_agent", "barge_controllers"]
                    .iter()
                    .any(|k| l.contains(k))
            })
            .map(String::from)
            .collect();
        panic!(
            "{what:?}: {path} is {last:?} after {secs}s\n{}\n{}",
            stdout(&yaml),
            tail(&log.join("\n"), 80)
        );
    }

    /// `kubectl get ARGS -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.k(&a)).unwrap()
    }

    /// `barge -H <this engine> ARGS`.
    pub fn barge(&self, args: &[&str]) -> Output {
        Command::new(BARGE)
            .args(["-H", &self.host()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running barge")
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new(docker_cli())
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.dir.join("docker-config"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running docker")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.remove_pods();
        self.stop();
        kill_container_processes(&self.dir);
        cleanup_dir(&self.dir);
    }
}

/// Kills the processes of every container of the engine whose directory is `dir` (by
/// cgroup; its data root is `dir/data`): what a node killed with -9 leaves when no agent
/// removes its pods.
pub fn kill_container_processes(dir: &Path) {
    let Ok(ids) = std::fs::read_dir(dir.join("data/containers")) else {
        return;
    };
    for id in ids.flatten() {
        let id = id.file_name().to_string_lossy().into_owned();
        for root in [
            "/sys/fs/cgroup/memory/barge",
            "/sys/fs/cgroup/pids/barge",
            "/sys/fs/cgroup/barge",
        ] {
            let procs = std::fs::read_to_string(format!("{root}/{id}/cgroup.procs"));
            for pid in procs.unwrap_or_default().split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}

pub fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["--max-time", "10"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running curl")
}
