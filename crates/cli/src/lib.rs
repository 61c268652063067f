//! barge's command line: every command is a client of the Docker Engine API served by
//! `barge daemon` (or any Docker-compatible daemon).
