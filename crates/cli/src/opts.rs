//! `run`/`create` flags and their translation into the container create body.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use bollard_stubs::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HealthConfig, HostConfig,
    HostConfigLogConfig, NetworkingConfig, PortBinding, PortMap, RestartPolicy,
    RestartPolicyNameEnum,
};
use clap::{ArgAction, Args};

/// Flags shared by `barge run` and `barge create`.
#[derive(Debug, Clone, Default, Args)]
pub struct ContainerOpts {
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables
    #[arg(short, long = "env", value_name = "list")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "list")]
    pub env_file: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long, value_name = "string")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long, value_name = "string")]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long, value_name = "string")]
    pub entrypoint: Option<String>,
    /// Container host name
    #[arg(short = 'h', long, value_name = "string")]
    pub hostname: Option<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Connect a container to a network
    #[arg(long, alias = "net", value_name = "network")]
    pub network: Vec<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", alias = "net-alias", value_name = "list")]
    pub network_alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long, value_name = "string")]
    pub ip: Option<String>,
    /// IPv6 address (e.g., 2001:db8::33)
    #[arg(long, value_name = "string")]
    pub ip6: Option<String>,
    /// Publish a container's port(s) to the host
    #[arg(short = 'p', long = "publish", value_name = "list")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long, value_name = "list")]
    pub expose: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host", value_name = "list")]
    pub add_host: Vec<String>,
    /// Set custom DNS servers
    #[arg(long, value_name = "list")]
    pub dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search", value_name = "list")]
    pub dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option", value_name = "list")]
    pub dns_option: Vec<String>,
    /// Signal to stop the container
    #[arg(long = "stop-signal", value_name = "string")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout", value_name = "int")]
    pub stop_timeout: Option<i64>,
    /// Memory limit
    #[arg(short, long, value_name = "bytes")]
    pub memory: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation", value_name = "bytes")]
    pub memory_reservation: Option<String>,
    /// Ulimit options (`nofile=1024:2048`)
    #[arg(long = "ulimit", value_name = "ulimit")]
    pub ulimit: Vec<String>,
    /// Sysctl options (`net.ipv4.ip_forward=1`)
    #[arg(long = "sysctl", value_name = "map")]
    pub sysctl: Vec<String>,
    /// Add a host device to the container (`/dev/fuse[:/dev/fuse[:rwm]]`)
    #[arg(long = "device", value_name = "list")]
    pub device: Vec<String>,
    /// Tune host's OOM preferences (-1000 to 1000)
    #[arg(long = "oom-score-adj", value_name = "int", allow_hyphen_values = true)]
    pub oom_score_adj: Option<i64>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long = "memory-swap", value_name = "bytes", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Number of CPUs
    #[arg(long, value_name = "decimal")]
    pub cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares", value_name = "int")]
    pub cpu_shares: Option<i64>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", value_name = "int", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// PID namespace to use (`host`, or `container:<name|id>` to join another container's)
    #[arg(long, value_name = "string")]
    pub pid: Option<String>,
    /// UTS namespace to use (`host`)
    #[arg(long, value_name = "string")]
    pub uts: Option<String>,
    /// IPC mode to use (`private`, `shareable`, `host`, `none`, `container:<name|id>`)
    #[arg(long, value_name = "string")]
    pub ipc: Option<String>,
    /// Add Linux capabilities
    #[arg(long = "cap-add", value_name = "list")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop", value_name = "list")]
    pub cap_drop: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Security Options
    #[arg(long = "security-opt", value_name = "list")]
    pub security_opt: Vec<String>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus", value_name = "string")]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems", value_name = "string")]
    pub cpuset_mems: Option<String>,
    /// Add additional groups to join
    #[arg(long = "group-add", value_name = "list")]
    pub group_add: Vec<String>,
    /// Add a rule to the cgroup allowed devices list
    #[arg(long = "device-cgroup-rule", value_name = "list")]
    pub device_cgroup_rule: Vec<String>,
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable (default 0)
    #[arg(long = "blkio-weight", value_name = "uint16")]
    pub blkio_weight: Option<u16>,
    /// Block IO weight (relative device weight) (default [])
    #[arg(long = "blkio-weight-device", value_name = "list")]
    pub blkio_weight_device: Vec<String>,
    /// Limit read rate (bytes per second) from a device (default [])
    #[arg(long = "device-read-bps", value_name = "list")]
    pub device_read_bps: Vec<String>,
    /// Limit write rate (bytes per second) to a device (default [])
    #[arg(long = "device-write-bps", value_name = "list")]
    pub device_write_bps: Vec<String>,
    /// Limit read rate (IO per second) from a device (default [])
    #[arg(long = "device-read-iops", value_name = "list")]
    pub device_read_iops: Vec<String>,
    /// Limit write rate (IO per second) to a device (default [])
    #[arg(long = "device-write-iops", value_name = "list")]
    pub device_write_iops: Vec<String>,
    /// Optional parent cgroup for the container
    #[arg(long = "cgroup-parent", value_name = "string")]
    pub cgroup_parent: Option<String>,
    /// Limit CPU real-time period in microseconds
    #[arg(long = "cpu-rt-period", value_name = "int")]
    pub cpu_rt_period: Option<i64>,
    /// Limit CPU real-time runtime in microseconds
    #[arg(long = "cpu-rt-runtime", value_name = "int")]
    pub cpu_rt_runtime: Option<i64>,
    /// User namespace to use
    #[arg(long, value_name = "string")]
    pub userns: Option<String>,
    /// Storage driver options for the container
    #[arg(long = "storage-opt", value_name = "list")]
    pub storage_opt: Vec<String>,
    /// Add an annotation to the container (passed through to the OCI runtime) (default map[])
    #[arg(long = "annotation", value_name = "map")]
    pub annotation: Vec<String>,
    /// GPU devices to add to the container ('all' to pass all GPUs)
    #[arg(long, value_name = "gpu-request")]
    pub gpus: Option<String>,
    /// Set meta data on a container
    #[arg(short, long = "label", value_name = "list")]
    pub label: Vec<String>,
    /// Logging driver for the container
    #[arg(long = "log-driver", value_name = "string")]
    pub log_driver: Option<String>,
    /// Log driver options
    #[arg(long = "log-opt", value_name = "list")]
    pub log_opt: Vec<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long, value_name = "string")]
    pub platform: Option<String>,
    /// Runtime to use for this container
    #[arg(long, value_name = "string")]
    pub runtime: Option<String>,
    /// Restart policy to apply when a container exits
    #[arg(long, value_name = "string")]
    pub restart: Option<String>,
    /// Automatically remove the container and its associated anonymous volumes when it exits
    #[arg(long)]
    pub rm: bool,
    /// Bind mount a volume
    #[arg(short = 'v', long = "volume", value_name = "list")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount to the container
    #[arg(long, value_name = "mount")]
    pub mount: Vec<String>,
    /// Mount a tmpfs directory
    #[arg(long, value_name = "list")]
    pub tmpfs: Vec<String>,
    /// Mount volumes from the specified container(s)
    #[arg(long = "volumes-from", value_name = "list")]
    pub volumes_from: Vec<String>,
    /// Command to run to check health
    #[arg(long = "health-cmd", value_name = "string")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 0s)
    #[arg(long = "health-interval", value_name = "duration")]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 0s)
    #[arg(long = "health-timeout", value_name = "duration")]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries", value_name = "int")]
    pub health_retries: Option<i64>,
    /// Start period for the container to initialize before starting health-retries countdown (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-period", value_name = "duration")]
    pub health_start_period: Option<String>,
    /// Time between running the check during the start period (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-interval", value_name = "duration")]
    pub health_start_interval: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Print usage
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
    /// The image, then the command and its arguments. Flags end at the image,
    /// like docker's (`run img -c x` passes `-c x` to the command).
    #[arg(
        value_name = "IMAGE [COMMAND] [ARG...]",
        required = true,
        num_args = 1..,
        trailing_var_arg = true
    )]
    pub args: Vec<String>,
}

