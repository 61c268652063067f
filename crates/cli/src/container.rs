//! Container commands.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, Result};
use bollard_stubs::models::{
    ContainerCreateResponse, ContainerSummary, ContainerTopResponse, ContainerWaitResponse,
    ExecConfig, ExecInspectResponse, ExecStartConfig, IdResponse,
};
use hyper::Method;
use serde_json::{json, Value};

use crate::cli::{
    CreateArgs, ExecArgs, FormatNamesArgs, KillArgs, LogsArgs, NamesArgs, PruneArgs, PsArgs,
    RmArgs, RunArgs, StartArgs, StopArgs, TopArgs,
};
use crate::client::{self, api_error, empty, filters, json_body, query, seg, Client, Unreachable};
use crate::format::{self, Output};
use crate::opts::{parse_env_file, ContainerOpts};
use crate::stream::{self, RawMode};
use crate::{start_error_code, status};

/// Adds `:latest` to a reference without tag or digest, for messages.
fn full_reference(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || image.contains('@') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// Maps a `run`/`create` failure to exit code 125 with docker's wording.
fn create_failure(err: anyhow::Error, image: &str, cmd: &str) -> anyhow::Error {
    if err.downcast_ref::<Unreachable>().is_some() {
        return err;
    }
    if let Some(api) = api_error(&err) {
        if api.status == 404 && api.message.to_lowercase().contains("no such image") {
            return status(
                125,
                format!(
                    "Unable to find image '{}' locally\nbarge: {err}.\nSee 'barge {cmd} --help'.",
                    full_reference(image)
                ),
            );
        }
    }
    status(125, format!("barge: {err:#}.\nSee 'barge {cmd} --help'."))
}

async fn create_container(
    client: &Client,
    opts: &ContainerOpts,
    detach: bool,
    cmd: &str,
) -> Result<String> {
    let body = opts
        .to_create_body(detach)
        .map_err(|e| status(125, format!("barge: {e:#}.\nSee 'barge {cmd} --help'.")))?;
    let path = format!(
        "/containers/create{}",
        query(&[
            ("name", opts.name.clone()),
            ("platform", opts.platform.clone())
        ])
    );
    let mut res: Result<ContainerCreateResponse> = client
        .json(Method::POST, &path, Some(json_body(&body)?))
        .await;
    // A missing image is pulled, then the create is tried again (as docker does).
    let missing = matches!(&res, Err(e) if api_error(e).is_some_and(|a| a.status == 404 && a.message.to_lowercase().contains("no such image")));
    if missing {
        eprintln!(
            "Unable to find image '{}' locally",
            full_reference(opts.image())
        );
        crate::registry::pull_image(client, opts.image(), opts.platform.as_deref(), false, true)
            .await
            .map_err(|e| status(125, format!("barge: {e:#}.\nSee 'barge {cmd} --help'.")))?;
        res = client
            .json(Method::POST, &path, Some(json_body(&body)?))
            .await;
    }
    let resp = res.map_err(|e| create_failure(e, opts.image(), cmd))?;
    for w in &resp.warnings {
        eprintln!("WARNING: {w}");
    }
    Ok(resp.id)
}

/// `barge create`.
pub async fn create(client: &Client, args: CreateArgs) -> Result<i32> {
    let id = create_container(client, &args.opts, true, "create").await?;
    println!("{id}");
    Ok(0)
}

/// Registers a wait before start; resolves to the exit code.
pub(crate) async fn spawn_wait(
    client: &Client,
    id: &str,
    condition: &str,
) -> tokio::task::JoinHandle<Result<i64>> {
    let client = client.clone();
    let path = format!("/containers/{}/wait?condition={condition}", seg(id));
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let handle = tokio::spawn(async move {
        let resp = client.request(Method::POST, &path, empty(), &[]).await;
        let _ = ready_tx.send(());
        let bytes = client::read_all(resp?).await?;
        let wait: ContainerWaitResponse =
            serde_json::from_slice(&bytes).context("decoding the wait response")?;
        if let Some(msg) = wait.error.and_then(|e| e.message).filter(|m| !m.is_empty()) {
            eprintln!("barge: {msg}");
        }
        Ok(wait.status_code)
    });
    // Docker answers the headers as soon as the wait is registered; don't block
    // forever on a daemon that only answers at exit.
    let _ = tokio::time::timeout(Duration::from_secs(2), ready_rx).await;
    handle
}

/// `barge run`.
pub async fn run(client: &Client, args: RunArgs) -> Result<i32> {
    let opts = &args.opts;
    if opts.tty && opts.interactive && !std::io::stdin().is_terminal() && !args.detach {
        return Err(status(1, "the input device is not a TTY"));
    }
    let id = create_container(client, opts, args.detach, "run").await?;
    let cid = seg(&id);
    let start_path = format!("/containers/{cid}/start");

    if args.detach {
        if let Err(e) = client.send(Method::POST, &start_path, None).await {
            return Err(start_failure(client, &id, opts.rm, e).await);
        }
        println!("{id}");
        return Ok(0);
    }

    let hijacked = client
        .hijack(
            &format!(
                "/containers/{cid}/attach?stream=1&stdin={}&stdout=1&stderr=1",
                u8::from(opts.interactive)
            ),
            empty(),
        )
        .await
        .map_err(|e| status(125, format!("barge: {e:#}")))?;
    let condition = if opts.rm { "removed" } else { "next-exit" };
    let waiter = spawn_wait(client, &id, condition).await;

    let raw = if opts.tty && opts.interactive {
        RawMode::enter()?
    } else {
        None
    };
    if let Err(e) = client.send(Method::POST, &start_path, None).await {
        drop(raw);
        waiter.abort();
        return Err(start_failure(client, &id, opts.rm, e).await);
    }
    if opts.tty && std::io::stdout().is_terminal() {
        stream::spawn_resizer(client, format!("/containers/{cid}"));
    }
    if !opts.tty {
        stream::spawn_signal_proxy(client, &id);
    }
    let pumped = stream::pump(hijacked, opts.tty, opts.interactive).await;
    drop(raw);
    pumped?;
    let code = match waiter.await {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => return Err(status(125, format!("barge: {e:#}"))),
        Err(e) => return Err(status(125, format!("barge: {e}"))),
    };
    Ok(code as i32)
}

async fn start_failure(client: &Client, id: &str, rm: bool, err: anyhow::Error) -> anyhow::Error {
    if err.downcast_ref::<Unreachable>().is_some() {
        return err;
    }
    if rm {
        let _ = client
            .send(
                Method::DELETE,
                &format!("/containers/{}?force=1", seg(id)),
                None,
            )
            .await;
    }
    let code = api_error(&err)
        .map(|a| start_error_code(&a.message))
        .unwrap_or(125);
    status(code, format!("barge: {err:#}."))
}

async fn container_json(client: &Client, name: &str) -> Result<Value> {
    client
        .json(
            Method::GET,
            &format!("/containers/{}/json", seg(name)),
            None,
        )
        .await
}

fn is_tty(inspect: &Value) -> bool {
    inspect["Config"]["Tty"].as_bool().unwrap_or(false)
}

/// Runs `f` for each name; prints errors and returns exit code 1 if any failed.
pub(crate) async fn for_each<F, Fut>(names: &[String], mut f: F) -> Result<i32>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut failed = false;
    for name in names {
        if let Err(e) = f(name.clone()).await {
            if e.downcast_ref::<Unreachable>().is_some() {
                return Err(e);
            }
            eprintln!("{e:#}");
            failed = true;
        }
    }
    Ok(i32::from(failed))
}

