#![recursion_limit = "256"]
//! barge's daemon: serves the [Docker Engine API](https://docs.docker.com/reference/api/engine/)
//! on a Unix socket, on top of the engine libraries (`barge-image`, `barge-container`).
//!
//! Invariants:
//! - This is the only crate that knows HTTP and Docker's wire shapes; handlers parse requests
//!   into engine calls and render engine types back into Docker JSON.
//! - The daemon never forks: containers are started by the engine, which spawns a fresh
//!   per-container monitor process (`barge monitor`). Engine calls are blocking and run on
//!   tokio's blocking pool through [`asyncify`].
//! - Errors are mapped to HTTP status codes in one place: [`error::ApiError`].

mod api;
mod args;
mod error;
mod events;
mod server;
mod state;
mod stream;

use std::future::Future;

pub use args::DaemonArgs;
pub use error::ApiError;

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

#[allow(dead_code)]
fn _assert_send<F: Future + Send>(_: F) {}
