//! The Deployment controller: one ReplicaSet per pod template (named by its hash), rolled from
//! the old ones to the new one by the strategy (RollingUpdate within maxSurge/maxUnavailable
//! counting available pods, or Recreate), with revisions, proportional scaling, pause,
//! history cleanup, and the Progressing/Available conditions, as Kubernetes' controller does.
//!
//! [`plan`] is pure: given the Deployment, the ReplicaSets and pods of its namespace and the
//! time, it returns the ReplicaSets to create, update and delete, and the status to write. It
//! follows the structure of kube's `sync.go`, `rolling.go` and `recreate.go`, and is tested with
//! tables. [`run`] watches, queues and applies plans.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;
use tokio::sync::watch;

use api::apps::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use api::client::{
    Api, Client, ClientError, DeleteParams, ListParams, Patch, PatchParams, PostParams,
};
use api::core::{Pod, PodTemplateSpec};
use api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use api::meta::{LabelSelector as MetaLabelSelector, ObjectMeta, Time};
use api::selector::LabelSelector;

use api::client::events::{object_reference, EventType, Recorder};
use crate::hash::{pod_template_hash, POD_TEMPLATE_HASH_LABEL};
use crate::informer::{Change, Informer, ObjectKey, Store};
use crate::util::{self, Reconciler, WorkQueue};
use crate::ControllerError;

/// The component name in Events.
pub const COMPONENT: &str = "deployment-controller";
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Condition reasons, Kubernetes' words.
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";
pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

/// Why a Deployment cannot be planned for. The user must change the Deployment.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    #[error("deployment {name} has an invalid {field} {value:?}: {reason}")]
    InvalidIntOrPercent {
        name: String,
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("deployment {name} has an invalid selector: {reason}; fix spec.selector")]
    InvalidSelector { name: String, reason: String },
    #[error(
        "deployment {name} has an empty selector, which would match every pod; set spec.selector"
    )]
    EmptySelector { name: String },
    #[error("deployment {name}: spec.selector does not match the template labels; make spec.template.metadata.labels match it")]
    SelectorMismatch { name: String },
}

/// One write the plan asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Take an orphan ReplicaSet that matches the selector.
    Adopt(String),
    /// Let go of an owned ReplicaSet that no longer matches.
    Release(String),
    /// Create this ReplicaSet.
    Create(ReplicaSet),
    /// Replace this ReplicaSet (scale, annotations, minReadySeconds); `scaled` is the replica
    /// change, for the ScalingReplicaSet event.
    Update {
        rs: ReplicaSet,
        scaled: Option<(i32, i32)>,
    },
    /// Delete this old ReplicaSet (history cleanup).
    Delete(String),
}

/// What one sync of a Deployment should do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// The value the Deployment's revision annotation should take, when it must change.
    pub revision: Option<String>,
    /// The status to write (unchanged when equal to the Deployment's).
    pub status: DeploymentStatus,
    /// When to look again even without events (progress deadline, minReadySeconds).
    pub requeue_after: Option<Duration>,
}

/// The Deployment's maxSurge and maxUnavailable as pod counts: surge rounded up, unavailable
/// rounded down, and never both zero (then one pod may be unavailable), as Kubernetes does.
/// Recreate has neither.
pub fn fenceposts(d: &Deployment) -> Result<(i32, i32), PlanError> {
    let spec = d.spec.as_ref();
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
    let strategy = spec.and_then(|s| s.strategy.as_ref());
    if strategy.and_then(|s| s.type_.as_deref()) == Some("Recreate") {
        return Ok((0, 0));
    }
    let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
    let default = IntOrString::String("25%".to_string());
    let name = d.metadata.name.clone().unwrap_or_default();
    let surge_value = rolling
        .and_then(|r| r.max_surge.clone())
        .unwrap_or(default.clone());
    let unavailable_value = rolling
        .and_then(|r| r.max_unavailable.clone())
        .unwrap_or(default);
    let surge = scaled_value(&surge_value, replicas, true).map_err(|reason| {
        PlanError::InvalidIntOrPercent {
            name: name.clone(),
            field: "spec.strategy.rollingUpdate.maxSurge",
            value: display(&surge_value),
            reason,
        }
    })?;
    let unavailable = scaled_value(&unavailable_value, replicas, false).map_err(|reason| {
        PlanError::InvalidIntOrPercent {
            name: name.clone(),
            field: "spec.strategy.rollingUpdate.maxUnavailable",
            value: display(&unavailable_value),
            reason,
        }
    })?;
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable.min(replicas.max(0))))
}

/// An int, or a percentage of `total` rounded up or down.
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, &'static str> {
    match value {
        IntOrString::Int(n) if *n < 0 => Err("must not be negative"),
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let Some(number) = s.strip_suffix('%') else {
                return Err("must be an integer or a percentage such as 25%");
            };
            let percent: i64 = number
                .parse()
                .map_err(|_| "must be an integer or a percentage such as 25%")?;
            if percent < 0 {
                return Err("must not be negative");
            }
            let product = percent * i64::from(total.max(0));
            let value = if round_up {
                (product + 99) / 100
            } else {
                product / 100
            };
            i32::try_from(value).map_err(|_| "is too large")
        }
    }
}

