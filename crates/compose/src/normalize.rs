//! From the merged document to the typed [`Project`]: short syntaxes to long ones (ports,
//! volumes, depends_on, environment, env_file, build), relative paths resolved against the
//! project directory, `~` expanded, durations in Go's form, the implicit `default` network,
//! and the references checked (networks, volumes, secrets, configs, depends_on).

use crate::merge::list_to_mapping;
use crate::model::*;
use crate::shorthand::{
    format_duration, long_port, long_volume, parse_duration, parse_port, parse_volume,
    resolve_path, shell_split,
};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// A normalisation or validation failure.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NormalizeError {
    /// A key the specification does not define (`x-` keys are allowed).
    #[error("validating {file}: {path} additional properties '{key}' not allowed")]
    UnknownKey {
        file: String,
        path: String,
        key: String,
    },
    /// A value of the wrong type.
    #[error("validating {file}: {path} must be a {expected}")]
    Type {
        file: String,
        path: String,
        expected: &'static str,
    },
    /// A service joins a network not declared at the top level.
    #[error("service {service:?} refers to undefined network {name}: invalid compose project")]
    UndefinedNetwork { service: String, name: String },
    /// A named volume not declared at the top level.
    #[error("service {service:?} refers to undefined volume {name}: invalid compose project")]
    UndefinedVolume { service: String, name: String },
    /// A secret not declared at the top level.
    #[error("service {service:?} refers to undefined secret {name}: invalid compose project")]
    UndefinedSecret { service: String, name: String },
    /// A config not declared at the top level.
    #[error("service {service:?} refers to undefined config {name}: invalid compose project")]
    UndefinedConfig { service: String, name: String },
    /// A `depends_on` naming no service.
    #[error("service {service:?} depends on undefined service {name:?}: invalid compose project")]
    UndefinedService { service: String, name: String },
    /// A required dependency left out by profiles.
    #[error("service {name:?} is required by {service:?} but is disabled. Can be enabled by profiles [{profiles}]")]
    DisabledDependency {
        service: String,
        name: String,
        profiles: String,
    },
    /// `depends_on` forms a cycle (`a -> b -> a`, searched in name order).
    #[error("dependency cycle detected: {0}")]
    Cycle(String),
    /// A port that does not parse.
    #[error("services.{service}.ports: invalid port {spec:?}: {reason}")]
    Port {
        service: String,
        spec: String,
        reason: String,
    },
    /// A volume that does not parse.
    #[error("services.{service}.volumes: invalid spec: {spec}: {reason}")]
    Volume {
        service: String,
        spec: String,
        reason: String,
    },
    /// A size (`mem_limit`) or number (`cpus`) that does not parse.
    #[error("services.{service}.{key}: invalid size: '{value}'")]
    Size {
        service: String,
        key: String,
        value: String,
    },
    /// A duration that does not parse.
    #[error("services.{service}.{key}: invalid duration {value:?}")]
    Duration {
        service: String,
        key: String,
        value: String,
    },
    /// A required env_file that does not exist.
    #[error("env file {0} not found: stat {0}: no such file or directory")]
    EnvFileMissing(String),
    /// An env_file that does not parse.
    #[error("failed to read {file}: {reason}")]
    EnvFile { file: String, reason: String },
    /// A service with neither image nor build.
    #[error(
        "service {0:?} has neither an image nor a build context specified: invalid compose project"
    )]
    NoImage(String),
}

const TOP_KEYS: &[&str] = &[
    "version", "name", "include", "services", "networks", "volumes", "secrets", "configs", "models",
];
/// Service keys of the specification (05-services.md).
pub const SERVICE_KEYS: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "build",
    "cap_add",
    "cap_drop",
    "cgroup",
    "cgroup_parent",
    "command",
    "configs",
    "container_name",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpus",
    "cpuset",
    "credential_spec",
    "depends_on",
    "deploy",
    "develop",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "driver_opts",
    "entrypoint",
    "env_file",
    "environment",
    "expose",
    "extends",
    "external_links",
    "extra_hosts",
    "gpus",
    "group_add",
    "healthcheck",
    "hostname",
    "image",
    "init",
    "ipc",
    "isolation",
    "label_file",
    "labels",
    "links",
    "logging",
    "mac_address",
    "mem_limit",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "models",
    "network_mode",
    "networks",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "ports",
    "post_start",
    "pre_stop",
    "privileged",
    "profiles",
    "provider",
    "pull_policy",
    "read_only",
    "restart",
    "runtime",
    "scale",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "storage_opt",
    "sysctls",
    "tmpfs",
    "tty",
    "ulimits",
    "use_api_socket",
    "user",
    "userns_mode",
    "uts",
    "volumes",
    "volumes_from",
    "working_dir",
];

