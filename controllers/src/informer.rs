//! A small shared cache of one resource, fed by [`api::client::watcher::watcher`], that every
//! controller reads instead of asking the apiserver.
//!
//! Hand-written because the project has no kube-runtime: the watcher already does list, watch and
//! re-list on 410; this adds the map of current objects, a `changed` counter for controllers that
//! recompute everything, and a broadcast of individual changes for controllers that queue keys.
//!
//! ```text
//! let pods = Informer::spawn(Api::<Pod>::all(client.clone()), ListParams::default(), shutdown.clone());
//! pods.wait_synced().await;
//! let mut changes = pods.subscribe();
//! for pod in pods.store().list() { ... }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use api::client::watcher::{watcher, Event};
use api::client::{Api, ListParams};
use api::meta::ObjectMeta;
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

/// One change the cache applied, as told to subscribers.
#[derive(Clone, Debug)]
pub enum Change<K> {
    /// Added or modified: the new state.
    Applied(Arc<K>),
    /// Deleted: the last state.
    Deleted(Arc<K>),
    /// The cache was rebuilt from a fresh list; subscribers should look at everything again.
    Restarted,
}

/// The current objects of one resource, by key. Cheap to clone; clones share the map.
pub struct Store<K> {
    objects: Arc<RwLock<HashMap<ObjectKey, Arc<K>>>>,
}

/// A [`Store`] kept up to date by a background task, with change notifications.
pub struct Informer<K> {
    store: Store<K>,
    changes: broadcast::Sender<Change<K>>,
    changed: watch::Receiver<u64>,
    synced: watch::Receiver<bool>,
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
            objects: Arc::new(RwLock::new(HashMap::new())),
        }
    }

    pub fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.read().get(key).cloned()
    }

    /// Every object, in no particular order.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().values().cloned().collect()
    }

    /// The objects of one namespace.
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        self.read()
            .iter()
            .filter(|(key, _)| key.namespace == namespace)
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
        *self.write() = map;
    }

    // A panic while holding the lock leaves the map consistent (every write is one insert,
    // remove or swap), so a poisoned lock is still usable.
    fn read(&self) -> RwLockReadGuard<'_, HashMap<ObjectKey, Arc<K>>> {
        self.objects.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<ObjectKey, Arc<K>>> {
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
    K: k8s_openapi::Resource
        + k8s_openapi::Metadata<Ty = ObjectMeta>
        + Serialize
        + DeserializeOwned
        + Clone
        + Send
        + Sync
        + 'static,
{
    /// Starts watching `api` with `params` in a background task that stops when `shutdown`
    /// becomes true (or its sender is dropped).
    pub fn spawn(
        api: Api<K>,
        params: ListParams,
        mut shutdown: watch::Receiver<bool>,
    ) -> Informer<K> {
        let store = Store::new();
        let (changes, _) = broadcast::channel(CHANGE_BUFFER);
        let (changed_tx, changed) = watch::channel(0u64);
        let (synced_tx, synced) = watch::channel(false);
        let task_store = store.clone();
        let task_changes = changes.clone();
        tokio::spawn(async move {
            let kind = K::KIND;
            let mut events = watcher(api, params);
            loop {
                let event = tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => break,
                    event = events.next() => event,
                };
                let change = match event {
                    None => break,
                    Some(Err(error)) => {
                        tracing::warn!(%kind, %error, "watch failed, retrying");
                        continue;
                    }
                    Some(Ok(event)) => apply_event(&task_store, event),
                };
                synced_tx.send_replace(true);
                changed_tx.send_modify(|n| *n = n.wrapping_add(1));
                // No subscriber is not an error: the store is still up to date.
                let _ = task_changes.send(change);
            }
            tracing::debug!(%kind, "informer stopped");
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

/// Applies one watcher event to the store and says what changed.
pub fn apply_event<K>(store: &Store<K>, event: Event<K>) -> Change<K>
where
    K: k8s_openapi::Metadata<Ty = ObjectMeta>,
{
    match event {
        Event::Restarted(objects) => {
            store.replace(objects);
            Change::Restarted
        }
        Event::Applied(object) => {
            let object = Arc::new(object);
            store.apply(object.clone());
            Change::Applied(object)
        }
        Event::Deleted(object) => {
            store.remove(&ObjectKey::of(object.metadata()));
            Change::Deleted(Arc::new(object))
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

    #[test]
    fn events_update_the_store() {
        let store = Store::<Pod>::new();
        apply_event(
            &store,
            Event::Restarted(vec![pod("a", "x", "1"), pod("b", "x", "1")]),
        );
        assert_eq!(store.len(), 2);
        assert_eq!(store.list_namespace("a").len(), 1);
        apply_event(&store, Event::Applied(pod("a", "x", "2")));
        let key = ObjectKey::new("a", "x");
        let got = store.get(&key).map(|p| p.metadata.resource_version.clone());
        assert_eq!(got, Some(Some("2".to_string())));
        let change = apply_event(&store, Event::Deleted(pod("a", "x", "3")));
        assert!(matches!(change, Change::Deleted(_)));
        assert!(store.get(&key).is_none());
        // A fresh list drops what it does not contain.
        apply_event(&store, Event::Restarted(vec![pod("c", "y", "4")]));
        assert!(store.get(&ObjectKey::new("b", "x")).is_none());
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn keys_display_like_kubectl() {
        assert_eq!(ObjectKey::new("default", "web").to_string(), "default/web");
        assert_eq!(ObjectKey::new("", "node-1").to_string(), "node-1");
    }
}
