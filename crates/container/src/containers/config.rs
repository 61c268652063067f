//! The config merge at create: the image's `Config` (entrypoint, cmd, env, working dir, user,
//! ...) under the create options, by Docker's rules ([`resolve_config`]).
//!
//! **Invariants:** pure (no I/O, no engine state: unit-tested below); the result is what the
//! container record keeps, so later image changes never alter an existing container.

use crate::*;

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Merges the image config with the create options (Docker's rules).
pub(crate) fn resolve_config(
    id: &str,
    image: &barge_image::ContainerConfig,
    opts: &CreateOptions,
) -> Result<ResolvedConfig, ContainerError> {
    let (entrypoint, cmd) = match &opts.entrypoint {
        Some(ep) => (
            if ep.is_empty() {
                None
            } else {
                Some(ep.clone())
            },
            opts.cmd.clone(),
        ),
        None => (
            image.entrypoint.clone().filter(|e| !e.is_empty()),
            opts.cmd.clone().or_else(|| image.cmd.clone()),
        ),
    };
    let mut argv: Vec<String> = entrypoint.clone().unwrap_or_default();
    argv.extend(cmd.clone().unwrap_or_default());
    if argv.is_empty() {
        return Err(ContainerError::InvalidOption {
            field: "cmd".into(),
            reason: "no command specified".into(),
        });
    }
    let mut env: Vec<String> = image.env.clone().unwrap_or_default();
    for e in &opts.env {
        let key = e.split('=').next().unwrap_or(e);
        if let Some(pos) = env.iter().position(|x| x.split('=').next() == Some(key)) {
            env[pos] = e.clone();
        } else {
            env.push(e.clone());
        }
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    let working_dir = opts
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".to_string());
    if !working_dir.starts_with('/') {
        return Err(ContainerError::InvalidOption {
            field: "working dir".into(),
            reason: format!(
                "the working directory '{working_dir}' is invalid, it needs to be an absolute path"
            ),
        });
    }
    let mut labels = image.labels.clone().unwrap_or_default();
    labels.extend(opts.labels.clone());
    Ok(ResolvedConfig {
        path: argv[0].clone(),
        args: argv[1..].to_vec(),
        entrypoint,
        cmd,
        env,
        working_dir,
        user: opts
            .user
            .clone()
            .or_else(|| image.user.clone())
            .unwrap_or_default(),
        hostname: opts
            .hostname
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| id[..12].to_string()),
        labels,
        exposed_ports: {
            let mut ports: Vec<String> = image
                .exposed_ports
                .as_ref()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            for p in &opts.exposed_ports {
                let p = if p.contains('/') {
                    p.clone()
                } else {
                    format!("{p}/tcp")
                };
                if !ports.contains(&p) {
                    ports.push(p);
                }
            }
            ports
        },
        stop_signal: opts
            .stop_signal
            .clone()
            .or_else(|| image.stop_signal.clone())
            .unwrap_or_else(|| "SIGTERM".into()),
        healthcheck: crate::health::merge(image.healthcheck.as_ref(), opts.healthcheck.as_ref()),
        volumes: {
            let mut v: Vec<String> = image
                .volumes
                .as_ref()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            v.extend(opts.volumes.iter().cloned());
            v.sort();
            v.dedup();
            v
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> barge_image::ContainerConfig {
        barge_image::ContainerConfig {
            env: Some(vec!["PATH=/bin".into(), "A=1".into()]),
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["run".into()]),
            working_dir: Some("/app".into()),
            user: Some("www".into()),
            ..Default::default()
        }
    }

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn merge_defaults() {
        let r = resolve_config(ID, &image(), &CreateOptions::default()).unwrap();
        assert_eq!(r.path, "/entry");
        assert_eq!(r.args, vec!["run"]);
        assert_eq!(r.working_dir, "/app");
        assert_eq!(r.user, "www");
        assert_eq!(r.hostname, "0123456789ab");
        assert_eq!(r.stop_signal, "SIGTERM");
    }

    #[test]
    fn entrypoint_override_clears_cmd() {
        let opts = CreateOptions {
            entrypoint: Some(vec!["/bin/sh".into()]),
            ..Default::default()
        };
        let r = resolve_config(ID, &image(), &opts).unwrap();
        assert_eq!((r.path.as_str(), r.args.len()), ("/bin/sh", 0));
        let opts = CreateOptions {
            entrypoint: Some(vec!["/bin/sh".into()]),
            cmd: Some(vec!["-c".into(), "x".into()]),
            ..Default::default()
        };
        let r = resolve_config(ID, &image(), &opts).unwrap();
        assert_eq!(r.args, vec!["-c", "x"]);
        let opts = CreateOptions {
            entrypoint: Some(vec![]),
            cmd: Some(vec!["ls".into()]),
            ..Default::default()
        };
        let r = resolve_config(ID, &image(), &opts).unwrap();
        assert_eq!((r.path.as_str(), r.entrypoint.clone()), ("ls", None));
        let opts = CreateOptions {
            cmd: Some(vec!["other".into()]),
            ..Default::default()
        };
        let r = resolve_config(ID, &image(), &opts).unwrap();
        assert_eq!(
            (r.path.as_str(), r.args.clone()),
            ("/entry", vec!["other".to_string()])
        );
        let opts = CreateOptions {
            entrypoint: Some(vec![]),
            ..Default::default()
        };
        assert!(resolve_config(ID, &image(), &opts).is_err());
    }

    #[test]
    fn env_merge() {
        let opts = CreateOptions {
            env: vec!["A=2".into(), "B=3".into()],
            ..Default::default()
        };
        let r = resolve_config(ID, &image(), &opts).unwrap();
        assert_eq!(r.env, vec!["PATH=/bin", "A=2", "B=3"]);
        let r = resolve_config(
            ID,
            &barge_image::ContainerConfig {
                cmd: Some(vec!["x".into()]),
                ..Default::default()
            },
            &CreateOptions::default(),
        )
        .unwrap();
        assert_eq!(r.env, vec![DEFAULT_PATH]);
        assert_eq!(r.working_dir, "/");
        let opts = CreateOptions {
            working_dir: Some("rel".into()),
            ..Default::default()
        };
        assert!(resolve_config(ID, &image(), &opts).is_err());
    }
}
