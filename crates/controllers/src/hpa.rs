//! The HorizontalPodAutoscaler controller (kube-controller-manager's
//! `pkg/controller/podautoscaler`: `horizontal.go`, `replica_calculator.go`), for
//! `autoscaling/v2` (the API server stores v1 objects as v2).
//!
//! Every `--horizontal-pod-autoscaler-sync-period` (15 s) each autoscaler is reconciled: the
//! target's `scale` subresource is read (any kind that has one: Deployment, StatefulSet,
//! ReplicaSet, ReplicationController, a custom resource — found through discovery), its pods
//! are listed by the scale's selector and their usage read from `metrics.k8s.io` (the same
//! API `kubectl top` reads). `Resource` metrics are supported (`Utilization` of the pods'
//! requests, `AverageValue`), with kube's replica calculation: `ceil(ratio × ready pods)`
//! outside the tolerance (0.1), pending, unready (CPU, during the 5 min initialization) and
//! deleted pods set aside, missing metrics assumed at 100 % (or the target) when scaling
//! down and 0 when scaling up, no scaling when that assumption reverses the direction.
//! Without `behavior` the legacy normalization applies (downscale stabilization window —
//! `--horizontal-pod-autoscaler-downscale-stabilization`, 5 min —, scale-up limited to
//! max(2 × current, 4)); with `behavior` its stabilization windows and Pods/Percent policies
//! per period with `selectPolicy` Max/Min/Disabled. Status (`currentReplicas`,
//! `desiredReplicas`, `currentMetrics`, `lastScaleTime`, `observedGeneration`) and the
//! conditions AbleToScale / ScalingActive / ScalingLimited carry kube's reasons and
//! messages; events `SuccessfulRescale` (`New size: N; reason: …`), `FailedGetScale`,
//! `FailedGetResourceMetric`, `FailedComputeMetricsReplicas`, `FailedRescale`.
//!
//! `ContainerResource` metrics count one container's usage and requests.
//!
//! `Pods`, `Object` and `External` metrics need the custom and external metrics APIs, which
//! barge does not serve (no APIService aggregation): they fail with the reasons and messages
//! kube's controller gives in a cluster without a metrics adapter (`FailedGetPodsMetric`,
//! `FailedGetObjectMetric`, `FailedGetExternalMetric`).
//!
//! Autoscalers whose targets' pods overlap are refused as kube does (`AmbiguousSelector`).
//!
//! Not yet: the alpha per-rule `tolerance`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::autoscaling::v2::{
    ContainerResourceMetricStatus, HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus, MetricStatus, MetricTarget,
    MetricValueStatus, ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client, ResourceExt};

use crate::workloads::events::{self, Kind};
use crate::workloads::pods::now_time;

/// The events' component (kube's `horizontal-pod-autoscaler`).
const COMPONENT: &str = "horizontal-pod-autoscaler";

/// kube-controller-manager's `--horizontal-pod-autoscaler-*` settings.
#[derive(Clone, Debug)]
pub struct HpaConfig {
    /// How often every autoscaler is reconciled (15 s).
    pub sync_period: Duration,
    /// The legacy downscale stabilization window, and `scaleDown`'s default (5 min).
    pub downscale_stabilization: Duration,
    /// The ratio change that is ignored (0.1).
    pub tolerance: f64,
    /// A pod's CPU samples may be unready this long after it starts (5 min).
    pub cpu_initialization_period: Duration,
    /// A pod not ready yet within this long of its start never was (30 s).
    pub initial_readiness_delay: Duration,
}

impl Default for HpaConfig {
    fn default() -> Self {
        HpaConfig {
            sync_period: Duration::from_secs(15),
            downscale_stabilization: Duration::from_secs(300),
            tolerance: 0.1,
            cpu_initialization_period: Duration::from_secs(300),
            initial_readiness_delay: Duration::from_secs(30),
        }
    }
}

// --- The replica calculation (replica_calculator.go), pure ------------------------------------

/// What the calculation needs of one pod.
#[derive(Clone, Debug)]
pub struct PodView {
    pub name: String,
    pub phase: String,
    pub deleting: bool,
    /// The Ready condition: (status is True, status is False, lastTransitionTime in Unix s).
    pub ready: Option<(bool, bool, f64)>,
    /// `status.startTime`, Unix seconds.
    pub start: Option<f64>,
    /// The sum of its containers' requests of the resource (milli), or the first container
    /// without one.
    pub request: Result<i64, String>,
}

/// One pod's usage (milli) and when it was sampled over which window (seconds).
#[derive(Clone, Copy, Debug)]
pub struct PodMetric {
    pub value: i64,
    pub timestamp: f64,
    pub window: f64,
}

/// kube's `groupPods`: (ready count, unready, missing, ignored).
fn group_pods(
    pods: &[PodView],
    metrics: &BTreeMap<String, PodMetric>,
    cpu: bool,
    cfg: &HpaConfig,
    now: f64,
) -> (usize, BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
    let (mut ready, mut unready, mut missing, mut ignored) =
        (0, BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for p in pods {
        if p.deleting || p.phase == "Failed" {
            ignored.insert(p.name.clone());
            continue;
        }
        if p.phase == "Pending" {
            unready.insert(p.name.clone());
            continue;
        }
        let Some(m) = metrics.get(&p.name) else {
            missing.insert(p.name.clone());
            continue;
        };
        if cpu {
            let is_unready = match (p.ready, p.start) {
                (Some((_, is_false, changed)), Some(start)) => {
                    if start + cfg.cpu_initialization_period.as_secs_f64() > now {
                        is_false || m.timestamp < changed + m.window
                    } else {
                        is_false && start + cfg.initial_readiness_delay.as_secs_f64() > changed
                    }
                }
                _ => true,
            };
            if is_unready {
                unready.insert(p.name.clone());
                continue;
            }
        }
        ready += 1;
    }
    (ready, unready, missing, ignored)
}

/// kube's `GetResourceUtilizationRatio`: (ratio, utilization %, raw average milli).
fn utilization_ratio(
    metrics: &BTreeMap<String, PodMetric>,
    requests: &HashMap<String, i64>,
    target: i32,
) -> Result<(f64, i32, i64), String> {
    let (mut used, mut requested, mut n) = (0i64, 0i64, 0i64);
    for (pod, m) in metrics {
        if let Some(r) = requests.get(pod) {
            used += m.value;
            requested += r;
            n += 1;
        }
    }
    if requested == 0 {
        return Err("no metrics returned matched known pods".into());
    }
    let utilization = (used * 100 / requested) as i32;
    Ok((
        f64::from(utilization) / f64::from(target),
        utilization,
        used / n,
    ))
}

/// kube's `GetResourceReplicas` after the metrics are fetched: (replicas, utilization %,
/// raw average milli).
pub fn resource_replicas(
    current: i32,
    target: i32,
    pods: &[PodView],
    mut metrics: BTreeMap<String, PodMetric>,
    cpu: bool,
    cfg: &HpaConfig,
    now: f64,
) -> Result<(i32, i32, i64), String> {
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let (ready, unready, missing, ignored) = group_pods(pods, &metrics, cpu, cfg, now);
    metrics.retain(|p, _| !ignored.contains(p) && !unready.contains(p));
    if metrics.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let mut requests = HashMap::new();
    for p in pods {
        match &p.request {
            Ok(r) => {
                requests.insert(p.name.clone(), *r);
            }
            Err(e) => return Err(e.clone()),
        }
    }
    let (ratio, utilization, raw) = utilization_ratio(&metrics, &requests, target)?;
    let up_with_unready = !unready.is_empty() && ratio > 1.0;
    if !up_with_unready && missing.is_empty() {
        if (1.0 - ratio).abs() <= cfg.tolerance {
            return Ok((current, utilization, raw));
        }
        return Ok(((ratio * ready as f64).ceil() as i32, utilization, raw));
    }
    if !missing.is_empty() {
        for p in &missing {
            let value = if ratio < 1.0 {
                requests.get(p).copied().unwrap_or(0) * i64::from(target.max(100)) / 100
            } else {
                0
            };
            metrics.insert(
                p.clone(),
                PodMetric {
                    value,
                    timestamp: now,
                    window: 0.0,
                },
            );
        }
    }
    if up_with_unready {
        for p in &unready {
            metrics.insert(
                p.clone(),
                PodMetric {
                    value: 0,
                    timestamp: now,
                    window: 0.0,
                },
            );
        }
    }
    let (new_ratio, _, _) = utilization_ratio(&metrics, &requests, target)?;
    if (1.0 - new_ratio).abs() <= cfg.tolerance
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok((current, utilization, raw));
    }
    let replicas = (new_ratio * metrics.len() as f64).ceil() as i32;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok((current, utilization, raw));
    }
    Ok((replicas, utilization, raw))
}

