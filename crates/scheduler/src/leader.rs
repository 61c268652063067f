//! Leader election through a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection`
//! with its `LeaseLock` does, for every component of which only one instance may act at a time
//! (the scheduler's `kube-system/kube-scheduler`; the controllers can take
//! `kube-system/kube-controller-manager` with the same [`run`]).
//!
//! A candidate takes the Lease when it does not exist, is already its own, or has not been
//! renewed within `leaseDurationSeconds`; it then renews it every `retry_period` and stops
//! leading (the work is cancelled) when no renewal has succeeded for `renew_deadline`. Every
//! write is conditional on the Lease's `resourceVersion`, so two candidates never both win.
//! On shutdown the Lease is released (empty holder, duration 1 s), as client-go's
//! `ReleaseOnCancel`.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Client;

/// Where and how to elect.
#[derive(Clone, Debug)]
pub struct Config {
    /// The Lease's name (`kube-scheduler`).
    pub name: String,
    /// Its namespace (`kube-system`).
    pub namespace: String,
    /// This candidate's identity (`<hostname>_<random>`, as kube's components).
    pub identity: String,
    /// How long a Lease holds without renewal (kube's default 15 s).
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up (10 s).
    pub renew_deadline: Duration,
    /// The interval between attempts (2 s).
    pub retry_period: Duration,
}

impl Config {
    /// kube's defaults (15 s / 10 s / 2 s) for the Lease `namespace/name`, with a fresh
    /// identity.
    pub fn new(namespace: &str, name: &str) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "barge".into());
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Config {
            name: name.into(),
            namespace: namespace.into(),
            identity: format!("{host}_{:08x}{:08x}", std::process::id(), nanos),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

fn now() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::new(d.as_secs() as i64, d.subsec_nanos() as i32).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Whether a Lease held by someone else is still valid at `at`.
pub fn held_by_other(spec: &LeaseSpec, identity: &str, at: Timestamp) -> bool {
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == identity {
        return false;
    }
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return false;
    };
    let duration_ms = spec.lease_duration_seconds.unwrap_or(0) as i64 * 1000;
    renewed.0.as_millisecond() + duration_ms > at.as_millisecond()
}

/// The spec `identity` writes to take or renew a Lease whose current spec is `old`.
pub fn next_spec(old: Option<&LeaseSpec>, cfg: &Config, at: Timestamp) -> LeaseSpec {
    let ours = old.and_then(|s| s.holder_identity.as_deref()) == Some(cfg.identity.as_str());
    let transitions = old.and_then(|s| s.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(cfg.lease_duration.as_secs() as i32),
        acquire_time: if ours {
            old.and_then(|s| s.acquire_time.clone())
        } else {
            Some(MicroTime(at))
        },
        renew_time: Some(MicroTime(at)),
        lease_transitions: Some(match old {
            Some(s) if !ours && s.holder_identity.as_deref().is_some_and(|h| !h.is_empty()) => {
                transitions + 1
            }
            _ => transitions,
        }),
        ..Default::default()
    }
}

/// One attempt to take or renew the Lease; `Ok(true)` when this candidate holds it now.
pub async fn try_acquire_or_renew(api: &Api<Lease>, cfg: &Config) -> Result<bool, kube::Error> {
    Ok(attempt(api, cfg).await? == Attempt::Holds)
}

/// What one attempt found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attempt {
    /// This candidate holds the Lease now.
    Holds,
    /// Another holder's Lease is valid for this much longer (by its renewTime).
    HeldFor(Duration),
    /// Lost a race for it (409).
    Lost,
}

/// How long a Lease held by someone else stays valid after `at` (zero when it is not).
fn remaining(spec: &LeaseSpec, at: Timestamp) -> Duration {
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return Duration::ZERO;
    };
    let until =
        renewed.0.as_millisecond() + i64::from(spec.lease_duration_seconds.unwrap_or(0)) * 1000;
    Duration::from_millis(u64::try_from(until - at.as_millisecond()).unwrap_or(0))
}

