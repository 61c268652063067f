//! Custom objects (and CRDs) through the generic REST code: the hooks the verb handlers call
//! — pruning unknown fields, schema defaults, validation with kube's messages, the storage
//! version, the `scale` paths, the patch types custom resources accept — and the cleanup of a
//! deleted CRD's objects (`customresourcecleanup.apiextensions.k8s.io`).

use axum::body::Body;
use axum::response::Response;
use serde_json::{json, Value};

use super::object::{decode, meta_mut, meta_str};
use super::update::Part;
use crate::custom::{self, CLEANUP_FINALIZER, CRD_PREFIX};
use crate::registry::ResourceInfo;
use crate::status::{ApiError, ApiResult, Cause};
use crate::ApiServer;

/// Whether `info` is the CRD resource itself.
pub(crate) fn is_crd(info: &ResourceInfo) -> bool {
    (info.group, info.plural) == (custom::GROUP, "customresourcedefinitions")
}

/// The fields of a custom object its schema does not specify, removed (kube's pruning) and
/// returned as kube's strict-decoding errors word them; `None` for built-ins.
pub(crate) fn prune(info: &ResourceInfo, obj: &mut Value) -> Option<Vec<String>> {
    let c = info.custom.as_ref()?;
    let Some(schema) = &c.schema else {
        return Some(Vec::new());
    };
    Some(
        crate::crd::prune(obj, schema)
            .into_iter()
            .map(|p| format!("unknown field {p:?}"))
            .collect(),
    )
}

/// The schema's `default`s (custom objects) or kube's CRD defaults.
pub(crate) fn defaults(info: &ResourceInfo, obj: &mut Value) {
    if is_crd(info) {
        custom::crd_defaults(obj);
    } else if let Some(schema) = info.custom.as_ref().and_then(|c| c.schema.as_ref()) {
        crate::crd::apply_defaults(obj, schema);
    }
}

/// The last check before a write: a CRD must be valid (structural schemas, rules that
/// compile, …); a custom object must satisfy its version's schema, formats and CEL rules
/// (`old`: the stored object, on an update, for transition rules) — 422 with kube's causes —
/// and is stored at the storage version.
pub(crate) fn admit(info: &ResourceInfo, obj: &mut Value, old: Option<&Value>) -> ApiResult<()> {
    let name = meta_str(obj, "name").unwrap_or("").to_string();
    if is_crd(info) {
        let causes = custom::validate_crd(obj);
        if !causes.is_empty() {
            return Err(super::object::invalid(info, &name, causes));
        }
        return Ok(());
    }
    let Some(c) = &info.custom else {
        return Ok(());
    };
    if let Some(schema) = &c.schema {
        let mut causes = crate::crd::validate(obj, schema);
        // kube's customResourceStrategy: rules run only on an object the schema accepts in
        // type, required fields, enums and sizes (hasBlockingErr).
        if !crate::cel::has_rules(schema) {
        } else if causes.iter().any(|c| {
            matches!(
                c.reason,
                "FieldValueNotSupported"
                    | "FieldValueRequired"
                    | "FieldValueTooLong"
                    | "FieldValueTooMany"
                    | "FieldValueTypeInvalid"
            )
        }) {
            causes.push(crate::crd::Cause {
                reason: "FieldValueInvalid",
                message: "Invalid value: \"null\": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation".into(),
                field: "<nil>".into(),
            });
        } else {
            causes.extend(crate::cel::validate(schema, obj, old));
        }
        let causes: Vec<Cause> = causes
            .into_iter()
            .map(|c| Cause {
                reason: c.reason.into(),
                message: c.message,
                field: c.field,
            })
            .collect();
        if !causes.is_empty() {
            return Err(super::object::invalid(info, &name, causes));
        }
    }
    obj["apiVersion"] = json!(format!("{}/{}", info.group, c.storage_version));
    Ok(())
}

/// A create of a custom object whose CRD is being deleted is refused, as kube does.
pub(crate) fn check_create(info: &ResourceInfo) -> ApiResult<()> {
    match &info.custom {
        // kube: MethodNotSupported, "create not allowed while custom resource definition is
        // terminating".
        Some(c) if c.terminating => Err(ApiError::MethodNotAllowed),
        _ => Ok(()),
    }
}

/// A custom object as stored (at its CRD's storage version), for comparing with what is
/// about to be written.
pub(crate) fn at_storage_version(info: &ResourceInfo, mut obj: Value) -> Value {
    if let Some(c) = &info.custom {
        obj["apiVersion"] = json!(format!("{}/{}", info.group, c.storage_version));
    }
    obj
}

/// Without a status subresource, any change but metadata bumps a custom object's
/// generation (kube's `customResourceStrategy.PrepareForUpdate`).
pub(crate) fn status_bumps_generation(info: &ResourceInfo, old: &Value, new: &Value) -> bool {
    info.custom.is_some() && !info.has_status() && old.get("status") != new.get("status")
}

