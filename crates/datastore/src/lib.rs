//! The cluster's datastore: a revisioned key-value store with etcd v3's semantics, which the
//! API server (`barge-apiserver`) stores every object in.
//!
//! The model is etcd's ([data model](https://etcd.io/docs/v3.5/learning/data_model/)): one
//! global, strictly increasing `revision` counts every committed write; each key carries the
//! revision that created it (`create_revision`) and the one that last changed it
//! (`mod_revision`). Kubernetes's `resourceVersion` is the `mod_revision` of an object and a
//! list's `resourceVersion` the store's revision at the time of the read.
//!
//! Backends:
//! - [`MemStore`]: in memory, for unit tests of the layers above (no persistence).
//! - [`SqliteStore`] (default for `barge server`): a kine-like append-only table where
//!   revision = row id.
//! - [`EtcdStore`]: etcd v3 (`--datastore-endpoint http://…`), for several servers.
//!
//! [`open`] picks one from the server's flags; [`spawn_compactor`] drops old history on a timer.
//!
//! Invariants every backend keeps (and `tests` check for each):
//! - Writes are linearizable: `update`/`delete` with an expected revision fail with
//!   [`Error::Conflict`] if the key changed since; `create` fails with
//!   [`Error::AlreadyExists`] if the key is live.
//! - A watch started after revision `R` sees every event with revision `> R` on its prefix
//!   exactly once, in revision order, with no gap — or, if `R` was compacted, one
//!   [`Error::Compacted`] and the end of the stream. A local write reaches watchers at once.
//! - A value returned by a write is what a later read at that revision returns.

mod error;
mod etcd;
mod memory;
pub mod ops;
mod sqlite;
pub mod testing;

use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

pub use error::{Error, Result};
pub use etcd::{EtcdResetReport, EtcdStore};
pub use memory::MemStore;
pub use sqlite::SqliteStore;

/// A global revision number: `0` means "none" (before the first write), the first write is `1`.
pub type Revision = i64;

/// One key's value at some revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key, e.g. `/registry/configmaps/default/app`.
    pub key: String,
    /// The stored bytes (the API server stores JSON).
    pub value: Vec<u8>,
    /// Revision of the write that created this incarnation of the key.
    pub create_revision: Revision,
    /// Revision of the write that last changed it (for a delete event: the deletion's).
    pub mod_revision: Revision,
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Created or updated (`prev` tells which: `None` for a create).
    Put,
    /// Deleted: the event's `kv` holds the last value and `mod_revision` = the deletion's revision.
    Delete,
}

/// One change, as a watch delivers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    /// The value before this change (`None` for a create).
    pub prev: Option<KeyValue>,
}

/// Options of [`Store::list`].
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Only keys strictly greater than this (for `continue` tokens).
    pub start_after: Option<String>,
    /// At most this many key-values (`None`: all).
    pub limit: Option<usize>,
    /// Read as of this revision (`None`: the current one). Older than the compacted revision
    /// is [`Error::Compacted`]; newer than the current one is [`Error::FutureRevision`].
    pub revision: Option<Revision>,
}

/// One page of a [`Store::list`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    /// The revision the page was read at (the store's revision for a current read).
    pub revision: Revision,
    /// Live keys under the prefix, in ascending key order.
    pub kvs: Vec<KeyValue>,
    /// How many more live keys follow this page (0 when it is the last one).
    pub remaining: i64,
}

/// A stream of batches of events in revision order; one batch holds the events of one or
/// more consecutive revisions. Ends after yielding an error.
pub type WatchStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<Vec<Event>>> + Send + 'static>>;

/// A revisioned key-value store (etcd v3's model). Every method is cancel-safe and never
/// blocks a tokio worker (backends run blocking I/O on the blocking pool or a thread).
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The backend's name for logs and errors (`"sqlite"`, `"etcd"`, `"memory"`).
    fn backend(&self) -> &'static str;

    /// The current (highest committed) revision.
    async fn revision(&self) -> Result<Revision>;

    /// The oldest revision still readable/watchable (`0` if nothing was compacted).
    async fn compacted_revision(&self) -> Result<Revision>;

    /// The value of `key` at `revision` (current if `None`), with the revision read at.
    async fn get(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> Result<(Revision, Option<KeyValue>)>;

    /// Live keys starting with `prefix`, in key order, paged by `opts`.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListPage>;

    /// Creates `key`; [`Error::AlreadyExists`] if it is live. Returns the stored key-value.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue>;

    /// Replaces `key`'s value if its `mod_revision` is still `expected`:
    /// [`Error::NotFound`] if it is not live, [`Error::Conflict`] if it changed.
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue>;

    /// Deletes `key` (only if its `mod_revision` is `expected`, when given); returns the last
    /// value with `mod_revision` set to the deletion's revision. [`Error::NotFound`] if not live.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;

    /// Events on keys starting with `prefix` with revision `> after`.
    /// [`Error::Compacted`] at once (or as the stream's last item) if `after` is older than
    /// the compacted revision.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// Drops history older than `revision` (superseded and deleted rows); returns the new
    /// compacted revision. Current values are never dropped.
    async fn compact(&self, revision: Revision) -> Result<Revision>;
}

