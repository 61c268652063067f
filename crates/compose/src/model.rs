//! The normalised project model: what compose-go's `types.Project` holds after loading, with
//! the fields serialised in compose-go's order (so `config` output matches `docker compose
//! config`). Keys barge does not interpret yet are kept as raw values in their place.
//! Spec: <https://github.com/compose-spec/compose-spec/blob/main/05-services.md>.

use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// A loaded compose project.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Project {
    /// Normalised project name (`[a-z0-9_-]`, starting with a letter or digit).
    pub name: String,
    /// The project directory (absolute); not rendered.
    #[serde(skip)]
    pub working_dir: String,
    /// Enabled services by name.
    pub services: BTreeMap<String, Service>,
    /// Top-level networks, the implicit `default` included when a service uses it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, Network>,
    /// Top-level volumes.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, Volume>,
    /// Top-level secrets.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, FileObject>,
    /// Top-level configs.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, FileObject>,
    /// Services left out by profiles; not rendered.
    #[serde(skip)]
    pub disabled_services: BTreeMap<String, Service>,
    /// Active profiles; not rendered.
    #[serde(skip)]
    pub profiles: Vec<String>,
    /// Absolute paths of the files loaded; not rendered.
    #[serde(skip)]
    pub config_files: Vec<String>,
    /// The environment the project was loaded with (OS values over `.env`), where
    /// `environment:`-sourced secrets and configs take their content; not rendered.
    #[serde(skip)]
    pub environment: BTreeMap<String, String>,
}

/// One service, long syntax everywhere.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Service {
    /// Profiles the service belongs to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// OCI annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Build configuration (a string is its context).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    /// `develop` (watch rules), kept raw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub develop: Option<Value>,
    /// Capabilities added.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// Capabilities dropped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// Command (exec form; a string is split like a shell would).
    #[serde(skip_serializing_if = "crate::render::skip_none_in_yaml")]
    pub command: Option<Vec<String>>,
    /// Config mounts, raw long or short syntax.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<Value>,
    /// Fixed container name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub container_name: String,
    /// CPU limit (number of CPUs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Dependencies by service name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub depends_on: BTreeMap<String, Dependency>,
    /// `deploy`, kept raw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy: Option<Value>,
    /// Host devices (`devices:`), in compose-go's long form.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceMapping>,
    /// DNS servers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    /// DNS search domains.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    /// NIS domain name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub domainname: String,
    /// Entrypoint (exec form).
    #[serde(skip_serializing_if = "crate::render::skip_none_in_yaml")]
    pub entrypoint: Option<Vec<String>>,
    /// Environment (env_file values merged in; `None` = inherit unset).
    #[serde(
        skip_serializing_if = "crate::render::skip_empty_in_yaml",
        serialize_with = "crate::render::nil_if_empty"
    )]
    pub environment: BTreeMap<String, Option<String>>,
    /// env files, long syntax.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_file: Vec<EnvFile>,
    /// Exposed ports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<String>,
    /// Extra /etc/hosts entries (`host=ip` or `host:ip`), raw.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    /// Hostname.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    /// Health check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// Image reference.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image: String,
    /// Run an init process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    /// IPC mode.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ipc: String,
    /// Labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Legacy links (`SERVICE` or `SERVICE:ALIAS`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// Logging, raw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging: Option<Value>,
    /// Memory limit in bytes (decimal text, as compose-go's `UnitBytes` marshals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_limit: Option<String>,
    /// Memory soft limit in bytes (decimal text, as `mem_limit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_reservation: Option<String>,
    /// `network_mode` (`host`, `none`, `service:NAME`, `container:NAME`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub network_mode: String,
    /// Networks the service joins (value `None` = no per-network options).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, Option<ServiceNetwork>>,
    /// OOM score adjustment (-1000 to 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i64>,
    /// `blkio_config` (`weight`, `weight_device`, `device_read_bps`, ...), raw; rates are
    /// bytes (`1mb`) or operations per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blkio_config: Option<Value>,
    /// `cgroup_parent`: the parent cgroup of the service's containers.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cgroup_parent: String,
    /// `cpuset`: the CPUs the service's containers may use (`0-1`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cpuset: String,
    /// PID mode.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pid: String,
    /// PIDs limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    /// Platform.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub platform: String,
    /// Published ports, one entry per port (ranges expanded).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// Privileged mode.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// Pull policy.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pull_policy: String,
    /// Read-only root filesystem.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Restart policy.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub restart: String,
    /// Scale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<u64>,
    /// Secret mounts, raw long or short syntax.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<Value>,
    /// Security options.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    /// /dev/shm size, raw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<Value>,
    /// Keep stdin open.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stdin_open: bool,
    /// Stop grace period (Go duration text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<String>,
    /// Stop signal.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stop_signal: String,
    /// Sysctls.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// tmpfs mounts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tmpfs: Vec<String>,
    /// Allocate a TTY.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    /// ulimits, raw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ulimits: Option<Value>,
    /// User.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// Volumes, long syntax.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
    /// Volumes of other services or containers (`SERVICE[:MODE]`, `container:NAME[:MODE]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
    /// Working directory.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
}

