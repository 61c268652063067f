//! `docker start`: the root and mounts set up, the OCI bundle written, the network sandbox
//! built, the per-container monitor spawned, and the watcher thread that turns the monitor's
//! end into `handle_exit` (also used for execs).
//!
//! **Invariants:** a container is in `Inner::starting` for the whole start (no second start,
//! and remove/prune/fs access treat it as running); every failure once the root is mounted
//! goes through [`Containers::start_failed`] (network torn down, root and volumes unmounted,
//! state `exited` with the error's code); the network setup thread ([`NetJob`]) is joined on
//! every way out.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use crate::monitor::{LogConfig, MonitorConfig};
use crate::mountinfo::is_mounted;
use crate::mounts::{MountType, SpecMount};
use crate::spec::SpecInput;
use crate::*;

use super::warm;
use super::{
    io_err, memory_cgroup, now_rfc3339, unmount, unmount_container, Containers, Watch, ZERO_TIME,
};

/// A container's endpoints being set up on another thread ([`barge_network::Networks::setup_finish`]);
/// joined by [`NetJob::wait`] or, at the latest, when dropped.
struct NetJob(Option<std::thread::JoinHandle<Result<(), String>>>);

impl NetJob {
    /// Waits for the setup (once); `Ok` when there is nothing (more) to wait for.
    fn wait(&mut self) -> Result<(), String> {
        match self.0.take() {
            Some(j) => j
                .join()
                .unwrap_or_else(|_| Err("network setup thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for NetJob {
    fn drop(&mut self) {
        let _ = self.wait();
    }
}

impl Containers {
    /// Makes the container's mounts ready on the host (bind sources, volume filesystems,
    /// copy-up into empty volumes) and returns them as OCI mounts. Needs the root mounted.
    fn setup_mounts(&self, c: &Container, rootfs: &Path) -> Result<Vec<SpecMount>, String> {
        let mut out = Vec::new();
        for m in &c.mounts {
            let source = match m.kind {
                MountType::Tmpfs => PathBuf::new(),
                MountType::Bind => {
                    if !m.source.exists() {
                        if !m.create_source {
                            return Err(format!(
                                "invalid mount config for type \"bind\": bind source path does not exist: {}",
                                m.source.display()
                            ));
                        }
                        std::fs::create_dir_all(&m.source).map_err(|e| {
                            format!(
                                "error while creating mount source path '{}': {e}",
                                m.source.display()
                            )
                        })?;
                    }
                    m.source.clone()
                }
                MountType::Volume => {
                    let mp = self
                        .volumes
                        .mount(&m.name, &c.id)
                        .map_err(|e| e.to_string())?;
                    if m.subpath.is_empty() {
                        if m.copy_data {
                            let image_dir = mounts::resolve_in_root(rootfs, &m.destination)?;
                            mounts::copy_up(&image_dir, &mp).map_err(|e| {
                                format!(
                                    "copying image data from {} to volume {}: {e}",
                                    m.destination, m.name
                                )
                            })?;
                        }
                        mp
                    } else {
                        let p = mounts::resolve_in_root(&mp, &m.subpath)?;
                        if !p.exists() {
                            return Err(format!(
                                "cannot access path {}: no such file or directory",
                                p.display()
                            ));
                        }
                        p
                    }
                }
            };
            out.push(mounts::spec_mount(m, &source));
        }
        Ok(out)
    }

    /// Mounts the overlay root of a container (if not mounted).
    pub(super) fn mount_rootfs(&self, c: &Container) -> Result<(), ContainerError> {
        let dir = self.container_dir(&c.id);
        let rootfs = dir.join("rootfs");
        for d in ["upper", "work", "rootfs"] {
            std::fs::create_dir_all(dir.join(d))
                .map_err(io_err(format!("create {}", dir.join(d).display())))?;
        }
        if is_mounted(&rootfs) {
            return Ok(());
        }
        let mut layers = self.images.layer_dirs(&c.image_id)?;
        layers.reverse();
        // The init layer goes under the image (the lowest lower): it provides the mount points
        // the image lacks, whatever the image has wins. Without it, the runtime creates them
        // through the overlay at every start (copy-ups and new inodes in the upper layer).
        if layers.len() < barge_image::overlay::MAX_LAYERS {
            layers.push(self.init_layer());
        }
        let (upper, work) = (dir.join("upper"), dir.join("work"));
        let mount = |flags: &[&str]| {
            barge_image::overlay::mount(
                &rootfs,
                &barge_image::overlay::Overlay {
                    lowers: &layers,
                    upper: Some((&upper, &work)),
                    flags,
                },
            )
        };
        // A `--rm` container's writable layer is thrown away with it, so its overlay is
        // `volatile` (as podman does): no syncfs of the whole upper filesystem at unmount, which
        // costs tens of ms on a busy disk. The kernel leaves a marker that refuses the next
        // mount (meant for "after a crash"); a removable layer is fine to mount again, so the
        // marker of an earlier mount (e.g. `cp` before `start`) goes. Kernels without the
        // option get the plain mount.
        if c.options.host.auto_remove {
            let _ = std::fs::remove_dir_all(dir.join("work/work/incompat/volatile"));
            if mount(&["volatile"]).is_ok() {
                return Ok(());
            }
        }
        mount(&[]).map_err(|e| {
            ContainerError::io(
                format!("mount overlay on {}", rootfs.display()),
                e.into_io(),
            )
        })
    }

    /// The init layer (`<data-root>/containers/.init-layer`), shared by every container.
    pub(super) fn init_layer(&self) -> PathBuf {
        self.cfg.data_root.join("containers").join(INIT_LAYER)
    }

    fn unmount_volumes(&self, c: &Container) {
        for m in c.mounts.iter().filter(|m| m.kind == MountType::Volume) {
            self.volumes.unmount(&m.name, &c.id);
        }
    }

    pub(super) fn clean_runtime_state(&self, c: &Container) {
        let root = self.runtime_root(&c.runtime);
        if root.join(&c.id).exists() {
            if let Ok(rt) = self.runtime_path(&c.runtime) {
                let _ = Command::new(rt)
                    .args(self.runtime_args(&c.runtime))
                    .arg("--root")
                    .arg(&root)
                    .arg("delete")
                    .arg("--force")
                    .arg(&c.id)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }

    /// Spawns a monitor and runs the created/started handshake. With `gate` (and
    /// `mcfg.start_gate`), once the monitor reported `created` the gate's result is written to
    /// its stdin: `start`, or `abort <json message>` (the monitor then fails the start with it).
    pub(super) fn run_monitor(
        &self,
        mcfg: &MonitorConfig,
        config_path: &Path,
        on_ready: &mut dyn FnMut(&AttachPoint),
        mut gate: Option<&mut dyn FnMut() -> Result<(), String>>,
    ) -> Result<(Child, i64), (Option<Child>, String)> {
        let data = serde_json::to_vec(mcfg).expect("monitor config serializes");
        // The monitor's input, read once at its start: like the bundle, not worth fsyncs.
        if let Err(e) = std::fs::write(config_path, &data) {
            return Err((None, format!("write {}: {e}", config_path.display())));
        }
        let log = std::fs::File::create(mcfg.state_dir.join("monitor.log")).ok();
        let spawned = match self.warm.take(config_path, mcfg.start_gate) {
            // The warm monitor opens `monitor.log` itself once it has read its configuration.
            Some(s) => s,
            None => {
                let mut cmd = warm::monitor_command(
                    &self.cfg.self_exe,
                    &[config_path.as_os_str()],
                    mcfg.start_gate,
                    log,
                );
                match cmd.spawn() {
                    Ok(mut c) => warm::Spawned {
                        stdout: c.stdout.take().expect("piped stdout"),
                        gate: c.stdin.take(),
                        child: c,
                    },
                    Err(e) => {
                        return Err((
                            None,
                            format!("spawn monitor {}: {e}", self.cfg.self_exe.display()),
                        ))
                    }
                }
            }
        };
        let warm::Spawned {
            child,
            stdout,
            gate: mut gate_pipe,
        } = spawned;
        let mut lines = BufReader::new(stdout).lines();
        let attach = AttachPoint {
            socket: mcfg.attach_socket.clone(),
            tty: mcfg.tty,
        };
        let result = loop {
            match lines.next() {
                Some(Ok(line)) if line == "created" => {
                    on_ready(&attach);
                    if let (Some(mut pipe), Some(g)) = (gate_pipe.take(), gate.as_mut()) {
                        let line = match g() {
                            Ok(()) => "start\n".to_string(),
                            Err(msg) => format!(
                                "abort {}\n",
                                serde_json::to_string(&msg).unwrap_or_default()
                            ),
                        };
                        // A monitor that died meanwhile is reported below (EOF on stdout).
                        let _ = pipe.write_all(line.as_bytes());
                    }
                }
                Some(Ok(line)) if line.starts_with("started ") => {
                    let pid = line["started ".len()..].trim().parse().unwrap_or(0);
                    break Ok((child, pid));
                }
                Some(Ok(line)) if line.starts_with("failed ") => {
                    let msg = serde_json::from_str::<String>(&line["failed ".len()..])
                        .unwrap_or_else(|_| line["failed ".len()..].to_string());
                    break Err((Some(child), msg));
                }
                Some(Ok(_)) => continue,
                _ => {
                    let log = std::fs::read_to_string(mcfg.state_dir.join("monitor.log"))
                        .unwrap_or_default();
                    break Err((
                        Some(child),
                        format!("monitor exited unexpectedly: {}", log.trim()),
                    ));
                }
            }
        };
        // The next start's monitor, made now that this one runs (not while it was starting:
        // the two would share the CPUs).
        self.warm.refill(&self.cfg.self_exe);
        result
    }

    /// Starts a created or exited container and returns once its process runs.
    /// `on_ready(attach)` is called after the runtime created the process but before it is
    /// started, so attach clients can connect without losing output; the monitor waits (up to
    /// 10 s) for `expected_attaches` connections on the attach socket before starting it.
    pub fn start(
        &self,
        id: &str,
        expected_attaches: usize,
        on_ready: &mut dyn FnMut(&AttachPoint),
    ) -> Result<(), ContainerError> {
        let c = {
            let mut inner = self.lock();
            let id = Self::find_id(&inner, id)?;
            let mut c = inner.containers[&id].clone();
            if matches!(
                c.state.status,
                Status::Running | Status::Paused | Status::Restarting
            ) || inner.starting.contains(&id)
            {
                return Err(ContainerError::AlreadyRunning(c.id));
            }
            // A user's start: fresh restart count, back-off and manual-stop flag.
            Self::reset_restart(&mut inner, &mut c);
            inner.containers.insert(id.clone(), c.clone());
            inner.starting.insert(id);
            c
        };
        let res = self.start_inner(&c, expected_attaches, on_ready);
        if res.is_err() {
            self.teardown_network(&c.id);
        }
        self.lock().starting.remove(&c.id);
        self.changed(&c.id);
        res
    }

    fn start_failed(&self, c: &Container, mut message: String) -> ContainerError {
        let code = crate::monitor::start_failure_exit_code(&message);
        self.teardown_network(&c.id);
        unmount_container(&self.container_dir(&c.id));
        self.unmount_volumes(c);
        let mut inner = self.lock();
        if let Some(rec) = inner.containers.get_mut(&c.id) {
            // Docker marks a failed start as exited with the error's code.
            rec.state.status = Status::Exited;
            rec.state.exit_code = code;
            rec.state.error = message.clone();
            rec.state.pid = 0;
            rec.state.finished_at = now_rfc3339();
        }
        *inner.exits.entry(c.id.clone()).or_default() += 1;
        drop(inner);
        if let Err(e) = self.persist(&c.id) {
            message = format!("{message} (and the container's record: {e})");
        }
        self.changed(&c.id);
        ContainerError::StartFailed { message }
    }

    pub(crate) fn start_inner(
        &self,
        c: &Container,
        expected_attaches: usize,
        on_ready: &mut dyn FnMut(&AttachPoint),
    ) -> Result<(), ContainerError> {
        let dir = self.container_dir(&c.id);
        let host = &c.options.host;
        let runtime = self.runtime_path(&c.runtime)?;
        let link_targets = self.link_targets(c)?;
        // Dropped when this function returns: by then the container runs (or failed).
        let _warm = crate::resources::keep_migration_warm();
        self.clean_runtime_state(c);
        self.mount_rootfs(c)?;
        let rootfs = dir.join("rootfs");
        let user = match spec::resolve_user(&rootfs, &c.config.user).and_then(|mut u| {
            spec::add_groups(&rootfs, &mut u, &host.group_add)?;
            Ok(u)
        }) {
            Ok(u) => u,
            Err(msg) => return Err(self.start_failed(c, msg)),
        };
        let user_mounts = match self.setup_mounts(c, &rootfs) {
            Ok(m) => m,
            Err(msg) => return Err(self.start_failed(c, msg)),
        };
        let host_net = host.network_mode == "host";
        // The namespace is made now; its endpoints (veth pairs, DNS, published ports) are set
        // up on another thread while the runtime creates the container in it, and the monitor
        // starts the process only once they are ready (its start gate).
        let sandbox = match (self.networks.get(), crate::net::sandbox_request(c)) {
            (Some(nets), Some(req)) => match nets.setup_begin(&req) {
                Ok(sb) => Some(sb),
                Err(e) => {
                    unmount(&rootfs);
                    return Err(e.into());
                }
            },
            _ => None,
        };
        // Joined on every way out of this function (the caller tears the sandbox down on error,
        // which must not race the thread still building it).
        let mut net_job = NetJob(None);
        if let (Some(nets), Some(sb)) = (self.networks.get(), &sandbox) {
            let (nets, sb) = (Arc::clone(nets), sb.clone());
            let job = std::thread::Builder::new()
                .name("barge-sandbox".into())
                .spawn(move || nets.setup_finish(&sb).map_err(|e| e.to_string()));
            match job {
                Ok(j) => net_job.0 = Some(j),
                Err(e) => {
                    self.teardown_network(&c.id);
                    unmount(&rootfs);
                    return Err(ContainerError::io("spawn network setup thread", e));
                }
            }
        }
        // `sandbox:<key>`: a pod's sandbox, made beforehand by the node agent; the container
        // joins it and sees its addresses in /etc/hosts as if it were its own.
        let joined = match host.network_mode.strip_prefix("sandbox:") {
            Some(key) => match self.networks.get().and_then(|n| n.sandbox(key)) {
                Some(sb) => Some(sb),
                None => {
                    unmount(&rootfs);
                    return Err(ContainerError::InvalidOption {
                        field: "network".into(),
                        reason: format!("no network sandbox {key}"),
                    });
                }
            },
            None => None,
        };
        let own_or_joined = sandbox.as_ref().or(joined.as_ref());
        let embedded_dns = match (own_or_joined, self.networks.get()) {
            (Some(sb), Some(nets)) => nets.uses_dns(sb),
            _ => false,
        };
        let hostname = if host_net {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            c.config.hostname.clone()
        };
        // Legacy links: the targets' names in /etc/hosts and their environment.
        let links: Vec<crate::net::LinkTarget<'_>> = link_targets
            .iter()
            .map(|(t, alias, ip)| crate::net::LinkTarget {
                link_name: format!("/{}/{alias}", c.name),
                alias,
                name: &t.name,
                hostname: &t.config.hostname,
                ip: *ip,
                exposed_ports: &t.config.exposed_ports,
                env: &t.config.env,
            })
            .collect();
        let mut extra_hosts = host.extra_hosts.clone();
        extra_hosts.extend(crate::net::link_hosts(&links));
        let etc = [
            (
                "/etc/hostname",
                dir.join("hostname"),
                format!("{hostname}\n"),
            ),
            (
                "/etc/hosts",
                dir.join("hosts"),
                if host_net {
                    std::fs::read_to_string("/etc/hosts").unwrap_or_default()
                } else {
                    crate::net::hosts_file(&hostname, own_or_joined, &extra_hosts)
                },
            ),
            (
                "/etc/resolv.conf",
                dir.join("resolv.conf"),
                crate::net::resolv_conf(host_net, embedded_dns, host),
            ),
        ];
        let mut etc_files = Vec::new();
        for (dest, path, content) in etc {
            std::fs::write(&path, content).map_err(io_err(format!("write {}", path.display())))?;
            etc_files.push((dest.to_string(), path));
        }
        let netns_path = match host.network_mode.strip_prefix("container:") {
            Some(other) => {
                let other = self.get(other)?;
                if other.state.status != Status::Running {
                    return Err(ContainerError::NotRunning(other.id));
                }
                // The other container's sandbox if it has one (stable across its restarts).
                match self.networks.get().and_then(|n| n.sandbox(&other.id)) {
                    Some(sb) => Some(sb.netns),
                    None => Some(PathBuf::from(format!("/proc/{}/ns/net", other.state.pid))),
                }
            }
            None => own_or_joined.map(|sb| sb.netns.clone()),
        };
        // `--pid container:NAME`: the other container's PID namespace (dockerd's
        // `getPIDContainer`: it must be running).
        let pidns_path = match host.pid_mode.strip_prefix("container:") {
            Some(other) => {
                let other = self.get(other)?;
                if other.state.status != Status::Running {
                    return Err(ContainerError::NotRunning(other.id));
                }
                Some(PathBuf::from(format!("/proc/{}/ns/pid", other.state.pid)))
            }
            None => None,
        };
        // IPC (dockerd's `setupIPCDirs`/`getIPCContainer`): a `shareable` container's
        // `/dev/shm` is a tmpfs on the host (`<container>/shm`) that `container:NAME` joiners
        // bind too, with the donor's IPC namespace; the donor must run and share.
        let shm_dir = self.container_dir(&c.id).join("shm");
        if host.ipc_mode == "shareable" {
            mount_shm(&shm_dir, host.shm_size)?;
        }
        let ipc_join = match host.ipc_mode.strip_prefix("container:") {
            Some(other) => {
                let other = self.get(other)?;
                if other.state.status != Status::Running {
                    return Err(ContainerError::NotRunning(other.id));
                }
                let shm = match other.options.host.ipc_mode.as_str() {
                    "host" => PathBuf::from("/dev/shm"),
                    "shareable" => self.container_dir(&other.id).join("shm"),
                    _ => {
                        return Err(ContainerError::BadHostConfig(format!(
                            "container {}: non-shareable IPC (hint: use IpcMode:shareable for the donor container)",
                            other.id
                        )))
                    }
                };
                Some((
                    PathBuf::from(format!("/proc/{}/ns/ipc", other.state.pid)),
                    shm,
                ))
            }
            None => match host.ipc_mode.strip_prefix("sandbox:") {
                // A pod sandbox's IPC namespace and `/dev/shm`, shared by the pod's containers.
                Some(key) => {
                    let pod = pod_namespaces(self.networks.get().map(|n| &**n), key);
                    let pod = match pod {
                        Ok(p) => p,
                        Err(e) => {
                            unmount(&rootfs);
                            return Err(e);
                        }
                    };
                    Some((pod.ipc, pod.shm))
                }
                None => None,
            },
        };
        // `sandbox:<key>` UTS mode: the pod sandbox's UTS namespace (its host name).
        let utsns_path = match host.uts_mode.strip_prefix("sandbox:") {
            Some(key) => match pod_namespaces(self.networks.get().map(|n| &**n), key) {
                Ok(p) => Some(p.uts),
                Err(e) => {
                    unmount(&rootfs);
                    return Err(e);
                }
            },
            None => None,
        };
        let own_shm = (host.ipc_mode == "shareable").then(|| shm_dir.clone());
        let mut env = vec![format!("HOSTNAME={hostname}")];
        if c.options.tty {
            env.push("TERM=xterm".into());
        }
        env.extend(crate::net::link_env(&links));
        for e in &c.config.env {
            let key = e.split('=').next().unwrap_or(e);
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!("HOME={}", user.home));
        }
        let mut args = vec![c.config.path.clone()];
        args.extend(c.config.args.iter().cloned());
        let input = SpecInput {
            id: &c.id,
            args,
            env,
            cwd: c.config.working_dir.clone(),
            user,
            hostname,
            domainname: c.options.domainname.clone().unwrap_or_default(),
            tty: c.options.tty,
            host,
            rootfs: rootfs.clone(),
            etc_files,
            mounts: user_mounts,
            init_path: Some(self.cfg.init_path.clone()),
            netns_path,
            pidns_path,
            ipc_join,
            utsns_path,
            own_shm,
            swap_supported: Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
                || !Path::new("/sys/fs/cgroup/memory").is_dir(),
        };
        let spec = spec::build_spec(&input)?;
        let spec_json = serde_json::to_vec_pretty(&spec).expect("spec serializes");
        // Not a record: the bundle is rebuilt by every start and read by this start's monitor
        // (and `exec`s of this run), none of which survives a machine crash, so no fsyncs
        // (two file and two directory fsyncs per start with `monitor.json` below).
        let config_path = dir.join("config.json");
        std::fs::write(&config_path, &spec_json)
            .map_err(io_err(format!("write {}", config_path.display())))?;

        let state_dir = self.state_dir(&c.id);
        std::fs::create_dir_all(&state_dir)
            .map_err(io_err(format!("create {}", state_dir.display())))?;
        let log = if host.log_type == "none" {
            None
        } else {
            Some(LogConfig {
                path: c.log_path.clone(),
                max_size: host
                    .log_opts
                    .get("max-size")
                    .and_then(|s| logs::parse_size(s))
                    .unwrap_or(0),
                max_files: host
                    .log_opts
                    .get("max-file")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(1),
            })
        };
        let mcfg_runtime_is_embedded =
            runtime == self.cfg.self_exe && self.runtime_args(&c.runtime) == ["runtime"];
        let mcfg = MonitorConfig {
            id: c.id.clone(),
            exec_id: None,
            runtime,
            runtime_args: self.runtime_args(&c.runtime),
            runtime_root: self.runtime_root(&c.runtime),
            bundle: dir.clone(),
            process_json: None,
            state_dir: state_dir.clone(),
            attach_socket: state_dir.join("attach.sock"),
            control_socket: state_dir.join("control.sock"),
            log,
            tty: c.options.tty,
            open_stdin: c.options.open_stdin,
            stdin_once: c.options.stdin_once,
            expected_attaches,
            memory_cgroup: Some(memory_cgroup(&c.cgroup_path())),
            cgroups_path: Some(c.cgroup_path()),
            loopback_up: host.network_mode != "host"
                && !host.network_mode.starts_with("container:")
                && joined.is_none()
                && sandbox.is_none(),
            init: host.init,
            // The embedded runtime runs inside the monitor (no exec of `barge runtime`).
            in_process: mcfg_runtime_is_embedded,
            start_gate: net_job.0.is_some(),
            console_size: host.console_size.filter(|(h, w)| *h > 0 && *w > 0),
        };
        let mut network_ready = || net_job.wait();
        let gate: Option<&mut dyn FnMut() -> Result<(), String>> = if mcfg.start_gate {
            Some(&mut network_ready)
        } else {
            None
        };
        let res = self.run_monitor(&mcfg, &state_dir.join("monitor.json"), on_ready, gate);
        // Endpoints are complete (or torn down) before the result is acted upon; a failure
        // reached the monitor through the gate and comes back as its start error.
        let _ = net_job.wait();
        match res {
            Ok((child, pid)) => {
                let mut inner = self.lock();
                if let Some(rec) = inner.containers.get_mut(&c.id) {
                    rec.state = State {
                        status: Status::Running,
                        pid,
                        exit_code: 0,
                        error: String::new(),
                        started_at: now_rfc3339(),
                        finished_at: ZERO_TIME.into(),
                        oom_killed: false,
                        health: rec.state.health.take(),
                    };
                }
                drop(inner);
                self.persist(&c.id)?;
                self.spawn_watcher(c.id.clone(), None, Watch::Child(child));
                self.health_start(&c.id, false);
                Ok(())
            }
            Err((child, msg)) => {
                if let Some(mut ch) = child {
                    let _ = ch.wait();
                }
                Err(self.start_failed(c, msg))
            }
        }
    }

    pub(super) fn spawn_watcher(&self, id: String, exec_id: Option<String>, watch: Watch) {
        let me = self.me.clone();
        let name = format!("watch-{}", &id[..12.min(id.len())]);
        let spawn = std::thread::Builder::new().name(name).spawn(move || {
            match watch {
                Watch::Child(mut child) => {
                    let _ = child.wait();
                }
                Watch::Socket(mut s) => {
                    let _ = s.write_all(b"watch\n");
                    let mut buf = [0u8; 256];
                    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
                }
            }
            if let Some(this) = me.upgrade() {
                match exec_id {
                    Some(e) => this.handle_exec_exit(&id, &e),
                    None => this.handle_exit(&id, false),
                }
            }
        });
        if let Err(e) = spawn {
            tracing::error!("cannot spawn watcher thread: {e}");
        }
    }
}

/// The IPC/UTS namespaces and `/dev/shm` of pod sandbox `key` (`sandbox:<key>` IPC and UTS
/// modes); an error if the sandbox does not exist or holds only a network namespace.
fn pod_namespaces(
    nets: Option<&barge_network::Networks>,
    key: &str,
) -> Result<barge_network::PodNamespaces, ContainerError> {
    nets.and_then(|n| n.sandbox(key))
        .and_then(|sb| sb.pod)
        .ok_or_else(|| ContainerError::InvalidOption {
            field: "namespaces".into(),
            reason: format!("no pod sandbox {key} with IPC and UTS namespaces"),
        })
}

/// Mounts the tmpfs a `shareable` container's `/dev/shm` is (docker's `mounts/shm`), unless it
/// is mounted; `size` in bytes, 0 for docker's 64 MiB.
fn mount_shm(dir: &Path, size: i64) -> Result<(), ContainerError> {
    std::fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
    if is_mounted(dir) {
        return Ok(());
    }
    let size = if size > 0 { size } else { 64 * 1024 * 1024 };
    use nix::mount::MsFlags;
    nix::mount::mount(
        Some("shm"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(format!("mode=1777,size={size}").as_str()),
    )
    .map_err(|e| io_err(format!("mount shm on {}", dir.display()))(std::io::Error::from(e)))
}

/// The init layer's directory name under `<data-root>/containers` (no `container.json`: never
/// taken for a container).
const INIT_LAYER: &str = ".init-layer";

/// What the init layer holds: the mount points every container gets (`/proc`, `/sys`, `/dev`
/// and the files barge bind-mounts into `/etc`), as Docker's init layer has them
/// (`daemon/initlayer`), empty and owned by root. Directories end in `/`.
const INIT_LAYER_ENTRIES: &[&str] = &[
    "proc/",
    "sys/",
    "dev/",
    "etc/",
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
];

/// Makes the init layer under `containers_dir` if it is not complete (idempotent; run when the
/// engine opens). The layer is a read-only lower of every container's root, under its image's
/// layers, so an entry only shows where the image has none.
pub(super) fn ensure_init_layer(containers_dir: &Path) -> Result<(), ContainerError> {
    use std::os::unix::fs::PermissionsExt;
    let root = containers_dir.join(INIT_LAYER);
    for entry in std::iter::once("").chain(INIT_LAYER_ENTRIES.iter().copied()) {
        let path = root.join(entry);
        let dir = entry.is_empty() || entry.ends_with('/');
        let made = if dir {
            std::fs::create_dir(&path)
        } else {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map(drop)
        };
        let err = |e| ContainerError::io(format!("create init layer {}", path.display()), e);
        match made {
            // The modes whatever the daemon's umask: a container's user reads them.
            Ok(()) => {
                let mode = if dir { 0o755 } else { 0o644 };
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    .map_err(err)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(e)),
        }
    }
    Ok(())
}
