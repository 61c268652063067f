//! Ingesting content pulled from a registry, and exporting content to push.
//!
//! A pull writes each layer while it streams in ([`ImageStore::begin_layer`], then
//! [`ImageStore::finish_layer`]), in three threads that overlap:
//! - the caller's thread reads the compressed stream and decompresses it;
//! - a blob writer hashes the compressed bytes and appends them to the layer's *partial file*;
//! - an unpacker hashes the uncompressed tar (diff ID) and applies it to a temp snapshot dir.
//!
//! Only when size, digest and diff ID match are the snapshot and the blob renamed into place, so
//! a wrong digest leaves nothing visible. [`ImageStore::commit_pull`] then stores config and
//! manifest and writes the reference (the commit point, as for loads). Layers whose blob is
//! already present are skipped by the caller ([`ImageStore::has_blob`]); a layer whose download
//! was cut keeps its bytes in `partial/<hex>` (locked while a pull writes it), and the next pull
//! asks the registry only for the rest (HTTP `Range`): the kept prefix is re-read from disk for
//! the digests and the unpacker, so nothing but the missing bytes crosses the network again.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

use crate::digest::{
    chain_ids, decompressed, digest_hex, hex, Descriptor, HashingReader, Manifest,
};
use crate::store::{fsync_dir, io_err, parse_json, random_suffix, Staged, Txn};
use crate::unpack::Applier;
use crate::{Image, ImageConfigFile, ImageError, ImageStore, Reference};

/// Chunk size between the pipeline's threads.
const CHUNK: usize = 256 * 1024;

/// Forwards everything read from `inner` to the blob writer.
struct Tee<'a> {
    inner: &'a mut dyn Read,
    tx: SyncSender<Vec<u8>>,
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 && self.tx.send(buf[..n].to_vec()).is_err() {
            return Err(io::Error::other("the blob writer stopped"));
        }
        Ok(n)
    }
}

