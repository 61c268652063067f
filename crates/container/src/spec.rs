//! OCI runtime spec generation (`config.json` of a bundle) following Docker's defaults:
//! namespaces, mounts, devices, capabilities, masked/readonly paths, seccomp, resources.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde_json::{json, Value};

use crate::{ContainerError, HostOptions};

/// Docker's default capability set.
pub(crate) const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability Linux knows (in number order).
pub(crate) const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The capabilities available here (Docker's `GetAllCapabilities`): [`ALL_CAPS`] filtered by this
/// process' bounding set, so `--privileged`/`--cap-add ALL` never ask for what we cannot grant.
pub(crate) fn available_caps() -> Vec<String> {
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("CapBnd:")
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
        });
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(i, _)| bounding.is_none_or(|b| b & (1u64 << i) != 0))
        .map(|(_, c)| c.to_string())
        .collect()
}

fn normalize_cap(name: &str) -> String {
    let up = name.trim().to_ascii_uppercase();
    if up == "ALL" || up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// Docker's `TweakCapabilities`: the effective capability list for `--cap-add/--cap-drop/--privileged`.
pub(crate) fn capabilities(host: &HostOptions) -> Result<Vec<String>, ContainerError> {
    if host.privileged {
        return Ok(available_caps());
    }
    let adds: Vec<String> = host.cap_add.iter().map(|c| normalize_cap(c)).collect();
    let drops: Vec<String> = host.cap_drop.iter().map(|c| normalize_cap(c)).collect();
    for c in adds.iter().chain(drops.iter()) {
        if c != "ALL" && !ALL_CAPS.contains(&c.as_str()) {
            return Err(ContainerError::InvalidOption {
                field: "capability".into(),
                reason: format!("unknown capability: \"{c}\""),
            });
        }
    }
    let mut caps: Vec<String> = if adds.iter().any(|c| c == "ALL") {
        available_caps()
    } else if drops.iter().any(|c| c == "ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPS.iter().map(|s| s.to_string()).collect()
    };
    if !adds.iter().any(|c| c == "ALL") {
        caps.retain(|c| !drops.contains(c));
        for a in &adds {
            if !caps.contains(a) {
                caps.push(a.clone());
            }
        }
    } else {
        caps.retain(|c| !drops.contains(c));
    }
    Ok(caps)
}

/// A resolved process user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// Resolves Docker's `--user` (`name`, `uid`, `name:group`, `uid:gid`, empty = root) against the
/// container's `/etc/passwd` and `/etc/group` (as moby/sys/user `GetExecUser` does).
pub(crate) fn resolve_user(rootfs: &Path, user: &str) -> Result<ExecUser, String> {
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    resolve_user_from(&passwd, &group, user)
}

pub(crate) fn resolve_user_from(passwd: &str, group: &str, user: &str) -> Result<ExecUser, String> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let numeric_uid = user_part.parse::<u32>().ok();
    let found = entries.iter().find(|f| match numeric_uid {
        Some(n) => f[2].parse::<u32>().ok() == Some(n),
        None => f[0] == user_part,
    });
    let mut out = ExecUser {
        home: "/".into(),
        ..Default::default()
    };
    let mut user_name = None;
    match (found, numeric_uid) {
        (Some(f), _) => {
            out.uid = f[2]
                .parse()
                .map_err(|_| format!("invalid uid in passwd entry for {}", f[0]))?;
            out.gid = f[3].parse().unwrap_or(0);
            if let Some(h) = f.get(5) {
                if !h.is_empty() {
                    out.home = h.to_string();
                }
            }
            user_name = Some(f[0].to_string());
        }
        (None, Some(n)) => out.uid = n,
        (None, None) => {
            return Err(format!(
                "unable to find user {user_part}: no matching entries in passwd file"
            ))
        }
    }
    let groups: Vec<Vec<&str>> = group
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    if let Some(g) = group_part {
        if let Ok(n) = g.parse::<u32>() {
            out.gid = n;
        } else {
            let f = groups.iter().find(|f| f[0] == g).ok_or_else(|| {
                format!("unable to find group {g}: no matching entries in group file")
            })?;
            out.gid = f[2].parse().unwrap_or(0);
        }
    } else if let Some(name) = &user_name {
        for f in &groups {
            let members = f.get(3).copied().unwrap_or("");
            if members.split(',').any(|m| m.trim() == name) {
                if let Ok(gid) = f[2].parse::<u32>() {
                    if gid != out.gid && !out.additional_gids.contains(&gid) {
                        out.additional_gids.push(gid);
                    }
                }
            }
        }
    }
    Ok(out)
}

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
    if !matches!(host.pid_mode.as_str(), "" | "host") {
        return Err(invalid(
            "PID mode",
            format!("--pid: invalid PID mode {:?}", host.pid_mode),
        ));
    }
    if !matches!(host.uts_mode.as_str(), "" | "host") {
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

/// `HostConfig.GroupAdd` as group IDs: numbers as they are, names from the container's
/// `/etc/group` (dockerd's `Unable to find group NAME` otherwise), after `user`'s own.
pub(crate) fn add_groups(
    rootfs: &Path,
    user: &mut ExecUser,
    groups: &[String],
) -> Result<(), String> {
    if groups.is_empty() {
        return Ok(());
    }
    let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    for g in groups {
        let gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| format!("Unable to find group {g}"))?,
        };
        if !user.additional_gids.contains(&gid) {
            user.additional_gids.push(gid);
        }
    }
    Ok(())
}

