//! Restart policies (`--restart no|on-failure[:N]|always|unless-stopped`), Docker's rules:
//!
//! - after an exit the user did not ask for (not `stop`, not `kill` with SIGKILL or the stop
//!   signal), `always` and `unless-stopped` restart, `on-failure` restarts on a non-zero exit
//!   code while fewer than N restarts happened (N = 0: no limit);
//! - each automatic restart increments `RestartCount` (a user's `start` resets it) and waits a
//!   back-off first: 100 ms, doubled after every exit, capped at 1 minute, and back to 100 ms
//!   when the container had run for at least 10 s; the status is `restarting` meanwhile;
//! - when the engine opens (daemon start), `always` containers and `unless-stopped` ones the
//!   user did not stop are started again (as a user's start would).
//!
//! The pure decisions are functions here (unit-tested); the supervisor part is a small
//! `impl Containers` block: [`Containers::restart_decision`] is called by `handle_exit` with
//! the lock held, [`Containers::schedule_restart`] after it released it.

use std::time::{Duration, Instant};

use crate::containers::{Containers, Inner};
use crate::*;

/// First back-off delay.
pub(crate) const BACKOFF_START: Duration = Duration::from_millis(100);
/// Back-off cap.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A run at least this long resets the back-off.
pub(crate) const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);

/// A parsed restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    No,
    Always,
    UnlessStopped,
    /// Maximum retry count; 0 = no limit.
    OnFailure(i64),
}

impl Policy {
    /// Parses and validates Docker's `RestartPolicy {Name, MaximumRetryCount}`.
    pub(crate) fn parse(name: &str, max_retries: i64) -> Result<Policy, ContainerError> {
        let bad = |reason: String| ContainerError::InvalidOption {
            field: "restart policy".into(),
            reason,
        };
        let policy = match name {
            "" | "no" => Policy::No,
            "always" => Policy::Always,
            "unless-stopped" => Policy::UnlessStopped,
            "on-failure" => {
                if max_retries < 0 {
                    return Err(bad("maximum retry count cannot be negative".into()));
                }
                return Ok(Policy::OnFailure(max_retries));
            }
            other => {
                return Err(bad(format!(
                    "unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
                )))
            }
        };
        if max_retries != 0 {
            return Err(bad(
                "maximum retry count can only be used with 'on-failure'".into(),
            ));
        }
        Ok(policy)
    }

    /// The policy of a container's options (an invalid stored one counts as `no`).
    pub(crate) fn of(host: &HostOptions) -> Policy {
        Policy::parse(&host.restart_policy, host.restart_max_retries).unwrap_or(Policy::No)
    }

    /// Restart after an exit with `exit_code`, the container having been restarted
    /// `restart_count` times since the user last started it?
    pub(crate) fn should_restart(
        self,
        exit_code: i64,
        manually_stopped: bool,
        restart_count: i64,
    ) -> bool {
        if manually_stopped {
            return false;
        }
        match self {
            Policy::No => false,
            Policy::Always | Policy::UnlessStopped => true,
            Policy::OnFailure(max) => exit_code != 0 && (max == 0 || restart_count < max),
        }
    }

    /// Start this (not running) container when the engine opens?
    pub(crate) fn restart_on_boot(self, manually_stopped: bool) -> bool {
        match self {
            Policy::Always => true,
            Policy::UnlessStopped => !manually_stopped,
            _ => false,
        }
    }
}

/// Validates the restart policy of create options (also against `--rm`).
pub(crate) fn validate(host: &HostOptions) -> Result<(), ContainerError> {
    let policy = Policy::parse(&host.restart_policy, host.restart_max_retries)?;
    if host.auto_remove && policy != Policy::No {
        return Err(ContainerError::InvalidOption {
            field: "restart policy".into(),
            reason: "can't create 'AutoRemove' container with restart policy".into(),
        });
    }
    Ok(())
}

/// The next back-off delay after an exit: `previous` is the last delay (`None` after a user's
/// start), `ran_for` how long the container ran this time.
pub(crate) fn next_backoff(previous: Option<Duration>, ran_for: Duration) -> Duration {
    let previous = if ran_for >= BACKOFF_RESET_AFTER {
        None
    } else {
        previous
    };
    match previous {
        None => BACKOFF_START,
        Some(d) => (d * 2).min(BACKOFF_MAX),
    }
}

/// How long the container ran (RFC 3339 start and finish times; zero if unknown).
fn run_time(started_at: &str, finished_at: &str) -> Duration {
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    match (parse(started_at), parse(finished_at)) {
        (Some(s), Some(f)) => (f - s).to_std().unwrap_or_default(),
        _ => Duration::ZERO,
    }
}

