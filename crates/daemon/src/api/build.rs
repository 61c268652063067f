//! `POST /build` (the legacy builder's API: tar context body, JSON message stream) and
//! `POST /build/prune`.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{RawQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Json;
use barge_builder::{BuildOptions, Builder};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use super::Query;
use crate::state::AppState;
use crate::wire::progress;
use crate::{asyncify, ApiError};

fn ndjson(v: &Value) -> bytes::Bytes {
    let mut s = v.to_string();
    s.push('\n');
    bytes::Bytes::from(s)
}

fn truthy(v: Option<&str>) -> bool {
    matches!(v, Some("1") | Some("true") | Some("True"))
}

fn json_map(q: &Query, key: &str) -> Result<BTreeMap<String, Option<String>>, ApiError> {
    match q.get(key).filter(|s| !s.is_empty()) {
        None => Ok(BTreeMap::new()),
        Some(s) => serde_json::from_str(s)
            .map_err(|e| ApiError::bad_request(format!("invalid {key}: {e}"))),
    }
}

/// A JSON array parameter (`cachefrom=["a","b"]`); empty when absent.
fn json_list(q: &Query, key: &str) -> Result<Vec<String>, ApiError> {
    match q.get(key).filter(|s| !s.is_empty()) {
        None => Ok(Vec::new()),
        Some(s) => serde_json::from_str(s)
            .map_err(|e| ApiError::bad_request(format!("invalid {key}: {e}"))),
    }
}

/// `ADD <url>` downloads for the builder, on the registry crate's HTTP client, run on the
/// daemon's runtime from the builder's (blocking) threads.
struct HttpFetcher(tokio::runtime::Handle);

impl barge_builder::fetch::Fetcher for HttpFetcher {
    fn fetch(
        &self,
        url: &str,
        dest: &mut std::fs::File,
    ) -> Result<barge_builder::fetch::Fetched, String> {
        let info = self
            .0
            .block_on(barge_registry::download(url, dest))
            .map_err(|e| e.to_string())?;
        Ok(barge_builder::fetch::Fetched {
            last_modified: info.last_modified,
            content_disposition: info.content_disposition,
        })
    }
}

