//! Health checks (image `HEALTHCHECK`, `--health-*`), Docker's rules:
//!
//! - each start of a container with a check sets its health to `starting` (streak 0; the log
//!   of earlier results is kept) and starts one prober thread;
//! - a probe is an exec in the container (the engine's own exec path, as the container's user)
//!   of `CMD` argv or `CMD-SHELL` via `/bin/sh -c`; exit 0 = success, anything else (including
//!   a probe that cannot start, -1, or exceeds the timeout, which kills it, -1) = failure;
//! - probes run every `interval` (default 30 s), every `start-interval` (default 5 s) while
//!   the container is `starting` within its start period; the first after one interval;
//! - success → `healthy`, streak 0; a failure increments the streak unless the container is
//!   still `starting` within its start period, and `retries` (default 3) consecutive failures
//!   → `unhealthy`; the last 5 results are kept in `State.Health.Log`, outputs cut at 4 KiB;
//! - every status change is saved in the record and reported as
//!   [`ContainerEvent::HealthStatus`]; after a daemon restart, running containers' probers
//!   resume (a generation number retires a prober when its container exits or restarts).

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use barge_image::HealthConfig;

use crate::containers::{now_rfc3339, Containers, Inner};
use crate::*;

pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
pub(crate) const DEFAULT_RETRIES: i64 = 3;
const MAX_LOG_ENTRIES: usize = 5;
const MAX_OUTPUT_LEN: usize = 4096;

pub const STARTING: &str = "starting";
pub const HEALTHY: &str = "healthy";
pub const UNHEALTHY: &str = "unhealthy";

/// A health check ready to run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    pub(crate) argv: Vec<String>,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) start_period: Duration,
    pub(crate) start_interval: Duration,
    pub(crate) retries: i64,
}

fn dur(ns: Option<i64>, default: Duration) -> Duration {
    match ns {
        Some(n) if n > 0 => Duration::from_nanos(n as u64),
        _ => default,
    }
}

impl Settings {
    /// `None` when there is no check (`NONE`, empty test).
    pub(crate) fn from_config(cfg: Option<&HealthConfig>) -> Option<Settings> {
        let cfg = cfg?;
        let test = cfg.test.as_ref()?;
        let argv = match test.first().map(String::as_str) {
            Some("CMD") => test[1..].to_vec(),
            Some("CMD-SHELL") => {
                vec!["/bin/sh".into(), "-c".into(), test[1..].join(" ")]
            }
            _ => return None,
        };
        if argv.is_empty() {
            return None;
        }
        Some(Settings {
            argv,
            interval: dur(cfg.interval, DEFAULT_INTERVAL),
            timeout: dur(cfg.timeout, DEFAULT_TIMEOUT),
            start_period: dur(cfg.start_period, Duration::ZERO),
            start_interval: dur(cfg.start_interval, DEFAULT_START_INTERVAL),
            retries: cfg.retries.filter(|r| *r > 0).unwrap_or(DEFAULT_RETRIES),
        })
    }

    /// Delay before the next probe, `since_start` after the container started.
    pub(crate) fn next_interval(&self, status: &str, since_start: Duration) -> Duration {
        if since_start < self.start_period && status == STARTING {
            self.start_interval
        } else {
            self.interval
        }
    }
}

/// Docker's merge of the user's health check over the image's: field by field, the user's
/// wins when set.
pub(crate) fn merge(
    image: Option<&HealthConfig>,
    user: Option<&HealthConfig>,
) -> Option<HealthConfig> {
    match (image, user) {
        (None, None) => None,
        (Some(i), None) => Some(i.clone()),
        (None, Some(u)) => Some(u.clone()),
        (Some(i), Some(u)) => {
            let pick = |u: Option<i64>, i: Option<i64>| u.filter(|v| *v != 0).or(i);
            Some(HealthConfig {
                test: u.test.clone().filter(|t| !t.is_empty()).or(i.test.clone()),
                interval: pick(u.interval, i.interval),
                timeout: pick(u.timeout, i.timeout),
                start_period: pick(u.start_period, i.start_period),
                start_interval: pick(u.start_interval, i.start_interval),
                retries: pick(u.retries, i.retries),
            })
        }
    }
}

