//! `down` and the lifecycle commands (`start`, `stop`, `restart`, `kill`, `rm`, `pause`,
//! `unpause`) as docker compose v2 runs them: services in dependency order (reversed for
//! stops and removals), networks and volumes found by the project label.

use std::collections::BTreeSet;

use anyhow::Result;
use barge_compose::convert::{self, labels};
use barge_compose::model::Project;
use barge_compose::plan;
use clap::Args;
use hyper::Method;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use super::project::{self, containers, event, id_of, name_of, service_of, OneOff};
use super::up::{not_found, remove_container, stop_container, strip};
use super::ComposeArgs;
use crate::client::{query, seg, Client};
use crate::status;

/// `barge compose down`.
#[derive(Debug, Args)]
pub struct DownArgs {
    /// Remove named volumes declared in the "volumes" section of the Compose file and anonymous volumes attached to containers
    #[arg(short, long)]
    pub volumes: bool,
    /// Remove containers for services not defined in the Compose file
    #[arg(long)]
    pub remove_orphans: bool,
    /// Specify a shutdown timeout in seconds
    #[arg(short = 't', long, value_name = "int")]
    pub timeout: Option<i64>,
    /// Remove images used by services. "local" remove only images that don't have a custom tag ("local"|"all")
    #[arg(long, value_name = "string", value_parser = ["local", "all"])]
    pub rmi: Option<String>,
    /// Services
    pub services: Vec<String>,
}

/// Commands that take only services.
#[derive(Debug, Args)]
pub struct ServicesArgs {
    /// Services
    pub services: Vec<String>,
}

/// `barge compose stop` / `restart`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Specify a shutdown timeout in seconds
    #[arg(short = 't', long, value_name = "int")]
    pub timeout: Option<i64>,
    /// Services
    pub services: Vec<String>,
}

/// `barge compose kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// SIGNAL to send to the container
    #[arg(short, long, default_value = "SIGKILL")]
    pub signal: String,
    /// Remove containers for services not defined in the Compose file
    #[arg(long)]
    pub remove_orphans: bool,
    /// Services
    pub services: Vec<String>,
}

/// `barge compose rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Don't ask to confirm removal
    #[arg(short, long)]
    pub force: bool,
    /// Stop the containers, if required, before removing
    #[arg(short, long)]
    pub stop: bool,
    /// Remove any anonymous volumes attached to containers
    #[arg(short, long)]
    pub volumes: bool,
    /// Services
    pub services: Vec<String>,
}

