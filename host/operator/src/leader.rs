//! Leader election with a `coordination.k8s.io` Lease, so that of several operator replicas
//! exactly one reconciles. Optimistic concurrency (resourceVersion) settles races: a conflict
//! means someone else won this round.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};

pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    /// How long a lease holds without renewal.
    pub lease_duration: Duration,
}

impl LeaderElector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
        }
    }

    /// Acquires the lease if it is free or expired, renews it if held: true while this replica leads.
    pub async fn try_lead(&self) -> Result<bool, kube::Error> {
        self.try_lead_at(Timestamp::now()).await
    }

    async fn try_lead_at(&self, now: Timestamp) -> Result<bool, kube::Error> {
        let seconds = self.lease_duration.as_secs() as i32;
        let result = match self.api.get_opt(&self.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                self.api.create(&PostParams::default(), &lease).await.map(|_| true)
            }
            Some(mut lease) => {
                let spec = lease.spec.get_or_insert_with(Default::default);
                let held_by_us = spec.holder_identity.as_deref() == Some(self.identity.as_str());
                let renewed = spec.renew_time.as_ref().map(|t| t.0).unwrap_or(Timestamp::UNIX_EPOCH);
                let duration = SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(seconds) as i64);
                let expired = renewed.checked_add(duration).map(|until| until < now).unwrap_or(true);
                if !held_by_us && !expired {
                    return Ok(false);
                }
                if !held_by_us {
                    spec.holder_identity = Some(self.identity.clone());
                    spec.acquire_time = Some(MicroTime(now));
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.renew_time = Some(MicroTime(now));
                spec.lease_duration_seconds = Some(seconds);
                self.api.replace(&self.name, &PostParams::default(), &lease).await.map(|_| true)
            }
        };
        match result {
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            other => other,
        }
    }

    /// Gives the lease up if this replica holds it (on shutdown), so a follower takes over at
    /// once instead of after the lease duration.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else { return Ok(()) };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        // No renewal time reads as expired to every elector.
        spec.holder_identity = None;
        spec.renew_time = None;
        self.api.replace(&self.name, &PostParams::default(), &lease).await.map(|_| ())
    }

    /// Waits until this replica leads (checking every third of the lease duration).
    pub async fn acquire(&self) {
        loop {
            match self.try_lead().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!("leader election: {e}"),
            }
            tokio::time::sleep(self.lease_duration / 3).await;
        }
    }

    /// Renews the lease until that fails; returns when leadership is lost.
    pub async fn keep(&self) {
        loop {
            tokio::time::sleep(self.lease_duration / 3).await;
            match self.try_lead().await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => tracing::warn!("renewing the lease: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use http::Method;
    use serde_json::{Value, json};

    use super::*;
    use crate::server::tests::{context, expect, expect_no_more, fail};

    const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/mcp-system/leases/hangar-operator";

    fn lease(holder: &str, renewed: &str) -> Value {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "hangar-operator", "namespace": "mcp-system", "resourceVersion": "7"},
               "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renewed, "leaseTransitions": 1}})
    }

    async fn elector() -> (LeaderElector, crate::server::tests::Handle) {
        let (ctx, handle) = context();
        (LeaderElector::new(ctx.client.clone(), "mcp-system", "hangar-operator", "pod-a"), handle)
    }

    fn now() -> Timestamp {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    #[tokio::test]
    async fn a_missing_lease_is_created_and_held() {
        let (e, mut handle) = elector().await;
        let verifier = tokio::spawn(async move {
            let (_, send) = handle.next_request().await.unwrap();
            fail(send, 404, "NotFound");
            let created =
                expect(&mut handle, Method::POST, "/apis/coordination.k8s.io/v1/namespaces/mcp-system/leases", |b| b)
                    .await;
            assert_eq!(created["spec"]["holderIdentity"], "pod-a");
        });
        assert!(e.try_lead_at(now()).await.unwrap());
        verifier.await.unwrap();
    }

    #[tokio::test]
    async fn our_lease_is_renewed_and_a_fresh_foreign_one_respected() {
        let (e, mut handle) = elector().await;
        let verifier = tokio::spawn(async move {
            expect(&mut handle, Method::GET, LEASE, |_| lease("pod-a", "2026-11-25T11:59:55.000000Z")).await;
            let renewed = expect(&mut handle, Method::PUT, LEASE, |b| b).await;
            assert_eq!(renewed["spec"]["renewTime"], "2026-11-25T12:00:00.000000Z");
            assert_eq!(renewed["spec"]["leaseTransitions"], 1, "renewal is no transition");
            assert_eq!(renewed["metadata"]["resourceVersion"], "7", "optimistic concurrency");
            expect(&mut handle, Method::GET, LEASE, |_| lease("pod-b", "2026-11-25T11:59:55.000000Z")).await;
        });
        assert!(e.try_lead_at(now()).await.unwrap());
        assert!(!e.try_lead_at(now()).await.unwrap(), "pod-b renewed 5 s ago: not ours to take");
        verifier.await.unwrap();
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_and_a_race_lost_gracefully() {
        let (e, mut handle) = elector().await;
        let verifier = tokio::spawn(async move {
            expect(&mut handle, Method::GET, LEASE, |_| lease("pod-b", "2026-11-25T11:59:00.000000Z")).await;
            let taken = expect(&mut handle, Method::PUT, LEASE, |b| b).await;
            assert_eq!(
                (taken["spec"]["holderIdentity"].clone(), taken["spec"]["leaseTransitions"].clone()),
                (json!("pod-a"), json!(2))
            );
            expect(&mut handle, Method::GET, LEASE, |_| lease("pod-b", "2026-11-25T11:59:00.000000Z")).await;
            let (_, send) = handle.next_request().await.unwrap();
            fail(send, 409, "Conflict");
        });
        assert!(e.try_lead_at(now()).await.unwrap(), "pod-b's lease ran out a minute ago");
        assert!(!e.try_lead_at(now()).await.unwrap(), "a conflict means another replica won");
        verifier.await.unwrap();
    }

    #[tokio::test]
    async fn a_released_lease_is_free_at_once_and_a_foreign_one_is_left_alone() {
        let (e, mut handle) = elector().await;
        let verifier = tokio::spawn(async move {
            expect(&mut handle, Method::GET, LEASE, |_| lease("pod-a", "2026-11-25T11:59:55.000000Z")).await;
            let released = expect(&mut handle, Method::PUT, LEASE, |b| b).await;
            assert_eq!(released["spec"].get("holderIdentity"), None);
            assert_eq!(released["spec"].get("renewTime"), None);
            // The lease as released: free for pod-a's successor right away.
            let mut free = lease("pod-a", "2026-11-25T11:59:55.000000Z");
            free["spec"] = released["spec"].clone();
            expect(&mut handle, Method::GET, LEASE, |_| free).await;
            let taken = expect(&mut handle, Method::PUT, LEASE, |b| b).await;
            assert_eq!(taken["spec"]["holderIdentity"], "pod-a");
            // Someone else's lease is not ours to release: no write.
            expect(&mut handle, Method::GET, LEASE, |_| lease("pod-b", "2026-11-25T11:59:55.000000Z")).await;
            expect_no_more(&mut handle, "no write to pod-b's lease").await;
        });
        e.release().await.unwrap();
        assert!(e.try_lead_at(now()).await.unwrap(), "a released lease is taken without waiting");
        e.release().await.unwrap();
        drop(e);
        verifier.await.unwrap();
    }
}
