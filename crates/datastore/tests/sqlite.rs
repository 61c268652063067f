//! SQLite-only properties: the table stays bounded under heartbeat-like updates with
//! compaction, the timer compactor runs, a reopened database has everything, and
//! acknowledged writes survive `kill -9` of the writing process.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use barge_datastore::{
    compact_keeping, spawn_compactor, ListOptions, Revision, SqliteStore, Store,
};

const KEYS: usize = 10;

fn file_len(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// 20,000 updates of 10 keys (node heartbeats and leases), compacting every 1,000 keeping the
/// last 1,000 revisions: the table never holds more than keys + 2,000 rows, the database file
/// stays small, and every key ends with its last value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_with_compaction_keep_the_table_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let s = SqliteStore::open(&path).await.unwrap();
    let mut revs: Vec<Revision> = Vec::new();
    for k in 0..KEYS {
        revs.push(
            s.create(
                &format!("/registry/leases/kube-node-lease/node-{k}"),
                vec![b'x'; 300],
            )
            .await
            .unwrap()
            .mod_revision,
        );
    }
    let mut max_rows = 0;
    for i in 0..20_000usize {
        let k = i % KEYS;
        let key = format!("/registry/leases/kube-node-lease/node-{k}");
        // A ~300-byte lease object, changing every time (renewTime).
        let value = format!(
            "{{\"renewTime\":\"{i:020}\",\"pad\":\"{}\"}}",
            "p".repeat(250)
        );
        revs[k] = s
            .update(&key, value.into_bytes(), revs[k])
            .await
            .unwrap()
            .mod_revision;
        if i % 1000 == 999 {
            compact_keeping(&s, 1000).await.unwrap();
            max_rows = max_rows.max(s.row_count().await.unwrap());
        }
    }
    let rows = s.row_count().await.unwrap();
    max_rows = max_rows.max(rows);
    assert!(
        max_rows <= (KEYS + 2000) as i64,
        "the table grew to {max_rows} rows"
    );
    assert_eq!(
        s.compacted_revision().await.unwrap(),
        s.revision().await.unwrap() - 1000
    );
    let page = s
        .list("/registry/leases/", ListOptions::default())
        .await
        .unwrap();
    assert_eq!(page.kvs.len(), KEYS);
    for kv in &page.kvs {
        let k: usize = kv.key.rsplit('-').next().unwrap().parse().unwrap();
        assert_eq!(kv.mod_revision, revs[k]);
    }
    let db = file_len(&path);
    let wal = file_len(&path.with_extension("db-wal"));
    println!(
        "20,000 updates of {KEYS} keys with compaction: {rows} rows, database {db} bytes, WAL {wal} bytes"
    );
    // Freed pages are reused: ~2,000 rows of ~600 bytes (value + old value) fit in a few MB.
    assert!(db < 8 * 1024 * 1024, "database file is {db} bytes");
    // The checkpointer keeps the WAL from growing with the ~100 MB appended to it.
    assert!(wal < 32 * 1024 * 1024, "WAL is {wal} bytes");
}

/// The timer compactor compacts on its own and stops when the store is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compactor_runs_on_its_timer() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(dir.path().join("state.db"))
            .await
            .unwrap(),
    );
    let task = spawn_compactor(&store, Duration::from_millis(50), 10);
    let mut kv = store.create("/hb", vec![]).await.unwrap();
    for _ in 0..100 {
        kv = store.update("/hb", vec![1], kv.mod_revision).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.compacted_revision().await.unwrap() < kv.mod_revision - 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no compaction in 10s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(store);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the compactor ends with its store")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_database_has_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let (a, compacted) = {
        let s = SqliteStore::open(&path).await.unwrap();
        let a = s.create("/a", b"1".to_vec()).await.unwrap();
        let a = s.update("/a", b"2".to_vec(), a.mod_revision).await.unwrap();
        let b = s.create("/b", b"b".to_vec()).await.unwrap();
        s.delete("/b", Some(b.mod_revision)).await.unwrap();
        (a, s.compact(b.mod_revision).await.unwrap())
    };
    let s = SqliteStore::open(&path).await.unwrap();
    assert_eq!(s.revision().await.unwrap(), compacted + 1);
    assert_eq!(s.compacted_revision().await.unwrap(), compacted);
    assert_eq!(s.get("/a", None).await.unwrap().1, Some(a));
    assert_eq!(s.get("/b", None).await.unwrap().1, None);
    // Revisions go on from where they were, even though the newest row (a tombstone) was
    // compacted away.
    let c = s.create("/c", vec![]).await.unwrap();
    assert_eq!(c.mod_revision, compacted + 2);
    // Compacted to the newest revision, a tombstone: still not reused after a reopen.
    let gone = s.delete("/c", None).await.unwrap();
    assert_eq!(
        s.compact(gone.mod_revision).await.unwrap(),
        gone.mod_revision
    );
    drop(s);
    let s = SqliteStore::open(&path).await.unwrap();
    assert_eq!(s.revision().await.unwrap(), gone.mod_revision);
    assert_eq!(
        s.create("/c", vec![]).await.unwrap().mod_revision,
        gone.mod_revision + 1
    );
    // A later compaction sweeps the old tombstone: /a and the new /c are all that is left.
    s.compact(gone.mod_revision + 1).await.unwrap();
    assert_eq!(s.row_count().await.unwrap(), 2);
}

const CHILD_ENV: &str = "BARGE_DATASTORE_DURABILITY_DB";