/// `barge start`.
pub async fn start(client: &Client, args: StartArgs) -> Result<i32> {
    if args.attach || args.interactive {
        if args.containers.len() > 1 {
            return Err(status(
                1,
                "you cannot start and attach multiple containers at once",
            ));
        }
        let name = &args.containers[0];
        let info = container_json(client, name).await?;
        let tty = is_tty(&info);
        let cid = seg(name);
        let hijacked = client
            .hijack(
                &format!(
                    "/containers/{cid}/attach?stream=1&stdin={}&stdout=1&stderr=1",
                    u8::from(args.interactive)
                ),
                empty(),
            )
            .await?;
        let auto_remove = info["HostConfig"]["AutoRemove"].as_bool().unwrap_or(false);
        let condition = if auto_remove { "removed" } else { "next-exit" };
        let waiter = spawn_wait(client, info["Id"].as_str().unwrap_or(name), condition).await;
        let raw = if tty && args.interactive {
            RawMode::enter()?
        } else {
            None
        };
        if let Err(e) = client
            .send(Method::POST, &format!("/containers/{cid}/start"), None)
            .await
        {
            drop(raw);
            waiter.abort();
            let code = api_error(&e)
                .map(|a| start_error_code(&a.message))
                .unwrap_or(1);
            return Err(status(code, format!("{e:#}")));
        }
        if tty && std::io::stdout().is_terminal() {
            stream::spawn_resizer(client, format!("/containers/{cid}"));
        }
        if !tty {
            stream::spawn_signal_proxy(client, name);
        }
        let pumped = stream::pump(hijacked, tty, args.interactive).await;
        drop(raw);
        pumped?;
        return Ok(waiter.await?? as i32);
    }
    for_each(&args.containers, |name| async move {
        client
            .send(
                Method::POST,
                &format!("/containers/{}/start", seg(&name)),
                None,
            )
            .await?;
        println!("{name}");
        Ok(())
    })
    .await
}

