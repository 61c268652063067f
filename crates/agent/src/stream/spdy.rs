//! Port forwarding over SPDY/3.1 frames tunnelled in a WebSocket
//! (`SPDY/3.1+portforward.k8s.io`, kubectl 1.31+'s PortForwardWebsockets: client-go's
//! tunneling dialer writes the bytes of its SPDY connection as binary WebSocket messages, no
//! channel byte).
//!
//! The minimal SPDY/3.1 server kubelet's `portforward.k8s.io` needs
//! (<https://www.chromium.org/spdy/spdy-protocol/spdy-protocol-draft3-1/>): for each forwarded
//! connection the client opens an `error` stream and a `data` stream (SYN_STREAM, headers
//! `streamtype`, `port`, `requestid`), each answered with a SYN_REPLY; the data stream's DATA
//! frames are copied to and from one TCP connection to the port inside the pod's network
//! namespace; a failure's text goes on the error stream; when the pod's side ends both streams
//! are closed (FIN). RST_STREAM drops a stream, PING is echoed, GOAWAY ends the session,
//! SETTINGS/WINDOW_UPDATE/HEADERS are ignored (the peer, moby's spdystream, does no flow
//! control). Header blocks are zlib streams (one per direction) with the SPDY/3 dictionary.

use std::collections::HashMap;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// The WebSocket subprotocol of SPDY-tunnelled port forwarding.
pub const PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 0x01;
/// The largest DATA payload sent in one frame.
const MAX_DATA: usize = 32 * 1024;
/// The largest frame accepted (SPDY's 24-bit length).
const MAX_FRAME: usize = 1 << 24;

/// The header names of the SPDY/3 compression dictionary, each written as a 4-byte length
/// and the name (SPDY/3 §2.6.10.1).
const DICT_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The rest of the dictionary, as is.
const DICT_TAIL: &str = "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

/// The SPDY/3 header compression dictionary (1423 bytes).
pub fn dictionary() -> Vec<u8> {
    let mut d = Vec::with_capacity(1423);
    for w in DICT_WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(DICT_TAIL.as_bytes());
    d
}

/// A control frame.
fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&[0x80, 3]);
    f.extend_from_slice(&kind.to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(payload);
    f
}

/// A DATA frame.
fn data(stream: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(payload);
    f
}

/// A frame of a SPDY/3 session, as [`parse`] reads it.
pub(crate) enum Frame<'a> {
    Data {
        stream: u32,
        fin: bool,
        payload: &'a [u8],
    },
    /// A SYN_STREAM: the stream's id and its compressed header block.
    SynStream {
        stream: u32,
        headers: &'a [u8],
    },
    /// A PING, whole (echoed as it is).
    Ping(&'a [u8]),
    GoAway,
    /// Anything else (SYN_REPLY, RST_STREAM, SETTINGS, WINDOW_UPDATE, HEADERS): ignored.
    Other,
}

/// The first whole frame of `buf` and how many bytes follow it; `None` until one is whole.
pub(crate) fn split_frame(buf: &[u8]) -> Option<(&[u8], usize)> {
    if buf.len() < 8 {
        return None;
    }
    let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
    if len >= MAX_FRAME || buf.len() < 8 + len {
        return None;
    }
    Some((&buf[..8 + len], buf.len() - 8 - len))
}

/// Reads a whole frame (from [`split_frame`]).
pub(crate) fn parse(frame: &[u8]) -> Frame<'_> {
    let payload = &frame[8..];
    if frame[0] & 0x80 == 0 {
        return Frame::Data {
            stream: u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) & 0x7fff_ffff,
            fin: frame[4] & FLAG_FIN != 0,
            payload,
        };
    }
    match u16::from_be_bytes([frame[2], frame[3]]) {
        SYN_STREAM if payload.len() >= 10 => Frame::SynStream {
            stream: u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                & 0x7fff_ffff,
            headers: &payload[10..],
        },
        PING => Frame::Ping(frame),
        GOAWAY => Frame::GoAway,
        _ => Frame::Other,
    }
}

/// The SYN_REPLY accepting stream `id` (no headers).
pub(crate) fn syn_reply(id: u32, codec: &mut HeaderCodec) -> Vec<u8> {
    let mut reply = id.to_be_bytes().to_vec();
    reply.extend_from_slice(&codec.encode(&[]));
    control(SYN_REPLY, 0, &reply)
}

/// A client's SYN_STREAM opening stream `id` with `headers` (priority 0, no associated
/// stream).
#[cfg(test)]
pub(crate) fn syn_stream(id: u32, headers: &[(&str, &str)], codec: &mut HeaderCodec) -> Vec<u8> {
    let mut p = id.to_be_bytes().to_vec();
    p.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    p.extend_from_slice(&codec.encode(headers));
    control(SYN_STREAM, 0, &p)
}

