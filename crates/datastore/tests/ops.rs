//! Datastore operations: the SQLite store's online backup and its restore (revisions kept,
//! older ones compacted, the store's revision moved ahead), the data dir's lock, and the copy of
//! a SQLite store into an empty etcd.

use std::time::Duration;

use barge_datastore::ops::{self, RESTORE_REVISION_BUMP};
use barge_datastore::testing::EtcdServer;
use barge_datastore::{open, Error, EtcdStore, EventKind, ListOptions, SqliteStore, Store};
use futures_util::StreamExt;

async fn live(store: &dyn Store, prefix: &str) -> Vec<(String, Vec<u8>, i64)> {
    store
        .list(prefix, ListOptions::default())
        .await
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| (kv.key, kv.value, kv.mod_revision))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_open_then_restore_keeps_revisions_and_compacts_older_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = open("", dir.path()).await.unwrap();
    let a = store.create("/registry/a", b"a1".to_vec()).await.unwrap();
    let b = store.create("/registry/b", b"b1".to_vec()).await.unwrap();
    let b2 = store
        .update("/registry/b", b"b2".to_vec(), b.mod_revision)
        .await
        .unwrap();
    store.create("/registry/c", b"c1".to_vec()).await.unwrap();
    store.delete("/registry/c", None).await.unwrap();
    let at_backup = live(store.as_ref(), "/registry/").await;
    assert_eq!(
        at_backup,
        vec![
            ("/registry/a".into(), b"a1".to_vec(), a.mod_revision),
            ("/registry/b".into(), b"b2".to_vec(), b2.mod_revision)
        ]
    );
    let backup_revision = store.revision().await.unwrap();

    // Online: writes go on while the copy is taken.
    let backup = dir.path().join("backup.db");
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                store
                    .create(&format!("/registry/load/{i}"), vec![b'x'; 100])
                    .await
                    .unwrap();
            }
        })
    };
    let (db, dest) = (ops::sqlite_path(dir.path()), backup.clone());
    let report = tokio::task::spawn_blocking(move || ops::backup_sqlite(&db, &dest))
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert!(report.revision >= backup_revision, "{report:?}");
    assert!(
        report.keys >= 2 && report.keys <= 202,
        "the copy is some prefix of the writes: {report:?}"
    );
    // A second backup to the same file is refused, the first one is kept.
    let (db, dest) = (ops::sqlite_path(dir.path()), backup.clone());
    let e = tokio::task::spawn_blocking(move || ops::backup_sqlite(&db, &dest))
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(e.contains("the file exists"), "{e}");

    // After the backup: changes, which the restore must undo.
    let cur_a = store.get("/registry/a", None).await.unwrap().1.unwrap();
    store
        .update("/registry/a", b"a2".to_vec(), cur_a.mod_revision)
        .await
        .unwrap();
    store.delete("/registry/b", None).await.unwrap();
    store.create("/registry/d", b"d1".to_vec()).await.unwrap();
    let seen = store.revision().await.unwrap();

    // Refused while the store is open (a server running on the data dir).
    let (b, d) = (backup.clone(), dir.path().to_path_buf());
    let e = tokio::task::spawn_blocking(move || ops::restore_sqlite(&b, &d))
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(e.contains("in use by a running barge server"), "{e}");
    drop(store);
    // The writer thread closes its connection just after the last handle goes.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (b, d) = (backup.clone(), dir.path().to_path_buf());
    let r = tokio::task::spawn_blocking(move || ops::restore_sqlite(&b, &d))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.backup_revision, report.revision);
    assert_eq!(r.revision, seen + RESTORE_REVISION_BUMP);
    assert_eq!(r.keys, report.keys);
    let previous = r.previous.clone().expect("the replaced store is kept");
    assert!(previous.exists(), "{previous:?}");

    let store = open("", dir.path()).await.unwrap();
    // The objects of the backup, with their own revisions.
    assert_eq!(live(store.as_ref(), "/registry/").await[..2], at_backup[..]);
    assert_eq!(
        live(store.as_ref(), "/registry/d").await,
        vec![],
        "a key created after the backup is gone"
    );
    assert_eq!(store.revision().await.unwrap(), r.revision);
    assert_eq!(store.compacted_revision().await.unwrap(), r.revision);
    // Nothing below the restore can be read or watched: clients relist.
    for old in [a.mod_revision, backup_revision, seen] {
        match store.watch("/registry/", old).await {
            Err(Error::Compacted { .. }) => {}
            Ok(mut w) => match w.next().await {
                Some(Err(Error::Compacted { .. })) => {}
                other => panic!("watch after {old}: {other:?}"),
            },
            Err(e) => panic!("watch after {old}: {e}"),
        }
        assert!(matches!(
            store
                .list(
                    "/registry/",
                    ListOptions {
                        revision: Some(old),
                        ..Default::default()
                    }
                )
                .await,
            Err(Error::Compacted { .. })
        ));
    }
    // A watch from the list's revision sees the next write, numbered after the bump.
    let mut w = store.watch("/registry/", r.revision).await.unwrap();
    let e = store.create("/registry/e", b"e1".to_vec()).await.unwrap();
    assert_eq!(e.mod_revision, r.revision + 1);
    let batch = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].kind, EventKind::Put);
    assert_eq!(batch[0].kv.key, "/registry/e");
    // Updates of restored keys work from their restored revisions.
    store
        .update("/registry/a", b"a3".to_vec(), a.mod_revision)
        .await
        .unwrap();
    // The compactor keeps working after the jump (no billion-revision sweep).
    tokio::time::timeout(
        Duration::from_secs(10),
        barge_datastore::compact_keeping(store.as_ref(), 0),
    )
    .await
    .expect("compaction after a restore is quick")
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_refuses_a_file_that_is_not_a_barge_store() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"not sqlite at all, just some bytes in a file").unwrap();
    let data = dir.path().join("data");
    let e = ops::restore_sqlite(&junk, &data).unwrap_err().to_string();
    assert!(e.contains("junk"), "{e}");
    assert!(
        !ops::sqlite_path(&data).exists(),
        "nothing was put in place"
    );
    let e = ops::restore_sqlite(&dir.path().join("missing"), &data)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no such file"), "{e}");
    let e = ops::backup_sqlite(&ops::sqlite_path(&data), &dir.path().join("b"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no SQLite datastore"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_is_copied_into_an_empty_etcd_in_revision_order() {
    let dir = tempfile::tempdir().unwrap();
    let src = SqliteStore::open(dir.path().join("state.db"))
        .await
        .unwrap();
    let z = src.create("/registry/z", b"z1".to_vec()).await.unwrap();
    src.create("/registry/a", b"a1".to_vec()).await.unwrap();
    src.create("/registry/gone", b"g".to_vec()).await.unwrap();
    src.update("/registry/z", b"z2".to_vec(), z.mod_revision)
        .await
        .unwrap();
    src.delete("/registry/gone", None).await.unwrap();
    for i in 0..600 {
        src.create(&format!("/registry/many/{i:04}"), vec![b'm'; 10])
            .await
            .unwrap();
    }

    let etcd = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap();
    let dst = EtcdStore::connect(&[etcd.endpoint().to_string()])
        .await
        .unwrap();
    let r = ops::copy_store(&src, &dst).await.unwrap();
    assert_eq!(r.keys, 602);
    assert_eq!(r.revision, src.revision().await.unwrap());
    let got = live(&dst, "/registry/").await;
    let want = live(&src, "/registry/").await;
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((&g.0, &g.1), (&w.0, &w.1));
    }
    // Relative order kept: a before z (z's last write came later), the many after both.
    let rev = |k: &str| got.iter().find(|g| g.0 == k).unwrap().2;
    assert!(rev("/registry/a") < rev("/registry/z"));
    assert!(rev("/registry/z") < rev("/registry/many/0000"));
    let mut by_rev: Vec<_> = got.iter().collect();
    by_rev.sort_by_key(|g| g.2);
    let mut src_by_rev: Vec<_> = want.iter().collect();
    src_by_rev.sort_by_key(|g| g.2);
    assert_eq!(
        by_rev.iter().map(|g| &g.0).collect::<Vec<_>>(),
        src_by_rev.iter().map(|g| &g.0).collect::<Vec<_>>()
    );

    // A second copy finds etcd full and writes nothing.
    let before = dst.revision().await.unwrap();
    let e = ops::copy_store(&src, &dst).await.unwrap_err().to_string();
    assert!(e.contains("not empty"), "{e}");
    assert_eq!(dst.revision().await.unwrap(), before);
}

