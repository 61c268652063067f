//! Router-level tests over [`MemStore`]: every request goes through `router()` as the
//! transport would send it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use barge_datastore::{MemStore, Store};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::{ApiServer, Config, Identity};

struct T {
    app: Router,
    store: Arc<MemStore>,
}

struct Resp {
    code: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn admin() -> Identity {
    Identity {
        user: "system:admin".into(),
        groups: vec!["system:masters".into()],
    }
}

async fn server() -> T {
    let store = Arc::new(MemStore::new());
    let api = ApiServer::new(store.clone(), Config::default())
        .with_bookmark_interval(Duration::from_millis(100));
    api.bootstrap().await.unwrap();
    T {
        app: api.router(),
        store,
    }
}

impl T {
    async fn req(
        &self,
        method: Method,
        uri: &str,
        ctype: &str,
        body: impl Into<Body>,
        who: Option<Identity>,
        accept: Option<&str>,
    ) -> Resp {
        let mut r = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, ctype)
            .body(body.into())
            .unwrap();
        if let Some(a) = accept {
            r.headers_mut().insert(header::ACCEPT, a.parse().unwrap());
        }
        if let Some(i) = who {
            r.extensions_mut().insert(i);
        }
        let resp = self.app.clone().oneshot(r).await.unwrap();
        let code = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Resp {
            code,
            headers,
            body,
        }
    }
    async fn get(&self, uri: &str) -> Resp {
        self.req(
            Method::GET,
            uri,
            "application/json",
            Body::empty(),
            Some(admin()),
            None,
        )
        .await
    }
    async fn send(&self, method: Method, uri: &str, body: Value) -> Resp {
        self.req(
            method,
            uri,
            "application/json",
            body.to_string(),
            Some(admin()),
            None,
        )
        .await
    }
    async fn patch(&self, uri: &str, ctype: &str, body: &str) -> Resp {
        self.req(
            Method::PATCH,
            uri,
            ctype,
            body.to_string(),
            Some(admin()),
            None,
        )
        .await
    }
}

