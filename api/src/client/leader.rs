//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas of the
//! scheduler or the controllers exactly one acts while the others stand by.
//!
//! The protocol is Kubernetes' (client-go `leaderelection` with the `leases` lock): the holder
//! writes its identity and `renewTime` into the Lease every `lease_duration / 3`; a stand-by takes
//! the Lease over only once `renewTime + leaseDurationSeconds` has passed; every write carries the
//! `resourceVersion` it read, so two candidates racing for the same Lease cannot both win (the
//! loser gets 409 Conflict and reads again). Releasing empties `holderIdentity` so a stand-by
//! takes over at once instead of waiting for the Lease to expire.
//!
//! What to do is decided by the pure [`decide`], which the tests exercise on its own; the async
//! parts only read, write and sleep.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Api, Client, ClientError, PostParams};

/// Campaigns for one Lease under one identity.
#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    lease_duration: Duration,
}

/// Proof that this identity holds the Lease. A background task renews it until it is released
/// or dropped; [`Leadership::lost`] tells when renewal failed.
pub struct Leadership {
    elector: LeaderElector,
    lost: watch::Receiver<bool>,
    renewer: Option<JoinHandle<()>>,
}

/// What a candidate should do after reading the Lease (see [`decide`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// There is no Lease: create it with this spec.
    Create(LeaseSpec),
    /// This identity holds the Lease: write this spec (a new `renewTime`).
    Renew(LeaseSpec),
    /// The Lease is free or expired: write this spec to take it over.
    TakeOver(LeaseSpec),
    /// Another identity holds a live Lease; try again at `expires` at the latest.
    Wait { holder: String, expires: Timestamp },
}

