//! `/containers/...`: create, list, inspect, start, stop, kill, restart, wait, attach, resize,
//! logs, top, remove, prune.
//!
//! Modules: [`create`] (the create body parsed and checked into `CreateOptions`, the create
//! handler), [`list`] (`GET /containers/json`: filters and the `Status`/`Command` columns),
//! [`io`] (attach, logs, resize, top: the handlers that talk to a container's process or read
//! its output); this file keeps inspect and the lifecycle handlers (start, stop, kill, restart,
//! wait, remove, prune) and the engine event pump.
//!
//! **Invariants:** no handler blocks an async worker: engine calls go through [`asyncify`]
//! (or `spawn_blocking`), and `wait` is completed by the engine, not by a waiting thread; the
//! submodules only add handlers and their helpers (re-exported here, so the router's paths
//! stay `containers::NAME`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use barge_container::mounts::{BindOptions, MountSpec, MountType, TmpfsOptions, VolumeOptions};
use barge_container::{
    Container, ContainerEvent, CreateOptions, HostOptions, Status, WaitCondition,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{human_duration, Query};
use crate::state::AppState;
use crate::stream::{
    channel_response, frame, hijack_with, StreamSel, MUX_STREAM, RAW_STREAM, STDERR, STDOUT,
};
use crate::{asyncify, ApiError};

mod create;
mod io;
mod list;

pub use create::create;
pub use io::{attach, logs, resize, top};
pub use list::list;
pub(crate) use list::summary_model;

pub(crate) async fn get_container(state: &AppState, id: &str) -> Result<Container, ApiError> {
    let s = state.clone();
    let id = id.to_string();
    asyncify(move || s.containers.get(&id)).await
}

pub(crate) use crate::wire::{is_active, unix_of};

/// `GET /containers/{id}/json`.
pub async fn inspect(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let c = get_container(&state, &id).await?;
    let execs = state.containers.exec_ids(&c.id);
    let mut v = crate::wire::container_inspect(&c, &execs);
    let (s, c2) = (state.clone(), c.clone());
    v["NetworkSettings"] =
        asyncify(move || Ok::<_, ApiError>(super::networks::network_settings(&s, &c2))).await?;
    v["HostConfig"]["PortBindings"] = super::networks::port_bindings_json(&c);
    v["HostConfig"]["PublishAllPorts"] = json!(c.options.host.publish_all_ports);
    v["HostConfig"]["ExtraHosts"] = json!(c.options.host.extra_hosts);
    v["HostConfig"]["Dns"] = json!(c.options.host.dns);
    Ok(Json(v))
}

/// `POST /containers/{id}/start` → 204, or 304 if already running.
pub async fn start(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let c = get_container(&state, &id).await?;
    if is_active(&c.state.status) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let waiters = state
        .pending_attach
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&c.id)
        .unwrap_or_default();
    let s = state.clone();
    let cid = c.id.clone();
    let started = asyncify(move || {
        let mut waiters = Some(waiters);
        let n = waiters.as_ref().map(Vec::len).unwrap_or(0);
        s.containers.start(&cid, n, &mut |point| {
            for w in waiters.take().unwrap_or_default() {
                let _ = w.send(point.clone());
            }
        })
    })
    .await;
    if let Err(e) = started {
        // As dockerd: a `--rm` container that fails to start is removed, so
        // `wait?condition=removed` (docker run --rm) returns.
        if c.options.host.auto_remove {
            let s = state.clone();
            let cid = c.id.clone();
            if asyncify(move || s.containers.remove_with_volumes(&cid, true, true))
                .await
                .is_ok()
            {
                state.container_event("destroy", &c, &[]);
            }
        }
        return Err(e);
    }
    state.container_event("start", &c, &[]);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /containers/{id}/stop?t=&signal=` → 204, or 304 if not running.
pub async fn stop(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    let timeout = q.stop_timeout()?;
    let c = get_container(&state, &id).await?;
    if !is_active(&c.state.status) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let signal = q.get("signal").filter(|s| !s.is_empty()).map(String::from);
    let s = state.clone();
    let cid = c.id.clone();
    asyncify(move || s.containers.stop(&cid, timeout, signal.as_deref())).await?;
    state.container_event("stop", &c, &[]);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// How long `kill` (SIGKILL) waits for the container to stop, as dockerd's `Kill` does.
const KILL_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// `POST /containers/{id}/kill?signal=` → 204; 409 if not running. With SIGKILL (the
/// default), answers once the container stopped (or after [`KILL_WAIT`]).
pub async fn kill(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    let c = get_container(&state, &id).await?;
    if !is_active(&c.state.status) {
        return Err(ApiError::conflict(format!(
            "cannot kill container: {id}: container {} is not running",
            c.id
        )));
    }
    let signal = q
        .get("signal")
        .filter(|s| !s.is_empty())
        .unwrap_or("SIGKILL")
        .to_string();
    let s = state.clone();
    let cid = c.id.clone();
    let sig = signal.clone();
    asyncify(move || s.containers.kill(&cid, &sig)).await?;
    state.container_event(
        "kill",
        &c,
        &[("signal", signal_number(&signal).to_string())],
    );
    if signal_number(&signal) == 9 {
        // dockerd's `Kill` waits (bounded) for a SIGKILLed container to stop, so an inspect
        // right after the answer sees it exited (137); other signals do not wait.
        let containers = state.containers.clone();
        let cid = c.id.clone();
        let waited = crate::engine_wait(containers, move |c, notify| {
            c.wait_notify(&cid, WaitCondition::NotRunning, notify)
        });
        let _ = tokio::time::timeout(KILL_WAIT, waited).await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn signal_number(s: &str) -> i32 {
    if let Ok(n) = s.parse::<i32>() {
        return n;
    }
    let name = s.to_ascii_uppercase();
    let name = if name.starts_with("SIG") {
        name
    } else {
        format!("SIG{name}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .unwrap_or(0)
}

/// `POST /containers/{id}/restart?t=&signal=` → 204.
pub async fn restart(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    let timeout = q.stop_timeout()?;
    let c = get_container(&state, &id).await?;
    let signal = q.get("signal").filter(|s| !s.is_empty()).map(String::from);
    let s = state.clone();
    let cid = c.id.clone();
    asyncify(move || {
        s.containers.stop(&cid, timeout, signal.as_deref())?;
        s.containers.start(&cid, 0, &mut |_| {})
    })
    .await?;
    state.container_event("restart", &c, &[]);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /containers/{id}/wait?condition=not-running|next-exit|removed` →
/// `{"StatusCode": n, "Error": null}` once the condition holds. Headers go out at once.
pub async fn wait(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    let condition = match q.get("condition").unwrap_or("not-running") {
        "" | "not-running" => WaitCondition::NotRunning,
        "next-exit" => WaitCondition::NextExit,
        "removed" => WaitCondition::Removed,
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid condition: {other:?}"
            )))
        }
    };
    let c = get_container(&state, &id).await?;
    let containers = state.containers.clone();
    let cid = c.id.clone();
    // No thread waits: the engine completes the future; a client that goes away drops the
    // body stream and with it the waiter.
    let fut = async move {
        let waited = crate::engine_wait(containers, move |c, notify| {
            c.wait_notify(&cid, condition, notify)
        })
        .await;
        let body = crate::wire::container_wait(waited.map_err(|e| e.message));
        Ok::<_, std::io::Error>(bytes::Bytes::from(format!("{body}\n")))
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(futures_util::stream::once(fut)))
        .expect("static response"))
}

