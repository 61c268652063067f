//! `up`, `create`, `down` and the lifecycle commands (`start`, `stop`, `restart`, `kill`, `rm`,
//! `pause`, `unpause`), as docker compose v2 runs them: images, networks and volumes first,
//! then each service converged in dependency order (parallel where the graph allows), only
//! diverged containers recreated; `down` in reverse order.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use barge_compose::convert::{self, labels, Instance};
use barge_compose::model::{Project, Service};
use barge_compose::plan::{self, Action, Expected, Recreate};
use barge_stdx::stdcopy::Demux;
use clap::Args;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;

use super::project::{self, containers, event, id_of, name_of, service_of, OneOff};
use super::ComposeArgs;
use crate::client::{api_error, for_each_json, json_body, query, seg, Client, Hijacked};
use crate::status;

/// `barge compose up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Detached mode: Run containers in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Build images before starting containers
    #[arg(long)]
    pub build: bool,
    /// Don't build an image, even if it's policy
    #[arg(long)]
    pub no_build: bool,
    /// Pull image before running ("always"|"missing"|"never")
    #[arg(long, value_name = "string")]
    pub pull: Option<String>,
    /// Recreate containers even if their configuration and image haven't changed
    #[arg(long)]
    pub force_recreate: bool,
    /// If containers already exist, don't recreate them
    #[arg(long, conflicts_with = "force_recreate")]
    pub no_recreate: bool,
    /// Don't start linked services
    #[arg(long)]
    pub no_deps: bool,
    /// Remove containers for services not defined in the Compose file
    #[arg(long)]
    pub remove_orphans: bool,
    /// Scale SERVICE to NUM instances
    #[arg(long, value_name = "SERVICE=NUM")]
    pub scale: Vec<String>,
    /// Wait for services to be running|healthy. Implies detached mode
    #[arg(long)]
    pub wait: bool,
    /// Maximum duration in seconds to wait for the project to be running|healthy
    #[arg(long, value_name = "int")]
    pub wait_timeout: Option<u64>,
    /// Stops all containers if any container was stopped
    #[arg(long)]
    pub abort_on_container_exit: bool,
    /// Return the exit code of the selected service container
    #[arg(long, value_name = "string")]
    pub exit_code_from: Option<String>,
    /// Use this timeout in seconds for container shutdown
    #[arg(short = 't', long, value_name = "int")]
    pub timeout: Option<i64>,
    /// Don't start the services after creating them
    #[arg(long)]
    pub no_start: bool,
    /// Produce monochrome output
    #[arg(long)]
    pub no_color: bool,
    /// Don't print prefix in logs
    #[arg(long)]
    pub no_log_prefix: bool,
    /// Pull without printing progress information
    #[arg(long)]
    pub quiet_pull: bool,
    /// Services
    pub services: Vec<String>,
}

/// `barge compose create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Build images before starting containers
    #[arg(long)]
    pub build: bool,
    /// Pull image before running ("always"|"missing"|"never")
    #[arg(long, value_name = "string")]
    pub pull: Option<String>,
    /// Recreate containers even if their configuration and image haven't changed
    #[arg(long)]
    pub force_recreate: bool,
    /// If containers already exist, don't recreate them
    #[arg(long, conflicts_with = "force_recreate")]
    pub no_recreate: bool,
    /// Remove containers for services not defined in the Compose file
    #[arg(long)]
    pub remove_orphans: bool,
    /// Scale SERVICE to NUM instances
    #[arg(long, value_name = "SERVICE=NUM")]
    pub scale: Vec<String>,
    /// Services
    pub services: Vec<String>,
}

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

/// What `converge` does.
struct Converge {
    /// Build images with a `build` section first (`--build`).
    build: bool,
    /// Pull images even when present (`--pull always`).
    pull_always: bool,
    services: Vec<String>,
    no_deps: bool,
    policy: Recreate,
    remove_orphans: bool,
    timeout: Option<i64>,
}

/// After convergence: each service's containers (by number) and those to start.
#[derive(Default)]
struct Converged {
    levels: Vec<Vec<String>>,
    ids: BTreeMap<String, Vec<(String, String)>>,
    to_start: BTreeSet<String>,
}

