//! The one cache of watched objects that every controller reads instead of asking the apiserver,
//! fed by [`api::client::watcher::watcher`] through [`watch_events`].
//!
//! Hand-written because the project has no kube-runtime: the watcher already does list, watch and
//! re-list on 410; this adds the map of current objects, a `changed` counter for controllers that
//! recompute everything, and the individual changes (a re-list is turned into the difference from
//! what the cache held, so nothing is missed across a watch gap) for controllers that queue keys:
//! broadcast to subscribers, or handed synchronously to a hook that runs before the next event
//! is applied (what the ReplicaSet controller's expectations need).
//!
//! ```text
//! let pods = Informer::spawn(Api::<Pod>::all(client.clone()), ListParams::default(), shutdown.clone());
//! pods.wait_synced().await;
//! let mut changes = pods.subscribe();
//! for pod in pods.store().list() { ... }
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use api::client::watcher::{watcher, Event};
use api::client::{Api, ListParams};
use api::meta::ObjectMeta;
use futures::stream::BoxStream;
use futures::StreamExt as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

/// Namespace (empty for cluster-scoped objects) and name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

/// One change the cache applied, as told to subscribers and hooks. A fresh list is told as the
/// objects it contains (each `Applied`, with what the cache held before) and those it no longer
/// contains (each `Deleted`).
#[derive(Debug)]
pub enum Change<K> {
    /// Added or modified: `old` is what the cache held before (none for a new object).
    Applied { old: Option<Arc<K>>, new: Arc<K> },
    /// Deleted: the last state.
    Deleted(Arc<K>),
}

/// The current objects of one resource, by key (namespace first). Cheap to clone; clones share
/// the map.
pub struct Store<K> {
    objects: Arc<RwLock<BTreeMap<ObjectKey, Arc<K>>>>,
}

/// A [`Store`] kept up to date by a background task, with change notifications.
pub struct Informer<K> {
    store: Store<K>,
    changes: broadcast::Sender<Change<K>>,
    changed: watch::Receiver<u64>,
    synced: watch::Receiver<bool>,
}

/// What a kind needs for the watcher to list and watch it.
pub trait Watched:
    k8s_openapi::Resource
    + k8s_openapi::Metadata<Ty = ObjectMeta>
    + Serialize
    + DeserializeOwned
    + Clone
    + Send
    + 'static
{
}

impl<K> Watched for K where
    K: k8s_openapi::Resource
        + k8s_openapi::Metadata<Ty = ObjectMeta>
        + Serialize
        + DeserializeOwned
        + Clone
        + Send
        + 'static
{
}

/// How many changes a slow subscriber may fall behind before it sees `Lagged` (and resyncs).
const CHANGE_BUFFER: usize = 4096;

