//! The CronJob controller (kube's `pkg/controller/cronjob`, v2): Jobs named
//! `<cronjob>-<scheduled time in minutes since the epoch>` at each activation of the schedule
//! ([`cron`](super::cron)) in `timeZone` (else the host's zone), with `concurrencyPolicy`
//! Allow/Forbid/Replace, `suspend`, `startingDeadlineSeconds` (MissSchedule), the active
//! list, lastScheduleTime/lastSuccessfulTime, the `batch.kubernetes.io/cronjob-scheduled-timestamp`
//! annotation, and the successful/failed history limits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;

use super::cron::Schedule;
use super::events::{self, Kind};
use super::pods;
use super::replicaset::ns_of;
use super::Ctx;
use crate::ControllerError;

const COMPONENT: &str = "cronjob-controller";
/// The scheduled time of a CronJob's Job (RFC 3339 in the CronJob's zone).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

fn finished(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

fn ts(t: &Time) -> Timestamp {
    t.0
}

fn to_time(t: Timestamp) -> Time {
    Time(t)
}

/// The Job's name for an activation (kube's `getJobName`: minutes since the epoch).
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second() / 60)
}

/// The most recent activation at or before `now` that has not been started, and how many
/// were missed (kube's `mostRecentScheduleTime`).
pub fn most_recent(
    sched: &Schedule,
    tz: &TimeZone,
    earliest: Timestamp,
    now: Timestamp,
) -> (Option<Timestamp>, u32) {
    let mut t = earliest;
    let mut last = None;
    let mut missed = 0;
    while let Some(n) = sched.next(t, tz) {
        if n > now {
            break;
        }
        last = Some(n);
        missed += 1;
        t = n;
        if missed > 10_000 {
            break;
        }
    }
    (last, missed)
}

