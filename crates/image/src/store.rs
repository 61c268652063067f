//! The store itself: blobs, references, images, snapshots (see lib.rs for the on-disk layout).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::archive;
use crate::digest::{
    self, chain_ids, decompressed, digest_hex, known_layer_media_type, Descriptor, HashingReader,
    HashingWriter, Index, Manifest, PlatformJson,
};
use crate::reference::{is_hex64, valid_digest};
use crate::unpack::Applier;
use crate::{ImageConfigFile, ImageError, Platform, Reference};

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
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Pin>> {
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
    diffs: std::collections::HashMap<String, (String, u64)>,
    /// A load that keeps image indexes with all their platforms.
    all_platforms: bool,
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

/// The image store. Cheap to share behind an `Arc`; methods take `&self` and lock internally.
///
/// Readers (list, get, resolve, save, layer_dirs of unpacked images) work on an immutable
/// snapshot of the in-memory index of `refs.json`, taken under a lock held only to clone an
/// `Arc`: they never wait for a writer's I/O, and no lock is held while a save streams or a
/// load copies blobs. Writers of `refs.json` (commit of a load/import/pull, tag, rmi, prune,
/// gc) are serialised by `write_lock`, write the file first (temp + fsync + rename) and then
/// swap the snapshot (write-through). Blobs staged or streamed by operations in progress are
/// pinned ([`Pins`]) so gc leaves them.
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

/// Opens `rel` inside `dir` (an unpacked archive or layout), refusing `..`, absolute paths and
/// symlinks that lead outside `dir`.
fn open_in(dir: &Path, rel: &str) -> Result<(PathBuf, File), ImageError> {
    let p = Path::new(rel);
    if rel.is_empty()
        || p.components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(ImageError::InvalidArchive(format!(
            "invalid path {rel:?} in archive"
        )));
    }
    let full = dir.join(p);
    let canon_dir = dir
        .canonicalize()
        .map_err(io_err(format!("open {}", dir.display())))?;
    let canon = full
        .canonicalize()
        .map_err(|_| ImageError::InvalidArchive(format!("{rel} is missing from the archive")))?;
    if !canon.starts_with(&canon_dir) {
        return Err(ImageError::InvalidArchive(format!(
            "{rel} points outside the archive"
        )));
    }
    let f = File::open(&canon).map_err(io_err(format!("open {rel}")))?;
    Ok((canon, f))
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

/// How long an unused partial layer download is kept for a resume before garbage collection
/// removes it.
const PARTIAL_EXPIRY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

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

    // ---------------------------------------------------------------- load

    /// Detects and loads an OCI image layout directory, an OCI layout tar archive, or a
    /// `docker save` archive (tar, or gzip/zstd-compressed tar). Every reference it holds is
    /// tagged (moving the tag if it pointed elsewhere). From an image index / manifest list only
    /// the manifest for `platform` (default [`Platform::host`]) is stored.
    ///
    /// Blobs are verified (digest and size) while copied; layer diff IDs are checked against the
    /// config; `refs.json` is written last. On any error the store is left as it was.
    /// Errors: [`ImageError::UnknownFormat`] (missing file, not an archive),
    /// [`ImageError::InvalidArchive`] (truncated, missing blob), [`ImageError::Json`],
    /// [`ImageError::DigestMismatch`], [`ImageError::SizeMismatch`],
    /// [`ImageError::UnsupportedMediaType`], [`ImageError::PlatformNotFound`].
    pub fn load_path(
        &self,
        path: &Path,
        platform: Option<&Platform>,
    ) -> Result<Vec<LoadedImage>, ImageError> {
        self.load_path_inner(path, platform, false)
    }

    /// Like [`ImageStore::load_path`], but an image index is kept whole: the index, and every
    /// platform's manifest, config and layer blobs (digests and sizes verified; only the host's
    /// layers are checked against their diff IDs and can be unpacked). The reference names the
    /// host's image for running and the index for `push`. Errors: as `load_path`;
    /// [`ImageError::PlatformNotFound`] when an index has no entry for the host.
    pub fn load_path_all_platforms(&self, path: &Path) -> Result<Vec<LoadedImage>, ImageError> {
        self.load_path_inner(path, None, true)
    }

    /// A load copies and verifies blobs without any store lock (they are pinned); only its
    /// commit takes the writers' lock.
    fn load_path_inner(
        &self,
        path: &Path,
        platform: Option<&Platform>,
        all_platforms: bool,
    ) -> Result<Vec<LoadedImage>, ImageError> {
        let md = fs::metadata(path).map_err(|e| ImageError::UnknownFormat {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if md.is_dir() {
            return self.load_dir(path, platform, all_platforms);
        }
        let work = self.tmp().join(format!("load-{}", random_suffix()));
        fs::create_dir(&work).map_err(io_err("create load dir"))?;
        let result = (|| {
            let f = File::open(path).map_err(|e| ImageError::UnknownFormat {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            archive::extract(f, &work, path)?;
            self.load_dir(&work, platform, all_platforms)
        })();
        let _ = fs::remove_dir_all(&work);
        result
    }

    /// Like [`ImageStore::load_path`] for a stream (the body of `POST /images/load`): spooled to
    /// `tmp/` first.
    pub fn load_reader(
        &self,
        reader: &mut dyn Read,
        platform: Option<&Platform>,
    ) -> Result<Vec<LoadedImage>, ImageError> {
        let mut tmp =
            tempfile::NamedTempFile::new_in(self.tmp()).map_err(io_err("create spool file"))?;
        io::copy(reader, &mut tmp).map_err(io_err("spool image archive"))?;
        tmp.flush().map_err(io_err("spool image archive"))?;
        self.load_path_inner(tmp.path(), platform, false)
    }

    fn load_dir(
        &self,
        dir: &Path,
        platform: Option<&Platform>,
        all_platforms: bool,
    ) -> Result<Vec<LoadedImage>, ImageError> {
        let mut txn = Txn::default();
        txn.all_platforms = all_platforms;
        match self
            .stage_dir(dir, platform, &mut txn)
            .and_then(|staged| self.commit(staged))
        {
            Ok(v) => Ok(v),
            Err(e) => {
                txn.rollback();
                Err(e)
            }
        }
    }

    fn stage_dir(
        &self,
        dir: &Path,
        platform: Option<&Platform>,
        txn: &mut Txn,
    ) -> Result<Vec<Staged>, ImageError> {
        let has_index = dir.join("index.json").is_file();
        let has_manifest = dir.join("manifest.json").is_file();
        if has_index {
            let (_, mut f) = open_in(dir, "index.json")?;
            let mut data = Vec::new();
            f.read_to_end(&mut data)
                .map_err(io_err("read index.json"))?;
            let index: Index = parse_json("index.json", &data)?;
            if !index.manifests.is_empty() || !has_manifest {
                return self.stage_oci(dir, &index, platform, txn);
            }
        }
        if has_manifest {
            return self.stage_docker(dir, txn);
        }
        Err(ImageError::UnknownFormat {
            path: dir.to_path_buf(),
            reason: "neither an OCI layout (index.json) nor a docker save archive (manifest.json)"
                .into(),
        })
    }

    fn copy_layout_blob(
        &self,
        dir: &Path,
        d: &Descriptor,
        what: &str,
        txn: &mut Txn,
    ) -> Result<(), ImageError> {
        let hex = digest_hex(&d.digest)?;
        let (_, mut f) = open_in(dir, &format!("blobs/sha256/{hex}")).map_err(|_| {
            ImageError::InvalidArchive(format!("{what} blob {} is missing", d.digest))
        })?;
        self.put_blob(
            &mut f,
            Some(&d.digest),
            Some(d.size),
            &format!("{what} {}", d.digest),
            txn,
        )?;
        Ok(())
    }

    fn stage_oci(
        &self,
        dir: &Path,
        index: &Index,
        platform: Option<&Platform>,
        txn: &mut Txn,
    ) -> Result<Vec<Staged>, ImageError> {
        let mut out = Vec::new();
        for desc in &index.manifests {
            let ann = desc.annotations.clone().unwrap_or_default();
            let name = ann
                .get("io.containerd.image.name")
                .or_else(|| ann.get("org.opencontainers.image.ref.name"));
            let refs = match name {
                Some(n) => vec![Reference::parse(n)?],
                None => Vec::new(),
            };
            let label = name.cloned().unwrap_or_else(|| desc.digest.clone());
            let mut staged = self.stage_manifest_desc(dir, desc, platform, &label, txn)?;
            staged.refs = refs;
            out.push(staged);
        }
        Ok(out)
    }

    /// Stages the manifest (or, for an index, the platform's manifest) that `desc` points to.
    fn stage_manifest_desc(
        &self,
        dir: &Path,
        desc: &Descriptor,
        platform: Option<&Platform>,
        label: &str,
        txn: &mut Txn,
    ) -> Result<Staged, ImageError> {
        let hex = digest_hex(&desc.digest)?;
        let (_, mut f) = open_in(dir, &format!("blobs/sha256/{hex}")).map_err(|_| {
            ImageError::InvalidArchive(format!("manifest blob {} is missing", desc.digest))
        })?;
        let mut data = Vec::new();
        f.read_to_end(&mut data)
            .map_err(io_err(format!("read blob {}", desc.digest)))?;
        let actual = digest::sha256_digest(&data);
        if actual != desc.digest {
            return Err(ImageError::DigestMismatch {
                what: format!("manifest {}", desc.digest),
                expected: desc.digest.clone(),
                actual,
            });
        }
        if data.len() as u64 != desc.size {
            return Err(ImageError::SizeMismatch {
                what: format!("manifest {}", desc.digest),
                expected: desc.size,
                actual: data.len() as u64,
            });
        }
        let value: serde_json::Value = parse_json(&format!("manifest {}", desc.digest), &data)?;
        let mt = value
            .get("mediaType")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| desc.media_type.clone());
        let is_index = match mt.as_str() {
            digest::MT_OCI_INDEX | digest::MT_DOCKER_LIST => true,
            digest::MT_OCI_MANIFEST | digest::MT_DOCKER_MANIFEST => false,
            "" => value.get("manifests").is_some(),
            other => {
                return Err(ImageError::UnsupportedMediaType(format!(
                    "{other} (manifest {})",
                    desc.digest
                )))
            }
        };
        if is_index {
            let index: Index = parse_json(&format!("index {}", desc.digest), &data)?;
            if txn.all_platforms {
                return self.stage_index(dir, desc, &data, &index, label, txn);
            }
            let want = platform.cloned().unwrap_or_else(Platform::host);
            let pick = index.manifests.iter().find(|m| {
                m.platform.as_ref().is_some_and(|p| {
                    want.matches(&Platform::new(&p.os, &p.architecture, p.variant.as_deref()))
                })
            });
            let Some(pick) = pick else {
                let available: Vec<String> = index
                    .manifests
                    .iter()
                    .filter_map(|m| m.platform.as_ref())
                    .map(|p| {
                        Platform::new(&p.os, &p.architecture, p.variant.as_deref()).to_string()
                    })
                    .collect();
                return Err(ImageError::PlatformNotFound {
                    reference: label.to_string(),
                    wanted: want.to_string(),
                    available: available.join(", "),
                });
            };
            return self.stage_manifest_desc(dir, pick, platform, label, txn);
        }
        let manifest: Manifest = parse_json(&format!("manifest {}", desc.digest), &data)?;
        // Config.
        self.copy_layout_blob(dir, &manifest.config, "config", txn)?;
        let config_data = self.read_blob(&manifest.config.digest)?;
        let config: ImageConfigFile =
            parse_json(&format!("config {}", manifest.config.digest), &config_data)?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::InvalidArchive(format!(
                "manifest {} has {} layers but its config lists {} diff_ids",
                desc.digest,
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let mut layer_sizes = Vec::new();
        for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            if !known_layer_media_type(&layer.media_type) {
                return Err(ImageError::UnsupportedMediaType(format!(
                    "{} (layer {})",
                    layer.media_type, layer.digest
                )));
            }
            self.copy_layout_blob(dir, layer, "layer", txn)?;
            let (actual, size) = match txn.diffs.get(&layer.digest) {
                Some(v) => v.clone(),
                None => {
                    let v = self.layer_diff(&layer.digest)?;
                    txn.diffs.insert(layer.digest.clone(), v.clone());
                    v
                }
            };
            if &actual != diff_id {
                return Err(ImageError::DigestMismatch {
                    what: format!("uncompressed layer {}", layer.digest),
                    expected: diff_id.clone(),
                    actual,
                });
            }
            layer_sizes.push(size);
        }
        self.put_bytes(&data, "manifest", txn)?;
        Ok(Staged {
            id: manifest.config.digest.clone(),
            manifest: desc.digest.clone(),
            layer_sizes,
            refs: Vec::new(),
            index: None,
        })
    }

    /// Stages an image index with all its platforms (see [`ImageStore::load_path_all_platforms`]):
    /// the host's entry as an image, the other entries' blobs as content of the index.
    fn stage_index(
        &self,
        dir: &Path,
        desc: &Descriptor,
        data: &[u8],
        index: &Index,
        label: &str,
        txn: &mut Txn,
    ) -> Result<Staged, ImageError> {
        let host = Platform::host();
        let mut primary = None;
        for m in &index.manifests {
            let is_host = m.platform.as_ref().is_some_and(|p| {
                host.matches(&Platform::new(&p.os, &p.architecture, p.variant.as_deref()))
            });
            if is_host && primary.is_none() {
                primary = Some(self.stage_manifest_desc(dir, m, None, label, txn)?);
            } else {
                self.copy_layout_blob(dir, m, "manifest", txn)?;
                let child: Manifest = parse_json(
                    &format!("manifest {}", m.digest),
                    &self.read_blob(&m.digest)?,
                )?;
                self.copy_layout_blob(dir, &child.config, "config", txn)?;
                for l in &child.layers {
                    self.copy_layout_blob(dir, l, "layer", txn)?;
                }
            }
        }
        let Some(mut staged) = primary else {
            return Err(ImageError::PlatformNotFound {
                reference: label.to_string(),
                wanted: host.to_string(),
                available: index
                    .manifests
                    .iter()
                    .filter_map(|m| m.platform.as_ref())
                    .map(|p| {
                        Platform::new(&p.os, &p.architecture, p.variant.as_deref()).to_string()
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        self.put_bytes(data, "index", txn)?;
        staged.index = Some(desc.digest.clone());
        Ok(staged)
    }

    fn stage_docker(&self, dir: &Path, txn: &mut Txn) -> Result<Vec<Staged>, ImageError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            layers: Vec<String>,
        }
        let (_, mut f) = open_in(dir, "manifest.json")?;
        let mut data = Vec::new();
        f.read_to_end(&mut data)
            .map_err(io_err("read manifest.json"))?;
        let entries: Vec<Entry> = parse_json("manifest.json", &data)?;
        let mut out = Vec::new();
        for e in entries {
            let refs = e
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|t| Reference::parse(t))
                .collect::<Result<Vec<_>, _>>()?;
            let (_, mut cf) = open_in(dir, &e.config)?;
            let (config_digest, config_size) =
                self.put_blob(&mut cf, None, None, &format!("config {}", e.config), txn)?;
            // `<hex>.json` or `blobs/sha256/<hex>`: the name is the digest.
            let stem = Path::new(&e.config)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("");
            let stem = stem.strip_suffix(".json").unwrap_or(stem);
            if is_hex64(stem) && config_digest != format!("sha256:{stem}") {
                return Err(ImageError::DigestMismatch {
                    what: format!("config {}", e.config),
                    expected: format!("sha256:{stem}"),
                    actual: config_digest,
                });
            }
            let config_data = self.read_blob(&config_digest)?;
            let config: ImageConfigFile = parse_json(&e.config, &config_data)?;
            if config.rootfs.diff_ids.len() != e.layers.len() {
                return Err(ImageError::InvalidArchive(format!(
                    "manifest.json lists {} layers for {} but its config has {} diff_ids",
                    e.layers.len(),
                    e.config,
                    config.rootfs.diff_ids.len()
                )));
            }
            let mut layers = Vec::new();
            let mut layer_sizes = Vec::new();
            for (path, diff_id) in e.layers.iter().zip(&config.rootfs.diff_ids) {
                let (_, lf) = open_in(dir, path)?;
                let (_, mut r) = decompressed(lf).map_err(io_err(format!("read {path}")))?;
                // Stored uncompressed: the blob digest is the diff ID.
                let (d, size) =
                    self.put_blob(&mut r, Some(diff_id), None, &format!("layer {path}"), txn)?;
                layers.push(Descriptor {
                    media_type: digest::MT_DOCKER_LAYER.into(),
                    digest: d,
                    size,
                    ..Default::default()
                });
                layer_sizes.push(size);
            }
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(digest::MT_DOCKER_MANIFEST.into()),
                config: Descriptor {
                    media_type: digest::MT_DOCKER_CONFIG.into(),
                    digest: config_digest.clone(),
                    size: config_size,
                    ..Default::default()
                },
                layers,
            };
            let mdata = serde_json::to_vec(&manifest).map_err(|source| ImageError::Json {
                what: "manifest".into(),
                source,
            })?;
            let mdigest = self.put_bytes(&mdata, "manifest", txn)?;
            out.push(Staged {
                id: config_digest,
                manifest: mdigest,
                layer_sizes,
                refs,
                index: None,
            });
        }
        Ok(out)
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

    // ---------------------------------------------------------------- import

    /// `docker import`: a rootfs tar (plain, gzip or zstd) becomes a one-layer image, stored
    /// uncompressed. `changes` are Dockerfile lines (`CMD`, `ENTRYPOINT`, `ENV`, `WORKDIR`, `USER`,
    /// `EXPOSE`, `LABEL`, `VOLUME`, `STOPSIGNAL`); `message` becomes the history comment (default
    /// `Imported from -`). The config gets the host's os/architecture and `created` = now.
    /// Returns the image ID. Errors: [`ImageError::InvalidReference`], [`ImageError::InvalidChange`],
    /// [`ImageError::InvalidArchive`].
    pub fn import(
        &self,
        rootfs: &mut dyn Read,
        reference: Option<&str>,
        changes: &[String],
        message: Option<&str>,
    ) -> Result<String, ImageError> {
        let reference = reference.map(Reference::parse).transpose()?;
        let mut cfg = crate::ContainerConfig::default();
        crate::changes::apply_changes(&mut cfg, changes)?;
        let mut txn = Txn::default();
        let result = (|| {
            let (_, mut r) = decompressed(rootfs).map_err(io_err("read import stream"))?;
            let (diff_id, size) = self.put_blob(&mut r, None, None, "imported layer", &mut txn)?;
            // Must be a tar: check it can be walked.
            {
                let f =
                    File::open(self.blob_path(&diff_id)?).map_err(io_err("open imported layer"))?;
                let mut a = tar::Archive::new(f);
                for e in a
                    .entries()
                    .map_err(|e| ImageError::InvalidArchive(format!("import: {e}")))?
                {
                    e.map_err(|e| {
                        ImageError::InvalidArchive(format!("import: not a tar archive: {e}"))
                    })?;
                }
            }
            let host = Platform::host();
            let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            let config = ImageConfigFile {
                created: Some(created.clone()),
                architecture: host.architecture.clone(),
                os: host.os.clone(),
                variant: host.variant.clone(),
                config: cfg,
                rootfs: crate::RootFs {
                    typ: "layers".into(),
                    diff_ids: vec![diff_id.clone()],
                },
                history: vec![crate::HistoryEntry {
                    created: Some(created),
                    created_by: None,
                    comment: Some(
                        message
                            .filter(|m| !m.is_empty())
                            .unwrap_or("Imported from -")
                            .to_string(),
                    ),
                    ..Default::default()
                }],
                ..Default::default()
            };
            let cdata = serde_json::to_vec(&config).map_err(|source| ImageError::Json {
                what: "config".into(),
                source,
            })?;
            let cdigest = self.put_bytes(&cdata, "config", &mut txn)?;
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(digest::MT_OCI_MANIFEST.into()),
                config: Descriptor {
                    media_type: digest::MT_OCI_CONFIG.into(),
                    digest: cdigest.clone(),
                    size: cdata.len() as u64,
                    ..Default::default()
                },
                layers: vec![Descriptor {
                    media_type: digest::MT_OCI_LAYER.into(),
                    digest: diff_id,
                    size,
                    ..Default::default()
                }],
            };
            let mdata = serde_json::to_vec(&manifest).map_err(|source| ImageError::Json {
                what: "manifest".into(),
                source,
            })?;
            let mdigest = self.put_bytes(&mdata, "manifest", &mut txn)?;
            self.commit(vec![Staged {
                id: cdigest.clone(),
                manifest: mdigest,
                layer_sizes: vec![size],
                refs: reference.into_iter().collect(),
                index: None,
            }])?;
            Ok(cdigest)
        })();
        if result.is_err() {
            txn.rollback();
        }
        result
    }

    // ---------------------------------------------------------------- lookup

    /// Resolves a name or ID to (image id, manifest digest, the reference if it was one).
    pub(crate) fn resolve(
        &self,
        state: &State,
        name_or_id: &str,
    ) -> Result<(String, String, Option<Reference>), ImageError> {
        let by_id = |id: &str| -> Option<(String, String, Option<Reference>)> {
            state.images.get(id).map(|r| {
                (
                    id.to_string(),
                    r.manifests.first().cloned().unwrap_or_default(),
                    None,
                )
            })
        };
        if let Some(hex) = name_or_id.strip_prefix("sha256:") {
            if valid_digest(name_or_id) {
                return by_id(name_or_id)
                    .ok_or_else(|| ImageError::NotFound(name_or_id.to_string()));
            }
            if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return self.resolve_prefix(state, hex, name_or_id);
            }
            return Err(ImageError::NotFound(name_or_id.to_string()));
        }
        if is_hex64(name_or_id) {
            return by_id(&format!("sha256:{name_or_id}"))
                .ok_or_else(|| ImageError::NotFound(name_or_id.to_string()));
        }
        match Reference::parse(name_or_id) {
            Ok(r) => {
                if let Some(d) = r.digest() {
                    let name = r.name();
                    // name@digest: a manifest digest (or the image ID) of an image of that repo.
                    for (id, rec) in &state.images {
                        let of_repo = state.refs.iter().any(|(k, v)| {
                            &v.image == id && Reference::parse(k).is_ok_and(|x| x.name() == name)
                        });
                        if (rec.manifests.iter().any(|m| m == d) || id == d) && of_repo {
                            return Ok((id.clone(), d.to_string(), Some(r)));
                        }
                        if rec.indexes.iter().any(|m| m == d) && of_repo {
                            // name@index: the host's entry.
                            let m = rec.manifests.first().cloned().unwrap_or_default();
                            return Ok((id.clone(), m, Some(r)));
                        }
                    }
                } else if let Some(e) = state.refs.get(&r.full()) {
                    return Ok((e.image.clone(), e.manifest.clone(), Some(r)));
                }
                if name_or_id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return self.resolve_prefix(state, name_or_id, name_or_id);
                }
                Err(ImageError::NotFound(name_or_id.to_string()))
            }
            Err(e) => {
                if !name_or_id.is_empty() && name_or_id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return self.resolve_prefix(state, name_or_id, name_or_id);
                }
                Err(e)
            }
        }
    }

    fn resolve_prefix(
        &self,
        state: &State,
        hex: &str,
        orig: &str,
    ) -> Result<(String, String, Option<Reference>), ImageError> {
        let hex = hex.to_ascii_lowercase();
        let matches: Vec<&String> = state
            .images
            .keys()
            .filter(|id| id[7..].starts_with(&hex))
            .collect();
        match matches.as_slice() {
            [one] => Ok((
                (*one).clone(),
                state.images[*one]
                    .manifests
                    .first()
                    .cloned()
                    .unwrap_or_default(),
                None,
            )),
            [] => Err(ImageError::NotFound(orig.to_string())),
            _ => Err(ImageError::AmbiguousId(orig.to_string())),
        }
    }

    pub(crate) fn image_from(&self, state: &State, id: &str) -> Result<Image, ImageError> {
        let rec = state
            .images
            .get(id)
            .ok_or_else(|| ImageError::NotFound(id.to_string()))?;
        let config = (*self.config(id)?).clone();
        let mut repo_tags = Vec::new();
        let mut repo_digests = BTreeSet::new();
        for (k, v) in &state.refs {
            if v.image == id {
                if let Ok(r) = Reference::parse(k) {
                    // `name@digest` refs (pulls by digest) are repo digests, not tags.
                    if r.digest().is_none() {
                        repo_tags.push(r.familiar());
                    }
                    repo_digests.insert(format!("{}@{}", r.familiar_name(), v.manifest));
                }
            }
        }
        Ok(Image {
            id: id.to_string(),
            repo_tags,
            repo_digests: repo_digests.into_iter().collect(),
            manifest_digest: rec.manifests.first().cloned().unwrap_or_default(),
            config,
            size: rec.layer_sizes.iter().sum(),
            added: rec.added,
        })
    }

    /// All images (tagged and dangling), newest first.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        let state = self.snapshot();
        let mut v = state
            .images
            .keys()
            .map(|id| self.image_from(&state, id))
            .collect::<Result<Vec<_>, _>>()?;
        v.sort_by_key(|i| std::cmp::Reverse(i.created_unix()));
        Ok(v)
    }

    /// Looks an image up by familiar or full reference (`busybox:1.35`,
    /// `docker.io/library/busybox:1.35`, `busybox` = `busybox:latest`), `name@sha256:<manifest>`,
    /// full ID `sha256:<hex>`, bare hex ID, or unique hex prefix of the ID.
    /// Errors: [`ImageError::NotFound`], [`ImageError::AmbiguousId`], [`ImageError::InvalidReference`].
    pub fn get(&self, name_or_id: &str) -> Result<Image, ImageError> {
        let state = self.snapshot();
        let (id, manifest, _) = self.resolve(&state, name_or_id)?;
        let mut img = self.image_from(&state, &id)?;
        if !manifest.is_empty() {
            img.manifest_digest = manifest;
        }
        Ok(img)
    }

    /// `docker tag`: points `target` (normalised; `latest` if no tag) at the image `source`
    /// resolves to, moving the tag if it pointed elsewhere. Errors: [`ImageError::NotFound`],
    /// [`ImageError::InvalidReference`] (also for a target with a digest).
    pub fn tag(&self, source: &str, target: &str) -> Result<(), ImageError> {
        let t = Reference::parse(target)?;
        if t.digest().is_some() {
            return Err(ImageError::InvalidReference {
                reference: target.into(),
                reason: "cannot tag with a digest".into(),
            });
        }
        let _g = self.guard();
        let mut state = (*self.snapshot()).clone();
        let (id, manifest, _) = self.resolve(&state, source)?;
        let index = index_of(&state, source);
        state.refs.insert(
            t.full(),
            RefEntry {
                image: id,
                manifest,
                index,
            },
        );
        self.write_state(&state)
    }

    // ---------------------------------------------------------------- remove / prune / gc

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

    /// The uncompressed size of each of an image's layers in bytes, bottom first (recorded when
    /// the image was stored; no layer is read). Errors: [`ImageError::NotFound`].
    pub fn layer_sizes(&self, image_id: &str) -> Result<Vec<u64>, ImageError> {
        let state = self.snapshot();
        state
            .images
            .get(image_id)
            .map(|r| r.layer_sizes.clone())
            .ok_or_else(|| ImageError::NotFound(image_id.to_string()))
    }

    /// The uncompressed size of the layer with diff ID `diff_id`, as recorded for some stored
    /// image that has it (no layer is read); `None` when no image record has that layer.
    pub fn recorded_layer_size(&self, diff_id: &str) -> Option<u64> {
        let state = self.snapshot();
        state.images.iter().find_map(|(id, rec)| {
            let cfg = self.config(id).ok()?;
            let i = cfg.rootfs.diff_ids.iter().position(|d| d == diff_id)?;
            rec.layer_sizes.get(i).copied()
        })
    }

    // ---------------------------------------------------------------- history

    /// `docker history`: newest first, one item per config history entry (`empty_layer` entries
    /// have size 0; others take the uncompressed size of the next layer). The top item's id is the
    /// image ID, the others `<missing>`.
    pub fn history(&self, name_or_id: &str) -> Result<Vec<HistoryItem>, ImageError> {
        let img = self.get(name_or_id)?;
        let rec_sizes = {
            let state = self.snapshot();
            state
                .images
                .get(&img.id)
                .map(|r| r.layer_sizes.clone())
                .unwrap_or_default()
        };
        let mut items = Vec::new();
        let mut layer = 0usize;
        if img.config.history.is_empty() {
            for s in &rec_sizes {
                items.push(HistoryItem {
                    id: String::new(),
                    created: img.created_unix(),
                    created_by: String::new(),
                    tags: Vec::new(),
                    size: *s as i64,
                    comment: String::new(),
                });
            }
        }
        for h in &img.config.history {
            let size = if h.empty_layer.unwrap_or(false) {
                0
            } else {
                let s = rec_sizes.get(layer).copied().unwrap_or(0);
                layer += 1;
                s
            };
            items.push(HistoryItem {
                id: String::new(),
                created: parse_time(h.created.as_deref()).unwrap_or(0),
                created_by: h.created_by.clone().unwrap_or_default(),
                tags: Vec::new(),
                size: size as i64,
                comment: h.comment.clone().unwrap_or_default(),
            });
        }
        items.reverse();
        for (i, it) in items.iter_mut().enumerate() {
            if i == 0 {
                it.id = img.id.clone();
                it.tags = img.repo_tags.clone();
            } else {
                it.id = "<missing>".into();
            }
        }
        Ok(items)
    }

    // ---------------------------------------------------------------- snapshots

    /// The unpacked snapshot directories of an image's layers, BOTTOM FIRST (reverse them for an
    /// overlay `lowerdir`). Missing snapshots are unpacked once per chain ID into `tmp/`, with the
    /// uncompressed digest checked against the config's diff ID, then renamed into
    /// `snapshots/<chain-id-hex>`. Errors: [`ImageError::NotFound`], [`ImageError::HostileLayer`],
    /// [`ImageError::DigestMismatch`], [`ImageError::InvalidArchive`].
    pub fn layer_dirs(&self, image_id: &str) -> Result<Vec<PathBuf>, ImageError> {
        // Resolve on a snapshot; unpack under the unpack lock only, so that list/get are
        // not blocked by a long unpack, and an image already unpacked takes no lock at all.
        let (config, man) = {
            let state = self.snapshot();
            let (id, manifest, _) = self.resolve(&state, image_id)?;
            let config = self.config(&id)?;
            let man: Manifest =
                parse_json(&format!("manifest {manifest}"), &self.read_blob(&manifest)?)?;
            (config, man)
        };
        if man.layers.len() != config.rootfs.diff_ids.len() {
            return Err(ImageError::InvalidArchive(format!(
                "image {image_id}: manifest and config disagree on the number of layers"
            )));
        }
        let chains = chain_ids(&config.rootfs.diff_ids);
        let ready: Option<Vec<PathBuf>> = chains
            .iter()
            .map(|c| self.snapshot_path(c).ok().filter(|p| p.is_dir()))
            .collect();
        if let Some(dirs) = ready {
            return Ok(dirs);
        }
        let _u = self.unpack_guard();
        let mut out = Vec::new();
        for ((chain, diff_id), layer) in chains.iter().zip(&config.rootfs.diff_ids).zip(&man.layers)
        {
            let dest = self.snapshot_path(chain)?;
            if !dest.is_dir() {
                self.unpack(&layer.digest, diff_id, &dest)?;
            }
            out.push(dest);
        }
        Ok(out)
    }

    /// Unpacks a layer blob into a new temp dir, checks its diff ID, renames it to `dest`.
    fn unpack(&self, blob: &str, diff_id: &str, dest: &Path) -> Result<(), ImageError> {
        let work = self.tmp().join(format!("unpack-{}", random_suffix()));
        fs::create_dir(&work).map_err(io_err("create unpack dir"))?;
        let result = (|| {
            let f =
                File::open(self.blob_path(blob)?).map_err(io_err(format!("open blob {blob}")))?;
            let (_, r) =
                decompressed(io::BufReader::new(f)).map_err(io_err(format!("read blob {blob}")))?;
            let mut hr = HashingReader::new(r);
            Applier::new(&work, blob)?.apply(&mut hr)?;
            io::copy(&mut hr, &mut io::sink())
                .map_err(|e| ImageError::InvalidArchive(format!("layer {blob}: {e}")))?;
            let actual = hr.digest();
            if actual != diff_id {
                return Err(ImageError::DigestMismatch {
                    what: format!("uncompressed layer {blob}"),
                    expected: diff_id.to_string(),
                    actual,
                });
            }
            fs::rename(&work, dest)
                .map_err(io_err(format!("rename snapshot {}", dest.display())))?;
            fsync_dir(&self.root.join("snapshots"))
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&work);
        }
        result
    }

    // ---------------------------------------------------------------- save

    /// `docker save`: writes the images `names` (references or IDs) as a tar archive to `out`.
    /// [`SaveFormat::Docker`] writes `manifest.json` (`[{"Config":"<hex>.json","RepoTags":[..],
    /// "Layers":["<chain-hex>/layer.tar",..]}]`), `repositories` and uncompressed layers;
    /// [`SaveFormat::Oci`] writes an OCI layout whose `index.json` entries carry
    /// `org.opencontainers.image.ref.name` (the tag) and `io.containerd.image.name` (full name).
    /// Names given by ID are saved without tags. Errors: [`ImageError::NotFound`], I/O.
    pub fn save(
        &self,
        names: &[String],
        format: SaveFormat,
        out: &mut dyn Write,
    ) -> Result<(), ImageError> {
        // Resolve and pin what the archive needs under the writers' lock (so no gc runs in
        // between), then stream without any lock: a slow reader delays nobody.
        let mut pins = Txn::default();
        let (state, items) = {
            let _g = self.guard();
            let state = self.snapshot();
            let mut items: Vec<(String, String, Option<Reference>)> = Vec::new();
            for n in names {
                items.push(self.resolve(&state, n)?);
            }
            for (id, manifest, _) in &items {
                self.pin(id, &mut pins);
                self.pin(manifest, &mut pins);
                let man: Manifest =
                    parse_json(&format!("manifest {manifest}"), &self.read_blob(manifest)?)?;
                for l in &man.layers {
                    self.pin(&l.digest, &mut pins);
                }
            }
            (state, items)
        };
        let mut b = tar::Builder::new(out);
        let mut written: HashSet<String> = HashSet::new();
        let w = |e: io::Error| ImageError::io("write archive", e);
        let mtime = 0;
        let add_bytes = |b: &mut tar::Builder<&mut dyn Write>,
                         path: &str,
                         data: &[u8]|
         -> Result<(), ImageError> {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(mtime);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, path, data).map_err(w)
        };
        match format {
            SaveFormat::Oci => {
                add_bytes(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
                let mut index = Index {
                    schema_version: 2,
                    media_type: Some(digest::MT_OCI_INDEX.into()),
                    manifests: Vec::new(),
                };
                for (_id, manifest, r) in &items {
                    let mdata = self.read_blob(manifest)?;
                    let man: Manifest = parse_json(&format!("manifest {manifest}"), &mdata)?;
                    for d in std::iter::once(&man.config).chain(&man.layers) {
                        if written.insert(d.digest.clone()) {
                            let p = self.blob_path(&d.digest)?;
                            let mut f = File::open(&p)
                                .map_err(io_err(format!("open blob {}", d.digest)))?;
                            let mut h = tar::Header::new_ustar();
                            h.set_size(f.metadata().map_err(w)?.len());
                            h.set_mode(0o644);
                            h.set_mtime(0);
                            b.append_data(
                                &mut h,
                                format!("blobs/sha256/{}", digest_hex(&d.digest)?),
                                &mut f,
                            )
                            .map_err(w)?;
                        }
                    }
                    if written.insert(manifest.clone()) {
                        add_bytes(
                            &mut b,
                            &format!("blobs/sha256/{}", digest_hex(manifest)?),
                            &mdata,
                        )?;
                    }
                    let mut ann = BTreeMap::new();
                    if let Some(r) = r.as_ref().filter(|r| r.tag().is_some()) {
                        ann.insert("io.containerd.image.name".to_string(), r.full());
                        ann.insert(
                            "org.opencontainers.image.ref.name".to_string(),
                            r.tag().unwrap_or_default().to_string(),
                        );
                    }
                    index.manifests.push(Descriptor {
                        media_type: man
                            .media_type
                            .clone()
                            .unwrap_or_else(|| digest::MT_OCI_MANIFEST.into()),
                        digest: manifest.clone(),
                        size: mdata.len() as u64,
                        platform: None,
                        annotations: if ann.is_empty() { None } else { Some(ann) },
                    });
                }
                let idata = serde_json::to_vec(&index).map_err(|source| ImageError::Json {
                    what: "index.json".into(),
                    source,
                })?;
                add_bytes(&mut b, "index.json", &idata)?;
            }
            SaveFormat::Docker => {
                let mut manifest_json: Vec<serde_json::Value> = Vec::new();
                let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
                for (id, manifest, r) in &items {
                    let rec = state
                        .images
                        .get(id)
                        .ok_or_else(|| ImageError::NotFound(id.clone()))?;
                    let cdata = self.read_blob(id)?;
                    let config: ImageConfigFile = parse_json(&format!("config {id}"), &cdata)?;
                    let man: Manifest =
                        parse_json(&format!("manifest {manifest}"), &self.read_blob(manifest)?)?;
                    let chex = digest_hex(id)?;
                    let config_name = format!("{chex}.json");
                    if written.insert(config_name.clone()) {
                        add_bytes(&mut b, &config_name, &cdata)?;
                    }
                    let chains = chain_ids(&config.rootfs.diff_ids);
                    let mut layers = Vec::new();
                    for (i, (chain, layer)) in chains.iter().zip(&man.layers).enumerate() {
                        let dir = digest_hex(chain)?.to_string();
                        let path = format!("{dir}/layer.tar");
                        if written.insert(path.clone()) {
                            add_bytes(&mut b, &format!("{dir}/VERSION"), b"1.0")?;
                            let mut json = serde_json::json!({ "id": dir });
                            if i > 0 {
                                json["parent"] = serde_json::Value::String(
                                    digest_hex(&chains[i - 1])?.to_string(),
                                );
                            }
                            add_bytes(&mut b, &format!("{dir}/json"), json.to_string().as_bytes())?;
                            let f = File::open(self.blob_path(&layer.digest)?)
                                .map_err(io_err(format!("open blob {}", layer.digest)))?;
                            let (_, r) = decompressed(io::BufReader::new(f)).map_err(w)?;
                            let mut h = tar::Header::new_ustar();
                            h.set_size(rec.layer_sizes[i]);
                            h.set_mode(0o644);
                            h.set_mtime(0);
                            b.append_data(&mut h, &path, r).map_err(w)?;
                        }
                        layers.push(path);
                    }
                    let mut repo_tags = Vec::new();
                    if let Some(r) = r
                        .as_ref()
                        .filter(|r| r.tag().is_some() && r.digest().is_none())
                    {
                        repo_tags.push(r.familiar());
                        if let Some(top) = chains.last() {
                            repositories.entry(r.familiar_name()).or_default().insert(
                                r.tag().unwrap_or("latest").to_string(),
                                digest_hex(top)?.to_string(),
                            );
                        }
                    }
                    // One entry per image; several names of one image share it (as Docker does).
                    let existing = manifest_json
                        .iter_mut()
                        .find(|m| m["Config"] == config_name.as_str());
                    match existing {
                        Some(m) => {
                            if let Some(tags) = m["RepoTags"].as_array_mut() {
                                for t in repo_tags {
                                    if !tags.iter().any(|x| x == t.as_str()) {
                                        tags.push(t.into());
                                    }
                                }
                            }
                        }
                        None => manifest_json.push(serde_json::json!({
                            "Config": config_name,
                            "RepoTags": repo_tags,
                            "Layers": layers,
                        })),
                    }
                }
                add_bytes(
                    &mut b,
                    "manifest.json",
                    serde_json::to_string(&manifest_json)
                        .unwrap_or_default()
                        .as_bytes(),
                )?;
                add_bytes(
                    &mut b,
                    "repositories",
                    serde_json::to_string(&repositories)
                        .unwrap_or_default()
                        .as_bytes(),
                )?;
            }
        }
        b.finish().map_err(w)?;
        Ok(())
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