/// Not a test of its own: the writer process of `acknowledged_writes_survive_kill_9` (it does
/// nothing unless that test started it). It writes as fast as it can from 8 tasks and prints
/// `ack REVISION KEY VERSION` after each acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_child_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let s = SqliteStore::open(&path).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            use std::io::Write;
            for i in 0u64.. {
                let key = format!("/d/{t}/{}", i % 50);
                let value = expected_value(&key, i);
                let kv = if i < 50 {
                    s.create(&key, value).await.unwrap()
                } else {
                    let cur = s.get(&key, None).await.unwrap().1.unwrap();
                    s.update(&key, value, cur.mod_revision).await.unwrap()
                };
                let mut out = std::io::stdout().lock();
                writeln!(out, "ack {} {key} {i}", kv.mod_revision).unwrap();
                out.flush().unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// The value the child writes to `key` at its `i`-th write: sized 100 bytes–8 KiB so that some
/// rows span several pages, and self-describing so a torn one would not pass.
fn expected_value(key: &str, i: u64) -> Vec<u8> {
    let len = 100 + (i as usize * 997) % 8000;
    let head = format!("{key}#{i}#");
    let mut v = head.into_bytes();
    v.resize(len, b'a' + (i % 26) as u8);
    v
}

/// `kill -9` of a process writing as fast as it can: after reopening, every write it
/// acknowledged is there at its revision with its whole value, and the database is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "durability_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read acknowledgements on a thread; kill after 3,000 of them.
    let acks = tokio::task::spawn_blocking(move || {
        let mut acks = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() == 4 && f[0] == "ack" {
                acks.push((
                    f[1].parse::<Revision>().unwrap(),
                    f[2].to_string(),
                    f[3].parse::<u64>().unwrap(),
                ));
                if acks.len() == 3000 {
                    // SIGKILL, mid-write: the writers never stop on their own.
                    child.kill().unwrap();
                }
            }
        }
        child.wait().unwrap();
        acks
    })
    .await
    .unwrap();
    assert!(
        acks.len() >= 3000,
        "the child acknowledged {} writes",
        acks.len()
    );

    let s = SqliteStore::open(&path).await.unwrap();
    let newest = s.revision().await.unwrap();
    let last_ack = acks.iter().map(|a| a.0).max().unwrap();
    assert!(
        newest >= last_ack,
        "revision {newest} < acknowledged {last_ack}"
    );
    for (rev, key, i) in &acks {
        let (_, kv) = s.get(key, Some(*rev)).await.unwrap();
        let kv = kv.unwrap_or_else(|| panic!("{key} at {rev} is missing"));
        assert_eq!(kv.mod_revision, *rev);
        assert!(
            kv.value == expected_value(key, *i),
            "{key} at {rev}: value differs"
        );
    }
    // A watcher resumes from the revision it had seen before the crash: every later write,
    // in order, each once (the child's writes all touch /d/, so revisions are contiguous).
    let resume = acks[acks.len() / 2].0;
    let mut w = s.watch("/d/", resume).await.unwrap();
    let mut next = resume + 1;
    while next <= newest {
        let batch = tokio::time::timeout(
            Duration::from_secs(10),
            futures_util::StreamExt::next(&mut w),
        )
        .await
        .expect("the backlog within 10s")
        .unwrap()
        .unwrap();
        for e in batch {
            assert_eq!(e.kv.mod_revision, next);
            next += 1;
        }
    }
    // Every row (acknowledged or not) is whole, and SQLite finds no damage.
    let page = s.list("/d/", ListOptions::default()).await.unwrap();
    assert!(!page.kvs.is_empty() && page.kvs.len() <= 8 * 50);
    for kv in &page.kvs {
        let head = String::from_utf8_lossy(&kv.value[..kv.value.len().min(40)]).to_string();
        let i: u64 = head.split('#').nth(1).unwrap().parse().unwrap();
        assert_eq!(kv.value, expected_value(&kv.key, i));
    }
    drop(s);
    let check = tokio::task::spawn_blocking(move || {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(check, "ok");
    println!(
        "kill -9 after {} acknowledged writes: all present, newest revision {newest}",
        acks.len()
    );
}

/// A watcher that reads nothing while 6,000 writes go by (more than the in-process buffer
/// holds), and one that starts from revision 0 behind them (a backlog of many table reads):
/// both get every event exactly once, in order, then live ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_far_behind_watchers_catch_up_from_the_table() {
    use futures_util::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path().join("state.db"))
        .await
        .unwrap();
    let mut slow = s.watch("/s/", 0).await.unwrap();
    let mut kv = s.create("/s/k", vec![]).await.unwrap();
    for i in 0..6000u32 {
        kv = s
            .update("/s/k", i.to_le_bytes().to_vec(), kv.mod_revision)
            .await
            .unwrap();
    }
    let mut behind = s.watch("/s/", 0).await.unwrap();
    let live = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.update("/s/k", b"live".to_vec(), kv.mod_revision)
            .await
            .unwrap()
    };
    let (_, last) = tokio::join!(async {}, live);
    for w in [&mut slow, &mut behind] {
        let mut next = 1;
        while next <= last.mod_revision {
            let batch = tokio::time::timeout(Duration::from_secs(10), w.next())
                .await
                .expect("events within 10s")
                .unwrap()
                .unwrap();
            for e in batch {
                assert_eq!(e.kv.mod_revision, next);
                next += 1;
            }
        }
    }
}
