//! The node lifecycle controller: notices nodes whose agent stopped renewing its Lease in
//! `kube-node-lease`, marks them `Ready=Unknown` with the `node.kubernetes.io/unreachable` taints,
//! evicts their pods after the eviction timeout (or the pods' own `tolerationSeconds`), lifts the
//! taints when the Lease is renewed again, and gives every Node a pod CIDR from the cluster range.
//!
//! Heartbeats are judged by when *this process* saw the Lease's `renewTime` change, not by
//! comparing the agent's clock with ours, as Kubernetes does, so clock skew between machines
//! cannot make a node look dead; after a restart every node gets a full grace period again.
//!
//! Evicted pods are deleted gracefully: their node's agent is not there to finish the deletion, so
//! they stay `Terminating` until the node comes back (or its Node object is deleted, when they are
//! force-deleted here); the ReplicaSet controller ignores terminating pods, so replacements appear
//! at once. The decisions are pure functions ([`plan_node`], [`eviction_delay`],
//! [`CidrAllocator`]); [`run`] applies them on a 1 s tick.
//!
//! Only IPv4 cluster CIDRs are supported.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use api::client::{Api, Client, DeleteParams, ListParams, Patch, PatchParams};
use api::coordination::Lease;
use api::core::{Node, NodeCondition, Pod, PodCondition, Taint, Toleration};
use api::meta::Time;
use jiff::Timestamp;
use tokio::sync::watch;
use tokio::time::Instant;

use api::client::events::{object_reference, EventType, Recorder};
use crate::informer::{Informer, ObjectKey};
use crate::ControllerError;
pub use api::taints::tolerates;

pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
const COMPONENT: &str = "node-controller";
/// How often nodes are looked at (Kubernetes' node-monitor-period is 5 s).
const TICK: Duration = Duration::from_secs(1);
/// Conditions a node agent reports that become Unknown when it stops reporting.
const AGENT_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// Settings from the command line.
#[derive(Clone, Debug)]
pub struct Config {
    pub node_monitor_grace_period: Duration,
    pub pod_eviction_timeout: Duration,
    pub cluster_cidr: String,
    pub node_cidr_mask_size: u8,
}

/// Hands out one pod CIDR per node from the cluster range, never the same one twice.
#[derive(Clone, Debug)]
pub struct CidrAllocator {
    cidr: String,
    base: u32,
    prefix: u8,
    mask: u8,
    /// Block index → node holding it.
    used: BTreeMap<u64, String>,
    by_node: HashMap<String, u64>,
}

/// What to write to a node, decided by [`plan_node`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodePlan {
    /// New `status.conditions`, when they change.
    pub conditions: Option<Vec<NodeCondition>>,
    /// New `spec.taints`, when they change.
    pub taints: Option<Vec<Taint>>,
    /// The node just became NotReady (record a NodeNotReady event, mark its pods not ready).
    pub became_not_ready: bool,
}

/// Runs the controller until `shutdown` becomes true.
pub async fn run(
    client: Client,
    config: Config,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ControllerError> {
    let mut allocator = CidrAllocator::new(&config.cluster_cidr, config.node_cidr_mask_size)?;
    let nodes = Informer::spawn(
        Api::<Node>::all(client.clone()),
        ListParams::default(),
        shutdown.clone(),
    );
    let leases = Informer::spawn(
        Api::<Lease>::namespaced(client.clone(), NODE_LEASE_NAMESPACE),
        ListParams::default(),
        shutdown.clone(),
    );
    let pods = Informer::spawn(
        Api::<Pod>::all(client.clone()),
        ListParams::default(),
        shutdown.clone(),
    );
    tokio::select! {
        _ = shutdown.wait_for(|s| *s) => return Ok(()),
        _ = async { nodes.wait_synced().await; leases.wait_synced().await; pods.wait_synced().await } => {}
    }
    // Rebuild the used CIDRs before handing out any, so a restart never gives one out twice.
    for node in nodes.store().list() {
        let name = node.metadata.name.clone().unwrap_or_default();
        if let Some(cidr) = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()) {
            if let Err(holder) = allocator.occupy(&name, cidr) {
                tracing::warn!(node = %name, %cidr, %holder, "node's pod CIDR overlaps another node's or is outside the cluster CIDR");
            }
        }
    }
    tracing::info!(cluster_cidr = %config.cluster_cidr, "node lifecycle controller started");
    let recorder = Recorder::new(client.clone(), COMPONENT, None);
    let mut monitor = Monitor {
        client,
        config,
        recorder,
        observed: HashMap::new(),
        known: HashSet::new(),
        taint_seen: HashMap::new(),
        cidr_failed: HashSet::new(),
    };
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
            _ = tick.tick() => {}
        }
        monitor.pass(&nodes, &leases, &pods, &mut allocator).await;
    }
}

