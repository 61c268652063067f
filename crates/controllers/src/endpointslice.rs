//! The EndpointSlice controller (kube-controller-manager's `endpointslice-controller`,
//! `pkg/controller/endpointslice`, `staging/src/k8s.io/endpointslice/reconciler.go`): every
//! Service with a selector gets EndpointSlices (discovery.k8s.io/v1, `addressType: IPv4`)
//! listing the pods it selects, one slice per set of resolved ports (a named `targetPort` is
//! looked up in each pod's containers, so pods may differ), at most 100 endpoints a slice.
//!
//! As kube: slices are labelled `kubernetes.io/service-name` and
//! `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io` (only slices
//! with that label are this controller's; others — the node agent's `kube-dns` endpoint, a
//! user's — are left alone), carry the Service's labels and `service.kubernetes.io/headless`
//! for headless Services, and are owned by the Service (the garbage collector removes them
//! with it). An endpoint is a pod with an IP that is not terminal: `ready` = pod Ready and not
//! terminating (always, with `publishNotReadyAddresses`), `serving` = pod Ready,
//! `terminating` = being deleted; `hostname` when the pod's `subdomain` is the Service's name;
//! `targetRef` and `nodeName`. A Service that selects nothing keeps one empty slice
//! (kube's placeholder).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::ControllerError;

/// `endpointslice.kubernetes.io/managed-by` of this controller's slices.
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// The label naming a slice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// kube's `--max-endpoints-per-slice` default.
const MAX_PER_SLICE: usize = 100;

/// One port of a pod's endpoint: (name, port, protocol, appProtocol).
pub(crate) type PortKey = (String, i32, String, Option<String>);

/// A pod as an endpoint of a Service.
pub(crate) struct PodEndpoint {
    pub pod: Arc<Pod>,
    pub ip: String,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub ports: Vec<PortKey>,
}

/// Whether `pod`'s Ready condition is True.
fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// kube's `findPort`: a Service port's target port on `pod` (a named one looked up in its
/// containers' ports with the same protocol); `None` if the pod has no such port.
pub(crate) fn target_port(
    pod: &Pod,
    port: &k8s_openapi::api::core::v1::ServicePort,
) -> Option<i32> {
    let proto = port.protocol.as_deref().unwrap_or("TCP");
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            pod.spec.as_ref()?.containers.iter().find_map(|c| {
                c.ports.iter().flatten().find_map(|p| {
                    (p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == proto)
                        .then_some(p.container_port)
                })
            })
        }
    }
}

/// The pods `svc` selects, as endpoints (kube's `ShouldPodBeInEndpoints`: an IP, not
/// terminal), sorted by name.
pub(crate) async fn endpoints_of(
    client: &Client,
    svc: &Service,
) -> Result<Option<Vec<PodEndpoint>>, ControllerError> {
    let Some(spec) = &svc.spec else {
        return Ok(None);
    };
    let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let ns = svc.namespace().unwrap_or_default();
    let sel = selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let list = pods
        .list(&ListParams::default().labels(&sel))
        .await
        .map_err(|e| {
            ControllerError::api(
                format!("listing the pods of service {ns}/{}", svc.name_any()),
                e,
            )
        })?;
    let publish = spec.publish_not_ready_addresses == Some(true);
    let mut out = Vec::new();
    for pod in list.items {
        let Some(ip) = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .filter(|ip| !ip.is_empty() && !ip.contains(':'))
        else {
            continue;
        };
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let ready = pod_ready(&pod);
        let ports = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                Some((
                    p.name.clone().unwrap_or_default(),
                    target_port(&pod, p)?,
                    p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    p.app_protocol.clone(),
                ))
            })
            .collect();
        out.push(PodEndpoint {
            ip,
            ready: publish || (ready && !terminating),
            serving: publish || ready,
            terminating,
            ports,
            pod: Arc::new(pod),
        });
    }
    out.sort_by_key(|e| e.pod.name_any());
    Ok(Some(out))
}

