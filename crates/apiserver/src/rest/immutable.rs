//! Update validation of immutable fields, as kube's `ValidateXxxUpdate` functions word it
//! (422 Invalid naming the field): immutable ConfigMaps and Secrets, a Secret's `type`, the
//! `spec.selector` of apps/v1 workloads and Jobs, a Job's `spec.template` and
//! `spec.completions`, a Service's `spec.clusterIP` once allocated.

use serde_json::{json, Value};

use crate::registry::ResourceInfo;
use crate::status::Cause;

/// kube's `field.Forbidden(path, detail)`.
fn forbidden(field: &str, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueForbidden".into(),
        message: format!("Forbidden: {detail}"),
        field: field.into(),
    }
}

/// kube's `field.Invalid(path, value, detail)` for a structured value (printed as JSON).
fn invalid_value(field: &str, value: &Value, detail: &str) -> Cause {
    let shown = match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    Cause {
        reason: "FieldValueInvalid".into(),
        message: format!("Invalid value: {shown}: {detail}"),
        field: field.into(),
    }
}

fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .fold(v, |cur, k| cur.get(k).unwrap_or(&Value::Null))
}

/// Adjusts `new` for fields the server keeps (a Service's allocated clusterIP when the update
/// leaves it out) and returns the immutable-field errors of the update `old` → `new`.
pub(crate) fn check(info: &ResourceInfo, old: &Value, new: &mut Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let immutable = |path: &str, causes: &mut Vec<Cause>| {
        if at(old, path) != at(new, path) {
            causes.push(invalid_value(path, at(new, path), "field is immutable"));
        }
    };
    match (info.group, info.plural) {
        ("", "configmaps" | "secrets") => {
            if old["immutable"] == true {
                if new["immutable"] != true {
                    causes.push(forbidden(
                        "immutable",
                        "field is immutable when `immutable` is set",
                    ));
                }
                for f in ["data", "binaryData"] {
                    if old.get(f) != new.get(f) {
                        causes.push(forbidden(f, "field is immutable when `immutable` is set"));
                    }
                }
            }
            if info.plural == "secrets" {
                let old_type = old["type"].as_str().unwrap_or("Opaque");
                let new_type = new["type"].as_str().unwrap_or("Opaque");
                if old_type != new_type {
                    causes.push(invalid_value(
                        "type",
                        &json!(new_type),
                        "field is immutable",
                    ));
                }
            }
        }
        ("", "pods") => causes.extend(crate::validation::pod::pod_update_causes(old, new)),
        ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets") => {
            immutable("spec.selector", &mut causes);
        }
        ("batch", "jobs") => {
            immutable("spec.selector", &mut causes);
            immutable("spec.completions", &mut causes);
            immutable("spec.template", &mut causes);
        }
        ("", "services") => {
            let old_ip = old["spec"]["clusterIP"].as_str().unwrap_or("");
            let new_ip = new["spec"]["clusterIP"].as_str().unwrap_or("");
            if !old_ip.is_empty() && new_ip.is_empty() && new["spec"].is_object() {
                new["spec"]["clusterIP"] = json!(old_ip);
                if let Some(ips) = old["spec"].get("clusterIPs") {
                    new["spec"]["clusterIPs"] = ips.clone();
                }
            } else if !old_ip.is_empty() && new_ip != old_ip {
                causes.push(invalid_value(
                    "spec.clusterIPs[0]",
                    &json!([new_ip]),
                    "may not change once set",
                ));
            }
        }
        _ => {}
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immutable_fields() {
        let reg = crate::registry::Registry::builtin();
        let cm = reg.lookup("", "v1", "configmaps").unwrap();
        let old = json!({"immutable": true, "data": {"a": "1"}});
        let mut new = json!({"immutable": true, "data": {"a": "2"}});
        let c = check(cm, &old, &mut new);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].field, "data");
        assert_eq!(
            c[0].message,
            "Forbidden: field is immutable when `immutable` is set"
        );
        let mut same = old.clone();
        assert!(check(cm, &old, &mut same).is_empty());
        let d = reg.lookup("apps", "v1", "deployments").unwrap();
        let old = json!({"spec": {"selector": {"matchLabels": {"a": "b"}}}});
        let mut new = json!({"spec": {"selector": {"matchLabels": {"a": "c"}}}});
        let c = check(d, &old, &mut new);
        assert_eq!(
            c[0].message,
            r#"Invalid value: {"matchLabels":{"a":"c"}}: field is immutable"#
        );
        let svc = reg.lookup("", "v1", "services").unwrap();
        let old = json!({"spec": {"clusterIP": "10.43.0.10", "clusterIPs": ["10.43.0.10"]}});
        let mut kept = json!({"spec": {"ports": []}});
        assert!(check(svc, &old, &mut kept).is_empty());
        assert_eq!(kept["spec"]["clusterIP"], "10.43.0.10");
        let mut changed = json!({"spec": {"clusterIP": "10.43.0.11"}});
        assert_eq!(
            check(svc, &old, &mut changed)[0].field,
            "spec.clusterIPs[0]"
        );
    }
}