/// Splits one CSV record (docker's `--mount` value): commas separate fields, double quotes
/// protect commas (`""` is a literal quote).
fn csv_fields(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if quoted {
        bail!("extraneous or missing \" in quoted-field");
    }
    out.push(cur);
    Ok(out)
}

/// Makes `./x` and `.` absolute, as docker's CLI does for bind sources.
fn abs_source(src: &str) -> String {
    if src == "." || src.starts_with("./") {
        if let Ok(cwd) = std::env::current_dir() {
            let rest = src.trim_start_matches('.').trim_start_matches('/');
            let p = if rest.is_empty() { cwd } else { cwd.join(rest) };
            return p.display().to_string();
        }
    }
    src.to_string()
}

/// Parses a `--mount` value (`type=bind|volume|tmpfs,source=,target=,readonly,...`) into
/// Docker's `Mount` JSON, with docker's CLI errors.
pub fn parse_mount(value: &str) -> Result<serde_json::Value> {
    use serde_json::{json, Map, Value};
    let err = |m: String| anyhow::anyhow!("invalid argument \"{value}\" for \"--mount\" flag: {m}");
    let mut typ = "volume".to_string();
    let mut m = Map::new();
    let mut bind = Map::new();
    let mut vol = Map::new();
    let mut tmpfs = Map::new();
    let bool_of = |k: &str, v: &str| -> Result<bool> {
        match v.to_ascii_lowercase().as_str() {
            "1" | "t" | "true" => Ok(true),
            "0" | "f" | "false" => Ok(false),
            _ => Err(err(format!("invalid value for {k}: {v}"))),
        }
    };
    let kv_into = |map: &mut Map<String, Value>, key: &str, val: &str| {
        let entry = map.entry(key).or_insert_with(|| json!({}));
        let (k, v) = val.split_once('=').unwrap_or((val, ""));
        entry[k] = json!(v);
    };
    for field in csv_fields(value).map_err(|e| err(e.to_string()))? {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_string())),
            None => (field.to_ascii_lowercase(), None),
        };
        let Some(val) = val else {
            match key.as_str() {
                "readonly" | "ro" => {
                    m.insert("ReadOnly".into(), json!(true));
                }
                "volume-nocopy" => {
                    vol.insert("NoCopy".into(), json!(true));
                }
                "bind-nonrecursive" => {
                    bind.insert("NonRecursive".into(), json!(true));
                }
                _ => {
                    return Err(err(format!(
                        "invalid field '{field}' must be a key=value pair"
                    )))
                }
            }
            continue;
        };
        match key.as_str() {
            "type" => typ = val.to_ascii_lowercase(),
            "source" | "src" => {
                m.insert("Source".into(), json!(abs_source(&val)));
            }
            "target" | "dst" | "destination" => {
                m.insert("Target".into(), json!(val));
            }
            "readonly" | "ro" => {
                m.insert("ReadOnly".into(), json!(bool_of(&key, &val)?));
            }
            "consistency" => {
                m.insert("Consistency".into(), json!(val.to_ascii_lowercase()));
            }
            "bind-propagation" => {
                bind.insert("Propagation".into(), json!(val.to_ascii_lowercase()));
            }
            "bind-nonrecursive" => {
                bind.insert("NonRecursive".into(), json!(bool_of(&key, &val)?));
            }
            "bind-create-src" => {
                bind.insert("CreateMountpoint".into(), json!(bool_of(&key, &val)?));
            }
            "volume-nocopy" => {
                vol.insert("NoCopy".into(), json!(bool_of(&key, &val)?));
            }
            "volume-label" => kv_into(&mut vol, "Labels", &val),
            "volume-driver" => {
                let dc = vol.entry("DriverConfig").or_insert_with(|| json!({}));
                dc["Name"] = json!(val);
            }
            "volume-opt" => {
                let dc = vol.entry("DriverConfig").or_insert_with(|| json!({}));
                let opts = dc
                    .as_object_mut()
                    .expect("object")
                    .entry("Options")
                    .or_insert_with(|| json!({}));
                let (k, v) = val.split_once('=').unwrap_or((&val, ""));
                opts[k] = json!(v);
            }
            "volume-subpath" => {
                vol.insert("Subpath".into(), json!(val));
            }
            "tmpfs-size" => {
                let n = parse_bytes(&val)
                    .map_err(|_| err(format!("invalid value for {key}: {val}")))?;
                tmpfs.insert("SizeBytes".into(), json!(n));
            }
            "tmpfs-mode" => {
                let n = u32::from_str_radix(&val, 8)
                    .map_err(|_| err(format!("invalid value for {key}: {val}")))?;
                tmpfs.insert("Mode".into(), json!(n));
            }
            _ => return Err(err(format!("unexpected key '{key}' in '{field}'"))),
        }
    }
    if !m.contains_key("Target") {
        return Err(err("target is required".into()));
    }
    for (opts, name, kind) in [
        (&vol, "VolumeOptions", "volume"),
        (&bind, "BindOptions", "bind"),
        (&tmpfs, "TmpfsOptions", "tmpfs"),
    ] {
        if opts.is_empty() {
            continue;
        }
        if typ != kind {
            return Err(err(format!(
                "cannot mix '{kind}-*' options with mount type '{typ}'"
            )));
        }
        m.insert(name.into(), Value::Object(opts.clone()));
    }
    m.insert("Type".into(), json!(typ));
    Ok(Value::Object(m))
}

