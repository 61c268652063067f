//! The one conformance suite of the [`Store`] trait, run against every backend: MemStore (the
//! reference), SQLite in a temporary directory, and a real etcd (Debian's `etcd-server`, started
//! on loopback by each test; a missing etcd fails the test).
//!
//! Revisions are never assumed to start at a given number (etcd's start at 1): each test reads
//! the store's revision first and works from the revisions its writes return.

use std::sync::Arc;
use std::time::Duration;

use barge_datastore::testing::{Backend, Fixture};
use barge_datastore::{Error, Event, EventKind, ListOptions, Revision, Store, WatchStream};
use futures_util::StreamExt;

async fn memory() -> Fixture {
    Backend::Memory.open().await
}

async fn sqlite() -> Fixture {
    Backend::Sqlite.open().await
}

async fn etcd() -> Fixture {
    Backend::Etcd.open_with_root("/conformance").await
}

const WAIT: Duration = Duration::from_secs(10);

/// The next batch of a watch, failing the test after 10 s.
async fn next_batch(w: &mut WatchStream) -> barge_datastore::Result<Vec<Event>> {
    tokio::time::timeout(WAIT, w.next())
        .await
        .expect("a watch event within 10s")
        .expect("the watch stream did not end")
}

/// Events of `w` until one at `until` or later arrived.
async fn events_until(w: &mut WatchStream, until: Revision) -> Vec<Event> {
    let mut all = Vec::new();
    while all.last().is_none_or(|e: &Event| e.kv.mod_revision < until) {
        let batch = tokio::time::timeout(WAIT, w.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no event within 10s after {} events (last {:?}), waiting for revision {until}",
                    all.len(),
                    all.last().map(|e| e.kv.mod_revision)
                )
            });
        all.extend(
            batch
                .expect("the stream did not end")
                .expect("a batch, not an error"),
        );
    }
    all
}

fn page(
    limit: Option<usize>,
    start_after: Option<&str>,
    revision: Option<Revision>,
) -> ListOptions {
    ListOptions {
        start_after: start_after.map(str::to_string),
        limit,
        revision,
    }
}

pub async fn revisions_and_errors(s: &dyn Store) {
    let base = s.revision().await.unwrap();
    assert_eq!(s.get("/r/a", None).await.unwrap(), (base, None));

    let a = s.create("/r/a", b"1".to_vec()).await.unwrap();
    assert!(a.mod_revision > base);
    assert_eq!(a.create_revision, a.mod_revision);
    assert_eq!((a.key.as_str(), a.value.as_slice()), ("/r/a", &b"1"[..]));
    assert_eq!(s.revision().await.unwrap(), a.mod_revision);
    assert!(matches!(
        s.create("/r/a", b"x".to_vec()).await,
        Err(Error::AlreadyExists { key }) if key == "/r/a"
    ));

    let a2 = s
        .update("/r/a", b"2".to_vec(), a.mod_revision)
        .await
        .unwrap();
    assert!(a2.mod_revision > a.mod_revision);
    assert_eq!(a2.create_revision, a.create_revision);
    match s.update("/r/a", b"3".to_vec(), a.mod_revision).await {
        Err(Error::Conflict {
            expected, current, ..
        }) => assert_eq!((expected, current), (a.mod_revision, a2.mod_revision)),
        other => panic!("stale update: {other:?}"),
    }
    assert!(matches!(
        s.update("/r/missing", b"3".to_vec(), a.mod_revision).await,
        Err(Error::NotFound { .. })
    ));
    // An expected revision of 0 never creates a key.
    assert!(matches!(
        s.update("/r/missing", b"3".to_vec(), 0).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        s.delete("/r/missing", None).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        s.delete("/r/a", Some(a.mod_revision)).await,
        Err(Error::Conflict { current, .. }) if current == a2.mod_revision
    ));

    // Reads at a revision see the value of then.
    let (at, old) = s.get("/r/a", Some(a.mod_revision)).await.unwrap();
    assert_eq!((at, old.unwrap().value), (a.mod_revision, b"1".to_vec()));
    let (at, cur) = s.get("/r/a", None).await.unwrap();
    assert_eq!(at, a2.mod_revision);
    assert_eq!(cur.as_ref(), Some(&a2));

    let deleted = s.delete("/r/a", Some(a2.mod_revision)).await.unwrap();
    assert!(deleted.mod_revision > a2.mod_revision);
    assert_eq!(
        deleted.value,
        b"2".to_vec(),
        "a delete returns the last value"
    );
    assert_eq!(deleted.create_revision, a.create_revision);
    assert_eq!(s.get("/r/a", None).await.unwrap().1, None);
    assert_eq!(
        s.get("/r/a", Some(a2.mod_revision)).await.unwrap().1,
        Some(a2.clone())
    );
    // A new incarnation has a new create revision.
    let again = s.create("/r/a", b"new".to_vec()).await.unwrap();
    assert!(again.create_revision > deleted.mod_revision);
    assert!(s.delete("/r/a", None).await.is_ok());

    let current = s.revision().await.unwrap();
    assert!(matches!(
        s.get("/r/a", Some(current + 100)).await,
        Err(Error::FutureRevision { requested, .. }) if requested == current + 100
    ));
    assert!(matches!(
        s.list("/r/", page(None, None, Some(current + 100))).await,
        Err(Error::FutureRevision { .. })
    ));
}