fn apply_scale(project: &mut Project, scale: &[String]) -> Result<()> {
    for s in scale {
        let (svc, n) = s
            .split_once('=')
            .ok_or_else(|| anyhow!("invalid scale specifier: {s}"))?;
        let n: u64 = n
            .parse()
            .map_err(|_| anyhow!("invalid scale specifier: {s}"))?;
        let service = project
            .services
            .get_mut(svc)
            .ok_or_else(|| anyhow!("no such service: {svc}"))?;
        service.scale = Some(n);
    }
    Ok(())
}

fn policy(force: bool, never: bool) -> Recreate {
    if force {
        Recreate::Force
    } else if never {
        Recreate::Never
    } else {
        Recreate::Diverged
    }
}

fn not_found(e: &anyhow::Error) -> bool {
    api_error(e).is_some_and(|a| a.status == 404)
}

/// Image IDs by service, pulling the missing ones.
async fn ensure_images(
    client: &Client,
    project: &Project,
    services: &BTreeSet<String>,
    pull_always: bool,
) -> Result<BTreeMap<String, String>> {
    let mut ids = BTreeMap::new();
    for name in services {
        let s = &project.services[name];
        let image = convert::image_name(&project.name, name, s);
        let inspect = |c: &Client, image: String| {
            let c = c.clone();
            async move {
                c.json::<Value>(Method::GET, &format!("/images/{}/json", seg(&image)), None)
                    .await
            }
        };
        let pull = (pull_always || s.pull_policy == "always") && !s.image.is_empty();
        let found = if pull {
            None
        } else {
            inspect(client, image.clone()).await.ok()
        };
        let info = match found {
            Some(i) => i,
            None => {
                if s.build.is_some() && !pull {
                    super::images::build_service(client, project, name, false, false, &[]).await?;
                    let info = inspect(client, image.clone()).await?;
                    ids.insert(name.clone(), info["Id"].as_str().unwrap_or("").to_string());
                    continue;
                }
                event("Image", &image, "Pulling");
                let path = format!(
                    "/images/create{}",
                    query(&[("fromImage", Some(image.clone()))])
                );
                let resp = client
                    .request(Method::POST, &path, crate::client::empty(), &[])
                    .await?;
                let mut err = None;
                for_each_json(resp, |v| {
                    if let Some(e) = v["error"].as_str() {
                        err = Some(e.to_string());
                    }
                    Ok(())
                })
                .await?;
                if let Some(e) = err {
                    bail!("Error response from daemon: {e}");
                }
                event("Image", &image, "Pulled");
                inspect(client, image.clone()).await?
            }
        };
        ids.insert(name.clone(), info["Id"].as_str().unwrap_or("").to_string());
    }
    Ok(ids)
}

