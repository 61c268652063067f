//! IPv4 and IPv6 address management: choosing subnets that collide with nothing on the host,
//! and handing out addresses inside them. Pure functions (plus `/proc/net/route` and
//! `/proc/net/ipv6_route` readers).

use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use crate::error::NetworkError;
use crate::types::{Ipam, Ipam6};

/// What the IPv4 and IPv6 halves share: subnet syntax, gateway and ip-range checks, and the
/// validation of a requested address. Implemented for `Ipv4Net` and `Ipv6Net`.
trait Net: Copy + std::fmt::Display + std::str::FromStr + PartialEq {
    type Addr: Copy + std::fmt::Display + std::str::FromStr + Eq + std::hash::Hash;
    fn trunc_net(&self) -> Self;
    fn prefix(&self) -> u8;
    fn has(&self, ip: &Self::Addr) -> bool;
    fn has_net(&self, net: &Self) -> bool;
}

macro_rules! impl_net {
    ($net:ty, $addr:ty) => {
        impl Net for $net {
            type Addr = $addr;
            fn trunc_net(&self) -> Self {
                self.trunc()
            }
            fn prefix(&self) -> u8 {
                self.prefix_len()
            }
            fn has(&self, ip: &$addr) -> bool {
                self.contains(ip)
            }
            fn has_net(&self, net: &Self) -> bool {
                self.contains(net)
            }
        }
    };
}
impl_net!(Ipv4Net, Ipv4Addr);
impl_net!(Ipv6Net, Ipv6Addr);

/// Parses `addr/n` of either family: host bits must be zero (as Docker requires) and the
/// prefix at most `max_prefix`.
fn parse_net<N: Net>(field: &str, s: &str, max_prefix: u8) -> Result<N, NetworkError> {
    let net: N = s
        .parse()
        .map_err(|_| NetworkError::invalid(field, format!("invalid CIDR address: {s}")))?;
    if net.trunc_net() != net {
        return Err(NetworkError::invalid(
            field,
            format!("invalid subnet {s}: it should be {}", net.trunc_net()),
        ));
    }
    if net.prefix() > max_prefix {
        return Err(NetworkError::invalid(
            field,
            format!("subnet {s} is too small"),
        ));
    }
    Ok(net)
}

/// The gateway of `subnet`: `given` (an address of the subnet that `reserved` does not refuse)
/// or `default`.
fn gateway_in<N: Net>(
    subnet: &N,
    given: Option<&str>,
    reserved: impl Fn(&N::Addr) -> bool,
    default: N::Addr,
) -> Result<N::Addr, NetworkError> {
    let Some(g) = given else { return Ok(default) };
    let ip: N::Addr = g
        .parse()
        .map_err(|_| NetworkError::invalid("gateway", format!("invalid address {g}")))?;
    if !subnet.has(&ip) || reserved(&ip) {
        return Err(NetworkError::invalid(
            "gateway",
            format!("no matching subnet for gateway {ip}"),
        ));
    }
    Ok(ip)
}

/// An `--ip-range` inside `subnet`.
fn ip_range_in<N: Net>(
    subnet: &N,
    given: Option<&str>,
    max_prefix: u8,
) -> Result<Option<N>, NetworkError> {
    let Some(r) = given else { return Ok(None) };
    let r: N = parse_net("ip-range", r, max_prefix)?;
    if !subnet.has_net(&r) {
        return Err(NetworkError::invalid(
            "ip-range",
            format!("ip-range {r} is not within subnet {subnet}"),
        ));
    }
    Ok(Some(r))
}

/// A requested address (`--ip`/`--ip6`, field `field`): inside `subnet`, not `reserved`, free.
fn requested<N: Net>(
    field: &str,
    subnet: &N,
    ip: N::Addr,
    reserved: bool,
    used: &HashSet<N::Addr>,
) -> Result<N::Addr, NetworkError> {
    if !subnet.has(&ip) || reserved {
        return Err(NetworkError::invalid(
            field,
            format!("address {ip} is not usable in subnet {subnet}"),
        ));
    }
    if used.contains(&ip) {
        return Err(NetworkError::Conflict(format!(
            "Address already in use: {ip}"
        )));
    }
    Ok(ip)
}

/// Subnets routed on the host (from `/proc/net/route`, little-endian hex), excluding default
/// routes. Used so a new network never shadows an existing one (docker's and podman's
/// bridges, VPNs, the LAN).
/// Each entry is `(interface, subnet)`.
pub fn host_routes() -> Vec<(String, Ipv4Net)> {
    let Ok(text) = std::fs::read_to_string("/proc/net/route") else {
        return Vec::new();
    };
    parse_proc_route(&text)
}

