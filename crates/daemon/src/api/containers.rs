//! `/containers/...`: create, list, inspect, start, stop, kill, restart, wait, attach, resize,
//! logs, top, remove, prune.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use barge_container::mounts::{BindOptions, MountSpec, MountType, TmpfsOptions, VolumeOptions};
use barge_container::{
    Container, ContainerEvent, CreateOptions, HostOptions, Status, WaitCondition,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{human_duration, Query};
use crate::state::AppState;
use crate::stream::{
    channel_response, frame, hijack_with, StreamSel, MUX_STREAM, RAW_STREAM, STDERR, STDOUT,
};
use crate::{asyncify, ApiError};

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The parts of Docker's `ContainerCreateBody` barge reads (unknown fields are ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateBody {
    hostname: Option<String>,
    domainname: Option<String>,
    user: Option<String>,
    tty: Option<bool>,
    mac_address: Option<String>,
    open_stdin: Option<bool>,
    stdin_once: Option<bool>,
    env: Option<Vec<String>>,
    cmd: Option<StringOrVec>,
    image: Option<String>,
    working_dir: Option<String>,
    entrypoint: Option<StringOrVec>,
    labels: Option<BTreeMap<String, String>>,
    stop_signal: Option<String>,
    stop_timeout: Option<i64>,
    /// `{"/path": {}}`: anonymous volumes.
    volumes: Option<BTreeMap<String, Value>>,
    healthcheck: Option<barge_image::HealthConfig>,
    exposed_ports: Option<BTreeMap<String, Value>>,
    host_config: Option<HostConfigBody>,
    networking_config: Option<super::networks::NetworkingConfigBody>,
}

/// Docker accepts `Cmd`/`Entrypoint` as a string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum StringOrVec {
    One(String),
    Many(Vec<String>),
}

