//! The Endpoints controller (kube-controller-manager's `endpoints-controller`,
//! `pkg/controller/endpoint/endpoints_controller.go`): the legacy `v1` Endpoints object of
//! every Service with a selector, named as the Service, with its pods grouped in subsets by
//! resolved ports: ready pods in `addresses`, the others in `notReadyAddresses` (all in
//! `addresses` with `publishNotReadyAddresses`); terminating pods are left out. The Endpoints
//! of a deleted Service are deleted (kube's leftover check); Services without a selector keep
//! whatever Endpoints their users write.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::endpointslice::{endpoints_of, services_for_pod, PortKey};
use crate::ControllerError;

/// Runs the controller forever.
pub async fn run(client: Client) {
    let services: Api<Service> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    // A deleted Service's Endpoints go with it.
    let c = client.clone();
    let svc_api = services.clone();
    tokio::spawn(async move {
        let s = watcher(svc_api, watcher::Config::default());
        futures_util::pin_mut!(s);
        while let Some(ev) = s.next().await {
            if let Ok(watcher::Event::Delete(svc)) = ev {
                let api: Api<Endpoints> =
                    Api::namespaced(c.clone(), &svc.namespace().unwrap_or_default());
                let _ = api.delete(&svc.name_any(), &DeleteParams::default()).await;
            }
        }
    });
    let controller = Controller::new(services, watcher::Config::default());
    let store = controller.store();
    controller
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
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        == Some(true);
    let mut groups: BTreeMap<Vec<PortKey>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for e in &eps {
        if e.terminating && !publish {
            continue;
        }
        if e.ports.is_empty() {
            continue;
        }
        let spec = e.pod.spec.as_ref();
        let addr = EndpointAddress {
            ip: e.ip.clone(),
            hostname: spec
                .filter(|s| s.subdomain.as_deref() == Some(name.as_str()))
                .and_then(|s| s.hostname.clone()),
            node_name: spec.and_then(|s| s.node_name.clone()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: e.pod.namespace(),
                name: Some(e.pod.name_any()),
                uid: e.pod.uid(),
                ..Default::default()
            }),
        };
        let g = groups.entry(e.ports.clone()).or_default();
        if e.ready {
            g.0.push(addr);
        } else {
            g.1.push(addr);
        }
    }
    let subsets: Vec<EndpointSubset> = groups
        .into_iter()
        .map(|(ports, (ready, not_ready))| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: Some(
                ports
                    .into_iter()
                    .map(|(name, port, protocol, app_protocol)| EndpointPort {
                        name: (!name.is_empty()).then_some(name),
                        port,
                        protocol: Some(protocol),
                        app_protocol,
                    })
                    .collect(),
            ),
        })
        .collect();
    let subsets = (!subsets.is_empty()).then_some(subsets);
    let api: Api<Endpoints> = Api::namespaced((*client).clone(), &ns);
    let current = api
        .get_opt(&name)
        .await
        .map_err(|e| ControllerError::api(format!("reading endpoints {ns}/{name}"), e))?;
    let labels: BTreeMap<String, String> = svc.labels().clone();
    let r = match current {
        Some(mut cur) => {
            if cur.subsets == subsets && cur.metadata.labels.clone().unwrap_or_default() == labels {
                return Ok(Action::await_change());
            }
            cur.subsets = subsets;
            cur.metadata.labels = Some(labels);
            api.replace(&name, &PostParams::default(), &cur).await
        }
        None => {
            let ep = Endpoints {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    ..Default::default()
                },
                subsets,
            };
            api.create(&PostParams::default(), &ep).await
        }
    };
    match r {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            Ok(Action::requeue(Duration::from_millis(200)))
        }
        Err(kube::Error::Api(e)) if matches!(e.code, 403 | 404) => Ok(Action::await_change()),
        Err(e) => Err(ControllerError::api(
            format!("writing endpoints {ns}/{name}"),
            e,
        )),
    }
}

fn retry(_: Arc<Service>, e: &ControllerError, _: Arc<Client>) -> Action {
    tracing::debug!("endpoints controller: {e}");
    Action::requeue(Duration::from_secs(1))
}
