//! The root CA publisher: every active namespace holds a ConfigMap `kube-root-ca.crt` whose
//! `ca.crt` is the bundle that verifies the API server, as upstream's root-ca-cert-publisher
//! keeps it. Pods read it through the projected volume ServiceAccount admission gives them. A
//! deleted or changed ConfigMap is put back.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};

use crate::informer::{Change, Informer};
use crate::queue::{Action, WorkQueue};

/// The ConfigMap's name in every namespace.
pub const NAME: &str = "kube-root-ca.crt";

/// The annotation that says what the ConfigMap is for, with upstream's text.
const DESCRIPTION_KEY: &str = "kubernetes.io/description";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

#[derive(Clone)]
pub struct RootCaPublisher {
    client: Client,
    namespaces: Informer<Namespace>,
    /// Only the ConfigMaps named [`NAME`] (the informer's watch selects on the name).
    configmaps: Informer<ConfigMap>,
    ca: String,
    queue: WorkQueue,
}

impl RootCaPublisher {
    pub fn new(
        client: Client,
        namespaces: Informer<Namespace>,
        configmaps: Informer<ConfigMap>,
        ca: String,
    ) -> Self {
        let queue = WorkQueue::new();
        let q = queue.clone();
        namespaces.on_change(move |c| {
            if let Change::Upsert { new, .. } = c {
                q.add(new.name_any());
            }
        });
        let q = queue.clone();
        configmaps.on_change(move |c| {
            let cm = match c {
                Change::Upsert { new, .. } => new,
                Change::Delete(old) => old,
            };
            if cm.name_any() == NAME {
                q.add(cm.namespace().unwrap_or_default());
            }
        });
        RootCaPublisher {
            client,
            namespaces,
            configmaps,
            ca,
            queue,
        }
    }

    /// The field selector of the ConfigMap informer this controller needs.
    pub fn selector() -> String {
        format!("metadata.name={NAME}")
    }

    pub async fn run(self) {
        self.namespaces.wait_synced().await;
        self.configmaps.wait_synced().await;
        let this = self.clone();
        let reconcile = move |ns: String| {
            let this = this.clone();
            async move { this.reconcile(&ns).await }
        };
        crate::util::run_per_namespace(
            self.queue.clone(),
            "root-ca-cert-publisher",
            &self.namespaces,
            reconcile,
        )
        .await;
    }

    fn wanted(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("ca.crt".to_owned(), self.ca.clone())])
    }

    async fn reconcile(&self, ns: &str) -> Result<Action, kube::Error> {
        let active = crate::util::namespace_active(&self.namespaces, ns);
        if !active {
            return Ok(Action::Done);
        }
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        let data = self.wanted();
        let result = match self.configmaps.get(&format!("{ns}/{NAME}")) {
            None => {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(NAME.into()),
                        annotations: Some(BTreeMap::from([(
                            DESCRIPTION_KEY.to_owned(),
                            DESCRIPTION.to_owned(),
                        )])),
                        ..ObjectMeta::default()
                    },
                    data: Some(data),
                    ..ConfigMap::default()
                };
                api.create(&PostParams::default(), &cm).await.map(drop)
            }
            Some(cm) => {
                let described = cm
                    .annotations()
                    .get(DESCRIPTION_KEY)
                    .is_some_and(|d| !d.is_empty());
                if cm.data.as_ref() == Some(&data) && described && cm.binary_data.is_none() {
                    return Ok(Action::Done);
                }
                let mut cm = (*cm).clone();
                cm.data = Some(data);
                cm.binary_data = None;
                cm.annotations_mut()
                    .insert(DESCRIPTION_KEY.into(), DESCRIPTION.into());
                api.replace(NAME, &PostParams::default(), &cm)
                    .await
                    .map(drop)
            }
        };
        match result {
            Ok(()) => Ok(Action::Done),
            // Exists already (the informer will tell), the namespace is going away, or the
            // cached copy was stale (its change is on the way and queues the namespace again).
            Err(kube::Error::Api(s)) if matches!(s.code, 403 | 404 | 409) => Ok(Action::Done),
            Err(e) => Err(e),
        }
    }
}
