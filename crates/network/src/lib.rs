//! barge's container networking (engine library, synchronous).
//!
//! Docker's model: networks (`bridge` — the default, `host`, `none`, and user-defined bridge
//! networks) and per-container **sandboxes** (a network namespace bind-mounted on
//! `<exec-root>/netns/<id[..12]>`, Docker's `SandboxKey`) holding one veth **endpoint** per
//! network. Published ports and network isolation are nftables rules in barge's own table;
//! names on user-defined networks are answered by the embedded DNS server at 127.0.0.11.
//!
//! Invariants:
//! - State lives in two places: network definitions in `<data-root>/network/networks.json`
//!   (survive reboots) and sandboxes in `<exec-root>/network/<container-id>.json` (exist only
//!   while the container runs; `/run` is a tmpfs). Kernel state (links, netns files, rules) is
//!   always derivable from them, so [`Networks::reconcile`] after a daemon crash deletes what
//!   nobody needs and re-creates what is missing.
//! - An address or host port is owned by exactly one sandbox; allocation happens under the
//!   lock, kernel work outside it.
//! - The nftables table is replaced as a whole, atomically, whenever what it derives from
//!   changes (the `nft` module).
//! - Namespace work runs on dedicated threads (the `link` module), never on the caller's thread.
//!
//! Spec references: Docker Engine API
//! [Network](https://docs.docker.com/reference/api/engine/version/v1.47/#tag/Network);
//! Docker's [bridge driver](https://docs.docker.com/engine/network/drivers/bridge/).

pub mod clusterdns;
mod definitions;
mod dns;
mod error;
pub mod host;
pub mod ipam;
pub mod kubeproxy;
mod link;
pub mod netpol;
mod nft;
pub mod podnet;
mod proxy;
mod reconcile;
mod rules;
mod sandboxes;
mod types;

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::{Ipv4Net, Ipv6Net};

pub use dns::DNS_ADDR;
pub use error::{ErrorKind, NetworkError};
pub use types::*;

/// The prefix of the sandbox keys the node agent gives pods' sandboxes (`pod-<uid>`): made with
/// [`Networks::setup`] without a container, joined by containers of network mode
/// `sandbox:<key>`, and kept by [`Networks::reconcile`] whatever runs (their owner adopts or
/// removes them).
pub const POD_SANDBOX_PREFIX: &str = "pod-";

/// Whether `key` names a pod's sandbox (see [`POD_SANDBOX_PREFIX`]).
pub fn is_pod_sandbox(key: &str) -> bool {
    key.starts_with(POD_SANDBOX_PREFIX)
}

/// Where networking state lives and how the default bridge looks.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    /// Device of the default `bridge` network (Docker's `--bridge`; default `barge0`).
    pub bridge: String,
    /// Address/prefix of the default bridge (Docker's `--bip`, e.g. `10.87.0.1/16`); chosen
    /// automatically (10.87.0.0/16, or a free subnet of `pool`) when unset.
    pub bip: Option<Ipv4Net>,
    /// IPv6 on the default bridge (dockerd's `--ipv6`).
    pub ipv6: bool,
    /// The default bridge's IPv6 subnet (dockerd's `--fixed-cidr-v6`); with `ipv6` and none
    /// given, a /64 of `pool6`, as dockerd ≥ 27 does.
    pub fixed_cidr_v6: Option<Ipv6Net>,
    /// Where user-defined networks without `--subnet` get a /24 (default `10.120.0.0/14`).
    pub pool: Ipv4Net,
    /// Where IPv6 networks without an IPv6 `--subnet` get a /64; `None` (default): a ULA /48
    /// derived from this daemon's ID (`<data-root>/network/engine-id`), as dockerd ≥ 27 does.
    pub pool6: Option<Ipv6Net>,
    /// barge's nftables table (family `ip`).
    pub table: String,
    /// Resolvers the embedded DNS server forwards other names to (Docker's daemon `--dns`);
    /// empty: the host's `/etc/resolv.conf`.
    pub dns: Vec<std::net::IpAddr>,
}

