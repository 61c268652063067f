//! [`MemStore`]: the reference backend, in memory. It defines the semantics the persistent
//! backends are tested against and is the test double of the layers above.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::{
    Error, Event, EventKind, KeyValue, ListOptions, ListPage, Result, Revision, Store, WatchStream,
};

/// An in-memory [`Store`]; clones share the same data.
#[derive(Clone)]
pub struct MemStore {
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<Vec<Event>>,
}

struct Inner {
    revision: Revision,
    compacted: Revision,
    /// Live keys now.
    current: BTreeMap<String, KeyValue>,
    /// Live keys at `compacted`.
    base: BTreeMap<String, KeyValue>,
    /// Every event after `compacted`, in revision order.
    history: Vec<Event>,
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemStore {
    /// An empty store at revision 0.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(4096);
        MemStore {
            inner: Arc::new(Mutex::new(Inner {
                revision: 0,
                compacted: 0,
                current: BTreeMap::new(),
                base: BTreeMap::new(),
                history: Vec::new(),
            })),
            events,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn commit(&self, inner: &mut Inner, event: Event) {
        match event.kind {
            EventKind::Put => inner.current.insert(event.kv.key.clone(), event.kv.clone()),
            EventKind::Delete => inner.current.remove(&event.kv.key),
        };
        inner.history.push(event.clone());
        // No receiver is not an error.
        let _ = self.events.send(vec![event]);
    }
}

impl Inner {
    fn check(&self, revision: Option<Revision>) -> Result<Revision> {
        match revision {
            None | Some(0) => Ok(self.revision),
            Some(r) if r < self.compacted => Err(Error::Compacted {
                requested: r,
                compacted: self.compacted,
            }),
            Some(r) if r > self.revision => Err(Error::FutureRevision {
                requested: r,
                current: self.revision,
            }),
            Some(r) => Ok(r),
        }
    }

    /// The live keys at revision `at` (`compacted <= at <= revision`).
    fn state_at(&self, at: Revision) -> BTreeMap<String, KeyValue> {
        if at == self.revision {
            return self.current.clone();
        }
        let mut state = self.base.clone();
        for e in self.history.iter().take_while(|e| e.kv.mod_revision <= at) {
            match e.kind {
                EventKind::Put => state.insert(e.kv.key.clone(), e.kv.clone()),
                EventKind::Delete => state.remove(&e.kv.key),
            };
        }
        state
    }
}

#[async_trait::async_trait]
impl Store for MemStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn revision(&self) -> Result<Revision> {
        Ok(self.lock().revision)
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.lock().compacted)
    }

