//! The `HostConfig` checks at create with dockerd's messages: namespaces, cgroup mode,
//! CPU set and swappiness ([`check_host_options`]), the volume driver, and device cgroup
//! rules ([`device_rule`], also used by the spec).
//!
//! **Invariants:** a check either completes the options with dockerd's defaults or refuses
//! them; nothing here touches the host beyond what the caller passes in.

use super::*;

/// One `HostConfig.DeviceCgroupRules` entry (`c 1:3 mr`, `a *:* rwm`, `b 8:* r`) as an OCI
/// device cgroup rule; `None` for an empty rule. Errors as dockerd: `invalid device cgroup
/// format 'RULE'`.
pub(crate) fn device_rule(rule: &str) -> Result<Option<Value>, ContainerError> {
    let bad = || ContainerError::BadHostConfig(format!("invalid device cgroup format '{rule}'"));
    let rule = rule.trim();
    if rule.is_empty() {
        return Ok(None);
    }
    let parts: Vec<&str> = rule.split_whitespace().collect();
    let [typ, nums, access] = parts.as_slice() else {
        return Err(bad());
    };
    if !["a", "b", "c"].contains(typ)
        || access.is_empty()
        || !access.chars().all(|c| "rwm".contains(c))
    {
        return Err(bad());
    }
    let (major, minor) = nums.split_once(':').ok_or_else(bad)?;
    let num = |n: &str| -> Result<Option<i64>, ContainerError> {
        if n == "*" {
            Ok(None)
        } else {
            n.parse::<i64>().map(Some).map_err(|_| bad())
        }
    };
    let mut v = json!({"allow": true, "type": typ, "access": access});
    if let Some(m) = num(major)? {
        v["major"] = json!(m);
    }
    if let Some(m) = num(minor)? {
        v["minor"] = json!(m);
    }
    Ok(Some(v))
}

/// What the host's kernel and cgroups offer, as dockerd's `sysinfo.SysInfo` sees it: read once
/// per create by [`SysInfo::probe`], passed in so the checks stay pure.
#[derive(Debug, Clone)]
pub(crate) struct SysInfo {
    /// The unified hierarchy (cgroup v2) is in use.
    pub cgroup_v2: bool,
    /// The CPUs `CpusetCpus` may name (the root cpuset's `cpuset.cpus`, `0-1`).
    pub cpus: String,
    /// The memory nodes `CpusetMems` may name (the root cpuset's `cpuset.mems`, `0`).
    pub mems: String,
    /// `blkio.weight` exists (CFQ/BFQ; v1) or `io.weight`/`io.bfq.weight` (v2).
    pub blkio_weight: bool,
    /// `blkio.weight_device` exists (v1) or `io.weight` (v2).
    pub blkio_weight_device: bool,
    /// The throttle files exist (`blkio.throttle.*_device` on v1, `io.max` on v2).
    pub blkio_throttle: bool,
    /// `cpu.rt_period_us` exists (`CONFIG_RT_GROUP_SCHED`).
    pub cpu_realtime: bool,
}

impl SysInfo {
    /// Reads the host's controllers under `/sys/fs/cgroup` (v1: `<ctrl>/...`, v2: the root).
    pub(crate) fn probe() -> SysInfo {
        let root = Path::new("/sys/fs/cgroup");
        let cgroup_v2 = root.join("cgroup.controllers").exists();
        let read = |p: &Path| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let (cpus, mems) = if cgroup_v2 {
            (
                read(&root.join("cpuset.cpus.effective")),
                read(&root.join("cpuset.mems.effective")),
            )
        } else {
            (
                read(&root.join("cpuset/cpuset.cpus")),
                read(&root.join("cpuset/cpuset.mems")),
            )
        };
        let cpus = cpus
            .or_else(|| read(Path::new("/sys/devices/system/cpu/online")))
            .unwrap_or_else(|| "0".into());
        let mems = mems
            .or_else(|| read(Path::new("/sys/devices/system/node/online")))
            .unwrap_or_else(|| "0".into());
        let has = |p: &str| root.join(p).exists();
        if cgroup_v2 {
            SysInfo {
                cgroup_v2,
                cpus,
                mems,
                blkio_weight: has("io.bfq.weight") || has("io.weight"),
                blkio_weight_device: has("io.bfq.weight") || has("io.weight"),
                blkio_throttle: has("io.max") || has("cgroup.subtree_control"),
                cpu_realtime: false,
            }
        } else {
            SysInfo {
                cgroup_v2,
                cpus,
                mems,
                blkio_weight: has("blkio/blkio.weight") || has("blkio/blkio.bfq.weight"),
                blkio_weight_device: has("blkio/blkio.weight_device")
                    || has("blkio/blkio.bfq.weight_device"),
                blkio_throttle: has("blkio/blkio.throttle.read_bps_device"),
                cpu_realtime: has("cpu/cpu.rt_period_us"),
            }
        }
    }
}

