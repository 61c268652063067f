//! The DaemonSet controller (kube's `pkg/controller/daemon`): one pod per eligible node.
//!
//! A node is eligible when the pod template's `nodeSelector`/required node affinity admits it
//! and the pod — with the tolerations kube adds to every daemon pod ([`add_default_tolerations`]:
//! `not-ready`/`unreachable` NoExecute, the pressure and `unschedulable` NoSchedule taints,
//! `network-unavailable` for host-network pods) — tolerates its `NoSchedule`/`NoExecute`
//! taints; a pod already on a node with an untolerated `NoSchedule` taint keeps running
//! (kube's `shouldContinueRunning`). Pods are made as kube makes them: the default scheduler
//! places them, pinned by a required node affinity on `metadata.name`
//! (`ReplaceDaemonSetPodNodeNameNodeAffinity`), labelled with `controller-revision-hash`.
//! Revisions are ControllerRevisions `<set>-<hash>` as for StatefulSets.
//!
//! Per sync: pods on ineligible nodes, extra pods on a node and failed pods are deleted,
//! missing ones created (slow-start batches); with `RollingUpdate`, old-revision pods are
//! deleted while fewer than `maxUnavailable` (default 1, a percentage of the desired count
//! rounded up) pods are unavailable — or, with a non-zero `maxSurge` (then `maxUnavailable` is
//! 0, as the API server validates), a new pod is made beside the old one on up to `maxSurge`
//! nodes at a time (at once where the old one is unavailable), and the old one is deleted once
//! the new one is available (kube's surge branch of `rollingUpdate` and `podsShouldBeOnNode`:
//! at most one old and one new pod per node); `OnDelete` replaces only deleted pods. The status
//! (desiredNumberScheduled, currentNumberScheduled, numberMisscheduled, numberReady,
//! updatedNumberScheduled, numberAvailable, numberUnavailable, observedGeneration) is what
//! `kubectl rollout status ds/<name>` reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::Action;

use super::pods;
use super::replicaset::ns_of;
use super::rollout::{compute_hash, scaled_value};
use super::statefulset::{revision_data, REVISION_LABEL};
use super::Ctx;
use crate::ControllerError;
use barge_scheduler::plugins::node::{node_matches_pod, tolerates};

const COMPONENT: &str = "daemonset-controller";

/// The tolerations kube gives every daemon pod (`util.AddOrUpdateDaemonPodTolerations`).
pub fn add_default_tolerations(spec: &mut k8s_openapi::api::core::v1::PodSpec) {
    let mut defaults = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        defaults.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let tols = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in defaults {
        let t = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        };
        // kube's AddOrUpdateTolerationInPodSpec: an equal-keyed one is replaced.
        match tols
            .iter_mut()
            .find(|x| x.key == t.key && x.effect == t.effect)
        {
            Some(x) => *x = t,
            None => tols.push(t),
        }
    }
}

/// Pins a pod to `node` with a required node affinity on `metadata.name`, replacing any
/// `metadata.name` requirement (kube's `ReplaceDaemonSetPodNodeNameNodeAffinity`).
pub fn pin_to_node(spec: &mut k8s_openapi::api::core::v1::PodSpec, node: &str) {
    let term = NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.into()]),
        }]),
    };
    let aff = spec.affinity.get_or_insert_with(Affinity::default);
    let na = aff.node_affinity.get_or_insert_with(NodeAffinity::default);
    let req = na
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(|| NodeSelector {
            node_selector_terms: vec![],
        });
    if req.node_selector_terms.is_empty() {
        req.node_selector_terms.push(term);
        return;
    }
    for t in req.node_selector_terms.iter_mut() {
        let fields = t.match_fields.get_or_insert_with(Vec::new);
        fields.retain(|f| f.key != "metadata.name");
        fields.push(term.match_fields.clone().unwrap_or_default()[0].clone());
    }
}

/// The node a daemon pod is for: `spec.nodeName`, else its pinned `metadata.name`
/// (kube's `GetTargetNodeName`).
pub fn target_node(p: &Pod) -> Option<String> {
    let spec = p.spec.as_ref()?;
    if let Some(n) = spec.node_name.clone().filter(|n| !n.is_empty()) {
        return Some(n);
    }
    let req = spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?;
    req.node_selector_terms.iter().find_map(|t| {
        t.match_fields
            .iter()
            .flatten()
            .find(|f| f.key == "metadata.name" && f.operator == "In")
            .and_then(|f| f.values.as_ref()?.first().cloned())
    })
}

