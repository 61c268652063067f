//! `barge compose` (docker compose v2's commands) as a client of the Engine API: `config`
//! loads the project with barge-compose and prints its normal form (no daemon); the others
//! drive the engine (`up.rs`: `up`/`create` and convergence, `lifecycle.rs`: `down` and the
//! lifecycle commands, `attach.rs`: prefixed output, `cmds.rs`: ps, logs, exec, run and the
//! listings, `images.rs`: build/pull/push, `events.rs`: events/wait/cp, `project.rs`: the
//! project's containers as the engine reports them). The bodies, hash and plan come from
//! `barge_compose::{convert, plan}`; `watch.rs` applies `develop.watch` rules (`watch`,
//! `up --watch`).

mod attach;
mod cmds;
mod events;
mod images;
mod lifecycle;
mod project;
mod rollback;
mod up;
mod watch;

use crate::client::Client;
use anyhow::Result;
use barge_compose::model::Project;
use barge_compose::render::{render, Format};
use barge_compose::{load, Options};
use clap::{Args, Subcommand};
use std::collections::BTreeSet;

/// `barge compose [OPTIONS] COMMAND`: docker compose's global flags.
#[derive(Debug, Args)]
#[command(override_usage = "barge compose [OPTIONS] COMMAND")]
pub struct ComposeArgs {
    /// Compose configuration files (before the command: `logs -f` and `run -p` are the
    /// commands' own flags, as in docker compose)
    #[arg(short = 'f', long = "file", value_name = "stringArray")]
    pub file: Vec<String>,
    /// Project name
    #[arg(short = 'p', long = "project-name", value_name = "string")]
    pub project_name: Option<String>,
    /// Specify a profile to enable
    #[arg(long = "profile", value_name = "stringArray", global = true)]
    pub profile: Vec<String>,
    /// Specify an alternate environment file
    #[arg(long = "env-file", value_name = "stringArray", global = true)]
    pub env_file: Vec<String>,
    /// Specify an alternate working directory (default: the path of the first Compose file)
    #[arg(long = "project-directory", value_name = "string", global = true)]
    pub project_directory: Option<String>,
    /// Set type of progress output (auto, tty, plain, json, quiet); barge prints compose's
    /// plain lines
    #[arg(long = "progress", value_name = "string", global = true)]
    pub progress: Option<String>,
    /// Execute command in dry run mode
    #[arg(long = "dry-run", global = true)]
    pub dry_run: bool,
    #[command(subcommand)]
    pub cmd: ComposeCmd,
}

/// `barge compose ...` commands.
#[derive(Debug, Subcommand)]
pub enum ComposeCmd {
    /// Parse, resolve and render compose file in canonical format
    Config(ConfigArgs),
    /// Create and start containers
    Up(up::UpArgs),
    /// Creates containers for a service
    Create(up::CreateArgs),
    /// Stop and remove containers, networks
    Down(lifecycle::DownArgs),
    /// Start services
    Start(lifecycle::ServicesArgs),
    /// Stop services
    Stop(lifecycle::StopArgs),
    /// Restart service containers
    Restart(lifecycle::StopArgs),
    /// Force stop service containers
    Kill(lifecycle::KillArgs),
    /// Removes stopped service containers
    Rm(lifecycle::RmArgs),
    /// Pause services
    Pause(lifecycle::ServicesArgs),
    /// Unpause services
    Unpause(lifecycle::ServicesArgs),
    /// List containers
    Ps(cmds::PsArgs),
    /// View output from containers
    Logs(cmds::LogsArgs),
    /// Execute a command in a running container
    Exec(cmds::ExecArgs),
    /// Run a one-off command on a service
    Run(cmds::RunArgs),
    /// Display the running processes
    Top(lifecycle::ServicesArgs),
    /// Print the public port for a port binding
    Port(cmds::PortArgs),
    /// List images used by the created containers
    Images(lifecycle::ServicesArgs),
    /// List running compose projects
    Ls(cmds::LsArgs),
    /// Show the Docker Compose version information
    Version(cmds::VersionArgs),
    /// Build or rebuild services
    Build(images::BuildArgs),
    /// Pull service images
    Pull(images::PullArgs),
    /// Push service images
    Push(images::PullArgs),
    /// Receive real time events from containers
    Events(events::EventsArgs),
    /// Block until containers of all (or specified) services stop.
    Wait(events::WaitArgs),
    /// Copy files/folders between a service container and the local filesystem
    Cp(events::CpArgs),
    /// Watch build context for service and rebuild/refresh containers when files are updated
    Watch(watch::WatchArgs),
}

