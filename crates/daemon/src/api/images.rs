//! `/images/...`: list, inspect, history, tag, remove, prune, load, save (get), import and pull
//! (create), push; `/auth` and `/distribution/{name}/json` (registries).

use std::collections::HashSet;
use std::io::Write;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use barge_image::{Image, Platform, RemovedItem, SaveFormat};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use super::Query;
use crate::state::AppState;
use crate::wire::progress;
use crate::{asyncify, ApiError};

fn created_unix(img: &Image) -> i64 {
    crate::wire::image_created_unix(img)
}

/// Docker's `ImageSummary` (built in [`crate::wire`]).
pub(crate) fn summary(img: &Image) -> Value {
    crate::wire::image_summary(img)
}

/// Docker's `ImageInspect` (built in [`crate::wire`]); before API 1.45 with `Container` and
/// `ContainerConfig` (what a committed image was made from), as dockerd sent them.
fn inspect_json(img: &Image, legacy: bool) -> Value {
    let mut v = crate::wire::image_inspect(img);
    if legacy {
        let extra = &img.config.extra;
        v["Container"] = extra.get("container").cloned().unwrap_or(json!(""));
        v["ContainerConfig"] = extra
            .get("container_config")
            .cloned()
            .unwrap_or_else(crate::wire::empty_container_config);
    }
    v
}

/// `GET /images/json?all=&filters=` (filters: `dangling`, `reference`, `label`, `before`, `since`).
pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(raw);
    let filters = q.filters()?;
    use super::filters as f;
    f::validate(
        &filters,
        &["dangling", "label", "before", "since", "reference", "until"],
    )?;
    let dangling = f::bool_value(&filters, "dangling")?;
    let s = state.clone();
    let mut images = asyncify(move || s.images.list()).await?;
    images.sort_by_key(|i| std::cmp::Reverse(created_unix(i)));
    // `before`/`since` name an image; `until` is a timestamp or a duration.
    let created_of = |key: &str| -> Result<Option<i64>, ApiError> {
        match f::values(&filters, key).last() {
            None => Ok(None),
            Some(v) => images
                .iter()
                .find(|i| {
                    i.id == *v
                        || i.id.trim_start_matches("sha256:").starts_with(v.as_str())
                        || i.repo_tags
                            .iter()
                            .any(|t| t == v || *t == format!("{v}:latest"))
                })
                .map(|i| Some(created_unix(i)))
                .ok_or_else(|| ApiError::not_found(format!("No such image: {v}"))),
        }
    };
    let before = created_of("before")?;
    let since = created_of("since")?;
    let now = chrono::Utc::now().timestamp();
    let until = match f::values(&filters, "until").last() {
        None => None,
        Some(v) => Some(
            super::fsops::parse_until(v, now)
                .ok_or_else(|| ApiError::bad_request(format!("invalid until filter: {v}")))?,
        ),
    };
    let refs = f::values(&filters, "reference");
    let out: Vec<Value> = images
        .iter()
        .filter(|img| {
            let created = created_unix(img);
            let labels = img.config.config.labels.clone().unwrap_or_default();
            dangling.is_none_or(|d| d == img.repo_tags.is_empty())
                && f::match_kv_list(&filters, "label", &labels)
                && (refs.is_empty()
                    || refs.iter().any(|v| {
                        img.repo_tags.iter().any(|t| {
                            glob_match(v, t)
                                || glob_match(v, t.rsplit_once(':').map(|x| x.0).unwrap_or(t))
                        })
                    }))
                && before.is_none_or(|b| created < b)
                && since.is_none_or(|s| created > s)
                && until.is_none_or(|u| created < u)
        })
        .map(summary)
        .collect();
    Ok(Json(Value::Array(out)))
}

/// Shell-style `*` matching for `reference=` filters (`busybox*`, `*/app:*`).
fn glob_match(pattern: &str, s: &str) -> bool {
    fn rec(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => {
                rec(&p[1..], s) || (!s.is_empty() && s[0] != b'/' && rec(p, &s[1..]))
            }
            (Some(a), Some(b)) if a == b => rec(&p[1..], &s[1..]),
            _ => false,
        }
    }
    rec(pattern.as_bytes(), s.as_bytes())
}

