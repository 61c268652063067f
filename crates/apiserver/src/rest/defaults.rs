//! kube-apiserver's defaulting (`SetDefaults_*` of k8s.io/kubernetes `pkg/apis/*/v1`) for the
//! fields clients read back: applied to every create and update, so objects look as they do
//! on a real cluster (a Secret's `type: Opaque`, a Service's `type: ClusterIP`, a Deployment's
//! strategy, a pod template's restart policy, container pull policy, …).
//!
//! Only fields whose absence clients notice are defaulted; allocation (ClusterIPs, node
//! ports) belongs to the Service controller work and is not done here.

use serde_json::{json, Map, Value};

use crate::registry::ResourceInfo;

/// Sets `obj[key]` to `value` if it is absent or null.
fn or_set(obj: &mut Value, key: &str, value: Value) {
    if let Some(m) = obj.as_object_mut() {
        match m.get(key) {
            Some(v) if !v.is_null() => {}
            _ => {
                m.insert(key.into(), value);
            }
        }
    }
}

/// The object at `obj[key]`, created as `{}` when absent.
fn child<'a>(obj: &'a mut Value, key: &str) -> &'a mut Value {
    if !obj[key].is_object() {
        obj[key] = Value::Object(Map::new());
    }
    &mut obj[key]
}

/// Calls `f` on every item of the list `obj[key]`, if there is one (never creates the key).
fn each(obj: &mut Value, key: &str, mut f: impl FnMut(&mut Value)) {
    if let Some(items) = obj.get_mut(key).and_then(Value::as_array_mut) {
        items.iter_mut().for_each(&mut f);
    }
}

/// `SetDefaults_Container` (plus the port protocol).
fn container(c: &mut Value) {
    let image = c["image"].as_str().unwrap_or("").to_string();
    // `:latest` or no tag (and no digest) → Always, else IfNotPresent.
    let last = image.rsplit('/').next().unwrap_or("");
    let latest = !image.contains('@') && (!last.contains(':') || last.ends_with(":latest"));
    or_set(
        c,
        "imagePullPolicy",
        json!(if latest { "Always" } else { "IfNotPresent" }),
    );
    or_set(c, "terminationMessagePath", json!("/dev/termination-log"));
    or_set(c, "terminationMessagePolicy", json!("File"));
    or_set(c, "resources", json!({}));
    each(c, "ports", |p| or_set(p, "protocol", json!("TCP")));
}

/// `SetDefaults_PodSpec` and its containers.
fn pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    or_set(spec, "restartPolicy", json!("Always"));
    or_set(spec, "dnsPolicy", json!("ClusterFirst"));
    or_set(spec, "terminationGracePeriodSeconds", json!(30));
    or_set(spec, "schedulerName", json!("default-scheduler"));
    or_set(spec, "securityContext", json!({}));
    each(spec, "containers", container);
    each(spec, "initContainers", container);
    each(spec, "ephemeralContainers", container);
    // `SetDefaults_Volume`: a volume with no source is an emptyDir.
    each(spec, "volumes", |v| {
        let sources = crate::validation::pod::VOLUME_SOURCES;
        if v.is_object()
            && !sources
                .iter()
                .any(|k| v.get(*k).is_some_and(|x| !x.is_null()))
        {
            v["emptyDir"] = json!({});
        }
    });
}

/// The pod spec of `spec.template`, if there is one (never creates it).
fn pod_template(spec: &mut Value) {
    if let Some(pod) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
        pod_spec(pod);
    }
}

