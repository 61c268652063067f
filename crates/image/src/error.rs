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
    #[error("No such image: {0}")]
    NotFound(String),
    #[error("invalid reference format: {reference}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("invalid platform {platform:?}: {reason}")]
    InvalidPlatform { platform: String, reason: String },
    #[error("no image for platform {wanted} in {reference} (available: {available})")]
    PlatformNotFound {
        reference: String,
        wanted: String,
        available: String,
    },
    #[error("unrecognised archive {path}: {reason}")]
    UnknownFormat { path: PathBuf, reason: String },
    #[error("invalid image archive: {0}")]
    InvalidArchive(String),
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("invalid {what} JSON: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("unsafe layer entry {entry:?} in {layer}: {reason}")]
    HostileLayer {
        layer: String,
        entry: String,
        reason: String,
    },
    #[error("unsupported media type {0}")]
    UnsupportedMediaType(String),
    #[error("invalid --change {change:?}: {reason}")]
    InvalidChange { change: String, reason: String },
    #[error("conflict: unable to delete {image} (must be forced) - image is being used by container {container}")]
    InUse { image: String, container: String },
    #[error("conflict: unable to delete {image} (must be forced) - image is referenced in multiple repositories")]
    MultipleRepositories { image: String },
    #[error("ambiguous image ID prefix {0}: several images match")]
    AmbiguousId(String),
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
