//! Leader election through a `coordination.k8s.io/v1` Lease, so that two operator
//! replicas never reconcile (and write the store) at once.
//!
//! The holder renews the Lease every `renew_every`; another replica takes it over
//! once `duration` has passed without a renewal. Updates use the Lease's
//! resourceVersion, so two replicas racing for it cannot both win.
//!
//! A replica that cannot renew in time stops leading (the process exits and
//! restarts as a standby) rather than risk two leaders, and it must stop before
//! anyone else can see the Lease expired: each renewal is given at most
//! `renew_every`, a renewal's time counts from when it was sent (the Lease says
//! about then, not when the answer arrived), and leadership is given up
//! `renew_every` before the last sent renewal runs out.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};

/// One replica's view of the election.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    renew_every: Duration,
}

impl LeaderElection {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, duration: Duration) -> Self {
        LeaderElection {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
            renew_every: duration / 3,
        }
    }

    /// Waits until this replica holds the Lease; returns when the winning
    /// request was sent (what [`LeaderElection::hold`] counts from).
    pub async fn acquire(&self) -> tokio::time::Instant {
        let mut waiting_logged = false;
        loop {
            let sent = tokio::time::Instant::now();
            match tokio::time::timeout(self.renew_every, self.try_hold()).await.unwrap_or(Ok(false)) {
                Ok(true) => {
                    tracing::info!(lease = self.name, identity = self.identity, "became the leader");
                    return sent;
                }
                Ok(false) if !waiting_logged => {
                    tracing::info!(lease = self.name, "another replica leads; standing by");
                    waiting_logged = true;
                }
                Ok(false) => {}
                Err(error) => tracing::warn!(lease = self.name, %error, "failed to read or take the Lease"),
            }
            tokio::time::sleep(self.renew_every).await;
        }
    }

    /// Renews the Lease until leadership is lost (another replica took it, or no
    /// renewal succeeded in time); then returns, early enough for the caller to
    /// stop before another replica may take over. `acquired` is when the
    /// request that won the Lease was sent.
    pub async fn hold(&self, acquired: tokio::time::Instant) {
        let mut valid_until = acquired + self.duration;
        loop {
            // Give up leading `renew_every` before the Lease can run out.
            let give_up_at = valid_until - self.renew_every;
            let next = (tokio::time::Instant::now() + self.renew_every).min(give_up_at);
            tokio::time::sleep_until(next).await;
            if tokio::time::Instant::now() >= give_up_at {
                tracing::error!(lease = self.name, "failed to renew the Lease in time; giving up leadership");
                return;
            }
            let sent = tokio::time::Instant::now();
            match tokio::time::timeout(self.renew_every, self.try_hold()).await {
                Ok(Ok(true)) => valid_until = sent + self.duration,
                Ok(Ok(false)) => {
                    tracing::error!(lease = self.name, "another replica took the Lease");
                    return;
                }
                Ok(Err(error)) => tracing::warn!(lease = self.name, %error, "failed to renew the Lease; retrying"),
                Err(_) => tracing::warn!(lease = self.name, "a Lease renewal did not answer in time; retrying"),
            }
        }
    }

    /// Gives the Lease up (on shutdown), so a standby takes over at once.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else { return };
        let Some(spec) = lease.spec.as_mut().filter(|s| s.holder_identity.as_deref() == Some(&self.identity)) else {
            return;
        };
        spec.holder_identity = None;
        spec.renew_time = None;
        if let Err(error) = self.api.replace(&self.name, &PostParams::default(), &lease).await {
            tracing::warn!(lease = self.name, %error, "failed to release the Lease");
        }
    }

    /// Takes or renews the Lease if it is free, expired or ours. `Ok(false)` when
    /// another replica holds it (or won a race for it).
    async fn try_hold(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let seconds = i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX).max(1);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return conflict_is_false(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let ours = spec.holder_identity.as_deref() == Some(&self.identity);
        let held = spec.holder_identity.as_deref().is_some_and(|holder| !holder.is_empty());
        let lasts = SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(seconds).into());
        let expired = spec.renew_time.as_ref().is_none_or(|renewed| renewed.0 + lasts < now);
        if !ours && held && !expired {
            return Ok(false);
        }
        if !ours {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.holder_identity = Some(self.identity.clone());
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(seconds);
        conflict_is_false(self.api.replace(&self.name, &PostParams::default(), &lease).await)
    }
}

/// A write that lost an optimistic-concurrency race means another replica won.
fn conflict_is_false(result: Result<Lease, kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}
