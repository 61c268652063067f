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