impl LeaderElector {
    /// An elector for the Lease `namespace/name`. `lease_duration` is how long a holder that
    /// stopped renewing keeps the Lease (Kubernetes components use 15 s).
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        lease_duration: Duration,
    ) -> LeaderElector {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Waits until this identity holds the Lease, then starts renewing it in the background.
    /// Errors talking to the server are logged and retried; only an error that retrying cannot
    /// cure (the Lease kind is unknown to the client, say) is returned.
    pub async fn acquire(&self) -> Result<Leadership, ClientError> {
        let mut last_wait_log: Option<String> = None;
        loop {
            match self.try_acquire().await {
                Ok(Attempt::Held(lease)) => {
                    tracing::info!(
                        lease = %format!("{}/{}", self.namespace, self.name),
                        identity = %self.identity,
                        "acquired the lease"
                    );
                    return Ok(self.start_renewing(*lease));
                }
                Ok(Attempt::Wait { holder, expires }) => {
                    if last_wait_log.as_deref() != Some(holder.as_str()) {
                        tracing::info!(
                            lease = %format!("{}/{}", self.namespace, self.name),
                            %holder,
                            "another instance is the leader, standing by"
                        );
                        last_wait_log = Some(holder);
                    }
                    let until_expiry = Timestamp::now()
                        .duration_until(expires)
                        .unsigned_abs()
                        .saturating_add(Duration::from_millis(10));
                    tokio::time::sleep(until_expiry.min(self.retry_period())).await;
                }
                // Somebody wrote in between: read again at once.
                Ok(Attempt::Raced) => {}
                Err(error @ ClientError::UnknownKind { .. }) => return Err(error),
                Err(error) => {
                    tracing::warn!(
                        lease = %format!("{}/{}", self.namespace, self.name),
                        %error,
                        "cannot read or write the lease, retrying"
                    );
                    tokio::time::sleep(self.retry_period()).await;
                }
            }
        }
    }

    /// How often a stand-by looks at the Lease: a third of the lease duration, at most 2 s so that
    /// a released Lease is picked up quickly.
    fn retry_period(&self) -> Duration {
        (self.lease_duration / 3).min(Duration::from_secs(2))
    }

    async fn try_acquire(&self) -> Result<Attempt, ClientError> {
        let current = self.api.get_opt(&self.name).await?;
        let decision = decide(
            current.as_ref(),
            &self.identity,
            Timestamp::now(),
            self.lease_duration,
        );
        match decision {
            Decision::Wait { holder, expires } => Ok(Attempt::Wait { holder, expires }),
            Decision::Create(spec) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: Some(self.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(created) => Ok(Attempt::Held(Box::new(created))),
                    Err(e) if e.is_already_exists() || e.is_conflict() => Ok(Attempt::Raced),
                    Err(e) => Err(e),
                }
            }
            Decision::Renew(spec) | Decision::TakeOver(spec) => {
                // `current` is Some here: `decide` only creates when there is no Lease.
                let mut lease = current.unwrap_or_default();
                lease.spec = Some(spec);
                match self
                    .api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(written) => Ok(Attempt::Held(Box::new(written))),
                    Err(e) if e.is_conflict() || e.is_not_found() => Ok(Attempt::Raced),
                    Err(e) => Err(e),
                }
            }
        }
    }

    fn start_renewing(&self, lease: Lease) -> Leadership {
        let (tx, rx) = watch::channel(false);
        let elector = self.clone();
        let renewer = tokio::spawn(async move {
            elector.renew_loop(lease).await;
            let _ = tx.send(true);
        });
        Leadership {
            elector: self.clone(),
            lost: rx,
            renewer: Some(renewer),
        }
    }

    /// Renews every `lease_duration / 3` until a renewal is refused because another identity
    /// holds the Lease, or until no renewal has succeeded for two thirds of the lease duration
    /// (client-go's renew deadline), after which a stand-by may already be taking over.
    async fn renew_loop(&self, mut lease: Lease) {
        let interval = self.lease_duration / 3;
        let deadline = self.lease_duration * 2 / 3;
        let retry = (interval / 4).max(Duration::from_millis(50));
        let mut last_renewed = tokio::time::Instant::now();
        let mut wait = interval;
        loop {
            tokio::time::sleep(wait).await;
            match self.renew_once(&lease).await {
                Ok(Some(written)) => {
                    lease = written;
                    last_renewed = tokio::time::Instant::now();
                    wait = interval;
                }
                Ok(None) => {
                    let holder = holder_of(Some(&lease)).unwrap_or_default().to_string();
                    tracing::warn!(
                        lease = %format!("{}/{}", self.namespace, self.name),
                        identity = %self.identity,
                        "lost the lease to another holder {holder:?}"
                    );
                    return;
                }
                Err(error) => {
                    if last_renewed.elapsed() >= deadline {
                        tracing::warn!(
                            lease = %format!("{}/{}", self.namespace, self.name),
                            %error,
                            "could not renew the lease within {deadline:?}, giving up leadership"
                        );
                        return;
                    }
                    tracing::warn!(%error, "renewing the lease failed, retrying");
                    // On a conflict the next try reads the Lease again.
                    if error.is_conflict() {
                        if let Ok(Some(fresh)) = self.api.get_opt(&self.name).await {
                            lease = fresh;
                        }
                    }
                    wait = retry;
                }
            }
        }
    }

    /// One renewal from the last Lease written. `Ok(None)`: another identity holds it now.
    async fn renew_once(&self, lease: &Lease) -> Result<Option<Lease>, ClientError> {
        match decide(
            Some(lease),
            &self.identity,
            Timestamp::now(),
            self.lease_duration,
        ) {
            Decision::Renew(spec) => {
                let mut next = lease.clone();
                next.spec = Some(spec);
                self.api
                    .replace(&self.name, &PostParams::default(), &next)
                    .await
                    .map(Some)
            }
            // A re-read after a conflict showed another holder (or a free Lease that we no longer
            // hold): leadership is over either way.
            _ => Ok(None),
        }
    }

    /// Empties `holderIdentity` if this identity still holds the Lease.
    async fn release_lease(&self) -> Result<(), ClientError> {
        for _ in 0..5 {
            let Some(mut lease) = self.api.get_opt(&self.name).await? else {
                return Ok(());
            };
            if holder_of(Some(&lease)) != Some(self.identity.as_str()) {
                return Ok(());
            }
            lease.spec = Some(released(lease.spec.take().unwrap_or_default()));
            match self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => {
                    tracing::info!(
                        lease = %format!("{}/{}", self.namespace, self.name),
                        "released the lease"
                    );
                    return Ok(());
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Leadership {
    /// Resolves when leadership is lost: renewal failed for too long, or another identity holds
    /// the Lease. The caller should stop acting at once (and usually exit non-zero).
    pub async fn lost(&mut self) {
        // An error means the renewer is gone, which is a loss as well.
        let _ = self.lost.wait_for(|lost| *lost).await;
    }

    /// Whether leadership has been lost already.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Stops renewing and empties `holderIdentity`, so that a stand-by takes over without
    /// waiting for the Lease to expire.
    pub async fn release(mut self) -> Result<(), ClientError> {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
            let _ = renewer.await;
        }
        self.elector.release_lease().await
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
    }
}

/// Decides what `me` should do with the Lease as read (`None`: it does not exist) at `now`.
/// `lease_duration` is what `me` writes; an existing Lease expires by its own
/// `leaseDurationSeconds` (ours when it has none).
pub fn decide(
    lease: Option<&Lease>,
    me: &str,
    now: Timestamp,
    lease_duration: Duration,
) -> Decision {
    let seconds = duration_seconds(lease_duration);
    let Some(lease) = lease else {
        return Decision::Create(LeaseSpec {
            holder_identity: Some(me.to_string()),
            lease_duration_seconds: Some(seconds),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        });
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = holder_of(Some(lease));
    if holder == Some(me) {
        return Decision::Renew(LeaseSpec {
            lease_duration_seconds: Some(seconds),
            renew_time: Some(MicroTime(now)),
            acquire_time: spec.acquire_time.clone().or(Some(MicroTime(now))),
            ..spec
        });
    }
    if let Some(holder) = holder {
        let held_for = spec
            .lease_duration_seconds
            .filter(|s| *s > 0)
            .map(|s| SignedDuration::from_secs(i64::from(s)))
            .unwrap_or_else(|| SignedDuration::from_secs(i64::from(seconds)));
        // A Lease with a holder but no renewTime has never been renewed; treat it as expired.
        if let Some(renewed) = &spec.renew_time {
            let expires = renewed.0.saturating_add(held_for).unwrap_or(renewed.0);
            if now < expires {
                return Decision::Wait {
                    holder: holder.to_string(),
                    expires,
                };
            }
        }
    }
    Decision::TakeOver(LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(seconds),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(spec.lease_transitions.unwrap_or(0).saturating_add(1)),
        ..spec
    })
}

enum Attempt {
    Held(Box<Lease>),
    Wait { holder: String, expires: Timestamp },
    Raced,
}

/// The holder of a Lease; an empty `holderIdentity` means nobody.
fn holder_of(lease: Option<&Lease>) -> Option<&str> {
    lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty())
}

/// The spec a holder writes when it lets go.
fn released(spec: LeaseSpec) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(String::new()),
        ..spec
    }
}

