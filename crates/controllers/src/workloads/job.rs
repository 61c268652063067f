//! The Job controller (kube's `pkg/controller/job`) and the TTL-after-finished controller:
//! pods up to `parallelism` until `completions` succeeded (NonIndexed) or every index
//! `0..completions` did (Indexed: `<job>-<index>-` names, the `batch.kubernetes.io/job-completion-index`
//! annotation and label, `JOB_COMPLETION_INDEX`, the pod hostname), failures retried with
//! kube's back-off (10 s doubling, at most 6 min) until `backoffLimit` is exceeded (conditions
//! FailureTarget and Failed, reason `BackoffLimitExceeded`) or `activeDeadlineSeconds` passes
//! (`DeadlineExceeded`); success gives SuccessCriteriaMet and Complete (`CompletionsReached`),
//! and `ttlSecondsAfterFinished` deletes the finished Job.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::Action;

use super::events::{self, Kind};
use super::pods::{self, BURST_REPLICAS};
use super::replicaset::{ns_of, nz};
use super::Ctx;
use crate::ControllerError;

const COMPONENT: &str = "job-controller";
/// The completion index of an Indexed Job's pod (annotation and label).
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
const BACKOFF_BASE: f64 = 10.0;
const BACKOFF_MAX: f64 = 360.0;

fn finished(status: &JobStatus) -> Option<&JobCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

fn job_condition(type_: &str, reason: &str, message: &str, now: &Time) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    }
}

/// The index of an Indexed Job's pod.
fn index_of(pod: &Pod) -> Option<i32> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(COMPLETION_INDEX)?
        .parse()
        .ok()
}

/// When a pod finished: its containers' `finishedAt`, else its last condition transition,
/// else its creation.
fn finish_time(pod: &Pod) -> Option<Time> {
    let st = pod.status.as_ref();
    let terminated = st
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.clone())
        .max_by_key(|t| t.0);
    terminated
        .or_else(|| {
            st.and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|c| c.last_transition_time.clone())
                .max_by_key(|t| t.0)
        })
        .or_else(|| pod.metadata.creation_timestamp.clone())
}

/// kube's `completedIndexes` format: sorted intervals, `1,3-5,7`.
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut it = set.iter().copied().peekable();
    while let Some(start) = it.next() {
        let mut end = start;
        while it.peek() == Some(&(end + 1)) {
            end = it.next().unwrap_or(end);
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(",")
}

/// Parses [`format_indexes`]' output (ignoring anything malformed or ≥ `completions`).
pub fn parse_indexes(s: &str, completions: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
            out.extend((a..=b).filter(|i| *i < completions));
        }
    }
    out
}

/// kube's pod failure back-off: `10s * 2^(failures-1)`, at most 6 min, counted from the last
/// failure after the last success. Returns the seconds left.
pub fn backoff_left(failures_after_success: u32, since_last_failure: f64) -> f64 {
    if failures_after_success == 0 {
        return 0.0;
    }
    let delay = (BACKOFF_BASE * 2f64.powi(failures_after_success as i32 - 1)).min(BACKOFF_MAX);
    (delay - since_last_failure).max(0.0)
}