/// kube's `calcPlainMetricReplicas` for an `AverageValue` target (milli): (replicas, average
/// usage milli).
pub fn plain_replicas(
    current: i32,
    target: i64,
    pods: &[PodView],
    mut metrics: BTreeMap<String, PodMetric>,
    cpu: bool,
    cfg: &HpaConfig,
    now: f64,
) -> Result<(i32, i64), String> {
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let (ready, unready, missing, ignored) = group_pods(pods, &metrics, cpu, cfg, now);
    metrics.retain(|p, _| !ignored.contains(p) && !unready.contains(p));
    if metrics.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let usage_ratio = |m: &BTreeMap<String, PodMetric>| {
        let total: i64 = m.values().map(|v| v.value).sum();
        let avg = total / m.len() as i64;
        (avg as f64 / target as f64, avg)
    };
    let (ratio, usage) = usage_ratio(&metrics);
    let up_with_unready = !unready.is_empty() && ratio > 1.0;
    if !up_with_unready && missing.is_empty() {
        if (1.0 - ratio).abs() <= cfg.tolerance {
            return Ok((current, usage));
        }
        return Ok(((ratio * ready as f64).ceil() as i32, usage));
    }
    let fill = |v: i64| PodMetric {
        value: v,
        timestamp: now,
        window: 0.0,
    };
    for p in &missing {
        metrics.insert(p.clone(), fill(if ratio < 1.0 { target } else { 0 }));
    }
    if up_with_unready {
        for p in &unready {
            metrics.insert(p.clone(), fill(0));
        }
    }
    let (new_ratio, _) = usage_ratio(&metrics);
    if (1.0 - new_ratio).abs() <= cfg.tolerance
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok((current, usage));
    }
    let replicas = (new_ratio * metrics.len() as f64).ceil() as i32;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok((current, usage));
    }
    Ok((replicas, usage))
}

// --- Normalization (horizontal.go), pure over recorded history --------------------------------

/// A recommendation or a scale event at a monotonic time (seconds).
#[derive(Clone, Copy, Debug)]
struct Stamped {
    at: f64,
    value: i32,
    outdated: bool,
}

/// What the controller remembers per autoscaler (kube keeps it in memory too).
#[derive(Clone, Debug, Default)]
pub struct History {
    recommendations: Vec<Stamped>,
    scale_up: Vec<Stamped>,
    scale_down: Vec<Stamped>,
}

