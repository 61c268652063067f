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
    /// An integer parameter as dockerd reads it (`strconv.Atoi`): absent or empty is `None`;
    /// anything else must be a decimal `i64`, else 400 with Go's wording
    /// (`strconv.Atoi: parsing "x": invalid syntax`, `... value out of range`).
    pub fn atoi(&self, key: &str) -> Result<Option<i64>, crate::ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => go_atoi(v).map(Some),
        }
    }

    /// A stop timeout in seconds (`stop`/`restart` `t`, alias `timeout`): negative means wait
    /// forever (as dockerd); a value beyond what a Go `time.Duration` holds (about 292 years)
    /// is a 400, so no deadline computed from it can overflow.
    pub fn stop_timeout(&self) -> Result<Option<i64>, crate::ApiError> {
        let key = if self.get("t").is_some_and(|v| !v.is_empty()) {
            "t"
        } else {
            "timeout"
        };
        let t = self.atoi(key)?;
        if let Some(secs) = t {
            if secs > MAX_DURATION_SECS {
                return Err(out_of_range("strconv.Atoi", self.get(key).unwrap_or("")));
            }
        }
        Ok(t)
    }

    /// `h` and `w` of a resize request (rows, columns). As dockerd, both must be integers
    /// (`strconv.Atoi` wording); a TTY size is 0..=65535, anything else is a 400.
    pub fn tty_size(&self) -> Result<(u16, u16), crate::ApiError> {
        let dim = |k: &str| -> Result<u16, crate::ApiError> {
            let raw = self.get(k).unwrap_or("");
            let v = go_atoi(raw)?;
            u16::try_from(v).map_err(|_| out_of_range("strconv.Atoi", raw))
        };
        Ok((dim("h")?, dim("w")?))
    }

    /// A timestamp parameter (`since`/`until` of logs and events): Unix seconds with an
    /// optional fraction (`1700000000.5`, as the docker CLI sends), or RFC 3339. Absent or
    /// empty is `None`. As dockerd's `timetypes.ParseTimestamps`, a malformed number is
    /// `strconv.ParseInt: parsing "x": invalid syntax`; a time outside what nanoseconds in
    /// an `i64` hold (1677..2262) is `value out of range`; both 400. Returns Unix nanoseconds.
    pub fn timestamp(&self, key: &str) -> Result<Option<i64>, crate::ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => parse_timestamp_nanos(v).map(Some),
        }
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

/// The longest duration a Go `time.Duration` (i64 nanoseconds) holds, in whole seconds.
pub const MAX_DURATION_SECS: i64 = i64::MAX / 1_000_000_000;

fn out_of_range(func: &str, v: &str) -> crate::ApiError {
    crate::ApiError::bad_request(format!("{func}: parsing {v:?}: value out of range"))
}

fn invalid_syntax(func: &str, v: &str) -> crate::ApiError {
    crate::ApiError::bad_request(format!("{func}: parsing {v:?}: invalid syntax"))
}

/// Go's `strconv.ParseInt(v, 10, 64)` with its error wording under `func`.
fn go_parse_i64(func: &str, v: &str) -> Result<i64, crate::ApiError> {
    use std::num::IntErrorKind;
    v.parse::<i64>().map_err(|e| match e.kind() {
        IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => out_of_range(func, v),
        _ => invalid_syntax(func, v),
    })
}

/// Go's `strconv.Atoi` (64-bit), with its error wording.
pub fn go_atoi(v: &str) -> Result<i64, crate::ApiError> {
    go_parse_i64("strconv.Atoi", v)
}