/// `barge compose config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Format the output. Values: [yaml | json]
    #[arg(long, default_value = "yaml", value_parser = ["yaml", "json"])]
    pub format: String,
    /// Only validate the configuration, don't print anything
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the service names, one per line
    #[arg(long)]
    pub services: bool,
    /// Print the volume names, one per line
    #[arg(long)]
    pub volumes: bool,
    /// Print the profile names, one per line
    #[arg(long)]
    pub profiles: bool,
    /// Print the image names, one per line
    #[arg(long)]
    pub images: bool,
    /// Services to render (with their dependencies)
    pub service: Vec<String>,
}

/// Loading options from the global flags and the process environment.
pub(crate) fn options(args: &ComposeArgs, services: &[String]) -> Result<Options> {
    Ok(Options {
        cwd: std::env::current_dir()?,
        files: args.file.clone(),
        project_name: args.project_name.clone(),
        project_directory: args.project_directory.clone(),
        env_files: args.env_file.clone(),
        profiles: args.profile.clone(),
        services: services.to_vec(),
        env: std::env::vars().collect(),
    })
}

/// Loads the project (warnings on stderr, as compose prints them).
pub(crate) fn load_project(args: &ComposeArgs, services: &[String]) -> Result<Project> {
    let loaded = load(&options(args, services)?)?;
    for w in &loaded.warnings {
        eprintln!("WARN[0000] {w}");
    }
    Ok(loaded.project)
}

