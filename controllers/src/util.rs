//! What the ReplicaSet and Deployment controllers share: a de-duplicating work queue with
//! per-key back-off, a watched cache of objects, creation/deletion expectations, pod readiness
//! and availability, owner references, slow-start batches, and Event recording.
//!
//! Written here rather than taken from kube-runtime because the API client is Flotilla's own;
//! the shapes follow kube-runtime's and client-go's workqueue.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Notify;

use api::client::watcher::{watcher, Event as WatchedEvent};
use api::client::{Api, Client, ListParams, PostParams};
use api::core::{Event, EventSource, ObjectReference, Pod};
use api::meta::{ObjectMeta, OwnerReference, Time};

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

/// A cache of objects kept up to date by a watcher, keyed by `namespace/name`.
pub struct Store<K> {
    objects: Arc<Mutex<BTreeMap<String, K>>>,
    synced: Arc<std::sync::atomic::AtomicBool>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store {
            objects: self.objects.clone(),
            synced: self.synced.clone(),
        }
    }
}

impl<K: Clone> Default for Store<K> {
    fn default() -> Self {
        Store {
            objects: Arc::new(Mutex::new(BTreeMap::new())),
            synced: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }
}

impl<K: Clone> Store<K> {
    pub fn get(&self, key: &str) -> Option<K> {
        lock(&self.objects).get(key).cloned()
    }

    /// The objects of one namespace.
    pub fn in_namespace(&self, namespace: &str) -> Vec<K> {
        let prefix = format!("{namespace}/");
        lock(&self.objects)
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn keys(&self) -> Vec<String> {
        lock(&self.objects).keys().cloned().collect()
    }

    pub fn insert(&self, key: String, object: K) -> Option<K> {
        lock(&self.objects).insert(key, object)
    }

    pub fn remove(&self, key: &str) -> Option<K> {
        lock(&self.objects).remove(key)
    }

    /// Replaces everything (a fresh list); returns the objects that were there before.
    pub fn replace(&self, objects: BTreeMap<String, K>) -> BTreeMap<String, K> {
        let mut guard = lock(&self.objects);
        self.synced.store(true, Ordering::SeqCst);
        std::mem::replace(&mut *guard, objects)
    }

    /// True once the first full list has arrived.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }
}

/// What a watched change did to one object, for the controller to map to keys to queue.
pub enum Change<K> {
    /// The object is new, or changed (`old` is what the cache held before).
    Applied {
        old: Option<K>,
        new: K,
    },
    Deleted(K),
}

/// Watches all objects of kind `K` in every namespace into `store`, calling `on_change` for
/// each change (a re-list reports each object as applied and each vanished one as deleted).
/// Runs until the task is dropped; errors are logged and the watcher retries by itself.
pub async fn reflect<K, F>(client: Client, store: Store<K>, mut on_change: F)
where
    K: k8s_openapi::Resource
        + k8s_openapi::Metadata<Ty = ObjectMeta>
        + Serialize
        + DeserializeOwned
        + Clone
        + Send
        + 'static,
    F: FnMut(Change<K>) + Send,
{
    let mut events = watcher(Api::<K>::all(client), ListParams::default());
    while let Some(event) = events.next().await {
        match event {
            Ok(WatchedEvent::Restarted(items)) => {
                let fresh: BTreeMap<String, K> = items
                    .into_iter()
                    .map(|o| (key_of(o.metadata()), o))
                    .collect();
                let mut old = store.replace(fresh.clone());
                for (key, new) in fresh {
                    let old = old.remove(&key);
                    on_change(Change::Applied { old, new });
                }
                for (_, gone) in old {
                    on_change(Change::Deleted(gone));
                }
            }
            Ok(WatchedEvent::Applied(object)) => {
                let old = store.insert(key_of(object.metadata()), object.clone());
                on_change(Change::Applied { old, new: object });
            }
            Ok(WatchedEvent::Deleted(object)) => {
                store.remove(&key_of(object.metadata()));
                on_change(Change::Deleted(object));
            }
            Err(error) => {
                tracing::warn!(kind = K::KIND, %error, "watch failed; the watcher retries");
            }
        }
    }
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

/// Records a core/v1 Event about `object`. Failures are logged, never returned: an event is
/// a courtesy to the user and must not stop a reconcile.
pub async fn record_event(
    client: &Client,
    component: &str,
    object: ObjectReference,
    type_: &str,
    reason: &str,
    message: String,
) {
    let namespace = object.namespace.clone().unwrap_or_else(|| "default".into());
    let now = Time(Timestamp::now());
    let event = Event {
        metadata: ObjectMeta {
            name: Some(format!(
                "{}.{}",
                object.name.as_deref().unwrap_or("object"),
                unique_suffix()
            )),
            namespace: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: object,
        reason: Some(reason.to_string()),
        message: Some(message),
        type_: Some(type_.to_string()),
        source: Some(EventSource {
            component: Some(component.to_string()),
            host: None,
        }),
        reporting_component: Some(component.to_string()),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Event::default()
    };
    let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    if let Err(error) = api.create(&PostParams::default(), &event).await {
        tracing::debug!(%error, reason, "cannot record event");
    }
}

/// An object reference for events.
pub fn object_ref(api_version: &str, kind: &str, meta: &ObjectMeta) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version.to_string()),
        kind: Some(kind.to_string()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}

/// 16 hex digits, different for every call in this process and across restarts.
fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = Timestamp::now().as_nanosecond();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Truncating to 64 bits keeps the changing low part of the clock.
    format!(
        "{:016x}",
        (nanos as u64).wrapping_add(count.wrapping_mul(0x9e37_79b9))
    )
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

    fn pod(json: serde_json::Value) -> Pod {
        match serde_json::from_value(json) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn availability_needs_min_ready_seconds() {
        let now: Timestamp = match "2026-01-01T00:01:00Z".parse() {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        let ready = pod(
            serde_json::json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:30Z"}]}}),
        );
        assert!(pod_is_ready(&ready));
        assert!(pod_is_available(&ready, 0, now));
        assert!(pod_is_available(&ready, 30, now));
        assert!(!pod_is_available(&ready, 31, now));
        let not_ready = pod(serde_json::json!({"status": {"conditions": [
            {"type": "Ready", "status": "False"}]}}));
        assert!(!pod_is_available(&not_ready, 0, now));
        let finished = pod(serde_json::json!({"status": {"phase": "Succeeded"}}));
        assert!(!pod_is_active(&finished));
        let deleting =
            pod(serde_json::json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}));
        assert!(!pod_is_active(&deleting));
        assert!(pod_is_active(&pod(serde_json::json!({}))));
    }
}
