//! The watch cache: one datastore watch on `/registry/` for the whole server, fanned out in
//! memory to every API watch (kube-apiserver's cacher, reduced to its event window).
//!
//! The cache keeps the last [`WINDOW`] events. A watch from a revision inside the window is
//! served from memory (backlog, then live events, with no gap: the backlog is copied and the
//! live subscription taken under one lock, and the pump appends and publishes under the same
//! lock); a watch from an older revision goes to the datastore (which answers Compacted when
//! it is too old). A watcher too slow to keep up with the live channel is ended, as
//! kube-apiserver ends it; clients resume from their last resourceVersion.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use barge_datastore::{Event, EventKind, Result, Revision, Store};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// One change, decoded once for every watcher.
#[derive(Debug)]
pub(crate) struct CachedEvent {
    pub kind: EventKind,
    pub key: String,
    /// The change's revision.
    pub revision: Revision,
    /// The object after the change; for a delete, its last state with `resourceVersion` set
    /// to the deletion's revision (what a DELETED event carries).
    pub object: Value,
    /// The object before the change (`None` for a create).
    pub old: Option<Value>,
    /// `object` as JSON.
    pub json: Bytes,
}

impl CachedEvent {
    /// The estimated memory this event holds.
    fn cost(&self) -> usize {
        self.json.len() * 5 + self.key.len() + 64
    }

    /// Decodes a datastore event; `None` (logged) if a stored value is corrupt.
    fn decode(e: &Event) -> Option<Arc<CachedEvent>> {
        let decoded = (|| {
            let new = crate::rest::object::decode(&e.kv)?;
            let old = match &e.prev {
                Some(p) => Some(crate::rest::object::decode(p)?),
                None => None,
            };
            crate::status::ApiResult::Ok((new, old))
        })();
        let (new, old) = match decoded {
            Ok(v) => v,
            Err(err) => {
                tracing::warn!(key = %e.kv.key, error = %err, "watch: undecodable stored object");
                return None;
            }
        };
        let object = match e.kind {
            EventKind::Put => new,
            EventKind::Delete => {
                let mut last = old.clone().unwrap_or(new);
                last["metadata"]["resourceVersion"] = json!(e.kv.mod_revision.to_string());
                last
            }
        };
        let json = Bytes::from(serde_json::to_vec(&object).unwrap_or_default());
        Some(Arc::new(CachedEvent {
            kind: e.kind,
            key: e.kv.key.clone(),
            revision: e.kv.mod_revision,
            object,
            old,
            json,
        }))
    }
}

/// Batches of decoded events in revision order (ends after an error).
pub(crate) type CachedStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<Vec<Arc<CachedEvent>>>> + Send + 'static>>;

/// How many recent events the cache keeps for watches that start in the past.
pub const WINDOW: usize = 10_000;
/// …and at most this many bytes of them (estimated: the JSON text, plus the decoded old and
/// new objects at about twice their text each), so large objects cannot balloon the cache.
pub const WINDOW_BYTES: usize = 64 << 20;
/// How many batches a watcher may fall behind before it is ended.
const LIVE_CAPACITY: usize = 4096;

struct Running {
    /// Events after `start`, in revision order.
    buffer: VecDeque<Arc<CachedEvent>>,
    /// The cache covers revisions `(start, now]`.
    start: Revision,
    /// The estimated size of `buffer`.
    bytes: usize,
    live: broadcast::Sender<Arc<Vec<Arc<CachedEvent>>>>,
}

/// The shared watch cache of an [`ApiServer`](crate::ApiServer).
pub(crate) struct WatchCache {
    store: Arc<dyn Store>,
    /// Window limits: events, estimated bytes.
    limits: (usize, usize),
    state: Mutex<Option<Running>>,
    starting: tokio::sync::Mutex<()>,
}

