//! `shareProcessNamespace: true`: the pod's PID namespace holder.
//!
//! Kubernetes runs such a pod's containers in its pause container's PID namespace: `ps ax` in
//! any of them shows `/pause` as PID 1 and every container's processes, and `/proc/<pid>/root`
//! reaches another container's file system. barge has no pause image; the holder is an engine
//! container of the pod named as dockershim named the sandbox container
//! (`k8s_POD_<pod>_<ns>_<uid>_<attempt>`, labelled as the pod's containers with the container
//! name [`HOLDER_CONTAINER`]) that runs the engine's static `barge-init` bind-mounted read-only
//! on `/pause` — which makes it pause (reaps zombies, exits on SIGTERM) — as pause's user
//! 65535:65535, on the rootfs of the image of the pod container it is first needed for (already
//! present, so the holder costs no pull). It joins the pod sandbox's network, IPC and UTS
//! namespaces; the pod's containers join its PID namespace (PID mode `container:<id>`).
//!
//! It is found again by its labels after an agent restart (adopted as it runs), stopped when
//! the pod is terminal, stopped after every other container of the pod when it is killed, and
//! removed with them; it is never in the pod's statuses (no spec container is named `POD`,
//! which is not a DNS label).

use std::collections::BTreeMap;
use std::path::Path;

use barge_container::{Container, CreateOptions, HostOptions, Status};
use k8s_openapi::api::core::v1::Pod;

use crate::pods::{
    SandboxRef, LABEL_CONTAINER, LABEL_NAME, LABEL_NAMESPACE, LABEL_RESTARTS, LABEL_UID,
};
use crate::{AgentError, Engine};

/// The container name label of the holder (dockershim's name for the sandbox container).
pub const HOLDER_CONTAINER: &str = "POD";
/// Where the holder's `barge-init` is mounted: pause's path, so `ps` shows `/pause` as PID 1.
const PAUSE_PATH: &str = "/pause";
/// pause's user and group (`registry.k8s.io/pause`'s `USER 65535:65535`).
const PAUSE_USER: &str = "65535:65535";

/// Whether the pod's containers share one PID namespace (`spec.shareProcessNamespace`;
/// `hostPID` wins, as kube's validation refuses both).
pub fn shares_pid(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .is_some_and(|s| s.share_process_namespace == Some(true) && s.host_pid != Some(true))
}

/// Whether engine container `c` is a pod's PID namespace holder.
pub fn is_holder(c: &Container) -> bool {
    c.options.labels.get(LABEL_CONTAINER).map(String::as_str) == Some(HOLDER_CONTAINER)
}

