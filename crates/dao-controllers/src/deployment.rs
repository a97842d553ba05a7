//! The Deployment controller: one ReplicaSet per pod template (named `{deployment}-{hash}`,
//! labelled `pod-template-hash`), rolled with RollingUpdate (maxSurge/maxUnavailable) or
//! Recreate, revision history in `deployment.kubernetes.io/revision` annotations, pause, and
//! upstream's status fields and Progressing/Available conditions, so that
//! `kubectl rollout status|history|undo|pause|resume|restart` work unchanged.
//!
//! reconcile(deployment), an idempotent function of the cache:
//! 1. find the owned ReplicaSets and the one whose template equals the Deployment's (new);
//! 2. unless paused, create the new one if missing (revision = max + 1) or bump its revision;
//! 3. scale: Recreate (old to 0, then new up), RollingUpdate (new up within maxSurge, old down
//!    while keeping `replicas - maxUnavailable` available), or plain scaling when not rolling;
//! 4. delete old ReplicaSets beyond revisionHistoryLimit; 5. write status and conditions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::events::{EventType, Recorder};
use crate::informer::{Informer, controller_of, controller_uid_index, split_key};
use crate::queue::{Action, WorkQueue};
use crate::util::{claim, controller_ref, int_or_percent, selector_matches, short_hash};

const REVISION: &str = "deployment.kubernetes.io/revision";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX: &str = "deployment.kubernetes.io/max-replicas";
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
const HASH_LABEL: &str = "pod-template-hash";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Api(#[from] kube::Error),
}

#[derive(Clone)]
pub struct DeploymentController {
    client: Client,
    deployments: Informer<Deployment>,
    replicasets: Informer<ReplicaSet>,
    queue: WorkQueue,
    recorder: Recorder,
}

fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn replicas_of(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn available_of(rs: &ReplicaSet) -> i32 {
    // Capped by spec: a ReplicaSet just scaled down may still report pods it is removing.
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
        .min(replicas_of(rs))
}

/// The template without the hash label, for comparing a ReplicaSet with its Deployment.
fn template_without_hash(t: Option<&PodTemplateSpec>) -> Value {
    let mut v = serde_json::to_value(t.cloned().unwrap_or_default()).unwrap_or(Value::Null);
    if let Some(labels) = v
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
        if labels.is_empty()
            && let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut)
        {
            m.remove("labels");
        }
    }
    if v.pointer("/metadata")
        .and_then(Value::as_object)
        .is_some_and(|m| m.is_empty())
        && let Some(o) = v.as_object_mut()
    {
        o.remove("metadata");
    }
    v
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl DeploymentController {
    pub fn new(
        client: Client,
        deployments: Informer<Deployment>,
        replicasets: Informer<ReplicaSet>,
    ) -> Self {
        let queue = WorkQueue::new();
        deployments.enqueue_changes(&queue);
        replicasets.enqueue_controllers(&queue, &deployments);
        replicasets.add_index("controller", controller_uid_index);
        replicasets.enqueue_adopters(&queue, &deployments, |d, rs| {
            selector_matches(d.spec.as_ref().map(|s| &s.selector), rs.labels())
        });
        DeploymentController {
            recorder: Recorder::new(client.clone(), "deployment-controller"),
            client,
            deployments,
            replicasets,
            queue,
        }
    }

    pub async fn run(self, workers: usize) {
        self.deployments.wait_synced().await;
        self.replicasets.wait_synced().await;
        for key in self.deployments.keys() {
            self.queue.add(key);
        }
        let this = self.clone();
        self.queue
            .clone()
            .run("deployment", workers, move |key| {
                let this = this.clone();
                async move { this.reconcile(&key).await }
            })
            .await;
    }

    async fn scale(
        &self,
        d: &Deployment,
        rs: &ReplicaSet,
        to: i32,
        max_surge: i32,
    ) -> Result<(), Error> {
        let from = replicas_of(rs);
        let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let want_annotations = |a: &BTreeMap<String, String>| {
            a.get(DESIRED) == Some(&desired.to_string())
                && a.get(MAX) == Some(&(desired + max_surge).to_string())
        };
        if from == to && want_annotations(rs.annotations()) {
            return Ok(());
        }
        let api: Api<ReplicaSet> =
            Api::namespaced(self.client.clone(), &rs.namespace().unwrap_or_default());
        let patch = json!({
            "metadata": {"annotations": {DESIRED: desired.to_string(), MAX: (desired + max_surge).to_string()}},
            "spec": {"replicas": to},
        });
        api.patch(
            &rs.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        if from != to {
            let verb = if to > from { "up" } else { "down" };
            self.recorder.record(
                d,
                EventType::Normal,
                "ScalingReplicaSet",
                &format!(
                    "Scaled {verb} replica set {} from {from} to {to}",
                    rs.name_any()
                ),
            );
        }
        Ok(())
    }

    async fn reconcile(&self, key: &str) -> Result<Action, Error> {
        let Some(d) = self.deployments.get(key) else {
            return Ok(Action::Done);
        };
        if d.metadata.deletion_timestamp.is_some() {
            return Ok(Action::Done);
        }
        let (ns, name) = split_key(key);
        let spec = d.spec.clone().unwrap_or_default();
        let replicas = spec.replicas.unwrap_or(1);
        let paused = spec.paused.unwrap_or(false);
        let uid = d.uid().unwrap_or_default();
        let owned: Vec<Arc<ReplicaSet>> = self.replicasets.by_index("controller", &uid);
        // Adopt matching orphaned ReplicaSets (a Deployment re-created after an orphaning
        // delete takes its old ones back); release those whose labels no longer match.
        let mut owned = claim(
            &Api::<ReplicaSet>::namespaced(self.client.clone(), ns),
            &controller_ref(d.as_ref()),
            false,
            Some(&spec.selector),
            owned,
            self.replicasets.by_index("orphan", ns),
        )
        .await?
        .owned;
        owned.sort_by_key(|rs| (revision_of(rs), rs.creation_timestamp()));
        let wanted = template_without_hash(Some(&spec.template));
        let mut new_rs: Option<Arc<ReplicaSet>> = owned
            .iter()
            .find(|rs| {
                template_without_hash(rs.spec.as_ref().and_then(|s| s.template.as_ref())) == wanted
            })
            .cloned();
        let old: Vec<Arc<ReplicaSet>> = owned
            .iter()
            .filter(|rs| Some(rs.uid()) != new_rs.as_ref().map(|n| n.uid()))
            .cloned()
            .collect();
        let max_old_revision = old.iter().map(|rs| revision_of(rs)).max().unwrap_or(0);
        let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
        let rolling = spec
            .strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref());
        let (mut max_surge, mut max_unavailable) = if recreate {
            (0, 0)
        } else {
            (
                int_or_percent(
                    rolling.and_then(|r| r.max_surge.as_ref()),
                    replicas,
                    true,
                    0,
                ),
                int_or_percent(
                    rolling.and_then(|r| r.max_unavailable.as_ref()),
                    replicas,
                    false,
                    0,
                ),
            )
        };
        if !recreate && max_surge == 0 && max_unavailable == 0 {
            max_unavailable = 1;
        }
        max_surge = max_surge.max(0);
        let mut progressing: Option<(&str, String)> = None;

        if !paused {
            // The new ReplicaSet: create it, or move it to the newest revision.
            let revision = max_old_revision + 1;
            match &new_rs {
                None => {
                    let old_running: i32 = old.iter().map(|rs| replicas_of(rs)).sum();
                    let start = if recreate && old_running > 0 {
                        0
                    } else if recreate {
                        replicas
                    } else {
                        // RollingUpdate: as many as the surge allows now.
                        let total: i32 = old.iter().map(|rs| replicas_of(rs)).sum();
                        (replicas + max_surge - total).clamp(0, replicas)
                    };
                    let rs = self
                        .create_replicaset(&d, ns, name, revision, start, replicas + max_surge)
                        .await?;
                    progressing = Some((
                        "NewReplicaSetCreated",
                        format!("Created new replica set \"{}\"", rs.name_any()),
                    ));
                    new_rs = Some(Arc::new(rs));
                }
                Some(rs) if revision_of(rs) < max_old_revision => {
                    // A rollback: the old template is new again and takes the next revision.
                    let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), ns);
                    let mut annotations = json!({REVISION: revision.to_string()});
                    if let Some(cause) = d.annotations().get(CHANGE_CAUSE) {
                        annotations[CHANGE_CAUSE] = json!(cause);
                    }
                    let updated = api
                        .patch(
                            &rs.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(&json!({"metadata": {"annotations": annotations}})),
                        )
                        .await?;
                    new_rs = Some(Arc::new(updated));
                }
                Some(_) => {}
            }
        }

        let new_replicas = new_rs.as_ref().map(|rs| replicas_of(rs)).unwrap_or(0);
        let old_replicas: i32 = old.iter().map(|rs| replicas_of(rs)).sum();
        let rolling_out = old_replicas > 0;
        if paused || !rolling_out {
            // Plain scaling: the active ReplicaSet follows the Deployment's replicas.
            if let Some(rs) = &new_rs {
                self.scale(&d, rs, replicas, max_surge).await?;
            }
            if paused {
                // Paused: old ReplicaSets keep their pods; proportional scaling is left out.
            }
        } else if recreate {
            for rs in &old {
                self.scale(&d, rs, 0, max_surge).await?;
            }
            let old_pods: i32 = old
                .iter()
                .map(|rs| rs.status.as_ref().map(|s| s.replicas).unwrap_or(0))
                .sum();
            if old_pods == 0
                && let Some(rs) = &new_rs
            {
                self.scale(&d, rs, replicas, max_surge).await?;
            }
        } else if let Some(new) = &new_rs {
            // RollingUpdate. Scale the new ReplicaSet up within the surge...
            let total: i32 = new_replicas + old_replicas;
            let mut new_target = new_replicas;
            if new_replicas > replicas {
                new_target = replicas;
            } else if new_replicas < replicas {
                let room = replicas + max_surge - total;
                if room > 0 {
                    new_target = new_replicas + room.min(replicas - new_replicas);
                }
            }
            if new_target != new_replicas {
                self.scale(&d, new, new_target, max_surge).await?;
            }
            // ...then the old ones down while `replicas - maxUnavailable` stay available.
            let min_available = replicas - max_unavailable;
            let new_unavailable = new_target - available_of(new);
            let all = new_target + old_replicas;
            let mut budget = all - min_available - new_unavailable;
            let mut old_sorted = old.clone();
            old_sorted.sort_by_key(|rs| (revision_of(rs), rs.creation_timestamp()));
            let mut targets: Vec<(Arc<ReplicaSet>, i32)> = old_sorted
                .iter()
                .map(|rs| (rs.clone(), replicas_of(rs)))
                .collect();
            // First the unhealthy replicas, which cost no availability...
            for (rs, target) in targets.iter_mut() {
                if budget <= 0 {
                    break;
                }
                let unhealthy = *target - available_of(rs);
                let n = unhealthy.min(budget).max(0);
                *target -= n;
                budget -= n;
            }
            // ...then available ones, as far as availability allows.
            let available: i32 = available_of(new)
                + targets
                    .iter()
                    .map(|(rs, t)| available_of(rs).min(*t))
                    .sum::<i32>();
            let mut allowed = (available - min_available).max(0);
            for (_, target) in targets.iter_mut() {
                if allowed <= 0 {
                    break;
                }
                let n = (*target).min(allowed);
                *target -= n;
                allowed -= n;
            }
            for (rs, target) in targets {
                if target != replicas_of(&rs) {
                    self.scale(&d, &rs, target, max_surge).await?;
                }
            }
        }

        // History: old ReplicaSets with no replicas beyond revisionHistoryLimit go.
        let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
        let empty_old: Vec<&Arc<ReplicaSet>> = old
            .iter()
            .filter(|rs| {
                replicas_of(rs) == 0
                    && rs.status.as_ref().map(|s| s.replicas).unwrap_or(0) == 0
                    && rs.metadata.deletion_timestamp.is_none()
            })
            .collect();
        if empty_old.len() > limit {
            let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), ns);
            for rs in &empty_old[..empty_old.len() - limit] {
                match api.delete(&rs.name_any(), &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }

        self.write_status(&d, new_rs.as_deref(), &old, max_unavailable, progressing)
            .await
    }

    async fn create_replicaset(
        &self,
        d: &Deployment,
        ns: &str,
        name: &str,
        revision: i64,
        replicas: i32,
        max: i32,
    ) -> Result<ReplicaSet, Error> {
        let spec = d.spec.clone().unwrap_or_default();
        let mut template = spec.template.clone();
        let hash = short_hash(
            serde_json::to_string(&template_without_hash(Some(&template)))
                .unwrap_or_default()
                .as_bytes(),
        );
        let meta = template.metadata.get_or_insert_with(Default::default);
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(HASH_LABEL.into(), hash.clone());
        let mut annotations = BTreeMap::from([
            (REVISION.to_owned(), revision.to_string()),
            (DESIRED.to_owned(), spec.replicas.unwrap_or(1).to_string()),
            (MAX.to_owned(), max.to_string()),
        ]);
        if let Some(cause) = d.annotations().get(CHANGE_CAUSE) {
            annotations.insert(CHANGE_CAUSE.into(), cause.clone());
        }
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {
                "name": format!("{name}-{hash}"),
                "namespace": ns,
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [controller_ref(d)],
            },
            "spec": {
                "replicas": replicas,
                "minReadySeconds": spec.min_ready_seconds.unwrap_or(0),
                "selector": selector,
                "template": template,
            },
        }))
        .expect("replica set is representable");
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), ns);
        let created = match api.create(&PostParams::default(), &rs).await {
            Ok(rs) => rs,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Ours from an earlier attempt whose answer we missed, or a hash collision.
                let existing = api.get(&rs.name_any()).await?;
                if existing.uid().is_some()
                    && controller_of(&existing).is_some_and(|o| Some(&o.uid) == d.uid().as_ref())
                {
                    existing
                } else {
                    return Err(kube::Error::Api(s).into());
                }
            }
            Err(e) => return Err(e.into()),
        };
        if replicas > 0 {
            self.recorder.record(
                d,
                EventType::Normal,
                "ScalingReplicaSet",
                &format!(
                    "Scaled up replica set {} from 0 to {replicas}",
                    created.name_any()
                ),
            );
        }
        Ok(created)
    }

    async fn write_status(
        &self,
        d: &Deployment,
        new_rs: Option<&ReplicaSet>,
        old: &[Arc<ReplicaSet>],
        max_unavailable: i32,
        progressing: Option<(&str, String)>,
    ) -> Result<Action, Error> {
        let spec = d.spec.clone().unwrap_or_default();
        let replicas = spec.replicas.unwrap_or(1);
        let all: Vec<&ReplicaSet> = new_rs
            .into_iter()
            .chain(old.iter().map(|r| r.as_ref()))
            .collect();
        let st = |f: fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> i32| -> i32 {
            all.iter().filter_map(|rs| rs.status.as_ref()).map(f).sum()
        };
        let total = st(|s| s.replicas);
        let ready = st(|s| s.ready_replicas.unwrap_or(0));
        let available = st(|s| s.available_replicas.unwrap_or(0));
        let updated = new_rs
            .and_then(|rs| rs.status.as_ref())
            .map(|s| s.replicas)
            .unwrap_or(0);
        let new_available = new_rs
            .and_then(|rs| rs.status.as_ref())
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        let old_pods: i32 = old
            .iter()
            .filter_map(|rs| rs.status.as_ref())
            .map(|s| s.replicas)
            .sum();
        let t = now();
        let previous =
            crate::util::conditions_json(d.status.as_ref().and_then(|s| s.conditions.as_ref()));
        let find = |kind: &str| previous.iter().find(|c| c["type"] == kind).cloned();
        let condition = |kind: &str, status: &str, reason: &str, message: &str| {
            let prev = find(kind);
            let same = prev.as_ref().is_some_and(|p| {
                p["status"] == status && p["reason"] == reason && p["message"] == message
            });
            let transition = prev
                .as_ref()
                .filter(|p| p["status"] == status)
                .map(|p| p["lastTransitionTime"].clone())
                .unwrap_or(json!(t));
            let update = if same {
                prev.as_ref()
                    .map(|p| p["lastUpdateTime"].clone())
                    .unwrap_or(json!(t))
            } else {
                json!(t)
            };
            json!({"type": kind, "status": status, "reason": reason, "message": message,
                   "lastUpdateTime": update, "lastTransitionTime": transition})
        };
        let available_cond = if available >= replicas - max_unavailable {
            condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            )
        } else {
            condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        };
        let rs_name = new_rs.map(|rs| rs.name_any()).unwrap_or_default();
        let complete =
            updated == replicas && new_available >= replicas && old_pods == 0 && total == updated;
        let paused = spec.paused.unwrap_or(false);
        let prev_progress = find("Progressing");
        let progressing_cond = if paused {
            condition(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused",
            )
        } else if prev_progress
            .as_ref()
            .is_some_and(|p| p["reason"] == "DeploymentPaused")
        {
            condition(
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed",
            )
        } else if complete {
            condition(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                &format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
            )
        } else if let Some((reason, message)) = &progressing {
            condition("Progressing", "True", reason, message)
        } else {
            // Progress deadline: no progress reported for progressDeadlineSeconds.
            let deadline = spec.progress_deadline_seconds.unwrap_or(600) as i64;
            let last = prev_progress
                .as_ref()
                .and_then(|p| p["lastUpdateTime"].as_str())
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
            let moved = d.status.as_ref().is_none_or(|s| {
                s.updated_replicas.unwrap_or(0) != updated
                    || s.available_replicas.unwrap_or(0) != available
                    || s.ready_replicas.unwrap_or(0) != ready
                    || s.replicas.unwrap_or(0) != total
            });
            match last {
                Some(l)
                    if !moved && (Utc::now() - l.with_timezone(&Utc)).num_seconds() > deadline =>
                {
                    condition(
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        &format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                    )
                }
                _ if moved || prev_progress.is_none() => condition(
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    &format!("ReplicaSet \"{rs_name}\" is progressing."),
                ),
                _ => prev_progress.clone().unwrap_or(Value::Null),
            }
        };
        let status = json!({
            "observedGeneration": d.metadata.generation,
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "unavailableReplicas": (replicas - available).max(0),
            "conditions": [available_cond, progressing_cond],
        });
        let mut current =
            serde_json::to_value(d.status.clone().unwrap_or_default()).unwrap_or(Value::Null);
        let mut wanted = status.clone();
        // Compare without zero/absent differences and without timestamps that always move.
        for v in [&mut current, &mut wanted] {
            if let Some(o) = v.as_object_mut() {
                o.retain(|_, x| !(x.is_null() || *x == json!(0)));
                o.remove("collisionCount");
            }
        }
        let mut meta_patch = json!({});
        if let Some(rs) = new_rs {
            let revision = rs.annotations().get(REVISION).cloned().unwrap_or_default();
            if d.annotations().get(REVISION) != Some(&revision) && !revision.is_empty() {
                meta_patch = json!({"metadata": {"annotations": {REVISION: revision}}});
            }
        }
        let (ns, name) = (d.namespace().unwrap_or_default(), d.name_any());
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
        if meta_patch != json!({}) {
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&meta_patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::Done),
                Err(e) => return Err(e.into()),
            }
        }
        if current != wanted {
            match api
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"status": status})),
                )
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::Done),
                Err(e) => return Err(e.into()),
            }
        }
        if !complete && !paused {
            // Re-check the progress deadline even if nothing else happens.
            return Ok(Action::RequeueAfter(Duration::from_secs(
                spec.progress_deadline_seconds.unwrap_or(600).max(1) as u64 + 1,
            )));
        }
        Ok(Action::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_compare_without_the_hash_label() {
        let t = |labels: Value| -> PodTemplateSpec {
            serde_json::from_value(json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "a", "image": "x"}]}})).unwrap()
        };
        assert_eq!(
            template_without_hash(Some(&t(json!({"app": "web", HASH_LABEL: "abc"})))),
            template_without_hash(Some(&t(json!({"app": "web"}))))
        );
        assert_ne!(
            template_without_hash(Some(&t(json!({"app": "web"})))),
            template_without_hash(Some(&t(json!({"app": "db"}))))
        );
    }
}
