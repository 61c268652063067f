//! Storage: kube's PersistentVolume controller (`pkg/controller/volume/persistentvolume`, the
//! binder) and a built-in local-path provisioner as k3s ships (`rancher.io/local-path`).
//!
//! - At start the default StorageClass `local-path` is created if missing (provisioner
//!   `rancher.io/local-path`, `volumeBindingMode: WaitForFirstConsumer`, `reclaimPolicy:
//!   Delete`, annotation `storageclass.kubernetes.io/is-default-class: "true"`).
//! - A claim without `storageClassName` gets the default class (kube ≥ 1.28's retroactive
//!   default class assignment).
//! - A pending claim binds to the smallest `Available` PersistentVolume of its class whose
//!   capacity and access modes cover it (and, for a `WaitForFirstConsumer` class, whose node
//!   affinity admits the node the scheduler chose in `volume.kubernetes.io/selected-node`);
//!   failing that, a claim of a `rancher.io/local-path` class with a selected node is
//!   provisioned: a PV `pvc-<claim uid>` with a `hostPath` (`DirectoryOrCreate`) of
//!   `<local path dir>/pvc-<uid>_<namespace>_<claim>` — the node agent creates it when a pod
//!   mounts it — and `nodeAffinity` to that node.
//! - Binding writes the PV's `claimRef` and phase `Bound`, then the claim's `volumeName`,
//!   kube's `pv.kubernetes.io/bind-completed`/`bound-by-controller` annotations and its
//!   status (`Bound`, capacity, access modes).
//! - A PV whose claim is gone is `Released`; with `reclaimPolicy: Delete` a provisioned one is
//!   deleted with its directory (this server's node's directory: the provisioner runs beside
//!   its node agent; a multi-node cluster would need kube's helper pods). A PV without a claim
//!   is `Available`.
//!
//! Every pass reads the cached claims, volumes and classes and acts on the API; a claim is
//! declared gone only after a live read.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus, PersistentVolumeSpec,
    PersistentVolumeStatus, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;
use tokio::sync::Notify;

use crate::ControllerError;

/// The built-in provisioner's name (k3s's local-path-provisioner).
pub const PROVISIONER: &str = "rancher.io/local-path";
/// The default StorageClass's name.
pub const DEFAULT_CLASS: &str = "local-path";
/// The annotation marking the default StorageClass.
pub const IS_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// The node a `WaitForFirstConsumer` claim is for (set by the scheduler).
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Set on a PV the provisioner made.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// Set on a claim once bound.
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on a claim (and a PV) bound by this controller.
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";

/// The default StorageClass, as k3s creates it.
pub fn default_class() -> StorageClass {
    serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": DEFAULT_CLASS, "annotations": {IS_DEFAULT_CLASS: "true"}},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    }))
    .expect("a valid StorageClass")
}

/// The directory the provisioner gives claim `uid` `ns/name` (k3s's
/// `pvc-<uid>_<namespace>_<name>`).
pub fn volume_dir(root: &std::path::Path, uid: &str, ns: &str, name: &str) -> PathBuf {
    root.join(format!("pvc-{uid}_{ns}_{name}"))
}

/// A quantity of bytes (`1Gi`, `500M`, `1024`); `None` when unparsable.
pub fn bytes(q: &str) -> Option<f64> {
    let units: [(&str, f64); 12] = [
        ("Ki", 1024.0),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (s, m) in units {
        if let Some(n) = q.strip_suffix(s) {
            return n.parse::<f64>().ok().map(|n| n * m);
        }
    }
    q.parse().ok()
}

fn requested(pvc: &PersistentVolumeClaim) -> f64 {
    pvc.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref()?.requests.as_ref()?.get("storage"))
        .and_then(|q| bytes(&q.0))
        .unwrap_or(0.0)
}

fn capacity(pv: &PersistentVolume) -> f64 {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref()?.get("storage"))
        .and_then(|q| bytes(&q.0))
        .unwrap_or(0.0)
}

