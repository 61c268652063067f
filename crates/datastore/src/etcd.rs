//! [`EtcdStore`]: the [`Store`] on an etcd v3 cluster (`etcd-client`, gRPC over plain HTTP/2).
//!
//! The trait is etcd's model, so the mapping is direct ([API](https://etcd.io/docs/v3.5/learning/api/)):
//! - `create`: a transaction `create_revision(key) == 0` → put, else get (→ AlreadyExists);
//! - `update`: `create_revision(key) > 0 && mod_revision(key) == expected` → put (with the
//!   previous value, for its create revision), else get (→ NotFound or Conflict);
//! - `delete`: the same compares (the second only with an expected revision) → delete with
//!   the previous value, else get;
//! - `list`: a range over the prefix (from `start_after` + `"\0"` for a continuation) with
//!   `limit` and `revision`; etcd's `count` (of the whole range) gives `remaining`;
//! - `watch`: a watch on the prefix from `after + 1` with previous values, drained by a task
//!   into a bounded channel (a slow consumer must not leave frames unread on the shared
//!   connection: the task lets go of the etcd watch and resumes from its last revision); a
//!   watch canceled with a `compact_revision` ends with [`Error::Compacted`];
//! - `compact`: etcd's compaction (global to the etcd cluster, whatever the root).
//!
//! Every key is stored under a configurable root (`""` by default, so `etcdctl` shows the API
//! server's `/registry/…` keys as kube-apiserver writes them), so several clusters or tests can
//! share one etcd.
//!
//! Revisions are etcd's: they start at 1 in a new etcd (its first write is revision 2) and are
//! shared by every root. etcd also allows a watch to start exactly at the compacted revision,
//! where [`crate::MemStore`] and [`crate::SqliteStore`] already answer Compacted.
//!
//! After an etcd is restored from a snapshot (`etcdctl snapshot restore`, which in etcd 3.4
//! has no `--bump-revision`), its revisions go back to the snapshot's: revisions clients saw
//! after the snapshot would be handed out again for other contents. [`EtcdStore::reset_after_restore`]
//! (`barge server --cluster-reset` on etcd) does what etcd ≥ 3.5's `etcdutl snapshot restore
//! --bump-revision --mark-compacted` does, from the outside: it records a *bump* under
//! [`REVISION_BUMPS_KEY`] (the etcd revision it starts at and how far it moves) and compacts
//! etcd there. Every store connected afterwards shows etcd revisions from that point
//! `RESTORE_REVISION_BUMP` higher (and maps them back on the way in); the revisions of the
//! restored objects do not move; a revision in the gap, or below the bump, is `Compacted`, so
//! clients relist.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions, WatchResponse,
};

use crate::{
    Error, Event, EventKind, KeyValue, ListOptions, ListPage, Result, Revision, Store, WatchStream,
};

const BACKEND: &str = "etcd";

/// The etcd key (outside every root: a restore is of the whole etcd) holding the revision
/// bumps of [`EtcdStore::reset_after_restore`]: JSON `[[at, by], …]`, `at` increasing, `by`
/// the cumulative bump of the etcd revisions from `at` on.
pub const REVISION_BUMPS_KEY: &str = "/barge/revision-bumps";

/// The revision bumps in force: the map between etcd's revisions and the store's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bumps(Vec<(Revision, Revision)>);

impl Bumps {
    /// The store's revision of etcd revision `r` (`r` + the cumulative bump of the last bump
    /// at or below it; 0 stays 0).
    pub fn outward(&self, r: Revision) -> Revision {
        match self.0.iter().rev().find(|(at, _)| *at <= r) {
            Some((_, by)) if r > 0 => r + by,
            _ => r,
        }
    }

    /// The etcd revision of the store's revision `rv`; `None` for a revision in a bump's gap
    /// (one no etcd revision maps to: handed out before the restore, now compacted).
    pub fn inward(&self, rv: Revision) -> Option<Revision> {
        for (i, (at, by)) in self.0.iter().enumerate().rev() {
            if rv >= at + by {
                return Some(rv - by);
            }
            let before = if i == 0 { 0 } else { self.0[i - 1].1 };
            if rv >= at + before {
                return None;
            }
        }
        Some(rv)
    }