/// Check top-level and service keys against the specification.
pub fn validate_keys(doc: &Value, file: &str) -> Result<(), NormalizeError> {
    let unknown = |path: &str, key: &str| NormalizeError::UnknownKey {
        file: file.into(),
        path: path.into(),
        key: key.into(),
    };
    let Some(top) = doc.as_object() else {
        return Ok(());
    };
    for k in top.keys() {
        if !k.starts_with("x-") && !TOP_KEYS.contains(&k.as_str()) {
            return Err(unknown("(root)", k));
        }
    }
    if let Some(services) = top.get("services") {
        let Some(services) = services.as_object() else {
            return Err(NormalizeError::Type {
                file: file.into(),
                path: "services".into(),
                expected: "mapping",
            });
        };
        for (name, svc) in services {
            let Some(svc) = svc.as_object() else {
                return Err(NormalizeError::Type {
                    file: file.into(),
                    path: format!("services.{name}"),
                    expected: "mapping",
                });
            };
            for (k, v) in svc {
                if !k.starts_with("x-") && !SERVICE_KEYS.contains(&k.as_str()) {
                    return Err(unknown(&format!("services.{name}"), k));
                }
                if let Some(expected) = wrong_type(k, v) {
                    return Err(NormalizeError::Type {
                        file: file.into(),
                        path: format!("services.{name}.{k}"),
                        expected,
                    });
                }
            }
        }
    }
    Ok(())
}

/// A size key (`mem_limit`, `mem_reservation`: `512m`, or a number of bytes) as the decimal
/// byte count compose-go's `UnitBytes` marshals; `None` when absent.
fn bytes_text(
    v: Option<&Value>,
    service: &str,
    key: &str,
) -> Result<Option<String>, NormalizeError> {
    Ok(match v {
        None => None,
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(v) => Some(
            barge_stdx::units::ram_in_bytes(&text(v))
                .map_err(|_| NormalizeError::Size {
                    service: service.into(),
                    key: key.into(),
                    value: text(v),
                })?
                .to_string(),
        ),
    })
}

/// `devices:` in either syntax: `HOST[:CONTAINER[:PERMISSIONS]]` strings or
/// `{source, target, permissions}` mappings (the container path defaults to the host's, the
/// permissions to `rwm`, as compose-go's `ParseDeviceMapping`).
fn devices(v: Option<&Value>) -> Vec<crate::model::DeviceMapping> {
    let Some(Value::Array(items)) = v else {
        return Vec::new();
    };
    let is_mode = |m: &str| !m.is_empty() && m.chars().all(|c| "rwm".contains(c));
    items
        .iter()
        .filter_map(|item| {
            let (source, target, permissions) = match item {
                Value::Object(o) => {
                    let f = |k: &str| o.get(k).map(text).unwrap_or_default();
                    (f("source"), f("target"), f("permissions"))
                }
                other => {
                    let t = text(other);
                    let p: Vec<&str> = t.split(':').collect();
                    match p.as_slice() {
                        [s] => (s.to_string(), String::new(), String::new()),
                        [s, m] if is_mode(m) => (s.to_string(), String::new(), m.to_string()),
                        [s, d] => (s.to_string(), d.to_string(), String::new()),
                        [s, d, m, ..] => (s.to_string(), d.to_string(), m.to_string()),
                        [] => return None,
                    }
                }
            };
            (!source.is_empty()).then(|| crate::model::DeviceMapping {
                target: if target.is_empty() {
                    source.clone()
                } else {
                    target
                },
                permissions: if permissions.is_empty() {
                    "rwm".into()
                } else {
                    permissions
                },
                source,
            })
        })
        .collect()
}

