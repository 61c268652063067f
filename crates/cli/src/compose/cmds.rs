//! `ps`, `logs`, `exec`, `run`, `top`, `port`, `images`, `ls` and `version`, printed as
//! docker compose v2 prints them.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use barge_compose::convert::{self, labels, Instance, COMPOSE_VERSION};
use barge_compose::model::Port;
use bollard_stubs::models::ContainerSummary;
use clap::Args;
use hyper::Method;
use serde_json::{json, Value};

use super::attach::{self, short_name, Prefixer};
use super::lifecycle::ServicesArgs;
use super::project::{self, containers, id_of, name_of, number_of, service_of, OneOff};
use super::up;
use super::ComposeArgs;
use crate::client::{json_body, query, seg, Client};
use crate::stream;

/// `barge compose ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all stopped containers (including those created by the run command)
    #[arg(short, long)]
    pub all: bool,
    /// Only display IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Display services
    #[arg(long)]
    pub services: bool,
    /// Format the output. Values: [table | json]
    #[arg(long, default_value = "table", value_name = "string")]
    pub format: String,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter services by status. Values: [paused | restarting | removing | running | dead | created | exited]
    #[arg(long, value_name = "stringArray")]
    pub status: Vec<String>,
    /// Services
    #[arg(value_name = "SERVICE")]
    pub service: Vec<String>,
}

/// `barge compose logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs for each container
    #[arg(short = 'n', long, default_value = "all", value_name = "string")]
    pub tail: String,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Produce monochrome output
    #[arg(long)]
    pub no_color: bool,
    /// Don't print prefix in logs
    #[arg(long)]
    pub no_log_prefix: bool,
    /// index of the container if service has multiple replicas
    #[arg(long, value_name = "int")]
    pub index: Option<i64>,
    /// Services
    pub services: Vec<String>,
}

/// `barge compose exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Detached mode: Run command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Set environment variables
    #[arg(short, long = "env", value_name = "stringArray")]
    pub env: Vec<String>,
    /// index of the container if service has multiple replicas
    #[arg(long, default_value_t = 1, value_name = "int")]
    pub index: i64,
    /// Disable pseudo-TTY allocation. By default `docker compose exec` allocates a TTY
    #[arg(short = 'T', long = "no-TTY")]
    pub no_tty: bool,
    /// Give extended privileges to the process
    #[arg(long)]
    pub privileged: bool,
    /// Run the command as this user
    #[arg(short, long, value_name = "string")]
    pub user: Option<String>,
    /// Path to workdir directory for this command
    #[arg(short, long, value_name = "string")]
    pub workdir: Option<String>,
    /// The service, then the command and its arguments
    #[arg(required = true, value_name = "SERVICE COMMAND [ARGS...]", num_args = 2.., trailing_var_arg = true)]
    pub args: Vec<String>,
}

/// `barge compose run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short, long)]
    pub detach: bool,
    /// Automatically remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Set environment variables
    #[arg(short, long = "env", value_name = "stringArray")]
    pub env: Vec<String>,
    /// Override the entrypoint of the image
    #[arg(long, value_name = "string")]
    pub entrypoint: Option<String>,
    /// Don't start linked services
    #[arg(long)]
    pub no_deps: bool,
    /// Publish a container's port(s) to the host
    #[arg(short, long = "publish", value_name = "stringArray")]
    pub publish: Vec<String>,
    /// Run command with all service's ports enabled and mapped to the host
    #[arg(long)]
    pub service_ports: bool,
    /// Assign a name to the container
    #[arg(long, value_name = "string")]
    pub name: Option<String>,
    /// Disable pseudo-TTY allocation (default: auto-detected)
    #[arg(short = 'T', long = "no-TTY")]
    pub no_tty: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long, default_value_t = true)]
    pub interactive: bool,
    /// Run as specified username or uid
    #[arg(short, long, value_name = "string")]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long, value_name = "string")]
    pub workdir: Option<String>,
    /// Add or override a label
    #[arg(short, long = "label", value_name = "stringArray")]
    pub label: Vec<String>,
    /// The service, then the command and its arguments
    #[arg(required = true, value_name = "SERVICE [COMMAND] [ARGS...]", num_args = 1.., trailing_var_arg = true)]
    pub args: Vec<String>,
}

