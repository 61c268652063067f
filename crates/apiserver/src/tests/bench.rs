//! Figures, not pass/fail timings: run with
//! `cargo test -p barge-apiserver --lib bench -- --ignored --nocapture`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tower::ServiceExt;

use super::*;

/// 100 watchers of one namespace's configmaps; 200 creates at 100/s. For every
/// event at every watcher: the delay from the create's acknowledgement to its arrival.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_watch_fanout_latency() {
    let t = server().await;
    let acks: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; 200]));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let mut r = Request::builder()
            .uri(format!("{CMS}?watch=true&resourceVersion=0"))
            .body(Body::empty())
            .unwrap();
        r.extensions_mut().insert(admin());
        let resp = t.app.clone().oneshot(r).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body();
        let acks = acks.clone();
        tasks.push(tokio::spawn(async move {
            let mut delays = Vec::new();
            let mut buf = Vec::new();
            while delays.len() < 200 {
                let Some(Ok(frame)) = body.frame().await else {
                    break;
                };
                let arrived = Instant::now();
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let ev: Value = serde_json::from_slice(&line).unwrap();
                    let name = ev["object"]["metadata"]["name"].as_str().unwrap_or("");
                    let i: usize = name.trim_start_matches('b').parse().unwrap();
                    // The ack may be recorded a hair after the event arrives.
                    let ack = loop {
                        if let Some(a) = acks.lock().await[i] {
                            break a;
                        }
                        tokio::task::yield_now().await;
                    };
                    delays.push(arrived.saturating_duration_since(ack));
                }
            }
            delays
        }));
    }
    for i in 0..200 {
        let r = t
            .send(
                Method::POST,
                CMS,
                json!({"metadata": {"name": format!("b{i}")}}),
            )
            .await;
        acks.lock().await[i] = Some(Instant::now());
        assert_eq!(r.code, StatusCode::CREATED);
        // 100 writes/s: the delay of each event, not of a backlog.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut all: Vec<Duration> = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    let pct = |p: usize| all[(all.len() * p / 100).min(all.len() - 1)];
    eprintln!(
        "watch fan-out: {} deliveries to 100 watchers, p50 {:?}, p99 {:?}, max {:?}",
        all.len(),
        pct(50),
        pct(99),
        all[all.len() - 1]
    );
    assert_eq!(all.len(), 100 * 200, "every watcher saw every event");
}
