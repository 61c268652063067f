//! `barge-stdx`: small helpers several barge crates share (rust-analyzer's `stdx` idea). It
//! depends on nothing but `std`, so the CLI, the engine crates and the daemon can all use it
//! without pulling each other in.
//!
//! - [`fs`]: durable record writes (`write_atomic`: temp file, fsync, rename, directory fsync).
//! - [`stdcopy`]: Docker's stdout/stderr stream framing (encoder and incremental decoder).
//! - [`units`]: docker's human sizes (`go-units`' `RAMInBytes` and `FromHumanSize`) and Go's
//!   `time.ParseDuration`, with their error wording.

pub mod fs;
pub mod stdcopy;
pub mod units;
