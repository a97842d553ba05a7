//! The Job controller (batch/v1), as upstream's (v1.33): runs pods from `spec.template` until
//! `completions` of them succeeded (each index once, for Indexed Jobs), at most `parallelism`
//! at a time, and reports active, ready, terminating, succeeded, failed, completedIndexes,
//! startTime, completionTime and the conditions `SuccessCriteriaMet`/`Complete`,
//! `FailureTarget`/`Failed` (BackoffLimitExceeded, DeadlineExceeded) and `Suspended`.
//!
//! reconcile(job) = `plan` (a pure function of the Job, its pods as the cache shows them, the
//! expectations and the clock) → delete pods → create pods → write status → record events →
//! delete the Job when its `ttlSecondsAfterFinished` has passed.
//!
//! Terminal conditions come in two steps, as upstream's: first the target condition
//! (`SuccessCriteriaMet` or `FailureTarget`), while the remaining active pods are deleted;
//! then, once no pod is active or terminating, `Complete` (with completionTime) or `Failed`.
//!
//! Not modelled (yet): pod failure policies, backoffLimitPerIndex, success policies,
//! podReplacementPolicy Failed, adoption of orphaned pods matching the selector, and the
//! `batch.kubernetes.io/job-tracking` finalizer: succeeded/failed are counted from the pods
//! the cache shows and never decrease, so a finished pod deleted by hand is not counted twice
//! but a pod deleted before its phase was seen is not counted at all.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::events::{EventType, Recorder};
use crate::informer::{Informer, controller_uid_index, split_key};
use crate::queue::{Action, WorkQueue};
use crate::util::{
    Expectations, claim, controller_ref, pod_from_template, pod_ready, sort_for_deletion,
};

/// Label and annotation naming an Indexed Job pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The value of `spec.managedBy` this controller manages (unset means the same).
const MANAGED_BY: &str = "kubernetes.io/job-controller";
/// At most this many pods are created or deleted by one reconcile (upstream's burst).
const BURST: usize = 500;
/// Pod re-creation after failures waits 10 s, doubling to at most 6 min (upstream's).
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(360);

#[derive(Clone)]
pub struct JobController {
    client: Client,
    jobs: Informer<Job>,
    pods: Informer<Pod>,
    queue: WorkQueue,
    expectations: Expectations,
    written: Written<Job>,
    recorder: Recorder,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Api(#[from] kube::Error),
}

/// The objects a controller last wrote, by key: a reconcile triggered before the watch
/// delivers a controller's own status write reads the written object instead of the stale
/// cached one, so it cannot repeat a transition (and its event). Entries go once the cache
/// is as new (resourceVersions are the store's revisions, compared as integers).
pub struct Written<K> {
    inner: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<K>>>>,
}

impl<K> Clone for Written<K> {
    fn clone(&self) -> Self {
        Written {
            inner: self.inner.clone(),
        }
    }
}

impl<K> Default for Written<K> {
    fn default() -> Self {
        Written {
            inner: Default::default(),
        }
    }
}

fn revision<K: kube::Resource>(obj: &K) -> Option<u64> {
    obj.meta().resource_version.as_deref()?.parse().ok()
}

impl<K: kube::Resource> Written<K> {
    pub fn wrote(&self, key: &str, obj: K) {
        self.inner
            .lock()
            .expect("written")
            .insert(key.to_owned(), Arc::new(obj));
    }

    pub fn forget(&self, key: &str) {
        self.inner.lock().expect("written").remove(key);
    }

    /// The newer of the cached object and the one last written (same uid only).
    pub fn newest(&self, key: &str, cached: Arc<K>) -> Arc<K> {
        let mut m = self.inner.lock().expect("written");
        let Some(w) = m.get(key) else {
            return cached;
        };
        match (revision(cached.as_ref()), revision(w.as_ref())) {
            (Some(c), Some(wr)) if wr > c && w.meta().uid == cached.meta().uid => w.clone(),
            _ => {
                m.remove(key);
                cached
            }
        }
    }
}

/// What the controller sees of a Job's pods.
pub struct Observed<'a> {
    /// Pods whose controller is the Job, in any state.
    pub pods: &'a [Arc<Pod>],
    /// Pods created that the cache does not show yet.
    pub pending_creates: usize,
    /// Pods deleted whose deletion the cache does not show yet.
    pub deleting: &'a HashSet<String>,
}

