//! `PUT` (update) of an object, its `status`, or a namespace's `finalize`: optimistic
//! concurrency on `metadata.resourceVersion`, server-owned metadata kept, `generation` bumped
//! when the spec changes, no write when nothing changed (kube's GuaranteedUpdate shortcut).

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::object::{
    check_type, decode, encode, has_finalizers, meta_mut, meta_str, spec_part, validate_meta,
};
use super::{json_response, Req};
use crate::registry::ResourceInfo;
use crate::request::{decode_object, media_type};
use crate::status::{ApiError, ApiResult, Target};
use crate::ApiServer;

/// kube's `OptimisticLockErrorMsg`.
pub(crate) const MODIFIED: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

/// Which part of the object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// The main resource: everything but `status` when the kind has a status subresource.
    Main,
    /// The `status` subresource: only `status`.
    Status,
    /// A namespace's `finalize` subresource: only `spec.finalizers`.
    Finalize,
    /// A pod's `ephemeralcontainers` subresource: only `spec.ephemeralContainers`, and only
    /// additions (kube's `ValidatePodEphemeralContainersUpdate`).
    Ephemeral,
    /// A pod's `binding` subresource: the object as the server computed it from the stored
    /// one (`spec.nodeName`, annotations and the `PodScheduled` condition in one write).
    Binding,
}

impl Part {
    pub(crate) fn of(sub: Option<&str>) -> Self {
        match sub {
            Some("status") => Part::Status,
            Some("finalize") => Part::Finalize,
            Some("ephemeralcontainers") => Part::Ephemeral,
            _ => Part::Main,
        }
    }
}

