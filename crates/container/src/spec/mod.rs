//! OCI runtime spec generation (`config.json` of a bundle) following Docker's defaults:
//! namespaces, mounts, devices, capabilities, masked/readonly paths, seccomp, resources.
//!
//! Modules: [`security`] (capabilities, `--security-opt`), [`user`] (`--user` and
//! `--group-add` against the container's `/etc/passwd` and `/etc/group`), [`host`] (the
//! `HostConfig` checks at create, device cgroup rules); this file keeps the spec itself
//! ([`build_spec`]: namespaces, mounts, devices, masked/readonly paths, resources) and the
//! `runc exec` process ([`exec_process`]).
//!
//! **Invariants:** building a spec writes nothing and needs no engine state (unit-tested
//! below); it reads only the host's `/dev` (`--privileged`) and kernel version (seccomp);
//! every default is Docker's.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde_json::{json, Value};

use crate::{ContainerError, HostOptions};

mod host;
mod security;
mod user;

use host::{block_io, check_device_requests, device_rule, devices_from_path, ulimit_type};
use security::security_opts;

pub(crate) use host::{check_host_options, check_volume_driver, SysInfo};
pub(crate) use security::{capabilities, security_no_new_privileges};
pub(crate) use user::{add_groups, resolve_user, ExecUser};

