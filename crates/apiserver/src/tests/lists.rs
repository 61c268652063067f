//! Lists, selectors, watches and server-side tables.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::*;

backends!(lists_page_and_select, watch_streams_changes);

async fn lists_page_and_select(t: T) {
    for i in 0..5 {
        let tier = if i % 2 == 0 { "fe" } else { "be" };
        t.send(
            Method::POST,
            CMS,
            cm(&format!("c{i}"), json!({"tier": tier, "n": i.to_string()})),
        )
        .await;
    }
    t.send(
        Method::POST,
        "/api/v1/namespaces",
        json!({"metadata": {"name": "other"}}),
    )
    .await;
    t.send(
        Method::POST,
        "/api/v1/namespaces/other/configmaps",
        cm("o", json!({"tier": "fe"})),
    )
    .await;

    let page1 = t.get(&format!("{CMS}?limit=2")).await.json();
    assert_eq!(page1["items"].as_array().unwrap().len(), 2);
    assert_eq!(page1["metadata"]["remainingItemCount"], 3);
    assert!(page1["items"][0].get("kind").is_none());
    let token = page1["metadata"]["continue"].as_str().unwrap();
    let rv = page1["metadata"]["resourceVersion"].clone();
    // A write between pages is not seen: the continuation reads at the first page's rv.
    t.send(Method::POST, CMS, cm("c9", json!({}))).await;
    let page2 = t
        .get(&format!("{CMS}?limit=2&continue={token}"))
        .await
        .json();
    assert_eq!(page2["metadata"]["resourceVersion"], rv);
    assert_eq!(page2["items"][0]["metadata"]["name"], "c2");
    let token2 = page2["metadata"]["continue"].as_str().unwrap();
    let page3 = t
        .get(&format!("{CMS}?limit=2&continue={token2}"))
        .await
        .json();
    let names: Vec<&str> = page3["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["c4"]);
    assert!(page3["metadata"].get("continue").is_none());

    let sel = t
        .get(&format!("{CMS}?labelSelector=tier%3Dfe"))
        .await
        .json();
    assert_eq!(sel["items"].as_array().unwrap().len(), 3);
    let sel = t
        .get(&format!("{CMS}?labelSelector=tier%20in%20(be),n!%3D1"))
        .await
        .json();
    assert_eq!(sel["items"].as_array().unwrap().len(), 1);
    let sel = t.get(&format!("{CMS}?labelSelector=!tier")).await.json();
    assert_eq!(sel["items"].as_array().unwrap().len(), 1, "c9 has no tier");
    let limited = t
        .get(&format!("{CMS}?labelSelector=tier%3Dfe&limit=1"))
        .await
        .json();
    assert_eq!(limited["items"].as_array().unwrap().len(), 1);
    assert!(limited["metadata"].get("remainingItemCount").is_none());
    assert!(limited["metadata"]["continue"].is_string());
    let all = t
        .get("/api/v1/configmaps?labelSelector=tier%3Dfe")
        .await
        .json();
    assert_eq!(all["items"].as_array().unwrap().len(), 4, "all namespaces");
    let f = t
        .get("/api/v1/configmaps?fieldSelector=metadata.namespace%3Dother")
        .await
        .json();
    assert_eq!(f["items"].as_array().unwrap().len(), 1);
    let f = t
        .get(&format!("{CMS}?fieldSelector=metadata.name!%3Dc0"))
        .await
        .json();
    assert_eq!(f["items"].as_array().unwrap().len(), 5);

    let r = t
        .get(&format!("{CMS}?fieldSelector=spec.nodeName%3Dx"))
        .await;
    assert_eq!(r.code, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json()["message"],
        "field label not supported: spec.nodeName"
    );
    let r = t.get("/api/v1/pods?fieldSelector=spec.nodeName%3Dx").await;
    assert_eq!(r.code, StatusCode::OK);
    let r = t.get(&format!("{CMS}?labelSelector=a%20in%20b")).await;
    assert_eq!(r.code, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["message"], "found 'b', expected: '('");
    let r = t.get(&format!("{CMS}?continue=garbage")).await;
    assert_eq!(r.code, StatusCode::BAD_REQUEST);

    // resourceVersion semantics.
    let r = t.get(&format!("{CMS}?resourceVersion=999999")).await;
    assert_eq!(r.code, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        r.json()["details"]["causes"][0]["reason"],
        "ResourceVersionTooLarge"
    );
    let exact = t
        .get(&format!(
            "{CMS}?resourceVersion={}&resourceVersionMatch=Exact",
            rv.as_str().unwrap()
        ))
        .await
        .json();
    assert_eq!(
        exact["items"].as_array().unwrap().len(),
        5,
        "as of before c9"
    );
    t.store
        .compact(t.store.revision().await.unwrap())
        .await
        .unwrap();
    let r = t.get(&format!("{CMS}?limit=2&continue={token}")).await;
    assert_eq!(
        (r.code, r.json()["reason"].as_str()),
        (StatusCode::GONE, Some("Expired"))
    );
    let r = t
        .get(&format!(
            "{CMS}?resourceVersion=1&resourceVersionMatch=Exact"
        ))
        .await;
    assert_eq!(r.code, StatusCode::GONE);

    // deletecollection with a selector returns the deleted items.
    let r = t
        .req(
            Method::DELETE,
            &format!("{CMS}?labelSelector=tier%3Dbe"),
            "",
            Body::empty(),
            Some(admin()),
            None,
        )
        .await
        .json();
    assert_eq!(r["kind"], "ConfigMapList");
    assert_eq!(r["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        t.get(CMS).await.json()["items"].as_array().unwrap().len(),
        4
    );
}

/// Reads watch lines from a streaming body until `n` events arrived.
pub(super) async fn read_events(body: &mut Body, n: usize) -> Vec<Value> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while out.len() < n {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("watch event in time")
            .expect("stream open")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            out.push(serde_json::from_slice(&line).unwrap());
        }
    }
    out
}

