//! The node lifecycle controller (kube's `pkg/controller/nodelifecycle` with its
//! NoExecute taint manager).
//!
//! Every monitor period it looks at each Node's heartbeat — its Lease
//! `kube-node-lease/<node>` `renewTime` and its `Ready` condition's `lastHeartbeatTime`, each
//! timed by this controller's own clock when it was seen to change, as kube does (so clock skew
//! does not matter and a restarted controller gives every node a fresh grace period). A node
//! silent for longer than the grace period (`--node-monitor-grace-period`, kube's 40 s) gets
//! its `Ready`, `MemoryPressure`, `DiskPressure` and `PIDPressure` conditions set to `Unknown`
//! (`NodeStatusUnknown`, "Kubelet stopped posting node status."; `NodeStatusNeverUpdated` when
//! it never posted). Taints follow `Ready` (kube's TaintBasedEvictions and
//! TaintNodeByCondition): `Unknown` → `node.kubernetes.io/unreachable` `NoSchedule` and
//! `NoExecute`, `False` → `node.kubernetes.io/not-ready` ones, `True` → neither.
//!
//! The taint manager evicts the pods of a node with `NoExecute` taints: at once when a taint is
//! not tolerated, else when the smallest `tolerationSeconds` of the matching tolerations has
//! passed since the taint's `timeAdded` (never without `tolerationSeconds`). Eviction is kube's:
//! the `DisruptionTarget` condition (`DeletionByTaintManager`), a `TaintManagerEviction` event,
//! then a graceful delete.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::Client;
use serde_json::json;

use crate::workloads::pods;
use crate::ControllerError;

/// kube-controller-manager's `--node-monitor-grace-period` default.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(40);
/// kube's `--node-monitor-period`.
pub const MONITOR_PERIOD: Duration = Duration::from_secs(5);
/// The taint of a node that stopped reporting.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The taint of a node reporting `Ready=False`.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";

/// The controller's settings.
#[derive(Clone, Copy, Debug)]
pub struct LifecycleConfig {
    /// How long a node may be silent before it is `Unknown`.
    pub grace_period: Duration,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            grace_period: DEFAULT_GRACE_PERIOD,
        }
    }
}

/// The heartbeat values last seen for a node and when they were seen to change.
struct Health {
    lease: Option<String>,
    heartbeat: Option<String>,
    changed: Instant,
}

/// The node's `Ready` condition status (`None`: it has none).
pub fn ready_status(node: &Node) -> Option<&str> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

/// The conditions of a node gone silent (kube's `tryUpdateNodeHealth`): each of kubelet's four
/// set to `Unknown`, or added so when it never posted them.
pub fn unknown_conditions(node: &Node, now: &Time) -> Vec<NodeCondition> {
    let mut conds = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    for ty in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        match conds.iter_mut().find(|c| c.type_ == ty) {
            Some(c) => {
                if c.status != "Unknown" {
                    c.status = "Unknown".into();
                    c.reason = Some("NodeStatusUnknown".into());
                    c.message = Some("Kubelet stopped posting node status.".into());
                    c.last_transition_time = Some(now.clone());
                }
            }
            None => conds.push(NodeCondition {
                type_: ty.into(),
                status: "Unknown".into(),
                reason: Some("NodeStatusNeverUpdated".into()),
                message: Some("Kubelet never posted node status.".into()),
                last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                last_transition_time: Some(now.clone()),
            }),
        }
    }
    conds
}

/// The node's taints with the lifecycle ones matching `ready` (kept as they are when already
/// right, so `timeAdded` stays).
pub fn wanted_taints(node: &Node, ready: Option<&str>, now: &Time) -> Vec<Taint> {
    let mut taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let want = match ready {
        Some("Unknown") => Some(UNREACHABLE),
        Some("False") => Some(NOT_READY),
        _ => None,
    };
    taints.retain(|t| {
        !((t.key == UNREACHABLE || t.key == NOT_READY)
            && (t.effect == "NoExecute" || t.effect == "NoSchedule")
            && Some(t.key.as_str()) != want)
    });
    if let Some(key) = want {
        for effect in ["NoSchedule", "NoExecute"] {
            if !taints.iter().any(|t| t.key == key && t.effect == effect) {
                taints.push(Taint {
                    key: key.into(),
                    effect: effect.into(),
                    time_added: (effect == "NoExecute").then(|| now.clone()),
                    value: None,
                });
            }
        }
    }
    taints
}