fn job_spec(spec: &mut Value) {
    or_set(spec, "parallelism", json!(1));
    or_set(spec, "completions", json!(1));
    or_set(spec, "backoffLimit", json!(6));
    or_set(spec, "completionMode", json!("NonIndexed"));
    or_set(spec, "suspend", json!(false));
    or_set(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    pod_template(spec);
}

/// A pod's containers and init containers with a limit and no request for a resource get the
/// limit as the request (kube's `SetDefaults_Pod`: pods only, not templates).
fn requests_from_limits(spec: &mut Value) {
    for key in ["containers", "initContainers"] {
        each(spec, key, |c| {
            let Some(limits) = c["resources"]["limits"].as_object().cloned() else {
                return;
            };
            let requests = child(child(c, "resources"), "requests");
            if let Some(r) = requests.as_object_mut() {
                for (k, v) in limits {
                    r.entry(k).or_insert(v);
                }
            }
        });
    }
}

/// Applies kube's defaults for `info`'s kind to `obj`.
pub(crate) fn apply(info: &ResourceInfo, obj: &mut Value) {
    super::custom::defaults(info, obj);
    match (info.group, info.plural) {
        ("", "secrets") => or_set(obj, "type", json!("Opaque")),
        ("", "limitranges") => each(
            child(obj, "spec"),
            "limits",
            crate::admission::limitrange::item_defaults,
        ),
        ("", "services") => {
            let spec = child(obj, "spec");
            or_set(spec, "type", json!("ClusterIP"));
            or_set(spec, "sessionAffinity", json!("None"));
            if spec["type"] != "ExternalName" {
                or_set(spec, "internalTrafficPolicy", json!("Cluster"));
            }
            each(spec, "ports", |p| {
                or_set(p, "protocol", json!("TCP"));
                let port = p["port"].clone();
                or_set(p, "targetPort", port);
            });
        }
        ("", "pods") => {
            let spec = child(obj, "spec");
            pod_spec(spec);
            requests_from_limits(spec);
        }
        ("", "podtemplates") => pod_template(obj),
        ("", "replicationcontrollers") | ("apps", "replicasets") => {
            let spec = child(obj, "spec");
            or_set(spec, "replicas", json!(1));
            pod_template(spec);
        }
        ("apps", "deployments") => {
            let spec = child(obj, "spec");
            or_set(spec, "replicas", json!(1));
            or_set(spec, "revisionHistoryLimit", json!(10));
            or_set(spec, "progressDeadlineSeconds", json!(600));
            let strategy = child(spec, "strategy");
            or_set(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                let ru = child(strategy, "rollingUpdate");
                or_set(ru, "maxUnavailable", json!("25%"));
                or_set(ru, "maxSurge", json!("25%"));
            }
            pod_template(spec);
        }
        ("apps", "statefulsets") => {
            let spec = child(obj, "spec");
            or_set(spec, "replicas", json!(1));
            or_set(spec, "podManagementPolicy", json!("OrderedReady"));
            or_set(spec, "revisionHistoryLimit", json!(10));
            or_set(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            let strategy = child(spec, "updateStrategy");
            or_set(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                or_set(child(strategy, "rollingUpdate"), "partition", json!(0));
            }
            pod_template(spec);
        }
        ("apps", "daemonsets") => {
            let spec = child(obj, "spec");
            or_set(spec, "revisionHistoryLimit", json!(10));
            let strategy = child(spec, "updateStrategy");
            or_set(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                let ru = child(strategy, "rollingUpdate");
                or_set(ru, "maxUnavailable", json!(1));
                or_set(ru, "maxSurge", json!(0));
            }
            pod_template(spec);
        }
        ("autoscaling", "horizontalpodautoscalers") => {
            // kube's SetDefaults_HorizontalPodAutoscaler (autoscaling/v1 and v2).
            let v2 = info.version == "v2";
            let spec = child(obj, "spec");
            or_set(spec, "minReplicas", json!(1));
            if v2 && spec["metrics"].as_array().is_none_or(|m| m.is_empty()) {
                spec["metrics"] = json!([{"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 80}}}]);
            }
            // SetDefaults_HorizontalPodAutoscalerBehavior: only a given behavior is completed.
            if v2 && spec["behavior"].is_object() {
                let b = child(spec, "behavior");
                let up = child(b, "scaleUp");
                or_set(up, "stabilizationWindowSeconds", json!(0));
                or_set(up, "selectPolicy", json!("Max"));
                or_set(
                    up,
                    "policies",
                    json!([{"type": "Pods", "value": 4, "periodSeconds": 15},
                           {"type": "Percent", "value": 100, "periodSeconds": 15}]),
                );
                let down = child(b, "scaleDown");
                or_set(down, "selectPolicy", json!("Max"));
                or_set(
                    down,
                    "policies",
                    json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
                );
            }
        }
        ("batch", "jobs") => job_spec(child(obj, "spec")),
        ("batch", "cronjobs") => {
            let spec = child(obj, "spec");
            or_set(spec, "concurrencyPolicy", json!("Allow"));
            or_set(spec, "suspend", json!(false));
            or_set(spec, "successfulJobsHistoryLimit", json!(3));
            or_set(spec, "failedJobsHistoryLimit", json!(1));
            if let Some(job) = spec.get_mut("jobTemplate").and_then(|t| t.get_mut("spec")) {
                pod_template(job);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(group: &str, plural: &str) -> ResourceInfo {
        crate::registry::Registry::builtin()
            .lookup(group, "v1", plural)
            .unwrap()
            .clone()
    }

    #[test]
    fn kube_defaults() {
        let mut s = json!({"data": {}});
        apply(&info("", "secrets"), &mut s);
        assert_eq!(s["type"], "Opaque");
        let mut svc = json!({"spec": {"ports": [{"port": 80}]}});
        apply(&info("", "services"), &mut svc);
        assert_eq!(
            svc["spec"],
            json!({"type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
                   "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]})
        );
        let mut d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "busybox"}, {"name": "b", "image": "reg:5000/x:1.2"}]}}}});
        apply(&info("apps", "deployments"), &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        let cs = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs[0]["imagePullPolicy"], "Always");
        assert_eq!(cs[1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
        // Set values are kept.
        let mut j =
            json!({"spec": {"backoffLimit": 2, "template": {"spec": {"restartPolicy": "Never"}}}});
        apply(&info("batch", "jobs"), &mut j);
        assert_eq!(
            (
                j["spec"]["backoffLimit"].as_i64(),
                j["spec"]["completions"].as_i64()
            ),
            (Some(2), Some(1))
        );
        assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "Never");
        // Absent lists and templates are not created.
        let mut p = json!({"spec": {"containers": [{"name": "c", "image": "i:1"}]}});
        apply(&info("", "pods"), &mut p);
        assert!(p["spec"].get("initContainers").is_none());
        assert!(p["spec"]["containers"][0].get("ports").is_none());
        let mut t = json!({"metadata": {"name": "x"}});
        apply(&info("", "podtemplates"), &mut t);
        assert!(t.get("template").is_none());
    }
}
