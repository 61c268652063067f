//! Several servers, one cluster: k3s's server bootstrap
//! ([docs.k3s.io/datastore/ha](https://docs.k3s.io/datastore/ha)). A server started with
//! `--server https://FIRST:6443 --token T --datastore-endpoint …` fetches the cluster's CA
//! material from a running server before it makes its own certificates, so every server signs
//! and verifies with the same CAs (kubeconfigs work against any of them) and the same
//! ServiceAccount signing key (tokens issued by one are valid on all).
//!
//! The exchange, as k3s's:
//! 1. `GET /cacerts` (anonymous): the server CA's PEM. The joining server checks its SHA-256
//!    against the hash in the token (`K10<hash>::server:<secret>`) before it sends the token
//!    anywhere, so a server presenting another CA is refused without leaking the secret.
//! 2. `GET /v1-barge/server-bootstrap` over TLS verified against that CA, with the token as a
//!    bearer token (k3s's `/v1-k3s/server-bootstrap`): a JSON object of file name → base64 of
//!    the files in [`SHARED_FILES`], written into `DATA-DIR/tls` (keys `0600`). A wrong token
//!    is a 401.
//!
//! A restart of a joined server finds the files in place and fetches nothing.
//!
//! Agents (`barge agent`) join the same way (k3s's `/v1-k3s/client-kubelet.crt` and
//! `/serving-kubelet.crt` in one call): after the same `/cacerts` check, `POST
//! /v1-barge/node` with the token and `{"nodeName", "nodeIPs"}` answers the node's kubelet
//! client and serving certificates ([`crate::pki::issue_node`]), both CAs and the cluster's
//! settings the agent needs ([`NodeJoin`]); [`join_node`] is the agent's side.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::Digest as _;

use crate::token::JoinToken;

/// The anonymous path answering the server CA's PEM (k3s's).
pub const CACERTS_PATH: &str = "/cacerts";
/// The path answering the shared CA material to a bearer of the join token.
pub const BOOTSTRAP_PATH: &str = "/v1-barge/server-bootstrap";
/// The path issuing a joining agent's certificates to a bearer of the join token.
pub const NODE_PATH: &str = "/v1-barge/node";

/// The cluster settings an agent takes from the server it joins (k3s's agent reads them from
/// `/v1-k3s/config`): the server's `--cluster-cidr`, `--service-cidr`, `--cluster-dns` and
/// `--cluster-domain`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSettings {
    pub cluster_cidr: ipnet::IpNet,
    pub service_cidr: ipnet::IpNet,
    pub cluster_dns: std::net::Ipv4Addr,
    pub cluster_domain: String,
    /// `--flannel-backend`: every node of a cluster uses the server's (as k3s's agents do).
    #[serde(default)]
    pub flannel_backend: barge_network::podnet::Backend,
}

/// The request of `POST /v1-barge/node`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRequest {
    pub node_name: String,
    #[serde(rename = "nodeIPs")]
    pub node_ips: Vec<std::net::IpAddr>,
}

/// The answer of `POST /v1-barge/node`: the node's certificates and the cluster's settings.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeJoin {
    #[serde(flatten)]
    pub certs: crate::pki::NodeCerts,
    pub settings: ClusterSettings,
}

/// The files of `DATA-DIR/tls` every server of a cluster shares: both CAs (certificate and
/// key) and the ServiceAccount token signing key. Serving and client certificates are each
/// server's own, issued from these.
pub const SHARED_FILES: [&str; 5] = [
    "server-ca.crt",
    "server-ca.key",
    "client-ca.crt",
    "client-ca.key",
    "service-account.key",
];

#[derive(Clone)]
struct BootstrapState {
    tls_dir: PathBuf,
    server_ca_pem: String,
    settings: ClusterSettings,
}

