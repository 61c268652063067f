//! What gc must keep, and how an operation writes content: [`Pins`] and [`Txn`] (the blobs an
//! operation in progress stored or needs), [`Hold`]s (everything written since a point in
//! time), blob writes ([`ImageStore::put_blob`]) and the commit point of loads, imports and
//! pulls ([`ImageStore::commit`]).
//!
//! **Invariants:** a blob is pinned before its existence is checked, and stays pinned until its
//! [`Txn`] is dropped; a rollback deletes only blobs its own operation created and that no
//! other operation pinned meanwhile; blobs are complete, verified and fsynced before they are
//! renamed into `blobs/sha256/`, and `refs.json` is written after them.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::digest::HashingWriter;
use crate::{ImageError, Reference};

use super::{fsync_dir, io_err, now, ImageRecord, ImageStore, LoadedImage, RefEntry};

/// An image staged by a load, committed to `refs.json` at the end.
pub(crate) struct Staged {
    pub(crate) id: String,
    pub(crate) manifest: String,
    pub(crate) layer_sizes: Vec<u64>,
    pub(crate) refs: Vec<Reference>,
    /// The index this image is the host's entry of (loads with all platforms).
    pub(crate) index: Option<String>,
}

/// Blobs that operations in progress need (staged by a load, import or pull not yet
/// committed, or streamed by a save): garbage collection keeps them.
#[derive(Default)]
pub(crate) struct Pins(Mutex<HashMap<String, Pin>>);

/// One pinned digest: how many pins, the operation that pinned it first, and whether another
/// operation pinned it meanwhile (then a failed one never deletes it).
pub(crate) struct Pin {
    count: usize,
    owner: u64,
    shared: bool,
}

impl Pins {
    pub(super) fn lock(&self) -> MutexGuard<'_, HashMap<String, Pin>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Identifies the [`Txn`] that pins.
static TXN_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Blobs created by an operation in progress; removed again if it fails. Every blob it
/// stored or needs is pinned until it is dropped.
#[derive(Default)]
pub(crate) struct Txn {
    /// (digest, path) of blobs this operation created.
    new_blobs: Vec<(String, PathBuf)>,
    /// Layer blob digest → (diff ID, uncompressed size), computed once per load.
    pub(super) diffs: std::collections::HashMap<String, (String, u64)>,
    /// A load that keeps image indexes with all their platforms.
    pub(super) all_platforms: bool,
    pinned: Vec<String>,
    pins: Option<Arc<Pins>>,
    /// Set on the first pin (0 = none yet).
    id: u64,
}

impl Txn {
    /// Pins `digest` for the life of this transaction.
    pub(crate) fn pin(&mut self, pins: &Arc<Pins>, digest: &str) {
        if self.id == 0 {
            self.id = TXN_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let mut m = pins.lock();
        let e = m.entry(digest.to_string()).or_insert(Pin {
            count: 0,
            owner: self.id,
            shared: false,
        });
        e.count += 1;
        if e.owner != self.id {
            e.shared = true;
        }
        drop(m);
        self.pinned.push(digest.to_string());
        self.pins = Some(pins.clone());
    }

    /// Unpins everything; returns the digests whose last pin this was and that no other
    /// operation ever pinned at the same time.
    fn unpin_all(&mut self) -> HashSet<String> {
        let mut alone = HashSet::new();
        let Some(pins) = &self.pins else {
            return alone;
        };
        let mut m = pins.lock();
        for d in std::mem::take(&mut self.pinned) {
            if let Some(e) = m.get_mut(&d) {
                e.count -= 1;
                if e.count == 0 {
                    if !e.shared {
                        alone.insert(d.clone());
                    }
                    m.remove(&d);
                }
            }
        }
        alone
    }

    /// Removes the blobs this operation created, unless another one needs them too.
    pub(crate) fn rollback(mut self) {
        let new = std::mem::take(&mut self.new_blobs);
        let alone = self.unpin_all();
        for (d, p) in new {
            if alone.contains(&d) {
                let _ = fs::remove_file(p);
            }
        }
    }
}

impl Drop for Txn {
    fn drop(&mut self) {
        self.unpin_all();
    }
}

/// Keeps gc away from everything written to the store since it was taken, for as long as it
/// lives: for an operation that stores layers before any image references them (a build's
/// steps, until its image is written), as containerd's leases do. Taken with
/// [`ImageStore::hold`]; dropping it releases the content to the next gc.
#[derive(Debug)]
pub struct Hold {
    holds: Arc<Mutex<HashMap<u64, i64>>>,
    id: u64,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.holds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl ImageStore {
    /// Takes a [`Hold`]: until it is dropped, gc keeps every blob and snapshot that was
    /// written (created or renamed into place: its ctime) since now.
    pub fn hold(&self) -> Hold {
        let id = TXN_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.holds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, now());
        Hold {
            holds: self.holds.clone(),
            id,
        }
    }

