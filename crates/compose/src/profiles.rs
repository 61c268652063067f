//! Profiles: services without `profiles` are always enabled; others only when one of their
//! profiles is active (`--profile`, `COMPOSE_PROFILES`, or `*` for all). A service named
//! explicitly on the command line activates its own profiles.

use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// A profile selection failure.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProfileError {
    /// A service named on the command line that the project does not define.
    #[error("no such service: {0}")]
    NoSuchService(String),
}

/// The active profiles from `--profile` values, else `COMPOSE_PROFILES` (comma-separated).
pub fn active(flags: &[String], compose_profiles: Option<&str>) -> Vec<String> {
    if !flags.is_empty() {
        return flags.to_vec();
    }
    compose_profiles
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn profiles_of(svc: &Value) -> Vec<String> {
    svc.get("profiles")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Enabled services, disabled services, and the effective active profiles.
pub type Selection = (Map<String, Value>, Map<String, Value>, Vec<String>);

/// Split `services` into enabled and disabled services.
pub fn select(
    services: Map<String, Value>,
    profiles: &[String],
    named: &[String],
) -> Result<Selection, ProfileError> {
    let mut active: BTreeSet<String> = profiles.iter().cloned().collect();
    for n in named {
        let svc = services
            .get(n)
            .ok_or_else(|| ProfileError::NoSuchService(n.clone()))?;
        active.extend(profiles_of(svc));
    }
    let all = active.contains("*");
    let (mut on, mut off) = (Map::new(), Map::new());
    for (name, svc) in services {
        let p = profiles_of(&svc);
        if p.is_empty() || all || p.iter().any(|x| active.contains(x)) {
            on.insert(name, svc);
        } else {
            off.insert(name, svc);
        }
    }
    Ok((on, off, active.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn services() -> Map<String, Value> {
        json!({"web": {}, "dbg": {"profiles": ["debug"]}, "tool": {"profiles": ["tools", "x"]}})
            .as_object()
            .cloned()
            .unwrap()
    }

    #[test]
    fn selection() {
        let keys = |m: &Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
        let (on, off, _) = select(services(), &[], &[]).unwrap();
        assert_eq!(
            (keys(&on), keys(&off)),
            (
                vec!["web".to_string()],
                vec!["dbg".to_string(), "tool".to_string()]
            )
        );
        let (on, _, _) = select(services(), &active(&[], Some("x, debug")), &[]).unwrap();
        assert_eq!(keys(&on), ["dbg", "tool", "web"]);
        let (on, _, p) = select(services(), &[], &["tool".into()]).unwrap();
        assert_eq!(
            (keys(&on), p),
            (
                vec!["tool".to_string(), "web".to_string()],
                vec!["tools".to_string(), "x".to_string()]
            )
        );
        let (on, _, _) = select(services(), &["*".into()], &[]).unwrap();
        assert_eq!(on.len(), 3);
        assert_eq!(
            select(services(), &[], &["nope".into()])
                .unwrap_err()
                .to_string(),
            "no such service: nope"
        );
        assert_eq!(active(&["a".into()], Some("b")), ["a"]);
    }
}
