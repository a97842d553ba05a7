//! Leader election through a coordination.k8s.io Lease, as upstream components do it: the
//! holder renews `renewTime` every `renew`; a Lease not renewed for `duration` may be taken
//! over by anyone, with the resourceVersion as the compare-and-swap guard.

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
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

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
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
                         "acquireTime": now(), "renewTime": now(), "leaseTransitions": 0},
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
        let now = now();
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

    /// Gives up a Lease this process holds, as upstream's components do on a clean shutdown
    /// (`ReleaseOnCancel`): no holder and a one-second duration, so a successor need not wait
    /// for it to expire.
    async fn release(&self, api: &Api<Lease>) {
        let result = async {
            let Some(mut lease) = api.get_opt(&self.name).await? else {
                return Ok(false);
            };
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(false);
            }
            let now = now();
            spec.holder_identity = Some(String::new());
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(now.clone());
            spec.acquire_time = Some(now);
            api.replace(&self.name, &PostParams::default(), &lease)
                .await
                .map(|_| true)
        }
        .await;
        match result {
            Ok(true) => info!(lease = %self.name, identity = %self.identity, "released the lease"),
            Ok(false) => {}
            Err(e) => warn!(lease = %self.name, error = %e, "could not release the lease"),
        }
    }

    /// Runs `work` while this process holds the Lease; stops it when the Lease is lost and
    /// competes again. Returns when `stop` completes, after stopping `work` and releasing the
    /// Lease if held.
    pub async fn run<F, Fut, S>(self, client: Client, work: F, stop: S)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
        S: Future<Output = ()>,
    {
        let api: Api<Lease> = Api::namespaced(client, &self.namespace);
        let mut backoff = Duration::from_millis(200);
        tokio::pin!(stop);
        loop {
            let attempt = tokio::select! {
                r = self.try_acquire(&api) => r,
                _ = &mut stop => return,
            };
            let wait = match attempt {
                Ok(true) => {
                    info!(lease = %self.name, identity = %self.identity, "became leader");
                    backoff = Duration::from_millis(200);
                    let task = tokio::spawn(work());
                    let mut last_renewed = tokio::time::Instant::now();
                    let stopped = loop {
                        tokio::select! {
                            _ = tokio::time::sleep(self.renew) => {}
                            _ = &mut stop => break true,
                        }
                        match self.try_acquire(&api).await {
                            Ok(true) => last_renewed = tokio::time::Instant::now(),
                            Ok(false) => break false,
                            Err(e) => {
                                warn!(lease = %self.name, error = %e, "renewing the lease failed");
                                if last_renewed.elapsed() > self.duration {
                                    break false;
                                }
                            }
                        }
                    };
                    task.abort();
                    if stopped {
                        let _ = task.await;
                        self.release(&api).await;
                        return;
                    }
                    warn!(lease = %self.name, "lost the lease; stopping until it is regained");
                    continue;
                }
                Ok(false) => self.renew,
                Err(e) => {
                    warn!(lease = %self.name, error = %e, "cannot reach the API server for the lease; retrying in {backoff:?}");
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = &mut stop => return,
            }
        }
    }
}