/// Run `barge compose ...` against the daemon at `host`; returns the exit code.
pub fn run(args: ComposeArgs, host: &str) -> Result<i32> {
    if let ComposeCmd::Config(c) = &args.cmd {
        return config(&args, c);
    }
    if let ComposeCmd::Version(v) = &args.cmd {
        return cmds::version(v);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(engine(args, host));
    runtime.shutdown_background();
    result
}

async fn engine(args: ComposeArgs, host: &str) -> Result<i32> {
    let mut client = Client::new(host)?;
    client.negotiate().await?;
    client.set_dry_run(args.dry_run);
    project::set_dry_run(args.dry_run);
    let c = &client;
    match &args.cmd {
        ComposeCmd::Up(a) => up::up(c, &args, a).await,
        ComposeCmd::Create(a) => up::create(c, &args, a).await,
        ComposeCmd::Down(a) => lifecycle::down(c, &args, a).await,
        ComposeCmd::Start(a) => lifecycle::lifecycle(c, &args, a, lifecycle::Verb::Start).await,
        ComposeCmd::Stop(a) => lifecycle::stop(c, &args, a, false).await,
        ComposeCmd::Restart(a) => lifecycle::stop(c, &args, a, true).await,
        ComposeCmd::Kill(a) => lifecycle::kill(c, &args, a).await,
        ComposeCmd::Rm(a) => lifecycle::rm(c, &args, a).await,
        ComposeCmd::Pause(a) => lifecycle::lifecycle(c, &args, a, lifecycle::Verb::Pause).await,
        ComposeCmd::Unpause(a) => lifecycle::lifecycle(c, &args, a, lifecycle::Verb::Unpause).await,
        ComposeCmd::Top(a) => cmds::top(c, &args, a).await,
        ComposeCmd::Images(a) => cmds::images(c, &args, a).await,
        ComposeCmd::Ps(a) => cmds::ps(c, &args, a).await,
        ComposeCmd::Logs(a) => cmds::logs(c, &args, a).await,
        ComposeCmd::Exec(a) => cmds::exec(c, &args, a).await,
        ComposeCmd::Run(a) => cmds::run(c, &args, a).await,
        ComposeCmd::Port(a) => cmds::port(c, &args, a).await,
        ComposeCmd::Ls(a) => cmds::ls(c, a).await,
        ComposeCmd::Build(a) => images::build(c, &args, a).await,
        ComposeCmd::Pull(a) => images::pull(c, &args, a, false).await,
        ComposeCmd::Push(a) => images::pull(c, &args, a, true).await,
        ComposeCmd::Events(a) => events::events(c, &args, a).await,
        ComposeCmd::Wait(a) => events::wait(c, &args, a).await,
        ComposeCmd::Cp(a) => events::cp(c, &args, a).await,
        ComposeCmd::Watch(a) => watch::watch(c, &args, a).await,
        ComposeCmd::Config(_) | ComposeCmd::Version(_) => unreachable!("handled above"),
    }
}

/// `barge compose config`.
fn config(args: &ComposeArgs, c: &ConfigArgs) -> Result<i32> {
    let opts = options(args, &c.service)?;
    let loaded = load(&opts)?;
    for w in &loaded.warnings {
        eprintln!("WARN[0000] {w}");
    }
    let mut project = loaded.project;
    if !c.service.is_empty() {
        let mut keep = BTreeSet::new();
        let mut todo = c.service.clone();
        while let Some(s) = todo.pop() {
            if keep.insert(s.clone()) {
                if let Some(svc) = project.services.get(&s) {
                    todo.extend(svc.depends_on.keys().cloned());
                }
            }
        }
        project.services.retain(|k, _| keep.contains(k));
    }
    if c.quiet {
        return Ok(0);
    }
    if c.services {
        project.services.keys().for_each(|s| println!("{s}"));
    } else if c.volumes {
        project.volumes.keys().for_each(|v| println!("{v}"));
    } else if c.profiles {
        let all: BTreeSet<&String> = project
            .services
            .values()
            .chain(project.disabled_services.values())
            .flat_map(|s| s.profiles.iter())
            .collect();
        all.into_iter().for_each(|p| println!("{p}"));
    } else if c.images {
        for (name, s) in &project.services {
            if s.image.is_empty() {
                println!("{}-{name}", project.name);
            } else {
                println!("{}", s.image);
            }
        }
    } else {
        let format = if c.format == "json" {
            Format::Json
        } else {
            Format::Yaml
        };
        print!("{}", render(&project, format)?);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Cmd};
    use clap::Parser;

    fn fixture(f: &str) -> String {
        format!(
            "{}/../compose/tests/fixtures/{f}",
            env!("CARGO_MANIFEST_DIR")
        )
    }

    fn parse(args: &[&str]) -> ComposeArgs {
        match Cli::try_parse_from(args).unwrap().cmd {
            Some(Cmd::Compose(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn config_flags_and_errors() {
        let a = fixture("merge/a.yml");
        let b = fixture("merge/b.yml");
        let args = parse(&[
            "barge", "compose", "-f", &a, "-f", &b, "-p", "x", "config", "--format", "json", "-q",
        ]);
        assert_eq!(
            (args.file.len(), args.project_name.as_deref()),
            (2, Some("x"))
        );
        assert_eq!(run(args, "unix:///nonexistent").unwrap(), 0);
        // long global flags also after the subcommand, as docker compose accepts them
        let args = parse(&[
            "barge",
            "compose",
            "-f",
            &a,
            "config",
            "--services",
            "--profile",
            "x",
        ]);
        assert_eq!(run(args, "unix:///nonexistent").unwrap(), 0);
        let bad = fixture("errors/undefined-network.yaml");
        let e = run(
            parse(&["barge", "compose", "-f", &bad, "config"]),
            "unix:///x",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "service \"web\" refers to undefined network front: invalid compose project"
        );
    }
}
