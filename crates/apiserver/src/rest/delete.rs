//! `DELETE` of one object or a collection. Objects with finalizers get a
//! `deletionTimestamp` and stay until their finalizers are removed; a namespace goes
//! `Terminating`, its content is deleted in the background, then it disappears.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::object::{decode, encode, has_finalizers, list_item, meta_mut, meta_str, now};
use super::update::MODIFIED;
use super::{json_response, ListParams, Req};
use crate::registry::ResourceInfo;
use crate::request::{decode_object, media_type};
use crate::status::{ApiError, ApiResult, Target};
use crate::ApiServer;

/// The `DeleteOptions` fields barge honours.
#[derive(Debug, Default)]
pub(crate) struct DeleteOptions {
    pub(crate) dry_run: bool,
    pub(crate) precondition_rv: Option<String>,
    precondition_uid: Option<String>,
    /// `gracePeriodSeconds` (query or body).
    grace: Option<i64>,
    /// `propagationPolicy` (query or body; `orphanDependents` is the legacy spelling).
    propagation: Option<String>,
}

impl DeleteOptions {
    /// The options of a `DeleteOptions` object (an Eviction's `deleteOptions`).
    pub(crate) fn from_body(body: &Value) -> ApiResult<Self> {
        let mut opts = DeleteOptions::default();
        opts.read_body(body);
        opts.check()?;
        Ok(opts)
    }

    fn read_body(&mut self, body: &Value) {
        let opts = self;
        if let Some(d) = body["dryRun"].as_array() {
            opts.dry_run |= d.iter().any(|v| v == "All");
        }
        let pre = &body["preconditions"];
        if let Some(rv) = pre["resourceVersion"].as_str() {
            opts.precondition_rv = Some(rv.to_string());
        }
        if let Some(uid) = pre["uid"].as_str() {
            opts.precondition_uid = Some(uid.to_string());
        }
        if let Some(g) = body["gracePeriodSeconds"].as_i64() {
            opts.grace = Some(g);
        }
        if let Some(p) = body["propagationPolicy"].as_str() {
            opts.propagation = Some(p.to_string());
        } else if body["orphanDependents"] == json!(true) {
            opts.propagation = Some("Orphan".into());
        }
    }

