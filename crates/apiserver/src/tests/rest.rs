//! Create/get/update/delete, bad input, status/scale, patches, namespace lifecycle.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;

use super::*;

backends!(
    crud_and_kube_errors,
    bad_input_is_a_status_and_stores_nothing,
    patches
);

async fn crud_and_kube_errors(t: T) {
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

    // A cluster-scoped kind has no namespaced path.
    assert_eq!(
        t.get("/api/v1/namespaces/default/nodes").await.code,
        StatusCode::NOT_FOUND
    );
    // A namespace update keeps spec.finalizers (they change through /finalize only).
    let mut ns = t.get("/api/v1/namespaces/default").await.json();
    ns["spec"] = json!({});
    ns["metadata"]["labels"]["x"] = json!("y");
    let ns = t
        .send(Method::PUT, "/api/v1/namespaces/default", ns)
        .await
        .json();
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(ns["metadata"]["labels"]["x"], "y");

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

async fn bad_input_is_a_status_and_stores_nothing(t: T) {
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
        r.json(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "the server could not find the requested resource", "reason": "NotFound",
               "details": {}, "code": 404})
    );
    assert_eq!(
        t.store.revision().await.unwrap(),
        before,
        "nothing was stored"
    );

    // A Secret's stringData lands in data.
    let s = t
        .send(
            Method::POST,
            "/api/v1/namespaces/default/secrets",
            json!({"metadata": {"name": "s"}, "stringData": {"p": "pw"}, "data": {"q": "eA=="}}),
        )
        .await
        .json();
    assert_eq!(s["data"], json!({"p": "cHc=", "q": "eA=="}));
    assert!(s.get("stringData").is_none());

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
    assert_eq!(
        created["status"],
        json!({}),
        "status is reset on create (to the Go type's zero, as kube serialises it)"
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

async fn patches(t: T) {
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
    // A strategic patch of a Deployment's containers merges on `name`.
    let deps = "/apis/apps/v1/namespaces/default/deployments";
    t.send(
        Method::POST,
        deps,
        json!({"metadata": {"name": "sm"},
               "spec": {"selector": {"matchLabels": {"a": "b"}},
                        "template": {"metadata": {"labels": {"a": "b"}},
                                     "spec": {"containers": [
                                         {"name": "one", "image": "x:1", "ports": [{"containerPort": 80}]},
                                         {"name": "two", "image": "y:1"}]}}}}),
    )
    .await;
    let r = t
        .patch(
            &format!("{deps}/sm"),
            "application/strategic-merge-patch+json",
            r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"one"},{"name":"two"}],"containers":[{"name":"one","image":"x:2"}]}}}}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    let d = r.json();
    let cs = &d["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        (
            cs[0]["image"].as_str(),
            cs[0]["ports"][0]["containerPort"].as_i64(),
            cs[1]["image"].as_str()
        ),
        (Some("x:2"), Some(80), Some("y:1"))
    );
    assert_eq!(d["metadata"]["generation"], 2);
    // Server-side apply needs a field manager.
    let r = t.patch(&u, "application/apply-patch+yaml", "{}").await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.json()["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
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

#[tokio::test]
async fn field_validation() {
    let t = server().await;
    let body = json!({"metadata": {"name": "u"}, "dataa": {"x": "y"}, "data": {"k": "v"}});
    let r = t
        .send(
            Method::POST,
            &format!("{CMS}?fieldValidation=Strict"),
            body.clone(),
        )
        .await;
    assert_eq!(r.code, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json()["message"],
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"dataa\""
    );
    // Warn (the default): created without the field, one Warning header per field.
    let r = t.send(Method::POST, CMS, body.clone()).await;
    assert_eq!(r.code, StatusCode::CREATED);
    assert_eq!(
        r.headers["warning"],
        "299 - \"unknown field \\\"dataa\\\"\""
    );
    assert!(r.json().get("dataa").is_none());
    assert_eq!(r.json()["data"]["k"], "v");
    let r = t
        .send(
            Method::POST,
            &format!("{CMS}?fieldValidation=Ignore"),
            json!({"metadata": {"name": "u2"}, "dataa": {}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED);
    assert!(r.headers.get("warning").is_none());
    // Nested paths, as kube names them.
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "labelz": {}},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "i", "imagee": "x"}]}}}});
    let r = t
        .send(
            Method::POST,
            "/apis/apps/v1/namespaces/default/deployments?fieldValidation=Strict",
            d,
        )
        .await;
    assert_eq!(
        r.json()["message"],
        "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"metadata.labelz\", unknown field \"spec.template.spec.containers[0].imagee\""
    );
    let r = t
        .patch(
            &format!("{CMS}/u?fieldValidation=Strict"),
            "application/merge-patch+json",
            r#"{"bogus":1}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json()["message"],
        "strict decoding error: unknown field \"bogus\""
    );
    let r = t
        .send(
            Method::POST,
            &format!("{CMS}?fieldValidation=Bad"),
            json!({}),
        )
        .await;
    assert_eq!(r.code, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn pods_are_deleted_gracefully_once_scheduled() {
    let t = server().await;
    let pods = "/api/v1/namespaces/default/pods";
    let pod = |name: &str, node: &str| {
        json!({"metadata": {"name": name},
               "spec": {"nodeName": node, "terminationGracePeriodSeconds": 20,
                        "containers": [{"name": "c", "image": "busybox"}]}})
    };
    // Unscheduled: gone at once.
    t.send(Method::POST, pods, pod("a", "")).await;
    let r = t
        .req(
            Method::DELETE,
            &format!("{pods}/a"),
            "",
            Body::empty(),
            Some(admin()),
            None,
        )
        .await;
    assert_eq!(r.json()["kind"], "Status");
    assert_eq!(
        t.get(&format!("{pods}/a")).await.code,
        StatusCode::NOT_FOUND
    );
    // Scheduled: marked with its grace period, then gone with gracePeriodSeconds=0.
    t.send(Method::POST, pods, pod("b", "node1")).await;
    let r = t
        .req(
            Method::DELETE,
            &format!("{pods}/b"),
            "",
            Body::empty(),
            Some(admin()),
            None,
        )
        .await
        .json();
    assert_eq!(r["kind"], "Pod");
    assert_eq!(r["metadata"]["deletionGracePeriodSeconds"], 20);
    assert!(r["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(t.get(&format!("{pods}/b")).await.code, StatusCode::OK);
    let r = t
        .req(
            Method::DELETE,
            &format!("{pods}/b"),
            "application/json",
            r#"{"kind":"DeleteOptions","apiVersion":"v1","gracePeriodSeconds":0}"#,
            Some(admin()),
            None,
        )
        .await;
    assert_eq!(r.json()["status"], "Success");
    assert_eq!(
        t.get(&format!("{pods}/b")).await.code,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn immutable_fields_are_422() {
    let t = server().await;
    let mut c = cm("imm", json!({}));
    c["immutable"] = json!(true);
    let created = t.send(Method::POST, CMS, c).await.json();
    let mut upd = created.clone();
    upd["data"]["k"] = json!("changed");
    let r = t.send(Method::PUT, &format!("{CMS}/imm"), upd).await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY);
    let s = r.json();
    assert_eq!(
        s["message"],
        "ConfigMap \"imm\" is invalid: data: Forbidden: field is immutable when `immutable` is set"
    );
    assert_eq!(s["details"]["causes"][0]["reason"], "FieldValueForbidden");
    // Labels may still change.
    let r = t
        .patch(
            &format!("{CMS}/imm"),
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"x":"y"}}}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::OK);
    let deps = "/apis/apps/v1/namespaces/default/deployments";
    t.send(
        Method::POST,
        deps,
        json!({"metadata": {"name": "im"},
               "spec": {"selector": {"matchLabels": {"a": "b"}},
                        "template": {"metadata": {"labels": {"a": "b"}},
                                     "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
    )
    .await;
    let r = t
        .patch(
            &format!("{deps}/im"),
            "application/merge-patch+json",
            r#"{"spec":{"selector":{"matchLabels":{"a":"c"}}}}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.json()["message"],
        "Deployment.apps \"im\" is invalid: spec.selector: Invalid value: {\"matchLabels\":{\"a\":\"c\"}}: field is immutable"
    );
}

#[tokio::test]
async fn server_side_apply() {
    let t = server().await;
    let u = format!("{CMS}/ssa?fieldManager=alice");
    let apply = |body: &'static str, uri: String| {
        let t = &t;
        async move { t.patch(&uri, "application/apply-patch+yaml", body).await }
    };
    // First apply creates.
    let r = apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: '1'\n  b: '2'\n",
        u.clone(),
    )
    .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let mf = &r.json()["metadata"]["managedFields"];
    assert_eq!(
        (mf[0]["manager"].as_str(), mf[0]["operation"].as_str()),
        (Some("alice"), Some("Apply"))
    );
    assert_eq!(mf[0]["fieldsV1"], json!({"f:data": {"f:a": {}, "f:b": {}}}));
    // Another manager changes a field alice owns: conflict, then force.
    let bob = format!("{CMS}/ssa?fieldManager=bob");
    let r = apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: 'x'\n",
        bob.clone(),
    )
    .await;
    assert_eq!(r.code, StatusCode::CONFLICT);
    let s = r.json();
    assert_eq!(
        s["message"],
        "Apply failed with 1 conflict: conflict with \"alice\": .data.a"
    );
    assert_eq!(s["reason"], "Conflict");
    assert_eq!(
        s["details"]["causes"][0],
        json!({"reason": "FieldManagerConflict", "message": "conflict with \"alice\"", "field": ".data.a"})
    );
    let r = apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: 'x'\n",
        format!("{bob}&force=true"),
    )
    .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["data"], json!({"a": "x", "b": "2"}));
    // Alice drops b from her configuration: it goes (she alone owned it).
    let r = apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: 'x'\n",
        u.clone(),
    )
    .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["data"], json!({"a": "x"}));
    // The same apply again writes nothing.
    let rv = r.json()["metadata"]["resourceVersion"].clone();
    let again = apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: 'x'\n",
        u.clone(),
    )
    .await;
    assert_eq!(again.json()["metadata"]["resourceVersion"], rv);
    // Containers merge by name.
    let deps = "/apis/apps/v1/namespaces/default/deployments";
    let dep = |image: &str, extra: &str| {
        format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: sd\nspec:\n  selector:\n    matchLabels: {{app: sd}}\n  template:\n    metadata:\n      labels: {{app: sd}}\n    spec:\n      containers:\n      - name: web\n        image: {image}\n{extra}"
    )
    };
    let r = t
        .patch(
            &format!("{deps}/sd?fieldManager=alice"),
            "application/apply-patch+yaml",
            &dep("a:1", ""),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let r = t
        .patch(
            &format!("{deps}/sd?fieldManager=bob"),
            "application/apply-patch+yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: sd\nspec:\n  template:\n    spec:\n      containers:\n      - name: side\n        image: s:1\n",
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    let names: Vec<String> = r.json()["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["web", "side"]);
    let r = t
        .patch(
            &format!("{deps}/sd?fieldManager=bob"),
            "application/apply-patch+yaml",
            &dep("a:2", ""),
        )
        .await;
    assert_eq!(r.code, StatusCode::CONFLICT);
    assert_eq!(
        r.json()["message"],
        "Apply failed with 1 conflict: conflict with \"alice\": .spec.template.spec.containers[name=\"web\"].image"
    );
}

/// RBAC: a user with no binding is refused with kube's 403; a RoleBinding to `view` in one
/// namespace lets them read there (the policy follows the datastore at once) and nowhere
/// else; the default roles exist; discovery is open to every authenticated user.
#[tokio::test]
async fn rbac_denies_until_a_binding_allows() {
    let t = server().await;
    let alice = Identity {
        user: "alice".into(),
        groups: vec!["system:authenticated".into()],
    };
    let as_alice = |uri: &'static str| {
        let a = alice.clone();
        let t = &t;
        async move {
            t.req(Method::GET, uri, "application/json", "", Some(a), None)
                .await
        }
    };
    let r = as_alice("/api/v1/namespaces/default/configmaps").await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "configmaps is forbidden: User \"alice\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""
    );
    assert_eq!(as_alice("/apis").await.code, StatusCode::OK);
    let view = t
        .get("/apis/rbac.authorization.k8s.io/v1/clusterroles/view")
        .await;
    assert_eq!(view.code, StatusCode::OK, "{}", view.text());
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "alice-view", "namespace": "default"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]});
    let r = t
        .send(
            Method::POST,
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
            binding,
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = as_alice("/api/v1/namespaces/default/configmaps").await;
        if r.code == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {}: {}",
            r.code,
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        as_alice("/api/v1/namespaces/kube-system/configmaps")
            .await
            .code,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        as_alice("/api/v1/namespaces/default/secrets").await.code,
        StatusCode::FORBIDDEN
    );
}

