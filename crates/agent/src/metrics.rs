//! Resource usage of the node and its pods' containers, as kubelet's Summary API reports it
//! (`GET /stats/summary`, `k8s.io/kubelet/pkg/apis/stats/v1alpha1`), for the API server's
//! `metrics.k8s.io` (metrics-server's job) and, through it, `kubectl top` and the
//! HorizontalPodAutoscaler.
//!
//! A [`Sampler`] reads every pod container's cgroup through the engine
//! (`Containers::stats`, v1 or v2) every `resolution` (cAdvisor's housekeeping interval,
//! kubelet's 10 s by default) and keeps the last two samples of each: CPU is the rate of
//! `usageCoreNanoSeconds` between them (`usageNanoCores`, absent until a container has two
//! samples, as cAdvisor's), memory is the working set as kubelet computes it — usage minus
//! `inactive_file` (v2) or `total_inactive_file` (v1), never below zero. The node's figures
//! are the host's: CPU time from `/proc/stat`, memory from the root memory cgroup (v1) or
//! `/proc/meminfo`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::pods::{LABEL_CONTAINER, LABEL_NAME, LABEL_NAMESPACE, LABEL_UID};
use crate::Engine;

/// kubelet's (cAdvisor's) default housekeeping interval.
pub const DEFAULT_RESOLUTION: Duration = Duration::from_secs(10);

/// One reading of a cgroup.
#[derive(Clone, Debug)]
struct Reading {
    at: Instant,
    /// RFC 3339 of `at`.
    time: String,
    /// Cumulative CPU time, ns.
    cpu: u64,
    usage: u64,
    working_set: u64,
}

/// The last two readings of one source (a container, or the node).
#[derive(Clone, Debug, Default)]
struct Series {
    last: Option<Reading>,
    prev: Option<Reading>,
}

impl Series {
    fn push(&mut self, r: Reading) {
        self.prev = self.last.take();
        self.last = Some(r);
    }

    /// kubelet's `cpu` and `memory` stats objects (`usageNanoCores` only with two samples).
    fn stats(&self) -> Option<(Value, Value)> {
        let last = self.last.as_ref()?;
        let mut cpu = json!({"time": last.time, "usageCoreNanoSeconds": last.cpu});
        if let Some(rate) = self.prev.as_ref().and_then(|p| rate(p, last)) {
            cpu["usageNanoCores"] = json!(rate);
        }
        let mem = json!({
            "time": last.time,
            "usageBytes": last.usage,
            "workingSetBytes": last.working_set,
        });
        Some((cpu, mem))
    }
}

/// The CPU rate between two readings, nanocores.
fn rate(prev: &Reading, last: &Reading) -> Option<u64> {
    let dt = last.at.checked_duration_since(prev.at)?.as_nanos();
    if dt == 0 || last.cpu < prev.cpu {
        return None;
    }
    Some(((last.cpu - prev.cpu) as u128 * 1_000_000_000 / dt) as u64)
}

/// kubelet's working set: usage minus inactive file pages, floored at zero.
pub fn working_set(usage: u64, memory_stat: &std::collections::BTreeMap<String, u64>) -> u64 {
    let inactive = memory_stat
        .get("total_inactive_file")
        .or_else(|| memory_stat.get("inactive_file"))
        .copied()
        .unwrap_or(0);
    usage.saturating_sub(inactive)
}

/// Who a container belongs to.
#[derive(Clone, Debug)]
struct Owner {
    namespace: String,
    pod: String,
    uid: String,
    container: String,
}

#[derive(Default)]
struct State {
    node: Series,
    /// By engine container ID.
    containers: HashMap<String, (Owner, Series)>,
}

/// Samples the node and its pods' containers every `resolution`; shared by the kubelet
/// endpoint.
pub struct Sampler {
    engine: Engine,
    node_name: String,
    resolution: Duration,
    state: Mutex<State>,
}

impl Sampler {
    pub fn new(engine: Engine, node_name: String, resolution: Duration) -> Arc<Self> {
        Arc::new(Sampler {
            engine,
            node_name,
            resolution,
            state: Mutex::default(),
        })
    }

