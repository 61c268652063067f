//! A loaded project turned into Docker Engine API request bodies, as docker compose v2 builds
//! them (`pkg/compose/create.go`): container names `{project}-{service}-{n}`, the
//! `com.docker.compose.*` labels, the service's config hash (`hash.go`), and the
//! `POST /containers/create`, `/networks/create` and `/volumes/create` bodies.
//! No engine calls: the CLI sends what this module builds.

use crate::model::{Project, Service, VolumeMount};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The docker compose release whose behaviour (labels, naming, convergence) barge follows;
/// written in `com.docker.compose.version` as compose writes its own version.
pub const COMPOSE_VERSION: &str = "2.32.4";

/// The label keys docker compose sets (`pkg/api/labels.go`).
pub mod labels {
    /// Project name.
    pub const PROJECT: &str = "com.docker.compose.project";
    /// Service name.
    pub const SERVICE: &str = "com.docker.compose.service";
    /// Service configuration hash.
    pub const CONFIG_HASH: &str = "com.docker.compose.config-hash";
    /// Replica number.
    pub const CONTAINER_NUMBER: &str = "com.docker.compose.container-number";
    /// Volume key in the project.
    pub const VOLUME: &str = "com.docker.compose.volume";
    /// Network key in the project.
    pub const NETWORK: &str = "com.docker.compose.network";
    /// Project working directory.
    pub const WORKING_DIR: &str = "com.docker.compose.project.working_dir";
    /// Project files, comma separated.
    pub const CONFIG_FILES: &str = "com.docker.compose.project.config_files";
    /// `--env-file`s, comma separated.
    pub const ENVIRONMENT_FILE: &str = "com.docker.compose.project.environment_file";
    /// `True` for `compose run` containers, else `False`.
    pub const ONEOFF: &str = "com.docker.compose.oneoff";
    /// One-off container identity.
    pub const SLUG: &str = "com.docker.compose.slug";
    /// Image ID the container was created from.
    pub const IMAGE: &str = "com.docker.compose.image";
    /// `svc:condition:restart` list.
    pub const DEPENDS_ON: &str = "com.docker.compose.depends_on";
    /// Compose version.
    pub const VERSION: &str = "com.docker.compose.version";
    /// Set on a container created to replace another.
    pub const REPLACE: &str = "com.docker.compose.replace";
}

/// A conversion failure (values the loader kept raw that do not parse).
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// A size (`shm_size`, memory limit, tmpfs size) that does not parse.
    #[error("service {service:?}: invalid size {value:?} for {field}")]
    Size {
        service: String,
        field: &'static str,
        value: String,
    },
    /// A duration that does not parse.
    #[error("service {service:?}: invalid duration {value:?} for {field}")]
    Duration {
        service: String,
        field: &'static str,
        value: String,
    },
    /// A volume mount naming an undefined top-level volume.
    #[error("service {service:?} refers to undefined volume {volume}: invalid compose project")]
    UndefinedVolume { service: String, volume: String },
    /// A service mounting a secret or config declared `external` (a swarm object).
    #[error("unsupported external {kind} {name}")]
    External { kind: &'static str, name: String },
    /// An `environment:`-sourced secret or config whose variable is not set.
    #[error("environment variable {variable:?} required by file {name:?} is not set")]
    EnvironmentUnset { variable: String, name: String },
    /// A secret or config to be written into a service with a read-only root.
    #[error("cannot create {kind} {name:?} in read-only service {service}: `file` is the sole supported option")]
    ReadOnly {
        kind: &'static str,
        name: String,
        service: String,
    },
    /// A `uid`/`gid` that is not a number.
    #[error("service {service:?}: {kind} {name:?}: invalid {field} {value:?}")]
    Owner {
        service: String,
        kind: &'static str,
        name: String,
        field: &'static str,
        value: String,
    },
    /// JSON serialisation of the service (hash).
    #[error("hashing service {service:?}: {error}")]
    Hash {
        service: String,
        error: serde_json::Error,
    },
}

/// `{project}-{service}-{n}`, or the service's `container_name`.
pub fn container_name(project: &str, service_name: &str, service: &Service, number: u32) -> String {
    if service.container_name.is_empty() {
        format!("{project}-{service_name}-{number}")
    } else {
        service.container_name.clone()
    }
}

/// The image a service runs: its `image`, else `{project}-{service}` (what `build` tags).
pub fn image_name(project: &str, service_name: &str, service: &Service) -> String {
    if service.image.is_empty() {
        format!("{project}-{service_name}")
    } else {
        service.image.clone()
    }
}

/// The service's configuration hash, as compose's `ServiceHash`: SHA-256 (hex) of the
/// service's JSON without `build`, `pull_policy`, `scale`, `deploy.replicas`, `depends_on`
/// and `profiles`, so scaling or a dependency change does not recreate the container.
pub fn service_hash(name: &str, service: &Service) -> Result<String, ConvertError> {
    let mut s = service.clone();
    s.build = None;
    s.pull_policy.clear();
    s.scale = None;
    if let Some(Value::Object(d)) = &mut s.deploy {
        d.remove("replicas");
    }
    s.depends_on.clear();
    s.profiles.clear();
    let data = serde_json::to_string(&s).map_err(|error| ConvertError::Hash {
        service: name.to_string(),
        error,
    })?;
    Ok(hex(&Sha256::digest(go_json_escape(&data).as_bytes())))
}

/// Go's `json.Marshal` escapes `<`, `>`, `&`, U+2028 and U+2029 inside strings (HTML-safe
/// output); these characters only occur inside strings in JSON text, so replacing them
/// everywhere gives Go's bytes.
fn go_json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Number of containers a service runs: `scale`, else `deploy.replicas`, else 1.
pub fn scale_of(service: &Service) -> u32 {
    if let Some(s) = service.scale {
        return s as u32;
    }
    service
        .deploy
        .as_ref()
        .and_then(|d| d.get("replicas"))
        .and_then(Value::as_u64)
        .map_or(1, |r| r as u32)
}

/// What a container is created for.
#[derive(Debug, Clone, Default)]
pub struct Instance {
    /// Replica number (`compose run` uses -1 as compose does).
    pub number: i64,
    /// Container name.
    pub name: String,
    /// `compose run` container (`oneoff` = `True`, no service alias).
    pub oneoff: bool,
    /// One-off slug.
    pub slug: String,
    /// Image ID (`sha256:...`) for the `image` label; empty when unknown.
    pub image_id: String,
    /// `--env-file`s given on the command line (absolute).
    pub env_files: Vec<String>,
    /// Remove the container when it exits (`run --rm`).
    pub auto_remove: bool,
    /// Keep stdin open and attach it (`run -i`).
    pub stdin: bool,
    /// Allocate a TTY (`run -t`).
    pub tty: bool,
    /// Publish the service's ports (`run` does not unless `--service-ports`).
    pub publish: bool,
    /// `HostConfig.Links` (compose's `getLinks`, from the linked services' containers:
    /// see [`links`]).
    pub links: Vec<String>,
    /// Whether the engine takes several `EndpointsConfig` at create (API ≥ 1.44).
    pub multi_endpoint: bool,
    /// Anonymous volumes of the container this one replaces, kept as compose keeps them:
    /// `(volume name, target, read-only)`; they take the place of a mount at the same target.
    pub inherit: Vec<(String, String, bool)>,
}

