//! Engine-level network types (persisted as JSON). Field meanings follow Docker's
//! [Network](https://docs.docker.com/reference/api/engine/version/v1.47/#tag/Network) and
//! [EndpointSettings](https://docs.docker.com/reference/api/engine/version/v1.47/#tag/Network/operation/NetworkConnect);
//! the daemon converts them to the wire shapes.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

/// Docker's option naming the bridge device of a network.
pub const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";

/// barge's option of a bridge network listing destinations (comma-separated IPv4 CIDRs) its
/// outbound masquerade leaves alone and whose traffic may enter the bridge from any link: the
/// node agent's pod network carries the cluster CIDR, so pods on other nodes see pod IPs (no
/// NAT between pods, as Kubernetes' network model requires) while traffic leaving the cluster
/// is still masqueraded.
pub const NO_MASQUERADE_OPTION: &str = "io.barge.network.no-masquerade-to";

/// Docker's bridge driver option for the containers' interface MTU
/// (`docker network create -o com.docker.network.driver.mtu=1450`).
pub const MTU_OPTION: &str = "com.docker.network.driver.mtu";

/// The MTU a network's options ask for ([`MTU_OPTION`]); a value that is not a number from
/// 68 (IPv4's minimum) up is ignored, as the kernel's default then applies.
pub fn mtu_option(options: &BTreeMap<String, String>) -> Option<u32> {
    options
        .get(MTU_OPTION)
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|m| *m >= 68)
}

/// A network: one of the predefined `bridge`, `host`, `none`, or a user-defined bridge network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Network {
    /// 64 hex chars.
    pub id: String,
    pub name: String,
    /// `bridge`, `host` or `null`.
    pub driver: String,
    /// RFC 3339 nano.
    pub created: String,
    /// No route out of the network (`--internal`).
    pub internal: bool,
    pub attachable: bool,
    /// IPv4 subnet, gateway and allocation range (`bridge` driver only).
    pub ipam: Option<Ipam>,
    /// IPv6 subnet, gateway and allocation range of a network created with `EnableIPv6`
    /// (Docker's second `IPAM.Config` entry); `None`: IPv4 only.
    #[serde(default)]
    pub ipam6: Option<Ipam6>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// The Linux bridge device (`bridge` driver only).
    pub bridge: String,
    /// User-defined networks get the embedded DNS server (names and aliases of containers).
    pub dns: bool,
}

impl Network {
    /// The destinations of [`NO_MASQUERADE_OPTION`] (unparsable entries are skipped).
    pub fn no_masquerade(&self) -> Vec<Ipv4Net> {
        self.options
            .get(NO_MASQUERADE_OPTION)
            .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Predefined networks (`bridge`, `host`, `none`) cannot be removed.
    pub fn predefined(&self) -> bool {
        is_predefined(&self.name)
    }
}

/// The names of the networks every daemon has and no client may create, remove or rename
/// (dockerd's `runconfig.IsPreDefinedNetwork` also counts the `default` alias and swarm's `ingress`).
pub const PREDEFINED: [&str; 3] = ["bridge", "host", "none"];

/// Whether `name` is one of the [`PREDEFINED`] networks.
pub fn is_predefined(name: &str) -> bool {
    PREDEFINED.contains(&name)
}

/// IPv4 address management of a bridge network (Docker's `IPAM.Config[0]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ipam {
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// Dynamic allocations come from here (`--ip-range`); the whole subnet if unset.
    pub ip_range: Option<Ipv4Net>,
    /// Whether the user chose the subnet (Docker only allows `--ip` then; barge allows it always).
    pub user_subnet: bool,
    /// `--aux-address name=ip` (`AuxiliaryAddresses`): addresses of the subnet that are never
    /// handed out (reserved for devices outside Docker).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux_addresses: BTreeMap<String, Ipv4Addr>,
}

/// IPv6 address management of a bridge network (Docker's IPv6 `IPAM.Config` entry).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ipam6 {
    pub subnet: Ipv6Net,
    /// The bridge's address (default: the subnet's first address, `<prefix>::1`).
    pub gateway: Ipv6Addr,
    /// Dynamic allocations come from here (`--ip-range`); the whole subnet if unset.
    pub ip_range: Option<Ipv6Net>,
    /// Whether the user chose the subnet (else a /64 of the daemon's ULA /48, as dockerd 27).
    pub user_subnet: bool,
}

/// What `network create` asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub name: String,
    /// `bridge` (default); `host`/`null` cannot be created.
    pub driver: Option<String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    /// `EnableIPv6`: the network gets an IPv6 subnet too (`subnet6`, or a ULA /64).
    pub enable_ipv6: bool,
    /// IPv6 subnet, gateway and range (`--subnet fd00::/64` ...); only with `enable_ipv6`.
    pub subnet6: Option<String>,
    pub gateway6: Option<String>,
    pub ip_range6: Option<String>,
    /// `AuxiliaryAddresses` of the IPv4 subnet (`name` → address), reserved from allocation.
    pub aux_addresses: BTreeMap<String, String>,
    pub internal: bool,
    pub attachable: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    /// Create the network even if another one has this name (a pre-1.44 client that did not
    /// set `CheckDuplicate`, which dockerd 20.10 allowed with a warning). Names of the
    /// predefined networks are never shared.
    pub allow_duplicate_name: bool,
}

