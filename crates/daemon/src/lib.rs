//! barge's daemon.
