//! A container's `securityContext` (merged over the pod's, as kubelet's
//! `securitycontext.DetermineEffectiveSecurityContext`) mapped onto the engine's container
//! options — the ones `docker run --user/--group-add/--read-only/--cap-add/--cap-drop/
//! --privileged/--security-opt` set — and kubelet's `verifyRunAsNonRoot`.

use barge_container::HostOptions;
use k8s_openapi::api::core::v1::{Container, Pod, SeccompProfile};

/// The effective settings of a container (container fields over the pod's).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Effective {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: Option<bool>,
    pub seccomp: Option<SeccompProfile>,
}

/// The container's effective user, group, non-root and seccomp settings.
pub fn effective(pod: &Pod, c: &Container) -> Effective {
    let p = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let s = c.security_context.as_ref();
    Effective {
        run_as_user: s
            .and_then(|s| s.run_as_user)
            .or(p.and_then(|p| p.run_as_user)),
        run_as_group: s
            .and_then(|s| s.run_as_group)
            .or(p.and_then(|p| p.run_as_group)),
        run_as_non_root: s
            .and_then(|s| s.run_as_non_root)
            .or(p.and_then(|p| p.run_as_non_root)),
        seccomp: s
            .and_then(|s| s.seccomp_profile.clone())
            .or(p.and_then(|p| p.seccomp_profile.clone())),
    }
}

/// `name_namespace(uid)`, kubelet's `format.Pod`.
fn format_pod(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// kubelet's `verifyRunAsNonRoot`: with `runAsNonRoot`, the container must not run as uid 0
/// (`image_user` is the image's `User`, empty for root). `Err` is kubelet's message (the
/// container waits with `CreateContainerConfigError`).
pub fn verify_run_as_non_root(pod: &Pod, c: &Container, image_user: &str) -> Result<(), String> {
    let e = effective(pod, c);
    if e.run_as_non_root != Some(true) {
        return Ok(());
    }
    let who = format_pod(pod);
    if let Some(u) = e.run_as_user {
        if u == 0 {
            return Err(format!(
                "container's runAsUser breaks non-root policy (pod: {who:?}, container: {})",
                c.name
            ));
        }
        return Ok(());
    }
    let user = image_user.split(':').next().unwrap_or_default();
    if user.is_empty() {
        return Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {who:?}, container: {})",
            c.name
        ));
    }
    match user.parse::<i64>() {
        Ok(0) => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {who:?}, container: {})",
            c.name
        )),
        Ok(_) => Ok(()),
        Err(_) => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: {who:?}, container: {})",
            c.name
        )),
    }
}

/// The engine's `User` for the container (`uid`, `uid:gid`), `None` to keep the image's.
/// `runAsGroup` alone keeps the image's user with that group.
pub fn user(pod: &Pod, c: &Container, image_user: &str) -> Option<String> {
    let e = effective(pod, c);
    match (e.run_as_user, e.run_as_group) {
        (Some(u), Some(g)) => Some(format!("{u}:{g}")),
        (Some(u), None) => Some(u.to_string()),
        (None, Some(g)) => {
            let u = image_user.split(':').next().filter(|u| !u.is_empty());
            Some(format!("{}:{g}", u.unwrap_or("0")))
        }
        (None, None) => None,
    }
}

/// Sets the host options the security context asks for: supplemental groups (with
/// `fsGroup`, which kubelet adds to them), read-only root, capabilities, privileged,
/// `no-new-privileges` when `allowPrivilegeEscalation: false`, seccomp (`Unconfined` unless
/// `RuntimeDefault`: kubelet's default without `--seccomp-default` is unconfined).
pub fn apply(pod: &Pod, c: &Container, host: &mut HostOptions) {
    // The node's PID and IPC namespaces (`hostPID`, `hostIPC`; the network's is the
    // sandbox's business).
    if let Some(spec) = pod.spec.as_ref() {
        if spec.host_pid == Some(true) {
            host.pid_mode = "host".into();
        }
        if spec.host_ipc == Some(true) {
            host.ipc_mode = "host".into();
        }
    }
    let p = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    if let Some(p) = p {
        host.group_add.extend(
            p.supplemental_groups
                .iter()
                .flatten()
                .chain(p.fs_group.iter())
                .map(|g| g.to_string()),
        );
    }
    let s = c.security_context.as_ref();
    if let Some(s) = s {
        host.readonly_rootfs = s.read_only_root_filesystem.unwrap_or(false);
        host.privileged = s.privileged.unwrap_or(false);
        if let Some(caps) = &s.capabilities {
            host.cap_add.extend(caps.add.iter().flatten().cloned());
            host.cap_drop.extend(caps.drop.iter().flatten().cloned());
        }
        if s.allow_privilege_escalation == Some(false) {
            host.security_opt.push("no-new-privileges:true".into());
        }
    }
    let seccomp = effective(pod, c).seccomp;
    if seccomp.as_ref().map(|s| s.type_.as_str()) != Some("RuntimeDefault") {
        host.security_opt.push("seccomp=unconfined".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn non_root_as_kubelet() {
        let p = pod(json!({"securityContext": {"runAsNonRoot": true},
            "containers": [{"name": "a", "image": "x"}]}));
        let c = &p.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            verify_run_as_non_root(&p, c, "").unwrap_err(),
            r#"container has runAsNonRoot and image will run as root (pod: "p_ns(u1)", container: a)"#
        );
        assert!(verify_run_as_non_root(&p, c, "1234").is_ok());
        assert!(verify_run_as_non_root(&p, c, "0:0").is_err());
        assert!(verify_run_as_non_root(&p, c, "app")
            .unwrap_err()
            .contains("non-numeric user (app)"));
        let p2 = pod(
            json!({"securityContext": {"runAsNonRoot": true, "runAsUser": 0},
            "containers": [{"name": "a", "image": "x", "securityContext": {"runAsUser": 5}}]}),
        );
        assert!(verify_run_as_non_root(&p2, &p2.spec.as_ref().unwrap().containers[0], "").is_ok());
    }

    #[test]
    fn options_as_docker_run() {
        let p = pod(
            json!({"securityContext": {"runAsUser": 1000, "runAsGroup": 3000,
                "supplementalGroups": [4000], "fsGroup": 2000},
            "containers": [{"name": "a", "image": "x", "securityContext": {
                "runAsUser": 1001, "readOnlyRootFilesystem": true,
                "allowPrivilegeEscalation": false,
                "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"}}}]}),
        );
        let c = &p.spec.as_ref().unwrap().containers[0];
        assert_eq!(user(&p, c, "").as_deref(), Some("1001:3000"));
        let mut h = HostOptions::default();
        apply(&p, c, &mut h);
        assert_eq!(h.group_add, ["4000", "2000"]);
        assert!(h.readonly_rootfs && !h.privileged);
        assert_eq!(h.cap_add, ["NET_ADMIN"]);
        assert_eq!(h.cap_drop, ["ALL"]);
        assert_eq!(h.security_opt, ["no-new-privileges:true"]);
        let q = pod(json!({"containers": [{"name": "a", "image": "x"}]}));
        let mut h = HostOptions::default();
        apply(&q, &q.spec.as_ref().unwrap().containers[0], &mut h);
        assert_eq!(h.security_opt, ["seccomp=unconfined"]);
        assert_eq!(
            user(&q, &q.spec.as_ref().unwrap().containers[0], "app"),
            None
        );
    }
}