impl NetworkConfig {
    /// Defaults for a daemon with these roots: for the default exec root (`/run/barge`)
    /// bridge `barge0` and table `barge`; for any other exec root bridge and table
    /// `barge-<hash of exec root>`, so several daemons on one host (each with its own
    /// `--exec-root`, as dockerd allows) never share a bridge or a table: a daemon's
    /// reconcile deletes unknown links on its own bridges only.
    pub fn new(data_root: PathBuf, exec_root: PathBuf) -> Self {
        let (table, bridge) = if exec_root == Path::new("/run/barge") {
            ("barge".to_string(), "barge0".to_string())
        } else {
            use sha2::Digest;
            let h = sha2::Sha256::digest(exec_root.to_string_lossy().as_bytes());
            let name = format!("barge-{}", &hex(&h)[..8]);
            (name.clone(), name)
        };
        NetworkConfig {
            data_root,
            exec_root,
            bridge,
            bip: None,
            ipv6: false,
            fixed_cidr_v6: None,
            pool: "10.120.0.0/14".parse().expect("valid pool"),
            pool6: None,
            table,
            dns: Vec::new(),
        }
    }
}

/// A daemon's claim on its default bridge, held for the daemon's life (see [`claim_bridge`]).
#[derive(Debug)]
pub struct BridgeClaim {
    _sock: std::os::unix::net::UnixListener,
}

/// Claims `bridge` for this process, so that two daemons never share a default bridge (each
/// would take the other's veths for stale links and delete them at start-up). The claim is
/// an abstract Unix socket `barge-bridge:<name>`: per network namespace like the bridge itself,
/// and released by the kernel when the process exits, however it exits.
/// Errors: [`NetworkError::Conflict`] naming the `--bridge` flag when another process holds it.
pub fn claim_bridge(bridge: &str) -> Result<BridgeClaim, NetworkError> {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("barge-bridge:{bridge}");
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        .map_err(|e| NetworkError::io(format!("claim bridge {bridge}"), e))?;
    match std::os::unix::net::UnixListener::bind_addr(&addr) {
        Ok(sock) => Ok(BridgeClaim { _sock: sock }),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            Err(NetworkError::Conflict(format!(
                "bridge {bridge} is the default bridge of another barge daemon on this host; give \
             this daemon its own with --bridge NAME (and --bip ADDRESS/PREFIX for its subnet)"
            )))
        }
        Err(e) => Err(NetworkError::io(format!("claim bridge {bridge}"), e)),
    }
}

/// The addresses of an endpoint: IPv4, then IPv6 if it has one.
fn endpoint_ips(ep: &Endpoint) -> Vec<IpAddr> {
    let mut v = vec![IpAddr::V4(ep.ip)];
    if let Some((ip6, _)) = ep.ip6 {
        v.push(IpAddr::V6(ip6));
    }
    v
}

/// This daemon's stable ID (`<net_dir>/engine-id`, 32 random hex chars made on first use),
/// the seed of its IPv6 ULA pool as dockerd's engine ID is of its own.
fn engine_id(net_dir: &Path) -> Result<String, NetworkError> {
    let path = net_dir.join("engine-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        if !id.trim().is_empty() {
            return Ok(id.trim().to_string());
        }
    }
    let id = random_hex(16);
    write_atomic(&path, id.as_bytes())?;
    Ok(id)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("random bytes");
    hex(&b)
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Replaces a record durably ([`barge_stdx::fs::write_atomic`]).
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), NetworkError> {
    barge_stdx::fs::write_atomic(path, data)
        .map_err(|e| NetworkError::io(format!("write {}", path.display()), e))
}

#[derive(Default)]
struct Inner {
    networks: BTreeMap<String, Network>,
    sandboxes: BTreeMap<String, Sandbox>,
    /// Bridges known to exist (created or checked by this process).
    ensured: HashSet<String>,
    /// The rules last applied (None = unknown: apply next time).
    applied: Option<(Vec<nft::RuleNet>, Vec<nft::RulePort>)>,
    /// Addresses (network ID, IP) of released sandboxes whose links are still being deleted
    /// ([`Networks::release`]): not handed out again until they are gone.
    releasing: Vec<(String, IpAddr)>,
    /// This daemon's claim on IPv6 forwarding, while a non-internal IPv6 network is up
    /// ([`Networks::enable_forwarding6`]).
    forwarding6: Option<std::os::unix::net::UnixListener>,
}

