//! The store itself (see lib.rs for the on-disk layout): the public types, the in-memory
//! index of `refs.json` ([`State`]), [`ImageStore`]'s fields, opening, and the primitives every
//! operation shares (blob paths and reads, the config cache, the atomic `refs.json` write).
//!
//! Each operation lives in a submodule holding one `impl ImageStore` block:
//! - `txn`: pins, transactions, holds, blob writes and the commit point;
//! - `load`: `load` (OCI layouts, docker-save archives) and `import`;
//! - `lookup`: name/ID resolution, `list`/`get`, `tag`, `history`, recorded sizes;
//! - `gc`: `rmi`, `image prune` and garbage collection;
//! - `snapshots`: unpacking layers into snapshots by chain ID;
//! - `save`: `docker save` (legacy and OCI archives).
//!
//! **Invariants:** `refs.json` is only written by [`ImageStore::write_state`], with the
//! writers' lock held, file first then the in-memory snapshot; readers only clone the snapshot.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::digest::{self, decompressed, digest_hex, HashingReader, PlatformJson};
use crate::{ImageConfigFile, ImageError, Platform, Reference};

mod gc;
mod load;
mod lookup;
mod save;
mod snapshots;
mod txn;

pub use txn::Hold;
use txn::Pins;
pub(crate) use txn::{Staged, Txn};

/// An image as the store knows it.
#[derive(Debug, Clone)]
pub struct Image {
    /// Image ID: the config digest, `sha256:<64 hex>` (Docker's image ID).
    pub id: String,
    /// Familiar tags, e.g. `busybox:1.35`, `myrepo.io/x/y:tag` (Docker's `RepoTags`).
    pub repo_tags: Vec<String>,
    /// Familiar name + manifest digest, e.g. `busybox@sha256:...` (Docker's `RepoDigests`).
    pub repo_digests: Vec<String>,
    /// Digest of the (platform-specific) manifest.
    pub manifest_digest: String,
    /// The parsed config blob.
    pub config: ImageConfigFile,
    /// Sum of uncompressed layer sizes in bytes (Docker's `Size`).
    pub size: u64,
    /// When the image was added to the store, unix seconds (used when the config lacks `created`).
    pub added: i64,
}

impl Image {
    /// `created` of the config as unix seconds, or [`Image::added`] when absent/unparsable.
    pub fn created_unix(&self) -> i64 {
        parse_time(self.config.created.as_deref()).unwrap_or(self.added)
    }
}

/// One image a `load` stored, with the references it was tagged with (familiar form).
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// Image ID (`sha256:<hex>` of the config).
    pub id: String,
    /// Familiar references now pointing at it, e.g. `busybox:1.35`.
    pub references: Vec<String>,
}

/// Output format of [`ImageStore::save`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    /// Legacy `docker save` layout: `manifest.json`, `repositories`, `<config-hex>.json` and
    /// `<chain-id-hex>/{layer.tar,json,VERSION}` (uncompressed layers).
    Docker,
    /// An [OCI image layout](https://github.com/opencontainers/image-spec/blob/main/image-layout.md)
    /// in a tar archive (`oci-layout`, `index.json`, `blobs/`).
    Oci,
}

/// What `rmi` did, in Docker's `ImageDeleteResponseItem` terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemovedItem {
    /// A familiar reference that was removed (`busybox:1.35`).
    Untagged(String),
    /// An image ID that was deleted (`sha256:<hex>`).
    Deleted(String),
}

/// What `image prune` removed.
#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    /// Untagged references and deleted image IDs.
    pub removed: Vec<RemovedItem>,
    /// Bytes of blobs and snapshots freed.
    pub space_reclaimed: u64,
}

/// One `docker history` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryItem {
    /// The image ID for the top row, `<missing>` for the others (as Docker prints).
    pub id: String,
    /// Creation time, unix seconds (0 when unknown).
    pub created: i64,
    /// The instruction that made the layer (`created_by`).
    pub created_by: String,
    /// Familiar tags (top row only).
    pub tags: Vec<String>,
    /// Uncompressed layer size in bytes; 0 for `empty_layer` entries.
    pub size: i64,
    /// `comment` of the history entry.
    pub comment: String,
}

/// `refs.json`: references and image records.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct State {
    /// Full reference (`docker.io/library/busybox:1.35`) → its target.
    refs: BTreeMap<String, RefEntry>,
    /// Image ID → record.
    images: BTreeMap<String, ImageRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RefEntry {
    image: String,
    manifest: String,
    /// The image index the reference was loaded from with all its platforms (`manifest` is
    /// then the host's entry); pushed as such.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    index: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ImageRecord {
    /// Manifests (digests) stored for this config, first = primary.
    manifests: Vec<String>,
    added: i64,
    /// Uncompressed size of each layer, bottom first (same order as `rootfs.diff_ids`).
    layer_sizes: Vec<u64>,
    /// Image indexes stored with every platform's manifest, config and layers, of which this
    /// image is the host's entry (their blobs live as long as this record).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    indexes: Vec<String>,
}

