//! Storage object in-use protection: kube's PVC protection controller
//! (`pkg/controller/volume/pvcprotection`) and PV protection controller
//! (`pkg/controller/volume/pvprotection`).
//!
//! The API server's admission gives every new claim `kubernetes.io/pvc-protection` and every
//! new volume `kubernetes.io/pv-protection` (barge-apiserver's `admission/storageprotection.rs`);
//! this controller adds them to older objects lacking them and removes them from deleted ones
//! once they are unused:
//! - a claim is in use while a pod scheduled to a node (`spec.nodeName` set) references it in
//!   a `persistentVolumeClaim` volume, whatever its phase — the pod's deletion frees it. The
//!   reflector's pods are asked first, then a live list of the namespace's pods (the watch
//!   may not have shown a new pod yet), as kube's `isBeingUsed`;
//! - a volume is in use while its phase is `Bound`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::Client;
use serde_json::json;
use tokio::sync::Notify;

use crate::storage::{reflect, Tasks};
use crate::ControllerError;

/// The finalizer on claims (kube's `volumeutil.PVCProtectionFinalizer`).
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// The finalizer on volumes (kube's `volumeutil.PVProtectionFinalizer`).
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

fn has(meta: &ObjectMeta, f: &str) -> bool {
    meta.finalizers.iter().flatten().any(|x| x == f)
}

/// What to do with finalizer `f` of an object: `Some(true)` add it (alive, lacking it),
/// `Some(false)` remove it (being deleted, holding it, unused), `None` nothing. `in_use` is
/// only asked for a deletion candidate (kube's `IsDeletionCandidate`/`NeedToAddFinalizer`).
pub fn finalizer_action(meta: &ObjectMeta, f: &str, in_use: impl FnOnce() -> bool) -> Option<bool> {
    match (meta.deletion_timestamp.is_some(), has(meta, f)) {
        (false, false) => Some(true),
        (true, true) if !in_use() => Some(false),
        _ => None,
    }
}

/// Whether `pod` keeps claim `claim` of its namespace in use (kube's `podUsesPVC` for
/// `persistentVolumeClaim` volumes: only a scheduled pod counts).
pub fn pod_uses_claim(pod: &Pod, claim: &str) -> bool {
    let Some(spec) = &pod.spec else { return false };
    spec.node_name.as_deref().is_some_and(|n| !n.is_empty())
        && spec.volumes.iter().flatten().any(|v| {
            v.persistent_volume_claim
                .as_ref()
                .is_some_and(|c| c.claim_name == claim)
        })
}

/// The finalizer list of `meta` with `f` added or removed, as a merge patch conditional on
/// the `resourceVersion` it was read at.
fn finalizer_patch(meta: &ObjectMeta, f: &str, add: bool) -> serde_json::Value {
    let mut list: Vec<String> = meta
        .finalizers
        .iter()
        .flatten()
        .filter(|x| x.as_str() != f)
        .cloned()
        .collect();
    if add {
        list.push(f.to_string());
    }
    json!({"metadata": {"resourceVersion": meta.resource_version, "finalizers": list}})
}