/// `payload` on stream `id` as DATA frames of at most [`MAX_DATA`] bytes.
pub(crate) fn data_frames(id: u32, payload: &[u8]) -> Vec<Vec<u8>> {
    payload.chunks(MAX_DATA).map(|c| data(id, 0, c)).collect()
}

/// The empty DATA frame that ends stream `id` on our side.
pub(crate) fn fin(id: u32) -> Vec<u8> {
    data(id, FLAG_FIN, &[])
}

/// One direction's header-block zlib stream.
pub struct HeaderCodec {
    inflate: Decompress,
    deflate: Compress,
    dict: Vec<u8>,
}

impl Default for HeaderCodec {
    fn default() -> Self {
        let dict = dictionary();
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(&dict)
            .expect("a fresh deflate stream takes a dictionary");
        HeaderCodec {
            inflate: Decompress::new(true),
            deflate,
            dict,
        }
    }
}

impl HeaderCodec {
    /// Decodes a received header block into (lower-cased name, value) pairs.
    pub fn decode(&mut self, block: &[u8]) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::with_capacity(block.len() * 4 + 256);
        let mut input = block;
        loop {
            let before = self.inflate.total_in();
            if out.capacity() - out.len() < 1024 {
                out.reserve(out.capacity().max(4096));
            }
            let r = self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            let used = (self.inflate.total_in() - before) as usize;
            input = &input[used..];
            match r {
                Ok(_) if input.is_empty() => break,
                Ok(_) => continue,
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(&self.dict)
                        .map_err(|e| format!("header dictionary: {e}"))?;
                }
                Err(e) => return Err(format!("header block: {e}")),
            }
        }
        // Output space may have run out with input left in zlib's window: drain it.
        loop {
            let before = out.len();
            out.reserve(4096);
            self.inflate
                .decompress_vec(&[], &mut out, FlushDecompress::Sync)
                .map_err(|e| format!("header block: {e}"))?;
            if out.len() == before {
                break;
            }
        }
        parse_headers(&out)
    }

    /// Encodes `headers` as a header block.
    pub fn encode(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (k, v) in headers {
            raw.extend_from_slice(&(k.len() as u32).to_be_bytes());
            raw.extend_from_slice(k.as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            out.reserve(256);
            let before = self.deflate.total_in();
            let _ = self
                .deflate
                .compress_vec(input, &mut out, FlushCompress::Sync);
            input = &input[(self.deflate.total_in() - before) as usize..];
            // Done when everything went in and the flush left room to spare.
            if input.is_empty() && out.capacity() > out.len() {
                break;
            }
        }
        out
    }
}

fn parse_headers(b: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut pos = 0;
    let u32_at = |pos: &mut usize| -> Result<usize, String> {
        let s = b.get(*pos..*pos + 4).ok_or("short header block")?;
        *pos += 4;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize)
    };
    let n = u32_at(&mut pos)?;
    let mut out = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let kl = u32_at(&mut pos)?;
        let k = b.get(pos..pos + kl).ok_or("short header name")?;
        pos += kl;
        let vl = u32_at(&mut pos)?;
        let v = b.get(pos..pos + vl).ok_or("short header value")?;
        pos += vl;
        out.push((
            String::from_utf8_lossy(k).to_ascii_lowercase(),
            String::from_utf8_lossy(v).into_owned(),
        ));
    }
    Ok(out)
}

/// One forwarded connection's two streams (by the client's `requestid`).
#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<u32>,
}

