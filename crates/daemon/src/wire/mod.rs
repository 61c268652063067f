//! The typed wire layer: Docker Engine API response bodies built from the engine's types
//! through `bollard_stubs::models` (the models generated from moby's `api/swagger.yaml`,
//! <https://docs.docker.com/reference/api/engine/version/v1.47/>), so a field's name and JSON
//! type come from the API's definition instead of a hand-written `json!` body.
//!
//! The conversions are functions (`container_inspect(&Container) -> ContainerInspectResponse`,
//! ...) rather than `From` impls: both sides are foreign to this crate, so the orphan rule
//! forbids `impl From<&Container> for ContainerInspectResponse` here.
//!
//! Fidelity to dockerd's output wins over the model. Two kinds of explicit, commented
//! extensions are applied after serialising a model with [`to_wire`]:
//! - **nulls**: bollard skips `None` fields, while dockerd sends `null` for nil slices, maps
//!   and pointers that have no `omitempty` (`ExecIDs`, `HostConfig.Binds`, `Config.OnBuild`...);
//!   [`to_wire`] puts those keys back as `null`;
//! - **extra fields** dockerd sends that the 1.53 model no longer has (`ImageSummary.VirtualSize`,
//!   `ImageInspect.Parent`/`DockerVersion`/`VirtualSize`...), set on the JSON value by the
//!   function that builds it.
//!
//! `tests/e2e_wire.rs` (crate `barge`) checks every JSON endpoint's body against these models.

use std::collections::{BTreeMap, HashMap};

pub mod network;
pub mod progress;

use barge_container::mounts::{MountPoint, MountSpec, MountType};
use barge_container::volumes::Volume;
use barge_container::{Container, Status};
use barge_image::Image;
use bollard_stubs::models as m;
use serde::Serialize;
use serde_json::{json, Value};

