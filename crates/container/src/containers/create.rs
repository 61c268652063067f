//! `docker create`: host options checked, the config merged ([`super::config`]), the name
//! reserved, mounts resolved (`--volumes-from`, binds, `Mounts`, tmpfs, anonymous volumes) and
//! volumes referenced, the record written.
//!
//! **Invariants:** the name is reserved by the in-memory record under the engine lock, and
//! the record is written without it (taken back if the write fails); volume references are
//! all or nothing ([`Containers::reference_volumes`]) and dropped again by
//! [`Containers::release_volumes`] (failed create, remove).

use std::collections::HashSet;
use std::path::PathBuf;

use crate::mounts::{MountPoint, MountSpec, MountType};
use crate::volumes::{VolumeCreate, VolumeError, ANONYMOUS_LABEL};
use crate::*;

use super::config::resolve_config;
use super::naming::{generate_name, valid_name};
use super::{io_err, now_rfc3339, random_hex, Containers, ZERO_TIME};

impl Containers {
    /// Creates a container (does not start it). Errors: image not found (404), name in use (409),
    /// bad options (400).
    pub fn create(&self, mut opts: CreateOptions) -> Result<Container, ContainerError> {
        // A start usually follows (`docker run`): its cgroup migration then finds the kernel's
        // lock warm instead of waiting a grace period (see `keep_migration_warm`).
        crate::resources::warm_migration_soon();
        let warnings = spec::check_host_options(&mut opts.host, &spec::SysInfo::probe())?;
        self.check_links(&mut opts.host)?;
        if let Some(name) = &opts.name {
            let n = name.strip_prefix('/').unwrap_or(name);
            if !valid_name(n) {
                return Err(ContainerError::InvalidName(n.to_string()));
            }
        }
        let runtime = opts
            .host
            .runtime
            .clone()
            .unwrap_or_else(|| self.cfg.default_runtime.clone());
        self.runtime_path(&runtime)?;
        spec::capabilities(&opts.host)?;
        crate::restart::validate(&opts.host)?;
        crate::health::validate(opts.healthcheck.as_ref())?;
        let log_type = if opts.host.log_type.is_empty() {
            "json-file"
        } else {
            opts.host.log_type.as_str()
        };
        if !matches!(log_type, "json-file" | "none") {
            return Err(ContainerError::NoLogDriver(log_type.to_string()));
        }
        for (k, v) in &opts.host.log_opts {
            match k.as_str() {
                "max-size" if logs::parse_size(v).is_some() => {}
                "max-file" if v.parse::<usize>().map(|n| n >= 1).unwrap_or(false) => {}
                "max-size" | "max-file" => {
                    return Err(ContainerError::InvalidOption {
                        field: "log-opt".into(),
                        reason: format!("invalid value for {k}: {v}"),
                    })
                }
                _ => {
                    return Err(ContainerError::InvalidOption {
                        field: "log-opt".into(),
                        reason: format!("unknown log opt '{k}' for {log_type} log driver"),
                    })
                }
            }
        }
        for d in &opts.host.dns {
            if d.parse::<std::net::IpAddr>().is_err() {
                return Err(ContainerError::InvalidOption {
                    field: "dns".into(),
                    reason: format!("{d} is not an ip address"),
                });
            }
        }
        if let Some(nets) = self.networks.get() {
            if let crate::net::Mode::Bridge(eps) = crate::net::mode(&opts.host) {
                for ep in &eps {
                    let n = nets.get(&ep.network)?;
                    if n.driver != "bridge" {
                        return Err(ContainerError::InvalidOption {
                            field: "network".into(),
                            reason: format!(
                                "container cannot be connected to network {} together with others",
                                n.name
                            ),
                        });
                    }
                }
            }
        }
        let image = self.images.resolve(&opts.image)?;
        let id = random_hex(32);
        let mut config = resolve_config(&id, &image.config, &opts)?;
        if opts.host.uts_mode == "host" {
            // dockerd: the host's UTS namespace brings the host's name.
            if opts.hostname.is_some() {
                return Err(ContainerError::BadHostConfig(
                    "Conflicting options: hostname and the UTS mode".into(),
                ));
            }
            config.hostname = nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        let creates_volumes = !config.volumes.is_empty()
            || opts.host.binds.iter().any(|b| !b.starts_with('/'))
            || opts.host.mounts.iter().any(|m| m.kind == MountType::Volume);
        spec::check_volume_driver(&opts.host, creates_volumes)?;
        let mut mount_points = self.resolve_mounts(&opts, &config.volumes)?;
        let dir = self.container_dir(&id);
        let mut c = Container {
            id: id.clone(),
            name: String::new(),
            created: now_rfc3339(),
            image_id: image.id,
            options: opts.clone(),
            config,
            state: State {
                status: Status::Created,
                started_at: ZERO_TIME.into(),
                finished_at: ZERO_TIME.into(),
                ..Default::default()
            },
            restart_count: 0,
            log_path: dir.join(format!("{id}-json.log")),
            rootfs: dir.join("rootfs"),
            runtime,
            mounts: Vec::new(),
            has_been_manually_stopped: false,
            warnings: Vec::new(),
        };
        let mut inner = self.lock();
        let name = match &opts.name {
            Some(n) => {
                let n = n.strip_prefix('/').unwrap_or(n).to_string();
                if let Some(other) = inner.containers.values().find(|c| c.name == n) {
                    return Err(ContainerError::NameInUse {
                        name: n,
                        id: other.id.clone(),
                    });
                }
                n
            }
            None => {
                let mut attempt = 0;
                loop {
                    let n = generate_name(attempt);
                    if !inner.containers.values().any(|c| c.name == n) {
                        break n;
                    }
                    attempt += 1;
                }
            }
        };
        c.name = name;
        self.reference_volumes(&id, &mut mount_points)?;
        c.mounts = mount_points;
        // The name is reserved by the in-memory record; the record is written without the
        // engine lock, and taken back if that fails.
        inner.containers.insert(id.clone(), c.clone());
        drop(inner);
        let saved = std::fs::create_dir_all(&dir)
            .map_err(io_err(format!("create {}", dir.display())))
            .and_then(|_| self.persist(&id));
        if let Err(e) = saved {
            self.lock().containers.remove(&id);
            self.release_volumes(&c, true);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        c.warnings = warnings;
        Ok(c)
    }

    /// Docker's `registerMountPoints` + anonymous `Config.Volumes`: `--volumes-from` first
    /// (later ones win), then `Binds` and `Mounts` (which may not share a destination), then
    /// `Tmpfs`, then an anonymous volume for every `Config.Volumes` path not mounted yet.
    /// Volume names are not looked up here (see [`Self::reference_volumes`]).
    fn resolve_mounts(
        &self,
        opts: &CreateOptions,
        config_volumes: &[String],
    ) -> Result<Vec<MountPoint>, ContainerError> {
        let host = &opts.host;
        let mut out: Vec<MountPoint> = Vec::new();
        // Destinations set by Binds/Mounts/Tmpfs (which may not repeat).
        let mut explicit: HashSet<String> = HashSet::new();
        fn put(out: &mut Vec<MountPoint>, m: MountPoint) {
            out.retain(|o| o.destination != m.destination);
            out.push(m);
        }
        for spec in &host.volumes_from {
            let (name, mode) = match spec.rsplit_once(':') {
                Some((n, m)) => (n, m),
                None => (spec.as_str(), ""),
            };
            if !matches!(mode, "" | "ro" | "rw") {
                return Err(ContainerError::InvalidMount(format!(
                    "invalid mode for volumes-from: {mode}"
                )));
            }
            let other = self.get(name)?;
            for m in other.mounts.iter().filter(|m| !m.from_tmpfs_flag) {
                let mut m = m.clone();
                m.anonymous = false;
                m.copy_data = false;
                match mode {
                    "ro" => m.rw = false,
                    "rw" => m.rw = true,
                    _ => {}
                }
                if !mode.is_empty() {
                    m.mode = mode.to_string();
                }
                put(&mut out, m);
            }
        }
        let mut specs: Vec<(MountSpec, String)> = Vec::new();
        for b in &host.binds {
            specs.push(mounts::parse_bind(b)?);
        }
        for m in &host.mounts {
            mounts::validate_mount(m)?;
            specs.push((m.clone(), String::new()));
        }
        for (spec, mode) in specs {
            let dest = mounts::clean_path(&spec.target);
            if !explicit.insert(dest.clone()) {
                return Err(ContainerError::InvalidMount(format!(
                    "Duplicate mount point: {dest}"
                )));
            }
            let mut m = MountPoint {
                kind: spec.kind,
                destination: dest,
                mode,
                rw: !spec.read_only,
                ..Default::default()
            };
            match spec.kind {
                MountType::Bind => {
                    let b = spec.bind_options.clone().unwrap_or_default();
                    m.source = PathBuf::from(mounts::clean_path(&spec.source));
                    m.propagation = if b.propagation.is_empty() {
                        "rprivate".into()
                    } else {
                        b.propagation
                    };
                    m.non_recursive = b.non_recursive;
                    m.create_source = b.create_mountpoint;
                    if !m.create_source && !m.source.exists() {
                        return Err(ContainerError::InvalidMount(format!(
                            "invalid mount config for type \"bind\": bind source path does not exist: {}",
                            m.source.display()
                        )));
                    }
                }
                MountType::Volume => {
                    let v = spec.volume_options.clone().unwrap_or_default();
                    m.name = spec.source.clone();
                    m.driver = "local".into();
                    m.subpath = v.subpath.clone();
                    m.copy_data = !v.no_copy;
                    m.anonymous = spec.source.is_empty();
                    m.volume_options = Some(v);
                }
                MountType::Tmpfs => {
                    m.tmpfs_data = mounts::tmpfs_data(spec.tmpfs_options.as_ref());
                }
            }
            put(&mut out, m);
        }
        for (dest, o) in &host.tmpfs {
            mounts::validate_tmpfs(dest, o)?;
            let dest = mounts::clean_path(dest);
            if !explicit.insert(dest.clone()) {
                return Err(ContainerError::InvalidMount(format!(
                    "Duplicate mount point: {dest}"
                )));
            }
            put(
                &mut out,
                MountPoint {
                    kind: MountType::Tmpfs,
                    destination: dest,
                    rw: !o.split(',').any(|x| x == "ro"),
                    tmpfs_data: o.clone(),
                    from_tmpfs_flag: true,
                    ..Default::default()
                },
            );
        }
        for path in config_volumes {
            if !path.starts_with('/') {
                return Err(ContainerError::InvalidMount(format!(
                    "invalid mount config for type \"volume\": invalid mount path: '{path}' mount path must be absolute"
                )));
            }
            let dest = mounts::clean_path(path);
            if dest == "/" {
                return Err(ContainerError::InvalidMount(
                    "invalid specification: destination can't be '/'".into(),
                ));
            }
            if out.iter().any(|m| m.destination == dest) {
                continue;
            }
            out.push(MountPoint {
                kind: MountType::Volume,
                destination: dest,
                rw: true,
                driver: "local".into(),
                copy_data: true,
                anonymous: true,
                ..Default::default()
            });
        }
        Ok(out)
    }

    /// Creates missing named and anonymous volumes and records the container's references
    /// (all or nothing: on error, references taken so far are dropped and volumes created for
    /// anonymous mounts are removed).
    fn reference_volumes(&self, id: &str, mps: &mut [MountPoint]) -> Result<(), ContainerError> {
        let mut done: Vec<(String, bool)> = Vec::new();
        for m in mps.iter_mut().filter(|m| m.kind == MountType::Volume) {
            let fresh = m.name.is_empty();
            let opts = m.volume_options.take().unwrap_or_default();
            let mut labels = opts.labels.clone();
            if m.anonymous {
                labels.insert(ANONYMOUS_LABEL.into(), String::new());
            }
            let res = self.volumes.create_and_reference(
                VolumeCreate {
                    name: m.name.clone(),
                    driver: opts.driver.clone(),
                    driver_opts: opts.driver_options.clone(),
                    labels,
                },
                id,
            );
            match res {
                Ok(v) => {
                    m.name = v.name.clone();
                    m.source = v.mountpoint.clone();
                    done.push((v.name, m.anonymous && fresh));
                }
                Err(e) => {
                    for (name, anon) in done {
                        self.volumes.remove_reference(&name, id);
                        if anon {
                            let _ = self.volumes.remove(&name, true);
                        }
                    }
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// Drops the container's volume references; with `remove_anonymous`, also removes the
    /// anonymous volumes nothing else references (`rm -v`, `--rm`). Errors are logged.
    pub(super) fn release_volumes(&self, c: &Container, remove_anonymous: bool) {
        for m in c.mounts.iter().filter(|m| m.kind == MountType::Volume) {
            self.volumes.unmount(&m.name, &c.id);
            self.volumes.remove_reference(&m.name, &c.id);
            if remove_anonymous {
                let anonymous = self
                    .volumes
                    .get(&m.name)
                    .map(|v| v.is_anonymous())
                    .unwrap_or(false);
                if anonymous {
                    match self.volumes.remove(&m.name, true) {
                        Ok(()) | Err(VolumeError::InUse { .. }) => {}
                        Err(e) => tracing::warn!(volume = %m.name, "removing volume: {e}"),
                    }
                }
            }
        }
    }
}
