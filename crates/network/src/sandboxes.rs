//! Per-container sandboxes: planning endpoints (addresses, MACs, interface names) and
//! published ports under the lock, building the namespace and its veth pairs outside it
//! (`setup_begin`/`setup_finish`), tearing down and releasing, `network connect` and
//! `disconnect` on a running container, and interface counters.
//!
//! **Invariants:** an address or host port belongs to at most one sandbox: it is reserved
//! under the lock (the sandbox enters `Inner::sandboxes` before any kernel work, which runs
//! unlocked) and released ones stay reserved in `Inner::releasing` until their links are
//! gone; a sandbox that fails to build is torn down whole (`teardown`); its record,
//! `<exec-root>/network/<container-id>.json`, is rewritten on every change to its endpoints.
//! A pod sandbox ([`SandboxRequest::pod`]) also holds an IPC and a UTS namespace and a
//! `/dev/shm` tmpfs under `<exec-root>/podns/<key>`, made and removed with its network
//! namespace.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{
    endpoint_ips, ipam, is_pod_sandbox, link, random_hex, write_atomic, Endpoint, EndpointRequest,
    Inner, InterfaceStats, Network, NetworkError, Networks, PodNamespaces, PortBinding,
    PortMapping, Sandbox, SandboxRequest,
};

/// Host ports picked for `-P` / `-p CONTAINER` come from here (Docker's range).
const EPHEMERAL: std::ops::RangeInclusive<u16> = 49153..=65535;

/// Binds the userland proxies of `sb`'s IPv6 mappings, towards its first endpoint's address.
pub(crate) fn proxies(sb: &Sandbox) -> Result<Vec<crate::proxy::Forward>, NetworkError> {
    let Some(ep) = sb.endpoints.first() else {
        return Ok(Vec::new());
    };
    sb.ports
        .iter()
        .filter_map(|p| match p.host_ip {
            IpAddr::V6(ip) => Some((p, ip)),
            IpAddr::V4(_) => None,
        })
        .map(|(p, ip)| {
            let target = std::net::SocketAddr::from((ep.ip, p.container_port));
            crate::proxy::bind(&p.proto, ip, p.host_port, target)
        })
        .collect()
}

