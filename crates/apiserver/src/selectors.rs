//! Label selectors (`k8s.io/apimachinery/pkg/labels`'s grammar: `=`, `==`, `!=`, `in`,
//! `notin`, exists, `!key`, `>`/`<`) and field selectors (`k8s.io/apimachinery/pkg/fields`:
//! `f=v`, `f==v`, `f!=v`, with the fields each kind supports).

use std::collections::BTreeSet;

use serde_json::Value;

use crate::validation::{label_value_errors, qualified_name_errors};

/// A selector that could not be parsed or names an unsupported field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    /// The label selector grammar was violated (message as kube's parser words it).
    #[error("{0}")]
    Label(String),
    /// `invalid selector: 'x'; can't understand 'x'`.
    #[error("invalid selector: '{0}'; can't understand '{1}'")]
    FieldSyntax(String, String),
    /// `field label not supported: x`.
    #[error("field label not supported: {0}")]
    FieldUnsupported(String),
}

/// One requirement's operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    In(BTreeSet<String>),
    NotIn(BTreeSet<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

/// A parsed label selector: every requirement must hold (empty = everything).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<(String, Op)>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Not,
    NotEq,
    Eq,
    DoubleEq,
    Gt,
    Lt,
    In,
    NotInT,
    Open,
    Close,
    Comma,
    End,
}

impl Tok {
    fn text(&self) -> String {
        match self {
            Tok::Ident(s) => s.clone(),
            Tok::Not => "!".into(),
            Tok::NotEq => "!=".into(),
            Tok::Eq => "=".into(),
            Tok::DoubleEq => "==".into(),
            Tok::Gt => ">".into(),
            Tok::Lt => "<".into(),
            Tok::In => "in".into(),
            Tok::NotInT => "notin".into(),
            Tok::Open => "(".into(),
            Tok::Close => ")".into(),
            Tok::Comma => ",".into(),
            Tok::End => String::new(),
        }
    }
}

fn lex(s: &str) -> Vec<Tok> {
    let special = |c: char| matches!(c, '!' | '=' | '>' | '<' | '(' | ')' | ',');
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if special(c) {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let (tok, n) = match two.as_str() {
                "!=" => (Tok::NotEq, 2),
                "==" => (Tok::DoubleEq, 2),
                _ => (
                    match c {
                        '!' => Tok::Not,
                        '=' => Tok::Eq,
                        '>' => Tok::Gt,
                        '<' => Tok::Lt,
                        '(' => Tok::Open,
                        ')' => Tok::Close,
                        _ => Tok::Comma,
                    },
                    1,
                ),
            };
            out.push(tok);
            i += n;
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !special(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.push(match word.as_str() {
                "in" => Tok::In,
                "notin" => Tok::NotInT,
                _ => Tok::Ident(word),
            });
        }
    }
    out.push(Tok::End);
    out
}

fn check_key(key: &str) -> Result<(), SelectorError> {
    match qualified_name_errors(key).first() {
        Some(e) => Err(SelectorError::Label(format!(
            "unable to parse requirement: key: Invalid value: {key:?}: {e}"
        ))),
        None => Ok(()),
    }
}

fn check_value(v: &str) -> Result<(), SelectorError> {
    match label_value_errors(v).first() {
        Some(e) => Err(SelectorError::Label(format!(
            "unable to parse requirement: values[0][{v}]: Invalid value: {v:?}: {e}"
        ))),
        None => Ok(()),
    }
}

impl LabelSelector {
    /// A `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`) as requirements,
    /// as `metav1.LabelSelectorAsSelector` converts it; an unknown operator matches nothing.
    pub fn from_json(sel: &Value) -> Self {
        let mut reqs = Vec::new();
        for (k, v) in sel["matchLabels"].as_object().into_iter().flatten() {
            let v = v.as_str().unwrap_or_default().to_string();
            reqs.push((k.clone(), Op::In(BTreeSet::from([v]))));
        }
        for e in sel["matchExpressions"].as_array().into_iter().flatten() {
            let key = e["key"].as_str().unwrap_or_default().to_string();
            let values: BTreeSet<String> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect();
            let op = match e["operator"].as_str().unwrap_or_default() {
                "In" => Op::In(values),
                "NotIn" => Op::NotIn(values),
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                _ => Op::In(BTreeSet::new()),
            };
            reqs.push((key, op));
        }
        LabelSelector(reqs)
    }

