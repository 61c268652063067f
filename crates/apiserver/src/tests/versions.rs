//! Kinds served at two versions over one storage (rest/convert.rs): events.k8s.io/v1 Events
//! over core/v1, autoscaling/v1 HorizontalPodAutoscalers over autoscaling/v2 — each read,
//! write, list and watch at either version sees the same objects with kube's field mapping.

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::lists::{open_watch, read_events};
use super::*;

const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
const CORE_EVENTS: &str = "/api/v1/namespaces/default/events";
const HPA_V1: &str = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers";
const HPA_V2: &str = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers";

async fn events_at_both_versions(t: T) {
    let r = t
        .send(
            Method::POST,
            EVENTS,
            json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
                "metadata": {"name": "e1"}, "eventTime": "2026-12-06T00:00:00.000000Z",
                "regarding": {"kind": "Pod", "name": "p", "namespace": "default"},
                "note": "pulled", "reason": "Pulled", "type": "Normal", "action": "Pull",
                "reportingController": "kubelet", "reportingInstance": "n1"}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let created = r.json();
    assert_eq!(created["apiVersion"], "events.k8s.io/v1");
    assert_eq!(created["note"], "pulled");
    assert!(created.get("message").is_none(), "{created}");
    let core = t.get(&format!("{CORE_EVENTS}/e1")).await.json();
    assert_eq!(core["apiVersion"], "v1");
    assert_eq!(core["message"], "pulled");
    assert_eq!(core["involvedObject"]["name"], "p");
    assert_eq!(core["reportingComponent"], "kubelet");
    assert_eq!(core["action"], "Pull");
    assert_eq!(core["metadata"]["uid"], created["metadata"]["uid"]);

    // A core event read at events.k8s.io/v1, in a list.
    let r = t
        .send(
            Method::POST,
            CORE_EVENTS,
            json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e2"},
                "involvedObject": {"kind": "Pod", "name": "q"}, "message": "killed",
                "reason": "Killing", "count": 4, "source": {"component": "kubelet"}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let list = t.get(EVENTS).await.json();
    assert_eq!(list["kind"], "EventList");
    assert_eq!(list["apiVersion"], "events.k8s.io/v1");
    let e2 = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["metadata"]["name"] == "e2")
        .unwrap()
        .clone();
    assert_eq!(e2["note"], "killed");
    assert_eq!(e2["deprecatedCount"], 4);
    assert_eq!(e2["deprecatedSource"]["component"], "kubelet");
    assert_eq!(e2["regarding"]["name"], "q");

    // A merge patch at events.k8s.io/v1 lands in core's fields.
    let r = t
        .patch(
            &format!("{EVENTS}/e2"),
            "application/merge-patch+json",
            r#"{"note":"killed again","deprecatedCount":5}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["note"], "killed again");
    let core = t.get(&format!("{CORE_EVENTS}/e2")).await.json();
    assert_eq!(
        (core["message"].as_str(), core["count"].as_i64()),
        (Some("killed again"), Some(5))
    );

    // A watch at events.k8s.io/v1 sees core writes converted.
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut body = open_watch(&t, &format!("{EVENTS}?watch=1&resourceVersion={rv}")).await;
    t.send(
        Method::POST,
        CORE_EVENTS,
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e3"},
            "involvedObject": {"kind": "Pod", "name": "r"}, "message": "watched"}),
    )
    .await;
    let seen = read_events(&mut body, 2).await;
    let added = seen
        .iter()
        .find(|e| e["object"]["metadata"]["name"] == "e3")
        .unwrap();
    assert_eq!(added["type"], "ADDED");
    assert_eq!(added["object"]["apiVersion"], "events.k8s.io/v1");
    assert_eq!(added["object"]["note"], "watched");

    // Deleting at either version deletes the one object.
    let r = t
        .req(
            Method::DELETE,
            &format!("{EVENTS}/e1"),
            "application/json",
            "",
            Some(admin()),
            None,
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    assert_eq!(
        t.get(&format!("{CORE_EVENTS}/e1")).await.code,
        StatusCode::NOT_FOUND
    );
}

