//! The pod row of `kubectl get pods`, as kube-apiserver's printer computes it
//! (`printPod`, kubernetes `pkg/printers/internalversion/printers.go`): READY counts running,
//! ready containers (sidecars — init containers with `restartPolicy: Always` — included),
//! STATUS is the most telling reason (`Init:1/2`, `Init:CrashLoopBackOff`, `PodInitializing`,
//! `CrashLoopBackOff`, `ExitCode:3`, `Completed`, `NotReady`, `Terminating`...), RESTARTS adds
//! how long ago the last restart was (`3 (42s ago)`).

use serde_json::Value;

use super::human_duration;
use super::printers::str_or;

/// The cells after NAME and before AGE: READY, STATUS, RESTARTS.
pub(super) struct PodColumns {
    pub ready: String,
    pub status: String,
    pub restarts: String,
}

fn is_sidecar(spec_init: &[Value], name: &str) -> bool {
    spec_init
        .iter()
        .any(|c| c["name"].as_str() == Some(name) && c["restartPolicy"].as_str() == Some("Always"))
}

/// RFC 3339 → unix seconds (`None` for absent or malformed).
fn ts(v: &Value) -> Option<i64> {
    v.as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp())
}

fn terminated_reason(t: &Value, prefix: &str) -> String {
    match t["reason"].as_str().filter(|r| !r.is_empty()) {
        Some(r) => format!("{prefix}{r}"),
        None => match t["signal"].as_i64().filter(|s| *s != 0) {
            Some(s) => format!("{prefix}Signal:{s}"),
            None => format!("{prefix}ExitCode:{}", t["exitCode"].as_i64().unwrap_or(0)),
        },
    }
}

/// `printPod`'s READY, STATUS and RESTARTS for `pod`, `now` in unix seconds.
pub(super) fn columns(pod: &Value, now: i64) -> PodColumns {
    let spec = &pod["spec"];
    let status = &pod["status"];
    let init_specs = spec["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let phase = str_or(&status["phase"], "");
    let mut reason = str_or(&status["reason"], phase).to_string();
    let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    let condition = |ty: &str| conditions.iter().find(|c| c["type"].as_str() == Some(ty));
    if condition("PodScheduled").is_some_and(|c| c["reason"].as_str() == Some("SchedulingGated")) {
        reason = "SchedulingGated".into();
    }
    let mut total = spec["containers"].as_array().map(Vec::len).unwrap_or(0);
    total += init_specs
        .iter()
        .filter(|c| c["restartPolicy"].as_str() == Some("Always"))
        .count();
    let mut ready = 0;
    let (mut restarts, mut sidecar_restarts) = (0i64, 0i64);
    let (mut last, mut sidecar_last) = (None::<i64>, None::<i64>);
    let later = |a: Option<i64>, b: Option<i64>| a.max(b);

    let mut initializing = false;
    let init_statuses = status["initContainerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (i, c) in init_statuses.iter().enumerate() {
        let name = c["name"].as_str().unwrap_or("");
        let sidecar = is_sidecar(&init_specs, name);
        let count = c["restartCount"].as_i64().unwrap_or(0);
        let finished = ts(&c["lastState"]["terminated"]["finishedAt"]);
        restarts += count;
        last = later(last, finished);
        if sidecar {
            sidecar_restarts += count;
            sidecar_last = later(sidecar_last, finished);
        }
        let state = &c["state"];
        let terminated = state.get("terminated").filter(|t| t.is_object());
        if terminated.is_some_and(|t| t["exitCode"].as_i64().unwrap_or(0) == 0) {
            continue;
        }
        if sidecar && c["started"] == true {
            if c["ready"] == true {
                ready += 1;
            }
            continue;
        }
        let waiting = state["waiting"]["reason"]
            .as_str()
            .filter(|r| !r.is_empty() && *r != "PodInitializing");
        reason = match (terminated, waiting) {
            (Some(t), _) => terminated_reason(t, "Init:"),
            (None, Some(w)) => format!("Init:{w}"),
            (None, None) => format!("Init:{i}/{}", init_specs.len()),
        };
        initializing = true;
        break;
    }

    let initialized =
        condition("Initialized").is_some_and(|c| c["status"].as_str() == Some("True"));
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last = sidecar_last;
        let mut has_running = false;
        let statuses = status["containerStatuses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for c in statuses.iter().rev() {
            restarts += c["restartCount"].as_i64().unwrap_or(0);
            last = later(last, ts(&c["lastState"]["terminated"]["finishedAt"]));
            let state = &c["state"];
            let terminated = state.get("terminated").filter(|t| t.is_object());
            if let Some(w) = state["waiting"]["reason"]
                .as_str()
                .filter(|r| !r.is_empty())
            {
                reason = w.to_string();
            } else if let Some(t) = terminated {
                reason = terminated_reason(t, "");
            } else if c["ready"] == true && state.get("running").is_some_and(|r| r.is_object()) {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready =
                condition("Ready").is_some_and(|c| c["status"].as_str() == Some("True"));
            reason = if pod_ready { "Running" } else { "NotReady" }.into();
        }
    }

    let deleting = pod["metadata"]
        .get("deletionTimestamp")
        .is_some_and(|d| !d.is_null());
    if deleting && status["reason"].as_str() == Some("NodeLost") {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }
    let restarts = match last {
        Some(at) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now - at)),
        _ => restarts.to_string(),
    };
    PodColumns {
        ready: format!("{ready}/{total}"),
        status: if reason.is_empty() {
            "Unknown".into()
        } else {
            reason
        },
        restarts,
    }
}

