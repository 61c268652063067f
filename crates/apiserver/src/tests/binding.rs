//! `pods/binding`: the scheduler's write (kube's `BindingREST`).

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::server;

#[tokio::test]
async fn binding_assigns_the_node_and_the_podscheduled_condition_once() {
    let t = server().await;
    let pods = "/api/v1/namespaces/default/pods";
    let r = t
        .send(
            Method::POST,
            pods,
            json!({"metadata": {"name": "p"},
                   "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let binding = |node: &str| {
        json!({"apiVersion": "v1", "kind": "Binding",
               "metadata": {"name": "p", "annotations": {"a": "b"}},
               "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
    };
    let r = t
        .send(Method::POST, &format!("{pods}/p/binding"), binding("n1"))
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
               "status": "Success", "code": 201})
    );
    let pod = t.get(&format!("{pods}/p")).await.json();
    assert_eq!(pod["spec"]["nodeName"], "n1");
    assert_eq!(pod["metadata"]["annotations"]["a"], "b");
    let conds = pod["status"]["conditions"].as_array().unwrap();
    assert_eq!(conds.len(), 1);
    assert_eq!(conds[0]["type"], "PodScheduled");
    assert_eq!(conds[0]["status"], "True");
    assert!(conds[0]["lastTransitionTime"].is_string());

    // A second binding: kube's 409 on pods/binding.
    let r = t
        .send(Method::POST, &format!("{pods}/p/binding"), binding("n2"))
        .await;
    assert_eq!(r.code, StatusCode::CONFLICT);
    let s = r.json();
    assert_eq!(
        s["message"],
        "Operation cannot be fulfilled on pods/binding \"p\": pod p is already assigned to node \"n1\""
    );
    assert_eq!(s["reason"], "Conflict");
    assert_eq!(s["details"]["kind"], "pods/binding");
    assert_eq!(
        t.get(&format!("{pods}/p")).await.json()["spec"]["nodeName"],
        "n1"
    );

    // No such pod: 404 on the pod; a missing target: 422; a name mismatch: 400.
    let r = t
        .send(Method::POST, &format!("{pods}/q/binding"), {
            let mut b = binding("n1");
            b["metadata"]["name"] = json!("q");
            b
        })
        .await;
    assert_eq!(r.code, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["message"], "pods \"q\" not found");
    let r = t
        .send(
            Method::POST,
            &format!("{pods}/p/binding"),
            json!({"kind": "Binding", "metadata": {"name": "p"}, "target": {}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "Binding \"p\" is invalid: target.name: Required value"
    );
    let r = t
        .send(Method::POST, &format!("{pods}/q/binding"), binding("n1"))
        .await;
    assert_eq!(r.code, StatusCode::BAD_REQUEST);
    // GET is not a verb of the subresource.
    assert_eq!(
        t.get(&format!("{pods}/p/binding")).await.code,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn priority_admission_resolves_the_class() {
    let t = server().await;
    let pods = "/api/v1/namespaces/default/pods";
    let pod = |name: &str, class: Option<&str>| {
        let mut p = json!({"metadata": {"name": name},
               "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        if let Some(c) = class {
            p["spec"]["priorityClassName"] = json!(c);
        }
        p
    };
    // No default class: priority 0, no class name.
    let r = t.send(Method::POST, pods, pod("a", None)).await;
    assert_eq!(r.json()["spec"]["priority"], 0);
    assert!(r.json()["spec"].get("priorityClassName").is_none());
    let r = t.send(Method::POST, pods, pod("b", Some("high"))).await;
    assert_eq!(r.code, StatusCode::FORBIDDEN);
    assert_eq!(
        r.json()["message"],
        "pods \"b\" is forbidden: no PriorityClass with name high was found"
    );
    let classes = "/apis/scheduling.k8s.io/v1/priorityclasses";
    for (name, value, default) in [("high", 1000, false), ("normal", 10, true)] {
        let r = t
            .send(
                Method::POST,
                classes,
                json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                       "metadata": {"name": name}, "value": value, "globalDefault": default}),
            )
            .await;
        assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    }
    let r = t.send(Method::POST, pods, pod("b", Some("high"))).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["spec"]["priority"], 1000);
    let r = t.send(Method::POST, pods, pod("c", None)).await;
    assert_eq!(r.json()["spec"]["priority"], 10);
    assert_eq!(r.json()["spec"]["priorityClassName"], "normal");
    let mut p = pod("d", Some("high"));
    p["spec"]["priority"] = json!(5);
    let r = t.send(Method::POST, pods, p).await;
    assert_eq!(r.code, StatusCode::FORBIDDEN);
    assert_eq!(
        r.json()["message"],
        "pods \"d\" is forbidden: the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name"
    );
}
