//! A running container's cgroup: `pause`/`unpause` (freezer), `stats` (usage sample) and
//! `update` (limits), for cgroup v1 (one hierarchy per controller, `<ctrl>/barge/<id>`, or
//! `<ctrl>/<CgroupParent>/<id>`) and v2 (`/sys/fs/cgroup/barge/<id>`). barge writes the files itself, so any OCI runtime works
//! (the embedded one has no `pause`/`update` commands).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::containers::{now_rfc3339, Containers};
use crate::*;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Whether the controllers are mounted as cgroup v1 hierarchies (v1 or hybrid).
pub(crate) fn is_v1() -> bool {
    Path::new(CGROUP_ROOT).join("memory").is_dir()
}

/// The directory of cgroup `cg` (a container's [`Container::cgroup_path`], `/barge/<id>` or
/// `/<CgroupParent>/<id>`) in hierarchy `controller` (v1), or its unified directory (v2).
pub(crate) fn cgroup_dir(controller: &str, cg: &str) -> PathBuf {
    let rel = cg.trim_start_matches('/');
    if is_v1() {
        Path::new(CGROUP_ROOT).join(controller).join(rel)
    } else {
        Path::new(CGROUP_ROOT).join(rel)
    }
}

/// Keeps the kernel's cgroup migration lock warm while containers are made and started: one
/// short-lived thread (shared by every caller) repeats a no-op cgroup v1 migration (the
/// thread's own TID written to the `tasks` file of its own `pids` cgroup) every
/// [`WARM_INTERVAL`] until a deadline: [`WARM_MAX`] from now while the returned guard is held,
/// [`WARM_LINGER`] after it is dropped, so that the runtime's migration of a container into
/// its cgroup does not wait for an RCU grace period.
///
/// Why: every migration takes `cgroup_threadgroup_rwsem` for writing; the first writer after
/// an idle spell waits one RCU grace period (`rcu_sync_enter`, 7-25 ms here), later writers do
/// not while the previous one left less than a grace period ago (the `rcu_sync` stays in
/// `GP_EXIT`). The warm-up's own first write pays that grace period, so it has to begin well
/// before the runtime's intermediate writes `cgroup.procs`: `create` begins it
/// ([`warm_migration_soon`]), `start` holds it until the container runs, and it lingers for
/// the next start of a burst. While it runs, forks and exits on the host take the rwsem's slow
/// path (a few atomic operations more). Best effort; nothing on cgroup v2 (where
/// `favordynmods` is the host's setting).
pub(crate) fn keep_migration_warm() -> MigrationWarm {
    warm_migration_for(WARM_MAX);
    MigrationWarm(())
}

/// Begins (or prolongs by [`WARM_LINGER`]) the migration warm-up of [`keep_migration_warm`]
/// without a guard: `create` calls it, as a `start` usually follows within milliseconds.
pub(crate) fn warm_migration_soon() {
    warm_migration_for(WARM_LINGER);
}

/// Keeps the warm-up going until `linger` from now at least.
fn warm_migration_for(linger: Duration) {
    let mut st = warm_state();
    st.deadline = st.deadline.max(Instant::now() + linger);
    warm_thread(&mut st);
}

/// What [`keep_migration_warm`]'s thread goes by: when to stop, and whether it runs.
struct WarmState {
    deadline: Instant,
    running: bool,
}

fn warm_state() -> std::sync::MutexGuard<'static, WarmState> {
    static STATE: std::sync::OnceLock<std::sync::Mutex<WarmState>> = std::sync::OnceLock::new();
    STATE
        .get_or_init(|| {
            std::sync::Mutex::new(WarmState {
                deadline: Instant::now(),
                running: false,
            })
        })
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Starts the warm-up thread unless it runs (cgroup v1 only). It ends when the deadline
/// passed, or on the first failed write.
fn warm_thread(st: &mut WarmState) {
    if st.running || !is_v1() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("barge-cgwarm".into())
        .spawn(|| {
            let tasks = std::fs::read_to_string("/proc/thread-self/cgroup")
                .ok()
                .and_then(|own| {
                    own.lines().find_map(|l| {
                        let mut f = l.splitn(3, ':');
                        let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
                        (ctrl == "pids").then(|| path.trim_start_matches('/').to_string())
                    })
                })
                .map(|rel| Path::new(CGROUP_ROOT).join("pids").join(rel).join("tasks"))
                .and_then(|p| std::fs::OpenOptions::new().write(true).open(p).ok());
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() }.to_string();
            loop {
                // One write(2) on the file opened once: a migration costs ~15 µs then.
                let ok = tasks.as_ref().is_some_and(|t| {
                    std::os::unix::fs::FileExt::write_at(t, tid.as_bytes(), 0).is_ok()
                });
                {
                    let mut st = warm_state();
                    if !ok || Instant::now() >= st.deadline {
                        st.running = false;
                        return;
                    }
                }
                std::thread::sleep(WARM_INTERVAL);
            }
        });
    st.running = spawned.is_ok();
}