/// One network a container joins (Docker's `EndpointSettings` input).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EndpointRequest {
    /// Network name or ID.
    pub network: String,
    pub aliases: Vec<String>,
    /// Static address (`--ip`).
    pub ipv4_address: Option<Ipv4Addr>,
    /// Static IPv6 address (`--ip6`), on networks with IPv6.
    #[serde(default)]
    pub ipv6_address: Option<Ipv6Addr>,
    /// Static MAC address of the endpoint (`--mac-address`, `aa:bb:cc:dd:ee:ff`); `None` =
    /// derived from the address as Docker does.
    #[serde(default)]
    pub mac_address: Option<String>,
    /// The endpoint's driver options (Docker's `EndpointSettings.DriverOpts`), kept and echoed.
    #[serde(default)]
    pub driver_opts: BTreeMap<String, String>,
    /// `EndpointSettings.Links` (`container:alias`) on a user-defined network, kept and
    /// echoed; the names are resolvable through the network's DNS already.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// `IPAMConfig.LinkLocalIPs`, kept and echoed (barge adds no link-local address).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link_local_ips: Vec<String>,
}

/// A published port as asked: Docker's `PortBindings` entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortBinding {
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub proto: String,
    /// Empty = every address of the host.
    pub host_ip: String,
    /// `""` (random), `"18080"` or a range `"18080-18090"` (first free one).
    pub host_port: String,
}

/// A published port once allocated.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortMapping {
    pub container_port: u16,
    pub proto: String,
    /// `0.0.0.0` (or `::`, the IPv6 side served by [`crate::proxy`]) for every address.
    pub host_ip: IpAddr,
    pub host_port: u16,
}

/// What a container's network sandbox should hold.
#[derive(Debug, Clone, Default)]
pub struct SandboxRequest {
    /// 64 hex chars.
    pub container_id: String,
    /// Container name, resolvable on user-defined networks.
    pub name: String,
    pub networks: Vec<EndpointRequest>,
    pub ports: Vec<PortBinding>,
    /// The container's own resolvers (`--dns`): where the embedded DNS server forwards its
    /// queries for other names, instead of the daemon's.
    pub dns: Vec<std::net::IpAddr>,
    /// A pod sandbox's other shared namespaces (IPC, UTS and `/dev/shm`), made with the
    /// network namespace; `None` for a container's own sandbox (network only, as Docker's).
    pub pod: Option<PodNamespacesRequest>,
}

/// The IPC and UTS namespaces and the `/dev/shm` a pod sandbox holds for its containers, as
/// a CRI runtime's pod sandbox does (Kubernetes' containers of one pod share them).
#[derive(Debug, Clone, Default)]
pub struct PodNamespacesRequest {
    /// The UTS namespace's host name (the pod's `spec.hostname`, else its name).
    pub hostname: String,
    /// Size of the `/dev/shm` tmpfs in bytes; 0 for docker's 64 MiB.
    pub shm_size: i64,
}

/// A pod sandbox's IPC and UTS namespaces and `/dev/shm`, all under
/// `<exec-root>/podns/<key>/` (see [`crate::Networks::setup`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PodNamespaces {
    /// Bind-mounted IPC namespace (`…/ipc`), the OCI spec's `ipc` namespace path.
    pub ipc: PathBuf,
    /// Bind-mounted UTS namespace (`…/uts`), the OCI spec's `uts` namespace path.
    pub uts: PathBuf,
    /// The tmpfs every container of the pod binds on `/dev/shm` (`…/shm`).
    pub shm: PathBuf,
}

/// A container's attachment to one network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Endpoint {
    pub network_id: String,
    pub network_name: String,
    /// 64 hex chars.
    pub endpoint_id: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    /// Unset on internal networks (no default route).
    pub gateway: Option<Ipv4Addr>,
    /// The endpoint's IPv6 address and prefix length, on networks with IPv6.
    #[serde(default)]
    pub ip6: Option<(Ipv6Addr, u8)>,
    /// The network's IPv6 gateway (Docker shows it whether or not it is the default route).
    #[serde(default)]
    pub gateway6: Option<Ipv6Addr>,
    /// Whether this endpoint carries the IPv6 default route (the first non-internal one with
    /// IPv6).
    #[serde(default)]
    pub default6: bool,
    /// `02:42:...` as Docker derives it from the address.
    pub mac: String,
    /// Interface name inside the container (`eth0`, `eth1`, ...).
    pub ifname: String,
    /// Host side of the veth pair.
    pub host_ifname: String,
    pub aliases: Vec<String>,
    /// Names the embedded DNS server answers with this address (name, aliases, short ID).
    pub dns_names: Vec<String>,
    /// `EndpointSettings.Links` (`container:alias`): names this container alone resolves on
    /// this network (libnetwork's per-endpoint link aliases).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
}

/// A container's network namespace and what is configured in it. Persisted in
/// `<exec-root>/network/sandboxes/<container-id>.json` while the container runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sandbox {
    pub container_id: String,
    /// Bind-mounted network namespace (`<exec-root>/netns/<id[..12]>`), Docker's `SandboxKey`.
    pub netns: PathBuf,
    pub endpoints: Vec<Endpoint>,
    pub ports: Vec<PortMapping>,
    /// See [`SandboxRequest::dns`].
    #[serde(default)]
    pub dns: Vec<std::net::IpAddr>,
    /// A pod sandbox's IPC and UTS namespaces and `/dev/shm` ([`SandboxRequest::pod`]); `None`
    /// for containers' sandboxes and pod sandboxes made before barge shared them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodNamespaces>,
}

/// Docker's per-interface `NetworkStats` (as seen from inside the container).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct InterfaceStats {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}
