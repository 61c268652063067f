//! CustomResourceDefinitions end to end through the router: the lifecycle (accepted names,
//! Established, conflicts, non-structural schemas refused, deletion with its objects), and
//! custom objects through the generic REST code (pruning, defaults, validation, status and
//! scale subresources, printer columns, several versions, discovery, OpenAPI).

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use super::{server, T};

const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
const WIDGETS: &str = "/apis/example.com/v1/namespaces/default/widgets";

fn schema() -> Value {
    json!({"type": "object", "properties": {
        "spec": {"type": "object", "required": ["size"], "properties": {
            "size": {"type": "integer", "minimum": 1},
            "mode": {"type": "string", "enum": ["fast", "slow"], "default": "fast"},
            "replicas": {"type": "integer"},
            "selector": {"type": "string"},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
        }},
        "status": {"type": "object", "properties": {
            "replicas": {"type": "integer"},
            "phase": {"type": "string"}
        }}
    }})
}

pub(super) fn widget_crd() -> Value {
    let version = |name: &str, storage: bool| {
        json!({"name": name, "served": true, "storage": storage,
        "schema": {"openAPIV3Schema": schema()},
        "subresources": {"status": {}, "scale": {
            "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".spec.selector"}},
        "additionalPrinterColumns": [
            {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
            {"name": "Mode", "type": "string", "jsonPath": ".spec.mode", "priority": 1},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
        ]})
    };
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"], "categories": ["all"]},
            "versions": [version("v1", true), version("v2", false)]}})
}

