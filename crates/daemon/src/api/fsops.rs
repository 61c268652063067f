//! Container file systems and housekeeping: `/containers/{id}/archive` (HEAD/GET/PUT, `docker
//! cp`), `/containers/{id}/changes`, `/containers/{id}/export`, `/commit`, `/system/df`.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use barge_container::fsops::PathStat;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;

use super::Query;
use crate::state::AppState;
use crate::stream::{channel_response, Chunk};
use crate::wire::{self, size_i64};
use crate::{asyncify, ApiError};

const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

/// A blocking writer feeding a streamed response body (64 KiB chunks).
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Chunk>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 64 * 1024 {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// A blocking reader over a request body (for extraction on the blocking pool).
struct BodyReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    cur: Bytes,
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

fn body_reader(body: Body) -> BodyReader {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        let mut s = body.into_data_stream();
        while let Some(item) = s.next().await {
            let item = item.map_err(std::io::Error::other);
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
    });
    BodyReader {
        rx,
        cur: Bytes::new(),
    }
}

/// Streams what `f` writes as a response body; an error midway aborts the body.
fn writer_response<F>(content_type: &'static str, f: F) -> Response
where
    F: FnOnce(&mut dyn Write) -> Result<(), barge_container::ContainerError> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(8);
    // A thread of its own, not the blocking pool: it lives as long as the client takes to
    // read, so stalled readers cannot use up the pool the engine calls need.
    let err_tx = tx.clone();
    let spawned = std::thread::Builder::new()
        .name("archive".into())
        .spawn(move || {
            let mut w = ChannelWriter {
                tx: tx.clone(),
                buf: Vec::new(),
            };
            let r = f(&mut w).and_then(|()| {
                w.flush()
                    .map_err(|e| barge_container::ContainerError::io("stream", e))
            });
            if let Err(e) = r {
                tracing::debug!("streamed archive failed: {e}");
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        });
    if let Err(e) = spawned {
        let _ = err_tx.try_send(Err(e));
    }
    channel_response(content_type, rx)
}

fn stat_header(st: &PathStat) -> HeaderValue {
    let js = serde_json::to_vec(st).expect("stat serializes");
    HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(js))
        .expect("base64 is a valid header value")
}

fn path_param(q: &Query) -> Result<String, ApiError> {
    match q.get("path") {
        Some(p) if !p.is_empty() => Ok(p.to_string()),
        _ => Err(ApiError::bad_request("path cannot be empty")),
    }
}

/// `HEAD /containers/{id}/archive?path=`: the stat header only.
pub async fn archive_head(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let path = path_param(&Query::parse(raw))?;
    let s = state.clone();
    let st = asyncify(move || s.containers.stat_path(&id, &path)).await?;
    let mut r = StatusCode::OK.into_response();
    r.headers_mut().insert(STAT_HEADER, stat_header(&st));
    Ok(r)
}

/// `GET /containers/{id}/archive?path=`: a tar of the path (with the stat header).
pub async fn archive_get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let path = path_param(&Query::parse(raw))?;
    let s = state.clone();
    let (id2, p2) = (id.clone(), path.clone());
    let st = asyncify(move || s.containers.stat_path(&id2, &p2)).await?;
    let s = state.clone();
    let mut r = writer_response("application/x-tar", move |w| {
        s.containers.archive_path(&id, &path, w).map(|_| ())
    });
    r.headers_mut().insert(STAT_HEADER, stat_header(&st));
    Ok(r)
}

/// `PUT /containers/{id}/archive?path=&noOverwriteDirNonDir=&copyUIDGID=`: extracts the tar
/// body into the existing directory `path`.
pub async fn archive_put(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    req: Request,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    let path = path_param(&q)?;
    let no_overwrite = q.bool("noOverwriteDirNonDir", false);
    let copy_uid_gid = q.bool("copyUIDGID", false);
    let c = super::containers::get_container(&state, &id).await?;
    let mut reader = body_reader(req.into_body());
    let s = state.clone();
    let cid = c.id.clone();
    asyncify(move || {
        let r = s
            .containers
            .extract_to(&cid, &path, &mut reader, no_overwrite, copy_uid_gid);
        // Drain what the client still sends so it sees our answer, not a reset.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
        r
    })
    .await?;
    state.container_event("extract-to-dir", &c, &[]);
    Ok(StatusCode::OK.into_response())
}