/// Docker's CLI split of `-v` values: `SRC:DEST[:MODE]` goes to `HostConfig.Binds` (a `./`
/// source made absolute), a bare `DEST` to `Config.Volumes` (an anonymous volume).
pub fn split_volumes(list: &[String]) -> (Vec<String>, Vec<String>) {
    let mut binds = Vec::new();
    let mut volumes = Vec::new();
    for v in list {
        match v.split_once(':') {
            Some((src, rest)) if !src.is_empty() => {
                binds.push(format!("{}:{rest}", abs_source(src)));
            }
            _ => volumes.push(v.clone()),
        }
    }
    (binds, volumes)
}

/// Parses docker's byte sizes (`64m`, `1g`, `512k`, `100`, `1.5GiB`): binary units, as
/// docker's `--ulimit NAME=SOFT[:HARD]` (go-units' `ParseUlimit`; the hard limit defaults to
/// the soft one).
pub fn parse_ulimit(s: &str) -> Result<bollard_stubs::models::ResourcesUlimits> {
    let (name, vals) = s
        .split_once('=')
        .with_context(|| format!("invalid ulimit argument: {s}"))?;
    let num = |v: &str| {
        v.parse::<i64>()
            .with_context(|| format!("invalid ulimit argument: {s}"))
    };
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(vals)?, num(vals)?),
    };
    if soft > hard && hard >= 0 {
        bail!("ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}");
    }
    Ok(bollard_stubs::models::ResourcesUlimits {
        name: Some(name.to_string()),
        soft: Some(soft),
        hard: Some(hard),
    })
}

/// docker's `--device HOST[:CONTAINER][:PERMISSIONS]` (the CLI's `parseDevice`): one part
/// after the host path is the container path, or the permissions when it is only `rwm`
/// letters.
pub fn parse_device(s: &str) -> Result<bollard_stubs::models::DeviceMapping> {
    let is_mode = |m: &str| !m.is_empty() && m.chars().all(|c| "rwm".contains(c));
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [src] => (*src, *src, "rwm"),
        [src, m] if is_mode(m) => (*src, *src, *m),
        [src, dst] => (*src, *dst, "rwm"),
        [src, dst, m] if is_mode(m) => (*src, *dst, *m),
        [_, _, m] => bail!("invalid device mode: {m}"),
        _ => bail!("invalid device specification: {s}"),
    };
    if !dst.starts_with('/') {
        bail!("invalid device specification: {s}");
    }
    Ok(bollard_stubs::models::DeviceMapping {
        path_on_host: Some(src.to_string()),
        path_in_container: Some(dst.to_string()),
        cgroup_permissions: Some(mode.to_string()),
    })
}

/// `go-units`' `RAMInBytes` ([`barge_stdx::units::ram_in_bytes`]).
pub fn parse_bytes(s: &str) -> Result<i64> {
    barge_stdx::units::ram_in_bytes(s.trim()).map_err(|e| anyhow::anyhow!("{e}"))
}

/// docker's `ValidateWeightDevice` (`--blkio-weight-device /dev/sda:200`), with its messages.
pub fn parse_weight_device(val: &str) -> Result<bollard_stubs::models::ResourcesBlkioWeightDevice> {
    let Some((path, weight)) = val.split_once(':') else {
        bail!("invalid argument \"{val}\" for \"--blkio-weight-device\" flag: bad format: {val}");
    };
    if !path.starts_with("/dev/") {
        bail!("invalid argument \"{val}\" for \"--blkio-weight-device\" flag: bad format for device path: {val}");
    }
    let w: u16 = weight
        .parse()
        .ok()
        .filter(|w| *w == 0 || (10..=1000).contains(w))
        .with_context(|| {
            format!("invalid argument \"{val}\" for \"--blkio-weight-device\" flag: invalid weight for device: {val}")
        })?;
    Ok(bollard_stubs::models::ResourcesBlkioWeightDevice {
        path: Some(path.to_string()),
        weight: Some(usize::from(w)),
    })
}

/// The `(path, rate)` halves of a `--device-{read,write}-{bps,iops}` value, with docker's
/// format errors (`ValidateThrottle*Device`).
fn throttle_parts<'a>(flag: &str, val: &'a str) -> Result<(&'a str, &'a str)> {
    let Some((path, rate)) = val.split_once(':') else {
        bail!("invalid argument \"{val}\" for \"--{flag}\" flag: bad format: {val}");
    };
    if !path.starts_with("/dev/") {
        bail!(
            "invalid argument \"{val}\" for \"--{flag}\" flag: bad format for device path: {val}"
        );
    }
    Ok((path, rate))
}

/// docker's `ValidateThrottleBpsDevice` (`/dev/sda:1mb`; the rate through
/// [`barge_stdx::units::ram_in_bytes`]).
pub fn parse_throttle_bps(flag: &str, val: &str) -> Result<bollard_stubs::models::ThrottleDevice> {
    let (path, rate) = throttle_parts(flag, val)?;
    let rate = barge_stdx::units::ram_in_bytes(rate).ok().filter(|r| *r >= 0).with_context(|| {
        format!("invalid argument \"{val}\" for \"--{flag}\" flag: invalid rate for device: {val}. The correct format is <device-path>:<number>[<unit>]. Number must be a positive integer. Unit is optional and can be kb, mb, or gb")
    })?;
    Ok(bollard_stubs::models::ThrottleDevice {
        path: Some(path.to_string()),
        rate: Some(rate),
    })
}

/// docker's `ValidateThrottleIOpsDevice` (`/dev/sda:1000`).
pub fn parse_throttle_iops(flag: &str, val: &str) -> Result<bollard_stubs::models::ThrottleDevice> {
    let (path, rate) = throttle_parts(flag, val)?;
    let rate: i64 = rate.parse::<u64>().ok().and_then(|r| i64::try_from(r).ok()).with_context(|| {
        format!("invalid argument \"{val}\" for \"--{flag}\" flag: invalid rate for device: {val}. The correct format is <device-path>:<number>. Number must be a positive integer")
    })?;
    Ok(bollard_stubs::models::ThrottleDevice {
        path: Some(path.to_string()),
        rate: Some(rate),
    })
}

/// One throttle flag's values as `HostConfig`'s list (`None` when the flag is not given).
fn throttle_list(
    flag: &str,
    vals: &[String],
    parse: fn(&str, &str) -> Result<bollard_stubs::models::ThrottleDevice>,
) -> Result<Option<Vec<bollard_stubs::models::ThrottleDevice>>> {
    if vals.is_empty() {
        return Ok(None);
    }
    vals.iter()
        .map(|v| parse(flag, v))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}
