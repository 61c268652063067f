//! The volume store: Docker's `local` volume driver.
//!
//! A volume is a directory `<data-root>/volumes/<name>/_data` (its `Mountpoint`) with its
//! metadata in `<data-root>/volumes/<name>/volume.json` (written atomically: temp file, fsync,
//! rename; the metadata is written last, so a half-created volume is never listed). Volumes
//! created with driver options (`type`, `device`, `o`, as `mount -t TYPE -o O DEVICE`) have
//! that filesystem mounted on `_data` while at least one running container uses them, and
//! unmounted when the last one stops.
//!
//! The store also keeps, in memory, which containers reference which volume (rebuilt from the
//! container records at start-up by [`crate::Containers::open`]): `rm` of a referenced volume is
//! refused (409), `dangling` means "referenced by no container", and `prune` skips referenced
//! ones. Docker's wire shapes live in the daemon; see
//! <https://docs.docker.com/reference/api/engine/version/v1.47/#tag/Volume>.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

/// Label Docker (≥ 23) puts on anonymous volumes; `prune` without `all` only removes those.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// Class of a [`VolumeError`] (the daemon maps it to an HTTP status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeErrorKind {
    /// 404
    NotFound,
    /// 400
    InvalidInput,
    /// 409
    Conflict,
    /// 500
    Internal,
}

/// Errors of the volume store. Messages follow dockerd's.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("get {0}: no such volume")]
    NotFound(String),
    #[error("create {name}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("create {name}: {reason}")]
    InvalidOption { name: String, reason: String },
    #[error(
        "create {name}: a volume with the name {name} already exists with driver \"{driver}\""
    )]
    DriverConflict { name: String, driver: String },
    /// dockerd's plugin lookup failure (404): barge has only the `local` driver.
    #[error(
        "create {name}: error looking up volume plugin {driver}: plugin \"{driver}\" not found"
    )]
    UnknownDriver { name: String, driver: String },
    /// Referenced by containers (their IDs).
    #[error("remove {name}: volume is in use - [{}]", .refs.join(", "))]
    InUse { name: String, refs: Vec<String> },
    #[error("invalid filter '{0}'")]
    InvalidFilter(String),
    #[error("error while mounting volume '{path}': {reason}")]
    Mount { path: PathBuf, reason: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl VolumeError {
    /// The class of this error.
    pub fn kind(&self) -> VolumeErrorKind {
        match self {
            VolumeError::NotFound(_) | VolumeError::UnknownDriver { .. } => {
                VolumeErrorKind::NotFound
            }
            VolumeError::InvalidName { .. }
            | VolumeError::InvalidOption { .. }
            | VolumeError::InvalidFilter(_) => VolumeErrorKind::InvalidInput,
            VolumeError::DriverConflict { .. } | VolumeError::InUse { .. } => {
                VolumeErrorKind::Conflict
            }
            VolumeError::Mount { .. } | VolumeError::Io { .. } => VolumeErrorKind::Internal,
        }
    }

    fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        VolumeError::Io {
            what: what.into(),
            source,
        }
    }
}

/// A volume (Docker's `Volume` object, without `Status`/`UsageData`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Volume {
    pub name: String,
    /// Always `local`.
    pub driver: String,
    /// `<data-root>/volumes/<name>/_data`.
    pub mountpoint: PathBuf,
    /// RFC 3339, seconds precision (as Docker prints it).
    pub created_at: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Driver options: `type`, `device`, `o` (and `size`, accepted but not enforced).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Always `local`.
    pub scope: String,
}

impl Volume {
    /// Created for a container's anonymous volume (`-v /path`, image `VOLUME`).
    pub fn is_anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }

    /// Whether the driver options ask for a filesystem mounted on `_data` while in use.
    pub fn needs_mount(&self) -> bool {
        self.options.contains_key("type") || self.options.contains_key("device")
    }
}

/// What `create` is asked for (Docker's `VolumeCreateOptions`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VolumeCreate {
    /// Empty: a random 64-hex name.
    pub name: String,
    /// Empty or `local`.
    pub driver: String,
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// One volume with its disk usage and reference count (for `/system/df`).
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeUsage {
    pub volume: Volume,
    /// Bytes used under the mountpoint (apparent sizes of regular files; -1 if unknown).
    pub size: i64,
    /// Number of containers referencing the volume.
    pub ref_count: i64,
}

