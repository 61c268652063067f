//! `watch` and `up --watch`: a service's `develop.watch` rules applied as docker compose v2
//! applies them. File events come from the `notify` crate (inotify); changes are batched
//! until a quiet period passes, then each changed path goes to the first rule of its service
//! whose `path` holds it and whose `ignore` patterns (`.dockerignore` syntax, relative to the
//! rule's path) do not match it: `sync` copies it into the service's running containers (a tar
//! through `PUT /archive`; a deleted path is removed with `rm -rf` by exec), `sync+restart`
//! then restarts them, `sync+exec` then runs the rule's `exec.command` in each, `restart`
//! restarts them, `rebuild` builds the image and recreates the service's containers.
//! Spec: <https://github.com/compose-spec/compose-spec/blob/main/develop.md>.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use barge_archive::ignore::Ignore;
use barge_compose::model::Project;
use barge_compose::shorthand::shell_split;
use clap::Args;
use hyper::Method;
use notify::{EventKind, RecursiveMode, Watcher};
use serde_json::{json, Value};

use super::project::{containers, id_of, OneOff};
use super::ComposeArgs;
use crate::client::{json_body, query, read_all, seg, Client};

/// How long the file system must stay quiet before a batch of changes is applied
/// (compose's `quietPeriod`).
const QUIET: Duration = Duration::from_millis(500);

/// `barge compose watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Do not build & start services before watching
    #[arg(long)]
    pub no_up: bool,
    /// hide build output
    #[arg(long)]
    pub quiet: bool,
    /// Services
    pub services: Vec<String>,
}

/// One `develop.watch` rule of a service, its path made absolute.
#[derive(Debug, Clone)]
pub struct Rule {
    service: String,
    path: PathBuf,
    action: String,
    target: String,
    ignore: Arc<Ignore>,
    exec: Vec<String>,
}

const ACTIONS: &[&str] = &["sync", "rebuild", "restart", "sync+restart", "sync+exec"];

/// The watch rules of `services` (all when empty), checked as compose checks them.
pub fn rules(project: &Project, services: &[String]) -> Result<Vec<Rule>> {
    let mut out = Vec::new();
    for (name, s) in &project.services {
        if !services.is_empty() && !services.contains(name) {
            continue;
        }
        let Some(list) = s
            .develop
            .as_ref()
            .and_then(|d| d.get("watch"))
            .and_then(Value::as_array)
        else {
            continue;
        };
        for r in list {
            let text = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let path = text("path");
            if path.is_empty() {
                bail!("watch rules MUST define a path");
            }
            let action = text("action");
            if !ACTIONS.contains(&action.as_str()) {
                bail!("watch action {action:?} is not supported");
            }
            if action == "rebuild" && s.build.is_none() {
                bail!("service {name} doesn't have a build section, can't apply rebuild on watch");
            }
            let target = text("target");
            if action.starts_with("sync") && target.is_empty() {
                bail!("watch rule of service {name:?}: action {action} requires a target");
            }
            let exec = match r.pointer("/exec/command") {
                Some(Value::String(c)) => shell_split(c),
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
                _ => Vec::new(),
            };
            if action == "sync+exec" && exec.is_empty() {
                bail!("watch rule of service {name:?}: sync+exec requires exec.command");
            }
            let patterns: Vec<String> = r
                .get("ignore")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            let path = Path::new(&project.working_dir).join(&path);
            out.push(Rule {
                service: name.clone(),
                path: path.canonicalize().unwrap_or(path),
                action,
                target,
                ignore: Arc::new(Ignore::parse(&patterns.join("\n"))),
                exec,
            });
        }
    }
    if out.is_empty() {
        bail!("none of the selected services is configured for watch, consider setting a 'develop' section");
    }
    Ok(out)
}