/// docker's `parseStorageOpts` (`--storage-opt size=10G`): `key=value` pairs.
fn parse_storage_opts(vals: &[String]) -> Result<HashMap<String, String>> {
    vals.iter()
        .map(|o| match o.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => bail!("invalid storage option"),
        })
        .collect()
}

/// docker's `--gpus` (`all`, a count, or `count=N,driver=D,device=ID,capabilities=C`) as a
/// `DeviceRequest` asking for capability `gpu`.
fn parse_gpus(val: &str) -> Result<bollard_stubs::models::DeviceRequest> {
    let mut r = bollard_stubs::models::DeviceRequest {
        driver: Some(String::new()),
        count: Some(0),
        device_ids: None,
        capabilities: Some(vec![vec!["gpu".to_string()]]),
        options: Some(HashMap::new()),
    };
    let count = |c: &str| -> Result<i64> {
        if c == "all" {
            Ok(-1)
        } else {
            c.parse()
                .with_context(|| format!("invalid argument \"{val}\" for \"--gpus\" flag"))
        }
    };
    for field in csv_fields(val)? {
        match field.split_once('=') {
            None => r.count = Some(count(&field)?),
            Some(("count", c)) => r.count = Some(count(c)?),
            Some(("driver", d)) => r.driver = Some(d.to_string()),
            Some(("device", d)) => {
                r.device_ids = Some(d.split(',').map(String::from).collect());
            }
            Some(("capabilities", c)) => {
                r.capabilities = Some(vec![c.split(',').map(String::from).collect()]);
            }
            Some(("options", _)) => {}
            Some((k, _)) => bail!(
                "invalid argument \"{val}\" for \"--gpus\" flag: unexpected key '{k}' in '{field}'"
            ),
        }
    }
    Ok(r)
}

/// `--cpus 1.5` → NanoCpus.
pub fn parse_cpus(s: &str) -> Result<i64> {
    let v: f64 = s
        .trim()
        .parse()
        .with_context(|| format!("invalid argument \"{s}\" for \"--cpus\" flag"))?;
    if v.is_nan() || v < 0.0 || !v.is_finite() {
        bail!("invalid argument \"{s}\" for \"--cpus\" flag: value must be positive");
    }
    Ok((v * 1e9).round() as i64)
}

/// Go's `time.ParseDuration` (`1h2m3.5s`, `500ms`, `0`) → nanoseconds; `flag` names the flag
/// in errors.
pub fn parse_duration_ns(s: &str, flag: &str) -> Result<i64> {
    barge_stdx::units::parse_go_duration(s.trim())
        .map_err(|e| anyhow::anyhow!("invalid argument \"{s}\" for \"--{flag}\" flag: {e}"))
}

/// The `--health-*` / `--no-healthcheck` flags as `Config.Healthcheck` (docker's rules).
fn health_config(o: &ContainerOpts) -> Result<Option<HealthConfig>> {
    let dur = |v: &Option<String>, flag: &str| -> Result<Option<i64>> {
        let Some(v) = v else { return Ok(None) };
        let ns = parse_duration_ns(v, flag)?;
        if ns < 0 {
            bail!("--{flag} cannot be negative");
        }
        Ok(Some(ns))
    };
    let interval = dur(&o.health_interval, "health-interval")?;
    let timeout = dur(&o.health_timeout, "health-timeout")?;
    let start_period = dur(&o.health_start_period, "health-start-period")?;
    let start_interval = dur(&o.health_start_interval, "health-start-interval")?;
    if o.health_retries.is_some_and(|r| r < 0) {
        bail!("--health-retries cannot be negative");
    }
    let any = o.health_cmd.is_some()
        || interval.is_some()
        || timeout.is_some()
        || start_period.is_some()
        || start_interval.is_some()
        || o.health_retries.is_some();
    if o.no_healthcheck {
        if any {
            bail!("--no-healthcheck conflicts with --health-* options");
        }
        return Ok(Some(HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        }));
    }
    if !any {
        return Ok(None);
    }
    Ok(Some(HealthConfig {
        test: o
            .health_cmd
            .as_ref()
            .map(|c| vec!["CMD-SHELL".to_string(), c.clone()]),
        interval,
        timeout,
        retries: o.health_retries,
        start_period,
        start_interval,
    }))
}

pub(crate) fn parse_restart(s: &str) -> Result<RestartPolicy> {
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (
            n,
            Some(
                c.parse::<i64>()
                    .with_context(|| format!("invalid restart policy format: {s}"))?,
            ),
        ),
        None => (s, None),
    };
    let name = match name {
        "" => RestartPolicyNameEnum::EMPTY,
        "no" => RestartPolicyNameEnum::NO,
        "always" => RestartPolicyNameEnum::ALWAYS,
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        _ => bail!("invalid restart policy: {name}"),
    };
    Ok(RestartPolicy {
        name: Some(name),
        maximum_retry_count: count,
    })
}

/// Reads an env file: `KEY=value` lines, `#` comments, bare `KEY` taken from our env.
pub fn parse_env_file(content: &str) -> Vec<String> {
    content
        .lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            if l.contains('=') {
                Some(l.to_string())
            } else {
                std::env::var(l.trim())
                    .ok()
                    .map(|v| format!("{}={v}", l.trim()))
            }
        })
        .collect()
}

/// `-e KEY` without a value takes KEY from our environment (dropped if unset).
fn expand_env(e: &str) -> Option<String> {
    if e.contains('=') {
        Some(e.to_string())
    } else {
        std::env::var(e).ok().map(|v| format!("{e}={v}"))
    }
}

fn key_values(list: &[String]) -> HashMap<String, String> {
    list.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.to_string(), String::new()),
        })
        .collect()
}

impl ContainerOpts {
    /// The image reference.
    pub fn image(&self) -> &str {
        self.args.first().map_or("", String::as_str)
    }

    /// The command and its arguments (empty: the image's default).
    pub fn command(&self) -> &[String] {
        self.args.get(1..).unwrap_or_default()
    }