    /// Pins `digest` for the life of `txn` (gc keeps it).
    pub(crate) fn pin(&self, digest: &str, txn: &mut Txn) {
        txn.pin(&self.pins, digest);
    }

    /// Copies `reader` into `blobs/sha256/`, hashing while writing into a temp file; verifies
    /// the digest and size when given, fsyncs, then renames into place.
    pub(crate) fn put_blob(
        &self,
        reader: &mut dyn Read,
        expected: Option<&str>,
        expected_size: Option<u64>,
        what: &str,
        txn: &mut Txn,
    ) -> Result<(String, u64), ImageError> {
        let tmp =
            tempfile::NamedTempFile::new_in(self.tmp()).map_err(io_err("create temp blob"))?;
        let mut w = HashingWriter::new(io::BufWriter::with_capacity(256 * 1024, tmp));
        io::copy(reader, &mut w).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::InvalidData
            | io::ErrorKind::InvalidInput
            | io::ErrorKind::Other => ImageError::InvalidArchive(format!("reading {what}: {e}")),
            _ => ImageError::io(format!("copy {what}"), e),
        })?;
        let digest = w.digest();
        let size = w.count;
        if let Some(exp) = expected {
            if exp != digest {
                return Err(ImageError::DigestMismatch {
                    what: what.to_string(),
                    expected: exp.to_string(),
                    actual: digest,
                });
            }
        }
        if let Some(exp) = expected_size {
            if exp != size {
                return Err(ImageError::SizeMismatch {
                    what: what.to_string(),
                    expected: exp,
                    actual: size,
                });
            }
        }
        let tmp = w
            .inner
            .into_inner()
            .map_err(|e| ImageError::io("flush blob", e.into_error()))?;
        tmp.as_file().sync_all().map_err(io_err("fsync blob"))?;
        let dest = self.blob_path(&digest)?;
        // Pinned before the existence check, so gc cannot take a blob this relies on.
        self.pin(&digest, txn);
        if !dest.exists() {
            tmp.persist(&dest)
                .map_err(|e| ImageError::io("rename blob", e.error))?;
            txn.new_blobs.push((digest.clone(), dest));
        }
        Ok((digest, size))
    }

    pub(crate) fn put_bytes(
        &self,
        data: &[u8],
        what: &str,
        txn: &mut Txn,
    ) -> Result<String, ImageError> {
        Ok(self.put_blob(&mut &data[..], None, None, what, txn)?.0)
    }

    /// Records staged images and their references in `refs.json` (the commit point). Takes
    /// the writers' lock; the staged blobs are pinned by the caller's [`Txn`] until then.
    pub(crate) fn commit(&self, staged: Vec<Staged>) -> Result<Vec<LoadedImage>, ImageError> {
        // Blobs first (durably), refs last.
        fsync_dir(&self.root.join("blobs/sha256"))?;
        let _g = self.guard();
        let mut state = (*self.snapshot()).clone();
        let mut out = Vec::new();
        for s in staged {
            let rec = state
                .images
                .entry(s.id.clone())
                .or_insert_with(|| ImageRecord {
                    manifests: Vec::new(),
                    added: now(),
                    layer_sizes: s.layer_sizes.clone(),
                    indexes: Vec::new(),
                });
            if !rec.manifests.contains(&s.manifest) {
                rec.manifests.push(s.manifest.clone());
            }
            if let Some(i) = &s.index {
                if !rec.indexes.contains(i) {
                    rec.indexes.push(i.clone());
                }
            }
            for r in &s.refs {
                state.refs.insert(
                    r.full(),
                    RefEntry {
                        image: s.id.clone(),
                        manifest: s.manifest.clone(),
                        index: s.index.clone(),
                    },
                );
            }
            out.push(LoadedImage {
                id: s.id,
                references: s.refs.iter().map(Reference::familiar).collect(),
            });
        }
        self.write_state(&state)?;
        Ok(out)
    }
}