impl ApiServer {
    pub(crate) async fn update(&self, req: &Req) -> ApiResult<Response> {
        let mut new = decode_object(&media_type(&req.headers), &req.body)?;
        check_type(&req.info, &mut new)?;
        super::fields::check_types(&req.info, &new, super::fields::Body::Object)?;
        let body_name = meta_str(&new, "name").unwrap_or("");
        if body_name != req.name() {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({})",
                req.name()
            )));
        }
        if let Some(ns) = req.namespace() {
            let body_ns = meta_str(&new, "namespace").unwrap_or("");
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::BadRequest(format!(
                    "the namespace of the object ({body_ns}) does not match the namespace on the request ({ns})"
                )));
            }
        }
        let opts = req.write_opts()?;
        let mode = super::fields::Validation::of(&req.query)?;
        let warnings = super::fields::check(&req.info, &mut new, mode, true)?;
        let (old, rev) = self.get_current(req, None).await?;
        let want = meta_str(&new, "resourceVersion").unwrap_or("");
        if !want.is_empty() && want != rev.to_string() {
            return Err(ApiError::Conflict {
                target: req.target(),
                why: MODIFIED.into(),
            });
        }
        let part = Part::of(req.path.subresource.as_deref());
        let stored = self
            .write_update(&req.info, &req.key(), old, rev, new, part, &opts)
            .await?;
        Ok(super::fields::with_warnings(
            json_response(StatusCode::OK, &stored),
            &warnings,
        ))
    }

    /// Writes `new` over `old` (read at mod_revision `rev`) under `part`'s rules; a
    /// concurrent change is [`ApiError::Conflict`]. Returns the stored object.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn write_update(
        &self,
        info: &ResourceInfo,
        key: &str,
        old: Value,
        rev: i64,
        mut new: Value,
        part: Part,
        opts: &super::WriteOpts,
    ) -> ApiResult<Value> {
        let old = super::custom::at_storage_version(info, old);
        let dry_run = opts.dry_run;
        let name = meta_str(&old, "name").unwrap_or("").to_string();
        let target = Target::resource(info, &name);
        let mut result = match part {
            Part::Main => {
                if info.has_status() {
                    match old.get("status") {
                        Some(s) => new["status"] = s.clone(),
                        None => {
                            if let Some(m) = new.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                // Server-owned metadata comes from the stored object.
                let old_meta = old["metadata"].clone();
                let meta = meta_mut(&mut new);
                for field in [
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                    "namespace",
                    "name",
                ] {
                    match old_meta.get(field) {
                        Some(v) => meta.insert(field.into(), v.clone()),
                        None => meta.remove(field),
                    };
                }
                meta.remove("selfLink");
                // A namespace's spec.finalizers change only through `finalize`.
                if (info.group, info.plural) == ("", "namespaces") {
                    new["spec"] = json!({"finalizers": old["spec"]["finalizers"].clone()});
                }
                new
            }
            Part::Status => {
                let mut r = old.clone();
                match new.get("status") {
                    Some(s) => r["status"] = s.clone(),
                    None => {
                        if let Some(m) = r.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                r
            }
            Part::Binding => new,
            Part::Ephemeral => {
                let mut r = old.clone();
                match new["spec"].get("ephemeralContainers") {
                    Some(e) if !e.is_null() => r["spec"]["ephemeralContainers"] = e.clone(),
                    _ => {
                        if let Some(m) = r["spec"].as_object_mut() {
                            m.remove("ephemeralContainers");
                        }
                    }
                }
                r
            }
            Part::Finalize => {
                let mut r = old.clone();
                if !r["spec"].is_object() {
                    r["spec"] = json!({});
                }
                r["spec"]["finalizers"] = new["spec"]["finalizers"].clone();
                r
            }
        };
        super::object::normalize(info, &mut result);
        if part == Part::Main {
            super::defaults::apply(info, &mut result);
            if (info.group, info.plural) == ("", "services") {
                super::services::drop_type_dependent_fields(&old, &mut result);
            }
            let causes = super::immutable::check(info, &old, &mut result);
            if !causes.is_empty() {
                return Err(super::object::invalid(info, &name, causes));
            }
        }
        if part == Part::Ephemeral {
            super::defaults::apply(info, &mut result);
            let causes = crate::validation::pod::ephemeral_update_causes(&old, &result);
            if !causes.is_empty() {
                return Err(super::object::invalid(info, &name, causes));
            }
        }
        super::custom::admit(info, &mut result, Some(&old))?;
        if info.generation
            && (spec_part(&result) != spec_part(&old)
                || super::custom::status_bumps_generation(info, &old, &result))
        {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            meta_mut(&mut result).insert("generation".into(), json!(generation));
        }
        validate_meta(info, &result, matches!(part, Part::Main | Part::Ephemeral))?;
        if part == Part::Main && info.namespaced {
            let ns = meta_str(&result, "namespace").unwrap_or("").to_string();
            // LimitRanger takes claim updates (a resize) too, unless the claim is being
            // deleted.
            if (info.group, info.plural) == ("", "persistentvolumeclaims")
                && old["metadata"]["deletionTimestamp"].is_null()
            {
                self.admit_claim_limit_ranges(info, &ns, &result).await?;
            }
            self.admit_quota_update(info, &ns, &old, &result).await?;
        }
        let subresource = match part {
            Part::Status => "status",
            Part::Ephemeral => "ephemeralcontainers",
            Part::Main | Part::Finalize | Part::Binding => "",
        };
        // managedFields come from the stored object, never from the client.
        match old["metadata"].get("managedFields") {
            Some(m) => meta_mut(&mut result).insert("managedFields".into(), m.clone()),
            None => meta_mut(&mut result).remove("managedFields"),
        };
        super::managed::track(info, Some(&old), &mut result, opts, subresource);
        meta_mut(&mut result).insert("resourceVersion".into(), json!(rev.to_string()));
        let bytes = encode(&result);
        if bytes == encode(&old) {
            return Ok(old);
        }
        if dry_run {
            return Ok(result);
        }
        let conflict = |e: barge_datastore::Error| match e {
            barge_datastore::Error::Conflict { .. } => ApiError::Conflict {
                target: target.clone(),
                why: MODIFIED.into(),
            },
            barge_datastore::Error::NotFound { .. } => ApiError::NotFound(target.clone()),
            other => other.into(),
        };
        // The last finalizer of an object being deleted is gone: the object goes.
        if old["metadata"].get("deletionTimestamp").is_some() && !has_finalizers(&result) {
            let kv = self.store.delete(key, Some(rev)).await.map_err(conflict)?;
            self.release_service(info, &old).await;
            meta_mut(&mut result)
                .insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
            return Ok(result);
        }
        if part == Part::Main && (info.group, info.plural) == ("", "services") {
            // ClusterIP and node ports follow the new type and ports (rest/services.rs).
            let (taken, release) = self
                .reallocate_service(info, &old, &mut result, false)
                .await?;
            let bytes = encode(&result);
            return match self.store.update(key, bytes, rev).await {
                Ok(kv) => {
                    self.release_keys(&release, &old["metadata"]["uid"]).await;
                    decode(&kv)
                }
                Err(e) => {
                    self.release_keys(&taken.0, &old["metadata"]["uid"]).await;
                    Err(conflict(e))
                }
            };
        }
        let kv = self.store.update(key, bytes, rev).await.map_err(conflict)?;
        decode(&kv)
    }
}
