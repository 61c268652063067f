//! Streams: Docker's stdcopy framing and the hijacked attach/exec connections.
//!
//! Hijack protocol (Engine API "Hijacking"): the client sends `Connection: Upgrade` and
//! `Upgrade: tcp`; we answer `101 Switching Protocols` with `Content-Type`
//! `application/vnd.docker.raw-stream` (TTY) or `application/vnd.docker.multiplexed-stream`,
//! after which the connection carries stdin one way and output the other.

use std::future::Future;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::Response;
use barge_container::AttachPoint;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// `Content-Type` of a TTY stream.
pub const RAW_STREAM: &str = "application/vnd.docker.raw-stream";
/// `Content-Type` of a stdcopy-multiplexed stream.
pub const MUX_STREAM: &str = "application/vnd.docker.multiplexed-stream";

pub use barge_stdx::stdcopy::{frame, STDERR, STDOUT};

/// One chunk of a streamed response body.
pub type Chunk = Result<bytes::Bytes, std::io::Error>;

/// A `200 OK` with `content_type` whose body is every chunk sent on `rx`, until the sender is
/// dropped (logs, events, `save`).
pub fn channel_response(
    content_type: &'static str,
    rx: tokio::sync::mpsc::Receiver<Chunk>,
) -> Response {
    channel_response_with(content_type, rx, ())
}

/// [`channel_response`] that holds `guard` until the body ends or the client goes away.
pub fn channel_response_with<G: Send + 'static>(
    content_type: &'static str,
    rx: tokio::sync::mpsc::Receiver<Chunk>,
    guard: G,
) -> Response {
    let stream = futures_util::stream::unfold((rx, guard), |(mut rx, g)| async move {
        rx.recv().await.map(|x| (x, (rx, g)))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(stream))
        .expect("static response")
}

/// A detach key sequence (Docker's `detachKeys`, e.g. `ctrl-p,ctrl-q`), at most 8 keys.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DetachKeys {
    keys: [u8; 8],
    len: usize,
}

impl DetachKeys {
    /// Docker's default, `ctrl-p,ctrl-q`.
    pub const DEFAULT: DetachKeys = DetachKeys {
        keys: [16, 17, 0, 0, 0, 0, 0, 0],
        len: 2,
    };

    /// Parses Docker's format: comma-separated `ctrl-<a-z@[\\]^_>` or single characters.
    /// An empty string means the default. Errors name the bad key.
    pub fn parse(s: &str) -> Result<DetachKeys, String> {
        if s.is_empty() {
            return Ok(Self::DEFAULT);
        }
        let mut out = DetachKeys::default();
        for k in s.split(',') {
            let b = match k.strip_prefix("ctrl-") {
                Some(c) if c.len() == 1 => {
                    let c = c.as_bytes()[0].to_ascii_lowercase();
                    match c {
                        b'a'..=b'z' => c - b'a' + 1,
                        b'@' => 0,
                        b'[' => 27,
                        b'\\' => 28,
                        b']' => 29,
                        b'^' => 30,
                        b'_' => 31,
                        _ => return Err(format!("invalid detach key: {k}")),
                    }
                }
                None if k.len() == 1 => k.as_bytes()[0],
                _ => return Err(format!("invalid detach key: {k}")),
            };
            if out.len == out.keys.len() {
                return Err(format!("too many detach keys: {s}"));
            }
            out.keys[out.len] = b;
            out.len += 1;
        }
        Ok(out)
    }

    fn seq(&self) -> &[u8] {
        &self.keys[..self.len]
    }
}

/// Filters stdin for the detach sequence: bytes that may start the sequence are held back
/// until it is complete (detach) or broken (flushed).
#[derive(Debug, Default)]
struct EscapeFilter {
    held: Vec<u8>,
}

impl EscapeFilter {
    /// The bytes to forward, and whether the sequence was completed.
    fn feed(&mut self, keys: &DetachKeys, data: &[u8]) -> (Vec<u8>, bool) {
        let seq = keys.seq();
        let mut out = Vec::with_capacity(data.len());
        if seq.is_empty() {
            return (data.to_vec(), false);
        }
        for &b in data {
            if b == seq[self.held.len()] {
                self.held.push(b);
                if self.held.len() == seq.len() {
                    self.held.clear();
                    return (out, true);
                }
            } else {
                out.append(&mut self.held);
                if b == seq[0] {
                    self.held.push(b);
                } else {
                    out.push(b);
                }
            }
        }
        (out, false)
    }
}

/// Which streams an attach wants.
#[derive(Debug, Clone, Copy)]
pub struct StreamSel {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    /// Detaching from stdin (the container keeps running); `None`: never.
    pub detach_keys: Option<DetachKeys>,
}

/// Answers a hijack request with 101 and, once upgraded, proxies between the client and the
/// monitor socket that `point` resolves to. `Err(message)` is written to the client (as moby
/// does when an exec fails after the hijack) before closing; `Err("")` just closes.
pub fn hijack<F>(req: Request, sel: StreamSel, point: F) -> Response
where
    F: Future<Output = Result<AttachPoint, String>> + Send + 'static,
{
    hijack_with(req, sel, None, Some(point))
}

