//! Names to images: resolving a reference, an ID or an ID prefix ([`ImageStore::resolve`]),
//! `list`/`get`, `tag`, `history` and the recorded layer sizes.
//!
//! **Invariants:** everything here but `tag` reads one snapshot of the state and takes no
//! lock while it reads blobs; `tag` is a writer (writers' lock, `refs.json` replaced whole).

use std::collections::BTreeSet;

use crate::reference::{is_hex64, valid_digest};
use crate::{ImageError, Reference};

use super::{index_of, parse_time, HistoryItem, Image, ImageStore, RefEntry, State};

impl ImageStore {
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
}
