//! `fieldValidation` (Strict, Warn — the default —, Ignore): fields of a body that the kind's
//! type does not have are a 400 under Strict and `Warning` headers under Warn, as
//! kube-apiserver's strict decoding reports them (`unknown field "spec.foo"`).
//!
//! Unknown fields are found by decoding the body into the kind's `k8s-openapi` type and
//! encoding it back: what did not survive is unknown. A body that does not decode into the
//! type at all (a missing required field, a wrong type) is not judged here.

use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use serde_json::Value;

use crate::registry::ResourceInfo;
use crate::request::Query;
use crate::status::{ApiError, ApiResult};

/// The `fieldValidation` directive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Validation {
    Strict,
    Warn,
    Ignore,
}

impl Validation {
    pub(crate) fn of(query: &Query) -> ApiResult<Self> {
        match query.non_empty("fieldValidation") {
            None | Some("Warn") => Ok(Validation::Warn),
            Some("Strict") => Ok(Validation::Strict),
            Some("Ignore") => Ok(Validation::Ignore),
            Some(other) => Err(ApiError::BadRequest(format!(
                "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
            ))),
        }
    }
}

/// One step of a field path.
enum Seg {
    Key(String),
    Index(usize),
}

fn collect(input: &Value, typed: &Value, path: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                if v.is_null() {
                    continue;
                }
                match b.get(k) {
                    None => {
                        let mut p: Vec<Seg> = path
                            .iter()
                            .map(|s| match s {
                                Seg::Key(k) => Seg::Key(k.clone()),
                                Seg::Index(i) => Seg::Index(*i),
                            })
                            .collect();
                        p.push(Seg::Key(k.clone()));
                        out.push(p);
                    }
                    Some(t) => {
                        path.push(Seg::Key(k.clone()));
                        collect(v, t, path, out);
                        path.pop();
                    }
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                path.push(Seg::Index(i));
                collect(x, y, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn render(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if s.is_empty() => s.push_str(k),
            Seg::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn remove(obj: &mut Value, path: &[Seg]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for seg in parents {
        let next = match seg {
            Seg::Key(k) => cur.get_mut(k.as_str()),
            Seg::Index(i) => cur.get_mut(*i),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let (Seg::Key(k), Some(m)) = (last, cur.as_object_mut()) {
        m.remove(k);
    }
}

/// Removes the fields `info`'s type does not know from `obj` (kube drops them when it
/// decodes into the Go type) and returns them, as kube's strict errors word them.
pub(crate) fn prune_unknown(info: &ResourceInfo, obj: &mut Value) -> Vec<String> {
    if let Some(pruned) = super::custom::prune(info, obj) {
        return pruned;
    }
    let Some(typed) = (info.roundtrip)(obj) else {
        return Vec::new();
    };
    let mut paths = Vec::new();
    collect(obj, &typed, &mut Vec::new(), &mut paths);
    for p in &paths {
        remove(obj, p);
    }
    paths
        .iter()
        .map(|p| format!("unknown field {:?}", render(p)))
        .collect()
}

/// Applies `mode` to `obj` (whose unknown fields are dropped in every mode): `Err` (400)
/// under Strict, the warnings under Warn. `prefix` is
/// kube's decode-error preamble for creates and updates (`ConfigMap in version "v1" cannot be
/// handled as a ConfigMap: `), empty for patches.
pub(crate) fn check(
    info: &ResourceInfo,
    obj: &mut Value,
    mode: Validation,
    with_prefix: bool,
) -> ApiResult<Vec<String>> {
    let unknown = prune_unknown(info, obj);
    if mode == Validation::Ignore {
        return Ok(Vec::new());
    }
    if unknown.is_empty() || mode == Validation::Warn {
        return Ok(unknown);
    }
    let strict = format!("strict decoding error: {}", unknown.join(", "));
    Err(ApiError::BadRequest(if with_prefix {
        format!(
            "{} in version {:?} cannot be handled as a {}: {strict}",
            info.kind, info.version, info.kind
        )
    } else {
        strict
    }))
}

/// How a body reached a write, which decides how kube reports a value of the wrong type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Body {
    /// A create or update: the body is decoded into the Go type — 400 `Pod in version "v1"
    /// cannot be handled as a Pod: json: cannot unmarshal …`.
    Object,
    /// A JSON, merge or strategic merge patch: the patched object is decoded — 422
    /// ` "" is invalid: patch: Invalid value: "<patched object>": json: cannot unmarshal …`.
    Patch,
    /// A server-side apply configuration, typed by structured-merge-diff — a 500 with no
    /// reason, `failed to create typed patch object (ns/name; apps/v1, Kind=Deployment):
    /// .spec.replicas: expected numeric (int or float), got string`.
    Apply,
}

/// Refuses a built-in object holding a value its Go type cannot hold (custom resources are
/// typed by their CRD's schema instead). See [`crate::unknown::type_error`].
pub(crate) fn check_types(info: &ResourceInfo, obj: &Value, body: Body) -> ApiResult<()> {
    if info.custom.is_some() {
        return Ok(());
    }
    let Some(schema) = crate::schema::definitions().kind(info.group, info.version, info.kind)
    else {
        return Ok(());
    };
    let Some(e) = crate::unknown::type_error(obj, schema, info.kind) else {
        return Ok(());
    };
    Err(match body {
        Body::Object => ApiError::BadRequest(format!(
            "{} in version {:?} cannot be handled as a {}: {}",
            info.kind,
            info.version,
            info.kind,
            e.json_message()
        )),
        Body::Patch => ApiError::Invalid {
            target: crate::status::Target::default(),
            causes: vec![crate::status::Cause::invalid(
                "patch",
                &serde_json::to_string(obj).unwrap_or_default(),
                &e.json_message(),
            )],
        },
        Body::Apply => {
            let meta = |k: &str| {
                obj.pointer(&format!("/metadata/{k}"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            ApiError::Unknown(format!(
                "failed to create typed patch object ({}/{}; {}/{}, Kind={}): {}",
                meta("namespace"),
                meta("name"),
                info.group,
                info.version,
                info.kind,
                e.smd_message()
            ))
        }
    })
}

/// Adds one `Warning: 299 - "…"` header per warning (RFC 7234, as kube-apiserver sends them).
pub(crate) fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {:?}", w);
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut()
                .append(HeaderName::from_static("warning"), v);
        }
    }
    resp
}
