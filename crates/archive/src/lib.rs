//! `barge-archive`: the tar and `.dockerignore` code that both the CLI (a Docker API client)
//! and the engine need, so the CLI links this instead of the builder and container crates
//! (and, through them, netlink, nftables and the DNS server).
//!
//! - [`ignore`]: `.dockerignore` patterns with docker's `patternmatcher` rules.
//! - [`context`]: a build context directory as a tar, as `docker build` uploads it.
//! - [`TreeTar`]: a file tree as a tar stream, as `docker cp` and `GET /containers/{id}/archive`
//!   write it.

pub mod context;
pub mod ignore;
mod tree;

pub use tree::TreeTar;

use std::fs;
use std::io;
use std::path::Path;

/// The entries of `dir`, sorted by name (a stable tar order).
pub fn sorted_entries(dir: &Path) -> io::Result<Vec<fs::DirEntry>> {
    let mut v: Vec<fs::DirEntry> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    v.sort_by_key(|e| e.file_name());
    Ok(v)
}
