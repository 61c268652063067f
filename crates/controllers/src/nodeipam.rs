//! Node IPAM: kube-controller-manager's `--allocate-node-cidrs` with the range allocator
//! (`pkg/controller/nodeipam/ipam/range_allocator.go`). Each Node without a `spec.podCIDR`
//! gets the lowest free block of the cluster CIDR (`--cluster-cidr`; /24 for IPv4, kube's
//! `--node-cidr-mask-size`, /64 for IPv6) in `spec.podCIDR` and `spec.podCIDRs`. The blocks of
//! the Nodes that have one are in use — so a restarted controller keeps every assignment —
//! and a deleted Node's block is free again. The first node gets the first block
//! (10.42.0.0/24 of 10.42.0.0/16), as barge's agents took before this controller existed.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{reflector, watcher, WatchStreamExt as _};
use kube::Client;
use serde_json::json;

use crate::ControllerError;

/// The block size a node gets: kube's `--node-cidr-mask-size` defaults (24 for IPv4, 64 for
/// IPv6), or the whole cluster CIDR when it is smaller.
pub fn mask_size(cluster: &ipnet::IpNet) -> u8 {
    let want = match cluster {
        ipnet::IpNet::V4(_) => 24,
        ipnet::IpNet::V6(_) => 64,
    };
    want.max(cluster.prefix_len())
}

/// The lowest block of `cluster` not in `used`, if any is left.
pub fn lowest_free(cluster: &ipnet::IpNet, used: &BTreeSet<ipnet::IpNet>) -> Option<ipnet::IpNet> {
    cluster
        .trunc()
        .subnets(mask_size(cluster))
        .ok()?
        .find(|b| !used.contains(b))
}

/// Which node needs which block: for each Node of `nodes` (name, podCIDR) without one, in name
/// order, the lowest block free after `nodes`' own and those assigned before it.
pub fn plan(
    cluster: &ipnet::IpNet,
    nodes: &[(String, Option<String>)],
) -> Vec<(String, Option<ipnet::IpNet>)> {
    let mut used: BTreeSet<ipnet::IpNet> = nodes
        .iter()
        .filter_map(|(_, c)| c.as_deref()?.parse::<ipnet::IpNet>().ok())
        .map(|c| c.trunc())
        .collect();
    let mut out = Vec::new();
    let mut wanting: Vec<&String> = nodes
        .iter()
        .filter(|(_, c)| c.is_none())
        .map(|(n, _)| n)
        .collect();
    wanting.sort();
    for name in wanting {
        let block = lowest_free(cluster, &used);
        if let Some(b) = block {
            used.insert(b);
        }
        out.push((name.clone(), block));
    }
    out
}

/// Runs the allocator over `cluster` until cancelled: a reflector on the Nodes, a pass after
/// each change (and every 10 s).
pub async fn run(client: Client, cluster: ipnet::IpNet) {
    let api: Api<Node> = Api::all(client.clone());
    let (reader, writer) = reflector::store::<Node>();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .touched_objects();
        futures_util::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            if ev.is_ok() {
                let _ = tx.send(());
            }
        }
    });
    if reader.wait_until_ready().await.is_err() {
        return;
    }
    // Blocks patched but maybe not yet seen by the reflector (node → block).
    let mut assigned: BTreeMap<String, ipnet::IpNet> = BTreeMap::new();
    loop {
        let nodes: Vec<(String, Option<String>, Option<String>)> = reader
            .state()
            .iter()
            .map(|n| {
                let name = n.metadata.name.clone().unwrap_or_default();
                let cidr = n
                    .spec
                    .as_ref()
                    .and_then(|s| s.pod_cidr.clone())
                    .or_else(|| assigned.get(&name).map(|c| c.to_string()));
                (name, cidr, n.metadata.resource_version.clone())
            })
            .collect();
        assigned.retain(|name, _| nodes.iter().any(|(n, _, _)| n == name));
        let view: Vec<(String, Option<String>)> = nodes
            .iter()
            .map(|(n, c, _)| (n.clone(), c.clone()))
            .collect();
        for (name, block) in plan(&cluster, &view) {
            let Some(block) = block else {
                tracing::warn!(node = %name, %cluster, "node IPAM: no podCIDR left in the cluster CIDR");
                continue;
            };
            let rv = nodes
                .iter()
                .find(|(n, _, _)| *n == name)
                .and_then(|(_, _, rv)| rv.clone());
            match assign(&client, &name, block, rv).await {
                Ok(()) => {
                    tracing::info!(node = %name, pod_cidr = %block, "node IPAM: assigned");
                    assigned.insert(name, block);
                }
                Err(e) => tracing::warn!("node IPAM: {e}"),
            }
        }
        tokio::select! {
            r = rx.recv() => if r.is_none() { return },
            _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
        }
        // One pass for a burst of changes.
        while rx.try_recv().is_ok() {}
    }
}

/// Writes `block` into node `name`'s spec, conditional on `rv` (a conflict: the next pass).
async fn assign(
    client: &Client,
    name: &str,
    block: ipnet::IpNet,
    rv: Option<String>,
) -> Result<(), ControllerError> {
    let api: Api<Node> = Api::all(client.clone());
    let c = block.to_string();
    let patch = json!({
        "metadata": {"resourceVersion": rv},
        "spec": {"podCIDR": c, "podCIDRs": [c]},
    });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| ControllerError::api(format!("assign podCIDR {c} to node {name}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(name: &str, cidr: Option<&str>) -> (String, Option<String>) {
        (name.to_string(), cidr.map(str::to_string))
    }

    fn got(name: &str, block: Option<&str>) -> (String, Option<ipnet::IpNet>) {
        (name.to_string(), block.map(|b| b.parse().unwrap()))
    }

    #[test]
    fn the_lowest_free_block_goes_to_each_node_without_one() {
        let cluster: ipnet::IpNet = "10.42.0.0/16".parse().unwrap();
        let p = plan(&cluster, &[n("a", None)]);
        assert_eq!(p, [got("a", Some("10.42.0.0/24"))]);
        // Existing assignments are in use; a gap (a deleted node) is filled first.
        let p = plan(
            &cluster,
            &[
                n("a", Some("10.42.0.0/24")),
                n("c", Some("10.42.2.0/24")),
                n("z", None),
                n("b", None),
            ],
        );
        assert_eq!(
            p,
            [
                got("b", Some("10.42.1.0/24")),
                got("z", Some("10.42.3.0/24"))
            ]
        );
        // A /24 cluster CIDR is one block: the second node gets none.
        let small: ipnet::IpNet = "10.160.3.0/24".parse().unwrap();
        let p = plan(&small, &[n("a", Some("10.160.3.0/24")), n("b", None)]);
        assert_eq!(p, [got("b", None)]);
        let v6: ipnet::IpNet = "fd00:42::/56".parse().unwrap();
        assert_eq!(
            lowest_free(&v6, &BTreeSet::new()).unwrap().to_string(),
            "fd00:42::/64"
        );
    }
}