impl ObjectKey {
    pub fn new(namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// The key of an object from its metadata.
    pub fn of(meta: &ObjectMeta) -> ObjectKey {
        ObjectKey {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

impl<K> Store<K>
where
    K: k8s_openapi::Metadata<Ty = ObjectMeta>,
{
    /// An empty store (for tests and for controllers that fill one by hand).
    pub fn new() -> Store<K> {
        Store {
            objects: Arc::new(RwLock::new(BTreeMap::new())),
        }
    }

    pub fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.read().get(key).cloned()
    }

    /// Every object, in no particular order.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().values().cloned().collect()
    }

    /// The objects of one namespace (the map is ordered by namespace, so this reads only them).
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        let first = ObjectKey::new(namespace, "");
        self.read()
            .range(first..)
            .take_while(|(key, _)| key.namespace == namespace)
            .map(|(_, object)| object.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Inserts or replaces an object; returns the previous state.
    pub fn apply(&self, object: Arc<K>) -> Option<Arc<K>> {
        let key = ObjectKey::of(object.metadata());
        self.write().insert(key, object)
    }

    /// Removes an object; returns its last state.
    pub fn remove(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.write().remove(key)
    }

    /// Makes the store exactly these objects.
    pub fn replace(&self, objects: Vec<K>) {
        let map = objects
            .into_iter()
            .map(|object| (ObjectKey::of(object.metadata()), Arc::new(object)))
            .collect();
        self.replace_map(map);
    }

    /// Makes the store exactly `objects`; returns what it held before.
    fn replace_map(&self, objects: BTreeMap<ObjectKey, Arc<K>>) -> BTreeMap<ObjectKey, Arc<K>> {
        std::mem::replace(&mut *self.write(), objects)
    }

    // A panic while holding the lock leaves the map consistent (every write is one insert,
    // remove or swap), so a poisoned lock is still usable.
    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<ObjectKey, Arc<K>>> {
        self.objects.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<ObjectKey, Arc<K>>> {
        self.objects.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl<K> Default for Store<K>
where
    K: k8s_openapi::Metadata<Ty = ObjectMeta>,
{
    fn default() -> Self {
        Store::new()
    }
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store {
            objects: self.objects.clone(),
        }
    }
}

impl<K> Informer<K>
where
    K: Watched + Sync,
{
    /// Starts watching `api` with `params` in a background task that stops when `shutdown`
    /// becomes true (or its sender is dropped).
    pub fn spawn(api: Api<K>, params: ListParams, shutdown: watch::Receiver<bool>) -> Informer<K> {
        Informer::spawn_with(api, params, shutdown, |_| {})
    }

    /// Like [`Informer::spawn`], and calls `on_change` with every change right after the store
    /// applied it, before the next event: nothing is lost to a slow subscriber, and the store
    /// already holds the new state when the hook runs. The hook must not block.
    pub fn spawn_with<H>(
        api: Api<K>,
        params: ListParams,
        shutdown: watch::Receiver<bool>,
        mut on_change: H,
    ) -> Informer<K>
    where
        H: FnMut(&Change<K>) + Send + 'static,
    {
        let store = Store::new();
        let (changes, _) = broadcast::channel(CHANGE_BUFFER);
        let (changed_tx, changed) = watch::channel(0u64);
        let (synced_tx, synced) = watch::channel(false);
        let task_store = store.clone();
        let task_changes = changes.clone();
        tokio::spawn(async move {
            let mut events = watch_events(api, params, shutdown);
            while let Some(event) = events.next().await {
                for change in apply_event(&task_store, event) {
                    on_change(&change);
                    // No subscriber is not an error: the store is still up to date.
                    let _ = task_changes.send(change);
                }
                synced_tx.send_replace(true);
                changed_tx.send_modify(|n| *n = n.wrapping_add(1));
            }
            tracing::debug!(kind = K::KIND, "informer stopped");
        });
        Informer {
            store,
            changes,
            changed,
            synced,
        }
    }
}

impl<K> Informer<K> {
    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// A receiver whose value grows by one on every change the cache applies (use
    /// `changed().await` on it to wake when anything happened).
    pub fn changed(&self) -> watch::Receiver<u64> {
        self.changed.clone()
    }

    /// Individual changes from now on. On `RecvError::Lagged`, look at everything again.
    pub fn subscribe(&self) -> broadcast::Receiver<Change<K>> {
        self.changes.subscribe()
    }

    /// Waits until the first complete list arrived (returns at once afterwards). Returns false
    /// if the informer stopped before that.
    pub async fn wait_synced(&self) -> bool {
        let mut synced = self.synced.clone();
        let result = synced.wait_for(|s| *s).await.is_ok();
        result
    }

    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }
}

/// The watcher's events for `api` until `shutdown` becomes true (or its sender is dropped).
/// Watch errors are logged and left out: the watcher retries by itself, with back-off.
pub fn watch_events<K>(
    api: Api<K>,
    params: ListParams,
    mut shutdown: watch::Receiver<bool>,
) -> BoxStream<'static, Event<K>>
where
    K: Watched,
{
    let stop = async move {
        // A dropped sender means nobody can ask for a stop any more: stop as well.
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    watcher(api, params)
        .take_until(stop)
        .filter_map(|event| async move {
            match event {
                Ok(event) => Some(event),
                Err(error) => {
                    tracing::warn!(kind = K::KIND, %error, "watch failed, retrying");
                    None
                }
            }
        })
        .boxed()
}

/// Applies one watcher event to the store and says what changed; a fresh list is compared with
/// what the store held.
pub fn apply_event<K>(store: &Store<K>, event: Event<K>) -> Vec<Change<K>>
where
    K: k8s_openapi::Metadata<Ty = ObjectMeta>,
{
    match event {
        Event::Restarted(objects) => {
            let fresh: BTreeMap<ObjectKey, Arc<K>> = objects
                .into_iter()
                .map(|object| (ObjectKey::of(object.metadata()), Arc::new(object)))
                .collect();
            let mut old = store.replace_map(fresh.clone());
            let mut changes: Vec<Change<K>> = fresh
                .into_iter()
                .map(|(key, new)| Change::Applied {
                    old: old.remove(&key),
                    new,
                })
                .collect();
            changes.extend(old.into_values().map(Change::Deleted));
            changes
        }
        Event::Applied(object) => {
            let new = Arc::new(object);
            let old = store.apply(new.clone());
            vec![Change::Applied { old, new }]
        }
        Event::Deleted(object) => {
            let key = ObjectKey::of(object.metadata());
            // The store's copy is the last state it saw; the event's is newer (it may carry the
            // deletion timestamp), so that one is told.
            store.remove(&key);
            vec![Change::Deleted(Arc::new(object))]
        }
    }
}

impl<K> Clone for Change<K> {
    fn clone(&self) -> Self {
        match self {
            Change::Applied { old, new } => Change::Applied {
                old: old.clone(),
                new: new.clone(),
            },
            Change::Deleted(object) => Change::Deleted(object.clone()),
        }
    }
}

impl<K> Change<K> {
    /// The object the change is about: its new state, or its last one if deleted.
    pub fn object(&self) -> &Arc<K> {
        match self {
            Change::Applied { new, .. } => new,
            Change::Deleted(object) => object,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::core::Pod;

    fn pod(namespace: &str, name: &str, rv: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                resource_version: Some(rv.into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    fn names(changes: &[Change<Pod>]) -> Vec<String> {
        let mut names: Vec<String> = changes
            .iter()
            .map(|change| {
                let what = match change {
                    Change::Applied { old: None, .. } => "added",
                    Change::Applied { old: Some(_), .. } => "modified",
                    Change::Deleted(_) => "deleted",
                };
                format!("{what} {}", ObjectKey::of(&change.object().metadata))
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn events_update_the_store() {
        let store = Store::<Pod>::new();
        let changes = apply_event(
            &store,
            Event::Restarted(vec![pod("a", "x", "1"), pod("b", "x", "1")]),
        );
        assert_eq!(names(&changes), ["added a/x", "added b/x"]);
        assert_eq!(store.len(), 2);
        assert_eq!(store.list_namespace("a").len(), 1);
        let changes = apply_event(&store, Event::Applied(pod("a", "x", "2")));
        match changes.as_slice() {
            [Change::Applied {
                old: Some(old),
                new,
            }] => {
                assert_eq!(old.metadata.resource_version.as_deref(), Some("1"));
                assert_eq!(new.metadata.resource_version.as_deref(), Some("2"));
            }
            other => panic!("{other:?}"),
        }
        let key = ObjectKey::new("a", "x");
        let got = store.get(&key).map(|p| p.metadata.resource_version.clone());
        assert_eq!(got, Some(Some("2".to_string())));
        let changes = apply_event(&store, Event::Deleted(pod("a", "x", "3")));
        assert_eq!(names(&changes), ["deleted a/x"]);
        assert!(store.get(&key).is_none());
    }

    #[test]
    fn a_fresh_list_is_told_as_its_difference_from_the_cache() {
        let store = Store::<Pod>::new();
        apply_event(
            &store,
            Event::Restarted(vec![pod("a", "x", "1"), pod("b", "x", "1")]),
        );
        // Across a watch gap b/x was deleted and c/y created: both are told.
        let changes = apply_event(
            &store,
            Event::Restarted(vec![pod("a", "x", "5"), pod("c", "y", "4")]),
        );
        assert_eq!(
            names(&changes),
            ["added c/y", "deleted b/x", "modified a/x"]
        );
        assert!(store.get(&ObjectKey::new("b", "x")).is_none());
        assert_eq!(store.len(), 2);
        assert_eq!(store.list_namespace("c").len(), 1);
        assert!(store.list_namespace("").is_empty());
    }

    #[test]
    fn keys_display_like_kubectl() {
        assert_eq!(ObjectKey::new("default", "web").to_string(), "default/web");
        assert_eq!(ObjectKey::new("", "node-1").to_string(), "node-1");
    }
}
