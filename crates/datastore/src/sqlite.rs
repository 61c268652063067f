//! [`SqliteStore`]: the embedded backend, a kine-like append-only table in one SQLite file.
//!
//! Every write appends one row; its `id` (the `INTEGER PRIMARY KEY`, the rowid) is the
//! write's revision. A row carries the key (`name`), whether it created the key
//! (`created`) or deleted it (`deleted`, a tombstone that keeps the last value), the key's
//! `create_revision`, the revision of the row it supersedes (`prev_revision`, 0 for a first
//! create) and the value before the change (`old_value`, so a watch's `prev` survives the
//! compaction of the superseded row). The unique index on `(name, prev_revision)` makes two
//! writes that both read the same current row impossible, whatever goes wrong above it, and
//! is the main index: a key's rows have increasing `prev_revision`s, so it also finds a key's
//! newest row (its entries carry the rowid, which answers `id <= revision` without the table).
//! The only other one is a partial index of tombstones (deletions only), for counting the
//! live keys after a page. No second full index and no `AUTOINCREMENT` counter keep an update
//! to two B-tree pages (the table's last leaf and one index leaf): what the WAL receives per
//! heartbeat.
//! The one-row table `meta` holds the compacted revision (reads below it fail) and the swept
//! one (rows superseded up to it are deleted; behind the compacted one while a compaction
//! runs, or after a crash in the middle of one, which the next compaction finishes).
//!
//! The current revision is `MAX(id)`: compaction never deletes the newest row (even a
//! tombstone), so ids are never reused, across restarts too.
//!
//! Threads: one writer thread owns the read-write connection, fed by a channel; the writes
//! waiting when it looks (up to 128) share one `IMMEDIATE` transaction (group commit), and it
//! publishes their events to the watchers before it answers the callers. A checkpoint thread
//! copies the WAL into the database file every 200 ms (`PASSIVE`, so no write waits for its
//! fsyncs; the writer checkpoints itself only when the WAL reaches 4 MiB under sustained
//! writes). Reads run on tokio's blocking pool with a small pool of read-only connections
//! (WAL lets them read a consistent snapshot while the writer writes). No tokio worker ever
//! waits on SQLite.
//!
//! Durability: `journal_mode=WAL`, `synchronous=NORMAL`. A write is acknowledged after its
//! transaction committed to the WAL with `write(2)`, so it survives `kill -9` of the process
//! (the kernel has the data); an OS crash or power loss can lose the last commits before the
//! next checkpoint's `fsync`, never tear one (SQLite's WAL frames are checksummed). This is
//! k3s's/kine's trade-off too.
//!
//! One process opens a database at a time (the server's data dir); a second process writing
//! to the same file would see `SQLITE_BUSY` waits, not corruption.

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tokio::sync::{broadcast, oneshot};

use crate::{
    Error, Event, EventKind, KeyValue, ListOptions, ListPage, Result, Revision, Store, WatchStream,
};

const BACKEND: &str = "sqlite";
/// How long a connection waits for a lock held by another connection before `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Rows a compaction deletes per transaction (kine's batch), so writers are not held up.
pub const COMPACT_BATCH: i64 = 1000;
/// Rows a watch reads from the table per batch while it catches up.
const WATCH_BATCH: i64 = 500;
/// Events the in-process notification holds for slow watchers; a watcher that falls further
/// behind catches up from the table instead (no event is lost, none is duplicated).
const LIVE_CAPACITY: usize = 4096;
/// SQLite's page size for a new database. Each commit appends every page it changed to the
/// WAL, so a small update costs about two pages (see the module's notes): measured over a
/// simulated day of lease renewals with compaction, 1 KiB pages write ~5.0 KB per update,
/// 2 KiB ~6.2 KB, SQLite's default 4 KiB ~8.9 KB (docs/benchmarks.md); larger values spill
/// to overflow pages, which costs reads a few page hops but writes no more bytes.
const PAGE_SIZE: i64 = 1024;
/// Idle read connections kept open.
const READ_POOL: usize = 8;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv_log (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL,
    old_value BLOB
);
CREATE UNIQUE INDEX IF NOT EXISTS kv_log_name_prev_revision ON kv_log (name, prev_revision);
CREATE INDEX IF NOT EXISTS kv_log_tombstones ON kv_log (name) WHERE deleted = 1;
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    compacted_revision INTEGER NOT NULL,
    swept_revision INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (id, compacted_revision, swept_revision) VALUES (1, 0, 0);
