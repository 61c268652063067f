//! `GET /containers/json`: dockerd's `ps` filters (`daemon/list.go`) and the summary rows
//! with Docker's `Status` and `Command` columns.
//!
//! **Invariants:** the list is newest first before `before`/`since`/`limit` cut it; filter
//! keys and `status` values are checked against dockerd's accepted sets (400 otherwise).

use super::*;

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Docker's `Status` column ("Up 5 seconds", "Exited (0) 2 minutes ago", "Created").
fn status_text(c: &Container) -> String {
    let now = chrono::Utc::now().timestamp();
    match c.state.status {
        Status::Running => format!(
            "Up {}{}",
            human_duration(now - unix_of(&c.state.started_at)),
            health_suffix(c)
        ),
        Status::Paused => format!(
            "Up {} (Paused)",
            human_duration(now - unix_of(&c.state.started_at))
        ),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            c.state.exit_code,
            human_duration(now - unix_of(&c.state.finished_at))
        ),
        Status::Exited => {
            if c.state.finished_at.is_empty() || c.state.finished_at == ZERO_TIME {
                format!("Exited ({})", c.state.exit_code)
            } else {
                format!(
                    "Exited ({}) {} ago",
                    c.state.exit_code,
                    human_duration(now - unix_of(&c.state.finished_at))
                )
            }
        }
        Status::Created => "Created".into(),
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
    }
}

/// Docker's health part of the `Status` column: ` (healthy)`, ` (health: starting)`.
fn health_suffix(c: &Container) -> String {
    match c.state.health.as_ref().map(|h| h.status.as_str()) {
        Some(barge_container::STARTING) => " (health: starting)".into(),
        Some(s) if !s.is_empty() && c.config.healthcheck.is_some() => format!(" ({s})"),
        _ => String::new(),
    }
}

fn command_text(c: &Container) -> String {
    let mut parts = vec![c.config.path.clone()];
    parts.extend(c.config.args.iter().cloned());
    parts.join(" ")
}

/// Docker's `ContainerSummary` (built in [`crate::wire`]).
pub(crate) fn summary(c: &Container) -> Value {
    crate::wire::container_summary(c, command_text(c), status_text(c))
}

/// The model behind [`summary`], for bodies that add to it (`/system/df`'s sizes).
pub(crate) fn summary_model(c: &Container) -> bollard_stubs::models::ContainerSummary {
    crate::wire::container_summary_model(c, command_text(c), status_text(c))
}

/// Keys `GET /containers/json` accepts (dockerd's `acceptedPsFilterTags`).
const PS_FILTERS: &[&str] = &[
    "ancestor",
    "before",
    "exited",
    "id",
    "isolation",
    "label",
    "name",
    "status",
    "health",
    "since",
    "volume",
    "network",
    "is-task",
    "publish",
    "expose",
];

/// The container states dockerd accepts in a `status` filter.
const STATES: &[&str] = &[
    "paused",
    "restarting",
    "removing",
    "running",
    "dead",
    "created",
    "exited",
];

