//! The container manager: records, lifecycle, exec.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use barge_image::ImageStore;

use crate::monitor::{ExitRecord, LogConfig, MonitorConfig};
use crate::mounts::{self, MountPoint, MountSpec, MountType, SpecMount};
use crate::spec::{self, SpecInput};
use crate::volumes::{VolumeCreate, VolumeError, Volumes, ANONYMOUS_LABEL};
use crate::*;

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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

/// Replaces a record durably ([`barge_fsutil::write_atomic`]: temp file, fsync, rename, fsync
/// of the directory).
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ContainerError> {
    barge_fsutil::write_atomic(path, data).map_err(io_err(format!("write {}", path.display())))
}

/// Docker's container name rule.
fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

const ADJECTIVES: &[&str] = &[
    "admiring",
    "agitated",
    "amazing",
    "angry",
    "awesome",
    "blissful",
    "bold",
    "boring",
    "brave",
    "busy",
    "charming",
    "clever",
    "compassionate",
    "confident",
    "cool",
    "cranky",
    "crazy",
    "dazzling",
    "determined",
    "distracted",
    "dreamy",
    "eager",
    "ecstatic",
    "elastic",
    "elated",
    "elegant",
    "epic",
    "festive",
    "focused",
    "friendly",
    "frosty",
    "funny",
    "gallant",
    "gifted",
    "goofy",
    "gracious",
    "happy",
    "hopeful",
    "hungry",
    "infallible",
    "inspiring",
    "jolly",
    "jovial",
    "keen",
    "kind",
    "laughing",
    "loving",
    "lucid",
    "magical",
    "modest",
    "musing",
    "mystifying",
    "naughty",
    "nervous",
    "nice",
    "nifty",
    "nostalgic",
    "objective",
    "optimistic",
    "peaceful",
    "pedantic",
    "pensive",
    "practical",
    "priceless",
    "quirky",
    "quizzical",
    "relaxed",
    "reverent",
    "romantic",
    "sad",
    "serene",
    "sharp",
    "silly",
    "sleepy",
    "stoic",
    "strange",
    "stupefied",
    "suspicious",
    "sweet",
    "tender",
    "thirsty",
    "trusting",
    "upbeat",
    "vibrant",
    "vigilant",
    "vigorous",
    "wizardly",
    "wonderful",
    "xenodochial",
    "youthful",
    "zealous",
    "zen",
];
const SURNAMES: &[&str] = &[
    "albattani",
    "allen",
    "almeida",
    "archimedes",
    "ardinghelli",
    "babbage",
    "banach",
    "bardeen",
    "bartik",
    "bell",
    "bhabha",
    "blackwell",
    "bohr",
    "booth",
    "borg",
    "bose",
    "brahmagupta",
    "brattain",
    "brown",
    "carson",
    "cerf",
    "chandrasekhar",
    "chatelet",
    "clarke",
    "cohen",
    "curie",
    "darwin",
    "davinci",
    "dijkstra",
    "dirac",
    "einstein",
    "elion",
    "engelbart",
    "euclid",
    "euler",
    "fermat",
    "fermi",
    "feynman",
    "franklin",
    "galileo",
    "gates",
    "goldberg",
    "goodall",
    "hamilton",
    "hawking",
    "heisenberg",
    "hermann",
    "hopper",
    "hypatia",
    "jackson",
    "jennings",
    "jepsen",
    "johnson",
    "kalam",
    "kapitsa",
    "keller",
    "kepler",
    "khorana",
    "knuth",
    "kowalevski",
    "lalande",
    "lamarr",
    "lamport",
    "leakey",
    "lederberg",
    "liskov",
    "lovelace",
    "lumiere",
    "mahavira",
    "mayer",
    "mccarthy",
    "mclean",
    "meitner",
    "mendel",
    "mirzakhani",
    "morse",
    "napier",
    "newton",
    "nobel",
    "noether",
    "pare",
    "pascal",
    "pasteur",
    "payne",
    "perlman",
    "pike",
    "poincare",
    "ptolemy",
    "raman",
    "ramanujan",
    "ride",
    "ritchie",
    "rosalind",
    "sammet",
    "shannon",
    "shockley",
    "sinoussi",
    "stonebraker",
    "swanson",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "varahamihira",
    "visvesvaraya",
    "wescoff",
    "wiles",
    "williams",
    "wilson",
    "wing",
    "wozniak",
    "wright",
    "yalow",
    "yonath",
];

fn generate_name(attempt: usize) -> String {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("getrandom");
    let a = ADJECTIVES[(b[0] as usize | (b[1] as usize) << 8) % ADJECTIVES.len()];
    let s = SURNAMES[(b[2] as usize | (b[3] as usize) << 8) % SURNAMES.len()];
    if a == "boring" && s == "wozniak" {
        return generate_name(attempt);
    }
    if attempt > 0 {
        format!("{a}_{s}{}", b[3] % 10)
    } else {
        format!("{a}_{s}")
    }
}

/// Merges the image config with the create options (Docker's rules).
pub(crate) fn resolve_config(
    id: &str,
    image: &barge_image::ContainerConfig,
    opts: &CreateOptions,
) -> Result<ResolvedConfig, ContainerError> {
    let (entrypoint, cmd) = match &opts.entrypoint {
        Some(ep) => (
            if ep.is_empty() {
                None
            } else {
                Some(ep.clone())
            },
            opts.cmd.clone(),
        ),
        None => (
            image.entrypoint.clone().filter(|e| !e.is_empty()),
            opts.cmd.clone().or_else(|| image.cmd.clone()),
        ),
    };
    let mut argv: Vec<String> = entrypoint.clone().unwrap_or_default();
    argv.extend(cmd.clone().unwrap_or_default());
    if argv.is_empty() {
        return Err(ContainerError::InvalidOption {
            field: "cmd".into(),
            reason: "no command specified".into(),
        });
    }
    let mut env: Vec<String> = image.env.clone().unwrap_or_default();
    for e in &opts.env {
        let key = e.split('=').next().unwrap_or(e);
        if let Some(pos) = env.iter().position(|x| x.split('=').next() == Some(key)) {
            env[pos] = e.clone();
        } else {
            env.push(e.clone());
        }
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    let working_dir = opts
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".to_string());
    if !working_dir.starts_with('/') {
        return Err(ContainerError::InvalidOption {
            field: "working dir".into(),
            reason: format!(
                "the working directory '{working_dir}' is invalid, it needs to be an absolute path"
            ),
        });
    }
    let mut labels = image.labels.clone().unwrap_or_default();
    labels.extend(opts.labels.clone());
    Ok(ResolvedConfig {
        path: argv[0].clone(),
        args: argv[1..].to_vec(),
        entrypoint,
        cmd,
        env,
        working_dir,
        user: opts
            .user
            .clone()
            .or_else(|| image.user.clone())
            .unwrap_or_default(),
        hostname: opts
            .hostname
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| id[..12].to_string()),
        labels,
        exposed_ports: {
            let mut ports: Vec<String> = image
                .exposed_ports
                .as_ref()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            for p in &opts.exposed_ports {
                let p = if p.contains('/') {
                    p.clone()
                } else {
                    format!("{p}/tcp")
                };
                if !ports.contains(&p) {
                    ports.push(p);
                }
            }
            ports
        },
        stop_signal: opts
            .stop_signal
            .clone()
            .or_else(|| image.stop_signal.clone())
            .unwrap_or_else(|| "SIGTERM".into()),
        healthcheck: crate::health::merge(image.healthcheck.as_ref(), opts.healthcheck.as_ref()),
        volumes: {
            let mut v: Vec<String> = image
                .volumes
                .as_ref()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            v.extend(opts.volumes.iter().cloned());
            v.sort();
            v.dedup();
            v
        },
    })
}

