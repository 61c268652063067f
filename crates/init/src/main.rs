//! `barge-init`: a minimal init for containers (`docker run --init`), in the spirit of tini.
//!
//! Usage: `barge-init [--] cmd [args...]`. It runs `cmd` as its child in a new process group
//! (foreground of the controlling terminal, if any), forwards every catchable signal it receives to
//! that process group, reaps all zombies (it is PID 1 in the container), and exits with the
//! child's status: the exit code, or `128 + N` when the child was killed by signal `N`.
//!
//! Run as `pause` (any path whose file name is `pause`, e.g. bind-mounted on `/pause`) or as
//! `barge-init --pause`, it is Kubernetes' pause instead: the PID 1 of a pod whose containers
//! share one PID namespace (`shareProcessNamespace`), which reaps the zombies re-parented to it
//! and exits 0 on SIGINT/SIGTERM, as `build/pause/linux/pause.c` does.
//!
//! It must run in images without a libc, so it is built statically:
//! `cargo rustc -p barge-init --release -- -C target-feature=+crt-static`.

use std::ffi::CString;

fn main() {
    let argv0 = std::env::args().next().unwrap_or_default();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if std::path::Path::new(&argv0).file_name() == Some(std::ffi::OsStr::new("pause"))
        || args.first().map(String::as_str) == Some("--pause")
    {
        std::process::exit(pause());
    }
    if args.first().map(String::as_str) == Some("--") {
        args.remove(0);
    }
    if args.is_empty() {
        eprintln!("barge-init: usage: barge-init [--] program [args...]");
        std::process::exit(1);
    }
    let c_args: Vec<CString> = match args.iter().map(|a| CString::new(a.as_bytes())).collect() {
        Ok(v) => v,
        Err(_) => {
            eprintln!("barge-init: argument contains a NUL byte");
            std::process::exit(1);
        }
    };
    std::process::exit(run(&c_args));
}

fn run(args: &[CString]) -> i32 {
    let mut all: libc::sigset_t = empty_set();
    let mut old: libc::sigset_t = empty_set();
    // SAFETY: `all` and `old` are valid sigset_t values owned by this frame.
    unsafe {
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // SAFETY: fork in a single-threaded process; the child only calls async-signal-safe functions
    // (setpgid, tcsetpgrp, sigprocmask, execvp, write, _exit) before exec.
    let child = unsafe { libc::fork() };
    if child < 0 {
        eprintln!("barge-init: fork: {}", std::io::Error::last_os_error());
        return 1;
    }
    if child == 0 {
        let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        // SAFETY: in the forked child: argv is a NULL-terminated array of pointers into `args`,
        // which stay alive until exec; the other calls take plain integers / a valid sigset.
        unsafe {
            libc::setpgid(0, 0);
            // Become the terminal's foreground process group if stdin is a tty (ignore errors).
            libc::signal(libc::SIGTTOU, libc::SIG_IGN);
            if libc::isatty(0) == 1 {
                libc::tcsetpgrp(0, libc::getpid());
            }
            libc::signal(libc::SIGTTOU, libc::SIG_DFL);
            libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            libc::execvp(argv[0], argv.as_ptr());
            let err = *libc::__errno_location();
            let msg = b"barge-init: exec failed\n";
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(if err == libc::ENOENT { 127 } else { 126 });
        }
    }
    // Parent: put the child in its own group also from this side (avoids a race with kill(-pgid)).
    // SAFETY: plain syscall on our own child's pid.
    unsafe {
        libc::setpgid(child, child);
    }
    loop {
        let timeout = libc::timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        // SAFETY: zeroed siginfo_t is a valid out-parameter; `all` is a valid set.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to the set, siginfo and timeout living in this frame.
        let sig = unsafe { libc::sigtimedwait(&all, &mut info, &timeout) };
        if sig > 0 && sig != libc::SIGCHLD {
            forward(child, sig);
        }
        // Reap everything that exited.
        loop {
            let mut status: libc::c_int = 0;
            // SAFETY: status is a valid out-pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == child {
                let code = if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else if libc::WIFSIGNALED(status) {
                    128 + libc::WTERMSIG(status)
                } else {
                    1
                };
                // Take the rest of the group down with the main child, then reap what we can.
                return code;
            }
        }
    }
}

/// Kubernetes' pause: waits for signals, reaping every zombie on SIGCHLD, until SIGINT or
/// SIGTERM (exit 0, with pause's message). Other signals are ignored.
fn pause() -> i32 {
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != 1 {
        eprintln!("Warning: pause should be the first process");
    }
    let mut all: libc::sigset_t = empty_set();
    // SAFETY: `all` is a valid sigset_t owned by this frame.
    unsafe {
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
    }
    loop {
        // SAFETY: zeroed siginfo_t is a valid out-parameter; `all` is a valid set.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to the set and siginfo living in this frame.
        let sig = unsafe { libc::sigwaitinfo(&all, &mut info) };
        match sig {
            libc::SIGINT | libc::SIGTERM => {
                println!("Shutting down, got signal");
                return 0;
            }
            libc::SIGCHLD => loop {
                // SAFETY: a null status pointer is allowed.
                let pid = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
                if pid <= 0 {
                    break;
                }
            },
            _ => {}
        }
    }
}

/// Sends `sig` to the child's process group, falling back to the child alone.
fn forward(child: libc::pid_t, sig: libc::c_int) {
    // SAFETY: kill with our child's pid / pgid and a signal number we received.
    unsafe {
        if libc::kill(-child, sig) != 0 {
            libc::kill(child, sig);
        }
    }
}

fn empty_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a local.
    unsafe {
        libc::sigemptyset(&mut set);
    }
    set
}
