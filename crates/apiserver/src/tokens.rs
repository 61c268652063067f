//! ServiceAccount tokens: JWTs the API server signs (the TokenRequest API behind
//! `kubectl create token`, the projected token of pods) and verifies as bearer tokens.
//! Claims as kube-apiserver's bound service account tokens (k8s.io/kubernetes
//! `pkg/serviceaccount/claims.go`); signed ES256 with the server's key.
//! Source: [Service account tokens](https://kubernetes.io/docs/reference/access-authn-authz/service-accounts-admin/#bound-service-account-tokens).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde::{Deserialize, Serialize};

use crate::Identity;

/// The issuer and default audience kube uses.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Token errors; every one is a 401 for the client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("invalid signing key: {0}")]
    Key(String),
    #[error("token is malformed")]
    Malformed,
    #[error("token signature is invalid")]
    Signature,
    #[error("token has expired")]
    Expired,
    #[error("token audience does not match")]
    Audience,
    #[error("token issuer does not match")]
    Issuer,
}

/// Pod/secret/node a token is bound to (`kubernetes.io.pod`, …).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BoundRef {
    pub name: String,
    pub uid: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct KubeClaims {
    pub namespace: String,
    pub serviceaccount: BoundRef,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pod: Option<BoundRef>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub secret: Option<BoundRef>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub node: Option<BoundRef>,
}

/// The JWT claims.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub aud: Vec<String>,
    /// Seconds since the epoch.
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub iss: String,
    pub jti: String,
    pub sub: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubeClaims,
}

impl Claims {
    /// The user the token authenticates as, with kube's groups.
    pub fn identity(&self) -> Identity {
        Identity {
            user: self.sub.clone(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{}", self.kubernetes.namespace),
                "system:authenticated".into(),
            ],
        }
    }
}

/// Signs and verifies tokens with one P-256 key.
pub struct TokenIssuer {
    key: EcdsaKeyPair,
    issuer: String,
    rng: SystemRandom,
}

impl TokenIssuer {
    /// A new PKCS#8 (DER) P-256 key to persist and pass to [`TokenIssuer::new`].
    pub fn generate_key() -> Result<Vec<u8>, TokenError> {
        let rng = SystemRandom::new();
        EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map(|d| d.as_ref().to_vec())
            .map_err(|e| TokenError::Key(e.to_string()))
    }

    /// An issuer from a PKCS#8 P-256 key.
    pub fn new(pkcs8: &[u8], issuer: &str) -> Result<TokenIssuer, TokenError> {
        let rng = SystemRandom::new();
        let key =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
                .map_err(|e| TokenError::Key(e.to_string()))?;
        Ok(TokenIssuer {
            key,
            issuer: issuer.to_string(),
            rng,
        })
    }

    /// The public key (uncompressed point), for a JWKS document.
    pub fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    /// Issues a token for ServiceAccount `namespace/name` (uid `uid`), valid `seconds` from
    /// `now` (epoch seconds), for `audiences` (empty: the issuer).
    #[allow(clippy::too_many_arguments)]
    pub fn issue(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        audiences: &[String],
        now: i64,
        seconds: i64,
        pod: Option<BoundRef>,
        jti: &str,
    ) -> Result<(String, Claims), TokenError> {
        let claims = Claims {
            aud: if audiences.is_empty() {
                vec![self.issuer.clone()]
            } else {
                audiences.to_vec()
            },
            exp: now + seconds,
            iat: now,
            nbf: now,
            iss: self.issuer.clone(),
            jti: jti.to_string(),
            sub: format!("system:serviceaccount:{namespace}:{name}"),
            kubernetes: KubeClaims {
                namespace: namespace.to_string(),
                serviceaccount: BoundRef {
                    name: name.to_string(),
                    uid: uid.to_string(),
                },
                pod,
                secret: None,
                node: None,
            },
        };
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
        let body =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).map_err(|_| TokenError::Malformed)?);
        let signing_input = format!("{header}.{body}");
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|e| TokenError::Key(e.to_string()))?;
        Ok((
            format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())),
            claims,
        ))
    }

    /// Verifies a token's signature, issuer, time window (at `now`) and that it is for one of
    /// `audiences` (empty: the issuer). The caller then checks the ServiceAccount (and bound
    /// pod) still exist with the claimed uids.
    pub fn verify(
        &self,
        token: &str,
        now: i64,
        audiences: &[String],
    ) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(b), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| TokenError::Malformed)?;
        let public = signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            self.public_key(),
        );
        public
            .verify(format!("{h}.{b}").as_bytes(), &sig)
            .map_err(|_| TokenError::Signature)?;
        let claims: Claims = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(b)
                .map_err(|_| TokenError::Malformed)?,
        )
        .map_err(|_| TokenError::Malformed)?;
        if claims.iss != self.issuer {
            return Err(TokenError::Issuer);
        }
        if now >= claims.exp || now < claims.nbf - 60 {
            return Err(TokenError::Expired);
        }
        let wanted: Vec<String> = if audiences.is_empty() {
            vec![self.issuer.clone()]
        } else {
            audiences.to_vec()
        };
        if !claims.aud.iter().any(|a| wanted.contains(a)) {
            return Err(TokenError::Audience);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_verify_expire_forge() {
        let key = TokenIssuer::generate_key().unwrap();
        let issuer = TokenIssuer::new(&key, DEFAULT_ISSUER).unwrap();
        let (token, claims) = issuer
            .issue("dev", "bot", "u-1", &[], 1000, 3600, None, "j1")
            .unwrap();
        let got = issuer.verify(&token, 1001, &[]).unwrap();
        assert_eq!(got, claims);
        assert_eq!(got.identity().user, "system:serviceaccount:dev:bot");
        assert!(got
            .identity()
            .groups
            .contains(&"system:serviceaccounts:dev".to_string()));
        assert_eq!(issuer.verify(&token, 4600, &[]), Err(TokenError::Expired));
        assert_eq!(
            issuer.verify(&token, 1001, &["other".into()]),
            Err(TokenError::Audience)
        );
        // Another key's token, and a tampered payload, fail the signature.
        let other =
            TokenIssuer::new(&TokenIssuer::generate_key().unwrap(), DEFAULT_ISSUER).unwrap();
        let (forged, _) = other
            .issue("dev", "bot", "u-1", &[], 1000, 3600, None, "j2")
            .unwrap();
        assert_eq!(
            issuer.verify(&forged, 1001, &[]),
            Err(TokenError::Signature)
        );
        let mut parts: Vec<&str> = token.split('.').collect();
        let evil = URL_SAFE_NO_PAD.encode(br#"{"sub":"system:admin"}"#);
        parts[1] = &evil;
        assert_eq!(
            issuer.verify(&parts.join("."), 1001, &[]),
            Err(TokenError::Signature)
        );
        assert_eq!(
            issuer.verify("garbage", 1001, &[]),
            Err(TokenError::Malformed)
        );
    }
}