/// Parses a signal name (`SIGKILL`, `KILL`, `kill`) or number.
pub(crate) fn parse_signal(s: &str) -> Result<i32, ContainerError> {
    let bad = || ContainerError::InvalidOption {
        field: "signal".into(),
        reason: format!("invalid signal: {s}"),
    };
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "STKFLT" => libc::SIGSTKFLT,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => {
            if let Some(rest) = name.strip_prefix("RTMIN+") {
                libc::SIGRTMIN() + rest.parse::<i32>().map_err(|_| bad())?
            } else if let Some(rest) = name.strip_prefix("RTMAX-") {
                libc::SIGRTMAX() - rest.parse::<i32>().map_err(|_| bad())?
            } else {
                return Err(bad());
            }
        }
    };
    Ok(n)
}

use crate::mountinfo::is_mounted;

fn unmount(path: &Path) {
    if is_mounted(path) && nix::mount::umount2(path, nix::mount::MntFlags::empty()).is_err() {
        let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
    }
}

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

/// The container's memory cgroup directory (cgroup v1 memory controller, else v2).
fn memory_cgroup(id: &str) -> PathBuf {
    let v1 = Path::new("/sys/fs/cgroup/memory");
    if v1.is_dir() {
        v1.join("barge").join(id)
    } else {
        Path::new("/sys/fs/cgroup/barge").join(id)
    }
}