/// `build`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Build {
    /// Absolute context directory (or a URL).
    pub context: String,
    /// Dockerfile path relative to the context (default `Dockerfile`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dockerfile: String,
    /// Inline Dockerfile.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dockerfile_inline: String,
    /// Build args (`None` = take from the environment).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, Option<String>>,
    /// Image labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Cache sources.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cache_from: Vec<String>,
    /// Target stage.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub target: String,
}

/// One `depends_on` entry.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Dependency {
    /// `service_started`, `service_healthy` or `service_completed_successfully`.
    pub condition: String,
    /// Restart this service when the dependency is updated.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub restart: bool,
    /// A missing dependency is an error when true.
    pub required: bool,
}

/// One `env_file` entry.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EnvFile {
    /// Absolute path.
    pub path: String,
    /// Missing file is an error when true.
    pub required: bool,
}

/// `healthcheck`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Healthcheck {
    /// Test command (`["NONE"]`, `["CMD", ...]`, `["CMD-SHELL", "..."]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    /// Timeout (Go duration text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Retries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u64>,
    /// Start period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_period: Option<String>,
    /// Start interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<String>,
    /// Disabled.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disable: bool,
}

/// Per-service network options.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ServiceNetwork {
    /// Aliases.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Static IPv4 address.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ipv4_address: String,
    /// Static IPv6 address.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ipv6_address: String,
    /// Connection priority.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
}

/// A published port, long syntax.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Port {
    /// Name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `ingress` (default) or `host`.
    pub mode: String,
    /// Host IP.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
    /// Container port.
    pub target: u32,
    /// Host port or range (text).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub published: String,
    /// `tcp` (default), `udp` or `sctp`.
    pub protocol: String,
    /// Application protocol.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub app_protocol: String,
}

/// A volume mount, long syntax.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct VolumeMount {
    /// `volume`, `bind`, `tmpfs`, `npipe`, `image` or `cluster`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Volume name or absolute host path (empty: anonymous volume).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// Path in the container.
    pub target: String,
    /// Read-only mount.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Bind options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<BindOptions>,
    /// Volume options (`{}` for a named volume in short syntax).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeOptions>,
    /// tmpfs options, raw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<Value>,
}

/// Bind mount options.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct BindOptions {
    /// Propagation.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub propagation: String,
    /// Create the host path when missing.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub create_host_path: bool,
    /// SELinux relabel (`z` or `Z`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub selinux: String,
}

/// Volume mount options.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct VolumeOptions {
    /// Do not copy the image's content into a new volume.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub nocopy: bool,
    /// Sub-path of the volume.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subpath: String,
}

/// A top-level network.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Network {
    /// Engine-side name (`{project}_{key}` unless set or external).
    pub name: String,
    /// Driver.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub driver: String,
    /// Driver options.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    /// IPAM, raw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Value>,
    /// Created elsewhere.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    /// No outside connectivity.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    /// Attachable.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub attachable: bool,
    /// IPv6.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_ipv6: Option<bool>,
    /// Labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A top-level volume.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Volume {
    /// Engine-side name (`{project}_{key}` unless set or external).
    pub name: String,
    /// Driver.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub driver: String,
    /// Driver options.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    /// Created elsewhere.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    /// Labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A top-level secret or config.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FileObject {
    /// Engine-side name.
    pub name: String,
    /// Absolute source file.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub file: String,
    /// Source environment variable.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub environment: String,
    /// Inline content (configs).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub content: String,
    /// Created elsewhere.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
}

/// One `devices:` entry (compose-spec; compose-go's `DeviceMapping`): `source` on the host,
/// `target` in the container, cgroup `permissions` (`rwm`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeviceMapping {
    pub source: String,
    pub target: String,
    pub permissions: String,
}
