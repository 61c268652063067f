//! `POST /containers/create`: Docker's `ContainerCreateBody` (the parts barge reads) parsed
//! and checked into the engine's `CreateOptions` ([`CreateBody::into_options`]), and the
//! handler.
//!
//! **Invariants:** parsing is pure (no engine state: unit-tested below); a value it checks is
//! refused with a 400 (dockerd's message) before the engine is asked; unknown fields are
//! ignored.

use super::*;

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
    attach_stdin: Option<bool>,
    attach_stdout: Option<bool>,
    attach_stderr: Option<bool>,
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
    networking_config: Option<crate::api::networks::NetworkingConfigBody>,
    /// Not a field of Docker's `ContainerConfig`: docker-py's `create_container(runtime=...)`
    /// sends it here rather than in `HostConfig`, where dockerd ignores it (its default
    /// runtime, `runc`, runs the container). barge takes it for `HostConfig.Runtime` when
    /// that is empty and it names a configured runtime, and ignores it otherwise, as dockerd.
    runtime: Option<String>,
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
    port_bindings: Option<BTreeMap<String, Option<Vec<crate::api::networks::PortBindingBody>>>>,
    publish_all_ports: Option<bool>,
    console_size: Option<Vec<u16>>,
    extra_hosts: Option<Vec<String>>,
    dns: Option<Vec<String>>,
    dns_search: Option<Vec<String>>,
    dns_options: Option<Vec<String>>,
    cgroupns_mode: Option<String>,
    device_cgroup_rules: Option<Vec<String>>,
    pid_mode: Option<String>,
    ipc_mode: Option<String>,
    #[serde(rename = "UTSMode")]
    uts_mode: Option<String>,
    isolation: Option<String>,
    group_add: Option<Vec<String>>,
    cpuset_cpus: Option<String>,
    memory_swappiness: Option<i64>,
    volume_driver: Option<String>,
    links: Option<Vec<String>>,
    ulimits: Option<Vec<UlimitBody>>,
    sysctls: Option<BTreeMap<String, String>>,
    devices: Option<Vec<DeviceBody>>,
    oom_score_adj: Option<i64>,
    memory_reservation: Option<i64>,
    blkio_weight: Option<u16>,
    blkio_weight_device: Option<Vec<WeightDeviceBody>>,
    blkio_device_read_bps: Option<Vec<ThrottleDeviceBody>>,
    blkio_device_write_bps: Option<Vec<ThrottleDeviceBody>>,
    #[serde(rename = "BlkioDeviceReadIOps")]
    blkio_device_read_iops: Option<Vec<ThrottleDeviceBody>>,
    #[serde(rename = "BlkioDeviceWriteIOps")]
    blkio_device_write_iops: Option<Vec<ThrottleDeviceBody>>,
    cpuset_mems: Option<String>,
    cgroup_parent: Option<String>,
    /// docker-py sends `CPURealtimePeriod` (Go's field name; dockerd's JSON decoding ignores
    /// case).
    #[serde(alias = "CPURealtimePeriod")]
    cpu_realtime_period: Option<i64>,
    #[serde(alias = "CPURealtimeRuntime")]
    cpu_realtime_runtime: Option<i64>,
    masked_paths: Option<Vec<String>>,
    readonly_paths: Option<Vec<String>>,
    annotations: Option<BTreeMap<String, String>>,
    storage_opt: Option<BTreeMap<String, String>>,
    device_requests: Option<Vec<DeviceRequestBody>>,
    userns_mode: Option<String>,
}

/// Docker's `WeightDevice` (`BlkioWeightDevice` entry).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct WeightDeviceBody {
    path: Option<String>,
    weight: Option<u16>,
}

/// Docker's `ThrottleDevice` (`BlkioDevice{Read,Write}{Bps,IOps}` entry).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ThrottleDeviceBody {
    path: Option<String>,
    rate: Option<u64>,
}

impl ThrottleDeviceBody {
    fn into_engine(self) -> barge_container::ThrottleDevice {
        barge_container::ThrottleDevice {
            path: self.path.unwrap_or_default(),
            rate: self.rate.unwrap_or(0),
        }
    }
}

/// Docker's `DeviceRequest` (`--gpus`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DeviceRequestBody {
    driver: Option<String>,
    count: Option<i64>,
    #[serde(rename = "DeviceIDs")]
    device_ids: Option<Vec<String>>,
    capabilities: Option<Vec<Vec<String>>>,
    options: Option<BTreeMap<String, String>>,
}

/// Docker's `Resources.Ulimits` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct UlimitBody {
    name: Option<String>,
    soft: Option<i64>,
    hard: Option<i64>,
}