fn class_of_pv(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

fn pv_phase(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn annotation<'a>(m: &'a ObjectMeta, k: &str) -> Option<&'a str> {
    m.annotations.as_ref()?.get(k).map(String::as_str)
}

/// Whether `pv` can serve `pvc` (kube's `findMatchingVolume` checks): free or pre-bound to
/// it, not being deleted, same class and volume mode, enough capacity, every access mode asked
/// for, and — when `node` is given — a node affinity admitting it.
pub fn matches(pv: &PersistentVolume, pvc: &PersistentVolumeClaim, node: Option<&str>) -> bool {
    let (Some(spec), Some(cspec)) = (pv.spec.as_ref(), pvc.spec.as_ref()) else {
        return false;
    };
    if pv.metadata.deletion_timestamp.is_some() {
        return false;
    }
    if let Some(r) = &spec.claim_ref {
        let same = r.name.as_deref() == pvc.metadata.name.as_deref()
            && r.namespace.as_deref() == pvc.metadata.namespace.as_deref()
            && r.uid
                .as_deref()
                .is_none_or(|u| Some(u) == pvc.metadata.uid.as_deref());
        if !same {
            return false;
        }
    } else if pv_phase(pv) != "Available" && !pv_phase(pv).is_empty() {
        return false;
    }
    if class_of_pv(pv) != cspec.storage_class_name.as_deref().unwrap_or("") {
        return false;
    }
    let mode = |m: Option<&String>| m.map_or("Filesystem", |s| s.as_str()).to_string();
    if mode(spec.volume_mode.as_ref()) != mode(cspec.volume_mode.as_ref()) {
        return false;
    }
    if capacity(pv) < requested(pvc) {
        return false;
    }
    let modes = spec.access_modes.clone().unwrap_or_default();
    if !cspec
        .access_modes
        .iter()
        .flatten()
        .all(|m| modes.contains(m))
    {
        return false;
    }
    if let (Some(node), Some(req)) = (
        node,
        spec.node_affinity
            .as_ref()
            .and_then(|a| a.required.as_ref()),
    ) {
        return req.node_selector_terms.iter().any(|t| {
            t.match_expressions.iter().flatten().all(|e| {
                e.key == "kubernetes.io/hostname"
                    && match e.operator.as_str() {
                        "In" => e.values.iter().flatten().any(|v| v == node),
                        "NotIn" => !e.values.iter().flatten().any(|v| v == node),
                        _ => false,
                    }
            })
        });
    }
    true
}

/// The PV the provisioner makes for `pvc` on `node` under `root` with `class`'s reclaim policy.
pub fn provisioned_volume(
    pvc: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
    root: &std::path::Path,
) -> PersistentVolume {
    let uid = pvc.metadata.uid.clone().unwrap_or_default();
    let ns = pvc.metadata.namespace.clone().unwrap_or_default();
    let name = pvc.metadata.name.clone().unwrap_or_default();
    let spec = pvc.spec.clone().unwrap_or_default();
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref()?.get("storage").cloned())
        .unwrap_or_else(|| Quantity("0".into()));
    let mut annotations = BTreeMap::new();
    annotations.insert(PROVISIONED_BY.to_string(), PROVISIONER.to_string());
    annotations.insert(
        "local.path.provisioner/selected-node".to_string(),
        node.to_string(),
    );
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(format!("pvc-{uid}")),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some([("storage".to_string(), storage)].into()),
            access_modes: spec.access_modes.clone(),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: class.metadata.name.clone(),
            volume_mode: Some(spec.volume_mode.unwrap_or_else(|| "Filesystem".into())),
            host_path: Some(HostPathVolumeSource {
                path: volume_dir(root, &uid, &ns, &name).display().to_string(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "kubernetes.io/hostname".into(),
                            operator: "In".into(),
                            values: Some(vec![node.to_string()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            claim_ref: Some(claim_ref(pvc)),
            ..Default::default()
        }),
        status: None,
    }
}

fn claim_ref(pvc: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        name: pvc.metadata.name.clone(),
        namespace: pvc.metadata.namespace.clone(),
        uid: pvc.metadata.uid.clone(),
        resource_version: pvc.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// What the controller needs besides the API.
#[derive(Clone, Debug, Default)]
pub struct StorageConfig {
    /// Where the local-path provisioner makes volumes (the node's `<data-root>/storage`);
    /// `None`: nothing is provisioned (no node agent in this process).
    pub local_path_dir: Option<PathBuf>,
}

struct Caches {
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
}

pub(crate) fn reflect<K>(api: Api<K>, wake: Arc<Notify>) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync,
    K: 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            if let Err(e) = ev {
                tracing::debug!("storage watch: {e}");
            }
            wake.notify_one();
        }
    });
    (reader, task)
}

