//! Authentication, as kube-apiserver's authenticator chain does it for the methods barge has
//! so far (`k8s.io/apiserver/pkg/authentication`): x509 client certificates, then bearer
//! tokens, else anonymous. The result is the [`Identity`] the API server authorizes.
//!
//! | credential | user | groups |
//! |---|---|---|
//! | client certificate verified against the client CA (TLS handshake) | its subject CN | its subject O's + `system:authenticated` |
//! | `Authorization: Bearer <join token>` (full token or its secret part) | [`JOIN_TOKEN_USER`] | `system:bootstrappers`, `system:authenticated` |
//! | `Authorization: Bearer <anything else>` | — 401 `Status` (reason `Unauthorized`) | |
//! | none (or a certificate without CN, or a non-bearer `Authorization`) | `system:anonymous` | `system:unauthenticated` |
//!
//! The join token identity follows Kubernetes's bootstrap tokens (user
//! `system:bootstrap:<id>`, group `system:bootstrappers`): what a joining agent may do is for
//! RBAC to decide. ServiceAccount JWTs come later (another authenticator before the join
//! token). A certificate from another CA never gets here: the handshake fails.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use barge_apiserver::Identity;

use crate::token::JoinToken;

/// The user a request authenticated with the cluster's join token acts as.
pub const JOIN_TOKEN_USER: &str = "system:bootstrap:barge-join";

/// The identity of a verified client certificate (DER): CN → user, each O → a group, plus
/// `system:authenticated`. `None` when the subject has no CN (kube then tries the next
/// authenticator) or the certificate does not parse.
pub fn identity_from_cert(der: &[u8]) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    if user.is_empty() {
        return None;
    }
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    groups.push("system:authenticated".to_string());
    Some(Identity { user, groups })
}

/// The anonymous identity (`system:anonymous`, group `system:unauthenticated`).
pub fn anonymous() -> Identity {
    Identity {
        user: "system:anonymous".into(),
        groups: vec!["system:unauthenticated".into()],
    }
}

/// A bearer token was presented and is not valid (→ 401 [`unauthorized`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidToken;

/// Who sent a request: the connection's certificate identity if any, else the bearer token's,
/// else anonymous.
pub fn authenticate(
    cert: Option<&Identity>,
    headers: &HeaderMap,
    token: &JoinToken,
) -> Result<Identity, InvalidToken> {
    if let Some(id) = cert {
        return Ok(id.clone());
    }
    let Some(auth) = headers.get(header::AUTHORIZATION) else {
        return Ok(anonymous());
    };
    // As kube's bearertoken authenticator: "Bearer" (any case) and one token; any other
    // scheme is not a bearer token and leaves the request to the next authenticator.
    let text = auth.to_str().map_err(|_| InvalidToken)?;
    let mut parts = text.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(scheme), Some(t), None) if scheme.eq_ignore_ascii_case("bearer") => {
            if token.matches(t) {
                Ok(Identity {
                    user: JOIN_TOKEN_USER.into(),
                    groups: vec!["system:bootstrappers".into(), "system:authenticated".into()],
                })
            } else {
                Err(InvalidToken)
            }
        }
        (Some(scheme), _, _) if scheme.eq_ignore_ascii_case("bearer") => Err(InvalidToken),
        _ => Ok(anonymous()),
    }
}

/// The token of an `Authorization: Bearer <token>` header, if that is what the request has.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    let text = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let mut parts = text.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(scheme), Some(t), None) if scheme.eq_ignore_ascii_case("bearer") => {
            Some(t.to_string())
        }
        _ => None,
    }
}

/// kube-apiserver's answer to a failed authentication: 401 with a `Status`.
pub fn unauthorized() -> Response {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401
    });
    let mut r = (StatusCode::UNAUTHORIZED, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn the_chain_is_certificate_then_bearer_then_anonymous() {
        let t = JoinToken::new("K10ab::server:sekrit").unwrap();
        let admin = Identity {
            user: "system:admin".into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        };
        // A certificate wins, even next to a wrong bearer token.
        assert_eq!(
            authenticate(Some(&admin), &headers(Some("Bearer nope")), &t),
            Ok(admin)
        );
        let id = authenticate(None, &headers(Some("Bearer sekrit")), &t).unwrap();
        assert_eq!(id.user, JOIN_TOKEN_USER);
        assert!(id.groups.contains(&"system:bootstrappers".to_string()));
        let id = authenticate(None, &headers(Some("bearer K10ab::server:sekrit")), &t).unwrap();
        assert_eq!(id.user, JOIN_TOKEN_USER);
        assert_eq!(
            authenticate(None, &headers(Some("Bearer wrong")), &t),
            Err(InvalidToken)
        );
        assert_eq!(
            authenticate(None, &headers(Some("Bearer")), &t),
            Err(InvalidToken)
        );
        assert_eq!(authenticate(None, &headers(None), &t), Ok(anonymous()));
        assert_eq!(
            authenticate(None, &headers(Some("Basic dXNlcjpwdw==")), &t),
            Ok(anonymous())
        );
    }

    #[test]
    fn certificate_subject_becomes_user_and_groups() {
        let kp = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        // (rcgen keeps one value per attribute type: one O here.)
        dn.push(rcgen::DnType::OrganizationName, "team-a");
        dn.push(rcgen::DnType::CommonName, "alice");
        p.distinguished_name = dn;
        let cert = p.self_signed(&kp).unwrap();
        let id = identity_from_cert(cert.der()).unwrap();
        assert_eq!(id.user, "alice");
        assert_eq!(id.groups, ["team-a", "system:authenticated"]);

        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        let cert = p.self_signed(&kp).unwrap();
        assert_eq!(identity_from_cert(cert.der()), None);
    }
}
