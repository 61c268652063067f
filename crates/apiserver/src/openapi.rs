//! `/openapi/v2` and `/openapi/v3` documents built from the embedded definitions
//! ([`crate::schema`]) and the served resources, the way kubectl uses them:
//! - `kubectl explain` reads `/openapi/v3` (an index of group-versions with their
//!   `serverRelativeURL`s) and then one OpenAPI 3.0 document per group-version, where it finds
//!   a kind's schema by its `x-kubernetes-group-version-kind` extension
//!   (k8s.io/kubectl `pkg/explain/v2`);
//! - kubectl's `--validate=strict` asks the same documents whether a kind's PATCH operation
//!   takes the `fieldValidation` query parameter (`queryParamVerifierV3`); it does, so kubectl
//!   leaves validation to the server.
//!
//! Source: [OpenAPI v3 in Kubernetes (KEP-2896)](https://github.com/kubernetes/enhancements/tree/master/keps/sig-api-machinery/2896-openapi-v3),
//! upstream's `api/openapi-spec/v3/*.json` for the shapes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha512};

use crate::schema::definitions;
use crate::status::ApiError;
use crate::ApiServer;

/// One served resource, as the documents need it.
#[derive(Clone, Debug)]
pub struct ResourceRef {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// The resource's plural name (the URL segment).
    pub plural: String,
    pub namespaced: bool,
    /// A schema for kinds the embedded definitions do not have (custom resources), in the
    /// definitions' JSON Schema dialect; `None` for built-ins.
    pub schema: Option<Value>,
}

impl ResourceRef {
    fn gv_path(&self) -> String {
        if self.group.is_empty() {
            format!("api/{}", self.version)
        } else {
            format!("apis/{}/{}", self.group, self.version)
        }
    }

    fn definition_name(&self) -> String {
        match definitions().name_of(&self.group, &self.version, &self.kind) {
            Some(name) => name.to_string(),
            // Custom resources: upstream names them by reversed group, e.g. `com.example.v1.Foo`.
            None => {
                let mut parts: Vec<&str> = self.group.split('.').collect();
                parts.reverse();
                format!("{}.{}.{}", parts.join("."), self.version, self.kind)
            }
        }
    }
}

/// The meta types every group-version document refers to.
const COMMON: &[&str] = &[
    "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
    "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent",
    "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList",
];

/// Every definition reachable from `roots` through `$ref`s.
fn closure(roots: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    let defs = definitions();
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = roots.into_iter().collect();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(def) = defs.get(&name) {
            collect_refs(def, &mut todo);
        }
    }
    seen
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                if let Some(name) = r.strip_prefix("#/definitions/") {
                    out.push(name.to_string());
                }
            }
            m.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Rewrites `#/definitions/X` references to OpenAPI 3's `#/components/schemas/X`.
fn to_v3_refs(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v.as_str()) {
                        ("$ref", Some(r)) => {
                            Value::String(r.replace("#/definitions/", "#/components/schemas/"))
                        }
                        _ => to_v3_refs(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(to_v3_refs).collect()),
        other => other.clone(),
    }
}

fn gvk_ext(r: &ResourceRef) -> Value {
    json!({"group": r.group, "version": r.version, "kind": r.kind})
}