/// A condition set by the normalization: (type, status, reason, message).
type Cond = (&'static str, &'static str, &'static str, String);

/// The rules of one direction with kube's defaults filled in.
#[derive(Clone, Debug)]
pub struct Rules {
    pub window: i32,
    pub select: String,
    pub policies: Vec<(String, i32, i32)>,
}

impl Rules {
    fn of(r: Option<&HPAScalingRules>, up: bool, default_down_window: i32) -> Rules {
        let policies = r.and_then(|r| r.policies.clone()).unwrap_or_else(|| {
            if up {
                vec![
                    HPAScalingPolicy {
                        type_: "Pods".into(),
                        value: 4,
                        period_seconds: 15,
                    },
                    HPAScalingPolicy {
                        type_: "Percent".into(),
                        value: 100,
                        period_seconds: 15,
                    },
                ]
            } else {
                vec![HPAScalingPolicy {
                    type_: "Percent".into(),
                    value: 100,
                    period_seconds: 15,
                }]
            }
        });
        Rules {
            window: r
                .and_then(|r| r.stabilization_window_seconds)
                .unwrap_or(if up { 0 } else { default_down_window }),
            select: r
                .and_then(|r| r.select_policy.clone())
                .unwrap_or_else(|| "Max".into()),
            policies: policies
                .into_iter()
                .map(|p| (p.type_, p.value, p.period_seconds))
                .collect(),
        }
    }
}

impl History {
    /// kube's `recordInitialRecommendation`.
    fn initial(&mut self, current: i32, now: f64) {
        if self.recommendations.is_empty() {
            self.recommendations.push(Stamped {
                at: now,
                value: current,
                outdated: false,
            });
        }
    }

    /// Records `value` in place of a sample older than `cutoff`, or appends it.
    fn record(&mut self, value: i32, now: f64, cutoff: f64) {
        let s = Stamped {
            at: now,
            value,
            outdated: false,
        };
        match self.recommendations.iter_mut().find(|r| r.at < cutoff) {
            Some(r) => *r = s,
            None => self.recommendations.push(s),
        }
    }

    /// kube's `stabilizeRecommendation` (no behavior): the highest recommendation of the
    /// window.
    fn stabilize(&mut self, desired: i32, window: f64, now: f64) -> i32 {
        let cutoff = now - window;
        let max = self
            .recommendations
            .iter()
            .filter(|r| r.at > cutoff)
            .map(|r| r.value)
            .fold(desired, i32::max);
        self.record(desired, now, cutoff);
        max
    }

    /// kube's `stabilizeRecommendationWithBehaviors`.
    fn stabilize_with_behaviors(
        &mut self,
        current: i32,
        desired: i32,
        up: &Rules,
        down: &Rules,
        now: f64,
    ) -> (i32, &'static str, &'static str) {
        let up_cutoff = now - f64::from(up.window);
        let down_cutoff = now - f64::from(down.window);
        let (mut up_rec, mut down_rec) = (desired, desired);
        for r in &self.recommendations {
            if r.at > up_cutoff {
                up_rec = up_rec.min(r.value);
            }
            if r.at > down_cutoff {
                down_rec = down_rec.max(r.value);
            }
        }
        let mut rec = current.max(up_rec);
        rec = rec.min(down_rec);
        self.record(desired, now, up_cutoff.min(down_cutoff));
        if desired >= current {
            (
                rec,
                "ScaleUpStabilized",
                "recent recommendations were lower than current one, applying the lowest recent recommendation",
            )
        } else {
            (
                rec,
                "ScaleDownStabilized",
                "recent recommendations were higher than current one, applying the highest recent recommendation",
            )
        }
    }

    /// kube's `storeScaleEvent` (only with a behavior).
    fn store_scale_event(&mut self, up: &Rules, down: &Rules, prev: i32, new: i32, now: f64) {
        let (events, rules) = if new > prev {
            (&mut self.scale_up, up)
        } else {
            (&mut self.scale_down, down)
        };
        let longest = rules.policies.iter().map(|p| p.2).max().unwrap_or(0);
        for e in events.iter_mut() {
            if e.at < now - f64::from(longest) {
                e.outdated = true;
            }
        }
        let e = Stamped {
            at: now,
            value: (new - prev).abs(),
            outdated: false,
        };
        match events.iter_mut().find(|e| e.outdated) {
            Some(old) => *old = e,
            None => events.push(e),
        }
    }
}

/// Replicas changed by `events` within the last `period` seconds.
fn change_in_period(events: &[Stamped], period: i32, now: f64) -> i32 {
    let cutoff = now - f64::from(period);
    events
        .iter()
        .filter(|e| e.at > cutoff)
        .map(|e| e.value)
        .sum()
}

/// kube's `calculateScaleUpLimitWithScalingRules`.
fn scale_up_limit(current: i32, h: &History, rules: &Rules, now: f64) -> i32 {
    if rules.select == "Disabled" {
        return current;
    }
    let min_select = rules.select == "Min";
    let mut result = if min_select { i32::MAX } else { i32::MIN };
    for (kind, value, period) in &rules.policies {
        let start = current - change_in_period(&h.scale_up, *period, now)
            + change_in_period(&h.scale_down, *period, now);
        let proposed = if kind == "Pods" {
            start + value
        } else {
            (f64::from(start) * (1.0 + f64::from(*value) / 100.0)).ceil() as i32
        };
        result = if min_select {
            result.min(proposed)
        } else {
            result.max(proposed)
        };
    }
    result
}

/// kube's `calculateScaleDownLimitWithBehaviors`.
fn scale_down_limit(current: i32, h: &History, rules: &Rules, now: f64) -> i32 {
    if rules.select == "Disabled" {
        return current;
    }
    let min_select = rules.select == "Min";
    let mut result = if min_select { i32::MIN } else { i32::MAX };
    for (kind, value, period) in &rules.policies {
        let start = current - change_in_period(&h.scale_up, *period, now)
            + change_in_period(&h.scale_down, *period, now);
        let proposed = if kind == "Pods" {
            start - value
        } else {
            (f64::from(start) * (1.0 - f64::from(*value) / 100.0)) as i32
        };
        result = if min_select {
            result.max(proposed)
        } else {
            result.min(proposed)
        };
    }
    result
}

/// kube's `normalizeDesiredReplicas` (no behavior): (replicas, conditions).
pub fn normalize(
    h: &mut History,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    window: f64,
    now: f64,
) -> (i32, Vec<Cond>) {
    let mut conds = Vec::new();
    let stabilized = h.stabilize(desired, window, now);
    if stabilized != desired {
        conds.push((
            "AbleToScale",
            "True",
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation".into(),
        ));
    } else {
        conds.push((
            "AbleToScale",
            "True",
            "ReadyForNewScale",
            "recommended size matches current size".into(),
        ));
    }
    // convertDesiredReplicasWithRules
    let up_limit = (2 * current).max(4);
    let (max_allowed, mut reason, mut message) = if max > up_limit {
        (
            up_limit,
            "ScaleUpLimit",
            "the desired replica count is increasing faster than the maximum scale rate",
        )
    } else {
        (
            max,
            "TooManyReplicas",
            "the desired replica count is more than the maximum replica count",
        )
    };
    let out = if stabilized < min {
        reason = "TooFewReplicas";
        message = "the desired replica count is less than the minimum replica count";
        min
    } else if stabilized > max_allowed {
        max_allowed
    } else {
        reason = "DesiredWithinRange";
        message = "the desired count is within the acceptable range";
        stabilized
    };
    let status = if out == stabilized { "False" } else { "True" };
    conds.push(("ScalingLimited", status, reason, message.into()));
    (out, conds)
}

/// kube's `normalizeDesiredReplicasWithBehaviors`: (replicas, conditions).
#[allow(clippy::too_many_arguments)]
pub fn normalize_with_behaviors(
    h: &mut History,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    up: &Rules,
    down: &Rules,
    now: f64,
) -> (i32, Vec<Cond>) {
    let mut conds = Vec::new();
    let (stabilized, reason, message) = h.stabilize_with_behaviors(current, desired, up, down, now);
    if stabilized != desired {
        conds.push(("AbleToScale", "True", reason, message.into()));
    } else {
        conds.push((
            "AbleToScale",
            "True",
            "ReadyForNewScale",
            "recommended size matches current size".into(),
        ));
    }
    // convertDesiredReplicasWithBehaviorRate
    let mut out = stabilized;
    let mut reason = "DesiredWithinRange";
    let mut message = "the desired count is within the acceptable range";
    if stabilized > current {
        let limit = scale_up_limit(current, h, up, now).max(current);
        let (allowed, r, m) = if max > limit {
            (
                limit,
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate",
            )
        } else {
            (
                max,
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            )
        };
        if stabilized > allowed {
            (out, reason, message) = (allowed, r, m);
        }
    } else if stabilized < current {
        let limit = scale_down_limit(current, h, down, now).min(current);
        let (allowed, r, m) = if min < limit {
            (
                limit,
                "ScaleDownLimit",
                "the desired replica count is decreasing faster than the maximum scale rate",
            )
        } else {
            (
                min,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            )
        };
        if stabilized < allowed {
            (out, reason, message) = (allowed, r, m);
        }
    }
    let status = if out == stabilized { "False" } else { "True" };
    conds.push(("ScalingLimited", status, reason, message.into()));
    (out, conds)
}

// --- Quantities ---------------------------------------------------------------------------------

/// A quantity's milli value rounded up (kube's `MilliValue`), including `n`/`u` suffixes.
pub fn milli(q: &str) -> Option<i64> {
    let q = q.trim();
    for (suffix, per_milli) in [("n", 1_000_000i128), ("u", 1_000)] {
        if let Some(num) = q.strip_suffix(suffix) {
            let v: i128 = num.parse().ok()?;
            return i64::try_from((v + per_milli - 1).div_euclid(per_milli)).ok();
        }
    }
    barge_apiserver::admission::quantity::Quantity::parse(q)
        .and_then(|v| i64::try_from(v.milli).ok())
}

/// A milli value as kube prints `NewMilliQuantity(v, DecimalSI)`.
pub fn milli_string(m: i64) -> String {
    if m % 1000 != 0 {
        return format!("{m}m");
    }
    let mut v = m / 1000;
    let mut i = 0;
    const SUFFIX: [&str; 7] = ["", "k", "M", "G", "T", "P", "E"];
    while v != 0 && v % 1000 == 0 && i < 6 {
        v /= 1000;
        i += 1;
    }
    format!("{v}{}", SUFFIX[i])
}

// --- The controller -----------------------------------------------------------------------------

/// Runs the controller until cancelled.
pub async fn run(client: Client, cfg: HpaConfig) {
    let start = Instant::now();
    let mut histories: HashMap<String, History> = HashMap::new();
    // Each autoscaler's target selector as last seen (kube's `hpaSelectors`), for the
    // ambiguous-selector check.
    let mut selectors: HashMap<String, String> = HashMap::new();
    let mut tick = tokio::time::interval(cfg.sync_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let api: Api<HorizontalPodAutoscaler> = Api::all(client.clone());
    loop {
        tick.tick().await;
        let list = match api.list(&ListParams::default()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!("hpa: listing autoscalers: {e}");
                continue;
            }
        };
        let keys: BTreeSet<String> = list.items.iter().map(key).collect();
        histories.retain(|k, _| keys.contains(k));
        selectors.retain(|k, _| keys.contains(k));
        for hpa in list.items {
            let h = histories.entry(key(&hpa)).or_default();
            let now = start.elapsed().as_secs_f64();
            if let Err(e) = reconcile(&client, &cfg, h, &mut selectors, hpa, now).await {
                tracing::debug!("hpa: {e}");
            }
        }
    }
}

fn key(h: &HorizontalPodAutoscaler) -> String {
    format!("{}/{}", h.namespace().unwrap_or_default(), h.name_any())
}

/// The conditions being built for one pass (kube's `setCondition`: the transition time
/// changes only with the status).
struct Conditions(Vec<HorizontalPodAutoscalerCondition>);

impl Conditions {
    fn set(&mut self, type_: &str, status: &str, reason: &str, message: String) {
        let now = now_time();
        match self.0.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = Some(now);
                }
                c.status = status.into();
                c.reason = Some(reason.into());
                c.message = Some(message);
            }
            None => self.0.push(HorizontalPodAutoscalerCondition {
                type_: type_.into(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(message),
                last_transition_time: Some(now),
            }),
        }
    }
}