/// Runs the PV controller and the local-path provisioner forever.
pub async fn run(client: Client, cfg: StorageConfig) {
    let classes_api: Api<StorageClass> = Api::all(client.clone());
    loop {
        match classes_api
            .create(&PostParams::default(), &default_class())
            .await
        {
            Ok(_) => break,
            Err(kube::Error::Api(s)) if s.code == 409 => break,
            Err(e) => {
                tracing::debug!("creating the default StorageClass: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    let wake = Arc::new(Notify::new());
    let (claims, t1) = reflect(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        wake.clone(),
    );
    let (volumes, t2) = reflect(Api::<PersistentVolume>::all(client.clone()), wake.clone());
    let (classes, t3) = reflect(Api::<StorageClass>::all(client.clone()), wake.clone());
    let _tasks = Tasks(vec![t1, t2, t3]);
    let caches = Caches {
        claims,
        volumes,
        classes,
    };
    for ready in [
        caches.claims.wait_until_ready().await.is_ok(),
        caches.volumes.wait_until_ready().await.is_ok(),
        caches.classes.wait_until_ready().await.is_ok(),
    ] {
        if !ready {
            return;
        }
    }
    loop {
        if let Err(e) = pass(&client, &caches, &cfg).await {
            tracing::debug!("storage: {e}");
        }
        tokio::select! {
            _ = wake.notified() => {
                // Let a burst of events land before the next pass.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Watch tasks, aborted when the controller's future is dropped (at shutdown).
pub(crate) struct Tasks(pub(crate) Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        self.0.iter().for_each(|t| t.abort());
    }
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ControllerError {
    let what = what.into();
    move |e| ControllerError::api(what, e)
}

/// One pass over every claim and volume.
async fn pass(client: &Client, c: &Caches, cfg: &StorageConfig) -> Result<(), ControllerError> {
    let classes: Vec<Arc<StorageClass>> = c.classes.state();
    let default = classes
        .iter()
        .filter(|s| annotation(&s.metadata, IS_DEFAULT_CLASS) == Some("true"))
        .max_by_key(|s| s.metadata.creation_timestamp.clone())
        .and_then(|s| s.metadata.name.clone());
    let volumes: Vec<Arc<PersistentVolume>> = c.volumes.state();
    let mut taken: Vec<String> = Vec::new();
    for pvc in c.claims.state() {
        if pvc.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let ns = pvc.metadata.namespace.clone().unwrap_or_default();
        let name = pvc.metadata.name.clone().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        let spec = pvc.spec.clone().unwrap_or_default();
        // Retroactive default class.
        if spec.storage_class_name.is_none() && spec.volume_name.is_none() {
            if let Some(d) = &default {
                let patch = json!({"metadata": {"resourceVersion": pvc.metadata.resource_version},
                    "spec": {"storageClassName": d}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(api_err(format!("setting the class of claim {ns}/{name}")))?;
            }
            continue;
        }
        let phase = pvc.status.as_ref().and_then(|s| s.phase.as_deref());
        if let Some(v) = spec.volume_name.as_deref().filter(|v| !v.is_empty()) {
            taken.push(v.to_string());
            if phase == Some("Bound") {
                continue;
            }
            if let Some(pv) = volumes
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(v))
            {
                bind(client, pv, &pvc).await?;
            }
            continue;
        }
        let class_name = spec.storage_class_name.clone().unwrap_or_default();
        let class = classes
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(class_name.as_str()));
        let wait =
            class.and_then(|s| s.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer");
        let node = annotation(&pvc.metadata, SELECTED_NODE);
        if wait && node.is_none() {
            if phase != Some("Pending") {
                set_claim_pending(&api, &pvc).await?;
            }
            continue;
        }
        let best = volumes
            .iter()
            .filter(|pv| {
                !taken
                    .iter()
                    .any(|t| Some(t.as_str()) == pv.metadata.name.as_deref())
            })
            .filter(|pv| matches(pv, &pvc, node))
            .min_by(|a, b| capacity(a).total_cmp(&capacity(b)))
            .cloned();
        if let Some(pv) = best {
            taken.push(pv.metadata.name.clone().unwrap_or_default());
            bind(client, &pv, &pvc).await?;
            continue;
        }
        match (class, node, &cfg.local_path_dir) {
            (Some(class), Some(node), Some(root)) if class.provisioner == PROVISIONER => {
                let pv = provisioned_volume(&pvc, class, node, root);
                let pvs: Api<PersistentVolume> = Api::all(client.clone());
                let created = match pvs.create(&PostParams::default(), &pv).await {
                    Ok(p) => p,
                    Err(kube::Error::Api(s)) if s.code == 409 => continue,
                    Err(e) => {
                        return Err(ControllerError::api(
                            format!("provisioning a volume for claim {ns}/{name}"),
                            e,
                        ))
                    }
                };
                tracing::info!(claim = %format!("{ns}/{name}"), node, "provisioned a local-path volume");
                taken.push(created.metadata.name.clone().unwrap_or_default());
                bind(client, &created, &pvc).await?;
            }
            _ => {
                if phase != Some("Pending") {
                    set_claim_pending(&api, &pvc).await?;
                }
            }
        }
    }
    for pv in volumes {
        reclaim(client, &c.claims, &pv, cfg).await?;
    }
    Ok(())
}

async fn set_claim_pending(
    api: &Api<PersistentVolumeClaim>,
    pvc: &PersistentVolumeClaim,
) -> Result<(), ControllerError> {
    let mut new = pvc.clone();
    new.status = Some(PersistentVolumeClaimStatus {
        phase: Some("Pending".into()),
        ..Default::default()
    });
    let name = pvc.metadata.name.clone().unwrap_or_default();
    api.replace_status(&name, &PostParams::default(), &new)
        .await
        .map_err(api_err(format!("claim {name} status")))?;
    Ok(())
}

/// Binds `pv` and `pvc` to each other (kube's `bind`: the volume first, then the claim).
async fn bind(
    client: &Client,
    pv: &PersistentVolume,
    pvc: &PersistentVolumeClaim,
) -> Result<(), ControllerError> {
    let pv_name = pv.metadata.name.clone().unwrap_or_default();
    let ns = pvc.metadata.namespace.clone().unwrap_or_default();
    let name = pvc.metadata.name.clone().unwrap_or_default();
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let mut pv = pv.clone();
    let needs_ref = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_none_or(|r| r.uid.as_deref() != pvc.metadata.uid.as_deref());
    if needs_ref {
        if let Some(s) = pv.spec.as_mut() {
            s.claim_ref = Some(claim_ref(pvc));
        }
        pv.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(BOUND_BY_CONTROLLER.into(), "yes".into());
        pv = pvs
            .replace(&pv_name, &PostParams::default(), &pv)
            .await
            .map_err(api_err(format!("binding volume {pv_name}")))?;
    }
    if pv_phase(&pv) != "Bound" {
        pv.status = Some(PersistentVolumeStatus {
            phase: Some("Bound".into()),
            ..Default::default()
        });
        pvs.replace_status(&pv_name, &PostParams::default(), &pv)
            .await
            .map_err(api_err(format!("volume {pv_name} status")))?;
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let mut claim = pvc.clone();
    if claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()) != Some(pv_name.as_str()) {
        if let Some(s) = claim.spec.as_mut() {
            s.volume_name = Some(pv_name.clone());
        }
        let a = claim
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        a.insert(BIND_COMPLETED.into(), "yes".into());
        a.insert(BOUND_BY_CONTROLLER.into(), "yes".into());
        claim = claims
            .replace(&name, &PostParams::default(), &claim)
            .await
            .map_err(api_err(format!("binding claim {ns}/{name}")))?;
    }
    let spec = pv.spec.clone().unwrap_or_default();
    claim.status = Some(PersistentVolumeClaimStatus {
        phase: Some("Bound".into()),
        access_modes: spec.access_modes.clone(),
        capacity: spec.capacity.clone(),
        ..Default::default()
    });
    claims
        .replace_status(&name, &PostParams::default(), &claim)
        .await
        .map_err(api_err(format!("claim {ns}/{name} status")))?;
    tracing::info!(claim = %format!("{ns}/{name}"), volume = %pv_name, "bound");
    Ok(())
}

/// Keeps a volume's phase: `Available` without a claim, `Released` once its claim is gone
/// (then deleted with its directory under `reclaimPolicy: Delete` when provisioned here).
async fn reclaim(
    client: &Client,
    claims: &Store<PersistentVolumeClaim>,
    pv: &PersistentVolume,
    cfg: &StorageConfig,
) -> Result<(), ControllerError> {
    let name = pv.metadata.name.clone().unwrap_or_default();
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    if pv.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let spec = pv.spec.clone().unwrap_or_default();
    let set_phase = |phase: &'static str| {
        let mut new = pv.clone();
        new.status = Some(PersistentVolumeStatus {
            phase: Some(phase.into()),
            ..Default::default()
        });
        let pvs = pvs.clone();
        let name = name.clone();
        async move {
            pvs.replace_status(&name, &PostParams::default(), &new)
                .await
                .map(|_| ())
                .map_err(api_err(format!("volume {name} status")))
        }
    };
    let Some(r) = spec.claim_ref.as_ref() else {
        if pv_phase(pv) != "Available" {
            set_phase("Available").await?;
        }
        return Ok(());
    };
    let Some(uid) = r.uid.as_deref() else {
        return Ok(()); // pre-bound to a claim by name: the claim pass binds it.
    };
    let ns = r.namespace.clone().unwrap_or_default();
    let claim = r.name.clone().unwrap_or_default();
    let cached = claims
        .get(&reflector::ObjectRef::new(&claim).within(&ns))
        .filter(|c| c.metadata.uid.as_deref() == Some(uid));
    if cached.is_some() {
        return Ok(());
    }
    // The cache may lag behind a claim just created: confirm with a live read.
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let live = api
        .get_opt(&claim)
        .await
        .map_err(api_err(format!("reading claim {ns}/{claim}")))?;
    if live.is_some_and(|c| c.metadata.uid.as_deref() == Some(uid)) {
        return Ok(());
    }
    if pv_phase(pv) != "Released" {
        set_phase("Released").await?;
    }
    let delete = spec.persistent_volume_reclaim_policy.as_deref() == Some("Delete");
    if delete && annotation(&pv.metadata, PROVISIONED_BY) == Some(PROVISIONER) {
        if let (Some(root), Some(h)) = (&cfg.local_path_dir, &spec.host_path) {
            let dir = PathBuf::from(&h.path);
            // Only what the provisioner made, below its directory.
            if dir.starts_with(root) && dir != *root {
                let d = dir.clone();
                let removed =
                    tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&d) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                        _ => Ok(()),
                    })
                    .await;
                if let Ok(Err(e)) = removed {
                    tracing::warn!("removing {}: {e}", dir.display());
                    return Ok(());
                }
            }
        }
        match pvs.delete(&name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(volume = %name, "deleted a released volume"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(ControllerError::api(format!("deleting volume {name}"), e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pvc(v: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(v).unwrap()
    }

    fn pv(v: serde_json::Value) -> PersistentVolume {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_default_class_is_k3s_local_path() {
        let c = default_class();
        assert_eq!(c.provisioner, "rancher.io/local-path");
        assert_eq!(
            c.volume_binding_mode.as_deref(),
            Some("WaitForFirstConsumer")
        );
        assert_eq!(c.reclaim_policy.as_deref(), Some("Delete"));
        assert_eq!(annotation(&c.metadata, IS_DEFAULT_CLASS), Some("true"));
    }

    #[test]
    fn static_volumes_match_by_class_capacity_modes_and_node() {
        let claim = pvc(
            json!({"metadata": {"name": "c", "namespace": "default", "uid": "u1"},
            "spec": {"storageClassName": "manual", "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}),
        );
        let vol = |cap: &str, modes: serde_json::Value, class: &str| {
            pv(
                json!({"metadata": {"name": "v"}, "spec": {"capacity": {"storage": cap},
                "accessModes": modes, "storageClassName": class, "hostPath": {"path": "/x"}}}),
            )
        };
        assert!(matches(
            &vol("2Gi", json!(["ReadWriteOnce"]), "manual"),
            &claim,
            None
        ));
        assert!(matches(
            &vol("1024Mi", json!(["ReadWriteOnce", "ReadOnlyMany"]), "manual"),
            &claim,
            None
        ));
        assert!(!matches(
            &vol("500Mi", json!(["ReadWriteOnce"]), "manual"),
            &claim,
            None
        ));
        assert!(!matches(
            &vol("2Gi", json!(["ReadOnlyMany"]), "manual"),
            &claim,
            None
        ));
        assert!(!matches(
            &vol("2Gi", json!(["ReadWriteOnce"]), "other"),
            &claim,
            None
        ));
        let mut other = vol("2Gi", json!(["ReadWriteOnce"]), "manual");
        other.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
            name: Some("d".into()),
            namespace: Some("default".into()),
            ..Default::default()
        });
        assert!(!matches(&other, &claim, None));
        let pinned = pv(
            json!({"metadata": {"name": "v"}, "spec": {"capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"], "storageClassName": "manual", "hostPath": {"path": "/x"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}}}),
        );
        assert!(matches(&pinned, &claim, Some("n1")));
        assert!(!matches(&pinned, &claim, Some("n2")));
    }

    #[test]
    fn provisioned_volumes_as_k3s() {
        let claim = pvc(
            json!({"metadata": {"name": "data-web-0", "namespace": "default", "uid": "u1"},
            "spec": {"storageClassName": "local-path", "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}),
        );
        let pv = provisioned_volume(
            &claim,
            &default_class(),
            "n1",
            std::path::Path::new("/d/storage"),
        );
        assert_eq!(pv.metadata.name.as_deref(), Some("pvc-u1"));
        let s = pv.spec.unwrap();
        assert_eq!(
            s.host_path.unwrap().path,
            "/d/storage/pvc-u1_default_data-web-0"
        );
        assert_eq!(
            s.persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
        assert_eq!(s.storage_class_name.as_deref(), Some("local-path"));
        assert_eq!(s.claim_ref.unwrap().uid.as_deref(), Some("u1"));
        assert_eq!(s.capacity.unwrap()["storage"].0, "1Gi");
        assert_eq!(bytes("1Gi"), Some(1073741824.0));
    }
}
