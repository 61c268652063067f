//! Integration tests of `barge-runtime` (the same code as `barge runtime`) driven exactly as
//! the monitor drives it (runc's command line), with a busybox rootfs extracted from
//! the shared OCI layout (`$BARGE_IMAGES/oci-layout`, else `../shared/images` beside the repo).
//! Root required (they fail without it: CI runs them as root).
//!
//! The test process makes itself a child subreaper, as the monitor does, so the container's
//! init (a child of the short-lived runtime process) is re-parented to it and can be waited for.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The shared OCI layout: `$BARGE_IMAGES/oci-layout`, else `../shared/images/oci-layout` beside
/// the repository.
static LAYOUT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let images = std::env::var("BARGE_IMAGES").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/images").to_string()
    });
    format!("{images}/oci-layout")
});
const RT: &str = env!("CARGO_BIN_EXE_barge-runtime");

fn busybox_rootfs() -> Option<PathBuf> {
    static ROOT: OnceLock<Option<PathBuf>> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = PathBuf::from("/tmp/barge-runtime-tests-busybox");
        if dir.join(".done").exists() {
            return Some(dir);
        }
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(Path::new(&*LAYOUT).join("index.json")).ok()?)
                .ok()?;
        let desc = index["manifests"]
            .as_array()?
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "busybox:1.35")?;
        let blob = |d: &str| {
            Path::new(&*LAYOUT)
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:"))
        };
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(blob(desc["digest"].as_str()?)).ok()?).ok()?;
        let layer = blob(manifest["layers"][0]["digest"].as_str()?);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).ok()?;
        let ok = Command::new("tar")
            .arg("-xzf")
            .arg(&layer)
            .arg("-C")
            .arg(&dir)
            .status()
            .ok()?
            .success();
        if !ok {
            return None;
        }
        std::fs::write(dir.join(".done"), b"").ok()?;
        Some(dir)
    })
    .clone()
}

struct Env {
    dir: tempfile::TempDir,
    id: String,
}

