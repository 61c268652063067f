//! Exits, `stop`, `kill` and `remove`: recording a monitor's exit (container or exec),
//! signalling a container, waiting for it to stop, and deleting it.
//!
//! **Invariants:** signals go through the monitor's control socket ([`Containers::signal_via`]),
//! or, when the monitor does not answer, only to a process of the container's cgroup through
//! a pidfd ([`signal_verified`]); a stop the user asked for is marked
//! ([`Containers::mark_manually_stopped`]) before the signal, so the restart policy leaves it;
//! an exit unmounts the root only when no file system access holds it (`fs_users`); a removed
//! container's record goes only once its directory is gone.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::monitor::ExitRecord;
use crate::mounts::MountType;
use crate::*;

use super::{io_err, now_rfc3339, unmount_container, Containers};

/// Parses a signal name (`SIGKILL`, `KILL`, `kill`) or number.
pub(crate) fn parse_signal(s: &str) -> Result<i32, ContainerError> {
    let bad = || ContainerError::InvalidOption {
        field: "signal".into(),
        reason: format!("invalid signal: {s}"),
    };
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "STKFLT" => libc::SIGSTKFLT,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => {
            if let Some(rest) = name.strip_prefix("RTMIN+") {
                libc::SIGRTMIN() + rest.parse::<i32>().map_err(|_| bad())?
            } else if let Some(rest) = name.strip_prefix("RTMAX-") {
                libc::SIGRTMAX() - rest.parse::<i32>().map_err(|_| bad())?
            } else {
                return Err(bad());
            }
        }
    };
    Ok(n)
}

