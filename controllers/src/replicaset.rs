//! The ReplicaSet controller: keeps `spec.replicas` active pods matching each ReplicaSet's
//! selector, owned through a controller reference, and reports what it sees in the status.
//!
//! The decisions are the pure [`plan`] (which pods to adopt, release, create and delete, and the
//! status), tested with tables; [`run`] only watches, queues and applies the plan.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;
use tokio::sync::watch;

use api::apps::{ReplicaSet, ReplicaSetStatus};
use api::client::{
    Api, Client, ClientError, DeleteParams, ListParams, Patch, PatchParams, PostParams,
};
use api::core::Pod;
use api::meta::ObjectMeta;
use api::selector::LabelSelector;

use api::client::events::{object_reference, EventType, Recorder};
use crate::informer::{Change, Informer, Store};
use crate::util::{self, Expectations, Reconciler, WorkQueue};
use crate::ControllerError;

/// The component name in Events.
pub const COMPONENT: &str = "replicaset-controller";

/// What one sync of a ReplicaSet should do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Orphan pods that match the selector: take them (add a controller reference).
    pub adopt: Vec<String>,
    /// Owned pods that no longer match: let them go (remove the controller reference).
    pub release: Vec<String>,
    /// How many pods to create from the template.
    pub create: usize,
    /// Pods to delete, best candidates first.
    pub delete: Vec<String>,
    /// The status to write.
    pub status: ReplicaSetStatus,
}

/// Why a ReplicaSet cannot be planned for.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    #[error("replica set {name} has an invalid selector: {reason}; fix spec.selector")]
    InvalidSelector { name: String, reason: String },
    #[error(
        "replica set {name} has an empty selector, which would match every pod; set spec.selector"
    )]
    EmptySelector { name: String },
}

/// Decides what to do for `rs` given every pod of its namespace. `manage` is false while
/// earlier creations or deletions are still unseen (expectations): then nothing is created or
/// deleted, but adoption and status still happen.
pub fn plan(
    rs: &ReplicaSet,
    pods: &[Pod],
    now: Timestamp,
    manage: bool,
) -> Result<Plan, PlanError> {
    let name = rs.metadata.name.clone().unwrap_or_default();
    let spec = rs.spec.as_ref();
    let selector_meta = spec.map(|s| s.selector.clone()).unwrap_or_default();
    let selector =
        LabelSelector::from_meta(&selector_meta).map_err(|e| PlanError::InvalidSelector {
            name: name.clone(),
            reason: e.to_string(),
        })?;
    if selector.is_empty() {
        return Err(PlanError::EmptySelector { name });
    }
    let uid = rs.metadata.uid.as_deref().unwrap_or_default();
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let mut result = Plan::default();
    let mut claimed: Vec<&Pod> = Vec::new();
    for pod in pods {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let matches = selector.matches(&labels);
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        match util::controller_of(&pod.metadata) {
            Some(owner) if owner.uid == uid => {
                if matches {
                    claimed.push(pod);
                } else if pod.metadata.deletion_timestamp.is_none() {
                    result.release.push(pod_name);
                }
            }
            Some(_) => {}
            None => {
                if matches && !deleting && pod.metadata.deletion_timestamp.is_none() {
                    result.adopt.push(pod_name);
                    claimed.push(pod);
                }
            }
        }
    }
    let active: Vec<&Pod> = claimed
        .iter()
        .copied()
        .filter(|p| util::pod_is_active(p))
        .collect();
    let wanted = usize::try_from(spec.and_then(|s| s.replicas).unwrap_or(1)).unwrap_or(0);
    if manage && !deleting {
        if active.len() < wanted {
            result.create = (wanted - active.len()).min(util::BURST_REPLICAS);
        } else if active.len() > wanted {
            let excess = (active.len() - wanted).min(util::BURST_REPLICAS);
            let mut ranked = active.clone();
            ranked.sort_by(|a, b| deletion_order(a, b));
            result.delete = ranked
                .into_iter()
                .take(excess)
                .map(|p| p.metadata.name.clone().unwrap_or_default())
                .collect();
        }
    }
    result.status = status(rs, &active, now);
    Ok(result)
}

