//! The datastore's benchmark (docs/benchmarks.md, "Cluster datastore"): not a test, a table.
//!
//! `nice cargo run --release -p barge-datastore --example bench`
//!
//! Against SQLite (a temporary directory), etcd through [`EtcdStore`] and, as the floor, raw
//! etcd puts (a local etcd started by [`EtcdServer`], Debian's etcd-server):
//! 1. 1,000 creates of ~1 KiB ConfigMap-like objects at concurrency 16: throughput, p50/p99;
//! 2. 100 watchers on one prefix, 500 writes at concurrency 4: the delay from each write's
//!    acknowledgement to its event at every watcher (p50/p99/max);
//! 3. a list of 10,000 objects in pages of 500 (kubectl's page size), and a get of one;
//! 4. heartbeats: 10 nodes renewing a ~300-byte lease every 10 s for a simulated 24 h
//!    (86,400 updates) with the compactor every simulated 5 min keeping 1,000 revisions:
//!    bytes written per update (`/proc/PID/io`) and the table's size at the end.
//!    etcd runs 1/8 of that (10,800 updates; it fsyncs every write).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use barge_datastore::testing::EtcdServer;
use barge_datastore::{compact_keeping, EtcdStore, ListOptions, SqliteStore, Store};
use futures_util::StreamExt;

const CREATES: usize = 1000;
const CONCURRENCY: usize = 16;
const WATCHERS: usize = 100;
const WATCHED_WRITES: usize = 500;
const LIST_OBJECTS: usize = 10_000;
const PAGE: usize = 500;
const NODES: usize = 10;

fn configmap(name: &str) -> Vec<u8> {
    // What the API server stores for a small ConfigMap: ~1 KiB of JSON.
    format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"{name}\",\
         \"namespace\":\"default\",\"uid\":\"6b1f1c1e-0000-4000-8000-{name:0>12}\",\
         \"creationTimestamp\":\"2026-12-05T18:00:00Z\",\"managedFields\":[]}},\
         \"data\":{{\"config\":\"{}\"}}}}",
        "x".repeat(800)
    )
    .into_bytes()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// Runs `n` operations at `concurrency`; answers (elapsed, sorted latencies).
async fn drive<F, Fut>(n: usize, concurrency: usize, op: F) -> (Duration, Vec<Duration>)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return lat;
                }
                let t = Instant::now();
                op(i).await;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    all.sort();
    (elapsed, all)
}

fn create_row(what: &str, (elapsed, lat): (Duration, Vec<Duration>)) {
    println!(
        "| {what} | {:.0} | {} | {} |",
        lat.len() as f64 / elapsed.as_secs_f64(),
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99))
    );
}

async fn creates(store: Arc<dyn Store>, prefix: &'static str) -> (Duration, Vec<Duration>) {
    drive(CREATES, CONCURRENCY, move |i| {
        let s = store.clone();
        async move {
            let name = format!("cm-{i}");
            s.create(&format!("{prefix}{name}"), configmap(&name))
                .await
                .unwrap();
        }
    })
    .await
}

/// Delays from each write's acknowledgement to its event at each of the watchers.
async fn watch_delays(store: Arc<dyn Store>, prefix: &'static str) -> Vec<Duration> {
    let from = store.revision().await.unwrap();
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let mut w = store.watch(prefix, from).await.unwrap();
        watchers.push(tokio::spawn(async move {
            let mut seen: HashMap<i64, Instant> = HashMap::new();
            while seen.len() < WATCHED_WRITES {
                let batch = tokio::time::timeout(Duration::from_secs(30), w.next())
                    .await
                    .expect("events within 30s")
                    .unwrap()
                    .unwrap();
                let now = Instant::now();
                for e in batch {
                    seen.insert(e.kv.mod_revision, now);
                }
            }
            seen
        }));
    }
    let acks = Arc::new(std::sync::Mutex::new(HashMap::new()));
    let a = acks.clone();
    drive(WATCHED_WRITES, 4, move |i| {
        let (s, acks) = (store.clone(), a.clone());
        async move {
            let name = format!("w-{i}");
            let kv = s
                .create(&format!("{prefix}{name}"), configmap(&name))
                .await
                .unwrap();
            acks.lock().unwrap().insert(kv.mod_revision, Instant::now());
        }
    })
    .await;
    let acks = acks.lock().unwrap().clone();
    let mut delays = Vec::new();
    for w in watchers {
        for (rev, at) in w.await.unwrap() {
            let ack = acks[&rev];
            // An event that arrived before its writer saw the acknowledgement: no delay.
            delays.push(at.saturating_duration_since(ack));
        }
    }
    delays.sort();
    delays
}

