//! barge's registry client: pulls images from an OCI distribution registry into the image
//! store, pushes images from it, and checks logins. Built on `oci-client` (auth: anonymous,
//! Basic, Bearer token; rustls with the `ring` provider, see [`install_crypto_provider`]).
//!
//! Async (network I/O); every write into the synchronous image store runs on tokio's blocking
//! pool. A layer streams download → sha256 → store blob + unpack snapshot through a bounded
//! channel, never buffered whole; layers download in parallel (bounded). Progress is reported
//! as [`Progress`] events, which the daemon renders as Docker's JSON progress stream.
//!
//! Modules, one concern each:
//! - `error`: [`RegistryError`] and the mapping of oci-client's errors onto it;
//! - `auth`: [`Credentials`], identity-token exchange, [`login`];
//! - `endpoint`: how a registry host is reached (TLS settings, plain-HTTP probing);
//! - `resolve`: a reference to its top-level manifest, through mirrors for Docker Hub
//!   names; [`distribution`], [`list_tags`];
//! - `pull`: [`pull()`], layers streamed into the store and resumed with HTTP `Range`;
//! - `push`: [`push()`], blobs skipped, mounted or uploaded, then manifests;
//! - `download`: [`download()`], a plain URL for the builder's `ADD <url>`.

mod auth;
pub mod config;
mod download;
mod endpoint;
mod error;
mod pull;
mod push;
mod resolve;

use tokio::sync::mpsc;

pub use auth::{login, normalize_server, Credentials};
pub use config::RegistryConfig;
pub use download::{download, DownloadInfo};
pub use error::RegistryError;
pub use pull::{pull, PullResult};
pub use push::{push, PushResult};
pub use resolve::{distribution, list_tags};

/// Installs rustls' `ring` crypto provider as the process default (idempotent). Call once at
/// start-up, before any TLS connection.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// One progress event, in Docker's vocabulary (`status` strings as dockerd writes them).
#[derive(Debug, Clone)]
pub enum Progress {
    /// A line without an id (`Digest: ...`, `Status: ...`).
    Status(String),
    /// A line about one item (`id` = short layer digest or the tag).
    Item {
        /// Short digest (12 hex) or tag.
        id: String,
        /// `Pulling fs layer`, `Downloading`, `Download complete`, `Pull complete`, ...
        status: String,
        /// Bytes so far and total, for `Downloading`/`Pushing`.
        progress: Option<(u64, u64)>,
    },
}

/// Sink for progress events (unbounded: events are small and the consumer is the HTTP body).
pub type ProgressTx = mpsc::UnboundedSender<Progress>;

fn short(d: &str) -> String {
    d.strip_prefix("sha256:")
        .unwrap_or(d)
        .chars()
        .take(12)
        .collect()
}

fn item(tx: &ProgressTx, id: &str, status: &str, progress: Option<(u64, u64)>) {
    let _ = tx.send(Progress::Item {
        id: id.to_string(),
        status: status.to_string(),
        progress,
    });
}
