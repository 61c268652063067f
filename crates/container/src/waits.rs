//! Exit notification: `wait` on containers and execs without a thread per waiter.
//!
//! A waiter registers a callback under the engine lock ([`Containers::wait_notify`],
//! [`Containers::exec_wait_notify`]); the change that satisfies its condition (an exit, a
//! failed start, a removal) calls it once, after the lock is released. Waiters are keyed by
//! container (or exec) ID, so one exit only looks at, and wakes, that container's waiters. A
//! caller that stops waiting (its client went away) removes its waiter with
//! [`Containers::cancel_wait`]. The blocking [`Containers::wait`] and
//! [`Containers::exec_wait`] are built on the same callbacks.

use std::sync::mpsc;

use crate::containers::{Containers, Inner};
use crate::{ContainerError, Status, WaitCondition};

/// Called once with the exit code when the awaited condition holds; `None` when the exec
/// waited for disappeared (its container was removed). Runs on the engine thread that made
/// the change, with no engine lock held: it must not block (send on a channel and return).
pub type WaitNotify = Box<dyn FnOnce(Option<i64>) + Send>;

/// A registered waiter; hand it to [`Containers::cancel_wait`] to drop it unfired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitHandle {
    key: String,
    exec: bool,
    token: u64,
}

pub(crate) struct Waiter {
    token: u64,
    condition: WaitCondition,
    /// Exits counted when the wait began (for [`WaitCondition::NextExit`]).
    start_exits: u64,
    notify: WaitNotify,
}

pub(crate) struct ExecWaiter {
    token: u64,
    notify: WaitNotify,
}

/// The exit code if `condition` (begun when the container had `start_exits` exits) holds now.
pub(crate) fn wait_result(
    inner: &Inner,
    id: &str,
    condition: WaitCondition,
    start_exits: u64,
) -> Option<i64> {
    match inner.containers.get(id) {
        None => Some(inner.removed.get(id).copied().unwrap_or(0)),
        Some(c) => {
            let running = matches!(c.state.status, Status::Running | Status::Paused)
                || inner.starting.contains(id);
            match condition {
                WaitCondition::NotRunning if !running => Some(c.state.exit_code),
                WaitCondition::NextExit
                    if inner.exits.get(id).copied().unwrap_or(0) > start_exits =>
                {
                    Some(c.state.exit_code)
                }
                _ => None,
            }
        }
    }
}

impl Containers {
    /// Calls `notify` with the exit code once `condition` holds for container `id` (a name,
    /// ID or unique prefix): at once, before returning `Ok(None)`, if it holds now; else later,
    /// from the change that satisfies it, and the returned handle can cancel it. A removed
    /// container satisfies every condition (with its last exit code).
    /// Errors: [`ContainerError::NotFound`] (404), ambiguous prefix.
    pub fn wait_notify(
        &self,
        id: &str,
        condition: WaitCondition,
        notify: WaitNotify,
    ) -> Result<Option<WaitHandle>, ContainerError> {
        let mut inner = self.lock();
        let id = Self::find_id(&inner, id)?;
        let start_exits = inner.exits.get(&id).copied().unwrap_or(0);
        if let Some(code) = wait_result(&inner, &id, condition, start_exits) {
            drop(inner);
            notify(Some(code));
            return Ok(None);
        }
        inner.next_waiter += 1;
        let token = inner.next_waiter;
        inner.waiters.entry(id.clone()).or_default().push(Waiter {
            token,
            condition,
            start_exits,
            notify,
        });
        Ok(Some(WaitHandle {
            key: id,
            exec: false,
            token,
        }))
    }

    /// Like [`Containers::wait_notify`] for an exec instance: `notify` gets its exit code once
    /// it has one (at once if it has). Errors: [`ContainerError::ExecNotFound`] (404).
    pub fn exec_wait_notify(
        &self,
        exec_id: &str,
        notify: WaitNotify,
    ) -> Result<Option<WaitHandle>, ContainerError> {
        let mut inner = self.lock();
        let e = inner
            .execs
            .get(exec_id)
            .ok_or_else(|| ContainerError::ExecNotFound(exec_id.to_string()))?;
        if let Some(code) = e.exit_code {
            drop(inner);
            notify(Some(code));
            return Ok(None);
        }
        inner.next_waiter += 1;
        let token = inner.next_waiter;
        inner
            .exec_waiters
            .entry(exec_id.to_string())
            .or_default()
            .push(ExecWaiter { token, notify });
        Ok(Some(WaitHandle {
            key: exec_id.to_string(),
            exec: true,
            token,
        }))
    }

