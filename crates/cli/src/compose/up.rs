//! `up` and `create` as docker compose v2 runs them: images, networks and volumes first, then
//! each service converged in dependency order (parallel where the graph allows), only diverged
//! containers recreated, then started once their dependencies meet their conditions.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use barge_compose::convert::{self, labels, Instance};
use barge_compose::model::{Project, Service};
use barge_compose::plan::{self, Action, Expected, Recreate};
use clap::Args;
use hyper::Method;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use super::attach::{attach_all, short_name};
use super::project::{self, containers, event, id_of, name_of, service_of, OneOff};
use super::rollback::{remove_retired, Before, Retired};
use super::ComposeArgs;
use crate::client::{api_error, for_each_json, json_body, query, seg, Client};

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
    /// Watch source code and rebuild/refresh containers when files are updated
    #[arg(short = 'w', long)]
    pub watch: bool,
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
    /// Containers replaced, scaled away or orphaned: stopped, removed once all started.
    retired: Vec<Retired>,
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

pub(super) fn not_found(e: &anyhow::Error) -> bool {
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
            None if client.is_dry_run() && s.build.is_some() && !pull => {
                // compose's dry run "builds" a missing image with a build section
                let id = super::images::dry_run_build(name, &image);
                ids.insert(name.clone(), id);
                continue;
            }
            None if client.is_dry_run() => {
                // compose's DryRunClient: nothing pulled or built, the image is "dryRunId"
                event("Image", &image, "Pulling");
                event("Image", &image, "Pulled");
                ids.insert(name.clone(), "dryRunId".into());
                continue;
            }
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

/// The project resources `up` makes sure of before any container: networks, then volumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource {
    Network,
    Volume,
}

impl Resource {
    /// The progress-line kind and the API collection.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Resource::Network => ("Network", "networks"),
            Resource::Volume => ("Volume", "volumes"),
        }
    }

    /// compose's warning for a resource of that name it did not make for this project
    /// (`owner`: the project label found, if any).
    fn foreign(self, name: &str, project: &str, owner: Option<&str>) -> String {
        match (self, owner) {
            (Resource::Network, None) => format!("a network with name {name} exists but was not created by compose.\nSet `external: true` to use an existing network"),
            (Resource::Network, Some(_)) => format!("a network with name {name} exists but was not created for project {project:?}.\nSet `external: true` to use an existing network"),
            (Resource::Volume, None) => format!("volume {name:?} already exists but was not created by Docker Compose. Use `external: true` to use an existing volume"),
            (Resource::Volume, Some(p)) => format!("volume {name:?} already exists but was created for project {p:?} (expected {project:?}). Use `external: true` to use an existing volume"),
        }
    }
}