";

fn backend_err(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Backend {
        backend: BACKEND,
        message: format!("{context}: {e}"),
    }
}

/// The SQLite [`Store`]; clones share the same database, writer thread and watchers.
#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    writer: std_mpsc::Sender<WriteRequest>,
    readers: Mutex<Vec<Connection>>,
    events: broadcast::Sender<Arc<Vec<Event>>>,
    /// The data dir's lock, when [`crate::open`] took one: held as long as the store lives.
    lock: Mutex<Option<crate::ops::DataDirLock>>,
}

/// One request to the writer thread, with where to send its answer.
enum WriteRequest {
    Create(String, Vec<u8>, oneshot::Sender<Result<KeyValue>>),
    Update(String, Vec<u8>, Revision, oneshot::Sender<Result<KeyValue>>),
    Delete(String, Option<Revision>, oneshot::Sender<Result<KeyValue>>),
    /// Mark history up to the revision compacted; answers the new compacted revision.
    SetCompacted(Revision, oneshot::Sender<Result<Revision>>),
    /// Delete superseded and deleted rows whose superseding row is in `(from, to]` and mark
    /// `to` swept; answers the number of rows deleted.
    CompactBatch(Revision, Revision, oneshot::Sender<Result<usize>>),
}

/// A row of `kv_log`, as the queries select it.
struct Row {
    id: Revision,
    name: String,
    created: bool,
    deleted: bool,
    create_revision: Revision,
    prev_revision: Revision,
    value: Vec<u8>,
    old_value: Option<Vec<u8>>,
}

const ROW_COLUMNS: &str =
    "id, name, created, deleted, create_revision, prev_revision, value, old_value";

impl Row {
    fn from_sql(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        Ok(Row {
            id: r.get(0)?,
            name: r.get(1)?,
            created: r.get(2)?,
            deleted: r.get(3)?,
            create_revision: r.get(4)?,
            prev_revision: r.get(5)?,
            value: r.get(6)?,
            old_value: r.get(7)?,
        })
    }

    /// The key-value this row stores (for a tombstone: the last value, at the deletion).
    fn kv(&self) -> KeyValue {
        KeyValue {
            key: self.name.clone(),
            value: self.value.clone(),
            create_revision: self.create_revision,
            mod_revision: self.id,
        }
    }

    /// The watch event of this row's write.
    fn into_event(self) -> Event {
        let prev = (!self.created).then(|| KeyValue {
            key: self.name.clone(),
            value: self.old_value.clone().unwrap_or_default(),
            create_revision: self.create_revision,
            mod_revision: self.prev_revision,
        });
        Event {
            kind: if self.deleted {
                EventKind::Delete
            } else {
                EventKind::Put
            },
            kv: self.kv(),
            prev,
        }
    }
}

