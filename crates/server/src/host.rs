//! The host's names and addresses, for the serving certificate's SANs.

use std::collections::BTreeSet;
use std::net::IpAddr;

/// The host name (`gethostname(2)`), if it is valid UTF-8 and not empty.
pub fn hostname() -> Option<String> {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
}

/// The addresses of this host's interfaces that other machines could use to reach it: every
/// IPv4 and IPv6 address except loopback, unspecified, multicast and IPv6 link-local ones
/// (those need a zone, which a certificate cannot carry). Sorted, without duplicates. Empty
/// if `getifaddrs(3)` fails.
pub fn addresses() -> Vec<IpAddr> {
    let out: BTreeSet<IpAddr> = barge_network::host::interface_addresses()
        .into_iter()
        .map(|(_, ip)| ip)
        .filter(usable)
        .collect();
    out.into_iter().collect()
}

/// Whether `ip` can name this host from elsewhere.
fn usable(ip: &IpAddr) -> bool {
    if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() {
        return false;
    }
    match ip {
        IpAddr::V4(v4) => !v4.is_link_local(),
        // fe80::/10
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 != 0xfe80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_link_local_are_left_out() {
        for ip in [
            "127.0.0.1",
            "::1",
            "0.0.0.0",
            "fe80::1",
            "169.254.1.1",
            "ff02::1",
        ] {
            assert!(!usable(&ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.5", "192.168.1.2", "2001:db8::1", "fd00::1"] {
            assert!(usable(&ip.parse().unwrap()), "{ip}");
        }
        let addrs = addresses();
        assert!(addrs.iter().all(usable), "{addrs:?}");
        assert!(hostname().is_some());
    }
}
