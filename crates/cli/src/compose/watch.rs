//! `watch` and `up --watch`: a service's `develop.watch` rules applied as docker compose v2
//! applies them (`pkg/compose/watch.go`). File events come from the `notify` crate (inotify);
//! changes are batched until a quiet period passes, then every rule of every service whose
//! `path` holds a changed path, whose `include` patterns (if any) match it and whose ignores
//! do not, acts on it: `sync` copies it into the service's running containers (a tar through
//! `PUT /archive`; a deleted path is removed with `rm -rf` by exec), `sync+restart` then
//! restarts them, `sync+exec` then runs the rule's `exec.command` in each, `restart` restarts
//! them, `rebuild` builds the image, prunes the project's dangling images (`watch --prune`,
//! the default) and recreates the service's containers. A rule's ignores are compose's: the
//! service's build context `.dockerignore` (or `<Dockerfile>.dockerignore`), editors'
//! temporary files, `.git`, and the rule's `ignore` (`.dockerignore` syntax, relative to the
//! rule's path). A sync rule with `initial_sync: true` (or the older `x-initialSync`) first
//! copies every file of its path that these ignores (and the Dockerfile and compose file
//! names) leave; a sync rule under a bind mount of the service is not watched, with compose's
//! warning. Spec: <https://github.com/compose-spec/compose-spec/blob/main/develop.md>.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use barge_archive::ignore::Ignore;
use barge_compose::convert::labels;
use barge_compose::model::{Project, Service};
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
    /// Prune dangling images on rebuild
    #[arg(long, default_value_t = true, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub prune: bool,
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
    /// The rule's `ignore`, relative to its path.
    ignore: Arc<Ignore>,
    /// The rule's `include` (none: everything), relative to its path.
    include: Option<Arc<Ignore>>,
    /// The service's build context and its `.dockerignore`.
    dockerignore: Option<(PathBuf, Arc<Ignore>)>,
    exec: Vec<String>,
    initial_sync: bool,
}

const ACTIONS: &[&str] = &["sync", "rebuild", "restart", "sync+restart", "sync+exec"];

/// compose's `EphemeralPathMatcher` (editors' and tools' temporary files) and its `.git/`,
/// matched against every component of the path.
const EPHEMERAL: &str =
    "**/*___jb_old___\n**/*___jb_tmp___\n**/.idea/**\n**/.#*\n**/#*#\n**/4913\n\
    **/*~\n**/.*.swp\n**/.*.swx\n**/.*.swo\n**/.*.swn\n**/.*.kate-swp\n**/*-go-tmp-umask\n**/.git";

/// The build context's ignore file as compose's `LoadDockerIgnore` picks it:
/// `<Dockerfile>.dockerignore`, else `.dockerignore`.
fn dockerignore(s: &Service) -> Option<(PathBuf, Arc<Ignore>)> {
    let b = s.build.as_ref()?;
    let ctx = PathBuf::from(&b.context);
    let dockerfile = if b.dockerfile.is_empty() {
        "Dockerfile"
    } else {
        &b.dockerfile
    };
    let text = std::fs::read_to_string(ctx.join(format!("{dockerfile}.dockerignore")))
        .or_else(|_| std::fs::read_to_string(ctx.join(".dockerignore")))
        .unwrap_or_default();
    let ctx = ctx.canonicalize().unwrap_or(ctx);
    Some((ctx, Arc::new(Ignore::parse(&text))))
}

fn patterns(v: Option<&Value>) -> Option<String> {
    let list: Vec<&str> = v?.as_array()?.iter().filter_map(Value::as_str).collect();
    Some(list.join("\n"))
}