/// The smallest string greater than every string starting with `prefix` (`None`: no bound,
/// the prefix is empty or all `char::MAX`). SQLite compares TEXT as bytes of UTF-8, which
/// orders like `str`.
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last as u32 + 1 {
            0xD800 => Some('\u{E000}'),
            n => char::from_u32(n),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn open_connection(path: &Path, read_only: bool) -> rusqlite::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if !read_only {
        // WAL: readers never block the writer; NORMAL: commits are not fsync'd one by one
        // (see the module's durability notes). The WAL is truncated back to 64 MiB after a
        // checkpoint so a burst does not leave a huge file behind (k3s#3660).
        // Before WAL: a new database takes its page size from here (an existing one keeps
        // its own).
        conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        // Checkpoints (which fsync) run on their own thread, not in a commit (see
        // `checkpointer`); the writer's own automatic checkpoint is the backstop for sustained
        // writes, under which the WAL never gets fully copied between two commits and so
        // never starts over (k3s#3660: a 240 GB WAL).
        conn.pragma_update(None, "wal_autocheckpoint", WAL_BACKSTOP_PAGES)?;
        conn.execute_batch(SCHEMA)?;
    }
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// The current revision as of the connection's (transaction's) snapshot.
fn current_revision(conn: &Connection) -> rusqlite::Result<Revision> {
    conn.prepare_cached("SELECT COALESCE(MAX(id), 0) FROM kv_log")?
        .query_row([], |r| r.get(0))
}

fn compacted_revision(conn: &Connection) -> rusqlite::Result<Revision> {
    conn.query_row(
        "SELECT compacted_revision FROM meta WHERE id = 1",
        [],
        |r| r.get(0),
    )
}

/// Checks `revision` against the snapshot's current and compacted revisions; answers the
/// revision to read at.
fn check_revision(conn: &Connection, revision: Option<Revision>) -> Result<Revision> {
    let current = current_revision(conn).map_err(|e| backend_err("read revision", e))?;
    match revision {
        None | Some(0) => Ok(current),
        Some(r) if r > current => Err(Error::FutureRevision {
            requested: r,
            current,
        }),
        Some(r) => {
            let compacted =
                compacted_revision(conn).map_err(|e| backend_err("read compacted revision", e))?;
            if r < compacted {
                Err(Error::Compacted {
                    requested: r,
                    compacted,
                })
            } else {
                Ok(r)
            }
        }
    }
}

/// The newest row of `key` (live or tombstone) at or before `at`.
fn latest_row(conn: &Connection, key: &str, at: Revision) -> rusqlite::Result<Option<Row>> {
    // A key's rows have increasing ids and increasing prev_revisions (each points at the one
    // before): the unique index finds the newest one.
    conn.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM kv_log WHERE name = ?1 AND id <= ?2 \
         ORDER BY prev_revision DESC LIMIT 1"
    ))?
    .query_row(params![key, at], Row::from_sql)
    .optional()
}

// ---- the writer thread ----

struct Writer {
    conn: Connection,
    events: broadcast::Sender<Arc<Vec<Event>>>,
    /// Alive while the writer is: the checkpointer ends when it is gone.
    _alive: Arc<()>,
}

/// WAL pages after which the writer checkpoints in its commit (4 MiB at 1 KiB pages, what
/// SQLite's default 1,000 pages are at 4 KiB).
const WAL_BACKSTOP_PAGES: i64 = 4096;
/// How often the checkpointer copies committed WAL pages into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// The checkpointer thread: a `PASSIVE` checkpoint every [`CHECKPOINT_EVERY`] on a
/// connection of its own, while the writer lives. SQLite's automatic checkpoint would run in
/// the commit that crosses its threshold, so that write (and every write queued behind it)
/// would wait for the checkpoint's fsyncs: k3s's lease timeouts during WAL checkpoints
/// (k3s#14593). A passive checkpoint never blocks the writer or readers; one with nothing to
/// copy costs nothing. Under sustained writes the writer's own checkpoint at
/// [`WAL_BACKSTOP_PAGES`] still runs, with most pages already copied.
fn checkpointer(path: PathBuf, alive: std::sync::Weak<()>) {
    let conn = match Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .and_then(|c| {
        c.busy_timeout(BUSY_TIMEOUT)?;
        c.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(c)
    }) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "sqlite checkpointer: open failed");
            return;
        }
    };
    while alive.strong_count() > 0 {
        std::thread::sleep(CHECKPOINT_EVERY);
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(path = %path.display(), error = %e, "sqlite checkpoint failed");
        }
    }
}

/// A key write, as the writer thread batches them.
enum Op {
    Create(String, Vec<u8>),
    Update(String, Vec<u8>, Revision),
    Delete(String, Option<Revision>),
}

impl Op {
    fn key(&self) -> &str {
        match self {
            Op::Create(k, _) | Op::Update(k, _, _) | Op::Delete(k, _) => k,
        }
    }

