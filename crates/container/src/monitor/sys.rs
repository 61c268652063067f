//! Kernel plumbing of the monitor: pipes, the console socket (pty master over
//! `SCM_RIGHTS`), Unix sockets, pid files, the netns loopback, waiting for the runtime's init
//! stub to exec, pidfds and signals, the pty size, the cgroup OOM counter.
//!
//! **Invariants:** every fd made here is close-on-exec and owned (`OwnedFd`) as soon as it
//! exists; signals reach the monitored process only through its pidfd, or its pid while it
//! is this process's unreaped descendant ([`signal_child`]); the monitor's own thread never
//! changes namespace ([`loopback_up`] enters it on a short-lived thread).

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

pub(super) fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a valid 2-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: pipe2 returned two fresh fds that we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Receives the pty master runc sends over the console socket.
pub(super) fn recv_console(listener: &UnixListener) -> Result<OwnedFd, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                wait_readable(listener, deadline.saturating_duration_since(Instant::now()));
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

pub(super) fn bind(path: &Path) -> Result<UnixListener, String> {
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path).map_err(|e| format!("bind {}: {e}", path.display()))
}

pub(super) fn read_pid(path: &Path) -> Result<i32, String> {
    let s = std::fs::read_to_string(path)
        .map_err(|e| format!("read pid file {}: {e}", path.display()))?;
    s.trim()
        .parse()
        .map_err(|_| format!("bad pid file {}", path.display()))
}

/// Starts setting `IFF_UP` on `lo` in the network namespace of `pid`, on a dedicated thread that
/// enters the namespace and exits afterwards (the monitor's own thread never changes namespace).
/// Join the handle for the outcome; the caller goes on meanwhile (its `created` report and the
/// attach clients), as the container's process runs only after the runtime's `start`.
pub(super) fn loopback_up(pid: i32) -> Result<LoopbackUp, String> {
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
    Ok(LoopbackUp(handle))
}

/// [`loopback_up`] in flight.
pub(super) struct LoopbackUp(std::thread::JoinHandle<Result<(), String>>);

impl LoopbackUp {
    /// Waits for the thread; its error, or a panic's.
    pub(super) fn join(self) -> Result<(), String> {
        self.0
            .join()
            .map_err(|_| "loopback thread panicked".to_string())?
    }
}

/// Waits (briefly) until `pid` is no longer the runtime's `init` stub, i.e. the user's program has
/// been exec'd, so that signals sent right after "started" reach the program and not the runtime.
pub(super) fn wait_exec_done(pid: i32, init: bool) {
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
                if init_ready(pid) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1))
            }
            _ => return,
        }
    }
}

/// Whether barge-init (`pid`) has blocked its signals, so one sent now is forwarded. Its
/// `SigBlk` shows them only until it waits: inside `sigtimedwait(2)` the kernel unblocks the
/// waited set (`blocked &= ~set`, the mask kept in `real_blocked`), so `SigBlk` reads 0 for the
/// rest of its life. It blocks before it forks, so having a child (or sleeping in
/// `do_sigtimedwait`) means it is ready too.
fn init_ready(pid: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let blocked = status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .is_none_or(|v| !v.trim().trim_start_matches('0').is_empty());
    blocked
        || std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .is_ok_and(|c| !c.trim().is_empty())
        || std::fs::read_to_string(format!("/proc/{pid}/wchan"))
            .is_ok_and(|w| w.contains("sigtimedwait"))
}

/// Waits until `fd` is readable (for a listener: a connection is pending) or `timeout` passes.
/// Returns whether it became readable. EINTR counts as "not yet" (the caller loops).
pub(super) fn wait_readable(fd: &impl AsRawFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd; the kernel writes only its `revents`.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    n > 0 && p.revents & libc::POLLIN != 0
}

/// Rewrites this process's command line in place (the `setproctitle` technique of nginx and
/// PostgreSQL): `args`, NUL-separated, over the argument area the kernel set up at `exec`, the
/// rest filled with NULs. A warm monitor is started with a long blank argument for this, so that
/// once it knows its container it reads as a cold monitor does (`barge monitor
/// <exec-root>/c/<id>/monitor.json`) to `ps` and to whatever finds monitors by their argv.
/// (`prctl(PR_SET_MM_ARG_START)` would allow any length but needs CAP_SYS_RESOURCE, which
/// engines in containers often lack.) Returns false, changing nothing, when `args` do not fit.
pub(super) fn rewrite_cmdline(args: &[&str]) -> bool {
    // /proc/self/stat fields 48 and 49 (after the parenthesised command name): arg_start and
    // arg_end, see proc_pid_stat(5).
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return false;
    };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return false;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<usize>().ok());
    let (Some(start), Some(end)) = (field(48), field(49)) else {
        return false;
    };
    let mut buf: Vec<u8> = Vec::new();
    for a in args {
        buf.extend_from_slice(a.as_bytes());
        buf.push(0);
    }
    if start == 0 || end <= start || buf.len() > end - start {
        return false;
    }
    buf.resize(end - start, 0);
    // SAFETY: [start, end) is this process's own argument area, mapped writable on its stack by
    // the kernel at exec; no Rust value refers to it (std copies the arguments on each
    // `env::args` call), and exactly `end - start` bytes are written.
    unsafe {
        std::ptr::copy_nonoverlapping(buf.as_ptr(), start as *mut u8, buf.len());
    }
    true
}

/// Whether the other end of `s` is closed (`POLLRDHUP`), without reading.
pub(super) fn peer_gone(s: &UnixStream) -> bool {
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
pub(super) fn pidfd_open(pid: i32) -> Option<OwnedFd> {
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
pub(super) fn signal_child(pidfd: Option<&OwnedFd>, pid: i32, sig: i32) -> std::io::Result<()> {
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

pub(super) fn set_winsize(fd: RawFd, rows: u16, cols: u16) {
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

pub(super) fn oom_count(cg: &Path) -> u64 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_init_with_a_child_counts_as_ready_though_sigblk_reads_zero() {
        // A shell waiting for its child is past the point barge-init blocks at (it has a
        // child); a plain `sleep` with no child, no blocked signals and not in sigtimedwait is
        // not.
        let mut sh = std::process::Command::new("sh")
            .args(["-c", "sleep 2 & wait"])
            .spawn()
            .unwrap();
        let mut sleep = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut ready_sh = false;
        while !ready_sh && Instant::now() < deadline {
            ready_sh = init_ready(sh.id() as i32);
            std::thread::sleep(Duration::from_millis(10));
        }
        let ready_sleep = init_ready(sleep.id() as i32);
        for c in [&mut sh, &mut sleep] {
            let _ = c.kill();
            let _ = c.wait();
        }
        assert!(ready_sh, "a process with a child");
        assert!(!ready_sleep, "a childless sleep that blocks nothing");
    }
}
