//! `docker load` (an OCI image layout directory or archive, a `docker save` archive) and
//! `docker import` (a rootfs tar as a one-layer image).
//!
//! **Invariants:** paths inside an archive never lead outside it ([`open_in`]); every blob is
//! verified (digest, size, and a layer's diff ID against the config) while it is copied, with
//! no store lock held (the blobs are pinned); the references are written last, in one
//! [`ImageStore::commit`], and a failure rolls back the blobs the load created.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use serde::Deserialize;

use crate::archive;
use crate::digest::{
    self, decompressed, digest_hex, known_layer_media_type, Descriptor, Index, Manifest,
};
use crate::reference::is_hex64;
use crate::{ImageConfigFile, ImageError, Platform, Reference};

use super::{io_err, parse_json, random_suffix, ImageStore, LoadedImage, Staged, Txn};

/// Opens `rel` inside `dir` (an unpacked archive or layout) as docker's `safePath` does:
/// symlinks, `..` and absolute paths are resolved inside `dir` (by the kernel, through
/// [`barge_archive::inroot`]), so nothing outside it is ever read.
fn open_in(dir: &Path, rel: &str) -> Result<File, ImageError> {
    if rel.is_empty() {
        return Err(ImageError::InvalidArchive(format!(
            "invalid path {rel:?} in archive"
        )));
    }
    let root = barge_archive::inroot::InRoot::open(dir)
        .map_err(|e| ImageError::io(format!("open {}", dir.display()), std::io::Error::other(e)))?;
    root.open_file(Path::new(rel))
        .map_err(|_| ImageError::InvalidArchive(format!("{rel} is missing from the archive")))
}

impl ImageStore {
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
            let mut f = open_in(dir, "index.json")?;
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
        let mut f = open_in(dir, &format!("blobs/sha256/{hex}")).map_err(|_| {
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
        let mut f = open_in(dir, &format!("blobs/sha256/{hex}")).map_err(|_| {
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
        let mut f = open_in(dir, "manifest.json")?;
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
            let mut cf = open_in(dir, &e.config)?;
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
                let lf = open_in(dir, path)?;
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
}
