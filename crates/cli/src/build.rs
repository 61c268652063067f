//! `barge build` and `barge builder prune`: the context is sent as a tar (honouring
//! `.dockerignore`, as docker's client does) to `POST /build`.

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::Result;
use clap::{Args, Subcommand};
use hyper::Method;

use crate::build_progress::{terminal_width, TtyProgress};
use crate::client::{self, for_each_json, query, Client};
use crate::status;

#[derive(Debug, Args)]
#[command(override_usage = "barge build [OPTIONS] PATH")]
pub struct BuildArgs {
    /// Name of the Dockerfile (default: "PATH/Dockerfile")
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// Name and optionally a tag in the "name:tag" format
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Set build-time variables
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use cache when building the image
    #[arg(long)]
    pub no_cache: bool,
    /// Set metadata for an image
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Set the networking mode for the RUN instructions during build
    #[arg(long)]
    pub network: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Write the image ID to the file
    #[arg(long)]
    pub iidfile: Option<String>,
    /// Suppress the build output and print image ID on success
    #[arg(short, long)]
    pub quiet: bool,
    /// Type of progress output ("auto", "plain", "tty", "quiet"): "auto" is "tty" when
    /// stdout is a terminal (a live view of the running step), else "plain" (the step log)
    #[arg(long, default_value = "auto")]
    pub progress: String,
    /// Build context directory
    pub path: String,
}

#[derive(Debug, Subcommand)]
pub enum BuilderCmd {
    /// Remove build cache
    Prune {
        /// Do not prompt for confirmation
        #[arg(short, long)]
        force: bool,
        /// Remove all unused build cache
        #[arg(short, long)]
        all: bool,
    },
}

/// `barge build`.
pub async fn build(c: &Client, a: BuildArgs) -> Result<i32> {
    let ctx = Path::new(&a.path);
    if !ctx.is_dir() {
        return Err(status(
            1,
            format!("unable to prepare context: path {:?} not found", a.path),
        ));
    }
    // The Dockerfile: relative to the context, or sent into it when outside.
    let (df_rel, df_outside) = match &a.file {
        None => ("Dockerfile".to_string(), None),
        Some(f) => {
            let p = Path::new(f);
            let abs = std::fs::canonicalize(p)
                .map_err(|e| status(1, format!("unable to prepare context: {f}: {e}")))?;
            let cabs = std::fs::canonicalize(ctx)?;
            match abs.strip_prefix(&cabs) {
                Ok(r) => (r.to_string_lossy().into_owned(), None),
                Err(_) => (".dockerfile.barge".to_string(), Some(abs)),
            }
        }
    };
    let ignore = barge_archive::context::ignore_for(ctx, a.file.as_deref().map(Path::new));
    let mut data = barge_archive::context::write_tar(ctx, &ignore, &df_rel, Vec::new())?;
    if let Some(p) = df_outside {
        // Re-open the archive to append the Dockerfile (drop the two end blocks first).
        data.truncate(data.len().saturating_sub(1024));
        let mut b = tar::Builder::new(data);
        b.append_path_with_name(&p, &df_rel)?;
        data = b.into_inner()?;
    }
    let mut build_args = serde_json::Map::new();
    for ba in &a.build_args {
        match ba.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_string(), v.into()),
            None => build_args.insert(
                ba.clone(),
                std::env::var(ba)
                    .map(Into::into)
                    .unwrap_or(serde_json::Value::Null),
            ),
        };
    }
    // As `docker buildx build`: SOURCE_DATE_EPOCH in the client's environment is the build
    // argument of that name unless `--build-arg` sets it.
    if let Some(epoch) = source_date_epoch_env(&build_args) {
        build_args.insert("SOURCE_DATE_EPOCH".into(), epoch.into());
    }
    let mut labels = serde_json::Map::new();
    for l in &a.labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), v.into());
    }
    let mut params: Vec<(&str, Option<String>)> = vec![
        ("dockerfile", Some(df_rel)),
        (
            "buildargs",
            Some(serde_json::Value::Object(build_args).to_string()),
        ),
        (
            "labels",
            Some(serde_json::Value::Object(labels).to_string()),
        ),
        ("target", a.target.clone()),
        ("nocache", a.no_cache.then(|| "1".to_string())),
        ("networkmode", a.network.clone()),
        ("platform", a.platform.clone()),
        ("q", a.quiet.then(|| "1".to_string())),
    ];
    for t in &a.tags {
        params.push(("t", Some(t.clone())));
    }
    let q = query(&params);
    let resp = c
        .request(
            Method::POST,
            &format!("/build{q}"),
            client::full(data),
            &[("Content-Type", "application/x-tar")],
        )
        .await?;
    let mut id = None;
    let mut failed = None;
    let quiet = a.quiet || a.progress == "quiet";
    let mut tty = (!quiet && use_tty(&a.progress)?)
        .then(|| TtyProgress::new(std::io::stdout(), terminal_width()));
    for_each_json(resp, |v| {
        if let Some(s) = v.get("stream").and_then(|s| s.as_str()) {
            if let Some(t) = &mut tty {
                t.feed(s)?;
            } else if !quiet {
                print!("{s}");
                let _ = std::io::stdout().flush();
            }
        }
        if let Some(i) = v.pointer("/aux/ID").and_then(|s| s.as_str()) {
            id = Some(i.to_string());
        }
        if let Some(e) = v.get("error").and_then(|s| s.as_str()) {
            failed = Some(e.to_string());
        }
        Ok(())
    })
    .await?;
    if let Some(t) = &mut tty {
        t.finish(failed.as_deref())?;
    }
    if let Some(e) = failed {
        return Err(status(1, e));
    }
    let Some(id) = id else {
        return Err(status(1, "the build finished without an image ID"));
    };
    if quiet {
        println!("{id}");
    }
    if let Some(f) = &a.iidfile {
        std::fs::write(f, &id)?;
    }
    Ok(0)
}

/// Whether `--progress` asks for the TTY view (`auto`: when stdout is a terminal).
fn use_tty(progress: &str) -> Result<bool> {
    match progress {
        "auto" | "" => Ok(std::io::stdout().is_terminal()),
        "tty" => Ok(true),
        "plain" | "quiet" => Ok(false),
        o => Err(status(
            1,
            format!("invalid progress mode {o:?}: want auto, plain, tty or quiet"),
        )),
    }
}

/// `barge builder prune`.
pub async fn builder(c: &Client, cmd: BuilderCmd) -> Result<i32> {
    match cmd {
        BuilderCmd::Prune { .. } => {
            let v: serde_json::Value = c.json(Method::POST, "/build/prune", None).await?;
            let n = |k: &str| v.get(k).and_then(|n| n.as_u64()).unwrap_or(0);
            println!("Deleted build cache entries: {}", n("EntriesDeleted"));
            println!("Deleted cache mounts: {}", n("CacheMountsDeleted"));
            println!(
                "Total reclaimed space: {}",
                crate::format::human_size(n("SpaceReclaimed") as i64)
            );
            Ok(0)
        }
    }
}

/// `SOURCE_DATE_EPOCH` from the environment when it is set, not empty, and not already a
/// build argument.
fn source_date_epoch_env(
    build_args: &serde_json::Map<String, serde_json::Value>,
) -> Option<String> {
    if build_args.contains_key("SOURCE_DATE_EPOCH") {
        return None;
    }
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .filter(|v| !v.is_empty())
}