/// The scale target's resource, from discovery.
async fn target_api(
    client: &Client,
    ns: &str,
    api_version: &str,
    kind: &str,
) -> Result<Api<DynamicObject>, String> {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (ar, _): (ApiResource, _) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|_| format!("no matches for kind {kind:?} in group {group:?}"))?;
    Ok(Api::namespaced_with(client.clone(), ns, &ar))
}

/// One pass over one autoscaler (kube's `reconcileAutoscaler`).
async fn reconcile(
    client: &Client,
    cfg: &HpaConfig,
    h: &mut History,
    selectors: &mut HashMap<String, String>,
    hpa: HorizontalPodAutoscaler,
    now: f64,
) -> Result<(), String> {
    let ns = hpa.namespace().unwrap_or_default();
    let spec = hpa.spec.clone().unwrap_or_default();
    let original = hpa.status.clone();
    let mut status = hpa.status.clone().unwrap_or_default();
    let mut conds = Conditions(status.conditions.take().unwrap_or_default());
    let target = &spec.scale_target_ref;
    let reference = format!("{}/{}/{}", target.kind, ns, target.name);
    let api_version = target.api_version.clone().unwrap_or_default();

    let scale = match target_api(client, &ns, &api_version, &target.kind).await {
        Ok(api) => api
            .get_scale(&target.name)
            .await
            .map(|s| (api, s))
            .map_err(|e| barge_events::error_message(&e)),
        Err(e) => Err(e),
    };
    let (target_api, scale) = match scale {
        Ok(s) => s,
        Err(e) => {
            events::record(
                client,
                COMPONENT,
                &hpa,
                Kind::Warning,
                "FailedGetScale",
                e.clone(),
            )
            .await;
            conds.set(
                "AbleToScale",
                "False",
                "FailedGetScale",
                format!("the HPA controller was unable to get the target's current scale: {e}"),
            );
            status.conditions = Some(conds.0);
            write_status(client, &hpa, original, status).await;
            return Err(format!(
                "failed to query scale subresource for {reference}: {e}"
            ));
        }
    };
    conds.set(
        "AbleToScale",
        "True",
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale".into(),
    );
    let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    h.initial(current, now);
    let min = spec.min_replicas.unwrap_or(1);
    let max = spec.max_replicas;
    let mut desired = 0;
    let mut reason = String::new();
    let mut rescale = true;
    let mut metric_statuses = status.current_metrics.clone();
    if current == 0 && min != 0 {
        desired = 0;
        rescale = false;
        conds.set(
            "ScalingActive",
            "False",
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero".into(),
        );
    } else if current > max {
        reason = "Current number of replicas above Spec.MaxReplicas".into();
        desired = max;
    } else if current < min {
        reason = "Current number of replicas below Spec.MinReplicas".into();
        desired = min;
    } else {
        let selector = scale
            .status
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        let computed = if selector.is_empty() {
            events::record(
                client,
                COMPONENT,
                &hpa,
                Kind::Warning,
                "SelectorRequired",
                "selector is required".into(),
            )
            .await;
            conds.set(
                "ScalingActive",
                "False",
                "InvalidSelector",
                "the HPA target's scale is missing a selector".into(),
            );
            Err("selector is required".to_string())
        } else {
            selectors.insert(key(&hpa), selector.clone());
            match ambiguous(client, &ns, &selector, selectors).await {
                Some(msg) => {
                    events::record(
                        client,
                        COMPONENT,
                        &hpa,
                        Kind::Warning,
                        "AmbiguousSelector",
                        msg.clone(),
                    )
                    .await;
                    conds.set("ScalingActive", "False", "AmbiguousSelector", msg.clone());
                    Err(msg)
                }
                None => {
                    compute_replicas(client, cfg, &hpa, &ns, &selector, current, &mut conds).await
                }
            }
        };
        match computed {
            Err(e) => {
                status.current_replicas = Some(current);
                status.conditions = Some(conds.0);
                write_status(client, &hpa, original, status).await;
                events::record(
                    client,
                    COMPONENT,
                    &hpa,
                    Kind::Warning,
                    "FailedComputeMetricsReplicas",
                    e.clone(),
                )
                .await;
                return Err(format!(
                    "failed to compute desired number of replicas based on listed metrics for {reference}: {e}"
                ));
            }
            Ok((metric_desired, metric_name, statuses)) => {
                metric_statuses = Some(statuses);
                let mut rescale_metric = String::new();
                if metric_desired > desired {
                    desired = metric_desired;
                    rescale_metric = metric_name;
                }
                if desired > current {
                    reason = format!("{rescale_metric} above target");
                }
                if desired < current {
                    reason = "All metrics below target".into();
                }
                let (out, cs) = match &spec.behavior {
                    None => normalize(
                        h,
                        current,
                        desired,
                        min,
                        max,
                        cfg.downscale_stabilization.as_secs_f64(),
                        now,
                    ),
                    Some(b) => {
                        let default_down = cfg.downscale_stabilization.as_secs() as i32;
                        let up = Rules::of(b.scale_up.as_ref(), true, default_down);
                        let down = Rules::of(b.scale_down.as_ref(), false, default_down);
                        normalize_with_behaviors(h, current, desired, min, max, &up, &down, now)
                    }
                };
                for (t, s, r, m) in cs {
                    conds.set(t, s, r, m);
                }
                desired = out;
                rescale = desired != current;
            }
        }
    }
    if rescale {
        let patch = serde_json::json!({"spec": {"replicas": desired}});
        match target_api
            .patch_scale(&target.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Err(e) => {
                let e = barge_events::error_message(&e);
                events::record(
                    client,
                    COMPONENT,
                    &hpa,
                    Kind::Warning,
                    "FailedRescale",
                    format!("New size: {desired}; reason: {reason}; error: {e}"),
                )
                .await;
                conds.set(
                    "AbleToScale",
                    "False",
                    "FailedUpdateScale",
                    format!("the HPA controller was unable to update the target scale: {e}"),
                );
                status.current_replicas = Some(current);
                status.conditions = Some(conds.0);
                write_status(client, &hpa, original, status).await;
                return Err(format!("failed to rescale {reference}: {e}"));
            }
            Ok(_) => {
                conds.set(
                    "AbleToScale",
                    "True",
                    "SucceededRescale",
                    format!("the HPA controller was able to update the target scale to {desired}"),
                );
                events::record(
                    client,
                    COMPONENT,
                    &hpa,
                    Kind::Normal,
                    "SuccessfulRescale",
                    format!("New size: {desired}; reason: {reason}"),
                )
                .await;
                if let Some(b) = &spec.behavior {
                    let d = cfg.downscale_stabilization.as_secs() as i32;
                    let up = Rules::of(b.scale_up.as_ref(), true, d);
                    let down = Rules::of(b.scale_down.as_ref(), false, d);
                    h.store_scale_event(&up, &down, current, desired, now);
                }
                tracing::info!(hpa = %key(&hpa), "rescaled {reference} from {current} to {desired}: {reason}");
            }
        }
    } else {
        desired = current;
    }
    // setStatus
    status.current_replicas = Some(current);
    status.desired_replicas = desired;
    status.current_metrics = metric_statuses;
    if rescale {
        status.last_scale_time = Some(now_time());
    }
    status.conditions = Some(conds.0);
    write_status(client, &hpa, original, status).await;
    Ok(())
}