    /// Drops a waiter that has not fired (no-op if it did). Returns whether it was pending.
    pub fn cancel_wait(&self, handle: &WaitHandle) -> bool {
        let mut inner = self.lock();
        let mut found = false;
        if handle.exec {
            if let Some(v) = inner.exec_waiters.get_mut(&handle.key) {
                let before = v.len();
                v.retain(|w| w.token != handle.token);
                found = v.len() != before;
                if v.is_empty() {
                    inner.exec_waiters.remove(&handle.key);
                }
            }
        } else if let Some(v) = inner.waiters.get_mut(&handle.key) {
            let before = v.len();
            v.retain(|w| w.token != handle.token);
            found = v.len() != before;
            if v.is_empty() {
                inner.waiters.remove(&handle.key);
            }
        }
        found
    }

    /// How many waiters are registered (containers and execs); for tests and diagnostics.
    pub fn pending_waits(&self) -> usize {
        let inner = self.lock();
        inner.waiters.values().map(Vec::len).sum::<usize>()
            + inner.exec_waiters.values().map(Vec::len).sum::<usize>()
    }

    /// Container `id` changed state: fires its waiters whose condition now holds, and wakes
    /// the engine's own blocking waits (`wait_stopped`, `exec_wait_until`).
    pub(crate) fn changed(&self, id: &str) {
        let fired = {
            let mut inner = self.lock();
            Self::take_ready(&mut inner, id)
        };
        for (notify, code) in fired {
            notify(Some(code));
        }
        self.cond.notify_all();
    }

    fn take_ready(inner: &mut Inner, id: &str) -> Vec<(WaitNotify, i64)> {
        let Some(list) = inner.waiters.remove(id) else {
            return Vec::new();
        };
        let mut fired = Vec::new();
        let mut keep = Vec::new();
        for w in list {
            match wait_result(inner, id, w.condition, w.start_exits) {
                Some(code) => fired.push((w.notify, code)),
                None => keep.push(w),
            }
        }
        if !keep.is_empty() {
            inner.waiters.insert(id.to_string(), keep);
        }
        fired
    }

