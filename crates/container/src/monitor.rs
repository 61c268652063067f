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
//!
//! This file holds the config, the exit record, `main` and the event loop (`run`); the OCI
//! runtime's command line, error text and delete are in `runtime`, the kernel plumbing (fds,
//! sockets, pidfds, signals, pty size, OOM counter) in `sys`.

use barge_stdx::stdcopy::frame;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::logs::{LineBuffer, LogWriter};

mod runtime;
mod sys;

use runtime::{delete_exited, runtime_cmd, runtime_delete, runtime_error, with_child_stdio};
use sys::{
    bind, loopback_up, oom_count, peer_gone, pidfd_open, pipe, read_pid, recv_console, set_winsize,
    signal_child, wait_exec_done,
};

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
    /// The container's cgroup path in each hierarchy (`/barge/<id>` when absent, or
    /// `/<CgroupParent>/<id>`), removed by the by-hand delete.
    #[serde(default)]
    pub cgroups_path: Option<String>,
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
    // Detach from the daemon's session and process group first thing (the daemon spawns us
    // without a `pre_exec` so that it does not fork): signals to the daemon's group or a
    // hang-up of its terminal must not reach the container's monitor.
    // SAFETY: setsid has no memory effects; failure (already a group leader) is harmless.
    unsafe {
        libc::setsid();
    }
    if let Some(rt) = runtime {
        let _ = EMBEDDED.set(rt);
    }
    let Some(arg) = args.first() else {
        eprintln!("usage: barge monitor <config.json>");
        return 2;
    };
    // Warm (containers/warm.rs): started ahead of need, the path comes as stdin's first line.
    let warm = arg == "--warm";
    let path = if warm {
        match read_line_unbuffered(0) {
            Some(p) if !p.is_empty() => p,
            // EOF: the engine went away (or dropped this warm monitor).
            _ => return 0,
        }
    } else {
        arg.clone()
    };
    let cfg: MonitorConfig = match std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("barge monitor: cannot read {path}: {e}");
            return 2;
        }
    };
    if warm {
        // A cold monitor's stderr is `monitor.log`, opened by the engine at its spawn.
        if let Ok(log) = File::options()
            .append(true)
            .create(true)
            .open(cfg.state_dir.join("monitor.log"))
        {
            // SAFETY: dup2 of a valid fd onto stderr.
            unsafe {
                libc::dup2(log.as_raw_fd(), 2);
            }
        }
        // Named as a cold monitor is, so `ps` (and anything that finds a container's monitor
        // by its argv) sees which container it serves.
        let exe = std::env::args().next().unwrap_or_else(|| "barge".into());
        if !sys::rewrite_cmdline(&[&exe, "monitor", &path]) {
            eprintln!("barge monitor: could not set the process's command line to {path}");
        }
    }
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

/// One line from `fd`, read a byte at a time so nothing after its newline is consumed (the rest
/// of a warm monitor's stdin is its start gate). `None` on EOF before a newline or an error.
fn read_line_unbuffered(fd: RawFd) -> Option<String> {
    let mut line = Vec::new();
    loop {
        let mut b = 0u8;
        // SAFETY: reads at most one byte into a local.
        let n = unsafe { libc::read(fd, (&mut b as *mut u8).cast(), 1) };
        match n {
            1 if b == b'\n' => return String::from_utf8(line).ok(),
            1 => line.push(b),
            0 => return None,
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => return None,
        }
    }
}

fn report(status: &mut Option<File>, line: &str) {
    if let Some(s) = status.as_mut() {
        let _ = s.write_all(format!("{line}\n").as_bytes());
    }
}

fn write_exit(cfg: &MonitorConfig, rec: &ExitRecord) {
    let path = cfg.state_dir.join("exit.json");
    let data = serde_json::to_vec(rec).expect("exit record serializes");
    // The engine learns the exit from this file: a failure goes to monitor.log (stderr).
    // Runtime state in the exec root: atomic for the engine's reader, not durable (no use
    // after a reboot, when the process it describes is gone anyway).
    if let Err(e) = barge_stdx::fs::write_replace(&path, &data) {
        eprintln!("barge monitor: write {}: {e}", path.display());
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn fail(cfg: &MonitorConfig, status: &mut Option<File>, message: String) -> Result<(), String> {
    write_exit(
        cfg,
        &ExitRecord {
            // dockerd: 126 for an exec that fails to start (`ContainerExecStart`); a
            // container's start failure by its cause (127 not found, 126 not executable).
            exit_code: if cfg.exec_id.is_some() {
                126
            } else {
                start_failure_exit_code(&message)
            },
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

struct AttachClient {
    stream: UnixStream,
    read_open: bool,
}

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
    let mut lo_job = None;
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
                // Joined before the runtime's `start`; meanwhile the engine hears `created`
                // and its attach clients connect.
                Ok(init_pid) => match loopback_up(init_pid) {
                    Ok(job) => lo_job = Some(job),
                    Err(e) => eprintln!("barge monitor {}: bringing up lo: {e}", cfg.id),
                },
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
        while clients.len() < cfg.expected_attaches {
            // Woken by the connection itself (a sleep-and-retry loop cost up to its whole
            // period on every `docker run`, whose client attaches right after `created`).
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if !sys::wait_readable(&attach_listener, left) {
                continue;
            }
            // An error is a connection that went away between poll and accept (EAGAIN).
            if let Ok((s, _)) = attach_listener.accept() {
                let _ = s.set_nonblocking(false);
                let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
                clients.push(AttachClient {
                    stream: s,
                    read_open: true,
                });
            }
        }
    }

    if let Some(g) = gate {
        if let Err(msg) = read_gate(g) {
            return fail(cfg, status, msg);
        }
    }
    if let Some(Err(e)) = lo_job.take().map(|j| j.join()) {
        eprintln!("barge monitor {}: bringing up lo: {e}", cfg.id);
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