/// Which mounts of a replaced container the new one inherits (compose's
/// `buildContainerMountOptions`): volumes at a target where the service declares an
/// anonymous volume, or that the service does not declare at all (the image's `VOLUME`s).
/// `mounts` are the old container's `(type, name, destination, rw)`.
pub fn inherited_volumes(
    s: &Service,
    mounts: &[(String, String, String, bool)],
) -> Vec<(String, String, bool)> {
    mounts
        .iter()
        .filter(|(kind, name, _, _)| kind == "volume" && !name.is_empty())
        .filter(|(_, _, dest, _)| {
            let declared = s.volumes.iter().find(|v| &v.target == dest);
            let in_tmpfs = s
                .tmpfs
                .iter()
                .any(|t| t.split(':').next() == Some(dest.as_str()));
            !in_tmpfs && declared.is_none_or(|v| v.kind == "volume" && v.source.is_empty())
        })
        .map(|(_, name, dest, rw)| (name.clone(), dest.clone(), !rw))
        .collect()
}

/// The labels docker compose puts on a service container: the service's own labels, then
/// project, service, version, working_dir, config_files, oneoff, image, config-hash,
/// container-number and depends_on.
pub fn container_labels(
    project: &Project,
    name: &str,
    service: &Service,
    inst: &Instance,
) -> Result<BTreeMap<String, String>, ConvertError> {
    let mut l = service.labels.clone();
    l.insert(labels::PROJECT.into(), project.name.clone());
    l.insert(labels::SERVICE.into(), name.into());
    l.insert(labels::VERSION.into(), COMPOSE_VERSION.into());
    l.insert(labels::WORKING_DIR.into(), project.working_dir.clone());
    l.insert(labels::CONFIG_FILES.into(), project.config_files.join(","));
    l.insert(
        labels::ONEOFF.into(),
        if inst.oneoff { "True" } else { "False" }.into(),
    );
    if inst.oneoff {
        l.insert(labels::SLUG.into(), inst.slug.clone());
    }
    if !inst.env_files.is_empty() {
        l.insert(labels::ENVIRONMENT_FILE.into(), inst.env_files.join(","));
    }
    if !inst.image_id.is_empty() {
        l.insert(labels::IMAGE.into(), inst.image_id.clone());
    }
    l.insert(labels::CONFIG_HASH.into(), service_hash(name, service)?);
    l.insert(labels::CONTAINER_NUMBER.into(), inst.number.to_string());
    l.insert(labels::DEPENDS_ON.into(), depends_on_label(service));
    Ok(l)
}

/// `svc:condition:restart` joined by commas (sorted; compose iterates a Go map).
pub fn depends_on_label(service: &Service) -> String {
    service
        .depends_on
        .iter()
        .map(|(s, d)| format!("{s}:{}:{}", d.condition, d.restart))
        .collect::<Vec<_>>()
        .join(",")
}

fn size(service: &str, field: &'static str, v: &Value) -> Result<i64, ConvertError> {
    match v {
        Value::Number(n) => Ok(n.as_i64().unwrap_or(0)),
        Value::String(s) => barge_stdx::units::ram_in_bytes(s).map_err(|_| ConvertError::Size {
            service: service.into(),
            field,
            value: s.clone(),
        }),
        other => Err(ConvertError::Size {
            service: service.into(),
            field,
            value: other.to_string(),
        }),
    }
}

fn duration_ns(service: &str, field: &'static str, s: &str) -> Result<i64, ConvertError> {
    barge_stdx::units::parse_go_duration(s).map_err(|_| ConvertError::Duration {
        service: service.into(),
        field,
        value: s.into(),
    })
}

fn restart_name(condition: &str) -> &str {
    match condition {
        "none" | "no" => "no",
        "any" | "always" => "always",
        other => other,
    }
}

/// The restart policy as compose maps `restart` and `deploy.restart_policy`.
fn restart_policy(service: &Service) -> Value {
    let mut name = String::new();
    let mut attempts: i64 = 0;
    if !service.restart.is_empty() {
        let mut it = service.restart.split(':');
        name = restart_name(it.next().unwrap_or("")).to_string();
        attempts = it.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    }
    if let Some(p) = service
        .deploy
        .as_ref()
        .and_then(|d| d.get("restart_policy"))
    {
        name = restart_name(p.get("condition").and_then(Value::as_str).unwrap_or("")).into();
        attempts = p.get("max_attempts").and_then(Value::as_i64).unwrap_or(0);
    }
    json!({"Name": name, "MaximumRetryCount": attempts})
}

/// Engine name of a top-level volume.
fn volume_engine_name(project: &Project, svc: &str, key: &str) -> Result<String, ConvertError> {
    project
        .volumes
        .get(key)
        .map(|v| v.name.clone())
        .ok_or_else(|| ConvertError::UndefinedVolume {
            service: svc.into(),
            volume: key.into(),
        })
}

