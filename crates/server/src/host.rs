//! The host's names and addresses, for the serving certificate's SANs.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
    let mut out = BTreeSet::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `getifaddrs` fills `head` with a list it allocated; we only read it and free it
    // once with `freeifaddrs` below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Vec::new();
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a non-null node of the list `getifaddrs` returned, alive until
        // `freeifaddrs`.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_flags & libc::IFF_LOOPBACK as u32 != 0 {
            continue;
        }
        // SAFETY: `ifa_addr` is non-null and points at a sockaddr whose `sa_family` says which
        // concrete type it is; we read it as that type only.
        let ip = unsafe {
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
                }
                libc::AF_INET6 => {
                    let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
                }
                _ => continue,
            }
        };
        if usable(&ip) {
            out.insert(ip);
        }
    }
    // SAFETY: `head` came from a successful `getifaddrs` and is freed exactly once.
    unsafe { libc::freeifaddrs(head) };
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