/// The routes this server answers for joining servers and agents (merged before the API's
/// router). The bootstrap and node ones answer only requests [`crate::https`] authenticated
/// with the join token (identity [`crate::auth::JOIN_TOKEN_USER`]; the listener strips the
/// `Authorization` header).
pub fn routes(tls_dir: PathBuf, server_ca_pem: String, settings: ClusterSettings) -> Router {
    Router::new()
        .route(CACERTS_PATH, get(cacerts))
        .route(BOOTSTRAP_PATH, get(bootstrap))
        .route(NODE_PATH, axum::routing::post(node))
        .with_state(Arc::new(BootstrapState {
            tls_dir,
            server_ca_pem,
            settings,
        }))
}

fn refused(what: &str) -> Response {
    tracing::warn!("{what} refused: no or a wrong join token");
    (
        StatusCode::UNAUTHORIZED,
        format!("{what} needs the cluster's join token as a bearer token\n"),
    )
        .into_response()
}

/// `POST /v1-barge/node`: issues a joining agent's certificates ([`crate::pki::issue_node`]).
async fn node(
    State(s): State<Arc<BootstrapState>>,
    identity: Option<axum::Extension<barge_apiserver::Identity>>,
    body: axum::body::Bytes,
) -> Response {
    if identity.is_none_or(|i| i.user != crate::auth::JOIN_TOKEN_USER) {
        return refused("node join");
    }
    let req: NodeRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    if req.node_name.is_empty() || req.node_name.len() > 253 {
        return (
            StatusCode::BAD_REQUEST,
            "nodeName: a DNS name is required\n",
        )
            .into_response();
    }
    let dir = s.tls_dir.clone();
    let name = req.node_name.clone();
    let certs =
        tokio::task::spawn_blocking(move || crate::pki::issue_node(&dir, &name, &req.node_ips))
            .await;
    match certs {
        Ok(Ok(certs)) => {
            tracing::info!(node = %req.node_name, "issued a joining node's certificates");
            let answer = NodeJoin {
                certs,
                settings: s.settings.clone(),
            };
            (
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::to_string(&answer).unwrap_or_default(),
            )
                .into_response()
        }
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn cacerts(State(s): State<Arc<BootstrapState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        s.server_ca_pem.clone(),
    )
        .into_response()
}

async fn bootstrap(
    State(s): State<Arc<BootstrapState>>,
    identity: Option<axum::Extension<barge_apiserver::Identity>>,
) -> Response {
    if identity.is_none_or(|i| i.user != crate::auth::JOIN_TOKEN_USER) {
        return refused("server bootstrap");
    }
    let dir = s.tls_dir.clone();
    let files = tokio::task::spawn_blocking(move || {
        let mut m = serde_json::Map::new();
        for name in SHARED_FILES {
            let data = std::fs::read(dir.join(name)).with_context(|| format!("reading {name}"))?;
            m.insert(
                name.to_string(),
                base64::engine::general_purpose::STANDARD
                    .encode(data)
                    .into(),
            );
        }
        anyhow::Ok(serde_json::Value::Object(m))
    })
    .await;
    match files {
        Ok(Ok(v)) => {
            tracing::info!("served the cluster's CA material to a joining server");
            ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
        }
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// The SHA-256 of a CA PEM as the token carries it (lower-case hex).
pub fn ca_hash(pem: &str) -> String {
    sha2::Sha256::digest(pem.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Makes `tls_dir` hold the cluster's shared files ([`SHARED_FILES`]), fetched from the server
/// at `server` (`https://HOST:PORT`) with `token`, unless they are there already (a restart).
/// Blocking.
///
/// Errors: the server unreachable (with the cause), a CA whose hash is not the token's (a
/// wrong `--server` or a token of another cluster), the token refused (401), or `tls_dir`
/// holding another cluster's CA.
pub fn ensure_joined(server: &str, token: &JoinToken, tls_dir: &Path) -> Result<()> {
    let existing = std::fs::read_to_string(tls_dir.join("server-ca.crt")).ok();
    if let Some(pem) = existing {
        if SHARED_FILES.iter().all(|f| tls_dir.join(f).exists()) {
            if let Some(want) = token.ca_hash() {
                let have = ca_hash(&pem);
                if have != want {
                    bail!(
                        "{} holds the CA of another cluster (sha256 {have}) than --token's \
                         ({want}); use a fresh --data-dir to join this cluster",
                        tls_dir.display()
                    );
                }
            }
            return Ok(());
        }
    }
    let (host, port, ca_pem) = verified_ca(server, token)?;
    // 2. The CA material, over TLS verified against that CA, with the token.
    let verified = client_config(Some(&ca_pem))?;
    let (status, body) = https_request(
        &host,
        port,
        "GET",
        BOOTSTRAP_PATH,
        Some(token.as_str()),
        None,
        verified,
    )
    .with_context(|| format!("fetching the cluster's CA material from --server {server}"))?;
    if status == 401 {
        bail!("--server {server} refused the join token (HTTP 401): check --token");
    }
    if status != 200 {
        bail!(
            "--server {server}: GET {BOOTSTRAP_PATH} answered HTTP {status}: {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&body).context("parsing the server bootstrap answer")?;
    let mut files = Vec::new();
    for name in SHARED_FILES {
        let b64 = v
            .get(name)
            .and_then(|x| x.as_str())
            .with_context(|| format!("the server bootstrap answer has no {name}"))?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .with_context(|| format!("decoding {name}"))?;
        files.push((name, data));
    }
    if files[0].1 != ca_pem.as_bytes() {
        bail!("--server {server}: the bootstrap's server CA is not the one /cacerts presented");
    }
    std::fs::create_dir_all(tls_dir).with_context(|| format!("creating {}", tls_dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tls_dir, std::fs::Permissions::from_mode(0o700))?;
    }
    for (name, data) in files {
        let mode = if name.ends_with(".crt") { 0o644 } else { 0o600 };
        let path = tls_dir.join(name);
        barge_stdx::fs::write_atomic_mode(&path, &data, mode)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    tracing::info!(
        server,
        "joined the cluster: its CAs and ServiceAccount key are in place"
    );
    Ok(())
}

/// Step 1 of every join: the server's CA, fetched over TLS not yet verified from `/cacerts`
/// and checked against the token's hash before the token goes anywhere. Answers the server's
/// host, port and CA PEM.
fn verified_ca(server: &str, token: &JoinToken) -> Result<(String, u16, String)> {
    let (host, port) = parse_server(server)?;
    // 1. The CA, over TLS not yet verified, checked against the token's hash.
    let insecure = client_config(None)?;
    let (status, body) = https_request(&host, port, "GET", CACERTS_PATH, None, None, insecure)
        .with_context(|| format!("fetching the cluster CA from --server {server}"))?;
    if status != 200 {
        bail!(
            "--server {server}: GET {CACERTS_PATH} answered HTTP {status}: is it a barge server?"
        );
    }
    let ca_pem = String::from_utf8(body).context("the cluster CA is not text")?;
    let have = ca_hash(&ca_pem);
    match token.ca_hash() {
        Some(want) if want != have => bail!(
            "--server {server} presents a cluster CA with sha256 {have}, but --token was made \
             for a CA with sha256 {want}: a wrong --server, or a token of another cluster; \
             the token was not sent"
        ),
        Some(_) => {}
        None => tracing::warn!(
            server,
            ca_sha256 = %have,
            "--token has no CA hash (not K10…): trusting the CA the server presents"
        ),
    }
    Ok((host, port, ca_pem))
}

/// The agent's join (blocking): the server CA checked against the token ([`verified_ca`]),
/// then `POST /v1-barge/node` over TLS verified against it, with the token. Errors as
/// [`ensure_joined`]'s.
pub fn join_node(server: &str, token: &JoinToken, req: &NodeRequest) -> Result<NodeJoin> {
    let (host, port, ca_pem) = verified_ca(server, token)?;
    let verified = client_config(Some(&ca_pem))?;
    let body = serde_json::to_vec(req)?;
    let (status, body) = https_request(
        &host,
        port,
        "POST",
        NODE_PATH,
        Some(token.as_str()),
        Some(&body),
        verified,
    )
    .with_context(|| format!("asking --server {server} for this node's certificates"))?;
    if status == 401 {
        bail!("--server {server} refused the join token (HTTP 401): check --token");
    }
    if status != 200 {
        bail!(
            "--server {server}: POST {NODE_PATH} answered HTTP {status}: {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    let join: NodeJoin = serde_json::from_slice(&body).context("parsing the node join answer")?;
    if join.certs.server_ca != ca_pem {
        bail!("--server {server}: the node join's server CA is not the one /cacerts presented");
    }
    Ok(join)
}

/// `https://HOST:PORT` → (HOST, PORT); the port defaults to 6443.
pub fn parse_server(server: &str) -> Result<(String, u16)> {
    let rest = server
        .strip_prefix("https://")
        .with_context(|| format!("--server {server:?}: expected https://HOST:PORT"))?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => match p.parse::<u16>() {
            Ok(p) => (h, p),
            Err(_) => (rest, 6443),
        },
        _ => (rest, 6443),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("--server {server:?}: no host");
    }
    Ok((host.to_string(), port))
}

/// Accepts any server certificate: only for fetching `/cacerts`, whose answer is then checked
/// against the token's hash (k3s's trust-on-hash).
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS client configuration trusting `ca_pem`, or (None) any certificate.
fn client_config(ca_pem: Option<&str>) -> Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let cfg = match ca_pem {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots
                    .add(c.context("parsing the cluster CA")?)
                    .context("adding the cluster CA")?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
            .with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// One HTTP/1.1 request over TLS (blocking, 10 s timeouts); answers the status and the body.
fn https_request(
    host: &str,
    port: u16,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&[u8]>,
    tls: Arc<rustls::ClientConfig>,
) -> Result<(u16, Vec<u8>)> {
    use std::net::ToSocketAddrs;
    let addr = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    let tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .with_context(|| format!("connecting to {addr}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::try_from(host.to_string()).context("the server's name")?;
    let conn = rustls::ClientConnection::new(tls, name).context("TLS")?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nAccept: */*\r\n"
    );
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    if let Some(t) = bearer {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    let mut req = req.into_bytes();
    req.extend_from_slice(body.unwrap_or_default());
    stream.write_all(&req).context("TLS handshake or request")?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => {}
        // A peer closing without close_notify after a complete answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e).context("reading the answer"),
    }
    parse_response(&raw)
}

/// Splits an HTTP/1.1 response into its status and body (`Content-Length` or chunked).
fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>)> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("an HTTP answer without headers")?;
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let mut body = raw[end + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("an HTTP answer without a status")?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(nl) = rest.windows(2).position(|w| w == b"\r\n") {
            let size_text = String::from_utf8_lossy(&rest[..nl]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .context("a chunk size")?;
            rest = &rest[nl + 2..];
            if size == 0 || rest.len() < size {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = rest.get(size + 2..).unwrap_or_default();
        }
        body = out;
    }
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        assert_eq!(
            parse_server("https://10.0.0.1:6443").unwrap(),
            ("10.0.0.1".into(), 6443)
        );
        assert_eq!(
            parse_server("https://a.example/").unwrap(),
            ("a.example".into(), 6443)
        );
        assert_eq!(
            parse_server("https://[::1]:7443").unwrap(),
            ("::1".into(), 7443)
        );
        assert!(parse_server("http://a:1").is_err());
    }

    #[test]
    fn responses_plain_and_chunked() {
        let (s, b) = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi").unwrap();
        assert_eq!((s, b), (200, b"hi".to_vec()));
        let (s, b) = parse_response(
            b"HTTP/1.1 401 Unauthorized\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((s, b), (401, b"abcde".to_vec()));
    }
}
