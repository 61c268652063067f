#![recursion_limit = "256"]
//! barge's daemon: serves the [Docker Engine API](https://docs.docker.com/reference/api/engine/)
//! on a Unix socket, on top of the engine libraries (`barge-image`, `barge-container`).
//!
//! Invariants:
//! - This is the only crate that knows HTTP and Docker's wire shapes; handlers parse requests
//!   into engine calls and render engine types back into Docker JSON.
//! - The daemon never forks: containers are started by the engine, which spawns a fresh
//!   per-container monitor process (`barge monitor`). Engine calls are blocking and run on
//!   tokio's blocking pool through `asyncify` (never on a tokio worker); waits for exits
//!   hold no thread at all (`engine_wait`: an engine callback completes a future, which
//!   cancels its waiter when the client goes away).
//! - Errors are mapped to HTTP status codes in one place: [`error::ApiError`].

mod api;
mod args;
mod error;
mod events;
pub mod memory;
mod server;
mod state;
mod stream;
pub mod wire;

use std::future::Future;

pub use args::DaemonArgs;
pub use error::ApiError;
/// The daemon's start-up in two steps, for processes that serve the engine beside something
/// else (`barge server`): [`prepare`] before tokio starts, then [`Prepared::serve`] inside it.
pub use server::{
    end_runtime, init_tracing, prepare, runtime, shutdown_signal, Engine, Prepared, SHUTDOWN_GRACE,
};

/// Runs `barge daemon` with `args` (the arguments after `daemon`); returns the exit code.
pub fn main(args: &[String]) -> i32 {
    use clap::Parser;
    let parsed = match DaemonArgs::try_parse_from(
        std::iter::once("barge daemon".to_string()).chain(args.iter().cloned()),
    ) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 125 } else { 0 };
        }
    };
    match server::run(parsed) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("barge daemon: {e:#}");
            1
        }
    }
}

/// Runs blocking engine work on tokio's blocking pool (the one helper for that, as
/// containerd's rust-extensions `asyncify`).
pub(crate) async fn asyncify<F, T, E>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(Into::into),
        Err(e) => Err(ApiError::internal(format!("engine task failed: {e}"))),
    }
}

/// Waits for an engine notification without holding a thread: `register` (run on the blocking
/// pool) hands the engine a callback ([`barge_container::WaitNotify`]); this future resolves
/// when the engine calls it. Dropped first (the client went away), it cancels the waiter, so
/// nothing is left behind. `Ok(None)`: the awaited exec disappeared.
pub(crate) async fn engine_wait<R>(
    containers: std::sync::Arc<barge_container::Containers>,
    register: R,
) -> Result<Option<i64>, ApiError>
where
    R: FnOnce(
            &barge_container::Containers,
            barge_container::WaitNotify,
        )
            -> Result<Option<barge_container::WaitHandle>, barge_container::ContainerError>
        + Send
        + 'static,
{
    /// The waiter's state, shared by the future and the registration (which may still be
    /// running on the blocking pool when the future is dropped).
    #[derive(Default)]
    struct Slot {
        handle: Option<barge_container::WaitHandle>,
        /// The future was dropped: a registration finishing now cancels at once.
        dropped: bool,
    }
    type Shared = std::sync::Arc<std::sync::Mutex<Slot>>;
    fn slot(s: &Shared) -> std::sync::MutexGuard<'_, Slot> {
        s.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Cancels a pending waiter when the future is dropped before it fired.
    struct Pending {
        containers: std::sync::Arc<barge_container::Containers>,
        slot: Shared,
    }
    impl Drop for Pending {
        fn drop(&mut self) {
            let handle = {
                let mut s = slot(&self.slot);
                s.dropped = true;
                s.handle.take()
            };
            let Some(h) = handle else { return };
            let c = self.containers.clone();
            let cancel = move || {
                if c.cancel_wait(&h) {
                    tracing::debug!("wait cancelled: the client went away");
                }
            };
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn_blocking(cancel);
                }
                Err(_) => cancel(),
            }
        }
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let pending = Pending {
        containers: containers.clone(),
        slot: Shared::default(),
    };
    let shared = pending.slot.clone();
    asyncify(move || {
        let handle = register(
            &containers,
            Box::new(move |code| {
                let _ = tx.send(code);
            }),
        )?;
        if let Some(h) = handle {
            tracing::debug!("wait registered");
            let mut s = slot(&shared);
            if s.dropped {
                drop(s);
                if containers.cancel_wait(&h) {
                    tracing::debug!("wait cancelled: the client went away");
                }
            } else {
                s.handle = Some(h);
            }
        }
        Ok::<_, barge_container::ContainerError>(())
    })
    .await?;
    let code = rx.await.ok().flatten();
    // Fired: nothing left to cancel.
    slot(&pending.slot).handle = None;
    Ok(code)
}

/// Spawns a one-off background task whose panic is logged (with `name`) instead of vanishing
/// with the task.
pub(crate) fn spawn_logged<F>(name: &'static str, fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let task = tokio::spawn(fut);
    tokio::spawn(async move {
        if let Err(e) = task.await {
            if e.is_panic() {
                tracing::error!(
                    task = name,
                    "background task panicked: {}",
                    panic_message(e)
                );
            }
        }
    });
}

/// The text of a task's panic.
pub(crate) fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-text panic)".into()),
        Err(e) => e.to_string(),
    }
}

#[allow(dead_code)]
fn _assert_send<F: Future + Send>(_: F) {}
