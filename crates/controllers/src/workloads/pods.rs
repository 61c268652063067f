//! Pod helpers shared by the workload controllers, as kube's `pkg/controller/controller_utils.go`
//! and `pkg/api/v1/pod/util.go`: selectors, controller references, readiness and availability
//! (`minReadySeconds`), the order in which surplus pods are deleted (`ActivePodsWithRanks`),
//! pod creation from a template and "slow start" batches, and the one way every workload
//! controller creates and deletes its pods ([`create_pods`], [`delete_pods`]: expectations,
//! batches, events).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::jiff::Timestamp;

/// The current time as the API's timestamps carry it.
pub fn now() -> Timestamp {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or_default();
    Timestamp::from_nanosecond(nanos).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// `now` truncated to seconds (the API's `Time` has second precision on the wire).
pub fn now_time() -> Time {
    Time(Timestamp::from_second(now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Seconds from `a` to `b` (negative when `b` is earlier).
pub fn seconds_between(a: &Time, b: Timestamp) -> f64 {
    (b.as_nanosecond() - a.0.as_nanosecond()) as f64 / 1e9
}

/// The owner reference with `controller: true`, if any (`metav1.GetControllerOf`).
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
}

/// A controller reference to an owner, with `blockOwnerDeletion` (`metav1.NewControllerRef`).
pub fn controller_ref(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The merge patch by which a controller adopts an orphan (kube's `ClaimObject` adoption):
/// its owner references plus `owner`, conditional on the `resourceVersion` it was seen at.
pub fn adopt_patch(meta: &ObjectMeta, owner: OwnerReference) -> serde_json::Value {
    let mut refs = meta.owner_references.clone().unwrap_or_default();
    refs.push(owner);
    serde_json::json!({"metadata": {"ownerReferences": refs, "resourceVersion": meta.resource_version}})
}

/// The merge patch by which the controller `owner_uid` releases an object that stopped
/// matching its selector: its other owner references (none: the field removed), conditional
/// on the `resourceVersion` it was seen at.
pub fn release_patch(meta: &ObjectMeta, owner_uid: &str) -> serde_json::Value {
    let refs: Vec<&OwnerReference> = meta
        .owner_references
        .iter()
        .flatten()
        .filter(|o| o.uid != owner_uid)
        .collect();
    let refs = if refs.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::json!(refs)
    };
    serde_json::json!({"metadata": {"ownerReferences": refs, "resourceVersion": meta.resource_version}})
}

/// `labels` matched by a label selector (`metav1.LabelSelectorAsSelector`); an empty selector
/// matches everything, as kube's does.
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if let Some(ml) = &sel.match_labels {
        if !map_matches(ml, labels) {
            return false;
        }
    }
    for e in sel.match_expressions.iter().flatten() {
        let v = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        let ok = match e.operator.as_str() {
            "In" => v.is_some_and(|v| values.contains(v)),
            "NotIn" => v.is_none_or(|v| !values.contains(v)),
            "Exists" => v.is_some(),
            "DoesNotExist" => v.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// True when the selector selects nothing by construction (no labels, no expressions): kube's
/// controllers refuse to act on such a selector rather than take every pod.
pub fn selector_is_empty(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|m| m.is_empty())
}

/// Every key/value of `sel` present in `labels` (a ReplicationController's selector).
pub fn map_matches(sel: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Not terminated and not being deleted (`controller.IsPodActive`).
pub fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

/// `Succeeded` or `Failed`.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// The phase as written by the node (Pending when none).
pub fn pod_phase(pod: &Pod) -> &str {
    phase(pod)
}

fn ready_since(pod: &Pod) -> Option<Option<&Time>> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.as_ref())
}

/// The pod's `Ready` condition is `True` (`podutil.IsPodReady`).
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready` seconds at `now` (`podutil.IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready <= 0 => true,
        Some(None) => false,
        Some(Some(t)) => seconds_between(t, now) >= f64::from(min_ready),
    }
}

/// Seconds until a ready pod becomes available, if it is ready but not yet available.
pub fn seconds_to_available(pod: &Pod, min_ready: i32, now: Timestamp) -> Option<f64> {
    match ready_since(pod) {
        Some(Some(t)) if min_ready > 0 => {
            let left = f64::from(min_ready) - seconds_between(t, now);
            (left > 0.0).then_some(left)
        }
        _ => None,
    }
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

fn phase_rank(pod: &Pod) -> u8 {
    match phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

fn deletion_cost(pod: &Pod) -> i64 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("controller.kubernetes.io/pod-deletion-cost"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// kube's logarithmic bucket of a duration (`LogarithmicScaleDown`): durations within the same
/// power of two compare equal.
fn log_bucket(since: Option<&Time>, now: Timestamp) -> i64 {
    match since {
        None => i64::MAX,
        Some(t) => {
            let secs = seconds_between(t, now).max(0.0) as u64 + 1;
            i64::from(63 - secs.leading_zeros() as i32)
        }
    }
}

/// The order in which surplus pods are deleted (`controller.ActivePodsWithRanks.Less`, with
/// `LogarithmicScaleDown`): unscheduled before scheduled, Pending < Unknown < Running, not
/// ready before ready, lower `pod-deletion-cost` first, pods doubled up on a node (higher
/// `rank`) first, ready for less time first, more restarts first, newer first, then by uid.
pub fn deletion_order(a: &Pod, rank_a: usize, b: &Pod, rank_b: usize, now: Timestamp) -> Ordering {
    let node = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    node(a)
        .cmp(&node(b))
        .then(phase_rank(a).cmp(&phase_rank(b)))
        .then(is_ready(a).cmp(&is_ready(b)))
        .then(deletion_cost(a).cmp(&deletion_cost(b)))
        .then(rank_b.cmp(&rank_a))
        .then_with(|| {
            if is_ready(a) && is_ready(b) {
                let ta = ready_since(a).flatten();
                let tb = ready_since(b).flatten();
                log_bucket(ta, now).cmp(&log_bucket(tb, now))
            } else {
                Ordering::Equal
            }
        })
        .then(restarts(b).cmp(&restarts(a)))
        .then_with(|| {
            let ca = log_bucket(a.metadata.creation_timestamp.as_ref(), now);
            let cb = log_bucket(b.metadata.creation_timestamp.as_ref(), now);
            ca.cmp(&cb)
        })
        .then_with(|| a.metadata.uid.cmp(&b.metadata.uid))
}

/// The `n` pods to delete from `pods`, ranked as kube does (ranks: how many of `related`
/// share each pod's node).
pub fn pods_to_delete<'a>(pods: &[&'a Pod], n: usize, now: Timestamp) -> Vec<&'a Pod> {
    let node_of = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default()
    };
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for p in pods {
        let n = node_of(p);
        if !n.is_empty() {
            *per_node.entry(n).or_default() += 1;
        }
    }
    let mut ranked: Vec<(&Pod, usize)> = pods
        .iter()
        .map(|p| (*p, per_node.get(&node_of(p)).copied().unwrap_or(0)))
        .collect();
    ranked.sort_by(|(a, ra), (b, rb)| deletion_order(a, *ra, b, *rb, now));
    ranked.into_iter().take(n).map(|(p, _)| p).collect()
}

/// A pod of `template` owned by `owner` (`controller.GetPodFromTemplate`): `generateName`
/// `prefix`, the template's labels, annotations, finalizers and spec.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    prefix: &str,
    owner: OwnerReference,
) -> Pod {
    let tm = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(prefix.to_string()),
            namespace: Some(namespace.to_string()),
            labels: tm.labels,
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// kube's `slowStartBatch` sizes for `count` creations starting at `initial`: 1, 2, 4, … each
/// capped by what is left.
pub fn slow_start_batches(count: usize, initial: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let (mut left, mut size) = (count, initial.max(1).min(count));
    while left > 0 {
        out.push(size);
        left -= size;
        size = (2 * size).min(left);
    }
    out
}

/// kube's `SlowStartInitialBatchSize`.
pub const SLOW_START_INITIAL_BATCH: usize = 1;

/// Creates `pods` for `owner` as kube's controllers do (`slowStartBatch` with
/// `RealPodControl`): the creations are expected first ([`super::expectations`]), then made in
/// slow-start batches 1, 2, 4, …, each recorded as a `SuccessfulCreate`/`FailedCreate` event by
/// `component`; after a failed batch the rest are not attempted (and no longer expected) and
/// the first error is returned.
pub async fn create_pods<K>(
    ctx: &super::Ctx,
    component: &str,
    owner: &K,
    api: &kube::Api<Pod>,
    pods: &[Pod],
) -> Result<(), kube::Error>
where
    K: kube::Resource<DynamicType = ()>,
{
    use super::events::{record, Kind};
    let uid = owner.meta().uid.clone().unwrap_or_default();
    ctx.expectations.expect_creations(&uid, pods.len());
    let pp = kube::api::PostParams::default();
    let mut next = 0;
    for size in slow_start_batches(pods.len(), SLOW_START_INITIAL_BATCH) {
        let batch = &pods[next..next + size];
        next += size;
        let results =
            futures_util::future::join_all(batch.iter().map(|p| api.create(&pp, p))).await;
        let mut failed = None;
        for r in results {
            match r {
                Ok(p) => {
                    let pname = p.metadata.name.unwrap_or_default();
                    let m = format!("Created pod: {pname}");
                    record(
                        &ctx.client,
                        component,
                        owner,
                        Kind::Normal,
                        "SuccessfulCreate",
                        m,
                    )
                    .await;
                }
                Err(e) => {
                    ctx.expectations.creation_observed(&uid);
                    let m = format!("Error creating: {}", barge_events::error_message(&e));
                    record(
                        &ctx.client,
                        component,
                        owner,
                        Kind::Warning,
                        "FailedCreate",
                        m,
                    )
                    .await;
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            // The batches not attempted will never be observed.
            for _ in next..pods.len() {
                ctx.expectations.creation_observed(&uid);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Deletes `victims` of `owner` at once as kube's `RealPodControl.DeletePod`: the deletions are
/// expected first; each is recorded as `SuccessfulDelete`, or `FailedDelete` (a pod already
/// gone is not an error, and a failed deletion is no longer expected).
pub async fn delete_pods<K>(
    ctx: &super::Ctx,
    component: &str,
    owner: &K,
    api: &kube::Api<Pod>,
    victims: &[&Pod],
) where
    K: kube::Resource<DynamicType = ()>,
{
    use super::events::{record, Kind};
    if victims.is_empty() {
        return;
    }
    let uid = owner.meta().uid.clone().unwrap_or_default();
    ctx.expectations.expect_deletions(
        &uid,
        victims
            .iter()
            .map(|p| p.metadata.uid.clone().unwrap_or_default()),
    );
    let dp = kube::api::DeleteParams::default();
    let results = futures_util::future::join_all(victims.iter().map(|p| {
        let pname = p.metadata.name.clone().unwrap_or_default();
        let dp = &dp;
        async move { (pname.clone(), api.delete(&pname, dp).await) }
    }))
    .await;
    for ((pname, r), p) in results.into_iter().zip(victims) {
        match r {
            Ok(_) => {
                let m = format!("Deleted pod: {pname}");
                record(
                    &ctx.client,
                    component,
                    owner,
                    Kind::Normal,
                    "SuccessfulDelete",
                    m,
                )
                .await
            }
            Err(e) => {
                ctx.expectations
                    .deletion_observed(&uid, p.metadata.uid.as_deref().unwrap_or_default());
                if !matches!(&e, kube::Error::Api(s) if s.code == 404) {
                    let m = format!("Error deleting: {}", barge_events::error_message(&e));
                    record(
                        &ctx.client,
                        component,
                        owner,
                        Kind::Warning,
                        "FailedDelete",
                        m,
                    )
                    .await;
                }
            }
        }
    }
}

/// kube's `BurstReplicas`: at most this many creations or deletions per sync.
pub const BURST_REPLICAS: usize = 500;

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(Into::into),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready.then(|| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn deletion_prefers_unscheduled_pending_unready() {
        let now = now();
        let ready = pod("ready", Some("n"), "Running", true);
        let running = pod("running", Some("n"), "Running", false);
        let pending = pod("pending", Some("n"), "Pending", false);
        let unscheduled = pod("unscheduled", None, "Pending", false);
        let all = [&ready, &running, &pending, &unscheduled];
        let names: Vec<_> = pods_to_delete(&all, 4, now)
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["unscheduled", "pending", "running", "ready"]);
        assert_eq!(
            pods_to_delete(&all, 1, now)[0].metadata.name.as_deref(),
            Some("unscheduled")
        );
    }

    #[test]
    fn slow_start_doubles() {
        assert_eq!(slow_start_batches(10, 1), [1, 2, 4, 3]);
        assert_eq!(slow_start_batches(1, 1), [1]);
        assert_eq!(slow_start_batches(0, 1), Vec::<usize>::new());
        assert_eq!(slow_start_batches(7, 1), [1, 2, 4]);
    }

    #[test]
    fn selectors() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())]
            .into_iter()
            .collect();
        let sel = LabelSelector {
            match_labels: Some(labels.clone()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "DoesNotExist".into(),
                values: None,
            }]),
        };
        assert!(selector_matches(&sel, &labels));
        let mut more = labels.clone();
        more.insert("tier".into(), "x".into());
        assert!(!selector_matches(&sel, &more));
        assert!(selector_is_empty(&LabelSelector::default()));
    }

    #[test]
    fn availability_waits_min_ready_seconds() {
        let mut p = pod("p", None, "Running", true);
        let t = now();
        p.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_transition_time =
            Some(Time(Timestamp::from_second(t.as_second() - 5).unwrap()));
        assert!(is_available(&p, 0, t));
        assert!(is_available(&p, 5, t));
        assert!(!is_available(&p, 10, t));
        assert!(seconds_to_available(&p, 10, t).unwrap() > 4.0);
    }

    #[test]
    fn adoption_and_release_patches() {
        let meta: ObjectMeta = serde_json::from_value(serde_json::json!({
            "resourceVersion": "7",
            "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "other"}]
        }))
        .unwrap();
        let owner = controller_ref(
            "apps/v1",
            "ReplicaSet",
            &ObjectMeta {
                name: Some("rs".into()),
                uid: Some("me".into()),
                ..Default::default()
            },
        );
        let p = adopt_patch(&meta, owner);
        assert_eq!(p["metadata"]["resourceVersion"], "7");
        assert_eq!(p["metadata"]["ownerReferences"][1]["uid"], "me");
        assert_eq!(p["metadata"]["ownerReferences"][1]["controller"], true);
        let released = release_patch(&meta, "other");
        assert!(released["metadata"]["ownerReferences"].is_null());
        let kept = release_patch(&meta, "me");
        assert_eq!(kept["metadata"]["ownerReferences"][0]["uid"], "other");
    }
}
