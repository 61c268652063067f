//! Values of the wrong JSON type in built-in bodies: kube decodes them into the Go structs and
//! refuses what does not fit (400 on create and update, 422 on patches, structured-merge-diff's
//! error on apply) — nothing is stored. What kube's types take is taken: quantities as numbers,
//! int-or-string ports, `null`, partial objects.

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::*;

const PODS: &str = "/api/v1/namespaces/default/pods";
const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";

fn deployment(name: &str, replicas: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
}

#[tokio::test]
async fn wrong_types_on_create_are_kubes_400_and_store_nothing() {
    let t = server().await;
    let before = t.store.revision().await.unwrap();
    let cases = [
        (
            PODS,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "busybox", "command": [true]}]}}),
            "Pod in version \"v1\" cannot be handled as a Pod: json: cannot unmarshal bool into Go struct field Container.spec.containers.command of type string",
        ),
        (
            DEPLOYS,
            deployment("d", json!("3")),
            "Deployment in version \"v1\" cannot be handled as a Deployment: json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32",
        ),
        (
            PODS,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": 1}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
            "Pod in version \"v1\" cannot be handled as a Pod: json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string",
        ),
        (
            PODS,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"containers": {"name": "c"}}}),
            "Pod in version \"v1\" cannot be handled as a Pod: json: cannot unmarshal object into Go struct field PodSpec.spec.containers of type []v1.Container",
        ),
        (
            PODS,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "busybox",
                    "ports": [{"containerPort": 80.5}]}]}}),
            "Pod in version \"v1\" cannot be handled as a Pod: json: cannot unmarshal number 80.5 into Go struct field ContainerPort.spec.containers.ports.containerPort of type int32",
        ),
        (
            PODS,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "busybox",
                    "resources": {"limits": {"cpu": true}}}]}}),
            "Pod in version \"v1\" cannot be handled as a Pod: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ),
    ];
    for (uri, body, want) in cases {
        let r = t.send(Method::POST, uri, body).await;
        assert_eq!(r.code, StatusCode::BAD_REQUEST, "{want}: {}", r.text());
        let s = r.json();
        assert_eq!(s["reason"], "BadRequest");
        assert_eq!(s["message"], want);
    }
    assert_eq!(t.store.revision().await.unwrap(), before, "nothing stored");
}

#[tokio::test]
async fn what_kubes_types_accept_is_stored() {
    let t = server().await;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ok", "annotations": null},
        "spec": {"nodeSelector": null, "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "1"],
                "ports": [{"containerPort": 8080, "name": "http"}],
                "livenessProbe": {"httpGet": {"port": "http"}},
                "readinessProbe": {"httpGet": {"port": 8080}},
                "resources": {"limits": {"cpu": 1, "memory": "64Mi"}, "requests": {"cpu": 0.5}}}]}});
    let r = t.send(Method::POST, PODS, pod).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let r = t
        .send(Method::POST, DEPLOYS, deployment("d", json!(2)))
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    // A partial merge patch: only the merged result is decoded.
    let r = t
        .patch(
            &format!("{DEPLOYS}/d"),
            "application/merge-patch+json",
            r#"{"spec":{"replicas":5}}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    // A partial apply configuration.
    let r = t
        .patch(
            &format!("{DEPLOYS}/d?fieldManager=m&force=true"),
            "application/apply-patch+yaml",
            r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"replicas":4}}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["spec"]["replicas"], 4);
}

#[tokio::test]
async fn wrong_types_on_update_patch_and_apply_are_refused() {
    let t = server().await;
    let r = t
        .send(Method::POST, DEPLOYS, deployment("d", json!(1)))
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let r = t.send(Method::POST, CMS, cm("c", json!({}))).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let before = t.store.revision().await.unwrap();

    let mut c = r.json();
    c["data"] = json!({"k": 1});
    let r = t.send(Method::PUT, &format!("{CMS}/c"), c).await;
    assert_eq!(r.code, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: json: cannot unmarshal number into Go struct field ConfigMap.data of type string"
    );

    for ctype in [
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
    ] {
        let r = t
            .patch(
                &format!("{DEPLOYS}/d"),
                ctype,
                r#"{"spec":{"replicas":"3"}}"#,
            )
            .await;
        assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
        let s = r.json();
        let msg = s["message"].as_str().unwrap();
        assert!(
            msg.starts_with(" \"\" is invalid: patch: Invalid value: \"{")
                && msg.ends_with("\": json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"),
            "{msg}"
        );
        assert_eq!(s["details"]["causes"][0]["field"], "patch");
    }

    let r = t
        .patch(
            &format!("{DEPLOYS}/d?fieldManager=m"),
            "application/apply-patch+yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n  namespace: default\nspec:\n  replicas: three\n",
        )
        .await;
    assert_eq!(r.code, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text());
    let s = r.json();
    assert_eq!(
        s["message"],
        "failed to create typed patch object (default/d; apps/v1, Kind=Deployment): .spec.replicas: expected numeric (int or float), got string"
    );
    assert!(s.get("reason").is_none(), "{s}");
    assert_eq!(t.store.revision().await.unwrap(), before, "nothing stored");
    assert_eq!(
        t.get(&format!("{DEPLOYS}/d")).await.json()["spec"]["replicas"],
        1
    );
}
