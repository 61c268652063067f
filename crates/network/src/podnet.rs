//! The cluster's pod network between nodes (flannel's job in k3s): each node's pods are on a
//! bridge over the node's podCIDR, and this module makes the other nodes' podCIDRs reachable
//! without NAT, through one of flannel's two usual backends:
//!
//! - **host-gw**: one route per remote node, `<podCIDR> via <node IP>` (the kernel picks the
//!   link that reaches the node: the nodes must share a link);
//! - **VXLAN** (flannel's default, its `vxlan` backend): one device [`VXLAN_DEVICE`] (VNI
//!   [`VXLAN_VNI`], UDP port [`VXLAN_PORT`], learning off, `local` = this node's IP) holding
//!   this node's `<podCIDR>.0/32`; per remote node a route `<podCIDR> via <remote .0> dev
//!   barge.vxlan onlink`, a permanent neighbour entry `<remote .0>` → the remote VtepMAC and a
//!   forwarding-database entry VtepMAC → `dst <remote node IP>`.
//!
//! Ownership: every route this module makes carries the route protocol [`ROUTE_PROTOCOL`], and
//! only routes with it (or on its own device) are ever removed, so the engine's bridges, the
//! host's own routes and other tools' routes are never touched. [`PodNet::sync`] is the
//! idempotent reconcile (routes, neighbours and FDB entries that nobody wants are removed,
//! the wanted ones added or replaced); [`PodNet::add`] and [`PodNet::remove`] are the
//! incremental changes for one node.
//!
//! Spec references: flannel's [backends](https://github.com/flannel-io/flannel/blob/master/Documentation/backends.md)
//! and its `vxlan` backend's device set-up (`pkg/backend/vxlan/device.go`); k3s's
//! [`--flannel-backend`](https://docs.k3s.io/networking/basic-network-options).

use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteType,
};
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, LinkUnspec, LinkVxlan, RouteMessageBuilder};

use crate::error::NetworkError;
use crate::link::{add_address, in_thread, index_of, is_errno, runtime, with_netlink};

/// The VXLAN device (flannel's `flannel.1`).
pub const VXLAN_DEVICE: &str = "barge.vxlan";
/// The VXLAN network identifier (flannel's default VNI 1).
pub const VXLAN_VNI: u32 = 1;
/// The VXLAN UDP port (flannel's default 8472, the Linux kernel's historical port).
pub const VXLAN_PORT: u16 = 8472;
/// The route protocol (`rtm_protocol`) of every route this module makes, its ownership mark
/// (`ip route show proto 98`); 98 is unassigned in iproute2's `rt_protos`.
pub const ROUTE_PROTOCOL: u8 = 98;
/// What VXLAN encapsulation costs (outer Ethernet-less IPv4 + UDP + VXLAN headers, as
/// flannel subtracts from the external link's MTU).
const VXLAN_OVERHEAD: u32 = 50;
/// The main routing table.
const MAIN_TABLE: u8 = 254;

/// How pods reach pods on other nodes (k3s's `--flannel-backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// VXLAN overlay (flannel's and k3s's default).
    #[default]
    Vxlan,
    /// Plain routes via the other nodes' addresses (nodes on one link).
    HostGw,
    /// Nothing: pods reach only pods of their own node (some other tool routes).
    None,
}

impl Backend {
    /// The name flannel's `backend-type` annotation and k3s's flag use.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Vxlan => "vxlan",
            Backend::HostGw => "host-gw",
            Backend::None => "none",
        }
    }
}

impl FromStr for Backend {
    type Err = NetworkError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "vxlan" => Ok(Backend::Vxlan),
            "host-gw" => Ok(Backend::HostGw),
            "none" => Ok(Backend::None),
            _ => Err(NetworkError::invalid(
                "flannel backend",
                format!("{s:?} (vxlan, host-gw or none)"),
            )),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Another node of the cluster, as its Node object says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// Its InternalIP (flannel's `public-ip`).
    pub node_ip: Ipv4Addr,
    /// Its `spec.podCIDR`.
    pub pod_cidr: Ipv4Net,
    /// Its VXLAN device's MAC (flannel's `backend-data` `VtepMAC`); VXLAN only.
    pub vtep_mac: Option<[u8; 6]>,
}

