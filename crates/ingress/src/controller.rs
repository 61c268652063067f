//! The Ingress controller that feeds the proxy: the IngressClass `barge` (made at start,
//! marked default), reflectors on Ingresses, IngressClasses, Services, EndpointSlices and
//! Secrets, and after each burst of changes (50 ms of quiet, else every 30 s) a new
//! routing table swapped into the proxy, each handled Ingress's `status.loadBalancer`
//! set to the Ready nodes' InternalIPs, and a Warning Event for each new problem of an Ingress
//! (a missing Service or Secret...), which affects no other Ingress.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::watch;

use crate::proxy::Proxy;
use crate::routes::{Inputs, Problem, Table};

/// The IngressClass barge makes and handles.
pub const CLASS: &str = "barge";
/// Its `spec.controller`.
pub const CONTROLLER: &str = "barge.io/ingress-controller";
/// The annotation marking the cluster's default IngressClass.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// The legacy class annotation (before `spec.ingressClassName`).
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

fn reflect<K>(api: Api<K>, tick: Arc<watch::Sender<u64>>) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, w) = reflector::store::<K>();
    tokio::spawn(async move {
        let s = reflector::reflector(w, watcher(api, watcher::Config::default()))
            .default_backoff()
            .touched_objects();
        futures_util::pin_mut!(s);
        while let Some(ev) = s.next().await {
            if let Err(e) = ev {
                tracing::debug!("ingress controller watch: {e}");
            }
            tick.send_modify(|n| *n += 1);
        }
    });
    store
}

/// Whether this controller handles `ing`: class `barge`, a class whose controller is
/// barge's, or no class at all (barge's is the default class).
pub fn handled(ing: &Ingress, classes: &[Arc<IngressClass>]) -> bool {
    let class = ing
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref());
    match class {
        Some(c) => {
            c == CLASS
                || classes.iter().any(|k| {
                    k.metadata.name.as_deref() == Some(c)
                        && k.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(CONTROLLER)
                })
        }
        None => match ing
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
        {
            Some(a) => a == CLASS,
            None => true,
        },
    }
}

/// Makes the IngressClass `barge` (default class) unless it exists.
async fn ensure_class(client: &Client) -> Result<(), kube::Error> {
    let api: Api<IngressClass> = Api::all(client.clone());
    let class: IngressClass = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": CLASS, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
        "spec": {"controller": CONTROLLER},
    }))
    .expect("a valid IngressClass");
    match api.create(&PostParams::default(), &class).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// The addresses an Ingress is reached at: every Ready node's InternalIP, sorted (each node
