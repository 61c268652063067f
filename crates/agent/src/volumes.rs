//! Pod volumes as kubelet lays them out (`/var/lib/kubelet/pods/<uid>/volumes/<plugin>/<name>`,
//! here under the engine's data root), mounted into containers as bind mounts (`readOnly`,
//! `subPath`, created as a directory when missing, as kubelet does):
//! - `emptyDir`: a world-writable directory shared by the pod's containers, removed with the pod;
//! - `configMap`, `secret`: their keys (or `items`) as files with `defaultMode`/`mode`;
//! - `downwardAPI`: `fieldRef`s (name, namespace, uid, labels and annotations as kubelet's
//!   `FormatMap`, nodeName, serviceAccountName, podIP, hostIP) and `resourceFieldRef`s (limits
//!   and requests with their divisor; an unset limit is the node's capacity);
//! - `projected`: configMap, secret, downwardAPI and `serviceAccountToken` sources in one
//!   directory — the token comes from the API server's TokenRequest (`audience`,
//!   `expirationSeconds`), so the admission's `kube-api-access-*` volume holds a token the API
//!   server accepts, beside `kube-root-ca.crt`'s `ca.crt` and the namespace;
//! - `hostPath`: the host path itself, checked or created by its `type` (kubelet's
//!   `hostPathTypeChecker` and messages);
//! - `persistentVolumeClaim`: the bound PersistentVolume's `hostPath`/`local` path (what the
//!   built-in local-path provisioner makes); an unbound claim waits.
//!
//! Tokens are written when a container starts and renewed in place as kubelet's token manager
//! does ([`refresh_tokens`], checked by each pod's worker): once 80 % of `expirationSeconds`
//! has passed since the token file was written, or 24 h whatever the life — each less a
//! random jitter below 10 s, kubelet's, so that pods started together spread their
//! renewals —, a new token is requested and swapped in with the rest of the volume.
//!
//! configMap, secret, downwardAPI and projected volumes are laid out by kubelet's
//! `AtomicWriter` ([`atomic_write`]: a timestamped payload directory, the `..data` link swapped
//! in one rename, each key a link `key -> ..data/key`) and re-synced every 10 s by the pod's
//! worker ([`resync`]), so updated ConfigMaps and Secrets reach running containers whole,
//! except through a `subPath` mount, which keeps its file, as on kube. ConfigMaps and Secrets
//! are read from the node's watch cache ([`Sources`], kubelet's watch-based managers), and a
//! volume is rewritten only when the hash of its payload changed since the last sync.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, PersistentVolume,
    PersistentVolumeClaim, Pod, Secret, ServiceAccount, ServiceAccountTokenProjection,
};
use kube::api::PostParams;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};

/// The directory holding pod `uid`'s volumes.
pub fn pod_dir(data_root: &Path, uid: &str) -> PathBuf {
    data_root.join("pods").join(uid)
}

/// What one volume's directory is filled with.
enum Content {
    Empty,
    Files(BTreeMap<String, (Vec<u8>, u32)>),
    /// A path of the host, checked (or created) by kubelet's hostPath type.
    Host(String),
}

/// Why a container's volumes could not be made: kubelet's message for a container
/// configuration error (`CreateContainerConfigError`), a mount that cannot be set up yet
/// (the pod stays `ContainerCreating`, kubelet's `FailedMount`), or an API failure (retried).
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Mount(String),
    #[error("{0}")]
    Api(kube::Error),
}

/// The pod facts the downward API reads besides the pod itself.
#[derive(Debug, Clone, Copy)]
pub struct PodFacts<'a> {
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
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

/// kubelet's watch-based ConfigMap and Secret managers, for the pods' volumes: every
/// ConfigMap and Secret of the cluster kept current by one reflector each (the node's shared
/// watch cache; the ingress controller beside the agent reflects every Secret too, and barge
/// has no Node authorizer to narrow a node's reads), so a volume's sources are read from
/// memory, never with a GET. It also remembers a hash of the payload each volume was last
/// re-synced to (by volume directory), so an unchanged source costs [`resync`] no disk I/O.
pub struct Sources {
    configmaps: Store<ConfigMap>,
    secrets: Store<Secret>,
    /// Volume directory → [`payload_hash`] of what [`resync`] last found or wrote there
    /// (tokens left out). Held only for map operations, never across an await.
    written: Mutex<HashMap<PathBuf, u64>>,
    /// The claim volumes already set up for a pod (`<pod dir>/volumes/kubernetes.io~pvc/
    /// <volume>`), kubelet's processed pods of its desired state of world: only a claim not
    /// yet set up is refused for being deleted, so a running pod's restarts keep their volume.
    claims: Mutex<std::collections::HashSet<PathBuf>>,
}

impl Sources {
    /// Starts the reflectors (tasks that live until the runtime ends) and waits until both
    /// listed once.
    pub async fn start(client: Client) -> Sources {
        let configmaps = crate::watch_all::<ConfigMap>(client.clone(), None, "configmap");
        let secrets = crate::watch_all::<Secret>(client, None, "secret");
        let _ = configmaps.wait_until_ready().await;
        let _ = secrets.wait_until_ready().await;
        Sources::with_stores(configmaps, secrets)
    }

    /// Sources read from these stores (tests fill them through their writers).
    fn with_stores(configmaps: Store<ConfigMap>, secrets: Store<Secret>) -> Sources {
        Sources {
            configmaps,
            secrets,
            written: Mutex::new(HashMap::new()),
            claims: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// ConfigMap `ns/name` as the cache has it (`None`: not there, or not yet).
    pub fn configmap(&self, ns: &str, name: &str) -> Option<std::sync::Arc<ConfigMap>> {
        self.configmaps.get(&ObjectRef::new(name).within(ns))
    }

    /// Secret `ns/name` as the cache has it (`None`: not there, or not yet).
    pub fn secret(&self, ns: &str, name: &str) -> Option<std::sync::Arc<Secret>> {
        self.secrets.get(&ObjectRef::new(name).within(ns))
    }

    /// A ConfigMap's `data` and `binaryData` (`None` when it does not exist).
    fn configmap_data(&self, ns: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        let o = self.configmap(ns, name)?;
        let mut d: BTreeMap<String, Vec<u8>> = o
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect();
        d.extend(
            o.binary_data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone())),
        );
        Some(d)
    }

