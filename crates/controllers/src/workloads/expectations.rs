//! kube's controller expectations (`pkg/controller/controller_utils.go`: `ControllerExpectations`
//! for creations, `UIDTrackingControllerExpectations` for deletions): what a controller asked
//! for and has not seen through its watch yet. An owner is synced again only once they are all
//! observed, or after [`EXPECTATIONS_TIMEOUT`] (kube's `ExpectationsTimeout`).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long unobserved expectations hold an owner back (kube: 5 minutes).
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Default)]
struct Entry {
    adds: i64,
    dels: HashSet<String>,
    at: Option<Instant>,
}

/// Per owner (by uid): creations still to observe and the uids of pods whose deletion is.
#[derive(Default)]
pub struct Expectations {
    inner: Mutex<HashMap<String, Entry>>,
}

impl Expectations {
    /// True when `owner` may be synced: nothing pending, or pending for too long.
    pub fn satisfied(&self, owner: &str) -> bool {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(owner) {
            None => true,
            Some(e) => {
                (e.adds <= 0 && e.dels.is_empty())
                    || e.at.is_some_and(|t| t.elapsed() > EXPECTATIONS_TIMEOUT)
            }
        }
    }

    /// Records that `n` creations were asked for (replacing what was pending).
    pub fn expect_creations(&self, owner: &str, n: usize) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let e = map.entry(owner.to_string()).or_default();
        e.adds = n as i64;
        e.dels.clear();
        e.at = Some(Instant::now());
    }

    /// Records that the pods `uids` are being deleted (replacing what was pending).
    pub fn expect_deletions(&self, owner: &str, uids: impl IntoIterator<Item = String>) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let e = map.entry(owner.to_string()).or_default();
        e.adds = 0;
        e.dels = uids.into_iter().collect();
        e.at = Some(Instant::now());
    }

    /// One creation was seen (or will never happen: a failed create).
    pub fn creation_observed(&self, owner: &str) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get_mut(owner) {
            e.adds -= 1;
        }
    }

    /// The deletion of pod `uid` was seen (or failed).
    pub fn deletion_observed(&self, owner: &str, uid: &str) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get_mut(owner) {
            e.dels.remove(uid);
        }
    }

    /// Forgets an owner (deleted).
    pub fn forget(&self, owner: &str) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_and_deletions_must_be_observed() {
        let e = Expectations::default();
        assert!(e.satisfied("rs"));
        e.expect_creations("rs", 2);
        assert!(!e.satisfied("rs"));
        e.creation_observed("rs");
        assert!(!e.satisfied("rs"));
        e.creation_observed("rs");
        assert!(e.satisfied("rs"));
        e.expect_deletions("rs", ["a".to_string(), "b".to_string()]);
        e.deletion_observed("rs", "a");
        e.deletion_observed("rs", "a");
        assert!(!e.satisfied("rs"));
        e.deletion_observed("rs", "b");
        assert!(e.satisfied("rs"));
    }
}
