//! The `scale` subresource: an `autoscaling/v1` `Scale` view of `spec.replicas`,
//! `status.replicas` and the label selector of deployments, replicasets, statefulsets and
//! replicationcontrollers (kubectl scale PATCHes it with a merge patch).

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::object::{meta_str, validate_meta};
use super::patch::PatchDoc;
use super::update::{Part, MODIFIED};
use super::{json_response, Req};
use crate::request::{decode_object, media_type, Verb};
use crate::status::{ApiError, ApiResult, Cause};
use crate::ApiServer;

/// `spec.selector` as a selector string (`matchLabels` then `matchExpressions`), or the
/// plain map of a ReplicationController.
pub(crate) fn selector_string(selector: &Value) -> String {
    let mut parts = Vec::new();
    let labels = selector.get("matchLabels").unwrap_or(selector);
    if let Some(m) = labels.as_object() {
        for (k, v) in m {
            if let Some(v) = v.as_str() {
                parts.push(format!("{k}={v}"));
            }
        }
    }
    for e in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = e["key"].as_str().unwrap_or("");
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match e["operator"].as_str().unwrap_or("") {
            "In" => parts.push(format!("{key} in ({})", values.join(","))),
            "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
            "Exists" => parts.push(key.to_string()),
            "DoesNotExist" => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    parts.join(",")
}

/// A stand-in resource for patches of `autoscaling/v1 Scale` (no list strategies).
fn scale_info() -> crate::registry::ResourceInfo {
    let mut info = crate::registry::Registry::builtin()
        .lookup("apps", "v1", "deployments")
        .cloned()
        .expect("deployments are registered");
    info.group = "autoscaling";
    info.kind = "Scale";
    info.plural = "scale";
    info
}

/// The `Scale` of an object (a custom object's from its CRD's `scale` paths).
fn to_scale(info: &crate::registry::ResourceInfo, obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let mut scale_meta = json!({});
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(f) {
            scale_meta[f] = v.clone();
        }
    }
    if let Some(scale) = super::custom::to_scale(info, obj, scale_meta.clone()) {
        return scale;
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_meta,
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {
            "replicas": obj["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector_string(&obj["spec"]["selector"]),
        },
    })
}

impl ApiServer {
    pub(crate) async fn scale(&self, req: &Req) -> ApiResult<Response> {
        if req.verb == Verb::Get {
            let (obj, _) = self.get_current(req, None).await?;
            return Ok(json_response(StatusCode::OK, &to_scale(&req.info, &obj)));
        }
        let media = media_type(&req.headers);
        let patch = match req.verb {
            Verb::Patch => Some(PatchDoc::parse(&media, &req.body)?),
            _ => None,
        };
        let put = match req.verb {
            Verb::Update => Some(decode_object(&media, &req.body)?),
            _ => None,
        };
        let info = &req.info;
        let stored = self
            .guaranteed_update(
                req,
                |obj| {
                    let mut scale = to_scale(info, obj);
                    match (&patch, &put) {
                        (Some(p), _) => p.apply(&scale_info(), &mut scale)?,
                        (_, Some(body)) => scale = body.clone(),
                        _ => {}
                    }
                    let rv = meta_str(&scale, "resourceVersion").unwrap_or("");
                    if !rv.is_empty() && Some(rv) != meta_str(obj, "resourceVersion") {
                        return Err(ApiError::Conflict {
                            target: req.target(),
                            why: MODIFIED.into(),
                        });
                    }
                    let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
                    if replicas < 0 {
                        return Err(super::object::invalid(
                            info,
                            req.name(),
                            vec![Cause::invalid(
                                "spec.replicas",
                                &replicas.to_string(),
                                "must be greater than or equal to 0",
                            )],
                        ));
                    }
                    if !super::custom::set_replicas(info, obj, replicas) {
                        obj["spec"]["replicas"] = json!(replicas);
                    }
                    validate_meta(info, obj, false)
                },
                Part::Main,
            )
            .await?;
        Ok(json_response(StatusCode::OK, &to_scale(info, &stored)))
    }
}