    /// A Secret's `data` (and `stringData`, as stored) (`None` when it does not exist).
    fn secret_data(&self, ns: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        let o = self.secret(ns, name)?;
        let mut d: BTreeMap<String, Vec<u8>> = o
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        for (k, v) in o.string_data.iter().flatten() {
            d.insert(k.clone(), v.clone().into_bytes());
        }
        Some(d)
    }

    /// The hash last recorded for volume directory `dir`.
    fn written(&self, dir: &Path) -> Option<u64> {
        self.lock().get(dir).copied()
    }

    /// Records that volume directory `dir` holds the payload of hash `hash`.
    fn record(&self, dir: PathBuf, hash: u64) {
        self.lock().insert(dir, hash);
    }

    /// Forgets what volume directory `dir` holds (written anew by someone else than
    /// [`resync`]: its next tick compares with the disk again).
    fn forget(&self, dir: &Path) {
        self.lock().remove(dir);
    }

    /// Forgets every volume of pod `uid` (the pod is gone).
    pub fn forget_pod(&self, data_root: &Path, uid: &str) {
        let dir = pod_dir(data_root, uid);
        self.lock().retain(|d, _| !d.starts_with(&dir));
        self.claims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|d| !d.starts_with(&dir));
    }

    /// Whether claim volume `key` was already set up for its pod.
    fn claims_contains(&self, key: &Path) -> bool {
        self.claims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }

    /// Records that claim volume `key` was set up for its pod.
    fn claim_set_up(&self, key: PathBuf) {
        self.claims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, u64>> {
        self.written.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A hash of a volume's payload (paths, bytes and modes).
fn payload_hash(p: &Payload) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    p.hash(&mut h);
    h.finish()
}

/// kubelet's `fieldpath.FormatMap`: `key="value"` lines in key order (Go's `%q`).
pub fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    m.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The node's capacity of `resource` (`cpu` in cores, `memory` in bytes): what an unset
/// limit reads as through the downward API (kubelet uses the node's allocatable).
fn node_capacity(resource: &str) -> f64 {
    match resource {
        "cpu" => std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
        _ => std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                let l = m.lines().find(|l| l.starts_with("MemTotal:"))?;
                l.split_whitespace().nth(1)?.parse::<f64>().ok()
            })
            .map_or(0.0, |kb| kb * 1024.0),
    }
}

/// A quantity as a number of base units (cores, bytes); `None` when unparsable.
fn quantity(q: &str) -> Option<f64> {
    let units: [(&str, f64); 13] = [
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
        ("m", 1e-3),
    ];
    for (suffix, mult) in units {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<f64>().ok().map(|n| n * mult);
        }
    }
    q.parse::<f64>().ok()
}

/// A `resourceFieldRef` (`limits.cpu`, `requests.memory`, …) of container `c`, divided by
/// `divisor` and rounded up (kubelet's `ExtractContainerResourceValue`).
pub fn resource_value(
    c: Option<&Container>,
    resource: &str,
    divisor: Option<&str>,
) -> Option<String> {
    let (kind, name) = resource.split_once('.')?;
    let res = c.and_then(|c| c.resources.as_ref());
    let map = match kind {
        "limits" => res.and_then(|r| r.limits.as_ref()),
        "requests" => res.and_then(|r| r.requests.as_ref()),
        _ => return None,
    };
    let set = map.and_then(|m| m.get(name)).and_then(|q| quantity(&q.0));
    let value = match (set, kind) {
        (Some(v), _) => v,
        (None, "limits") => node_capacity(name),
        (None, _) => 0.0,
    };
    let div = divisor
        .and_then(quantity)
        .filter(|d| *d > 0.0)
        .unwrap_or(1.0);
    Some(format!("{}", (value / div).ceil() as i64))
}

/// The files of a `downwardAPI` volume or projection.
fn downward_files(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    mode: i32,
    facts: PodFacts<'_>,
) -> Result<BTreeMap<String, (Vec<u8>, u32)>, VolumeError> {
    let mut out = BTreeMap::new();
    for it in items {
        let value = if let Some(f) = &it.field_ref {
            match f.field_path.as_str() {
                "metadata.labels" => format_map(pod.metadata.labels.as_ref()),
                "metadata.annotations" => format_map(pod.metadata.annotations.as_ref()),
                p => crate::env::field_value(pod, p, facts.pod_ip, facts.host_ip)
                    .ok_or_else(|| VolumeError::Config(format!("unsupported fieldPath: {p}")))?,
            }
        } else if let Some(r) = &it.resource_field_ref {
            let c = pod.spec.as_ref().and_then(|s| {
                let name = r.container_name.as_deref().unwrap_or_default();
                s.containers.iter().find(|c| c.name == name)
            });
            resource_value(c, &r.resource, r.divisor.as_ref().map(|d| d.0.as_str())).ok_or_else(
                || VolumeError::Config(format!("unsupported resource: {}", r.resource)),
            )?
        } else {
            continue;
        };
        out.insert(
            it.path.clone(),
            (value.into_bytes(), it.mode.unwrap_or(mode) as u32),
        );
    }
    Ok(out)
}