/// `barge compose port`.
#[derive(Debug, Args)]
pub struct PortArgs {
    /// tcp or udp
    #[arg(long, default_value = "tcp", value_name = "string")]
    pub protocol: String,
    /// Index of the container if service has multiple replicas
    #[arg(long, default_value_t = 1, value_name = "int")]
    pub index: i64,
    /// Service
    pub service: String,
    /// Private port
    pub private_port: u16,
}

/// `barge compose ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Show all stopped Compose projects
    #[arg(short, long)]
    pub all: bool,
    /// Only display project names
    #[arg(short, long)]
    pub quiet: bool,
    /// Format the output. Values: [table | json]
    #[arg(long, default_value = "table", value_name = "string")]
    pub format: String,
}

/// `barge compose version`.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Format the output. Values: [pretty | json]
    #[arg(short, long, value_name = "string")]
    pub format: Option<String>,
    /// Shows only Compose's version number
    #[arg(long)]
    pub short: bool,
}

/// Go's tabwriter as docker's formatter sets it (min width 10, padding 3).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let all = std::iter::once(header.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .chain(rows.iter().cloned());
    for r in all {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                let w = (widths[i] + 3).max(10);
                line.push_str(&format!("{c:<w$}"));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn publishers(c: &Value) -> Vec<Value> {
    let mut p: Vec<Value> = c["Ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            json!({
                "URL": p["IP"].as_str().unwrap_or(""),
                "TargetPort": p["PrivatePort"].as_u64().unwrap_or(0),
                "PublishedPort": p["PublicPort"].as_u64().unwrap_or(0),
                "Protocol": p["Type"].as_str().unwrap_or("tcp"),
            })
        })
        .collect();
    p.sort_by_key(|v| {
        (
            v["TargetPort"].as_u64(),
            v["URL"].as_str().map(str::to_string),
        )
    });
    p
}

fn exit_code(status: &str) -> i64 {
    status
        .strip_prefix("Exited (")
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn health(status: &str) -> &'static str {
    if status.contains("(healthy)") {
        "healthy"
    } else if status.contains("(unhealthy)") {
        "unhealthy"
    } else if status.contains("(health: starting)") {
        "starting"
    } else {
        ""
    }
}

/// One `ps` row as compose's JSON (docker's container fields plus compose's).
pub fn ps_json(project: &str, c: &Value, no_trunc: bool) -> Result<Value> {
    let summary: ContainerSummary = serde_json::from_value(c.clone())?;
    let mut row = crate::container::ps_row(&summary, no_trunc);
    let st = c["Status"].as_str().unwrap_or("");
    row["Name"] = json!(name_of(c));
    row["Project"] = json!(project);
    row["Service"] = json!(service_of(c));
    row["ExitCode"] = json!(exit_code(st));
    row["Health"] = json!(health(st));
    row["Publishers"] = json!(publishers(c));
    if let Some(o) = row.as_object_mut() {
        o.remove("Platform");
    }
    Ok(row)
}

