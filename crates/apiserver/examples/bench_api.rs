//! The API server's benchmark (docs/benchmarks.md, "Cluster API server"): not a test, a table.
//!
//! `scripts/bench-api.sh` (or `nice cargo run --release -p barge-apiserver --example bench_api`)
//!
//! The router served over plain HTTP on loopback (the admin identity attached as `barge
//! server`'s TLS layer would), driven by kube-rs, on SQLite (a temporary directory) and on etcd
//! (Debian's etcd-server on loopback), with raw etcd puts as the floor:
//! 1. 1,000 ConfigMap creates at concurrency 16: throughput, p50/p99 latency;
//! 2. 100 watchers on one namespace, 200 writes at concurrency 4: the delay from each write's
//!    acknowledgement to its event at every watcher (p50/p99/max);
//! 3. a list of 10,000 ConfigMaps in pages of 500 (kubectl's page size), and a get of one;
//! 4. heartbeats: 10 nodes renewing their Lease (coordination.k8s.io) through the API,
//!    `HEARTBEATS` renewals with the compactor keeping 1,000 revisions every 5 simulated
//!    minutes: bytes the process wrote per renewal (`/proc/self/io`) and the SQLite table's rows
//!    and file size at the end.
//!
//! `BENCH_SCALE` (default 1) divides every count, for a quick smoke run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::Next;
use barge_apiserver::{ApiServer, Config, Identity};
use barge_datastore::testing::{Backend, Fixture};
use barge_datastore::{compact_keeping, SqliteStore, Store};
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::Client;
use serde_json::json;

fn scale() -> usize {
    std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1usize)
        .max(1)
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"config": "x".repeat(800)}}))
        .unwrap()
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

/// Serves a bootstrapped API server over `store` on loopback; a kube client of it.
async fn serve(store: Arc<dyn Store>) -> Client {
    let api = ApiServer::new(store, Config::default());
    api.bootstrap().await.unwrap();
    let app = api.router().layer(axum::middleware::from_fn(
        |mut req: Request, next: Next| async move {
            req.extensions_mut().insert(Identity {
                user: "system:admin".into(),
                groups: vec!["system:masters".into()],
            });
            next.run(req).await
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let url = format!("http://127.0.0.1:{port}").parse().unwrap();
    Client::try_from(kube::Config::new(url)).unwrap()
}

async fn creates(client: &Client, n: usize, concurrency: usize) -> (f64, Vec<Duration>) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let lat = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let start = Instant::now();
    futures_util::stream::iter(0..n)
        .for_each_concurrent(concurrency, |i| {
            let (api, lat) = (api.clone(), lat.clone());
            async move {
                let t = Instant::now();
                api.create(&PostParams::default(), &cm(&format!("c{i:05}")))
                    .await
                    .unwrap();
                lat.lock().unwrap().push(t.elapsed());
            }
        })
        .await;
    let secs = start.elapsed().as_secs_f64();
    let mut l = Arc::try_unwrap(lat).unwrap().into_inner().unwrap();
    l.sort();
    (n as f64 / secs, l)
}

async fn raw_etcd_puts(endpoint: &str, n: usize, concurrency: usize) -> (f64, Vec<Duration>) {
    let client = etcd_client::Client::connect([endpoint], None)
        .await
        .unwrap();
    let value = serde_json::to_vec(&cm("x")).unwrap();
    let lat = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let start = Instant::now();
    futures_util::stream::iter(0..n)
        .for_each_concurrent(concurrency, |i| {
            let (mut kv, lat, value) = (client.kv_client(), lat.clone(), value.clone());
            async move {
                let t = Instant::now();
                kv.put(format!("/raw/c{i:05}"), value, None).await.unwrap();
                lat.lock().unwrap().push(t.elapsed());
            }
        })
        .await;
    let secs = start.elapsed().as_secs_f64();
    let mut l = Arc::try_unwrap(lat).unwrap().into_inner().unwrap();
    l.sort();
    (n as f64 / secs, l)
}

/// `watchers` watches on namespace "w"; `writes` creates at concurrency 4; the delay from each
/// create's acknowledgement to its ADDED at every watcher.
async fn watch_delays(client: &Client, watchers: usize, writes: usize) -> Vec<Duration> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "w");
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "w"}})).unwrap(),
    )
    .await
    .unwrap();
    let rv = api
        .list(&ListParams::default().limit(1))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    // name → the instant its create was acknowledged.
    let acked: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let mut stream = api
            .watch(&WatchParams::default().timeout(290), &rv)
            .await
            .unwrap()
            .boxed();
        let seen = seen.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = 0;
            while got < writes {
                match stream.try_next().await.unwrap() {
                    Some(WatchEvent::Added(c)) => {
                        seen.lock()
                            .unwrap()
                            .push((c.metadata.name.unwrap(), Instant::now()));
                        got += 1;
                    }
                    Some(_) => {}
                    None => panic!("watch ended"),
                }
            }
        }));
    }
    futures_util::stream::iter(0..writes)
        .for_each_concurrent(4, |i| {
            let (api, acked) = (api.clone(), acked.clone());
            async move {
                let name = format!("w{i:05}");
                api.create(&PostParams::default(), &cm(&name))
                    .await
                    .unwrap();
                acked.lock().unwrap().insert(name, Instant::now());
            }
        })
        .await;
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap();
    let mut d: Vec<Duration> = seen
        .lock()
        .unwrap()
        .iter()
        // An event that arrived before its acknowledgement counts as no delay.
        .map(|(n, at)| at.saturating_duration_since(acked[n]))
        .collect();
    d.sort();
    d
}