    /// Given the key's newest row, the value to store and whether it is a deletion, or the
    /// error to answer.
    fn decide(self, prev: Option<&Row>) -> Result<(Vec<u8>, bool)> {
        let live = prev.filter(|p| !p.deleted);
        match (self, live) {
            (Op::Create(key, _), Some(_)) => Err(Error::AlreadyExists { key }),
            (Op::Create(_, value), None) => Ok((value, false)),
            (Op::Update(key, _, _) | Op::Delete(key, _), None) => Err(Error::NotFound { key }),
            (Op::Update(key, _, expected), Some(p))
            | (Op::Delete(key, Some(expected)), Some(p))
                if p.id != expected =>
            {
                Err(Error::Conflict {
                    key,
                    expected,
                    current: p.id,
                })
            }
            (Op::Update(_, value, _), Some(_)) => Ok((value, false)),
            (Op::Delete(_, _), Some(p)) => Ok((p.value.clone(), true)),
        }
    }
}

/// Key writes the writer thread commits in one transaction at most (group commit).
const MAX_GROUP: usize = 128;

impl Writer {
    fn run(mut self, requests: std_mpsc::Receiver<WriteRequest>) {
        // Ends when every SqliteStore clone (every sender) is gone.
        while let Ok(first) = requests.recv() {
            // Group commit: the key writes waiting now share one transaction (one WAL append
            // of the pages they touch), in arrival order; the others run alone, in order.
            let mut group: Vec<(Op, oneshot::Sender<Result<KeyValue>>)> = Vec::new();
            let mut next = Some(first);
            while let Some(req) = next.take() {
                match req {
                    WriteRequest::Create(k, v, reply) => group.push((Op::Create(k, v), reply)),
                    WriteRequest::Update(k, v, e, reply) => {
                        group.push((Op::Update(k, v, e), reply))
                    }
                    WriteRequest::Delete(k, e, reply) => group.push((Op::Delete(k, e), reply)),
                    WriteRequest::SetCompacted(revision, reply) => {
                        self.commit_group(std::mem::take(&mut group));
                        let _ = reply.send(self.set_compacted(revision));
                    }
                    WriteRequest::CompactBatch(from, to, reply) => {
                        self.commit_group(std::mem::take(&mut group));
                        let _ = reply.send(self.compact_batch(from, to));
                    }
                }
                if group.len() < MAX_GROUP {
                    next = requests.try_recv().ok();
                }
            }
            self.commit_group(group);
        }
    }