/// Runs both protection controllers forever.
pub async fn run(client: Client) {
    let wake = Arc::new(Notify::new());
    let (claims, t1) = reflect(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        wake.clone(),
    );
    let (volumes, t2) = reflect(Api::<PersistentVolume>::all(client.clone()), wake.clone());
    let (pods, t3) = reflect(Api::<Pod>::all(client.clone()), wake.clone());
    let _tasks = Tasks(vec![t1, t2, t3]);
    for ready in [
        claims.wait_until_ready().await.is_ok(),
        volumes.wait_until_ready().await.is_ok(),
        pods.wait_until_ready().await.is_ok(),
    ] {
        if !ready {
            return;
        }
    }
    loop {
        if let Err(e) = pass(&client, &claims, &volumes, &pods).await {
            tracing::debug!("protection: {e}");
        }
        tokio::select! {
            _ = wake.notified() => tokio::time::sleep(Duration::from_millis(50)).await,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

async fn pass(
    client: &Client,
    claims: &kube::runtime::reflector::Store<PersistentVolumeClaim>,
    volumes: &kube::runtime::reflector::Store<PersistentVolume>,
    pods: &kube::runtime::reflector::Store<Pod>,
) -> Result<(), ControllerError> {
    let cached_pods = pods.state();
    for pvc in claims.state() {
        let ns = pvc.metadata.namespace.clone().unwrap_or_default();
        let name = pvc.metadata.name.clone().unwrap_or_default();
        let cached_use = cached_pods.iter().any(|p| {
            p.metadata.namespace.as_deref() == Some(ns.as_str()) && pod_uses_claim(p, &name)
        });
        let Some(add) = finalizer_action(&pvc.metadata, PVC_PROTECTION, || cached_use) else {
            continue;
        };
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        if !add {
            // The cache may not show a pod just made: confirm with a live list.
            let live = Api::<Pod>::namespaced(client.clone(), &ns)
                .list(&ListParams::default())
                .await
                .map_err(|e| ControllerError::api(format!("listing pods of {ns}"), e))?;
            if live.items.iter().any(|p| pod_uses_claim(p, &name)) {
                continue;
            }
        }
        let patch = finalizer_patch(&pvc.metadata, PVC_PROTECTION, add);
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::info!(claim = %format!("{ns}/{name}"), add, "pvc-protection finalizer")
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => {
                return Err(ControllerError::api(
                    format!("claim {ns}/{name} finalizers"),
                    e,
                ))
            }
        }
    }
    for pv in volumes.state() {
        let name = pv.metadata.name.clone().unwrap_or_default();
        let bound = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        let Some(add) = finalizer_action(&pv.metadata, PV_PROTECTION, || bound) else {
            continue;
        };
        let api: Api<PersistentVolume> = Api::all(client.clone());
        let patch = finalizer_patch(&pv.metadata, PV_PROTECTION, add);
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => tracing::info!(volume = %name, add, "pv-protection finalizer"),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(ControllerError::api(format!("volume {name} finalizers"), e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(v: serde_json::Value) -> ObjectMeta {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn finalizers_are_added_to_live_objects_and_removed_from_unused_deleted_ones() {
        let live = meta(json!({"name": "c"}));
        assert_eq!(finalizer_action(&live, PVC_PROTECTION, || true), Some(true));
        let held = meta(json!({"name": "c", "finalizers": [PVC_PROTECTION]}));
        assert_eq!(finalizer_action(&held, PVC_PROTECTION, || false), None);
        let deleted = meta(json!({"name": "c", "finalizers": [PVC_PROTECTION],
            "deletionTimestamp": "2026-01-01T00:00:00Z"}));
        assert_eq!(finalizer_action(&deleted, PVC_PROTECTION, || true), None);
        assert_eq!(
            finalizer_action(&deleted, PVC_PROTECTION, || false),
            Some(false)
        );
        let gone = meta(json!({"name": "c", "deletionTimestamp": "2026-01-01T00:00:00Z"}));
        assert_eq!(finalizer_action(&gone, PVC_PROTECTION, || false), None);
        let p = finalizer_patch(&deleted, PVC_PROTECTION, false);
        assert_eq!(p["metadata"]["finalizers"], json!([]));
    }

    #[test]
    fn only_scheduled_pods_use_a_claim() {
        let pod = |node: Option<&str>| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {
                "nodeName": node, "containers": [{"name": "c"}],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}))
            .unwrap()
        };
        assert!(pod_uses_claim(&pod(Some("n1")), "data"));
        assert!(!pod_uses_claim(&pod(Some("n1")), "other"));
        assert!(!pod_uses_claim(&pod(None), "data"));
    }
}
