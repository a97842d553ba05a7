//! Leader election through a coordination.k8s.io Lease, as upstream components do it: the
//! holder renews `renewTime` every `renew`; a Lease not renewed for `duration` may be taken
//! over by anyone, with the resourceVersion as the compare-and-swap guard.

use std::future::Future;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use tracing::{info, warn};

pub struct Election {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
    pub renew: Duration,
}

fn now_micro() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl Election {
    pub fn new(name: &str, identity: &str) -> Self {
        Election {
            namespace: "kube-system".into(),
            name: name.into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            renew: Duration::from_secs(2),
        }
    }

    /// Tries once to acquire or renew; true when we hold the Lease afterwards.
    async fn try_acquire(&self, api: &Api<Lease>) -> Result<bool, kube::Error> {
        let existing = api.get_opt(&self.name).await?;
        let duration = self.duration.as_secs() as i32;
        let Some(mut lease) = existing else {
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": duration,
                         "acquireTime": now_micro(), "renewTime": now_micro(), "leaseTransitions": 0},
            }))
            .expect("lease");
            return match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let expired = spec.renew_time.as_ref().is_none_or(|t| {
            let age = Utc::now() - crate::util::chrono_time(&t.0);
            age.num_milliseconds() > spec.lease_duration_seconds.unwrap_or(duration) as i64 * 1000
        });
        if holder != self.identity && !holder.is_empty() && !expired {
            return Ok(false);
        }
        let now: k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime =
            serde_json::from_value(json!(now_micro())).expect("time");
        if holder != self.identity {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.holder_identity = Some(self.identity.clone());
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(duration);
        match api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Runs `work` while this process holds the Lease; stops it when the Lease is lost and
    /// competes again. Never returns.
    pub async fn run<F, Fut>(self, client: Client, work: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let api: Api<Lease> = Api::namespaced(client, &self.namespace);
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.try_acquire(&api).await {
                Ok(true) => {
                    info!(lease = %self.name, identity = %self.identity, "became leader");
                    backoff = Duration::from_millis(200);
                    let task = tokio::spawn(work());
                    let mut last_renewed = tokio::time::Instant::now();
                    loop {
                        tokio::time::sleep(self.renew).await;
                        match self.try_acquire(&api).await {
                            Ok(true) => last_renewed = tokio::time::Instant::now(),
                            Ok(false) => break,
                            Err(e) => {
                                warn!(lease = %self.name, error = %e, "renewing the lease failed");
                                if last_renewed.elapsed() > self.duration {
                                    break;
                                }
                            }
                        }
                    }
                    warn!(lease = %self.name, "lost the lease; stopping until it is regained");
                    task.abort();
                }
                Ok(false) => tokio::time::sleep(self.renew).await,
                Err(e) => {
                    warn!(lease = %self.name, error = %e, "cannot reach the API server for the lease; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
