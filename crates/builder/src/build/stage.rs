//! Stages and steps: a stage's base state (`FROM`: `scratch`, an earlier stage or a store
//! image), its ONBUILD triggers and instructions, and the dispatch of one instruction
//! (metadata instructions here; `RUN` and `COPY`/`ADD` in their modules).
//!
//! **Invariants:** a step is looked up in the cache before it runs and recorded after it
//! (metadata instructions keyed by the parent state, their text and the ARGs in scope); layers
//! come only from `RUN`, `COPY`/`ADD` and a `WORKDIR` that has to create its directory.

use std::collections::BTreeMap;

use barge_image::digest::Manifest;
use barge_image::{HealthConfig, HistoryEntry, ImageConfigFile, Platform};

use crate::layer;
use crate::parser::{self, Instruction};

use super::*;

impl Builder {
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

    pub(super) fn run_stage(
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
            ctx.opts.check_cancelled()?;
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

    /// The state of a stage (by name or index) or, failing that, an image.
    pub(super) fn source_state(
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
}