/// Which of two pods to delete first: `Less` means `a` goes first. Unscheduled before
/// scheduled, Pending before Unknown before Running, not ready before ready, more restarts
/// before fewer, newer before older (as Kubernetes' `ActivePods` ordering).
pub fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let scheduled = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let phase_rank = |p: &Pod| match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Running") => 2,
        Some("Unknown") => 1,
        _ => 0,
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    scheduled(a)
        .cmp(&scheduled(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| util::pod_is_ready(a).cmp(&util::pod_is_ready(b)))
        .then_with(|| util::restart_count(b).cmp(&util::restart_count(a)))
        .then_with(|| created(b).cmp(&created(a)))
}

/// The status for `active`, the ReplicaSet's active pods.
pub fn status(rs: &ReplicaSet, active: &[&Pod], now: Timestamp) -> ReplicaSetStatus {
    let spec = rs.spec.as_ref();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(active.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let fully_labeled = count(&|p| {
        let labels = p.metadata.labels.clone().unwrap_or_default();
        template_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    });
    ReplicaSetStatus {
        replicas: i32::try_from(active.len()).unwrap_or(i32::MAX),
        fully_labeled_replicas: Some(fully_labeled),
        ready_replicas: Some(count(&|p| util::pod_is_ready(p))),
        available_replicas: Some(count(&|p| util::pod_is_available(p, min_ready, now))),
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
        terminating_replicas: None,
    }
}

/// A pod to create for `rs`: its template, named `<rs>-<random>` by the server, owned by it.
pub fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.metadata.name.as_deref().unwrap_or("pod"))),
            namespace: rs.metadata.namespace.clone(),
            labels: template_meta.labels,
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: Some(vec![util::controller_ref(
                "apps/v1",
                "ReplicaSet",
                &rs.metadata,
            )]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Runs the controller until `shutdown` turns true.
pub async fn run(client: Client, shutdown: watch::Receiver<bool>) -> Result<(), ControllerError> {
    let queue = WorkQueue::new();
    let expectations = Expectations::default();
    let sets = {
        let (queue, expectations) = (queue.clone(), expectations.clone());
        Informer::spawn_with(
            Api::<ReplicaSet>::all(client.clone()),
            ListParams::default(),
            shutdown.clone(),
            move |change| {
                let key = util::key_of(&change.object().metadata);
                if let Change::Deleted(_) = change {
                    expectations.forget(&key);
                }
                queue.add(&key);
            },
        )
    };
    let pods = {
        let watch = PodWatch {
            sets: sets.store().clone(),
            queue: queue.clone(),
            expectations: expectations.clone(),
        };
        Informer::spawn_with(
            Api::<Pod>::all(client.clone()),
            ListParams::default(),
            shutdown.clone(),
            move |change| watch.changed(change),
        )
    };
    let controller = Arc::new(Controller {
        recorder: Recorder::new(client.clone(), COMPONENT, None),
        client,
        sets,
        pods,
        queue,
        expectations,
    });
    util::run_workers(controller, WORKERS, shutdown).await;
    Ok(())
}

const WORKERS: usize = 4;

struct Controller {
    client: Client,
    recorder: Recorder,
    sets: Informer<ReplicaSet>,
    pods: Informer<Pod>,
    queue: WorkQueue,
    expectations: Expectations,
}

/// What the pod informer's hook needs: it runs on the informer's task, before the next change.
struct PodWatch {
    sets: Store<ReplicaSet>,
    queue: WorkQueue,
    expectations: Expectations,
}

impl PodWatch {
    /// Maps a pod change to the ReplicaSets to sync, and records observed expectations.
    fn changed(&self, change: &Change<Pod>) {
        match change {
            Change::Applied { old, new } => {
                let new_key = owner_key(new);
                if let Some(key) = &new_key {
                    if old.is_none() {
                        self.expectations.creation_observed(key);
                    }
                    if new.metadata.deletion_timestamp.is_some() {
                        self.expectations
                            .deletion_observed(key, new.metadata.name.as_deref().unwrap_or(""));
                    }
                    self.queue.add(key);
                } else {
                    // An orphan: any ReplicaSet whose selector matches may adopt it.
                    self.queue_matching_sets(new);
                }
                if let Some(old) = old {
                    if let Some(old_key) = owner_key(old) {
                        if Some(&old_key) != new_key.as_ref() {
                            self.queue.add(&old_key);
                        }
                    }
                    if old.metadata.labels != new.metadata.labels {
                        self.queue_matching_sets(old);
                    }
                }
            }
            Change::Deleted(pod) => {
                if let Some(key) = owner_key(pod) {
                    self.expectations
                        .deletion_observed(&key, pod.metadata.name.as_deref().unwrap_or(""));
                    self.queue.add(&key);
                }
            }
        }
    }

    fn queue_matching_sets(&self, pod: &Pod) {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        for rs in self.sets.list_namespace(&namespace) {
            let selector = rs
                .spec
                .as_ref()
                .map(|s| s.selector.clone())
                .unwrap_or_default();
            if let Ok(selector) = LabelSelector::from_meta(&selector) {
                if !selector.is_empty() && selector.matches(&labels) {
                    self.queue.add(&util::key_of(&rs.metadata));
                }
            }
        }
    }
}

/// The queue key of the ReplicaSet controlling `pod`, if one does.
fn owner_key(pod: &Pod) -> Option<String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    util::controller_of(&pod.metadata)
        .filter(|o| o.kind == "ReplicaSet")
        .map(|o| format!("{namespace}/{}", o.name))
}