/// `Binds` and `Mounts` for the service's volumes (compose uses a bind string when the host
/// path may be created, the Mount API otherwise).
fn mounts(
    project: &Project,
    name: &str,
    s: &Service,
) -> Result<(Vec<String>, Vec<Value>), ConvertError> {
    let mut binds = Vec::new();
    let mut mounts = Vec::new();
    for v in &s.volumes {
        let VolumeMount {
            kind,
            source,
            target,
            read_only,
            ..
        } = v;
        match kind.as_str() {
            "bind" => {
                let bind = v.bind.clone().unwrap_or_default();
                let needs_api =
                    v.bind.is_none() || !bind.create_host_path || !bind.propagation.is_empty();
                if needs_api && v.bind.is_some() {
                    let mut m = json!({"Type": "bind", "Source": source, "Target": target});
                    if *read_only {
                        m["ReadOnly"] = json!(true);
                    }
                    if !bind.propagation.is_empty() {
                        m["BindOptions"] = json!({"Propagation": bind.propagation});
                    }
                    mounts.push(m);
                } else {
                    let mut opts = vec![if *read_only { "ro" } else { "rw" }.to_string()];
                    if !bind.selinux.is_empty() {
                        opts.push(bind.selinux.clone());
                    }
                    binds.push(format!("{source}:{target}:{}", opts.join(",")));
                }
            }
            "volume" => {
                let src = if source.is_empty() {
                    String::new()
                } else {
                    volume_engine_name(project, name, source)?
                };
                let mut m = json!({"Type": "volume", "Source": src, "Target": target});
                if *read_only {
                    m["ReadOnly"] = json!(true);
                }
                if let Some(o) = &v.volume {
                    let mut vo = Map::new();
                    if o.nocopy {
                        vo.insert("NoCopy".into(), json!(true));
                    }
                    if !o.subpath.is_empty() {
                        vo.insert("Subpath".into(), json!(o.subpath));
                    }
                    if !vo.is_empty() {
                        m["VolumeOptions"] = Value::Object(vo);
                    }
                }
                mounts.push(m);
            }
            "tmpfs" => {
                let mut m = json!({"Type": "tmpfs", "Target": target});
                if let Some(t) = &v.tmpfs {
                    let mut to = Map::new();
                    if let Some(sz) = t.get("size") {
                        to.insert("SizeBytes".into(), json!(size(name, "tmpfs.size", sz)?));
                    }
                    if let Some(mode) = t.get("mode").and_then(Value::as_u64) {
                        to.insert("Mode".into(), json!(mode));
                    }
                    if !to.is_empty() {
                        m["TmpfsOptions"] = Value::Object(to);
                    }
                }
                mounts.push(m);
            }
            other => {
                mounts.push(json!({"Type": other, "Source": source, "Target": target, "ReadOnly": read_only}));
            }
        }
    }
    Ok((binds, mounts))
}

/// Secrets or configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `secrets:` (default target `/run/secrets/NAME`).
    Secret,
    /// `configs:` (default target `/NAME`).
    Config,
}

impl FileKind {
    fn word(self) -> &'static str {
        match self {
            FileKind::Secret => "secret",
            FileKind::Config => "config",
        }
    }
}

/// One secret or config of a service, long syntax, target made absolute as compose does
/// (`/run/secrets/` or `/` in front of a missing or relative target).
#[derive(Debug, Clone, PartialEq)]
pub struct FileRef {
    /// Key of the top-level secret or config.
    pub source: String,
    /// Absolute path in the container.
    pub target: String,
    /// Owner (`uid`, text as written; empty = not set).
    pub uid: String,
    /// Group (`gid`).
    pub gid: String,
    /// Permission bits (`mode`, octal in the file).
    pub mode: Option<u32>,
}

/// The service's secrets or configs in long syntax.
pub fn file_refs(s: &Service, kind: FileKind) -> Vec<FileRef> {
    let (list, base) = match kind {
        FileKind::Secret => (&s.secrets, "/run/secrets/"),
        FileKind::Config => (&s.configs, "/"),
    };
    list.iter()
        .map(|v| {
            let text = |k: &str| match v.get(k) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            let source = text("source");
            let target = text("target");
            let target = if target.is_empty() {
                format!("{base}{source}")
            } else if target.starts_with('/') {
                target
            } else {
                format!("{base}{target}")
            };
            FileRef {
                source,
                target,
                uid: text("uid"),
                gid: text("gid"),
                mode: v.get("mode").and_then(file_mode),
            }
        })
        .collect()
}

/// compose-go's `FileMode`: a number as yaml.v3 reads it (the loader reads a leading `0` as
/// octal, so `0440` is 288), or text read as octal (`"0440"`).
fn file_mode(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8).ok(),
        _ => None,
    }
}

/// Bind mounts (read-only) of the service's file-based secrets then configs, as compose's
/// `buildContainerSecretMounts`/`buildContainerConfigMounts` for a project without swarm;
/// an external one is an error; `environment:`/`content:` ones are written by
/// [`injected_files`] instead.
pub fn file_mounts(project: &Project, s: &Service) -> Result<Vec<Value>, ConvertError> {
    let mut out: Vec<Value> = Vec::new();
    for kind in [FileKind::Secret, FileKind::Config] {
        let defined = match kind {
            FileKind::Secret => &project.secrets,
            FileKind::Config => &project.configs,
        };
        for r in file_refs(s, kind) {
            let Some(obj) = defined.get(&r.source) else {
                continue; // the loader refuses undefined ones
            };
            if obj.external {
                return Err(ConvertError::External {
                    kind: kind.word(),
                    name: obj.name.clone(),
                });
            }
            if !obj.environment.is_empty() || !obj.content.is_empty() || obj.file.is_empty() {
                continue;
            }
            if !r.uid.is_empty() || !r.gid.is_empty() || r.mode.is_some() {
                eprintln!(
                    "WARN[0000] {}s `uid`, `gid` and `mode` are not supported, they will be ignored",
                    kind.word()
                );
            }
            if out.iter().any(|m| m["Target"] == r.target.as_str()) {
                continue;
            }
            out.push(
                json!({"Type": "bind", "Source": obj.file, "Target": r.target, "ReadOnly": true}),
            );
        }
    }
    Ok(out)
}

/// A file compose copies into a container after creating it (`injectSecrets`,
/// `injectConfigs`): an `environment:`-sourced secret or config, or a config's `content`.
#[derive(Debug, Clone, PartialEq)]
pub struct Injected {
    /// Absolute path in the container.
    pub path: String,
    /// Content.
    pub content: Vec<u8>,
    /// Owner and group (0 when not set).
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Permission bits (default `0444`).
    pub mode: u32,
    /// Whether `uid` or `gid` was set (the copy keeps the owner: `copyUIDGID`).
    pub keep_owner: bool,
}

/// The files to copy into a new container of service `name` before it starts.
pub fn injected_files(
    project: &Project,
    name: &str,
    s: &Service,
) -> Result<Vec<Injected>, ConvertError> {
    let mut out = Vec::new();
    for kind in [FileKind::Secret, FileKind::Config] {
        let defined = match kind {
            FileKind::Secret => &project.secrets,
            FileKind::Config => &project.configs,
        };
        for r in file_refs(s, kind) {
            let Some(obj) = defined.get(&r.source) else {
                continue;
            };
            let content = if !obj.environment.is_empty() {
                project
                    .environment
                    .get(&obj.environment)
                    .cloned()
                    .ok_or_else(|| ConvertError::EnvironmentUnset {
                        variable: obj.environment.clone(),
                        name: obj.name.clone(),
                    })?
            } else if kind == FileKind::Config && !obj.content.is_empty() {
                obj.content.clone()
            } else {
                continue;
            };
            if content.is_empty() {
                continue;
            }
            if s.read_only {
                return Err(ConvertError::ReadOnly {
                    kind: kind.word(),
                    name: obj.name.clone(),
                    service: name.into(),
                });
            }
            let id = |field: &'static str, v: &str| -> Result<u64, ConvertError> {
                if v.is_empty() {
                    return Ok(0);
                }
                v.parse().map_err(|_| ConvertError::Owner {
                    service: name.into(),
                    kind: kind.word(),
                    name: r.source.clone(),
                    field,
                    value: v.into(),
                })
            };
            out.push(Injected {
                path: r.target.clone(),
                content: content.into_bytes(),
                uid: id("uid", &r.uid)?,
                gid: id("gid", &r.gid)?,
                mode: r.mode.unwrap_or(0o444),
                keep_owner: !r.uid.is_empty() || !r.gid.is_empty(),
            });
        }
    }
    Ok(out)
}

