//! Custom resources' schemas (apiextensions.k8s.io/v1 `openAPIV3Schema`): the structural-schema
//! check a CRD must pass, and validation, pruning and defaulting of custom objects, with
//! kube-apiserver's field paths and messages.
//! Source: [Structural schema, pruning, defaulting, validation](https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema).

use serde_json::{Map, Value};

/// One validation failure (a kube `StatusCause`): reason `FieldValueInvalid`,
/// `FieldValueTypeInvalid` (wrong type or format), `FieldValueRequired`, `FieldValueNotSupported`, `FieldValueTooLong`, `FieldValueTooMany`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    pub reason: &'static str,
    /// `Invalid value: "string": spec.replicas in body must be of type integer: "string"`.
    pub message: String,
    /// `spec.replicas`.
    pub field: String,
}

impl Cause {
    pub(crate) fn new(reason: &'static str, field: &str, message: String) -> Cause {
        Cause {
            reason,
            message,
            field: field.to_string(),
        }
    }
}

/// kube's message for an invalid object: `Kind.group "name" is invalid: <field>: <message>`,
/// several errors in brackets, comma-separated.
pub fn invalid_message(qualified_kind: &str, name: &str, causes: &[Cause]) -> String {
    let errs: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    let body = if errs.len() == 1 {
        errs[0].clone()
    } else {
        format!("[{}]", errs.join(", "))
    };
    format!("{qualified_kind} {name:?} is invalid: {body}")
}

fn go_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// Checks that `schema` (a CRD version's `openAPIV3Schema`) is structural; returns the
/// violations with their paths under `base` (e.g. `spec.versions[0].schema.openAPIV3Schema`).
pub fn check_structural(schema: &Value, base: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        out.push(Cause::new(
            "FieldValueRequired",
            &join(base, "type"),
            "Required value: must be object at the root".into(),
        ));
    }
    structural_node(schema, base, true, &mut out);
    out
}

fn structural_node(node: &Value, path: &str, root: bool, out: &mut Vec<Cause>) {
    let open = node
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    let int_or_string = node
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    let has_type = node
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty());
    if !root && !has_type && !open && !int_or_string {
        out.push(Cause::new(
            "FieldValueRequired",
            &join(path, "type"),
            "Required value: must not be empty for specified object fields".into(),
        ));
    }
    for forbidden in [
        "$ref",
        "definitions",
        "dependencies",
        "additionalItems",
        "patternProperties",
    ] {
        if node.get(forbidden).is_some() {
            out.push(Cause::new(
                "FieldValueForbidden",
                &join(path, forbidden),
                "Forbidden: must not be specified".into(),
            ));
        }
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        if node
            .get("additionalProperties")
            .is_some_and(|a| a.is_object() || a == &Value::Bool(false))
        {
            out.push(Cause::new(
                "FieldValueForbidden",
                &join(path, "additionalProperties"),
                "Forbidden: additionalProperties and properties are mutual exclusive".into(),
            ));
        }
        for (k, v) in props {
            structural_node(v, &format!("{path}.properties[{k}]"), false, out);
        }
    }
    if let Some(items) = node.get("items") {
        if items.is_object() {
            structural_node(items, &join(path, "items"), false, out);
        }
    } else if node.get("type").and_then(Value::as_str) == Some("array") {
        out.push(Cause::new(
            "FieldValueRequired",
            &join(path, "items"),
            "Required value: must be specified".into(),
        ));
    }
    if let Some(a) = node.get("additionalProperties").filter(|a| a.is_object()) {
        structural_node(a, &join(path, "additionalProperties"), false, out);
    }
}

/// Drops fields the schema does not specify (unless `x-kubernetes-preserve-unknown-fields`),
/// keeping `apiVersion`, `kind` and `metadata` at the root. Returns the dropped paths.
pub fn prune(object: &mut Value, schema: &Value) -> Vec<String> {
    let mut dropped = Vec::new();
    if let Value::Object(m) = object {
        let props = schema.get("properties").and_then(Value::as_object);
        let open = schema
            .get("x-kubernetes-preserve-unknown-fields")
            .and_then(Value::as_bool)
            == Some(true);
        let keys: Vec<String> = m.keys().cloned().collect();
        for k in keys {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match props.and_then(|p| p.get(&k)) {
                Some(s) => prune_node(m.get_mut(&k).expect("key listed"), s, &k, &mut dropped),
                None if open => {}
                None => {
                    m.remove(&k);
                    dropped.push(k);
                }
            }
        }
    }
    dropped
}

fn prune_node(v: &mut Value, schema: &Value, path: &str, dropped: &mut Vec<String>) {
    let open = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let child_path = join(path, &k);
                let child_schema = props.and_then(|p| p.get(&k)).or(additional);
                match child_schema {
                    Some(s) => {
                        prune_node(m.get_mut(&k).expect("key listed"), s, &child_path, dropped)
                    }
                    None if open
                        || schema.get("additionalProperties") == Some(&Value::Bool(true)) => {}
                    None => {
                        m.remove(&k);
                        dropped.push(child_path);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items").filter(|s| s.is_object()) {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_node(item, s, &format!("{path}[{i}]"), dropped);
                }
            }
        }
        _ => {}
    }
}