/// A custom object read from storage is shown at the request's version (conversion `None`).
pub(crate) fn to_request_version(info: &ResourceInfo, obj: &mut Value) {
    if info.custom.is_some() && obj.get("apiVersion").is_some() {
        obj["apiVersion"] = json!(info.api_version());
    }
}

/// A list response's item: a custom object keeps its `kind` and `apiVersion` (the
/// request's), as kube's unstructured lists do; built-in items carry neither.
pub(crate) fn list_item(info: &ResourceInfo, mut obj: Value) -> Value {
    if info.custom.is_none() {
        return super::object::list_item(obj);
    }
    obj["apiVersion"] = json!(info.api_version());
    obj["kind"] = json!(info.kind);
    obj
}

/// A response object of a custom resource served at several versions, rewritten to the
/// request's version.
pub(crate) async fn response_in_request_version(info: &ResourceInfo, resp: Response) -> Response {
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let group_prefix = format!("{}/", info.group);
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(mut v)
            if v["kind"] == info.kind
                && v["apiVersion"]
                    .as_str()
                    .is_some_and(|a| a.starts_with(&group_prefix)) =>
        {
            v["apiVersion"] = json!(info.api_version());
            let body = serde_json::to_vec(&v).unwrap_or_default();
            let mut parts = parts;
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(body))
        }
        _ => Response::from_parts(parts, Body::from(bytes)),
    }
}

/// Custom resources take JSON patch, merge patch and apply, not strategic merge patch: kube's
/// 415 (kubectl then falls back to a merge patch).
pub(crate) fn check_patch_type(info: &ResourceInfo, media: &str) -> ApiResult<()> {
    if info.custom.is_some() && media == "application/strategic-merge-patch+json" {
        return Err(ApiError::UnsupportedMediaType(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".into(),
        ));
    }
    Ok(())
}

/// On the first delete of a CRD: kube's cleanup finalizer and the `Terminating` condition
/// (`InstanceDeletionPending`); the CRD stays until its objects are gone.
pub(crate) fn mark_crd_deleting(info: &ResourceInfo, obj: &mut Value) {
    if !is_crd(info) || obj["metadata"].get("deletionTimestamp").is_some() {
        return;
    }
    let meta = meta_mut(obj);
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(a) = list.as_array_mut() {
        if !a.iter().any(|x| x == CLEANUP_FINALIZER) {
            a.push(json!(CLEANUP_FINALIZER));
        }
    }
    set_condition(
        obj,
        "Terminating",
        "True",
        "InstanceDeletionPending",
        "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
    );
}

fn condition_reason<'a>(obj: &'a Value, kind: &str) -> Option<&'a str> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)?["reason"]
        .as_str()
}

fn set_condition(obj: &mut Value, kind: &str, status: &str, reason: &str, message: &str) {
    if !obj["status"].is_object() {
        obj["status"] = json!({});
    }
    if !obj["status"]["conditions"].is_array() {
        obj["status"]["conditions"] = json!([]);
    }
    let c = json!({"type": kind, "status": status, "lastTransitionTime": super::object::now(),
        "reason": reason, "message": message});
    let list = obj["status"]["conditions"]
        .as_array_mut()
        .expect("an array");
    match list.iter_mut().find(|x| x["type"] == kind) {
        Some(x) => *x = c,
        None => list.push(c),
    }
}

// --- Scale -------------------------------------------------------------------------------

/// The value at a simple JSONPath (`.spec.replicas`, `{.status.x}`, `.a[0].b`,
/// `.conditions[?(@.type=="Ready")].status`).
pub(crate) fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim();
    let path = path
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(path);
    let mut cur = obj;
    let mut rest = path.strip_prefix('$').unwrap_or(path);
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let field = &r[..end];
            if !field.is_empty() {
                cur = cur.get(field)?;
            }
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            if let Some(filter) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (field, want) = filter.split_once("==")?;
                let want = want.trim().trim_matches(|c| c == '"' || c == '\'');
                cur = cur
                    .as_array()?
                    .iter()
                    .find(|x| x[field.trim()].as_str() == Some(want))?;
            } else if let Ok(i) = inner.parse::<usize>() {
                cur = cur.get(i)?;
            } else {
                cur = cur.get(inner.trim_matches(|c| c == '"' || c == '\''))?;
            }
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(cur)
}

/// Sets the value at a dotted path (`.spec.replicas`), creating objects on the way.
fn set_path(obj: &mut Value, path: &str, value: Value) {
    let mut cur = obj;
    let fields: Vec<&str> = path.split('.').filter(|f| !f.is_empty()).collect();
    for (i, f) in fields.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        if i + 1 == fields.len() {
            cur[*f] = value;
            return;
        }
        cur = &mut cur[*f];
    }
}