impl Reconciler for Controller {
    const WHAT: &'static str = "replica set";

    fn queue(&self) -> &WorkQueue {
        &self.queue
    }

    fn synced(&self) -> bool {
        self.sets.is_synced() && self.pods.is_synced()
    }

    fn keys(&self) -> Vec<String> {
        let sets = self.sets.store().list();
        sets.iter().map(|rs| util::key_of(&rs.metadata)).collect()
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, ClientError> {
        let Some(rs) = self.sets.store().get(&util::object_key(key)) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let (namespace, name) = util::split_key(key);
        let pods = util::owned(self.pods.store().list_namespace(namespace));
        let manage = self.expectations.satisfied(key);
        let plan = match plan(&rs, &pods, Timestamp::now(), manage) {
            Ok(plan) => plan,
            Err(error) => {
                // Retrying cannot help until the user fixes the object, which queues it again.
                tracing::warn!(%key, %error, "not syncing replica set");
                return Ok(None);
            }
        };
        let pod_api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let owner = util::controller_ref("apps/v1", "ReplicaSet", &rs.metadata);
        let rs_ref = object_reference("apps/v1", "ReplicaSet", &rs.metadata);
        let claims = plan.adopt.iter().map(|p| (p, true));
        let releases = plan.release.iter().map(|p| (p, false));
        for (pod_name, adopt) in claims.chain(releases) {
            let Some(pod) = pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(pod_name))
            else {
                continue;
            };
            let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
            if adopt {
                tracing::info!(%key, pod = %pod_name, "adopting pod");
                refs.push(owner.clone());
            } else {
                tracing::info!(%key, pod = %pod_name, "releasing pod that no longer matches");
                refs.retain(|r| r.uid != owner.uid);
            }
            let patch = json!({"metadata": {
                "ownerReferences": refs,
                "resourceVersion": pod.metadata.resource_version,
            }});
            ignore_not_found(
                pod_api
                    .patch(pod_name, &PatchParams::default(), &Patch::Merge(patch))
                    .await,
            )?;
        }
        let mut first_error = None;
        if plan.create > 0 {
            self.expectations.expect(key, plan.create, &[]);
            let template = pod_from_template(&rs);
            let post = PostParams::default();
            let mut created = 0;
            let mut batches = util::slow_start_batches(plan.create).into_iter();
            for batch in batches.by_ref() {
                let requests = (0..batch).map(|_| pod_api.create(&post, &template));
                let results = futures::future::join_all(requests).await;
                let mut failed = false;
                let mut names = Vec::new();
                for result in results {
                    match result {
                        Ok(pod) => {
                            created += 1;
                            names.push(pod.metadata.name.clone().unwrap_or_default());
                        }
                        Err(error) => {
                            failed = true;
                            self.expectations.creation_observed(key);
                            self.recorder
                                .emit(
                                    rs_ref.clone(),
                                    EventType::Warning,
                                    "FailedCreate",
                                    &format!("Error creating: {error}"),
                                );
                            first_error.get_or_insert(error);
                        }
                    }
                }
                // In the background: one Event write per pod, awaited here, would hold the next
                // batch of the slow start back by as many round trips as this one had pods.
                let (recorder, rs_ref) = (self.recorder.clone(), rs_ref.clone());
                tokio::spawn(async move {
                    for pod_name in names {
                        let message = format!("Created pod: {pod_name}");
                        recorder.emit(rs_ref.clone(), EventType::Normal, "SuccessfulCreate", &message);
                    }
                });
                if failed {
                    break;
                }
            }
            // Creations never attempted will never be observed.
            for batch in batches {
                for _ in 0..batch {
                    self.expectations.creation_observed(key);
                }
            }
            tracing::info!(%key, wanted = plan.create, created, "created pods");
        }
        if !plan.delete.is_empty() {
            self.expectations.expect(key, 0, &plan.delete);
            for pod_name in &plan.delete {
                match pod_api.delete(pod_name, &DeleteParams::default()).await {
                    Ok(_) => {
                        self.recorder
                            .emit(
                                rs_ref.clone(),
                                EventType::Normal,
                                "SuccessfulDelete",
                                &format!("Deleted pod: {pod_name}"),
                            );
                    }
                    Err(error) => {
                        self.expectations.deletion_observed(key, pod_name);
                        if !error.is_not_found() {
                            first_error.get_or_insert(error);
                        }
                    }
                }
            }
            tracing::info!(%key, deleted = plan.delete.len(), "deleted excess pods");
        }
        if rs.status.as_ref() != Some(&plan.status) {
            let rs_api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), namespace);
            let patch = json!({"status": plan.status});
            match rs_api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(updated) => {
                    self.sets.store().apply(Arc::new(updated));
                }
                Err(error) if error.is_not_found() => {}
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }
        // Availability turns true minReadySeconds after readiness with no event to say so.
        let min_ready = rs
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        if min_ready > 0 && plan.status.ready_replicas != plan.status.available_replicas {
            return Ok(Some(Duration::from_secs(
                u64::try_from(min_ready).unwrap_or(1),
            )));
        }
        Ok(None)
    }
}

