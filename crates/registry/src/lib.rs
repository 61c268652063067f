//! barge's registry client: pulls images from an OCI distribution registry into the image
//! store, pushes images from it, and checks logins. Built on `oci-client` (auth: anonymous,
//! Basic, Bearer token; rustls with the `ring` provider, see [`install_crypto_provider`]).
//!
//! Async (network I/O); every write into the synchronous image store runs on tokio's blocking
//! pool. A layer streams download → sha256 → store blob + unpack snapshot through a bounded
//! channel, never buffered whole; layers download in parallel (bounded). Progress is reported
//! as [`Progress`] events, which the daemon renders as Docker's JSON progress stream.

pub mod config;

use std::sync::Arc;

use barge_image::digest::{self as idigest, Descriptor, Index, Manifest};
use barge_image::{ImageStore, Platform, Reference};
use futures_util::StreamExt;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};
use tokio::sync::mpsc;

pub use config::RegistryConfig;

/// Installs rustls' `ring` crypto provider as the process default (idempotent). Call once at
/// start-up, before any TLS connection.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

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
async fn repo_auth(
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

/// A plain HTTP client for `host` with the daemon's TLS settings (extra CAs, insecure).
fn http_client(cfg: &RegistryConfig, host: &str) -> Result<reqwest::Client, RegistryError> {
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

/// Errors of registry operations. `Display` is one line, fit for the user.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Manifest or tag unknown.
    #[error("manifest for {0} not found: manifest unknown")]
    NotFound(String),
    /// Credentials refused or missing.
    #[error("{0}")]
    Unauthorized(String),
    /// Network, TLS, protocol errors.
    #[error("{0}")]
    Registry(String),
    /// Content that fails verification or cannot be stored.
    #[error("{0}")]
    Image(#[from] barge_image::ImageError),
    /// A single-platform image for another platform than the one asked for.
    #[error("image with reference {reference} was found but does not match the specified platform: wanted {wanted}, actual: {actual}")]
    PlatformMismatch {
        /// The reference pulled.
        reference: String,
        /// Requested platform.
        wanted: String,
        /// The image's platform.
        actual: String,
    },
    /// A platform that the index does not have.
    #[error("no matching manifest for {wanted} in the manifest list entries")]
    NoPlatform {
        /// Requested platform.
        wanted: String,
    },
}

impl RegistryError {
    /// HTTP-ish kind for the daemon: "notfound", "unauthorized", "invalid", "internal".
    pub fn kind(&self) -> &'static str {
        match self {
            RegistryError::NotFound(_)
            | RegistryError::NoPlatform { .. }
            | RegistryError::PlatformMismatch { .. } => "notfound",
            RegistryError::Unauthorized(_) => "unauthorized",
            RegistryError::Image(e) if e.kind() == barge_image::ErrorKind::NotFound => "notfound",
            RegistryError::Image(_) | RegistryError::Registry(_) => "internal",
        }
    }
}

fn one_line(s: impl std::fmt::Display) -> String {
    let s = s.to_string();
    let mut out = s.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    if out.len() > 400 {
        out.truncate(400);
    }
    out
}

fn map_oci(e: oci_client::errors::OciDistributionError, what: &str) -> RegistryError {
    use oci_client::errors::OciDistributionError as E;
    let msg = one_line(&e);
    match &e {
        E::ImageManifestNotFoundError(_) => RegistryError::NotFound(what.to_string()),
        E::AuthenticationFailure(_) | E::UnauthorizedError { .. } => RegistryError::Unauthorized(
            format!("unauthorized: authentication required ({what}): {msg}"),
        ),
        E::RegistryError { envelope, .. } => {
            let codes: Vec<String> = envelope
                .errors
                .iter()
                .map(|x| format!("{:?}", x.code))
                .collect();
            if codes
                .iter()
                .any(|c| c.contains("ManifestUnknown") || c.contains("NameUnknown"))
            {
                RegistryError::NotFound(what.to_string())
            } else if codes
                .iter()
                .any(|c| c.contains("Unauthorized") || c.contains("Denied"))
            {
                RegistryError::Unauthorized(format!(
                    "unauthorized: authentication required ({what})"
                ))
            } else {
                RegistryError::Registry(format!("{what}: {msg}"))
            }
        }
        E::ServerError { code, .. } if *code == 404 => RegistryError::NotFound(what.to_string()),
        E::ServerError { code, .. } if *code == 401 || *code == 403 => {
            RegistryError::Unauthorized(format!("unauthorized: authentication required ({what})"))
        }
        _ => {
            let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
            let mut full = msg.clone();
            while let Some(s) = src {
                full.push_str(": ");
                full.push_str(&one_line(s));
                src = s.source();
            }
            RegistryError::Registry(format!("{what}: {full}"))
        }
    }
}

/// One progress event, in Docker's vocabulary (`status` strings as dockerd writes them).
#[derive(Debug, Clone)]
pub enum Progress {
    /// A line without an id (`Digest: ...`, `Status: ...`).
    Status(String),
    /// A line about one item (`id` = short layer digest or the tag).
    Item {
        /// Short digest (12 hex) or tag.
        id: String,
        /// `Pulling fs layer`, `Downloading`, `Download complete`, `Pull complete`, ...
        status: String,
        /// Bytes so far and total, for `Downloading`/`Pushing`.
        progress: Option<(u64, u64)>,
    },
}

/// Sink for progress events (unbounded: events are small and the consumer is the HTTP body).
pub type ProgressTx = mpsc::UnboundedSender<Progress>;

fn short(d: &str) -> String {
    d.strip_prefix("sha256:")
        .unwrap_or(d)
        .chars()
        .take(12)
        .collect()
}

fn item(tx: &ProgressTx, id: &str, status: &str, progress: Option<(u64, u64)>) {
    let _ = tx.send(Progress::Item {
        id: id.to_string(),
        status: status.to_string(),
        progress,
    });
}

/// How one registry host is reached.
#[derive(Clone)]
struct Endpoint {
    /// `HOST[:PORT]` as it appears in URLs (Docker Hub: `index.docker.io`).
    host: String,
    /// Reached over plain HTTP.
    plain: bool,
    client: Arc<Client>,
}

const ACCEPT: &[&str] = &[
    idigest::MT_OCI_MANIFEST,
    idigest::MT_DOCKER_MANIFEST,
    idigest::MT_OCI_INDEX,
    idigest::MT_DOCKER_LIST,
];

/// Probes whether `host` speaks plain HTTP (an HTTPS server answers a plain request with an
/// error or a TLS alert).
async fn speaks_plain_http(host: &str) -> bool {
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
async fn endpoint(cfg: &RegistryConfig, host: &str, force_plain: bool) -> Endpoint {
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
fn url_host(domain: &str) -> String {
    if domain == config::DOCKER_HUB {
        "index.docker.io".to_string()
    } else {
        domain.to_string()
    }
}

fn oci_ref(host: &str, r: &Reference) -> oci_client::Reference {
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

/// What a pull stored.
#[derive(Debug, Clone)]
pub struct PullResult {
    /// Image ID.
    pub id: String,
    /// Digest of the manifest (or index) the reference resolved to, for `Digest:` lines.
    pub digest: String,
    /// Whether anything new was stored (`Downloaded newer image` vs `Image is up to date`).
    pub downloaded: bool,
}

/// Manifest (or index) and its digest, resolved for `r` on `ep`.
async fn fetch_manifest(
    ep: &Endpoint,
    r: &Reference,
    auth: &RegistryAuth,
) -> Result<(bytes::Bytes, String), RegistryError> {
    let or = oci_ref(&ep.host, r);
    // oci-client checks the registry's Docker-Content-Digest; the digest used is always the
    // sha256 of the bytes received.
    let (data, _) = ep
        .client
        .pull_manifest_raw(&or, auth, ACCEPT)
        .await
        .map_err(|e| map_oci(e, &r.familiar()))?;
    let actual = idigest::sha256_digest(&data);
    if let Some(d) = r.digest() {
        if d != actual {
            return Err(RegistryError::Registry(format!(
                "manifest digest mismatch for {}: got {actual}",
                r.familiar()
            )));
        }
    }
    Ok((data, actual))
}

fn is_index(data: &[u8]) -> bool {
    let v: serde_json::Value = serde_json::from_slice(data).unwrap_or_default();
    let mt = v.get("mediaType").and_then(|m| m.as_str()).unwrap_or("");
    mt == idigest::MT_OCI_INDEX
        || mt == idigest::MT_DOCKER_LIST
        || (mt.is_empty() && v.get("manifests").is_some())
}

/// Picks the manifest for `want` from an index.
fn select_platform(index: &Index, want: &Platform) -> Result<Descriptor, RegistryError> {
    index
        .manifests
        .iter()
        .find(|m| {
            m.platform.as_ref().is_some_and(|p| {
                want.matches(&Platform::new(&p.os, &p.architecture, p.variant.as_deref()))
            })
        })
        .cloned()
        .ok_or_else(|| RegistryError::NoPlatform {
            wanted: want.to_string(),
        })
}

/// Connects to the registry for `r` (or, for Docker Hub names, the first mirror that has it),
/// and resolves the reference to its top-level manifest.
/// A mirror's credentials: its own from `registry-mirrors`, else the request's (dockerd sends
/// the Docker Hub credentials to mirrors).
fn mirror_creds(m: &config::Mirror, creds: Option<&Credentials>) -> Option<Credentials> {
    match &m.credentials {
        Some((u, p)) => Some(Credentials {
            username: u.clone(),
            password: p.clone(),
            identity_token: None,
        }),
        None => creds.cloned(),
    }
}

/// The endpoint, top-level manifest (or index) bytes and digest, and the auth used.
type Resolved = (Endpoint, bytes::Bytes, String, RegistryAuth);

async fn resolve(
    cfg: &RegistryConfig,
    r: &Reference,
    creds: Option<&Credentials>,
) -> Result<Resolved, RegistryError> {
    let mut last_err = None;
    if r.domain() == config::DOCKER_HUB {
        for m in cfg.mirrors() {
            let ep = endpoint(cfg, &m.host, m.plain).await;
            let mc = mirror_creds(&m, creds);
            let res =
                match repo_auth(cfg, &ep, r.path(), mc.as_ref(), RegistryOperation::Pull).await {
                    Ok(auth) => fetch_manifest(&ep, r, &auth)
                        .await
                        .map(|(d, dg)| (d, dg, auth)),
                    Err(e) => Err(e),
                };
            match res {
                Ok((d, dg, auth)) => return Ok((ep, d, dg, auth)),
                Err(e) => {
                    tracing::info!("mirror {} failed for {}: {e}", m.host, r.familiar());
                    last_err = Some(e);
                }
            }
        }
    }
    let ep = endpoint(cfg, &url_host(r.domain()), false).await;
    let res = match repo_auth(cfg, &ep, r.path(), creds, RegistryOperation::Pull).await {
        Ok(auth) => fetch_manifest(&ep, r, &auth)
            .await
            .map(|(d, dg)| (d, dg, auth)),
        Err(e) => Err(e),
    };
    match res {
        Ok((d, dg, auth)) => Ok((ep, d, dg, auth)),
        Err(e) => Err(match (e, last_err) {
            (RegistryError::Registry(_), Some(m)) => m,
            (e, _) => e,
        }),
    }
}

/// A blocking reader over chunks sent from the async side.
struct ChanReader {
    rx: mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>,
    cur: bytes::Bytes,
}

impl std::io::Read for ChanReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        bytes::Buf::advance(&mut self.cur, n);
        Ok(n)
    }
}

/// Batches of at least this many bytes go from the network to the ingesting thread (fewer
/// wake-ups than hyper's small chunks).
const BATCH: usize = 256 * 1024;

/// How often a cut blob download is resumed (HTTP `Range`) within one pull.
const RANGE_RETRIES: usize = 3;

/// Opens layer `od` at byte `offset`. Returns the stream and the offset it really starts at:
/// `offset` when the registry answered `206 Partial Content`, 0 when it sent the whole blob.
async fn open_blob(
    ep: &Endpoint,
    r: &oci_client::Reference,
    od: &oci_client::manifest::OciDescriptor,
    offset: u64,
) -> Result<(oci_client::client::SizedStream, u64), RegistryError> {
    use oci_client::client::BlobResponse;
    let what = || format!("layer {}", od.digest);
    // Always a ranged request (`bytes=0-` at first): the store verifies the digest itself, and
    // oci-client verifies only whole (200) responses, which would hash every byte twice.
    match ep
        .client
        .pull_blob_stream_partial(r, od, offset, None)
        .await
    {
        Ok(BlobResponse::Partial(s)) => {
            let total = od.size as u64;
            if offset > 0 && s.content_length.is_some_and(|n| n + offset != total) {
                // Not the range asked for: start over with the whole blob.
                let s = ep
                    .client
                    .pull_blob_stream(r, od)
                    .await
                    .map_err(|e| map_oci(e, &what()))?;
                return Ok((s, 0));
            }
            Ok((s, offset))
        }
        Ok(BlobResponse::Full(s)) => Ok((s, 0)),
        Err(e) if offset > 0 => {
            tracing::info!(
                "ranged request for {} failed ({e}); fetching it whole",
                od.digest
            );
            let s = ep
                .client
                .pull_blob_stream(r, od)
                .await
                .map_err(|e| map_oci(e, &what()))?;
            Ok((s, 0))
        }
        Err(e) => Err(map_oci(e, &what())),
    }
}

/// Downloads one layer and ingests it while it streams. A download that an earlier pull left
/// unfinished continues where it stopped, and a connection cut mid-layer is resumed with a
/// `Range` request (when the registry honours ranges), so no byte is fetched twice.
async fn pull_layer(
    store: Arc<ImageStore>,
    ep: Endpoint,
    r: oci_client::Reference,
    desc: Descriptor,
    diff_id: String,
    chain_id: String,
    tx: ProgressTx,
) -> Result<u64, RegistryError> {
    let mut fresh_retry = true;
    loop {
        match pull_layer_once(&store, &ep, &r, &desc, &diff_id, &chain_id, &tx).await {
            Err((RegistryError::Image(e), true))
                if fresh_retry
                    && matches!(
                        e,
                        barge_image::ImageError::DigestMismatch { .. }
                            | barge_image::ImageError::SizeMismatch { .. }
                            | barge_image::ImageError::InvalidArchive(_)
                    ) =>
            {
                // The kept prefix was bad (the store dropped it): once more from byte 0.
                tracing::info!(
                    "resumed download of {} failed ({e}); starting over",
                    desc.digest
                );
                fresh_retry = false;
            }
            other => return other.map_err(|(e, _)| e),
        }
    }
}

/// One attempt of [`pull_layer`]; the error says whether the attempt resumed kept bytes.
async fn pull_layer_once(
    store: &Arc<ImageStore>,
    ep: &Endpoint,
    r: &oci_client::Reference,
    desc: &Descriptor,
    diff_id: &str,
    chain_id: &str,
    tx: &ProgressTx,
) -> Result<u64, (RegistryError, bool)> {
    let id = short(&desc.digest);
    let od = oci_client::manifest::OciDescriptor {
        media_type: desc.media_type.clone(),
        digest: desc.digest.clone(),
        size: desc.size as i64,
        ..Default::default()
    };
    let join = |e: tokio::task::JoinError| RegistryError::Registry(format!("layer task: {e}"));
    let (st, d2, di, ci) = (
        store.clone(),
        desc.clone(),
        diff_id.to_string(),
        chain_id.to_string(),
    );
    let mut pending = tokio::task::spawn_blocking(move || st.begin_layer(&d2, &di, &ci))
        .await
        .map_err(|e| (join(e), false))?
        .map_err(|e| (e.into(), false))?;
    let kept = pending.offset();
    let mut stream = None;
    if kept == 0 || desc.size == 0 || kept < desc.size {
        let (s, at) = open_blob(ep, r, &od, kept).await.map_err(|e| (e, false))?;
        if at != kept {
            pending.restart();
        }
        stream = Some(s.stream);
    }
    let start = pending.offset();
    let resumed = start > 0;
    if resumed {
        tracing::info!(layer = %desc.digest, offset = start, "resuming layer download");
    }
    let total = desc.size;
    let (ctx, crx) = mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(8);
    let st = store.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let mut rd = ChanReader {
            rx: crx,
            cur: bytes::Bytes::new(),
        };
        let res = st.finish_layer(pending, &mut rd);
        drop(rd);
        res
    });
    let mut at = start;
    let mut last_report = std::time::Instant::now() - std::time::Duration::from_secs(1);
    let mut retries = 0;
    let mut batch = bytes::BytesMut::new();
    'download: while let Some(mut s) = stream.take() {
        while let Some(chunk) = s.next().await {
            match chunk {
                Ok(b) => {
                    at += b.len() as u64;
                    batch.extend_from_slice(&b);
                    if batch.len() >= BATCH {
                        // The blocking side may have failed already (bad tar): stop then.
                        if ctx.send(Ok(batch.split().freeze())).await.is_err() {
                            break 'download;
                        }
                    }
                    if last_report.elapsed() >= std::time::Duration::from_millis(100) {
                        last_report = std::time::Instant::now();
                        item(tx, &id, "Downloading", Some((at, total)));
                    }
                }
                Err(e) => {
                    // Resume the cut connection where it stopped, if the registry does ranges.
                    if retries < RANGE_RETRIES && (total == 0 || at < total) {
                        retries += 1;
                        tracing::info!(layer = %desc.digest, offset = at, "download cut ({e}); resuming");
                        if let Ok((s2, got)) = open_blob(ep, r, &od, at).await {
                            if got == at {
                                stream = Some(s2.stream);
                                continue 'download;
                            }
                        }
                    }
                    if !batch.is_empty() {
                        let _ = ctx.send(Ok(batch.split().freeze())).await;
                    }
                    let _ = ctx
                        .send(Err(std::io::Error::other(format!(
                            "downloading layer {}: {}",
                            desc.digest,
                            one_line(&e)
                        ))))
                        .await;
                    break 'download;
                }
            }
        }
    }
    if !batch.is_empty() {
        let _ = ctx.send(Ok(batch.freeze())).await;
    }
    drop(ctx);
    item(tx, &id, "Downloading", Some((at, total)));
    let info = writer
        .await
        .map_err(|e| (join(e), resumed))?
        .map_err(|e| (RegistryError::from(e), resumed))?;
    item(tx, &id, "Verifying Checksum", None);
    item(tx, &id, "Download complete", None);
    item(tx, &id, "Pull complete", None);
    Ok(info.size)
}