/// `HostConfig.Links` as compose's `getLinks`: for each `links` entry (`SERVICE[:ALIAS]`),
/// each container of that service (`containers(service)` gives their names) is linked as
/// the alias, as `SERVICE-N` and as `PROJECT-SERVICE-N`, `N` being this container's number.
pub fn links(
    project: &str,
    s: &Service,
    number: i64,
    containers: &dyn Fn(&str) -> Vec<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for raw in &s.links {
        let parts: Vec<&str> = raw.split(':').collect();
        let service = parts[0];
        let alias = if parts.len() == 2 { parts[1] } else { service };
        for c in containers(service) {
            out.push(format!("{c}:{alias}"));
            out.push(format!("{c}:{service}-{number}"));
            out.push(format!("{c}:{project}-{service}-{number}"));
        }
    }
    out
}

/// The service with its references to other services resolved to containers, as compose's
/// `resolveServiceReferences` (the config hash is computed on the result): `volumes_from`
/// entries become the first container's ID (`container:NAME` becomes `NAME`; modes are
/// dropped as compose drops them), `network_mode`/`ipc`/`pid` `service:NAME` become
/// `container:ID`. `first(service)` is the ID of the service's lowest-numbered container.
pub fn resolve_references(
    s: &Service,
    first: &dyn Fn(&str) -> Option<String>,
) -> Result<Service, String> {
    let mut s = s.clone();
    for v in s.volumes_from.iter_mut() {
        let spec: Vec<&str> = v.split(':').collect();
        if spec[0] == "container" {
            *v = spec.get(1).copied().unwrap_or_default().to_string();
            continue;
        }
        let name = spec[0];
        *v = first(name)
            .ok_or_else(|| format!("cannot share volume with service {name}: container missing"))?;
    }
    for (mode, what) in [
        (&mut s.network_mode, "network"),
        (&mut s.ipc, "IPC"),
        (&mut s.pid, "PID"),
    ] {
        if let Some(name) = mode.strip_prefix("service:") {
            let id = first(name).ok_or_else(|| {
                format!("cannot share {what} namespace with service {name}: container missing")
            })?;
            *mode = format!("container:{id}");
        }
    }
    Ok(s)
}

/// The service's networks by priority (highest first, then by name), as
/// `NetworksByPriority`.
pub fn networks_by_priority(s: &Service) -> Vec<String> {
    let mut keys: Vec<(i64, &String)> = s
        .networks
        .iter()
        .map(|(k, v)| (v.as_ref().and_then(|n| n.priority).unwrap_or(0), k))
        .collect();
    keys.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    keys.into_iter().map(|(_, k)| k.clone()).collect()
}

