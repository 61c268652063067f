//! Unknown fields: what `fieldValidation` (Strict/Warn/Ignore) reports and what is dropped
//! before storing, as kube-apiserver's decoder does for built-in kinds (fields the Go types do
//! not have never reach storage) and its pruning does for custom resources.
//! Source: [Field validation](https://kubernetes.io/docs/reference/using-api/api-concepts/#field-validation).

use serde_json::Value;

use crate::schema::Schema;

/// Removes the fields `schema` does not know from `object` and returns their paths in kube's
/// notation (`spec.template.spec.containers[0].imagee`), in document order.
pub fn prune(object: &mut Value, schema: Schema<'_>) -> Vec<String> {
    let mut found = Vec::new();
    walk(object, schema, &mut String::new(), &mut found);
    found
}

/// kube's message for unknown fields under `fieldValidation=Strict`, e.g.
/// `strict decoding error: unknown field "spec.foo", unknown field "spec.bar"`.
pub fn strict_message(paths: &[String]) -> String {
    let fields: Vec<String> = paths
        .iter()
        .map(|p| format!("unknown field {p:?}"))
        .collect();
    format!("strict decoding error: {}", fields.join(", "))
}

fn is_open(node: &Value) -> bool {
    node.get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

fn walk(v: &mut Value, schema: Schema<'_>, path: &mut String, found: &mut Vec<String>) {
    let node = schema.node();
    if is_open(node) {
        return;
    }
    match v {
        Value::Object(m) => {
            let props = node.get("properties").and_then(Value::as_object);
            let additional = node
                .get("additionalProperties")
                .is_some_and(Value::is_object);
            if props.is_none() && !additional {
                return; // an opaque object (RawExtension, FieldsV1, JSON)
            }
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&k);
                match schema.field(&k) {
                    Some(field) => {
                        if let Some(child) = m.get_mut(&k) {
                            walk(child, field, path, found);
                        }
                    }
                    None => {
                        found.push(path.clone());
                        m.remove(&k);
                    }
                }
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.items() {
                for (i, item) in items.iter_mut().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    walk(item, item_schema, path, found);
                    path.truncate(len);
                }
            }
        }
        _ => {}
    }
}

/// A value of a built-in object whose JSON type its Go type cannot hold (a bool where a
/// `[]string`'s item is, a string for an `int32`), found by the same schema walk. kube decodes
/// built-in bodies into their Go structs, so such a body is refused and nothing is stored.
/// What kube accepts is accepted here too: `null` anywhere, a `Quantity` as a number or a
/// string, an `IntOrString` as an integer or a string, opaque objects
/// (`RawExtension`, `FieldsV1`) and `x-kubernetes-preserve-unknown-fields` as anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeError {
    /// What Go's decoder calls the JSON value: `bool`, `string`, `number`, `number 1.5`,
    /// `array`, `object`.
    pub got: String,
    /// The Go struct holding the field (`Container`).
    pub structure: String,
    /// The field's JSON path without list indices (`spec.containers.command`), as
    /// encoding/json's error context joins it.
    pub field: String,
    /// The Go type expected (`string`, `int32`, `v1.PodSpec`, `[]v1.Container`).
    pub go_type: String,
    /// structured-merge-diff's path of the value (`.spec.containers[name="a"].command[0]`).
    pub smd_path: String,
    /// structured-merge-diff's complaint (`expected numeric (int or float), got string`);
    /// empty where structured-merge-diff takes the value (an integer out of `int32`'s range)
    /// and only the decoding into the Go type fails.
    pub smd: String,
    /// A quantity that is neither a number nor a quantity string: resource.Quantity's own
    /// error replaces encoding/json's.
    pub quantity: bool,
}

/// resource.Quantity's `ErrFormatWrong`.
pub const QUANTITY_FORMAT: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

impl TypeError {
    /// encoding/json's message as kube's decoder returns it: `json: cannot unmarshal bool into
    /// Go struct field Container.spec.containers.command of type string`.
    pub fn json_message(&self) -> String {
        if self.quantity {
            return QUANTITY_FORMAT.to_string();
        }
        format!(
            "json: cannot unmarshal {} into Go struct field {}.{} of type {}",
            self.got, self.structure, self.field, self.go_type
        )
    }

    /// structured-merge-diff's message (server-side apply): `.spec.replicas: expected
    /// numeric (int or float), got string`.
    pub fn smd_message(&self) -> String {
        if self.smd.is_empty() {
            return self.json_message();
        }
        format!("{}: {}", self.smd_path, self.smd)
    }
}

/// The first value of `object` (a built-in kind `kind` described by `schema`) whose JSON type
/// does not fit, in document order, as kube's JSON decoder reports the first.
pub fn type_error(object: &Value, schema: Schema<'_>, kind: &str) -> Option<TypeError> {
    let mut ctx = TypeCtx {
        structure: kind.to_string(),
        stack: Vec::new(),
        smd: Vec::new(),
    };
    check_struct(object, schema, &mut ctx)
}

