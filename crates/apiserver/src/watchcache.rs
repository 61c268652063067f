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
use std::sync::{Arc, Mutex};

use barge_datastore::{Event, Result, Revision, Store, WatchStream};
use futures_util::StreamExt;
use tokio::sync::broadcast;

/// How many recent events the cache keeps for watches that start in the past.
pub const WINDOW: usize = 10_000;
/// How many batches a watcher may fall behind before it is ended.
const LIVE_CAPACITY: usize = 4096;

struct Running {
    /// Events after `start`, in revision order.
    buffer: VecDeque<Event>,
    /// The cache covers revisions `(start, now]`.
    start: Revision,
    live: broadcast::Sender<Arc<Vec<Event>>>,
}

/// The shared watch cache of an [`ApiServer`](crate::ApiServer).
pub(crate) struct WatchCache {
    store: Arc<dyn Store>,
    state: Mutex<Option<Running>>,
    starting: tokio::sync::Mutex<()>,
}

impl WatchCache {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        WatchCache {
            store,
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
            live,
        });
        let cache = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(batch) = stream.next().await {
                let Some(cache) = cache.upgrade() else { return };
                match batch {
                    Ok(events) => {
                        let mut state = cache.lock();
                        let Some(run) = state.as_mut() else { return };
                        for e in &events {
                            run.buffer.push_back(e.clone());
                        }
                        while run.buffer.len() > WINDOW {
                            if let Some(old) = run.buffer.pop_front() {
                                run.start = old.kv.mod_revision;
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

    /// Events on keys under `prefix` with revision `> after`, as [`Store::watch`] gives them.
    pub(crate) async fn watch(
        self: &Arc<Self>,
        prefix: &str,
        after: Revision,
    ) -> Result<WatchStream> {
        self.ensure_started().await?;
        let cached = {
            let state = self.lock();
            match state.as_ref() {
                Some(run) if after >= run.start => {
                    let backlog: Vec<Event> = run
                        .buffer
                        .iter()
                        .filter(|e| e.kv.mod_revision > after && e.kv.key.starts_with(prefix))
                        .cloned()
                        .collect();
                    Some((backlog, run.live.subscribe()))
                }
                _ => None,
            }
        };
        let Some((backlog, live)) = cached else {
            return self.store.watch(prefix, after).await;
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
                            let mine: Vec<Event> = batch
                                .iter()
                                .filter(|e| {
                                    e.kv.mod_revision > after && e.kv.key.starts_with(&prefix)
                                })
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
        store.create("/registry/a/x", b"0".to_vec()).await.unwrap();
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
                .create(&format!("/registry/a/k{i}"), vec![])
                .await
                .unwrap();
        }
        store.create("/registry/b/only", vec![]).await.unwrap();
        for w in &mut watchers {
            let mut seen = 0;
            while seen < n {
                let batch = tokio::time::timeout(Duration::from_secs(5), w.next())
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap();
                for e in batch {
                    assert_eq!(e.kv.key, format!("/registry/a/k{seen}"));
                    assert_eq!(e.kv.mod_revision, seen + 2);
                    seen += 1;
                }
            }
        }
        let b = other.next().await.unwrap().unwrap();
        assert_eq!(b[0].kv.key, "/registry/b/only");
        // A late watcher from inside the window gets the backlog from memory.
        let mut late = cache.watch("/registry/a/", 40).await.unwrap();
        let first = late.next().await.unwrap().unwrap();
        assert_eq!(first[0].kv.mod_revision, 41);
        assert_eq!(first.len(), (n as usize + 1) - 40);
        // Older than the cache's start: the datastore answers.
        store.compact(30).await.unwrap();
        let mut before = cache.watch("/registry/a/", 0).await;
        assert!(matches!(
            before.as_mut().map(|_| ()),
            Err(barge_datastore::Error::Compacted { .. })
        ));
    }
}