/// Everything the spec depends on.
pub(crate) struct SpecInput<'a> {
    pub id: &'a str,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: ExecUser,
    pub hostname: String,
    pub domainname: String,
    pub tty: bool,
    pub host: &'a HostOptions,
    pub rootfs: PathBuf,
    /// `(container path, host file)` bind mounts for /etc/hosts, /etc/hostname, /etc/resolv.conf.
    pub etc_files: Vec<(String, PathBuf)>,
    /// The user's mounts (volumes, binds, tmpfs), ready on the host. A default mount at the same
    /// destination (e.g. `/dev/shm`, `/etc/hosts`) gives way to the user's; see [`build_spec`].
    pub mounts: Vec<crate::mounts::SpecMount>,
    pub init_path: Option<PathBuf>,
    /// `container:<id>` network mode: the netns path to join.
    pub netns_path: Option<PathBuf>,
    /// Whether `memory.memsw.*` exists (swap accounting).
    pub swap_supported: bool,
}

/// Parses Docker's security options into (no_new_privileges, seccomp_unconfined).
fn security_opts(opts: &[String]) -> Result<(bool, bool), ContainerError> {
    let mut nnp = false;
    let mut unconfined = false;
    for o in opts {
        let (k, v) = match o.split_once(['=', ':']) {
            Some((k, v)) => (k, Some(v)),
            None => (o.as_str(), None),
        };
        match (k, v) {
            ("no-new-privileges", None) | ("no-new-privileges", Some("true")) => nnp = true,
            ("no-new-privileges", Some("false")) => nnp = false,
            ("seccomp", Some("unconfined")) => unconfined = true,
            ("apparmor", _) | ("label", _) => {}
            _ => {
                return Err(ContainerError::InvalidOption {
                    field: "security-opt".into(),
                    reason: format!("invalid --security-opt: {o:?}"),
                })
            }
        }
    }
    Ok((nnp, unconfined))
}

