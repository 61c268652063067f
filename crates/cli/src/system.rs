//! System commands: version, info, inspect, events.

use anyhow::Result;
use bollard_stubs::models::SystemVersion;
use hyper::Method;
use serde_json::{json, Value};

use crate::cli::{EventsArgs, FormatArgs, InspectArgs, VersionArgs};
use crate::client::{self, api_error, empty, filters, for_each_json, query, seg, Client};
use crate::container::api_timestamp;
use crate::format::{self, Template};

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Prints `value` with a `--format` template (or `json`), if one was given.
fn print_formatted(format: Option<&str>, value: &Value) -> Result<bool> {
    match format {
        None => Ok(false),
        Some("json") => {
            println!("{}", format::go_json(value)?);
            Ok(true)
        }
        Some(t) => {
            println!("{}", Template::parse(t)?.render(value)?);
            Ok(true)
        }
    }
}

fn line(label: &str, value: impl std::fmt::Display) {
    println!("{label:<20}{value}");
}

/// `barge version`.
pub async fn version(host: &str, args: &VersionArgs) -> Result<i32> {
    let client_info = json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": format!("{}.{}", client::MAX_API_VERSION.0, client::MAX_API_VERSION.1),
        "Os": std::env::consts::OS,
        "Arch": arch(),
    });
    let server = async {
        let mut c = Client::new(host)?;
        c.negotiate().await?;
        let v: SystemVersion = c.json(Method::GET, "/version", None).await?;
        anyhow::Ok((v, c.api_version()))
    }
    .await;
    let max_api = client_info["ApiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let api_line = match &server {
        Ok((_, used)) if *used != max_api => format!("{used} (downgraded from {max_api})"),
        _ => max_api.clone(),
    };
    if args.format.is_some() {
        let value = json!({
            "Client": client_info,
            "Server": server.as_ref().ok().map(|(v, _)| serde_json::to_value(v)).transpose()?,
        });
        print_formatted(args.format.as_deref(), &value)?;
        return server.map(|_| 0);
    }
    println!("Client:");
    line(" Version:", env!("CARGO_PKG_VERSION"));
    line(" API version:", &api_line);
    line(" OS/Arch:", format!("{}/{}", std::env::consts::OS, arch()));
    println!();
    let (v, _) = server?;
    let platform = v
        .platform
        .as_ref()
        .map(|p| p.name.clone())
        .unwrap_or_default();
    println!("{}", format!("Server: {platform}").trim_end());
    println!(" Engine:");
    let na = || "N/A".to_string();
    line("  Version:", v.version.clone().unwrap_or_else(na));
    line(
        "  API version:",
        format!(
            "{} (minimum version {})",
            v.api_version.clone().unwrap_or_else(na),
            v.min_api_version.clone().unwrap_or_else(na)
        ),
    );
    if let Some(go) = &v.go_version {
        line("  Go version:", go);
    }
    line("  Git commit:", v.git_commit.clone().unwrap_or_else(na));
    line(
        "  Built:",
        v.build_time.as_deref().map(ansic_time).unwrap_or_else(na),
    );
    line(
        "  OS/Arch:",
        format!(
            "{}/{}",
            v.os.clone().unwrap_or_default(),
            v.arch.clone().unwrap_or_default()
        ),
    );
    line("  Experimental:", v.experimental.unwrap_or(false));
    for comp in v.components.iter().flatten() {
        if comp.name == "Engine" {
            continue;
        }
        println!(" {}:", comp.name);
        line("  Version:", &comp.version);
        if let Some(commit) = comp
            .details
            .as_ref()
            .and_then(|d| d.get("GitCommit"))
            .map(String::as_str)
        {
            line("  GitCommit:", commit);
        }
    }
    Ok(0)
}

