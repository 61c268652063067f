//! IPv4 address management: choosing subnets that collide with nothing on the host, and
//! handing out addresses inside them. Pure functions (plus a `/proc/net/route` reader).

use std::collections::HashSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::error::NetworkError;
use crate::types::Ipam;

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
    let net: Ipv4Net = s
        .parse()
        .map_err(|_| NetworkError::invalid(field, format!("invalid CIDR address: {s}")))?;
    if net.trunc() != net {
        return Err(NetworkError::invalid(
            field,
            format!("invalid subnet {s}: it should be {}", net.trunc()),
        ));
    }
    if net.prefix_len() > 30 {
        return Err(NetworkError::invalid(
            field,
            format!("subnet {s} is too small"),
        ));
    }
    Ok(net)
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
    let gateway = match gateway {
        Some(g) => {
            let g: Ipv4Addr = g
                .parse()
                .map_err(|_| NetworkError::invalid("gateway", format!("invalid address {g}")))?;
            if !subnet.contains(&g) || g == subnet.network() || g == subnet.broadcast() {
                return Err(NetworkError::invalid(
                    "gateway",
                    format!("no matching subnet for gateway {g}"),
                ));
            }
            g
        }
        None => first_host(&subnet),
    };
    let ip_range = match ip_range {
        Some(r) => {
            let r = parse_subnet("ip-range", r)?;
            if !subnet.contains(&r) {
                return Err(NetworkError::invalid(
                    "ip-range",
                    format!("ip-range {r} is not within subnet {subnet}"),
                ));
            }
            Some(r)
        }
        None => None,
    };
    Ok(Some(Ipam {
        subnet,
        gateway,
        ip_range,
        user_subnet: true,
    }))
}

pub(crate) fn first_host(net: &Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
}

/// Allocates an address of `ipam`: `want` if given (must be in the subnet and free), else the
/// lowest free address of the range. The network, broadcast and gateway addresses are never
/// handed out.
pub fn allocate(
    ipam: &Ipam,
    used: &HashSet<Ipv4Addr>,
    want: Option<Ipv4Addr>,
) -> Result<Ipv4Addr, NetworkError> {
    let reserved = |ip: Ipv4Addr| {
        ip == ipam.subnet.network() || ip == ipam.subnet.broadcast() || ip == ipam.gateway
    };
    if let Some(ip) = want {
        if !ipam.subnet.contains(&ip) || reserved(ip) {
            return Err(NetworkError::invalid(
                "ip",
                format!("address {ip} is not usable in subnet {}", ipam.subnet),
            ));
        }
        if used.contains(&ip) {
            return Err(NetworkError::Conflict(format!(
                "Address already in use: {ip}"
            )));
        }
        return Ok(ip);
    }
    let range = ipam.ip_range.unwrap_or(ipam.subnet);
    range
        .hosts()
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