/// Builds the OCI runtime spec.
pub(crate) fn build_spec(input: &SpecInput<'_>) -> Result<Spec, ContainerError> {
    let host = input.host;
    let caps = capabilities(host)?;
    let (nnp, seccomp_unconfined) = security_opts(&host.security_opt)?;
    let mut args = input.args.clone();
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", if host.privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", if host.privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
    ];
    let shm = if host.shm_size > 0 {
        host.shm_size
    } else {
        64 * 1024 * 1024
    };
    mounts.push(json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={shm}")]}));
    // Mount order (Docker's `WithMounts` + `sortMounts`): the runtime's defaults not overridden
    // by a user mount (a user `/dev` replaces every `/dev/...` default), then the network files,
    // the init and the user's mounts together, parents before children (by path depth, stable).
    let user_dests: std::collections::HashSet<&str> = input
        .mounts
        .iter()
        .map(|m| m.destination.as_str())
        .collect();
    let user_dev = user_dests.contains("/dev");
    mounts.retain(|m| {
        let d = m["destination"].as_str().unwrap_or_default();
        !(user_dests.contains(d) || user_dev && d.starts_with("/dev/"))
    });
    let mut extra: Vec<crate::mounts::SpecMount> = Vec::new();
    for (dest, src) in &input.etc_files {
        if !user_dests.contains(dest.as_str()) {
            extra.push(crate::mounts::SpecMount {
                destination: dest.clone(),
                kind: "bind",
                source: src.clone(),
                options: vec!["rbind".into(), "rprivate".into()],
            });
        }
    }
    if host.init {
        if let Some(init) = &input.init_path {
            extra.push(crate::mounts::SpecMount {
                destination: "/sbin/docker-init".into(),
                kind: "bind",
                source: init.clone(),
                options: vec!["bind".into(), "ro".into()],
            });
            let mut a = vec!["/sbin/docker-init".to_string(), "--".to_string()];
            a.append(&mut args);
            args = a;
        }
    }
    extra.extend(input.mounts.iter().cloned());
    crate::mounts::sort_mounts(&mut extra);
    let mut rootfs_propagation = None;
    for m in &extra {
        mounts.push(json!({"destination": m.destination, "type": m.kind, "source": m.source, "options": m.options}));
        for o in &m.options {
            match o.as_str() {
                "shared" | "rshared" => rootfs_propagation = Some("shared"),
                "slave" | "rslave" if rootfs_propagation.is_none() => {
                    rootfs_propagation = Some("rslave")
                }
                _ => {}
            }
        }
    }

    let mut namespaces = vec![json!({"type": "ipc"}), json!({"type": "mount"})];
    if host.pid_mode != "host" {
        namespaces.insert(0, json!({"type": "pid"}));
    }
    if host.uts_mode != "host" {
        namespaces.push(json!({"type": "uts"}));
    }
    if host.cgroupns_mode == "private" {
        namespaces.push(json!({"type": "cgroup"}));
    }
    match (host.network_mode.as_str(), &input.netns_path) {
        ("host", _) => {}
        (_, Some(p)) => namespaces.push(json!({"type": "network", "path": p})),
        _ => namespaces.push(json!({"type": "network"})),
    }

    let devices_cgroup = if host.privileged {
        json!([{"allow": true, "access": "rwm"}])
    } else {
        json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "access": "m"},
            {"allow": true, "type": "b", "access": "m"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
            {"allow": true, "type": "c", "major": 136, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
            {"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rwm"}
        ])
    };

    let mut devices_cgroup = devices_cgroup;
    if !host.privileged {
        for rule in &host.device_cgroup_rules {
            if let (Some(list), Some(r)) = (devices_cgroup.as_array_mut(), device_rule(rule)?) {
                list.push(r);
            }
        }
    }
    let mut resources = json!({"devices": devices_cgroup});
    let host_devices = if host.privileged {
        privileged_devices(Path::new("/dev"))
    } else {
        Vec::new()
    };
    let mut memory = serde_json::Map::new();
    if host.memory > 0 {
        memory.insert("limit".into(), json!(host.memory));
        if input.swap_supported {
            let swap = match host.memory_swap {
                0 => host.memory * 2,
                s => s,
            };
            memory.insert("swap".into(), json!(swap));
        }
    }
    if host.oom_kill_disable {
        memory.insert("disableOOMKiller".into(), json!(true));
    }
    if let Some(sw) = host.memory_swappiness.filter(|s| *s >= 0) {
        memory.insert("swappiness".into(), json!(sw));
    }
    if !memory.is_empty() {
        resources["memory"] = Value::Object(memory);
    }
    let mut cpu = serde_json::Map::new();
    if host.nano_cpus > 0 {
        let period: u64 = 100_000;
        cpu.insert("period".into(), json!(period));
        cpu.insert(
            "quota".into(),
            json!((host.nano_cpus as i128 * period as i128 / 1_000_000_000) as i64),
        );
    }
    if host.cpu_shares > 0 {
        cpu.insert("shares".into(), json!(host.cpu_shares));
    }
    if !host.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), json!(host.cpuset_cpus));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if host.pids_limit > 0 {
        resources["pids"] = json!({"limit": host.pids_limit});
    }

    let mut linux = json!({
        "namespaces": namespaces,
        "devices": host_devices,
        "resources": resources,
        "cgroupsPath": format!("/barge/{}", input.id),
    });
    if let Some(p) = rootfs_propagation {
        linux["rootfsPropagation"] = json!(p);
    }
    if !host.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
        if !seccomp_unconfined {
            let profile = crate::seccomp::default_profile(
                &caps,
                crate::seccomp::host_goarch(),
                crate::seccomp::kernel_version(),
            );
            linux["seccomp"] =
                serde_json::to_value(&profile).map_err(|e| ContainerError::InvalidOption {
                    field: "seccomp".into(),
                    reason: e.to_string(),
                })?;
        }
    }

    let mut process = json!({
        "terminal": input.tty,
        "user": {"uid": input.user.uid, "gid": input.user.gid},
        "args": args,
        "env": input.env,
        "cwd": if input.cwd.is_empty() { "/" } else { input.cwd.as_str() },
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "oomScoreAdj": 0,
    });
    // Only when set: runtimes treat an absent field as false, and libcontainer mistakes an
    // explicit `false` for `true` (`barge runtime` then has to rewrite the bundle).
    if nnp {
        process["noNewPrivileges"] = json!(true);
    }
    if !input.user.additional_gids.is_empty() {
        process["user"]["additionalGids"] = json!(input.user.additional_gids);
    }
    if input.tty {
        process["consoleSize"] = json!({"height": 24, "width": 80});
    }

    let mut spec = json!({
        "ociVersion": "1.0.2-dev",
        "process": process,
        "root": {"path": input.rootfs, "readonly": host.readonly_rootfs},
        "hostname": input.hostname,
        "mounts": mounts,
        "linux": linux,
    });
    if !input.domainname.is_empty() {
        spec["domainname"] = json!(input.domainname);
    }
    if host.uts_mode == "host" {
        // The host's UTS namespace: its names are not the container's to set.
        if let Some(o) = spec.as_object_mut() {
            o.remove("hostname");
            o.remove("domainname");
        }
    }
    serde_json::from_value(spec).map_err(|e| ContainerError::InvalidOption {
        field: "spec".into(),
        reason: e.to_string(),
    })
}

