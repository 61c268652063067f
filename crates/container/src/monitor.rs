//! The per-container monitor process (`barge monitor ...`): single-threaded, started fresh by
//! the daemon, it drives the OCI runtime, owns stdio/pty, writes the log and records the exit.
