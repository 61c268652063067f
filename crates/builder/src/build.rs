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
//!
//! The executor is split along its concerns, each a submodule with one `impl Builder` block
//! (or helpers) for it:
//! - `cache`: the layer cache file, cache keys, cached and `--link` steps, `builder prune`;
//! - `view`: read-only views of a state's root (snapshot dirs, overlay mounts);
//! - `stage`: `FROM` (base states), a stage's steps, and the per-instruction dispatch;
//! - `run`: `RUN` as a container, with its `--mount`s;
//! - `copy`: `COPY`/`ADD` (context, stages, URLs, archives, `--chown`/`--chmod`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use barge_container::Containers;
use barge_image::digest::{sha256_digest, Descriptor, Manifest};
use barge_image::{HistoryEntry, ImageConfigFile, ImageError, ImageStore, Platform, Reference};
use serde::{Deserialize, Serialize};

use crate::fetch;
use crate::layer;
use crate::mounts;
use crate::parser::{self, Dockerfile, Instruction, ParseError};

mod cache;
mod copy;
mod run;
mod stage;
mod view;

use cache::{cache_key, link_key, CacheFile};
use copy::hash_tree;
use view::{mount_overlay, mount_view, Mounted, RootView};

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
    /// A `RUN` step's command exited non-zero (`code`, sent as `errorDetail.code`).
    #[error("{file}:{line}: RUN: The command '{command}' returned a non-zero code: {code}")]
    RunFailed {
        file: String,
        line: usize,
        command: String,
        code: i64,
    },
    #[error("{0}")]
    Invalid(String),
    /// [`BuildOptions::cancelled`] was set (dockerd's words for a cancelled build).
    #[error("context canceled")]
    Cancelled,
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

impl BuildError {
    /// The exit code of a failed `RUN` step.
    pub fn exit_code(&self) -> Option<i64> {
        match self {
            BuildError::RunFailed { code, .. } => Some(*code),
            _ => None,
        }
    }
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
    /// `--cache-from` (the API's `cachefrom`): when not empty, a step is taken from the cache
    /// only if its result is in one of these images' histories (dockerd's classic builder
    /// then consults these images instead of the local cache); names that do not resolve
    /// are ignored, as dockerd does.
    pub cache_from: Vec<String>,
    /// Set when whoever asked for the build has gone (dockerd cancels a build whose client
    /// disconnects): the build stops at its next step, a running `RUN` is killed.
    pub cancelled: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl BuildOptions {
    fn check_cancelled(&self) -> Result<(), BuildError> {
        if self.cancelled.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(BuildError::Cancelled);
        }
        Ok(())
    }
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

    /// Builds `context` (a directory: the build's own copy, as the `.dockerignore` and
    /// Dockerfile are removed from it when it excludes them) and reports progress lines
    /// through `out`.
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
        // Read inside the context only (a `Dockerfile -> /etc/shadow` link resolves in it, as
        // dockerd's `FollowSymlinkInScope`).
        let read = || -> std::io::Result<String> {
            let root =
                barge_archive::inroot::InRoot::open(context).map_err(std::io::Error::other)?;
            let mut f = root.open_file(Path::new(&rel)).map_err(|e| match e {
                barge_archive::inroot::InRootError::Io { source, .. } => source,
                e => std::io::Error::other(e),
            })?;
            let mut text = String::new();
            std::io::Read::read_to_string(&mut f, &mut text)?;
            Ok(text)
        };
        let text = read().map_err(|e| {
            // dockerd's wording (`remotecontext`), with the cause only when it is not absence.
            if e.kind() == std::io::ErrorKind::NotFound {
                BuildError::Invalid(format!("Cannot locate specified Dockerfile: {file}"))
            } else {
                BuildError::Invalid(format!("Cannot locate specified Dockerfile: {file}: {e}"))
            }
        })?;
        // Read, the Dockerfile and `.dockerignore` leave the context if it excludes them.
        crate::context::remove_ignored_control_files(context, &rel)
            .map_err(io_err("remove ignored files from the build context"))?;
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
            } else if !opts.cache_from.is_empty() {
                self.load_cache()
                    .only_from(&self.cache_sources(&opts.cache_from))
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
}

struct StageCtx {
    args: BTreeMap<String, String>,
    cmd_set: bool,
    globals: BTreeMap<String, String>,
}

/// Whether a context-relative path leaves the context (`../x`, `a/../../x`).
fn escapes(w: &str) -> bool {
    barge_archive::inroot::clean_entry_name(w.as_bytes()).is_none()
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
}
