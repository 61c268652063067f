//! Name and label validation with `k8s.io/apimachinery/pkg/util/validation`'s messages.

use crate::status::Cause;

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

/// How a kind's names are validated (its `ValidateXxxName` in kube).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 subdomain (most kinds).
    Subdomain,
    /// DNS-1123 label (namespaces).
    Label,
    /// DNS-1035 label (services).
    Dns1035,
    /// Path segment only (RBAC roles and bindings, …).
    PathSegment,
}

impl NameRule {
    /// The rule of a resource (by plural, as kube's per-kind validation picks).
    pub fn of(group: &str, plural: &str) -> Self {
        match (group, plural) {
            ("", "namespaces") => NameRule::Label,
            ("", "services") => NameRule::Dns1035,
            ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
            _ => NameRule::Subdomain,
        }
    }
}

fn is_label(s: &str, first_alpha: bool) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && (if first_alpha {
            b[0].is_ascii_lowercase()
        } else {
            b[0].is_ascii_alphanumeric()
        })
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Errors of a name under `rule`, each a message as kube words it.
pub fn name_errors(name: &str, rule: NameRule) -> Vec<String> {
    let mut errs = Vec::new();
    match name {
        "." => errs.push("may not be '.'".to_string()),
        ".." => errs.push("may not be '..'".to_string()),
        _ => {
            if name.contains('/') {
                errs.push("may not contain '/'".into());
            }
            if name.contains('%') {
                errs.push("may not contain '%'".into());
            }
        }
    }
    match rule {
        NameRule::PathSegment => {}
        NameRule::Label | NameRule::Dns1035 => {
            if name.len() > 63 {
                errs.push("must be no more than 63 characters".into());
            }
            if rule == NameRule::Label && !is_label(name, false) {
                errs.push(DNS1123_LABEL_MSG.into());
            }
            if rule == NameRule::Dns1035 && !is_label(name, true) {
                errs.push(DNS1035_LABEL_MSG.into());
            }
        }
        NameRule::Subdomain => {
            if name.len() > 253 {
                errs.push("must be no more than 253 characters".into());
            }
            if !name.split('.').all(|l| is_label(l, false)) {
                errs.push(DNS1123_SUBDOMAIN_MSG.into());
            }
        }
    }
    errs
}

fn is_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Errors of a label/annotation key (`IsQualifiedName`: `[prefix/]name`).
pub fn qualified_name_errors(key: &str) -> Vec<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let mut errs = Vec::new();
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else {
        if name.len() > 63 {
            errs.push("name part must be no more than 63 characters".into());
        }
        if !is_qualified_part(&name[..name.len().min(63)]) || name.contains('/') {
            errs.push(QUALIFIED_NAME_MSG.into());
        }
    }
    if let Some(p) = prefix {
        if p.is_empty() {
            errs.push("prefix part must be non-empty".into());
        } else {
            for e in name_errors(p, NameRule::Subdomain) {
                if !e.starts_with("may not") {
                    errs.push(format!("prefix part {e}"));
                }
            }
        }
    }
    errs
}

/// Errors of a label value (`IsValidLabelValue`).
pub fn label_value_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !value.is_empty() && !is_qualified_part(&value[..value.len().min(63)]) {
        errs.push(LABEL_VALUE_MSG.into());
    }
    errs
}

/// Field errors of `metadata.labels` and the keys of `metadata.annotations`.
pub fn metadata_map_causes(meta: &serde_json::Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if let Some(labels) = meta.get("labels").and_then(|l| l.as_object()) {
        for (k, v) in labels {
            for e in qualified_name_errors(k) {
                causes.push(Cause::invalid("metadata.labels", k, &e));
            }
            let v = v.as_str().unwrap_or_default();
            for e in label_value_errors(v) {
                causes.push(Cause::invalid("metadata.labels", v, &e));
            }
        }
    }
    if let Some(annotations) = meta.get("annotations").and_then(|l| l.as_object()) {
        for k in annotations.keys() {
            for e in qualified_name_errors(&k.to_ascii_lowercase()) {
                causes.push(Cause::invalid("metadata.annotations", k, &e));
            }
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_by_rule() {
        assert!(name_errors("web-1.example", NameRule::Subdomain).is_empty());
        assert_eq!(
            name_errors("Bad_Name", NameRule::Subdomain),
            vec![DNS1123_SUBDOMAIN_MSG]
        );
        assert_eq!(name_errors("a.b", NameRule::Label), vec![DNS1123_LABEL_MSG]);
        assert_eq!(
            name_errors("1abc", NameRule::Dns1035),
            vec![DNS1035_LABEL_MSG]
        );
        assert!(name_errors("1abc", NameRule::Label).is_empty());
        assert_eq!(name_errors(&"a".repeat(64), NameRule::Label).len(), 1);
        assert!(name_errors("system:admin", NameRule::PathSegment).is_empty());
        assert_eq!(
            name_errors("a/b", NameRule::PathSegment),
            vec!["may not contain '/'"]
        );
        assert!(qualified_name_errors("app.kubernetes.io/name").is_empty());
        assert!(!qualified_name_errors("bad key").is_empty());
        assert!(label_value_errors("").is_empty());
        assert!(!label_value_errors("-x").is_empty());
    }
}
