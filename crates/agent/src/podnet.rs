//! The pod network between nodes: what flannel's daemon does in k3s, on
//! [`barge_network::podnet`]. It watches the Nodes and keeps one route (host-gw), or one
//! route, neighbour and FDB entry (VXLAN), per other node with a `spec.podCIDR` and an IPv4
//! InternalIP; for VXLAN it writes its own Node's flannel annotations (`backend-type`,
//! `backend-data` with the `VtepMAC`, `public-ip`, `kube-subnet-manager`), which the other
//! nodes read. Backend `none` removes what an earlier backend left and does nothing else.
//! While this is the only node with a podCIDR nothing is made on the host (no tunnel device on a
//! one-node cluster).
//!
//! The first pass is a full reconcile ([`PodNet::sync`]: stale entries of nodes gone while the
//! agent was down are removed); later ones are incremental per changed node
//! ([`PodNet::add`]/[`PodNet::remove`]); an error makes the next pass a full one again.
//!
//! Spec reference: flannel's Kubernetes subnet manager
//! (`pkg/subnet/kube/annotations.go`, `pkg/backend/vxlan/vxlan.go`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use barge_network::podnet::{format_mac, parse_mac, Backend, PodNet, Remote, VXLAN_VNI};
use futures_util::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use serde_json::json;

use crate::Config;

/// flannel's annotation with the backend's data (`{"VNI":1,"VtepMAC":"…"}` for VXLAN).
pub const BACKEND_DATA: &str = "flannel.alpha.coreos.com/backend-data";
/// flannel's annotation naming the backend (`vxlan`, `host-gw`).
pub const BACKEND_TYPE: &str = "flannel.alpha.coreos.com/backend-type";
/// flannel's annotation with the node's tunnel endpoint address.
pub const PUBLIC_IP: &str = "flannel.alpha.coreos.com/public-ip";
/// flannel's annotation saying the subnet came from the Kubernetes subnet manager.
pub const KUBE_SUBNET_MANAGER: &str = "flannel.alpha.coreos.com/kube-subnet-manager";

/// How long the task waits between passes after an error.
const RETRY: Duration = Duration::from_secs(5);

/// The InternalIP of `node` (IPv4 only).
fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")
        .and_then(|a| a.address.parse().ok())
}

/// `node`'s podCIDR (IPv4 only).
fn pod_cidr(node: &Node) -> Option<Ipv4Net> {
    node.spec.as_ref()?.pod_cidr.as_ref()?.parse().ok()
}

/// What `node` tells the others about itself: its podCIDR, its address (flannel's
/// `public-ip` when set, else its InternalIP) and for VXLAN its VtepMAC.
pub fn remote(node: &Node, backend: Backend) -> Option<Remote> {
    let ann = node.metadata.annotations.as_ref();
    let public = ann
        .and_then(|a| a.get(PUBLIC_IP))
        .and_then(|s| s.parse().ok());
    let vtep_mac = match backend {
        Backend::Vxlan => ann
            .filter(|a| a.get(BACKEND_TYPE).map(String::as_str) == Some("vxlan"))
            .and_then(|a| a.get(BACKEND_DATA))
            .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .and_then(|d| d["VtepMAC"].as_str().and_then(parse_mac)),
        _ => None,
    };
    Some(Remote {
        node_ip: public.or_else(|| internal_ip(node))?,
        pod_cidr: pod_cidr(node)?,
        vtep_mac,
    })
}

