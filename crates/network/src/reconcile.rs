//! Daemon start and stop: `reconcile` brings kernel state in line with the records after a
//! (re)start (stale sandboxes torn down, missing bridges re-created, orphan links and
//! namespace files — also pod sandboxes' IPC/UTS ones and `/dev/shm` — deleted, rules
//! re-applied); `shutdown` removes bridges and rules when no
//! sandbox is left.
//!
//! **Invariants:** only links on this daemon's own bridges and namespace files under its own
//! exec root are deleted; running containers keep their sandboxes across a shutdown.

use std::collections::HashSet;
use std::path::PathBuf;

use crate::{is_pod_sandbox, link, nft, Network, Networks, Sandbox};

impl Networks {
    /// Brings kernel state in line with the records after a daemon (re)start: sandboxes of
    /// containers not in `running` are torn down (pod sandboxes excepted: their owner, the node
    /// agent, adopts or removes them); the DNS server is restarted for the others;
    /// bridges of every bridge network in use exist; links on barge bridges and namespace
    /// files nobody owns are deleted; the rules are re-applied.
    pub fn reconcile(&self, running: &HashSet<String>) {
        self.settle();
        let stale: Vec<String> = self
            .lock()
            .sandboxes
            .keys()
            .filter(|id| !running.contains(*id) && !is_pod_sandbox(id))
            .cloned()
            .collect();
        for id in stale {
            self.teardown(&id);
        }
        let (sandboxes, networks): (Vec<Sandbox>, Vec<Network>) = {
            let inner = self.lock();
            (
                inner.sandboxes.values().cloned().collect(),
                inner.networks.values().cloned().collect(),
            )
        };
        for n in &networks {
            let in_use = sandboxes
                .iter()
                .any(|s| s.endpoints.iter().any(|e| e.network_id == n.id));
            // User-defined networks always have their bridge (as Docker); the default one
            // only while used.
            if n.ipam.is_some() && (in_use || n.dns || link::link_exists(&n.bridge)) {
                if let Err(e) = self.bring_up(n) {
                    tracing::warn!("network {}: {e}", n.name);
                }
            }
            let owned: HashSet<&str> = sandboxes
                .iter()
                .flat_map(|s| s.endpoints.iter().map(|e| e.host_ifname.as_str()))
                .collect();
            for port in link::bridge_ports(&n.bridge) {
                if !owned.contains(port.as_str()) {
                    tracing::info!("removing stale link {port} from {}", n.bridge);
                    let _ = link::delete_link(&port);
                }
            }
        }
        for sb in &sandboxes {
            if self.uses_dns(sb) {
                match link::dns_sockets(&sb.netns) {
                    Ok((udp, tcp)) => self.dns.add(&sb.container_id, udp, tcp),
                    Err(e) => tracing::warn!("dns for {}: {e}", sb.container_id),
                }
            }
            match super::sandboxes::proxies(sb) {
                Ok(f) if f.is_empty() => {}
                Ok(f) => self.dns.proxy(&sb.container_id, f),
                Err(e) => tracing::warn!("port proxies of {}: {e}", sb.container_id),
            }
        }
        let keep: HashSet<PathBuf> = sandboxes.iter().map(|s| s.netns.clone()).collect();
        if let Ok(rd) = std::fs::read_dir(self.cfg.exec_root.join("netns")) {
            for e in rd.flatten() {
                if !keep.contains(&e.path()) {
                    link::remove_netns(&e.path());
                }
            }
        }
        // Pod sandboxes' IPC/UTS namespaces and `/dev/shm` nobody owns.
        let keep: HashSet<PathBuf> = sandboxes
            .iter()
            .filter(|s| s.pod.is_some())
            .map(|s| self.pod_namespaces_dir(&s.container_id))
            .collect();
        if let Ok(rd) = std::fs::read_dir(self.cfg.exec_root.join("podns")) {
            for e in rd.flatten() {
                if !keep.contains(&e.path()) {
                    link::remove_pod_namespaces(&e.path());
                }
            }
        }
        self.refresh_dns();
        if let Err(e) = self.sync_rules(true) {
            tracing::warn!("network rules: {e}");
        }
    }

    /// Daemon shutdown: with no sandbox left, removes every bridge and the rules table, so a
    /// stopped daemon leaves nothing of barge's in the kernel. Running containers keep theirs.
    pub fn shutdown(&self) {
        self.settle();
        let inner = self.lock();
        if !inner.sandboxes.is_empty() {
            return;
        }
        let bridges: Vec<String> = inner
            .networks
            .values()
            .filter(|n| n.ipam.is_some())
            .map(|n| n.bridge.clone())
            .collect();
        drop(inner);
        for b in bridges {
            if link::link_exists(&b) {
                let _ = link::delete_link(&b);
            }
        }
        let _ = nft::delete(&self.cfg.table);
        let _ = nft::sync_foreign(&self.cfg.table, &[]);
        self.restore_forwarding6();
        let mut inner = self.lock();
        inner.ensured.clear();
        inner.applied = None;
    }
}
