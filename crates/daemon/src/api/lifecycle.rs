//! `/containers/{id}/pause|unpause|update|rename|stats`.

use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use barge_container::{Container, StatsSample, Status, UpdateOptions};
use serde::Deserialize;
use serde_json::{json, Value};

use super::containers::{get_container, is_active};
use super::Query;
use crate::state::AppState;
use crate::stream::channel_response;
use crate::{asyncify, ApiError};

/// `POST /containers/{id}/pause` → 204; 409 if not running or already paused.
pub async fn pause(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let c = get_container(&state, &id).await?;
    match c.state.status {
        Status::Running => {}
        Status::Paused => {
            return Err(ApiError::conflict(format!(
                "Container {} is already paused",
                c.id
            )))
        }
        _ => {
            return Err(ApiError::conflict(format!(
                "Container {} is not running",
                c.id
            )))
        }
    }
    let s = state.clone();
    let cid = c.id.clone();
    asyncify(move || s.containers.pause(&cid)).await?;
    state.container_event("pause", &c, &[]);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /containers/{id}/unpause` → 204; 409 if not paused.
pub async fn unpause(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let c = get_container(&state, &id).await?;
    if c.state.status != Status::Paused {
        return Err(ApiError::conflict(format!(
            "Container {} is not paused",
            c.id
        )));
    }
    let s = state.clone();
    let cid = c.id.clone();
    asyncify(move || s.containers.unpause(&cid)).await?;
    state.container_event("unpause", &c, &[]);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /containers/{id}/rename?name=` → 204.
pub async fn rename(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    let name = q
        .get("name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("Neither old nor new names may be empty"))?
        .to_string();
    let old = get_container(&state, &id).await?;
    let s = state.clone();
    let cid = old.id.clone();
    let c = asyncify(move || s.containers.rename(&cid, &name)).await?;
    state.container_event("rename", &c, &[("oldName", format!("/{}", old.name))]);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Docker's `ContainerUpdate` body: `Resources` fields plus `RestartPolicy`. Zero means
/// "unchanged" (as dockerd), except `PidsLimit` (present = set; 0 or -1 = unlimited).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateBody {
    memory: Option<i64>,
    memory_swap: Option<i64>,
    nano_cpus: Option<i64>,
    cpu_shares: Option<i64>,
    cpu_quota: Option<i64>,
    cpu_period: Option<i64>,
    pids_limit: Option<i64>,
    restart_policy: Option<RestartPolicyBody>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RestartPolicyBody {
    name: Option<String>,
    maximum_retry_count: Option<i64>,
}

/// `CpuQuota`/`CpuPeriod` (microseconds) as nano CPUs, range-checked with dockerd's
/// messages (period 1 ms..1 s, quota at least 1 ms; 0 = unset); `None` unless both are set.
pub(crate) fn nano_cpus_of_quota(
    quota: Option<i64>,
    period: Option<i64>,
) -> Result<Option<i64>, ApiError> {
    let (q, p) = (quota.unwrap_or(0), period.unwrap_or(0));
    if p != 0 && !(1000..=1_000_000).contains(&p) {
        return Err(ApiError::bad_request(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
        ));
    }
    if q != 0 && q < 1000 && q != -1 {
        return Err(ApiError::bad_request(
            "CPU cfs quota can not be less than 1ms (i.e. 1000)",
        ));
    }
    if q <= 0 || p <= 0 {
        return Ok(None);
    }
    let nano = i128::from(q) * 1_000_000_000 / i128::from(p);
    i64::try_from(nano).map(Some).map_err(|_| {
        ApiError::bad_request(format!(
            "invalid CpuQuota {q}: more than {} CPUs",
            i64::MAX / 1_000_000_000
        ))
    })
}

impl UpdateBody {
    pub fn into_options(self) -> Result<UpdateOptions, ApiError> {
        let nz = |v: Option<i64>| v.filter(|v| *v != 0);
        let mut nano = nz(self.nano_cpus);
        let from_quota = nano_cpus_of_quota(self.cpu_quota, self.cpu_period)?;
        if nano.is_none() {
            nano = from_quota;
        }
        if nz(self.nano_cpus).is_some() && nz(self.cpu_quota).is_some() {
            return Err(ApiError::bad_request(
                "Conflicting options: Nano CPUs and CPU Period cannot both be set",
            ));
        }
        Ok(UpdateOptions {
            memory: nz(self.memory),
            memory_swap: nz(self.memory_swap),
            nano_cpus: nano,
            cpu_shares: nz(self.cpu_shares),
            pids_limit: self.pids_limit,
            restart_policy: self.restart_policy.and_then(|r| {
                Some((
                    r.name.filter(|n| !n.is_empty())?,
                    r.maximum_retry_count.unwrap_or(0),
                ))
            }),
        })
    }
}

/// `POST /containers/{id}/update` → `{"Warnings": [...]}`.
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let parsed: UpdateBody = if body.is_empty() {
        UpdateBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid update JSON: {e}")))?
    };
    let opts = parsed.into_options()?;
    let c = get_container(&state, &id).await?;
    let s = state.clone();
    let cid = c.id.clone();
    let warnings = asyncify(move || s.containers.update(&cid, &opts)).await?;
    state.container_event("update", &c, &[]);
    Ok(Json(
        serde_json::to_value(bollard_stubs::models::ContainerUpdateResponse {
            warnings: Some(warnings),
        })
        .unwrap_or_default(),
    ))
}

/// Docker's `ContainerStatsResponse` for a sample and the one before it (built in
/// [`crate::wire`]).
pub fn stats_json(c: &Container, cur: &StatsSample, prev: Option<&StatsSample>) -> Value {
    crate::wire::container_stats(c, cur, prev)
}

/// Adds Docker's `networks` (per container interface: `rx_bytes`, `tx_packets`, ...) to a
/// stats object, from the container's endpoints (absent without a network of its own).
fn with_networks(state: &AppState, c: &Container, mut v: Value) -> Value {
    if !is_active(&c.state.status) {
        return v;
    }
    let stats = state.networks.interface_stats(&c.id);
    if !stats.is_empty() {
        let m: serde_json::Map<String, Value> = stats
            .into_iter()
            .map(|(name, s)| (name, serde_json::to_value(s).unwrap_or_default()))
            .collect();
        v["networks"] = Value::Object(m);
    }
    v
}

/// `GET /containers/{id}/stats?stream=&one-shot=`: one JSON object per second while
/// `stream` (default), else one (after priming `precpu_stats` for a second, as dockerd,
/// unless `one-shot`).
pub async fn stats(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    let stream = q.bool("stream", true);
    let one_shot = q.bool("one-shot", false);
    if one_shot && stream {
        return Err(ApiError::bad_request(
            "cannot have stream=true and one-shot=true",
        ));
    }
    let c = get_container(&state, &id).await?;
    let sample = |state: AppState, id: String| async move {
        let s = state.clone();
        // Interface counters come from the network engine: on the blocking pool as well.
        let r = asyncify(move || {
            let c = s.containers.get(&id)?;
            let sample = s.containers.stats(&c.id)?;
            let nets = with_networks(&s, &c, json!({}));
            Ok::<_, ApiError>((c, sample, nets))
        })
        .await;
        r
    };
    let merge = |mut v: Value, nets: Value| {
        if let Some(n) = nets.get("networks") {
            v["networks"] = n.clone();
        }
        v
    };
    if !stream {
        let (c1, first, nets) = sample(state.clone(), c.id.clone()).await?;
        if one_shot || !is_active(&c1.state.status) {
            let v = merge(stats_json(&c1, &first, None), nets);
            return Ok(Json(v).into_response());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (c2, second, nets) = sample(state.clone(), c.id.clone()).await?;
        let v = merge(stats_json(&c2, &second, Some(&first)), nets);
        return Ok(Json(v).into_response());
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    let cid = c.id.clone();
    crate::spawn_logged("stream", async move {
        let mut prev: Option<StatsSample> = None;
        loop {
            let Ok((c, cur, nets)) = sample(state.clone(), cid.clone()).await else {
                return;
            };
            let body = merge(stats_json(&c, &cur, prev.as_ref()), nets);
            if tx
                .send(Ok(bytes::Bytes::from(format!("{body}\n"))))
                .await
                .is_err()
            {
                return;
            }
            prev = Some(cur);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = tx.closed() => return,
            }
        }
    });
    Ok(channel_response("application/json", rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_body_zero_is_unchanged() {
        let b: UpdateBody = serde_json::from_str(
            r#"{"Memory":67108864,"MemorySwap":0,"CpuShares":0,"NanoCpus":0,"PidsLimit":50,
                "RestartPolicy":{"Name":"on-failure","MaximumRetryCount":2}}"#,
        )
        .unwrap();
        let o = b.into_options().unwrap();
        assert_eq!(o.memory, Some(64 << 20));
        assert_eq!(o.memory_swap, None);
        assert_eq!(o.nano_cpus, None);
        assert_eq!(o.pids_limit, Some(50));
        assert_eq!(o.restart_policy, Some(("on-failure".into(), 2)));
        let b: UpdateBody = serde_json::from_str(
            r#"{"CpuQuota":50000,"CpuPeriod":100000,"RestartPolicy":{"Name":""}}"#,
        )
        .unwrap();
        let o = b.into_options().unwrap();
        assert_eq!(o.nano_cpus, Some(500_000_000));
        assert_eq!(o.restart_policy, None);
    }

    #[test]
    fn cpu_quota_is_range_checked() {
        assert_eq!(
            nano_cpus_of_quota(Some(50_000), Some(100_000)).unwrap(),
            Some(500_000_000)
        );
        assert_eq!(nano_cpus_of_quota(None, None).unwrap(), None);
        assert_eq!(nano_cpus_of_quota(Some(-1), Some(100_000)).unwrap(), None);
        // Used to overflow i64 (a panic in debug builds, garbage in release).
        let e = nano_cpus_of_quota(Some(i64::MAX), Some(1000)).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(nano_cpus_of_quota(Some(50_000), Some(10)).is_err());
        assert!(nano_cpus_of_quota(Some(50_000), Some(2_000_000)).is_err());
        assert!(nano_cpus_of_quota(Some(10), Some(100_000)).is_err());
        let b: UpdateBody =
            serde_json::from_str(r#"{"CpuQuota":9223372036854775807,"CpuPeriod":1000}"#).unwrap();
        assert!(b.into_options().is_err());
    }

    #[test]
    fn stats_shape() {
        let c = Container {
            id: "abc".into(),
            name: "web".into(),
            state: barge_container::State {
                status: Status::Running,
                ..Default::default()
            },
            ..Default::default()
        };
        let s = StatsSample {
            read: "2024-01-01T00:00:01Z".into(),
            cpu_total: 200,
            system_cpu: 2000,
            online_cpus: 2,
            memory_usage: 1 << 20,
            memory_limit: 1 << 30,
            pids_current: 3,
            blkio_bytes: vec![(8, 0, "Read".into(), 4096)],
            ..Default::default()
        };
        let p = StatsSample {
            read: "2024-01-01T00:00:00Z".into(),
            cpu_total: 100,
            system_cpu: 1000,
            ..Default::default()
        };
        let v = stats_json(&c, &s, Some(&p));
        assert_eq!(v["name"], "/web");
        assert_eq!(v["cpu_stats"]["cpu_usage"]["total_usage"], 200);
        assert_eq!(v["precpu_stats"]["system_cpu_usage"], 1000);
        assert_eq!(v["preread"], "2024-01-01T00:00:00Z");
        assert_eq!(v["memory_stats"]["limit"], 1 << 30);
        assert_eq!(v["pids_stats"]["current"], 3);
        assert_eq!(
            v["blkio_stats"]["io_service_bytes_recursive"][0]["op"],
            "Read"
        );
        assert!(v.get("networks").is_none());
        let stopped = Container {
            state: Default::default(),
            ..c
        };
        let v = stats_json(&stopped, &s, None);
        assert_eq!(v["read"], crate::wire::ZERO_TIME);
        assert_eq!(v["memory_stats"], json!({}));
        assert_eq!(v["pids_stats"], json!({}));
        assert_eq!(v["blkio_stats"]["io_service_bytes_recursive"], Value::Null);
        // The wire model's types: every body deserialises into bollard's.
        serde_json::from_value::<bollard_stubs::models::ContainerStatsResponse>(v).unwrap();
    }
}
