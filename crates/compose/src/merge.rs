//! Merging compose files (and `extends` bases) by the spec's rules (13-merge.md, compose-go's
//! `override` package): mappings merge key by key, sequences append, `command`, `entrypoint`
//! and `healthcheck.test` replace, `environment`/`labels`/... merge as mappings whatever their
//! syntax, ports/volumes/secrets/configs/... are de-duplicated by their key (the later entry
//! wins, in the earlier one's place), `!reset` removes a value and `!override` replaces it.

use crate::yaml::{OVERRIDE, RESET};
use serde_json::{Map, Value};

/// A merge failure.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MergeError {
    /// A value whose type cannot be merged at that path (compose-go's wording; `base`/`over` name the kinds).
    #[error("cannot override {path}")]
    Type {
        path: String,
        base: &'static str,
        over: &'static str,
    },
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "sequence",
        Value::Object(_) => "mapping",
    }
}

/// Keys whose list syntax (`K=V`) is turned into a mapping before merging.
const MAPPING_LISTS: &[&[&str]] = &[
    &["services", "*", "environment"],
    &["services", "*", "labels"],
    &["services", "*", "annotations"],
    &["services", "*", "sysctls"],
    &["services", "*", "build", "args"],
    &["services", "*", "build", "labels"],
    &["services", "*", "deploy", "labels"],
    &["networks", "*", "labels"],
    &["volumes", "*", "labels"],
];
/// Keys whose override value replaces the base value.
const REPLACE: &[&[&str]] = &[
    &["services", "*", "command"],
    &["services", "*", "entrypoint"],
    &["services", "*", "healthcheck", "test"],
    &["services", "*", "ulimits", "*"],
];
/// Sequences de-duplicated after merging, with the function giving each entry's key.
type Indexer = fn(&Value) -> String;
const UNIQUE: &[(&[&str], Indexer)] = &[
    (&["services", "*", "ports"], port_key),
    (&["services", "*", "volumes"], volume_key),
    (&["services", "*", "secrets"], secret_key),
    (&["services", "*", "configs"], config_key),
    (&["services", "*", "env_file"], env_file_key),
    (&["services", "*", "expose"], scalar_key),
    (&["services", "*", "cap_add"], scalar_key),
    (&["services", "*", "cap_drop"], scalar_key),
    (&["services", "*", "dns"], scalar_key),
    (&["services", "*", "dns_opt"], scalar_key),
    (&["services", "*", "dns_search"], scalar_key),
    (&["services", "*", "profiles"], scalar_key),
    (&["services", "*", "tmpfs"], scalar_key),
    (&["services", "*", "links"], scalar_key),
    (&["services", "*", "devices"], scalar_key),
    (&["services", "*", "extra_hosts"], scalar_key),
    (&["services", "*", "security_opt"], scalar_key),
    (&["services", "*", "networks", "*", "aliases"], scalar_key),
    (&["services", "*", "build", "cache_from"], scalar_key),
];

fn matches(pattern: &[&str], path: &[String]) -> bool {
    pattern.len() == path.len() && pattern.iter().zip(path).all(|(p, s)| *p == "*" || p == s)
}

fn scalar_key(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn port_key(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let s = |k: &str, d: &str| {
                m.get(k)
                    .filter(|v| !v.is_null())
                    .map(scalar_key)
                    .unwrap_or_else(|| d.to_string())
            };
            format!(
                "{}:{}:{}/{}",
                s("host_ip", "0.0.0.0"),
                s("published", ""),
                s("target", ""),
                s("protocol", "tcp")
            )
        }
        other => scalar_key(other),
    }
}

fn volume_key(v: &Value) -> String {
    match v {
        Value::Object(m) => m.get("target").map(scalar_key).unwrap_or_default(),
        Value::String(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            match parts.len() {
                1 => parts[0].to_string(),
                _ => parts[1].to_string(),
            }
        }
        other => scalar_key(other),
    }
}

fn mount_key(v: &Value, default_dir: &str) -> String {
    let join = |s: &str| {
        if default_dir.is_empty() {
            s.to_string()
        } else {
            format!("{default_dir}/{s}")
        }
    };
    match v {
        Value::Object(m) => match m.get("target").and_then(Value::as_str) {
            Some(t) if t.starts_with('/') || default_dir.is_empty() => t.to_string(),
            Some(t) => join(t),
            None => join(m.get("source").and_then(Value::as_str).unwrap_or_default()),
        },
        Value::String(s) => join(s),
        other => scalar_key(other),
    }
}

fn secret_key(v: &Value) -> String {
    mount_key(v, "/run/secrets")
}
fn config_key(v: &Value) -> String {
    mount_key(v, "")
}
fn env_file_key(v: &Value) -> String {
    match v {
        Value::Object(m) => m.get("path").map(scalar_key).unwrap_or_default(),
        other => scalar_key(other),
    }
}

