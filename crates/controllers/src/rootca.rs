//! The root CA publisher (kube-controller-manager's `root-ca-cert-publisher`,
//! `pkg/controller/certificates/rootcacertpublisher/publisher.go`): every active namespace has
//! a ConfigMap `kube-root-ca.crt` whose `data` is exactly `{"ca.crt": <the server CA PEM>}`,
//! annotated `kubernetes.io/description`; edited or deleted, it is put back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::Client;

use crate::ControllerError;

/// The ConfigMap's name (`RootCACertConfigMapName`).
pub const CONFIGMAP: &str = "kube-root-ca.crt";
/// The annotation it carries (`DescriptionAnnotation`) and its value (`Description`).
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

struct Ctx {
    client: Client,
    ca: String,
}

/// Runs the publisher forever with `ca_pem`, the API server's CA.
pub async fn run(client: Client, ca_pem: String) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let maps: Api<ConfigMap> = Api::all(client.clone());
    Controller::new(namespaces, watcher::Config::default())
        .watches(
            maps,
            watcher::Config::default().fields(&format!("metadata.name={CONFIGMAP}")),
            |cm: ConfigMap| {
                cm.metadata
                    .namespace
                    .map(|ns| ObjectRef::<Namespace>::new(&ns))
            },
        )
        .run(reconcile, retry, Arc::new(Ctx { client, ca: ca_pem }))
        .for_each(|_| async {})
        .await;
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    if !crate::serviceaccounts::active(&ns) {
        return Ok(Action::await_change());
    }
    let name = ns.metadata.name.clone().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    let data = BTreeMap::from([("ca.crt".to_string(), ctx.ca.clone())]);
    let current = api
        .get_opt(CONFIGMAP)
        .await
        .map_err(|e| ControllerError::api(format!("reading {name}/{CONFIGMAP}"), e))?;
    let result = match current {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(CONFIGMAP.into()),
                    annotations: Some(BTreeMap::from([(
                        DESCRIPTION_ANNOTATION.to_string(),
                        DESCRIPTION.to_string(),
                    )])),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            api.create(&PostParams::default(), &cm).await.map(|_| ())
        }
        Some(mut cm) => {
            let annotated = cm
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
                .is_some_and(|d| !d.is_empty());
            if cm.data.as_ref() == Some(&data) && annotated {
                return Ok(Action::await_change());
            }
            // An update conditional on the resourceVersion read (a conflict retries).
            cm.data = Some(data);
            cm.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
            api.replace(CONFIGMAP, &PostParams::default(), &cm)
                .await
                .map(|_| ())
        }
    };
    match result {
        Ok(()) => Ok(Action::await_change()),
        // The namespace is gone or terminating: nothing to publish.
        Err(kube::Error::Api(e)) if matches!(e.code, 403 | 404) => Ok(Action::await_change()),
        Err(e) => Err(ControllerError::api(
            format!("writing {name}/{CONFIGMAP}"),
            e,
        )),
    }
}

fn retry(_: Arc<Namespace>, e: &ControllerError, _: Arc<Ctx>) -> Action {
    tracing::debug!("root-ca-cert-publisher: {e}");
    Action::requeue(Duration::from_secs(1))
}
