//! Datastore operations for `barge server`: an online backup of the SQLite store, its restore
//! (k3s's `--cluster-reset --cluster-reset-restore-path`), the data dir's lock that keeps a
//! restore away from a running server, and the copy of one store into another (SQLite → etcd).
//!
//! A restore keeps every object's revision (so each object's `resourceVersion` is what it was at
//! backup time) but moves the store's revision far ahead and marks everything below compacted,
//! as etcd's `etcdutl snapshot restore --bump-revision --mark-compacted` does for Kubernetes:
//! revisions clients saw after the backup are never handed out again for other contents, and a
//! watch resumed from any revision they hold gets `Compacted` (410 Gone), so they relist.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::{Error, ListOptions, Result, Revision, Store};

/// How far a restore moves the store's revision past the highest one it knows (etcd's
/// recommended `--bump-revision` for Kubernetes).
pub const RESTORE_REVISION_BUMP: Revision = 1_000_000_000;

/// The key of the tombstone row a restore writes at the bumped revision (outside `/registry/`,
/// never live: no list or Kubernetes watch sees it). Its row id is the store's revision.
pub const RESTORE_MARKER_KEY: &str = "/barge/restored";

fn err(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Backend {
        backend: "sqlite",
        message: format!("{context}: {e}"),
    }
}

/// The SQLite database of a `barge server` data dir: `DATA_DIR/db/state.db`.
pub fn sqlite_path(data_dir: &Path) -> PathBuf {
    data_dir.join("db").join("state.db")
}

/// An exclusive `flock(2)` on `DATA_DIR/db/lock`, held by the process that owns the SQLite
/// store (the running server, or a restore): released when dropped or when the process dies.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Takes the lock of the SQLite store in `db_dir` (`DATA_DIR/db`, which must exist) without
/// waiting.
///
/// Errors: [`Error::Backend`] saying the store is in use when another process holds it (a
/// `barge server` running on this data dir), or when the lock file cannot be opened.
pub fn lock_db_dir(db_dir: &Path) -> Result<DataDirLock> {
    let path = db_dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| err(&format!("open {}", path.display()), e))?;
    // SAFETY: flock on a descriptor this function owns; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(err(
                &format!("lock {}", path.display()),
                "the datastore is in use by a running barge server on this data dir; stop it first",
            ));
        }
        return Err(err(&format!("lock {}", path.display()), e));
    }
    Ok(DataDirLock { _file: file })
}

/// What [`backup_sqlite`] copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupReport {
    /// The store's revision in the copy (the last write it holds).
    pub revision: Revision,
    /// Live keys in the copy.
    pub keys: i64,
}

/// Copies the SQLite store at `db` into a new file `dest` with SQLite's online backup API, in
/// one step (one read transaction: a consistent snapshot even while a server writes), then
/// checks the copy (`PRAGMA integrity_check`) and moves it into place atomically. Blocking.
///
/// Errors: [`Error::Backend`] when `db` is missing or not a barge store, `dest` exists or
/// cannot be written, or the copy fails its check.
pub fn backup_sqlite(db: &Path, dest: &Path) -> Result<BackupReport> {
    if !db.exists() {
        return Err(err(
            &format!("backup {}", db.display()),
            "no SQLite datastore there (is --data-dir right? a server on etcd is backed up with `etcdctl snapshot save`)",
        ));
    }
    if dest.exists() {
        return Err(err(
            &format!("backup to {}", dest.display()),
            "the file exists; pick a new name",
        ));
    }
    let src = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| err(&format!("open {}", db.display()), e))?;
    src.busy_timeout(Duration::from_secs(5))
        .map_err(|e| err("busy timeout", e))?;
    check_schema(&src, db)?;
    let name = dest
        .file_name()
        .ok_or_else(|| err(&format!("backup to {}", dest.display()), "not a file name"))?;
    let tmp = dest.with_file_name(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut dst =
            Connection::open(&tmp).map_err(|e| err(&format!("create {}", tmp.display()), e))?;
        {
            let backup = rusqlite::backup::Backup::new(&src, &mut dst)
                .map_err(|e| err("start the backup", e))?;
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                // -1: every page in one step, so the copy is one snapshot of the source.
                match backup.step(-1).map_err(|e| err("backup", e))? {
                    rusqlite::backup::StepResult::Done => break,
                    _ if std::time::Instant::now() > deadline => {
                        return Err(err("backup", "the database stayed locked for 60s"));
                    }
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        let report = check_copy(&dst, &tmp)?;
        // A self-contained file: no -wal beside it.
        dst.pragma_update(None, "journal_mode", "DELETE")
            .map_err(|e| err("journal mode of the copy", e))?;
        drop(dst);
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| err(&format!("sync {}", tmp.display()), e))?;
        std::fs::rename(&tmp, dest)
            .map_err(|e| err(&format!("rename to {}", dest.display()), e))?;
        sync_parent(dest);
        Ok(report)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Checks that `conn` holds barge's SQLite schema.
fn check_schema(conn: &Connection, path: &Path) -> Result<()> {
    let tables: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('kv_log', 'meta')",
            [],
            |r| r.get(0),
        )
        .map_err(|e| err(&format!("read {}", path.display()), e))?;
    if tables != 2 {
        return Err(err(
            &format!("read {}", path.display()),
            "not a barge datastore (no kv_log/meta tables)",
        ));
    }
    Ok(())
}

/// Checks a copied database (integrity, schema) and answers its revision and live keys.
fn check_copy(conn: &Connection, path: &Path) -> Result<BackupReport> {
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| err(&format!("check {}", path.display()), e))?;
    if ok != "ok" {
        return Err(err(
            &format!("check {}", path.display()),
            format!("integrity check failed: {ok}"),
        ));
    }
    check_schema(conn, path)?;
    let revision: Revision = conn
        .query_row("SELECT COALESCE(MAX(id), 0) FROM kv_log", [], |r| r.get(0))
        .map_err(|e| err("read the revision", e))?;
    let keys: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM kv_log WHERE id IN (SELECT MAX(id) FROM kv_log GROUP BY name) \
             AND deleted = 0",
            [],
            |r| r.get(0),
        )
        .map_err(|e| err("count keys", e))?;
    Ok(BackupReport { revision, keys })
}