impl WatchCache {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Self::with_limits(store, WINDOW, WINDOW_BYTES)
    }

    /// A cache whose window holds at most `events` events and about `bytes` bytes.
    pub(crate) fn with_limits(store: Arc<dyn Store>, events: usize, bytes: usize) -> Self {
        WatchCache {
            store,
            limits: (events, bytes),
            state: Mutex::new(None),
            starting: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the datastore watch if it is not running.
    async fn ensure_started(self: &Arc<Self>) -> Result<()> {
        if self.lock().is_some() {
            return Ok(());
        }
        let _guard = self.starting.lock().await;
        if self.lock().is_some() {
            return Ok(());
        }
        let start = self.store.revision().await?;
        let mut stream = self.store.watch("/registry/", start).await?;
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        *self.lock() = Some(Running {
            buffer: VecDeque::new(),
            start,
            bytes: 0,
            live,
        });
        let cache = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(batch) = stream.next().await {
                let Some(cache) = cache.upgrade() else { return };
                match batch {
                    Ok(events) => {
                        // Decoded outside the lock, once for every watcher.
                        let events: Vec<Arc<CachedEvent>> =
                            events.iter().filter_map(CachedEvent::decode).collect();
                        let mut state = cache.lock();
                        let Some(run) = state.as_mut() else { return };
                        for e in &events {
                            run.bytes += e.cost();
                            run.buffer.push_back(e.clone());
                        }
                        let (max_events, max_bytes) = cache.limits;
                        while run.buffer.len() > max_events || run.bytes > max_bytes {
                            match run.buffer.pop_front() {
                                Some(old) => {
                                    run.start = old.revision;
                                    run.bytes -= old.cost();
                                }
                                None => break,
                            }
                        }
                        // No receiver is not an error.
                        let _ = run.live.send(Arc::new(events));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "watch cache: datastore watch failed; restarting");
                        break;
                    }
                }
            }
            // Ended: drop the state (ending every cached watch) so the next watch restarts.
            if let Some(cache) = cache.upgrade() {
                *cache.lock() = None;
            }
        });
        Ok(())
    }

    /// Events on keys under `prefix` with revision `> after`, as [`Store::watch`] gives them
    /// (decoded once for every watcher).
    pub(crate) async fn watch(
        self: &Arc<Self>,
        prefix: &str,
        after: Revision,
    ) -> Result<CachedStream> {
        self.ensure_started().await?;
        let cached = {
            let state = self.lock();
            match state.as_ref() {
                Some(run) if after >= run.start => {
                    let backlog: Vec<Arc<CachedEvent>> = run
                        .buffer
                        .iter()
                        .filter(|e| e.revision > after && e.key.starts_with(prefix))
                        .cloned()
                        .collect();
                    Some((backlog, run.live.subscribe()))
                }
                _ => None,
            }
        };
        let Some((backlog, live)) = cached else {
            let stream = self.store.watch(prefix, after).await?;
            return Ok(Box::pin(stream.map(|batch| {
                batch.map(|events| events.iter().filter_map(CachedEvent::decode).collect())
            })));
        };
        let prefix = prefix.to_string();
        let first = (!backlog.is_empty()).then_some(backlog);
        let stream = futures_util::stream::unfold((first, live), move |(first, mut live)| {
            let prefix = prefix.clone();
            async move {
                if let Some(batch) = first {
                    return Some((Ok(batch), (None, live)));
                }
                loop {
                    match live.recv().await {
                        Ok(batch) => {
                            let mine: Vec<Arc<CachedEvent>> = batch
                                .iter()
                                .filter(|e| e.revision > after && e.key.starts_with(&prefix))
                                .cloned()
                                .collect();
                            if !mine.is_empty() {
                                return Some((Ok(mine), (None, live)));
                            }
                        }
                        // Too slow, or the cache restarted: end; the client resumes.
                        Err(_) => return None,
                    }
                }
            }
        });
        Ok(Box::pin(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use barge_datastore::MemStore;
    use std::time::Duration;

    #[tokio::test]
    async fn fans_out_one_datastore_watch() {
        let store = Arc::new(MemStore::new());
        store.create("/registry/a/x", b"{}".to_vec()).await.unwrap();
        let cache = Arc::new(WatchCache::new(store.clone()));
        // 100 watchers on one prefix; every one sees every event once, in order.
        let mut watchers = Vec::new();
        for _ in 0..100 {
            watchers.push(cache.watch("/registry/a/", 1).await.unwrap());
        }
        let mut other = cache.watch("/registry/b/", 1).await.unwrap();
        let n: i64 = 50;
        for i in 0..n {
            store
                .create(&format!("/registry/a/k{i}"), b"{}".to_vec())
                .await
                .unwrap();
        }
        store
            .create("/registry/b/only", b"{}".to_vec())
            .await
            .unwrap();
        for w in &mut watchers {
            let mut seen = 0;
            while seen < n {
                let batch = tokio::time::timeout(Duration::from_secs(5), w.next())
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap();
                for e in batch {
                    assert_eq!(e.key, format!("/registry/a/k{seen}"));
                    assert_eq!(e.revision, seen + 2);
                    seen += 1;
                }
            }
        }
        let b = other.next().await.unwrap().unwrap();
        assert_eq!(b[0].key, "/registry/b/only");
        // A late watcher from inside the window gets the backlog from memory.
        let mut late = cache.watch("/registry/a/", 40).await.unwrap();
        let first = late.next().await.unwrap().unwrap();
        assert_eq!(first[0].revision, 41);
        assert_eq!(first.len(), (n as usize + 1) - 40);
        // Older than the cache's start: the datastore answers.
        store.compact(30).await.unwrap();
        let mut before = cache.watch("/registry/a/", 0).await;
        assert!(matches!(
            before.as_mut().map(|_| ()),
            Err(barge_datastore::Error::Compacted { .. })
        ));
    }

    #[tokio::test]
    async fn window_is_bounded() {
        let store = Arc::new(MemStore::new());
        // About 10 KiB per event against a 100 KiB budget: only the last few stay.
        let cache = Arc::new(WatchCache::with_limits(store.clone(), 1000, 100 << 10));
        let _w = cache.watch("/registry/", 0).await.unwrap();
        let big = serde_json::to_vec(&json!({"data": "x".repeat(2000)})).unwrap();
        for i in 0..50 {
            store
                .create(&format!("/registry/k{i}"), big.clone())
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let state = cache.lock();
        let run = state.as_ref().unwrap();
        assert!(
            run.buffer.len() < 15 && !run.buffer.is_empty(),
            "{}",
            run.buffer.len()
        );
        assert!(run.bytes <= 100 << 10);
        assert_eq!(run.start, run.buffer[0].revision - 1);
    }
}
