//! Generic REST over JSON for every registered resource: the dispatcher (path → resource,
//! verb → handler) and the handlers, one module per verb family.

mod apply;
mod binding;
pub(crate) mod convert;
mod create;
mod custom;
mod defaults;
mod delete;
mod eviction;
mod fields;
mod get;
mod immutable;
mod list;
mod managed;
pub mod masterleases;
mod metrics;
pub(crate) mod object;
mod patch;
mod priority;
pub mod proxy;
mod scale;
pub mod services;
mod strategic;
mod update;
mod watch;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

use crate::registry::ResourceInfo;
use crate::request::{parse_path, verb, PathInfo, Query, Verb, MAX_BODY};
use crate::status::{ApiError, ApiResult, Target};
use crate::ApiServer;

pub(crate) use list::ListParams;
pub(crate) use managed::WriteOpts;

/// One parsed resource request.
pub(crate) struct Req {
    pub info: ResourceInfo,
    pub path: PathInfo,
    pub verb: Verb,
    pub query: Query,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Req {
    /// The namespace the request is scoped to (`None` for cluster-scoped kinds and
    /// all-namespaces lists).
    pub fn namespace(&self) -> Option<&str> {
        self.path
            .namespace
            .as_deref()
            .filter(|_| self.info.namespaced)
    }

    /// The object name of the URL (empty for collections).
    pub fn name(&self) -> &str {
        self.path.name.as_deref().unwrap_or("")
    }

    /// The datastore key of the URL's object.
    pub fn key(&self) -> String {
        self.info.key(self.namespace(), self.name())
    }

    /// The write options of the request: `dryRun`, and the field manager (`fieldManager`, or
    /// the product name of the User-Agent as kube-apiserver derives it).
    pub fn write_opts(&self) -> ApiResult<WriteOpts> {
        let manager = match self.query.non_empty("fieldManager") {
            Some(m) => m.to_string(),
            None => self
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .and_then(|ua| ua.split('/').next())
                .filter(|m| !m.is_empty())
                .unwrap_or("unknown")
                .chars()
                .take(128)
                .collect(),
        };
        Ok(WriteOpts {
            dry_run: self.query.dry_run()?,
            manager,
            apply: None,
        })
    }

    /// A NotFound/Conflict target for the URL's object.
    pub fn target(&self) -> Target {
        Target::resource(&self.info, self.name())
    }
}

/// A JSON response.
pub(crate) fn json_response(code: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A `meta.k8s.io/v1` Table response.
pub(crate) fn table_response(value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, crate::table::TABLE_CONTENT_TYPE)],
        body,
    )
        .into_response()
}

/// The fallback handler: every `/api/v1/…` and `/apis/G/V/…` resource path.
pub(crate) async fn handle(State(api): State<ApiServer>, req: Request) -> Response {
    match dispatch(&api, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn dispatch(api: &ApiServer, req: Request) -> ApiResult<Response> {
    let (parts, body) = req.into_parts();
    let path = parse_path(parts.uri.path()).ok_or(ApiError::NoRoute)?;
    let info = api
        .registry()
        .lookup(&path.group, &path.version, &path.resource)
        .cloned()
        .ok_or(ApiError::NoRoute)?;
    let query = Query::parse(parts.uri.query());
    let verb = verb(&parts.method, &path, &query).ok_or(ApiError::MethodNotAllowed)?;
    if !info.verbs.contains(&verb.as_str()) && path.subresource.is_none() {
        return Err(ApiError::MethodNotAllowed);
    }
    // A cluster-scoped kind has no namespaced path (`namespaces/x` itself excepted).
    if !info.namespaced && path.namespace.is_some() && info.plural != "namespaces" {
        return Err(ApiError::NoRoute);
    }
    // A namespaced kind's cluster-wide path serves only list and watch.
    if info.namespaced && path.namespace.is_none() && !matches!(verb, Verb::List | Verb::Watch) {
        return Err(ApiError::MethodNotAllowed);
    }
    if let Some(sub) = path.subresource.as_deref() {
        let s = info.subresource(sub).ok_or(ApiError::NoRoute)?;
        if !s.verbs.contains(&verb.as_str()) {
            return Err(ApiError::MethodNotAllowed);
        }
    }
    // metrics.k8s.io: computed from the node agents' summaries, never stored.
    if info.group == crate::registry::METRICS_GROUP {
        return api.metrics(&info, &path, &query, &parts.headers).await;
    }
    // pods/log, exec, attach, portforward: streamed from the pod's node agent.
    if proxy::is_streaming(&info, &path) {
        return api
            .stream_subresource(&info, &path, parts, Body::new(body))
            .await;
    }
    let body = if matches!(
        parts.method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        axum::body::to_bytes(Body::new(body), MAX_BODY)
            .await
            .map_err(|_| ApiError::TooLarge(MAX_BODY))?
    } else {
        Bytes::new()
    };
    let req = Req {
        info,
        path,
        verb,
        query,
        headers: parts.headers,
        body,
    };
    let multi_version = req
        .info
        .custom
        .as_ref()
        .is_some_and(|c| c.served_versions > 1)
        && !matches!(req.verb, Verb::Watch);
    if let Some(conv) = convert::of(&req.info) {
        return api.serve_converted(req, conv).await;
    }
    let resp = route(api, &req).await?;
    if multi_version {
        return Ok(custom::response_in_request_version(&req.info, resp).await);
    }
    Ok(resp)
}

/// The handler of a request's verb and subresource.
pub(crate) async fn route(api: &ApiServer, req: &Req) -> ApiResult<Response> {
    match (req.verb, req.path.subresource.as_deref()) {
        (Verb::Get, None | Some("status")) => api.get(req).await,
        (Verb::Get | Verb::Update | Verb::Patch, Some("ephemeralcontainers"))
            if req.info.plural == "pods" =>
        {
            match req.verb {
                Verb::Get => api.get(req).await,
                Verb::Update => api.update(req).await,
                _ => api.patch(req).await,
            }
        }
        (Verb::List, _) => api.list(req).await,
        (Verb::Watch, _) => api.watch(req).await,
        (Verb::Create, None) => api.create(req).await,
        (Verb::Update, None | Some("status")) => api.update(req).await,
        (Verb::Patch, None | Some("status")) => api.patch(req).await,
        (Verb::Get | Verb::Update | Verb::Patch, Some("scale")) => api.scale(req).await,
        (Verb::Update, Some("finalize")) => api.update(req).await,
        (Verb::Delete, None) => api.delete(req).await,
        (Verb::DeleteCollection, None) => api.delete_collection(req).await,
        (Verb::Create, Some("binding")) if req.info.plural == "pods" => api.bind(req).await,
        (Verb::Create, Some("eviction")) if req.info.plural == "pods" => api.evict(req).await,
        // pods/log, exec, attach, portforward are proxied above; serviceaccounts/token:
        // routes the agent and auth work fill in.
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// The value at a printer column's simple JSONPath (for `table`).
pub(crate) fn custom_json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    custom::json_path(obj, path)
}
