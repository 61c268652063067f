//! `barge compose` (docker compose v2's commands). For now only `config`, which loads the
//! project with barge-compose and prints its normal form; it needs no daemon.

use anyhow::Result;
use barge_compose::render::{render, Format};
use barge_compose::{load, Options};
use clap::{Args, Subcommand};
use std::collections::BTreeSet;

/// `barge compose [OPTIONS] COMMAND`: docker compose's global flags.
#[derive(Debug, Args)]
#[command(override_usage = "barge compose [OPTIONS] COMMAND")]
pub struct ComposeArgs {
    /// Compose configuration files
    #[arg(short = 'f', long = "file", value_name = "stringArray", global = true)]
    pub file: Vec<String>,
    /// Project name
    #[arg(
        short = 'p',
        long = "project-name",
        value_name = "string",
        global = true
    )]
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
    #[command(subcommand)]
    pub cmd: ComposeCmd,
}

/// `barge compose ...` commands.
#[derive(Debug, Subcommand)]
pub enum ComposeCmd {
    /// Parse, resolve and render compose file in canonical format
    Config(ConfigArgs),
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

/// Run `barge compose ...`; returns the exit code.
pub fn run(args: ComposeArgs) -> Result<i32> {
    let ComposeCmd::Config(c) = args.cmd;
    let opts = Options {
        cwd: std::env::current_dir()?,
        files: args.file,
        project_name: args.project_name,
        project_directory: args.project_directory,
        env_files: args.env_file,
        profiles: args.profile,
        services: c.service.clone(),
        env: std::env::vars().collect(),
    };
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
        assert_eq!(run(args).unwrap(), 0);
        // global flags also after the subcommand, as docker compose accepts them
        let args = parse(&["barge", "compose", "config", "--services", "-f", &a]);
        assert_eq!(run(args).unwrap(), 0);
        let bad = fixture("errors/undefined-network.yaml");
        let e = run(parse(&["barge", "compose", "-f", &bad, "config"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "service \"web\" refers to undefined network front: invalid compose project"
        );
    }
}
