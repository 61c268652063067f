//! CEL validation rules of custom resources' schemas (`x-kubernetes-validations`), as
//! apiextensions-apiserver evaluates them: every rule of every schema node is evaluated with
//! `self` bound to the node's value (and `oldSelf` to the value it had, for transition rules on
//! an update), and a rule that is not `true` is a field error with its `message`,
//! `messageExpression`, `reason` and `fieldPath`. Rules are compiled when the CRD is written,
//! so one that does not compile refuses the CRD.
//!
//! Source: [Validation rules](https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation-rules).
//!
//! The language is [cel-rust](https://docs.rs/cel): CEL's standard library and macros (`has`,
//! `all`, `exists`, `exists_one`, `map`, `filter`), `matches`, the strings, lists and math
//! extensions. cel-rust does not type-check, so only syntax errors and unknown variables are
//! compile errors here (kube also refuses rules that do not type-check against the schema), and
//! kube's own libraries (`isSorted`, `url`, `quantity`, `ip`, `cidr`, `format`…) and
//! `duration`/`timestamp` are not available: a rule using them fails when it is evaluated.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

use crate::crd::Cause;

/// A CEL failure, worded as kube-apiserver words it in a field error's detail.
#[derive(Debug, thiserror::Error)]
pub enum CelError {
    /// The expression does not parse or names an unknown variable: `compilation failed:
    /// ERROR: <input>:1:9: Syntax error: …`.
    #[error("compilation failed: {0}")]
    Compile(String),
    /// The expression failed while evaluated (`no such key: x`, a wrong overload, …).
    #[error("{0}")]
    Eval(String),
    /// The expression evaluated to something else than a `bool` (a rule) or a `string` (a
    /// `messageExpression`).
    #[error("expected a {expected}, got {got}")]
    WrongType {
        /// `bool` or `string`.
        expected: &'static str,
        /// The CEL type the expression returned.
        got: String,
    },
}

/// The reasons a rule may give its failures (`reason`); FieldValueInvalid by default.
const REASONS: [&str; 4] = [
    "FieldValueInvalid",
    "FieldValueForbidden",
    "FieldValueRequired",
    "FieldValueDuplicate",
];

/// The CEL environment shared by every rule: the standard library and the extensions.
fn env() -> &'static Arc<cel::Env> {
    static ENV: OnceLock<Arc<cel::Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = cel::Env::stdlib();
        for ext in [
            cel::extensions::strings as fn(&mut cel::Env) -> Result<(), cel::DeclarationError>,
            cel::extensions::lists,
            cel::extensions::math,
        ] {
            // The extensions declare disjoint functions: this cannot fail.
            let _ = env.add_extension(ext);
        }
        Arc::new(env)
    })
}

/// One compiled expression and whether it reads `oldSelf` (a transition rule).
struct Compiled {
    program: cel::Program,
    uses_old_self: bool,
}

/// How many compiled expressions [`compile`] keeps (kube compiles a CRD's rules once per
/// schema version; barge keeps the latest ones by their text, cleared when full).
const COMPILED_CACHE: usize = 1024;

/// [`compile_uncached`] through a cache keyed by the expression's text: a CRD's rules are
/// compiled once, not on every create and update of its objects. Errors are not cached.
fn compile(source: &str) -> Result<Arc<Compiled>, CelError> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Compiled>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(c) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(source) {
        return Ok(c.clone());
    }
    let c = Arc::new(compile_uncached(source)?);
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    if map.len() >= COMPILED_CACHE {
        map.clear();
    }
    map.insert(source.to_string(), c.clone());
    Ok(c)
}