impl CidrAllocator {
    /// An allocator of `/mask` blocks out of `cidr` (e.g. `10.244.0.0/16` and 24).
    pub fn new(cidr: &str, mask: u8) -> Result<CidrAllocator, ControllerError> {
        let invalid =
            |flag: &'static str, value: String, reason: &str| ControllerError::InvalidFlag {
                flag,
                value,
                reason: reason.to_string(),
            };
        let (base, prefix) = parse_cidr(cidr)
            .map_err(|reason| invalid("--cluster-cidr", cidr.to_string(), &reason))?;
        if mask < prefix || mask > 32 {
            return Err(invalid(
                "--node-cidr-mask-size",
                mask.to_string(),
                &format!("must be between the cluster CIDR's prefix length {prefix} and 32"),
            ));
        }
        if mask - prefix > 24 {
            return Err(invalid(
                "--node-cidr-mask-size",
                mask.to_string(),
                "more than 2^24 node blocks; use a smaller mask size",
            ));
        }
        Ok(CidrAllocator {
            cidr: cidr.to_string(),
            base,
            prefix,
            mask,
            used: BTreeMap::new(),
            by_node: HashMap::new(),
        })
    }

    /// Records that `node` holds `cidr` (read from the cluster). Fails with a description when the
    /// block is not one of this range's or another node holds it.
    pub fn occupy(&mut self, node: &str, cidr: &str) -> Result<(), String> {
        let index = self.index_of(cidr)?;
        match self.used.get(&index) {
            Some(holder) if holder != node => Err(format!("already held by node {holder}")),
            _ => {
                self.release(node);
                self.used.insert(index, node.to_string());
                self.by_node.insert(node.to_string(), index);
                Ok(())
            }
        }
    }

    /// The node's block: the one it holds already, or the lowest free one.
    pub fn allocate(&mut self, node: &str) -> Result<String, ControllerError> {
        if let Some(index) = self.by_node.get(node) {
            return Ok(self.block(*index));
        }
        let blocks = 1u64 << (self.mask - self.prefix);
        let mut candidate = 0u64;
        for used in self.used.keys() {
            if *used != candidate {
                break;
            }
            candidate += 1;
        }
        if candidate >= blocks {
            return Err(ControllerError::CidrExhausted {
                cidr: self.cidr.clone(),
                mask: self.mask,
                node: node.to_string(),
            });
        }
        self.used.insert(candidate, node.to_string());
        self.by_node.insert(node.to_string(), candidate);
        Ok(self.block(candidate))
    }

    /// Frees the node's block, if it holds one.
    pub fn release(&mut self, node: &str) {
        if let Some(index) = self.by_node.remove(node) {
            self.used.remove(&index);
        }
    }

    /// The nodes holding a block.
    pub fn nodes(&self) -> Vec<String> {
        self.by_node.keys().cloned().collect()
    }

    fn block(&self, index: u64) -> String {
        let shift = 32 - u32::from(self.mask);
        // `index < 2^(mask - prefix)`, so the shifted value fits in the host part of the range.
        let offset = u32::try_from(index)
            .unwrap_or(0)
            .checked_shl(shift)
            .unwrap_or(0);
        format!("{}/{}", Ipv4Addr::from(self.base | offset), self.mask)
    }

    fn index_of(&self, cidr: &str) -> Result<u64, String> {
        let (address, prefix) = parse_cidr(cidr)?;
        if prefix != self.mask {
            return Err(format!("{cidr} is not a /{} block", self.mask));
        }
        let range_mask = prefix_mask(self.prefix);
        if address & range_mask != self.base {
            return Err(format!("{cidr} is outside {}", self.cidr));
        }
        let shift = 32 - u32::from(self.mask);
        Ok(u64::from(
            (address & !range_mask).checked_shr(shift).unwrap_or(0),
        ))
    }
}

