//! The layer cache: `<data-root>/builder/cache.json` maps a step's key (parent state,
//! expanded instruction, content digests) to the resulting state, and a `--link` step's key
//! (no parent in it) to a bare layer; `builder prune` drops it with the cache mounts.
//!
//! **Invariants:** the file is only changed by a read-modify-write under [`CACHE_LOCK`] and
//! replaced atomically; an entry is used only while its layers (blobs and snapshots) are still
//! in the store, a linked layer while its blob is.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;

use barge_image::digest::Descriptor;
use barge_image::HistoryEntry;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::layer;
use crate::mounts;

use super::*;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct CacheFile {
    pub(super) entries: BTreeMap<String, StageState>,
    /// `COPY --link` layers by a key that does not involve the parent state.
    #[serde(default)]
    pub(super) links: BTreeMap<String, LinkedLayer>,
}

/// An image named by `--cache-from`: what a cached step's result must be a prefix of.
pub(super) struct CacheSource {
    diff_ids: Vec<String>,
    history: Vec<String>,
}

fn created_by(history: &[barge_image::config::HistoryEntry]) -> Vec<String> {
    history
        .iter()
        .map(|h| h.created_by.clone().unwrap_or_default())
        .collect()
}

impl CacheFile {
    /// Keeps the entries whose result is in one of `sources`' histories: its layers and its
    /// history a prefix of the source's (dockerd's classic builder matches a step against the
    /// `--cache-from` images' histories only).
    pub(super) fn only_from(mut self, sources: &[CacheSource]) -> CacheFile {
        self.entries.retain(|_, st| {
            let history = created_by(&st.config.history);
            sources.iter().any(|src| {
                src.diff_ids.starts_with(&st.config.rootfs.diff_ids)
                    && src.history.starts_with(&history)
            })
        });
        self.links
            .retain(|_, l| sources.iter().any(|src| src.diff_ids.contains(&l.diff_id)));
        self
    }
}

/// A `COPY --link` / `ADD --link` result: a layer that can go on top of any parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct LinkedLayer {
    desc: Descriptor,
    diff_id: String,
    size: u64,
    history: HistoryEntry,
}

/// Serialises read-modify-write cycles of the cache file (builders are made per request).
static CACHE_LOCK: Mutex<()> = Mutex::new(());

impl Builder {
    fn cache_path(&self) -> PathBuf {
        self.dir.join("cache.json")
    }

    /// The `--cache-from` images' layer chains and histories (names that do not resolve are
    /// left out).
    pub(super) fn cache_sources(&self, names: &[String]) -> Vec<CacheSource> {
        names
            .iter()
            .filter_map(|n| self.images.get(n).ok())
            .map(|img| CacheSource {
                diff_ids: img.config.rootfs.diff_ids.clone(),
                history: created_by(&img.config.history),
            })
            .collect()
    }

    pub(super) fn load_cache(&self) -> CacheFile {
        fs::read(self.cache_path())
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or_default()
    }

    pub(super) fn save_cache_entry(&self, key: &str, st: &StageState) -> Result<(), BuildError> {
        self.update_cache(|c| {
            c.entries.insert(key.to_string(), st.clone());
        })
    }

    /// Read-modify-writes the cache file (atomically replaced).
    fn update_cache(&self, f: impl FnOnce(&mut CacheFile)) -> Result<(), BuildError> {
        let _g = CACHE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let mut c = self.load_cache();
        f(&mut c);
        fs::create_dir_all(&self.dir).map_err(io_err("create builder dir"))?;
        barge_stdx::fs::write_atomic(
            &self.cache_path(),
            &serde_json::to_vec(&c).expect("serializes"),
        )
        .map_err(io_err("write build cache"))
    }

