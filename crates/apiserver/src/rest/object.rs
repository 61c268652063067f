//! Objects as stored JSON: metadata helpers (uid, timestamps, generated names), the
//! stored-bytes codec (no `resourceVersion` inside; it is the key's `mod_revision`), and the
//! create-time checks every kind shares.

use barge_datastore::KeyValue;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::registry::ResourceInfo;
use crate::status::{ApiError, ApiResult, Cause, Target};
use crate::validation::{metadata_map_causes, name_errors, NameRule};

/// Now as kube's `metav1.Time` (RFC 3339, seconds, UTC).
pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A random RFC 4122 version-4 UUID.
pub fn new_uid() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).unwrap_or_else(|_| {
        // getrandom cannot fail on Linux ≥ 3.17; fall back to the clock rather than panic.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        b = t.to_le_bytes();
    });
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// kube's `generateName` suffix: 5 characters from `bcdfghjklmnpqrstvwxz2456789`.
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut b = [0u8; 5];
    let _ = getrandom::fill(&mut b);
    b.iter()
        .map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char)
        .collect()
}

/// `obj.metadata` (created as `{}` if absent or not an object).
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

/// A string field of `obj.metadata`.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// Decodes a stored value and sets `metadata.resourceVersion` to the key's mod_revision.
pub fn decode(kv: &KeyValue) -> ApiResult<Value> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::Internal(format!("stored object {} is corrupt: {e}", kv.key)))?;
    meta_mut(&mut obj).insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
    Ok(obj)
}

/// The bytes to store: the object without `metadata.resourceVersion`.
pub fn encode(obj: &Value) -> Vec<u8> {
    let mut obj = obj.clone();
    meta_mut(&mut obj).remove("resourceVersion");
    serde_json::to_vec(&obj).unwrap_or_default()
}

/// Sets `kind`/`apiVersion` to the resource's, after checking the body's agree with the
/// URL (kube's "the API version in the data … does not match" / "cannot be handled as").
pub fn check_type(info: &ResourceInfo, obj: &mut Value) -> ApiResult<()> {
    let api_version = info.api_version();
    let got_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let got_kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if !got_version.is_empty() && got_version != api_version {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({got_version}) does not match the expected API version ({api_version})"
        )));
    }
    if !got_kind.is_empty() && got_kind != info.kind {
        let version = got_version.rsplit('/').next().unwrap_or(info.version);
        return Err(ApiError::BadRequest(format!(
            "{got_kind} in version {version:?} cannot be handled as a {}: the kind of the object ({got_kind}) does not match the kind of the request ({})",
            info.kind, info.kind
        )));
    }
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(info.kind);
    Ok(())
}

/// An Invalid error about `info`'s object `name` (details.kind = the Kind, as kube).
pub fn invalid(info: &ResourceInfo, name: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::Invalid {
        target: Target {
            name: name.into(),
            group: info.group.into(),
            kind: info.kind.into(),
            // kube's GroupKind.String(): `ConfigMap`, `Deployment.apps`.
            qualified: if info.group.is_empty() {
                info.kind.into()
            } else {
                format!("{}.{}", info.kind, info.group)
            },
        },
        causes,
    }
}

/// Validates the name and the label/annotation keys of an object about to be written and, with
/// `spec`, its kind's fields (`validation::spec_causes`; kube validates after defaulting).
pub fn validate_meta(info: &ResourceInfo, obj: &Value, spec: bool) -> ApiResult<()> {
    let name = meta_str(obj, "name").unwrap_or("");
    let mut causes = Vec::new();
    if name.is_empty() {
        causes.push(Cause::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        for e in name_errors(name, NameRule::of(info.group, info.plural)) {
            causes.push(Cause::invalid("metadata.name", name, &e));
        }
    }
    if let Some(meta) = obj.get("metadata") {
        causes.extend(metadata_map_causes(meta));
    }
    if spec {
        causes.extend(crate::validation::spec_causes(info.group, info.plural, obj));
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(invalid(info, name, causes))
    }
}

/// Conversions kube applies to every write of a kind: a Secret's write-only `stringData`
/// is merged into `data` (base64), overriding keys of the same name.
pub fn normalize(info: &ResourceInfo, obj: &mut Value) {
    if (info.group, info.plural) == ("", "secrets") {
        let Some(string_data) = obj.as_object_mut().and_then(|m| m.remove("stringData")) else {
            return;
        };
        if !obj["data"].is_object() {
            obj["data"] = json!({});
        }
        for (k, v) in string_data.as_object().into_iter().flatten() {
            let raw = v.as_str().unwrap_or_default();
            obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(raw));
        }
    }
}

/// The part of an object whose change bumps `metadata.generation`: everything but
/// `metadata` and `status`.
pub fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

/// The object's finalizers (`metadata.finalizers`, plus a namespace's `spec.finalizers`).
pub fn has_finalizers(obj: &Value) -> bool {
    let non_empty = |v: Option<&Value>| v.and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    non_empty(obj.get("metadata").and_then(|m| m.get("finalizers")))
        || non_empty(obj.get("spec").and_then(|s| s.get("finalizers")))
}

/// A list response's item: built-in lists carry no per-item kind/apiVersion.
pub fn list_item(mut obj: Value) -> Value {
    if let Some(m) = obj.as_object_mut() {
        m.remove("kind");
        m.remove("apiVersion");
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_and_names() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, new_uid());
        let s = name_suffix();
        assert_eq!(s.len(), 5);
        assert!(s.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        assert!(now().ends_with('Z'));
    }
}