/// `GET /images/{name}/json|history|get`.
pub async fn get_dispatch(
    State(state): State<AppState>,
    version: Option<axum::Extension<super::ApiVersion>>,
    Path(rest): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    if let Some(name) = rest.strip_suffix("/json") {
        let name = name.to_string();
        let s = state.clone();
        let img = asyncify(move || s.images.get(&name)).await?;
        let legacy = version.is_some_and(|v| v.0.older_than(1, 45));
        return Ok(Json(inspect_json(&img, legacy)).into_response());
    }
    if let Some(name) = rest.strip_suffix("/history") {
        let name = name.to_string();
        let s = state.clone();
        let items = asyncify(move || s.images.history(&name)).await?;
        return Ok(Json(crate::wire::image_history(&items)).into_response());
    }
    if let Some(name) = rest.strip_suffix("/get") {
        let q = Query::parse(raw);
        return save(state, vec![name.to_string()], &q).await;
    }
    Err(ApiError::not_found(format!(
        "page not found: /images/{rest}"
    )))
}

/// `POST /images/{name}/tag?repo=&tag=` → 201; `POST /images/{name}/push?tag=` → push stream.
pub async fn post_dispatch(
    State(state): State<AppState>,
    Path(rest): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    if let Some(name) = rest.strip_suffix("/tag") {
        let repo = q.get("repo").unwrap_or("").to_string();
        if repo.is_empty() {
            return Err(ApiError::bad_request(
                "repository name must have at least one component",
            ));
        }
        let target = match q.get("tag").filter(|t| !t.is_empty()) {
            Some(t) => format!("{repo}:{t}"),
            None => repo,
        };
        let name = name.to_string();
        let s = state.clone();
        let t = target.clone();
        let img = asyncify(move || {
            s.images.tag(&name, &t)?;
            s.images.get(&t)
        })
        .await?;
        state.image_event("tag", &img.id, &target);
        return Ok(StatusCode::CREATED.into_response());
    }
    if let Some(name) = rest.strip_suffix("/push") {
        let creds = registry_auth(&headers);
        return push(
            state,
            name.to_string(),
            q.get("tag").filter(|t| !t.is_empty()).map(String::from),
            creds,
        )
        .await;
    }
    Err(ApiError::not_found(format!(
        "page not found: /images/{rest}"
    )))
}

/// `DELETE /images/{name}?force=&noprune=` → `[{"Untagged": ...}, {"Deleted": ...}]`.
pub async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(raw);
    let force = q.bool("force", false);
    let s = state.clone();
    let items = asyncify(move || {
        let in_use = s.containers.images_in_use();
        s.images
            .remove(&name, force, &|id: &str| in_use.get(id).cloned())
    })
    .await?;
    Ok(Json(Value::Array(
        items.iter().map(|i| removed_json(&state, i)).collect(),
    )))
}

/// Emits the item's event and returns it as Docker's `ImageDeleteResponseItem`.
fn removed_item(
    state: &AppState,
    item: &RemovedItem,
) -> bollard_stubs::models::ImageDeleteResponseItem {
    match item {
        RemovedItem::Untagged(r) => state.image_event("untag", r, r),
        RemovedItem::Deleted(id) => state.image_event("delete", id, id),
    }
    crate::wire::image_deleted(item)
}

fn removed_json(state: &AppState, item: &RemovedItem) -> Value {
    serde_json::to_value(removed_item(state, item)).unwrap_or_default()
}