    /// `builder prune`: drops the layer cache's entries and every cache mount directory no
    /// build is using now.
    pub fn prune(&self) -> Result<PruneReport, BuildError> {
        let _g = CACHE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let c = self.load_cache();
        let entries = c.entries.len() + c.links.len();
        match fs::remove_file(self.cache_path()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(BuildError::Io {
                    what: "remove build cache".into(),
                    source: e,
                })
            }
        }
        let (cache_mounts, bytes) = mounts::CacheMounts::new(self.dir.join("mounts"))
            .prune()
            .map_err(|e| BuildError::Invalid(e.to_string()))?;
        Ok(PruneReport {
            entries,
            cache_mounts,
            bytes,
        })
    }

    fn layers_present(&self, st: &StageState) -> bool {
        st.layers.iter().all(|l| self.images.has_blob(&l.digest))
            && self.view(st).layers.iter().all(|p| p.is_dir())
    }

    /// Looks `key` up in the cache, or runs `f` and records its result.
    pub(super) fn cached(
        &self,
        ctx: &mut Ctx,
        key: &str,
        st: StageState,
        f: impl FnOnce(&Builder, StageState, &mut dyn FnMut(&str)) -> Result<StageState, BuildError>,
    ) -> Result<StageState, BuildError> {
        if !ctx.opts.no_cache {
            if let Some(hit) = ctx.cache.entries.get(key) {
                if self.layers_present(hit) {
                    (ctx.out)(" ---> Using cache\n");
                    return Ok(hit.clone());
                }
            }
        }
        let t = std::time::Instant::now();
        let st = f(self, st, &mut *ctx.out)?;
        self.save_cache_entry(key, &st)?;
        ctx.cache.entries.insert(key.to_string(), st.clone());
        (ctx.out)(&format!(
            " ---> Done in {:.2}s\n",
            t.elapsed().as_secs_f64()
        ));
        Ok(st)
    }

    /// Like [`Builder::cached`] for `--link` layers: a hit is the stored layer put on top of
    /// whatever the parent is now (its snapshot is unpacked for the new chain if needed).
    pub(super) fn cached_link(
        &self,
        ctx: &mut Ctx,
        key: &str,
        mut st: StageState,
        f: impl FnOnce(&Builder) -> Result<(layer::LayerFile, HistoryEntry), BuildError>,
    ) -> Result<StageState, BuildError> {
        if !ctx.opts.no_cache {
            if let Some(hit) = ctx.cache.links.get(key).cloned() {
                if self.images.has_blob(&hit.desc.digest) {
                    self.push_linked(&mut st, &hit)?;
                    (ctx.out)(" ---> Using cache (linked layer)\n");
                    return Ok(st);
                }
            }
        }
        let t = std::time::Instant::now();
        let (mut lf, history) = f(self)?;
        let desc = layer::store_layer(&self.images, &mut lf, &st.config.rootfs.diff_ids)?;
        let linked = LinkedLayer {
            desc,
            diff_id: lf.diff_id.clone(),
            size: lf.size,
            history,
        };
        self.push_linked(&mut st, &linked)?;
        self.update_cache(|c| {
            c.links.insert(key.to_string(), linked.clone());
        })?;
        ctx.cache.links.insert(key.to_string(), linked);
        (ctx.out)(&format!(
            " ---> Done in {:.2}s\n",
            t.elapsed().as_secs_f64()
        ));
        Ok(st)
    }

    /// Puts a linked layer on top of `st`, unpacking its snapshot for this chain if missing.
    fn push_linked(&self, st: &mut StageState, l: &LinkedLayer) -> Result<(), BuildError> {
        let mut ids = st.config.rootfs.diff_ids.clone();
        ids.push(l.diff_id.clone());
        let chain = barge_image::chain_ids(&ids).pop().expect("one id");
        let snap = self
            .images
            .root()
            .join("snapshots")
            .join(chain.trim_start_matches("sha256:"));
        if !snap.is_dir() {
            let mut f = self.images.open_blob(&l.desc.digest)?;
            let mut r: &mut dyn Read = &mut f;
            self.images
                .ingest_layer(&mut r, &l.desc, &l.diff_id, &chain)?;
        }
        st.config.rootfs.diff_ids.push(l.diff_id.clone());
        st.layers.push(l.desc.clone());
        st.layer_sizes.push(l.size);
        st.config.history.push(l.history.clone());
        Ok(())
    }
}

pub(super) fn cache_key(st: &StageState, text: &str, extra: &str) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(&st.config).expect("json"));
    for l in &st.layers {
        h.update(l.digest.as_bytes());
    }
    h.update(b"\0");
    h.update(text.as_bytes());
    h.update(b"\0");
    h.update(extra.as_bytes());
    format!("sha256:{}", barge_image::digest::hex(&h.finalize()))
}

/// The key of a `--link` step: no parent state in it.
pub(super) fn link_key(text: &str, content: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"link\0");
    h.update(text.as_bytes());
    h.update(b"\0");
    h.update(content.as_bytes());
    format!("sha256:{}", barge_image::digest::hex(&h.finalize()))
}
