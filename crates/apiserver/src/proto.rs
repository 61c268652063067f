//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`), decoded into
//! JSON for the kinds kubectl's typed `create` subcommands send (kubectl 1.32 posts
//! `create namespace|configmap|secret|serviceaccount|role|rolebinding|clusterrole|
//! clusterrolebinding` as protobuf; everything else it sends as JSON).
//!
//! Wire format (`k8s.io/apimachinery/pkg/runtime/serializer/protobuf`): the magic
//! `k8s\0`, then a `runtime.Unknown` message (1 typeMeta {1 apiVersion, 2 kind}, 2 raw,
//! 3 contentEncoding, 4 contentType) whose `raw` is the object's message. Field numbers come
//! from the `generated.proto` files of k8s.io/api and k8s.io/apimachinery.
//!
//! TODO(issue 10): the other kinds (`create deployment|job|cronjob|service|ingress|…`) and
//! protobuf responses; until then those bodies are 415.

use base64::Engine;
use serde_json::{json, Map, Value};

/// A body that is not a protobuf object barge can decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtoError {
    #[error(
        "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
    )]
    Magic,
    #[error("protobuf decoding error: {0}")]
    Malformed(&'static str),
    /// A kind whose schema barge does not carry.
    #[error("{0}")]
    Unsupported(String),
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bool,
    Int,
    Msg(&'static [Field]),
    /// `metav1.Time` {1 seconds, 2 nanos} → RFC 3339.
    Time,
    MapStr,
    MapBytes,
}

#[derive(Clone, Copy)]
struct Field {
    num: u64,
    name: &'static str,
    kind: Kind,
    repeated: bool,
}

const fn f(num: u64, name: &'static str, kind: Kind) -> Field {
    Field {
        num,
        name,
        kind,
        repeated: false,
    }
}

const fn r(num: u64, name: &'static str, kind: Kind) -> Field {
    Field {
        num,
        name,
        kind,
        repeated: true,
    }
}

const OWNER_REFERENCE: &[Field] = &[
    f(1, "kind", Kind::Str),
    f(3, "name", Kind::Str),
    f(4, "uid", Kind::Str),
    f(5, "apiVersion", Kind::Str),
    f(6, "controller", Kind::Bool),
    f(7, "blockOwnerDeletion", Kind::Bool),
];
const OBJECT_META: &[Field] = &[
    f(1, "name", Kind::Str),
    f(2, "generateName", Kind::Str),
    f(3, "namespace", Kind::Str),
    f(5, "uid", Kind::Str),
    f(6, "resourceVersion", Kind::Str),
    f(7, "generation", Kind::Int),
    f(8, "creationTimestamp", Kind::Time),
    f(10, "deletionGracePeriodSeconds", Kind::Int),
    f(11, "labels", Kind::MapStr),
    f(12, "annotations", Kind::MapStr),
    r(13, "ownerReferences", Kind::Msg(OWNER_REFERENCE)),
    r(14, "finalizers", Kind::Str),
];
const OBJECT_REFERENCE: &[Field] = &[
    f(1, "kind", Kind::Str),
    f(2, "namespace", Kind::Str),
    f(3, "name", Kind::Str),
    f(4, "uid", Kind::Str),
    f(5, "apiVersion", Kind::Str),
    f(6, "resourceVersion", Kind::Str),
    f(7, "fieldPath", Kind::Str),
];
const LOCAL_OBJECT_REFERENCE: &[Field] = &[f(1, "name", Kind::Str)];
const NAMESPACE: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "spec", Kind::Msg(&[r(1, "finalizers", Kind::Str)])),
];
const CONFIG_MAP: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "data", Kind::MapStr),
    f(3, "binaryData", Kind::MapBytes),
    f(4, "immutable", Kind::Bool),
];
const SECRET: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "data", Kind::MapBytes),
    f(3, "type", Kind::Str),
    f(4, "stringData", Kind::MapStr),
    f(5, "immutable", Kind::Bool),
];
const SERVICE_ACCOUNT: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    r(2, "secrets", Kind::Msg(OBJECT_REFERENCE)),
    r(3, "imagePullSecrets", Kind::Msg(LOCAL_OBJECT_REFERENCE)),
    f(4, "automountServiceAccountToken", Kind::Bool),
];
const POLICY_RULE: &[Field] = &[
    r(1, "verbs", Kind::Str),
    r(2, "apiGroups", Kind::Str),
    r(3, "resources", Kind::Str),
    r(4, "resourceNames", Kind::Str),
    r(5, "nonResourceURLs", Kind::Str),
];
const ROLE: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    r(2, "rules", Kind::Msg(POLICY_RULE)),
];
const SUBJECT: &[Field] = &[
    f(1, "kind", Kind::Str),
    f(2, "apiGroup", Kind::Str),
    f(3, "name", Kind::Str),
    f(4, "namespace", Kind::Str),
];
const ROLE_REF: &[Field] = &[
    f(1, "apiGroup", Kind::Str),
    f(2, "kind", Kind::Str),
    f(3, "name", Kind::Str),
];
const ROLE_BINDING: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    r(2, "subjects", Kind::Msg(SUBJECT)),
    f(3, "roleRef", Kind::Msg(ROLE_REF)),
];