/// Sets `default`s of absent properties, top-down (a defaulted object gets its own fields'
/// defaults too).
pub fn apply_defaults(v: &mut Value, schema: &Value) {
    match v {
        Value::Object(m) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, s) in props {
                    if !m.contains_key(k) {
                        if let Some(d) = s.get("default") {
                            m.insert(k.clone(), d.clone());
                        }
                    }
                    if let Some(child) = m.get_mut(k) {
                        apply_defaults(child, s);
                    }
                }
            }
            if let Some(a) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                let props = schema.get("properties").and_then(Value::as_object);
                for (k, child) in m.iter_mut() {
                    if props.is_none_or(|p| !p.contains_key(k)) {
                        apply_defaults(child, a);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items").filter(|s| s.is_object()) {
                items.iter_mut().for_each(|i| apply_defaults(i, s));
            }
        }
        _ => {}
    }
}

/// Validates a custom object against its schema (after pruning and defaulting).
pub fn validate(object: &Value, schema: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let mut root = schema.clone();
    // metadata, apiVersion and kind are validated as ObjectMeta elsewhere.
    if let Some(p) = root.get_mut("properties").and_then(Value::as_object_mut) {
        p.remove("metadata");
        p.remove("apiVersion");
        p.remove("kind");
    }
    let mut obj = object.clone();
    if let Some(m) = obj.as_object_mut() {
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
    }
    validate_node(&obj, &root, "", &mut out);
    out
}

fn number(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn fmt_num(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn validate_node(v: &Value, schema: &Value, path: &str, out: &mut Vec<Cause>) {
    if v.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) && !path.is_empty() {
            let t = schema
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("object");
            out.push(Cause::new(
                "FieldValueTypeInvalid",
                path,
                format!("Invalid value: \"null\": {path} in body must be of type {t}: \"null\""),
            ));
        }
        return;
    }
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let actual = go_type_name(v);
        let ok = match t {
            "number" => matches!(actual, "number" | "integer"),
            "integer" => actual == "integer" || v.as_f64().is_some_and(|f| f.fract() == 0.0),
            other => actual == other,
        } || (int_or_string && matches!(actual, "integer" | "string"));
        if !ok {
            out.push(Cause::new(
                "FieldValueTypeInvalid",
                path,
                format!(
                    "Invalid value: \"{actual}\": {path} in body must be of type {t}: \"{actual}\""
                ),
            ));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(v) {
            let list: Vec<String> = options.iter().map(fmt_num).collect();
            out.push(Cause::new(
                "FieldValueNotSupported",
                path,
                format!(
                    "Unsupported value: {}: supported values: {}",
                    fmt_num(v),
                    list.join(", ")
                ),
            ));
        }
    }
    if let Some(n) = number(v).filter(|_| v.is_number()) {
        let bounds = [
            ("minimum", "exclusiveMinimum", "greater than"),
            ("maximum", "exclusiveMaximum", "less than"),
        ];
        for (key, exclusive_key, rel) in bounds {
            let Some(bound) = schema.get(key).and_then(number) else {
                continue;
            };
            let exclusive = schema.get(exclusive_key).and_then(Value::as_bool) == Some(true);
            let beyond = if key == "minimum" {
                n < bound
            } else {
                n > bound
            };
            if beyond || (exclusive && n == bound) {
                let rel = if exclusive {
                    rel.to_string()
                } else {
                    format!("{rel} or equal to")
                };
                out.push(Cause::new(
                    "FieldValueInvalid",
                    path,
                    format!(
                        "Invalid value: {}: {path} in body should be {rel} {}",
                        fmt_num(v),
                        fmt_num(&schema[key])
                    ),
                ));
            }
        }
    }
    if let Some(s) = v.as_str() {
        let len = s.chars().count() as u64;
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            if len > max {
                out.push(Cause::new(
                    "FieldValueTooLong",
                    path,
                    format!("Too long: may not be more than {max} bytes"),
                ));
            }
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
            if len < min {
                out.push(Cause::new(
                    "FieldValueInvalid",
                    path,
                    format!(
                        "Invalid value: {:?}: {path} in body should be at least {min} chars long",
                        s
                    ),
                ));
            }
        }
        if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
            if let Ok(re) = regex::Regex::new(p) {
                if !re.is_match(s) {
                    out.push(Cause::new(
                        "FieldValueInvalid",
                        path,
                        format!("Invalid value: {:?}: {path} in body should match '{p}'", s),
                    ));
                }
            }
        }
        // kube-openapi's format validator: string (or untyped) schemas, known formats only.
        if let Some(f) = schema.get("format").and_then(Value::as_str) {
            let typed = schema.get("type").and_then(Value::as_str);
            if matches!(typed, None | Some("" | "string"))
                && crate::formats::valid(f, s) == Some(false)
            {
                out.push(Cause::new(
                    "FieldValueTypeInvalid",
                    path,
                    format!("Invalid value: {s:?}: {path} in body must be of type {f}: {s:?}"),
                ));
            }
        }
    }
    match v {
        Value::Object(m) => {
            for req in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !m.contains_key(req) {
                    out.push(Cause::new(
                        "FieldValueRequired",
                        &join(path, req),
                        "Required value".into(),
                    ));
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, child) in m {
                if let Some(s) = props.and_then(|p| p.get(k)).or(additional) {
                    validate_node(child, s, &join(path, k), out);
                }
            }
            validate_counts(
                m.len(),
                schema,
                "minProperties",
                "maxProperties",
                "properties",
                path,
                out,
            );
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items").filter(|s| s.is_object()) {
                for (i, item) in items.iter().enumerate() {
                    validate_node(item, s, &format!("{path}[{i}]"), out);
                }
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
                if items.len() as u64 > max {
                    out.push(Cause::new(
                        "FieldValueTooMany",
                        path,
                        format!("Too many: {}: must have at most {max} items", items.len()),
                    ));
                }
            }
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
                if (items.len() as u64) < min {
                    out.push(Cause::new(
                        "FieldValueInvalid",
                        path,
                        format!(
                            "Invalid value: {}: {path} in body should have at least {min} items",
                            items.len()
                        ),
                    ));
                }
            }
        }
        _ => {}
    }
}

