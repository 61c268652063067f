//! `docker commit`: a container's writable layer as a new image on top of its image.
//!
//! The layer is made exactly as a build's RUN step makes one ([`crate::layer`]: overlay
//! whiteouts → OCI `.wh.` entries, runtime mount points left out); the config is the image's,
//! updated with the container's resolved settings, the client's config overrides and
//! Dockerfile-style `--change` lines.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

use barge_container::{fsops::RUNTIME_MOUNTPOINTS, Containers};
use barge_image::config::{ContainerConfig, HistoryEntry};
use barge_image::digest::{sha256_digest, Descriptor, Manifest};
use barge_image::{ImageStore, Reference};

use crate::layer;
use crate::BuildError;

/// What `POST /commit` asks for.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// Where to tag the image (`None`: untagged).
    pub reference: Option<Reference>,
    /// `-m`: history comment.
    pub comment: String,
    /// `-a`: author.
    pub author: String,
    /// `-c`: Dockerfile instructions (`CMD`, `ENV`, `LABEL`, ...) applied last.
    pub changes: Vec<String>,
    /// The request body: config fields that override the container's.
    pub config: Option<ContainerConfig>,
}

/// The container's settings as an image config: the image's, with what the container was
/// created with (command, environment, user, working dir, labels, stop signal) on top.
fn container_config(base: &ContainerConfig, c: &barge_container::Container) -> ContainerConfig {
    let mut cfg = base.clone();
    let r = &c.config;
    cfg.env = Some(r.env.clone());
    cfg.cmd = r.cmd.clone();
    cfg.entrypoint = r.entrypoint.clone();
    if c.options
        .working_dir
        .as_deref()
        .is_some_and(|w| !w.is_empty())
    {
        cfg.working_dir = Some(r.working_dir.clone());
    }
    if !r.user.is_empty() {
        cfg.user = Some(r.user.clone());
    }
    cfg.labels = (!r.labels.is_empty()).then(|| r.labels.clone());
    if let Some(s) = &c.options.stop_signal {
        cfg.stop_signal = Some(s.clone());
    }
    cfg
}

/// Docker's `merge(userConf, imageConf)`: the user's fields win; `Env` merges by key,
/// `ExposedPorts`, `Labels` and `Volumes` merge.
fn merge_overrides(cfg: &mut ContainerConfig, user: &ContainerConfig) {
    if let Some(env) = &user.env {
        let e = cfg.env.get_or_insert_with(Vec::new);
        for kv in env {
            let key = kv.split('=').next().unwrap_or(kv);
            e.retain(|x| x.split('=').next() != Some(key));
            e.push(kv.clone());
        }
    }
    if let Some(p) = &user.exposed_ports {
        cfg.exposed_ports
            .get_or_insert_with(BTreeMap::new)
            .extend(p.clone());
    }
    if let Some(v) = &user.volumes {
        cfg.volumes
            .get_or_insert_with(BTreeMap::new)
            .extend(v.clone());
    }
    if let Some(l) = &user.labels {
        cfg.labels
            .get_or_insert_with(BTreeMap::new)
            .extend(l.clone());
    }
    if user.cmd.as_ref().is_some_and(|c| !c.is_empty()) {
        cfg.cmd = user.cmd.clone();
    }
    if user.entrypoint.as_ref().is_some_and(|c| !c.is_empty()) {
        cfg.entrypoint = user.entrypoint.clone();
    }
    for (dst, src) in [
        (&mut cfg.user, &user.user),
        (&mut cfg.working_dir, &user.working_dir),
        (&mut cfg.stop_signal, &user.stop_signal),
        (&mut cfg.hostname, &user.hostname),
    ] {
        if src.as_ref().is_some_and(|s| !s.is_empty()) {
            *dst = src.clone();
        }
    }
    if user.healthcheck.is_some() {
        cfg.healthcheck = user.healthcheck.clone();
    }
    if user.shell.is_some() {
        cfg.shell = user.shell.clone();
    }
    if user.on_build.is_some() {
        cfg.on_build = user.on_build.clone();
    }
}