/// `barge compose down`.
pub async fn down(client: &Client, args: &ComposeArgs, a: &DownArgs) -> Result<i32> {
    let project = project::load_or_name(args, &[])?;
    let all = containers(client, &project.name, true, OneOff::Include, &[]).await?;
    let known =
        |c: &Value| project.services.contains_key(service_of(c)) || project.services.is_empty();
    let targets: Vec<&Value> = all
        .iter()
        .filter(|c| a.remove_orphans || known(c))
        .filter(|c| a.services.is_empty() || a.services.iter().any(|s| s == service_of(c)))
        .collect();
    if !a.remove_orphans && !project.services.is_empty() {
        let orphans: Vec<&str> = all
            .iter()
            .filter(|c| !known(c) && project::label(c, labels::ONEOFF) != "True")
            .map(name_of)
            .collect();
        if !orphans.is_empty() {
            eprintln!(
                "WARN[0000] Found orphan containers ([{}]) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.",
                orphans.join(" ")
            );
        }
    }
    // Reverse dependency order; services unknown to the file (orphans) first.
    let mut order: Vec<Vec<String>> = plan::levels(&project, &[], false);
    order.reverse();
    let mut groups: Vec<Vec<&Value>> = vec![targets
        .iter()
        .filter(|c| !project.services.contains_key(service_of(c)))
        .copied()
        .collect()];
    for level in &order {
        groups.push(
            targets
                .iter()
                .filter(|c| level.iter().any(|s| s == service_of(c)))
                .copied()
                .collect(),
        );
    }
    for group in groups {
        let mut set = JoinSet::new();
        for c in group {
            let client = client.clone();
            let id = id_of(c).to_string();
            let name = name_of(c).to_string();
            let running = c["State"].as_str() == Some("running");
            let timeout = a.timeout;
            let v = a.volumes;
            set.spawn(async move {
                if running {
                    event("Container", &name, "Stopping");
                    stop_container(&client, &id, timeout).await?;
                    event("Container", &name, "Stopped");
                }
                event("Container", &name, "Removing");
                remove_container(&client, &id, v).await?;
                event("Container", &name, "Removed");
                anyhow::Ok(())
            });
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
    }
    if !a.services.is_empty() {
        return Ok(0);
    }
    // Networks of the project (by label, so a project without its file is cleaned too).
    let filters = json!({"label": [format!("{}={}", labels::PROJECT, project.name)]}).to_string();
    let nets: Vec<Value> = client
        .json(
            Method::GET,
            &format!("/networks{}", query(&[("filters", Some(filters.clone()))])),
            None,
        )
        .await?;
    for n in nets {
        let name = n["Name"].as_str().unwrap_or("");
        let external = project
            .networks
            .values()
            .any(|pn| pn.external && pn.name == name);
        if external {
            continue;
        }
        event("Network", name, "Removing");
        match client
            .send(Method::DELETE, &format!("/networks/{}", seg(name)), None)
            .await
        {
            Ok(()) => event("Network", name, "Removed"),
            Err(e) if not_found(&e) => {}
            Err(e) => eprintln!("WARN[0000] {}", strip(&e)),
        }
    }
    if a.volumes {
        let vols: Value = client
            .json(
                Method::GET,
                &format!("/volumes{}", query(&[("filters", Some(filters))])),
                None,
            )
            .await?;
        for v in vols["Volumes"].as_array().into_iter().flatten() {
            let name = v["Name"].as_str().unwrap_or("");
            let external = project
                .volumes
                .values()
                .any(|pv| pv.external && pv.name == name);
            if external {
                continue;
            }
            event("Volume", name, "Removing");
            match client
                .send(Method::DELETE, &format!("/volumes/{}", seg(name)), None)
                .await
            {
                Ok(()) => event("Volume", name, "Removed"),
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
    if let Some(rmi) = &a.rmi {
        let mut images = BTreeSet::new();
        for (name, s) in &project.services {
            if rmi == "all" || s.image.is_empty() {
                images.insert(convert::image_name(&project.name, name, s));
            }
        }
        for image in images {
            match client
                .send(Method::DELETE, &format!("/images/{}", seg(&image)), None)
                .await
            {
                Ok(()) => event("Image", &image, "Removed"),
                Err(e) if not_found(&e) => {}
                Err(e) => eprintln!("WARN[0000] {}", strip(&e)),
            }
        }
    }
    Ok(0)
}

/// `start`, `pause`, `unpause`.
#[derive(Debug, Clone, Copy)]
pub enum Verb {
    /// `start`
    Start,
    /// `pause`
    Pause,
    /// `unpause`
    Unpause,
}

/// The project's service containers grouped in dependency order (reversed for stops).
async fn ordered(
    client: &Client,
    args: &ComposeArgs,
    services: &[String],
    reverse: bool,
) -> Result<(Project, Vec<Vec<Value>>)> {
    let project = project::load_or_name(args, services)?;
    project::check_services(&project, services)?;
    let list = containers(client, &project.name, true, OneOff::Exclude, services).await?;
    let mut levels = plan::levels(&project, &[], false);
    if reverse {
        levels.reverse();
    }
    let mut groups: Vec<Vec<Value>> = levels
        .iter()
        .map(|l| {
            list.iter()
                .filter(|c| l.iter().any(|s| s == service_of(c)))
                .cloned()
                .collect()
        })
        .collect();
    groups.push(
        list.iter()
            .filter(|c| !project.services.contains_key(service_of(c)))
            .cloned()
            .collect(),
    );
    Ok((project, groups))
}

/// `barge compose start|pause|unpause`.
pub async fn lifecycle(
    client: &Client,
    args: &ComposeArgs,
    a: &ServicesArgs,
    verb: Verb,
) -> Result<i32> {
    let (_, groups) = ordered(client, args, &a.services, false).await?;
    for c in groups.iter().flatten() {
        let state = c["State"].as_str().unwrap_or("");
        let (path, doing, done) = match verb {
            Verb::Start if state != "running" => ("start", "Starting", "Started"),
            Verb::Pause if state == "running" => ("pause", "Pausing", "Paused"),
            Verb::Unpause if state == "paused" => ("unpause", "Unpausing", "Unpaused"),
            _ => continue,
        };
        event("Container", name_of(c), doing);
        client
            .send(
                Method::POST,
                &format!("/containers/{}/{path}", seg(id_of(c))),
                None,
            )
            .await?;
        event("Container", name_of(c), done);
    }
    Ok(0)
}

/// `barge compose stop` / `restart`.
pub async fn stop(client: &Client, args: &ComposeArgs, a: &StopArgs, restart: bool) -> Result<i32> {
    let (_, groups) = ordered(client, args, &a.services, !restart).await?;
    for c in groups.iter().flatten() {
        let id = id_of(c);
        if restart {
            event("Container", name_of(c), "Restarting");
            let path = format!(
                "/containers/{}/restart{}",
                seg(id),
                query(&[("t", a.timeout.map(|t| t.to_string()))])
            );
            client.send(Method::POST, &path, None).await?;
            event("Container", name_of(c), "Started");
        } else if c["State"].as_str() == Some("running") || c["State"].as_str() == Some("paused") {
            event("Container", name_of(c), "Stopping");
            stop_container(client, id, a.timeout).await?;
            event("Container", name_of(c), "Stopped");
        }
    }
    Ok(0)
}

/// `barge compose kill`.
pub async fn kill(client: &Client, args: &ComposeArgs, a: &KillArgs) -> Result<i32> {
    let (_, groups) = ordered(client, args, &a.services, true).await?;
    let running: Vec<&Value> = groups
        .iter()
        .flatten()
        .filter(|c| c["State"].as_str() == Some("running"))
        .collect();
    if running.is_empty() {
        return Err(status(1, "no container to kill"));
    }
    for c in running {
        event("Container", name_of(c), "Killing");
        let path = format!(
            "/containers/{}/kill{}",
            seg(id_of(c)),
            query(&[("signal", Some(a.signal.clone()))])
        );
        client.send(Method::POST, &path, None).await?;
        event("Container", name_of(c), "Killed");
    }
    Ok(0)
}

/// `barge compose rm`.
pub async fn rm(client: &Client, args: &ComposeArgs, a: &RmArgs) -> Result<i32> {
    let (_, groups) = ordered(client, args, &a.services, true).await?;
    let mut list: Vec<&Value> = Vec::new();
    for c in groups.iter().flatten() {
        let running = matches!(
            c["State"].as_str(),
            Some("running" | "paused" | "restarting")
        );
        if running && a.stop {
            event("Container", name_of(c), "Stopping");
            stop_container(client, id_of(c), None).await?;
            event("Container", name_of(c), "Stopped");
        } else if running {
            continue;
        }
        list.push(c);
    }
    if list.is_empty() {
        eprintln!("No stopped containers");
        return Ok(0);
    }
    if !a.force {
        let names: Vec<&str> = list.iter().map(|c| name_of(c)).collect();
        eprintln!("Going to remove {}", names.join(", "));
        if !crate::confirm("Are you sure?") {
            return Ok(0);
        }
    }
    for c in list {
        event("Container", name_of(c), "Removing");
        remove_container(client, id_of(c), a.volumes).await?;
        event("Container", name_of(c), "Removed");
    }
    Ok(0)
}
