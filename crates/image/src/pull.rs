//! Ingesting content pulled from a registry, and exporting content to push.
//!
//! A pull writes each layer with [`ImageStore::ingest_layer`] while it streams in: the compressed
//! bytes are hashed and written to a temp blob while, in the same pass, they are decompressed,
//! hashed again (diff ID) and unpacked into a temp snapshot directory. Only when both digests
//! match are the blob and the snapshot renamed into place, so a wrong digest leaves nothing
//! visible. [`ImageStore::commit_pull`] then stores config and manifest and writes the
//! reference (the commit point, as for loads). Layers whose blob is already present are skipped
//! by the caller ([`ImageStore::has_blob`]), which is how an interrupted pull resumes.

use std::fs::{self, File};
use std::io::{self, Read};

use crate::digest::{
    chain_ids, decompressed, digest_hex, Descriptor, HashingReader, HashingWriter, Manifest,
};
use crate::store::{fsync_dir, io_err, parse_json, random_suffix, Staged, Txn};
use crate::unpack::Applier;
use crate::{Image, ImageConfigFile, ImageError, ImageStore, Reference};

/// Copies everything read from `inner` into `w`.
struct Tee<'a, R, W> {
    inner: R,
    w: &'a mut W,
}

impl<R: Read, W: io::Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.w.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Reads chunks sent by the decompressing stage.
struct ChunkReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
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

    /// Streams a (compressed or plain) layer blob from `reader` into the store: verifies size
    /// and digest against `desc` and the uncompressed digest against `diff_id`, and unpacks it
    /// into the snapshot for `chain_id` in the same pass (unless that snapshot exists). Nothing
    /// becomes visible unless every check passes. Errors: [`ImageError::DigestMismatch`],
    /// [`ImageError::SizeMismatch`], [`ImageError::HostileLayer`], [`ImageError::InvalidArchive`],
    /// I/O (including errors of `reader`, e.g. a dropped connection).
    pub fn ingest_layer(
        &self,
        reader: &mut dyn Read,
        desc: &Descriptor,
        diff_id: &str,
        chain_id: &str,
    ) -> Result<IngestedLayer, ImageError> {
        digest_hex(&desc.digest)?;
        let dest = self.snapshot_path(chain_id)?;
        let unpack = !dest.is_dir();
        let work = self.tmp().join(format!("pull-{}", random_suffix()));
        if unpack {
            fs::create_dir(&work).map_err(io_err("create unpack dir"))?;
        }
        let result = (|| {
            let tmp =
                tempfile::NamedTempFile::new_in(self.tmp()).map_err(io_err("create temp blob"))?;
            let mut w = HashingWriter::new(io::BufWriter::with_capacity(256 * 1024, tmp));
            let what = format!("layer {}", desc.digest);
            let read_err = |e: io::Error| match e.kind() {
                io::ErrorKind::UnexpectedEof
                | io::ErrorKind::InvalidData
                | io::ErrorKind::InvalidInput => ImageError::InvalidArchive(format!("{what}: {e}")),
                _ => ImageError::io(format!("reading {what}"), e),
            };
            let (diff, size) = {
                let mut tee = Tee {
                    inner: &mut *reader,
                    w: &mut w,
                };
                let (diff, size) = {
                    let (_, r) = decompressed(&mut tee).map_err(read_err)?;
                    let mut hr = HashingReader::new(r);
                    // Two stages: this thread receives, stores and decompresses; a second one
                    // unpacks the tar stream, so decompression and file writes overlap.
                    std::thread::scope(|scope| -> Result<(), ImageError> {
                        let (dtx, drx) = std::sync::mpsc::sync_channel::<Vec<u8>>(16);
                        let applier = unpack.then(|| {
                            let (work, label) = (&work, desc.digest.as_str());
                            scope.spawn(move || -> Result<(), ImageError> {
                                let mut r = ChunkReader {
                                    rx: drx,
                                    cur: Vec::new(),
                                    pos: 0,
                                };
                                let res =
                                    Applier::new(work, label).and_then(|mut a| a.apply(&mut r));
                                // Drain what follows the tar's end marker so the sender finishes.
                                let _ = io::copy(&mut r, &mut io::sink());
                                res
                            })
                        });
                        let mut produced = Ok(());
                        let mut buf = vec![0u8; 256 * 1024];
                        loop {
                            match hr.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => {
                                    if applier.is_some() && dtx.send(buf[..n].to_vec()).is_err() {
                                        // The unpacker stopped (its error is reported below);
                                        // keep hashing to report digests correctly.
                                        io::copy(&mut hr, &mut io::sink()).map_err(read_err)?;
                                        break;
                                    }
                                }
                                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                                Err(e) => {
                                    produced = Err(read_err(e));
                                    break;
                                }
                            }
                        }
                        drop(dtx);
                        let unpacked = match applier {
                            Some(h) => h.join().unwrap_or_else(|_| {
                                Err(ImageError::InvalidArchive(format!(
                                    "unpacking {what} panicked"
                                )))
                            }),
                            None => Ok(()),
                        };
                        produced?;
                        unpacked
                    })?;
                    (hr.digest(), hr.count)
                };
                // Whatever follows the compressed stream still belongs to the blob.
                io::copy(&mut tee, &mut io::sink()).map_err(read_err)?;
                (diff, size)
            };
            let actual = w.digest();
            if desc.size != 0 && w.count != desc.size {
                return Err(ImageError::SizeMismatch {
                    what: what.clone(),
                    expected: desc.size,
                    actual: w.count,
                });
            }
            if actual != desc.digest {
                return Err(ImageError::DigestMismatch {
                    what,
                    expected: desc.digest.clone(),
                    actual,
                });
            }
            if diff != diff_id {
                return Err(ImageError::DigestMismatch {
                    what: format!("uncompressed layer {}", desc.digest),
                    expected: diff_id.to_string(),
                    actual: diff,
                });
            }
            let tmp = w
                .inner
                .into_inner()
                .map_err(|e| ImageError::io("flush blob", e.into_error()))?;
            tmp.as_file().sync_all().map_err(io_err("fsync blob"))?;
            if unpack {
                let _u = self.unpack_guard();
                if !dest.is_dir() {
                    fs::rename(&work, &dest)
                        .map_err(io_err(format!("rename snapshot {}", dest.display())))?;
                    fsync_dir(&self.root().join("snapshots"))?;
                }
            }
            let blob = self.blob_path(&desc.digest)?;
            if !blob.exists() {
                tmp.persist(&blob)
                    .map_err(|e| ImageError::io("rename blob", e.error))?;
            }
            Ok(IngestedLayer {
                diff_id: diff,
                size,
            })
        })();
        if unpack {
            let _ = fs::remove_dir_all(&work);
        }
        result
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
        let _g = self.guard();
        for l in &man.layers {
            if !self.has_blob(&l.digest) {
                return Err(ImageError::InvalidArchive(format!(
                    "layer {} is missing",
                    l.digest
                )));
            }
        }
        let mut txn = Txn::default();
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
            }])
        })();
        match r {
            Ok(_) => {
                let state = self.read_state()?;
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
        let _g = self.guard();
        let state = self.read_state()?;
        let (id, manifest, _) = self.resolve(&state, name)?;
        let image = self.image_from(&state, &id)?;
        let mdata = self.read_blob(&manifest)?;
        let cdata = self.read_blob(&id)?;
        Ok((image, mdata, cdata))
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

    fn layer() -> (Vec<u8>, Vec<u8>) {
        let mut b = tar::Builder::new(Vec::new());
        let data = b"hello\n";
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, "etc/greeting", &data[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        (tar, gz.finish().unwrap())
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
}
