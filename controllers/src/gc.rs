//! The garbage collector: keeps a graph of every object's `ownerReferences` (indexed by uid, for
//! every kind of [`api::resource::RESOURCES`] except Events) and
//! - deletes (in the background) a dependent whose owners are all gone;
//! - for an owner being deleted with the `foregroundDeletion` finalizer, deletes its dependents
//!   (those that have dependents of their own in the foreground, so it recurses), then removes the
//!   finalizer once no dependent with `blockOwnerDeletion` remains;
//! - for an owner being deleted with the `orphan` finalizer, removes its uid from its dependents'
//!   `ownerReferences`, then removes the finalizer,
//!
//! as Kubernetes' garbage collector does. Because the graph is fed by one watch per kind, an owner
//! may show up later than its dependent; so an owner that looks absent is looked up on the server
//! (by name, comparing uids) before anything is deleted for its absence. Events are left out: they
//! are the most numerous objects and nothing owns them.
//!
//! The decisions are the pure [`decide`] over a [`Graph`]; [`run`] feeds the graph, queues the
//! uids a change touches, and carries the actions out.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use api::client::watcher::Event;
use api::client::{
    Api, Client, DeleteParams, DynamicApi, ListParams, Patch, PatchParams, PropagationPolicy,
};
use api::meta::{ObjectMeta, OwnerReference, Preconditions};
use api::resource::ResourceInfo;
use futures::StreamExt as _;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::informer::{watch_events, Watched};
use crate::ControllerError;

pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
pub const ORPHAN_FINALIZER: &str = "orphan";

/// How often every object is looked at again without events.
const RESYNC: Duration = Duration::from_secs(30);
/// Changes arriving within this window are handled together.
const BATCH: Duration = Duration::from_millis(20);

/// What the collector knows of one object.
#[derive(Clone, Debug)]
pub struct Item {
    pub info: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub resource_version: Option<String>,
    pub owners: Vec<OwnerReference>,
    pub finalizers: Vec<String>,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
}

/// Every object by uid, and the dependents of every owner uid.
#[derive(Debug, Default)]
pub struct Graph {
    items: HashMap<String, Item>,
    /// Owner uid → uids of the objects naming it in `ownerReferences` (the owner need not exist).
    dependents: HashMap<String, HashSet<String>>,
}

/// One thing to do, decided by [`decide`].
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Delete this object. `unless_owners_exist`: first check on the server that none of these
    /// owners exists (they looked absent in the graph); if one does, do nothing.
    Delete {
        uid: String,
        policy: PropagationPolicy,
        unless_owners_exist: Vec<OwnerReference>,
    },
    /// Remove these owner uids from the object's `ownerReferences`. `verify_absent`: only the
    /// owners among them that the server confirms absent are removed.
    RemoveOwners {
        uid: String,
        owners: Vec<String>,
        verify_absent: bool,
    },
    /// Remove this finalizer from the object.
    RemoveFinalizer {
        uid: String,
        finalizer: &'static str,
    },
}

/// Runs the collector until `shutdown` becomes true.
pub async fn run(
    client: Client,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ControllerError> {
    use api::{apps, coordination, core};
    let (tx, mut rx) = mpsc::channel::<GraphEvent>(1024);
    let mut kinds = 0usize;
    macro_rules! feed {
        ($($k:ty),*) => {$(
            kinds += 1;
            spawn_feed::<$k>(client.clone(), tx.clone(), shutdown.clone());
        )*};
    }
    feed!(
        core::Namespace,
        core::Node,
        core::Pod,
        core::Service,
        core::Endpoints,
        core::ConfigMap,
        core::Secret,
        apps::Deployment,
        apps::ReplicaSet,
        coordination::Lease
    );
    drop(tx);

    let mut graph = Graph::default();
    let mut synced: HashSet<&'static str> = HashSet::new();
    let mut queue: HashSet<String> = HashSet::new();
    let mut resync = tokio::time::interval(RESYNC);
    let mut started = false;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
            _ = resync.tick() => queue.extend(graph.items.keys().cloned()),
            event = rx.recv() => {
                let Some(event) = event else { return Ok(()) };
                apply(&mut graph, event, &mut queue, &mut synced);
                // Take whatever else is already waiting, so a burst is handled as one batch.
                while let Ok(event) = rx.try_recv() {
                    apply(&mut graph, event, &mut queue, &mut synced);
                }
            }
        }
        // Until every kind has been listed, owners would look absent that are not.
        if synced.len() < kinds {
            continue;
        }
        if !started {
            tracing::info!(objects = graph.items.len(), "garbage collector started");
            started = true;
            queue.extend(graph.items.keys().cloned());
        }
        // Server look-ups of owners, shared by the batch: deleting a ReplicaSet makes all its pods
        // ask about the same owner.
        let mut lookups: HashMap<String, bool> = HashMap::new();
        for uid in queue.drain().collect::<Vec<_>>() {
            for action in decide(&graph, &uid) {
                if let Err(error) = execute(&client, &graph, &action, &mut lookups).await {
                    tracing::warn!(%uid, %error, ?action, "garbage collection step failed, will retry");
                }
            }
        }
        tokio::time::sleep(BATCH).await;
    }
}

