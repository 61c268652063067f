//! The namespace controller (kube-controller-manager's `namespace` controller): a namespace
//! being deleted (`Terminating`) loses every object in it, then the API server's `kubernetes`
//! finalizer through the `finalize` subresource, after which the API server removes it.
//! Source: [Namespaces walkthrough](https://kubernetes.io/docs/tasks/administer-cluster/namespaces/#deleting-a-namespace).

use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::runtime::watcher;
use kube::Client;

use crate::resources::discover;
use crate::ControllerError;

/// The finalizer kube-apiserver puts in every namespace's `spec.finalizers`.
pub const FINALIZER: &str = "kubernetes";

/// Runs the controller forever.
pub async fn run(client: Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut terminating = std::collections::BTreeSet::<String>::new();
    let mut events = watcher(namespaces.clone(), watcher::Config::default()).boxed();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(watcher::Event::Apply(ns))) | Some(Ok(watcher::Event::InitApply(ns))) => {
                    if let Some(name) = ns.metadata.name.clone() {
                        if ns.metadata.deletion_timestamp.is_some() {
                            terminating.insert(name);
                        } else {
                            terminating.remove(&name);
                        }
                    }
                }
                Some(Ok(watcher::Event::Delete(ns))) => {
                    if let Some(name) = ns.metadata.name { terminating.remove(&name); }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!("namespace controller: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                None => return,
            },
            _ = tick.tick() => {
                for name in terminating.clone() {
                    if let Err(e) = empty_and_finalize(&client, &namespaces, &name).await {
                        tracing::debug!("namespace {name}: {e}");
                    }
                }
            }
        }
    }
}

/// Deletes what is left in `name`; once nothing is, removes its `kubernetes` finalizer.
async fn empty_and_finalize(
    client: &Client,
    namespaces: &Api<Namespace>,
    name: &str,
) -> Result<(), ControllerError> {
    let mut left = 0usize;
    for r in discover(client).await?.into_iter().filter(|r| r.namespaced) {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), name, &r.api);
        let items = api
            .list(&ListParams::default())
            .await
            .map_err(|e| ControllerError::api(format!("listing {} in {name}", r.api.plural), e))?;
        if items.items.is_empty() {
            continue;
        }
        left += items.items.len();
        if r.deletecollection {
            api.delete_collection(&DeleteParams::background(), &ListParams::default())
                .await
                .map_err(|e| {
                    ControllerError::api(format!("deleting {} in {name}", r.api.plural), e)
                })?;
        } else {
            for o in items.items {
                if let Some(n) = o.metadata.name {
                    let _ = api.delete(&n, &DeleteParams::background()).await;
                }
            }
        }
    }
    if left > 0 {
        return Ok(());
    }
    let Some(mut ns) = namespaces
        .get_opt(name)
        .await
        .map_err(|e| ControllerError::api(format!("reading {name}"), e))?
    else {
        return Ok(());
    };
    let spec = ns.spec.get_or_insert_with(Default::default);
    let finalizers = spec.finalizers.get_or_insert_with(Vec::new);
    if !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    finalizers.retain(|f| f != FINALIZER);
    namespaces
        .replace_subresource("finalize", name, &PostParams::default(), &ns)
        .await
        .map_err(|e| ControllerError::api(format!("finalizing {name}"), e))?;
    Ok(())
}
