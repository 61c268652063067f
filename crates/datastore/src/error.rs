//! The datastore's errors.

use crate::Revision;

/// `Result` with the datastore's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a [`Store`](crate::Store) call can fail with. The API server maps each kind to a
/// Kubernetes `Status` (AlreadyExists 409, NotFound 404, Conflict 409, Compacted 410 Expired/
/// Gone, FutureRevision 504 Timeout as kube-apiserver's "Too large resource version").
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    #[error("key {key} not found")]
    NotFound { key: String },
    /// The key changed since `expected` (`current` is its mod_revision now, 0 if deleted).
    #[error("conflict on {key}: expected revision {expected}, current {current}")]
    Conflict {
        key: String,
        expected: Revision,
        current: Revision,
    },
    #[error("revision {requested} has been compacted (compacted revision {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    /// The backend failed (I/O, SQLite, etcd transport); `message` has the cause.
    #[error("{backend} datastore: {message}")]
    Backend {
        backend: &'static str,
        message: String,
    },
}
