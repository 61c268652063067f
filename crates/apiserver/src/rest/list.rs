//! `GET` of a collection: label/field selectors, `limit`/`continue` paging (kube's continue
//! token), `resourceVersion`/`resourceVersionMatch` as the API Concepts page describes.

use axum::http::StatusCode;
use axum::response::Response;
use barge_datastore::ListOptions;
use base64::Engine;
use serde_json::{json, Value};

use super::object::decode;
use super::{json_response, Req};
use crate::registry::ResourceInfo;
use crate::request::Query;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::{ApiError, ApiResult};
use crate::ApiServer;

/// The list options of a request, parsed.
#[derive(Clone, Debug, Default)]
pub(crate) struct ListParams {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    /// Read at this revision (continue token or `resourceVersionMatch=Exact`).
    pub exact: Option<i64>,
    /// `continue`'s start key, relative to the list prefix (without the trailing NUL).
    pub start: Option<String>,
    /// The `resourceVersion` parameter as given.
    pub resource_version: Option<String>,
}

/// A continue token: kube's `{"v":"meta.k8s.io/v1","rv":N,"start":"<key>\u0000"}`, base64
/// (URL alphabet, no padding), with the key relative to the list's prefix.
pub(crate) fn encode_continue(rv: i64, start: &str) -> String {
    // Field order as kube's `continueToken` struct: v, rv, start.
    let start = Value::String(format!("{start}\u{0}"));
    let token = format!(r#"{{"v":"meta.k8s.io/v1","rv":{rv},"start":{start}}}"#);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token)
}

fn decode_continue(token: &str) -> ApiResult<(i64, String)> {
    let bad = |why: &str| ApiError::BadRequest(format!("invalid continue token: {why}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .map_err(|_| bad("continue key is not valid: illegal base64 data"))?;
    let v: Value = serde_json::from_slice(&raw).map_err(|e| bad(&e.to_string()))?;
    if v["v"] != "meta.k8s.io/v1" {
        return Err(bad(
            "continue key is not valid: server does not recognize this encoded version",
        ));
    }
    let rv = v["rv"].as_i64().filter(|r| *r > 0);
    let start = v["start"]
        .as_str()
        .filter(|s| !s.is_empty() && !s.contains(".."));
    match (rv, start) {
        (Some(rv), Some(start)) => Ok((rv, start.trim_end_matches('\u{0}').to_string())),
        _ => Err(bad("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")),
    }
}

impl ListParams {
    /// Parses the list parameters of `query` for `info`.
    pub fn parse(info: &ResourceInfo, query: &Query) -> ApiResult<Self> {
        let mut p = ListParams {
            labels: LabelSelector::parse(query.get("labelSelector").unwrap_or(""))
                .map_err(|e| ApiError::BadRequest(e.to_string()))?,
            fields: FieldSelector::parse(
                query.get("fieldSelector").unwrap_or(""),
                info.group,
                info.plural,
            )
            .map_err(|e| ApiError::BadRequest(e.to_string()))?,
            limit: query.int("limit")?.filter(|l| *l > 0).map(|l| l as usize),
            resource_version: query.non_empty("resourceVersion").map(String::from),
            ..Default::default()
        };
        let rv = match p.resource_version.as_deref() {
            None => None,
            Some(s) => Some(
                s.parse::<i64>()
                    .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {s}")))?,
            ),
        };
        if let Some(token) = query.non_empty("continue") {
            if rv.is_some_and(|r| r != 0) {
                return Err(ApiError::BadRequest(
                    "specifying resource version is not allowed when using continue".into(),
                ));
            }
            let (crv, start) = decode_continue(token)?;
            p.exact = Some(crv);
            p.start = Some(start);
        } else {
            match (query.non_empty("resourceVersionMatch"), rv) {
                (None, _) | (Some("NotOlderThan"), Some(_)) => {}
                // A watch-list (`sendInitialEvents=true`) may start from "any" state.
                (Some("NotOlderThan"), None) if query.get("sendInitialEvents").is_some() => {}
                (Some("Exact"), Some(0)) => {
                    return Err(ApiError::BadRequest(
                        "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\""
                            .into(),
                    ))
                }
                (Some("Exact"), Some(r)) => p.exact = Some(r),
                (Some(m @ ("Exact" | "NotOlderThan")), None) => {
                    return Err(ApiError::BadRequest(format!(
                        "resourceVersionMatch {m:?} is forbidden unless resourceVersion is provided"
                    )))
                }
                (Some(m), _) => {
                    return Err(ApiError::BadRequest(format!(
                        "resourceVersionMatch: Unsupported value: {m:?}: supported values: \"Exact\", \"NotOlderThan\""
                    )))
                }
            }
        }
        Ok(p)
    }

    /// Whether the object passes both selectors.
    pub fn matches(&self, obj: &Value) -> bool {
        self.labels
            .matches(obj.get("metadata").and_then(|m| m.get("labels")))
            && self.fields.matches(obj)
    }
}

/// One page of a list, ready to render.
pub(crate) struct Listed {
    pub items: Vec<Value>,
    pub revision: i64,
    pub continue_token: Option<String>,
    pub remaining: Option<i64>,
}

impl ApiServer {
    pub(crate) async fn list(&self, req: &Req) -> ApiResult<Response> {
        let params = ListParams::parse(&req.info, &req.query)?;
        let table = crate::table::wants_table(&req.headers, &req.query)?;
        let listed = self
            .list_objects(&req.info, req.namespace(), &params)
            .await?;
        let mut metadata = json!({"resourceVersion": listed.revision.to_string()});
        if let Some(c) = listed.continue_token {
            metadata["continue"] = json!(c);
        }
        if let Some(r) = listed.remaining {
            metadata["remainingItemCount"] = json!(r);
        }
        if let Some(t) = table {
            let table = crate::table::table(&req.info, &listed.items, metadata, t.include, true);
            return Ok(super::table_response(&table));
        }
        let list = json!({
            "kind": req.info.list_kind(),
            "apiVersion": req.info.api_version(),
            "metadata": metadata,
            "items": listed
                .items
                .into_iter()
                .map(|o| super::custom::list_item(&req.info, o))
                .collect::<Vec<_>>(),
        });
        Ok(json_response(StatusCode::OK, &list))
    }

    /// Reads the matching objects of `info` in `namespace` (all if `None`) per `params`.
    pub(crate) async fn list_objects(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> ApiResult<Listed> {
        let prefix = info.prefix(namespace);
        if params.exact.is_none() {
            if let Some(rv) = params.resource_version.as_deref() {
                let n: i64 = rv.parse().unwrap_or(0);
                let current = self.store.revision().await?;
                if n > current {
                    return Err(ApiError::TooLargeResourceVersion {
                        requested: n,
                        current,
                    });
                }
            }
        }
        let mut revision = params.exact;
        let mut start_after = params.start.as_ref().map(|s| format!("{prefix}{s}"));
        let filtered = !params.labels.is_empty() || !params.fields.is_empty();
        let mut items = Vec::new();
        loop {
            let page_size = params.limit.map(|l| {
                if filtered {
                    l.max(500)
                } else {
                    l - items.len()
                }
            });
            let page = self
                .store
                .list(
                    &prefix,
                    ListOptions {
                        start_after: start_after.clone(),
                        limit: page_size,
                        revision,
                    },
                )
                .await
                .map_err(|e| match e {
                    barge_datastore::Error::Compacted { .. } if params.start.is_some() => {
                        ApiError::Expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into())
                    }
                    barge_datastore::Error::Compacted { .. } => ApiError::Expired(
                        "The resourceVersion for the provided list is too old.".into(),
                    ),
                    other => other.into(),
                })?;
            revision = Some(page.revision);
            let count = page.kvs.len();
            for (i, kv) in page.kvs.iter().enumerate() {
                let obj = decode(kv)?;
                if !params.matches(&obj) {
                    continue;
                }
                items.push(obj);
                if params.limit.is_some_and(|l| items.len() >= l) {
                    let left = (count - i - 1) as i64 + page.remaining;
                    if left == 0 {
                        break;
                    }
                    let relative = kv.key.strip_prefix(&prefix).unwrap_or(&kv.key);
                    return Ok(Listed {
                        items,
                        revision: page.revision,
                        continue_token: Some(encode_continue(page.revision, relative)),
                        remaining: (!filtered).then_some(left),
                    });
                }
            }
            if page.remaining == 0 || count == 0 {
                return Ok(Listed {
                    items,
                    revision: page.revision,
                    continue_token: None,
                    remaining: None,
                });
            }
            start_after = page.kvs.last().map(|kv| kv.key.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let t = encode_continue(42, "default/b");
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&t)
            .unwrap();
        assert_eq!(
            String::from_utf8(raw).unwrap(),
            r#"{"v":"meta.k8s.io/v1","rv":42,"start":"default/b\u0000"}"#
        );
        assert_eq!(decode_continue(&t).unwrap(), (42, "default/b".into()));
        assert!(decode_continue("!!").is_err());
    }
}