/// `0001-01-01T00:00:00Z`: Go's zero `time.Time`, what dockerd sends for "never".
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Serialises `model` and puts an explicit `null` at each key path in `nulls` (`A.B` for a
/// nested object) that the model skipped, as dockerd sends it. Paths whose parent object is
/// absent are ignored.
pub fn to_wire<T: Serialize>(model: &T, nulls: &[&str]) -> Value {
    let mut v = serde_json::to_value(model).unwrap_or(Value::Null);
    for path in nulls {
        let mut cur = &mut v;
        let mut parts = path.split('.').peekable();
        while let Some(p) = parts.next() {
            let Some(obj) = cur.as_object_mut() else {
                break;
            };
            if parts.peek().is_none() {
                obj.entry(p.to_string()).or_insert(Value::Null);
                break;
            }
            match obj.get_mut(p) {
                Some(next) => cur = next,
                None => break,
            }
        }
    }
    v
}

pub(crate) fn hash(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// `Some(v)` unless empty (dockerd's nil slice, sent as `null` through [`to_wire`]'s nulls).
fn non_empty<T: Clone>(v: &[T]) -> Option<Vec<T>> {
    (!v.is_empty()).then(|| v.to_vec())
}

fn time_or_zero(t: &str) -> String {
    if t.is_empty() {
        ZERO_TIME.to_string()
    } else {
        t.to_string()
    }
}

/// Seconds since the epoch of an RFC 3339 time; 0 when it does not parse.
pub fn unix_of(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|d| d.timestamp())
        .unwrap_or(0)
}

/// Running, paused or restarting: a process exists (or is about to), as Docker's `ps` counts it.
pub fn is_active(status: &Status) -> bool {
    matches!(
        status,
        Status::Running | Status::Paused | Status::Restarting
    )
}

/// The engine's health check as the API's `HealthConfig` (durations in nanoseconds).
fn health_config(h: &barge_image::HealthConfig) -> m::HealthConfig {
    m::HealthConfig {
        test: h.test.clone(),
        interval: h.interval,
        timeout: h.timeout,
        retries: h.retries,
        start_period: h.start_period,
        start_interval: h.start_interval,
    }
}

/// A [`MountSpec`] as the API's `Mount` (inspect's `HostConfig.Mounts`); empty options are
/// left out, as dockerd's `omitempty` does.
pub fn mount(s: &MountSpec) -> m::Mount {
    let yes = |b: bool| b.then_some(true);
    let text = |t: &str| (!t.is_empty()).then(|| t.to_string());
    m::Mount {
        target: Some(s.target.clone()),
        source: Some(s.source.clone()),
        typ: s.kind.as_str().parse().ok(),
        read_only: yes(s.read_only),
        consistency: text(&s.consistency),
        bind_options: s.bind_options.as_ref().map(|b| m::MountBindOptions {
            propagation: text(&b.propagation).and_then(|p| p.parse().ok()),
            non_recursive: yes(b.non_recursive),
            create_mountpoint: yes(b.create_mountpoint),
            ..Default::default()
        }),
        volume_options: s.volume_options.as_ref().map(|vo| m::MountVolumeOptions {
            no_copy: yes(vo.no_copy),
            labels: (!vo.labels.is_empty()).then(|| hash(&vo.labels)),
            driver_config: (!vo.driver.is_empty() || !vo.driver_options.is_empty()).then(|| {
                // dockerd sends both keys of a driver config, empty or not.
                m::MountVolumeOptionsDriverConfig {
                    name: Some(vo.driver.clone()),
                    options: Some(hash(&vo.driver_options)),
                }
            }),
            subpath: text(&vo.subpath),
        }),
        tmpfs_options: s.tmpfs_options.as_ref().map(|t| m::MountTmpfsOptions {
            size_bytes: (t.size_bytes > 0).then_some(t.size_bytes),
            mode: (t.mode != 0).then_some(i64::from(t.mode)),
            options: None,
        }),
        ..Default::default()
    }
}

/// The API's `MountPoint` list (inspect's and `ps`'s `Mounts`); `--tmpfs` mounts are not
/// listed, as in dockerd. `Name` and `Driver` are volumes' only.
pub fn mount_points(mounts: &[MountPoint]) -> Vec<m::MountPoint> {
    mounts
        .iter()
        .filter(|mp| !mp.from_tmpfs_flag)
        .map(|mp| {
            let volume = mp.kind == MountType::Volume;
            m::MountPoint {
                typ: Some(mp.kind.as_str().to_string()),
                name: volume.then(|| mp.name.clone()),
                source: Some(mp.source.display().to_string()),
                destination: Some(mp.destination.clone()),
                driver: volume.then(|| mp.driver.clone()),
                mode: Some(mp.mode.clone()),
                rw: Some(mp.rw),
                propagation: Some(mp.propagation.clone()),
            }
        })
        .collect()
}

/// The container's `State` (inspect). `Health` is left out without a health check
/// (dockerd: `omitempty`).
pub fn container_state(c: &Container) -> m::ContainerState {
    let st = &c.state;
    m::ContainerState {
        status: st.status.as_str().parse().ok(),
        running: Some(is_active(&st.status)),
        paused: Some(st.status == Status::Paused),
        restarting: Some(st.status == Status::Restarting),
        oom_killed: Some(st.oom_killed),
        dead: Some(st.status == Status::Dead),
        pid: Some(st.pid),
        exit_code: Some(st.exit_code),
        error: Some(st.error.clone()),
        started_at: Some(time_or_zero(&st.started_at)),
        finished_at: Some(time_or_zero(&st.finished_at)),
        health: st.health.as_ref().map(|h| m::Health {
            status: h.status.parse().ok(),
            failing_streak: Some(h.failing_streak),
            log: Some(
                h.log
                    .iter()
                    .map(|r| m::HealthcheckResult {
                        start: Some(r.start.clone()),
                        end: Some(r.end.clone()),
                        exit_code: Some(r.exit_code),
                        output: Some(r.output.clone()),
                    })
                    .collect(),
            ),
        }),
    }
}

/// Keys of `HostConfig` that dockerd sends as `null` when unset.
const HOST_CONFIG_NULLS: &[&str] = &[
    "Binds",
    "VolumesFrom",
    "Tmpfs",
    "Mounts",
    "GroupAdd",
    "DeviceCgroupRules",
    "Links",
    "PidsLimit",
    "MemorySwappiness",
    "BlkioWeightDevice",
    "BlkioDeviceReadBps",
    "BlkioDeviceWriteBps",
    "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps",
    "Devices",
    "DeviceRequests",
    "Ulimits",
    "MaskedPaths",
    "ReadonlyPaths",
];

/// A block I/O throttle list as the API's `ThrottleDevice`s; `None` (null) when empty.
fn throttle_devices(l: &[barge_container::ThrottleDevice]) -> Option<Vec<m::ThrottleDevice>> {
    (!l.is_empty()).then(|| {
        l.iter()
            .map(|t| m::ThrottleDevice {
                path: Some(t.path.clone()),
                rate: Some(i64::try_from(t.rate).unwrap_or(i64::MAX)),
            })
            .collect()
    })
}

/// The container's `HostConfig` as inspect shows it. `PortBindings` is the networks module's
/// (set by the handler).
pub fn host_config(c: &Container) -> m::HostConfig {
    let h = &c.options.host;
    m::HostConfig {
        network_mode: Some(h.network_mode.clone()),
        init: Some(h.init),
        memory: Some(h.memory),
        memory_swap: Some(h.memory_swap),
        memory_reservation: Some(h.memory_reservation),
        nano_cpus: Some(h.nano_cpus),
        cpu_shares: Some(h.cpu_shares),
        cpu_period: Some(0),
        cpu_quota: Some(0),
        cpu_realtime_period: Some(h.cpu_realtime_period),
        cpu_realtime_runtime: Some(h.cpu_realtime_runtime),
        cpu_count: Some(0),
        cpu_percent: Some(0),
        io_maximum_iops: Some(0),
        io_maximum_bandwidth: Some(0),
        blkio_weight: Some(h.blkio_weight),
        blkio_weight_device: (!h.blkio_weight_device.is_empty()).then(|| {
            h.blkio_weight_device
                .iter()
                .map(|w| m::ResourcesBlkioWeightDevice {
                    path: Some(w.path.clone()),
                    weight: Some(usize::from(w.weight)),
                })
                .collect()
        }),
        blkio_device_read_bps: throttle_devices(&h.blkio_device_read_bps),
        blkio_device_write_bps: throttle_devices(&h.blkio_device_write_bps),
        blkio_device_read_iops: throttle_devices(&h.blkio_device_read_iops),
        blkio_device_write_iops: throttle_devices(&h.blkio_device_write_iops),
        device_requests: (!h.device_requests.is_empty()).then(|| {
            h.device_requests
                .iter()
                .map(|r| m::DeviceRequest {
                    driver: Some(r.driver.clone()),
                    count: Some(r.count),
                    device_ids: Some(r.device_ids.clone()),
                    capabilities: Some(r.capabilities.clone()),
                    options: Some(hash(&r.options)),
                })
                .collect()
        }),
        masked_paths: h.masked_paths.clone(),
        readonly_paths: h.readonly_paths.clone(),
        annotations: (!h.annotations.is_empty()).then(|| hash(&h.annotations)),
        storage_opt: (!h.storage_opt.is_empty()).then(|| hash(&h.storage_opt)),
        pids_limit: (h.pids_limit > 0).then_some(h.pids_limit),
        readonly_rootfs: Some(h.readonly_rootfs),
        cap_add: Some(h.cap_add.clone()),
        cap_drop: Some(h.cap_drop.clone()),
        privileged: Some(h.privileged),
        security_opt: Some(h.security_opt.clone()),
        auto_remove: Some(h.auto_remove),
        log_config: Some(m::HostConfigLogConfig {
            typ: Some(h.log_type.clone()),
            config: Some(hash(&h.log_opts)),
        }),
        runtime: Some(c.runtime.clone()),
        restart_policy: Some(m::RestartPolicy {
            name: h.restart_policy.parse().ok(),
            maximum_retry_count: Some(h.restart_max_retries),
        }),
        oom_kill_disable: Some(h.oom_kill_disable),
        oom_score_adj: Some(h.oom_score_adj),
        ulimits: (!h.ulimits.is_empty()).then(|| {
            h.ulimits
                .iter()
                .map(|u| m::ResourcesUlimits {
                    name: Some(u.name.clone()),
                    soft: Some(u.soft),
                    hard: Some(u.hard),
                })
                .collect()
        }),
        devices: (!h.devices.is_empty()).then(|| {
            h.devices
                .iter()
                .map(|d| m::DeviceMapping {
                    path_on_host: Some(d.path_on_host.clone()),
                    path_in_container: Some(d.path_in_container.clone()),
                    cgroup_permissions: Some(d.cgroup_permissions.clone()),
                })
                .collect()
        }),
        sysctls: (!h.sysctls.is_empty()).then(|| hash(&h.sysctls)),
        shm_size: Some(if h.shm_size > 0 {
            h.shm_size
        } else {
            64 * 1024 * 1024
        }),
        binds: non_empty(&h.binds),
        volumes_from: non_empty(&h.volumes_from),
        tmpfs: (!h.tmpfs.is_empty()).then(|| hash(&h.tmpfs)),
        port_bindings: Some(HashMap::new()),
        publish_all_ports: Some(h.publish_all_ports),
        mounts: (!h.mounts.is_empty()).then(|| h.mounts.iter().map(mount).collect()),
        dns: Some(h.dns.clone()),
        dns_options: Some(h.dns_options.clone()),
        dns_search: Some(h.dns_search.clone()),
        extra_hosts: Some(h.extra_hosts.clone()),
        ipc_mode: Some(if h.ipc_mode.is_empty() {
            "private".into()
        } else {
            h.ipc_mode.clone()
        }),
        cgroup: Some(String::new()),
        cgroup_parent: Some(h.cgroup_parent.clone()),
        pid_mode: Some(h.pid_mode.clone()),
        uts_mode: Some(h.uts_mode.clone()),
        userns_mode: Some(h.userns_mode.clone()),
        cgroupns_mode: h.cgroupns_mode.parse().ok(),
        isolation: h.isolation.parse().ok(),
        group_add: non_empty(&h.group_add),
        device_cgroup_rules: non_empty(&h.device_cgroup_rules),
        cpuset_cpus: Some(h.cpuset_cpus.clone()),
        cpuset_mems: Some(h.cpuset_mems.clone()),
        memory_swappiness: h.memory_swappiness,
        volume_driver: Some(h.volume_driver.clone()),
        container_id_file: Some(String::new()),
        links: (!h.links.is_empty()).then(|| {
            h.links
                .iter()
                .map(|l| {
                    let (t, a) = l.split_once(':').unwrap_or((l.as_str(), l.as_str()));
                    format!("/{t}:/{}/{a}", c.name)
                })
                .collect()
        }),
        console_size: Some(
            h.console_size
                .map(|(r, c)| vec![usize::from(r), usize::from(c)])
                .unwrap_or_else(|| vec![0, 0]),
        ),
    }
}

/// The container's `Config` (inspect): the resolved process configuration.
pub fn container_config(c: &Container) -> m::ContainerConfig {
    let cfg = &c.config;
    m::ContainerConfig {
        hostname: Some(cfg.hostname.clone()),
        domainname: Some(c.options.domainname.clone().unwrap_or_default()),
        user: Some(cfg.user.clone()),
        attach_stdin: Some(c.options.attach_stdin),
        attach_stdout: Some(c.options.attach_stdout),
        attach_stderr: Some(c.options.attach_stderr),
        exposed_ports: non_empty(&cfg.exposed_ports),
        tty: Some(c.options.tty),
        open_stdin: Some(c.options.open_stdin),
        stdin_once: Some(c.options.stdin_once),
        env: Some(cfg.env.clone()),
        cmd: cfg.cmd.clone(),
        healthcheck: cfg.healthcheck.as_ref().map(health_config),
        image: Some(c.options.image.clone()),
        volumes: non_empty(&cfg.volumes),
        working_dir: Some(cfg.working_dir.clone()),
        entrypoint: cfg.entrypoint.clone(),
        on_build: None,
        labels: Some(hash(&cfg.labels)),
        stop_signal: (!cfg.stop_signal.is_empty()).then(|| cfg.stop_signal.clone()),
        stop_timeout: c.options.stop_timeout,
        ..Default::default()
    }
}

/// `GET /containers/{id}/json`'s body (Docker's `ContainerInspectResponse`), with dockerd's
/// nulls. `NetworkSettings` and `HostConfig.PortBindings` are filled by the networks module.
pub fn container_inspect(c: &Container, exec_ids: &[String]) -> Value {
    let dir = c
        .log_path
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let model = m::ContainerInspectResponse {
        id: Some(c.id.clone()),
        created: Some(c.created.clone()),
        path: Some(c.config.path.clone()),
        args: Some(c.config.args.clone()),
        state: Some(container_state(c)),
        image: Some(c.image_id.clone()),
        resolv_conf_path: Some(format!("{dir}/resolv.conf")),
        hostname_path: Some(format!("{dir}/hostname")),
        hosts_path: Some(format!("{dir}/hosts")),
        log_path: Some(c.log_path.display().to_string()),
        name: Some(format!("/{}", c.name)),
        restart_count: Some(c.restart_count),
        driver: Some("overlayfs".into()),
        platform: Some("linux".into()),
        mount_label: Some(String::new()),
        process_label: Some(String::new()),
        app_armor_profile: Some(String::new()),
        exec_ids: non_empty(exec_ids),
        host_config: Some(host_config(c)),
        graph_driver: Some(m::DriverData {
            name: "overlayfs".into(),
            data: HashMap::from([("MergedDir".into(), c.rootfs.display().to_string())]),
        }),
        mounts: Some(mount_points(&c.mounts)),
        config: Some(container_config(c)),
        network_settings: Some(m::NetworkSettings::default()),
        ..Default::default()
    };
    let mut nulls = vec![
        "ExecIDs",
        "Config.Cmd",
        "Config.Entrypoint",
        "Config.OnBuild",
    ];
    let host: Vec<String> = HOST_CONFIG_NULLS
        .iter()
        .map(|k| format!("HostConfig.{k}"))
        .collect();
    nulls.extend(host.iter().map(String::as_str));
    let mut v = to_wire(&model, &nulls);
    // dockerd sends `Config.Volumes` as null when there are none (a nil map without
    // omitempty); `ExposedPorts` is `omitempty` and left out.
    if c.config.volumes.is_empty() {
        v["Config"]["Volumes"] = Value::Null;
    }
    v
}

/// One `GET /containers/json` entry (Docker's `ContainerSummary`), with `status` its `Status`
/// column. `Ports` and `NetworkSettings` are filled by the networks module.
pub fn container_summary(c: &Container, command: String, status: String) -> Value {
    to_wire(&container_summary_model(c, command, status), &[])
}

/// The [`m::ContainerSummary`] model behind [`container_summary`] (no extensions apply to it).
pub fn container_summary_model(
    c: &Container,
    command: String,
    status: String,
) -> m::ContainerSummary {
    m::ContainerSummary {
        id: Some(c.id.clone()),
        names: Some(vec![format!("/{}", c.name)]),
        image: Some(c.options.image.clone()),
        image_id: Some(c.image_id.clone()),
        command: Some(command),
        created: Some(unix_of(&c.created)),
        ports: Some(Vec::new()),
        labels: Some(hash(&c.config.labels)),
        state: c.state.status.as_str().parse().ok(),
        status: Some(status),
        host_config: Some(m::ContainerSummaryHostConfig {
            network_mode: Some(c.options.host.network_mode.clone()),
            annotations: None,
        }),
        network_settings: Some(m::ContainerSummaryNetworkSettings {
            networks: Some(HashMap::new()),
        }),
        mounts: Some(mount_points(&c.mounts)),
        ..Default::default()
    }
}

/// Docker's `Volume`. Empty `Labels`/`Options` are `null`, as dockerd sends them (the model
/// would write `{}`).
pub fn volume(v: &Volume) -> Value {
    volume_wire(&volume_model(v))
}

/// The [`m::Volume`] model behind [`volume`].
pub fn volume_model(v: &Volume) -> m::Volume {
    m::Volume {
        name: v.name.clone(),
        driver: v.driver.clone(),
        mountpoint: v.mountpoint.display().to_string(),
        created_at: Some(v.created_at.clone()),
        labels: hash(&v.labels),
        scope: v.scope.parse().ok(),
        options: hash(&v.options),
        ..Default::default()
    }
}

/// A [`m::Volume`] on the wire, with [`volume`]'s extensions (empty maps as `null`).
fn volume_wire(model: &m::Volume) -> Value {
    let mut out = to_wire(model, &[]);
    if model.labels.is_empty() {
        out["Labels"] = Value::Null;
    }
    if model.options.is_empty() {
        out["Options"] = Value::Null;
    }
    out
}

/// `GET /images/{name}/history`'s body (Docker's `ImageHistoryResponseItem` list). Extension:
/// `Tags` is `null` for an entry without tags, as dockerd sends it (a nil slice; the model's
/// `Vec` would write `[]`).
pub fn image_history(items: &[barge_image::HistoryItem]) -> Value {
    Value::Array(
        items
            .iter()
            .map(|h| {
                let model = m::ImageHistoryResponseItem {
                    id: h.id.clone(),
                    created: h.created,
                    created_by: h.created_by.clone(),
                    tags: h.tags.clone(),
                    size: h.size,
                    comment: h.comment.clone(),
                };
                let mut v = to_wire(&model, &[]);
                if h.tags.is_empty() {
                    v["Tags"] = Value::Null;
                }
                v
            })
            .collect(),
    )
}

/// `GET /containers/{id}/changes`'s body (Docker's `FilesystemChange` list; `Kind` 0 modified,
/// 1 added, 2 deleted).
pub fn changes(list: &[barge_container::fsops::Change]) -> Vec<m::FilesystemChange> {
    use barge_container::fsops::ChangeKind;
    list.iter()
        .map(|c| m::FilesystemChange {
            path: c.path.clone(),
            kind: match c.kind {
                ChangeKind::Modified => m::ChangeType::_0,
                ChangeKind::Added => m::ChangeType::_1,
                ChangeKind::Deleted => m::ChangeType::_2,
            },
        })
        .collect()
}

/// One `/events` message (Docker's `EventMessage`). Extension: container events also carry
/// the legacy `status`, `id` and `from` fields dockerd still sends (not in the model).
pub fn event(e: &crate::events::Event) -> Value {
    let model = m::EventMessage {
        typ: e.typ.parse().ok(),
        action: Some(e.action.clone()),
        actor: Some(m::EventActor {
            id: Some(e.actor_id.clone()),
            attributes: Some(hash(&e.attributes)),
        }),
        scope: "local".parse().ok(),
        time: Some(e.time_nano / 1_000_000_000),
        time_nano: Some(e.time_nano),
    };
    let mut v = to_wire(&model, &[]);
    if e.typ == "container" {
        v["status"] = json!(e.action);
        v["id"] = json!(e.actor_id);
        if let Some(image) = e.attributes.get("image") {
            v["from"] = json!(image);
        }
    }
    v
}

fn cpu_stats(s: &barge_container::StatsSample) -> m::ContainerCpuStats {
    m::ContainerCpuStats {
        cpu_usage: Some(m::ContainerCpuUsage {
            total_usage: Some(s.cpu_total),
            percpu_usage: non_empty(&s.cpu_percpu),
            usage_in_kernelmode: Some(s.cpu_system),
            usage_in_usermode: Some(s.cpu_user),
        }),
        system_cpu_usage: Some(s.system_cpu),
        online_cpus: Some(u32::try_from(s.online_cpus).unwrap_or(u32::MAX)),
        throttling_data: Some(m::ContainerThrottlingData {
            periods: Some(s.throttling[0]),
            throttled_periods: Some(s.throttling[1]),
            throttled_time: Some(s.throttling[2]),
        }),
    }
}

/// What a stopped container's `cpu_stats`/`precpu_stats` are: zero usage and throttling.
fn empty_cpu_stats() -> m::ContainerCpuStats {
    m::ContainerCpuStats {
        cpu_usage: Some(m::ContainerCpuUsage {
            total_usage: Some(0),
            usage_in_kernelmode: Some(0),
            usage_in_usermode: Some(0),
            percpu_usage: None,
        }),
        throttling_data: Some(m::ContainerThrottlingData {
            periods: Some(0),
            throttled_periods: Some(0),
            throttled_time: Some(0),
        }),
        ..Default::default()
    }
}

/// One `GET /containers/{id}/stats` object (Docker's `ContainerStatsResponse`) for a sample
/// and the one before it; a stopped container reads zero times and empty stats, as dockerd.
/// `networks` is the networks module's (added by the handler). Nulls dockerd sends: the
/// blkio lists it does not fill, `percpu_usage` without per-CPU counters (cgroup v2),
/// `max_usage` where the kernel keeps none.
pub fn container_stats(
    c: &Container,
    cur: &barge_container::StatsSample,
    prev: Option<&barge_container::StatsSample>,
) -> Value {
    let running = matches!(c.state.status, Status::Running | Status::Paused);
    let model = m::ContainerStatsResponse {
        name: Some(format!("/{}", c.name)),
        id: Some(c.id.clone()),
        read: Some(if running {
            cur.read.clone()
        } else {
            ZERO_TIME.into()
        }),
        preread: Some(
            prev.filter(|_| running)
                .map_or_else(|| ZERO_TIME.to_string(), |p| p.read.clone()),
        ),
        pids_stats: Some(if running {
            m::ContainerPidsStats {
                current: Some(cur.pids_current),
                limit: (cur.pids_limit > 0).then_some(cur.pids_limit),
            }
        } else {
            m::ContainerPidsStats::default()
        }),
        blkio_stats: Some(m::ContainerBlkioStats {
            io_service_bytes_recursive: running.then(|| {
                cur.blkio_bytes
                    .iter()
                    .map(|(major, minor, op, value)| m::ContainerBlkioStatEntry {
                        major: Some(*major),
                        minor: Some(*minor),
                        op: Some(op.clone()),
                        value: Some(*value),
                    })
                    .collect()
            }),
            ..Default::default()
        }),
        num_procs: Some(0),
        storage_stats: Some(m::ContainerStorageStats::default()),
        cpu_stats: Some(if running {
            cpu_stats(cur)
        } else {
            empty_cpu_stats()
        }),
        precpu_stats: Some(match prev {
            Some(p) if running => cpu_stats(p),
            _ => empty_cpu_stats(),
        }),
        memory_stats: Some(if running {
            m::ContainerMemoryStats {
                usage: Some(cur.memory_usage),
                max_usage: (cur.memory_max_usage > 0).then_some(cur.memory_max_usage),
                stats: Some(
                    cur.memory_stats
                        .iter()
                        .map(|(k, v)| (k.clone(), *v))
                        .collect(),
                ),
                failcnt: Some(cur.memory_failcnt),
                limit: Some(cur.memory_limit),
                ..Default::default()
            }
        } else {
            m::ContainerMemoryStats::default()
        }),
        ..Default::default()
    };
    let mut nulls = vec![
        "blkio_stats.io_service_bytes_recursive",
        "blkio_stats.io_serviced_recursive",
        "blkio_stats.io_queue_recursive",
        "blkio_stats.io_service_time_recursive",
        "blkio_stats.io_wait_time_recursive",
        "blkio_stats.io_merged_recursive",
        "blkio_stats.io_time_recursive",
        "blkio_stats.sectors_recursive",
    ];
    if running {
        nulls.extend(["cpu_stats.cpu_usage.percpu_usage", "memory_stats.max_usage"]);
        if prev.is_some() {
            nulls.push("precpu_stats.cpu_usage.percpu_usage");
        }
    }
    to_wire(&model, &nulls)
}

/// One entry of `DELETE /images/{name}` and `images/prune` (Docker's
/// `ImageDeleteResponseItem`: `{"Untagged": ref}` or `{"Deleted": id}`).
pub fn image_deleted(item: &barge_image::RemovedItem) -> m::ImageDeleteResponseItem {
    match item {
        barge_image::RemovedItem::Untagged(r) => m::ImageDeleteResponseItem {
            untagged: Some(r.clone()),
            deleted: None,
        },
        barge_image::RemovedItem::Deleted(id) => m::ImageDeleteResponseItem {
            untagged: None,
            deleted: Some(id.clone()),
        },
    }
}

/// Docker's `IdResponse` (`POST /commit`, `POST /containers/{id}/exec`): `{"Id": ...}`.
/// Extension: bollard's `IdResponse` reads `Id` through a serde alias but writes `id`, which
/// dockerd's clients do not read, so the key is written here.
pub fn id_response(id: &str) -> Value {
    json!({ "Id": id })
}

/// What `GET /info` reports about this daemon and host, gathered by the handler.
#[derive(Debug, Clone, Default)]
pub struct InfoFacts {
    /// The host's name (`ID` and `Name`).
    pub hostname: String,
    /// All containers.
    pub containers: i64,
    /// Running containers.
    pub running: i64,
    /// Paused containers.
    pub paused: i64,
    /// Images in the store.
    pub images: i64,
    /// `MemTotal` in bytes.
    pub mem_total: i64,
    /// `"1"` or `"2"`.
    pub cgroup_version: &'static str,
    /// The kernel's release (`uname -r`).
    pub kernel_version: String,
    /// `--data-root`.
    pub docker_root_dir: String,
    /// Runtime name → (path, arguments).
    pub runtimes: BTreeMap<String, (String, Vec<String>)>,
    /// The runtime containers get without `--runtime`.
    pub default_runtime: String,
    /// `SystemTime`, RFC 3339 with nanoseconds.
    pub system_time: String,
    /// CPUs available.
    pub ncpu: i64,
}

/// `GET /info`'s body (Docker's `SystemInfo`). `Plugins.Authorization` and
/// `Swarm.RemoteManagers` are `null`, as dockerd sends them.
pub fn system_info(f: &InfoFacts) -> Value {
    let s = |t: &str| Some(t.to_string());
    let strings = |l: &[&str]| Some(l.iter().map(|x| x.to_string()).collect::<Vec<_>>());
    let commit = || {
        Some(m::Commit {
            id: Some(String::new()),
        })
    };
    let model = m::SystemInfo {
        id: Some(f.hostname.clone()),
        containers: Some(f.containers),
        containers_running: Some(f.running),
        containers_paused: Some(f.paused),
        containers_stopped: Some(f.containers - f.running - f.paused),
        images: Some(f.images),
        driver: s("overlayfs"),
        driver_status: Some(vec![vec![
            "Backing Filesystem".into(),
            "overlay snapshots".into(),
        ]]),
        docker_root_dir: Some(f.docker_root_dir.clone()),
        plugins: Some(m::PluginsInfo {
            volume: Some(Vec::new()),
            network: strings(&["host", "none"]),
            authorization: None,
            log: strings(&["json-file", "none"]),
        }),
        memory_limit: Some(true),
        swap_limit: Some(true),
        cpu_cfs_period: Some(true),
        cpu_cfs_quota: Some(true),
        cpu_shares: Some(true),
        pids_limit: Some(true),
        oom_kill_disable: Some(true),
        ipv4_forwarding: Some(true),
        debug: Some(false),
        nfd: Some(0),
        n_goroutines: Some(0),
        system_time: Some(f.system_time.clone()),
        logging_driver: s("json-file"),
        cgroup_driver: "cgroupfs".parse().ok(),
        cgroup_version: f.cgroup_version.parse().ok(),
        n_events_listener: Some(0),
        kernel_version: Some(f.kernel_version.clone()),
        operating_system: s("barge"),
        os_version: s(""),
        os_type: s("linux"),
        architecture: s(std::env::consts::ARCH),
        ncpu: Some(f.ncpu),
        mem_total: Some(f.mem_total),
        index_server_address: s("https://index.docker.io/v1/"),
        registry_config: Some(m::RegistryServiceConfig {
            insecure_registry_cidrs: Some(Vec::new()),
            index_configs: Some(HashMap::new()),
            mirrors: Some(Vec::new()),
        }),
        http_proxy: s(""),
        https_proxy: s(""),
        no_proxy: s(""),
        name: Some(f.hostname.clone()),
        labels: Some(Vec::new()),
        experimental_build: Some(false),
        server_version: s(env!("CARGO_PKG_VERSION")),
        runtimes: Some(
            f.runtimes
                .iter()
                .map(|(k, (path, args))| {
                    let rt = m::Runtime {
                        path: Some(path.clone()),
                        runtime_args: non_empty(args),
                        status: None,
                    };
                    (k.clone(), rt)
                })
                .collect(),
        ),
        default_runtime: Some(f.default_runtime.clone()),
        swarm: Some(m::SwarmInfo {
            node_id: s(""),
            node_addr: s(""),
            local_node_state: "inactive".parse().ok(),
            control_available: Some(false),
            error: s(""),
            remote_managers: None,
            ..Default::default()
        }),
        live_restore_enabled: Some(true),
        isolation: "".parse().ok(),
        init_binary: s("docker-init"),
        containerd_commit: commit(),
        runc_commit: commit(),
        init_commit: commit(),
        security_options: strings(&["name=seccomp,profile=builtin"]),
        warnings: Some(Vec::new()),
        ..Default::default()
    };
    to_wire(&model, &["Plugins.Authorization", "Swarm.RemoteManagers"])
}

/// `POST /containers/{id}/wait`'s body (Docker's `ContainerWaitResponse`): the exit code, or
/// `-1` and the error's message. `Error` is `null` on success, as barge always sent it.
pub fn container_wait(waited: Result<Option<i64>, String>) -> Value {
    let model = match waited {
        Ok(code) => m::ContainerWaitResponse {
            status_code: code.unwrap_or(0),
            error: None,
        },
        Err(message) => m::ContainerWaitResponse {
            status_code: -1,
            error: Some(m::ContainerWaitExitError {
                message: Some(message),
            }),
        },
    };
    to_wire(&model, &["Error"])
}

/// `GET /version`'s body (Docker's `SystemVersion`) for this daemon.
pub fn system_version(
    version: &str,
    api_version: &str,
    min_api_version: &str,
    arch: &str,
    kernel: &str,
) -> m::SystemVersion {
    m::SystemVersion {
        platform: Some(m::SystemVersionPlatform {
            name: "barge".into(),
        }),
        components: Some(vec![m::SystemVersionComponents {
            name: "Engine".into(),
            version: version.into(),
            details: Some(HashMap::from([
                ("ApiVersion".into(), api_version.into()),
                ("MinAPIVersion".into(), min_api_version.into()),
                ("Os".into(), "linux".into()),
                ("Arch".into(), arch.into()),
                ("KernelVersion".into(), kernel.into()),
                ("Experimental".into(), "false".into()),
            ])),
        }]),
        version: Some(version.into()),
        api_version: Some(api_version.into()),
        min_api_version: Some(min_api_version.into()),
        git_commit: Some(String::new()),
        go_version: Some("rust".into()),
        os: Some("linux".into()),
        arch: Some(arch.into()),
        kernel_version: Some(kernel.into()),
        experimental: None,
        build_time: Some(String::new()),
    }
}

/// `GET /exec/{id}/json`'s body (Docker's `ExecInspectResponse`); `ExitCode` is `null` until
/// the process exited, as dockerd sends it.
pub fn exec_inspect(e: &barge_container::Exec) -> Value {
    let (entry, args) = e
        .options
        .cmd
        .split_first()
        .map(|(a, b)| (a.clone(), b.to_vec()))
        .unwrap_or_default();
    let model = m::ExecInspectResponse {
        can_remove: Some(false),
        detach_keys: Some(e.options.detach_keys.clone().unwrap_or_default()),
        id: Some(e.id.clone()),
        running: Some(e.running),
        exit_code: e.exit_code,
        process_config: Some(m::ProcessConfig {
            privileged: Some(e.options.privileged),
            user: Some(e.options.user.clone().unwrap_or_default()),
            tty: Some(e.options.tty),
            entrypoint: Some(entry),
            arguments: Some(args),
        }),
        open_stdin: Some(e.options.attach_stdin),
        open_stderr: Some(e.options.attach_stderr),
        open_stdout: Some(e.options.attach_stdout),
        container_id: Some(e.container_id.clone()),
        pid: Some(e.pid),
    };
    to_wire(&model, &["ExitCode"])
}

/// An image's creation time in seconds since the epoch (the config's `created`, else when it
/// was added).
pub fn image_created_unix(img: &Image) -> i64 {
    img.config
        .created
        .as_deref()
        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
        .map(|d| d.timestamp())
        .unwrap_or(img.added)
}

fn image_created_rfc3339(img: &Image) -> String {
    img.config.created.clone().unwrap_or_else(|| {
        chrono::DateTime::from_timestamp(img.added, 0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    })
}

/// A byte count as the API's `int64` (saturating).
pub fn size_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One `GET /images/json` entry (Docker's `ImageSummary`).
pub fn image_summary(img: &Image) -> Value {
    image_summary_wire(&image_summary_model(img))
}

/// The [`m::ImageSummary`] model behind [`image_summary`]: `SharedSize` and `Containers` are
/// -1 ("not computed"), as in dockerd's image list.
pub fn image_summary_model(img: &Image) -> m::ImageSummary {
    m::ImageSummary {
        id: img.id.clone(),
        parent_id: String::new(),
        repo_tags: img.repo_tags.clone(),
        repo_digests: img.repo_digests.clone(),
        // dockerd sends 0 for an image whose config has no `created`.
        created: if img.config.created.is_some() {
            image_created_unix(img)
        } else {
            0
        },
        size: size_i64(img.size),
        shared_size: -1,
        labels: img
            .config
            .config
            .labels
            .as_ref()
            .map(hash)
            .unwrap_or_default(),
        containers: -1,
        manifests: None,
        descriptor: None,
    }
}

/// A [`m::ImageSummary`] on the wire. Extensions: `Labels` is null for an image without labels
/// (dockerd's nil map; the model writes `{}`), and `VirtualSize` (removed from the API in 1.44,
/// still read by clients negotiating older versions) is the size.
fn image_summary_wire(model: &m::ImageSummary) -> Value {
    let mut v = to_wire(model, &[]);
    if model.labels.is_empty() {
        v["Labels"] = Value::Null;
    }
    v["VirtualSize"] = json!(model.size);
    v
}

/// One build cache record of `GET /system/df` (Docker's `BuildCache`): a cached build step,
/// `size` bytes (the layer it made), `created` RFC 3339.
pub struct BuildCacheEntry {
    /// The record's ID (25 hex digits, as BuildKit's).
    pub id: String,
    /// Bytes of the layer the step made.
    pub size: u64,
    /// When the cache was last written (RFC 3339).
    pub created: String,
}

/// `GET /system/df`'s body in the shape dockerd sends for API versions before 1.52
/// (`LayersSize`, `Images`, `Containers`, `Volumes`, `BuildCache`; moby's
/// `types.DiskUsage`), which every client in use reads: the 1.52 model
/// (`SystemDataUsageResponse`, `ImageUsage`/`ContainerUsage`/...) is not this shape, so the top
/// level is this crate's, and each item is the API's model with its sizes set:
/// `Images[]` with `Size`/`SharedSize`/`Containers`, `Containers[]` with `SizeRw`/`SizeRootFs`,
/// `Volumes[]` with `UsageData`.
pub fn system_df(
    layers_size: u64,
    images: &[m::ImageSummary],
    containers: &[m::ContainerSummary],
    volumes: &[m::Volume],
    build_cache: &[BuildCacheEntry],
) -> Value {
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct DiskUsage {
        layers_size: i64,
        images: Vec<Value>,
        containers: Vec<Value>,
        volumes: Vec<Value>,
        build_cache: Vec<Value>,
    }
    let body = DiskUsage {
        layers_size: size_i64(layers_size),
        images: images.iter().map(image_summary_wire).collect(),
        containers: containers.iter().map(|c| to_wire(c, &[])).collect(),
        volumes: volumes.iter().map(volume_wire).collect(),
        build_cache: build_cache
            .iter()
            .map(|b| m::BuildCache {
                id: Some(b.id.clone()),
                parents: Some(Vec::new()),
                typ: Some(m::BuildCacheTypeEnum::REGULAR),
                description: Some(String::new()),
                in_use: Some(false),
                shared: Some(false),
                size: Some(size_i64(b.size)),
                created_at: Some(b.created.clone()),
                last_used_at: Some(b.created.clone()),
                usage_count: Some(1),
            })
            .map(|model| {
                // Extension: `Parent` (deprecated in 1.42, dropped from the model), which
                // dockerd 20.10 still sends.
                let mut v = to_wire(&model, &[]);
                v["Parent"] = json!("");
                v
            })
            .collect(),
    };
    serde_json::to_value(body).unwrap_or(Value::Null)
}

/// The image's `config` as the API's `ImageConfig`.
fn image_config(c: &barge_image::ContainerConfig) -> m::ImageConfig {
    let keys =
        |m: &Option<BTreeMap<String, Value>>| m.as_ref().map(|m| m.keys().cloned().collect());
    m::ImageConfig {
        user: c.user.clone(),
        exposed_ports: keys(&c.exposed_ports),
        env: c.env.clone(),
        cmd: c.cmd.clone(),
        healthcheck: c.healthcheck.as_ref().map(health_config),
        args_escaped: c.args_escaped,
        volumes: keys(&c.volumes),
        working_dir: c.working_dir.clone(),
        entrypoint: c.entrypoint.clone(),
        on_build: c.on_build.clone(),
        labels: c.labels.as_ref().map(hash),
        stop_signal: c.stop_signal.clone(),
        shell: None,
    }
}

/// `GET /images/{name}/json`'s body (Docker's `ImageInspect`).
/// An empty `container.Config` as dockerd serialised it (`ContainerConfig` of an image that
/// was not committed from a container, before API 1.45).
pub fn empty_container_config() -> Value {
    json!({
        "Hostname": "", "Domainname": "", "User": "", "AttachStdin": false,
        "AttachStdout": false, "AttachStderr": false, "Tty": false, "OpenStdin": false,
        "StdinOnce": false, "Env": null, "Cmd": null, "Image": "", "Volumes": null,
        "WorkingDir": "", "Entrypoint": null, "OnBuild": null, "Labels": null
    })
}

pub fn image_inspect(img: &Image) -> Value {
    let c = &img.config;
    let model = m::ImageInspect {
        id: Some(img.id.clone()),
        descriptor: Some(m::OciDescriptor {
            media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
            digest: Some(img.manifest_digest.clone()),
            ..Default::default()
        }),
        repo_tags: Some(img.repo_tags.clone()),
        repo_digests: Some(img.repo_digests.clone()),
        comment: Some(
            c.history
                .last()
                .and_then(|h| h.comment.clone())
                .unwrap_or_default(),
        ),
        created: Some(image_created_rfc3339(img)),
        author: Some(c.author.clone().unwrap_or_default()),
        config: Some(image_config(&c.config)),
        architecture: Some(c.architecture.clone()),
        variant: c.variant.clone(),
        os: Some(c.os.clone()),
        size: Some(size_i64(img.size)),
        graph_driver: Some(m::DriverData {
            name: "overlayfs".into(),
            data: HashMap::new(),
        }),
        root_fs: Some(m::ImageInspectRootFs {
            typ: "layers".into(),
            layers: Some(c.rootfs.diff_ids.clone()),
        }),
        metadata: Some(m::ImageInspectMetadata {
            last_tag_time: Some(ZERO_TIME.into()),
        }),
        ..Default::default()
    };
    let mut v = to_wire(&model, &[]);
    // Extensions: fields dockerd 27 (API 1.47) sends that the 1.53 model dropped (`Parent`,
    // `DockerVersion`, `VirtualSize`), and `GraphDriver.Data` as null (the model's map is not
    // optional).
    // The image a commit was made on (`parent`, a field of Docker's v1 image JSON that barge's
    // commit writes); dockerd keeps it in its store's metadata.
    v["Parent"] = img.config.extra.get("parent").cloned().unwrap_or(json!(""));
    v["DockerVersion"] = json!("");
    v["VirtualSize"] = json!(img.size);
    v["GraphDriver"]["Data"] = Value::Null;
    // Extension: before API 1.50 dockerd's `Config` is a whole `container.Config`, so it also
    // sends the fields without `omitempty` that an image config does not have (empty), and
    // nil slices/maps as null; the config's own `Hostname` when the image has one.
    if let Some(cfg) = v["Config"].as_object_mut() {
        let legacy = [
            (
                "Hostname",
                json!(c.config.hostname.clone().unwrap_or_default()),
            ),
            ("Domainname", json!("")),
            ("User", json!("")),
            ("AttachStdin", json!(false)),
            ("AttachStdout", json!(false)),
            ("AttachStderr", json!(false)),
            ("Tty", json!(false)),
            ("OpenStdin", json!(false)),
            ("StdinOnce", json!(false)),
            ("Env", Value::Null),
            ("Cmd", Value::Null),
            ("Image", json!("")),
            ("Volumes", Value::Null),
            ("WorkingDir", json!("")),
            ("Entrypoint", Value::Null),
            ("OnBuild", Value::Null),
            ("Labels", Value::Null),
        ];
        for (k, default) in legacy {
            cfg.entry(k).or_insert(default);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_wire_puts_back_nulls_the_model_skipped() {
        let model = m::ContainerState {
            pid: Some(3),
            ..Default::default()
        };
        let v = to_wire(&model, &["Error", "Health.Status", "Pid"]);
        assert_eq!(v, json!({"Pid": 3, "Error": null}));
    }

    #[test]
    fn summary_fields_keep_their_wire_types() {
        let v = to_wire(
            &m::ContainerSummary {
                created: Some(5),
                state: "running".parse().ok(),
                ..Default::default()
            },
            &[],
        );
        assert_eq!(v, json!({"Created": 5, "State": "running"}));
    }
}