/// Reconciles one CronJob (kube's `syncCronJob` and `cleanupFinishedJobs`).
pub async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let ns = ns_of(&cj.metadata);
    let name = cj.metadata.name.clone().unwrap_or_default();
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    let prev = cj.status.clone().unwrap_or_default();
    let mut status = prev.clone();
    let job_api = Api::<Job>::namespaced(ctx.client.clone(), &ns);
    let jobs: Vec<Arc<Job>> = ctx
        .informers
        .jobs
        .state()
        .into_iter()
        .filter(|j| {
            j.metadata.namespace.as_deref() == Some(ns.as_str())
                && pods::controller_of(&j.metadata).is_some_and(|c| c.uid == uid)
        })
        .collect();
    let mut active: Vec<ObjectReference> = status.active.clone().unwrap_or_default();
    for j in &jobs {
        let juid = j.metadata.uid.clone().unwrap_or_default();
        let jname = j.metadata.name.clone().unwrap_or_default();
        let found = active
            .iter()
            .any(|a| a.uid.as_deref() == Some(juid.as_str()));
        match finished(j) {
            Some(cond) if found => {
                active.retain(|a| a.uid.as_deref() != Some(juid.as_str()));
                events::record(
                    &ctx.client,
                    COMPONENT,
                    cj.as_ref(),
                    Kind::Normal,
                    "SawCompletedJob",
                    format!("Saw completed job: {jname}, condition: {cond}"),
                )
                .await;
            }
            None if !found => {
                events::record(
                    &ctx.client,
                    COMPONENT,
                    cj.as_ref(),
                    Kind::Warning,
                    "UnexpectedJob",
                    format!("Saw a job that the controller did not create or forgot: {jname}"),
                )
                .await;
            }
            _ => {}
        }
        if finished(j) == Some("Complete") {
            if let Some(done) = j.status.as_ref().and_then(|s| s.completion_time.clone()) {
                if status
                    .last_successful_time
                    .as_ref()
                    .is_none_or(|t| ts(t) < ts(&done))
                {
                    status.last_successful_time = Some(done);
                }
            }
        }
    }
    let mut gone = Vec::new();
    for a in &active {
        if jobs.iter().any(|j| j.metadata.uid == a.uid) {
            continue;
        }
        let aname = a.name.clone().unwrap_or_default();
        if let Ok(None) = job_api.get_opt(&aname).await {
            events::record(
                &ctx.client,
                COMPONENT,
                cj.as_ref(),
                Kind::Normal,
                "MissingJob",
                format!("Active job went missing: {aname}"),
            )
            .await;
            gone.push(a.uid.clone());
        }
    }
    active.retain(|a| !gone.contains(&a.uid));

    let mut requeue = None;
    if cj.metadata.deletion_timestamp.is_none() {
        requeue = schedule(&ctx, &cj, &job_api, &mut status, &mut active).await?;
    }
    status.active = (!active.is_empty()).then_some(active);
    if status != prev {
        let mut new = (*cj).clone();
        new.status = Some(status);
        Api::<CronJob>::namespaced(ctx.client.clone(), &ns)
            .replace_status(&name, &PostParams::default(), &new)
            .await
            .map_err(|e| {
                ControllerError::api(format!("updating the status of cronjob {name}"), e)
            })?;
    }
    cleanup(&ctx, &cj, &job_api, &jobs).await;
    Ok(match requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

/// Starts the Job of the most recent activation if due; returns when to look again.
async fn schedule(
    ctx: &Ctx,
    cj: &CronJob,
    job_api: &Api<Job>,
    status: &mut k8s_openapi::api::batch::v1::CronJobStatus,
    active: &mut Vec<ObjectReference>,
) -> Result<Option<Duration>, ControllerError> {
    let spec = cj.spec.clone().unwrap_or_default();
    let name = cj.metadata.name.clone().unwrap_or_default();
    let warn = |reason: &'static str, msg: String| async move {
        events::record(&ctx.client, COMPONENT, cj, Kind::Warning, reason, msg).await;
    };
    let tz = match &spec.time_zone {
        Some(z) => match TimeZone::get(z) {
            Ok(tz) => tz,
            Err(e) => {
                warn("UnknownTimeZone", format!("invalid timeZone: {z:?}: {e}")).await;
                return Ok(None);
            }
        },
        None => TimeZone::system(),
    };
    if spec.suspend == Some(true) {
        return Ok(None);
    }
    let sched = match Schedule::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            warn(
                "UnparseableSchedule",
                format!("unparseable schedule: {:?} : {e}", spec.schedule),
            )
            .await;
            return Ok(None);
        }
    };
    let now = pods::now();
    let next_in = |from: Timestamp| {
        sched.next(from, &tz).map(|n| {
            let secs = (n.as_nanosecond() - from.as_nanosecond()) as f64 / 1e9;
            Duration::from_secs_f64(secs.max(0.0) + 0.1)
        })
    };
    let mut earliest = status
        .last_schedule_time
        .as_ref()
        .or(cj.metadata.creation_timestamp.as_ref())
        .map(ts)
        .unwrap_or(now);
    if let Some(sds) = spec.starting_deadline_seconds {
        let deadline = Timestamp::from_second(now.as_second() - sds).unwrap_or(now);
        if deadline > earliest {
            earliest = deadline;
        }
    }
    let (scheduled, missed) = most_recent(&sched, &tz, earliest, now);
    if missed > 100 {
        warn(
            "TooManyMissedTimes",
            format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"),
        )
        .await;
    }
    let Some(scheduled) = scheduled else {
        return Ok(next_in(now));
    };
    if let Some(sds) = spec.starting_deadline_seconds {
        if scheduled.as_second() + sds < now.as_second() {
            let when = jiff::fmt::rfc2822::to_string(&scheduled.to_zoned(TimeZone::UTC))
                .unwrap_or_default();
            warn(
                "MissSchedule",
                format!("Missed scheduled time to start a job: {when}"),
            )
            .await;
            return Ok(next_in(now));
        }
    }
    let jname = job_name(&name, scheduled);
    if active
        .iter()
        .any(|a| a.name.as_deref() == Some(jname.as_str()))
        || status.last_schedule_time.as_ref().map(ts) == Some(scheduled)
    {
        return Ok(next_in(now));
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            events::record(
                &ctx.client,
                COMPONENT,
                cj,
                Kind::Normal,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            )
            .await;
            return Ok(next_in(now));
        }
        Some("Replace") => {
            for a in std::mem::take(active) {
                let aname = a.name.clone().unwrap_or_default();
                delete_job(ctx, cj, job_api, &aname).await;
            }
        }
        _ => {}
    }
    let template = spec.job_template;
    let tm = template.metadata.unwrap_or_default();
    let mut annotations = tm.annotations.unwrap_or_default();
    let stamp = scheduled
        .to_zoned(tz.clone())
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string();
    let stamp = stamp.replace("+00:00", "Z");
    annotations.insert(SCHEDULED_TIMESTAMP.into(), stamp);
    let job = Job {
        metadata: ObjectMeta {
            name: Some(jname.clone()),
            namespace: cj.metadata.namespace.clone(),
            labels: tm
                .labels
                .or_else(|| Some(BTreeMap::new()))
                .filter(|l| !l.is_empty()),
            annotations: Some(annotations),
            owner_references: Some(vec![pods::controller_ref(
                "batch/v1",
                "CronJob",
                &cj.metadata,
            )]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    };
    let created = match job_api.create(&PostParams::default(), &job).await {
        Ok(j) => j,
        Err(kube::Error::Api(s)) if s.code == 409 => return Ok(next_in(now)),
        Err(e) => {
            warn(
                "FailedCreate",
                format!("Error creating job: {}", barge_events::error_message(&e)),
            )
            .await;
            return Err(ControllerError::api(format!("creating job {jname}"), e));
        }
    };
    events::record(
        &ctx.client,
        COMPONENT,
        cj,
        Kind::Normal,
        "SuccessfulCreate",
        format!("Created job {jname}"),
    )
    .await;
    active.push(ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: created.metadata.name.clone(),
        namespace: created.metadata.namespace.clone(),
        uid: created.metadata.uid.clone(),
        resource_version: created.metadata.resource_version.clone(),
        ..Default::default()
    });
    status.last_schedule_time = Some(to_time(scheduled));
    Ok(next_in(now))
}

