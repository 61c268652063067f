//! The built-in service load balancer (k3s's ServiceLB, without its helper pods): a Service
//! of `type: LoadBalancer` (and no `loadBalancerClass`) answers on the nodes' addresses at
//! each of its `port`s — the node agent's Service proxy DNATs them as it does node ports —
//! once this controller has admitted it by filling `status.loadBalancer.ingress` with the
//! nodes' InternalIPs (`ipMode: VIP`).
//!
//! Admission as k3s's: Services are taken oldest first; one whose port (protocol and number)
//! is already used on the nodes — by an older LoadBalancer Service, by any Service's node
//! port, or by a port the server reserves (the Ingress proxy's) — stays Pending (no ingress
//! in its status) with a Warning Event naming the conflict, and is admitted by itself once
//! the port is free. A Service that stops being a LoadBalancer has its status cleared.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::workloads::events::{record, Kind};

const COMPONENT: &str = "service-lb-controller";

/// What the controller decided for one LoadBalancer Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Admitted: its ports answer on the nodes.
    Admitted,
    /// Pending: this port is taken (message for the Event).
    Conflict(String),
}

/// Whether `svc` is a LoadBalancer Service this controller serves.
pub fn is_ours(svc: &Service) -> bool {
    svc.spec.as_ref().is_some_and(|s| {
        s.type_.as_deref() == Some("LoadBalancer") && s.load_balancer_class.is_none()
    })
}

