//! Errors as Kubernetes `Status` objects: the one place an error becomes an HTTP answer.
//!
//! Messages follow `k8s.io/apimachinery/pkg/api/errors` (`NewNotFound`, `NewAlreadyExists`,
//! `NewConflict`, `NewInvalid`, `NewForbidden`, …) word for word, because kubectl prints them
//! as they come (`Error from server (NotFound): configmaps "x" not found`).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::registry::ResourceInfo;

/// One `details.causes[]` entry: a field error (`FieldValueInvalid` at `metadata.name`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, …
    pub reason: String,
    /// The cause's message (`Invalid value: "x": …`).
    pub message: String,
    /// The field path (`metadata.name`).
    pub field: String,
}

impl Cause {
    /// kube's `field.Invalid(path, value, detail)`.
    pub fn invalid(field: &str, value: &str, detail: &str) -> Self {
        Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {value:?}: {detail}"),
            field: field.into(),
        }
    }

    /// kube's `field.Required(path, detail)`.
    pub fn required(field: &str, detail: &str) -> Self {
        let message = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        Cause {
            reason: "FieldValueRequired".into(),
            message,
            field: field.into(),
        }
    }

    /// The `field: message` form used inside an Invalid error's message.
    fn line(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }
}

/// Which object an error is about (`details.{name,group,kind}`). `kind` is the resource
/// (plural) for most errors and the Kind for Invalid, as kube does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub group: String,
    pub kind: String,
    /// kube's qualified resource (`deployments.apps`) or kind for messages.
    pub qualified: String,
}

impl Target {
    /// The resource `info`'s object `name` (details.kind = the plural).
    pub fn resource(info: &ResourceInfo, name: &str) -> Self {
        Target {
            name: name.into(),
            group: info.group.into(),
            kind: info.plural.into(),
            qualified: info.qualified(),
        }
    }

    /// A namespace (for `namespaces "x" not found` on creates in a missing namespace).
    pub fn namespace(name: &str) -> Self {
        Target {
            name: name.into(),
            group: String::new(),
            kind: "namespaces".into(),
            qualified: "namespaces".into(),
        }
    }
}

/// Every error the API answers with; [`IntoResponse`] renders kube's `Status`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 404 `configmaps "x" not found`.
    #[error("{} {:?} not found", .0.qualified, .0.name)]
    NotFound(Target),
    /// 409 `configmaps "x" already exists`.
    #[error("{} {:?} already exists", .0.qualified, .0.name)]
    AlreadyExists(Target),
    /// 409 `Operation cannot be fulfilled on configmaps "x": <why>`.
    #[error("Operation cannot be fulfilled on {} {:?}: {why}", .target.qualified, .target.name)]
    Conflict { target: Target, why: String },
    /// 409 from server-side apply: `Apply failed with 1 conflict: conflict with "m" …`,
    /// one `FieldManagerConflict` cause per field.
    #[error("{message}")]
    ApplyConflict { message: String, causes: Vec<Cause> },
    /// 422 `ConfigMap "x" is invalid: <causes>`; `target.kind` is the Kind.
    #[error("{}", invalid_message(.target, .causes))]
    Invalid { target: Target, causes: Vec<Cause> },
    /// 422 (reason Invalid) with a free message: a patch that cannot be applied.
    #[error("{0}")]
    Unprocessable(String),
    /// 400 with a free message.
    #[error("{0}")]
    BadRequest(String),
    /// 403 `<resource> "name" is forbidden: <why>` (or `forbidden: <why>` for paths).
    #[error("{}", forbidden_message(.target, .why))]
    Forbidden {
        target: Target,
        why: String,
        causes: Vec<Cause>,
    },
    /// 405 `the server does not allow this method on the requested resource`.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// 410 Gone / reason Expired (compacted resource versions, stale continue tokens).
    #[error("{0}")]
    Expired(String),
    /// 413 `Request entity too large: limit is 3145728`.
    #[error("Request entity too large: limit is {0}")]
    TooLarge(usize),
    /// 415 for content types the resource does not accept.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 406 for an Accept header nothing can satisfy.
    #[error("{0}")]
    NotAcceptable(String),
    /// 504 `Too large resource version` (reason Timeout), as kube-apiserver answers a read
    /// at a revision the store has not reached.
    #[error("Timeout: Too large resource version: {requested}, current: {current}")]
    TooLargeResourceVersion { requested: i64, current: i64 },
    /// 404 for a path that names no resource (`the server could not find the requested
    /// resource`).
    #[error("the server could not find the requested resource")]
    NoRoute,
    /// 500: the datastore or an invariant failed.
    #[error("{0}")]
    Internal(String),
    /// 500 with no reason: an error kube-apiserver has no status for, passed on as its text
    /// (`ErrorToAPIStatus`'s fallback; kubectl prints `Error from server: <text>`).
    #[error("{0}")]
    Unknown(String),
    /// 429 TooManyRequests with causes (an eviction a disruption budget refuses).
    #[error("{message}")]
    TooManyRequests { message: String, causes: Vec<Cause> },
}

fn invalid_message(target: &Target, causes: &[Cause]) -> String {
    let lines: Vec<String> = causes.iter().map(Cause::line).collect();
    let body = match lines.len() {
        0 => String::new(),
        1 => lines[0].clone(),
        _ => format!("[{}]", lines.join(", ")),
    };
    format!("{} {:?} is invalid: {body}", target.qualified, target.name)
}

fn forbidden_message(target: &Target, why: &str) -> String {
    match (target.qualified.is_empty(), target.name.is_empty()) {
        (true, _) => format!("forbidden: {why}"),
        (false, true) => format!("{} is forbidden: {why}", target.qualified),
        (false, false) => format!("{} {:?} is forbidden: {why}", target.qualified, target.name),
    }
}