/// What [`restore_sqlite`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreReport {
    /// The revision of the backup (its last write): every object keeps its own.
    pub backup_revision: Revision,
    /// The store's revision after the restore (everything below it is compacted).
    pub revision: Revision,
    /// Live keys restored.
    pub keys: i64,
    /// Where the store that was there before went (`state.db.before-restore-<unix time>`).
    pub previous: Option<PathBuf>,
}

/// Replaces the SQLite store of `data_dir` with the backup `backup` (a file written by
/// [`backup_sqlite`]), k3s's `--cluster-reset --cluster-reset-restore-path`. Blocking.
///
/// The backup is copied, checked, its history dropped (only each live key's row at backup time
/// stays, with its revision), and its revision moved to [`RESTORE_REVISION_BUMP`] past the
/// highest of the backup's and the replaced store's, all below compacted. The store that was
/// there is kept beside it as `state.db.before-restore-<unix time>` (with its `-wal`).
///
/// Errors: [`Error::Backend`] when a server runs on `data_dir` (its lock is held), the backup
/// is missing, damaged or not a barge store, or a file cannot be written.
pub fn restore_sqlite(backup: &Path, data_dir: &Path) -> Result<RestoreReport> {
    let db_dir = data_dir.join("db");
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&db_dir)
            .map_err(|e| err(&format!("create {}", db_dir.display()), e))?;
    }
    let _lock = lock_db_dir(&db_dir)?;
    if !backup.is_file() {
        return Err(err(
            &format!("restore {}", backup.display()),
            "no such file",
        ));
    }
    let db = sqlite_path(data_dir);
    let tmp = db_dir.join("state.db.restoring");
    for f in [&tmp, &db_dir.join("state.db.restoring-journal")] {
        let _ = std::fs::remove_file(f);
    }
    std::fs::copy(backup, &tmp).map_err(|e| {
        err(
            &format!("copy {} to {}", backup.display(), tmp.display()),
            e,
        )
    })?;
    let result = (|| {
        // The replaced store's revision: clients may have seen any revision up to it.
        let current = if db.exists() {
            let c = Connection::open_with_flags(
                &db,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| err(&format!("open {}", db.display()), e))?;
            c.query_row("SELECT MAX(id) FROM kv_log", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .optional()
            .ok()
            .flatten()
            .flatten()
            .unwrap_or(0)
        } else {
            0
        };
        let mut conn =
            Connection::open(&tmp).map_err(|e| err(&format!("open {}", tmp.display()), e))?;
        let copy = check_copy(&conn, backup)?;
        let revision = copy.revision.max(current) + RESTORE_REVISION_BUMP;
        let tx = conn.transaction().map_err(|e| err("begin", e))?;
        // Each key's newest row at backup time, live ones only; then the marker at the new
        // revision (MAX(id) is the store's revision), all of it below the compacted revision.
        tx.execute_batch(
            "DELETE FROM kv_log WHERE id NOT IN (SELECT MAX(id) FROM kv_log GROUP BY name);
             DELETE FROM kv_log WHERE deleted = 1;",
        )
        .map_err(|e| err("drop the backup's history", e))?;
        tx.execute(
            "INSERT INTO kv_log (id, name, created, deleted, create_revision, prev_revision, \
             value, old_value) VALUES (?1, ?2, 1, 1, ?1, 0, x'', NULL)",
            rusqlite::params![revision, RESTORE_MARKER_KEY],
        )
        .map_err(|e| err("write the restore marker", e))?;
        tx.execute(
            "UPDATE meta SET compacted_revision = ?1, swept_revision = ?2 WHERE id = 1",
            rusqlite::params![revision, revision - 1],
        )
        .map_err(|e| err("mark the history compacted", e))?;
        tx.commit().map_err(|e| err("commit", e))?;
        conn.execute_batch("VACUUM").map_err(|e| err("vacuum", e))?;
        conn.pragma_update(None, "journal_mode", "DELETE")
            .map_err(|e| err("journal mode", e))?;
        drop(conn);
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| err(&format!("sync {}", tmp.display()), e))?;
        // The store being replaced goes aside, with its WAL (which may hold its last commits).
        let previous = if db.exists() {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let aside = db_dir.join(format!("state.db.before-restore-{stamp}"));
            std::fs::rename(&db, &aside)
                .map_err(|e| err(&format!("move {} aside", db.display()), e))?;
            let wal = db_dir.join("state.db-wal");
            if wal.exists() {
                let mut w = aside.clone().into_os_string();
                w.push("-wal");
                std::fs::rename(&wal, PathBuf::from(w))
                    .map_err(|e| err(&format!("move {} aside", wal.display()), e))?;
            }
            let _ = std::fs::remove_file(db_dir.join("state.db-shm"));
            Some(aside)
        } else {
            None
        };
        std::fs::rename(&tmp, &db).map_err(|e| err(&format!("rename to {}", db.display()), e))?;
        sync_parent(&db);
        Ok(RestoreReport {
            backup_revision: copy.revision,
            revision,
            keys: copy.keys,
            previous,
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// What [`copy_store`] copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyReport {
    /// The source's revision the copy was read at.
    pub revision: Revision,
    /// Keys created in the destination.
    pub keys: usize,
}

/// Copies every live key of `src` (read at one revision) into `dst`, which must hold no key:
/// created one by one in the order of their revisions in `src`, so objects keep their relative
/// order (their `resourceVersion`s become `dst`'s revisions). The SQLite → etcd migration of
/// `barge server --migrate-from-sqlite`.
///
/// Errors: [`Error::Backend`] when `dst` already holds keys (nothing is written then); the
/// stores' errors otherwise (a failure part-way leaves the keys created so far).
pub async fn copy_store(src: &dyn Store, dst: &dyn Store) -> Result<CopyReport> {
    let existing = dst
        .list(
            "/",
            ListOptions {
                limit: Some(1),
                ..Default::default()
            },
        )
        .await?;
    if let Some(kv) = existing.kvs.first() {
        return Err(Error::Backend {
            backend: dst.backend(),
            message: format!(
                "the destination datastore is not empty (it holds {} and {} more keys); \
                 a migration only fills an empty one",
                kv.key, existing.remaining
            ),
        });
    }
    let revision = src.revision().await?;
    let mut kvs = Vec::new();
    let mut after = None;
    loop {
        let page = src
            .list(
                "/",
                ListOptions {
                    start_after: after.take(),
                    limit: Some(500),
                    revision: Some(revision),
                },
            )
            .await?;
        let more = page.remaining > 0;
        after = page.kvs.last().map(|kv| kv.key.clone());
        kvs.extend(page.kvs);
        if !more || after.is_none() {
            break;
        }
    }
    kvs.sort_by_key(|kv| kv.mod_revision);
    let keys = kvs.len();
    for kv in kvs {
        dst.create(&kv.key, kv.value).await?;
    }
    Ok(CopyReport { revision, keys })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_db_dir(dir.path()).unwrap();
        let e = lock_db_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("in use by a running barge server"), "{e}");
        drop(first);
        lock_db_dir(dir.path()).unwrap();
    }
}