/// Reads `[pos, end)` of a file with `pread` (the blob writer appends through another handle).
struct PrefixReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for PrefixReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the partial blob is shorter than expected",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Reads chunks sent by the decompressing stage.
struct ChunkReader {
    rx: Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.cur.len() {
            match self.rx.recv() {
                Ok(c) => {
                    self.cur = c;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// What [`ImageStore::ingest_layer`] learnt about a layer.
#[derive(Debug, Clone)]
pub struct IngestedLayer {
    /// sha256 of the uncompressed tar.
    pub diff_id: String,
    /// Uncompressed size in bytes.
    pub size: u64,
}

/// A layer download about to start or resume: made by [`ImageStore::begin_layer`], completed
/// by [`ImageStore::finish_layer`]. Holds the lock on the layer's partial file, so two pulls
/// never append to the same one.
pub struct PendingLayer {
    desc: Descriptor,
    diff_id: String,
    chain_id: String,
    /// The file the compressed bytes go to (locked when resumable).
    file: Flock<File>,
    path: PathBuf,
    /// Whether `path` is the layer's partial file (kept when a download is cut), rather than a
    /// private temp file (another pull holds the partial file).
    resumable: bool,
    /// Bytes of the blob already on disk, reused: the reader given to `finish_layer` must
    /// start at this offset.
    offset: u64,
}

impl PendingLayer {
    /// Bytes of the blob kept from an interrupted download; the rest must be fetched.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Discards the kept bytes: the download starts from byte 0 (e.g. the registry ignored a
    /// `Range` request and sent the whole blob).
    pub fn restart(&mut self) {
        self.offset = 0;
    }

    /// The layer's descriptor.
    pub fn descriptor(&self) -> &Descriptor {
        &self.desc
    }
}

/// Whether a failed ingest may keep its partial blob for a later resume: only a cut download
/// (fewer bytes than the descriptor's size, no mismatch found).
fn keep_partial(err: &ImageError, on_disk: u64, size: u64) -> bool {
    size != 0
        && on_disk < size
        && !matches!(
            err,
            ImageError::DigestMismatch { .. } | ImageError::SizeMismatch { .. }
        )
}

impl ImageStore {
    /// Whether blob `digest` is present.
    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).map(|p| p.is_file()).unwrap_or(false)
    }

    /// Opens blob `digest` for reading (push). Errors: [`ImageError::NotFound`].
    pub fn open_blob(&self, digest: &str) -> Result<File, ImageError> {
        File::open(self.blob_path(digest)?)
            .map_err(|_| ImageError::NotFound(format!("blob {digest}")))
    }

    /// Stores a blob (config, manifest) from bytes, verifying `digest`.
    pub fn ingest_bytes(&self, data: &[u8], digest: &str) -> Result<(), ImageError> {
        let mut txn = Txn::default();
        self.put_blob(
            &mut &data[..],
            Some(digest),
            Some(data.len() as u64),
            "blob",
            &mut txn,
        )?;
        Ok(())
    }

    /// Streams a whole (compressed or plain) layer blob from `reader` into the store: see
    /// [`ImageStore::finish_layer`] (this is `begin_layer`, `restart`, `finish_layer`).
    pub fn ingest_layer(
        &self,
        reader: &mut dyn Read,
        desc: &Descriptor,
        diff_id: &str,
        chain_id: &str,
    ) -> Result<IngestedLayer, ImageError> {
        let mut pending = self.begin_layer(desc, diff_id, chain_id)?;
        pending.restart();
        self.finish_layer(pending, reader)
    }

    /// Prepares the download of layer `desc` (diff ID `diff_id`, snapshot `chain_id`): locks
    /// the layer's partial file and reports in [`PendingLayer::offset`] how many bytes an
    /// interrupted download left there (more than `desc.size` means garbage: dropped). When
    /// another pull holds the partial file, a private temp file is used from byte 0.
    /// Errors: [`ImageError::InvalidReference`]-like digest errors, I/O.
    pub fn begin_layer(
        &self,
        desc: &Descriptor,
        diff_id: &str,
        chain_id: &str,
    ) -> Result<PendingLayer, ImageError> {
        let hexd = digest_hex(&desc.digest)?;
        self.snapshot_path(chain_id)?;
        let path = self.root().join("partial").join(hexd);
        let open = |p: &PathBuf, new: bool| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(!new)
                .create_new(new)
                .open(p)
                .map_err(io_err(format!("open {}", p.display())))
        };
        let (file, path, resumable) =
            match Flock::lock(open(&path, false)?, FlockArg::LockExclusiveNonblock) {
                Ok(f) => (f, path, true),
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    let tmp = self.tmp().join(format!("layer-{}", random_suffix()));
                    let f = Flock::lock(open(&tmp, true)?, FlockArg::LockExclusiveNonblock)
                        .map_err(|(_, e)| {
                            ImageError::io(format!("lock {}", tmp.display()), e.into())
                        })?;
                    (f, tmp, false)
                }
                Err((_, e)) => {
                    return Err(ImageError::io(format!("lock {}", path.display()), e.into()))
                }
            };
        let len = file
            .metadata()
            .map_err(io_err(format!("stat {}", path.display())))?
            .len();
        let offset = if resumable && (desc.size == 0 || len <= desc.size) {
            len
        } else {
            0
        };
        Ok(PendingLayer {
            desc: desc.clone(),
            diff_id: diff_id.to_string(),
            chain_id: chain_id.to_string(),
            file,
            path,
            resumable,
            offset,
        })
    }

    /// Completes a layer download: `reader` yields the blob from [`PendingLayer::offset`] on.
    /// Verifies size and digest against the descriptor and the uncompressed digest against the
    /// diff ID, and unpacks the layer into the snapshot for its chain ID in the same pass
    /// (unless that snapshot exists). Nothing becomes visible unless every check passes. When
    /// the download is cut (an error of `reader`, or fewer bytes than the descriptor's size),
    /// the bytes received stay in the partial file for the next attempt; on any mismatch they
    /// are dropped. Errors: [`ImageError::DigestMismatch`], [`ImageError::SizeMismatch`],
    /// [`ImageError::HostileLayer`], [`ImageError::InvalidArchive`], I/O (including errors of
    /// `reader`, e.g. a dropped connection).
    pub fn finish_layer(
        &self,
        pending: PendingLayer,
        reader: &mut dyn Read,
    ) -> Result<IngestedLayer, ImageError> {
        let PendingLayer {
            desc,
            diff_id,
            chain_id,
            file,
            path,
            resumable,
            offset,
        } = pending;
        let dest = self.snapshot_path(&chain_id)?;
        let unpack = !dest.is_dir();
        let work = self.tmp().join(format!("pull-{}", random_suffix()));
        if unpack {
            fs::create_dir(&work).map_err(io_err("create unpack dir"))?;
        }
        let result =
            self.ingest_pipeline(&file, reader, offset, &desc, &diff_id, unpack, &work, &dest);
        if unpack {
            let _ = fs::remove_dir_all(&work);
        }
        match result {
            Ok(layer) => {
                let blob = self.blob_path(&desc.digest)?;
                let r = if blob.exists() {
                    fs::remove_file(&path)
                } else {
                    fs::rename(&path, &blob)
                };
                r.map_err(io_err(format!("rename blob {}", desc.digest)))?;
                Ok(layer)
            }
            Err(e) => {
                let on_disk = file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
                if !(resumable && keep_partial(&e, on_disk, desc.size)) {
                    let _ = fs::remove_file(&path);
                } else {
                    tracing::info!(
                        layer = %desc.digest,
                        kept = on_disk,
                        "layer download cut; partial blob kept for the next pull"
                    );
                }
                Err(e)
            }
        }
    }