    /// Commits `group` in one IMMEDIATE transaction, publishes its events to the watchers
    /// (before any caller hears back) and answers each. A write refused (AlreadyExists,
    /// NotFound, Conflict) does not hold up the others; an SQLite failure rolls the whole
    /// transaction back and retries each write alone, so only the failing one fails.
    fn commit_group(&mut self, group: Vec<(Op, oneshot::Sender<Result<KeyValue>>)>) {
        if group.is_empty() {
            return;
        }
        let keys: Vec<String> = group.iter().map(|(op, _)| op.key().to_string()).collect();
        let (ops, replies): (Vec<Op>, Vec<_>) = group.into_iter().unzip();
        // Kept for a retry one by one (values are moved into the rows).
        let retry: Option<Vec<Op>> = (ops.len() > 1).then(|| {
            ops.iter()
                .map(|op| match op {
                    Op::Create(k, v) => Op::Create(k.clone(), v.clone()),
                    Op::Update(k, v, e) => Op::Update(k.clone(), v.clone(), *e),
                    Op::Delete(k, e) => Op::Delete(k.clone(), *e),
                })
                .collect()
        });
        match self.apply(ops) {
            Ok((outcomes, events)) => {
                if !events.is_empty() {
                    // Watchers hear of the writes before their callers do; none listening is
                    // fine.
                    let _ = self.events.send(Arc::new(events));
                }
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => match retry {
                Some(ops) => {
                    for (op, reply) in ops.into_iter().zip(replies) {
                        self.commit_group(vec![(op, reply)]);
                    }
                }
                None => {
                    let err = backend_err(&format!("write {}", keys[0]), e);
                    if let Some(reply) = replies.into_iter().next() {
                        let _ = reply.send(Err(err));
                    }
                }
            },
        }
    }

    /// Runs `ops` in one transaction: each op's outcome, and the events of the committed ones.
    #[allow(clippy::type_complexity)]
    fn apply(&mut self, ops: Vec<Op>) -> rusqlite::Result<(Vec<Result<KeyValue>>, Vec<Event>)> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut revision = current_revision(&tx)?;
        let mut outcomes = Vec::with_capacity(ops.len());
        let mut events = Vec::new();
        for op in ops {
            let key = op.key().to_string();
            let prev = latest_row(&tx, &key, Revision::MAX)?;
            let (value, deleted) = match op.decide(prev.as_ref()) {
                Ok(d) => d,
                Err(refused) => {
                    outcomes.push(Err(refused));
                    continue;
                }
            };
            let live_prev = prev.as_ref().filter(|p| !p.deleted);
            revision += 1;
            let row = Row {
                id: revision,
                name: key,
                created: live_prev.is_none(),
                deleted,
                create_revision: live_prev.map_or(revision, |p| p.create_revision),
                prev_revision: prev.as_ref().map_or(0, |p| p.id),
                value,
                old_value: live_prev.map(|p| p.value.clone()),
            };
            tx.prepare_cached(
                "INSERT INTO kv_log (id, name, created, deleted, create_revision, \
                 prev_revision, value, old_value) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                row.id,
                row.name,
                row.created,
                row.deleted,
                row.create_revision,
                row.prev_revision,
                row.value,
                row.old_value
            ])?;
            outcomes.push(Ok(row.kv()));
            events.push(row.into_event());
        }
        tx.commit()?;
        Ok((outcomes, events))
    }

    fn set_compacted(&mut self, revision: Revision) -> Result<Revision> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| backend_err("begin", e))?;
        let current = current_revision(&tx).map_err(|e| backend_err("read revision", e))?;
        let compacted =
            compacted_revision(&tx).map_err(|e| backend_err("read compacted revision", e))?;
        let target = revision.min(current);
        if target <= compacted {
            return Ok(compacted);
        }
        tx.execute(
            "UPDATE meta SET compacted_revision = ?1 WHERE id = 1",
            [target],
        )
        .map_err(|e| backend_err("set compacted revision", e))?;
        tx.commit().map_err(|e| backend_err("commit", e))?;
        Ok(target)
    }

    fn compact_batch(&mut self, from: Revision, to: Revision) -> Result<usize> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| backend_err("begin", e))?;
        // Rows superseded by a row in (from, to] (its prev_revision), then tombstones in it:
        // what is left at or below `to` is exactly each live key's newest row.
        let superseded = tx
            .execute(
                "DELETE FROM kv_log WHERE id IN (SELECT prev_revision FROM kv_log \
                 WHERE id > ?1 AND id <= ?2 AND prev_revision != 0)",
                [from, to],
            )
            .map_err(|e| backend_err("compact", e))?;
        // The newest row stays, even a tombstone: its id is the current revision. It is swept
        // once a later write exists (`swept` stops short of it).
        let newest = current_revision(&tx).map_err(|e| backend_err("compact", e))?;
        let tombstones = tx
            .execute(
                "DELETE FROM kv_log WHERE deleted = 1 AND id > ?1 AND id <= ?2 AND id < ?3",
                [from, to, newest],
            )
            .map_err(|e| backend_err("compact", e))?;
        let swept = if to >= newest { newest - 1 } else { to };
        tx.execute(
            "UPDATE meta SET swept_revision = MAX(swept_revision, ?1) WHERE id = 1",
            [swept],
        )
        .map_err(|e| backend_err("compact", e))?;
        tx.commit().map_err(|e| backend_err("commit", e))?;
        Ok(superseded + tombstones)
    }
}