/// `DELETE /containers/{id}?force=&v=` → 204.
/// `DELETE /containers/{parent}/{alias}?link=1`: removes the legacy link `/PARENT/ALIAS`
/// (`docker rm --link`); without `link=1` no container has such a name (404).
pub async fn remove_link(
    State(state): State<AppState>,
    Path((parent, alias)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let name = format!("/{parent}/{alias}");
    if !Query::parse(raw).bool("link", false) {
        return Err(ApiError::not_found(format!("No such container: {name}")));
    }
    let s = state.clone();
    asyncify(move || s.containers.remove_link(&parent, &alias)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    if q.bool("link", false) {
        // A link name is `/PARENT/ALIAS` (see `remove_link`); a bare name is not one.
        return Err(ApiError::conflict(
            "Conflict, cannot remove the default link name of the container",
        ));
    }
    let force = q.bool("force", false);
    let volumes = q.bool("v", false);
    let c = get_container(&state, &id).await?;
    let s = state.clone();
    let cid = c.id.clone();
    asyncify(move || s.containers.remove_with_volumes(&cid, force, volumes)).await?;
    state.container_event("destroy", &c, &[]);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /containers/prune?filters=` (`until`, `label`, `label!`) →
/// `{"ContainersDeleted": [...], "SpaceReclaimed": bytes of their writable layers}`.
pub async fn prune(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(raw);
    let filters = q.filters()?;
    let keep = super::fsops::prune_filter(&filters, unix_of)?;
    let s = state.clone();
    let (removed, space) =
        asyncify(move || s.containers.prune(&|c| keep(&c.config.labels, &c.created))).await?;
    for c in &removed {
        state.container_event("destroy", c, &[]);
    }
    let ids: Vec<String> = removed.iter().map(|c| c.id.clone()).collect();
    let model = bollard_stubs::models::ContainerPruneResponse {
        containers_deleted: (!ids.is_empty()).then_some(ids),
        space_reclaimed: Some(i64::try_from(space).unwrap_or(i64::MAX)),
    };
    // dockerd sends `null` when nothing was deleted.
    Ok(Json(crate::wire::to_wire(&model, &["ContainersDeleted"])))
}

/// Reacts to engine events: `die` events and `--rm` auto-removal. The receiver is shared so
/// that a supervisor can restart the pump after a panic without losing the queue
/// (`server::supervise`). A `--rm` removal runs as its own task: the pump never waits on it.
pub async fn event_pump(
    state: AppState,
    rx: std::sync::Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<ContainerEvent>>>,
) {
    loop {
        let Some(ev) = rx.lock().await.recv().await else {
            return;
        };
        match ev {
            ContainerEvent::Died {
                id,
                exit_code,
                oom_killed,
            } => {
                let Ok(c) = get_container(&state, &id).await else {
                    continue;
                };
                if oom_killed {
                    state.container_event("oom", &c, &[]);
                }
                state.container_event("die", &c, &[("exitCode", exit_code.to_string())]);
                if c.options.host.auto_remove {
                    let state = state.clone();
                    crate::spawn_logged("auto-remove", async move {
                        let s = state.clone();
                        let cid = c.id.clone();
                        // `--rm` also removes the container's anonymous volumes.
                        match asyncify(move || s.containers.remove_with_volumes(&cid, true, true))
                            .await
                        {
                            Ok(()) => state.container_event("destroy", &c, &[]),
                            Err(e) => tracing::warn!(id = %c.id, "auto-remove failed: {e}"),
                        }
                    });
                }
            }
            ContainerEvent::Restarted { id } => {
                if let Ok(c) = get_container(&state, &id).await {
                    state.container_event("start", &c, &[]);
                }
            }
            ContainerEvent::HealthStatus { id, status } => {
                if let Ok(c) = get_container(&state, &id).await {
                    state.container_event(&format!("health_status: {status}"), &c, &[]);
                }
            }
            ContainerEvent::ExecDied {
                id,
                exec_id,
                exit_code,
            } => {
                if let Ok(c) = get_container(&state, &id).await {
                    state.container_event(
                        "exec_die",
                        &c,
                        &[("execID", exec_id), ("exitCode", exit_code.to_string())],
                    );
                }
            }
        }
    }
}

#[allow(dead_code)]
fn _unused(_: HashMap<(), ()>) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_numbers() {
        assert_eq!(signal_number("SIGKILL"), 9);
        assert_eq!(signal_number("TERM"), 15);
        assert_eq!(signal_number("2"), 2);
    }
}
