//! `PATCH`: JSON Patch (RFC 6902), JSON Merge Patch (RFC 7396) and strategic merge patch, applied in a GuaranteedUpdate loop (a concurrent write re-reads and
//! re-applies; a `resourceVersion` inside the patch is a precondition instead).
//!
//! Strategic merge patch is in `strategic.rs`.
//!
//! Server-side apply (`application/apply-patch+yaml`) is in `apply.rs`.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::object::{check_type, meta_str};
use super::update::{Part, MODIFIED};
use super::{json_response, Req};
use crate::registry::ResourceInfo;
use crate::request::media_type;
use crate::status::{ApiError, ApiResult};
use crate::ApiServer;

/// How many times a patch or apply is redone after losing a race to another writer. kube's
/// `GuaranteedUpdate` retries storage conflicts without bound; a bound well above any burst of
/// concurrent writers to one object (each lost race means another writer won) keeps a bug
/// from looping forever.
pub(super) const RETRIES: usize = 1024;

/// A parsed patch document.
pub(crate) enum PatchDoc {
    Json(json_patch::Patch),
    Merge(Value),
    Strategic(Value),
}

impl PatchDoc {
    /// Parses a patch body of `media` type.
    pub(crate) fn parse(media: &str, body: &[u8]) -> ApiResult<Self> {
        let unsupported = || {
            ApiError::UnsupportedMediaType(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json".into(),
            )
        };
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?;
        match media {
            "application/json-patch+json" => serde_json::from_value(value)
                .map(PatchDoc::Json)
                .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}"))),
            "application/merge-patch+json" => {
                if !value.is_object() {
                    return Err(ApiError::BadRequest(
                        "error decoding patch: a merge patch must be a JSON object".into(),
                    ));
                }
                Ok(PatchDoc::Merge(value))
            }
            "application/strategic-merge-patch+json" => {
                if !value.is_object() {
                    return Err(ApiError::BadRequest(
                        "error decoding patch: a strategic merge patch must be a JSON object"
                            .into(),
                    ));
                }
                Ok(PatchDoc::Strategic(value))
            }
            _ => Err(unsupported()),
        }
    }

    /// Applies the patch to `doc`, an object of `info`'s kind.
    pub(crate) fn apply(&self, info: &ResourceInfo, doc: &mut Value) -> ApiResult<()> {
        match self {
            PatchDoc::Json(p) => {
                json_patch::patch(doc, p).map_err(|e| ApiError::Unprocessable(e.to_string()))
            }
            PatchDoc::Merge(m) => {
                json_patch::merge(doc, m);
                Ok(())
            }
            PatchDoc::Strategic(p) => super::strategic::apply(info, doc, p),
        }
    }
}

impl ApiServer {
    pub(crate) async fn patch(&self, req: &Req) -> ApiResult<Response> {
        if media_type(&req.headers) == "application/apply-patch+yaml"
            && req.path.subresource.is_none()
        {
            return self.apply(req).await;
        }
        super::custom::check_patch_type(&req.info, &media_type(&req.headers))?;
        let doc = PatchDoc::parse(&media_type(&req.headers), &req.body)?;
        let part = Part::of(req.path.subresource.as_deref());
        let mode = super::fields::Validation::of(&req.query)?;
        let warnings = std::sync::Mutex::new(Vec::new());
        let stored = self
            .guaranteed_update(
                req,
                |obj| {
                    doc.apply(&req.info, obj)?;
                    check_type(&req.info, obj)?;
                    super::fields::check_types(&req.info, obj, super::fields::Body::Patch)?;
                    let w = super::fields::check(&req.info, obj, mode, false)?;
                    *warnings.lock().unwrap_or_else(|e| e.into_inner()) = w;
                    Ok(())
                },
                part,
            )
            .await?;
        let warnings = warnings.into_inner().unwrap_or_else(|e| e.into_inner());
        Ok(super::fields::with_warnings(
            json_response(StatusCode::OK, &stored),
            &warnings,
        ))
    }

    /// Reads the URL's object, lets `mutate` change it, writes it under `part`'s rules; on a
    /// lost race re-reads and tries again. A `resourceVersion` the mutation leaves differing
    /// from the read one is a precondition failure (409) instead.
    pub(crate) async fn guaranteed_update(
        &self,
        req: &Req,
        mutate: impl Fn(&mut Value) -> ApiResult<()>,
        part: Part,
    ) -> ApiResult<Value> {
        let opts = req.write_opts()?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (old, rev) = self.get_current(req, None).await?;
            let mut new = old.clone();
            mutate(&mut new)?;
            let rv = meta_str(&new, "resourceVersion").unwrap_or("");
            if !rv.is_empty() && rv != rev.to_string() {
                return Err(ApiError::Conflict {
                    target: req.target(),
                    why: MODIFIED.into(),
                });
            }
            if meta_str(&new, "name") != Some(req.name()) {
                return Err(ApiError::BadRequest(format!(
                    "the name of the object ({}) does not match the name on the URL ({})",
                    meta_str(&new, "name").unwrap_or(""),
                    req.name()
                )));
            }
            match self
                .write_update(&req.info, &req.key(), old, rev, new, part, &opts)
                .await
            {
                Err(ApiError::Conflict { .. }) if attempt < RETRIES => continue,
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info() -> ResourceInfo {
        crate::registry::Registry::builtin()
            .lookup("", "v1", "configmaps")
            .unwrap()
            .clone()
    }

    #[test]
    fn patch_kinds() {
        let mut doc = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "data": {"x": "y"}});
        PatchDoc::parse(
            "application/merge-patch+json",
            br#"{"metadata":{"labels":{"a":null,"c":"3"}}}"#,
        )
        .unwrap()
        .apply(&info(), &mut doc)
        .unwrap();
        assert_eq!(doc["metadata"]["labels"], json!({"b": "2", "c": "3"}));
        PatchDoc::parse(
            "application/json-patch+json",
            br#"[{"op":"replace","path":"/data/x","value":"z"}]"#,
        )
        .unwrap()
        .apply(&info(), &mut doc)
        .unwrap();
        assert_eq!(doc["data"]["x"], "z");
        let bad = PatchDoc::parse(
            "application/json-patch+json",
            br#"[{"op":"remove","path":"/nope"}]"#,
        )
        .unwrap()
        .apply(&info(), &mut doc);
        assert!(matches!(bad, Err(ApiError::Unprocessable(_))));
        PatchDoc::parse(
            "application/strategic-merge-patch+json",
            br#"{"data":{"$patch":"delete"},"metadata":{"annotations":{"k":"v"}}}"#,
        )
        .unwrap()
        .apply(&info(), &mut doc)
        .unwrap();
        assert!(doc.get("data").is_none());
        assert_eq!(doc["metadata"]["annotations"]["k"], "v");
        assert!(matches!(
            PatchDoc::parse("application/apply-patch+yaml", b"{}"),
            Err(ApiError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            PatchDoc::parse("application/merge-patch+json", b"{bad"),
            Err(ApiError::BadRequest(_))
        ));
    }
}
