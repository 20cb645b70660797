//! What the ReplicaSet and Deployment controllers share: a de-duplicating work queue with
//! per-key back-off and the workers that drain it ([`run_workers`]), creation/deletion
//! expectations, pod readiness and availability, owner references and slow-start batches.
//! Their caches are [`crate::informer`]s and their Events go through `api::client::events`.
//!
//! Written here rather than taken from kube-runtime because the API client is Flotilla's own;
//! the shapes follow kube-runtime's and client-go's workqueue.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::sync::{watch, Notify};

use api::client::ClientError;
use api::core::Pod;
use api::meta::{ObjectMeta, OwnerReference, Time};

use crate::informer::ObjectKey;

/// How often every object is queued again, repairing whatever a missed event left behind.
pub const RESYNC_PERIOD: Duration = Duration::from_secs(30);

/// How long unmet expectations hold back a controller before it acts anyway (as kube's).
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);

/// The most pods one ReplicaSet sync creates or deletes (kube's `burstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// `namespace/name`, the key of the work queue and of caches.
pub fn key_of(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or("")
    )
}

/// Splits a `namespace/name` key.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// The cache key of a `namespace/name` queue key.
pub fn object_key(key: &str) -> ObjectKey {
    let (namespace, name) = split_key(key);
    ObjectKey::new(namespace, name)
}

/// A controller whose work is the keys of a [`WorkQueue`], driven by [`run_workers`].
pub trait Reconciler: Send + Sync + 'static {
    /// What it reconciles, for logs (e.g. "replica set").
    const WHAT: &'static str;

    fn queue(&self) -> &WorkQueue;

    /// Whether every cache the controller reads has had its first complete list.
    fn synced(&self) -> bool;

    /// Every key there is, queued again each [`RESYNC_PERIOD`].
    fn keys(&self) -> Vec<String>;

    /// Brings one object to its desired state. `Ok(Some(after))` asks to look again after
    /// `after` even if nothing changes (minReadySeconds, progress deadlines).
    fn sync(&self, key: &str)
        -> impl Future<Output = Result<Option<Duration>, ClientError>> + Send;
}

/// Runs `workers` tasks that take keys from the reconciler's queue and sync them, and a task
/// that queues every key each [`RESYNC_PERIOD`], until `shutdown` turns true (or its sender is
/// dropped). A key whose sync fails is queued again with back-off; one that succeeds has its
/// failures forgotten.
pub async fn run_workers<R: Reconciler>(
    reconciler: Arc<R>,
    workers: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    {
        let r = reconciler.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(RESYNC_PERIOD);
            loop {
                tick.tick().await;
                for key in r.keys() {
                    r.queue().add(&key);
                }
            }
        });
    }
    for _ in 0..workers {
        let r = reconciler.clone();
        tasks.spawn(async move {
            loop {
                let queue = r.queue();
                let key = queue.next().await;
                if !r.synced() {
                    // Acting on a half-filled cache would create objects that already exist.
                    queue.done(&key);
                    queue.add_after(&key, Duration::from_millis(200));
                    continue;
                }
                match r.sync(&key).await {
                    Ok(requeue) => {
                        queue.forget(&key);
                        if let Some(after) = requeue {
                            queue.add_after(&key, after);
                        }
                    }
                    Err(error) => {
                        // A write that raced another (stale resourceVersion, a name taken
                        // meanwhile) is normal: the next sync sees the newer state.
                        if error.is_conflict() || error.is_already_exists() {
                            tracing::debug!(%key, %error, "write raced; syncing {} again", R::WHAT);
                        } else {
                            tracing::warn!(%key, %error, "cannot sync {}; retrying", R::WHAT);
                        }
                        queue.add_rate_limited(&key);
                    }
                }
                queue.done(&key);
            }
        });
    }
    // Err: the sender is gone, which also means stop.
    let _ = shutdown.wait_for(|stop| *stop).await;
    tasks.abort_all();
}

/// The objects of a cache listing, as owned values for the pure planners.
pub fn owned<K: Clone>(objects: Vec<Arc<K>>) -> Vec<K> {
    objects
        .into_iter()
        .map(|object| (*object).clone())
        .collect()
}

/// A queue of keys: a key queued while already queued is queued once; a key being worked on
/// and queued again is handed out again only after the worker is done with it, so two workers
/// never reconcile the same object at once.
#[derive(Clone, Default)]
pub struct WorkQueue {
    state: Arc<Mutex<QueueState>>,
    notify: Arc<Notify>,
}

#[derive(Default)]
struct QueueState {
    queue: VecDeque<String>,
    queued: HashSet<String>,
    active: HashSet<String>,
    /// Keys queued while active: queued again when the worker finishes.
    dirty: HashSet<String>,
    failures: HashMap<String, u32>,
}

impl WorkQueue {
    pub fn new() -> WorkQueue {
        WorkQueue::default()
    }

    pub fn add(&self, key: &str) {
        let mut state = lock(&self.state);
        if state.active.contains(key) {
            state.dirty.insert(key.to_string());
            return;
        }
        if state.queued.insert(key.to_string()) {
            state.queue.push_back(key.to_string());
            drop(state);
            self.notify.notify_one();
        }
    }