/// Compiles `source` in the rules' environment, where `self` and `oldSelf` are the only
/// variables. Errors are cel-go's wording (`ERROR: <input>:L:C: …` and the source snippet).
fn compile_uncached(source: &str) -> Result<Compiled, CelError> {
    let program = env().compile(source).map_err(|e| {
        CelError::Compile(
            e.to_string()
                .replace("\n| ", "\n | ")
                .replace("Syntax error: Syntax error", "Syntax error"),
        )
    })?;
    let mut free = std::collections::BTreeSet::new();
    free_variables(program.expression(), &mut Vec::new(), &mut free);
    if let Some(v) = free.iter().find(|v| !KNOWN_IDENTS.contains(&v.as_str())) {
        return Err(CelError::Compile(format!(
            "ERROR: <input>:1:1: undeclared reference to '{v}' (in container '')"
        )));
    }
    let uses_old_self = free.contains("oldSelf");
    Ok(Compiled {
        program,
        uses_old_self,
    })
}

/// The identifiers a rule may name: its variables, the `optional` namespace and type names.
const KNOWN_IDENTS: &[&str] = &[
    "self",
    "oldSelf",
    "optional",
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "type",
    "null_type",
    "dyn",
];

/// The identifiers `expr` reads that no macro binds (`bound`: the iteration and accumulator
/// variables in scope).
fn free_variables(
    expr: &cel::IdedExpr,
    bound: &mut Vec<String>,
    out: &mut std::collections::BTreeSet<String>,
) {
    use cel::common::ast::{EntryExpr, Expr};
    let entries = |entries: &[cel::common::ast::IdedEntryExpr],
                   bound: &mut Vec<String>,
                   out: &mut std::collections::BTreeSet<String>| {
        for e in entries {
            match &e.expr {
                EntryExpr::StructField(f) => free_variables(&f.value, bound, out),
                EntryExpr::MapEntry(m) => {
                    free_variables(&m.key, bound, out);
                    free_variables(&m.value, bound, out);
                }
            }
        }
    };
    match &expr.expr {
        Expr::Unspecified | Expr::Literal(_) => {}
        Expr::Ident(name) => {
            if !name.starts_with('@') && !bound.iter().any(|b| b == name) {
                out.insert(name.clone());
            }
        }
        Expr::Call(call) => {
            if let Some(t) = &call.target {
                free_variables(t, bound, out);
            }
            for a in &call.args {
                free_variables(a, bound, out);
            }
        }
        Expr::Select(sel) => free_variables(&sel.operand, bound, out),
        Expr::List(list) => {
            for e in &list.elements {
                free_variables(e, bound, out);
            }
        }
        Expr::Map(map) => entries(&map.entries, bound, out),
        Expr::Struct(st) => entries(&st.entries, bound, out),
        Expr::Comprehension(c) => {
            free_variables(&c.iter_range, bound, out);
            free_variables(&c.accu_init, bound, out);
            let depth = bound.len();
            bound.push(c.iter_var.clone());
            bound.extend(c.iter_var2.clone());
            bound.push(c.accu_var.clone());
            free_variables(&c.loop_cond, bound, out);
            free_variables(&c.loop_step, bound, out);
            free_variables(&c.result, bound, out);
            bound.truncate(depth);
        }
    }
}

/// One `x-kubernetes-validations` entry.
#[derive(Debug, Default)]
struct Rule<'a> {
    rule: &'a str,
    message: &'a str,
    message_expression: &'a str,
    reason: Option<&'a str>,
    field_path: &'a str,
    optional_old_self: Option<bool>,
}

impl<'a> Rule<'a> {
    fn from(v: &'a Value) -> Rule<'a> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
        Rule {
            rule: s("rule"),
            message: s("message"),
            message_expression: s("messageExpression"),
            reason: v.get("reason").and_then(Value::as_str),
            field_path: s("fieldPath"),
            optional_old_self: v.get("optionalOldSelf").and_then(Value::as_bool),
        }
    }

    /// The rule as Go's `%#v` prints kube's `apiextensions.ValidationRule` (the bad value of
    /// a compile error). Set pointers print as an address in Go; a fixed one stands for it.
    fn go_syntax(&self) -> String {
        let ptr = |set: bool, ty: &str| {
            if set {
                format!("(*{ty})(0xc000000000)")
            } else {
                format!("(*{ty})(nil)")
            }
        };
        format!(
            "apiextensions.ValidationRule{{Rule:{:?}, Message:{:?}, MessageExpression:{:?}, Reason:{}, FieldPath:{:?}, OptionalOldSelf:{}}}",
            self.rule,
            self.message,
            self.message_expression,
            ptr(self.reason.is_some(), "apiextensions.FieldValueErrorReason"),
            self.field_path,
            ptr(self.optional_old_self.is_some(), "bool"),
        )
    }

