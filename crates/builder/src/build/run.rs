//! `RUN`: the step runs as an ordinary container through `barge-container` (same isolation),
//! with its `--mount`s prepared (cache key part) and set up (binds, tmpfs, cache dirs); the
//! container's overlay `upper/` becomes the step's layer.
//!
//! **Invariants:** mounts never reach the layer (their mount points, and the runtime's, are
//! filtered out of the diff) and are released when the step ends, in reverse order.

use std::fs;
use std::path::{Path, PathBuf};

use barge_container::mounts::{MountSpec, MountType, TmpfsOptions};
use barge_container::{CreateOptions, HostOptions, WaitCondition};
use sha2::{Digest, Sha256};

use crate::layer::{self, LayerTar};
use crate::mounts::{self, RunMount};
use crate::parser::{self, Instruction};

use super::*;

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
    let p = barge_archive::inroot::resolve_path(root, source, true).map_err(|e| e.to_string())?;
    if fs::symlink_metadata(&p).is_err() {
        return Err(format!(
            "failed to compute cache key: \"/{}\" not found",
            source.trim_start_matches('/')
        ));
    }
    Ok(p)
}

impl Builder {
    pub(super) fn run(
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
        // Docker's predefined proxy ARGs: given as build args, they are in RUN's environment
        // without an ARG instruction, and (undeclared) stay out of the cache key and history.
        let proxy_env: Vec<String> = ctx
            .opts
            .build_args
            .iter()
            .filter(|(k, _)| {
                PREDEFINED_PROXY_ARGS.contains(&k.as_str())
                    && !sc.args.contains_key(*k)
                    && env_get(&c.env, k).is_none()
            })
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
        let cancelled = ctx.opts.cancelled.clone();
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
                env: arg_env.iter().chain(&proxy_env).cloned().collect(),
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
                            let text = String::from_utf8_lossy(&en.log);
                            if en.stream == "stderr" {
                                // dockerd's classic builder colours a step's stderr red.
                                out(&format!("\x1b[91m{text}\x1b[0m"));
                            } else {
                                out(&text);
                            }
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
                    if cancelled.load(std::sync::atomic::Ordering::Relaxed) {
                        // The container is killed and removed below, with the others.
                        return Err(BuildError::Cancelled);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                let code = this.containers.wait(&ct.id, WaitCondition::NotRunning)?;
                emit(out);
                if code != 0 {
                    return Err(BuildError::RunFailed {
                        file: df.file.clone(),
                        line: ins.line,
                        command: argv.join(" "),
                        code,
                    });
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

/// Docker's predefined ARGs (the proxy variables): usable in `RUN` without an `ARG`
/// instruction. <https://docs.docker.com/reference/dockerfile/#predefined-args>
const PREDEFINED_PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];
