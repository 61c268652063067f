//! Bad input the other areas' tests do not cover: malformed YAML, ServiceAccount tokens that
//! are expired or signed by another key. Each is a kube `Status` and stores nothing.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;
use tower::ServiceExt;

use super::*;
use crate::tokens::{TokenIssuer, DEFAULT_ISSUER};
use crate::BearerToken;

#[tokio::test]
async fn malformed_yaml_is_400_and_stores_nothing() {
    let t = server().await;
    let before = t.store.revision().await.unwrap();
    for body in [
        "metadata:\n  name: [unclosed\n",
        "metadata:\n\tname: tab\n",
        "- a\nb: c\n",
    ] {
        let r = t
            .req(
                Method::POST,
                CMS,
                "application/yaml",
                body,
                Some(admin()),
                None,
            )
            .await;
        assert_eq!(r.code, StatusCode::BAD_REQUEST, "{body:?}: {}", r.text());
        let s = r.json();
        assert_eq!(
            (s["kind"].as_str(), s["reason"].as_str(), s["code"].as_i64()),
            (Some("Status"), Some("BadRequest"), Some(400)),
            "{body:?}"
        );
    }
    assert_eq!(t.store.revision().await.unwrap(), before);
}

/// A request authenticated only by a bearer token, as the transport hands it over.
async fn with_token(t: &T, token: &str) -> Resp {
    let mut r = Request::builder()
        .method(Method::POST)
        .uri(CMS)
        .header("content-type", "application/json")
        .body(Body::from(cm("by-token", json!({})).to_string()))
        .unwrap();
    r.extensions_mut().insert(BearerToken(token.to_string()));
    let resp = t.app.clone().oneshot(r).await.unwrap();
    let code = resp.status();
    let headers = resp.headers().clone();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Resp {
        code,
        headers,
        body,
    }
}

#[tokio::test]
async fn expired_and_forged_tokens_are_401() {
    let key = TokenIssuer::generate_key().unwrap();
    let t = server_with(
        Backend::Memory,
        Config {
            service_account_key: Some(key.clone()),
            ..Config::default()
        },
    )
    .await;
    let sa = t
        .send(
            Method::POST,
            "/api/v1/namespaces/default/serviceaccounts",
            json!({"metadata": {"name": "bot"}}),
        )
        .await
        .json();
    let uid = sa["metadata"]["uid"].as_str().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ours = TokenIssuer::new(&key, DEFAULT_ISSUER).unwrap();
    let theirs = TokenIssuer::new(&TokenIssuer::generate_key().unwrap(), DEFAULT_ISSUER).unwrap();
    let issue = |issuer: &TokenIssuer, at: i64| {
        issuer
            .issue("default", "bot", uid, &[], at, 3600, None, "j")
            .unwrap()
            .0
    };
    let before = t.store.revision().await.unwrap();

    // A valid token authenticates: RBAC, not authentication, refuses the write.
    let r = with_token(&t, &issue(&ours, now)).await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("configmaps is forbidden: User \"system:serviceaccount:default:bot\""));

    for (what, token) in [
        ("expired", issue(&ours, now - 7200)),
        ("forged", issue(&theirs, now)),
        ("garbage", "not.a.jwt".to_string()),
    ] {
        let r = with_token(&t, &token).await;
        assert_eq!(r.code, StatusCode::UNAUTHORIZED, "{what}: {}", r.text());
        let s = r.json();
        assert_eq!(
            (s["kind"].as_str(), s["reason"].as_str(), s["code"].as_i64()),
            (Some("Status"), Some("Unauthorized"), Some(401)),
            "{what}"
        );
    }
    assert_eq!(t.store.revision().await.unwrap(), before, "nothing stored");
}
