//! `barge_datastore::open`: the `--datastore-endpoint` forms.

use barge_datastore::testing::EtcdServer;
use barge_datastore::{open, Error};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_endpoint_is_sqlite_in_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let store = open("", &data).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    store.create("/x", b"1".to_vec()).await.unwrap();
    assert!(data.join("db/state.db").is_file());
    drop(store);
    // Reopened: the same data.
    let store = open("", &data).await.unwrap();
    assert_eq!(store.get("/x", None).await.unwrap().1.unwrap().value, b"1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints_are_etcd() {
    let etcd = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Two endpoints (the same member twice), as a comma-separated list.
    let endpoint = format!("{},{}", etcd.endpoint(), etcd.endpoint());
    let store = open(&endpoint, dir.path()).await.unwrap();
    assert_eq!(store.backend(), "etcd");
    let kv = store.create("/registry/x", b"1".to_vec()).await.unwrap();
    assert_eq!(store.get("/registry/x", None).await.unwrap().1, Some(kv));
    assert!(!dir.path().join("db").exists(), "no SQLite file for etcd");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_endpoints_are_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        "https://127.0.0.1:2379",
        "127.0.0.1:2379",
        "http://",
        "sqlite:///x",
    ] {
        match open(bad, dir.path()).await {
            Err(e @ Error::Backend { .. }) => {
                assert!(e.to_string().contains("--datastore-endpoint"), "{bad}: {e}")
            }
            Err(e) => panic!("{bad}: {e}"),
            Ok(_) => panic!("{bad}: accepted"),
        }
    }
    // A well-formed endpoint where nothing listens: a clear error, not a hang.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = std::time::Instant::now();
    let err = open(&format!("http://127.0.0.1:{port}"), dir.path())
        .await
        .err()
        .expect("nothing listens there");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}