/// `barge compose ps`.
pub async fn ps(client: &Client, args: &ComposeArgs, a: &PsArgs) -> Result<i32> {
    let project = project::load_or_name(args, &[])?;
    project::check_services(&project, &a.service)?;
    let mut list = containers(client, &project.name, true, OneOff::Include, &a.service).await?;
    list.retain(|c| {
        let state = c["State"].as_str().unwrap_or("");
        let shown = a.all || state == "running";
        shown && (a.status.is_empty() || a.status.iter().any(|s| s == state))
    });
    if a.quiet {
        for c in &list {
            println!("{}", id_of(c));
        }
        return Ok(0);
    }
    if a.services {
        let mut seen = Vec::new();
        for c in &list {
            if !seen.contains(&service_of(c)) {
                seen.push(service_of(c));
                println!("{}", service_of(c));
            }
        }
        return Ok(0);
    }
    let rows: Vec<Value> = list
        .iter()
        .map(|c| ps_json(&project.name, c, a.no_trunc))
        .collect::<Result<_>>()?;
    match a.format.as_str() {
        "json" => {
            for r in rows {
                println!("{r}");
            }
        }
        "table" => {
            let s = |r: &Value, k: &str| r[k].as_str().unwrap_or("").to_string();
            let body: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        s(r, "Name"),
                        s(r, "Image"),
                        s(r, "Command"),
                        s(r, "Service"),
                        s(r, "RunningFor"),
                        s(r, "Status"),
                        s(r, "Ports"),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"],
                    &body
                )
            );
        }
        other => {
            let f = crate::format::Template::parse(other)?;
            for r in rows {
                println!("{}", f.render(&r)?);
            }
        }
    }
    Ok(0)
}

async fn inspect(client: &Client, id: &str) -> Result<Value> {
    client
        .json(Method::GET, &format!("/containers/{}/json", seg(id)), None)
        .await
}