/// `ls` filters (Docker's `dangling`, `name`, `label`, `driver`).
pub type Filters = BTreeMap<String, Vec<String>>;

#[derive(Default)]
struct Inner {
    volumes: HashMap<String, Volume>,
    /// Volume name → IDs of containers whose records reference it.
    refs: HashMap<String, BTreeSet<String>>,
    /// Volume name → IDs of running containers that have it mounted (for `needs_mount` volumes).
    active: HashMap<String, BTreeSet<String>>,
}

/// All volumes of one data root. Blocking; share behind an `Arc`.
pub struct Volumes {
    root: PathBuf,
    inner: Mutex<Inner>,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn random_name() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("getrandom");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Docker's local volume name rule (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`); errors carry dockerd's text.
pub fn validate_name(name: &str) -> Result<(), VolumeError> {
    let bad = |reason: String| VolumeError::InvalidName {
        name: name.to_string(),
        reason,
    };
    if name.len() == 1 {
        return Err(bad(
            "volume name is too short, names should be at least two alphanumeric characters".into(),
        ));
    }
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if !ok {
        return Err(bad(format!("{name:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path")));
    }
    Ok(())
}

/// Docker's local driver option rules: only `type`, `device`, `o`, `size`; `type` and `device`
/// go together, `o` needs both.
pub fn validate_options(name: &str, opts: &BTreeMap<String, String>) -> Result<(), VolumeError> {
    let bad = |reason: String| VolumeError::InvalidOption {
        name: name.to_string(),
        reason,
    };
    for k in opts.keys() {
        if !matches!(k.as_str(), "type" | "device" | "o" | "size") {
            return Err(bad(format!("invalid option: {k:?}")));
        }
    }
    let required: [(&str, &[&str]); 3] = [
        ("device", &["type"]),
        ("type", &["device"]),
        ("o", &["device", "type"]),
    ];
    for (opt, reqs) in required {
        if opts.contains_key(opt) {
            for r in reqs {
                if !opts.contains_key(*r) {
                    return Err(bad(format!("missing required option: {r:?}")));
                }
            }
        }
    }
    Ok(())
}

/// Replaces a record durably ([`barge_stdx::fs::write_atomic`]).
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), VolumeError> {
    barge_stdx::fs::write_atomic(path, data)
        .map_err(|e| VolumeError::io(format!("write {}", path.display()), e))
}

use crate::mountinfo::is_mounted;

