//! `POST` (create): decode, check type and namespace, name (or `generateName`), validation,
//! server-set metadata, kind-specific defaults, then one datastore create.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::object::{
    check_type, decode, encode, meta_mut, meta_str, name_suffix, new_uid, now, validate_meta,
};
use super::{json_response, Req};
use crate::registry::ResourceInfo;
use crate::request::{decode_object, media_type};
use crate::status::{ApiError, ApiResult, Cause, Target};
use crate::ApiServer;

impl ApiServer {
    pub(crate) async fn create(&self, req: &Req) -> ApiResult<Response> {
        super::custom::check_create(&req.info)?;
        let mut obj = decode_object(&media_type(&req.headers), &req.body)?;
        let opts = req.write_opts()?;
        let mode = super::fields::Validation::of(&req.query)?;
        check_type(&req.info, &mut obj)?;
        super::fields::check_types(&req.info, &obj, super::fields::Body::Object)?;
        let warnings = super::fields::check(&req.info, &mut obj, mode, true)?;
        let created = self
            .create_object(&req.info, req.namespace(), &mut obj, &opts)
            .await?;
        Ok(super::fields::with_warnings(
            json_response(StatusCode::CREATED, &created),
            &warnings,
        ))
    }

    /// Creates `obj` as a `info` in `namespace` (the URL's); returns what was stored, with its
    /// resourceVersion.
    pub(crate) async fn create_object(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        obj: &mut Value,
        opts: &super::WriteOpts,
    ) -> ApiResult<Value> {
        let dry_run = opts.dry_run;
        check_type(info, obj)?;
        let generated_from: Option<String>;
        {
            let meta = meta_mut(obj);
            match (info.namespaced, namespace) {
                (true, Some(ns)) => {
                    let body_ns = meta.get("namespace").and_then(Value::as_str).unwrap_or("");
                    if !body_ns.is_empty() && body_ns != ns {
                        return Err(ApiError::BadRequest(
                            "the namespace of the provided object does not match the namespace sent on the request".into(),
                        ));
                    }
                    meta.insert("namespace".into(), json!(ns));
                }
                (true, None) => {
                    return Err(ApiError::BadRequest(
                        "the server could not find the requested resource".into(),
                    ))
                }
                (false, _) => {
                    meta.remove("namespace");
                }
            }
            let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
            let generate = meta
                .get("generateName")
                .and_then(Value::as_str)
                .unwrap_or("");
            generated_from =
                (name.is_empty() && !generate.is_empty()).then(|| generate.to_string());
            if name.is_empty() && !generate.is_empty() {
                let generated = format!("{generate}{}", name_suffix());
                meta.insert("name".into(), json!(generated));
            }
            // Server-set fields: whatever the client sent is replaced.
            meta.insert("uid".into(), json!(new_uid()));
            meta.insert("creationTimestamp".into(), json!(now()));
            meta.remove("resourceVersion");
            meta.remove("deletionTimestamp");
            meta.remove("deletionGracePeriodSeconds");
            meta.remove("selfLink");
            if info.generation {
                meta.insert("generation".into(), json!(1));
            } else {
                meta.remove("generation");
            }
        }
        super::object::normalize(info, obj);
        prepare_for_create(info, obj);
        super::defaults::apply(info, obj);
        if (info.group, info.plural) == ("", "pods") {
            // kube's pod PrepareForCreate: the QoS class, on the defaulted resources.
            obj["status"]["qosClass"] = json!(pod_qos_class(&obj["spec"]));
        }
        validate_meta(info, obj, true)?;
        if (info.group, info.plural) == ("", "pods") {
            let causes = crate::validation::pod::pod_create_causes(obj);
            if !causes.is_empty() {
                let name = meta_str(obj, "name").unwrap_or("").to_string();
                return Err(super::object::invalid(info, &name, causes));
            }
        }
        super::custom::admit(info, obj, None)?;
        super::managed::track(info, None, obj, opts, "");
        let name = meta_str(obj, "name").unwrap_or("").to_string();
        if let Some(ns) = namespace.filter(|_| info.namespaced) {
            self.check_namespace_open(info, &name, ns).await?;
        }
        if (info.group, info.plural) == ("", "pods") {
            self.admit_priority(obj).await?;
        }
        self.admit_create(info, namespace, obj).await?;
        let key = info.key(namespace, &name);
        if dry_run {
            self.allocate_service(info, obj, true).await?;
            let (_, existing) = self.store.get(&key, None).await?;
            if existing.is_some() {
                return Err(ApiError::AlreadyExists(Target::resource(info, &name)));
            }
            return Ok(obj.clone());
        }
        let taken = self.allocate_service(info, obj, false).await?;
        let (mut key, mut name) = (key, name);
        // A generated name that is taken is generated again (kube's RetryGenerateName: up to
        // 8 attempts), so only a real name collision is AlreadyExists.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let r = self.store.create(&key, encode(obj)).await;
            if r.is_err() && !taken.0.is_empty() {
                let retry = generated_from.is_some()
                    && attempts < 8
                    && matches!(r, Err(barge_datastore::Error::AlreadyExists { .. }));
                if !retry {
                    // The Service was not stored: its allocations go again.
                    self.release_keys(&taken.0, &obj["metadata"]["uid"]).await;
                }
            }
            match r {
                Ok(kv) => return decode(&kv),
                Err(barge_datastore::Error::AlreadyExists { .. }) => {
                    match generated_from.as_deref().filter(|_| attempts < 8) {
                        Some(prefix) => {
                            name = format!("{prefix}{}", name_suffix());
                            meta_mut(obj).insert("name".into(), json!(name));
                            key = info.key(namespace, &name);
                            self.rename_taken(&taken, &name).await;
                        }
                        None => return Err(ApiError::AlreadyExists(Target::resource(info, &name))),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A create in `ns` needs the namespace to exist and not be terminating.
    async fn check_namespace_open(
        &self,
        info: &ResourceInfo,
        name: &str,
        ns: &str,
    ) -> ApiResult<()> {
        let (_, kv) = self
            .store
            .get(&format!("/registry/namespaces/{ns}"), None)
            .await?;
        let Some(kv) = kv else {
            return Err(ApiError::NotFound(Target::namespace(ns)));
        };
        let obj = decode(&kv)?;
        if obj["status"]["phase"] == "Terminating" {
            // kube's NamespaceLifecycle admission: a Forbidden on the object with one cause.
            return Err(ApiError::Forbidden {
                target: Target::resource(info, name),
                why: format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
                causes: vec![Cause {
                    reason: "NamespaceTerminating".into(),
                    message: format!("namespace {ns} is being terminated"),
                    field: "metadata.namespace".into(),
                }],
            });
        }
        Ok(())
    }
}

/// The status a new object of a built-in kind is stored with: the zero value of its Go
/// status struct as k8s.io/api serialises it (fields without `omitempty` at 0 / empty).
/// `None` for custom resources, whose status is absent until written.
fn zero_status(group: &str, plural: &str) -> Option<Value> {
    Some(match (group, plural) {
        ("", "services") | ("networking.k8s.io", "ingresses") => json!({"loadBalancer": {}}),
        ("", "persistentvolumeclaims" | "persistentvolumes") => json!({"phase": "Pending"}),
        ("", "replicationcontrollers") | ("apps", "replicasets") => json!({"replicas": 0}),
        ("apps", "statefulsets") => json!({"replicas": 0, "availableReplicas": 0}),
        ("apps", "daemonsets") => json!({
            "currentNumberScheduled": 0, "numberMisscheduled": 0,
            "desiredNumberScheduled": 0, "numberReady": 0
        }),
        ("autoscaling", "horizontalpodautoscalers") => {
            json!({"desiredReplicas": 0, "currentMetrics": null})
        }
        ("policy", "poddisruptionbudgets") => json!({
            "disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0
        }),
        ("storage.k8s.io", "volumeattachments") => json!({"attached": false}),
        ("apiextensions.k8s.io", _) | ("apiregistration.k8s.io", _) => return None,
        (
            ""
            | "apps"
            | "batch"
            | "autoscaling"
            | "policy"
            | "networking.k8s.io"
            | "storage.k8s.io"
            | "certificates.k8s.io"
            | "resource.k8s.io"
            | "flowcontrol.apiserver.k8s.io"
            | "admissionregistration.k8s.io",
            _,
        ) => json!({}),
        _ => return None,
    })
}

/// kube's QoS class of a pod's `spec` (`ComputePodQOS`, pkg/apis/core/helper/qos): only cpu
/// and memory count; BestEffort without any non-zero request or limit; Guaranteed when every
/// container (init containers too) limits both and each summed request equals its summed
/// limit; Burstable otherwise.
pub(crate) fn pod_qos_class(spec: &Value) -> &'static str {
    use crate::admission::quantity::{of, Quantity};
    use std::collections::BTreeMap;
    let mut requests: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut limits: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut guaranteed = true;
    let containers = ["containers", "initContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten());
    for c in containers {
        let mut limited = 0;
        for (which, sums) in [("requests", &mut requests), ("limits", &mut limits)] {
            for name in ["cpu", "memory"] {
                let Some(q) = of(&c["resources"][which][name]) else {
                    continue;
                };
                if q > Quantity::ZERO {
                    if which == "limits" {
                        limited += 1;
                    }
                    let sum = sums.entry(name).or_insert(Quantity::ZERO);
                    *sum = sum.plus(q);
                }
            }
        }
        if limited < 2 {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed
        && requests.len() == limits.len()
        && requests.iter().all(|(k, r)| limits.get(k) == Some(r))
    {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Kind-specific create defaults (the `PrepareForCreate` of kube's strategies that matter to
/// clients now): status subresource kinds start without status; namespaces are Active with the
/// `kubernetes` finalizer and the `kubernetes.io/metadata.name` label; pods start Pending.
fn prepare_for_create(info: &ResourceInfo, obj: &mut Value) {
    if info.has_status() {
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
            // A built-in kind's Go type always serialises its status struct: clients (the
            // Python client's models, `status.readyReplicas` in scripts) see `status: {}`
            // with the non-`omitempty` fields at zero from the first watch event on.
            let zero = info
                .custom
                .is_none()
                .then(|| zero_status(info.group, info.plural));
            if let Some(zero) = zero.flatten() {
                m.insert("status".into(), zero);
            }
        }
    }
    match (info.group, info.plural) {
        ("", "namespaces") => {
            let name = meta_str(obj, "name").unwrap_or("").to_string();
            let meta = meta_mut(obj);
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "pods") => {
            obj["status"] = json!({"phase": "Pending"});
        }
        ("apps", "deployments" | "replicasets" | "statefulsets")
        | ("", "replicationcontrollers")
            if obj["spec"].is_object() && obj["spec"].get("replicas").is_none() =>
        {
            obj["spec"]["replicas"] = json!(1);
        }
        ("batch", "jobs") if obj["spec"].is_object() => job_selector(obj),
        _ => {}
    }
}

/// kube's job `generateSelector` (`pkg/registry/batch/job/strategy.go`), unless
/// `spec.manualSelector` is true: the pod template gets `batch.kubernetes.io/job-name` and
/// `job-name` (the Job's name) and `batch.kubernetes.io/controller-uid` and `controller-uid`
/// (its uid) where it has no such label, and the selector matches on
/// `batch.kubernetes.io/controller-uid`. (A selector naming another uid then fails
/// validation, as in kube.) Clients rely on it: `kubectl logs job/x` and `describe job` select
/// the Job's pods with it.
fn job_selector(obj: &mut Value) {
    if obj["spec"]["manualSelector"].as_bool() == Some(true) {
        return;
    }
    let name = meta_str(obj, "name").unwrap_or("").to_string();
    let uid = meta_str(obj, "uid").unwrap_or("").to_string();
    let spec = &mut obj["spec"];
    if !spec["template"].is_object() {
        spec["template"] = json!({});
    }
    if !spec["template"]["metadata"].is_object() {
        spec["template"]["metadata"] = json!({});
    }
    if !spec["template"]["metadata"]["labels"].is_object() {
        spec["template"]["metadata"]["labels"] = json!({});
    }
    if let Some(labels) = spec["template"]["metadata"]["labels"].as_object_mut() {
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            labels.entry(k).or_insert_with(|| json!(v));
        }
    }
    if !spec["selector"].is_object() {
        spec["selector"] = json!({});
    }
    if !spec["selector"]["matchLabels"].is_object() {
        spec["selector"]["matchLabels"] = json!({});
    }
    if let Some(m) = spec["selector"]["matchLabels"].as_object_mut() {
        m.entry("batch.kubernetes.io/controller-uid")
            .or_insert_with(|| json!(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::pod_qos_class;
    use serde_json::json;

    #[test]
    fn a_job_gets_kubes_generated_selector_and_labels_unless_manual() {
        let mut job = json!({
            "metadata": {"name": "pi", "uid": "u-1"},
            "spec": {"template": {"metadata": {"labels": {"app": "x", "job-name": "mine"}},
                                  "spec": {"containers": []}}}
        });
        super::job_selector(&mut job);
        assert_eq!(
            job["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"],
            json!({"app": "x", "job-name": "mine", "controller-uid": "u-1",
                   "batch.kubernetes.io/controller-uid": "u-1",
                   "batch.kubernetes.io/job-name": "pi"}),
            "labels the user set stay"
        );
        // No template metadata at all.
        let mut bare = json!({"metadata": {"name": "b", "uid": "u-2"}, "spec": {"template": {}}});
        super::job_selector(&mut bare);
        assert_eq!(
            bare["spec"]["template"]["metadata"]["labels"]["job-name"],
            "b"
        );
        let manual = json!({"metadata": {"name": "m", "uid": "u-3"},
                            "spec": {"manualSelector": true,
                                     "selector": {"matchLabels": {"a": "b"}}}});
        let mut m = manual.clone();
        super::job_selector(&mut m);
        assert_eq!(m, manual, "a manual selector is left alone");
    }

    #[test]
    fn qos_classes_as_kube() {
        let spec =
            |res: serde_json::Value| json!({"containers": [{"name": "a", "resources": res}]});
        assert_eq!(pod_qos_class(&spec(json!({}))), "BestEffort");
        assert_eq!(
            pod_qos_class(&spec(json!({"requests": {"cpu": "0"}}))),
            "BestEffort"
        );
        // Requests defaulted from limits (`1` and `1000m` are the same quantity).
        let g = json!({"limits": {"cpu": "1", "memory": "1Gi"},
                       "requests": {"cpu": "1000m", "memory": "1024Mi"}});
        assert_eq!(pod_qos_class(&spec(g)), "Guaranteed");
        let b = json!({"requests": {"cpu": "100m"}});
        assert_eq!(pod_qos_class(&spec(b)), "Burstable");
        // A limit on cpu only is not Guaranteed; neither is an init container without limits.
        let cpu_only = json!({"limits": {"cpu": "1"}, "requests": {"cpu": "1"}});
        assert_eq!(pod_qos_class(&spec(cpu_only)), "Burstable");
        let mut with_init = spec(json!({"limits": {"cpu": "1", "memory": "1Gi"},
                                        "requests": {"cpu": "1", "memory": "1Gi"}}));
        with_init["initContainers"] = json!([{"name": "i"}]);
        assert_eq!(pod_qos_class(&with_init), "Burstable");
    }
}
