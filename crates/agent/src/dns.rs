//! Cluster DNS on this node (CoreDNS's job, in-process): the zone of the cluster domain is
//! rebuilt from the [`ClusterView`] after each change and served by
//! `barge_network::clusterdns` on the pod network's gateway address, port 53 (UDP and TCP).
//! The `kube-dns` Service (the cluster DNS address, `--cluster-dns`, created by the API
//! server at start) has no selector: this agent publishes its own EndpointSlice
//! (`kube-dns-<node>`, managed by `barge-agent`) pointing at that gateway address, so the
//! Service proxy DNATs pods' queries to it like any Service's traffic.
//!
//! Pods get kubelet's `/etc/resolv.conf` ([`resolv_conf`]): for `dnsPolicy: ClusterFirst`
//! (the default) `nameserver <cluster DNS>`, `search <ns>.svc.<domain> svc.<domain>
//! <domain>` plus the node's search domains, `options ndots:5`; `Default` is the node's
//! resolv.conf; `None` only `dnsConfig`; `dnsConfig` is merged into the others as kubelet
//! merges it (nameservers and searches appended, options by name).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use barge_network::clusterdns::{dashed, Zone, ZoneRecord};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use crate::proxy::{conditions, ClusterView};
use crate::Config;

/// The cluster DNS Service (k3s's and kubeadm's name).
pub const DNS_SERVICE: &str = "kube-dns";
/// `endpointslice.kubernetes.io/managed-by` of the slices this agent writes.
pub const MANAGED_BY: &str = "barge-agent";

/// The zone of `domain` for the Services, EndpointSlices and Namespaces in `view`.
pub fn zone(view: &ClusterView, domain: &str) -> Zone {
    let mut z = Zone::new(domain);
    let domain = z.domain.clone();
    z.namespaces = view
        .namespaces
        .state()
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    for svc in view.services.state() {
        let (Some(ns), Some(name)) = (
            svc.metadata.namespace.as_deref(),
            svc.metadata.name.as_deref(),
        ) else {
            continue;
        };
        let Some(spec) = &svc.spec else { continue };
        let fq = format!("{name}.{ns}.svc.{domain}");
        if spec.type_.as_deref() == Some("ExternalName") {
            if let Some(ext) = spec.external_name.as_deref().filter(|e| !e.is_empty()) {
                z.add(&fq, ZoneRecord::Cname(ext.to_string()));
            }
            continue;
        }
        let headless = spec.cluster_ip.as_deref() == Some("None");
        let cip = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
        if let Some(ip) = cip {
            z.add(&fq, ZoneRecord::A(ip));
            for p in spec.ports.iter().flatten() {
                if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                    let proto = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
                    z.add(
                        &format!("_{pn}._{proto}.{fq}"),
                        ZoneRecord::Srv(0, 100, p.port as u16, fq.clone()),
                    );
                }
            }
        }
        // Endpoint names (hostname or dashed address) and, for headless Services, the
        // Service name itself and SRV records per endpoint; only ready endpoints (unless
        // publishNotReadyAddresses).
        let publish_all = spec.publish_not_ready_addresses == Some(true);
        for s in view.slices_of(ns, name) {
            for e in &s.endpoints {
                let (ready, _, _) = conditions(e);
                if !ready && !publish_all {
                    continue;
                }
                let Some(ip) = e.addresses.first().and_then(|a| a.parse::<Ipv4Addr>().ok()) else {
                    continue;
                };
                let host = e.hostname.clone().unwrap_or_else(|| dashed(IpAddr::V4(ip)));
                let efq = format!("{host}.{fq}");
                if headless || e.hostname.is_some() {
                    z.add(&efq, ZoneRecord::A(ip));
                }
                if headless {
                    z.add(&fq, ZoneRecord::A(ip));
                    for p in s.ports.iter().flatten() {
                        let (Some(pn), Some(port)) =
                            (p.name.as_deref().filter(|n| !n.is_empty()), p.port)
                        else {
                            continue;
                        };
                        let proto = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
                        z.add(
                            &format!("_{pn}._{proto}.{fq}"),
                            ZoneRecord::Srv(0, 100, port as u16, efq.clone()),
                        );
                    }
                }
            }
        }
    }
    z
}

