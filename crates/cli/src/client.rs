//! A minimal Docker Engine API client: HTTP/1.1 over a Unix socket, API version
//! negotiation, JSON helpers and connection hijacking for attach/exec.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::{Bytes, BytesMut};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body as HttpBody, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// The default daemon address.
pub const DEFAULT_HOST: &str = "unix:///run/barge/barge.sock";
/// The newest API version this client speaks.
pub const MAX_API_VERSION: (u32, u32) = (1, 47);
/// The version used when the daemon does not announce one.
pub const FALLBACK_API_VERSION: (u32, u32) = (1, 43);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A daemon that accepts but does not answer `/_ping` counts as unreachable.
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Request body type used for every request.
pub type Body = UnsyncBoxBody<Bytes, io::Error>;

/// The daemon could not be reached at all.
#[derive(Debug)]
pub struct Unreachable(pub String);

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Cannot connect to the barge daemon at {}. Is the daemon running? Start it with: barge daemon &",
            self.0
        )
    }
}

impl std::error::Error for Unreachable {}

/// The daemon answered with an error status.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error response from daemon: {}", self.message)
    }
}

impl std::error::Error for ApiError {}

/// Returns the [`ApiError`] inside an error chain, if any.
pub fn api_error(err: &anyhow::Error) -> Option<&ApiError> {
    err.downcast_ref::<ApiError>()
}

/// An empty request body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A request body holding `data`.
pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A JSON request body.
pub fn json_body<T: Serialize>(value: &T) -> Result<Body> {
    Ok(full(serde_json::to_vec(value)?))
}

/// A streaming request body fed by a channel.
pub struct ChannelBody(pub mpsc::Receiver<io::Result<Bytes>>);

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|r| r.map(Frame::data)))
    }
}

/// A streaming request body; the returned sender feeds it.
pub fn channel_body() -> (mpsc::Sender<io::Result<Bytes>>, Body) {
    let (tx, rx) = mpsc::channel(16);
    (tx, ChannelBody(rx).boxed_unsync())
}

/// Parses `major.minor`.
pub fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Picks the API version to use given the daemon's announced version.
pub fn negotiate(server: Option<&str>) -> (u32, u32) {
    match server.and_then(parse_version) {
        Some(v) => v.min(MAX_API_VERSION),
        None => FALLBACK_API_VERSION,
    }
}

/// A client bound to one daemon address.
#[derive(Debug, Clone)]
pub struct Client {
    host: String,
    socket: PathBuf,
    version: Option<(u32, u32)>,
    server_version: Option<String>,
    /// `compose --dry-run`: requests that change something are answered here, not sent.
    dry_run: bool,
}

impl Client {
    /// Creates a client for `host` (`unix:///path` or a bare path).
    pub fn new(host: &str) -> Result<Self> {
        let socket = if let Some(path) = host.strip_prefix("unix://") {
            PathBuf::from(path)
        } else if host.starts_with('/') {
            PathBuf::from(host)
        } else {
            anyhow::bail!("unsupported host {host:?}: only unix:// sockets are supported");
        };
        Ok(Self {
            host: host.to_string(),
            socket,
            version: None,
            server_version: None,
            dry_run: false,
        })
    }

    /// `compose --dry-run`: from now on `json` and `send` answer requests that would change
    /// something themselves, as compose's `DryRunClient` (reads still go to the daemon; a
    /// container it does not know inspects as running and healthy).
    pub fn set_dry_run(&mut self, on: bool) {
        self.dry_run = on;
    }

    /// Whether this client is in dry-run mode.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// The answer a dry run gives instead of sending `method path`, if it does not send it.
    fn dry_answer(&self, method: &Method, path: &str) -> Option<Value> {
        if !self.dry_run {
            return None;
        }
        if *method == Method::GET || *method == Method::HEAD {
            return None;
        }
        let name = path
            .split_once("name=")
            .map(|(_, n)| n.split('&').next().unwrap_or(n).to_string())
            .unwrap_or_else(|| "dryRunId".into());
        Some(if path.starts_with("/containers/create") {
            serde_json::json!({"Id": name, "Warnings": []})
        } else if path.ends_with("/wait") || path.contains("/wait?") {
            serde_json::json!({"StatusCode": 0})
        } else {
            serde_json::json!({"Id": "dryRunId"})
        })
    }

    /// The API version in use, as `1.xx`.
    pub fn api_version(&self) -> String {
        let (a, b) = self.version.unwrap_or(FALLBACK_API_VERSION);
        format!("{a}.{b}")
    }