/// How often [`keep_migration_warm`] repeats its no-op migration: well under one RCU grace
/// period (several ms on any kernel configuration).
const WARM_INTERVAL: Duration = Duration::from_millis(3);
/// The longest [`keep_migration_warm`]'s guard keeps it going: a start slower than this has
/// other costs than one grace period.
const WARM_MAX: Duration = Duration::from_millis(500);
/// How long the warm-up goes on after the last start's guard went, so that the next start
/// of a burst (`compose up`, a node's pods, a script's `docker run`s) finds the lock warm:
/// a grace period from idle is ~16 ms here, half of a whole `run --rm`. The cost is one
/// write(2) every [`WARM_INTERVAL`] for this long (~5 ms of CPU).
const WARM_LINGER: Duration = Duration::from_secs(1);

/// Keeps [`keep_migration_warm`]'s thread going while held (up to [`WARM_MAX`]); on drop
/// it goes on for [`WARM_LINGER`] more.
pub(crate) struct MigrationWarm(());

impl Drop for MigrationWarm {
    fn drop(&mut self) {
        warm_migration_soon();
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    let t = s.trim();
    if t == "max" {
        return Some(u64::MAX);
    }
    t.parse().ok()
}

fn read_kv(path: &Path) -> BTreeMap<String, u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn write(path: &Path, value: &str) -> Result<(), ContainerError> {
    std::fs::write(path, value)
        .map_err(|e| ContainerError::io(format!("write {value:?} to {}", path.display()), e))
}

/// Host memory (`MemTotal`), bytes.
fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Host CPU time in ns (Docker's `system_cpu_usage`) and the number of online CPUs.
pub(crate) fn system_cpu() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let mut total = 0;
    let mut cpus = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("cpu ") {
            let ticks: u64 = rest
                .split_whitespace()
                .take(7)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum();
            total = ticks * (1_000_000_000 / clock_ticks());
        } else if line.starts_with("cpu") {
            cpus += 1;
        }
    }
    (total, cpus)
}

/// Parses blkio (v1 `blkio.throttle.io_service_bytes`: `8:0 Read 123`) lines.
pub(crate) fn parse_blkio_v1(text: &str) -> Vec<(u64, u64, String, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (maj, min) = f.next()?.split_once(':')?;
            let op = f.next()?.to_string();
            let v = f.next()?.parse().ok()?;
            Some((maj.parse().ok()?, min.parse().ok()?, op, v))
        })
        .collect()
}

/// Parses v2 `io.stat` (`8:0 rbytes=1 wbytes=2 rios=3 ...`) into Docker's v1-like entries.
pub(crate) fn parse_io_stat_v2(text: &str) -> Vec<(u64, u64, String, u64)> {
    let mut out = Vec::new();
    for l in text.lines() {
        let mut f = l.split_whitespace();
        let Some((maj, min)) = f.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(maj), Ok(min)) = (maj.parse::<u64>(), min.parse::<u64>()) else {
            continue;
        };
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let op = match k {
                "rbytes" => "read",
                "wbytes" => "write",
                _ => continue,
            };
            if let Ok(v) = v.parse() {
                out.push((maj, min, op.to_string(), v));
            }
        }
    }
    out
}

