//! The CronJob controller (batch/v1), as upstream's: at each time of `spec.schedule` it creates
//! a Job named `{cronjob}-{scheduled time in unix minutes}` from `spec.jobTemplate`, owned by
//! the CronJob, and keeps `status.active`, `lastScheduleTime` and `lastSuccessfulTime`.
//!
//! reconcile(cj): owned Jobs from the cache → drop finished and vanished Jobs from
//! `status.active` (SawCompletedJob, MissingJob) → unless suspended: the most recent missed
//! schedule time since lastScheduleTime (or creation), no older than startingDeadlineSeconds →
//! concurrencyPolicy (Allow; Forbid skips while a Job is active; Replace deletes active Jobs)
//! → create the Job → delete finished Jobs beyond the history limits, oldest first → write
//! status → requeue at the next schedule time.
//!
//! Time zones: `spec.timeZone` is read from the system's tz database (`dao_cron::time_zone`:
//! `$ZONEINFO`, then `/usr/share/zoneinfo`) and interpreted with jiff; a zone missing there is
//! reported as upstream does (`UnknownTimeZone`) and nothing is scheduled. Unset means UTC
//! (upstream: the controller manager's local zone, which is UTC in a normal deployment).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::jiff::tz::TimeZone;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::events::{EventType, Recorder};
use crate::informer::{Informer, controller_of, controller_uid_index, split_key};
use crate::job::Written;
use crate::queue::{Action, WorkQueue};
use crate::util::controller_ref;

pub use dao_cron::Schedule;

/// The annotation upstream puts on Jobs a CronJob creates: the scheduled time, RFC 3339 in
/// the CronJob's zone.
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// Schedule times further back than this are not searched for (upstream gives up after 100
/// missed times and reports TooManyMissedTimes; this bound keeps the search cheap).
const MAX_LOOKBACK_SECONDS: i64 = 5 * 366 * 24 * 3600;

#[derive(Clone)]
pub struct CronJobController {
    client: Client,
    cronjobs: Informer<CronJob>,
    jobs: Informer<Job>,
    queue: WorkQueue,
    written: Written<CronJob>,
    recorder: Recorder,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Api(#[from] kube::Error),
}

impl CronJobController {
    /// Registers the controller's handlers; call before the informers run.
    pub fn new(client: Client, cronjobs: Informer<CronJob>, jobs: Informer<Job>) -> Self {
        let queue = WorkQueue::new();
        cronjobs.enqueue_changes(&queue);
        jobs.enqueue_controllers(&queue, &cronjobs);
        jobs.add_index("controller", controller_uid_index);
        CronJobController {
            recorder: Recorder::new(client.clone(), "cronjob-controller"),
            client,
            cronjobs,
            jobs,
            queue,
            written: Written::default(),
        }
    }

    pub async fn run(self, workers: usize) {
        self.cronjobs.wait_synced().await;
        self.jobs.wait_synced().await;
        for key in self.cronjobs.keys() {
            self.queue.add(key);
        }
        let this = self.clone();
        self.queue
            .clone()
            .run("cronjob", workers, move |key| {
                let this = this.clone();
                async move { this.reconcile(&key).await }
            })
            .await;
    }