/// Writes the status if it changed (kube's `updateStatusIfNeeded`), with `observedGeneration`.
async fn write_status(
    client: &Client,
    hpa: &HorizontalPodAutoscaler,
    original: Option<HorizontalPodAutoscalerStatus>,
    mut status: HorizontalPodAutoscalerStatus,
) {
    status.observed_generation = hpa.metadata.generation;
    if original.as_ref() == Some(&status) {
        return;
    }
    let mut obj = hpa.clone();
    obj.status = Some(status);
    let api: Api<HorizontalPodAutoscaler> =
        Api::namespaced(client.clone(), &hpa.namespace().unwrap_or_default());
    if let Err(e) = api
        .replace_status(&hpa.name_any(), &PostParams::default(), &obj)
        .await
    {
        tracing::debug!(hpa = %key(hpa), "hpa: writing status: {e}");
    }
}

/// kube's `computeReplicasForMetrics`: the largest proposal of the valid metrics, their
/// statuses (empty for the invalid ones), and ScalingActive.
#[allow(clippy::too_many_arguments)]
async fn compute_replicas(
    client: &Client,
    cfg: &HpaConfig,
    hpa: &HorizontalPodAutoscaler,
    ns: &str,
    selector: &str,
    current: i32,
    conds: &mut Conditions,
) -> Result<(i32, String, Vec<MetricStatus>), String> {
    let specs = hpa
        .spec
        .as_ref()
        .and_then(|s| s.metrics.clone())
        .unwrap_or_default();
    let mut statuses = vec![
        MetricStatus {
            type_: String::new(),
            ..Default::default()
        };
        specs.len()
    ];
    let (mut replicas, mut metric) = (0, String::new());
    let mut invalid = 0;
    let mut first: Option<(String, String)> = None;
    let pods = pods_of(client, ns, selector).await;
    for (i, spec) in specs.iter().enumerate() {
        let r = match (spec.type_.as_str(), &spec.resource) {
            ("Resource", Some(res)) => {
                let m = Metric {
                    name: &res.name,
                    target: &res.target,
                    container: None,
                };
                resource_metric(client, cfg, ns, selector, current, &pods, m)
                    .await
                    .map_err(|e| ("FailedGetResourceMetric", e))
            }
            ("ContainerResource", _) if spec.container_resource.is_some() => {
                let res = spec.container_resource.as_ref().expect("checked");
                let m = Metric {
                    name: &res.name,
                    target: &res.target,
                    container: Some(&res.container),
                };
                resource_metric(client, cfg, ns, selector, current, &pods, m)
                    .await
                    .map_err(|e| {
                        let e = format!(
                            "failed to get {} container metric value: {e}",
                            res.container
                        );
                        ("FailedGetContainerResourceMetric", e)
                    })
            }
            // barge serves no custom or external metrics API (no APIService aggregation):
            // these fail as kube's controller does in a cluster without a metrics adapter.
            ("Pods", _) if spec.pods.is_some() => {
                let m = &spec.pods.as_ref().expect("checked").metric;
                Err((
                    "FailedGetPodsMetric",
                    format!("unable to get metric {}: {NO_CUSTOM_METRICS}", m.name),
                ))
            }
            ("Object", _) if spec.object.is_some() => {
                let o = spec.object.as_ref().expect("checked");
                // kube's format string puts its arguments out of order
                // (`unable to get metric %s: %v on %s %s/%s` with the kind second).
                Err((
                    "FailedGetObjectMetric",
                    format!(
                        "unable to get metric {}: {} on {ns} {}/{NO_CUSTOM_METRICS}",
                        o.metric.name, o.described_object.kind, o.described_object.name
                    ),
                ))
            }
            ("External", _) if spec.external.is_some() => {
                let m = &spec.external.as_ref().expect("checked").metric;
                Err((
                    "FailedGetExternalMetric",
                    format!(
                        "unable to get external metric {ns}/{}/{}: unable to fetch metrics from external metrics API: the server could not find the requested resource (get {}.external.metrics.k8s.io)",
                        m.name,
                        go_label_selector(m.selector.as_ref()),
                        m.name
                    ),
                ))
            }
            (t, _) => Err((
                "InvalidMetricSourceType",
                format!("unknown metric source type {t:?}"),
            )),
        };
        match r {
            Ok((proposal, name, st)) => {
                statuses[i] = st;
                if replicas == 0 || proposal > replicas {
                    replicas = proposal;
                    metric = name;
                }
            }
            Err((reason, e)) => {
                // getUnableComputeReplicaCountCondition: an event per failure.
                events::record(client, COMPONENT, hpa, Kind::Warning, reason, e.clone()).await;
                if first.is_none() {
                    first = Some((reason.to_string(), e));
                }
                invalid += 1;
            }
        }
    }
    if let Some((reason, e)) = &first {
        if invalid >= specs.len() || replicas < current {
            conds.set(
                "ScalingActive",
                "False",
                reason,
                format!("the HPA was unable to compute the replica count: {e}"),
            );
            return Err(format!(
                "invalid metrics ({invalid} invalid out of {}), first error is: {e}",
                specs.len()
            ));
        }
    }
    conds.set(
        "ScalingActive",
        "True",
        "ValidMetricFound",
        format!("the HPA was able to successfully calculate a replica count from {metric}"),
    );
    Ok((replicas, metric, statuses))
}