impl StringOrVec {
    fn into_vec(self) -> Vec<String> {
        match self {
            StringOrVec::One(s) if s.is_empty() => Vec::new(),
            StringOrVec::One(s) => vec![s],
            StringOrVec::Many(v) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct HostConfigBody {
    network_mode: Option<String>,
    init: Option<bool>,
    memory: Option<i64>,
    memory_swap: Option<i64>,
    nano_cpus: Option<i64>,
    cpu_shares: Option<i64>,
    cpu_quota: Option<i64>,
    cpu_period: Option<i64>,
    pids_limit: Option<i64>,
    readonly_rootfs: Option<bool>,
    cap_add: Option<Vec<String>>,
    cap_drop: Option<Vec<String>>,
    privileged: Option<bool>,
    security_opt: Option<Vec<String>>,
    auto_remove: Option<bool>,
    log_config: Option<LogConfigBody>,
    runtime: Option<String>,
    restart_policy: Option<RestartPolicyBody>,
    oom_kill_disable: Option<bool>,
    shm_size: Option<i64>,
    binds: Option<Vec<String>>,
    mounts: Option<Vec<MountBody>>,
    tmpfs: Option<BTreeMap<String, String>>,
    volumes_from: Option<Vec<String>>,
    port_bindings: Option<BTreeMap<String, Option<Vec<super::networks::PortBindingBody>>>>,
    publish_all_ports: Option<bool>,
    console_size: Option<Vec<u16>>,
    extra_hosts: Option<Vec<String>>,
    dns: Option<Vec<String>>,
    dns_search: Option<Vec<String>>,
    dns_options: Option<Vec<String>>,
    cgroupns_mode: Option<String>,
    device_cgroup_rules: Option<Vec<String>>,
    pid_mode: Option<String>,
    #[serde(rename = "UTSMode")]
    uts_mode: Option<String>,
    isolation: Option<String>,
    group_add: Option<Vec<String>>,
    cpuset_cpus: Option<String>,
    memory_swappiness: Option<i64>,
    volume_driver: Option<String>,
    links: Option<Vec<String>>,
}

/// Docker's `Mount` (an entry of `HostConfig.Mounts`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct MountBody {
    #[serde(rename = "Type")]
    typ: Option<String>,
    source: Option<String>,
    target: Option<String>,
    read_only: Option<bool>,
    consistency: Option<String>,
    bind_options: Option<BindOptionsBody>,
    volume_options: Option<VolumeOptionsBody>,
    tmpfs_options: Option<TmpfsOptionsBody>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct BindOptionsBody {
    propagation: Option<String>,
    non_recursive: Option<bool>,
    create_mountpoint: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct VolumeOptionsBody {
    no_copy: Option<bool>,
    labels: Option<BTreeMap<String, String>>,
    driver_config: Option<DriverConfigBody>,
    subpath: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DriverConfigBody {
    name: Option<String>,
    options: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct TmpfsOptionsBody {
    size_bytes: Option<i64>,
    mode: Option<u32>,
}

impl MountBody {
    fn into_spec(self) -> Result<MountSpec, ApiError> {
        let typ = self.typ.unwrap_or_default();
        let kind = MountType::parse(&typ).ok_or_else(|| {
            ApiError::bad_request(format!("invalid mount config: mount type unknown: {typ:?}"))
        })?;
        Ok(MountSpec {
            kind,
            source: self.source.unwrap_or_default(),
            target: self.target.unwrap_or_default(),
            read_only: self.read_only.unwrap_or(false),
            consistency: self.consistency.unwrap_or_default(),
            bind_options: self.bind_options.map(|b| BindOptions {
                propagation: b.propagation.unwrap_or_default(),
                non_recursive: b.non_recursive.unwrap_or(false),
                create_mountpoint: b.create_mountpoint.unwrap_or(false),
            }),
            volume_options: self.volume_options.map(|v| {
                let dc = v.driver_config.unwrap_or_default();
                VolumeOptions {
                    no_copy: v.no_copy.unwrap_or(false),
                    labels: v.labels.unwrap_or_default(),
                    driver: dc.name.unwrap_or_default(),
                    driver_options: dc.options.unwrap_or_default(),
                    subpath: v.subpath.unwrap_or_default(),
                }
            }),
            tmpfs_options: self.tmpfs_options.map(|t| TmpfsOptions {
                size_bytes: t.size_bytes.unwrap_or(0),
                mode: t.mode.unwrap_or(0),
            }),
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct LogConfigBody {
    #[serde(rename = "Type")]
    typ: Option<String>,
    config: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RestartPolicyBody {
    name: Option<String>,
    maximum_retry_count: Option<i64>,
}

impl CreateBody {
    /// Converts the wire body into the engine's options.
    pub fn into_options(
        self,
        name: Option<String>,
        platform: Option<String>,
    ) -> Result<CreateOptions, ApiError> {
        let image = self
            .image
            .filter(|i| !i.is_empty())
            .ok_or_else(|| ApiError::bad_request("config is missing the Image field"))?;
        let hc = self.host_config.unwrap_or_default();
        let mut nano_cpus = hc.nano_cpus.unwrap_or(0);
        let from_quota = super::lifecycle::nano_cpus_of_quota(hc.cpu_quota, hc.cpu_period)?;
        if nano_cpus == 0 {
            nano_cpus = from_quota.unwrap_or(0);
        }
        if nano_cpus < 0 {
            return Err(ApiError::bad_request(format!(
                "invalid NanoCpus {nano_cpus}: must be positive"
            )));
        }
        if hc.memory.unwrap_or(0) < 0 {
            return Err(ApiError::bad_request(format!(
                "invalid Memory {}: must be positive",
                hc.memory.unwrap_or(0)
            )));
        }
        if let Some(m) = hc.memory {
            if m > 0 && m < 6 * 1024 * 1024 {
                return Err(ApiError::bad_request("Minimum memory limit allowed is 6MB"));
            }
        }
        if hc.shm_size.unwrap_or(0) < 0 {
            return Err(ApiError::bad_request("SHM size can not be less than 0"));
        }
        let log = hc.log_config.unwrap_or_default();
        let restart = hc.restart_policy.unwrap_or_default();
        let mounts = hc
            .mounts
            .unwrap_or_default()
            .into_iter()
            .map(MountBody::into_spec)
            .collect::<Result<Vec<_>, _>>()?;
        let mut opts = CreateOptions {
            name: name.filter(|n| !n.is_empty()),
            image,
            platform: platform.filter(|p| !p.is_empty()),
            cmd: self.cmd.map(StringOrVec::into_vec),
            entrypoint: self.entrypoint.map(StringOrVec::into_vec),
            env: self.env.unwrap_or_default(),
            working_dir: self.working_dir.filter(|w| !w.is_empty()),
            user: self.user.filter(|u| !u.is_empty()),
            hostname: self.hostname.filter(|h| !h.is_empty()),
            domainname: self.domainname.filter(|h| !h.is_empty()),
            tty: self.tty.unwrap_or(false),
            open_stdin: self.open_stdin.unwrap_or(false),
            stdin_once: self.stdin_once.unwrap_or(false),
            labels: self.labels.unwrap_or_default(),
            stop_signal: self.stop_signal.filter(|s| !s.is_empty()),
            stop_timeout: self.stop_timeout,
            volumes: self.volumes.unwrap_or_default().into_keys().collect(),
            healthcheck: self.healthcheck,
            host: HostOptions {
                network_mode: hc
                    .network_mode
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "default".into()),
                init: hc.init.unwrap_or(false),
                memory: hc.memory.unwrap_or(0),
                memory_swap: hc.memory_swap.unwrap_or(0),
                nano_cpus,
                cpu_shares: hc.cpu_shares.unwrap_or(0),
                pids_limit: hc.pids_limit.unwrap_or(0),
                readonly_rootfs: hc.readonly_rootfs.unwrap_or(false),
                cap_add: hc.cap_add.unwrap_or_default(),
                cap_drop: hc.cap_drop.unwrap_or_default(),
                privileged: hc.privileged.unwrap_or(false),
                security_opt: hc.security_opt.unwrap_or_default(),
                auto_remove: hc.auto_remove.unwrap_or(false),
                log_type: log
                    .typ
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| "json-file".into()),
                log_opts: log.config.unwrap_or_default(),
                runtime: hc.runtime.filter(|r| !r.is_empty()),
                restart_policy: restart
                    .name
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "no".into()),
                restart_max_retries: restart.maximum_retry_count.unwrap_or(0),
                oom_kill_disable: hc.oom_kill_disable.unwrap_or(false),
                shm_size: hc.shm_size.unwrap_or(0),
                binds: hc.binds.unwrap_or_default(),
                mounts,
                tmpfs: hc.tmpfs.unwrap_or_default(),
                volumes_from: hc.volumes_from.unwrap_or_default(),
                publish_all_ports: hc.publish_all_ports.unwrap_or(false),
                console_size: super::exec::console_size(hc.console_size.as_deref()),
                extra_hosts: hc.extra_hosts.unwrap_or_default(),
                dns: hc.dns.unwrap_or_default(),
                dns_search: hc.dns_search.unwrap_or_default(),
                dns_options: hc.dns_options.unwrap_or_default(),
                cgroupns_mode: hc.cgroupns_mode.unwrap_or_default(),
                device_cgroup_rules: hc.device_cgroup_rules.unwrap_or_default(),
                pid_mode: hc.pid_mode.unwrap_or_default(),
                uts_mode: hc.uts_mode.unwrap_or_default(),
                isolation: hc.isolation.unwrap_or_default(),
                group_add: hc.group_add.unwrap_or_default(),
                cpuset_cpus: hc.cpuset_cpus.unwrap_or_default(),
                memory_swappiness: hc.memory_swappiness,
                volume_driver: hc.volume_driver.unwrap_or_default(),
                links: hc.links.unwrap_or_default(),
                ..Default::default()
            },
            exposed_ports: Vec::new(),
        };
        super::networks::apply_create(
            &mut opts,
            self.exposed_ports,
            hc.port_bindings,
            self.networking_config,
            self.mac_address,
        )?;
        Ok(opts)
    }
}

/// `POST /containers/create?name=&platform=` → `201 {"Id": ..., "Warnings": []}`.
pub async fn create(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    let parsed: CreateBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid container config JSON: {e}")))?;
    let opts = parsed.into_options(
        q.get("name").map(String::from),
        q.get("platform").map(String::from),
    )?;
    if let Some(rt) = &opts.host.runtime {
        if !state.runtimes.contains_key(rt) {
            return Err(ApiError::bad_request(format!(
                "unknown or invalid runtime name: {rt}"
            )));
        }
    }
    let s = state.clone();
    let c = asyncify(move || s.containers.create(opts)).await?;
    state.container_event("create", &c, &[]);
    Ok((
        StatusCode::CREATED,
        Json(bollard_stubs::models::ContainerCreateResponse {
            id: c.id,
            warnings: Vec::new(),
        }),
    )
        .into_response())
}

pub(crate) async fn get_container(state: &AppState, id: &str) -> Result<Container, ApiError> {
    let s = state.clone();
    let id = id.to_string();
    asyncify(move || s.containers.get(&id)).await
}

pub(crate) use crate::wire::{is_active, unix_of};

/// Docker's `Status` column ("Up 5 seconds", "Exited (0) 2 minutes ago", "Created").
fn status_text(c: &Container) -> String {
    let now = chrono::Utc::now().timestamp();
    match c.state.status {
        Status::Running => format!(
            "Up {}{}",
            human_duration(now - unix_of(&c.state.started_at)),
            health_suffix(c)
        ),
        Status::Paused => format!(
            "Up {} (Paused)",
            human_duration(now - unix_of(&c.state.started_at))
        ),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            c.state.exit_code,
            human_duration(now - unix_of(&c.state.finished_at))
        ),
        Status::Exited => {
            if c.state.finished_at.is_empty() || c.state.finished_at == ZERO_TIME {
                format!("Exited ({})", c.state.exit_code)
            } else {
                format!(
                    "Exited ({}) {} ago",
                    c.state.exit_code,
                    human_duration(now - unix_of(&c.state.finished_at))
                )
            }
        }
        Status::Created => "Created".into(),
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
    }
}

/// Docker's health part of the `Status` column: ` (healthy)`, ` (health: starting)`.
fn health_suffix(c: &Container) -> String {
    match c.state.health.as_ref().map(|h| h.status.as_str()) {
        Some(barge_container::STARTING) => " (health: starting)".into(),
        Some(s) if !s.is_empty() && c.config.healthcheck.is_some() => format!(" ({s})"),
        _ => String::new(),
    }
}

fn command_text(c: &Container) -> String {
    let mut parts = vec![c.config.path.clone()];
    parts.extend(c.config.args.iter().cloned());
    parts.join(" ")
}

/// Docker's `ContainerSummary` (built in [`crate::wire`]).
pub(crate) fn summary(c: &Container) -> Value {
    crate::wire::container_summary(c, command_text(c), status_text(c))
}

/// Keys `GET /containers/json` accepts (dockerd's `acceptedPsFilterTags`).
const PS_FILTERS: &[&str] = &[
    "ancestor",
    "before",
    "exited",
    "id",
    "isolation",
    "label",
    "name",
    "status",
    "health",
    "since",
    "volume",
    "network",
    "is-task",
    "publish",
    "expose",
];

/// The container states dockerd accepts in a `status` filter.
const STATES: &[&str] = &[
    "paused",
    "restarting",
    "removing",
    "running",
    "dead",
    "created",
    "exited",
];

/// `GET /containers/json?all=&limit=&filters=`, with dockerd's filter semantics
/// (`daemon/list.go`): values of one key OR (`label` values AND), keys AND; `before`/`since`
/// cut the newest-first list at a container; `status` implies `all`; a `limit` counts
/// stopped containers too.
pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    use super::filters as f;
    let q = Query::parse(raw);
    let filters = q.filters()?;
    f::validate(&filters, PS_FILTERS)?;
    let mut all = q.bool("all", false);
    let limit = q
        .atoi("limit")?
        .filter(|l| *l > 0)
        .map_or(0, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let mut exited = Vec::new();
    for v in f::values(&filters, "exited") {
        exited.push(
            v.parse::<i64>()
                .map_err(|_| f::invalid("exited", Some(v)))?,
        );
    }
    for v in f::values(&filters, "status") {
        if !STATES.contains(&v.as_str()) {
            return Err(f::invalid("status", Some(v)));
        }
        all = true;
    }
    for v in f::values(&filters, "health") {
        if !["starting", "healthy", "unhealthy", "none"].contains(&v.as_str()) {
            return Err(ApiError::bad_request(format!(
                "Unrecognised filter value for health: {v}"
            )));
        }
    }
    let is_task = match f::values(&filters, "is-task") {
        [] => None,
        [v] if v == "true" => Some(true),
        [v] if v == "false" => Some(false),
        vals => return Err(f::invalid("is-task", Some(&vals.join(",")))),
    };
    let publish = port_filter(&filters, "publish")?;
    let expose = port_filter(&filters, "expose")?;
    // Listing reads the engine's records and the network engine's sandboxes (their locks):
    // all of it on the blocking pool.
    let state = state.clone();
    let out = asyncify(move || {
        // An ancestor that names no image matches nothing (dockerd logs and skips it).
        let images: Vec<String> = f::values(&filters, "ancestor")
            .iter()
            .filter_map(|a| state.images.get(a).ok().map(|img| img.id))
            .collect();
        let containers = state.containers.list();
        let find = |key: &str| -> Result<Option<String>, ApiError> {
            let Some(v) = f::values(&filters, key).last() else {
                return Ok(None);
            };
            let v = v.trim_start_matches('/');
            containers
                .iter()
                .find(|c| c.id == v || c.name == v)
                .or_else(|| {
                    let mut hits = containers.iter().filter(|c| c.id.starts_with(v));
                    hits.next().filter(|_| hits.next().is_none())
                })
                .map(|c| Some(c.id.clone()))
                .ok_or_else(|| ApiError::not_found(format!("No such container: {v}")))
        };
        let mut before = find("before")?;
        let since = find("since")?;
        let mut out = Vec::new();
        for c in &containers {
            if let Some(b) = &before {
                if *b == c.id {
                    before = None;
                }
                continue;
            }
            if since.as_deref() == Some(c.id.as_str()) {
                break;
            }
            let running = is_active(&c.state.status);
            if !running && !all && limit == 0 {
                continue;
            }
            if !(f::matches(&filters, "name", &format!("/{}", c.name))
                || f::matches(&filters, "name", &c.name))
                || !f::values(&filters, "id").is_empty()
                    && !f::values(&filters, "id")
                        .iter()
                        .any(|v| c.id.starts_with(v.as_str()))
                || is_task == Some(true)
                || !f::match_kv_list(&filters, "label", &c.config.labels)
                || !f::matches(&filters, "isolation", "default")
            {
                continue;
            }
            if limit > 0 && out.len() == limit {
                break;
            }
            if !exited.is_empty()
                && (running
                    || c.state.started_at.is_empty()
                    || c.state.started_at.starts_with("0001-")
                    || !exited.contains(&c.state.exit_code))
            {
                continue;
            }
            if !f::exact(&filters, "status", c.state.status.as_str()) {
                continue;
            }
            let health = match &c.state.health {
                Some(h) if c.config.healthcheck.is_some() => h.status.as_str(),
                _ => "none",
            };
            if !f::exact(&filters, "health", health) {
                continue;
            }
            let vols = f::values(&filters, "volume");
            if !vols.is_empty()
                && !c.mounts.iter().any(|m| {
                    vols.iter().any(|v| {
                        m.destination == *v
                            || (!m.name.is_empty() && m.name == *v)
                            || (m.name.is_empty() && m.source.as_os_str() == v.as_str())
                    })
                })
            {
                continue;
            }
            if filters.contains_key("ancestor") && !images.contains(&c.image_id) {
                continue;
            }
            let nets = f::values(&filters, "network");
            if !nets.is_empty() {
                let names = barge_container::Containers::network_names(c);
                let hit = names.iter().any(|n| {
                    nets.contains(n)
                        || state
                            .networks
                            .get(n)
                            .is_ok_and(|net| nets.iter().any(|v| net.id.starts_with(v.as_str())))
                });
                if !hit {
                    continue;
                }
            }
            let mut v = summary(c);
            let (ports, nets) = super::networks::summary_parts(&state, c);
            if !publish.is_empty() || !expose.is_empty() {
                let hit = ports.as_array().into_iter().flatten().any(|p| {
                    let proto = p["Type"].as_str().unwrap_or("tcp").to_string();
                    let public = p["PublicPort"].as_u64().map(|n| (n as u16, proto.clone()));
                    let private = p["PrivatePort"].as_u64().map(|n| (n as u16, proto.clone()));
                    public.is_some_and(|x| publish.contains(&x))
                        || private.is_some_and(|x| expose.contains(&x))
                });
                if !hit {
                    continue;
                }
            }
            v["Ports"] = ports;
            v["NetworkSettings"] = nets;
            out.push(v);
        }
        Ok::<_, ApiError>(out)
    })
    .await?;
    Ok(Json(Value::Array(out)))
}

/// A `publish`/`expose` filter: `PORT[-PORT][/PROTO]` values as (port, proto) pairs.
fn port_filter(
    filters: &super::filters::FilterMap,
    key: &str,
) -> Result<Vec<(u16, String)>, ApiError> {
    let mut out = Vec::new();
    for v in super::filters::values(filters, key) {
        if v.contains(':') {
            return Err(ApiError::bad_request(format!(
                "filter for '{key}' should not contain ':': {v}"
            )));
        }
        let (range, proto) = v.split_once('/').unwrap_or((v.as_str(), "tcp"));
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        let bad = || ApiError::bad_request(format!("error while looking up for {key} {v}"));
        let a: u16 = a.parse().map_err(|_| bad())?;
        let b: u16 = b.parse().map_err(|_| bad())?;
        for p in a..=b {
            out.push((p, proto.to_string()));
        }
    }
    Ok(out)
}

/// `GET /containers/{id}/json`.
pub async fn inspect(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let c = get_container(&state, &id).await?;
    let mut v = crate::wire::container_inspect(&c, &[]);
    let (s, c2) = (state.clone(), c.clone());
    v["NetworkSettings"] =
        asyncify(move || Ok::<_, ApiError>(super::networks::network_settings(&s, &c2))).await?;
    v["HostConfig"]["PortBindings"] = super::networks::port_bindings_json(&c);
    v["HostConfig"]["PublishAllPorts"] = json!(c.options.host.publish_all_ports);
    v["HostConfig"]["ExtraHosts"] = json!(c.options.host.extra_hosts);
    v["HostConfig"]["Dns"] = json!(c.options.host.dns);
    Ok(Json(v))
}

/// `POST /containers/{id}/start` → 204, or 304 if already running.
pub async fn start(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let c = get_container(&state, &id).await?;
    if is_active(&c.state.status) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let waiters = state
        .pending_attach
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&c.id)
        .unwrap_or_default();
    let s = state.clone();
    let cid = c.id.clone();
    let started = asyncify(move || {
        let mut waiters = Some(waiters);
        let n = waiters.as_ref().map(Vec::len).unwrap_or(0);
        s.containers.start(&cid, n, &mut |point| {
            for w in waiters.take().unwrap_or_default() {
                let _ = w.send(point.clone());
            }
        })
    })
    .await;
    if let Err(e) = started {
        // As dockerd: a `--rm` container that fails to start is removed, so
        // `wait?condition=removed` (docker run --rm) returns.
        if c.options.host.auto_remove {
            let s = state.clone();
            let cid = c.id.clone();
            if asyncify(move || s.containers.remove_with_volumes(&cid, true, true))
                .await
                .is_ok()
            {
                state.container_event("destroy", &c, &[]);
            }
        }
        return Err(e);
    }
    state.container_event("start", &c, &[]);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /containers/{id}/stop?t=&signal=` → 204, or 304 if not running.
pub async fn stop(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    let timeout = q.stop_timeout()?;
    let c = get_container(&state, &id).await?;
    if !is_active(&c.state.status) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let signal = q.get("signal").filter(|s| !s.is_empty()).map(String::from);
    let s = state.clone();
    let cid = c.id.clone();
    asyncify(move || s.containers.stop(&cid, timeout, signal.as_deref())).await?;
    state.container_event("stop", &c, &[]);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /containers/{id}/kill?signal=` → 204; 409 if not running.
pub async fn kill(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    let c = get_container(&state, &id).await?;
    if !is_active(&c.state.status) {
        return Err(ApiError::conflict(format!(
            "cannot kill container: {id}: container {} is not running",
            c.id
        )));
    }
    let signal = q
        .get("signal")
        .filter(|s| !s.is_empty())
        .unwrap_or("SIGKILL")
        .to_string();
    let s = state.clone();
    let cid = c.id.clone();
    let sig = signal.clone();
    asyncify(move || s.containers.kill(&cid, &sig)).await?;
    state.container_event(
        "kill",
        &c,
        &[("signal", signal_number(&signal).to_string())],
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn signal_number(s: &str) -> i32 {
    if let Ok(n) = s.parse::<i32>() {
        return n;
    }
    let name = s.to_ascii_uppercase();
    let name = if name.starts_with("SIG") {
        name
    } else {
        format!("SIG{name}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .unwrap_or(0)
}

/// `POST /containers/{id}/restart?t=&signal=` → 204.
pub async fn restart(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    let timeout = q.stop_timeout()?;
    let c = get_container(&state, &id).await?;
    let signal = q.get("signal").filter(|s| !s.is_empty()).map(String::from);
    let s = state.clone();
    let cid = c.id.clone();
    asyncify(move || {
        s.containers.stop(&cid, timeout, signal.as_deref())?;
        s.containers.start(&cid, 0, &mut |_| {})
    })
    .await?;
    state.container_event("restart", &c, &[]);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /containers/{id}/wait?condition=not-running|next-exit|removed` →
/// `{"StatusCode": n, "Error": null}` once the condition holds. Headers go out at once.
pub async fn wait(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    let condition = match q.get("condition").unwrap_or("not-running") {
        "" | "not-running" => WaitCondition::NotRunning,
        "next-exit" => WaitCondition::NextExit,
        "removed" => WaitCondition::Removed,
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid condition: {other:?}"
            )))
        }
    };
    let c = get_container(&state, &id).await?;
    let containers = state.containers.clone();
    let cid = c.id.clone();
    // No thread waits: the engine completes the future; a client that goes away drops the
    // body stream and with it the waiter.
    let fut = async move {
        let waited = crate::engine_wait(containers, move |c, notify| {
            c.wait_notify(&cid, condition, notify)
        })
        .await;
        let body = crate::wire::container_wait(waited.map_err(|e| e.message));
        Ok::<_, std::io::Error>(bytes::Bytes::from(format!("{body}\n")))
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(futures_util::stream::once(fut)))
        .expect("static response"))
}

/// `POST /containers/{id}/attach?stream=&stdin=&stdout=&stderr=` (hijacked, 101).
pub async fn attach(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    req: Request,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    let c = get_container(&state, &id).await?;
    let sel = StreamSel {
        stdin: q.bool("stdin", false),
        stdout: q.bool("stdout", false),
        stderr: q.bool("stderr", false),
        tty: c.options.tty,
        detach_keys: Some(
            crate::stream::DetachKeys::parse(q.get("detachKeys").unwrap_or(""))
                .map_err(ApiError::bad_request)?,
        ),
    };
    // `logs=1`: the output so far first (docker-py and compose ask for it); `stream=0`: only
    // that, no live stream.
    let prelude = if q.bool("logs", false) {
        let path = c.log_path.clone();
        let (out, err, tty) = (sel.stdout, sel.stderr, sel.tty);
        // Streamed from the files in chunks through a bounded channel, never held whole.
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
        tokio::task::spawn_blocking(move || {
            let mut buf = Vec::new();
            for e in barge_container::logs::entries(&path) {
                let e = match e {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!("reading log {}: {e}", path.display());
                        break;
                    }
                };
                let is_err = e.stream == "stderr";
                if (is_err && !err) || (!is_err && !out) {
                    continue;
                }
                if tty {
                    buf.extend_from_slice(&e.log);
                } else {
                    buf.extend_from_slice(&frame(if is_err { STDERR } else { STDOUT }, &e.log));
                }
                if buf.len() >= 64 * 1024 && tx.blocking_send(std::mem::take(&mut buf)).is_err() {
                    return;
                }
            }
            if !buf.is_empty() {
                let _ = tx.blocking_send(buf);
            }
        });
        Some(rx)
    } else {
        None
    };
    if q.get("stream").is_some() && !q.bool("stream", true) {
        state.container_event("attach", &c, &[]);
        return Ok(hijack_with(
            req,
            sel,
            prelude,
            None::<futures_util::future::Ready<Result<barge_container::AttachPoint, String>>>,
        ));
    }
    let running = matches!(c.state.status, Status::Running | Status::Paused);
    let point = if running {
        let s = state.clone();
        let cid = c.id.clone();
        let p = asyncify(move || s.containers.attach_point(&cid)).await?;
        futures_util::future::Either::Left(async move { Ok(p) })
    } else {
        let (tx, rx) = tokio::sync::oneshot::channel();
        state
            .pending_attach
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(c.id.clone())
            .or_default()
            .push(tx);
        futures_util::future::Either::Right(async move { rx.await.map_err(|_| String::new()) })
    };
    state.container_event("attach", &c, &[]);
    Ok(hijack_with(req, sel, prelude, Some(point)))
}

/// `POST /containers/{id}/resize?h=&w=`.
pub async fn resize(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    let (h, w) = q.tty_size()?;
    let s = state.clone();
    asyncify(move || {
        let c = s.containers.get(&id)?;
        if c.state.status != Status::Running {
            return Ok(());
        }
        s.containers.resize(&c.id, h, w)
    })
    .await?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /containers/{id}/top?ps_args=`.
pub async fn top(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(raw);
    let ps_args = q.get("ps_args").unwrap_or("-ef").to_string();
    let c = get_container(&state, &id).await?;
    if c.state.status != Status::Running {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            c.id
        )));
    }
    let s = state.clone();
    let (titles, rows) = asyncify(move || s.containers.top(&c.id, &ps_args)).await?;
    Ok(Json(
        serde_json::to_value(bollard_stubs::models::ContainerTopResponse {
            titles: Some(titles),
            processes: Some(rows),
        })
        .unwrap_or_default(),
    ))
}

/// `DELETE /containers/{id}?force=&v=` → 204.
/// `DELETE /containers/{parent}/{alias}?link=1`: removes the legacy link `/PARENT/ALIAS`
/// (`docker rm --link`); without `link=1` no container has such a name (404).
pub async fn remove_link(
    State(state): State<AppState>,
    Path((parent, alias)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let name = format!("/{parent}/{alias}");
    if !Query::parse(raw).bool("link", false) {
        return Err(ApiError::not_found(format!("No such container: {name}")));
    }
    let s = state.clone();
    asyncify(move || s.containers.remove_link(&parent, &alias)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    if q.bool("link", false) {
        // A link name is `/PARENT/ALIAS` (see `remove_link`); a bare name is not one.
        return Err(ApiError::conflict(
            "Conflict, cannot remove the default link name of the container",
        ));
    }
    let force = q.bool("force", false);
    let volumes = q.bool("v", false);
    let c = get_container(&state, &id).await?;
    let s = state.clone();
    let cid = c.id.clone();
    asyncify(move || s.containers.remove_with_volumes(&cid, force, volumes)).await?;
    state.container_event("destroy", &c, &[]);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /containers/prune?filters=` (`until`, `label`, `label!`) →
/// `{"ContainersDeleted": [...], "SpaceReclaimed": bytes of their writable layers}`.
pub async fn prune(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(raw);
    let filters = q.filters()?;
    let keep = super::fsops::prune_filter(&filters, unix_of)?;
    let s = state.clone();
    let (removed, space) =
        asyncify(move || s.containers.prune(&|c| keep(&c.config.labels, &c.created))).await?;
    for c in &removed {
        state.container_event("destroy", c, &[]);
    }
    let ids: Vec<String> = removed.iter().map(|c| c.id.clone()).collect();
    let model = bollard_stubs::models::ContainerPruneResponse {
        containers_deleted: (!ids.is_empty()).then_some(ids),
        space_reclaimed: Some(i64::try_from(space).unwrap_or(i64::MAX)),
    };
    // dockerd sends `null` when nothing was deleted.
    Ok(Json(crate::wire::to_wire(&model, &["ContainersDeleted"])))
}

/// `GET /containers/{id}/logs?follow=&stdout=&stderr=&since=&until=&timestamps=&tail=`:
/// stdcopy frames (raw for a TTY container), streamed while `follow`.
pub async fn logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    let c = get_container(&state, &id).await?;
    if c.options.host.log_type == "none" {
        return Err(ApiError::bad_request(
            "configured logging driver does not support reading",
        ));
    }
    let want_out = q.bool("stdout", false);
    let want_err = q.bool("stderr", false);
    if !want_out && !want_err {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let follow = q.bool("follow", false);
    let timestamps = q.bool("timestamps", false);
    // Unix nanoseconds; 0 means unset (as dockerd).
    let to_time = |n: Option<i64>| {
        n.filter(|n| *n != 0)
            .map(chrono::DateTime::from_timestamp_nanos)
    };
    let since = to_time(q.timestamp("since")?);
    let until = to_time(q.timestamp("until")?);
    let tail: Option<usize> = match q.get("tail") {
        None | Some("all") | Some("") => None,
        Some(n) => n
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| n as usize),
    };
    let tty = c.options.tty;
    let log_path = c.log_path.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(64);
    let render = move |e: &barge_container::logs::LogEntry| -> Option<bytes::Bytes> {
        let is_err = e.stream == "stderr";
        if (is_err && !want_err) || (!is_err && !want_out) {
            return None;
        }
        if since.is_some_and(|s| e.time < s) || until.is_some_and(|u| e.time > u) {
            return None;
        }
        let mut payload = Vec::with_capacity(e.log.len() + 32);
        if timestamps {
            payload.extend_from_slice(
                e.time
                    .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                    .as_bytes(),
            );
            payload.push(b' ');
        }
        payload.extend_from_slice(&e.log);
        Some(bytes::Bytes::from(if tty {
            payload
        } else {
            frame(if is_err { STDERR } else { STDOUT }, &payload)
        }))
    };
    let s = state.clone();
    let cid = c.id.clone();
    crate::spawn_logged("stream", async move {
        // The past entries stream from the files on a blocking thread (the last `tail` read
        // backwards from the end), through the bounded channel: memory stays bounded
        // whatever the log's size.
        let path = log_path.clone();
        let txb = tx.clone();
        let replay = render;
        // Where the replay left the current file: following goes on from there, so nothing
        // written meanwhile is lost or repeated. `None`: the client is gone.
        let replayed = tokio::task::spawn_blocking(move || {
            // Rendered entries go out in chunks of about 64 KiB (one channel message per line
            // would cost more than reading the line).
            let mut chunk = bytes::BytesMut::new();
            let mut send = |e: &barge_container::logs::LogEntry| {
                if let Some(b) = replay(e) {
                    chunk.extend_from_slice(&b);
                }
                chunk.len() < 64 * 1024 || txb.blocking_send(Ok(chunk.split().freeze())).is_ok()
            };
            let (ok, offset) = match tail {
                Some(t) => {
                    let (entries, offset) = barge_container::logs::tail_entries(&path, t)
                        .unwrap_or_else(|e| {
                            tracing::warn!("reading log {}: {e}", path.display());
                            (Vec::new(), 0)
                        });
                    (entries.iter().all(&mut send), offset)
                }
                None => {
                    let mut it = barge_container::logs::entries(&path);
                    for e in it.by_ref() {
                        match e {
                            Ok(e) if !send(&e) => return None,
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!("reading log {}: {e}", path.display());
                                break;
                            }
                        }
                    }
                    (true, it.offset())
                }
            };
            (ok && (chunk.is_empty() || txb.blocking_send(Ok(chunk.freeze())).is_ok()))
                .then_some(offset)
        })
        .await
        .ok()
        .flatten();
        let Some(offset) = replayed else {
            return;
        };
        if !follow {
            return;
        }
        // Follow: the current file from where the replay left it until the container stops.
        let Ok(mut file) = tokio::fs::File::open(&log_path).await else {
            return;
        };
        let mut pos = file
            .seek(std::io::SeekFrom::Start(offset))
            .await
            .unwrap_or(0);
        let mut pending: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut stopped_rounds = 0;
        loop {
            let n = file.read(&mut buf).await.unwrap_or(0);
            if n > 0 {
                pos += n as u64;
                pending.extend_from_slice(&buf[..n]);
                while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=nl).collect();
                    if let Some(e) = barge_container::logs::parse_line(&line) {
                        if let Some(b) = render(&e) {
                            if tx.send(Ok(b)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                continue;
            }
            if tx.is_closed() {
                return;
            }
            // Rotation: the path now names a new, shorter file.
            if let Ok(meta) = tokio::fs::metadata(&log_path).await {
                if meta.len() < pos {
                    if let Ok(f) = tokio::fs::File::open(&log_path).await {
                        file = f;
                        pos = 0;
                        continue;
                    }
                }
            }
            let s2 = s.clone();
            let id2 = cid.clone();
            let running = tokio::task::spawn_blocking(move || {
                s2.containers
                    .get(&id2)
                    .map(|c| is_active(&c.state.status))
                    .unwrap_or(false)
            })
            .await
            .unwrap_or(false);
            if !running {
                stopped_rounds += 1;
                if stopped_rounds > 2 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    Ok(channel_response(
        if tty { RAW_STREAM } else { MUX_STREAM },
        rx,
    ))
}

/// Reacts to engine events: `die` events and `--rm` auto-removal. The receiver is shared so
/// that a supervisor can restart the pump after a panic without losing the queue
/// (`server::supervise`). A `--rm` removal runs as its own task: the pump never waits on it.
pub async fn event_pump(
    state: AppState,
    rx: std::sync::Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<ContainerEvent>>>,
) {
    loop {
        let Some(ev) = rx.lock().await.recv().await else {
            return;
        };
        match ev {
            ContainerEvent::Died {
                id,
                exit_code,
                oom_killed,
            } => {
                let Ok(c) = get_container(&state, &id).await else {
                    continue;
                };
                if oom_killed {
                    state.container_event("oom", &c, &[]);
                }
                state.container_event("die", &c, &[("exitCode", exit_code.to_string())]);
                if c.options.host.auto_remove {
                    let state = state.clone();
                    crate::spawn_logged("auto-remove", async move {
                        let s = state.clone();
                        let cid = c.id.clone();
                        // `--rm` also removes the container's anonymous volumes.
                        match asyncify(move || s.containers.remove_with_volumes(&cid, true, true))
                            .await
                        {
                            Ok(()) => state.container_event("destroy", &c, &[]),
                            Err(e) => tracing::warn!(id = %c.id, "auto-remove failed: {e}"),
                        }
                    });
                }
            }
            ContainerEvent::Restarted { id } => {
                if let Ok(c) = get_container(&state, &id).await {
                    state.container_event("start", &c, &[]);
                }
            }
            ContainerEvent::HealthStatus { id, status } => {
                if let Ok(c) = get_container(&state, &id).await {
                    state.container_event(&format!("health_status: {status}"), &c, &[]);
                }
            }
            ContainerEvent::ExecDied {
                id,
                exec_id,
                exit_code,
            } => {
                if let Ok(c) = get_container(&state, &id).await {
                    state.container_event(
                        "exec_die",
                        &c,
                        &[("execID", exec_id), ("exitCode", exit_code.to_string())],
                    );
                }
            }
        }
    }
}

#[allow(dead_code)]
fn _unused(_: HashMap<(), ()>) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_maps_docker_fields() {
        let body = r#"{"Image":"busybox:1.35","Cmd":["echo","hi"],"Entrypoint":"","Env":["A=1"],"Tty":true,
            "HostConfig":{"NetworkMode":"none","Memory":67108864,"NanoCpus":1500000000,"PidsLimit":50,
            "CapAdd":["NET_ADMIN"],"AutoRemove":true,"LogConfig":{"Type":"json-file","Config":{"max-size":"1m"}}}}"#;
        let parsed: CreateBody = serde_json::from_str(body).unwrap();
        let o = parsed.into_options(Some("web".into()), None).unwrap();
        assert_eq!(o.image, "busybox:1.35");
        assert_eq!(o.cmd, Some(vec!["echo".to_string(), "hi".to_string()]));
        assert_eq!(o.entrypoint, Some(vec![]));
        assert_eq!(o.host.memory, 64 << 20);
        assert_eq!(o.host.nano_cpus, 1_500_000_000);
        assert_eq!(o.host.pids_limit, 50);
        assert!(o.host.auto_remove && o.tty);
        assert_eq!(o.host.log_opts["max-size"], "1m");
        assert_eq!(o.name.as_deref(), Some("web"));
    }

    #[test]
    fn create_body_maps_mounts() {
        let body = r#"{"Image":"busybox","Volumes":{"/anon":{}},"HostConfig":{
            "Binds":["data:/data:ro","/host:/h"],"VolumesFrom":["other:ro"],"Tmpfs":{"/run":"size=1m"},
            "Mounts":[{"Type":"volume","Source":"v","Target":"/v","VolumeOptions":{"NoCopy":true,"Subpath":"s",
              "DriverConfig":{"Name":"local","Options":{"type":"tmpfs"}}}},
              {"Type":"tmpfs","Target":"/t","TmpfsOptions":{"SizeBytes":1048576,"Mode":448}},
              {"Type":"bind","Source":"/s","Target":"/b","ReadOnly":true,"BindOptions":{"Propagation":"rslave"}}]}}"#;
        let parsed: CreateBody = serde_json::from_str(body).unwrap();
        let o = parsed.into_options(None, None).unwrap();
        assert_eq!(o.volumes, vec!["/anon"]);
        assert_eq!(o.host.binds, vec!["data:/data:ro", "/host:/h"]);
        assert_eq!(o.host.volumes_from, vec!["other:ro"]);
        assert_eq!(o.host.tmpfs["/run"], "size=1m");
        let v = &o.host.mounts[0];
        assert_eq!(v.kind, MountType::Volume);
        let vo = v.volume_options.as_ref().unwrap();
        assert!(vo.no_copy);
        assert_eq!((vo.subpath.as_str(), vo.driver.as_str()), ("s", "local"));
        assert_eq!(vo.driver_options["type"], "tmpfs");
        assert_eq!(o.host.mounts[1].tmpfs_options.as_ref().unwrap().mode, 0o700);
        let b = &o.host.mounts[2];
        assert!(b.read_only);
        assert_eq!(b.bind_options.as_ref().unwrap().propagation, "rslave");
        // Back out through the wire layer as inspect's `HostConfig.Mounts` shows them.
        let j = |m: &MountSpec| serde_json::to_value(crate::wire::mount(m)).unwrap();
        assert_eq!(
            j(b),
            json!({"Type":"bind","Source":"/s","Target":"/b","ReadOnly":true,"BindOptions":{"Propagation":"rslave"}})
        );
        assert_eq!(
            j(v),
            json!({"Type":"volume","Source":"v","Target":"/v","VolumeOptions":{"NoCopy":true,"Subpath":"s",
              "DriverConfig":{"Name":"local","Options":{"type":"tmpfs"}}}})
        );
        assert_eq!(
            j(&o.host.mounts[1]),
            json!({"Type":"tmpfs","Source":"","Target":"/t","TmpfsOptions":{"SizeBytes":1048576,"Mode":448}})
        );
        let bad: CreateBody = serde_json::from_str(
            r#"{"Image":"x","HostConfig":{"Mounts":[{"Type":"nfs","Target":"/x"}]}}"#,
        )
        .unwrap();
        assert_eq!(
            bad.into_options(None, None).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn create_body_rejects_nonsense() {
        let parsed: CreateBody =
            serde_json::from_str(r#"{"Image":"x","HostConfig":{"Memory":-5}}"#).unwrap();
        assert!(parsed.into_options(None, None).is_err());
        let parsed: CreateBody = serde_json::from_str(r#"{"Cmd":["x"]}"#).unwrap();
        assert!(parsed.into_options(None, None).is_err());
        let parsed: CreateBody =
            serde_json::from_str(r#"{"Image":"x","HostConfig":{"Memory":1024}}"#).unwrap();
        assert_eq!(
            parsed.into_options(None, None).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn shm_size_is_range_checked() {
        let parsed: CreateBody =
            serde_json::from_str(r#"{"Image":"x","HostConfig":{"ShmSize":-1}}"#).unwrap();
        let e = parsed.into_options(None, None).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.message, "SHM size can not be less than 0");
    }

    #[test]
    fn signal_numbers() {
        assert_eq!(signal_number("SIGKILL"), 9);
        assert_eq!(signal_number("TERM"), 15);
        assert_eq!(signal_number("2"), 2);
    }
}
