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
//!   changes ([`nft`]).
//! - Namespace work runs on dedicated threads ([`link`]), never on the caller's thread.
//!
//! Spec references: Docker Engine API
//! [Network](https://docs.docker.com/reference/api/engine/version/v1.47/#tag/Network);
//! Docker's [bridge driver](https://docs.docker.com/engine/network/drivers/bridge/).

mod dns;
mod error;
pub mod ipam;
mod link;
mod nft;
mod types;

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::{Ipv4Net, Ipv6Net};

pub use dns::DNS_ADDR;
pub use error::{ErrorKind, NetworkError};
pub use types::*;

/// Host ports picked for `-P` / `-p CONTAINER` come from here (Docker's range).
const EPHEMERAL: std::ops::RangeInclusive<u16> = 49153..=65535;

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

/// Creates the veth pair of endpoint `ep` between `bridge` and the namespace at `netns`.
fn attach_endpoint(netns: &Path, bridge: &str, ep: &Endpoint) -> Result<(), NetworkError> {
    link::attach_veth(
        netns,
        &link::Veth {
            bridge,
            host_ifname: &ep.host_ifname,
            peer_tmp: &format!("vp{}", &ep.host_ifname[4..]),
            ifname: &ep.ifname,
            mac: ipam::parse_mac(&ep.mac).unwrap_or_else(|| ipam::mac_for(ep.ip)),
            ip: ep.ip,
            prefix: ep.prefix_len,
            gateway: ep.gateway,
            ip6: ep.ip6,
            gateway6: ep.gateway6.filter(|_| ep.default6),
        },
    )
}

/// The host's IPv6 forwarding switch.
const FORWARDING6: &str = "/proc/sys/net/ipv6/conf/all/forwarding";
/// The value of [`FORWARDING6`] before barge turned it on (see
/// [`Networks::enable_forwarding6`]); host-wide, on a tmpfs as the sysctl itself.
const FORWARDING6_RECORD: &str = "/run/barge-ipv6-forwarding";
/// Prefix of the abstract socket names by which daemons claim IPv6 forwarding.
const FORWARDING6_CLAIM: &str = "barge-ipv6-forwarding:";