/// The expected shape of service key `k` when `v` does not have it (null is always accepted;
/// scalars may be strings, numbers or booleans since casting follows interpolation).
fn wrong_type(k: &str, v: &Value) -> Option<&'static str> {
    const LIST: &[&str] = &[
        "cap_add",
        "cap_drop",
        "configs",
        "devices",
        "device_cgroup_rules",
        "dns_opt",
        "expose",
        "external_links",
        "group_add",
        "links",
        "ports",
        "profiles",
        "secrets",
        "security_opt",
        "volumes",
        "volumes_from",
    ];
    const LIST_OR_MAP: &[&str] = &[
        "annotations",
        "depends_on",
        "environment",
        "extra_hosts",
        "labels",
        "networks",
        "sysctls",
    ];
    const STRING_OR_LIST: &[&str] = &[
        "command",
        "dns",
        "dns_search",
        "entrypoint",
        "env_file",
        "tmpfs",
    ];
    const STRING_OR_MAP: &[&str] = &["build", "extends"];
    const MAP: &[&str] = &[
        "blkio_config",
        "credential_spec",
        "deploy",
        "develop",
        "healthcheck",
        "logging",
        "ulimits",
    ];
    const SCALAR: &[&str] = &[
        "container_name",
        "cpus",
        "domainname",
        "hostname",
        "image",
        "init",
        "ipc",
        "mem_limit",
        "network_mode",
        "pid",
        "platform",
        "privileged",
        "pull_policy",
        "read_only",
        "restart",
        "scale",
        "shm_size",
        "stdin_open",
        "stop_grace_period",
        "stop_signal",
        "tty",
        "user",
        "working_dir",
    ];
    let scalar = !matches!(v, Value::Array(_) | Value::Object(_));
    let (ok, expected) = if v.is_null() {
        (true, "")
    } else if LIST.contains(&k) {
        (v.is_array(), "list")
    } else if LIST_OR_MAP.contains(&k) {
        (!scalar, "list or mapping")
    } else if STRING_OR_LIST.contains(&k) {
        (!v.is_object(), "string or list")
    } else if STRING_OR_MAP.contains(&k) {
        (!v.is_array(), "string or mapping")
    } else if MAP.contains(&k) {
        (v.is_object(), "mapping")
    } else if SCALAR.contains(&k) {
        (scalar, "string")
    } else {
        (true, "")
    };
    (!ok).then_some(expected)
}

/// Secret/config mounts in long syntax (`- name` becomes `- source: name`).
fn mounts(v: Option<&Value>) -> Vec<Value> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|m| match m {
                    Value::Object(_) => m.clone(),
                    other => Value::Object(Map::from_iter([(
                        "source".to_string(),
                        Value::String(text(other)),
                    )])),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a.iter().map(text).collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![text(other)],
    }
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    match v.map(list_to_mapping) {
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        _ => BTreeMap::new(),
    }
}

fn opt_map(v: Option<&Value>) -> BTreeMap<String, Option<String>> {
    match v.map(list_to_mapping) {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), (!v.is_null()).then(|| text(v))))
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn as_bool(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "yes" | "1" | "y" | "on"
        ),
        _ => false,
    }
}

fn command(v: Option<&Value>) -> Option<Vec<String>> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(shell_split(s)),
        Some(other) => Some(strings(Some(other))),
    }
}

/// What normalisation needs besides the document.
pub struct Context<'a> {
    /// Project name (already validated).
    pub project: &'a str,
    /// Project directory (absolute).
    pub dir: &'a Path,
    /// The environment after `.env` (OS values win), for `HOME`, env_file expansion and
    /// value-less `environment` entries.
    pub env: &'a BTreeMap<String, String>,
}

fn duration(v: Option<&Value>, service: &str, key: &str) -> Result<Option<String>, NormalizeError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let s = text(v);
            parse_duration(&s)
                .map(|ns| Some(format_duration(ns)))
                .ok_or_else(|| NormalizeError::Duration {
                    service: service.into(),
                    key: key.into(),
                    value: s,
                })
        }
    }
}