    /// The three-thread pass of [`ImageStore::finish_layer`]: on success the blob is complete
    /// and fsynced in `file` and the snapshot (if `unpack`) renamed to `dest`.
    #[allow(clippy::too_many_arguments)]
    fn ingest_pipeline(
        &self,
        file: &File,
        reader: &mut dyn Read,
        offset: u64,
        desc: &Descriptor,
        diff_id: &str,
        unpack: bool,
        work: &std::path::Path,
        dest: &std::path::Path,
    ) -> Result<IngestedLayer, ImageError> {
        let what = format!("layer {}", desc.digest);
        let read_err = |e: io::Error| match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::InvalidData
            | io::ErrorKind::InvalidInput => ImageError::InvalidArchive(format!("{what}: {e}")),
            _ => ImageError::io(format!("reading {what}"), e),
        };
        file.set_len(offset)
            .map_err(io_err("truncate partial blob"))?;
        let (blob_digest, blob_size, diff, size) = std::thread::scope(|scope| {
            // Blob writer: hashes the kept prefix, then hashes and appends what arrives.
            let (wtx, wrx) = sync_channel::<Vec<u8>>(16);
            let writer = scope.spawn(move || -> Result<(String, u64), ImageError> {
                let mut h = Sha256::new();
                let mut buf = vec![0u8; CHUNK];
                let mut pos = 0u64;
                while pos < offset {
                    let want = buf.len().min((offset - pos) as usize);
                    let n = file
                        .read_at(&mut buf[..want], pos)
                        .map_err(io_err("read partial blob"))?;
                    if n == 0 {
                        return Err(ImageError::io(
                            "read partial blob",
                            io::ErrorKind::UnexpectedEof.into(),
                        ));
                    }
                    h.update(&buf[..n]);
                    pos += n as u64;
                }
                let mut f = file;
                f.seek(io::SeekFrom::Start(offset))
                    .map_err(io_err("seek partial blob"))?;
                let mut w = io::BufWriter::with_capacity(CHUNK, f);
                let mut res = Ok(());
                for chunk in wrx {
                    if let Err(e) = w.write_all(&chunk) {
                        res = Err(e);
                        break;
                    }
                    h.update(&chunk);
                    pos += chunk.len() as u64;
                }
                // Flushed even after a cut download: what arrived is kept for a resume.
                res.and(w.flush()).map_err(io_err("write blob"))?;
                Ok((format!("sha256:{}", hex(&h.finalize())), pos))
            });
            let mut src = PrefixReader {
                file,
                pos: 0,
                end: offset,
            }
            .chain(Tee {
                inner: reader,
                tx: wtx,
            });
            let produced = (|| -> Result<(String, u64), ImageError> {
                let (_, r) = decompressed(&mut src).map_err(read_err)?;
                let out = if unpack {
                    // Unpacker: hashes the tar stream and applies it; after an error it keeps
                    // draining, so the digests are still computed.
                    let (dtx, drx) = sync_channel::<Vec<u8>>(16);
                    let label = desc.digest.as_str();
                    let applier = scope.spawn(move || {
                        let mut r = HashingReader::new(ChunkReader {
                            rx: drx,
                            cur: Vec::new(),
                            pos: 0,
                        });
                        let res = Applier::new(work, label).and_then(|mut a| a.apply(&mut r));
                        let _ = io::copy(&mut r, &mut io::sink());
                        (res, r.digest(), r.count)
                    });
                    let fed = feed(r, &dtx).map_err(read_err);
                    drop(dtx);
                    let (applied, diff, size) = applier.join().unwrap_or_else(|_| {
                        (
                            Err(ImageError::InvalidArchive(format!(
                                "unpacking {what} panicked"
                            ))),
                            String::new(),
                            0,
                        )
                    });
                    fed?;
                    applied?;
                    (diff, size)
                } else {
                    let mut hr = HashingReader::new(r);
                    io::copy(&mut hr, &mut io::sink()).map_err(read_err)?;
                    (hr.digest(), hr.count)
                };
                Ok(out)
            })();
            // Whatever follows the compressed stream still belongs to the blob.
            let rest = match &produced {
                Ok(_) => io::copy(&mut src, &mut io::sink())
                    .map(|_| ())
                    .map_err(read_err),
                Err(_) => Ok(()),
            };
            drop(src);
            let written = writer.join().unwrap_or_else(|_| {
                Err(ImageError::io(
                    "blob writer",
                    io::Error::other("the blob writer panicked"),
                ))
            });
            // A cut download shows as a read error of the decompressor: report that first.
            let (diff, size) = produced?;
            rest?;
            let (d, n) = written?;
            Ok::<_, ImageError>((d, n, diff, size))
        })?;
        if desc.size != 0 && blob_size != desc.size {
            return Err(ImageError::SizeMismatch {
                what,
                expected: desc.size,
                actual: blob_size,
            });
        }
        if blob_digest != desc.digest {
            return Err(ImageError::DigestMismatch {
                what,
                expected: desc.digest.clone(),
                actual: blob_digest,
            });
        }
        if diff != diff_id {
            return Err(ImageError::DigestMismatch {
                what: format!("uncompressed layer {}", desc.digest),
                expected: diff_id.to_string(),
                actual: diff,
            });
        }
        file.sync_all().map_err(io_err("fsync blob"))?;
        if unpack {
            let _u = self.unpack_guard();
            if !dest.is_dir() {
                fs::rename(work, dest)
                    .map_err(io_err(format!("rename snapshot {}", dest.display())))?;
                fsync_dir(&self.root().join("snapshots"))?;
            }
        }
        Ok(IngestedLayer {
            diff_id: diff,
            size,
        })
    }

    /// Diff ID and uncompressed size of a stored layer blob (for layers a pull skipped).
    pub fn layer_info(&self, digest: &str) -> Result<IngestedLayer, ImageError> {
        let (diff_id, size) = self.layer_diff(digest)?;
        Ok(IngestedLayer { diff_id, size })
    }

    /// Records a pulled image: stores `config` and `manifest` (verifying their digests), checks
    /// that every layer blob is present, and points `refs` at it (the commit point).
    /// `layer_sizes` are the uncompressed layer sizes, bottom first. Returns the image.
    /// Errors: [`ImageError::DigestMismatch`], [`ImageError::InvalidArchive`] (missing layer,
    /// layer count differs from the config's diff IDs), [`ImageError::Json`].
    pub fn commit_pull(
        &self,
        manifest: &[u8],
        manifest_digest: &str,
        config: &[u8],
        layer_sizes: Vec<u64>,
        refs: &[Reference],
    ) -> Result<Image, ImageError> {
        let man: Manifest = parse_json(&format!("manifest {manifest_digest}"), manifest)?;
        let cfg: ImageConfigFile = parse_json(&format!("config {}", man.config.digest), config)?;
        if cfg.rootfs.diff_ids.len() != man.layers.len() || layer_sizes.len() != man.layers.len() {
            return Err(ImageError::InvalidArchive(format!(
                "manifest {manifest_digest} has {} layers but its config lists {} diff_ids",
                man.layers.len(),
                cfg.rootfs.diff_ids.len()
            )));
        }
        // The layers are pinned (gc keeps them) before they are checked; the commit takes the
        // writers' lock.
        let mut txn = Txn::default();
        for l in &man.layers {
            self.pin(&l.digest, &mut txn);
            if !self.has_blob(&l.digest) {
                return Err(ImageError::InvalidArchive(format!(
                    "layer {} is missing",
                    l.digest
                )));
            }
        }
        let r = (|| {
            self.put_blob(
                &mut &config[..],
                Some(&man.config.digest),
                None,
                "config",
                &mut txn,
            )?;
            self.put_blob(
                &mut &manifest[..],
                Some(manifest_digest),
                None,
                "manifest",
                &mut txn,
            )?;
            self.commit(vec![Staged {
                id: man.config.digest.clone(),
                manifest: manifest_digest.to_string(),
                layer_sizes,
                refs: refs.to_vec(),
                index: None,
            }])
        })();
        match r {
            Ok(_) => {
                let state = self.snapshot();
                self.image_from(&state, &man.config.digest)
            }
            Err(e) => {
                txn.rollback();
                Err(e)
            }
        }
    }

    /// For push: the image `name` resolves to, its manifest bytes and its config bytes.
    /// Errors: [`ImageError::NotFound`].
    pub fn export_manifest(&self, name: &str) -> Result<(Image, Vec<u8>, Vec<u8>), ImageError> {
        let state = self.snapshot();
        let (id, manifest, _) = self.resolve(&state, name)?;
        let image = self.image_from(&state, &id)?;
        let mdata = self.read_blob(&manifest)?;
        let cdata = self.read_blob(&id)?;
        Ok((image, mdata, cdata))
    }
}

