//! The host's own interfaces and addresses (`getifaddrs(3)`), for what reports or certifies
//! how this machine is reached: the node agent's InternalIP, the API server's certificate SANs;
//! and the node setup the cluster's pod network needs from the kernel (`br_netfilter`).

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

/// The switch that sends bridged IPv4 traffic through the `ip` family's netfilter hooks
/// (conntrack, NAT, nftables `ip` tables); it exists once `br_netfilter` is loaded, and is per
/// network namespace.
pub const BRIDGE_NF_CALL_IPTABLES: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

/// What [`ensure_bridge_netfilter`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeNetfilter {
    /// `net.bridge.bridge-nf-call-iptables` was 1 already.
    AlreadyOn,
    /// It was off (or `br_netfilter` not loaded, `loaded`: barge ran `modprobe br_netfilter`)
    /// and is now 1.
    TurnedOn { loaded: bool },
}

/// Makes sure bridged IPv4 traffic passes conntrack and the `ip` hooks in the calling thread's
/// network namespace: loads `br_netfilter` (`modprobe`) when its sysctl is missing, then sets
/// `net.bridge.bridge-nf-call-iptables` to 1, as kubeadm's preflight requires and k3s's agent
/// does. The node's pod bridge needs it: a pod's connection to a ClusterIP whose endpoint is on
/// the same bridge is DNATed (not masqueraded), and the endpoint's reply, switched straight
/// back to the client, must be un-DNATed by conntrack; NetworkPolicies between pods of one node
/// need the hooks too. The setting is left on when the agent stops (like kubeadm's and k3s's).
///
/// Blocking (a file write, maybe a `modprobe` child). Errors: [`NetworkError::BridgeNetfilter`]
/// when the module cannot be loaded, [`NetworkError::Io`] when the sysctl cannot be read or
/// written.
pub fn ensure_bridge_netfilter() -> Result<BridgeNetfilter, crate::NetworkError> {
    ensure_bridge_netfilter_at(std::path::Path::new(BRIDGE_NF_CALL_IPTABLES), || {
        let out = std::process::Command::new("modprobe")
            .arg("br_netfilter")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("modprobe br_netfilter: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "modprobe br_netfilter: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    })
}

/// [`ensure_bridge_netfilter`] on the sysctl file `path`, with `load` loading the module.
fn ensure_bridge_netfilter_at(
    path: &std::path::Path,
    load: impl FnOnce() -> Result<(), String>,
) -> Result<BridgeNetfilter, crate::NetworkError> {
    use crate::NetworkError;
    let mut loaded = false;
    if !path.exists() {
        load().map_err(NetworkError::BridgeNetfilter)?;
        if !path.exists() {
            return Err(NetworkError::BridgeNetfilter(format!(
                "loaded, but {} does not exist",
                path.display()
            )));
        }
        loaded = true;
    }
    let what = || path.display().to_string();
    let now = std::fs::read_to_string(path).map_err(|e| NetworkError::io(what(), e))?;
    if now.trim() == "1" {
        return Ok(if loaded {
            BridgeNetfilter::TurnedOn { loaded }
        } else {
            BridgeNetfilter::AlreadyOn
        });
    }
    std::fs::write(path, "1").map_err(|e| NetworkError::io(what(), e))?;
    Ok(BridgeNetfilter::TurnedOn { loaded })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_loopback_address_is_listed() {
        assert!(interface_addresses()
            .iter()
            .all(|(name, ip)| !ip.is_loopback() && name != "lo"));
    }

    #[test]
    fn bridge_netfilter_is_turned_on_and_loaded_when_missing() {
        let dir = std::env::temp_dir().join(format!("barge-brnf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bridge-nf-call-iptables");
        let never = || -> Result<(), String> { panic!("loaded although present") };
        std::fs::write(&f, "1\n").unwrap();
        assert_eq!(
            ensure_bridge_netfilter_at(&f, never).unwrap(),
            BridgeNetfilter::AlreadyOn
        );
        std::fs::write(&f, "0\n").unwrap();
        assert_eq!(
            ensure_bridge_netfilter_at(&f, never).unwrap(),
            BridgeNetfilter::TurnedOn { loaded: false }
        );
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "1");
        // Missing: the module is loaded, then the sysctl it makes is turned on if it is off.
        std::fs::remove_file(&f).unwrap();
        let r =
            ensure_bridge_netfilter_at(&f, || std::fs::write(&f, "0\n").map_err(|e| e.to_string()));
        assert_eq!(r.unwrap(), BridgeNetfilter::TurnedOn { loaded: true });
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "1");
        std::fs::remove_file(&f).unwrap();
        let e = ensure_bridge_netfilter_at(&f, || Err("modprobe: not found".into()))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "br_netfilter: modprobe: not found");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