/// Networks and container sandboxes. Cheap to share (`Arc`); every method is blocking.
pub struct Networks {
    cfg: NetworkConfig,
    /// IPv6 networks without a subnet of their own get a /64 of this.
    pool6: Ipv6Net,
    inner: Arc<Mutex<Inner>>,
    dns: dns::Dns,
    /// Link deletions started by [`Networks::release`]; [`Networks::settle`] waits for them.
    pending: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Serialises applying the rules (`nft` subprocesses), so `inner` is never held across
    /// one: readers of networks and sandboxes do not wait for `nft`.
    rules_lock: Mutex<()>,
}

/// The name and device of a network, for callers that only need to show it.
/// libnetwork's `config.IsValidName`: any name that is not blank (spaces included, as
/// `docker network create "test 01"` works with dockerd).
fn valid_name(name: &str) -> bool {
    !name.trim().is_empty() && !name.chars().any(char::is_control)
}

impl std::fmt::Debug for Networks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Networks")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Networks {
    /// Loads network definitions and sandbox records, creating the predefined `bridge`,
    /// `host` and `none` networks on first use. Does not touch the kernel: call
    /// [`Networks::reconcile`] once the caller knows which containers run.
    pub fn open(cfg: NetworkConfig) -> Result<Arc<Networks>, NetworkError> {
        let net_dir = cfg.data_root.join("network");
        let sb_dir = cfg.exec_root.join("network");
        let dirs = [
            &net_dir,
            &sb_dir,
            &cfg.exec_root.join("netns"),
            &cfg.exec_root.join("podns"),
        ];
        for d in dirs {
            std::fs::create_dir_all(d)
                .map_err(|e| NetworkError::io(format!("create {}", d.display()), e))?;
        }
        let mut inner = Inner::default();
        let path = net_dir.join("networks.json");
        if let Ok(data) = std::fs::read(&path) {
            let list: Vec<Network> = serde_json::from_slice(&data).map_err(|e| {
                NetworkError::io(
                    format!("parse {}", path.display()),
                    std::io::Error::other(e),
                )
            })?;
            for n in list {
                inner.networks.insert(n.id.clone(), n);
            }
        }
        if let Ok(rd) = std::fs::read_dir(&sb_dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().and_then(|x| x.to_str()) != Some("json") {
                    continue;
                }
                match std::fs::read(&p).map(|d| serde_json::from_slice::<Sandbox>(&d)) {
                    Ok(Ok(sb)) => {
                        inner.sandboxes.insert(sb.container_id.clone(), sb);
                    }
                    _ => {
                        let _ = std::fs::remove_file(&p);
                    }
                }
            }
        }
        let pool6 = match cfg.pool6 {
            Some(p) => p,
            None => ipam::ula_pool(&engine_id(&net_dir)?),
        };
        let this = Networks {
            pool6,
            cfg,
            inner: Arc::new(Mutex::new(inner)),
            dns: dns::Dns::start(),
            pending: Mutex::new(Vec::new()),
            rules_lock: Mutex::new(()),
        };
        this.ensure_predefined()?;
        Ok(Arc::new(this))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save_networks(&self, inner: &Inner) -> Result<(), NetworkError> {
        let list: Vec<&Network> = inner.networks.values().collect();
        let data = serde_json::to_vec_pretty(&list).expect("networks serialize");
        write_atomic(&self.cfg.data_root.join("network/networks.json"), &data)
    }

    fn sandbox_path(&self, cid: &str) -> PathBuf {
        self.cfg
            .exec_root
            .join("network")
            .join(format!("{cid}.json"))
    }

    /// The daemon's table name (for diagnostics and tests).
    pub fn table(&self) -> &str {
        &self.cfg.table
    }
}
