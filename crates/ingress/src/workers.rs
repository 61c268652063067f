//! The proxy's worker threads, as nginx's worker processes: each runs its own single-threaded
//! tokio runtime and serves whole client connections — the client side, the backend
//! connections of their requests (from the worker's own [`Pool`]), their bodies and upgraded
//! tunnels — so a request never crosses threads: hyper's server and client dispatchers of one
//! request wake each other on the same thread, without work stealing, cross-thread wake-ups
//! or parking of idle workers.
//!
//! - The listeners accept on the caller's runtime and hand each accepted connection to the
//!   worker serving the fewest connections ([`Workers::dispatch`]; ties go round robin).
//! - Dropping [`Workers`] stops them: each worker's runtime ends once its queue is closed,
//!   and with it every connection it still serves (the threads are not joined, so dropping
//!   never blocks the caller's runtime).
//!
//! Invariant: everything a connection needs after its hand-off (the routing table's `Arc`,
//! the pool) is reached from the worker's thread; only the table's lock is shared.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::pool::Pool;

/// A connection's work, run on a worker with that worker's pool.
type Job = Box<dyn FnOnce(Arc<Pool>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

struct Worker {
    tx: tokio::sync::mpsc::UnboundedSender<Job>,
    /// Connections handed to this worker and not finished yet.
    active: Arc<AtomicUsize>,
}

/// The worker threads (one per core, as nginx's `worker_processes auto`).
pub struct Workers {
    workers: Vec<Worker>,
    next: AtomicUsize,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("active", &self.active())
            .finish()
    }
}

/// Decrements a worker's connection count when a connection ends (or is dropped unfinished).
struct Active(Arc<AtomicUsize>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// Starts `n` workers (at least one), threads named `name`.
    ///
    /// Errors: a thread or a runtime that cannot be created.
    pub fn start(n: usize, name: &str) -> std::io::Result<Workers> {
        let mut workers = Vec::with_capacity(n.max(1));
        for _ in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
            let active = Arc::new(AtomicUsize::new(0));
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || {
                    rt.block_on(async move {
                        let pool = Arc::new(Pool::default());
                        while let Some(job) = rx.recv().await {
                            tokio::spawn(job(pool.clone()));
                        }
                    });
                    // Dropping the runtime here drops the connections it still serves.
                })?;
            workers.push(Worker { tx, active });
        }
        Ok(Workers {
            workers,
            next: AtomicUsize::new(0),
        })
    }

    /// The number of workers for this machine: its available parallelism (1 if unknown).
    pub fn default_count() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// Connections each worker is serving now, by worker.
    pub fn active(&self) -> Vec<usize> {
        self.workers
            .iter()
            .map(|w| w.active.load(Ordering::Relaxed))
            .collect()
    }

    /// Runs `conn(pool)` on the worker serving the fewest connections, with that worker's
    /// pool; `conn` is called on the worker's thread, inside its runtime (so it may register
    /// sockets there, e.g. `TcpStream::from_std`).
    pub fn dispatch<F, Fut>(&self, conn: F)
    where
        F: FnOnce(Arc<Pool>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let n = self.workers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let pick = (0..n)
            .map(|i| (start + i) % n)
            .min_by_key(|&i| self.workers[i].active.load(Ordering::Relaxed))
            .unwrap_or(0);
        let w = &self.workers[pick];
        w.active.fetch_add(1, Ordering::Relaxed);
        let guard = Active(w.active.clone());
        let job: Job = Box::new(move |pool| {
            Box::pin(async move {
                let _guard = guard;
                conn(pool).await
            })
        });
        // Fails only if the worker's thread is gone, which its loop never does by itself
        // (a connection's panic ends only that connection's task): the connection is dropped.
        let _ = w.tx.send(job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    /// Waits (bounded) until `f` holds.
    fn wait_for(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// What a dispatched job saw: its thread's name and id, its pool.
    type Seen = (Option<String>, std::thread::ThreadId, usize);

    #[test]
    fn connections_go_to_the_least_busy_worker_on_its_thread_with_its_pool() {
        let workers = Workers::start(2, "test-worker").unwrap();
        let (seen_tx, seen_rx) = mpsc::channel::<Seen>();
        let mut release = Vec::new();
        for _ in 0..4 {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            release.push(tx);
            let seen_tx = seen_tx.clone();
            workers.dispatch(move |pool| async move {
                let t = std::thread::current();
                let pool = Arc::as_ptr(&pool) as usize;
                seen_tx
                    .send((t.name().map(str::to_string), t.id(), pool))
                    .unwrap();
                let _ = rx.await;
            });
        }
        let seen: Vec<Seen> = (0..4)
            .map(|_| seen_rx.recv_timeout(Duration::from_secs(20)).unwrap())
            .collect();
        assert_eq!(workers.active(), vec![2, 2], "spread evenly");
        assert!(seen.iter().all(|s| s.0.as_deref() == Some("test-worker")));
        let threads: std::collections::HashSet<_> = seen.iter().map(|s| s.1).collect();
        assert_eq!(threads.len(), 2, "two worker threads");
        for t in threads {
            let pools: std::collections::HashSet<_> =
                seen.iter().filter(|s| s.1 == t).map(|s| s.2).collect();
            assert_eq!(pools.len(), 1, "one pool per worker");
        }
        let pools: std::collections::HashSet<_> = seen.iter().map(|s| s.2).collect();
        assert_eq!(pools.len(), 2, "the two workers' pools differ");
        // Finished connections no longer count.
        drop(release);
        wait_for("the connections to end", || workers.active() == vec![0, 0]);
    }

    #[test]
    fn dropping_the_workers_ends_the_connections_they_serve() {
        let workers = Workers::start(1, "test-worker").unwrap();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let (dropped_tx, dropped_rx) = mpsc::channel::<()>();
        struct OnDrop(mpsc::Sender<()>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        workers.dispatch(move |_pool| async move {
            let _d = OnDrop(dropped_tx);
            started_tx.send(()).unwrap();
            std::future::pending::<()>().await
        });
        started_rx.recv_timeout(Duration::from_secs(20)).unwrap();
        drop(workers);
        dropped_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the connection's task dropped with its worker");
    }
}
