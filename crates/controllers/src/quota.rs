//! The resource quota controller (kube-controller-manager's `resourcequota-controller`,
//! `pkg/controller/resourcequota`): every ResourceQuota's `status.hard` mirrors `spec.hard`
//! and `status.used` is what the namespace's objects use of each resource
//! (`barge_apiserver::admission::quota::usage` — the same counting as the admission that
//! enforces it). Recomputed for a namespace when a quota or a counted core object there
//! changes, and for every namespace every 30 s (kube's full resync is 5 min).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use barge_apiserver::admission::quota::{kind_for, usage, Quantity, ResourceList};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota, Secret, Service,
};
use kube::api::{Api, ListParams, PostParams};
use kube::core::DynamicObject;
use kube::runtime::watcher;
use kube::Client;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::resources::{discover, Resource};
use crate::ControllerError;

/// Runs the controller forever.
pub async fn run(client: Client) {
    let (tx, mut rx) = mpsc::channel::<Option<String>>(1024);
    tokio::spawn(trigger(
        Api::<ResourceQuota>::all(client.clone()),
        tx.clone(),
    ));
    tokio::spawn(trigger(Api::<Pod>::all(client.clone()), tx.clone()));
    tokio::spawn(trigger(Api::<Service>::all(client.clone()), tx.clone()));
    tokio::spawn(trigger(Api::<ConfigMap>::all(client.clone()), tx.clone()));
    tokio::spawn(trigger(Api::<Secret>::all(client.clone()), tx.clone()));
    tokio::spawn(trigger(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        tx.clone(),
    ));
    tokio::spawn(trigger(
        Api::<ReplicationController>::all(client.clone()),
        tx.clone(),
    ));
    let mut resync = tokio::time::interval(Duration::from_secs(30));
    let mut resources: Vec<Resource> = Vec::new();
    loop {
        let mut dirty: HashSet<Option<String>> = HashSet::new();
        tokio::select! {
            m = rx.recv() => match m {
                Some(ns) => { dirty.insert(ns); }
                None => return,
            },
            _ = resync.tick() => {
                dirty.insert(None);
                resources = discover(&client).await.unwrap_or(resources);
            }
        }
        // Coalesce a burst of changes.
        tokio::time::sleep(Duration::from_millis(50)).await;
        while let Ok(ns) = rx.try_recv() {
            dirty.insert(ns);
        }
        let all = dirty.contains(&None);
        let quotas: Api<ResourceQuota> = Api::all(client.clone());
        let list = match quotas.list(&ListParams::default()).await {
            Ok(l) => l.items,
            Err(e) => {
                tracing::debug!("quota controller: listing quotas: {e}");
                continue;
            }
        };
        for q in list {
            let ns = q.metadata.namespace.clone();
            if !all && !dirty.contains(&ns) {
                continue;
            }
            if let Err(e) = sync(&client, &resources, q).await {
                tracing::debug!("quota controller: {e}");
            }
        }
    }
}

/// Sends the namespace of every change of `api`'s objects.
async fn trigger<K>(api: Api<K>, tx: mpsc::Sender<Option<String>>)
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    while let Some(ev) = stream.next().await {
        let ns = match ev {
            Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o)) => o.meta().namespace.clone(),
            Ok(watcher::Event::InitDone) => None,
            Ok(_) => continue,
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if tx.send(ns).await.is_err() {
            return;
        }
    }
}

/// Recomputes one quota's status and writes it if it changed (conditional on the
/// resourceVersion read).
async fn sync(
    client: &Client,
    resources: &[Resource],
    q: ResourceQuota,
) -> Result<(), ControllerError> {
    let ns = q.metadata.namespace.clone().unwrap_or_default();
    let name = q.metadata.name.clone().unwrap_or_default();
    let hard = q
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    // Usage of each kind the quota counts, listed once.
    let mut by_kind: HashMap<(String, String), ResourceList> = HashMap::new();
    let mut used = BTreeMap::new();
    for resource in hard.keys() {
        let Some(kind) = kind_for(resource) else {
            continue;
        };
        if !by_kind.contains_key(&kind) {
            let total = kind_usage(client, resources, &ns, &kind.0, &kind.1).await?;
            by_kind.insert(kind.clone(), total);
        }
        let q = by_kind[&kind]
            .get(resource)
            .copied()
            .unwrap_or(Quantity::ZERO);
        used.insert(
            resource.clone(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity(q.to_string()),
        );
    }
    let status = k8s_openapi::api::core::v1::ResourceQuotaStatus {
        hard: Some(hard),
        used: Some(used),
    };
    if q.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let mut q = q;
    q.status = Some(status);
    let api: Api<ResourceQuota> = Api::namespaced(client.clone(), &ns);
    match api.replace_status(&name, &PostParams::default(), &q).await {
        Ok(_) => Ok(()),
        // Changed or deleted meanwhile: the watch brings it back.
        Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409) => Ok(()),
        Err(e) => Err(ControllerError::api(
            format!("updating {ns}/{name} status"),
            e,
        )),
    }
}

/// What the `plural`.`group` objects of `ns` use, summed.
async fn kind_usage(
    client: &Client,
    resources: &[Resource],
    ns: &str,
    group: &str,
    plural: &str,
) -> Result<ResourceList, ControllerError> {
    let ar = match resources
        .iter()
        .find(|r| r.api.group == group && r.api.plural == plural && r.namespaced)
    {
        Some(r) => r.api.clone(),
        None if group.is_empty() => kube::core::ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: String::new(),
            plural: plural.into(),
        },
        None => return Ok(ResourceList::new()),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| ControllerError::api(format!("listing {plural} in {ns}"), e))?;
    let mut total = ResourceList::new();
    for obj in list.items {
        if obj.metadata.deletion_timestamp.is_some() && plural != "pods" {
            continue;
        }
        let value = serde_json::to_value(&obj).unwrap_or_default();
        for (k, q) in usage(group, plural, &value) {
            let sum = total.get(&k).map_or(q, |t| t.plus(q));
            total.insert(k, sum);
        }
    }
    Ok(total)
}