/// Serves port forwarding over SPDY/3.1 frames tunnelled in `ws`, connecting inside the
/// network namespace at `netns`.
pub async fn serve_portforward(
    ws: tokio_tungstenite::WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
    netns: std::path::PathBuf,
) {
    let (mut sink, mut source) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        while let Some(f) = out_rx.recv().await {
            if sink.send(Message::Binary(f.into())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let mut codec = HeaderCodec::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    // Client → pod bytes of each data stream.
    let mut inputs: HashMap<u32, mpsc::Sender<Vec<u8>>> = HashMap::new();
    'session: while let Some(Ok(m)) = source.next().await {
        match m {
            Message::Binary(b) => buf.extend_from_slice(&b),
            Message::Close(_) => break,
            _ => continue,
        }
        while buf.len() >= 8 {
            let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
            if len >= MAX_FRAME {
                break 'session;
            }
            if buf.len() < 8 + len {
                break;
            }
            let frame: Vec<u8> = buf.drain(..8 + len).collect();
            let flags = frame[4];
            let payload = &frame[8..];
            if frame[0] & 0x80 == 0 {
                let id = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) & 0x7fff_ffff;
                if let Some(tx) = inputs.get(&id) {
                    if !payload.is_empty() {
                        let _ = tx.send(payload.to_vec()).await;
                    }
                }
                if flags & FLAG_FIN != 0 {
                    inputs.remove(&id);
                }
                continue;
            }
            let kind = u16::from_be_bytes([frame[2], frame[3]]);
            match kind {
                SYN_STREAM if payload.len() >= 10 => {
                    let id = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                        & 0x7fff_ffff;
                    let headers = match codec.decode(&payload[10..]) {
                        Ok(h) => h,
                        Err(e) => {
                            tracing::debug!("port-forward: {e}");
                            break 'session;
                        }
                    };
                    let get = |k: &str| {
                        headers
                            .iter()
                            .find(|(n, _)| n == k)
                            .map(|(_, v)| v.clone())
                            .unwrap_or_default()
                    };
                    let mut reply = id.to_be_bytes().to_vec();
                    reply.extend_from_slice(&codec.encode(&[]));
                    if out_tx.send(control(SYN_REPLY, 0, &reply)).await.is_err() {
                        break 'session;
                    }
                    let request = get("requestid");
                    let port = get("port");
                    let pair = pairs.entry(request.clone()).or_default();
                    match get("streamtype").as_str() {
                        "error" => pair.error = Some(id),
                        "data" => {
                            pair.data = Some(id);
                            let error = pair.error;
                            let (tx, rx) = mpsc::channel(64);
                            inputs.insert(id, tx);
                            pairs.remove(&request);
                            tokio::spawn(forward(
                                netns.clone(),
                                port,
                                id,
                                error,
                                rx,
                                out_tx.clone(),
                            ));
                        }
                        _ => {}
                    }
                }
                RST_STREAM if payload.len() >= 4 => {
                    let id = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                        & 0x7fff_ffff;
                    inputs.remove(&id);
                }
                PING => {
                    let _ = out_tx.send(frame.clone()).await;
                }
                GOAWAY => break 'session,
                _ => {}
            }
        }
    }
    drop(inputs);
    drop(out_tx);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
}

/// One forwarded connection: the pod's port ↔ data stream `data_id`; failures on
/// `error_id`; both closed at the end.
async fn forward(
    netns: std::path::PathBuf,
    port: String,
    data_id: u32,
    error_id: Option<u32>,
    mut input: mpsc::Receiver<Vec<u8>>,
    out: mpsc::Sender<Vec<u8>>,
) {
    let fail = |msg: String| {
        let out = out.clone();
        async move {
            if let Some(e) = error_id {
                let _ = out.send(data(e, 0, msg.as_bytes())).await;
            }
        }
    };
    let conn = match port.parse::<u16>() {
        Ok(p) if p > 0 => super::blocking(move || super::portforward::connect_in_netns(netns, p))
            .await
            .and_then(|s| {
                s.set_nonblocking(true)?;
                tokio::net::TcpStream::from_std(s)
            })
            .map_err(|e| {
                format!("error forwarding port {p} to pod: failed to connect to localhost:{p} inside namespace: {e}")
            }),
        _ => Err(format!("invalid port {port:?}")),
    };
    match conn {
        Err(m) => fail(m).await,
        Ok(conn) => {
            let (mut rd, mut wr) = conn.into_split();
            let up = tokio::spawn(async move {
                while let Some(b) = input.recv().await {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                let _ = wr.shutdown().await;
            });
            let mut buf = vec![0u8; MAX_DATA];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        if out.send(data(data_id, 0, &buf[..n])).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        fail(format!("error reading from the pod's port {port}: {e}")).await;
                        break;
                    }
                }
            }
            up.abort();
        }
    }
    let _ = out.send(data(data_id, FLAG_FIN, &[])).await;
    if let Some(e) = error_id {
        let _ = out.send(data(e, FLAG_FIN, &[])).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_spdy3s() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert_eq!(&d[..11], b"\0\0\0\x07options");
        assert!(d.ends_with(b"enq=0."));
    }

    #[test]
    fn header_blocks_round_trip_through_the_shared_streams() {
        // Our encoder is the peer's: what one side encodes the other decodes, frame after
        // frame on the same zlib streams.
        let mut a = HeaderCodec::default();
        let mut b = HeaderCodec::default();
        for i in 0..3 {
            let rid = i.to_string();
            let block = a.encode(&[
                ("streamtype", "data"),
                ("port", "8080"),
                ("requestid", &rid),
            ]);
            let h = b.decode(&block).unwrap();
            assert_eq!(
                h,
                [
                    ("streamtype".to_string(), "data".to_string()),
                    ("port".to_string(), "8080".to_string()),
                    ("requestid".to_string(), rid.clone()),
                ]
            );
        }
        let empty = a.encode(&[]);
        assert!(b.decode(&empty).unwrap().is_empty());
    }

    #[test]
    fn frames_have_spdy3_headers() {
        assert_eq!(
            control(PING, 0, &[0, 0, 0, 1]),
            [0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]
        );
        assert_eq!(data(5, FLAG_FIN, b"x"), [0, 0, 0, 5, 1, 0, 0, 1, b'x']);
    }
}
