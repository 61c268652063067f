//! kube-rs (`kube::Api`, `kube::runtime::watcher`) as a client of barge's API machinery: the
//! router served over plain HTTP on loopback (see `common`), on SQLite and on a real etcd.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use barge_datastore::testing::Backend;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

mod common;

backends!(
    async kube_api_crud_lists_apply_scale,
    kube_watcher_relists_after_410,
    repeated_events_raise_one_count
);

/// A kube client of a fresh API server on `backend` (the server runs on the test's runtime);
/// `window`: the watch cache's window in events.
async fn client(backend: Backend, window: usize) -> (Client, common::Served) {
    let served = common::serve(
        backend,
        |api| api.with_watch_window(window),
        Arc::new(Mutex::new(Vec::new())),
    )
    .await;
    let url = format!("http://127.0.0.1:{}", served.port).parse().unwrap();
    let client = Client::try_from(kube::Config::new(url)).unwrap();
    (client, served)
}

fn cm(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        },
        "data": data.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
    }))
    .unwrap()
}

/// The kube `Status` of a failed call: (code, reason).
fn status(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(s) => (s.code, s.reason),
        other => panic!("not an API error: {other:?}"),
    }
}

async fn kube_api_crud_lists_apply_scale(backend: Backend) {
    let (client, _served) = client(backend, 10_000).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();

    // CRUD.
    let a = cms.create(&pp, &cm("a", &[], &[("k", "v")])).await.unwrap();
    assert_eq!(a.namespace().as_deref(), Some("default"));
    assert!(a.uid().is_some());
    let rv_a: i64 = a.resource_version().unwrap().parse().unwrap();
    let got = cms.get("a").await.unwrap();
    assert_eq!(got.data, a.data);
    assert_eq!(
        status(cms.create(&pp, &a).await.unwrap_err()),
        (409, "AlreadyExists".into())
    );
    let mut upd = got.clone();
    upd.data = Some(BTreeMap::from([("k".into(), "v2".into())]));
    let a2 = cms.replace("a", &pp, &upd).await.unwrap();
    assert!(a2.resource_version().unwrap().parse::<i64>().unwrap() > rv_a);
    // The same update again carries a stale resourceVersion: 409 Conflict, nothing stored.
    assert_eq!(
        status(cms.replace("a", &pp, &upd).await.unwrap_err()),
        (409, "Conflict".into())
    );
    assert_eq!(
        cms.get("a").await.unwrap().resource_version(),
        a2.resource_version()
    );
    let merged = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"m": "1"}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.data.unwrap().get("m").map(String::as_str), Some("1"));
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        status(cms.get("a").await.unwrap_err()),
        (404, "NotFound".into())
    );
    assert!(cms.get_opt("a").await.unwrap().is_none());

    // Lists paged with limit/continue, one consistent snapshot across pages.
    for i in 0..7 {
        cms.create(&pp, &cm(&format!("p{i}"), &[("page", "yes")], &[]))
            .await
            .unwrap();
    }
    cms.create(&pp, &cm("other", &[("page", "no")], &[]))
        .await
        .unwrap();
    let mut names = Vec::new();
    let mut lp = ListParams::default().labels("page=yes").limit(3);
    let mut pages = 0;
    let mut snapshot = None;
    loop {
        let page = cms.list(&lp).await.unwrap();
        pages += 1;
        let rv = page.metadata.resource_version.clone();
        assert_eq!(*snapshot.get_or_insert(rv.clone()), rv);
        names.extend(page.items.iter().map(|c| c.name_any()));
        if pages == 1 {
            // Written after the first page: not in this listing.
            cms.create(&pp, &cm("p-late", &[("page", "yes")], &[]))
                .await
                .unwrap();
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);
    assert_eq!(
        cms.list(&ListParams::default().labels("page=yes"))
            .await
            .unwrap()
            .items
            .len(),
        8
    );

    // Server-side apply: a second manager's conflicting field is a 409 naming it; force wins.
    let apply = |v: &str| {
        Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "ssa"}, "data": {"a": v}}))
    };
    let first = cms
        .patch("ssa", &PatchParams::apply("mgr-a"), &apply("1"))
        .await
        .unwrap();
    assert_eq!(first.managed_fields()[0].manager.as_deref(), Some("mgr-a"));
    let err = cms
        .patch("ssa", &PatchParams::apply("mgr-b"), &apply("2"))
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else {
        panic!("not an API error")
    };
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert!(s.message.contains("mgr-a"), "{}", s.message);
    assert!(s.message.contains(".data.a"), "{}", s.message);
    assert_eq!(cms.get("ssa").await.unwrap().data.unwrap()["a"], "1");
    let forced = cms
        .patch("ssa", &PatchParams::apply("mgr-b").force(), &apply("2"))
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["a"], "2");
    let managers: Vec<String> = forced
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.contains(&"mgr-b".to_string()), "{managers:?}");

    // A Deployment's scale subresource.
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "busybox"}]}}}
    }))
    .unwrap();
    deploys.create(&pp, &d).await.unwrap();
    let scale = deploys.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(1));
    let scaled = deploys
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.spec.unwrap().replicas, Some(3));
    assert_eq!(
        deploys.get("web").await.unwrap().spec.unwrap().replicas,
        Some(3)
    );
    let mut scale = deploys.get_scale("web").await.unwrap();
    scale.spec.as_mut().unwrap().replicas = Some(0);
    let replaced = deploys.replace_scale("web", &pp, &scale).await.unwrap();
    assert_eq!(replaced.spec.unwrap().replicas, Some(0));
}

