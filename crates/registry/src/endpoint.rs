//! How one registry host is reached: an oci-client per host ([`endpoint`]) with the daemon's
//! TLS settings (`certs.d` CAs, `insecure-registries`, probed for plain HTTP), and a plain
//! HTTP client with the same settings for the token and login requests ([`http_client`]).

use std::sync::Arc;

use barge_image::Reference;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::Client;

use crate::config::{self, RegistryConfig};
use crate::error::{one_line, RegistryError};

/// A plain HTTP client for `host` with the daemon's TLS settings (extra CAs, insecure).
pub(crate) fn http_client(
    cfg: &RegistryConfig,
    host: &str,
) -> Result<reqwest::Client, RegistryError> {
    let mut b = reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(15));
    for c in cfg.ca_certs(host) {
        if let Ok(c) = reqwest::Certificate::from_pem(&c) {
            b = b.add_root_certificate(c);
        }
    }
    if cfg.is_insecure(host) {
        b = b.danger_accept_invalid_certs(true);
    }
    b.build().map_err(|e| RegistryError::Registry(one_line(e)))
}

/// How one registry host is reached.
#[derive(Clone)]
pub(crate) struct Endpoint {
    /// `HOST[:PORT]` as it appears in URLs (Docker Hub: `index.docker.io`).
    pub(crate) host: String,
    /// Reached over plain HTTP.
    pub(crate) plain: bool,
    pub(crate) client: Arc<Client>,
}

/// Probes whether `host` speaks plain HTTP (an HTTPS server answers a plain request with an
/// error or a TLS alert).
pub(crate) async fn speaks_plain_http(host: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(host).await.ok()?;
        s.write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut buf = vec![0u8; 512];
        let mut n = 0;
        while n < buf.len() {
            match s.read(&mut buf[n..]).await {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        Some(text.starts_with("HTTP/") && !text.contains("HTTPS server"))
    };
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(5), fut).await,
        Ok(Some(true))
    )
}

/// Builds a client for `host`. `force_plain`: a mirror given as `http://`.
pub(crate) async fn endpoint(cfg: &RegistryConfig, host: &str, force_plain: bool) -> Endpoint {
    let insecure = force_plain || cfg.is_insecure(host);
    let mut cc = ClientConfig {
        platform_resolver: None,
        max_concurrent_download: cfg.max_concurrent_downloads.unwrap_or(3).max(1),
        max_concurrent_upload: cfg.max_concurrent_uploads.unwrap_or(5).max(1),
        connect_timeout: Some(std::time::Duration::from_secs(15)),
        user_agent: "barge",
        ..Default::default()
    };
    cc.extra_root_certificates = cfg
        .ca_certs(host)
        .into_iter()
        .map(|data| Certificate {
            encoding: CertificateEncoding::Pem,
            data,
        })
        .collect();
    let mut plain = false;
    if insecure {
        if force_plain || speaks_plain_http(host).await {
            cc.protocol = ClientProtocol::Http;
            plain = true;
        } else {
            cc.accept_invalid_certificates = true;
        }
    }
    Endpoint {
        host: host.to_string(),
        plain,
        client: Arc::new(Client::new(cc)),
    }
}

/// Registry host part as used in URLs.
pub(crate) fn url_host(domain: &str) -> String {
    if domain == config::DOCKER_HUB {
        "index.docker.io".to_string()
    } else {
        domain.to_string()
    }
}

pub(crate) fn oci_ref(host: &str, r: &Reference) -> oci_client::Reference {
    match (r.digest(), r.tag()) {
        (Some(d), _) => oci_client::Reference::with_digest(
            host.to_string(),
            r.path().to_string(),
            d.to_string(),
        ),
        (None, t) => oci_client::Reference::with_tag(
            host.to_string(),
            r.path().to_string(),
            t.unwrap_or("latest").to_string(),
        ),
    }
}