    /// The API version the daemon announced in `/_ping`.
    pub fn server_api_version(&self) -> Option<&str> {
        self.server_version.as_deref()
    }

    async fn connect(&self) -> Result<hyper::client::conn::http1::SendRequest<Body>> {
        let stream =
            match tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(&self.socket)).await {
                Ok(Ok(s)) => s,
                _ => return Err(Unreachable(self.host.clone()).into()),
            };
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake with the daemon")?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Ok(sender)
    }

    /// Pings the daemon and negotiates the API version.
    pub async fn negotiate(&mut self) -> Result<()> {
        let ping = self.raw(Method::GET, "/_ping", empty(), &[]);
        let resp = match tokio::time::timeout(PING_TIMEOUT, ping).await {
            Ok(resp) => resp?,
            Err(_) => return Err(Unreachable(self.host.clone()).into()),
        };
        let server = resp
            .headers()
            .get("api-version")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        self.version = Some(negotiate(server.as_deref()));
        self.server_version = server;
        Ok(())
    }

    fn build(
        &self,
        method: Method,
        path: &str,
        body: Body,
        headers: &[(&str, &str)],
    ) -> Result<Request<Body>> {
        let uri = if path.starts_with("/_ping") {
            path.to_string()
        } else {
            format!("/v{}{}", self.api_version(), path)
        };
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("Host", "barge")
            .header(
                "User-Agent",
                concat!("barge-cli/", env!("CARGO_PKG_VERSION")),
            );
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Ok(req.body(body)?)
    }

    /// Sends a request and returns the response whatever its status.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Body,
        headers: &[(&str, &str)],
    ) -> Result<Response<Incoming>> {
        let mut sender = self.connect().await?;
        let req = self.build(method, path, body, headers)?;
        Ok(sender.send_request(req).await?)
    }

    /// Sends a request; error statuses become [`ApiError`].
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Body,
        headers: &[(&str, &str)],
    ) -> Result<Response<Incoming>> {
        let resp = self.raw(method, path, body, headers).await?;
        check(resp).await
    }

    /// Sends a request and parses the JSON answer.
    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<T> {
        if let Some(v) = self.dry_answer(&method, path) {
            return Ok(serde_json::from_value(v)?);
        }
        let headers: &[(&str, &str)] = if body.is_some() {
            &[("Content-Type", "application/json")]
        } else {
            &[]
        };
        let dry_inspect =
            self.dry_run && path.starts_with("/containers/") && path.ends_with("/json");
        let resp = match self
            .request(method, path, body.unwrap_or_else(empty), headers)
            .await
        {
            Err(e) if dry_inspect && api_error(&e).is_some_and(|a| a.status == 404) => {
                let name = path
                    .trim_start_matches("/containers/")
                    .trim_end_matches("/json");
                let fake = serde_json::json!({
                    "Id": name, "Name": format!("/{name}"),
                    "State": {"Status": "running", "Running": true, "Health": {"Status": "healthy"}},
                    "Config": {}, "NetworkSettings": {}, "Mounts": [],
                });
                return Ok(serde_json::from_value(fake)?);
            }
            r => r?,
        };
        let bytes = read_all(resp).await?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("decoding the daemon's answer to {path}"))
    }

    /// Sends a request and discards the answer.
    pub async fn send(&self, method: Method, path: &str, body: Option<Body>) -> Result<()> {
        if self.dry_answer(&method, path).is_some() {
            return Ok(());
        }
        let headers: &[(&str, &str)] = if body.is_some() {
            &[("Content-Type", "application/json")]
        } else {
            &[]
        };
        let resp = self
            .request(method, path, body.unwrap_or_else(empty), headers)
            .await?;
        read_all(resp).await?;
        Ok(())
    }

    /// Hijacks the connection (attach, exec start). Returns the raw stream, or the
    /// response body when the daemon did not switch protocols.
    pub async fn hijack(&self, path: &str, body: Body) -> Result<Hijacked> {
        let resp = self
            .raw(
                Method::POST,
                path,
                body,
                &[
                    ("Connection", "Upgrade"),
                    ("Upgrade", "tcp"),
                    ("Content-Type", "application/json"),
                ],
            )
            .await?;
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let upgraded = hyper::upgrade::on(resp)
                .await
                .context("upgrading the connection")?;
            return Ok(Hijacked::Upgraded(TokioIo::new(upgraded)));
        }
        let resp = check(resp).await?;
        Ok(Hijacked::Body(resp.into_body()))
    }
}

