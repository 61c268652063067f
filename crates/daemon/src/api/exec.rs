//! `/containers/{id}/exec` and `/exec/{id}/...`.

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use barge_container::{ExecOptions, Status};
use serde::Deserialize;
use serde_json::Value;

use super::Query;
use crate::state::AppState;
use crate::stream::{hijack, StreamSel};
use crate::{asyncify, ApiError};

/// Docker's `ExecConfig` (the fields barge reads).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ExecBody {
    attach_stdin: Option<bool>,
    attach_stdout: Option<bool>,
    attach_stderr: Option<bool>,
    /// Go's JSON decoding matches keys case-insensitively; docker-py sends `detachKeys` (from
    /// the client's config.json) in this spelling.
    #[serde(alias = "detachKeys")]
    detach_keys: Option<String>,
    tty: Option<bool>,
    env: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    privileged: Option<bool>,
    user: Option<String>,
    working_dir: Option<String>,
    /// `[rows, columns]`.
    console_size: Option<Vec<u16>>,
}

/// Docker's `ConsoleSize` (`[rows, columns]`, `[0, 0]` = unset).
pub fn console_size(v: Option<&[u16]>) -> Option<(u16, u16)> {
    match v {
        Some([h, w]) if *h > 0 && *w > 0 => Some((*h, *w)),
        _ => None,
    }
}

/// `POST /containers/{id}/exec` → `201 {"Id": ...}`.
pub async fn create(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: ExecBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid exec config JSON: {e}")))?;
    let cmd = b.cmd.unwrap_or_default();
    if cmd.is_empty() {
        return Err(ApiError::bad_request("No exec command specified"));
    }
    let opts = ExecOptions {
        cmd: cmd.clone(),
        env: b.env.unwrap_or_default(),
        user: b.user.filter(|u| !u.is_empty()),
        working_dir: b.working_dir.filter(|w| !w.is_empty()),
        tty: b.tty.unwrap_or(false),
        attach_stdin: b.attach_stdin.unwrap_or(false),
        attach_stdout: b.attach_stdout.unwrap_or(false),
        attach_stderr: b.attach_stderr.unwrap_or(false),
        privileged: b.privileged.unwrap_or(false),
        detach_keys: b.detach_keys,
        console_size: console_size(b.console_size.as_deref()),
    };
    let s = state.clone();
    let (c, exec) = asyncify(move || {
        let c = s.containers.get(&id)?;
        if c.state.status != Status::Running {
            return Err(ApiError::conflict(format!(
                "container {} is not running",
                c.id
            )));
        }
        let exec = s.containers.exec_create(&c.id, opts)?;
        Ok((c, exec))
    })
    .await?;
    state.container_event(
        &format!("exec_create: {}", cmd.join(" ")),
        &c,
        &[("execID", exec.id.clone())],
    );
    Ok((
        StatusCode::CREATED,
        Json(crate::wire::id_response(&exec.id)),
    )
        .into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct StartBody {
    detach: Option<bool>,
    tty: Option<bool>,
}

/// `POST /exec/{id}/start` with `{"Detach": bool, "Tty": bool}`: hijacked (101) unless detached.
pub async fn start(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let b: StartBody = if bytes.is_empty() {
        StartBody::default()
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("invalid exec start JSON: {e}")))?
    };
    let s = state.clone();
    let eid = id.clone();
    let exec = asyncify(move || s.containers.exec_inspect(&eid)).await?;
    if exec.running || exec.exit_code.is_some() {
        return Err(ApiError::conflict(format!(
            "Error: Exec command {id} has already run"
        )));
    }
    let (s, cid) = (state.clone(), exec.container_id.clone());
    if let Ok(c) = asyncify(move || s.containers.get(&cid)).await {
        state.container_event(
            &format!("exec_start: {}", exec.options.cmd.join(" ")),
            &c,
            &[("execID", id.clone())],
        );
    }
    if b.detach.unwrap_or(false) {
        let s = state.clone();
        asyncify(move || s.containers.exec_start(&id, true, 0, &mut |_| {})).await?;
        return Ok(StatusCode::OK.into_response());
    }
    let sel = StreamSel {
        stdin: exec.options.attach_stdin,
        stdout: true,
        stderr: true,
        tty: b.tty.unwrap_or(exec.options.tty),
        detach_keys: Some(
            crate::stream::DetachKeys::parse(exec.options.detach_keys.as_deref().unwrap_or(""))
                .map_err(ApiError::bad_request)?,
        ),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let s = state.clone();
    tokio::task::spawn_blocking(move || {
        let mut tx = Some(tx);
        if let Err(e) = s.containers.exec_start(&id, false, 1, &mut |p| {
            if let Some(tx) = tx.take() {
                let _ = tx.send(Ok(p.clone()));
            }
        }) {
            tracing::debug!(exec = %id, "exec start failed: {e}");
            if let Some(tx) = tx.take() {
                // moby's wording for a failed exec, written into the hijacked stream.
                let msg = e.to_string();
                let msg = msg
                    .strip_prefix("failed to create task for container: ")
                    .unwrap_or(&msg);
                let _ = tx.send(Err(format!("OCI runtime exec failed: {msg}")));
            }
        }
    });
    Ok(hijack(
        Request::from_parts(parts, axum::body::Body::empty()),
        sel,
        async move { rx.await.unwrap_or_else(|_| Err(String::new())) },
    ))
}

/// `POST /exec/{id}/resize?h=&w=`.
pub async fn resize(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    let (h, w) = q.tty_size()?;
    let s = state.clone();
    asyncify(move || s.containers.exec_resize(&id, h, w)).await?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /exec/{id}/json` (Docker's `ExecInspectResponse`).
pub async fn inspect(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let s = state.clone();
    let e = asyncify(move || s.containers.exec_inspect(&id)).await?;
    Ok(Json(crate::wire::exec_inspect(&e)))
}
