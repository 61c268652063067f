//! Docker Engine API routes. Paths and shapes follow moby's `api/swagger.yaml`
//! (<https://docs.docker.com/reference/api/engine/version/v1.47/>).

pub mod build;
pub mod containers;
pub mod exec;
pub mod filters;
pub mod fsops;
pub mod images;
pub mod lifecycle;
pub mod networks;
pub mod system;
pub mod volumes;

use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

/// The API version a request named in its path (`/v1.41/...`), set before routing; absent
/// for unversioned paths (the current version).
#[derive(Debug, Clone)]
pub struct ApiVersion(pub String);

impl ApiVersion {
    /// True when this version is older than `major.minor`.
    pub fn older_than(&self, major: u32, minor: u32) -> bool {
        let mut it = self.0.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (a, b) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
        (a, b) < (major, minor)
    }
}

/// API version barge advertises (`Api-Version`), and the oldest it accepts.
pub const API_VERSION: &str = "1.47";
pub const MIN_API_VERSION: &str = "1.24";

/// All routes, without the `/v1.xx` prefix (stripped before routing).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/events", get(system::events))
        .route("/containers/create", post(containers::create))
        .route("/containers/json", get(containers::list))
        .route("/containers/prune", post(containers::prune))
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/start", post(containers::start))
        .route("/containers/{id}/stop", post(containers::stop))
        .route("/containers/{id}/kill", post(containers::kill))
        .route("/containers/{id}/restart", post(containers::restart))
        .route("/containers/{id}/wait", post(containers::wait))
        .route("/containers/{id}/attach", post(containers::attach))
        .route("/containers/{id}/resize", post(containers::resize))
        .route("/containers/{id}/logs", get(containers::logs))
        .route("/containers/{id}/top", get(containers::top))
        .route(
            "/containers/{id}/archive",
            get(fsops::archive_get)
                .head(fsops::archive_head)
                .put(fsops::archive_put),
        )
        .route("/containers/{id}/changes", get(fsops::changes))
        .route("/containers/{id}/export", get(fsops::export))
        .route("/commit", post(fsops::commit))
        .route("/system/df", get(fsops::system_df))
        .route("/containers/{id}/pause", post(lifecycle::pause))
        .route("/containers/{id}/unpause", post(lifecycle::unpause))
        .route("/containers/{id}/update", post(lifecycle::update))
        .route("/containers/{id}/rename", post(lifecycle::rename))
        .route("/containers/{id}/stats", get(lifecycle::stats))
        .route("/containers/{id}/exec", post(exec::create))
        .route(
            "/containers/{id}",
            axum::routing::delete(containers::remove),
        )
        .route(
            "/containers/{id}/{link}",
            axum::routing::delete(containers::remove_link),
        )
        .route("/exec/{id}/start", post(exec::start))
        .route("/exec/{id}/resize", post(exec::resize))
        .route("/exec/{id}/json", get(exec::inspect))
        .route("/volumes", get(volumes::list))
        .route("/volumes/create", post(volumes::create))
        .route("/volumes/prune", post(volumes::prune))
        .route(
            "/volumes/{name}",
            get(volumes::inspect).delete(volumes::remove),
        )
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/networks/{id}/connect", post(networks::connect))
        .route("/networks/{id}/disconnect", post(networks::disconnect))
        .route("/build", post(build::build))
        .route("/build/prune", post(build::prune))
        .route("/images/json", get(images::list))
        .route("/auth", post(images::auth))
        .route("/distribution/{*rest}", get(images::distribution))
        .route("/images/load", post(images::load))
        .route("/images/get", get(images::save_many))
        .route("/images/create", post(images::create))
        .route("/images/prune", post(images::prune))
        .route(
            "/images/{*rest}",
            get(images::get_dispatch)
                .post(images::post_dispatch)
                .delete(images::remove),
        )
        .fallback(system::not_found)
        .with_state(state)
}

/// Query parameters in order, repeated keys kept (`names=a&names=b`).
#[derive(Debug, Default, Clone)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<String>) -> Query {
        let mut out = Vec::new();
        if let Some(raw) = raw {
            for part in raw.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = part.split_once('=').unwrap_or((part, ""));
                let dec = |s: &str| {
                    let s = s.replace('+', " ");
                    urlencoding::decode(&s).map(|c| c.into_owned()).unwrap_or(s)
                };
                out.push((dec(k), dec(v)));
            }
        }
        Query(out)
    }
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }
    /// Docker's boolean query values: `1`, `true`, `True` are true; absent is `default`.
    pub fn bool(&self, key: &str, default: bool) -> bool {
        match self.get(key) {
            None => default,
            Some(v) => matches!(v, "1" | "true" | "True" | "TRUE" | "yes"),
        }
    }
    pub fn int(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(|v| v.parse().ok())
    }
    /// `h` and `w` of a resize request (rows, columns), clamped to what a TTY can take.
    pub fn tty_size(&self) -> (u16, u16) {
        let dim = |k: &str| self.int(k).unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
        (dim("h"), dim("w"))
    }
    /// The `filters` parameter: `{"key": ["v1"]}` or the old `{"key": {"v1": true}}`.
    pub fn filters(
        &self,
    ) -> Result<std::collections::BTreeMap<String, Vec<String>>, crate::ApiError> {
        let mut out = std::collections::BTreeMap::new();
        let Some(raw) = self.get("filters") else {
            return Ok(out);
        };
        if raw.is_empty() {
            return Ok(out);
        }
        let v: serde_json::Value = serde_json::from_str(raw)
            .map_err(|e| crate::ApiError::bad_request(format!("invalid filters {raw:?}: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| crate::ApiError::bad_request("invalid filters: not an object"))?;
        for (k, vals) in obj {
            let list = match vals {
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect(),
                serde_json::Value::Object(o) => o.keys().cloned().collect(),
                serde_json::Value::String(s) => vec![s.clone()],
                _ => Vec::new(),
            };
            out.insert(k.clone(), list);
        }
        Ok(out)
    }
}

/// Docker's go-units `HumanDuration` ("Less than a second", "5 seconds", "About a minute", ...).
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let minutes = s / 60;
    let hours = s / 3600;
    if s < 1 {
        "Less than a second".into()
    } else if s == 1 {
        "1 second".into()
    } else if s < 60 {
        format!("{s} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if (hours as f64 + 0.5) as i64 == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", hours / 24 / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keeps_repeated_keys_and_decodes() {
        let q = Query::parse(Some("names=a%3A1&names=b&all=1&x=a+b".into()));
        assert_eq!(q.all("names"), vec!["a:1", "b"]);
        assert!(q.bool("all", false));
        assert_eq!(q.get("x"), Some("a b"));
    }

    #[test]
    fn filters_both_shapes() {
        let q = Query::parse(Some(format!(
            "filters={}",
            urlencoding::encode(r#"{"status":["running"],"label":{"a=b":true}}"#)
        )));
        let f = q.filters().unwrap();
        assert_eq!(f["status"], vec!["running"]);
        assert_eq!(f["label"], vec!["a=b"]);
    }

    #[test]
    fn human_durations_like_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(70), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3700), "About an hour");
        assert_eq!(human_duration(5 * 3600), "5 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }
}