pub async fn list_paging(s: &dyn Store) {
    // Neighbours that share the prefix's bytes but not the prefix.
    s.create("/p", b"no".to_vec()).await.unwrap();
    s.create("/p0", b"no".to_vec()).await.unwrap();
    s.create("/pq/x", b"no".to_vec()).await.unwrap();
    let mut revs = Vec::new();
    for i in 0..10 {
        // Inserted out of key order.
        let key = format!("/p/{:02}", (i * 7) % 10);
        revs.push(s.create(&key, key.clone().into_bytes()).await.unwrap());
    }
    let all = s.list("/p/", ListOptions::default()).await.unwrap();
    let keys: Vec<String> = all.kvs.iter().map(|kv| kv.key.clone()).collect();
    let want: Vec<String> = (0..10).map(|i| format!("/p/{i:02}")).collect();
    assert_eq!(keys, want);
    assert_eq!(all.remaining, 0);
    assert_eq!(all.revision, s.revision().await.unwrap());

    // Pages of 3 until nothing remains; every page at the first page's revision.
    let first = s.list("/p/", page(Some(3), None, None)).await.unwrap();
    assert_eq!((first.kvs.len(), first.remaining), (3, 7));
    let at = first.revision;
    let mut seen: Vec<String> = first.kvs.iter().map(|kv| kv.key.clone()).collect();
    let mut remaining = first.remaining;
    // Writes between pages are not seen by pages read at the first one's revision.
    s.create("/p/05a", b"later".to_vec()).await.unwrap();
    s.delete("/p/09", None).await.unwrap();
    while remaining > 0 {
        let p = s
            .list(
                "/p/",
                page(Some(3), seen.last().map(String::as_str), Some(at)),
            )
            .await
            .unwrap();
        assert_eq!(p.revision, at);
        assert_eq!(p.remaining, remaining - p.kvs.len() as i64);
        remaining = p.remaining;
        seen.extend(p.kvs.iter().map(|kv| kv.key.clone()));
    }
    assert_eq!(seen, want);

    // At an older revision: only the first five creates.
    let old = s
        .list("/p/", page(None, None, Some(revs[4].mod_revision)))
        .await
        .unwrap();
    assert_eq!(old.kvs, {
        let mut v: Vec<_> = revs[..5].to_vec();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    });
    // The current state has the later writes.
    let now = s.list("/p/", page(Some(100), None, None)).await.unwrap();
    assert_eq!(now.kvs.len(), 10);
    assert!(now.kvs.iter().any(|kv| kv.key == "/p/05a"));
    assert!(!now.kvs.iter().any(|kv| kv.key == "/p/09"));
    // Remaining counts live keys only: /p/09 is deleted, /p/05a deleted and created again.
    s.delete("/p/05a", None).await.unwrap();
    s.create("/p/05a", b"again".to_vec()).await.unwrap();
    let p = s.list("/p/", page(Some(3), None, None)).await.unwrap();
    assert_eq!((p.kvs.len(), p.remaining), (3, 7));
    let p = s
        .list("/p/", page(Some(4), Some("/p/04"), None))
        .await
        .unwrap();
    let keys: Vec<&str> = p.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/p/05", "/p/05a", "/p/06", "/p/07"]);
    assert_eq!(p.remaining, 1);
    // Limit 0: no key, everything remains.
    let none = s.list("/p/", page(Some(0), None, None)).await.unwrap();
    assert_eq!((none.kvs.len(), none.remaining), (0, 10));
    // An updated value shows at its revision and not before.
    let k = s.get("/p/01", None).await.unwrap().1.unwrap();
    let k2 = s
        .update("/p/01", b"v2".to_vec(), k.mod_revision)
        .await
        .unwrap();
    let before = s
        .list("/p/01", page(None, None, Some(k2.mod_revision - 1)))
        .await
        .unwrap();
    assert_eq!(before.kvs, vec![k]);
    let after = s.list("/p/01", ListOptions::default()).await.unwrap();
    assert_eq!(after.kvs, vec![k2]);
    // The empty prefix lists everything.
    assert_eq!(
        s.list("", ListOptions::default()).await.unwrap().kvs.len(),
        13
    );
}

