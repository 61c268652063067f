//! The disruption controller (kube-controller-manager's `disruption` controller,
//! `pkg/controller/disruption`): every PodDisruptionBudget's status — `expectedPods`,
//! `desiredHealthy`, `currentHealthy`, `disruptionsAllowed`, `observedGeneration`,
//! `disruptedPods` and the `DisruptionAllowed` condition — from the pods its selector
//! matches, which the API server's eviction (`pods/eviction`) reads and decrements.
//!
//! - `minAvailable: N`: desired N, expected = the matching pods.
//! - `minAvailable: P%` and `maxUnavailable` (int or percent): expected = the scale of the
//!   pods' controllers (a Deployment's, ReplicaSet's, ReplicationController's or
//!   StatefulSet's `spec.replicas`); a percentage is rounded up; desired = ⌈P × expected⌉ or
//!   expected − maxUnavailable (not below 0). A matching pod without such a controller makes
//!   the sync fail safe: `disruptionsAllowed` 0, condition False with reason `SyncFailed`.
//! - current = matching pods that are Ready, not being deleted and not in `disruptedPods`;
//!   allowed = max(0, current − desired).
//! - `disruptedPods` entries go once their pod is gone or being deleted, or after 2 minutes
//!   (kube's `DeletionTimeout`).
//!
//! Synced per namespace when a budget or a pod there changes, and all every 30 s.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams, PostParams};
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::watcher;
use kube::Client;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::ControllerError;

/// kube's `DeletionTimeout`: how long an eviction's entry in `disruptedPods` counts.
const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the controller forever.
pub async fn run(client: Client) {
    let (tx, mut rx) = mpsc::channel::<Option<String>>(1024);
    tokio::spawn(trigger(
        Api::<PodDisruptionBudget>::all(client.clone()),
        tx.clone(),
    ));
    tokio::spawn(trigger(Api::<Pod>::all(client.clone()), tx.clone()));
    let mut resync = tokio::time::interval(Duration::from_secs(30));
    loop {
        let mut dirty: HashSet<Option<String>> = HashSet::new();
        tokio::select! {
            m = rx.recv() => match m {
                Some(ns) => { dirty.insert(ns); }
                None => return,
            },
            _ = resync.tick() => { dirty.insert(None); }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        while let Ok(ns) = rx.try_recv() {
            dirty.insert(ns);
        }
        let all = dirty.contains(&None);
        let pdbs: Api<PodDisruptionBudget> = Api::all(client.clone());
        let list = match pdbs.list(&ListParams::default()).await {
            Ok(l) => l.items,
            Err(e) => {
                tracing::debug!("disruption controller: listing budgets: {e}");
                continue;
            }
        };
        for pdb in list {
            if !all && !dirty.contains(&pdb.metadata.namespace) {
                continue;
            }
            if let Err(e) = sync(&client, pdb).await {
                tracing::debug!("disruption controller: {e}");
            }
        }
    }
}

/// Sends the namespace of every change of `api`'s objects.
async fn trigger<K>(api: Api<K>, tx: mpsc::Sender<Option<String>>)
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    while let Some(ev) = stream.next().await {
        let ns = match ev {
            Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o)) => o.meta().namespace.clone(),
            Ok(watcher::Event::InitDone) => None,
            Ok(_) => continue,
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if tx.send(ns).await.is_err() {
            return;
        }
    }
}

/// Whether `selector` (a `metav1.LabelSelector`) selects `labels`: a missing selector selects
/// nothing, an empty one everything (policy/v1).
pub fn selects(selector: &Value, labels: &Value) -> bool {
    if !selector.is_object() {
        return false;
    }
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let ml = selector["matchLabels"].as_object();
    let labels_ok = ml
        .into_iter()
        .flatten()
        .all(|(k, v)| label(k) == v.as_str());
    let exprs_ok = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e["key"].as_str().unwrap_or("");
            let values: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            match e["operator"].as_str() {
                Some("In") => label(key).is_some_and(|v| values.contains(&v)),
                Some("NotIn") => label(key).is_none_or(|v| !values.contains(&v)),
                Some("Exists") => label(key).is_some(),
                Some("DoesNotExist") => label(key).is_none(),
                _ => false,
            }
        });
    labels_ok && exprs_ok
}

