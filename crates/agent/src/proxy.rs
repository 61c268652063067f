//! The node's Service proxy (kube-proxy's job, nftables mode): Services and EndpointSlices
//! are watched ([`ClusterView`], shared with the cluster DNS in [`crate::dns`]) and, after
//! each burst of changes, every Service port's wanted behaviour is computed the way
//! kube-proxy computes it and handed to `barge_network::kubeproxy::ServiceProxy::sync`, which
//! writes only what changed, in one nftables transaction.
//!
//! Endpoints as kube-proxy picks them (`pkg/proxy/topology.go` `CategorizeEndpoints`): the
//! ready ones (`conditions.ready` unset counts as ready); when none is ready, the ones both
//! serving and terminating (a rolling update's old pods, still answering); none at all: the
//! port REJECTs. For `internalTrafficPolicy`/`externalTrafficPolicy: Local`, those of them on
//! this node (`nodeName`). Headless and ExternalName Services get no rules.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use barge_network::kubeproxy::{Endpoint, ServicePort, ServiceProxy};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::Store;
use kube::Client;
use tokio::sync::watch;

use crate::watch_all;

/// The label naming an EndpointSlice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Services, EndpointSlices and Namespaces of the whole cluster, kept current by reflectors;
/// `changed` ticks after every event (the namespaces are the cluster DNS's pod records').
#[derive(Clone)]
pub struct ClusterView {
    pub services: Store<Service>,
    pub slices: Store<EndpointSlice>,
    pub namespaces: Store<Namespace>,
    pub changed: watch::Receiver<u64>,
}

impl ClusterView {
    /// Starts the reflectors (tasks that live until the runtime ends) and waits until both
    /// listed once.
    pub async fn start(client: Client) -> ClusterView {
        let (tx, rx) = watch::channel(0u64);
        let tx = Arc::new(tx);
        let services = watch_all::<Service>(client.clone(), Some(tx.clone()), "service");
        let namespaces = watch_all::<Namespace>(client.clone(), Some(tx.clone()), "namespace");
        let slices = watch_all::<EndpointSlice>(client, Some(tx), "endpointslice");
        let _ = services.wait_until_ready().await;
        let _ = slices.wait_until_ready().await;
        let _ = namespaces.wait_until_ready().await;
        ClusterView {
            services,
            slices,
            namespaces,
            changed: rx,
        }
    }

    /// The IPv4 EndpointSlices of every Service, by (namespace, Service name): one pass over
    /// the cache, for a sync that looks at every Service.
    pub fn slices_by_service(&self) -> HashMap<(String, String), Vec<Arc<EndpointSlice>>> {
        let mut out: HashMap<(String, String), Vec<Arc<EndpointSlice>>> = HashMap::new();
        for s in self.slices.state() {
            let (Some(ns), Some(svc)) = (
                s.metadata.namespace.clone(),
                s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                    .cloned(),
            ) else {
                continue;
            };
            if s.address_type == "IPv4" {
                out.entry((ns, svc)).or_default().push(s);
            }
        }
        out
    }

    /// The EndpointSlices of Service `ns/name`.
    pub fn slices_of(&self, ns: &str, name: &str) -> Vec<Arc<EndpointSlice>> {
        self.slices
            .state()
            .into_iter()
            .filter(|s| {
                s.metadata.namespace.as_deref() == Some(ns)
                    && s.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(SERVICE_NAME_LABEL))
                        .map(String::as_str)
                        == Some(name)
                    && s.address_type == "IPv4"
            })
            .collect()
    }
}

/// One endpoint's conditions (`ready`, `serving`, `terminating`, as kube defaults them).
pub fn conditions(e: &k8s_openapi::api::discovery::v1::Endpoint) -> (bool, bool, bool) {
    let c = e.conditions.as_ref();
    let ready = c.and_then(|c| c.ready).unwrap_or(true);
    let serving = c.and_then(|c| c.serving).unwrap_or(ready);
    let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
    (ready, serving, terminating)
}