/// `POST /images/prune?filters=` (`dangling=false` prunes every unused image).
pub async fn prune(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(raw);
    let filters = q.filters()?;
    let all = filters
        .get("dangling")
        .is_some_and(|v| v.iter().any(|x| x == "false" || x == "0"));
    let s = state.clone();
    let report = asyncify(move || {
        let in_use: HashSet<String> = s.containers.images_in_use().into_keys().collect();
        s.images.prune(all, &in_use)
    })
    .await?;
    let items: Vec<_> = report
        .removed
        .iter()
        .map(|i| removed_item(&state, i))
        .collect();
    let model = bollard_stubs::models::ImagePruneResponse {
        images_deleted: (!items.is_empty()).then_some(items),
        space_reclaimed: Some(i64::try_from(report.space_reclaimed).unwrap_or(i64::MAX)),
    };
    // dockerd sends `null` when nothing was deleted.
    Ok(Json(crate::wire::to_wire(&model, &["ImagesDeleted"])))
}

/// `GET /images/get?names=a&names=b[&format=oci]`: a tar stream (`docker save`).
pub async fn save_many(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    let names = q.all("names");
    if names.is_empty() {
        return Err(ApiError::bad_request("no images named (names=...)"));
    }
    save(state, names, &q).await
}

/// A `Write` that hands chunks to an async body.
struct ChannelWriter(tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(bytes::Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn save(state: AppState, names: Vec<String>, q: &Query) -> Result<Response, ApiError> {
    let format = match q.get("format").unwrap_or("docker") {
        "" | "docker" => SaveFormat::Docker,
        "oci" => SaveFormat::Oci,
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid format {other:?}: use docker or oci"
            )))
        }
    };
    // Resolve names first so a missing image is a clean 404, not a broken stream.
    let s = state.clone();
    let check = names.clone();
    asyncify(move || {
        for n in &check {
            s.images.get(n)?;
        }
        Ok::<_, ApiError>(())
    })
    .await?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let s = state.clone();
    let err_tx = tx.clone();
    // A thread of its own, not the blocking pool: it lives as long as the client takes to
    // read, so stalled readers cannot use up the pool the engine calls need.
    let spawned = std::thread::Builder::new()
        .name("save".into())
        .spawn(move || {
            let mut w = std::io::BufWriter::with_capacity(256 * 1024, ChannelWriter(tx));
            let r = s
                .images
                .save(&names, format, &mut w)
                .map_err(|e| e.to_string())
                .and_then(|()| w.flush().map_err(|e| e.to_string()));
            if let Err(e) = r {
                tracing::warn!("save failed: {e}");
                let _ = err_tx.blocking_send(Err(std::io::Error::other(e)));
            }
        });
    spawned.map_err(|e| ApiError::internal(format!("starting the save: {e}")))?;
    Ok(crate::stream::channel_response_with(
        "application/x-tar",
        rx,
        TrimOnDrop,
    ))
}

/// Returns the heap's free pages to the kernel when dropped: held by a `save` body, whose
/// 256 KiB chunks (megabytes per archive) are freed as the client takes them.
struct TrimOnDrop;

impl Drop for TrimOnDrop {
    fn drop(&mut self) {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            // Off the workers: a walk of every arena's free lists.
            drop(rt.spawn_blocking(crate::memory::trim));
        }
    }
}

/// Writes a request body to a temporary file under `<data-root>/tmp` (removed on drop).
async fn spool(state: &AppState, body: Body) -> Result<tempfile::TempPath, ApiError> {
    let dir = state.data_root.join("tmp");
    tokio::fs::create_dir_all(&dir).await?;
    let tmp = tempfile::NamedTempFile::new_in(&dir)?;
    let (file, path) = tmp.into_parts();
    let mut file = tokio::fs::File::from_std(file);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("reading request body: {e}")))?;
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    Ok(path)
}