    /// kube's `ruleErrorString`: the message, else the rule.
    fn error_string(&self) -> &str {
        if self.message.trim().is_empty() {
            self.rule.trim()
        } else {
            self.message.trim()
        }
    }

    /// kube's `ruleMessageOrDefault`: the message, else `failed rule: <rule>`.
    fn message_or_default(&self) -> String {
        if self.message.is_empty() {
            format!("failed rule: {}", self.error_string())
        } else {
            self.message.trim().to_string()
        }
    }
}

/// Whether any node of `schema` has `x-kubernetes-validations`.
pub fn has_rules(schema: &Value) -> bool {
    !rules_of(schema).is_empty()
        || schema
            .get("properties")
            .and_then(Value::as_object)
            .is_some_and(|p| p.values().any(has_rules))
        || ["items", "additionalProperties"]
            .iter()
            .any(|k| schema.get(k).is_some_and(|s| s.is_object() && has_rules(s)))
}

fn rules_of(node: &Value) -> &[Value] {
    node.get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Checks every rule of a CRD version's schema when the CRD is written: rules compile,
/// `messageExpression`s compile, reasons are known, `fieldPath`s name a field of the schema.
/// `base` is the schema's path (`spec.validation.openAPIV3Schema`).
pub fn check_rules(schema: &Value, base: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    check_node(schema, base, &mut out);
    out
}

fn check_node(node: &Value, path: &str, out: &mut Vec<Cause>) {
    for (i, v) in rules_of(node).iter().enumerate() {
        let rule = Rule::from(v);
        let at = format!("{path}.x-kubernetes-validations[{i}]");
        if rule.rule.trim().is_empty() {
            out.push(Cause::new(
                "FieldValueRequired",
                &format!("{at}.rule"),
                "Required value: rule is not specified".into(),
            ));
        } else if let Err(e) = compile(rule.rule) {
            out.push(Cause::new(
                "FieldValueInvalid",
                &format!("{at}.rule"),
                format!("Invalid value: {}: {e}", rule.go_syntax()),
            ));
        }
        if !rule.message_expression.is_empty() {
            if let Err(e) = compile(rule.message_expression) {
                out.push(Cause::new(
                    "FieldValueInvalid",
                    &format!("{at}.messageExpression"),
                    format!("Invalid value: {}: messageExpression {e}", rule.go_syntax()),
                ));
            }
        }
        if let Some(reason) = rule.reason {
            if !REASONS.contains(&reason) {
                out.push(Cause::new(
                    "FieldValueNotSupported",
                    &format!("{at}.reason"),
                    format!(
                        "Unsupported value: {reason:?}: supported values: \"FieldValueDuplicate\", \"FieldValueForbidden\", \"FieldValueInvalid\", \"FieldValueRequired\""
                    ),
                ));
            }
        }
        if !rule.field_path.is_empty() {
            if let Err(e) = resolve_field_path(rule.field_path, node) {
                out.push(Cause::new(
                    "FieldValueInvalid",
                    &format!("{at}.fieldPath"),
                    format!(
                        "Invalid value: {:?}: fieldPath must be a valid path: {e}",
                        rule.field_path
                    ),
                ));
            }
        }
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            check_node(v, &format!("{path}.properties[{k}]"), out);
        }
    }
    if let Some(items) = node.get("items").filter(|i| i.is_object()) {
        check_node(items, &format!("{path}.items"), out);
    }
    if let Some(a) = node.get("additionalProperties").filter(|a| a.is_object()) {
        check_node(a, &format!("{path}.additionalProperties"), out);
    }
}