impl SqliteStore {
    /// Opens (creating it and its schema if needed) the database at `path`, and starts its
    /// writer thread. The parent directory must exist.
    ///
    /// Errors: [`Error::Backend`] if SQLite cannot open or set up the file.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        let p = path.clone();
        let conn = tokio::task::spawn_blocking(move || open_connection(&p, false))
            .await
            .map_err(|e| backend_err("open", e))?
            .map_err(|e| backend_err(&format!("open {}", path.display()), e))?;
        let (events, _) = broadcast::channel(LIVE_CAPACITY);
        let (tx, rx) = std_mpsc::channel();
        let alive = Arc::new(());
        let weak = Arc::downgrade(&alive);
        let writer = Writer {
            conn,
            events: events.clone(),
            _alive: alive,
        };
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| backend_err("start the writer thread", e))?;
        let p = path.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpointer(p, weak))
            .map_err(|e| backend_err("start the checkpoint thread", e))?;
        Ok(SqliteStore {
            shared: Arc::new(Shared {
                path,
                writer: tx,
                readers: Mutex::new(Vec::new()),
                events,
                lock: Mutex::new(None),
            }),
        })
    }

    /// Keeps `lock` (the data dir's, see [`crate::ops::lock_db_dir`]) until the last clone of
    /// this store is dropped.
    pub fn hold_lock(&self, lock: crate::ops::DataDirLock) {
        if let Ok(mut l) = self.shared.lock.lock() {
            *l = Some(lock);
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Rows in the table (every live key's current row plus the history not yet compacted);
    /// for tests and the size figures of the benchmark.
    pub async fn row_count(&self) -> Result<i64> {
        self.read(|c| {
            c.query_row("SELECT COUNT(*) FROM kv_log", [], |r| r.get(0))
                .map_err(|e| backend_err("count", e))
        })
        .await
    }

    /// Sends a request to the writer thread and waits for its answer.
    async fn write<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> WriteRequest) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .writer
            .send(make(tx))
            .map_err(|_| backend_err("write", "the writer thread is gone"))?;
        rx.await
            .map_err(|_| backend_err("write", "the writer thread dropped the request"))
    }

    /// Runs `f` on a pooled read-only connection in one read transaction (a consistent
    /// snapshot), on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = shared
                .readers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop();
            let conn = match pooled {
                Some(c) => c,
                None => open_connection(&shared.path, true)
                    .map_err(|e| backend_err(&format!("open {}", shared.path.display()), e))?,
            };
            let result = (|| {
                conn.execute_batch("BEGIN")
                    .map_err(|e| backend_err("begin", e))?;
                let r = f(&conn);
                // A read transaction has nothing to lose: end it whatever happened.
                let _ = conn.execute_batch("COMMIT");
                r
            })();
            let mut pool = shared.readers.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < READ_POOL && conn.is_autocommit() {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| backend_err("read", e))?
    }
}

/// `WHERE` clause and parameters selecting `prefix`'s key range, keys after `start_after`.
fn range_clause(prefix: &str, start_after: Option<&str>) -> (String, Vec<String>) {
    let mut clause = String::from("name >= ?");
    let mut params = vec![prefix.to_string()];
    if let Some(end) = prefix_end(prefix) {
        clause.push_str(" AND name < ?");
        params.push(end);
    }
    if let Some(s) = start_after {
        clause.push_str(" AND name > ?");
        params.push(s.to_string());
    }
    (clause, params)
}

/// One page of live keys under `prefix` at `at`, plus how many more follow.
fn list_at(
    conn: &Connection,
    prefix: &str,
    start_after: Option<&str>,
    limit: Option<usize>,
    at: Revision,
) -> rusqlite::Result<(Vec<KeyValue>, i64)> {
    // Each key's newest row at `at`, in key order, from the index alone (its entries carry
    // the rowid); a row is read only for the keys of the page.
    let (clause, ps) = range_clause(prefix, start_after);
    let mut p: Vec<&dyn rusqlite::ToSql> = ps.iter().map(|s| s as &dyn rusqlite::ToSql).collect();
    p.push(&at);
    let mut newest = conn.prepare_cached(&format!(
        "SELECT MAX(id) FROM kv_log WHERE {clause} AND id <= ? GROUP BY name ORDER BY name"
    ))?;
    let mut by_id =
        conn.prepare_cached(&format!("SELECT {ROW_COLUMNS} FROM kv_log WHERE id = ?1"))?;
    let limit = limit.unwrap_or(usize::MAX);
    let mut kvs = Vec::new();
    let mut ids = newest.query(p.as_slice())?;
    while kvs.len() < limit {
        let Some(r) = ids.next()? else {
            return Ok((kvs, 0));
        };
        let row = by_id.query_row([r.get::<_, Revision>(0)?], Row::from_sql)?;
        if !row.deleted {
            kvs.push(row.kv());
        }
    }
    drop(ids);
    let after = kvs.last().map(|kv| kv.key.as_str()).or(start_after);
    let remaining = count_live(conn, prefix, after, at)?;
    Ok((kvs, remaining))
}

