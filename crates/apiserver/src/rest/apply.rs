//! Server-side apply (`PATCH` with `application/apply-patch+yaml`): the configuration a field
//! manager sends is merged into the object (lists by their patch strategy, as
//! `strategic.rs`), the manager owns exactly the fields of its configuration (an `Apply`
//! entry in managedFields), fields it owned before and no longer sends are removed unless
//! another manager owns them too, and changing a field another manager owns is a 409 naming
//! that manager and field — unless `force=true`, which takes the field over.
//!
//! Simplifications (documented): the field sets of `managed.rs` (one merge key per list); a
//! create by apply goes through the ordinary create path; at a converted version (autoscaling/v1
//! HPAs, events.k8s.io Events) other managers' entries are compared as they are, not converted
//! to the request's version as kube's version converter does.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::managed::{entries, entry, field_set, from_fields, get, remove, render, Path, Seg};
use super::object::{check_type, meta_str};
use super::strategic::{strategy, Strategy};
use super::update::Part;
use super::{json_response, Req};
use crate::registry::ResourceInfo;
use crate::status::{ApiError, ApiResult, Cause};
use crate::ApiServer;

use super::patch::RETRIES;

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}.{b}")
    }
}

/// Merges the applied configuration `config` into `target`.
fn merge(info: &ResourceInfo, target: &mut Value, config: &Value, fields: &str) {
    let (Some(t), Some(c)) = (target.as_object_mut(), config.as_object()) else {
        *target = config.clone();
        return;
    };
    for (k, v) in c {
        let path = join(fields, k);
        match v {
            Value::Null => {}
            Value::Object(_) => {
                let slot = t.entry(k.clone()).or_insert(Value::Null);
                if slot.is_object() {
                    merge(info, slot, v, &path);
                } else {
                    *slot = v.clone();
                }
            }
            Value::Array(items) => {
                let slot = t.entry(k.clone()).or_insert(Value::Array(Vec::new()));
                match (strategy(info, &path), slot.as_array_mut()) {
                    (Strategy::MergeKey(key), Some(cur)) => {
                        for item in items {
                            match cur
                                .iter_mut()
                                .find(|c| c.get(key).is_some() && c.get(key) == item.get(key))
                            {
                                Some(existing) => merge(info, existing, item, &path),
                                None => cur.push(item.clone()),
                            }
                        }
                    }
                    (Strategy::MergePrimitive, Some(cur)) => {
                        for item in items {
                            if !cur.contains(item) {
                                cur.push(item.clone());
                            }
                        }
                    }
                    _ => *slot = v.clone(),
                }
            }
            scalar => {
                t.insert(k.clone(), scalar.clone());
            }
        }
    }
}

/// How SMD names a manager in conflict messages.
fn describe(e: &Value) -> String {
    let mut s = format!("{:?}", e["manager"].as_str().unwrap_or(""));
    if let Some(sub) = e["subresource"].as_str().filter(|s| !s.is_empty()) {
        s = format!("{s} with subresource {sub:?}");
    }
    if e["operation"] == "Update" {
        s = format!("{s} using {}", e["apiVersion"].as_str().unwrap_or(""));
    }
    s
}