/// A rule's `fieldPath` (`.spec.x`, `.labels['a.b']`) as a field path relative to its node
/// (`spec.x`, `labels[a.b]`), checked against the node's schema.
fn resolve_field_path(field_path: &str, schema: &Value) -> Result<String, String> {
    let mut out = String::new();
    let mut node = schema;
    let mut rest = field_path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let name = &r[..end];
            if name.is_empty() {
                return Err("unexpected end of JSON path".into());
            }
            node = step(node, name, &mut out)?;
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']").ok_or("unexpected end of JSON path")?;
            node = step(node, &r[..end], &mut out)?;
            rest = &r[end + 2..];
        } else {
            return Err(format!(
                "expected [ or . but got: {}",
                rest.split(['.', '[']).next().unwrap_or(rest)
            ));
        }
    }
    Ok(out)
}

fn step<'s>(node: &'s Value, name: &str, out: &mut String) -> Result<&'s Value, String> {
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        let child = props.get(name).ok_or("does not refer to a valid field")?;
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(name);
        Ok(child)
    } else if let Some(a) = node.get("additionalProperties").filter(|a| a.is_object()) {
        out.push_str(&format!("[{name}]"));
        Ok(a)
    } else {
        Err("does not refer to a valid field".into())
    }
}

/// A JSON value as CEL sees it through its schema: `integer` → int, `number` → double,
/// objects → maps; the root's `metadata` shows only `name` and `generateName`.
fn to_cel(v: &Value, schema: Option<&Value>) -> cel::Value {
    let ty = schema.and_then(|s| s.get("type")).and_then(Value::as_str);
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (ty, n.as_i64()) {
            (Some("number"), _) | (_, None) => cel::Value::Float(n.as_f64().unwrap_or(0.0)),
            (_, Some(i)) => cel::Value::Int(i),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(items) => {
            let item_schema = schema.and_then(|s| s.get("items"));
            cel::Value::List(Arc::new(
                items.iter().map(|i| to_cel(i, item_schema)).collect(),
            ))
        }
        Value::Object(m) => {
            let props = schema
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object);
            let additional = schema
                .and_then(|s| s.get("additionalProperties"))
                .filter(|a| a.is_object());
            let map: std::collections::HashMap<cel::objects::Key, cel::Value> = m
                .iter()
                .map(|(k, child)| {
                    let s = props.and_then(|p| p.get(k)).or(additional);
                    (cel::objects::Key::from(k.as_str()), to_cel(child, s))
                })
                .collect();
            cel::Value::Map(cel::objects::Map { map: Arc::new(map) })
        }
    }
}

/// The root object as its rules see it: `apiVersion`, `kind`, the schema's fields and
/// `metadata` with only `name` and `generateName` (kube's `WithTypeAndObjectMeta`).
fn root_view(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.retain(|k, _| k == "name" || k == "generateName");
    }
    v
}

/// cel-go's wording of an evaluation error.
fn eval_error(e: &cel::ExecutionError) -> String {
    match e {
        cel::ExecutionError::NoSuchKey(k) => format!("no such key: {k}"),
        cel::ExecutionError::NoSuchOverload(_) => format!("no such overload: {e}"),
        cel::ExecutionError::UndeclaredReference(r) => format!("no such attribute: {r}"),
        other => other.to_string(),
    }
}

/// `optional.of(v)` (or `optional.none()`): `oldSelf` of an `optionalOldSelf` rule.
fn optional_of(v: Option<cel::Value>) -> Result<cel::Value, CelError> {
    let mut ctx = cel::Context::with_env(env().clone());
    let source = match v {
        Some(v) => {
            ctx.add_variable_from_value("v", v);
            "optional.of(v)"
        }
        None => "optional.none()",
    };
    compile(source)?
        .program
        .execute(&ctx)
        .map_err(|e| CelError::Eval(eval_error(&e)))
}

/// Evaluates `expr` with `self` and `oldSelf` bound.
fn run(
    compiled: &Compiled,
    this: &cel::Value,
    old: Option<&cel::Value>,
) -> Result<cel::Value, CelError> {
    let mut ctx = cel::Context::with_env(env().clone());
    ctx.add_variable_from_value("self", this.clone());
    if let Some(old) = old {
        ctx.add_variable_from_value("oldSelf", old.clone());
    }
    compiled
        .program
        .execute(&ctx)
        .map_err(|e| CelError::Eval(eval_error(&e)))
}

