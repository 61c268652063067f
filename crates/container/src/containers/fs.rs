//! File system access: `cp` (stat, archive, extract), `diff`, `export`, writable layer sizes,
//! `container prune`.
//!
//! **Invariants:** the container's root is mounted for the access and counted in
//! `Inner::fs_users`; it is unmounted after the last access only if the container is not
//! starting, running, paused or restarting (an exit leaves a root in use mounted); paths on
//! volumes and bind mounts are resolved to their sources ([`Containers::fs_view`]).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::mounts::{MountPoint, MountType};
use crate::*;

use super::{io_err, unmount_container, Containers};

/// File system access: `cp`, `diff`, `export`, sizes, commit's inputs.
impl Containers {
    /// Runs `f` with the container's root mounted (mounting it if the container is not running
    /// and unmounting it afterwards unless the container started meanwhile).
    ///
    /// Only the overlay root is seen: a running container's bind mounts and volumes (and the
    /// `/etc/hosts`-like files barge bind-mounts) are not (docker shows them; a later concern).
    pub fn with_rootfs<T>(
        &self,
        id: &str,
        f: impl FnOnce(&Container, &Path) -> Result<T, ContainerError>,
    ) -> Result<T, ContainerError> {
        let c = {
            let mut inner = self.lock();
            let id = Self::find_id(&inner, id)?;
            *inner.fs_users.entry(id.clone()).or_default() += 1;
            inner.containers[&id].clone()
        };
        let result = self
            .mount_rootfs(&c)
            .and_then(|()| f(&c, &c.rootfs_path(self)));
        let mut inner = self.lock();
        let n = inner.fs_users.entry(c.id.clone()).or_default();
        *n = n.saturating_sub(1);
        if *n == 0 {
            inner.fs_users.remove(&c.id);
            let active = inner.starting.contains(&c.id)
                || inner.containers.get(&c.id).is_some_and(|x| {
                    matches!(
                        x.state.status,
                        Status::Running | Status::Paused | Status::Restarting
                    )
                });
            if !active {
                unmount_container(&self.container_dir(&c.id));
            }
        }
        result
    }

    fn not_found_in(c: &Container, e: fsops::FsError) -> ContainerError {
        match e {
            fsops::FsError::NotFound(p) => ContainerError::Fs(fsops::FsError::NotFound(format!(
                "{p} in container {}",
                c.name
            ))),
            e => e.into(),
        }
    }