impl Graph {
    pub fn get(&self, uid: &str) -> Option<&Item> {
        self.items.get(uid)
    }

    /// The uids of the objects naming `owner` as an owner.
    pub fn dependents_of(&self, owner: &str) -> Vec<String> {
        let mut uids: Vec<String> = self
            .dependents
            .get(owner)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default();
        uids.sort();
        uids
    }

    /// Adds or replaces an object; returns the uids whose decision may have changed.
    pub fn upsert(&mut self, item: Item) -> Vec<String> {
        let mut touched = vec![item.uid.clone()];
        if let Some(old) = self.items.remove(&item.uid) {
            self.unlink(&old);
            touched.extend(old.owners.iter().map(|o| o.uid.clone()));
        }
        for owner in &item.owners {
            self.dependents
                .entry(owner.uid.clone())
                .or_default()
                .insert(item.uid.clone());
            touched.push(owner.uid.clone());
        }
        touched.extend(self.dependents_of(&item.uid));
        self.items.insert(item.uid.clone(), item);
        touched
    }

    /// Removes an object; returns the uids whose decision may have changed.
    pub fn remove(&mut self, uid: &str) -> Vec<String> {
        let mut touched = self.dependents_of(uid);
        if let Some(old) = self.items.remove(uid) {
            self.unlink(&old);
            touched.extend(old.owners.iter().map(|o| o.uid.clone()));
        }
        touched
    }

    /// Makes the objects of one kind exactly `items`; returns the uids touched.
    pub fn replace_kind(&mut self, info: &'static ResourceInfo, items: Vec<Item>) -> Vec<String> {
        let new: HashSet<String> = items.iter().map(|i| i.uid.clone()).collect();
        let stale: Vec<String> = self
            .items
            .values()
            .filter(|i| std::ptr::eq(i.info, info) && !new.contains(&i.uid))
            .map(|i| i.uid.clone())
            .collect();
        let mut touched = Vec::new();
        for uid in stale {
            touched.extend(self.remove(&uid));
        }
        for item in items {
            touched.extend(self.upsert(item));
        }
        touched
    }

    fn unlink(&mut self, item: &Item) {
        for owner in &item.owners {
            if let Some(set) = self.dependents.get_mut(&owner.uid) {
                set.remove(&item.uid);
                if set.is_empty() {
                    self.dependents.remove(&owner.uid);
                }
            }
        }
    }

    /// How an owner reference of a dependent stands.
    fn owner_state(&self, owner: &OwnerReference) -> OwnerState {
        match self.items.get(&owner.uid) {
            None => OwnerState::Absent,
            Some(item)
                if item.deleting && item.finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) =>
            {
                OwnerState::WaitingForDependents
            }
            Some(_) => OwnerState::Solid,
        }
    }
}

/// What the collector should do about the object `uid` now.
pub fn decide(graph: &Graph, uid: &str) -> Vec<Action> {
    let Some(item) = graph.get(uid) else {
        return Vec::new();
    };
    let mut actions = Vec::new();
    if item.deleting {
        if item.finalizers.iter().any(|f| f == ORPHAN_FINALIZER) {
            actions.extend(orphan(graph, item));
        }
        if item.finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) {
            actions.extend(foreground(graph, item));
        }
        // An object on its way out is not deleted again for its owners' sake.
        return actions;
    }
    if item.owners.is_empty() {
        return actions;
    }
    let mut solid = false;
    let mut absent = Vec::new();
    let mut waiting = Vec::new();
    for owner in &item.owners {
        match graph.owner_state(owner) {
            OwnerState::Solid => solid = true,
            OwnerState::Absent => absent.push(owner.clone()),
            OwnerState::WaitingForDependents => waiting.push(owner.clone()),
        }
    }
    if solid {
        // Another owner keeps it alive: only the references to gone owners are dropped, and those
        // to owners deleting in the foreground (so they do not wait for this object).
        if !absent.is_empty() {
            actions.push(Action::RemoveOwners {
                uid: uid.to_string(),
                owners: absent.iter().map(|o| o.uid.clone()).collect(),
                verify_absent: true,
            });
        }
        if !waiting.is_empty() {
            actions.push(Action::RemoveOwners {
                uid: uid.to_string(),
                owners: waiting.iter().map(|o| o.uid.clone()).collect(),
                verify_absent: false,
            });
        }
        return actions;
    }
    let policy = if !waiting.is_empty() && !graph.dependents_of(uid).is_empty() {
        PropagationPolicy::Foreground
    } else {
        PropagationPolicy::Background
    };
    actions.push(Action::Delete {
        uid: uid.to_string(),
        policy,
        unless_owners_exist: absent,
    });
    actions
}

