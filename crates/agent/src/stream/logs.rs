//! `GET /containerLogs/NS/POD/CONTAINER`: a container's log as kubelet serves it
//! (`kuberuntime_logs.go`), read from the engine's json-file log with the engine's readers:
//! stdout and stderr interleaved as written, each line optionally prefixed with its RFC 3339
//! nano timestamp (Go's `RFC3339Nano`, trailing zeros dropped).
//!
//! Parameters (`PodLogOptions`): `follow` (until the container stops or the client goes),
//! `previous`, `sinceSeconds`/`sinceTime`, `tailLines`, `timestamps`, `limitBytes` (the
//! output is cut at exactly that many bytes).

use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use barge_container::logs::LogEntry;
use barge_container::Status;
use chrono::{DateTime, Utc};

use super::{blocking, status, Shared};

/// How often a follower looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// The log options of a request.
#[derive(Debug, Default, Clone)]
struct Options {
    follow: bool,
    previous: bool,
    since: Option<DateTime<Utc>>,
    tail: Option<usize>,
    timestamps: bool,
    limit: Option<u64>,
}

fn truthy(v: &str) -> bool {
    matches!(v, "true" | "1" | "True" | "TRUE" | "t" | "T")
}

fn options(query: Option<&str>) -> Result<Options, String> {
    let mut o = Options::default();
    for (k, v) in url_pairs(query) {
        match k.as_str() {
            "follow" => o.follow = truthy(&v),
            "previous" => o.previous = truthy(&v),
            "timestamps" => o.timestamps = truthy(&v),
            "sinceSeconds" => {
                let s: i64 = v
                    .parse()
                    .map_err(|_| format!("invalid sinceSeconds {v:?}"))?;
                if s < 1 {
                    return Err("sinceSeconds: Invalid value: must be greater than 0".into());
                }
                o.since = Some(Utc::now() - chrono::Duration::seconds(s));
            }
            "sinceTime" => {
                let t = DateTime::parse_from_rfc3339(&v)
                    .map_err(|_| format!("invalid sinceTime {v:?}"))?;
                o.since = Some(t.with_timezone(&Utc));
            }
            "tailLines" => {
                let n: i64 = v.parse().map_err(|_| format!("invalid tailLines {v:?}"))?;
                // kubectl's --tail=-1 is "all" and is not sent; a negative value is refused
                // by the API server's validation.
                o.tail = Some(n.max(0) as usize);
            }
            "limitBytes" => {
                let n: i64 = v.parse().map_err(|_| format!("invalid limitBytes {v:?}"))?;
                if n < 1 {
                    return Err("limitBytes: Invalid value: must be greater than 0".into());
                }
                o.limit = Some(n as u64);
            }
            _ => {}
        }
    }
    Ok(o)
}

/// The `key=value` pairs of a query, decoded.
pub(crate) fn url_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let dec = |s: &str| {
        urlencoding::decode(&s.replace('+', " "))
            .map(|c| c.into_owned())
            .unwrap_or_default()
    };
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (dec(k), dec(v)),
            None => (dec(p), String::new()),
        })
        .collect()
}

/// Go's `time.RFC3339Nano` of `t` (UTC): fractional seconds without trailing zeros.
pub fn rfc3339_nano(t: &DateTime<Utc>) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let frac = format!("{:09}", t.timestamp_subsec_nanos());
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{base}Z")
    } else {
        format!("{base}.{frac}Z")
    }
}

/// Writes entries to the client within the byte limit; `false` once done (limit reached or
/// client gone).
struct Writer {
    tx: tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    opts: Options,
    written: u64,
}