/// kube's `validateAndParseSelector` check: when the pods of `selector` in `ns` are also
/// selected by another autoscaler's target, its message (`pods by selector S are controlled
/// by multiple HPAs: [ns/a ns/b]`).
async fn ambiguous(
    client: &Client,
    ns: &str,
    selector: &str,
    selectors: &HashMap<String, String>,
) -> Option<String> {
    use barge_apiserver::selectors::LabelSelector;
    let prefix = format!("{ns}/");
    let others: Vec<(&String, LabelSelector)> = selectors
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .filter_map(|(k, s)| LabelSelector::parse(s).ok().map(|sel| (k, sel)))
        .collect();
    if others.len() < 2 {
        return None;
    }
    let pods = pods_of(client, ns, selector).await.ok()?;
    let mut selecting: BTreeSet<&String> = BTreeSet::new();
    for p in &pods {
        let labels = serde_json::to_value(&p.metadata.labels).ok();
        for (k, sel) in &others {
            if sel.matches(labels.as_ref()) {
                selecting.insert(k);
            }
        }
    }
    (selecting.len() > 1).then(|| {
        let names: Vec<&str> = selecting.iter().map(|s| s.as_str()).collect();
        format!(
            "pods by selector {selector} are controlled by multiple HPAs: [{}]",
            names.join(" ")
        )
    })
}

/// What kube's custom metrics client says when no `custom.metrics.k8s.io` API is registered.
const NO_CUSTOM_METRICS: &str = "unable to fetch metrics from custom metrics API: no custom metrics API (custom.metrics.k8s.io) registered";

/// A label selector as Go prints a `*metav1.LabelSelector` with `%+v` (its generated
/// `String()`): `&LabelSelector{MatchLabels:map[string]string{k: v,},MatchExpressions:[]…{},}`,
/// `nil` for none.
fn go_label_selector(
    sel: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
) -> String {
    let Some(sel) = sel else {
        return "nil".into();
    };
    let labels: String = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}: {v},"))
        .collect();
    let exprs: String = sel
        .match_expressions
        .iter()
        .flatten()
        .map(|e| {
            format!(
                "LabelSelectorRequirement{{Key:{},Operator:{},Values:[{}],}},",
                e.key,
                e.operator,
                e.values.clone().unwrap_or_default().join(" ")
            )
        })
        .collect();
    format!(
        "&LabelSelector{{MatchLabels:map[string]string{{{labels}}},MatchExpressions:[]LabelSelectorRequirement{{{exprs}}},}}"
    )
}

/// The pods of the target (kube lists them from its informer), or the error.
async fn pods_of(client: &Client, ns: &str, selector: &str) -> Result<Vec<Pod>, String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default().labels(selector))
        .await
        .map(|l| l.items)
        .map_err(|e| barge_events::error_message(&e))
}

/// A pod as the calculation sees it, with its containers' requests of `resource` (only
/// `container`'s for a ContainerResource metric).
fn pod_view(p: &Pod, resource: &str, container: Option<&str>) -> PodView {
    let name = p.name_any();
    let st = p.status.as_ref();
    let ready = st
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| {
            (
                c.status == "True",
                c.status == "False",
                c.last_transition_time
                    .as_ref()
                    .map_or(0.0, |t| t.0.as_second() as f64),
            )
        });
    let mut request = Ok(0);
    let containers = p.spec.iter().flat_map(|s| s.containers.iter());
    for c in containers.filter(|c| container.is_none_or(|n| c.name == n)) {
        let r = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(resource))
            .and_then(|q| milli(&q.0));
        match (r, &mut request) {
            (Some(v), Ok(sum)) => *sum += v,
            (None, Ok(_)) => {
                request = Err(format!(
                    "missing request for {resource} in container {} of Pod {name}",
                    c.name
                ));
            }
            _ => {}
        }
    }
    PodView {
        phase: st.and_then(|s| s.phase.clone()).unwrap_or_default(),
        deleting: p.metadata.deletion_timestamp.is_some(),
        ready,
        start: st
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0.as_second() as f64),
        request,
        name,
    }
}

/// The pods' usage of `resource` from `metrics.k8s.io` (kube's `GetResourceMetric`): a pod
/// counts only when every container reports it.
async fn pod_metrics(
    client: &Client,
    ns: &str,
    selector: &str,
    resource: &str,
    container: Option<&str>,
) -> Result<BTreeMap<String, PodMetric>, String> {
    let ar = ApiResource {
        group: "metrics.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics.k8s.io/v1beta1".into(),
        kind: "PodMetrics".into(),
        plural: "pods".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| {
            format!(
                "unable to fetch metrics from resource metrics API: {}",
                barge_events::error_message(&e)
            )
        })?;
    if list.items.is_empty() {
        return Err("no metrics returned from resource metrics API".into());
    }
    let mut out = BTreeMap::new();
    for m in list.items {
        let mut containers = m.data["containers"].as_array().cloned().unwrap_or_default();
        if let Some(want) = container {
            // kube's getContainerMetrics: a pod without the container fails the metric.
            containers.retain(|c| c["name"] == want);
            if containers.is_empty() {
                return Err(format!(
                    "failed to get container metrics: container {want} not present in metrics for pod {ns}/{}",
                    m.name_any()
                ));
            }
        }
        let mut sum = 0;
        let mut complete = !containers.is_empty();
        for c in &containers {
            match c["usage"][resource].as_str().and_then(milli) {
                Some(v) => sum += v,
                None => {
                    complete = false;
                    break;
                }
            }
        }
        if !complete {
            continue;
        }
        let timestamp = m.data["timestamp"]
            .as_str()
            .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
            .map_or(0.0, |t| t.as_second() as f64);
        let window = m.data["window"]
            .as_str()
            .and_then(|w| barge_stdx::units::parse_go_duration(w).ok())
            .map_or(0.0, |ns| ns as f64 / 1e9);
        out.insert(
            m.name_any(),
            PodMetric {
                value: sum,
                timestamp,
                window,
            },
        );
    }
    Ok(out)
}