    /// Samples forever, every `resolution` (on the blocking pool: cgroup files are files).
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.resolution);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.sample()).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One round: every running pod container, then the node.
    fn sample(&self) {
        let mut seen = Vec::new();
        let mut readings = Vec::new();
        for c in self.engine.containers.list() {
            let l = &c.options.labels;
            let (Some(ns), Some(pod), Some(uid), Some(name)) = (
                l.get(LABEL_NAMESPACE),
                l.get(LABEL_NAME),
                l.get(LABEL_UID),
                l.get(LABEL_CONTAINER),
            ) else {
                continue;
            };
            // The PID namespace holder is no container of the pod's (kubelet leaves its pause
            // container out of the summary's containers too).
            if name == crate::holder::HOLDER_CONTAINER {
                continue;
            }
            if !matches!(c.state.status, barge_container::Status::Running) {
                continue;
            }
            let Ok(s) = self.engine.containers.stats(&c.id) else {
                continue;
            };
            let owner = Owner {
                namespace: ns.clone(),
                pod: pod.clone(),
                uid: uid.clone(),
                container: name.clone(),
            };
            readings.push((
                c.id.clone(),
                owner,
                Reading {
                    at: Instant::now(),
                    time: crate::time::now(),
                    cpu: s.cpu_total,
                    usage: s.memory_usage,
                    working_set: working_set(s.memory_usage, &s.memory_stats),
                },
            ));
            seen.push(c.id);
        }
        let node = node_reading();
        let mut st = self.lock();
        st.containers.retain(|id, _| seen.contains(id));
        for (id, owner, r) in readings {
            let e = st
                .containers
                .entry(id)
                .or_insert_with(|| (owner.clone(), Series::default()));
            e.0 = owner;
            e.1.push(r);
        }
        st.node.push(node);
    }

    /// kubelet's Summary (`stats/v1alpha1`): the node, and each pod with its containers that
    /// have been sampled.
    pub fn summary(&self) -> Value {
        let st = self.lock();
        let mut node = json!({"nodeName": self.node_name});
        if let Some((cpu, mem)) = st.node.stats() {
            node["cpu"] = cpu;
            node["memory"] = mem;
        }
        let mut pods: std::collections::BTreeMap<(String, String, String), Vec<Value>> =
            Default::default();
        for (owner, series) in st.containers.values() {
            let Some((cpu, mem)) = series.stats() else {
                continue;
            };
            pods.entry((
                owner.namespace.clone(),
                owner.pod.clone(),
                owner.uid.clone(),
            ))
            .or_default()
            .push(json!({"name": owner.container, "cpu": cpu, "memory": mem}));
        }
        let pods: Vec<Value> = pods
            .into_iter()
            .map(|((namespace, name, uid), mut containers)| {
                containers.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
                json!({
                    "podRef": {"name": name, "namespace": namespace, "uid": uid},
                    "containers": containers,
                })
            })
            .collect();
        // Not kubelet's: the sampling window, for metrics.k8s.io's `window`.
        let window = match (&st.node.prev, &st.node.last) {
            (Some(p), Some(l)) => l.at.saturating_duration_since(p.at),
            _ => self.resolution,
        };
        json!({"node": node, "pods": pods, "windowSeconds": window.as_secs_f64()})
    }
}

/// The host's CPU time and memory working set now.
fn node_reading() -> Reading {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    Reading {
        at: Instant::now(),
        time: crate::time::now(),
        cpu: busy_cpu_ns(&stat),
        usage: 0,
        working_set: 0,
    }
    .with_memory()
}

impl Reading {
    fn with_memory(mut self) -> Self {
        let v1 = std::path::Path::new("/sys/fs/cgroup/memory/memory.usage_in_bytes");
        let usage = std::fs::read_to_string(v1)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        if let Some(usage) = usage {
            let stat = kv(
                &std::fs::read_to_string("/sys/fs/cgroup/memory/memory.stat").unwrap_or_default(),
            );
            self.usage = usage;
            self.working_set = working_set(usage, &stat);
        } else {
            let (total, free, inactive) =
                meminfo(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default());
            self.usage = total.saturating_sub(free);
            self.working_set = self.usage.saturating_sub(inactive);
        }
        self
    }
}

/// `key value` lines.
fn kv(text: &str) -> std::collections::BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// `/proc/meminfo`'s MemTotal, MemFree and Inactive(file), bytes.
fn meminfo(text: &str) -> (u64, u64, u64) {
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (get("MemTotal:"), get("MemFree:"), get("Inactive(file):"))
}

/// Non-idle CPU time of `/proc/stat`'s `cpu` line (user, nice, system, irq, softirq, steal),
/// ns.
fn busy_cpu_ns(stat: &str) -> u64 {
    let Some(line) = stat.lines().find_map(|l| l.strip_prefix("cpu ")) else {
        return 0;
    };
    let f: Vec<u64> = line
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    let ticks = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    ticks * (1_000_000_000 / hz)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(secs: u64, cpu: u64, base: Instant) -> Reading {
        Reading {
            at: base + Duration::from_secs(secs),
            time: String::new(),
            cpu,
            usage: 0,
            working_set: 0,
        }
    }

    #[test]
    fn cpu_is_a_rate_between_two_samples() {
        let base = Instant::now();
        let mut s = Series::default();
        s.push(reading(0, 1_000_000_000, base));
        assert!(s.stats().unwrap().0.get("usageNanoCores").is_none());
        // Half a core over 10 s.
        s.push(reading(10, 6_000_000_000, base));
        assert_eq!(s.stats().unwrap().0["usageNanoCores"], 500_000_000);
    }

    #[test]
    fn working_set_is_usage_minus_inactive_file() {
        let mut st = std::collections::BTreeMap::new();
        st.insert("total_inactive_file".to_string(), 300);
        assert_eq!(working_set(1000, &st), 700);
        assert_eq!(working_set(100, &st), 0);
        let mut v2 = std::collections::BTreeMap::new();
        v2.insert("inactive_file".to_string(), 10);
        assert_eq!(working_set(100, &v2), 90);
    }

    #[test]
    fn proc_figures() {
        assert_eq!(
            meminfo("MemTotal: 100 kB\nMemFree: 40 kB\nInactive(file): 10 kB\n"),
            (102400, 40960, 10240)
        );
        let hz = 1_000_000_000 / {
            // SAFETY: sysconf has no preconditions.
            let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
            if t > 0 {
                t as u64
            } else {
                100
            }
        };
        assert_eq!(busy_cpu_ns("cpu  1 2 3 100 100 4 5 6 0 0\n"), 21 * hz);
    }
}