    async fn reconcile(&self, key: &str) -> Result<Action, Error> {
        let Some(cj) = self.cronjobs.get(key) else {
            self.written.forget(key);
            return Ok(Action::Done);
        };
        let cj = self.written.newest(key, cj);
        let (ns, name) = split_key(key);
        let now = Timestamp::now();
        let uid = cj.uid().unwrap_or_default();
        let old_status = cj.status.clone().unwrap_or_default();
        let jobs_api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let owned: Vec<Arc<Job>> = self.jobs.by_index("controller", &uid);

        // Reconcile status.active with the Jobs that exist.
        let mut active: Vec<ObjectReference> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        for r in old_status.active.iter().flatten() {
            let r_uid = r.uid.clone().unwrap_or_default();
            seen.insert(r_uid.clone());
            match owned
                .iter()
                .find(|j| j.uid().as_deref() == Some(r_uid.as_str()))
            {
                Some(j) => match finished_condition(j) {
                    Some(cond) => self.recorder.record(
                        cj.as_ref(),
                        EventType::Normal,
                        "SawCompletedJob",
                        &format!("Saw completed job: {}, condition: {cond}", j.name_any()),
                    ),
                    None => active.push(job_reference(j)),
                },
                None => {
                    // Not in the cache: ask the API server before forgetting it (the watch
                    // may lag behind a Job this controller just created).
                    let job_name = r.name.clone().unwrap_or_default();
                    match jobs_api.get_opt(&job_name).await? {
                        Some(j) if j.uid().as_deref() == Some(r_uid.as_str()) => {
                            if finished_condition(&j).is_none() {
                                active.push(r.clone());
                            }
                        }
                        _ => self.recorder.record(
                            cj.as_ref(),
                            EventType::Normal,
                            "MissingJob",
                            &format!("Active job went missing: {job_name}"),
                        ),
                    }
                }
            }
        }
        // Unfinished Jobs we own that status does not list yet (a lost status write).
        for j in &owned {
            let j_uid = j.uid().unwrap_or_default();
            if !seen.contains(&j_uid)
                && finished_condition(j).is_none()
                && j.metadata.deletion_timestamp.is_none()
            {
                active.push(job_reference(j));
            }
        }
        let mut last_schedule = old_status.last_schedule_time.clone();
        let mut last_successful = old_status.last_successful_time.clone();
        for j in &owned {
            if finished_condition(j) == Some("Complete")
                && let Some(t) = j.status.as_ref().and_then(|s| s.completion_time.clone())
                && last_successful.as_ref().is_none_or(|l| l.0 < t.0)
            {
                last_successful = Some(t);
            }
        }

        let mut requeue = None;
        if cj.metadata.deletion_timestamp.is_none() {
            requeue = self
                .schedule(&cj, &jobs_api, now, &mut active, &mut last_schedule)
                .await?;
        }

        self.cleanup_history(&cj, &jobs_api, &owned).await?;

        active.sort_by(|a, b| a.name.cmp(&b.name));
        active.dedup_by(|a, b| a.uid == b.uid);
        let mut old_active = old_status.active.clone().unwrap_or_default();
        old_active.sort_by(|a, b| a.name.cmp(&b.name));
        let same_active = old_active.len() == active.len()
            && old_active
                .iter()
                .zip(&active)
                .all(|(a, b)| a.uid == b.uid && a.name == b.name);
        if !same_active
            || last_schedule != old_status.last_schedule_time
            || last_successful != old_status.last_successful_time
        {
            let status = json!({
                "active": if active.is_empty() { serde_json::Value::Null } else { json!(active) },
                "lastScheduleTime": last_schedule,
                "lastSuccessfulTime": last_successful,
            });
            let api: Api<CronJob> = Api::namespaced(self.client.clone(), ns);
            match api
                .patch_status(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"status": status})),
                )
                .await
            {
                Ok(written) => self.written.wrote(key, written),
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::Done),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(match requeue {
            Some(d) => Action::RequeueAfter(d),
            None => Action::Done,
        })
    }

    /// Starts the Job of the most recent unmet schedule time, if any; returns when to look
    /// again.
    async fn schedule(
        &self,
        cj: &CronJob,
        jobs_api: &Api<Job>,
        now: Timestamp,
        active: &mut Vec<ObjectReference>,
        last_schedule: &mut Option<Time>,
    ) -> Result<Option<Duration>, Error> {
        let spec = cj.spec.clone().unwrap_or_default();
        let tz = match spec.time_zone.as_deref() {
            None => TimeZone::UTC,
            Some(zone) => match dao_cron::time_zone(zone) {
                Some(tz) => tz,
                None => {
                    self.recorder.record(
                        cj,
                        EventType::Warning,
                        "UnknownTimeZone",
                        &format!("invalid timeZone: {zone:?}: unknown time zone {zone}"),
                    );
                    return Ok(None);
                }
            },
        };
        if spec.suspend == Some(true) {
            return Ok(None);
        }
        let sched = match Schedule::parse(&spec.schedule, tz) {
            Ok(s) => s,
            Err(e) => {
                self.recorder.record(
                    cj,
                    EventType::Warning,
                    "UnparseableSchedule",
                    &format!("unparseable schedule: {:?} : {e}", spec.schedule),
                );
                return Ok(None);
            }
        };
        let created = cj
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(now);
        let earliest = earliest_time(
            created,
            last_schedule.as_ref().map(|t| t.0),
            spec.starting_deadline_seconds,
            now,
        );
        let requeue = next_requeue(&sched, now);
        let Some(scheduled) = most_recent_schedule(&sched, earliest, now) else {
            return Ok(requeue);
        };
        if let Some(deadline) = spec.starting_deadline_seconds
            && scheduled.as_second() + deadline < now.as_second()
        {
            self.recorder.record(
                cj,
                EventType::Warning,
                "MissSchedule",
                &format!(
                    "Missed scheduled time to start a job: {}",
                    rfc3339(scheduled, &sched.tz)
                ),
            );
            return Ok(requeue);
        }
        let job_name = job_name(&cj.name_any(), scheduled);
        if active
            .iter()
            .any(|r| r.name.as_deref() == Some(job_name.as_str()))
            || last_schedule.as_ref().is_some_and(|t| t.0 == scheduled)
        {
            return Ok(requeue);
        }
        match spec.concurrency_policy.as_deref() {
            Some("Forbid") if !active.is_empty() => {
                self.recorder.record(
                    cj,
                    EventType::Normal,
                    "JobAlreadyActive",
                    "Not starting job because prior execution is running and concurrency policy is Forbid",
                );
                return Ok(requeue);
            }
            Some("Replace") => {
                for r in std::mem::take(active) {
                    let n = r.name.clone().unwrap_or_default();
                    match jobs_api.delete(&n, &background(r.uid.clone())).await {
                        Ok(_) => self.recorder.record(
                            cj,
                            EventType::Normal,
                            "SuccessfulDelete",
                            &format!("Deleted job {n}"),
                        ),
                        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                        Err(e) => {
                            self.recorder.record(
                                cj,
                                EventType::Warning,
                                "FailedDelete",
                                &format!("Deleted job: {e}"),
                            );
                            return Err(e.into());
                        }
                    }
                }
            }
            _ => {}
        }
        let job = job_from_template(cj, &job_name, scheduled, &sched.tz);
        let created = match jobs_api.create(&PostParams::default(), &job).await {
            Ok(j) => {
                self.recorder.record(
                    cj,
                    EventType::Normal,
                    "SuccessfulCreate",
                    &format!("Created job {job_name}"),
                );
                j
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Created by an earlier pass whose status write the cache has not shown yet.
                let existing = jobs_api.get(&job_name).await?;
                let ours =
                    controller_of(&existing).is_some_and(|o| Some(&o.uid) == cj.uid().as_ref());
                if !ours {
                    return Ok(requeue);
                }
                existing
            }
            Err(e) => {
                if let kube::Error::Api(s) = &e {
                    self.recorder.record(
                        cj,
                        EventType::Warning,
                        "FailedCreate",
                        &format!("Error creating job: {}", s.message),
                    );
                }
                return Err(e.into());
            }
        };
        if finished_condition(&created).is_none() {
            active.push(job_reference(&created));
        }
        *last_schedule = Some(Time(scheduled));
        Ok(requeue)
    }

    /// Deletes finished Jobs beyond the history limits, oldest first.
    async fn cleanup_history(
        &self,
        cj: &CronJob,
        jobs_api: &Api<Job>,
        owned: &[Arc<Job>],
    ) -> Result<(), Error> {
        let spec = cj.spec.clone().unwrap_or_default();
        for (cond, limit) in [
            ("Complete", spec.successful_jobs_history_limit),
            ("Failed", spec.failed_jobs_history_limit),
        ] {
            let Some(limit) = limit else { continue };
            let mut finished: Vec<&Arc<Job>> = owned
                .iter()
                .filter(|j| {
                    j.metadata.deletion_timestamp.is_none() && finished_condition(j) == Some(cond)
                })
                .collect();
            let excess = finished.len().saturating_sub(limit.max(0) as usize);
            if excess == 0 {
                continue;
            }
            finished.sort_by_key(|j| job_start(j));
            for j in finished.into_iter().take(excess) {
                let n = j.name_any();
                match jobs_api.delete(&n, &background(j.uid())).await {
                    Ok(_) => self.recorder.record(
                        cj,
                        EventType::Normal,
                        "SuccessfulDelete",
                        &format!("Deleted job {n}"),
                    ),
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }
}

fn background(uid: Option<String>) -> DeleteParams {
    DeleteParams {
        propagation_policy: Some(kube::api::PropagationPolicy::Background),
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    }
}

/// When a Job started, for ordering the history: startTime, else creation.
fn job_start(j: &Job) -> (i64, String) {
    let t = j
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .or(j.metadata.creation_timestamp.as_ref())
        .map(|t| t.0.as_second())
        .unwrap_or(0);
    (t, j.name_any())
}

/// "Complete" or "Failed" when the Job has finished.
pub fn finished_condition(job: &Job) -> Option<&'static str> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    for (t, name) in [("Complete", "Complete"), ("Failed", "Failed")] {
        if conds.iter().any(|c| c.type_ == t && c.status == "True") {
            return Some(name);
        }
    }
    None
}

