//! Engine-level container types. These are barge's own (persisted as `container.json`);
//! the daemon converts them to and from Docker Engine API shapes. Field meanings follow Docker's
//! [ContainerConfig/HostConfig](https://docs.docker.com/reference/api/engine/version/v1.47/#tag/Container/operation/ContainerCreate).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where the engine keeps things and which OCI runtimes it may use.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// `<data-root>`; containers live in `<data-root>/containers/<id>/`.
    pub data_root: PathBuf,
    /// `<exec-root>` (default `/run/barge`): runtime state, monitor sockets.
    pub exec_root: PathBuf,
    /// The barge binary, re-executed as `barge monitor ...` for each container.
    pub self_exe: PathBuf,
    /// OCI runtimes by name (e.g. `runc` → `/usr/sbin/runc`).
    pub runtimes: BTreeMap<String, PathBuf>,
    /// Leading arguments a runtime is run with, by name (before runc's global flags): the
    /// embedded runtime is the barge binary itself, run as `barge runtime ...`
    /// (`barge` → `["runtime"]`). Runtimes not listed get none.
    pub runtime_args: BTreeMap<String, Vec<String>>,
    /// Name of the runtime used when a container names none.
    pub default_runtime: String,
    /// A static init binary (tini-like) bind-mounted as `/sbin/docker-init` for `--init`.
    pub init_path: PathBuf,
    /// Bridge networking; without it every network mode but `host` and `container:` behaves
    /// as `none` (unit and runtime tests).
    pub networks: Option<std::sync::Arc<barge_network::Networks>>,
}

/// What a user asks for when creating a container (Docker's `Config` + `HostConfig`, the parts
/// barge supports). `None`/empty means "use the image's value / Docker's default".
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CreateOptions {
    pub name: Option<String>,
    /// Image as the user named it (`busybox:1.35`, an ID, ...).
    pub image: String,
    /// Platform wanted, `os/arch[/variant]`.
    pub platform: Option<String>,
    pub cmd: Option<Vec<String>>,
    /// `Some(vec![])` clears the image's entrypoint (`--entrypoint ""`).
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    /// Docker's `Config.AttachStdin/AttachStdout/AttachStderr`: which streams the creating
    /// client meant to attach (`docker run` without `-d` sets stdout/stderr); echoed by inspect.
    #[serde(default)]
    pub attach_stdin: bool,
    #[serde(default)]
    pub attach_stdout: bool,
    #[serde(default)]
    pub attach_stderr: bool,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
    /// Seconds.
    pub stop_timeout: Option<i64>,
    /// Docker's `Config.Volumes`: container paths that get an anonymous volume (`-v /path`),
    /// in addition to the image's `VOLUME`s.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// `--health-*` / `Config.Healthcheck`: merged field by field over the image's
    /// `HEALTHCHECK` (Test `["NONE"]` disables it).
    #[serde(default)]
    pub healthcheck: Option<barge_image::HealthConfig>,
    /// Extra exposed ports (`--expose`, Docker's `Config.ExposedPorts`), `port/proto`.
    #[serde(default)]
    pub exposed_ports: Vec<String>,
    pub host: HostOptions,
}