/// `barge stop`.
pub async fn stop(client: &Client, args: StopArgs) -> Result<i32> {
    stop_or_restart(client, args, "stop").await
}

/// `barge restart`.
pub async fn restart(client: &Client, args: StopArgs) -> Result<i32> {
    stop_or_restart(client, args, "restart").await
}

async fn stop_or_restart(client: &Client, args: StopArgs, action: &str) -> Result<i32> {
    let q = query(&[
        ("t", args.time.map(|t| t.to_string())),
        ("signal", args.signal.clone()),
    ]);
    send_each(
        client,
        &args.containers,
        Method::POST,
        &format!("/{action}{q}"),
    )
    .await
}

/// `barge kill`.
pub async fn kill(client: &Client, args: KillArgs) -> Result<i32> {
    let q = query(&[("signal", args.signal.clone())]);
    send_each(client, &args.containers, Method::POST, &format!("/kill{q}")).await
}

/// `barge rm`.
pub async fn rm(client: &Client, args: RmArgs) -> Result<i32> {
    let q = query(&[
        ("force", args.force.then(|| "1".to_string())),
        ("v", args.volumes.then(|| "1".to_string())),
    ]);
    send_each(client, &args.containers, Method::DELETE, &q).await
}

/// Sends `METHOD /containers/{name}{suffix}` for each name, printing the names that succeeded
/// (docker's stop/kill/rm output).
pub(crate) async fn send_each(
    client: &Client,
    names: &[String],
    method: Method,
    suffix: &str,
) -> Result<i32> {
    for_each(names, |name| {
        let method = method.clone();
        async move {
            client
                .send(method, &format!("/containers/{}{suffix}", seg(&name)), None)
                .await?;
            println!("{name}");
            Ok(())
        }
    })
    .await
}

