//! Removing images (`docker rmi`, `docker image prune`) and garbage collection of the blobs
//! and snapshots no image references, and of expired partial layer downloads.
//!
//! **Invariants:** collection runs under the writers' and the unpack lock and only renames
//! into a trash directory under `tmp/` ([`Trash`]), emptied after the locks are released;
//! pinned blobs (checked under the pins' lock) and content written since the oldest live
//! [`super::Hold`] began are kept; a partial download is removed only when no pull holds its
//! lock.

use std::collections::HashSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::digest::{chain_ids, digest_hex, Index, Manifest};
use crate::{ImageConfigFile, ImageError, Reference};

use super::{io_err, parse_json, random_suffix, ImageStore, PruneReport, RemovedItem, State};

/// What a garbage collection took out of the store (moved into `tmp/`, so it is gone for
/// every reader at once); [`Trash::empty`] deletes it, outside the store's locks.
pub(crate) struct Trash {
    dir: Option<PathBuf>,
    freed: u64,
}

impl Trash {
    /// Deletes the collected files; returns the bytes freed.
    pub(crate) fn empty(self) -> u64 {
        let mut freed = self.freed;
        if let Some(dir) = self.dir {
            freed +=
                dir_size(&dir).saturating_sub(fs::metadata(&dir).map(|m| m.len()).unwrap_or(0));
            let _ = fs::remove_dir_all(&dir);
        }
        freed
    }
}

fn dir_size(p: &Path) -> u64 {
    let Ok(md) = fs::symlink_metadata(p) else {
        return 0;
    };
    if !md.is_dir() {
        return md.len();
    }
    let mut total = md.len();
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            total += dir_size(&e.path());
        }
    }
    total
}