/// A `K=V` list as a mapping (`K` alone maps to null); mappings are returned unchanged.
pub fn list_to_mapping(v: &Value) -> Value {
    match v {
        Value::Array(items) => {
            let mut m = Map::new();
            for it in items {
                let s = scalar_key(it);
                match s.split_once('=') {
                    Some((k, val)) => m.insert(k.to_string(), Value::String(val.to_string())),
                    None => m.insert(s, Value::Null),
                };
            }
            Value::Object(m)
        }
        other => other.clone(),
    }
}

/// Bring `service`'s keys whose syntaxes differ into one shape so that two files merge.
fn shape_service(svc: &mut Map<String, Value>, path: &[String]) {
    if let Some(Value::String(ctx)) = svc.get("build") {
        let ctx = ctx.clone();
        svc.insert(
            "build".into(),
            Value::Object(Map::from_iter([(
                "context".to_string(),
                Value::String(ctx),
            )])),
        );
    }
    if let Some(Value::Array(list)) = svc.get("depends_on") {
        let mut m = Map::new();
        for d in list {
            let mut e = Map::new();
            e.insert("condition".into(), Value::String("service_started".into()));
            e.insert("required".into(), Value::Bool(true));
            m.insert(scalar_key(d), Value::Object(e));
        }
        svc.insert("depends_on".into(), Value::Object(m));
    }
    if let Some(Value::Array(list)) = svc.get("networks") {
        let m: Map<String, Value> = list.iter().map(|n| (scalar_key(n), Value::Null)).collect();
        svc.insert("networks".into(), Value::Object(m));
    }
    let _ = path;
}