/// Normalise one service (`name`, its merged mapping).
pub fn service(
    name: &str,
    raw: &Map<String, Value>,
    cx: &Context,
) -> Result<Service, NormalizeError> {
    let home = cx.env.get("HOME").map(String::as_str);
    let get = |k: &str| raw.get(k).filter(|v| !v.is_null());
    let s_ = |k: &str| get(k).map(text).unwrap_or_default();
    let mut svc = Service {
        profiles: strings(get("profiles")),
        annotations: string_map(get("annotations")),
        develop: get("develop").cloned(),
        cap_add: strings(get("cap_add")),
        cap_drop: strings(get("cap_drop")),
        command: command(raw.get("command")),
        configs: mounts(get("configs")),
        container_name: s_("container_name"),
        cpus: match get("cpus") {
            None => None,
            Some(v) => Some(text(v).parse::<f64>().map_err(|_| NormalizeError::Size {
                service: name.into(),
                key: "cpus".into(),
                value: text(v),
            })?),
        },
        deploy: get("deploy").cloned(),
        dns: strings(get("dns")),
        dns_search: strings(get("dns_search")),
        domainname: s_("domainname"),
        entrypoint: command(raw.get("entrypoint")),
        expose: strings(get("expose")),
        extra_hosts: match get("extra_hosts") {
            Some(Value::Object(m)) => m.iter().map(|(k, v)| format!("{k}={}", text(v))).collect(),
            other => strings(other),
        },
        hostname: s_("hostname"),
        image: s_("image"),
        init: get("init").map(|v| as_bool(Some(v))),
        ipc: s_("ipc"),
        labels: string_map(get("labels")),
        links: strings(get("links")),
        logging: get("logging").cloned(),
        mem_limit: bytes_text(get("mem_limit"), name, "mem_limit")?,
        mem_reservation: bytes_text(get("mem_reservation"), name, "mem_reservation")?,
        devices: devices(get("devices")),
        oom_score_adj: get("oom_score_adj").and_then(|v| text(v).parse().ok()),
        blkio_config: get("blkio_config").cloned(),
        cgroup_parent: s_("cgroup_parent"),
        cpuset: s_("cpuset"),
        network_mode: s_("network_mode"),
        pid: s_("pid"),
        pids_limit: get("pids_limit").and_then(|v| text(v).parse().ok()),
        platform: s_("platform"),
        privileged: as_bool(get("privileged")),
        pull_policy: s_("pull_policy"),
        read_only: as_bool(get("read_only")),
        stdin_open: as_bool(get("stdin_open")),
        tty: as_bool(get("tty")),
        restart: s_("restart"),
        scale: get("scale").and_then(|v| text(v).parse().ok()),
        secrets: mounts(get("secrets")),
        security_opt: strings(get("security_opt")),
        shm_size: get("shm_size").cloned(),
        stop_grace_period: duration(get("stop_grace_period"), name, "stop_grace_period")?,
        stop_signal: s_("stop_signal"),
        sysctls: string_map(get("sysctls")),
        tmpfs: strings(get("tmpfs")),
        ulimits: get("ulimits").cloned(),
        user: s_("user"),
        volumes_from: strings(get("volumes_from")),
        working_dir: s_("working_dir"),
        ..Default::default()
    };
    if let Some(b) = get("build") {
        let m = match b {
            Value::String(s) => Map::from_iter([("context".to_string(), Value::String(s.clone()))]),
            Value::Object(m) => m.clone(),
            _ => {
                return Err(NormalizeError::Type {
                    file: String::new(),
                    path: format!("services.{name}.build"),
                    expected: "string or mapping",
                })
            }
        };
        let ctx = m.get("context").map(text).unwrap_or_else(|| ".".into());
        let context = if ctx.contains("://") || ctx.starts_with("git@") {
            ctx
        } else {
            resolve_path(cx.dir, &ctx, home)
        };
        let inline = m.get("dockerfile_inline").map(text).unwrap_or_default();
        svc.build = Some(Build {
            context,
            dockerfile: m.get("dockerfile").map(text).unwrap_or_else(|| {
                if inline.is_empty() {
                    "Dockerfile".into()
                } else {
                    String::new()
                }
            }),
            dockerfile_inline: inline,
            args: opt_map(m.get("args")),
            labels: string_map(m.get("labels")),
            cache_from: strings(m.get("cache_from")),
            target: m.get("target").map(text).unwrap_or_default(),
        });
    }
    if svc.image.is_empty() && svc.build.is_none() {
        return Err(NormalizeError::NoImage(name.into()));
    }
    // depends_on
    match get("depends_on") {
        Some(Value::Array(a)) => {
            for d in a {
                svc.depends_on.insert(
                    text(d),
                    Dependency {
                        condition: "service_started".into(),
                        restart: false,
                        required: true,
                    },
                );
            }
        }
        Some(Value::Object(m)) => {
            for (d, o) in m {
                let cond = o
                    .get("condition")
                    .map(text)
                    .unwrap_or_else(|| "service_started".into());
                let required = o.get("required").map(|v| as_bool(Some(v))).unwrap_or(true);
                svc.depends_on.insert(
                    d.clone(),
                    Dependency {
                        condition: cond,
                        restart: as_bool(o.get("restart")),
                        required,
                    },
                );
            }
        }
        _ => {}
    }
    implicit_dependencies(&mut svc, &[s_("uts"), s_("cgroup")]);
    // env_file then environment (environment wins)
    let env_files: Vec<EnvFile> = match get("env_file") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|e| match e {
                Value::Object(m) => EnvFile {
                    path: resolve_path(cx.dir, &m.get("path").map(text).unwrap_or_default(), home),
                    required: m.get("required").map(|v| as_bool(Some(v))).unwrap_or(true),
                },
                other => EnvFile {
                    path: resolve_path(cx.dir, &text(other), home),
                    required: true,
                },
            })
            .collect(),
        Some(other) => vec![EnvFile {
            path: resolve_path(cx.dir, &text(other), home),
            required: true,
        }],
    };
    let mut environment: BTreeMap<String, Option<String>> = BTreeMap::new();
    for f in &env_files {
        let content = match std::fs::read_to_string(&f.path) {
            Ok(c) => c,
            Err(_) if !f.required => continue,
            Err(_) => return Err(NormalizeError::EnvFileMissing(f.path.clone())),
        };
        let pairs = crate::dotenv::parse(&content, &|k| cx.env.get(k).cloned()).map_err(|e| {
            NormalizeError::EnvFile {
                file: f.path.clone(),
                reason: e.to_string(),
            }
        })?;
        for (k, v) in pairs {
            environment.insert(k, Some(v));
        }
    }
    for (k, v) in opt_map(get("environment")) {
        let v = v.or_else(|| cx.env.get(&k).cloned());
        environment.insert(k, v);
    }
    svc.environment = environment;
    svc.env_file = env_files;
    // healthcheck
    if let Some(Value::Object(h)) = get("healthcheck") {
        let test = match h.get("test") {
            Some(Value::String(s)) => vec!["CMD-SHELL".to_string(), s.clone()],
            other => strings(other),
        };
        let disable = as_bool(h.get("disable")) || test.first().map(String::as_str) == Some("NONE");
        svc.healthcheck = Some(Healthcheck {
            test,
            timeout: duration(h.get("timeout"), name, "healthcheck.timeout")?,
            interval: duration(h.get("interval"), name, "healthcheck.interval")?,
            retries: h.get("retries").and_then(|v| text(v).parse().ok()),
            start_period: duration(h.get("start_period"), name, "healthcheck.start_period")?,
            start_interval: duration(h.get("start_interval"), name, "healthcheck.start_interval")?,
            disable,
        });
    }
    // ports
    for p in get("ports").and_then(Value::as_array).into_iter().flatten() {
        let perr = |reason: String| NormalizeError::Port {
            service: name.into(),
            spec: text(p),
            reason,
        };
        match p {
            Value::Object(m) => svc.ports.push(long_port(m).map_err(perr)?),
            other => svc.ports.extend(parse_port(&text(other)).map_err(perr)?),
        }
    }
    // volumes
    for v in get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match v {
            Value::Object(m) => svc.volumes.push(long_volume(m, cx.dir, home)),
            other => {
                let spec = text(other);
                let vol =
                    parse_volume(&spec, cx.dir, home).map_err(|reason| NormalizeError::Volume {
                        service: name.into(),
                        spec: spec.clone(),
                        reason,
                    })?;
                svc.volumes.push(vol);
            }
        }
    }
    // networks
    match get("networks") {
        Some(Value::Array(a)) => {
            for n in a {
                svc.networks.insert(text(n), None);
            }
        }
        Some(Value::Object(m)) => {
            for (n, o) in m {
                let opts = o.as_object().map(|o| ServiceNetwork {
                    aliases: strings(o.get("aliases")),
                    ipv4_address: o.get("ipv4_address").map(text).unwrap_or_default(),
                    ipv6_address: o.get("ipv6_address").map(text).unwrap_or_default(),
                    priority: o.get("priority").and_then(|v| text(v).parse().ok()),
                });
                svc.networks.insert(n.clone(), opts);
            }
        }
        _ => {}
    }
    if svc.networks.is_empty() && svc.network_mode.is_empty() {
        svc.networks.insert("default".into(), None);
    }
    Ok(svc)
}

