//! Registry settings of the daemon (dockerd's `daemon.json` keys) and per-host connection
//! choices: plain HTTP or TLS, extra CAs from `certs.d`, mirrors for Docker Hub.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The registry part of the daemon config file (`--config-file`, JSON like dockerd's
/// `daemon.json`). Unknown keys are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegistryConfig {
    /// Registries reached over plain HTTP (or TLS without verification): `HOST[:PORT]` or a
    /// CIDR (`10.0.0.0/8`). When the key is absent, loopback addresses are insecure (dockerd's
    /// default `127.0.0.0/8`); when it is present, only what it lists is.
    #[serde(default)]
    pub insecure_registries: Option<Vec<String>>,
    /// Docker Hub mirrors, URLs (`http://127.0.0.1:5000`), tried in order before Docker Hub.
    #[serde(default)]
    pub registry_mirrors: Vec<String>,
    /// Where `HOST:PORT/ca.crt` files live (barge extension; default `/etc/barge/certs.d`).
    #[serde(default)]
    pub certs_dir: Option<PathBuf>,
    /// Parallel layer downloads per pull (dockerd's name; default 3).
    #[serde(default)]
    pub max_concurrent_downloads: Option<usize>,
    /// Parallel layer uploads per push (default 5).
    #[serde(default)]
    pub max_concurrent_uploads: Option<usize>,
}

/// Docker Hub's registry name in references.
pub const DOCKER_HUB: &str = "docker.io";

impl RegistryConfig {
    /// Reads a daemon config file (JSON). A missing file is an error.
    pub fn from_file(path: &Path) -> Result<RegistryConfig, String> {
        let data = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        serde_json::from_slice(&data).map_err(|e| format!("parsing {}: {e}", path.display()))
    }

    /// The certs.d directory.
    pub fn certs_dir(&self) -> PathBuf {
        self.certs_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/etc/barge/certs.d"))
    }

    /// Whether `host` (`HOST[:PORT]`) may be reached without verified TLS.
    pub fn is_insecure(&self, host: &str) -> bool {
        let hostname = split_host(host).0;
        let ip: Option<IpAddr> = hostname.trim_matches(['[', ']']).parse().ok();
        match &self.insecure_registries {
            None => hostname == "localhost" || ip.is_some_and(|i| i.is_loopback()),
            Some(list) => list.iter().any(|e| {
                let e = e
                    .trim_start_matches("http://")
                    .trim_start_matches("https://")
                    .trim_end_matches('/');
                if e == host || e == hostname {
                    return true;
                }
                match (e.split_once('/'), ip) {
                    (Some((net, bits)), Some(ip)) => cidr_contains(net, bits, ip),
                    _ => false,
                }
            }),
        }
    }

    /// The mirrors (`registry-mirrors`), in order.
    pub fn mirrors(&self) -> Vec<Mirror> {
        self.registry_mirrors
            .iter()
            .map(|m| {
                let plain = m.starts_with("http://");
                let rest = m
                    .trim_start_matches("http://")
                    .trim_start_matches("https://");
                let authority = rest.split('/').next().unwrap_or(rest);
                // `user:password@host:port`: the mirror's own credentials.
                let (credentials, host) = match authority.rsplit_once('@') {
                    Some((userinfo, host)) => {
                        let (u, p) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                        (Some((percent_decode(u), percent_decode(p))), host)
                    }
                    None => (None, authority),
                };
                Mirror {
                    host: host.to_string(),
                    plain,
                    credentials,
                }
            })
            .collect()
    }

    /// PEM CA certificates for `host` from `certs.d/HOST/*.crt`.
    pub fn ca_certs(&self, host: &str) -> Vec<Vec<u8>> {
        let dir = self.certs_dir().join(host);
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&dir) {
            let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            files.sort();
            for f in files {
                if f.extension().is_some_and(|x| x == "crt") {
                    if let Ok(d) = std::fs::read(&f) {
                        out.push(d);
                    }
                }
            }
        }
        out
    }
}

fn split_host(host: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((h, p)) = rest.split_once(']') {
            return (h, p.strip_prefix(':'));
        }
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (host, None),
    }
}

fn cidr_contains(net: &str, bits: &str, ip: IpAddr) -> bool {
    let Ok(bits) = bits.parse::<u32>() else {
        return false;
    };
    match (net.parse::<IpAddr>(), ip) {
        (Ok(IpAddr::V4(n)), IpAddr::V4(i)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (Ok(IpAddr::V6(n)), IpAddr::V6(i)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

/// One `registry-mirrors` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// `HOST[:PORT]`.
    pub host: String,
    /// Given as `http://` (plain HTTP).
    pub plain: bool,
    /// `user:password@` from the URL (percent-decoded): the mirror's own credentials. Without
    /// them the mirror gets the request's Docker Hub credentials, as dockerd sends them.
    pub credentials: Option<(String, String)>,
}

/// Decodes `%XX` escapes (as in a URL's user info); other bytes are kept.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_rules() {
        let d = RegistryConfig::default();
        assert!(d.is_insecure("127.0.0.1:5000"));
        assert!(d.is_insecure("localhost:5000"));
        assert!(!d.is_insecure("registry.example.com"));
        let c: RegistryConfig = serde_json::from_str(
            r#"{"insecure-registries":["10.0.0.0/8","myreg:5000"],"registry-mirrors":["http://127.0.0.1:1/"],"debug":true}"#,
        )
        .unwrap();
        assert!(c.is_insecure("10.1.2.3:5000"));
        assert!(c.is_insecure("myreg:5000"));
        assert!(!c.is_insecure("127.0.0.1:5000"));
        assert_eq!(
            c.mirrors(),
            vec![Mirror {
                host: "127.0.0.1:1".into(),
                plain: true,
                credentials: None
            }]
        );
        let c: RegistryConfig = serde_json::from_str(
            r#"{"registry-mirrors":["https://bob:p%40ss@mirror.example:5000/"]}"#,
        )
        .unwrap();
        assert_eq!(
            c.mirrors(),
            vec![Mirror {
                host: "mirror.example:5000".into(),
                plain: false,
                credentials: Some(("bob".into(), "p@ss".into()))
            }]
        );
    }
}
