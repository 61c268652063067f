//! The handlers that talk to a container's process or read its output: attach (hijacked),
//! logs (stdcopy frames, followed), resize (TTY size), top (`ps` of its processes).
//!
//! **Invariants:** streams are raw for a TTY container and stdcopy-multiplexed otherwise;
//! a follow stream ends when the container has stopped or the client went away.

use super::*;

/// `POST /containers/{id}/attach?stream=&stdin=&stdout=&stderr=` (hijacked, 101).
pub async fn attach(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    req: Request,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    let c = get_container(&state, &id).await?;
    let sel = StreamSel {
        stdin: q.bool("stdin", false),
        stdout: q.bool("stdout", false),
        stderr: q.bool("stderr", false),
        tty: c.options.tty,
        detach_keys: Some(
            crate::stream::DetachKeys::parse(q.get("detachKeys").unwrap_or(""))
                .map_err(ApiError::bad_request)?,
        ),
    };
    // `logs=1`: the output so far first (docker-py and compose ask for it); `stream=0`: only
    // that, no live stream.
    let prelude = if q.bool("logs", false) {
        let path = c.log_path.clone();
        let (out, err, tty) = (sel.stdout, sel.stderr, sel.tty);
        // Streamed from the files in chunks through a bounded channel, never held whole.
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
        tokio::task::spawn_blocking(move || {
            let mut buf = Vec::new();
            for e in barge_container::logs::entries(&path) {
                let e = match e {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!("reading log {}: {e}", path.display());
                        break;
                    }
                };
                let is_err = e.stream == "stderr";
                if (is_err && !err) || (!is_err && !out) {
                    continue;
                }
                if tty {
                    buf.extend_from_slice(&e.log);
                } else {
                    buf.extend_from_slice(&frame(if is_err { STDERR } else { STDOUT }, &e.log));
                }
                if buf.len() >= 64 * 1024 && tx.blocking_send(std::mem::take(&mut buf)).is_err() {
                    return;
                }
            }
            if !buf.is_empty() {
                let _ = tx.blocking_send(buf);
            }
        });
        Some(rx)
    } else {
        None
    };
    if q.get("stream").is_some() && !q.bool("stream", true) {
        state.container_event("attach", &c, &[]);
        return Ok(hijack_with(
            req,
            sel,
            prelude,
            None::<futures_util::future::Ready<Result<barge_container::AttachPoint, String>>>,
        ));
    }
    let running = matches!(c.state.status, Status::Running | Status::Paused);
    let point = if running {
        let s = state.clone();
        let cid = c.id.clone();
        let p = asyncify(move || s.containers.attach_point(&cid)).await?;
        futures_util::future::Either::Left(async move { Ok(p) })
    } else {
        let (tx, rx) = tokio::sync::oneshot::channel();
        state
            .pending_attach
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(c.id.clone())
            .or_default()
            .push(tx);
        futures_util::future::Either::Right(async move { rx.await.map_err(|_| String::new()) })
    };
    state.container_event("attach", &c, &[]);
    Ok(hijack_with(req, sel, prelude, Some(point)))
}

