//! Admission: ServiceAccount (default SA, token volume), LimitRanger, ResourceQuota,
//! impersonation.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use super::T;
use crate::{ApiServer, Config};

/// A server with kube's ServiceAccount lookup on (no controller: tests create the SAs).
async fn strict() -> T {
    let fixture = barge_datastore::testing::Backend::Memory.open().await;
    let store = fixture.store.clone();
    let api = ApiServer::new(store.clone(), Config::default());
    api.bootstrap().await.unwrap();
    T {
        app: api.router(),
        store,
        _fixture: fixture,
    }
}

const PODS: &str = "/api/v1/namespaces/default/pods";
const SAS: &str = "/api/v1/namespaces/default/serviceaccounts";

fn pod(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c", "image": "busybox"}]);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

#[tokio::test]
async fn pod_without_its_service_account_is_forbidden() {
    let t = strict().await;
    let r = t
        .send(
            Method::POST,
            PODS,
            pod("p", json!({"serviceAccountName": "robot"})),
        )
        .await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "pods \"p\" is forbidden: error looking up service account default/robot: serviceaccount \"robot\" not found"
    );
    assert_eq!(r.json()["reason"], "Forbidden");
    // `default` is waited for a while, then refused the same way.
    let started = std::time::Instant::now();
    let r = t.send(Method::POST, PODS, pod("p", json!({}))).await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    assert_eq!(
        r.json()["message"],
        "pods \"p\" is forbidden: error looking up service account default/default: serviceaccount \"default\" not found"
    );
    assert_eq!(
        t.get(&format!("{PODS}/p")).await.code,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn pod_gets_the_default_service_account_and_its_token_volume() {
    let t = strict().await;
    let r = t
        .send(
            Method::POST,
            SAS,
            json!({"metadata": {"name": "default"}, "imagePullSecrets": [{"name": "regcred"}]}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let r = t
        .send(
            Method::POST,
            PODS,
            pod(
                "p",
                json!({"initContainers": [{"name": "i", "image": "busybox"}],
                       "containers": [{"name": "a", "image": "busybox"},
                                      {"name": "b", "image": "busybox"}]}),
            ),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let p = t.get(&format!("{PODS}/p")).await.json();
    let spec = &p["spec"];
    assert_eq!(spec["serviceAccountName"], "default");
    assert_eq!(spec["serviceAccount"], "default");
    assert_eq!(spec["imagePullSecrets"], json!([{"name": "regcred"}]));
    let vols = spec["volumes"].as_array().unwrap();
    assert_eq!(vols.len(), 1);
    let name = vols[0]["name"].as_str().unwrap();
    assert!(
        name.starts_with("kube-api-access-") && name.len() == "kube-api-access-".len() + 5,
        "{name}"
    );
    assert_eq!(
        vols[0]["projected"],
        json!({"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
        ]})
    );
    let mount = json!([{"name": name, "readOnly": true,
                        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]);
    assert_eq!(spec["initContainers"][0]["volumeMounts"], mount);
    assert_eq!(spec["containers"][0]["volumeMounts"], mount);
    assert_eq!(spec["containers"][1]["volumeMounts"], mount);
}

#[tokio::test]
async fn automount_false_on_the_pod_or_its_service_account_skips_the_token() {
    let t = strict().await;
    t.send(Method::POST, SAS, json!({"metadata": {"name": "default"}}))
        .await;
    t.send(
        Method::POST,
        SAS,
        json!({"metadata": {"name": "quiet"}, "automountServiceAccountToken": false}),
    )
    .await;
    let r = t
        .send(
            Method::POST,
            PODS,
            pod("a", json!({"automountServiceAccountToken": false})),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    assert!(r.json()["spec"].get("volumes").is_none(), "{}", r.text());
    let r = t
        .send(
            Method::POST,
            PODS,
            pod("b", json!({"serviceAccountName": "quiet"})),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    assert!(r.json()["spec"].get("volumes").is_none(), "{}", r.text());
    // The pod's true wins over the ServiceAccount's false.
    let r = t
        .send(
            Method::POST,
            PODS,
            pod(
                "c",
                json!({"serviceAccountName": "quiet", "automountServiceAccountToken": true}),
            ),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["spec"]["volumes"].as_array().unwrap().len(), 1);
}

const LIMITS: &str = "/api/v1/namespaces/default/limitranges";
const QUOTAS: &str = "/api/v1/namespaces/default/resourcequotas";

fn with_resources(name: &str, resources: Value) -> Value {
    pod(
        name,
        json!({"containers": [{"name": "app", "image": "busybox", "resources": resources}]}),
    )
}

#[tokio::test]
async fn limit_range_defaults_and_constraints() {
    let t = super::server().await;
    let r = t
        .send(
            Method::POST,
            LIMITS,
            json!({"metadata": {"name": "lr"}, "spec": {"limits": [
                {"type": "Container", "max": {"cpu": "1"}, "min": {"cpu": "100m"},
                 "defaultRequest": {"memory": "64Mi"}, "default": {"memory": "128Mi"},
                 "maxLimitRequestRatio": {"cpu": "4"}},
                {"type": "Pod", "max": {"memory": "1Gi"}}
            ]}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    // The LimitRange's own defaults are stored (SetDefaults_LimitRangeItem).
    assert_eq!(
        r.json()["spec"]["limits"][0]["defaultRequest"],
        json!({"cpu": "1", "memory": "64Mi"})
    );
    // Defaults: the memory pair, and cpu from max (default) → request (defaultRequest).
    let r = t
        .send(Method::POST, PODS, with_resources("a", json!({})))
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let p = r.json();
    assert_eq!(
        p["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "1", "memory": "128Mi"}, "requests": {"cpu": "1", "memory": "64Mi"}})
    );
    assert_eq!(
        p["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app"
    );
    // max per Container.
    let r = t
        .send(
            Method::POST,
            PODS,
            with_resources("b", json!({"limits": {"cpu": "2"}})),
        )
        .await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "pods \"b\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"
    );
    // Two violations: kube's aggregate.
    let r = t
        .send(
            Method::POST,
            PODS,
            with_resources(
                "c",
                json!({"requests": {"cpu": "50m"}, "limits": {"cpu": "1", "memory": "2Gi"}}),
            ),
        )
        .await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "pods \"c\" is forbidden: [minimum cpu usage per Container is 100m, but request is 50m, cpu max limit to request ratio per Container is 4, but provided ratio is 20.000000, maximum memory usage per Pod is 1Gi, but limit is 2Gi]"
    );
    assert_eq!(
        t.get(&format!("{PODS}/c")).await.code,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn resource_quota_counts_and_compute() {
    let t = super::server().await;
    let r = t
        .send(
            Method::POST,
            QUOTAS,
            json!({"metadata": {"name": "q"}, "spec": {"hard": {
                "pods": "2", "requests.cpu": "1", "configmaps": "1",
                "count/deployments.apps": "0"}}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    // cpu is constrained: a pod must request it.
    let r = t
        .send(Method::POST, PODS, with_resources("a", json!({})))
        .await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "pods \"a\" is forbidden: failed quota: q: must specify requests.cpu"
    );
    let ok = t
        .send(
            Method::POST,
            PODS,
            with_resources("a", json!({"requests": {"cpu": "600m"}})),
        )
        .await;
    assert_eq!(ok.code, StatusCode::CREATED, "{}", ok.text());
    let r = t
        .send(
            Method::POST,
            PODS,
            with_resources("b", json!({"requests": {"cpu": "500m"}})),
        )
        .await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "pods \"b\" is forbidden: exceeded quota: q, requested: requests.cpu=500m, used: requests.cpu=600m, limited: requests.cpu=1"
    );
    // Object counts.
    let r = t
        .send(Method::POST, super::CMS, super::cm("one", json!({})))
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let r = t
        .send(Method::POST, super::CMS, super::cm("two", json!({})))
        .await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "configmaps \"two\" is forbidden: exceeded quota: q, requested: configmaps=1, used: configmaps=1, limited: configmaps=1"
    );
    let r = t
        .send(
            Method::POST,
            "/apis/apps/v1/namespaces/default/deployments",
            json!({"metadata": {"name": "d"}, "spec": {
                "selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}},
                             "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "deployments.apps \"d\" is forbidden: exceeded quota: q, requested: count/deployments.apps=1, used: count/deployments.apps=0, limited: count/deployments.apps=0"
    );
}

fn jane() -> crate::Identity {
    crate::Identity {
        user: "jane".into(),
        groups: vec!["system:authenticated".into()],
    }
}

#[tokio::test]
async fn impersonation_is_authorized_by_rbac() {
    let t = super::server().await;
    let whoami = |who: crate::Identity, headers: Vec<(&'static str, &'static str)>| {
        let app = t.app.clone();
        async move {
            use tower::ServiceExt;
            let mut r = axum::http::Request::builder()
                .method(Method::POST)
                .uri("/apis/authentication.k8s.io/v1/selfsubjectreviews")
                .header("content-type", "application/json")
                .body(axum::body::Body::from("{}"))
                .unwrap();
            for (k, v) in headers {
                r.headers_mut().append(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            r.extensions_mut().insert(who);
            let resp = app.oneshot(r).await.unwrap();
            let code = resp.status();
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            (code, serde_json::from_slice::<Value>(&body).unwrap())
        }
    };
    // jane may not impersonate.
    let (code, body) = whoami(jane(), vec![("Impersonate-User", "bob")]).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        body["message"],
        "users \"bob\" is forbidden: User \"jane\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );
    // An admin may: bob, with the groups given (plus system:authenticated).
    let (code, body) = whoami(
        super::admin(),
        vec![("Impersonate-User", "bob"), ("Impersonate-Group", "devs")],
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["status"]["userInfo"],
        json!({"username": "bob", "groups": ["devs", "system:authenticated"]})
    );
    // A ServiceAccount gets its groups.
    let (_, body) = whoami(
        super::admin(),
        vec![("Impersonate-User", "system:serviceaccount:ns1:bot")],
    )
    .await;
    assert_eq!(
        body["status"]["userInfo"]["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:ns1",
            "system:authenticated"
        ])
    );
    // The uid and extras are kept (keys lowercased and unescaped, values in order).
    let (code, body) = whoami(
        super::admin(),
        vec![
            ("Impersonate-User", "bob"),
            ("Impersonate-Uid", "1234"),
            ("Impersonate-Extra-Scopes", "view"),
            ("Impersonate-Extra-Scopes", "edit"),
            ("Impersonate-Extra-Acme.com%2Fteam", "blue"),
        ],
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["status"]["userInfo"],
        json!({"username": "bob", "uid": "1234", "groups": ["system:authenticated"],
            "extra": {"scopes": ["view", "edit"], "acme.com/team": ["blue"]}})
    );
    // Groups without a user: kube's 500.
    let (code, _) = whoami(super::admin(), vec![("Impersonate-Group", "devs")]).await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    // A ClusterRole granting impersonate on users named bob lets jane be bob, not alice; an
    // extra needs its own grant.
    t.send(
        Method::POST,
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        json!({"metadata": {"name": "be-bob"}, "rules": [
            {"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"], "resourceNames": ["bob"]}]}),
    )
    .await;
    let r = t
        .send(
            Method::POST,
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            json!({"metadata": {"name": "jane-be-bob"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "be-bob"},
                   "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "jane"}]}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (code, body) = whoami(jane(), vec![("Impersonate-User", "bob")]).await;
        if code == StatusCode::CREATED {
            assert_eq!(body["status"]["userInfo"]["username"], "bob");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (code, _) = whoami(jane(), vec![("Impersonate-User", "alice")]).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let (code, body) = whoami(
        jane(),
        vec![
            ("Impersonate-User", "bob"),
            ("Impersonate-Extra-Scopes", "view"),
        ],
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        body["message"],
        "userextras.authentication.k8s.io \"view\" is forbidden: User \"jane\" cannot impersonate resource \"userextras/scopes\" in API group \"authentication.k8s.io\" at the cluster scope"
    );
}

#[tokio::test]
async fn quota_is_enforced_on_updates_that_grow_usage() {
    let t = super::server().await;
    let r = t
        .send(
            Method::POST,
            QUOTAS,
            json!({"metadata": {"name": "q"}, "spec": {"hard": {"requests.storage": "2Gi"}}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let pvcs = "/api/v1/namespaces/default/persistentvolumeclaims";
    let claim = |storage: &str| {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c"},
            "spec": {"accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": storage}}}})
    };
    let r = t.send(Method::POST, pvcs, claim("1Gi")).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    // Growing past the quota: only the growth (2Gi) is charged against what is used (1Gi).
    let r = t
        .patch(
            &format!("{pvcs}/c"),
            "application/merge-patch+json",
            r#"{"spec":{"resources":{"requests":{"storage":"3Gi"}}}}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "persistentvolumeclaims \"c\" is forbidden: exceeded quota: q, requested: requests.storage=2Gi, used: requests.storage=1Gi, limited: requests.storage=2Gi"
    );
    let mut put = t.get(&format!("{pvcs}/c")).await.json();
    put["spec"]["resources"]["requests"]["storage"] = json!("4Gi");
    let r = t.send(Method::PUT, &format!("{pvcs}/c"), put).await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text());
    // Within the quota, and updates that do not grow usage, pass.
    let r = t
        .patch(
            &format!("{pvcs}/c"),
            "application/merge-patch+json",
            r#"{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    let r = t
        .patch(
            &format!("{pvcs}/c"),
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"a":"b"}}}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn claims_and_volumes_get_the_protection_finalizers() {
    let t = strict().await;
    let r = t
        .send(
            Method::POST,
            "/api/v1/namespaces/default/persistentvolumeclaims",
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "c"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}}}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    assert_eq!(
        r.json()["metadata"]["finalizers"],
        json!(["kubernetes.io/pvc-protection"])
    );
    let r = t
        .send(
            Method::POST,
            "/api/v1/persistentvolumes",
            json!({"apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": "v"},
                "spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"},
                    "hostPath": {"path": "/tmp/v"}}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    assert_eq!(
        r.json()["metadata"]["finalizers"],
        json!(["kubernetes.io/pv-protection"])
    );
    // Deleted, the claim stays (Terminating) until the finalizer goes.
    let r = t
        .send(
            Method::DELETE,
            "/api/v1/namespaces/default/persistentvolumeclaims/c",
            json!({}),
        )
        .await;
    assert!(r.code.is_success(), "{}", r.text());
    let r = t
        .get("/api/v1/namespaces/default/persistentvolumeclaims/c")
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    assert!(r.json()["metadata"]["deletionTimestamp"].is_string());
}

/// kube's pod defaulting and PrepareForCreate: a container's limits become its requests where
/// it has none, and the pod is stored with its QoS class.
#[tokio::test]
async fn pod_requests_default_to_limits_and_the_qos_class_is_set_at_create() {
    let t = super::server().await;
    let r = t
        .send(
            Method::POST,
            "/api/v1/namespaces/default/pods",
            json!({"metadata": {"name": "g"}, "spec": {"containers": [{"name": "a", "image": "busybox",
                "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}}]}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let p = r.json();
    assert_eq!(
        p["spec"]["containers"][0]["resources"]["requests"],
        json!({"cpu": "500m", "memory": "64Mi"})
    );
    assert_eq!(
        (
            p["status"]["phase"].as_str(),
            p["status"]["qosClass"].as_str()
        ),
        (Some("Pending"), Some("Guaranteed"))
    );
    let r = t
        .send(
            Method::POST,
            "/api/v1/namespaces/default/pods",
            json!({"metadata": {"name": "b"}, "spec": {"containers": [{"name": "a", "image": "busybox"}]}}),
        )
        .await;
    assert_eq!(r.json()["status"]["qosClass"], "BestEffort", "{}", r.text());
}

/// LimitRanger's `PersistentVolumeClaim` items: `min`/`max` storage against the claim's
/// request on create and on update (a resize), every LimitRange's violations in one 403,
/// and a claim being deleted is not checked (its finalizers can go).
#[tokio::test]
async fn claim_storage_within_limit_ranges() {
    let t = super::server().await;
    for (name, item) in [
        (
            "storage",
            json!({"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "2Gi"}}),
        ),
        (
            "ceiling",
            json!({"type": "PersistentVolumeClaim", "max": {"storage": "3Gi"}}),
        ),
    ] {
        let r = t
            .send(
                Method::POST,
                LIMITS,
                json!({"metadata": {"name": name}, "spec": {"limits": [item]}}),
            )
            .await;
        assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    }
    let pvcs = "/api/v1/namespaces/default/persistentvolumeclaims";
    let claim = |name: &str, storage: &str| {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": storage}}}})
    };
    let r = t.send(Method::POST, pvcs, claim("x", "500Mi")).await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "persistentvolumeclaims \"x\" is forbidden: minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"
    );
    // Both LimitRanges' violations (in name order here; kube's lister has none).
    let r = t.send(Method::POST, pvcs, claim("x", "5Gi")).await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "persistentvolumeclaims \"x\" is forbidden: [maximum storage usage per PersistentVolumeClaim is 3Gi, but request is 5Gi, maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi]"
    );
    let r = t.send(Method::POST, pvcs, claim("x", "1Gi")).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    // A resize past the max is refused, one within it passes.
    let r = t
        .patch(
            &format!("{pvcs}/x"),
            "application/merge-patch+json",
            r#"{"spec":{"resources":{"requests":{"storage":"2500Mi"}}}}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "persistentvolumeclaims \"x\" is forbidden: maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 2500Mi"
    );
    let mut put = t.get(&format!("{pvcs}/x")).await.json();
    put["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
    let r = t.send(Method::PUT, &format!("{pvcs}/x"), put).await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    // A tighter LimitRange later does not keep a deleted claim's finalizers on.
    let r = t
        .patch(
            &format!("{LIMITS}/storage"),
            "application/merge-patch+json",
            r#"{"spec":{"limits":[{"type":"PersistentVolumeClaim","max":{"storage":"1Gi"}}]}}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    let r = t
        .patch(
            &format!("{pvcs}/x"),
            "application/merge-patch+json",
            r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text());
    let mut put = t.get(&format!("{pvcs}/x")).await.json();
    put["metadata"]["finalizers"] = json!(["example.com/hold"]);
    put["spec"]["resources"]["requests"]["storage"] = json!("1Gi");
    let r = t.send(Method::PUT, &format!("{pvcs}/x"), put).await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    let r = t
        .send(Method::DELETE, &format!("{pvcs}/x"), json!({}))
        .await;
    assert!(r.code.is_success(), "{}", r.text());
    let r = t
        .patch(
            &format!("{pvcs}/x"),
            "application/merge-patch+json",
            r#"{"metadata":{"finalizers":null}}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
}