/// This node's pod network between nodes: the backend, this node's IP and podCIDR.
#[derive(Debug, Clone)]
pub struct PodNet {
    pub backend: Backend,
    pub node_ip: Ipv4Addr,
    pub pod_cidr: Ipv4Net,
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// A podCIDR's `.0` address: the VXLAN device's address, the next hop for that podCIDR.
fn zero(cidr: &Ipv4Net) -> Ipv4Addr {
    cidr.network()
}

fn owned(r: &RouteMessage) -> bool {
    r.header.protocol == RouteProtocol::Other(ROUTE_PROTOCOL)
        && r.header.table == MAIN_TABLE
        && r.header.kind == RouteType::Unicast
}

fn route_dst(r: &RouteMessage) -> Option<Ipv4Net> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
            Ipv4Net::new(*ip, r.header.destination_prefix_length).ok()
        }
        _ => None,
    })
}

fn neigh_dst(n: &NeighbourMessage) -> Option<IpAddr> {
    n.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(IpAddr::V4(*ip)),
        _ => None,
    })
}

fn neigh_lladdr(n: &NeighbourMessage) -> Option<Vec<u8>> {
    n.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(l) => Some(l.clone()),
        _ => None,
    })
}

impl PodNet {
    /// This node's VtepMAC: derived from its IP (locally administered, unicast), so it is the
    /// same after the device is recreated and its annotation stays true.
    pub fn vtep_mac(&self) -> [u8; 6] {
        let o = self.node_ip.octets();
        [0x0e, 0xba, o[0], o[1], o[2], o[3]]
    }

    /// The route to `r`'s podCIDR this backend wants (none for [`Backend::None`], or a VXLAN
    /// node without a VtepMAC).
    fn route(&self, r: &Remote, vxlan: Option<u32>) -> Option<RouteMessage> {
        let b = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(r.pod_cidr.network(), r.pod_cidr.prefix_len())
            .protocol(RouteProtocol::Other(ROUTE_PROTOCOL));
        match (self.backend, vxlan) {
            (Backend::HostGw, _) => Some(b.gateway(r.node_ip).build()),
            (Backend::Vxlan, Some(idx)) if r.vtep_mac.is_some() => Some(
                b.gateway(zero(&r.pod_cidr))
                    .output_interface(idx)
                    .onlink()
                    .build(),
            ),
            _ => None,
        }
    }

    /// Sets up this node's side (the VXLAN device; none for the other backends) and removes
    /// what another backend left: the device when not VXLAN. Idempotent. Returns the VtepMAC
    /// for VXLAN.
    pub fn ensure(&self) -> Result<Option<[u8; 6]>, NetworkError> {
        in_thread(|| {
            let rt = runtime()?;
            with_netlink(&rt, |h| async move {
                if self.backend == Backend::Vxlan {
                    self.ensure_vxlan(&h).await.map(Some)
                } else {
                    delete_by_name(&h, VXLAN_DEVICE).await?;
                    Ok(None)
                }
            })
        })
    }