async fn delete_job(ctx: &Ctx, cj: &CronJob, api: &Api<Job>, name: &str) {
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {
            events::record(
                &ctx.client,
                COMPONENT,
                cj,
                Kind::Normal,
                "SuccessfulDelete",
                format!("Deleted job {name}"),
            )
            .await
        }
        Err(e) => tracing::debug!("{COMPONENT}: deleting job {name}: {e}"),
    }
}

/// kube's `cleanupFinishedJobs`: the oldest finished Jobs beyond the history limits go.
async fn cleanup(ctx: &Ctx, cj: &CronJob, api: &Api<Job>, jobs: &[Arc<Job>]) {
    let spec = cj.spec.clone().unwrap_or_default();
    for (kind, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut done: Vec<&Arc<Job>> = jobs
            .iter()
            .filter(|j| finished(j) == Some(kind) && j.metadata.deletion_timestamp.is_none())
            .collect();
        if done.len() as i64 <= i64::from(limit) {
            continue;
        }
        done.sort_by_key(|j| {
            (
                j.status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .map(|t| t.0.as_second())
                    .unwrap_or(i64::MAX),
                j.metadata.name.clone(),
            )
        });
        let n = done.len() - limit.max(0) as usize;
        for j in done.into_iter().take(n) {
            delete_job(ctx, cj, api, j.metadata.name.as_deref().unwrap_or_default()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_missed_activations() {
        let t: Timestamp = "2026-12-05T10:03:00Z".parse().unwrap();
        assert_eq!(
            job_name("hello", t),
            format!("hello-{}", t.as_second() / 60)
        );
        let s = Schedule::parse("*/1 * * * *").unwrap();
        let earliest: Timestamp = "2026-12-05T10:00:30Z".parse().unwrap();
        let (last, missed) = most_recent(&s, &TimeZone::UTC, earliest, t);
        assert_eq!(last, Some(t));
        assert_eq!(missed, 3);
        let (none, _) = most_recent(&s, &TimeZone::UTC, t, t);
        assert_eq!(none, None);
    }
}