/// An image index's bytes, and each entry's descriptor with its manifest's bytes.
pub type ExportedIndex = (Vec<u8>, Vec<(Descriptor, Vec<u8>)>);

impl ImageStore {
    /// For push: when `name` stands for an image index loaded with all platforms, the index
    /// bytes and each entry's descriptor with its manifest bytes; `None` for a plain image.
    /// Errors: [`ImageError::NotFound`] (no such image, or an entry's manifest is missing).
    pub fn export_index(&self, name: &str) -> Result<Option<ExportedIndex>, ImageError> {
        let state = self.snapshot();
        self.resolve(&state, name)?;
        let Some(index) = crate::store::index_of(&state, name) else {
            return Ok(None);
        };
        let idata = self.read_blob(&index)?;
        let parsed: crate::digest::Index = parse_json(&format!("index {index}"), &idata)?;
        let mut children = Vec::new();
        for m in parsed.manifests {
            let data = self
                .read_blob(&m.digest)
                .map_err(|_| ImageError::NotFound(format!("manifest {} of {name}", m.digest)))?;
            children.push((m, data));
        }
        Ok(Some((idata, children)))
    }

    /// A stored blob's bytes (manifests and configs, for push). Errors: [`ImageError::NotFound`].
    pub fn blob_bytes(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        self.read_blob(digest)
            .map_err(|_| ImageError::NotFound(format!("blob {digest}")))
    }
}