/// When the taint manager evicts `tolerations`' pod from a node with `taints`: `Some(0.0)`
/// now, `Some(s)` `s` seconds after `now_secs` (epoch seconds), `None` never.
pub fn eviction_in(tolerations: &[Toleration], taints: &[Taint], now_secs: i64) -> Option<f64> {
    let mut at: Option<i64> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<&Toleration> = tolerations
            .iter()
            .filter(|t| barge_scheduler::plugins::node::tolerates(t, taint))
            .collect();
        if matching.is_empty() {
            return Some(0.0);
        }
        // The smallest tolerationSeconds; none means forever (kube's getMinTolerationTime).
        let secs = matching.iter().filter_map(|t| t.toleration_seconds).min();
        if matching.iter().all(|t| t.toleration_seconds.is_some()) {
            let added = taint
                .time_added
                .as_ref()
                .map_or(now_secs, |t| t.0.as_second());
            let deadline = added + secs.unwrap_or(0).max(0);
            at = Some(at.map_or(deadline, |a| a.min(deadline)));
        }
    }
    at.map(|a| ((a - now_secs) as f64).max(0.0))
}

/// Runs the controller forever.
pub async fn run(client: Client, cfg: LifecycleConfig) {
    let period = MONITOR_PERIOD
        .min(cfg.grace_period / 3)
        .max(Duration::from_millis(200));
    let mut health: HashMap<String, Health> = HashMap::new();
    loop {
        if let Err(e) = pass(&client, &cfg, &mut health).await {
            tracing::debug!("node lifecycle: {e}");
        }
        tokio::time::sleep(period).await;
    }
}

async fn pass(
    client: &Client,
    cfg: &LifecycleConfig,
    health: &mut HashMap<String, Health>,
) -> Result<(), ControllerError> {
    let nodes_api: Api<Node> = Api::all(client.clone());
    let nodes = nodes_api
        .list(&ListParams::default())
        .await
        .map_err(|e| ControllerError::api("listing nodes", e))?
        .items;
    let leases: HashMap<String, Lease> =
        Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
            .list(&ListParams::default())
            .await
            .map_err(|e| ControllerError::api("listing node leases", e))?
            .items
            .into_iter()
            .filter_map(|l| Some((l.metadata.name.clone()?, l)))
            .collect();
    health.retain(|n, _| nodes.iter().any(|x| x.metadata.name.as_deref() == Some(n)));
    let now = pods::now_time();
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let lease = leases
            .get(&name)
            .and_then(|l| l.spec.as_ref()?.renew_time.as_ref())
            .map(|t| format!("{:?}", t.0));
        let heartbeat = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_heartbeat_time.as_ref())
            .map(|t| format!("{:?}", t.0));
        let h = health.entry(name.clone()).or_insert_with(|| Health {
            lease: lease.clone(),
            heartbeat: heartbeat.clone(),
            changed: Instant::now(),
        });
        if h.lease != lease || h.heartbeat != heartbeat {
            h.lease = lease;
            h.heartbeat = heartbeat;
            h.changed = Instant::now();
        }
        let silent = h.changed.elapsed() > cfg.grace_period;
        let mut node = node;
        if silent && ready_status(&node) != Some("Unknown") {
            let conds = unknown_conditions(&node, &now);
            let patch = json!({"status": {"conditions": conds}});
            node = nodes_api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| ControllerError::api(format!("marking node {name} unknown"), e))?;
            tracing::info!(node = %name, "node stopped posting its status: Ready=Unknown");
        }
        let taints = wanted_taints(&node, ready_status(&node), &now);
        let current = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        if taints != current {
            let value = if taints.is_empty() {
                serde_json::Value::Null
            } else {
                json!(taints)
            };
            let patch = json!({
                "metadata": {"resourceVersion": node.metadata.resource_version},
                "spec": {"taints": value},
            });
            nodes_api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| ControllerError::api(format!("tainting node {name}"), e))?;
        }
        if taints.iter().any(|t| t.effect == "NoExecute") {
            evict(client, &name, &taints, &now).await?;
        }
    }
    Ok(())
}