/// Fills `prefix` with 10,000 objects, then times a paged list of them all and gets of one.
async fn list_and_get(store: Arc<dyn Store>, prefix: &'static str) -> (Duration, Duration) {
    let s = store.clone();
    drive(LIST_OBJECTS, CONCURRENCY, move |i| {
        let s = s.clone();
        async move {
            let name = format!("obj-{i:05}");
            s.create(&format!("{prefix}{name}"), configmap(&name))
                .await
                .unwrap();
        }
    })
    .await;
    let start = Instant::now();
    let mut opts = ListOptions {
        limit: Some(PAGE),
        ..Default::default()
    };
    let mut n = 0;
    loop {
        let page = store.list(prefix, opts.clone()).await.unwrap();
        n += page.kvs.len();
        if page.remaining == 0 {
            break;
        }
        opts.revision = Some(page.revision);
        opts.start_after = page.kvs.last().map(|kv| kv.key.clone());
    }
    let list = start.elapsed();
    assert_eq!(n, LIST_OBJECTS);
    let mut gets = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        let key = format!("{prefix}obj-{:05}", (i * 37) % LIST_OBJECTS);
        assert!(store.get(&key, None).await.unwrap().1.is_some());
        gets.push(t.elapsed());
    }
    gets.sort();
    (list, pct(&gets, 0.5))
}

/// `(wchar, write_bytes)` of `/proc/PID/io`: bytes handed to write(2) and bytes dirtied for
/// the storage device.
fn io(pid: &str) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("wchar:"), field("write_bytes:"))
}

struct Heartbeats {
    updates: usize,
    wchar_per_update: f64,
    write_bytes_per_update: f64,
    elapsed: Duration,
}

