//! Namespaces: the four that exist from the start, and the finalization that empties a
//! deleted namespace before removing it.

use std::sync::Arc;
use std::time::Duration;

use dao_store::{Expect, Outcome, RangeRequest, Store};
use serde_json::{Value, json};

use crate::registry::{self, RESOURCES};

pub const INITIAL: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/// The initial namespaces, as (key, object) for [`crate::api::seed`].
pub fn initial() -> Vec<(String, Value)> {
    let res = registry::find("", "v1", "namespaces").expect("namespaces registered");
    INITIAL
        .iter()
        .map(|name| {
            let obj = json!({
                "kind": "Namespace",
                "apiVersion": "v1",
                "metadata": {
                    "name": name,
                    "labels": {"kubernetes.io/metadata.name": name},
                },
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            });
            (res.key(None, name), obj)
        })
        .collect()
}

/// Empty a terminating namespace, then delete it. Objects with finalizers are marked for
/// deletion and waited for; the loop retries every second until the namespace is empty.
pub fn spawn_finalize(store: Arc<dyn Store>, namespace: String) {
    tokio::spawn(async move {
        loop {
            match finalize_once(&*store, &namespace).await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(namespace, error = %e, "namespace cleanup failed; retrying")
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// One pass; true when the namespace is gone.
async fn finalize_once(store: &dyn Store, namespace: &str) -> dao_store::Result<bool> {
    let mut remaining = 0;
    let mut seen = std::collections::HashSet::new();
    for res in RESOURCES.iter().filter(|r| r.namespaced) {
        let prefix = format!("{}{namespace}/", res.key_prefix());
        if !seen.insert(prefix.clone()) {
            continue;
        }
        for kv in store.range(RangeRequest::prefix(prefix)).await?.kvs {
            let Ok(mut obj) = serde_json::from_slice::<Value>(&kv.value) else {
                continue;
            };
            let has_finalizers = obj
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
            if has_finalizers {
                remaining += 1;
                if obj.pointer("/metadata/deletionTimestamp").is_none() {
                    obj["metadata"]["deletionTimestamp"] = json!(crate::managed::now());
                    store
                        .put(
                            &kv.key,
                            obj.to_string().into(),
                            Expect::ModRevision(kv.mod_revision),
                        )
                        .await?;
                }
            } else {
                match store
                    .delete(&kv.key, Expect::ModRevision(kv.mod_revision))
                    .await?
                {
                    Outcome::Rejected {
                        current: Some(_), ..
                    } => remaining += 1,
                    Outcome::Applied { .. } if res.plural == "services" => {
                        crate::services::release(store, &obj).await;
                    }
                    _ => {}
                }
            }
        }
    }
    if remaining > 0 {
        return Ok(false);
    }
    let ns = registry::find("", "v1", "namespaces").expect("namespaces registered");
    store.delete(&ns.key(None, namespace), Expect::Any).await?;
    Ok(true)
}