fn cm(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test]
async fn discovery_documents() {
    let t = server().await;
    let v = t.get("/version").await.json();
    assert_eq!(
        (v["major"].as_str(), v["minor"].as_str()),
        (Some("1"), Some("33"))
    );
    assert!(v["gitVersion"].as_str().unwrap().starts_with("v1.33."));
    assert!(v["platform"].as_str().unwrap().starts_with("linux/"));
    let api = t.get("/api").await.json();
    assert_eq!(api["kind"], "APIVersions");
    assert_eq!(api["versions"], json!(["v1"]));
    let v1 = t.get("/api/v1").await.json();
    assert_eq!(v1["groupVersion"], "v1");
    let pods = v1["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods")
        .unwrap();
    assert_eq!(pods["shortNames"], json!(["po"]));
    assert_eq!(pods["categories"], json!(["all"]));
    assert!(v1["resources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "pods/status"));
    let apis = t.get("/apis").await.json();
    assert_eq!(apis["kind"], "APIGroupList");
    assert!(apis["groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["name"] == "apps" && g["preferredVersion"]["groupVersion"] == "apps/v1"));
    let apps = t.get("/apis/apps").await.json();
    assert_eq!(
        (apps["kind"].as_str(), apps["name"].as_str()),
        (Some("APIGroup"), Some("apps"))
    );
    let appsv1 = t.get("/apis/apps/v1").await.json();
    let scale = appsv1["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "deployments/scale")
        .unwrap()
        .clone();
    assert_eq!(
        (scale["group"].as_str(), scale["kind"].as_str()),
        (Some("autoscaling"), Some("Scale"))
    );
    assert_eq!(
        t.get("/apis/nope.example.com/v1").await.code,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        t.get("/apis/nope.example.com").await.code,
        StatusCode::NOT_FOUND
    );

    // Aggregated discovery, picked by Accept, announced by Content-Type.
    let accept =
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    let r = t
        .req(
            Method::GET,
            "/apis",
            "",
            Body::empty(),
            Some(crate::tests::admin()),
            Some(accept),
        )
        .await;
    assert_eq!(
        r.headers[header::CONTENT_TYPE],
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    let list = r.json();
    assert_eq!(list["kind"], "APIGroupDiscoveryList");
    assert_eq!(list["apiVersion"], "apidiscovery.k8s.io/v2");
    let apps = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["metadata"]["name"] == "apps")
        .unwrap();
    let deploy = apps["versions"][0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "deployments")
        .unwrap();
    assert_eq!(deploy["scope"], "Namespaced");
    assert_eq!(deploy["responseKind"]["kind"], "Deployment");
    assert_eq!(deploy["shortNames"], json!(["deploy"]));
    assert!(deploy["subresources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["subresource"] == "scale" && s["responseKind"]["group"] == "autoscaling"));
    let core = t
        .req(
            Method::GET,
            "/api",
            "",
            Body::empty(),
            Some(admin()),
            Some(accept),
        )
        .await
        .json();
    assert_eq!(core["items"].as_array().unwrap().len(), 1);
    assert_eq!(core["items"][0]["versions"][0]["version"], "v1");
}

#[tokio::test]
async fn health_and_anonymous_access() {
    let t = server().await;
    for ep in ["/healthz", "/livez", "/readyz", "/version"] {
        let r = t.req(Method::GET, ep, "", Body::empty(), None, None).await;
        assert_eq!(r.code, StatusCode::OK, "{ep}");
    }
    let r = t
        .req(
            Method::GET,
            "/readyz?verbose",
            "",
            Body::empty(),
            None,
            None,
        )
        .await;
    let text = r.text();
    assert!(
        text.contains("[+]ping ok\n") && text.contains("[+]etcd ok\n"),
        "{text}"
    );
    assert!(text.ends_with("readyz check passed\n"), "{text}");
    assert_eq!(t.get("/healthz").await.text(), "ok");

    let r = t
        .req(Method::GET, "/api", "", Body::empty(), None, None)
        .await;
    assert_eq!(r.code, StatusCode::FORBIDDEN);
    let s = r.json();
    assert_eq!(
        s["message"],
        r#"forbidden: User "system:anonymous" cannot get path "/api""#
    );
    assert_eq!(
        (s["reason"].as_str(), s["code"].as_u64()),
        (Some("Forbidden"), Some(403))
    );
    let anon = Identity {
        user: "system:anonymous".into(),
        groups: vec!["system:unauthenticated".into()],
    };
    let r = t
        .req(Method::GET, CMS, "", Body::empty(), Some(anon), None)
        .await
        .json();
    assert_eq!(
        r["message"],
        r#"configmaps is forbidden: User "system:anonymous" cannot list resource "configmaps" in API group "" in the namespace "default""#
    );
    assert_eq!(r["details"], json!({"kind": "configmaps"}));
    let r = t
        .req(
            Method::GET,
            "/apis/apps/v1/namespaces/a/deployments/web",
            "",
            Body::empty(),
            None,
            None,
        )
        .await
        .json();
    assert_eq!(
        r["message"],
        r#"deployments.apps "web" is forbidden: User "system:anonymous" cannot get resource "deployments" in API group "apps" in the namespace "a""#
    );
    let r = t
        .req(Method::GET, "/api/v1/nodes", "", Body::empty(), None, None)
        .await
        .json();
    assert!(r["message"]
        .as_str()
        .unwrap()
        .ends_with("at the cluster scope"));
}

#[tokio::test]
async fn crud_and_kube_errors() {
    let t = server().await;
    // The system namespaces exist.
    let ns = t.get("/api/v1/namespaces").await.json();
    let names: Vec<&str> = ns["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["default", "kube-node-lease", "kube-public", "kube-system"]
    );
    assert_eq!(ns["kind"], "NamespaceList");
    let def = t.get("/api/v1/namespaces/default").await.json();
    assert_eq!(def["status"]["phase"], "Active");
    assert_eq!(
        def["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "default"
    );

    let r = t
        .send(Method::POST, CMS, cm("a", json!({"app": "x"})))
        .await;
    assert_eq!(r.code, StatusCode::CREATED);
    let a = r.json();
    assert_eq!(a["metadata"]["namespace"], "default");
    assert_eq!(a["metadata"]["uid"].as_str().unwrap().len(), 36);
    assert!(a["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert!(a["metadata"].get("generation").is_none());
    let rv = a["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let stored = t
        .store
        .get("/registry/configmaps/default/a", None)
        .await
        .unwrap()
        .1
        .unwrap();
    let raw: Value = serde_json::from_slice(&stored.value).unwrap();
    assert!(raw["metadata"].get("resourceVersion").is_none());
    assert_eq!(rv, stored.mod_revision.to_string());

    let got = t.get(&format!("{CMS}/a")).await.json();
    assert_eq!(got, a);
    let r = t.send(Method::POST, CMS, cm("a", json!({}))).await;
    assert_eq!(r.code, StatusCode::CONFLICT);
    assert_eq!(r.json()["message"], r#"configmaps "a" already exists"#);
    assert_eq!(r.json()["reason"], "AlreadyExists");
    let r = t.get(&format!("{CMS}/zz")).await;
    assert_eq!(r.code, StatusCode::NOT_FOUND);
    assert_eq!(
        r.json(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "configmaps \"zz\" not found", "reason": "NotFound",
               "details": {"name": "zz", "kind": "configmaps"}, "code": 404})
    );

    // Update: a stale resourceVersion is 409 with kube's words; a no-op writes nothing.
    let mut upd = a.clone();
    upd["data"]["k"] = json!("v2");
    let r = t.send(Method::PUT, &format!("{CMS}/a"), upd.clone()).await;
    assert_eq!(r.code, StatusCode::OK);
    let a2 = r.json();
    assert_ne!(
        a2["metadata"]["resourceVersion"],
        a["metadata"]["resourceVersion"]
    );
    assert_eq!(a2["metadata"]["uid"], a["metadata"]["uid"]);
    let r = t.send(Method::PUT, &format!("{CMS}/a"), upd.clone()).await;
    assert_eq!(r.code, StatusCode::CONFLICT);
    assert_eq!(
        r.json()["message"],
        "Operation cannot be fulfilled on configmaps \"a\": the object has been modified; please apply your changes to the latest version and try again"
    );
    let same = t
        .send(Method::PUT, &format!("{CMS}/a"), a2.clone())
        .await
        .json();
    assert_eq!(
        same["metadata"]["resourceVersion"],
        a2["metadata"]["resourceVersion"]
    );
    let mut renamed = a2.clone();
    renamed["metadata"]["name"] = json!("b");
    let r = t.send(Method::PUT, &format!("{CMS}/a"), renamed).await;
    assert_eq!(r.code, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json()["message"],
        "the name of the object (b) does not match the name on the URL (a)"
    );
    let r = t
        .send(Method::PUT, &format!("{CMS}/nope"), cm("nope", json!({})))
        .await;
    assert_eq!(r.code, StatusCode::NOT_FOUND);

    // generateName, dry run.
    let g = t
        .send(
            Method::POST,
            CMS,
            json!({"metadata": {"generateName": "gen-"}}),
        )
        .await
        .json();
    let gname = g["metadata"]["name"].as_str().unwrap();
    assert!(gname.starts_with("gen-") && gname.len() == 9, "{gname}");
    assert_eq!(g["kind"], "ConfigMap");
    let r = t
        .send(
            Method::POST,
            &format!("{CMS}?dryRun=All"),
            cm("dry", json!({})),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED);
    assert_eq!(
        t.get(&format!("{CMS}/dry")).await.code,
        StatusCode::NOT_FOUND
    );

    // Delete: kube's Success Status, then NotFound.
    let r = t
        .req(
            Method::DELETE,
            &format!("{CMS}/a"),
            "",
            Body::empty(),
            Some(admin()),
            None,
        )
        .await;
    assert_eq!(r.code, StatusCode::OK);
    let s = r.json();
    assert_eq!(
        (s["kind"].as_str(), s["status"].as_str()),
        (Some("Status"), Some("Success"))
    );
    assert_eq!(s["details"]["name"], "a");
    assert_eq!(s["details"]["uid"], a["metadata"]["uid"]);
    let r = t
        .req(
            Method::DELETE,
            &format!("{CMS}/a"),
            "",
            Body::empty(),
            Some(admin()),
            None,
        )
        .await;
    assert_eq!(r.code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_input_is_a_status_and_stores_nothing() {
    let t = server().await;
    let before = t.store.revision().await.unwrap();
    let r = t.send(Method::POST, CMS, cm("Bad_Name", json!({}))).await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY);
    let s = r.json();
    assert_eq!(
        s["message"],
        "ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    );
    assert_eq!(s["details"]["kind"], "ConfigMap");
    assert_eq!(s["details"]["causes"][0]["field"], "metadata.name");
    assert_eq!(s["details"]["causes"][0]["reason"], "FieldValueInvalid");
    let r = t.send(Method::POST, CMS, json!({"data": {}})).await.json();
    assert_eq!(
        r["message"],
        "ConfigMap \"\" is invalid: metadata.name: Required value: name or generateName is required"
    );
    let r = t.send(Method::POST, "/api/v1/services", json!({})).await;
    assert_eq!(r.code, StatusCode::METHOD_NOT_ALLOWED);
    let r = t
        .send(
            Method::POST,
            "/api/v1/namespaces/default/services",
            json!({"metadata": {"name": "1svc"}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("DNS-1035 label"));
    let r = t
        .send(
            Method::POST,
            "/api/v1/namespaces",
            json!({"metadata": {"name": "a.b"}}),
        )
        .await;
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("RFC 1123 label"));
    let r = t
        .send(
            Method::POST,
            "/api/v1/namespaces/nope/configmaps",
            cm("x", json!({})),
        )
        .await;
    assert_eq!(r.code, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["message"], r#"namespaces "nope" not found"#);
    let r = t
        .send(
            Method::POST,
            CMS,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::BAD_REQUEST);
    let r = t
        .send(
            Method::POST,
            CMS,
            json!({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
        )
        .await;
    assert_eq!(
        r.json()["message"],
        "the API version in the data (apps/v1) does not match the expected API version (v1)"
    );
    let r = t
        .send(
            Method::POST,
            CMS,
            json!({"metadata": {"name": "x", "namespace": "other"}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::BAD_REQUEST);
    let r = t
        .req(
            Method::POST,
            CMS,
            "application/json",
            "{not json",
            Some(admin()),
            None,
        )
        .await;
    assert_eq!(
        (r.code, r.json()["reason"].as_str()),
        (StatusCode::BAD_REQUEST, Some("BadRequest"))
    );
    let deep = format!(
        "{{\"metadata\":{{\"name\":\"d\"}},\"data\":{}{}}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let r = t
        .req(
            Method::POST,
            CMS,
            "application/json",
            deep,
            Some(admin()),
            None,
        )
        .await;
    assert_eq!(r.code, StatusCode::BAD_REQUEST);
    let big = json!({"metadata": {"name": "big"}, "data": {"k": "x".repeat(3 * 1024 * 1024)}});
    let r = t.send(Method::POST, CMS, big).await;
    assert_eq!(r.code, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json()["reason"], "RequestEntityTooLarge");
    assert_eq!(
        r.json()["message"],
        "Request entity too large: limit is 3145728"
    );
    let r = t
        .send(
            Method::POST,
            CMS,
            json!({"metadata": {"name": "l", "labels": {"bad key": "v"}}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["details"]["causes"][0]["field"], "metadata.labels");
    let r = t
        .req(
            Method::POST,
            CMS,
            "application/vnd.kubernetes.protobuf",
            "k8s\0\x0a\x0d\x0a\x07apps/v1\x12\x02Dx",
            Some(admin()),
            None,
        )
        .await;
    assert_eq!(r.code, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = t.get("/api/v1/namespaces/default/nothings").await;
    assert_eq!(r.code, StatusCode::NOT_FOUND);
    assert_eq!(
        t.store.revision().await.unwrap(),
        before,
        "nothing was stored"
    );

    // YAML bodies are accepted.
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: \"1\"\n";
    let r = t
        .req(
            Method::POST,
            CMS,
            "application/yaml",
            yaml,
            Some(admin()),
            None,
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["data"]["a"], "1");
}

#[tokio::test]
async fn generation_and_status_subresource() {
    let t = server().await;
    let deps = "/apis/apps/v1/namespaces/default/deployments";
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
        "status": {"replicas": 99}});
    let created = t.send(Method::POST, deps, d).await.json();
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(
        created.get("status").is_none(),
        "status is dropped on create"
    );
    // Labels change: no generation bump.
    let mut u = created.clone();
    u["metadata"]["labels"]["x"] = json!("y");
    let u1 = t.send(Method::PUT, &format!("{deps}/web"), u).await.json();
    assert_eq!(u1["metadata"]["generation"], 1);
    // Status via /status; the main resource ignores status.
    let mut s = u1.clone();
    s["status"] = json!({"replicas": 2, "readyReplicas": 1});
    s["spec"]["replicas"] = json!(7);
    let s1 = t
        .send(Method::PUT, &format!("{deps}/web/status"), s)
        .await
        .json();
    assert_eq!(s1["status"]["readyReplicas"], 1);
    assert_eq!(s1["spec"]["replicas"], 2, "status writes leave spec alone");
    assert_eq!(s1["metadata"]["generation"], 1);
    let mut m = s1.clone();
    m["spec"]["replicas"] = json!(3);
    m["status"] = json!({});
    let m1 = t.send(Method::PUT, &format!("{deps}/web"), m).await.json();
    assert_eq!(m1["metadata"]["generation"], 2);
    assert_eq!(
        m1["status"]["readyReplicas"], 1,
        "main writes leave status alone"
    );
    let st = t.get(&format!("{deps}/web/status")).await.json();
    assert_eq!(st["status"]["readyReplicas"], 1);

    // Scale subresource.
    let sc = t.get(&format!("{deps}/web/scale")).await.json();
    assert_eq!(sc["kind"], "Scale");
    assert_eq!(sc["apiVersion"], "autoscaling/v1");
    assert_eq!(sc["spec"]["replicas"], 3);
    assert_eq!(sc["status"]["selector"], "app=web");
    let r = t
        .patch(
            &format!("{deps}/web/scale"),
            "application/merge-patch+json",
            r#"{"spec":{"replicas":5}}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["spec"]["replicas"], 5);
    let d = t.get(&format!("{deps}/web")).await.json();
    assert_eq!(
        (
            d["spec"]["replicas"].as_i64(),
            d["metadata"]["generation"].as_i64()
        ),
        (Some(5), Some(3))
    );
}

#[tokio::test]
async fn lists_page_and_select() {
    let t = server().await;
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
async fn read_events(body: &mut Body, n: usize) -> Vec<Value> {
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

async fn open_watch(t: &T, uri: &str) -> Body {
    let r = Request::builder().uri(uri).body(Body::empty()).unwrap();
    let mut r = r;
    r.extensions_mut().insert(admin());
    let resp = t.app.clone().oneshot(r).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.into_body()
}

#[tokio::test]
async fn watch_streams_changes() {
    let t = server().await;
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
async fn patches() {
    let t = server().await;
    t.send(Method::POST, CMS, cm("p", json!({"a": "1"}))).await;
    let u = format!("{CMS}/p");
    let r = t
        .patch(
            &u,
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"b":"2","a":null}},"data":{"n":"x"}}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    let p = r.json();
    assert_eq!(p["metadata"]["labels"], json!({"b": "2"}));
    assert_eq!(p["data"], json!({"k": "v", "n": "x"}));
    let r = t.patch(&u, "application/json-patch+json", r#"[{"op":"add","path":"/data/j","value":"y"},{"op":"test","path":"/data/k","value":"v"}]"#).await;
    assert_eq!(r.json()["data"]["j"], "y");
    let r = t
        .patch(
            &u,
            "application/json-patch+json",
            r#"[{"op":"test","path":"/data/k","value":"nope"}]"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY);
    let r = t
        .patch(
            &u,
            "application/strategic-merge-patch+json",
            r#"{"metadata":{"annotations":{"x":"y"}}}"#,
        )
        .await;
    assert_eq!(r.json()["metadata"]["annotations"]["x"], "y");
    let r = t
        .patch(
            &u,
            "application/strategic-merge-patch+json",
            r#"{"spec":{"containers":[{"name":"a"}]}}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = t.patch(&u, "application/apply-patch+yaml", "{}").await;
    assert_eq!(r.code, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = t
        .patch(
            &u,
            "application/merge-patch+json",
            r#"{"metadata":{"resourceVersion":"1"}}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::CONFLICT);
    let r = t
        .patch(&u, "application/merge-patch+json", r#"{"kind":"Secret"}"#)
        .await;
    assert_eq!(r.code, StatusCode::BAD_REQUEST);
    let r = t
        .patch(&format!("{CMS}/none"), "application/merge-patch+json", "{}")
        .await;
    assert_eq!(r.code, StatusCode::NOT_FOUND);

    // Concurrent patches all land (GuaranteedUpdate retries lost races).
    let mut tasks = Vec::new();
    for i in 0..20 {
        let app = t.app.clone();
        let uri = u.clone();
        tasks.push(tokio::spawn(async move {
            let mut r = Request::builder()
                .method(Method::PATCH)
                .uri(uri)
                .header(header::CONTENT_TYPE, "application/merge-patch+json")
                .body(Body::from(format!(r#"{{"data":{{"c{i}":"1"}}}}"#)))
                .unwrap();
            r.extensions_mut().insert(admin());
            app.oneshot(r).await.unwrap().status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    let p = t.get(&u).await.json();
    assert_eq!(p["data"].as_object().unwrap().len(), 23);
}

#[tokio::test]
async fn namespaces_terminate_and_finalizers_hold_objects() {
    let t = server().await;
    t.send(
        Method::POST,
        "/api/v1/namespaces",
        json!({"metadata": {"name": "gone"}}),
    )
    .await;
    let cms = "/api/v1/namespaces/gone/configmaps";
    t.send(Method::POST, cms, cm("x", json!({}))).await;
    let mut held = cm("held", json!({}));
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    t.send(Method::POST, cms, held).await;
    let r = t
        .req(
            Method::DELETE,
            "/api/v1/namespaces/gone",
            "",
            Body::empty(),
            Some(admin()),
            None,
        )
        .await;
    assert_eq!(r.code, StatusCode::OK);
    assert_eq!(r.json()["status"]["phase"], "Terminating");
    let r = t.send(Method::POST, cms, cm("y", json!({}))).await;
    assert_eq!(r.code, StatusCode::FORBIDDEN);
    assert_eq!(
        r.json()["message"],
        "configmaps \"y\" is forbidden: unable to create new content in namespace gone because it is being terminated"
    );
    assert_eq!(
        r.json()["details"]["causes"][0]["reason"],
        "NamespaceTerminating"
    );
    // The held object gets a deletionTimestamp and stays until its finalizer goes.
    let mut held = None;
    for _ in 0..50 {
        let h = t.get(&format!("{cms}/held")).await.json();
        if h["metadata"].get("deletionTimestamp").is_some() {
            held = Some(h);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held = held.expect("held object marked for deletion");
    assert_eq!(t.get(&format!("{cms}/x")).await.code, StatusCode::NOT_FOUND);
    assert_eq!(t.get("/api/v1/namespaces/gone").await.code, StatusCode::OK);
    let r = t
        .patch(
            &format!("{cms}/held"),
            "application/merge-patch+json",
            r#"{"metadata":{"finalizers":null}}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    let _ = held;
    assert_eq!(
        t.get(&format!("{cms}/held")).await.code,
        StatusCode::NOT_FOUND
    );
    for _ in 0..50 {
        if t.get("/api/v1/namespaces/gone").await.code == StatusCode::NOT_FOUND {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("namespace never went away");
}