/// compose's `ensureNetwork`/`ensureVolume`: each of the project's networks and volumes is
/// looked up by name; a missing one is created (an external one is an error), one made for
/// another project (or not by compose) is used with compose's warning.
pub async fn ensure_resources(client: &Client, project: &Project) -> Result<()> {
    let networks = project
        .networks
        .iter()
        .map(|(k, n)| (Resource::Network, k, &n.name, n.external));
    let volumes = project
        .volumes
        .iter()
        .map(|(k, v)| (Resource::Volume, k, &v.name, v.external));
    for (r, key, name, external) in networks.chain(volumes) {
        let (kind, collection) = r.names();
        let path = format!("/{collection}/{}", seg(name));
        match client.json::<Value>(Method::GET, &path, None).await {
            Ok(existing) => {
                let owner = existing["Labels"][labels::PROJECT].as_str();
                if !external && owner != Some(&project.name) {
                    eprintln!("WARN[0000] {}", r.foreign(name, &project.name, owner));
                }
            }
            Err(e) if not_found(&e) => {
                match (r, external) {
                    (Resource::Network, true) => {
                        bail!("network {name} declared as external, but could not be found")
                    }
                    (Resource::Volume, true) => bail!("external volume {name:?} not found"),
                    _ => {}
                }
                let body = match r {
                    Resource::Network => convert::network_body(project, key),
                    Resource::Volume => convert::volume_body(project, key),
                }
                .expect("declared");
                let created = client
                    .send(
                        Method::POST,
                        &format!("/{collection}/create"),
                        Some(json_body(&body)?),
                    )
                    .await;
                match (r, created) {
                    (Resource::Network, Err(e)) => bail!("failed to create network {name}: {e}"),
                    (_, r) => r?,
                }
                event(kind, name, "Created");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn multi_endpoint(client: &Client) -> bool {
    crate::client::parse_version(&client.api_version()).is_some_and(|v| v >= (1, 44))
}

/// The other services' containers a service's create needs (compose's observed state):
/// names by service, lowest number first, for its `links`.
pub(super) type Linked = Arc<BTreeMap<String, Vec<String>>>;

/// Creates one container of `name` (`s`: the service with its references resolved);
/// returns its ID and name.
#[allow(clippy::too_many_arguments)]
async fn create_one(
    client: &Client,
    project: &Project,
    name: &str,
    s: &Service,
    number: i64,
    image_id: &str,
    linked: &Linked,
    replace: Option<&str>,
    inherit: Vec<(String, String, bool)>,
) -> Result<(String, String)> {
    let cname = convert::container_name(&project.name, name, s, number as u32);
    let inst = Instance {
        number,
        name: cname.clone(),
        image_id: image_id.to_string(),
        publish: true,
        links: convert::links(&project.name, s, number, &|svc| {
            linked.get(svc).cloned().unwrap_or_default()
        }),
        multi_endpoint: multi_endpoint(client),
        inherit,
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
    inject_files(client, project, name, s, &id).await?;
    Ok((id, cname))
}

/// Copies the service's `environment:`/`content:` secrets and configs into a new container,
/// as compose's `injectSecrets`/`injectConfigs` (a tar through `PUT /archive` at `/`).
pub(super) async fn inject_files(
    client: &Client,
    project: &Project,
    name: &str,
    s: &Service,
    id: &str,
) -> Result<()> {
    let files = convert::injected_files(project, name, s)?;
    if client.is_dry_run() {
        return Ok(());
    }
    for f in files {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(f.content.len() as u64);
        h.set_mode(f.mode);
        h.set_uid(f.uid);
        h.set_gid(f.gid);
        h.set_mtime(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        );
        // the archive is unpacked at `/`: a relative name is the same file
        b.append_data(&mut h, f.path.trim_start_matches('/'), f.content.as_slice())?;
        let body = b.into_inner()?;
        let path = format!(
            "/containers/{}/archive{}",
            seg(id),
            query(&[
                ("path", Some("/".into())),
                ("copyUIDGID", f.keep_owner.then(|| "true".into())),
            ])
        );
        let resp = client
            .request(
                Method::PUT,
                &path,
                crate::client::full(body),
                &[("Content-Type", "application/x-tar")],
            )
            .await
            .map_err(|e| anyhow!("Error response from daemon: {}", strip(&e)))?;
        crate::client::read_all(resp).await?;
    }
    Ok(())
}

pub(super) async fn stop_container(client: &Client, id: &str, timeout: Option<i64>) -> Result<()> {
    let path = format!(
        "/containers/{}/stop{}",
        seg(id),
        query(&[("t", timeout.map(|t| t.to_string()))])
    );
    client.send(Method::POST, &path, None).await
}

pub(super) async fn remove_container(client: &Client, id: &str, volumes: bool) -> Result<()> {
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

/// What converging one service did.
struct Outcome {
    name: String,
    /// `(id, name, number)` by number.
    containers: Vec<(String, String, i64)>,
    /// IDs to start.
    start: Vec<String>,
    /// Whether a container was recreated (its `restart: true` dependents are restarted).
    recreated: bool,
    /// The containers it replaced or scaled away (stopped, removed after the start).
    retired: Vec<Retired>,
}

/// Converges one service (`s`: the service with its references to other services
/// resolved, which its config hash covers, as compose's).
#[allow(clippy::too_many_arguments)]
async fn converge_service(
    client: Client,
    project: Arc<Project>,
    name: String,
    svc: Arc<Service>,
    image_id: String,
    observed: Vec<Value>,
    policy: Recreate,
    timeout: Option<i64>,
    linked: Linked,
) -> Result<Outcome> {
    let s = &*svc;
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
    let vols: Vec<String> = s
        .volumes
        .iter()
        .filter(|v| v.kind == "volume" && !v.source.is_empty())
        .filter_map(|v| project.volumes.get(&v.source).map(|pv| pv.name.clone()))
        .collect();
    let e = Expected {
        hash: &hash,
        image: &image_id,
        networks: &nets,
        volumes: &vols,
        scale: convert::scale_of(s),
    };
    let obs: Vec<_> = observed.iter().map(project::observed).collect();
    let mut out = Vec::new();
    let mut start = Vec::new();
    let mut recreated = false;
    let mut retired = Vec::new();
    let mut creates = JoinSet::new();
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
                recreated = true;
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
                            query(&[("name", Some(tmp.clone()))])
                        ),
                        None,
                    )
                    .await?;
                let old = inspect(&client, &id).await?;
                let mounts: Vec<(String, String, String, bool)> = old["Mounts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| {
                        let f = |k: &str| m[k].as_str().unwrap_or("").to_string();
                        (
                            f("Type"),
                            f("Name"),
                            f("Destination"),
                            m["RW"].as_bool() != Some(false),
                        )
                    })
                    .collect();
                let created = create_one(
                    &client,
                    &project,
                    &name,
                    s,
                    number,
                    &image_id,
                    &linked,
                    Some(&id),
                    convert::inherited_volumes(s, &mounts),
                )
                .await?;
                // kept (stopped, renamed) until the project has started: a failure puts it back
                retired.push(Retired {
                    id: id.clone(),
                    name: tmp,
                    replaced: true,
                });
                event("Container", &created.1, "Recreated");
                start.push(created.0.clone());
                out.push((created.0, created.1, number));
            }
            Action::Remove { id } => {
                let o = obs.iter().find(|o| o.id == id).expect("observed");
                event("Container", &o.name, "Stopping");
                stop_container(&client, &id, timeout).await?;
                event("Container", &o.name, "Stopped");
                retired.push(Retired {
                    id: id.clone(),
                    name: o.name.clone(),
                    replaced: false,
                });
            }
            Action::Create { number } => {
                // New replicas are created in parallel, as compose's errgroup does.
                let (client, project, name) = (client.clone(), project.clone(), name.clone());
                let (image_id, linked) = (image_id.clone(), linked.clone());
                let s = svc.clone();
                creates.spawn(async move {
                    let created = create_one(
                        &client,
                        &project,
                        &name,
                        &s,
                        number,
                        &image_id,
                        &linked,
                        None,
                        Vec::new(),
                    )
                    .await?;
                    event("Container", &created.1, "Created");
                    anyhow::Ok((created.0, created.1, number))
                });
            }
        }
    }
    while let Some(r) = creates.join_next().await {
        let (id, cname, number) = r??;
        start.push(id.clone());
        out.push((id, cname, number));
    }
    out.sort_by_key(|c| c.2);
    Ok(Outcome {
        name,
        containers: out,
        start,
        recreated,
        retired,
    })
}

