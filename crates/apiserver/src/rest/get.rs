//! `GET` of one object (and of its `status` subresource, which is the object).

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::object::decode;
use super::{json_response, Req};
use crate::status::{ApiError, ApiResult};
use crate::ApiServer;

impl ApiServer {
    pub(crate) async fn get(&self, req: &Req) -> ApiResult<Response> {
        let revision = match req.query.non_empty("resourceVersion") {
            // "0" and any other value: kube serves the latest it has (not older than N).
            None | Some("0") => None,
            Some(rv) => {
                let n: i64 = rv
                    .parse()
                    .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {rv}")))?;
                let current = self.store.revision().await?;
                if n > current {
                    return Err(ApiError::TooLargeResourceVersion {
                        requested: n,
                        current,
                    });
                }
                None
            }
        };
        let obj = self.get_current(req, revision).await?.0;
        if let Some(t) = crate::table::wants_table(&req.headers, &req.query)? {
            let meta = json!({"resourceVersion": obj["metadata"]["resourceVersion"]});
            let table = crate::table::table(&req.info, &[obj], meta, t.include, true);
            return Ok(super::table_response(&table));
        }
        Ok(json_response(StatusCode::OK, &obj))
    }

    /// The URL's object and its mod_revision, or NotFound.
    pub(crate) async fn get_current(
        &self,
        req: &Req,
        revision: Option<i64>,
    ) -> ApiResult<(Value, i64)> {
        let (_, kv) = self.store.get(&req.key(), revision).await?;
        let kv = kv.ok_or_else(|| ApiError::NotFound(req.target()))?;
        let mut obj = decode(&kv)?;
        super::custom::to_request_version(&req.info, &mut obj);
        Ok((obj, kv.mod_revision))
    }
}