/// Docker's `HostConfig`, the parts barge supports.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HostOptions {
    /// `none`, `host`, `default`/`bridge`, `container:<id>`, or a user-defined network's name.
    pub network_mode: String,
    /// Per-network endpoint settings (Docker's `NetworkingConfig.EndpointsConfig`), by network
    /// name; the network of `network_mode` first, then further networks to join at start.
    #[serde(default)]
    pub endpoints: Vec<barge_network::EndpointRequest>,
    /// Published ports (`-p`, Docker's `HostConfig.PortBindings`).
    #[serde(default)]
    pub port_bindings: Vec<barge_network::PortBinding>,
    /// `-P`: publish every exposed port on a random host port.
    #[serde(default)]
    pub publish_all_ports: bool,
    /// `(rows, columns)` of the container's TTY from the start (Docker's `ConsoleSize`).
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
    /// `--add-host name:ip` lines for `/etc/hosts`.
    #[serde(default)]
    pub extra_hosts: Vec<String>,
    /// `--dns`, `--dns-search`, `--dns-option` (replace the defaults in `/etc/resolv.conf`).
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default)]
    pub dns_search: Vec<String>,
    #[serde(default)]
    pub dns_options: Vec<String>,
    pub init: bool,
    /// Bytes; 0 = unlimited.
    pub memory: i64,
    /// Bytes; 0 = default, -1 = unlimited.
    pub memory_swap: i64,
    /// CPU quota in 1e-9 CPUs (`--cpus 1.5` = 1_500_000_000); 0 = unlimited.
    pub nano_cpus: i64,
    pub cpu_shares: i64,
    /// 0 or negative = unlimited.
    pub pids_limit: i64,
    pub readonly_rootfs: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    /// e.g. `no-new-privileges`, `no-new-privileges:true`, `seccomp=unconfined`.
    pub security_opt: Vec<String>,
    pub auto_remove: bool,
    /// Log driver (`json-file` or `none`) and its options (`max-size`, `max-file`).
    pub log_type: String,
    pub log_opts: BTreeMap<String, String>,
    /// OCI runtime name; `None` = default.
    pub runtime: Option<String>,
    /// `no` (or empty), `always`, `unless-stopped`, `on-failure` (see `restart.rs`).
    pub restart_policy: String,
    pub restart_max_retries: i64,
    pub oom_kill_disable: bool,
    pub shm_size: i64,
    /// `HostConfig.Binds`: `-v SRC:DEST[:MODE]` strings (see [`crate::mounts::parse_bind`]).
    #[serde(default)]
    pub binds: Vec<String>,
    /// `HostConfig.Mounts` (`--mount`).
    #[serde(default)]
    pub mounts: Vec<crate::mounts::MountSpec>,
    /// `HostConfig.Tmpfs`: container path → mount options (`size=64m,mode=1777`).
    #[serde(default)]
    pub tmpfs: BTreeMap<String, String>,
    /// `HostConfig.VolumesFrom`: `CONTAINER[:ro|rw]`.
    #[serde(default)]
    pub volumes_from: Vec<String>,
    /// `HostConfig.CgroupnsMode`: `private` or `host`; resolved at create (empty = the
    /// default, `private` on cgroup v2 and `host` on v1, as dockerd's).
    #[serde(default)]
    pub cgroupns_mode: String,
    /// `HostConfig.DeviceCgroupRules`: `TYPE MAJOR:MINOR ACCESS` (`c 1:3 mr`; `*` = any).
    #[serde(default)]
    pub device_cgroup_rules: Vec<String>,
    /// `HostConfig.PidMode`: empty (own PID namespace), `host` or `container:<name|id>` (a
    /// running container's PID namespace).
    #[serde(default)]
    pub pid_mode: String,
    /// `HostConfig.UTSMode`: empty (own UTS namespace), `host`, or `sandbox:<key>` (a pod
    /// sandbox's UTS namespace, [`barge_network::PodNamespaces`]; barge's node agent only).
    #[serde(default)]
    pub uts_mode: String,
    /// `HostConfig.IpcMode`: `private` (the default, set at create), `shareable`, `host`,
    /// `none` (no `/dev/shm`) or `container:<name|id>` (a running `shareable` container's IPC
    /// namespace and `/dev/shm`); `sandbox:<key>`: a pod sandbox's IPC namespace and
    /// `/dev/shm` ([`barge_network::PodNamespaces`]; barge's node agent only).
    #[serde(default)]
    pub ipc_mode: String,
    /// `HostConfig.Isolation`: empty or `default`, the only technology on Linux.
    #[serde(default)]
    pub isolation: String,
    /// `HostConfig.GroupAdd`: supplementary groups, by name (the container's `/etc/group`)
    /// or number.
    #[serde(default)]
    pub group_add: Vec<String>,
    /// `HostConfig.CpusetCpus`: the CPUs the container may run on (`0-1,3`).
    #[serde(default)]
    pub cpuset_cpus: String,
    /// `HostConfig.MemorySwappiness` (0-100; `None` = the kernel's). Kept only on cgroup v1.
    #[serde(default)]
    pub memory_swappiness: Option<i64>,
    /// `HostConfig.VolumeDriver`: the driver of the volumes the container creates (`local`).
    #[serde(default)]
    pub volume_driver: String,
    /// Legacy links (`--link NAME[:ALIAS]`) as `TARGET:ALIAS`, target by name; inspect shows
    /// dockerd's `/TARGET:/THIS/ALIAS`.
    #[serde(default)]
    pub links: Vec<String>,
    /// `HostConfig.Ulimits`: resource limits of the container's processes (`setrlimit(2)`),
    /// the OCI spec's `process.rlimits`.
    #[serde(default)]
    pub ulimits: Vec<Ulimit>,
    /// `HostConfig.Sysctls`: namespaced kernel parameters set in the container's namespaces
    /// (the OCI spec's `linux.sysctl`).
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    /// `HostConfig.Devices`: host devices made available in the container (`--device`).
    #[serde(default)]
    pub devices: Vec<DeviceMapping>,
    /// `HostConfig.OomScoreAdj` (-1000 to 1000): the container process's `oom_score_adj`.
    #[serde(default)]
    pub oom_score_adj: i64,
    /// `HostConfig.MemoryReservation`: the memory soft limit in bytes (0 = none).
    #[serde(default)]
    pub memory_reservation: i64,
    /// `HostConfig.BlkioWeight`: the block I/O weight (10-1000, 0 = unset); dropped at create
    /// with dockerd's warning where the kernel has no `blkio.weight` (no CFQ/BFQ).
    #[serde(default)]
    pub blkio_weight: u16,
    /// `HostConfig.BlkioWeightDevice`: per-device weights (`/dev/sda:200`).
    #[serde(default)]
    pub blkio_weight_device: Vec<WeightDevice>,
    /// `HostConfig.BlkioDeviceReadBps`: read limits in bytes per second, per device.
    #[serde(default)]
    pub blkio_device_read_bps: Vec<ThrottleDevice>,
    /// `HostConfig.BlkioDeviceWriteBps`: write limits in bytes per second, per device.
    #[serde(default)]
    pub blkio_device_write_bps: Vec<ThrottleDevice>,
    /// `HostConfig.BlkioDeviceReadIOps`: read limits in operations per second, per device.
    #[serde(default)]
    pub blkio_device_read_iops: Vec<ThrottleDevice>,
    /// `HostConfig.BlkioDeviceWriteIOps`: write limits in operations per second, per device.
    #[serde(default)]
    pub blkio_device_write_iops: Vec<ThrottleDevice>,
    /// `HostConfig.CpusetMems`: the memory nodes the container may use (`0-1,3`).
    #[serde(default)]
    pub cpuset_mems: String,
    /// `HostConfig.CgroupParent`: the cgroup under which the container's cgroup
    /// (`<parent>/<id>`, in every v1 hierarchy) is made; empty = `/barge`. See
    /// [`crate::Container::cgroup_path`].
    #[serde(default)]
    pub cgroup_parent: String,
    /// `HostConfig.CpuRealtimePeriod`: `cpu.rt_period_us` in microseconds (0 = unset).
    #[serde(default)]
    pub cpu_realtime_period: i64,
    /// `HostConfig.CpuRealtimeRuntime`: `cpu.rt_runtime_us` in microseconds (0 = unset).
    #[serde(default)]
    pub cpu_realtime_runtime: i64,
    /// `HostConfig.MaskedPaths`: paths masked in the container; `None` = the defaults (set at
    /// create for an unprivileged container, as dockerd does).
    #[serde(default)]
    pub masked_paths: Option<Vec<String>>,
    /// `HostConfig.ReadonlyPaths`: paths made read-only; `None` = the defaults (set at create
    /// for an unprivileged container).
    #[serde(default)]
    pub readonly_paths: Option<Vec<String>>,
    /// `HostConfig.Annotations` (API 1.43+): the OCI spec's `annotations`.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// `HostConfig.StorageOpt`: storage driver options; refused (no quota support).
    #[serde(default)]
    pub storage_opt: BTreeMap<String, String>,
    /// `HostConfig.DeviceRequests` (`--gpus`): kept for inspect; no device driver exists, so
    /// a start with any is refused as dockerd refuses it without one.
    #[serde(default)]
    pub device_requests: Vec<DeviceRequest>,
    /// `HostConfig.UsernsMode`: empty or `host` (no user namespace remapping is configured).
    #[serde(default)]
    pub userns_mode: String,
}

