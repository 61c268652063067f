//! A pod's status as kubelet writes it (`kubelet_pods.go` `generateAPIPodStatus`, `getPhase`;
//! `pkg/kubelet/status/generate.go`; `qos.GetPodQOS`), from what the engine shows of its
//! containers. Pure: the caller gathers the views and writes the result to the `status`
//! subresource.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

/// A terminated container (kube's `ContainerStateTerminated`).
#[derive(Debug, Clone, PartialEq)]
pub struct Terminated {
    pub exit_code: i64,
    /// `Completed`, `Error`, `OOMKilled`, `StartError`.
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// `barge://<engine id>`.
    pub container_id: String,
}

impl Terminated {
    fn to_json(&self) -> Value {
        let mut t = json!({
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": self.started_at.clone().unwrap_or_else(|| "1970-01-01T00:00:00Z".into()),
            "finishedAt": self.finished_at,
            "containerID": self.container_id,
        });
        if let Some(m) = &self.message {
            t["message"] = json!(m);
        }
        t
    }
}

/// The state of one container.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: String,
    },
    Terminated(Terminated),
}

/// What the agent knows of one of the pod's containers.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerView {
    pub name: String,
    /// The image as the spec names it.
    pub image: String,
    /// The engine's image ID (`sha256:…`), once a container exists.
    pub image_id: String,
    /// `barge://<engine id>` of the current container, once one exists.
    pub container_id: Option<String>,
    pub restart_count: i64,
    pub state: State,
    /// The previous container's end (kube's `lastState.terminated`).
    pub last: Option<Terminated>,
    pub ready: bool,
}

impl ContainerView {
    fn to_json(&self) -> Value {
        let state = match &self.state {
            State::Waiting { reason, message } => {
                let mut w = json!({ "reason": reason });
                if let Some(m) = message {
                    w["message"] = json!(m);
                }
                json!({ "waiting": w })
            }
            State::Running { started_at } => json!({"running": {"startedAt": started_at}}),
            State::Terminated(t) => json!({ "terminated": t.to_json() }),
        };
        let mut c = json!({
            "name": self.name,
            "state": state,
            "lastState": match &self.last {
                Some(t) => json!({"terminated": t.to_json()}),
                None => json!({}),
            },
            "ready": self.ready,
            "restartCount": self.restart_count,
            "image": self.image,
            "imageID": self.image_id,
            "started": matches!(self.state, State::Running { .. }),
        });
        if let Some(id) = &self.container_id {
            c["containerID"] = json!(id);
        }
        c
    }
}

/// Whether init container `name` of `pod` is a sidecar (`restartPolicy: Always`).
fn is_sidecar(pod: &Pod, name: &str) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .any(|c| c.name == name && c.restart_policy.as_deref() == Some("Always"))
}

/// Whether a view shows a container that ever started (running or ended).
fn ever_started(v: &ContainerView) -> bool {
    matches!(v.state, State::Running { .. } | State::Terminated(_)) || v.last.is_some()
}

/// kubelet's `getPhase` with init containers: a pod whose regular init containers have not
/// all completed (or whose sidecars have not started before any app container did) is
/// `Pending`; a failed init container with `restartPolicy: Never` fails the pod.
pub fn phase_with_init(pod: &Pod, init: &[ContainerView], views: &[ContainerView]) -> &'static str {
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let (mut pending_regular, mut pending_sidecars, mut failed_init) = (0, 0, 0);
    for v in init {
        let sidecar = is_sidecar(pod, &v.name);
        match (&v.state, sidecar) {
            (State::Running { .. }, false) => pending_regular += 1,
            (State::Running { .. }, true) => {}
            (State::Terminated(t), false) if t.exit_code != 0 => failed_init += 1,
            (State::Terminated(_), _) => {}
            (State::Waiting { .. }, false) => match &v.last {
                Some(t) if t.exit_code != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_regular += 1,
            },
            (State::Waiting { .. }, true) if v.last.is_none() => pending_sidecars += 1,
            (State::Waiting { .. }, true) => {}
        }
    }
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    let app_started = views.iter().any(ever_started);
    if pending_regular > 0 || failed_init > 0 || (pending_sidecars > 0 && !app_started) {
        return "Pending";
    }
    phase(policy, views)
}