/// What one reconcile does.
#[derive(Debug, Default)]
pub struct Plan {
    /// One entry per pod to create: its completion index for Indexed Jobs.
    pub create: Vec<Option<i32>>,
    /// Names of pods to delete.
    pub delete: Vec<String>,
    /// The status to write (written only if it differs from the Job's).
    pub status: JobStatus,
    /// Events to record once the status is written.
    pub events: Vec<(EventType, &'static str, String)>,
    /// `ttlSecondsAfterFinished` has passed: delete the Job.
    pub delete_job: bool,
    /// Look again after this long (deadlines, back-off, TTL).
    pub requeue: Option<Duration>,
}

impl Plan {
    fn requeue_in(&mut self, d: Duration) {
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn terminal(p: &Pod) -> bool {
    matches!(phase(p), "Succeeded" | "Failed")
}

/// The completion index a pod carries (annotation, else label).
pub fn completion_index(p: &Pod) -> Option<i32> {
    p.annotations()
        .get(COMPLETION_INDEX)
        .or_else(|| p.labels().get(COMPLETION_INDEX))
        .and_then(|v| v.parse().ok())
        .filter(|i| *i >= 0)
}

/// When a pod finished: its containers' latest finishedAt, else its Ready condition's last
/// transition, else its creation.
fn finish_time(p: &Pod) -> Option<Timestamp> {
    let status = p.status.as_ref();
    let finished = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    finished
        .or_else(|| {
            status
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .and_then(|c| c.last_transition_time.as_ref())
                .map(|t| t.0)
        })
        .or_else(|| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn condition<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

fn condition_true(status: &JobStatus, type_: &str) -> bool {
    condition(status, type_).is_some_and(|c| c.status == "True")
}

fn new_condition(type_: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.to_owned(),
        status: "True".to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets a condition's status, reason and message; adds it only if `status` is "True".
/// Returns whether anything changed.
fn ensure_condition(
    st: &mut JobStatus,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let conds = st.conditions.get_or_insert_with(Vec::new);
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        if c.status == status
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message)
        {
            return false;
        }
        if c.status != status {
            c.last_transition_time = Some(Time(now));
        }
        c.status = status.to_owned();
        c.reason = Some(reason.to_owned());
        c.message = Some(message.to_owned());
        c.last_probe_time = Some(Time(now));
        return true;
    }
    if status != "True" {
        return false;
    }
    conds.push(new_condition(type_, reason, message, now));
    true
}

/// Parses a completedIndexes string ("0-2,4") into its indexes.
pub fn parse_indexes(s: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(v) = part.parse() {
                    out.insert(v);
                }
            }
        }
    }
    out
}

/// Renders indexes as upstream's range string: "0-2,4". Runs of two stay a list ("1,2").
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().expect("peeked");
        }
        match end - start {
            0 => parts.push(start.to_string()),
            1 => {
                parts.push(start.to_string());
                parts.push(end.to_string());
            }
            _ => parts.push(format!("{start}-{end}")),
        }
    }
    parts.join(",")
}

fn seconds_between(from: Timestamp, to: Timestamp) -> i64 {
    (to.as_millisecond() - from.as_millisecond()).div_euclid(1000)
}

fn duration_until(now: Timestamp, at_ms: i64) -> Duration {
    Duration::from_millis((at_ms - now.as_millisecond()).max(0) as u64)
}

/// When pod creation may resume after failures: consecutive failures since the last success
/// wait 10 s, 20 s, 40 s, ... up to 6 min after the latest failure.
fn backoff_remaining(pods: &[Arc<Pod>], now: Timestamp) -> Option<Duration> {
    let last_success = pods
        .iter()
        .filter(|p| phase(p) == "Succeeded")
        .filter_map(|p| finish_time(p))
        .max();
    let failures: Vec<Timestamp> = pods
        .iter()
        .filter(|p| phase(p) == "Failed")
        .filter_map(|p| finish_time(p))
        .filter(|t| last_success.is_none_or(|s| *t > s))
        .collect();
    let last = failures.iter().max()?;
    let n = failures.len().min(16) as u32;
    let delay = (BACKOFF_BASE * 2u32.pow(n - 1)).min(BACKOFF_MAX);
    let ready_at = last.as_millisecond() + delay.as_millis() as i64;
    (ready_at > now.as_millisecond()).then(|| duration_until(now, ready_at))
}

