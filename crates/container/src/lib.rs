//! barge's containers (engine library, synchronous).
//!
//! A container is a record on disk (`<data-root>/containers/<id>/container.json`), an OCI bundle
//! (`config.json` per the [OCI runtime spec](https://github.com/opencontainers/runtime-spec/blob/main/config.md))
//! whose root is an overlayfs of the image's snapshots plus a writable layer, and, while it runs,
//! a per-container **monitor** process (the barge binary re-executed as `barge monitor ...`,
//! single-threaded) that drives the OCI runtime, owns the container's stdio/pty, writes its log
//! (Docker's json-file format), and records its exit status. Containers outlive the daemon.
//!
//! Async callers (the daemon) call these blocking methods from `spawn_blocking`.
//!
//! Layout:
//! - `<data-root>/containers/<id>/`: `container.json`, `<id>-json.log[.N]`, the bundle
//!   (`config.json`), `upper/`, `work/`, `rootfs/` (overlay mount point), `hostname`, `hosts`,
//!   `resolv.conf` (bind-mounted into the container).
//! - `<exec-root>/c/<id[..16]>/` (short: socket paths must fit `sun_path`): `monitor.json` (the monitor's [`monitor::MonitorConfig`];
//!   the monitor runs as `barge monitor <that path>`), `monitor.log`, `attach.sock`,
//!   `control.sock`, `exit.json`, `pid`, `runtime.log`; `<exec-root>/exec/<exec-id>/` the same
//!   for an exec; `<exec-root>/runtime/<runtime-name>/` is the OCI runtime's `--root`.
//! - `<data-root>/volumes/<name>/`: `volume.json` and `_data` (see [`volumes`]); a container's
//!   mounts are resolved at create ([`mounts::MountPoint`] in its record) and set up at start.
//! - cgroups: `linux.cgroupsPath` = `/barge/<id>`, or `/<CgroupParent>/<id>`
//!   ([`Container::cgroup_path`], which `stats`/`pause`/`update`/`kill` and the monitor's
//!   cleanup follow).

mod containers;
mod error;
pub mod fsops;
mod health;
pub mod logs;
pub mod monitor;
pub mod mountinfo;
pub mod mounts;
mod net;
mod resources;
mod restart;
mod seccomp;
mod spec;
mod types;
pub mod volumes;
mod waits;

pub use containers::{Containers, ImageSource, SourceImage};
pub use error::{ContainerError, ErrorKind};
pub use health::{HEALTHY, STARTING, UNHEALTHY};
pub use types::*;
pub use waits::{WaitHandle, WaitNotify};