/// Whole seconds for `leaseDurationSeconds`, rounded up so that a sub-second duration (tests)
/// still gives a Lease that lives at least as long as the holder expects.
fn duration_seconds(duration: Duration) -> i32 {
    let mut seconds = duration.as_secs();
    if duration.subsec_nanos() > 0 || seconds == 0 {
        seconds += 1;
    }
    i32::try_from(seconds).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::super::testserver::{serve, Canned};
    use super::super::Config;
    use super::*;

    const DURATION: Duration = Duration::from_secs(15);

    fn at(seconds: i64) -> Timestamp {
        match Timestamp::from_second(1_800_000_000 + seconds) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    fn lease(holder: &str, renewed: i64, transitions: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("flotilla-scheduler".into()),
                namespace: Some("kube-system".into()),
                resource_version: Some("7".into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                acquire_time: Some(MicroTime(at(0))),
                renew_time: Some(MicroTime(at(renewed))),
                lease_transitions: Some(transitions),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn creates_a_missing_lease() {
        let Decision::Create(spec) = decide(None, "a", at(5), DURATION) else {
            panic!("expected Create");
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(5))));
        assert_eq!(spec.renew_time, Some(MicroTime(at(5))));
        assert_eq!(spec.lease_transitions, Some(0));
    }

    #[test]
    fn the_holder_renews_keeping_acquire_time_and_transitions() {
        let current = lease("a", 0, 3);
        let Decision::Renew(spec) = decide(Some(&current), "a", at(5), DURATION) else {
            panic!("expected Renew");
        };
        assert_eq!(spec.renew_time, Some(MicroTime(at(5))));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(0))));
        assert_eq!(spec.lease_transitions, Some(3));
    }

    #[test]
    fn a_live_lease_of_another_holder_is_left_alone_until_it_expires() {
        let current = lease("b", 10, 3);
        assert_eq!(
            decide(Some(&current), "a", at(24), DURATION),
            Decision::Wait {
                holder: "b".into(),
                expires: at(25)
            }
        );
        let Decision::TakeOver(spec) = decide(Some(&current), "a", at(25), DURATION) else {
            panic!("expected TakeOver once renewTime + 15 s has passed");
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(25))));
        assert_eq!(spec.renew_time, Some(MicroTime(at(25))));
        assert_eq!(spec.lease_transitions, Some(4));
    }

    #[test]
    fn expiry_follows_the_lease_own_duration() {
        let mut current = lease("b", 10, 0);
        if let Some(spec) = current.spec.as_mut() {
            spec.lease_duration_seconds = Some(60);
        }
        assert!(matches!(
            decide(Some(&current), "a", at(69), DURATION),
            Decision::Wait { .. }
        ));
        assert!(matches!(
            decide(Some(&current), "a", at(70), DURATION),
            Decision::TakeOver(_)
        ));
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let mut current = lease("b", 10, 2);
        current.spec = current.spec.map(released);
        let Decision::TakeOver(spec) = decide(Some(&current), "a", at(11), DURATION) else {
            panic!("expected TakeOver of a released lease");
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_transitions, Some(3));
    }

    #[test]
    fn lease_seconds_round_up() {
        assert_eq!(duration_seconds(Duration::from_secs(15)), 15);
        assert_eq!(duration_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(duration_seconds(Duration::from_millis(300)), 1);
    }

    fn client(url: &str) -> Client {
        match Client::new(Config::new(vec![url.to_string()])) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn lease_json(holder: &str, renewed: Timestamp) -> String {
        format!(
            r#"{{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{{"name":"flotilla-scheduler","namespace":"kube-system","resourceVersion":"9"}},"spec":{{"holderIdentity":"{holder}","leaseDurationSeconds":15,"renewTime":"{renewed}"}}}}"#
        )
    }

    #[tokio::test]
    async fn acquires_by_creating_then_reports_loss_when_renewal_fails() {
        let now = Timestamp::now();
        let server = serve(vec![
            Canned::json(
                404,
                r#"{"kind":"Status","reason":"NotFound","message":"not found","code":404}"#,
            ),
            Canned::json(201, &lease_json("a", now)),
        ])
        .await;
        let elector = LeaderElector::new(
            client(&server.url),
            "kube-system",
            "flotilla-scheduler",
            "a",
            Duration::from_millis(300),
        );
        let mut leadership = match elector.acquire().await {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        };
        let requests = server.requests();
        assert!(requests[0].starts_with(
            "GET /apis/coordination.k8s.io/v1/namespaces/kube-system/leases/flotilla-scheduler "
        ));
        assert!(requests[1]
            .starts_with("POST /apis/coordination.k8s.io/v1/namespaces/kube-system/leases"));
        // The test server has no more answers, so renewals fail and leadership ends after the
        // renew deadline (200 ms here).
        let lost = tokio::time::timeout(Duration::from_secs(5), leadership.lost()).await;
        assert!(lost.is_ok(), "leadership should be lost when renewal fails");
        assert!(leadership.is_lost());
    }

    #[tokio::test]
    async fn release_empties_the_holder() {
        let now = Timestamp::now();
        let server = serve(vec![
            Canned::json(200, &lease_json("a", now)),
            Canned::json(200, &lease_json("a", now)),
            Canned::json(200, &lease_json("a", now)),
            Canned::json(200, &lease_json("", now)),
        ])
        .await;
        let elector = LeaderElector::new(
            client(&server.url),
            "kube-system",
            "flotilla-scheduler",
            "a",
            Duration::from_secs(15),
        );
        // The Lease is already ours: acquiring renews it (GET then PUT).
        let leadership = match elector.acquire().await {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        };
        if let Err(e) = leadership.release().await {
            panic!("{e}");
        }
        let requests = server.requests();
        assert_eq!(requests.len(), 4, "{requests:?}");
        assert!(requests[1].starts_with("PUT "));
        assert!(requests[2].starts_with("GET "), "{requests:?}");
        assert!(requests[3].starts_with(
            "PUT /apis/coordination.k8s.io/v1/namespaces/kube-system/leases/flotilla-scheduler"
        ));
    }
}
