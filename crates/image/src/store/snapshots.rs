//! Snapshots: each layer unpacked once per chain ID into `snapshots/<chain-id-hex>`.
//!
//! **Invariants:** a snapshot is unpacked into `tmp/`, its diff ID checked, and only then
//! renamed into place (so a snapshot directory is always complete); unpacking is serialised by
//! the unpack lock, and images already unpacked take no lock at all.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::digest::{chain_ids, decompressed, HashingReader, Manifest};
use crate::unpack::Applier;
use crate::ImageError;

use super::{fsync_dir, io_err, parse_json, random_suffix, ImageStore};

impl ImageStore {
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
}