fn display(value: &IntOrString) -> String {
    match value {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

/// Whether `rs`'s template is `template`, ignoring the pod-template-hash label.
pub fn same_template(rs: &ReplicaSet, template: &PodTemplateSpec) -> bool {
    let ours = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    strip_hash(ours) == strip_hash(template.clone())
}

fn strip_hash(mut template: PodTemplateSpec) -> PodTemplateSpec {
    if let Some(meta) = template.metadata.as_mut() {
        if let Some(labels) = meta.labels.as_mut() {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
            if labels.is_empty() {
                meta.labels = None;
            }
        }
    }
    template
}

/// A ReplicaSet's revision annotation as a number (0 when absent or not a number).
pub fn revision_of(rs: &ReplicaSet) -> i64 {
    annotation(&rs.metadata, REVISION_ANNOTATION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn replicas_of(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}

fn available_of(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

fn ready_of(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

fn created_of(rs: &ReplicaSet) -> Option<Timestamp> {
    rs.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

fn name_of(rs: &ReplicaSet) -> String {
    rs.metadata.name.clone().unwrap_or_default()
}

/// Decides what to do for `d`, given every ReplicaSet and pod of its namespace.
pub fn plan(
    d: &Deployment,
    sets: &[ReplicaSet],
    pods: &[Pod],
    now: Timestamp,
) -> Result<Plan, PlanError> {
    let name = d.metadata.name.clone().unwrap_or_default();
    let spec = d.spec.clone().unwrap_or_default();
    let selector =
        LabelSelector::from_meta(&spec.selector).map_err(|e| PlanError::InvalidSelector {
            name: name.clone(),
            reason: e.to_string(),
        })?;
    if selector.is_empty() {
        return Err(PlanError::EmptySelector { name });
    }
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    if !selector.matches(&template_labels) {
        return Err(PlanError::SelectorMismatch { name });
    }
    let (max_surge, max_unavailable) = fenceposts(d)?;
    let mut work = Work {
        d,
        replicas: spec.replicas.unwrap_or(1),
        max_surge,
        max_unavailable,
        now,
        sets: Vec::new(),
        changed: Vec::new(),
        actions: Vec::new(),
        status: d.status.clone().unwrap_or_default(),
        revision: None,
        new_index: None,
        collision: false,
        created: None,
        original: Vec::new(),
    };
    // Claim: owned and matching, or orphans that match; release owned ones that do not.
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let deleting = d.metadata.deletion_timestamp.is_some();
    for rs in sets {
        let labels = rs.metadata.labels.clone().unwrap_or_default();
        let matches = selector.matches(&labels);
        match util::controller_of(&rs.metadata) {
            Some(owner) if owner.uid == uid => {
                if matches {
                    work.sets.push(rs.clone());
                } else if rs.metadata.deletion_timestamp.is_none() {
                    work.actions.push(Action::Release(name_of(rs)));
                }
            }
            Some(_) => {}
            None => {
                if matches && !deleting && rs.metadata.deletion_timestamp.is_none() {
                    work.actions.push(Action::Adopt(name_of(rs)));
                    work.sets.push(rs.clone());
                }
            }
        }
    }
    work.changed = vec![false; work.sets.len()];
    work.original = work.sets.iter().map(replicas_of).collect();
    if deleting {
        work.sync_status();
        return Ok(work.finish(None));
    }
    work.check_paused_condition();
    let paused = spec.paused.unwrap_or(false);
    work.sync_revision(false);
    let requeue = if paused || work.is_scaling_event() {
        work.scale();
        if paused {
            work.cleanup();
        }
        work.sync_status();
        None
    } else if spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate") {
        work.recreate(pods)
    } else {
        work.rolling()
    };
    Ok(work.finish(requeue))
}

/// The mutable state of one planning pass: working copies of the claimed ReplicaSets, which
/// of them changed, and what was decided so far.
struct Work<'a> {
    d: &'a Deployment,
    replicas: i32,
    max_surge: i32,
    max_unavailable: i32,
    now: Timestamp,
    sets: Vec<ReplicaSet>,
    /// Parallel to `sets`: the copy differs from the stored object and must be written.
    changed: Vec<bool>,
    actions: Vec<Action>,
    status: DeploymentStatus,
    revision: Option<String>,
    new_index: Option<usize>,
    /// The hash name is taken by a ReplicaSet with another template.
    collision: bool,
    /// Index in `sets` of the ReplicaSet this pass creates.
    created: Option<usize>,
    /// Parallel to `sets`: spec.replicas as stored, for the ScalingReplicaSet events.
    original: Vec<i32>,
}

impl Work<'_> {
    fn template(&self) -> PodTemplateSpec {
        self.d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default()
    }

    fn old_indices(&self) -> Vec<usize> {
        (0..self.sets.len())
            .filter(|i| Some(*i) != self.new_index)
            .collect()
    }

    fn new_rs(&self) -> Option<&ReplicaSet> {
        self.new_index.map(|i| &self.sets[i])
    }

    /// kube's getAllReplicaSetsAndSyncRevision: find the new ReplicaSet (the oldest with the
    /// Deployment's template), bring its revision above every old one, and create it when
    /// asked and missing.
    fn sync_revision(&mut self, create: bool) {
        let template = self.template();
        let mut candidates: Vec<usize> = (0..self.sets.len())
            .filter(|i| same_template(&self.sets[*i], &template))
            .collect();
        candidates.sort_by_key(|i| (created_of(&self.sets[*i]), name_of(&self.sets[*i])));
        self.new_index = candidates.first().copied();
        let max_old = self
            .old_indices()
            .iter()
            .map(|i| revision_of(&self.sets[*i]))
            .max()
            .unwrap_or(0);
        let new_revision = max_old + 1;
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if let Some(i) = self.new_index {
            let rs = &mut self.sets[i];
            let old_revision = revision_of(rs);
            let mut touched = false;
            if old_revision < new_revision {
                let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
                if old_revision > 0 {
                    // Kept as kube does, so `rollout history` can say where a revision came from.
                    let history = annotations.get(REVISION_HISTORY_ANNOTATION).cloned();
                    let history = match history {
                        Some(h) if !h.is_empty() => format!("{h},{old_revision}"),
                        _ => old_revision.to_string(),
                    };
                    annotations.insert(REVISION_HISTORY_ANNOTATION.to_string(), history);
                }
                annotations.insert(REVISION_ANNOTATION.to_string(), new_revision.to_string());
                touched = true;
            }
            let spec = rs.spec.get_or_insert_with(ReplicaSetSpec::default);
            if spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0) {
                spec.min_ready_seconds = min_ready;
                touched = true;
            }
            if touched {
                self.changed[i] = true;
            }
            let revision = revision_of(&self.sets[i]).to_string();
            if annotation(&self.d.metadata, REVISION_ANNOTATION) != Some(revision.as_str()) {
                self.revision = Some(revision);
            }
            if condition(&self.status, "Progressing").is_none() && has_progress_deadline(self.d) {
                let message = format!("Found new replica set {:?}", name_of(&self.sets[i]));
                self.set_condition("Progressing", "True", FOUND_NEW_RS, message);
            }
            return;
        }
        if !create || self.collision {
            return;
        }
        let collision_count = self.status.collision_count;
        let hash = pod_template_hash(&template, collision_count);
        let rs_name = format!("{}-{}", self.d.metadata.name.as_deref().unwrap_or(""), hash);
        if self.sets.iter().any(|rs| name_of(rs) == rs_name) {
            // The name is taken by a ReplicaSet with another template: a hash collision.
            // kube's answer: count it, which changes the hash next time.
            self.status.collision_count = Some(collision_count.unwrap_or(0).saturating_add(1));
            self.collision = true;
            return;
        }
        let replicas = self.new_rs_replicas(None);
        let rs = self.new_replica_set(&rs_name, &hash, new_revision, replicas);
        self.sets.push(rs);
        self.changed.push(false);
        self.original.push(0);
        self.new_index = Some(self.sets.len() - 1);
        self.created = self.new_index;
        self.revision = Some(new_revision.to_string());
        if has_progress_deadline(self.d) {
            let message = format!("Created new replica set {rs_name:?}");
            self.set_condition("Progressing", "True", NEW_RS_CREATED, message);
        }
    }

    fn new_replica_set(&self, name: &str, hash: &str, revision: i64, replicas: i32) -> ReplicaSet {
        let d = self.d;
        let spec = d.spec.clone().unwrap_or_default();
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_with(ObjectMeta::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH_LABEL.to_string(), hash.to_string());
        let mut selector: MetaLabelSelector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH_LABEL.to_string(), hash.to_string());
        let mut annotations: BTreeMap<String, String> = d
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| {
                ![
                    LAST_APPLIED_ANNOTATION,
                    REVISION_ANNOTATION,
                    REVISION_HISTORY_ANNOTATION,
                    DESIRED_REPLICAS_ANNOTATION,
                    MAX_REPLICAS_ANNOTATION,
                ]
                .contains(&k.as_str())
            })
            .collect();
        annotations.insert(REVISION_ANNOTATION.to_string(), revision.to_string());
        annotations.insert(
            DESIRED_REPLICAS_ANNOTATION.to_string(),
            self.replicas.to_string(),
        );
        annotations.insert(
            MAX_REPLICAS_ANNOTATION.to_string(),
            (self.replicas + self.max_surge).to_string(),
        );
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: d.metadata.namespace.clone(),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                annotations: Some(annotations),
                owner_references: Some(vec![util::controller_ref(
                    "apps/v1",
                    "Deployment",
                    &d.metadata,
                )]),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        }
    }

    /// kube's NewRSNewReplicas: how big the new ReplicaSet may be now.
    fn new_rs_replicas(&self, new: Option<usize>) -> i32 {
        let is_recreate = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.strategy.as_ref())
            .and_then(|s| s.type_.as_deref())
            == Some("Recreate");
        if is_recreate {
            return self.replicas;
        }
        let current: i32 = self.sets.iter().map(replicas_of).sum();
        let new_replicas = new.map(|i| replicas_of(&self.sets[i])).unwrap_or(0);
        let max_total = self.replicas + self.max_surge;
        if current >= max_total {
            return new_replicas;
        }
        let scale_up = (max_total - current).min(self.replicas - new_replicas);
        new_replicas + scale_up.max(0)
    }

    /// Sets a ReplicaSet's size and the desired/max annotations; records the change.
    fn scale_to(&mut self, i: usize, size: i32) -> bool {
        let desired = self.replicas.to_string();
        let max = (self.replicas + self.max_surge).to_string();
        let rs = &mut self.sets[i];
        let from = replicas_of(rs);
        let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
        let annotations_changed = annotations.get(DESIRED_REPLICAS_ANNOTATION) != Some(&desired)
            || annotations.get(MAX_REPLICAS_ANNOTATION) != Some(&max);
        if from == size && !annotations_changed {
            return false;
        }
        annotations.insert(DESIRED_REPLICAS_ANNOTATION.to_string(), desired);
        annotations.insert(MAX_REPLICAS_ANNOTATION.to_string(), max);
        rs.spec.get_or_insert_with(ReplicaSetSpec::default).replicas = Some(size);
        self.changed[i] = true;
        from != size
    }
}