    async fn ensure_vxlan(&self, h: &Handle) -> Result<[u8; 6], NetworkError> {
        let mac = self.vtep_mac();
        if let Some(idx) = index_of(h, VXLAN_DEVICE).await? {
            if !self.vxlan_matches(h, idx, &mac).await? {
                delete_by_name(h, VXLAN_DEVICE).await?;
            }
        }
        let idx = match index_of(h, VXLAN_DEVICE).await? {
            Some(i) => i,
            None => {
                let mut b = LinkVxlan::new(VXLAN_DEVICE, VXLAN_VNI)
                    .local(self.node_ip)
                    .port(VXLAN_PORT)
                    .learning(false)
                    .address(mac.to_vec());
                if let Some((dev, mtu)) = self.external_link(h).await? {
                    b = b.dev(dev).mtu(mtu.saturating_sub(VXLAN_OVERHEAD));
                }
                match h.link().add(b.build()).execute().await {
                    Ok(()) => {}
                    Err(e) if is_errno(&e, libc::EEXIST) => {}
                    Err(e) => return Err(NetworkError::netlink(format!("add {VXLAN_DEVICE}"), e)),
                }
                index_of(h, VXLAN_DEVICE).await?.ok_or_else(|| {
                    NetworkError::netlink(format!("get link {VXLAN_DEVICE}"), "no such device")
                })?
            }
        };
        add_address(h, idx, zero(&self.pod_cidr).into(), 32).await?;
        h.link()
            .set(LinkUnspec::new_with_index(idx).up().build())
            .execute()
            .await
            .map_err(|e| NetworkError::netlink(format!("set {VXLAN_DEVICE} up"), e))?;
        // Drop an address of an earlier podCIDR (the node got another one).
        let mut addrs = h.address().get().set_link_index_filter(idx).execute();
        let mut stale = Vec::new();
        while let Some(a) = addrs
            .try_next()
            .await
            .map_err(|e| NetworkError::netlink(format!("addresses of {VXLAN_DEVICE}"), e))?
        {
            use netlink_packet_route::address::AddressAttribute;
            let ip = a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            if ip.is_some_and(|ip| ip != zero(&self.pod_cidr)) {
                stale.push(a);
            }
        }
        for a in stale {
            let _ = h.address().del(a).execute().await;
        }
        Ok(mac)
    }

    /// Whether the existing device is the one this node wants (VNI, port, local address, MAC).
    async fn vxlan_matches(
        &self,
        h: &Handle,
        idx: u32,
        mac: &[u8; 6],
    ) -> Result<bool, NetworkError> {
        use netlink_packet_route::link::{InfoData, InfoVxlan, LinkAttribute, LinkInfo};
        let mut links = h.link().get().match_index(idx).execute();
        let Some(l) = links
            .try_next()
            .await
            .map_err(|e| NetworkError::netlink(format!("get link {VXLAN_DEVICE}"), e))?
        else {
            return Ok(false);
        };
        let mut ok_mac = false;
        let mut info = Vec::new();
        for a in &l.attributes {
            match a {
                LinkAttribute::Address(m) => ok_mac = m.as_slice() == mac,
                LinkAttribute::LinkInfo(v) => {
                    for i in v {
                        if let LinkInfo::Data(InfoData::Vxlan(d)) = i {
                            info.clone_from(d);
                        }
                    }
                }
                _ => {}
            }
        }
        let has = |x: &InfoVxlan| info.contains(x);
        Ok(ok_mac
            && has(&InfoVxlan::Id(VXLAN_VNI))
            && has(&InfoVxlan::Port(VXLAN_PORT))
            && has(&InfoVxlan::Local(self.node_ip))
            && has(&InfoVxlan::Learning(false)))
    }

    /// The link holding this node's IP and its MTU (see [`external_link`]).
    async fn external_link(&self, h: &Handle) -> Result<Option<(u32, u32)>, NetworkError> {
        external_link(h, self.node_ip).await
    }