/// The rule a changed `path` falls under, and the path in the container (`target` joined
/// with the path relative to the rule's; empty for actions that copy nothing).
fn route<'a>(rules: &'a [Rule], path: &Path) -> Option<(&'a Rule, String)> {
    rules.iter().find_map(|r| {
        let rel = path.strip_prefix(&r.path).ok()?;
        let rel_s = rel.to_string_lossy();
        if !rel_s.is_empty() && r.ignore.excluded(&rel_s) {
            return None;
        }
        // editors' temporary files, as compose's EphemeralPathMatcher
        let name = path.file_name()?.to_string_lossy();
        if name.ends_with('~') || name.ends_with(".swp") || name.ends_with(".swx") {
            return None;
        }
        let target = if rel_s.is_empty() {
            r.target.clone()
        } else {
            format!("{}/{rel_s}", r.target.trim_end_matches('/'))
        };
        Some((r, target))
    })
}

/// Watches until the channel of file events closes (the process is interrupted).
pub async fn run(client: Client, project: Arc<Project>, rules: Vec<Rule>) -> Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if !matches!(ev.kind, EventKind::Access(_)) {
                for p in ev.paths {
                    let _ = tx.send(p);
                }
            }
        }
    })?;
    let roots: BTreeSet<&PathBuf> = rules.iter().map(|r| &r.path).collect();
    for root in roots {
        let mode = if root.is_dir() {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        watcher
            .watch(root, mode)
            .map_err(|e| anyhow!("watching {}: {e}", root.display()))?;
    }
    eprintln!("Watch enabled");
    while let Some(first) = rx.recv().await {
        let mut changed = BTreeSet::from([first]);
        while let Ok(Some(p)) = tokio::time::timeout(QUIET, rx.recv()).await {
            changed.insert(p);
        }
        if let Err(e) = apply(&client, &project, &rules, &changed).await {
            eprintln!("{e:#}");
        }
    }
    Ok(())
}

/// Applies one batch of changes, service by service.
async fn apply(
    client: &Client,
    project: &Arc<Project>,
    rules: &[Rule],
    changed: &BTreeSet<PathBuf>,
) -> Result<()> {
    // (service, action) -> (rule, [(host path, container path)])
    type Work<'a> = BTreeMap<(String, String), (&'a Rule, Vec<(PathBuf, String)>)>;
    let mut work: Work = BTreeMap::new();
    for p in changed {
        if let Some((rule, target)) = route(rules, p) {
            work.entry((rule.service.clone(), rule.action.clone()))
                .or_insert_with(|| (rule, Vec::new()))
                .1
                .push((p.clone(), target));
        }
    }
    let mut rebuild = Vec::new();
    for ((service, action), (rule, paths)) in work {
        if action == "rebuild" {
            rebuild.push(service);
            continue;
        }
        let ids: Vec<String> = containers(
            client,
            &project.name,
            false,
            OneOff::Exclude,
            std::slice::from_ref(&service),
        )
        .await?
        .iter()
        .map(|c| id_of(c).to_string())
        .collect();
        if action.starts_with("sync") {
            eprintln!(
                "Syncing service {service:?} after {} changes were detected",
                paths.len()
            );
            for id in &ids {
                sync(client, id, &paths).await?;
            }
        }
        if action == "restart" || action == "sync+restart" {
            eprintln!("Restarting service {service:?} after changes were detected");
            for id in &ids {
                client
                    .send(
                        Method::POST,
                        &format!("/containers/{}/restart", seg(id)),
                        None,
                    )
                    .await?;
            }
            eprintln!("service {service:?} restarted");
        }
        if action == "sync+exec" {
            for id in &ids {
                exec(client, id, &rule.exec).await?;
            }
        }
    }
    if !rebuild.is_empty() {
        eprintln!("Rebuilding service(s) {rebuild:?} after changes were detected...");
        for s in &rebuild {
            super::images::build_service(client, project, s, false, false, &[]).await?;
        }
        eprintln!("service(s) {rebuild:?} successfully built");
        super::up::recreate_services(client, project, &rebuild).await?;
    }
    Ok(())
}

