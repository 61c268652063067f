//! Errors of the image store. Only the daemon maps [`ErrorKind`] to HTTP status codes.

use std::path::PathBuf;

/// What class of failure an [`ImageError`] is; the daemon maps it to an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 404: no such image / reference / blob.
    NotFound,
    /// 400: bad reference, bad archive, digest mismatch, hostile layer, bad `--change`.
    InvalidInput,
    /// 409: e.g. image in use by a container, or ambiguous short ID.
    Conflict,
    /// 500: I/O and everything else.
    Internal,
}

/// Errors from the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No image, reference or blob by that name (the name as given). Kind: NotFound.
    #[error("No such image: {0}")]
    NotFound(String),
    /// A reference that distribution/reference rejects. Kind: InvalidInput.
    #[error("invalid reference format: {reference}: {reason}")]
    InvalidReference { reference: String, reason: String },
    /// A platform string that is not `os/arch[/variant]`. Kind: InvalidInput.
    #[error("invalid platform {platform:?}: {reason}")]
    InvalidPlatform { platform: String, reason: String },
    /// An index has no manifest for the wanted platform; `available` lists those it has. Kind: NotFound.
    #[error("no image for platform {wanted} in {reference} (available: {available})")]
    PlatformNotFound {
        reference: String,
        wanted: String,
        available: String,
    },
    /// The input is missing, or is not an OCI layout / docker save archive. Kind: InvalidInput.
    #[error("unrecognised archive {path}: {reason}")]
    UnknownFormat { path: PathBuf, reason: String },
    /// A truncated or inconsistent archive or layer (missing blob, bad tar, layer count mismatch). Kind: InvalidInput.
    #[error("invalid image archive: {0}")]
    InvalidArchive(String),
    /// Content whose sha256 differs from its descriptor or diff ID; `what` names the blob. Kind: InvalidInput.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    /// A blob whose size differs from its descriptor (bytes). Kind: InvalidInput.
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    /// Unparsable JSON; `what` names the file or blob. Kind: InvalidInput.
    #[error("invalid {what} JSON: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// A layer entry that would write outside the snapshot (`..`, symlink traversal, outside hardlink, bad whiteout). Kind: InvalidInput.
    #[error("unsafe layer entry {entry:?} in {layer}: {reason}")]
    HostileLayer {
        layer: String,
        entry: String,
        reason: String,
    },
    /// A manifest or layer media type the store does not handle. Kind: InvalidInput.
    #[error("unsupported media type {0}")]
    UnsupportedMediaType(String),
    /// A `--change` line that is not a supported Dockerfile instruction. Kind: InvalidInput.
    #[error("invalid --change {change:?}: {reason}")]
    InvalidChange { change: String, reason: String },
    /// `rmi` of an image a container uses (without force). Kind: Conflict.
    #[error("conflict: unable to delete {image} (must be forced) - image is being used by container {container}")]
    InUse { image: String, container: String },
    /// `rmi` by ID of an image with several references (without force). Kind: Conflict.
    #[error("conflict: unable to delete {image} (must be forced) - image is referenced in multiple repositories")]
    MultipleRepositories { image: String },
    /// A short ID prefix matching more than one image. Kind: Conflict.
    #[error("ambiguous image ID prefix {0}: several images match")]
    AmbiguousId(String),
    /// An I/O failure while doing `what`. Kind: Internal.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl ImageError {
    /// The class of this error, for the one place that maps errors to HTTP/exit codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImageError::NotFound(_) | ImageError::PlatformNotFound { .. } => ErrorKind::NotFound,
            ImageError::InUse { .. }
            | ImageError::MultipleRepositories { .. }
            | ImageError::AmbiguousId(_) => ErrorKind::Conflict,
            ImageError::Io { .. } => ErrorKind::Internal,
            _ => ErrorKind::InvalidInput,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ImageError::Io {
            what: what.into(),
            source,
        }
    }
}
