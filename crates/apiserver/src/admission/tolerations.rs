//! DefaultTolerationSeconds (`plugin/pkg/admission/defaulttolerationseconds`): a pod that does
//! not tolerate the `node.kubernetes.io/not-ready` or `node.kubernetes.io/unreachable`
//! `NoExecute` taints gets a toleration of each for 300 s, so the node lifecycle controller
//! evicts it five minutes after its node stops reporting.

use serde_json::{json, Value};

/// kube's `--default-not-ready-toleration-seconds` / `--default-unreachable-toleration-seconds`.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// The admission's two `tolerationSeconds` (kube-apiserver's flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultTolerations {
    /// `--default-not-ready-toleration-seconds`.
    pub not_ready: i64,
    /// `--default-unreachable-toleration-seconds`.
    pub unreachable: i64,
}

impl Default for DefaultTolerations {
    fn default() -> Self {
        DefaultTolerations {
            not_ready: DEFAULT_TOLERATION_SECONDS,
            unreachable: DEFAULT_TOLERATION_SECONDS,
        }
    }
}

/// Adds the two default tolerations to a pod `spec` lacking them.
pub fn add_default_toleration_seconds(spec: &mut Value, seconds: DefaultTolerations) {
    let tols = spec["tolerations"].as_array().cloned().unwrap_or_default();
    let covers = |key: &str| {
        tols.iter().any(|t| {
            let k = t["key"].as_str().unwrap_or("");
            let e = t["effect"].as_str().unwrap_or("");
            (k == key || k.is_empty()) && (e == "NoExecute" || e.is_empty())
        })
    };
    let mut out = tols.clone();
    for (key, secs) in [
        ("node.kubernetes.io/not-ready", seconds.not_ready),
        ("node.kubernetes.io/unreachable", seconds.unreachable),
    ] {
        if !covers(key) {
            out.push(
                json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": secs}),
            );
        }
    }
    if out.len() != tols.len() && spec.is_object() {
        spec["tolerations"] = Value::Array(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_tolerations_as_kube() {
        let mut spec = json!({"containers": []});
        add_default_toleration_seconds(&mut spec, DefaultTolerations::default());
        assert_eq!(
            spec["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ])
        );
        // An own toleration of one of them is kept, the other added.
        let mut spec = json!({"tolerations": [
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}
        ]});
        add_default_toleration_seconds(&mut spec, DefaultTolerations::default());
        let t = spec["tolerations"].as_array().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0]["tolerationSeconds"], 2);
        assert_eq!(t[1]["key"], "node.kubernetes.io/not-ready");
        // Tolerating everything (empty key, Exists) needs nothing more.
        let mut spec = json!({"tolerations": [{"operator": "Exists"}]});
        add_default_toleration_seconds(&mut spec, DefaultTolerations::default());
        assert_eq!(spec["tolerations"].as_array().unwrap().len(), 1);
    }
}
