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
            .args(["--bind-address", "127.0.0.1"])
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

    /// Kills the processes of every container of this server's engine (by cgroup): what a
    /// server killed with -9 leaves when no agent removes its pods.
    fn kill_container_processes(&self) {
        let Ok(ids) = std::fs::read_dir(self.dir.join("data/containers")) else {
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
        self.kill_container_processes();
        cleanup_dir(&self.dir);
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
