//! The `pods/binding` subresource: `POST …/pods/NAME/binding` with a v1 `Binding` assigns the
//! pod to `target.name` — kube's `BindingREST.Create` and `assignPod`
//! (kubernetes/kubernetes `pkg/registry/core/pod/storage/storage.go`): in one write,
//! `spec.nodeName` is set, the Binding's annotations are merged into the pod's, and the
//! `PodScheduled=True` condition is set as `podutil.UpdatePodCondition` does (a new
//! `lastTransitionTime` only when the status changes). A pod already bound, being deleted, or
//! carrying scheduling gates is a 409 `Conflict` on `pods/binding`, worded as kube's; the answer
//! is a 201 `Status` `Success`.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::object::{meta_mut, meta_str, now};
use super::update::Part;
use super::{json_response, Req};
use crate::request::{decode_object, media_type};
use crate::status::{ApiError, ApiResult, Cause, Target};
use crate::ApiServer;

/// The 409 of a refused binding: `Operation cannot be fulfilled on pods/binding "p": <why>`.
fn refused(name: &str, why: String) -> ApiError {
    ApiError::Conflict {
        target: Target {
            name: name.into(),
            group: String::new(),
            kind: "pods/binding".into(),
            qualified: "pods/binding".into(),
        },
        why,
    }
}

/// kube's `ValidatePodBinding`: a target name is required and its kind is empty or `Node`.
fn validate(binding: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let target = &binding["target"];
    let kind = target["kind"].as_str().unwrap_or("");
    if !kind.is_empty() && kind != "Node" {
        causes.push(Cause::invalid(
            "target.kind",
            kind,
            "must be empty or 'Node'",
        ));
    }
    if target["name"].as_str().unwrap_or("").is_empty() {
        causes.push(Cause::required("target.name", ""));
    }
    causes
}

/// Sets (or refreshes) a condition the way `podutil.UpdatePodCondition` does: an existing
/// condition of the type keeps its `lastTransitionTime` when the status is unchanged.
pub(crate) fn set_condition(pod: &mut Value, condition: Value) {
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    let conditions = pod["status"]
        .as_object_mut()
        .expect("status is an object")
        .entry("conditions")
        .or_insert_with(|| json!([]));
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let list = conditions.as_array_mut().expect("conditions is an array");
    let kind = condition["type"].clone();
    let mut condition = condition;
    match list.iter_mut().find(|c| c["type"] == kind) {
        Some(old) => {
            if old["status"] == condition["status"] && old.get("lastTransitionTime").is_some() {
                condition["lastTransitionTime"] = old["lastTransitionTime"].clone();
            }
            *old = condition;
        }
        None => list.push(condition),
    }
}

impl ApiServer {
    /// `POST /api/v1/namespaces/NS/pods/NAME/binding`.
    pub(crate) async fn bind(&self, req: &Req) -> ApiResult<Response> {
        let binding = decode_object(&media_type(&req.headers), &req.body)?;
        let kind = binding["kind"].as_str().unwrap_or("Binding");
        if kind != "Binding" {
            return Err(ApiError::BadRequest(format!(
                "not a Binding object: {kind}"
            )));
        }
        if meta_str(&binding, "name").unwrap_or("") != req.name() {
            return Err(ApiError::BadRequest(
                "name in URL does not match name in Binding object".into(),
            ));
        }
        let causes = validate(&binding);
        if !causes.is_empty() {
            return Err(ApiError::Invalid {
                target: Target {
                    name: req.name().into(),
                    group: String::new(),
                    kind: "Binding".into(),
                    qualified: "Binding".into(),
                },
                causes,
            });
        }
        let node = binding["target"]["name"].as_str().unwrap_or("").to_string();
        let want_uid = meta_str(&binding, "uid").unwrap_or("").to_string();
        let want_rv = meta_str(&binding, "resourceVersion")
            .unwrap_or("")
            .to_string();
        let annotations = binding["metadata"]["annotations"].as_object().cloned();
        let name = req.name().to_string();
        self.guaranteed_update(
            req,
            |pod| {
                if pod["metadata"].get("deletionTimestamp").is_some() {
                    return Err(refused(
                        &name,
                        format!("pod {name} is being deleted, cannot be assigned to a host"),
                    ));
                }
                let uid = meta_str(pod, "uid").unwrap_or("");
                if !want_uid.is_empty() && uid != want_uid {
                    return Err(refused(
                        &name,
                        format!(
                            "Precondition failed: UID in precondition: {want_uid}, UID in object meta: {uid}"
                        ),
                    ));
                }
                let rv = meta_str(pod, "resourceVersion").unwrap_or("");
                if !want_rv.is_empty() && rv != want_rv {
                    return Err(refused(
                        &name,
                        format!(
                            "Precondition failed: ResourceVersion in precondition: {want_rv}, ResourceVersion in object meta: {rv}"
                        ),
                    ));
                }
                let current = pod["spec"]["nodeName"].as_str().unwrap_or("");
                if !current.is_empty() {
                    return Err(refused(
                        &name,
                        format!("pod {name} is already assigned to node {current:?}"),
                    ));
                }
                if pod["spec"]["schedulingGates"]
                    .as_array()
                    .is_some_and(|g| !g.is_empty())
                {
                    return Err(refused(
                        &name,
                        format!("pod {name} has non-empty .spec.schedulingGates"),
                    ));
                }
                if !pod["spec"].is_object() {
                    pod["spec"] = json!({});
                }
                pod["spec"]["nodeName"] = json!(node);
                if let Some(a) = &annotations {
                    let meta = meta_mut(pod);
                    let target = meta.entry("annotations").or_insert_with(|| json!({}));
                    if !target.is_object() {
                        *target = json!({});
                    }
                    for (k, v) in a {
                        target[k] = v.clone();
                    }
                }
                set_condition(
                    pod,
                    json!({
                        "type": "PodScheduled",
                        "status": "True",
                        "lastProbeTime": null,
                        "lastTransitionTime": now(),
                    }),
                );
                Ok(())
            },
            Part::Binding,
        )
        .await?;
        Ok(json_response(
            StatusCode::CREATED,
            &json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "code": 201,
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_keeps_its_transition_time_when_its_status_stays() {
        let mut pod = json!({"status": {"conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "t0"}
        ]}});
        set_condition(
            &mut pod,
            json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": "t1"}),
        );
        assert_eq!(pod["status"]["conditions"][0]["lastTransitionTime"], "t0");
        set_condition(
            &mut pod,
            json!({"type": "PodScheduled", "status": "False", "lastTransitionTime": "t2"}),
        );
        assert_eq!(pod["status"]["conditions"][0]["lastTransitionTime"], "t2");
        assert_eq!(pod["status"]["conditions"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn binding_validation_as_kube() {
        let c = validate(&json!({"target": {"kind": "Pod"}}));
        assert_eq!(c.len(), 2);
        assert!(validate(&json!({"target": {"name": "n1"}})).is_empty());
    }
}