/// The address this node serves cluster DNS on: the pod network's gateway (the first
/// address of the node's podCIDR).
pub fn listen_ip(cfg: &Config) -> Option<Ipv4Addr> {
    match cfg.pod_cidr() {
        ipnet::IpNet::V4(n) => n.hosts().next(),
        ipnet::IpNet::V6(_) => None,
    }
}

/// Publishes this node's endpoint of the `kube-dns` Service (server-side apply, so a
/// restart rewrites the same object).
async fn publish(client: &Client, cfg: &Config, ip: Ipv4Addr) -> Result<(), kube::Error> {
    let api: Api<k8s_openapi::api::discovery::v1::EndpointSlice> =
        Api::namespaced(client.clone(), "kube-system");
    let name = format!("{DNS_SERVICE}-{}", cfg.node_name);
    let slice = serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": "kube-system",
            "labels": {
                (crate::proxy::SERVICE_NAME_LABEL): DNS_SERVICE,
                "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
            },
        },
        "addressType": "IPv4",
        "endpoints": [{
            "addresses": [ip.to_string()],
            "conditions": {"ready": true, "serving": true, "terminating": false},
            "nodeName": cfg.node_name,
        }],
        "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
        ],
    });
    api.patch(
        &name,
        &PatchParams::apply(MANAGED_BY).force(),
        &Patch::Apply(&slice),
    )
    .await
    .map(|_| ())
}

/// Serves cluster DNS until aborted.
pub async fn run(client: Client, view: ClusterView, cfg: Arc<Config>) {
    let Some(ip) = listen_ip(&cfg) else {
        tracing::warn!("cluster DNS: the pod network is not IPv4; not served");
        return;
    };
    let zone = Arc::new(RwLock::new(self::zone(&view, &cfg.cluster_domain)));
    let server =
        match barge_network::clusterdns::serve(SocketAddr::new(IpAddr::V4(ip), 53), zone.clone()) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("cluster DNS not served: {e}");
                return;
            }
        };
    // Publish the endpoint, retrying until the API takes it.
    let (c, cf) = (client.clone(), cfg.clone());
    let publisher = tokio::spawn(async move {
        loop {
            match publish(&c, &cf, ip).await {
                Ok(()) => return,
                Err(e) => tracing::debug!("publishing the kube-dns endpoint: {e}"),
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
    let mut changed = view.changed.clone();
    while changed.changed().await.is_ok() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        changed.borrow_and_update();
        let z = self::zone(&view, &cfg.cluster_domain);
        *zone.write().unwrap_or_else(|e| e.into_inner()) = z;
    }
    publisher.abort();
    server.abort();
}

/// The node's resolv.conf: nameservers, search domains, options.
fn host_resolv() -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut ns, mut search, mut opts) = (Vec::new(), Vec::new(), Vec::new());
    for line in std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
    {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("nameserver") => ns.extend(f.next().map(String::from)),
            Some("search") | Some("domain") => search = f.map(String::from).collect(),
            Some("options") => opts.extend(f.map(String::from)),
            _ => {}
        }
    }
    (ns, search, opts)
}