/// Live keys under `prefix` after `after` at `at`: the keys with a row at or before `at`
/// (the index alone) less those whose newest such row is a tombstone (the partial index of
/// tombstones, few since compaction drops them).
fn count_live(
    conn: &Connection,
    prefix: &str,
    after: Option<&str>,
    at: Revision,
) -> rusqlite::Result<i64> {
    let (clause, ps) = range_clause(prefix, after);
    let mut p: Vec<&dyn rusqlite::ToSql> = ps.iter().map(|s| s as &dyn rusqlite::ToSql).collect();
    p.push(&at);
    let keys: i64 = conn
        .prepare_cached(&format!(
            "SELECT COUNT(DISTINCT name) FROM kv_log WHERE {clause} AND id <= ?"
        ))?
        .query_row(p.as_slice(), |r| r.get(0))?;
    p.push(&at);
    let gone: i64 = conn
        .prepare_cached(&format!(
            "SELECT COUNT(*) FROM kv_log t WHERE t.deleted = 1 AND {clause} AND t.id <= ? \
             AND NOT EXISTS (SELECT 1 FROM kv_log n WHERE n.name = t.name \
             AND n.prev_revision = t.id AND n.id <= ?)"
        ))?
        .query_row(p.as_slice(), |r| r.get(0))?;
    Ok(keys - gone)
}

/// Up to `limit` events on `prefix` with revisions in `(after, ..]`, and the snapshot's
/// current revision; [`Error::Compacted`] if `after` is older than the compacted revision.
fn events_after(
    conn: &Connection,
    prefix: &str,
    after: Revision,
    limit: i64,
) -> Result<(Vec<Event>, Revision)> {
    let compacted =
        compacted_revision(conn).map_err(|e| backend_err("read compacted revision", e))?;
    if after < compacted {
        return Err(Error::Compacted {
            requested: after,
            compacted,
        });
    }
    let current = current_revision(conn).map_err(|e| backend_err("read revision", e))?;
    let (clause, ps) = range_clause(prefix, None);
    let sql =
        format!("SELECT {ROW_COLUMNS} FROM kv_log WHERE id > ? AND {clause} ORDER BY id LIMIT ?");
    let mut p: Vec<&dyn rusqlite::ToSql> = vec![&after];
    p.extend(ps.iter().map(|s| s as &dyn rusqlite::ToSql));
    p.push(&limit);
    let rows: Vec<Event> = conn
        .prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_map(p.as_slice(), |r| Row::from_sql(r).map(Row::into_event))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(|e| backend_err("read events", e))?;
    Ok((rows, current))
}

/// Where a watch stream is.
struct WatchState {
    store: SqliteStore,
    prefix: String,
    /// The last revision delivered (or skipped as not on the prefix).
    last: Revision,
    live: broadcast::Receiver<Arc<Vec<Event>>>,
    /// Still reading the table (true until a read came back short).
    catching_up: bool,
    /// A batch read eagerly by `watch` (to report compaction at once).
    first: Option<Vec<Event>>,
    done: bool,
}