/// Turn markers into their meaning inside a value that is not merged onto anything:
/// `!reset` entries disappear, `!override` wrappers are unwrapped.
pub fn strip_tags(v: Value) -> Value {
    match v {
        Value::Object(mut m) => {
            if m.len() == 1 {
                if let Some(inner) = m.remove(OVERRIDE) {
                    return strip_tags(inner);
                }
                if m.contains_key(RESET) {
                    return Value::Null;
                }
            }
            Value::Object(
                m.into_iter()
                    .filter(|(_, v)| !is_reset(v))
                    .map(|(k, v)| (k, strip_tags(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .filter(|v| !is_reset(v))
                .map(strip_tags)
                .collect(),
        ),
        other => other,
    }
}

fn is_reset(v: &Value) -> bool {
    matches!(v, Value::Object(m) if m.len() == 1 && m.contains_key(RESET))
}
fn override_inner(v: &Value) -> Option<&Value> {
    match v {
        Value::Object(m) if m.len() == 1 => m.get(OVERRIDE),
        _ => None,
    }
}

/// Prepare one loaded file for merging: list-syntax mappings as mappings, build/depends_on/
/// networks in their mapping forms. Markers are kept.
pub fn shape(mut doc: Value) -> Value {
    shape_at(&mut doc, &mut Vec::new());
    doc
}

fn shape_at(v: &mut Value, path: &mut Vec<String>) {
    if path.len() == 2 && path[0] == "services" {
        if let Value::Object(m) = v {
            shape_service(m, path);
        }
    }
    if MAPPING_LISTS.iter().any(|p| matches(p, path)) {
        *v = list_to_mapping(v);
    }
    if let Value::Object(m) = v {
        for (k, child) in m.iter_mut() {
            if k.starts_with('\0') {
                shape_at(child, path);
                continue;
            }
            path.push(k.clone());
            shape_at(child, path);
            path.pop();
        }
    }
}

/// Merge `over` onto `base` (both whole documents, already [`shape`]d); markers in `over` are
/// applied and the result carries none.
pub fn merge(base: Value, over: Value) -> Result<Value, MergeError> {
    let mut path = Vec::new();
    let mut out = merge_at(strip_tags(base), over, &mut path)?;
    dedupe(&mut out, &mut Vec::new());
    Ok(out)
}

fn merge_at(base: Value, over: Value, path: &mut Vec<String>) -> Result<Value, MergeError> {
    if let Some(inner) = override_inner(&over) {
        return Ok(strip_tags(inner.clone()));
    }
    if REPLACE.iter().any(|p| matches(p, path)) {
        return Ok(strip_tags(over));
    }
    // logging: another driver replaces the whole block
    if path.len() == 3 && path[0] == "services" && path[2] == "logging" {
        let d = |v: &Value| v.get("driver").cloned();
        if d(&over).is_some() && d(&base).is_some() && d(&over) != d(&base) {
            return Ok(strip_tags(over));
        }
    }
    match (base, over) {
        (Value::Object(mut b), Value::Object(o)) => {
            for (k, ov) in o {
                if is_reset(&ov) {
                    b.remove(&k);
                    continue;
                }
                path.push(k.clone());
                let merged = match b.remove(&k) {
                    Some(bv) if !bv.is_null() => merge_at(bv, ov, path)?,
                    _ => strip_tags(ov),
                };
                path.pop();
                b.insert(k, merged);
            }
            Ok(Value::Object(b))
        }
        (Value::Array(mut b), Value::Array(o)) => {
            b.extend(
                strip_tags(Value::Array(o))
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
            Ok(Value::Array(b))
        }
        (b @ (Value::Object(_) | Value::Array(_)), o) if !o.is_null() && kind(&b) != kind(&o) => {
            Err(MergeError::Type {
                path: path.join("."),
                base: kind(&b),
                over: kind(&o),
            })
        }
        (b, Value::Null) => Ok(b),
        (_, o) => Ok(strip_tags(o)),
    }
}

fn dedupe(v: &mut Value, path: &mut Vec<String>) {
    if let Value::Array(items) = v {
        if let Some((_, key)) = UNIQUE.iter().find(|(p, _)| matches(p, path)) {
            let mut out: Vec<Value> = Vec::with_capacity(items.len());
            let mut keys: Vec<String> = Vec::new();
            for it in items.drain(..) {
                let k = key(&it);
                match keys.iter().position(|x| *x == k) {
                    Some(i) if !k.is_empty() => out[i] = it,
                    _ => {
                        keys.push(k);
                        out.push(it);
                    }
                }
            }
            *items = out;
        }
        return;
    }
    if let Value::Object(m) = v {
        for (k, child) in m.iter_mut() {
            path.push(k.clone());
            dedupe(child, path);
            path.pop();
        }
    }
}

/// De-duplicate sequences of a single (unmerged) document the way a merge would.
pub fn dedupe_document(v: &mut Value) {
    dedupe(v, &mut Vec::new());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;
    use serde_json::json;

    fn m(a: &str, b: &str) -> Value {
        merge(shape(parse(a, "a").unwrap()), shape(parse(b, "b").unwrap())).unwrap()
    }

    #[test]
    fn spec_rules() {
        let a = "services:\n  web:\n    image: a\n    command: [x, y]\n    environment: [A=1, B=2]\n    ports: ['80:80', '443:443']\n    volumes: ['d:/data', '/x:/y']\n    dns: [1.1.1.1]\n    healthcheck: {test: [CMD, a], interval: 5s}\n    build: .\n    depends_on: [db]\n    networks: [front]\n";
        let b = "services:\n  web:\n    image: b\n    command: [z]\n    environment: {B: 3, C: 4}\n    ports: ['80:80', '8080:80']\n    volumes: ['e:/data']\n    dns: [8.8.8.8]\n    healthcheck: {test: [CMD, b]}\n    build: {dockerfile: D}\n    depends_on: {cache: {condition: service_healthy}}\n    networks: {back: {aliases: [x]}}\n  new:\n    image: n\n";
        let v = m(a, b);
        let web = &v["services"]["web"];
        assert_eq!(web["image"], "b");
        assert_eq!(web["command"], json!(["z"]));
        assert_eq!(web["environment"], json!({"A": "1", "B": 3, "C": 4}));
        assert_eq!(web["ports"], json!(["80:80", "443:443", "8080:80"]));
        assert_eq!(web["volumes"], json!(["e:/data", "/x:/y"]));
        assert_eq!(web["dns"], json!(["1.1.1.1", "8.8.8.8"]));
        assert_eq!(
            web["healthcheck"],
            json!({"test": ["CMD", "b"], "interval": "5s"})
        );
        assert_eq!(web["build"], json!({"context": ".", "dockerfile": "D"}));
        assert_eq!(
            web["depends_on"],
            json!({"db": {"condition": "service_started", "required": true}, "cache": {"condition": "service_healthy"}})
        );
        assert_eq!(
            web["networks"],
            json!({"front": null, "back": {"aliases": ["x"]}})
        );
        assert_eq!(v["services"]["new"], json!({"image": "n"}));
    }

    #[test]
    fn reset_and_override() {
        let a = "services:\n  web:\n    image: a\n    ports: ['80:80']\n    environment: {A: 1, B: 2}\n    labels: {l: 1}\n";
        let b = "services:\n  web:\n    ports: !reset []\n    environment: !override {C: 3}\n    labels: {l: !reset null, m: 2}\n    build: !reset\n";
        let web = &m(a, b)["services"]["web"];
        assert_eq!(
            web,
            &json!({"image": "a", "environment": {"C": 3}, "labels": {"m": 2}})
        );
    }

    #[test]
    fn long_ports_and_secrets_keys() {
        let a = "services:\n  s:\n    ports: [{target: 80, published: '8080'}]\n    secrets: [s1, {source: s2, target: /run/secrets/s2}]\n";
        let b = "services:\n  s:\n    ports: [{target: 80, published: '8080', host_ip: 0.0.0.0, protocol: tcp, mode: host}]\n    secrets: [s2]\n";
        let s = &m(a, b)["services"]["s"];
        assert_eq!(
            s["ports"],
            json!([{"target": 80, "published": "8080", "host_ip": "0.0.0.0", "protocol": "tcp", "mode": "host"}])
        );
        assert_eq!(s["secrets"], json!(["s1", "s2"]));
    }

    #[test]
    fn type_mismatch() {
        let e = merge(
            shape(parse("services: {s: {dns: [a]}}", "a").unwrap()),
            shape(parse("services: {s: {dns: {a: 1}}}", "b").unwrap()),
        );
        assert_eq!(e.unwrap_err().to_string(), "cannot override services.s.dns");
    }
}