fn query(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

/// The path items of one resource: collection and item, with the operations and the query
/// parameters clients look for (`fieldValidation`, `fieldManager`, `dryRun`, `force`).
fn path_items(r: &ResourceRef, v3: bool) -> Vec<(String, Value)> {
    let def = r.definition_name();
    let reference = if v3 {
        format!("#/components/schemas/{def}")
    } else {
        format!("#/definitions/{def}")
    };
    let base = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let collection = if r.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{base}/{}", r.plural)
    };
    let item = format!("{collection}/{{name}}");
    let write_params = vec![
        query("dryRun", "When present, indicates that modifications should not be persisted."),
        query("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."),
        query("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict."),
    ];
    let mut patch_params = write_params.clone();
    patch_params.push(query(
        "force",
        "Force is going to \"force\" Apply requests.",
    ));
    let body = |r: &str| {
        if v3 {
            json!({"content": {"application/json": {"schema": {"$ref": r}}}})
        } else {
            json!({"schema": {"$ref": r}})
        }
    };
    let op = |verb: &str, id: &str, params: &[Value]| {
        let mut o = Map::new();
        o.insert("operationId".into(), json!(format!("{verb}{id}")));
        o.insert("x-kubernetes-action".into(), json!(verb));
        o.insert("x-kubernetes-group-version-kind".into(), gvk_ext(r));
        o.insert("parameters".into(), Value::Array(params.to_vec()));
        o.insert("responses".into(), json!({"200": {"description": "OK"}}));
        if verb == "post" || verb == "put" {
            o.insert(
                if v3 { "requestBody" } else { "x-request-body" }.into(),
                body(&reference),
            );
        }
        Value::Object(o)
    };
    let id = r.kind.clone();
    vec![
        (
            collection,
            json!({
                "get": op("list", &id, &[]),
                "post": op("post", &id, &write_params),
            }),
        ),
        (
            item,
            json!({
                "get": op("get", &id, &[]),
                "put": op("put", &id, &write_params),
                "patch": op("patch", &id, &patch_params),
                "delete": op("delete", &id, &[query("dryRun", "dry run")]),
            }),
        ),
    ]
}