/// The watch rules of `services` (all when empty), checked as compose checks them; sync
/// rules under a bind mount are left out with compose's warning.
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
        let ignore_file = dockerignore(s);
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
            let path = Path::new(&project.working_dir).join(&path);
            let path = path.canonicalize().unwrap_or(path);
            let is_sync = action == "sync" || action == "sync+restart";
            if is_sync && under_bind_mount(s, &path) {
                eprintln!(
                    "WARN[0000] path '{}' also declared by a bind mount volume, this path won't be monitored!\n",
                    path.display()
                );
                continue;
            }
            let initial_sync = match (r.get("initial_sync"), r.get("x-initialSync")) {
                (Some(Value::Bool(true)), _) => true,
                (_, Some(Value::Bool(true))) => {
                    eprintln!("WARN[0000] x-initialSync is DEPRECATED, please use the official `initial_sync` attribute\n");
                    true
                }
                _ => false,
            };
            out.push(Rule {
                service: name.clone(),
                path,
                action,
                target,
                ignore: Arc::new(Ignore::parse(
                    &patterns(r.get("ignore")).unwrap_or_default(),
                )),
                include: patterns(r.get("include")).map(|p| Arc::new(Ignore::parse(&p))),
                dockerignore: ignore_file.clone(),
                exec,
                initial_sync: initial_sync && is_sync,
            });
        }
    }
    if out.is_empty() {
        bail!("none of the selected services is configured for watch, consider setting a 'develop' section");
    }
    Ok(out)
}

/// compose's `checkIfPathAlreadyBindMounted`: `path` lies in a bind mount's source.
fn under_bind_mount(s: &Service, path: &Path) -> bool {
    s.volumes
        .iter()
        .filter(|v| v.kind == "bind" && !v.source.is_empty())
        .any(|v| path.starts_with(&v.source))
}

impl Rule {
    /// Whether one of the rule's ignores (not its `include`) covers `path`, a path under the
    /// rule's.
    fn ignored(&self, path: &Path, ephemeral: &Ignore) -> bool {
        let rel = path.strip_prefix(&self.path).unwrap_or(Path::new(""));
        let rel = rel.to_string_lossy();
        if !rel.is_empty() && self.ignore.excluded(&rel) {
            return true;
        }
        if ephemeral.excluded(&path.to_string_lossy()) {
            return true;
        }
        matches!(&self.dockerignore, Some((ctx, ig))
        if path.strip_prefix(ctx).is_ok_and(|r| {
            let r = r.to_string_lossy();
            !r.is_empty() && ig.excluded(&r)
        }))
    }

    /// compose's `watchRule.Matches`: the path in the container `path` maps to (empty for
    /// a rule without a target), or `None` when the rule does not take it.
    fn matches(&self, path: &Path, ephemeral: &Ignore) -> Option<String> {
        let rel = path.strip_prefix(&self.path).ok()?;
        let rel_s = rel.to_string_lossy();
        if let Some(inc) = &self.include {
            if !inc.excluded(&rel_s) {
                return None;
            }
        }
        if self.ignored(path, ephemeral) {
            return None;
        }
        Some(if self.target.is_empty() {
            String::new()
        } else if rel_s.is_empty() {
            self.target.clone()
        } else {
            format!("{}/{rel_s}", self.target.trim_end_matches('/'))
        })
    }
}

/// Every rule that takes a changed `path`, with the path in the container.
fn route<'a>(rules: &'a [Rule], path: &Path, ephemeral: &Ignore) -> Vec<(usize, &'a Rule, String)> {
    rules
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.matches(path, ephemeral).map(|t| (i, r, t)))
        .collect()
}

/// The files an `initial_sync` rule copies (compose's `initialSyncFiles`): every file under
/// its path that the rule's ignores, the `Dockerfile` (or the build's) and the compose file
/// names leave, and that no bind mount of the service covers.
fn initial_files(rule: &Rule, s: &Service, ephemeral: &Ignore) -> Vec<(PathBuf, String)> {
    let mut skip = vec![
        "Dockerfile".to_string(),
        "compose.yaml".into(),
        "compose.yml".into(),
        "docker-compose.yml".into(),
        "docker-compose.yaml".into(),
        "compose.override.yml".into(),
        "compose.override.yaml".into(),
        "docker-compose.override.yml".into(),
        "docker-compose.override.yaml".into(),
    ];
    if let Some(b) = &s.build {
        if let Some(f) = Path::new(&b.dockerfile).file_name() {
            skip.push(f.to_string_lossy().into_owned());
        }
    }
    let skipped = |p: &Path| {
        p.file_name()
            .is_some_and(|n| skip.iter().any(|s| *s == n.to_string_lossy()))
            || rule.ignored(p, ephemeral)
            || under_bind_mount(s, p)
    };
    let mut out = Vec::new();
    if rule.path.is_file() {
        if !skipped(&rule.path) {
            out.push((rule.path.clone(), rule.target.clone()));
        }
        return out;
    }
    let mut stack = vec![rule.path.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if skipped(&p) {
                continue;
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            } else if let Some(t) = rule.matches(&p, ephemeral) {
                out.push((p, t));
            }
        }
    }
    out.sort();
    out
}