impl Work<'_> {
    /// kube's SetDeploymentCondition: an unchanged status and reason keeps the condition as it
    /// is; an unchanged status keeps its transition time.
    fn set_condition(&mut self, type_: &str, status: &str, reason: &str, message: String) {
        let now = Time(self.now);
        let current = condition(&self.status, type_).cloned();
        if let Some(c) = &current {
            if c.status == status && c.reason.as_deref() == Some(reason) {
                return;
            }
        }
        let transition = match &current {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => Some(now.clone()),
        };
        self.replace_condition(DeploymentCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: Some(reason.to_string()),
            message: Some(message),
            last_update_time: Some(now),
            last_transition_time: transition,
        });
    }

    fn replace_condition(&mut self, new: DeploymentCondition) {
        let conditions = self.status.conditions.get_or_insert_with(Vec::new);
        conditions.retain(|c| c.type_ != new.type_);
        conditions.push(new);
    }

    fn remove_condition(&mut self, type_: &str) {
        if let Some(conditions) = self.status.conditions.as_mut() {
            conditions.retain(|c| c.type_ != type_);
            if conditions.is_empty() {
                self.status.conditions = None;
            }
        }
    }

    /// kube's checkPausedConditions: Progressing turns Unknown while paused, and says so on
    /// resume, so the progress deadline does not run while the user holds the rollout.
    fn check_paused_condition(&mut self) {
        if !has_progress_deadline(self.d) {
            return;
        }
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let paused_condition = condition(&self.status, "Progressing")
            .is_some_and(|c| c.reason.as_deref() == Some(PAUSED));
        if paused && !paused_condition {
            self.set_condition(
                "Progressing",
                "Unknown",
                PAUSED,
                "Deployment is paused".into(),
            );
        } else if !paused && paused_condition {
            self.set_condition(
                "Progressing",
                "Unknown",
                RESUMED,
                "Deployment is resumed".into(),
            );
        }
    }

    /// Some active ReplicaSet was sized for another replica count: the user scaled.
    fn is_scaling_event(&self) -> bool {
        self.sets.iter().filter(|rs| replicas_of(rs) > 0).any(|rs| {
            annotation(&rs.metadata, DESIRED_REPLICAS_ANNOTATION)
                .and_then(|v| v.parse::<i32>().ok())
                .is_some_and(|desired| desired != self.replicas)
        })
    }

    /// kube's scale: resize the only active ReplicaSet, or spread a change of spec.replicas
    /// over the active ones in proportion to their sizes (bigger ones take more).
    fn scale(&mut self) {
        let olds = self.old_indices();
        // FindActiveOrLatest.
        let mut active: Vec<usize> = self
            .sets
            .iter()
            .enumerate()
            .filter(|(_, rs)| replicas_of(rs) > 0)
            .map(|(i, _)| i)
            .collect();
        let only = match active.len() {
            0 => self.new_index.or_else(|| {
                olds.iter()
                    .copied()
                    .max_by_key(|i| (created_of(&self.sets[*i]), name_of(&self.sets[*i])))
            }),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(i) = only {
            self.scale_to(i, self.replicas);
            return;
        }
        if self.is_saturated() {
            for i in olds {
                if replicas_of(&self.sets[i]) > 0 {
                    self.scale_to(i, 0);
                }
            }
            return;
        }
        let is_rolling = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.strategy.as_ref())
            .and_then(|s| s.type_.as_deref())
            != Some("Recreate");
        if !is_rolling {
            return;
        }
        let total: i32 = active.iter().map(|i| replicas_of(&self.sets[*i])).sum();
        let allowed = if self.replicas > 0 {
            self.replicas + self.max_surge
        } else {
            0
        };
        let to_add = allowed - total;
        // Bigger first; among equals the newer one grows first and the older one shrinks first.
        active.sort_by(|a, b| {
            let (ra, rb) = (&self.sets[*a], &self.sets[*b]);
            let by_size = replicas_of(rb).cmp(&replicas_of(ra));
            let by_age = if to_add > 0 {
                created_of(rb).cmp(&created_of(ra))
            } else {
                created_of(ra).cmp(&created_of(rb))
            };
            by_size.then(by_age)
        });
        let mut added = 0;
        let mut sizes: Vec<(usize, i32)> = Vec::new();
        for i in &active {
            let rs = &self.sets[*i];
            let proportion = if to_add != 0 {
                self.proportion(rs, to_add, added)
            } else {
                0
            };
            added += proportion;
            sizes.push((*i, replicas_of(rs) + proportion));
        }
        if let Some(first) = sizes.first_mut() {
            first.1 = (first.1 + to_add - added).max(0);
        }
        for (i, size) in sizes {
            self.scale_to(i, size.max(0));
        }
    }

    /// kube's GetProportion: this ReplicaSet's share of `to_add`, bounded by what is left.
    fn proportion(&self, rs: &ReplicaSet, to_add: i32, added: i32) -> i32 {
        if replicas_of(rs) == 0 || to_add == 0 || to_add == added {
            return 0;
        }
        let fraction = self.fraction(rs);
        let allowed = to_add - added;
        if to_add > 0 {
            fraction.min(allowed)
        } else {
            fraction.max(allowed)
        }
    }

    /// kube's getReplicaSetFraction: how much `rs` grows or shrinks when the Deployment goes
    /// from the size recorded in its max-replicas annotation to the new one.
    fn fraction(&self, rs: &ReplicaSet) -> i32 {
        if self.replicas == 0 {
            return -replicas_of(rs);
        }
        let target = self.replicas + self.max_surge;
        let annotated = annotation(&rs.metadata, MAX_REPLICAS_ANNOTATION)
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or_else(|| self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
        if annotated <= 0 {
            return 0;
        }
        let size = f64::from(replicas_of(rs)) * f64::from(target) / f64::from(annotated);
        // The result is within i32 since both factors are.
        (size.round() as i32) - replicas_of(rs)
    }

    fn is_saturated(&self) -> bool {
        let Some(new) = self.new_rs() else {
            return false;
        };
        let desired = annotation(&new.metadata, DESIRED_REPLICAS_ANNOTATION)
            .and_then(|v| v.parse::<i32>().ok());
        replicas_of(new) == self.replicas
            && desired == Some(self.replicas)
            && available_of(new) == self.replicas
    }

    /// kube's cleanupDeployment: delete the oldest old ReplicaSets beyond revisionHistoryLimit,
    /// only those with no pods left.
    fn cleanup(&mut self) {
        let limit = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10)
            .max(0);
        let mut cleanable: Vec<usize> = self
            .old_indices()
            .into_iter()
            .filter(|i| self.sets[*i].metadata.deletion_timestamp.is_none())
            .collect();
        let excess = cleanable
            .len()
            .saturating_sub(usize::try_from(limit).unwrap_or(0));
        if excess == 0 {
            return;
        }
        cleanable.sort_by_key(|i| (revision_of(&self.sets[*i]), created_of(&self.sets[*i])));
        for i in cleanable.into_iter().take(excess) {
            let rs = &self.sets[i];
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if status_replicas(rs) != 0
                || replicas_of(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
                || self.changed[i]
            {
                continue;
            }
            self.actions.push(Action::Delete(name_of(rs)));
        }
    }

    /// kube's rolloutRolling.
    fn rolling(&mut self) -> Option<Duration> {
        self.sync_revision(true);
        if self.collision {
            self.sync_status();
            return Some(Duration::from_millis(100));
        }
        if let Some(i) = self.new_index {
            let current = replicas_of(&self.sets[i]);
            if current != self.replicas {
                let target = if current > self.replicas {
                    self.replicas
                } else {
                    self.new_rs_replicas(Some(i))
                };
                if self.scale_to(i, target) {
                    return self.sync_rollout_status();
                }
            }
        }
        if self.reconcile_old() {
            return self.sync_rollout_status();
        }
        if deployment_complete(self.d, self.d.status.as_ref()) {
            self.cleanup();
        }
        self.sync_rollout_status()
    }

    /// kube's reconcileOldReplicaSets: scale old ReplicaSets down as far as the minimum
    /// availability allows, unhealthy replicas first.
    fn reconcile_old(&mut self) -> bool {
        let olds = self.old_indices();
        let old_count: i32 = olds.iter().map(|i| replicas_of(&self.sets[*i])).sum();
        if old_count == 0 {
            return false;
        }
        let all_count: i32 = self.sets.iter().map(replicas_of).sum();
        let min_available = self.replicas - self.max_unavailable;
        let new_unavailable = self
            .new_rs()
            .map(|rs| replicas_of(rs) - available_of(rs))
            .unwrap_or(0);
        let max_scaled_down = all_count - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        let mut olds_by_age = olds;
        olds_by_age.sort_by_key(|i| (created_of(&self.sets[*i]), name_of(&self.sets[*i])));
        // Unhealthy first: pods that are not available cost nothing to remove.
        let mut cleaned = 0;
        for i in &olds_by_age {
            if cleaned >= max_scaled_down {
                break;
            }
            let rs = &self.sets[*i];
            let replicas = replicas_of(rs);
            if replicas == 0 {
                continue;
            }
            let unhealthy = (replicas - available_of(rs)).max(0);
            if unhealthy == 0 {
                continue;
            }
            let down = unhealthy.min(max_scaled_down - cleaned);
            self.scale_to(*i, replicas - down);
            cleaned += down;
        }
        // Then healthy ones, as far as availability allows.
        let available: i32 = self.sets.iter().map(available_of).sum();
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for i in &olds_by_age {
                if scaled >= total {
                    break;
                }
                let replicas = replicas_of(&self.sets[*i]);
                if replicas == 0 {
                    continue;
                }
                let down = replicas.min(total - scaled);
                self.scale_to(*i, replicas - down);
                scaled += down;
            }
        }
        cleaned + scaled > 0
    }

    /// kube's rolloutRecreate: old ReplicaSets to zero, wait until their pods are gone, then
    /// the new one at full size.
    fn recreate(&mut self, pods: &[Pod]) -> Option<Duration> {
        let mut scaled_down = false;
        for i in self.old_indices() {
            if replicas_of(&self.sets[i]) > 0 {
                scaled_down |= self.scale_to(i, 0);
            }
        }
        if scaled_down || self.old_pods_running(pods) {
            return self.sync_rollout_status();
        }
        if self.new_index.is_none() {
            self.sync_revision(true);
            if self.collision {
                self.sync_status();
                return Some(Duration::from_millis(100));
            }
        }
        if let Some(i) = self.new_index {
            if replicas_of(&self.sets[i]) != self.replicas && self.scale_to(i, self.replicas) {
                return self.sync_rollout_status();
            }
        }
        if deployment_complete(self.d, self.d.status.as_ref()) {
            self.cleanup();
        }
        self.sync_rollout_status()
    }

    fn old_pods_running(&self, pods: &[Pod]) -> bool {
        let olds = self.old_indices();
        if olds.iter().any(|i| status_replicas(&self.sets[*i]) > 0) {
            return true;
        }
        let old_uids: Vec<&str> = olds
            .iter()
            .filter_map(|i| self.sets[*i].metadata.uid.as_deref())
            .collect();
        pods.iter().any(|pod| {
            let owned_by_old = util::controller_of(&pod.metadata)
                .is_some_and(|o| old_uids.contains(&o.uid.as_str()));
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            owned_by_old && !matches!(phase, Some("Succeeded" | "Failed"))
        })
    }

    /// kube's calculateStatus: counts from the ReplicaSets, and the Available condition.
    fn calculate_status(&mut self) {
        let available: i32 = self.sets.iter().map(available_of).sum();
        let total: i32 = self.sets.iter().map(replicas_of).sum();
        self.status.observed_generation = self.d.metadata.generation;
        self.status.replicas = Some(self.sets.iter().map(status_replicas).sum());
        self.status.updated_replicas = Some(self.new_rs().map(status_replicas).unwrap_or(0));
        self.status.ready_replicas = Some(self.sets.iter().map(ready_of).sum());
        self.status.available_replicas = Some(available);
        self.status.unavailable_replicas = Some((total - available).max(0));
        if available >= self.replicas - self.max_unavailable {
            self.set_condition(
                "Available",
                "True",
                MIN_AVAILABLE,
                "Deployment has minimum availability.".into(),
            );
        } else {
            self.set_condition(
                "Available",
                "False",
                MIN_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
            );
        }
    }

    /// kube's syncDeploymentStatus (paused or scaling): counts only.
    fn sync_status(&mut self) {
        self.calculate_status();
    }

    /// kube's syncRolloutStatus: counts, then Progressing (created, progressing, complete or
    /// timed out); returns when to look again for the deadline.
    fn sync_rollout_status(&mut self) -> Option<Duration> {
        let old_status = self.d.status.clone().unwrap_or_default();
        self.calculate_status();
        if !has_progress_deadline(self.d) {
            self.remove_condition("Progressing");
            return None;
        }
        let deadline = i64::from(
            self.d
                .spec
                .as_ref()
                .and_then(|s| s.progress_deadline_seconds)
                .unwrap_or(600),
        );
        let subject = match self.new_rs() {
            Some(rs) => format!("ReplicaSet {:?}", name_of(rs)),
            None => format!(
                "Deployment {:?}",
                self.d.metadata.name.as_deref().unwrap_or("")
            ),
        };
        let current = condition(&self.status, "Progressing").cloned();
        let complete_already = self.status.replicas == self.status.updated_replicas
            && current
                .as_ref()
                .is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
        if !complete_already {
            if deployment_complete(self.d, Some(&self.status)) {
                self.set_condition(
                    "Progressing",
                    "True",
                    NEW_RS_AVAILABLE,
                    format!("{subject} has successfully progressed."),
                );
            } else if progressing(&old_status, &self.status) {
                let mut new = DeploymentCondition {
                    type_: "Progressing".into(),
                    status: "True".into(),
                    reason: Some(RS_UPDATED.into()),
                    message: Some(format!("{subject} is progressing.")),
                    last_update_time: Some(Time(self.now)),
                    last_transition_time: Some(Time(self.now)),
                };
                if let Some(c) = &current {
                    if c.status == "True" {
                        new.last_transition_time = c.last_transition_time.clone();
                    }
                }
                self.replace_condition(new);
            } else if timed_out(current.as_ref(), deadline, self.now) {
                self.set_condition(
                    "Progressing",
                    "False",
                    TIMED_OUT,
                    format!("{subject} has timed out progressing."),
                );
            }
        }
        // Look again when the deadline would pass, if nothing else happens first.
        let current = condition(&self.status, "Progressing")?;
        if deployment_complete(self.d, Some(&self.status))
            || current.reason.as_deref() == Some(TIMED_OUT)
            || current.status != "True"
        {
            return None;
        }
        let since = current.last_update_time.as_ref()?.0;
        let due = since.as_second() + deadline;
        let wait = (due - self.now.as_second()).max(0) + 1;
        Some(Duration::from_secs(u64::try_from(wait).unwrap_or(1)))
    }

    fn finish(mut self, requeue: Option<Duration>) -> Plan {
        let mut actions: Vec<Action> = std::mem::take(&mut self.actions);
        let (mut head, tail): (Vec<Action>, Vec<Action>) = actions
            .drain(..)
            .partition(|a| matches!(a, Action::Adopt(_) | Action::Release(_)));
        if let Some(i) = self.created {
            head.push(Action::Create(self.sets[i].clone()));
        }
        for (i, rs) in self.sets.iter().enumerate() {
            if !self.changed[i] || Some(i) == self.created {
                continue;
            }
            let to = replicas_of(rs);
            let scaled = (self.original[i] != to).then_some((self.original[i], to));
            head.push(Action::Update {
                rs: rs.clone(),
                scaled,
            });
        }
        head.extend(tail);
        Plan {
            actions: head,
            revision: self.revision,
            status: self.status,
            requeue_after: requeue,
        }
    }
}