/// kube's `getConflictMessage`.
fn conflict_error(conflicts: &[(String, Path)]) -> ApiError {
    let causes = conflicts
        .iter()
        .map(|(who, p)| Cause {
            reason: "FieldManagerConflict".into(),
            message: format!("conflict with {who}"),
            field: render(p),
        })
        .collect();
    let message = if conflicts.len() == 1 {
        let (who, p) = &conflicts[0];
        format!(
            "Apply failed with 1 conflict: conflict with {who}: {}",
            render(p)
        )
    } else {
        let mut managers: Vec<&String> = conflicts.iter().map(|(w, _)| w).collect();
        managers.sort();
        managers.dedup();
        let mut lines = Vec::new();
        for m in managers {
            lines.push(format!("conflicts with {m}:"));
            for (_, p) in conflicts.iter().filter(|(w, _)| w == m) {
                lines.push(format!("- {}", render(p)));
            }
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    ApiError::ApplyConflict { message, causes }
}

/// The object after `manager` applies `config` to `current`, and its managedFields.
fn apply_to(
    info: &ResourceInfo,
    current: &Value,
    config: &Value,
    manager: &str,
    force: bool,
) -> ApiResult<(Value, Vec<Value>)> {
    let applied = field_set(info, config);
    let old = entries(current);
    let is_mine = |e: &Value| {
        e["manager"] == manager
            && e["operation"] == "Apply"
            && e["subresource"].as_str().unwrap_or("").is_empty()
    };
    let previous: BTreeSet<Path> = old
        .iter()
        .find(|e| is_mine(e))
        .map(|e| from_fields(&e["fieldsV1"]))
        .unwrap_or_default();
    let mut conflicts: Vec<(String, Path)> = Vec::new();
    let mut others: Vec<(Value, BTreeSet<Path>)> = Vec::new();
    for e in old.iter().filter(|e| !is_mine(e)) {
        let set = from_fields(&e["fieldsV1"]);
        for p in set.intersection(&applied) {
            if matches!(p.last(), Some(Seg::Key(_) | Seg::Value(_))) {
                continue;
            }
            if get(config, p) != get(current, p) {
                conflicts.push((describe(e), p.clone()));
            }
        }
        others.push((e.clone(), set));
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(&conflicts));
    }
    let mut result = current.clone();
    for p in previous.difference(&applied) {
        if !others.iter().any(|(_, s)| s.contains(p)) {
            remove(&mut result, p);
        }
    }
    merge(info, &mut result, config, "");
    let unchanged = {
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(m) = v["metadata"].as_object_mut() {
                m.remove("managedFields");
            }
            v
        };
        strip(&result) == strip(current) && previous == applied
    };
    if unchanged {
        return Ok((result, old));
    }
    let taken: BTreeSet<&Path> = conflicts.iter().map(|(_, p)| p).collect();
    let mut managed = Vec::new();
    let mut placed = false;
    for e in &old {
        if is_mine(e) {
            managed.push(entry(manager, "Apply", &info.api_version(), "", &applied));
            placed = true;
            continue;
        }
        let Some((_, set)) = others.iter().find(|(o, _)| o == e) else {
            continue;
        };
        let set: BTreeSet<Path> = set
            .iter()
            .filter(|p| !taken.contains(p) && get(&result, p).is_some())
            .cloned()
            .collect();
        if !set.is_empty() {
            let mut e = e.clone();
            e["fieldsV1"] = super::managed::to_fields(&set);
            managed.push(e);
        }
    }
    if !placed {
        managed.push(entry(manager, "Apply", &info.api_version(), "", &applied));
    }
    Ok((result, managed))
}

/// An apply request's parts: the field manager, `force`, the configuration (checked at the
/// request's version `info`) and the warnings of `fieldValidation=Warn`.
struct ApplyRequest {
    manager: String,
    force: bool,
    config: Value,
    warnings: Vec<String>,
}

impl ApplyRequest {
    /// Parses and checks the apply configuration of `req`, a request at the version of `info`.
    fn parse(info: &ResourceInfo, req: &Req) -> ApiResult<ApplyRequest> {
        let Some(manager) = req.query.non_empty("fieldManager").map(String::from) else {
            return Err(ApiError::Invalid {
                target: crate::status::Target {
                    name: String::new(),
                    group: "meta.k8s.io".into(),
                    kind: "PatchOptions".into(),
                    qualified: "PatchOptions.meta.k8s.io".into(),
                },
                causes: vec![Cause::required(
                    "fieldManager",
                    "is required for apply patch",
                )],
            });
        };
        let force = req.query.flag("force");
        let mut config: Value = serde_saphyr::from_slice(&req.body)
            .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?;
        if !config.is_object() {
            return Err(ApiError::BadRequest(
                "error decoding YAML: the apply configuration is not an object".into(),
            ));
        }
        check_type(info, &mut config)?;
        let name = meta_str(&config, "name").unwrap_or("").to_string();
        if name != req.name() {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({name}) does not match the name on the URL ({})",
                req.name()
            )));
        }
        if let (Some(ns), Some(body_ns)) = (req.namespace(), meta_str(&config, "namespace")) {
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::BadRequest(format!(
                    "the namespace of the object ({body_ns}) does not match the namespace on the request ({ns})"
                )));
            }
        }
        let mode = super::fields::Validation::of(&req.query)?;
        super::fields::check_types(info, &config, super::fields::Body::Apply)?;
        let warnings = super::fields::check(info, &mut config, mode, false)?;
        Ok(ApplyRequest {
            manager,
            force,
            config,
            warnings,
        })
    }
}

impl ApiServer {
    pub(crate) async fn apply(&self, req: &Req) -> ApiResult<Response> {
        self.apply_at(req, &req.info, None).await
    }

