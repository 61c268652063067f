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

/// Checks and completes the namespace, cgroup and group settings of a `HostConfig` at create,
/// with dockerd's messages: `CgroupnsMode` gets the default (`cgroup_v2`: `private`, else
/// `host`), `MemorySwappiness` is dropped where the kernel has no such control (cgroup v2,
/// as dockerd does with a warning). `online_cpus`: CPUs `CpusetCpus` may name.
pub(crate) fn check_host_options(
    host: &mut HostOptions,
    cgroup_v2: bool,
    online_cpus: usize,
) -> Result<(), ContainerError> {
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
    if !host.cpuset_cpus.is_empty() {
        let cpus = parse_cpuset(&host.cpuset_cpus).ok_or_else(|| {
            invalid(
                "cpuset",
                format!("Invalid value {} for cpuset cpus", host.cpuset_cpus),
            )
        })?;
        if cpus.iter().any(|c| *c >= online_cpus) {
            return Err(invalid(
                "cpuset",
                format!(
                    "Requested CPUs are not available - requested {}, available: 0-{}",
                    host.cpuset_cpus,
                    online_cpus.saturating_sub(1)
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
    Ok(())
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

/// A cpuset list (`0-2,4`) as CPU numbers; `None` when malformed.
fn parse_cpuset(s: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
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