/// The annotations this node writes on its own Node.
pub fn annotations(backend: Backend, node_ip: Ipv4Addr, mac: Option<[u8; 6]>) -> serde_json::Value {
    let data = match mac {
        Some(m) => json!({"VNI": VXLAN_VNI, "VtepMAC": format_mac(&m)}).to_string(),
        None => "null".to_string(),
    };
    json!({
        BACKEND_TYPE: backend.as_str(),
        BACKEND_DATA: data,
        PUBLIC_IP: node_ip.to_string(),
        KUBE_SUBNET_MANAGER: "true",
    })
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, barge_network::NetworkError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Keeps the routes to the other nodes' pods until aborted.
pub async fn run(client: Client, cfg: Arc<Config>) {
    let backend = cfg.pod_network_backend;
    if backend == Backend::None {
        if let Err(e) = blocking(PodNet::teardown).await {
            tracing::warn!("pod network: removing the routes of an earlier backend: {e}");
        }
        return;
    }
    let IpAddr::V4(node_ip) = crate::node::node_ip(&cfg) else {
        tracing::warn!("pod network: IPv4 node addresses only; no routes to other nodes");
        return;
    };
    let (store, writer) = reflector::store::<Node>();
    let (tx, mut changed) = tokio::sync::watch::channel(0u64);
    let api: Api<Node> = Api::all(client.clone());
    let watch = tokio::spawn(async move {
        let s = reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .touched_objects();
        futures_util::pin_mut!(s);
        while let Some(ev) = s.next().await {
            if let Err(e) = ev {
                tracing::debug!("node watch: {e}");
            }
            tx.send_modify(|n| *n += 1);
        }
    });
    let _ = store.wait_until_ready().await;
    let mut state = State {
        net: None,
        applied: None,
    };
    loop {
        let ok = state.pass(&client, &cfg, &store, backend, node_ip).await;
        if !ok {
            state.applied = None;
            tokio::time::sleep(RETRY).await;
            continue;
        }
        if changed.changed().await.is_err() {
            break;
        }
    }
    watch.abort();
}

struct State {
    /// The set-up done for this podCIDR (the Node's may change once, when IPAM sets it).
    net: Option<PodNet>,
    /// The remote nodes as last applied; `None`: the next pass is a full reconcile.
    applied: Option<BTreeMap<String, Remote>>,
}

impl State {
    /// One pass: set-up (once per podCIDR), own annotations, then the remote nodes. Returns
    /// false on an error (logged).
    async fn pass(
        &mut self,
        client: &Client,
        cfg: &Config,
        store: &Store<Node>,
        backend: Backend,
        node_ip: Ipv4Addr,
    ) -> bool {
        let own = store
            .state()
            .into_iter()
            .find(|n| n.metadata.name.as_deref() == Some(cfg.node_name.as_str()));
        let Some(own) = own else {
            return true; // not registered yet: the next Node event comes
        };
        let fallback = match cfg.pod_cidr() {
            ipnet::IpNet::V4(n) => n,
            ipnet::IpNet::V6(_) => {
                tracing::warn!("pod network: IPv4 cluster CIDRs only");
                return true;
            }
        };
        let cidr = pod_cidr(&own).unwrap_or(fallback);
        // A one-node cluster needs no tunnel or routes: nothing is made on the host until
        // another Node with a podCIDR exists (both sides then set up and announce themselves).
        let others = store.state().iter().any(|n| {
            n.metadata.name.as_deref() != Some(cfg.node_name.as_str()) && pod_cidr(n).is_some()
        });
        if self.net.is_none() && !others {
            return true;
        }
        if self.net.as_ref().map(|n| n.pod_cidr) != Some(cidr) {
            let net = PodNet {
                backend,
                node_ip,
                pod_cidr: cidr,
            };
            let n = net.clone();
            let mac = match blocking(move || n.ensure()).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("pod network: {backend} set-up: {e}");
                    return false;
                }
            };
            let want = annotations(backend, node_ip, mac);
            let have = own.metadata.annotations.clone().unwrap_or_default();
            let differs = want
                .as_object()
                .into_iter()
                .flatten()
                .any(|(k, v)| have.get(k).map(|s| json!(s)) != Some(v.clone()));
            if differs {
                let api: Api<Node> = Api::all(client.clone());
                let patch = json!({"metadata": {"annotations": want}});
                if let Err(e) = api
                    .patch(
                        &cfg.node_name,
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    tracing::warn!("pod network: annotating node {}: {e}", cfg.node_name);
                    return false;
                }
            }
            tracing::info!(backend = %backend, pod_cidr = %cidr, "pod network between nodes set up");
            self.net = Some(net);
            self.applied = None;
        }
        let Some(net) = self.net.clone() else {
            return false;
        };
        let want: BTreeMap<String, Remote> = store
            .state()
            .iter()
            .filter_map(|n| {
                let name = n.metadata.name.clone()?;
                if name == cfg.node_name {
                    return None;
                }
                remote(n, backend).map(|r| (name, r))
            })
            .collect();
        if self.applied.as_ref() == Some(&want) {
            return true;
        }
        let prev = self.applied.take();
        let w = want.clone();
        let r = blocking(move || match prev {
            None => net.sync(&w.values().cloned().collect::<Vec<_>>()),
            Some(prev) => {
                for (name, old) in &prev {
                    if w.get(name) != Some(old) {
                        net.remove(old)?;
                    }
                }
                for (name, new) in &w {
                    if prev.get(name) != Some(new) {
                        net.add(new)?;
                    }
                }
                Ok(())
            }
        })
        .await;
        match r {
            Ok(()) => {
                self.applied = Some(want);
                true
            }
            Err(e) => {
                tracing::warn!("pod network: routes to other nodes: {e}");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ip: &str, cidr: Option<&str>, ann: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": ann},
            "spec": {"podCIDR": cidr},
            "status": {"addresses": [
                {"type": "Hostname", "address": name},
                {"type": "InternalIP", "address": ip},
            ]},
        }))
        .unwrap()
    }

    #[test]
    fn remote_from_flannel_annotations() {
        let ann = annotations(
            Backend::Vxlan,
            "192.168.5.2".parse().unwrap(),
            Some([0x0e, 0xba, 1, 2, 3, 4]),
        );
        assert_eq!(
            ann[BACKEND_DATA],
            r#"{"VNI":1,"VtepMAC":"0e:ba:01:02:03:04"}"#
        );
        let n = node("b", "192.168.5.9", Some("10.42.1.0/24"), ann);
        let r = remote(&n, Backend::Vxlan).unwrap();
        // public-ip wins over the InternalIP (flannel's --public-ip).
        assert_eq!(r.node_ip, "192.168.5.2".parse::<Ipv4Addr>().unwrap());
        assert_eq!(r.pod_cidr, "10.42.1.0/24".parse::<Ipv4Net>().unwrap());
        assert_eq!(r.vtep_mac, Some([0x0e, 0xba, 1, 2, 3, 4]));
        // host-gw: the address only.
        assert_eq!(remote(&n, Backend::HostGw).unwrap().vtep_mac, None);
        // Not annotated yet: a remote without a VtepMAC (the backend adds no route for it).
        let n = node("c", "192.168.5.3", Some("10.42.2.0/24"), json!({}));
        let r = remote(&n, Backend::Vxlan).unwrap();
        assert_eq!((r.node_ip.octets()[3], r.vtep_mac), (3, None));
        // No podCIDR yet: nothing.
        assert!(remote(&node("d", "192.168.5.4", None, json!({})), Backend::HostGw).is_none());
        let hg = annotations(Backend::HostGw, "192.168.5.2".parse().unwrap(), None);
        assert_eq!(hg[BACKEND_DATA], "null");
        assert_eq!(hg[BACKEND_TYPE], "host-gw");
    }
}