/// Checks and completes the namespace, cgroup and group settings of a `HostConfig` at create,
/// with dockerd's messages: `CgroupnsMode` gets the default (`cgroup_v2`: `private`, else
/// `host`), `MemorySwappiness` is dropped where the kernel has no such control (cgroup v2,
/// as dockerd does with a warning), and so are the block I/O settings the kernel lacks
/// (dockerd's warnings, returned). `MaskedPaths`/`ReadonlyPaths` get the defaults unless
/// given or privileged.
pub(crate) fn check_host_options(
    host: &mut HostOptions,
    sys: &SysInfo,
) -> Result<Vec<String>, ContainerError> {
    let cgroup_v2 = sys.cgroup_v2;
    let invalid = |_field: &str, reason: String| ContainerError::BadHostConfig(reason);
    match host.cgroupns_mode.as_str() {
        "" => host.cgroupns_mode = if cgroup_v2 { "private" } else { "host" }.into(),
        "host" | "private" => {}
        m => {
            return Err(invalid(
                "cgroupns mode",
                format!("invalid cgroup namespace mode: {m}"),
            ))
        }
    }
    let joins_pid = host
        .pid_mode
        .strip_prefix("container:")
        .is_some_and(|c| !c.is_empty());
    if !joins_pid && !matches!(host.pid_mode.as_str(), "" | "host") {
        return Err(invalid(
            "PID mode",
            format!("--pid: invalid PID mode {:?}", host.pid_mode),
        ));
    }
    // dockerd's `IpcMode.Valid` and default (`--default-ipc-mode private`).
    let joins_ipc = host
        .ipc_mode
        .strip_prefix("container:")
        .is_some_and(|c| !c.is_empty());
    // `sandbox:<key>`: a pod sandbox's IPC namespace and `/dev/shm` (the node agent's).
    let in_sandbox = |m: &str| m.strip_prefix("sandbox:").is_some_and(|k| !k.is_empty());
    match host.ipc_mode.as_str() {
        "" => host.ipc_mode = "private".into(),
        "private" | "shareable" | "host" | "none" => {}
        _ if joins_ipc || in_sandbox(&host.ipc_mode) => {}
        m => return Err(invalid("IPC mode", format!("invalid IPC mode: {m}"))),
    }
    if !matches!(host.uts_mode.as_str(), "" | "host") && !in_sandbox(&host.uts_mode) {
        return Err(invalid(
            "UTS mode",
            format!("--uts: invalid UTS mode {:?}", host.uts_mode),
        ));
    }
    if !matches!(host.isolation.as_str(), "" | "default") {
        return Err(invalid(
            "isolation",
            format!(
                "Invalid isolation: {:?} - linux only supports 'default'",
                host.isolation
            ),
        ));
    }
    for r in &host.device_cgroup_rules {
        device_rule(r)?;
    }
    match host.memory_swappiness {
        Some(s) if !(-1..=100).contains(&s) => {
            return Err(invalid(
                "memory swappiness",
                format!("Invalid value: {s}, valid memory swappiness range is 0-100"),
            ))
        }
        Some(_) if cgroup_v2 => host.memory_swappiness = None,
        _ => {}
    }
    // dockerd's `IsCpusetCpusAvailable`/`IsCpusetMemsAvailable` (`ParseUintList`).
    for (what, list, avail, nodes) in [
        ("cpus", &host.cpuset_cpus, &sys.cpus, "CPUs"),
        ("mems", &host.cpuset_mems, &sys.mems, "memory nodes"),
    ] {
        if list.is_empty() {
            continue;
        }
        let wanted = parse_cpuset(list).ok_or_else(|| {
            invalid(
                "cpuset",
                format!("Invalid value {list} for cpuset {what}: invalid format: {list}"),
            )
        })?;
        let have = parse_cpuset(avail).unwrap_or_default();
        if wanted.iter().any(|c| !have.contains(c)) {
            return Err(invalid(
                "cpuset",
                format!(
                    "Requested {nodes} are not available - requested {list}, available: {avail}"
                ),
            ));
        }
    }
    for g in &host.group_add {
        if g.is_empty() {
            return Err(invalid("group", "empty group name".into()));
        }
    }
    if !(-1000..=1000).contains(&host.oom_score_adj) {
        return Err(invalid(
            "oom score adj",
            format!(
                "Invalid value {}, range for oom score adj is [-1000, 1000]",
                host.oom_score_adj
            ),
        ));
    }
    if host.memory_reservation < 0 {
        return Err(invalid(
            "memory reservation",
            format!("invalid memory reservation {}", host.memory_reservation),
        ));
    }
    if host.memory > 0 && host.memory_reservation > host.memory {
        return Err(invalid(
            "memory reservation",
            "Minimum memory limit can not be less than memory reservation limit, see usage".into(),
        ));
    }
    for u in &host.ulimits {
        ulimit_type(&u.name)
            .ok_or_else(|| invalid("ulimit", format!("invalid ulimit type: {}", u.name)))?;
        if u.hard >= 0 && (u.soft > u.hard || u.soft < 0) {
            return Err(invalid(
                "ulimit",
                format!(
                    "ulimit soft limit must be less than or equal to hard limit: {} > {}",
                    u.soft, u.hard
                ),
            ));
        }
    }
    for k in host.sysctls.keys() {
        check_sysctl(k, &host.network_mode, &host.ipc_mode, &host.uts_mode)
            .map_err(|m| invalid("sysctl", m))?;
    }
    for d in &host.devices {
        if d.path_on_host.is_empty() {
            return Err(invalid(
                "device",
                "invalid device mapping: empty host path".into(),
            ));
        }
        if !d.cgroup_permissions.is_empty()
            && !d.cgroup_permissions.chars().all(|c| "rwm".contains(c))
        {
            return Err(invalid(
                "device",
                format!("invalid device mode: {}", d.cgroup_permissions),
            ));
        }
    }
    let warnings = check_resources(host, sys)?;
    if !host.privileged {
        let defaults = |l: &[&str]| l.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        host.masked_paths
            .get_or_insert_with(|| defaults(super::MASKED_PATHS));
        host.readonly_paths
            .get_or_insert_with(|| defaults(super::READONLY_PATHS));
    }
    Ok(warnings)
}