pub(super) async fn open_watch(t: &T, uri: &str) -> Body {
    let r = Request::builder().uri(uri).body(Body::empty()).unwrap();
    let mut r = r;
    r.extensions_mut().insert(admin());
    let resp = t.app.clone().oneshot(r).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.into_body()
}

async fn watch_streams_changes(t: T) {
    t.send(Method::POST, CMS, cm("w1", json!({"app": "a"})))
        .await;
    let mut body = open_watch(&t, &format!("{CMS}?watch=true&labelSelector=app%3Da")).await;
    let ev = read_events(&mut body, 1).await;
    assert_eq!(ev[0]["type"], "ADDED");
    assert_eq!(ev[0]["object"]["metadata"]["name"], "w1");
    assert_eq!(ev[0]["object"]["kind"], "ConfigMap");

    let mut w = t.get(&format!("{CMS}/w1")).await.json();
    w["data"]["k"] = json!("changed");
    t.send(Method::PUT, &format!("{CMS}/w1"), w.clone()).await;
    t.send(Method::POST, CMS, cm("other", json!({"app": "b"})))
        .await;
    // Leaving the selection is a DELETED.
    t.patch(
        &format!("{CMS}/w1"),
        "application/merge-patch+json",
        r#"{"metadata":{"labels":{"app":"z"}}}"#,
    )
    .await;
    t.patch(
        &format!("{CMS}/other"),
        "application/merge-patch+json",
        r#"{"metadata":{"labels":{"app":"a"}}}"#,
    )
    .await;
    t.req(
        Method::DELETE,
        &format!("{CMS}/other"),
        "",
        Body::empty(),
        Some(admin()),
        None,
    )
    .await;
    let ev = read_events(&mut body, 4).await;
    let kinds: Vec<(&str, &str)> = ev
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["object"]["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("MODIFIED", "w1"),
            ("DELETED", "w1"),
            ("ADDED", "other"),
            ("DELETED", "other")
        ]
    );
    let del_rv: i64 = ev[3]["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(del_rv, t.store.revision().await.unwrap());

    // From a resourceVersion: only later changes, no synthetic ADDEDs; bookmarks.
    let rv = t.store.revision().await.unwrap();
    let mut body = open_watch(
        &t,
        &format!("{CMS}?watch=1&resourceVersion={rv}&allowWatchBookmarks=true"),
    )
    .await;
    t.send(Method::POST, CMS, cm("late", json!({}))).await;
    let ev = read_events(&mut body, 2).await;
    assert_eq!(ev[0]["type"], "ADDED");
    assert_eq!(ev[0]["object"]["metadata"]["name"], "late");
    assert_eq!(ev[1]["type"], "BOOKMARK");
    assert_eq!(ev[1]["object"]["kind"], "ConfigMap");
    assert_eq!(
        ev[1]["object"]["metadata"]["resourceVersion"],
        (rv + 1).to_string()
    );
    assert!(ev[1]["object"].get("data").is_none());

    // Legacy watch path for one object; timeoutSeconds ends the stream.
    let mut body = open_watch(
        &t,
        "/api/v1/watch/namespaces/default/configmaps/late?timeoutSeconds=1",
    )
    .await;
    let ev = read_events(&mut body, 1).await;
    assert_eq!(ev[0]["object"]["metadata"]["name"], "late");
    let end = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .unwrap();
    assert!(end.is_none(), "the stream ends after timeoutSeconds");

    // A compacted resourceVersion is an ERROR event with a 410 Expired Status.
    t.store
        .compact(t.store.revision().await.unwrap())
        .await
        .unwrap();
    let mut body = open_watch(&t, &format!("{CMS}?watch=true&resourceVersion=1")).await;
    let ev = read_events(&mut body, 1).await;
    assert_eq!(ev[0]["type"], "ERROR");
    assert_eq!(ev[0]["object"]["kind"], "Status");
    assert_eq!(ev[0]["object"]["code"], 410);
    assert_eq!(ev[0]["object"]["reason"], "Expired");

    // sendInitialEvents ends the initial state with an annotated bookmark.
    let mut body = open_watch(
        &t,
        &format!("{CMS}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"),
    )
    .await;
    let n = t.get(CMS).await.json()["items"].as_array().unwrap().len();
    let ev = read_events(&mut body, n + 1).await;
    assert_eq!(ev[n]["type"], "BOOKMARK");
    assert_eq!(
        ev[n]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
}

#[tokio::test]
async fn server_side_tables() {
    let t = server().await;
    t.send(Method::POST, CMS, cm("t1", json!({"a": "b"}))).await;
    let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    let r = t
        .req(
            Method::GET,
            CMS,
            "",
            Body::empty(),
            Some(admin()),
            Some(accept),
        )
        .await;
    assert_eq!(
        r.headers[header::CONTENT_TYPE],
        "application/json;as=Table;v=v1;g=meta.k8s.io"
    );
    let table = r.json();
    assert_eq!(
        (table["kind"].as_str(), table["apiVersion"].as_str()),
        (Some("Table"), Some("meta.k8s.io/v1"))
    );
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Name", "Data", "Age"]);
    assert_eq!(table["rows"][0]["cells"][0], "t1");
    assert_eq!(table["rows"][0]["cells"][1], 1);
    assert_eq!(
        table["rows"][0]["cells"][2]
            .as_str()
            .unwrap()
            .chars()
            .last(),
        Some('s')
    );
    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(table["rows"][0]["object"]["metadata"]["labels"]["a"], "b");
    assert!(table["rows"][0]["object"].get("data").is_none());
    assert!(table["metadata"]["resourceVersion"].is_string());
    let full = t
        .req(
            Method::GET,
            &format!("{CMS}/t1?includeObject=Object"),
            "",
            Body::empty(),
            Some(admin()),
            Some(accept),
        )
        .await
        .json();
    assert_eq!(full["rows"][0]["object"]["data"]["k"], "v");
    assert_eq!(full["rows"].as_array().unwrap().len(), 1);
    let none = t
        .req(
            Method::GET,
            &format!("{CMS}?includeObject=None"),
            "",
            Body::empty(),
            Some(admin()),
            Some(accept),
        )
        .await
        .json();
    assert!(none["rows"][0].get("object").is_none());
    // Kinds without a printer: kube's default convertor.
    let roles = t
        .req(
            Method::GET,
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            "",
            Body::empty(),
            Some(admin()),
            Some(accept),
        )
        .await
        .json();
    assert_eq!(roles["columnDefinitions"][1]["name"], "Created At");
    // Plain JSON when Table is not asked for first.
    let plain = t
        .req(
            Method::GET,
            CMS,
            "",
            Body::empty(),
            Some(admin()),
            Some("application/json"),
        )
        .await
        .json();
    assert_eq!(plain["kind"], "ConfigMapList");
}

/// A store that counts its `watch` calls.
struct CountingStore {
    inner: barge_datastore::MemStore,
    watches: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl Store for CountingStore {
    fn backend(&self) -> &'static str {
        "counting"
    }
    async fn revision(&self) -> barge_datastore::Result<i64> {
        self.inner.revision().await
    }
    async fn compacted_revision(&self) -> barge_datastore::Result<i64> {
        self.inner.compacted_revision().await
    }
    async fn get(
        &self,
        key: &str,
        revision: Option<i64>,
    ) -> barge_datastore::Result<(i64, Option<barge_datastore::KeyValue>)> {
        self.inner.get(key, revision).await
    }
    async fn list(
        &self,
        prefix: &str,
        opts: barge_datastore::ListOptions,
    ) -> barge_datastore::Result<barge_datastore::ListPage> {
        self.inner.list(prefix, opts).await
    }
    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
    ) -> barge_datastore::Result<barge_datastore::KeyValue> {
        self.inner.create(key, value).await
    }
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: i64,
    ) -> barge_datastore::Result<barge_datastore::KeyValue> {
        self.inner.update(key, value, expected).await
    }
    async fn delete(
        &self,
        key: &str,
        expected: Option<i64>,
    ) -> barge_datastore::Result<barge_datastore::KeyValue> {
        self.inner.delete(key, expected).await
    }
    async fn watch(
        &self,
        prefix: &str,
        after: i64,
    ) -> barge_datastore::Result<barge_datastore::WatchStream> {
        self.watches
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.watch(prefix, after).await
    }
    async fn compact(&self, revision: i64) -> barge_datastore::Result<i64> {
        self.inner.compact(revision).await
    }
}

