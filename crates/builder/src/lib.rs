//! `barge build`: Dockerfiles to images.
//!
//! - [`parser`]: the Dockerfile syntax (directives, continuations, heredocs, JSON/shell forms)
//!   and word expansion (`$VAR`, `${VAR:-w}`, quotes, escapes).
//! - [`ignore`]: `.dockerignore` patterns.
//! - [`layer`]: layer tars (overlay upper dir diff with whiteouts, copied files).
//! - [`fetch`]: `ADD <url>` rules (file name, mtime, `--checksum`) and the [`fetch::Fetcher`]
//!   hook through which the daemon downloads.
//! - [`mounts`]: `RUN --mount` options and the persistent cache mount store.
//! - [`build`]: the executor (stages, RUN through the container engine, COPY/ADD, layer cache).

pub mod build;
pub mod commit;
pub mod context;
pub mod fetch;
pub use barge_archive::ignore;
pub mod layer;
pub mod mounts;
pub mod parser;

pub use build::{BuildError, BuildOptions, BuildResult, Builder, PruneReport};
pub use parser::{Dockerfile, Instruction, ParseError};
