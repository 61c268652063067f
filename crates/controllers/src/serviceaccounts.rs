//! The ServiceAccount controller (kube-controller-manager's `serviceaccount-controller`,
//! `pkg/controller/serviceaccount/serviceaccounts_controller.go`): every active namespace has
//! a ServiceAccount `default`; one deleted is created again.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::Client;

use crate::ControllerError;

/// The ServiceAccount every namespace gets.
pub const DEFAULT: &str = "default";

/// Runs the controller forever.
pub async fn run(client: Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let accounts: Api<ServiceAccount> = Api::all(client.clone());
    Controller::new(namespaces, watcher::Config::default())
        .watches(
            accounts,
            watcher::Config::default().fields(&format!("metadata.name={DEFAULT}")),
            |sa: ServiceAccount| {
                sa.metadata
                    .namespace
                    .map(|ns| ObjectRef::<Namespace>::new(&ns))
            },
        )
        .run(reconcile, retry, Arc::new(client))
        .for_each(|_| async {})
        .await;
}

/// An active namespace is the only one that gets (or keeps getting) a `default`.
pub(crate) fn active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_none_or(|p| p == "Active")
}

async fn reconcile(ns: Arc<Namespace>, client: Arc<Client>) -> Result<Action, ControllerError> {
    if !active(&ns) {
        return Ok(Action::await_change());
    }
    let name = ns.metadata.name.clone().unwrap_or_default();
    let api: Api<ServiceAccount> = Api::namespaced((*client).clone(), &name);
    let present = api
        .get_opt(DEFAULT)
        .await
        .map_err(|e| ControllerError::api(format!("reading {name}/{DEFAULT}"), e))?;
    if present.is_none() {
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(DEFAULT.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => {}
            // Created meanwhile, or the namespace went away / is terminating.
            Err(kube::Error::Api(e)) if matches!(e.code, 403 | 404 | 409) => {}
            Err(e) => {
                return Err(ControllerError::api(
                    format!("creating {name}/{DEFAULT}"),
                    e,
                ))
            }
        }
    }
    Ok(Action::await_change())
}

fn retry(_: Arc<Namespace>, e: &ControllerError, _: Arc<Client>) -> Action {
    tracing::debug!("serviceaccount controller: {e}");
    Action::requeue(Duration::from_secs(1))
}