/// Supervisor state of one container (in memory; a restart of the daemon starts afresh).
#[derive(Debug, Default)]
pub(crate) struct RestartState {
    /// Last back-off delay since the user's last start.
    pub(crate) backoff: Option<Duration>,
    /// Bumped to cancel a pending restart.
    pub(crate) generation: u64,
}

impl Containers {
    /// Called by `handle_exit` with the lock held, after the exit was recorded in `c`: if the
    /// policy says so, marks the container `restarting`, counts the restart and returns the
    /// delay to pass to [`Containers::schedule_restart`] once the lock is released.
    pub(crate) fn restart_decision(inner: &mut Inner, c: &mut Container) -> Option<Duration> {
        let policy = Policy::of(&c.options.host);
        if !policy.should_restart(
            c.state.exit_code,
            c.has_been_manually_stopped,
            c.restart_count,
        ) {
            return None;
        }
        let st = inner.restart.entry(c.id.clone()).or_default();
        let delay = next_backoff(
            st.backoff,
            run_time(&c.state.started_at, &c.state.finished_at),
        );
        st.backoff = Some(delay);
        c.restart_count += 1;
        c.state.status = Status::Restarting;
        Some(delay)
    }

    /// Cancels a pending automatic restart (the user stopped, started or removed the container).
    pub(crate) fn cancel_restart(inner: &mut Inner, id: &str) {
        inner.restart.entry(id.to_string()).or_default().generation += 1;
    }

    /// A user's start: fresh back-off, restart count and manual-stop flag.
    pub(crate) fn reset_restart(inner: &mut Inner, c: &mut Container) {
        Self::cancel_restart(inner, &c.id);
        if let Some(st) = inner.restart.get_mut(&c.id) {
            st.backoff = None;
        }
        c.restart_count = 0;
        c.has_been_manually_stopped = false;
    }

