//! Strategic merge patch (`application/strategic-merge-patch+json`) and the list strategies
//! the apply and managed-fields code share, both from the embedded v1.33 schema's patch
//! metadata ([`crate::schema`]; the algorithm is [`crate::strategic`]) — never a table
//! written by hand or a guess from field names.

use serde_json::Value;

use crate::registry::ResourceInfo;
use crate::schema::definitions;
use crate::status::{ApiError, ApiResult};
use crate::strategic::StrategicPatchError;

/// How a list field is merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// `patchStrategy:"merge"` with `patchMergeKey:"<key>"`.
    MergeKey(&'static str),
    /// `patchStrategy:"merge"` on a list of primitives: set union.
    MergePrimitive,
    /// No strategy: the new list replaces the old.
    Replace,
}

/// The strategy of the list at `path` (field names joined by `.`, list indices dropped) in
/// objects of `info`'s kind.
pub(crate) fn strategy(info: &ResourceInfo, path: &str) -> Strategy {
    let Some(mut cur) = definitions().kind(info.group, info.version, info.kind) else {
        return Strategy::Replace;
    };
    let mut field = None;
    for seg in path.split('.') {
        let Some(f) = cur.field(seg) else {
            return Strategy::Replace;
        };
        field = Some(f);
        cur = f.items().unwrap_or(f);
    }
    let Some(f) = field else {
        return Strategy::Replace;
    };
    if f.patch_meta().strategy != "merge" {
        return Strategy::Replace;
    }
    match f.merge_key() {
        Some(key) => Strategy::MergeKey(key),
        None => Strategy::MergePrimitive,
    }
}

/// Applies the strategic merge patch `patch` to `doc` (an object of `info`'s kind).
pub(crate) fn apply(info: &ResourceInfo, doc: &mut Value, patch: &Value) -> ApiResult<()> {
    let schema = definitions().kind(info.group, info.version, info.kind);
    if !doc.is_object() {
        *doc = Value::Object(Default::default());
    }
    match crate::strategic::apply(doc, patch, schema) {
        Ok(v) => {
            *doc = v;
            Ok(())
        }
        Err(e) => Err(status_of(e)),
    }
}

/// kube-apiserver's status for a patch that cannot be applied
/// (`interpretStrategicMergePatchError`).
fn status_of(e: StrategicPatchError) -> ApiError {
    match e.status_code() {
        400 => ApiError::BadRequest(e.to_string()),
        422 => ApiError::Unprocessable(e.to_string()),
        _ => ApiError::Internal(e.to_string()),
    }
}