/// `SECONDS[.FRACTION]` (dockerd's `timetypes.ParseTimestamps`) or RFC 3339 → Unix
/// nanoseconds; 400 when malformed or out of the i64 nanosecond range.
pub fn parse_timestamp_nanos(v: &str) -> Result<i64, crate::ApiError> {
    let looks_numeric = v
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+'))
        && v.bytes().skip(1).all(|b| b != b'-' && b != b'+');
    if !looks_numeric {
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
            return t
                .timestamp_nanos_opt()
                .ok_or_else(|| out_of_range("strconv.ParseInt", v));
        }
    }
    let (secs, frac) = match v.split_once('.') {
        Some((s, f)) => (s, Some(f)),
        None => (v, None),
    };
    let s = go_parse_i64("strconv.ParseInt", secs)?;
    let mut nanos: i64 = 0;
    if let Some(f) = frac {
        if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid_syntax("strconv.ParseInt", f));
        }
        // Nanoseconds: the first nine digits, right-padded.
        let digits: String = f.chars().chain(std::iter::repeat('0')).take(9).collect();
        nanos = digits.parse::<i64>().unwrap_or(0);
        if s < 0 || secs.starts_with('-') {
            nanos = -nanos;
        }
    }
    s.checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(nanos))
        .ok_or_else(|| out_of_range("strconv.ParseInt", v))
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
    fn atoi_like_go() {
        let q = Query::parse(Some(
            "a=12&b=x&c=99999999999999999999&d=&e=-3&f=%2B4".into(),
        ));
        assert_eq!(q.atoi("a").unwrap(), Some(12));
        assert_eq!(q.atoi("d").unwrap(), None);
        assert_eq!(q.atoi("missing").unwrap(), None);
        assert_eq!(q.atoi("e").unwrap(), Some(-3));
        assert_eq!(q.atoi("f").unwrap(), Some(4));
        let e = q.atoi("b").unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(e.message, r#"strconv.Atoi: parsing "x": invalid syntax"#);
        let e = q.atoi("c").unwrap_err();
        assert_eq!(
            e.message,
            r#"strconv.Atoi: parsing "99999999999999999999": value out of range"#
        );
    }

    #[test]
    fn stop_timeout_is_range_checked() {
        let t = |raw: &str| Query::parse(Some(raw.into())).stop_timeout();
        assert_eq!(t("t=5").unwrap(), Some(5));
        assert_eq!(t("t=-1").unwrap(), Some(-1));
        assert_eq!(t("timeout=7").unwrap(), Some(7));
        assert_eq!(t("").unwrap(), None);
        assert_eq!(
            t(&format!("t={MAX_DURATION_SECS}")).unwrap(),
            Some(MAX_DURATION_SECS)
        );
        // The request that panicked a worker ("overflow when adding duration to instant").
        let e = t("t=9223372036854775807").unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(
            e.message,
            r#"strconv.Atoi: parsing "9223372036854775807": value out of range"#
        );
        assert_eq!(
            t("t=abc").unwrap_err().message,
            r#"strconv.Atoi: parsing "abc": invalid syntax"#
        );
        assert!(t("t=99999999999999999999").is_err());
    }

    #[test]
    fn tty_size_is_range_checked() {
        let sz = |raw: &str| Query::parse(Some(raw.into())).tty_size();
        assert_eq!(sz("h=24&w=80").unwrap(), (24, 80));
        assert_eq!(sz("h=0&w=65535").unwrap(), (0, 65535));
        for bad in [
            "h=-1&w=80",
            "h=24&w=65536",
            "h=x&w=1",
            "w=80",
            "h=1&w=9223372036854775808",
        ] {
            let e = sz(bad).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{bad}");
        }
        assert_eq!(
            sz("h=&w=1").unwrap_err().message,
            r#"strconv.Atoi: parsing "": invalid syntax"#
        );
    }

    #[test]
    fn timestamps_like_dockerd() {
        let ts = |v: &str| parse_timestamp_nanos(v);
        assert_eq!(ts("1700000000").unwrap(), 1_700_000_000_000_000_000);
        assert_eq!(ts("1700000000.5").unwrap(), 1_700_000_000_500_000_000);
        assert_eq!(
            ts("1700000000.000000001").unwrap(),
            1_700_000_000_000_000_001
        );
        assert_eq!(ts("0").unwrap(), 0);
        assert_eq!(
            ts("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            ts("abc").unwrap_err().message,
            r#"strconv.ParseInt: parsing "abc": invalid syntax"#
        );
        assert_eq!(
            ts("9223372036854775807").unwrap_err().message,
            r#"strconv.ParseInt: parsing "9223372036854775807": value out of range"#
        );
        assert!(ts("1.x").is_err());
        assert!(ts("99999999999999999999999").is_err());
        assert!(ts("-9223372036854775808").is_err());
        let q = Query::parse(Some("since=&until=12".into()));
        assert_eq!(q.timestamp("since").unwrap(), None);
        assert_eq!(q.timestamp("until").unwrap(), Some(12_000_000_000));
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