/// `GET /containers/json?all=&limit=&filters=`, with dockerd's filter semantics
/// (`daemon/list.go`): values of one key OR (`label` values AND), keys AND; `before`/`since`
/// cut the newest-first list at a container; `status` implies `all`; a `limit` counts
/// stopped containers too.
pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    use crate::api::filters as f;
    let q = Query::parse(raw);
    let filters = q.filters()?;
    f::validate(&filters, PS_FILTERS)?;
    let mut all = q.bool("all", false);
    let limit = q
        .atoi("limit")?
        .filter(|l| *l > 0)
        .map_or(0, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let mut exited = Vec::new();
    for v in f::values(&filters, "exited") {
        exited.push(
            v.parse::<i64>()
                .map_err(|_| f::invalid("exited", Some(v)))?,
        );
    }
    for v in f::values(&filters, "status") {
        if !STATES.contains(&v.as_str()) {
            return Err(f::invalid("status", Some(v)));
        }
        all = true;
    }
    for v in f::values(&filters, "health") {
        if !["starting", "healthy", "unhealthy", "none"].contains(&v.as_str()) {
            return Err(ApiError::bad_request(format!(
                "Unrecognised filter value for health: {v}"
            )));
        }
    }
    let is_task = match f::values(&filters, "is-task") {
        [] => None,
        [v] if v == "true" => Some(true),
        [v] if v == "false" => Some(false),
        vals => return Err(f::invalid("is-task", Some(&vals.join(",")))),
    };
    let publish = port_filter(&filters, "publish")?;
    let expose = port_filter(&filters, "expose")?;
    // Listing reads the engine's records and the network engine's sandboxes (their locks):
    // all of it on the blocking pool.
    let state = state.clone();
    let out = asyncify(move || {
        // An ancestor that names no image matches nothing (dockerd logs and skips it).
        let images: Vec<String> = f::values(&filters, "ancestor")
            .iter()
            .filter_map(|a| state.images.get(a).ok().map(|img| img.id))
            .collect();
        let containers = state.containers.list();
        let find = |key: &str| -> Result<Option<String>, ApiError> {
            let Some(v) = f::values(&filters, key).last() else {
                return Ok(None);
            };
            let v = v.trim_start_matches('/');
            containers
                .iter()
                .find(|c| c.id == v || c.name == v)
                .or_else(|| {
                    let mut hits = containers.iter().filter(|c| c.id.starts_with(v));
                    hits.next().filter(|_| hits.next().is_none())
                })
                .map(|c| Some(c.id.clone()))
                .ok_or_else(|| ApiError::not_found(format!("No such container: {v}")))
        };
        let mut before = find("before")?;
        let since = find("since")?;
        let mut out = Vec::new();
        for c in &containers {
            if let Some(b) = &before {
                if *b == c.id {
                    before = None;
                }
                continue;
            }
            if since.as_deref() == Some(c.id.as_str()) {
                break;
            }
            let running = is_active(&c.state.status);
            if !running && !all && limit == 0 {
                continue;
            }
            if !(f::matches(&filters, "name", &format!("/{}", c.name))
                || f::matches(&filters, "name", &c.name))
                || !f::values(&filters, "id").is_empty()
                    && !f::values(&filters, "id")
                        .iter()
                        .any(|v| c.id.starts_with(v.as_str()))
                || is_task == Some(true)
                || !f::match_kv_list(&filters, "label", &c.config.labels)
                || !f::matches(&filters, "isolation", "default")
            {
                continue;
            }
            if limit > 0 && out.len() == limit {
                break;
            }
            if !exited.is_empty()
                && (running
                    || c.state.started_at.is_empty()
                    || c.state.started_at.starts_with("0001-")
                    || !exited.contains(&c.state.exit_code))
            {
                continue;
            }
            if !f::exact(&filters, "status", c.state.status.as_str()) {
                continue;
            }
            let health = match &c.state.health {
                Some(h) if c.config.healthcheck.is_some() => h.status.as_str(),
                _ => "none",
            };
            if !f::exact(&filters, "health", health) {
                continue;
            }
            let vols = f::values(&filters, "volume");
            if !vols.is_empty()
                && !c.mounts.iter().any(|m| {
                    vols.iter().any(|v| {
                        m.destination == *v
                            || (!m.name.is_empty() && m.name == *v)
                            || (m.name.is_empty() && m.source.as_os_str() == v.as_str())
                    })
                })
            {
                continue;
            }
            if filters.contains_key("ancestor") && !images.contains(&c.image_id) {
                continue;
            }
            let nets = f::values(&filters, "network");
            if !nets.is_empty() {
                let names = barge_container::Containers::network_names(c);
                let hit = names.iter().any(|n| {
                    nets.contains(n)
                        || state
                            .networks
                            .get(n)
                            .is_ok_and(|net| nets.iter().any(|v| net.id.starts_with(v.as_str())))
                });
                if !hit {
                    continue;
                }
            }
            let mut v = summary(c);
            let (ports, nets) = crate::api::networks::summary_parts(&state, c);
            if !publish.is_empty() || !expose.is_empty() {
                let hit = ports.iter().any(|p| {
                    let proto = p.typ.map(|t| t.to_string()).unwrap_or_else(|| "tcp".into());
                    let public = p.public_port.map(|n| (n, proto.clone()));
                    public.is_some_and(|x| publish.contains(&x))
                        || expose.contains(&(p.private_port, proto))
                });
                if !hit {
                    continue;
                }
            }
            v["Ports"] = serde_json::json!(ports);
            v["NetworkSettings"] = serde_json::json!({ "Networks": nets });
            out.push(v);
        }
        Ok::<_, ApiError>(out)
    })
    .await?;
    Ok(Json(Value::Array(out)))
}

/// A `publish`/`expose` filter: `PORT[-PORT][/PROTO]` values as (port, proto) pairs.
fn port_filter(
    filters: &crate::api::filters::FilterMap,
    key: &str,
) -> Result<Vec<(u16, String)>, ApiError> {
    let mut out = Vec::new();
    for v in crate::api::filters::values(filters, key) {
        if v.contains(':') {
            return Err(ApiError::bad_request(format!(
                "filter for '{key}' should not contain ':': {v}"
            )));
        }
        let (range, proto) = v.split_once('/').unwrap_or((v.as_str(), "tcp"));
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        let bad = || ApiError::bad_request(format!("error while looking up for {key} {v}"));
        let a: u16 = a.parse().map_err(|_| bad())?;
        let b: u16 = b.parse().map_err(|_| bad())?;
        for p in a..=b {
            out.push((p, proto.to_string()));
        }
    }
    Ok(out)
}
