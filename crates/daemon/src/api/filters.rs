//! dockerd's `filters.Args` semantics for list endpoints (`containers/json`, `images/json`,
//! `networks`, `volumes`, `events`), as moby's `api/types/filters` implements them:
//!
//! - a key with several values matches when **any** value matches (`name=a&name=b`), except
//!   `label`, where **all** values must match (`MatchKVList`: `label=a=1` and `label=b` select
//!   only objects carrying both labels — docker-compose relies on this to tell services apart);
//! - `Match` is an exact comparison or an unanchored Go regular expression (`name=^web`);
//! - unknown keys are refused with `invalid filter 'KEY'` (400).

use std::collections::BTreeMap;

use crate::ApiError;

/// Parsed `filters` query parameter: key → values.
pub type FilterMap = BTreeMap<String, Vec<String>>;

/// 400 `invalid filter 'KEY'` for a key outside `accepted` (dockerd's `Args.Validate`).
pub fn validate(filters: &FilterMap, accepted: &[&str]) -> Result<(), ApiError> {
    match filters.keys().find(|k| !accepted.contains(&k.as_str())) {
        Some(k) => Err(invalid(k, None)),
        None => Ok(()),
    }
}

/// dockerd's `invalidFilter` error text: `invalid filter 'KEY'` or `invalid filter 'KEY=VALUE'`.
pub fn invalid(key: &str, value: Option<&str>) -> ApiError {
    match value {
        Some(v) => ApiError::bad_request(format!("invalid filter '{key}={v}'")),
        None => ApiError::bad_request(format!("invalid filter '{key}'")),
    }
}

/// The values of `key` (empty when absent).
pub fn values<'a>(filters: &'a FilterMap, key: &str) -> &'a [String] {
    filters.get(key).map(Vec::as_slice).unwrap_or(&[])
}

/// `ExactMatch`: true when `key` has no values or one of them equals `source`.
pub fn exact(filters: &FilterMap, key: &str, source: &str) -> bool {
    let vals = values(filters, key);
    vals.is_empty() || vals.iter().any(|v| v == source)
}

/// `Match`: true when `key` has no values, or one equals `source` or, read as an unanchored
/// regular expression, matches it (an invalid expression matches nothing).
pub fn matches(filters: &FilterMap, key: &str, source: &str) -> bool {
    let vals = values(filters, key);
    vals.is_empty()
        || vals.iter().any(|v| {
            v == source
                || regex::Regex::new(v)
                    .map(|re| re.is_match(source))
                    .unwrap_or(false)
        })
}

/// `MatchKVList`: true when `key` has no values, or **every** value (`K` or `K=V`) is found in
/// `labels`.
pub fn match_kv_list(filters: &FilterMap, key: &str, labels: &BTreeMap<String, String>) -> bool {
    let vals = values(filters, key);
    if vals.is_empty() {
        return true;
    }
    vals.iter().all(|f| match f.split_once('=') {
        Some((k, v)) => labels.get(k).map(String::as_str) == Some(v),
        None => labels.contains_key(f.as_str()),
    })
}

/// A boolean filter (`dangling`): `true`/`1` or `false`/`0`, else `invalid filter 'KEY=V'`.
/// `None` when absent; several values must agree.
pub fn bool_value(filters: &FilterMap, key: &str) -> Result<Option<bool>, ApiError> {
    let mut out = None;
    for v in values(filters, key) {
        let b = match v.to_ascii_lowercase().as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(invalid(key, Some(v))),
        };
        if out.is_some_and(|o| o != b) {
            return Err(invalid(key, Some(v)));
        }
        out = Some(b);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(pairs: &[(&str, &str)]) -> FilterMap {
        let mut m = FilterMap::new();
        for (k, v) in pairs {
            m.entry(k.to_string()).or_default().push(v.to_string());
        }
        m
    }

    #[test]
    fn labels_are_anded_other_keys_ored() {
        let labels = BTreeMap::from([
            ("com.docker.compose.project".to_string(), "p".to_string()),
            ("com.docker.compose.service".to_string(), "web".to_string()),
        ]);
        let both = f(&[
            ("label", "com.docker.compose.project=p"),
            ("label", "com.docker.compose.service=web"),
        ]);
        assert!(match_kv_list(&both, "label", &labels));
        let other = f(&[
            ("label", "com.docker.compose.project=p"),
            ("label", "com.docker.compose.service=db"),
        ]);
        assert!(!match_kv_list(&other, "label", &labels));
        assert!(match_kv_list(
            &f(&[("label", "com.docker.compose.project")]),
            "label",
            &labels
        ));
        assert!(!match_kv_list(
            &f(&[("label", "x")]),
            "label",
            &BTreeMap::new()
        ));
        assert!(match_kv_list(&f(&[]), "label", &BTreeMap::new()));
        let names = f(&[("name", "web"), ("name", "db")]);
        assert!(matches(&names, "name", "db-1"));
        assert!(matches(&f(&[("name", "^we")]), "name", "web"));
        assert!(!matches(&f(&[("name", "^eb")]), "name", "web"));
        assert!(!matches(&f(&[("name", "(")]), "name", "web"));
        assert!(exact(&f(&[]), "driver", "bridge"));
        assert!(!exact(&f(&[("driver", "brid")]), "driver", "bridge"));
    }

    #[test]
    fn validation_and_booleans() {
        assert_eq!(
            validate(&f(&[("bogus", "1")]), &["name"])
                .unwrap_err()
                .message,
            "invalid filter 'bogus'"
        );
        assert!(validate(&f(&[("name", "1")]), &["name"]).is_ok());
        assert_eq!(
            bool_value(&f(&[("dangling", "1")]), "dangling").unwrap(),
            Some(true)
        );
        assert_eq!(bool_value(&f(&[]), "dangling").unwrap(), None);
        assert_eq!(
            bool_value(&f(&[("dangling", "maybe")]), "dangling")
                .unwrap_err()
                .message,
            "invalid filter 'dangling=maybe'"
        );
    }
}