/// `NODES` tasks renewing one lease each `per_node` times; the compactor runs every 30
/// renewals per node (5 simulated minutes at one renewal per 10 s), keeping 1,000 revisions.
async fn heartbeats(store: Arc<dyn Store>, pid: &str, per_node: usize) -> Heartbeats {
    let mut revs = Vec::new();
    for n in 0..NODES {
        let key = format!("/registry/leases/kube-node-lease/node-{n}");
        revs.push(store.create(&key, lease(0)).await.unwrap().mod_revision);
    }
    let before = io(pid);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (n, mut rev) in revs.into_iter().enumerate() {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("/registry/leases/kube-node-lease/node-{n}");
            for i in 1..=per_node {
                rev = s.update(&key, lease(i), rev).await.unwrap().mod_revision;
                if n == 0 && i % 30 == 0 {
                    compact_keeping(s.as_ref(), 1000).await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    let after = io(pid);
    let updates = NODES * per_node;
    Heartbeats {
        updates,
        wchar_per_update: (after.0 - before.0) as f64 / updates as f64,
        write_bytes_per_update: (after.1 - before.1) as f64 / updates as f64,
        elapsed,
    }
}

fn lease(i: usize) -> Vec<u8> {
    format!(
        "{{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\",\"spec\":{{\
         \"holderIdentity\":\"node\",\"leaseDurationSeconds\":40,\
         \"renewTime\":\"2026-12-05T18:00:{:02}.{i:06}Z\"}},\"pad\":\"{}\"}}",
        i % 60,
        "p".repeat(120)
    )
    .into_bytes()
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let sqlite = SqliteStore::open(&db).await.unwrap();
    let sqlite_dyn: Arc<dyn Store> = Arc::new(sqlite.clone());
    let etcd_server = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap();
    let etcd_pid = etcd_server.pid().to_string();
    let etcd: Arc<dyn Store> = Arc::new(
        EtcdStore::connect(&[etcd_server.endpoint().to_string()])
            .await
            .unwrap(),
    );
    let raw = EtcdStore::connect(&[etcd_server.endpoint().to_string()])
        .await
        .unwrap()
        .client()
        .clone();

    println!("### {CREATES} creates of ~1 KiB objects at concurrency {CONCURRENCY}\n");
    println!("| backend | creates/s | p50 ms | p99 ms |\n|---|---|---|---|");
    create_row(
        "SQLite",
        creates(sqlite_dyn.clone(), "/registry/configmaps/default/").await,
    );
    create_row(
        "etcd (EtcdStore)",
        creates(etcd.clone(), "/registry/configmaps/default/").await,
    );
    create_row(
        "etcd raw put (floor)",
        drive(CREATES, CONCURRENCY, move |i| {
            let mut c = raw.kv_client();
            async move {
                let name = format!("cm-{i}");
                c.put(format!("/raw/{name}"), configmap(&name), None)
                    .await
                    .unwrap();
            }
        })
        .await,
    );

    println!(
        "\n### {WATCHERS} watchers, {WATCHED_WRITES} writes at concurrency 4: write ack → event\n"
    );
    println!("| backend | p50 ms | p99 ms | max ms |\n|---|---|---|---|");
    for (name, store) in [("SQLite", sqlite_dyn.clone()), ("etcd", etcd.clone())] {
        let d = watch_delays(store, "/registry/pods/default/").await;
        assert_eq!(d.len(), WATCHERS * WATCHED_WRITES);
        println!(
            "| {name} | {} | {} | {} |",
            ms(pct(&d, 0.5)),
            ms(pct(&d, 0.99)),
            ms(*d.last().unwrap())
        );
    }

    println!("\n### List of {LIST_OBJECTS} objects in pages of {PAGE}, get of one\n");
    println!("| backend | full list ms | get p50 ms |\n|---|---|---|");
    for (name, store) in [("SQLite", sqlite_dyn.clone()), ("etcd", etcd.clone())] {
        let (list, get) = list_and_get(store, "/registry/secrets/default/").await;
        println!("| {name} | {} | {} |", ms(list), ms(get));
    }

    println!(
        "\n### Heartbeats: {NODES} nodes renewing a lease, compaction every 5 simulated minutes \
         keeping 1,000 revisions\n"
    );
    println!(
        "| backend | updates | updates/s | write(2) bytes/update | bytes dirtied/update | rows after | \
         db file | WAL |\n|---|---|---|---|---|---|---|---|"
    );
    // 24 h at one renewal per 10 s per node, in a database of their own.
    let db = dir.path().join("leases.db");
    let leases = SqliteStore::open(&db).await.unwrap();
    let h = heartbeats(Arc::new(leases.clone()), "self", 8640).await;
    let rows = leases.row_count().await.unwrap();
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    println!(
        "| SQLite (24 h) | {} | {:.0} | {:.0} | {:.0} | {rows} | {:.1} MiB | {:.1} MiB |",
        h.updates,
        h.updates as f64 / h.elapsed.as_secs_f64(),
        h.wchar_per_update,
        h.write_bytes_per_update,
        size(&db) as f64 / 1048576.0,
        size(&db.with_extension("db-wal")) as f64 / 1048576.0,
    );
    let h = heartbeats(etcd.clone(), &etcd_pid, 1080).await;
    println!(
        "| etcd (3 h) | {} | {:.0} | {:.0} | {:.0} | – | – | – |",
        h.updates,
        h.updates as f64 / h.elapsed.as_secs_f64(),
        h.wchar_per_update,
        h.write_bytes_per_update,
    );
    drop(etcd_server);
}
