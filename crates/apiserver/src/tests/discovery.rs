//! Discovery documents, health and anonymous access.

use axum::body::Body;
use axum::http::{header, Method, StatusCode};
use serde_json::json;

use super::*;

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
async fn openapi_v3_advertises_field_validation() {
    let t = server().await;
    let index = t.get("/openapi/v3").await.json();
    let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
    assert!(index["paths"]["api/v1"].is_object());
    let doc = t.get(&url).await.json();
    let op = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(
        op["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "version": "v1", "kind": "Deployment"})
    );
    assert!(op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
    assert_eq!(
        t.get("/openapi/v3/apis/nope/v1").await.code,
        StatusCode::NOT_FOUND
    );
}