/// The Service owning its slices (controller reference, as kube sets it).
fn owner(svc: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc.name_any(),
        uid: svc.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The slices `svc` should have: (ports, endpoints) per slice.
fn desired(svc: &Service, eps: &[PodEndpoint]) -> Vec<(Vec<EndpointPort>, Vec<Endpoint>)> {
    let mut groups: BTreeMap<Vec<PortKey>, Vec<Endpoint>> = BTreeMap::new();
    let svc_name = svc.name_any();
    for e in eps {
        let spec = e.pod.spec.as_ref();
        let hostname = spec
            .filter(|s| s.subdomain.as_deref() == Some(svc_name.as_str()))
            .and_then(|s| s.hostname.clone());
        groups.entry(e.ports.clone()).or_default().push(Endpoint {
            addresses: vec![e.ip.clone()],
            conditions: Some(EndpointConditions {
                ready: Some(e.ready),
                serving: Some(e.serving),
                terminating: Some(e.terminating),
            }),
            hostname,
            node_name: spec.and_then(|s| s.node_name.clone()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: e.pod.namespace(),
                name: Some(e.pod.name_any()),
                uid: e.pod.uid(),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let mut out = Vec::new();
    for (ports, endpoints) in groups {
        let ports: Vec<EndpointPort> = ports
            .into_iter()
            .map(|(name, port, protocol, app_protocol)| EndpointPort {
                name: Some(name),
                port: Some(port),
                protocol: Some(protocol),
                app_protocol,
            })
            .collect();
        for chunk in endpoints.chunks(MAX_PER_SLICE) {
            out.push((ports.clone(), chunk.to_vec()));
        }
    }
    if out.is_empty() {
        // kube's placeholder: one slice without endpoints or ports.
        out.push((Vec::new(), Vec::new()));
    }
    out
}

/// The labels of `svc`'s slices: its own (minus reserved ones) plus kube's.
fn labels(svc: &Service) -> BTreeMap<String, String> {
    let mut l: BTreeMap<String, String> = svc
        .labels()
        .iter()
        .filter(|(k, _)| k.as_str() != MANAGED_BY_LABEL && k.as_str() != SERVICE_NAME_LABEL)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    l.insert(SERVICE_NAME_LABEL.into(), svc.name_any());
    l.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        l.insert("service.kubernetes.io/headless".into(), String::new());
    }
    l
}

/// Pods → the Services (same namespace) whose selector matches their labels.
pub(crate) fn services_for_pod(services: &Store<Service>, pod: &Pod) -> Vec<ObjectRef<Service>> {
    let ns = pod.namespace();
    let labels = pod.labels();
    services
        .state()
        .iter()
        .filter(|s| s.namespace() == ns)
        .filter(|s| {
            s.spec
                .as_ref()
                .and_then(|sp| sp.selector.as_ref())
                .is_some_and(|sel| {
                    !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
                })
        })
        .map(|s| ObjectRef::from_obj(&**s))
        .collect()
}

/// Runs the controller forever.
pub async fn run(client: Client) {
    let services: Api<Service> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let slices: Api<EndpointSlice> = Api::all(client.clone());
    let controller = Controller::new(services, watcher::Config::default());
    let store = controller.store();
    controller
        .owns(
            slices,
            watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}")),
        )
        .watches(pods, watcher::Config::default(), move |pod: Pod| {
            services_for_pod(&store, &pod)
        })
        .run(reconcile, retry, Arc::new(client))
        .for_each(|_| async {})
        .await;
}

async fn reconcile(svc: Arc<Service>, client: Arc<Client>) -> Result<Action, ControllerError> {
    if svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(eps) = endpoints_of(&client, &svc).await? else {
        return Ok(Action::await_change());
    };
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let api: Api<EndpointSlice> = Api::namespaced((*client).clone(), &ns);
    let existing = api
        .list(&ListParams::default().labels(&format!(
            "{SERVICE_NAME_LABEL}={name},{MANAGED_BY_LABEL}={MANAGED_BY}"
        )))
        .await
        .map_err(|e| ControllerError::api(format!("listing the slices of {ns}/{name}"), e))?
        .items;
    let want = desired(&svc, &eps);
    let labels = labels(&svc);
    let owner = owner(&svc);
    let mut unused: Vec<EndpointSlice> = existing;
    for (ports, endpoints) in want {
        let ports_opt = (!ports.is_empty()).then_some(ports.clone());
        // Reuse a slice with the same ports (kube keeps slices stable across updates).
        let pos = unused
            .iter()
            .position(|s| s.ports.clone().unwrap_or_default() == ports);
        match pos {
            Some(i) => {
                let mut s = unused.remove(i);
                let same = s.endpoints == endpoints
                    && s.metadata.labels.as_ref() == Some(&labels)
                    && s.address_type == "IPv4";
                if !same {
                    s.endpoints = endpoints;
                    s.ports = ports_opt;
                    s.metadata.labels = Some(labels.clone());
                    s.metadata.owner_references = Some(vec![owner.clone()]);
                    let sname = s.name_any();
                    match api.replace(&sname, &PostParams::default(), &s).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 409 => {
                            return Ok(Action::requeue(Duration::from_millis(200)))
                        }
                        Err(e) => {
                            return Err(ControllerError::api(
                                format!("updating slice {ns}/{sname}"),
                                e,
                            ))
                        }
                    }
                }
            }
            None => {
                let s = EndpointSlice {
                    metadata: ObjectMeta {
                        generate_name: Some(format!("{name}-")),
                        namespace: Some(ns.clone()),
                        labels: Some(labels.clone()),
                        owner_references: Some(vec![owner.clone()]),
                        ..Default::default()
                    },
                    address_type: "IPv4".into(),
                    endpoints,
                    ports: ports_opt,
                };
                match api.create(&PostParams::default(), &s).await {
                    Ok(_) => {}
                    // The namespace is going away.
                    Err(kube::Error::Api(e)) if matches!(e.code, 403 | 404) => {}
                    Err(e) => {
                        return Err(ControllerError::api(
                            format!("creating a slice of {ns}/{name}"),
                            e,
                        ))
                    }
                }
            }
        }
    }
    for s in unused {
        let sname = s.name_any();
        match api.delete(&sname, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                return Err(ControllerError::api(
                    format!("deleting slice {ns}/{sname}"),
                    e,
                ))
            }
        }
    }
    Ok(Action::await_change())
}

fn retry(_: Arc<Service>, e: &ControllerError, _: Arc<Client>) -> Action {
    tracing::debug!("endpointslice controller: {e}");
    Action::requeue(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_target_ports_resolve_per_pod() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 8080},
                {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]}
        }))
        .unwrap();
        let port = |t: IntOrString, proto: &str| k8s_openapi::api::core::v1::ServicePort {
            port: 80,
            target_port: Some(t),
            protocol: Some(proto.into()),
            ..Default::default()
        };
        assert_eq!(
            target_port(&pod, &port(IntOrString::String("http".into()), "TCP")),
            Some(8080)
        );
        assert_eq!(
            target_port(&pod, &port(IntOrString::String("dns".into()), "TCP")),
            None
        );
        assert_eq!(
            target_port(&pod, &port(IntOrString::String("dns".into()), "UDP")),
            Some(53)
        );
        assert_eq!(
            target_port(&pod, &port(IntOrString::Int(9000), "TCP")),
            Some(9000)
        );
    }
}
