//! Watch: `?watch=true` and the legacy `/watch/` paths, as a chunked stream of JSON lines
//! `{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":…}`.
//!
//! From `resourceVersion` unset or `"0"`: synthetic ADDED events for the current objects,
//! then changes (kube's "Get State and Start at Most Recent/Any"); from `N`: every change after
//! `N`, or one ERROR event with a 410 Expired `Status` if `N` was compacted. Selectors apply
//! to both sides of a change: an object leaving the selection is a DELETED, one entering it an
//! ADDED. `allowWatchBookmarks` adds periodic BOOKMARKs (kind, apiVersion and
//! `metadata.resourceVersion` only); `sendInitialEvents=true` ends the initial ADDEDs with a
//! bookmark annotated `k8s.io/initial-events-end`.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use barge_datastore::EventKind;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{ListParams, Req};
use crate::registry::ResourceInfo;
use crate::status::{ApiError, ApiResult};
use crate::watchcache::CachedEvent;
use crate::ApiServer;

/// kube-apiserver's default `--min-request-timeout` (a watch without `timeoutSeconds` ends
/// after this, so clients re-establish it).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

fn line(kind: &str, object: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

fn bookmark(info: &ResourceInfo, rv: i64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": info.kind, "apiVersion": info.api_version(), "metadata": meta})
}

/// The watch event one change is for this watcher, if any: its type, and whether it carries
/// the object after the change (`true`) or before it (`false`, for one leaving the selection).
fn translate(params: &ListParams, e: &CachedEvent) -> Option<&'static str> {
    let old_in = e.old.as_ref().is_some_and(|o| params.matches(o));
    match e.kind {
        EventKind::Delete => params.matches(&e.object).then_some("DELETED"),
        EventKind::Put => match (old_in, params.matches(&e.object)) {
            (true, true) => Some("MODIFIED"),
            (false, true) => Some("ADDED"),
            (true, false) => Some("DELETED"),
            (false, false) => None,
        },
    }
}

/// A watch line around already-serialized object JSON.
fn line_raw(kind: &str, object: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(object.len() + 32);
    v.extend_from_slice(br#"{"type":""#);
    v.extend_from_slice(kind.as_bytes());
    v.extend_from_slice(br#"","object":"#);
    v.extend_from_slice(object);
    v.extend_from_slice(b"}\n");
    Bytes::from(v)
}

impl ApiServer {
    pub(crate) async fn watch(&self, req: &Req) -> ApiResult<Response> {
        let mut params = ListParams::parse(&req.info, &req.query)?;
        if let Some(name) = req.path.name.as_deref() {
            // /watch/namespaces/ns/kind/name: a watch of one object.
            let extra = format!("metadata.name={name}");
            params.fields =
                crate::selectors::FieldSelector::parse(&extra, req.info.group, req.info.plural)
                    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        }
        let timeout = req
            .query
            .int("timeoutSeconds")?
            .filter(|t| *t > 0)
            .map(|t| Duration::from_secs(t as u64))
            .unwrap_or(DEFAULT_TIMEOUT);
        let bookmarks = req.query.flag("allowWatchBookmarks");
        let initial_events = match req.query.get("sendInitialEvents") {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => None,
        };
        let rv = req.query.non_empty("resourceVersion").map(String::from);
        let table = crate::table::wants_table(&req.headers, &req.query)?;
        let info = req.info.clone();
        let prefix = info.prefix(req.namespace());

        // The starting point and the synthetic ADDEDs.
        let mut initial = Vec::new();
        let from: i64 = match (rv.as_deref(), initial_events) {
            (None | Some("0"), None) | (_, Some(true)) => {
                let list_params = ListParams {
                    labels: params.labels.clone(),
                    fields: params.fields.clone(),
                    ..Default::default()
                };
                let listed = self
                    .list_objects(&info, req.namespace(), &list_params)
                    .await?;
                initial = listed.items;
                listed.revision
            }
            (None | Some("0"), Some(false)) => self.store.revision().await?,
            (Some(n), _) => n
                .parse()
                .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {n}")))?,
        };
        // Custom objects are stored at their CRD's storage version and shown at the request's.
        for obj in initial.iter_mut() {
            super::custom::to_request_version(&info, obj);
            if table.is_none() {
                super::convert::to_request(&info, obj);
            }
        }
        let multi_version = info.custom.as_ref().is_some_and(|c| c.served_versions > 1)
            || super::convert::of(&info).is_some();
        let (tx, mut rx) = mpsc::channel::<Bytes>(64);
        let cache = self.watch_cache.clone();
        let interval = self.bookmark_interval;
        tokio::spawn(async move {
            // Table watches: each object becomes a one-row Table, columns in the first only.
            let mut first = true;
            let mut render = |kind: &str, obj: &Value| -> Bytes {
                match table {
                    Some(t) => {
                        let meta = json!({"resourceVersion": obj["metadata"]["resourceVersion"]});
                        let tbl = crate::table::table(
                            &info,
                            std::slice::from_ref(obj),
                            meta,
                            t.include,
                            first,
                        );
                        first = false;
                        line(kind, &tbl)
                    }
                    None => line(kind, obj),
                }
            };
            for obj in &initial {
                if tx.send(render("ADDED", obj)).await.is_err() {
                    return;
                }
            }
            if initial_events == Some(true) && bookmarks {
                let _ = tx
                    .send(line("BOOKMARK", &bookmark(&info, from, true)))
                    .await;
            }
            let mut stream = match cache.watch(&prefix, from).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(line("ERROR", &watch_error(e).status())).await;
                    return;
                }
            };
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            let mut ticker = tokio::time::interval(interval);
            ticker.tick().await;
            let mut last = from;
            loop {
                tokio::select! {
                    _ = &mut deadline => return,
                    _ = tx.closed() => return,
                    _ = ticker.tick(), if bookmarks => {
                        if tx.send(line("BOOKMARK", &bookmark(&info, last, false))).await.is_err() {
                            return;
                        }
                    }
                    batch = stream.next() => match batch {
                        None => return,
                        Some(Err(e)) => {
                            let _ = tx.send(line("ERROR", &watch_error(e).status())).await;
                            return;
                        }
                        Some(Ok(events)) => {
                            for e in &events {
                                last = last.max(e.revision);
                                let Some(kind) = translate(&params, e) else { continue };
                                let bytes = match table {
                                    Some(_) => render(kind, &e.object),
                                    None if multi_version => {
                                        let mut obj = e.object.clone();
                                        super::custom::to_request_version(&info, &mut obj);
                                        super::convert::to_request(&info, &mut obj);
                                        line(kind, &obj)
                                    }
                                    None => line_raw(kind, &e.json),
                                };
                                if tx.send(bytes).await.is_err() {
                                    return;
                                }
                            }
                        }
                    },
                }
            }
        });
        let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
            .map(Ok::<Bytes, std::convert::Infallible>);
        Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(body),
        )
            .into_response())
    }
}

/// A datastore error inside a watch, as kube's ERROR event carries it.
fn watch_error(e: barge_datastore::Error) -> ApiError {
    match e {
        barge_datastore::Error::Compacted {
            requested,
            compacted,
        } => ApiError::Expired(format!(
            "too old resource version: {requested} ({compacted})"
        )),
        other => other.into(),
    }
}