/// RFC 3339 → Go's `time.ANSIC` in local time (`Thu May  7 21:09:36 2026`), as
/// `docker version` prints build times; other text is kept.
pub fn ansic_time(t: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(t) {
        Ok(t) => t
            .with_timezone(&chrono::Local)
            .format("%a %b %e %H:%M:%S %Y")
            .to_string(),
        Err(_) => t.to_string(),
    }
}

/// docker's `units.BytesSize`: binary units with 4 significant digits.
pub fn bytes_size(size: f64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut size = size;
    let mut i = 0;
    while size >= 1024.0 && i < UNITS.len() - 1 {
        size /= 1024.0;
        i += 1;
    }
    let s = format::human_size_prec(size, 4);
    // Reuse the %.4g formatting, then swap the (always "B") unit.
    format!("{}{}", s.trim_end_matches('B'), UNITS[i])
}

/// `barge info`.
pub async fn info(client: &Client, args: FormatArgs) -> Result<i32> {
    let info: Value = client.json(Method::GET, "/info", None).await?;
    if print_formatted(args.format.as_deref(), &info)? {
        return Ok(0);
    }
    let s = |k: &str| format::go_string(&info[k]);
    println!("Client:");
    println!(" Version:    {}", env!("CARGO_PKG_VERSION"));
    println!();
    println!("Server:");
    println!(" Containers: {}", s("Containers"));
    println!("  Running: {}", s("ContainersRunning"));
    println!("  Paused: {}", s("ContainersPaused"));
    println!("  Stopped: {}", s("ContainersStopped"));
    println!(" Images: {}", s("Images"));
    for (label, key) in [
        ("Server Version", "ServerVersion"),
        ("Storage Driver", "Driver"),
        ("Logging Driver", "LoggingDriver"),
        ("Cgroup Driver", "CgroupDriver"),
        ("Cgroup Version", "CgroupVersion"),
        ("Default Runtime", "DefaultRuntime"),
        ("Kernel Version", "KernelVersion"),
        ("Operating System", "OperatingSystem"),
        ("OSType", "OSType"),
        ("Architecture", "Architecture"),
        ("CPUs", "NCPU"),
    ] {
        if key == "DefaultRuntime" {
            if let Some(rts) = info["Runtimes"].as_object() {
                println!(
                    " Runtimes: {}",
                    rts.keys().cloned().collect::<Vec<_>>().join(" ")
                );
            }
        }
        if !info[key].is_null() {
            println!(" {label}: {}", s(key));
        }
    }
    if let Some(mem) = info["MemTotal"].as_f64() {
        println!(" Total Memory: {}", bytes_size(mem));
    }
    for (label, key) in [
        ("Name", "Name"),
        ("ID", "ID"),
        ("Docker Root Dir", "DockerRootDir"),
        ("Debug Mode", "Debug"),
    ] {
        if !info[key].is_null() {
            println!(" {label}: {}", s(key));
        }
    }
    for w in info["Warnings"].as_array().into_iter().flatten() {
        eprintln!("{}", format::go_string(w));
    }
    Ok(0)
}

/// Fetches one object as (parsed, raw text): the raw text keeps the daemon's key order.
async fn get_raw(client: &Client, path: &str) -> Result<(Value, String)> {
    let resp = client.request(Method::GET, path, empty(), &[]).await?;
    let bytes = client::read_all(resp).await?;
    let value = serde_json::from_slice(&bytes)?;
    Ok((value, String::from_utf8_lossy(&bytes).into_owned()))
}