struct TypeCtx {
    structure: String,
    stack: Vec<String>,
    smd: Vec<crate::fields::PathElement>,
}

/// What a definition named `name` is, for the values its Go type accepts.
fn special(name: &str) -> Option<&'static str> {
    match name {
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => Some("quantity"),
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => Some("intorstring"),
        "io.k8s.apimachinery.pkg.apis.meta.v1.Time"
        | "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime" => Some("time"),
        _ => None,
    }
}

/// The Go type of a field (`string`, `int32`, `[]v1.Container`, `map[string]string`).
fn go_type(field: Schema<'_>) -> String {
    if let Some(name) = field.ref_name() {
        return match name {
            "io.k8s.apimachinery.pkg.api.resource.Quantity" => "resource.Quantity".into(),
            "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => "intstr.IntOrString".into(),
            _ => {
                let mut parts = name.rsplit('.');
                let ty = parts.next().unwrap_or(name);
                let pkg = parts.next().unwrap_or("");
                format!("{pkg}.{ty}")
            }
        };
    }
    let node = field.node();
    match node.get("type").and_then(Value::as_str) {
        Some("array") => format!(
            "[]{}",
            field
                .items()
                .map(go_type)
                .unwrap_or_else(|| "interface {}".into())
        ),
        Some("object") => match field.field("\u{0}") {
            Some(v)
                if node
                    .get("additionalProperties")
                    .is_some_and(Value::is_object) =>
            {
                format!("map[string]{}", go_type(v))
            }
            _ => "map[string]interface {}".into(),
        },
        Some("string") if node.get("format").and_then(Value::as_str) == Some("byte") => {
            "[]uint8".into()
        }
        Some("string") => "string".into(),
        Some("boolean") => "bool".into(),
        Some("integer") => match node.get("format").and_then(Value::as_str) {
            Some("int64") => "int64".into(),
            _ => "int32".into(),
        },
        Some("number") => "float64".into(),
        _ => "interface {}".into(),
    }
}

/// encoding/json's word for a JSON value.
fn json_word(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Go's `%T` of the unstructured value structured-merge-diff holds.
fn go_dynamic_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// Go's `%v` of an unstructured value.
fn go_v(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_v).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", go_v(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        other => other.to_string(),
    }
}

