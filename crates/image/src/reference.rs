//! Docker image references and their normalisation
//! (`busybox:1.35` is `docker.io/library/busybox:1.35`), after
//! [distribution/reference](https://github.com/distribution/reference).

use std::fmt;

use crate::ImageError;

/// The registry Docker Hub images live on.
pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const NAME_TOTAL_LENGTH_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// A normalised image reference: `domain/path[:tag][@digest]`.
///
/// Parsing follows `ParseNormalizedNamed` of distribution/reference: the first path component is
/// a domain if it contains `.` or `:` or is `localhost` (or has upper-case letters); otherwise the
/// domain is `docker.io`, and single-component Docker Hub names get `library/`. A reference
/// without tag and digest gets the tag `latest`. Errors: [`ImageError::InvalidReference`]
/// ("invalid reference format").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

fn invalid(s: &str, reason: &str) -> ImageError {
    ImageError::InvalidReference {
        reference: s.to_string(),
        reason: reason.to_string(),
    }
}

fn is_alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum_lower(b[0] as char) || !is_alnum_lower(b[b.len() - 1] as char) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let ch = b[i] as char;
        if is_alnum_lower(ch) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        while i < b.len() && !is_alnum_lower(b[i] as char) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.chars().all(|c| c == '-');
        if !ok {
            return false;
        }
    }
    true
}

/// `host[:port]` with host = dotted labels of `[a-zA-Z0-9-]` (or a bracketed IPv6 address).
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, after)) => {
                if ip.is_empty() || !ip.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
                    return false;
                }
                match after.strip_prefix(':') {
                    Some(p) => return !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()),
                    None => return after.is_empty(),
                }
            }
            None => return false,
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn valid_tag(t: &str) -> bool {
    let mut chars = t.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() || c == '_' => {}
        _ => return false,
    }
    t.len() <= TAG_MAX
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
}

/// Whether `s` is `sha256:<64 lowercase hex>`.
pub fn valid_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(is_hex64)
}

/// Whether `s` is 64 lowercase hex digits (an image ID without algorithm).
pub fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Reference {
    /// Parses and normalises a reference such as `busybox`, `busybox:1.35`,
    /// `localhost:5000/x/y:tag`, `busybox@sha256:<hex>`.
    pub fn parse(s: &str) -> Result<Reference, ImageError> {
        if s.is_empty() {
            return Err(invalid(s, "empty reference"));
        }
        if is_hex64(s) {
            return Err(invalid(s, "cannot specify 64-byte hexadecimal strings"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                if !valid_digest(d) {
                    return Err(invalid(s, "invalid digest"));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that is not followed by a '/'.
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(invalid(s, "invalid tag"));
            }
        }
        if name.is_empty() {
            return Err(invalid(s, "empty repository name"));
        }
        if name.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(invalid(
                s,
                "repository name must not be more than 255 characters",
            ));
        }
        let (mut domain, mut path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.to_lowercase() != first =>
            {
                (first.to_string(), remainder.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        if domain == LEGACY_DEFAULT_DOMAIN {
            domain = DEFAULT_DOMAIN.to_string();
        }
        if !valid_domain(&domain) {
            return Err(invalid(s, "invalid domain"));
        }
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid(s, "repository name must be lowercase"));
        }
        if !path.split('/').all(valid_path_component) {
            return Err(invalid(s, "invalid repository name"));
        }
        if domain == DEFAULT_DOMAIN && !path.contains('/') {
            path = format!("{OFFICIAL_REPO_PREFIX}{path}");
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// The registry host, e.g. `docker.io`, `localhost`, `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path within the registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag, if any (`latest` when the input had neither tag nor digest).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`sha256:<hex>`), if any.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `domain/path` without tag or digest: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository with a digest and no tag.
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference {
            tag: None,
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    fn suffix(&self) -> String {
        let mut s = String::new();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// Fully qualified: `docker.io/library/busybox:1.35`.
    pub fn full(&self) -> String {
        format!("{}{}", self.name(), self.suffix())
    }

    /// Docker's short form: `busybox:1.35`, `myuser/app:1`, `localhost/busybox:1.35`.
    pub fn familiar(&self) -> String {
        format!("{}{}", self.familiar_name(), self.suffix())
    }

    /// The short repository name: `busybox`, `localhost/busybox`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
                Some(p) if !p.contains('/') => p.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.name()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full())
    }
}

impl std::str::FromStr for Reference {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalisation_table() {
        let d_ref = format!("busybox@{D}");
        let d_full = format!("docker.io/library/busybox@{D}");
        let cases: Vec<(&str, &str, &str)> = vec![
            (
                "busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "busybox:1.35",
                "docker.io/library/busybox:1.35",
                "busybox:1.35",
            ),
            (
                "docker.io/library/busybox:1.35",
                "docker.io/library/busybox:1.35",
                "busybox:1.35",
            ),
            (
                "index.docker.io/library/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            ("user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
            (
                "localhost/busybox:1.35",
                "localhost/busybox:1.35",
                "localhost/busybox:1.35",
            ),
            (
                "localhost:5000/a/b",
                "localhost:5000/a/b:latest",
                "localhost:5000/a/b:latest",
            ),
            (
                "quay.io/x/y:1-a_b.c",
                "quay.io/x/y:1-a_b.c",
                "quay.io/x/y:1-a_b.c",
            ),
            (
                "a__b/c-d--e/f.g:t",
                "docker.io/a__b/c-d--e/f.g:t",
                "a__b/c-d--e/f.g:t",
            ),
            (d_ref.as_str(), d_full.as_str(), d_ref.as_str()),
        ];
        for (input, full, familiar) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.full(), full, "{input}");
            assert_eq!(r.to_string(), full, "{input}");
            assert_eq!(r.familiar(), familiar, "{input}");
        }
    }

    #[test]
    fn parts() {
        let r = Reference::parse("busybox:1.35").unwrap();
        assert_eq!(r.domain(), "docker.io");
        assert_eq!(r.path(), "library/busybox");
        assert_eq!(r.tag(), Some("1.35"));
        assert_eq!(r.digest(), None);
        assert_eq!(r.familiar_name(), "busybox");
        let r = Reference::parse(&format!("busybox:1@{D}")).unwrap();
        assert_eq!(r.tag(), Some("1"));
        assert_eq!(r.digest(), Some(D));
        let r = Reference::parse("localhost/busybox:1.35").unwrap();
        assert_eq!(r.domain(), "localhost");
        assert_eq!(r.familiar_name(), "localhost/busybox");
    }

    #[test]
    fn rejects() {
        let long = "a".repeat(256);
        let long_tag = format!("a:{}", "t".repeat(129));
        let bad = [
            "",
            "Busybox",
            "user/Busybox",
            "busybox:",
            "busybox:-tag",
            "busy box",
            "busybox@sha256:abc",
            "/busybox",
            "busybox/",
            "a//b",
            "-a",
            "a-",
            "a..b",
            "a___b",
            ":tag",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            long.as_str(),
            long_tag.as_str(),
            "exa mple.com/a",
        ];
        for b in bad {
            let e = Reference::parse(b).expect_err(b);
            assert!(
                e.to_string().starts_with("invalid reference format"),
                "{b}: {e}"
            );
        }
    }
}
