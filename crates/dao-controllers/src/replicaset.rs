//! The ReplicaSet controller: keeps `spec.replicas` active pods matching the template, and
//! reports replicas, fullyLabeledReplicas, readyReplicas, availableReplicas and
//! observedGeneration, as upstream's.
//!
//! reconcile(rs): owned active pods (the cache, corrected by expectations) vs. desired →
//! create in slow-start batches (1, 2, 4, ...) or delete the least valuable pods first; then
//! write status if it changed. Never called concurrently for one ReplicaSet.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::events::{EventType, Recorder};
use crate::informer::{Informer, controller_uid_index, split_key};
use crate::queue::{Action, WorkQueue};
use crate::util::{
    Expectations, claim, controller_ref, pod_active, pod_available, pod_from_template, pod_ready,
    selector_matches, sort_for_deletion,
};

/// At most this many pods are created or deleted by one reconcile (upstream's burst).
const BURST: usize = 500;

#[derive(Clone)]
pub struct ReplicaSetController {
    client: Client,
    replicasets: Informer<ReplicaSet>,
    pods: Informer<Pod>,
    queue: WorkQueue,
    expectations: Expectations,
    recorder: Recorder,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Api(#[from] kube::Error),
}

impl ReplicaSetController {
    /// Registers the controller's handlers; call before the informers run.
    pub fn new(client: Client, replicasets: Informer<ReplicaSet>, pods: Informer<Pod>) -> Self {
        let queue = WorkQueue::new();
        replicasets.enqueue_changes(&queue);
        pods.enqueue_controllers(&queue, &replicasets);
        pods.add_index("controller", controller_uid_index);
        pods.enqueue_adopters(&queue, &replicasets, |rs, pod| {
            selector_matches(rs.spec.as_ref().map(|s| &s.selector), pod.labels())
        });
        ReplicaSetController {
            recorder: Recorder::new(client.clone(), "replicaset-controller"),
            client,
            replicasets,
            pods,
            queue,
            expectations: Expectations::default(),
        }
    }

    pub async fn run(self, workers: usize) {
        self.replicasets.wait_synced().await;
        self.pods.wait_synced().await;
        for key in self.replicasets.keys() {
            self.queue.add(key);
        }
        let this = self.clone();
        self.queue
            .clone()
            .run("replicaset", workers, move |key| {
                let this = this.clone();
                async move { this.reconcile(&key).await }
            })
            .await;
    }

    async fn reconcile(&self, key: &str) -> Result<Action, Error> {
        let Some(rs) = self.replicasets.get(key) else {
            self.expectations.forget(key);
            return Ok(Action::Done);
        };
        let (ns, name) = split_key(key);
        let uid = rs.uid().unwrap_or_default();
        let spec = rs.spec.clone().unwrap_or_default();
        let owned: Vec<Arc<Pod>> = self.pods.by_index("controller", &uid);
        // Adopt matching active orphans; release pods whose labels no longer match.
        let orphans: Vec<Arc<Pod>> = self
            .pods
            .by_index("orphan", ns)
            .into_iter()
            .filter(|p| pod_active(p))
            .collect();
        let owned = claim(
            &Api::<Pod>::namespaced(self.client.clone(), ns),
            &controller_ref(rs.as_ref()),
            rs.metadata.deletion_timestamp.is_some(),
            Some(&spec.selector),
            owned,
            orphans,
        )
        .await?
        .owned;
        let active: Vec<Arc<Pod>> = owned.iter().filter(|p| pod_active(p)).cloned().collect();
        let names: HashSet<String> = active.iter().map(|p| p.name_any()).collect();
        let (pending_adds, deleting) = self.expectations.observe(key, &names);
        let mut candidates: Vec<Arc<Pod>> = active
            .iter()
            .filter(|p| !deleting.contains(&p.name_any()))
            .cloned()
            .collect();
        let desired = spec.replicas.unwrap_or(1).max(0) as usize;
        let current = candidates.len() + pending_adds;
        if rs.metadata.deletion_timestamp.is_none() {
            if current < desired {
                self.create_pods(key, &rs, (desired - current).min(BURST))
                    .await?;
            } else if current > desired && candidates.len() > desired.saturating_sub(pending_adds) {
                let n = (current - desired).min(BURST).min(candidates.len());
                sort_for_deletion(&mut candidates);
                let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
                let victims: Vec<Arc<Pod>> = candidates.into_iter().take(n).collect();
                let results = join_all(victims.iter().map(|p| {
                    self.expectations.deleted(key, &p.name_any());
                    let api = api.clone();
                    async move { api.delete(&p.name_any(), &DeleteParams::default()).await }
                }))
                .await;
                for (r, p) in results.into_iter().zip(&victims) {
                    match r {
                        Ok(_) => self.recorder.record(
                            rs.as_ref(),
                            EventType::Normal,
                            "SuccessfulDelete",
                            &format!("Deleted pod: {}", p.name_any()),
                        ),
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        // Status from what the cache shows.
        let now = chrono::Utc::now();
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let template_labels = spec
            .template
            .as_ref()
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let fully_labeled = active
            .iter()
            .filter(|p| {
                template_labels
                    .iter()
                    .all(|(k, v)| p.labels().get(k) == Some(v))
            })
            .count();
        let ready = active.iter().filter(|p| pod_ready(p)).count();
        let available = active
            .iter()
            .filter(|p| pod_available(p, min_ready, now))
            .count();
        let status = json!({
            "replicas": active.len(),
            "fullyLabeledReplicas": fully_labeled,
            "readyReplicas": ready,
            "availableReplicas": available,
            "observedGeneration": rs.metadata.generation,
        });
        let old = rs.status.as_ref();
        let unchanged = old.is_some_and(|o| {
            o.replicas as usize == active.len()
                && o.fully_labeled_replicas.unwrap_or(0) as usize == fully_labeled
                && o.ready_replicas.unwrap_or(0) as usize == ready
                && o.available_replicas.unwrap_or(0) as usize == available
                && o.observed_generation == rs.metadata.generation
        });
        if !unchanged {
            let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), ns);
            match api
                .patch_status(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"status": status})),
                )
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Pods that are ready but not yet available need a look when minReadySeconds pass.
        if min_ready > 0 && ready > available {
            return Ok(Action::RequeueAfter(Duration::from_secs(min_ready as u64)));
        }
        Ok(Action::Done)
    }

    async fn create_pods(&self, key: &str, rs: &ReplicaSet, count: usize) -> Result<(), Error> {
        let (ns, name) = split_key(key);
        let Some(template) = rs.spec.as_ref().and_then(|s| s.template.as_ref()) else {
            return Ok(());
        };
        if !selector_matches(
            rs.spec.as_ref().map(|s| &s.selector),
            &template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default(),
        ) {
            // The API server validates this for real ReplicaSets; do nothing for a broken one.
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let pod = pod_from_template(template, ns, name, &[], controller_ref(rs));
        let post = PostParams::default();
        let mut done = 0;
        let mut batch = 1;
        while done < count {
            let n = batch.min(count - done);
            let results = join_all((0..n).map(|_| api.create(&post, &pod))).await;
            let mut failure = None;
            for r in results {
                match r {
                    Ok(p) => {
                        self.expectations.created(key, &p.name_any());
                        self.recorder.record(
                            rs,
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
                        rs,
                        EventType::Warning,
                        "FailedCreate",
                        &format!("Error creating: {}", s.message),
                    );
                }
                return Err(e.into());
            }
            done += n;
            batch *= 2;
        }
        Ok(())
    }
}