fn schema(api_version: &str, kind: &str) -> Option<&'static [Field]> {
    Some(match (api_version, kind) {
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Secret") => SECRET,
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("rbac.authorization.k8s.io/v1", "Role" | "ClusterRole") => ROLE,
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => ROLE_BINDING,
        _ => return None,
    })
}

/// One protobuf field as read off the wire.
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn varint(buf: &mut &[u8]) -> Result<u64, ProtoError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf
            .split_first()
            .ok_or(ProtoError::Malformed("truncated varint"))?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(ProtoError::Malformed("varint too long"))
}

fn fields(mut buf: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, ProtoError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let tag = varint(&mut buf)?;
        let wire = match tag & 7 {
            0 => Wire::Varint(varint(&mut buf)?),
            2 => {
                let len = varint(&mut buf)? as usize;
                if len > buf.len() {
                    return Err(ProtoError::Malformed("truncated field"));
                }
                let (b, rest) = buf.split_at(len);
                buf = rest;
                Wire::Bytes(b)
            }
            1 | 5 => {
                let n = if tag & 7 == 1 { 8 } else { 4 };
                if n > buf.len() {
                    return Err(ProtoError::Malformed("truncated field"));
                }
                buf = &buf[n..];
                Wire::Fixed
            }
            _ => return Err(ProtoError::Malformed("unsupported wire type")),
        };
        out.push((tag >> 3, wire));
    }
    Ok(out)
}

fn text(b: &[u8]) -> Result<String, ProtoError> {
    String::from_utf8(b.to_vec()).map_err(|_| ProtoError::Malformed("invalid UTF-8"))
}

fn value(kind: Kind, w: &Wire<'_>, depth: usize) -> Result<Option<Value>, ProtoError> {
    if depth > 32 {
        return Err(ProtoError::Malformed("nested too deeply"));
    }
    Ok(match (kind, w) {
        (Kind::Str, Wire::Bytes(b)) => Some(json!(text(b)?)),
        (Kind::Bool, Wire::Varint(v)) => Some(json!(*v != 0)),
        (Kind::Int, Wire::Varint(v)) => Some(json!(*v as i64)),
        (Kind::Msg(schema), Wire::Bytes(b)) => Some(message(schema, b, depth + 1)?),
        (Kind::Time, Wire::Bytes(b)) => {
            let secs = fields(b)?
                .into_iter()
                .find_map(|(n, w)| match (n, w) {
                    (1, Wire::Varint(v)) => Some(v as i64),
                    _ => None,
                })
                .unwrap_or(0);
            (secs != 0).then(|| {
                let t = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
                json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            })
        }
        (Kind::MapStr | Kind::MapBytes, Wire::Bytes(_)) => None, // handled by the caller
        _ => return Err(ProtoError::Malformed("wire type does not match the field")),
    })
}

