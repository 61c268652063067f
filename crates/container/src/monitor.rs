//! The per-container monitor process (`barge monitor <config.json>`): single-threaded, started
//! fresh by the daemon (`setsid`, detached), it drives the OCI runtime, owns stdio/pty, writes
//! the log and records the exit.
//!
//! Protocol with its starter: the monitor's stdout is a status pipe carrying lines
//! `created`, then `started <pid>`, or `failed <json string>` (the runtime's error text).
//! After `started` the pipe is closed. The monitor serves:
//! - the attach socket (see [`crate::AttachPoint`]),
//! - a control socket: line commands `resize <rows> <cols>` (answer `ok`) and `kill <signo>`
//!   (answer `ok` or `err <errno>`: the signal goes through a pidfd of the process, and never
//!   once it was reaped, so it cannot reach a process that reused its pid; `ESRCH` when it is
//!   gone); other lines get `err unknown command`. Any connection is held open until
//!   the monitor exits (EOF = "the process exited and `exit.json` is written"), which is how the
//!   engine watches monitors it did not spawn (after a daemon restart).
//!
//! When the process exits it drains output, reads the cgroup OOM counter, writes `exit.json`
//! ([`ExitRecord`]) into its state directory, deletes the runtime container (init mode) and exits.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::logs::{LineBuffer, LogWriter};

/// Everything a monitor needs, written as JSON by the engine; its path is the only argument.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorConfig {
    /// Container ID (the runtime's container ID).
    pub id: String,
    /// `Some` = exec mode (`runc exec` of `process_json`).
    pub exec_id: Option<String>,
    pub runtime: PathBuf,
    /// Arguments before runc's global flags (`["runtime"]` for the embedded `barge runtime`).
    #[serde(default)]
    pub runtime_args: Vec<String>,
    pub runtime_root: PathBuf,
    pub bundle: PathBuf,
    pub process_json: Option<PathBuf>,
    /// Where `exit.json`, the pid file, `runtime.log` and the console socket go.
    pub state_dir: PathBuf,
    pub attach_socket: PathBuf,
    pub control_socket: PathBuf,
    pub log: Option<LogConfig>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub expected_attaches: usize,
    /// cgroup v1 memory dir or cgroup v2 dir of the container (for the OOM counter).
    pub memory_cgroup: Option<PathBuf>,
    /// Bring `lo` up in the container's (new) network namespace after `create`.
    #[serde(default)]
    pub loopback_up: bool,
    /// The process is barge-init (`--init`): "started" also waits until it blocks signals, so a
    /// stop signal sent right away is forwarded rather than dropped (PID 1 ignores default signals).
    #[serde(default)]
    pub init: bool,
    /// `runtime` is the embedded runtime (this binary's `barge runtime`): the monitor runs its
    /// create/start/delete in-process ([`EmbeddedRuntime`]) instead of exec'ing it three times.
    /// Exec still goes through the command line.
    #[serde(default)]
    pub in_process: bool,
    /// After `created` (and the expected attaches), wait for the starter's go-ahead on stdin:
    /// a line `start`, or `abort <json message>` (e.g. the network endpoints failed), which
    /// fails the start with that message. EOF counts as an abort.
    #[serde(default)]
    pub start_gate: bool,
    /// Terminal size `(rows, columns)` set on the pty as soon as the runtime hands it over,
    /// before the process starts (Docker's `ConsoleSize`); 24x80 when unset.
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
}

/// `create(root, id, bundle, pid_file, console_socket)` of an [`EmbeddedRuntime`].
pub type CreateFn = fn(&Path, &str, &Path, &Path, Option<&Path>) -> Result<(), String>;

/// The embedded OCI runtime's entry points, called inside the monitor process (which is
/// single-threaded and started fresh, as libcontainer's clone requires). Given by the binary
/// (`barge monitor`), so this crate does not link libcontainer.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedRuntime {
    /// `(root, id, bundle, pid_file, console_socket)`: `runtime create`; the container's stdio
    /// are the caller's fds 0-2 unless a console socket is given.
    pub create: CreateFn,
    /// `(root, id)`: `runtime start`.
    pub start: fn(&Path, &str) -> Result<(), String>,
    /// `(root, id)`: `runtime delete --force`.
    pub delete: fn(&Path, &str) -> Result<(), String>,
}