/// `POST /containers/{id}/resize?h=&w=`.
pub async fn resize(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    let (h, w) = q.tty_size()?;
    let s = state.clone();
    asyncify(move || {
        let c = s.containers.get(&id)?;
        if c.state.status != Status::Running {
            return Ok(());
        }
        s.containers.resize(&c.id, h, w)
    })
    .await?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /containers/{id}/top?ps_args=`.
pub async fn top(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(raw);
    let ps_args = q.get("ps_args").unwrap_or("-ef").to_string();
    let c = get_container(&state, &id).await?;
    if c.state.status != Status::Running {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            c.id
        )));
    }
    let s = state.clone();
    let (titles, rows) = asyncify(move || s.containers.top(&c.id, &ps_args)).await?;
    Ok(Json(
        serde_json::to_value(bollard_stubs::models::ContainerTopResponse {
            titles: Some(titles),
            processes: Some(rows),
        })
        .unwrap_or_default(),
    ))
}

/// `GET /containers/{id}/logs?follow=&stdout=&stderr=&since=&until=&timestamps=&tail=`:
/// stdcopy frames (raw for a TTY container), streamed while `follow`.
pub async fn logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    let c = get_container(&state, &id).await?;
    if c.options.host.log_type == "none" {
        return Err(ApiError::bad_request(
            "configured logging driver does not support reading",
        ));
    }
    let want_out = q.bool("stdout", false);
    let want_err = q.bool("stderr", false);
    if !want_out && !want_err {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let follow = q.bool("follow", false);
    let timestamps = q.bool("timestamps", false);
    // Unix nanoseconds; 0 means unset (as dockerd).
    let to_time = |n: Option<i64>| {
        n.filter(|n| *n != 0)
            .map(chrono::DateTime::from_timestamp_nanos)
    };
    let since = to_time(q.timestamp("since")?);
    let until = to_time(q.timestamp("until")?);
    let tail: Option<usize> = match q.get("tail") {
        None | Some("all") | Some("") => None,
        Some(n) => n
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| n as usize),
    };
    let tty = c.options.tty;
    let log_path = c.log_path.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(64);
    let render = move |e: &barge_container::logs::LogEntry| -> Option<bytes::Bytes> {
        let is_err = e.stream == "stderr";
        if (is_err && !want_err) || (!is_err && !want_out) {
            return None;
        }
        if since.is_some_and(|s| e.time < s) || until.is_some_and(|u| e.time > u) {
            return None;
        }
        let mut payload = Vec::with_capacity(e.log.len() + 32);
        if timestamps {
            payload.extend_from_slice(
                e.time
                    .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                    .as_bytes(),
            );
            payload.push(b' ');
        }
        payload.extend_from_slice(&e.log);
        Some(bytes::Bytes::from(if tty {
            payload
        } else {
            frame(if is_err { STDERR } else { STDOUT }, &payload)
        }))
    };
    let s = state.clone();
    let cid = c.id.clone();
    crate::spawn_logged("stream", async move {
        // The past entries stream from the files on a blocking thread (the last `tail` read
        // backwards from the end), through the bounded channel: memory stays bounded
        // whatever the log's size.
        let path = log_path.clone();
        let txb = tx.clone();
        let replay = render;
        // Where the replay left the current file: following goes on from there, so nothing
        // written meanwhile is lost or repeated. `None`: the client is gone.
        let replayed = tokio::task::spawn_blocking(move || {
            // Rendered entries go out in chunks of about 64 KiB (one channel message per line
            // would cost more than reading the line).
            let mut chunk = bytes::BytesMut::new();
            let mut send = |e: &barge_container::logs::LogEntry| {
                if let Some(b) = replay(e) {
                    chunk.extend_from_slice(&b);
                }
                chunk.len() < 64 * 1024 || txb.blocking_send(Ok(chunk.split().freeze())).is_ok()
            };
            let (ok, offset) = match tail {
                Some(t) => {
                    let (entries, offset) = barge_container::logs::tail_entries(&path, t)
                        .unwrap_or_else(|e| {
                            tracing::warn!("reading log {}: {e}", path.display());
                            (Vec::new(), 0)
                        });
                    (entries.iter().all(&mut send), offset)
                }
                None => {
                    let mut it = barge_container::logs::entries(&path);
                    for e in it.by_ref() {
                        match e {
                            Ok(e) if !send(&e) => return None,
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!("reading log {}: {e}", path.display());
                                break;
                            }
                        }
                    }
                    (true, it.offset())
                }
            };
            (ok && (chunk.is_empty() || txb.blocking_send(Ok(chunk.freeze())).is_ok()))
                .then_some(offset)
        })
        .await
        .ok()
        .flatten();
        let Some(offset) = replayed else {
            return;
        };
        if !follow {
            return;
        }
        // Follow: the current file from where the replay left it until the container stops.
        let Ok(mut file) = tokio::fs::File::open(&log_path).await else {
            return;
        };
        let mut pos = file
            .seek(std::io::SeekFrom::Start(offset))
            .await
            .unwrap_or(0);
        let mut pending: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut stopped_rounds = 0;
        loop {
            let n = file.read(&mut buf).await.unwrap_or(0);
            if n > 0 {
                pos += n as u64;
                pending.extend_from_slice(&buf[..n]);
                while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=nl).collect();
                    if let Some(e) = barge_container::logs::parse_line(&line) {
                        if let Some(b) = render(&e) {
                            if tx.send(Ok(b)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                continue;
            }
            if tx.is_closed() {
                return;
            }
            // Rotation: the path now names a new, shorter file.
            if let Ok(meta) = tokio::fs::metadata(&log_path).await {
                if meta.len() < pos {
                    if let Ok(f) = tokio::fs::File::open(&log_path).await {
                        file = f;
                        pos = 0;
                        continue;
                    }
                }
            }
            let s2 = s.clone();
            let id2 = cid.clone();
            let running = tokio::task::spawn_blocking(move || {
                s2.containers
                    .get(&id2)
                    .map(|c| is_active(&c.state.status))
                    .unwrap_or(false)
            })
            .await
            .unwrap_or(false);
            if !running {
                stopped_rounds += 1;
                if stopped_rounds > 2 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    Ok(channel_response(
        if tty { RAW_STREAM } else { MUX_STREAM },
        rx,
    ))
}
