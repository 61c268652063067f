//! The host's own interfaces and addresses (`getifaddrs(3)`), for what reports or certifies
//! how this machine is reached: the node agent's InternalIP, the API server's certificate SANs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `(interface name, address)` of every IPv4 and IPv6 address of a non-loopback interface,
/// in the kernel's order. Empty if `getifaddrs(3)` fails.
pub fn interface_addresses() -> Vec<(String, IpAddr)> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `getifaddrs` fills `head` with a list it allocated; it is only read, then freed
    // once with `freeifaddrs` below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
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
        // concrete type it is; it is read as that type only.
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
        // SAFETY: `ifa_name` is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        out.push((name, ip));
    }
    // SAFETY: `head` came from a successful `getifaddrs` and is freed exactly once; no
    // reference into it survives.
    unsafe { libc::freeifaddrs(head) };
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_loopback_address_is_listed() {
        assert!(super::interface_addresses()
            .iter()
            .all(|(name, ip)| !ip.is_loopback() && name != "lo"));
    }
}