backends!(events_at_both_versions);

#[tokio::test]
async fn hpa_v1_is_stored_as_v2() {
    let t = server().await;
    let r = t
        .send(
            Method::POST,
            HPA_V1,
            json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "web"},
                "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                    "maxReplicas": 3, "targetCPUUtilizationPercentage": 50}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let v1 = r.json();
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
    assert_eq!(v1["spec"]["minReplicas"], 1, "v1's default");
    let v2 = t.get(&format!("{HPA_V2}/web")).await.json();
    assert_eq!(
        v2["spec"]["metrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 50}}}])
    );
    // A v2 object with more than v1 can say: the rest in kube's annotations.
    let mut v2 = v2;
    v2["spec"]["metrics"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "Pods", "pods": {"metric": {"name": "qps"},
            "target": {"type": "AverageValue", "averageValue": "10"}}}));
    let r = t.send(Method::PUT, &format!("{HPA_V2}/web"), v2).await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    let v1 = t.get(&format!("{HPA_V1}/web")).await.json();
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
    assert_eq!(
        v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/metrics"],
        r#"[{"pods":{"metricName":"qps","targetAverageValue":"10"},"type":"Pods"}]"#
    );
    // An update at v1 keeps the other metric (it travels in the annotation).
    let mut put = v1.clone();
    put["spec"]["targetCPUUtilizationPercentage"] = json!(70);
    let r = t.send(Method::PUT, &format!("{HPA_V1}/web"), put).await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    let v2 = t.get(&format!("{HPA_V2}/web")).await.json();
    let metrics = v2["spec"]["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 2, "{v2}");
    assert!(metrics
        .iter()
        .any(|m| m["resource"]["target"]["averageUtilization"] == 70));
    assert!(v2["metadata"].get("annotations").is_none(), "{v2}");
    // Listed at v1.
    let list = t.get(HPA_V1).await.json();
    assert_eq!(
        (
            list["kind"].as_str(),
            list["items"][0]["spec"]["targetCPUUtilizationPercentage"].as_i64()
        ),
        (Some("HorizontalPodAutoscalerList"), Some(70))
    );
    // Discovery: autoscaling serves v2 (preferred) and v1; events.k8s.io/v1 serves events.
    let group = t.get("/apis/autoscaling").await.json();
    assert_eq!(group["preferredVersion"]["version"], "v2");
    assert_eq!(group["versions"][1]["version"], "v1");
    let ev = t.get("/apis/events.k8s.io/v1").await.json();
    assert!(
        ev["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "events"),
        "{ev}"
    );
}

/// Server-side apply at a version served over another's storage: `kubectl apply
/// --server-side` of an autoscaling/v1 HPA creates it (stored as v2), a second apply by the same
/// manager changes its field, the managedFields entry names autoscaling/v1, and another
/// manager's different value is a 409 naming the first (forced, it takes the field).
#[tokio::test]
async fn server_side_apply_at_autoscaling_v1() {
    let t = server().await;
    let hpa = |pct: u32| {
        format!(
            "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: web\n\
             spec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}\n  \
             maxReplicas: 4\n  targetCPUUtilizationPercentage: {pct}\n"
        )
    };
    let apply = |manager: &str, force: bool| {
        format!(
            "{HPA_V1}/web?fieldManager={manager}{}",
            if force { "&force=true" } else { "" }
        )
    };
    let r = t
        .patch(
            &apply("ops", false),
            "application/apply-patch+yaml",
            &hpa(50),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["apiVersion"], "autoscaling/v1");
    assert_eq!(r.json()["spec"]["targetCPUUtilizationPercentage"], 50);
    let r = t
        .patch(
            &apply("ops", false),
            "application/apply-patch+yaml",
            &hpa(60),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    let v1 = r.json();
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
    let entries = v1["metadata"]["managedFields"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(
        (
            &entries[0]["manager"],
            &entries[0]["operation"],
            &entries[0]["apiVersion"]
        ),
        (&json!("ops"), &json!("Apply"), &json!("autoscaling/v1"))
    );
    let v2 = t.get(&format!("{HPA_V2}/web")).await.json();
    assert_eq!(
        v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        60
    );
    let r = t
        .patch(
            &apply("other", false),
            "application/apply-patch+yaml",
            &hpa(70),
        )
        .await;
    assert_eq!(r.code, StatusCode::CONFLICT, "{}", r.text());
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains(r#"conflict with "ops": .spec.targetCPUUtilizationPercentage"#),
        "{}",
        r.text()
    );
    let r = t
        .patch(
            &apply("other", true),
            "application/apply-patch+yaml",
            &hpa(70),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["spec"]["targetCPUUtilizationPercentage"], 70);
}

/// events.k8s.io/v1 field selectors take that version's labels (`regarding.name`,
/// `reportingController`, …) mapped to core's fields, as kube's field label conversion
/// does; core's own `involvedObject.*` labels are not among them.
#[tokio::test]
async fn events_field_selectors_at_events_k8s_io() {
    let t = server().await;
    for (name, target, component) in [("a1", "p", "kubelet"), ("a2", "q", "scheduler")] {
        let r = t
            .send(
                Method::POST,
                CORE_EVENTS,
                json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": name},
                    "involvedObject": {"kind": "Pod", "name": target, "namespace": "default"},
                    "reason": "Seen", "type": "Normal", "message": "m",
                    "source": {"component": component}, "reportingComponent": component}),
            )
            .await;
        assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    }
    let names = |list: &serde_json::Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    for (selector, want) in [
        ("regarding.name%3Dq", vec!["a2"]),
        ("regarding.name!%3Dq,regarding.kind%3DPod", vec!["a1"]),
        ("reportingController%3Dkubelet", vec!["a1"]),
        ("source%3Dscheduler", vec!["a2"]),
        ("type%3DNormal,reason%3DSeen,metadata.name%3Da1", vec!["a1"]),
        ("regarding.namespace%3Ddefault", vec!["a1", "a2"]),
    ] {
        let r = t.get(&format!("{EVENTS}?fieldSelector={selector}")).await;
        assert_eq!(r.code, StatusCode::OK, "{selector}: {}", r.text());
        let list = r.json();
        assert_eq!(list["kind"], "EventList");
        assert_eq!(names(&list), want, "{selector}");
    }
    for bad in ["involvedObject.name", "note", "regarding.foo"] {
        let r = t.get(&format!("{EVENTS}?fieldSelector={bad}%3Dq")).await;
        assert_eq!(r.code, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(
            r.json()["message"],
            format!("field label not supported: {bad}")
        );
        let r = t
            .get(&format!("{EVENTS}?watch=1&fieldSelector={bad}%3Dq"))
            .await;
        assert_eq!(r.code, StatusCode::BAD_REQUEST, "watch {bad}");
    }
    // core/v1 keeps its own labels.
    let core = t
        .get(&format!(
            "{CORE_EVENTS}?fieldSelector=involvedObject.name%3Dq"
        ))
        .await
        .json();
    assert_eq!(names(&core), vec!["a2"]);
    // A watch selects by the same labels.
    let mut body = open_watch(
        &t,
        &format!("{EVENTS}?watch=1&fieldSelector=regarding.name%3Dq"),
    )
    .await;
    let seen = read_events(&mut body, 1).await;
    assert_eq!(seen[0]["object"]["metadata"]["name"], "a2");
    assert_eq!(seen[0]["object"]["regarding"]["name"], "q");
}

/// kube's `SetDefaults_HorizontalPodAutoscaler` (autoscaling/v2): `minReplicas` 1, a CPU
/// 80 % utilization metric when there are none, a given behavior completed (scale-down's
/// stabilization window stays unset: the controller's 300 s applies); an autoscaling/v1
/// object reads back with the defaulted CPU target and the behavior in kube's annotation
/// (the internal type marshalled: Go field names).
#[tokio::test]
async fn hpa_defaults_as_kube() {
    let t = server().await;
    let target = json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"});
    let r = t
        .send(
            Method::POST,
            HPA_V2,
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "plain"},
                "spec": {"scaleTargetRef": target, "maxReplicas": 3}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let spec = &r.json()["spec"];
    assert_eq!(spec["minReplicas"], 1);
    assert_eq!(
        spec["metrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 80}}}])
    );
    assert!(spec.get("behavior").is_none(), "{spec}");

    let r = t
        .send(
            Method::POST,
            HPA_V2,
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "tuned"},
                "spec": {"scaleTargetRef": target, "minReplicas": 2, "maxReplicas": 5,
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    let behavior = r.json()["spec"]["behavior"].clone();
    assert_eq!(
        behavior,
        json!({
            "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15}]},
            "scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max", "policies": [
                {"type": "Percent", "value": 100, "periodSeconds": 15}]}
        })
    );
    // A merge patch that drops the policies and the window gets them defaulted again
    // (scale-down's window is not defaulted).
    let r = t
        .patch(
            &format!("{HPA_V2}/tuned"),
            "application/merge-patch+json",
            r#"{"spec":{"behavior":{"scaleUp":{"policies":null},"scaleDown":{"stabilizationWindowSeconds":null,"selectPolicy":"Min"}}}}"#,
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    let behavior = r.json()["spec"]["behavior"].clone();
    assert_eq!(behavior["scaleUp"]["policies"].as_array().unwrap().len(), 2);
    assert_eq!(
        behavior["scaleDown"],
        json!({"selectPolicy": "Min", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]})
    );

    // At autoscaling/v1: the defaulted CPU target, and the behavior as kube's annotation.
    let v1 = t.get(&format!("{HPA_V1}/plain")).await.json();
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 80);
    assert_eq!(v1["spec"]["minReplicas"], 1);
    assert!(v1["metadata"].get("annotations").is_none(), "{v1}");
    let v1 = t.get(&format!("{HPA_V1}/tuned")).await.json();
    assert_eq!(
        v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/behavior"],
        concat!(
            r#"{"ScaleUp":{"StabilizationWindowSeconds":0,"SelectPolicy":"Max","Policies":["#,
            r#"{"Type":"Pods","Value":4,"PeriodSeconds":15},{"Type":"Percent","Value":100,"PeriodSeconds":15}],"Tolerance":null},"#,
            r#""ScaleDown":{"StabilizationWindowSeconds":null,"SelectPolicy":"Min","Policies":["#,
            r#"{"Type":"Percent","Value":100,"PeriodSeconds":15}],"Tolerance":null}}"#
        )
    );
    // An update at v1 that carries the annotation keeps the behavior.
    let mut put = v1.clone();
    put["spec"]["maxReplicas"] = json!(6);
    let r = t.send(Method::PUT, &format!("{HPA_V1}/tuned"), put).await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text());
    let v2 = t.get(&format!("{HPA_V2}/tuned")).await.json();
    assert_eq!(v2["spec"]["maxReplicas"], 6);
    assert_eq!(v2["spec"]["behavior"], behavior);
    assert!(v2["metadata"].get("annotations").is_none(), "{v2}");

    // Created at v1 with no target: v1's pseudo-default, CPU at 80 %.
    let r = t
        .send(
            Method::POST,
            HPA_V1,
            json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "old"}, "spec": {"scaleTargetRef": target, "maxReplicas": 2}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["spec"]["targetCPUUtilizationPercentage"], 80);
}