    /// Parses a selector string as kube's `labels.Parse`.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let toks = lex(s);
        let mut reqs = Vec::new();
        let mut i = 0;
        let err = |found: &Tok, expected: &str| {
            SelectorError::Label(format!("found '{}', expected: {expected}", found.text()))
        };
        if toks[0] == Tok::End {
            return Ok(LabelSelector(reqs));
        }
        loop {
            // One requirement.
            let negated = toks[i] == Tok::Not;
            if negated {
                i += 1;
            }
            let key = match &toks[i] {
                Tok::Ident(k) => k.clone(),
                other => return Err(err(other, "identifier")),
            };
            check_key(&key)?;
            i += 1;
            if negated {
                reqs.push((key, Op::DoesNotExist));
            } else {
                match &toks[i] {
                    Tok::Comma | Tok::End => reqs.push((key, Op::Exists)),
                    Tok::Eq | Tok::DoubleEq | Tok::NotEq => {
                        let ne = toks[i] == Tok::NotEq;
                        i += 1;
                        let value = match &toks[i] {
                            Tok::Ident(v) => {
                                i += 1;
                                v.clone()
                            }
                            Tok::Comma | Tok::End => String::new(),
                            other => return Err(err(other, "identifier")),
                        };
                        check_value(&value)?;
                        let set = BTreeSet::from([value]);
                        reqs.push((key, if ne { Op::NotIn(set) } else { Op::In(set) }));
                    }
                    Tok::Gt | Tok::Lt => {
                        let gt = toks[i] == Tok::Gt;
                        i += 1;
                        let n = match &toks[i] {
                            Tok::Ident(v) => v.parse::<i64>().map_err(|_| {
                                SelectorError::Label(format!(
                                    "unable to parse requirement: values[0]: Invalid value: {v:?}: for 'Gt', 'Lt' operators, the value must be an integer"
                                ))
                            })?,
                            other => return Err(err(other, "identifier")),
                        };
                        i += 1;
                        reqs.push((key, if gt { Op::Gt(n) } else { Op::Lt(n) }));
                    }
                    Tok::In | Tok::NotInT => {
                        let not = toks[i] == Tok::NotInT;
                        i += 1;
                        if toks[i] != Tok::Open {
                            return Err(err(&toks[i], "'('"));
                        }
                        i += 1;
                        let mut set = BTreeSet::new();
                        loop {
                            match &toks[i] {
                                Tok::Ident(v) => {
                                    check_value(v)?;
                                    set.insert(v.clone());
                                    i += 1;
                                }
                                Tok::Comma | Tok::Close => {
                                    set.insert(String::new());
                                }
                                other => return Err(err(other, "',', ')' or identifier")),
                            }
                            match &toks[i] {
                                Tok::Comma => i += 1,
                                Tok::Close => {
                                    i += 1;
                                    break;
                                }
                                other => return Err(err(other, "',' or ')'")),
                            }
                        }
                        reqs.push((key, if not { Op::NotIn(set) } else { Op::In(set) }));
                    }
                    other => {
                        return Err(err(other, "'=', '!=', '==', 'in', notin'"));
                    }
                }
            }
            match &toks[i] {
                Tok::End => break,
                Tok::Comma => {
                    i += 1;
                    if toks[i] == Tok::End {
                        return Err(err(&toks[i], "identifier after ','"));
                    }
                }
                other => return Err(err(other, "',' or 'end of string'")),
            }
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether the selector selects nothing in particular (matches everything).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `labels` (a `metadata.labels` object, or null) satisfy every requirement.
    pub fn matches(&self, labels: Option<&Value>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|(k, op)| match op {
            Op::In(set) => get(k).is_some_and(|v| set.contains(v)),
            Op::NotIn(set) => get(k).is_none_or(|v| !set.contains(v)),
            Op::Exists => get(k).is_some(),
            Op::DoesNotExist => get(k).is_none(),
            Op::Gt(n) => get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *n),
            Op::Lt(n) => get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *n),
        })
    }
}

