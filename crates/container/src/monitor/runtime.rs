//! The monitor's side of the OCI runtime: the runtime's command line (`--root`, `--log` in
//! the state directory, JSON log format), the error text of a failed call (the last `error`
//! of its log), `delete` (forked runtime, in-process embedded runtime, or by hand once the
//! init was reaped) and the stdio swap around in-process runtime calls.
//!
//! **Invariants:** every runtime call of a monitor logs to its own `runtime.log`; the
//! by-hand delete ([`delete_exited`]) only runs once the container's init is known to be
//! gone and changes nothing when a cgroup is still busy; [`with_child_stdio`] restores fds 0-2
//! and re-blocks SIGCHLD before it returns (the monitor is single-threaded, so no other
//! thread sees the swapped fds).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::{Command, Stdio};

use super::{embedded, MonitorConfig};

pub(super) fn runtime_cmd(cfg: &MonitorConfig) -> Command {
    let mut c = Command::new(&cfg.runtime);
    c.args(&cfg.runtime_args)
        .arg("--root")
        .arg(&cfg.runtime_root)
        .arg("--log")
        .arg(cfg.state_dir.join("runtime.log"))
        .arg("--log-format")
        .arg("json");
    c
}

/// The last `error` message in the runtime's JSON log (falls back to `fallback`).
pub(super) fn runtime_error(cfg: &MonitorConfig, fallback: &str) -> String {
    let text = std::fs::read_to_string(cfg.state_dir.join("runtime.log")).unwrap_or_default();
    let mut msg = None;
    for line in text.lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if v["level"] == "error" {
                if let Some(m) = v["msg"].as_str() {
                    msg = Some(m.to_string());
                }
            }
        }
    }
    msg.unwrap_or_else(|| {
        let f = fallback.trim();
        if f.is_empty() {
            "OCI runtime failed".to_string()
        } else {
            f.to_string()
        }
    })
}

/// The embedded runtime's `delete` done by hand once the container is known to be gone (its
/// init exited and was reaped): its cgroups (`/barge/<id>`, as barge's specs say, in every
/// hierarchy, or `/<CgroupParent>/<id>`) and state directory are removed without loading libcontainer's state and cgroup
/// manager. `false` (nothing changed that `delete` would not redo) when a cgroup is still busy,
/// e.g. a process of the container not reaped yet; libcontainer's delete then kills and retries.
pub(super) fn delete_exited(cfg: &MonitorConfig) -> bool {
    const ROOT: &str = "/sys/fs/cgroup";
    let cg = cfg
        .cgroups_path
        .clone()
        .unwrap_or_else(|| format!("/barge/{}", cfg.id));
    let rel = cg.trim_start_matches('/');
    let mut dirs = Vec::new();
    if Path::new(ROOT).join("cgroup.controllers").exists() {
        dirs.push(Path::new(ROOT).join(rel));
    } else if let Ok(rd) = std::fs::read_dir(ROOT) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(e.path().join(rel));
            }
        }
    }
    for d in &dirs {
        match std::fs::remove_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => return false,
        }
    }
    let _ = std::fs::remove_dir_all(cfg.runtime_root.join(&cfg.id));
    let _ = std::fs::remove_dir_all(cfg.runtime_root.join(".barge").join(&cfg.id));
    true
}

/// `runtime delete --force` of the container (in-process for the embedded runtime).
pub(super) fn runtime_delete(cfg: &MonitorConfig) {
    if let Some(rt) = embedded(cfg) {
        if let Err(e) = (rt.delete)(&cfg.runtime_root, &cfg.id) {
            eprintln!("barge monitor {}: delete: {e}", cfg.id);
        }
        return;
    }
    let _ = runtime_cmd(cfg)
        .arg("delete")
        .arg("--force")
        .arg(&cfg.id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Blocks (`libc::SIG_BLOCK`) or unblocks SIGCHLD in the (single-threaded) monitor.
fn mask_sigchld(how: libc::c_int) {
    // SAFETY: sigset manipulation on a local, then sigprocmask with valid pointers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(how, &set, std::ptr::null_mut());
    }
}

/// Runs `f` with `fds` as this process's fds 0-2 (then restores them), so that processes
/// cloned by `f` (the in-process runtime's) inherit them, and with SIGCHLD unblocked, so the
/// container's process does not start with it blocked (a clone inherits the signal mask;
/// std's `Command` resets it, libcontainer does not).
pub(super) fn with_child_stdio<T>(
    fds: Option<&[OwnedFd; 3]>,
    f: impl FnOnce() -> T,
) -> Result<T, String> {
    let mut saved: Vec<OwnedFd> = Vec::new();
    if let Some(fds) = fds {
        for (i, fd) in fds.iter().enumerate() {
            // SAFETY: duplicating a standard fd to a fresh close-on-exec fd we then own.
            let copy = unsafe { libc::fcntl(i as RawFd, libc::F_DUPFD_CLOEXEC, 3) };
            if copy < 0 {
                return Err(format!("dup stdio: {}", std::io::Error::last_os_error()));
            }
            // SAFETY: `copy` is a fresh fd owned by nobody else.
            saved.push(unsafe { OwnedFd::from_raw_fd(copy) });
            // SAFETY: dup2 of a valid fd onto a standard fd (single-threaded process).
            if unsafe { libc::dup2(fd.as_raw_fd(), i as RawFd) } < 0 {
                return Err(format!("dup2 stdio: {}", std::io::Error::last_os_error()));
            }
        }
    }
    mask_sigchld(libc::SIG_UNBLOCK);
    let r = f();
    mask_sigchld(libc::SIG_BLOCK);
    for (i, fd) in saved.iter().enumerate() {
        // SAFETY: restores the standard fd from the copy taken above.
        unsafe {
            libc::dup2(fd.as_raw_fd(), i as RawFd);
        }
    }
    Ok(r)
}