async fn inspect_one(
    client: &Client,
    name: &str,
    kind: Option<&str>,
    size: bool,
) -> Result<(Value, String)> {
    let mut last_err = None;
    if kind.is_none_or(|k| k == "container") {
        let q = query(&[("size", size.then(|| "1".to_string()))]);
        match get_raw(client, &format!("/containers/{}/json{q}", seg(name))).await {
            Ok(v) => return Ok(v),
            Err(e) if api_error(&e).is_some_and(|a| a.status == 404) => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    if kind.is_none_or(|k| k == "image") {
        match get_raw(client, &format!("/images/{}/json", seg(name))).await {
            Ok(v) => return Ok(v),
            Err(e) if api_error(&e).is_some_and(|a| a.status == 404) => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    if kind.is_none_or(|k| k == "volume") {
        match get_raw(client, &format!("/volumes/{}", seg(name))).await {
            Ok(v) => return Ok(v),
            Err(e) if api_error(&e).is_some_and(|a| a.status == 404) => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    if kind.is_none_or(|k| k == "network") {
        match get_raw(client, &format!("/networks/{}", seg(name))).await {
            Ok(v) => return Ok(v),
            Err(e) if api_error(&e).is_some_and(|a| a.status == 404) => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    match (kind, last_err) {
        (None, _) => Err(anyhow::anyhow!("Error: No such object: {name}")),
        (Some(_), Some(e)) => Err(e),
        (Some(k), None) => Err(anyhow::anyhow!("Error: No such {k}: {name}")),
    }
}

/// Inspects each name (container first, then image unless `kind` says which).
pub async fn inspect_objects(
    client: &Client,
    names: &[String],
    format: Option<&str>,
    kind: Option<&str>,
) -> Result<i32> {
    inspect_impl(client, names, format, kind, false).await
}

async fn inspect_impl(
    client: &Client,
    names: &[String],
    format: Option<&str>,
    kind: Option<&str>,
    size: bool,
) -> Result<i32> {
    let template = match format {
        Some("json") | None => None,
        Some(t) => Some(Template::parse(t)?),
    };
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        match inspect_one(client, name, kind, size).await {
            Ok((v, raw)) => {
                if let Some(t) = &template {
                    println!("{}", t.render(&v)?);
                }
                found.push(raw);
            }
            Err(e) => {
                if e.downcast_ref::<client::Unreachable>().is_some() {
                    return Err(e);
                }
                errors.push(e);
            }
        }
    }
    // Like docker: the array first, then what could not be found.
    if template.is_none() {
        println!("{}", indent_array(&found));
    }
    for e in &errors {
        eprintln!("{e:#}");
    }
    Ok(i32::from(!errors.is_empty()))
}

/// Prints raw JSON documents as one array, indented like Go's `json.Indent`
/// with four spaces (what `docker inspect` prints), keeping the daemon's key order.
pub fn indent_array(docs: &[String]) -> String {
    if docs.is_empty() {
        return "[]".into();
    }
    let items: Vec<String> = docs
        .iter()
        .map(|d| format!("    {}", indent_json(d, 1)))
        .collect();
    format!("[\n{}\n]", items.join(",\n"))
}

/// Re-indents one JSON text (4 spaces a level, starting at `depth`).
pub fn indent_json(src: &str, depth: usize) -> String {
    const INDENT: &str = "    ";
    let mut out = String::with_capacity(src.len() * 2);
    let mut depth = depth;
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(INDENT);
        }
    };
    let (mut in_str, mut escaped) = (false, false);
    let mut chars = src.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        match c {
            c if c.is_whitespace() => {}
            '"' => {
                in_str = true;
                out.push(c);
            }
            '{' | '[' => {
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                let close = if c == '{' { '}' } else { ']' };
                out.push(c);
                if chars.peek() == Some(&close) {
                    chars.next();
                    out.push(close);
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            _ => out.push(c),
        }
    }
    out
}

/// `barge inspect`.
pub async fn inspect(client: &Client, args: InspectArgs) -> Result<i32> {
    inspect_impl(
        client,
        &args.names,
        args.format.as_deref(),
        args.kind.as_deref(),
        args.size,
    )
    .await
}

/// docker's plain event line.
pub fn event_line(ev: &Value) -> String {
    let time = match (ev["timeNano"].as_i64(), ev["time"].as_i64()) {
        (Some(n), _) => {
            chrono::DateTime::from_timestamp(n / 1_000_000_000, (n % 1_000_000_000) as u32)
        }
        (None, Some(t)) => chrono::DateTime::from_timestamp(t, 0),
        _ => None,
    };
    let time = time.map(format::rfc3339_nano_fixed).unwrap_or_default();
    let typ = ev["Type"].as_str().unwrap_or_default();
    let action = ev["Action"]
        .as_str()
        .or(ev["status"].as_str())
        .unwrap_or_default();
    let id = ev["Actor"]["ID"]
        .as_str()
        .or(ev["id"].as_str())
        .unwrap_or_default();
    let mut line = format!("{time} {typ} {action} {id}");
    if let Some(attrs) = ev["Actor"]["Attributes"].as_object() {
        let mut pairs: Vec<String> = attrs
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        pairs.sort();
        if !pairs.is_empty() {
            line.push_str(&format!(" ({})", pairs.join(", ")));
        }
    }
    line
}

/// `barge events`.
pub async fn events(client: &Client, args: EventsArgs) -> Result<i32> {
    let now = chrono::Utc::now();
    let path = format!(
        "/events{}",
        query(&[
            (
                "since",
                args.since.as_deref().map(|s| api_timestamp(s, now))
            ),
            (
                "until",
                args.until.as_deref().map(|s| api_timestamp(s, now))
            ),
            ("filters", filters(&args.filter)?),
        ])
    );
    let template = match args.format.as_deref() {
        None | Some("json") => None,
        Some(t) => Some(Template::parse(t)?),
    };
    let json_out = args.format.as_deref() == Some("json");
    let resp = client.request(Method::GET, &path, empty(), &[]).await?;
    for_each_json(resp, |ev| {
        let text = match &template {
            Some(t) => t.render(&ev)?,
            None if json_out => format::go_json(&ev)?,
            None => event_line(&ev),
        };
        println!("{text}");
        Ok(())
    })
    .await?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines() {
        let ev = json!({
            "Type": "container", "Action": "start",
            "Actor": {"ID": "abc", "Attributes": {"name": "web", "image": "busybox"}},
            "time": 1, "timeNano": 1_000_000_000i64
        });
        let line = event_line(&ev);
        assert!(
            line.ends_with(" container start abc (image=busybox, name=web)"),
            "{line}"
        );
        assert!(line.contains("T"), "{line}");
    }

    #[test]
    fn ansic_build_times() {
        let t = "2026-05-07T21:09:36.000000000+00:00";
        let local = chrono::DateTime::parse_from_rfc3339(t)
            .unwrap()
            .with_timezone(&chrono::Local)
            .naive_local();
        let shown = ansic_time(t);
        assert_eq!(
            chrono::NaiveDateTime::parse_from_str(&shown, "%a %b %e %H:%M:%S %Y").unwrap(),
            local
        );
        if local.and_utc().timestamp() == 1_778_188_176 {
            assert_eq!(shown, "Thu May  7 21:09:36 2026");
        }
        assert_eq!(ansic_time("unknown"), "unknown");
    }

    #[test]
    fn binary_sizes() {
        assert_eq!(bytes_size(8_343_552_000.0), "7.771GiB");
        assert_eq!(bytes_size(512.0), "512B");
    }

    #[test]
    fn docker_json_indent_keeps_order() {
        let raw = r#"{"Z":1,"A":{"s":"a,b:{[\"q\"]"},"E":[],"O":{},"L":[1, 2]}"#;
        assert_eq!(
            indent_array(&[raw.to_string()]),
            "[\n    {\n        \"Z\": 1,\n        \"A\": {\n            \"s\": \"a,b:{[\\\"q\\\"]\"\n        },\n        \"E\": [],\n        \"O\": {},\n        \"L\": [\n            1,\n            2\n        ]\n    }\n]"
        );
        assert_eq!(indent_array(&[]), "[]");
    }
}