/// One `HostConfig.BlkioWeightDevice` entry (Docker's `WeightDevice`): a block device path
/// and its weight (10-1000, 0 = the device's default).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WeightDevice {
    pub path: String,
    pub weight: u16,
}

/// One `HostConfig.BlkioDevice{Read,Write}{Bps,IOps}` entry (Docker's `ThrottleDevice`): a
/// block device path and its rate (bytes or operations per second).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ThrottleDevice {
    pub path: String,
    pub rate: u64,
}

/// One `HostConfig.DeviceRequests` entry (Docker's `DeviceRequest`, `--gpus`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceRequest {
    pub driver: String,
    /// -1 = all.
    pub count: i64,
    pub device_ids: Vec<String>,
    /// OR of ANDs of capabilities (`[["gpu"]]`).
    pub capabilities: Vec<Vec<String>>,
    pub options: BTreeMap<String, String>,
}

/// One `HostConfig.Ulimits` entry (Docker's `Resources.Ulimits`): `name` as docker's
/// `--ulimit` spells it (`nofile`, `nproc`, `core`, …), soft and hard values (-1 = unlimited).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// One `HostConfig.Devices` entry (Docker's `DeviceMapping`): a host device node (or a
/// directory of them) at a path in the container, with its device cgroup permissions (`rwm`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceMapping {
    pub path_on_host: String,
    pub path_in_container: String,
    pub cgroup_permissions: String,
}

