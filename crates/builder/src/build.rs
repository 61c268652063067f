//! The build executor: stages, instructions, RUN through the container engine, COPY/ADD, the
//! layer cache, and the final image.
//!
//! Each stage's state is an image config plus its layer descriptors. A step's cache key is
//! sha256 of (parent state digest, expanded instruction, content digest of the files a
//! COPY/ADD reads, and for RUN its `--mount`s: definitions plus the content of bind sources);
//! the cache (`<data-root>/builder/cache.json`) maps keys to the resulting state, valid as long
//! as the layers are still in the store.
//!
//! `COPY --link`/`ADD --link` steps are keyed without the parent state (only the sources, the
//! instruction, whether the destination is a directory and the owner/mode of the existing
//! directories on the way) and cached as a bare layer; a hit puts that same layer blob on top
//! of the current parent (unpacking its snapshot for the new chain), so a change of the base
//! does not rebuild it. Its layer holds every parent directory of the destination (existing
//! ones with their owner and mode), so it does not depend on the parent's content. A symlink
//! among those parents turns `--link` off for the step (the layer would depend on it).
//!
//! `ADD <url>` downloads through the [`crate::fetch::Fetcher`] set with
//! [`Builder::with_fetcher`]; `RUN --mount` is in [`crate::mounts`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use barge_container::mounts::{MountSpec, MountType, TmpfsOptions};
use barge_container::{Containers, CreateOptions, HostOptions, WaitCondition};
use barge_image::digest::{sha256_digest, Descriptor, HashingWriter, Manifest};
use barge_image::{
    HealthConfig, HistoryEntry, ImageConfigFile, ImageError, ImageStore, Platform, Reference,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fetch;
use crate::layer::{self, LayerTar};
use crate::mounts::{self, RunMount};
use crate::parser::{self, Dockerfile, Instruction, ParseError};

/// A build failure.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Parse(#[from] ParseError),
    #[error("{file}:{line}: {instruction}: {message}")]
    Step {
        file: String,
        line: usize,
        instruction: String,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Image(#[from] ImageError),
    #[error("{0}")]
    Container(#[from] barge_container::ContainerError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildError {
    let what = what.into();
    move |source| BuildError::Io { what, source }
}

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Dockerfile path relative to the context (default `Dockerfile`).
    pub dockerfile: Option<String>,
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub labels: BTreeMap<String, String>,
    /// Network mode for RUN (`none` unless given).
    pub network_mode: Option<String>,
    pub platform: Option<String>,
    /// `SOURCE_DATE_EPOCH`: fixed created times and clamped file mtimes.
    pub source_date_epoch: Option<i64>,
    /// `--add-host` entries (`name:ip`) for the `/etc/hosts` of RUN steps.
    pub extra_hosts: Vec<String>,
}

/// The result of a build.
#[derive(Debug, Clone)]
pub struct BuildResult {
    pub id: String,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StageState {
    config: ImageConfigFile,
    layers: Vec<Descriptor>,
    layer_sizes: Vec<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CacheFile {
    entries: BTreeMap<String, StageState>,
    /// `COPY --link` layers by a key that does not involve the parent state.
    #[serde(default)]
    links: BTreeMap<String, LinkedLayer>,
}

/// A `COPY --link` / `ADD --link` result: a layer that can go on top of any parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LinkedLayer {
    desc: Descriptor,
    diff_id: String,
    size: u64,
    history: HistoryEntry,
}

/// What `builder prune` removed.
#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    /// Layer cache entries dropped.
    pub entries: usize,
    /// Cache mount directories removed.
    pub cache_mounts: usize,
    /// Bytes the cache mounts used.
    pub bytes: u64,
}

/// The builder. One per daemon; builds may run concurrently.
pub struct Builder {
    images: Arc<ImageStore>,
    containers: Arc<Containers>,
    dir: PathBuf,
    fetcher: Option<Arc<dyn fetch::Fetcher>>,
}

/// Serialises read-modify-write cycles of the cache file (builders are made per request).
static CACHE_LOCK: Mutex<()> = Mutex::new(());

struct Stage {
    name: Option<String>,
    from: Instruction,
    instrs: Vec<Instruction>,
}

fn host_platform() -> Platform {
    Platform::host()
}

fn now_or(epoch: Option<i64>) -> String {
    match epoch {
        Some(e) => chrono::DateTime::from_timestamp(e, 0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        None => chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
    }
}

fn env_get(env: &Option<Vec<String>>, key: &str) -> Option<String> {
    env.as_ref()?.iter().find_map(|e| {
        e.split_once('=')
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
    })
}

fn env_set(env: &mut Option<Vec<String>>, key: &str, value: &str) {
    let v = env.get_or_insert_with(Vec::new);
    let item = format!("{key}={value}");
    match v.iter().position(|e| e.split('=').next() == Some(key)) {
        Some(p) => v[p] = item,
        None => v.push(item),
    }
}

/// Parses Go-style durations (`5s`, `1m30s`, `500ms`) to nanoseconds.
fn parse_duration(s: &str) -> Option<i64> {
    barge_stdx::units::parse_go_duration(s).ok()
}

fn clean_path(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

/// A read-only view of an image's root file system (layer dirs, top first).
struct RootView {
    layers: Vec<PathBuf>,
}

impl RootView {
    /// Resolves `path` (absolute, in the image) to the host path of the topmost layer holding it.
    fn lookup(&self, path: &str) -> Option<PathBuf> {
        let rel = path.trim_start_matches('/');
        for l in &self.layers {
            let p = if rel.is_empty() {
                l.clone()
            } else {
                l.join(rel)
            };
            match fs::symlink_metadata(&p) {
                Ok(md) => {
                    use std::os::unix::fs::{FileTypeExt, MetadataExt};
                    if md.file_type().is_char_device() && md.rdev() == 0 {
                        return None;
                    }
                    return Some(p);
                }
                Err(_) => continue,
            }
        }
        None
    }

    fn read(&self, path: &str) -> Option<String> {
        fs::read_to_string(self.lookup(path)?).ok()
    }
}

/// A mounted overlay of an image's layers for COPY --from (unmounted on drop).
struct Mounted {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.mounted {
            if let Ok(p) = std::ffi::CString::new(self.dir.path().as_os_str().as_encoded_bytes()) {
                // SAFETY: valid NUL-terminated path.
                unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

fn mount_view(tmp: &Path, layers: &[PathBuf]) -> Result<(Mounted, PathBuf), BuildError> {
    if layers.len() <= 1 {
        let dir = tempfile::Builder::new()
            .prefix("from-")
            .tempdir_in(tmp)
            .map_err(io_err("create mount dir"))?;
        let p = layers
            .first()
            .cloned()
            .unwrap_or_else(|| dir.path().to_path_buf());
        return Ok((
            Mounted {
                dir,
                mounted: false,
            },
            p,
        ));
    }
    mount_overlay(tmp, layers, None)
}

/// Mounts an overlay of `lowers` (top first), read-only unless `upper` (upper, work) is given.
fn mount_overlay(
    tmp: &Path,
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
) -> Result<(Mounted, PathBuf), BuildError> {
    let dir = tempfile::Builder::new()
        .prefix("from-")
        .tempdir_in(tmp)
        .map_err(io_err("create mount dir"))?;
    barge_image::overlay::mount(
        dir.path(),
        &barge_image::overlay::Overlay {
            lowers,
            upper,
            flags: &[],
        },
    )
    .map_err(|e| BuildError::Io {
        what: "mount overlay".into(),
        source: e.into_io(),
    })?;
    let p = dir.path().to_path_buf();
    Ok((Mounted { dir, mounted: true }, p))
}

struct Ctx<'a> {
    df: &'a Dockerfile,
    opts: &'a BuildOptions,
    context: &'a Path,
    out: &'a mut dyn FnMut(&str),
    step: usize,
    total: usize,
    cache: CacheFile,
    stages_done: HashMap<usize, (StageState, String)>,
    names: HashMap<String, usize>,
}

impl Builder {
    pub fn new(images: Arc<ImageStore>, containers: Arc<Containers>, data_root: &Path) -> Builder {
        Builder {
            images,
            containers,
            dir: data_root.join("builder"),
            fetcher: None,
        }
    }

    /// Sets the downloader for `ADD <url>` (without one such steps fail).
    pub fn with_fetcher(mut self, fetcher: Arc<dyn fetch::Fetcher>) -> Builder {
        self.fetcher = Some(fetcher);
        self
    }

    fn cache_path(&self) -> PathBuf {
        self.dir.join("cache.json")
    }

    fn load_cache(&self) -> CacheFile {
        fs::read(self.cache_path())
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or_default()
    }

    fn save_cache_entry(&self, key: &str, st: &StageState) -> Result<(), BuildError> {
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
        barge_fsutil::write_atomic(
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

    /// Builds `context` (a directory) and reports progress lines through `out`.
    pub fn build(
        &self,
        context: &Path,
        opts: &BuildOptions,
        out: &mut dyn FnMut(&str),
    ) -> Result<BuildResult, BuildError> {
        // Layers stored by the steps are referenced by no image until the build writes its
        // own: a concurrent `rmi`/`image prune` must leave them (and the cache's) alone.
        let _hold = self.images.hold();
        if let Some(p) = &opts.platform {
            let want = Platform::parse(p)?;
            if !host_platform().matches(&want) {
                return Err(BuildError::Invalid(format!(
                    "platform {p} is not supported: only the host platform {} can be built",
                    fmt_platform(&host_platform())
                )));
            }
        }
        let file = opts
            .dockerfile
            .clone()
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| "Dockerfile".into());
        let rel = clean_path(&file);
        if escapes(&file) || file.starts_with('/') {
            return Err(BuildError::Invalid(format!(
                "the Dockerfile ({file}) must be within the build context"
            )));
        }
        let text = fs::read_to_string(context.join(rel.trim_start_matches('/'))).map_err(|e| {
            // dockerd's wording (`remotecontext`), with the cause only when it is not absence.
            if e.kind() == std::io::ErrorKind::NotFound {
                BuildError::Invalid(format!("Cannot locate specified Dockerfile: {file}"))
            } else {
                BuildError::Invalid(format!("Cannot locate specified Dockerfile: {file}: {e}"))
            }
        })?;
        let df = parser::parse(&file, &text)?;
        let tags: Vec<Reference> = opts
            .tags
            .iter()
            .map(|t| Reference::parse(t))
            .collect::<Result<_, _>>()?;

        // Split into the global part and stages.
        let mut global_args: Vec<Instruction> = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        for ins in &df.instructions {
            if ins.keyword == "FROM" {
                stages.push(Stage {
                    name: None,
                    from: ins.clone(),
                    instrs: Vec::new(),
                });
            } else if let Some(s) = stages.last_mut() {
                s.instrs.push(ins.clone());
            } else if ins.keyword == "ARG" {
                global_args.push(ins.clone());
            } else {
                return Err(step_err(
                    &df,
                    ins,
                    "no build stage in current context (FROM must come first)",
                ));
            }
        }
        if stages.is_empty() {
            return Err(BuildError::Invalid(format!(
                "{file}: file with no instructions"
            )));
        }
        // Global ARGs (with built-ins).
        let mut globals: BTreeMap<String, String> = builtin_args();
        for a in &global_args {
            let kv =
                parser::key_values(&a.rest, df.escape, false).map_err(|m| step_err(&df, a, &m))?;
            for (k, v) in kv {
                let val = match opts.build_args.get(&k) {
                    Some(v) => v.clone(),
                    None => match v {
                        Some(raw) => {
                            let g = globals.clone();
                            parser::expand(&raw, df.escape, &|n| g.get(n).cloned())
                                .map_err(|m| step_err(&df, a, &m))?
                        }
                        None => String::new(),
                    },
                };
                globals.insert(k, val);
            }
        }
        let mut names = HashMap::new();
        for (i, s) in stages.iter_mut().enumerate() {
            let words = parser::expand_words(&s.from.rest, df.escape, &|n| globals.get(n).cloned())
                .map_err(|m| step_err(&df, &s.from, &m))?;
            match words.as_slice() {
                [_] => {}
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => {
                    let n = name.to_ascii_lowercase();
                    if names.insert(n.clone(), i).is_some() {
                        return Err(step_err(
                            &df,
                            &s.from,
                            &format!("duplicate stage name {n:?}"),
                        ));
                    }
                    s.name = Some(n);
                }
                _ => {
                    return Err(step_err(
                        &df,
                        &s.from,
                        "FROM requires either one or three arguments",
                    ))
                }
            }
        }
        let target = match &opts.target {
            Some(t) if !t.is_empty() => *names.get(&t.to_ascii_lowercase()).ok_or_else(|| {
                BuildError::Invalid(format!("failed to reach build target {t} in Dockerfile"))
            })?,
            _ => stages.len() - 1,
        };
        // Which stages the target needs.
        let stage_ref = |name: &str| -> Option<usize> {
            names
                .get(&name.to_ascii_lowercase())
                .copied()
                .or_else(|| name.parse::<usize>().ok().filter(|&i| i < stages.len()))
        };
        let deps_of = |i: usize| -> HashSet<usize> {
            let s = &stages[i];
            let mut d = HashSet::new();
            let base = parser::expand_words(&s.from.rest, df.escape, &|n| globals.get(n).cloned())
                .unwrap_or_default();
            if let Some(j) = base.first().and_then(|b| stage_ref(b)).filter(|&j| j < i) {
                d.insert(j);
            }
            for ins in &s.instrs {
                if let Some(f) = ins.flag("from") {
                    if let Some(j) = stage_ref(f).filter(|&j| j < i) {
                        d.insert(j);
                    }
                }
                // RUN --mount=...,from=<stage>
                for (k, v) in &ins.flags {
                    if k != "mount" {
                        continue;
                    }
                    let v = parser::expand(v, df.escape, &|n| globals.get(n).cloned())
                        .unwrap_or_else(|_| v.clone());
                    if let Some(j) = mounts::parse(&v)
                        .ok()
                        .and_then(|m| m.from().and_then(stage_ref))
                        .filter(|&j| j < i)
                    {
                        d.insert(j);
                    }
                }
            }
            d
        };
        let mut needed = HashSet::new();
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if needed.insert(i) {
                todo.extend(deps_of(i));
            }
        }
        let mut order: Vec<usize> = needed.iter().copied().collect();
        order.sort();
        // Step numbers: stages in file order.
        let mut offsets = HashMap::new();
        let mut total = 0;
        for &i in &order {
            offsets.insert(i, total);
            total += 1 + stages[i].instrs.len();
        }
        let mut ctx = Ctx {
            df: &df,
            opts,
            context,
            out,
            step: 0,
            total,
            cache: if opts.no_cache {
                CacheFile::default()
            } else {
                self.load_cache()
            },
            stages_done: HashMap::new(),
            names: names.clone(),
        };
        // Stages whose dependencies are built run together (independent stages in parallel).
        let mut remaining = order.clone();
        while !remaining.is_empty() {
            let ready: Vec<usize> = remaining
                .iter()
                .copied()
                .filter(|&i| deps_of(i).iter().all(|j| ctx.stages_done.contains_key(j)))
                .collect();
            remaining.retain(|i| !ready.contains(i));
            if ready.len() == 1 {
                let i = ready[0];
                ctx.step = offsets[&i];
                let st = self.run_stage(&mut ctx, i, &stages[i], &globals)?;
                let id = self.commit(&st, &[])?;
                ctx.stages_done.insert(i, (st, id));
                continue;
            }
            type StageOutcome = (
                usize,
                Vec<String>,
                Result<(StageState, String, CacheFile), BuildError>,
            );
            let results: Vec<StageOutcome> = std::thread::scope(|scope| {
                let handles: Vec<_> = ready
                    .iter()
                    .map(|&i| {
                        let (cache, done, names, step) = (
                            ctx.cache.clone(),
                            ctx.stages_done.clone(),
                            ctx.names.clone(),
                            offsets[&i],
                        );
                        let (dfr, globals, stage) = (&df, &globals, &stages[i]);
                        scope.spawn(move || {
                            let mut lines = Vec::new();
                            let mut out = |l: &str| lines.push(l.to_string());
                            let mut sub = Ctx {
                                df: dfr,
                                opts,
                                context,
                                out: &mut out,
                                step,
                                total,
                                cache,
                                stages_done: done,
                                names,
                            };
                            let r = self.run_stage(&mut sub, i, stage, globals).and_then(|st| {
                                let id = self.commit(&st, &[])?;
                                Ok((st, id))
                            });
                            let cache = std::mem::take(&mut sub.cache);
                            drop(sub);
                            (i, lines, r.map(|(st, id)| (st, id, cache)))
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("stage thread panicked"))
                    .collect()
            });
            let mut first_err = None;
            for (i, lines, r) in results {
                for l in lines {
                    (ctx.out)(&l);
                }
                match r {
                    Ok((st, id, cache)) => {
                        ctx.cache.entries.extend(cache.entries);
                        ctx.cache.links.extend(cache.links);
                        ctx.stages_done.insert(i, (st, id));
                    }
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
        }
        let last = ctx.stages_done.get(&target).map(|(st, _)| st.clone());
        let mut st = last.expect("target stage built");
        if !opts.labels.is_empty() {
            let l = st.config.config.labels.get_or_insert_with(BTreeMap::new);
            l.extend(opts.labels.clone());
        }
        // The image was created when its last step was (stable across cached rebuilds).
        st.config.created = match opts.source_date_epoch {
            Some(_) => Some(now_or(opts.source_date_epoch)),
            None => st
                .config
                .history
                .last()
                .and_then(|h| h.created.clone())
                .or_else(|| Some(now_or(None))),
        };
        let id = self.commit(&st, &tags)?;
        (ctx.out)(&format!("Successfully built {}\n", short(&id)));
        for t in &tags {
            (ctx.out)(&format!("Successfully tagged {}\n", t.familiar()));
        }
        Ok(BuildResult {
            id,
            tags: tags.iter().map(|t| t.familiar()).collect(),
        })
    }

    /// Stores the state as an image (config + manifest), tagged with `refs`. Returns its ID.
    fn commit(&self, st: &StageState, refs: &[Reference]) -> Result<String, BuildError> {
        let config = serde_json::to_vec(&st.config).expect("config serializes");
        let cdigest = sha256_digest(&config);
        let man = Manifest {
            schema_version: 2,
            media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
            config: Descriptor {
                media_type: "application/vnd.oci.image.config.v1+json".into(),
                digest: cdigest.clone(),
                size: config.len() as u64,
                ..Default::default()
            },
            layers: st.layers.clone(),
        };
        let mdata = serde_json::to_vec(&man).expect("manifest serializes");
        let mdigest = sha256_digest(&mdata);
        let img =
            self.images
                .commit_pull(&mdata, &mdigest, &config, st.layer_sizes.clone(), refs)?;
        Ok(img.id)
    }

    fn view(&self, st: &StageState) -> RootView {
        let ids = barge_image::chain_ids(&st.config.rootfs.diff_ids);
        let root = self.images.root().join("snapshots");
        RootView {
            layers: ids
                .iter()
                .rev()
                .map(|c| root.join(c.trim_start_matches("sha256:")))
                .collect(),
        }
    }

    fn layers_present(&self, st: &StageState) -> bool {
        st.layers.iter().all(|l| self.images.has_blob(&l.digest))
            && self.view(st).layers.iter().all(|p| p.is_dir())
    }

    fn base_state(
        &self,
        ctx: &mut Ctx,
        ins: &Instruction,
        name: &str,
    ) -> Result<(StageState, String), BuildError> {
        if name == "scratch" {
            let p = host_platform();
            let config = ImageConfigFile {
                architecture: p.architecture,
                os: p.os,
                variant: p.variant,
                ..Default::default()
            };
            return Ok((
                StageState {
                    config,
                    layers: Vec::new(),
                    layer_sizes: Vec::new(),
                },
                "scratch".into(),
            ));
        }
        if let Some(&i) = ctx.names.get(&name.to_ascii_lowercase()) {
            if let Some((st, id)) = ctx.stages_done.get(&i) {
                return Ok((st.clone(), id.clone()));
            }
        }
        let img = self.images.get(name).map_err(|e| {
            step_err(
                ctx.df,
                ins,
                &format!("failed to resolve base image {name}: {e}"),
            )
        })?;
        // Make sure the snapshots exist (they are unpacked lazily).
        self.images.layer_dirs(&img.id)?;
        let (_, mdata, _) = self.images.export_manifest(&img.id)?;
        let man: Manifest = serde_json::from_slice(&mdata)
            .map_err(|e| BuildError::Invalid(format!("manifest of {name}: {e}")))?;
        // Recorded sizes when the store has them (reading them off the layers means inflating
        // every base layer on every build).
        let sizes = match self.images.layer_sizes(&img.id) {
            Ok(sizes) if sizes.len() == man.layers.len() => sizes,
            _ => man
                .layers
                .iter()
                .map(|l| {
                    self.images
                        .layer_info(&l.digest)
                        .map(|i| i.size)
                        .unwrap_or(l.size)
                })
                .collect(),
        };
        Ok((
            StageState {
                config: img.config.clone(),
                layers: man.layers,
                layer_sizes: sizes,
            },
            img.id,
        ))
    }

    fn run_stage(
        &self,
        ctx: &mut Ctx,
        _index: usize,
        s: &Stage,
        globals: &BTreeMap<String, String>,
    ) -> Result<StageState, BuildError> {
        let df = ctx.df;
        ctx.step += 1;
        (ctx.out)(&format!(
            "Step {}/{} : {}\n",
            ctx.step, ctx.total, s.from.original
        ));
        let words = parser::expand_words(&s.from.rest, df.escape, &|n| globals.get(n).cloned())
            .map_err(|m| step_err(df, &s.from, &m))?;
        if let Some(p) = s.from.flag("platform") {
            let p = parser::expand(p, df.escape, &|n| globals.get(n).cloned())
                .map_err(|m| step_err(df, &s.from, &m))?;
            let want = Platform::parse(&p).map_err(|e| step_err(df, &s.from, &e.to_string()))?;
            if !host_platform().matches(&want) {
                return Err(step_err(
                    df,
                    &s.from,
                    &format!(
                        "platform {p} is not supported (host is {})",
                        fmt_platform(&host_platform())
                    ),
                ));
            }
        }
        let (mut st, id) = self.base_state(ctx, &s.from, &words[0])?;
        (ctx.out)(&format!(" ---> {}\n", short(&id)));
        let mut sc = StageCtx {
            args: BTreeMap::new(),
            cmd_set: false,
            globals: globals.clone(),
        };
        // ONBUILD triggers of the base run first.
        if let Some(triggers) = st.config.config.on_build.take() {
            for t in triggers {
                let tdf = parser::parse(&format!("{} (ONBUILD)", df.file), &t)?;
                for ins in &tdf.instructions {
                    (ctx.out)("# Executing 1 build trigger\n");
                    st = self.step(ctx, &mut sc, st, ins)?;
                }
            }
        }
        for ins in &s.instrs {
            ctx.step += 1;
            (ctx.out)(&format!(
                "Step {}/{} : {}\n",
                ctx.step, ctx.total, ins.original
            ));
            st = self.step(ctx, &mut sc, st, ins)?;
        }
        Ok(st)
    }

    /// Runs one instruction (with the cache).
    fn step(
        &self,
        ctx: &mut Ctx,
        sc: &mut StageCtx,
        mut st: StageState,
        ins: &Instruction,
    ) -> Result<StageState, BuildError> {
        let df = ctx.df;
        let esc = df.escape;
        let e = |m: String| step_err(df, ins, &m);
        // Expansion: ENV wins over ARG.
        let env = st.config.config.env.clone();
        let args = sc.args.clone();
        let lookup = move |n: &str| env_get(&env, n).or_else(|| args.get(n).cloned());
        let x = |s: &str| parser::expand(s, esc, &lookup).map_err(e);
        // Metadata steps go through the cache too, so that a rebuild reuses their history
        // entries (and gives the same image ID).
        let meta = !matches!(
            ins.keyword.as_str(),
            "RUN" | "COPY" | "ADD" | "ARG" | "FROM"
        );
        if meta && !ctx.opts.no_cache {
            let key = cache_key(
                &st,
                &format!("META {}", ins.original),
                &serde_json::to_string(&sc.args).expect("json"),
            );
            if let Some(hit) = ctx.cache.entries.get(&key) {
                (ctx.out)(" ---> Using cache\n");
                return Ok(hit.clone());
            }
        }
        let meta_key = cache_key(
            &st,
            &format!("META {}", ins.original),
            &serde_json::to_string(&sc.args).expect("json"),
        );
        let c = &mut st.config.config;
        let nop = |st: &mut StageState, text: String| {
            st.config.history.push(HistoryEntry {
                created: Some(now_or(ctx.opts.source_date_epoch)),
                created_by: Some(format!("/bin/sh -c #(nop)  {text}")),
                empty_layer: Some(true),
                ..Default::default()
            });
        };
        match ins.keyword.as_str() {
            "ENV" => {
                let kv = parser::key_values(&ins.rest, esc, true).map_err(e)?;
                let mut done = Vec::new();
                for (k, v) in kv {
                    let v = x(v.as_deref().unwrap_or(""))?;
                    done.push((k, v));
                }
                for (k, v) in &done {
                    env_set(&mut c.env, k, v);
                }
                let text = done
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                nop(&mut st, format!("ENV {text}"));
            }
            "ARG" => {
                let kv = parser::key_values(&ins.rest, esc, false).map_err(e)?;
                for (k, v) in kv {
                    let val = match ctx.opts.build_args.get(&k) {
                        Some(b) => Some(b.clone()),
                        None => match v {
                            Some(raw) => Some(x(&raw)?),
                            None => sc.globals.get(&k).cloned(),
                        },
                    };
                    sc.args.insert(k.clone(), val.unwrap_or_default());
                }
                // ARG changes no config; it is part of later cache keys through the env of RUN.
            }
            "LABEL" => {
                let kv = parser::key_values(&ins.rest, esc, true).map_err(e)?;
                let mut text = Vec::new();
                for (k, v) in kv {
                    let k = x(&k)?;
                    let v = x(v.as_deref().unwrap_or(""))?;
                    text.push(format!("{k}={v}"));
                    c.labels.get_or_insert_with(BTreeMap::new).insert(k, v);
                }
                nop(&mut st, format!("LABEL {}", text.join(" ")));
            }
            "MAINTAINER" => {
                st.config.author = Some(x(&ins.rest)?);
                nop(&mut st, format!("MAINTAINER {}", ins.rest));
            }
            "EXPOSE" => {
                let words = parser::expand_words(&ins.rest, esc, &lookup).map_err(e)?;
                let ports = c.exposed_ports.get_or_insert_with(BTreeMap::new);
                let mut text = Vec::new();
                for w in words {
                    let (p, proto) = w.split_once('/').unwrap_or((&w, "tcp"));
                    if p.split('-').any(|x| x.parse::<u16>().is_err()) {
                        return Err(e(format!("invalid containerPort: {p}")));
                    }
                    let key = format!("{p}/{}", proto.to_ascii_lowercase());
                    text.push(key.clone());
                    ports.insert(key, serde_json::json!({}));
                }
                nop(&mut st, format!("EXPOSE {}", text.join(" ")));
            }
            "USER" => {
                let u = x(&ins.rest)?;
                c.user = Some(u.clone());
                nop(&mut st, format!("USER {u}"));
            }
            "STOPSIGNAL" => {
                let s = x(&ins.rest)?;
                c.stop_signal = Some(s.clone());
                nop(&mut st, format!("STOPSIGNAL {s}"));
            }
            "WORKDIR" => {
                let w = x(&ins.rest)?;
                let base = c.working_dir.clone().unwrap_or_else(|| "/".into());
                let w = if w.starts_with('/') {
                    clean_path(&w)
                } else {
                    clean_path(&format!("{base}/{w}"))
                };
                c.working_dir = Some(w.clone());
                let exists = self.view(&st).lookup(&w).is_some();
                if exists || w == "/" {
                    nop(&mut st, format!("WORKDIR {w}"));
                } else {
                    // Create the directory in a layer, as docker does.
                    let key = cache_key(&st, &format!("WORKDIR {w}"), "");
                    let epoch = ctx.opts.source_date_epoch;
                    let created = now_or(epoch);
                    return self.cached(ctx, &key, st, |this, mut st, _out| {
                        let mut lf =
                            layer::make_layer(&this.images.root().join("tmp"), epoch, |t| {
                                let mut acc = String::new();
                                let now = epoch.unwrap_or_else(|| chrono::Utc::now().timestamp());
                                for comp in w.trim_start_matches('/').split('/') {
                                    acc = if acc.is_empty() {
                                        comp.to_string()
                                    } else {
                                        format!("{acc}/{comp}")
                                    };
                                    if this.view(&st).lookup(&acc).is_none() {
                                        t.add_dir(&acc, None, now)?;
                                    }
                                }
                                Ok(())
                            })
                            .map_err(io_err("write layer"))?;
                        this.add_layer(&mut st, &mut lf, format!("WORKDIR {w}"), created)?;
                        Ok(st)
                    });
                }
            }
            "VOLUME" => {
                let vols = match &ins.json {
                    Some(j) => j.iter().map(|s| x(s)).collect::<Result<Vec<_>, _>>()?,
                    None => parser::expand_words(&ins.rest, esc, &lookup).map_err(e)?,
                };
                let v = c.volumes.get_or_insert_with(BTreeMap::new);
                for p in &vols {
                    v.insert(p.clone(), serde_json::json!({}));
                }
                nop(&mut st, format!("VOLUME {vols:?}"));
            }
            "SHELL" => {
                let j = ins
                    .json
                    .clone()
                    .ok_or_else(|| e("SHELL requires the arguments to be in JSON form".into()))?;
                c.shell = Some(j.clone());
                nop(&mut st, format!("SHELL {j:?}"));
            }
            "CMD" | "ENTRYPOINT" => {
                let argv = match &ins.json {
                    Some(j) => j.clone(),
                    None => {
                        let mut v = shell_of(c);
                        v.push(ins.rest.clone());
                        v
                    }
                };
                if ins.keyword == "CMD" {
                    c.cmd = Some(argv.clone());
                    sc.cmd_set = true;
                } else {
                    c.entrypoint = Some(argv.clone());
                    if !sc.cmd_set {
                        c.cmd = None;
                    }
                }
                let text = serde_json::to_string(&argv).expect("json");
                nop(&mut st, format!("{} {text}", ins.keyword));
            }
            "HEALTHCHECK" => {
                let mut h = HealthConfig::default();
                let rest = ins.rest.trim();
                if rest.eq_ignore_ascii_case("none") {
                    h.test = Some(vec!["NONE".into()]);
                } else {
                    let (kw, cmd) = rest
                        .split_once(char::is_whitespace)
                        .ok_or_else(|| e("missing command after HEALTHCHECK CMD".into()))?;
                    if !kw.eq_ignore_ascii_case("cmd") {
                        return Err(e(format!("unknown type for healthcheck: {kw}")));
                    }
                    let cmd = cmd.trim();
                    h.test = Some(match serde_json::from_str::<Vec<String>>(cmd) {
                        Ok(mut j) if cmd.starts_with('[') => {
                            j.insert(0, "CMD".into());
                            j
                        }
                        _ => vec!["CMD-SHELL".into(), cmd.to_string()],
                    });
                    for (k, v) in &ins.flags {
                        let d = || {
                            parse_duration(v)
                                .ok_or_else(|| e(format!("invalid duration for --{k}: {v}")))
                        };
                        match k.as_str() {
                            "interval" => h.interval = Some(d()?),
                            "timeout" => h.timeout = Some(d()?),
                            "start-period" => h.start_period = Some(d()?),
                            "start-interval" => h.start_interval = Some(d()?),
                            "retries" => {
                                h.retries = Some(
                                    v.parse()
                                        .map_err(|_| e(format!("invalid --retries: {v}")))?,
                                )
                            }
                            o => return Err(e(format!("unknown flag: --{o}"))),
                        }
                    }
                }
                c.healthcheck = Some(h);
                nop(&mut st, format!("HEALTHCHECK {}", ins.rest));
            }
            "ONBUILD" => {
                let t = ins.rest.trim().to_string();
                let kw = t
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase();
                if matches!(kw.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                    return Err(e(format!("{kw} isn't allowed as an ONBUILD trigger")));
                }
                c.on_build.get_or_insert_with(Vec::new).push(t.clone());
                nop(&mut st, format!("ONBUILD {t}"));
            }
            "RUN" => return self.run(ctx, sc, st, ins),
            "COPY" | "ADD" => return self.copy(ctx, sc, st, ins),
            "FROM" => return Err(e("unexpected FROM".into())),
            o => return Err(e(format!("unknown instruction: {o}"))),
        }
        if meta {
            self.save_cache_entry(&meta_key, &st)?;
            ctx.cache.entries.insert(meta_key, st.clone());
        }
        Ok(st)
    }

    fn add_layer(
        &self,
        st: &mut StageState,
        lf: &mut layer::LayerFile,
        created_by: String,
        created: String,
    ) -> Result<(), BuildError> {
        let desc = layer::store_layer(&self.images, lf, &st.config.rootfs.diff_ids)?;
        st.config.rootfs.diff_ids.push(lf.diff_id.clone());
        st.layers.push(desc);
        st.layer_sizes.push(lf.size);
        st.config.history.push(HistoryEntry {
            created: Some(created),
            created_by: Some(created_by),
            ..Default::default()
        });
        Ok(())
    }

    /// Looks `key` up in the cache, or runs `f` and records its result.
    fn cached(
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

    fn run(
        &self,
        ctx: &mut Ctx,
        sc: &mut StageCtx,
        st: StageState,
        ins: &Instruction,
    ) -> Result<StageState, BuildError> {
        let df = ctx.df;
        let c = &st.config.config;
        let argv = match &ins.json {
            Some(j) => j.clone(),
            None => {
                let script = if let (Some(h), true) = (
                    ins.heredocs.first(),
                    ins.rest.trim().starts_with("<<") && ins.rest.split_whitespace().count() == 1,
                ) {
                    h.content.clone()
                } else {
                    let mut s = ins.rest.clone();
                    for h in &ins.heredocs {
                        s.push('\n');
                        s.push_str(&h.content);
                        s.push_str(&h.name);
                    }
                    s
                };
                let mut v = shell_of(c);
                v.push(script);
                v
            }
        };
        let esc = df.escape;
        let env = c.env.clone();
        let args = sc.args.clone();
        let lookup = move |n: &str| env_get(&env, n).or_else(|| args.get(n).cloned());
        let workdir = c.working_dir.clone().unwrap_or_else(|| "/".into());
        let mut run_mounts: Vec<PreparedMount> = Vec::new();
        for (k, v) in &ins.flags {
            match k.as_str() {
                "network" => {}
                "mount" => {
                    let v = parser::expand(v, esc, &lookup).map_err(|m| step_err(df, ins, &m))?;
                    let m = mounts::parse(&v).map_err(|e| step_err(df, ins, &e.to_string()))?;
                    run_mounts.push(self.prepare_mount(ctx, ins, m, &workdir)?);
                }
                "security" if v == "sandbox" => {}
                "security" => {
                    return Err(step_err(
                        df,
                        ins,
                        &format!("RUN --security={v} is not supported by barge's builder"),
                    ))
                }
                "device" => {
                    return Err(step_err(
                        df,
                        ins,
                        "RUN --device is not supported by barge's builder",
                    ))
                }
                o => return Err(step_err(df, ins, &format!("unknown flag: --{o}"))),
            }
        }
        // Build args that ENV does not override are in RUN's environment.
        let arg_env: Vec<String> = sc
            .args
            .iter()
            .filter(|(k, _)| env_get(&c.env, k).is_none())
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let network = ins
            .flag("network")
            .map(str::to_string)
            .or_else(|| ctx.opts.network_mode.clone())
            .filter(|n| !n.is_empty() && n != "default")
            .unwrap_or_else(|| "none".into());
        let mut extra = arg_env.join("\n");
        for m in &run_mounts {
            extra.push_str("\0mount ");
            extra.push_str(&m.key);
        }
        let key = cache_key(
            &st,
            &format!("RUN {}", serde_json::to_string(&argv).expect("json")),
            &extra,
        );
        let created_by = match &ins.json {
            Some(_) => format!("RUN {}", serde_json::to_string(&argv).expect("json")),
            None => argv.join(" "),
        };
        let epoch = ctx.opts.source_date_epoch;
        let cache_mounts = mounts::CacheMounts::new(self.dir.join("mounts"));
        self.cached(ctx, &key, st, |this, mut st, out| {
            let parent = this.commit(&st, &[])?;
            // Mounts are set up for this step only; guards unmount and release on drop.
            let mut guards: Vec<MountGuard> = Vec::new();
            let mut specs = Vec::new();
            for m in &run_mounts {
                let (spec, g) = this
                    .setup_mount(m, &cache_mounts)
                    .map_err(|e| step_err(df, ins, &e.to_string()))?;
                specs.push(spec);
                guards.extend(g);
            }
            let targets: Vec<String> = run_mounts.iter().map(|m| m.target.clone()).collect();
            let opts = CreateOptions {
                image: parent,
                cmd: Some(argv.clone()),
                entrypoint: Some(Vec::new()),
                env: arg_env.clone(),
                working_dir: st.config.config.working_dir.clone(),
                user: st.config.config.user.clone(),
                host: HostOptions {
                    network_mode: network.clone(),
                    log_type: "json-file".into(),
                    mounts: specs,
                    extra_hosts: ctx.opts.extra_hosts.clone(),
                    ..Default::default()
                },
                ..Default::default()
            };
            let created = now_or(epoch);
            let ct = this
                .containers
                .create(opts)
                .map_err(|e| step_err(df, ins, &e.to_string()))?;
            let r = (|| -> Result<StageState, BuildError> {
                out(&format!(" ---> Running in {}\n", &ct.id[..12]));
                this.containers
                    .start(&ct.id, 0, &mut |_| {})
                    .map_err(|e| step_err(df, ins, &e.to_string()))?;
                // Stream the step's output while it runs (from its json-file log, reading
                // only what was written since the last poll).
                let mut offset = 0;
                let mut emit = |out: &mut dyn FnMut(&str)| {
                    if let Ok((entries, at)) =
                        barge_container::logs::read_from(&ct.log_path, offset)
                    {
                        for en in &entries {
                            out(&String::from_utf8_lossy(&en.log));
                        }
                        offset = at;
                    }
                };
                loop {
                    let running = this
                        .containers
                        .get(&ct.id)
                        .map(|c| c.state.status == barge_container::Status::Running)
                        .unwrap_or(false);
                    emit(out);
                    if !running {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                let code = this.containers.wait(&ct.id, WaitCondition::NotRunning)?;
                emit(out);
                if code != 0 {
                    return Err(step_err(
                        df,
                        ins,
                        &format!(
                            "The command '{}' returned a non-zero code: {code}",
                            argv.join(" ")
                        ),
                    ));
                }
                let upper = ct.rootfs.parent().expect("container dir").join("upper");
                let mut lf = layer::make_layer(&this.images.root().join("tmp"), epoch, |t| {
                    diff_upper_filtered(&upper, &this.view(&st), &targets, t)
                })
                .map_err(io_err("diff container changes"))?;
                this.add_layer(&mut st, &mut lf, created_by.clone(), created)?;
                Ok(st)
            })();
            let _ = this.containers.remove_with_volumes(&ct.id, true, true);
            drop(guards);
            r
        })
    }

    fn copy(
        &self,
        ctx: &mut Ctx,
        sc: &mut StageCtx,
        st: StageState,
        ins: &Instruction,
    ) -> Result<StageState, BuildError> {
        let df = ctx.df;
        let esc = df.escape;
        let e = |m: String| step_err(df, ins, &m);
        let env = st.config.config.env.clone();
        let args = sc.args.clone();
        let lookup = move |n: &str| env_get(&env, n).or_else(|| args.get(n).cloned());
        let is_add = ins.keyword == "ADD";
        for (k, _) in &ins.flags {
            let ok = match k.as_str() {
                "from" | "chown" | "chmod" | "link" => true,
                "checksum" | "keep-git-dir" => is_add,
                "parents" | "exclude" => {
                    return Err(e(format!(
                        "{} --{k} is not supported by barge's builder yet",
                        ins.keyword
                    )))
                }
                _ => false,
            };
            if !ok {
                return Err(e(format!("unknown flag: --{k}")));
            }
        }
        if ins.flag("keep-git-dir").is_some() {
            return Err(e(
                "ADD --keep-git-dir: ADD of a git repository is not supported by barge's builder"
                    .into(),
            ));
        }
        let link = ins.flag("link").is_some_and(|v| v != "false");
        let mut words = match &ins.json {
            Some(j) => j
                .iter()
                .map(|s| parser::expand(s, esc, &lookup))
                .collect::<Result<Vec<_>, _>>()
                .map_err(e)?,
            None => parser::expand_words(&ins.rest, esc, &lookup).map_err(e)?,
        };
        let heredoc_files: Vec<(String, String)> = ins
            .heredocs
            .iter()
            .map(|h| {
                let content = if h.expand {
                    parser::expand(&h.content, esc, &lookup).unwrap_or_else(|_| h.content.clone())
                } else {
                    h.content.clone()
                };
                (h.name.clone(), content)
            })
            .collect();
        if !heredoc_files.is_empty() {
            words.retain(|w| !w.starts_with("<<"));
        }
        if words.is_empty() || (words.len() < 2 && heredoc_files.is_empty()) {
            return Err(e(format!(
                "{} requires at least two arguments",
                ins.keyword
            )));
        }
        let dest_raw = words.pop().expect("dest");
        let workdir = st
            .config
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".into());
        let dest_is_dir =
            dest_raw.ends_with('/') || words.len() + heredoc_files.len() > 1 || dest_raw == ".";
        let dest = if dest_raw.starts_with('/') {
            clean_path(&dest_raw)
        } else {
            clean_path(&format!("{workdir}/{dest_raw}"))
        };
        // Source root.
        let (_mount, src_root) = match ins.flag("from") {
            Some(f) => {
                let f = parser::expand(f, esc, &lookup).map_err(e)?;
                let sst = self.source_state(ctx, ins, &f)?;
                let view = self.view(&sst);
                let (m, p) = mount_view(&self.images.root().join("tmp"), &view.layers)?;
                (Some(m), p)
            }
            None => (None, ctx.context.to_path_buf()),
        };
        // Expand globs and check the sources; URLs are downloaded (ADD only).
        let mut sources: Vec<(PathBuf, String)> = Vec::new();
        let mut remotes: Vec<Remote> = Vec::new();
        let checksum = match ins.flag("checksum") {
            Some(c) => Some(
                fetch::Checksum::parse(&parser::expand(c, esc, &lookup).map_err(e)?)
                    .map_err(|x| e(x.to_string()))?,
            ),
            None => None,
        };
        for w in &words {
            if ins.flag("from").is_none() && fetch::is_git(w) {
                return Err(e(format!(
                    "{w}: {} of a git repository is not supported by barge's builder",
                    ins.keyword
                )));
            }
            if ins.flag("from").is_none() && fetch::is_url(w) {
                if !is_add {
                    return Err(e("source can't be a URL for COPY".into()));
                }
                remotes.push(Remote {
                    url: w.clone(),
                    file: None,
                });
                continue;
            }
            let rel = clean_path(w);
            if ins.flag("from").is_none() && escapes(w) {
                return Err(e(format!(
                    "forbidden path outside the build context: {w} ()"
                )));
            }
            let matches = glob(&src_root, rel.trim_start_matches('/'));
            if matches.is_empty() {
                return Err(e(format!("{} failed: file not found in build context or excluded by .dockerignore: stat {w}: file does not exist", ins.keyword)));
            }
            for m in matches {
                let p = if m.is_empty() {
                    src_root.clone()
                } else {
                    src_root.join(&m)
                };
                sources.push((p, m));
            }
        }
        if checksum.is_some() && (remotes.len() != 1 || !sources.is_empty()) {
            return Err(e(
                "--checksum requires exactly one source, an http(s) URL".into()
            ));
        }
        let dest_is_dir = dest_is_dir
            || sources.len() + remotes.len() > 1
            || (is_add
                && ins.flag("from").is_none()
                && sources.iter().any(|(p, _)| p.is_file() && is_archive(p)));
        // Owner and mode.
        let view = self.view(&st);
        // An existing directory in the image is a directory destination.
        let dest_is_dir = dest_is_dir
            || view
                .lookup(&dest)
                .and_then(|p| fs::symlink_metadata(p).ok())
                .is_some_and(|m| m.is_dir());
        let owner = match ins.flag("chown") {
            Some(c) => Some(
                resolve_owner(&view, &parser::expand(c, esc, &lookup).map_err(e)?).map_err(e)?,
            ),
            None => None,
        };
        let mode = match ins.flag("chmod") {
            Some(m) => {
                Some(u32::from_str_radix(m, 8).map_err(|_| e(format!("invalid chmod {m}")))?)
            }
            None => None,
        };
        // The directories leading to the destination: (path, existing mode/uid/gid).
        let top = if dest_is_dir {
            dest.clone()
        } else {
            Path::new(&dest)
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|| "/".into())
        };
        let mut ancestors: Vec<(String, Option<DirMeta>)> = Vec::new();
        let mut link_ok = true;
        let mut acc = String::new();
        for comp in top
            .trim_start_matches('/')
            .split('/')
            .filter(|c| !c.is_empty())
        {
            use std::os::unix::fs::MetadataExt;
            acc = format!("{acc}/{comp}");
            let md = view.lookup(&acc).and_then(|p| fs::symlink_metadata(p).ok());
            if md.as_ref().is_some_and(|m| !m.is_dir()) {
                link_ok = false; // a symlink on the way: the layer depends on it
            }
            ancestors.push((
                acc.clone(),
                md.map(|m| (m.mode() & 0o7777, m.uid(), m.gid())),
            ));
        }
        let link = link && link_ok;
        // Content digest for the cache key.
        let mut h = Sha256::new();
        for (p, rel) in &sources {
            h.update(rel.as_bytes());
            hash_tree(p, &mut h).map_err(io_err(format!("read {}", p.display())))?;
        }
        for (n, c) in &heredoc_files {
            h.update(n.as_bytes());
            h.update(c.as_bytes());
        }
        let tmpdir = self.images.root().join("tmp");
        fs::create_dir_all(&tmpdir).map_err(io_err("create temp dir"))?;
        for r in &mut remotes {
            h.update(r.url.as_bytes());
            match &checksum {
                // The checksum is the key: a cached step downloads nothing.
                Some(c) => h.update(format!("{}:{}", c.algorithm, c.hex).as_bytes()),
                None => {
                    let (mut f, info) = self
                        .download(&r.url, &tmpdir)
                        .map_err(|x| e(x.to_string()))?;
                    let d = fetch::digest_file(f.as_file_mut(), "sha256")
                        .map_err(|x| e(x.to_string()))?;
                    h.update(d.as_bytes());
                    h.update(format!("{:?}", info.last_modified).as_bytes());
                    h.update(
                        fetch::file_name(&r.url, info.content_disposition.as_deref()).as_bytes(),
                    );
                    r.file = Some((f, info));
                }
            }
        }
        let flags: Vec<String> = ins
            .flags
            .iter()
            .map(|(k, v)| format!("--{k}={v}"))
            .collect();
        let text = format!("{} {} {:?} {}", ins.keyword, flags.join(" "), words, dest);
        let content = barge_image::digest::hex(&h.finalize());
        let epoch = ctx.opts.source_date_epoch;
        let created_by = format!(
            "/bin/sh -c #(nop) {} {} in {dest} ",
            ins.keyword,
            words.join(" ")
        );
        let extract = is_add && ins.flag("from").is_none();
        let link_text = format!("{text} dir={dest_is_dir} owner={owner:?} parents={ancestors:?}");
        // Writes the layer's entries. Without --link only missing parent directories are
        // written; with it every parent is (existing ones with their owner and mode, which are
        // part of the key), so the layer does not depend on what the parent holds.
        let fill = move |link: bool,
                         remotes: &[Remote],
                         t: &mut LayerTar<HashingWriter<BufWriter<fs::File>>>|
              -> std::io::Result<()> {
            let now = epoch.unwrap_or_else(|| chrono::Utc::now().timestamp());
            for (dir, existing) in &ancestors {
                match existing {
                    None => t.add_dir(dir, if *dir == top { owner } else { None }, now)?,
                    Some((m, u, g)) if link => t.add_dir_mode(dir, *m, (*u, *g), now)?,
                    Some(_) => {}
                }
            }
            for (n, content) in &heredoc_files {
                let target = if dest_is_dir {
                    format!("{dest}/{n}")
                } else {
                    dest.clone()
                };
                t.add_bytes(
                    &target,
                    content.as_bytes(),
                    owner,
                    mode.unwrap_or(0o644),
                    now,
                )?;
            }
            for (p, rel) in &sources {
                let md = fs::symlink_metadata(p)?;
                if md.is_dir() {
                    add_tree(t, p, &dest, owner, mode)?;
                } else if extract && is_archive(p) {
                    // ADD extracts local tar archives (plain, gzip, zstd) into the destination.
                    extract_into(t, p, &dest)?;
                } else {
                    let base = Path::new(rel)
                        .file_name()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let target = if dest_is_dir {
                        format!("{dest}/{base}")
                    } else {
                        dest.clone()
                    };
                    t.add_path(p, &target, Some(owner.unwrap_or((0, 0))), mode)?;
                }
            }
            for r in remotes {
                let Some((file, info)) = &r.file else {
                    continue;
                };
                let name = fetch::file_name(&r.url, info.content_disposition.as_deref());
                let target = if dest_is_dir {
                    format!("{dest}/{name}")
                } else {
                    dest.clone()
                };
                let mtime = info
                    .last_modified
                    .as_deref()
                    .and_then(fetch::http_time)
                    .unwrap_or(now);
                file.as_file().set_modified(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime.max(0) as u64),
                )?;
                t.add_path(
                    file.path(),
                    &target,
                    Some(owner.unwrap_or((0, 0))),
                    Some(mode.unwrap_or(0o600)),
                )?;
            }
            Ok(())
        };
        let download_all = |this: &Builder, remotes: &mut Vec<Remote>| -> Result<(), BuildError> {
            for r in remotes.iter_mut().filter(|r| r.file.is_none()) {
                let (mut f, info) = this
                    .download(&r.url, &tmpdir)
                    .map_err(|x| e(x.to_string()))?;
                if let Some(c) = &checksum {
                    c.verify(f.as_file_mut()).map_err(|x| e(x.to_string()))?;
                }
                r.file = Some((f, info));
            }
            Ok(())
        };
        if link {
            // The key leaves the parent chain out.
            let key = link_key(&link_text, &content);
            return self.cached_link(ctx, &key, st, move |this| {
                let mut remotes = remotes;
                download_all(this, &mut remotes)?;
                let created = now_or(epoch);
                let lf = layer::make_layer(&this.images.root().join("tmp"), epoch, |t| {
                    fill(true, &remotes, t)
                })
                .map_err(io_err("write layer"))?;
                Ok((
                    lf,
                    HistoryEntry {
                        created: Some(created),
                        created_by: Some(created_by),
                        ..Default::default()
                    },
                ))
            });
        }
        let key = cache_key(&st, &text, &content);
        self.cached(ctx, &key, st, move |this, mut st, _out| {
            let mut remotes = remotes;
            download_all(this, &mut remotes)?;
            let created = now_or(epoch);
            let mut lf = layer::make_layer(&this.images.root().join("tmp"), epoch, |t| {
                fill(false, &remotes, t)
            })
            .map_err(io_err("write layer"))?;
            this.add_layer(&mut st, &mut lf, created_by, created)?;
            Ok(st)
        })
    }

    /// Downloads `url` into a temp file under `tmp` through the configured fetcher.
    fn download(
        &self,
        url: &str,
        tmp: &Path,
    ) -> Result<(tempfile::NamedTempFile, fetch::Fetched), fetch::FetchError> {
        let f = self.fetcher.as_ref().ok_or(fetch::FetchError::NoFetcher)?;
        let mut t = tempfile::NamedTempFile::new_in(tmp)?;
        let info =
            f.fetch(url, t.as_file_mut())
                .map_err(|message| fetch::FetchError::Download {
                    url: url.to_string(),
                    message,
                })?;
        Ok((t, info))
    }

    /// Like [`Builder::cached`] for `--link` layers: a hit is the stored layer put on top of
    /// whatever the parent is now (its snapshot is unpacked for the new chain if needed).
    fn cached_link(
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

/// Mode, uid and gid of an existing directory.
type DirMeta = (u32, u32, u32);

/// A URL source of `ADD`, once downloaded.
struct Remote {
    url: String,
    file: Option<(tempfile::NamedTempFile, fetch::Fetched)>,
}

/// A `RUN --mount` with its target resolved and what it reads pinned down.
struct PreparedMount {
    mount: RunMount,
    /// Absolute path in the container.
    target: String,
    /// The state named by `from=` (a stage or an image).
    from: Option<StageState>,
    /// The build context (what a bind mount without `from` reads).
    context: PathBuf,
    /// What a new cache directory starts from (part of its store key).
    origin: String,
    /// This mount's part of the step's cache key.
    key: String,
}

/// What keeps a step's mount alive; released (unmounted, unlocked, removed) on drop.
#[allow(dead_code)] // held for their Drop
enum MountGuard {
    Mount(Mounted),
    Lease(mounts::CacheLease),
    Temp(tempfile::TempDir),
}

/// Chain ID of a state's top layer (`scratch` when it has none).
fn top_chain(st: &StageState) -> String {
    barge_image::chain_ids(&st.config.rootfs.diff_ids)
        .pop()
        .unwrap_or_else(|| "scratch".into())
}

/// Resolves `source` inside `root` (symlinks followed inside it); it must exist.
fn resolve_source(root: &Path, source: &str) -> Result<PathBuf, String> {
    let p =
        barge_container::fsops::resolve_in_root(root, source, true).map_err(|e| e.to_string())?;
    if fs::symlink_metadata(&p).is_err() {
        return Err(format!(
            "failed to compute cache key: \"/{}\" not found",
            source.trim_start_matches('/')
        ));
    }
    Ok(p)
}

impl Builder {
    /// The state of a stage (by name or index) or, failing that, an image.
    fn source_state(
        &self,
        ctx: &mut Ctx,
        ins: &Instruction,
        name: &str,
    ) -> Result<StageState, BuildError> {
        let stage = ctx
            .names
            .get(&name.to_ascii_lowercase())
            .copied()
            .or_else(|| name.parse::<usize>().ok());
        match stage.and_then(|i| ctx.stages_done.get(&i)) {
            Some((s, _)) => Ok(s.clone()),
            None => Ok(self.base_state(ctx, ins, name)?.0),
        }
    }

    /// Resolves a `RUN --mount` and computes its part of the cache key: the definition, plus
    /// the content digest of a bind mount's source (from the context) or the chain ID of the
    /// stage/image it comes from. A cache mount's content is not part of it.
    fn prepare_mount(
        &self,
        ctx: &mut Ctx,
        ins: &Instruction,
        mount: RunMount,
        workdir: &str,
    ) -> Result<PreparedMount, BuildError> {
        let e = |m: String| step_err(ctx.df, ins, &m);
        let t = mount.target();
        let target = if t.starts_with('/') {
            clean_path(t)
        } else {
            clean_path(&format!("{workdir}/{t}"))
        };
        if target == "/" {
            return Err(e("a mount cannot target /".into()));
        }
        let from = match mount.from() {
            Some(f) => Some(self.source_state(ctx, ins, f)?),
            None => None,
        };
        let from_chain = from.as_ref().map(top_chain);
        let (origin, key) = match &mount {
            RunMount::Bind { source, rw, .. } => {
                let what = match &from_chain {
                    Some(c) => format!("from={c}"),
                    None => {
                        let p = resolve_source(ctx.context, source).map_err(e)?;
                        let mut h = Sha256::new();
                        hash_tree(&p, &mut h).map_err(io_err(format!("read {}", p.display())))?;
                        format!("context={}", barge_image::digest::hex(&h.finalize()))
                    }
                };
                (
                    String::new(),
                    format!("bind target={target} source={source} rw={rw} {what}"),
                )
            }
            RunMount::Cache {
                id,
                sharing,
                source,
                mode,
                uid,
                gid,
                readonly,
                ..
            } => {
                let origin = match &from_chain {
                    Some(c) => format!("from={c} source={source}"),
                    None => format!("empty mode={mode:o} uid={uid} gid={gid}"),
                };
                let key = format!(
                    "cache target={target} id={id} sharing={} ro={readonly} {origin}",
                    sharing.as_str()
                );
                (origin, key)
            }
            RunMount::Tmpfs { size, .. } => (
                String::new(),
                format!("tmpfs target={target} size={}", size.unwrap_or(0)),
            ),
        };
        Ok(PreparedMount {
            mount,
            target,
            from,
            context: ctx.context.to_path_buf(),
            origin,
            key,
        })
    }

    /// Makes the container mount for a prepared `RUN --mount`.
    fn setup_mount(
        &self,
        m: &PreparedMount,
        cache: &mounts::CacheMounts,
    ) -> Result<(MountSpec, Vec<MountGuard>), BuildError> {
        let tmp = self.images.root().join("tmp");
        fs::create_dir_all(&tmp).map_err(io_err("create temp dir"))?;
        let mut guards = Vec::new();
        let root = match &m.from {
            Some(st) => {
                let (g, p) = mount_view(&tmp, &self.view(st).layers)?;
                guards.push(MountGuard::Mount(g));
                p
            }
            None => m.context.clone(),
        };
        let bind = |source: &Path, read_only: bool| MountSpec {
            kind: MountType::Bind,
            source: source.to_string_lossy().into_owned(),
            target: m.target.clone(),
            read_only,
            ..Default::default()
        };
        let spec = match &m.mount {
            RunMount::Bind { source, rw, .. } => {
                let src = resolve_source(&root, source).map_err(BuildError::Invalid)?;
                if *rw {
                    // Writes go to a throw-away copy (an overlay for directories).
                    let work = tempfile::Builder::new()
                        .prefix("mount-rw-")
                        .tempdir_in(&tmp)
                        .map_err(io_err("create mount dir"))?;
                    let path = if src.is_dir() {
                        let (upper, wdir) = (work.path().join("upper"), work.path().join("work"));
                        fs::create_dir(&upper).map_err(io_err("create mount dir"))?;
                        fs::create_dir(&wdir).map_err(io_err("create mount dir"))?;
                        let (g, p) = mount_overlay(&tmp, &[src], Some((&upper, &wdir)))?;
                        guards.push(MountGuard::Temp(work));
                        guards.push(MountGuard::Mount(g));
                        p
                    } else {
                        let p = work.path().join("file");
                        fs::copy(&src, &p).map_err(io_err("copy bind source"))?;
                        guards.push(MountGuard::Temp(work));
                        p
                    };
                    bind(&path, false)
                } else {
                    bind(&src, true)
                }
            }
            RunMount::Cache {
                id,
                sharing,
                source,
                mode,
                uid,
                gid,
                readonly,
                ..
            } => {
                let key = mounts::CacheMounts::key(id, &m.origin);
                let from = m.from.is_some();
                let init = |dir: &Path| -> std::io::Result<()> {
                    if from {
                        let src = resolve_source(&root, source).map_err(std::io::Error::other)?;
                        mounts::copy_tree(&src, dir)
                    } else {
                        mounts::init_empty(dir, *mode, *uid, *gid)
                    }
                };
                let lease = cache
                    .acquire(&key, id, *sharing, &init)
                    .map_err(|e| BuildError::Invalid(e.to_string()))?;
                let spec = bind(&lease.path, *readonly);
                guards.push(MountGuard::Lease(lease));
                spec
            }
            RunMount::Tmpfs { size, .. } => MountSpec {
                kind: MountType::Tmpfs,
                target: m.target.clone(),
                tmpfs_options: Some(TmpfsOptions {
                    size_bytes: size.unwrap_or(0) as i64,
                    mode: 0,
                }),
                ..Default::default()
            },
        };
        // Released in reverse order (an overlay before the view under it).
        guards.reverse();
        Ok((spec, guards))
    }
}

struct StageCtx {
    args: BTreeMap<String, String>,
    cmd_set: bool,
    globals: BTreeMap<String, String>,
}

fn escapes(w: &str) -> bool {
    let mut depth: i32 = 0;
    for c in w.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

fn shell_of(c: &barge_image::ContainerConfig) -> Vec<String> {
    c.shell
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
}

fn short(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

fn fmt_platform(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

fn builtin_args() -> BTreeMap<String, String> {
    let p = host_platform();
    let mut m = BTreeMap::new();
    for prefix in ["TARGET", "BUILD"] {
        m.insert(format!("{prefix}PLATFORM"), fmt_platform(&p));
        m.insert(format!("{prefix}OS"), p.os.clone());
        m.insert(format!("{prefix}ARCH"), p.architecture.clone());
        m.insert(
            format!("{prefix}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        );
    }
    m
}

fn step_err(df: &Dockerfile, ins: &Instruction, m: &str) -> BuildError {
    BuildError::Step {
        file: df.file.clone(),
        line: ins.line,
        instruction: ins.keyword.clone(),
        message: m.to_string(),
    }
}

fn cache_key(st: &StageState, text: &str, extra: &str) -> String {
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
fn link_key(text: &str, content: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"link\0");
    h.update(text.as_bytes());
    h.update(b"\0");
    h.update(content.as_bytes());
    format!("sha256:{}", barge_image::digest::hex(&h.finalize()))
}

/// Mount points the runtime creates in a container's root when the image lacks them.
const RUNTIME_MOUNTPOINTS: &[&str] = &[
    "dev",
    "proc",
    "sys",
    "etc/hostname",
    "etc/hosts",
    "etc/resolv.conf",
    "sbin/docker-init",
];

/// The upper dir as a layer, minus the (empty) mount points the runtime created (its own and
/// those of `RUN --mount` targets) and the directories that were only copied up for them.
fn diff_upper_filtered<W: std::io::Write>(
    upper: &Path,
    lower: &RootView,
    mount_targets: &[String],
    t: &mut LayerTar<W>,
) -> std::io::Result<()> {
    let skip = |rel: &str, md: &fs::Metadata| {
        (RUNTIME_MOUNTPOINTS.contains(&rel)
            || mount_targets
                .iter()
                .any(|m| m.trim_start_matches('/') == rel))
            && lower.lookup(rel).is_none()
            && ((md.is_file() && md.len() == 0)
                || (md.is_dir()
                    && fs::read_dir(upper.join(rel))
                        .map(|mut d| d.next().is_none())
                        .unwrap_or(false)))
    };
    layer::diff_upper_filtered(upper, t, &skip, &|rel| lower.lookup(rel).is_some())
}

/// Hashes a file tree's names, modes and contents.
fn hash_tree(p: &Path, h: &mut Sha256) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let md = fs::symlink_metadata(p)?;
    h.update(md.mode().to_le_bytes());
    if md.is_dir() {
        for e in layer::sorted_entries(p)? {
            h.update(e.file_name().as_encoded_bytes());
            h.update(b"/");
            hash_tree(&e.path(), h)?;
        }
    } else if md.file_type().is_symlink() {
        h.update(fs::read_link(p)?.as_os_str().as_encoded_bytes());
    } else if md.is_file() {
        let mut f = fs::File::open(p)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(())
}

/// Whether `p` is a (possibly compressed) tar archive: its first header's checksum is valid.
fn is_archive(p: &Path) -> bool {
    let Ok(f) = fs::File::open(p) else {
        return false;
    };
    let Ok((_, mut r)) = barge_image::digest::decompressed(f) else {
        return false;
    };
    let mut buf = [0u8; 512];
    if r.read_exact(&mut buf).is_err() {
        return false;
    }
    let h = tar::Header::from_byte_slice(&buf);
    let Ok(want) = h.cksum() else { return false };
    let sum: u32 = buf
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                b' ' as u32
            } else {
                *b as u32
            }
        })
        .sum();
    sum == want && buf.iter().any(|b| *b != 0)
}

/// Copies the entries of archive `p` into the layer under `dest`.
fn extract_into<W: std::io::Write>(
    t: &mut LayerTar<W>,
    p: &Path,
    dest: &str,
) -> std::io::Result<()> {
    let (_, r) = barge_image::digest::decompressed(fs::File::open(p)?)?;
    let mut a = tar::Archive::new(r);
    let under = |n: &Path| -> Option<String> {
        let n = n.to_string_lossy();
        if escapes(&n) {
            return None;
        }
        let c = clean_path(&format!("{dest}/{n}"));
        Some(c.trim_start_matches('/').to_string())
    };
    for e in a.entries()? {
        let mut e = e?;
        let path = e.path()?.into_owned();
        let Some(name) = under(&path) else { continue };
        if name.is_empty() {
            continue;
        }
        let mut h = e.header().clone();
        if h.uid().is_err() {
            h.set_uid(0);
        }
        if h.gid().is_err() {
            h.set_gid(0);
        }
        if h.mtime().is_err() {
            h.set_mtime(0);
        }
        if let Some(ep) = t.epoch {
            if h.mtime().map(|m| m as i64 > ep).unwrap_or(false) {
                h.set_mtime(ep.max(0) as u64);
            }
        }
        match h.entry_type() {
            tar::EntryType::Link => {
                let target = e.link_name()?.map(|l| l.into_owned()).unwrap_or_default();
                let Some(target) = under(&target) else {
                    continue;
                };
                t.tar.append_link(&mut h, &name, target)?;
            }
            tar::EntryType::Symlink => {
                let target = e.link_name()?.map(|l| l.into_owned()).unwrap_or_default();
                t.tar.append_link(&mut h, &name, target)?;
            }
            tar::EntryType::Directory => {
                t.tar
                    .append_data(&mut h, format!("{name}/"), std::io::empty())?;
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => {}
            _ => {
                t.tar.append_data(&mut h, &name, &mut e)?;
            }
        }
    }
    Ok(())
}

/// Adds the contents of directory `dir` under `dest`.
fn add_tree<W: std::io::Write>(
    t: &mut LayerTar<W>,
    dir: &Path,
    dest: &str,
    owner: Option<(u32, u32)>,
    mode: Option<u32>,
) -> std::io::Result<()> {
    for e in layer::sorted_entries(dir)? {
        let name = format!(
            "{}/{}",
            dest.trim_end_matches('/'),
            e.file_name().to_string_lossy()
        );
        let p = e.path();
        t.add_path(&p, &name, Some(owner.unwrap_or((0, 0))), mode)?;
        if fs::symlink_metadata(&p)?.is_dir() {
            add_tree(t, &p, &name, owner, mode)?;
        }
    }
    Ok(())
}

/// Matches a glob pattern (relative, `/`-separated) against `root`; returns relative paths.
fn glob(root: &Path, pat: &str) -> Vec<String> {
    let comps: Vec<&str> = pat.split('/').filter(|c| !c.is_empty()).collect();
    let mut cur = vec![String::new()];
    for c in comps {
        let mut next = Vec::new();
        let wild = c.contains(['*', '?', '[']);
        for base in &cur {
            let dir = if base.is_empty() {
                root.to_path_buf()
            } else {
                root.join(base)
            };
            if wild {
                if let Ok(entries) = layer::sorted_entries(&dir) {
                    for e in entries {
                        let n = e.file_name().to_string_lossy().into_owned();
                        if crate::ignore::match_component(c, &n) {
                            next.push(if base.is_empty() {
                                n
                            } else {
                                format!("{base}/{n}")
                            });
                        }
                    }
                }
            } else {
                let rel = if base.is_empty() {
                    c.to_string()
                } else {
                    format!("{base}/{c}")
                };
                if fs::symlink_metadata(root.join(&rel)).is_ok() {
                    next.push(rel);
                }
            }
        }
        cur = next;
    }
    if cur.len() == 1 && cur[0].is_empty() && !root.exists() {
        return Vec::new();
    }
    cur
}

/// Resolves `user[:group]` (names through the image's /etc/passwd and /etc/group).
fn resolve_owner(view: &RootView, spec: &str) -> Result<(u32, u32), String> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |file: &str, name: &str| -> Option<(u32, u32)> {
        let text = view.read(file)?;
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() >= 3 && f[0] == name {
                Some((
                    f[2].parse().ok()?,
                    f.get(3).and_then(|g| g.parse().ok()).unwrap_or(0),
                ))
            } else {
                None
            }
        })
    };
    let (uid, pgid) = match u.parse::<u32>() {
        Ok(n) => (n, None),
        Err(_) => {
            let (uid, gid) = lookup("/etc/passwd", u).ok_or_else(|| {
                format!("unable to find user {u}: no matching entries in passwd file")
            })?;
            (uid, Some(gid))
        }
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                lookup("/etc/group", g)
                    .ok_or_else(|| {
                        format!("unable to find group {g}: no matching entries in group file")
                    })?
                    .0
            }
        },
        None => pgid.unwrap_or(uid),
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Some(5_000_000_000));
        assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Some(500_000_000));
        assert_eq!(parse_duration("x"), None);
    }

    #[test]
    fn paths() {
        assert_eq!(clean_path("/a/./b/../c/"), "/a/c");
        assert!(escapes("../x"));
        assert!(escapes("a/../../x"));
        assert!(!escapes("a/../x"));
    }

    #[test]
    fn globbing() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("src/sub")).unwrap();
        fs::write(d.path().join("a.txt"), "a").unwrap();
        fs::write(d.path().join("b.txt"), "b").unwrap();
        fs::write(d.path().join("src/sub/c.rs"), "c").unwrap();
        assert_eq!(glob(d.path(), "*.txt"), ["a.txt", "b.txt"]);
        assert_eq!(glob(d.path(), "src/*/c.rs"), ["src/sub/c.rs"]);
        assert_eq!(glob(d.path(), "missing"), Vec::<String>::new());
        assert_eq!(glob(d.path(), ""), [""]);
    }

    #[test]
    fn owners() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("etc")).unwrap();
        fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1234:1235::/app:/bin/sh\n",
        )
        .unwrap();
        fs::write(d.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let v = RootView {
            layers: vec![d.path().to_path_buf()],
        };
        assert_eq!(resolve_owner(&v, "1:2"), Ok((1, 2)));
        assert_eq!(resolve_owner(&v, "7"), Ok((7, 7)));
        assert_eq!(resolve_owner(&v, "app"), Ok((1234, 1235)));
        assert_eq!(resolve_owner(&v, "app:staff"), Ok((1234, 50)));
        assert!(resolve_owner(&v, "nobody").is_err());
    }
}