/// Docker's ps row: the fields `--format` templates can use.
pub fn ps_row(c: &ContainerSummary, no_trunc: bool) -> Value {
    let id = c.id.clone().unwrap_or_default();
    let id = if no_trunc { id } else { format::short_id(&id) };
    let command = c.command.clone().unwrap_or_default();
    let command = if no_trunc {
        command
    } else {
        format::ellipsis(&command, 20)
    };
    let command = serde_json::to_string(&command).unwrap_or_default();
    let created = c.created.unwrap_or(0);
    let created_at = format::created_at(created);
    let names: Vec<String> = c
        .names
        .iter()
        .flatten()
        .map(|n| n.strip_prefix('/').unwrap_or(n))
        .filter(|n| !n.contains('/'))
        .map(str::to_string)
        .collect();
    let mut ports: Vec<String> = c
        .ports
        .iter()
        .flatten()
        .map(|p| {
            let typ = p
                .typ
                .as_ref()
                .map(|t| t.to_string())
                .unwrap_or_else(|| "tcp".into());
            match (&p.ip, p.public_port) {
                (Some(ip), Some(public)) if !ip.is_empty() => {
                    let addr = crate::format::host_port(ip, &public.to_string());
                    format!("{addr}->{}/{typ}", p.private_port)
                }
                (_, Some(public)) => format!("{public}->{}/{typ}", p.private_port),
                _ => format!("{}/{typ}", p.private_port),
            }
        })
        .collect();
    ports.dedup();
    let mut labels: Vec<String> = c
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    labels.sort();
    let mounts: Vec<String> = c
        .mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            m.name
                .clone()
                .filter(|n| !n.is_empty())
                .or_else(|| m.source.clone())
        })
        .collect();
    let mut networks: Vec<String> = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|n| n.keys().cloned().collect())
        .unwrap_or_default();
    networks.sort();
    let size_rw = format::human_size(c.size_rw.unwrap_or(0));
    let size = match c.size_root_fs.filter(|s| *s > 0) {
        Some(root) => format!("{size_rw} (virtual {})", format::human_size(root)),
        None => size_rw,
    };
    json!({
        "Command": command,
        "CreatedAt": created_at,
        "ID": id,
        "Image": c.image.clone().unwrap_or_default(),
        "Labels": labels.join(","),
        "LocalVolumes": mounts.len().to_string(),
        "Mounts": mounts.join(","),
        "Names": names.join(","),
        "Networks": networks.join(","),
        "Platform": Value::Null,
        "Ports": ports.join(", "),
        "RunningFor": format::since_unix(created),
        "Size": size,
        "State": c.state.as_ref().map(|s| s.to_string()).unwrap_or_default(),
        "Status": c.status.clone().unwrap_or_default(),
    })
}

/// The default `ps` table.
pub const PS_TABLE: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

/// `barge ps`.
pub async fn ps(client: &Client, args: PsArgs) -> Result<i32> {
    let limit = if args.latest { Some(1) } else { args.last };
    // Like docker, ask for sizes when the template shows them.
    let size = args.size || args.format.as_deref().is_some_and(|f| f.contains(".Size"));
    let path = format!(
        "/containers/json{}",
        query(&[
            ("all", args.all.then(|| "1".to_string())),
            ("limit", limit.filter(|l| *l > 0).map(|l| l.to_string())),
            ("size", size.then(|| "1".to_string())),
            ("filters", filters(&args.filter)?),
        ])
    );
    let containers: Vec<ContainerSummary> = client.json(Method::GET, &path, None).await?;
    if args.quiet {
        for c in &containers {
            let id = c.id.clone().unwrap_or_default();
            println!(
                "{}",
                if args.no_trunc {
                    id
                } else {
                    format::short_id(&id)
                }
            );
        }
        return Ok(0);
    }
    let default = if args.size {
        format!("{PS_TABLE}\t{{{{.Size}}}}")
    } else {
        PS_TABLE.to_string()
    };
    let output = Output::from_flag(args.format.as_deref(), &default)?;
    let rows: Vec<Value> = containers
        .iter()
        .map(|c| ps_row(c, args.no_trunc))
        .collect();
    print!("{}", output.render(&rows, format::header_name)?);
    Ok(0)
}

/// Docker's `--since`/`--until`: durations (`10m`, `1h30m`) are relative to now,
/// RFC 3339 times become unix timestamps, anything else is passed through.
pub fn api_timestamp(value: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    if let Some(d) = parse_go_duration(value) {
        let t = now - d;
        return format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos());
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos());
    }
    value.to_string()
}