/// `POST /containers/create` body (Config + HostConfig + NetworkingConfig) for one container
/// of service `name`, as compose's `getCreateConfigs`.
pub fn create_body(
    project: &Project,
    name: &str,
    s: &Service,
    inst: &Instance,
) -> Result<Value, ConvertError> {
    let labels = container_labels(project, name, s, inst)?;
    let mut exposed = Map::new();
    for e in &s.expose {
        let p = if e.contains('/') {
            e.clone()
        } else {
            format!("{e}/tcp")
        };
        exposed.insert(p, json!({}));
    }
    let mut bindings: Map<String, Value> = Map::new();
    for p in &s.ports {
        let key = format!("{}/{}", p.target, p.protocol);
        exposed.insert(key.clone(), json!({}));
        if inst.publish {
            let b = json!({"HostIp": p.host_ip, "HostPort": p.published});
            match bindings.get_mut(&key) {
                Some(Value::Array(a)) => a.push(b),
                _ => {
                    bindings.insert(key, json!([b]));
                }
            }
        }
    }
    let env: Vec<String> = s
        .environment
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
    let mut config = json!({
        "Hostname": s.hostname,
        "Domainname": s.domainname,
        "User": s.user,
        "AttachStdin": inst.stdin,
        "AttachStdout": true,
        "AttachStderr": true,
        "Tty": inst.tty || s.tty,
        "OpenStdin": inst.stdin || s.stdin_open,
        "StdinOnce": inst.stdin && s.stdin_open,
        "Env": env,
        "Image": image_name(&project.name, name, s),
        "WorkingDir": s.working_dir,
        "Labels": labels,
    });
    if !exposed.is_empty() {
        config["ExposedPorts"] = Value::Object(exposed);
    }
    if let Some(c) = &s.command {
        config["Cmd"] = json!(c);
    }
    if let Some(e) = &s.entrypoint {
        config["Entrypoint"] = json!(e);
    }
    if !s.stop_signal.is_empty() {
        config["StopSignal"] = json!(s.stop_signal);
    }
    if let Some(g) = &s.stop_grace_period {
        config["StopTimeout"] = json!(duration_ns(name, "stop_grace_period", g)? / 1_000_000_000);
    }
    if let Some(h) = &s.healthcheck {
        let mut hc = Map::new();
        if h.disable {
            hc.insert("Test".into(), json!(["NONE"]));
        } else {
            if !h.test.is_empty() {
                hc.insert("Test".into(), json!(h.test));
            }
            for (field, key, v) in [
                ("healthcheck.interval", "Interval", &h.interval),
                ("healthcheck.timeout", "Timeout", &h.timeout),
                ("healthcheck.start_period", "StartPeriod", &h.start_period),
                (
                    "healthcheck.start_interval",
                    "StartInterval",
                    &h.start_interval,
                ),
            ] {
                if let Some(v) = v {
                    hc.insert(key.into(), json!(duration_ns(name, field, v)?));
                }
            }
            if let Some(r) = h.retries {
                hc.insert("Retries".into(), json!(r));
            }
        }
        config["Healthcheck"] = Value::Object(hc);
    }

    let (binds, mut mounts) = mounts(project, name, s)?;
    for (vol, target, ro) in &inst.inherit {
        mounts.retain(|m| m["Target"].as_str() != Some(target));
        let mut m = json!({"Type": "volume", "Source": vol, "Target": target});
        if *ro {
            m["ReadOnly"] = json!(true);
        }
        mounts.push(m);
    }
    // secrets then configs, each only where no volume (or earlier file) has the target
    for m in file_mounts(project, s)? {
        if !mounts.iter().any(|x| x["Target"] == m["Target"])
            && !binds
                .iter()
                .any(|b| b.split(':').nth(1) == m["Target"].as_str())
        {
            mounts.push(m);
        }
    }
    let mut tmpfs = Map::new();
    for t in &s.tmpfs {
        let (p, o) = t.split_once(':').unwrap_or((t, ""));
        tmpfs.insert(p.into(), json!(o));
    }
    let mut host = json!({
        "Binds": binds,
        "Mounts": mounts,
        "CapAdd": s.cap_add,
        "CapDrop": s.cap_drop,
        "Init": s.init,
        "IpcMode": s.ipc,
        "PidMode": s.pid,
        "ReadonlyRootfs": s.read_only,
        "Privileged": s.privileged,
        "RestartPolicy": restart_policy(s),
        "Sysctls": s.sysctls,
        "PortBindings": bindings,
        "Dns": s.dns,
        "DnsSearch": s.dns_search,
        "ExtraHosts": s.extra_hosts.iter().map(|h| h.replacen('=', ":", 1)).collect::<Vec<_>>(),
        "SecurityOpt": s.security_opt,
        "Tmpfs": tmpfs,
        "AutoRemove": inst.auto_remove,
    });
    if !s.volumes_from.is_empty() {
        host["VolumesFrom"] = json!(s.volumes_from);
    }
    if !inst.links.is_empty() {
        host["Links"] = json!(inst.links);
    }
    if !s.annotations.is_empty() {
        host["Annotations"] = json!(s.annotations);
    }
    if let Some(v) = &s.shm_size {
        host["ShmSize"] = json!(size(name, "shm_size", v)?);
    }
    if let Some(Value::Object(l)) = &s.logging {
        host["LogConfig"] = json!({
            "Type": l.get("driver").cloned().unwrap_or(json!("")),
            "Config": l.get("options").cloned().unwrap_or(json!({})),
        });
    }
    if let Some(Value::Object(u)) = &s.ulimits {
        let mut list = Vec::new();
        for (k, v) in u {
            let (soft, hard) = match v {
                Value::Object(o) => (
                    o.get("soft").and_then(Value::as_i64).unwrap_or(0),
                    o.get("hard").and_then(Value::as_i64).unwrap_or(0),
                ),
                other => {
                    let n = other.as_i64().unwrap_or(0);
                    (n, n)
                }
            };
            list.push(json!({"Name": k, "Soft": soft, "Hard": hard}));
        }
        host["Ulimits"] = json!(list);
    }
    if let Some(m) = s.mem_limit.as_deref().and_then(|m| m.parse::<i64>().ok()) {
        host["Memory"] = json!(m);
    }
    if let Some(m) = s
        .mem_reservation
        .as_deref()
        .and_then(|m| m.parse::<i64>().ok())
    {
        host["MemoryReservation"] = json!(m);
    }
    if let Some(o) = s.oom_score_adj {
        host["OomScoreAdj"] = json!(o);
    }
    if !s.cgroup_parent.is_empty() {
        host["CgroupParent"] = json!(s.cgroup_parent);
    }
    if !s.cpuset.is_empty() {
        host["CpusetCpus"] = json!(s.cpuset);
    }
    if let Some(b) = &s.blkio_config {
        blkio_config(b, &mut host);
    }
    if !s.devices.is_empty() {
        host["Devices"] = json!(s
            .devices
            .iter()
            .map(
                |d| json!({"PathOnHost": d.source, "PathInContainer": d.target,
                            "CgroupPermissions": d.permissions})
            )
            .collect::<Vec<_>>());
    }
    if let Some(c) = s.cpus {
        host["NanoCpus"] = json!((c * 1e9) as i64);
    }
    if let Some(p) = s.pids_limit {
        host["PidsLimit"] = json!(p);
    }
    if let Some(limits) = s
        .deploy
        .as_ref()
        .and_then(|d| d.pointer("/resources/limits"))
    {
        if let Some(m) = limits.get("memory") {
            host["Memory"] = json!(size(name, "deploy.resources.limits.memory", m)?);
        }
        if let Some(c) = limits.get("cpus") {
            let cpus = match c {
                Value::String(s) => s.parse::<f64>().unwrap_or(0.0),
                other => other.as_f64().unwrap_or(0.0),
            };
            host["NanoCpus"] = json!((cpus * 1e9) as i64);
        }
        if let Some(p) = limits.get("pids").and_then(Value::as_i64) {
            host["PidsLimit"] = json!(p);
        }
    }

    let mut body = config;
    let mode = s.network_mode.clone();
    if !mode.is_empty() {
        host["NetworkMode"] = json!(mode);
    } else if project.networks.is_empty() {
        host["NetworkMode"] = json!("none");
    } else {
        let order = if s.networks.is_empty() {
            vec!["default".to_string()]
        } else {
            networks_by_priority(s)
        };
        let mut endpoints = Map::new();
        for (i, key) in order.iter().enumerate() {
            if i > 0 && !inst.multi_endpoint {
                break;
            }
            let net = project
                .networks
                .get(key)
                .map_or(key.clone(), |n| n.name.clone());
            endpoints.insert(net, endpoint(s, name, key, inst));
        }
        let primary = project
            .networks
            .get(&order[0])
            .map_or(order[0].clone(), |n| n.name.clone());
        host["NetworkMode"] = json!(primary);
        body["NetworkingConfig"] = json!({"EndpointsConfig": endpoints});
    }
    body["HostConfig"] = host;
    Ok(body)
}

/// `EndpointSettings` for the service on network `key` (aliases: the container name, then
/// — except for one-off containers — the service name and the configured aliases).
pub fn endpoint(s: &Service, name: &str, key: &str, inst: &Instance) -> Value {
    let cfg = s.networks.get(key).cloned().flatten();
    let mut aliases = vec![inst.name.clone()];
    if !inst.oneoff {
        aliases.push(name.to_string());
        if let Some(c) = &cfg {
            aliases.extend(c.aliases.iter().cloned());
        }
    }
    let mut ep = json!({"Aliases": aliases});
    if let Some(c) = &cfg {
        if !c.ipv4_address.is_empty() || !c.ipv6_address.is_empty() {
            ep["IPAMConfig"] =
                json!({"IPv4Address": c.ipv4_address, "IPv6Address": c.ipv6_address});
        }
        if let Some(p) = c.priority {
            ep["GwPriority"] = json!(p);
        }
    }
    ep
}