fn network(key: &str, raw: Option<&Value>, project: &str) -> Network {
    let m = raw.and_then(Value::as_object).cloned().unwrap_or_default();
    let external = as_bool(m.get("external"));
    let name = m.get("name").map(text).unwrap_or_else(|| {
        if external {
            key.to_string()
        } else {
            format!("{project}_{key}")
        }
    });
    Network {
        name,
        driver: m.get("driver").map(text).unwrap_or_default(),
        driver_opts: string_map(m.get("driver_opts")),
        ipam: m.get("ipam").cloned(),
        external,
        internal: as_bool(m.get("internal")),
        attachable: as_bool(m.get("attachable")),
        enable_ipv6: m.get("enable_ipv6").map(|v| as_bool(Some(v))),
        labels: string_map(m.get("labels")),
    }
}

fn file_object(key: &str, raw: Option<&Value>, cx: &Context) -> FileObject {
    let m = raw.and_then(Value::as_object).cloned().unwrap_or_default();
    let external = as_bool(m.get("external"));
    let home = cx.env.get("HOME").map(String::as_str);
    FileObject {
        name: m.get("name").map(text).unwrap_or_else(|| {
            if external {
                key.to_string()
            } else {
                format!("{}_{key}", cx.project)
            }
        }),
        file: m
            .get("file")
            .map(|f| resolve_path(cx.dir, &text(f), home))
            .unwrap_or_default(),
        environment: m.get("environment").map(text).unwrap_or_default(),
        content: m.get("content").map(text).unwrap_or_default(),
        external,
    }
}