/// When the Job finished (Complete or Failed), if it has.
fn finished_at(st: &JobStatus) -> Option<Timestamp> {
    ["Complete", "Failed"]
        .iter()
        .filter_map(|t| condition(st, t).filter(|c| c.status == "True"))
        .map(|c| {
            st.completion_time
                .as_ref()
                .or(c.last_transition_time.as_ref())
                .map(|t| t.0)
        })
        .next()
        .map(|t| t.unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Decides what to do about a Job given its pods; see the module docs.
pub fn plan(job: &Job, obs: &Observed<'_>, now: Timestamp) -> Plan {
    let spec = job.spec.clone().unwrap_or_default();
    let old = job.status.clone().unwrap_or_default();
    let mut plan = Plan {
        status: old.clone(),
        ..Plan::default()
    };
    if job.metadata.deletion_timestamp.is_some()
        || spec.managed_by.as_deref().is_some_and(|m| m != MANAGED_BY)
    {
        return plan;
    }
    if let Some(done) = finished_at(&old) {
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            let expires = done.as_millisecond() + ttl.max(0) as i64 * 1000;
            if expires <= now.as_millisecond() {
                plan.delete_job = true;
            } else {
                plan.requeue_in(duration_until(now, expires));
            }
        }
        return plan;
    }

    let manage = obs.pending_creates == 0 && obs.deleting.is_empty();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions;
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let suspended = spec.suspend == Some(true);
    let deleting =
        |p: &Pod| p.metadata.deletion_timestamp.is_some() || obs.deleting.contains(&p.name_any());
    let active: Vec<&Arc<Pod>> = obs
        .pods
        .iter()
        .filter(|p| !terminal(p) && !deleting(p))
        .collect();
    let mut terminating = obs
        .pods
        .iter()
        .filter(|p| !terminal(p) && deleting(p))
        .count();
    let failed = (obs.pods.iter().filter(|p| phase(p) == "Failed").count() as i32)
        .max(old.failed.unwrap_or(0));
    let mut done_indexes = BTreeSet::new();
    let succeeded = if indexed {
        let c = completions.unwrap_or(0);
        done_indexes = parse_indexes(old.completed_indexes.as_deref().unwrap_or(""));
        done_indexes.extend(
            obs.pods
                .iter()
                .filter(|p| phase(p) == "Succeeded")
                .filter_map(|p| completion_index(p)),
        );
        done_indexes.retain(|i| *i < c);
        done_indexes.len() as i32
    } else {
        (obs.pods.iter().filter(|p| phase(p) == "Succeeded").count() as i32)
            .max(old.succeeded.unwrap_or(0))
    };
    let st = &mut plan.status;
    if st.start_time.is_none() && !suspended {
        st.start_time = Some(Time(now));
    }

    // The target terminal condition: already reached, or reached now.
    let mut target = if condition_true(st, "FailureTarget") {
        condition(st, "FailureTarget").map(|c| ("Failed", c.reason.clone(), c.message.clone()))
    } else if condition_true(st, "SuccessCriteriaMet") {
        condition(st, "SuccessCriteriaMet")
            .map(|c| ("Complete", c.reason.clone(), c.message.clone()))
    } else {
        None
    };
    if target.is_none() {
        let restarts: i32 = if spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            == Some("OnFailure")
        {
            active
                .iter()
                .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
                .flatten()
                .map(|c| c.restart_count)
                .sum()
        } else {
            0
        };
        let deadline_passed = !suspended
            && spec.active_deadline_seconds.is_some_and(|ads| {
                st.start_time
                    .as_ref()
                    .is_some_and(|s| seconds_between(s.0, now) >= ads)
            });
        let complete = match completions {
            _ if indexed => succeeded >= completions.unwrap_or(0),
            None => succeeded > 0 && active.is_empty(),
            Some(c) => succeeded >= c,
        };
        let (type_, reason, message) = if failed + restarts > backoff_limit {
            (
                "FailureTarget",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            )
        } else if deadline_passed {
            (
                "FailureTarget",
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            )
        } else if complete {
            (
                "SuccessCriteriaMet",
                "CompletionsReached",
                "Reached expected number of completions",
            )
        } else {
            ("", "", "")
        };
        if !type_.is_empty() {
            ensure_condition(st, type_, "True", reason, message, now);
            let final_type = if type_ == "FailureTarget" {
                "Failed"
            } else {
                "Complete"
            };
            target = Some((
                final_type,
                Some(reason.to_owned()),
                Some(message.to_owned()),
            ));
        }
    }

    let mut delete: Vec<String> = Vec::new();
    let mut create: Vec<Option<i32>> = Vec::new();
    if let Some((final_type, reason, message)) = target {
        // Finishing: remove what still runs, then declare the end.
        if manage {
            delete.extend(active.iter().map(|p| p.name_any()));
        }
        if active.is_empty() && terminating == 0 && obs.pending_creates == 0 {
            let reason = reason.unwrap_or_default();
            let message = message.unwrap_or_default();
            ensure_condition(st, final_type, "True", &reason, &message, now);
            if final_type == "Complete" {
                st.completion_time = Some(Time(now));
                plan.events
                    .push((EventType::Normal, "Completed", "Job completed".into()));
            } else {
                let reason: &'static str = match reason.as_str() {
                    "BackoffLimitExceeded" => "BackoffLimitExceeded",
                    "DeadlineExceeded" => "DeadlineExceeded",
                    _ => "Failed",
                };
                plan.events.push((EventType::Warning, reason, message));
            }
            if let Some(ttl) = spec.ttl_seconds_after_finished {
                plan.requeue = Some(Duration::from_secs(ttl.max(0) as u64));
                if ttl <= 0 {
                    plan.delete_job = true;
                }
            }
        }
    } else if suspended {
        if manage {
            delete.extend(active.iter().map(|p| p.name_any()));
        }
        if ensure_condition(
            st,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            now,
        ) {
            plan.events
                .push((EventType::Normal, "Suspended", "Job suspended".into()));
        }
    } else {
        if condition_true(st, "Suspended") {
            ensure_condition(st, "Suspended", "False", "JobResumed", "Job resumed", now);
            plan.events
                .push((EventType::Normal, "Resumed", "Job resumed".into()));
            // The deadline counts time active since the resume.
            st.start_time = Some(Time(now));
        }
        if let (Some(ads), Some(start)) = (spec.active_deadline_seconds, st.start_time.as_ref()) {
            let at = start.0.as_millisecond() + ads * 1000;
            plan.requeue = Some(duration_until(now, at).max(Duration::from_millis(10)));
        }
        if manage {
            let (d, c) = if indexed {
                manage_indexed(
                    &active,
                    &done_indexes,
                    completions.unwrap_or(0),
                    parallelism,
                )
            } else {
                manage_non_indexed(&active, completions, parallelism, succeeded)
            };
            delete = d;
            create = c;
            if !create.is_empty()
                && let Some(wait) = backoff_remaining(obs.pods, now)
            {
                create.clear();
                plan.requeue_in(wait);
            }
            create.truncate(BURST);
            delete.truncate(BURST);
        }
    }

    let deleted: HashSet<&String> = delete.iter().collect();
    let kept: Vec<&&Arc<Pod>> = active
        .iter()
        .filter(|p| !deleted.contains(&p.name_any()))
        .collect();
    terminating += delete.len();
    let active_count = (kept.len() + obs.pending_creates + create.len()) as i32;
    let ready = kept.iter().filter(|p| pod_ready(p)).count() as i32;
    let st = &mut plan.status;
    st.active = (active_count > 0).then_some(active_count);
    st.ready = Some(ready);
    st.terminating = Some(terminating as i32);
    st.succeeded = (succeeded > 0).then_some(succeeded);
    st.failed = (failed > 0).then_some(failed);
    if indexed {
        st.completed_indexes = (!done_indexes.is_empty()).then(|| format_indexes(&done_indexes));
    }
    plan.delete = delete;
    plan.create = create;
    plan
}