/// A Resource or ContainerResource metric of an HPA's spec.
#[derive(Clone, Copy)]
struct Metric<'a> {
    /// `cpu`, `memory`.
    name: &'a str,
    target: &'a MetricTarget,
    /// The container whose usage and requests count (`ContainerResource`); `None`: the pod's.
    container: Option<&'a str>,
}

/// kube's `computeStatusForResourceMetricGeneric`: (proposal, metric name, status).
#[allow(clippy::too_many_arguments)]
async fn resource_metric(
    client: &Client,
    cfg: &HpaConfig,
    ns: &str,
    selector: &str,
    current: i32,
    pods: &Result<Vec<Pod>, String>,
    m: Metric<'_>,
) -> Result<(i32, String, MetricStatus), String> {
    let (name, target, container) = (m.name, m.target, m.container);
    let wall = now_wall();
    let views = |pods: &Vec<Pod>| {
        pods.iter()
            .map(|p| pod_view(p, name, container))
            .collect::<Vec<_>>()
    };
    let status = |current: MetricValueStatus| match container {
        None => MetricStatus {
            type_: "Resource".into(),
            resource: Some(ResourceMetricStatus {
                name: name.into(),
                current,
            }),
            ..Default::default()
        },
        Some(c) => MetricStatus {
            type_: "ContainerResource".into(),
            container_resource: Some(ContainerResourceMetricStatus {
                name: name.into(),
                container: c.into(),
                current,
            }),
            ..Default::default()
        },
    };
    if let Some(avg) = &target.average_value {
        let target_milli = milli(&avg.0).unwrap_or(0);
        let r = async {
            let metrics = pod_metrics(client, ns, selector, name, container)
                .await
                .map_err(|e| format!("unable to get metrics for resource {name}: {e}"))?;
            let pods = pods.as_ref().map_err(Clone::clone)?;
            plain_replicas(
                current,
                target_milli,
                &views(pods),
                metrics,
                name == "cpu",
                cfg,
                wall,
            )
        }
        .await
        .map_err(|e| format!("failed to get {name} usage: {e}"))?;
        let (replicas, usage) = r;
        return Ok((
            replicas,
            format!("{name} resource"),
            status(MetricValueStatus {
                average_value: Some(Quantity(milli_string(usage))),
                ..Default::default()
            }),
        ));
    }
    let Some(util) = target.average_utilization else {
        return Err("invalid resource metric source: neither an average utilization target nor an average value (usage) target was set".into());
    };
    let (replicas, pct, raw) = async {
        let metrics = pod_metrics(client, ns, selector, name, container)
            .await
            .map_err(|e| format!("unable to get metrics for resource {name}: {e}"))?;
        let pods = pods.as_ref().map_err(Clone::clone)?;
        resource_replicas(
            current,
            util,
            &views(pods),
            metrics,
            name == "cpu",
            cfg,
            wall,
        )
    }
    .await
    .map_err(|e| format!("failed to get {name} utilization: {e}"))?;
    let what = if container.is_some() {
        "container resource"
    } else {
        "resource"
    };
    Ok((
        replicas,
        format!("{name} {what} utilization (percentage of request)"),
        status(MetricValueStatus {
            average_utilization: Some(pct),
            average_value: Some(Quantity(milli_string(raw))),
            ..Default::default()
        }),
    ))
}