/// RBAC and every API watch share the server's one datastore watch (the watch cache); RBAC
/// still sees a new binding at once.
#[tokio::test]
async fn one_datastore_watch_per_server() {
    let store = Arc::new(CountingStore {
        inner: barge_datastore::MemStore::new(),
        watches: Default::default(),
    });
    let api = ApiServer::new(store.clone(), Config::default());
    api.bootstrap().await.unwrap();
    let app = api.router();
    let watches = || store.watches.load(std::sync::atomic::Ordering::SeqCst);
    // RBAC's task starts the watch cache.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while watches() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "RBAC watches nothing"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let t = T {
        app,
        store: store.clone(),
        _fixture: Backend::Memory.open().await,
    };
    let rv = t.store.revision().await.unwrap();
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let uri = format!(
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings?watch=true&resourceVersion={rv}"
        );
        bodies.push(open_watch(&t, &uri).await);
    }
    let bob = Identity {
        user: "bob".into(),
        groups: vec!["system:authenticated".into()],
    };
    let r = t
        .req(Method::GET, CMS, "", Body::empty(), Some(bob.clone()), None)
        .await;
    assert_eq!(r.code, StatusCode::FORBIDDEN);
    t.send(
        Method::POST,
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
        json!({"metadata": {"name": "bob-view"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
               "subjects": [{"kind": "User", "name": "bob", "apiGroup": "rbac.authorization.k8s.io"}]}),
    )
    .await;
    for body in &mut bodies {
        let ev = read_events(body, 1).await;
        assert_eq!(ev[0]["object"]["kind"], "RoleBinding");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = t
            .req(Method::GET, CMS, "", Body::empty(), Some(bob.clone()), None)
            .await;
        if r.code == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "RBAC never saw the binding"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        watches(),
        1,
        "one datastore watch for RBAC and three API watches"
    );
}
