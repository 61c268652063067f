//! Parsing a resource request: the URL (kube's `RequestInfoFactory`), the verb, query
//! parameters, and the body (JSON or YAML, at most 3 MiB).

use std::collections::HashMap;

use axum::http::{HeaderMap, Method};
use serde_json::Value;

use crate::status::ApiError;

/// kube-apiserver's request body limit for JSON/YAML (`MaxRequestBodyBytes`, 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// The verbs RBAC and the handlers see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    /// RBAC's lowercase verb.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

/// What the URL of a resource request names (kube's `RequestInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathInfo {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The legacy `/watch/` path form.
    pub watch_path: bool,
}

/// Parses `/api/v1/…` and `/apis/G/V/…` into a [`PathInfo`]; `None` for anything else
/// (discovery documents, non-resource paths).
pub fn parse_path(path: &str) -> Option<PathInfo> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let mut rest = rest;
    if rest.is_empty() || rest.iter().any(|p| p.is_empty()) {
        return None;
    }
    let mut info = PathInfo {
        group: group.into(),
        version: version.into(),
        ..Default::default()
    };
    if rest[0] == "watch" {
        info.watch_path = true;
        rest = &rest[1..];
        if rest.is_empty() {
            return None;
        }
    }
    if rest[0] == "namespaces" && rest.len() > 1 {
        info.namespace = Some(rest[1].to_string());
        if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
            rest = &rest[2..];
        }
    }
    info.resource = rest[0].to_string();
    info.name = rest.get(1).map(|s| s.to_string());
    info.subresource = rest.get(2).map(|s| s.to_string());
    if rest.len() > 3 {
        // pods/x/proxy/… and the like: not served yet.
        return None;
    }
    Some(info)
}

/// The verb of a request to `info` with `method` and the `watch` parameter.
pub fn verb(method: &Method, info: &PathInfo, query: &Query) -> Option<Verb> {
    let watch = info.watch_path || query.flag("watch");
    Some(match *method {
        Method::GET | Method::HEAD if watch => Verb::Watch,
        Method::GET | Method::HEAD if info.name.is_some() => Verb::Get,
        Method::GET | Method::HEAD => Verb::List,
        Method::POST => Verb::Create,
        Method::PUT => Verb::Update,
        Method::PATCH => Verb::Patch,
        Method::DELETE if info.name.is_some() => Verb::Delete,
        Method::DELETE => Verb::DeleteCollection,
        _ => return None,
    })
}

/// Decoded query parameters (the last value of a repeated key wins, as Go's `Get`).
#[derive(Clone, Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    /// Parses a raw query string (`a=b&c=d`, `+` is a space).
    pub fn parse(raw: Option<&str>) -> Self {
        let mut map = HashMap::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let dec = |s: &str| {
                let s = s.replace('+', " ");
                urlencoding::decode(&s).map(|c| c.into_owned()).unwrap_or(s)
            };
            map.insert(dec(k), dec(v));
        }
        Query(map)
    }

    /// A parameter's value (`None` if absent).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Sets parameter `key` to `value` (as a rewritten request carries it on).
    pub fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }

    /// A non-empty parameter's value.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// A boolean parameter (`true`/`1`), as kube's query conversion reads it.
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | "True" | "TRUE" | "t"))
    }

    /// An integer parameter; a malformed one is 400.
    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.non_empty(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::BadRequest(format!(
                    "unable to parse query parameter {key:?}: strconv.ParseInt: parsing {v:?}: invalid syntax"
                ))
            }),
        }
    }

    /// `dryRun=All` (any other value is 400 as kube's validation says).
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::BadRequest(format!(
                "Invalid dry run value: {other:?}, supported values: [\"All\"]"
            ))),
        }
    }
}

/// The media type of a body (lower case, parameters dropped).
pub fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Decodes a create/update body (JSON or YAML) into one JSON object.
pub fn decode_object(media: &str, body: &[u8]) -> Result<Value, ApiError> {
    let value = match media {
        "application/json" | "" | "*/*" => serde_json::from_slice::<Value>(body).map_err(|e| {
            ApiError::BadRequest(format!(
                "couldn't get version/kind; json parse error: {e}"
            ))
        })?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            serde_saphyr::from_slice::<Value>(body).map_err(|e| {
                ApiError::BadRequest(format!(
                    "couldn't get version/kind; yaml parse error: {e}"
                ))
            })?
        }
        "application/vnd.kubernetes.protobuf" => crate::proto::decode(body).map_err(|e| match e {
            crate::proto::ProtoError::Unsupported(m) => ApiError::UnsupportedMediaType(m),
            other => ApiError::BadRequest(other.to_string()),
        })?,
        _ => {
            return Err(ApiError::UnsupportedMediaType(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml".into(),
            ))
        }
    };
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "couldn't get version/kind; json parse error: the body is not a JSON object".into(),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_as_kube() {
        let p = parse_path("/api/v1/namespaces/default/configmaps/x").unwrap();
        assert_eq!(
            (
                p.namespace.as_deref(),
                p.resource.as_str(),
                p.name.as_deref()
            ),
            (Some("default"), "configmaps", Some("x"))
        );
        let p = parse_path("/api/v1/namespaces/x").unwrap();
        assert_eq!(
            (p.resource.as_str(), p.name.as_deref()),
            ("namespaces", Some("x"))
        );
        let p = parse_path("/api/v1/namespaces/x/status").unwrap();
        assert_eq!(p.subresource.as_deref(), Some("status"));
        let p = parse_path("/apis/apps/v1/watch/namespaces/a/deployments").unwrap();
        assert!(p.watch_path);
        assert_eq!(p.resource, "deployments");
        let p = parse_path("/apis/apps/v1/deployments").unwrap();
        assert_eq!((p.namespace, p.resource.as_str()), (None, "deployments"));
        let p = parse_path("/apis/apps/v1/namespaces/a/deployments/d/scale").unwrap();
        assert_eq!(p.subresource.as_deref(), Some("scale"));
        assert!(parse_path("/apis/apps/v1").is_none());
        assert!(parse_path("/version").is_none());
    }

    #[test]
    fn query_and_bodies() {
        let q = Query::parse(Some("labelSelector=a%3Db%2Cc+in+(x)&watch=1&limit=5"));
        assert_eq!(q.get("labelSelector"), Some("a=b,c in (x)"));
        assert!(q.flag("watch"));
        assert_eq!(q.int("limit").unwrap(), Some(5));
        let v = decode_object("application/yaml", b"kind: ConfigMap\ndata:\n  a: '1'\n").unwrap();
        assert_eq!(v["data"]["a"], "1");
        assert!(decode_object("application/json", b"[1]").is_err());
        let deep = "[".repeat(1000);
        assert!(decode_object("application/json", deep.as_bytes()).is_err());
    }
}