    /// Reconciles the kernel with `remotes` (every other node): adds or replaces their routes
    /// (and, for VXLAN, neighbour and FDB entries), removes this module's routes and entries
    /// for nodes not in the list. Call [`PodNet::ensure`] first.
    pub fn sync(&self, remotes: &[Remote]) -> Result<(), NetworkError> {
        in_thread(|| {
            let rt = runtime()?;
            with_netlink(&rt, |h| async move {
                let vxlan = self.vxlan_index(&h).await?;
                let want: Vec<Ipv4Net> = remotes
                    .iter()
                    .filter(|r| self.route(r, vxlan).is_some())
                    .map(|r| r.pod_cidr)
                    .collect();
                for r in owned_routes(&h).await? {
                    if !route_dst(&r).is_some_and(|d| want.contains(&d)) {
                        del_route(&h, r).await?;
                    }
                }
                if let Some(idx) = vxlan {
                    let zeros: Vec<IpAddr> = remotes
                        .iter()
                        .filter(|r| r.vtep_mac.is_some())
                        .map(|r| IpAddr::V4(zero(&r.pod_cidr)))
                        .collect();
                    let macs: Vec<Vec<u8>> = remotes
                        .iter()
                        .filter_map(|r| r.vtep_mac.map(|m| m.to_vec()))
                        .collect();
                    for n in neighbours(&h, idx, AddressFamily::Inet).await? {
                        if !neigh_dst(&n).is_some_and(|d| zeros.contains(&d)) {
                            del_neigh(&h, n).await?;
                        }
                    }
                    for n in neighbours(&h, idx, AddressFamily::Bridge).await? {
                        if !neigh_lladdr(&n).is_some_and(|m| macs.contains(&m)) {
                            del_neigh(&h, n).await?;
                        }
                    }
                }
                for r in remotes {
                    self.add_one(&h, r, vxlan).await?;
                }
                Ok(())
            })
        })
    }

    /// Makes `r`'s podCIDR reachable (idempotent: entries are replaced).
    pub fn add(&self, r: &Remote) -> Result<(), NetworkError> {
        in_thread(|| {
            let rt = runtime()?;
            with_netlink(&rt, |h| async move {
                let vxlan = self.vxlan_index(&h).await?;
                self.add_one(&h, r, vxlan).await
            })
        })
    }

    /// Removes what [`PodNet::add`] made for `r` (missing entries are fine).
    pub fn remove(&self, r: &Remote) -> Result<(), NetworkError> {
        in_thread(|| {
            let rt = runtime()?;
            with_netlink(&rt, |h| async move {
                for rt in owned_routes(&h).await? {
                    if route_dst(&rt) == Some(r.pod_cidr) {
                        del_route(&h, rt).await?;
                    }
                }
                if let Some(idx) = self.vxlan_index(&h).await? {
                    let z = IpAddr::V4(zero(&r.pod_cidr));
                    for n in neighbours(&h, idx, AddressFamily::Inet).await? {
                        if neigh_dst(&n) == Some(z) {
                            del_neigh(&h, n).await?;
                        }
                    }
                    if let Some(mac) = r.vtep_mac {
                        for n in neighbours(&h, idx, AddressFamily::Bridge).await? {
                            if neigh_lladdr(&n).as_deref() == Some(&mac[..]) {
                                del_neigh(&h, n).await?;
                            }
                        }
                    }
                }
                Ok(())
            })
        })
    }

    /// Removes everything this module made: its routes and the VXLAN device.
    pub fn teardown() -> Result<(), NetworkError> {
        in_thread(|| {
            let rt = runtime()?;
            with_netlink(&rt, |h| async move {
                for r in owned_routes(&h).await? {
                    del_route(&h, r).await?;
                }
                delete_by_name(&h, VXLAN_DEVICE).await
            })
        })
    }

    async fn vxlan_index(&self, h: &Handle) -> Result<Option<u32>, NetworkError> {
        if self.backend != Backend::Vxlan {
            return Ok(None);
        }
        index_of(h, VXLAN_DEVICE).await
    }