/// What the watcher's consumer saw.
#[derive(Default)]
struct Seen {
    /// The state rebuilt from the events: name → (resourceVersion, data["v"]).
    state: BTreeMap<String, (String, String)>,
    /// InitApply buffer of a relist in progress.
    init: Option<BTreeMap<String, (String, String)>>,
    relists: usize,
    gone: usize,
    /// The revisions of live (non-relist) events, to check they are never repeated.
    live_revisions: Vec<i64>,
}

fn entry(c: &ConfigMap) -> (String, (String, String)) {
    let v = c
        .data
        .as_ref()
        .and_then(|d| d.get("v").cloned())
        .unwrap_or_default();
    (c.name_any(), (c.resource_version().unwrap(), v))
}

/// Waits until `seen`'s state equals `want` (name → data["v"]), up to 15 s.
async fn converge(seen: &Mutex<Seen>, want: &[(&str, &str)], relists_at_least: usize) {
    let want: BTreeMap<String, String> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        {
            let s = seen.lock().unwrap();
            let have: BTreeMap<String, String> = s
                .state
                .iter()
                .map(|(k, (_, v))| (k.clone(), v.clone()))
                .collect();
            if have == want && s.relists >= relists_at_least {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "watcher state {have:?} (relists {}, 410s {}), want {want:?} after {relists_at_least} relists",
                    s.relists, s.gone
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn kube_watcher_relists_after_410(backend: Backend) {
    // A window of 50 events: 60 writes elsewhere push a quiet watcher's resourceVersion out of
    // the watch cache, and compaction then makes it 410 Gone at the datastore.
    let (client, served) = client(backend, 50).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in ["w", "other"] {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
    }
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "w");
    let others: Api<ConfigMap> = Api::namespaced(client.clone(), "other");
    let pp = PostParams::default();

    let seen = Arc::new(Mutex::new(Seen::default()));
    // While `paused` is true the consumer stops polling the watcher: its watch request is not
    // read, and when the server ends it (timeoutSeconds) the watcher does not reconnect.
    let (pause, mut paused) = tokio::sync::watch::channel(false);
    let consumer = {
        let seen = seen.clone();
        let stream = watcher(cms.clone(), watcher::Config::default().timeout(1));
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            loop {
                while *paused.borrow_and_update() {
                    if paused.changed().await.is_err() {
                        return;
                    }
                }
                // A step in flight stays inside the stream while paused, unpolled.
                let ev = tokio::select! {
                    ev = stream.next() => ev,
                    r = paused.changed() => match r {
                        Ok(()) => continue,
                        Err(_) => return,
                    },
                };
                let Some(ev) = ev else { return };
                let mut s = seen.lock().unwrap();
                match ev {
                    Ok(watcher::Event::Init) => s.init = Some(BTreeMap::new()),
                    Ok(watcher::Event::InitApply(c)) => {
                        let (k, v) = entry(&c);
                        s.init.as_mut().expect("InitApply after Init").insert(k, v);
                    }
                    Ok(watcher::Event::InitDone) => {
                        s.state = s.init.take().expect("InitDone after Init");
                        s.relists += 1;
                    }
                    Ok(watcher::Event::Apply(c)) => {
                        let (k, v) = entry(&c);
                        s.live_revisions.push(v.0.parse().unwrap());
                        s.state.insert(k, v);
                    }
                    Ok(watcher::Event::Delete(c)) => {
                        let (k, v) = entry(&c);
                        s.live_revisions.push(v.0.parse().unwrap());
                        assert!(s.state.remove(&k).is_some(), "DELETED of unseen {k}");
                    }
                    Err(watcher::Error::WatchError(status)) if status.code == 410 => s.gone += 1,
                    Err(e) => panic!("watcher error: {e}"),
                }
            }
        })
    };

    // Live: adds, an update, a delete.
    converge(&seen, &[], 1).await;
    cms.create(&pp, &cm("a", &[], &[("v", "1")])).await.unwrap();
    cms.create(&pp, &cm("b", &[], &[("v", "1")])).await.unwrap();
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    cms.delete("b", &DeleteParams::default()).await.unwrap();
    converge(&seen, &[("a", "2")], 1).await;

    // Disconnected: the consumer pauses past the watch's 1 s timeout; meanwhile "w" changes,
    // 60 writes elsewhere leave the watcher's revision behind the cache, and the datastore is
    // compacted. Resuming, the watcher gets 410 Gone and relists.
    pause.send(true).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cms.create(&pp, &cm("c", &[], &[("v", "1")])).await.unwrap();
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "3"}})),
    )
    .await
    .unwrap();
    cms.create(&pp, &cm("d", &[], &[("v", "1")])).await.unwrap();
    cms.delete("d", &DeleteParams::default()).await.unwrap();
    for i in 0..60 {
        others
            .create(&pp, &cm(&format!("o{i}"), &[], &[]))
            .await
            .unwrap();
    }
    let store = &served.fixture.store;
    store
        .compact(store.revision().await.unwrap())
        .await
        .unwrap();
    pause.send(false).unwrap();
    converge(&seen, &[("a", "3"), ("c", "1")], 2).await;
    assert!(seen.lock().unwrap().gone >= 1, "the relist followed a 410");

    // Live again after the relist: nothing missed or repeated.
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    cms.create(&pp, &cm("e", &[], &[("v", "1")])).await.unwrap();
    converge(&seen, &[("c", "1"), ("e", "1")], 2).await;
    let s = seen.lock().unwrap();
    assert!(
        s.live_revisions.windows(2).all(|w| w[0] < w[1]),
        "live events in order, none twice: {:?}",
        s.live_revisions
    );
    assert_eq!(s.live_revisions.len(), 6, "{:?}", s.live_revisions);
    drop(s);
    consumer.abort();
}

