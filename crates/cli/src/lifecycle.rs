//! `barge pause|unpause|rename|update|stats`.

use std::io::{IsTerminal, Write};

use anyhow::Result;
use clap::Args;
use hyper::Method;
use serde_json::{json, Value};

use crate::client::{json_body, query, seg, Client};
use crate::container::{for_each, send_each};
use crate::format::{self, Output};
use crate::opts::{parse_bytes, parse_cpus, parse_restart};

#[derive(Debug, Args)]
#[command(override_usage = "barge pause CONTAINER [CONTAINER...]")]
pub struct PauseArgs {
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge rename CONTAINER NEW_NAME")]
pub struct RenameArgs {
    pub container: String,
    #[arg(value_name = "NEW_NAME")]
    pub new_name: String,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge update [OPTIONS] CONTAINER [CONTAINER...]")]
pub struct UpdateArgs {
    /// Memory limit
    #[arg(short, long, value_name = "bytes")]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap", value_name = "bytes", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Number of CPUs
    #[arg(long, value_name = "decimal")]
    pub cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares", value_name = "int")]
    pub cpu_shares: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota", value_name = "int")]
    pub cpu_quota: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period", value_name = "int")]
    pub cpu_period: Option<i64>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", value_name = "int", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits
    #[arg(long, value_name = "string")]
    pub restart: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge stats [OPTIONS] [CONTAINER...]")]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    #[arg(value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `barge pause`.
pub async fn pause(client: &Client, args: PauseArgs) -> Result<i32> {
    send_each(client, &args.containers, Method::POST, "/pause").await
}

/// `barge unpause`.
pub async fn unpause(client: &Client, args: PauseArgs) -> Result<i32> {
    send_each(client, &args.containers, Method::POST, "/unpause").await
}

/// `barge rename`.
pub async fn rename(client: &Client, args: RenameArgs) -> Result<i32> {
    let path = format!(
        "/containers/{}/rename{}",
        seg(&args.container),
        query(&[("name", Some(args.new_name.clone()))])
    );
    client.send(Method::POST, &path, None).await?;
    Ok(0)
}

/// The `POST /containers/{id}/update` body of `barge update`'s flags.
pub fn update_body(a: &UpdateArgs) -> Result<Value> {
    let mut body = json!({});
    if let Some(m) = &a.memory {
        body["Memory"] = json!(parse_bytes(m)?);
    }
    if let Some(s) = &a.memory_swap {
        body["MemorySwap"] = json!(if s == "-1" { -1 } else { parse_bytes(s)? });
    }
    if let Some(c) = &a.cpus {
        body["NanoCpus"] = json!(parse_cpus(c)?);
    }
    if let Some(s) = a.cpu_shares {
        body["CpuShares"] = json!(s);
    }
    if let Some(q) = a.cpu_quota {
        body["CpuQuota"] = json!(q);
    }
    if let Some(p) = a.cpu_period {
        body["CpuPeriod"] = json!(p);
    }
    if let Some(p) = a.pids_limit {
        body["PidsLimit"] = json!(p);
    }
    if let Some(r) = &a.restart {
        let p = parse_restart(r)?;
        body["RestartPolicy"] = serde_json::to_value(p)?;
    }
    if body.as_object().is_some_and(|o| o.is_empty()) {
        anyhow::bail!("you must provide one or more flags when using this command");
    }
    Ok(body)
}

/// `barge update`.
pub async fn update(client: &Client, args: UpdateArgs) -> Result<i32> {
    let body = update_body(&args)?;
    for_each(&args.containers, |name| {
        let body = body.clone();
        async move {
            let resp: Value = client
                .json(
                    Method::POST,
                    &format!("/containers/{}/update", seg(&name)),
                    Some(json_body(&body)?),
                )
                .await?;
            if let Some(ws) = resp.get("Warnings").and_then(Value::as_array) {
                for w in ws.iter().filter_map(Value::as_str) {
                    eprintln!("WARNING: {w}");
                }
            }
            println!("{name}");
            Ok(())
        }
    })
    .await
}

/// docker's `units.BytesSize`: binary units, 4 significant digits (`1.5MiB`).
pub fn bytes_size(size: f64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut size = size;
    let mut i = 0;
    while size >= 1024.0 && i < UNITS.len() - 1 {
        size /= 1024.0;
        i += 1;
    }
    format!("{}{}", format::fmt_g(size, 4), UNITS[i])
}

fn u(v: &Value, path: &[&str]) -> f64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_f64().unwrap_or(0.0)
}

/// One `stats` row (docker's format fields) from a stats response; `name` as the user gave it.
pub fn stats_row(name: &str, v: &Value, no_trunc: bool) -> Value {
    let id = v["id"].as_str().unwrap_or_default();
    let id = if no_trunc {
        id.to_string()
    } else {
        format::short_id(id)
    };
    let cname = v["name"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches('/');
    let running = v["read"]
        .as_str()
        .is_some_and(|r| !r.starts_with("0001-01-01"));
    if !running {
        return json!({
            "Container": name, "ID": id, "Name": cname, "CPUPerc": "--",
            "MemUsage": "-- / --", "MemPerc": "--", "NetIO": "--", "BlockIO": "--", "PIDs": "--",
        });
    }
    let cpu_delta = u(v, &["cpu_stats", "cpu_usage", "total_usage"])
        - u(v, &["precpu_stats", "cpu_usage", "total_usage"]);
    let sys_delta =
        u(v, &["cpu_stats", "system_cpu_usage"]) - u(v, &["precpu_stats", "system_cpu_usage"]);
    let mut cpus = u(v, &["cpu_stats", "online_cpus"]);
    if cpus == 0.0 {
        cpus = v["cpu_stats"]["cpu_usage"]["percpu_usage"]
            .as_array()
            .map_or(0.0, |a| a.len() as f64);
    }
    let cpu = if sys_delta > 0.0 && cpu_delta > 0.0 {
        cpu_delta / sys_delta * cpus * 100.0
    } else {
        0.0
    };
    let usage = u(v, &["memory_stats", "usage"]);
    let stats = &v["memory_stats"]["stats"];
    let mem = match (
        stats.get("total_inactive_file").and_then(Value::as_f64),
        stats.get("inactive_file").and_then(Value::as_f64),
    ) {
        (Some(x), _) if x < usage => usage - x,
        (None, Some(x)) if x < usage => usage - x,
        _ => usage,
    };
    let limit = u(v, &["memory_stats", "limit"]);
    let mem_perc = if limit > 0.0 {
        mem / limit * 100.0
    } else {
        0.0
    };
    let (mut rx, mut tx) = (0.0, 0.0);
    if let Some(nets) = v["networks"].as_object() {
        for n in nets.values() {
            rx += n["rx_bytes"].as_f64().unwrap_or(0.0);
            tx += n["tx_bytes"].as_f64().unwrap_or(0.0);
        }
    }
    let (mut read, mut write) = (0.0, 0.0);
    if let Some(entries) = v["blkio_stats"]["io_service_bytes_recursive"].as_array() {
        for e in entries {
            let val = e["value"].as_f64().unwrap_or(0.0);
            match e["op"].as_str().and_then(|o| o.chars().next()) {
                Some('r' | 'R') => read += val,
                Some('w' | 'W') => write += val,
                _ => {}
            }
        }
    }
    json!({
        "Container": name,
        "ID": id,
        "Name": cname,
        "CPUPerc": format!("{cpu:.2}%"),
        "MemUsage": format!("{} / {}", bytes_size(mem), bytes_size(limit)),
        "MemPerc": format!("{mem_perc:.2}%"),
        "NetIO": format!("{} / {}", format::human_size_prec(rx, 3), format::human_size_prec(tx, 3)),
        "BlockIO": format!("{} / {}", format::human_size_prec(read, 3), format::human_size_prec(write, 3)),
        "PIDs": u(v, &["pids_stats", "current"]) as u64,
    })
}

/// The default `stats` table.
pub const STATS_TABLE: &str = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

fn stats_header(field: &str) -> String {
    match field {
        "ID" => "CONTAINER ID".into(),
        "Container" => "CONTAINER".into(),
        "CPUPerc" => "CPU %".into(),
        "MemUsage" => "MEM USAGE / LIMIT".into(),
        "MemPerc" => "MEM %".into(),
        "NetIO" => "NET I/O".into(),
        "BlockIO" => "BLOCK I/O".into(),
        "PIDs" => "PIDS".into(),
        other => other.to_uppercase(),
    }
}

/// One round: every container's stats (a second apart samples, taken in parallel).
async fn stats_round(client: &Client, args: &StatsArgs) -> Result<Vec<Value>> {
    let names: Vec<String> = if args.containers.is_empty() {
        let list: Vec<Value> = client
            .json(
                Method::GET,
                &format!(
                    "/containers/json{}",
                    query(&[("all", args.all.then(|| "1".to_string()))])
                ),
                None,
            )
            .await?;
        list.iter()
            .filter_map(|c| c["Id"].as_str().map(format::short_id))
            .collect()
    } else {
        args.containers.clone()
    };
    let mut tasks = Vec::new();
    for name in names {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let path = format!("/containers/{}/stats?stream=false", seg(&name));
            let v: Result<Value> = client.json(Method::GET, &path, None).await;
            (name, v)
        }));
    }
    let mut rows = Vec::new();
    for t in tasks {
        let (name, v) = t.await?;
        match v {
            Ok(v) => rows.push(stats_row(&name, &v, args.no_trunc)),
            // Named containers must exist; listed ones may vanish meanwhile.
            Err(e) if !args.containers.is_empty() => return Err(e),
            Err(_) => {}
        }
    }
    Ok(rows)
}