static EMBEDDED: std::sync::OnceLock<EmbeddedRuntime> = std::sync::OnceLock::new();

/// The in-process runtime, when this monitor was told to use it and the binary provides one.
fn embedded(cfg: &MonitorConfig) -> Option<&'static EmbeddedRuntime> {
    EMBEDDED.get().filter(|_| cfg.in_process)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogConfig {
    pub path: PathBuf,
    pub max_size: u64,
    pub max_files: usize,
}

/// `exit.json`: how the process ended.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ExitRecord {
    pub exit_code: i64,
    pub oom_killed: bool,
    /// RFC 3339 nano.
    pub finished_at: String,
    /// Start error text, if the process never ran.
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub pid: i64,
}

/// Exit code Docker reports for a start failure with this runtime message.
pub fn start_failure_exit_code(message: &str) -> i64 {
    if message.contains("executable file not found")
        || message.contains("no such file or directory")
    {
        127
    } else if message.contains("permission denied") {
        126
    } else {
        128
    }
}

/// Entry point of `barge monitor <config.json>` without an in-process runtime (every runtime
/// command is exec'd).
pub fn main(args: &[String]) -> i32 {
    main_with(args, None)
}

/// Entry point of `barge monitor <config.json>`; `runtime` serves configs with `in_process`.
pub fn main_with(args: &[String], runtime: Option<EmbeddedRuntime>) -> i32 {
    if let Some(rt) = runtime {
        let _ = EMBEDDED.set(rt);
    }
    let Some(path) = args.first() else {
        eprintln!("usage: barge monitor <config.json>");
        return 2;
    };
    let cfg: MonitorConfig = match std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("barge monitor: cannot read {path}: {e}");
            return 2;
        }
    };
    // The start gate is our stdin; keep it on a close-on-exec fd.
    let gate = if cfg.start_gate {
        // SAFETY: fcntl on fd 0; the result is checked.
        let fd = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3) };
        if fd < 0 {
            return 2;
        }
        // SAFETY: fd was just created by fcntl and is owned by nobody else.
        Some(unsafe { File::from_raw_fd(fd) })
    } else {
        None
    };
    // The status pipe is our stdout; move it to a close-on-exec fd and point fd 0/1 at /dev/null
    // so no runtime child inherits it.
    // SAFETY: fcntl/dup2/open on fds we own; the results are checked.
    let status_fd = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
    if status_fd < 0 {
        return 2;
    }
    // SAFETY: status_fd was just created by fcntl and is owned by nobody else.
    let mut status = Some(unsafe { File::from_raw_fd(status_fd) });
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        // SAFETY: dup2 of a valid fd onto the standard fds.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(null.as_raw_fd(), 1);
        }
    }
    match run(&cfg, &mut status, gate) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("barge monitor {}: {e}", cfg.id);
            if let Some(s) = status.as_mut() {
                let _ = writeln!(
                    s,
                    "failed {}",
                    serde_json::to_string(&e).unwrap_or_default()
                );
            }
            1
        }
    }
}

fn report(status: &mut Option<File>, line: &str) {
    if let Some(s) = status.as_mut() {
        let _ = s.write_all(format!("{line}\n").as_bytes());
    }
}