    /// These bumps and one more from etcd revision `at` by `by`.
    pub fn with(&self, at: Revision, by: Revision) -> Bumps {
        let mut v = self.0.clone();
        let total = v.last().map_or(0, |(_, b)| *b) + by;
        v.push((at, total));
        Bumps(v)
    }
}

/// What [`EtcdStore::reset_after_restore`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdResetReport {
    /// The restored etcd's revision (the snapshot's), as the store showed it before.
    pub restored_revision: Revision,
    /// The store's revision now (every revision below it is compacted).
    pub revision: Revision,
}

/// The [`Store`] on etcd v3; clones share the connection.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    root: String,
    bumps: Arc<Bumps>,
}

/// Whether etcd never received the request: the client's balanced channel picked an endpoint
/// it could not connect to (a member down or restarting). Such a request is safe to send
/// again, a write too.
fn unsent(e: &etcd_client::Error) -> bool {
    match e {
        // tonic's Code::Unavailable (14), answered by the client side before sending.
        etcd_client::Error::GRpcStatus(s) => {
            s.code() as i32 == 14 && s.message().contains("connect error")
        }
        _ => false,
    }
}

/// Whether a read may simply be sent again: it was [`unsent`], or etcd answered Unavailable
/// (`etcdserver: leader changed`, `no leader`) — etcd's Go client retries reads on these.
fn retryable_read(e: &etcd_client::Error) -> bool {
    unsent(e) || matches!(e, etcd_client::Error::GRpcStatus(s) if s.code() as i32 == 14)
}

/// Runs the write `call` again while its request was [`unsent`] (up to ~2 s), so a dead member
/// among the endpoints costs a retry, not a failed API request.
async fn retry_unsent<T, Fut>(
    call: impl FnMut() -> Fut,
) -> std::result::Result<T, etcd_client::Error>
where
    Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
{
    retry_while(unsent, call).await
}

/// Runs the read `call` again while [`retryable_read`] (up to ~2 s): a member down or an
/// election in progress costs a retry, not a failed API request.
async fn retry_read<T, Fut>(call: impl FnMut() -> Fut) -> std::result::Result<T, etcd_client::Error>
where
    Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
{
    retry_while(retryable_read, call).await
}

async fn retry_while<T, Fut>(
    again: fn(&etcd_client::Error) -> bool,
    mut call: impl FnMut() -> Fut,
) -> std::result::Result<T, etcd_client::Error>
where
    Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
{
    let mut attempt: u64 = 0;
    loop {
        match call().await {
            Err(e) if again(&e) && attempt < 20 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 * attempt.min(5))).await;
            }
            r => return r,
        }
    }
}

fn backend_err(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Backend {
        backend: BACKEND,
        message: format!("{context}: {e}"),
    }
}

/// What an etcd error says, by etcd's error strings (`rpctypes`: the gRPC code is
/// OutOfRange for both; the message is the stable part, as etcd's own Go client matches it).
enum Refusal {
    Compacted,
    Future,
    Other,
}

fn refusal(e: &etcd_client::Error) -> Refusal {
    match e {
        etcd_client::Error::GRpcStatus(s) if s.message().contains("has been compacted") => {
            Refusal::Compacted
        }
        etcd_client::Error::GRpcStatus(s) if s.message().contains("future revision") => {
            Refusal::Future
        }
        _ => Refusal::Other,
    }
}

