//! The container manager: records, lifecycle, exec.
//!
//! This file holds the engine itself ([`Containers`]: open and reconciliation, paths, record
//! persistence, lookup, attach/resize/top) and the helpers its parts share; each concern is
//! one `impl Containers` in a submodule: `naming`, `config` (the image/options merge),
//! `create`, `start`, `stop` (exits, stop, kill, remove), `connect` (networks, links), `exec`
//! and `fs` (file system access).

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

use barge_image::ImageStore;

use crate::mounts::MountType;
use crate::volumes::Volumes;
use crate::*;

mod config;
mod connect;
mod create;
mod exec;
mod fs;
mod naming;
mod start;
mod stop;
mod warm;

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// An image as the container engine needs it.
#[derive(Debug, Clone, Default)]
pub struct SourceImage {
    /// Image ID (`sha256:...`).
    pub id: String,
    pub config: barge_image::ContainerConfig,
}

/// Where containers get images from: [`ImageStore`] in production, a fake in tests.
pub trait ImageSource: Send + Sync {
    /// Resolves a user-given image reference or ID.
    fn resolve(&self, name_or_id: &str) -> Result<SourceImage, ContainerError>;
    /// Snapshot directories of the image, bottom layer first.
    fn layer_dirs(&self, image_id: &str) -> Result<Vec<PathBuf>, ContainerError>;
}

impl ImageSource for ImageStore {
    fn resolve(&self, name_or_id: &str) -> Result<SourceImage, ContainerError> {
        let img = self.get(name_or_id)?;
        Ok(SourceImage {
            id: img.id,
            config: img.config.config,
        })
    }
    fn layer_dirs(&self, image_id: &str) -> Result<Vec<PathBuf>, ContainerError> {
        Ok(ImageStore::layer_dirs(self, image_id)?)
    }
}

struct ArcImages(Arc<ImageStore>);
impl ImageSource for ArcImages {
    fn resolve(&self, name_or_id: &str) -> Result<SourceImage, ContainerError> {
        self.0.resolve(name_or_id)
    }
    fn layer_dirs(&self, image_id: &str) -> Result<Vec<PathBuf>, ContainerError> {
        ImageSource::layer_dirs(&*self.0, image_id)
    }
}

#[derive(Default)]
pub(crate) struct Inner {
    pub(crate) containers: HashMap<String, Container>,
    pub(crate) execs: HashMap<String, Exec>,
    /// Number of exits seen per container (for `WaitCondition::NextExit`).
    pub(crate) exits: HashMap<String, u64>,
    /// Exit codes of removed containers (for `WaitCondition::Removed`).
    pub(crate) removed: HashMap<String, i64>,
    pub(crate) starting: HashSet<String>,
    /// Ongoing file system operations per container (`cp`, `export`, ...): its root stays
    /// mounted while any runs, even if the container stops meanwhile.
    pub(crate) fs_users: HashMap<String, usize>,
    /// Restart supervisor state (`restart.rs`).
    pub(crate) restart: HashMap<String, crate::restart::RestartState>,
    /// Generation of each container's health prober (`health.rs`); bumping it retires it.
    pub(crate) health: HashMap<String, u64>,
    /// Pending `wait`s per container ID, and per exec ID (`waits.rs`).
    pub(crate) waiters: HashMap<String, Vec<crate::waits::Waiter>>,
    pub(crate) exec_waiters: HashMap<String, Vec<crate::waits::ExecWaiter>>,
    pub(crate) next_waiter: u64,
}