/// Reads `r` to its end and sends it on in chunks (to the unpacker).
fn feed(mut r: impl Read, tx: &SyncSender<Vec<u8>>) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                if tx.send(buf[..n].to_vec()).is_err() {
                    return Err(io::Error::other("the unpacker stopped"));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Chain IDs for a config's diff IDs (re-exported helper for pullers).
pub fn config_chain_ids(config: &[u8]) -> Result<(Vec<String>, Vec<String>), ImageError> {
    let cfg: ImageConfigFile = parse_json("config", config)?;
    let chains = chain_ids(&cfg.rootfs.diff_ids);
    Ok((cfg.rootfs.diff_ids, chains))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256_digest;
    use std::io::Write;

    /// A one-file layer: (the tar, its gzip).
    fn gz_layer(path: &str, data: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, path, data).unwrap();
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        (tar, gz.finish().unwrap())
    }

    fn layer() -> (Vec<u8>, Vec<u8>) {
        gz_layer("etc/greeting", b"hello\n")
    }

    #[test]
    fn ingest_verifies_and_unpacks_in_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let (tar, gz) = layer();
        let diff = sha256_digest(&tar);
        let desc = Descriptor {
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            digest: sha256_digest(&gz),
            size: gz.len() as u64,
            ..Default::default()
        };
        // Wrong digest: nothing stored.
        let mut bad = gz.clone();
        let n = bad.len();
        bad[n - 5] ^= 1; // the gzip trailer: decompression may still succeed
        let err = store
            .ingest_layer(&mut &bad[..], &desc, &diff, &diff)
            .unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::DigestMismatch { .. } | ImageError::InvalidArchive(_)
            ),
            "{err}"
        );
        assert!(!store.has_blob(&desc.digest));
        assert!(!dir.path().join("snapshots").join(&diff[7..]).exists());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        // Right content: blob and snapshot.
        let got = store
            .ingest_layer(&mut &gz[..], &desc, &diff, &diff)
            .unwrap();
        assert_eq!(got.diff_id, diff);
        assert_eq!(got.size, tar.len() as u64);
        assert!(store.has_blob(&desc.digest));
        let snap = dir.path().join("snapshots").join(&diff[7..]);
        assert_eq!(fs::read(snap.join("etc/greeting")).unwrap(), b"hello\n");
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    /// Yields `data` in small reads, then fails (a connection cut after `data`).
    struct CutReader<'a> {
        data: &'a [u8],
    }

    impl Read for CutReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.data.is_empty() {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "cut"));
            }
            let n = buf.len().min(self.data.len()).min(4096);
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// A gzipped layer big enough to be cut in the middle (incompressible file data).
    fn big_layer() -> (Vec<u8>, Vec<u8>) {
        let mut data = vec![0u8; 600_000];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        gz_layer("data/random", &data)
    }

    #[test]
    fn gc_expires_old_unlocked_partial_blobs_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let partial = dir.path().join("partial");
        let day_old = std::time::SystemTime::now() - std::time::Duration::from_secs(25 * 3600);
        for name in ["old", "fresh", "held"] {
            let f = std::fs::File::create(partial.join(name)).unwrap();
            std::io::Write::write_all(&mut &f, &[0u8; 1000]).unwrap();
            if name != "fresh" {
                f.set_modified(day_old).unwrap();
            }
        }
        // A pull holds "held".
        let held = nix::fcntl::Flock::lock(
            std::fs::File::open(partial.join("held")).unwrap(),
            nix::fcntl::FlockArg::LockExclusiveNonblock,
        )
        .unwrap();
        let freed = store.gc().unwrap();
        assert_eq!(freed, 1000);
        assert!(!partial.join("old").exists());
        assert!(partial.join("fresh").exists());
        assert!(partial.join("held").exists());
        drop(held);
    }

    #[test]
    fn cut_download_resumes_from_the_partial_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let (tar, gz) = big_layer();
        let diff = sha256_digest(&tar);
        let desc = Descriptor {
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            digest: sha256_digest(&gz),
            size: gz.len() as u64,
            ..Default::default()
        };
        let cut = gz.len() / 2;
        let p = store.begin_layer(&desc, &diff, &diff).unwrap();
        assert_eq!(p.offset(), 0);
        let err = store
            .finish_layer(p, &mut CutReader { data: &gz[..cut] })
            .unwrap_err();
        assert!(matches!(err, ImageError::Io { .. }), "{err}");
        assert!(!store.has_blob(&desc.digest));
        assert!(!dir.path().join("snapshots").join(&diff[7..]).exists());
        // The bytes received are kept; a second pull holding none of them gets a private file.
        let p = store.begin_layer(&desc, &diff, &diff).unwrap();
        assert_eq!(p.offset(), cut as u64);
        let other = store.begin_layer(&desc, &diff, &diff).unwrap();
        assert_eq!(other.offset(), 0);
        drop(other);
        // Reopening the store keeps the partial file.
        drop(p);
        let store = ImageStore::open(dir.path()).unwrap();
        let p = store.begin_layer(&desc, &diff, &diff).unwrap();
        assert_eq!(p.offset(), cut as u64);
        let got = store.finish_layer(p, &mut &gz[cut..]).unwrap();
        assert_eq!(got.diff_id, diff);
        assert!(store.has_blob(&desc.digest));
        let snap = dir.path().join("snapshots").join(&diff[7..]);
        assert_eq!(fs::read(snap.join("data/random")).unwrap().len(), 600_000);
        assert_eq!(fs::read_dir(dir.path().join("partial")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn resume_with_a_bad_prefix_fails_and_drops_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let (tar, gz) = big_layer();
        let diff = sha256_digest(&tar);
        let desc = Descriptor {
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            digest: sha256_digest(&gz),
            size: gz.len() as u64,
            ..Default::default()
        };
        let cut = gz.len() / 3;
        let mut bad = gz[..cut].to_vec();
        bad[cut / 2] ^= 0x55;
        fs::write(dir.path().join("partial").join(&desc.digest[7..]), &bad).unwrap();
        let p = store.begin_layer(&desc, &diff, &diff).unwrap();
        assert_eq!(p.offset(), cut as u64);
        let err = store.finish_layer(p, &mut &gz[cut..]).unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::DigestMismatch { .. } | ImageError::InvalidArchive(_)
            ),
            "{err}"
        );
        assert!(!store.has_blob(&desc.digest));
        assert_eq!(fs::read_dir(dir.path().join("partial")).unwrap().count(), 0);
        // A restart from byte 0 then works.
        let mut p = store.begin_layer(&desc, &diff, &diff).unwrap();
        assert_eq!(p.offset(), 0);
        p.restart();
        store.finish_layer(p, &mut &gz[..]).unwrap();
        assert!(store.has_blob(&desc.digest));
    }
}
