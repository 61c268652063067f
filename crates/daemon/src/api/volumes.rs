//! `/volumes/...`: list, create, inspect, remove, prune (Docker's `Volume` API,
//! <https://docs.docker.com/reference/api/engine/version/v1.47/#tag/Volume>).

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use barge_container::volumes::{Volume, VolumeCreate};
use serde::Deserialize;
use serde_json::{json, Value};

use super::Query;
use crate::state::AppState;
use crate::{asyncify, ApiError};

/// Docker's `Volume` object. Empty `Labels`/`Options` are `null`, as dockerd sends them.
pub fn volume_json(v: &Volume) -> Value {
    crate::wire::volume(v)
}

fn volume_event(state: &AppState, action: &str, v: &Volume) {
    let mut attrs = BTreeMap::new();
    attrs.insert("driver".to_string(), v.driver.clone());
    state.events.emit("volume", action, &v.name, attrs);
}

/// `GET /volumes?filters=` → `{"Volumes": [...], "Warnings": []}`.
pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let filters = Query::parse(raw).filters()?;
    let s = state.clone();
    let vols = asyncify(move || s.containers.volumes().list(&filters)).await?;
    let list: Vec<Value> = vols.iter().map(volume_json).collect();
    Ok(Json(json!({ "Volumes": list, "Warnings": [] })))
}

/// Docker's `VolumeCreateOptions`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateBody {
    name: Option<String>,
    driver: Option<String>,
    driver_opts: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

/// `POST /volumes/create` → `201` + the volume (the existing one if the name is taken).
pub async fn create(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: CreateBody = if body.is_empty() {
        CreateBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid volume create JSON: {e}")))?
    };
    let req = VolumeCreate {
        name: b.name.unwrap_or_default(),
        driver: b.driver.unwrap_or_default(),
        driver_opts: b.driver_opts.unwrap_or_default(),
        labels: b.labels.unwrap_or_default(),
    };
    let s = state.clone();
    let existed = !req.name.is_empty();
    let name = req.name.clone();
    let (v, created) = asyncify(move || {
        let vols = s.containers.volumes();
        let before = existed && vols.get(&name).is_ok();
        vols.create(req).map(|v| (v, !before))
    })
    .await?;
    if created {
        volume_event(&state, "create", &v);
    }
    Ok((StatusCode::CREATED, Json(volume_json(&v))).into_response())
}

/// `GET /volumes/{name}`.
pub async fn inspect(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let s = state.clone();
    let v = asyncify(move || s.containers.volumes().get(&name)).await?;
    Ok(Json(volume_json(&v)))
}

/// `DELETE /volumes/{name}?force=` → 204; 409 while a container references it.
pub async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let force = Query::parse(raw).bool("force", false);
    let s = state.clone();
    let removed = asyncify(move || {
        let vols = s.containers.volumes();
        let v = vols.get(&name).ok();
        vols.remove(&name, force).map(|()| v)
    })
    .await?;
    if let Some(v) = removed {
        volume_event(&state, "destroy", &v);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /volumes/prune?filters=` → `{"VolumesDeleted": [...], "SpaceReclaimed": n}`.
/// Without `all=true` only anonymous volumes go (API ≥ 1.42); a client of an older API gets
/// every unused volume pruned, as dockerd adds `all=true` for it.
pub async fn prune(
    State(state): State<AppState>,
    version: Option<axum::Extension<super::ApiVersion>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let mut filters = Query::parse(raw).filters()?;
    if version.is_some_and(|v| v.0.older_than(1, 42)) && !filters.contains_key("all") {
        filters.insert("all".into(), vec!["true".into()]);
    }
    let s = state.clone();
    let (names, space) = asyncify(move || s.containers.volumes().prune(&filters)).await?;
    for n in &names {
        let mut attrs = BTreeMap::new();
        attrs.insert("driver".to_string(), "local".to_string());
        state.events.emit("volume", "destroy", n, attrs);
    }
    state.events.emit(
        "volume",
        "prune",
        "",
        BTreeMap::from([("reclaimed".to_string(), space.to_string())]),
    );
    Ok(Json(
        serde_json::to_value(bollard_stubs::models::VolumePruneResponse {
            volumes_deleted: Some(names),
            space_reclaimed: Some(i64::try_from(space).unwrap_or(i64::MAX)),
        })
        .unwrap_or_default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_json_shape() {
        let v = Volume {
            name: "data".into(),
            driver: "local".into(),
            mountpoint: "/var/lib/barge/volumes/data/_data".into(),
            created_at: "2024-05-01T10:00:00Z".into(),
            labels: BTreeMap::from([("a".to_string(), "b".to_string())]),
            options: BTreeMap::new(),
            scope: "local".into(),
        };
        let j = volume_json(&v);
        assert_eq!(j["Name"], "data");
        assert_eq!(j["Labels"], json!({"a": "b"}));
        assert_eq!(j["Options"], Value::Null);
        assert_eq!(j["Mountpoint"], "/var/lib/barge/volumes/data/_data");
        assert_eq!(j["Scope"], "local");
        let b: CreateBody =
            serde_json::from_str(r#"{"Name":"x","DriverOpts":{"type":"tmpfs"},"Labels":{}}"#)
                .unwrap();
        assert_eq!(b.name.as_deref(), Some("x"));
        assert_eq!(b.driver_opts.unwrap()["type"], "tmpfs");
    }
}