    /// Exec `exec_id` changed state: fires its waiters if it has an exit code, or with `None`
    /// if it is gone.
    pub(crate) fn exec_changed(&self, exec_id: &str) {
        let fired = {
            let mut inner = self.lock();
            let result = match inner.execs.get(exec_id) {
                None => Some(None),
                Some(e) => e.exit_code.map(Some),
            };
            match result {
                Some(r) => inner
                    .exec_waiters
                    .remove(exec_id)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|w| (w.notify, r))
                    .collect(),
                None => Vec::new(),
            }
        };
        for (notify, r) in fired {
            notify(r);
        }
        self.cond.notify_all();
    }

    /// Waiters of execs that no longer exist (their container was removed) get `None`.
    pub(crate) fn drop_orphan_exec_waiters(&self) {
        let fired: Vec<WaitNotify> = {
            let mut inner = self.lock();
            let gone: Vec<String> = inner
                .exec_waiters
                .keys()
                .filter(|k| !inner.execs.contains_key(*k))
                .cloned()
                .collect();
            gone.iter()
                .filter_map(|k| inner.exec_waiters.remove(k))
                .flatten()
                .map(|w| w.notify)
                .collect()
        };
        for notify in fired {
            notify(None);
        }
    }

    /// Blocks until `condition` holds; returns the exit code.
    pub fn wait(&self, id: &str, condition: WaitCondition) -> Result<i64, ContainerError> {
        let (tx, rx) = mpsc::channel();
        self.wait_notify(
            id,
            condition,
            Box::new(move |code| {
                let _ = tx.send(code);
            }),
        )?;
        Ok(rx.recv().ok().flatten().unwrap_or(0))
    }

    /// Blocks until the exec exits; returns its exit code.
    pub fn exec_wait(&self, exec_id: &str) -> Result<i64, ContainerError> {
        let (tx, rx) = mpsc::channel();
        self.exec_wait_notify(
            exec_id,
            Box::new(move |code| {
                let _ = tx.send(code);
            }),
        )?;
        rx.recv()
            .ok()
            .flatten()
            .ok_or_else(|| ContainerError::ExecNotFound(exec_id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::containers::{ImageSource, SourceImage};
    use crate::{Container, Exec, RuntimeConfig};

    struct NoImages;
    impl ImageSource for NoImages {
        fn resolve(&self, name: &str) -> Result<SourceImage, ContainerError> {
            Err(ContainerError::NotFound(name.to_string()))
        }
        fn layer_dirs(&self, id: &str) -> Result<Vec<PathBuf>, ContainerError> {
            Err(ContainerError::NotFound(id.to_string()))
        }
    }

    fn engine(dir: &std::path::Path) -> Arc<Containers> {
        let cfg = RuntimeConfig {
            data_root: dir.join("data"),
            exec_root: dir.join("run"),
            self_exe: PathBuf::from("/nonexistent"),
            runtimes: BTreeMap::new(),
            runtime_args: BTreeMap::new(),
            default_runtime: "runc".into(),
            init_path: PathBuf::from("/nonexistent"),
            networks: None,
        };
        std::fs::create_dir_all(&cfg.data_root).unwrap();
        std::fs::create_dir_all(&cfg.exec_root).unwrap();
        Containers::open_with_source(cfg, Box::new(NoImages), Box::new(|_| {})).unwrap()
    }

    fn running(c: &Containers, id: &str) {
        let mut rec = Container {
            id: id.to_string(),
            name: format!("n{id}"),
            ..Default::default()
        };
        rec.state.status = Status::Running;
        c.lock().containers.insert(id.to_string(), rec);
    }

    fn exited(c: &Containers, id: &str, code: i64) {
        {
            let mut inner = c.lock();
            let rec = inner.containers.get_mut(id).unwrap();
            rec.state.status = Status::Exited;
            rec.state.exit_code = code;
            *inner.exits.entry(id.to_string()).or_default() += 1;
        }
        c.changed(id);
    }

    type Fired = Arc<Mutex<Vec<(&'static str, Option<i64>)>>>;

    fn recorder(fired: &Fired, tag: &'static str) -> WaitNotify {
        let fired = fired.clone();
        Box::new(move |code| fired.lock().unwrap().push((tag, code)))
    }

    #[test]
    fn an_exit_fires_only_its_own_waiters() {
        let dir = tempfile::tempdir().unwrap();
        let c = engine(dir.path());
        running(&c, "aaa");
        running(&c, "bbb");
        let fired: Fired = Arc::default();
        let ha = c
            .wait_notify("aaa", WaitCondition::NotRunning, recorder(&fired, "a"))
            .unwrap()
            .expect("pending");
        let hb = c
            .wait_notify("bbb", WaitCondition::NextExit, recorder(&fired, "b"))
            .unwrap()
            .expect("pending");
        c.wait_notify("bbb", WaitCondition::Removed, recorder(&fired, "b-removed"))
            .unwrap()
            .expect("pending");
        assert_eq!(c.pending_waits(), 3);
        exited(&c, "aaa", 3);
        assert_eq!(*fired.lock().unwrap(), vec![("a", Some(3))]);
        assert!(!c.cancel_wait(&ha), "a fired waiter is gone");
        assert_eq!(c.pending_waits(), 2);
        // Already satisfied: fires at once, nothing registered.
        assert!(c
            .wait_notify("aaa", WaitCondition::NotRunning, recorder(&fired, "a2"))
            .unwrap()
            .is_none());
        // bbb's next exit fires its next-exit waiter, not its removal waiter.
        exited(&c, "bbb", 137);
        assert_eq!(fired.lock().unwrap().last(), Some(&("b", Some(137))));
        assert!(!c.cancel_wait(&hb));
        assert_eq!(c.pending_waits(), 1);
        // Removal.
        {
            let mut inner = c.lock();
            inner.containers.remove("bbb");
            inner.removed.insert("bbb".into(), 137);
        }
        c.changed("bbb");
        assert_eq!(
            fired.lock().unwrap().last(),
            Some(&("b-removed", Some(137)))
        );
        assert_eq!(c.pending_waits(), 0);
        assert!(matches!(
            c.wait_notify("nope", WaitCondition::NotRunning, recorder(&fired, "x")),
            Err(ContainerError::NotFound(_))
        ));
    }

    #[test]
    fn cancelled_waiters_never_fire() {
        let dir = tempfile::tempdir().unwrap();
        let c = engine(dir.path());
        running(&c, "ccc");
        let fired: Fired = Arc::default();
        let h = c
            .wait_notify("ccc", WaitCondition::NotRunning, recorder(&fired, "c"))
            .unwrap()
            .unwrap();
        assert!(c.cancel_wait(&h));
        assert!(!c.cancel_wait(&h));
        exited(&c, "ccc", 0);
        assert!(fired.lock().unwrap().is_empty());
        assert_eq!(c.pending_waits(), 0);
    }

    #[test]
    fn exec_waiters_fire_on_exit_or_disappearance() {
        let dir = tempfile::tempdir().unwrap();
        let c = engine(dir.path());
        running(&c, "ddd");
        for id in ["e1", "e2"] {
            c.lock().execs.insert(
                id.to_string(),
                Exec {
                    id: id.to_string(),
                    container_id: "ddd".into(),
                    options: Default::default(),
                    running: true,
                    exit_code: None,
                    pid: 1,
                },
            );
        }
        let fired: Fired = Arc::default();
        c.exec_wait_notify("e1", recorder(&fired, "e1"))
            .unwrap()
            .unwrap();
        c.exec_wait_notify("e2", recorder(&fired, "e2"))
            .unwrap()
            .unwrap();
        c.lock().execs.get_mut("e1").unwrap().exit_code = Some(7);
        c.exec_changed("e1");
        assert_eq!(*fired.lock().unwrap(), vec![("e1", Some(7))]);
        assert_eq!(c.exec_wait("e1").unwrap(), 7);
        c.lock().execs.remove("e2");
        c.drop_orphan_exec_waiters();
        assert_eq!(fired.lock().unwrap().last(), Some(&("e2", None)));
        assert_eq!(c.pending_waits(), 0);
    }
}