/// kube's `NodeShouldRunDaemonPod`: (should run a new pod, should keep a running one).
pub fn should_run(template: &PodTemplateSpec, node: &Node) -> (bool, bool) {
    let mut pod = Pod {
        metadata: ObjectMeta::default(),
        spec: template.spec.clone(),
        status: None,
    };
    if let Some(s) = pod.spec.as_mut() {
        add_default_tolerations(s);
    }
    if !node_matches_pod(&pod, node) {
        return (false, false);
    }
    let tols = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let mut run = true;
    for taint in node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
    {
        if taint.effect == "PreferNoSchedule" || tols.iter().any(|t| tolerates(t, &taint)) {
            continue;
        }
        if taint.effect == "NoExecute" {
            return (false, false);
        }
        run = false;
    }
    (run, true)
}

/// With surge, the pods of a node beyond one old and one new to delete (kube's
/// `podsShouldBeOnNode`): the oldest of each revision stay — the old one only while it is ready
/// and the new one not yet available. `live`: the node's live pods, oldest first.
pub fn surge_excess(
    live: &[Arc<Pod>],
    is_updated: &dyn Fn(&Pod) -> bool,
    min_ready: i32,
    now: Timestamp,
) -> Vec<Arc<Pod>> {
    if live.len() < 2 {
        return vec![];
    }
    let (mut new, mut old, mut out) = (None, None, Vec::new());
    for p in live {
        if is_updated(p) {
            if new.is_none() {
                new = Some(p);
                continue;
            }
        } else if old.is_none() {
            old = Some(p);
            continue;
        }
        out.push(p.clone());
    }
    if let (Some(n), Some(o)) = (new, old) {
        if !pods::is_ready(o) || pods::is_available(n, min_ready, now) {
            out.push(o.clone());
        }
    }
    out
}

/// kube's surge branch of `rollingUpdate` over the nodes that should run a pod (their live
/// pods, at most one old and one new after [`surge_excess`]): (old pods to delete, nodes to
/// get a new pod). An unavailable old pod is replaced at once; available ones get a new pod
/// beside them on up to `max_surge` nodes at a time, counting the nodes already surged whose
/// new pod is not available yet; an old pod goes once the new one beside it is available.
pub fn surge_plan(
    nodes: &[(String, Vec<Arc<Pod>>)],
    is_updated: &dyn Fn(&Pod) -> bool,
    max_surge: i32,
    min_ready: i32,
    now: Timestamp,
) -> (Vec<Arc<Pod>>, Vec<String>) {
    let (mut delete, mut allowed, mut candidates) = (Vec::new(), Vec::new(), Vec::new());
    let mut surged = 0;
    for (node, live) in nodes {
        let news: Vec<&Arc<Pod>> = live.iter().filter(|p| is_updated(p)).collect();
        let olds: Vec<&Arc<Pod>> = live.iter().filter(|p| !is_updated(p)).collect();
        if news.len() > 1 || olds.len() > 1 {
            surged += 1; // The manage step cleans this node up first.
            continue;
        }
        match (news.first(), olds.first()) {
            (_, None) => {}
            (None, Some(old)) => {
                if pods::is_available(old, min_ready, now) {
                    candidates.push(node.clone());
                } else {
                    allowed.push(node.clone());
                }
            }
            (Some(new), Some(old)) => {
                if pods::is_available(new, min_ready, now) {
                    delete.push((*old).clone());
                } else {
                    surged += 1;
                }
            }
        }
    }
    let room = (max_surge - surged).clamp(0, candidates.len() as i32) as usize;
    allowed.extend(candidates.into_iter().take(room));
    (delete, allowed)
}