/// How `run` applies rebuilds: `watch --prune` removes the project's dangling images after
/// a rebuild (`up --watch` does not).
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub prune: bool,
}

/// Runs the rules' initial syncs, then watches until the channel of file events closes
/// (the process is interrupted).
pub async fn run(
    client: Client,
    project: Arc<Project>,
    rules: Vec<Rule>,
    opts: Options,
) -> Result<()> {
    let ephemeral = Ignore::parse(EPHEMERAL);
    for r in rules.iter().filter(|r| r.initial_sync) {
        let files = initial_files(r, &project.services[&r.service], &ephemeral);
        for id in service_containers(&client, &project, &r.service).await? {
            sync(&client, &id, &files).await?;
        }
    }
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
        if let Err(e) = apply(&client, &project, &rules, &changed, &ephemeral, opts).await {
            eprintln!("WARN[0000] Error handling changed files: {e:#}");
        }
    }
    Ok(())
}

async fn service_containers(
    client: &Client,
    project: &Project,
    service: &str,
) -> Result<Vec<String>> {
    let list = containers(
        client,
        &project.name,
        false,
        OneOff::Exclude,
        &[service.to_string()],
    )
    .await?;
    Ok(list.iter().map(|c| id_of(c).to_string()).collect())
}

/// Applies one batch of changes as compose's `handleWatchBatch`: rebuilds first, then the
/// syncs, then the restarts, then the `sync+exec` commands (once per rule).
async fn apply(
    client: &Client,
    project: &Arc<Project>,
    rules: &[Rule],
    changed: &BTreeSet<PathBuf>,
    ephemeral: &Ignore,
    opts: Options,
) -> Result<()> {
    let mut rebuild = BTreeSet::new();
    let mut syncs: BTreeMap<String, Vec<(PathBuf, String)>> = BTreeMap::new();
    let mut restart = BTreeSet::new();
    let mut execs: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for p in changed {
        for (i, rule, target) in route(rules, p, ephemeral) {
            let svc = rule.service.clone();
            match rule.action.as_str() {
                "rebuild" => {
                    rebuild.insert(svc);
                }
                "restart" => {
                    restart.insert(svc);
                }
                action => {
                    syncs
                        .entry(svc.clone())
                        .or_default()
                        .push((p.clone(), target));
                    if action == "sync+restart" {
                        restart.insert(svc);
                    } else if action == "sync+exec" {
                        execs.entry(svc).or_default().insert(i);
                    }
                }
            }
        }
    }
    if !rebuild.is_empty() {
        let list: Vec<String> = rebuild.into_iter().collect();
        eprintln!("Rebuilding service(s) {list:?} after changes were detected...");
        let mut built = Vec::new();
        for s in &list {
            super::images::build_service(client, project, s, false, false, &[]).await?;
            let image = super::up::image_ids(client, project, s).await?;
            built.push(image);
        }
        if opts.prune {
            prune_dangling(client, &project.name, &built).await;
        }
        eprintln!("service(s) {list:?} successfully built");
        super::up::recreate_services(client, project, &list).await?;
    }
    for (service, paths) in &syncs {
        eprintln!(
            "Syncing service {service:?} after {} changes were detected",
            paths.len()
        );
        for id in service_containers(client, project, service).await? {
            sync(client, &id, paths).await?;
        }
    }
    if !restart.is_empty() {
        let list: Vec<String> = restart.into_iter().collect();
        for service in &list {
            for id in service_containers(client, project, service).await? {
                let path = format!("/containers/{}/restart", seg(&id));
                client.send(Method::POST, &path, None).await?;
            }
        }
        eprintln!("service(s) {list:?} restarted");
    }
    for (service, idx) in &execs {
        for id in service_containers(client, project, service).await? {
            for i in idx {
                exec(client, &id, &rules[*i].exec).await?;
            }
        }
    }
    Ok(())
}