/// Validates a user's health check (Docker's limits), naming the offending field.
pub(crate) fn validate(cfg: Option<&HealthConfig>) -> Result<(), ContainerError> {
    let Some(cfg) = cfg else { return Ok(()) };
    let min = 1_000_000; // 1ms
    let check = |field: &str, v: Option<i64>| match v {
        Some(v) if v != 0 && v < min => Err(ContainerError::InvalidOption {
            field: format!("Healthcheck.{field}"),
            reason: "cannot be less than 1ms".into(),
        }),
        _ => Ok(()),
    };
    check("Interval", cfg.interval)?;
    check("Timeout", cfg.timeout)?;
    check("StartPeriod", cfg.start_period)?;
    check("StartInterval", cfg.start_interval)?;
    if cfg.retries.is_some_and(|r| r < 0) {
        return Err(ContainerError::InvalidOption {
            field: "Healthcheck.Retries".into(),
            reason: "cannot be negative".into(),
        });
    }
    if let Some(t) = &cfg.test {
        if let Some(first) = t.first() {
            if !matches!(first.as_str(), "NONE" | "CMD" | "CMD-SHELL") {
                return Err(ContainerError::InvalidOption {
                    field: "Healthcheck.Test".into(),
                    reason: format!("unknown type {first:?} (want NONE, CMD or CMD-SHELL)"),
                });
            }
        }
    }
    Ok(())
}

/// Records a probe result; returns true when the status changed. `in_start_period`: the
/// probe started within the container's start period.
pub(crate) fn apply_result(
    h: &mut Health,
    mut result: HealthResult,
    in_start_period: bool,
    retries: i64,
) -> bool {
    let old = h.status.clone();
    if result.exit_code == 0 {
        h.failing_streak = 0;
        h.status = HEALTHY.into();
    } else if !(h.status == STARTING && in_start_period) {
        h.failing_streak += 1;
        if h.failing_streak >= retries {
            h.status = UNHEALTHY.into();
        }
    }
    if result.output.len() > MAX_OUTPUT_LEN {
        let mut cut = MAX_OUTPUT_LEN;
        while !result.output.is_char_boundary(cut) {
            cut -= 1;
        }
        result.output.truncate(cut);
    }
    h.log.push(result);
    if h.log.len() > MAX_LOG_ENTRIES {
        let extra = h.log.len() - MAX_LOG_ENTRIES;
        h.log.drain(..extra);
    }
    h.status != old
}

/// Go's `time.Duration` text for whole milliseconds/seconds/minutes (`500ms`, `2s`, `1m30s`).
pub(crate) fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        return format!("{}s", trim_float(secs));
    }
    let m = d.as_secs() / 60;
    let rest = secs - (m * 60) as f64;
    if m < 60 {
        return format!("{m}m{}s", trim_float(rest));
    }
    format!("{}h{}m{}s", m / 60, m % 60, trim_float(rest))
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn since(rfc3339: &str) -> Duration {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .and_then(|t| {
            (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                .to_std()
                .ok()
        })
        .unwrap_or_default()
}

/// Reads stdcopy frames from a probe's attach stream until EOF or `deadline`; returns the
/// output (stdout and stderr interleaved, at most a little over 4 KiB) and whether EOF came.
fn read_output(mut s: UnixStream, deadline: Instant) -> (String, bool) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let now = Instant::now();
        if now >= deadline {
            break (decode_frames(&raw), false);
        }
        let _ = s.set_read_timeout(Some(deadline - now));
        match s.read(&mut buf) {
            Ok(0) => break (decode_frames(&raw), true),
            Ok(n) => {
                if raw.len() < 4 * MAX_OUTPUT_LEN {
                    raw.extend_from_slice(&buf[..n]);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break (decode_frames(&raw), false)
            }
            Err(_) => break (decode_frames(&raw), true),
        }
    }
}