/// The `/openapi/v3` index: `{"paths": {"api/v1": {"serverRelativeURL": …}, …}}`.
pub fn v3_index(resources: &[ResourceRef]) -> Value {
    let mut gvs: BTreeMap<String, Vec<ResourceRef>> = BTreeMap::new();
    for r in resources {
        gvs.entry(r.gv_path()).or_default().push(r.clone());
    }
    let paths: Map<String, Value> = gvs
        .iter()
        .map(|(gv, rs)| {
            let doc = v3_group_version(rs);
            let hash = hex(&Sha512::digest(doc.to_string().as_bytes()));
            (gv.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={}", hash.to_uppercase())}))
        })
        .collect();
    json!({"paths": paths})
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The OpenAPI 3.0 document of one group-version (`resources` all share it).
pub fn v3_group_version(resources: &[ResourceRef]) -> Value {
    let defs = definitions();
    let mut schemas = Map::new();
    let roots = resources
        .iter()
        .filter(|r| r.schema.is_none())
        .map(ResourceRef::definition_name)
        .chain(COMMON.iter().map(|s| s.to_string()))
        .chain(
            resources
                .iter()
                .filter_map(|r| r.schema.as_ref())
                .flat_map(|s| {
                    let mut refs = Vec::new();
                    collect_refs(s, &mut refs);
                    refs
                }),
        )
        .chain(std::iter::once(
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta".to_string(),
        ));
    for name in closure(roots) {
        if let Some(def) = defs.get(&name) {
            schemas.insert(name, to_v3_refs(def));
        }
    }
    let mut paths = Map::new();
    for r in resources {
        if let Some(schema) = &r.schema {
            let mut s = to_v3_refs(schema);
            if let Value::Object(m) = &mut s {
                m.insert(
                    "x-kubernetes-group-version-kind".into(),
                    json!([gvk_ext(r)]),
                );
            }
            schemas.insert(r.definition_name(), s);
        }
        for (path, item) in path_items(r, true) {
            paths.insert(path, item);
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate_version()},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// The swagger 2.0 document (`/openapi/v2` as JSON): every definition, every resource's paths.
pub fn v2_document(resources: &[ResourceRef]) -> Value {
    let mut definitions_out = definitions().all().clone();
    let mut paths = Map::new();
    for r in resources {
        if let Some(schema) = &r.schema {
            let mut s = schema.clone();
            if let Value::Object(m) = &mut s {
                m.insert(
                    "x-kubernetes-group-version-kind".into(),
                    json!([gvk_ext(r)]),
                );
            }
            definitions_out.insert(r.definition_name(), s);
        }
        for (path, item) in path_items(r, false) {
            paths.insert(path, item);
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": crate_version()},
        "paths": paths,
        "definitions": definitions_out,
    })
}

fn crate_version() -> &'static str {
    "v1.33.0"
}

// --- Serving ----------------------------------------------------------------------------------

/// The served resources as the documents need them.
fn served(api: &ApiServer) -> Vec<ResourceRef> {
    let registry = api.registry();
    let mut gvs: Vec<(&str, &str)> = vec![("", "v1")];
    for (g, versions) in registry.groups() {
        for v in versions {
            gvs.push((g, v));
        }
    }
    gvs.into_iter()
        // An aggregated API's documents are its own server's (metrics-server publishes none).
        .filter(|(g, _)| *g != crate::registry::METRICS_GROUP)
        .flat_map(|(g, v)| registry.group_version(g, v))
        .map(|r| ResourceRef {
            group: r.group.to_string(),
            version: r.version.to_string(),
            kind: r.kind.to_string(),
            plural: r.plural.to_string(),
            namespaced: r.namespaced,
            // A custom resource's schema (any object when its CRD gives none).
            schema: r.custom.as_ref().map(|c| {
                crate::crd::published_schema(c.schema.as_ref().unwrap_or(
                    &json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
                ))
            }),
        })
        .collect()
}

/// The documents of one registry revision (built-ins only: revision 0), rebuilt when the
/// CRDs change.
struct Docs {
    index: Value,
    by_path: HashMap<String, Value>,
    v2: Value,
}

fn docs(api: &ApiServer) -> Arc<Docs> {
    static DOCS: Mutex<Option<(u64, Arc<Docs>)>> = Mutex::new(None);
    let revision = api.registry.revision();
    let mut cached = DOCS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((r, d)) = cached.as_ref() {
        if *r == revision {
            return d.clone();
        }
    }
    let d = Arc::new({
        let resources = served(api);
        let mut by_gv: BTreeMap<String, Vec<ResourceRef>> = BTreeMap::new();
        for r in &resources {
            by_gv.entry(r.gv_path()).or_default().push(r.clone());
        }
        Docs {
            index: v3_index(&resources),
            by_path: by_gv
                .iter()
                .map(|(gv, rs)| (gv.clone(), v3_group_version(rs)))
                .collect(),
            v2: v2_document(&resources),
        }
    });
    *cached = Some((revision, d.clone()));
    d
}

fn json_ok(v: &Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(v).unwrap_or_default(),
    )
        .into_response()
}

/// `GET /openapi/v3`: the index of group-versions.
pub(crate) async fn index(State(api): State<ApiServer>) -> Response {
    let d = tokio::task::spawn_blocking(move || docs(&api)).await;
    match d {
        Ok(d) => json_ok(&d.index),
        Err(_) => ApiError::NoRoute.into_response(),
    }
}

/// `GET /openapi/v3/{api/v1|apis/G/V}`.
pub(crate) async fn group_version(
    State(api): State<ApiServer>,
    UrlPath(path): UrlPath<String>,
) -> Response {
    let d = tokio::task::spawn_blocking(move || docs(&api)).await;
    match d
        .ok()
        .and_then(|d| d.by_path.get(path.trim_end_matches('/')).cloned())
    {
        Some(doc) => json_ok(&doc),
        None => ApiError::NoRoute.into_response(),
    }
}

/// `GET /openapi/v2` (JSON; a client asking only for protobuf gets 406 as from a server
/// without that encoding).
pub(crate) async fn v2(State(api): State<ApiServer>, headers: axum::http::HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*");
    if !accept.split(',').any(|a| {
        let a = a.trim();
        a.starts_with("application/json") || a.starts_with("*/*") || a.is_empty()
    }) {
        return (
            StatusCode::NOT_ACCEPTABLE,
            "only application/json is served",
        )
            .into_response();
    }
    match tokio::task::spawn_blocking(move || docs(&api)).await {
        Ok(d) => json_ok(&d.v2),
        Err(_) => ApiError::NoRoute.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployments() -> ResourceRef {
        ResourceRef {
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            plural: "deployments".into(),
            namespaced: true,
            schema: None,
        }
    }

    #[test]
    fn v3_documents_carry_kinds_and_field_validation() {
        let doc = v3_group_version(&[deployments()]);
        let schemas = &doc["components"]["schemas"];
        let dep = &schemas["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            dep["x-kubernetes-group-version-kind"][0]["kind"],
            "Deployment"
        );
        // References resolve inside the document.
        let strategy = &schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
        let target = strategy["$ref"]
            .as_str()
            .unwrap()
            .trim_start_matches("#/components/schemas/");
        assert!(schemas.get(target).is_some(), "{target}");
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        let params: Vec<&str> = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(params.contains(&"fieldValidation"));
        let index = v3_index(&[deployments()]);
        let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
    }
}