/// Pulls `r` (tag or digest) into `store`. `platform` selects from an index (default: host).
/// Emits `Pulling from ...`, per-layer lines and `Digest: ...`; the caller writes the final
/// `Status:` line from the result. A tag reference is pointed at the image at the end.
pub async fn pull(
    store: Arc<ImageStore>,
    cfg: &RegistryConfig,
    r: &Reference,
    platform: Option<&Platform>,
    creds: Option<&Credentials>,
    tx: ProgressTx,
) -> Result<PullResult, RegistryError> {
    let (ep, top, top_digest, auth) = resolve(cfg, r, creds).await?;
    let tag_or_digest = r
        .tag()
        .map(str::to_string)
        .or(r.digest().map(str::to_string))
        .unwrap_or_else(|| "latest".into());
    let _ = tx.send(Progress::Item {
        id: tag_or_digest,
        status: format!("Pulling from {}", r.path()),
        progress: None,
    });
    let base = oci_ref(&ep.host, r);
    let (mdata, mdigest) = if is_index(&top) {
        let index: Index = serde_json::from_slice(&top)
            .map_err(|e| RegistryError::Registry(format!("index of {}: {e}", r.familiar())))?;
        let want = platform.cloned().unwrap_or_else(Platform::host);
        let pick = select_platform(&index, &want)?;
        let child = r.with_digest(&pick.digest);
        let (d, dg) = fetch_manifest(&ep, &child, &auth).await?;
        (d, dg)
    } else {
        (top.clone(), top_digest.clone())
    };
    let manifest: Manifest = serde_json::from_slice(&mdata)
        .map_err(|e| RegistryError::Registry(format!("manifest of {}: {e}", r.familiar())))?;
    for l in &manifest.layers {
        if !idigest::known_layer_media_type(&l.media_type) {
            return Err(RegistryError::Registry(format!(
                "unsupported layer media type {} ({})",
                l.media_type, l.digest
            )));
        }
    }
    // Config (small): fetched into memory and verified.
    let mut config = Vec::new();
    {
        let cr = base.clone_with_digest(manifest.config.digest.clone());
        ep.client
            .pull_blob(&cr, manifest.config.digest.as_str(), &mut config)
            .await
            .map_err(|e| map_oci(e, &format!("config {}", manifest.config.digest)))?;
        let actual = idigest::sha256_digest(&config);
        if actual != manifest.config.digest {
            return Err(RegistryError::Image(
                barge_image::ImageError::DigestMismatch {
                    what: "config".into(),
                    expected: manifest.config.digest.clone(),
                    actual,
                },
            ));
        }
    }
    if let (Some(want), false) = (platform, is_index(&top)) {
        // A single manifest: its config must be for the platform asked for (as dockerd checks).
        let v: serde_json::Value = serde_json::from_slice(&config).unwrap_or_default();
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
        let have = Platform::new(
            &s("os"),
            &s("architecture"),
            v.get("variant").and_then(|x| x.as_str()),
        );
        if !want.matches(&have) {
            return Err(RegistryError::PlatformMismatch {
                reference: r.familiar(),
                wanted: want.to_string(),
                actual: have.to_string(),
            });
        }
    }
    let (diff_ids, chains) = barge_image::config_chain_ids(&config)?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(RegistryError::Registry(format!(
            "manifest of {} has {} layers but its config lists {}",
            r.familiar(),
            manifest.layers.len(),
            diff_ids.len()
        )));
    }
    // Layers: present ones skipped (resume), the others downloaded in parallel.
    let limit = Arc::new(tokio::sync::Semaphore::new(
        cfg.max_concurrent_downloads.unwrap_or(3).max(1),
    ));
    let mut tasks = Vec::new();
    let mut downloaded = false;
    for (i, l) in manifest.layers.iter().enumerate() {
        let id = short(&l.digest);
        let st = store.clone();
        let dg = l.digest.clone();
        let present = tokio::task::spawn_blocking(move || st.has_blob(&dg))
            .await
            .unwrap_or(false);
        if present {
            item(&tx, &id, "Already exists", None);
            let st = store.clone();
            let dg = l.digest.clone();
            let diff = diff_ids[i].clone();
            tasks.push(tokio::spawn(async move {
                // The size an image record has for it, else read off the blob (a layer of an
                // interrupted pull has no record yet).
                tokio::task::spawn_blocking(move || match st.recorded_layer_size(&diff) {
                    Some(size) => Ok(size),
                    None => st.layer_info(&dg).map(|i| i.size),
                })
                .await
                .map_err(|e| RegistryError::Registry(e.to_string()))?
                .map_err(RegistryError::from)
            }));
            continue;
        }
        downloaded = true;
        item(&tx, &id, "Pulling fs layer", None);
        let (st, ep2, r2, d, diff, chain, tx2, lim) = (
            store.clone(),
            ep.clone(),
            base.clone_with_digest(l.digest.clone()),
            l.clone(),
            diff_ids[i].clone(),
            chains[i].clone(),
            tx.clone(),
            limit.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = lim
                .acquire_owned()
                .await
                .map_err(|e| RegistryError::Registry(e.to_string()))?;
            pull_layer(st, ep2, r2, d, diff, chain, tx2).await
        }));
    }
    let mut sizes = Vec::new();
    let mut first_err = None;
    for t in tasks {
        match t.await {
            Ok(Ok(s)) => sizes.push(s),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(RegistryError::Registry(format!("layer task: {e}")));
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let refs: Vec<Reference> = if r.digest().is_some() {
        vec![r.clone()]
    } else {
        vec![r.with_tag(r.tag().unwrap_or("latest"))]
    };
    let st = store.clone();
    let md = mdigest.clone();
    let existed = {
        let st = store.clone();
        let full = refs[0].full();
        tokio::task::spawn_blocking(move || st.get(&full).ok().map(|i| i.manifest_digest))
            .await
            .unwrap_or(None)
    };
    let img =
        tokio::task::spawn_blocking(move || st.commit_pull(&mdata, &md, &config, sizes, &refs))
            .await
            .map_err(|e| RegistryError::Registry(format!("commit: {e}")))??;
    let _ = tx.send(Progress::Status(format!("Digest: {top_digest}")));
    Ok(PullResult {
        id: img.id,
        digest: top_digest,
        downloaded: downloaded || existed.as_deref() != Some(mdigest.as_str()),
    })
}

/// Tags of `r`'s repository (for `pull --all-tags`), sorted.
pub async fn list_tags(
    cfg: &RegistryConfig,
    r: &Reference,
    creds: Option<&Credentials>,
) -> Result<Vec<String>, RegistryError> {
    let mut hosts: Vec<(String, bool, Option<Credentials>)> = Vec::new();
    if r.domain() == config::DOCKER_HUB {
        for m in cfg.mirrors() {
            let mc = mirror_creds(&m, creds);
            hosts.push((m.host, m.plain, mc));
        }
    }
    hosts.push((url_host(r.domain()), false, creds.cloned()));
    let mut last = None;
    for (host, plain, c) in hosts {
        let ep = endpoint(cfg, &host, plain).await;
        let auth = match repo_auth(cfg, &ep, r.path(), c.as_ref(), RegistryOperation::Pull).await {
            Ok(a) => a,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        let or =
            oci_client::Reference::with_tag(host.clone(), r.path().to_string(), "latest".into());
        match ep.client.list_tags(&or, &auth, None, None).await {
            Ok(t) => {
                let mut tags = t.tags;
                tags.sort();
                return Ok(tags);
            }
            Err(e) => last = Some(map_oci(e, &r.familiar_name())),
        }
    }
    Err(last.unwrap_or_else(|| RegistryError::NotFound(r.familiar_name())))
}

/// What a push sent.
#[derive(Debug, Clone)]
pub struct PushResult {
    /// Manifest digest.
    pub digest: String,
    /// Manifest size.
    pub size: usize,
    /// The tag pushed.
    pub tag: String,
}

/// Pushes local image `name` as `r` (a tag reference). Blobs the registry has are skipped;
/// missing ones are first mounted from `mount_from` (other repositories of the same registry
/// known to hold this image), then uploaded. An image loaded as a multi-platform index is
/// pushed whole: every platform's blobs and manifest (by digest), then the index (by tag).
pub async fn push(
    store: Arc<ImageStore>,
    cfg: &RegistryConfig,
    name: &str,
    r: &Reference,
    mount_from: &[String],
    creds: Option<&Credentials>,
    tx: ProgressTx,
) -> Result<PushResult, RegistryError> {
    let st = store.clone();
    let n = name.to_string();
    let index = tokio::task::spawn_blocking(move || st.export_index(&n))
        .await
        .map_err(|e| RegistryError::Registry(e.to_string()))??;
    let ep = endpoint(cfg, &url_host(r.domain()), false).await;
    let tag = r.tag().unwrap_or("latest").to_string();
    let target =
        oci_client::Reference::with_tag(ep.host.clone(), r.path().to_string(), tag.clone());
    let _ = tx.send(Progress::Status(format!(
        "The push refers to repository [{}]",
        r.name()
    )));
    let auth = repo_auth(cfg, &ep, r.path(), creds, RegistryOperation::Push).await?;
    ep.client
        .auth(&target, &auth, RegistryOperation::Push)
        .await
        .map_err(|e| map_oci(e, &r.familiar()))?;
    let sources: Vec<String> = mount_from
        .iter()
        .filter(|m| m.as_str() != r.path())
        .cloned()
        .collect();
    let parse = |what: &str, data: &[u8]| -> Result<Manifest, RegistryError> {
        serde_json::from_slice(data)
            .map_err(|e| RegistryError::Registry(format!("{what} of {name}: {e}")))
    };
    let (mdata, default_type) = match index {
        Some((idata, children)) => {
            for (desc, cdata) in children {
                let manifest = parse(&format!("manifest {}", desc.digest), &cdata)?;
                push_blobs(&store, cfg, &ep, &target, &manifest, &sources, &tx).await?;
                let child = oci_client::Reference::with_digest(
                    ep.host.clone(),
                    r.path().to_string(),
                    desc.digest.clone(),
                );
                let ct = media_type(&cdata, &desc.media_type, idigest::MT_OCI_MANIFEST);
                ep.client
                    .push_manifest_raw(
                        &child,
                        cdata,
                        ct.parse()
                            .map_err(|_| RegistryError::Registry("bad media type".into()))?,
                    )
                    .await
                    .map_err(|e| map_oci(e, &format!("{}@{}", r.familiar(), desc.digest)))?;
            }
            (idata, idigest::MT_OCI_INDEX)
        }
        None => {
            let st = store.clone();
            let n = name.to_string();
            let (_img, mdata, _cdata) = tokio::task::spawn_blocking(move || st.export_manifest(&n))
                .await
                .map_err(|e| RegistryError::Registry(e.to_string()))??;
            let manifest = parse("manifest", &mdata)?;
            push_blobs(&store, cfg, &ep, &target, &manifest, &sources, &tx).await?;
            (mdata, idigest::MT_OCI_MANIFEST)
        }
    };
    let ct = media_type(&mdata, "", default_type);
    let digest = idigest::sha256_digest(&mdata);
    let size = mdata.len();
    ep.client
        .push_manifest_raw(
            &target,
            mdata,
            ct.parse()
                .map_err(|_| RegistryError::Registry("bad media type".into()))?,
        )
        .await
        .map_err(|e| map_oci(e, &r.familiar()))?;
    let _ = tx.send(Progress::Status(format!(
        "{tag}: digest: {digest} size: {size}"
    )));
    Ok(PushResult { digest, size, tag })
}

/// A manifest's or index's media type: its own `mediaType`, else the descriptor's, else
/// `default`.
fn media_type(data: &[u8], from_descriptor: &str, default: &str) -> String {
    let v: serde_json::Value = serde_json::from_slice(data).unwrap_or_default();
    v.get("mediaType")
        .and_then(|m| m.as_str())
        .filter(|m| !m.is_empty())
        .or(Some(from_descriptor).filter(|m| !m.is_empty()))
        .unwrap_or(default)
        .to_string()
}

/// Pushes the config and layers of `manifest` to `target`'s repository (in parallel,
/// bounded): skipped when present, mounted from `sources` when possible, else uploaded.
async fn push_blobs(
    store: &Arc<ImageStore>,
    cfg: &RegistryConfig,
    ep: &Endpoint,
    target: &oci_client::Reference,
    manifest: &Manifest,
    sources: &[String],
    tx: &ProgressTx,
) -> Result<(), RegistryError> {
    let limit = Arc::new(tokio::sync::Semaphore::new(
        cfg.max_concurrent_uploads.unwrap_or(5).max(1),
    ));
    let mut tasks = Vec::new();
    for l in manifest.layers.iter().rev() {
        item(tx, &short(&l.digest), "Preparing", None);
    }
    let blobs: Vec<(Descriptor, bool)> = manifest
        .layers
        .iter()
        .map(|l| (l.clone(), true))
        .chain(std::iter::once((manifest.config.clone(), false)))
        .collect();
    for (d, is_layer) in blobs {
        let (ep, target, st, tx, lim) = (
            ep.clone(),
            target.clone(),
            store.clone(),
            tx.clone(),
            limit.clone(),
        );
        let sources = sources.to_vec();
        tasks.push(tokio::spawn(async move {
            let _p = lim
                .acquire_owned()
                .await
                .map_err(|e| RegistryError::Registry(e.to_string()))?;
            let id = short(&d.digest);
            let exists = ep
                .client
                .blob_exists(&target, &d.digest)
                .await
                .map_err(|e| map_oci(e, &format!("blob {}", d.digest)))?;
            if exists {
                if is_layer {
                    item(&tx, &id, "Layer already exists", None);
                }
                return Ok::<(), RegistryError>(());
            }
            for src in &sources {
                let from =
                    oci_client::Reference::with_tag(ep.host.clone(), src.clone(), "latest".into());
                if ep
                    .client
                    .mount_blob(&target, &from, &d.digest)
                    .await
                    .is_ok()
                {
                    if is_layer {
                        item(&tx, &id, &format!("Mounted from {src}"), None);
                    }
                    return Ok(());
                }
            }
            let dg = d.digest.clone();
            let f = tokio::task::spawn_blocking(move || st.open_blob(&dg))
                .await
                .map_err(|e| RegistryError::Registry(e.to_string()))??;
            let total = f.metadata().map(|m| m.len()).unwrap_or(d.size);
            let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let (s2, tx2, id2) = (sent.clone(), tx.clone(), id.clone());
            let stream =
                tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(f), 1 << 20)
                    .map(move |c| {
                        if let Ok(b) = &c {
                            let now = s2
                                .fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed)
                                + b.len() as u64;
                            if is_layer {
                                item(&tx2, &id2, "Pushing", Some((now, total)));
                            }
                        }
                        c.map_err(|e| {
                            oci_client::errors::OciDistributionError::GenericError(Some(
                                e.to_string(),
                            ))
                        })
                    });
            ep.client
                .push_blob_stream(&target, stream, &d.digest, Some(total))
                .await
                .map_err(|e| map_oci(e, &format!("blob {}", d.digest)))?;
            if is_layer {
                item(&tx, &id, "Pushed", None);
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| RegistryError::Registry(e.to_string()))??;
    }
    Ok(())
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

/// `GET /distribution/{name}/json`: the descriptor `r` resolves to and, for an index, the
/// platforms it offers.
pub async fn distribution(
    cfg: &RegistryConfig,
    r: &Reference,
    creds: Option<&Credentials>,
) -> Result<(Descriptor, Vec<Platform>), RegistryError> {
    let (_ep, data, digest, _auth) = resolve(cfg, r, creds).await?;
    let v: serde_json::Value = serde_json::from_slice(&data).unwrap_or_default();
    let mt = v
        .get("mediaType")
        .and_then(|m| m.as_str())
        .unwrap_or("")
        .to_string();
    let mut platforms = Vec::new();
    if is_index(&data) {
        if let Ok(index) = serde_json::from_slice::<Index>(&data) {
            for m in index.manifests {
                if let Some(p) = m.platform {
                    platforms.push(Platform::new(&p.os, &p.architecture, p.variant.as_deref()));
                }
            }
        }
    }
    Ok((
        Descriptor {
            media_type: mt,
            digest,
            size: data.len() as u64,
            ..Default::default()
        },
        platforms,
    ))
}

/// What [`download`] reports besides the body.
#[derive(Debug, Clone, Default)]
pub struct DownloadInfo {
    /// The `Last-Modified` header.
    pub last_modified: Option<String>,
    /// The `Content-Disposition` header.
    pub content_disposition: Option<String>,
}

/// Downloads `url` (http or https, redirects followed, the host's CAs) into `sink`, streaming
/// (the builder's `ADD <url>`). A non-success status is an error naming it.
pub async fn download(
    url: &str,
    sink: &mut (dyn std::io::Write + Send),
) -> Result<DownloadInfo, RegistryError> {
    let err = |e: reqwest::Error| RegistryError::Registry(one_line(&e));
    let http = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(err)?;
    let mut res = http.get(url).send().await.map_err(err)?;
    let status = res.status();
    if !status.is_success() {
        return Err(RegistryError::Registry(format!(
            "invalid response status {status}"
        )));
    }
    let header = |n: &str| {
        res.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let info = DownloadInfo {
        last_modified: header("last-modified"),
        content_disposition: header("content-disposition"),
    };
    while let Some(chunk) = res.chunk().await.map_err(err)? {
        sink.write_all(&chunk)
            .map_err(|e| RegistryError::Registry(format!("writing download: {e}")))?;
    }
    sink.flush()
        .map_err(|e| RegistryError::Registry(format!("writing download: {e}")))?;
    Ok(info)
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
