//! The garbage collector (kube-controller-manager's `garbagecollector`), simplified to what
//! its users see. Source: [Garbage collection](https://kubernetes.io/docs/concepts/architecture/garbage-collection/).
//!
//! It watches every deletable resource into one graph of owners and dependents, then on each
//! pass:
//! - a dependent whose owners are all gone is deleted (background);
//! - a dependent with both live and gone owners loses the references to the gone ones;
//! - a dependent whose only remaining owners are being deleted in the foreground is deleted
//!   (in the foreground itself when the reference blocks owner deletion);
//! - an owner in foreground deletion loses its `foregroundDeletion` finalizer once no
//!   dependent with `blockOwnerDeletion` is left;
//! - an owner deleted with `propagationPolicy=Orphan` has the references to it removed from
//!   its dependents, then loses its `orphan` finalizer.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::runtime::watcher;
use kube::Client;
use serde_json::json;
use tokio::sync::mpsc;

use crate::resources::{discover, Resource};
use crate::ControllerError;

const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";

/// One object as the collector sees it.
#[derive(Clone, Debug)]
struct Node {
    resource: Resource,
    namespace: Option<String>,
    name: String,
    resource_version: Option<String>,
    owners: Vec<OwnerReference>,
    deleting: bool,
    finalizers: Vec<String>,
}

enum Msg {
    Init(String),
    Apply(String, Box<Node>, String),
    Delete(String),
    Synced(String),
}

/// Runs the collector forever (re-discovering resources every 30 s for new CRDs).
pub async fn run(client: Client) {
    let (tx, mut rx) = mpsc::channel::<Msg>(4096);
    let mut watched: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut graph = Graph::default();
    let mut next_discovery = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        if Instant::now() >= next_discovery {
            next_discovery = Instant::now() + Duration::from_secs(30);
            match discover(&client).await {
                Ok(resources) => {
                    // As kube's garbage collector: events (core/v1 and events.k8s.io/v1, one
                    // storage seen under two kinds) are never owners nor collected.
                    let resources: Vec<Resource> = resources
                        .into_iter()
                        .filter(|r| r.api.kind != "Event")
                        .collect();
                    graph.resources = resources.clone();
                    for r in resources {
                        let key = r.key();
                        if let std::collections::hash_map::Entry::Vacant(slot) =
                            watched.entry(key.clone())
                        {
                            graph.expected.insert(key);
                            slot.insert(tokio::spawn(watch(client.clone(), r, tx.clone())));
                        }
                    }
                }
                Err(e) => tracing::warn!("gc: {e}"),
            }
        }
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(m) => graph.apply(m),
                None => return,
            },
            _ = tick.tick() => {
                if graph.synced() {
                    graph.pass(&client).await;
                }
            }
        }
    }
}