/// kube's `healthCheckNodePort`: allocated for a LoadBalancer with `externalTrafficPolicy:
/// Local`, released when the policy goes back to Cluster (another Service can then ask for
/// it), and a taken one is refused naming the field.
#[tokio::test]
async fn health_check_node_port_follows_the_local_policy() {
    let t = server().await;
    const SVCS: &str = "/api/v1/namespaces/default/services";
    let svc = |name: &str, hc: Option<i64>| {
        let mut s = json!({"metadata": {"name": name}, "spec": {"type": "LoadBalancer",
            "externalTrafficPolicy": "Local", "selector": {"app": "x"}, "ports": [{"port": 80}]}});
        if let Some(p) = hc {
            s["spec"]["healthCheckNodePort"] = json!(p);
        }
        s
    };
    let r = t.send(Method::POST, SVCS, svc("a", None)).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let hc = r.json()["spec"]["healthCheckNodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&hc), "{hc}");
    assert_ne!(Some(hc), r.json()["spec"]["ports"][0]["nodePort"].as_i64());
    let r = t.send(Method::POST, SVCS, svc("b", Some(hc))).await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert_eq!(
        r.json()["details"]["causes"][0]["field"],
        "spec.healthCheckNodePort"
    );
    let r = t
        .patch(
            &format!("{SVCS}/a"),
            "application/merge-patch+json",
            r#"{"spec":{"externalTrafficPolicy":"Cluster"}}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    assert!(
        r.json()["spec"].get("healthCheckNodePort").is_none(),
        "{}",
        r.text()
    );
    let r = t.send(Method::POST, SVCS, svc("b", Some(hc))).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["spec"]["healthCheckNodePort"], hc);
}
