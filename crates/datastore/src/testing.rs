//! Test support: a throwaway etcd server on loopback, and a [`Fixture`] — a store of each
//! backend (memory, SQLite in a temporary directory, a real etcd) with what keeps it alive — for
//! this crate's conformance suite and benchmark and for the API server's tests, which run
//! against every backend.
//!
//! It runs Debian's `etcd-server` (`/usr/bin/etcd`, installed by `scripts/install-deps.sh`) with
//! a fresh data directory and random loopback ports, and kills it when dropped. A missing
//! `etcd` is a panic naming the package, never a skip.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{EtcdStore, MemStore, SqliteStore, Store};

/// The etcd binary `etcd-server` installs.
pub const ETCD: &str = "/usr/bin/etcd";
/// The etcd client `etcd-client` installs (snapshots).
pub const ETCDCTL: &str = "/usr/bin/etcdctl";

/// A running etcd (one member, loopback only), killed and its data removed on drop.
pub struct EtcdServer {
    child: Child,
    dir: PathBuf,
    endpoint: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

impl EtcdServer {
    /// Starts etcd and waits until it answers on its client port (up to 20 s; a port taken in
    /// between is retried with new ones).
    ///
    /// Blocking (it sleeps while it polls): from async code, call it through
    /// `tokio::task::spawn_blocking`.
    ///
    /// Panics when `/usr/bin/etcd` is missing or does not come up.
    pub fn start() -> EtcdServer {
        Self::start_with(None)
    }

    /// Starts etcd on a data dir restored from `snapshot` with `etcdctl snapshot restore` (a
    /// new one-member cluster, as an operator restores one), and waits as [`EtcdServer::start`].
    ///
    /// Panics when `/usr/bin/etcdctl` is missing, the restore fails or etcd does not come up.
    pub fn restore(snapshot: &Path) -> EtcdServer {
        Self::start_with(Some(snapshot))
    }

    /// Saves a snapshot of this etcd to `dest` (`etcdctl snapshot save`, online).
    ///
    /// Panics when `etcdctl` is missing or fails.
    pub fn snapshot(&self, dest: &Path) {
        let out = etcdctl()
            .args(["--endpoints", &self.endpoint, "snapshot", "save"])
            .arg(dest)
            .output()
            .unwrap_or_else(|e| panic!("run {ETCDCTL}: {e}"));
        assert!(
            out.status.success(),
            "etcdctl snapshot save: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start_with(snapshot: Option<&Path>) -> EtcdServer {
        assert!(
            Path::new(ETCD).exists(),
            "{ETCD} is missing: install Debian's etcd-server (scripts/install-deps.sh)"
        );
        let mut last_err = String::new();
        for attempt in 0..3 {
            let dir = std::env::temp_dir().join(format!(
                "barge-etcd-{}-{}-{attempt}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("etcd data dir");
            let (client, peer) = (free_port(), free_port());
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            if let Some(snap) = snapshot {
                let out = etcdctl()
                    .args(["snapshot", "restore"])
                    .arg(snap)
                    .args(["--name", "test"])
                    .arg("--data-dir")
                    .arg(dir.join("data"))
                    .args(["--initial-cluster", &format!("test={peer_url}")])
                    .args(["--initial-advertise-peer-urls", &peer_url])
                    .output()
                    .unwrap_or_else(|e| panic!("run {ETCDCTL}: {e}"));
                assert!(
                    out.status.success(),
                    "etcdctl snapshot restore: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let log = std::fs::File::create(dir.join("etcd.log")).expect("etcd log file");
            let mut child = Command::new("/usr/bin/etcd")
                .args(["--name", "test"])
                .arg("--data-dir")
                .arg(dir.join("data"))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &format!("test={peer_url}")])
                .args(["--logger", "zap", "--log-level", "error"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("start {ETCD}: {e}"));
            let addr: SocketAddr = ([127, 0, 0, 1], client).into();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let err = std::fs::read_to_string(dir.join("etcd.log")).unwrap_or_default();
                    last_err = format!("etcd exited with {status}: {err}");
                    break;
                }
                // The client port listens once etcd is ready to serve (after its election).
                if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                    return EtcdServer {
                        child,
                        dir,
                        endpoint: client_url,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("etcd did not listen on {client_url} within 20s");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
        }
        panic!("etcd did not start: {last_err}");
    }

    /// The etcd process's id (for its `/proc/PID/io` figures in the benchmark).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// `etcdctl` with the v3 API (etcd 3.4's default; set for older ones).
fn etcdctl() -> Command {
    assert!(
        Path::new(ETCDCTL).exists(),
        "{ETCDCTL} is missing: install Debian's etcd-client (scripts/install-deps.sh)"
    );
    let mut c = Command::new(ETCDCTL);
    c.env("ETCDCTL_API", "3").stdin(Stdio::null());
    c
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A backend the tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// [`MemStore`], the reference.
    Memory,
    /// [`SqliteStore`] in a fresh temporary directory (`barge server`'s default).
    Sqlite,
    /// [`EtcdStore`] on a fresh [`EtcdServer`].
    Etcd,
}

impl Backend {
    /// Opens a fresh, empty store of this backend; etcd keys go under `/barge-test`.
    ///
    /// Panics when the store cannot be opened (a missing `etcd` names its package).
    pub async fn open(self) -> Fixture {
        self.open_with_root("/barge-test").await
    }

    /// As [`Backend::open`], with etcd's keys under `root` (ignored by the other backends).
    pub async fn open_with_root(self, root: &str) -> Fixture {
        match self {
            Backend::Memory => Fixture {
                store: Arc::new(MemStore::new()),
                guard: Guard::None,
            },
            Backend::Sqlite => {
                let dir = TempDir::new("sqlite");
                let store = SqliteStore::open(dir.0.join("state.db"))
                    .await
                    .expect("open SQLite in a temporary directory");
                Fixture {
                    store: Arc::new(store),
                    guard: Guard::Dir(dir),
                }
            }
            Backend::Etcd => {
                let server = tokio::task::spawn_blocking(EtcdServer::start)
                    .await
                    .expect("start etcd");
                let store = EtcdStore::connect_with_root(&[server.endpoint().to_string()], root)
                    .await
                    .expect("connect to the test etcd");
                Fixture {
                    store: Arc::new(store),
                    guard: Guard::Etcd(server),
                }
            }
        }
    }
}

/// A store under test and what keeps it alive (a temporary directory, an etcd process); both
/// are removed when it is dropped.
pub struct Fixture {
    /// The store.
    pub store: Arc<dyn Store>,
    guard: Guard,
}

impl Fixture {
    /// The etcd behind this fixture, if it is the etcd backend.
    pub fn etcd(&self) -> Option<&EtcdServer> {
        match &self.guard {
            Guard::Etcd(e) => Some(e),
            _ => None,
        }
    }
}

enum Guard {
    None,
    Dir(#[allow(dead_code)] TempDir),
    Etcd(EtcdServer),
}

/// A directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "barge-{what}-{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
