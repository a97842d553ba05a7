//! The scheduling queue: pending pods wait here until the scheduler tries them, modelled on
//! upstream's priority queue. Time is passed in, so tests drive it with made-up instants.
//!
//! Every pod is in exactly one place:
//! - *active*: ready to be tried, highest priority first, then longest waiting;
//! - *backoff*: failed recently, waits `initial * 2^(attempts-1)` (capped) after its last
//!   attempt before it returns to active ([`SchedulingQueue::pop`] moves those that are due);
//! - *unschedulable*: no node fitted; it waits for a cluster event
//!   ([`SchedulingQueue::move_all_to_active_or_backoff`]) or for the periodic flush
//!   ([`SchedulingQueue::flush_unschedulable_older_than`], upstream: 5 minutes);
//! - *gated*: has `spec.schedulingGates` and is not tried until an update removes them;
//! - *in flight*: popped and being scheduled; the runtime hands it back with
//!   [`SchedulingQueue::requeue_unschedulable`] or [`SchedulingQueue::requeue_error`], or
//!   calls [`SchedulingQueue::done`] after a successful bind.
//!
//! Two upstream rules keep wake-ups from being lost: a cluster event that arrives while a pod
//! is in flight, or an update to that pod, sends it to backoff/active instead of
//! unschedulable when it comes back. Updates that change neither spec, labels nor annotations
//! (the scheduler's own status writes, say) do not wake an unschedulable pod.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

type Key = (String, String);
type ActiveKey = (Reverse<i32>, Instant, u64);
type BackoffKey = (Instant, u64);

/// A pod handed out by the queue.
#[derive(Debug, Clone)]
pub struct QueuedPod {
    pub pod: Arc<Pod>,
    /// Failed scheduling attempts so far.
    pub attempts: u32,
    /// When the queue first saw the pod.
    pub first_seen: Instant,
    /// When the pod last entered the queue (or last failed); orders equal priorities and
    /// starts the backoff.
    pub timestamp: Instant,
    /// The scheduling cycle in which it was popped.
    cycle: u64,
}