/// runs the proxy, so every agent computes the same list and none undoes another's status —
/// as k3s's service load balancer lists every node its Traefik answers on).
fn ingress_ips(nodes: &[Arc<Node>]) -> Vec<String> {
    let mut ips: Vec<String> = nodes
        .iter()
        .filter_map(|n| n.status.as_ref())
        .filter(|s| {
            s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
        .filter_map(|s| {
            s.addresses
                .iter()
                .flatten()
                .find(|a| a.type_ == "InternalIP")
                .map(|a| a.address.clone())
        })
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

async fn warn(client: &Client, ing: &Ingress, p: &Problem) {
    let record = barge_events::Record {
        involved: barge_events::reference(ing),
        kind: barge_events::Kind::Warning,
        reason: p.reason,
        action: None,
        message: p.message.clone(),
    };
    let source = barge_events::Source::component("barge-ingress-controller");
    barge_events::record(client, &source, record).await;
}

/// Runs the controller, feeding `proxy`, until the task is aborted.
pub async fn run(client: Client, proxy: Arc<Proxy>) {
    // The class first (retried: the API may still be starting).
    let c = client.clone();
    tokio::spawn(async move {
        while let Err(e) = ensure_class(&c).await {
            tracing::debug!("creating IngressClass {CLASS}: {e}");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let (tx, mut changed) = watch::channel(0u64);
    let tx = Arc::new(tx);
    let ingresses = reflect::<Ingress>(Api::all(client.clone()), tx.clone());
    let classes = reflect::<IngressClass>(Api::all(client.clone()), tx.clone());
    let services = reflect::<Service>(Api::all(client.clone()), tx.clone());
    let slices = reflect::<EndpointSlice>(Api::all(client.clone()), tx.clone());
    let secrets = reflect::<Secret>(Api::all(client.clone()), tx.clone());
    // Nodes do not tick the loop: their heartbeats (every 10 s each) would rebuild the table
    // for nothing; a Ready change shows at the next 30 s pass.
    let nodes = reflect::<Node>(Api::all(client.clone()), Arc::new(watch::channel(0).0));
    for ready in [
        ingresses.wait_until_ready().await.is_ok(),
        classes.wait_until_ready().await.is_ok(),
        services.wait_until_ready().await.is_ok(),
        slices.wait_until_ready().await.is_ok(),
        secrets.wait_until_ready().await.is_ok(),
        nodes.wait_until_ready().await.is_ok(),
    ] {
        if !ready {
            return;
        }
    }
    let mut reported: BTreeMap<String, BTreeSet<Problem>> = BTreeMap::new();
    loop {
        let classes_now = classes.state();
        let all = ingresses.state();
        let mine: Vec<&Ingress> = all
            .iter()
            .map(|i| i.as_ref())
            .filter(|i| handled(i, &classes_now))
            .collect();
        let (svcs, sls, secs) = (services.state(), slices.state(), secrets.state());
        let (table, problems) = Table::build(&Inputs {
            ingresses: mine.clone(),
            services: &svcs,
            slices: &sls,
            secrets: &secs,
        });
        proxy.swap(table);
        // Events: each problem once, while it lasts.
        let mut now: BTreeMap<String, BTreeSet<Problem>> = BTreeMap::new();
        for p in problems {
            now.entry(p.ingress.clone()).or_default().insert(p);
        }
        for ing in &mine {
            let id = format!(
                "{}/{}",
                ing.metadata.namespace.as_deref().unwrap_or("default"),
                ing.metadata.name.as_deref().unwrap_or_default()
            );
            let before = reported.get(&id);
            for p in now.get(&id).into_iter().flatten() {
                if !before.is_some_and(|b| b.contains(p)) {
                    tracing::info!(ingress = %id, reason = p.reason, "{}", p.message);
                    warn(&client, ing, p).await;
                }
            }
        }
        reported = now;
        // Status: the Ready nodes' addresses (kept as they are while none is Ready).
        let ips = ingress_ips(&nodes.state());
        if !ips.is_empty() {
            let want: Vec<_> = ips.iter().map(|ip| json!({"ip": ip})).collect();
            for ing in &mine {
                let has: Vec<&str> = ing
                    .status
                    .as_ref()
                    .and_then(|s| s.load_balancer.as_ref())
                    .and_then(|l| l.ingress.as_ref())
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i.ip.as_deref())
                    .collect();
                if has == ips {
                    continue;
                }
                let (Some(ns), Some(name)) = (
                    ing.metadata.namespace.as_deref(),
                    ing.metadata.name.as_deref(),
                ) else {
                    continue;
                };
                let api: Api<Ingress> = Api::namespaced(client.clone(), ns);
                let patch = json!({"status": {"loadBalancer": {"ingress": want}}});
                if let Err(e) = api
                    .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    tracing::debug!("status of ingress {ns}/{name}: {e}");
                }
            }
        }
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

    #[test]
    fn status_lists_every_ready_node() {
        let node = |ip: &str, ready: &str| {
            Arc::new(
                serde_json::from_value::<Node>(json!({"metadata": {"name": ip},
                    "status": {"addresses": [{"type": "Hostname", "address": "h"},
                                             {"type": "InternalIP", "address": ip}],
                               "conditions": [{"type": "Ready", "status": ready}]}}))
                .unwrap(),
            )
        };
        let nodes = [
            node("10.0.0.9", "True"),
            node("10.0.0.2", "True"),
            node("10.0.0.5", "Unknown"),
        ];
        assert_eq!(ingress_ips(&nodes), ["10.0.0.2", "10.0.0.9"]);
    }

    #[test]
    fn classes_handled() {
        let ing = |class: Option<&str>, ann: Option<&str>| -> Ingress {
            let mut v = json!({"metadata": {"name": "i"}, "spec": {}});
            if let Some(c) = class {
                v["spec"]["ingressClassName"] = json!(c);
            }
            if let Some(a) = ann {
                v["metadata"]["annotations"] = json!({LEGACY_CLASS_ANNOTATION: a});
            }
            serde_json::from_value(v).unwrap()
        };
        let other: Arc<IngressClass> = Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "mine2"},
                "spec": {"controller": CONTROLLER}}))
            .unwrap(),
        );
        let classes = vec![other];
        assert!(handled(&ing(None, None), &classes));
        assert!(handled(&ing(Some("barge"), None), &classes));
        assert!(handled(&ing(Some("mine2"), None), &classes));
        assert!(!handled(&ing(Some("nginx"), None), &classes));
        assert!(!handled(&ing(None, Some("nginx")), &classes));
        assert!(handled(&ing(None, Some("barge")), &classes));
    }
}