/// The condition of this type, if any.
pub fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// progressDeadlineSeconds set (apps/v1 defaults it to 600) and not "forever" (MaxInt32).
pub fn has_progress_deadline(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .is_some_and(|s| s != i32::MAX)
}

/// All replicas updated, available, and no old ones left, for the current generation.
pub fn deployment_complete(d: &Deployment, status: Option<&DeploymentStatus>) -> bool {
    let Some(status) = status else {
        return false;
    };
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    status.updated_replicas.unwrap_or(0) == replicas
        && status.replicas.unwrap_or(0) == replicas
        && status.available_replicas.unwrap_or(0) == replicas
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// kube's DeploymentProgressing: more updated, ready or available pods, or fewer old ones.
pub fn progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let v = |x: Option<i32>| x.unwrap_or(0);
    let old_old = v(old.replicas) - v(old.updated_replicas);
    let new_old = v(new.replicas) - v(new.updated_replicas);
    v(new.updated_replicas) > v(old.updated_replicas)
        || new_old < old_old
        || v(new.ready_replicas) > v(old.ready_replicas)
        || v(new.available_replicas) > v(old.available_replicas)
}

/// kube's DeploymentTimedOut: no progress recorded for `deadline` seconds.
pub fn timed_out(current: Option<&DeploymentCondition>, deadline: i64, now: Timestamp) -> bool {
    let Some(c) = current else {
        return false;
    };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => return false,
        Some(TIMED_OUT) => return true,
        _ => {}
    }
    match &c.last_update_time {
        Some(Time(from)) => from.as_second() + deadline < now.as_second(),
        None => false,
    }
}