enum OwnerState {
    Solid,
    Absent,
    WaitingForDependents,
}

/// Dependents lose their reference to `owner`; once none holds one, the finalizer goes.
fn orphan(graph: &Graph, owner: &Item) -> Vec<Action> {
    let dependents = graph.dependents_of(&owner.uid);
    if dependents.is_empty() {
        return vec![Action::RemoveFinalizer {
            uid: owner.uid.clone(),
            finalizer: ORPHAN_FINALIZER,
        }];
    }
    dependents
        .into_iter()
        .map(|uid| Action::RemoveOwners {
            uid,
            owners: vec![owner.uid.clone()],
            verify_absent: false,
        })
        .collect()
}

/// Dependents are deleted; once none that blocks the owner's deletion remains, the finalizer goes.
fn foreground(graph: &Graph, owner: &Item) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut blocking = 0usize;
    for uid in graph.dependents_of(&owner.uid) {
        let Some(dependent) = graph.get(&uid) else {
            continue;
        };
        let reference = dependent.owners.iter().find(|o| o.uid == owner.uid);
        if reference.is_some_and(|r| r.block_owner_deletion == Some(true)) {
            blocking += 1;
        }
        if dependent.deleting {
            continue;
        }
        let other_solid_owner = dependent
            .owners
            .iter()
            .any(|o| o.uid != owner.uid && matches!(graph.owner_state(o), OwnerState::Solid));
        if other_solid_owner {
            actions.push(Action::RemoveOwners {
                uid,
                owners: vec![owner.uid.clone()],
                verify_absent: false,
            });
            continue;
        }
        let policy = if graph.dependents_of(&uid).is_empty() {
            PropagationPolicy::Background
        } else {
            PropagationPolicy::Foreground
        };
        actions.push(Action::Delete {
            uid,
            policy,
            unless_owners_exist: Vec::new(),
        });
    }
    if blocking == 0 {
        actions.push(Action::RemoveFinalizer {
            uid: owner.uid.clone(),
            finalizer: FOREGROUND_FINALIZER,
        });
    }
    actions
}