    /// Server-side apply at a version served over another version's storage (`req` is
    /// already the storage version's request, `info` the version the client applied at), as
    /// kube-apiserver's field manager runs on the request's version: the stored object is
    /// converted to `info`'s version, the configuration applied there (managedFields entries
    /// name that version), and the result converted back for the write.
    pub(crate) async fn apply_converted(
        &self,
        req: &Req,
        info: &ResourceInfo,
        conv: &'static super::convert::Conversion,
    ) -> ApiResult<Response> {
        self.apply_at(req, info, Some(conv)).await
    }

    /// Applies `req`'s configuration, checked and merged at the version of `info`; stored at
    /// `req.info`'s version through `conv` when the two differ.
    async fn apply_at(
        &self,
        req: &Req,
        info: &ResourceInfo,
        conv: Option<&'static super::convert::Conversion>,
    ) -> ApiResult<Response> {
        let ApplyRequest {
            manager,
            force,
            config,
            warnings,
        } = ApplyRequest::parse(info, req)?;
        let to_storage = |v: &Value| conv.map_or_else(|| v.clone(), |c| (c.to_storage)(v));
        let mut opts = req.write_opts()?;
        opts.manager = manager.clone();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.get_current(req, None).await {
                Err(ApiError::NotFound(_)) => {
                    let set = field_set(info, &config);
                    opts.apply = Some(vec![entry(
                        &manager,
                        "Apply",
                        &info.api_version(),
                        "",
                        &set,
                    )]);
                    let mut obj = to_storage(&config);
                    match self
                        .create_object(&req.info, req.namespace(), &mut obj, &opts)
                        .await
                    {
                        Ok(created) => {
                            return Ok(super::fields::with_warnings(
                                json_response(StatusCode::CREATED, &created),
                                &warnings,
                            ))
                        }
                        Err(ApiError::AlreadyExists(_)) if attempt < RETRIES => continue,
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
                Ok((current, rev)) => {
                    let view = conv.map_or_else(|| current.clone(), |c| (c.from_storage)(&current));
                    let (result, managed) = apply_to(info, &view, &config, &manager, force)?;
                    opts.apply = Some(managed);
                    match self
                        .write_update(
                            &req.info,
                            &req.key(),
                            current,
                            rev,
                            to_storage(&result),
                            Part::Main,
                            &opts,
                        )
                        .await
                    {
                        Err(ApiError::Conflict { .. }) if attempt < RETRIES => continue,
                        Err(e) => return Err(e),
                        Ok(stored) => {
                            return Ok(super::fields::with_warnings(
                                json_response(StatusCode::OK, &stored),
                                &warnings,
                            ))
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conflicts_and_ownership() {
        let info = crate::registry::Registry::builtin()
            .lookup("", "v1", "configmaps")
            .unwrap()
            .clone();
        let current = json!({"metadata": {"name": "x", "managedFields": [
            {"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}, "f:b": {}}}}]},
            "data": {"a": "1", "b": "2"}});
        // Same value: shared ownership, no conflict.
        let (r, mf) =
            apply_to(&info, &current, &json!({"data": {"a": "1"}}), "ssa", false).unwrap();
        assert_eq!(r["data"], json!({"a": "1", "b": "2"}));
        assert_eq!(mf.len(), 2);
        assert_eq!(mf[1]["operation"], "Apply");
        // Different value: a conflict naming the manager and the field.
        let err =
            apply_to(&info, &current, &json!({"data": {"a": "9"}}), "ssa", false).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using v1: .data.a"#
        );
        // Forced: taken over.
        let (r, mf) = apply_to(&info, &current, &json!({"data": {"a": "9"}}), "ssa", true).unwrap();
        assert_eq!(r["data"]["a"], "9");
        assert_eq!(mf[0]["fieldsV1"], json!({"f:data": {"f:b": {}}}));
        // Dropping a field this manager alone owned removes it.
        let mut owned = r.clone();
        owned["metadata"]["managedFields"] = Value::Array(mf);
        let mut with_c = owned.clone();
        let (r2, mf2) = apply_to(
            &info,
            &owned,
            &json!({"data": {"a": "9", "c": "3"}}),
            "ssa",
            false,
        )
        .unwrap();
        with_c["data"] = r2["data"].clone();
        with_c["metadata"]["managedFields"] = Value::Array(mf2);
        let (r3, _) = apply_to(&info, &with_c, &json!({"data": {"a": "9"}}), "ssa", false).unwrap();
        assert_eq!(r3["data"], json!({"a": "9", "b": "2"}));
    }
}