/// Runs the controller until `shutdown` turns true.
pub async fn run(client: Client, shutdown: watch::Receiver<bool>) -> Result<(), ControllerError> {
    let queue = WorkQueue::new();
    let deployments = {
        let queue = queue.clone();
        Informer::spawn_with(
            Api::<Deployment>::all(client.clone()),
            ListParams::default(),
            shutdown.clone(),
            move |change| queue.add(&util::key_of(&change.object().metadata)),
        )
    };
    let sets = {
        let (queue, deployments) = (queue.clone(), deployments.store().clone());
        Informer::spawn_with(
            Api::<ReplicaSet>::all(client.clone()),
            ListParams::default(),
            shutdown.clone(),
            move |change| set_changed(&deployments, &queue, change),
        )
    };
    let pods = {
        // Pods matter only to Recreate, which waits for the old ones to be gone.
        let (queue, sets) = (queue.clone(), sets.store().clone());
        Informer::spawn_with(
            Api::<Pod>::all(client.clone()),
            ListParams::default(),
            shutdown.clone(),
            move |change| {
                if let Change::Deleted(pod) = change {
                    pod_deleted(&sets, &queue, pod);
                }
            },
        )
    };
    let controller = Arc::new(Controller {
        recorder: Recorder::new(client.clone(), COMPONENT, None),
        client,
        deployments,
        sets,
        pods,
        queue,
    });
    util::run_workers(controller, WORKERS, shutdown).await;
    Ok(())
}

const WORKERS: usize = 4;

struct Controller {
    client: Client,
    recorder: Recorder,
    deployments: Informer<Deployment>,
    sets: Informer<ReplicaSet>,
    pods: Informer<Pod>,
    queue: WorkQueue,
}

/// Queues the owning Deployment of a changed ReplicaSet, or for an orphan every Deployment
/// whose selector matches it.
fn set_changed(deployments: &Store<Deployment>, queue: &WorkQueue, change: &Change<ReplicaSet>) {
    let old = match change {
        Change::Applied { old, .. } => old.as_ref(),
        Change::Deleted(_) => None,
    };
    for rs in old.into_iter().chain(std::iter::once(change.object())) {
        let namespace = rs.metadata.namespace.clone().unwrap_or_default();
        match util::controller_of(&rs.metadata) {
            Some(owner) if owner.kind == "Deployment" => {
                queue.add(&format!("{namespace}/{}", owner.name));
            }
            Some(_) => {}
            None => {
                let labels = rs.metadata.labels.clone().unwrap_or_default();
                for d in deployments.list_namespace(&namespace) {
                    let selector = d
                        .spec
                        .as_ref()
                        .map(|s| s.selector.clone())
                        .unwrap_or_default();
                    if LabelSelector::from_meta(&selector)
                        .is_ok_and(|s| !s.is_empty() && s.matches(&labels))
                    {
                        queue.add(&util::key_of(&d.metadata));
                    }
                }
            }
        }
    }
}

/// Queues the Deployment whose ReplicaSet owned a deleted pod.
fn pod_deleted(sets: &Store<ReplicaSet>, queue: &WorkQueue, pod: &Pod) {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let Some(owner) = util::controller_of(&pod.metadata).filter(|o| o.kind == "ReplicaSet") else {
        return;
    };
    let Some(rs) = sets.get(&ObjectKey::new(&namespace, &owner.name)) else {
        return;
    };
    if let Some(d) = util::controller_of(&rs.metadata).filter(|o| o.kind == "Deployment") {
        queue.add(&format!("{namespace}/{}", d.name));
    }
}

impl Reconciler for Controller {
    const WHAT: &'static str = "deployment";

    fn queue(&self) -> &WorkQueue {
        &self.queue
    }

    fn synced(&self) -> bool {
        self.deployments.is_synced() && self.sets.is_synced() && self.pods.is_synced()
    }