/// The first key after every key starting with `prefix` (etcd's `range_end` for a prefix;
/// `"\0"` = no end, for an empty prefix or one of all `0xff`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (`http://HOST:PORT` each) with keys at the root.
    ///
    /// Errors: [`Error::Backend`] when no endpoint answers within 5 seconds.
    pub async fn connect(endpoints: &[String]) -> Result<EtcdStore> {
        Self::connect_with_root(endpoints, "").await
    }

    /// Connects to etcd at `endpoints`, storing every key under `root` (e.g. `/cluster-a`;
    /// keys and prefixes of the trait are relative to it).
    ///
    /// Errors: [`Error::Backend`] when no endpoint answers within 5 seconds.
    pub async fn connect_with_root(endpoints: &[String], root: &str) -> Result<EtcdStore> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(30), Duration::from_secs(10));
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| backend_err(&format!("connect to {}", endpoints.join(",")), e))?;
        let mut store = EtcdStore {
            client,
            root: root.to_string(),
            bumps: Arc::default(),
        };
        // The connection is lazy: fail here, with the endpoints named, rather than later.
        tokio::time::timeout(Duration::from_secs(5), store.load_bumps())
            .await
            .map_err(|_| {
                backend_err(
                    &format!("connect to {}", endpoints.join(",")),
                    "no answer in 5s",
                )
            })?
            .map_err(|e| backend_err(&format!("connect to {}", endpoints.join(",")), e))
            .map(|b| store.bumps = Arc::new(b))?;
        Ok(store)
    }

    /// The revision bumps recorded in etcd ([`REVISION_BUMPS_KEY`]).
    async fn load_bumps(&self) -> Result<Bumps> {
        let resp = retry_read(|| {
            let mut kv = self.client.kv_client();
            async move { kv.get(REVISION_BUMPS_KEY, None).await }
        })
        .await
        .map_err(|e| backend_err("read the revision bumps", e))?;
        match resp.kvs().first() {
            None => Ok(Bumps::default()),
            Some(kv) => serde_json::from_slice::<Vec<(Revision, Revision)>>(kv.value())
                .map(Bumps)
                .map_err(|e| backend_err(REVISION_BUMPS_KEY, e)),
        }
    }

    /// The bumps this store applies (read when it connected).
    pub fn bumps(&self) -> &Bumps {
        &self.bumps
    }

    /// After `etcdctl snapshot restore` (every barge server stopped): moves the revisions
    /// the store shows [`crate::ops::RESTORE_REVISION_BUMP`] ahead from etcd's current
    /// revision on (recorded under [`REVISION_BUMPS_KEY`], read by every store that connects
    /// afterwards) and compacts etcd there, so that no revision handed out before the restore
    /// means anything again: reads and watches from one are `Compacted` (clients relist), and
    /// the objects keep the revisions they had in the snapshot. This store is stale after it:
    /// connect again.
    ///
    /// Errors: [`Error::Backend`] when etcd cannot be written or compacted.
    pub async fn reset_after_restore(&self) -> Result<EtcdResetReport> {
        let restored_revision = self.revision().await?;
        let bumps = self.load_bumps().await?;
        // The marker's own write is the first bumped revision.
        let raw = self.raw_revision().await?;
        let at = raw + 1;
        let next = bumps.with(at, crate::ops::RESTORE_REVISION_BUMP);
        let value = serde_json::to_vec(&next.0).map_err(|e| backend_err("bumps", e))?;
        retry_unsent(|| {
            let mut kv = self.client.kv_client();
            let value = value.clone();
            async move { kv.put(REVISION_BUMPS_KEY, value, None).await }
        })
        .await
        .map_err(|e| backend_err(&format!("write {REVISION_BUMPS_KEY}"), e))?;
        match self.client.kv_client().compact(at, None).await {
            Ok(_) => {}
            Err(e) if matches!(refusal(&e), Refusal::Compacted) => {}
            Err(e) => return Err(backend_err("compact", e)),
        }
        let now = self.raw_revision().await?;
        Ok(EtcdResetReport {
            restored_revision,
            revision: next.outward(now),
        })
    }

    /// etcd's own current revision.
    async fn raw_revision(&self) -> Result<Revision> {
        // Any key does (etcd has no empty one): the header carries the revision.
        let resp = retry_read(|| {
            let mut kv = self.client.kv_client();
            let key = self.full("\0");
            async move { kv.get(key, Some(GetOptions::new().with_count_only())).await }
        })
        .await
        .map_err(|e| backend_err("revision", e))?;
        header_revision(resp.header())
    }

    /// The etcd revision of a requested revision, or the `Compacted` error of one in a gap.
    async fn inward(&self, requested: Revision) -> Result<Revision> {
        match self.bumps.inward(requested) {
            Some(r) => Ok(r),
            None => Err(Error::Compacted {
                requested,
                compacted: self.compacted_revision().await.unwrap_or(0),
            }),
        }
    }

    /// The etcd client, for callers that need more than the trait (the benchmark's raw puts).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn full(&self, key: &str) -> Vec<u8> {
        format!("{}{key}", self.root).into_bytes()
    }

    fn convert(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        let key = std::str::from_utf8(kv.key())
            .map_err(|e| backend_err("key", e))?
            .strip_prefix(self.root.as_str())
            .ok_or_else(|| backend_err("key", "outside the root"))?
            .to_string();
        Ok(KeyValue {
            key,
            value: kv.value().to_vec(),
            create_revision: self.bumps.outward(kv.create_revision()),
            mod_revision: self.bumps.outward(kv.mod_revision()),
        })
    }

    /// Maps an etcd error of a read at `requested`.
    async fn read_err(&self, requested: Revision, e: etcd_client::Error) -> Error {
        match refusal(&e) {
            Refusal::Compacted => Error::Compacted {
                requested,
                compacted: self.compacted_revision().await.unwrap_or(0),
            },
            Refusal::Future => Error::FutureRevision {
                requested,
                current: self.revision().await.unwrap_or(0),
            },
            Refusal::Other => backend_err("read", e),
        }
    }

    /// The outcome of a write transaction whose compares failed: the key's current value
    /// (the transaction's else-branch get) tells NotFound from Conflict.
    /// Runs one conditional write (`what` names it in errors); the caller reads `succeeded`.
    async fn txn(&self, what: &str, key: &str, txn: Txn) -> Result<etcd_client::TxnResponse> {
        retry_unsent(|| {
            let mut kv = self.client.kv_client();
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
        .await
        .map_err(|e| backend_err(&format!("{what} {key}"), e))
    }

    fn refused(&self, key: &str, expected: Revision, resp: &etcd_client::TxnResponse) -> Error {
        let current = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => g
                .kvs()
                .first()
                .map(|kv| self.bumps.outward(kv.mod_revision())),
            _ => None,
        });
        match current {
            None => Error::NotFound { key: key.into() },
            Some(current) => Error::Conflict {
                key: key.into(),
                expected,
                current,
            },
        }
    }
}

