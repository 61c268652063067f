//! `/_ping`, `/version`, `/info`, `/events`.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{Query, API_VERSION, MIN_API_VERSION};
use crate::events::EventFilter;
use crate::state::AppState;
use crate::ApiError;

fn kernel_version() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `GET|HEAD /_ping`: `OK` plus the headers clients negotiate with.
pub async fn ping() -> Response {
    let mut resp = (StatusCode::OK, "OK").into_response();
    let h = resp.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("OSType", HeaderValue::from_static("linux"));
    h.insert("Swarm", HeaderValue::from_static("inactive"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        header::SERVER,
        HeaderValue::from_static(concat!("barge/", env!("CARGO_PKG_VERSION"))),
    );
    resp
}

/// `GET /version`.
pub async fn version() -> Json<bollard_stubs::models::SystemVersion> {
    Json(crate::wire::system_version(
        env!("CARGO_PKG_VERSION"),
        API_VERSION,
        MIN_API_VERSION,
        arch(),
        &kernel_version(),
    ))
}

/// `GET /info`.
pub async fn info(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let s = state.clone();
    let (containers, n_images, hostname, mem_total, cgroup_version) = crate::asyncify(move || {
        let hostname = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mem_total = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .next()
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<i64>().ok())
            })
            .map(|kb| kb.saturating_mul(1024))
            .unwrap_or(0);
        Ok::<_, ApiError>((
            s.containers.list(),
            s.images.list()?.len(),
            hostname,
            mem_total,
            if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
                "2"
            } else {
                "1"
            },
        ))
    })
    .await?;
    let running = containers
        .iter()
        .filter(|c| c.state.status == barge_container::Status::Running)
        .count();
    let paused = containers
        .iter()
        .filter(|c| c.state.status == barge_container::Status::Paused)
        .count();
    let i64_of = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let facts = crate::wire::InfoFacts {
        containers: i64_of(containers.len()),
        running: i64_of(running),
        paused: i64_of(paused),
        images: i64_of(n_images),
        hostname,
        mem_total,
        cgroup_version,
        kernel_version: kernel_version(),
        docker_root_dir: state.data_root.display().to_string(),
        runtimes: state
            .runtimes
            .iter()
            .map(|(k, v)| {
                let args = state.runtime_args.get(k).cloned().unwrap_or_default();
                (k.clone(), (v.display().to_string(), args))
            })
            .collect(),
        default_runtime: state.default_runtime.clone(),
        system_time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        ncpu: std::thread::available_parallelism()
            .map(|n| i64_of(n.get()))
            .unwrap_or(1),
    };
    Ok(Json(crate::wire::system_info(&facts)))
}

/// `GET /events?since=&until=&filters=`: newline-delimited JSON, streamed until `until`.
pub async fn events(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    let filter = EventFilter {
        filters: q.filters()?,
    };
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let since = q.timestamp("since")?;
    let until = q.timestamp("until")?;
    let (history, mut rx) = state.events.subscribe();
    let (tx, body_rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(64);
    crate::spawn_logged("stream", async move {
        let line = |e: &crate::events::Event| {
            let mut s = e.to_json().to_string();
            s.push('\n');
            Ok(bytes::Bytes::from(s))
        };
        if let Some(since) = since {
            for e in history
                .iter()
                .filter(|e| e.time_nano >= since && filter.matches(e))
            {
                if until.is_some_and(|u| e.time_nano > u) {
                    break;
                }
                if tx.send(line(e)).await.is_err() {
                    return;
                }
            }
        }
        if until.is_some_and(|u| u <= now) {
            return;
        }
        let deadline =
            until.map(|u| std::time::Duration::from_nanos(u.saturating_sub(now).max(0) as u64));
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return,
                _ = tx.closed() => return,
                r = rx.recv() => match r {
                    Ok(e) => {
                        if filter.matches(&e) && tx.send(line(&e)).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                },
            }
        }
    });
    Ok(crate::stream::channel_response("application/json", body_rx))
}

/// dockerd's answer to a cluster call on a node that is not in a swarm (`errNoManager`).
pub const NO_SWARM_MANAGER: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";

/// The 503 a dockerd outside any swarm gives to `/swarm`, `/services`, `/nodes`, `/tasks`,
/// `/secrets` and `/configs` (moby's `daemon/cluster`: `errNoManager`; `POST /swarm/leave`
/// gets `errNoSwarm`). barge has no swarm mode, so `init` and `join` say so with the same
/// status rather than pretending to form a cluster. `None` for other paths.
fn swarm_answer(method: &Method, path: &str) -> Option<ApiError> {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if !["swarm", "services", "nodes", "tasks", "secrets", "configs"].contains(&first) {
        return None;
    }
    let msg = match (method.as_str(), path.trim_end_matches('/')) {
        ("POST", "/swarm/leave") => "This node is not part of a swarm".to_string(),
        ("POST", "/swarm/init" | "/swarm/join") => {
            "barge does not support swarm mode: this node cannot start or join a swarm".to_string()
        }
        _ => NO_SWARM_MANAGER.to_string(),
    };
    Some(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, msg))
}

/// Anything else: the swarm endpoints' 503 (see [`swarm_answer`]), or Docker's 404 shape.
pub async fn not_found(method: Method, uri: Uri) -> ApiError {
    swarm_answer(&method, uri.path())
        .unwrap_or_else(|| ApiError::not_found(format!("page not found: {}", uri.path())))
}

#[cfg(test)]
mod swarm_tests {
    use super::*;

    #[test]
    fn swarm_endpoints_answer_as_a_non_swarm_dockerd() {
        let e = swarm_answer(&Method::GET, "/swarm").unwrap();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.message, NO_SWARM_MANAGER);
        assert_eq!(
            swarm_answer(&Method::GET, "/services/x/logs")
                .unwrap()
                .message,
            NO_SWARM_MANAGER
        );
        assert_eq!(
            swarm_answer(&Method::POST, "/swarm/leave").unwrap().message,
            "This node is not part of a swarm"
        );
        assert!(swarm_answer(&Method::GET, "/swarmy").is_none());
        assert!(swarm_answer(&Method::GET, "/plugins").is_none());
    }
}
