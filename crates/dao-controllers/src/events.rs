//! Events as upstream components record them (core/v1 `Event`), with repeated events folded
//! into one whose `count` grows, so `kubectl describe` shows the same lines as upstream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{SecondsFormat, Utc};
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::debug;

/// (object uid, reason, message).
type SeenKey = (String, String, String);
/// (event namespace, event name, count).
type Recorded = (String, String, i32);

#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: String,
    /// (object uid, reason, message) → (event namespace, event name, count).
    seen: Arc<Mutex<HashMap<SeenKey, Recorded>>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl Recorder {
    pub fn new(client: Client, component: &str) -> Self {
        Recorder {
            client,
            component: component.to_owned(),
            seen: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Records an event about `obj` in the background; failures are logged, never returned.
    pub fn record<K>(&self, obj: &K, kind: EventType, reason: &str, message: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        let involved = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "name": obj.name_any(),
            "namespace": obj.namespace(),
            "uid": obj.uid(),
            "resourceVersion": obj.resource_version(),
        });
        let namespace = obj.namespace().unwrap_or_else(|| "default".into());
        let uid = obj.uid().unwrap_or_default();
        let name = obj.name_any();
        let this = self.clone();
        let (reason, message) = (reason.to_owned(), message.to_owned());
        tokio::spawn(async move {
            this.emit(namespace, name, uid, involved, kind, reason, message)
                .await
        });
    }

    #[allow(clippy::too_many_arguments)] // one call site; a struct would only rename these
    async fn emit(
        &self,
        namespace: String,
        name: String,
        uid: String,
        involved: serde_json::Value,
        kind: EventType,
        reason: String,
        message: String,
    ) {
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let key = (uid, reason.clone(), message.clone());
        let previous = self.seen.lock().expect("events").get(&key).cloned();
        if let Some((ns, ev_name, count)) = previous
            && ns == namespace
        {
            let patch = json!({"count": count + 1, "lastTimestamp": now});
            if api
                .patch(&ev_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                self.seen
                    .lock()
                    .expect("events")
                    .insert(key, (ns, ev_name, count + 1));
                return;
            }
        }
        let ev_name = format!("{name}.{:016x}", rand::random::<u64>());
        let event: Event = match serde_json::from_value(json!({
            "metadata": {"name": ev_name, "namespace": namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": match kind { EventType::Normal => "Normal", EventType::Warning => "Warning" },
            "source": {"component": self.component},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "eventTime": null,
            "count": 1,
            "reportingComponent": self.component,
            "reportingInstance": "",
        })) {
            Ok(e) => e,
            Err(e) => {
                debug!(error = %e, "event not representable");
                return;
            }
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                let mut seen = self.seen.lock().expect("events");
                if seen.len() > 10_000 {
                    seen.clear();
                }
                seen.insert(key, (namespace, ev_name, 1));
            }
            Err(e) => debug!(error = %e, "recording an event failed"),
        }
    }
}