/// Reconciles one Job (kube's `syncJob`).
pub async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let spec = job.spec.clone().unwrap_or_default();
    let prev = job.status.clone().unwrap_or_default();
    let ns = ns_of(&job.metadata);
    let name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    if let Some(c) = finished(&prev) {
        return ttl(&job, &ctx, c).await;
    }
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let now = pods::now();
    let now_t = pods::now_time();
    let owned: Vec<Arc<Pod>> = ctx
        .informers
        .pods
        .state()
        .into_iter()
        .filter(|p| {
            p.metadata.namespace.as_deref() == Some(ns.as_str())
                && pods::controller_of(&p.metadata).is_some_and(|c| c.uid == uid)
        })
        .collect();
    let active: Vec<&Pod> = owned
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| pods::is_active(p))
        .collect();
    let succeeded_pods: Vec<&Pod> = owned
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| pods::pod_phase(p) == "Succeeded")
        .collect();
    let failed_pods: Vec<&Pod> = owned
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| pods::pod_phase(p) == "Failed")
        .collect();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions;
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let mut succeeded_idx = BTreeSet::new();
    if indexed {
        let c = completions.unwrap_or(1);
        succeeded_idx = parse_indexes(prev.completed_indexes.as_deref().unwrap_or(""), c);
        succeeded_idx.extend(
            succeeded_pods
                .iter()
                .filter_map(|p| index_of(p))
                .filter(|i| *i < c),
        );
    }
    let succeeded = if indexed {
        succeeded_idx.len() as i32
    } else {
        prev.succeeded.unwrap_or(0).max(succeeded_pods.len() as i32)
    };
    let failed = prev.failed.unwrap_or(0).max(failed_pods.len() as i32);

    let mut status = prev.clone();
    if status.start_time.is_none() && spec.suspend != Some(true) {
        status.start_time = Some(now_t.clone());
    }
    status
        .uncounted_terminated_pods
        .get_or_insert_with(UncountedTerminatedPods::default);
    status.succeeded = nz(succeeded);
    status.failed = nz(failed);
    status.terminating = Some(0);
    if indexed {
        let s = format_indexes(&succeeded_idx);
        status.completed_indexes = (!s.is_empty()).then_some(s);
    }
    let job_api = Api::<Job>::namespaced(ctx.client.clone(), &ns);
    let pod_api = Api::<Pod>::namespaced(ctx.client.clone(), &ns);

    // Failure: backoffLimit exceeded (container restarts count with restartPolicy OnFailure)
    // or activeDeadlineSeconds passed.
    let on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    let restarts: i32 = if on_failure {
        active
            .iter()
            .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
            .flatten()
            .map(|c| c.restart_count)
            .sum()
    } else {
        0
    };
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let elapsed = status
        .start_time
        .as_ref()
        .map(|t| pods::seconds_between(t, now))
        .unwrap_or(0.0);
    let failure = if failed + restarts > backoff_limit {
        Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ))
    } else if spec
        .active_deadline_seconds
        .is_some_and(|ads| elapsed >= ads as f64)
    {
        Some((
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ))
    } else {
        None
    };
    let complete = failure.is_none()
        && if indexed {
            succeeded >= completions.unwrap_or(1)
        } else {
            match completions {
                None => succeeded >= 1 && active.is_empty(),
                Some(c) => succeeded >= c,
            }
        };
    if failure.is_some() || complete {
        delete_pods(&ctx, &job, &pod_api, &active).await;
        let conds = status.conditions.get_or_insert_with(Vec::new);
        if let Some((reason, message)) = failure {
            conds.push(job_condition("FailureTarget", reason, message, &now_t));
            conds.push(job_condition("Failed", reason, message, &now_t));
            events::record(
                &ctx.client,
                COMPONENT,
                job.as_ref(),
                Kind::Warning,
                reason,
                message.into(),
            )
            .await;
        } else {
            let msg = "Reached expected number of succeeded pods";
            conds.push(job_condition(
                "SuccessCriteriaMet",
                "CompletionsReached",
                msg,
                &now_t,
            ));
            conds.push(job_condition("Complete", "CompletionsReached", msg, &now_t));
            status.completion_time = Some(now_t.clone());
            events::record(
                &ctx.client,
                COMPONENT,
                job.as_ref(),
                Kind::Normal,
                "Completed",
                "Job completed".into(),
            )
            .await;
        }
        status.active = None;
        status.ready = Some(0);
        let mut new = (*job).clone();
        new.status = Some(status);
        job_api
            .replace_status(&name, &PostParams::default(), &new)
            .await
            .map_err(|e| ControllerError::api(format!("updating the status of job {name}"), e))?;
        return Ok(Action::await_change());
    }

    let mut requeue: Option<f64> = spec
        .active_deadline_seconds
        .map(|ads| (ads as f64 - elapsed).max(0.5));
    if spec.suspend == Some(true) {
        delete_pods(&ctx, &job, &pod_api, &active).await;
    } else if ctx.expectations.satisfied(&uid) {
        // Indexes (Indexed) or a count (NonIndexed) of pods to add.
        let active_idx: BTreeSet<i32> = active.iter().filter_map(|p| index_of(p)).collect();
        let want = if indexed {
            (completions.unwrap_or(1) - succeeded).min(parallelism)
        } else {
            match completions {
                None if succeeded > 0 => active.len() as i32,
                None => parallelism,
                Some(c) => (c - succeeded).min(parallelism),
            }
        }
        .max(0) as usize;
        if active.len() > want {
            let victims = pods::pods_to_delete(&active, active.len() - want, now);
            delete_pods(&ctx, &job, &pod_api, &victims).await;
        } else if active.len() < want {
            // Back-off after failures since the last success.
            let last_success = succeeded_pods
                .iter()
                .filter_map(|p| finish_time(p))
                .map(|t| t.0)
                .max();
            let failures: Vec<Time> = failed_pods
                .iter()
                .filter_map(|p| finish_time(p))
                .filter(|t| last_success.is_none_or(|s| t.0 > s))
                .collect();
            let since = failures
                .iter()
                .map(|t| pods::seconds_between(t, now))
                .fold(f64::INFINITY, f64::min);
            let left = backoff_left(failures.len() as u32, since);
            if left > 0.0 {
                requeue = Some(requeue.map_or(left, |r| r.min(left)));
            } else {
                let n = (want - active.len()).min(BURST_REPLICAS);
                let indexes: Vec<Option<i32>> = if indexed {
                    (0..completions.unwrap_or(1))
                        .filter(|i| !succeeded_idx.contains(i) && !active_idx.contains(i))
                        .take(n)
                        .map(Some)
                        .collect()
                } else {
                    vec![None; n]
                };
                create_pods(&ctx, &job, &pod_api, &indexes).await?;
            }
        }
    }
    status.active = nz(active.len() as i32);
    status.ready = Some(active.iter().filter(|p| pods::is_ready(p)).count() as i32);
    if status != prev {
        let mut new = (*job).clone();
        new.status = Some(status);
        job_api
            .replace_status(&name, &PostParams::default(), &new)
            .await
            .map_err(|e| ControllerError::api(format!("updating the status of job {name}"), e))?;
    }
    Ok(match requeue {
        Some(s) => Action::requeue(Duration::from_secs_f64(s + 0.05)),
        None => Action::await_change(),
    })
}

