//! `events`, `wait` and `cp`, as docker compose v2 prints and resolves them.

use anyhow::{bail, Result};
use barge_compose::convert::labels;
use clap::Args;
use hyper::Method;
use serde_json::{json, Map, Value};

use super::project::{self, containers, id_of, name_of, number_of, service_of, OneOff};
use super::ComposeArgs;
use crate::client::{empty, for_each_json, query, seg, Client};

/// `barge compose events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Output events as a stream of json objects
    #[arg(long)]
    pub json: bool,
    /// Services
    pub services: Vec<String>,
}

/// `barge compose wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Drops project when the first container stops
    #[arg(long)]
    pub down_project: bool,
    /// Services
    #[arg(required = true)]
    pub services: Vec<String>,
}

/// `barge compose cp`.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// Index of the container if service has multiple replicas
    #[arg(long, value_name = "int")]
    pub index: Option<i64>,
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// SERVICE:SRC_PATH or a local path
    #[arg(allow_hyphen_values = true)]
    pub src: String,
    /// SERVICE:DEST_PATH or a local path
    #[arg(allow_hyphen_values = true)]
    pub dest: String,
}

/// One engine event as compose prints it: `(text line, json line)`, or `None` when compose
/// skips it (not a container event, a one-off, or another service).
pub fn compose_event(ev: &Value, services: &[String]) -> Option<(String, Value)> {
    if ev["Type"].as_str() != Some("container") {
        return None;
    }
    let attrs = ev["Actor"]["Attributes"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if attrs.get(labels::ONEOFF).and_then(Value::as_str) == Some("True") {
        return None;
    }
    let service = attrs
        .get(labels::SERVICE)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !services.is_empty() && !services.contains(&service) {
        return None;
    }
    let kept: Map<String, Value> = attrs
        .into_iter()
        .filter(|(k, _)| !k.starts_with("com.docker.compose."))
        .collect();
    let nanos = ev["timeNano"]
        .as_i64()
        .unwrap_or_else(|| ev["time"].as_i64().unwrap_or(0) * 1_000_000_000);
    let ts =
        chrono::DateTime::from_timestamp(nanos / 1_000_000_000, (nanos % 1_000_000_000) as u32)
            .unwrap_or_default()
            .with_timezone(&chrono::Local);
    let id = ev["Actor"]["ID"].as_str().unwrap_or("");
    let action = ev["Action"].as_str().unwrap_or("");
    let mut line = format!(
        "{} container {action} {id}",
        ts.format("%Y-%m-%d %H:%M:%S%.6f")
    );
    let attr: Vec<String> = kept
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    if !attr.is_empty() {
        line.push_str(&format!(" ({})", attr.join(", ")));
    }
    let js = json!({
        "action": action,
        "attributes": kept,
        "id": id,
        "service": service,
        "time": ts.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        "type": "container",
    });
    Some((line, js))
}

/// `barge compose events`.
pub async fn events(client: &Client, args: &ComposeArgs, a: &EventsArgs) -> Result<i32> {
    let project = project::load_or_name(args, &[])?;
    let filters = json!({"label": [format!("{}={}", labels::PROJECT, project.name)]}).to_string();
    let resp = client
        .request(
            Method::GET,
            &format!("/events{}", query(&[("filters", Some(filters))])),
            empty(),
            &[],
        )
        .await?;
    for_each_json(resp, |ev| {
        if let Some((line, js)) = compose_event(&ev, &a.services) {
            if a.json {
                println!("{js}");
            } else {
                println!("{line}");
            }
        }
        Ok(())
    })
    .await?;
    Ok(0)
}

/// `barge compose wait`: the exit code of the first container to stop.
pub async fn wait(client: &Client, args: &ComposeArgs, a: &WaitArgs) -> Result<i32> {
    let project = project::load_or_name(args, &[])?;
    project::check_services(&project, &a.services)?;
    let list = containers(client, &project.name, true, OneOff::Exclude, &a.services).await?;
    if list.is_empty() {
        bail!("no containers for project {:?}", project.name);
    }
    let mut set = tokio::task::JoinSet::new();
    for c in &list {
        let client = client.clone();
        let path = format!("/containers/{}/wait", seg(id_of(c)));
        set.spawn(async move {
            let v: Value = client.json(Method::POST, &path, None).await?;
            anyhow::Ok(v["StatusCode"].as_i64().unwrap_or(0))
        });
    }
    let code = match set.join_next().await {
        Some(r) => r??,
        None => 0,
    };
    set.abort_all();
    if a.down_project {
        super::lifecycle::down(
            client,
            args,
            &super::lifecycle::DownArgs {
                volumes: false,
                remove_orphans: false,
                timeout: None,
                rmi: None,
                services: Vec::new(),
            },
        )
        .await?;
    }
    Ok(code as i32)
}

/// `barge compose cp`: `SERVICE:PATH` names the service's container (`--index`, default 1
/// for a copy out; every replica for a copy in, as compose does).
pub async fn cp(client: &Client, args: &ComposeArgs, a: &CpArgs) -> Result<i32> {
    let project = project::load_or_name(args, &[])?;
    let split = |s: &str| -> Option<(String, String)> {
        let (svc, path) = s.split_once(':')?;
        (!svc.is_empty() && !svc.contains('/')).then(|| (svc.to_string(), path.to_string()))
    };
    let (service, into) = match (split(&a.src), split(&a.dest)) {
        (Some((s, _)), None) => (s, false),
        (None, Some((s, _))) => (s, true),
        _ => bail!("copying between services is not supported"),
    };
    project::check_services(&project, std::slice::from_ref(&service))?;
    let list = containers(
        client,
        &project.name,
        false,
        OneOff::Exclude,
        std::slice::from_ref(&service),
    )
    .await?;
    let targets: Vec<&Value> = list
        .iter()
        .filter(|c| match a.index {
            Some(i) => number_of(c) == i,
            None => into || number_of(c) == 1,
        })
        .collect();
    if targets.is_empty() {
        bail!("no container found for service {service:?}");
    }
    for c in targets {
        let rename = |s: &str| match s.split_once(':') {
            Some((svc, path)) if svc == service_of(c) => format!("{}:{path}", name_of(c)),
            _ => s.to_string(),
        };
        let name = name_of(c);
        let path = |s: &str| s.split_once(':').map_or(s, |(_, p)| p).to_string();
        let msg = if into {
            format!("copy {} to {name}:{}", a.src, path(&a.dest))
        } else {
            format!("copy {name}:{} to {}", path(&a.src), a.dest)
        };
        project::progress(name, &msg, "Copying");
        if client.is_dry_run() {
            dry_run_cp(client, c, into, &path(&a.src)).await?;
        } else {
            crate::fsops::cp(
                client,
                crate::cli::CpArgs {
                    archive: a.archive,
                    follow_link: a.follow_link,
                    quiet: true,
                    src: rename(&a.src),
                    dst: rename(&a.dest),
                },
            )
            .await?;
        }
        project::progress(name, &msg, "Copied");
    }
    Ok(0)
}

/// `cp --dry-run` as compose's DryRunClient runs it: what a copy needs is checked (a local
/// source must exist; a container source too, stat'ed with `HEAD .../archive`), nothing is
/// read or written.
async fn dry_run_cp(client: &Client, c: &Value, into: bool, src: &str) -> Result<()> {
    if into {
        if src != "-" {
            let abs = std::path::absolute(src)?;
            if let Err(e) = std::fs::symlink_metadata(&abs) {
                bail!("lstat {}: {}", abs.display(), crate::fsops::io_text(&e));
            }
        }
        return Ok(());
    }
    let path = format!(
        "/containers/{}/archive{}",
        seg(id_of(c)),
        query(&[("path", Some(src.to_string()))])
    );
    if client
        .request(Method::HEAD, &path, empty(), &[])
        .await
        .is_err()
    {
        bail!("could not find the file {src} in container {}", id_of(c));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_as_compose_prints_them() {
        let ev = json!({
            "Type": "container", "Action": "start", "timeNano": 1_700_000_000_123_456_789i64,
            "Actor": {"ID": "abc", "Attributes": {
                "com.docker.compose.service": "web", "com.docker.compose.oneoff": "False",
                "image": "busybox:1.35", "name": "p-web-1"}}
        });
        let (line, js) = compose_event(&ev, &[]).unwrap();
        assert!(
            line.ends_with(" container start abc (image=busybox:1.35, name=p-web-1)"),
            "{line}"
        );
        assert_eq!(js["service"], "web");
        assert_eq!(
            js["attributes"],
            json!({"image": "busybox:1.35", "name": "p-web-1"})
        );
        assert!(compose_event(&ev, &["db".into()]).is_none());
        let mut oneoff = ev.clone();
        oneoff["Actor"]["Attributes"]["com.docker.compose.oneoff"] = json!("True");
        assert!(compose_event(&oneoff, &[]).is_none());
    }
}
