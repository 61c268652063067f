//! Workloads as kube's `pkg/apis/apps/validation` and `pkg/apis/batch/validation` check them:
//! replica counts, selectors that select their template, the template's pod spec and the
//! restart policy each controller allows, strategies.

use serde_json::Value;

use super::pod::template_causes;
use super::{forbidden, go_string_map, invalid_num, invalid_raw, nonnegative, not_supported};
use crate::selectors::LabelSelector;
use crate::status::Cause;

/// kube's rendering of an empty `*metav1.LabelSelector` in "empty selector" errors.
fn selector_rendering(sel: &Value) -> String {
    let labels = if sel["matchLabels"].is_null() {
        "map[string]string(nil)".to_string()
    } else {
        go_string_map(&sel["matchLabels"])
    };
    let exprs = if sel["matchExpressions"].is_null() {
        "[]v1.LabelSelectorRequirement(nil)"
    } else {
        "[]v1.LabelSelectorRequirement{}"
    };
    format!("v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{exprs}}}")
}

/// `spec.selector` (required, non-empty) selects `spec.template`'s labels; the template's
/// pod spec; its restart policy among `restart`.
fn selected_template(spec: &Value, restart: &[&str], out: &mut Vec<Cause>) {
    let sel = &spec["selector"];
    if sel.is_null() {
        out.push(Cause::required("spec.selector", ""));
    } else {
        let empty = sel["matchLabels"].as_object().is_none_or(|m| m.is_empty())
            && sel["matchExpressions"]
                .as_array()
                .is_none_or(|a| a.is_empty());
        if empty {
            out.push(invalid_raw(
                "spec.selector",
                &selector_rendering(sel),
                "empty selector is invalid for deployment",
            ));
        } else if !spec["template"].is_null() {
            let labels = &spec["template"]["metadata"]["labels"];
            if !LabelSelector::from_json(sel).matches(Some(labels)) {
                out.push(invalid_raw(
                    "spec.template.metadata.labels",
                    &go_string_map(labels),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    template_pod(spec, restart, out);
}

/// The template's pod spec and its restart policy among `restart`.
fn template_pod(spec: &Value, restart: &[&str], out: &mut Vec<Cause>) {
    out.extend(template_causes(&spec["template"], "spec.template"));
    let policy = spec["template"]["spec"]["restartPolicy"]
        .as_str()
        .unwrap_or_default();
    let known = ["Always", "OnFailure", "Never"].contains(&policy);
    if known && !restart.contains(&policy) {
        out.push(not_supported(
            "spec.template.spec.restartPolicy",
            policy,
            restart,
        ));
    }
}

/// `spec.replicas ≥ 0`.
fn replicas(spec: &Value, out: &mut Vec<Cause>) {
    nonnegative(spec, "replicas", "spec", out);
}

/// `ValidateDeploymentSpec`.
pub(crate) fn deployment_causes(obj: &Value) -> Vec<Cause> {
    let spec = &obj["spec"];
    let mut out = Vec::new();
    replicas(spec, &mut out);
    selected_template(spec, &["Always"], &mut out);
    let strategy = &spec["strategy"];
    match strategy["type"].as_str() {
        None | Some("RollingUpdate") => {
            let ru = &strategy["rollingUpdate"];
            let zero = |v: &Value| match v {
                Value::Number(n) => n.as_i64() == Some(0),
                Value::String(s) => s == "0%" || s == "0",
                _ => false,
            };
            if zero(&ru["maxUnavailable"]) && zero(&ru["maxSurge"]) {
                let shown = match &ru["maxUnavailable"] {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                out.push(invalid_raw(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    &shown,
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
            if let Some(pct) = ru["maxUnavailable"]
                .as_str()
                .and_then(|s| s.strip_suffix('%'))
                .and_then(|n| n.parse::<i64>().ok())
            {
                if pct > 100 {
                    out.push(Cause::invalid(
                        "spec.strategy.rollingUpdate.maxUnavailable",
                        &format!("{pct}%"),
                        "must not be greater than 100%",
                    ));
                }
            }
        }
        Some("Recreate") => {
            if !strategy["rollingUpdate"].is_null() {
                out.push(forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        Some(other) => out.push(not_supported(
            "spec.strategy.type",
            other,
            &["Recreate", "RollingUpdate"],
        )),
    }
    nonnegative(spec, "minReadySeconds", "spec", &mut out);
    nonnegative(spec, "revisionHistoryLimit", "spec", &mut out);
    if let Some(deadline) = spec["progressDeadlineSeconds"].as_i64() {
        if deadline <= spec["minReadySeconds"].as_i64().unwrap_or(0) {
            out.push(invalid_num(
                "spec.progressDeadlineSeconds",
                deadline,
                "must be greater than minReadySeconds",
            ));
        }
    }
    out
}

/// `ValidateReplicaSetSpec`.
pub(crate) fn replica_set_causes(obj: &Value) -> Vec<Cause> {
    let spec = &obj["spec"];
    let mut out = Vec::new();
    replicas(spec, &mut out);
    nonnegative(spec, "minReadySeconds", "spec", &mut out);
    selected_template(spec, &["Always"], &mut out);
    out
}

/// `ValidateReplicationControllerSpec` (its selector is a plain map, defaulted from the
/// template's labels).
pub(crate) fn replication_controller_causes(obj: &Value) -> Vec<Cause> {
    let spec = &obj["spec"];
    let mut out = Vec::new();
    replicas(spec, &mut out);
    nonnegative(spec, "minReadySeconds", "spec", &mut out);
    if let Some(sel) = spec["selector"].as_object().filter(|m| !m.is_empty()) {
        let labels = &spec["template"]["metadata"]["labels"];
        let all = sel
            .iter()
            .all(|(k, v)| labels.get(k).and_then(Value::as_str) == v.as_str());
        if !spec["template"].is_null() && !all {
            out.push(invalid_raw(
                "spec.template.metadata.labels",
                &go_string_map(labels),
                "`selector` does not match template `labels`",
            ));
        }
    }
    template_pod(spec, &["Always"], &mut out);
    out
}

/// `ValidateStatefulSetSpec`.
pub(crate) fn stateful_set_causes(obj: &Value) -> Vec<Cause> {
    let spec = &obj["spec"];
    let mut out = Vec::new();
    if let Some(p) = spec["podManagementPolicy"].as_str() {
        if p != "OrderedReady" && p != "Parallel" {
            out.push(Cause::invalid(
                "spec.podManagementPolicy",
                p,
                "must be 'OrderedReady' or 'Parallel'",
            ));
        }
    }
    replicas(spec, &mut out);
    nonnegative(spec, "minReadySeconds", "spec", &mut out);
    // The pods' volumes include one per volumeClaimTemplate (the controller adds them), so
    // mounts may name those.
    let mut spec = spec.clone();
    let claims: Vec<Value> = spec["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["metadata"]["name"].as_str())
        .map(|n| serde_json::json!({"name": n, "persistentVolumeClaim": {"claimName": n}}))
        .collect();
    if !claims.is_empty() && spec["template"]["spec"].is_object() {
        let vols = &mut spec["template"]["spec"]["volumes"];
        if !vols.is_array() {
            *vols = Value::Array(Vec::new());
        }
        if let Some(v) = vols.as_array_mut() {
            let have: Vec<String> = v
                .iter()
                .filter_map(|x| x["name"].as_str().map(String::from))
                .collect();
            v.extend(
                claims
                    .into_iter()
                    .filter(|c| !have.iter().any(|h| c["name"] == h.as_str())),
            );
        }
    }
    selected_template(&spec, &["Always"], &mut out);
    out
}

/// `ValidateDaemonSetSpec`.
pub(crate) fn daemon_set_causes(obj: &Value) -> Vec<Cause> {
    let spec = &obj["spec"];
    let mut out = Vec::new();
    selected_template(spec, &["Always"], &mut out);
    nonnegative(spec, "minReadySeconds", "spec", &mut out);
    if let Some(t) = spec["updateStrategy"]["type"].as_str() {
        if t != "OnDelete" && t != "RollingUpdate" {
            out.push(not_supported(
                "spec.updateStrategy.type",
                t,
                &["OnDelete", "RollingUpdate"],
            ));
        }
    }
    // `ValidateRollingUpdateDaemonSet`: exactly one of maxUnavailable and maxSurge non-zero.
    let ru = &spec["updateStrategy"]["rollingUpdate"];
    if spec["updateStrategy"]["type"] == "RollingUpdate" && ru.is_object() {
        let nonzero = |v: &Value| match v {
            Value::Number(n) => n.as_i64() != Some(0),
            Value::String(s) => s.trim_end_matches('%').parse::<i64>() != Ok(0),
            _ => false,
        };
        match (nonzero(&ru["maxUnavailable"]), nonzero(&ru["maxSurge"])) {
            (true, true) => {
                let shown = match &ru["maxSurge"] {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                out.push(invalid_raw(
                    "spec.updateStrategy.rollingUpdate.maxSurge",
                    &shown,
                    "may not be set when maxUnavailable is non-zero",
                ));
            }
            (false, false) => out.push(Cause::required(
                "spec.updateStrategy.rollingUpdate.maxUnavailable",
                "cannot be 0 when maxSurge is 0",
            )),
            _ => {}
        }
    }
    out
}

/// `validateJobSpec` of the spec at `path` (a Job's `spec`, a CronJob's
/// `spec.jobTemplate.spec`).
pub(crate) fn job_causes(spec: &Value, path: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    for key in [
        "parallelism",
        "completions",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        nonnegative(spec, key, path, &mut out);
    }
    if let Some(n) = spec["activeDeadlineSeconds"].as_i64().filter(|n| *n < 0) {
        out.push(invalid_num(
            &format!("{path}.activeDeadlineSeconds"),
            n,
            super::IS_NEGATIVE_MSG,
        ));
    }
    let template = format!("{path}.template");
    out.extend(template_causes(&spec["template"], &template));
    let policy = spec["template"]["spec"]["restartPolicy"]
        .as_str()
        .unwrap_or_default();
    if policy != "OnFailure" && policy != "Never" {
        out.push(not_supported(
            &format!("{template}.spec.restartPolicy"),
            policy,
            &["OnFailure", "Never"],
        ));
    }
    out
}

/// `ValidateCronJobSpec`.
pub(crate) fn cron_job_causes(obj: &Value) -> Vec<Cause> {
    let spec = &obj["spec"];
    let mut out = Vec::new();
    if spec["schedule"].as_str().unwrap_or_default().is_empty() {
        out.push(Cause::required("spec.schedule", ""));
    }
    if let Some(p) = spec["concurrencyPolicy"].as_str() {
        let valid = ["Allow", "Forbid", "Replace"];
        if !valid.contains(&p) {
            out.push(not_supported("spec.concurrencyPolicy", p, &valid));
        }
    }
    nonnegative(spec, "startingDeadlineSeconds", "spec", &mut out);
    nonnegative(spec, "successfulJobsHistoryLimit", "spec", &mut out);
    nonnegative(spec, "failedJobsHistoryLimit", "spec", &mut out);
    out.extend(job_causes(
        &spec["jobTemplate"]["spec"],
        "spec.jobTemplate.spec",
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(causes: Vec<Cause>) -> Vec<String> {
        causes
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    fn pod(restart: &str) -> Value {
        json!({"spec": {"restartPolicy": restart,
            "containers": [{"name": "c", "image": "busybox"}]}})
    }

    #[test]
    fn daemonset_surge_excludes_unavailable() {
        let mut template = pod("Always");
        template["metadata"] = json!({"labels": {"a": "b"}});
        let ds = |ru: Value| {
            json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": template.clone(),
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": ru}}})
        };
        assert_eq!(
            lines(daemon_set_causes(&ds(json!({"maxUnavailable": 1, "maxSurge": 1})))),
            vec!["spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when maxUnavailable is non-zero"]
        );
        assert_eq!(
            lines(daemon_set_causes(&ds(json!({"maxUnavailable": 0, "maxSurge": "0%"})))),
            vec!["spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"]
        );
        assert!(lines(daemon_set_causes(&ds(
            json!({"maxUnavailable": 0, "maxSurge": "25%"})
        )))
        .is_empty());
        assert!(lines(daemon_set_causes(&ds(
            json!({"maxUnavailable": 1, "maxSurge": 0})
        )))
        .is_empty());
    }

    #[test]
    fn deployments_as_kube_validates_them() {
        let mut template = pod("Always");
        template["metadata"] = json!({"labels": {"a": "c"}});
        let d = json!({"spec": {"replicas": -1, "selector": {"matchLabels": {"a": "b"}},
            "template": template, "strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}}});
        assert_eq!(
            lines(deployment_causes(&d)),
            vec![
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.template.metadata.labels: Invalid value: map[string]string{\"a\":\"c\"}: `selector` does not match template `labels`",
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0",
            ]
        );
        let mut ok = pod("Always");
        ok["metadata"] = json!({"labels": {"a": "b", "x": "y"}});
        let d = json!({"spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"},
            "matchExpressions": [{"key": "x", "operator": "In", "values": ["y"]}]},
            "template": ok, "progressDeadlineSeconds": 600}});
        assert_eq!(lines(deployment_causes(&d)), Vec::<String>::new());
        let d = json!({"spec": {"template": pod("Never")}});
        assert_eq!(
            lines(deployment_causes(&d)),
            vec![
                "spec.selector: Required value",
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            ]
        );
    }

    #[test]
    fn stateful_sets_mount_their_claim_templates() {
        let mut template = pod("Always");
        template["metadata"] = json!({"labels": {"app": "web"}});
        template["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "data", "mountPath": "/data"}]);
        let sts = json!({"spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template,
            "volumeClaimTemplates": [{"metadata": {"name": "data"}}]}});
        assert_eq!(lines(stateful_set_causes(&sts)), Vec::<String>::new());
        let mut other = sts.clone();
        other["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] = json!("logs");
        assert_eq!(
            lines(stateful_set_causes(&other)),
            vec!["spec.template.spec.containers[0].volumeMounts[0].name: Not found: \"data\""]
        );
    }

    #[test]
    fn jobs_need_on_failure_or_never() {
        let j = json!({"spec": {"completions": -2, "template": pod("Always")}});
        assert_eq!(
            lines(job_causes(&j["spec"], "spec")),
            vec![
                "spec.completions: Invalid value: -2: must be greater than or equal to 0",
                "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"",
            ]
        );
        let c = json!({"spec": {"jobTemplate": {"spec": {"template": pod("Never")}}}});
        assert_eq!(
            lines(cron_job_causes(&c)),
            vec!["spec.schedule: Required value"]
        );
    }
}