fn ignore_not_found<T>(result: Result<T, ClientError>) -> Result<(), ClientError> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{from, merge, time};
    use serde_json::Value;

    const UID: &str = "rs-uid";

    fn now() -> Timestamp {
        time("2026-01-01T00:10:00Z")
    }

    fn rs(replicas: i32) -> ReplicaSet {
        from(json!({
            "metadata": {"name": "web-abc", "namespace": "default", "uid": UID, "generation": 2},
            "spec": {
                "replicas": replicas,
                "minReadySeconds": 10,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web", "tier": "front"}},
                             "spec": {"containers": [{"name": "web", "image": "busybox"}]}}
            }
        }))
    }

    /// A pod owned by the ReplicaSet (`owner` "rs"), by another controller ("other") or nobody.
    fn pod(name: &str, owner: &str, extra: Value) -> Pod {
        let mut v = json!({
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web", "tier": "front"},
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "web", "image": "busybox"}], "nodeName": "n1"},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        });
        match owner {
            "rs" => {
                v["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "uid": UID, "controller": true}])
            }
            "other" => {
                v["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x", "uid": "x", "controller": true}])
            }
            _ => {}
        }
        merge(&mut v, extra);
        from(v)
    }

    fn check_plan(rs: &ReplicaSet, pods: &[Pod], manage: bool) -> Plan {
        match plan(rs, pods, now(), manage) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn creates_the_missing_pods_not_counting_finished_or_terminating_ones() {
        let pods = vec![
            pod("a", "rs", json!({})),
            pod("b", "rs", json!({"status": {"phase": "Failed"}})),
            pod("c", "rs", json!({"status": {"phase": "Succeeded"}})),
            pod(
                "d",
                "rs",
                json!({"metadata": {"deletionTimestamp": "2026-01-01T00:09:00Z"}}),
            ),
        ];
        let p = check_plan(&rs(3), &pods, true);
        assert_eq!(p.create, 2);
        assert!(p.delete.is_empty());
        assert_eq!(p.status.replicas, 1);
        // Expectations outstanding: no creation this time.
        assert_eq!(check_plan(&rs(3), &pods, false).create, 0);
    }

    #[test]
    fn adopts_orphans_releases_strays_and_leaves_others_alone() {
        let pods = vec![
            pod("orphan", "", json!({})),
            pod(
                "stray",
                "rs",
                json!({"metadata": {"labels": {"app": "api"}}}),
            ),
            pod("foreign", "other", json!({})),
            pod(
                "orphan-deleting",
                "",
                json!({"metadata": {"deletionTimestamp": "2026-01-01T00:09:00Z"}}),
            ),
        ];
        let p = check_plan(&rs(1), &pods, true);
        assert_eq!(p.adopt, vec!["orphan".to_string()]);
        assert_eq!(p.release, vec!["stray".to_string()]);
        assert_eq!(p.create, 0);
        assert_eq!(p.status.replicas, 1);
    }

    #[test]
    fn deletes_excess_pods_in_kubernetes_order() {
        let running_ready = |name: &str, restarts: i32, created: &str| {
            pod(
                name,
                "rs",
                json!({
                    "metadata": {"creationTimestamp": created},
                    "status": {"containerStatuses": [{"name": "web", "image": "busybox", "imageID": "", "ready": true, "restartCount": restarts}]}
                }),
            )
        };
        let pods = vec![
            running_ready("old-stable", 0, "2026-01-01T00:00:00Z"),
            running_ready("new-stable", 0, "2026-01-01T00:05:00Z"),
            running_ready("crashy", 5, "2026-01-01T00:00:00Z"),
            pod(
                "not-ready",
                "rs",
                json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
            ),
            pod(
                "pending",
                "rs",
                json!({"status": {"phase": "Pending", "conditions": []}}),
            ),
            pod(
                "unscheduled",
                "rs",
                json!({"spec": {"nodeName": ""}, "status": {"phase": "Pending", "conditions": []}}),
            ),
        ];
        let p = check_plan(&rs(1), &pods, true);
        assert_eq!(
            p.delete,
            vec![
                "unscheduled",
                "pending",
                "not-ready",
                "crashy",
                "new-stable"
            ]
        );
    }

    #[test]
    fn status_counts_labels_readiness_and_min_ready_seconds() {
        let pods = vec![
            pod(
                "fresh",
                "rs",
                json!({"status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:09:55Z"}]}}),
            ),
            pod("old", "rs", json!({})),
            pod(
                "partial",
                "rs",
                json!({"metadata": {"labels": {"app": "web", "tier": null}}, "status": {"conditions": []}}),
            ),
        ];
        let s = check_plan(&rs(3), &pods, true).status;
        assert_eq!(s.replicas, 3);
        assert_eq!(s.fully_labeled_replicas, Some(2));
        assert_eq!(s.ready_replicas, Some(2));
        assert_eq!(s.available_replicas, Some(1));
        assert_eq!(s.observed_generation, Some(2));
    }

    #[test]
    fn bad_selectors_are_refused() {
        let mut empty = rs(1);
        if let Some(spec) = empty.spec.as_mut() {
            spec.selector = Default::default();
        }
        assert!(matches!(
            plan(&empty, &[], now(), true),
            Err(PlanError::EmptySelector { .. })
        ));
        let bad: ReplicaSet = from(json!({"metadata": {"name": "x"}, "spec": {"selector": {
            "matchExpressions": [{"key": "app", "operator": "Sideways", "values": ["a"]}]}}}));
        assert!(matches!(
            plan(&bad, &[], now(), true),
            Err(PlanError::InvalidSelector { .. })
        ));
    }

    #[test]
    fn pods_are_made_from_the_template_and_owned() {
        let p = pod_from_template(&rs(1));
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-abc-"));
        assert_eq!(
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("tier"))
                .map(String::as_str),
            Some("front")
        );
        let owner = match p.metadata.owner_references.as_deref() {
            Some([owner]) => owner.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("ReplicaSet", UID)
        );
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), Some(true))
        );
    }
}