pub async fn watch_backlog_live_and_deletes(s: &dyn Store) {
    let a = s.create("/w/a", b"1".to_vec()).await.unwrap();
    s.create("/other/x", vec![]).await.unwrap();
    let a2 = s
        .update("/w/a", b"2".to_vec(), a.mod_revision)
        .await
        .unwrap();
    // From before everything: the backlog (create, update; not /other).
    let mut w = s.watch("/w/", a.mod_revision - 1).await.unwrap();
    let backlog = events_until(&mut w, a2.mod_revision).await;
    assert_eq!(backlog.len(), 2, "{backlog:?}");
    assert_eq!(
        (backlog[0].kind, &backlog[0].kv, &backlog[0].prev),
        (EventKind::Put, &a, &None)
    );
    assert_eq!(
        (backlog[1].kind, &backlog[1].kv, backlog[1].prev.as_ref()),
        (EventKind::Put, &a2, Some(&a))
    );
    // From the middle: only what came after.
    let mut w2 = s.watch("/w/", a.mod_revision).await.unwrap();
    // Live: a delete carries the last value.
    let d = s.delete("/w/a", None).await.unwrap();
    s.create("/other/y", vec![]).await.unwrap();
    let b = s.create("/w/b", b"b".to_vec()).await.unwrap();
    let live = events_until(&mut w, b.mod_revision).await;
    assert_eq!(live.len(), 2, "{live:?}");
    assert_eq!(live[0].kind, EventKind::Delete);
    assert_eq!(live[0].kv, d);
    assert_eq!(live[0].kv.value, b"2".to_vec());
    assert_eq!(live[0].prev.as_ref(), Some(&a2));
    assert_eq!((live[1].kind, &live[1].kv), (EventKind::Put, &b));
    let mid = events_until(&mut w2, b.mod_revision).await;
    let revs: Vec<Revision> = mid.iter().map(|e| e.kv.mod_revision).collect();
    assert_eq!(revs, vec![a2.mod_revision, d.mod_revision, b.mod_revision]);
    // Nothing else comes.
    assert!(tokio::time::timeout(Duration::from_millis(300), w.next())
        .await
        .is_err());
}