impl Writer {
    fn entry(&mut self, e: &LogEntry) -> bool {
        if self.opts.since.is_some_and(|s| e.time < s) {
            return true;
        }
        let mut out = Vec::with_capacity(e.log.len() + 32);
        if self.opts.timestamps {
            out.extend_from_slice(rfc3339_nano(&e.time).as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&e.log);
        let mut done = false;
        if let Some(limit) = self.opts.limit {
            let room = limit.saturating_sub(self.written);
            if out.len() as u64 >= room {
                out.truncate(room as usize);
                done = true;
            }
        }
        self.written += out.len() as u64;
        if !out.is_empty() && self.tx.blocking_send(Ok(out)).is_err() {
            return false;
        }
        !done
    }
}

/// Streams the log of engine container `id` (at `path`) into `w` (blocking).
fn stream(shared: &Shared, id: &str, path: PathBuf, mut w: Writer) {
    let opts = w.opts.clone();
    let offset = match opts.tail {
        Some(n) => match barge_container::logs::tail_entries(&path, n) {
            Ok((entries, offset)) => {
                for e in &entries {
                    if !w.entry(e) {
                        return;
                    }
                }
                offset
            }
            Err(e) => {
                let _ = w.tx.blocking_send(Err(e));
                return;
            }
        },
        None => {
            let mut it = barge_container::logs::entries(&path);
            for e in it.by_ref() {
                match e {
                    Ok(e) => {
                        if !w.entry(&e) {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = w.tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
            it.offset()
        }
    };
    if !opts.follow {
        return;
    }
    let mut offset = offset;
    loop {
        let running = shared
            .engine
            .containers
            .get(id)
            .is_ok_and(|c| matches!(c.state.status, Status::Running | Status::Paused));
        match barge_container::logs::read_from(&path, offset) {
            Ok((entries, next)) => {
                offset = next;
                for e in &entries {
                    if !w.entry(e) {
                        return;
                    }
                }
            }
            Err(_) => return,
        }
        if !running || w.tx.is_closed() {
            return;
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

pub(crate) async fn handle(
    shared: &Shared,
    ns: &str,
    pod: &str,
    c: &str,
    req: Request<Body>,
) -> Response<Body> {
    let opts = match options(req.uri().query()) {
        Ok(o) => o,
        Err(m) => return status(StatusCode::BAD_REQUEST, "BadRequest", &m),
    };
    let p = match super::pod(shared, ns, pod).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let id = match super::container_id(&p, c, opts.previous) {
        Ok(id) => id,
        Err(m) => return status(StatusCode::BAD_REQUEST, "BadRequest", &m),
    };
    let found = {
        let (engine, id) = (shared.engine.clone(), id.clone());
        blocking(move || engine.containers.get(&id).map(|c| c.log_path)).await
    };
    let path = match found {
        Ok(p) => p,
        Err(_) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("container {c:?} in pod {pod:?}: its container {id} is gone"),
            )
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let w = Writer {
        tx,
        opts,
        written: 0,
    };
    let shared2 = shared.clone();
    // A follower may run for as long as the container does: a thread of its own, not one of
    // the blocking pool's.
    let spawned = std::thread::Builder::new()
        .name("agent-logs".into())
        .spawn(move || stream(&shared2, &id, path, w));
    if let Err(e) = spawned {
        return status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            &format!("starting the log reader: {e}"),
        );
    }
    let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain")
        .body(Body::from_stream(body))
        .expect("a static response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_go_rfc3339_nano() {
        let t = DateTime::parse_from_rfc3339("2024-01-02T03:04:05.120000000Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(rfc3339_nano(&t), "2024-01-02T03:04:05.12Z");
        let t = DateTime::parse_from_rfc3339("2024-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(rfc3339_nano(&t), "2024-01-02T03:04:05Z");
    }

    #[test]
    fn options_parse() {
        let o = options(Some(
            "follow=true&tailLines=3&timestamps=true&limitBytes=10",
        ))
        .unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!((o.tail, o.limit), (Some(3), Some(10)));
        let o = options(Some("sinceTime=2024-01-02T03%3A04%3A05Z")).unwrap();
        assert_eq!(o.since.unwrap().timestamp(), 1704164645);
        assert!(options(Some("limitBytes=0")).is_err());
    }
}
