//! Pod volumes as kubelet lays them out (`/var/lib/kubelet/pods/<uid>/volumes/<plugin>/<name>`,
//! here under the engine's data root): `emptyDir` (a directory shared by the pod's containers,
//! removed with the pod), `configMap` and `secret` (their keys, or `items`, written as files
//! with `defaultMode`/`mode`). Containers get them as bind mounts (`readOnly`, `subPath`).
//! Other volume types (projected ServiceAccount tokens, hostPath, PVCs…) are not mounted yet.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Container, KeyToPath, Pod, Secret};
use kube::{Api, Client};

/// The directory holding pod `uid`'s volumes.
pub fn pod_dir(data_root: &Path, uid: &str) -> PathBuf {
    data_root.join("pods").join(uid)
}

/// What one volume's directory is filled with.
enum Content {
    Empty,
    Files(BTreeMap<String, (Vec<u8>, u32)>),
}

/// Why a container's volumes could not be made: kubelet's message (the container waits with
/// `CreateContainerConfigError`), or an API failure (retried).
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Api(kube::Error),
}

/// The files of `data` (key → bytes) as `items` select them (all keys when there are none).
fn files(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    mode: i32,
    kind: &str,
    name: &str,
) -> Result<BTreeMap<String, (Vec<u8>, u32)>, VolumeError> {
    let mut out = BTreeMap::new();
    match items {
        Some(items) if !items.is_empty() => {
            for it in items {
                let Some(v) = data.get(&it.key) else {
                    let what = if kind == "secret" { "secret" } else { "config" };
                    return Err(VolumeError::Config(format!(
                        "{kind} references non-existent {what} key: {} ({kind} {name})",
                        it.key
                    )));
                };
                out.insert(it.path.clone(), (v.clone(), it.mode.unwrap_or(mode) as u32));
            }
        }
        _ => {
            for (k, v) in data {
                out.insert(k, (v, mode as u32));
            }
        }
    }
    Ok(out)
}

/// Makes the volumes `c` mounts (reading ConfigMaps and Secrets from the API) and returns its
/// bind mounts (`SRC:DEST[:ro]`). Blocking file work runs on the blocking pool.
pub async fn container_binds(
    client: &Client,
    data_root: &Path,
    pod: &Pod,
    c: &Container,
) -> Result<Vec<String>, VolumeError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    let mut plan: Vec<(PathBuf, Content, String)> = Vec::new();
    for vm in c.volume_mounts.iter().flatten() {
        let Some(v) = volumes.iter().find(|v| v.name == vm.name) else {
            continue;
        };
        let base = pod_dir(data_root, uid).join("volumes");
        let (dir, content) = if v.empty_dir.is_some() {
            (
                base.join("kubernetes.io~empty-dir").join(&v.name),
                Content::Empty,
            )
        } else if let Some(cm) = &v.config_map {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
            let name = cm.name.clone();
            let data = match api.get_opt(&name).await.map_err(VolumeError::Api)? {
                Some(o) => {
                    let mut d: BTreeMap<String, Vec<u8>> = o
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect();
                    d.extend(
                        o.binary_data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0)),
                    );
                    d
                }
                None if cm.optional == Some(true) => BTreeMap::new(),
                None => return Err(VolumeError::Config(format!("configmap {name:?} not found"))),
            };
            let mode = cm.default_mode.unwrap_or(0o644);
            (
                base.join("kubernetes.io~configmap").join(&v.name),
                Content::Files(files(data, cm.items.as_ref(), mode, "configmap", &name)?),
            )
        } else if let Some(sv) = &v.secret {
            let api: Api<Secret> = Api::namespaced(client.clone(), ns);
            let name = sv.secret_name.clone().unwrap_or_default();
            let data = match api.get_opt(&name).await.map_err(VolumeError::Api)? {
                Some(o) => {
                    let mut d: BTreeMap<String, Vec<u8>> = o
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    for (k, v) in o.string_data.unwrap_or_default() {
                        d.insert(k, v.into_bytes());
                    }
                    d
                }
                None if sv.optional == Some(true) => BTreeMap::new(),
                None => return Err(VolumeError::Config(format!("secret {name:?} not found"))),
            };
            let mode = sv.default_mode.unwrap_or(0o644);
            (
                base.join("kubernetes.io~secret").join(&v.name),
                Content::Files(files(data, sv.items.as_ref(), mode, "secret", &name)?),
            )
        } else {
            continue;
        };
        let mut src = dir.clone();
        if let Some(sub) = vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
            if sub.split('/').any(|p| p == "..") || sub.starts_with('/') {
                return Err(VolumeError::Config(format!("invalid subPath {sub:?}")));
            }
            src = src.join(sub);
        }
        let ro = if vm.read_only == Some(true) {
            ":ro"
        } else {
            ""
        };
        plan.push((
            dir,
            content,
            format!("{}:{}{ro}", src.display(), vm.mount_path),
        ));
    }
    tokio::task::spawn_blocking(move || {
        let mut binds = Vec::new();
        for (dir, content, bind) in plan {
            write_volume(&dir, content)
                .map_err(|e| VolumeError::Config(format!("volume {}: {e}", dir.display())))?;
            binds.push(bind);
        }
        Ok(binds)
    })
    .await
    .map_err(|e| VolumeError::Config(e.to_string()))?
}

/// Creates a volume's directory; for files, writes each (atomically) with its mode.
fn write_volume(dir: &Path, content: Content) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    if let Content::Empty = content {
        // kubelet's emptyDir is world-writable, so any container user can use it.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
    }
    if let Content::Files(files) = content {
        for (path, (data, mode)) in files {
            let p = dir.join(&path);
            if path.split('/').any(|c| c == "..") || path.starts_with('/') {
                continue;
            }
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let tmp = p.with_extension("barge-tmp");
            std::fs::write(&tmp, &data)?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode & 0o7777))?;
            std::fs::rename(&tmp, &p)?;
        }
    }
    Ok(())
}

/// Removes pod `uid`'s volumes (its containers are gone).
pub fn remove(data_root: &Path, uid: &str) {
    let dir = pod_dir(data_root, uid);
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!("removing {}: {e}", dir.display());
        }
    }
}