/// Creates the veth pair of endpoint `ep` between `net`'s bridge and the namespace at
/// `netns` (with the network's MTU option, if it has one).
fn attach_endpoint(netns: &Path, net: &Network, ep: &Endpoint) -> Result<(), NetworkError> {
    link::attach_veth(
        netns,
        &link::Veth {
            bridge: &net.bridge,
            mtu: crate::mtu_option(&net.options),
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

impl Networks {
    /// The sandbox of a running container, if it has one.
    pub fn sandbox(&self, container_id: &str) -> Option<Sandbox> {
        self.lock().sandboxes.get(container_id).cloned()
    }

    /// The keys of the pods' sandboxes (see [`crate::POD_SANDBOX_PREFIX`]).
    pub fn pod_sandboxes(&self) -> Vec<String> {
        let inner = self.lock();
        let keys = inner.sandboxes.keys().filter(|k| crate::is_pod_sandbox(k));
        keys.cloned().collect()
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
        let (mut used4, mut used6) = (HashSet::<Ipv4Addr>::new(), HashSet::<Ipv6Addr>::new());
        for ip in &used {
            match ip {
                IpAddr::V4(a) => used4.insert(*a),
                IpAddr::V6(a) => used6.insert(*a),
            };
        }
        let ip = ipam::allocate(ipam, &used4, req.ipv4_address)?;
        let ip6 = match (&net.ipam6, req.ipv6_address) {
            (Some(i6), want) => Some((ipam::allocate6(i6, &used6, want)?, i6.subnet.prefix_len())),
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
                links: req.links.clone(),
            },
        ))
    }

    /// Whether `ip:port` is free for `proto` (IPv6: on IPv6 only, as the proxy binds it).
    fn port_free(proto: &str, ip: IpAddr, port: u16) -> bool {
        match ip {
            IpAddr::V6(ip) => crate::proxy::port_free6(proto, ip, port),
            IpAddr::V4(ip) => match proto {
                "udp" => std::net::UdpSocket::bind((ip, port)).is_ok(),
                _ => std::net::TcpListener::bind((ip, port)).is_ok(),
            },
        }
    }

    /// The host ports of `ports`, allocated. A binding on every address becomes two mappings
    /// with one port, `0.0.0.0` (nftables) and `::` (the userland proxy, when the host has
    /// IPv6), as dockerd ≥ 20.10 reports them; an explicit address, one of its family.
    fn plan_ports(inner: &Inner, ports: &[PortBinding]) -> Result<Vec<PortMapping>, NetworkError> {
        let mut taken: Vec<(String, IpAddr, u16)> = inner
            .sandboxes
            .values()
            .flat_map(|s| s.ports.iter())
            .map(|p| (p.proto.clone(), p.host_ip, p.host_port))
            .collect();
        let ipv6 = ports.iter().any(|b| b.host_ip.is_empty()) && crate::proxy::ipv6_available();
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
            let ips: Vec<IpAddr> = if b.host_ip.is_empty() {
                let mut v = vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)];
                if ipv6 {
                    v.push(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
                }
                v
            } else {
                let ip = b.host_ip.trim_start_matches('[').trim_end_matches(']');
                vec![ip.parse().map_err(|_| {
                    NetworkError::invalid("publish", format!("invalid IP address: {}", b.host_ip))
                })?]
            };
            // Taken by another binding of the same family: the same address, or either is
            // the family's every-address.
            let clash = |taken: &[(String, IpAddr, u16)], host_ip: IpAddr, port: u16| {
                taken.iter().any(|(p, ip, hp)| {
                    *p == proto
                        && *hp == port
                        && ip.is_ipv4() == host_ip.is_ipv4()
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
                for &host_ip in &ips {
                    let shown = match host_ip {
                        IpAddr::V6(ip) => format!("[{ip}]"),
                        ip => ip.to_string(),
                    };
                    if clash(&taken, host_ip, lo) {
                        return Err(NetworkError::Conflict(format!(
                            "Bind for {shown}:{lo} failed: port is already allocated"
                        )));
                    }
                    if !Self::port_free(&proto, host_ip, lo) {
                        let fam = if host_ip.is_ipv4() { "4" } else { "6" };
                        return Err(NetworkError::Conflict(format!(
                            "driver failed programming external connectivity: listen {proto}{fam} {shown}:{lo}: bind: address already in use"
                        )));
                    }
                }
                lo
            } else {
                let span = (hi - lo) as u32 + 1;
                let mut r = [0u8; 4];
                getrandom::fill(&mut r).expect("random bytes");
                let start = u32::from_le_bytes(r) % span;
                (0..span)
                    .map(|i| lo + ((start + i) % span) as u16)
                    .find(|p| {
                        ips.iter()
                            .all(|&ip| !clash(&taken, ip, *p) && Self::port_free(&proto, ip, *p))
                    })
                    .ok_or_else(|| {
                        NetworkError::Conflict(format!(
                            "no free host port in {lo}-{hi} for {}/{proto}",
                            b.container_port
                        ))
                    })?
            };
            for host_ip in ips {
                taken.push((proto.clone(), host_ip, port));
                out.push(PortMapping {
                    container_port: b.container_port,
                    proto: proto.clone(),
                    host_ip,
                    host_port: port,
                });
            }
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
                pod: req.pod.as_ref().map(|_| {
                    let dir = self.pod_namespaces_dir(cid);
                    PodNamespaces {
                        ipc: dir.join("ipc"),
                        uts: dir.join("uts"),
                        shm: dir.join("shm"),
                    }
                }),
            };
            // Reserve addresses and ports now; kernel work happens unlocked.
            inner.sandboxes.insert(cid.clone(), sb.clone());
            (sb, nets)
        };
        let begun = nets
            .iter()
            .try_for_each(|n| self.bring_up(n))
            .and_then(|()| link::create_netns(&sb.netns))
            .and_then(|()| match &req.pod {
                Some(p) => link::create_pod_namespaces(
                    &self.pod_namespaces_dir(cid),
                    &p.hostname,
                    p.shm_size,
                ),
                None => Ok(()),
            });
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
            let Some(net) = nets.iter().find(|n| n.id == ep.network_id) else {
                return Err(NetworkError::NotFound(ep.network_name.clone()));
            };
            attach_endpoint(&sb.netns, net, ep)?;
        }
        if nets.iter().any(|n| n.dns) {
            let (udp, tcp) = link::dns_sockets(&sb.netns)?;
            self.dns.add(&sb.container_id, udp, tcp);
        }
        let forwards = proxies(sb)?;
        if !forwards.is_empty() {
            self.dns.proxy(&sb.container_id, forwards);
        }
        let data = serde_json::to_vec_pretty(sb).expect("sandbox serializes");
        write_atomic(&self.sandbox_path(&sb.container_id), &data)?;
        self.refresh_dns();
        if !sb.ports.is_empty() {
            self.sync_rules(false)?;
        }
        Ok(())
    }

    /// Where a pod sandbox's IPC and UTS namespaces and `/dev/shm` are mounted:
    /// `<exec-root>/podns/<key>`.
    pub(crate) fn pod_namespaces_dir(&self, key: &str) -> PathBuf {
        self.cfg.exec_root.join("podns").join(key)
    }

    /// Unmounts and removes a pod sandbox's IPC/UTS namespaces and `/dev/shm` (none for other
    /// sandboxes).
    fn remove_pod_namespaces(&self, key: &str) {
        if is_pod_sandbox(key) {
            link::remove_pod_namespaces(&self.pod_namespaces_dir(key));
        }
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
        self.remove_pod_namespaces(container_id);
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
        self.remove_pod_namespaces(container_id);
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
            attach_endpoint(&sb.netns, &net, &ep)?;
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
}
