//! The Node: registration, its Lease and its status, as kubelet keeps them
//! (`kubelet_node_status.go`, `nodestatus/setters.go`, `nodelease`).
//!
//! - Registration creates the Node (labels `kubernetes.io/hostname|os|arch`); when it exists
//!   already (a restart) its status is patched instead. `spec.podCIDR` is not the agent's:
//!   kube-controller-manager's node IPAM (`barge_controllers::nodeipam`) assigns it and the
//!   agent waits for it ([`wait_pod_cidr`]), as kubelet does without `--pod-cidr`.
//! - The Lease `kube-node-lease/<node>` (holder = node, 40 s, owned by the Node) is renewed
//!   every 10 s.
//! - The status (capacity, allocatable, addresses, nodeInfo, conditions, daemon endpoint) is
//!   checked every 10 s and patched when it changed or 5 minutes after the last patch
//!   (`nodeStatusReportFrequency`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

use crate::{AgentError, Config, Engine};

/// How often the Lease is renewed (kubelet: `leaseDuration` 40 s × 0.25).
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
/// The Lease's `leaseDurationSeconds` (kubelet's `nodeLeaseDurationSeconds`).
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// The status is patched at least this often even when nothing changed.
pub const STATUS_REPORT: Duration = Duration::from_secs(300);

/// Keeps this node's Node object and Lease.
pub struct NodeAgent {
    client: Client,
    engine: Engine,
    cfg: Arc<Config>,
}

/// The first /24 (IPv4) or /64 (IPv6) of the cluster CIDR (or the CIDR itself when it is
/// smaller): what the node IPAM controller gives the first node.
pub fn first_block(cluster: &ipnet::IpNet) -> ipnet::IpNet {
    let want = match cluster {
        ipnet::IpNet::V4(_) => 24,
        ipnet::IpNet::V6(_) => 64,
    };
    let net = cluster.trunc();
    if net.prefix_len() >= want {
        return net;
    }
    net.subnets(want)
        .ok()
        .and_then(|mut s| s.next())
        .unwrap_or(net)
}

/// Waits (polling every second) until the Node `name` has a `spec.podCIDR` that parses, and
/// answers it.
pub async fn wait_pod_cidr(client: &Client, name: &str) -> ipnet::IpNet {
    let api: Api<Node> = Api::all(client.clone());
    let mut logged = false;
    loop {
        if let Ok(Some(n)) = api.get_opt(name).await {
            if let Some(c) = n
                .spec
                .as_ref()
                .and_then(|s| s.pod_cidr.as_deref())
                .and_then(|c| c.parse::<ipnet::IpNet>().ok())
            {
                tracing::info!(node = %name, pod_cidr = %c, "this node's podCIDR");
                return c;
            }
            if !logged {
                tracing::info!(node = %name, "waiting for the node IPAM controller to assign a podCIDR");
                logged = true;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The node's InternalIP: the configured one, else the IPv4 address of the interface the
/// default route leaves through, else the first non-loopback IPv4 address, else 127.0.0.1.
pub fn node_ip(cfg: &Config) -> IpAddr {
    if let Some(ip) = cfg.node_ip {
        return ip;
    }
    let default_if = std::fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|routes| {
            routes.lines().skip(1).find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() > 2 && f[1] == "00000000").then(|| f[0].to_string())
            })
        });
    let addrs: Vec<_> = barge_network::host::interface_addresses()
        .into_iter()
        .filter(|(_, ip)| ip.is_ipv4())
        .collect();
    default_if
        .and_then(|i| addrs.iter().find(|(n, _)| *n == i).map(|(_, a)| *a))
        .or_else(|| addrs.first().map(|(_, a)| *a))
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// The machine's facts kubelet reports (`cadvisor` + `uname` + `os-release`).
struct Machine {
    cpus: usize,
    memory_kib: u64,
    storage_kib: u64,
    kernel: String,
    os_image: String,
    machine_id: String,
    boot_id: String,
}

fn machine(data_root: &std::path::Path) -> Machine {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let storage_kib = nix::sys::statvfs::statvfs(data_root)
        .map(|s| s.blocks() * s.fragment_size() / 1024)
        .unwrap_or(0);
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let os_image = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into());
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_kib,
        storage_kib,
        kernel,
        os_image,
        machine_id: read("/etc/machine-id"),
        boot_id: read("/proc/sys/kernel/random/boot_id"),
    }
}