/// barge_events (every cluster component's recorder) correlates repeats as client-go does:
/// the same event three times is one Event with count 3 and a later lastTimestamp; another
/// message is another Event; a deleted Event is created again.
async fn repeated_events_raise_one_count(backend: Backend) {
    use k8s_openapi::api::core::v1::Event;
    let (client, _served) = client(backend, 10_000).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    // A unique object per run: the recorder's cache is process-wide.
    let name = format!("ev-{}", std::process::id());
    let obj = cms
        .create(&PostParams::default(), &cm(&name, &[], &[]))
        .await
        .unwrap();
    let source = barge_events::Source::component("test-controller");
    let rec = |message: &str| barge_events::Record {
        involved: barge_events::reference(&obj),
        kind: barge_events::Kind::Warning,
        reason: "BackOff",
        action: None,
        message: message.to_string(),
    };
    for _ in 0..3 {
        barge_events::record(&client, &source, rec("Back-off restarting")).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    barge_events::record(&client, &source, rec("another message")).await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let ours = |list: Vec<Event>| -> Vec<Event> {
        let mut v: Vec<Event> = list
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name.as_str()))
            .collect();
        v.sort_by_key(|e| e.message.clone());
        v
    };
    let got = ours(events.list(&ListParams::default()).await.unwrap().items);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].message.as_deref(), Some("Back-off restarting"));
    assert_eq!(got[0].count, Some(3));
    assert!(
        got[0].last_timestamp >= got[0].first_timestamp,
        "{:?}",
        got[0]
    );
    assert_eq!(got[1].count, Some(1));
    assert_eq!(
        got[0].source.as_ref().unwrap().component.as_deref(),
        Some("test-controller")
    );
    // Deleted: the next repeat makes a new Event.
    events
        .delete(
            got[0].metadata.name.as_deref().unwrap(),
            &DeleteParams::default(),
        )
        .await
        .unwrap();
    barge_events::record(&client, &source, rec("Back-off restarting")).await;
    let got = ours(events.list(&ListParams::default()).await.unwrap().items);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].count, Some(1));
}