/// Docker's `DeviceMapping`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DeviceBody {
    path_on_host: Option<String>,
    path_in_container: Option<String>,
    cgroup_permissions: Option<String>,
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
    /// Converts the wire body into the engine's options (current API version).
    #[cfg(test)]
    pub fn into_options(
        self,
        name: Option<String>,
        platform: Option<String>,
    ) -> Result<CreateOptions, ApiError> {
        self.into_options_for(name, platform, None)
    }

    /// [`CreateBody::into_options`] for a request of API version `version` (the path's
    /// `/v1.xx`; `None` = current): `HostConfig.Annotations` is ignored before 1.43, as
    /// dockerd does.
    pub fn into_options_for(
        self,
        name: Option<String>,
        platform: Option<String>,
        version: Option<&crate::api::ApiVersion>,
    ) -> Result<CreateOptions, ApiError> {
        let image = self
            .image
            .filter(|i| !i.is_empty())
            .ok_or_else(|| ApiError::bad_request("config is missing the Image field"))?;
        let hc = self.host_config.unwrap_or_default();
        let throttle =
            |l: Option<Vec<ThrottleDeviceBody>>| -> Vec<barge_container::ThrottleDevice> {
                l.unwrap_or_default()
                    .into_iter()
                    .map(ThrottleDeviceBody::into_engine)
                    .collect()
            };
        let mut nano_cpus = hc.nano_cpus.unwrap_or(0);
        let from_quota = crate::api::lifecycle::nano_cpus_of_quota(hc.cpu_quota, hc.cpu_period)?;
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
            attach_stdin: self.attach_stdin.unwrap_or(false),
            attach_stdout: self.attach_stdout.unwrap_or(false),
            attach_stderr: self.attach_stderr.unwrap_or(false),
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
                console_size: crate::api::exec::console_size(hc.console_size.as_deref()),
                extra_hosts: hc.extra_hosts.unwrap_or_default(),
                dns: hc.dns.unwrap_or_default(),
                dns_search: hc.dns_search.unwrap_or_default(),
                dns_options: hc.dns_options.unwrap_or_default(),
                cgroupns_mode: hc.cgroupns_mode.unwrap_or_default(),
                device_cgroup_rules: hc.device_cgroup_rules.unwrap_or_default(),
                pid_mode: hc.pid_mode.unwrap_or_default(),
                ipc_mode: hc.ipc_mode.unwrap_or_default(),
                uts_mode: hc.uts_mode.unwrap_or_default(),
                isolation: hc.isolation.unwrap_or_default(),
                group_add: hc.group_add.unwrap_or_default(),
                cpuset_cpus: hc.cpuset_cpus.unwrap_or_default(),
                memory_swappiness: hc.memory_swappiness,
                volume_driver: hc.volume_driver.unwrap_or_default(),
                links: hc.links.unwrap_or_default(),
                ulimits: hc
                    .ulimits
                    .unwrap_or_default()
                    .into_iter()
                    .map(|u| barge_container::Ulimit {
                        name: u.name.unwrap_or_default(),
                        soft: u.soft.unwrap_or(0),
                        hard: u.hard.unwrap_or(0),
                    })
                    .collect(),
                sysctls: hc.sysctls.unwrap_or_default(),
                devices: hc
                    .devices
                    .unwrap_or_default()
                    .into_iter()
                    .map(|d| barge_container::DeviceMapping {
                        path_on_host: d.path_on_host.unwrap_or_default(),
                        path_in_container: d.path_in_container.unwrap_or_default(),
                        cgroup_permissions: d.cgroup_permissions.unwrap_or_default(),
                    })
                    .collect(),
                oom_score_adj: hc.oom_score_adj.unwrap_or(0),
                memory_reservation: hc.memory_reservation.unwrap_or(0),
                blkio_weight: hc.blkio_weight.unwrap_or(0),
                blkio_weight_device: hc
                    .blkio_weight_device
                    .unwrap_or_default()
                    .into_iter()
                    .map(|w| barge_container::WeightDevice {
                        path: w.path.unwrap_or_default(),
                        weight: w.weight.unwrap_or(0),
                    })
                    .collect(),
                blkio_device_read_bps: throttle(hc.blkio_device_read_bps),
                blkio_device_write_bps: throttle(hc.blkio_device_write_bps),
                blkio_device_read_iops: throttle(hc.blkio_device_read_iops),
                blkio_device_write_iops: throttle(hc.blkio_device_write_iops),
                cpuset_mems: hc.cpuset_mems.unwrap_or_default(),
                cgroup_parent: hc.cgroup_parent.unwrap_or_default(),
                cpu_realtime_period: hc.cpu_realtime_period.unwrap_or(0),
                cpu_realtime_runtime: hc.cpu_realtime_runtime.unwrap_or(0),
                masked_paths: hc.masked_paths,
                readonly_paths: hc.readonly_paths,
                annotations: if version.is_some_and(|v| v.older_than(1, 43)) {
                    BTreeMap::new()
                } else {
                    hc.annotations.unwrap_or_default()
                },
                storage_opt: hc.storage_opt.unwrap_or_default(),
                device_requests: hc
                    .device_requests
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| barge_container::DeviceRequest {
                        driver: r.driver.unwrap_or_default(),
                        count: r.count.unwrap_or(0),
                        device_ids: r.device_ids.unwrap_or_default(),
                        capabilities: r.capabilities.unwrap_or_default(),
                        options: r.options.unwrap_or_default(),
                    })
                    .collect(),
                userns_mode: hc.userns_mode.unwrap_or_default(),
                ..Default::default()
            },
            exposed_ports: Vec::new(),
        };
        crate::api::networks::apply_create(
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
    version: Option<axum::Extension<crate::api::ApiVersion>>,
    RawQuery(raw): RawQuery,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    let mut parsed: CreateBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid container config JSON: {e}")))?;
    if let Some(rt) = parsed
        .runtime
        .take()
        .filter(|rt| state.runtimes.contains_key(rt))
    {
        let hc = parsed.host_config.get_or_insert_with(Default::default);
        if hc.runtime.as_deref().is_none_or(str::is_empty) {
            hc.runtime = Some(rt);
        }
    }
    let opts = parsed.into_options_for(
        q.get("name").map(String::from),
        q.get("platform").map(String::from),
        version.as_ref().map(|v| &v.0),
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
            warnings: c.warnings,
        }),
    )
        .into_response())
}

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

    /// The block I/O, cpuset, real-time, cgroup parent, paths, annotations, storage, device
    /// request and userns fields are read, and inspect's `HostConfig` echoes them;
    /// `Annotations` is ignored before API 1.43.
    #[test]
    fn hostconfig_resource_fields_round_trip() {
        let body = r#"{"Image":"x","HostConfig":{"BlkioWeight":300,
            "BlkioWeightDevice":[{"Path":"/dev/vda","Weight":200}],
            "BlkioDeviceReadBps":[{"Path":"/dev/vda","Rate":1048576}],
            "BlkioDeviceWriteIOps":[{"Path":"/dev/vda","Rate":100}],
            "CpusetMems":"0","CgroupParent":"mine","CPURealtimePeriod":1000000,
            "CpuRealtimeRuntime":950000,"MaskedPaths":[],"ReadonlyPaths":["/proc/sys"],
            "Annotations":{"a":"b"},"StorageOpt":{"size":"1G"},"UsernsMode":"host",
            "DeviceRequests":[{"Driver":"","Count":-1,"DeviceIDs":null,"Capabilities":[["gpu"]],"Options":{}}]}}"#;
        let o = serde_json::from_str::<CreateBody>(body)
            .unwrap()
            .into_options(None, None)
            .unwrap();
        let h = &o.host;
        assert_eq!(h.blkio_weight, 300);
        assert_eq!(h.blkio_weight_device[0].weight, 200);
        assert_eq!(h.blkio_device_read_bps[0].rate, 1 << 20);
        assert_eq!(h.blkio_device_write_iops[0].path, "/dev/vda");
        assert_eq!(
            (h.cpuset_mems.as_str(), h.cgroup_parent.as_str()),
            ("0", "mine")
        );
        assert_eq!(
            (h.cpu_realtime_period, h.cpu_realtime_runtime),
            (1_000_000, 950_000)
        );
        assert_eq!(h.masked_paths, Some(vec![]));
        assert_eq!(h.annotations["a"], "b");
        assert_eq!(h.storage_opt["size"], "1G");
        assert_eq!(
            h.device_requests[0].capabilities,
            vec![vec!["gpu".to_string()]]
        );
        let c = barge_container::Container {
            options: o.clone(),
            ..Default::default()
        };
        let v = serde_json::to_value(crate::wire::host_config(&c)).unwrap();
        assert_eq!(v["BlkioWeight"], 300);
        assert_eq!(
            v["BlkioWeightDevice"],
            json!([{"Path":"/dev/vda","Weight":200}])
        );
        assert_eq!(
            v["BlkioDeviceReadBps"],
            json!([{"Path":"/dev/vda","Rate":1048576}])
        );
        assert_eq!(
            v["BlkioDeviceWriteIOps"],
            json!([{"Path":"/dev/vda","Rate":100}])
        );
        assert_eq!(v["CpusetMems"], "0");
        assert_eq!(v["CgroupParent"], "mine");
        assert_eq!(v["CpuRealtimeRuntime"], 950000);
        assert_eq!(v["MaskedPaths"], json!([]));
        assert_eq!(v["ReadonlyPaths"], json!(["/proc/sys"]));
        assert_eq!(v["Annotations"], json!({"a":"b"}));
        assert_eq!(v["StorageOpt"], json!({"size":"1G"}));
        assert_eq!(v["UsernsMode"], "host");
        assert_eq!(v["DeviceRequests"][0]["Capabilities"], json!([["gpu"]]));
        let old = serde_json::from_str::<CreateBody>(body)
            .unwrap()
            .into_options_for(None, None, Some(&crate::api::ApiVersion("1.41".into())))
            .unwrap();
        assert!(old.host.annotations.is_empty());
    }
}