/// Polls `uri` until `done` holds for its JSON (5 s at most).
async fn wait_for(t: &T, uri: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let r = t.get(uri).await;
        if r.code == StatusCode::OK && done(&r.json()) {
            return r.json();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{uri} never reached the state: {}", t.get(uri).await.text());
}

fn condition(crd: &Value, kind: &str) -> Value {
    crd["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .cloned()
        .unwrap_or(Value::Null)
}

pub(super) async fn established(t: &T, crd: Value) -> Value {
    let name = crd["metadata"]["name"].as_str().unwrap().to_string();
    let r = t.send(Method::POST, CRDS, crd).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let crd = wait_for(t, &format!("{CRDS}/{name}"), |c| {
        condition(c, "Established")["status"] == "True"
    })
    .await;
    // The registry follows the status write through the watch cache.
    let plural = name.split('.').next().unwrap();
    for _ in 0..100 {
        if t.get("/apis/example.com/v1").await.text().contains(plural) {
            return crd;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{name} not served");
}

#[tokio::test]
async fn crd_lifecycle_and_custom_objects() {
    let t = server().await;
    // Before the CRD: the group is absent.
    assert_eq!(t.get(WIDGETS).await.code, StatusCode::NOT_FOUND);
    let crd = established(&t, widget_crd()).await;
    let named = condition(&crd, "NamesAccepted");
    assert_eq!(
        (&named["status"], &named["reason"], &named["message"]),
        (
            &json!("True"),
            &json!("NoConflicts"),
            &json!("no conflicts found")
        )
    );
    assert_eq!(
        condition(&crd, "Established")["reason"],
        "InitialNamesAccepted"
    );
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "Widget");
    assert_eq!(crd["status"]["acceptedNames"]["singular"], "widget");
    assert_eq!(crd["status"]["acceptedNames"]["listKind"], "WidgetList");
    assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
    assert_eq!(crd["spec"]["conversion"]["strategy"], "None");

    // Discovery: legacy and aggregated, with short names, categories and subresources.
    let gv = t.get("/apis/example.com/v1").await.json();
    let res = &gv["resources"];
    assert_eq!(res[0]["name"], "widgets");
    assert_eq!(res[0]["shortNames"], json!(["wd"]));
    assert_eq!(res[0]["categories"], json!(["all"]));
    let names: Vec<&str> = res
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["widgets", "widgets/status", "widgets/scale"]);
    let group = t.get("/apis/example.com").await.json();
    assert_eq!(group["preferredVersion"]["version"], "v2");
    let agg = t
        .req(
            Method::GET,
            "/apis",
            "application/json",
            axum::body::Body::empty(),
            Some(super::admin()),
            Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"),
        )
        .await
        .json();
    let example = agg["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"] == "example.com")
        .expect("example.com in aggregated discovery");
    assert_eq!(example["versions"][0]["version"], "v2");
    assert_eq!(
        example["versions"][1]["resources"][0]["shortNames"],
        json!(["wd"])
    );

    // Create: unknown fields pruned (a warning), defaults applied, generation 1, no status.
    let w = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a"},
        "spec": {"size": 2, "extra": 1, "free": {"any": 1}}, "status": {"phase": "x"}});
    let r = t.send(Method::POST, WIDGETS, w.clone()).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let a = r.json();
    assert_eq!(
        a["spec"],
        json!({"size": 2, "mode": "fast", "free": {"any": 1}})
    );
    assert!(a.get("status").is_none());
    assert_eq!(a["metadata"]["generation"], 1);
    assert_eq!(a["apiVersion"], "example.com/v1");
    let warning = r.headers.get("warning").unwrap().to_str().unwrap();
    assert!(
        warning.contains(r#"unknown field \"spec.extra\""#),
        "{warning}"
    );
    // Stored under /registry/<group>/<plural>/<ns>/<name>.
    let (_, kv) = t
        .store
        .get("/registry/example.com/widgets/default/a", None)
        .await
        .unwrap();
    assert!(kv.is_some());

    // Strict: the unknown field is a 400 naming it; nothing stored.
    let mut strict = w.clone();
    strict["metadata"]["name"] = json!("strict");
    let r = t
        .send(
            Method::POST,
            &format!("{WIDGETS}?fieldValidation=Strict"),
            strict,
        )
        .await;
    assert_eq!(r.code, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains(r#"strict decoding error: unknown field "spec.extra""#),
        "{}",
        r.text()
    );
    assert_eq!(
        t.get(&format!("{WIDGETS}/strict")).await.code,
        StatusCode::NOT_FOUND
    );

    // Schema violations: 422 Invalid with kube's wording and field paths.
    let bad = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "bad"},
        "spec": {"size": 0, "mode": "warp"}});
    let r = t.send(Method::POST, WIDGETS, bad).await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    let s = r.json();
    assert_eq!(s["reason"], "Invalid");
    assert_eq!(s["details"]["kind"], "Widget");
    assert_eq!(s["details"]["group"], "example.com");
    let fields: Vec<&str> = s["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["spec.mode", "spec.size"]);
    assert_eq!(
        s["message"],
        "Widget.example.com \"bad\" is invalid: [spec.mode: Unsupported value: \"warp\": supported values: \"fast\", \"slow\", spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1]"
    );
    let r = t
        .send(
            Method::POST,
            WIDGETS,
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "bad"}, "spec": {}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["details"]["causes"][0]["field"], "spec.size");
    assert_eq!(
        t.get(&format!("{WIDGETS}/bad")).await.code,
        StatusCode::NOT_FOUND
    );

    // The main resource ignores status; /status ignores the rest; generation follows spec.
    let mut upd = a.clone();
    upd["spec"]["size"] = json!(3);
    upd["status"] = json!({"phase": "ignored"});
    let r = t.send(Method::PUT, &format!("{WIDGETS}/a"), upd).await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    let a = r.json();
    assert!(a.get("status").is_none());
    assert_eq!(a["metadata"]["generation"], 2);
    let r = t
        .patch(
            &format!("{WIDGETS}/a/status"),
            "application/merge-patch+json",
            r#"{"spec":{"size":9},"status":{"phase":"Ready","replicas":1}}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    let a = r.json();
    assert_eq!(a["status"]["phase"], "Ready");
    assert_eq!(a["spec"]["size"], 3);
    assert_eq!(a["metadata"]["generation"], 2);
    // A status violating the schema is refused too.
    let r = t
        .patch(
            &format!("{WIDGETS}/a/status"),
            "application/merge-patch+json",
            r#"{"status":{"replicas":"many"}}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());

    // Strategic merge patch is not for custom resources (kube's 415); merge patch is.
    let r = t
        .patch(
            &format!("{WIDGETS}/a"),
            "application/strategic-merge-patch+json",
            r#"{"spec":{"size":4}}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", r.text());
    assert_eq!(r.json()["message"], "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml");
    let r = t
        .patch(
            &format!("{WIDGETS}/a"),
            "application/merge-patch+json",
            r#"{"spec":{"size":4,"selector":"app=w"}}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());

    // Scale: autoscaling/v1 from the CRD's paths; a scale writes spec.replicas.
    let scale = t.get(&format!("{WIDGETS}/a/scale")).await.json();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 0);
    assert_eq!(scale["status"], json!({"replicas": 1, "selector": "app=w"}));
    let r = t
        .patch(
            &format!("{WIDGETS}/a/scale"),
            "application/merge-patch+json",
            r#"{"spec":{"replicas":5}}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["spec"]["replicas"], 5);
    assert_eq!(
        t.get(&format!("{WIDGETS}/a")).await.json()["spec"]["replicas"],
        5
    );

    // Server-side printing: Name, then the CRD's columns (priority 1 for -o wide).
    let table = t
        .req(
            Method::GET,
            WIDGETS,
            "application/json",
            axum::body::Body::empty(),
            Some(super::admin()),
            Some("application/json;as=Table;v=v1;g=meta.k8s.io"),
        )
        .await
        .json();
    let cols: Vec<(&str, &str, i64)> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap(),
                c["type"].as_str().unwrap(),
                c["priority"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        cols,
        vec![
            ("Name", "string", 0),
            ("Size", "integer", 0),
            ("Mode", "string", 1),
            ("Age", "date", 0)
        ]
    );
    let cells = &table["rows"][0]["cells"];
    assert_eq!(
        (&cells[0], &cells[1], &cells[2]),
        (&json!("a"), &json!(4), &json!("fast"))
    );
    assert!(cells[3].as_str().unwrap().ends_with('s'), "{cells}");

    // Several versions, conversion None: written at v2, stored at v1, read at either.
    let v2 = "/apis/example.com/v2/namespaces/default/widgets";
    let r = t
        .send(
            Method::POST,
            v2,
            json!({"apiVersion": "example.com/v2", "kind": "Widget", "metadata": {"name": "b"}, "spec": {"size": 1}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["apiVersion"], "example.com/v2");
    let (_, kv) = t
        .store
        .get("/registry/example.com/widgets/default/b", None)
        .await
        .unwrap();
    let stored: Value = serde_json::from_slice(&kv.unwrap().value).unwrap();
    assert_eq!(stored["apiVersion"], "example.com/v1");
    assert_eq!(
        t.get(&format!("{v2}/a")).await.json()["apiVersion"],
        "example.com/v2"
    );
    assert_eq!(
        t.get(&format!("{WIDGETS}/b")).await.json()["apiVersion"],
        "example.com/v1"
    );
    let r = t
        .patch(
            &format!("{v2}/b"),
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"x":"y"}}}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["apiVersion"], "example.com/v2");
    // Only spec changes bump generation, whatever version the write came through; a no-op
    // write at v2 stores nothing.
    assert_eq!(r.json()["metadata"]["generation"], 1);
    let rv = r.json()["metadata"]["resourceVersion"].clone();
    let r = t
        .patch(
            &format!("{v2}/b"),
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"x":"y"}}}"#,
        )
        .await;
    assert_eq!(r.json()["metadata"]["resourceVersion"], rv);
    assert_eq!(r.json()["apiVersion"], "example.com/v2");
    // Lists at v2: items keep kind and apiVersion (the request's), as kube's unstructured lists.
    let list = t.get(v2).await.json();
    assert_eq!(list["kind"], "WidgetList");
    assert_eq!(list["items"][0]["apiVersion"], "example.com/v2");
    assert_eq!(list["items"][0]["kind"], "Widget");
    // A watch at v2 shows v2 objects (the initial ADDEDs and later events).
    let watch = t
        .get(&format!("{v2}?watch=1&timeoutSeconds=1"))
        .await
        .text();
    let events: Vec<Value> = watch
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{watch}");
    assert!(events
        .iter()
        .all(|e| e["type"] == "ADDED" && e["object"]["apiVersion"] == "example.com/v2"));

    // OpenAPI v3 carries the schema under its GVK (kubectl explain).
    let doc = t.get("/openapi/v3/apis/example.com/v1").await.json();
    let w = &doc["components"]["schemas"]["com.example.v1.Widget"];
    assert_eq!(w["x-kubernetes-group-version-kind"][0]["kind"], "Widget");
    assert_eq!(
        w["properties"]["spec"]["properties"]["size"]["type"],
        "integer"
    );
    assert!(t
        .get("/openapi/v3")
        .await
        .text()
        .contains("apis/example.com/v2"));
    assert!(t
        .get("/openapi/v2")
        .await
        .text()
        .contains("com.example.v1.Widget"));

    // Deleting the CRD deletes its objects first (the cleanup finalizer), then itself.
    let r = t
        .req(
            Method::DELETE,
            &format!("{CRDS}/widgets.example.com"),
            "application/json",
            axum::body::Body::empty(),
            Some(super::admin()),
            None,
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    let body = r.json();
    assert_eq!(
        body["metadata"]["finalizers"],
        json!(["customresourcecleanup.apiextensions.k8s.io"])
    );
    assert_eq!(
        condition(&body, "Terminating")["reason"],
        "InstanceDeletionPending"
    );
    for _ in 0..200 {
        if t.get(&format!("{CRDS}/widgets.example.com")).await.code == StatusCode::NOT_FOUND {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        t.get(&format!("{CRDS}/widgets.example.com")).await.code,
        StatusCode::NOT_FOUND
    );
    let page = t
        .store
        .list("/registry/example.com/", Default::default())
        .await
        .unwrap();
    assert!(page.kvs.is_empty());
    for _ in 0..100 {
        if t.get(WIDGETS).await.code == StatusCode::NOT_FOUND {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("widgets still served after their CRD was deleted");
}

#[tokio::test]
async fn bad_crds_and_name_conflicts() {
    let t = server().await;
    // A non-structural schema: 422 with kube's message, nothing stored.
    let mut crd = widget_crd();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}});
    let r = t.send(Method::POST, CRDS, crd).await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    let s = r.json();
    assert_eq!(s["message"], "CustomResourceDefinition.apiextensions.k8s.io \"widgets.example.com\" is invalid: spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields");
    assert_eq!(
        s["details"]["causes"][0]["field"],
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].type"
    );
    assert_eq!(
        t.get(&format!("{CRDS}/widgets.example.com")).await.code,
        StatusCode::NOT_FOUND
    );
    // A name that is not plural.group, two storage versions.
    let mut crd = widget_crd();
    crd["metadata"]["name"] = json!("wrong.example.com");
    crd["spec"]["versions"][1]["storage"] = json!(true);
    let r = t.send(Method::POST, CRDS, crd).await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    let fields: Vec<String> = r.json()["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(fields, vec!["metadata.name", "spec.versions"]);

    // A second CRD of the group claiming the same kind: NamesAccepted False, not served.
    established(&t, widget_crd()).await;
    let mut other = widget_crd();
    other["metadata"]["name"] = json!("gizmos.example.com");
    other["spec"]["names"] =
        json!({"plural": "gizmos", "singular": "gizmo", "kind": "Widget", "listKind": "GizmoList"});
    let r = t.send(Method::POST, CRDS, other).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let crd = wait_for(&t, &format!("{CRDS}/gizmos.example.com"), |c| {
        condition(c, "NamesAccepted")["status"] == "False"
    })
    .await;
    let named = condition(&crd, "NamesAccepted");
    assert_eq!(named["reason"], "KindConflict");
    assert_eq!(named["message"], "\"Widget\" is already in use");
    assert_eq!(condition(&crd, "Established")["status"], "False");
    assert_eq!(
        t.get("/apis/example.com/v1/namespaces/default/gizmos")
            .await
            .code,
        StatusCode::NOT_FOUND
    );

    // Cluster-scoped custom resources have no namespaced path.
    let mut cluster = widget_crd();
    cluster["metadata"]["name"] = json!("knobs.example.com");
    cluster["spec"]["scope"] = json!("Cluster");
    cluster["spec"]["names"] = json!({"plural": "knobs", "kind": "Knob"});
    established(&t, cluster).await;
    let r = t
        .send(
            Method::POST,
            "/apis/example.com/v1/knobs",
            json!({"apiVersion": "example.com/v1", "kind": "Knob", "metadata": {"name": "k", "namespace": "x"}, "spec": {"size": 1}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    assert!(r.json()["metadata"].get("namespace").is_none());
    assert_eq!(
        t.get("/apis/example.com/v1/namespaces/default/knobs/k")
            .await
            .code,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn custom_resources_follow_crds_written_by_another_server() {
    // Two API servers over one datastore: a CRD created through one is served by the other
    // (the registry follows the datastore through the watch cache, not requests).
    let t = server().await;
    let other = crate::ApiServer::new(t.store.clone(), crate::Config::default());
    other.bootstrap().await.unwrap();
    let t2 = T {
        app: other.router(),
        store: t.store.clone(),
        // An unused store: `t` owns the shared one.
        _fixture: barge_datastore::testing::Backend::Memory.open().await,
    };
    established(&t, widget_crd()).await;
    for _ in 0..100 {
        if t2.get(WIDGETS).await.code == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = t2
        .send(
            Method::POST,
            WIDGETS,
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "x"}, "spec": {"size": 1}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    assert_eq!(
        t.get(&format!("{WIDGETS}/x")).await.json()["spec"]["mode"],
        "fast"
    );
    // Server-side apply on a custom resource.
    let r = t
        .req(
            Method::PATCH,
            &format!("{WIDGETS}/wy?fieldManager=me"),
            "application/apply-patch+yaml",
            "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: wy\nspec:\n  size: 7\n",
            Some(super::admin()),
            None,
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let y = r.json();
    assert_eq!(y["spec"], json!({"size": 7, "mode": "fast"}));
    assert_eq!(y["metadata"]["managedFields"][0]["manager"], "me");

    // A namespace being deleted loses its custom objects too.
    let r = t
        .send(
            Method::POST,
            "/api/v1/namespaces",
            json!({"metadata": {"name": "team"}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let team = "/apis/example.com/v1/namespaces/team/widgets";
    let r = t
        .send(
            Method::POST,
            team,
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "t"}, "spec": {"size": 1}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let r = t
        .req(
            Method::DELETE,
            "/api/v1/namespaces/team",
            "application/json",
            axum::body::Body::empty(),
            Some(super::admin()),
            None,
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    for _ in 0..100 {
        if t.get("/api/v1/namespaces/team").await.code == StatusCode::NOT_FOUND {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        t.get(&format!("{team}/t")).await.code,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        t.get("/api/v1/namespaces/team").await.code,
        StatusCode::NOT_FOUND
    );
}

const GADGETS: &str = "/apis/example.com/v1/namespaces/default/gadgets";

/// A one-version CRD `gadgets.example.com` with `schema` as its `openAPIV3Schema`.
fn gadget_crd(schema: Value) -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "gadgets", "kind": "Gadget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": schema}}]}})
}

fn gadget(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Gadget",
        "metadata": {"name": name}, "spec": spec})
}

/// The (reason, field, message) of a 422's causes, and its message.
fn causes(r: &super::Resp) -> (Vec<(String, String, String)>, String) {
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    let s = r.json();
    assert_eq!((&s["reason"], &s["code"]), (&json!("Invalid"), &json!(422)));
    let list = s["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let f = |k: &str| c[k].as_str().unwrap_or("").to_string();
            (f("reason"), f("field"), f("message"))
        })
        .collect();
    (list, s["message"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn cel_validation_rules() {
    let t = server().await;
    // A rule that does not compile refuses the CRD, with kube's path and wording.
    let bad = gadget_crd(
        json!({"type": "object", "properties": {"spec": {"type": "object",
        "x-kubernetes-validations": [{"rule": "self.size >"}],
        "properties": {"size": {"type": "integer"}}}}}),
    );
    let r = t.send(Method::POST, CRDS, bad).await;
    let (list, _) = causes(&r);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].0, "FieldValueInvalid");
    assert_eq!(
        list[0].1,
        "spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule"
    );
    assert!(
        list[0].2.starts_with("Invalid value: apiextensions.ValidationRule{Rule:\"self.size >\", Message:\"\", MessageExpression:\"\", Reason:(*apiextensions.FieldValueErrorReason)(nil), FieldPath:\"\", OptionalOldSelf:(*bool)(nil)}: compilation failed: ERROR: <input>:1:"),
        "{}",
        list[0].2
    );
    assert_eq!(
        t.get(&format!("{CRDS}/gadgets.example.com")).await.code,
        StatusCode::NOT_FOUND
    );

    let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
    "x-kubernetes-validations": [
        {"rule": "self.minReplicas <= self.replicas", "message": "replicas must be at least minReplicas"},
        {"rule": "!has(self.name) || size(self.name) < 8", "messageExpression": "'name ' + self.name + ' is too long'"},
        {"rule": "!has(self.legacy)", "reason": "FieldValueForbidden", "fieldPath": ".legacy", "message": "legacy is gone"},
    ],
    "properties": {
        "replicas": {"type": "integer"}, "minReplicas": {"type": "integer"},
        "name": {"type": "string"}, "legacy": {"type": "string"},
        "id": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "id is immutable"}]},
        "hosts": {"type": "array", "items": {"type": "string"},
            "x-kubernetes-validations": [{"rule": "self.all(h, h.endsWith('.example.com'))"}]}
    }}}});
    established(&t, gadget_crd(schema)).await;

    // A rule that holds, and one that does not: kube's cause and message.
    let ok = json!({"replicas": 2, "minReplicas": 1, "name": "a", "id": "x", "hosts": ["a.example.com"]});
    let r = t
        .send(Method::POST, GADGETS, gadget("good", ok.clone()))
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let r = t
        .send(
            Method::POST,
            GADGETS,
            gadget("few", json!({"replicas": 1, "minReplicas": 3})),
        )
        .await;
    let (list, message) = causes(&r);
    assert_eq!(
        list,
        vec![(
            "FieldValueInvalid".into(),
            "spec".into(),
            "Invalid value: \"object\": replicas must be at least minReplicas".into()
        )]
    );
    assert_eq!(
        message,
        "Gadget.example.com \"few\" is invalid: spec: Invalid value: \"object\": replicas must be at least minReplicas"
    );

    // messageExpression, reason and fieldPath.
    let r = t
        .send(
            Method::POST,
            GADGETS,
            gadget(
                "named",
                json!({"replicas": 1, "minReplicas": 1, "name": "far-too-long", "legacy": "x"}),
            ),
        )
        .await;
    let (list, _) = causes(&r);
    assert_eq!(
        list,
        vec![
            (
                "FieldValueInvalid".into(),
                "spec".into(),
                "Invalid value: \"object\": name far-too-long is too long".into()
            ),
            (
                "FieldValueForbidden".into(),
                "spec.legacy".into(),
                "Forbidden: legacy is gone".into()
            ),
        ]
    );

    // A rule over a list with all(): the default message names the rule.
    let r = t
        .send(
            Method::POST,
            GADGETS,
            gadget(
                "hosts",
                json!({"replicas": 1, "minReplicas": 1, "hosts": ["a.example.com", "b.example.org"]}),
            ),
        )
        .await;
    let (list, _) = causes(&r);
    assert_eq!(
        list,
        vec![(
            "FieldValueInvalid".into(),
            "spec.hosts".into(),
            "Invalid value: \"array\": failed rule: self.all(h, h.endsWith('.example.com'))".into()
        )]
    );

    // A transition rule: an update (put or patch) that changes the id is refused, one that
    // keeps it is taken.
    let uri = format!("{GADGETS}/good");
    let mut obj = t.get(&uri).await.json();
    obj["spec"]["id"] = json!("y");
    let (list, _) = causes(&t.send(Method::PUT, &uri, obj.clone()).await);
    assert_eq!(
        list,
        vec![(
            "FieldValueInvalid".into(),
            "spec.id".into(),
            "Invalid value: \"string\": id is immutable".into()
        )]
    );
    let r = t
        .patch(
            &uri,
            "application/merge-patch+json",
            r#"{"spec":{"id":"z"}}"#,
        )
        .await;
    assert_eq!(
        causes(&r).0[0].2,
        "Invalid value: \"string\": id is immutable"
    );
    obj["spec"]["id"] = json!("x");
    obj["spec"]["replicas"] = json!(5);
    let r = t.send(Method::PUT, &uri, obj).await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["spec"]["replicas"], 5);
}