/// `barge compose logs`.
pub async fn logs(client: &Client, args: &ComposeArgs, a: &LogsArgs) -> Result<i32> {
    let project = project::load_or_name(args, &[])?;
    project::check_services(&project, &a.services)?;
    let mut list = containers(client, &project.name, true, OneOff::Exclude, &a.services).await?;
    if let Some(i) = a.index {
        list.retain(|c| number_of(c) == i);
    }
    let width = list
        .iter()
        .map(|c| short_name(&project.name, name_of(c)).len())
        .max()
        .unwrap_or(0);
    let color = !a.no_color && std::io::stdout().is_terminal();
    let mut services: Vec<String> = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for c in &list {
        let service = service_of(c).to_string();
        if !services.contains(&service) {
            services.push(service.clone());
        }
        let idx = services.iter().position(|s| *s == service).unwrap_or(0);
        let colors = ["36", "33", "32", "35", "34", "31"];
        let mut p = Prefixer::new(
            &short_name(&project.name, name_of(c)),
            width,
            color.then_some(colors[idx % colors.len()]),
            a.no_log_prefix,
        );
        let id = id_of(c).to_string();
        let tty = inspect(client, &id).await?["Config"]["Tty"]
            .as_bool()
            .unwrap_or(false);
        let path = format!(
            "/containers/{}/logs{}",
            seg(&id),
            query(&[
                ("stdout", Some("1".into())),
                ("stderr", Some("1".into())),
                ("follow", a.follow.then(|| "1".into())),
                ("tail", Some(a.tail.clone())),
                ("timestamps", a.timestamps.then(|| "1".into())),
            ])
        );
        let resp = client
            .request(Method::GET, &path, crate::client::empty(), &[])
            .await?;
        tasks.spawn(async move {
            attach::pump_prefixed(crate::client::Hijacked::Body(resp.into_body()), tty, &mut p)
                .await;
            p.finish();
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(0)
}

/// The container of `service` with replica number `index`.
async fn service_container(
    client: &Client,
    project: &str,
    service: &str,
    index: i64,
) -> Result<Value> {
    let list = containers(
        client,
        project,
        false,
        OneOff::Exclude,
        &[service.to_string()],
    )
    .await?;
    list.into_iter()
        .find(|c| number_of(c) == index)
        .ok_or_else(|| anyhow!("service {service:?} is not running"))
}

/// `barge compose exec`.
pub async fn exec(client: &Client, args: &ComposeArgs, a: &ExecArgs) -> Result<i32> {
    let project = project::load_or_name(args, &[])?;
    let service = &a.args[0];
    project::check_services(&project, std::slice::from_ref(service))?;
    let c = service_container(client, &project.name, service, a.index).await?;
    let tty = !a.no_tty && std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    let mut cmd = vec![id_of(&c).to_string()];
    cmd.extend(a.args[1..].iter().cloned());
    let e = crate::cli::ExecArgs {
        detach: a.detach,
        interactive: !a.detach,
        tty,
        env: a.env.clone(),
        env_file: Vec::new(),
        user: a.user.clone(),
        workdir: a.workdir.clone(),
        privileged: a.privileged,
        args: cmd,
    };
    crate::container::exec(client, e).await
}

fn random_slug() -> String {
    let mut b = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `-p [ip:][host:]container[/proto]` as a compose port.
fn parse_publish(s: &str) -> Result<Port> {
    let (spec, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    let (target, published, ip) = match parts.as_slice() {
        [t] => (*t, "", ""),
        [t, p] => (*t, *p, ""),
        [t, p, ip] => (*t, *p, *ip),
        _ => bail!("invalid port {s:?}"),
    };
    Ok(Port {
        mode: "ingress".into(),
        host_ip: ip.into(),
        target: target
            .parse()
            .map_err(|_| anyhow!("invalid containerPort: {target}"))?,
        published: published.into(),
        protocol: proto.into(),
        ..Default::default()
    })
}

/// `barge compose run`.
pub async fn run(client: &Client, args: &ComposeArgs, a: &RunArgs) -> Result<i32> {
    let service = a.args[0].clone();
    let mut project = super::load_project(args, std::slice::from_ref(&service))?;
    let Some(s) = project.services.get(&service).cloned() else {
        bail!("no such service: {service}");
    };
    // Dependencies first, as `up` would run them.
    let deps: Vec<String> =
        barge_compose::plan::levels(&project, std::slice::from_ref(&service), false)
            .into_iter()
            .flatten()
            .filter(|x| *x != service)
            .collect();
    let arc = Arc::new(project.clone());
    if !a.no_deps && !deps.is_empty() {
        up::up_services(client, &arc, &deps).await?;
    } else {
        up::ensure_resources(client, &arc).await?;
    }
    let mut s = s;
    if a.args.len() > 1 {
        s.command = Some(a.args[1..].to_vec());
    }
    if let Some(e) = &a.entrypoint {
        s.entrypoint = Some(if e.is_empty() {
            Vec::new()
        } else {
            e.split_whitespace().map(str::to_string).collect()
        });
    }
    for e in &a.env {
        let (k, v) = match e.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (e.clone(), std::env::var(e).ok()),
        };
        s.environment.insert(k, v);
    }
    if let Some(u) = &a.user {
        s.user = u.clone();
    }
    if let Some(w) = &a.workdir {
        s.working_dir = w.clone();
    }
    for l in &a.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        s.labels.insert(k.into(), v.into());
    }
    if !a.service_ports {
        s.ports.clear();
    }
    for p in &a.publish {
        s.ports.push(parse_publish(p)?);
    }
    s.restart.clear();
    // references to other services resolved to their containers, as `up` does
    let all = containers(client, &project.name, true, OneOff::Exclude, &[]).await?;
    let of = |svc: &str| -> Vec<&Value> { all.iter().filter(|c| service_of(c) == svc).collect() };
    let s = convert::resolve_references(&s, &|svc| of(svc).first().map(|c| id_of(c).to_string()))
        .map_err(|e| anyhow!(e))?;
    let mut links = convert::links(&project.name, &s, -1, &|svc| {
        of(svc).iter().map(|c| name_of(c).to_string()).collect()
    });
    // a one-off container also links to its own service's running containers (compose's
    // getLinks; the engine refuses to start with a link to a stopped one)
    for c in of(&service).into_iter().filter(|c| c["State"] == "running") {
        let n = name_of(c);
        let short = n.strip_prefix(&format!("{}-", project.name)).unwrap_or(n);
        links.extend([
            format!("{n}:{service}"),
            format!("{n}:{short}"),
            format!("{n}:{n}"),
        ]);
    }
    project.services.insert(service.clone(), s.clone());
    let images = up::image_ids(client, &project, &service).await?;
    let slug = random_slug();
    let name = a.name.clone().unwrap_or_else(|| {
        if s.container_name.is_empty() {
            format!("{}-{service}-run-{}", project.name, &slug[..12])
        } else {
            s.container_name.clone()
        }
    });
    let tty = !a.no_tty && std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    let interactive = a.interactive && !a.detach;
    let inst = Instance {
        number: -1,
        name: name.clone(),
        oneoff: true,
        slug,
        image_id: images,
        auto_remove: a.rm,
        stdin: interactive,
        tty,
        publish: true,
        multi_endpoint: crate::client::parse_version(&client.api_version())
            .is_some_and(|v| v >= (1, 44)),
        links,
        ..Default::default()
    };
    let body = convert::create_body(&project, &service, &s, &inst)?;
    let created: Value = client
        .json(
            Method::POST,
            &format!(
                "/containers/create{}",
                query(&[("name", Some(name.clone()))])
            ),
            Some(json_body(&body)?),
        )
        .await?;
    let id = created["Id"].as_str().unwrap_or("").to_string();
    up::inject_files(client, &project, &service, &s, &id).await?;
    let start = format!("/containers/{}/start", seg(&id));
    if a.detach {
        client.send(Method::POST, &start, None).await?;
        println!("{name}");
        return Ok(0);
    }
    let hijacked = client
        .hijack(
            &format!(
                "/containers/{}/attach?stream=1&stdin={}&stdout=1&stderr=1",
                seg(&id),
                u8::from(interactive)
            ),
            crate::client::empty(),
        )
        .await?;
    let waiter =
        crate::container::spawn_wait(client, &id, if a.rm { "removed" } else { "next-exit" }).await;
    let raw = if tty { stream::RawMode::enter()? } else { None };
    if let Err(e) = client.send(Method::POST, &start, None).await {
        drop(raw);
        waiter.abort();
        if a.rm {
            let _ = client
                .send(
                    Method::DELETE,
                    &format!("/containers/{}?force=1", seg(&id)),
                    None,
                )
                .await;
        }
        return Err(e);
    }
    let pumped = stream::pump(hijacked, tty, interactive).await;
    drop(raw);
    pumped?;
    let code = waiter.await??;
    Ok(code as i32)
}

/// `barge compose top`.
pub async fn top(client: &Client, args: &ComposeArgs, a: &ServicesArgs) -> Result<i32> {
    let project = project::load_or_name(args, &[])?;
    let list = containers(client, &project.name, false, OneOff::Include, &a.services).await?;
    for c in &list {
        let t: Value = client
            .json(
                Method::GET,
                &format!("/containers/{}/top", seg(id_of(c))),
                None,
            )
            .await?;
        println!("{}", name_of(c));
        let titles: Vec<&str> = t["Titles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let rows: Vec<Vec<String>> = t["Processes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                r.as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| x.as_str().unwrap_or("").to_string())
                    .collect()
            })
            .collect();
        println!("{}", table(&titles, &rows));
    }
    Ok(0)
}

/// `barge compose port`.
pub async fn port(client: &Client, args: &ComposeArgs, a: &PortArgs) -> Result<i32> {
    let project = project::load_or_name(args, &[])?;
    let c = service_container(client, &project.name, &a.service, a.index).await?;
    for p in c["Ports"].as_array().into_iter().flatten() {
        if p["PrivatePort"].as_u64() == Some(a.private_port.into())
            && p["Type"].as_str() == Some(&a.protocol)
            && p["PublicPort"].is_u64()
        {
            println!(
                "{}:{}",
                p["IP"].as_str().unwrap_or(""),
                p["PublicPort"].as_u64().unwrap_or(0)
            );
            return Ok(0);
        }
    }
    bail!(
        "no port {}/{} for container {}",
        a.private_port,
        a.protocol,
        name_of(&c)
    )
}

/// `barge compose images`.
pub async fn images(client: &Client, args: &ComposeArgs, a: &ServicesArgs) -> Result<i32> {
    let project = project::load_or_name(args, &[])?;
    let list = containers(client, &project.name, true, OneOff::Include, &a.services).await?;
    let mut rows = Vec::new();
    for c in &list {
        let image = c["Image"].as_str().unwrap_or("");
        let info: Value = client
            .json(
                Method::GET,
                &format!(
                    "/images/{}/json",
                    seg(c["ImageID"].as_str().unwrap_or(image))
                ),
                None,
            )
            .await
            .unwrap_or(Value::Null);
        let (repo, tag) = match image.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
            _ => (image.to_string(), "latest".to_string()),
        };
        let id = info["Id"].as_str().unwrap_or("");
        rows.push(vec![
            name_of(c).to_string(),
            repo,
            tag,
            crate::format::short_id(id),
            crate::format::human_size(info["Size"].as_i64().unwrap_or(0)),
        ]);
    }
    print!(
        "{}",
        table(
            &["CONTAINER", "REPOSITORY", "TAG", "IMAGE ID", "SIZE"],
            &rows
        )
    );
    Ok(0)
}

