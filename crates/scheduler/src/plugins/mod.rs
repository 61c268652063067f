//! kube-scheduler's default plugins (kubernetes/kubernetes `pkg/scheduler/framework/plugins`),
//! as pure functions over k8s-openapi types: filters return a [`Status`] with kube's reason
//! strings, scores return raw per-node scores that the plugin's normaliser brings to
//! `0..=100`.
//!
//! [`Status`]: crate::framework::Status

pub mod fit;
pub mod image;
pub mod interpod;
pub mod node;
pub mod spread;
pub mod volume;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `labels` match `selector` (kube's `metav1.LabelSelectorAsSelector`: matchLabels and
/// matchExpressions ANDed; an empty selector matches everything). `None` matches nothing, as
/// a nil selector does in affinity terms.
pub fn selector_matches(
    selector: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(s) = selector else {
        return false;
    };
    for (k, v) in s.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            return false;
        }
    }
    for e in s.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or(&[]);
        let got = labels.get(&e.key);
        let ok = match e.operator.as_str() {
            "In" => got.is_some_and(|g| values.contains(g)),
            "NotIn" => got.is_none_or(|g| !values.contains(g)),
            "Exists" => got.is_some(),
            "DoesNotExist" => got.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors() {
        let sel: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]
        }))
        .unwrap();
        let l = |v: serde_json::Value| -> BTreeMap<String, String> {
            serde_json::from_value(v).unwrap()
        };
        assert!(selector_matches(Some(&sel), &l(json!({"app": "web"}))));
        assert!(!selector_matches(
            Some(&sel),
            &l(json!({"app": "web", "tier": "db"}))
        ));
        assert!(selector_matches(
            Some(&LabelSelector::default()),
            &l(json!({}))
        ));
        assert!(!selector_matches(None, &l(json!({}))));
    }
}