    fn check(&self) -> ApiResult<()> {
        match self.propagation.as_deref() {
            None | Some("Background" | "Foreground" | "Orphan") => Ok(()),
            Some(other) => Err(ApiError::BadRequest(format!(
                "DeleteOptions.propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            ))),
        }
    }
}

fn delete_options(req: &Req) -> ApiResult<DeleteOptions> {
    let mut opts = DeleteOptions {
        dry_run: req.query.dry_run()?,
        grace: req.query.int("gracePeriodSeconds")?,
        propagation: req.query.get("propagationPolicy").map(String::from),
        ..Default::default()
    };
    if !req.body.is_empty() {
        let body = decode_object(&media_type(&req.headers), &req.body)?;
        if let Some(d) = body["dryRun"].as_array() {
            opts.dry_run |= d.iter().any(|v| v == "All");
        }
        let pre = &body["preconditions"];
        opts.precondition_rv = pre["resourceVersion"].as_str().map(String::from);
        opts.precondition_uid = pre["uid"].as_str().map(String::from);
        if let Some(g) = body["gracePeriodSeconds"].as_i64() {
            opts.grace = Some(g);
        }
        if let Some(p) = body["propagationPolicy"].as_str() {
            opts.propagation = Some(p.to_string());
        } else if body["orphanDependents"] == json!(true) {
            opts.propagation = Some("Orphan".into());
        }
    }
    match opts.propagation.as_deref() {
        None | Some("Background" | "Foreground" | "Orphan") => {}
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "DeleteOptions.propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            )))
        }
    }
    Ok(opts)
}

/// A pod's grace period for this delete: the request's, else its
/// `terminationGracePeriodSeconds` (default 30); 0 for unscheduled or finished pods.
fn pod_grace(pod: &Value, requested: Option<i64>) -> i64 {
    let mut period = requested.unwrap_or_else(|| {
        pod["spec"]["terminationGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(30)
    });
    let scheduled = pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    );
    if !scheduled || finished {
        period = 0;
    }
    if period < 0 {
        period = 1;
    }
    period
}

impl ApiServer {
    pub(crate) async fn delete(&self, req: &Req) -> ApiResult<Response> {
        let opts = delete_options(req)?;
        let (obj, rev) = self.get_current(req, None).await?;
        let target = req.target();
        if let Some(uid) = opts.precondition_uid.as_deref() {
            let have = meta_str(&obj, "uid").unwrap_or("");
            if uid != have {
                return Err(ApiError::Conflict {
                    target,
                    why: format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"
                    ),
                });
            }
        }
        if let Some(want) = opts.precondition_rv.as_deref() {
            if want != rev.to_string() {
                return Err(ApiError::Conflict {
                    target,
                    why: format!(
                        "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rev}"
                    ),
                });
            }
        }
        let (code, body) = self
            .delete_object(&req.info, &req.key(), obj, rev, &opts)
            .await?;
        Ok(json_response(code, &body))
    }

    /// Deletes (or starts deleting) one object; returns the response kube gives: the object
    /// while it is being finalized or gracefully terminated, a `Status` Success once it is
    /// gone. `gracePeriodSeconds` applies to pods only; `propagationPolicy` Foreground or
    /// Orphan adds the `foregroundDeletion`/`orphan` finalizer the garbage collector
    /// finishes (barge-controllers' `gc`).
    pub(crate) async fn delete_object(
        &self,
        info: &ResourceInfo,
        key: &str,
        mut obj: Value,
        rev: i64,
        opts: &DeleteOptions,
    ) -> ApiResult<(StatusCode, Value)> {
        let (dry_run, grace) = (opts.dry_run, opts.grace);
        let name = meta_str(&obj, "name").unwrap_or("").to_string();
        let target = Target::resource(info, &name);
        let conflict = |e: barge_datastore::Error| match e {
            barge_datastore::Error::Conflict { .. } => ApiError::Conflict {
                target: target.clone(),
                why: MODIFIED.into(),
            },
            barge_datastore::Error::NotFound { .. } => ApiError::NotFound(target.clone()),
            other => other.into(),
        };
        // A scheduled, running pod is deleted gracefully: marked with a deletionTimestamp
        // `grace` seconds ahead for its node to stop it (kube's CheckGracefulDelete).
        if (info.group, info.plural) == ("", "pods") {
            let period = pod_grace(&obj, grace);
            let current = obj["metadata"]["deletionGracePeriodSeconds"].as_i64();
            if period > 0 {
                if current.is_some_and(|c| c <= period) {
                    return Ok((StatusCode::OK, obj));
                }
                let at = chrono::Utc::now() + chrono::Duration::seconds(period);
                let meta = meta_mut(&mut obj);
                meta.insert(
                    "deletionTimestamp".into(),
                    json!(at.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
                );
                meta.insert("deletionGracePeriodSeconds".into(), json!(period));
                if !dry_run {
                    let kv = self
                        .store
                        .update(key, encode(&obj), rev)
                        .await
                        .map_err(conflict)?;
                    obj = decode(&kv)?;
                }
                return Ok((StatusCode::OK, obj));
            }
        }
        super::custom::mark_crd_deleting(info, &mut obj);
        let is_namespace = info.group.is_empty() && info.plural == "namespaces";
        let finalizer = match opts.propagation.as_deref() {
            Some("Foreground") if !is_namespace => Some("foregroundDeletion"),
            Some("Orphan") if !is_namespace => Some("orphan"),
            _ => None,
        };
        if let Some(f) = finalizer {
            if obj["metadata"].get("deletionTimestamp").is_none() {
                let meta = meta_mut(&mut obj);
                let list = meta.entry("finalizers").or_insert_with(|| json!([]));
                if let Some(a) = list.as_array_mut() {
                    if !a.iter().any(|x| x == f) {
                        a.push(json!(f));
                    }
                }
            }
        }
        if is_namespace || has_finalizers(&obj) {
            if obj["metadata"].get("deletionTimestamp").is_none() {
                let meta = meta_mut(&mut obj);
                meta.insert("deletionTimestamp".into(), json!(now()));
                meta.insert("deletionGracePeriodSeconds".into(), json!(0));
                if is_namespace {
                    obj["status"]["phase"] = json!("Terminating");
                }
                if !dry_run {
                    let kv = self
                        .store
                        .update(key, encode(&obj), rev)
                        .await
                        .map_err(conflict)?;
                    obj = decode(&kv)?;
                }
            }
            if is_namespace && !dry_run {
                self.spawn_namespace_cleanup(name.clone());
            }
            return Ok((StatusCode::OK, obj));
        }
        if !dry_run {
            self.store.delete(key, Some(rev)).await.map_err(conflict)?;
            self.release_service(info, &obj).await;
        }
        let mut details = json!({"name": name, "kind": info.plural});
        if !info.group.is_empty() {
            details["group"] = json!(info.group);
        }
        if let Some(uid) = meta_str(&obj, "uid") {
            details["uid"] = json!(uid);
        }
        let status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": details,
        });
        Ok((StatusCode::OK, status))
    }

    pub(crate) async fn delete_collection(&self, req: &Req) -> ApiResult<Response> {
        let opts = delete_options(req)?;
        let params = ListParams::parse(&req.info, &req.query)?;
        let listed = self
            .list_objects(&req.info, req.namespace(), &params)
            .await?;
        let mut deleted = Vec::new();
        for obj in listed.items {
            let name = meta_str(&obj, "name").unwrap_or("").to_string();
            let ns = meta_str(&obj, "namespace").map(String::from);
            let rev: i64 = meta_str(&obj, "resourceVersion")
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            let key = req.info.key(ns.as_deref(), &name);
            match self
                .delete_object(&req.info, &key, obj.clone(), rev, &opts)
                .await
            {
                Ok(_) => deleted.push(list_item(obj)),
                // Changed or gone meanwhile: kube skips it too (its next list sees it).
                Err(ApiError::NotFound(_) | ApiError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let list = json!({
            "kind": req.info.list_kind(),
            "apiVersion": req.info.api_version(),
            "metadata": {"resourceVersion": listed.revision.to_string()},
            "items": deleted,
        });
        Ok(json_response(StatusCode::OK, &list))
    }
}
