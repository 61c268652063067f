//! The container manager: records, lifecycle, exec. (Contract; bodies to be written.)

use std::sync::Arc;

use barge_image::ImageStore;

use crate::*;

/// All containers of one data root. Share it behind an `Arc`; every method is blocking.
pub struct Containers {
    _images: Arc<ImageStore>,
}

impl Containers {
    /// Loads records and reconciles them with reality: a `running` container whose monitor is
    /// gone becomes `exited` with the status the monitor recorded (exit code 255 + `Dead` if none).
    /// `on_event` is called (from an engine thread) for every [`ContainerEvent`].
    pub fn open(
        _cfg: RuntimeConfig,
        _images: Arc<ImageStore>,
        _on_event: Box<dyn Fn(ContainerEvent) + Send + Sync>,
    ) -> Result<Arc<Containers>, ContainerError> {
        todo!()
    }

    /// Creates a container (does not start it). Errors: image not found (404), name in use (409),
    /// bad options (400).
    pub fn create(&self, _opts: CreateOptions) -> Result<Container, ContainerError> {
        todo!()
    }

    /// Starts a created or exited container and returns once its process runs.
    /// `on_ready(attach)` is called after the runtime created the process but before it is
    /// started, so attach clients can connect without losing output; the monitor waits (up to
    /// 10 s) for `expected_attaches` connections on the attach socket before starting it.
    pub fn start(
        &self,
        _id: &str,
        _expected_attaches: usize,
        _on_ready: &mut dyn FnMut(&AttachPoint),
    ) -> Result<(), ContainerError> {
        todo!()
    }

    /// Sends the stop signal (the container's, or `signal`), waits `timeout` seconds (the
    /// container's `stop_timeout`, default 10; -1 = forever), then SIGKILL. No error if not running.
    pub fn stop(&self, _id: &str, _timeout: Option<i64>, _signal: Option<&str>) -> Result<(), ContainerError> {
        todo!()
    }

    /// Sends `signal` (name like `SIGKILL`/`KILL` or number) to the main process. 409 if not running.
    pub fn kill(&self, _id: &str, _signal: &str) -> Result<(), ContainerError> {
        todo!()
    }

    /// Removes a container: 409 if running and not `force` (force kills it first). Unmounts its
    /// root, deletes its directory and runtime state.
    pub fn remove(&self, _id: &str, _force: bool) -> Result<(), ContainerError> {
        todo!()
    }

    /// All containers, newest first.
    pub fn list(&self) -> Vec<Container> {
        todo!()
    }

    /// Looks up by full ID, name (with or without `/`), or unique ID prefix.
    pub fn get(&self, _name_or_id: &str) -> Result<Container, ContainerError> {
        todo!()
    }

    /// Blocks until `condition` holds; returns the exit code.
    pub fn wait(&self, _id: &str, _condition: WaitCondition) -> Result<i64, ContainerError> {
        todo!()
    }

    /// Where a running container's streams are served. 409 if not running.
    pub fn attach_point(&self, _id: &str) -> Result<AttachPoint, ContainerError> {
        todo!()
    }

    /// Resizes the container's TTY (rows, columns).
    pub fn resize(&self, _id: &str, _height: u16, _width: u16) -> Result<(), ContainerError> {
        todo!()
    }

    /// `ps` output for the container's processes: (titles, rows), like Docker's `/top`.
    pub fn top(&self, _id: &str, _ps_args: &str) -> Result<(Vec<String>, Vec<Vec<String>>), ContainerError> {
        todo!()
    }

    /// Image IDs used by any container (for `rmi` / prune), with one container ID each.
    pub fn images_in_use(&self) -> std::collections::HashMap<String, String> {
        todo!()
    }

    /// Registers an exec instance in a running container.
    pub fn exec_create(&self, _container: &str, _opts: ExecOptions) -> Result<Exec, ContainerError> {
        todo!()
    }

    /// Starts an exec instance; like [`Containers::start`] for attach. With `detach` nothing attaches.
    pub fn exec_start(
        &self,
        _exec_id: &str,
        _detach: bool,
        _expected_attaches: usize,
        _on_ready: &mut dyn FnMut(&AttachPoint),
    ) -> Result<(), ContainerError> {
        todo!()
    }

    /// Current state of an exec instance.
    pub fn exec_inspect(&self, _exec_id: &str) -> Result<Exec, ContainerError> {
        todo!()
    }

    /// Resizes an exec's TTY.
    pub fn exec_resize(&self, _exec_id: &str, _height: u16, _width: u16) -> Result<(), ContainerError> {
        todo!()
    }
}
