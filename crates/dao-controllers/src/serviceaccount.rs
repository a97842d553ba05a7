//! The ServiceAccount controller: every active namespace has a `default` ServiceAccount,
//! recreated if deleted, as upstream's.

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::informer::{Change, Informer};
use crate::queue::{Action, WorkQueue};

#[derive(Clone)]
pub struct ServiceAccountController {
    client: Client,
    namespaces: Informer<Namespace>,
    accounts: Informer<ServiceAccount>,
    queue: WorkQueue,
}

impl ServiceAccountController {
    pub fn new(
        client: Client,
        namespaces: Informer<Namespace>,
        accounts: Informer<ServiceAccount>,
    ) -> Self {
        let queue = WorkQueue::new();
        let q = queue.clone();
        namespaces.on_change(move |c| {
            if let Change::Upsert { new, .. } = c {
                q.add(new.name_any());
            }
        });
        let q = queue.clone();
        accounts.on_change(move |c| {
            if let Change::Delete(old) = c
                && old.name_any() == "default"
            {
                q.add(old.namespace().unwrap_or_default());
            }
        });
        ServiceAccountController {
            client,
            namespaces,
            accounts,
            queue,
        }
    }

    pub async fn run(self) {
        self.namespaces.wait_synced().await;
        self.accounts.wait_synced().await;
        let this = self.clone();
        let reconcile = move |ns: String| {
            let this = this.clone();
            async move { this.reconcile(&ns).await }
        };
        crate::util::run_per_namespace(
            self.queue.clone(),
            "serviceaccount",
            &self.namespaces,
            reconcile,
        )
        .await;
    }

    async fn reconcile(&self, ns: &str) -> Result<Action, kube::Error> {
        let active = crate::util::namespace_active(&self.namespaces, ns);
        if !active || self.accounts.get(&format!("{ns}/default")).is_some() {
            return Ok(Action::Done);
        }
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
        let sa: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": "default", "namespace": ns}}))
                .expect("service account");
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => Ok(Action::Done),
            // Exists already, or the namespace is going away.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 || s.code == 404 => {
                Ok(Action::Done)
            }
            Err(e) => Err(e),
        }
    }
}