    /// Queues `key` after `delay`.
    pub fn add_after(&self, key: &str, delay: Duration) {
        let queue = self.clone();
        let key = key.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(&key);
        });
    }

    /// Queues `key` again after a back-off that doubles with each failure in a row
    /// (5 ms up to 30 s, as client-go's default rate limiter).
    pub fn add_rate_limited(&self, key: &str) {
        let failures = {
            let mut state = lock(&self.state);
            let count = state.failures.entry(key.to_string()).or_insert(0);
            *count = count.saturating_add(1);
            *count
        };
        self.add_after(key, backoff(failures));
    }

    /// Forgets the failures of `key` after a successful sync.
    pub fn forget(&self, key: &str) {
        lock(&self.state).failures.remove(key);
    }

    /// The next key to work on; the caller must call [`WorkQueue::done`] with it.
    pub async fn next(&self) -> String {
        loop {
            let notified = self.notify.notified();
            if let Some(key) = self.try_next() {
                return key;
            }
            notified.await;
        }
    }

    fn try_next(&self) -> Option<String> {
        let mut state = lock(&self.state);
        let key = state.queue.pop_front()?;
        state.queued.remove(&key);
        state.active.insert(key.clone());
        Some(key)
    }

    pub fn done(&self, key: &str) {
        let requeue = {
            let mut state = lock(&self.state);
            state.active.remove(key);
            state.dirty.remove(key)
        };
        if requeue {
            self.add(key);
        }
        // Another worker may be waiting for a key that was held back while this one was active.
        self.notify.notify_one();
    }

    pub fn len(&self) -> usize {
        lock(&self.state).queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The back-off before retrying a key that failed `failures` times in a row.
pub fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(20);
    let millis = 5u64.saturating_mul(1u64 << exponent);
    Duration::from_millis(millis).min(Duration::from_secs(30))
}

/// Counts of creations and deletions a controller has asked for and not yet seen through its
/// watch, per key. While any are outstanding the controller does not create or delete again,
/// so a lagging watch cannot make it act twice on the same gap.
#[derive(Clone, Default)]
pub struct Expectations {
    inner: Arc<Mutex<HashMap<String, Expected>>>,
}

#[derive(Clone, Debug)]
struct Expected {
    adds: i64,
    /// Names of pods whose deletion has not been seen yet.
    deletes: HashSet<String>,
    set_at: Instant,
}

impl Expectations {
    pub fn expect(&self, key: &str, adds: usize, deletes: &[String]) {
        lock(&self.inner).insert(
            key.to_string(),
            Expected {
                adds: i64::try_from(adds).unwrap_or(i64::MAX),
                deletes: deletes.iter().cloned().collect(),
                set_at: Instant::now(),
            },
        );
    }

    /// One creation was seen, or will never happen (the request failed or was skipped).
    pub fn creation_observed(&self, key: &str) {
        if let Some(e) = lock(&self.inner).get_mut(key) {
            e.adds -= 1;
        }
    }

    pub fn deletion_observed(&self, key: &str, pod: &str) {
        if let Some(e) = lock(&self.inner).get_mut(key) {
            e.deletes.remove(pod);
        }
    }

    /// True when nothing is outstanding for `key`, or the expectations are older than
    /// [`EXPECTATIONS_TIMEOUT`] (an event was lost; the resync has the truth).
    pub fn satisfied(&self, key: &str) -> bool {
        self.satisfied_at(key, Instant::now())
    }

    pub fn satisfied_at(&self, key: &str, now: Instant) -> bool {
        match lock(&self.inner).get(key) {
            None => true,
            Some(e) => {
                (e.adds <= 0 && e.deletes.is_empty())
                    || now.duration_since(e.set_at) > EXPECTATIONS_TIMEOUT
            }
        }
    }

    pub fn forget(&self, key: &str) {
        lock(&self.inner).remove(key);
    }
}

/// Sizes of the batches in which `count` objects are created: 1, 2, 4, … so that a template
/// that always fails costs one failed request, not hundreds (kube's slow start).
pub fn slow_start_batches(count: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let mut size = 1;
    let mut left = count;
    while left > 0 {
        let batch = size.min(left);
        batches.push(batch);
        left -= batch;
        size *= 2;
    }
    batches
}

/// The owner reference with `controller: true` in `meta`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|r| r.controller == Some(true))
}

/// A controller reference to `owner` (controller and blockOwnerDeletion set).
pub fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether a pod counts toward its ReplicaSet: not being deleted and not finished.
pub fn pod_is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

pub fn pod_is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// Ready for at least `min_ready_seconds` at `now`.
pub fn pod_is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    let Some(condition) = ready_condition(pod).filter(|c| c.status == "True") else {
        return false;
    };
    if min_ready_seconds <= 0 {
        return true;
    }
    match &condition.last_transition_time {
        Some(Time(since)) => {
            let needed = jiff::SignedDuration::from_secs(i64::from(min_ready_seconds));
            since
                .checked_add(needed)
                .is_ok_and(|available_at| available_at <= now)
        }
        None => false,
    }
}