/// A token for the pod's ServiceAccount through the API server's TokenRequest
/// (`serviceaccounts/<sa>/token`), for `audience` (empty: the API server's) and
/// `expiration_seconds`.
async fn service_account_token(
    client: &Client,
    pod: &Pod,
    audience: Option<&str>,
    expiration_seconds: Option<i64>,
) -> Result<String, VolumeError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience
                .filter(|a| !a.is_empty())
                .map(|a| vec![a.to_string()])
                .unwrap_or_default(),
            expiration_seconds: Some(expiration_seconds.unwrap_or(3600)),
            bound_object_ref: None,
        },
        ..Default::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let out: TokenRequest = api
        .create_subresource("token", &sa, &PostParams::default(), &req)
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 404 || s.code == 403 => VolumeError::Mount(format!(
                "failed to fetch token: serviceaccounts \"{sa}\" {}",
                s.message
            )),
            e => VolumeError::Api(e),
        })?;
    Ok(out.status.map(|s| s.token).unwrap_or_default())
}

/// kubelet's token manager's `maxJitter`: at most this much earlier than its due time is a
/// token renewed, so that the pods started together do not all renew at once.
pub const TOKEN_MAX_JITTER: std::time::Duration = std::time::Duration::from_secs(10);

/// A jitter for one refresh check, as kubelet draws it: whole seconds, uniformly in
/// `[0, TOKEN_MAX_JITTER)` (`time.Duration(rand.Float64()*maxJitter.Seconds()) * time.Second`).
/// The randomness is std's: a fresh `RandomState` (randomly seeded SipHash keys, new ones
/// for each state) hashing nothing, no cryptographic quality needed.
pub fn token_jitter() -> std::time::Duration {
    use std::hash::BuildHasher;
    let r = std::collections::hash_map::RandomState::new().hash_one(());
    std::time::Duration::from_secs(r % TOKEN_MAX_JITTER.as_secs())
}

/// kubelet's token manager's refresh rule (`requiresRefresh`,
/// pkg/kubelet/token/token_manager.go): a token `age` old of life `expiration_seconds` is
/// renewed once it is older than its life less 20 % of it (integer seconds, as kubelet
/// computes it) less `jitter`, or older than 24 h less `jitter` whatever its life.
pub fn token_needs_refresh(
    age: std::time::Duration,
    expiration_seconds: i64,
    jitter: std::time::Duration,
) -> bool {
    let life = expiration_seconds.max(0) as u64;
    let due = std::time::Duration::from_secs(life - life * 20 / 100);
    let max = std::time::Duration::from_secs(24 * 3600);
    age > max.saturating_sub(jitter) || age > due.saturating_sub(jitter)
}

/// The token files of `pod`'s projected volumes that are due for renewal by
/// [`token_needs_refresh`] (their age is their file's modification time, set when written),
/// with the source asking for them; volumes not laid out yet are skipped. Blocking (stats).
fn due_tokens(
    data_root: &Path,
    pod: &Pod,
    now: std::time::SystemTime,
) -> Vec<(
    PathBuf,
    String,
    k8s_openapi::api::core::v1::ServiceAccountTokenProjection,
    u32,
)> {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let base = pod_dir(data_root, uid)
        .join("volumes")
        .join("kubernetes.io~projected");
    let mut out = Vec::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let Some(p) = &v.projected else { continue };
        let mode = p.default_mode.unwrap_or(0o644) as u32;
        for t in p
            .sources
            .iter()
            .flatten()
            .filter_map(|s| s.service_account_token.as_ref())
        {
            if t.path.split('/').any(|c| c == "..") || t.path.starts_with('/') {
                continue;
            }
            let file = base.join(&v.name).join(&t.path);
            let Ok(written) = std::fs::metadata(&file).and_then(|m| m.modified()) else {
                continue;
            };
            let age = now.duration_since(written).unwrap_or_default();
            if token_needs_refresh(age, t.expiration_seconds.unwrap_or(3600), token_jitter()) {
                out.push((base.join(&v.name), t.path.clone(), t.clone(), mode));
            }
        }
    }
    out
}

/// Renews the ServiceAccount tokens of `pod`'s projected volumes that are due (see
/// [`due_tokens`]) through the TokenRequest API, replacing each file atomically; returns how
/// many were renewed. File work runs on the blocking pool.
pub async fn refresh_tokens(
    client: &Client,
    data_root: &Path,
    pod: &Pod,
) -> Result<usize, VolumeError> {
    let due = {
        let (root, p) = (data_root.to_path_buf(), pod.clone());
        tokio::task::spawn_blocking(move || due_tokens(&root, &p, std::time::SystemTime::now()))
            .await
            .map_err(|e| VolumeError::Config(e.to_string()))?
    };
    let mut n = 0;
    for (volume_dir, rel, t, mode) in due {
        let token =
            service_account_token(client, pod, t.audience.as_deref(), t.expiration_seconds).await?;
        tokio::task::spawn_blocking(move || {
            // The volume's payload with the new token, swapped in whole (`atomic_write`).
            let (dir, rel) = (volume_dir, rel);
            // A volume of an older layout is left to `resync`, which lays it out anew.
            let Some(mut payload) = read_payload(&dir) else {
                return Ok(());
            };
            payload.insert(rel, (token.into_bytes(), mode & 0o7777));
            atomic_write(&dir, payload).map(|_| ())
        })
        .await
        .map_err(|e| VolumeError::Config(e.to_string()))?
        .map_err(|e| VolumeError::Mount(format!("refreshing a token: {e}")))?;
        n += 1;
    }
    Ok(n)
}

/// A projected ServiceAccount token a payload is to hold: its path, its mode and the source
/// asking for it.
type TokenSlot = (String, u32, ServiceAccountTokenProjection);

