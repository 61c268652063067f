//! One monitor process kept started ahead of need ("warm"), so a container start does not wait
//! for the monitor's `exec` of this (large) binary, its dynamic loading and relocation, and the
//! Rust runtime's start-up — together about half of the monitor's time before it can create the
//! container (see docs/benchmarks.md, "Start path").
//!
//! A warm monitor is `barge monitor --warm`: started with a pipe on stdin and the status pipe on
//! stdout, it blocks reading one line from stdin, the path of its `monitor.json`, and from then
//! on is exactly a monitor started with that path (the rest of stdin is the start gate). It is
//! single-threaded and has created nothing yet, which libcontainer's clone requires.
//!
//! **Invariants:** at most one warm monitor exists per engine; it is taken by one start only
//! (under [`Warm`]'s mutex); a start never waits for a warm monitor to be made — with none
//! ready it spawns one cold, as before. The refill runs on its own short-lived thread after the
//! take. A warm monitor whose daemon goes away reads EOF and exits; one that died meanwhile
//! (killed by hand) is noticed on take and replaced by a cold spawn.

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

/// Bytes of blank argument a warm monitor is started with, overwritten by its real command line
/// (the monitor.json path is at most ~100 bytes: the sockets beside it must fit `sun_path`).
const WARM_ARGV_ROOM: usize = 512;

/// A monitor spawned with `--warm`, waiting for its configuration's path.
pub(crate) struct WarmMonitor {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
}

/// The engine's slot for one warm monitor.
#[derive(Default)]
pub(crate) struct Warm {
    slot: Mutex<Option<WarmMonitor>>,
}

/// A monitor handed its configuration: the child, the status pipe (its stdout) and, when the
/// start is gated, the gate (its stdin).
pub(crate) struct Spawned {
    pub child: Child,
    pub stdout: ChildStdout,
    pub gate: Option<ChildStdin>,
}

/// `barge monitor <args>` with the monitor's standard streams: stdin piped when `gate` (the start
/// gate, or the warm monitor's input), stdout piped (the status pipe), stderr to `log`.
///
/// No `pre_exec` (the monitor calls `setsid` itself): without one, std spawns with posix_spawn
/// (a vfork-like clone) instead of forking the daemon, whose page tables would otherwise be
/// copied for every container start.
pub(crate) fn monitor_command(
    exe: &Path,
    args: &[&std::ffi::OsStr],
    gate: bool,
    log: Option<std::fs::File>,
) -> Command {
    let mut cmd = Command::new(exe);
    cmd.arg("monitor")
        .args(args)
        .stdin(if gate { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(match log {
            Some(f) => Stdio::from(f),
            None => Stdio::null(),
        });
    cmd
}

impl Warm {
    /// Hands `config_path` to the warm monitor, if one is ready and alive. `gate`: keep its stdin
    /// as the start gate (else it is closed, as a cold monitor's stdin is /dev/null).
    pub(crate) fn take(&self, config_path: &Path, gate: bool) -> Option<Spawned> {
        let mut w = self.slot.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        if !matches!(w.child.try_wait(), Ok(None)) {
            let _ = w.child.wait();
            return None;
        }
        let mut line = config_path.as_os_str().as_encoded_bytes().to_vec();
        line.push(b'\n');
        if line[..line.len() - 1].contains(&b'\n') || w.stdin.write_all(&line).is_err() {
            let _ = w.child.kill();
            let _ = w.child.wait();
            return None;
        }
        Some(Spawned {
            child: w.child,
            stdout: w.stdout,
            gate: gate.then_some(w.stdin),
        })
    }

    /// Starts a warm monitor on a new thread unless one is ready. Best effort: a failed spawn
    /// only means the next start spawns cold.
    pub(crate) fn refill(self: &Arc<Self>, exe: &Path) {
        if self
            .slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            return;
        }
        let this = self.clone();
        let exe = exe.to_path_buf();
        let _ = std::thread::Builder::new()
            .name("barge-warm-mon".into())
            .spawn(move || {
                // The blank argument is room for the command line the monitor takes on once it
                // knows its container (`monitor::sys::rewrite_cmdline`).
                let room = " ".repeat(WARM_ARGV_ROOM);
                let cmd =
                    monitor_command(&exe, &["--warm".as_ref(), room.as_ref()], true, None).spawn();
                let Ok(mut child) = cmd else {
                    return;
                };
                let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                };
                let mut slot = this.slot.lock().unwrap_or_else(|p| p.into_inner());
                if slot.is_none() {
                    *slot = Some(WarmMonitor {
                        child,
                        stdin,
                        stdout,
                    });
                } else {
                    drop(slot);
                    // Another refill won the race: this one goes (EOF on its stdin).
                    drop(stdin);
                    let _ = child.wait();
                }
            });
    }
}

impl Drop for Warm {
    fn drop(&mut self) {
        if let Some(mut w) = self
            .slot
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            // EOF on its stdin ends it; reap it so no zombie outlives the engine.
            drop(w.stdin);
            let _ = w.child.wait();
        }
    }
}