/// kubelet's resolv.conf for `pod` (`pkg/kubelet/network/dns/dns.go`); `None` for
/// host-network pods with `Default`-like policy (the engine's file then).
pub fn resolv_conf(pod: &Pod, cfg: &Config) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let host_net = spec.host_network == Some(true);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let (host_ns, host_search, host_opts) = host_resolv();
    let domain = cfg.cluster_domain.trim_end_matches('.');
    let (mut servers, mut search, mut opts): (Vec<String>, Vec<String>, Vec<String>) =
        match (policy, host_net) {
            ("None", _) => (vec![], vec![], vec![]),
            ("ClusterFirstWithHostNet", _) | ("ClusterFirst", false) => {
                let mut s = vec![
                    format!("{ns}.svc.{domain}"),
                    format!("svc.{domain}"),
                    domain.to_string(),
                ];
                s.extend(host_search.clone());
                (
                    vec![cfg.cluster_dns.to_string()],
                    s,
                    vec!["ndots:5".to_string()],
                )
            }
            // Default, and ClusterFirst on the host network (kubelet falls back to Default).
            _ => {
                if host_net && spec.dns_config.is_none() {
                    return None;
                }
                (host_ns, host_search, host_opts)
            }
        };
    if let Some(dc) = &spec.dns_config {
        servers.extend(dc.nameservers.iter().flatten().cloned());
        search.extend(dc.searches.iter().flatten().cloned());
        let mut by_name: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        for o in &opts {
            let (k, v) = match o.split_once(':') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (o.clone(), None),
            };
            if by_name.insert(k.clone(), v).is_none() {
                order.push(k);
            }
        }
        for o in dc.options.iter().flatten() {
            let Some(n) = o.name.clone() else { continue };
            if !by_name.contains_key(&n) {
                order.push(n.clone());
            }
            by_name.insert(n, o.value.clone());
        }
        opts = order
            .iter()
            .map(|k| match by_name.get(k).cloned().flatten() {
                Some(v) => format!("{k}:{v}"),
                None => k.clone(),
            })
            .collect();
    }
    // kubelet's limits: 3 nameservers, 32 search domains, no duplicates.
    let mut seen = std::collections::HashSet::new();
    servers.retain(|s| seen.insert(s.clone()));
    servers.truncate(3);
    let mut seen = std::collections::HashSet::new();
    search.retain(|s| seen.insert(s.clone()));
    search.truncate(32);
    let mut out = String::new();
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for s in &servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !opts.is_empty() {
        out.push_str(&format!("options {}\n", opts.join(" ")));
    }
    Some(out)
}

/// Writes `pod`'s resolv.conf into its directory and returns the bind (`src:/etc/resolv.conf`)
/// that replaces the engine's file in each of its containers; `None`: the engine's file.
pub fn resolv_bind(cfg: &Config, data_root: &Path, pod: &Pod) -> Option<String> {
    let content = resolv_conf(pod, cfg)?;
    let uid = pod.metadata.uid.as_deref()?;
    let path: PathBuf = crate::volumes::pod_dir(data_root, uid).join("resolv.conf");
    std::fs::create_dir_all(path.parent()?).ok()?;
    if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
        if let Err(e) = std::fs::write(&path, content) {
            tracing::warn!("writing {}: {e}", path.display());
            return None;
        }
    }
    Some(format!("{}:/etc/resolv.conf", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config {
            node_name: "n".into(),
            node_ip: None,
            cluster_cidr: "10.42.0.0/16".parse().unwrap(),
            pod_cidr: None,
            backoff_base: std::time::Duration::from_secs(10),
            version: "0".into(),
            service_cidr: "10.43.0.0/16".parse().unwrap(),
            kubelet_port: 10250,
            stream_tls: None,
            cluster_dns: "10.43.0.10".parse().unwrap(),
            cluster_domain: "cluster.local".into(),
            metrics_resolution: crate::metrics::DEFAULT_RESOLUTION,
            pod_network_backend: Default::default(),
        }
    }

    #[test]
    fn kubelet_resolv_conf() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "web", "uid": "u"},
            "spec": {"containers": []}
        }))
        .unwrap();
        let r = resolv_conf(&pod, &cfg()).unwrap();
        assert!(r.starts_with("search web.svc.cluster.local svc.cluster.local cluster.local"));
        assert!(r.contains("nameserver 10.43.0.10\n"));
        assert!(r.ends_with("options ndots:5\n"));
        let none: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "web"},
            "spec": {"containers": [], "dnsPolicy": "None", "dnsConfig": {
                "nameservers": ["1.2.3.4"], "searches": ["a.b"],
                "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}
        }))
        .unwrap();
        assert_eq!(
            resolv_conf(&none, &cfg()).unwrap(),
            "search a.b\nnameserver 1.2.3.4\noptions ndots:2 edns0\n"
        );
        let merged: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "web"},
            "spec": {"containers": [], "dnsConfig": {
                "options": [{"name": "ndots", "value": "1"}]}}
        }))
        .unwrap();
        assert!(resolv_conf(&merged, &cfg())
            .unwrap()
            .ends_with("options ndots:1\n"));
    }
}
