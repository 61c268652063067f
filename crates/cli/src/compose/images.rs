//! `build`, `pull` and `push` of the project's images (and `up --build`): each service's
//! image through the CLI's own `build`/`pull`/`push` (the same Engine API calls).

use anyhow::Result;
use barge_compose::convert;
use barge_compose::model::Project;
use clap::Args;

use super::project::{event, progress};
use super::ComposeArgs;
use crate::client::Client;

/// `barge compose build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Do not use cache when building the image
    #[arg(long)]
    pub no_cache: bool,
    /// Don't print anything to STDOUT
    #[arg(short, long)]
    pub quiet: bool,
    /// Set build-time variables for services
    #[arg(long = "build-arg", value_name = "stringArray")]
    pub build_arg: Vec<String>,
    /// Services
    pub services: Vec<String>,
}

/// `barge compose pull` / `push`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Pull without printing progress information
    #[arg(short, long)]
    pub quiet: bool,
    /// Pull what it can and ignores images with pull failures
    #[arg(long, alias = "ignore-push-failures")]
    pub ignore_pull_failures: bool,
    /// Services
    pub services: Vec<String>,
}

fn selected(project: &Project, services: &[String]) -> Result<Vec<String>> {
    super::project::check_services(project, services)?;
    Ok(if services.is_empty() {
        project.services.keys().cloned().collect()
    } else {
        services.to_vec()
    })
}

/// Builds `service`'s image (tagged as `image`, else `{project}-{service}`); in a dry run
/// builds nothing and returns the image ID compose's dry run gives ([`dry_run_build`]).
pub async fn build_service(
    client: &Client,
    project: &Project,
    name: &str,
    no_cache: bool,
    quiet: bool,
    extra_args: &[String],
) -> Result<Option<String>> {
    let s = &project.services[name];
    let Some(b) = &s.build else {
        return Ok(None);
    };
    let image = convert::image_name(&project.name, name, s);
    if client.is_dry_run() {
        return Ok(Some(dry_run_build(name, &image)));
    }
    let mut inline = None;
    let file = if !b.dockerfile_inline.is_empty() {
        let path = std::env::temp_dir().join(format!(
            "barge-compose-{}-{name}-{}.Dockerfile",
            project.name,
            std::process::id()
        ));
        std::fs::write(&path, &b.dockerfile_inline)?;
        inline = Some(path.clone());
        Some(path.display().to_string())
    } else if b.dockerfile.is_empty() {
        None
    } else if b.dockerfile.starts_with('/') {
        Some(b.dockerfile.clone())
    } else {
        Some(format!("{}/{}", b.context, b.dockerfile))
    };
    let mut build_args: Vec<String> = b
        .args
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        })
        .collect();
    build_args.extend(extra_args.iter().cloned());
    event("Service", name, "Building");
    let result = crate::build::build(
        client,
        crate::build::BuildArgs {
            file,
            tags: vec![image.clone()],
            build_args,
            target: (!b.target.is_empty()).then(|| b.target.clone()),
            no_cache,
            labels: b.labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            network: None,
            platform: (!s.platform.is_empty()).then(|| s.platform.clone()),
            iidfile: None,
            quiet: false,
            progress: if quiet {
                "quiet".into()
            } else {
                "plain".into()
            },
            path: b.context.clone(),
        },
    )
    .await;
    if let Some(p) = inline {
        let _ = std::fs::remove_file(p);
    }
    result?;
    event("Service", name, "Built");
    Ok(None)
}

/// A build in a dry run, as compose's `dryRunBuildResponse`: three progress lines and the
/// image ID `dryRun-{SHA-1 of the service name}`; nothing is sent to the daemon.
pub fn dry_run_build(name: &str, image: &str) -> String {
    use sha1::Digest;
    let sum = sha1::Sha1::digest(name.as_bytes());
    let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
    let id = format!("dryRun-{hex}");
    progress(" ", &format!("build service {name}"), "");
    progress("==>", &format!("==> writing image {id}"), "");
    progress("==> ==>", &format!("naming to {image}"), "");
    id
}

/// `barge compose build`.
pub async fn build(client: &Client, args: &ComposeArgs, a: &BuildArgs) -> Result<i32> {
    let project = super::load_project(args, &a.services)?;
    for name in selected(&project, &a.services)? {
        build_service(client, &project, &name, a.no_cache, a.quiet, &a.build_arg).await?;
    }
    Ok(0)
}

/// `barge compose pull` (`push` when `push`).
pub async fn pull(client: &Client, args: &ComposeArgs, a: &PullArgs, push: bool) -> Result<i32> {
    let project = super::load_project(args, &a.services)?;
    let mut failed = false;
    for name in selected(&project, &a.services)? {
        let s = &project.services[&name];
        if push && s.build.is_none() || !push && s.image.is_empty() {
            continue;
        }
        let image = convert::image_name(&project.name, &name, s);
        event("Image", &image, if push { "Pushing" } else { "Pulling" });
        let r = if push {
            crate::registry::push(
                client,
                crate::registry::PushArgs {
                    all_tags: false,
                    quiet: true,
                    name: image.clone(),
                },
            )
            .await
        } else {
            crate::registry::pull(
                client,
                crate::registry::PullArgs {
                    all_tags: false,
                    platform: (!s.platform.is_empty()).then(|| s.platform.clone()),
                    quiet: true,
                    disable_content_trust: true,
                    name: image.clone(),
                },
            )
            .await
        };
        match r {
            Ok(_) => event("Image", &image, if push { "Pushed" } else { "Pulled" }),
            Err(e) if a.ignore_pull_failures => {
                eprintln!("WARN[0000] {e:#}");
                failed = true;
            }
            Err(e) => return Err(e),
        }
    }
    if failed {
        return Ok(0);
    }
    Ok(0)
}