/// NonIndexed: keep `min(parallelism, completions - succeeded)` pods active (with no
/// completions: `parallelism` until one succeeds, then let the rest finish).
fn manage_non_indexed(
    active: &[&Arc<Pod>],
    completions: Option<i32>,
    parallelism: i32,
    succeeded: i32,
) -> (Vec<String>, Vec<Option<i32>>) {
    let n = active.len() as i32;
    let want = match completions {
        None if succeeded > 0 => n,
        None => parallelism,
        Some(c) => (c - succeeded).clamp(0, parallelism),
    };
    if n > want {
        let mut victims: Vec<Arc<Pod>> = active.iter().map(|p| (*p).clone()).collect();
        sort_for_deletion(&mut victims);
        let names = victims
            .iter()
            .take((n - want) as usize)
            .map(|p| p.name_any())
            .collect();
        (names, Vec::new())
    } else {
        (Vec::new(), vec![None; (want - n) as usize])
    }
}

/// Indexed: one active pod per pending index, lowest indexes first, at most `parallelism`;
/// pods of finished, out-of-range or duplicated indexes go.
fn manage_indexed(
    active: &[&Arc<Pod>],
    done: &BTreeSet<i32>,
    completions: i32,
    parallelism: i32,
) -> (Vec<String>, Vec<Option<i32>>) {
    let mut delete = Vec::new();
    let mut by_index: BTreeMap<i32, Vec<&Arc<Pod>>> = BTreeMap::new();
    for p in active {
        match completion_index(p) {
            Some(i) if i < completions && !done.contains(&i) => {
                by_index.entry(i).or_default().push(p)
            }
            _ => delete.push(p.name_any()),
        }
    }
    for pods in by_index.values_mut() {
        // Keep the oldest pod of an index.
        pods.sort_by_key(|p| (p.creation_timestamp().map(|t| t.0), p.name_any()));
        delete.extend(pods.iter().skip(1).map(|p| p.name_any()));
    }
    let want = (completions - done.len() as i32).clamp(0, parallelism) as usize;
    let kept = by_index.len();
    if kept > want {
        delete.extend(
            by_index
                .values()
                .rev()
                .take(kept - want)
                .map(|pods| pods[0].name_any()),
        );
        return (delete, Vec::new());
    }
    let create = (0..completions)
        .filter(|i| !done.contains(i) && !by_index.contains_key(i))
        .take(want - kept)
        .map(Some)
        .collect();
    (delete, create)
}

/// A merge patch turning `old` into `new`: fields `new` lacks become null.
fn status_patch(old: &JobStatus, new: &JobStatus) -> Value {
    let mut patch = serde_json::to_value(new).unwrap_or_else(|_| json!({}));
    if let (Value::Object(p), Ok(Value::Object(o))) = (&mut patch, serde_json::to_value(old)) {
        for k in o.keys() {
            if !p.contains_key(k) {
                p.insert(k.clone(), Value::Null);
            }
        }
    }
    patch
}