    async fn add_one(
        &self,
        h: &Handle,
        r: &Remote,
        vxlan: Option<u32>,
    ) -> Result<(), NetworkError> {
        if r.pod_cidr.contains(&self.node_ip) || r.pod_cidr == self.pod_cidr {
            return Err(NetworkError::invalid(
                "podCIDR",
                format!("{} of node {} overlaps this node's", r.pod_cidr, r.node_ip),
            ));
        }
        if let (Some(idx), Some(mac)) = (vxlan, r.vtep_mac) {
            // FDB first, then the neighbour, then the route (flannel's order): a packet
            // routed to the node finds its MAC and tunnel endpoint.
            h.neighbours()
                .add_bridge(idx, &mac)
                .flags(NeighbourFlags::Own)
                .destination(IpAddr::V4(r.node_ip))
                .replace()
                .execute()
                .await
                .map_err(|e| {
                    NetworkError::netlink(format!("fdb {} dst {}", format_mac(&mac), r.node_ip), e)
                })?;
            h.neighbours()
                .add(idx, IpAddr::V4(zero(&r.pod_cidr)))
                .link_layer_address(&mac)
                .replace()
                .execute()
                .await
                .map_err(|e| {
                    NetworkError::netlink(format!("neighbour {}", zero(&r.pod_cidr)), e)
                })?;
        }
        let Some(route) = self.route(r, vxlan) else {
            return Ok(());
        };
        h.route().add(route).replace().execute().await.map_err(|e| {
            NetworkError::netlink(
                format!(
                    "route {} via {} ({} backend)",
                    r.pod_cidr, r.node_ip, self.backend
                ),
                e,
            )
        })
    }
}

async fn delete_by_name(h: &Handle, name: &str) -> Result<(), NetworkError> {
    if let Some(idx) = index_of(h, name).await? {
        match h.link().del(idx).execute().await {
            Ok(()) => {}
            Err(e) if is_errno(&e, libc::ENODEV) => {}
            Err(e) => return Err(NetworkError::netlink(format!("delete {name}"), e)),
        }
    }
    Ok(())
}

/// This module's IPv4 routes in the main table.
async fn owned_routes(h: &Handle) -> Result<Vec<RouteMessage>, NetworkError> {
    let mut routes = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    let mut out = Vec::new();
    while let Some(r) = routes
        .try_next()
        .await
        .map_err(|e| NetworkError::netlink("list routes", e))?
    {
        if owned(&r) {
            out.push(r);
        }
    }
    Ok(out)
}

async fn del_route(h: &Handle, r: RouteMessage) -> Result<(), NetworkError> {
    match h.route().del(r).execute().await {
        Ok(()) => Ok(()),
        Err(e) if is_errno(&e, libc::ESRCH) => Ok(()),
        Err(e) => Err(NetworkError::netlink("delete route", e)),
    }
}

/// The neighbour (`Inet`) or forwarding-database (`Bridge`) entries of link `idx`.
async fn neighbours(
    h: &Handle,
    idx: u32,
    family: AddressFamily,
) -> Result<Vec<NeighbourMessage>, NetworkError> {
    let mut req = h.neighbours().get().set_address_family(family);
    req.message_mut().header.ifindex = idx;
    let mut list = req.execute();
    let mut out = Vec::new();
    while let Some(n) = list
        .try_next()
        .await
        .map_err(|e| NetworkError::netlink(format!("list neighbours of {VXLAN_DEVICE}"), e))?
    {
        if n.header.ifindex == idx {
            out.push(n);
        }
    }
    Ok(out)
}

async fn del_neigh(h: &Handle, n: NeighbourMessage) -> Result<(), NetworkError> {
    match h.neighbours().del(n).execute().await {
        Ok(()) => Ok(()),
        Err(e) if is_errno(&e, libc::ENOENT) => Ok(()),
        Err(e) => Err(NetworkError::netlink("delete neighbour", e)),
    }
}