pub(crate) fn parse_proc_route(text: &str) -> Vec<(String, Ipv4Net)> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let (Ok(dst), Ok(mask)) = (u32::from_str_radix(f[1], 16), u32::from_str_radix(f[7], 16))
        else {
            continue;
        };
        // The kernel prints the bytes in memory order (little-endian on x86/arm).
        let dst = Ipv4Addr::from(dst.to_le_bytes());
        let prefix = mask.count_ones() as u8;
        if prefix == 0 {
            continue;
        }
        if let Ok(net) = Ipv4Net::new(dst, prefix) {
            out.push((f[0].to_string(), net.trunc()));
        }
    }
    out
}

/// Whether two subnets share any address.
pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first `/prefix` subnet of `pool` that overlaps none of `taken`.
pub fn pick_subnet(pool: Ipv4Net, prefix: u8, taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    pool.subnets(prefix)
        .ok()?
        .find(|s| !taken.iter().any(|t| overlaps(s, t)))
}

/// Parses `a.b.c.d/n` (host bits must be zero, as Docker requires).
pub fn parse_subnet(field: &str, s: &str) -> Result<Ipv4Net, NetworkError> {
    parse_net(field, s, 30)
}

/// Builds the IPAM of a network from user input (all optional).
pub fn build(
    subnet: Option<Ipv4Net>,
    gateway: Option<&str>,
    ip_range: Option<&str>,
) -> Result<Option<Ipam>, NetworkError> {
    let Some(subnet) = subnet else {
        if gateway.is_some() || ip_range.is_some() {
            return Err(NetworkError::invalid(
                "gateway",
                "--gateway and --ip-range need --subnet",
            ));
        }
        return Ok(None);
    };
    let gateway = gateway_in(
        &subnet,
        gateway,
        |g| *g == subnet.network() || *g == subnet.broadcast(),
        first_host(&subnet),
    )?;
    let ip_range = ip_range_in(&subnet, ip_range, 30)?;
    Ok(Some(Ipam {
        subnet,
        gateway,
        ip_range,
        user_subnet: true,
        aux_addresses: BTreeMap::new(),
    }))
}

/// Parses `AuxiliaryAddresses` (`--aux-address name=ip`) of `subnet`: each must be an address
/// of it (libnetwork's "must belong to the master pool").
pub fn aux_addresses(
    subnet: Option<&Ipv4Net>,
    aux: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Ipv4Addr>, NetworkError> {
    let mut out = BTreeMap::new();
    for (name, addr) in aux {
        let Some(subnet) = subnet else {
            return Err(NetworkError::invalid(
                "aux-address",
                "--aux-address needs --subnet",
            ));
        };
        let ip: Ipv4Addr = addr.parse().map_err(|_| {
            NetworkError::invalid("aux-address", format!("invalid address {addr:?} of {name}"))
        })?;
        if !subnet.contains(&ip) {
            return Err(NetworkError::invalid(
                "aux-address",
                format!(
                    "auxiliary address: ({name}:{ip}) must belong to the master pool: {subnet}"
                ),
            ));
        }
        out.insert(name.clone(), ip);
    }
    Ok(out)
}

pub(crate) fn first_host(net: &Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
}

/// Allocates an address of `ipam`: `want` if given (must be in the subnet and free), else the
/// lowest free address of the range. The network, broadcast, gateway and auxiliary addresses
/// are never handed out.
pub fn allocate(
    ipam: &Ipam,
    used: &HashSet<Ipv4Addr>,
    want: Option<Ipv4Addr>,
) -> Result<Ipv4Addr, NetworkError> {
    let reserved = |ip: Ipv4Addr| {
        ip == ipam.subnet.network()
            || ip == ipam.subnet.broadcast()
            || ip == ipam.gateway
            || ipam.aux_addresses.values().any(|a| *a == ip)
    };
    if let Some(ip) = want {
        return requested("ip", &ipam.subnet, ip, reserved(ip), used);
    }
    let range = ipam.ip_range.unwrap_or(ipam.subnet);
    range
        .hosts()
        .find(|ip| !reserved(*ip) && !used.contains(ip))
        .ok_or_else(|| NetworkError::Exhausted(range.to_string()))
}

/// IPv6 subnets routed on the host (from `/proc/net/ipv6_route`), excluding default routes,
/// host routes (/128) and link-local/multicast ones. Each entry is `(interface, subnet)`.
pub fn host_routes6() -> Vec<(String, Ipv6Net)> {
    let Ok(text) = std::fs::read_to_string("/proc/net/ipv6_route") else {
        return Vec::new();
    };
    parse_proc_route6(&text)
}

pub(crate) fn parse_proc_route6(text: &str) -> Vec<(String, Ipv6Net)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        let (Ok(dst), Ok(len)) = (u128::from_str_radix(f[0], 16), u8::from_str_radix(f[1], 16))
        else {
            continue;
        };
        let dst = Ipv6Addr::from(dst);
        if len == 0 || len == 128 || dst.is_multicast() || (dst.segments()[0] & 0xffc0) == 0xfe80 {
            continue;
        }
        if let Ok(net) = Ipv6Net::new(dst, len) {
            out.push((f[9].to_string(), net.trunc()));
        }
    }
    out
}