/// Decides the node's conditions and taints: `expired` says its Lease was not renewed within the
/// grace period.
pub fn plan_node(node: &Node, expired: bool, now: Timestamp) -> NodePlan {
    let mut plan = NodePlan::default();
    let conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let has_unreachable = |effect: &str| {
        taints
            .iter()
            .any(|t| t.key == UNREACHABLE_TAINT && t.effect == effect)
    };
    if expired {
        let ready = conditions.iter().find(|c| c.type_ == "Ready");
        if ready.map(|c| c.status.as_str()) != Some("Unknown") {
            plan.conditions = Some(unknown_conditions(&conditions, now));
            plan.became_not_ready = true;
        }
        if !has_unreachable("NoExecute") || !has_unreachable("NoSchedule") {
            let mut new = taints.clone();
            for effect in ["NoSchedule", "NoExecute"] {
                if !has_unreachable(effect) {
                    new.push(Taint {
                        key: UNREACHABLE_TAINT.to_string(),
                        effect: effect.to_string(),
                        time_added: Some(Time(now)),
                        value: None,
                    });
                }
            }
            plan.taints = Some(new);
        }
    } else if taints.iter().any(|t| t.key == UNREACHABLE_TAINT) {
        // Renewed again: the agent reports Ready itself, the taints go now.
        plan.taints = Some(
            taints
                .into_iter()
                .filter(|t| t.key != UNREACHABLE_TAINT)
                .collect(),
        );
    }
    plan
}

/// How long after the taint was added a pod is evicted: the smallest `tolerationSeconds` of its
/// tolerations of the taint; `None` (never) when it tolerates the taint without a limit; the
/// default eviction timeout when it does not tolerate it (Kubernetes gives every pod that default
/// as a toleration at admission).
pub fn eviction_delay(pod: &Pod, taint: &Taint, default: Duration) -> Option<Duration> {
    let tolerations: Vec<&Toleration> = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| tolerates(t, taint))
        .collect();
    if tolerations.is_empty() {
        return Some(default);
    }
    tolerations
        .iter()
        .filter_map(|t| t.toleration_seconds)
        .min()
        .map(|seconds| Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
}

/// The pod's conditions with Ready set to False, or `None` when it is already False.
pub fn not_ready_conditions(pod: &Pod, now: Timestamp) -> Option<Vec<PodCondition>> {
    let mut conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    match conditions.iter_mut().find(|c| c.type_ == "Ready") {
        Some(ready) if ready.status == "False" => None,
        Some(ready) => {
            ready.status = "False".to_string();
            ready.last_transition_time = Some(Time(now));
            ready.reason = Some("NodeNotReady".to_string());
            ready.message = Some("the node's agent stopped reporting".to_string());
            Some(conditions)
        }
        None => {
            conditions.push(PodCondition {
                type_: "Ready".to_string(),
                status: "False".to_string(),
                last_transition_time: Some(Time(now)),
                reason: Some("NodeNotReady".to_string()),
                message: Some("the node's agent stopped reporting".to_string()),
                ..PodCondition::default()
            });
            Some(conditions)
        }
    }
}

/// The per-process memory of the controller.
struct Monitor {
    client: Client,
    config: Config,
    recorder: Recorder,
    /// Node → (last renewTime seen, when this process saw it change).
    observed: HashMap<String, (Option<String>, Instant)>,
    /// Nodes seen on the previous pass, to notice deletions.
    known: HashSet<String>,
    /// Node → when this process first saw its unreachable NoExecute taint, for taints written
    /// without `timeAdded`.
    taint_seen: HashMap<String, Timestamp>,
    /// Nodes already warned about for want of a pod CIDR, so a full range is logged once per node.
    cidr_failed: HashSet<String>,
}

impl Monitor {
    async fn pass(
        &mut self,
        nodes: &Informer<Node>,
        leases: &Informer<Lease>,
        pods: &Informer<Pod>,
        allocator: &mut CidrAllocator,
    ) {
        let now = Timestamp::now();
        let instant = Instant::now();
        let all_nodes = nodes.store().list();
        let current: HashSet<String> = all_nodes
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();

        for gone in self.known.difference(&current).cloned().collect::<Vec<_>>() {
            self.node_removed(&gone, pods).await;
        }
        for name in allocator.nodes() {
            if !current.contains(&name) {
                allocator.release(&name);
            }
        }
        self.observed.retain(|name, _| current.contains(name));
        self.taint_seen.retain(|name, _| current.contains(name));
        self.cidr_failed.retain(|name| current.contains(name));
        self.known = current;

        let mut by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
        for pod in pods.store().list() {
            if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
                by_node.entry(node).or_default().push(pod);
            }
        }