/// A pod for a Job: the template, owned by the Job; Indexed Jobs' pods carry their index (as
/// label, annotation and `JOB_COMPLETION_INDEX`) and the hostname `{job}-{index}`.
pub fn job_pod(job: &Job, index: Option<i32>) -> Pod {
    let ns = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let Some(i) = index else {
        return pod_from_template(&template, &ns, &name, &[], controller_ref(job));
    };
    let index = i.to_string();
    let mut pod = pod_from_template(
        &template,
        &ns,
        &format!("{name}-{index}"),
        &[(COMPLETION_INDEX, &index)],
        controller_ref(job),
    );
    pod.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(COMPLETION_INDEX.to_owned(), index.clone());
    if let Some(spec) = pod.spec.as_mut() {
        spec.hostname = Some(format!("{name}-{index}"));
        let env = EnvVar {
            name: "JOB_COMPLETION_INDEX".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                }),
                ..EnvVarSource::default()
            }),
        };
        for c in spec
            .init_containers
            .iter_mut()
            .flatten()
            .chain(spec.containers.iter_mut())
        {
            let vars = c.env.get_or_insert_with(Vec::new);
            if !vars.iter().any(|e| e.name == env.name) {
                vars.push(env.clone());
            }
        }
    }
    pod
}

impl JobController {
    /// Registers the controller's handlers; call before the informers run.
    pub fn new(client: Client, jobs: Informer<Job>, pods: Informer<Pod>) -> Self {
        let queue = WorkQueue::new();
        jobs.enqueue_changes(&queue);
        pods.enqueue_controllers(&queue, &jobs);
        pods.add_index("controller", controller_uid_index);
        JobController {
            recorder: Recorder::new(client.clone(), "job-controller"),
            client,
            jobs,
            pods,
            queue,
            expectations: Expectations::default(),
            written: Written::default(),
        }
    }

    pub async fn run(self, workers: usize) {
        self.jobs.wait_synced().await;
        self.pods.wait_synced().await;
        for key in self.jobs.keys() {
            self.queue.add(key);
        }
        let this = self.clone();
        self.queue
            .clone()
            .run("job", workers, move |key| {
                let this = this.clone();
                async move { this.reconcile(&key).await }
            })
            .await;
    }

    async fn reconcile(&self, key: &str) -> Result<Action, Error> {
        let Some(job) = self.jobs.get(key) else {
            self.expectations.forget(key);
            self.written.forget(key);
            return Ok(Action::Done);
        };
        let job = self.written.newest(key, job);
        let (ns, name) = split_key(key);
        let uid = job.uid().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        // Adopt matching orphans (finished ones too: they count), release pods whose labels
        // left the selector, as upstream's Job controller claims pods. The defaulted selector
        // is the Job's own controller-uid, so only `manualSelector` Jobs find orphans.
        let owned = claim(
            &pods,
            &controller_ref(job.as_ref()),
            job.metadata.deletion_timestamp.is_some(),
            job.spec.as_ref().and_then(|s| s.selector.as_ref()),
            self.pods.by_index("controller", &uid),
            self.pods.by_index("orphan", ns),
        )
        .await?
        .owned;
        let present: HashSet<String> = owned
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.name_any())
            .collect();
        let (pending_creates, deleting) = self.expectations.observe(key, &present);
        let plan = plan(
            &job,
            &Observed {
                pods: &owned,
                pending_creates,
                deleting: &deleting,
            },
            Timestamp::now(),
        );

