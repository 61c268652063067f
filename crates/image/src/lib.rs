//! barge's image store.
//!
//! Layout under the store root (`<data-root>/image`):
//! - `blobs/sha256/<hex>`: content-addressed blobs (manifests, configs, indexes, layers), verified
//!   while written ([OCI image layout](https://github.com/opencontainers/image-spec/blob/main/image-layout.md)).
//! - `refs.json`: reference → image record map, replaced atomically (temp file, fsync, rename).
//! - `snapshots/<chain-id-hex>/`: each layer unpacked once per chain ID
//!   ([image-spec config: layer chain ID](https://github.com/opencontainers/image-spec/blob/main/config.md#layer-chainid)).
//! - `tmp/`: partial writes; emptied by [`ImageStore::open`].
//! - `partial/<hex>`: compressed bytes of a layer download that was cut, kept so that the next
//!   pull fetches only the rest (HTTP `Range`); locked (`flock`) while a pull appends to it.
//!
//! The store is synchronous; async callers wrap calls in `spawn_blocking`.

mod archive;
pub mod changes;
pub mod config;
pub mod digest;
mod error;
pub mod overlay;
pub mod platform;
mod pull;
pub mod reference;
mod store;
mod unpack;

pub use config::{ContainerConfig, HealthConfig, HistoryEntry, ImageConfigFile, RootFs};
pub use digest::chain_ids;
pub use error::{ErrorKind, ImageError};
pub use platform::Platform;
pub use pull::{config_chain_ids, ExportedIndex, IngestedLayer, PendingLayer};
pub use reference::Reference;
pub use store::{
    HistoryItem, Hold, Image, ImageStore, LoadedImage, PruneReport, RemovedItem, SaveFormat,
};