/// Docker's container states (`State.Status`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    /// Docker's spelling (`created`, `running`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
}

/// Docker's `State`. Times are RFC 3339 with nanoseconds; Docker's zero time
/// `0001-01-01T00:00:00Z` when unset.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub status: Status,
    pub pid: i64,
    pub exit_code: i64,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    pub oom_killed: bool,
    /// Health of a container with a health check (`State.Health`), kept across restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
}

/// Docker's `State.Health`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    pub failing_streak: i64,
    /// The last results (at most 5), oldest first.
    pub log: Vec<HealthResult>,
}

/// One health probe (Docker's `HealthcheckResult`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HealthResult {
    /// RFC 3339 nano.
    pub start: String,
    pub end: String,
    pub exit_code: i64,
    pub output: String,
}

/// Resource and policy changes of `update` (Docker's `ContainerUpdate` body); `None` = unchanged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateOptions {
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub pids_limit: Option<i64>,
    /// (name, maximum retry count).
    pub restart_policy: Option<(String, i64)>,
}

/// One resource-usage sample of a container's cgroup (what `stats` renders).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsSample {
    /// RFC 3339 nano.
    pub read: String,
    /// CPU time of the container, ns.
    pub cpu_total: u64,
    pub cpu_percpu: Vec<u64>,
    pub cpu_user: u64,
    pub cpu_system: u64,
    /// Host CPU time (all CPUs, /proc/stat), ns.
    pub system_cpu: u64,
    pub online_cpus: u64,
    pub throttling: [u64; 3],
    pub memory_usage: u64,
    pub memory_max_usage: u64,
    /// Limit, capped at the host's memory (as Docker).
    pub memory_limit: u64,
    pub memory_failcnt: u64,
    /// `memory.stat` as read (v1 or v2 keys).
    pub memory_stats: BTreeMap<String, u64>,
    pub pids_current: u64,
    /// 0 = unlimited.
    pub pids_limit: u64,
    /// (major, minor, op, bytes): `Read`, `Write`, ... as Docker's `io_service_bytes_recursive`.
    pub blkio_bytes: Vec<(u64, u64, String, u64)>,
}

/// The final process configuration after merging the image config with [`CreateOptions`]
/// (Docker's rules: `--entrypoint` resets the image's `Cmd`; env appended and overriding by key).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ResolvedConfig {
    /// `argv[0]` (Docker's `Path`).
    pub path: String,
    /// argv[1..] (Docker's `Args`).
    pub args: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    pub exposed_ports: Vec<String>,
    pub stop_signal: String,
    pub healthcheck: Option<barge_image::HealthConfig>,
    /// `Config.Volumes` after merging the image's with the user's (sorted).
    #[serde(default)]
    pub volumes: Vec<String>,
}