/// `barge stats`: a table refreshed every second, or one round with `--no-stream`.
pub async fn stats(client: &Client, args: StatsArgs) -> Result<i32> {
    let output = Output::from_flag(args.format.as_deref(), STATS_TABLE)?;
    let tty = std::io::stdout().is_terminal();
    loop {
        let rows = stats_round(client, &args).await?;
        let text = output.render(&rows, stats_header)?;
        let mut out = std::io::stdout().lock();
        if !args.no_stream && tty {
            // Clear the screen and redraw, as docker does.
            write!(out, "\x1b[2J\x1b[H")?;
        }
        write!(out, "{text}")?;
        out.flush()?;
        if args.no_stream {
            return Ok(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_rows() {
        assert_eq!(bytes_size(0.0), "0B");
        assert_eq!(bytes_size(1536.0), "1.5KiB");
        assert_eq!(bytes_size(64.0 * 1024.0 * 1024.0), "64MiB");
        assert_eq!(bytes_size(1_234_567.0), "1.177MiB");
        let v = json!({
            "id": "0123456789abcdef", "name": "/web", "read": "2024-01-01T00:00:01Z",
            "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
            "memory_stats": {"usage": 3145728, "limit": 67108864, "stats": {"total_inactive_file": 1048576}},
            "pids_stats": {"current": 4},
            "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 4096}, {"op": "Write", "value": 1000}]},
        });
        let r = stats_row("web", &v, false);
        assert_eq!(r["CPUPerc"], "40.00%");
        assert_eq!(r["MemUsage"], "2MiB / 64MiB");
        assert_eq!(r["MemPerc"], "3.12%");
        assert_eq!(r["BlockIO"], "4.1kB / 1kB");
        assert_eq!(r["NetIO"], "0B / 0B");
        assert_eq!(r["PIDs"], 4);
        assert_eq!(r["ID"], "0123456789ab");
        let stopped = stats_row(
            "x",
            &json!({"id": "ab", "name": "/x", "read": "0001-01-01T00:00:00Z"}),
            false,
        );
        assert_eq!(stopped["CPUPerc"], "--");
    }

    #[test]
    fn update_flags() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            a: UpdateArgs,
        }
        let t = T::try_parse_from([
            "update",
            "-m",
            "64m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "-1",
            "--restart",
            "on-failure:2",
            "web",
        ])
        .unwrap();
        let b = update_body(&t.a).unwrap();
        assert_eq!(b["Memory"], 64 << 20);
        assert_eq!(b["NanoCpus"], 500_000_000);
        assert_eq!(b["PidsLimit"], -1);
        assert_eq!(
            b["RestartPolicy"],
            json!({"Name": "on-failure", "MaximumRetryCount": 2})
        );
        let t = T::try_parse_from(["update", "web"]).unwrap();
        assert!(update_body(&t.a).is_err());
    }
}