    fn keys(&self) -> Vec<String> {
        let deployments = self.deployments.store().list();
        deployments
            .iter()
            .map(|d| util::key_of(&d.metadata))
            .collect()
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, ClientError> {
        let Some(d) = self.deployments.store().get(&util::object_key(key)) else {
            return Ok(None);
        };
        let (namespace, name) = util::split_key(key);
        let sets = util::owned(self.sets.store().list_namespace(namespace));
        let pods = util::owned(self.pods.store().list_namespace(namespace));
        let plan = match plan(&d, &sets, &pods, Timestamp::now()) {
            Ok(plan) => plan,
            Err(error) => {
                // Retrying cannot help until the user fixes the Deployment, which queues it.
                tracing::warn!(%key, %error, "not syncing deployment");
                self.recorder
                    .emit(
                        object_reference("apps/v1", "Deployment", &d.metadata),
                        EventType::Warning,
                        "InvalidDeployment",
                        &error.to_string(),
                    );
                return Ok(None);
            }
        };
        let rs_api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), namespace);
        let d_ref = object_reference("apps/v1", "Deployment", &d.metadata);
        let owner = util::controller_ref("apps/v1", "Deployment", &d.metadata);
        for action in &plan.actions {
            match action {
                Action::Adopt(rs_name) | Action::Release(rs_name) => {
                    let Some(rs) = sets
                        .iter()
                        .find(|rs| rs.metadata.name.as_deref() == Some(rs_name))
                    else {
                        continue;
                    };
                    let mut refs = rs.metadata.owner_references.clone().unwrap_or_default();
                    if matches!(action, Action::Adopt(_)) {
                        tracing::info!(%key, replicaset = %rs_name, "adopting replica set");
                        refs.push(owner.clone());
                    } else {
                        tracing::info!(%key, replicaset = %rs_name, "releasing replica set that no longer matches");
                        refs.retain(|r| r.uid != owner.uid);
                    }
                    let patch = json!({"metadata": {
                        "ownerReferences": refs,
                        "resourceVersion": rs.metadata.resource_version,
                    }});
                    match rs_api
                        .patch(rs_name, &PatchParams::default(), &Patch::Merge(patch))
                        .await
                    {
                        Ok(updated) => {
                            self.sets.store().apply(Arc::new(updated));
                        }
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e),
                    }
                }
                Action::Create(rs) => {
                    let created = rs_api.create(&PostParams::default(), rs).await?;
                    let rs_name = created.metadata.name.clone().unwrap_or_default();
                    tracing::info!(%key, replicaset = %rs_name, "created new replica set");
                    let size = replicas_of(&created);
                    self.sets.store().apply(Arc::new(created));
                    if size > 0 {
                        self.recorder
                            .emit(
                                d_ref.clone(),
                                EventType::Normal,
                                "ScalingReplicaSet",
                                &format!("Scaled up replica set {rs_name} from 0 to {size}"),
                            );
                    }
                }
                Action::Update { rs, scaled } => {
                    let rs_name = rs.metadata.name.clone().unwrap_or_default();
                    let updated = rs_api.replace(&rs_name, &PostParams::default(), rs).await?;
                    self.sets.store().apply(Arc::new(updated));
                    if let Some((from, to)) = scaled {
                        let direction = if to > from { "up" } else { "down" };
                        tracing::info!(%key, replicaset = %rs_name, from, to, "scaled replica set");
                        self.recorder
                            .emit(
                                d_ref.clone(),
                                EventType::Normal,
                                "ScalingReplicaSet",
                                &format!(
                                    "Scaled {direction} replica set {rs_name} from {from} to {to}"
                                ),
                            );
                    }
                }
                Action::Delete(rs_name) => {
                    tracing::info!(%key, replicaset = %rs_name, "deleting old replica set beyond the revision history limit");
                    match rs_api.delete(rs_name, &DeleteParams::default()).await {
                        Ok(_) => {}
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        let d_api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let mut latest = (*d).clone();
        if let Some(revision) = &plan.revision {
            let patch = json!({"metadata": {
                "annotations": {REVISION_ANNOTATION: revision},
                "resourceVersion": d.metadata.resource_version,
            }});
            latest = d_api
                .patch(name, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
        }
        if d.status.as_ref() != Some(&plan.status) {
            latest.status = Some(plan.status.clone());
            let updated = d_api
                .replace_status(name, &PostParams::default(), &latest)
                .await?;
            self.deployments.store().apply(Arc::new(updated));
        } else if plan.revision.is_some() {
            self.deployments.store().apply(Arc::new(latest));
        }
        // Availability turns true minReadySeconds after readiness, with no event to say so.
        let min_ready = d
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        let mut requeue = plan.requeue_after;
        if min_ready > 0 && plan.status.available_replicas != plan.status.ready_replicas {
            let wait = Duration::from_secs(u64::try_from(min_ready).unwrap_or(1));
            requeue = Some(requeue.map_or(wait, |r| r.min(wait)));
        }
        Ok(requeue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{from, merge, time};
    use serde_json::Value;

    const UID: &str = "d-uid";

    fn now() -> Timestamp {
        time("2026-01-01T01:00:00Z")
    }

    fn template(image: &str) -> Value {
        json!({"metadata": {"labels": {"app": "web"}},
               "spec": {"containers": [{"name": "web", "image": image}]}})
    }

    fn deployment(replicas: i32, image: &str, extra: Value) -> Deployment {
        let mut v = json!({
            "metadata": {"name": "web", "namespace": "default", "uid": UID, "generation": 1},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": template(image),
                "progressDeadlineSeconds": 600,
                "revisionHistoryLimit": 10
            },
            "status": {"observedGeneration": 1}
        });
        merge(&mut v, extra);
        from(v)
    }

    /// An owned ReplicaSet for `image` with `replicas` (spec and status), `available` of them.
    fn replica_set(
        image: &str,
        revision: i64,
        replicas: i32,
        available: i32,
        created: &str,
    ) -> ReplicaSet {
        let d = deployment(replicas, image, json!({}));
        let hash = pod_template_hash(
            &d.spec
                .as_ref()
                .map(|s| s.template.clone())
                .unwrap_or_default(),
            None,
        );
        let mut t = template(image);
        t["metadata"]["labels"]["pod-template-hash"] = hash.clone().into();
        from(json!({
            "metadata": {
                "name": format!("web-{hash}"), "namespace": "default", "uid": format!("uid-{image}"),
                "creationTimestamp": created, "generation": 1,
                "labels": {"app": "web", "pod-template-hash": hash},
                "annotations": {REVISION_ANNOTATION: revision.to_string()},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": UID, "controller": true}]
            },
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web", "pod-template-hash": hash}}, "template": t},
            "status": {"replicas": replicas, "readyReplicas": available, "availableReplicas": available, "observedGeneration": 1}
        }))
    }

    fn annotate(mut rs: ReplicaSet, desired: i32, max: i32) -> ReplicaSet {
        let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
        a.insert(DESIRED_REPLICAS_ANNOTATION.into(), desired.to_string());
        a.insert(MAX_REPLICAS_ANNOTATION.into(), max.to_string());
        rs
    }

    fn check_plan(d: &Deployment, sets: &[ReplicaSet], pods: &[Pod]) -> Plan {
        match plan(d, sets, pods, now()) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    /// The actions as short strings: "create web-x 3", "scale web-x 3->2", "update web-x",
    /// "delete web-x", "adopt web-x", "release web-x".
    fn summary(p: &Plan) -> Vec<String> {
        p.actions
            .iter()
            .map(|a| match a {
                Action::Create(rs) => format!("create {} {}", name_of(rs), replicas_of(rs)),
                Action::Update {
                    rs,
                    scaled: Some((from, to)),
                } => format!("scale {} {from}->{to}", name_of(rs)),
                Action::Update { rs, scaled: None } => format!("update {}", name_of(rs)),
                Action::Delete(n) => format!("delete {n}"),
                Action::Adopt(n) => format!("adopt {n}"),
                Action::Release(n) => format!("release {n}"),
            })
            .collect()
    }

    fn name(image: &str) -> String {
        name_of(&replica_set(image, 1, 0, 0, "2026-01-01T00:00:00Z"))
    }

    fn cond(p: &Plan, type_: &str) -> (String, String) {
        match condition(&p.status, type_) {
            Some(c) => (c.status.clone(), c.reason.clone().unwrap_or_default()),
            None => ("none".into(), String::new()),
        }
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        let check = |replicas: i32,
                     surge: Value,
                     unavailable: Value,
                     expected: Result<(i32, i32), &str>| {
            let d = deployment(
                replicas,
                "a",
                json!({"spec": {"strategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}}),
            );
            match (fenceposts(&d), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, want),
                (Err(e), Err(field)) => assert!(e.to_string().contains(field), "{e}"),
                (got, want) => panic!("{got:?} != {want:?}"),
            }
        };
        check(10, json!("25%"), json!("25%"), Ok((3, 2)));
        check(4, json!("25%"), json!("25%"), Ok((1, 1)));
        check(3, json!("25%"), json!("25%"), Ok((1, 0)));
        check(3, json!(2), json!(1), Ok((2, 1)));
        check(3, json!(0), json!(0), Ok((0, 1)));
        check(3, json!("0%"), json!("10%"), Ok((0, 1)));
        check(2, json!(1), json!(5), Ok((1, 2)));
        check(3, json!("5"), json!(1), Err("maxSurge"));
        check(3, json!("abc%"), json!(1), Err("maxSurge"));
        check(3, json!(1), json!("-5%"), Err("maxUnavailable"));
        check(3, json!(-1), json!(1), Err("maxSurge"));
        let d = deployment(3, "a", json!({"spec": {"strategy": {"type": "Recreate"}}}));
        assert_eq!(fenceposts(&d), Ok((0, 0)));
        // Defaults: 25% each.
        assert_eq!(fenceposts(&deployment(8, "a", json!({}))), Ok((2, 2)));
    }

    #[test]
    fn a_new_deployment_gets_its_first_replica_set() {
        let d = deployment(3, "nginx:1", json!({}));
        let p = check_plan(&d, &[], &[]);
        assert_eq!(summary(&p), vec![format!("create {} 3", name("nginx:1"))]);
        let Action::Create(rs) = &p.actions[0] else {
            panic!("{:?}", p.actions)
        };
        let hash = pod_template_hash(
            &d.spec
                .as_ref()
                .map(|s| s.template.clone())
                .unwrap_or_default(),
            None,
        );
        assert_eq!(name_of(rs), format!("web-{hash}"));
        let selector = rs
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        assert_eq!(
            selector
                .match_labels
                .as_ref()
                .and_then(|l| l.get("pod-template-hash")),
            Some(&hash)
        );
        let template_labels = rs
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        assert_eq!(template_labels.get("pod-template-hash"), Some(&hash));
        assert_eq!(annotation(&rs.metadata, REVISION_ANNOTATION), Some("1"));
        assert_eq!(
            annotation(&rs.metadata, DESIRED_REPLICAS_ANNOTATION),
            Some("3")
        );
        assert_eq!(annotation(&rs.metadata, MAX_REPLICAS_ANNOTATION), Some("4"));
        let owner = util::controller_of(&rs.metadata).map(|o| o.uid.clone());
        assert_eq!(owner.as_deref(), Some(UID));
        assert_eq!(p.revision.as_deref(), Some("1"));
        assert_eq!(
            cond(&p, "Progressing"),
            ("True".into(), NEW_RS_CREATED.into())
        );
        assert_eq!(
            cond(&p, "Available"),
            ("False".into(), MIN_UNAVAILABLE.into())
        );
    }

    #[test]
    fn rolling_update_surges_then_scales_old_down_by_availability() {
        // maxSurge 1, maxUnavailable 0 (25% of 3, rounded).
        let old = annotate(replica_set("v1", 1, 3, 3, "2026-01-01T00:00:00Z"), 3, 4);
        let d = deployment(3, "v2", json!({"metadata": {"generation": 2}}));
        let p = check_plan(&d, std::slice::from_ref(&old), &[]);
        assert_eq!(summary(&p), vec![format!("create {} 1", name("v2"))]);
        assert_eq!(p.revision.as_deref(), Some("2"));

        // The new pod is available: one old one may go.
        let new = annotate(replica_set("v2", 2, 1, 1, "2026-01-01T00:30:00Z"), 3, 4);
        let p = check_plan(&d, &[old.clone(), new.clone()], &[]);
        assert_eq!(summary(&p), vec![format!("scale {} 3->2", name("v1"))]);

        // Not yet available: nothing may go, and the new one cannot grow past the surge.
        let unready = annotate(replica_set("v2", 2, 1, 0, "2026-01-01T00:30:00Z"), 3, 4);
        let p = check_plan(&d, &[old.clone(), unready], &[]);
        assert!(summary(&p).is_empty(), "{:?}", summary(&p));

        // Old scaled to 2: the new one grows to 2.
        let old2 = annotate(replica_set("v1", 1, 2, 2, "2026-01-01T00:00:00Z"), 3, 4);
        let p = check_plan(&d, &[old2, new], &[]);
        assert_eq!(summary(&p), vec![format!("scale {} 1->2", name("v2"))]);
        assert_eq!(cond(&p, "Available"), ("True".into(), MIN_AVAILABLE.into()));
    }

    #[test]
    fn unhealthy_old_replicas_go_first() {
        let d = deployment(
            3,
            "v2",
            json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}}}),
        );
        let old = annotate(replica_set("v1", 1, 3, 2, "2026-01-01T00:00:00Z"), 3, 3);
        let p = check_plan(&d, &[old], &[]);
        assert_eq!(
            summary(&p),
            vec![
                format!("create {} 0", name("v2")),
                format!("scale {} 3->2", name("v1"))
            ]
        );
    }

    #[test]
    fn recreate_scales_old_to_zero_waits_for_pods_then_creates() {
        let d = deployment(2, "v2", json!({"spec": {"strategy": {"type": "Recreate"}}}));
        let old = annotate(replica_set("v1", 1, 2, 2, "2026-01-01T00:00:00Z"), 2, 2);
        let p = check_plan(&d, std::slice::from_ref(&old), &[]);
        assert_eq!(summary(&p), vec![format!("scale {} 2->0", name("v1"))]);

        let drained = annotate(replica_set("v1", 1, 0, 0, "2026-01-01T00:00:00Z"), 2, 2);
        let terminating: Pod = from(json!({"metadata": {"name": "p", "namespace": "default",
            "deletionTimestamp": "2026-01-01T00:59:00Z",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x", "uid": "uid-v1", "controller": true}]},
            "status": {"phase": "Running"}}));
        let p = check_plan(&d, std::slice::from_ref(&drained), &[terminating]);
        assert!(summary(&p).is_empty(), "{:?}", summary(&p));

        let p = check_plan(&d, &[drained], &[]);
        assert_eq!(summary(&p), vec![format!("create {} 2", name("v2"))]);
    }

    #[test]
    fn paused_deployments_scale_but_do_not_roll() {
        let d = deployment(5, "v2", json!({"spec": {"paused": true}}));
        let old = annotate(replica_set("v1", 1, 3, 3, "2026-01-01T00:00:00Z"), 3, 4);
        let p = check_plan(&d, &[old], &[]);
        assert_eq!(summary(&p), vec![format!("scale {} 3->5", name("v1"))]);
        assert_eq!(cond(&p, "Progressing"), ("Unknown".into(), PAUSED.into()));

        let resumed = deployment(
            3,
            "v1",
            json!({"status": {"conditions": [{"type": "Progressing", "status": "Unknown", "reason": PAUSED}]}}),
        );
        let rs = annotate(replica_set("v1", 1, 3, 3, "2026-01-01T00:00:00Z"), 3, 4);
        let p = check_plan(&resumed, &[rs], &[]);
        assert_ne!(cond(&p, "Progressing").1, PAUSED);
    }

    #[test]
    fn scaling_mid_rollout_is_proportional() {
        // 10 -> 20 replicas with maxSurge 3: old 8 and new 5 grow to 14 and 9 (23 in all).
        let d = deployment(
            20,
            "v2",
            json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}}}}),
        );
        let old = annotate(replica_set("v1", 1, 8, 8, "2026-01-01T00:00:00Z"), 10, 13);
        let new = annotate(replica_set("v2", 2, 5, 0, "2026-01-01T00:30:00Z"), 10, 13);
        let p = check_plan(&d, &[old, new], &[]);
        let mut got = summary(&p);
        got.sort();
        let mut want = vec![
            format!("scale {} 8->14", name("v1")),
            format!("scale {} 5->9", name("v2")),
        ];
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn undo_brings_an_old_replica_set_back_with_a_new_revision() {
        let d = deployment(
            2,
            "v1",
            json!({"metadata": {"annotations": {REVISION_ANNOTATION: "2"}}}),
        );
        let v1 = annotate(replica_set("v1", 1, 0, 0, "2026-01-01T00:00:00Z"), 2, 3);
        let v2 = annotate(replica_set("v2", 2, 2, 2, "2026-01-01T00:30:00Z"), 2, 3);
        let p = check_plan(&d, &[v1, v2], &[]);
        assert_eq!(p.revision.as_deref(), Some("3"));
        let brought_back = p.actions.iter().find_map(|a| match a {
            Action::Update { rs, .. } if name_of(rs) == name("v1") => Some(rs.clone()),
            _ => None,
        });
        let Some(rs) = brought_back else {
            panic!("{:?}", summary(&p))
        };
        assert_eq!(annotation(&rs.metadata, REVISION_ANNOTATION), Some("3"));
        assert_eq!(
            annotation(&rs.metadata, REVISION_HISTORY_ANNOTATION),
            Some("1")
        );
        assert_eq!(replicas_of(&rs), 1, "it surges by one");
    }