fn runtime_cmd(cfg: &MonitorConfig) -> Command {
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
fn runtime_error(cfg: &MonitorConfig, fallback: &str) -> String {
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

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a valid 2-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: pipe2 returned two fresh fds that we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn write_exit(cfg: &MonitorConfig, rec: &ExitRecord) {
    let path = cfg.state_dir.join("exit.json");
    let data = serde_json::to_vec(rec).expect("exit record serializes");
    // The engine learns the exit from this file: a failure goes to monitor.log (stderr).
    if let Err(e) = barge_fsutil::write_atomic(&path, &data) {
        eprintln!("barge monitor: write {}: {e}", path.display());
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// The embedded runtime's `delete` done by hand once the container is known to be gone (its
/// init exited and was reaped): its cgroups (`/barge/<id>`, as barge's specs say, in every
/// hierarchy) and state directory are removed without loading libcontainer's state and cgroup
/// manager. `false` (nothing changed that `delete` would not redo) when a cgroup is still busy,
/// e.g. a process of the container not reaped yet; libcontainer's delete then kills and retries.
fn delete_exited(cfg: &MonitorConfig) -> bool {
    const ROOT: &str = "/sys/fs/cgroup";
    let mut dirs = Vec::new();
    if Path::new(ROOT).join("cgroup.controllers").exists() {
        dirs.push(Path::new(ROOT).join("barge").join(&cfg.id));
    } else if let Ok(rd) = std::fs::read_dir(ROOT) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(e.path().join("barge").join(&cfg.id));
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
fn runtime_delete(cfg: &MonitorConfig) {
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
fn with_child_stdio<T>(fds: Option<&[OwnedFd; 3]>, f: impl FnOnce() -> T) -> Result<T, String> {
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

fn fail(cfg: &MonitorConfig, status: &mut Option<File>, message: String) -> Result<(), String> {
    write_exit(
        cfg,
        &ExitRecord {
            exit_code: start_failure_exit_code(&message),
            oom_killed: false,
            finished_at: now(),
            error: message.clone(),
            pid: 0,
        },
    );
    if cfg.exec_id.is_none() {
        runtime_delete(cfg);
    }
    report(
        status,
        &format!(
            "failed {}",
            serde_json::to_string(&message).unwrap_or_default()
        ),
    );
    let _ = std::fs::remove_file(&cfg.attach_socket);
    let _ = std::fs::remove_file(&cfg.control_socket);
    Ok(())
}

/// Writes a one-line message to every attach client (as moby writes a failed exec's error into
/// the hijacked stream): a stdcopy stdout frame, or raw bytes for a TTY.
fn tell_clients(cfg: &MonitorConfig, clients: &mut [AttachClient], message: &str) {
    let text = format!("{message}\r\n");
    let mut bytes = Vec::with_capacity(text.len() + 8);
    if !cfg.tty {
        bytes.push(1u8);
        bytes.extend_from_slice(&[0, 0, 0]);
        bytes.extend_from_slice(&(text.len() as u32).to_be_bytes());
    }
    bytes.extend_from_slice(text.as_bytes());
    for c in clients.iter_mut() {
        let _ = c.stream.write_all(&bytes);
    }
}

/// Receives the pty master runc sends over the console socket.
fn recv_console(listener: &UnixListener) -> Result<OwnedFd, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => return Err(format!("console socket: {e}")),
        }
    };
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| format!("console recvmsg: {e}"))?;
    for c in msg.cmsgs().map_err(|e| format!("console cmsg: {e}"))? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the fd was just received via SCM_RIGHTS and is owned by us.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err("console socket: no pty master received".into())
}

fn bind(path: &Path) -> Result<UnixListener, String> {
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path).map_err(|e| format!("bind {}: {e}", path.display()))
}

fn read_pid(path: &Path) -> Result<i32, String> {
    let s = std::fs::read_to_string(path)
        .map_err(|e| format!("read pid file {}: {e}", path.display()))?;
    s.trim()
        .parse()
        .map_err(|_| format!("bad pid file {}", path.display()))
}

/// Sets `IFF_UP` on `lo` in the network namespace of `pid`, from a dedicated thread that enters
/// the namespace and exits afterwards (the monitor's own thread never changes namespace).
fn loopback_up(pid: i32) -> Result<(), String> {
    let ns = File::open(format!("/proc/{pid}/ns/net")).map_err(|e| format!("open netns: {e}"))?;
    let handle = std::thread::spawn(move || -> Result<(), String> {
        // SAFETY: setns on a valid namespace fd affects only this (short-lived) thread.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: plain socket(2) call; the fd is wrapped in OwnedFd right away.
        let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if sock < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: sock is a fresh fd we own.
        let sock = unsafe { OwnedFd::from_raw_fd(sock) };
        // SAFETY: ifreq is plain data; zeroed is a valid initial value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read/write the ifreq we pass; the union field
        // `ifru_flags` is the one these ioctls use.
        unsafe {
            if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
                return Err(format!("SIOCGIFFLAGS: {}", std::io::Error::last_os_error()));
            }
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
                return Err(format!("SIOCSIFFLAGS: {}", std::io::Error::last_os_error()));
            }
        }
        Ok(())
    });
    handle
        .join()
        .map_err(|_| "loopback thread panicked".to_string())?
}

