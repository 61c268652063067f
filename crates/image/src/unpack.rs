//! Applies one layer tar to a snapshot directory, per the
//! [OCI layer spec](https://github.com/opencontainers/image-spec/blob/main/layer.md).
//!
//! Whiteouts (`.wh.<name>`) become overlay whiteouts (0:0 character devices) and opaque markers
//! (`.wh..wh..opq`) become the `trusted.overlay.opaque=y` xattr on their directory, so a stack of
//! snapshots mounted with overlayfs shows the image's filesystem.
//!
//! Safety: every write goes through [`barge_archive::inroot`] with [`Follow::Never`]: names are
//! cleaned (a `..` leaving the layer is refused, absolute names are made relative) and each
//! parent is opened by the kernel beneath the snapshot root without following any symlink, so no
//! entry can create or change anything outside the root (no symlink traversal, no hardlink to the
//! outside). Hostile entries yield [`ImageError::HostileLayer`].

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use barge_archive::inroot::{
    clean_entry_name, Follow, InRoot, InRootError, NodeKind, Owner, UnpackOptions, Unpacker,
    Unsupported,
};

use crate::ImageError;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// Applies layer tars below one snapshot directory.
pub(crate) struct Applier<'a> {
    root: InRoot,
    layer: &'a str,
}

fn hostile(layer: &str, entry: &str, reason: &str) -> ImageError {
    ImageError::HostileLayer {
        layer: layer.to_string(),
        entry: entry.to_string(),
        reason: reason.to_string(),
    }
}

impl<'a> Applier<'a> {
    /// An applier writing below `root` (an existing, empty directory).
    pub(crate) fn new(root: &Path, layer: &'a str) -> Result<Self, ImageError> {
        let root = InRoot::open_with(root, Follow::Never).map_err(|e| ImageError::Io {
            what: format!("open {}", root.display()),
            source: std::io::Error::other(e),
        })?;
        Ok(Applier { root, layer })
    }

    /// The error for `e`, met while applying the entry named `entry`.
    fn err(&self, entry: &str, e: InRootError) -> ImageError {
        match e {
            InRootError::Escape { reason, .. } => hostile(self.layer, entry, reason),
            InRootError::LinkTarget { reason, .. } => hostile(self.layer, entry, reason),
            InRootError::Archive(e) => {
                ImageError::InvalidArchive(format!("layer {}: {e}", self.layer))
            }
            InRootError::Unsupported { kind, .. } => ImageError::InvalidArchive(format!(
                "layer {}: unsupported entry type {kind:?} for {entry}",
                self.layer
            )),
            InRootError::Io { op, path, source } => {
                ImageError::io(format!("layer {}: {op} {path}", self.layer), source)
            }
            e @ InRootError::Overwrite { .. } => {
                ImageError::InvalidArchive(format!("layer {}: {e}", self.layer))
            }
        }
    }

    /// Applies every entry of a layer tar stream, then makes the snapshot durable (`syncfs`)
    /// before the caller renames it into place.
    pub(crate) fn apply<R: Read>(&mut self, reader: R) -> Result<(), ImageError> {
        let tar_err = |e| ImageError::InvalidArchive(format!("layer {}: {e}", self.layer));
        let mut archive = tar::Archive::new(reader);
        let mut u = Unpacker::new(
            &self.root,
            UnpackOptions {
                owner: Owner::FromEntry,
                xattrs: true,
                no_overwrite_dir_non_dir: false,
                specials: true,
                unsupported: Unsupported::Error,
            },
        );
        for entry in archive.entries().map_err(tar_err)? {
            let mut entry = entry.map_err(tar_err)?;
            self.apply_entry(&mut u, &mut entry)?;
        }
        for (path, key, e) in &u.skipped_xattrs {
            tracing::warn!(layer = self.layer, entry = %path.display(), xattr = %key, error = %e, "xattr not supported here; skipped");
        }
        u.finish().map_err(|e| self.err("", e))?;
        self.root.syncfs().map_err(|e| self.err("", e))
    }

    fn apply_entry<R: Read>(
        &self,
        u: &mut Unpacker<'_>,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), ImageError> {
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let Some(dest) = clean_entry_name(&raw) else {
            return Err(hostile(
                self.layer,
                &name,
                "path contains '..' leaving the layer",
            ));
        };
        let kind = entry.header().entry_type();

        // Whiteouts.
        if let Some(base) = dest.file_name().map(OsStr::as_bytes) {
            if let Some(target) = base.strip_prefix(WHITEOUT_PREFIX) {
                let parent = dest.parent().unwrap_or(Path::new(""));
                let e = |e| self.err(&name, e);
                self.root.mkdir_all(parent, 0o755).map_err(e)?;
                if base == OPAQUE_MARKER {
                    return self
                        .root
                        .set_xattr(parent, "trusted.overlay.opaque", b"y")
                        .map_err(e);
                }
                if target.is_empty() || target == b"." || target == b".." {
                    return Err(hostile(self.layer, &name, "invalid whiteout target"));
                }
                let target = parent.join(OsStr::from_bytes(target));
                self.root.remove(&target).map_err(e)?;
                return self.root.mknod(&target, NodeKind::Char, 0, 0).map_err(e);
            }
        }

        let link = match kind {
            tar::EntryType::GNUSparse => {
                return Err(ImageError::InvalidArchive(format!(
                    "layer {}: sparse entry {name} is not supported",
                    self.layer
                )))
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let what = if kind.is_symlink() {
                    "symlink"
                } else {
                    "hardlink"
                };
                let Some(l) = entry.link_name_bytes() else {
                    return Err(hostile(
                        self.layer,
                        &name,
                        &format!("{what} without target"),
                    ));
                };
                if kind.is_hard_link() {
                    let Some(l) = clean_entry_name(&l) else {
                        return Err(hostile(
                            self.layer,
                            &name,
                            "hardlink target outside the layer",
                        ));
                    };
                    Some(l)
                } else {
                    None
                }
            }
            _ => None,
        };
        u.unpack_entry(entry, &dest, link.as_deref())
            .map(|_| ())
            .map_err(|e| self.err(&name, e))
    }
}