async fn list_and_get(client: &Client, n: usize) -> (Duration, usize, Duration) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "big");
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "big"}})).unwrap(),
    )
    .await
    .unwrap();
    futures_util::stream::iter(0..n)
        .for_each_concurrent(16, |i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &cm(&format!("l{i:05}")))
                    .await
                    .unwrap();
            }
        })
        .await;
    let t = Instant::now();
    let mut lp = ListParams::default().limit(500);
    let (mut items, mut pages) = (0, 0);
    loop {
        let page = api.list(&lp).await.unwrap();
        items += page.items.len();
        pages += 1;
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => break,
        }
    }
    let list = t.elapsed();
    assert_eq!(items, n);
    let mut gets: Vec<Duration> = Vec::new();
    for i in 0..50 {
        let t = Instant::now();
        api.get(&format!("l{:05}", i * 97 % n)).await.unwrap();
        gets.push(t.elapsed());
    }
    gets.sort();
    (list, pages, gets[gets.len() / 2])
}

fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// 10 nodes' Lease renewals through the API on SQLite, compacting every 5 simulated minutes
/// (300 renewals: 10 nodes × 30 ten-second periods); bytes written per renewal and the table.
async fn heartbeats(renewals: usize) -> (f64, i64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let sqlite = Arc::new(SqliteStore::open(&path).await.unwrap());
    let store: Arc<dyn Store> = sqlite.clone();
    let client = serve(store.clone()).await;
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    for n in 0..10 {
        let l: Lease = serde_json::from_value(json!({"metadata": {"name": format!("node-{n}")},
            "spec": {"holderIdentity": format!("node-{n}"), "leaseDurationSeconds": 40}}))
        .unwrap();
        leases.create(&PostParams::default(), &l).await.unwrap();
    }
    let before = written_bytes();
    for i in 0..renewals {
        let name = format!("node-{}", i % 10);
        let mut l = leases.get(&name).await.unwrap();
        let spec = l.spec.as_mut().unwrap();
        spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            k8s_openapi::jiff::Timestamp::now(),
        ));
        leases
            .replace(&name, &PostParams::default(), &l)
            .await
            .unwrap();
        if i % 300 == 299 {
            compact_keeping(store.as_ref(), 1000).await.unwrap();
        }
    }
    // Let the checkpointer copy the WAL in, so its writes are counted.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per = (written_bytes() - before) as f64 / renewals as f64;
    let rows = sqlite.row_count().await.unwrap();
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    (per, rows, size)
}

async fn open(backend: Backend) -> Fixture {
    backend.open().await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let k = scale();
    let (n_create, n_watchers, n_writes, n_list, n_beats) =
        (1000 / k, 100 / k, 200 / k, 10_000 / k, 86_400 / k);
    println!("# barge API server benchmark (scale 1/{k})");
    println!("\n1,000 ConfigMap creates at concurrency 16 (n = {n_create})");
    println!("| backend | creates/s | p50 ms | p99 ms |\n|---|---|---|---|");
    let mut etcd_endpoint = None;
    let mut fixtures = Vec::new();
    for backend in [Backend::Sqlite, Backend::Etcd] {
        let f = open(backend).await;
        let client = serve(f.store.clone()).await;
        let (rate, l) = creates(&client, n_create, 16).await;
        println!(
            "| {backend:?} through the API | {rate:.0} | {:.2} | {:.2} |",
            pct(&l, 0.5),
            pct(&l, 0.99)
        );
        if let Some(e) = f.etcd() {
            etcd_endpoint = Some(e.endpoint().to_string());
        }
        fixtures.push((backend, f, client));
    }
    let (rate, l) = raw_etcd_puts(etcd_endpoint.as_deref().unwrap(), n_create, 16).await;
    println!(
        "| etcd raw put (floor) | {rate:.0} | {:.2} | {:.2} |",
        pct(&l, 0.5),
        pct(&l, 0.99)
    );

    println!("\n{n_watchers} watchers, {n_writes} creates at concurrency 4: ack → event at every watcher");
    println!("| backend | events | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|");
    for (backend, _, client) in &fixtures {
        let d = watch_delays(client, n_watchers, n_writes).await;
        println!(
            "| {backend:?} | {} | {:.2} | {:.2} | {:.2} |",
            d.len(),
            pct(&d, 0.5),
            pct(&d, 0.99),
            d.last().map_or(0.0, |m| m.as_secs_f64() * 1e3)
        );
    }

    println!("\nList of {n_list} ConfigMaps paged by 500, and a get of one (median of 50)");
    println!("| backend | list ms | pages | get ms |\n|---|---|---|---|");
    for (backend, _, client) in &fixtures {
        let (list, pages, get) = list_and_get(client, n_list).await;
        println!(
            "| {backend:?} | {:.1} | {pages} | {:.2} |",
            list.as_secs_f64() * 1e3,
            get.as_secs_f64() * 1e3
        );
    }
    drop(fixtures);

    println!("\nLease renewals through the API on SQLite ({n_beats}: 10 nodes every 10 s for 24 h / {k}), compaction every 300 (5 min)");
    let (per, rows, size) = heartbeats(n_beats).await;
    println!("| bytes written per renewal | rows at the end | table file bytes |\n|---|---|---|");
    println!("| {per:.0} | {rows} | {size} |");
}