pub async fn watch_under_concurrent_writers(store: Arc<dyn Store>) {
    const WRITERS: usize = 4;
    const WRITES: usize = 200;
    let base = store.revision().await.unwrap();
    let early = store.watch("/c/", base).await.unwrap();
    // Every writer stops at half-way until all are there; then they go on while the second
    // watcher starts, and hold their last write until it has started (so that some writes
    // surely come after it, however the tasks are scheduled).
    let halfway = Arc::new(tokio::sync::Barrier::new(WRITERS + 1));
    let started = Arc::new(tokio::sync::Barrier::new(WRITERS + 1));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let s = store.clone();
        let halfway = halfway.clone();
        let started = started.clone();
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..WRITES {
                if i == WRITES / 2 {
                    halfway.wait().await;
                }
                if i == WRITES - 1 {
                    started.wait().await;
                }
                // Per writer: a few keys, created then updated over and over, some deleted.
                let key = format!("/c/{w}/{}", i % 5);
                let kv = if i < 5 {
                    s.create(&key, format!("{w}-{i}").into_bytes()).await
                } else if i % 50 == 7 {
                    let d = s.delete(&key, None).await.unwrap();
                    acks.push(d.mod_revision);
                    s.create(&key, format!("{w}-{i}").into_bytes()).await
                } else {
                    let cur = s.get(&key, None).await.unwrap().1.unwrap();
                    s.update(&key, format!("{w}-{i}").into_bytes(), cur.mod_revision)
                        .await
                }
                .unwrap();
                acks.push(kv.mod_revision);
            }
            acks
        }));
    }
    halfway.wait().await;
    // Writers are writing again: start a second watcher from the revision the store has now.
    let from = store.revision().await.unwrap();
    let mid = store.watch("/c/", from).await.unwrap();
    started.wait().await;
    let mut acks: Vec<Revision> = Vec::new();
    for t in tasks {
        acks.extend(t.await.unwrap());
    }
    acks.sort_unstable();
    let last = *acks.last().unwrap();
    assert!(
        from < last,
        "the second watcher starts before the last write"
    );
    for (mut w, after) in [(early, base), (mid, from)] {
        let got: Vec<Revision> = events_until(&mut w, last)
            .await
            .iter()
            .map(|e| e.kv.mod_revision)
            .collect();
        let want: Vec<Revision> = acks.iter().copied().filter(|r| *r > after).collect();
        assert!(
            got == want,
            "watch after {after}: {} events, want {} (first differences: {:?})",
            got.len(),
            want.len(),
            got.iter()
                .zip(&want)
                .find(|(g, w)| g != w)
                .map(|(g, w)| (*g, *w))
        );
    }
}

/// Fifty watchers, each started from the revision the store has at that moment while four
/// writers create keys as fast as they can: a commit that lands between a watch's start and
/// its catch-up read must come once, neither lost nor twice.
pub async fn watchers_started_during_writes(store: Arc<dyn Store>) {
    let mut writers = Vec::new();
    for w in 0..4 {
        let s = store.clone();
        writers.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..300 {
                acks.push(
                    s.create(&format!("/during/{w}/{i}"), vec![0; 64])
                        .await
                        .unwrap()
                        .mod_revision,
                );
            }
            acks
        }));
    }
    let mut watchers = Vec::new();
    for _ in 0..50 {
        let from = store.revision().await.unwrap();
        watchers.push((from, store.watch("/during/", from).await.unwrap()));
        tokio::task::yield_now().await;
    }
    let mut acks = Vec::new();
    for w in writers {
        acks.extend(w.await.unwrap());
    }
    acks.sort_unstable();
    let last = *acks.last().unwrap();
    for (from, mut w) in watchers {
        let want: Vec<Revision> = acks.iter().copied().filter(|r| *r > from).collect();
        if want.is_empty() {
            continue;
        }
        let got: Vec<Revision> = events_until(&mut w, last)
            .await
            .iter()
            .map(|e| e.kv.mod_revision)
            .collect();
        assert!(
            got == want,
            "watch after {from}: {} events, want {}",
            got.len(),
            want.len()
        );
    }
}