impl ApiError {
    /// The HTTP code and `reason` of this error.
    pub fn code_reason(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::NotFound(_) | ApiError::NoRoute => (StatusCode::NOT_FOUND, "NotFound"),
            ApiError::AlreadyExists(_) => (StatusCode::CONFLICT, "AlreadyExists"),
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => {
                (StatusCode::CONFLICT, "Conflict")
            }
            ApiError::Invalid { .. } | ApiError::Unprocessable(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "Invalid")
            }
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
            ApiError::Forbidden { .. } => (StatusCode::FORBIDDEN, "Forbidden"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
            ApiError::Expired(_) => (StatusCode::GONE, "Expired"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType")
            }
            ApiError::NotAcceptable(_) => (StatusCode::NOT_ACCEPTABLE, "NotAcceptable"),
            ApiError::TooLargeResourceVersion { .. } => (StatusCode::GATEWAY_TIMEOUT, "Timeout"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
            ApiError::Unknown(_) => (StatusCode::INTERNAL_SERVER_ERROR, ""),
            ApiError::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests"),
        }
    }

    /// The error as a `Status` object (kind Status, apiVersion v1, status Failure).
    pub fn status(&self) -> Value {
        let (code, reason) = self.code_reason();
        let mut details = serde_json::Map::new();
        let mut put_target = |t: &Target| {
            if !t.name.is_empty() {
                details.insert("name".into(), json!(t.name));
            }
            if !t.group.is_empty() {
                details.insert("group".into(), json!(t.group));
            }
            if !t.kind.is_empty() {
                details.insert("kind".into(), json!(t.kind));
            }
        };
        let mut causes: &[Cause] = &[];
        match self {
            ApiError::NotFound(t) | ApiError::AlreadyExists(t) => put_target(t),
            ApiError::Conflict { target, .. } => put_target(target),
            ApiError::Invalid { target, causes: c } => {
                put_target(target);
                causes = c;
            }
            ApiError::ApplyConflict { causes: c, .. }
            | ApiError::TooManyRequests { causes: c, .. } => causes = c,
            ApiError::Forbidden {
                target, causes: c, ..
            } => {
                put_target(target);
                causes = c;
            }
            ApiError::TooLargeResourceVersion { .. } => {
                details.insert(
                    "causes".into(),
                    json!([{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}]),
                );
                details.insert("retryAfterSeconds".into(), json!(1));
            }
            _ => {}
        }
        if !causes.is_empty() {
            let list: Vec<Value> = causes
                .iter()
                .map(|c| {
                    let mut v = json!({"reason": c.reason, "message": c.message, "field": c.field});
                    if let (true, Some(m)) = (c.field.is_empty(), v.as_object_mut()) {
                        m.remove("field");
                    }
                    v
                })
                .collect();
            details.insert("causes".into(), Value::Array(list));
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": reason,
            "code": code.as_u16(),
        });
        if reason.is_empty() {
            if let Some(m) = status.as_object_mut() {
                m.remove("reason");
            }
        }
        // kube's generic responses (Forbidden, NoRoute's NotFound) carry an empty `details`.
        if !details.is_empty() || matches!(self, ApiError::Forbidden { .. } | ApiError::NoRoute) {
            status["details"] = Value::Object(details);
        }
        status
    }
}

impl From<barge_datastore::Error> for ApiError {
    /// Only for errors no handler gave a more precise meaning to.
    fn from(e: barge_datastore::Error) -> Self {
        use barge_datastore::Error as E;
        match e {
            E::Compacted {
                requested,
                compacted,
            } => ApiError::Expired(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            E::FutureRevision { requested, current } => {
                ApiError::TooLargeResourceVersion { requested, current }
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, _) = self.code_reason();
        if code.is_server_error() {
            tracing::warn!(error = %self, "api request failed");
        }
        let body = serde_json::to_vec(&self.status()).unwrap_or_default();
        (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

/// `Result` with [`ApiError`].
pub type ApiResult<T> = Result<T, ApiError>;

/// kube-apiserver's answer to a failed authentication: 401 with a `Status`.
pub fn unauthorized() -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401
    });
    (axum::http::StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_kube() {
        let reg = crate::registry::Registry::builtin();
        let cm = reg.lookup("", "v1", "configmaps").unwrap();
        let s = ApiError::NotFound(Target::resource(cm, "x")).status();
        assert_eq!(s["message"], r#"configmaps "x" not found"#);
        assert_eq!(s["details"], json!({"name": "x", "kind": "configmaps"}));
        assert_eq!(s["code"], 404);
        let d = reg.lookup("apps", "v1", "deployments").unwrap();
        let s = ApiError::Conflict {
            target: Target::resource(d, "web"),
            why: "the object has been modified; please apply your changes to the latest version and try again".into(),
        }
        .status();
        assert_eq!(
            s["message"],
            "Operation cannot be fulfilled on deployments.apps \"web\": the object has been modified; please apply your changes to the latest version and try again"
        );
        assert_eq!(s["details"]["group"], "apps");
        let s = ApiError::Forbidden {
            target: Target::default(),
            why: r#"User "system:anonymous" cannot get path "/api""#.into(),
            causes: vec![],
        }
        .status();
        assert_eq!(
            s["message"],
            r#"forbidden: User "system:anonymous" cannot get path "/api""#
        );
        assert_eq!(s["details"], json!({}));
        let s = ApiError::TooLarge(3 << 20).status();
        assert_eq!(
            (s["code"].as_u64(), s["reason"].as_str()),
            (Some(413), Some("RequestEntityTooLarge"))
        );
    }
}