/// An etcd restored from a snapshot (`etcdctl snapshot save` / `snapshot restore`, etcd 3.4:
/// no `--bump-revision`) goes back to the snapshot's revisions; `reset_after_restore` moves
/// them ahead and compacts below, so that revisions handed out after the snapshot never come
/// back for other contents and every watch or read from an old revision is `Compacted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_restored_from_a_snapshot_is_reset_so_clients_relist() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap();
    let store = EtcdStore::connect(&[etcd.endpoint().to_string()])
        .await
        .unwrap();
    let a = store.create("/registry/a", b"a1".to_vec()).await.unwrap();
    let b = store.create("/registry/b", b"b1".to_vec()).await.unwrap();
    let at_snapshot = live(&store, "/registry/").await;
    let snap = dir.path().join("snap.db");
    let (e, s) = (etcd, snap.clone());
    let etcd = tokio::task::spawn_blocking(move || {
        e.snapshot(&s);
        e
    })
    .await
    .unwrap();
    // After the snapshot: changes clients see, which the restore undoes.
    store
        .update("/registry/a", b"a2".to_vec(), a.mod_revision)
        .await
        .unwrap();
    store.delete("/registry/b", None).await.unwrap();
    for i in 0..5 {
        store
            .create(&format!("/registry/later/{i}"), b"x".to_vec())
            .await
            .unwrap();
    }
    let seen = store.revision().await.unwrap();
    drop(store);
    drop(etcd);

    let etcd = tokio::task::spawn_blocking(move || EtcdServer::restore(&snap))
        .await
        .unwrap();
    let endpoints = [etcd.endpoint().to_string()];
    let restored = EtcdStore::connect(&endpoints).await.unwrap();
    assert_eq!(live(&restored, "/registry/").await, at_snapshot);
    // Without the reset, the revisions seen after the snapshot are handed out again.
    assert!(restored.revision().await.unwrap() < seen);

    let r = restored.reset_after_restore().await.unwrap();
    assert!(r.restored_revision < seen, "{r:?}");
    assert!(r.revision > seen + RESTORE_REVISION_BUMP / 2, "{r:?}");
    let store = EtcdStore::connect(&endpoints).await.unwrap();
    // The snapshot's objects with their own revisions; the later ones gone.
    assert_eq!(live(&store, "/registry/").await, at_snapshot);
    assert_eq!(store.revision().await.unwrap(), r.revision);
    assert_eq!(store.compacted_revision().await.unwrap(), r.revision);
    // Every revision from before the reset is compacted: reads and watches say so.
    for old in [a.mod_revision, b.mod_revision, seen, seen + 10] {
        match store.watch("/registry/", old).await {
            Err(Error::Compacted { .. }) => {}
            Ok(mut w) => match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
                Ok(Some(Err(Error::Compacted { .. }))) => {}
                other => panic!("watch after {old}: {other:?}"),
            },
            Err(e) => panic!("watch after {old}: {e}"),
        }
        let list = store
            .list(
                "/registry/",
                ListOptions {
                    revision: Some(old),
                    ..Default::default()
                },
            )
            .await;
        assert!(
            matches!(list, Err(Error::Compacted { .. })),
            "{old}: {list:?}"
        );
    }
    // A watch from the list's revision sees the next write, numbered past anything seen.
    let page = store
        .list("/registry/", ListOptions::default())
        .await
        .unwrap();
    let mut w = store.watch("/registry/", page.revision).await.unwrap();
    let c = store.create("/registry/c", b"c1".to_vec()).await.unwrap();
    assert!(c.mod_revision > seen && c.mod_revision == page.revision + 1);
    let batch = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(batch[0].kv.key, "/registry/c");
    assert_eq!(batch[0].kv.mod_revision, c.mod_revision);
    // Restored objects update from their restored revisions; a stale one is a Conflict.
    let a2 = store
        .update("/registry/a", b"a3".to_vec(), a.mod_revision)
        .await
        .unwrap();
    assert!(a2.mod_revision > c.mod_revision);
    assert_eq!(a2.create_revision, a.create_revision);
    assert!(matches!(
        store.update("/registry/a", b"a4".to_vec(), seen).await,
        Err(Error::Conflict { .. })
    ));
    let (_, got) = store.get("/registry/a", None).await.unwrap();
    assert_eq!(got.unwrap().mod_revision, a2.mod_revision);
    // The compactor works across the bump.
    barge_datastore::compact_keeping(&store, 0).await.unwrap();
    assert_eq!(
        store.compacted_revision().await.unwrap(),
        store.revision().await.unwrap()
    );
}