async fn attempt(api: &Api<Lease>, cfg: &Config) -> Result<Attempt, kube::Error> {
    let at = now();
    match api.get_opt(&cfg.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(next_spec(None, cfg, at)),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Holds),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Lost),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            if let Some(spec) = lease
                .spec
                .as_ref()
                .filter(|s| held_by_other(s, &cfg.identity, at))
            {
                return Ok(Attempt::HeldFor(remaining(spec, at)));
            }
            lease.spec = Some(next_spec(lease.spec.as_ref(), cfg, at));
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Holds),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Lost),
                Err(e) => Err(e),
            }
        }
    }
}

/// Releases the Lease if this candidate holds it.
async fn release(api: &Api<Lease>, cfg: &Config) {
    if let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await {
        let ours = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(cfg.identity.as_str());
        if ours {
            let at = now();
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(at));
            let _ = api.replace(&cfg.name, &PostParams::default(), &lease).await;
        }
    }
}

/// Runs `work` whenever this candidate leads, until `shutdown` completes: waits for the Lease,
/// starts `work()`, renews; when leadership is lost the work is cancelled and the candidate
/// waits for the Lease again.
pub async fn run<W, F>(client: Client, cfg: Config, shutdown: impl Future<Output = ()>, work: W)
where
    W: Fn() -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    tokio::pin!(shutdown);
    loop {
        // Candidate: try every retry period — or, when the holder's Lease runs out sooner,
        // right after it does, so a dead leader is replaced within leaseDurationSeconds of its
        // last renewal (not up to one retry period later).
        loop {
            let wait = match attempt(&api, &cfg).await {
                Ok(Attempt::Holds) => break,
                Ok(Attempt::HeldFor(left)) => {
                    cfg.retry_period.min(left + Duration::from_millis(50))
                }
                Ok(Attempt::Lost) => cfg.retry_period,
                Err(e) => {
                    tracing::debug!(lease = %cfg.name, "leader election: {e}");
                    cfg.retry_period
                }
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!(lease = %cfg.name, identity = %cfg.identity, "became leader");
        let task = tokio::spawn(work());
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                _ = &mut shutdown => {
                    task.abort();
                    release(&api, &cfg).await;
                    return;
                }
                _ = tokio::time::sleep(cfg.retry_period) => {}
            }
            match try_acquire_or_renew(&api, &cfg).await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => {
                    // Someone else holds it: we are not the leader any more.
                    renewed = Instant::now() - cfg.renew_deadline;
                }
                Err(e) => tracing::debug!(lease = %cfg.name, "renewing: {e}"),
            }
            if renewed.elapsed() >= cfg.renew_deadline {
                tracing::warn!(lease = %cfg.name, "leader election lost");
                task.abort();
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::new(s, 0).unwrap()
    }

    #[test]
    fn a_lease_is_taken_only_once_expired() {
        let cfg = Config {
            identity: "me".into(),
            ..Config::new("kube-system", "kube-scheduler")
        };
        let other = LeaseSpec {
            holder_identity: Some("other".into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(at(100))),
            acquire_time: Some(MicroTime(at(50))),
            lease_transitions: Some(3),
            ..Default::default()
        };
        assert!(held_by_other(&other, "me", at(114)));
        assert_eq!(remaining(&other, at(114)), Duration::from_secs(1));
        assert_eq!(remaining(&other, at(116)), Duration::ZERO);
        assert!(!held_by_other(&other, "me", at(115)));
        assert!(!held_by_other(&other, "other", at(101)));
        let taken = next_spec(Some(&other), &cfg, at(120));
        assert_eq!(taken.holder_identity.as_deref(), Some("me"));
        assert_eq!(taken.lease_transitions, Some(4));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(120))));
        assert_eq!(taken.lease_duration_seconds, Some(15));
        // Renewal keeps acquireTime and the transition count.
        let renewed = next_spec(Some(&taken), &cfg, at(122));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(120))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(122))));
        assert_eq!(renewed.lease_transitions, Some(4));
        // A released lease (no holder) is taken without counting a transition.
        let released = LeaseSpec {
            holder_identity: None,
            lease_transitions: Some(4),
            ..Default::default()
        };
        assert!(!held_by_other(&released, "me", at(0)));
        assert_eq!(
            next_spec(Some(&released), &cfg, at(1)).lease_transitions,
            Some(4)
        );
    }
}
