//! barge's scheduler: kube-scheduler's job, written on kube's runtime against the Kubernetes
//! API (it would schedule on any Kubernetes too), run in-process by `barge server`.
//!
//! - [`resources`], [`framework`]: requests, allocatable, the per-cycle [`framework::Snapshot`].
//! - [`plugins`]: the default profile's filters and scores as pure functions, with kube's
//!   reason strings and normalisations.
//! - [`schedule`]: one cycle — filters, weighted scores, the pick, kube's aggregated
//!   `FailedScheduling` message; [`preemption`]: DefaultPreemption's dry run.
//! - [`runner`]: reflectors of nodes, pods and namespaces, the priority queue with back-off,
//!   binding through `pods/binding`, events and the `PodScheduled` condition.
//! - [`leader`]: Lease leader election (`kube-system/kube-scheduler`), reusable by the
//!   controllers.
//!
//! Invariants: acts only through the API; a pod is bound at most once (the API server's
//! binding refuses a bound pod, and the scheduler assumes its own bindings until its cache sees
//! them, so it never overcommits a node between the bind and the watch event); only pods with
//! `schedulerName: default-scheduler` are touched; only the Lease holder schedules.

pub mod framework;
pub mod leader;
pub mod plugins;
pub mod preemption;
pub mod resources;
pub mod runner;
pub mod schedule;

use kube::Client;

/// The scheduler's name (`spec.schedulerName`, events' source).
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// Runs the scheduler until `shutdown` completes, scheduling only while it holds the
/// `kube-system/kube-scheduler` Lease.
pub async fn run(client: Client, shutdown: impl std::future::Future<Output = ()>) {
    let cfg = leader::Config::new("kube-system", "kube-scheduler");
    let identity = cfg.identity.clone();
    leader::run(client.clone(), cfg, shutdown, move || {
        runner::run(client.clone(), identity.clone())
    })
    .await;
}