/// Waits (briefly) until `pid` is no longer the runtime's `init` stub, i.e. the user's program has
/// been exec'd, so that signals sent right after "started" reach the program and not the runtime.
fn wait_exec_done(pid: i32, init: bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match std::fs::read(format!("/proc/{pid}/cmdline")) {
            // runc's stub is `runc init`; the embedded runtime's is a clone of `barge runtime ...`
            // or, in-process, of this `barge monitor ...`.
            Ok(cmd)
                if (cmd.ends_with(b"init\0") && cmd.split(|&b| b == 0).nth(1) == Some(b"init"))
                    || matches!(
                        cmd.split(|&b| b == 0).nth(1),
                        Some(b"runtime") | Some(b"monitor")
                    ) =>
            {
                std::thread::sleep(Duration::from_millis(1))
            }
            Ok(_) if init => {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let blocked = status
                    .lines()
                    .find_map(|l| l.strip_prefix("SigBlk:"))
                    .map(|v| v.trim().trim_start_matches('0').is_empty())
                    .map(|empty| !empty)
                    .unwrap_or(true);
                if blocked {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1))
            }
            _ => return,
        }
    }
}

/// Whether the other end of `s` is closed (`POLLRDHUP`), without reading.
fn peer_gone(s: &UnixStream) -> bool {
    let mut p = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLRDHUP | libc::POLLHUP) != 0
}

/// `pidfd_open(2)` of `pid`; `None` when the kernel lacks it (before 5.3) or the process is gone.
fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(pid, flags) returns a new fd or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just returned by pidfd_open and is owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `sig` to the monitored process: through its pidfd, else (no pidfd support) to `pid`,
/// which is this process's unreaped child or descendant and so still names it.
fn signal_child(pidfd: Option<&OwnedFd>, pid: i32, sig: i32) -> std::io::Result<()> {
    let r = match pidfd {
        // SAFETY: pidfd_send_signal(pidfd, sig, info = NULL, flags = 0) on a pidfd we own.
        Some(fd) => unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        },
        // SAFETY: kill(2) with a pid and signal number.
        None => (unsafe { libc::kill(pid, sig) }) as libc::c_long,
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn set_winsize(fd: RawFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct from a valid pointer.
    unsafe {
        libc::ioctl(fd, libc::TIOCSWINSZ, &ws);
    }
}

fn oom_count(cg: &Path) -> u64 {
    for file in ["memory.oom_control", "memory.events"] {
        if let Ok(text) = std::fs::read_to_string(cg.join(file)) {
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("oom_kill ") {
                    return v.trim().parse().unwrap_or(0);
                }
            }
        }
    }
    0
}

struct AttachClient {
    stream: UnixStream,
    read_open: bool,
}

use barge_stdx::stdcopy::frame;

/// Reads the start gate's line: `Ok` for `start`, the abort message otherwise.
fn read_gate(gate: File) -> Result<(), String> {
    let mut line = String::new();
    let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(gate), &mut line);
    let line = line.trim_end();
    if line == "start" {
        return Ok(());
    }
    Err(match line.strip_prefix("abort ") {
        Some(m) => serde_json::from_str::<String>(m).unwrap_or_else(|_| m.to_string()),
        None => "start aborted by the engine".to_string(),
    })
}