/// Commits container `id` as a new image; returns its ID (`sha256:...`).
///
/// The container is not paused (barge has no freezer support yet): a running container's
/// files are read as they are while the layer is written.
pub fn commit(
    images: &ImageStore,
    containers: &Containers,
    id: &str,
    opts: &CommitOptions,
) -> Result<String, BuildError> {
    let c = containers.get(id)?;
    let img = images.get(&c.image_id)?;
    // The lower layers as the container sees them, topmost first (unpacked if needed).
    let mut lowers: Vec<PathBuf> = images.layer_dirs(&img.id)?;
    lowers.reverse();
    let in_lower = |rel: &str| -> bool {
        let rel = rel.trim_start_matches('/');
        for l in &lowers {
            if let Ok(md) = fs::symlink_metadata(l.join(rel)) {
                return !(md.file_type().is_char_device() && md.rdev() == 0);
            }
        }
        false
    };
    let upper = containers.upper_dir(&c.id);
    let skip = |rel: &str, md: &fs::Metadata| {
        RUNTIME_MOUNTPOINTS.contains(&format!("/{rel}").as_str())
            && !in_lower(rel)
            && ((md.is_file() && md.len() == 0)
                || (md.is_dir()
                    && fs::read_dir(upper.join(rel))
                        .map(|mut d| d.next().is_none())
                        .unwrap_or(false)))
    };
    let mut lf = layer::make_layer(&images.root().join("tmp"), None, |t| {
        if upper.is_dir() {
            layer::diff_upper_filtered(&upper, t, &skip, &in_lower)
        } else {
            Ok(())
        }
    })
    .map_err(|source| BuildError::Io {
        what: format!("diff container {}", c.id),
        source,
    })?;
    let desc = layer::store_layer(images, &mut lf, &img.config.rootfs.diff_ids)?;

    let mut config = img.config.clone();
    let mut cc = container_config(&img.config.config, &c);
    if let Some(user) = &opts.config {
        merge_overrides(&mut cc, user);
    }
    barge_image::changes::apply_changes(&mut cc, &opts.changes)?;
    config.config = cc;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    config.created = Some(now.clone());
    config.author = (!opts.author.is_empty()).then(|| opts.author.clone());
    config.rootfs.diff_ids.push(lf.diff_id.clone());
    let mut created_by = vec![c.config.path.clone()];
    created_by.extend(c.config.args.iter().cloned());
    config.history.push(HistoryEntry {
        created: Some(now),
        created_by: Some(created_by.join(" ")),
        author: config.author.clone(),
        comment: (!opts.comment.is_empty()).then(|| opts.comment.clone()),
        empty_layer: None,
    });

    // Docker's image JSON (v1 fields): the container committed, its configuration, and the
    // image it was made on (inspect's `Container`, `ContainerConfig` and `Parent`).
    config
        .extra
        .insert("container".into(), serde_json::json!(c.id));
    config.extra.insert(
        "container_config".into(),
        serde_json::json!({
            "Hostname": c.config.hostname,
            "Domainname": "",
            "User": c.config.user,
            "AttachStdin": false,
            "AttachStdout": false,
            "AttachStderr": false,
            "Tty": false,
            "OpenStdin": false,
            "StdinOnce": false,
            "Env": c.config.env,
            "Cmd": c.config.cmd,
            "Image": c.options.image,
            "Volumes": null,
            "WorkingDir": c.config.working_dir,
            "Entrypoint": c.config.entrypoint,
            "OnBuild": null,
            "Labels": c.config.labels,
        }),
    );
    config
        .extra
        .insert("parent".into(), serde_json::json!(img.id));

    let (_, mdata, _) = images.export_manifest(&img.id)?;
    let base: Manifest = serde_json::from_slice(&mdata)
        .map_err(|e| BuildError::Invalid(format!("manifest of {}: {e}", img.id)))?;
    let mut sizes = match images.layer_sizes(&img.id) {
        Ok(s) if s.len() == base.layers.len() => s,
        _ => base
            .layers
            .iter()
            .map(|l| {
                images
                    .layer_info(&l.digest)
                    .map(|i| i.size)
                    .unwrap_or(l.size)
            })
            .collect(),
    };
    sizes.push(lf.size);
    let mut layers = base.layers;
    layers.push(desc);
    let cdata = serde_json::to_vec(&config).expect("config serializes");
    let man = Manifest {
        schema_version: 2,
        media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
        config: Descriptor {
            media_type: "application/vnd.oci.image.config.v1+json".into(),
            digest: sha256_digest(&cdata),
            size: cdata.len() as u64,
            ..Default::default()
        },
        layers,
    };
    let mdata = serde_json::to_vec(&man).expect("manifest serializes");
    let refs: Vec<Reference> = opts.reference.iter().cloned().collect();
    let image = images.commit_pull(&mdata, &sha256_digest(&mdata), &cdata, sizes, &refs)?;
    Ok(image.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_overrides_merge_like_docker() {
        let mut cfg = ContainerConfig {
            env: Some(vec!["PATH=/bin".into(), "A=1".into()]),
            cmd: Some(vec!["sh".into()]),
            user: Some("app".into()),
            ..Default::default()
        };
        let user = ContainerConfig {
            env: Some(vec!["A=2".into(), "B=3".into()]),
            cmd: Some(vec!["echo".into(), "hi".into()]),
            user: Some(String::new()),
            labels: Some([("k".to_string(), "v".to_string())].into()),
            ..Default::default()
        };
        merge_overrides(&mut cfg, &user);
        assert_eq!(cfg.env.unwrap(), vec!["PATH=/bin", "A=2", "B=3"]);
        assert_eq!(cfg.cmd.unwrap(), vec!["echo", "hi"]);
        assert_eq!(cfg.user.as_deref(), Some("app"));
        assert_eq!(cfg.labels.unwrap()["k"], "v");
    }
}
