//! Capabilities (Docker's `TweakCapabilities` over its default set, limited to what this
//! process can grant) and `--security-opt` (`no-new-privileges`, `seccomp`).
//!
//! **Invariants:** capability names come out as `CAP_X`; an unknown name is an error,
//! never dropped silently.

use super::*;

/// Docker's default capability set.
pub(crate) const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability Linux knows (in number order).
pub(crate) const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capabilities available here (Docker's `GetAllCapabilities`): [`ALL_CAPS`] filtered by this
/// process' bounding set, so `--privileged`/`--cap-add ALL` never ask for what we cannot grant.
pub(crate) fn available_caps() -> Vec<String> {
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("CapBnd:")
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
        });
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(i, _)| bounding.is_none_or(|b| b & (1u64 << i) != 0))
        .map(|(_, c)| c.to_string())
        .collect()
}

fn normalize_cap(name: &str) -> String {
    let up = name.trim().to_ascii_uppercase();
    if up == "ALL" || up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// Docker's `TweakCapabilities`: the effective capability list for `--cap-add/--cap-drop/--privileged`.
pub(crate) fn capabilities(host: &HostOptions) -> Result<Vec<String>, ContainerError> {
    if host.privileged {
        return Ok(available_caps());
    }
    let adds: Vec<String> = host.cap_add.iter().map(|c| normalize_cap(c)).collect();
    let drops: Vec<String> = host.cap_drop.iter().map(|c| normalize_cap(c)).collect();
    for c in adds.iter().chain(drops.iter()) {
        if c != "ALL" && !ALL_CAPS.contains(&c.as_str()) {
            return Err(ContainerError::InvalidOption {
                field: "capability".into(),
                reason: format!("unknown capability: \"{c}\""),
            });
        }
    }
    let mut caps: Vec<String> = if adds.iter().any(|c| c == "ALL") {
        available_caps()
    } else if drops.iter().any(|c| c == "ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPS.iter().map(|s| s.to_string()).collect()
    };
    if !adds.iter().any(|c| c == "ALL") {
        caps.retain(|c| !drops.contains(c));
        for a in &adds {
            if !caps.contains(a) {
                caps.push(a.clone());
            }
        }
    } else {
        caps.retain(|c| !drops.contains(c));
    }
    Ok(caps)
}

/// Parses Docker's security options into (no_new_privileges, seccomp_unconfined).
pub(super) fn security_opts(opts: &[String]) -> Result<(bool, bool), ContainerError> {
    let mut nnp = false;
    let mut unconfined = false;
    for o in opts {
        let (k, v) = match o.split_once(['=', ':']) {
            Some((k, v)) => (k, Some(v)),
            None => (o.as_str(), None),
        };
        match (k, v) {
            ("no-new-privileges", None) | ("no-new-privileges", Some("true")) => nnp = true,
            ("no-new-privileges", Some("false")) => nnp = false,
            ("seccomp", Some("unconfined")) => unconfined = true,
            ("apparmor", _) | ("label", _) => {}
            _ => {
                return Err(ContainerError::InvalidOption {
                    field: "security-opt".into(),
                    reason: format!("invalid --security-opt: {o:?}"),
                })
            }
        }
    }
    Ok((nnp, unconfined))
}

pub(crate) fn security_no_new_privileges(opts: &[String]) -> bool {
    security_opts(opts).map(|(n, _)| n).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostOptions {
        HostOptions::default()
    }

    #[test]
    fn caps_add_drop() {
        let mut h = host();
        h.cap_add = vec!["NET_ADMIN".into()];
        h.cap_drop = vec!["chown".into(), "CAP_KILL".into()];
        let c = capabilities(&h).unwrap();
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_CHOWN".to_string()));
        assert!(!c.contains(&"CAP_KILL".to_string()));
        assert_eq!(c.len(), DEFAULT_CAPS.len() - 1);
    }

    #[test]
    fn caps_all() {
        let mut h = host();
        h.cap_drop = vec!["ALL".into()];
        h.cap_add = vec!["NET_BIND_SERVICE".into()];
        assert_eq!(
            capabilities(&h).unwrap(),
            vec!["CAP_NET_BIND_SERVICE".to_string()]
        );
        let mut h = host();
        h.cap_add = vec!["ALL".into()];
        h.cap_drop = vec!["SYS_ADMIN".into()];
        let c = capabilities(&h).unwrap();
        assert_eq!(
            c.len(),
            available_caps()
                .iter()
                .filter(|c| *c != "CAP_SYS_ADMIN")
                .count()
        );
        let mut h = host();
        h.cap_add = vec!["BOGUS".into()];
        assert!(capabilities(&h).is_err());
    }
}