/// The directory and files of a configMap, secret, downwardAPI or projected volume `v` (its
/// ConfigMaps and Secrets read from `sources`), without the projected ServiceAccount tokens,
/// which are listed apart; `None` for other volumes. A missing ConfigMap or Secret that is
/// not `optional` is a configuration error (a mount error in a projection), as on kubelet.
fn file_content(
    sources: &Sources,
    base: &Path,
    pod: &Pod,
    v: &k8s_openapi::api::core::v1::Volume,
    facts: PodFacts<'_>,
) -> Result<Option<(PathBuf, Payload, Vec<TokenSlot>)>, VolumeError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let dir = |plugin: &str| base.join(plugin).join(&v.name);
    Ok(Some(if let Some(cm) = &v.config_map {
        let name = cm.name.clone();
        let data = match sources.configmap_data(ns, &name) {
            Some(d) => d,
            None if cm.optional == Some(true) => BTreeMap::new(),
            None => return Err(VolumeError::Config(format!("configmap {name:?} not found"))),
        };
        let mode = cm.default_mode.unwrap_or(0o644);
        (
            dir("kubernetes.io~configmap"),
            files(data, cm.items.as_ref(), mode, "configmap", &name)?,
            Vec::new(),
        )
    } else if let Some(sv) = &v.secret {
        let name = sv.secret_name.clone().unwrap_or_default();
        let data = match sources.secret_data(ns, &name) {
            Some(d) => d,
            None if sv.optional == Some(true) => BTreeMap::new(),
            None => return Err(VolumeError::Config(format!("secret {name:?} not found"))),
        };
        let mode = sv.default_mode.unwrap_or(0o644);
        (
            dir("kubernetes.io~secret"),
            files(data, sv.items.as_ref(), mode, "secret", &name)?,
            Vec::new(),
        )
    } else if let Some(d) = &v.downward_api {
        let mode = d.default_mode.unwrap_or(0o644);
        let items = d.items.clone().unwrap_or_default();
        (
            dir("kubernetes.io~downward-api"),
            downward_files(pod, &items, mode, facts)?,
            Vec::new(),
        )
    } else if let Some(p) = &v.projected {
        let mode = p.default_mode.unwrap_or(0o644);
        let mut all = BTreeMap::new();
        let mut tokens = Vec::new();
        for s in p.sources.iter().flatten() {
            if let Some(cm) = &s.config_map {
                match sources.configmap_data(ns, &cm.name) {
                    Some(d) => {
                        all.extend(files(d, cm.items.as_ref(), mode, "configmap", &cm.name)?)
                    }
                    None if cm.optional == Some(true) => {}
                    None => {
                        return Err(VolumeError::Mount(format!(
                            "configmap {:?} not found",
                            cm.name
                        )))
                    }
                }
            }
            if let Some(sv) = &s.secret {
                match sources.secret_data(ns, &sv.name) {
                    Some(d) => all.extend(files(d, sv.items.as_ref(), mode, "secret", &sv.name)?),
                    None if sv.optional == Some(true) => {}
                    None => {
                        return Err(VolumeError::Mount(format!(
                            "secret {:?} not found",
                            sv.name
                        )))
                    }
                }
            }
            if let Some(d) = &s.downward_api {
                let items = d.items.clone().unwrap_or_default();
                all.extend(downward_files(pod, &items, mode, facts)?);
            }
            if let Some(t) = &s.service_account_token {
                tokens.push((t.path.clone(), mode as u32, t.clone()));
            }
        }
        (dir("kubernetes.io~projected"), all, tokens)
    } else {
        return Ok(None);
    }))
}

/// Fills `files` with a new token from the API server's TokenRequest for each of `tokens`.
async fn request_tokens(
    client: &Client,
    pod: &Pod,
    files: &mut Payload,
    tokens: Vec<TokenSlot>,
) -> Result<(), VolumeError> {
    for (path, mode, t) in tokens {
        let token =
            service_account_token(client, pod, t.audience.as_deref(), t.expiration_seconds).await?;
        files.insert(path, (token.into_bytes(), mode));
    }
    Ok(())
}

/// The directory (or host path) of one pod volume and what fills it (tokens requested anew).
async fn volume_content(
    client: &Client,
    sources: &Sources,
    base: &Path,
    pod: &Pod,
    v: &k8s_openapi::api::core::v1::Volume,
    facts: PodFacts<'_>,
) -> Result<Option<(PathBuf, Content, bool)>, VolumeError> {
    if let Some((dir, mut files, tokens)) = file_content(sources, base, pod, v, facts)? {
        request_tokens(client, pod, &mut files, tokens).await?;
        return Ok(Some((dir, Content::Files(files), false)));
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    Ok(Some(if v.empty_dir.is_some() {
        (
            base.join("kubernetes.io~empty-dir").join(&v.name),
            Content::Empty,
            false,
        )
    } else if let Some(h) = &v.host_path {
        let ty = h.type_.clone().unwrap_or_default();
        (PathBuf::from(&h.path), Content::Host(ty), false)
    } else if let Some(c) = &v.persistent_volume_claim {
        let key = base.join("kubernetes.io~pvc").join(&v.name);
        let first = !sources.claims_contains(&key);
        let (path, ty) = claim_path(client, ns, &c.claim_name, first).await?;
        sources.claim_set_up(key);
        (path, Content::Host(ty), c.read_only == Some(true))
    } else {
        return Ok(None);
    }))
}

/// The host path of the PersistentVolume bound to claim `name` and its hostPath type.
/// A claim being deleted is refused when it is not yet set up for the pod (`first`), as
/// kubelet's volume manager refuses it (`getPVCExtractPV`: a pod using a PVC that is being
/// deleted must not start): `error processing PVC <ns>/<name>: PVC is being deleted`.
async fn claim_path(
    client: &Client,
    ns: &str,
    name: &str,
    first: bool,
) -> Result<(PathBuf, String), VolumeError> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let Some(pvc) = claims.get_opt(name).await.map_err(VolumeError::Api)? else {
        return Err(VolumeError::Mount(format!(
            "persistentvolumeclaim \"{name}\" not found"
        )));
    };
    if first && pvc.metadata.deletion_timestamp.is_some() {
        return Err(VolumeError::Mount(format!(
            "error processing PVC {ns}/{name}: PVC is being deleted"
        )));
    }
    let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let volume = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty());
    let Some(volume) = volume.filter(|_| bound) else {
        return Err(VolumeError::Mount(format!(
            "unbound immediate PersistentVolumeClaims: persistentvolumeclaim \"{name}\" is not bound"
        )));
    };
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let Some(pv) = pvs.get_opt(&volume).await.map_err(VolumeError::Api)? else {
        return Err(VolumeError::Mount(format!(
            "persistentvolume \"{volume}\" not found"
        )));
    };
    let spec = pv.spec.unwrap_or_default();
    if let Some(h) = spec.host_path {
        return Ok((h.path.into(), h.type_.unwrap_or_default()));
    }
    if let Some(l) = spec.local {
        return Ok((l.path.into(), "Directory".into()));
    }
    Err(VolumeError::Mount(format!(
        "persistentvolume \"{volume}\": only hostPath and local volumes can be mounted by this node"
    )))
}