fn validate_counts(
    n: usize,
    schema: &Value,
    min_key: &str,
    max_key: &str,
    what: &str,
    path: &str,
    out: &mut Vec<Cause>,
) {
    if let Some(max) = schema.get(max_key).and_then(Value::as_u64) {
        if n as u64 > max {
            out.push(Cause::new(
                "FieldValueTooMany",
                path,
                format!("Too many: {n}: must have at most {max} {what}"),
            ));
        }
    }
    if let Some(min) = schema.get(min_key).and_then(Value::as_u64) {
        if (n as u64) < min {
            out.push(Cause::new(
                "FieldValueInvalid",
                path,
                format!("Invalid value: {n}: {path} in body should have at least {min} {what}"),
            ));
        }
    }
}

/// A CRD schema as the OpenAPI documents and explain want it (the structural schema with
/// `metadata` pointing at ObjectMeta).
pub fn published_schema(schema: &Value) -> Value {
    let mut s = schema.clone();
    if let Some(m) = s.as_object_mut() {
        let props = m
            .entry("properties")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(p) = props.as_object_mut() {
            p.insert("metadata".into(), serde_json::json!({"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}));
            p.entry("apiVersion")
                .or_insert(serde_json::json!({"type": "string"}));
            p.entry("kind")
                .or_insert(serde_json::json!({"type": "string"}));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["size"], "properties": {
            "size": {"type": "integer", "minimum": 1, "maximum": 10},
            "mode": {"type": "string", "enum": ["fast", "slow"], "default": "fast"},
            "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "port": {"x-kubernetes-int-or-string": true}
        }}}})
    }

    #[test]
    fn structural_check() {
        assert!(check_structural(&schema(), "spec.versions[0].schema.openAPIV3Schema").is_empty());
        let bad = json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}});
        let causes = check_structural(&bad, "spec.versions[0].schema.openAPIV3Schema");
        assert_eq!(
            causes[0].field,
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].type"
        );
        assert_eq!(
            causes[0].message,
            "Required value: must not be empty for specified object fields"
        );
    }

    #[test]
    fn prune_default_validate() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"},
            "spec": {"size": "3", "extra": 1, "free": {"any": {"thing": 1}}, "name": "Abc", "tags": ["a", "b", "c"], "port": "http"}, "junk": true});
        let dropped = prune(&mut obj, &schema());
        assert_eq!(dropped, vec!["junk".to_string(), "spec.extra".to_string()]);
        apply_defaults(&mut obj, &schema());
        assert_eq!(obj["spec"]["mode"], "fast");
        let causes = validate(&obj, &schema());
        let msgs: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(msgs, vec![
            "spec.name: Invalid value: \"Abc\": spec.name in body should match '^[a-z]+$'",
            "spec.size: Invalid value: \"string\": spec.size in body must be of type integer: \"string\"",
            "spec.tags: Too many: 3: must have at most 2 items",
        ]);
        let mut ok = json!({"spec": {"size": 0}});
        apply_defaults(&mut ok, &schema());
        let causes = validate(&ok, &schema());
        assert_eq!(
            causes[0].message,
            "Invalid value: 0: spec.size in body should be greater than or equal to 1"
        );
        let missing = validate(&json!({"spec": {}}), &schema());
        assert_eq!(
            (missing[0].field.as_str(), missing[0].message.as_str()),
            ("spec.size", "Required value")
        );
        assert_eq!(
            invalid_message("Widget.example.com", "a", &missing),
            "Widget.example.com \"a\" is invalid: spec.size: Required value"
        );
    }
}
