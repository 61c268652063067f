//! End-to-end harness: starts a real `barge daemon` on a private data root, exec root and
//! socket, drives it with the `barge` CLI and the stock `docker` CLI, and cleans up everything
//! it made (containers, mounts, monitor processes, directories) when the test process exits.

#![allow(dead_code)]

pub mod compose;
pub mod etcd;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

pub const BARGE: &str = env!("CARGO_BIN_EXE_barge");

/// The Python for docker-py programs: `BARGE_PYTHON`, else the venv scripts/install-deps.sh
/// makes (`target/pyenv`: Debian's python3 with docker-py from scripts/python-requirements.txt),
/// never whatever `python3` comes first on `PATH`.
pub static PYTHON: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    std::env::var("BARGE_PYTHON").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/pyenv/bin/python3"
        )
        .to_string()
    })
});

/// The shared test images (`../shared/images`, or `BARGE_IMAGES`).
pub fn images_dir() -> PathBuf {
    if let Ok(p) = std::env::var("BARGE_IMAGES") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/images")
}

/// The static init binary (`BARGE_INIT_PATH`, or the one scripts/build.sh makes).
pub fn init_path() -> PathBuf {
    if let Ok(p) = std::env::var("BARGE_INIT_PATH") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/init/release/barge-init")
}

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "end-to-end tests need root (they create namespaces and mounts)"
    );
}

/// Directories of every daemon started by this process, cleaned at exit.
static CLEANUP: Mutex<Vec<(PathBuf, u32)>> = Mutex::new(Vec::new());
static ATEXIT: Once = Once::new();

extern "C" fn cleanup_all() {
    let entries = CLEANUP.lock().map(|v| v.clone()).unwrap_or_default();
    for (dir, _) in entries {
        cleanup_dir(&dir);
    }
}