        for node in all_nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            let renew = leases
                .store()
                .get(&ObjectKey::new(NODE_LEASE_NAMESPACE, &name))
                .and_then(|l| l.spec.as_ref().and_then(|s| s.renew_time.clone()))
                .map(|t| t.0.to_string());
            let entry = self
                .observed
                .entry(name.clone())
                .or_insert_with(|| (renew.clone(), instant));
            if entry.0 != renew {
                *entry = (renew, instant);
            }
            let expired = instant.duration_since(entry.1) > self.config.node_monitor_grace_period;

            let plan = plan_node(&node, expired, now);
            if let Err(error) = self.apply(&node, &plan).await {
                tracing::warn!(node = %name, %error, "cannot update node, will retry");
            }
            let node_pods = by_node.remove(&name).unwrap_or_default();
            if plan.became_not_ready {
                tracing::info!(node = %name, "node stopped renewing its lease, marking it NotReady");
                let reference = object_reference("v1", "Node", &node.metadata);
                self.recorder
                    .emit(
                        reference.clone(),
                        EventType::Normal,
                        "NodeNotReady",
                        &format!("Node {name} status is now: NodeNotReady"),
                    );
            }
            if expired {
                self.mark_pods_not_ready(&node_pods, now).await;
            }
            let taints = plan
                .taints
                .clone()
                .or_else(|| node.spec.as_ref().and_then(|s| s.taints.clone()))
                .unwrap_or_default();
            // Only while the Lease is still expired: a node that came back keeps its pods even
            // if the write removing its taint has not happened yet.
            let unreachable = taints
                .iter()
                .find(|t| t.key == UNREACHABLE_TAINT && t.effect == "NoExecute");
            match unreachable {
                Some(taint) if expired => {
                    let first_seen = *self.taint_seen.entry(name.clone()).or_insert(now);
                    let added = taint.time_added.as_ref().map_or(first_seen, |t| t.0);
                    self.evict(&node_pods, taint, added, now).await;
                }
                _ => {
                    self.taint_seen.remove(&name);
                }
            }
            if node
                .spec
                .as_ref()
                .and_then(|s| s.pod_cidr.as_ref())
                .is_none()
            {
                self.assign_cidr(&name, allocator).await;
            }
        }
    }

    async fn apply(&self, node: &Node, plan: &NodePlan) -> Result<(), ControllerError> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let api: Api<Node> = Api::all(self.client.clone());
        // Taints first: the status write changes the resourceVersion the taint write carries.
        if let Some(taints) = &plan.taints {
            // The resourceVersion makes the write fail on a concurrent change (cordon, say)
            // rather than overwrite it; the next pass uses the newer node.
            let patch = Patch::Merge(serde_json::json!({
                "metadata": {"resourceVersion": node.metadata.resource_version},
                "spec": {"taints": taints},
            }));
            match api.patch(&name, &PatchParams::default(), &patch).await {
                Ok(_) => {}
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(conditions) = &plan.conditions {
            let patch = Patch::Merge(serde_json::json!({"status": {"conditions": conditions}}));
            api.patch_status(&name, &PatchParams::default(), &patch)
                .await?;
        }
        Ok(())
    }

    async fn mark_pods_not_ready(&self, pods: &[Arc<Pod>], now: Timestamp) {
        for pod in pods {
            let Some(conditions) = not_ready_conditions(pod, now) else {
                continue;
            };
            let key = ObjectKey::of(&pod.metadata);
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
            let patch = Patch::Merge(serde_json::json!({"status": {"conditions": conditions}}));
            if let Err(error) = api
                .patch_status(&key.name, &PatchParams::default(), &patch)
                .await
            {
                if !error.is_not_found() {
                    tracing::warn!(pod = %key, %error, "cannot mark pod not ready");
                }
            }
        }
    }

    async fn evict(&self, pods: &[Arc<Pod>], taint: &Taint, added: Timestamp, now: Timestamp) {
        for pod in pods {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let Some(delay) = eviction_delay(pod, taint, self.config.pod_eviction_timeout) else {
                continue;
            };
            let due = jiff::SignedDuration::try_from(delay)
                .ok()
                .and_then(|d| added.checked_add(d).ok())
                .unwrap_or(added);
            if now < due {
                continue;
            }
            let key = ObjectKey::of(&pod.metadata);
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
            match api.delete(&key.name, &DeleteParams::default()).await {
                Ok(_) => {
                    tracing::info!(pod = %key, node = ?pod.spec.as_ref().and_then(|s| s.node_name.as_deref()), "evicted pod from unreachable node");
                    let reference = object_reference("v1", "Pod", &pod.metadata);
                    self.recorder
                        .emit(
                            reference.clone(),
                            EventType::Normal,
                            "TaintManagerEviction",
                            &format!("Marking for deletion Pod {key}"),
                        );
                }
                Err(error) if error.is_not_found() => {}
                Err(error) => tracing::warn!(pod = %key, %error, "cannot evict pod, will retry"),
            }
        }
    }

    async fn assign_cidr(&mut self, name: &str, allocator: &mut CidrAllocator) {
        let cidr = match allocator.allocate(name) {
            Ok(cidr) => cidr,
            Err(error) => {
                if self.cidr_failed.insert(name.to_string()) {
                    tracing::warn!(node = %name, %error, "cannot allocate a pod CIDR");
                }
                return;
            }
        };
        let api: Api<Node> = Api::all(self.client.clone());
        let patch =
            Patch::Merge(serde_json::json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}));
        match api.patch(name, &PatchParams::default(), &patch).await {
            Ok(_) => tracing::info!(node = %name, %cidr, "allocated pod CIDR"),
            Err(error) => {
                tracing::warn!(node = %name, %error, "cannot write the node's pod CIDR, will retry");
                allocator.release(name);
            }
        }
    }

    /// The Node object is gone: its pods can never finish on it, so they are removed at once
    /// (Kubernetes' pod garbage collector does the same for pods bound to a deleted node).
    async fn node_removed(&mut self, name: &str, pods: &Informer<Pod>) {
        tracing::info!(node = %name, "node deleted");
        let reference = api::core::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(name.to_string()),
            ..Default::default()
        };
        self.recorder
            .emit(
                reference.clone(),
                EventType::Normal,
                "RemovingNode",
                &format!("Node {name} event: Removing Node {name} from Controller"),
            );
        for pod in pods.store().list() {
            if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(name) {
                continue;
            }
            let key = ObjectKey::of(&pod.metadata);
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            };
            match api.delete(&key.name, &params).await {
                Ok(_) => tracing::info!(pod = %key, node = %name, "deleted pod of a deleted node"),
                Err(error) if error.is_not_found() => {}
                Err(error) => {
                    tracing::warn!(pod = %key, %error, "cannot delete pod of a deleted node")
                }
            }
        }
    }
}

