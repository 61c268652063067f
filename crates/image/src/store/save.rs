//! `docker save`: images as a legacy docker-save or an OCI layout tar archive.
//!
//! **Invariants:** names are resolved and their blobs pinned under the writers' lock, then the
//! archive is streamed with no lock held, so a slow reader delays nobody and gc cannot take
//! what is being written.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, Write};

use crate::digest::{self, chain_ids, decompressed, digest_hex, Descriptor, Index, Manifest};
use crate::{ImageConfigFile, ImageError, Reference};

use super::{io_err, parse_json, ImageStore, SaveFormat, Txn};

impl ImageStore {
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
