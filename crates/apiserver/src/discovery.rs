//! Discovery and health: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/G`, `/apis/G/V`,
//! aggregated discovery (`apidiscovery.k8s.io/v2`, chosen by the Accept header as client-go
//! asks for it), and `/healthz`, `/livez`, `/readyz` (with `?verbose`).

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use k8s_openapi::apimachinery::pkg::version::Info;
use serde_json::{json, Value};

use crate::registry::ResourceInfo;
use crate::rest::json_response;
use crate::status::ApiError;
use crate::ApiServer;

/// The Kubernetes version barge's API serves.
pub const KUBE_VERSION: &str = "v1.33.0";

/// `/version`.
pub(crate) async fn version() -> Response {
    let info = Info {
        major: "1".into(),
        minor: "33".into(),
        emulation_major: Some("1".into()),
        emulation_minor: Some("33".into()),
        min_compatibility_major: Some("1".into()),
        min_compatibility_minor: Some("32".into()),
        git_version: format!("{KUBE_VERSION}+barge-{}", env!("CARGO_PKG_VERSION")),
        git_commit: String::new(),
        git_tree_state: "clean".into(),
        build_date: "1970-01-01T00:00:00Z".into(),
        go_version: "barge (Rust)".into(),
        compiler: "rustc".into(),
        platform: format!("linux/{}", go_arch()),
    };
    json_response(
        StatusCode::OK,
        &serde_json::to_value(info).unwrap_or_default(),
    )
}

/// Go's `GOARCH` name of this machine.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// The aggregated discovery version the Accept header asks for (`v2`, `v2beta1`), if any.
fn aggregated(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    for media in accept.split(',') {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        let has = |p: &str| params.contains(&p);
        if params[0] == "application/json"
            && has("g=apidiscovery.k8s.io")
            && has("as=APIGroupDiscoveryList")
        {
            if has("v=v2") {
                return Some("v2");
            }
            if has("v=v2beta1") {
                return Some("v2beta1");
            }
        }
    }
    None
}

fn aggregated_response(version: &str, items: Vec<Value>) -> Response {
    let body = json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    });
    let ctype =
        format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList");
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, ctype),
            (header::VARY, "Accept".to_string()),
        ],
        serde_json::to_vec(&body).unwrap_or_default(),
    )
        .into_response()
}

/// One resource of an aggregated discovery version.
fn discovery_resource(r: &ResourceInfo) -> Value {
    let subresources: Vec<Value> = r
        .subresources
        .iter()
        .map(|s| {
            json!({
                "subresource": s.name,
                "responseKind": {"group": s.group, "version": s.version, "kind": s.kind},
                "verbs": s.verbs,
            })
        })
        .collect();
    let mut v = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    if !subresources.is_empty() {
        v["subresources"] = Value::Array(subresources);
    }
    v
}

/// The `APIResourceList` entries of one group version (resources and subresources).
fn resource_list_entries(resources: &[&ResourceInfo]) -> Vec<Value> {
    let mut out = Vec::new();
    for r in resources {
        let mut v = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            v["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            v["categories"] = json!(r.categories);
        }
        out.push(v);
        for s in &r.subresources {
            let mut sv = json!({
                "name": format!("{}/{}", r.plural, s.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": s.kind,
                "verbs": s.verbs,
            });
            if (s.group, s.version) != (r.group, r.version) {
                sv["group"] = json!(s.group);
                sv["version"] = json!(s.version);
            }
            out.push(sv);
        }
    }
    out
}

fn group_json(name: &str, versions: &[&str]) -> Value {
    let gvs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({
        "name": name,
        "versions": gvs,
        "preferredVersion": gvs.first().cloned().unwrap_or(Value::Null),
    })
}

/// `/api`.
pub(crate) async fn api(State(api): State<ApiServer>, headers: HeaderMap) -> Response {
    if let Some(v) = aggregated(&headers) {
        let resources: Vec<Value> = api
            .registry()
            .group_version("", "v1")
            .into_iter()
            .map(discovery_resource)
            .collect();
        let item = json!({
            "metadata": {"creationTimestamp": null},
            "versions": [{"version": "v1", "resources": resources, "freshness": "Current"}],
        });
        return aggregated_response(v, vec![item]);
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:6443");
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
        }),
    )
}

