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
    Ok(())
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