/// Kills every process whose command line mentions `dir` (daemon, monitors, containers' runc
/// state), unmounts everything under it and removes it.
pub fn cleanup_dir(dir: &Path) {
    let host = format!("unix://{}", dir.join("barge.sock").display());
    // Force-remove containers through the daemon if it is up (unmounts their roots).
    if dir.join("barge.sock").exists() {
        if let Ok(out) = Command::new(BARGE)
            .args(["-H", &host, "ps", "-aq"])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new(BARGE)
                    .args(["-H", &host, "rm", "-f", id])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
    let d = dir.display().to_string();
    // The daemon first, gracefully: with no container left it removes its bridges and its
    // nftables table.
    stop_daemons(&d);
    // Monitors and daemons: anything whose argv names our directory.
    for (pid, _) in procs_naming(&d) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    // runc containers left behind under our runtime root.
    let runtime_root = dir.join("run/runtime/runc");
    if let Ok(entries) = std::fs::read_dir(&runtime_root) {
        for e in entries.flatten() {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(&runtime_root)
                .args(["delete", "-f"])
                .arg(e.file_name())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    remove_container_cgroups(dir);
    remove_network_leftovers(dir);
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut targets: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|t| t.starts_with(&d))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in targets {
        let _ = nix::mount::umount2(t, nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The cgroups (`<controller>/barge/<id>` on v1, `barge/<id>` on v2) of the containers whose
/// records are under `dir` (any data root up to three levels down): their processes are
/// killed and the directories removed, so a test that killed its daemon or monitors leaves no
/// cgroup behind.
fn remove_container_cgroups(dir: &Path) {
    fn ids(dir: &Path, depth: usize, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if !t.is_dir() {
                continue;
            }
            let p = e.path();
            if e.file_name() == "containers" {
                if let Ok(c) = std::fs::read_dir(&p) {
                    out.extend(c.flatten().filter_map(|c| {
                        let n = c.file_name().to_string_lossy().into_owned();
                        (n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit())).then_some(n)
                    }));
                }
            } else if depth > 0 {
                ids(&p, depth - 1, out);
            }
        }
    }
    let mut found = Vec::new();
    ids(dir, 3, &mut found);
    if found.is_empty() {
        return;
    }
    let roots: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|rd| rd.flatten().map(|e| e.path().join("barge")).collect())
        .unwrap_or_default();
    let mut roots = roots;
    roots.push(PathBuf::from("/sys/fs/cgroup/barge"));
    for id in &found {
        for root in &roots {
            let cg = root.join(id);
            if !cg.is_dir() {
                continue;
            }
            for _ in 0..50 {
                let procs = std::fs::read_to_string(cg.join("cgroup.procs")).unwrap_or_default();
                for pid in procs
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                if std::fs::remove_dir(&cg).is_ok() || !cg.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// PIDs of the processes whose argv names `dir`, and whether each is a daemon.
fn procs_naming(dir: &str) -> Vec<(i32, bool)> {
    let mut out = Vec::new();
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if pid == std::process::id() as i32 {
                continue;
            }
            if let Ok(cmd) = std::fs::read(p.path().join("cmdline")) {
                let cmd = String::from_utf8_lossy(&cmd);
                if cmd.contains(dir) {
                    out.push((pid, cmd.contains("\0daemon\0")));
                }
            }
        }
    }
    out
}

/// SIGTERM to the daemons of `dir`, waiting up to 5 s for them to exit.
fn stop_daemons(dir: &str) {
    let daemons: Vec<i32> = procs_naming(dir)
        .into_iter()
        .filter(|(_, d)| *d)
        .map(|(p, _)| p)
        .collect();
    for pid in &daemons {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && daemons
            .iter()
            .any(|p| Path::new(&format!("/proc/{p}")).exists() && !is_zombie(*p))
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

/// The default bridge name and address the harness gives a daemon in `dir`: unique per
/// daemon, so tests running side by side never share a bridge or a subnet.
pub fn bridge_for(dir: &Path) -> (String, String) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let name = dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace("be-", "");
    let n = N.fetch_add(1, Ordering::SeqCst);
    let x = (std::process::id() % 50) * 4 + n % 4 + 20;
    (
        format!("bb{}", &name[..10.min(name.len())]),
        format!("10.199.{}.1/24", x % 250),
    )
}

/// Deletes what a daemon killed with -9 may have left in the kernel: its bridges (from its
/// network store) and its nftables table.
fn remove_network_leftovers(dir: &Path) {
    let nets = std::fs::read(dir.join("data/network/networks.json"))
        .ok()
        .and_then(|d| serde_json::from_slice::<Vec<serde_json::Value>>(&d).ok())
        .unwrap_or_default();
    for n in nets {
        if let Some(b) = n["bridge"].as_str().filter(|b| !b.is_empty()) {
            if Path::new("/sys/class/net").join(b).exists() {
                let _ = Command::new("ip").args(["link", "del", b]).status();
            }
        }
    }
    let table = barge_network::NetworkConfig::new(dir.join("data"), dir.join("run")).table;
    for family in ["ip", "ip6"] {
        let _ = Command::new("nft")
            .args(["delete", "table", family, &table])
            .stderr(Stdio::null())
            .status();
    }
}

/// A running `barge daemon` with its own directories.
pub struct Daemon {
    pub dir: PathBuf,
    pub sock: PathBuf,
    pub host: String,
    child: Option<Child>,
    /// Extra `barge daemon` flags (e.g. `--config-file`), kept across restarts.
    pub extra_args: Vec<String>,
}

impl Daemon {
    /// Starts a daemon in a fresh directory under /tmp.
    pub fn start() -> Daemon {
        require_root();
        let dir = tempfile_dir();
        let mut d = Daemon {
            sock: dir.join("barge.sock"),
            host: format!("unix://{}", dir.join("barge.sock").display()),
            dir,
            child: None,
            extra_args: Vec::new(),
        };
        d.spawn();
        d
    }

    /// Starts a daemon with extra flags; `{dir}` in a flag is replaced by the daemon's directory.
    pub fn start_with(extra: &[&str]) -> Daemon {
        require_root();
        let dir = tempfile_dir();
        let extra_args = extra
            .iter()
            .map(|a| a.replace("{dir}", &dir.display().to_string()))
            .collect();
        let mut d = Daemon {
            sock: dir.join("barge.sock"),
            host: format!("unix://{}", dir.join("barge.sock").display()),
            dir,
            child: None,
            extra_args,
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .expect("daemon log");
        let child = Command::new(BARGE)
            .arg("daemon")
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("run"))
            .arg("-H")
            .arg(&self.host)
            .arg("--init-path")
            .arg(init_path())
            .arg("--log-level")
            .arg("debug")
            .args(
                if self
                    .extra_args
                    .iter()
                    .any(|a| a == "--bridge" || a == "--bip")
                {
                    Vec::new()
                } else {
                    let (b, bip) = bridge_for(&self.dir);
                    vec!["--bridge".to_string(), b, "--bip".to_string(), bip]
                },
            )
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting barge daemon");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.sock).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon did not come up; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `kill -9` the daemon (containers and their monitors keep running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the daemon again on the same directories.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Runs `barge ARGS` against this daemon.
    pub fn barge(&self, args: &[&str]) -> Output {
        Command::new(BARGE)
            .env("BARGE_HOST", &self.host)
            .env("DOCKER_CONFIG", self.dir.join("docker-config"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running barge")
    }

    /// Runs `barge ARGS` with `input` on stdin.
    pub fn barge_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write;
        let mut child = Command::new(BARGE)
            .env("BARGE_HOST", &self.host)
            .env("DOCKER_CONFIG", self.dir.join("docker-config"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running barge");
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs `barge ARGS`, asserts success and returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.barge(args);
        assert!(
            out.status.success(),
            "barge {args:?} failed ({:?}):\nstdout: {}\nstderr: {}\ndaemon log tail:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 30)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the stock `docker` CLI against this daemon.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new(docker_cli())
            .env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", self.dir.join("docker-config"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running docker")
    }

    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed ({:?}):\nstdout: {}\nstderr: {}\ndaemon log tail:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 30)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Loads the shared OCI layout (all refs).
    pub fn load_layout(&self) {
        let p = images_dir().join("oci-layout");
        self.ok(&["load", "-i", p.to_str().unwrap()]);
    }

    /// `inspect -f FORMAT NAME` trimmed.
    pub fn inspect(&self, name: &str, format: &str) -> String {
        self.ok(&["inspect", "-f", format, name]).trim().to_string()
    }

    /// Waits until `f` holds (polling), panicking after `secs`.
    pub fn wait_for(&self, what: &str, secs: u64, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out waiting for {what}; daemon log tail:\n{}",
            tail(&self.log(), 40)
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        cleanup_dir(&self.dir);
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn docker_cli() -> String {
    for p in ["/usr/local/bin/docker", "/usr/bin/docker"] {
        if Path::new(p).exists() {
            return p.to_string();
        }
    }
    "docker".to_string()
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn tempfile_dir() -> PathBuf {
    let mut bytes = [0u8; 6];
    getrandom_fill(&mut bytes);
    let name: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let dir = PathBuf::from(format!("/tmp/be-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    ATEXIT.call_once(|| {
        // SAFETY: registering a plain extern "C" function with no captured state; it runs
        // once at process exit.
        unsafe {
            libc::atexit(cleanup_all);
        }
    });
    CLEANUP
        .lock()
        .unwrap()
        .push((dir.clone(), std::process::id()));
    dir
}

fn getrandom_fill(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .expect("urandom");
}

/// stdout of an Output as a String.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr of an Output as a String.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asks the multilayer app in container `name` (from inside its network namespace) for
/// `GET /` and `POST /` with `{"features":[1,0,1]}`; returns `"<GET ok> <score> <label>"`.
pub fn probe_multilayer_app(d: &Daemon, name: &str) -> String {
    let probe = r#"import json, urllib.request, time
for _ in range(100):
    try:
        g = urllib.request.urlopen('http://127.0.0.1:8080/').read().decode()
        break
    except Exception:
        time.sleep(0.1)
req = urllib.request.Request('http://127.0.0.1:8080/', data=json.dumps({'features': [1, 0, 1]}).encode(), headers={'Content-Type': 'application/json'})
p = json.loads(urllib.request.urlopen(req).read())
print(bool(g), p['score'], p['label'])"#;
    d.ok(&["exec", name, "python3", "-c", probe])
        .trim()
        .to_string()
}

/// Runs a Python script (docker-py, raw socket clients) and returns its stdout; panics with
/// both streams when it fails.
pub fn python(script: &str) -> String {
    let out = Command::new(&*PYTHON)
        .args(["-c", script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    stdout(&out)
}
