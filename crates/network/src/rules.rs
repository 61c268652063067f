//! What is derived from sandboxes and networks: the embedded DNS server's table, the
//! nftables rules (computed whole, applied only when they changed, serialised by
//! `rules_lock` so `inner` is never held across an `nft` run), and the host-wide IPv6
//! forwarding switch with its bookkeeping shared between daemons.
//!
//! **Invariants:** the rules are a pure function of the records (`desired_rules`); the
//! table is replaced atomically; IPv6 forwarding is turned on only by a claim this daemon
//! holds, and restored by the last daemon to let go.

use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::{dns, endpoint_ips, nft, write_atomic, Inner, NetworkError, Networks};

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

impl Networks {
    pub(super) fn refresh_dns(&self) {
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
                for l in &ep.links {
                    let (target, alias) = l.split_once(':').unwrap_or((l, l));
                    let target = target.trim_start_matches('/').to_ascii_lowercase();
                    t.links
                        .entry(sb.container_id.clone())
                        .or_default()
                        .insert(alias.to_ascii_lowercase(), (n.id.clone(), target));
                }
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
                    no_masquerade: n.no_masquerade(),
                })
            })
            .collect();
        let mut ports = Vec::new();
        for sb in inner.sandboxes.values() {
            let Some(ep) = sb.endpoints.first() else {
                continue;
            };
            for p in &sb.ports {
                // The IPv6 mappings are the userland proxy's (crate::proxy).
                let IpAddr::V4(host_ip) = p.host_ip else {
                    continue;
                };
                ports.push(nft::RulePort {
                    proto: p.proto.clone(),
                    host_ip,
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
    pub(super) fn sync_rules(&self, force: bool) -> Result<(), NetworkError> {
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
        if let Err(e) = nft::sync_foreign(&self.cfg.table, &want.0) {
            tracing::warn!("accept rules in ip filter: {e}");
        }
        self.lock().applied = Some(want);
        Ok(())
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
    pub(super) fn enable_forwarding6(&self) {
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
    pub(super) fn restore_forwarding6(&self) {
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
}