/// The field selector fields kube supports for a resource (besides `metadata.name` and
/// `metadata.namespace`, which every kind has), with the JSON path each reads.
fn kind_fields(group: &str, plural: &str) -> &'static [(&'static str, &'static str)] {
    match (group, plural) {
        ("", "pods") => &[
            ("spec.nodeName", "spec.nodeName"),
            ("spec.restartPolicy", "spec.restartPolicy"),
            ("spec.schedulerName", "spec.schedulerName"),
            ("spec.serviceAccountName", "spec.serviceAccountName"),
            ("spec.hostNetwork", "spec.hostNetwork"),
            ("status.phase", "status.phase"),
            ("status.podIP", "status.podIP"),
            ("status.nominatedNodeName", "status.nominatedNodeName"),
        ],
        ("", "events") => &[
            ("involvedObject.kind", "involvedObject.kind"),
            ("involvedObject.namespace", "involvedObject.namespace"),
            ("involvedObject.name", "involvedObject.name"),
            ("involvedObject.uid", "involvedObject.uid"),
            ("involvedObject.apiVersion", "involvedObject.apiVersion"),
            (
                "involvedObject.resourceVersion",
                "involvedObject.resourceVersion",
            ),
            ("involvedObject.fieldPath", "involvedObject.fieldPath"),
            ("reason", "reason"),
            ("reportingComponent", "reportingComponent"),
            ("source", "source.component"),
            ("type", "type"),
        ],
        ("", "secrets") => &[("type", "type")],
        ("", "namespaces") => &[("status.phase", "status.phase")],
        ("", "nodes") => &[("spec.unschedulable", "spec.unschedulable")],
        ("", "replicationcontrollers") | ("apps", "replicasets") => {
            &[("status.replicas", "status.replicas")]
        }
        ("batch", "jobs") => &[("status.successful", "status.successful")],
        ("", "services") => &[
            ("spec.clusterIP", "spec.clusterIP"),
            ("spec.type", "spec.type"),
        ],
        _ => &[],
    }
}

/// Resources served over another resource's storage (see `rest/convert.rs`) and their field
/// label conversion: each label the served version accepts and the storage resource's label
/// it stands for, as kube's `AddFieldLabelConversionFunc` registers them
/// (`pkg/apis/events/v1/conversion.go`: `regarding.*` → `involvedObject.*`,
/// `reportingController` → `reportingComponent`; `involvedObject.*` itself is refused).
#[allow(clippy::type_complexity)]
fn converted_labels(
    group: &str,
    plural: &str,
) -> Option<(
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
)> {
    match (group, plural) {
        ("events.k8s.io", "events") => Some((
            "",
            "events",
            &[
                ("metadata.name", "metadata.name"),
                ("metadata.namespace", "metadata.namespace"),
                ("reason", "reason"),
                ("regarding.kind", "involvedObject.kind"),
                ("regarding.namespace", "involvedObject.namespace"),
                ("regarding.name", "involvedObject.name"),
                ("regarding.uid", "involvedObject.uid"),
                ("regarding.apiVersion", "involvedObject.apiVersion"),
                (
                    "regarding.resourceVersion",
                    "involvedObject.resourceVersion",
                ),
                ("regarding.fieldPath", "involvedObject.fieldPath"),
                ("reportingController", "reportingComponent"),
                ("source", "source"),
                ("type", "type"),
            ],
        )),
        _ => None,
    }
}

/// One `field<op>value` term split at its operator (values keep their escapes).
fn split_term(part: &str) -> Option<(&str, &'static str, &str)> {
    for op in ["!=", "==", "="] {
        if let Some((f, v)) = part.split_once(op) {
            return Some((f, op, v));
        }
    }
    None
}

/// The field selector `s` of the resource `group`/`plural` in the labels of the resource it
/// is stored as, or `None` if it is not served over another resource's storage (kube converts
/// a request's field labels with the scheme's conversion for the request's version before
/// the storage evaluates them).
///
/// # Errors
/// `field label not supported: <label>` for a label the served version does not register,
/// and the parser's syntax error for a term without an operator.
pub fn to_storage_labels(
    s: &str,
    group: &str,
    plural: &str,
) -> Result<Option<String>, SelectorError> {
    let Some((_, _, labels)) = converted_labels(group, plural) else {
        return Ok(None);
    };
    if s.trim().is_empty() {
        return Ok(Some(String::new()));
    }
    let mut out = Vec::new();
    for part in split_unescaped(s, ',') {
        let (field, op, value) =
            split_term(&part).ok_or_else(|| SelectorError::FieldSyntax(s.into(), part.clone()))?;
        let field = field.trim();
        let stored = labels
            .iter()
            .find(|(l, _)| *l == field)
            .map(|(_, c)| *c)
            .ok_or_else(|| SelectorError::FieldUnsupported(field.into()))?;
        out.push(format!("{stored}{op}{value}"));
    }
    Ok(Some(out.join(",")))
}