/// dockerd's block I/O, real-time CPU, storage and user namespace checks
/// (`verifyPlatformContainerResources`, `validateResources`, overlay2's `CreateReadWrite`),
/// with its messages; a block I/O setting the kernel lacks is dropped with dockerd's warning.
fn check_resources(host: &mut HostOptions, sys: &SysInfo) -> Result<Vec<String>, ContainerError> {
    let bad = |m: &str| Err(ContainerError::BadHostConfig(m.to_string()));
    let mut warnings = Vec::new();
    if host.blkio_weight > 0 && !sys.blkio_weight {
        warnings.push(
            "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded."
                .to_string(),
        );
        host.blkio_weight = 0;
    }
    if host.blkio_weight > 0 && !(10..=1000).contains(&host.blkio_weight) {
        return bad("Range of blkio weight is from 10 to 1000");
    }
    if !host.blkio_weight_device.is_empty() && !sys.blkio_weight_device {
        warnings.push("Your kernel does not support Block I/O weight_device or the cgroup is not mounted. Weight-device discarded.".to_string());
        host.blkio_weight_device.clear();
    }
    let throttles: [(&mut Vec<crate::ThrottleDevice>, &str); 4] = [
        (&mut host.blkio_device_read_bps, "Your kernel does not support BPS Block I/O read limit or the cgroup is not mounted. Block I/O BPS read limit discarded."),
        (&mut host.blkio_device_write_bps, "Your kernel does not support BPS Block I/O write limit or the cgroup is not mounted. Block I/O BPS write limit discarded."),
        (&mut host.blkio_device_read_iops, "Your kernel does not support IOPS Block read limit or the cgroup is not mounted. Block I/O IOPS read limit discarded."),
        (&mut host.blkio_device_write_iops, "Your kernel does not support IOPS Block write limit or the cgroup is not mounted. Block I/O IOPS write limit discarded."),
    ];
    for (list, warning) in throttles {
        if !list.is_empty() && !sys.blkio_throttle {
            warnings.push(warning.to_string());
            list.clear();
        }
    }
    // dockerd 20.10's `validateResources` (runconfig/hostconfig_unix.go).
    let (period, runtime) = (host.cpu_realtime_period, host.cpu_realtime_runtime);
    if (period != 0 || runtime != 0) && !sys.cpu_realtime {
        return bad("Your kernel does not support CPU real-time scheduler");
    }
    if period != 0 && runtime != 0 && runtime > period {
        return bad("cpu real-time runtime cannot be higher than cpu real-time period");
    }
    // overlay2's `CreateReadWrite`/`parseStorageOpt`: `size` needs xfs project quotas, which
    // this store never has; any other option is unknown.
    if host.storage_opt.contains_key("size") {
        return bad(
            "--storage-opt is supported only for overlay over xfs with 'pquota' mount option",
        );
    }
    if let Some(k) = host.storage_opt.keys().next() {
        return Err(ContainerError::BadHostConfig(format!("Unknown option {k}")));
    }
    // No userns-remap is configured: only the host's user namespace exists (docker's
    // `UsernsMode.Valid`: `host`, or empty).
    if !host.userns_mode.is_empty() && host.userns_mode != "host" {
        return Err(ContainerError::BadHostConfig(format!(
            "invalid USER mode: {}",
            host.userns_mode
        )));
    }
    Ok(warnings)
}

