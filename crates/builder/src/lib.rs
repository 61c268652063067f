//! `barge build`: Dockerfiles to images.
//!
//! - [`parser`]: the Dockerfile syntax (directives, continuations, heredocs, JSON/shell forms)
//!   and word expansion (`$VAR`, `${VAR:-w}`, quotes, escapes).
//! - [`ignore`]: `.dockerignore` patterns.

pub mod ignore;
pub mod parser;

pub use parser::{Dockerfile, Instruction, ParseError};