/// The taint manager's pass over the pods of node `name`.
async fn evict(
    client: &Client,
    name: &str,
    taints: &[Taint],
    now: &Time,
) -> Result<(), ControllerError> {
    let pods_api: Api<Pod> = Api::all(client.clone());
    let lp = ListParams::default().fields(&format!("spec.nodeName={name}"));
    let list = pods_api
        .list(&lp)
        .await
        .map_err(|e| ControllerError::api(format!("listing the pods of node {name}"), e))?;
    for pod in list.items {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let tols = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        if eviction_in(&tols, taints, now.0.as_second()) != Some(0.0) {
            continue;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let pname = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let mut conds = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        conds.retain(|c| c.type_ != "DisruptionTarget");
        conds.push(k8s_openapi::api::core::v1::PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("DeletionByTaintManager".into()),
            message: Some("Taint manager: deleting due to NoExecute taint".into()),
            last_transition_time: Some(now.clone()),
            ..Default::default()
        });
        let _ = api
            .patch_status(
                &pname,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": {"conditions": conds}})),
            )
            .await;
        crate::workloads::events::record(
            client,
            "taint-eviction-controller",
            &pod,
            crate::workloads::events::Kind::Normal,
            "TaintManagerEviction",
            format!("Marking for deletion Pod {ns}/{pname}"),
        )
        .await;
        match api.delete(&pname, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(pod = %format!("{ns}/{pname}"), node = name, "evicted (NoExecute taint)")
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(ControllerError::api(
                    format!("evicting pod {ns}/{pname}"),
                    e,
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    fn t(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn silent_nodes_become_unknown_and_unreachable() {
        let n = node(json!({"metadata": {"name": "n"}, "status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}));
        let conds = unknown_conditions(&n, &t(100));
        assert_eq!(conds.len(), 4);
        assert_eq!(conds[0].status, "Unknown");
        assert_eq!(conds[0].reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            conds[0].message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        assert_eq!(conds[1].reason.as_deref(), Some("NodeStatusNeverUpdated"));
        let taints = wanted_taints(&n, Some("Unknown"), &t(100));
        assert_eq!(taints.len(), 2);
        assert!(taints.iter().any(|x| x.key == UNREACHABLE
            && x.effect == "NoExecute"
            && x.time_added == Some(t(100))));
        // Ready again: the lifecycle taints go, others stay.
        let mut tainted = n.clone();
        let mut all = taints.clone();
        all.push(Taint {
            key: "own".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        });
        tainted.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
            taints: Some(all),
            ..Default::default()
        });
        let back = wanted_taints(&tainted, Some("True"), &t(200));
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].key, "own");
        // Not ready: the not-ready taints instead.
        let nr = wanted_taints(&tainted, Some("False"), &t(200));
        assert!(nr
            .iter()
            .any(|x| x.key == NOT_READY && x.effect == "NoExecute"));
        assert!(!nr.iter().any(|x| x.key == UNREACHABLE));
    }

    #[test]
    fn eviction_after_toleration_seconds() {
        let taint = Taint {
            key: UNREACHABLE.into(),
            effect: "NoExecute".into(),
            time_added: Some(t(1000)),
            value: None,
        };
        let tol = |secs: Option<i64>| Toleration {
            key: Some(UNREACHABLE.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: secs,
            value: None,
        };
        // Not tolerated: now.
        assert_eq!(
            eviction_in(&[], std::slice::from_ref(&taint), 1000),
            Some(0.0)
        );
        // The default 300 s of DefaultTolerationSeconds.
        assert_eq!(
            eviction_in(&[tol(Some(300))], std::slice::from_ref(&taint), 1000),
            Some(300.0)
        );
        assert_eq!(
            eviction_in(&[tol(Some(300))], std::slice::from_ref(&taint), 1400),
            Some(0.0)
        );
        // Forever without tolerationSeconds (daemon pods).
        assert_eq!(
            eviction_in(&[tol(None)], std::slice::from_ref(&taint), 5000),
            None
        );
        // NoSchedule taints never evict.
        let soft = Taint {
            effect: "NoSchedule".into(),
            ..taint.clone()
        };
        assert_eq!(eviction_in(&[], &[soft], 1000), None);
    }
}