/// `watch --prune` after a rebuild, as compose's `pruneDanglingImagesOnRebuild`: the
/// project's dangling images (label `com.docker.compose.project`) other than those just
/// built are removed; one still in use or already gone is skipped.
async fn prune_dangling(client: &Client, project: &str, built: &[String]) {
    let filters = json!({
        "dangling": ["true"],
        "label": [format!("{}={project}", labels::PROJECT)],
    });
    let path = format!(
        "/images/json{}",
        query(&[("filters", Some(filters.to_string()))])
    );
    let Ok(list) = client.json::<Vec<Value>>(Method::GET, &path, None).await else {
        return;
    };
    for img in list {
        let id = img["Id"].as_str().unwrap_or_default();
        if id.is_empty() || built.iter().any(|b| b == id) {
            continue;
        }
        let _ = client
            .send(Method::DELETE, &format!("/images/{}", seg(id)), None)
            .await;
    }
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
            query(&[
                ("path", Some("/".into())),
                ("copyUIDGID", Some("true".into()))
            ])
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
    let opts = Options { prune: a.prune };
    tokio::select! {
        r = run(client.clone(), project, rules, opts) => r?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_route_changes_as_compose() {
        let dir = std::env::temp_dir().join(format!("barge-watch-unit-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("web/node_modules")).unwrap();
        std::fs::write(dir.join("web/.dockerignore"), "*.log\n").unwrap();
        let dir = dir.canonicalize().unwrap();
        let mut p = Project {
            working_dir: dir.display().to_string(),
            ..Default::default()
        };
        let svc = barge_compose::model::Service {
            image: "x".into(),
            build: Some(barge_compose::model::Build {
                context: dir.join("web").display().to_string(),
                ..Default::default()
            }),
            develop: Some(json!({"watch": [
                {"path": "./web", "action": "sync", "target": "/app", "ignore": ["*.tmp", "cache/"],
                 "initial_sync": true},
                {"path": "./web", "action": "restart", "include": ["*.conf"]},
                {"path": "./conf", "action": "sync+exec", "target": "/etc/x", "exec": {"command": "kill -HUP 1"}},
            ]})),
            ..Default::default()
        };
        p.services.insert("web".into(), svc.clone());
        let rules = rules(&p, &[]).unwrap();
        assert_eq!(rules.len(), 3);
        assert!(rules[0].initial_sync && !rules[1].initial_sync);
        assert_eq!(rules[2].exec, vec!["kill", "-HUP", "1"]);
        let eph = Ignore::parse(EPHEMERAL);
        let web = dir.join("web");
        let actions = |p: &Path| -> Vec<(String, String)> {
            route(&rules, p, &eph)
                .into_iter()
                .map(|(_, r, t)| (r.action.clone(), t))
                .collect()
        };
        assert_eq!(
            actions(&web.join("a/b.txt")),
            vec![("sync".into(), "/app/a/b.txt".into())]
        );
        // every rule that takes the path acts on it (compose's handleWatchBatch)
        assert_eq!(
            actions(&web.join("x.conf")),
            vec![
                ("sync".into(), "/app/x.conf".into()),
                ("restart".into(), String::new())
            ]
        );
        // the rule's ignore, the build context's .dockerignore, editors' files, .git
        assert!(actions(&web.join("x.tmp")).is_empty());
        assert!(actions(&web.join("cache/y")).is_empty());
        assert!(actions(&web.join("debug.log")).is_empty());
        assert!(actions(&web.join(".main.rs.swp")).is_empty());
        assert!(actions(&web.join(".git/HEAD")).is_empty());
        assert!(actions(&dir.join("other.txt")).is_empty());
        std::fs::write(web.join("index.html"), "hi").unwrap();
        std::fs::write(web.join("Dockerfile"), "FROM x").unwrap();
        std::fs::write(web.join("node_modules/m.js"), "m").unwrap();
        std::fs::write(web.join("app.log"), "l").unwrap();
        let files: Vec<String> = initial_files(&rules[0], &p.services["web"], &eph)
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        assert_eq!(
            files,
            vec![
                "/app/.dockerignore",
                "/app/index.html",
                "/app/node_modules/m.js"
            ]
        );
        let mut bad = p.clone();
        bad.services.get_mut("web").unwrap().build = None;
        bad.services.get_mut("web").unwrap().develop =
            Some(json!({"watch": [{"path": ".", "action": "rebuild"}]}));
        assert_eq!(
            rules_err(&bad),
            "service web doesn't have a build section, can't apply rebuild on watch"
        );
        bad.services.get_mut("web").unwrap().develop = None;
        assert!(rules_err(&bad).starts_with("none of the selected services"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn rules_err(p: &Project) -> String {
        rules(p, &[]).unwrap_err().to_string()
    }
}