/// A parsed field selector: `(json path, value, equal?)` terms, all of which must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, String, bool)>);

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            if let Some(l) = out.last_mut() {
                l.push('\\');
                l.push(c);
            }
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            out.push(String::new());
        } else if let Some(l) = out.last_mut() {
            l.push(c);
        }
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl FieldSelector {
    /// Parses `s` for the resource `group`/`plural`.
    pub fn parse(s: &str, group: &str, plural: &str) -> Result<Self, SelectorError> {
        if let Some((g, p, _)) = converted_labels(group, plural) {
            let stored = to_storage_labels(s, group, plural)?.unwrap_or_default();
            return Self::parse(&stored, g, p);
        }
        let mut terms = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector(terms));
        }
        for part in split_unescaped(s, ',') {
            let (field, value, eq) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, true)
            } else {
                return Err(SelectorError::FieldSyntax(s.into(), part));
            };
            let field = field.trim();
            let path = match field {
                "metadata.name" | "metadata.namespace" => field,
                _ => kind_fields(group, plural)
                    .iter()
                    .find(|(f, _)| *f == field)
                    .map(|(_, p)| *p)
                    .ok_or_else(|| SelectorError::FieldUnsupported(field.into()))?,
            };
            terms.push((path.to_string(), unescape(value), eq));
        }
        Ok(FieldSelector(terms))
    }

    /// Whether the selector matches everything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value `metadata.name=X` pins, if any (to read one key instead of a list).
    pub fn name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|(p, _, eq)| p == "metadata.name" && *eq)
            .map(|(_, v, _)| v.as_str())
    }

    /// Whether `obj` satisfies every term (absent fields read as `""`, booleans and numbers
    /// as their text, as kube's field sets do).
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, want, eq)| {
            let mut v = obj;
            for seg in path.split('.') {
                v = v.get(seg).unwrap_or(&Value::Null);
            }
            let got = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                Value::Bool(b) => b.to_string(),
                other => other.to_string(),
            };
            (got == *want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_grammar() {
        let s = LabelSelector::parse("app=web, tier in (fe,be),!legacy,env!=prod,x").unwrap();
        assert_eq!(s.0.len(), 5);
        let labels = json!({"app": "web", "tier": "fe", "x": ""});
        assert!(s.matches(Some(&labels)));
        assert!(!s.matches(Some(
            &json!({"app": "web", "tier": "fe", "legacy": "1", "x": "1"})
        )));
        assert!(!s.matches(None));
        assert!(LabelSelector::parse("a notin (b)").unwrap().matches(None));
        assert!(LabelSelector::parse("a==b")
            .unwrap()
            .matches(Some(&json!({"a": "b"}))));
        assert!(LabelSelector::parse("n>3")
            .unwrap()
            .matches(Some(&json!({"n": "4"}))));
        assert!(LabelSelector::parse("").unwrap().is_empty());
        assert_eq!(
            LabelSelector::parse("a=b c").unwrap_err().to_string(),
            "found 'c', expected: ',' or 'end of string'"
        );
        assert_eq!(
            LabelSelector::parse("a in b").unwrap_err().to_string(),
            "found 'b', expected: '('"
        );
        assert!(LabelSelector::parse("bad key!").is_err());
        assert!(LabelSelector::parse("a=,").is_err());
        assert!(LabelSelector::parse("a=b=c").is_err());
    }

    #[test]
    fn field_selectors() {
        let f = FieldSelector::parse("metadata.name=x,status.phase!=Running", "", "pods").unwrap();
        assert_eq!(f.name(), Some("x"));
        assert!(f.matches(&json!({"metadata": {"name": "x"}, "status": {"phase": "Pending"}})));
        assert!(!f.matches(&json!({"metadata": {"name": "x"}, "status": {"phase": "Running"}})));
        assert_eq!(
            FieldSelector::parse("spec.foo=1", "", "configmaps")
                .unwrap_err()
                .to_string(),
            "field label not supported: spec.foo"
        );
        assert_eq!(
            FieldSelector::parse("nonsense", "", "pods")
                .unwrap_err()
                .to_string(),
            "invalid selector: 'nonsense'; can't understand 'nonsense'"
        );
        let ev = FieldSelector::parse("involvedObject.name=p,type=Normal", "", "events").unwrap();
        assert!(ev.matches(&json!({"involvedObject": {"name": "p"}, "type": "Normal"})));
        let esc = FieldSelector::parse(r"metadata.name=a\,b", "", "pods").unwrap();
        assert_eq!(esc.name(), Some("a,b"));
    }
}