fn json_lines(lines: Vec<Value>) -> Response {
    let mut body = String::new();
    for l in lines {
        body.push_str(&l.to_string());
        body.push('\n');
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("static response")
}

/// `POST /images/load?quiet=&platform=` with a tar body → JSON message stream
/// (`platform=all`: indexes kept whole, for pushing multi-platform images)
/// (`{"stream":"Loaded image: busybox:1.35\n"}`).
pub async fn load(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    req: Request,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    // `platform=all` (barge extension): image indexes are kept with every platform.
    let all = q.get("platform").is_some_and(|p| p == "all");
    let platform = match q.get("platform").filter(|p| !p.is_empty() && !all) {
        Some(p) => Some(parse_platform(p)?),
        None => None,
    };
    let path = spool(&state, req.into_body()).await?;
    let s = state.clone();
    let loaded = asyncify(move || {
        let r = if all {
            s.images.load_path_all_platforms(&path)
        } else {
            s.images.load_path(&path, platform.as_ref())
        };
        // dockerd reports a failed load in the stream (200), a body that is no image
        // archive in its untar's words.
        let r = match r {
            Ok(l) => Ok(l),
            Err(barge_image::ImageError::UnknownFormat { .. }) => {
                Err(super::fsops::not_an_archive(&path))
            }
            Err(e) => Err(e.to_string()),
        };
        drop(path);
        crate::memory::trim();
        Ok::<_, ApiError>(r)
    })
    .await?;
    let loaded = match loaded {
        Ok(l) => l,
        Err(m) => return Ok(json_lines(vec![progress::error(&m)])),
    };
    let mut lines = Vec::new();
    for img in &loaded {
        if img.references.is_empty() {
            lines.push(progress::stream(format!("Loaded image ID: {}\n", img.id)));
            state.image_event("load", &img.id, &img.id);
        }
        for r in &img.references {
            lines.push(progress::stream(format!("Loaded image: {r}\n")));
            state.image_event("load", &img.id, r);
        }
    }
    Ok(json_lines(lines))
}

fn parse_platform(p: &str) -> Result<Platform, ApiError> {
    Ok(Platform::parse(p)?)
}

/// `POST /images/create`: `fromImage=&tag=&platform=` pulls from a registry (progress as
/// newline-delimited JSON); `fromSrc=-` imports the body as a rootfs tarball (`docker import`).
pub async fn create(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    req: Request,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    if let Some(image) = q.get("fromImage").filter(|i| !i.is_empty()) {
        let tag = q.get("tag").filter(|t| !t.is_empty());
        let platform = match q.get("platform").filter(|p| !p.is_empty()) {
            Some(p) => Some(parse_platform(p)?),
            None => None,
        };
        let creds = registry_auth(req.headers());
        let bare = barge_image::Reference::parse(image)?;
        if tag.is_none() && !names_tag_or_digest(image) {
            // No tag at all (`pull --all-tags`): every tag of the repository.
            return pull_all_tags(state, bare, platform, creds).await;
        }
        return pull(state, image, tag, platform, creds).await;
    }
    let Some(src) = q.get("fromSrc") else {
        return Err(ApiError::bad_request(
            "one of fromImage or fromSrc is required",
        ));
    };
    if src != "-" {
        return Err(ApiError::bad_request(format!(
            "fromSrc {src:?}: only \"-\" (the request body) is supported"
        )));
    }
    let repo = q.get("repo").unwrap_or("").to_string();
    let reference = if repo.is_empty() {
        None
    } else {
        match q.get("tag").filter(|t| !t.is_empty()) {
            Some(t) => Some(format!("{repo}:{t}")),
            None => Some(repo),
        }
    };
    let changes = q.all("changes");
    let message = q.get("message").map(String::from);
    let path = spool(&state, req.into_body()).await?;
    let s = state.clone();
    let r = reference.clone();
    let id = asyncify(move || {
        let mut f = std::fs::File::open(&path)
            .map_err(|e| ApiError::internal(format!("reopening upload: {e}")))?;
        let id = s
            .images
            .import(&mut f, r.as_deref(), &changes, message.as_deref())?;
        drop(path);
        crate::memory::trim();
        Ok::<_, ApiError>(id)
    })
    .await?;
    state.image_event("import", &id, reference.as_deref().unwrap_or(&id));
    Ok(json_lines(vec![progress::status(id)]))
}

// ---------------------------------------------------------------- registries

static REGISTRY: std::sync::OnceLock<barge_registry::RegistryConfig> = std::sync::OnceLock::new();

/// Sets the registry settings from the daemon config file (once, at start-up).
pub fn set_registry_config(cfg: barge_registry::RegistryConfig) {
    let _ = REGISTRY.set(cfg);
}

fn registry_config() -> barge_registry::RegistryConfig {
    REGISTRY.get().cloned().unwrap_or_default()
}

#[derive(serde::Deserialize, Default)]
struct AuthConfig {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
    #[serde(default, alias = "serveraddress")]
    serveraddress: String,
    #[serde(default, alias = "identitytoken")]
    identitytoken: String,
}

impl AuthConfig {
    fn credentials(self) -> barge_registry::Credentials {
        use base64::Engine;
        let (mut user, mut pass) = (self.username, self.password);
        if user.is_empty() && !self.auth.is_empty() {
            if let Ok(d) = base64::engine::general_purpose::STANDARD.decode(self.auth.trim()) {
                if let Some((u, p)) = String::from_utf8_lossy(&d).split_once(':') {
                    user = u.to_string();
                    pass = p.to_string();
                }
            }
        }
        barge_registry::Credentials {
            username: user,
            password: pass,
            identity_token: Some(self.identitytoken).filter(|t| !t.is_empty()),
        }
    }
}

/// `X-Registry-Auth`: base64url(JSON AuthConfig), as the docker CLI sends it.
fn registry_auth(headers: &HeaderMap) -> Option<barge_registry::Credentials> {
    use base64::Engine;
    let v = headers.get("x-registry-auth")?.to_str().ok()?.trim();
    if v.is_empty() {
        return None;
    }
    let engines = [
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
    ];
    let data = engines.iter().find_map(|e| e.decode(v).ok())?;
    let cfg: AuthConfig = serde_json::from_slice(&data).ok()?;
    let c = cfg.credentials();
    (!c.username.is_empty() || c.identity_token.is_some()).then_some(c)
}

fn registry_error(e: barge_registry::RegistryError) -> ApiError {
    let status = match e.kind() {
        "notfound" => StatusCode::NOT_FOUND,
        "unauthorized" => StatusCode::UNAUTHORIZED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e.to_string())
}

fn progress_line(p: &barge_registry::Progress) -> Value {
    match p {
        barge_registry::Progress::Status(s) => progress::status(s.clone()),
        barge_registry::Progress::Item {
            id,
            status,
            progress: p,
        } => progress::item(id, status, *p),
    }
}

fn error_line(msg: &str) -> Value {
    progress::error(msg)
}

fn ndjson(v: &Value) -> bytes::Bytes {
    let mut s = v.to_string();
    s.push('\n');
    bytes::Bytes::from(s)
}

type Finish = std::pin::Pin<Box<dyn std::future::Future<Output = Vec<Value>> + Send>>;

/// Runs a registry operation that reports progress on `rx`: an error before any progress is
/// an HTTP error (as dockerd does); after that, progress is streamed and errors become
/// `{"errorDetail":..}` lines. `finish` turns the operation's result into the last lines.
async fn progress_response(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<barge_registry::Progress>,
    handle: tokio::task::JoinHandle<Result<Vec<Value>, barge_registry::RegistryError>>,
) -> Result<Response, ApiError> {
    let first = rx.recv().await;
    let Some(first) = first else {
        let lines = handle
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(registry_error)?;
        return Ok(json_lines(lines));
    };
    let finish: Finish = Box::pin(async move {
        match handle.await {
            Ok(Ok(lines)) => lines,
            Ok(Err(e)) => vec![error_line(&e.to_string())],
            Err(e) => vec![error_line(&e.to_string())],
        }
    });
    type St = (
        Option<barge_registry::Progress>,
        tokio::sync::mpsc::UnboundedReceiver<barge_registry::Progress>,
        Finish,
    );
    let stream =
        futures_util::stream::unfold(Some::<St>((Some(first), rx, finish)), |st| async move {
            let (first, mut rx, finish) = st?;
            if let Some(ev) = first {
                return Some((
                    Ok::<_, std::convert::Infallible>(ndjson(&progress_line(&ev))),
                    Some((None, rx, finish)),
                ));
            }
            match rx.recv().await {
                Some(ev) => Some((Ok(ndjson(&progress_line(&ev))), Some((None, rx, finish)))),
                None => {
                    let lines = finish.await;
                    let mut out = Vec::new();
                    for l in lines {
                        out.extend_from_slice(&ndjson(&l));
                    }
                    Some((Ok(bytes::Bytes::from(out)), None))
                }
            }
        });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("static response"))
}