/// The `dockerfile` parameter as dockerd resolves it (`remotecontext.FullPath`: the path is
/// scoped to the context root): an absolute path is taken from the context's root and `..`
/// never leaves it, so `/sub/Dockerfile` is `sub/Dockerfile` and `../Dockerfile` is
/// `Dockerfile`. (The docker CLI and docker-py send a Dockerfile from outside the context
/// inside the tar, under a `.dockerfile.<random>` name.)
fn scoped_dockerfile(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// `POST /build?t=&dockerfile=&buildargs=&target=&nocache=&labels=&networkmode=&q=&platform=`.
pub async fn build(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    req: Request,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    if q.get("remote").is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::bad_request(
            "building from a remote context is not supported",
        ));
    }
    let mut opts = BuildOptions {
        dockerfile: q
            .get("dockerfile")
            .filter(|d| !d.is_empty())
            .map(scoped_dockerfile),
        // Repeated (`extrahosts=a:1&extrahosts=b:2`, docker-py) or comma-separated.
        extra_hosts: q
            .all("extrahosts")
            .into_iter()
            .flat_map(|h| h.split([',', ' ']).map(str::to_string).collect::<Vec<_>>())
            .filter(|h| !h.is_empty())
            .collect(),
        cache_from: json_list(&q, "cachefrom")?,
        tags: q.all("t").into_iter().filter(|t| !t.is_empty()).collect(),
        target: q.get("target").map(str::to_string),
        no_cache: truthy(q.get("nocache")),
        network_mode: q.get("networkmode").map(str::to_string),
        platform: q
            .get("platform")
            .filter(|p| !p.is_empty())
            .map(str::to_string),
        ..Default::default()
    };
    for (k, v) in json_map(&q, "buildargs")? {
        if let Some(v) = v {
            opts.build_args.insert(k, v);
        }
    }
    for (k, v) in json_map(&q, "labels")? {
        opts.labels.insert(k, v.unwrap_or_default());
    }
    if let Some(e) = opts.build_args.get("SOURCE_DATE_EPOCH") {
        opts.source_date_epoch = Some(
            e.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid SOURCE_DATE_EPOCH {e}")))?,
        );
    }
    let quiet = truthy(q.get("q"));

    // Spool the context.
    let dir = state.data_root.join("tmp");
    tokio::fs::create_dir_all(&dir).await?;
    let tmp = tempfile::NamedTempFile::new_in(&dir)?;
    let (file, path) = tmp.into_parts();
    let mut file = tokio::fs::File::from_std(file);
    let mut stream = req.into_body().into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("reading request body: {e}")))?;
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    drop(file);
    let ctxdir = tempfile::Builder::new().prefix("build-").tempdir_in(&dir)?;
    let cpath = ctxdir.path().to_path_buf();
    asyncify(move || -> Result<(), ApiError> {
        let f = std::fs::File::open(&path)?;
        barge_builder::context::extract(std::io::BufReader::new(f), &cpath)
            .map_err(|e| ApiError::bad_request(format!("invalid build context: {e}")))?;
        drop(path);
        Ok(())
    })
    .await?;

    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    // The response body holds this; hyper drops the body when the client has gone (found at
    // the next write), and the build stops at its next step, as dockerd cancels it.
    let cancel = CancelOnDrop(opts.cancelled.clone());
    let s = state.clone();
    let fetcher = std::sync::Arc::new(HttpFetcher(tokio::runtime::Handle::current()));
    tokio::task::spawn_blocking(move || {
        let builder = Builder::new(s.images.clone(), s.containers.clone(), &s.data_root)
            .with_fetcher(fetcher);
        let txo = tx.clone();
        let mut out = |line: &str| {
            if !quiet {
                let _ = txo.send(progress::stream(line));
            }
        };
        match builder.build(ctxdir.path(), &opts, &mut out) {
            Ok(r) => {
                // dockerd's order: the image's ID (aux), then "Successfully built/tagged"
                // (clients take the last line's `stream` as the outcome).
                let _ = tx.send(progress::build_result(&r.id));
                if quiet {
                    let _ = tx.send(progress::stream(format!("{}\n", r.id)));
                } else {
                    let short =
                        r.id.trim_start_matches("sha256:")
                            .get(..12)
                            .unwrap_or(&r.id);
                    let _ = tx.send(progress::stream(format!("Successfully built {short}\n")));
                    for t in &r.tags {
                        let _ = tx.send(progress::stream(format!("Successfully tagged {t}\n")));
                    }
                }
                for t in &r.tags {
                    s.image_event("tag", &r.id, t);
                }
            }
            Err(e) => {
                let _ = tx.send(progress::error_with_code(&e.to_string(), e.exit_code()));
            }
        }
        drop(ctxdir);
        crate::memory::trim();
    });
    let stream = futures_util::stream::unfold((rx, cancel), |(mut rx, cancel)| async move {
        let v = rx.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(ndjson(&v)), (rx, cancel)))
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("static response"))
}

/// Sets the build's cancel flag when dropped (with the response body).
struct CancelOnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// `POST /build/prune`: drops the build cache (layer cache entries and unused cache mounts).
pub async fn prune(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let s = state.clone();
    let r = asyncify(move || {
        Builder::new(s.images.clone(), s.containers.clone(), &s.data_root)
            .prune()
            .map_err(|e| ApiError::internal(e.to_string()))
    })
    .await?;
    Ok(Json(json!({
        "CachesDeleted": Vec::<String>::new(),
        "SpaceReclaimed": r.bytes,
        "EntriesDeleted": r.entries,
        "CacheMountsDeleted": r.cache_mounts,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerfile_paths_are_scoped_to_the_context() {
        assert_eq!(scoped_dockerfile("Dockerfile"), "Dockerfile");
        assert_eq!(
            scoped_dockerfile("./sub/dir/Dockerfile.x"),
            "sub/dir/Dockerfile.x"
        );
        assert_eq!(scoped_dockerfile("/sub/Dockerfile"), "sub/Dockerfile");
        assert_eq!(scoped_dockerfile("../Dockerfile"), "Dockerfile");
        assert_eq!(scoped_dockerfile("a/../../b/Dockerfile"), "b/Dockerfile");
    }
}
