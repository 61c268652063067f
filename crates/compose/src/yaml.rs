//! YAML into `serde_json::Value`, keeping compose's `!reset` / `!override` tags.
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Number, Value};
use serde_saphyr::Tagged;
use std::fmt;

/// Key of the single-entry object that marks a `!reset` node inside a loaded [`Value`].
pub const RESET: &str = "\u{0}!reset";
/// Key of the single-entry object that marks an `!override` node inside a loaded [`Value`].
pub const OVERRIDE: &str = "\u{0}!override";

struct Node(Value);
struct Inner(Value);

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Tagged(Inner(v), tag) = Tagged::<Inner>::deserialize(d)?;
        Ok(Node(match tag.as_deref() {
            Some("!reset") => {
                let mut m = Map::new();
                m.insert(RESET.to_string(), v);
                Value::Object(m)
            }
            Some("!override") => {
                let mut m = Map::new();
                m.insert(OVERRIDE.to_string(), v);
                Value::Object(m)
            }
            _ => v,
        }))
    }
}

impl<'de> Deserialize<'de> for Inner {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(InnerVisitor).map(Inner)
    }
}

struct InnerVisitor;

impl<'de> Visitor<'de> for InnerVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(v.to_string())))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Node::deserialize(d).map(|n| n.0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Node(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<KeyString>()? {
            let Node(v) = map.next_value()?;
            out.insert(k.0, v);
        }
        Ok(Value::Object(out))
    }
}

struct KeyString(String);

impl<'de> Deserialize<'de> for KeyString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(KeyString)
    }
}

/// A YAML file that could not be read as compose YAML.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    /// Syntax error (the message carries line and column).
    #[error("failed to parse {file}: {message}")]
    Syntax { file: String, message: String },
    /// The document is not a mapping.
    #[error("{file}: top-level object must be a mapping")]
    NotMapping { file: String },
}

/// Parse one YAML document the way compose-go reads compose files (yaml.v3, YAML 1.2 core
/// schema: only `true`/`false` are booleans; duplicate keys are errors; anchors, aliases and
/// `<<` merge keys resolved). `!reset` and `!override` nodes are kept as single-entry objects
/// keyed [`RESET`] / [`OVERRIDE`]. An empty document is an empty mapping.
pub fn parse(src: &str, file: &str) -> Result<Value, YamlError> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        legacy_octal_numbers: true,
        with_snippet: false,
    };
    if src.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let Node(v) =
        serde_saphyr::from_str_with_options(src, options).map_err(|e| YamlError::Syntax {
            file: file.to_string(),
            message: e.to_string().lines().next().unwrap_or_default().to_string(),
        })?;
    match v {
        Value::Object(_) => Ok(v),
        Value::Null => Ok(Value::Object(Map::new())),
        _ => Err(YamlError::NotMapping {
            file: file.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn anchors_merge_keys_and_tags() {
        let src = "x-base: &b\n  image: a\n  environment:\n    A: 1\nservices:\n  s:\n    <<: *b\n    image: c\n    ports: !reset []\n    command: !override [a]\n    n: yes\n    o: 0755\n    e:\n    q: \"3\"\n    f: 1.5\n";
        let v = parse(src, "c.yaml").unwrap();
        assert_eq!(
            v["services"]["s"],
            json!({"image": "c", "environment": {"A": 1}, "ports": {RESET: []},
                   "command": {OVERRIDE: ["a"]}, "n": "yes", "o": 493, "e": null, "q": "3", "f": 1.5})
        );
    }

    #[test]
    fn errors() {
        let e = parse("a: [1, 2\nb: 3\n", "f.yaml").unwrap_err().to_string();
        assert!(
            e.starts_with("failed to parse f.yaml: ") && e.ends_with("at line 2, column 2"),
            "{e}"
        );
        assert!(parse("a: 1\na: 2\n", "f.yaml").is_err());
        assert!(matches!(
            parse("- 1\n", "f.yaml"),
            Err(YamlError::NotMapping { .. })
        ));
        assert_eq!(parse("", "f.yaml").unwrap(), json!({}));
    }
}