/// Makes the volumes `c` mounts (ConfigMaps and Secrets from `sources`, tokens and claims
/// from the API) and returns its bind mounts (`SRC:DEST[:ro]`). Blocking file work runs on
/// the blocking pool.
pub async fn container_binds(
    client: &Client,
    sources: &Sources,
    data_root: &Path,
    pod: &Pod,
    c: &Container,
    facts: PodFacts<'_>,
) -> Result<Vec<String>, VolumeError> {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    let base = pod_dir(data_root, uid).join("volumes");
    let mut plan: Vec<(PathBuf, Content, Option<String>, String)> = Vec::new();
    for vm in c.volume_mounts.iter().flatten() {
        let Some(v) = volumes.iter().find(|v| v.name == vm.name) else {
            continue;
        };
        let Some((dir, content, claim_ro)) =
            volume_content(client, sources, &base, pod, v, facts).await?
        else {
            continue;
        };
        if let Content::Files(_) = content {
            // Written anew below: the next re-sync compares with the disk again.
            sources.forget(&dir);
        }
        let sub = vm.sub_path.clone().filter(|s| !s.is_empty());
        if let Some(sub) = &sub {
            if sub.split('/').any(|p| p == "..") || sub.starts_with('/') {
                return Err(VolumeError::Config(format!("invalid subPath {sub:?}")));
            }
        }
        let ro = if vm.read_only == Some(true) || claim_ro {
            ":ro"
        } else {
            ""
        };
        plan.push((dir, content, sub, format!("{}{ro}", vm.mount_path)));
    }
    tokio::task::spawn_blocking(move || {
        let mut binds = Vec::new();
        for (dir, content, sub, dest) in plan {
            write_volume(&dir, content).map_err(|e| match e {
                HostPathError::Type(m) => VolumeError::Mount(m),
                HostPathError::Io(e) => {
                    VolumeError::Mount(format!("volume {}: {e}", dir.display()))
                }
            })?;
            // kubelet makes a missing subPath a directory of the volume; a subPath of a
            // configMap/secret volume is the file of the current payload (`..data/<key>`,
            // resolved now, so it keeps that file when the volume is updated, as on kube).
            let src = match sub {
                Some(sub) => {
                    let p = dir.join(sub);
                    if std::fs::symlink_metadata(&p).is_err() {
                        std::fs::create_dir_all(&p).map_err(|e| {
                            VolumeError::Mount(format!("subPath {}: {e}", p.display()))
                        })?;
                    }
                    resolve_in(&dir, &p)
                }
                None => dir,
            };
            binds.push(format!("{}:{dest}", src.display()));
        }
        Ok(binds)
    })
    .await
    .map_err(|e| VolumeError::Config(e.to_string()))?
}

/// Why a volume could not be laid out: kubelet's hostPath type check, or an I/O error.
#[derive(Debug, thiserror::Error)]
pub enum HostPathError {
    #[error("{0}")]
    Type(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// kubelet's `hostPathTypeChecker`: checks `path` against the hostPath `type` (creating it for
/// `DirectoryOrCreate`/`FileOrCreate`), with kubelet's messages.
pub fn check_host_path(path: &Path, ty: &str) -> Result<(), HostPathError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let p = path.display();
    let meta = std::fs::metadata(path);
    let exists = |what: &str| -> Result<std::fs::Metadata, HostPathError> {
        match &meta {
            Ok(m) => Ok(m.clone()),
            Err(_) => Err(HostPathError::Type(format!(
                "hostPath type check failed: {p} is not a {what}"
            ))),
        }
    };
    match ty {
        "" => {}
        "DirectoryOrCreate" => match &meta {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(HostPathError::Type(format!(
                    "hostPath type check failed: {p} is not a directory"
                )))
            }
            Err(_) => {
                std::fs::create_dir_all(path)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
            }
        },
        "Directory" => {
            if !exists("directory")?.is_dir() {
                return Err(HostPathError::Type(format!(
                    "hostPath type check failed: {p} is not a directory"
                )));
            }
        }
        "FileOrCreate" => match &meta {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(HostPathError::Type(format!(
                    "hostPath type check failed: {p} is not a file"
                )))
            }
            Err(_) => {
                // As kubelet: the parent directory is not created.
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
            }
        },
        "File" => {
            if !exists("file")?.is_file() {
                return Err(HostPathError::Type(format!(
                    "hostPath type check failed: {p} is not a file"
                )));
            }
        }
        "Socket" => {
            if !exists("socket")?.file_type().is_socket() {
                return Err(HostPathError::Type(format!(
                    "hostPath type check failed: {p} is not a socket file"
                )));
            }
        }
        "CharDevice" => {
            if !exists("character device")?.file_type().is_char_device() {
                return Err(HostPathError::Type(format!(
                    "hostPath type check failed: {p} is not a character device"
                )));
            }
        }
        "BlockDevice" => {
            if !exists("block device")?.file_type().is_block_device() {
                return Err(HostPathError::Type(format!(
                    "hostPath type check failed: {p} is not a block device"
                )));
            }
        }
        other => {
            return Err(HostPathError::Type(format!(
                "hostPath type check failed: unknown type {other:?}"
            )))
        }
    }
    Ok(())
}