/// All host devices under `/dev` (as `--privileged` gives them to the container), except the
/// ones the runtime sets up itself (`/dev/pts`, `/dev/shm`, `/dev/mqueue`, `/dev/console`).
fn privileged_devices(dev: &Path) -> Vec<Value> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut stack = vec![dev.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(dev)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            if [
                "pts", "shm", "mqueue", "console", "ptmx", "fd", "stdin", "stdout", "stderr",
            ]
            .contains(&rel.as_str())
            {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                stack.push(path);
                continue;
            }
            let typ = if ft.is_char_device() {
                "c"
            } else if ft.is_block_device() {
                "b"
            } else {
                continue;
            };
            let rdev = meta.rdev();
            out.push(json!({
                "path": path,
                "type": typ,
                "major": libc::major(rdev),
                "minor": libc::minor(rdev),
                "fileMode": meta.mode() & 0o7777,
                "uid": meta.uid(),
                "gid": meta.gid(),
            }));
        }
    }
    out
}

/// An OCI `process` object for `runc exec --process`.
pub(crate) fn exec_process(
    args: Vec<String>,
    env: Vec<String>,
    cwd: String,
    user: &ExecUser,
    tty: bool,
    caps: &[String],
    no_new_privileges: bool,
) -> Value {
    let mut p = json!({
        "terminal": tty,
        "user": {"uid": user.uid, "gid": user.gid},
        "args": args,
        "env": env,
        "cwd": if cwd.is_empty() { "/".to_string() } else { cwd },
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
    });
    if no_new_privileges {
        p["noNewPrivileges"] = json!(true);
    }
    if !user.additional_gids.is_empty() {
        p["user"]["additionalGids"] = json!(user.additional_gids);
    }
    if tty {
        p["consoleSize"] = json!({"height": 24, "width": 80});
    }
    p
}