/// A hijacked connection.
pub enum Hijacked {
    /// A raw bidirectional stream.
    Upgraded(TokioIo<hyper::upgrade::Upgraded>),
    /// The daemon kept HTTP: output only.
    Body(Incoming),
}

/// Turns error statuses into [`ApiError`].
pub async fn check(resp: Response<Incoming>) -> Result<Response<Incoming>> {
    let status = resp.status();
    if status.is_client_error() || status.is_server_error() {
        let bytes = read_all(resp).await.unwrap_or_default();
        let message = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
        let message = if message.is_empty() {
            status.to_string()
        } else {
            message
        };
        return Err(ApiError {
            status: status.as_u16(),
            message,
        }
        .into());
    }
    Ok(resp)
}

/// Reads a whole response body.
pub async fn read_all(resp: Response<Incoming>) -> Result<Bytes> {
    Ok(resp.into_body().collect().await?.to_bytes())
}

/// Splits a byte stream into JSON values as they complete.
#[derive(Default)]
pub struct JsonStream {
    buf: BytesMut,
}

impl JsonStream {
    /// Feeds bytes; returns the complete values.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<Value>> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
        let consumed = loop {
            match it.next() {
                Some(Ok(v)) => out.push(v),
                Some(Err(e)) if e.is_eof() => break it.byte_offset(),
                Some(Err(e)) => return Err(e.into()),
                None => break it.byte_offset(),
            }
        };
        let _ = self.buf.split_to(consumed);
        Ok(out)
    }
}

/// Calls `f` for each JSON value of a streamed body.
pub async fn for_each_json(
    resp: Response<Incoming>,
    mut f: impl FnMut(Value) -> Result<()>,
) -> Result<()> {
    let mut body = resp.into_body();
    let mut stream = JsonStream::default();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            for v in stream.feed(&data)? {
                f(v)?;
            }
        }
    }
    Ok(())
}

/// Builds a query string, skipping `None` values.
pub fn query(params: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| {
            v.as_ref()
                .map(|v| format!("{k}={}", urlencoding::encode(v)))
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Encodes `key=value` filter flags as the API's `filters` JSON
/// (`{"key":{"value":true}}`), or `None` when there are none.
pub fn filters(list: &[String]) -> Result<Option<String>> {
    if list.is_empty() {
        return Ok(None);
    }
    let mut map = serde_json::Map::new();
    for f in list {
        let Some((k, v)) = f.split_once('=') else {
            anyhow::bail!("bad format of filter (expected name=value)");
        };
        let entry = map
            .entry(k.trim().to_lowercase())
            .or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(values) = entry {
            values.insert(v.to_string(), Value::Bool(true));
        }
    }
    Ok(Some(Value::Object(map).to_string()))
}

/// Percent-encodes one path segment (container or image name).
pub fn seg(s: &str) -> String {
    urlencoding::encode(s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_caps_and_falls_back() {
        assert_eq!(negotiate(Some("1.41")), (1, 41));
        assert_eq!(negotiate(Some("1.53")), (1, 47));
        assert_eq!(negotiate(None), (1, 43));
        assert_eq!(negotiate(Some("garbage")), (1, 43));
    }

    #[test]
    fn json_stream_handles_split_values() {
        let mut s = JsonStream::default();
        assert!(s.feed(b"{\"stream\":\"a\"}\r\n{\"str").unwrap().len() == 1);
        let v = s.feed(b"eam\":\"b\"}\n").unwrap();
        assert_eq!(v, vec![serde_json::json!({"stream":"b"})]);
    }

    #[test]
    fn filters_encode_like_docker() {
        let f = filters(&[
            "status=exited".into(),
            "status=created".into(),
            "name=web".into(),
        ])
        .unwrap()
        .unwrap();
        let v: Value = serde_json::from_str(&f).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"status": {"exited": true, "created": true}, "name": {"web": true}})
        );
        assert!(filters(&[]).unwrap().is_none());
        assert!(filters(&["novalue".into()]).is_err());
    }

    #[test]
    fn query_encodes() {
        assert_eq!(
            query(&[
                ("a", Some("x y".into())),
                ("b", None),
                ("c", Some("1".into()))
            ]),
            "?a=x%20y&c=1"
        );
        assert_eq!(query(&[("b", None)]), "");
    }
}