/// The link holding `node_ip` and its MTU (the VXLAN device's `dev`, MTU minus the overhead,
/// as flannel's `--iface`); `None` when no link has it.
async fn external_link(h: &Handle, node_ip: Ipv4Addr) -> Result<Option<(u32, u32)>, NetworkError> {
    use netlink_packet_route::address::AddressAttribute;
    use netlink_packet_route::link::LinkAttribute;
    let mut addrs = h.address().get().execute();
    let mut found = None;
    while let Some(a) = addrs
        .try_next()
        .await
        .map_err(|e| NetworkError::netlink("list addresses", e))?
    {
        if a.attributes
            .iter()
            .any(|x| matches!(x, AddressAttribute::Address(IpAddr::V4(ip)) if *ip == node_ip))
        {
            found = Some(a.header.index);
        }
    }
    let Some(idx) = found else {
        return Ok(None);
    };
    let mut links = h.link().get().match_index(idx).execute();
    let mtu = match links.try_next().await {
        Ok(Some(l)) => l.attributes.iter().find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(*m),
            _ => None,
        }),
        _ => None,
    };
    Ok(Some((idx, mtu.unwrap_or(1500))))
}

/// The MTU pods get under the VXLAN backend: the MTU of the link holding `node_ip` minus
/// VXLAN's 50 bytes (flannel's `FLANNEL_MTU`); `None` when no link holds it. Runs netlink on
/// a thread of its own (blocking).
pub fn vxlan_pod_mtu(node_ip: Ipv4Addr) -> Option<u32> {
    crate::link::in_thread(|| {
        let rt = crate::link::runtime().ok()?;
        crate::link::with_netlink(&rt, |h| async move { external_link(&h, node_ip).await })
            .ok()
            .flatten()
            .map(|(_, mtu)| mtu.saturating_sub(VXLAN_OVERHEAD))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_are_k3s_flags() {
        for b in [Backend::Vxlan, Backend::HostGw, Backend::None] {
            assert_eq!(b.as_str().parse::<Backend>().unwrap(), b);
            // The join answer carries it as JSON, with the same names.
            assert_eq!(serde_json::to_value(b).unwrap(), b.as_str());
        }
        assert!("wireguard".parse::<Backend>().is_err());
        assert_eq!(Backend::default(), Backend::Vxlan);
    }

    #[test]
    fn macs_round_trip_and_vtep_mac_is_stable() {
        let p = PodNet {
            backend: Backend::Vxlan,
            node_ip: "192.168.1.7".parse().unwrap(),
            pod_cidr: "10.42.1.0/24".parse().unwrap(),
        };
        let mac = p.vtep_mac();
        assert_eq!(format_mac(&mac), "0e:ba:c0:a8:01:07");
        assert_eq!(parse_mac(&format_mac(&mac)), Some(mac));
        assert_eq!(parse_mac("0e:ba:c0:a8:01"), None);
        assert_eq!(parse_mac("0e:ba:c0:a8:01:07:08"), None);
        // Locally administered unicast.
        assert_eq!(mac[0] & 0b11, 0b10);
    }

    #[test]
    fn routes_per_backend() {
        let mut p = PodNet {
            backend: Backend::HostGw,
            node_ip: "192.168.1.7".parse().unwrap(),
            pod_cidr: "10.42.1.0/24".parse().unwrap(),
        };
        let r = Remote {
            node_ip: "192.168.1.8".parse().unwrap(),
            pod_cidr: "10.42.2.0/24".parse().unwrap(),
            vtep_mac: None,
        };
        let m = p.route(&r, None).unwrap();
        assert!(owned(&m));
        assert_eq!(route_dst(&m), Some(r.pod_cidr));
        p.backend = Backend::Vxlan;
        // No VtepMAC yet: no route (the node has not annotated itself).
        assert!(p.route(&r, Some(5)).is_none());
        let r = Remote {
            vtep_mac: Some([0x0e, 0xba, 1, 2, 3, 4]),
            ..r
        };
        let m = p.route(&r, Some(5)).unwrap();
        assert!(m
            .attributes
            .contains(&RouteAttribute::Gateway(RouteAddress::Inet(
                "10.42.2.0".parse().unwrap()
            ))));
        assert!(m.attributes.contains(&RouteAttribute::Oif(5)));
        p.backend = Backend::None;
        assert!(p.route(&r, Some(5)).is_none());
    }
}