/// `GET /containers/{id}/changes`: `[{"Path": ..., "Kind": 0|1|2}]` (modified, added, deleted).
pub async fn changes(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let s = state.clone();
    let list = asyncify(move || s.containers.changes(&id)).await?;
    Ok(Json(
        serde_json::to_value(crate::wire::changes(&list)).unwrap_or_default(),
    ))
}

/// `GET /containers/{id}/export`: the container's root file system as a tar.
pub async fn export(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let c = super::containers::get_container(&state, &id).await?;
    state.container_event("export", &c, &[]);
    let s = state.clone();
    Ok(writer_response("application/x-tar", move |w| {
        s.containers.export(&c.id, w)
    }))
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=` with an optional
/// `ContainerConfig` body → `{"Id": "sha256:..."}` (201).
pub async fn commit(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    let container = q
        .get("container")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::bad_request("container is required"))?
        .to_string();
    let c = super::containers::get_container(&state, &container).await?;
    let reference = match q.get("repo").filter(|r| !r.is_empty()) {
        None => None,
        Some(repo) => {
            let tag = q.get("tag").filter(|t| !t.is_empty()).unwrap_or("latest");
            let r = barge_image::Reference::parse(repo)?;
            if r.tag().is_some() && q.get("tag").is_none_or(|t| t.is_empty()) {
                Some(r)
            } else {
                Some(barge_image::Reference::parse(&format!("{repo}:{tag}"))?)
            }
        }
    };
    let config = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let v: Option<barge_image::ContainerConfig> = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid config: {e}")))?;
        v
    };
    let opts = barge_builder::commit::CommitOptions {
        reference: reference.clone(),
        comment: q.get("comment").unwrap_or_default().to_string(),
        author: q.get("author").unwrap_or_default().to_string(),
        changes: change_lines(&q.all("changes")),
        config,
    };
    let s = state.clone();
    let cid = c.id.clone();
    let id = asyncify(move || {
        barge_builder::commit::commit(&s.images, &s.containers, &cid, &opts).map_err(build_error)
    })
    .await?;
    state.container_event("commit", &c, &[]);
    if let Some(r) = &reference {
        state.image_event("tag", &id, &r.familiar());
    }
    Ok((StatusCode::CREATED, Json(crate::wire::id_response(&id))).into_response())
}

/// dockerd's error for an `images/load` body that is not an image archive (its untar's
/// wording): shorter than one tar block, `unexpected EOF`; else an invalid header.
pub fn not_an_archive(path: &std::path::Path) -> String {
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let cause = if len < 512 {
        "unexpected EOF"
    } else {
        "archive/tar: invalid tar header"
    };
    format!("Error processing tar file(exit status 1): {cause}")
}

/// The `changes` of a commit as dockerd reads them: all values joined by newlines and parsed
/// as Dockerfile lines (so one value may hold several instructions, `\` continues a line,
/// blank lines and `#` comments are skipped).
fn change_lines(values: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in values.join("\n").lines() {
        let t = line.trim();
        if cur.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(head) => {
                cur.push_str(head);
                cur.push(' ');
            }
            None => {
                cur.push_str(t);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

fn build_error(e: barge_builder::BuildError) -> ApiError {
    match e {
        barge_builder::BuildError::Image(e) => e.into(),
        barge_builder::BuildError::Container(e) => e.into(),
        e => ApiError::internal(e.to_string()),
    }
}

/// One image's sizes for `system df`: its total, and the part of it shared with other images.
fn image_sizes(
    images: &[(barge_image::Image, Vec<(String, u64)>)],
) -> (u64, HashMap<String, (u64, u64)>) {
    let mut users: HashMap<&str, (usize, u64)> = HashMap::new();
    for (_, layers) in images {
        for (chain, size) in layers {
            users.entry(chain).or_insert((0, *size)).0 += 1;
        }
    }
    let total = users.values().map(|(_, s)| s).sum();
    let mut out = HashMap::new();
    for (img, layers) in images {
        let size: u64 = layers.iter().map(|(_, s)| s).sum();
        let shared: u64 = layers
            .iter()
            .filter(|(c, _)| users.get(c.as_str()).is_some_and(|(n, _)| *n > 1))
            .map(|(_, s)| s)
            .sum();
        out.insert(img.id.clone(), (size, shared));
    }
    (total, out)
}

/// `GET /system/df`: disk usage of images (shared and unique sizes, container counts),
/// containers (writable layer sizes), volumes and the build cache.
pub async fn system_df(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let s = state.clone();
    let v = asyncify(move || {
        let imgs = s.images.list()?;
        let mut with_layers = Vec::new();
        for img in imgs {
            let chains = barge_image::chain_ids(&img.config.rootfs.diff_ids);
            let sizes = s.images.layer_sizes(&img.id).unwrap_or_default();
            let layers: Vec<(String, u64)> = chains
                .into_iter()
                .enumerate()
                .map(|(i, c)| (c, sizes.get(i).copied().unwrap_or(0)))
                .collect();
            with_layers.push((img, layers));
        }
        let (layers_size, sizes) = image_sizes(&with_layers);
        let containers = s.containers.list();
        let mut counts: HashMap<&str, i64> = HashMap::new();
        for c in &containers {
            *counts.entry(c.image_id.as_str()).or_default() += 1;
        }
        let images: Vec<_> = with_layers
            .iter()
            .map(|(img, _)| {
                let (size, shared) = sizes.get(&img.id).copied().unwrap_or_default();
                let mut m = wire::image_summary_model(img);
                m.size = size_i64(size);
                m.shared_size = size_i64(shared);
                m.containers = counts.get(img.id.as_str()).copied().unwrap_or(0);
                m
            })
            .collect();
        let ctrs: Vec<_> = containers
            .iter()
            .map(|c| {
                let rw = s.containers.size_rw(&c.id).unwrap_or(0);
                let image = sizes.get(&c.image_id).map(|x| x.0).unwrap_or(0);
                let mut m = super::containers::summary_model(c);
                m.size_rw = Some(size_i64(rw));
                m.size_root_fs = Some(size_i64(rw + image));
                m
            })
            .collect();
        let volumes: Vec<_> = s
            .containers
            .volumes()
            .usage()
            .iter()
            .map(|u| {
                let mut m = wire::volume_model(&u.volume);
                m.usage_data = Some(bollard_stubs::models::VolumeUsageData {
                    size: u.size,
                    ref_count: u.ref_count,
                });
                m
            })
            .collect();
        let cache = build_cache(&s.data_root);
        Ok::<_, ApiError>(wire::system_df(
            layers_size,
            &images,
            &ctrs,
            &volumes,
            &cache,
        ))
    })
    .await?;
    Ok(Json(v))
}

/// The build cache entries (`<data-root>/builder/cache.json`) as Docker's `BuildCache` items:
/// one per cached step, sized by the layer it made.
fn build_cache(data_root: &std::path::Path) -> Vec<wire::BuildCacheEntry> {
    let Ok(data) = std::fs::read(data_root.join("builder/cache.json")) else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_slice::<Value>(&data) else {
        return Vec::new();
    };
    let created = std::fs::metadata(data_root.join("builder/cache.json"))
        .and_then(|m| m.modified())
        .map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339())
        .unwrap_or_default();
    let entries: BTreeMap<String, Value> = v
        .get("entries")
        .and_then(|e| serde_json::from_value(e.clone()).ok())
        .unwrap_or_default();
    entries
        .iter()
        .map(|(key, st)| wire::BuildCacheEntry {
            size: st["layer_sizes"]
                .as_array()
                .and_then(|a| a.last())
                .and_then(Value::as_u64)
                .unwrap_or(0),
            id: barge_image::digest::sha256_digest(key.as_bytes())
                .trim_start_matches("sha256:")
                .chars()
                .take(25)
                .collect(),
            created: created.clone(),
        })
        .collect()
}

/// Docker's `until` value: Unix seconds (fractions allowed), RFC 3339, a date, or a Go
/// duration before `now` (`10m`, `1h30m`). Returns Unix seconds.
pub fn parse_until(v: &str, now: i64) -> Option<i64> {
    if let Ok(f) = v.parse::<f64>() {
        return Some(f as i64);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Some(t.timestamp());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp());
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S") {
        return Some(t.and_utc().timestamp());
    }
    // Go duration.
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = v.chars().peekable();
    let mut any = false;
    while let Some(ch) = chars.next() {
        if ch.is_ascii_digit() || ch == '.' {
            num.push(ch);
            continue;
        }
        let mut unit = ch.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() || n == 'µ' {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += n * match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        any = true;
    }
    if !num.is_empty() || !any {
        return None;
    }
    if !total.is_finite() {
        return None;
    }
    Some(now.saturating_sub(total as i64))
}

/// The `filters` of a prune (`until`, `label`, `label!`) as a predicate over an object's labels
/// and creation time (RFC 3339): `true` = keep it. Errors on filters a prune does not take.
pub fn prune_filter(
    filters: &BTreeMap<String, Vec<String>>,
    unix_of: fn(&str) -> i64,
) -> Result<impl Fn(&BTreeMap<String, String>, &str) -> bool + Send + 'static, ApiError> {
    let now = chrono::Utc::now().timestamp();
    let mut until = None;
    for (k, vals) in filters {
        match k.as_str() {
            "until" => {
                for v in vals {
                    until = Some(parse_until(v, now).ok_or_else(|| {
                        ApiError::bad_request(format!("invalid until filter: {v}"))
                    })?);
                }
            }
            "label" | "label!" => {}
            other => return Err(ApiError::bad_request(format!("invalid filter '{other}'"))),
        }
    }
    let with = filters.get("label").cloned().unwrap_or_default();
    let without = filters.get("label!").cloned().unwrap_or_default();
    let has = |labels: &BTreeMap<String, String>, f: &str| match f.split_once('=') {
        Some((k, v)) => labels.get(k).map(String::as_str) == Some(v),
        None => labels.contains_key(f),
    };
    Ok(move |labels: &BTreeMap<String, String>, created: &str| {
        let prune = until.is_none_or(|u| unix_of(created) < u)
            && with.iter().all(|f| has(labels, f))
            // dockerd's `matchLabels`: `label!` excludes only when every one of them matches.
            && (without.is_empty() || !without.iter().all(|f| has(labels, f)));
        !prune
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_changes_split_like_a_dockerfile() {
        let v = vec![
            "ENV A=1\n\n# comment\nCMD [\"a\", \\\n \"b\"]".to_string(),
            "EXPOSE 80".to_string(),
        ];
        assert_eq!(
            change_lines(&v),
            vec!["ENV A=1", "CMD [\"a\",  \"b\"]", "EXPOSE 80"]
        );
    }

    #[test]
    fn until_values() {
        assert_eq!(parse_until("1700000000", 0), Some(1_700_000_000));
        assert_eq!(parse_until("10m", 1000), Some(400));
        assert_eq!(parse_until("1h30m", 10_000), Some(10_000 - 5400));
        assert_eq!(parse_until("2024-01-01T00:00:00Z", 0), Some(1_704_067_200));
        assert_eq!(parse_until("bogus", 0), None);
        assert_eq!(parse_until("10", 0), Some(10));
    }

    #[test]
    fn prune_filters() {
        let mut f = BTreeMap::new();
        f.insert("label".to_string(), vec!["keep=no".to_string()]);
        let keep = prune_filter(&f, |_| 0).unwrap();
        let mut l = BTreeMap::new();
        assert!(keep(&l, ""));
        l.insert("keep".to_string(), "no".to_string());
        assert!(!keep(&l, ""));
        f.insert("bogus".to_string(), vec![]);
        assert!(prune_filter(&f, |_| 0).is_err());
    }

    #[test]
    fn shared_sizes() {
        let img = |id: &str| barge_image::Image {
            id: id.into(),
            repo_tags: vec![],
            repo_digests: vec![],
            manifest_digest: String::new(),
            config: Default::default(),
            size: 0,
            added: 0,
        };
        let list = vec![
            (
                img("a"),
                vec![("c1".to_string(), 10), ("c2".to_string(), 5)],
            ),
            (
                img("b"),
                vec![("c1".to_string(), 10), ("c3".to_string(), 7)],
            ),
        ];
        let (total, m) = image_sizes(&list);
        assert_eq!(total, 22);
        assert_eq!(m["a"], (15, 10));
        assert_eq!(m["b"], (17, 10));
    }
}