/// Parses Go durations like `90s`, `10m`, `1h30m`, `1.5h`.
pub fn parse_go_duration(s: &str) -> Option<chrono::TimeDelta> {
    if s.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    chrono::TimeDelta::try_milliseconds((total * 1000.0) as i64)
}

/// `barge logs`.
pub async fn logs(client: &Client, args: LogsArgs) -> Result<i32> {
    let info = container_json(client, &args.container).await?;
    let now = chrono::Utc::now();
    let path = format!(
        "/containers/{}/logs{}",
        seg(&args.container),
        query(&[
            ("stdout", Some("1".into())),
            ("stderr", Some("1".into())),
            ("follow", args.follow.then(|| "1".into())),
            ("tail", Some(args.tail.clone())),
            ("timestamps", args.timestamps.then(|| "1".into())),
            ("details", args.details.then(|| "1".into())),
            (
                "since",
                args.since.as_deref().map(|s| api_timestamp(s, now))
            ),
            (
                "until",
                args.until.as_deref().map(|s| api_timestamp(s, now))
            ),
        ])
    );
    let resp = client.request(Method::GET, &path, empty(), &[]).await?;
    stream::copy_body(resp.into_body(), is_tty(&info)).await?;
    Ok(0)
}

/// `barge exec`.
pub async fn exec(client: &Client, args: ExecArgs) -> Result<i32> {
    let container = args.args[0].clone();
    if args.tty && args.interactive && !args.detach && !std::io::stdin().is_terminal() {
        return Err(status(1, "the input device is not a TTY"));
    }
    let mut env = Vec::new();
    for f in &args.env_file {
        env.extend(parse_env_file(
            &std::fs::read_to_string(f).with_context(|| format!("open {f}"))?,
        ));
    }
    env.extend(args.env.iter().cloned());
    let attach = !args.detach;
    let config = ExecConfig {
        attach_stdin: Some(attach && args.interactive),
        attach_stdout: Some(attach),
        attach_stderr: Some(attach),
        tty: Some(args.tty),
        env: (!env.is_empty()).then_some(env),
        cmd: Some(args.args[1..].to_vec()),
        privileged: Some(args.privileged),
        user: args.user.clone(),
        working_dir: args.workdir.clone(),
        console_size: if args.tty {
            stream::terminal_size().map(|(h, w)| vec![h as usize, w as usize])
        } else {
            None
        },
        ..Default::default()
    };
    let created: IdResponse = client
        .json(
            Method::POST,
            &format!("/containers/{}/exec", seg(&container)),
            Some(json_body(&config)?),
        )
        .await?;
    let exec_id = seg(&created.id);
    let start = ExecStartConfig {
        detach: Some(args.detach),
        tty: Some(args.tty),
        console_size: config.console_size.clone(),
    };
    let start_path = format!("/exec/{exec_id}/start");
    if args.detach {
        client
            .send(Method::POST, &start_path, Some(json_body(&start)?))
            .await?;
        return Ok(0);
    }
    let hijacked = client.hijack(&start_path, json_body(&start)?).await?;
    let raw = if args.tty && args.interactive {
        RawMode::enter()?
    } else {
        None
    };
    if args.tty && std::io::stdout().is_terminal() {
        stream::spawn_resizer(client, format!("/exec/{exec_id}"));
    }
    let pumped = stream::pump(hijacked, args.tty, args.interactive).await;
    drop(raw);
    pumped?;
    // The stream can end a moment before the daemon records the exit code.
    let inspect_path = format!("/exec/{exec_id}/json");
    let mut inspect: ExecInspectResponse = client.json(Method::GET, &inspect_path, None).await?;
    for _ in 0..100 {
        if inspect.running != Some(true) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        inspect = client.json(Method::GET, &inspect_path, None).await?;
    }
    Ok(inspect.exit_code.unwrap_or(0) as i32)
}