/// `barge compose ls`.
pub async fn ls(client: &Client, a: &LsArgs) -> Result<i32> {
    let filters = json!({"label": [labels::PROJECT]}).to_string();
    let list: Vec<Value> = client
        .json(
            Method::GET,
            &format!(
                "/containers/json{}",
                query(&[("all", Some("1".into())), ("filters", Some(filters))])
            ),
            None,
        )
        .await?;
    // project → (states, config files)
    let mut projects: BTreeMap<String, (BTreeMap<String, usize>, String)> = BTreeMap::new();
    for c in &list {
        let name = project::label(c, labels::PROJECT).to_string();
        let e = projects.entry(name).or_default();
        *e.0.entry(c["State"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
        e.1 = project::label(c, labels::CONFIG_FILES).to_string();
    }
    let mut rows = Vec::new();
    for (name, (states, files)) in projects {
        if !a.all && !states.contains_key("running") {
            continue;
        }
        let status: Vec<String> = states.iter().map(|(s, n)| format!("{s}({n})")).collect();
        rows.push((name, status.join(", "), files));
    }
    if a.quiet {
        rows.iter().for_each(|r| println!("{}", r.0));
    } else if a.format == "json" {
        let v: Vec<Value> = rows
            .iter()
            .map(|(n, s, f)| json!({"Name": n, "Status": s, "ConfigFiles": f}))
            .collect();
        println!("{}", Value::Array(v));
    } else {
        let body: Vec<Vec<String>> = rows.into_iter().map(|(n, s, f)| vec![n, s, f]).collect();
        print!("{}", table(&["NAME", "STATUS", "CONFIG FILES"], &body));
    }
    Ok(0)
}

/// `barge compose version`.
pub fn version(a: &VersionArgs) -> Result<i32> {
    if a.short {
        println!("{COMPOSE_VERSION}");
    } else if a.format.as_deref() == Some("json") {
        println!("{}", json!({"version": format!("v{COMPOSE_VERSION}")}));
    } else {
        println!(
            "Docker Compose version v{COMPOSE_VERSION} (barge {})",
            env!("CARGO_PKG_VERSION")
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_like_tabwriter() {
        let t = table(
            &["NAME", "IMAGE"],
            &[vec!["p-web-1".into(), "multilayer:1".into()]],
        );
        assert_eq!(t, "NAME      IMAGE\np-web-1   multilayer:1\n");
    }

    #[test]
    fn publish_flags() {
        let p = parse_publish("127.0.0.1:8000:80/udp").unwrap();
        assert_eq!(
            (
                p.host_ip.as_str(),
                p.published.as_str(),
                p.target,
                p.protocol.as_str()
            ),
            ("127.0.0.1", "8000", 80, "udp")
        );
        let p = parse_publish("80").unwrap();
        assert_eq!((p.published.as_str(), p.target), ("", 80));
        assert_eq!(exit_code("Exited (3) 2 seconds ago"), 3);
        assert_eq!(health("Up 3 seconds (healthy)"), "healthy");
    }
}