    /// The volume or bind mount of `c` holding container path `abs` (cleaned, absolute): the
    /// one with the deepest destination.
    fn mount_holding<'a>(c: &'a Container, abs: &str) -> Option<&'a MountPoint> {
        c.mounts
            .iter()
            .filter(|m| matches!(m.kind, MountType::Volume | MountType::Bind))
            .filter(|m| !m.source.as_os_str().is_empty())
            .filter(|m| {
                let d = m.destination.trim_end_matches('/');
                abs == d || d.is_empty() || abs.starts_with(&format!("{d}/"))
            })
            .max_by_key(|m| m.destination.trim_end_matches('/').len())
    }

    /// Where `cp`'s operations see container path `path`, as dockerd (which works in the
    /// container's mount namespace, its volumes mounted): `(root, path in root, name)`.
    /// A running container is seen through `/proc/<pid>/root` (volumes, binds and tmpfs
    /// mounts included); for a stopped one a path inside a volume or bind mount is looked up
    /// in that mount's source, else in the overlay root. `name` is the base name to report
    /// when the path is a mount's root (its host base name, `_data`, is not the container's).
    fn fs_view(c: &Container, overlay: &Path, path: &str) -> (PathBuf, String, Option<String>) {
        let running = matches!(c.state.status, Status::Running | Status::Paused) && c.state.pid > 0;
        if running {
            // `root/.`: the directory the magic link leads to, not the link itself.
            let proc_root = PathBuf::from(format!("/proc/{}/root/.", c.state.pid));
            if proc_root.is_dir() {
                return (proc_root, path.to_string(), None);
            }
        }
        let abs = fsops::clean(&format!("/{path}"));
        let Some(m) = Self::mount_holding(c, &abs) else {
            return (overlay.to_path_buf(), path.to_string(), None);
        };
        let mut src = m.source.clone();
        if !m.subpath.is_empty() {
            src = src.join(m.subpath.trim_start_matches('/'));
        }
        let d = m.destination.trim_end_matches('/');
        let mut rest = abs[d.len()..].to_string();
        // Keep what makes the last component special (`dir/.`, `dir/`).
        if path.ends_with("/.") {
            rest.push_str("/.");
        } else if path.ends_with('/') {
            rest.push('/');
        }
        let name = (abs == d && !d.is_empty())
            .then(|| d.rsplit('/').next().unwrap_or_default().to_string());
        let rest = if rest.is_empty() {
            "/".to_string()
        } else {
            rest
        };
        (src, rest, name)
    }

    /// `HEAD /containers/{id}/archive`: stat of a path in the container (volumes and bind
    /// mounts included).
    pub fn stat_path(&self, id: &str, path: &str) -> Result<fsops::PathStat, ContainerError> {
        self.with_rootfs(id, |c, root| {
            let (root, p, name) = Self::fs_view(c, root, path);
            let mut st = fsops::stat(&root, &p).map_err(|e| Self::not_found_in(c, e))?;
            if let Some(n) = name {
                st.name = n;
            }
            Ok(st)
        })
    }

    /// `GET /containers/{id}/archive`: writes a tar of `path` to `w` (see [`fsops::archive`]);
    /// volumes and bind mounts included.
    pub fn archive_path(
        &self,
        id: &str,
        path: &str,
        w: &mut dyn Write,
    ) -> Result<fsops::PathStat, ContainerError> {
        self.with_rootfs(id, |c, root| {
            let (root, p, name) = Self::fs_view(c, root, path);
            fsops::archive_named(&root, &p, name.as_deref(), w)
                .map_err(|e| Self::not_found_in(c, e))
        })
    }

    /// `PUT /containers/{id}/archive`: extracts a tar into the directory `path`.
    /// `copy_uid_gid` owns the files by the container's user (its uid and primary gid) when
    /// it has one; without a user, as without `copy_uid_gid`, the archive's owners are kept
    /// (moby's `tarCopyOptions`: `Config.User == ""` → the default options). compose relies
    /// on it for a secret's `uid`/`gid`.
    pub fn extract_to(
        &self,
        id: &str,
        path: &str,
        r: &mut dyn Read,
        no_overwrite_dir_non_dir: bool,
        copy_uid_gid: bool,
    ) -> Result<(), ContainerError> {
        self.with_rootfs(id, |c, root| {
            // As dockerd: a read-only root refuses the copy unless it lands in a writable
            // volume or bind mount.
            let abs = fsops::clean(&format!("/{path}"));
            let to_volume = Self::mount_holding(c, &abs).is_some_and(|m| m.rw);
            if c.options.host.readonly_rootfs && !to_volume {
                return Err(ContainerError::ReadOnlyRootfs);
            }
            let overlay = root;
            let (view_root, view_path, _) = Self::fs_view(c, overlay, path);
            let (root, path) = (view_root.as_path(), view_path.as_str());
            let chown = if copy_uid_gid && !c.config.user.is_empty() {
                let u = spec::resolve_user(overlay, &c.config.user).map_err(|reason| {
                    ContainerError::InvalidOption {
                        field: "user".into(),
                        reason,
                    }
                })?;
                Some((u.uid, u.gid))
            } else {
                None
            };
            let opts = fsops::ExtractOptions {
                no_overwrite_dir_non_dir,
                chown,
            };
            fsops::extract(root, path, r, &opts).map_err(|e| Self::not_found_in(c, e))
        })
    }

    /// `GET /containers/{id}/export`: the merged root as a tar.
    pub fn export(&self, id: &str, w: &mut dyn Write) -> Result<(), ContainerError> {
        self.with_rootfs(id, |_, root| Ok(fsops::export(root, w)?))
    }

    /// `GET /containers/{id}/changes`: what the writable layer changed (no mount needed).
    pub fn changes(&self, id: &str) -> Result<Vec<fsops::Change>, ContainerError> {
        let c = self.get(id)?;
        let lowers = self.images.layer_dirs(&c.image_id)?;
        let upper = self.upper_dir(&c.id);
        if !upper.is_dir() {
            return Ok(Vec::new());
        }
        let mut lowers = lowers;
        lowers.reverse();
        fsops::changes(&upper, &lowers).map_err(io_err(format!("diff container {}", c.id)))
    }

    /// The overlay writable layer of a container (`<data-root>/containers/<id>/upper`).
    pub fn upper_dir(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("upper")
    }

    /// Bytes in the container's writable layer (Docker's `SizeRw`).
    pub fn size_rw(&self, id: &str) -> Result<u64, ContainerError> {
        let c = self.get(id)?;
        Ok(fsops::disk_usage(&self.upper_dir(&c.id)))
    }

    /// Removes stopped containers (`created`, `exited`, `dead`) for which `keep(c)` is false;
    /// returns the removed ones and the bytes their writable layers held.
    pub fn prune(
        &self,
        keep: &dyn Fn(&Container) -> bool,
    ) -> Result<(Vec<Container>, u64), ContainerError> {
        let mut removed = Vec::new();
        let mut space = 0;
        for c in self.list() {
            if !matches!(
                c.state.status,
                Status::Exited | Status::Created | Status::Dead
            ) || keep(&c)
                || self.lock().starting.contains(&c.id)
            {
                continue;
            }
            let size = fsops::disk_usage(&self.upper_dir(&c.id));
            match self.remove(&c.id, false) {
                Ok(()) => {
                    space += size;
                    removed.push(c);
                }
                // Started meanwhile: not prunable any more.
                Err(ContainerError::RunningRemove { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((removed, space))
    }
}

impl Container {
    fn rootfs_path(&self, engine: &Containers) -> PathBuf {
        engine.container_dir(&self.id).join("rootfs")
    }
}