impl Env {
    fn new(name: &str) -> Option<Env> {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert!(
            euid == 0,
            "the runtime tests need root; CI runs the suite as root"
        );
        busybox_rootfs()
            .unwrap_or_else(|| panic!("busybox:1.35 not found in {} (set BARGE_IMAGES)", *LAYOUT));
        static SUBREAPER: OnceLock<()> = OnceLock::new();
        SUBREAPER.get_or_init(|| {
            // SAFETY: prctl with integer arguments.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        });
        let dir = tempfile::tempdir().unwrap();
        let mut b = [0u8; 4];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
            .unwrap();
        let id = format!("rt-{name}-{:02x}{:02x}{:02x}{:02x}", b[0], b[1], b[2], b[3]);
        let env = Env { dir, id };
        std::fs::create_dir_all(env.bundle()).unwrap();
        Some(env)
    }
    fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    fn log(&self) -> PathBuf {
        self.dir.path().join("runtime.log")
    }
    fn cgroup(&self) -> String {
        format!("/barge-runtime-tests/{}", self.id)
    }

    /// Writes config.json: busybox rootfs (read-only), `args`, optional memory limit.
    fn spec(&self, args: &[&str], memory: Option<i64>) {
        let spec = oci_spec::runtime::Spec::default();
        let mut v = serde_json::to_value(&spec).unwrap();
        v["root"] = serde_json::json!({"path": busybox_rootfs().unwrap(), "readonly": true});
        v["process"]["args"] = serde_json::json!(args);
        v["process"]["terminal"] = serde_json::json!(false);
        v["linux"]["cgroupsPath"] = serde_json::json!(self.cgroup());
        if let Some(m) = memory {
            v["linux"]["resources"]["memory"] = serde_json::json!({"limit": m});
        }
        std::fs::write(
            self.bundle().join("config.json"),
            serde_json::to_vec_pretty(&v).unwrap(),
        )
        .unwrap();
    }

    fn rt(&self) -> Command {
        let mut c = Command::new(RT);
        c.arg("--root")
            .arg(self.root())
            .arg("--log")
            .arg(self.log())
            .arg("--log-format")
            .arg("json");
        c
    }

    /// `create` with stdout/stderr to `out`; Err(last error in the JSON log).
    fn create(&self, out: &Path) -> Result<i32, String> {
        let o = File::create(out).unwrap();
        let pid_file = self.dir.path().join("pid");
        let st = self
            .rt()
            .arg("create")
            .arg("--bundle")
            .arg(self.bundle())
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(&self.id)
            .stdin(Stdio::null())
            .stdout(o.try_clone().unwrap())
            .stderr(o)
            .status()
            .unwrap();
        if !st.success() {
            return Err(self.log_error());
        }
        Ok(std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap())
    }

    fn log_error(&self) -> String {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["level"] == "error")
            .filter_map(|v| v["msg"].as_str().map(String::from))
            .next_back()
            .unwrap_or_default()
    }

    fn ok(&self, args: &[&str]) {
        let o = self.rt().args(args).output().unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// Runs `args` to the end: (wait status, output).
    fn run(&self, args: &[&str], memory: Option<i64>) -> Result<(i32, String), String> {
        self.spec(args, memory);
        let out = self.dir.path().join("out");
        let pid = self.create(&out)?;
        self.ok(&["start", &self.id]);
        let status = wait(pid);
        self.ok(&["delete", "--force", &self.id]);
        Ok((status, std::fs::read_to_string(&out).unwrap()))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self
            .rt()
            .args(["delete", "--force", &self.id])
            .stderr(Stdio::null())
            .status();
        // The tests' parent cgroup, in every v1 hierarchy (or the v2 root): removed by the last
        // test to end (`rmdir` fails with EBUSY while another test's cgroup is in it).
        if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in hierarchies.flatten() {
                let _ = std::fs::remove_dir(h.path().join("barge-runtime-tests"));
            }
        }
        let _ = std::fs::remove_dir("/sys/fs/cgroup/barge-runtime-tests");
    }
}

/// waitpid on a (re-parented) child: the raw wait status.
fn wait(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: waitpid with a valid out pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(
        r,
        pid,
        "waitpid({pid}): {}",
        std::io::Error::last_os_error()
    );
    status
}

fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

#[test]
fn echo_output_and_exit_code() {
    let Some(env) = Env::new("echo") else { return };
    let (status, out) = env
        .run(&["sh", "-c", "echo hello from $(hostname); exit 3"], None)
        .unwrap();
    assert_eq!(exit_code(status), 3);
    assert_eq!(out, "hello from youki\n");
    assert!(
        !env.root().join(&env.id).exists(),
        "delete removes the state"
    );
}

#[test]
fn missing_binary_has_runc_wording() {
    let Some(env) = Env::new("missing") else {
        return;
    };
    let err = env.run(&["nope-not-here"], None).unwrap_err();
    assert!(
        err.ends_with(r#"exec: "nope-not-here": executable file not found in $PATH"#),
        "{err}"
    );
    let err = env.run(&["/bin"], None).unwrap_err();
    assert!(err.ends_with(r#"exec: "/bin": permission denied"#), "{err}");
    // A failed create leaves nothing behind: the same ID can be created again.
    let (status, out) = env.run(&["echo", "again"], None).unwrap();
    assert_eq!((exit_code(status), out.as_str()), (0, "again\n"));
}

#[test]
fn memory_limit_is_applied() {
    let Some(env) = Env::new("mem") else { return };
    let limit = 32 * 1024 * 1024;
    env.spec(&["sleep", "30"], Some(limit));
    let pid = env.create(&env.dir.path().join("out")).unwrap();
    let v1 = PathBuf::from(format!(
        "/sys/fs/cgroup/memory{}/memory.limit_in_bytes",
        env.cgroup()
    ));
    let v2 = PathBuf::from(format!("/sys/fs/cgroup{}/memory.max", env.cgroup()));
    let text = std::fs::read_to_string(&v1)
        .or_else(|_| std::fs::read_to_string(&v2))
        .expect("memory cgroup file");
    assert_eq!(text.trim(), limit.to_string());
    // The init is in that cgroup.
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(cg.contains(&env.cgroup()), "{cg}");
    env.ok(&["start", &env.id]);
    env.ok(&["kill", &env.id, "KILL"]);
    assert_eq!(exit_code(wait(pid)), 137);
    env.ok(&["delete", &env.id]);
}

#[test]
fn exec_detached_and_state() {
    let Some(env) = Env::new("exec") else { return };
    env.spec(&["sleep", "30"], None);
    let pid = env.create(&env.dir.path().join("out")).unwrap();
    let state: serde_json::Value =
        serde_json::from_slice(&env.rt().args(["state", &env.id]).output().unwrap().stdout)
            .unwrap();
    assert_eq!(state["status"], "created");
    env.ok(&["start", &env.id]);
    let state: serde_json::Value =
        serde_json::from_slice(&env.rt().args(["state", &env.id]).output().unwrap().stdout)
            .unwrap();
    assert_eq!(state["status"], "running");
    assert_eq!(state["pid"], pid);

    let process = serde_json::json!({
        "terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/",
        "args": ["sh", "-c", "echo exec says hi; exit 5"],
        "env": ["PATH=/bin:/usr/bin"],
    });
    let pj = env.dir.path().join("process.json");
    std::fs::write(&pj, process.to_string()).unwrap();
    let out = env.dir.path().join("exec-out");
    let epid_file = env.dir.path().join("exec-pid");
    let st = env
        .rt()
        .arg("exec")
        .arg("--process")
        .arg(&pj)
        .arg("--detach")
        .arg("--pid-file")
        .arg(&epid_file)
        .arg(&env.id)
        .stdout(File::create(&out).unwrap())
        .stderr(Stdio::piped())
        .status()
        .unwrap();
    assert!(st.success());
    let epid: i32 = std::fs::read_to_string(&epid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(exit_code(wait(epid)), 5);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "exec says hi\n");

    // Exec lookup failure: runc's wording.
    let bad = serde_json::json!({"terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/", "args": ["nope"], "env": ["PATH=/bin"]});
    std::fs::write(&pj, bad.to_string()).unwrap();
    let o = env
        .rt()
        .arg("exec")
        .arg("--process")
        .arg(&pj)
        .arg("--detach")
        .arg(&env.id)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        env.log_error()
            .ends_with(r#"exec: "nope": executable file not found in $PATH"#),
        "{}",
        env.log_error()
    );

    // ps lists the init.
    let o = env
        .rt()
        .args(["ps", "--format", "json", &env.id])
        .output()
        .unwrap();
    let pids: Vec<i32> = serde_json::from_slice(&o.stdout).unwrap();
    assert!(pids.contains(&pid), "{pids:?}");

    // PID 1 of a namespace ignores TERM without a handler, so KILL (--all: the exec'd ones too).
    env.ok(&["kill", "--all", &env.id, "KILL"]);
    assert_eq!(exit_code(wait(pid)), 137);
    env.ok(&["delete", &env.id]);
}