fn unknown_conditions(conditions: &[NodeCondition], now: Timestamp) -> Vec<NodeCondition> {
    let mut new: Vec<NodeCondition> = conditions.to_vec();
    for condition in new.iter_mut() {
        if AGENT_CONDITIONS.contains(&condition.type_.as_str()) && condition.status != "Unknown" {
            condition.status = "Unknown".to_string();
            condition.reason = Some("NodeStatusUnknown".to_string());
            condition.message = Some("Kubelet stopped posting node status.".to_string());
            condition.last_transition_time = Some(Time(now));
            condition.last_heartbeat_time = condition.last_heartbeat_time.clone();
        }
    }
    if !new.iter().any(|c| c.type_ == "Ready") {
        new.push(NodeCondition {
            type_: "Ready".to_string(),
            status: "Unknown".to_string(),
            reason: Some("NodeStatusNeverUpdated".to_string()),
            message: Some("Kubelet never posted node status.".to_string()),
            last_transition_time: Some(Time(now)),
            last_heartbeat_time: None,
        });
    }
    new
}

fn prefix_mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

/// `a.b.c.d/n` → (network address with host bits cleared, n).
fn parse_cidr(cidr: &str) -> Result<(u32, u8), String> {
    let (address, prefix) = cidr
        .split_once('/')
        .ok_or_else(|| "expected an IPv4 CIDR such as 10.244.0.0/16".to_string())?;
    let address: Ipv4Addr = address
        .parse()
        .map_err(|_| format!("{address} is not an IPv4 address (only IPv4 is supported)"))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(|| format!("{prefix} is not a prefix length between 0 and 32"))?;
    Ok((u32::from(address) & prefix_mask(prefix), prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::core::{NodeSpec, NodeStatus, PodSpec, PodStatus};
    use api::meta::ObjectMeta;

    fn node(ready: &str, taints: Vec<Taint>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..NodeSpec::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(vec![
                    NodeCondition {
                        type_: "Ready".into(),
                        status: ready.into(),
                        ..NodeCondition::default()
                    },
                    NodeCondition {
                        type_: "MemoryPressure".into(),
                        status: "False".into(),
                        ..NodeCondition::default()
                    },
                ]),
                ..NodeStatus::default()
            }),
        }
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Taint::default()
        }
    }

    fn now() -> Timestamp {
        Timestamp::UNIX_EPOCH
    }

    #[test]
    fn an_expired_ready_node_becomes_unknown_and_tainted() {
        let plan = plan_node(
            &node("True", vec![taint("dedicated", "NoSchedule")]),
            true,
            now(),
        );
        assert!(plan.became_not_ready);
        let conditions = plan.conditions.unwrap_or_default();
        for c in &conditions {
            assert_eq!(c.status, "Unknown", "{}", c.type_);
            assert_eq!(c.reason.as_deref(), Some("NodeStatusUnknown"));
            assert_eq!(
                c.message.as_deref(),
                Some("Kubelet stopped posting node status.")
            );
        }
        assert_eq!(conditions.len(), 2);
        let taints: Vec<(String, String)> = plan
            .taints
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.key, t.effect))
            .collect();
        assert_eq!(
            taints,
            [
                ("dedicated".into(), "NoSchedule".into()),
                (UNREACHABLE_TAINT.into(), "NoSchedule".into()),
                (UNREACHABLE_TAINT.into(), "NoExecute".into()),
            ]
        );
    }

    #[test]
    fn an_already_unknown_tainted_node_needs_nothing_and_a_renewed_one_loses_the_taints() {
        let tainted = vec![
            taint(UNREACHABLE_TAINT, "NoSchedule"),
            taint(UNREACHABLE_TAINT, "NoExecute"),
            taint("dedicated", "NoSchedule"),
        ];
        assert_eq!(
            plan_node(&node("Unknown", tainted.clone()), true, now()),
            NodePlan::default()
        );
        let plan = plan_node(&node("Unknown", tainted), false, now());
        assert!(!plan.became_not_ready);
        assert_eq!(plan.conditions, None, "the agent sets Ready itself");
        let keys: Vec<String> = plan
            .taints
            .unwrap_or_default()
            .into_iter()
            .map(|t| t.key)
            .collect();
        assert_eq!(keys, ["dedicated"]);
        // A healthy node without taints: nothing to do.
        assert_eq!(
            plan_node(&node("True", vec![]), false, now()),
            NodePlan::default()
        );
    }

    #[test]
    fn a_node_that_never_reported_gets_a_ready_unknown_condition() {
        let mut bare = node("True", vec![]);
        bare.status = None;
        let conditions = plan_node(&bare, true, now()).conditions.unwrap_or_default();
        assert_eq!(conditions.len(), 1);
        assert_eq!(
            conditions[0].reason.as_deref(),
            Some("NodeStatusNeverUpdated")
        );
    }

    fn pod_with(tolerations: Vec<Toleration>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                tolerations: Some(tolerations),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    fn toleration(key: &str, operator: &str, effect: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: (!key.is_empty()).then(|| key.to_string()),
            operator: Some(operator.into()),
            effect: (!effect.is_empty()).then(|| effect.to_string()),
            toleration_seconds: seconds,
            value: None,
        }
    }

    #[test]
    fn eviction_delay_follows_tolerations() {
        let unreachable = taint(UNREACHABLE_TAINT, "NoExecute");
        let default = Duration::from_secs(300);
        assert_eq!(
            eviction_delay(&pod_with(vec![]), &unreachable, default),
            Some(default)
        );
        let short = toleration(UNREACHABLE_TAINT, "Exists", "NoExecute", Some(5));
        assert_eq!(
            eviction_delay(&pod_with(vec![short.clone()]), &unreachable, default),
            Some(Duration::from_secs(5))
        );
        let long = toleration(UNREACHABLE_TAINT, "Exists", "", Some(3600));
        assert_eq!(
            eviction_delay(&pod_with(vec![long.clone(), short]), &unreachable, default),
            Some(Duration::from_secs(5)),
            "the smallest tolerationSeconds wins"
        );
        assert_eq!(
            eviction_delay(&pod_with(vec![long]), &unreachable, default),
            Some(Duration::from_secs(3600))
        );
        let forever = toleration("", "Exists", "", None);
        assert_eq!(
            eviction_delay(&pod_with(vec![forever]), &unreachable, default),
            None
        );
        let negative = toleration(UNREACHABLE_TAINT, "Exists", "NoExecute", Some(-3));
        assert_eq!(
            eviction_delay(&pod_with(vec![negative]), &unreachable, default),
            Some(Duration::ZERO)
        );
        // Tolerations of other taints or effects do not count.
        let other = toleration(
            "node.kubernetes.io/not-ready",
            "Exists",
            "NoExecute",
            Some(1),
        );
        let wrong_effect = toleration(UNREACHABLE_TAINT, "Exists", "NoSchedule", Some(1));
        assert_eq!(
            eviction_delay(&pod_with(vec![other, wrong_effect]), &unreachable, default),
            Some(default)
        );
    }

    #[test]
    fn pods_are_marked_not_ready_once() {
        let mut pod = pod_with(vec![]);
        pod.status = Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        });
        let conditions = not_ready_conditions(&pod, now()).unwrap_or_default();
        assert_eq!(conditions[0].status, "False");
        if let Some(status) = &mut pod.status {
            status.conditions = Some(conditions);
        }
        assert_eq!(not_ready_conditions(&pod, now()), None);
    }

    #[test]
    fn cidr_allocator_hands_out_distinct_blocks_and_reuses_freed_ones(
    ) -> Result<(), ControllerError> {
        let mut allocator = CidrAllocator::new("10.244.0.0/16", 24)?;
        assert_eq!(allocator.occupy("old", "10.244.1.0/24"), Ok(()));
        assert_eq!(allocator.allocate("a")?, "10.244.0.0/24");
        assert_eq!(allocator.allocate("b")?, "10.244.2.0/24");
        assert_eq!(
            allocator.allocate("a")?,
            "10.244.0.0/24",
            "same node, same block"
        );
        allocator.release("a");
        assert_eq!(allocator.allocate("c")?, "10.244.0.0/24");
        assert!(allocator.occupy("d", "10.244.2.0/24").is_err(), "held by b");
        assert!(
            allocator.occupy("d", "10.245.0.0/24").is_err(),
            "outside the range"
        );
        assert!(
            allocator.occupy("d", "10.244.3.0/25").is_err(),
            "wrong size"
        );
        Ok(())
    }

    #[test]
    fn cidr_allocator_reports_exhaustion_and_bad_flags() -> Result<(), ControllerError> {
        let mut allocator = CidrAllocator::new("192.168.0.0/30", 31)?;
        assert_eq!(allocator.allocate("a")?, "192.168.0.0/31");
        assert_eq!(allocator.allocate("b")?, "192.168.0.2/31");
        let error = allocator.allocate("c");
        assert!(matches!(error, Err(ControllerError::CidrExhausted { .. })));
        if let Err(error) = error {
            assert!(error.to_string().contains("192.168.0.0/30"), "{error}");
        }
        for (cidr, mask) in [
            ("10.244.0.0", 24),
            ("10.244.0.0/33", 24),
            ("fd00::/64", 80),
            ("10.244.0.0/16", 8),
            ("10.244.0.0/16", 33),
            ("10.0.0.0/4", 32),
        ] {
            assert!(
                matches!(
                    CidrAllocator::new(cidr, mask),
                    Err(ControllerError::InvalidFlag { .. })
                ),
                "{cidr} /{mask}"
            );
        }
        // Host bits in the cluster CIDR are ignored, as Kubernetes' net.ParseCIDR does.
        let mut loose = CidrAllocator::new("10.244.7.9/16", 24)?;
        assert_eq!(loose.allocate("a")?, "10.244.0.0/24");
        Ok(())
    }
}