/// The image store. Cheap to share behind an `Arc`; methods take `&self` and lock internally.
///
/// Readers (list, get, resolve, save, layer_dirs of unpacked images) work on an immutable
/// snapshot of the in-memory index of `refs.json`, taken under a lock held only to clone an
/// `Arc`: they never wait for a writer's I/O, and no lock is held while a save streams or a
/// load copies blobs. Writers of `refs.json` (commit of a load/import/pull, tag, rmi, prune,
/// gc) are serialised by `write_lock`, write the file first (temp + fsync + rename) and then
/// swap the snapshot (write-through). Blobs staged or streamed by operations in progress are
/// pinned (`Pins`) so gc leaves them.
pub struct ImageStore {
    root: PathBuf,
    /// The in-memory index of `refs.json` (the last committed state).
    state: Mutex<Arc<State>>,
    /// Serialises writers of `refs.json` and gc. Never held while streaming or copying
    /// image content. Lock order: `write_lock`, `unpack_lock`, pins, `state`.
    write_lock: Mutex<()>,
    /// Serialises snapshot unpacking against itself and gc, without blocking readers.
    unpack_lock: Mutex<()>,
    pins: Arc<Pins>,
    /// Start times (Unix seconds) of the [`Hold`]s alive, by hold ID.
    holds: Arc<Mutex<HashMap<u64, i64>>>,
    /// Parsed image configs by image ID (content-addressed, so never stale).
    configs: Mutex<HashMap<String, Arc<ImageConfigFile>>>,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn parse_time(s: Option<&str>) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s?)
        .ok()
        .map(|t| t.timestamp())
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ImageError {
    let what = what.into();
    move |e| ImageError::io(what, e)
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err(format!("fsync {}", dir.display())))
}

/// Marks `dir` with ext4's `FS_TOPDIR_FL` (best effort; ignored by other file systems): new
/// subdirectories, the snapshots being unpacked, are unrelated trees and get spread over
/// block groups like home directories, instead of all going to `dir`'s group. On ext4 without
/// a journal this matters: the inode allocator skips inodes freed in the last minute one by
/// one, so unpacking a big layer into the group an `rmi` just emptied costs seconds.
fn spread_subdirs(dir: &Path) {
    use std::os::fd::AsRawFd;
    const FS_TOPDIR_FL: libc::c_long = 0x0002_0000;
    let Ok(f) = File::open(dir) else { return };
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS/SETFLAGS read and write one `long` through the pointer, which
    // points to a live local; the fd is open for the duration of the calls.
    unsafe {
        if libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) != 0
            || flags & FS_TOPDIR_FL != 0
        {
            return;
        }
        flags |= FS_TOPDIR_FL;
        let _ = libc::ioctl(f.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags);
    }
}

pub(crate) fn random_suffix() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    digest::hex(&b)
}

/// The image index that `name` (a reference, or `name@digest` of an index) stands for, if it
/// was loaded with all platforms.
pub(crate) fn index_of(state: &State, name: &str) -> Option<String> {
    let r = Reference::parse(name).ok()?;
    if let Some(d) = r.digest() {
        return state
            .images
            .values()
            .any(|rec| rec.indexes.iter().any(|i| i == d))
            .then(|| d.to_string());
    }
    state.refs.get(&r.full())?.index.clone()
}