#[tokio::test]
async fn openapi_formats() {
    let t = server().await;
    let cases = [
        ("date-time", "2024-02-14T15:30:00Z", "yesterday"),
        ("date", "2024-02-14", "14/02/2024"),
        ("email", "ops@example.com", "ops"),
        ("hostname", "node-1.example.com", "-node-"),
        ("ipv4", "192.168.1.1", "192.168.1.300"),
        ("ipv6", "fd00::1", "fd00::g"),
        ("cidr", "10.0.0.0/8", "10.0.0.0"),
        ("mac", "02:42:ac:11:00:02", "02:42:ac"),
        (
            "uuid",
            "123e4567-e89b-12d3-a456-426614174000",
            "123e4567-e89b",
        ),
        ("uri", "https://example.com/a", "example.com/a"),
        ("byte", "aGVsbG8=", "hello!"),
        ("duration", "1h30m", "soon"),
    ];
    let mut props = serde_json::Map::new();
    for (i, (format, _, _)) in cases.iter().enumerate() {
        props.insert(format!("f{i}"), json!({"type": "string", "format": format}));
    }
    props.insert(
        "free".into(),
        json!({"type": "string", "format": "no-such-format"}),
    );
    let schema =
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": props}}});
    established(&t, gadget_crd(schema)).await;
    let mut good = serde_json::Map::new();
    for (i, (_, ok, _)) in cases.iter().enumerate() {
        good.insert(format!("f{i}"), json!(ok));
    }
    good.insert("free".into(), json!("anything at all"));
    let r = t
        .send(Method::POST, GADGETS, gadget("good", Value::Object(good)))
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    for (i, (format, _, bad)) in cases.iter().enumerate() {
        let r = t
            .send(
                Method::POST,
                GADGETS,
                gadget(&format!("bad{i}"), json!({format!("f{i}"): bad})),
            )
            .await;
        let (list, message) = causes(&r);
        let field = format!("spec.f{i}");
        let want = format!(
            "Invalid value: \"{bad}\": {field} in body must be of type {format}: \"{bad}\""
        );
        assert_eq!(
            list,
            vec![("FieldValueTypeInvalid".into(), field.clone(), want.clone())]
        );
        assert_eq!(
            message,
            format!("Gadget.example.com \"bad{i}\" is invalid: {field}: {want}")
        );
    }
}