/// The engine options of the holder of `pod`, attempt `n`, on `image`'s rootfs; `init` is the
/// engine's `barge-init`, `hostname` the pod's host name.
pub(crate) fn options(
    pod: &Pod,
    image: &str,
    init: &Path,
    sb: &SandboxRef<'_>,
    hostname: &str,
    n: i64,
) -> CreateOptions {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network) == Some(true);
    let host_ipc = spec.and_then(|s| s.host_ipc) == Some(true);
    let shared = |host: bool| match (host, sb.shares_ipc_uts) {
        (true, _) => "host".to_string(),
        (false, true) => format!("sandbox:{}", sb.key),
        (false, false) => String::new(),
    };
    let mut labels = BTreeMap::new();
    labels.insert(LABEL_NAMESPACE.to_string(), ns.clone());
    labels.insert(LABEL_NAME.to_string(), name.clone());
    labels.insert(LABEL_UID.to_string(), uid.clone());
    labels.insert(LABEL_CONTAINER.to_string(), HOLDER_CONTAINER.to_string());
    labels.insert(LABEL_RESTARTS.to_string(), n.to_string());
    labels.insert("io.kubernetes.docker.type".into(), "podsandbox".into());
    CreateOptions {
        name: Some(format!("k8s_{HOLDER_CONTAINER}_{name}_{ns}_{uid}_{n}")),
        user: Some(PAUSE_USER.into()),
        image: image.to_string(),
        entrypoint: Some(vec![PAUSE_PATH.into()]),
        cmd: Some(vec![]),
        working_dir: Some("/".into()),
        hostname: (!host_network).then(|| hostname.to_string()),
        labels,
        healthcheck: Some(barge_image::HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        }),
        host: HostOptions {
            network_mode: if host_network {
                "host".into()
            } else {
                format!("sandbox:{}", sb.key)
            },
            uts_mode: shared(host_network),
            ipc_mode: shared(host_ipc),
            log_type: "json-file".into(),
            restart_policy: "no".into(),
            binds: vec![format!("{}:{PAUSE_PATH}:ro", init.display())],
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The id of the pod's running holder, made (or made again, the next attempt, once the last
/// one ended) on `image`. Blocking (engine calls).
pub(crate) fn ensure(
    engine: &Engine,
    pod: &Pod,
    image: &str,
    sb: &SandboxRef<'_>,
    hostname: &str,
) -> Result<String, AgentError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let holders: Vec<Container> = crate::pods::pod_containers(engine, &uid)
        .into_iter()
        .filter(is_holder)
        .collect();
    if let Some(h) = holders.iter().find(|h| h.state.status == Status::Running) {
        return Ok(h.id.clone());
    }
    let n = holders
        .iter()
        .map(crate::pods::attempt)
        .max()
        .map_or(0, |a| a + 1);
    for h in &holders {
        let _ = engine.containers.remove(&h.id, true);
    }
    let opts = options(pod, image, engine.containers.init_path(), sb, hostname, n);
    let c = engine
        .containers
        .create(opts)
        .map_err(|e| AgentError::engine("create the PID namespace holder", e))?;
    if let Err(e) = engine.containers.start(&c.id, 0, &mut |_| {}) {
        let _ = engine.containers.remove(&c.id, true);
        return Err(AgentError::engine("start the PID namespace holder", e));
    }
    Ok(c.id)
}

/// Stops the pod's running holder (pause exits on SIGTERM at once). Blocking.
pub(crate) fn stop(engine: &Engine, uid: &str) {
    for h in crate::pods::pod_containers(engine, uid) {
        if is_holder(&h) && h.state.status == Status::Running {
            if let Err(e) = engine.containers.stop(&h.id, Some(10), None) {
                tracing::warn!("stopping {}: {e}", h.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(extra: serde_json::Value) -> Pod {
        let mut v = serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u-1"},
            "spec": {"containers": [{"name": "a", "image": "busybox"}]}
        });
        for (k, x) in extra.as_object().unwrap() {
            v["spec"][k] = x.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn holder_is_pause_in_the_pod_sandbox() {
        let sb = SandboxRef {
            key: "pod-u1",
            shares_ipc_uts: true,
        };
        let p = pod(serde_json::json!({"shareProcessNamespace": true}));
        assert!(shares_pid(&p));
        let o = options(&p, "busybox", Path::new("/x/barge-init"), &sb, "web", 2);
        assert_eq!(o.name.as_deref(), Some("k8s_POD_web_default_u-1_2"));
        assert_eq!(o.entrypoint, Some(vec!["/pause".to_string()]));
        assert_eq!(o.user.as_deref(), Some("65535:65535"));
        assert_eq!(o.host.binds, vec!["/x/barge-init:/pause:ro".to_string()]);
        assert_eq!(o.host.network_mode, "sandbox:pod-u1");
        assert_eq!(o.host.ipc_mode, "sandbox:pod-u1");
        assert_eq!(o.host.uts_mode, "sandbox:pod-u1");
        assert_eq!(o.host.pid_mode, "");
        assert_eq!(o.labels[LABEL_CONTAINER], "POD");
        assert_eq!(o.labels[LABEL_UID], "u-1");
        // The node's namespaces where the pod asks for them.
        let p = pod(serde_json::json!({"hostNetwork": true, "hostIPC": true}));
        let o = options(&p, "busybox", Path::new("/i"), &sb, "web", 0);
        assert_eq!(o.host.network_mode, "host");
        assert_eq!(o.host.ipc_mode, "host");
        assert_eq!(o.host.uts_mode, "host");
        assert_eq!(o.hostname, None);
        // hostPID wins over shareProcessNamespace; neither: no holder.
        assert!(!shares_pid(&pod(
            serde_json::json!({"shareProcessNamespace": true, "hostPID": true})
        )));
        assert!(!shares_pid(&pod(serde_json::json!({}))));
    }
}
