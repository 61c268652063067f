//! Validation as kube-apiserver's: names and labels with `k8s.io/apimachinery/pkg/util/validation`'s
//! messages, and each built-in kind's spec as `k8s.io/kubernetes/pkg/apis/*/validation` checks it
//! ([`spec_causes`]), each error a `field.Error` with kube's wording and field path.

mod netpol;
mod other;
pub(crate) mod pod;
mod service;
mod workloads;

pub use netpol::network_policy_causes;

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

/// A CIDR as kube's `ParseCIDRSloppy` reads it: the address, the prefix length and the
/// family's width (32 or 128); `None` when it is not one.
pub(crate) fn parse_cidr(s: &str) -> Option<(std::net::IpAddr, u8, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: std::net::IpAddr = ip.parse().ok()?;
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) || len.len() > 3 {
        return None;
    }
    let len: u8 = len.parse().ok()?;
    let width = if ip.is_ipv4() { 32 } else { 128 };
    (len <= width).then_some((ip, len, width))
}

/// The first `len` bits of `ip` as a number (IPv4 addresses as IPv4-mapped IPv6).
pub(crate) fn masked(ip: std::net::IpAddr, len: u8, width: u8) -> u128 {
    let bits = match ip {
        std::net::IpAddr::V4(v) => u128::from(u32::from(v)),
        std::net::IpAddr::V6(v) => u128::from(v),
    };
    let keep = u32::from(len);
    let shift = u32::from(width) - keep;
    if keep == 0 {
        0
    } else {
        (bits >> shift) << shift
    }
}

pub(crate) const CIDR_MSG: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";
pub(crate) const PORT_NUM_MSG: &str = "must be between 1 and 65535, inclusive";

/// `field.NotSupported(path, value, supported)`.
pub(crate) fn not_supported(field: &str, value: &str, supported: &[&str]) -> Cause {
    let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    Cause {
        reason: "FieldValueNotSupported".into(),
        message: format!(
            "Unsupported value: {value:?}: supported values: {}",
            list.join(", ")
        ),
        field: field.into(),
    }
}

/// `field.Invalid` of a number (printed bare, as Go's `%v` prints it).
pub(crate) fn invalid_num(field: &str, value: i64, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid".into(),
        message: format!("Invalid value: {value}: {detail}"),
        field: field.into(),
    }
}

/// `field.Duplicate(path, value)` of a string.
pub(crate) fn duplicate(field: &str, value: &str) -> Cause {
    Cause {
        reason: "FieldValueDuplicate".into(),
        message: format!("Duplicate value: {value:?}"),
        field: field.into(),
    }
}

/// `field.NotFound(path, value)` of a string.
pub(crate) fn not_found(field: &str, value: &str) -> Cause {
    Cause {
        reason: "FieldValueNotFound".into(),
        message: format!("Not found: {value:?}"),
        field: field.into(),
    }
}

/// `field.Forbidden(path, detail)`.
pub(crate) fn forbidden(field: &str, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueForbidden".into(),
        message: format!("Forbidden: {detail}"),
        field: field.into(),
    }
}

/// `field.Invalid` of a value printed as it is given (a Go `%#v` or `Stringer` rendering).
pub(crate) fn invalid_raw(field: &str, rendered: &str, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid".into(),
        message: format!("Invalid value: {rendered}: {detail}"),
        field: field.into(),
    }
}

/// A `map[string]string` as Go's `%#v` prints it: `map[string]string{"a":"b", "c":"d"}`
/// (keys sorted).
pub(crate) fn go_string_map(m: &serde_json::Value) -> String {
    let mut pairs: Vec<(String, String)> = m
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    pairs.sort();
    if m.is_null() {
        return "map[string]string(nil)".into();
    }
    let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect();
    format!("map[string]string{{{}}}", body.join(", "))
}

/// kube's `ValidateNonnegativeField`: `Invalid value: -1: must be greater than or equal to 0`.
pub(crate) fn nonnegative(obj: &serde_json::Value, key: &str, path: &str, out: &mut Vec<Cause>) {
    if let Some(n) = obj[key].as_i64().filter(|n| *n < 0) {
        out.push(invalid_num(&format!("{path}.{key}"), n, IS_NEGATIVE_MSG));
    }
}

/// `validation.IsNegativeErrorMsg`.
pub(crate) const IS_NEGATIVE_MSG: &str = "must be greater than or equal to 0";

/// Whether `s` is a DNS-1123 label of at most 63 characters.
pub(crate) fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && is_label(s, false)
}

/// The causes of `obj`'s kind-specific fields, as kube's `ValidateXxx` for the kind finds them
/// (after defaulting, as kube validates). Kinds without checks here have none.
pub fn spec_causes(group: &str, plural: &str, obj: &serde_json::Value) -> Vec<Cause> {
    match (group, plural) {
        ("", "pods") => pod::pod_spec_causes(&obj["spec"], "spec"),
        ("", "podtemplates") => pod::template_causes(&obj["template"], "template"),
        ("", "services") => service::service_causes(obj),
        ("", "configmaps") | ("", "secrets") => config_key_causes(obj),
        ("", "replicationcontrollers") => workloads::replication_controller_causes(obj),
        ("apps", "deployments") => workloads::deployment_causes(obj),
        ("apps", "replicasets") => workloads::replica_set_causes(obj),
        ("apps", "statefulsets") => workloads::stateful_set_causes(obj),
        ("apps", "daemonsets") => workloads::daemon_set_causes(obj),
        ("batch", "jobs") => workloads::job_causes(&obj["spec"], "spec"),
        ("batch", "cronjobs") => workloads::cron_job_causes(obj),
        ("networking.k8s.io", "networkpolicies") => network_policy_causes(obj),
        ("networking.k8s.io", "ingresses") => other::ingress_causes(obj),
        ("autoscaling", "horizontalpodautoscalers") => other::hpa_causes(obj),
        ("policy", "poddisruptionbudgets") => other::pdb_causes(obj),
        _ => Vec::new(),
    }
}

const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";

/// The keys of a ConfigMap's or Secret's `data` and `binaryData` (`IsConfigMapKey`).
fn config_key_causes(obj: &serde_json::Value) -> Vec<Cause> {
    let mut out = Vec::new();
    for map in ["data", "binaryData"] {
        for key in obj[map].as_object().into_iter().flatten().map(|(k, _)| k) {
            let path = format!("{map}[{key}]");
            if key.len() > 253 {
                out.push(Cause::invalid(
                    &path,
                    key,
                    "must be no more than 253 characters",
                ));
            }
            if key.is_empty()
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                out.push(Cause::invalid(&path, key, CONFIG_KEY_MSG));
            }
            if key == "." {
                out.push(Cause::invalid(&path, key, "must not be '.'"));
            } else if key == ".." {
                out.push(Cause::invalid(&path, key, "must not be '..'"));
            } else if key.starts_with("..") {
                out.push(Cause::invalid(&path, key, "must not start with '..'"));
            }
        }
    }
    out
}

/// `validation.IsValidPortName`'s messages.
pub(crate) fn port_name_errors(name: &str) -> Vec<&'static str> {
    let mut errs = Vec::new();
    if name.len() > 15 {
        errs.push("must be no more than 15 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if name.contains("--") {
        errs.push("must not contain consecutive hyphens");
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)");
    }
    if name.starts_with('-') || name.ends_with('-') {
        errs.push("must not begin or end with a hyphen");
    }
    errs
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