impl QueuedPod {
    /// Namespace and name.
    pub fn key(&self) -> (String, String) {
        key_of(&self.pod)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active(ActiveKey),
    Backoff(BackoffKey),
    Unschedulable,
    Gated,
}

#[derive(Debug)]
struct Entry {
    pod: QueuedPod,
    place: Place,
}

#[derive(Debug, Default)]
struct InFlight {
    /// The newest version of the pod if it was updated while in flight.
    updated: Option<Arc<Pod>>,
}

/// Pending pods; see the module documentation.
#[derive(Debug)]
pub struct SchedulingQueue {
    initial_backoff: Duration,
    max_backoff: Duration,
    entries: HashMap<Key, Entry>,
    active: BTreeMap<ActiveKey, Key>,
    backoff: BTreeMap<BackoffKey, Key>,
    in_flight: HashMap<Key, InFlight>,
    seq: u64,
    scheduling_cycle: u64,
    move_request_cycle: Option<u64>,
}

fn key_of(pod: &Pod) -> Key {
    (
        pod.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

fn gated(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduling_gates.as_ref())
        .is_some_and(|g| !g.is_empty())
}

/// Whether an update could change the scheduling outcome (spec, labels or annotations).
fn meaningfully_updated(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec
        || old.metadata.labels != new.metadata.labels
        || old.metadata.annotations != new.metadata.annotations
}

impl SchedulingQueue {
    /// A queue with these backoff bounds (upstream: 1s and 10s).
    pub fn new(initial_backoff: Duration, max_backoff: Duration) -> Self {
        SchedulingQueue {
            initial_backoff,
            max_backoff,
            entries: HashMap::new(),
            active: BTreeMap::new(),
            backoff: BTreeMap::new(),
            in_flight: HashMap::new(),
            seq: 0,
            scheduling_cycle: 0,
            move_request_cycle: None,
        }
    }

    /// The wait after `attempts` failures: `initial * 2^(attempts-1)`, capped at the maximum.
    pub fn backoff_duration(&self, attempts: u32) -> Duration {
        if attempts == 0 {
            return Duration::ZERO;
        }
        let mut d = self.initial_backoff;
        for _ in 1..attempts {
            d = d.saturating_mul(2);
            if d >= self.max_backoff {
                return self.max_backoff;
            }
        }
        d.min(self.max_backoff)
    }

    /// Adds a new pending pod, or takes note of an update to one.
    pub fn add(&mut self, pod: &Pod, now: Instant) {
        let key = key_of(pod);
        let pod = Arc::new(pod.clone());
        if let Some(flight) = self.in_flight.get_mut(&key) {
            flight.updated = Some(pod);
            return;
        }
        let Some(mut entry) = self.take(&key) else {
            let queued = QueuedPod {
                pod,
                attempts: 0,
                first_seen: now,
                timestamp: now,
                cycle: 0,
            };
            let place = if gated(&queued.pod) {
                Place::Gated
            } else {
                self.active_place(&queued)
            };
            self.put(key, queued, place);
            return;
        };
        let old = std::mem::replace(&mut entry.pod.pod, pod);
        let place = if gated(&entry.pod.pod) {
            Place::Gated
        } else {
            match entry.place {
                Place::Active(_) => self.active_place(&entry.pod),
                Place::Backoff(k) => Place::Backoff(k),
                Place::Unschedulable if !meaningfully_updated(&old, &entry.pod.pod) => {
                    Place::Unschedulable
                }
                Place::Unschedulable => self.backoff_or_active(&entry.pod, now),
                Place::Gated => {
                    entry.pod.timestamp = now;
                    self.active_place(&entry.pod)
                }
            }
        };
        self.put(key, entry.pod, place);
    }

    /// Forgets a pod (deleted, or bound by someone else).
    pub fn delete(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        self.take(&key);
        self.in_flight.remove(&key);
    }

    /// Takes the next pod to schedule: first moves due backoff entries to active, then
    /// returns the highest-priority, longest-waiting active pod.
    pub fn pop(&mut self, now: Instant) -> Option<QueuedPod> {
        self.flush_backoff(now);
        let (_, key) = self.active.pop_first()?;
        let mut entry = self.entries.remove(&key)?;
        self.scheduling_cycle += 1;
        entry.pod.cycle = self.scheduling_cycle;
        self.in_flight.insert(key, InFlight::default());
        Some(entry.pod)
    }

    /// Marks an in-flight pod as done (bound); it leaves the queue for good.
    pub fn done(&mut self, namespace: &str, name: &str) {
        self.in_flight
            .remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// Hands back a pod no node fitted: it waits for a cluster event (or goes to backoff at
    /// once if one happened, or the pod changed, while it was in flight).
    pub fn requeue_unschedulable(&mut self, pod: QueuedPod, now: Instant) {
        self.requeue(pod, now, false);
    }

    /// Hands back a pod that failed for a transient reason (e.g. a bind conflict): it waits out
    /// its backoff and is tried again.
    pub fn requeue_error(&mut self, pod: QueuedPod, now: Instant) {
        self.requeue(pod, now, true);
    }

    fn requeue(&mut self, mut pod: QueuedPod, now: Instant, error: bool) {
        let key = pod.key();
        // Deleted while in flight, or handed back twice.
        let Some(flight) = self.in_flight.remove(&key) else {
            return;
        };
        if self.entries.contains_key(&key) {
            return;
        }
        pod.attempts = pod.attempts.saturating_add(1);
        pod.timestamp = now;
        let changed = flight.updated.is_some();
        if let Some(updated) = flight.updated {
            pod.pod = updated;
        }
        let moved = self.move_request_cycle.is_some_and(|c| c >= pod.cycle);
        let place = if gated(&pod.pod) {
            Place::Gated
        } else if error || changed || moved {
            self.backoff_or_active(&pod, now)
        } else {
            Place::Unschedulable
        };
        self.put(key, pod, place);
    }

    /// On a cluster event that may make pods schedulable (node added or changed, pod deleted):
    /// every unschedulable pod moves to backoff, or to active if its backoff is over.
    pub fn move_all_to_active_or_backoff(&mut self, now: Instant) {
        self.move_request_cycle = Some(self.scheduling_cycle);
        self.move_unschedulable(now, |_| true);
    }

    /// Moves pods that have been unschedulable for longer than `age` (upstream: 5 minutes).
    pub fn flush_unschedulable_older_than(&mut self, age: Duration, now: Instant) {
        self.move_unschedulable(now, |p| now.saturating_duration_since(p.timestamp) > age);
    }

    fn move_unschedulable(&mut self, now: Instant, select: impl Fn(&QueuedPod) -> bool) {
        let keys: Vec<Key> = self
            .entries
            .iter()
            .filter(|(_, e)| e.place == Place::Unschedulable && select(&e.pod))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            if let Some(entry) = self.take(&key) {
                let place = self.backoff_or_active(&entry.pod, now);
                self.put(key, entry.pod, place);
            }
        }
    }

    /// When the earliest backoff entry is due (`None` when nothing is backing off).
    pub fn next_ready_at(&self) -> Option<Instant> {
        self.backoff.first_key_value().map(|((at, _), _)| *at)
    }

    /// Pods waiting in the queue (active, backoff, unschedulable, gated; not in flight).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Pods ready to pop right now (without flushing backoff).
    pub fn active_len(&self) -> usize {
        self.active.len()
    }

    /// Pods waiting for a cluster event.
    pub fn unschedulable_len(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.place == Place::Unschedulable)
            .count()
    }

    /// Pods waiting out a backoff.
    pub fn backoff_len(&self) -> usize {
        self.backoff.len()
    }

    fn flush_backoff(&mut self, now: Instant) {
        while let Some(entry) = self.backoff.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            if let Some(e) = self.entries.remove(&key) {
                let place = self.active_place(&e.pod);
                self.put(key, e.pod, place);
            }
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn active_place(&mut self, pod: &QueuedPod) -> Place {
        Place::Active((Reverse(priority(&pod.pod)), pod.timestamp, self.next_seq()))
    }

    fn backoff_or_active(&mut self, pod: &QueuedPod, now: Instant) -> Place {
        let until = pod.timestamp + self.backoff_duration(pod.attempts);
        if until > now {
            Place::Backoff((until, self.next_seq()))
        } else {
            self.active_place(pod)
        }
    }

    /// Removes an entry from wherever it is.
    fn take(&mut self, key: &Key) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        match entry.place {
            Place::Active(k) => {
                self.active.remove(&k);
            }
            Place::Backoff(k) => {
                self.backoff.remove(&k);
            }
            Place::Unschedulable | Place::Gated => {}
        }
        Some(entry)
    }

    fn put(&mut self, key: Key, pod: QueuedPod, place: Place) {
        match place {
            Place::Active(k) => {
                self.active.insert(k, key.clone());
            }
            Place::Backoff(k) => {
                self.backoff.insert(k, key.clone());
            }
            Place::Unschedulable | Place::Gated => {}
        }
        self.entries.insert(key, Entry { pod, place });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{PodExt, pod};

    const S: Duration = Duration::from_secs(1);

    fn queue() -> SchedulingQueue {
        SchedulingQueue::new(S, 10 * S)
    }

    fn names(q: &mut SchedulingQueue, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(p) = q.pop(now) {
            out.push(p.key().1);
            q.done(&p.key().0, &p.key().1);
        }
        out
    }

    #[test]
    fn priority_then_fifo() {
        let t0 = Instant::now();
        let mut q = queue();
        q.add(&pod("d", "low-1", "", ""), t0);
        q.add(&pod("d", "high-1", "", "").priority(100), t0 + S);
        q.add(&pod("d", "low-2", "", ""), t0 + 2 * S);
        q.add(&pod("d", "high-2", "", "").priority(100), t0 + 3 * S);
        q.add(&pod("d", "neg", "", "").priority(-5), t0);
        q.add(&pod("d", "low-0", "", ""), t0);
        assert_eq!(q.len(), 6);
        assert_eq!(
            names(&mut q, t0 + 4 * S),
            ["high-1", "high-2", "low-1", "low-0", "low-2", "neg"]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn updates_keep_position_but_follow_priority() {
        let t0 = Instant::now();
        let mut q = queue();
        q.add(&pod("d", "a", "", ""), t0);
        q.add(&pod("d", "b", "", ""), t0 + S);
        q.add(&pod("d", "a", "", "").label("x", "y"), t0 + 2 * S);
        assert_eq!(q.len(), 2);
        q.add(&pod("d", "b", "", "").priority(5), t0 + 3 * S);
        assert_eq!(names(&mut q, t0 + 4 * S), ["b", "a"]);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let q = queue();
        let got: Vec<u64> = (0..8).map(|a| q.backoff_duration(a).as_secs()).collect();
        assert_eq!(got, [0, 1, 2, 4, 8, 10, 10, 10]);
        assert_eq!(q.backoff_duration(u32::MAX), 10 * S);
    }

    #[test]
    fn error_requeue_waits_out_the_backoff() {
        let t0 = Instant::now();
        let mut q = queue();
        q.add(&pod("d", "a", "", ""), t0);
        let mut now = t0;
        for (attempt, wait) in [(1u32, 1u64), (2, 2), (3, 4), (4, 8), (5, 10), (6, 10)] {
            let p = q.pop(now).expect("active");
            assert_eq!(p.attempts, attempt - 1);
            q.requeue_error(p, now);
            assert_eq!(q.next_ready_at(), Some(now + Duration::from_secs(wait)));
            assert!(
                q.pop(now + Duration::from_secs(wait) - Duration::from_millis(1))
                    .is_none()
            );
            now += Duration::from_secs(wait);
        }
        let p = q.pop(now).expect("due");
        assert_eq!(p.attempts, 6);
        assert_eq!(p.first_seen, t0);
    }

    #[test]
    fn unschedulable_waits_for_an_event() {
        let t0 = Instant::now();
        let mut q = queue();
        q.add(&pod("d", "a", "", ""), t0);
        let p = q.pop(t0).unwrap();
        q.requeue_unschedulable(p, t0);
        assert_eq!(q.unschedulable_len(), 1);
        assert!(q.pop(t0 + 100 * S).is_none());
        assert_eq!(q.next_ready_at(), None);
        // An event within the backoff sends it to backoff...
        q.move_all_to_active_or_backoff(t0 + S / 2);
        assert_eq!(q.backoff_len(), 1);
        assert_eq!(q.next_ready_at(), Some(t0 + S));
        assert!(q.pop(t0 + S / 2).is_none());
        let p = q.pop(t0 + S).unwrap();
        assert_eq!(p.attempts, 1);
        // ... and after it straight to active.
        q.requeue_unschedulable(p, t0 + 2 * S);
        q.move_all_to_active_or_backoff(t0 + 10 * S);
        assert_eq!(q.active_len(), 1);
    }

    #[test]
    fn periodic_flush_moves_old_unschedulable_pods() {
        let t0 = Instant::now();
        let mut q = queue();
        q.add(&pod("d", "old", "", ""), t0);
        q.add(&pod("d", "new", "", ""), t0);
        let old = q.pop(t0).unwrap();
        q.requeue_unschedulable(old, t0);
        let new = q.pop(t0).unwrap();
        q.requeue_unschedulable(new, t0 + 200 * S);
        q.flush_unschedulable_older_than(300 * S, t0 + 301 * S);
        assert_eq!(q.unschedulable_len(), 1);
        assert_eq!(names(&mut q, t0 + 301 * S), ["old"]);
    }

    #[test]
    fn event_during_flight_is_not_lost() {
        let t0 = Instant::now();
        let mut q = queue();
        q.add(&pod("d", "a", "", ""), t0);
        let p = q.pop(t0).unwrap();
        // A node is added while the pod is being scheduled against the old view.
        q.move_all_to_active_or_backoff(t0);
        q.requeue_unschedulable(p, t0);
        assert_eq!(q.unschedulable_len(), 0);
        assert_eq!(q.next_ready_at(), Some(t0 + S));
        // A later attempt with no event in between waits for one.
        let p = q.pop(t0 + S).unwrap();
        q.requeue_unschedulable(p, t0 + S);
        assert_eq!(q.unschedulable_len(), 1);
    }

    #[test]
    fn updates_and_deletes_during_flight() {
        let t0 = Instant::now();
        let mut q = queue();
        q.add(&pod("d", "a", "", ""), t0);
        let p = q.pop(t0).unwrap();
        q.add(&pod("d", "a", "", "").label("v", "2"), t0);
        assert!(q.is_empty(), "an in-flight pod is not queued twice");
        q.requeue_unschedulable(p, t0);
        assert_eq!(
            q.backoff_len(),
            1,
            "the update may help, so it goes to backoff"
        );
        let p = q.pop(t0 + S).unwrap();
        assert_eq!(p.pod.metadata.labels.as_ref().unwrap()["v"], "2");
        q.delete("d", "a");
        q.requeue_unschedulable(p, t0 + S);
        assert!(q.is_empty(), "deleted while in flight");
    }

    #[test]
    fn unschedulable_pods_wake_only_on_meaningful_updates() {
        let t0 = Instant::now();
        let mut q = queue();
        q.add(&pod("d", "a", "", ""), t0);
        let p = q.pop(t0).unwrap();
        q.requeue_unschedulable(p, t0);
        // A status-only update (e.g. the scheduler's own condition) leaves it waiting.
        q.add(
            &pod("d", "a", "", "").phase("Pending").nominated("n1"),
            t0 + 5 * S,
        );
        assert_eq!(q.unschedulable_len(), 1);
        q.add(
            &pod("d", "a", "", "").toleration("k", "Exists", "", ""),
            t0 + 5 * S,
        );
        assert_eq!(q.active_len(), 1);
    }

    #[test]
    fn gated_pods_wait_until_ungated() {
        let t0 = Instant::now();
        let mut q = queue();
        q.add(&pod("d", "a", "", "").scheduling_gate("wait"), t0);
        assert_eq!(q.len(), 1);
        assert!(q.pop(t0).is_none());
        q.move_all_to_active_or_backoff(t0);
        assert!(q.pop(t0).is_none());
        q.add(&pod("d", "a", "", ""), t0 + S);
        assert_eq!(names(&mut q, t0 + S), ["a"]);
    }

    #[test]
    fn delete_removes_from_every_place() {
        let t0 = Instant::now();
        let mut q = queue();
        q.add(&pod("d", "backoff", "", ""), t0);
        q.add(&pod("d", "unsched", "", ""), t0);
        let p = q.pop(t0).unwrap();
        q.requeue_error(p, t0);
        let p = q.pop(t0).unwrap();
        q.requeue_unschedulable(p, t0);
        q.add(&pod("d", "active", "", ""), t0);
        q.add(&pod("d", "gated", "", "").scheduling_gate("g"), t0);
        assert_eq!(
            (
                q.len(),
                q.active_len(),
                q.backoff_len(),
                q.unschedulable_len()
            ),
            (4, 1, 1, 1)
        );
        for name in ["active", "gated", "backoff", "unsched", "missing"] {
            q.delete("d", name);
        }
        assert!(q.is_empty());
        assert_eq!(q.next_ready_at(), None);
        assert!(q.pop(t0 + 100 * S).is_none());
    }
}
