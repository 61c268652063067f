//! `pods/eviction` honouring PodDisruptionBudgets, with kube's 429 and causes.

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::*;

const PODS: &str = "/api/v1/namespaces/default/pods";
const PDBS: &str = "/apis/policy/v1/namespaces/default/poddisruptionbudgets";

async fn running_pod(t: &T, name: &str) {
    let r = t
        .send(
            Method::POST,
            PODS,
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": {"app": "web"}},
                "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "c", "image": "busybox"}]}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let mut pod = r.json();
    pod["status"] = json!({"phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}]});
    let r = t
        .send(Method::PUT, &format!("{PODS}/{name}/status"), pod)
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
}

async fn set_budget_status(t: &T, allowed: i64, observed: i64) {
    let mut pdb = t.get(&format!("{PDBS}/b")).await.json();
    pdb["status"] = json!({"observedGeneration": observed, "disruptionsAllowed": allowed,
        "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1});
    let r = t.send(Method::PUT, &format!("{PDBS}/b/status"), pdb).await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
}

fn eviction(name: &str) -> Value {
    json!({"apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": name, "namespace": "default"}})
}

async fn evictions_honour_disruption_budgets(t: T) {
    running_pod(&t, "p").await;
    let r = t
        .send(
            Method::POST,
            PDBS,
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {"name": "b"},
                "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());

    // Not yet processed by the controller.
    let r = t
        .send(Method::POST, &format!("{PODS}/p/eviction"), eviction("p"))
        .await;
    assert_eq!(r.code, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    let s = r.json();
    assert_eq!(s["reason"], "TooManyRequests");
    assert_eq!(
        s["message"],
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert_eq!(
        s["details"]["causes"][0],
        json!({"reason": "DisruptionBudget",
            "message": "The disruption budget b is still being processed by the server."})
    );

    // No disruption allowed.
    set_budget_status(&t, 0, 1).await;
    let r = t
        .send(Method::POST, &format!("{PODS}/p/eviction"), eviction("p"))
        .await;
    assert_eq!(r.code, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    assert_eq!(
        r.json()["details"]["causes"][0],
        json!({"reason": "DisruptionBudget",
            "message": "The disruption budget b needs 1 healthy pods and has 1 currently"})
    );
    assert_eq!(t.get(&format!("{PODS}/p")).await.code, StatusCode::OK);

    // The URL's name and the body's must agree.
    let r = t
        .send(
            Method::POST,
            &format!("{PODS}/p/eviction"),
            eviction("other"),
        )
        .await;
    assert_eq!(r.code, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "name in URL does not match name in Eviction object"
    );

    // One disruption allowed: taken, and the pod goes.
    set_budget_status(&t, 1, 1).await;
    let r = t
        .send(Method::POST, &format!("{PODS}/p/eviction"), eviction("p"))
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["status"], "Success");
    assert_eq!(
        t.get(&format!("{PODS}/p")).await.code,
        StatusCode::NOT_FOUND
    );
    let pdb = t.get(&format!("{PDBS}/b")).await.json();
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0);
    assert!(pdb["status"]["disruptedPods"]["p"].is_string(), "{pdb}");
    let cond = &pdb["status"]["conditions"][0];
    assert_eq!(
        (
            cond["type"].as_str(),
            cond["status"].as_str(),
            cond["reason"].as_str()
        ),
        (
            Some("DisruptionAllowed"),
            Some("False"),
            Some("InsufficientPods")
        )
    );

    // A pending pod is not guarded.
    let r = t
        .send(
            Method::POST,
            PODS,
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "pending", "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let r = t
        .send(
            Method::POST,
            &format!("{PODS}/pending/eviction"),
            eviction("pending"),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    assert_eq!(
        t.get(&format!("{PODS}/pending")).await.code,
        StatusCode::NOT_FOUND
    );
    // Missing pod.
    let r = t
        .send(
            Method::POST,
            &format!("{PODS}/nope/eviction"),
            eviction("nope"),
        )
        .await;
    assert_eq!(r.code, StatusCode::NOT_FOUND, "{}", r.text());
}

backends!(evictions_honour_disruption_budgets);