/// `barge container inspect`.
pub async fn inspect(client: &Client, args: FormatNamesArgs) -> Result<i32> {
    crate::system::inspect_objects(
        client,
        &args.names,
        args.format.as_deref(),
        Some("container"),
    )
    .await
}

/// `barge wait`.
pub async fn wait(client: &Client, args: NamesArgs) -> Result<i32> {
    for_each(&args.containers, |name| async move {
        let resp: ContainerWaitResponse = client
            .json(
                Method::POST,
                &format!("/containers/{}/wait", seg(&name)),
                None,
            )
            .await?;
        println!("{}", resp.status_code);
        Ok(())
    })
    .await
}

/// `barge top`.
pub async fn top(client: &Client, args: TopArgs) -> Result<i32> {
    let ps_args = (!args.ps_args.is_empty()).then(|| args.ps_args.join(" "));
    let path = format!(
        "/containers/{}/top{}",
        seg(&args.container),
        query(&[("ps_args", ps_args)])
    );
    let top: ContainerTopResponse = client.json(Method::GET, &path, None).await?;
    let mut out = top.titles.unwrap_or_default().join("\t");
    out.push('\n');
    for p in top.processes.unwrap_or_default() {
        out.push_str(&p.join("\t"));
        out.push('\n');
    }
    print!("{}", format::tabwrite(&out));
    Ok(0)
}

/// `barge container prune`.
pub async fn prune(client: &Client, args: PruneArgs) -> Result<i32> {
    if !args.force
        && !crate::confirm(
            "WARNING! This will remove all stopped containers.\nAre you sure you want to continue?",
        )
    {
        return Ok(0);
    }
    let path = format!(
        "/containers/prune{}",
        query(&[("filters", filters(&args.filter)?)])
    );
    let report: Value = client.json(Method::POST, &path, None).await?;
    format::print_deleted("Deleted Containers:", &report["ContainersDeleted"]);
    println!(
        "Total reclaimed space: {}",
        format::human_size(report["SpaceReclaimed"].as_i64().unwrap_or(0))
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_get_latest() {
        assert_eq!(full_reference("busybox"), "busybox:latest");
        assert_eq!(
            full_reference("localhost:5000/busybox"),
            "localhost:5000/busybox:latest"
        );
        assert_eq!(full_reference("busybox:1.35"), "busybox:1.35");
    }

    #[test]
    fn timestamps_and_durations() {
        let now = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:10:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(api_timestamp("10m", now), "1704067200.000000000");
        assert_eq!(
            api_timestamp("2024-01-01T00:00:00Z", now),
            "1704067200.000000000"
        );
        assert_eq!(api_timestamp("1704067200", now), "1704067200");
        assert_eq!(
            parse_go_duration("1h30m").unwrap(),
            chrono::TimeDelta::minutes(90)
        );
        assert!(parse_go_duration("abc").is_none());
        assert!(parse_go_duration("10x").is_none());
    }

    #[test]
    fn ps_row_matches_docker() {
        let c: ContainerSummary = serde_json::from_value(json!({
            "Id": "0123456789abcdef0123",
            "Names": ["/web"],
            "Image": "busybox",
            "Command": "sh -c 'while true; do sleep 1; done'",
            "Created": chrono::Utc::now().timestamp() - 120,
            "State": "running",
            "Status": "Up 2 minutes",
            "Labels": {"b": "2", "a": "1"},
        }))
        .unwrap();
        let row = ps_row(&c, false);
        assert_eq!(row["ID"], "0123456789ab");
        assert_eq!(row["Names"], "web");
        assert_eq!(row["Command"], "\"sh -c 'while true; …\"");
        assert_eq!(row["RunningFor"], "2 minutes ago");
        assert_eq!(row["State"], "running");
        assert_eq!(row["Labels"], "a=1,b=2");
        assert_eq!(ps_row(&c, true)["ID"], "0123456789abcdef0123");
    }
}