/// Signals `pid` only if it is a process of the container of cgroup `cg` (its
/// [`Container::cgroup_path`], `/barge/<id>`),
/// through a pidfd opened before the check: the signal can only reach the process that was
/// checked, never one that took its pid meanwhile. `ESRCH` otherwise.
fn signal_verified(cg: &str, pid: i64, sig: i32) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let gone = || std::io::Error::from_raw_os_error(libc::ESRCH);
    if pid <= 0 {
        return Err(gone());
    }
    // SAFETY: pidfd_open(pid, 0) returns a new fd or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by pidfd_open and is owned by nobody else.
    let pidfd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as libc::c_int) };
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let ours = cg;
    if !cgroup
        .lines()
        .any(|l| l.split(':').nth(2).is_some_and(|p| p.trim_end() == ours))
    {
        return Err(gone());
    }
    // SAFETY: pidfd_send_signal(pidfd, sig, info = NULL, flags = 0) on a pidfd we own.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Containers {
    pub(super) fn read_exit(dir: &Path) -> Option<ExitRecord> {
        serde_json::from_slice(&std::fs::read(dir.join("exit.json")).ok()?).ok()
    }

    /// The monitor of container `id` exited: record the exit and notify.
    pub(super) fn handle_exit(&self, id: &str, reconciling: bool) {
        let state_dir = self.state_dir(id);
        let rec = Self::read_exit(&state_dir);
        match self.networks.get() {
            // The veth pairs of a container that just exited are deleted in the background
            // (kernel grace periods); reconciliation is synchronous, as its callers expect.
            Some(n) if !reconciling => n.release(id),
            _ => self.teardown_network(id),
        }
        if self.lock().fs_users.get(id).copied().unwrap_or(0) == 0 {
            unmount_container(&self.container_dir(id));
        }
        let mut inner = self.lock();
        let Some(c) = inner.containers.get_mut(id) else {
            return;
        };
        for m in c.mounts.iter().filter(|m| m.kind == MountType::Volume) {
            self.volumes.unmount(&m.name, id);
        }
        if !matches!(c.state.status, Status::Running | Status::Paused) && !reconciling {
            return;
        }
        match &rec {
            Some(r) => {
                c.state.status = Status::Exited;
                c.state.exit_code = r.exit_code;
                c.state.oom_killed = r.oom_killed;
                c.state.finished_at = r.finished_at.clone();
                if !r.error.is_empty() {
                    c.state.error = r.error.clone();
                }
            }
            None => {
                c.state.status = if reconciling {
                    Status::Dead
                } else {
                    Status::Exited
                };
                c.state.exit_code = 255;
                c.state.finished_at = now_rfc3339();
            }
        }
        if reconciling && rec.is_some() {
            c.state.status = Status::Exited;
        }
        c.state.pid = 0;
        let mut c = c.clone();
        // Hooks: retire the health prober; the restart policy may turn this exit into
        // `restarting` (restart.rs).
        Self::health_stop(&mut inner, id);
        let restart = Self::restart_decision(&mut inner, &mut c);
        inner.containers.insert(id.to_string(), c.clone());
        *inner.exits.entry(id.to_string()).or_default() += 1;
        for e in inner
            .execs
            .values_mut()
            .filter(|e| e.container_id == id && e.running)
        {
            e.running = false;
        }
        drop(inner);
        // A `--rm` container's record is deleted moments from now (the engine's auto-remove):
        // writing its exit first would only slow every `run --rm`. If the engine stops before
        // the removal, its next start removes the container (`Containers::open`).
        if !(c.options.host.auto_remove && restart.is_none() && !reconciling) {
            self.persist_or_flag(id);
        }
        // Runtime leftovers (normally removed by the monitor).
        self.clean_runtime_state(&c);
        (self.on_event)(ContainerEvent::Died {
            id: id.to_string(),
            exit_code: c.state.exit_code,
            oom_killed: c.state.oom_killed,
        });
        self.changed(id);
        if let Some(delay) = restart {
            self.schedule_restart(id, delay);
        }
    }

    pub(super) fn handle_exec_exit(&self, id: &str, exec_id: &str) {
        let rec = Self::read_exit(&self.exec_dir(exec_id));
        let code = rec.map(|r| r.exit_code).unwrap_or(255);
        let mut inner = self.lock();
        if let Some(e) = inner.execs.get_mut(exec_id) {
            e.running = false;
            e.exit_code = Some(code);
        }
        drop(inner);
        let _ = std::fs::remove_dir_all(self.exec_dir(exec_id));
        (self.on_event)(ContainerEvent::ExecDied {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            exit_code: code,
        });
        self.exec_changed(exec_id);
    }

    /// Waits up to `timeout` for the container to stop running; true if it did.
    fn wait_stopped(&self, id: &str, timeout: Option<Duration>) -> bool {
        // A deadline beyond what an `Instant` holds means no deadline (never a panic).
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut inner = self.lock();
        loop {
            match inner.containers.get(id) {
                Some(c) if matches!(c.state.status, Status::Running | Status::Paused) => {}
                _ => return true,
            }
            match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    inner = self
                        .cond
                        .wait_timeout(inner, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                None => inner = self.cond.wait(inner).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }

    /// Sends `sig` to the container's main process through its monitor's control socket (the
    /// monitor signals it through a pidfd, and never after reaping it), so a signal can never
    /// reach an unrelated process that reused a stored pid. A monitor that does not answer
    /// (busy, stopped, or from an older barge without `kill`) is bypassed: the recorded pid is
    /// opened as a pidfd and signalled only if that process is in the container's cgroup.
    /// `ESRCH` when the process or its monitor is gone.
    fn signal_container(&self, c: &Container, sig: i32) -> std::io::Result<()> {
        match Self::signal_via(&self.control_socket(&c.id), sig) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                tracing::warn!(id = %c.id, "monitor did not answer a signal request: {e}");
                signal_verified(&c.cgroup_path(), c.state.pid, sig)
            }
            r => r,
        }
    }

    /// `kill <sig>` on a monitor's control socket; its `err <errno>` answer as an error.
    pub(crate) fn signal_via(socket: &Path, sig: i32) -> std::io::Result<()> {
        // No socket, or a monitor on its way out: the process is gone.
        let gone = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound
            | std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe => std::io::Error::from_raw_os_error(libc::ESRCH),
            _ => e,
        };
        let mut s = UnixStream::connect(socket).map_err(gone)?;
        // A monitor that does not answer in time skips the request once it sees it was
        // abandoned (the connection closed), so a timeout means "not sent".
        s.set_read_timeout(Some(Duration::from_secs(3))).ok();
        s.write_all(format!("kill {sig}\n").as_bytes())
            .map_err(gone)?;
        let mut reply = Vec::new();
        let mut b = [0u8; 1];
        while reply.len() < 64 {
            match s.read(&mut b) {
                Ok(0) => break,
                Ok(_) if b[0] == b'\n' => break,
                Ok(_) => reply.push(b[0]),
                Err(e) => return Err(gone(e)),
            }
        }
        let reply = String::from_utf8_lossy(&reply);
        match reply.trim() {
            "ok" => Ok(()),
            // EOF without an answer: the monitor is exiting, the process is gone.
            "" => Err(std::io::Error::from_raw_os_error(libc::ESRCH)),
            r => match r.strip_prefix("err ").and_then(|n| n.parse::<i32>().ok()) {
                Some(errno) => Err(std::io::Error::from_raw_os_error(errno)),
                None => Err(std::io::Error::other(format!("monitor: {r}"))),
            },
        }
    }

    /// Sends the stop signal (the container's, or `signal`), waits `timeout` seconds (the
    /// container's `stop_timeout`, default 10; -1 = forever), then SIGKILL. No error if not running.
    pub fn stop(
        &self,
        id: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<(), ContainerError> {
        let c = self.get(id)?;
        let sig = parse_signal(signal.unwrap_or(&c.config.stop_signal))?;
        if !self.mark_manually_stopped(&c.id) {
            return Ok(());
        }
        let timeout = timeout.or(c.options.stop_timeout).unwrap_or(10);
        if let Err(e) = self.signal_container(&c, sig) {
            tracing::debug!("stop {}: signal {sig}: {e}", c.id);
        }
        self.thaw_if_paused(&c);
        let t = if timeout < 0 {
            None
        } else {
            Some(Duration::from_secs(timeout as u64))
        };
        if self.wait_stopped(&c.id, t) {
            return Ok(());
        }
        if let Err(e) = self.signal_container(&c, libc::SIGKILL) {
            tracing::debug!("kill {}: {e}", c.id);
        }
        self.wait_stopped(&c.id, Some(Duration::from_secs(30)));
        Ok(())
    }

    /// The user stops the container (stop, kill with SIGKILL or the stop signal): no
    /// automatic restart until the next start; a pending restart is cancelled and the
    /// container left `exited`. Returns whether a process may still be running.
    fn mark_manually_stopped(&self, id: &str) -> bool {
        let mut inner = self.lock();
        Self::cancel_restart(&mut inner, id);
        let Some(c) = inner.containers.get_mut(id) else {
            return false;
        };
        let active = matches!(c.state.status, Status::Running | Status::Paused);
        if !active && c.state.status != Status::Restarting {
            return false;
        }
        c.has_been_manually_stopped = true;
        if c.state.status == Status::Restarting {
            c.state.status = Status::Exited;
        }
        drop(inner);
        self.persist_or_flag(id);
        self.changed(id);
        active
    }

    /// Sends `signal` (name like `SIGKILL`/`KILL` or number) to the main process. 409 if not
    /// running. SIGKILL and the stop signal count as a user's stop (restart policy) and thaw a
    /// paused container; killing a `restarting` container cancels the restart.
    pub fn kill(&self, id: &str, signal: &str) -> Result<(), ContainerError> {
        let c = self.get(id)?;
        let sig = parse_signal(if signal.is_empty() { "SIGKILL" } else { signal })?;
        let stopping =
            sig == libc::SIGKILL || parse_signal(&c.config.stop_signal).ok() == Some(sig);
        if c.state.status == Status::Restarting && stopping {
            self.mark_manually_stopped(&c.id);
            return Ok(());
        }
        if !matches!(c.state.status, Status::Running | Status::Paused) {
            return Err(ContainerError::NotRunning(c.id));
        }
        if stopping {
            self.mark_manually_stopped(&c.id);
        }
        self.signal_container(&c, sig).map_err(|e| {
            if e.raw_os_error() == Some(libc::ESRCH) {
                ContainerError::NotRunning(c.id.clone())
            } else {
                ContainerError::io(format!("kill container {}", c.id), e)
            }
        })?;
        if stopping {
            self.thaw_if_paused(&c);
        }
        Ok(())
    }

    /// Removes a container: 409 if running and not `force` (force kills it first). Unmounts its
    /// root, deletes its directory and runtime state, and drops its volume references (the
    /// volumes stay; see [`Containers::remove_with_volumes`]).
    pub fn remove(&self, id: &str, force: bool) -> Result<(), ContainerError> {
        self.remove_with_volumes(id, force, false)
    }

    /// [`Containers::remove`]; with `volumes` (Docker's `rm -v`, and `--rm`) also removes the
    /// container's anonymous volumes that no other container references.
    pub fn remove_with_volumes(
        &self,
        id: &str,
        force: bool,
        volumes: bool,
    ) -> Result<(), ContainerError> {
        let c = self.get(id)?;
        if c.state.status == Status::Restarting {
            if !force {
                return Err(ContainerError::RunningRemove {
                    state: "restarting".into(),
                    id: c.id,
                });
            }
            self.mark_manually_stopped(&c.id);
        }
        if matches!(c.state.status, Status::Running | Status::Paused)
            || self.lock().starting.contains(&c.id)
        {
            if !force {
                let state = match c.state.status {
                    Status::Paused => "paused",
                    _ => "running",
                };
                return Err(ContainerError::RunningRemove {
                    state: state.into(),
                    id: c.id,
                });
            }
            self.mark_manually_stopped(&c.id);
            if let Err(e) = self.signal_container(&c, libc::SIGKILL) {
                tracing::debug!("kill {}: {e}", c.id);
            }
            self.thaw_if_paused(&c);
            self.wait_stopped(&c.id, Some(Duration::from_secs(30)));
        }
        let c = self.get(&c.id)?;
        self.teardown_network(&c.id);
        unmount_container(&self.container_dir(&c.id));
        self.clean_runtime_state(&c);
        discard_tree(&self.state_dir(&c.id));
        let dir = self.container_dir(&c.id);
        // Out of the way at once (one rename), deleted on another thread: `run --rm` waits for
        // the removal, and a tree's unlinks cost milliseconds on a journaling file system.
        // When the rename fails (e.g. an immutable directory), the tree is deleted here, so
        // the failure is the request's. The record writer's lock is held until the record is
        // gone from memory: a `persist` that read it just before would write into a moved
        // tree ("container record not saved: ... No such file or directory").
        let writer = self.save_lock.lock().unwrap_or_else(|e| e.into_inner());
        if !discard_tree(&dir) {
            remove_tree(&dir).map_err(io_err(format!("remove {}", dir.display())))?;
        }
        let mut inner = self.lock();
        inner.containers.remove(&c.id);
        drop(writer);
        Self::health_stop(&mut inner, &c.id);
        Self::cancel_restart(&mut inner, &c.id);
        inner.execs.retain(|_, e| e.container_id != c.id);
        inner.removed.insert(c.id.clone(), c.state.exit_code);
        drop(inner);
        self.release_volumes(&c, volumes);
        self.changed(&c.id);
        self.drop_orphan_exec_waiters();
        Ok(())
    }
}