fn id(svc: &Service) -> String {
    format!(
        "{}/{}",
        svc.metadata.namespace.as_deref().unwrap_or("default"),
        svc.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Decides every LoadBalancer Service (by `ns/name`), oldest first; `reserved`: TCP ports of
/// the nodes taken by something else (the Ingress proxy).
pub fn decide(services: &[Arc<Service>], reserved: &[u16]) -> BTreeMap<String, Decision> {
    let mut taken: BTreeMap<(String, i32), String> = BTreeMap::new();
    for p in reserved {
        taken.insert(
            ("TCP".into(), i32::from(*p)),
            "the ingress controller".into(),
        );
    }
    for s in services {
        for p in s
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
        {
            if let Some(np) = p.node_port {
                let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
                taken
                    .entry((proto, np))
                    .or_insert_with(|| format!("the node port of Service {}", id(s)));
            }
        }
    }
    let mut lbs: Vec<&Arc<Service>> = services.iter().filter(|s| is_ours(s)).collect();
    lbs.sort_by_key(|s| (s.metadata.creation_timestamp.clone().map(|t| t.0), id(s)));
    let mut out = BTreeMap::new();
    for s in lbs {
        let me = id(s);
        let ports: Vec<(String, i32)> = s
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .map(|p| (p.protocol.clone().unwrap_or_else(|| "TCP".into()), p.port))
            .collect();
        let own_np = format!("the node port of Service {me}");
        let conflict = ports.iter().find_map(|k| {
            taken
                .get(k)
                .filter(|owner| **owner != own_np)
                .map(|owner| format!("port {}/{} is in use on the nodes by {owner}", k.1, k.0))
        });
        match conflict {
            Some(c) => {
                out.insert(me, Decision::Conflict(c));
            }
            None => {
                for k in ports {
                    taken.insert(k, format!("LoadBalancer Service {me}"));
                }
                out.insert(me, Decision::Admitted);
            }
        }
    }
    out
}

fn reflect<K>(api: Api<K>, tick: Arc<watch::Sender<u64>>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, w) = reflector::store::<K>();
    tokio::spawn(async move {
        let s = reflector::reflector(w, watcher(api, watcher::Config::default()))
            .default_backoff()
            .touched_objects();
        futures_util::pin_mut!(s);
        while let Some(ev) = s.next().await {
            if let Err(e) = ev {
                tracing::debug!("servicelb watch: {e}");
            }
            tick.send_modify(|n| *n += 1);
        }
    });
    store
}

fn status_ingress(svc: &Service) -> Vec<Value> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .map(|l| {
            l.iter()
                .filter_map(|i| serde_json::to_value(i).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the controller until aborted; `reserved`: TCP ports of the nodes not for Services.
pub async fn run(client: Client, reserved: Vec<u16>) {
    let (tx, mut changed) = watch::channel(0u64);
    let tx = Arc::new(tx);
    let services = reflect::<Service>(Api::all(client.clone()), tx.clone());
    let nodes = reflect::<Node>(Api::all(client.clone()), tx);
    if services.wait_until_ready().await.is_err() || nodes.wait_until_ready().await.is_err() {
        return;
    }
    // Conflicts already reported (by Service and message).
    let mut reported: BTreeSet<(String, String)> = BTreeSet::new();
    loop {
        let svcs = services.state();
        let mut ips: Vec<String> = nodes
            .state()
            .iter()
            .flat_map(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.addresses.clone())
                    .unwrap_or_default()
            })
            .filter(|a| a.type_ == "InternalIP")
            .map(|a| a.address)
            .collect();
        ips.sort();
        ips.dedup();
        let decisions = decide(&svcs, &reserved);
        let admitted: Vec<Value> = ips
            .iter()
            .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
            .collect();
        let mut still = BTreeSet::new();
        for s in &svcs {
            let me = id(s);
            let want: Vec<Value> = match decisions.get(&me) {
                Some(Decision::Admitted) => admitted.clone(),
                Some(Decision::Conflict(msg)) => {
                    let key = (me.clone(), msg.clone());
                    if !reported.contains(&key) {
                        record(
                            &client,
                            COMPONENT,
                            s.as_ref(),
                            Kind::Warning,
                            "SyncLoadBalancerFailed",
                            format!(
                                "Error syncing load balancer: {msg}; the Service stays pending"
                            ),
                        )
                        .await;
                    }
                    still.insert(key);
                    Vec::new()
                }
                // Not a LoadBalancer (any more): no ingress of ours.
                None => {
                    if status_ingress(s).is_empty()
                        || s.spec
                            .as_ref()
                            .is_some_and(|sp| sp.load_balancer_class.is_some())
                    {
                        continue;
                    }
                    Vec::new()
                }
            };
            if status_ingress(s) == want {
                continue;
            }
            let (Some(ns), Some(name)) =
                (s.metadata.namespace.as_deref(), s.metadata.name.as_deref())
            else {
                continue;
            };
            let api: Api<Service> = Api::namespaced(client.clone(), ns);
            let body = if want.is_empty() {
                json!({"status": {"loadBalancer": {"ingress": null}}})
            } else {
                json!({"status": {"loadBalancer": {"ingress": want}}})
            };
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
                .await
            {
                Ok(_) if !want.is_empty() => {
                    record(
                        &client,
                        COMPONENT,
                        s.as_ref(),
                        Kind::Normal,
                        "UpdatedIngressIP",
                        format!(
                            "LoadBalancer Ingress IP addresses updated: {}",
                            ips.join(", ")
                        ),
                    )
                    .await
                }
                Ok(_) => {}
                Err(e) => tracing::debug!("status of service {ns}/{name}: {e}"),
            }
        }
        reported = still;
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        changed.borrow_and_update();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, ts: u8, ty: &str, ports: Value) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"namespace": "d", "name": name,
                    "creationTimestamp": format!("2026-01-01T00:00:{ts:02}Z")},
                "spec": {"type": ty, "ports": ports}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn oldest_wins_and_node_ports_and_reserved_ports_conflict() {
        let s = vec![
            svc(
                "b",
                2,
                "LoadBalancer",
                json!([{"port": 8080, "nodePort": 30001}]),
            ),
            svc(
                "a",
                1,
                "LoadBalancer",
                json!([{"port": 8080, "nodePort": 30002}]),
            ),
            svc(
                "c",
                3,
                "LoadBalancer",
                json!([{"port": 30005, "nodePort": 30003}]),
            ),
            svc(
                "np",
                0,
                "NodePort",
                json!([{"port": 80, "nodePort": 30005}]),
            ),
            svc(
                "d",
                4,
                "LoadBalancer",
                json!([{"port": 443, "nodePort": 30004}]),
            ),
            svc(
                "u",
                5,
                "LoadBalancer",
                json!([{"port": 8080, "protocol": "UDP", "nodePort": 30006}]),
            ),
        ];
        let d = decide(&s, &[443]);
        assert_eq!(d["d/a"], Decision::Admitted);
        assert_eq!(d["d/u"], Decision::Admitted);
        assert!(
            matches!(&d["d/b"], Decision::Conflict(m) if m.contains("LoadBalancer Service d/a")),
            "{d:?}"
        );
        assert!(
            matches!(&d["d/c"], Decision::Conflict(m) if m.contains("node port of Service d/np"))
        );
        assert!(matches!(&d["d/d"], Decision::Conflict(m) if m.contains("ingress")));
        assert!(!d.contains_key("d/np"));
    }
}