    #[test]
    fn history_beyond_the_limit_is_deleted_oldest_first_when_empty() {
        let d = deployment(
            1,
            "v4",
            json!({"spec": {"revisionHistoryLimit": 1},
            "status": {"replicas": 1, "updatedReplicas": 1, "availableReplicas": 1, "observedGeneration": 1}}),
        );
        let sets = vec![
            annotate(replica_set("v1", 1, 0, 0, "2026-01-01T00:00:00Z"), 1, 2),
            annotate(replica_set("v2", 2, 0, 0, "2026-01-01T00:10:00Z"), 1, 2),
            annotate(replica_set("v3", 3, 0, 0, "2026-01-01T00:20:00Z"), 1, 2),
            annotate(replica_set("v4", 4, 1, 1, "2026-01-01T00:30:00Z"), 1, 2),
        ];
        let p = check_plan(&d, &sets, &[]);
        assert_eq!(
            summary(&p),
            vec![
                format!("delete {}", name("v1")),
                format!("delete {}", name("v2"))
            ]
        );
        assert_eq!(
            cond(&p, "Progressing"),
            ("True".into(), NEW_RS_AVAILABLE.into())
        );
    }

    #[test]
    fn a_stalled_rollout_exceeds_its_progress_deadline() {
        let stale = json!({"status": {"replicas": 4, "updatedReplicas": 1, "availableReplicas": 3, "readyReplicas": 3, "observedGeneration": 1,
            "conditions": [{"type": "Progressing", "status": "True", "reason": RS_UPDATED,
                "lastUpdateTime": "2026-01-01T00:49:00Z", "lastTransitionTime": "2026-01-01T00:49:00Z"}]}});
        let mut d = deployment(3, "bad", stale.clone());
        if let Some(spec) = d.spec.as_mut() {
            spec.progress_deadline_seconds = Some(600);
        }
        let old = annotate(replica_set("v1", 1, 3, 3, "2026-01-01T00:00:00Z"), 3, 4);
        let new = annotate(replica_set("bad", 2, 1, 0, "2026-01-01T00:30:00Z"), 3, 4);
        let p = check_plan(&d, &[old.clone(), new.clone()], &[]);
        assert_eq!(cond(&p, "Progressing"), ("False".into(), TIMED_OUT.into()));
        assert_eq!(p.requeue_after, None);

        // Within the deadline: still progressing, and looked at again when it would pass.
        let mut recent = deployment(3, "bad", stale);
        if let Some(spec) = recent.spec.as_mut() {
            spec.progress_deadline_seconds = Some(700);
        }
        let p = check_plan(&recent, &[old, new], &[]);
        assert_eq!(cond(&p, "Progressing"), ("True".into(), RS_UPDATED.into()));
        assert_eq!(p.requeue_after, Some(Duration::from_secs(41)));
    }

