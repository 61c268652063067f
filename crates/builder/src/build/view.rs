//! Views of a state's root file system: [`RootView`] (its snapshot dirs, top first, read
//! without mounting) and overlay mounts of them ([`Mounted`], for `COPY --from`, `RUN --mount`
//! binds and their writable throw-away overlays).
//!
//! **Invariants:** an overlay is mounted through `barge_image::overlay` only, and unmounted
//! when its [`Mounted`] is dropped; a view of one layer is that snapshot dir, not a mount.

use std::fs;
use std::path::{Path, PathBuf};

use super::*;

/// A read-only view of an image's root file system (layer dirs, top first).
pub(super) struct RootView {
    pub(super) layers: Vec<PathBuf>,
}

impl RootView {
    /// Resolves `path` (absolute, in the image) to the host path of the topmost layer holding it.
    pub(super) fn lookup(&self, path: &str) -> Option<PathBuf> {
        let rel = path.trim_start_matches('/');
        for l in &self.layers {
            let p = if rel.is_empty() {
                l.clone()
            } else {
                l.join(rel)
            };
            match fs::symlink_metadata(&p) {
                Ok(md) => {
                    use std::os::unix::fs::{FileTypeExt, MetadataExt};
                    if md.file_type().is_char_device() && md.rdev() == 0 {
                        return None;
                    }
                    return Some(p);
                }
                Err(_) => continue,
            }
        }
        None
    }

    pub(super) fn read(&self, path: &str) -> Option<String> {
        fs::read_to_string(self.lookup(path)?).ok()
    }
}

/// A mounted overlay of an image's layers for COPY --from (unmounted on drop).
pub(super) struct Mounted {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.mounted {
            if let Ok(p) = std::ffi::CString::new(self.dir.path().as_os_str().as_encoded_bytes()) {
                // SAFETY: valid NUL-terminated path.
                unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

pub(super) fn mount_view(tmp: &Path, layers: &[PathBuf]) -> Result<(Mounted, PathBuf), BuildError> {
    if layers.len() <= 1 {
        let dir = tempfile::Builder::new()
            .prefix("from-")
            .tempdir_in(tmp)
            .map_err(io_err("create mount dir"))?;
        let p = layers
            .first()
            .cloned()
            .unwrap_or_else(|| dir.path().to_path_buf());
        return Ok((
            Mounted {
                dir,
                mounted: false,
            },
            p,
        ));
    }
    mount_overlay(tmp, layers, None)
}

/// Mounts an overlay of `lowers` (top first), read-only unless `upper` (upper, work) is given.
pub(super) fn mount_overlay(
    tmp: &Path,
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
) -> Result<(Mounted, PathBuf), BuildError> {
    let dir = tempfile::Builder::new()
        .prefix("from-")
        .tempdir_in(tmp)
        .map_err(io_err("create mount dir"))?;
    barge_image::overlay::mount(
        dir.path(),
        &barge_image::overlay::Overlay {
            lowers,
            upper,
            flags: &[],
        },
    )
    .map_err(|e| BuildError::Io {
        what: "mount overlay".into(),
        source: e.into_io(),
    })?;
    let p = dir.path().to_path_buf();
    Ok((Mounted { dir, mounted: true }, p))
}

impl Builder {
    pub(super) fn view(&self, st: &StageState) -> RootView {
        let ids = barge_image::chain_ids(&st.config.rootfs.diff_ids);
        let root = self.images.root().join("snapshots");
        RootView {
            layers: ids
                .iter()
                .rev()
                .map(|c| root.join(c.trim_start_matches("sha256:")))
                .collect(),
        }
    }
}