fn message(schema: &[Field], buf: &[u8], depth: usize) -> Result<Value, ProtoError> {
    let mut obj = Map::new();
    for (num, w) in fields(buf)? {
        let Some(field) = schema.iter().find(|f| f.num == num) else {
            continue; // fields barge does not model (status, managedFields, …)
        };
        match field.kind {
            Kind::MapStr | Kind::MapBytes => {
                let Wire::Bytes(entry) = w else {
                    return Err(ProtoError::Malformed("map entry is not a message"));
                };
                let (mut k, mut v) = (String::new(), Value::String(String::new()));
                for (n, ew) in fields(entry)? {
                    match (n, ew) {
                        (1, Wire::Bytes(b)) => k = text(b)?,
                        (2, Wire::Bytes(b)) if matches!(field.kind, Kind::MapStr) => {
                            v = json!(text(b)?)
                        }
                        (2, Wire::Bytes(b)) => {
                            v = json!(base64::engine::general_purpose::STANDARD.encode(b))
                        }
                        _ => {}
                    }
                }
                let map = obj
                    .entry(field.name)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(m) = map.as_object_mut() {
                    m.insert(k, v);
                }
            }
            _ => {
                let Some(v) = value(field.kind, &w, depth)? else {
                    continue;
                };
                if field.repeated {
                    let list = obj.entry(field.name).or_insert_with(|| json!([]));
                    if let Some(l) = list.as_array_mut() {
                        l.push(v);
                    }
                } else if v != json!("") {
                    obj.insert(field.name.into(), v);
                }
            }
        }
    }
    Ok(Value::Object(obj))
}

/// Decodes a `k8s\0`-prefixed protobuf object into its JSON form (with kind/apiVersion).
pub fn decode(body: &[u8]) -> Result<Value, ProtoError> {
    let rest = body.strip_prefix(b"k8s\0").ok_or(ProtoError::Magic)?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (n, w) in fields(rest)? {
        match (n, w) {
            (1, Wire::Bytes(tm)) => {
                for (tn, tw) in fields(tm)? {
                    match (tn, tw) {
                        (1, Wire::Bytes(b)) => api_version = text(b)?,
                        (2, Wire::Bytes(b)) => kind = text(b)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let schema = schema(&api_version, &kind).ok_or_else(|| {
        ProtoError::Unsupported(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (barge decodes protobuf for Namespace, ConfigMap, Secret, ServiceAccount and RBAC kinds only; got {api_version} {kind})"
        ))
    })?;
    let mut obj = message(schema, raw, 0)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(num: u64, data: &[u8]) -> Vec<u8> {
        let mut v = vec![((num << 3) | 2) as u8, data.len() as u8];
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn decodes_a_configmap() {
        let entry = [field(1, b"k"), field(2, b"v")].concat();
        let label = [field(1, b"app"), field(2, b"web")].concat();
        let meta = [field(1, b"cm1"), field(11, &label), field(8, &[])].concat();
        let cm = [field(1, &meta), field(2, &entry), vec![4 << 3, 1]].concat();
        let tm = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let unknown = [field(1, &tm), field(2, &cm)].concat();
        let body = [b"k8s\0".to_vec(), unknown].concat();
        assert_eq!(
            decode(&body).unwrap(),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "immutable": true,
                   "metadata": {"name": "cm1", "labels": {"app": "web"}}, "data": {"k": "v"}})
        );
        assert_eq!(decode(b"{}"), Err(ProtoError::Magic));
        assert!(decode(b"k8s\0\x0a\x05").is_err());
    }
}