/// What a kind's feed tells the collector.
enum GraphEvent {
    Restarted(&'static ResourceInfo, Vec<Item>),
    Applied(Item),
    Deleted(String),
}

fn apply(
    graph: &mut Graph,
    event: GraphEvent,
    queue: &mut HashSet<String>,
    synced: &mut HashSet<&'static str>,
) {
    let touched = match event {
        GraphEvent::Restarted(info, items) => {
            synced.insert(info.kind);
            graph.replace_kind(info, items)
        }
        GraphEvent::Applied(item) => graph.upsert(item),
        GraphEvent::Deleted(uid) => graph.remove(&uid),
    };
    queue.extend(touched);
}

fn item_of(info: &'static ResourceInfo, meta: &ObjectMeta) -> Option<Item> {
    Some(Item {
        info,
        namespace: meta.namespace.clone().filter(|n| !n.is_empty()),
        name: meta.name.clone()?,
        uid: meta.uid.clone().filter(|u| !u.is_empty())?,
        resource_version: meta.resource_version.clone(),
        owners: meta.owner_references.clone().unwrap_or_default(),
        finalizers: meta.finalizers.clone().unwrap_or_default(),
        deleting: meta.deletion_timestamp.is_some(),
    })
}

/// Watches one kind and sends its objects' graph entries to the collector. Not an [`Informer`]:
/// the graph keeps only the metadata it needs, where an informer would keep every object of
/// every kind a second time; the watch loop itself is the shared [`watch_events`].
///
/// [`Informer`]: crate::informer::Informer
fn spawn_feed<K>(client: Client, tx: mpsc::Sender<GraphEvent>, shutdown: watch::Receiver<bool>)
where
    K: Watched,
{
    let Some(info) = api::resource::info_of::<K>() else {
        tracing::warn!(
            kind = K::KIND,
            "kind not in the resource table, not collected"
        );
        return;
    };
    tokio::spawn(async move {
        let mut events = watch_events(Api::<K>::all(client), ListParams::default(), shutdown);
        while let Some(event) = events.next().await {
            let message = match event {
                Event::Restarted(objects) => GraphEvent::Restarted(
                    info,
                    objects
                        .iter()
                        .filter_map(|o| item_of(info, o.metadata()))
                        .collect(),
                ),
                Event::Applied(object) => match item_of(info, object.metadata()) {
                    Some(item) => GraphEvent::Applied(item),
                    None => continue,
                },
                Event::Deleted(object) => match object.metadata().uid.clone() {
                    Some(uid) => GraphEvent::Deleted(uid),
                    None => continue,
                },
            };
            if tx.send(message).await.is_err() {
                return;
            }
        }
    });
}

fn dynamic(client: &Client, item: &Item) -> DynamicApi {
    DynamicApi::new(client.clone(), item.info, item.namespace.as_deref())
}

/// Whether `owner` (named by a dependent in `namespace`) exists on the server with its uid.
async fn owner_exists(
    client: &Client,
    namespace: Option<&str>,
    owner: &OwnerReference,
    lookups: &mut HashMap<String, bool>,
) -> Result<bool, ControllerError> {
    if let Some(known) = lookups.get(&owner.uid) {
        return Ok(*known);
    }
    let Some(info) = api::resource::by_kind(&owner.api_version, &owner.kind) else {
        // A kind this cluster does not serve can never exist.
        return Ok(false);
    };
    if info.namespaced() && namespace.is_none() {
        // A cluster-scoped object cannot be owned by a namespaced one; Kubernetes treats such a
        // reference as pointing at nothing.
        return Ok(false);
    }
    let api = DynamicApi::new(client.clone(), info, namespace);
    let found = api.get_opt(&owner.name).await?;
    let exists = found.is_some_and(|object| {
        object.pointer("/metadata/uid").and_then(|u| u.as_str()) == Some(owner.uid.as_str())
    });
    lookups.insert(owner.uid.clone(), exists);
    Ok(exists)
}

async fn execute(
    client: &Client,
    graph: &Graph,
    action: &Action,
    lookups: &mut HashMap<String, bool>,
) -> Result<(), ControllerError> {
    match action {
        Action::Delete {
            uid,
            policy,
            unless_owners_exist,
        } => {
            let Some(item) = graph.get(uid) else {
                return Ok(());
            };
            for owner in unless_owners_exist {
                if owner_exists(client, item.namespace.as_deref(), owner, lookups).await? {
                    tracing::debug!(%uid, owner = %owner.uid, "owner exists after all, the graph is behind");
                    return Ok(());
                }
            }
            let params = DeleteParams {
                propagation_policy: Some(*policy),
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match dynamic(client, item).delete(&item.name, &params).await {
                Ok(_) => tracing::info!(
                    kind = item.info.kind, namespace = ?item.namespace, name = %item.name, ?policy,
                    "deleted object whose owners are gone or being deleted"
                ),
                // Gone already, or another object by that name (the uid precondition failed).
                Err(e) if e.is_not_found() || e.is_conflict() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Action::RemoveOwners {
            uid,
            owners,
            verify_absent,
        } => {
            let Some(item) = graph.get(uid) else {
                return Ok(());
            };
            let mut remove: Vec<&String> = Vec::new();
            for owner in owners {
                if *verify_absent {
                    if let Some(reference) = item.owners.iter().find(|o| &o.uid == owner) {
                        if owner_exists(client, item.namespace.as_deref(), reference, lookups)
                            .await?
                        {
                            continue;
                        }
                    }
                }
                remove.push(owner);
            }
            if remove.is_empty() {
                return Ok(());
            }
            let kept: Vec<&OwnerReference> = item
                .owners
                .iter()
                .filter(|o| !remove.contains(&&o.uid))
                .collect();
            if patch_list(client, item, "ownerReferences", &kept).await? {
                tracing::info!(
                    kind = item.info.kind, namespace = ?item.namespace, name = %item.name,
                    removed = ?remove, "removed owner references"
                );
            }
        }
        Action::RemoveFinalizer { uid, finalizer } => {
            let Some(item) = graph.get(uid) else {
                return Ok(());
            };
            let kept: Vec<&String> = item.finalizers.iter().filter(|f| f != finalizer).collect();
            if patch_list(client, item, "finalizers", &kept).await? {
                tracing::info!(
                    kind = item.info.kind, namespace = ?item.namespace, name = %item.name,
                    %finalizer, "removed finalizer"
                );
            }
        }
    }
    Ok(())
}

/// Sets the list `metadata.<field>` of `item` to `kept` (removing the field when empty), on the
/// version the graph knows. Returns false when the object changed or went meanwhile: then the
/// next event decides again.
async fn patch_list<T: Serialize>(
    client: &Client,
    item: &Item,
    field: &str,
    kept: &[T],
) -> Result<bool, ControllerError> {
    let value = if kept.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::json!(kept)
    };
    let patch = Patch::Merge(serde_json::json!({
        "metadata": {
            "resourceVersion": item.resource_version,
            field: value,
        }
    }));
    match dynamic(client, item)
        .patch(&item.name, &PatchParams::default(), &patch)
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() || e.is_conflict() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::resource::by_kind;

    fn info(api_version: &str, kind: &str) -> &'static ResourceInfo {
        match by_kind(api_version, kind) {
            Some(info) => info,
            None => panic!("{kind} is in the resource table"),
        }
    }

    fn owner_ref(kind: &str, uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: if kind == "Pod" { "v1" } else { "apps/v1" }.into(),
            kind: kind.into(),
            name: format!("{kind}-{uid}"),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(block),
        }
    }

    fn item(kind: &str, uid: &str, owners: Vec<OwnerReference>) -> Item {
        let api_version = if kind == "Pod" { "v1" } else { "apps/v1" };
        Item {
            info: info(api_version, kind),
            namespace: Some("default".into()),
            name: format!("{kind}-{uid}"),
            uid: uid.into(),
            resource_version: Some("1".into()),
            owners,
            finalizers: Vec::new(),
            deleting: false,
        }
    }

    fn deleting(mut item: Item, finalizer: &str) -> Item {
        item.deleting = true;
        item.finalizers = vec![finalizer.to_string()];
        item
    }

    /// Deployment d → ReplicaSet r → pods p1, p2.
    fn chain(graph: &mut Graph) {
        graph.upsert(item("Deployment", "d", vec![]));
        graph.upsert(item(
            "ReplicaSet",
            "r",
            vec![owner_ref("Deployment", "d", true)],
        ));
        graph.upsert(item("Pod", "p1", vec![owner_ref("ReplicaSet", "r", true)]));
        graph.upsert(item("Pod", "p2", vec![owner_ref("ReplicaSet", "r", true)]));
    }

    #[test]
    fn objects_with_live_owners_or_none_are_kept() {
        let mut graph = Graph::default();
        chain(&mut graph);
        for uid in ["d", "r", "p1", "p2", "missing"] {
            assert_eq!(decide(&graph, uid), vec![], "{uid}");
        }
    }

    #[test]
    fn background_deletes_dependents_of_a_gone_owner_after_checking_the_server() {
        let mut graph = Graph::default();
        chain(&mut graph);
        let touched = graph.remove("d");
        assert!(
            touched.contains(&"r".to_string()),
            "the dependent is looked at again"
        );
        assert_eq!(
            decide(&graph, "r"),
            vec![Action::Delete {
                uid: "r".into(),
                policy: PropagationPolicy::Background,
                unless_owners_exist: vec![owner_ref("Deployment", "d", true)],
            }]
        );
        // Its pods are kept until the ReplicaSet is really gone.
        assert_eq!(decide(&graph, "p1"), vec![]);
        graph.remove("r");
        assert!(matches!(
            decide(&graph, "p1").as_slice(),
            [Action::Delete { .. }]
        ));
    }

    #[test]
    fn a_dependent_with_another_live_owner_only_loses_the_dead_reference() {
        let mut graph = Graph::default();
        chain(&mut graph);
        graph.upsert(item(
            "Pod",
            "shared",
            vec![
                owner_ref("ReplicaSet", "r", true),
                owner_ref("ReplicaSet", "gone", false),
            ],
        ));
        assert_eq!(
            decide(&graph, "shared"),
            vec![Action::RemoveOwners {
                uid: "shared".into(),
                owners: vec!["gone".into()],
                verify_absent: true,
            }]
        );
    }

    #[test]
    fn foreground_deletes_dependents_then_drops_the_finalizer() {
        let mut graph = Graph::default();
        chain(&mut graph);
        graph.upsert(deleting(
            item("Deployment", "d", vec![]),
            FOREGROUND_FINALIZER,
        ));
        // The ReplicaSet has pods, so it goes in the foreground too; the finalizer stays.
        assert_eq!(
            decide(&graph, "d"),
            vec![Action::Delete {
                uid: "r".into(),
                policy: PropagationPolicy::Foreground,
                unless_owners_exist: vec![],
            }]
        );
        // From the ReplicaSet's side the same conclusion is reached.
        assert_eq!(
            decide(&graph, "r"),
            vec![Action::Delete {
                uid: "r".into(),
                policy: PropagationPolicy::Foreground,
                unless_owners_exist: vec![],
            }]
        );
        let r = item("ReplicaSet", "r", vec![owner_ref("Deployment", "d", true)]);
        graph.upsert(deleting(r, FOREGROUND_FINALIZER));
        assert_eq!(
            decide(&graph, "d"),
            vec![],
            "waits for the terminating ReplicaSet"
        );
        let pods = decide(&graph, "r");
        assert_eq!(pods.len(), 2);
        assert!(pods.iter().all(|a| matches!(
            a,
            Action::Delete {
                policy: PropagationPolicy::Background,
                ..
            }
        )));
        graph.remove("p1");
        graph.remove("p2");
        assert_eq!(
            decide(&graph, "r"),
            vec![Action::RemoveFinalizer {
                uid: "r".into(),
                finalizer: FOREGROUND_FINALIZER
            }]
        );
        graph.remove("r");
        assert_eq!(
            decide(&graph, "d"),
            vec![Action::RemoveFinalizer {
                uid: "d".into(),
                finalizer: FOREGROUND_FINALIZER
            }]
        );
    }

    #[test]
    fn foreground_does_not_wait_for_non_blocking_dependents() {
        let mut graph = Graph::default();
        graph.upsert(deleting(
            item("ReplicaSet", "r", vec![]),
            FOREGROUND_FINALIZER,
        ));
        graph.upsert(item("Pod", "p", vec![owner_ref("ReplicaSet", "r", false)]));
        let actions = decide(&graph, "r");
        assert_eq!(actions.len(), 2);
        assert!(matches!(&actions[0], Action::Delete { uid, .. } if uid == "p"));
        assert!(matches!(&actions[1], Action::RemoveFinalizer { .. }));
    }

    #[test]
    fn orphan_strips_references_then_drops_the_finalizer() {
        let mut graph = Graph::default();
        chain(&mut graph);
        graph.upsert(deleting(
            item("ReplicaSet", "r", vec![owner_ref("Deployment", "d", true)]),
            ORPHAN_FINALIZER,
        ));
        assert_eq!(
            decide(&graph, "r"),
            vec![
                Action::RemoveOwners {
                    uid: "p1".into(),
                    owners: vec!["r".into()],
                    verify_absent: false
                },
                Action::RemoveOwners {
                    uid: "p2".into(),
                    owners: vec!["r".into()],
                    verify_absent: false
                },
            ]
        );
        // The pods are not deleted although their owner is going.
        assert_eq!(decide(&graph, "p1"), vec![]);
        let touched = graph.upsert(item("Pod", "p1", vec![]));
        assert!(
            touched.contains(&"r".to_string()),
            "the owner is looked at again"
        );
        graph.upsert(item("Pod", "p2", vec![]));
        assert_eq!(
            decide(&graph, "r"),
            vec![Action::RemoveFinalizer {
                uid: "r".into(),
                finalizer: ORPHAN_FINALIZER
            }]
        );
    }

    #[test]
    fn a_fresh_list_replaces_one_kind_only() {
        let mut graph = Graph::default();
        chain(&mut graph);
        let pod = info("v1", "Pod");
        let touched = graph.replace_kind(
            pod,
            vec![item("Pod", "p3", vec![owner_ref("ReplicaSet", "r", true)])],
        );
        assert!(touched.contains(&"r".to_string()));
        assert!(graph.get("p1").is_none());
        assert!(graph.get("r").is_some(), "other kinds stay");
        assert_eq!(graph.dependents_of("r"), ["p3"]);
        // An object without a uid cannot be tracked.
        let meta = ObjectMeta {
            name: Some("x".into()),
            ..ObjectMeta::default()
        };
        assert!(item_of(pod, &meta).is_none());
    }
}