/// Creates a volume's directory; for files, writes each (atomically) with its mode; for a
/// host path, checks (or creates) it by its type.
fn write_volume(dir: &Path, content: Content) -> Result<(), HostPathError> {
    use std::os::unix::fs::PermissionsExt;
    if let Content::Host(ty) = &content {
        return check_host_path(dir, ty);
    }
    std::fs::create_dir_all(dir)?;
    if let Content::Empty = content {
        // kubelet's emptyDir is world-writable, so any container user can use it.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
    }
    if let Content::Files(files) = content {
        atomic_write(dir, files)?;
    }
    Ok(())
}

/// The payload of an [`atomic_write`] volume: relative path → (bytes, mode).
type Payload = BTreeMap<String, (Vec<u8>, u32)>;

/// The link to the current payload's directory (kubelet's `..data`).
const DATA_LINK: &str = "..data";

/// `path` below `dir` with the volume's own links followed (a subPath source), never leaving
/// `dir`; `path` itself when it cannot be resolved there.
fn resolve_in(dir: &Path, path: &Path) -> PathBuf {
    match (std::fs::canonicalize(dir), std::fs::canonicalize(path)) {
        (Ok(d), Ok(p)) if p.starts_with(&d) => p,
        _ => path.to_path_buf(),
    }
}

/// The payload `dir` shows now (the files below its `..data`), if it has that layout.
fn read_payload(dir: &Path) -> Option<Payload> {
    use std::os::unix::fs::PermissionsExt;
    let target = std::fs::read_link(dir.join(DATA_LINK)).ok()?;
    let root = dir.join(target);
    let mut out = Payload::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            let ft = e.file_type().ok()?;
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                let rel = p.strip_prefix(&root).ok()?.to_str()?.to_string();
                let mode = e.metadata().ok()?.permissions().mode() & 0o7777;
                out.insert(rel, (std::fs::read(&p).ok()?, mode));
            }
        }
    }
    Some(out)
}

/// kubelet's `AtomicWriter`: the payload goes to a new timestamped directory
/// (`..2026_12_06_13_40_00.123456789`), the `..data` link is swapped to it with one rename,
/// and each top-level name of the payload is a link `name -> ..data/name`; the old directory
/// and names no longer in the payload go. Containers that mount the volume's directory see
/// the whole new payload at once, never a mix. Nothing is written when the payload is what
/// the volume shows already; returns whether it changed. Paths with `..` or a leading `/`
/// are skipped.
pub fn atomic_write(dir: &Path, mut files: Payload) -> std::io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    files.retain(|p, _| !p.is_empty() && !p.starts_with('/') && !p.split('/').any(|c| c == ".."));
    for (_, mode) in files.values_mut() {
        *mode &= 0o7777;
    }
    std::fs::create_dir_all(dir)?;
    let old_target = std::fs::read_link(dir.join(DATA_LINK)).ok();
    let top = |files: &Payload| -> std::collections::BTreeSet<String> {
        files
            .keys()
            .filter_map(|p| p.split('/').next().map(str::to_string))
            .collect()
    };
    let unchanged = read_payload(dir).as_ref() == Some(&files);
    if !unchanged {
        let now = time::OffsetDateTime::now_utc();
        let name = format!(
            "..{:04}_{:02}_{:02}_{:02}_{:02}_{:02}.{:09}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.nanosecond()
        );
        let ts = dir.join(&name);
        std::fs::create_dir(&ts)?;
        for (path, (data, mode)) in &files {
            let p = ts.join(path);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&p, data)?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))?;
        }
        let tmp = dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&name, &tmp)?;
        std::fs::rename(&tmp, dir.join(DATA_LINK))?;
    }
    // The user-visible names: links into `..data` (a file of an older layout is replaced).
    let want = top(&files);
    for n in &want {
        let p = dir.join(n);
        let target = Path::new(DATA_LINK).join(n);
        if std::fs::read_link(&p).ok().as_deref() == Some(target.as_path()) {
            continue;
        }
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p)?,
            Ok(_) => std::fs::remove_file(&p)?,
            Err(_) => {}
        }
        std::os::unix::fs::symlink(&target, &p)?;
    }
    for e in std::fs::read_dir(dir)?.flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        let is_link = e.file_type().is_ok_and(|t| t.is_symlink());
        if n.starts_with("..") {
            // Old payload directories (not the current one).
            let current = std::fs::read_link(dir.join(DATA_LINK)).ok();
            if n != DATA_LINK && current.as_deref() != Some(Path::new(&n)) && !is_link {
                let _ = std::fs::remove_dir_all(e.path());
            }
        } else if !want.contains(&n) && is_link {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(!unchanged || old_target.is_none())
}

