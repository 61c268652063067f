//! Field sets: which fields of an object a field manager owns, as structured-merge-diff
//! models them (sigs.k8s.io/structured-merge-diff `fieldpath`), and their `FieldsV1` wire form
//! (`metadata.managedFields[].fieldsV1`).
//!
//! A path is a sequence of elements: `f:<name>` (a struct field or map key), `k:<keys>` (an
//! element of an associative list, named by its key fields as compact JSON with sorted keys),
//! `v:<value>` (an element of a set, as JSON), `i:<index>` (a list position). A set holds
//! paths as a trie; in `FieldsV1`, `".": {}` marks a node that is itself a member and also has
//! children (a list element whose fields are owned too).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

use crate::schema::Schema;

/// One step of a [`Path`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A struct field or a map key.
    Field(String),
    /// An associative-list element by its key fields (compact JSON object, keys sorted).
    Key(String),
    /// A set element by value (compact JSON).
    Value(String),
    /// A list position.
    Index(usize),
}

/// A path from the object's root.
pub type Path = Vec<PathElement>;

impl PathElement {
    fn encode(&self) -> String {
        match self {
            PathElement::Field(f) => format!("f:{f}"),
            PathElement::Key(k) => format!("k:{k}"),
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    fn decode(s: &str) -> Option<PathElement> {
        let (kind, rest) = s.split_once(':')?;
        Some(match kind {
            "f" => PathElement::Field(rest.to_string()),
            "k" => PathElement::Key(canonical(&serde_json::from_str(rest).ok()?)),
            "v" => PathElement::Value(canonical(&serde_json::from_str(rest).ok()?)),
            "i" => PathElement::Index(rest.parse().ok()?),
            _ => return None,
        })
    }

    /// The key of a list element for `keys` (its list's `x-kubernetes-list-map-keys`).
    pub fn key_of(element: &Value, keys: &[&str]) -> Option<PathElement> {
        let mut m = Map::new();
        for k in keys {
            if let Some(v) = element.get(*k) {
                m.insert((*k).to_string(), v.clone());
            }
        }
        (!m.is_empty()).then(|| PathElement::Key(canonical(&Value::Object(m))))
    }
}

/// Compact JSON with object keys sorted (serde_json's map is ordered by key).
fn canonical(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Paths print as structured-merge-diff prints them: `.spec.containers[name="app"].image`.
pub struct DisplayPath<'a>(pub &'a [PathElement]);

impl fmt::Display for DisplayPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in self.0 {
            match e {
                PathElement::Field(name) => write!(f, ".{name}")?,
                PathElement::Index(i) => write!(f, "[{i}]")?,
                PathElement::Value(v) => write!(f, "[={v}]")?,
                PathElement::Key(k) => {
                    let parsed: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                    let parts: Vec<String> = parsed
                        .iter()
                        .map(|(k, v)| format!("{k}={}", canonical(v)))
                        .collect();
                    write!(f, "[{}]", parts.join(","))?
                }
            }
        }
        Ok(())
    }
}