/// `POST /networks/create` body for top-level network `key` (labels: the network's own, then
/// network, project and version, as compose's `prepareNetworks`).
pub fn network_body(project: &Project, key: &str) -> Option<Value> {
    let n = project.networks.get(key)?;
    let mut labels = n.labels.clone();
    labels.insert(labels::NETWORK.into(), key.into());
    labels.insert(labels::PROJECT.into(), project.name.clone());
    labels.insert(labels::VERSION.into(), COMPOSE_VERSION.into());
    let mut b = json!({
        "Name": n.name,
        "Driver": if n.driver.is_empty() { "bridge" } else { &n.driver },
        "Options": n.driver_opts,
        "Internal": n.internal,
        "Attachable": n.attachable,
        "Labels": labels,
        "CheckDuplicate": true,
    });
    if let Some(v6) = n.enable_ipv6 {
        b["EnableIPv6"] = json!(v6);
    }
    if let Some(ipam) = &n.ipam {
        let config: Vec<Value> = ipam
            .get("config")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|c| {
                        json!({
                            "Subnet": c.get("subnet").cloned().unwrap_or(json!("")),
                            "IPRange": c.get("ip_range").cloned().unwrap_or(json!("")),
                            "Gateway": c.get("gateway").cloned().unwrap_or(json!("")),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        b["IPAM"] = json!({
            "Driver": ipam.get("driver").cloned().unwrap_or(json!("default")),
            "Config": config,
        });
    }
    Some(b)
}

/// `POST /volumes/create` body for top-level volume `key` (labels: the volume's own, then
/// volume, project and version).
pub fn volume_body(project: &Project, key: &str) -> Option<Value> {
    let v = project.volumes.get(key)?;
    let mut labels = v.labels.clone();
    labels.insert(labels::VOLUME.into(), key.into());
    labels.insert(labels::PROJECT.into(), project.name.clone());
    labels.insert(labels::VERSION.into(), COMPOSE_VERSION.into());
    Some(json!({
        "Name": v.name,
        "Driver": if v.driver.is_empty() { "local" } else { &v.driver },
        "DriverOpts": v.driver_opts,
        "Labels": labels,
    }))
}

/// compose's `blkio_config` as `HostConfig`'s block I/O fields (compose-go's `BlkioConfig`):
/// `weight`, `weight_device` (`{path, weight}`), `device_{read,write}_{bps,iops}`
/// (`{path, rate}`; a bps rate may carry a unit, `1mb`).
fn blkio_config(b: &Value, host: &mut Value) {
    if let Some(w) = b.get("weight").and_then(|w| scalar(w).parse::<u16>().ok()) {
        host["BlkioWeight"] = json!(w);
    }
    if let Some(list) = b.get("weight_device").and_then(Value::as_array) {
        host["BlkioWeightDevice"] = json!(list
            .iter()
            .map(|d| json!({
                "Path": d.get("path").map(scalar).unwrap_or_default(),
                "Weight": d.get("weight").and_then(|w| scalar(w).parse::<u16>().ok()).unwrap_or(0),
            }))
            .collect::<Vec<_>>());
    }
    for (key, field, bytes) in [
        ("device_read_bps", "BlkioDeviceReadBps", true),
        ("device_write_bps", "BlkioDeviceWriteBps", true),
        ("device_read_iops", "BlkioDeviceReadIOps", false),
        ("device_write_iops", "BlkioDeviceWriteIOps", false),
    ] {
        let Some(list) = b.get(key).and_then(Value::as_array) else {
            continue;
        };
        host[field] = json!(list
            .iter()
            .map(|d| {
                let rate = d.get("rate").map(scalar).unwrap_or_default();
                let rate = if bytes {
                    barge_stdx::units::ram_in_bytes(&rate).unwrap_or(0)
                } else {
                    rate.parse::<i64>().unwrap_or(0)
                };
                json!({"Path": d.get("path").map(scalar).unwrap_or_default(), "Rate": rate})
            })
            .collect::<Vec<_>>());
    }
}

/// A YAML scalar as text (`1mb`, `200`); empty for anything else.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Dependency, Network, Port, Volume, VolumeOptions};

    fn project() -> Project {
        let mut p = Project {
            name: "demo".into(),
            working_dir: "/src/demo".into(),
            config_files: vec!["/src/demo/compose.yaml".into()],
            ..Default::default()
        };
        p.networks.insert(
            "default".into(),
            Network {
                name: "demo_default".into(),
                ..Default::default()
            },
        );
        p.volumes.insert(
            "data".into(),
            Volume {
                name: "demo_data".into(),
                ..Default::default()
            },
        );
        let mut web = Service {
            image: "multilayer:1".into(),
            ..Default::default()
        };
        web.ports.push(Port {
            mode: "ingress".into(),
            target: 8080,
            published: "18080".into(),
            protocol: "tcp".into(),
            ..Default::default()
        });
        web.volumes.push(VolumeMount {
            kind: "volume".into(),
            source: "data".into(),
            target: "/data".into(),
            volume: Some(VolumeOptions::default()),
            ..Default::default()
        });
        web.networks.insert("default".into(), None);
        web.depends_on.insert(
            "db".into(),
            Dependency {
                condition: "service_healthy".into(),
                restart: true,
                required: true,
            },
        );
        web.restart = "on-failure:3".into();
        web.stop_grace_period = Some("3s".into());
        p.services.insert("web".into(), web);
        p
    }

    #[test]
    fn names_and_labels_as_compose() {
        let p = project();
        let web = &p.services["web"];
        assert_eq!(container_name("demo", "web", web, 2), "demo-web-2");
        let inst = Instance {
            number: 2,
            name: "demo-web-2".into(),
            image_id: "sha256:abc".into(),
            publish: true,
            multi_endpoint: true,
            ..Default::default()
        };
        let l = container_labels(&p, "web", web, &inst).unwrap();
        assert_eq!(l[labels::PROJECT], "demo");
        assert_eq!(l[labels::SERVICE], "web");
        assert_eq!(l[labels::CONTAINER_NUMBER], "2");
        assert_eq!(l[labels::ONEOFF], "False");
        assert_eq!(l[labels::IMAGE], "sha256:abc");
        assert_eq!(l[labels::DEPENDS_ON], "db:service_healthy:true");
        assert_eq!(l[labels::WORKING_DIR], "/src/demo");
        assert_eq!(l[labels::CONFIG_FILES], "/src/demo/compose.yaml");
        assert_eq!(l[labels::CONFIG_HASH].len(), 64);
        let b = create_body(&p, "web", web, &inst).unwrap();
        assert_eq!(b["HostConfig"]["NetworkMode"], "demo_default");
        assert_eq!(
            b["NetworkingConfig"]["EndpointsConfig"]["demo_default"]["Aliases"],
            json!(["demo-web-2", "web"])
        );
        assert_eq!(
            b["HostConfig"]["PortBindings"]["8080/tcp"],
            json!([{"HostIp": "", "HostPort": "18080"}])
        );
        assert_eq!(b["HostConfig"]["Mounts"][0]["Source"], "demo_data");
        assert_eq!(
            b["HostConfig"]["RestartPolicy"],
            json!({"Name": "on-failure", "MaximumRetryCount": 3})
        );
        assert_eq!(b["StopTimeout"], 3);
        assert_eq!(b["ExposedPorts"], json!({"8080/tcp": {}}));
    }

    #[test]
    fn hash_ignores_scale_and_dependencies_but_not_config() {
        let p = project();
        let web = p.services["web"].clone();
        let h = service_hash("web", &web).unwrap();
        let mut scaled = web.clone();
        scaled.scale = Some(3);
        scaled.depends_on.clear();
        scaled.profiles = vec!["x".into()];
        assert_eq!(service_hash("web", &scaled).unwrap(), h);
        let mut changed = web.clone();
        changed.environment.insert("A".into(), Some("1".into()));
        assert_ne!(service_hash("web", &changed).unwrap(), h);
        assert_eq!(
            go_json_escape(r#"{"a":"x<y>&z"}"#),
            r#"{"a":"x\u003cy\u003e\u0026z"}"#
        );
    }

    #[test]
    fn recreated_containers_keep_anonymous_volumes() {
        let mut p = project();
        let web = p.services.get_mut("web").unwrap();
        web.volumes.push(VolumeMount {
            kind: "volume".into(),
            target: "/anon".into(),
            ..Default::default()
        });
        let web = p.services["web"].clone();
        let old = vec![
            (
                "volume".to_string(),
                "demo_data".to_string(),
                "/data".to_string(),
                true,
            ),
            ("volume".into(), "a1b2".into(), "/anon".into(), true),
            (
                "volume".into(),
                "c3d4".into(),
                "/image-volume".into(),
                false,
            ),
            ("bind".into(), String::new(), "/etc/x".into(), true),
        ];
        let keep = inherited_volumes(&web, &old);
        assert_eq!(
            keep,
            vec![
                ("a1b2".to_string(), "/anon".to_string(), false),
                ("c3d4".to_string(), "/image-volume".to_string(), true)
            ]
        );
        let inst = Instance {
            number: 1,
            name: "demo-web-1".into(),
            inherit: keep,
            ..Default::default()
        };
        let b = create_body(&p, "web", &web, &inst).unwrap();
        let mounts = b["HostConfig"]["Mounts"].as_array().unwrap();
        assert_eq!(mounts.len(), 3, "{mounts:?}");
        assert!(mounts.contains(&json!({"Type": "volume", "Source": "a1b2", "Target": "/anon"})));
    }

    /// The project of a `compose.yaml` with `yaml` as its text.
    fn project_of(yaml: &str) -> crate::model::Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), yaml).unwrap();
        let opts = crate::Options {
            cwd: dir.path().to_path_buf(),
            ..Default::default()
        };
        crate::load(&opts).unwrap().project
    }

    #[test]
    fn limits_and_tty_from_the_file() {
        let p = project_of(
            "services:\n  app:\n    image: busybox:1.35\n    mem_limit: 512m\n    cpus: \"0.5\"\n    pids_limit: 100\n    tty: true\n    stdin_open: true\n",
        );
        let app = &p.services["app"];
        assert_eq!(app.mem_limit.as_deref(), Some("536870912"));
        assert_eq!(
            (app.cpus, app.pids_limit, app.tty, app.stdin_open),
            (Some(0.5), Some(100), true, true)
        );
        let yaml = crate::render::render(&p, crate::render::Format::Yaml).unwrap();
        assert!(yaml.contains("    cpus: 0.5\n"), "{yaml}");
        assert!(yaml.contains("    mem_limit: \"536870912\"\n"), "{yaml}");
        assert!(yaml.contains("    tty: true\n"), "{yaml}");
        let inst = Instance {
            number: 1,
            name: "x-app-1".into(),
            ..Default::default()
        };
        let b = create_body(&p, "app", app, &inst).unwrap();
        assert_eq!(b["HostConfig"]["Memory"], 536870912);
        assert_eq!(b["HostConfig"]["NanoCpus"], 500000000);
        assert_eq!(b["HostConfig"]["PidsLimit"], 100);
        assert_eq!(
            (b["Tty"].as_bool(), b["OpenStdin"].as_bool()),
            (Some(true), Some(true))
        );
    }

    #[test]
    fn devices_oom_score_and_memory_reservation() {
        let p = project_of(
            "services:\n  app:\n    image: busybox:1.35\n    mem_reservation: 64m\n    oom_score_adj: 300\n    ulimits:\n      nofile: {soft: 10, hard: 20}\n      nproc: 65\n    devices:\n      - /dev/fuse\n      - /dev/net/tun:/dev/tun:r\n      - {source: /dev/zero, target: /dev/z}\n",
        );
        let app = &p.services["app"];
        let inst = Instance {
            number: 1,
            name: "x-app-1".into(),
            ..Default::default()
        };
        let b = create_body(&p, "app", app, &inst).unwrap();
        let h = &b["HostConfig"];
        assert_eq!(h["MemoryReservation"], 67108864);
        assert_eq!(h["OomScoreAdj"], 300);
        assert_eq!(
            h["Devices"],
            json!([
                {"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"},
                {"PathOnHost": "/dev/net/tun", "PathInContainer": "/dev/tun", "CgroupPermissions": "r"},
                {"PathOnHost": "/dev/zero", "PathInContainer": "/dev/z", "CgroupPermissions": "rwm"},
            ])
        );
        assert_eq!(
            h["Ulimits"],
            json!([{"Name": "nofile", "Soft": 10, "Hard": 20}, {"Name": "nproc", "Soft": 65, "Hard": 65}])
        );
        let yaml = crate::render::render(&p, crate::render::Format::Yaml).unwrap();
        assert!(yaml.contains("    oom_score_adj: 300\n"), "{yaml}");
        assert!(
            yaml.contains(
                "      - source: /dev/net/tun\n        target: /dev/tun\n        permissions: r\n"
            ),
            "{yaml}"
        );
    }

    #[test]
    fn resources_bodies_carry_compose_labels() {
        let p = project();
        let n = network_body(&p, "default").unwrap();
        assert_eq!(n["Name"], "demo_default");
        assert_eq!(n["Labels"][labels::NETWORK], "default");
        assert_eq!(n["Labels"][labels::PROJECT], "demo");
        let v = volume_body(&p, "data").unwrap();
        assert_eq!(v["Name"], "demo_data");
        assert_eq!(v["Labels"][labels::VOLUME], "data");
        assert_eq!(v["Driver"], "local");
    }

    fn load(yaml: &str, env: &[(&str, &str)]) -> (Project, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), yaml).unwrap();
        let opts = crate::Options {
            cwd: dir.path().to_path_buf(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        (crate::load(&opts).unwrap().project, dir)
    }

    #[test]
    fn secrets_and_configs_as_compose_mounts_them_without_swarm() {
        let (p, dir) = load(
            r#"
name: demo
services:
  app:
    image: busybox:1.35
    volumes: ["/srv:/run/secrets/shadowed"]
    secrets:
      - token
      - source: token
        target: renamed
      - source: shadowed
      - source: from_env
        uid: "1000"
        gid: "1001"
        mode: 0440
    configs:
      - conf
      - source: conf
        target: /etc/app.conf
      - source: inline
        target: inline.txt
        mode: "0600"
secrets:
  token: {file: ./token.txt}
  shadowed: {file: ./s.txt}
  from_env: {environment: TOKEN}
configs:
  conf: {file: ./app.conf}
  inline: {content: "x=$$1"}
"#,
            &[("TOKEN", "s3cret")],
        );
        let app = &p.services["app"];
        let d = dir.path().display();
        let inst = Instance {
            number: 1,
            name: "demo-app-1".into(),
            ..Default::default()
        };
        let b = create_body(&p, "app", app, &inst).unwrap();
        let mounts = b["HostConfig"]["Mounts"].as_array().unwrap();
        let ro = |src: String, target: &str| json!({"Type": "bind", "Source": src, "Target": target, "ReadOnly": true});
        assert_eq!(
            mounts,
            &vec![
                ro(format!("{d}/token.txt"), "/run/secrets/token"),
                ro(format!("{d}/token.txt"), "/run/secrets/renamed"),
                ro(format!("{d}/app.conf"), "/conf"),
                ro(format!("{d}/app.conf"), "/etc/app.conf"),
            ],
            "a volume at a secret's target wins; environment/content ones are not mounted"
        );
        let files = injected_files(&p, "app", app).unwrap();
        assert_eq!(
            files,
            vec![
                Injected {
                    path: "/run/secrets/from_env".into(),
                    content: b"s3cret".to_vec(),
                    uid: 1000,
                    gid: 1001,
                    mode: 0o440,
                    keep_owner: true,
                },
                Injected {
                    path: "/inline.txt".into(),
                    content: b"x=$1".to_vec(),
                    uid: 0,
                    gid: 0,
                    mode: 0o600,
                    keep_owner: false,
                },
            ]
        );
        // the variable unset: compose's error; a read-only service cannot be written into
        let mut unset = p.clone();
        unset.environment.clear();
        assert_eq!(
            injected_files(&unset, "app", app).unwrap_err().to_string(),
            r#"environment variable "TOKEN" required by file "demo_from_env" is not set"#
        );
        let mut ro_app = app.clone();
        ro_app.read_only = true;
        assert!(injected_files(&p, "app", &ro_app)
            .unwrap_err()
            .to_string()
            .contains("in read-only service app"));
        let mut ext = p.clone();
        ext.secrets.get_mut("token").unwrap().external = true;
        assert!(create_body(&ext, "app", app, &inst)
            .unwrap_err()
            .to_string()
            .starts_with("unsupported external secret"));
    }

    #[test]
    fn references_to_other_services_resolve_to_their_containers() {
        let (p, _dir) = load(
            r#"
services:
  db:
    image: busybox:1.35
  app:
    image: busybox:1.35
    network_mode: service:db
    ipc: service:db
    pid: service:db
    volumes_from: ["db:ro", "container:other:rw"]
  web:
    image: busybox:1.35
    links: ["db:database", "app"]
    depends_on:
      app: {condition: service_healthy}
"#,
            &[],
        );
        // the loader makes them dependencies, as compose-go's Normalize
        let app = &p.services["app"];
        assert_eq!(depends_on_label(app), "db:service_started:true");
        assert_eq!(
            depends_on_label(&p.services["web"]),
            "app:service_healthy:false,db:service_started:true"
        );
        assert_eq!(
            crate::plan::levels(&p, &["web".into()], false),
            vec![
                vec!["db".to_string()],
                vec!["app".to_string()],
                vec!["web".to_string()]
            ]
        );
        let yaml = crate::render::render(&p, crate::render::Format::Yaml).unwrap();
        assert!(
            yaml.contains("    links:\n      - db:database\n      - app\n"),
            "{yaml}"
        );
        assert!(
            yaml.contains("    volumes_from:\n      - db:ro\n"),
            "{yaml}"
        );
        let first = |s: &str| (s == "db").then(|| "d1".to_string());
        let r = resolve_references(app, &first).unwrap();
        assert_eq!(
            (r.network_mode.as_str(), r.ipc.as_str(), r.pid.as_str()),
            ("container:d1", "container:d1", "container:d1")
        );
        assert_eq!(r.volumes_from, vec!["d1", "other"]);
        let b = create_body(&p, "app", &r, &Instance::default()).unwrap();
        assert_eq!(b["HostConfig"]["NetworkMode"], "container:d1");
        assert_eq!(b["HostConfig"]["VolumesFrom"], json!(["d1", "other"]));
        assert!(b.get("NetworkingConfig").is_none());
        assert_eq!(
            resolve_references(app, &|_| None).unwrap_err(),
            "cannot share volume with service db: container missing"
        );
        let names = |s: &str| match s {
            "db" => vec!["p-db-1".to_string()],
            _ => vec!["p-app-1".to_string(), "p-app-2".to_string()],
        };
        assert_eq!(
            links("p", &p.services["web"], 2, &names),
            vec![
                "p-db-1:database",
                "p-db-1:db-2",
                "p-db-1:p-db-2",
                "p-app-1:app",
                "p-app-1:app-2",
                "p-app-1:p-app-2",
                "p-app-2:app",
                "p-app-2:app-2",
                "p-app-2:p-app-2",
            ]
        );
    }

    #[test]
    fn blkio_config_cgroup_parent_and_cpuset() {
        let p = project_of(
            "services:\n  app:\n    image: busybox:1.35\n    cgroup_parent: mine\n    cpuset: 0-1\n    blkio_config:\n      weight: 300\n      weight_device:\n        - {path: /dev/sda, weight: 400}\n      device_read_bps:\n        - {path: /dev/sda, rate: 1mb}\n      device_write_iops:\n        - {path: /dev/sda, rate: 30}\n",
        );
        let app = &p.services["app"];
        let inst = Instance {
            number: 1,
            name: "x-app-1".into(),
            ..Default::default()
        };
        let b = create_body(&p, "app", app, &inst).unwrap();
        let h = &b["HostConfig"];
        assert_eq!(h["CgroupParent"], "mine");
        assert_eq!(h["CpusetCpus"], "0-1");
        assert_eq!(h["BlkioWeight"], 300);
        assert_eq!(
            h["BlkioWeightDevice"],
            json!([{"Path": "/dev/sda", "Weight": 400}])
        );
        assert_eq!(
            h["BlkioDeviceReadBps"],
            json!([{"Path": "/dev/sda", "Rate": 1048576}])
        );
        assert_eq!(
            h["BlkioDeviceWriteIOps"],
            json!([{"Path": "/dev/sda", "Rate": 30}])
        );
    }
}
