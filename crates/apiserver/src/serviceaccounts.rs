//! ServiceAccount tokens on the API: the TokenRequest subresource
//! (`POST …/serviceaccounts/NAME/token`, `kubectl create token`) and the authentication of
//! bearer tokens it issued (signature, issuer, audience, expiry by [`crate::tokens`], then the
//! ServiceAccount must still exist with the uid the token names).

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::status::{ApiError, Target};
use crate::{ApiServer, Identity};

/// kube's minimum `expirationSeconds` (10 minutes) and default (1 hour).
const MIN_SECONDS: i64 = 600;
const DEFAULT_SECONDS: i64 = 3600;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl ApiServer {
    async fn service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, ApiError> {
        let Some(info) = self.registry().lookup("", "v1", "serviceaccounts").cloned() else {
            return Ok(None);
        };
        let (_, kv) = self
            .store
            .get(&info.key(Some(namespace), name), None)
            .await?;
        Ok(kv.and_then(|kv| serde_json::from_slice(&kv.value).ok()))
    }

    /// The identity of a ServiceAccount token this server issued, if it is valid and its
    /// ServiceAccount still exists with the same uid.
    pub async fn authenticate_service_account(&self, token: &str) -> Option<Identity> {
        let issuer = self.tokens.as_ref()?;
        let claims = issuer.verify(token, now(), &[]).ok()?;
        let sa = self
            .service_account(
                &claims.kubernetes.namespace,
                &claims.kubernetes.serviceaccount.name,
            )
            .await
            .ok()??;
        (sa["metadata"]["uid"].as_str() == Some(claims.kubernetes.serviceaccount.uid.as_str()))
            .then(|| claims.identity())
    }
}

/// `POST /api/v1/namespaces/{namespace}/serviceaccounts/{name}/token`.
pub(crate) async fn token_request(
    State(api): State<ApiServer>,
    Path((namespace, name)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let Some(issuer) = api.tokens.clone() else {
        return ApiError::Internal("this server has no service account signing key".into())
            .into_response();
    };
    // kubectl's typed client posts protobuf.
    let decoded = if body.starts_with(b"k8s\0") {
        crate::proto::decode(&body).map_err(|e| e.to_string())
    } else if body.is_empty() {
        Ok(json!({}))
    } else {
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    };
    let mut req = match decoded {
        Ok(v) => v,
        Err(e) => {
            return ApiError::BadRequest(format!("error decoding TokenRequest: {e}"))
                .into_response()
        }
    };
    let sa = match api.service_account(&namespace, &name).await {
        Ok(Some(sa)) => sa,
        Ok(None) => {
            let info = api.registry().lookup("", "v1", "serviceaccounts").cloned();
            return match info {
                Some(info) => ApiError::NotFound(Target::resource(&info, &name)).into_response(),
                None => ApiError::NoRoute.into_response(),
            };
        }
        Err(e) => return e.into_response(),
    };
    let seconds = req["spec"]["expirationSeconds"]
        .as_i64()
        .unwrap_or(DEFAULT_SECONDS);
    if seconds < MIN_SECONDS {
        return ApiError::BadRequest(
            "spec.expirationSeconds: Invalid value: may not specify a duration less than 10 minutes".into(),
        )
        .into_response();
    }
    let audiences: Vec<String> = req["spec"]["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let uid = sa["metadata"]["uid"].as_str().unwrap_or_default();
    let mut jti = [0u8; 16];
    let _ = getrandom::fill(&mut jti);
    let jti: String = jti.iter().map(|b| format!("{b:02x}")).collect();
    let issued = now();
    let (token, claims) = match issuer.issue(
        &namespace, &name, uid, &audiences, issued, seconds, None, &jti,
    ) {
        Ok(t) => t,
        Err(e) => return ApiError::Internal(e.to_string()).into_response(),
    };
    let expires = chrono::DateTime::from_timestamp(claims.exp, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    req["apiVersion"] = json!("authentication.k8s.io/v1");
    req["kind"] = json!("TokenRequest");
    req["metadata"] = json!({"name": name, "namespace": namespace, "creationTimestamp": null});
    req["spec"]["audiences"] = json!(claims.aud);
    req["spec"]["expirationSeconds"] = json!(seconds);
    req["status"] = json!({"token": token, "expirationTimestamp": expires});
    (StatusCode::CREATED, axum::Json(req)).into_response()
}