impl Containers {
    /// Freezes or thaws cgroup `cg` ([`Container::cgroup_path`]).
    fn freeze(&self, cg: &str, frozen: bool) -> Result<(), ContainerError> {
        if is_v1() {
            let path = cgroup_dir("freezer", cg).join("freezer.state");
            let want = if frozen { "FROZEN" } else { "THAWED" };
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                write(&path, want)?;
                let now = std::fs::read_to_string(&path).unwrap_or_default();
                if now.trim() == want {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    return Err(ContainerError::io(
                        format!("{} stays {}", path.display(), now.trim()),
                        std::io::Error::from(std::io::ErrorKind::TimedOut),
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        } else {
            let dir = cgroup_dir("", cg);
            write(&dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
            let want = if frozen { "frozen 1" } else { "frozen 0" };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                let ev = std::fs::read_to_string(dir.join("cgroup.events")).unwrap_or_default();
                if ev.lines().any(|l| l.trim() == want) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(ContainerError::io(
                format!("freeze {}", dir.display()),
                std::io::Error::from(std::io::ErrorKind::TimedOut),
            ))
        }
    }

    /// Freezes every process of a running container (status `paused`). 409 if not running or
    /// already paused.
    pub fn pause(&self, id: &str) -> Result<(), ContainerError> {
        let c = self.get(id)?;
        match c.state.status {
            Status::Running => {}
            Status::Paused => return Err(ContainerError::Paused(c.id)),
            _ => return Err(ContainerError::NotRunning(c.id)),
        }
        self.freeze(&c.cgroup_path(), true)?;
        self.set_status(&c.id, Status::Running, Status::Paused)
    }

    /// Thaws a paused container. 409 if it is not paused.
    pub fn unpause(&self, id: &str) -> Result<(), ContainerError> {
        let c = self.get(id)?;
        if c.state.status != Status::Paused {
            return Err(ContainerError::NotPaused(c.id));
        }
        self.freeze(&c.cgroup_path(), false)?;
        self.set_status(&c.id, Status::Paused, Status::Running)
    }

    /// Thaws a paused container on the way to stopping it (signals wait for the thaw).
    pub(crate) fn thaw_if_paused(&self, c: &Container) {
        if c.state.status == Status::Paused && self.freeze(&c.cgroup_path(), false).is_ok() {
            let _ = self.set_status(&c.id, Status::Paused, Status::Running);
        }
    }

    fn set_status(&self, id: &str, from: Status, to: Status) -> Result<(), ContainerError> {
        let mut inner = self.lock();
        if let Some(c) = inner.containers.get_mut(id) {
            if c.state.status == from {
                c.state.status = to;
            }
        }
        drop(inner);
        self.persist(id)?;
        self.changed(id);
        Ok(())
    }

    /// One usage sample of the container's cgroup; all zero when it is not running.
    pub fn stats(&self, id: &str) -> Result<StatsSample, ContainerError> {
        let c = self.get(id)?;
        let (system_cpu, online_cpus) = system_cpu();
        let mut s = StatsSample {
            read: now_rfc3339(),
            system_cpu,
            online_cpus,
            ..Default::default()
        };
        if !matches!(c.state.status, Status::Running | Status::Paused) {
            return Ok(s);
        }
        let cg = c.cgroup_path();
        let id = cg.as_str();
        let host_mem = host_memory();
        if is_v1() {
            let acct = cgroup_dir("cpuacct", id);
            s.cpu_total = read_u64(&acct.join("cpuacct.usage")).unwrap_or(0);
            s.cpu_percpu = std::fs::read_to_string(acct.join("cpuacct.usage_percpu"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            let st = read_kv(&acct.join("cpuacct.stat"));
            let ns_per_tick = 1_000_000_000 / clock_ticks();
            s.cpu_user = st.get("user").copied().unwrap_or(0) * ns_per_tick;
            s.cpu_system = st.get("system").copied().unwrap_or(0) * ns_per_tick;
            let cpu = read_kv(&cgroup_dir("cpu", id).join("cpu.stat"));
            s.throttling = [
                cpu.get("nr_periods").copied().unwrap_or(0),
                cpu.get("nr_throttled").copied().unwrap_or(0),
                cpu.get("throttled_time").copied().unwrap_or(0),
            ];
            let mem = cgroup_dir("memory", id);
            s.memory_usage = read_u64(&mem.join("memory.usage_in_bytes")).unwrap_or(0);
            s.memory_max_usage = read_u64(&mem.join("memory.max_usage_in_bytes")).unwrap_or(0);
            s.memory_limit = read_u64(&mem.join("memory.limit_in_bytes")).unwrap_or(u64::MAX);
            s.memory_failcnt = read_u64(&mem.join("memory.failcnt")).unwrap_or(0);
            s.memory_stats = read_kv(&mem.join("memory.stat"));
            let pids = cgroup_dir("pids", id);
            s.pids_current = read_u64(&pids.join("pids.current")).unwrap_or(0);
            s.pids_limit = read_u64(&pids.join("pids.max")).unwrap_or(0);
            s.blkio_bytes = parse_blkio_v1(
                &std::fs::read_to_string(
                    cgroup_dir("blkio", id).join("blkio.throttle.io_service_bytes_recursive"),
                )
                .unwrap_or_default(),
            );
        } else {
            let dir = cgroup_dir("", id);
            let cpu = read_kv(&dir.join("cpu.stat"));
            let us = |k: &str| cpu.get(k).copied().unwrap_or(0);
            s.cpu_total = us("usage_usec") * 1000;
            s.cpu_user = us("user_usec") * 1000;
            s.cpu_system = us("system_usec") * 1000;
            s.throttling = [
                us("nr_periods"),
                us("nr_throttled"),
                us("throttled_usec") * 1000,
            ];
            s.memory_usage = read_u64(&dir.join("memory.current")).unwrap_or(0);
            s.memory_max_usage = read_u64(&dir.join("memory.peak")).unwrap_or(0);
            s.memory_limit = read_u64(&dir.join("memory.max")).unwrap_or(u64::MAX);
            s.memory_stats = read_kv(&dir.join("memory.stat"));
            s.pids_current = read_u64(&dir.join("pids.current")).unwrap_or(0);
            s.pids_limit = read_u64(&dir.join("pids.max")).unwrap_or(0);
            s.blkio_bytes =
                parse_io_stat_v2(&std::fs::read_to_string(dir.join("io.stat")).unwrap_or_default());
        }
        if s.pids_limit == u64::MAX {
            s.pids_limit = 0;
        }
        if host_mem > 0 && s.memory_limit > host_mem {
            s.memory_limit = host_mem;
        }
        Ok(s)
    }

    /// Changes limits and the restart policy; a running container's cgroup is updated at once.
    /// Returns Docker's warnings.
    pub fn update(&self, id: &str, u: &UpdateOptions) -> Result<Vec<String>, ContainerError> {
        let c = self.get(id)?;
        let bad = |field: &str, reason: String| ContainerError::InvalidOption {
            field: field.into(),
            reason,
        };
        let mut host = c.options.host.clone();
        if let Some(m) = u.memory {
            if m != 0 && m < 6 * 1024 * 1024 {
                return Err(bad("memory", "Minimum memory limit allowed is 6MB".into()));
            }
            if m < 0 {
                return Err(bad("memory", format!("{m}: must be positive")));
            }
            host.memory = m;
        }
        if let Some(s) = u.memory_swap {
            host.memory_swap = s;
        }
        if host.memory > 0 && host.memory_swap > 0 && host.memory_swap < host.memory {
            return Err(bad(
                "memory-swap",
                "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
            ));
        }
        if u.memory_swap.is_some_and(|s| s != 0) && host.memory == 0 {
            return Err(bad(
                "memory-swap",
                "You should always set the Memory limit when using Memoryswap limit".into(),
            ));
        }
        if let Some(n) = u.nano_cpus {
            if n < 0 {
                return Err(bad("cpus", format!("{n}: must be positive")));
            }
            host.nano_cpus = n;
        }
        if let Some(s) = u.cpu_shares {
            if s < 0 {
                return Err(bad("cpu-shares", format!("{s}: must be positive")));
            }
            host.cpu_shares = s;
        }
        if let Some(p) = u.pids_limit {
            host.pids_limit = p;
        }
        if let Some((name, max)) = &u.restart_policy {
            host.restart_policy = name.clone();
            host.restart_max_retries = *max;
            crate::restart::validate(&host)?;
        }
        if matches!(c.state.status, Status::Running | Status::Paused) {
            self.apply_limits(&c.cgroup_path(), &c.options.host, &host, u)?;
        }
        let mut inner = self.lock();
        let rec = inner
            .containers
            .get_mut(&c.id)
            .ok_or_else(|| ContainerError::NotFound(c.id.clone()))?;
        rec.options.host = host;
        drop(inner);
        self.persist(&c.id)?;
        Ok(Vec::new())
    }

    /// Writes the changed limits into cgroup `id` ([`Container::cgroup_path`]).
    fn apply_limits(
        &self,
        id: &str,
        old: &HostOptions,
        new: &HostOptions,
        u: &UpdateOptions,
    ) -> Result<(), ContainerError> {
        let period: i64 = 100_000;
        let quota = |n: i64| {
            if n > 0 {
                (n as i128 * period as i128 / 1_000_000_000) as i64
            } else {
                -1
            }
        };
        if is_v1() {
            if u.memory.is_some() || u.memory_swap.is_some() {
                let mem = cgroup_dir("memory", id);
                let limit = if new.memory > 0 { new.memory } else { -1 };
                let swap_file = mem.join("memory.memsw.limit_in_bytes");
                let swap = match (new.memory, new.memory_swap) {
                    (m, _) if m <= 0 => -1,
                    (_, -1) => -1,
                    (m, 0) => m * 2,
                    (_, s) => s,
                };
                if swap_file.exists() {
                    // memsw >= memory at every step: raise memsw first when growing.
                    let cur = read_u64(&swap_file).unwrap_or(u64::MAX);
                    let growing = swap == -1 || (swap as u64) > cur;
                    if growing {
                        write(&swap_file, &swap.to_string())?;
                        write(&mem.join("memory.limit_in_bytes"), &limit.to_string())?;
                    } else {
                        write(&mem.join("memory.limit_in_bytes"), &limit.to_string())?;
                        write(&swap_file, &swap.to_string())?;
                    }
                } else {
                    write(&mem.join("memory.limit_in_bytes"), &limit.to_string())?;
                }
            }
            if u.nano_cpus.is_some() && new.nano_cpus != old.nano_cpus {
                let cpu = cgroup_dir("cpu", id);
                write(&cpu.join("cpu.cfs_period_us"), &period.to_string())?;
                write(
                    &cpu.join("cpu.cfs_quota_us"),
                    &quota(new.nano_cpus).to_string(),
                )?;
            }
            if u.cpu_shares.is_some() && new.cpu_shares > 0 {
                write(
                    &cgroup_dir("cpu", id).join("cpu.shares"),
                    &new.cpu_shares.to_string(),
                )?;
            }
            if u.pids_limit.is_some() {
                let v = if new.pids_limit > 0 {
                    new.pids_limit.to_string()
                } else {
                    "max".into()
                };
                write(&cgroup_dir("pids", id).join("pids.max"), &v)?;
            }
        } else {
            let dir = cgroup_dir("", id);
            if u.memory.is_some() || u.memory_swap.is_some() {
                let limit = if new.memory > 0 {
                    new.memory.to_string()
                } else {
                    "max".into()
                };
                write(&dir.join("memory.max"), &limit)?;
                if dir.join("memory.swap.max").exists() {
                    let swap = match (new.memory, new.memory_swap) {
                        (m, _) if m <= 0 => "max".to_string(),
                        (_, -1) => "max".to_string(),
                        (m, 0) => m.to_string(),
                        (m, s) => (s - m).max(0).to_string(),
                    };
                    write(&dir.join("memory.swap.max"), &swap)?;
                }
            }
            if u.nano_cpus.is_some() {
                let q = quota(new.nano_cpus);
                let v = if q > 0 {
                    format!("{q} {period}")
                } else {
                    format!("max {period}")
                };
                write(&dir.join("cpu.max"), &v)?;
            }
            if u.cpu_shares.is_some() && new.cpu_shares > 0 {
                // runc's conversion of shares [2, 262144] to weight [1, 10000].
                let w = 1 + ((new.cpu_shares.clamp(2, 262_144) - 2) * 9999) / 262_142;
                write(&dir.join("cpu.weight"), &w.to_string())?;
            }
            if u.pids_limit.is_some() {
                let v = if new.pids_limit > 0 {
                    new.pids_limit.to_string()
                } else {
                    "max".into()
                };
                write(&dir.join("pids.max"), &v)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blkio_parsers() {
        let v1 = parse_blkio_v1("8:0 Read 4096\n8:0 Write 512\n8:0 Total 4608\nTotal 4608\n");
        assert_eq!(
            v1,
            vec![
                (8, 0, "Read".to_string(), 4096),
                (8, 0, "Write".to_string(), 512),
                (8, 0, "Total".to_string(), 4608)
            ]
        );
        let v2 = parse_io_stat_v2("259:0 rbytes=100 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n");
        assert_eq!(
            v2,
            vec![
                (259, 0, "read".to_string(), 100),
                (259, 0, "write".to_string(), 20)
            ]
        );
    }

    #[test]
    fn host_cpu_counts() {
        let (total, cpus) = system_cpu();
        assert!(total > 0 && cpus >= 1);
    }
}