/// Now in Unix seconds (pod and metric times are wall-clock).
fn now_wall() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_resource_counts_one_containers_requests() {
        let p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [
                {"name": "app", "resources": {"requests": {"cpu": "200m"}}},
                {"name": "sidecar"}
            ]}
        }))
        .unwrap();
        assert_eq!(pod_view(&p, "cpu", Some("app")).request, Ok(200));
        assert_eq!(
            pod_view(&p, "cpu", None).request,
            Err("missing request for cpu in container sidecar of Pod p".into()),
            "a Resource metric needs every container's request"
        );
        assert_eq!(pod_view(&p, "cpu", Some("nosuch")).request, Ok(0));
    }

    fn pod(name: &str, request: i64, start_ago: f64, now: f64) -> PodView {
        PodView {
            name: name.into(),
            phase: "Running".into(),
            deleting: false,
            ready: Some((true, false, now - start_ago + 5.0)),
            start: Some(now - start_ago),
            request: Ok(request),
        }
    }

    fn metric(v: i64, now: f64) -> PodMetric {
        PodMetric {
            value: v,
            timestamp: now,
            window: 10.0,
        }
    }

    const NOW: f64 = 1_000_000.0;

    fn metrics(values: &[(&str, i64)]) -> BTreeMap<String, PodMetric> {
        values
            .iter()
            .map(|(n, v)| (n.to_string(), metric(*v, NOW)))
            .collect()
    }

    #[test]
    fn utilization_scales_to_ceil_of_ratio_times_ready_pods() {
        let cfg = HpaConfig::default();
        let pods = vec![pod("a", 100, 600.0, NOW), pod("b", 100, 600.0, NOW)];
        // 90 % + 110 % of requests → 100 % against a 50 % target → ratio 2 → 4 pods.
        let (r, u, raw) = resource_replicas(
            2,
            50,
            &pods,
            metrics(&[("a", 90), ("b", 110)]),
            true,
            &cfg,
            NOW,
        )
        .unwrap();
        assert_eq!((r, u, raw), (4, 100, 100));
        // Within the tolerance: no change.
        let (r, u, _) = resource_replicas(
            2,
            50,
            &pods,
            metrics(&[("a", 52), ("b", 54)]),
            true,
            &cfg,
            NOW,
        )
        .unwrap();
        assert_eq!((r, u), (2, 53));
        // Down: 10 % against 50 % → ceil(0.2 × 2) = 1.
        let (r, _, _) = resource_replicas(
            2,
            50,
            &pods,
            metrics(&[("a", 10), ("b", 10)]),
            true,
            &cfg,
            NOW,
        )
        .unwrap();
        assert_eq!(r, 1);
    }

    #[test]
    fn missing_requests_and_metrics_follow_kube() {
        let cfg = HpaConfig::default();
        let mut bad = pod("a", 0, 600.0, NOW);
        bad.request = Err("missing request for cpu in container c of Pod a".into());
        let e =
            resource_replicas(1, 50, &[bad], metrics(&[("a", 10)]), true, &cfg, NOW).unwrap_err();
        assert_eq!(e, "missing request for cpu in container c of Pod a");
        let e = resource_replicas(1, 50, &[], metrics(&[]), true, &cfg, NOW).unwrap_err();
        assert_eq!(
            e,
            "no pods returned by selector while calculating replica count"
        );
        // Scale up with a pod missing metrics: it counts as 0 → 200 % on one of two pods
        // becomes 100 % over two → ratio 2 → 4.
        let pods = vec![pod("a", 100, 600.0, NOW), pod("b", 100, 600.0, NOW)];
        let (r, _, _) =
            resource_replicas(2, 50, &pods, metrics(&[("a", 200)]), true, &cfg, NOW).unwrap();
        assert_eq!(r, 4);
        // Scale down with a missing pod: assumed at 100 % of request, which reverses the
        // direction (20 % → 60 % > 50 %): no change.
        let (r, _, _) =
            resource_replicas(2, 50, &pods, metrics(&[("a", 20)]), true, &cfg, NOW).unwrap();
        assert_eq!(r, 2);
        // Every pod unready (pending): no metrics left.
        let mut pending = pod("a", 100, 1.0, NOW);
        pending.phase = "Pending".into();
        let e = resource_replicas(1, 50, &[pending], metrics(&[("a", 100)]), true, &cfg, NOW)
            .unwrap_err();
        assert_eq!(
            e,
            "did not receive metrics for targeted pods (pods might be unready)"
        );
    }

    #[test]
    fn a_fresh_cpu_sample_from_before_readiness_is_unready() {
        let cfg = HpaConfig::default();
        // Started 20 s ago, ready 5 s later; a sample older than ready + window.
        let p = pod("a", 100, 20.0, NOW);
        let m: BTreeMap<String, PodMetric> = [(
            "a".to_string(),
            PodMetric {
                value: 100,
                timestamp: NOW - 10.0,
                window: 10.0,
            },
        )]
        .into();
        let (_, unready, _, _) = group_pods(std::slice::from_ref(&p), &m, true, &cfg, NOW);
        assert!(unready.contains("a"));
        // Memory ignores readiness.
        let (ready, _, _, _) = group_pods(&[p], &m, false, &cfg, NOW);
        assert_eq!(ready, 1);
    }

    #[test]
    fn average_value_targets() {
        let cfg = HpaConfig::default();
        let pods = vec![pod("a", 0, 600.0, NOW), pod("b", 0, 600.0, NOW)];
        // 300m average against 100m → 6.
        let (r, usage) = plain_replicas(
            2,
            100,
            &pods,
            metrics(&[("a", 200), ("b", 400)]),
            true,
            &cfg,
            NOW,
        )
        .unwrap();
        assert_eq!((r, usage), (6, 300));
    }

    #[test]
    fn legacy_normalization_stabilizes_down_and_limits_up() {
        let mut h = History::default();
        h.initial(3, 0.0);
        // A lower recommendation within the window keeps the highest (3).
        let (r, c) = normalize(&mut h, 3, 1, 1, 10, 300.0, 10.0);
        assert_eq!(r, 3);
        assert_eq!(c[0].2, "ScaleDownStabilized");
        // After the window, down to 1.
        let (r, _) = normalize(&mut h, 3, 1, 1, 10, 300.0, 400.0);
        assert_eq!(r, 1);
        // Up from 1 is limited to max(2, 4) = 4.
        let (r, c) = normalize(&mut h, 1, 9, 1, 10, 300.0, 401.0);
        assert_eq!(r, 4);
        assert_eq!(
            c[1],
            (
                "ScalingLimited",
                "True",
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate"
                    .to_string()
            )
        );
        // Above max.
        let (r, c) = normalize(&mut h, 8, 20, 1, 10, 300.0, 402.0);
        assert_eq!(r, 10);
        assert_eq!(c[1].2, "TooManyReplicas");
    }

    #[test]
    fn behavior_policies_limit_the_step() {
        let up = Rules {
            window: 0,
            select: "Max".into(),
            policies: vec![("Pods".into(), 1, 60)],
        };
        let down = Rules {
            window: 0,
            select: "Max".into(),
            policies: vec![("Percent".into(), 50, 60)],
        };
        let mut h = History::default();
        h.initial(1, 0.0);
        let (r, c) = normalize_with_behaviors(&mut h, 1, 5, 1, 10, &up, &down, 1.0);
        assert_eq!(r, 2);
        assert_eq!(c[1].2, "ScaleUpLimit");
        h.store_scale_event(&up, &down, 1, 2, 1.0);
        // Within the period the one-pod budget is spent.
        let (r, _) = normalize_with_behaviors(&mut h, 2, 5, 1, 10, &up, &down, 30.0);
        assert_eq!(r, 2);
        // After it, one more.
        let (r, _) = normalize_with_behaviors(&mut h, 2, 5, 1, 10, &up, &down, 70.0);
        assert_eq!(r, 3);
        // Down by at most 50 % of 8.
        let (r, c) = normalize_with_behaviors(&mut h, 8, 1, 1, 10, &up, &down, 200.0);
        assert_eq!(r, 4);
        assert_eq!(c[1].2, "ScaleDownLimit");
        // Disabled: no change.
        let off = Rules {
            select: "Disabled".into(),
            ..up.clone()
        };
        let (r, _) = normalize_with_behaviors(&mut h, 2, 5, 1, 10, &off, &down, 300.0);
        assert_eq!(r, 2);
    }

    #[test]
    fn behavior_stabilization_window_holds_scale_down() {
        let up = Rules::of(None, true, 300);
        let down = Rules::of(None, false, 300);
        assert_eq!(up.policies.len(), 2);
        assert_eq!(down.window, 300);
        let mut h = History::default();
        h.initial(4, 0.0);
        let (r, c) = normalize_with_behaviors(&mut h, 4, 1, 1, 10, &up, &down, 10.0);
        assert_eq!(r, 4);
        assert_eq!(c[0].2, "ScaleDownStabilized");
        let (r, _) = normalize_with_behaviors(&mut h, 4, 1, 1, 10, &up, &down, 400.0);
        assert_eq!(r, 1);
    }

    #[test]
    fn quantities() {
        assert_eq!(milli("250m"), Some(250));
        assert_eq!(milli("1"), Some(1000));
        assert_eq!(milli("1500000n"), Some(2));
        assert_eq!(milli("64Mi"), Some(64 * 1024 * 1024 * 1000));
        assert_eq!(milli_string(250), "250m");
        assert_eq!(milli_string(1000), "1");
        assert_eq!(milli_string(3_000_000), "3k");
        assert_eq!(milli_string(10_485_760_000), "10485760");
    }
}