/// dockerd's default `linux.maskedPaths` (`HostConfig.MaskedPaths` when not given).
pub(crate) const MASKED_PATHS: &[&str] = &[
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

/// dockerd's default `linux.readonlyPaths` (`HostConfig.ReadonlyPaths` when not given).
pub(crate) const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

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
    /// `container:<id>` PID mode: the PID namespace to join (`/proc/<pid>/ns/pid`).
    pub pidns_path: Option<PathBuf>,
    /// `container:<id>` IPC mode: the IPC namespace to join (the donor's
    /// `/proc/<pid>/ns/ipc`) and the host path of its `/dev/shm`; `sandbox:<key>`: the pod
    /// sandbox's bind-mounted IPC namespace and `/dev/shm`.
    pub ipc_join: Option<(PathBuf, PathBuf)>,
    /// `sandbox:<key>` UTS mode: the pod sandbox's bind-mounted UTS namespace.
    pub utsns_path: Option<PathBuf>,
    /// A `shareable` container's own `/dev/shm` on the host.
    pub own_shm: Option<PathBuf>,
    /// Whether `memory.memsw.*` exists (swap accounting).
    pub swap_supported: bool,
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
    // `/dev/shm` by IPC mode (dockerd's `setupIPCDirs`/`WithIPCNamespace`): a private tmpfs,
    // the host's, the donor container's, or none.
    let shm_bind = |src: &Path| json!({"destination": "/dev/shm", "type": "bind", "source": src, "options": ["rbind", "rprivate"]});
    match (&input.ipc_join, &input.own_shm, host.ipc_mode.as_str()) {
        (Some((_, src)), _, _) | (None, Some(src), _) => mounts.push(shm_bind(src)),
        (None, None, "host") => mounts.push(shm_bind(Path::new("/dev/shm"))),
        (None, None, "none") => {}
        _ => mounts.push(json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={shm}")]})),
    }
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

    let mut namespaces = vec![json!({"type": "mount"})];
    match (
        input.ipc_join.as_ref().map(|(path, _)| path),
        host.ipc_mode.as_str(),
    ) {
        (Some(path), _) => namespaces.insert(0, json!({"type": "ipc", "path": path})),
        (None, "host") => {}
        (None, _) => namespaces.insert(0, json!({"type": "ipc"})),
    }
    match (&input.pidns_path, host.pid_mode.as_str()) {
        (Some(p), _) => namespaces.insert(0, json!({"type": "pid", "path": p})),
        (None, "host") => {}
        (None, _) => namespaces.insert(0, json!({"type": "pid"})),
    }
    match (&input.utsns_path, host.uts_mode.as_str()) {
        (Some(p), _) => namespaces.push(json!({"type": "uts", "path": p})),
        (None, "host") => {}
        (None, _) => namespaces.push(json!({"type": "uts"})),
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
    let mut host_devices = if host.privileged {
        privileged_devices(Path::new("/dev"))
    } else {
        Vec::new()
    };
    // `--device`: the nodes, and (unless privileged, which allows all) their cgroup rules.
    for d in &host.devices {
        let (nodes, rules) = devices_from_path(d)?;
        if !host.privileged {
            if let Some(list) = devices_cgroup.as_array_mut() {
                list.extend(rules);
            }
            host_devices.extend(nodes);
        } else {
            // Already there under /dev; a different path in the container is added.
            for n in nodes {
                if !host_devices.iter().any(|h| h["path"] == n["path"]) {
                    host_devices.push(n);
                }
            }
        }
    }
    let mut resources = json!({"devices": devices_cgroup});
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
    if host.memory_reservation > 0 {
        memory.insert("reservation".into(), json!(host.memory_reservation));
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
    if !host.cpuset_mems.is_empty() {
        cpu.insert("mems".into(), json!(host.cpuset_mems));
    }
    if host.cpu_realtime_period != 0 {
        cpu.insert("realtimePeriod".into(), json!(host.cpu_realtime_period));
    }
    if host.cpu_realtime_runtime != 0 {
        cpu.insert("realtimeRuntime".into(), json!(host.cpu_realtime_runtime));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if host.pids_limit > 0 {
        resources["pids"] = json!({"limit": host.pids_limit});
    }
    if let Some(io) = block_io(host)? {
        resources["blockIO"] = io;
    }
    check_device_requests(host)?;

    let mut linux = json!({
        "namespaces": namespaces,
        "devices": host_devices,
        "resources": resources,
        "cgroupsPath": crate::cgroup_path(&host.cgroup_parent, input.id),
    });
    if let Some(p) = rootfs_propagation {
        linux["rootfsPropagation"] = json!(p);
    }
    if !host.sysctls.is_empty() {
        linux["sysctl"] = json!(host.sysctls);
    }
    if !host.privileged {
        // `HostConfig.MaskedPaths`/`ReadonlyPaths` replace the defaults (set at create; a
        // record from before they were kept has none and gets the defaults).
        linux["maskedPaths"] = match &host.masked_paths {
            Some(l) => json!(l),
            None => json!(MASKED_PATHS),
        };
        linux["readonlyPaths"] = match &host.readonly_paths {
            Some(l) => json!(l),
            None => json!(READONLY_PATHS),
        };
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
        "oomScoreAdj": host.oom_score_adj,
    });
    // `--ulimit` (-1: unlimited, RLIM_INFINITY).
    let rlimits: Vec<Value> = host
        .ulimits
        .iter()
        .filter_map(|u| {
            let lim = |v: i64| if v < 0 { u64::MAX } else { v as u64 };
            Some(json!({"type": ulimit_type(&u.name)?, "soft": lim(u.soft), "hard": lim(u.hard)}))
        })
        .collect();
    if !rlimits.is_empty() {
        process["rlimits"] = json!(rlimits);
    }
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
    if !host.annotations.is_empty() {
        spec["annotations"] = json!(host.annotations);
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

#[cfg(test)]
mod tests {
    use super::security::available_caps;
    use super::*;

    fn host() -> HostOptions {
        HostOptions::default()
    }

    /// A 2-CPU, 1-node host without block I/O weights, with real-time groups (v1).
    fn sys(cgroup_v2: bool) -> SysInfo {
        SysInfo {
            cgroup_v2,
            cpus: "0-1".into(),
            mems: "0".into(),
            blkio_weight: false,
            blkio_weight_device: false,
            blkio_throttle: true,
            cpu_realtime: !cgroup_v2,
        }
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
            pidns_path: None,
            ipc_join: None,
            utsns_path: None,
            own_shm: None,
            swap_supported: true,
        }
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
        check_host_options(&mut h, &sys(false)).unwrap();
        assert_eq!(h.cgroupns_mode, "host");
        let ns = ns_of(&h);
        assert!(ns.contains(&"pid".into()) && ns.contains(&"uts".into()));
        assert!(!ns.contains(&"cgroup".into()));
        let mut h = host();
        check_host_options(&mut h, &sys(true)).unwrap();
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
        check_host_options(&mut h, &sys(true)).unwrap();
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
            assert!(check_host_options(&mut b, &sys(false)).is_err(), "{b:?}");
        }
        assert!(device_rule("a *:* rwm").unwrap().is_some());
        assert!(device_rule("c 1:3 mrx").is_err());
    }

    #[test]
    fn pod_sandbox_ipc_uts_and_shm_are_joined() {
        let mut h = host();
        h.ipc_mode = "sandbox:pod-1".into();
        h.uts_mode = "sandbox:pod-1".into();
        check_host_options(&mut h, &sys(true)).unwrap();
        assert_eq!(h.ipc_mode, "sandbox:pod-1");
        let mut i = input(&h);
        let dir = Path::new("/run/barge/podns/pod-1");
        i.ipc_join = Some((dir.join("ipc"), dir.join("shm")));
        i.utsns_path = Some(dir.join("uts"));
        let v = serde_json::to_value(build_spec(&i).unwrap()).unwrap();
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        let path = |t: &str| {
            ns.iter()
                .find(|n| n["type"] == t)
                .map(|n| n["path"].clone())
        };
        assert_eq!(path("ipc"), Some(json!("/run/barge/podns/pod-1/ipc")));
        assert_eq!(path("uts"), Some(json!("/run/barge/podns/pod-1/uts")));
        // The pod's host name is set (again) in the joined namespace.
        assert_eq!(v["hostname"], "abc");
        let shm: Vec<_> = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["destination"] == "/dev/shm")
            .collect();
        assert_eq!(shm.len(), 1);
        assert_eq!(shm[0]["type"], "bind");
        assert_eq!(shm[0]["source"], "/run/barge/podns/pod-1/shm");
        for bad in ["sandbox:", "pod-1"] {
            let mut b = HostOptions {
                uts_mode: bad.into(),
                ..host()
            };
            assert!(check_host_options(&mut b, &sys(true)).is_err(), "uts {bad}");
            let mut b = HostOptions {
                ipc_mode: bad.into(),
                ..host()
            };
            assert!(check_host_options(&mut b, &sys(true)).is_err(), "ipc {bad}");
        }
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

    /// Block I/O, cpuset mems, real-time CPU, cgroup parent, masked/readonly paths and
    /// annotations reach the spec; the checks refuse dockerd's bad values with its messages
    /// and drop what the kernel lacks with its warnings.
    #[test]
    fn hostconfig_resources_reach_the_spec_or_are_refused() {
        use std::os::unix::fs::MetadataExt;
        let null = std::fs::metadata("/dev/null").unwrap().rdev();
        let (maj, min) = (libc::major(null), libc::minor(null));
        let mut h = host();
        h.blkio_weight = 300;
        h.blkio_weight_device = vec![crate::WeightDevice {
            path: "/dev/null".into(),
            weight: 200,
        }];
        h.blkio_device_read_bps = vec![crate::ThrottleDevice {
            path: "/dev/null".into(),
            rate: 1 << 20,
        }];
        h.blkio_device_write_iops = vec![crate::ThrottleDevice {
            path: "/dev/null".into(),
            rate: 100,
        }];
        h.cpuset_mems = "0".into();
        h.cpu_realtime_period = 1_000_000;
        h.cpu_realtime_runtime = 950_000;
        h.cgroup_parent = "/my/parent/".into();
        h.annotations = [("a.b".to_string(), "c".to_string())].into();
        // No weight file: the weights are dropped with dockerd's warnings, the throttles kept.
        let warnings = check_host_options(&mut h, &sys(false)).unwrap();
        assert_eq!(
            warnings,
            [
                "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.",
                "Your kernel does not support Block I/O weight_device or the cgroup is not mounted. Weight-device discarded.",
            ]
        );
        assert_eq!((h.blkio_weight, h.blkio_weight_device.len()), (0, 0));
        assert_eq!(h.masked_paths.as_deref().unwrap().len(), MASKED_PATHS.len());
        let v = serde_json::to_value(build_spec(&input(&h)).unwrap()).unwrap();
        let r = &v["linux"]["resources"];
        assert_eq!(
            r["blockIO"],
            json!({"throttleReadBpsDevice": [{"major": maj, "minor": min, "rate": 1048576}],
                   "throttleWriteIOPSDevice": [{"major": maj, "minor": min, "rate": 100}]})
        );
        assert_eq!(r["cpu"]["mems"], "0");
        assert_eq!(r["cpu"]["realtimePeriod"], 1_000_000);
        assert_eq!(r["cpu"]["realtimeRuntime"], 950_000);
        assert_eq!(v["linux"]["cgroupsPath"], "/my/parent/abc");
        assert_eq!(v["annotations"], json!({"a.b": "c"}));
        // A kernel with weights keeps them, range-checked.
        let with_weights = SysInfo {
            blkio_weight: true,
            blkio_weight_device: true,
            ..sys(false)
        };
        let mut w = HostOptions {
            blkio_weight: 500,
            blkio_weight_device: vec![crate::WeightDevice {
                path: "/dev/null".into(),
                weight: 20,
            }],
            ..host()
        };
        assert!(check_host_options(&mut w, &with_weights)
            .unwrap()
            .is_empty());
        let v = serde_json::to_value(build_spec(&input(&w)).unwrap()).unwrap();
        assert_eq!(
            v["linux"]["resources"]["blockIO"],
            json!({"weight": 500, "weightDevice": [{"major": maj, "minor": min, "weight": 20}]})
        );
        // Given masked/readonly paths replace the defaults; privileged has none.
        let mut m = HostOptions {
            masked_paths: Some(vec!["/proc/cpuinfo".into()]),
            readonly_paths: Some(vec![]),
            ..host()
        };
        check_host_options(&mut m, &sys(false)).unwrap();
        let v = serde_json::to_value(build_spec(&input(&m)).unwrap()).unwrap();
        assert_eq!(v["linux"]["maskedPaths"], json!(["/proc/cpuinfo"]));
        assert!(v["linux"]
            .get("readonlyPaths")
            .is_none_or(|p| p == &json!([])));
        let mut p = HostOptions {
            privileged: true,
            ..host()
        };
        check_host_options(&mut p, &sys(false)).unwrap();
        assert_eq!((p.masked_paths, p.readonly_paths), (None, None));
        // A missing device is dockerd's `stat` error, at spec time.
        let mut missing = host();
        missing.blkio_device_write_bps = vec![crate::ThrottleDevice {
            path: "/dev/no-such-disk".into(),
            rate: 1,
        }];
        assert_eq!(
            build_spec(&input(&missing)).unwrap_err().to_string(),
            "stat /dev/no-such-disk: no such file or directory"
        );
        let mut gpus = host();
        gpus.device_requests = vec![crate::DeviceRequest {
            count: -1,
            capabilities: vec![vec!["gpu".into()]],
            ..Default::default()
        }];
        assert_eq!(
            build_spec(&input(&gpus)).unwrap_err().to_string(),
            "could not select device driver \"\" with capabilities: [[gpu]]"
        );
        let refused = |h: HostOptions, s: &SysInfo| {
            let mut h = h;
            check_host_options(&mut h, s).unwrap_err().to_string()
        };
        for (h, want) in [
            (
                HostOptions {
                    cpuset_mems: "1".into(),
                    ..host()
                },
                "Requested memory nodes are not available - requested 1, available: 0",
            ),
            (
                HostOptions {
                    cpuset_mems: "0-x".into(),
                    ..host()
                },
                "Invalid value 0-x for cpuset mems: invalid format: 0-x",
            ),
            (
                HostOptions {
                    cpuset_cpus: "3".into(),
                    ..host()
                },
                "Requested CPUs are not available - requested 3, available: 0-1",
            ),
            (
                HostOptions {
                    cpu_realtime_period: 1000,
                    cpu_realtime_runtime: 2000,
                    ..host()
                },
                "cpu real-time runtime cannot be higher than cpu real-time period",
            ),
            (
                HostOptions {
                    storage_opt: [("size".to_string(), "1G".to_string())].into(),
                    ..host()
                },
                "--storage-opt is supported only for overlay over xfs with 'pquota' mount option",
            ),
            (
                HostOptions {
                    userns_mode: "private".into(),
                    ..host()
                },
                "invalid USER mode: private",
            ),
        ] {
            assert_eq!(refused(h, &sys(false)), want);
        }
        assert_eq!(
            refused(
                HostOptions {
                    blkio_weight: 5,
                    ..host()
                },
                &with_weights
            ),
            "Range of blkio weight is from 10 to 1000"
        );
        assert_eq!(
            refused(
                HostOptions {
                    cpu_realtime_period: 1000,
                    ..host()
                },
                &sys(true)
            ),
            "Your kernel does not support CPU real-time scheduler"
        );
        let mut hostns = HostOptions {
            userns_mode: "host".into(),
            ..host()
        };
        assert!(check_host_options(&mut hostns, &sys(false)).is_ok());
    }
}