/// How often [`open`]'s compactor runs (kine's and kube-apiserver's default: 5 minutes).
pub const COMPACT_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// How many revisions the compactor keeps (kine's default).
pub const COMPACT_KEEP: Revision = 1000;

/// Opens the cluster's datastore as `barge server`'s `--datastore-endpoint` says, and starts
/// its compactor ([`spawn_compactor`] with [`COMPACT_INTERVAL`] and [`COMPACT_KEEP`]; it stops
/// when the store is dropped):
/// - empty: SQLite at `data_dir/db/state.db` (the directories are created, mode 0700), with
///   the data dir's lock ([`ops::lock_db_dir`]) held while the store lives;
/// - `http://HOST:PORT[,http://HOST2:PORT2…]`: etcd v3 at those endpoints, keys at the root.
///
/// Errors: [`Error::Backend`] naming `--datastore-endpoint` for any other form (`https://` is
/// not supported yet), or when the database cannot be opened or etcd cannot be reached.
pub async fn open(endpoint: &str, data_dir: &Path) -> Result<Arc<dyn Store>> {
    let endpoint = endpoint.trim();
    let store: Arc<dyn Store> = if endpoint.is_empty() {
        let dir = data_dir.join("db");
        let d = dir.clone();
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&d)
        })
        .await
        .map_err(|e| Error::Backend {
            backend: "sqlite",
            message: e.to_string(),
        })?
        .map_err(|e| Error::Backend {
            backend: "sqlite",
            message: format!("create {}: {e}", dir.display()),
        })?;
        // One server per data dir; a restore waits for none (it refuses while this is held).
        let d = dir.clone();
        let lock = tokio::task::spawn_blocking(move || ops::lock_db_dir(&d))
            .await
            .map_err(|e| Error::Backend {
                backend: "sqlite",
                message: e.to_string(),
            })??;
        let store = SqliteStore::open(dir.join("state.db")).await?;
        store.hold_lock(lock);
        Arc::new(store)
    } else {
        Arc::new(EtcdStore::connect(&etcd_endpoints(endpoint)?).await?)
    };
    spawn_compactor(&store, COMPACT_INTERVAL, COMPACT_KEEP);
    Ok(store)
}

/// The etcd endpoints of a non-empty `--datastore-endpoint`
/// (`http://HOST:PORT[,http://HOST2:PORT2…]`).
///
/// Errors: [`Error::Backend`] naming `--datastore-endpoint` for any other form.
pub fn etcd_endpoints(endpoint: &str) -> Result<Vec<String>> {
    let endpoint = endpoint.trim();
    let endpoints: Vec<String> = endpoint.split(',').map(|e| e.trim().to_string()).collect();
    if let Some(bad) = endpoints
        .iter()
        .find(|e| !e.starts_with("http://") || e.len() <= "http://".len())
    {
        return Err(Error::Backend {
            backend: "etcd",
            message: format!(
                "--datastore-endpoint {endpoint:?}: {bad:?} is not an etcd endpoint; \
                 expected empty (SQLite in the data dir) or http://HOST:PORT[,http://HOST:PORT…]"
            ),
        });
    }
    Ok(endpoints)
}

/// Compacts `store` every `interval`, keeping the last `keep` revisions (the first run is one
/// `interval` after the call). The task holds only a weak reference: it ends when the last
/// `Arc` of the store is dropped. A failed compaction is logged and retried at the next tick.
pub fn spawn_compactor(
    store: &Arc<dyn Store>,
    interval: Duration,
    keep: Revision,
) -> tokio::task::JoinHandle<()> {
    let weak: Weak<dyn Store> = Arc::downgrade(store);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(store) = weak.upgrade() else { return };
            if let Err(e) = compact_keeping(store.as_ref(), keep).await {
                tracing::warn!(backend = store.backend(), error = %e, "datastore compaction failed");
            }
        }
    })
}

/// Compacts `store` up to its current revision minus `keep`; answers the compacted revision.
///
/// Errors: the store's.
pub async fn compact_keeping(store: &dyn Store, keep: Revision) -> Result<Revision> {
    let target = store.revision().await? - keep;
    if target <= 0 {
        return store.compacted_revision().await;
    }
    store.compact(target).await
}