async fn ensure_networks(client: &Client, project: &Project) -> Result<()> {
    for key in project.networks.keys() {
        let n = &project.networks[key];
        let path = format!("/networks/{}", seg(&n.name));
        match client.json::<Value>(Method::GET, &path, None).await {
            Ok(existing) => {
                if !n.external
                    && existing["Labels"][labels::PROJECT].as_str() != Some(&project.name)
                {
                    eprintln!(
                        "WARN[0000] a network with name {} exists but was not created for project {:?}.\nSet `external: true` to use an existing network",
                        n.name, project.name
                    );
                }
            }
            Err(e) if not_found(&e) => {
                if n.external {
                    bail!(
                        "network {} declared as external, but could not be found",
                        n.name
                    );
                }
                let body = convert::network_body(project, key).expect("network exists");
                client
                    .send(Method::POST, "/networks/create", Some(json_body(&body)?))
                    .await
                    .map_err(|e| anyhow!("failed to create network {}: {e}", n.name))?;
                event("Network", &n.name, "Created");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn ensure_volumes(client: &Client, project: &Project) -> Result<()> {
    for key in project.volumes.keys() {
        let v = &project.volumes[key];
        let path = format!("/volumes/{}", seg(&v.name));
        match client.json::<Value>(Method::GET, &path, None).await {
            Ok(existing) => {
                if !v.external
                    && existing["Labels"][labels::PROJECT].as_str() != Some(&project.name)
                {
                    eprintln!(
                        "WARN[0000] volume {:?} already exists but was not created by Docker Compose. Use `external: true` to use an existing volume",
                        v.name
                    );
                }
            }
            Err(e) if not_found(&e) => {
                if v.external {
                    bail!("external volume {:?} not found", v.name);
                }
                let body = convert::volume_body(project, key).expect("volume exists");
                client
                    .send(Method::POST, "/volumes/create", Some(json_body(&body)?))
                    .await?;
                event("Volume", &v.name, "Created");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn multi_endpoint(client: &Client) -> bool {
    crate::client::parse_version(&client.api_version()).is_some_and(|v| v >= (1, 44))
}

/// Creates one container of `name`; returns its ID.
#[allow(clippy::too_many_arguments)]
async fn create_one(
    client: &Client,
    project: &Project,
    name: &str,
    s: &Service,
    number: i64,
    image_id: &str,
    network_mode: Option<String>,
    replace: Option<&str>,
) -> Result<(String, String)> {
    let cname = convert::container_name(&project.name, name, s, number as u32);
    let inst = Instance {
        number,
        name: cname.clone(),
        image_id: image_id.to_string(),
        publish: true,
        network_mode,
        multi_endpoint: multi_endpoint(client),
        ..Default::default()
    };
    let mut body = convert::create_body(project, name, s, &inst)?;
    if let Some(old) = replace {
        body["Labels"][labels::REPLACE] = json!(old);
    }
    let created: Value = client
        .json(
            Method::POST,
            &format!(
                "/containers/create{}",
                query(&[("name", Some(cname.clone()))])
            ),
            Some(json_body(&body)?),
        )
        .await?;
    let id = created["Id"].as_str().unwrap_or("").to_string();
    if !inst.multi_endpoint && s.network_mode.is_empty() {
        for key in convert::networks_by_priority(s).iter().skip(1) {
            let net = project
                .networks
                .get(key)
                .map_or(key.clone(), |n| n.name.clone());
            let ep = convert::endpoint(s, name, key, &inst);
            client
                .send(
                    Method::POST,
                    &format!("/networks/{}/connect", seg(&net)),
                    Some(json_body(&json!({"Container": id, "EndpointConfig": ep}))?),
                )
                .await?;
        }
    }
    Ok((id, cname))
}

async fn stop_container(client: &Client, id: &str, timeout: Option<i64>) -> Result<()> {
    let path = format!(
        "/containers/{}/stop{}",
        seg(id),
        query(&[("t", timeout.map(|t| t.to_string()))])
    );
    client.send(Method::POST, &path, None).await
}

async fn remove_container(client: &Client, id: &str, volumes: bool) -> Result<()> {
    let path = format!(
        "/containers/{}{}",
        seg(id),
        query(&[
            ("force", Some("1".into())),
            ("v", volumes.then(|| "1".into()))
        ])
    );
    match client.send(Method::DELETE, &path, None).await {
        Err(e) if not_found(&e) => Ok(()),
        other => other,
    }
}

/// Converges one service; returns its containers `(id, name)` by number and the IDs to start.
#[allow(clippy::too_many_arguments)]
async fn converge_service(
    client: Client,
    project: Arc<Project>,
    name: String,
    image_id: String,
    observed: Vec<Value>,
    policy: Recreate,
    timeout: Option<i64>,
    network_mode: Option<String>,
) -> Result<(String, Vec<(String, String, i64)>, Vec<String>)> {
    let s = &project.services[&name];
    let hash = convert::service_hash(&name, s)?;
    let nets: Vec<String> = if s.network_mode.is_empty() {
        convert::networks_by_priority(s)
            .iter()
            .map(|k| {
                project
                    .networks
                    .get(k)
                    .map_or(k.clone(), |n| n.name.clone())
            })
            .collect()
    } else {
        Vec::new()
    };
    let e = Expected {
        hash: &hash,
        image: &image_id,
        networks: &nets,
        scale: convert::scale_of(s),
    };
    let obs: Vec<_> = observed.iter().map(project::observed).collect();
    let mut out = Vec::new();
    let mut start = Vec::new();
    for action in plan::converge(&e, &obs, policy) {
        match action {
            Action::Keep { id, running } => {
                let o = obs.iter().find(|o| o.id == id).expect("observed");
                if running {
                    event("Container", &o.name, "Running");
                } else {
                    start.push(id.clone());
                }
                out.push((id, o.name.clone(), o.number));
            }
            Action::Recreate { id, number } => {
                let o = obs.iter().find(|o| o.id == id).expect("observed");
                event("Container", &o.name, "Recreate");
                stop_container(&client, &id, timeout).await?;
                let tmp = format!("{}_{}", &id[..12.min(id.len())], o.name);
                client
                    .send(
                        Method::POST,
                        &format!(
                            "/containers/{}/rename{}",
                            seg(&id),
                            query(&[("name", Some(tmp))])
                        ),
                        None,
                    )
                    .await?;
                let created = create_one(
                    &client,
                    &project,
                    &name,
                    s,
                    number,
                    &image_id,
                    network_mode.clone(),
                    Some(&id),
                )
                .await?;
                remove_container(&client, &id, false).await?;
                event("Container", &created.1, "Recreated");
                start.push(created.0.clone());
                out.push((created.0, created.1, number));
            }
            Action::Remove { id } => {
                let o = obs.iter().find(|o| o.id == id).expect("observed");
                event("Container", &o.name, "Stopping");
                stop_container(&client, &id, timeout).await?;
                event("Container", &o.name, "Stopped");
                remove_container(&client, &id, false).await?;
                event("Container", &o.name, "Removed");
            }
            Action::Create { number } => {
                let created = create_one(
                    &client,
                    &project,
                    &name,
                    s,
                    number,
                    &image_id,
                    network_mode.clone(),
                    None,
                )
                .await?;
                event("Container", &created.1, "Created");
                start.push(created.0.clone());
                out.push((created.0, created.1, number));
            }
        }
    }
    out.sort_by_key(|c| c.2);
    Ok((name, out, start))
}

/// `create`'s work, shared by `up`: images, networks, volumes, orphans, then each service
/// converged level by level.
async fn converge(client: &Client, project: &Arc<Project>, c: &Converge) -> Result<Converged> {
    project::check_services(project, &c.services)?;
    let levels = plan::levels(project, &c.services, c.no_deps);
    let wanted: BTreeSet<String> = levels.iter().flatten().cloned().collect();
    if c.build {
        for name in &wanted {
            super::images::build_service(client, project, name, false, false, &[]).await?;
        }
    }
    let images = ensure_images(client, project, &wanted, c.pull_always).await?;
    ensure_networks(client, project).await?;
    ensure_volumes(client, project).await?;
    let all = containers(client, &project.name, true, OneOff::Include, &[]).await?;
    let orphans: Vec<&Value> = all
        .iter()
        .filter(|c| {
            project::label(c, labels::ONEOFF) != "True"
                && !project.services.contains_key(service_of(c))
                && !project.disabled_services.contains_key(service_of(c))
        })
        .collect();
    if !orphans.is_empty() {
        if c.remove_orphans {
            for o in &orphans {
                event("Container", name_of(o), "Stopping");
                stop_container(client, id_of(o), c.timeout).await?;
                remove_container(client, id_of(o), false).await?;
                event("Container", name_of(o), "Removed");
            }
        } else {
            let names: Vec<&str> = orphans.iter().map(|o| name_of(o)).collect();
            eprintln!(
                "WARN[0000] Found orphan containers ([{}]) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.",
                names.join(" ")
            );
        }
    }
    let mut done = Converged {
        levels: levels.clone(),
        ..Default::default()
    };
    for level in &levels {
        let mut set = JoinSet::new();
        for name in level {
            let s = &project.services[name];
            let observed: Vec<Value> = all
                .iter()
                .filter(|c| service_of(c) == name && project::label(c, labels::ONEOFF) != "True")
                .cloned()
                .collect();
            let network_mode = match s.network_mode.strip_prefix("service:") {
                Some(dep) => Some(format!(
                    "container:{}",
                    done.ids
                        .get(dep)
                        .and_then(|v| v.first())
                        .map(|(id, _)| id.clone())
                        .ok_or_else(|| anyhow!(
                            "service {name:?} depends on {dep:?} which has no container"
                        ))?
                )),
                None => None,
            };
            set.spawn(converge_service(
                client.clone(),
                project.clone(),
                name.clone(),
                images.get(name).cloned().unwrap_or_default(),
                observed,
                c.policy,
                c.timeout,
                network_mode,
            ));
        }
        while let Some(r) = set.join_next().await {
            let (name, list, start) = r??;
            done.ids
                .insert(name, list.into_iter().map(|(id, n, _)| (id, n)).collect());
            done.to_start.extend(start);
        }
    }
    Ok(done)
}

async fn inspect(client: &Client, id: &str) -> Result<Value> {
    client
        .json(Method::GET, &format!("/containers/{}/json", seg(id)), None)
        .await
}

/// Waits for `dep`'s containers to meet `condition` (compose's `waitDependencies`).
async fn wait_condition(
    client: &Client,
    dep: &str,
    condition: &str,
    list: &[(String, String)],
    deadline: Option<Instant>,
) -> Result<()> {
    for (id, cname) in list {
        let mut waiting = false;
        loop {
            let info = inspect(client, id).await?;
            let state = &info["State"];
            let status = state["Status"].as_str().unwrap_or("");
            let code = state["ExitCode"].as_i64().unwrap_or(0);
            match condition {
                "service_healthy" => {
                    let health = state["Health"]["Status"].as_str();
                    let has_check = info["Config"]["Healthcheck"]["Test"]
                        .as_array()
                        .is_some_and(|t| !t.is_empty() && t[0] != "NONE");
                    match health {
                        Some("healthy") => {
                            if waiting {
                                event("Container", cname, "Healthy");
                            }
                            break;
                        }
                        Some("unhealthy") => bail!("dependency failed to start: container {cname} is unhealthy"),
                        None if !has_check && status == "running" => bail!("dependency failed to start: container {cname} has no healthcheck configured"),
                        _ if status == "exited" || status == "dead" => bail!("dependency failed to start: container {cname} exited ({code})"),
                        _ => {}
                    }
                }
                "service_completed_successfully" => {
                    if status == "exited" || status == "dead" {
                        if code != 0 {
                            bail!("service {dep:?} didn't complete successfully: exit {code}");
                        }
                        if waiting {
                            event("Container", cname, "Exited");
                        }
                        break;
                    }
                }
                _ => {
                    if status == "running" || status == "exited" {
                        break;
                    }
                }
            }
            if !waiting {
                event("Container", cname, "Waiting");
                waiting = true;
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                bail!("timeout waiting for {cname}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// Starts services level by level, each after its dependencies meet their conditions.
async fn start_all(client: &Client, project: &Arc<Project>, done: &Converged) -> Result<()> {
    let ids = Arc::new(done.ids.clone());
    let to_start = Arc::new(done.to_start.clone());
    for level in &done.levels {
        let mut set = JoinSet::new();
        for name in level {
            let client = client.clone();
            let project = project.clone();
            let ids = ids.clone();
            let to_start = to_start.clone();
            let name = name.clone();
            set.spawn(async move {
                let s = &project.services[&name];
                for (dep, d) in &s.depends_on {
                    let Some(list) = ids.get(dep) else { continue };
                    wait_condition(&client, dep, &d.condition, list, None).await?;
                }
                for (id, cname) in ids.get(&name).into_iter().flatten() {
                    if !to_start.contains(id) {
                        continue;
                    }
                    event("Container", cname, "Starting");
                    client
                        .send(
                            Method::POST,
                            &format!("/containers/{}/start", seg(id)),
                            None,
                        )
                        .await
                        .map_err(|e| anyhow!("Error response from daemon: {}", strip(&e)))?;
                    event("Container", cname, "Started");
                }
                anyhow::Ok(())
            });
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
    }
    Ok(())
}

fn strip(e: &anyhow::Error) -> String {
    match api_error(e) {
        Some(a) => a.message.clone(),
        None => format!("{e:#}"),
    }
}

/// `barge compose create`.
pub async fn create(client: &Client, args: &ComposeArgs, a: &CreateArgs) -> Result<i32> {
    let mut project = super::load_project(args, &a.services)?;
    apply_scale(&mut project, &a.scale)?;
    let project = Arc::new(project);
    converge(
        client,
        &project,
        &Converge {
            build: a.build,
            pull_always: a.pull.as_deref() == Some("always"),
            services: a.services.clone(),
            no_deps: false,
            policy: policy(a.force_recreate, a.no_recreate),
            remove_orphans: a.remove_orphans,
            timeout: None,
        },
    )
    .await?;
    Ok(0)
}

/// `barge compose up`.
pub async fn up(client: &Client, args: &ComposeArgs, a: &UpArgs) -> Result<i32> {
    let mut project = super::load_project(args, &a.services)?;
    apply_scale(&mut project, &a.scale)?;
    let project = Arc::new(project);
    let done = converge(
        client,
        &project,
        &Converge {
            build: a.build && !a.no_build,
            pull_always: a.pull.as_deref() == Some("always"),
            services: a.services.clone(),
            no_deps: a.no_deps,
            policy: policy(a.force_recreate, a.no_recreate),
            remove_orphans: a.remove_orphans,
            timeout: a.timeout,
        },
    )
    .await?;
    if a.no_start {
        return Ok(0);
    }
    let attached: Vec<String> = if a.services.is_empty() {
        project.services.keys().cloned().collect()
    } else {
        a.services.clone()
    };
    let detach = a.detach || a.wait;
    let mut logs = None;
    // Registered before anything starts, so a Ctrl-C from then on stops the project.
    let mut sigint = if detach {
        None
    } else {
        Some(tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::interrupt(),
        )?)
    };
    if !detach {
        let list: Vec<(String, String, String)> = attached
            .iter()
            .flat_map(|s| {
                done.ids
                    .get(s)
                    .into_iter()
                    .flatten()
                    .map(move |(id, n)| (s.clone(), id.clone(), n.clone()))
            })
            .collect();
        let names: Vec<String> = list
            .iter()
            .map(|(_, _, n)| short_name(&project.name, n))
            .collect();
        println!("Attaching to {}", names.join(", "));
        logs = Some(
            attach_all(
                client,
                &project.name,
                list,
                !a.no_color && std::io::stdout().is_terminal(),
                a.no_log_prefix,
            )
            .await?,
        );
    }
    start_all(client, &project, &done).await?;
    if a.wait {
        let timeout = a
            .wait_timeout
            .map(|t| Instant::now() + Duration::from_secs(t));
        for s in &attached {
            let has_health = project
                .services
                .get(s)
                .and_then(|s| s.healthcheck.as_ref())
                .is_some_and(|h| !h.disable);
            let cond = if has_health {
                "service_healthy"
            } else {
                "service_started"
            };
            let list = done.ids.get(s).cloned().unwrap_or_default();
            wait_condition(client, s, cond, &list, timeout).await?;
        }
        return Ok(0);
    }
    let Some(mut logs) = logs else { return Ok(0) };
    let abort = a.abort_on_container_exit || a.exit_code_from.is_some();
    let all_ids: Vec<String> = done
        .ids
        .values()
        .flatten()
        .map(|(id, _)| id.clone())
        .collect();
    let mut remaining = logs.count;
    let mut exit_code = 0;
    let mut interrupted = false;
    while remaining > 0 {
        tokio::select! {
            ended = logs.exits.recv() => {
                let Some((service, id, cname)) = ended else { break };
                remaining -= 1;
                let code = inspect(client, &id).await.ok().and_then(|i| i["State"]["ExitCode"].as_i64()).unwrap_or(0);
                println!("{} exited with code {code}", short_name(&project.name, &cname));
                let counts = a.exit_code_from.as_deref().is_none_or(|s| s == service);
                if abort && counts {
                    exit_code = code as i32;
                    println!("Aborting on container exit...");
                    stop_ids(client, &all_ids, a.timeout).await;
                    break;
                }
            }
            _ = async { sigint.as_mut().expect("foreground").recv().await } => {
                interrupted = true;
                eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
                break;
            }
        }
    }
    if interrupted {
        stop_ids(client, &all_ids, a.timeout).await;
        return Ok(130);
    }
    Ok(exit_code)
}

async fn stop_ids(client: &Client, ids: &[String], timeout: Option<i64>) {
    let mut set = JoinSet::new();
    for id in ids {
        let client = client.clone();
        let id = id.clone();
        set.spawn(async move {
            if let Ok(info) = inspect(&client, &id).await {
                let name = info["Name"]
                    .as_str()
                    .unwrap_or("")
                    .trim_start_matches('/')
                    .to_string();
                if info["State"]["Running"].as_bool() == Some(true) {
                    event("Container", &name, "Stopping");
                    let _ = stop_container(&client, &id, timeout).await;
                    event("Container", &name, "Stopped");
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
}

/// `web-1` for `project-web-1` (compose's log prefix).
pub fn short_name(project: &str, name: &str) -> String {
    name.strip_prefix(&format!("{project}-"))
        .unwrap_or(name)
        .to_string()
}

/// compose's rainbow of prefix colours.
const COLORS: [&str; 12] = [
    "36", "33", "32", "35", "34", "31", "36;1", "33;1", "32;1", "35;1", "34;1", "31;1",
];

/// Writes prefixed lines of the containers' output.
pub struct Prefixer {
    prefix: String,
    partial: [Vec<u8>; 3],
}

impl Prefixer {
    /// A prefixer for `name` among names at most `width` long: padded to `width + 1` then
    /// `| ` (compose's `logConsumer`), coloured with `color` if set.
    pub fn new(name: &str, width: usize, color: Option<&str>, plain: bool) -> Self {
        let prefix = if plain {
            String::new()
        } else {
            let width = width + 1;
            let p = format!("{name:<width$} | ");
            match color {
                Some(c) => format!("\x1b[{c}m{p}\x1b[0m"),
                None => p,
            }
        };
        Self {
            prefix,
            partial: Default::default(),
        }
    }

    /// Feeds output of `stream` (1 stdout, 2 stderr); prints complete lines.
    pub fn feed(&mut self, stream: u8, data: &[u8]) {
        let buf = &mut self.partial[(stream as usize).min(2)];
        buf.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            out.extend_from_slice(self.prefix.as_bytes());
            out.extend_from_slice(&line);
        }
        if !out.is_empty() {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(&out);
            let _ = o.flush();
        }
    }

    /// Prints what is left without a newline.
    pub fn finish(&mut self) {
        for i in 0..3 {
            if !self.partial[i].is_empty() {
                let mut data = std::mem::take(&mut self.partial[i]);
                data.push(b'\n');
                self.feed(i as u8, &data);
            }
        }
    }
}

/// Attached containers: each `(service, id, name)` arrives on `exits` when its output ends.
pub struct Attached {
    count: usize,
    exits: tokio::sync::mpsc::UnboundedReceiver<(String, String, String)>,
}

async fn attach_all(
    client: &Client,
    project: &str,
    list: Vec<(String, String, String)>,
    color: bool,
    plain: bool,
) -> Result<Attached> {
    let width = list
        .iter()
        .map(|(_, _, n)| short_name(project, n).len())
        .max()
        .unwrap_or(0);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut services: Vec<&String> = list.iter().map(|(s, _, _)| s).collect();
    services.dedup();
    for (service, id, name) in list.iter().cloned() {
        let idx = services.iter().position(|s| **s == service).unwrap_or(0);
        let mut p = Prefixer::new(
            &short_name(project, &name),
            width,
            color.then_some(COLORS[idx % COLORS.len()]),
            plain,
        );
        let info = inspect(client, &id).await?;
        let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
        let hijacked = client
            .hijack(
                &format!("/containers/{}/attach?stream=1&stdout=1&stderr=1", seg(&id)),
                crate::client::empty(),
            )
            .await?;
        let tx = tx.clone();
        tokio::spawn(async move {
            pump_prefixed(hijacked, tty, &mut p).await;
            p.finish();
            let _ = tx.send((service, id, name));
        });
    }
    Ok(Attached {
        count: list.len(),
        exits: rx,
    })
}

/// Copies a container's (multiplexed unless `tty`) output through `p` until it ends.
pub async fn pump_prefixed(h: Hijacked, tty: bool, p: &mut Prefixer) {
    let mut demux = Demux::default();
    let mut handle = |data: &[u8], p: &mut Prefixer| {
        if tty {
            p.feed(1, data);
        } else {
            demux.feed(data, |s, d| p.feed(s, d));
        }
    };
    match h {
        Hijacked::Upgraded(mut io) => {
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                handle(&buf[..n], p);
            }
        }
        Hijacked::Body(mut body) => {
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(d) = frame.into_data() {
                    handle(&d, p);
                }
            }
        }
    }
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

/// Converges and starts `services` (and their dependencies), as `up -d SERVICES` (used by
/// `run` for the service's dependencies).
pub async fn up_services(
    client: &Client,
    project: &Arc<Project>,
    services: &[String],
) -> Result<()> {
    let done = converge(
        client,
        project,
        &Converge {
            build: false,
            pull_always: false,
            services: services.to_vec(),
            no_deps: false,
            policy: Recreate::Diverged,
            remove_orphans: false,
            timeout: None,
        },
    )
    .await?;
    start_all(client, project, &done).await
}

/// The project's networks and volumes.
pub async fn ensure_resources(client: &Client, project: &Project) -> Result<()> {
    ensure_networks(client, project).await?;
    ensure_volumes(client, project).await
}

/// The image ID of one service (pulled when missing).
pub async fn image_ids(client: &Client, project: &Project, service: &str) -> Result<String> {
    let set: BTreeSet<String> = [service.to_string()].into();
    Ok(ensure_images(client, project, &set, false)
        .await?
        .remove(service)
        .unwrap_or_default())
}