/// kube's name for this machine's architecture (`runtime.GOARCH`).
pub fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The kubelet version this agent reports (`kubectl get nodes`' VERSION).
pub fn kubelet_version(cfg: &Config) -> String {
    format!("v1.33.0+barge-{}", cfg.version)
}

impl NodeAgent {
    pub fn new(client: Client, engine: Engine, cfg: Arc<Config>) -> Self {
        NodeAgent {
            client,
            engine,
            cfg,
        }
    }

    /// The node's status without the conditions' times (what is compared to decide a patch).
    fn status_body(&self) -> Value {
        let m = machine(&self.engine.data_root);
        let mem_alloc = m.memory_kib.saturating_sub(100 * 1024);
        // nodefs.available<10%: kubelet's default hard eviction threshold.
        let storage_alloc = m.storage_kib - m.storage_kib / 10;
        let ip = node_ip(&self.cfg);
        json!({
            "capacity": {
                "cpu": m.cpus.to_string(),
                "memory": format!("{}Ki", m.memory_kib),
                "ephemeral-storage": format!("{}Ki", m.storage_kib),
                "hugepages-1Gi": "0",
                "hugepages-2Mi": "0",
                "pods": "110",
            },
            "allocatable": {
                "cpu": m.cpus.to_string(),
                "memory": format!("{mem_alloc}Ki"),
                "ephemeral-storage": format!("{}", storage_alloc * 1024),
                "hugepages-1Gi": "0",
                "hugepages-2Mi": "0",
                "pods": "110",
            },
            "addresses": [
                {"type": "InternalIP", "address": ip.to_string()},
                {"type": "Hostname", "address": self.cfg.node_name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.cfg.kubelet_port}},
            "nodeInfo": {
                "machineID": m.machine_id,
                "systemUUID": m.machine_id,
                "bootID": m.boot_id,
                "kernelVersion": m.kernel,
                "osImage": m.os_image,
                "containerRuntimeVersion": format!("barge://{}", self.cfg.version),
                "kubeletVersion": kubelet_version(&self.cfg),
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": goarch(),
            },
        })
    }

    /// The four conditions kubelet sets (no pressure is measured yet: always healthy).
    fn conditions(heartbeat: &str, old: Option<&Node>) -> Value {
        let since = |t: &str, status: &str| {
            old.and_then(|n| n.status.as_ref())
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == t && c.status == status))
                .and_then(|c| c.last_transition_time.as_ref())
                .and_then(|t| serde_json::to_value(t).ok())
                .unwrap_or_else(|| json!(heartbeat))
        };
        let c = |t: &str, status: &str, reason: &str, message: &str| {
            json!({
                "type": t, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": heartbeat, "lastTransitionTime": since(t, status),
            })
        };
        json!([
            c(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available"
            ),
            c(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure"
            ),
            c(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available"
            ),
            c(
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status"
            ),
        ])
    }

    fn api(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    /// Creates the Node, or adopts an existing one.
    pub async fn register(&self) -> Result<Node, AgentError> {
        let name = &self.cfg.node_name;
        let arch = goarch();
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": arch,
                    "beta.kubernetes.io/os": "linux",
                    "beta.kubernetes.io/arch": arch,
                },
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
            },
        }))
        .expect("a Node");
        let api = self.api();
        match api.create(&PostParams::default(), &node).await {
            Ok(n) => {
                tracing::info!(node = %name, "node registered");
                Ok(n)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = api
                    .get(name)
                    .await
                    .map_err(|e| AgentError::api(format!("get node {name}"), e))?;
                tracing::info!(node = %name, "node already registered; adopted");
                Ok(existing)
            }
            Err(e) => Err(AgentError::api(format!("create node {name}"), e)),
        }
    }

    /// Patches the node's status (conditions with a fresh heartbeat).
    async fn patch_status(&self, body: &Value, old: Option<&Node>) -> Result<Node, AgentError> {
        let mut status = body.clone();
        status["conditions"] = Self::conditions(&crate::time::now(), old);
        let name = &self.cfg.node_name;
        self.api()
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({ "status": status })),
            )
            .await
            .map_err(|e| AgentError::api(format!("patch node {name} status"), e))
    }

    /// Creates or renews the Lease.
    async fn renew_lease(&self, node: &Node) -> Result<(), AgentError> {
        let name = &self.cfg.node_name;
        let api: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        let now = crate::time::now_micro();
        match api.get_opt(name).await {
            Ok(Some(mut lease)) => {
                let spec = lease.spec.get_or_insert_with(Default::default);
                spec.holder_identity = Some(name.clone());
                spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
                spec.renew_time = serde_json::from_value(json!(now)).ok();
                api.replace(name, &PostParams::default(), &lease)
                    .await
                    .map_err(|e| AgentError::api(format!("renew lease {name}"), e))?;
            }
            Ok(None) => {
                let lease: Lease = serde_json::from_value(json!({
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": name,
                        "namespace": "kube-node-lease",
                        "ownerReferences": [{
                            "apiVersion": "v1", "kind": "Node", "name": name,
                            "uid": node.metadata.uid.clone().unwrap_or_default(),
                        }],
                    },
                    "spec": {
                        "holderIdentity": name,
                        "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                        "renewTime": now,
                    },
                }))
                .expect("a Lease");
                api.create(&PostParams::default(), &lease)
                    .await
                    .map_err(|e| AgentError::api(format!("create lease {name}"), e))?;
            }
            Err(e) => return Err(AgentError::api(format!("get lease {name}"), e)),
        }
        Ok(())
    }

    /// Registers (retrying every 2 s), then renews the lease and reports the status forever.
    pub async fn run(self) {
        let node = loop {
            match self.register().await {
                Ok(n) => break n,
                Err(e) => {
                    tracing::warn!("node registration: {e}");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        };
        let mut node = node;
        let mut reported: Option<(Value, Instant)> = None;
        loop {
            let body = self.status_body();
            // As kubelet, the node as the API has it counts too: a Ready condition another
            // component changed (the node lifecycle controller's `Unknown`) is put right now.
            let mut overridden = false;
            if let Ok(Some(n)) = Api::<Node>::all(self.client.clone())
                .get_opt(&self.cfg.node_name)
                .await
            {
                overridden = n
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                    .is_some_and(|c| c.status != "True");
                node = n;
            }
            let due = match &reported {
                Some((b, at)) => overridden || *b != body || at.elapsed() >= STATUS_REPORT,
                None => true,
            };
            if due {
                match self.patch_status(&body, Some(&node)).await {
                    Ok(n) => {
                        node = n;
                        reported = Some((body, Instant::now()));
                    }
                    Err(e) => tracing::warn!("{e}"),
                }
            }
            if let Err(e) = self.renew_lease(&node).await {
                tracing::warn!("{e}");
            }
            tokio::time::sleep(LEASE_RENEW).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_block_of_the_cluster_cidr() {
        let f = |s: &str| first_block(&s.parse().unwrap()).to_string();
        assert_eq!(f("10.42.0.0/16"), "10.42.0.0/24");
        assert_eq!(f("10.42.7.0/16"), "10.42.0.0/24");
        assert_eq!(f("10.42.3.0/26"), "10.42.3.0/26");
        assert_eq!(f("fd00:42::/56"), "fd00:42::/64");
    }

    #[test]
    fn conditions_keep_their_transition_time() {
        let old: Node = serde_json::from_value(json!({"metadata": {"name": "n"}, "status": {
            "conditions": [{"type": "Ready", "status": "True",
                            "lastTransitionTime": "2020-01-01T00:00:00Z"}]}}))
        .unwrap();
        let c = NodeAgent::conditions("2026-01-01T00:00:00Z", Some(&old));
        let ready = c
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["lastTransitionTime"], "2020-01-01T00:00:00Z");
        assert_eq!(ready["lastHeartbeatTime"], "2026-01-01T00:00:00Z");
        assert_eq!(ready["reason"], "KubeletReady");
        let mem = &c[0];
        assert_eq!(mem["lastTransitionTime"], "2026-01-01T00:00:00Z");
        assert_eq!(mem["message"], "kubelet has sufficient memory available");
    }
}