fn header_revision(h: Option<&etcd_client::ResponseHeader>) -> Result<Revision> {
    h.map(|h| h.revision())
        .ok_or_else(|| backend_err("response", "no header"))
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn revision(&self) -> Result<Revision> {
        Ok(self.bumps.outward(self.raw_revision().await?))
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        // etcd has no call for it; a watch from revision 1 is canceled with it when history
        // was compacted (on a key of our own that never exists, so nothing is replayed; etcd
        // still scans the history it keeps, which the compactor bounds).
        let mut watch = self
            .client
            .watch_client()
            .watch(
                self.full("\0compaction-probe"),
                Some(WatchOptions::new().with_start_revision(1)),
            )
            .await
            .map_err(|e| backend_err("compacted revision", e))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut created = None;
        loop {
            let wait = if created.is_some() {
                // Created and no cancellation soon after: nothing was compacted.
                Duration::from_millis(200)
            } else {
                deadline.saturating_duration_since(tokio::time::Instant::now())
            };
            match tokio::time::timeout(wait, watch.message()).await {
                Ok(Ok(Some(resp))) => {
                    if resp.compact_revision() > 0 {
                        let _ = watch.cancel(resp.watch_id()).await;
                        return Ok(self.bumps.outward(resp.compact_revision()));
                    }
                    if resp.canceled() {
                        return Err(backend_err("compacted revision", resp.cancel_reason()));
                    }
                    if resp.created() {
                        created = Some(resp.watch_id());
                    }
                }
                Ok(Ok(None)) => return Err(backend_err("compacted revision", "watch closed")),
                Ok(Err(e)) => return Err(backend_err("compacted revision", e)),
                Err(_) => match created {
                    Some(id) => {
                        let _ = watch.cancel(id).await;
                        return Ok(0);
                    }
                    None => return Err(backend_err("compacted revision", "no answer in 5s")),
                },
            }
        }
    }

    async fn get(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> Result<(Revision, Option<KeyValue>)> {
        let requested = revision.unwrap_or(0);
        let raw = self.inward(requested).await?;
        let resp = match retry_read(|| {
            let mut kv = self.client.kv_client();
            let k = self.full(key);
            async move { kv.get(k, Some(GetOptions::new().with_revision(raw))).await }
        })
        .await
        {
            Ok(r) => r,
            Err(e) => return Err(self.read_err(requested, e).await),
        };
        let at = if requested > 0 {
            requested
        } else {
            self.bumps.outward(header_revision(resp.header())?)
        };
        let kv = resp.kvs().first().map(|kv| self.convert(kv)).transpose()?;
        Ok((at, kv))
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListPage> {
        let full_prefix = self.full(prefix);
        let end = prefix_end(&full_prefix);
        let start = match &opts.start_after {
            // The first key after `s`: `s` + NUL.
            Some(s) if s.as_str() >= prefix => {
                let mut k = self.full(s);
                k.push(0);
                k
            }
            // etcd has no empty key: the whole keyspace starts at NUL.
            _ if full_prefix.is_empty() => vec![0],
            _ => full_prefix,
        };
        let requested = opts.revision.unwrap_or(0);
        let raw = self.inward(requested).await?;
        let mut get = GetOptions::new().with_range(end).with_revision(raw);
        if let Some(limit) = opts.limit {
            if limit == 0 {
                // etcd's limit 0 means none; a page of nothing still counts what follows.
                get = get.with_count_only();
            } else {
                get = get.with_limit(limit as i64);
            }
        }
        let resp = match retry_read(|| {
            let mut kv = self.client.kv_client();
            let (start, get) = (start.clone(), get.clone());
            async move { kv.get(start, Some(get)).await }
        })
        .await
        {
            Ok(r) => r,
            Err(e) => return Err(self.read_err(requested, e).await),
        };
        let kvs = resp
            .kvs()
            .iter()
            .map(|kv| self.convert(kv))
            .collect::<Result<Vec<_>>>()?;
        let revision = if requested > 0 {
            requested
        } else {
            self.bumps.outward(header_revision(resp.header())?)
        };
        Ok(ListPage {
            revision,
            remaining: resp.count() - kvs.len() as i64,
            kvs,
        })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let k = self.full(key);
        let txn = Txn::new()
            .when([Compare::create_revision(k.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(k.clone(), value.clone(), None)])
            .or_else([TxnOp::get(k, None)]);
        let resp = self.txn("create", key, txn).await?;
        if !resp.succeeded() {
            return Err(Error::AlreadyExists { key: key.into() });
        }
        let revision = self.bumps.outward(header_revision(resp.header())?);
        Ok(KeyValue {
            key: key.into(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        let k = self.full(key);
        // A revision in a bump's gap is no key's: -1 fails the compare (a Conflict).
        let raw = self.bumps.inward(expected).unwrap_or(-1);
        let txn = Txn::new()
            .when([
                Compare::create_revision(k.clone(), CompareOp::Greater, 0),
                Compare::mod_revision(k.clone(), CompareOp::Equal, raw),
            ])
            .and_then([TxnOp::put(
                k.clone(),
                value.clone(),
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(k, None)]);
        let resp = self.txn("update", key, txn).await?;
        if !resp.succeeded() {
            return Err(self.refused(key, expected, &resp));
        }
        let revision = self.bumps.outward(header_revision(resp.header())?);
        let create_revision = resp
            .op_responses()
            .into_iter()
            .find_map(|r| match r {
                TxnOpResponse::Put(p) => p
                    .prev_key()
                    .map(|kv| self.bumps.outward(kv.create_revision())),
                _ => None,
            })
            .ok_or_else(|| backend_err(&format!("update {key}"), "no previous value"))?;
        Ok(KeyValue {
            key: key.into(),
            value,
            create_revision,
            mod_revision: revision,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let k = self.full(key);
        let mut compares = vec![Compare::create_revision(k.clone(), CompareOp::Greater, 0)];
        if let Some(e) = expected {
            let raw = self.bumps.inward(e).unwrap_or(-1);
            compares.push(Compare::mod_revision(k.clone(), CompareOp::Equal, raw));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::delete(
                k.clone(),
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(k, None)]);
        let resp = self.txn("delete", key, txn).await?;
        if !resp.succeeded() {
            return Err(self.refused(key, expected.unwrap_or(0), &resp));
        }
        let revision = self.bumps.outward(header_revision(resp.header())?);
        let prev = resp
            .op_responses()
            .into_iter()
            .find_map(|r| match r {
                TxnOpResponse::Delete(d) => d.prev_kvs().first().cloned(),
                _ => None,
            })
            .ok_or_else(|| backend_err(&format!("delete {key}"), "no previous value"))?;
        Ok(KeyValue {
            mod_revision: revision,
            ..self.convert(&prev)?
        })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let raw = self.inward(after).await?;
        // etcd lets a watch start at the compacted revision itself; a reset compacted at its
        // bump, and the revision just below it is as stale as the others (as MemStore's).
        if self.bumps.0.iter().any(|(at, _)| raw + 1 == *at) {
            return Err(Error::Compacted {
                requested: after,
                compacted: self.compacted_revision().await.unwrap_or(0),
            });
        }
        let first = self.open_watch(prefix, after).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(WATCH_BUFFER);
        tokio::spawn(self.clone().pump(prefix.to_string(), after, first, tx));
        let out = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Box::pin(out))
    }

    async fn compact(&self, revision: Revision) -> Result<Revision> {
        let wanted = revision.min(self.revision().await?);
        // In a bump's gap: up to the bump (everything below it is compacted already).
        let target = match self.bumps.inward(wanted) {
            Some(r) => r,
            None => self
                .bumps
                .0
                .iter()
                .find(|(at, by)| wanted < at + by)
                .map_or(0, |(at, _)| *at),
        };
        if target <= 0 {
            return self.compacted_revision().await;
        }
        match self.client.kv_client().compact(target, None).await {
            Ok(_) => Ok(self.bumps.outward(target)),
            // Already compacted at or past it.
            Err(e) if matches!(refusal(&e), Refusal::Compacted) => self.compacted_revision().await,
            Err(e) => Err(backend_err("compact", e)),
        }
    }
}

/// Batches a watch keeps for its consumer before it lets go of the etcd watch (see
/// [`EtcdStore::pump`]).
const WATCH_BUFFER: usize = 256;

/// What one etcd watch response means for the consumer.
enum Delivery {
    Batch(Vec<Event>),
    /// Nothing for the consumer (the creation response, a progress notification).
    Nothing,
    /// The last item: an error, after which the stream ends.
    End(Error),
}

impl EtcdStore {
    /// An etcd watch of `prefix` for the events after `after`, with previous values.
    async fn open_watch(&self, prefix: &str, after: Revision) -> Result<etcd_client::WatchStream> {
        let raw = self.inward(after).await?;
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(raw + 1)
            .with_prev_key();
        retry_read(|| {
            let mut w = self.client.watch_client();
            let (key, options) = (self.full(prefix), options.clone());
            async move { w.watch(key, Some(options)).await }
        })
        .await
        .map_err(|e| backend_err("watch", e))
    }

    fn delivery(
        &self,
        after: Revision,
        msg: std::result::Result<Option<WatchResponse>, etcd_client::Error>,
    ) -> Delivery {
        let resp = match msg {
            Ok(Some(resp)) => resp,
            Ok(None) => return Delivery::End(backend_err("watch", "etcd closed the watch stream")),
            Err(e) => return Delivery::End(backend_err("watch", e)),
        };
        if resp.compact_revision() > 0 {
            return Delivery::End(Error::Compacted {
                requested: after,
                compacted: self.bumps.outward(resp.compact_revision()),
            });
        }
        if resp.canceled() {
            return Delivery::End(backend_err("watch canceled", resp.cancel_reason()));
        }
        if resp.events().is_empty() {
            return Delivery::Nothing;
        }
        match resp.events().iter().map(|e| self.event(e)).collect() {
            Ok(batch) => Delivery::Batch(batch),
            Err(e) => Delivery::End(e),
        }
    }

    /// Moves a watch's events from etcd to its consumer's channel as they arrive. Every watch
    /// shares the client's one HTTP/2 connection, and h2 ends a connection (GOAWAY
    /// `ENHANCE_YOUR_CALM`, "too_many_data_frames") on which too many small DATA frames sit
    /// unread, so one slow consumer would break every call. When the consumer's channel is
    /// full, the etcd watch is dropped (etcd stops sending), the pump waits for room, and
    /// watches again from the last revision delivered: no event lost or repeated (or
    /// `Compacted` if history moved past it meanwhile). Ends when the consumer is gone.
    async fn pump(
        self,
        prefix: String,
        after: Revision,
        first: etcd_client::WatchStream,
        tx: tokio::sync::mpsc::Sender<Result<Vec<Event>>>,
    ) {
        use tokio::sync::mpsc::error::TrySendError;
        let mut last = after;
        let mut stream = first;
        loop {
            // Read until the consumer falls behind; then hold the batch that did not fit.
            let held = loop {
                let msg = tokio::select! {
                    msg = stream.message() => msg,
                    _ = tx.closed() => return,
                };
                match self.delivery(last, msg) {
                    Delivery::Nothing => {}
                    Delivery::End(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    Delivery::Batch(batch) => {
                        let rev = batch.last().map_or(last, |e| e.kv.mod_revision);
                        match tx.try_send(Ok(batch)) {
                            Ok(()) => last = rev,
                            Err(TrySendError::Full(item)) => break (item, rev),
                            Err(TrySendError::Closed(_)) => return,
                        }
                    }
                }
            };
            drop(stream);
            let (item, rev) = held;
            if tx.send(item).await.is_err() {
                return;
            }
            last = rev;
            stream = match self.open_watch(&prefix, last).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
        }
    }

    fn event(&self, e: &etcd_client::Event) -> Result<Event> {
        let kv = e
            .kv()
            .ok_or_else(|| backend_err("watch", "event without a key-value"))?;
        let prev = e.prev_kv().map(|p| self.convert(p)).transpose()?;
        Ok(match e.event_type() {
            etcd_client::EventType::Put => Event {
                kind: EventKind::Put,
                kv: self.convert(kv)?,
                // A first version is a create: no previous value.
                prev: if kv.version() == 1 { None } else { prev },
            },
            etcd_client::EventType::Delete => {
                let last = prev
                    .clone()
                    .ok_or_else(|| backend_err("watch", "delete event without its last value"))?;
                Event {
                    kind: EventKind::Delete,
                    kv: KeyValue {
                        mod_revision: self.bumps.outward(kv.mod_revision()),
                        ..last
                    },
                    prev,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{prefix_end, Bumps};

    #[test]
    fn bumps_map_revisions_both_ways_and_leave_gaps() {
        let none = Bumps::default();
        assert_eq!((none.outward(7), none.inward(7)), (7, Some(7)));
        let one = none.with(10, 1000);
        assert_eq!(one.outward(0), 0);
        assert_eq!(one.outward(9), 9);
        assert_eq!(one.outward(10), 1010);
        assert_eq!(one.inward(9), Some(9));
        assert_eq!(one.inward(10), None, "handed out before the restore");
        assert_eq!(one.inward(1009), None);
        assert_eq!(one.inward(1010), Some(10));
        // A second restore, later: cumulative.
        let two = one.with(20, 1000);
        assert_eq!(two.outward(15), 1015);
        assert_eq!(two.outward(20), 2020);
        assert_eq!(two.inward(1015), Some(15));
        assert_eq!(two.inward(1020), None);
        assert_eq!(two.inward(2019), None);
        assert_eq!(two.inward(2020), Some(20));
        assert_eq!(two.inward(500), None);
        assert_eq!(two.inward(5), Some(5));
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/registry/"), b"/registry0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }
}