/// A block device's `(major, minor)`, by path, with dockerd's error (`os.PathError` of
/// `stat`): `stat /dev/nope: no such file or directory`.
pub(crate) fn block_device_numbers(path: &str) -> Result<(u64, u64), ContainerError> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        };
        ContainerError::BadHostConfig(format!("stat {path}: {why}"))
    })?;
    Ok((libc::major(m.rdev()).into(), libc::minor(m.rdev()).into()))
}

/// The OCI `linux.resources.blockIO` of the container's block I/O settings (dockerd's
/// `getBlkioWeightDevices`/`getBlkioThrottleDevices`: device paths resolved to major:minor
/// at start); `None` when none is set.
pub(crate) fn block_io(host: &HostOptions) -> Result<Option<Value>, ContainerError> {
    let mut io = serde_json::Map::new();
    if host.blkio_weight > 0 {
        io.insert("weight".into(), json!(host.blkio_weight));
    }
    let mut weights = Vec::new();
    for w in &host.blkio_weight_device {
        let (major, minor) = block_device_numbers(&w.path)?;
        weights.push(json!({"major": major, "minor": minor, "weight": w.weight}));
    }
    if !weights.is_empty() {
        io.insert("weightDevice".into(), json!(weights));
    }
    for (key, list) in [
        ("throttleReadBpsDevice", &host.blkio_device_read_bps),
        ("throttleWriteBpsDevice", &host.blkio_device_write_bps),
        ("throttleReadIOPSDevice", &host.blkio_device_read_iops),
        ("throttleWriteIOPSDevice", &host.blkio_device_write_iops),
    ] {
        let mut out = Vec::new();
        for t in list {
            let (major, minor) = block_device_numbers(&t.path)?;
            out.push(json!({"major": major, "minor": minor, "rate": t.rate}));
        }
        if !out.is_empty() {
            io.insert(key.into(), json!(out));
        }
    }
    Ok((!io.is_empty()).then_some(Value::Object(io)))
}

/// dockerd's refusal of `HostConfig.DeviceRequests` when no device driver matches (none is
/// registered here): `could not select device driver "" with capabilities: [[gpu]]`.
pub(crate) fn check_device_requests(host: &HostOptions) -> Result<(), ContainerError> {
    let Some(r) = host.device_requests.first() else {
        return Ok(());
    };
    let caps: Vec<String> = r
        .capabilities
        .iter()
        .map(|and| format!("[{}]", and.join(" ")))
        .collect();
    Err(ContainerError::BadHostConfig(format!(
        "could not select device driver {:?} with capabilities: [{}]",
        r.driver,
        caps.join(" ")
    )))
}

/// The OCI `RLIMIT_*` of a docker `--ulimit` name (go-units' `ulimitNameMapping`).
pub(crate) fn ulimit_type(name: &str) -> Option<&'static str> {
    Some(match name {
        "as" => "RLIMIT_AS",
        "core" => "RLIMIT_CORE",
        "cpu" => "RLIMIT_CPU",
        "data" => "RLIMIT_DATA",
        "fsize" => "RLIMIT_FSIZE",
        "locks" => "RLIMIT_LOCKS",
        "memlock" => "RLIMIT_MEMLOCK",
        "msgqueue" => "RLIMIT_MSGQUEUE",
        "nice" => "RLIMIT_NICE",
        "nofile" => "RLIMIT_NOFILE",
        "nproc" => "RLIMIT_NPROC",
        "rss" => "RLIMIT_RSS",
        "rtprio" => "RLIMIT_RTPRIO",
        "rttime" => "RLIMIT_RTTIME",
        "sigpending" => "RLIMIT_SIGPENDING",
        "stack" => "RLIMIT_STACK",
        _ => return None,
    })
}