/// A set of paths (a trie).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(FieldSet::is_empty)
    }

    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    pub fn contains(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.contains(rest)),
        }
    }

    /// Whether any path of the set starts with `prefix` (or is it).
    pub fn has_prefix(&self, prefix: &[PathElement]) -> bool {
        match prefix {
            [] => !self.is_empty(),
            [last] => {
                self.members.contains(last)
                    || self.children.get(last).is_some_and(|c| !c.is_empty())
            }
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has_prefix(rest)),
        }
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (k, c) in &other.children {
            let merged = out
                .children
                .get(k)
                .map(|mine| mine.union(c))
                .unwrap_or_else(|| c.clone());
            out.children.insert(k.clone(), merged);
        }
        out
    }

    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            members: self.members.difference(&other.members).cloned().collect(),
            children: BTreeMap::new(),
        };
        for (k, c) in &self.children {
            let d = match other.children.get(k) {
                Some(o) => c.difference(o),
                None => c.clone(),
            };
            if !d.is_empty() {
                out.children.insert(k.clone(), d);
            }
        }
        out
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            members: self.members.intersection(&other.members).cloned().collect(),
            children: BTreeMap::new(),
        };
        for (k, c) in &self.children {
            if let Some(o) = other.children.get(k) {
                let i = c.intersection(o);
                if !i.is_empty() {
                    out.children.insert(k.clone(), i);
                }
            }
        }
        out
    }

    /// Every path in the set, in order.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.walk(&mut Vec::new(), &mut out);
        out
    }

    fn walk(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        let mut keys: BTreeSet<&PathElement> = self.members.iter().collect();
        keys.extend(self.children.keys());
        for k in keys {
            prefix.push(k.clone());
            if self.members.contains(k) {
                out.push(prefix.clone());
            }
            if let Some(c) = self.children.get(k) {
                c.walk(prefix, out);
            }
            prefix.pop();
        }
    }

    /// The `FieldsV1` JSON of the set.
    pub fn to_fields_v1(&self) -> Value {
        let mut m = Map::new();
        let mut keys: BTreeSet<&PathElement> = self.members.iter().collect();
        keys.extend(
            self.children
                .keys()
                .filter(|k| !self.children[*k].is_empty()),
        );
        for k in keys {
            let v = match self.children.get(k).filter(|c| !c.is_empty()) {
                Some(c) => {
                    let mut inner = match c.to_fields_v1() {
                        Value::Object(inner) => inner,
                        _ => Map::new(),
                    };
                    if self.members.contains(k) {
                        inner.insert(".".into(), Value::Object(Map::new()));
                    }
                    Value::Object(inner)
                }
                None => Value::Object(Map::new()),
            };
            m.insert(k.encode(), v);
        }
        Value::Object(m)
    }

    /// Parses `FieldsV1` JSON; unknown entries are skipped.
    pub fn from_fields_v1(v: &Value) -> FieldSet {
        let mut out = FieldSet::default();
        let Some(m) = v.as_object() else { return out };
        for (k, child) in m {
            if k == "." {
                continue;
            }
            let Some(e) = PathElement::decode(k) else {
                continue;
            };
            let inner = child.as_object();
            if inner.is_none_or(|i| i.is_empty() || i.contains_key(".")) {
                out.members.insert(e.clone());
            }
            if inner.is_some_and(|i| i.keys().any(|k| k != ".")) {
                out.children.insert(e, FieldSet::from_fields_v1(child));
            }
        }
        out
    }
}

/// The set of fields `object` sets, as structured-merge-diff's `ToFieldSet`: every leaf and
/// every list element (associative lists by key, sets by value; atomic values are leaves).
pub fn field_set(object: &Value, schema: Option<Schema<'_>>) -> FieldSet {
    let mut set = FieldSet::default();
    walk_value(object, schema, &mut Vec::new(), &mut set);
    set
}

fn walk_value(v: &Value, schema: Option<Schema<'_>>, path: &mut Path, set: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() && !schema.is_some_and(|s| s.is_atomic()) => {
            for (k, child) in m {
                path.push(PathElement::Field(k.clone()));
                let field = schema.and_then(|s| s.field(k));
                walk_child(child, field, path, set);
                path.pop();
            }
        }
        _ => {}
    }
}

fn walk_child(v: &Value, field: Option<Schema<'_>>, path: &mut Path, set: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() && !field.is_some_and(|s| s.is_atomic()) => {
            walk_value(v, field, path, set)
        }
        Value::Array(items) if !items.is_empty() => match field.and_then(|f| f.list_type()) {
            Some("map") => {
                let f = field.expect("list type came from the field");
                let keys = f.list_map_keys();
                let item_schema = f.items();
                for item in items {
                    let Some(e) = PathElement::key_of(item, &keys) else {
                        continue;
                    };
                    path.push(e);
                    set.insert(path);
                    walk_value(item, item_schema, path, set);
                    path.pop();
                }
            }
            Some("set") => {
                for item in items {
                    path.push(PathElement::Value(canonical(item)));
                    set.insert(path);
                    path.pop();
                }
            }
            _ => set.insert(path),
        },
        _ => set.insert(path),
    }
}