impl WatchState {
    async fn next_batch(&mut self) -> Option<Result<Vec<Event>>> {
        if self.done {
            return None;
        }
        if let Some(batch) = self.first.take() {
            return Some(Ok(batch));
        }
        loop {
            if self.catching_up {
                let (prefix, after) = (self.prefix.clone(), self.last);
                let r = self
                    .store
                    .read(move |c| events_after(c, &prefix, after, WATCH_BATCH))
                    .await;
                match r {
                    Ok((batch, current)) => {
                        if (batch.len() as i64) < WATCH_BATCH {
                            // Caught up to the snapshot: everything later is in `live`
                            // (subscribed before this read).
                            self.catching_up = false;
                            self.last = self.last.max(current);
                        }
                        if let Some(last) = batch.last() {
                            self.last = self.last.max(last.kv.mod_revision);
                            return Some(Ok(batch));
                        }
                    }
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
                continue;
            }
            match self.live.recv().await {
                Ok(batch) => {
                    let out: Vec<Event> = batch
                        .iter()
                        .filter(|e| e.kv.mod_revision > self.last)
                        .filter(|e| e.kv.key.starts_with(&self.prefix))
                        .cloned()
                        .collect();
                    if let Some(last) = batch.last() {
                        self.last = self.last.max(last.kv.mod_revision);
                    }
                    if !out.is_empty() {
                        return Some(Ok(out));
                    }
                }
                // Fell behind the in-process buffer: read the missed revisions from the table.
                Err(broadcast::error::RecvError::Lagged(_)) => self.catching_up = true,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn revision(&self) -> Result<Revision> {
        self.read(|c| current_revision(c).map_err(|e| backend_err("read revision", e)))
            .await
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.read(|c| compacted_revision(c).map_err(|e| backend_err("read compacted", e)))
            .await
    }

    async fn get(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> Result<(Revision, Option<KeyValue>)> {
        let key = key.to_string();
        self.read(move |c| {
            let at = check_revision(c, revision)?;
            let row = latest_row(c, &key, at).map_err(|e| backend_err("get", e))?;
            Ok((at, row.filter(|r| !r.deleted).map(|r| r.kv())))
        })
        .await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListPage> {
        let prefix = prefix.to_string();
        self.read(move |c| {
            let at = check_revision(c, opts.revision)?;
            let (kvs, remaining) = list_at(c, &prefix, opts.start_after.as_deref(), opts.limit, at)
                .map_err(|e| backend_err("list", e))?;
            Ok(ListPage {
                revision: at,
                kvs,
                remaining,
            })
        })
        .await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        self.write(|tx| WriteRequest::Create(key.to_string(), value, tx))
            .await?
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        self.write(|tx| WriteRequest::Update(key.to_string(), value, expected, tx))
            .await?
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.write(|tx| WriteRequest::Delete(key.to_string(), expected, tx))
            .await?
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        // Subscribe first, then read the table: a write committed before the subscription is
        // in the read, one after it is in `live`, one in between in both (skipped by revision).
        let live = self.shared.events.subscribe();
        let (p, a) = (prefix.to_string(), after);
        let (first, current) = self
            .read(move |c| events_after(c, &p, a, WATCH_BATCH))
            .await?;
        let catching_up = first.len() as i64 >= WATCH_BATCH;
        let last = match first.last() {
            Some(e) if catching_up => e.kv.mod_revision,
            _ => after.max(current),
        };
        let state = WatchState {
            store: self.clone(),
            prefix: prefix.to_string(),
            last,
            live,
            catching_up,
            first: (!first.is_empty()).then_some(first),
            done: false,
        };
        let stream = futures_util::stream::unfold(state, |mut s| async move {
            s.next_batch().await.map(|item| (item, s))
        });
        Ok(Box::pin(stream))
    }

    async fn compact(&self, revision: Revision) -> Result<Revision> {
        let swept = self
            .read(|c| {
                c.query_row("SELECT swept_revision FROM meta WHERE id = 1", [], |r| {
                    r.get(0)
                })
                .map_err(|e| backend_err("read swept revision", e))
            })
            .await?;
        let target = self
            .write(|tx| WriteRequest::SetCompacted(revision, tx))
            .await??;
        // Reads below `target` fail from now on; drop the rows in batches, each its own
        // transaction, so writes go on between them.
        let mut from: Revision = swept;
        while from < target {
            let to = (from + COMPACT_BATCH).min(target);
            self.write(|tx| WriteRequest::CompactBatch(from, to, tx))
                .await??;
            from = to;
        }
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end("/registry/").as_deref(), Some("/registry0"));
        assert_eq!(prefix_end("").as_deref(), None);
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{10FFFF}").as_deref(), None);
        // The surrogate gap is skipped: U+D7FF is followed by U+E000.
        assert_eq!(prefix_end("x\u{D7FF}").as_deref(), Some("x\u{E000}"));
        // Every string with the prefix sorts below the end, as bytes (SQLite's BINARY).
        let end = prefix_end("/p/é").unwrap();
        for k in ["/p/é", "/p/éz", "/p/é\u{10FFFF}"] {
            assert!(k.as_bytes() < end.as_bytes(), "{k}");
        }
    }
}