/// kubelet's `getPhase` for a pod without init containers.
pub fn phase(restart_policy: &str, views: &[ContainerView]) -> &'static str {
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for v in views {
        match &v.state {
            State::Running { .. } => running += 1,
            State::Terminated(t) => {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1;
                }
            }
            State::Waiting { .. } if v.last.is_some() => stopped += 1,
            State::Waiting { .. } => waiting += 1,
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        if restart_policy == "Always" {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if restart_policy == "Never" {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    }
}

/// The pod's QoS class as kubelet reads it (`qos.GetPodQOS`): the one the API server set at
/// create (`status.qosClass`, immutable), computed by [`qos_class`] for a pod without it.
fn pod_qos(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.qos_class.clone())
        .filter(|q| !q.is_empty())
        .unwrap_or_else(|| qos_class(pod).to_string())
}

/// kube's QoS class of `pod` (`qos.ComputePodQOS`, cpu and memory of every container).
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = &pod.spec else {
        return "BestEffort";
    };
    let containers: Vec<_> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let r = c.resources.as_ref();
        let get = |which: Option<
            &std::collections::BTreeMap<
                String,
                k8s_openapi::apimachinery::pkg::api::resource::Quantity,
            >,
        >,
                   k: &str| which.and_then(|m| m.get(k)).map(|q| q.0.clone());
        for res in ["cpu", "memory"] {
            let req = get(r.and_then(|r| r.requests.as_ref()), res);
            let lim = get(r.and_then(|r| r.limits.as_ref()), res);
            if req.as_ref().is_some_and(|q| q != "0") || lim.as_ref().is_some_and(|q| q != "0") {
                any = true;
            }
            // Requests default to limits; Guaranteed needs a limit equal to the request.
            match (&req, &lim) {
                (_, None) => guaranteed = false,
                (Some(a), Some(b)) if a != b => guaranteed = false,
                _ => {}
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Inputs of [`pod_status`] beyond the pod and its containers.
pub struct Inputs<'a> {
    /// The init containers (`spec.initContainers`, in order), sidecars included.
    pub init: &'a [ContainerView],
    /// The ephemeral containers (`spec.ephemeralContainers`, `kubectl debug`): reported,
    /// never counted for the phase or readiness.
    pub ephemeral: &'a [ContainerView],
    /// The sandbox's address, once it exists.
    pub pod_ip: Option<&'a str>,
    pub host_ip: &'a str,
    /// `metav1.Time` now (conditions that change get it as `lastTransitionTime`).
    pub now: &'a str,
}

/// The pod's `status` as kubelet writes it: phase, conditions (keeping each
/// `lastTransitionTime` while its status does not change), containerStatuses, IPs, QoS class,
/// start time (kept once set).
pub fn pod_status(pod: &Pod, views: &[ContainerView], inp: &Inputs<'_>) -> Value {
    let spec = pod.spec.as_ref();
    let policy = spec
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let _ = policy;
    let phase = phase_with_init(pod, inp.init, views);
    let old = pod.status.as_ref();
    let old_cond = |t: &str| {
        old.and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == t))
    };
    let cond = |t: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
        let status = if ok { "True" } else { "False" };
        let since = match old_cond(t) {
            Some(c) if c.status == status => c
                .last_transition_time
                .as_ref()
                .and_then(|t| serde_json::to_value(t).ok())
                .unwrap_or_else(|| json!(inp.now)),
            _ => json!(inp.now),
        };
        let mut c = json!({
            "type": t,
            "status": status,
            "lastProbeTime": null,
            "lastTransitionTime": since,
        });
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        if let Some(m) = message {
            c["message"] = json!(m);
        }
        c
    };
    // Sidecars count for readiness too (kubelet's `GenerateContainersReadyCondition`).
    let unready: Vec<&str> = inp
        .init
        .iter()
        .filter(|v| is_sidecar(pod, &v.name))
        .chain(views.iter())
        .filter(|v| !v.ready)
        .map(|v| v.name.as_str())
        .collect();
    // Initialized: every regular init container completed and every sidecar started (or an
    // app container already ran).
    let app_started = views.iter().any(ever_started);
    let incomplete: Vec<&str> = inp
        .init
        .iter()
        .filter(|v| {
            let done = if is_sidecar(pod, &v.name) {
                matches!(v.state, State::Running { .. }) || v.last.is_some()
            } else {
                matches!(&v.state, State::Terminated(t) if t.exit_code == 0)
            };
            !done && !app_started
        })
        .map(|v| v.name.as_str())
        .collect();
    let (ready, reason, message) = match phase {
        "Succeeded" => (false, Some("PodCompleted"), None),
        "Failed" => (false, Some("PodFailed"), None),
        _ if unready.is_empty() => (true, None, None),
        _ => (
            false,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        ),
    };
    let conditions = vec![
        cond(
            "PodReadyToStartContainers",
            inp.pod_ip.is_some(),
            None,
            None,
        ),
        if incomplete.is_empty() {
            cond("Initialized", true, None, None)
        } else {
            cond(
                "Initialized",
                false,
                Some("ContainersNotInitialized"),
                Some(format!(
                    "containers with incomplete status: [{}]",
                    incomplete.join(" ")
                )),
            )
        },
        cond("Ready", ready, reason, message.clone()),
        cond("ContainersReady", ready, reason, message),
        cond("PodScheduled", true, None, None),
    ];
    let start_time = old
        .and_then(|s| s.start_time.as_ref())
        .and_then(|t| serde_json::to_value(t).ok())
        .unwrap_or_else(|| json!(inp.now));
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": inp.host_ip,
        "hostIPs": [{"ip": inp.host_ip}],
        "startTime": start_time,
        "qosClass": pod_qos(pod),
        "containerStatuses": views.iter().map(ContainerView::to_json).collect::<Vec<_>>(),
    });
    if !inp.init.is_empty() {
        status["initContainerStatuses"] = json!(inp
            .init
            .iter()
            .map(ContainerView::to_json)
            .collect::<Vec<_>>());
    }
    if !inp.ephemeral.is_empty() {
        status["ephemeralContainerStatuses"] = json!(inp
            .ephemeral
            .iter()
            .map(ContainerView::to_json)
            .collect::<Vec<_>>());
    }
    if let Some(ip) = inp.pod_ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{ "ip": ip }]);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str, state: State, last: Option<Terminated>) -> ContainerView {
        ContainerView {
            name: name.into(),
            image: "img".into(),
            image_id: "sha256:1".into(),
            container_id: Some("barge://1".into()),
            restart_count: 0,
            ready: matches!(state, State::Running { .. }),
            state,
            last,
        }
    }

    fn term(code: i64) -> Terminated {
        Terminated {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: None,
            finished_at: None,
            container_id: "barge://1".into(),
        }
    }

    fn running() -> State {
        State::Running {
            started_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn waiting(r: &str) -> State {
        State::Waiting {
            reason: r.into(),
            message: None,
        }
    }

    #[test]
    fn phases_as_kubelet() {
        let creating = [view("a", waiting("ContainerCreating"), None)];
        assert_eq!(phase("Always", &creating), "Pending");
        assert_eq!(phase("Always", &[view("a", running(), None)]), "Running");
        // A crash-looping container counts as stopped: the pod runs.
        let backoff = [view("a", waiting("CrashLoopBackOff"), Some(term(1)))];
        assert_eq!(phase("Always", &backoff), "Running");
        let done = [view("a", State::Terminated(term(0)), None)];
        assert_eq!(phase("Never", &done), "Succeeded");
        assert_eq!(phase("OnFailure", &done), "Succeeded");
        assert_eq!(phase("Always", &done), "Running");
        let failed = [view("a", State::Terminated(term(2)), None)];
        assert_eq!(phase("Never", &failed), "Failed");
        assert_eq!(phase("OnFailure", &failed), "Running");
        let mixed = [
            view("a", running(), None),
            view("b", waiting("ContainerCreating"), None),
        ];
        assert_eq!(phase("Always", &mixed), "Pending");
    }

    #[test]
    fn phases_with_init_containers() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {}, "spec": {
            "restartPolicy": "Never",
            "initContainers": [{"name": "side", "image": "x", "restartPolicy": "Always"},
                {"name": "i", "image": "x"}],
            "containers": [{"name": "a", "image": "x"}]}}))
        .unwrap();
        let app = [view("a", waiting("PodInitializing"), None)];
        let init = [view("side", running(), None), view("i", running(), None)];
        assert_eq!(phase_with_init(&pod, &init, &app), "Pending");
        let failed = [
            view("side", running(), None),
            view("i", State::Terminated(term(3)), None),
        ];
        assert_eq!(phase_with_init(&pod, &failed, &app), "Failed");
        let done = [
            view("side", running(), None),
            view("i", State::Terminated(term(0)), None),
        ];
        assert_eq!(
            phase_with_init(&pod, &done, &[view("a", running(), None)]),
            "Running"
        );
        let inp = Inputs {
            ephemeral: &[],
            init: &init,
            pod_ip: None,
            host_ip: "192.0.2.1",
            now: "2026-01-01T00:00:00Z",
        };
        let s = pod_status(&pod, &app, &inp);
        let init_cond = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Initialized")
            .unwrap()
            .clone();
        assert_eq!(init_cond["reason"], "ContainersNotInitialized");
        assert_eq!(
            init_cond["message"],
            "containers with incomplete status: [i]"
        );
        assert_eq!(s["initContainerStatuses"][0]["name"], "side");
    }

    #[test]
    fn qos_classes() {
        let pod = |res: Value| -> Pod {
            serde_json::from_value(json!({"metadata": {}, "spec": {"containers": [
                {"name": "a", "image": "x", "resources": res}]}}))
            .unwrap()
        };
        assert_eq!(qos_class(&pod(json!({}))), "BestEffort");
        let g = json!({"limits": {"cpu": "1", "memory": "1Gi"}});
        assert_eq!(qos_class(&pod(g)), "Guaranteed");
        let b = json!({"requests": {"cpu": "100m"}});
        assert_eq!(qos_class(&pod(b)), "Burstable");
    }

    #[test]
    fn conditions_and_ips() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {}, "spec": {"containers": [
            {"name": "a", "image": "x"}, {"name": "b", "image": "x"}]},
            "status": {"conditions": [{"type": "Initialized", "status": "True",
                "lastTransitionTime": "2020-01-01T00:00:00Z"}]}}))
        .unwrap();
        let views = [
            view("a", running(), None),
            view("b", waiting("ContainerCreating"), None),
        ];
        let inp = Inputs {
            ephemeral: &[],
            init: &[],
            pod_ip: Some("10.42.0.2"),
            host_ip: "192.0.2.1",
            now: "2026-01-01T00:00:00Z",
        };
        let s = pod_status(&pod, &views, &inp);
        assert_eq!(s["phase"], "Pending");
        assert_eq!(s["podIPs"][0]["ip"], "10.42.0.2");
        let c = |t: &str| {
            s["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == t)
                .unwrap()
                .clone()
        };
        assert_eq!(
            c("Initialized")["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        assert_eq!(c("Ready")["status"], "False");
        assert_eq!(c("Ready")["reason"], "ContainersNotReady");
        assert_eq!(
            c("ContainersReady")["message"],
            "containers with unready status: [b]"
        );
        assert_eq!(c("PodReadyToStartContainers")["status"], "True");
        assert_eq!(
            s["containerStatuses"][1]["state"]["waiting"]["reason"],
            "ContainerCreating"
        );
        assert_eq!(s["qosClass"], "BestEffort");
    }
}