    /// Builds the `POST /containers/create` body. `detach` is `run -d`.
    pub fn to_create_body(&self, detach: bool) -> Result<ContainerCreateBody> {
        let mut env = Vec::new();
        for f in &self.env_file {
            let content = std::fs::read_to_string(f).with_context(|| format!("open {f}"))?;
            env.extend(parse_env_file(&content));
        }
        env.extend(self.env.iter().filter_map(|e| expand_env(e)));

        let memory = self.memory.as_deref().map(parse_bytes).transpose()?;
        let memory_swap = match self.memory_swap.as_deref() {
            Some("-1") => Some(-1),
            Some(s) => Some(parse_bytes(s)?),
            None => None,
        };
        let log_config = if self.log_driver.is_some() || !self.log_opt.is_empty() {
            Some(HostConfigLogConfig {
                typ: self.log_driver.clone(),
                config: (!self.log_opt.is_empty()).then(|| key_values(&self.log_opt)),
            })
        } else {
            None
        };
        let (binds, volumes) = split_volumes(&self.volume);
        let mounts = self
            .mount
            .iter()
            .map(|m| {
                parse_mount(m).and_then(|v| {
                    serde_json::from_value::<bollard_stubs::models::Mount>(v)
                        .map_err(anyhow::Error::from)
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let tmpfs: HashMap<String, String> = self
            .tmpfs
            .iter()
            .map(|t| match t.split_once(':') {
                Some((d, o)) => (d.to_string(), o.to_string()),
                None => (t.clone(), String::new()),
            })
            .collect();
        let mut exposed: Vec<String> = Vec::new();
        let mut port_bindings: PortMap = HashMap::new();
        for spec in &self.publish {
            for m in parse_publish(spec)? {
                let key = format!("{}/{}", m.container_port, m.proto);
                if !exposed.contains(&key) {
                    exposed.push(key.clone());
                }
                port_bindings
                    .entry(key)
                    .or_insert_with(|| Some(Vec::new()))
                    .get_or_insert_with(Vec::new)
                    .push(PortBinding {
                        host_ip: Some(m.host_ip),
                        host_port: Some(m.host_port),
                    });
            }
        }
        for e in &self.expose {
            let (ports, proto) = e.split_once('/').unwrap_or((e.as_str(), "tcp"));
            let (lo, hi) = parse_port_range(ports)
                .with_context(|| format!("invalid range format for --expose: {e}"))?;
            for p in lo..=hi {
                let key = format!("{p}/{proto}");
                if !exposed.contains(&key) {
                    exposed.push(key);
                }
            }
        }
        if self.network.len() > 1 && (self.ip.is_some() || self.ip6.is_some()) {
            bail!("--ip and --ip6 can only be used with a single --network");
        }
        let mut endpoints = HashMap::new();
        if !self.network_alias.is_empty()
            || self.ip.is_some()
            || self.ip6.is_some()
            || self.network.len() > 1
        {
            let nets = if self.network.is_empty() {
                vec!["default".to_string()]
            } else {
                self.network.clone()
            };
            for (i, n) in nets.iter().enumerate() {
                let first = i == 0;
                endpoints.insert(
                    n.clone(),
                    EndpointSettings {
                        aliases: (first && !self.network_alias.is_empty())
                            .then(|| self.network_alias.clone()),
                        ipam_config: (first && (self.ip.is_some() || self.ip6.is_some())).then(
                            || EndpointIpamConfig {
                                ipv4_address: self.ip.clone(),
                                ipv6_address: self.ip6.clone(),
                                ..Default::default()
                            },
                        ),
                        ..Default::default()
                    },
                );
            }
        }
        // docker's `parseSystemPaths`: `systempaths=unconfined` empties the masked and
        // read-only paths instead of going to the daemon.
        let system_paths = self
            .security_opt
            .iter()
            .any(|o| o == "systempaths=unconfined")
            .then(Vec::new);
        let security_opt: Vec<String> = self
            .security_opt
            .iter()
            .filter(|o| *o != "systempaths=unconfined")
            .cloned()
            .collect();
        let host_config = HostConfig {
            binds: (!binds.is_empty()).then_some(binds),
            mounts: (!mounts.is_empty()).then_some(mounts),
            tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
            volumes_from: (!self.volumes_from.is_empty()).then(|| self.volumes_from.clone()),
            memory,
            memory_swap,
            nano_cpus: self.cpus.as_deref().map(parse_cpus).transpose()?,
            cpu_shares: self.cpu_shares,
            pids_limit: self.pids_limit,
            init: self.init.then_some(true),
            network_mode: Some(
                self.network
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "default".into()),
            ),
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            publish_all_ports: self.publish_all.then_some(true),
            extra_hosts: (!self.add_host.is_empty()).then(|| {
                self.add_host
                    .iter()
                    .map(|h| h.replacen('=', ":", 1))
                    .collect()
            }),
            dns: (!self.dns.is_empty()).then(|| self.dns.clone()),
            dns_search: (!self.dns_search.is_empty()).then(|| self.dns_search.clone()),
            dns_options: (!self.dns_option.is_empty()).then(|| self.dns_option.clone()),
            readonly_rootfs: self.read_only.then_some(true),
            cap_add: (!self.cap_add.is_empty()).then(|| self.cap_add.clone()),
            cap_drop: (!self.cap_drop.is_empty()).then(|| self.cap_drop.clone()),
            privileged: self.privileged.then_some(true),
            pid_mode: self.pid.clone(),
            uts_mode: self.uts.clone(),
            ipc_mode: self.ipc.clone(),
            security_opt: (!security_opt.is_empty()).then_some(security_opt),
            masked_paths: system_paths.clone(),
            readonly_paths: system_paths,
            log_config,
            runtime: self.runtime.clone(),
            restart_policy: self.restart.as_deref().map(parse_restart).transpose()?,
            auto_remove: self.rm.then_some(true),
            memory_reservation: self
                .memory_reservation
                .as_deref()
                .map(parse_bytes)
                .transpose()?,
            ulimits: (!self.ulimit.is_empty())
                .then(|| self.ulimit.iter().map(|u| parse_ulimit(u)).collect())
                .transpose()?,
            sysctls: (!self.sysctl.is_empty()).then(|| key_values(&self.sysctl)),
            devices: (!self.device.is_empty())
                .then(|| self.device.iter().map(|d| parse_device(d)).collect())
                .transpose()?,
            oom_score_adj: self.oom_score_adj,
            cpuset_cpus: self.cpuset_cpus.clone(),
            cpuset_mems: self.cpuset_mems.clone(),
            group_add: (!self.group_add.is_empty()).then(|| self.group_add.clone()),
            device_cgroup_rules: (!self.device_cgroup_rule.is_empty())
                .then(|| self.device_cgroup_rule.clone()),
            blkio_weight: self.blkio_weight,
            blkio_weight_device: (!self.blkio_weight_device.is_empty())
                .then(|| {
                    self.blkio_weight_device
                        .iter()
                        .map(|w| parse_weight_device(w))
                        .collect()
                })
                .transpose()?,
            blkio_device_read_bps: throttle_list(
                "device-read-bps",
                &self.device_read_bps,
                parse_throttle_bps,
            )?,
            blkio_device_write_bps: throttle_list(
                "device-write-bps",
                &self.device_write_bps,
                parse_throttle_bps,
            )?,
            blkio_device_read_iops: throttle_list(
                "device-read-iops",
                &self.device_read_iops,
                parse_throttle_iops,
            )?,
            blkio_device_write_iops: throttle_list(
                "device-write-iops",
                &self.device_write_iops,
                parse_throttle_iops,
            )?,
            cgroup_parent: self.cgroup_parent.clone(),
            cpu_realtime_period: self.cpu_rt_period,
            cpu_realtime_runtime: self.cpu_rt_runtime,
            userns_mode: self.userns.clone(),
            storage_opt: (!self.storage_opt.is_empty())
                .then(|| parse_storage_opts(&self.storage_opt))
                .transpose()?,
            annotations: (!self.annotation.is_empty()).then(|| key_values(&self.annotation)),
            device_requests: self
                .gpus
                .as_deref()
                .map(|g| parse_gpus(g).map(|r| vec![r]))
                .transpose()?,
            console_size: if self.tty {
                crate::stream::terminal_size().map(|(h, w)| vec![h as usize, w as usize])
            } else {
                None
            },
            ..Default::default()
        };
        if self.rm
            && host_config
                .restart_policy
                .as_ref()
                .and_then(|p| p.name.as_ref())
                .is_some_and(|n| {
                    !matches!(n, RestartPolicyNameEnum::NO | RestartPolicyNameEnum::EMPTY)
                })
        {
            bail!("Conflicting options: --restart and --rm");
        }
        let attach = !detach;
        let entrypoint = self.entrypoint.as_ref().map(|e| {
            if e.is_empty() {
                Vec::new()
            } else {
                vec![e.clone()]
            }
        });
        Ok(ContainerCreateBody {
            hostname: self.hostname.clone(),
            user: self.user.clone(),
            attach_stdin: Some(attach && self.interactive),
            attach_stdout: Some(attach),
            attach_stderr: Some(attach),
            tty: Some(self.tty),
            open_stdin: Some(self.interactive),
            stdin_once: Some(attach && self.interactive),
            env: (!env.is_empty()).then_some(env),
            cmd: (!self.command().is_empty()).then(|| self.command().to_vec()),
            image: Some(self.image().to_string()),
            working_dir: self.workdir.clone(),
            entrypoint,
            labels: (!self.label.is_empty()).then(|| key_values(&self.label)),
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
            volumes: (!volumes.is_empty()).then_some(volumes),
            healthcheck: health_config(self)?,
            host_config: Some(host_config),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            networking_config: (!endpoints.is_empty()).then_some(NetworkingConfig {
                endpoints_config: Some(endpoints),
            }),
            ..Default::default()
        })
    }
}

/// One published port of `-p`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub container_port: u16,
    pub proto: String,
    pub host_ip: String,
    /// `""` (random), a port, or a range `a-b` (first free one).
    pub host_port: String,
}

fn parse_port_range(s: &str) -> Result<(u16, u16)> {
    let p = |x: &str| -> Result<u16> {
        x.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .with_context(|| format!("invalid port {x:?}"))
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (p(a)?, p(b)?);
            if a > b {
                bail!("invalid port range {s}");
            }
            Ok((a, b))
        }
        None => {
            let a = p(s)?;
            Ok((a, a))
        }
    }
}

/// Parses docker's `-p [IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/PROTO]` (IPv6 addresses in
/// brackets) into one mapping per container port.
pub fn parse_publish(spec: &str) -> Result<Vec<Publish>> {
    let bad = |why: &str| anyhow::anyhow!("invalid publish spec {spec:?}: {why}");
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if proto != "tcp" && proto != "udp" {
        return Err(bad("the protocol must be tcp or udp"));
    }
    let (ip, host, container) = match rest.rsplitn(3, ':').collect::<Vec<_>>().as_slice() {
        [c] => ("", "", *c),
        [c, h] => ("", *h, *c),
        [c, h, ip] => (ip.trim_start_matches('[').trim_end_matches(']'), *h, *c),
        _ => return Err(bad("too many colons")),
    };
    if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
        return Err(bad(&format!("invalid IP address {ip:?}")));
    }
    let (clo, chi) = parse_port_range(container).map_err(|e| bad(&e.to_string()))?;
    let host_range = if host.is_empty() {
        None
    } else {
        Some(parse_port_range(host).map_err(|e| bad(&e.to_string()))?)
    };
    let n = (chi - clo) as u32 + 1;
    let mut out = Vec::new();
    for (i, cport) in (clo..=chi).enumerate() {
        let host_port = match host_range {
            None => String::new(),
            Some((hlo, hhi)) if hhi - hlo + 1 == n as u16 && n > 1 => (hlo + i as u16).to_string(),
            Some((hlo, hhi)) if n == 1 && hlo == hhi => hlo.to_string(),
            Some((hlo, hhi)) if n == 1 => format!("{hlo}-{hhi}"),
            Some(_) => return Err(bad("port ranges don't match")),
        };
        out.push(Publish {
            container_port: cport,
            proto: proto.clone(),
            host_ip: ip.to_string(),
            host_port,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {

    /// `--blkio-weight-device`, `--device-{read,write}-{bps,iops}`, `--gpus` and
    /// `--storage-opt` parse as docker's CLI does, with its messages.
    #[test]
    fn blkio_gpus_and_storage_flags_as_dockers() {
        let w = parse_weight_device("/dev/sda:200").unwrap();
        assert_eq!((w.path.as_deref(), w.weight), (Some("/dev/sda"), Some(200)));
        for (bad, want) in [
            ("/dev/sda", "bad format: /dev/sda"),
            ("sda:200", "bad format for device path: sda:200"),
            ("/dev/sda:5", "invalid weight for device: /dev/sda:5"),
        ] {
            let e = parse_weight_device(bad).unwrap_err().to_string();
            assert!(e.ends_with(want), "{e}");
        }
        let t = parse_throttle_bps("device-read-bps", "/dev/sda:1mb").unwrap();
        assert_eq!(
            (t.path.as_deref(), t.rate),
            (Some("/dev/sda"), Some(1 << 20))
        );
        let e = parse_throttle_bps("device-read-bps", "/dev/sda:fast")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid argument \"/dev/sda:fast\" for \"--device-read-bps\" flag: invalid rate for device: /dev/sda:fast."),
            "{e}"
        );
        let t = parse_throttle_iops("device-write-iops", "/dev/sda:100").unwrap();
        assert_eq!(t.rate, Some(100));
        assert!(parse_throttle_iops("device-write-iops", "/dev/sda:1mb").is_err());
        let g = parse_gpus("all").unwrap();
        assert_eq!(
            (g.count, g.capabilities),
            (Some(-1), Some(vec![vec!["gpu".to_string()]]))
        );
        assert_eq!(parse_gpus("2").unwrap().count, Some(2));
        let s = parse_storage_opts(&["size=1G".to_string()]).unwrap();
        assert_eq!(s["size"], "1G");
        assert!(parse_storage_opts(&["size".to_string()]).is_err());
    }

    #[test]
    fn ulimit_and_device_flags_as_dockers() {
        let u = parse_ulimit("nofile=123:456").unwrap();
        assert_eq!(
            (u.name.as_deref(), u.soft, u.hard),
            (Some("nofile"), Some(123), Some(456))
        );
        let u = parse_ulimit("nproc=77").unwrap();
        assert_eq!((u.soft, u.hard), (Some(77), Some(77)));
        assert!(parse_ulimit("nofile").is_err());
        assert!(parse_ulimit("nofile=9:3")
            .unwrap_err()
            .to_string()
            .contains("9 > 3"));
        let d = |s: &str| {
            let d = parse_device(s).unwrap();
            (
                d.path_on_host.unwrap(),
                d.path_in_container.unwrap(),
                d.cgroup_permissions.unwrap(),
            )
        };
        assert_eq!(
            d("/dev/fuse"),
            ("/dev/fuse".into(), "/dev/fuse".into(), "rwm".into())
        );
        assert_eq!(
            d("/dev/fuse:r"),
            ("/dev/fuse".into(), "/dev/fuse".into(), "r".into())
        );
        assert_eq!(
            d("/dev/a:/dev/b"),
            ("/dev/a".into(), "/dev/b".into(), "rwm".into())
        );
        assert_eq!(
            d("/dev/a:/dev/b:mr"),
            ("/dev/a".into(), "/dev/b".into(), "mr".into())
        );
        assert!(parse_device("/dev/a:/dev/b:x").is_err());
        assert!(parse_device("/dev/a:rel").is_err());
    }

    use super::*;
    use clap::Parser;
    use serde_json::json;

    #[derive(Parser)]
    #[command(disable_help_flag = true)]
    struct T {
        #[command(flatten)]
        opts: ContainerOpts,
        #[arg(short, long)]
        detach: bool,
    }

    fn body(args: &[&str]) -> serde_json::Value {
        let t = T::try_parse_from(std::iter::once("run").chain(args.iter().copied())).unwrap();
        serde_json::to_value(t.opts.to_create_body(t.detach).unwrap()).unwrap()
    }

    #[test]
    fn units() {
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512k").unwrap(), 512 << 10);
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert_eq!(parse_bytes("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("10mb").unwrap(), 10 << 20);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5x").is_err());
        assert_eq!(parse_cpus("1.5").unwrap(), 1_500_000_000);
        assert_eq!(parse_cpus("0.25").unwrap(), 250_000_000);
        assert!(parse_cpus("abc").is_err());
        assert!(parse_cpus("-1").is_err());
    }

    #[test]
    fn run_flags_to_body() {
        let b = body(&[
            "-it",
            "--rm",
            "--name",
            "web",
            "-e",
            "A=1",
            "-w",
            "/tmp",
            "-u",
            "1000:1000",
            "-m",
            "64m",
            "--cpus",
            "1.5",
            "--pids-limit",
            "100",
            "--read-only",
            "--cap-add",
            "NET_ADMIN",
            "--cap-drop",
            "ALL",
            "-l",
            "k=v",
            "--init",
            "-h",
            "box",
            "--restart",
            "no",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "echo hi",
        ]);
        assert_eq!(b["Image"], "busybox");
        assert_eq!(b["Cmd"], json!(["sh", "-c", "echo hi"]));
        assert_eq!(b["Tty"], true);
        assert_eq!(b["OpenStdin"], true);
        assert_eq!(b["AttachStdin"], true);
        assert_eq!(b["StdinOnce"], true);
        assert_eq!(b["Env"], json!(["A=1"]));
        assert_eq!(b["WorkingDir"], "/tmp");
        assert_eq!(b["User"], "1000:1000");
        assert_eq!(b["Hostname"], "box");
        assert_eq!(b["Labels"], json!({"k": "v"}));
        let hc = &b["HostConfig"];
        assert_eq!(hc["Memory"], 64 << 20);
        assert_eq!(hc["NanoCpus"], 1_500_000_000i64);
        assert_eq!(hc["PidsLimit"], 100);
        assert_eq!(hc["ReadonlyRootfs"], true);
        assert_eq!(hc["CapAdd"], json!(["NET_ADMIN"]));
        assert_eq!(hc["CapDrop"], json!(["ALL"]));
        assert_eq!(hc["AutoRemove"], true);
        assert_eq!(hc["Init"], true);
        assert_eq!(hc["NetworkMode"], "none");
        assert_eq!(hc["RestartPolicy"], json!({"Name": "no"}));
    }

    #[test]
    fn detached_and_entrypoint() {
        let b = body(&["-d", "--entrypoint", "/bin/sh", "img:1", "-c", "ls -l"]);
        assert_eq!(b["AttachStdout"], false);
        assert_eq!(b["AttachStdin"], false);
        assert_eq!(b["Entrypoint"], json!(["/bin/sh"]));
        assert_eq!(b["Cmd"], json!(["-c", "ls -l"]));
        assert!(b.get("Env").is_none());
        assert_eq!(b["HostConfig"]["NetworkMode"], "default");
        let b = body(&["--entrypoint", "", "img"]);
        assert_eq!(b["Entrypoint"], json!([]));
        assert!(b.get("Cmd").is_none());
        assert!(T::try_parse_from(["run", "--bogus", "img"]).is_err());
        assert!(T::try_parse_from(["run", "-d"]).is_err());
        let b = body(&["img", "--rm", "-it"]);
        assert_eq!(b["Cmd"], json!(["--rm", "-it"]));
        assert_eq!(b["HostConfig"].get("AutoRemove"), None);
    }

    #[test]
    fn restart_policies() {
        let b = body(&["--restart", "on-failure:3", "img"]);
        assert_eq!(
            b["HostConfig"]["RestartPolicy"],
            json!({"Name": "on-failure", "MaximumRetryCount": 3})
        );
        let t = T::try_parse_from(["run", "--rm", "--restart", "always", "img"]).unwrap();
        assert!(t.opts.to_create_body(false).is_err());
        let t = T::try_parse_from(["run", "--restart", "sometimes", "img"]).unwrap();
        assert!(t.opts.to_create_body(false).is_err());
    }

    #[test]
    fn volume_flags_to_body() {
        let b = body(&[
            "-v",
            "data:/data:ro",
            "-v",
            "/anon",
            "-v",
            "/h:/c:rw,rshared",
            "--tmpfs",
            "/run:size=1m,mode=1777",
            "--tmpfs",
            "/t",
            "--volumes-from",
            "other:ro",
            "--mount",
            "type=bind,src=/s,dst=/b,readonly,bind-propagation=rslave",
            "--mount",
            "type=tmpfs,target=/tm,tmpfs-size=64m,tmpfs-mode=1770",
            "--mount",
            "source=v,target=/v,volume-nocopy,volume-subpath=sub,volume-opt=type=tmpfs,volume-label=a=b",
            "img",
        ]);
        assert_eq!(b["Volumes"], json!({"/anon": {}}));
        let hc = &b["HostConfig"];
        assert_eq!(hc["Binds"], json!(["data:/data:ro", "/h:/c:rw,rshared"]));
        assert_eq!(hc["Tmpfs"], json!({"/run": "size=1m,mode=1777", "/t": ""}));
        assert_eq!(hc["VolumesFrom"], json!(["other:ro"]));
        assert_eq!(
            hc["Mounts"][0],
            json!({"Type": "bind", "Source": "/s", "Target": "/b", "ReadOnly": true,
                "BindOptions": {"Propagation": "rslave"}})
        );
        assert_eq!(
            hc["Mounts"][1],
            json!({"Type": "tmpfs", "Target": "/tm",
                "TmpfsOptions": {"SizeBytes": 64 << 20, "Mode": 0o1770}})
        );
        assert_eq!(
            hc["Mounts"][2],
            json!({"Type": "volume", "Source": "v", "Target": "/v", "VolumeOptions": {
                "NoCopy": true, "Subpath": "sub", "Labels": {"a": "b"},
                "DriverConfig": {"Options": {"type": "tmpfs"}}}})
        );
    }

    #[test]
    fn mount_flag_errors_like_docker() {
        let e = |s: &str| parse_mount(s).unwrap_err().to_string();
        assert!(e("type=bind,src=/x").ends_with("target is required"));
        assert!(e("type=bind,bogus=1,target=/x").ends_with("unexpected key 'bogus' in 'bogus=1'"));
        assert!(e("type=bind,target=/x,nope")
            .ends_with("invalid field 'nope' must be a key=value pair"));
        assert!(e("type=bind,target=/x,volume-nocopy")
            .ends_with("cannot mix 'volume-*' options with mount type 'bind'"));
        assert!(e("type=tmpfs,target=/x,tmpfs-mode=9").ends_with("invalid value for tmpfs-mode: 9"));
        assert!(e("type=bind,target=/x,readonly=maybe").contains("invalid value for readonly"));
        let v = parse_mount("type=bind,\"source=/a,b\",target=/c").unwrap();
        assert_eq!(v["Source"], "/a,b");
        let (binds, vols) = split_volumes(&["./rel:/x".into(), "/only".into()]);
        assert!(
            binds[0].starts_with('/') && binds[0].ends_with("/rel:/x"),
            "{binds:?}"
        );
        assert_eq!(vols, vec!["/only"]);
    }

    #[test]
    fn health_flags() {
        let b = body(&[
            "--health-cmd",
            "exit 1",
            "--health-interval",
            "1s",
            "--health-retries",
            "2",
            "--health-start-period",
            "1m30s",
            "img",
        ]);
        assert_eq!(
            b["Healthcheck"],
            json!({"Test": ["CMD-SHELL", "exit 1"], "Interval": 1_000_000_000i64, "Retries": 2,
                   "StartPeriod": 90_000_000_000i64})
        );
        let b = body(&["--no-healthcheck", "img"]);
        assert_eq!(b["Healthcheck"], json!({"Test": ["NONE"]}));
        let b = body(&["img"]);
        assert!(b.get("Healthcheck").is_none());
        let t =
            T::try_parse_from(["run", "--no-healthcheck", "--health-retries", "1", "img"]).unwrap();
        assert!(t.opts.to_create_body(false).is_err());
        let t = T::try_parse_from(["run", "--health-interval", "5x", "img"]).unwrap();
        let e = t.opts.to_create_body(false).unwrap_err().to_string();
        assert!(e.contains("--health-interval"), "{e}");
        assert_eq!(parse_duration_ns("500ms", "x").unwrap(), 500_000_000);
        assert_eq!(parse_duration_ns("1.5h", "x").unwrap(), 5_400_000_000_000);
        assert_eq!(parse_duration_ns("0", "x").unwrap(), 0);
        assert!(parse_duration_ns("5", "x").is_err());
    }

    #[test]
    fn publish_specs() {
        let one = |s: &str| {
            let v = parse_publish(s).unwrap();
            assert_eq!(v.len(), 1, "{s}");
            let p = &v[0];
            format!(
                "{}|{}|{}|{}",
                p.host_ip, p.host_port, p.container_port, p.proto
            )
        };
        assert_eq!(one("8080"), "||8080|tcp");
        assert_eq!(one("18080:8080"), "|18080|8080|tcp");
        assert_eq!(one("127.0.0.1:18080:8080/udp"), "127.0.0.1|18080|8080|udp");
        assert_eq!(one("127.0.0.1::8080"), "127.0.0.1||8080|tcp");
        assert_eq!(one("18080-18090:8080"), "|18080-18090|8080|tcp");
        let v = parse_publish("9000-9001:80-81").unwrap();
        assert_eq!((v[1].host_port.as_str(), v[1].container_port), ("9001", 81));
        for bad in [
            "x",
            "1:2:3:4",
            "80/sctp",
            "9000-9002:80-81",
            "nope:80:80",
            "0:80",
        ] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
        let b = body(&[
            "-p",
            "18080:8080",
            "-P",
            "--expose",
            "9000",
            "--network",
            "front",
            "--network-alias",
            "api",
            "img",
        ]);
        assert_eq!(
            b["HostConfig"]["PortBindings"]["8080/tcp"][0]["HostPort"],
            "18080"
        );
        assert_eq!(b["HostConfig"]["PublishAllPorts"], true);
        assert_eq!(b["ExposedPorts"], json!({"8080/tcp": {}, "9000/tcp": {}}));
        assert_eq!(
            b["NetworkingConfig"]["EndpointsConfig"]["front"]["Aliases"],
            json!(["api"])
        );
    }

    #[test]
    fn env_file_parsing() {
        let env = parse_env_file("# comment\nA=1\n\nB=two words\n");
        assert_eq!(env, vec!["A=1", "B=two words"]);
    }
}