/// compose-go's `Normalize`: links, `service:NAME` namespaces (network_mode, ipc, pid, and
/// `others` — uts, cgroup) and `volumes_from` of a service are dependencies
/// (`service_started`, required; `restart: true` except for `volumes_from`) unless
/// `depends_on` already names them.
fn implicit_dependencies(svc: &mut Service, others: &[String]) {
    let dep = |restart| Dependency {
        condition: "service_started".into(),
        restart,
        required: true,
    };
    let mut implied: Vec<(String, bool)> = Vec::new();
    for link in &svc.links {
        let parts: Vec<&str> = link.split(':').collect();
        let name = if parts.len() == 2 {
            parts[0]
        } else {
            link.as_str()
        };
        implied.push((name.to_string(), true));
    }
    let namespaces = [&svc.network_mode, &svc.ipc, &svc.pid]
        .into_iter()
        .chain(others.iter());
    for ns in namespaces {
        if let Some(name) = ns.strip_prefix("service:") {
            implied.push((name.to_string(), true));
        }
    }
    for v in &svc.volumes_from {
        if !v.starts_with("container:") {
            let name = v.split(':').next().unwrap_or_default();
            implied.push((name.to_string(), false));
        }
    }
    for (name, restart) in implied {
        svc.depends_on.entry(name).or_insert_with(|| dep(restart));
    }
}

/// compose-go's `graph.CheckCycle`: depth-first from each service in name order.
fn check_cycle(p: &Project) -> Result<(), NormalizeError> {
    fn search(p: &Project, path: &mut Vec<String>) -> Result<(), NormalizeError> {
        let last = path.last().cloned().unwrap_or_default();
        let Some(svc) = p.services.get(&last) else {
            return Ok(());
        };
        for child in svc.depends_on.keys() {
            if let Some(i) = path.iter().position(|x| x == child) {
                return Err(NormalizeError::Cycle(format!(
                    "{} -> {child}",
                    path[i..].join(" -> ")
                )));
            }
            path.push(child.clone());
            search(p, path)?;
            path.pop();
        }
        Ok(())
    }
    for name in p.services.keys() {
        search(p, &mut vec![name.clone()])?;
    }
    Ok(())
}