    async fn get(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> Result<(Revision, Option<KeyValue>)> {
        let inner = self.lock();
        let at = inner.check(revision)?;
        let kv = if at == inner.revision {
            inner.current.get(key).cloned()
        } else {
            inner.state_at(at).remove(key)
        };
        Ok((at, kv))
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListPage> {
        let inner = self.lock();
        let at = inner.check(opts.revision)?;
        let state = inner.state_at(at);
        let matching: Vec<&KeyValue> = state
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| opts.start_after.as_deref().is_none_or(|s| k.as_str() > s))
            .map(|(_, v)| v)
            .collect();
        let limit = opts.limit.unwrap_or(usize::MAX).min(matching.len());
        Ok(ListPage {
            revision: at,
            kvs: matching[..limit].iter().map(|kv| (*kv).clone()).collect(),
            remaining: (matching.len() - limit) as i64,
        })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let mut inner = self.lock();
        if inner.current.contains_key(key) {
            return Err(Error::AlreadyExists { key: key.into() });
        }
        inner.revision += 1;
        let kv = KeyValue {
            key: key.into(),
            value,
            create_revision: inner.revision,
            mod_revision: inner.revision,
        };
        let event = Event {
            kind: EventKind::Put,
            kv: kv.clone(),
            prev: None,
        };
        self.commit(&mut inner, event);
        Ok(kv)
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        let mut inner = self.lock();
        let Some(prev) = inner.current.get(key).cloned() else {
            return Err(Error::NotFound { key: key.into() });
        };
        if prev.mod_revision != expected {
            return Err(Error::Conflict {
                key: key.into(),
                expected,
                current: prev.mod_revision,
            });
        }
        inner.revision += 1;
        let kv = KeyValue {
            key: key.into(),
            value,
            create_revision: prev.create_revision,
            mod_revision: inner.revision,
        };
        let event = Event {
            kind: EventKind::Put,
            kv: kv.clone(),
            prev: Some(prev),
        };
        self.commit(&mut inner, event);
        Ok(kv)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let mut inner = self.lock();
        let Some(prev) = inner.current.get(key).cloned() else {
            return Err(Error::NotFound { key: key.into() });
        };
        if let Some(expected) = expected.filter(|e| *e != prev.mod_revision) {
            return Err(Error::Conflict {
                key: key.into(),
                expected,
                current: prev.mod_revision,
            });
        }
        inner.revision += 1;
        let kv = KeyValue {
            mod_revision: inner.revision,
            ..prev.clone()
        };
        let event = Event {
            kind: EventKind::Delete,
            kv: kv.clone(),
            prev: Some(prev),
        };
        self.commit(&mut inner, event);
        Ok(kv)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let (backlog, live) = {
            let inner = self.lock();
            if after < inner.compacted {
                return Err(Error::Compacted {
                    requested: after,
                    compacted: inner.compacted,
                });
            }
            let backlog: Vec<Event> = inner
                .history
                .iter()
                .filter(|e| e.kv.mod_revision > after && e.kv.key.starts_with(prefix))
                .cloned()
                .collect();
            // Subscribed under the lock: no commit falls between backlog and live.
            (backlog, self.events.subscribe())
        };
        let prefix = prefix.to_string();
        let first = (!backlog.is_empty()).then_some(backlog);
        let stream =
            futures_util::stream::unfold((first, live, false), move |(first, mut live, done)| {
                let prefix = prefix.clone();
                async move {
                    if done {
                        return None;
                    }
                    if let Some(batch) = first {
                        return Some((Ok(batch), (None, live, false)));
                    }
                    loop {
                        match live.recv().await {
                            Ok(batch) => {
                                let batch: Vec<Event> = batch
                                    .into_iter()
                                    .filter(|e| {
                                        e.kv.mod_revision > after && e.kv.key.starts_with(&prefix)
                                    })
                                    .collect();
                                if !batch.is_empty() {
                                    return Some((Ok(batch), (None, live, false)));
                                }
                            }
                            Err(broadcast::error::RecvError::Lagged(n)) => {
                                let err = Error::Backend {
                                    backend: "memory",
                                    message: format!("watcher fell behind by {n} batches"),
                                };
                                return Some((Err(err), (None, live, true)));
                            }
                            Err(broadcast::error::RecvError::Closed) => return None,
                        }
                    }
                }
            });
        Ok(Box::pin(stream))
    }

    async fn compact(&self, revision: Revision) -> Result<Revision> {
        let mut inner = self.lock();
        let target = revision.min(inner.revision);
        if target <= inner.compacted {
            return Ok(inner.compacted);
        }
        inner.base = inner.state_at(target);
        inner.history.retain(|e| e.kv.mod_revision > target);
        inner.compacted = target;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn revisions_conflicts_and_history() {
        let s = MemStore::new();
        let a = s.create("/r/a", b"1".to_vec()).await.unwrap();
        assert_eq!((a.create_revision, a.mod_revision), (1, 1));
        assert!(matches!(
            s.create("/r/a", vec![]).await,
            Err(Error::AlreadyExists { .. })
        ));
        let a2 = s.update("/r/a", b"2".to_vec(), 1).await.unwrap();
        assert_eq!((a2.create_revision, a2.mod_revision), (1, 2));
        assert!(matches!(
            s.update("/r/a", b"3".to_vec(), 1).await,
            Err(Error::Conflict { current: 2, .. })
        ));
        s.create("/r/b", b"b".to_vec()).await.unwrap();
        let (at, old) = s.get("/r/a", Some(1)).await.unwrap();
        assert_eq!((at, old.unwrap().value), (1, b"1".to_vec()));
        let page = s
            .list(
                "/r/",
                ListOptions {
                    limit: Some(1),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!((page.kvs.len(), page.remaining, page.revision), (1, 1, 3));
        let deleted = s.delete("/r/a", None).await.unwrap();
        assert_eq!((deleted.mod_revision, deleted.value), (4, b"2".to_vec()));
        assert_eq!(
            s.list("/r/", ListOptions::default())
                .await
                .unwrap()
                .kvs
                .len(),
            1
        );
        assert_eq!(
            s.list(
                "/r/",
                ListOptions {
                    revision: Some(3),
                    ..Default::default()
                }
            )
            .await
            .unwrap()
            .kvs
            .len(),
            2
        );
        s.compact(3).await.unwrap();
        assert!(matches!(
            s.get("/r/a", Some(2)).await,
            Err(Error::Compacted { .. })
        ));
        assert!(matches!(
            s.watch("/r/", 1).await,
            Err(Error::Compacted { .. })
        ));
        assert_eq!(
            s.get("/r/a", Some(3)).await.unwrap().1.unwrap().value,
            b"2".to_vec()
        );
    }

    #[tokio::test]
    async fn watch_replays_then_follows_without_gaps() {
        let s = MemStore::new();
        s.create("/r/a", vec![]).await.unwrap();
        s.create("/x/other", vec![]).await.unwrap();
        let mut w = s.watch("/r/", 0).await.unwrap();
        s.update("/r/a", b"v".to_vec(), 1).await.unwrap();
        let first = w.next().await.unwrap().unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].kv.mod_revision, 1);
        let second = w.next().await.unwrap().unwrap();
        assert_eq!(
            (
                second[0].kv.mod_revision,
                second[0].prev.as_ref().unwrap().mod_revision
            ),
            (3, 1)
        );
    }
}