async fn create_pods(
    ctx: &Ctx,
    job: &Job,
    api: &Api<Pod>,
    indexes: &[Option<i32>],
) -> Result<(), ControllerError> {
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let ns = ns_of(&job.metadata);
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let make = |index: Option<i32>| {
        let prefix = match index {
            Some(i) => format!("{name}-{i}-"),
            None => format!("{name}-"),
        };
        let mut pod = pods::pod_from_template(
            &template,
            &ns,
            &prefix,
            pods::controller_ref("batch/v1", "Job", &job.metadata),
        );
        let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            labels.entry(k.into()).or_insert_with(|| v.clone());
        }
        if let Some(i) = index {
            labels.insert(COMPLETION_INDEX.into(), i.to_string());
            pod.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(COMPLETION_INDEX.into(), i.to_string());
            if let Some(spec) = pod.spec.as_mut() {
                if spec.hostname.is_none() {
                    spec.hostname = Some(format!("{name}-{i}"));
                }
                let env = EnvVar {
                    name: "JOB_COMPLETION_INDEX".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            api_version: None,
                            field_path: format!("metadata.labels['{COMPLETION_INDEX}']"),
                        }),
                        ..Default::default()
                    }),
                };
                for c in spec
                    .containers
                    .iter_mut()
                    .chain(spec.init_containers.iter_mut().flatten())
                {
                    let envs = c.env.get_or_insert_with(Vec::new);
                    if !envs.iter().any(|e| e.name == env.name) {
                        envs.push(env.clone());
                    }
                }
            }
        }
        pod
    };
    let new: Vec<Pod> = indexes.iter().map(|i| make(*i)).collect();
    pods::create_pods(ctx, COMPONENT, job, api, &new)
        .await
        .map_err(|e| ControllerError::api(format!("creating pods of job {name}"), e))
}

async fn delete_pods(ctx: &Ctx, job: &Job, api: &Api<Pod>, victims: &[&Pod]) {
    pods::delete_pods(ctx, COMPONENT, job, api, victims).await
}

/// kube's ttl-after-finished controller: delete the Job `ttlSecondsAfterFinished` after it
/// finished (foreground, so its pods go first), conditional on its uid.
async fn ttl(job: &Job, ctx: &Ctx, cond: &JobCondition) -> Result<Action, ControllerError> {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Ok(Action::await_change());
    };
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let done = job
        .status
        .as_ref()
        .and_then(|s| s.completion_time.clone())
        .or_else(|| cond.last_transition_time.clone());
    let since = done
        .map(|t| pods::seconds_between(&t, pods::now()))
        .unwrap_or(0.0);
    let left = f64::from(ttl) - since;
    if left > 0.0 {
        return Ok(Action::requeue(Duration::from_secs_f64(left + 0.05)));
    }
    let name = job.metadata.name.clone().unwrap_or_default();
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: job.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::foreground()
    };
    match Api::<Job>::namespaced(ctx.client.clone(), &ns_of(&job.metadata))
        .delete(&name, &dp)
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(Action::await_change()),
        Err(e) => Err(ControllerError::api(
            format!("deleting finished job {name}"),
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_round_trip() {
        let s: BTreeSet<i32> = [0, 1, 2, 4, 6, 7].into_iter().collect();
        assert_eq!(format_indexes(&s), "0-2,4,6-7");
        assert_eq!(parse_indexes("0-2,4,6-7", 10), s);
        assert_eq!(
            parse_indexes("0-2,4,6-7", 5),
            [0, 1, 2, 4].into_iter().collect()
        );
        assert_eq!(format_indexes(&BTreeSet::new()), "");
    }

    #[test]
    fn backoff_doubles_to_six_minutes() {
        assert_eq!(backoff_left(0, 0.0), 0.0);
        assert_eq!(backoff_left(1, 0.0), 10.0);
        assert_eq!(backoff_left(2, 5.0), 15.0);
        assert_eq!(backoff_left(3, 40.0), 0.0);
        assert_eq!(backoff_left(10, 0.0), 360.0);
    }
}