/// Splits `mount -o` style options into flags and filesystem data (`ro,nosuid,size=1m` →
/// (`MS_RDONLY|MS_NOSUID`, `size=1m`)).
pub(crate) fn mount_flags(o: &str) -> (nix::mount::MsFlags, String) {
    use nix::mount::MsFlags;
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for opt in o.split(',').filter(|s| !s.is_empty()) {
        match opt {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" | "defaults" => {}
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "nodiratime" => flags |= MsFlags::MS_NODIRATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

/// Bytes of regular files under `dir` (no symlinks followed; hard links counted once).
pub(crate) fn dir_size(dir: &Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0i64;
    let mut seen = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() && (m.nlink() < 2 || seen.insert((m.dev(), m.ino()))) {
                total += m.len() as i64;
            }
        }
    }
    total
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "true" | "True" | "TRUE" => Some(true),
        "0" | "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn label_match(labels: &BTreeMap<String, String>, f: &str) -> bool {
    match f.split_once('=') {
        Some((k, v)) => labels.get(k).map(String::as_str) == Some(v),
        None => labels.contains_key(f),
    }
}

impl Volumes {
    /// Opens (creating if needed) `<data-root>/volumes`, loading every volume's metadata.
    /// Directories without readable metadata (a crash mid-create) are removed.
    pub fn open(data_root: &Path) -> Result<Volumes, VolumeError> {
        let root = data_root.join("volumes");
        std::fs::create_dir_all(&root)
            .map_err(|e| VolumeError::io(format!("create {}", root.display()), e))?;
        let mut inner = Inner::default();
        let entries = std::fs::read_dir(&root)
            .map_err(|e| VolumeError::io(format!("read {}", root.display()), e))?;
        for entry in entries.flatten() {
            let dir = entry.path();
            if !dir.is_dir() {
                continue;
            }
            let meta = dir.join("volume.json");
            match std::fs::read(&meta)
                .ok()
                .and_then(|d| serde_json::from_slice::<Volume>(&d).ok())
            {
                Some(mut v) => {
                    v.mountpoint = dir.join("_data");
                    inner.volumes.insert(v.name.clone(), v);
                }
                None => {
                    if !is_mounted(&dir.join("_data")) {
                        tracing::warn!("removing incomplete volume {}", dir.display());
                        let _ = std::fs::remove_dir_all(&dir);
                    }
                }
            }
        }
        Ok(Volumes {
            root,
            inner: Mutex::new(inner),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `<data-root>/volumes`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn create_locked(&self, inner: &mut Inner, req: VolumeCreate) -> Result<Volume, VolumeError> {
        let name = if req.name.is_empty() {
            random_name()
        } else {
            req.name.clone()
        };
        let driver = if req.driver.is_empty() {
            "local".to_string()
        } else {
            req.driver.clone()
        };
        if let Some(v) = inner.volumes.get(&name) {
            if v.driver != driver {
                return Err(VolumeError::DriverConflict {
                    name,
                    driver: v.driver.clone(),
                });
            }
            return Ok(v.clone());
        }
        validate_name(&name)?;
        if driver != "local" {
            return Err(VolumeError::UnknownDriver { name, driver });
        }
        validate_options(&name, &req.driver_opts)?;
        let dir = self.root.join(&name);
        let data = dir.join("_data");
        std::fs::create_dir_all(&data)
            .map_err(|e| VolumeError::io(format!("create {}", data.display()), e))?;
        let v = Volume {
            name: name.clone(),
            driver,
            mountpoint: data,
            created_at: now_rfc3339(),
            labels: req.labels,
            options: req.driver_opts,
            scope: "local".into(),
        };
        write_atomic(
            &dir.join("volume.json"),
            &serde_json::to_vec_pretty(&v).expect("volume serializes"),
        )?;
        inner.volumes.insert(name, v.clone());
        Ok(v)
    }

    /// Creates a volume, or returns the existing one of that name (as Docker: idempotent;
    /// 409 if it exists with another driver). 400 for a bad name, driver or option.
    pub fn create(&self, req: VolumeCreate) -> Result<Volume, VolumeError> {
        let mut inner = self.lock();
        self.create_locked(&mut inner, req)
    }

    /// Gets (creating a named or anonymous volume if missing) a volume and records that
    /// container `container_id` references it, atomically with respect to `remove`.
    pub fn create_and_reference(
        &self,
        req: VolumeCreate,
        container_id: &str,
    ) -> Result<Volume, VolumeError> {
        let mut inner = self.lock();
        let v = self.create_locked(&mut inner, req)?;
        inner
            .refs
            .entry(v.name.clone())
            .or_default()
            .insert(container_id.to_string());
        Ok(v)
    }

    /// Records that `container_id` references `name` (start-up reconciliation).
    pub fn add_reference(&self, name: &str, container_id: &str) {
        self.lock()
            .refs
            .entry(name.to_string())
            .or_default()
            .insert(container_id.to_string());
    }

    /// Forgets `container_id`'s reference to `name`.
    pub fn remove_reference(&self, name: &str, container_id: &str) {
        let mut inner = self.lock();
        if let Some(set) = inner.refs.get_mut(name) {
            set.remove(container_id);
            if set.is_empty() {
                inner.refs.remove(name);
            }
        }
    }

    /// IDs of containers referencing `name`.
    pub fn references(&self, name: &str) -> Vec<String> {
        self.lock()
            .refs
            .get(name)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A volume by name. 404 if unknown.
    pub fn get(&self, name: &str) -> Result<Volume, VolumeError> {
        self.lock()
            .volumes
            .get(name)
            .cloned()
            .ok_or_else(|| VolumeError::NotFound(name.to_string()))
    }

    /// Volumes matching Docker's `ls` filters (`dangling=true|false`, `name=SUBSTRING`,
    /// `label=KEY[=VALUE]`, `driver=NAME`), sorted by name. 400 for an unknown filter.
    pub fn list(&self, filters: &Filters) -> Result<Vec<Volume>, VolumeError> {
        for (k, vals) in filters {
            match k.as_str() {
                "name" | "label" | "driver" => {}
                "dangling" => {
                    for v in vals {
                        if parse_bool(v).is_none() {
                            return Err(VolumeError::InvalidFilter(format!("dangling={v}")));
                        }
                    }
                }
                other => return Err(VolumeError::InvalidFilter(other.to_string())),
            }
        }
        let inner = self.lock();
        let mut out: Vec<Volume> = inner
            .volumes
            .values()
            .filter(|v| {
                let in_use = inner.refs.get(&v.name).is_some_and(|s| !s.is_empty());
                filters.iter().all(|(k, vals)| {
                    vals.is_empty()
                        || match k.as_str() {
                            "name" => vals.iter().any(|f| v.name.contains(f.as_str())),
                            "driver" => vals.contains(&v.driver),
                            "label" => vals.iter().all(|f| label_match(&v.labels, f)),
                            "dangling" => vals.iter().any(|f| parse_bool(f) == Some(!in_use)),
                            _ => true,
                        }
                })
            })
            .cloned()
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Removes a volume: 409 if any container references it (even with `force`, as Docker);
    /// with `force` an unknown name is not an error.
    pub fn remove(&self, name: &str, force: bool) -> Result<(), VolumeError> {
        let mut inner = self.lock();
        if !inner.volumes.contains_key(name) {
            return if force {
                Ok(())
            } else {
                Err(VolumeError::NotFound(name.to_string()))
            };
        }
        if let Some(refs) = inner.refs.get(name).filter(|r| !r.is_empty()) {
            return Err(VolumeError::InUse {
                name: name.to_string(),
                refs: refs.iter().cloned().collect(),
            });
        }
        let v = inner.volumes[name].clone();
        if v.needs_mount() {
            unmount(&v.mountpoint);
        }
        let dir = self.root.join(name);
        // Metadata first: a crash mid-way leaves a directory `open` cleans up.
        let _ = std::fs::remove_file(dir.join("volume.json"));
        std::fs::remove_dir_all(&dir)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| VolumeError::io(format!("remove {}", dir.display()), e))?;
        inner.volumes.remove(name);
        inner.active.remove(name);
        Ok(())
    }

    /// Removes unused volumes: only anonymous ones unless `filters` has `all=true`; `label`
    /// and `label!` filters narrow it. Returns the removed names and the bytes reclaimed.
    pub fn prune(&self, filters: &Filters) -> Result<(Vec<String>, u64), VolumeError> {
        let mut all = false;
        for (k, vals) in filters {
            match k.as_str() {
                "label" | "label!" => {}
                "all" => {
                    for v in vals {
                        all = parse_bool(v)
                            .ok_or_else(|| VolumeError::InvalidFilter(format!("all={v}")))?;
                    }
                }
                other => return Err(VolumeError::InvalidFilter(other.to_string())),
            }
        }
        let candidates: Vec<Volume> = {
            let inner = self.lock();
            inner
                .volumes
                .values()
                .filter(|v| inner.refs.get(&v.name).is_none_or(|s| s.is_empty()))
                .filter(|v| all || v.is_anonymous())
                .filter(|v| {
                    filters
                        .get("label")
                        .is_none_or(|fs| fs.iter().all(|f| label_match(&v.labels, f)))
                        && filters
                            .get("label!")
                            .is_none_or(|fs| fs.iter().all(|f| !label_match(&v.labels, f)))
                })
                .cloned()
                .collect()
        };
        let mut removed = Vec::new();
        let mut space = 0u64;
        for v in candidates {
            let size = if v.needs_mount() {
                0
            } else {
                dir_size(&v.mountpoint).max(0) as u64
            };
            match self.remove(&v.name, false) {
                Ok(()) => {
                    removed.push(v.name);
                    space += size;
                }
                Err(VolumeError::InUse { .. }) => {}
                Err(e) => tracing::warn!(volume = %v.name, "prune: {e}"),
            }
        }
        Ok((removed, space))
    }

    /// Every volume with its size and reference count (for `/system/df`).
    pub fn usage(&self) -> Vec<VolumeUsage> {
        let list: Vec<(Volume, i64)> = {
            let inner = self.lock();
            inner
                .volumes
                .values()
                .map(|v| {
                    (
                        v.clone(),
                        inner.refs.get(&v.name).map_or(0, |s| s.len() as i64),
                    )
                })
                .collect()
        };
        let mut out: Vec<VolumeUsage> = list
            .into_iter()
            .map(|(volume, ref_count)| VolumeUsage {
                size: dir_size(&volume.mountpoint),
                volume,
                ref_count,
            })
            .collect();
        out.sort_by(|a, b| a.volume.name.cmp(&b.volume.name));
        out
    }

    /// Marks `name` in use by running container `container_id`, mounting its filesystem on
    /// `_data` first if the volume has driver options and is not mounted yet. Returns the
    /// volume's mountpoint.
    pub fn mount(&self, name: &str, container_id: &str) -> Result<PathBuf, VolumeError> {
        let mut inner = self.lock();
        let v = inner
            .volumes
            .get(name)
            .cloned()
            .ok_or_else(|| VolumeError::NotFound(name.to_string()))?;
        if v.needs_mount() && !is_mounted(&v.mountpoint) {
            mount_volume(&v)?;
        }
        inner
            .active
            .entry(name.to_string())
            .or_default()
            .insert(container_id.to_string());
        Ok(v.mountpoint)
    }

    /// `container_id` stopped using `name`: unmounts the volume's filesystem when it was the
    /// last user.
    pub fn unmount(&self, name: &str, container_id: &str) {
        let mut inner = self.lock();
        let last = match inner.active.get_mut(name) {
            Some(set) => {
                set.remove(container_id);
                set.is_empty()
            }
            None => true,
        };
        if last {
            inner.active.remove(name);
            if let Some(v) = inner.volumes.get(name) {
                if v.needs_mount() {
                    unmount(&v.mountpoint);
                }
            }
        }
    }

    /// Unmounts the filesystems of option-mounted volumes no running container uses (after
    /// start-up reconciliation, or a daemon crash).
    pub fn unmount_unused(&self) {
        let inner = self.lock();
        for v in inner.volumes.values() {
            if v.needs_mount() && inner.active.get(&v.name).is_none_or(|s| s.is_empty()) {
                unmount(&v.mountpoint);
            }
        }
    }
}

fn unmount(path: &Path) {
    while is_mounted(path) {
        if nix::mount::umount2(path, nix::mount::MntFlags::empty()).is_err()
            && nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH).is_err()
        {
            break;
        }
    }
}

/// `mount -t TYPE -o O DEVICE <mountpoint>` (for `o=bind`: a bind mount of DEVICE).
fn mount_volume(v: &Volume) -> Result<(), VolumeError> {
    let typ = v.options.get("type").map(String::as_str).unwrap_or("");
    let device = v.options.get("device").map(String::as_str).unwrap_or("");
    let o = v.options.get("o").map(String::as_str).unwrap_or("");
    let (flags, data) = mount_flags(o);
    let err = |reason: String| VolumeError::Mount {
        path: v.mountpoint.clone(),
        reason,
    };
    if flags.contains(nix::mount::MsFlags::MS_BIND) {
        if !Path::new(device).exists() {
            return Err(err(format!(
                "failed to mount local volume: mount {device}:{}, flags: 0x1000: no such file or directory",
                v.mountpoint.display()
            )));
        }
        nix::mount::mount(
            Some(device),
            &v.mountpoint,
            None::<&str>,
            flags,
            None::<&str>,
        )
        .map_err(|e| err(format!("failed to mount local volume: {e}")))?;
        if flags.contains(nix::mount::MsFlags::MS_RDONLY) {
            let _ = nix::mount::mount(
                None::<&str>,
                &v.mountpoint,
                None::<&str>,
                flags | nix::mount::MsFlags::MS_REMOUNT,
                None::<&str>,
            );
        }
        return Ok(());
    }
    nix::mount::mount(
        Some(device),
        &v.mountpoint,
        Some(typ),
        flags,
        (!data.is_empty()).then_some(data.as_str()),
    )
    .map_err(|e| {
        err(format!(
            "failed to mount local volume: mount {device}:{}, data: {data}: {e}",
            v.mountpoint.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Volumes) {
        let t = tempfile::tempdir().unwrap();
        let v = Volumes::open(t.path()).unwrap();
        (t, v)
    }

    fn named(name: &str) -> VolumeCreate {
        VolumeCreate {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn names_follow_docker() {
        assert!(validate_name("data").is_ok());
        assert!(validate_name("a.b_c-1").is_ok());
        let e = validate_name("a").unwrap_err().to_string();
        assert!(e.contains("volume name is too short"), "{e}");
        let e = validate_name("a/b").unwrap_err().to_string();
        assert_eq!(
            e,
            "create a/b: \"a/b\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        );
        assert!(validate_name("-x").is_err());
    }

    #[test]
    fn options_follow_docker() {
        let o = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(validate_options("v", &o(&[])).is_ok());
        assert!(validate_options("v", &o(&[("type", "tmpfs"), ("device", "tmpfs")])).is_ok());
        let e = validate_options("v", &o(&[("type", "tmpfs")]))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "create v: missing required option: \"device\"");
        let e = validate_options("v", &o(&[("bogus", "1")]))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "create v: invalid option: \"bogus\"");
        assert!(validate_options("v", &o(&[("o", "bind"), ("device", "/x")])).is_err());
    }

    #[test]
    fn create_is_idempotent_and_persists() {
        let (t, s) = store();
        let mut req = named("data");
        req.labels.insert("k".into(), "v".into());
        let v = s.create(req).unwrap();
        assert_eq!(v.mountpoint, t.path().join("volumes/data/_data"));
        assert!(v.mountpoint.is_dir());
        assert_eq!((v.driver.as_str(), v.scope.as_str()), ("local", "local"));
        std::fs::write(v.mountpoint.join("f"), "x").unwrap();
        let again = s.create(named("data")).unwrap();
        assert_eq!(again, v);
        let e = s
            .create(VolumeCreate {
                name: "data".into(),
                driver: "nfs".into(),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(e.kind(), VolumeErrorKind::Conflict);
        // A crash mid-create (no metadata) is cleaned up on open; the real one survives.
        std::fs::create_dir_all(t.path().join("volumes/half/_data")).unwrap();
        drop(s);
        let s = Volumes::open(t.path()).unwrap();
        assert_eq!(s.get("data").unwrap(), v);
        assert!(!t.path().join("volumes/half").exists());
        assert_eq!(
            s.get("nope").unwrap_err().to_string(),
            "get nope: no such volume"
        );
        let anon = s.create(VolumeCreate::default()).unwrap();
        assert_eq!(anon.name.len(), 64);
    }

    #[test]
    fn references_block_rm_and_drive_filters_and_prune() {
        let (_t, s) = store();
        s.create(named("used")).unwrap();
        s.create(named("free")).unwrap();
        let mut anon = VolumeCreate::default();
        anon.labels.insert(ANONYMOUS_LABEL.into(), String::new());
        let a = s.create_and_reference(anon.clone(), "c1").unwrap();
        let a2 = s.create(anon).unwrap();
        s.add_reference("used", "c1");
        s.add_reference("used", "c2");
        let e = s.remove("used", true).unwrap_err();
        assert_eq!(e.kind(), VolumeErrorKind::Conflict);
        assert_eq!(e.to_string(), "remove used: volume is in use - [c1, c2]");
        assert!(s.remove("ghost", true).is_ok());
        assert_eq!(
            s.remove("ghost", false).unwrap_err().kind(),
            VolumeErrorKind::NotFound
        );
        let names = |f: &[(&str, &str)]| -> Vec<String> {
            let mut m = Filters::new();
            for (k, v) in f {
                m.entry(k.to_string()).or_default().push(v.to_string());
            }
            s.list(&m).unwrap().into_iter().map(|v| v.name).collect()
        };
        assert_eq!(names(&[("dangling", "false")]), {
            let mut v = vec![a.name.clone(), "used".to_string()];
            v.sort();
            v
        });
        assert!(names(&[("dangling", "true")]).contains(&"free".to_string()));
        assert_eq!(names(&[("name", "fre")]), vec!["free"]);
        assert_eq!(names(&[("label", ANONYMOUS_LABEL)]).len(), 2);
        assert!(s
            .list(&[("color".to_string(), vec!["x".to_string()])].into())
            .is_err());
        // Default prune: unused anonymous only.
        let (removed, _) = s.prune(&Filters::new()).unwrap();
        assert_eq!(removed, vec![a2.name.clone()]);
        let (removed, _) = s
            .prune(&[("all".to_string(), vec!["true".to_string()])].into())
            .unwrap();
        assert_eq!(removed, vec!["free".to_string()]);
        s.remove_reference("used", "c1");
        s.remove_reference("used", "c2");
        let u = s.usage();
        assert_eq!(u.len(), 2);
        assert!(u
            .iter()
            .any(|x| x.volume.name == a.name && x.ref_count == 1));
        s.remove("used", false).unwrap();
        assert!(s.get("used").is_err());
    }

    #[test]
    fn mount_option_parsing() {
        use nix::mount::MsFlags;
        let (f, d) = mount_flags("ro,nosuid,size=1m,uid=1000");
        assert_eq!(f, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
        assert_eq!(d, "size=1m,uid=1000");
        assert!(mount_flags("bind").0.contains(MsFlags::MS_BIND));
    }
}