/// A container record.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Container {
    /// 64 hex chars.
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    /// RFC 3339 nano.
    pub created: String,
    /// Image ID (`sha256:...`).
    pub image_id: String,
    pub options: CreateOptions,
    pub config: ResolvedConfig,
    pub state: State,
    pub restart_count: i64,
    /// `<data-root>/containers/<id>/<id>-json.log`.
    pub log_path: PathBuf,
    /// Mount point of the container's root filesystem (overlay) while it is mounted.
    pub rootfs: PathBuf,
    /// OCI runtime name used.
    pub runtime: String,
    /// Resolved mounts (volumes, binds, tmpfs), in the order they were requested.
    #[serde(default)]
    pub mounts: Vec<crate::mounts::MountPoint>,
    /// Stopped by the user (`stop`, `kill`): no automatic restart until the next start, and an
    /// `unless-stopped` container stays down when the daemon starts (Docker's field).
    #[serde(default)]
    pub has_been_manually_stopped: bool,
    /// Warnings of `create` (dockerd's `Warnings`: a setting the kernel cannot honour,
    /// discarded); not persisted.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

impl Container {
    /// The container's cgroup path relative to each hierarchy's root (`/barge/<id>`, or
    /// `/<CgroupParent>/<id>` as dockerd's cgroupfs driver joins them; a relative parent is
    /// taken from the root).
    pub fn cgroup_path(&self) -> String {
        cgroup_path(&self.options.host.cgroup_parent, &self.id)
    }
}

/// [`Container::cgroup_path`] of a container `id` with `HostConfig.CgroupParent` `parent`.
pub fn cgroup_path(parent: &str, id: &str) -> String {
    let parent = parent.trim_matches('/');
    if parent.is_empty() {
        format!("/barge/{id}")
    } else {
        format!("/{parent}/{id}")
    }
}

/// `wait` conditions, as Docker's `condition` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    /// Return once the container is not running (immediately if it already is not).
    NotRunning,
    /// Wait for the next exit, even if it is not running now.
    NextExit,
    /// Wait until the container is removed.
    Removed,
}

/// Options of `exec create` (Docker's `ExecConfig`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ExecOptions {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub tty: bool,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub privileged: bool,
    pub detach_keys: Option<String>,
    /// `(rows, columns)` of the exec's TTY from the start (Docker's `ConsoleSize`).
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
}

/// An exec instance (Docker's `ExecInspectResponse` parts).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Exec {
    pub id: String,
    pub container_id: String,
    pub options: ExecOptions,
    pub running: bool,
    /// `None` until the process exits.
    pub exit_code: Option<i64>,
    pub pid: i64,
}

/// Something that happened to a container, for the daemon's `/events` and `--rm` handling.
#[derive(Debug, Clone, PartialEq)]
pub enum ContainerEvent {
    /// The container's main process exited (`die`); `exit_code` as Docker reports it.
    Died {
        id: String,
        exit_code: i64,
        oom_killed: bool,
    },
    /// The engine started the container by itself (restart policy, daemon start-up): `start`.
    Restarted { id: String },
    /// The health status changed (`health_status: <status>`).
    HealthStatus { id: String, status: String },
    /// An exec process exited.
    ExecDied {
        id: String,
        exec_id: String,
        exit_code: i64,
    },
}

/// Where a started process' streams can be reached: a Unix socket served by its monitor.
///
/// Protocol: on connect, the monitor sends the process' output as frames
/// `[stream: u8 (1 stdout, 2 stderr)][0,0,0][len: u32 big-endian][payload]` (Docker's stdcopy
/// framing; with a TTY everything is stream 1). Bytes the client writes go to the process'
/// stdin (if it was opened); the client shutting down its write half closes stdin when
/// `stdin_once` is set. The socket closes after the process exits and all output was sent.
#[derive(Debug, Clone, PartialEq)]
pub struct AttachPoint {
    pub socket: PathBuf,
    pub tty: bool,
}