/// `/apis`.
pub(crate) async fn apis(State(api): State<ApiServer>, headers: HeaderMap) -> Response {
    let groups = api.registry().groups();
    if let Some(v) = aggregated(&headers) {
        let items: Vec<Value> = groups
            .iter()
            .map(|(g, versions)| {
                let vs: Vec<Value> = versions
                    .iter()
                    .map(|ver| {
                        let resources: Vec<Value> = api
                            .registry()
                            .group_version(g, ver)
                            .into_iter()
                            .map(discovery_resource)
                            .collect();
                        json!({"version": ver, "resources": resources, "freshness": "Current"})
                    })
                    .collect();
                json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": vs})
            })
            .collect();
        return aggregated_response(v, items);
    }
    let list: Vec<Value> = groups.iter().map(|(g, vs)| group_json(g, vs)).collect();
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": list}),
    )
}

/// `/apis/{group}`.
pub(crate) async fn group(State(api): State<ApiServer>, Path(group): Path<String>) -> Response {
    match api
        .registry()
        .groups()
        .into_iter()
        .find(|(g, _)| *g == group)
    {
        Some((g, vs)) => {
            let mut v = group_json(g, &vs);
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            json_response(StatusCode::OK, &v)
        }
        None => ApiError::NoRoute.into_response(),
    }
}

/// `/api/v1` and `/apis/{group}/{version}`.
pub(crate) async fn group_version(api: &ApiServer, group: &str, version: &str) -> Response {
    let registry = api.registry();
    let resources = registry.group_version(group, version);
    if resources.is_empty() {
        return ApiError::NoRoute.into_response();
    }
    let mut v = json!({
        "kind": "APIResourceList",
        "groupVersion": if group.is_empty() { version.to_string() } else { format!("{group}/{version}") },
        "resources": resource_list_entries(&resources),
    });
    if !group.is_empty() {
        v["apiVersion"] = json!("v1");
    }
    json_response(StatusCode::OK, &v)
}

pub(crate) async fn core_v1(State(api): State<ApiServer>) -> Response {
    group_version(&api, "", "v1").await
}

pub(crate) async fn named_group_version(
    State(api): State<ApiServer>,
    Path((group, version)): Path<(String, String)>,
) -> Response {
    group_version(&api, &group, &version).await
}

/// `/healthz`, `/livez`, `/readyz`: `ok`, or with `?verbose` kube's per-check listing.
pub(crate) async fn health(
    api: ApiServer,
    endpoint: &'static str,
    query: Option<String>,
) -> Response {
    let datastore_ok = api.store.revision().await.is_ok();
    let mut checks: Vec<(&str, bool)> = vec![("ping", true), ("log", true), ("etcd", datastore_ok)];
    if endpoint == "readyz" {
        checks.push(("etcd-readiness", datastore_ok));
        checks.push(("shutdown", true));
    }
    let ok = checks.iter().all(|(_, ok)| *ok);
    let verbose = query.as_deref().is_some_and(|q| {
        q.split('&')
            .any(|p| p == "verbose" || p.starts_with("verbose="))
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let body = if verbose || !ok {
        let mut s = String::new();
        for (name, good) in &checks {
            if *good {
                s.push_str(&format!("[+]{name} ok\n"));
            } else {
                s.push_str(&format!("[-]{name} failed: reason withheld\n"));
            }
        }
        if ok {
            s.push_str(&format!("{endpoint} check passed\n"));
        } else {
            s.push_str(&format!("{endpoint} check failed\n"));
        }
        s
    } else {
        "ok".to_string()
    };
    (
        code,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

pub(crate) async fn healthz(State(api): State<ApiServer>, RawQuery(q): RawQuery) -> Response {
    health(api, "healthz", q).await
}
pub(crate) async fn livez(State(api): State<ApiServer>, RawQuery(q): RawQuery) -> Response {
    health(api, "livez", q).await
}
pub(crate) async fn readyz(State(api): State<ApiServer>, RawQuery(q): RawQuery) -> Response {
    health(api, "readyz", q).await
}