/// Copies each existing host path into the container (one tar unpacked at `/`) and removes
/// the deleted ones.
async fn sync(client: &Client, id: &str, paths: &[(PathBuf, String)]) -> Result<()> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let mut any = false;
    let mut gone = Vec::new();
    for (host, target) in paths {
        let name = target.trim_start_matches('/');
        match std::fs::symlink_metadata(host) {
            Ok(m) if m.is_dir() => {
                b.append_dir_all(name, host)?;
                any = true;
            }
            Ok(_) => {
                b.append_path_with_name(host, name)?;
                any = true;
            }
            Err(_) => gone.push(target.clone()),
        }
    }
    if any {
        let body = b.into_inner()?;
        let path = format!(
            "/containers/{}/archive{}",
            seg(id),
            query(&[("path", Some("/".into()))])
        );
        let resp = client
            .request(
                Method::PUT,
                &path,
                crate::client::full(body),
                &[("Content-Type", "application/x-tar")],
            )
            .await?;
        read_all(resp).await?;
    }
    if !gone.is_empty() {
        let mut cmd = vec!["rm".to_string(), "-rf".to_string()];
        cmd.extend(gone);
        exec(client, id, &cmd).await?;
    }
    Ok(())
}

/// Runs `cmd` in the container and waits for it (output discarded); a non-zero exit is an
/// error.
async fn exec(client: &Client, id: &str, cmd: &[String]) -> Result<()> {
    let created: Value = client
        .json(
            Method::POST,
            &format!("/containers/{}/exec", seg(id)),
            Some(json_body(
                &json!({"Cmd": cmd, "AttachStdout": true, "AttachStderr": true}),
            )?),
        )
        .await?;
    let exec_id = created["Id"].as_str().unwrap_or("").to_string();
    // started detached (no hijacked stream to drain), then waited for
    client
        .send(
            Method::POST,
            &format!("/exec/{}/start", seg(&exec_id)),
            Some(json_body(&json!({"Detach": true, "Tty": false}))?),
        )
        .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let info: Value = client
            .json(Method::GET, &format!("/exec/{}/json", seg(&exec_id)), None)
            .await?;
        if info["Running"].as_bool() != Some(true) {
            return match info["ExitCode"].as_i64() {
                Some(0) | None => Ok(()),
                Some(code) => bail!("{cmd:?}: exit code {code}"),
            };
        }
        if std::time::Instant::now() > deadline {
            bail!("{cmd:?}: still running after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `barge compose watch`: the services are built and started (unless `--no-up`), then
/// watched until interrupted.
pub async fn watch(client: &Client, args: &ComposeArgs, a: &WatchArgs) -> Result<i32> {
    let project = Arc::new(super::load_project(args, &a.services)?);
    let rules = rules(&project, &a.services)?;
    if !a.no_up {
        super::up::up_services(client, &project, &a.services).await?;
    }
    tokio::select! {
        r = run(client.clone(), project, rules) => r?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_route_changes_as_compose() {
        let mut p = Project {
            working_dir: "/src".into(),
            ..Default::default()
        };
        let svc = barge_compose::model::Service {
            image: "x".into(),
            develop: Some(json!({"watch": [
                {"path": "./web", "action": "sync", "target": "/app", "ignore": ["*.tmp", "cache/"]},
                {"path": "./web", "action": "restart"},
                {"path": "./conf", "action": "sync+exec", "target": "/etc/x", "exec": {"command": "kill -HUP 1"}},
            ]})),
            ..Default::default()
        };
        p.services.insert("web".into(), svc.clone());
        let rules = rules(&p, &[]).unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[2].exec, vec!["kill", "-HUP", "1"]);
        let (r, t) = route(&rules, Path::new("/src/web/a/b.txt")).unwrap();
        assert_eq!((r.action.as_str(), t.as_str()), ("sync", "/app/a/b.txt"));
        // ignored by the sync rule, so the next rule of the path takes it
        let (r, _) = route(&rules, Path::new("/src/web/x.tmp")).unwrap();
        assert_eq!(r.action, "restart");
        assert!(route(&rules, Path::new("/src/web/.main.rs.swp")).is_none());
        assert!(route(&rules, Path::new("/src/other.txt")).is_none());
        let mut bad = p.clone();
        bad.services.get_mut("web").unwrap().develop =
            Some(json!({"watch": [{"path": ".", "action": "rebuild"}]}));
        assert_eq!(
            rules_err(&bad),
            "service web doesn't have a build section, can't apply rebuild on watch"
        );
        bad.services.get_mut("web").unwrap().develop = None;
        assert!(rules_err(&bad).starts_with("none of the selected services"));
    }

    fn rules_err(p: &Project) -> String {
        rules(p, &[]).unwrap_err().to_string()
    }
}