/// Re-reads the ConfigMaps, Secrets (from `sources`, the node's watch cache) and downward API
/// fields behind `pod`'s volumes that are laid out already and swaps in what changed
/// ([`atomic_write`]), as kubelet's volume manager does on each pod sync: containers see
/// updated keys (not through a `subPath`). A volume whose payload hashes as the one last
/// found or written there ([`Sources`]) is left alone without touching the disk; otherwise
/// its tokens are kept from the disk (renewals are [`refresh_tokens`]' job; one that cannot
/// be read is requested anew through `client`). A source that cannot be read now leaves its
/// volume as it is. Returns how many volumes changed.
pub async fn resync(
    client: &Client,
    sources: &Sources,
    data_root: &Path,
    pod: &Pod,
    facts: PodFacts<'_>,
) -> usize {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let base = pod_dir(data_root, uid).join("volumes");
    let mut changed = 0;
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let (dir, files, tokens) = match file_content(sources, &base, pod, v, facts) {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e) => {
                tracing::debug!("volume {}: {e}", v.name);
                continue;
            }
        };
        let hash = payload_hash(&files);
        if sources.written(&dir) == Some(hash) {
            continue;
        }
        match resync_volume(client, pod, dir.clone(), files, tokens).await {
            Ok(Some(c)) => {
                sources.record(dir, hash);
                changed += usize::from(c);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("volume {}: {e}", v.name),
        }
    }
    changed
}

/// Swaps `files` (with the tokens of `tokens` kept from the disk, or requested when
/// unreadable) into volume directory `dir`: whether it changed, `None` when the volume is not
/// laid out yet.
async fn resync_volume(
    client: &Client,
    pod: &Pod,
    dir: PathBuf,
    mut files: Payload,
    tokens: Vec<TokenSlot>,
) -> Result<Option<bool>, VolumeError> {
    let join = |e: tokio::task::JoinError| VolumeError::Mount(e.to_string());
    let io = |e: std::io::Error| VolumeError::Mount(e.to_string());
    let read = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            if std::fs::symlink_metadata(&dir).is_err() {
                return None;
            }
            let mut missing = Vec::new();
            for (path, mode, t) in tokens {
                match std::fs::read(dir.join(&path)) {
                    Ok(token) => {
                        files.insert(path, (token, mode));
                    }
                    Err(_) => missing.push((path, mode, t)),
                }
            }
            Some((files, missing))
        })
        .await
        .map_err(join)?
    };
    let Some((mut files, missing)) = read else {
        return Ok(None);
    };
    request_tokens(client, pod, &mut files, missing).await?;
    let changed = tokio::task::spawn_blocking(move || atomic_write(&dir, files))
        .await
        .map_err(join)?
        .map_err(io)?;
    Ok(Some(changed))
}