/// A custom object's `Scale` (its CRD's `scale` paths), `None` for built-ins.
pub(crate) fn to_scale(info: &ResourceInfo, obj: &Value, meta: Value) -> Option<Value> {
    let paths = info.custom.as_ref()?.scale.as_ref()?;
    let int = |p: &str| json_path(obj, p).and_then(Value::as_i64).unwrap_or(0);
    let mut status = json!({"replicas": int(&paths.status_replicas)});
    if let Some(sel) = paths
        .label_selector
        .as_deref()
        .and_then(|p| json_path(obj, p))
        .and_then(Value::as_str)
    {
        status["selector"] = json!(sel);
    }
    Some(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": meta,
        "spec": {"replicas": int(&paths.spec_replicas)},
        "status": status,
    }))
}

/// Writes a Scale's replicas into a custom object; `false` for built-ins.
pub(crate) fn set_replicas(info: &ResourceInfo, obj: &mut Value, replicas: i64) -> bool {
    let Some(paths) = info.custom.as_ref().and_then(|c| c.scale.as_ref()) else {
        return false;
    };
    set_path(obj, &paths.spec_replicas, json!(replicas));
    true
}

// --- CRD cleanup ---------------------------------------------------------------------------

impl ApiServer {
    /// kube's CRD finalizer: deletes every object of the CRD (objects with finalizers are
    /// waited for), then removes `customresourcecleanup.apiextensions.k8s.io`, which deletes
    /// the CRD.
    pub(crate) async fn finalize_crd(&self, name: &str) {
        let key = format!("{CRD_PREFIX}{name}");
        let Ok((_, Some(kv))) = self.store.get(&key, None).await else {
            return;
        };
        let Ok(mut crd) = decode(&kv) else { return };
        if condition_reason(&crd, "Terminating") != Some("InstanceDeletionInProgress") {
            set_condition(
                &mut crd,
                "Terminating",
                "True",
                "InstanceDeletionInProgress",
                "CustomResource deletion is in progress",
            );
            // Lost to a concurrent write: the condition is cosmetic, the cleanup goes on.
            let _ = self
                .store
                .update(&key, super::object::encode(&crd), kv.mod_revision)
                .await;
        }
        let group = crd["spec"]["group"].as_str().unwrap_or("");
        let plural = crd["status"]["acceptedNames"]["plural"]
            .as_str()
            .or(crd["spec"]["names"]["plural"].as_str())
            .unwrap_or("");
        let mut established = crd.clone();
        established["status"]["conditions"] = json!([{"type": "Established", "status": "True"}]);
        established["status"]["acceptedNames"] = crd["spec"]["names"].clone();
        let info = custom::rows_of(&established).into_iter().next();
        let prefix = format!("/registry/{group}/{plural}/");
        if let Some(info) = &info {
            if !group.is_empty() && !plural.is_empty() {
                for _ in 0..6000 {
                    let Ok(page) = self.store.list(&prefix, Default::default()).await else {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        continue;
                    };
                    if page.kvs.is_empty() {
                        break;
                    }
                    for kv in &page.kvs {
                        let Ok(obj) = decode(kv) else { continue };
                        if obj["metadata"].get("deletionTimestamp").is_some() {
                            continue;
                        }
                        let opts = super::delete::DeleteOptions::default();
                        let _ = self
                            .delete_object(info, &kv.key, obj, kv.mod_revision, &opts)
                            .await;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
        let Some(crd_info) = self
            .registry()
            .lookup(custom::GROUP, "v1", "customresourcedefinitions")
            .cloned()
        else {
            return;
        };
        let opts = super::WriteOpts {
            manager: "kube-apiserver".into(),
            ..Default::default()
        };
        for _ in 0..16 {
            let Ok((_, Some(kv))) = self.store.get(&key, None).await else {
                return;
            };
            let Ok(old) = decode(&kv) else { return };
            let mut new = old.clone();
            if let Some(list) = new["metadata"]["finalizers"].as_array_mut() {
                list.retain(|f| f != CLEANUP_FINALIZER);
            }
            match self
                .write_update(
                    &crd_info,
                    &key,
                    old,
                    kv.mod_revision,
                    new,
                    Part::Main,
                    &opts,
                )
                .await
            {
                Err(ApiError::Conflict { .. }) => continue,
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths() {
        let obj = json!({"spec": {"replicas": 3, "list": [{"a": 1}]},
            "status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(json_path(&obj, ".spec.replicas"), Some(&json!(3)));
        assert_eq!(json_path(&obj, "{.spec.list[0].a}"), Some(&json!(1)));
        assert_eq!(
            json_path(&obj, ".status.conditions[?(@.type==\"Ready\")].status"),
            Some(&json!("True"))
        );
        assert_eq!(json_path(&obj, ".spec.nope"), None);
        let mut o = json!({});
        set_path(&mut o, ".spec.replicas", json!(2));
        assert_eq!(o, json!({"spec": {"replicas": 2}}));
    }
}