        let results = join_all(plan.delete.iter().map(|n| {
            self.expectations.deleted(key, n);
            let pods = pods.clone();
            async move { pods.delete(n, &DeleteParams::default()).await }
        }))
        .await;
        for (r, n) in results.into_iter().zip(&plan.delete) {
            match r {
                Ok(_) => self.recorder.record(
                    job.as_ref(),
                    EventType::Normal,
                    "SuccessfulDelete",
                    &format!("Deleted pod: {n}"),
                ),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.create_pods(key, &job, &plan.create).await?;

        let old = job.status.clone().unwrap_or_default();
        if plan.status != old {
            let api: Api<Job> = Api::namespaced(self.client.clone(), ns);
            let patch = json!({"status": status_patch(&old, &plan.status)});
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(written) => self.written.wrote(key, written),
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::Done),
                Err(e) => return Err(e.into()),
            }
        }
        for (kind, reason, message) in &plan.events {
            self.recorder.record(job.as_ref(), *kind, reason, message);
        }
        if plan.delete_job {
            let api: Api<Job> = Api::namespaced(self.client.clone(), ns);
            let params = DeleteParams {
                propagation_policy: Some(kube::api::PropagationPolicy::Background),
                preconditions: Some(Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(Action::Done);
        }
        Ok(match plan.requeue {
            Some(d) => Action::RequeueAfter(d),
            None => Action::Done,
        })
    }

    /// Creates pods in slow-start batches (1, 2, 4, ...), stopping at the first failure.
    async fn create_pods(
        &self,
        key: &str,
        job: &Job,
        indexes: &[Option<i32>],
    ) -> Result<(), Error> {
        let (ns, _) = split_key(key);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let post = PostParams::default();
        let mut rest = indexes;
        let mut batch = 1;
        while !rest.is_empty() {
            let (now, later) = rest.split_at(batch.min(rest.len()));
            let results = join_all(now.iter().map(|i| {
                let pod = job_pod(job, *i);
                let api = api.clone();
                let post = post.clone();
                async move { api.create(&post, &pod).await }
            }))
            .await;
            let mut failure = None;
            for r in results {
                match r {
                    Ok(p) => {
                        self.expectations.created(key, &p.name_any());
                        self.recorder.record(
                            job,
                            EventType::Normal,
                            "SuccessfulCreate",
                            &format!("Created pod: {}", p.name_any()),
                        );
                    }
                    Err(e) => failure = Some(e),
                }
            }
            if let Some(e) = failure {
                if let kube::Error::Api(s) = &e {
                    self.recorder.record(
                        job,
                        EventType::Warning,
                        "FailedCreate",
                        &format!("Error creating: {}", s.message),
                    );
                }
                return Err(e.into());
            }
            rest = later;
            batch *= 2;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const NOW: &str = "2024-05-01T10:00:00Z";

    fn job(spec: Value, status: Value) -> Job {
        let mut spec = spec;
        spec["template"] = json!({"spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}});
        serde_json::from_value(json!({
            "metadata": {"name": "pi", "namespace": "default", "uid": "job-uid"},
            "spec": spec,
            "status": status,
        }))
        .unwrap()
    }

    fn pod(name: &str, phase: &str, index: Option<i32>) -> Arc<Pod> {
        let mut p = json!({
            "metadata": {"name": name, "namespace": "default",
                "creationTimestamp": "2024-05-01T09:00:00Z",
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "pi", "uid": "job-uid", "controller": true}]},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": phase},
        });
        if let Some(i) = index {
            p["metadata"]["annotations"] = json!({COMPLETION_INDEX: i.to_string()});
        }
        if phase == "Failed" || phase == "Succeeded" {
            p["status"]["containerStatuses"] = json!([{"name": "c", "image": "", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T09:59:55Z"}}}]);
        }
        Arc::new(serde_json::from_value(p).unwrap())
    }

    fn run(job: &Job, pods: &[Arc<Pod>]) -> Plan {
        plan(
            job,
            &Observed {
                pods,
                pending_creates: 0,
                deleting: &HashSet::new(),
            },
            ts(NOW),
        )
    }

    fn types(st: &JobStatus) -> Vec<String> {
        st.conditions
            .iter()
            .flatten()
            .filter(|c| c.status == "True")
            .map(|c| c.type_.clone())
            .collect()
    }

    #[test]
    fn starts_min_of_parallelism_and_remaining() {
        let j = job(json!({"completions": 5, "parallelism": 2}), json!({}));
        let p = run(&j, &[]);
        assert_eq!(p.create, vec![None, None]);
        assert_eq!(p.status.active, Some(2));
        assert_eq!(p.status.start_time, Some(Time(ts(NOW))));
        // Four succeeded, one running: nothing more to start.
        let pods: Vec<_> = (0..4)
            .map(|i| pod(&format!("s{i}"), "Succeeded", None))
            .chain([pod("r", "Running", None)])
            .collect();
        let p = run(&j, &pods);
        assert!(p.create.is_empty() && p.delete.is_empty());
        assert_eq!((p.status.succeeded, p.status.active), (Some(4), Some(1)));
        // Three succeeded, one running: one more.
        let p = run(&j, &pods[1..]);
        assert_eq!(p.create.len(), 1);
    }

    #[test]
    fn expectations_hold_back_creation() {
        let j = job(json!({"completions": 5, "parallelism": 2}), json!({}));
        let p = plan(
            &j,
            &Observed {
                pods: &[],
                pending_creates: 2,
                deleting: &HashSet::new(),
            },
            ts(NOW),
        );
        assert!(p.create.is_empty());
        assert_eq!(p.status.active, Some(2));
    }

    #[test]
    fn completes_in_two_steps() {
        let j = job(json!({"completions": 2, "parallelism": 2}), json!({}));
        let pods = [pod("a", "Succeeded", None), pod("b", "Succeeded", None)];
        let p = run(&j, &pods);
        assert_eq!(types(&p.status), ["SuccessCriteriaMet", "Complete"]);
        let complete = condition(&p.status, "Complete").unwrap();
        assert_eq!(complete.reason.as_deref(), Some("CompletionsReached"));
        assert_eq!(
            complete.message.as_deref(),
            Some("Reached expected number of completions")
        );
        assert_eq!(p.status.completion_time, Some(Time(ts(NOW))));
        assert_eq!(p.status.succeeded, Some(2));
        assert_eq!(p.status.active, None);
        assert_eq!(p.events[0].1, "Completed");
        // A finished Job is left alone.
        let done = job(
            json!({"completions": 2}),
            serde_json::to_value(&p.status).unwrap(),
        );
        let again = run(&done, &pods);
        assert_eq!(again.status, p.status);
        assert!(again.events.is_empty() && again.create.is_empty());
    }

    #[test]
    fn backoff_limit_fails_after_active_pods_are_gone() {
        let j = job(
            json!({"completions": 3, "parallelism": 2, "backoffLimit": 0}),
            json!({}),
        );
        let pods = [pod("a", "Failed", None), pod("b", "Running", None)];
        let p = run(&j, &pods);
        assert_eq!(types(&p.status), ["FailureTarget"]);
        assert_eq!(p.delete, ["b"]);
        assert!(p.create.is_empty());
        assert_eq!(p.status.terminating, Some(1));
        assert_eq!(p.status.failed, Some(1));
        // Next pass: b is gone.
        let j2 = job(
            json!({"completions": 3, "parallelism": 2, "backoffLimit": 0}),
            serde_json::to_value(&p.status).unwrap(),
        );
        let p2 = run(&j2, &pods[..1]);
        assert_eq!(types(&p2.status), ["FailureTarget", "Failed"]);
        let failed = condition(&p2.status, "Failed").unwrap();
        assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
        assert_eq!(
            failed.message.as_deref(),
            Some("Job has reached the specified backoff limit")
        );
        assert_eq!(p2.status.completion_time, None);
        assert_eq!(
            p2.events,
            [(
                EventType::Warning,
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit".to_string()
            )]
        );
    }

    #[test]
    fn failed_pods_are_replaced_after_a_backoff() {
        let j = job(json!({"completions": 1, "backoffLimit": 3}), json!({}));
        // Failed at 09:59:55: the first retry waits 10 s, until 10:00:05.
        let p = run(&j, &[pod("a", "Failed", None)]);
        assert!(p.create.is_empty());
        assert_eq!(p.requeue, Some(Duration::from_secs(5)));
        let p = plan(
            &j,
            &Observed {
                pods: &[pod("a", "Failed", None)],
                pending_creates: 0,
                deleting: &HashSet::new(),
            },
            ts("2024-05-01T10:00:06Z"),
        );
        assert_eq!(p.create, [None]);
    }

    #[test]
    fn active_deadline() {
        let j = job(
            json!({"completions": 1, "activeDeadlineSeconds": 30}),
            json!({"startTime": "2024-05-01T09:59:00Z"}),
        );
        let p = run(&j, &[pod("a", "Running", None)]);
        assert_eq!(types(&p.status), ["FailureTarget"]);
        assert_eq!(
            condition(&p.status, "FailureTarget")
                .unwrap()
                .reason
                .as_deref(),
            Some("DeadlineExceeded")
        );
        assert_eq!(p.delete, ["a"]);
        let j = job(
            json!({"completions": 1, "activeDeadlineSeconds": 90}),
            json!({"startTime": "2024-05-01T09:59:00Z"}),
        );
        let p = run(&j, &[pod("a", "Running", None)]);
        assert!(types(&p.status).is_empty());
        assert_eq!(p.requeue, Some(Duration::from_secs(30)));
    }

    #[test]
    fn indexed_jobs_run_each_index_once() {
        let j = job(
            json!({"completions": 5, "parallelism": 3, "completionMode": "Indexed"}),
            json!({}),
        );
        let pods = [
            pod("a", "Succeeded", Some(0)),
            pod("b", "Running", Some(1)),
            pod("b2", "Running", Some(1)),
            pod("c", "Succeeded", Some(2)),
            pod("d", "Running", Some(2)),
        ];
        let p = run(&j, &pods);
        assert_eq!(p.status.completed_indexes.as_deref(), Some("0,2"));
        assert_eq!(p.status.succeeded, Some(2));
        let mut delete = p.delete.clone();
        delete.sort();
        assert_eq!(delete, ["b2", "d"]);
        // Index 1 runs; want min(3, 5 - 2) = 3 active: start 3 and 4.
        assert_eq!(p.create, [Some(3), Some(4)]);
        let done: Vec<_> = (0..3)
            .map(|i| pod(&format!("p{i}"), "Succeeded", Some(i)))
            .collect();
        let j = job(
            json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
            json!({}),
        );
        let p = run(&j, &done);
        assert_eq!(p.status.completed_indexes.as_deref(), Some("0-2"));
        assert_eq!(types(&p.status), ["SuccessCriteriaMet", "Complete"]);
    }

    #[test]
    fn work_queue_jobs() {
        let j: Job = {
            let mut j = job(json!({"parallelism": 3}), json!({}));
            j.spec.as_mut().unwrap().completions = None;
            j
        };
        assert_eq!(run(&j, &[]).create.len(), 3);
        // One succeeded: no new pods, the others finish.
        let pods = [pod("a", "Succeeded", None), pod("b", "Running", None)];
        let p = run(&j, &pods);
        assert!(p.create.is_empty() && p.delete.is_empty());
        assert!(types(&p.status).is_empty());
        let p = run(&j, &pods[..1]);
        assert_eq!(types(&p.status), ["SuccessCriteriaMet", "Complete"]);
    }

    #[test]
    fn suspend_and_resume() {
        let j = job(
            json!({"completions": 3, "parallelism": 2, "suspend": true}),
            json!({}),
        );
        let p = run(&j, &[pod("a", "Running", None)]);
        assert_eq!(p.delete, ["a"]);
        assert!(p.create.is_empty());
        assert_eq!(types(&p.status), ["Suspended"]);
        assert_eq!(p.status.start_time, None);
        assert_eq!(p.events[0].1, "Suspended");
        let mut resumed = job(
            json!({"completions": 3, "parallelism": 2}),
            serde_json::to_value(&p.status).unwrap(),
        );
        resumed.spec.as_mut().unwrap().suspend = Some(false);
        let p = run(&resumed, &[]);
        assert_eq!(p.create.len(), 2);
        let c = condition(&p.status, "Suspended").unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("False", Some("JobResumed"))
        );
        assert_eq!(p.status.start_time, Some(Time(ts(NOW))));
    }

    #[test]
    fn ttl_after_finished() {
        let status = json!({"conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2024-05-01T09:59:00Z"}],
            "completionTime": "2024-05-01T09:59:00Z"});
        let j = job(json!({"ttlSecondsAfterFinished": 100}), status.clone());
        let p = run(&j, &[]);
        assert!(!p.delete_job);
        assert_eq!(p.requeue, Some(Duration::from_secs(40)));
        let j = job(json!({"ttlSecondsAfterFinished": 30}), status);
        assert!(run(&j, &[]).delete_job);
    }

    #[test]
    fn index_strings() {
        for (s, v) in [
            ("", vec![]),
            ("0", vec![0]),
            ("0-2,4", vec![0, 1, 2, 4]),
            ("1,2", vec![1, 2]),
            ("0-3,5,7-9", vec![0, 1, 2, 3, 5, 7, 8, 9]),
        ] {
            let set: BTreeSet<i32> = v.into_iter().collect();
            assert_eq!(parse_indexes(s), set, "{s}");
            assert_eq!(format_indexes(&set), s);
        }
    }

    #[test]
    fn indexed_pods_carry_their_index() {
        let j = job(
            json!({"completions": 3, "completionMode": "Indexed"}),
            json!({}),
        );
        let p = job_pod(&j, Some(2));
        assert_eq!(p.metadata.generate_name.as_deref(), Some("pi-2-"));
        assert_eq!(p.labels()[COMPLETION_INDEX], "2");
        assert_eq!(p.annotations()[COMPLETION_INDEX], "2");
        let spec = p.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
        assert!(
            spec.containers[0]
                .env
                .iter()
                .flatten()
                .any(|e| e.name == "JOB_COMPLETION_INDEX")
        );
        let p = job_pod(&j, None);
        assert_eq!(p.metadata.generate_name.as_deref(), Some("pi-"));
        assert_eq!(
            p.metadata.owner_references.unwrap()[0].kind,
            "Job".to_string()
        );
    }

    #[test]
    fn written_objects_win_until_the_cache_catches_up() {
        let at = |rv: &str, uid: &str| -> Arc<Job> {
            Arc::new(
                serde_json::from_value(
                    json!({"metadata": {"name": "pi", "resourceVersion": rv, "uid": uid}}),
                )
                .unwrap(),
            )
        };
        let w = Written::<Job>::default();
        assert_eq!(
            w.newest("k", at("5", "a"))
                .metadata
                .resource_version
                .as_deref(),
            Some("5")
        );
        w.wrote("k", (*at("7", "a")).clone());
        assert_eq!(
            w.newest("k", at("5", "a"))
                .metadata
                .resource_version
                .as_deref(),
            Some("7")
        );
        // A recreated object with the same name is not shadowed.
        assert_eq!(
            w.newest("k", at("6", "b"))
                .metadata
                .resource_version
                .as_deref(),
            Some("6")
        );
        w.wrote("k", (*at("7", "a")).clone());
        assert_eq!(
            w.newest("k", at("8", "a"))
                .metadata
                .resource_version
                .as_deref(),
            Some("8")
        );
        // Caught up: the entry is gone.
        assert_eq!(
            w.newest("k", at("5", "a"))
                .metadata
                .resource_version
                .as_deref(),
            Some("5")
        );
    }

    #[test]
    fn status_patches_remove_vanished_fields() {
        let old = JobStatus {
            active: Some(2),
            ..JobStatus::default()
        };
        let new = JobStatus {
            succeeded: Some(1),
            ..JobStatus::default()
        };
        assert_eq!(
            status_patch(&old, &new),
            json!({"active": null, "succeeded": 1})
        );
    }
}
