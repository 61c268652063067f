//! A minimal OpenAPI v3 discovery: `/openapi/v3` (the index of group versions) and
//! `/openapi/v3/api/v1`, `/openapi/v3/apis/G/V` with one PATCH operation per resource that
//! carries `x-kubernetes-group-version-kind` and the `fieldValidation` query parameter.
//!
//! That is what kubectl's `QueryParamVerifierV3` reads to decide that the server validates
//! fields itself (`--validate=strict` then sends `fieldValidation=Strict` instead of
//! downloading schemas for client-side validation), so `kubectl apply -f` works as it does
//! against kube-apiserver.
//!
//! TODO(issue 10): the schemas (`components.schemas` with the `x-kubernetes-*` extensions)
//! for `kubectl explain`, and `/openapi/v2`.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::discovery::KUBE_VERSION;
use crate::registry::ResourceInfo;
use crate::status::ApiError;
use crate::ApiServer;

/// A stable hash of a document (FNV-1a, hex) for the index's `?hash=` URLs.
fn hash(doc: &Value) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in doc.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016X}")
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The OpenAPI v3 document of one group version.
fn document(resources: &[&ResourceInfo]) -> Value {
    let mut paths = Map::new();
    for r in resources {
        let prefix = if r.group.is_empty() {
            format!("/api/{}", r.version)
        } else {
            format!("/apis/{}/{}", r.group, r.version)
        };
        let path = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{prefix}/{}/{{name}}", r.plural)
        };
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let param = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
        paths.insert(
            path,
            json!({
                "patch": {
                    "operationId": format!("patch{}", r.kind),
                    "parameters": [param("dryRun"), param("fieldManager"), param("fieldValidation"), param("force")],
                    "responses": {"200": {"description": "OK"}},
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": gvk,
                },
                "put": {
                    "operationId": format!("replace{}", r.kind),
                    "parameters": [param("dryRun"), param("fieldManager"), param("fieldValidation")],
                    "responses": {"200": {"description": "OK"}},
                    "x-kubernetes-action": "put",
                    "x-kubernetes-group-version-kind": gvk,
                },
            }),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBE_VERSION},
        "paths": paths,
        "components": {"schemas": {}},
    })
}

fn gv_docs(api: &ApiServer) -> Vec<(String, Value)> {
    let mut gvs: Vec<(&str, &str)> = vec![("", "v1")];
    for (g, versions) in api.registry.groups() {
        for v in versions {
            gvs.push((g, v));
        }
    }
    gvs.into_iter()
        .map(|(g, v)| (gv_path(g, v), document(&api.registry.group_version(g, v))))
        .collect()
}

fn json_ok(v: &Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(v).unwrap_or_default(),
    )
        .into_response()
}

/// `/openapi/v3`: `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=…"}}}`.
pub(crate) async fn index(State(api): State<ApiServer>) -> Response {
    let mut paths = Map::new();
    for (path, doc) in gv_docs(&api) {
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", hash(&doc))}),
        );
    }
    json_ok(&json!({"paths": paths}))
}

/// `/openapi/v3/{path}` for one group version.
pub(crate) async fn group_version(
    State(api): State<ApiServer>,
    Path(path): Path<String>,
) -> Response {
    match gv_docs(&api).into_iter().find(|(p, _)| *p == path) {
        Some((_, doc)) => json_ok(&doc),
        None => ApiError::NoRoute.into_response(),
    }
}