/// Pull `image` (`name`, `name:tag`, `name@digest`) with `tag` (a tag or a digest) applied.
async fn pull(
    state: AppState,
    image: &str,
    tag: Option<&str>,
    platform: Option<Platform>,
    creds: Option<barge_registry::Credentials>,
) -> Result<Response, ApiError> {
    let spec = match tag {
        Some(t) if t.starts_with("sha256:") => format!("{image}@{t}"),
        Some(t) => format!("{image}:{t}"),
        None => image.to_string(),
    };
    let mut r = barge_image::Reference::parse(&spec)?;
    if r.tag().is_none() && r.digest().is_none() {
        r = r.with_tag("latest");
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let st = state.clone();
    let handle = tokio::spawn(async move {
        // Layers land before the image that references them is committed: gc leaves them.
        let _hold = st.images.hold();
        let cfg = registry_config();
        let res = barge_registry::pull(
            st.images.clone(),
            &cfg,
            &r,
            platform.as_ref(),
            creds.as_ref(),
            tx,
        )
        .await?;
        // Off the workers: a walk of every arena's free lists.
        let _ = tokio::task::spawn_blocking(crate::memory::trim).await;
        st.image_event("pull", &res.id, &r.familiar());
        let status = if res.downloaded {
            format!("Status: Downloaded newer image for {}", r.familiar())
        } else {
            format!("Status: Image is up to date for {}", r.familiar())
        };
        Ok(vec![progress::status(status)])
    });
    progress_response(rx, handle).await
}

/// Whether an image name as typed carries a tag or a digest (`busybox:1`, `a@sha256:..`);
/// parsed references always have one (`latest`).
fn names_tag_or_digest(s: &str) -> bool {
    s.contains('@') || s.rsplit('/').next().is_some_and(|last| last.contains(':'))
}

/// Pulls every tag of `repo`, one after the other, in one progress stream.
async fn pull_all_tags(
    state: AppState,
    repo: barge_image::Reference,
    platform: Option<Platform>,
    creds: Option<barge_registry::Credentials>,
) -> Result<Response, ApiError> {
    let cfg = registry_config();
    let tags = barge_registry::list_tags(&cfg, &repo, creds.as_ref())
        .await
        .map_err(registry_error)?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let st = state.clone();
    let handle = tokio::spawn(async move {
        let _hold = st.images.hold();
        let mut any_new = false;
        for t in tags {
            let r = repo.with_tag(&t);
            let res = barge_registry::pull(
                st.images.clone(),
                &cfg,
                &r,
                platform.as_ref(),
                creds.as_ref(),
                tx.clone(),
            )
            .await?;
            st.image_event("pull", &res.id, &r.familiar());
            any_new |= res.downloaded;
        }
        let status = if any_new {
            format!(
                "Status: Downloaded newer image for {}",
                repo.familiar_name()
            )
        } else {
            format!("Status: Image is up to date for {}", repo.familiar_name())
        };
        Ok(vec![progress::status(status)])
    });
    progress_response(rx, handle).await
}

/// `POST /images/{name}/push?tag=`: pushes `name:tag`, or every tag of `name` when no tag is
/// given and the name has none.
async fn push(
    state: AppState,
    name: String,
    tag: Option<String>,
    creds: Option<barge_registry::Credentials>,
) -> Result<Response, ApiError> {
    let base = barge_image::Reference::parse(&name)?;
    let explicit = names_tag_or_digest(&name);
    let targets: Vec<barge_image::Reference> = match (&tag, explicit) {
        (Some(t), _) => vec![base.with_tag(t)],
        (None, true) => vec![base.clone()],
        (None, false) => {
            let s = state.clone();
            let all = asyncify(move || s.images.list()).await?;
            let mut v: Vec<barge_image::Reference> = all
                .iter()
                .flat_map(|i| i.repo_tags.iter())
                .filter_map(|t| barge_image::Reference::parse(t).ok())
                .filter(|r| r.name() == base.name() && r.tag().is_some())
                .collect();
            v.sort_by_key(|r| r.full());
            v.dedup_by_key(|r| r.full());
            if v.is_empty() {
                return Err(ApiError::not_found(format!(
                    "An image does not exist locally with the tag: {}",
                    base.familiar_name()
                )));
            }
            v
        }
    };
    // Fail early (HTTP 404) when the image is missing.
    let s = state.clone();
    let first = targets[0].full();
    asyncify(move || s.images.get(&first)).await?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let st = state.clone();
    let handle = tokio::spawn(async move {
        let cfg = registry_config();
        let mut lines = Vec::new();
        for t in targets {
            // Repositories of the same registry that hold this image: blobs are mounted from them.
            let mut mount_from = Vec::new();
            let (s2, full) = (st.clone(), t.full());
            if let Ok(img) = asyncify(move || s2.images.get(&full)).await {
                for n in img.repo_tags.iter().chain(img.repo_digests.iter()) {
                    if let Ok(o) = barge_image::Reference::parse(n) {
                        if o.domain() == t.domain()
                            && o.path() != t.path()
                            && !mount_from.contains(&o.path().to_string())
                        {
                            mount_from.push(o.path().to_string());
                        }
                    }
                }
            }
            let res = barge_registry::push(
                st.images.clone(),
                &cfg,
                &t.full(),
                &t,
                &mount_from,
                creds.as_ref(),
                tx.clone(),
            )
            .await?;
            let (s2, full) = (st.clone(), t.full());
            if let Ok(img) = asyncify(move || s2.images.get(&full)).await {
                st.image_event("push", &img.id, &t.familiar());
            }
            lines.push(progress::push_result(&res.tag, &res.digest, res.size));
        }
        Ok(lines)
    });
    progress_response(rx, handle).await
}

/// `POST /auth` with an AuthConfig body: checks the credentials against the registry.
pub async fn auth(body: axum::body::Bytes) -> Result<Json<Value>, ApiError> {
    let cfg: AuthConfig = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid auth config: {e}")))?;
    let server = cfg.serveraddress.clone();
    let creds = cfg.credentials();
    barge_registry::login(&registry_config(), &server, &creds)
        .await
        .map_err(registry_error)?;
    Ok(Json(progress::login_succeeded()))
}

/// `GET /distribution/{name}/json`: the registry's descriptor for `name` and its platforms.
pub async fn distribution(
    Path(rest): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let Some(name) = rest.strip_suffix("/json") else {
        return Err(ApiError::not_found(format!(
            "page not found: /distribution/{rest}"
        )));
    };
    let mut r = barge_image::Reference::parse(name)?;
    if r.tag().is_none() && r.digest().is_none() {
        r = r.with_tag("latest");
    }
    let creds = registry_auth(&headers);
    let (d, platforms) = barge_registry::distribution(&registry_config(), &r, creds.as_ref())
        .await
        .map_err(registry_error)?;
    Ok(Json(progress::distribution(&d, &platforms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_globs() {
        assert!(glob_match("busybox*", "busybox:1.35"));
        assert!(glob_match("busybox", "busybox"));
        assert!(!glob_match("busy", "busybox"));
        assert!(!glob_match("*", "localhost/busybox"));
        assert!(glob_match("*/busybox*", "localhost/busybox:1.35"));
    }
}
