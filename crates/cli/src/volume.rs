//! `barge volume create|ls|inspect|rm|prune` (docker's `volume` commands).

use anyhow::Result;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};

use crate::client::{self, filters, json_body, query, seg, Client};
use crate::format::{self, Output};

/// `barge volume ...`.
#[derive(Debug, Subcommand)]
pub enum VolumeCmd {
    /// Create a volume
    Create(VolumeCreateArgs),
    /// List volumes
    #[command(visible_alias = "list")]
    Ls(VolumeLsArgs),
    /// Display detailed information on one or more volumes
    Inspect(VolumeInspectArgs),
    /// Remove one or more volumes
    #[command(visible_alias = "remove")]
    Rm(VolumeRmArgs),
    /// Remove unused local volumes
    Prune(VolumePruneArgs),
}

#[derive(Debug, Args)]
#[command(override_usage = "barge volume create [OPTIONS] [VOLUME]")]
pub struct VolumeCreateArgs {
    /// Specify volume driver name
    #[arg(short, long, default_value = "local", value_name = "string")]
    pub driver: String,
    /// Set metadata for a volume
    #[arg(long, value_name = "list")]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short, long = "opt", value_name = "map")]
    pub opt: Vec<String>,
    /// Specify volume name
    #[arg(long, hide = true, value_name = "string")]
    pub name: Option<String>,
    #[arg(value_name = "VOLUME")]
    pub volume: Option<String>,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge volume ls [OPTIONS]")]
pub struct VolumeLsArgs {
    /// Provide filter values (e.g. "dangling=true")
    #[arg(short, long, value_name = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
    /// Only display volume names
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge volume inspect [OPTIONS] VOLUME [VOLUME...]")]
pub struct VolumeInspectArgs {
    /// Format output using a custom template ('json', 'TEMPLATE')
    #[arg(short, long, value_name = "string")]
    pub format: Option<String>,
    #[arg(required = true, value_name = "VOLUME")]
    pub volumes: Vec<String>,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge volume rm [OPTIONS] VOLUME [VOLUME...]")]
pub struct VolumeRmArgs {
    /// Force the removal of one or more volumes
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true, value_name = "VOLUME")]
    pub volumes: Vec<String>,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge volume prune [OPTIONS]")]
pub struct VolumePruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short, long)]
    pub all: bool,
    /// Provide filter values (e.g. "label=<label>")
    #[arg(long, value_name = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

fn key_values(list: &[String]) -> serde_json::Map<String, Value> {
    list.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), json!(v)),
            None => (kv.to_string(), json!("")),
        })
        .collect()
}

/// Runs a `volume` subcommand.
pub async fn run(client: &Client, cmd: VolumeCmd) -> Result<i32> {
    match cmd {
        VolumeCmd::Create(a) => create(client, a).await,
        VolumeCmd::Ls(a) => ls(client, a).await,
        VolumeCmd::Inspect(a) => {
            crate::system::inspect_objects(client, &a.volumes, a.format.as_deref(), Some("volume"))
                .await
        }
        VolumeCmd::Rm(a) => rm(client, a).await,
        VolumeCmd::Prune(a) => prune(client, a).await,
    }
}

async fn create(client: &Client, a: VolumeCreateArgs) -> Result<i32> {
    if let (Some(n), Some(v)) = (&a.name, &a.volume) {
        if n != v {
            return Err(crate::status(
                1,
                "conflicting options: either specify --name or provide positional arg, not both",
            ));
        }
    }
    let body = json!({
        "Name": a.volume.or(a.name).unwrap_or_default(),
        "Driver": a.driver,
        "DriverOpts": key_values(&a.opt),
        "Labels": key_values(&a.label),
    });
    let v: Value = client
        .json(Method::POST, "/volumes/create", Some(json_body(&body)?))
        .await?;
    println!("{}", v["Name"].as_str().unwrap_or_default());
    Ok(0)
}

/// A `volume ls` row: the fields docker's `--format` offers.
pub fn volume_row(v: &Value) -> Value {
    let labels = v["Labels"]
        .as_object()
        .map(|m| {
            let mut l: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            l.sort();
            l.join(",")
        })
        .unwrap_or_default();
    json!({
        "Name": v["Name"],
        "Driver": v["Driver"],
        "Scope": v["Scope"],
        "Mountpoint": v["Mountpoint"],
        "Labels": labels,
        "Links": "N/A",
        "Size": "N/A",
        "Group": "",
        "Availability": "N/A",
        "Status": "N/A",
    })
}

fn header(field: &str) -> String {
    match field {
        "Name" => "VOLUME NAME".into(),
        other => format::header_name(other),
    }
}

async fn ls(client: &Client, a: VolumeLsArgs) -> Result<i32> {
    let path = format!("/volumes{}", query(&[("filters", filters(&a.filter)?)]));
    let resp: Value = client.json(Method::GET, &path, None).await?;
    let mut list = resp["Volumes"].as_array().cloned().unwrap_or_default();
    list.sort_by(|x, y| x["Name"].as_str().cmp(&y["Name"].as_str()));
    if a.quiet {
        for v in &list {
            println!("{}", v["Name"].as_str().unwrap_or_default());
        }
        return Ok(0);
    }
    let output = Output::from_flag(a.format.as_deref(), "table {{.Driver}}\t{{.Name}}")?;
    let rows: Vec<Value> = list.iter().map(volume_row).collect();
    print!("{}", output.render(&rows, header)?);
    Ok(0)
}

async fn rm(client: &Client, a: VolumeRmArgs) -> Result<i32> {
    let q = query(&[("force", a.force.then(|| "1".to_string()))]);
    let mut failed = false;
    for name in &a.volumes {
        match client
            .send(Method::DELETE, &format!("/volumes/{}{q}", seg(name)), None)
            .await
        {
            Ok(_) => println!("{name}"),
            Err(e) => {
                if e.downcast_ref::<client::Unreachable>().is_some() {
                    return Err(e);
                }
                eprintln!("{e:#}");
                failed = true;
            }
        }
    }
    Ok(i32::from(failed))
}

async fn prune(client: &Client, a: VolumePruneArgs) -> Result<i32> {
    let warning = if a.all {
        "WARNING! This will remove all local volumes not used by at least one container."
    } else {
        "WARNING! This will remove anonymous local volumes not used by at least one container."
    };
    if !a.force && !crate::confirm(&format!("{warning}\nAre you sure you want to continue?")) {
        return Ok(0);
    }
    let mut filter = a.filter.clone();
    if a.all {
        filter.push("all=true".into());
    }
    let path = format!("/volumes/prune{}", query(&[("filters", filters(&filter)?)]));
    let report: Value = client.json(Method::POST, &path, None).await?;
    format::print_deleted("Deleted Volumes:", &report["VolumesDeleted"]);
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
    fn rows_and_headers() {
        let r = volume_row(&json!({"Name": "data", "Driver": "local", "Scope": "local",
            "Labels": {"b": "2", "a": "1"}, "Mountpoint": "/x"}));
        assert_eq!(r["Labels"], "a=1,b=2");
        let out = Output::from_flag(None, "table {{.Driver}}\t{{.Name}}")
            .unwrap()
            .render(&[r], header)
            .unwrap();
        assert_eq!(out, "DRIVER    VOLUME NAME\nlocal     data\n");
    }
}