/// An int-or-percent against `total` (percentages rounded up, as
/// `intstr.GetScaledValueFromIntOrPercent(…, true)`); `None` if malformed.
pub fn scaled(v: &Value, total: i64) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let p: i64 = s.strip_suffix('%')?.parse().ok()?;
            Some((p * total + 99) / 100)
        }
        _ => None,
    }
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn parse_time(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

/// The status of `pdb` for the `pods` its selector matches. `scale` gives the scale of a
/// pod's controller (`None`: the pod has none barge knows). `now` is the current time.
pub fn status(
    pdb: &Value,
    pods: &[Value],
    scale: &dyn Fn(&Value) -> Option<i64>,
    now: jiff::Timestamp,
) -> Value {
    let generation = pdb["metadata"]["generation"].as_i64().unwrap_or(0);
    let spec = &pdb["spec"];
    let old = &pdb["status"];
    // disruptedPods: kept while the pod is there, not being deleted, and the entry is fresh.
    let mut disrupted = serde_json::Map::new();
    if let Some(m) = old["disruptedPods"].as_object() {
        for (name, at) in m {
            let pod = pods.iter().find(|p| p["metadata"]["name"] == name.as_str());
            let Some(pod) = pod else { continue };
            if pod["metadata"].get("deletionTimestamp").is_some() {
                continue;
            }
            let fresh = at.as_str().and_then(parse_time).is_some_and(|t| {
                now.duration_since(t).as_secs() < DELETION_TIMEOUT.as_secs() as i64
            });
            if fresh {
                disrupted.insert(name.clone(), at.clone());
            }
        }
    }
    let counted = |p: &&Value| {
        p["metadata"].get("deletionTimestamp").is_none()
            && !disrupted.contains_key(p["metadata"]["name"].as_str().unwrap_or(""))
    };
    let current = pods.iter().filter(counted).filter(|p| is_ready(p)).count() as i64;
    let controllers_scale = || -> Option<i64> {
        // Each controller counted once (by uid).
        let mut seen = HashSet::new();
        let mut total = 0;
        for p in pods {
            let owner = p["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|o| o["controller"] == true)?;
            let uid = owner["uid"].as_str().unwrap_or("").to_string();
            if seen.insert(uid) {
                total += scale(p)?;
            }
        }
        Some(total)
    };
    let computed: Option<(i64, i64)> = if let Some(max) = spec.get("maxUnavailable") {
        controllers_scale().and_then(|expected| {
            let max = scaled(max, expected)?;
            Some((expected, (expected - max).max(0)))
        })
    } else {
        match spec.get("minAvailable") {
            Some(Value::Number(n)) => Some((pods.len() as i64, n.as_i64().unwrap_or(0))),
            Some(v @ Value::String(_)) => {
                controllers_scale().and_then(|expected| Some((expected, scaled(v, expected)?)))
            }
            _ => Some((pods.len() as i64, 0)),
        }
    };
    let now_s = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let (expected, desired, allowed, reason) = match computed {
        Some((expected, desired)) => {
            let allowed = (current - desired).max(0);
            let reason = if allowed > 0 {
                "SufficientPods"
            } else {
                "InsufficientPods"
            };
            (expected, desired, allowed, reason)
        }
        None => (
            old["expectedPods"].as_i64().unwrap_or(0),
            old["desiredHealthy"].as_i64().unwrap_or(0),
            0,
            "SyncFailed",
        ),
    };
    let cond_status = if allowed > 0 { "True" } else { "False" };
    let previous = old["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "DisruptionAllowed");
    let transition = match previous {
        Some(c) if c["status"] == cond_status => c["lastTransitionTime"].clone(),
        _ => json!(now_s),
    };
    let mut conditions: Vec<Value> = old["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["type"] != "DisruptionAllowed")
        .cloned()
        .collect();
    conditions.push(json!({"type": "DisruptionAllowed", "status": cond_status,
        "reason": reason, "message": "", "observedGeneration": generation,
        "lastTransitionTime": transition}));
    let mut out = json!({
        "observedGeneration": generation,
        "disruptionsAllowed": allowed,
        "currentHealthy": current,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "conditions": conditions,
    });
    if !disrupted.is_empty() {
        out["disruptedPods"] = Value::Object(disrupted);
    }
    out
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// The `spec.replicas` of a pod's controller: a ReplicaSet's Deployment if it has one.
async fn controller_scale(client: &Client, ns: &str, pod: &Value) -> Option<i64> {
    let owner = pod["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| o["controller"] == true)?;
    let name = owner["name"].as_str()?;
    let (ar, name) = match owner["kind"].as_str()? {
        "ReplicaSet" => {
            let api: Api<DynamicObject> = Api::namespaced_with(
                client.clone(),
                ns,
                &resource("apps", "v1", "ReplicaSet", "replicasets"),
            );
            let rs = serde_json::to_value(api.get(name).await.ok()?).ok()?;
            let deploy = rs["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|o| o["controller"] == true && o["kind"] == "Deployment");
            match deploy.and_then(|d| d["name"].as_str()) {
                Some(d) => (
                    resource("apps", "v1", "Deployment", "deployments"),
                    d.to_string(),
                ),
                None => return Some(rs["spec"]["replicas"].as_i64().unwrap_or(1)),
            }
        }
        "ReplicationController" => (
            resource("", "v1", "ReplicationController", "replicationcontrollers"),
            name.to_string(),
        ),
        "StatefulSet" => (
            resource("apps", "v1", "StatefulSet", "statefulsets"),
            name.to_string(),
        ),
        _ => return None,
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let obj = serde_json::to_value(api.get(&name).await.ok()?).ok()?;
    Some(obj["spec"]["replicas"].as_i64().unwrap_or(1))
}

/// Recomputes one budget's status and writes it if it changed.
async fn sync(client: &Client, pdb: PodDisruptionBudget) -> Result<(), ControllerError> {
    let ns = pdb.metadata.namespace.clone().unwrap_or_default();
    let name = pdb.metadata.name.clone().unwrap_or_default();
    let value = serde_json::to_value(&pdb).unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pods: Vec<Value> = pods_api
        .list(&ListParams::default())
        .await
        .map_err(|e| ControllerError::api(format!("listing pods in {ns}"), e))?
        .items
        .into_iter()
        .filter_map(|p| serde_json::to_value(p).ok())
        .filter(|p| selects(&value["spec"]["selector"], &p["metadata"]["labels"]))
        .collect();
    // Controller scales, looked up once per pod with a controller.
    let mut scales: BTreeMap<String, Option<i64>> = BTreeMap::new();
    let needs_scale =
        value["spec"].get("maxUnavailable").is_some() || value["spec"]["minAvailable"].is_string();
    if needs_scale {
        for p in &pods {
            let pod_name = p["metadata"]["name"].as_str().unwrap_or("").to_string();
            let s = controller_scale(client, &ns, p).await;
            scales.insert(pod_name, s);
        }
    }
    let scale = |p: &Value| -> Option<i64> {
        scales
            .get(p["metadata"]["name"].as_str().unwrap_or(""))
            .copied()
            .flatten()
    };
    let new_status = status(&value, &pods, &scale, jiff::Timestamp::now());
    let old_status = value.get("status").cloned().unwrap_or(Value::Null);
    let same = |a: &Value, b: &Value| {
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(cs) = v["conditions"].as_array_mut() {
                for c in cs {
                    if let Some(m) = c.as_object_mut() {
                        m.remove("lastTransitionTime");
                    }
                }
            }
            v
        };
        strip(a) == strip(b)
    };
    if same(&old_status, &new_status) {
        return Ok(());
    }
    let mut updated = pdb;
    updated.status = serde_json::from_value(new_status).ok();
    let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    match api
        .replace_status(&name, &PostParams::default(), &updated)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409) => Ok(()),
        Err(e) => Err(ControllerError::api(
            format!("updating {ns}/{name} status"),
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ready: bool, owner: Option<&str>) -> Value {
        let mut p = json!({"metadata": {"name": name, "labels": {"app": "web"}},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        if let Some(uid) = owner {
            p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1",
                "kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true}]);
        }
        p
    }

    fn pdb(spec: Value) -> Value {
        json!({"metadata": {"name": "b", "generation": 2}, "spec": spec})
    }

    fn now() -> jiff::Timestamp {
        "2026-12-06T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn min_available_int_counts_matching_pods() {
        let pods = [
            pod("a", true, None),
            pod("b", true, None),
            pod("c", false, None),
        ];
        let s = status(
            &pdb(json!({"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}})),
            &pods,
            &|_| None,
            now(),
        );
        assert_eq!(s["expectedPods"], 3);
        assert_eq!(s["desiredHealthy"], 1);
        assert_eq!(s["currentHealthy"], 2);
        assert_eq!(s["disruptionsAllowed"], 1);
        assert_eq!(s["observedGeneration"], 2);
        assert_eq!(s["conditions"][0]["type"], "DisruptionAllowed");
        assert_eq!(s["conditions"][0]["status"], "True");
        assert_eq!(s["conditions"][0]["reason"], "SufficientPods");
    }

    #[test]
    fn percentages_and_max_unavailable_use_the_controllers_scale() {
        let pods = [
            pod("a", true, Some("u1")),
            pod("b", true, Some("u1")),
            pod("c", true, Some("u1")),
        ];
        let scale = |_: &Value| Some(4);
        // maxUnavailable 25% of 4 = 1 → desired 3; 3 healthy → 0 allowed.
        let s = status(
            &pdb(json!({"maxUnavailable": "25%", "selector": {}})),
            &pods,
            &scale,
            now(),
        );
        assert_eq!(
            (s["expectedPods"].as_i64(), s["desiredHealthy"].as_i64()),
            (Some(4), Some(3))
        );
        assert_eq!(s["disruptionsAllowed"], 0);
        assert_eq!(s["conditions"][0]["reason"], "InsufficientPods");
        // minAvailable 50% of 4 = 2 → 1 allowed.
        let s = status(
            &pdb(json!({"minAvailable": "50%", "selector": {}})),
            &pods,
            &scale,
            now(),
        );
        assert_eq!(
            (
                s["desiredHealthy"].as_i64(),
                s["disruptionsAllowed"].as_i64()
            ),
            (Some(2), Some(1))
        );
        // maxUnavailable as an int.
        let s = status(
            &pdb(json!({"maxUnavailable": 2, "selector": {}})),
            &pods,
            &scale,
            now(),
        );
        assert_eq!(
            (
                s["desiredHealthy"].as_i64(),
                s["disruptionsAllowed"].as_i64()
            ),
            (Some(2), Some(1))
        );
        // A pod without a controller: fail safe.
        let orphan = [pod("x", true, None)];
        let s = status(
            &pdb(json!({"maxUnavailable": 1, "selector": {}})),
            &orphan,
            &scale,
            now(),
        );
        assert_eq!(s["disruptionsAllowed"], 0);
        assert_eq!(s["conditions"][0]["reason"], "SyncFailed");
    }

    #[test]
    fn disrupted_pods_do_not_count_until_they_expire() {
        let pods = [pod("a", true, None), pod("b", true, None)];
        let mut b = pdb(json!({"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}));
        b["status"] =
            json!({"disruptedPods": {"a": "2026-12-05T23:59:30Z", "gone": "2026-12-05T23:59:30Z"}});
        let s = status(&b, &pods, &|_| None, now());
        assert_eq!(s["currentHealthy"], 1);
        assert_eq!(s["disruptionsAllowed"], 0);
        assert_eq!(s["disruptedPods"], json!({"a": "2026-12-05T23:59:30Z"}));
        b["status"]["disruptedPods"] = json!({"a": "2026-12-05T23:50:00Z"});
        let s = status(&b, &pods, &|_| None, now());
        assert_eq!(s["currentHealthy"], 2);
        assert!(s.get("disruptedPods").is_none());
    }

    #[test]
    fn selectors_follow_policy_v1() {
        let labels = json!({"app": "web", "tier": "fe"});
        assert!(!selects(&Value::Null, &labels));
        assert!(selects(&json!({}), &labels));
        assert!(selects(&json!({"matchLabels": {"app": "web"}}), &labels));
        assert!(!selects(&json!({"matchLabels": {"app": "db"}}), &labels));
        assert!(selects(
            &json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]}]}),
            &labels
        ));
    }
}