fn job_reference(j: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: j.metadata.name.clone(),
        namespace: j.metadata.namespace.clone(),
        uid: j.metadata.uid.clone(),
        resource_version: j.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

/// Upstream's Job name: the CronJob's name and the scheduled time in minutes since the epoch.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// The Job for one scheduled time: the template's labels, annotations and spec, owned by the
/// CronJob, annotated with the scheduled time.
pub fn job_from_template(cj: &CronJob, name: &str, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP_ANNOTATION.to_owned(),
        rfc3339(scheduled, tz),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: cj.namespace(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(cj)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// RFC 3339 in a zone, seconds precision, `Z` for UTC offsets (Go's `time.RFC3339`).
pub fn rfc3339(t: Timestamp, tz: &TimeZone) -> String {
    let dt = tz.to_datetime(t);
    let offset = tz.to_offset(t).seconds();
    let zone = if offset == 0 {
        "Z".to_owned()
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let o = offset.abs();
        format!("{sign}{:02}:{:02}", o / 3600, (o % 3600) / 60)
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{zone}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// Where the search for unmet schedule times starts: the last schedule time (else the
/// creation time), moved up to `now - startingDeadlineSeconds` when that is later.
pub fn earliest_time(
    created: Timestamp,
    last_schedule: Option<Timestamp>,
    starting_deadline_seconds: Option<i64>,
    now: Timestamp,
) -> Timestamp {
    let mut earliest = last_schedule.unwrap_or(created);
    if let Some(d) = starting_deadline_seconds
        && let Ok(limit) = Timestamp::from_second(now.as_second() - d)
        && limit > earliest
    {
        earliest = limit;
    }
    earliest
}

/// The latest schedule time in `(earliest, now]`, if any.
pub fn most_recent_schedule(
    sched: &Schedule,
    earliest: Timestamp,
    now: Timestamp,
) -> Option<Timestamp> {
    let first = sched.next(earliest)?;
    if first > now {
        return None;
    }
    // Search back from now in growing windows so a long gap costs few steps; each window's
    // scan starts at a time with few schedule times between it and `now`.
    let mut window = 3600;
    loop {
        let start_second = (now.as_second() - window).max(earliest.as_second());
        let start = Timestamp::from_second(start_second).ok()?.max(earliest);
        let mut last = None;
        let mut t = start;
        let mut steps = 0;
        while let Some(n) = sched.next(t) {
            if n > now {
                break;
            }
            last = Some(n);
            t = n;
            steps += 1;
            if steps > 100_000 {
                break;
            }
        }
        if last.is_some() || start == earliest || window > MAX_LOOKBACK_SECONDS {
            return last.or(Some(first));
        }
        window *= 8;
    }
}

/// How long until the next schedule time after `now` (plus a little slack, as upstream).
pub fn next_requeue(sched: &Schedule, now: Timestamp) -> Option<Duration> {
    let next = sched.next(now)?;
    let ms = (next.as_millisecond() - now.as_millisecond()).max(0) as u64 + 100;
    Some(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn every_minute() -> Schedule {
        Schedule::parse("* * * * *", TimeZone::UTC).unwrap()
    }

    #[test]
    fn most_recent_missed_time() {
        let s = every_minute();
        // Nothing due yet.
        assert_eq!(
            most_recent_schedule(&s, ts("2024-05-01T10:00:10Z"), ts("2024-05-01T10:00:50Z")),
            None
        );
        // One due.
        assert_eq!(
            most_recent_schedule(&s, ts("2024-05-01T10:00:10Z"), ts("2024-05-01T10:01:05Z")),
            Some(ts("2024-05-01T10:01:00Z"))
        );
        // Many missed: the latest.
        assert_eq!(
            most_recent_schedule(&s, ts("2023-01-01T00:00:00Z"), ts("2024-05-01T10:01:05Z")),
            Some(ts("2024-05-01T10:01:00Z"))
        );
        let monthly = Schedule::parse("@monthly", TimeZone::UTC).unwrap();
        assert_eq!(
            most_recent_schedule(
                &monthly,
                ts("2022-01-15T00:00:00Z"),
                ts("2024-05-01T10:01:05Z")
            ),
            Some(ts("2024-05-01T00:00:00Z"))
        );
    }

    #[test]
    fn starting_deadline_moves_the_search_start() {
        let created = ts("2024-05-01T00:00:00Z");
        let now = ts("2024-05-01T10:00:30Z");
        assert_eq!(earliest_time(created, None, None, now), created);
        assert_eq!(
            earliest_time(created, None, Some(60), now),
            ts("2024-05-01T09:59:30Z")
        );
        assert_eq!(
            earliest_time(created, Some(ts("2024-05-01T09:59:50Z")), Some(60), now),
            ts("2024-05-01T09:59:50Z")
        );
    }

    #[test]
    fn names_and_timestamps() {
        let t = ts("2024-05-01T10:01:00Z");
        assert_eq!(
            job_name("hello", t),
            format!("hello-{}", t.as_second() / 60)
        );
        assert_eq!(rfc3339(t, &TimeZone::UTC), "2024-05-01T10:01:00Z");
        let tz = TimeZone::fixed(k8s_openapi::jiff::tz::offset(-5));
        assert_eq!(rfc3339(t, &tz), "2024-05-01T05:01:00-05:00");
        assert_eq!(
            next_requeue(&every_minute(), ts("2024-05-01T10:00:30Z")),
            Some(Duration::from_millis(30_100))
        );
    }

    #[test]
    fn jobs_from_the_template() {
        let cj: CronJob = serde_json::from_value(json!({
            "metadata": {"name": "hello", "namespace": "ns", "uid": "u1"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {
                "metadata": {"labels": {"a": "b"}, "annotations": {"x": "y"}},
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}}}
            }}
        }))
        .unwrap();
        let t = ts("2024-05-01T10:01:00Z");
        let job = job_from_template(&cj, &job_name("hello", t), t, &TimeZone::UTC);
        assert_eq!(job.metadata.name.as_deref(), Some("hello-28575961"));
        assert_eq!(job.metadata.labels.unwrap()["a"], "b");
        let ann = job.metadata.annotations.unwrap();
        assert_eq!(ann["x"], "y");
        assert_eq!(ann[SCHEDULED_TIMESTAMP_ANNOTATION], "2024-05-01T10:01:00Z");
        let owner = &job.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("CronJob", "u1", Some(true))
        );
        assert!(job.spec.is_some());
    }
}