/// Racing writers on one key: exactly one create and one update per expected revision win.
pub async fn racing_writers_on_one_key(store: Arc<dyn Store>) {
    let creates = {
        let tasks: Vec<_> = (0..16u8)
            .map(|i| {
                let s = store.clone();
                tokio::spawn(async move { s.create("/race/k", vec![i]).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    };
    let won: Vec<_> = creates.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "{creates:?}");
    assert!(creates
        .iter()
        .filter(|r| r.is_err())
        .all(|r| matches!(r, Err(Error::AlreadyExists { .. }))));
    let first = won[0].clone();
    let expected = first.mod_revision;
    let updates = {
        let tasks: Vec<_> = (0..16)
            .map(|i: u8| {
                let s = store.clone();
                tokio::spawn(async move { s.update("/race/k", vec![i], expected).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    };
    let won: Vec<_> = updates.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "{updates:?}");
    for r in &updates {
        if let Err(e) = r {
            assert!(
                matches!(e, Error::Conflict { current, .. } if *current == won[0].mod_revision),
                "{e}"
            );
        }
    }
    assert_eq!(
        store.get("/race/k", None).await.unwrap().1.as_ref(),
        Some(won[0])
    );
}

async fn expect_compacted_watch(s: &dyn Store, prefix: &str, after: Revision) {
    match s.watch(prefix, after).await {
        Err(Error::Compacted { .. }) => {}
        Err(e) => panic!("watch after {after}: {e}"),
        Ok(mut w) => {
            match next_batch(&mut w).await {
                Err(Error::Compacted { .. }) => {}
                other => panic!("watch after {after}: {other:?}, want Compacted"),
            }
            let end = tokio::time::timeout(WAIT, w.next()).await.unwrap();
            assert!(end.is_none(), "the stream ends after Compacted");
        }
    }
}

pub async fn compaction(s: &dyn Store) {
    let mut a = s.create("/k/a", b"0".to_vec()).await.unwrap();
    let first = a.mod_revision;
    for i in 1..10 {
        a = s
            .update("/k/a", format!("{i}").into_bytes(), a.mod_revision)
            .await
            .unwrap();
    }
    let b = s.create("/k/b", b"b".to_vec()).await.unwrap();
    let bd = s.delete("/k/b", None).await.unwrap();
    let c = s.create("/k/c", b"c".to_vec()).await.unwrap();
    let target = bd.mod_revision;
    assert_eq!(s.compact(target).await.unwrap(), target);
    assert_eq!(s.compacted_revision().await.unwrap(), target);
    // Compacting to an older revision changes nothing.
    assert_eq!(s.compact(first).await.unwrap(), target);

    assert!(matches!(
        s.get("/k/a", Some(first)).await,
        Err(Error::Compacted { requested, compacted }) if requested == first && compacted == target
    ));
    assert!(matches!(
        s.list("/k/", page(None, None, Some(b.mod_revision))).await,
        Err(Error::Compacted { .. })
    ));
    expect_compacted_watch(s, "/k/", first).await;
    // At the compacted revision itself and after: intact.
    assert_eq!(
        s.get("/k/a", Some(target)).await.unwrap().1,
        Some(a.clone())
    );
    assert_eq!(s.get("/k/b", Some(target)).await.unwrap().1, None);
    let at = s.list("/k/", page(None, None, Some(target))).await.unwrap();
    assert_eq!(at.kvs, vec![a.clone()]);
    let now = s.list("/k/", ListOptions::default()).await.unwrap();
    assert_eq!(now.kvs, vec![a.clone(), c.clone()]);
    let mut w = s.watch("/k/", target).await.unwrap();
    let a2 = s
        .update("/k/a", b"after".to_vec(), a.mod_revision)
        .await
        .unwrap();
    let events = events_until(&mut w, a2.mod_revision).await;
    let revs: Vec<Revision> = events.iter().map(|e| e.kv.mod_revision).collect();
    assert_eq!(revs, vec![c.mod_revision, a2.mod_revision]);
    // The update's previous value survives the compaction of its row's predecessor.
    assert_eq!(events[1].prev.as_ref(), Some(&a));
    // Compacting to the newest revision keeps every current value.
    let newest = s.revision().await.unwrap();
    assert_eq!(s.compact(newest).await.unwrap(), newest);
    let now = s.list("/k/", ListOptions::default()).await.unwrap();
    assert_eq!(now.kvs, vec![a2, c]);
}

macro_rules! conformance {
    ($($backend:ident),*) => {$(
        mod $backend {

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn revisions_and_errors() {
                let f = super::$backend().await;
                super::revisions_and_errors(f.store.as_ref()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn list_paging() {
                let f = super::$backend().await;
                super::list_paging(f.store.as_ref()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn watch_backlog_live_and_deletes() {
                let f = super::$backend().await;
                super::watch_backlog_live_and_deletes(f.store.as_ref()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn watch_under_concurrent_writers() {
                let f = super::$backend().await;
                super::watch_under_concurrent_writers(f.store.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn watchers_started_during_writes() {
                let f = super::$backend().await;
                super::watchers_started_during_writes(f.store.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn racing_writers_on_one_key() {
                let f = super::$backend().await;
                super::racing_writers_on_one_key(f.store.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn compaction() {
                let f = super::$backend().await;
                super::compaction(f.store.as_ref()).await;
            }
        }
    )*};
}

conformance!(memory, sqlite, etcd);