/// runc's sysctl validation (`libcontainer/configs/validate`): only parameters namespaced
/// by a namespace the container has of its own — IPC (`kernel.msg*`, `kernel.sem`,
/// `kernel.shm*`, `fs.mqueue.*`), network (`net.*`), UTS (`kernel.hostname`,
/// `kernel.domainname`) — with runc's messages.
pub(crate) fn check_sysctl(key: &str, network: &str, ipc: &str, uts: &str) -> Result<(), String> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let host = |ns: &str| format!("sysctl {key:?} not allowed in host {ns} namespace");
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        return if ipc == "host" {
            Err(host("ipc"))
        } else {
            Ok(())
        };
    }
    if key.starts_with("net.") {
        return if network == "host" {
            Err(host("network"))
        } else {
            Ok(())
        };
    }
    if key == "kernel.hostname" || key == "kernel.domainname" {
        return if uts == "host" {
            Err(host("uts"))
        } else {
            Ok(())
        };
    }
    Err(format!(
        "sysctl {key:?} is not in a separate kernel namespace"
    ))
}

/// The device nodes of a `HostConfig.Devices` entry for the spec's `linux.devices`, and the
/// device cgroup rules that allow them (dockerd's `DevicesFromPath`): the node itself, or
/// every node under a directory, at the same relative path under `path_in_container`.
/// Errors as dockerd: `error gathering device information while adding custom device
/// "PATH": no such file or directory`.
pub(crate) fn devices_from_path(
    d: &crate::DeviceMapping,
) -> Result<(Vec<Value>, Vec<Value>), ContainerError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let gather = |e: std::io::Error| {
        ContainerError::BadHostConfig(format!(
            "error gathering device information while adding custom device {:?}: {}",
            d.path_on_host,
            match e.kind() {
                std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
                std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                _ => e.to_string(),
            }
        ))
    };
    let host = Path::new(&d.path_on_host);
    let inside = if d.path_in_container.is_empty() {
        d.path_on_host.clone()
    } else {
        d.path_in_container.clone()
    };
    let access = if d.cgroup_permissions.is_empty() {
        "rwm"
    } else {
        d.cgroup_permissions.as_str()
    };
    let meta = std::fs::metadata(host).map_err(gather)?;
    let mut nodes: Vec<(std::path::PathBuf, std::fs::Metadata)> = Vec::new();
    if meta.is_dir() {
        let mut stack = vec![host.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).map_err(gather)?.flatten() {
                let Ok(m) = std::fs::metadata(e.path()) else {
                    continue;
                };
                if m.is_dir() {
                    stack.push(e.path());
                } else {
                    nodes.push((e.path(), m));
                }
            }
        }
    } else {
        nodes.push((host.to_path_buf(), meta));
    }
    let (mut devices, mut rules) = (Vec::new(), Vec::new());
    for (path, m) in nodes {
        let ft = m.file_type();
        let typ = if ft.is_char_device() {
            "c"
        } else if ft.is_block_device() {
            "b"
        } else {
            if path == host {
                return Err(gather(std::io::Error::other("not a device node")));
            }
            continue;
        };
        let rel = path.strip_prefix(host).unwrap_or(Path::new(""));
        let dest = if rel.as_os_str().is_empty() {
            Path::new(&inside).to_path_buf()
        } else {
            Path::new(&inside).join(rel)
        };
        let (major, minor) = (libc::major(m.rdev()), libc::minor(m.rdev()));
        devices.push(json!({
            "path": dest, "type": typ, "major": major, "minor": minor,
            "fileMode": m.mode() & 0o7777, "uid": m.uid(), "gid": m.gid(),
        }));
        rules.push(
            json!({"allow": true, "type": typ, "major": major, "minor": minor, "access": access}),
        );
    }
    Ok((devices, rules))
}

/// `HostConfig.VolumeDriver` for a container that creates volumes: only `local` exists
/// (dockerd: `error looking up volume plugin X: plugin "X" not found`).
pub(crate) fn check_volume_driver(
    host: &HostOptions,
    creates_volumes: bool,
) -> Result<(), ContainerError> {
    if creates_volumes && !matches!(host.volume_driver.as_str(), "" | "local") {
        return Err(ContainerError::BadHostConfig(format!(
            "error looking up volume plugin {0}: plugin \"{0}\" not found",
            host.volume_driver
        )));
    }
    Ok(())
}

/// A cpuset list (`0-2,4`) as CPU or node numbers (docker's `ParseUintList`); `None` when
/// malformed.
fn parse_cpuset(s: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    if s.is_empty() {
        return Some(out);
    }
    for part in s.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        if a > b {
            return None;
        }
        out.extend(a..=b);
    }
    Some(out)
}