fn ready_condition(pod: &Pod) -> Option<&api::core::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// The sum of the container restart counts of a pod.
pub fn restart_count(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|c| c.restart_count)
        .sum()
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it: the caches and queues
/// hold no invariant that a half-finished update can break.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{from, time};

    #[test]
    fn slow_start_doubles() {
        assert_eq!(slow_start_batches(0), Vec::<usize>::new());
        assert_eq!(slow_start_batches(1), vec![1]);
        assert_eq!(slow_start_batches(10), vec![1, 2, 4, 3]);
        assert_eq!(slow_start_batches(15), vec![1, 2, 4, 8]);
    }

    #[test]
    fn backoff_doubles_up_to_thirty_seconds() {
        assert_eq!(backoff(1), Duration::from_millis(5));
        assert_eq!(backoff(2), Duration::from_millis(10));
        assert_eq!(backoff(100), Duration::from_secs(30));
    }

    #[tokio::test]
    async fn queue_deduplicates_and_holds_back_active_keys() {
        let queue = WorkQueue::new();
        queue.add("ns/a");
        queue.add("ns/a");
        queue.add("ns/b");
        assert_eq!(queue.len(), 2);
        let first = queue.next().await;
        assert_eq!(first, "ns/a");
        // Queued again while active: not handed out until done.
        queue.add("ns/a");
        assert_eq!(queue.next().await, "ns/b");
        assert!(queue.try_next().is_none());
        queue.done("ns/a");
        assert_eq!(queue.next().await, "ns/a");
    }

    /// A reconciler that records its syncs and fails the first one with a conflict.
    struct Fake {
        queue: WorkQueue,
        synced: std::sync::atomic::AtomicBool,
        calls: Mutex<Vec<String>>,
    }

    impl Reconciler for Fake {
        const WHAT: &'static str = "fake";

        fn queue(&self) -> &WorkQueue {
            &self.queue
        }

        fn synced(&self) -> bool {
            self.synced.load(std::sync::atomic::Ordering::SeqCst)
        }

        fn keys(&self) -> Vec<String> {
            Vec::new()
        }

        async fn sync(&self, key: &str) -> Result<Option<Duration>, ClientError> {
            let first = {
                let mut calls = lock(&self.calls);
                calls.push(key.to_string());
                calls.len() == 1
            };
            if first {
                return Err(ClientError::Api(Box::new(api::meta::Status {
                    code: Some(409),
                    reason: Some("Conflict".into()),
                    ..api::meta::Status::default()
                })));
            }
            Ok(None)
        }
    }

    #[tokio::test]
    async fn workers_wait_for_the_caches_and_retry_failed_keys() {
        let fake = Arc::new(Fake {
            queue: WorkQueue::new(),
            synced: std::sync::atomic::AtomicBool::new(false),
            calls: Mutex::new(Vec::new()),
        });
        let (stop, shutdown) = watch::channel(false);
        let workers = tokio::spawn(run_workers(fake.clone(), 2, shutdown));
        fake.queue.add("ns/a");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            lock(&fake.calls).is_empty(),
            "synced before the caches were"
        );
        fake.synced.store(true, std::sync::atomic::Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        while lock(&fake.calls).len() < 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Failed once (queued again with back-off), then succeeded and was not queued again.
        assert_eq!(*lock(&fake.calls), ["ns/a", "ns/a"]);
        assert!(lock(&fake.queue.state).failures.is_empty());
        let _ = stop.send(true);
        let stopped = tokio::time::timeout(Duration::from_secs(5), workers).await;
        assert!(matches!(stopped, Ok(Ok(()))), "workers stop on shutdown");
    }

    #[test]
    fn expectations_hold_until_observed() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/rs"));
        e.expect("ns/rs", 2, &["p1".to_string()]);
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        e.creation_observed("ns/rs");
        assert!(!e.satisfied("ns/rs"));
        e.deletion_observed("ns/rs", "p1");
        assert!(e.satisfied("ns/rs"));
        e.expect("ns/rs", 1, &[]);
        let later = Instant::now() + EXPECTATIONS_TIMEOUT + Duration::from_secs(1);
        assert!(e.satisfied_at("ns/rs", later));
    }

    #[test]
    fn availability_needs_min_ready_seconds() {
        let now = time("2026-01-01T00:01:00Z");
        let ready = from::<Pod>(
            serde_json::json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:30Z"}]}}),
        );
        assert!(pod_is_ready(&ready));
        assert!(pod_is_available(&ready, 0, now));
        assert!(pod_is_available(&ready, 30, now));
        assert!(!pod_is_available(&ready, 31, now));
        let not_ready = from::<Pod>(serde_json::json!({"status": {"conditions": [
            {"type": "Ready", "status": "False"}]}}));
        assert!(!pod_is_available(&not_ready, 0, now));
        let finished = from::<Pod>(serde_json::json!({"status": {"phase": "Succeeded"}}));
        assert!(!pod_is_active(&finished));
        let deleting = from::<Pod>(
            serde_json::json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
        );
        assert!(!pod_is_active(&deleting));
        assert!(pod_is_active(&from::<Pod>(serde_json::json!({}))));
    }
}