async fn watch(client: Client, r: Resource, tx: mpsc::Sender<Msg>) {
    let api: Api<DynamicObject> = Api::all_with(client, &r.api);
    let key = r.key();
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    while let Some(ev) = stream.next().await {
        let msg = match ev {
            Ok(watcher::Event::Init) => Msg::Init(key.clone()),
            Ok(watcher::Event::InitApply(o)) | Ok(watcher::Event::Apply(o)) => match node(&r, &o) {
                Some((uid, n)) => Msg::Apply(key.clone(), Box::new(n), uid),
                None => continue,
            },
            Ok(watcher::Event::Delete(o)) => match o.metadata.uid {
                Some(uid) => Msg::Delete(uid),
                None => continue,
            },
            Ok(watcher::Event::InitDone) => Msg::Synced(key.clone()),
            Err(e) => {
                tracing::debug!("gc: watching {key}: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if tx.send(msg).await.is_err() {
            return;
        }
    }
}

fn node(r: &Resource, o: &DynamicObject) -> Option<(String, Node)> {
    let m = &o.metadata;
    Some((
        m.uid.clone()?,
        Node {
            resource: r.clone(),
            namespace: m.namespace.clone(),
            name: m.name.clone()?,
            resource_version: m.resource_version.clone(),
            owners: m.owner_references.clone().unwrap_or_default(),
            deleting: m.deletion_timestamp.is_some(),
            finalizers: m.finalizers.clone().unwrap_or_default(),
        },
    ))
}

#[derive(Default)]
struct Graph {
    nodes: HashMap<String, Node>,
    by_resource: HashMap<String, HashSet<String>>,
    relisting: HashMap<String, HashSet<String>>,
    expected: HashSet<String>,
    synced: HashSet<String>,
    attempted: HashMap<String, Instant>,
    /// Every deletable resource, as the last discovery found them: an owner's kind is known
    /// even when no object of it is left (the last Deployment deleted).
    resources: Vec<Resource>,
}

impl Graph {
    fn apply(&mut self, msg: Msg) {
        match msg {
            Msg::Init(key) => {
                self.relisting.insert(key, HashSet::new());
            }
            Msg::Apply(key, n, uid) => {
                if let Some(seen) = self.relisting.get_mut(&key) {
                    seen.insert(uid.clone());
                }
                self.by_resource.entry(key).or_default().insert(uid.clone());
                self.nodes.insert(uid, *n);
            }
            Msg::Delete(uid) => {
                self.nodes.remove(&uid);
            }
            Msg::Synced(key) => {
                if let Some(seen) = self.relisting.remove(&key) {
                    let known = self.by_resource.entry(key.clone()).or_default();
                    for gone in known.difference(&seen).cloned().collect::<Vec<_>>() {
                        self.nodes.remove(&gone);
                    }
                    *known = seen;
                }
                self.synced.insert(key);
            }
        }
    }

    fn synced(&self) -> bool {
        !self.expected.is_empty() && self.expected.is_subset(&self.synced)
    }

    /// True once per few seconds per (object, action): writes are not repeated while their
    /// effect has not been observed yet.
    fn first_attempt(&mut self, key: String) -> bool {
        let now = Instant::now();
        self.attempted
            .retain(|_, t| now.duration_since(*t) < Duration::from_secs(3));
        if self.attempted.contains_key(&key) {
            return false;
        }
        self.attempted.insert(key, now);
        true
    }

    async fn pass(&mut self, client: &Client) {
        let uids: Vec<String> = self.nodes.keys().cloned().collect();
        for uid in uids {
            let Some(n) = self.nodes.get(&uid).cloned() else {
                continue;
            };
            if let Err(e) = self.dependent(client, &uid, &n).await {
                tracing::debug!("gc: {e}");
            }
            if n.deleting {
                if let Err(e) = self.owner(client, &uid, &n).await {
                    tracing::debug!("gc: {e}");
                }
            }
        }
    }

    /// What to do with `n` given the state of its owners.
    async fn dependent(
        &mut self,
        client: &Client,
        uid: &str,
        n: &Node,
    ) -> Result<(), ControllerError> {
        if n.owners.is_empty() || n.deleting {
            return Ok(());
        }
        let (mut solid, mut gone, mut waiting) = (Vec::new(), Vec::new(), Vec::new());
        for o in &n.owners {
            match self.nodes.get(&o.uid) {
                Some(owner)
                    if owner.deleting && owner.finalizers.iter().any(|f| f == FOREGROUND) =>
                {
                    waiting.push(o.clone())
                }
                Some(owner) if owner.deleting && owner.finalizers.iter().any(|f| f == ORPHAN) => {
                    solid.push(o.clone()) // the orphan pass strips this reference
                }
                Some(_) => solid.push(o.clone()),
                None => gone.push(o.clone()),
            }
        }
        // A watch may lag: confirm absent owners with a live read before acting on them.
        let mut confirmed = Vec::new();
        for o in gone {
            if self.owner_absent(client, n, &o).await? {
                confirmed.push(o);
            } else {
                solid.push(o);
            }
        }
        let api = api_for(client, n);
        if !solid.is_empty() {
            if !confirmed.is_empty() && self.first_attempt(format!("{uid}/refs")) {
                let keep: Vec<&OwnerReference> = n
                    .owners
                    .iter()
                    .filter(|o| !confirmed.iter().any(|c| c.uid == o.uid))
                    .collect();
                let patch = json!({"metadata": {"ownerReferences": refs_or_null(&keep), "resourceVersion": n.resource_version}});
                api.patch(&n.name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map_err(|e| {
                        ControllerError::api(format!("dropping dangling owners of {}", n.name), e)
                    })?;
            }
            return Ok(());
        }
        if !self.first_attempt(format!("{uid}/delete")) {
            return Ok(());
        }
        let foreground = waiting.iter().any(|o| o.block_owner_deletion == Some(true));
        let dp = if foreground {
            DeleteParams::foreground()
        } else {
            DeleteParams::background()
        };
        let dp = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..dp
        };
        match api.delete(&n.name, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(ControllerError::api(format!("deleting {}", n.name), e)),
        }
    }

    async fn owner_absent(
        &self,
        client: &Client,
        n: &Node,
        o: &OwnerReference,
    ) -> Result<bool, ControllerError> {
        let Some(r) = self.resource_of(&o.api_version, &o.kind) else {
            return Ok(false); // an unknown kind: never collect on a guess
        };
        let api: Api<DynamicObject> = match (&n.namespace, r.namespaced) {
            (Some(ns), true) => Api::namespaced_with(client.clone(), ns, &r.api),
            (_, _) => Api::all_with(client.clone(), &r.api),
        };
        match api.get_opt(&o.name).await {
            Ok(None) => Ok(true),
            Ok(Some(obj)) => Ok(obj.metadata.uid.as_deref() != Some(o.uid.as_str())),
            Err(e) => Err(ControllerError::api(format!("reading owner {}", o.name), e)),
        }
    }

    fn resource_of(&self, api_version: &str, kind: &str) -> Option<Resource> {
        self.resources
            .iter()
            .find(|r| r.api.api_version == api_version && r.api.kind == kind)
            .cloned()
    }

    /// An owner being deleted: finish foreground deletion or orphaning.
    async fn owner(&mut self, client: &Client, uid: &str, n: &Node) -> Result<(), ControllerError> {
        let dependents: Vec<(String, Node)> = self
            .nodes
            .iter()
            .filter(|(_, d)| d.owners.iter().any(|o| o.uid == uid))
            .map(|(u, d)| (u.clone(), d.clone()))
            .collect();
        if n.finalizers.iter().any(|f| f == ORPHAN) {
            for (du, d) in &dependents {
                if !self.first_attempt(format!("{du}/orphan")) {
                    continue;
                }
                let keep: Vec<&OwnerReference> = d.owners.iter().filter(|o| o.uid != uid).collect();
                let patch = json!({"metadata": {"ownerReferences": refs_or_null(&keep), "resourceVersion": d.resource_version}});
                api_for(client, d)
                    .patch(&d.name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map_err(|e| ControllerError::api(format!("orphaning {}", d.name), e))?;
            }
            if dependents.is_empty() {
                self.drop_finalizer(client, uid, n, ORPHAN).await?;
            }
        } else if n.finalizers.iter().any(|f| f == FOREGROUND) {
            let blocking = dependents.iter().any(|(_, d)| {
                d.owners
                    .iter()
                    .any(|o| o.uid == uid && o.block_owner_deletion == Some(true))
            });
            if !blocking {
                self.drop_finalizer(client, uid, n, FOREGROUND).await?;
            }
        }
        Ok(())
    }

    async fn drop_finalizer(
        &mut self,
        client: &Client,
        uid: &str,
        n: &Node,
        which: &str,
    ) -> Result<(), ControllerError> {
        if !self.first_attempt(format!("{uid}/{which}")) {
            return Ok(());
        }
        let rest: Vec<&String> = n.finalizers.iter().filter(|f| *f != which).collect();
        let patch =
            json!({"metadata": {"finalizers": rest, "resourceVersion": n.resource_version}});
        match api_for(client, n)
            .patch(&n.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(ControllerError::api(
                format!("removing {which} from {}", n.name),
                e,
            )),
        }
    }
}

/// The references to keep, or `null` (which a merge patch turns into no field, as kube's
/// typed objects drop an empty list).
fn refs_or_null(keep: &[&OwnerReference]) -> serde_json::Value {
    if keep.is_empty() {
        serde_json::Value::Null
    } else {
        json!(keep)
    }
}

fn api_for(client: &Client, n: &Node) -> Api<DynamicObject> {
    match &n.namespace {
        Some(ns) if n.resource.namespaced => {
            Api::namespaced_with(client.clone(), ns, &n.resource.api)
        }
        _ => Api::all_with(client.clone(), &n.resource.api),
    }
}