/// Reconciles one DaemonSet.
pub async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = ns_of(&ds.metadata);
    let name = ds.metadata.name.clone().unwrap_or_default();
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let spec = ds.spec.clone().unwrap_or_default();
    let old_status = ds.status.clone().unwrap_or_default();

    // The revision of the current template.
    let hash = compute_hash(&spec.template, old_status.collision_count);
    let rev_name = format!("{name}-{hash}");
    let crs: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let revisions: Vec<ControllerRevision> = crs
        .list(&ListParams::default())
        .await
        .map_err(|e| ControllerError::api(format!("listing revisions of {name}"), e))?
        .items
        .into_iter()
        .filter(|c| pods::controller_of(&c.metadata).is_some_and(|o| o.uid == uid))
        .collect();
    if !revisions
        .iter()
        .any(|c| c.metadata.name.as_deref() == Some(rev_name.as_str()))
    {
        let mut labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(REVISION_LABEL.into(), hash.clone());
        let cr = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(rev_name.clone()),
                namespace: Some(ns.clone()),
                labels: Some(labels),
                owner_references: Some(vec![pods::controller_ref(
                    "apps/v1",
                    "DaemonSet",
                    &ds.metadata,
                )]),
                ..Default::default()
            },
            data: Some(RawExtension(revision_data(&spec.template))),
            revision: revisions.iter().map(|c| c.revision).max().unwrap_or(0) + 1,
        };
        match crs.create(&PostParams::default(), &cr).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                return Err(ControllerError::api(
                    format!("creating revision {rev_name}"),
                    e,
                ))
            }
        }
    }
    let is_updated = |p: &Pod| {
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(REVISION_LABEL))
            .map(String::as_str)
            == Some(hash.as_str())
    };

    // Pods by node.
    let owned: Vec<Arc<Pod>> = ctx
        .informers
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|p| pods::controller_of(&p.metadata).is_some_and(|o| o.uid == uid))
        .collect();
    let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
    for p in &owned {
        if let Some(n) = target_node(p) {
            by_node.entry(n).or_default().push(p.clone());
        }
    }
    let nodes: Vec<Arc<Node>> = ctx.informers.nodes.state();
    let mut create: Vec<String> = Vec::new();
    let mut delete: Vec<Arc<Pod>> = Vec::new();
    let (mut desired, mut current, mut misscheduled) = (0, 0, 0);
    let (mut ready, mut updated, mut available) = (0, 0, 0);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let now = pods::now();
    let mut unavailable_old: Vec<Arc<Pod>> = Vec::new();
    let mut available_old: Vec<Arc<Pod>> = Vec::new();
    let mut unavailable_count = 0;
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
    let max_surge = strategy
        .rolling_update
        .as_ref()
        .and_then(|r| r.max_surge.clone())
        .unwrap_or(IntOrString::Int(0));
    // kube's AllowsSurge: any non-zero maxSurge (a percentage of one node rounded up).
    let surging = rolling && scaled_value(&max_surge, 1, true).unwrap_or(0) > 0;
    // Nodes that should run a pod, with their live pods (oldest first), for the surge.
    let mut surge_nodes: Vec<(String, Vec<Arc<Pod>>)> = Vec::new();
    for node in &nodes {
        let nname = node.metadata.name.clone().unwrap_or_default();
        let (run, keep) = should_run(&spec.template, node);
        let mut here: Vec<Arc<Pod>> = by_node.remove(&nname).unwrap_or_default();
        here.retain(|p| {
            if pods::is_terminal(p) && p.metadata.deletion_timestamp.is_none() {
                delete.push(p.clone());
                false
            } else {
                true
            }
        });
        let live: Vec<Arc<Pod>> = here
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .cloned()
            .collect();
        if run {
            desired += 1;
        }
        if !keep || (!run && live.is_empty()) {
            if !live.is_empty() {
                misscheduled += 1;
            }
            if !keep {
                delete.extend(live);
            }
            continue;
        }
        if !run {
            // Kept on a node it would not be started on now: counted as misscheduled.
            misscheduled += 1;
            continue;
        }
        if live.is_empty() {
            if here.is_empty() {
                create.push(nname);
            }
            unavailable_count += 1;
            continue;
        }
        current += 1;
        let mut live = live;
        live.sort_by_key(|p| p.metadata.creation_timestamp.clone());
        if surging {
            delete.extend(surge_excess(&live, &is_updated, min_ready, now));
            surge_nodes.push((nname.clone(), live.clone()));
        } else {
            // More than one: keep the oldest, as kube (by creation).
            delete.extend(live.iter().skip(1).cloned());
        }
        // The status counts the oldest pod of a node (kube's updateDaemonSetStatus).
        let p = &live[0];
        if pods::is_ready(p) {
            ready += 1;
        }
        let avail = pods::is_available(p, min_ready, now);
        if avail {
            available += 1;
        } else {
            unavailable_count += 1;
        }
        if is_updated(p) {
            updated += 1;
        } else if avail {
            available_old.push(p.clone());
        } else {
            unavailable_old.push(p.clone());
        }
    }
    // Pods on nodes that are gone.
    for (_, ps) in by_node {
        delete.extend(
            ps.into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none()),
        );
    }
    // RollingUpdate with surge: only once the manage step has nothing to do (kube runs the
    // update only with its expectations satisfied).
    if surging && create.is_empty() && delete.is_empty() {
        let max = scaled_value(&max_surge, desired, true).unwrap_or(0);
        let (old, new) = surge_plan(&surge_nodes, &is_updated, max, min_ready, now);
        delete.extend(old);
        create.extend(new);
    } else if rolling && !surging {
        // RollingUpdate: unavailable old pods go at once, available ones while the budget
        // lasts.
        let max = strategy
            .rolling_update
            .as_ref()
            .and_then(|r| r.max_unavailable.clone())
            .unwrap_or(IntOrString::Int(1));
        let max = scaled_value(&max, desired, true).unwrap_or(1).max(1);
        delete.extend(unavailable_old);
        let mut budget = max - unavailable_count;
        for p in available_old {
            if budget <= 0 {
                break;
            }
            delete.push(p);
            budget -= 1;
        }
    }

    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    if ctx.expectations.satisfied(&uid) {
        let new: Vec<Pod> = create
            .iter()
            .map(|node| {
                let mut pod = pods::pod_from_template(
                    &spec.template,
                    &ns,
                    &format!("{name}-"),
                    pods::controller_ref("apps/v1", "DaemonSet", &ds.metadata),
                );
                pod.metadata
                    .labels
                    .get_or_insert_with(BTreeMap::new)
                    .insert(REVISION_LABEL.into(), hash.clone());
                if let Some(s) = pod.spec.as_mut() {
                    add_default_tolerations(s);
                    pin_to_node(s, node);
                }
                pod
            })
            .collect();
        if let Err(e) = pods::create_pods(&ctx, COMPONENT, ds.as_ref(), &api, &new).await {
            tracing::debug!("daemonset {name}: {e}");
        }
        let victims: Vec<&Pod> = delete.iter().map(|p| p.as_ref()).collect();
        pods::delete_pods(&ctx, COMPONENT, ds.as_ref(), &api, &victims).await;
    }

    let st = DaemonSetStatus {
        collision_count: old_status.collision_count,
        conditions: old_status.conditions.clone(),
        current_number_scheduled: current,
        desired_number_scheduled: desired,
        number_available: (available != 0).then_some(available),
        number_misscheduled: misscheduled,
        number_ready: ready,
        number_unavailable: (desired - available > 0).then_some(desired - available),
        observed_generation: ds.metadata.generation,
        updated_number_scheduled: (updated != 0).then_some(updated),
    };
    if st != old_status {
        let mut new = (*ds).clone();
        new.status = Some(st);
        Api::<DaemonSet>::namespaced(ctx.client.clone(), &ns)
            .replace_status(&name, &PostParams::default(), &new)
            .await
            .map_err(|e| {
                ControllerError::api(format!("updating the status of daemonset {name}"), e)
            })?;
    }
    Ok(Action::requeue(Duration::from_secs(if min_ready > 0 {
        1
    } else {
        30
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    fn template(v: serde_json::Value) -> PodTemplateSpec {
        serde_json::from_value(json!({"spec": v})).unwrap()
    }

    #[test]
    fn daemon_pods_get_kube_default_tolerations() {
        let mut spec: k8s_openapi::api::core::v1::PodSpec =
            serde_json::from_value(json!({"containers": [], "hostNetwork": true})).unwrap();
        add_default_tolerations(&mut spec);
        let tols = spec.tolerations.unwrap();
        assert_eq!(tols.len(), 7);
        assert!(tols.iter().any(
            |t| t.key.as_deref() == Some("node.kubernetes.io/unreachable")
                && t.effect.as_deref() == Some("NoExecute")
                && t.operator.as_deref() == Some("Exists")
                && t.toleration_seconds.is_none()
        ));
    }

    #[test]
    fn eligibility_by_selector_and_taints() {
        let t = template(json!({"containers": [], "nodeSelector": {"role": "edge"}}));
        let plain = node(json!({"metadata": {"name": "a", "labels": {"role": "edge"}}}));
        assert_eq!(should_run(&t, &plain), (true, true));
        let other = node(json!({"metadata": {"name": "b", "labels": {"role": "core"}}}));
        assert_eq!(should_run(&t, &other), (false, false));
        let noschedule = node(
            json!({"metadata": {"name": "a", "labels": {"role": "edge"}},
            "spec": {"taints": [{"key": "dedicated", "effect": "NoSchedule"}]}}),
        );
        assert_eq!(should_run(&t, &noschedule), (false, true));
        let noexec = node(
            json!({"metadata": {"name": "a", "labels": {"role": "edge"}},
            "spec": {"taints": [{"key": "dedicated", "effect": "NoExecute"}]}}),
        );
        assert_eq!(should_run(&t, &noexec), (false, false));
        // The default tolerations cover a cordoned or unreachable node.
        let cordoned = node(
            json!({"metadata": {"name": "a", "labels": {"role": "edge"}},
            "spec": {"taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                                {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]}}),
        );
        assert_eq!(should_run(&t, &cordoned), (true, true));
    }

    fn daemon_pod(name: &str, rev: &str, created: &str, ready: bool) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "creationTimestamp": created,
                    "labels": {REVISION_LABEL: rev}},
                "status": {"phase": "Running", "conditions": [{"type": "Ready",
                    "status": if ready {"True"} else {"False"},
                    "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn surge_makes_new_pods_beside_old_ones_and_removes_old_ones_once_available() {
        let now = pods::now();
        let upd = |p: &Pod| p.metadata.labels.as_ref().unwrap()[REVISION_LABEL] == "new";
        let old_a = daemon_pod("a-old", "old", "2026-01-01T00:00:00Z", true);
        let old_b = daemon_pod("b-old", "old", "2026-01-01T00:00:00Z", true);
        let old_c = daemon_pod("c-old", "old", "2026-01-01T00:00:00Z", false);
        let nodes = vec![
            ("a".to_string(), vec![old_a.clone()]),
            ("b".to_string(), vec![old_b.clone()]),
            ("c".to_string(), vec![old_c.clone()]),
        ];
        // maxSurge 1: the unavailable old pod's node at once, one available one.
        let (del, make) = surge_plan(&nodes, &upd, 1, 0, now);
        assert!(del.is_empty());
        assert_eq!(make, ["c", "a"]);
        // A new pod not yet available uses the surge; once available, the old one goes.
        let new_a = daemon_pod("a-new", "new", "2026-01-01T00:01:00Z", false);
        let nodes = vec![
            ("a".to_string(), vec![old_a.clone(), new_a.clone()]),
            ("b".to_string(), vec![old_b.clone()]),
        ];
        assert_eq!(surge_plan(&nodes, &upd, 1, 0, now), (vec![], vec![]));
        let new_a = daemon_pod("a-new", "new", "2026-01-01T00:01:00Z", true);
        let nodes = vec![
            ("a".to_string(), vec![old_a.clone(), new_a.clone()]),
            ("b".to_string(), vec![old_b.clone()]),
        ];
        let (del, make) = surge_plan(&nodes, &upd, 1, 0, now);
        assert_eq!(del[0].metadata.name.as_deref(), Some("a-old"));
        assert_eq!(make, ["b"]);
        // The manage step: one old and one new per node; the old goes when it is not ready
        // or the new one is available.
        let extra = daemon_pod("a-old2", "old", "2026-01-01T00:00:30Z", true);
        let pending = daemon_pod("a-new", "new", "2026-01-01T00:01:00Z", false);
        let out = surge_excess(
            &[old_a.clone(), extra.clone(), pending.clone()],
            &upd,
            0,
            now,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].metadata.name.as_deref(), Some("a-old2"));
        let out = surge_excess(&[old_a.clone(), new_a.clone()], &upd, 0, now);
        assert_eq!(out[0].metadata.name.as_deref(), Some("a-old"));
        let out = surge_excess(&[old_c.clone(), pending.clone()], &upd, 0, now);
        assert_eq!(out[0].metadata.name.as_deref(), Some("c-old"));
    }

    #[test]
    fn pods_are_pinned_by_node_affinity() {
        let mut spec: k8s_openapi::api::core::v1::PodSpec =
            serde_json::from_value(json!({"containers": []})).unwrap();
        pin_to_node(&mut spec, "n1");
        let pod = Pod {
            spec: Some(spec.clone()),
            ..Default::default()
        };
        assert_eq!(target_node(&pod).as_deref(), Some("n1"));
        pin_to_node(&mut spec, "n2");
        let pod = Pod {
            spec: Some(spec),
            ..Default::default()
        };
        assert_eq!(target_node(&pod).as_deref(), Some("n2"));
    }
}
