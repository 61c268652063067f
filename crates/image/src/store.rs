//! The store itself: blobs, references, images, snapshots. (API skeleton; see lib.rs for layout.)

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::{ImageConfigFile, ImageError, Platform};

/// An image as the store knows it.
#[derive(Debug, Clone)]
pub struct Image {
    /// Image ID: the config digest, `sha256:<64 hex>` (Docker's image ID).
    pub id: String,
    /// Familiar tags, e.g. `busybox:1.35`, `myrepo.io/x/y:tag` (Docker's `RepoTags`).
    pub repo_tags: Vec<String>,
    /// Familiar name + manifest digest, e.g. `busybox@sha256:...` (Docker's `RepoDigests`).
    pub repo_digests: Vec<String>,
    /// Digest of the (platform-specific) manifest.
    pub manifest_digest: String,
    /// The parsed config blob.
    pub config: ImageConfigFile,
    /// Sum of uncompressed layer sizes in bytes (Docker's `Size`).
    pub size: u64,
    /// When the image was added to the store, unix seconds (used when the config lacks `created`).
    pub added: i64,
}

/// One image a `load` stored, with the references it was tagged with (familiar form).
#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub id: String,
    pub references: Vec<String>,
}

/// Output format of [`ImageStore::save`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    /// `docker save` layout: `manifest.json`, `repositories`, and (since Docker 25) an OCI layout too.
    Docker,
    /// An OCI image layout in a tar archive (`oci-layout`, `index.json`, `blobs/`).
    Oci,
}

/// What `rmi` did, in Docker's `ImageDeleteResponseItem` terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemovedItem {
    Untagged(String),
    Deleted(String),
}

/// What `image prune` removed.
#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    pub removed: Vec<RemovedItem>,
    pub space_reclaimed: u64,
}

/// The image store. Cheap to share behind an `Arc`; methods take `&self` and lock internally.
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root`, removing partial files left by a crash.
    pub fn open(root: &Path) -> Result<ImageStore, ImageError> {
        let _ = root;
        todo!()
    }
    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }
}
