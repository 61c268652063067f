//! Credentials and authentication: [`Credentials`] as `X-Registry-Auth` carries them, the
//! auth oci-client uses for one repository ([`repo_auth`]: identity tokens exchanged at the
//! token realm for a repository-scoped access token), and [`login`] checks.
//!
//! **Invariants:** an identity token is never sent as a password: it is only exchanged at the
//! token realm of the contacted registry's Bearer challenge.

use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;

use crate::config::RegistryConfig;
use crate::endpoint::{endpoint, http_client, speaks_plain_http, Endpoint};
use crate::error::{one_line, RegistryError};

/// Credentials for one registry (what `X-Registry-Auth` carries).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password (or token).
    pub password: String,
    /// An OAuth identity token (used as a Bearer token).
    pub identity_token: Option<String>,
}

impl Credentials {
    /// Basic credentials (or anonymous); identity tokens go through [`repo_auth`].
    fn to_auth(c: Option<&Credentials>) -> RegistryAuth {
        match c {
            Some(c) if !c.username.is_empty() => {
                RegistryAuth::Basic(c.username.clone(), c.password.clone())
            }
            _ => RegistryAuth::Anonymous,
        }
    }

    fn identity_token(&self) -> Option<&str> {
        self.identity_token.as_deref().filter(|t| !t.is_empty())
    }
}

/// The auth oci-client uses for repository `path` on `ep`. An identity token (OAuth2 refresh
/// token, `identitytoken` in `~/.docker/config.json`) is exchanged as docker does: a `POST` to
/// the token realm of the registry's Bearer challenge with `grant_type=refresh_token`, for an
/// access token scoped to the repository; other credentials are passed as they are.
pub(crate) async fn repo_auth(
    cfg: &RegistryConfig,
    ep: &Endpoint,
    path: &str,
    creds: Option<&Credentials>,
    op: RegistryOperation,
) -> Result<RegistryAuth, RegistryError> {
    let Some(token) = creds.and_then(Credentials::identity_token) else {
        return Ok(Credentials::to_auth(creds));
    };
    let http = http_client(cfg, &ep.host)?;
    let scheme = if ep.plain { "http" } else { "https" };
    let url = format!("{scheme}://{}/v2/", ep.host);
    let res = http
        .get(&url)
        .send()
        .await
        .map_err(|e| RegistryError::Registry(format!("Get \"{url}\": {}", one_line(&e))))?;
    if res.status().is_success() {
        return Ok(RegistryAuth::Anonymous);
    }
    let challenge = res
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let params = parse_challenge(&challenge);
    let (Some(realm), true) = (
        params.get("realm"),
        challenge.to_ascii_lowercase().starts_with("bearer"),
    ) else {
        return Err(RegistryError::Unauthorized(format!(
            "unauthorized: {} does not use token authentication; an identity token cannot be used",
            ep.host
        )));
    };
    let actions = match op {
        RegistryOperation::Push => "pull,push",
        RegistryOperation::Pull => "pull",
    };
    let scope = format!("repository:{path}:{actions}");
    let service = params.get("service").cloned().unwrap_or_default();
    let body = [
        ("grant_type", "refresh_token"),
        ("refresh_token", token),
        ("service", service.as_str()),
        ("scope", scope.as_str()),
        ("client_id", "docker"),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", form_encode(v)))
    .collect::<Vec<_>>()
    .join("&");
    let res = http
        .post(realm)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| RegistryError::Registry(format!("Post \"{realm}\": {}", one_line(&e))))?;
    let status = res.status();
    if !status.is_success() {
        return Err(RegistryError::Unauthorized(format!(
            "unauthorized: the identity token was refused by {realm}: {status}"
        )));
    }
    let v: serde_json::Value = res
        .json()
        .await
        .map_err(|e| RegistryError::Registry(format!("token from {realm}: {}", one_line(&e))))?;
    let access = v
        .get("access_token")
        .or_else(|| v.get("token"))
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            RegistryError::Registry(format!("token from {realm}: no access_token in the answer"))
        })?;
    Ok(RegistryAuth::Bearer(access.to_string()))
}

/// The parameters of a `WWW-Authenticate` challenge (`Bearer realm="...",service="..."`).
fn parse_challenge(h: &str) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    let rest = h.split_once(' ').map(|x| x.1).unwrap_or("");
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars
                .by_ref()
                .take_while(|c| *c != ',')
                .collect::<String>()
                .trim()
                .to_string();
        }
        out.insert(key.trim().to_ascii_lowercase(), value);
    }
    out
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Checks credentials against `server` (`HOST[:PORT]`, Docker Hub when empty): the `/v2/`
/// challenge is answered with them (Basic directly, Bearer through the token realm).
pub async fn login(
    cfg: &RegistryConfig,
    server: &str,
    creds: &Credentials,
) -> Result<(), RegistryError> {
    let host = normalize_server(server);
    let plain = cfg.is_insecure(&host) && speaks_plain_http(&host).await;
    let scheme = if plain { "http" } else { "https" };
    let http = http_client(cfg, &host)?;
    let url = format!("{scheme}://{host}/v2/");
    let err =
        |e: reqwest::Error| RegistryError::Registry(format!("Get \"{url}\": {}", one_line(&e)));
    let res = http.get(&url).send().await.map_err(err)?;
    if res.status().is_success() {
        return Ok(()); // no auth required
    }
    let challenge = res
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let denied = || {
        RegistryError::Unauthorized(format!(
            "login attempt to {url} failed with status: 401 Unauthorized"
        ))
    };
    if challenge.to_ascii_lowercase().starts_with("basic") {
        let res = http
            .get(&url)
            .basic_auth(&creds.username, Some(&creds.password))
            .send()
            .await
            .map_err(err)?;
        return if res.status().is_success() {
            Ok(())
        } else {
            Err(denied())
        };
    }
    // Bearer: let oci-client run the token dance.
    let probe =
        oci_client::Reference::with_tag(host.clone(), "library/hello".into(), "latest".into());
    let c2 = endpoint(cfg, &host, plain).await;
    match c2
        .client
        .auth(
            &probe,
            &Credentials::to_auth(Some(creds)),
            RegistryOperation::Pull,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(_) => Err(denied()),
    }
}

/// `https://index.docker.io/v1/`, `docker.io`, ``  → `index.docker.io`; URLs → `HOST[:PORT]`.
pub fn normalize_server(server: &str) -> String {
    let s = server
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let s = s.split('/').next().unwrap_or(s);
    match s {
        "" | "docker.io" | "index.docker.io" | "registry-1.docker.io" => "index.docker.io".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parameters_and_form_encoding() {
        let p = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["service"], "registry.example");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        let p = parse_challenge(r#"Bearer realm=http://h/t , service="s\"q""#);
        assert_eq!(p["realm"], "http://h/t");
        assert_eq!(p["service"], "s\"q");
        assert_eq!(
            form_encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
        assert_eq!(form_encode("a b~"), "a+b~");
    }
}