    /// Starts the container again after `delay`, unless the restart is cancelled meanwhile
    /// or the container is no longer `restarting`.
    pub(crate) fn schedule_restart(&self, id: &str, delay: Duration) {
        let generation = {
            let mut inner = self.lock();
            inner.restart.entry(id.to_string()).or_default().generation
        };
        let me = self.me.clone();
        let id = id.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("restart-{}", &id[..12.min(id.len())]))
            .spawn(move || {
                let deadline = Instant::now() + delay;
                let Some(this) = me.upgrade() else { return };
                let mut inner = this.lock();
                loop {
                    let current = inner.restart.get(&id).map(|s| s.generation);
                    let restarting = inner
                        .containers
                        .get(&id)
                        .is_some_and(|c| c.state.status == Status::Restarting);
                    if current != Some(generation) || !restarting {
                        return;
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    inner = this
                        .cond
                        .wait_timeout(inner, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                drop(inner);
                this.start_auto(&id, false);
            });
        if let Err(e) = spawned {
            tracing::error!("cannot spawn restart thread: {e}");
        }
    }

    /// Starts a container on the engine's own initiative (restart policy; daemon start-up with
    /// `reset`, which then behaves as a user's start). Emits [`ContainerEvent::Restarted`].
    pub(crate) fn start_auto(&self, id: &str, reset: bool) {
        let c = {
            let mut inner = self.lock();
            if inner.starting.contains(id) {
                return;
            }
            let Some(mut c) = inner.containers.get(id).cloned() else {
                return;
            };
            if matches!(c.state.status, Status::Running | Status::Paused) {
                return;
            }
            if reset {
                Self::reset_restart(&mut inner, &mut c);
                inner.containers.insert(c.id.clone(), c.clone());
            }
            inner.starting.insert(id.to_string());
            let generation = inner.restart.get(id).map(|s| s.generation);
            (c, generation)
        };
        let (c, generation) = c;
        let res = self.start_inner(&c, 0, &mut |_| {});
        let mut inner = self.lock();
        inner.starting.remove(id);
        // The user stopped or removed it while it was starting: stop what we started.
        let cancelled = inner.restart.get(id).map(|s| s.generation) != generation;
        if let Err(e) = &res {
            tracing::warn!(id, "automatic start failed: {e}");
            if let Some(rec) = inner.containers.get_mut(id) {
                if rec.state.status == Status::Restarting {
                    rec.state.status = Status::Exited;
                    rec.state.error = e.to_string();
                }
            }
        }
        drop(inner);
        self.persist_or_flag(id);
        self.changed(id);
        if res.is_ok() {
            (self.on_event)(ContainerEvent::Restarted { id: id.to_string() });
            if cancelled {
                let _ = self.kill(id, "SIGKILL");
            }
        }
    }

    /// Daemon start-up: starts `always` and not manually stopped `unless-stopped` containers
    /// that are not running (in the background, so opening does not wait for them).
    pub(crate) fn restart_on_boot(&self) {
        let ids: Vec<String> = self
            .lock()
            .containers
            .values()
            .filter(|c| matches!(c.state.status, Status::Exited | Status::Dead))
            .filter(|c| Policy::of(&c.options.host).restart_on_boot(c.has_been_manually_stopped))
            .map(|c| c.id.clone())
            .collect();
        if ids.is_empty() {
            return;
        }
        let me = self.me.clone();
        let spawned = std::thread::Builder::new()
            .name("restart-on-boot".into())
            .spawn(move || {
                for id in ids {
                    if let Some(this) = me.upgrade() {
                        this.start_auto(&id, true);
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot spawn restart thread: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_validate() {
        assert_eq!(Policy::parse("", 0).unwrap(), Policy::No);
        assert_eq!(Policy::parse("no", 0).unwrap(), Policy::No);
        assert_eq!(Policy::parse("always", 0).unwrap(), Policy::Always);
        assert_eq!(
            Policy::parse("unless-stopped", 0).unwrap(),
            Policy::UnlessStopped
        );
        assert_eq!(
            Policy::parse("on-failure", 3).unwrap(),
            Policy::OnFailure(3)
        );
        let e = Policy::parse("sometimes", 0).unwrap_err().to_string();
        assert!(
            e.starts_with("invalid restart policy: unknown policy 'sometimes'"),
            "{e}"
        );
        let e = Policy::parse("always", 2).unwrap_err().to_string();
        assert!(e.contains("only be used with 'on-failure'"), "{e}");
        assert!(Policy::parse("on-failure", -1).is_err());
        let mut h = HostOptions {
            restart_policy: "always".into(),
            auto_remove: true,
            ..Default::default()
        };
        let e = validate(&h).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("AutoRemove"), "{e}");
        h.restart_policy = "no".into();
        assert!(validate(&h).is_ok());
    }

    #[test]
    fn policy_decisions() {
        use Policy::*;
        // on-failure: only non-zero exits, at most N restarts.
        assert!(!OnFailure(3).should_restart(0, false, 0));
        assert!(OnFailure(3).should_restart(1, false, 0));
        assert!(OnFailure(3).should_restart(1, false, 2));
        assert!(!OnFailure(3).should_restart(1, false, 3));
        assert!(OnFailure(0).should_restart(137, false, 1000));
        assert!(Always.should_restart(0, false, 5));
        assert!(UnlessStopped.should_restart(0, false, 5));
        assert!(!No.should_restart(1, false, 0));
        // A user's stop/kill disables restarting, whatever the policy.
        for p in [Always, UnlessStopped, OnFailure(0)] {
            assert!(!p.should_restart(1, true, 0));
        }
        // Daemon start-up.
        assert!(Always.restart_on_boot(true));
        assert!(UnlessStopped.restart_on_boot(false));
        assert!(!UnlessStopped.restart_on_boot(true));
        assert!(!OnFailure(3).restart_on_boot(false));
        assert!(!No.restart_on_boot(false));
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let short = Duration::from_millis(50);
        let mut d = next_backoff(None, short);
        assert_eq!(d, Duration::from_millis(100));
        let mut seen = vec![d];
        for _ in 0..12 {
            d = next_backoff(Some(d), short);
            seen.push(d);
        }
        assert_eq!(seen[1], Duration::from_millis(200));
        assert_eq!(seen[2], Duration::from_millis(400));
        assert_eq!(seen[9], Duration::from_millis(51_200));
        assert_eq!(seen[10], BACKOFF_MAX);
        assert_eq!(seen[12], BACKOFF_MAX);
        // A run of 10 s or more starts over.
        assert_eq!(
            next_backoff(Some(BACKOFF_MAX), Duration::from_secs(10)),
            BACKOFF_START
        );
        assert_eq!(
            next_backoff(Some(BACKOFF_MAX), Duration::from_secs(9)),
            BACKOFF_MAX
        );
    }

    #[test]
    fn run_time_from_state_times() {
        assert_eq!(
            run_time("2024-01-01T00:00:00.5Z", "2024-01-01T00:00:11Z"),
            Duration::from_millis(10_500)
        );
        assert_eq!(run_time("0001-01-01T00:00:00Z", "garbage"), Duration::ZERO);
    }
}