    #[test]
    fn a_hash_collision_bumps_the_collision_count() {
        let d = deployment(1, "v2", json!({}));
        // A ReplicaSet with the name v2's hash gives but another template.
        let mut impostor = replica_set("v1", 1, 1, 1, "2026-01-01T00:00:00Z");
        impostor.metadata.name = Some(name("v2"));
        let p = check_plan(&d, &[impostor], &[]);
        assert!(
            summary(&p).iter().all(|a| !a.starts_with("create")),
            "{:?}",
            summary(&p)
        );
        assert_eq!(p.status.collision_count, Some(1));
        // With the count, the hash (and name) differ.
        let template = d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        assert_ne!(
            pod_template_hash(&template, Some(1)),
            pod_template_hash(&template, None)
        );
    }

    #[test]
    fn restarted_at_changes_the_template_and_so_the_replica_set() {
        let d = deployment(
            1,
            "v1",
            json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:59:00Z"}}}}}),
        );
        let rs = annotate(replica_set("v1", 1, 1, 1, "2026-01-01T00:00:00Z"), 1, 2);
        let p = check_plan(&d, &[rs], &[]);
        assert!(
            summary(&p).iter().any(|a| a.starts_with("create ")),
            "{:?}",
            summary(&p)
        );
    }

    #[test]
    fn orphans_are_adopted_and_strays_released() {
        let d = deployment(1, "v1", json!({}));
        let mut orphan = annotate(replica_set("v1", 1, 1, 1, "2026-01-01T00:00:00Z"), 1, 2);
        orphan.metadata.owner_references = None;
        let mut stray = annotate(replica_set("v0", 1, 0, 0, "2026-01-01T00:00:00Z"), 1, 2);
        stray.metadata.labels = Some(BTreeMap::from([("app".to_string(), "api".to_string())]));
        let p = check_plan(&d, &[orphan, stray], &[]);
        assert_eq!(
            summary(&p),
            vec![
                format!("adopt {}", name("v1")),
                format!("release {}", name("v0"))
            ]
        );
    }

    #[test]
    fn bad_deployments_are_refused() {
        let mismatch = deployment(
            1,
            "v1",
            json!({"spec": {"selector": {"matchLabels": {"app": "api"}}}}),
        );
        assert!(matches!(
            plan(&mismatch, &[], &[], now()),
            Err(PlanError::SelectorMismatch { .. })
        ));
        let empty = deployment(
            1,
            "v1",
            json!({"spec": {"selector": {"matchLabels": null}}}),
        );
        assert!(matches!(
            plan(&empty, &[], &[], now()),
            Err(PlanError::EmptySelector { .. })
        ));
        let bad_surge = deployment(
            1,
            "v1",
            json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": "lots"}}}}),
        );
        assert!(matches!(
            plan(&bad_surge, &[], &[], now()),
            Err(PlanError::InvalidIntOrPercent { .. })
        ));
    }

    #[test]
    fn a_finished_rollout_reports_complete_status() {
        let d = deployment(2, "v1", json!({}));
        let rs = annotate(replica_set("v1", 1, 2, 2, "2026-01-01T00:00:00Z"), 2, 3);
        let p = check_plan(&d, &[rs], &[]);
        assert!(summary(&p).is_empty(), "{:?}", summary(&p));
        let s = &p.status;
        assert_eq!(
            (
                s.replicas,
                s.updated_replicas,
                s.ready_replicas,
                s.available_replicas,
                s.unavailable_replicas
            ),
            (Some(2), Some(2), Some(2), Some(2), Some(0))
        );
        assert_eq!(s.observed_generation, Some(1));
        assert_eq!(
            cond(&p, "Progressing"),
            ("True".into(), NEW_RS_AVAILABLE.into())
        );
        assert_eq!(p.revision.as_deref(), Some("1"));
    }
}
