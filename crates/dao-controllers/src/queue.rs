//! A rate-limited work queue of object keys, with client-go's guarantees: a key is queued at
//! most once, never processed by two workers at a time, and a key added while it is being
//! processed is processed again afterwards.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{Instrument, debug, info_span, warn};

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    queued: HashSet<String>,
    processing: HashSet<String>,
    again: HashSet<String>,
    failures: HashMap<String, u32>,
}

#[derive(Clone, Default)]
pub struct WorkQueue {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
}

/// What a reconcile asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Done,
    RequeueAfter(Duration),
}

impl WorkQueue {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut s = self.state.lock().expect("queue");
        if s.processing.contains(&key) {
            s.again.insert(key);
            return;
        }
        if s.queued.insert(key.clone()) {
            s.queue.push_back(key);
            drop(s);
            self.notify.notify_one();
        }
    }

    pub fn add_after(&self, key: impl Into<String>, after: Duration) {
        let key = key.into();
        if after.is_zero() {
            return self.add(key);
        }
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            q.add(key);
        });
    }

    async fn pop(&self) -> String {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.state.lock().expect("queue");
                if let Some(key) = s.queue.pop_front() {
                    s.queued.remove(&key);
                    s.processing.insert(key.clone());
                    if !s.queue.is_empty() {
                        self.notify.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    fn done(&self, key: &str) {
        let mut s = self.state.lock().expect("queue");
        s.processing.remove(key);
        if s.again.remove(key) && s.queued.insert(key.to_owned()) {
            s.queue.push_back(key.to_owned());
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Backoff for a failing key: 50 ms doubling to 30 s; reset on success.
    fn failed(&self, key: &str) -> Duration {
        let mut s = self.state.lock().expect("queue");
        let n = s.failures.entry(key.to_owned()).or_default();
        *n += 1;
        (Duration::from_millis(50) * 2u32.saturating_pow((*n - 1).min(10)))
            .min(Duration::from_secs(30))
    }

    fn succeeded(&self, key: &str) {
        self.state.lock().expect("queue").failures.remove(key);
    }

    pub fn len(&self) -> usize {
        self.state.lock().expect("queue").queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `workers` loops calling `reconcile` for each key until the task is dropped.
    pub async fn run<F, Fut, E>(self, name: &'static str, workers: usize, reconcile: F)
    where
        F: Fn(String) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send,
        E: std::fmt::Display + Send,
    {
        let mut tasks = Vec::new();
        for _ in 0..workers.max(1) {
            let q = self.clone();
            let reconcile = reconcile.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let key = q.pop().await;
                    let span = info_span!("reconcile", controller = name, object = %key);
                    let result = reconcile(key.clone()).instrument(span).await;
                    q.done(&key);
                    match result {
                        Ok(Action::Done) => q.succeeded(&key),
                        Ok(Action::RequeueAfter(d)) => {
                            q.succeeded(&key);
                            q.add_after(key, d);
                        }
                        Err(e) => {
                            let delay = q.failed(&key);
                            if delay >= Duration::from_secs(1) {
                                warn!(controller = name, object = %key, error = %e, "reconcile failed; retrying in {delay:?}");
                            } else {
                                debug!(controller = name, object = %key, error = %e, "reconcile failed; retrying in {delay:?}");
                            }
                            q.add_after(key, delay);
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dedups_and_reprocesses_keys_added_while_processing() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let k = q.pop().await;
        assert_eq!(k, "a");
        q.add("a"); // while processing
        assert_eq!(q.len(), 1);
        q.done("a");
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop().await, "b");
        assert_eq!(q.pop().await, "a");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let q = WorkQueue::new();
        assert_eq!(q.failed("k"), Duration::from_millis(50));
        assert_eq!(q.failed("k"), Duration::from_millis(100));
        for _ in 0..20 {
            q.failed("k");
        }
        assert_eq!(q.failed("k"), Duration::from_secs(30));
        q.succeeded("k");
        assert_eq!(q.failed("k"), Duration::from_millis(50));
    }
}
