//! The project's containers as the engine reports them (found by the
//! `com.docker.compose.project` label, as compose finds them), and compose's progress lines.

use anyhow::Result;
use barge_compose::convert::labels;
use barge_compose::model::Project;
use barge_compose::plan::Observed;
use hyper::Method;
use serde_json::{json, Value};

use super::ComposeArgs;
use crate::client::{query, Client};

/// Which containers to list by their `oneoff` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OneOff {
    /// Service containers only.
    Exclude,
    /// Both.
    Include,
}

/// The project's containers (`GET /containers/json` filtered by label), sorted by service
/// then number; `all` includes stopped ones; `services` (when not empty) restricts.
pub async fn containers(
    client: &Client,
    project: &str,
    all: bool,
    oneoff: OneOff,
    services: &[String],
) -> Result<Vec<Value>> {
    let mut label = vec![format!("{}={project}", labels::PROJECT)];
    match oneoff {
        OneOff::Exclude => label.push(format!("{}=False", labels::ONEOFF)),
        OneOff::Include => {}
    }
    let filters = json!({ "label": label }).to_string();
    let path = format!(
        "/containers/json{}",
        query(&[
            ("all", all.then(|| "1".to_string())),
            ("filters", Some(filters)),
        ])
    );
    let list: Vec<Value> = client.json(Method::GET, &path, None).await?;
    let mut list: Vec<Value> = list
        .into_iter()
        .filter(|c| services.is_empty() || services.iter().any(|s| s == service_of(c)))
        .collect();
    list.sort_by(|a, b| {
        (service_of(a), number_of(a), name_of(a)).cmp(&(service_of(b), number_of(b), name_of(b)))
    });
    Ok(list)
}

/// A label of a container summary.
pub fn label<'a>(c: &'a Value, key: &str) -> &'a str {
    c["Labels"][key].as_str().unwrap_or("")
}

/// The service of a container summary.
pub fn service_of(c: &Value) -> &str {
    label(c, labels::SERVICE)
}

/// The replica number of a container summary.
pub fn number_of(c: &Value) -> i64 {
    label(c, labels::CONTAINER_NUMBER).parse().unwrap_or(0)
}

/// The name (no `/`) of a container summary.
pub fn name_of(c: &Value) -> &str {
    c["Names"][0]
        .as_str()
        .map(|n| n.trim_start_matches('/'))
        .unwrap_or("")
}

/// The ID of a container summary.
pub fn id_of(c: &Value) -> &str {
    c["Id"].as_str().unwrap_or("")
}

/// A container summary as the planner sees it.
pub fn observed(c: &Value) -> Observed {
    Observed {
        id: id_of(c).to_string(),
        name: name_of(c).to_string(),
        number: number_of(c),
        hash: label(c, labels::CONFIG_HASH).to_string(),
        image: label(c, labels::IMAGE).to_string(),
        state: c["State"].as_str().unwrap_or("").to_string(),
        networks: c["NetworkSettings"]["Networks"]
            .as_object()
            .map(|n| n.keys().cloned().collect())
            .unwrap_or_default(),
        volumes: c["Mounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["Type"] == "volume")
            .filter_map(|m| m["Name"].as_str().map(str::to_string))
            .collect(),
    }
}

/// `--dry-run`: progress lines carry compose's `DRY-RUN MODE - ` prefix.
static DRY_RUN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns `--dry-run`'s prefix on.
pub fn set_dry_run(on: bool) {
    DRY_RUN.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// A progress line as compose prints it without a TTY (` Container p-web-1  Started`;
/// in a dry run ` DRY-RUN MODE -  Container p-web-1  Started`).
pub fn event(kind: &str, name: &str, status: &str) {
    progress(&format!("{kind} {name}"), "", status);
}

/// A progress event as compose's plain writer prints it: `fmt.Fprintln(out, prefix, ID,
/// Text, StatusText)` (operands joined by spaces; the prefix empty or ` DRY-RUN MODE - `).
pub fn progress(id: &str, text: &str, status: &str) {
    let prefix = if DRY_RUN.load(std::sync::atomic::Ordering::Relaxed) {
        " DRY-RUN MODE - "
    } else {
        ""
    };
    eprintln!("{prefix} {id} {text} {status}");
}

/// The project, or — for commands that only need its name (down, ps, logs, ...) — an empty
/// project named by `-p` when no compose file is found.
pub fn load_or_name(args: &ComposeArgs, services: &[String]) -> Result<Project> {
    match super::load_project(args, services) {
        Ok(p) => Ok(p),
        Err(e) => match &args.project_name {
            Some(name) if args.file.is_empty() => Ok(Project {
                name: name.clone(),
                ..Default::default()
            }),
            _ => Err(e),
        },
    }
}

/// Services named on the command line that the project does not define: compose's error.
pub fn check_services(project: &Project, services: &[String]) -> Result<()> {
    if project.services.is_empty() && project.disabled_services.is_empty() {
        return Ok(());
    }
    for s in services {
        if !project.services.contains_key(s) && !project.disabled_services.contains_key(s) {
            anyhow::bail!("no such service: {s}");
        }
    }
    Ok(())
}