/// [`hijack`] that first sends the chunks of `prelude` (already framed, e.g. the container's
/// past output for attach's `logs=1`, streamed from its log files) until it closes, then proxies to `point`, or closes the stream when `point` is `None`
/// (attach's `stream=0`).
pub fn hijack_with<F>(
    mut req: Request,
    sel: StreamSel,
    prelude: Option<tokio::sync::mpsc::Receiver<Vec<u8>>>,
    point: Option<F>,
) -> Response
where
    F: Future<Output = Result<AttachPoint, String>> + Send + 'static,
{
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!("attach upgrade failed: {e}");
                return;
            }
        };
        let mut io = TokioIo::new(upgraded);
        if let Some(mut prelude) = prelude {
            let mut first = true;
            while let Some(chunk) = prelude.recv().await {
                if first {
                    // docker-py reads the hijacked stream from the raw socket under its
                    // buffered HTTP reader, so bytes that arrive together with the 101 headers
                    // are lost to it; give the client a moment to finish reading the headers
                    // before the first write.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    first = false;
                }
                if io.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        }
        let Some(point) = point else {
            let _ = io.shutdown().await;
            return;
        };
        let point = match point.await {
            Ok(p) => p,
            Err(message) => {
                if !message.is_empty() {
                    let text = format!("{message}\r\n");
                    let bytes = if sel.tty {
                        text.into_bytes()
                    } else {
                        frame(STDOUT, text.as_bytes())
                    };
                    let _ = io.write_all(&bytes).await;
                }
                let _ = io.shutdown().await;
                return;
            }
        };
        if let Err(e) = proxy(io, &point, sel).await {
            tracing::debug!("attach stream ended: {e}");
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "tcp")
        .header(
            header::CONTENT_TYPE,
            if sel.tty { RAW_STREAM } else { MUX_STREAM },
        )
        .body(Body::empty())
        .expect("static response")
}

/// Copies the monitor's framed output to the client (raw for a TTY) and the client's bytes to
/// the monitor (stdin), until the monitor closes the stream.
pub async fn proxy<C>(client: C, point: &AttachPoint, sel: StreamSel) -> std::io::Result<()>
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let monitor = tokio::net::UnixStream::connect(&point.socket).await?;
    let (mut mon_rd, mut mon_wr) = monitor.into_split();
    let (mut cli_rd, mut cli_wr) = tokio::io::split(client);

    // Set (a permit stored) when the client typed the detach sequence.
    let detached = std::sync::Arc::new(tokio::sync::Notify::new());
    let detached_in = detached.clone();
    let input = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        let mut filter = EscapeFilter::default();
        loop {
            match cli_rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !sel.stdin {
                        continue;
                    }
                    let (data, detach) = match &sel.detach_keys {
                        Some(k) => filter.feed(k, &buf[..n]),
                        None => (buf[..n].to_vec(), false),
                    };
                    if !data.is_empty() && mon_wr.write_all(&data).await.is_err() {
                        break;
                    }
                    if detach {
                        // The client detaches: the process keeps its stdin open.
                        detached_in.notify_one();
                        return;
                    }
                }
            }
        }
        let _ = mon_wr.shutdown().await;
    });

    let result = async {
        let mut header = [0u8; 8];
        let mut payload = Vec::new();
        loop {
            let read = tokio::select! {
                r = mon_rd.read_exact(&mut header) => r,
                _ = detached.notified() => break,
            };
            if let Err(e) = read {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    break;
                }
                return Err(e);
            }
            let len = barge_stdx::stdcopy::payload_len(&header);
            payload.resize(len, 0);
            mon_rd.read_exact(&mut payload).await?;
            let wanted = match header[0] {
                STDERR => sel.stderr,
                _ => sel.stdout,
            };
            if !wanted {
                continue;
            }
            if sel.tty {
                cli_wr.write_all(&payload).await?;
            } else {
                cli_wr.write_all(&header).await?;
                cli_wr.write_all(&payload).await?;
            }
            cli_wr.flush().await?;
        }
        cli_wr.shutdown().await
    }
    .await;
    input.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_has_docker_header() {
        assert_eq!(
            frame(STDERR, b"hi"),
            vec![2, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']
        );
    }

    #[test]
    fn detach_keys_parse_like_docker() {
        assert_eq!(DetachKeys::parse("").unwrap(), DetachKeys::DEFAULT);
        assert_eq!(
            DetachKeys::parse("ctrl-p,ctrl-q").unwrap(),
            DetachKeys::DEFAULT
        );
        assert_eq!(DetachKeys::parse("ctrl-x,y").unwrap().seq(), [24, b'y']);
        assert_eq!(DetachKeys::parse("ctrl-@,ctrl-_").unwrap().seq(), [0, 31]);
        for bad in ["ctrl-", "ctrl-1", "ab", "a,,b"] {
            assert!(DetachKeys::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn escape_filter_holds_prefixes_and_detaches() {
        let k = DetachKeys::DEFAULT;
        let mut f = EscapeFilter::default();
        assert_eq!(f.feed(&k, b"ls\n"), (b"ls\n".to_vec(), false));
        // A broken sequence is forwarded as typed.
        assert_eq!(f.feed(&k, &[16]), (vec![], false));
        assert_eq!(f.feed(&k, b"x"), (vec![16, b'x'], false));
        assert_eq!(f.feed(&k, &[16, 16]), (vec![16], false));
        // The full sequence, split over reads, detaches; what came before is forwarded.
        assert_eq!(f.feed(&k, &[b'a', 16]), (vec![16, b'a'], false));
        assert_eq!(f.feed(&k, &[17, b'z']), (vec![], true));
    }
}