/// kube's field path printing: the root is `<nil>`.
fn shown(path: &str) -> &str {
    if path.is_empty() {
        "<nil>"
    } else {
        path
    }
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// Evaluates every rule of `schema` on a custom object (`old`: the stored object, on an
/// update). Returns kube's causes: `spec: Invalid value: "object": <message>`, the root as
/// `<nil>`. Old values follow the object's map keys and the keys of `listType: map` lists;
/// transition rules (reading `oldSelf`) are skipped where there is no old value unless
/// `optionalOldSelf`.
pub fn validate(schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut out = Vec::new();
    let root = root_view(obj);
    let old_root = old.map(root_view);
    validate_node(schema, &root, old_root.as_ref(), "", &mut out);
    out
}

fn validate_node(schema: &Value, v: &Value, old: Option<&Value>, path: &str, out: &mut Vec<Cause>) {
    if v.is_null() {
        return;
    }
    let old = old.filter(|o| !o.is_null());
    validate_rules(schema, v, old, path, out);
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, child_v) in m {
                if path.is_empty() && k == "metadata" {
                    continue;
                }
                let old_child = old.and_then(|o| o.get(k));
                if let Some(s) = props.and_then(|p| p.get(k)) {
                    validate_node(s, child_v, old_child, &child(path, k), out);
                } else if let Some(s) = additional {
                    validate_node(s, child_v, old_child, &format!("{path}[{k}]"), out);
                }
            }
        }
        Value::Array(items) => {
            let Some(s) = schema.get("items").filter(|s| s.is_object()) else {
                return;
            };
            let keys: Vec<&str> =
                if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
                    schema
                        .get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|k| k.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default()
                } else {
                    Vec::new()
                };
            let old_items = old.and_then(Value::as_array);
            for (i, item) in items.iter().enumerate() {
                let old_item = if keys.is_empty() {
                    None
                } else {
                    old_items.and_then(|o| {
                        o.iter()
                            .find(|x| keys.iter().all(|k| x.get(k) == item.get(k)))
                    })
                };
                validate_node(s, item, old_item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn validate_rules(
    schema: &Value,
    v: &Value,
    old: Option<&Value>,
    path: &str,
    out: &mut Vec<Cause>,
) {
    let rules = rules_of(schema);
    if rules.is_empty() {
        return;
    }
    let ty = schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let invalid = |path: &str, detail: String| {
        Cause::new(
            "FieldValueInvalid",
            shown(path),
            format!("Invalid value: {ty:?}: {detail}"),
        )
    };
    let this = to_cel(v, Some(schema));
    let old_cel = old.map(|o| to_cel(o, Some(schema)));
    for r in rules {
        let rule = Rule::from(r);
        if rule.rule.trim().is_empty() {
            continue;
        }
        let compiled = match compile(rule.rule) {
            Ok(c) => c,
            Err(e) => {
                out.push(invalid(path, format!("rule compile error: {e}")));
                continue;
            }
        };
        let optional = rule.optional_old_self == Some(true);
        if compiled.uses_old_self && old_cel.is_none() && !optional {
            continue;
        }
        let old_binding = if optional {
            match optional_of(old_cel.clone()) {
                Ok(o) => Some(o),
                Err(e) => {
                    out.push(invalid(path, e.to_string()));
                    continue;
                }
            }
        } else {
            old_cel.clone()
        };
        match run(&compiled, &this, old_binding.as_ref()) {
            Ok(cel::Value::Bool(true)) => continue,
            Ok(cel::Value::Bool(false)) => {}
            Ok(other) => {
                let e = CelError::WrongType {
                    expected: "bool",
                    got: other.type_of().to_string(),
                };
                out.push(invalid(
                    path,
                    format!("{e} evaluating rule: {}", rule.error_string()),
                ));
                continue;
            }
            Err(e) => {
                let detail = if e.to_string().starts_with("no such overload") {
                    format!("'{e}': call arguments did not match a supported operator, function or macro signature for rule: {}", rule.error_string())
                } else {
                    format!("{e} evaluating rule: {}", rule.error_string())
                };
                out.push(invalid(path, detail));
                continue;
            }
        }
        let at = match resolve_field_path(rule.field_path, schema) {
            Ok(p) if !p.is_empty() => {
                if p.starts_with('[') {
                    format!("{path}{p}")
                } else {
                    child(path, &p)
                }
            }
            _ => path.to_string(),
        };
        // messageExpression sees the rule's non-optional activation, as kube's does.
        let detail = message_expression(&rule, &this, old_cel.as_ref())
            .unwrap_or_else(|| rule.message_or_default());
        out.push(match rule.reason {
            Some("FieldValueForbidden") => Cause::new(
                "FieldValueForbidden",
                shown(&at),
                format!("Forbidden: {detail}"),
            ),
            Some("FieldValueRequired") => Cause::new(
                "FieldValueRequired",
                shown(&at),
                format!("Required value: {detail}"),
            ),
            Some("FieldValueDuplicate") => Cause::new(
                "FieldValueDuplicate",
                shown(&at),
                format!("Duplicate value: {ty:?}"),
            ),
            _ => invalid(&at, detail),
        });
    }
}

/// The `messageExpression`'s message, trimmed; `None` (the static message stands) when it
/// fails, is not a string, is empty or has line breaks — as kube, which only logs those.
fn message_expression(rule: &Rule, this: &cel::Value, old: Option<&cel::Value>) -> Option<String> {
    if rule.message_expression.is_empty() {
        return None;
    }
    let compiled = compile(rule.message_expression).ok()?;
    match run(&compiled, this, old) {
        Ok(cel::Value::String(s)) => {
            let s = s.trim();
            (!s.is_empty() && !s.contains('\n') && s.len() <= 5 * 1024).then(|| s.to_string())
        }
        Ok(_) | Err(_) => {
            tracing::debug!(
                expr = rule.message_expression,
                "messageExpression evaluation failed"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_rule_is_compiled_once_and_errors_are_not_kept() {
        let a = compile("self.size() > 1 && self.size() < 77").unwrap();
        let b = compile("self.size() > 1 && self.size() < 77").unwrap();
        assert!(
            Arc::ptr_eq(&a, &b),
            "the second compile comes from the cache"
        );
        assert!(compile("self.size( >").is_err());
        assert!(compile("self.size( >").is_err());
    }

    fn msgs(causes: &[Cause]) -> Vec<String> {
        causes
            .iter()
            .map(|c| format!("{} {}: {}", c.reason, c.field, c.message))
            .collect()
    }

    #[test]
    fn rules_pass_and_fail() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.replicas <= self.max"},
                {"rule": "self.name.startsWith('a') && self.name.size() < 10", "message": "bad name"},
                {"rule": "self.tags.all(t, t.matches('^[a-z]+$'))", "messageExpression": "'tags must be lowercase, got ' + string(size(self.tags))"},
                {"rule": "!has(self.forbidden)", "reason": "FieldValueForbidden", "fieldPath": ".forbidden", "message": "no"},
            ],
            "properties": {"replicas": {"type": "integer"}, "max": {"type": "integer"},
                "name": {"type": "string"}, "forbidden": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}}}}}});
        let ok = json!({"spec": {"replicas": 1, "max": 3, "name": "abc", "tags": ["x", "y"]}});
        assert!(validate(&schema, &ok, None).is_empty());
        let bad = json!({"spec": {"replicas": 5, "max": 3, "name": "zed", "tags": ["X"], "forbidden": "x"}});
        assert_eq!(
            msgs(&validate(&schema, &bad, None)),
            vec![
                "FieldValueInvalid spec: Invalid value: \"object\": failed rule: self.replicas <= self.max",
                "FieldValueInvalid spec: Invalid value: \"object\": bad name",
                "FieldValueInvalid spec: Invalid value: \"object\": tags must be lowercase, got 1",
                "FieldValueForbidden spec.forbidden: Forbidden: no",
            ]
        );
    }

    #[test]
    fn transition_rules_need_an_old_value() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"id": {"type": "string",
                "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "id is immutable"}]}}}}});
        let new = json!({"spec": {"id": "b"}});
        assert!(validate(&schema, &new, None).is_empty());
        assert!(validate(&schema, &new, Some(&json!({"spec": {"id": "b"}}))).is_empty());
        assert_eq!(
            msgs(&validate(
                &schema,
                &new,
                Some(&json!({"spec": {"id": "a"}}))
            )),
            vec!["FieldValueInvalid spec.id: Invalid value: \"string\": id is immutable"]
        );
        let optional = json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [{"rule": "!oldSelf.hasValue() || oldSelf.value().n <= self.n", "optionalOldSelf": true}],
            "properties": {"n": {"type": "integer"}}}}});
        assert_eq!(
            msgs(&validate(&optional, &json!({"spec": {"n": 1}}), None)),
            Vec::<String>::new()
        );
        assert_eq!(
            validate(
                &optional,
                &json!({"spec": {"n": 1}}),
                Some(&json!({"spec": {"n": 2}}))
            )
            .len(),
            1
        );
    }

    #[test]
    fn root_rules_and_errors() {
        let schema = json!({"type": "object", "x-kubernetes-validations": [
            {"rule": "self.metadata.name.startsWith('w')"},
            {"rule": "self.spec.missing == 1"},
        ], "properties": {"spec": {"type": "object"}}});
        let obj = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a", "uid": "u"}, "spec": {}});
        assert_eq!(
            msgs(&validate(&schema, &obj, None)),
            vec![
                "FieldValueInvalid <nil>: Invalid value: \"object\": failed rule: self.metadata.name.startsWith('w')",
                "FieldValueInvalid <nil>: Invalid value: \"object\": no such key: missing evaluating rule: self.spec.missing == 1",
            ]
        );
    }

    #[test]
    fn compile_checks() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.x >"},
                {"rule": "self.a.all(i, i > 0) && size(self.b) > 0 && self.a.map(j, j * 2).exists(k, k > 2)"},
                {"rule": "self.a.all(i, i > 0) && i > 0"},
                {"rule": "foo == 1"},
                {"rule": "true", "reason": "Bogus"},
                {"rule": "true", "fieldPath": ".nope"},
            ],
            "properties": {"a": {"type": "array", "items": {"type": "integer"}}, "b": {"type": "string"}}}}});
        let causes = check_rules(&schema, "spec.validation.openAPIV3Schema");
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule",
                "spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[2].rule",
                "spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[3].rule",
                "spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[4].reason",
                "spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[5].fieldPath",
            ]
        );
        assert!(
            causes[0].message.starts_with("Invalid value: apiextensions.ValidationRule{Rule:\"self.x >\", Message:\"\", MessageExpression:\"\", Reason:(*apiextensions.FieldValueErrorReason)(nil), FieldPath:\"\", OptionalOldSelf:(*bool)(nil)}: compilation failed: ERROR: <input>:1:"),
            "{}",
            causes[0].message
        );
        assert!(causes[1]
            .message
            .ends_with("undeclared reference to 'i' (in container '')"));
        assert!(causes[2].message.ends_with(
            "compilation failed: ERROR: <input>:1:1: undeclared reference to 'foo' (in container '')"
        ));
    }

    #[test]
    fn map_list_items_follow_their_keys() {
        let schema = json!({"type": "object", "properties": {"ports": {"type": "array",
            "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}},
                "x-kubernetes-validations": [{"rule": "self.port == oldSelf.port", "message": "port is immutable"}]}}}});
        let old = json!({"ports": [{"name": "a", "port": 1}, {"name": "b", "port": 2}]});
        let new = json!({"ports": [{"name": "b", "port": 2}, {"name": "a", "port": 3}, {"name": "c", "port": 9}]});
        assert_eq!(
            msgs(&validate(&schema, &new, Some(&old))),
            vec!["FieldValueInvalid ports[1]: Invalid value: \"object\": port is immutable"]
        );
    }
}
