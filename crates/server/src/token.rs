//! The join token (`--token`, `--token-file`, or generated), k3s's
//! [secure format](https://docs.k3s.io/cli/token#secure): `K10<sha256 of the server CA
//! certificate, hex>::server:<secret>` — an agent checks the CA it is shown against the hash
//! before it trusts the server.

use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::Digest as _;

/// The cluster's join token: the text users pass around, and what a bearer must present.
#[derive(Clone)]
pub struct JoinToken {
    full: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JoinToken(…)")
    }
}

impl JoinToken {
    /// Wraps a token text (trimmed).
    pub fn new(text: &str) -> Result<JoinToken> {
        let full = text.trim().to_string();
        if full.is_empty() {
            bail!("the join token is empty");
        }
        Ok(JoinToken { full })
    }

    /// The token as users pass it (`--token`).
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The secret part: after `::server:` (or after the last `:` of a `K10…::user:secret`
    /// token), else the whole token.
    pub fn secret(&self) -> &str {
        if self.full.starts_with("K10") {
            if let Some((_, rest)) = self.full.split_once("::") {
                return rest.split_once(':').map(|(_, s)| s).unwrap_or(rest);
            }
        }
        &self.full
    }

    /// The server CA's SHA-256 (lower-case hex) a `K10<hash>::…` token carries, if any.
    pub fn ca_hash(&self) -> Option<&str> {
        let rest = self.full.strip_prefix("K10")?;
        let (hash, _) = rest.split_once("::")?;
        (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hash)
    }

    /// Whether a bearer token `presented` is this join token (its full text or its secret),
    /// compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        ct_eq(presented.as_bytes(), self.full.as_bytes())
            | ct_eq(presented.as_bytes(), self.secret().as_bytes())
    }
}

/// Constant-time equality of two byte strings (the length is not secret).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token given on the command line: `--token`, else the first line of `--token-file`.
pub fn given(token: Option<&str>, token_file: Option<&Path>) -> Result<Option<JoinToken>> {
    if let Some(t) = token {
        return JoinToken::new(t).context("--token").map(Some);
    }
    if let Some(f) = token_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading --token-file {}", f.display()))?;
        let line = text.lines().next().unwrap_or("");
        return JoinToken::new(line)
            .with_context(|| format!("--token-file {}", f.display()))
            .map(Some);
    }
    Ok(None)
}

/// The token for this start: `--token`, else the first line of `--token-file`, else
/// `DATA-DIR/token` from an earlier start, else a new secure token (made from `server_ca_pem`
/// and 16 random bytes) written there with mode 0600.
pub fn resolve(
    token: Option<&str>,
    token_file: Option<&Path>,
    data_dir: &Path,
    server_ca_pem: &str,
) -> Result<JoinToken> {
    if let Some(t) = given(token, token_file)? {
        return Ok(t);
    }
    let path = data_dir.join("token");
    match std::fs::read_to_string(&path) {
        Ok(t) => return JoinToken::new(&t).with_context(|| format!("{}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let mut secret = [0u8; 16];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("generating the join token: {e}"))?;
    let hash = sha2::Sha256::digest(server_ca_pem.as_bytes());
    let token = format!("K10{}::server:{}", hex(&hash), hex(&secret));
    barge_stdx::fs::write_atomic_mode(&path, format!("{token}\n").as_bytes(), 0o600)
        .with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated the cluster's join token");
    JoinToken::new(&token)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_once_then_reused_and_flags_win() {
        let d = tempfile::tempdir().unwrap();
        let t = resolve(None, None, d.path(), "CA").unwrap();
        let hash = hex(&sha2::Sha256::digest(b"CA"));
        assert!(
            t.as_str().starts_with(&format!("K10{hash}::server:")),
            "{t:?}"
        );
        assert_eq!(t.secret().len(), 32);
        let mode = std::fs::metadata(d.path().join("token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = resolve(None, None, d.path(), "CA").unwrap();
        assert_eq!(again.as_str(), t.as_str());

        let given = resolve(Some(" s3cret\n"), None, d.path(), "CA").unwrap();
        assert_eq!(given.as_str(), "s3cret");
        std::fs::write(d.path().join("tf"), "fromfile\nignored\n").unwrap();
        let f = resolve(None, Some(&d.path().join("tf")), d.path(), "CA").unwrap();
        assert_eq!(f.as_str(), "fromfile");
        assert!(resolve(Some("  "), None, d.path(), "CA").is_err());
    }

    #[test]
    fn a_bearer_matches_the_full_token_or_its_secret_only() {
        let t = JoinToken::new("K10abc::server:topsecret").unwrap();
        assert_eq!(t.secret(), "topsecret");
        assert!(t.matches("K10abc::server:topsecret"));
        assert!(t.matches("topsecret"));
        assert!(!t.matches("topsecreT"));
        assert!(!t.matches(""));
        assert!(!t.matches("K10abc"));
        let plain = JoinToken::new("plain").unwrap();
        assert_eq!(plain.secret(), "plain");
        assert!(plain.matches("plain"));
    }
}