/// Removes pod `uid`'s volumes (its containers are gone). Host paths and claims' volumes
/// are not below this directory, so they stay.
pub fn remove(data_root: &Path, uid: &str) {
    let dir = pod_dir(data_root, uid);
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!("removing {}: {e}", dir.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_as_kubelet_formats_them() {
        let mut m = BTreeMap::new();
        m.insert("b".to_string(), "two \"2\"".to_string());
        m.insert("a".to_string(), "one".to_string());
        assert_eq!(format_map(Some(&m)), "a=\"one\"\nb=\"two \\\"2\\\"\"");
        assert_eq!(format_map(None), "");
    }

    #[test]
    fn resource_fields_with_divisors() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "resources": {"limits": {"memory": "64Mi", "cpu": "250m"}, "requests": {"cpu": "100m"}}
        }))
        .unwrap();
        assert_eq!(
            resource_value(Some(&c), "limits.memory", Some("1Mi")).unwrap(),
            "64"
        );
        assert_eq!(resource_value(Some(&c), "limits.cpu", None).unwrap(), "1");
        assert_eq!(
            resource_value(Some(&c), "limits.cpu", Some("1m")).unwrap(),
            "250"
        );
        assert_eq!(
            resource_value(Some(&c), "requests.memory", None).unwrap(),
            "0"
        );
        assert!(resource_value(Some(&c), "bogus", None).is_none());
    }

    #[test]
    fn tokens_are_renewed_at_80_percent_of_their_life_or_a_day() {
        use std::time::Duration;
        let s = Duration::from_secs;
        let none = Duration::ZERO;
        // kubelet: refresh once older than 80 % of the life (3600 - 720 s), less the jitter.
        assert!(!token_needs_refresh(s(2880), 3600, none));
        assert!(token_needs_refresh(s(2881), 3600, none));
        // A jitter moves the refresh earlier by as much.
        assert!(!token_needs_refresh(s(2870), 3600, s(9)));
        assert!(token_needs_refresh(s(2872), 3600, s(9)));
        // 20 % in whole seconds, as kubelet's integer arithmetic: 20 % of 601 s is 120 s.
        assert!(token_needs_refresh(s(482), 601, none));
        // A day whatever the life, less the jitter.
        assert!(!token_needs_refresh(s(80_000), 7 * 24 * 3600, none));
        assert!(!token_needs_refresh(s(86_400), 7 * 24 * 3600, none));
        assert!(token_needs_refresh(s(86_401), 7 * 24 * 3600, none));
        assert!(token_needs_refresh(s(86_395), 7 * 24 * 3600, s(6)));
        // kubelet's jitter: whole seconds below 10 s, and not always the same.
        let drawn: std::collections::BTreeSet<Duration> =
            (0..200).map(|_| token_jitter()).collect();
        assert!(drawn
            .iter()
            .all(|j| *j < TOKEN_MAX_JITTER && j.subsec_nanos() == 0));
        assert!(drawn.len() > 1, "{drawn:?}");

        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u1"},
            "spec": {"containers": [{"name": "c"}], "volumes": [{"name": "t", "projected": {
                "sources": [{"serviceAccountToken": {"path": "tok", "expirationSeconds": 600}},
                            {"serviceAccountToken": {"path": "other", "expirationSeconds": 600}}]}}]}
        }))
        .unwrap();
        let dir = pod_dir(&root, "u1").join("volumes/kubernetes.io~projected/t");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tok"), "old").unwrap();
        let now = std::time::SystemTime::now();
        // Fresh: nothing due; `other` was never written (not laid out): skipped.
        assert!(due_tokens(&root, &pod, now).is_empty());
        // Past 8 minutes later (80 % of 10): due, whatever the jitter.
        let due = due_tokens(&root, &pod, now + Duration::from_secs(481));
        assert_eq!(due.len(), 1);
        assert_eq!((&due[0].0, due[0].1.as_str()), (&dir, "tok"));
    }

    #[test]
    fn host_path_types() {
        let d = std::env::temp_dir().join(format!("barge-hostpath-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let msg = |r: Result<(), HostPathError>| r.unwrap_err().to_string();
        assert_eq!(
            msg(check_host_path(&d, "Directory")),
            format!(
                "hostPath type check failed: {} is not a directory",
                d.display()
            )
        );
        check_host_path(&d, "DirectoryOrCreate").unwrap();
        assert!(d.is_dir());
        check_host_path(&d, "Directory").unwrap();
        let f = d.join("f");
        assert!(msg(check_host_path(&f, "File")).ends_with("is not a file"));
        check_host_path(&f, "FileOrCreate").unwrap();
        check_host_path(&f, "File").unwrap();
        assert!(msg(check_host_path(&f, "Directory")).ends_with("is not a directory"));
        assert!(check_host_path(&d.join("no/f"), "FileOrCreate").is_err());
        check_host_path(&d.join("anything"), "").unwrap();
        assert!(msg(check_host_path(&f, "Socket")).ends_with("is not a socket file"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[tokio::test]
    async fn resync_rewrites_a_volume_only_when_its_source_changed() {
        use kube::runtime::reflector;
        use kube::runtime::watcher::Event;
        let cm = |v: &str| -> ConfigMap {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "c", "namespace": "ns"}, "data": {"a": v}
            }))
            .unwrap()
        };
        let (configmaps, mut cw) = reflector::store::<ConfigMap>();
        let (secrets, _sw) = reflector::store::<Secret>();
        cw.apply_watcher_event(&Event::Apply(cm("one")));
        let sources = Sources::with_stores(configmaps, secrets);
        // Never asked: no token or claim here (nothing listens on the discard port).
        let client =
            Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": [{"name": "c"}],
                     "volumes": [{"name": "v", "configMap": {"name": "c"}}]}
        }))
        .unwrap();
        let facts = PodFacts {
            pod_ip: "10.42.0.5",
            host_ip: "127.0.0.1",
        };
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let dir = pod_dir(root, "u1").join("volumes/kubernetes.io~configmap/v");
        // Not laid out yet: left alone.
        assert_eq!(resync(&client, &sources, root, &pod, facts).await, 0);
        assert!(!dir.exists());
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(resync(&client, &sources, root, &pod, facts).await, 1);
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "one");
        let data = std::fs::read_link(dir.join(DATA_LINK)).unwrap();
        // The payload changed behind the agent's back: an unchanged source neither reads
        // the disk nor rewrites the volume.
        std::fs::write(dir.join(&data).join("a"), "edited").unwrap();
        assert_eq!(resync(&client, &sources, root, &pod, facts).await, 0);
        assert_eq!(std::fs::read_link(dir.join(DATA_LINK)).unwrap(), data);
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "edited");
        // The source changed: swapped in.
        cw.apply_watcher_event(&Event::Apply(cm("two")));
        assert_eq!(resync(&client, &sources, root, &pod, facts).await, 1);
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "two");
        assert_ne!(std::fs::read_link(dir.join(DATA_LINK)).unwrap(), data);
        // A gone pod's hashes are forgotten: the next tick compares with the disk again.
        sources.forget_pod(root, "u1");
        assert!(sources.written(&dir).is_none());
    }

    #[test]
    fn atomic_writes_swap_the_payload_whole() {
        let tmp = std::env::temp_dir().join(format!("barge-atomic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let file = |b: &str, m: u32| (b.as_bytes().to_vec(), m);
        let first: Payload = [
            ("a".to_string(), file("one", 0o644)),
            ("dir/b".to_string(), file("two", 0o600)),
            ("../evil".to_string(), file("x", 0o644)),
        ]
        .into();
        assert!(atomic_write(&tmp, first.clone()).unwrap());
        assert_eq!(std::fs::read_to_string(tmp.join("a")).unwrap(), "one");
        assert_eq!(std::fs::read_to_string(tmp.join("dir/b")).unwrap(), "two");
        assert_eq!(
            std::fs::read_link(tmp.join("a")).unwrap(),
            Path::new("..data/a")
        );
        assert!(!tmp.parent().unwrap().join("evil").exists());
        let old = std::fs::read_link(tmp.join(DATA_LINK)).unwrap();
        // The same payload again: nothing written.
        let mut same = first.clone();
        same.remove("../evil");
        assert!(!atomic_write(&tmp, same).unwrap());
        assert_eq!(std::fs::read_link(tmp.join(DATA_LINK)).unwrap(), old);
        // A new payload: swapped in, the old directory and the dropped names gone.
        let second: Payload = [("a".to_string(), file("three", 0o644))].into();
        assert!(atomic_write(&tmp, second.clone()).unwrap());
        assert_eq!(std::fs::read_to_string(tmp.join("a")).unwrap(), "three");
        assert!(std::fs::symlink_metadata(tmp.join("dir")).is_err());
        assert!(!tmp.join(&old).exists());
        assert_eq!(read_payload(&tmp).unwrap(), second);
        // A subPath source is the current payload's file itself.
        let src = resolve_in(&tmp, &tmp.join("a"));
        assert!(src.starts_with(std::fs::canonicalize(&tmp).unwrap()));
        assert!(!std::fs::symlink_metadata(&src).unwrap().is_symlink());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