/// All containers of one data root. Share it behind an `Arc`; every method is blocking.
pub struct Containers {
    cfg: RuntimeConfig,
    images: Box<dyn ImageSource>,
    volumes: Arc<Volumes>,
    pub(crate) on_event: Box<dyn Fn(ContainerEvent) + Send + Sync>,
    inner: Mutex<Inner>,
    /// Serialises writes of `container.json` ([`Containers::persist`]), which happen outside
    /// `inner`: a slow disk never holds up readers of the engine's state.
    save_lock: Mutex<()>,
    pub(crate) cond: Condvar,
    pub(crate) me: Weak<Containers>,
    /// Bridge networking ([`RuntimeConfig::networks`]); without it, every network mode but
    /// `host` and `container:` behaves as `none`.
    pub(crate) networks: std::sync::OnceLock<Arc<barge_network::Networks>>,
    /// A monitor started ahead of the next start ([`warm`]).
    warm: Arc<warm::Warm>,
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ContainerError {
    let what = what.into();
    move |e| ContainerError::io(what, e)
}

pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn random_hex(n_bytes: usize) -> String {
    let mut b = vec![0u8; n_bytes];
    getrandom::fill(&mut b).expect("getrandom");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Replaces a record durably ([`barge_stdx::fs::write_atomic`]: temp file, fsync, rename, fsync
/// of the directory).
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ContainerError> {
    barge_stdx::fs::write_atomic(path, data).map_err(io_err(format!("write {}", path.display())))
}

use crate::mountinfo::is_mounted;

/// Unmounts what a container's start mounted on the host under its directory `dir`: the root
/// file system and a `shareable` container's `/dev/shm` tmpfs.
fn unmount_container(dir: &Path) {
    unmount(&dir.join("rootfs"));
    unmount(&dir.join("shm"));
}

fn unmount(path: &Path) {
    if is_mounted(path) && nix::mount::umount2(path, nix::mount::MntFlags::empty()).is_err() {
        let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The memory cgroup directory of cgroup `cg` ([`Container::cgroup_path`]; cgroup v1 memory
/// controller, else v2).
fn memory_cgroup(cg: &str) -> PathBuf {
    let rel = cg.trim_start_matches('/');
    let v1 = Path::new("/sys/fs/cgroup/memory");
    if v1.is_dir() {
        v1.join(rel)
    } else {
        Path::new("/sys/fs/cgroup").join(rel)
    }
}

/// The processes of cgroup `cg` ([`Container::cgroup_path`]).
fn cgroup_procs(cg: &str) -> Vec<i64> {
    let rel = cg.trim_start_matches('/');
    let candidates = [
        Path::new("/sys/fs/cgroup/pids")
            .join(rel)
            .join("cgroup.procs"),
        Path::new("/sys/fs/cgroup/memory")
            .join(rel)
            .join("cgroup.procs"),
        Path::new("/sys/fs/cgroup").join(rel).join("cgroup.procs"),
    ];
    for c in candidates {
        if let Ok(text) = std::fs::read_to_string(&c) {
            return text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        }
    }
    Vec::new()
}

impl Containers {
    /// Loads records and reconciles them with reality: a `running` container whose monitor is
    /// gone becomes `exited` with the status the monitor recorded (exit code 255 + `Dead` if none).
    /// `on_event` is called (from an engine thread) for every [`ContainerEvent`].
    pub fn open(
        cfg: RuntimeConfig,
        images: Arc<ImageStore>,
        on_event: Box<dyn Fn(ContainerEvent) + Send + Sync>,
    ) -> Result<Arc<Containers>, ContainerError> {
        Self::open_with_source(cfg, Box::new(ArcImages(images)), on_event)
    }

    /// Like [`Containers::open`] with any [`ImageSource`] (tests, alternative stores).
    pub fn open_with_source(
        cfg: RuntimeConfig,
        images: Box<dyn ImageSource>,
        on_event: Box<dyn Fn(ContainerEvent) + Send + Sync>,
    ) -> Result<Arc<Containers>, ContainerError> {
        let mut cfg = cfg;
        let dir = cfg.data_root.join("containers");
        std::fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
        std::fs::create_dir_all(cfg.exec_root.join("c")).map_err(io_err("create exec root"))?;
        // Bundles and sockets need absolute paths.
        cfg.data_root =
            std::fs::canonicalize(&cfg.data_root).map_err(io_err("resolve data root"))?;
        cfg.exec_root =
            std::fs::canonicalize(&cfg.exec_root).map_err(io_err("resolve exec root"))?;
        let dir = cfg.data_root.join("containers");
        // Trees an earlier run was deleting when it stopped ([`stop::discard_tree`]).
        stop::purge_removing(&dir);
        start::ensure_init_layer(&dir)?;
        stop::purge_removing(&cfg.exec_root.join("c"));
        let mut inner = Inner::default();
        for entry in std::fs::read_dir(&dir).map_err(io_err(format!("read {}", dir.display())))? {
            let Ok(entry) = entry else { continue };
            let path = entry.path().join("container.json");
            let Ok(data) = std::fs::read(&path) else {
                continue;
            };
            match serde_json::from_slice::<Container>(&data) {
                Ok(c) => {
                    inner.containers.insert(c.id.clone(), c);
                }
                Err(e) => tracing::warn!("skipping {}: {e}", path.display()),
            }
        }
        let running: Vec<String> = inner
            .containers
            .values()
            .filter(|c| {
                matches!(
                    c.state.status,
                    Status::Running | Status::Paused | Status::Restarting
                )
            })
            .map(|c| c.id.clone())
            .collect();
        // Volume references come from the records; running containers keep theirs mounted.
        let volumes = Arc::new(Volumes::open(&cfg.data_root)?);
        for c in inner.containers.values() {
            for m in c.mounts.iter().filter(|m| m.kind == MountType::Volume) {
                volumes.add_reference(&m.name, &c.id);
                if running.contains(&c.id) {
                    if let Err(e) = volumes.mount(&m.name, &c.id) {
                        tracing::warn!(container = %c.id, volume = %m.name, "{e}");
                    }
                }
            }
        }
        // Networking first: sandboxes of containers whose records say they run are kept (the
        // loop below tears down those of containers found dead), the rest is cleaned up.
        let networks = std::sync::OnceLock::new();
        if let Some(n) = cfg.networks.clone() {
            n.reconcile(&running.iter().cloned().collect());
            let _ = networks.set(n);
        }
        let this = Arc::new_cyclic(|me| Containers {
            cfg,
            images,
            volumes,
            on_event,
            inner: Mutex::new(inner),
            cond: Condvar::new(),
            save_lock: Mutex::new(()),
            me: me.clone(),
            networks,
            warm: Arc::default(),
        });
        for id in running {
            match UnixStream::connect(this.control_socket(&id)) {
                Ok(stream) => {
                    this.spawn_watcher(id.clone(), None, Watch::Socket(stream));
                    this.health_start(&id, true);
                }
                Err(_) => this.handle_exit(&id, true),
            }
        }
        // As dockerd's restore: a `--rm` container found not running is removed (its removal
        // was due, or its record is what a crash left), with its anonymous volumes.
        let leftovers: Vec<String> = this
            .lock()
            .containers
            .values()
            .filter(|c| {
                c.options.host.auto_remove
                    && !matches!(
                        c.state.status,
                        Status::Running | Status::Paused | Status::Restarting
                    )
            })
            .map(|c| c.id.clone())
            .collect();
        for id in leftovers {
            if let Err(e) = this.remove_with_volumes(&id, true, true) {
                tracing::warn!(%id, "removing a --rm container left by the last run: {e}");
            }
        }
        this.volumes.unmount_unused();
        this.restart_on_boot();
        Ok(this)
    }

    /// The volume store of this data root (`<data-root>/volumes`).
    pub fn volumes(&self) -> &Arc<Volumes> {
        &self.volumes
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The static init binary (`barge-init`) bind-mounted as `/sbin/docker-init` for
    /// `--init` ([`RuntimeConfig::init_path`]).
    pub fn init_path(&self) -> &std::path::Path {
        &self.cfg.init_path
    }

    /// The engine's networking, if attached.
    pub fn networks(&self) -> Option<&Arc<barge_network::Networks>> {
        self.networks.get()
    }

    fn teardown_network(&self, id: &str) {
        if let Some(n) = self.networks.get() {
            n.teardown(id);
        }
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.cfg.data_root.join("containers").join(id)
    }
    /// Runtime state of a container: `<exec-root>/c/<short id>`. Short, because the Unix
    /// sockets inside must fit `sun_path` (108 bytes) whatever the exec root is.
    fn state_dir(&self, id: &str) -> PathBuf {
        self.cfg.exec_root.join("c").join(&id[..id.len().min(16)])
    }
    pub(crate) fn exec_dir(&self, exec_id: &str) -> PathBuf {
        self.cfg
            .exec_root
            .join("e")
            .join(&exec_id[..exec_id.len().min(16)])
    }
    fn control_socket(&self, id: &str) -> PathBuf {
        self.state_dir(id).join("control.sock")
    }
    fn runtime_path(&self, name: &str) -> Result<PathBuf, ContainerError> {
        self.cfg
            .runtimes
            .get(name)
            .cloned()
            .ok_or_else(|| ContainerError::InvalidOption {
                field: "runtime".into(),
                reason: format!("unknown or invalid runtime name: {name}"),
            })
    }
    fn runtime_args(&self, name: &str) -> Vec<String> {
        self.cfg.runtime_args.get(name).cloned().unwrap_or_default()
    }
    fn runtime_root(&self, name: &str) -> PathBuf {
        self.cfg.exec_root.join("runtime").join(name)
    }

    /// Writes container `id`'s current record (temp file, fsync, rename) with the engine lock
    /// released: call it after changing the record in memory and dropping the lock. Writes are
    /// serialised and each writes the latest state, so the file ends up matching memory
    /// whatever the order of concurrent changes. A removed container is not written.
    pub(crate) fn persist(&self, id: &str) -> Result<(), ContainerError> {
        let _w = self.save_lock.lock().unwrap_or_else(|e| e.into_inner());
        let Some(c) = self.lock().containers.get(id).cloned() else {
            return Ok(());
        };
        self.save(&c)
    }

    /// Writes `container.json` durably. Every failure is logged here (the record on disk is
    /// then stale); callers return it where they can.
    ///
    /// A `--rm` container's record is written atomically but without fsyncs: after a machine
    /// crash such a container is removed at the engine's start anyway (as dockerd's restore
    /// does, see [`Containers::open`]), so durability would only add four fsyncs to every
    /// `run --rm`.
    pub(crate) fn save(&self, c: &Container) -> Result<(), ContainerError> {
        let data = serde_json::to_vec_pretty(c).expect("container serializes");
        let path = self.container_dir(&c.id).join("container.json");
        let r = if c.options.host.auto_remove {
            barge_stdx::fs::write_replace(&path, &data)
                .map_err(io_err(format!("write {}", path.display())))
        } else {
            write_atomic(&path, &data)
        };
        if let Err(e) = &r {
            tracing::error!(id = %c.id, "container record not saved: {e}");
        }
        r
    }

    /// [`Containers::persist`] where no caller can take the error (exit handling, health
    /// results, restarts): logged by `save`, and shown in the container's `State.Error`
    /// (inspect) so the stale record does not go unnoticed.
    pub(crate) fn persist_or_flag(&self, id: &str) {
        if let Err(e) = self.persist(id) {
            if let Some(rec) = self.lock().containers.get_mut(id) {
                rec.state.error = format!("container record not saved: {e}");
            }
        }
    }

    pub(crate) fn find_id(inner: &Inner, name_or_id: &str) -> Result<String, ContainerError> {
        let key = name_or_id.strip_prefix('/').unwrap_or(name_or_id);
        if key.is_empty() {
            return Err(ContainerError::NotFound(name_or_id.to_string()));
        }
        if inner.containers.contains_key(key) {
            return Ok(key.to_string());
        }
        if let Some(c) = inner.containers.values().find(|c| c.name == key) {
            return Ok(c.id.clone());
        }
        let matches: Vec<&String> = inner
            .containers
            .keys()
            .filter(|id| id.starts_with(key))
            .collect();
        match matches.len() {
            1 => Ok(matches[0].clone()),
            0 => Err(ContainerError::NotFound(name_or_id.to_string())),
            _ => Err(ContainerError::InvalidOption {
                field: "container".into(),
                reason: format!("multiple IDs found with provided prefix: {name_or_id}"),
            }),
        }
    }

    /// All containers, newest first.
    pub fn list(&self) -> Vec<Container> {
        let mut v: Vec<Container> = self.lock().containers.values().cloned().collect();
        v.sort_by(|a, b| b.created.cmp(&a.created));
        v
    }

    /// Looks up by full ID, name (with or without `/`), or unique ID prefix.
    pub fn get(&self, name_or_id: &str) -> Result<Container, ContainerError> {
        let inner = self.lock();
        let id = Self::find_id(&inner, name_or_id)?;
        Ok(inner.containers[&id].clone())
    }

    /// Where a running container's streams are served. 409 if not running.
    pub fn attach_point(&self, id: &str) -> Result<AttachPoint, ContainerError> {
        let c = self.get(id)?;
        if !matches!(c.state.status, Status::Running | Status::Paused) {
            return Err(ContainerError::NotRunning(c.id));
        }
        Ok(AttachPoint {
            socket: self.state_dir(&c.id).join("attach.sock"),
            tty: c.options.tty,
        })
    }

    fn control(socket: &Path, line: &str) -> Result<(), ContainerError> {
        let mut s =
            UnixStream::connect(socket).map_err(io_err(format!("connect {}", socket.display())))?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        s.write_all(line.as_bytes())
            .map_err(io_err("write control command"))?;
        let mut buf = [0u8; 16];
        let _ = s.read(&mut buf);
        Ok(())
    }

    /// Resizes the container's TTY (rows, columns).
    pub fn resize(&self, id: &str, height: u16, width: u16) -> Result<(), ContainerError> {
        let c = self.get(id)?;
        if c.state.status != Status::Running {
            return Err(ContainerError::NotRunning(c.id));
        }
        Self::control(
            &self.control_socket(&c.id),
            &format!("resize {height} {width}\n"),
        )
    }

    /// `ps` output for the container's processes: (titles, rows), like Docker's `/top`.
    pub fn top(
        &self,
        id: &str,
        ps_args: &str,
    ) -> Result<(Vec<String>, Vec<Vec<String>>), ContainerError> {
        let c = self.get(id)?;
        if c.state.status != Status::Running {
            return Err(ContainerError::NotRunning(c.id));
        }
        let mut pids = cgroup_procs(&c.cgroup_path());
        if pids.is_empty() {
            pids.push(c.state.pid);
        }
        let args: Vec<&str> = if ps_args.trim().is_empty() {
            vec!["-ef"]
        } else {
            ps_args.split_whitespace().collect()
        };
        let out = Command::new("ps")
            .args(&args)
            .output()
            .map_err(io_err("run ps"))?;
        if !out.status.success() {
            return Err(ContainerError::InvalidOption {
                field: "ps_args".into(),
                reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let titles: Vec<String> = lines
            .next()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let pid_idx = titles.iter().position(|t| t == "PID").ok_or_else(|| {
            ContainerError::InvalidOption {
                field: "ps_args".into(),
                reason: "Couldn't find PID field in ps output".into(),
            }
        })?;
        let mut rows = Vec::new();
        for line in lines {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < titles.len() {
                continue;
            }
            let Ok(pid) = fields[pid_idx].parse::<i64>() else {
                continue;
            };
            if !pids.contains(&pid) {
                continue;
            }
            let mut row: Vec<String> = fields[..titles.len() - 1]
                .iter()
                .map(|s| s.to_string())
                .collect();
            row.push(fields[titles.len() - 1..].join(" "));
            rows.push(row);
        }
        Ok((titles, rows))
    }

    /// Image IDs used by any container (for `rmi` / prune), with one container ID each.
    pub fn images_in_use(&self) -> HashMap<String, String> {
        self.lock()
            .containers
            .values()
            .map(|c| (c.image_id.clone(), c.id.clone()))
            .collect()
    }
}

enum Watch {
    Child(Child),
    Socket(UnixStream),
}