pub(crate) fn security_no_new_privileges(opts: &[String]) -> bool {
    security_opts(opts).map(|(n, _)| n).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostOptions {
        HostOptions::default()
    }

    fn input(host: &HostOptions) -> SpecInput<'_> {
        SpecInput {
            id: "abc",
            args: vec!["sh".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            user: ExecUser::default(),
            hostname: "abc".into(),
            domainname: String::new(),
            tty: false,
            host,
            rootfs: "/tmp/rootfs".into(),
            etc_files: vec![],
            mounts: vec![],
            init_path: Some("/usr/bin/barge-init".into()),
            netns_path: None,
            swap_supported: true,
        }
    }

    #[test]
    fn caps_add_drop() {
        let mut h = host();
        h.cap_add = vec!["NET_ADMIN".into()];
        h.cap_drop = vec!["chown".into(), "CAP_KILL".into()];
        let c = capabilities(&h).unwrap();
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_CHOWN".to_string()));
        assert!(!c.contains(&"CAP_KILL".to_string()));
        assert_eq!(c.len(), DEFAULT_CAPS.len() - 1);
    }

    #[test]
    fn host_namespaces_cgroup_rules_and_cpus() {
        let ns_of = |h: &HostOptions| -> Vec<String> {
            let v = serde_json::to_value(build_spec(&input(h)).unwrap()).unwrap();
            v["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["type"].as_str().unwrap().to_string())
                .collect()
        };
        let mut h = host();
        check_host_options(&mut h, false, 2).unwrap();
        assert_eq!(h.cgroupns_mode, "host");
        let ns = ns_of(&h);
        assert!(ns.contains(&"pid".into()) && ns.contains(&"uts".into()));
        assert!(!ns.contains(&"cgroup".into()));
        let mut h = host();
        check_host_options(&mut h, true, 2).unwrap();
        assert_eq!(h.cgroupns_mode, "private");
        h.pid_mode = "host".into();
        h.uts_mode = "host".into();
        h.cpuset_cpus = "0-1".into();
        h.memory_swappiness = Some(5);
        h.device_cgroup_rules = vec!["c 10:* rw".into()];
        let ns = ns_of(&h);
        assert!(!ns.contains(&"pid".into()) && !ns.contains(&"uts".into()));
        assert!(ns.contains(&"cgroup".into()));
        let v = serde_json::to_value(build_spec(&input(&h)).unwrap()).unwrap();
        assert!(v.get("hostname").is_none());
        assert_eq!(v["linux"]["resources"]["cpu"]["cpus"], "0-1");
        assert_eq!(v["linux"]["resources"]["memory"]["swappiness"], 5);
        let devs = v["linux"]["resources"]["devices"].as_array().unwrap();
        assert_eq!(
            devs.last().unwrap(),
            &json!({"allow": true, "type": "c", "major": 10, "access": "rw"})
        );
        // cgroup v2 has no swappiness: dropped, as dockerd does.
        let mut h = host();
        h.memory_swappiness = Some(5);
        check_host_options(&mut h, true, 2).unwrap();
        assert_eq!(h.memory_swappiness, None);
        for bad in [
            HostOptions {
                cgroupns_mode: "x".into(),
                ..host()
            },
            HostOptions {
                cpuset_cpus: "2".into(),
                ..host()
            },
            HostOptions {
                cpuset_cpus: "1-0".into(),
                ..host()
            },
            HostOptions {
                memory_swappiness: Some(-2),
                ..host()
            },
            HostOptions {
                device_cgroup_rules: vec!["c 1 r".into()],
                ..host()
            },
            HostOptions {
                isolation: "process".into(),
                ..host()
            },
        ] {
            let mut b = bad;
            assert!(check_host_options(&mut b, false, 2).is_err(), "{b:?}");
        }
        assert!(device_rule("a *:* rwm").unwrap().is_some());
        assert!(device_rule("c 1:3 mrx").is_err());
    }

    #[test]
    fn groups_by_name_and_number() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let mut u = ExecUser::default();
        add_groups(
            dir.path(),
            &mut u,
            &["staff".into(), "7".into(), "50".into()],
        )
        .unwrap();
        assert_eq!(u.additional_gids, vec![50, 7]);
        assert_eq!(
            add_groups(dir.path(), &mut u, &["nope".into()]).unwrap_err(),
            "Unable to find group nope"
        );
    }

    #[test]
    fn caps_all() {
        let mut h = host();
        h.cap_drop = vec!["ALL".into()];
        h.cap_add = vec!["NET_BIND_SERVICE".into()];
        assert_eq!(
            capabilities(&h).unwrap(),
            vec!["CAP_NET_BIND_SERVICE".to_string()]
        );
        let mut h = host();
        h.cap_add = vec!["ALL".into()];
        h.cap_drop = vec!["SYS_ADMIN".into()];
        let c = capabilities(&h).unwrap();
        assert_eq!(
            c.len(),
            available_caps()
                .iter()
                .filter(|c| *c != "CAP_SYS_ADMIN")
                .count()
        );
        let mut h = host();
        h.cap_add = vec!["BOGUS".into()];
        assert!(capabilities(&h).is_err());
    }

    #[test]
    fn privileged_spec() {
        let mut h = host();
        h.privileged = true;
        let spec = build_spec(&input(&h)).unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            v["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            available_caps().len()
        );
        assert!(v["linux"].get("seccomp").is_none());
        assert!(v["linux"].get("maskedPaths").is_none());
        assert_eq!(v["linux"]["resources"]["devices"][0]["allow"], json!(true));
    }

    #[test]
    fn default_spec() {
        let h = host();
        let v = serde_json::to_value(build_spec(&input(&h)).unwrap()).unwrap();
        assert_eq!(v["linux"]["cgroupsPath"], json!("/barge/abc"));
        assert!(v["linux"]["seccomp"]["syscalls"].as_array().unwrap().len() > 10);
        assert_eq!(
            v["linux"]["maskedPaths"].as_array().unwrap().len(),
            MASKED_PATHS.len()
        );
        let ns: Vec<String> = v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap().to_string())
            .collect();
        assert!(ns.contains(&"network".to_string()));
        let shm = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/dev/shm")
            .unwrap()
            .clone();
        assert!(shm["options"]
            .as_array()
            .unwrap()
            .contains(&json!("size=67108864")));
        let mut h = host();
        h.network_mode = "host".into();
        h.security_opt = vec!["seccomp=unconfined".into(), "no-new-privileges".into()];
        let v = serde_json::to_value(build_spec(&input(&h)).unwrap()).unwrap();
        assert!(!v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network"));
        assert!(v["linux"].get("seccomp").is_none());
        assert_eq!(v["process"]["noNewPrivileges"], json!(true));
    }

    #[test]
    fn resources_mapping() {
        let mut h = host();
        h.memory = 16 << 20;
        h.nano_cpus = 1_500_000_000;
        h.cpu_shares = 512;
        h.pids_limit = 100;
        h.init = true;
        let v = serde_json::to_value(build_spec(&input(&h)).unwrap()).unwrap();
        let r = &v["linux"]["resources"];
        assert_eq!(r["memory"]["limit"], json!(16 << 20));
        assert_eq!(r["memory"]["swap"], json!(32 << 20));
        assert_eq!(r["cpu"]["quota"], json!(150000));
        assert_eq!(r["cpu"]["period"], json!(100000));
        assert_eq!(r["cpu"]["shares"], json!(512));
        assert_eq!(r["pids"]["limit"], json!(100));
        assert_eq!(
            v["process"]["args"],
            json!(["/sbin/docker-init", "--", "sh"])
        );
        h.memory_swap = -1;
        let v = serde_json::to_value(build_spec(&input(&h)).unwrap()).unwrap();
        assert_eq!(v["linux"]["resources"]["memory"]["swap"], json!(-1));
    }

    #[test]
    fn user_mounts_override_defaults_and_sort() {
        use crate::mounts::SpecMount;
        let h = host();
        let mut i = input(&h);
        i.etc_files = vec![
            ("/etc/hosts".into(), "/d/hosts".into()),
            ("/etc/hostname".into(), "/d/hostname".into()),
        ];
        let m = |d: &str, o: &[&str]| SpecMount {
            destination: d.into(),
            kind: "bind",
            source: "/src".into(),
            options: o.iter().map(|s| s.to_string()).collect(),
        };
        i.mounts = vec![
            m("/data/sub/x", &["rbind"]),
            m("/data/sub", &["rbind"]),
            m("/etc/hosts", &["rbind", "ro"]),
            m("/data", &["rbind", "rshared"]),
            m("/dev/shm", &["rbind"]),
        ];
        let v = serde_json::to_value(build_spec(&i).unwrap()).unwrap();
        let dests: Vec<&str> = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(
            &dests[dests.len() - 6..],
            &[
                "/data",
                "/etc/hostname",
                "/data/sub",
                "/etc/hosts",
                "/dev/shm",
                "/data/sub/x"
            ]
        );
        assert_eq!(dests.iter().filter(|d| **d == "/dev/shm").count(), 1);
        assert_eq!(dests.iter().filter(|d| **d == "/etc/hosts").count(), 1);
        assert_eq!(v["linux"]["rootfsPropagation"], json!("shared"));
        let hosts = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/etc/hosts")
            .unwrap();
        assert_eq!(hosts["options"], json!(["rbind", "ro"]));
    }

    #[test]
    fn user_resolution() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\nwww:x:33:33::/var/www:/bin/sh\n";
        let group = "root:x:0:\nwww-data:x:33:\nstaff:x:50:www,other\naudio:x:29:www\n";
        let u = resolve_user_from(passwd, group, "").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
        let u = resolve_user_from(passwd, group, "www").unwrap();
        assert_eq!((u.uid, u.gid), (33, 33));
        assert_eq!(u.additional_gids, vec![50, 29]);
        let u = resolve_user_from(passwd, group, "www:staff").unwrap();
        assert_eq!((u.uid, u.gid), (33, 50));
        let u = resolve_user_from(passwd, group, "1234:5678").unwrap();
        assert_eq!((u.uid, u.gid), (1234, 5678));
        let u = resolve_user_from(passwd, group, "1234").unwrap();
        assert_eq!((u.uid, u.gid), (1234, 0));
        assert!(resolve_user_from(passwd, group, "ghost")
            .unwrap_err()
            .contains("unable to find user ghost"));
        assert!(resolve_user_from(passwd, group, "www:nogroup").is_err());
    }
}