/// `create`'s work, shared by `up`: images, networks, volumes, orphans, then each service
/// converged level by level.
async fn converge(client: &Client, project: &Arc<Project>, c: &Converge) -> Result<Converged> {
    project::check_services(project, &c.services)?;
    let levels = plan::levels(project, &c.services, c.no_deps);
    let wanted: BTreeSet<String> = levels.iter().flatten().cloned().collect();
    let mut built = BTreeMap::new();
    if c.build {
        for name in &wanted {
            let id = super::images::build_service(client, project, name, false, false, &[]);
            if let Some(id) = id.await? {
                built.insert(name.clone(), id);
            }
        }
    }
    // a dry run's builds give compose's `dryRun-…` IDs
    let rest: BTreeSet<String> = wanted
        .iter()
        .filter(|n| !built.contains_key(*n))
        .cloned()
        .collect();
    let mut images = ensure_images(client, project, &rest, c.pull_always).await?;
    images.extend(built);
    ensure_resources(client, project).await?;
    let mut all = containers(client, &project.name, true, OneOff::Include, &[]).await?;
    let orphans: Vec<&Value> = all
        .iter()
        .filter(|c| {
            project::label(c, labels::ONEOFF) != "True"
                && !project.services.contains_key(service_of(c))
                && !project.disabled_services.contains_key(service_of(c))
        })
        .collect();
    let mut retired = Vec::new();
    if !orphans.is_empty() {
        if c.remove_orphans {
            for o in &orphans {
                event("Container", name_of(o), "Stopping");
                stop_container(client, id_of(o), c.timeout).await?;
                event("Container", name_of(o), "Stopped");
                retired.push(Retired {
                    id: id_of(o).to_string(),
                    name: name_of(o).to_string(),
                    replaced: false,
                });
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
        retired,
        ..Default::default()
    };
    for level in &levels {
        let mut set = JoinSet::new();
        for name in level {
            let s = &project.services[name];
            let observed: Vec<Value> = observed_of(&all, name).into_iter().cloned().collect();
            // compose's observed state: containers converged so far, else those found
            let first = |dep: &str| -> Option<String> {
                match done.ids.get(dep) {
                    Some(list) => list.first().map(|(id, _)| id.clone()),
                    None => observed_of(&all, dep).first().map(|c| id_of(c).to_string()),
                }
            };
            let resolved = convert::resolve_references(s, &first).map_err(|e| anyhow!(e))?;
            let linked: BTreeMap<String, Vec<String>> = s
                .links
                .iter()
                .map(|l| l.split(':').next().unwrap_or_default().to_string())
                .map(|dep| {
                    let names = match done.ids.get(&dep) {
                        Some(list) => list.iter().map(|(_, n)| n.clone()).collect(),
                        None => observed_of(&all, &dep)
                            .iter()
                            .map(|c| name_of(c).to_string())
                            .collect(),
                    };
                    (dep, names)
                })
                .collect();
            set.spawn(converge_service(
                client.clone(),
                project.clone(),
                name.clone(),
                Arc::new(resolved),
                images.get(name).cloned().unwrap_or_default(),
                observed,
                c.policy,
                c.timeout,
                Arc::new(linked),
            ));
        }
        let mut recreated = Vec::new();
        while let Some(r) = set.join_next().await {
            let o = r??;
            if o.recreated {
                recreated.push(o.name.clone());
            }
            done.ids.insert(
                o.name,
                o.containers.into_iter().map(|(id, n, _)| (id, n)).collect(),
            );
            done.to_start.extend(o.start);
            done.retired.extend(o.retired);
        }
        // As compose's stopDependentContainers: dependents declaring `restart: true` on a
        // recreated service are stopped now and started again after it.
        for dep in &recreated {
            let dependents: Vec<&String> = project
                .services
                .iter()
                .filter(|(_, s)| s.depends_on.get(dep).is_some_and(|d| d.restart))
                .map(|(n, _)| n)
                .collect();
            for ctr in all.iter_mut() {
                let svc = service_of(ctr).to_string();
                if dependents.contains(&&svc) && ctr["State"].as_str() == Some("running") {
                    let (id, name) = (id_of(ctr).to_string(), name_of(ctr).to_string());
                    event("Container", &name, "Stopping");
                    stop_container(client, &id, c.timeout).await?;
                    event("Container", &name, "Stopped");
                    ctr["State"] = json!("exited");
                }
            }
        }
    }
    Ok(done)
}

/// The service containers (not one-offs) of `service` among `all`, lowest number first.
fn observed_of<'a>(all: &'a [Value], service: &str) -> Vec<&'a Value> {
    let mut list: Vec<&Value> = all
        .iter()
        .filter(|c| service_of(c) == service && project::label(c, labels::ONEOFF) != "True")
        .collect();
    list.sort_by_key(|c| project::number_of(c));
    list
}