/// Payloads of `[stream][0,0,0][len u32 BE][payload]` frames (a partial last frame is cut).
fn decode_frames(raw: &[u8]) -> String {
    let mut out = Vec::new();
    let mut d = barge_stdx::stdcopy::Demux::default();
    d.feed(raw, |_, payload| out.extend_from_slice(payload));
    // A frame cut by the output cap or the deadline: its bytes so far count too.
    if d.pending() > barge_stdx::stdcopy::HEADER_LEN {
        out.extend_from_slice(&raw[raw.len() - d.pending() + barge_stdx::stdcopy::HEADER_LEN..]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Containers {
    /// Retires the container's prober (exit, restart, removal). Lock held.
    pub(crate) fn health_stop(inner: &mut Inner, id: &str) {
        *inner.health.entry(id.to_string()).or_default() += 1;
    }

    /// After a start (or when the engine opens, `resume`): sets the health to `starting`
    /// (unless resuming) and starts a prober, if the container has a check.
    pub(crate) fn health_start(&self, id: &str, resume: bool) {
        let (settings, generation) = {
            let mut inner = self.lock();
            Self::health_stop(&mut inner, id);
            let generation = inner.health[id];
            let Some(c) = inner.containers.get_mut(id) else {
                return;
            };
            let Some(settings) = Settings::from_config(c.config.healthcheck.as_ref()) else {
                return;
            };
            let h = c.state.health.get_or_insert_with(Health::default);
            if !resume || h.status.is_empty() {
                h.status = STARTING.into();
                h.failing_streak = 0;
            }
            (settings, generation)
        };
        self.persist_or_flag(id);
        let me = self.me.clone();
        let id = id.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("health-{}", &id[..12.min(id.len())]))
            .spawn(move || loop {
                let Some(this) = me.upgrade() else { return };
                if !this.health_wait(&id, generation, &settings) {
                    return;
                }
                let started = Instant::now();
                let start = now_rfc3339();
                let (exit_code, output) = this.health_probe(&id, &settings);
                let _ = started;
                let result = HealthResult {
                    start,
                    end: now_rfc3339(),
                    exit_code,
                    output,
                };
                if !this.health_record(&id, generation, &settings, result) {
                    return;
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot spawn health check thread: {e}");
        }
    }

    fn health_current(inner: &Inner, id: &str, generation: u64) -> Option<Container> {
        if inner.health.get(id) != Some(&generation) {
            return None;
        }
        inner
            .containers
            .get(id)
            .filter(|c| matches!(c.state.status, Status::Running | Status::Paused))
            .cloned()
    }

    /// Sleeps until the next probe is due (and the container is not paused); false when the
    /// prober is retired.
    fn health_wait(&self, id: &str, generation: u64, s: &Settings) -> bool {
        let mut inner = self.lock();
        let Some(c) = Self::health_current(&inner, id, generation) else {
            return false;
        };
        let status = c.state.health.map(|h| h.status).unwrap_or_default();
        let deadline = Instant::now() + s.next_interval(&status, since(&c.state.started_at));
        loop {
            let Some(c) = Self::health_current(&inner, id, generation) else {
                return false;
            };
            let now = Instant::now();
            if now >= deadline && c.state.status == Status::Running {
                return true;
            }
            let wait = if now >= deadline {
                Duration::from_millis(200)
            } else {
                deadline - now
            };
            inner = self
                .cond
                .wait_timeout(inner, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Runs `argv` in the running container `id` as one probe — an exec with `timeout`, as a
    /// health check runs — and returns its exit code (-1 when it could not run or timed out)
    /// and output. The node agent's exec probes (kubelet's) use it.
    pub fn exec_probe(&self, id: &str, argv: Vec<String>, timeout: Duration) -> (i64, String) {
        let s = Settings {
            argv,
            interval: DEFAULT_INTERVAL,
            timeout,
            start_period: Duration::ZERO,
            start_interval: DEFAULT_START_INTERVAL,
            retries: DEFAULT_RETRIES,
        };
        self.health_probe(id, &s)
    }

    /// Runs one probe: (exit code, output).
    fn health_probe(&self, id: &str, s: &Settings) -> (i64, String) {
        let exec = match self.exec_create(
            id,
            ExecOptions {
                cmd: s.argv.clone(),
                attach_stdout: true,
                attach_stderr: true,
                ..Default::default()
            },
        ) {
            Ok(e) => e,
            Err(e) => return (-1, e.to_string()),
        };
        let deadline = Instant::now() + s.timeout;
        let mut stream = None;
        let started = self.exec_start(&exec.id, false, 1, &mut |p| {
            stream = UnixStream::connect(&p.socket).ok();
        });
        let result = match started {
            Err(e) => (-1, e.to_string()),
            Ok(()) => {
                let (output, eof) = match stream {
                    Some(s) => read_output(s, deadline),
                    None => (String::new(), true),
                };
                let timed_out = !eof || {
                    // Output closed: the exit code follows at once, unless the process
                    // closed its streams and lives on.
                    !self.exec_wait_until(&exec.id, deadline)
                };
                if timed_out {
                    // Through the probe's monitor (a pidfd), never a pid that may be reused.
                    let _ = Containers::signal_via(
                        &self.exec_dir(&exec.id).join("control.sock"),
                        libc::SIGKILL,
                    );
                    let _ = self.exec_wait_until(&exec.id, Instant::now() + Duration::from_secs(5));
                    (
                        -1,
                        format!("Health check exceeded timeout ({})", go_duration(s.timeout)),
                    )
                } else {
                    (self.exec_wait(&exec.id).unwrap_or(-1), output)
                }
            }
        };
        self.exec_forget(&exec.id);
        result
    }

    /// Records a result; false when the prober is retired.
    fn health_record(&self, id: &str, generation: u64, s: &Settings, result: HealthResult) -> bool {
        let mut inner = self.lock();
        if inner.health.get(id) != Some(&generation) {
            return false;
        }
        let Some(c) = inner.containers.get_mut(id) else {
            return false;
        };
        let in_start_period = chrono::DateTime::parse_from_rfc3339(&result.start)
            .ok()
            .zip(chrono::DateTime::parse_from_rfc3339(&c.state.started_at).ok())
            .and_then(|(p, st)| (p - st).to_std().ok())
            .is_some_and(|d| d < s.start_period);
        let h = c.state.health.get_or_insert_with(Health::default);
        let changed = apply_result(h, result, in_start_period, s.retries);
        let status = h.status.clone();
        drop(inner);
        self.persist_or_flag(id);
        if changed {
            (self.on_event)(ContainerEvent::HealthStatus {
                id: id.to_string(),
                status,
            });
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(code: i64) -> HealthResult {
        HealthResult {
            exit_code: code,
            output: "x".into(),
            ..Default::default()
        }
    }

    #[test]
    fn settings_from_config() {
        assert_eq!(Settings::from_config(None), None);
        let none = HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        };
        assert_eq!(Settings::from_config(Some(&none)), None);
        let shell = HealthConfig {
            test: Some(vec!["CMD-SHELL".into(), "exit 1".into()]),
            interval: Some(2_000_000_000),
            retries: Some(2),
            ..Default::default()
        };
        let s = Settings::from_config(Some(&shell)).unwrap();
        assert_eq!(s.argv, vec!["/bin/sh", "-c", "exit 1"]);
        assert_eq!(s.interval, Duration::from_secs(2));
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
        assert_eq!(s.retries, 2);
        let cmd = HealthConfig {
            test: Some(vec!["CMD".into(), "true".into()]),
            start_period: Some(10_000_000_000),
            start_interval: Some(1_000_000_000),
            ..Default::default()
        };
        let s = Settings::from_config(Some(&cmd)).unwrap();
        assert_eq!(s.argv, vec!["true"]);
        assert_eq!(s.retries, DEFAULT_RETRIES);
        assert_eq!(
            s.next_interval(STARTING, Duration::from_secs(1)),
            Duration::from_secs(1)
        );
        assert_eq!(
            s.next_interval(HEALTHY, Duration::from_secs(1)),
            DEFAULT_INTERVAL
        );
        assert_eq!(
            s.next_interval(STARTING, Duration::from_secs(11)),
            DEFAULT_INTERVAL
        );
    }

    #[test]
    fn merge_field_by_field() {
        let image = HealthConfig {
            test: Some(vec!["CMD".into(), "check".into()]),
            interval: Some(5),
            retries: Some(3),
            ..Default::default()
        };
        let user = HealthConfig {
            interval: Some(1_000_000_000),
            ..Default::default()
        };
        let m = merge(Some(&image), Some(&user)).unwrap();
        assert_eq!(m.test, image.test);
        assert_eq!(m.interval, Some(1_000_000_000));
        assert_eq!(m.retries, Some(3));
        let off = HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        };
        let m = merge(Some(&image), Some(&off)).unwrap();
        assert_eq!(Settings::from_config(Some(&m)), None);
        assert_eq!(merge(None, None), None);
        assert!(validate(Some(&HealthConfig {
            interval: Some(5),
            ..Default::default()
        }))
        .unwrap_err()
        .to_string()
        .contains("Healthcheck.Interval"));
        assert!(validate(Some(&HealthConfig {
            retries: Some(-1),
            ..Default::default()
        }))
        .is_err());
        assert!(validate(Some(&user)).is_ok());
    }

    #[test]
    fn state_machine() {
        let mut h = Health {
            status: STARTING.into(),
            ..Default::default()
        };
        // Failures within the start period do not count.
        assert!(!apply_result(&mut h, result(1), true, 2));
        assert_eq!((h.status.as_str(), h.failing_streak), (STARTING, 0));
        // After it they do; `retries` of them make it unhealthy.
        assert!(!apply_result(&mut h, result(1), false, 2));
        assert_eq!((h.status.as_str(), h.failing_streak), (STARTING, 1));
        assert!(apply_result(&mut h, result(1), false, 2));
        assert_eq!((h.status.as_str(), h.failing_streak), (UNHEALTHY, 2));
        assert!(!apply_result(&mut h, result(-1), false, 2));
        assert_eq!(h.failing_streak, 3);
        // One success: healthy, streak reset.
        assert!(apply_result(&mut h, result(0), false, 2));
        assert_eq!((h.status.as_str(), h.failing_streak), (HEALTHY, 0));
        // Healthy: a failure within the start period counts (no longer starting).
        assert!(!apply_result(&mut h, result(1), true, 2));
        assert_eq!((h.status.as_str(), h.failing_streak), (HEALTHY, 1));
        // The log keeps the last five.
        assert_eq!(h.log.len(), 5);
        assert_eq!(h.log.last().unwrap().exit_code, 1);
        assert_eq!(h.log[0].exit_code, 1);
        let mut long = result(0);
        long.output = "é".repeat(3000);
        apply_result(&mut h, long, false, 2);
        assert!(h.log.last().unwrap().output.len() <= MAX_OUTPUT_LEN);
    }

    #[test]
    fn frames_and_durations() {
        let mut raw = vec![1, 0, 0, 0, 0, 0, 0, 3];
        raw.extend_from_slice(b"ok\n");
        raw.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 4]);
        raw.extend_from_slice(b"err\n");
        assert_eq!(decode_frames(&raw), "ok\nerr\n");
        assert_eq!(go_duration(Duration::from_secs(2)), "2s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
    }
}