/// Serialises the host-wide IPv6 forwarding bookkeeping between daemons: an exclusive
/// `flock` on `/run/barge-ipv6-forwarding.lock`, released when the file is dropped.
fn forwarding6_lock() -> Result<File, NetworkError> {
    let path = "/run/barge-ipv6-forwarding.lock";
    let f = File::create(path).map_err(|e| NetworkError::io(format!("open {path}"), e))?;
    // SAFETY: flock on a file descriptor this function owns and keeps open; no memory is
    // shared with the kernel.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    if r != 0 {
        return Err(NetworkError::io(
            format!("lock {path}"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(f)
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
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
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
        for d in [&net_dir, &sb_dir, &cfg.exec_root.join("netns")] {
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

    fn ensure_predefined(&self) -> Result<(), NetworkError> {
        let mut inner = self.lock();
        let mut changed = false;
        for (name, driver) in [("bridge", "bridge"), ("host", "host"), ("none", "null")] {
            if let Some(n) = inner.networks.values_mut().find(|n| n.name == name) {
                if name == "bridge" {
                    // `--bridge`/`--bip` may change between daemon runs.
                    if n.bridge != self.cfg.bridge {
                        n.bridge = self.cfg.bridge.clone();
                        changed = true;
                    }
                    if let Some(bip) = self.cfg.bip {
                        let ipam = Ipam {
                            subnet: bip.trunc(),
                            gateway: bip.addr(),
                            ip_range: None,
                            user_subnet: true,
                        };
                        if n.ipam.as_ref() != Some(&ipam) {
                            n.ipam = Some(ipam);
                            changed = true;
                        }
                    }
                }
                continue;
            }
            let ipam = (name == "bridge").then(|| self.default_bridge_ipam());
            let mut options = BTreeMap::new();
            if name == "bridge" {
                options.insert(BRIDGE_NAME_OPTION.to_string(), self.cfg.bridge.clone());
                options.insert(
                    "com.docker.network.bridge.default_bridge".into(),
                    "true".into(),
                );
            }
            let n = Network {
                id: random_hex(32),
                name: name.into(),
                driver: driver.into(),
                created: now_rfc3339(),
                internal: false,
                attachable: false,
                ipam,
                ipam6: None,
                options,
                labels: BTreeMap::new(),
                bridge: if name == "bridge" {
                    self.cfg.bridge.clone()
                } else {
                    String::new()
                },
                dns: false,
            };
            inner.networks.insert(n.id.clone(), n);
            changed = true;
        }
        if changed {
            self.save_networks(&inner)?;
        }
        Ok(())
    }

    fn default_bridge_ipam(&self) -> Ipam {
        if let Some(bip) = self.cfg.bip {
            return Ipam {
                subnet: bip.trunc(),
                gateway: bip.addr(),
                ip_range: None,
                user_subnet: true,
            };
        }
        let taken: Vec<Ipv4Net> = ipam::host_routes()
            .into_iter()
            .filter(|(i, _)| *i != self.cfg.bridge)
            .map(|(_, n)| n)
            .collect();
        let preferred: Ipv4Net = "10.87.0.0/16".parse().expect("valid");
        let subnet = if taken.iter().any(|t| ipam::overlaps(t, &preferred)) {
            ipam::pick_subnet(self.cfg.pool, 24, &taken).unwrap_or(preferred)
        } else {
            preferred
        };
        Ipam {
            subnet,
            gateway: ipam::first_host(&subnet),
            ip_range: None,
            user_subnet: false,
        }
    }

    fn find<'a>(inner: &'a Inner, name_or_id: &str) -> Result<&'a Network, NetworkError> {
        if let Some(n) = inner.networks.get(name_or_id) {
            return Ok(n);
        }
        if let Some(n) = inner.networks.values().find(|n| n.name == name_or_id) {
            return Ok(n);
        }
        let m: Vec<&Network> = inner
            .networks
            .values()
            .filter(|n| !name_or_id.is_empty() && n.id.starts_with(name_or_id))
            .collect();
        match m.len() {
            1 => Ok(m[0]),
            0 => Err(NetworkError::NotFound(name_or_id.to_string())),
            _ => Err(NetworkError::invalid(
                "network",
                format!(
                    "network {name_or_id} is ambiguous ({} matches found based on ID prefix)",
                    m.len()
                ),
            )),
        }
    }

    /// All networks, sorted by name.
    pub fn list(&self) -> Vec<Network> {
        let mut v: Vec<Network> = self.lock().networks.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// A network by name, full ID or unique ID prefix.
    pub fn get(&self, name_or_id: &str) -> Result<Network, NetworkError> {
        Self::find(&self.lock(), name_or_id).cloned()
    }

    /// IDs of the containers with an endpoint on network `id`, with the endpoint.
    pub fn endpoints(&self, id: &str) -> Vec<(String, Endpoint)> {
        let inner = self.lock();
        inner
            .sandboxes
            .values()
            .flat_map(|s| {
                s.endpoints
                    .iter()
                    .filter(|e| e.network_id == id)
                    .map(|e| (s.container_id.clone(), e.clone()))
            })
            .collect()
    }

    /// Creates a user-defined bridge network and its bridge device. Errors: bad name,
    /// subnet, gateway or range (400); name in use or subnet overlapping another network (409).
    pub fn create(&self, req: CreateRequest) -> Result<Network, NetworkError> {
        if !valid_name(&req.name) {
            return Err(NetworkError::invalid(
                "name",
                format!(
                    "invalid network name {:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
                    req.name
                ),
            ));
        }
        let driver = req.driver.clone().unwrap_or_else(|| "bridge".into());
        if driver != "bridge" {
            return Err(NetworkError::invalid(
                "driver",
                format!("plugin \"{driver}\" not found (barge supports the bridge driver)"),
            ));
        }
        let subnet = req
            .subnet
            .as_deref()
            .map(|s| ipam::parse_subnet("subnet", s))
            .transpose()?;
        let user_ipam = ipam::build(subnet, req.gateway.as_deref(), req.ip_range.as_deref())?;
        let subnet6 = req
            .subnet6
            .as_deref()
            .map(|s| ipam::parse_subnet6("subnet", s))
            .transpose()?;
        if !req.enable_ipv6 && subnet6.is_some() {
            return Err(NetworkError::invalid(
                "subnet",
                "an IPv6 subnet was given but IPv6 is not enabled (EnableIPv6, --ipv6)",
            ));
        }
        if subnet6.is_none() && (req.gateway6.is_some() || req.ip_range6.is_some()) {
            return Err(NetworkError::invalid(
                "gateway",
                "an IPv6 --gateway or --ip-range needs an IPv6 --subnet",
            ));
        }
        let user_ipam6 = subnet6
            .map(|s| ipam::build6(s, req.gateway6.as_deref(), req.ip_range6.as_deref(), true))
            .transpose()?;
        let id = random_hex(32);
        let bridge = match req.options.get(BRIDGE_NAME_OPTION) {
            Some(b) => {
                if b.is_empty()
                    || b.len() > 15
                    || b.contains('/')
                    || b.contains(char::is_whitespace)
                {
                    return Err(NetworkError::invalid(
                        BRIDGE_NAME_OPTION,
                        format!("invalid interface name {b:?}"),
                    ));
                }
                b.clone()
            }
            None => format!("br-{}", &id[..12]),
        };
        let net = {
            let mut inner = self.lock();
            if inner.networks.values().any(|n| n.name == req.name) {
                return Err(NetworkError::NameInUse(req.name.clone()));
            }
            if inner.networks.values().any(|n| n.bridge == bridge) {
                return Err(NetworkError::Conflict(format!(
                    "bridge device {bridge} is used by another network"
                )));
            }
            let ours: Vec<Ipv4Net> = inner
                .networks
                .values()
                .filter_map(|n| n.ipam.as_ref().map(|i| i.subnet))
                .collect();
            let ipam = match user_ipam {
                Some(i) => {
                    if let Some(o) = ours.iter().find(|o| ipam::overlaps(o, &i.subnet)) {
                        return Err(NetworkError::Conflict(format!(
                            "invalid pool request: Pool overlaps with other one on this address space ({o})"
                        )));
                    }
                    i
                }
                None => {
                    let mut taken = ours;
                    taken.extend(ipam::host_routes().into_iter().map(|(_, n)| n));
                    let subnet = ipam::pick_subnet(self.cfg.pool, 24, &taken).ok_or_else(|| {
                        NetworkError::Exhausted(format!(
                            "address pool {} (all subnets in use)",
                            self.cfg.pool
                        ))
                    })?;
                    Ipam {
                        subnet,
                        gateway: ipam::first_host(&subnet),
                        ip_range: None,
                        user_subnet: false,
                    }
                }
            };
            let ipam6 = if req.enable_ipv6 {
                let ours6: Vec<Ipv6Net> = inner
                    .networks
                    .values()
                    .filter_map(|n| n.ipam6.as_ref().map(|i| i.subnet))
                    .collect();
                Some(match user_ipam6 {
                    Some(i) => {
                        if let Some(o) = ours6.iter().find(|o| ipam::overlaps6(o, &i.subnet)) {
                            return Err(NetworkError::Conflict(format!(
                                "invalid pool request: Pool overlaps with other one on this address space ({o})"
                            )));
                        }
                        i
                    }
                    None => {
                        let mut taken = ours6;
                        taken.extend(ipam::host_routes6().into_iter().map(|(_, n)| n));
                        let subnet =
                            ipam::pick_subnet6(self.pool6, 64, &taken).ok_or_else(|| {
                                NetworkError::Exhausted(format!(
                                    "address pool {} (all subnets in use)",
                                    self.pool6
                                ))
                            })?;
                        ipam::build6(subnet, None, None, false)?
                    }
                })
            } else {
                None
            };
            let net = Network {
                id: id.clone(),
                name: req.name.clone(),
                driver,
                created: now_rfc3339(),
                internal: req.internal,
                attachable: req.attachable,
                ipam: Some(ipam),
                ipam6,
                options: req.options.clone(),
                labels: req.labels.clone(),
                bridge,
                dns: true,
            };
            inner.networks.insert(id.clone(), net.clone());
            if let Err(e) = self.save_networks(&inner) {
                // Not recorded: not created.
                inner.networks.remove(&id);
                return Err(e);
            }
            net
        };
        if let Err(e) = self.bring_up(&net) {
            let mut inner = self.lock();
            inner.networks.remove(&id);
            if let Err(e2) = self.save_networks(&inner) {
                tracing::error!("network {id}: record not rolled back: {e2}");
            }
            drop(inner);
            let _ = link::delete_link(&net.bridge);
            return Err(e);
        }
        Ok(net)
    }

    /// Creates the bridge of `net` if needed and refreshes the rules.
    fn bring_up(&self, net: &Network) -> Result<(), NetworkError> {
        let Some(ipam) = &net.ipam else { return Ok(()) };
        if self.lock().ensured.contains(&net.bridge) && link::link_exists(&net.bridge) {
            return Ok(());
        }
        let v6 = net
            .ipam6
            .as_ref()
            .map(|i| (i.gateway, i.subnet.prefix_len()));
        link::ensure_bridge(&net.bridge, ipam.gateway, ipam.subnet.prefix_len(), v6)?;
        if v6.is_some() && !net.internal {
            self.enable_forwarding6();
        }
        self.lock().ensured.insert(net.bridge.clone());
        self.sync_rules(false)
    }

    /// Removes a user-defined network and its bridge. Errors: not found (404), predefined
    /// (403), containers attached (409).
    pub fn remove(&self, name_or_id: &str) -> Result<(), NetworkError> {
        // Links of released sandboxes go before their bridge does.
        self.settle();
        let net = {
            let mut inner = self.lock();
            let net = Self::find(&inner, name_or_id)?.clone();
            if net.predefined() {
                return Err(NetworkError::Predefined(net.name));
            }
            if inner
                .sandboxes
                .values()
                .any(|s| s.endpoints.iter().any(|e| e.network_id == net.id))
            {
                return Err(NetworkError::InUse {
                    name: net.name,
                    id: net.id,
                });
            }
            inner.networks.remove(&net.id);
            if let Err(e) = self.save_networks(&inner) {
                // Still recorded: still there.
                inner.networks.insert(net.id.clone(), net);
                return Err(e);
            }
            inner.ensured.remove(&net.bridge);
            net
        };
        link::delete_link(&net.bridge)?;
        self.sync_rules(false)
    }

    /// Removes every user-defined network without endpoints whose ID is not in `keep`;
    /// returns the removed names.
    pub fn prune(&self, keep: &dyn Fn(&Network) -> bool) -> Vec<String> {
        let candidates: Vec<Network> = {
            let inner = self.lock();
            inner
                .networks
                .values()
                .filter(|n| !n.predefined())
                .filter(|n| {
                    !inner
                        .sandboxes
                        .values()
                        .any(|s| s.endpoints.iter().any(|e| e.network_id == n.id))
                })
                .filter(|n| !keep(n))
                .cloned()
                .collect()
        };
        let mut out = Vec::new();
        for n in candidates {
            if self.remove(&n.id).is_ok() {
                out.push(n.name);
            }
        }
        out
    }

    /// The sandbox of a running container, if it has one.
    pub fn sandbox(&self, container_id: &str) -> Option<Sandbox> {
        self.lock().sandboxes.get(container_id).cloned()
    }

    /// Whether the container's sandbox uses the embedded DNS server.
    pub fn uses_dns(&self, sb: &Sandbox) -> bool {
        let inner = self.lock();
        sb.endpoints.iter().any(|e| {
            inner
                .networks
                .get(&e.network_id)
                .map(|n| n.dns)
                .unwrap_or(false)
        })
    }

    /// Addresses (both families) of network `network_id` that belong to a sandbox.
    fn used_ips(inner: &Inner, network_id: &str) -> HashSet<IpAddr> {
        inner
            .sandboxes
            .values()
            .flat_map(|s| s.endpoints.iter())
            .filter(|e| e.network_id == network_id)
            .flat_map(endpoint_ips)
            .chain(
                inner
                    .releasing
                    .iter()
                    .filter(|(n, _)| n == network_id)
                    .map(|(_, ip)| *ip),
            )
            .collect()
    }

    fn plan_endpoint(
        inner: &Inner,
        cid: &str,
        name: &str,
        req: &EndpointRequest,
        index: usize,
        extra_used: &HashSet<IpAddr>,
    ) -> Result<(Network, Endpoint), NetworkError> {
        let net = Self::find(inner, &req.network)?.clone();
        let Some(ipam) = &net.ipam else {
            return Err(NetworkError::invalid(
                "network",
                format!(
                    "container cannot be connected to network {} (driver {})",
                    net.name, net.driver
                ),
            ));
        };
        if !net.dns && !req.aliases.is_empty() {
            return Err(NetworkError::invalid(
                "network-alias",
                "network-scoped aliases are only supported for user-defined networks",
            ));
        }
        let mut used = Self::used_ips(inner, &net.id);
        used.extend(extra_used.iter().copied());
        let used4: HashSet<Ipv4Addr> = used
            .iter()
            .filter_map(|ip| match ip {
                IpAddr::V4(a) => Some(*a),
                IpAddr::V6(_) => None,
            })
            .collect();
        let ip = ipam::allocate(ipam, &used4, req.ipv4_address)?;
        let ip6 = match (&net.ipam6, req.ipv6_address) {
            (Some(i6), want) => {
                let used6: HashSet<Ipv6Addr> = used
                    .iter()
                    .filter_map(|ip| match ip {
                        IpAddr::V6(a) => Some(*a),
                        IpAddr::V4(_) => None,
                    })
                    .collect();
                Some((ipam::allocate6(i6, &used6, want)?, i6.subnet.prefix_len()))
            }
            (None, Some(want)) => {
                return Err(NetworkError::invalid(
                    "ip6",
                    format!(
                        "cannot use IPv6 address {want}: network {} has no IPv6 (create it with --ipv6)",
                        net.name
                    ),
                ))
            }
            (None, None) => None,
        };
        let mut dns_names = vec![
            name.to_ascii_lowercase(),
            cid[..12.min(cid.len())].to_string(),
        ];
        for a in &req.aliases {
            let a = a.to_ascii_lowercase();
            if !dns_names.contains(&a) {
                dns_names.push(a);
            }
        }
        let r = random_hex(4);
        Ok((
            net.clone(),
            Endpoint {
                network_id: net.id.clone(),
                network_name: net.name.clone(),
                endpoint_id: random_hex(32),
                ip,
                prefix_len: ipam.subnet.prefix_len(),
                gateway: (!net.internal).then_some(ipam.gateway),
                ip6,
                gateway6: net.ipam6.as_ref().map(|i| i.gateway),
                default6: ip6.is_some() && !net.internal,
                mac: req
                    .mac_address
                    .as_deref()
                    .and_then(ipam::parse_mac)
                    .map(|m| ipam::mac_string(&m))
                    .unwrap_or_else(|| ipam::mac_string(&ipam::mac_for(ip))),
                ifname: format!("eth{index}"),
                host_ifname: format!("veth{}", &r[..7]),
                aliases: req.aliases.clone(),
                dns_names,
            },
        ))
    }

    fn port_free(proto: &str, ip: Ipv4Addr, port: u16) -> bool {
        let addr = (ip, port);
        match proto {
            "udp" => std::net::UdpSocket::bind(addr).is_ok(),
            _ => std::net::TcpListener::bind(addr).is_ok(),
        }
    }

    fn plan_ports(inner: &Inner, ports: &[PortBinding]) -> Result<Vec<PortMapping>, NetworkError> {
        let mut taken: Vec<(String, Ipv4Addr, u16)> = inner
            .sandboxes
            .values()
            .flat_map(|s| s.ports.iter())
            .map(|p| (p.proto.clone(), p.host_ip, p.host_port))
            .collect();
        let mut out = Vec::new();
        for b in ports {
            let proto = if b.proto.is_empty() {
                "tcp".to_string()
            } else {
                b.proto.to_ascii_lowercase()
            };
            if proto != "tcp" && proto != "udp" {
                return Err(NetworkError::invalid(
                    "publish",
                    format!("invalid proto: {}", b.proto),
                ));
            }
            let host_ip: Ipv4Addr = if b.host_ip.is_empty() {
                Ipv4Addr::UNSPECIFIED
            } else {
                b.host_ip.parse().map_err(|_| {
                    NetworkError::invalid("publish", format!("invalid IP address: {}", b.host_ip))
                })?
            };
            let clash = |taken: &[(String, Ipv4Addr, u16)], port: u16| {
                taken.iter().any(|(p, ip, hp)| {
                    *p == proto
                        && *hp == port
                        && (ip.is_unspecified() || host_ip.is_unspecified() || *ip == host_ip)
                })
            };
            let (lo, hi, explicit) = match b.host_port.as_str() {
                "" | "0" => (*EPHEMERAL.start(), *EPHEMERAL.end(), false),
                s => {
                    let parse = |x: &str| {
                        x.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                            NetworkError::invalid("publish", format!("invalid hostPort: {s}"))
                        })
                    };
                    match s.split_once('-') {
                        Some((a, z)) => {
                            let (a, z) = (parse(a)?, parse(z)?);
                            if a > z {
                                return Err(NetworkError::invalid(
                                    "publish",
                                    format!("invalid hostPort: {s}"),
                                ));
                            }
                            (a, z, a == z)
                        }
                        None => {
                            let p = parse(s)?;
                            (p, p, true)
                        }
                    }
                }
            };
            let port = if explicit {
                if clash(&taken, lo) {
                    return Err(NetworkError::Conflict(format!(
                        "Bind for {host_ip}:{lo} failed: port is already allocated"
                    )));
                }
                if !Self::port_free(&proto, host_ip, lo) {
                    return Err(NetworkError::Conflict(format!(
                        "driver failed programming external connectivity: listen {proto}4 {host_ip}:{lo}: bind: address already in use"
                    )));
                }
                lo
            } else {
                let span = (hi - lo) as u32 + 1;
                let mut r = [0u8; 4];
                getrandom::fill(&mut r).expect("random bytes");
                let start = u32::from_le_bytes(r) % span;
                (0..span)
                    .map(|i| lo + ((start + i) % span) as u16)
                    .find(|p| !clash(&taken, *p) && Self::port_free(&proto, host_ip, *p))
                    .ok_or_else(|| {
                        NetworkError::Conflict(format!(
                            "no free host port in {lo}-{hi} for {}/{proto}",
                            b.container_port
                        ))
                    })?
            };
            taken.push((proto.clone(), host_ip, port));
            out.push(PortMapping {
                container_port: b.container_port,
                proto,
                host_ip,
                host_port: port,
            });
        }
        Ok(out)
    }

    /// Creates a container's sandbox: a new network namespace with one endpoint per requested
    /// network (in order: `eth0`, `eth1`, ...; the default route goes through the first
    /// non-internal one), the published ports, and the DNS server if a user-defined network is
    /// among them. Errors leave nothing behind.
    pub fn setup(&self, req: &SandboxRequest) -> Result<Sandbox, NetworkError> {
        let sb = self.setup_begin(req)?;
        self.setup_finish(&sb)?;
        Ok(sb)
    }

    /// The first half of [`Networks::setup`], for callers that overlap the slow half with other
    /// work (the container's runtime `create`): reserves addresses and ports, brings the bridges
    /// up and creates the (empty, `lo` up) namespace, so its path can be handed to the runtime.
    /// The returned sandbox is final (addresses, ports); it is not usable until
    /// [`Networks::setup_finish`] returned `Ok`. Errors leave nothing behind.
    pub fn setup_begin(&self, req: &SandboxRequest) -> Result<Sandbox, NetworkError> {
        let cid = &req.container_id;
        if req.networks.is_empty() {
            return Err(NetworkError::invalid("network", "no network to connect to"));
        }
        let netns = self
            .cfg
            .exec_root
            .join("netns")
            .join(&cid[..12.min(cid.len())]);
        let (sb, nets) = {
            let mut inner = self.lock();
            if inner.sandboxes.contains_key(cid) {
                return Err(NetworkError::Conflict(format!(
                    "container {cid} already has a network sandbox"
                )));
            }
            let mut endpoints: Vec<Endpoint> = Vec::new();
            let mut nets = Vec::new();
            for (i, r) in req.networks.iter().enumerate() {
                let used: HashSet<IpAddr> = endpoints.iter().flat_map(endpoint_ips).collect();
                let (net, mut ep) = Self::plan_endpoint(&inner, cid, &req.name, r, i, &used)?;
                if endpoints.iter().any(|e| e.network_id == net.id) {
                    return Err(NetworkError::invalid(
                        "network",
                        format!("container is already connected to network {}", net.name),
                    ));
                }
                if endpoints.iter().any(|e| e.gateway.is_some()) {
                    // Only one default route.
                    ep.gateway = None;
                }
                if endpoints.iter().any(|e| e.default6) {
                    ep.default6 = false;
                }
                endpoints.push(ep);
                nets.push(net);
            }
            let ports = Self::plan_ports(&inner, &req.ports)?;
            let sb = Sandbox {
                container_id: cid.clone(),
                netns: netns.clone(),
                endpoints,
                ports,
                dns: req.dns.clone(),
            };
            // Reserve addresses and ports now; kernel work happens unlocked.
            inner.sandboxes.insert(cid.clone(), sb.clone());
            (sb, nets)
        };
        let begun = nets
            .iter()
            .try_for_each(|n| self.bring_up(n))
            .and_then(|()| link::create_netns(&sb.netns));
        match begun {
            Ok(()) => Ok(sb),
            Err(e) => {
                self.teardown(cid);
                Err(e)
            }
        }
    }

    /// The second half of [`Networks::setup`]: endpoints (veth pairs into the namespace made by
    /// [`Networks::setup_begin`]), DNS, the sandbox record and published ports. Safe to run on
    /// another thread while the namespace is being joined by a container. On error the whole
    /// sandbox is torn down.
    pub fn setup_finish(&self, sb: &Sandbox) -> Result<(), NetworkError> {
        let nets: Vec<Network> = {
            let inner = self.lock();
            sb.endpoints
                .iter()
                .filter_map(|ep| inner.networks.get(&ep.network_id).cloned())
                .collect()
        };
        match self.build_sandbox(sb, &nets) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.teardown(&sb.container_id);
                Err(e)
            }
        }
    }

    /// The gateway of an endpoint as configured in the kernel (internal networks: none;
    /// only the first endpoint with a gateway gets the default route).
    fn build_sandbox(&self, sb: &Sandbox, nets: &[Network]) -> Result<(), NetworkError> {
        for ep in &sb.endpoints {
            let bridge = nets
                .iter()
                .find(|n| n.id == ep.network_id)
                .map(|n| n.bridge.as_str())
                .unwrap_or_default();
            attach_endpoint(&sb.netns, bridge, ep)?;
        }
        if nets.iter().any(|n| n.dns) {
            let (udp, tcp) = link::dns_sockets(&sb.netns)?;
            self.dns.add(&sb.container_id, udp, tcp);
        }
        let data = serde_json::to_vec_pretty(sb).expect("sandbox serializes");
        write_atomic(&self.sandbox_path(&sb.container_id), &data)?;
        self.refresh_dns();
        if !sb.ports.is_empty() {
            self.sync_rules(false)?;
        }
        Ok(())
    }

    /// Removes a container's sandbox: endpoints, namespace, published ports, DNS names.
    /// Idempotent; never fails (problems are logged).
    pub fn teardown(&self, container_id: &str) {
        let sb = self.lock().sandboxes.remove(container_id);
        let netns = self
            .cfg
            .exec_root
            .join("netns")
            .join(&container_id[..12.min(container_id.len())]);
        self.dns.remove(container_id);
        if let Some(sb) = &sb {
            for ep in &sb.endpoints {
                if let Err(e) = link::delete_link(&ep.host_ifname) {
                    tracing::warn!("teardown {container_id}: {e}");
                }
            }
        }
        link::remove_netns(&netns);
        let _ = std::fs::remove_file(self.sandbox_path(container_id));
        if let Some(sb) = sb {
            self.refresh_dns();
            if !sb.ports.is_empty() {
                if let Err(e) = self.sync_rules(false) {
                    tracing::warn!("teardown {container_id}: {e}");
                }
            }
        }
    }

    /// [`Networks::teardown`] for a container that just exited, without waiting for its links
    /// to go: the namespace, DNS names and published ports go now; the veth pairs (whose
    /// deletion waits for RCU grace periods in the kernel, ~10 ms each) are deleted on a
    /// background thread, their addresses reserved until then. [`Networks::settle`] waits for
    /// such deletions; removing a network, reconciling and shutting down do.
    pub fn release(&self, container_id: &str) {
        let sb = {
            let mut inner = self.lock();
            let sb = inner.sandboxes.remove(container_id);
            if let Some(sb) = &sb {
                for ep in &sb.endpoints {
                    for ip in endpoint_ips(ep) {
                        inner.releasing.push((ep.network_id.clone(), ip));
                    }
                }
            }
            sb
        };
        let netns = self
            .cfg
            .exec_root
            .join("netns")
            .join(&container_id[..12.min(container_id.len())]);
        self.dns.remove(container_id);
        link::remove_netns(&netns);
        let _ = std::fs::remove_file(self.sandbox_path(container_id));
        let Some(sb) = sb else { return };
        self.refresh_dns();
        if !sb.ports.is_empty() {
            if let Err(e) = self.sync_rules(false) {
                tracing::warn!("release {container_id}: {e}");
            }
        }
        let me = Arc::clone(&self.inner);
        let job = std::thread::Builder::new()
            .name("barge-netdel".into())
            .spawn(move || {
                for ep in &sb.endpoints {
                    if let Err(e) = link::delete_link(&ep.host_ifname) {
                        tracing::warn!("release {}: {e}", sb.container_id);
                    }
                }
                let mut inner = me.lock().unwrap_or_else(|e| e.into_inner());
                inner.releasing.retain(|(n, ip)| {
                    !sb.endpoints
                        .iter()
                        .any(|ep| &ep.network_id == n && endpoint_ips(ep).contains(ip))
                });
            });
        match job {
            Ok(h) => {
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                pending.retain(|h| !h.is_finished());
                pending.push(h);
            }
            Err(e) => tracing::warn!("release {container_id}: cannot spawn link deletion: {e}"),
        }
    }

    /// Waits for the link deletions started by [`Networks::release`].
    pub fn settle(&self) {
        let jobs = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        for j in jobs {
            let _ = j.join();
        }
    }

    /// Connects a running container (one with a sandbox) to another network.
    pub fn connect(
        &self,
        container_id: &str,
        name: &str,
        req: &EndpointRequest,
    ) -> Result<Endpoint, NetworkError> {
        let (sb, net, ep) = {
            let mut inner = self.lock();
            let Some(sb) = inner.sandboxes.get(container_id).cloned() else {
                return Err(NetworkError::Conflict(format!(
                    "container {container_id} has no network sandbox"
                )));
            };
            let net = Self::find(&inner, &req.network)?.clone();
            if sb.endpoints.iter().any(|e| e.network_id == net.id) {
                return Err(NetworkError::Conflict(format!(
                    "endpoint with name {name} already exists in network {}",
                    net.name
                )));
            }
            let idx = (0..)
                .find(|i| !sb.endpoints.iter().any(|e| e.ifname == format!("eth{i}")))
                .unwrap_or(0);
            let (net, mut ep) =
                Self::plan_endpoint(&inner, container_id, name, req, idx, &HashSet::new())?;
            if sb.endpoints.iter().any(|e| e.gateway.is_some()) {
                ep.gateway = None;
            }
            if sb.endpoints.iter().any(|e| e.default6) {
                ep.default6 = false;
            }
            let mut sb2 = sb.clone();
            sb2.endpoints.push(ep.clone());
            inner.sandboxes.insert(container_id.to_string(), sb2);
            (sb, net, ep)
        };
        let r = (|| {
            self.bring_up(&net)?;
            attach_endpoint(&sb.netns, &net.bridge, &ep)?;
            if net.dns && !self.uses_dns(&sb) {
                let (udp, tcp) = link::dns_sockets(&sb.netns)?;
                self.dns.add(container_id, udp, tcp);
            }
            Ok(())
        })();
        let mut inner = self.lock();
        match r {
            Ok(()) => {
                if let Some(s) = inner.sandboxes.get(container_id) {
                    let data = serde_json::to_vec_pretty(s).expect("sandbox serializes");
                    write_atomic(&self.sandbox_path(container_id), &data)?;
                }
                drop(inner);
                self.refresh_dns();
                Ok(ep)
            }
            Err(e) => {
                inner.sandboxes.insert(container_id.to_string(), sb);
                Err(e)
            }
        }
    }

    /// Disconnects a running container from a network.
    pub fn disconnect(&self, container_id: &str, network: &str) -> Result<(), NetworkError> {
        let (sb, ep) = {
            let mut inner = self.lock();
            let net = Self::find(&inner, network)?.clone();
            let Some(sb) = inner.sandboxes.get_mut(container_id) else {
                return Err(NetworkError::Conflict(format!(
                    "container {container_id} is not connected to network {}",
                    net.name
                )));
            };
            let Some(pos) = sb.endpoints.iter().position(|e| e.network_id == net.id) else {
                return Err(NetworkError::Conflict(format!(
                    "container {container_id} is not connected to network {}",
                    net.name
                )));
            };
            let ep = sb.endpoints.remove(pos);
            let sb = sb.clone();
            let data = serde_json::to_vec_pretty(&sb).expect("sandbox serializes");
            write_atomic(&self.sandbox_path(container_id), &data)?;
            (sb, ep)
        };
        let _ = link::delete_in_netns(&sb.netns, &ep.ifname);
        let _ = link::delete_link(&ep.host_ifname);
        if !self.uses_dns(&sb) {
            self.dns.remove(container_id);
        }
        self.refresh_dns();
        if !sb.ports.is_empty() {
            self.sync_rules(false)?;
        }
        Ok(())
    }

    fn refresh_dns(&self) {
        let inner = self.lock();
        let mut t = dns::Table {
            upstreams: self
                .cfg
                .dns
                .iter()
                .map(|ip| std::net::SocketAddr::new(*ip, 53))
                .collect(),
            ..Default::default()
        };
        for sb in inner.sandboxes.values() {
            let mut nets = Vec::new();
            for ep in &sb.endpoints {
                let Some(n) = inner.networks.get(&ep.network_id) else {
                    continue;
                };
                if !n.dns {
                    continue;
                }
                nets.push(n.id.clone());
                let names = t.names.entry(n.id.clone()).or_default();
                for name in &ep.dns_names {
                    let v = names.entry(name.clone()).or_default();
                    for ip in endpoint_ips(ep) {
                        if !v.contains(&ip) {
                            v.push(ip);
                        }
                    }
                }
            }
            if !nets.is_empty() {
                t.sandboxes.insert(sb.container_id.clone(), nets);
                if !sb.dns.is_empty() {
                    t.sandbox_upstreams.insert(
                        sb.container_id.clone(),
                        sb.dns
                            .iter()
                            .map(|ip| std::net::SocketAddr::new(*ip, 53))
                            .collect(),
                    );
                }
            }
        }
        drop(inner);
        *self.dns.table.write().unwrap_or_else(|e| e.into_inner()) = t;
    }

    fn desired_rules(inner: &Inner) -> (Vec<nft::RuleNet>, Vec<nft::RulePort>) {
        let nets: Vec<nft::RuleNet> = inner
            .networks
            .values()
            .filter(|n| inner.ensured.contains(&n.bridge))
            .filter_map(|n| {
                n.ipam.as_ref().map(|i| nft::RuleNet {
                    bridge: n.bridge.clone(),
                    subnet: i.subnet,
                    subnet6: n.ipam6.as_ref().map(|i6| i6.subnet),
                    internal: n.internal,
                })
            })
            .collect();
        let mut ports = Vec::new();
        for sb in inner.sandboxes.values() {
            let Some(ep) = sb.endpoints.first() else {
                continue;
            };
            for p in &sb.ports {
                ports.push(nft::RulePort {
                    proto: p.proto.clone(),
                    host_ip: p.host_ip,
                    host_port: p.host_port,
                    container_ip: ep.ip,
                    // Ports published on every address also answer on the host's IPv6
                    // addresses when the container has one (not on ::1: see nft.rs).
                    container_ip6: ep
                        .ip6
                        .map(|(ip, _)| ip)
                        .filter(|_| p.host_ip.is_unspecified()),
                    container_port: p.container_port,
                });
            }
        }
        (nets, ports)
    }

    /// Applies the rules if they differ from what was applied last (always with `force`).
    fn sync_rules(&self, force: bool) -> Result<(), NetworkError> {
        // The rules lock keeps concurrent changes in order: whoever holds it applies the
        // state as of then (any later change syncs again after it), while `inner` is only
        // held to read that state.
        let _rules = self.rules_lock.lock().unwrap_or_else(|e| e.into_inner());
        let want = {
            let inner = self.lock();
            let want = Self::desired_rules(&inner);
            if !force && inner.applied.as_ref() == Some(&want) {
                return Ok(());
            }
            want
        };
        // Nothing to forward or publish: no table at all.
        if want.0.is_empty() && want.1.is_empty() {
            nft::delete(&self.cfg.table)?;
        } else {
            nft::apply(&self.cfg.table, &want.0, &want.1)?;
        }
        // Another firewall (Docker's FORWARD drop policy) must let barge's bridges through.
        let bridges: Vec<String> = want.0.iter().map(|n| n.bridge.clone()).collect();
        if let Err(e) = nft::sync_foreign(&self.cfg.table, &bridges) {
            tracing::warn!("accept rules in ip filter: {e}");
        }
        self.lock().applied = Some(want);
        Ok(())
    }

    /// Brings kernel state in line with the records after a daemon (re)start: sandboxes of
    /// containers not in `running` are torn down; the DNS server is restarted for the others;
    /// bridges of every bridge network in use exist; links on barge bridges and namespace
    /// files nobody owns are deleted; the rules are re-applied.
    pub fn reconcile(&self, running: &HashSet<String>) {
        self.settle();
        let stale: Vec<String> = self
            .lock()
            .sandboxes
            .keys()
            .filter(|id| !running.contains(*id))
            .cloned()
            .collect();
        for id in stale {
            self.teardown(&id);
        }
        let (sandboxes, networks): (Vec<Sandbox>, Vec<Network>) = {
            let inner = self.lock();
            (
                inner.sandboxes.values().cloned().collect(),
                inner.networks.values().cloned().collect(),
            )
        };
        for n in &networks {
            let in_use = sandboxes
                .iter()
                .any(|s| s.endpoints.iter().any(|e| e.network_id == n.id));
            // User-defined networks always have their bridge (as Docker); the default one
            // only while used.
            if n.ipam.is_some() && (in_use || n.dns || link::link_exists(&n.bridge)) {
                if let Err(e) = self.bring_up(n) {
                    tracing::warn!("network {}: {e}", n.name);
                }
            }
            let owned: HashSet<&str> = sandboxes
                .iter()
                .flat_map(|s| s.endpoints.iter().map(|e| e.host_ifname.as_str()))
                .collect();
            for port in link::bridge_ports(&n.bridge) {
                if !owned.contains(port.as_str()) {
                    tracing::info!("removing stale link {port} from {}", n.bridge);
                    let _ = link::delete_link(&port);
                }
            }
        }
        for sb in &sandboxes {
            if self.uses_dns(sb) {
                match link::dns_sockets(&sb.netns) {
                    Ok((udp, tcp)) => self.dns.add(&sb.container_id, udp, tcp),
                    Err(e) => tracing::warn!("dns for {}: {e}", sb.container_id),
                }
            }
        }
        let keep: HashSet<PathBuf> = sandboxes.iter().map(|s| s.netns.clone()).collect();
        if let Ok(rd) = std::fs::read_dir(self.cfg.exec_root.join("netns")) {
            for e in rd.flatten() {
                if !keep.contains(&e.path()) {
                    link::remove_netns(&e.path());
                }
            }
        }
        self.refresh_dns();
        if let Err(e) = self.sync_rules(true) {
            tracing::warn!("network rules: {e}");
        }
    }

    /// Daemon shutdown: with no sandbox left, removes every bridge and the rules table, so a
    /// stopped daemon leaves nothing of barge's in the kernel. Running containers keep theirs.
    pub fn shutdown(&self) {
        self.settle();
        let inner = self.lock();
        if !inner.sandboxes.is_empty() {
            return;
        }
        let bridges: Vec<String> = inner
            .networks
            .values()
            .filter(|n| n.ipam.is_some())
            .map(|n| n.bridge.clone())
            .collect();
        drop(inner);
        for b in bridges {
            if link::link_exists(&b) {
                let _ = link::delete_link(&b);
            }
        }
        let _ = nft::delete(&self.cfg.table);
        let _ = nft::sync_foreign(&self.cfg.table, &[]);
        self.restore_forwarding6();
        let mut inner = self.lock();
        inner.ensured.clear();
        inner.applied = None;
    }

    /// Turns on `net.ipv6.conf.all.forwarding` for a non-internal IPv6 network (its
    /// containers' traffic to other hosts, and the replies, are routed by the host; dockerd
    /// does the same; no per-interface switch covers the replies). The change is host-wide,
    /// and so is its bookkeeping, so that several daemons (each with its own `--exec-root`)
    /// share it: the value found is recorded in [`FORWARDING6_RECORD`] (tmpfs, like the
    /// sysctl) and each daemon relying on it holds a claim, an abstract socket named
    /// [`FORWARDING6_CLAIM`]`<table>` (gone with its process however it ends). The last daemon
    /// to let go restores the recorded value ([`Networks::restore_forwarding6`]). A value
    /// found on without a record is the administrator's: barge neither claims nor restores it.
    /// Internal networks never need it.
    fn enable_forwarding6(&self) {
        let mut inner = self.lock();
        if inner.forwarding6.is_some() {
            return;
        }
        let _guard = match forwarding6_lock() {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!("ipv6 forwarding not enabled: {e}");
                return;
            }
        };
        let record = Path::new(FORWARDING6_RECORD);
        let was = std::fs::read_to_string(FORWARDING6).unwrap_or_default();
        if was.trim() == "0" {
            if !record.exists() {
                if let Err(e) = write_atomic(record, b"0\n") {
                    tracing::warn!("ipv6 forwarding not enabled: {e}");
                    return;
                }
            }
            if let Err(e) = std::fs::write(FORWARDING6, "1") {
                tracing::warn!("cannot set {FORWARDING6}=1: {e}");
                return;
            }
        } else if !record.exists() {
            return;
        }
        use std::os::linux::net::SocketAddrExt;
        let name = format!("{FORWARDING6_CLAIM}{}", self.cfg.table);
        let claim = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .and_then(|a| std::os::unix::net::UnixListener::bind_addr(&a));
        match claim {
            Ok(l) => inner.forwarding6 = Some(l),
            Err(e) => tracing::warn!("ipv6 forwarding claim {name}: {e}"),
        }
    }

    /// Lets go of this daemon's claim on IPv6 forwarding (see
    /// [`Networks::enable_forwarding6`]) and, when no other daemon holds one and a recorded
    /// value exists (also one left by a daemon that crashed), restores it.
    fn restore_forwarding6(&self) {
        let mut inner = self.lock();
        inner.forwarding6 = None;
        let _guard = match forwarding6_lock() {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!("ipv6 forwarding not restored: {e}");
                return;
            }
        };
        let Ok(was) = std::fs::read_to_string(FORWARDING6_RECORD) else {
            return;
        };
        let claims = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
        if claims
            .lines()
            .any(|l| l.contains(&format!(" @{FORWARDING6_CLAIM}")))
        {
            return;
        }
        if let Err(e) = std::fs::write(FORWARDING6, was.trim()) {
            tracing::warn!("cannot restore {FORWARDING6}: {e}");
            return;
        }
        let _ = std::fs::remove_file(FORWARDING6_RECORD);
    }

    /// Traffic counters of a container's interfaces (`eth0`, ...), from the host ends of its
    /// veth pairs (whose receive is the container's transmit). Empty without a sandbox.
    pub fn interface_stats(&self, container_id: &str) -> Vec<(String, InterfaceStats)> {
        let Some(sb) = self.sandbox(container_id) else {
            return Vec::new();
        };
        sb.endpoints
            .iter()
            .map(|ep| {
                let dir = Path::new("/sys/class/net")
                    .join(&ep.host_ifname)
                    .join("statistics");
                let read = |f: &str| -> u64 {
                    std::fs::read_to_string(dir.join(f))
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(0)
                };
                (
                    ep.ifname.clone(),
                    InterfaceStats {
                        rx_bytes: read("tx_bytes"),
                        rx_packets: read("tx_packets"),
                        rx_errors: read("tx_errors"),
                        rx_dropped: read("tx_dropped"),
                        tx_bytes: read("rx_bytes"),
                        tx_packets: read("rx_packets"),
                        tx_errors: read("rx_errors"),
                        tx_dropped: read("rx_dropped"),
                    },
                )
            })
            .collect()
    }

    /// The daemon's table name (for diagnostics and tests).
    pub fn table(&self) -> &str {
        &self.cfg.table
    }
}