/// The directory under which [`discard_tree`] parks trees being deleted: `.removing` beside
/// them (same file system, so the move is a rename). Loading skips it (no `container.json`).
const REMOVING: &str = ".removing";

/// Moves `dir` into its parent's [`REMOVING`] directory and deletes it there on a short-lived
/// thread. Returns whether `dir` is gone from its place (also when it did not exist); `false`
/// when it could not be moved, and then it is untouched.
pub(crate) fn discard_tree(dir: &Path) -> bool {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return false;
    };
    let bin = parent.join(REMOVING);
    let _ = std::fs::create_dir(&bin);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut target = name.to_os_string();
    target.push(format!(".{nanos}"));
    let target = bin.join(target);
    match std::fs::rename(dir, &target) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return true,
        Err(_) => return false,
    }
    let spawned = std::thread::Builder::new()
        .name("barge-rmtree".into())
        .spawn({
            let target = target.clone();
            move || {
                if let Err(e) = remove_tree(&target) {
                    tracing::warn!("remove {}: {e}", target.display());
                }
            }
        });
    if spawned.is_err() {
        let _ = remove_tree(&target);
    }
    true
}

/// Deletes what an earlier run parked in `parent`'s [`REMOVING`] directory (an engine stopped
/// while deleting), on a short-lived thread.
pub(crate) fn purge_removing(parent: &Path) {
    let bin = parent.join(REMOVING);
    if !bin.exists() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("barge-rmtree".into())
        .spawn(move || {
            if let Err(e) = remove_tree(&bin) {
                tracing::warn!("remove {}: {e}", bin.display());
            }
        });
}

/// `remove_dir_all`, tried again a few times on ENOTEMPTY: a monitor that is just ending (the
/// container's, or an exec's) may still write its exit record or last log lines into the tree
/// while it is removed. A missing tree is no error.
fn remove_tree(dir: &Path) -> std::io::Result<()> {
    let mut tries = 0;
    loop {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(25));
            }
            r => return r,
        }
    }
}