/// Whether two IPv6 subnets share any address.
pub fn overlaps6(a: &Ipv6Net, b: &Ipv6Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Parses an IPv6 `addr/n` (host bits must be zero, as Docker requires; at most /126).
pub fn parse_subnet6(field: &str, s: &str) -> Result<Ipv6Net, NetworkError> {
    parse_net(field, s, 126)
}

/// The daemon's IPv6 pool as dockerd ≥ 27 makes it when `default-address-pools` has no IPv6
/// entry (`DeriveULABaseNetwork`): a ULA /48 whose 40-bit Global ID is the low 40 bits of the
/// first 8 bytes (big-endian) of SHA-256 of `host_id`, split into /64s.
pub fn ula_pool(host_id: &str) -> Ipv6Net {
    use sha2::Digest;
    let sha = sha2::Sha256::digest(host_id.as_bytes());
    let first = u64::from_be_bytes(sha[..8].try_into().expect("8 bytes"));
    let gid = (first & ((1u64 << 40) - 1)) as u128;
    let base = u128::from(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0)) + (gid << 80);
    Ipv6Net::new(Ipv6Addr::from(base), 48).expect("valid prefix")
}

/// The first `/prefix` subnet of `pool` that overlaps none of `taken`.
pub fn pick_subnet6(pool: Ipv6Net, prefix: u8, taken: &[Ipv6Net]) -> Option<Ipv6Net> {
    pool.subnets(prefix)
        .ok()?
        .find(|s| !taken.iter().any(|t| overlaps6(s, t)))
}

/// Builds the IPv6 IPAM of a network from user input: `subnet` (required here), optional
/// `gateway` (default: the subnet's first address) and `ip_range` (inside the subnet).
pub fn build6(
    subnet: Ipv6Net,
    gateway: Option<&str>,
    ip_range: Option<&str>,
    user_subnet: bool,
) -> Result<Ipam6, NetworkError> {
    let gateway = gateway_in(
        &subnet,
        gateway,
        |g| *g == subnet.network(),
        first_host6(&subnet),
    )?;
    let ip_range = ip_range_in(&subnet, ip_range, 126)?;
    Ok(Ipam6 {
        subnet,
        gateway,
        ip_range,
        user_subnet,
    })
}

pub(crate) fn first_host6(net: &Ipv6Net) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(net.network()) + 1)
}

/// Allocates an IPv6 address of `ipam`: `want` if given (must be in the subnet and free),
/// else the lowest free address of the range, as dockerd's IPAM hands them out (`::2`,
/// `::3`, ...). The subnet-router anycast address (`::`) and the gateway are never handed out.
pub fn allocate6(
    ipam: &Ipam6,
    used: &HashSet<Ipv6Addr>,
    want: Option<Ipv6Addr>,
) -> Result<Ipv6Addr, NetworkError> {
    let reserved = |ip: Ipv6Addr| ip == ipam.subnet.network() || ip == ipam.gateway;
    if let Some(ip) = want {
        return requested("ip6", &ipam.subnet, ip, reserved(ip), used);
    }
    let range = ipam.ip_range.unwrap_or(ipam.subnet);
    let (lo, hi) = (u128::from(range.network()), u128::from(range.broadcast()));
    // Bounded by the number of used addresses: at most used.len() + 2 candidates are skipped.
    (lo..=hi)
        .map(Ipv6Addr::from)
        .find(|ip| !reserved(*ip) && !used.contains(ip))
        .ok_or_else(|| NetworkError::Exhausted(range.to_string()))
}

/// Docker's MAC address for an IPv4 address: `02:42` followed by the address bytes.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// `aa:bb:cc:dd:ee:ff` (or `-`-separated) as bytes; `None` when malformed.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut out = [0u8; 6];
    for (o, p) in out.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *o = u8::from_str_radix(p, 16).ok()?;
    }
    Some(out)
}

pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_route() {
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t0102000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        let r = parse_proc_route(text);
        let nets: Vec<String> = r.iter().map(|(i, n)| format!("{i} {n}")).collect();
        assert_eq!(nets, ["eth0 10.0.2.0/24", "docker0 172.17.0.0/16"]);
    }

    #[test]
    fn subnet_choice_skips_taken() {
        let pool: Ipv4Net = "10.120.0.0/14".parse().unwrap();
        let taken = vec![
            "10.120.0.0/24".parse().unwrap(),
            "10.120.1.0/25".parse().unwrap(),
        ];
        assert_eq!(
            pick_subnet(pool, 24, &taken).unwrap(),
            "10.120.2.0/24".parse::<Ipv4Net>().unwrap()
        );
        let all: Ipv4Net = "10.0.0.0/8".parse().unwrap();
        assert!(pick_subnet(pool, 24, &[all]).is_none());
    }

    #[test]
    fn allocation() {
        let ipam = build(Some("10.5.0.0/29".parse().unwrap()), None, None)
            .unwrap()
            .unwrap();
        assert_eq!(ipam.gateway, "10.5.0.1".parse::<Ipv4Addr>().unwrap());
        let mut used = HashSet::new();
        let mut got = Vec::new();
        while let Ok(ip) = allocate(&ipam, &used, None) {
            used.insert(ip);
            got.push(ip.to_string());
        }
        assert_eq!(
            got,
            ["10.5.0.2", "10.5.0.3", "10.5.0.4", "10.5.0.5", "10.5.0.6"]
        );
        assert!(matches!(
            allocate(&ipam, &used, Some("10.5.0.3".parse().unwrap())),
            Err(NetworkError::Conflict(_))
        ));
        assert!(allocate(&ipam, &HashSet::new(), Some("10.5.0.7".parse().unwrap())).is_err());
        assert!(allocate(&ipam, &HashSet::new(), Some("10.6.0.2".parse().unwrap())).is_err());
    }

    #[test]
    fn ipv6_allocation_and_pool() {
        let ipam = build6("fd00:1234::/64".parse().unwrap(), None, None, true).unwrap();
        assert_eq!(ipam.gateway.to_string(), "fd00:1234::1");
        let mut used = HashSet::new();
        let a = allocate6(&ipam, &used, None).unwrap();
        assert_eq!(a.to_string(), "fd00:1234::2");
        used.insert(a);
        assert_eq!(
            allocate6(&ipam, &used, None).unwrap().to_string(),
            "fd00:1234::3"
        );
        let want: Ipv6Addr = "fd00:1234::99".parse().unwrap();
        assert_eq!(allocate6(&ipam, &used, Some(want)).unwrap(), want);
        assert!(matches!(
            allocate6(&ipam, &used, Some(a)),
            Err(NetworkError::Conflict(_))
        ));
        assert!(allocate6(&ipam, &used, Some("fd00:1235::2".parse().unwrap())).is_err());
        assert!(allocate6(&ipam, &used, Some(ipam.gateway)).is_err());
        let e = build6(
            "fd00:1234::/64".parse().unwrap(),
            Some("fd00:9::1"),
            None,
            true,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("gateway"), "{e}");
        assert!(parse_subnet6("subnet", "fd00:1234::1/64").is_err());
        // A /48 in fd00::/8, stable for a host ID, split into /64s.
        let pool = ula_pool("host-a");
        assert_eq!(pool.prefix_len(), 48);
        assert_eq!(pool.network().segments()[0] & 0xff00, 0xfd00);
        assert_eq!(pool, ula_pool("host-a"));
        assert_ne!(pool, ula_pool("host-b"));
        let first = pick_subnet6(pool, 64, &[]).unwrap();
        let second = pick_subnet6(pool, 64, &[first]).unwrap();
        assert_eq!(first.network(), pool.network());
        assert_ne!(first, second);
        assert_eq!(second.prefix_len(), 64);
    }

    #[test]
    fn proc_ipv6_route() {
        let text = "fd001234000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     br-1\n\
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n\
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000001 00000000 00000003     eth0\n";
        let r = parse_proc_route6(text);
        let nets: Vec<String> = r.iter().map(|(i, n)| format!("{i} {n}")).collect();
        assert_eq!(nets, ["br-1 fd00:1234::/64"]);
    }

    #[test]
    fn bad_input_names_field() {
        let e = parse_subnet("subnet", "10.0.0.1/24")
            .unwrap_err()
            .to_string();
        assert!(e.contains("subnet") && e.contains("10.0.0.0/24"), "{e}");
        let e = build(Some("10.0.0.0/24".parse().unwrap()), Some("10.1.0.1"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("gateway"), "{e}");
        let e = build(None, Some("10.1.0.1"), None).unwrap_err().to_string();
        assert!(e.contains("subnet"), "{e}");
        assert_eq!(
            mac_string(&mac_for("10.0.0.2".parse().unwrap())),
            "02:42:0a:00:00:02"
        );
    }
}