/// Signals `pid` only if it is a process of container `id` (in its cgroup `/barge/<id>`),
/// through a pidfd opened before the check: the signal can only reach the process that was
/// checked, never one that took its pid meanwhile. `ESRCH` otherwise.
fn signal_verified(id: &str, pid: i64, sig: i32) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let gone = || std::io::Error::from_raw_os_error(libc::ESRCH);
    if pid <= 0 {
        return Err(gone());
    }
    // SAFETY: pidfd_open(pid, 0) returns a new fd or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by pidfd_open and is owned by nobody else.
    let pidfd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as libc::c_int) };
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let ours = format!("/barge/{id}");
    if !cgroup
        .lines()
        .any(|l| l.split(':').nth(2).is_some_and(|p| p.trim_end() == ours))
    {
        return Err(gone());
    }
    // SAFETY: pidfd_send_signal(pidfd, sig, info = NULL, flags = 0) on a pidfd we own.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn cgroup_procs(id: &str) -> Vec<i64> {
    let candidates = [
        Path::new("/sys/fs/cgroup/pids/barge")
            .join(id)
            .join("cgroup.procs"),
        Path::new("/sys/fs/cgroup/memory/barge")
            .join(id)
            .join("cgroup.procs"),
        Path::new("/sys/fs/cgroup/barge")
            .join(id)
            .join("cgroup.procs"),
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
    pub(crate) fn save(&self, c: &Container) -> Result<(), ContainerError> {
        let data = serde_json::to_vec_pretty(c).expect("container serializes");
        let r = write_atomic(&self.container_dir(&c.id).join("container.json"), &data);
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

    /// Creates a container (does not start it). Errors: image not found (404), name in use (409),
    /// bad options (400).
    pub fn create(&self, mut opts: CreateOptions) -> Result<Container, ContainerError> {
        let cgroup_v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        spec::check_host_options(&mut opts.host, cgroup_v2, online_cpus())?;
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
    fn release_volumes(&self, c: &Container, remove_anonymous: bool) {
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
                            let image_dir = mounts::resolve_in_root(rootfs, &m.destination);
                            mounts::copy_up(&image_dir, &mp).map_err(|e| {
                                format!(
                                    "copying image data from {} to volume {}: {e}",
                                    m.destination, m.name
                                )
                            })?;
                        }
                        mp
                    } else {
                        let p = mounts::resolve_in_root(&mp, &m.subpath);
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
    fn mount_rootfs(&self, c: &Container) -> Result<(), ContainerError> {
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
        if layers.is_empty() {
            let empty = dir.join("empty");
            std::fs::create_dir_all(&empty).map_err(io_err("create empty lower"))?;
            layers.push(empty);
        }
        layers.reverse();
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

    fn unmount_volumes(&self, c: &Container) {
        for m in c.mounts.iter().filter(|m| m.kind == MountType::Volume) {
            self.volumes.unmount(&m.name, &c.id);
        }
    }

    fn clean_runtime_state(&self, c: &Container) {
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
    fn run_monitor(
        &self,
        mcfg: &MonitorConfig,
        config_path: &Path,
        on_ready: &mut dyn FnMut(&AttachPoint),
        mut gate: Option<&mut dyn FnMut() -> Result<(), String>>,
    ) -> Result<(Child, i64), (Option<Child>, String)> {
        let data = serde_json::to_vec(mcfg).expect("monitor config serializes");
        if let Err(e) = write_atomic(config_path, &data) {
            return Err((None, e.to_string()));
        }
        let log = std::fs::File::create(mcfg.state_dir.join("monitor.log")).ok();
        let mut cmd = Command::new(&self.cfg.self_exe);
        cmd.arg("monitor")
            .arg(config_path)
            .stdin(if mcfg.start_gate {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped());
        cmd.stderr(match log {
            Some(f) => Stdio::from(f),
            None => Stdio::null(),
        });
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Err((
                    None,
                    format!("spawn monitor {}: {e}", self.cfg.self_exe.display()),
                ))
            }
        };
        let stdout = child.stdout.take().expect("piped stdout");
        let mut gate_pipe = child.stdin.take();
        let mut lines = BufReader::new(stdout).lines();
        let attach = AttachPoint {
            socket: mcfg.attach_socket.clone(),
            tty: mcfg.tty,
        };
        loop {
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
                    return Ok((child, pid));
                }
                Some(Ok(line)) if line.starts_with("failed ") => {
                    let msg = serde_json::from_str::<String>(&line["failed ".len()..])
                        .unwrap_or_else(|_| line["failed ".len()..].to_string());
                    return Err((Some(child), msg));
                }
                Some(Ok(_)) => continue,
                _ => {
                    let log = std::fs::read_to_string(mcfg.state_dir.join("monitor.log"))
                        .unwrap_or_default();
                    return Err((
                        Some(child),
                        format!("monitor exited unexpectedly: {}", log.trim()),
                    ));
                }
            }
        }
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
        unmount(&self.container_dir(&c.id).join("rootfs"));
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
        crate::resources::prewarm_migration();
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
        let embedded_dns = match (&sandbox, self.networks.get()) {
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
                    crate::net::hosts_file(&hostname, sandbox.as_ref(), &extra_hosts)
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
            None => sandbox.as_ref().map(|sb| sb.netns.clone()),
        };
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
            swap_supported: Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
                || !Path::new("/sys/fs/cgroup/memory").is_dir(),
        };
        let spec = spec::build_spec(&input)?;
        let spec_json = serde_json::to_vec_pretty(&spec).expect("spec serializes");
        write_atomic(&dir.join("config.json"), &spec_json)?;

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
            memory_cgroup: Some(memory_cgroup(&c.id)),
            loopback_up: host.network_mode != "host"
                && !host.network_mode.starts_with("container:")
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

    fn spawn_watcher(&self, id: String, exec_id: Option<String>, watch: Watch) {
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

    fn read_exit(dir: &Path) -> Option<ExitRecord> {
        serde_json::from_slice(&std::fs::read(dir.join("exit.json")).ok()?).ok()
    }

    /// The monitor of container `id` exited: record the exit and notify.
    fn handle_exit(&self, id: &str, reconciling: bool) {
        let state_dir = self.state_dir(id);
        let rec = Self::read_exit(&state_dir);
        match self.networks.get() {
            // The veth pairs of a container that just exited are deleted in the background
            // (kernel grace periods); reconciliation is synchronous, as its callers expect.
            Some(n) if !reconciling => n.release(id),
            _ => self.teardown_network(id),
        }
        if self.lock().fs_users.get(id).copied().unwrap_or(0) == 0 {
            unmount(&self.container_dir(id).join("rootfs"));
        }
        let mut inner = self.lock();
        let Some(c) = inner.containers.get_mut(id) else {
            return;
        };
        for m in c.mounts.iter().filter(|m| m.kind == MountType::Volume) {
            self.volumes.unmount(&m.name, id);
        }
        if !matches!(c.state.status, Status::Running | Status::Paused) && !reconciling {
            return;
        }
        match &rec {
            Some(r) => {
                c.state.status = Status::Exited;
                c.state.exit_code = r.exit_code;
                c.state.oom_killed = r.oom_killed;
                c.state.finished_at = r.finished_at.clone();
                if !r.error.is_empty() {
                    c.state.error = r.error.clone();
                }
            }
            None => {
                c.state.status = if reconciling {
                    Status::Dead
                } else {
                    Status::Exited
                };
                c.state.exit_code = 255;
                c.state.finished_at = now_rfc3339();
            }
        }
        if reconciling && rec.is_some() {
            c.state.status = Status::Exited;
        }
        c.state.pid = 0;
        let mut c = c.clone();
        // Hooks: retire the health prober; the restart policy may turn this exit into
        // `restarting` (restart.rs).
        Self::health_stop(&mut inner, id);
        let restart = Self::restart_decision(&mut inner, &mut c);
        inner.containers.insert(id.to_string(), c.clone());
        *inner.exits.entry(id.to_string()).or_default() += 1;
        for e in inner
            .execs
            .values_mut()
            .filter(|e| e.container_id == id && e.running)
        {
            e.running = false;
        }
        drop(inner);
        self.persist_or_flag(id);
        // Runtime leftovers (normally removed by the monitor).
        self.clean_runtime_state(&c);
        (self.on_event)(ContainerEvent::Died {
            id: id.to_string(),
            exit_code: c.state.exit_code,
            oom_killed: c.state.oom_killed,
        });
        self.changed(id);
        if let Some(delay) = restart {
            self.schedule_restart(id, delay);
        }
    }

    fn handle_exec_exit(&self, id: &str, exec_id: &str) {
        let rec = Self::read_exit(&self.exec_dir(exec_id));
        let code = rec.map(|r| r.exit_code).unwrap_or(255);
        let mut inner = self.lock();
        if let Some(e) = inner.execs.get_mut(exec_id) {
            e.running = false;
            e.exit_code = Some(code);
        }
        drop(inner);
        let _ = std::fs::remove_dir_all(self.exec_dir(exec_id));
        (self.on_event)(ContainerEvent::ExecDied {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            exit_code: code,
        });
        self.exec_changed(exec_id);
    }

    /// Waits up to `timeout` for the container to stop running; true if it did.
    fn wait_stopped(&self, id: &str, timeout: Option<Duration>) -> bool {
        // A deadline beyond what an `Instant` holds means no deadline (never a panic).
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut inner = self.lock();
        loop {
            match inner.containers.get(id) {
                Some(c) if matches!(c.state.status, Status::Running | Status::Paused) => {}
                _ => return true,
            }
            match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    inner = self
                        .cond
                        .wait_timeout(inner, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                None => inner = self.cond.wait(inner).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }

    /// Sends `sig` to the container's main process through its monitor's control socket (the
    /// monitor signals it through a pidfd, and never after reaping it), so a signal can never
    /// reach an unrelated process that reused a stored pid. A monitor that does not answer
    /// (busy, stopped, or from an older barge without `kill`) is bypassed: the recorded pid is
    /// opened as a pidfd and signalled only if that process is in the container's cgroup.
    /// `ESRCH` when the process or its monitor is gone.
    fn signal_container(&self, c: &Container, sig: i32) -> std::io::Result<()> {
        match Self::signal_via(&self.control_socket(&c.id), sig) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                tracing::warn!(id = %c.id, "monitor did not answer a signal request: {e}");
                signal_verified(&c.id, c.state.pid, sig)
            }
            r => r,
        }
    }

    /// `kill <sig>` on a monitor's control socket; its `err <errno>` answer as an error.
    pub(crate) fn signal_via(socket: &Path, sig: i32) -> std::io::Result<()> {
        // No socket, or a monitor on its way out: the process is gone.
        let gone = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound
            | std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe => std::io::Error::from_raw_os_error(libc::ESRCH),
            _ => e,
        };
        let mut s = UnixStream::connect(socket).map_err(gone)?;
        // A monitor that does not answer in time skips the request once it sees it was
        // abandoned (the connection closed), so a timeout means "not sent".
        s.set_read_timeout(Some(Duration::from_secs(3))).ok();
        s.write_all(format!("kill {sig}\n").as_bytes())
            .map_err(gone)?;
        let mut reply = Vec::new();
        let mut b = [0u8; 1];
        while reply.len() < 64 {
            match s.read(&mut b) {
                Ok(0) => break,
                Ok(_) if b[0] == b'\n' => break,
                Ok(_) => reply.push(b[0]),
                Err(e) => return Err(gone(e)),
            }
        }
        let reply = String::from_utf8_lossy(&reply);
        match reply.trim() {
            "ok" => Ok(()),
            // EOF without an answer: the monitor is exiting, the process is gone.
            "" => Err(std::io::Error::from_raw_os_error(libc::ESRCH)),
            r => match r.strip_prefix("err ").and_then(|n| n.parse::<i32>().ok()) {
                Some(errno) => Err(std::io::Error::from_raw_os_error(errno)),
                None => Err(std::io::Error::other(format!("monitor: {r}"))),
            },
        }
    }

    /// Sends the stop signal (the container's, or `signal`), waits `timeout` seconds (the
    /// container's `stop_timeout`, default 10; -1 = forever), then SIGKILL. No error if not running.
    pub fn stop(
        &self,
        id: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<(), ContainerError> {
        let c = self.get(id)?;
        let sig = parse_signal(signal.unwrap_or(&c.config.stop_signal))?;
        if !self.mark_manually_stopped(&c.id) {
            return Ok(());
        }
        let timeout = timeout.or(c.options.stop_timeout).unwrap_or(10);
        if let Err(e) = self.signal_container(&c, sig) {
            tracing::debug!("stop {}: signal {sig}: {e}", c.id);
        }
        self.thaw_if_paused(&c);
        let t = if timeout < 0 {
            None
        } else {
            Some(Duration::from_secs(timeout as u64))
        };
        if self.wait_stopped(&c.id, t) {
            return Ok(());
        }
        if let Err(e) = self.signal_container(&c, libc::SIGKILL) {
            tracing::debug!("kill {}: {e}", c.id);
        }
        self.wait_stopped(&c.id, Some(Duration::from_secs(30)));
        Ok(())
    }

    /// The user stops the container (stop, kill with SIGKILL or the stop signal): no
    /// automatic restart until the next start; a pending restart is cancelled and the
    /// container left `exited`. Returns whether a process may still be running.
    fn mark_manually_stopped(&self, id: &str) -> bool {
        let mut inner = self.lock();
        Self::cancel_restart(&mut inner, id);
        let Some(c) = inner.containers.get_mut(id) else {
            return false;
        };
        let active = matches!(c.state.status, Status::Running | Status::Paused);
        if !active && c.state.status != Status::Restarting {
            return false;
        }
        c.has_been_manually_stopped = true;
        if c.state.status == Status::Restarting {
            c.state.status = Status::Exited;
        }
        drop(inner);
        self.persist_or_flag(id);
        self.changed(id);
        active
    }

    /// Sends `signal` (name like `SIGKILL`/`KILL` or number) to the main process. 409 if not
    /// running. SIGKILL and the stop signal count as a user's stop (restart policy) and thaw a
    /// paused container; killing a `restarting` container cancels the restart.
    pub fn kill(&self, id: &str, signal: &str) -> Result<(), ContainerError> {
        let c = self.get(id)?;
        let sig = parse_signal(if signal.is_empty() { "SIGKILL" } else { signal })?;
        let stopping =
            sig == libc::SIGKILL || parse_signal(&c.config.stop_signal).ok() == Some(sig);
        if c.state.status == Status::Restarting && stopping {
            self.mark_manually_stopped(&c.id);
            return Ok(());
        }
        if !matches!(c.state.status, Status::Running | Status::Paused) {
            return Err(ContainerError::NotRunning(c.id));
        }
        if stopping {
            self.mark_manually_stopped(&c.id);
        }
        self.signal_container(&c, sig).map_err(|e| {
            if e.raw_os_error() == Some(libc::ESRCH) {
                ContainerError::NotRunning(c.id.clone())
            } else {
                ContainerError::io(format!("kill container {}", c.id), e)
            }
        })?;
        if stopping {
            self.thaw_if_paused(&c);
        }
        Ok(())
    }

    /// Removes a container: 409 if running and not `force` (force kills it first). Unmounts its
    /// root, deletes its directory and runtime state, and drops its volume references (the
    /// volumes stay; see [`Containers::remove_with_volumes`]).
    pub fn remove(&self, id: &str, force: bool) -> Result<(), ContainerError> {
        self.remove_with_volumes(id, force, false)
    }

    /// [`Containers::remove`]; with `volumes` (Docker's `rm -v`, and `--rm`) also removes the
    /// container's anonymous volumes that no other container references.
    pub fn remove_with_volumes(
        &self,
        id: &str,
        force: bool,
        volumes: bool,
    ) -> Result<(), ContainerError> {
        let c = self.get(id)?;
        if c.state.status == Status::Restarting {
            if !force {
                return Err(ContainerError::RestartingRemove { name: c.name });
            }
            self.mark_manually_stopped(&c.id);
        }
        if matches!(c.state.status, Status::Running | Status::Paused)
            || self.lock().starting.contains(&c.id)
        {
            if !force {
                return Err(ContainerError::RunningRemove { name: c.name });
            }
            self.mark_manually_stopped(&c.id);
            if let Err(e) = self.signal_container(&c, libc::SIGKILL) {
                tracing::debug!("kill {}: {e}", c.id);
            }
            self.thaw_if_paused(&c);
            self.wait_stopped(&c.id, Some(Duration::from_secs(30)));
        }
        let c = self.get(&c.id)?;
        self.teardown_network(&c.id);
        unmount(&self.container_dir(&c.id).join("rootfs"));
        self.clean_runtime_state(&c);
        let _ = std::fs::remove_dir_all(self.state_dir(&c.id));
        let dir = self.container_dir(&c.id);
        std::fs::remove_dir_all(&dir)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(io_err(format!("remove {}", dir.display())))?;
        let mut inner = self.lock();
        inner.containers.remove(&c.id);
        Self::health_stop(&mut inner, &c.id);
        Self::cancel_restart(&mut inner, &c.id);
        inner.execs.retain(|_, e| e.container_id != c.id);
        inner.removed.insert(c.id.clone(), c.state.exit_code);
        drop(inner);
        self.release_volumes(&c, volumes);
        self.changed(&c.id);
        self.drop_orphan_exec_waiters();
        Ok(())
    }

    /// Connects a container to a network (Docker's `network connect`): a running container
    /// gets the endpoint now, and every container keeps it in its settings for later starts.
    /// Errors: network or container not found (404), already connected or a container without
    /// bridge networking (409/400).
    pub fn connect_network(
        &self,
        id: &str,
        req: barge_network::EndpointRequest,
    ) -> Result<(), ContainerError> {
        let nets = self
            .networks
            .get()
            .ok_or_else(|| ContainerError::InvalidOption {
                field: "network".into(),
                reason: "networking is not available".into(),
            })?;
        let c = self.get(id)?;
        let net = nets.get(&req.network)?;
        let host = &c.options.host;
        if matches!(
            crate::net::mode(host),
            crate::net::Mode::Host | crate::net::Mode::Container(_)
        ) {
            return Err(ContainerError::InvalidOption {
                field: "network".into(),
                reason: format!(
                    "container sharing network namespace with another container or host cannot be connected to any other network ({})",
                    host.network_mode
                ),
            });
        }
        let mut req = req;
        req.network = net.name.clone();
        let already = crate::net::primary_network(host).as_deref() == Some(net.name.as_str())
            && host.network_mode != "none"
            || host.endpoints.iter().any(|e| e.network == net.name);
        let running = matches!(c.state.status, Status::Running | Status::Paused);
        if running && host.network_mode != "none" {
            nets.connect(&c.id, &c.name, &req)?;
        } else if already {
            return Err(ContainerError::InvalidOption {
                field: "network".into(),
                reason: format!(
                    "endpoint with name {} already exists in network {}",
                    c.name, net.name
                ),
            });
        }
        let mut inner = self.lock();
        if let Some(rec) = inner.containers.get_mut(&c.id) {
            let h = &mut rec.options.host;
            if h.network_mode == "none" {
                h.network_mode = net.name.clone();
            }
            h.endpoints.retain(|e| e.network != net.name);
            h.endpoints.push(req);
        }
        drop(inner);
        self.persist(&c.id)
    }

    /// Disconnects a container from a network (Docker's `network disconnect`).
    pub fn disconnect_network(&self, id: &str, network: &str) -> Result<(), ContainerError> {
        let nets = self
            .networks
            .get()
            .ok_or_else(|| ContainerError::InvalidOption {
                field: "network".into(),
                reason: "networking is not available".into(),
            })?;
        let c = self.get(id)?;
        let net = nets.get(network)?;
        let host = &c.options.host;
        let connected = crate::net::primary_network(host).as_deref() == Some(net.name.as_str())
            || host.endpoints.iter().any(|e| e.network == net.name)
            || (net.name == "bridge" && matches!(host.network_mode.as_str(), "" | "default"));
        if !connected {
            return Err(ContainerError::InvalidOption {
                field: "network".into(),
                reason: format!(
                    "container {} is not connected to network {}",
                    c.name, net.name
                ),
            });
        }
        if c.state.status == Status::Running && nets.sandbox(&c.id).is_some() {
            nets.disconnect(&c.id, &net.id)?;
        }
        let mut inner = self.lock();
        if let Some(rec) = inner.containers.get_mut(&c.id) {
            let h = &mut rec.options.host;
            h.endpoints.retain(|e| e.network != net.name);
            if crate::net::primary_network(h).as_deref() == Some(net.name.as_str()) {
                h.network_mode = h
                    .endpoints
                    .first()
                    .map(|e| e.network.clone())
                    .unwrap_or_else(|| "none".into());
            }
        }
        drop(inner);
        self.persist(&c.id)
    }

    /// Names of the networks a container is (or will be, once started) connected to, in order.
    pub fn network_names(c: &Container) -> Vec<String> {
        match crate::net::mode(&c.options.host) {
            crate::net::Mode::Bridge(eps) => eps.into_iter().map(|e| e.network).collect(),
            crate::net::Mode::Host => vec!["host".into()],
            crate::net::Mode::None => vec!["none".into()],
            crate::net::Mode::Container(_) => Vec::new(),
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
        let mut pids = cgroup_procs(&c.id);
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

    /// Registers an exec instance in a running container.
    pub fn exec_create(&self, container: &str, opts: ExecOptions) -> Result<Exec, ContainerError> {
        let c = self.get(container)?;
        if c.state.status == Status::Paused {
            return Err(ContainerError::Paused(c.id));
        }
        if c.state.status != Status::Running {
            return Err(ContainerError::NotRunning(c.id));
        }
        if opts.cmd.is_empty() {
            return Err(ContainerError::InvalidOption {
                field: "cmd".into(),
                reason: "No exec command specified".into(),
            });
        }
        let exec = Exec {
            id: random_hex(32),
            container_id: c.id,
            options: opts,
            running: false,
            exit_code: None,
            pid: 0,
        };
        self.lock().execs.insert(exec.id.clone(), exec.clone());
        Ok(exec)
    }

    /// Starts an exec instance; like [`Containers::start`] for attach. With `detach` nothing attaches.
    pub fn exec_start(
        &self,
        exec_id: &str,
        detach: bool,
        expected_attaches: usize,
        on_ready: &mut dyn FnMut(&AttachPoint),
    ) -> Result<(), ContainerError> {
        let result = self.exec_start_inner(exec_id, detach, expected_attaches, on_ready);
        if let Err(err) = &result {
            // Whatever failed, a started exec ends with an exit code, so `exec_inspect` never
            // reports a finished exec without one.
            let mut inner = self.lock();
            if let Some(e) = inner.execs.get_mut(exec_id) {
                if e.pid == -1 && e.exit_code.is_none() {
                    e.running = false;
                    e.exit_code = Some(match err {
                        ContainerError::StartFailed { message } => {
                            crate::monitor::start_failure_exit_code(message)
                        }
                        _ => 126,
                    });
                }
            }
            drop(inner);
            self.exec_changed(exec_id);
        }
        result
    }

    fn exec_start_inner(
        &self,
        exec_id: &str,
        detach: bool,
        expected_attaches: usize,
        on_ready: &mut dyn FnMut(&AttachPoint),
    ) -> Result<(), ContainerError> {
        let exec = {
            let mut inner = self.lock();
            let e = inner
                .execs
                .get_mut(exec_id)
                .ok_or_else(|| ContainerError::ExecNotFound(exec_id.to_string()))?;
            if e.running || e.exit_code.is_some() || e.pid != 0 {
                return Err(ContainerError::InvalidOption {
                    field: "exec".into(),
                    reason: format!("exec {exec_id} has already been started"),
                });
            }
            e.pid = -1;
            e.clone()
        };
        let c = self.get(&exec.container_id)?;
        if c.state.status != Status::Running {
            return Err(ContainerError::NotRunning(c.id));
        }
        let o = &exec.options;
        let rootfs = self.container_dir(&c.id).join("rootfs");
        let user_str = o
            .user
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| c.config.user.clone());
        let user = spec::resolve_user(&rootfs, &user_str)
            .and_then(|mut u| {
                spec::add_groups(&rootfs, &mut u, &c.options.host.group_add)?;
                Ok(u)
            })
            .map_err(|message| ContainerError::StartFailed { message })?;
        let mut env = vec![format!("HOSTNAME={}", c.config.hostname)];
        if o.tty {
            env.push("TERM=xterm".into());
        }
        for e in c.config.env.iter().chain(o.env.iter()) {
            let key = e.split('=').next().unwrap_or(e);
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!("HOME={}", user.home));
        }
        let mut host = c.options.host.clone();
        host.privileged = host.privileged || o.privileged;
        let caps = spec::capabilities(&host)?;
        let cwd = o
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| c.config.working_dir.clone());
        let process = spec::exec_process(
            o.cmd.clone(),
            env,
            cwd,
            &user,
            o.tty,
            &caps,
            spec::security_no_new_privileges(&host.security_opt),
        );
        let dir = self.exec_dir(&exec.id);
        std::fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
        write_atomic(
            &dir.join("process.json"),
            &serde_json::to_vec(&process).expect("process serializes"),
        )?;
        let mcfg = MonitorConfig {
            id: c.id.clone(),
            exec_id: Some(exec.id.clone()),
            runtime: self.runtime_path(&c.runtime)?,
            runtime_args: self.runtime_args(&c.runtime),
            runtime_root: self.runtime_root(&c.runtime),
            bundle: self.container_dir(&c.id),
            process_json: Some(dir.join("process.json")),
            state_dir: dir.clone(),
            attach_socket: dir.join("attach.sock"),
            control_socket: dir.join("control.sock"),
            log: None,
            tty: o.tty,
            open_stdin: o.attach_stdin && !detach,
            stdin_once: true,
            expected_attaches: if detach { 0 } else { expected_attaches },
            memory_cgroup: None,
            loopback_up: false,
            init: false,
            in_process: false,
            start_gate: false,
            console_size: o.console_size.filter(|(h, w)| *h > 0 && *w > 0),
        };
        match self.run_monitor(&mcfg, &dir.join("monitor.json"), on_ready, None) {
            Ok((child, pid)) => {
                if let Some(e) = self.lock().execs.get_mut(&exec.id) {
                    e.running = true;
                    e.pid = pid;
                }
                self.spawn_watcher(c.id.clone(), Some(exec.id.clone()), Watch::Child(child));
                Ok(())
            }
            Err((child, message)) => {
                if let Some(mut ch) = child {
                    let _ = ch.wait();
                }
                if let Some(e) = self.lock().execs.get_mut(&exec.id) {
                    e.running = false;
                    e.exit_code = Some(crate::monitor::start_failure_exit_code(&message));
                }
                let _ = std::fs::remove_dir_all(&dir);
                self.exec_changed(&exec.id);
                Err(ContainerError::StartFailed { message })
            }
        }
    }

    /// Current state of an exec instance.
    pub fn exec_inspect(&self, exec_id: &str) -> Result<Exec, ContainerError> {
        let mut inner = self.lock();
        let e = inner
            .execs
            .get_mut(exec_id)
            .ok_or_else(|| ContainerError::ExecNotFound(exec_id.to_string()))?;
        if e.running {
            // The monitor writes exit.json before it closes the attach streams, and a client
            // usually asks right after its stream ended: do not wait for the watcher.
            if let Some(rec) = Self::read_exit(&self.exec_dir(exec_id)) {
                e.running = false;
                e.exit_code = Some(rec.exit_code);
            }
        }
        let mut e = e.clone();
        if e.pid < 0 {
            // Started but not running yet (or failing): report it as running until its exit
            // code is known, so clients polling for the exit code do not read a missing one.
            e.pid = 0;
            e.running = e.exit_code.is_none();
        }
        Ok(e)
    }

    /// Like [`Containers::exec_wait`] with a deadline: true if the exec exited by then.
    pub(crate) fn exec_wait_until(&self, exec_id: &str, deadline: Instant) -> bool {
        let mut inner = self.lock();
        loop {
            match inner.execs.get(exec_id) {
                None => return true,
                Some(e) if e.exit_code.is_some() => return true,
                Some(_) => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            inner = self
                .cond
                .wait_timeout(inner, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Drops an exec instance's record (health probes do not pile up).
    pub(crate) fn exec_forget(&self, exec_id: &str) {
        self.lock().execs.remove(exec_id);
    }

    /// Renames a container. 409 if the name is taken, 400 if invalid.
    pub fn rename(&self, id: &str, new_name: &str) -> Result<Container, ContainerError> {
        let n = new_name.strip_prefix('/').unwrap_or(new_name);
        if !valid_name(n) {
            return Err(ContainerError::InvalidName(n.to_string()));
        }
        let mut inner = self.lock();
        let id = Self::find_id(&inner, id)?;
        if let Some(other) = inner.containers.values().find(|c| c.name == n) {
            if other.id == id {
                return Err(ContainerError::InvalidOption {
                    field: "name".into(),
                    reason: "Renaming a container with the same name as its current name"
                        .to_string(),
                });
            }
            return Err(ContainerError::NameInUse {
                name: n.to_string(),
                id: other.id.clone(),
            });
        }
        let c = inner.containers.get_mut(&id).expect("found above");
        c.name = n.to_string();
        let c = c.clone();
        drop(inner);
        self.persist(&c.id)?;
        Ok(c)
    }

    /// Resizes an exec's TTY.
    pub fn exec_resize(
        &self,
        exec_id: &str,
        height: u16,
        width: u16,
    ) -> Result<(), ContainerError> {
        let e = self.exec_inspect(exec_id)?;
        if !e.running {
            return Err(ContainerError::NotRunning(e.container_id));
        }
        Self::control(
            &self.exec_dir(exec_id).join("control.sock"),
            &format!("resize {height} {width}\n"),
        )
    }
}

/// File system access: `cp`, `diff`, `export`, sizes, commit's inputs.
impl Containers {
    /// Runs `f` with the container's root mounted (mounting it if the container is not running
    /// and unmounting it afterwards unless the container started meanwhile).
    ///
    /// Only the overlay root is seen: a running container's bind mounts and volumes (and the
    /// `/etc/hosts`-like files barge bind-mounts) are not (docker shows them; a later concern).
    pub fn with_rootfs<T>(
        &self,
        id: &str,
        f: impl FnOnce(&Container, &Path) -> Result<T, ContainerError>,
    ) -> Result<T, ContainerError> {
        let c = {
            let mut inner = self.lock();
            let id = Self::find_id(&inner, id)?;
            *inner.fs_users.entry(id.clone()).or_default() += 1;
            inner.containers[&id].clone()
        };
        let result = self
            .mount_rootfs(&c)
            .and_then(|()| f(&c, &c.rootfs_path(self)));
        let mut inner = self.lock();
        let n = inner.fs_users.entry(c.id.clone()).or_default();
        *n = n.saturating_sub(1);
        if *n == 0 {
            inner.fs_users.remove(&c.id);
            let active = inner.starting.contains(&c.id)
                || inner.containers.get(&c.id).is_some_and(|x| {
                    matches!(
                        x.state.status,
                        Status::Running | Status::Paused | Status::Restarting
                    )
                });
            if !active {
                unmount(&self.container_dir(&c.id).join("rootfs"));
            }
        }
        result
    }

    fn not_found_in(c: &Container, e: fsops::FsError) -> ContainerError {
        match e {
            fsops::FsError::NotFound(p) => ContainerError::Fs(fsops::FsError::NotFound(format!(
                "{p} in container {}",
                c.name
            ))),
            e => e.into(),
        }
    }

    /// Normalizes `--link NAME[:ALIAS]` entries to `TARGET:ALIAS` (target by name) and checks
    /// them as dockerd's `registerLinks`: the target must exist, host networking has no links.
    fn check_links(&self, host: &mut HostOptions) -> Result<(), ContainerError> {
        if host.links.is_empty() {
            return Ok(());
        }
        if host.network_mode == "host" {
            return Err(ContainerError::BadHostConfig(
                "conflicting options: host type networking can't be used with links. This would result in undefined behavior".into(),
            ));
        }
        let mut out = Vec::new();
        for l in &host.links {
            let (name, alias) = match l.split_once(':') {
                Some((n, a)) => (n, a.rsplit('/').next().unwrap_or(a)),
                None => (l.as_str(), l.trim_start_matches('/')),
            };
            let name = name.trim_start_matches('/');
            let target = self
                .get(name)
                .map_err(|_| ContainerError::LinkNotFound(name.to_string()))?;
            let alias = if alias.is_empty() {
                target.name.as_str()
            } else {
                alias
            };
            out.push(format!("{}:{alias}", target.name));
        }
        host.links = out;
        Ok(())
    }

    /// The running targets of `c`'s legacy links, with their default-bridge addresses.
    /// Errors as dockerd: `Cannot link to a non running container: /T AS /C/ALIAS`.
    fn link_targets(
        &self,
        c: &Container,
    ) -> Result<Vec<(Container, String, std::net::Ipv4Addr)>, ContainerError> {
        let mut out = Vec::new();
        for l in &c.options.host.links {
            let (name, alias) = l.split_once(':').unwrap_or((l.as_str(), l.as_str()));
            let t = self
                .get(name)
                .map_err(|_| ContainerError::LinkNotFound(name.to_string()))?;
            let ip = (t.state.status == Status::Running)
                .then(|| self.networks.get().and_then(|n| n.sandbox(&t.id)))
                .flatten()
                .and_then(|sb| {
                    sb.endpoints
                        .iter()
                        .find(|e| e.network_name == "bridge")
                        .map(|e| e.ip)
                });
            let Some(ip) = ip else {
                return Err(ContainerError::BadHostConfig(format!(
                    "Cannot link to a non running container: /{} AS /{}/{alias}",
                    t.name, c.name
                )));
            };
            out.push((t, alias.to_string(), ip));
        }
        Ok(out)
    }

    /// Removes the legacy link `/PARENT/ALIAS` (`DELETE /containers/PARENT/ALIAS?link=1`).
    pub fn remove_link(&self, parent: &str, alias: &str) -> Result<(), ContainerError> {
        let mut inner = self.lock();
        let id = Self::find_id(&inner, parent)?;
        let c = inner.containers.get_mut(&id).expect("found above");
        let before = c.options.host.links.len();
        c.options
            .host
            .links
            .retain(|l| l.split_once(':').map(|x| x.1) != Some(alias));
        if c.options.host.links.len() == before {
            return Err(ContainerError::NotFound(format!("/{}/{alias}", c.name)));
        }
        let c = c.clone();
        self.save(&c)
    }

    /// The volume or bind mount of `c` holding container path `abs` (cleaned, absolute): the
    /// one with the deepest destination.
    fn mount_holding<'a>(c: &'a Container, abs: &str) -> Option<&'a MountPoint> {
        c.mounts
            .iter()
            .filter(|m| matches!(m.kind, MountType::Volume | MountType::Bind))
            .filter(|m| !m.source.as_os_str().is_empty())
            .filter(|m| {
                let d = m.destination.trim_end_matches('/');
                abs == d || d.is_empty() || abs.starts_with(&format!("{d}/"))
            })
            .max_by_key(|m| m.destination.trim_end_matches('/').len())
    }

    /// Where `cp`'s operations see container path `path`, as dockerd (which works in the
    /// container's mount namespace, its volumes mounted): `(root, path in root, name)`.
    /// A running container is seen through `/proc/<pid>/root` (volumes, binds and tmpfs
    /// mounts included); for a stopped one a path inside a volume or bind mount is looked up
    /// in that mount's source, else in the overlay root. `name` is the base name to report
    /// when the path is a mount's root (its host base name, `_data`, is not the container's).
    fn fs_view(c: &Container, overlay: &Path, path: &str) -> (PathBuf, String, Option<String>) {
        let running = matches!(c.state.status, Status::Running | Status::Paused) && c.state.pid > 0;
        if running {
            // `root/.`: the directory the magic link leads to, not the link itself.
            let proc_root = PathBuf::from(format!("/proc/{}/root/.", c.state.pid));
            if proc_root.is_dir() {
                return (proc_root, path.to_string(), None);
            }
        }
        let abs = fsops::clean(&format!("/{path}"));
        let Some(m) = Self::mount_holding(c, &abs) else {
            return (overlay.to_path_buf(), path.to_string(), None);
        };
        let mut src = m.source.clone();
        if !m.subpath.is_empty() {
            src = src.join(m.subpath.trim_start_matches('/'));
        }
        let d = m.destination.trim_end_matches('/');
        let mut rest = abs[d.len()..].to_string();
        // Keep what makes the last component special (`dir/.`, `dir/`).
        if path.ends_with("/.") {
            rest.push_str("/.");
        } else if path.ends_with('/') {
            rest.push('/');
        }
        let name = (abs == d && !d.is_empty())
            .then(|| d.rsplit('/').next().unwrap_or_default().to_string());
        let rest = if rest.is_empty() {
            "/".to_string()
        } else {
            rest
        };
        (src, rest, name)
    }

    /// `HEAD /containers/{id}/archive`: stat of a path in the container (volumes and bind
    /// mounts included).
    pub fn stat_path(&self, id: &str, path: &str) -> Result<fsops::PathStat, ContainerError> {
        self.with_rootfs(id, |c, root| {
            let (root, p, name) = Self::fs_view(c, root, path);
            let mut st = fsops::stat(&root, &p).map_err(|e| Self::not_found_in(c, e))?;
            if let Some(n) = name {
                st.name = n;
            }
            Ok(st)
        })
    }

    /// `GET /containers/{id}/archive`: writes a tar of `path` to `w` (see [`fsops::archive`]);
    /// volumes and bind mounts included.
    pub fn archive_path(
        &self,
        id: &str,
        path: &str,
        w: &mut dyn Write,
    ) -> Result<fsops::PathStat, ContainerError> {
        self.with_rootfs(id, |c, root| {
            let (root, p, name) = Self::fs_view(c, root, path);
            fsops::archive_named(&root, &p, name.as_deref(), w)
                .map_err(|e| Self::not_found_in(c, e))
        })
    }

    /// `PUT /containers/{id}/archive`: extracts a tar into the directory `path`.
    /// `copy_uid_gid` owns the files by the container's user (its uid and primary gid).
    pub fn extract_to(
        &self,
        id: &str,
        path: &str,
        r: &mut dyn Read,
        no_overwrite_dir_non_dir: bool,
        copy_uid_gid: bool,
    ) -> Result<(), ContainerError> {
        self.with_rootfs(id, |c, root| {
            // As dockerd: a read-only root refuses the copy unless it lands in a writable
            // volume or bind mount.
            let abs = fsops::clean(&format!("/{path}"));
            let to_volume = Self::mount_holding(c, &abs).is_some_and(|m| m.rw);
            if c.options.host.readonly_rootfs && !to_volume {
                return Err(ContainerError::ReadOnlyRootfs);
            }
            let overlay = root;
            let (view_root, view_path, _) = Self::fs_view(c, overlay, path);
            let (root, path) = (view_root.as_path(), view_path.as_str());
            let chown = if copy_uid_gid {
                let u = spec::resolve_user(overlay, &c.config.user).map_err(|reason| {
                    ContainerError::InvalidOption {
                        field: "user".into(),
                        reason,
                    }
                })?;
                Some((u.uid, u.gid))
            } else {
                None
            };
            let opts = fsops::ExtractOptions {
                no_overwrite_dir_non_dir,
                chown,
            };
            fsops::extract(root, path, r, &opts).map_err(|e| Self::not_found_in(c, e))
        })
    }

    /// `GET /containers/{id}/export`: the merged root as a tar.
    pub fn export(&self, id: &str, w: &mut dyn Write) -> Result<(), ContainerError> {
        self.with_rootfs(id, |_, root| Ok(fsops::export(root, w)?))
    }

    /// `GET /containers/{id}/changes`: what the writable layer changed (no mount needed).
    pub fn changes(&self, id: &str) -> Result<Vec<fsops::Change>, ContainerError> {
        let c = self.get(id)?;
        let lowers = self.images.layer_dirs(&c.image_id)?;
        let upper = self.upper_dir(&c.id);
        if !upper.is_dir() {
            return Ok(Vec::new());
        }
        let mut lowers = lowers;
        lowers.reverse();
        fsops::changes(&upper, &lowers).map_err(io_err(format!("diff container {}", c.id)))
    }

    /// The overlay writable layer of a container (`<data-root>/containers/<id>/upper`).
    pub fn upper_dir(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("upper")
    }

    /// Bytes in the container's writable layer (Docker's `SizeRw`).
    pub fn size_rw(&self, id: &str) -> Result<u64, ContainerError> {
        let c = self.get(id)?;
        Ok(fsops::disk_usage(&self.upper_dir(&c.id)))
    }

    /// Removes stopped containers (`created`, `exited`, `dead`) for which `keep(c)` is false;
    /// returns the removed ones and the bytes their writable layers held.
    pub fn prune(
        &self,
        keep: &dyn Fn(&Container) -> bool,
    ) -> Result<(Vec<Container>, u64), ContainerError> {
        let mut removed = Vec::new();
        let mut space = 0;
        for c in self.list() {
            if !matches!(
                c.state.status,
                Status::Exited | Status::Created | Status::Dead
            ) || keep(&c)
                || self.lock().starting.contains(&c.id)
            {
                continue;
            }
            let size = fsops::disk_usage(&self.upper_dir(&c.id));
            match self.remove(&c.id, false) {
                Ok(()) => {
                    space += size;
                    removed.push(c);
                }
                // Started meanwhile: not prunable any more.
                Err(ContainerError::RunningRemove { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((removed, space))
    }
}

impl Container {
    fn rootfs_path(&self, engine: &Containers) -> PathBuf {
        engine.container_dir(&self.id).join("rootfs")
    }
}

enum Watch {
    Child(Child),
    Socket(UnixStream),
}

/// The number of CPUs `CpusetCpus` may name: the highest online CPU + 1.
fn online_cpus() -> usize {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| {
            s.trim()
                .split(',')
                .filter_map(|r| r.rsplit('-').next()?.parse::<usize>().ok())
                .max()
        })
        .map(|m| m + 1)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> barge_image::ContainerConfig {
        barge_image::ContainerConfig {
            env: Some(vec!["PATH=/bin".into(), "A=1".into()]),
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["run".into()]),
            working_dir: Some("/app".into()),
            user: Some("www".into()),
            ..Default::default()
        }
    }

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn merge_defaults() {
        let r = resolve_config(ID, &image(), &CreateOptions::default()).unwrap();
        assert_eq!(r.path, "/entry");
        assert_eq!(r.args, vec!["run"]);
        assert_eq!(r.working_dir, "/app");
        assert_eq!(r.user, "www");
        assert_eq!(r.hostname, "0123456789ab");
        assert_eq!(r.stop_signal, "SIGTERM");
    }

    #[test]
    fn entrypoint_override_clears_cmd() {
        let opts = CreateOptions {
            entrypoint: Some(vec!["/bin/sh".into()]),
            ..Default::default()
        };
        let r = resolve_config(ID, &image(), &opts).unwrap();
        assert_eq!((r.path.as_str(), r.args.len()), ("/bin/sh", 0));
        let opts = CreateOptions {
            entrypoint: Some(vec!["/bin/sh".into()]),
            cmd: Some(vec!["-c".into(), "x".into()]),
            ..Default::default()
        };
        let r = resolve_config(ID, &image(), &opts).unwrap();
        assert_eq!(r.args, vec!["-c", "x"]);
        let opts = CreateOptions {
            entrypoint: Some(vec![]),
            cmd: Some(vec!["ls".into()]),
            ..Default::default()
        };
        let r = resolve_config(ID, &image(), &opts).unwrap();
        assert_eq!((r.path.as_str(), r.entrypoint.clone()), ("ls", None));
        let opts = CreateOptions {
            cmd: Some(vec!["other".into()]),
            ..Default::default()
        };
        let r = resolve_config(ID, &image(), &opts).unwrap();
        assert_eq!(
            (r.path.as_str(), r.args.clone()),
            ("/entry", vec!["other".to_string()])
        );
        let opts = CreateOptions {
            entrypoint: Some(vec![]),
            ..Default::default()
        };
        assert!(resolve_config(ID, &image(), &opts).is_err());
    }

    #[test]
    fn env_merge() {
        let opts = CreateOptions {
            env: vec!["A=2".into(), "B=3".into()],
            ..Default::default()
        };
        let r = resolve_config(ID, &image(), &opts).unwrap();
        assert_eq!(r.env, vec!["PATH=/bin", "A=2", "B=3"]);
        let r = resolve_config(
            ID,
            &barge_image::ContainerConfig {
                cmd: Some(vec!["x".into()]),
                ..Default::default()
            },
            &CreateOptions::default(),
        )
        .unwrap();
        assert_eq!(r.env, vec![DEFAULT_PATH]);
        assert_eq!(r.working_dir, "/");
        let opts = CreateOptions {
            working_dir: Some("rel".into()),
            ..Default::default()
        };
        assert!(resolve_config(ID, &image(), &opts).is_err());
    }

    #[test]
    fn names_and_signals() {
        assert!(valid_name("web-1.a_b"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a"));
        assert!(!valid_name("a/b"));
        assert!(valid_name(&generate_name(0)));
        assert_eq!(parse_signal("SIGKILL").unwrap(), 9);
        assert_eq!(parse_signal("term").unwrap(), 15);
        assert_eq!(parse_signal("10").unwrap(), 10);
        assert!(parse_signal("NOPE").is_err());
    }
}