pub(crate) fn parse_json<T: for<'de> Deserialize<'de>>(
    what: &str,
    data: &[u8],
) -> Result<T, ImageError> {
    serde_json::from_slice(data).map_err(|source| ImageError::Json {
        what: what.to_string(),
        source,
    })
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root` (`<data-root>/image`): creates `blobs/sha256`,
    /// `snapshots`, `tmp`, `partial`, and removes everything in `tmp/` (partial writes left by a
    /// crash). `partial/` keeps cut layer downloads for resumable pulls.
    /// Errors: [`ImageError::Io`], or [`ImageError::Json`] if `refs.json` is corrupt.
    pub fn open(root: &Path) -> Result<ImageStore, ImageError> {
        for d in ["blobs/sha256", "snapshots", "tmp", "partial"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_err(format!("create {}", p.display())))?;
        }
        // Partial layer downloads are kept for resumes, unless their blob is complete by now.
        let partial = root.join("partial");
        for e in fs::read_dir(&partial).map_err(io_err(format!("read {}", partial.display())))? {
            let e = e.map_err(io_err(format!("read {}", partial.display())))?;
            if root.join("blobs/sha256").join(e.file_name()).exists() {
                let _ = fs::remove_file(e.path());
            }
        }
        let tmp = root.join("tmp");
        spread_subdirs(&tmp);
        for e in fs::read_dir(&tmp).map_err(io_err(format!("read {}", tmp.display())))? {
            let e = e.map_err(io_err(format!("read {}", tmp.display())))?;
            let p = e.path();
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            let r = if is_dir {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            r.map_err(io_err(format!("remove {}", p.display())))?;
        }
        let state = Self::read_state_file(root)?;
        Ok(ImageStore {
            root: root.to_path_buf(),
            state: Mutex::new(Arc::new(state)),
            write_lock: Mutex::new(()),
            unpack_lock: Mutex::new(()),
            pins: Arc::new(Pins::default()),
            holds: Arc::default(),
            configs: Mutex::new(HashMap::new()),
        })
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The writers' lock (see [`ImageStore`]).
    pub(crate) fn guard(&self) -> MutexGuard<'_, ()> {
        self.write_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The committed state, as of now (cheap: an `Arc` clone under a short lock).
    pub(crate) fn snapshot(&self) -> Arc<State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The parsed config of image `id`, from the cache or its blob.
    pub(crate) fn config(&self, id: &str) -> Result<Arc<ImageConfigFile>, ImageError> {
        if let Some(c) = self
            .configs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            return Ok(c.clone());
        }
        let cfg: Arc<ImageConfigFile> =
            Arc::new(parse_json(&format!("config {id}"), &self.read_blob(id)?)?);
        self.configs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), cfg.clone());
        Ok(cfg)
    }

    pub(crate) fn unpack_guard(&self) -> MutexGuard<'_, ()> {
        self.unpack_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub(crate) fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.root.join("blobs/sha256").join(digest_hex(digest)?))
    }

    pub(crate) fn snapshot_path(&self, chain_id: &str) -> Result<PathBuf, ImageError> {
        Ok(self.root.join("snapshots").join(digest_hex(chain_id)?))
    }

    pub(crate) fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let p = self.blob_path(digest)?;
        fs::read(&p).map_err(io_err(format!("read blob {digest}")))
    }

    fn read_state_file(root: &Path) -> Result<State, ImageError> {
        let p = root.join("refs.json");
        match fs::read(&p) {
            Ok(data) => parse_json("refs.json", &data),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(ImageError::io(format!("read {}", p.display()), e)),
        }
    }

    /// Replaces `refs.json` atomically (temp file, fsync, rename, fsync dir), then the
    /// in-memory snapshot. The caller holds [`ImageStore::guard`].
    fn write_state(&self, state: &State) -> Result<(), ImageError> {
        let data = serde_json::to_vec_pretty(state).map_err(|source| ImageError::Json {
            what: "refs.json".into(),
            source,
        })?;
        let mut tmp =
            tempfile::NamedTempFile::new_in(self.tmp()).map_err(io_err("create temp refs"))?;
        tmp.write_all(&data).map_err(io_err("write temp refs"))?;
        tmp.as_file()
            .sync_all()
            .map_err(io_err("fsync temp refs"))?;
        tmp.persist(self.root.join("refs.json"))
            .map_err(|e| ImageError::io("rename refs.json", e.error))?;
        fsync_dir(&self.root)?;
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(state.clone());
        // Configs of images no longer recorded leave the cache.
        self.configs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, _| state.images.contains_key(id));
        Ok(())
    }

    /// Decompresses a stored layer blob, returning (diff_id, uncompressed size).
    pub(crate) fn layer_diff(&self, digest: &str) -> Result<(String, u64), ImageError> {
        let f =
            File::open(self.blob_path(digest)?).map_err(io_err(format!("open blob {digest}")))?;
        let (_, r) = decompressed(f).map_err(io_err(format!("read blob {digest}")))?;
        let mut hr = HashingReader::new(r);
        io::copy(&mut hr, &mut io::sink())
            .map_err(|e| ImageError::InvalidArchive(format!("layer {digest}: {e}")))?;
        Ok((hr.digest(), hr.count))
    }
}

/// Descriptor platform helper used by tests and callers that build indexes.
impl From<&Platform> for PlatformJson {
    fn from(p: &Platform) -> Self {
        PlatformJson {
            architecture: p.architecture.clone(),
            os: p.os.clone(),
            variant: p.variant.clone(),
        }
    }
}