fn run(cfg: &MonitorConfig, status: &mut Option<File>, gate: Option<File>) -> Result<(), String> {
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    // SIGCHLD through a signalfd (the mask is reset by std::process in children).
    // SAFETY: sigset manipulation on a local, then signalfd on it.
    let sfd = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)
    };
    if sfd < 0 {
        return Err(format!("signalfd: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fresh fd from signalfd.
    let sfd = unsafe { OwnedFd::from_raw_fd(sfd) };

    std::fs::create_dir_all(&cfg.state_dir).map_err(|e| format!("state dir: {e}"))?;
    let _ = std::fs::remove_file(cfg.state_dir.join("exit.json"));
    let _ = std::fs::remove_file(cfg.state_dir.join("runtime.log"));
    let attach_listener = bind(&cfg.attach_socket)?;
    let control_listener = bind(&cfg.control_socket)?;
    let pid_file = cfg.state_dir.join("pid");
    let _ = std::fs::remove_file(&pid_file);
    let console_path = cfg.state_dir.join("console.sock");
    let console = if cfg.tty {
        Some(bind(&console_path)?)
    } else {
        None
    };

    // stdio: (container side, our side)
    let mut stdin_w: Option<File> = None;
    let mut out_r: Option<File> = None;
    let mut err_r: Option<File> = None;
    // The container's side of its stdio pipes (stdin is /dev/null without `open_stdin`).
    let mut child_fds: Option<[OwnedFd; 3]> = None;
    if !cfg.tty {
        let stdin = if cfg.open_stdin {
            let (r, w) = pipe()?;
            stdin_w = Some(File::from(w));
            r
        } else {
            OwnedFd::from(File::open("/dev/null").map_err(|e| format!("open /dev/null: {e}"))?)
        };
        let (or, ow) = pipe()?;
        let (er, ew) = pipe()?;
        out_r = Some(File::from(or));
        err_r = Some(File::from(er));
        child_fds = Some([stdin, ow, ew]);
    }
    let stdio_of = |fds: [OwnedFd; 3]| {
        let [i, o, e] = fds;
        (Stdio::from(i), Stdio::from(o), Stdio::from(e))
    };

    let is_exec = cfg.exec_id.is_some();
    let mut master: Option<File> = None;

    let build_exec = |stdio: Option<(Stdio, Stdio, Stdio)>| {
        let mut c = runtime_cmd(cfg);
        c.arg("exec")
            .arg("--detach")
            .arg("--pid-file")
            .arg(&pid_file);
        if let Some(p) = &cfg.process_json {
            c.arg("--process").arg(p);
        }
        if cfg.tty {
            c.arg("--console-socket").arg(&console_path);
        }
        c.arg(&cfg.id);
        if let Some((i, o, e)) = stdio {
            c.stdin(i).stdout(o).stderr(e);
        } else {
            c.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
        }
        c
    };

    if let (false, Some(rt)) = (is_exec, embedded(cfg)) {
        let fds = child_fds.take();
        let console_arg = cfg.tty.then_some(console_path.as_path());
        let r = with_child_stdio(fds.as_ref(), || {
            (rt.create)(
                &cfg.runtime_root,
                &cfg.id,
                &cfg.bundle,
                &pid_file,
                console_arg,
            )
        });
        // Our copies of the container's ends go now, so its exit closes the pipes.
        drop(fds);
        if let Err(e) = r.and_then(|r| r) {
            return fail(cfg, status, e);
        }
    } else if !is_exec {
        let mut c = runtime_cmd(cfg);
        c.arg("create")
            .arg("--bundle")
            .arg(&cfg.bundle)
            .arg("--pid-file")
            .arg(&pid_file);
        if cfg.tty {
            c.arg("--console-socket").arg(&console_path);
        }
        c.arg(&cfg.id);
        let piped_stderr = child_fds.is_none();
        if let Some((i, o, e)) = child_fds.take().map(stdio_of) {
            c.stdin(i).stdout(o).stderr(e);
        } else {
            c.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
        }
        let out = c
            .output()
            .map_err(|e| format!("run {}: {e}", cfg.runtime.display()));
        drop(c);
        let out = match out {
            Ok(o) => o,
            Err(e) => return fail(cfg, status, e),
        };
        if !out.status.success() {
            let fallback = if piped_stderr {
                String::from_utf8_lossy(&out.stderr).into_owned()
            } else {
                String::new()
            };
            return fail(cfg, status, runtime_error(cfg, &fallback));
        }
    }
    if !is_exec {
        if let Some(l) = &console {
            match recv_console(l) {
                Ok(fd) => {
                    let (rows, cols) = cfg.console_size.unwrap_or((24, 80));
                    set_winsize(fd.as_raw_fd(), rows, cols);
                    master = Some(File::from(fd))
                }
                Err(e) => return fail(cfg, status, e),
            }
        }
        if cfg.loopback_up {
            match read_pid(&pid_file) {
                Ok(init_pid) => {
                    if let Err(e) = loopback_up(init_pid) {
                        eprintln!("barge monitor {}: bringing up lo: {e}", cfg.id);
                    }
                }
                Err(e) => return fail(cfg, status, e),
            }
        }
    }
    report(status, "created");

    // Wait for the expected attach clients.
    let mut clients: Vec<AttachClient> = Vec::new();
    if cfg.expected_attaches > 0 {
        attach_listener
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while clients.len() < cfg.expected_attaches && Instant::now() < deadline {
            match attach_listener.accept() {
                Ok((s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
                    clients.push(AttachClient {
                        stream: s,
                        read_open: true,
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    if let Some(g) = gate {
        if let Err(msg) = read_gate(g) {
            return fail(cfg, status, msg);
        }
    }

    if is_exec {
        let mut c = build_exec(child_fds.take().map(stdio_of));
        let out = c.output();
        drop(c);
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                let message = runtime_error(cfg, &String::from_utf8_lossy(&o.stderr));
                tell_clients(
                    cfg,
                    &mut clients,
                    &format!("OCI runtime exec failed: {message}"),
                );
                return fail(cfg, status, message);
            }
            Err(e) => return fail(cfg, status, format!("run {}: {e}", cfg.runtime.display())),
        }
        if let Some(l) = &console {
            match recv_console(l) {
                Ok(fd) => {
                    let (rows, cols) = cfg.console_size.unwrap_or((24, 80));
                    set_winsize(fd.as_raw_fd(), rows, cols);
                    master = Some(File::from(fd))
                }
                Err(e) => return fail(cfg, status, e),
            }
        }
    } else if let Some(rt) = embedded(cfg) {
        if let Err(e) = (rt.start)(&cfg.runtime_root, &cfg.id) {
            return fail(cfg, status, e);
        }
    } else {
        let out = runtime_cmd(cfg)
            .arg("start")
            .arg(&cfg.id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return fail(
                    cfg,
                    status,
                    runtime_error(cfg, &String::from_utf8_lossy(&o.stderr)),
                )
            }
            Err(e) => return fail(cfg, status, format!("run {}: {e}", cfg.runtime.display())),
        }
    }
    let pid = match read_pid(&pid_file) {
        Ok(p) => p,
        Err(e) => return fail(cfg, status, e),
    };
    if let (Some(m), None) = (&master, cfg.console_size) {
        set_winsize(m.as_raw_fd(), 24, 80);
    }
    wait_exec_done(pid, cfg.init);
    // A pidfd names the process itself, not its number: signals sent through it (`kill` on
    // the control socket) can never reach a process that reused the pid. Opened while the
    // process cannot have been reaped (only this subreaper reaps it, and not yet).
    let pidfd = pidfd_open(pid);
    report(status, &format!("started {pid}"));
    *status = None;
    let _ = std::fs::remove_file(&console_path);

    let mut log = match &cfg.log {
        Some(l) => LogWriter::open(&l.path, l.max_size, l.max_files).ok(),
        None => None,
    };
    let mut bufs: HashMap<u8, LineBuffer> = HashMap::new();
    let mut controls: Vec<(UnixStream, Vec<u8>)> = Vec::new();
    attach_listener
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    control_listener
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    let mut exit_status: Option<i64> = None;
    let mut drain_deadline: Option<Instant> = None;
    let mut buf = vec![0u8; 32 * 1024];

    loop {
        // Reap children.
        loop {
            let mut st: libc::c_int = 0;
            // SAFETY: st is a valid out-pointer.
            let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
            if r <= 0 {
                break;
            }
            if r == pid {
                let code = if libc::WIFEXITED(st) {
                    libc::WEXITSTATUS(st) as i64
                } else if libc::WIFSIGNALED(st) {
                    128 + libc::WTERMSIG(st) as i64
                } else {
                    255
                };
                exit_status = Some(code);
                drain_deadline = Some(Instant::now() + Duration::from_secs(2));
            }
        }
        let outputs_open = out_r.is_some() || err_r.is_some() || master.is_some();
        if exit_status.is_some()
            && (!outputs_open || drain_deadline.is_some_and(|d| Instant::now() >= d))
        {
            break;
        }
        // Build the poll set.
        let mut pfds: Vec<libc::pollfd> = Vec::new();
        let mut kinds: Vec<(u8, usize)> = Vec::new(); // kind, index
        let mut add = |fd: RawFd, kind: u8, idx: usize, pfds: &mut Vec<libc::pollfd>| {
            pfds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
            kinds.push((kind, idx));
        };
        add(sfd.as_raw_fd(), 0, 0, &mut pfds);
        add(attach_listener.as_raw_fd(), 1, 0, &mut pfds);
        add(control_listener.as_raw_fd(), 2, 0, &mut pfds);
        if let Some(f) = &out_r {
            add(f.as_raw_fd(), 3, 1, &mut pfds);
        }
        if let Some(f) = &err_r {
            add(f.as_raw_fd(), 3, 2, &mut pfds);
        }
        if let Some(f) = &master {
            add(f.as_raw_fd(), 4, 0, &mut pfds);
        }
        for (i, c) in clients.iter().enumerate() {
            if c.read_open {
                add(c.stream.as_raw_fd(), 5, i, &mut pfds);
            }
        }
        for (i, c) in controls.iter().enumerate() {
            add(c.0.as_raw_fd(), 6, i, &mut pfds);
        }
        let timeout = if exit_status.is_some() { 50 } else { 1000 };
        // SAFETY: pfds is a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) };
        if n <= 0 {
            continue;
        }
        let mut drop_clients: Vec<usize> = Vec::new();
        let mut drop_controls: Vec<usize> = Vec::new();
        for (p, &(kind, idx)) in pfds.iter().zip(kinds.iter()) {
            if p.revents == 0 {
                continue;
            }
            match kind {
                0 => {
                    let mut si = [0u8; 128];
                    // SAFETY: reading a signalfd_siginfo into a 128-byte buffer.
                    while unsafe { libc::read(sfd.as_raw_fd(), si.as_mut_ptr().cast(), si.len()) }
                        > 0
                    {}
                }
                1 => {
                    while let Ok((s, _)) = attach_listener.accept() {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
                        clients.push(AttachClient {
                            stream: s,
                            read_open: true,
                        });
                    }
                }
                2 => {
                    while let Ok((s, _)) = control_listener.accept() {
                        let _ = s.set_nonblocking(false);
                        controls.push((s, Vec::new()));
                    }
                }
                3 | 4 => {
                    let file = match (kind, idx) {
                        (3, 1) => out_r.as_mut(),
                        (3, _) => err_r.as_mut(),
                        _ => master.as_mut(),
                    };
                    let Some(file) = file else { continue };
                    let r = file.read(&mut buf);
                    let stream_no: u8 = if kind == 4 { 1 } else { idx as u8 };
                    match r {
                        Ok(0) | Err(_) => match (kind, idx) {
                            (3, 1) => out_r = None,
                            (3, _) => err_r = None,
                            _ => master = None,
                        },
                        Ok(k) => {
                            let data = &buf[..k];
                            if let Some(w) = log.as_mut() {
                                let name = if stream_no == 2 { "stderr" } else { "stdout" };
                                for msg in bufs.entry(stream_no).or_default().push(data) {
                                    let _ = w.write_entry(name, chrono::Utc::now(), &msg);
                                }
                            }
                            let fr = frame(stream_no, data);
                            for (i, c) in clients.iter_mut().enumerate() {
                                if c.stream.write_all(&fr).is_err() {
                                    drop_clients.push(i);
                                }
                            }
                        }
                    }
                }
                5 => {
                    let Some(c) = clients.get_mut(idx) else {
                        continue;
                    };
                    match c.stream.read(&mut buf) {
                        Ok(0) => {
                            c.read_open = false;
                            if cfg.stdin_once {
                                stdin_w = None;
                                if cfg.open_stdin {
                                    // A terminal has no "close": send EOF (^D) like a user would.
                                    if let Some(m) = master.as_mut() {
                                        let _ = m.write_all(&[4]);
                                    }
                                }
                            }
                        }
                        Ok(k) => {
                            if let Some(w) = stdin_w.as_mut() {
                                if w.write_all(&buf[..k]).is_err() {
                                    stdin_w = None;
                                }
                            } else if let Some(m) = master.as_mut() {
                                let _ = m.write_all(&buf[..k]);
                            }
                        }
                        Err(_) => {
                            c.read_open = false;
                            drop_clients.push(idx);
                        }
                    }
                }
                6 => {
                    let Some((s, pending)) = controls.get_mut(idx) else {
                        continue;
                    };
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => drop_controls.push(idx),
                        Ok(k) => {
                            pending.extend_from_slice(&buf[..k]);
                            while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                                let line: Vec<u8> = pending.drain(..=pos).collect();
                                let line = String::from_utf8_lossy(&line);
                                let parts: Vec<&str> = line.split_whitespace().collect();
                                match parts.as_slice() {
                                    ["resize", h, w] => {
                                        if let (Ok(h), Ok(w), Some(m)) =
                                            (h.parse::<u16>(), w.parse::<u16>(), master.as_ref())
                                        {
                                            set_winsize(m.as_raw_fd(), h, w);
                                        }
                                        let _ = s.write_all(b"ok\n");
                                    }
                                    // A requester that gave up waiting (its end is closed)
                                    // was told the signal failed: not sent late.
                                    ["kill", _] if peer_gone(s) => {}
                                    ["kill", sig] => {
                                        let reply = match sig.parse::<i32>() {
                                            Ok(sig) if exit_status.is_none() => {
                                                match signal_child(pidfd.as_ref(), pid, sig) {
                                                    Ok(()) => "ok\n".to_string(),
                                                    Err(e) => format!(
                                                        "err {}\n",
                                                        e.raw_os_error().unwrap_or(libc::EIO)
                                                    ),
                                                }
                                            }
                                            // Reaped: the pid may already be someone else's.
                                            Ok(_) => format!("err {}\n", libc::ESRCH),
                                            Err(_) => format!("err {}\n", libc::EINVAL),
                                        };
                                        let _ = s.write_all(reply.as_bytes());
                                    }
                                    _ => {
                                        let _ = s.write_all(b"err unknown command\n");
                                    }
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        drop_clients.sort_unstable();
        drop_clients.dedup();
        for i in drop_clients.into_iter().rev() {
            clients.remove(i);
        }
        drop_controls.sort_unstable();
        drop_controls.dedup();
        for i in drop_controls.into_iter().rev() {
            controls.remove(i);
        }
    }

    // Flush partial lines.
    if let Some(w) = log.as_mut() {
        for (stream_no, b) in bufs.iter_mut() {
            if let Some(rest) = b.flush() {
                let _ = w.write_entry(
                    if *stream_no == 2 { "stderr" } else { "stdout" },
                    chrono::Utc::now(),
                    &rest,
                );
            }
        }
    }
    let oom_killed = cfg
        .memory_cgroup
        .as_deref()
        .map(|cg| oom_count(cg) > 0)
        .unwrap_or(false);
    let mut code = exit_status.unwrap_or(255);
    if oom_killed && code == 128 + libc::SIGKILL as i64 {
        code = 137;
    }
    write_exit(
        cfg,
        &ExitRecord {
            exit_code: code,
            oom_killed,
            finished_at: now(),
            error: String::new(),
            pid: pid as i64,
        },
    );
    drop(clients);
    // Exec monitors never have `in_process`, so this is about the container's init.
    let deleted = embedded(cfg).is_some() && exit_status.is_some() && delete_exited(cfg);
    if !is_exec && !deleted {
        runtime_delete(cfg);
    }
    let _ = std::fs::remove_file(&cfg.attach_socket);
    let _ = std::fs::remove_file(&cfg.control_socket);
    drop(controls);
    Ok(())
}