/// Every Service port the proxy of node `node` should handle, from the view.
pub fn desired(view: &ClusterView, node: &str) -> Vec<ServicePort> {
    let mut out = Vec::new();
    let by_service = view.slices_by_service();
    for svc in view.services.state() {
        let (Some(ns), Some(name)) = (
            svc.metadata.namespace.as_deref(),
            svc.metadata.name.as_deref(),
        ) else {
            continue;
        };
        let Some(spec) = &svc.spec else { continue };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let Some(cip) = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        else {
            continue;
        };
        let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .unwrap_or(10800) as u32
        });
        // A LoadBalancer Service answers on the node once the service load balancer admitted
        // it (filled its status; barge-controllers' `servicelb`).
        let load_balancer = spec.type_.as_deref() == Some("LoadBalancer")
            && spec.load_balancer_class.is_none()
            && svc
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|l| l.ingress.as_ref())
                .is_some_and(|l| !l.is_empty());
        // The Local policies (kube's `InternalPolicyLocal`/`ExternalPolicyLocal`: the external
        // one only for Services reachable from outside).
        let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
        let external_local = spec.external_traffic_policy.as_deref() == Some("Local")
            && matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
        let slices = by_service
            .get(&(ns.to_string(), name.to_string()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        for p in spec.ports.iter().flatten() {
            let proto = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
            let pname = p.name.clone().unwrap_or_default();
            let (mut ready, mut fallback) = (BTreeSet::new(), BTreeSet::new());
            let mut here = BTreeSet::new();
            for s in slices {
                let Some(port) = s.ports.iter().flatten().find(|sp| {
                    sp.name.clone().unwrap_or_default() == pname
                        && sp.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase() == proto
                }) else {
                    continue;
                };
                let Some(port) = port.port.and_then(|p| u16::try_from(p).ok()) else {
                    continue;
                };
                for e in &s.endpoints {
                    let Some(ip) = e.addresses.first().and_then(|a| a.parse().ok()) else {
                        continue;
                    };
                    let (r, serving, terminating) = conditions(e);
                    let ep = Endpoint { ip, port };
                    if e.node_name.as_deref() == Some(node) {
                        here.insert(ep.clone());
                    }
                    if r {
                        ready.insert(ep);
                    } else if serving && terminating {
                        fallback.insert(ep);
                    }
                }
            }
            let endpoints = if ready.is_empty() { fallback } else { ready };
            let local_endpoints = endpoints.intersection(&here).cloned().collect();
            out.push(ServicePort {
                id: format!("{ns}/{name}/{proto}/{pname}"),
                proto,
                cluster_ip: Some(cip),
                port: p.port as u16,
                node_port: p.node_port.and_then(|n| u16::try_from(n).ok()),
                load_balancer,
                affinity_timeout: affinity,
                endpoints: endpoints.into_iter().collect(),
                local_endpoints,
                internal_local,
                external_local,
            });
        }
    }
    // One owner per node port: a LoadBalancer port colliding with a node port or an earlier
    // LoadBalancer port (the controller's status lagging) is left out, never a failed
    // transaction.
    let mut used: BTreeSet<(String, u16)> = out
        .iter()
        .filter_map(|sp| sp.node_port.map(|np| (sp.proto.clone(), np)))
        .collect();
    for sp in out.iter_mut().filter(|sp| sp.load_balancer) {
        if !used.insert((sp.proto.clone(), sp.port)) {
            sp.load_balancer = false;
        }
    }
    out
}

/// The health checks node `node` serves (kube-proxy's `healthCheckNodePort` servers): one per
/// LoadBalancer Service with `externalTrafficPolicy: Local`, counting its ready endpoints on
/// this node.
pub fn health_checks(
    view: &ClusterView,
    node: &str,
) -> std::collections::BTreeMap<u16, crate::healthcheck::Health> {
    let mut out = std::collections::BTreeMap::new();
    for svc in view.services.state() {
        let (Some(ns), Some(name), Some(spec)) = (
            svc.metadata.namespace.as_deref(),
            svc.metadata.name.as_deref(),
            svc.spec.as_ref(),
        ) else {
            continue;
        };
        if spec.type_.as_deref() != Some("LoadBalancer")
            || spec.external_traffic_policy.as_deref() != Some("Local")
        {
            continue;
        }
        let Some(port) = spec
            .health_check_node_port
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
        else {
            continue;
        };
        let local: BTreeSet<String> = view
            .slices_of(ns, name)
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .filter(|e| e.node_name.as_deref() == Some(node) && conditions(e).0)
            .filter_map(|e| e.addresses.first().cloned())
            .collect();
        out.insert(
            port,
            crate::healthcheck::Health {
                namespace: ns.to_string(),
                name: name.to_string(),
                local_endpoints: local.len(),
            },
        );
    }
    out
}

/// Runs the proxy on table `table` until aborted: the table is made at start, then
/// re-synced after each burst of changes (50 ms of quiet) and every 30 s.
pub async fn run(
    view: ClusterView,
    table: String,
    node: String,
    cluster_cidr: ipnet::Ipv4Net,
    service_cidr: ipnet::Ipv4Net,
) {
    let proxy = {
        let t = table.clone();
        match tokio::task::spawn_blocking(move || ServiceProxy::new(&t, cluster_cidr, service_cidr))
            .await
        {
            Ok(Ok(p)) => Arc::new(p),
            Ok(Err(e)) => {
                tracing::error!(%table, "service proxy not started: {e}");
                return;
            }
            Err(_) => return,
        }
    };
    let mut changed = view.changed.clone();
    let mut health = crate::healthcheck::HealthChecks::default();
    loop {
        health.sync(health_checks(&view, &node)).await;
        let want = desired(&view, &node);
        let p = proxy.clone();
        let started = std::time::Instant::now();
        match tokio::task::spawn_blocking(move || p.sync(&want)).await {
            Ok(Ok(stats)) if stats.commands > 0 => tracing::debug!(
                changed = stats.changed,
                commands = stats.commands,
                full = stats.full,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "service rules synced"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("service rules: {e}"),
            Err(_) => return,
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        // Let a burst of changes (a rollout, a scale) settle into one transaction.
        tokio::time::sleep(Duration::from_millis(50)).await;
        changed.borrow_and_update();
    }
}