/// How long an unused partial layer download is kept for a resume before garbage collection
/// removes it.
const PARTIAL_EXPIRY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl ImageStore {
    /// `docker rmi`. By tag: untags; deletes the image too when that was its last reference
    /// (refused with [`ImageError::InUse`] if a container uses it, unless `force`, which then only
    /// untags). By ID: refuses if several references point at it
    /// ([`ImageError::MultipleRepositories`]) or a container uses it ([`ImageError::InUse`],
    /// `in_use_by(image_id)` returns the container ID) unless `force`; forced removal of an
    /// in-use image untags it but keeps it. Then unreferenced blobs and snapshots are collected.
    pub fn remove(
        &self,
        name_or_id: &str,
        force: bool,
        in_use_by: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<RemovedItem>, ImageError> {
        let g = self.guard();
        let mut state = (*self.snapshot()).clone();
        let (id, _, reference) = self.resolve(&state, name_or_id)?;
        let mut out = Vec::new();
        let tags: Vec<String> = state
            .refs
            .iter()
            .filter(|(_, v)| v.image == id)
            .map(|(k, _)| k.clone())
            .collect();
        let in_use = in_use_by(&id);
        match reference.filter(|r| r.digest().is_none()) {
            Some(r) => {
                let last = tags.len() <= 1;
                if last && !force {
                    if let Some(c) = &in_use {
                        return Err(ImageError::InUse {
                            image: name_or_id.to_string(),
                            container: c.clone(),
                        });
                    }
                }
                state.refs.remove(&r.full());
                out.push(RemovedItem::Untagged(r.familiar()));
                if last && in_use.is_none() {
                    state.images.remove(&id);
                    out.push(RemovedItem::Deleted(id.clone()));
                }
            }
            None => {
                if tags.len() > 1 && !force {
                    return Err(ImageError::MultipleRepositories {
                        image: name_or_id.to_string(),
                    });
                }
                if let (Some(c), false) = (&in_use, force) {
                    return Err(ImageError::InUse {
                        image: name_or_id.to_string(),
                        container: c.clone(),
                    });
                }
                for t in tags {
                    state.refs.remove(&t);
                    if let Ok(r) = Reference::parse(&t) {
                        out.push(RemovedItem::Untagged(r.familiar()));
                    }
                }
                if in_use.is_none() {
                    state.images.remove(&id);
                    out.push(RemovedItem::Deleted(id.clone()));
                }
            }
        }
        self.write_state(&state)?;
        let trash = self.gc_locked(&state)?;
        drop(g);
        trash.empty();
        Ok(out)
    }

    /// `docker image prune`: removes dangling (untagged) images, or with `all` every image no
    /// container uses (`in_use` = image IDs used by containers), then collects garbage.
    pub fn prune(&self, all: bool, in_use: &HashSet<String>) -> Result<PruneReport, ImageError> {
        let g = self.guard();
        let mut state = (*self.snapshot()).clone();
        let mut report = PruneReport::default();
        let ids: Vec<String> = state.images.keys().cloned().collect();
        for id in ids {
            if in_use.contains(&id) {
                continue;
            }
            let tags: Vec<String> = state
                .refs
                .iter()
                .filter(|(_, v)| v.image == id)
                .map(|(k, _)| k.clone())
                .collect();
            if !tags.is_empty() && !all {
                continue;
            }
            for t in tags {
                state.refs.remove(&t);
                if let Ok(r) = Reference::parse(&t) {
                    report.removed.push(RemovedItem::Untagged(r.familiar()));
                }
            }
            state.images.remove(&id);
            report.removed.push(RemovedItem::Deleted(id));
        }
        self.write_state(&state)?;
        let trash = self.gc_locked(&state)?;
        drop(g);
        report.space_reclaimed = trash.empty();
        Ok(report)
    }

    /// Removes blobs and snapshots that no image references; returns bytes freed.
    pub fn gc(&self) -> Result<u64, ImageError> {
        let trash = {
            let _g = self.guard();
            let state = self.snapshot();
            self.gc_locked(&state)?
        };
        Ok(trash.empty())
    }

    /// Moves every blob and snapshot no image references (and no operation pins) into a
    /// trash directory under `tmp/` (renames only: quick under the locks); the caller empties
    /// it once it released the writers' lock. The caller holds [`ImageStore::guard`].
    fn gc_locked(&self, state: &State) -> Result<Trash, ImageError> {
        let _u = self.unpack_guard();
        let mut blobs: HashSet<String> = HashSet::new();
        let mut snaps: HashSet<String> = HashSet::new();
        for (id, rec) in &state.images {
            blobs.insert(digest_hex(id)?.to_string());
            if let Ok(data) = self.read_blob(id) {
                if let Ok(cfg) = serde_json::from_slice::<ImageConfigFile>(&data) {
                    for c in chain_ids(&cfg.rootfs.diff_ids) {
                        if let Ok(h) = digest_hex(&c) {
                            snaps.insert(h.to_string());
                        }
                    }
                }
            }
            let mut manifests = rec.manifests.clone();
            for i in &rec.indexes {
                blobs.insert(digest_hex(i)?.to_string());
                if let Ok(index) = self
                    .read_blob(i)
                    .and_then(|d| parse_json::<Index>("index", &d))
                {
                    manifests.extend(index.manifests.into_iter().map(|m| m.digest));
                }
            }
            for m in &manifests {
                blobs.insert(digest_hex(m)?.to_string());
                if let Ok(data) = self.read_blob(m) {
                    if let Ok(man) = serde_json::from_slice::<Manifest>(&data) {
                        for d in std::iter::once(&man.config).chain(&man.layers) {
                            if let Ok(h) = digest_hex(&d.digest) {
                                blobs.insert(h.to_string());
                            }
                        }
                    }
                }
            }
        }
        // Content written since the oldest live hold began stays (a second of slack for the
        // timestamps' granularity).
        let held_since = self
            .holds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .min()
            .map(|t| t - 1);
        let trash_dir = self.tmp().join(format!("gc-{}", random_suffix()));
        let mut trash = Trash {
            dir: None,
            freed: 0,
        };
        for (sub, keep, is_blob) in [("blobs/sha256", &blobs, true), ("snapshots", &snaps, false)] {
            let dir = self.root.join(sub);
            for e in fs::read_dir(&dir).map_err(io_err(format!("read {}", dir.display())))? {
                let e = e.map_err(io_err(format!("read {}", dir.display())))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if keep.contains(&name) {
                    continue;
                }
                let p = e.path();
                if let Some(since) = held_since {
                    use std::os::unix::fs::MetadataExt;
                    if fs::symlink_metadata(&p).is_ok_and(|m| m.ctime() >= since) {
                        continue;
                    }
                }
                if trash.dir.is_none() {
                    fs::create_dir(&trash_dir).map_err(io_err("create gc dir"))?;
                    trash.dir = Some(trash_dir.clone());
                }
                let dest = trash_dir.join(format!("{}-{name}", if is_blob { "b" } else { "s" }));
                if is_blob {
                    // Checked and moved under the pins' lock: a load that pins this digest
                    // either sees it gone (and writes it again) or keeps it.
                    let pins = self.pins.lock();
                    if pins.contains_key(&format!("sha256:{name}")) {
                        continue;
                    }
                    fs::rename(&p, &dest).map_err(io_err(format!("remove {}", p.display())))?;
                } else {
                    fs::rename(&p, &dest).map_err(io_err(format!("remove {}", p.display())))?;
                }
            }
        }
        trash.freed += self.expire_partials(PARTIAL_EXPIRY);
        Ok(trash)
    }

    /// Removes kept partial layer downloads that no pull holds (their lock is free) and that
    /// were last written more than `older_than` ago, like containerd's expiring ingests.
    /// Returns the bytes freed.
    fn expire_partials(&self, older_than: std::time::Duration) -> u64 {
        let dir = self.root.join("partial");
        let Ok(rd) = fs::read_dir(&dir) else { return 0 };
        let mut freed = 0;
        for e in rd.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            let old = meta
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age >= older_than);
            if !old {
                continue;
            }
            let Ok(f) = File::open(e.path()) else {
                continue;
            };
            // A pull writing this file holds an exclusive lock on it; keep it then.
            if let Ok(_lock) =
                nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
            {
                if fs::remove_file(e.path()).is_ok() {
                    freed += meta.len();
                }
            }
        }
        freed
    }
}