/// READINESS GATES (wide): satisfied/total, `<none>` without gates.
pub(super) fn readiness_gates(pod: &Value) -> String {
    let gates = pod["spec"]["readinessGates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if gates.is_empty() {
        return "<none>".into();
    }
    let conditions = pod["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let met = gates
        .iter()
        .filter(|g| {
            conditions
                .iter()
                .any(|c| c["type"] == g["conditionType"] && c["status"].as_str() == Some("True"))
        })
        .count();
    format!("{met}/{}", gates.len())
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::columns;

    const NOW: i64 = 1_700_000_100;
    const T: &str = "2023-11-14T22:13:20Z"; // NOW - 100 s

    fn pod(init: Value, statuses: Value, init_statuses: Value) -> Value {
        json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": init, "containers": [{"name": "app"}, {"name": "side2"}]},
            "status": {"phase": "Pending", "containerStatuses": statuses,
                       "initContainerStatuses": init_statuses}
        })
    }

    #[test]
    fn init_progress_and_failures() {
        let init = json!([{"name": "a"}, {"name": "b"}]);
        let done =
            json!({"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
        let running = json!({"name": "b", "state": {"running": {}}});
        let waiting = json!({"name": "b", "state": {"waiting": {"reason": "PodInitializing"}}});
        let p = pod(init.clone(), json!([]), json!([done, running]));
        assert_eq!(columns(&p, NOW).status, "Init:1/2");
        let p = pod(init.clone(), json!([]), json!([waiting.clone(), waiting]));
        assert_eq!(columns(&p, NOW).status, "Init:0/2");
        let crash = json!({"name": "b", "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "finishedAt": T}}});
        let p = pod(init.clone(), json!([]), json!([done, crash]));
        let c = columns(&p, NOW);
        assert_eq!(c.status, "Init:CrashLoopBackOff");
        assert_eq!(c.restarts, "3 (100s ago)");
        let failed = json!({"name": "b", "state": {"terminated": {"exitCode": 2}}});
        let p = pod(init, json!([]), json!([done, failed]));
        assert_eq!(columns(&p, NOW).status, "Init:ExitCode:2");
    }

    #[test]
    fn containers_sidecars_and_terminating() {
        let init = json!([{"name": "side", "restartPolicy": "Always"}]);
        let side =
            json!({"name": "side", "started": true, "ready": true, "state": {"running": {}}});
        let app = json!({"name": "app", "ready": true, "state": {"running": {}}});
        let waiting = json!({"name": "side2", "ready": false, "state": {"waiting": {"reason": "ContainerCreating"}}});
        let mut p = pod(init.clone(), json!([app, waiting]), json!([side]));
        p["status"]["phase"] = json!("Running");
        let c = columns(&p, NOW);
        assert_eq!(c.ready, "2/3");
        assert_eq!(c.status, "ContainerCreating");
        let done = json!({"name": "side2", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
        let mut p = pod(init, json!([app, done]), json!([side]));
        p["status"]["phase"] = json!("Running");
        assert_eq!(columns(&p, NOW).status, "NotReady");
        p["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        assert_eq!(columns(&p, NOW).status, "Running");
        p["metadata"]["deletionTimestamp"] = json!(T);
        assert_eq!(columns(&p, NOW).status, "Terminating");
        let killed =
            json!({"name": "app", "state": {"terminated": {"exitCode": 137, "signal": 9}}});
        let p = pod(json!([]), json!([killed]), json!([]));
        assert_eq!(columns(&p, NOW).status, "Signal:9");
    }
}