pub(super) async fn inspect(client: &Client, id: &str) -> Result<Value> {
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
                let mut starts = JoinSet::new();
                for (id, cname) in ids.get(&name).into_iter().flatten() {
                    if !to_start.contains(id) {
                        continue;
                    }
                    let (client, id, cname) = (client.clone(), id.clone(), cname.clone());
                    starts.spawn(async move {
                        event("Container", &cname, "Starting");
                        client
                            .send(
                                Method::POST,
                                &format!("/containers/{}/start", seg(&id)),
                                None,
                            )
                            .await
                            .map_err(|e| anyhow!("Error response from daemon: {}", strip(&e)))?;
                        event("Container", &cname, "Started");
                        anyhow::Ok(())
                    });
                }
                while let Some(r) = starts.join_next().await {
                    r??;
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

pub(super) fn strip(e: &anyhow::Error) -> String {
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
    let before = Before::take(client, &project.name).await?;
    let converged = converge(
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
    .await;
    let done = match converged {
        Ok(done) => done,
        Err(e) => return Err(before.restore(client, &project.name, e).await),
    };
    remove_retired(client, &done.retired).await?;
    Ok(0)
}

/// `barge compose up`.
pub async fn up(client: &Client, args: &ComposeArgs, a: &UpArgs) -> Result<i32> {
    let mut project = super::load_project(args, &a.services)?;
    apply_scale(&mut project, &a.scale)?;
    let project = Arc::new(project);
    // the rules are checked before anything is made
    let watch_rules = if a.watch {
        Some(super::watch::rules(&project, &a.services)?)
    } else {
        None
    };
    let before = Before::take(client, &project.name).await?;
    let converged = converge(
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
    .await;
    let done = match converged {
        Ok(done) => done,
        Err(e) => return Err(before.restore(client, &project.name, e).await),
    };
    if a.no_start {
        remove_retired(client, &done.retired).await?;
        return Ok(0);
    }
    let attached: Vec<String> = if a.services.is_empty() {
        project.services.keys().cloned().collect()
    } else {
        a.services.clone()
    };
    // a dry run attaches to nothing (compose: "interactive run is not supported")
    let detach = a.detach || a.wait || client.is_dry_run();
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
    if let Err(e) = start_all(client, &project, &done).await {
        return Err(before.restore(client, &project.name, e).await);
    }
    remove_retired(client, &done.retired).await?;
    let watcher = watch_rules.map(|rules| {
        let opts = super::watch::Options::default();
        tokio::spawn(super::watch::run(
            client.clone(),
            project.clone(),
            rules,
            opts,
        ))
    });
    if let (Some(w), true) = (&watcher, detach && !a.wait) {
        // `up -d --watch` watches in the foreground until interrupted
        let _ = tokio::signal::ctrl_c().await;
        w.abort();
        return Ok(0);
    }
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
    // As compose's log printer: with --abort-on-container-exit the first exit stops every
    // container; the exit code is that of --exit-code-from's service, else of the first to
    // exit; statuses are no longer printed once aborting.
    let mut aborting = false;
    let mut code_from = a.exit_code_from.clone();
    while remaining > 0 {
        tokio::select! {
            ended = logs.exits.recv() => {
                let Some((service, id, cname)) = ended else { break };
                remaining -= 1;
                // The output closes a moment before the daemon records the exit: ask the
                // wait endpoint (as compose does), not inspect, for the code.
                let path = format!("/containers/{}/wait?condition=not-running", seg(&id));
                let code = client
                    .json(Method::POST, &path, None)
                    .await
                    .ok()
                    .and_then(|v: Value| v["StatusCode"].as_i64())
                    .unwrap_or(0);
                if !aborting {
                    println!("{} exited with code {code}", short_name(&project.name, &cname));
                }
                if abort {
                    if !aborting {
                        aborting = true;
                        eprintln!("Aborting on container exit...");
                        stop_ids(client, &all_ids, a.timeout).await;
                    }
                    let from = code_from.get_or_insert_with(|| service.clone());
                    if *from == service {
                        exit_code = code as i32;
                    }
                }
            }
            _ = async { sigint.as_mut().expect("foreground").recv().await } => {
                interrupted = true;
                eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
                break;
            }
        }
    }
    if let Some(w) = watcher {
        w.abort();
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

/// Converges and starts `services` (and their dependencies), as `up -d SERVICES` (used by
/// `run` for the service's dependencies).
pub async fn up_services(
    client: &Client,
    project: &Arc<Project>,
    services: &[String],
) -> Result<()> {
    converge_and_start(
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
    .await
}

/// Recreates and starts `services` alone (a `develop.watch` rebuild: compose's `up` of the
/// rebuilt services, their dependencies left as they are).
pub async fn recreate_services(
    client: &Client,
    project: &Arc<Project>,
    services: &[String],
) -> Result<()> {
    converge_and_start(
        client,
        project,
        &Converge {
            build: false,
            pull_always: false,
            services: services.to_vec(),
            no_deps: true,
            policy: Recreate::Force,
            remove_orphans: false,
            timeout: None,
        },
    )
    .await
}

/// Converges and starts; a failure puts the project back as it was.
async fn converge_and_start(client: &Client, project: &Arc<Project>, c: &Converge) -> Result<()> {
    let before = Before::take(client, &project.name).await?;
    let started = match converge(client, project, c).await {
        Ok(done) => start_all(client, project, &done).await.map(|()| done),
        Err(e) => Err(e),
    };
    match started {
        Ok(done) => remove_retired(client, &done.retired).await,
        Err(e) => Err(before.restore(client, &project.name, e).await),
    }
}

/// The image ID of one service (pulled when missing).
pub async fn image_ids(client: &Client, project: &Project, service: &str) -> Result<String> {
    let set: BTreeSet<String> = [service.to_string()].into();
    Ok(ensure_images(client, project, &set, false)
        .await?
        .remove(service)
        .unwrap_or_default())
}