fn mount_source(v: &Value) -> String {
    match v {
        Value::Object(m) => m.get("source").map(text).unwrap_or_default(),
        other => text(other),
    }
}

/// Build the project from the merged document's enabled and disabled services.
pub fn project(
    doc: &Value,
    enabled: &Map<String, Value>,
    disabled: &Map<String, Value>,
    cx: &Context,
) -> Result<Project, NormalizeError> {
    let top = |k: &str| {
        doc.get(k)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (nets, vols, secrets, configs) = (
        top("networks"),
        top("volumes"),
        top("secrets"),
        top("configs"),
    );
    let mut p = Project {
        name: cx.project.to_string(),
        working_dir: cx.dir.display().to_string(),
        ..Default::default()
    };
    for (name, raw) in enabled {
        let svc = service(name, raw.as_object().unwrap_or(&Map::new()), cx)?;
        for n in svc.networks.keys() {
            if n != "default" && !nets.contains_key(n) {
                return Err(NormalizeError::UndefinedNetwork {
                    service: name.clone(),
                    name: n.clone(),
                });
            }
        }
        for v in &svc.volumes {
            if v.kind == "volume" && !v.source.is_empty() && !vols.contains_key(&v.source) {
                return Err(NormalizeError::UndefinedVolume {
                    service: name.clone(),
                    name: v.source.clone(),
                });
            }
        }
        for s in &svc.secrets {
            let n = mount_source(s);
            if !secrets.contains_key(&n) {
                return Err(NormalizeError::UndefinedSecret {
                    service: name.clone(),
                    name: n,
                });
            }
        }
        for c in &svc.configs {
            let n = mount_source(c);
            if !configs.contains_key(&n) {
                return Err(NormalizeError::UndefinedConfig {
                    service: name.clone(),
                    name: n,
                });
            }
        }
        let mut svc = svc;
        for (d, dep) in &svc.depends_on {
            if enabled.contains_key(d) {
                continue;
            }
            if !dep.required {
                continue;
            }
            if let Some(off) = disabled.get(d) {
                let profiles: Vec<String> = strings(off.get("profiles"));
                return Err(NormalizeError::DisabledDependency {
                    service: name.clone(),
                    name: d.clone(),
                    profiles: profiles.join(" "),
                });
            }
            return Err(NormalizeError::UndefinedService {
                service: name.clone(),
                name: d.clone(),
            });
        }
        // an optional dependency that is not there is dropped, as compose-go's graph does
        svc.depends_on.retain(|d, _| enabled.contains_key(d));
        p.services.insert(name.clone(), svc);
    }
    check_cycle(&p)?;
    for (name, raw) in disabled {
        if let Ok(svc) = service(name, raw.as_object().unwrap_or(&Map::new()), cx) {
            p.disabled_services.insert(name.clone(), svc);
        }
    }
    let uses_default = p
        .services
        .values()
        .any(|s| s.networks.contains_key("default"));
    for (k, v) in &nets {
        p.networks
            .insert(k.clone(), network(k, Some(v), cx.project));
    }
    if uses_default && !p.networks.contains_key("default") {
        p.networks
            .insert("default".into(), network("default", None, cx.project));
    }
    for (k, v) in &vols {
        let m = v.as_object().cloned().unwrap_or_default();
        let external = as_bool(m.get("external"));
        p.volumes.insert(
            k.clone(),
            Volume {
                name: m.get("name").map(text).unwrap_or_else(|| {
                    if external {
                        k.clone()
                    } else {
                        format!("{}_{k}", cx.project)
                    }
                }),
                driver: m.get("driver").map(text).unwrap_or_default(),
                driver_opts: string_map(m.get("driver_opts")),
                external,
                labels: string_map(m.get("labels")),
            },
        );
    }
    for (k, v) in &secrets {
        p.secrets.insert(k.clone(), file_object(k, Some(v), cx));
    }
    for (k, v) in &configs {
        p.configs.insert(k.clone(), file_object(k, Some(v), cx));
    }
    Ok(p)
}