/// Whether list `item` is the one a `k:` element names (all its key fields equal).
fn key_matches(item: &Value, key: &str) -> bool {
    match serde_json::from_str::<Map<String, Value>>(key) {
        Ok(k) => !k.is_empty() && k.iter().all(|(f, v)| item.get(f) == Some(v)),
        Err(_) => false,
    }
}

/// The value at `path` in `object`, if any.
pub fn get<'v>(object: &'v Value, path: &[PathElement]) -> Option<&'v Value> {
    let mut cur = object;
    for e in path {
        cur = match e {
            PathElement::Field(name) => cur.get(name)?,
            PathElement::Key(k) => cur.as_array()?.iter().find(|item| key_matches(item, k))?,
            PathElement::Value(v) => cur.as_array()?.iter().find(|item| &canonical(item) == v)?,
            PathElement::Index(i) => cur.as_array()?.get(*i)?,
        };
    }
    Some(cur)
}

/// Removes the value at `path` from `object` (no-op if absent).
pub fn remove(object: &mut Value, path: &[PathElement]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let mut cur = object;
    for e in parent_path {
        let next = match e {
            PathElement::Field(name) => cur.get_mut(name),
            PathElement::Key(k) => cur
                .as_array_mut()
                .and_then(|a| a.iter_mut().find(|item| key_matches(item, k))),
            PathElement::Value(v) => cur
                .as_array_mut()
                .and_then(|a| a.iter_mut().find(|item| &canonical(item) == v)),
            PathElement::Index(i) => cur.as_array_mut().and_then(|a| a.get_mut(*i)),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match (last, cur) {
        (PathElement::Field(name), Value::Object(m)) => {
            m.remove(name);
        }
        (PathElement::Key(k), Value::Array(a)) => a.retain(|item| !key_matches(item, k)),
        (PathElement::Value(v), Value::Array(a)) => a.retain(|item| &canonical(item) != v),
        (PathElement::Index(i), Value::Array(a)) if *i < a.len() => {
            a.remove(*i);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::definitions;
    use serde_json::json;

    #[test]
    fn deployment_field_set_matches_kubes_fields_v1() {
        let schema = definitions().kind("apps", "v1", "Deployment");
        let obj = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1",
                "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}}});
        let set = field_set(&obj, schema);
        assert_eq!(
            set.to_fields_v1(),
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}, "f:protocol": {}}}}
                }}}}
            })
        );
        assert_eq!(FieldSet::from_fields_v1(&set.to_fields_v1()), set);
        let paths: Vec<String> = set
            .paths()
            .iter()
            .map(|p| DisplayPath(p).to_string())
            .collect();
        assert!(
            paths.contains(&".spec.template.spec.containers[name=\"nginx\"].image".to_string()),
            "{paths:?}"
        );
        assert!(paths.contains(&".spec.template.spec.containers[name=\"nginx\"].ports[containerPort=80,protocol=\"TCP\"]".to_string()), "{paths:?}");
    }

    #[test]
    fn set_algebra_and_removal() {
        let schema = definitions().kind("", "v1", "Pod");
        let mut obj = json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {"containers": [{"name": "x", "image": "i"}, {"name": "y"}]}});
        let set = field_set(&obj, schema);
        let fin_a = vec![
            PathElement::Field("metadata".into()),
            PathElement::Field("finalizers".into()),
            PathElement::Value("\"a\"".into()),
        ];
        assert!(set.contains(&fin_a));
        let mut only = FieldSet::default();
        only.insert(&fin_a);
        assert!(!set.difference(&only).contains(&fin_a));
        assert_eq!(set.intersection(&only), only);
        remove(&mut obj, &fin_a);
        let y = vec![
            PathElement::Field("spec".into()),
            PathElement::Field("containers".into()),
            PathElement::Key("{\"name\":\"y\"}".into()),
        ];
        assert_eq!(get(&obj, &y), Some(&json!({"name": "y"})));
        remove(&mut obj, &y);
        assert_eq!(
            obj,
            json!({"metadata": {"finalizers": ["b"]}, "spec": {"containers": [{"name": "x", "image": "i"}]}})
        );
    }
}