/// Go's `%#v` of an unstructured value.
fn go_sharp_v(v: &Value) -> String {
    match v {
        Value::Null => "interface {}(nil)".into(),
        Value::Array(a) => format!(
            "[]interface {{}}{{{}}}",
            a.iter().map(go_sharp_v).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) => format!(
            "map[string]interface {{}}{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{k:?}:{}", go_sharp_v(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

impl TypeCtx {
    fn error(&self, v: &Value, field: Schema<'_>, got: String, smd: String) -> TypeError {
        TypeError {
            got,
            structure: self.structure.clone(),
            field: self.stack.join("."),
            go_type: go_type(field),
            smd_path: crate::fields::DisplayPath(&self.smd).to_string(),
            smd: if smd.is_empty() {
                format!("expected map, got &{{{}}}", go_v(v))
            } else {
                smd
            },
            quantity: false,
        }
    }
}

/// Checks the fields of an object whose schema is `schema` (a struct, or a map).
fn check_struct(v: &Value, schema: Schema<'_>, ctx: &mut TypeCtx) -> Option<TypeError> {
    let node = schema.node();
    if is_open(node) {
        return None;
    }
    let Value::Object(m) = v else {
        return None;
    };
    let is_map = node.get("properties").is_none();
    for (k, child) in m {
        let Some(field) = schema.field(k) else {
            continue; // unknown: pruned, not a type error
        };
        if !is_map {
            ctx.stack.push(k.clone());
        }
        ctx.smd.push(crate::fields::PathElement::Field(k.clone()));
        let found = check_value(child, field, ctx);
        ctx.smd.pop();
        if !is_map {
            ctx.stack.pop();
        }
        if found.is_some() {
            return found;
        }
    }
    None
}

fn check_value(v: &Value, field: Schema<'_>, ctx: &mut TypeCtx) -> Option<TypeError> {
    if v.is_null() {
        return None;
    }
    let node = field.node();
    if is_open(node) {
        return None;
    }
    let special = field.ref_name().and_then(special).or_else(|| {
        (node.get("format").and_then(Value::as_str) == Some("int-or-string"))
            .then_some("intorstring")
    });
    match special {
        Some("quantity") => {
            let ok = match v {
                Value::Number(_) => true,
                Value::String(s) => {
                    let s = s.trim();
                    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
                    s.starts_with(|c: char| c.is_ascii_digit() || c == '.')
                }
                _ => false,
            };
            if ok {
                return None;
            }
            let mut e = ctx.error(v, field, json_word(v).into(), String::new());
            e.quantity = true;
            return Some(e);
        }
        Some("intorstring") => {
            return match v {
                Value::String(_) => None,
                Value::Number(n) if n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()) => None,
                Value::Number(n) => {
                    let mut e = ctx.error(v, field, format!("number {n}"), String::new());
                    e.go_type = "int32".into();
                    e.smd = format!("expected string or number, got {}", go_v(v));
                    Some(e)
                }
                _ => {
                    let mut e = ctx.error(v, field, json_word(v).into(), String::new());
                    e.go_type = "int32".into();
                    e.smd = format!("expected string or number, got {}", go_v(v));
                    Some(e)
                }
            };
        }
        Some(_) => {
            // Time, MicroTime: RFC 3339 strings.
            return (!v.is_string()).then(|| {
                let mut e = ctx.error(v, field, json_word(v).into(), String::new());
                e.go_type = "string".into();
                e.smd = format!(
                    "expected string, got &value.valueUnstructured{{Value:{}}}",
                    go_sharp_v(v)
                );
                e
            });
        }
        None => {}
    }
    let ty = node.get("type").and_then(Value::as_str);
    let has_props = node.get("properties").is_some();
    let has_map = node
        .get("additionalProperties")
        .is_some_and(Value::is_object);
    match ty {
        Some("array") => {
            let Value::Array(items) = v else {
                let smd = format!("expected list, got &{{{}}}", go_v(v));
                return Some(ctx.error(v, field, json_word(v).into(), smd));
            };
            let item_schema = field.items()?;
            let keys = field.list_map_keys();
            for (i, item) in items.iter().enumerate() {
                let element = match field.list_type() {
                    Some("map") => crate::fields::PathElement::key_of(item, &keys)
                        .unwrap_or(crate::fields::PathElement::Index(i)),
                    Some("set") => crate::fields::PathElement::Value(
                        serde_json::to_string(item).unwrap_or_default(),
                    ),
                    _ => crate::fields::PathElement::Index(i),
                };
                ctx.smd.push(element);
                let found = check_value(item, item_schema, ctx);
                ctx.smd.pop();
                if found.is_some() {
                    return found;
                }
            }
            None
        }
        Some("object") | None if has_props || has_map => {
            if !v.is_object() {
                return Some(ctx.error(v, field, json_word(v).into(), String::new()));
            }
            if has_props {
                let name = field.ref_name().unwrap_or("");
                let saved = std::mem::replace(
                    &mut ctx.structure,
                    name.rsplit('.').next().unwrap_or(name).to_string(),
                );
                let found = check_struct(v, field, ctx);
                ctx.structure = saved;
                found
            } else {
                check_struct(v, field, ctx)
            }
        }
        Some("string") => (!v.is_string()).then(|| {
            let smd = format!(
                "expected string, got &value.valueUnstructured{{Value:{}}}",
                go_sharp_v(v)
            );
            ctx.error(v, field, json_word(v).into(), smd)
        }),
        Some("boolean") => (!v.is_boolean()).then(|| {
            let smd = format!("expected boolean, got &{{{}}}", go_v(v));
            ctx.error(v, field, json_word(v).into(), smd)
        }),
        Some("integer") => {
            let smd = format!(
                "expected numeric (int or float), got {}",
                go_dynamic_type(v)
            );
            match v {
                Value::Number(n) => {
                    let wide = node.get("format").and_then(Value::as_str) == Some("int64");
                    let fits = n.as_i64().is_some_and(|i| wide || i32::try_from(i).is_ok());
                    (!fits).then(|| {
                        let mut e = ctx.error(v, field, format!("number {n}"), smd);
                        // structured-merge-diff takes any number.
                        e.smd = String::new();
                        e
                    })
                }
                _ => Some(ctx.error(v, field, json_word(v).into(), smd)),
            }
        }
        Some("number") => (!v.is_number()).then(|| {
            let smd = format!(
                "expected numeric (int or float), got {}",
                go_dynamic_type(v)
            );
            ctx.error(v, field, json_word(v).into(), smd)
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::definitions;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_named_and_dropped() {
        let schema = definitions().kind("apps", "v1", "Deployment").unwrap();
        let mut obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "x", "labels": {"any": "ok"}, "bogus": 1},
            "spec": {"replicas": 1, "replicaz": 2, "template": {"spec": {"containers": [
                {"name": "a", "image": "i"}, {"name": "b", "imagee": "i", "resources": {"limits": {"cpu": "1"}}}]}}}});
        let found = prune(&mut obj, schema);
        assert_eq!(
            found,
            vec![
                "metadata.bogus",
                "spec.replicaz",
                "spec.template.spec.containers[1].imagee"
            ]
        );
        assert!(obj["spec"].get("replicaz").is_none());
        assert_eq!(obj["metadata"]["labels"]["any"], "ok");
        assert_eq!(
            strict_message(&found[1..2]),
            "strict decoding error: unknown field \"spec.replicaz\""
        );
    }
}
