//! The scheduler's view of the cluster: every node with what is already placed on it (pods bound
//! by the apiserver, and pods "assumed" there by this scheduler while their binding is in flight),
//! reduced to the few numbers and sets the filters and scores read.
//!
//! Pods and nodes are digested once, when their watch event arrives ([`PodInfo::from_pod`],
//! [`NodeInfo::from_node`]), so a scheduling decision over thousands of nodes touches only
//! integers and short vectors.

use std::collections::{BTreeMap, HashMap};

use api::core::{Container, Node, NodeSelector, Pod, Taint, Toleration};
use api::scheme::{parse_quantity_bytes, parse_quantity_milli};

/// `namespace/name` of a pod.
pub type PodKey = String;

/// The taint Kubernetes' node lifecycle controller puts on a node whose Ready condition is False.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint for a node whose Ready condition is Unknown (its agent stopped reporting).
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The taint that stands for `spec.unschedulable`.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Amounts of the resources the scheduler counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub pods: i64,
}

/// One port a pod binds on its node's address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// TCP, UDP or SCTP.
    pub protocol: String,
    /// The node address to bind; `0.0.0.0` means all of them.
    pub host_ip: String,
    pub port: i32,
}

/// What the scheduler needs to know about a pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PodInfo {
    pub key: PodKey,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// Requests, with `pods: 1`.
    pub requests: Resources,
    pub host_ports: Vec<HostPort>,
    pub tolerations: Vec<Toleration>,
    pub node_selector: BTreeMap<String, String>,
    /// `spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution`.
    pub required_affinity: Option<NodeSelector>,
    /// The uid of the controller owner (ReplicaSet, ...), whose pods are spread across nodes.
    pub owner: Option<String>,
}

/// A node and what is placed on it.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    /// False while only pods bound to a node that is not (or no longer) known are recorded here:
    /// such an entry is never a candidate.
    pub exists: bool,
    pub labels: BTreeMap<String, String>,
    pub unschedulable: bool,
    /// The node's taints, plus the not-ready or unreachable taint its Ready condition implies
    /// (what Kubernetes' node lifecycle controller would add), so tolerations decide both.
    pub taints: Vec<Taint>,
    pub allocatable: Resources,
    /// Sum of the requests of the pods placed here.
    pub requested: Resources,
    /// Host ports in use, with how many pods use each.
    pub used_ports: HashMap<HostPort, u32>,
    /// Pods placed here per controller owner uid.
    pub owners: HashMap<String, u32>,
}

/// Nodes and the pods placed on them, bound or assumed.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    pods: HashMap<PodKey, Placed>,
}

#[derive(Debug)]
struct Placed {
    info: PodInfo,
    node: String,
    assumed: bool,
}

impl PodInfo {
    pub fn from_pod(pod: &Pod) -> PodInfo {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let mut requests = Resources {
            pods: 1,
            ..Resources::default()
        };
        let mut host_ports = Vec::new();
        for container in &spec.containers {
            let (cpu, memory) = container_requests(container);
            requests.milli_cpu = requests.milli_cpu.saturating_add(cpu);
            requests.memory = requests.memory.saturating_add(memory);
            host_ports.extend(host_ports_of(container));
        }
        // Init containers run one at a time before the others, each beside the sidecars
        // (restartPolicy Always) started before it; sidecars then keep running beside the pod's
        // containers. The pod needs the larger of the two peaks (Kubernetes' PodRequests).
        let (mut sidecar_cpu, mut sidecar_memory) = (0i64, 0i64);
        let (mut init_cpu, mut init_memory) = (0i64, 0i64);
        for container in spec.init_containers.iter().flatten() {
            let (cpu, memory) = container_requests(container);
            let sidecar = api::pods::is_sidecar(container);
            if sidecar {
                sidecar_cpu = sidecar_cpu.saturating_add(cpu);
                sidecar_memory = sidecar_memory.saturating_add(memory);
                host_ports.extend(host_ports_of(container));
            }
            let (peak_cpu, peak_memory) = if sidecar {
                (sidecar_cpu, sidecar_memory)
            } else {
                (cpu.saturating_add(sidecar_cpu), memory.saturating_add(sidecar_memory))
            };
            init_cpu = init_cpu.max(peak_cpu);
            init_memory = init_memory.max(peak_memory);
        }
        requests.milli_cpu = requests.milli_cpu.saturating_add(sidecar_cpu).max(init_cpu);
        requests.memory = requests.memory.saturating_add(sidecar_memory).max(init_memory);
        if let Some(overhead) = &spec.overhead {
            if let Some(q) = overhead.get("cpu") {
                requests.milli_cpu += parse_quantity_milli(&q.0).unwrap_or(0).max(0);
            }
            if let Some(q) = overhead.get("memory") {
                requests.memory += parse_quantity_bytes(&q.0).unwrap_or(0).max(0);
            }
        }
        let required_affinity = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .clone()
            });
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone());
        PodInfo {
            key: format!("{namespace}/{name}"),
            namespace,
            name,
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            requests,
            host_ports,
            tolerations: spec.tolerations.unwrap_or_default(),
            node_selector: spec.node_selector.unwrap_or_default(),
            required_affinity,
            owner,
        }
    }
}

impl NodeInfo {
    pub fn from_node(node: &Node) -> NodeInfo {
        let mut info = NodeInfo::placeholder(node.metadata.name.as_deref().unwrap_or_default());
        info.set_node(node);
        info
    }

    fn placeholder(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.to_string(),
            exists: false,
            labels: BTreeMap::new(),
            unschedulable: false,
            taints: Vec::new(),
            allocatable: Resources::default(),
            requested: Resources::default(),
            used_ports: HashMap::new(),
            owners: HashMap::new(),
        }
    }

    /// Takes the node's own fields, keeping what is placed on it.
    fn set_node(&mut self, node: &Node) {
        let spec = node.spec.clone().unwrap_or_default();
        let status = node.status.as_ref();
        let allocatable = status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()));
        let quantity = |name: &str, parse: fn(&str) -> Result<i64, String>| {
            allocatable
                .and_then(|a| a.get(name))
                .and_then(|q| parse(&q.0).ok())
                .unwrap_or(0)
                .max(0)
        };
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.as_str());
        let mut taints = spec.taints.unwrap_or_default();
        let implied = match ready {
            Some("True") => None,
            Some("False") => Some(TAINT_NOT_READY),
            // No Ready condition yet, or Unknown: the agent has not (or no longer) reported.
            Some(_) => Some(TAINT_UNREACHABLE),
            None => Some(TAINT_NOT_READY),
        };
        if let Some(key) = implied {
            if !taints
                .iter()
                .any(|t| t.key == key && t.effect == "NoSchedule")
            {
                taints.push(Taint {
                    key: key.to_string(),
                    effect: "NoSchedule".to_string(),
                    value: None,
                    time_added: None,
                });
            }
        }
        self.exists = true;
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        self.unschedulable = spec.unschedulable.unwrap_or(false);
        self.taints = taints;
        self.allocatable = Resources {
            milli_cpu: quantity("cpu", parse_quantity_milli),
            memory: quantity("memory", parse_quantity_bytes),
            pods: quantity("pods", parse_quantity_bytes),
        };
    }

    fn add_pod(&mut self, pod: &PodInfo) {
        self.requested.milli_cpu += pod.requests.milli_cpu;
        self.requested.memory += pod.requests.memory;
        self.requested.pods += pod.requests.pods;
        for port in &pod.host_ports {
            *self.used_ports.entry(port.clone()).or_insert(0) += 1;
        }
        if let Some(owner) = &pod.owner {
            *self.owners.entry(owner.clone()).or_insert(0) += 1;
        }
    }

    fn remove_pod(&mut self, pod: &PodInfo) {
        self.requested.milli_cpu -= pod.requests.milli_cpu;
        self.requested.memory -= pod.requests.memory;
        self.requested.pods -= pod.requests.pods;
        for port in &pod.host_ports {
            if let Some(count) = self.used_ports.get_mut(port) {
                *count -= 1;
                if *count == 0 {
                    self.used_ports.remove(port);
                }
            }
        }
        if let Some(owner) = &pod.owner {
            if let Some(count) = self.owners.get_mut(owner) {
                *count -= 1;
                if *count == 0 {
                    self.owners.remove(owner);
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.requested.pods == 0
    }
}

impl Cache {
    pub fn new() -> Cache {
        Cache::default()
    }

    /// All entries, including placeholders for unknown nodes that have pods (`exists: false`).
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }

    /// Adds or updates a node.
    pub fn set_node(&mut self, node: &Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let index = self.entry(&name);
        self.nodes[index].set_node(node);
    }

    /// Forgets a node; pods still bound to it are kept (they count again if it comes back).
    pub fn remove_node(&mut self, name: &str) {
        let Some(&index) = self.index.get(name) else {
            return;
        };
        if self.nodes[index].is_empty() {
            self.nodes.swap_remove(index);
            self.index.remove(name);
            if let Some(moved) = self.nodes.get(index) {
                self.index.insert(moved.name.clone(), index);
            }
        } else {
            let placeholder = NodeInfo::placeholder(name);
            let entry = &mut self.nodes[index];
            entry.exists = placeholder.exists;
            entry.labels = placeholder.labels;
            entry.taints = placeholder.taints;
            entry.allocatable = placeholder.allocatable;
        }
    }

    /// Makes the nodes exactly `nodes` (after a re-list).
    pub fn reset_nodes(&mut self, nodes: &[Node]) {
        let listed: std::collections::HashSet<&str> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.as_deref())
            .collect();
        let gone: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.exists && !listed.contains(n.name.as_str()))
            .map(|n| n.name.clone())
            .collect();
        for name in gone {
            self.remove_node(&name);
        }
        for node in nodes {
            self.set_node(node);
        }
    }

    /// Records a pod as the apiserver has it. A pod bound to a node and not terminated counts
    /// there; any other pod does not count anywhere, except an assumed pod whose binding the
    /// watch has not shown yet. Returns true when capacity was freed somewhere (a pod left a
    /// node), which may make waiting pods schedulable.
    pub fn update_pod(&mut self, pod: &Pod) -> bool {
        let info = PodInfo::from_pod(pod);
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        match node {
            Some(node) if !is_terminated(pod) => {
                let freed = self
                    .unplace(&info.key, false)
                    .is_some_and(|old| old != node);
                self.place(info, node, false);
                freed
            }
            Some(_) => self.unplace(&info.key, false).is_some(),
            // Not bound (yet): an assumed pod stays where this scheduler put it.
            None => self.unplace(&info.key, true).is_some(),
        }
    }

    /// Forgets a deleted pod. Returns true when it was placed on a node.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        self.unplace(key, false).is_some()
    }

    /// Makes the pods exactly `pods` (after a re-list). An assumed pod missing from the list is
    /// dropped too: the list is newer than the watch event that queued it, so it was deleted.
    pub fn reset_pods(&mut self, pods: &[Pod]) {
        let listed: std::collections::HashSet<String> = pods.iter().map(key_of).collect();
        let gone: Vec<PodKey> = self
            .pods
            .iter()
            .filter(|(key, _)| !listed.contains(*key))
            .map(|(key, _)| key.clone())
            .collect();
        for key in gone {
            self.unplace(&key, false);
        }
        for pod in pods {
            self.update_pod(pod);
        }
    }

    /// Places `pod` on `node` before its binding is confirmed, so the next decisions see it.
    pub fn assume(&mut self, pod: PodInfo, node: &str) {
        self.unplace(&pod.key, false);
        self.place(pod, node.to_string(), true);
    }

    /// Undoes [`Cache::assume`] after a failed binding. A pod the watch has meanwhile shown
    /// bound is left alone.
    pub fn forget(&mut self, key: &str) {
        if self.pods.get(key).is_some_and(|p| p.assumed) {
            self.unplace(key, false);
        }
    }

    pub fn is_assumed(&self, key: &str) -> bool {
        self.pods.get(key).is_some_and(|p| p.assumed)
    }

    /// The node a pod is placed on (bound or assumed).
    pub fn node_of(&self, key: &str) -> Option<&str> {
        self.pods.get(key).map(|p| p.node.as_str())
    }

    fn entry(&mut self, name: &str) -> usize {
        if let Some(index) = self.index.get(name) {
            return *index;
        }
        self.nodes.push(NodeInfo::placeholder(name));
        let index = self.nodes.len() - 1;
        self.index.insert(name.to_string(), index);
        index
    }

    fn place(&mut self, info: PodInfo, node: String, assumed: bool) {
        let index = self.entry(&node);
        self.nodes[index].add_pod(&info);
        self.pods.insert(
            info.key.clone(),
            Placed {
                info,
                node,
                assumed,
            },
        );
    }

    /// Removes a pod from its node and returns that node's name; with `keep_assumed`, an assumed
    /// pod stays.
    fn unplace(&mut self, key: &str, keep_assumed: bool) -> Option<String> {
        if keep_assumed && self.is_assumed(key) {
            return None;
        }
        let placed = self.pods.remove(key)?;
        if let Some(&index) = self.index.get(&placed.node) {
            self.nodes[index].remove_pod(&placed.info);
            if !self.nodes[index].exists && self.nodes[index].is_empty() {
                self.remove_node(&placed.node);
            }
        }
        Some(placed.node)
    }
}

/// `namespace/name`.
pub fn key_of(pod: &Pod) -> PodKey {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// A pod whose containers have all stopped for good no longer holds resources.
pub fn is_terminated(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The hostPorts a container asks for.
fn host_ports_of(container: &Container) -> impl Iterator<Item = HostPort> + '_ {
    container.ports.iter().flatten().filter_map(|port| {
        let host_port = port.host_port.filter(|p| *p > 0)?;
        Some(HostPort {
            protocol: port.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
            host_ip: port.host_ip.clone().filter(|ip| !ip.is_empty()).unwrap_or_else(|| "0.0.0.0".to_string()),
            port: host_port,
        })
    })
}

/// A container's cpu (millicores) and memory (bytes) requests; a limit without a request counts
/// as the request, as Kubernetes' defaulting makes it.
fn container_requests(container: &Container) -> (i64, i64) {
    let resources = container.resources.as_ref();
    let get = |name: &str| {
        resources
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(name))
            .or_else(|| {
                resources
                    .and_then(|r| r.limits.as_ref())
                    .and_then(|l| l.get(name))
            })
    };
    let cpu = get("cpu")
        .and_then(|q| parse_quantity_milli(&q.0).ok())
        .unwrap_or(0)
        .max(0);
    let memory = get("memory")
        .and_then(|q| parse_quantity_bytes(&q.0).ok())
        .unwrap_or(0)
        .max(0);
    (cpu, memory)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testutil::{node, pod, pod_from, with};

    fn bound(name: &str, node: &str) -> Pod {
        pod_from(with(
            &pod(name, "500m", "1Gi"),
            json!({"spec": {"nodeName": node}}),
        ))
    }

    #[test]
    fn requests_sum_containers_take_the_largest_init_container_and_fall_back_to_limits() {
        let p = pod_from(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "containers": [
                    {"name": "a", "image": "i", "resources": {"requests": {"cpu": "100m", "memory": "1Mi"}}},
                    {"name": "b", "image": "i", "resources": {"limits": {"cpu": "200m"}}},
                ],
                "initContainers": [{"name": "init", "image": "i", "resources": {"requests": {"cpu": "1", "memory": "1Ki"}}}],
            },
        }));
        let info = PodInfo::from_pod(&p);
        assert_eq!(info.key, "ns/p");
        assert_eq!(
            info.requests,
            Resources {
                milli_cpu: 1000,
                memory: 1 << 20,
                pods: 1
            }
        );
    }

    #[test]
    fn sidecars_add_to_the_running_pod_and_to_every_later_init_container() {
        let c = |name: &str, cpu: &str, sidecar: bool| {
            let mut c = json!({"name": name, "image": "i", "resources": {"requests": {"cpu": cpu, "memory": "1Mi"}}});
            if sidecar {
                c["restartPolicy"] = json!("Always");
                c["ports"] = json!([{"containerPort": 9000, "hostPort": 9000}]);
            }
            c
        };
        let requests = |inits: Vec<serde_json::Value>| {
            let p = pod_from(json!({
                "metadata": {"name": "p", "namespace": "ns"},
                "spec": {"containers": [c("app", "100m", false)], "initContainers": inits},
            }));
            let info = PodInfo::from_pod(&p);
            (info.requests.milli_cpu, info.requests.memory >> 20, info.host_ports.len())
        };
        // running: app 100m + sidecar 200m; the init after the sidecar peaks at 200m + 500m
        assert_eq!(requests(vec![c("side", "200m", true), c("init", "500m", false)]), (700, 2, 1));
        // an init before the sidecar runs alone: the running pod is the larger
        assert_eq!(requests(vec![c("init", "250m", false), c("side", "200m", true)]), (300, 2, 1));
        // no sidecar: the largest init container against the containers, as before
        assert_eq!(requests(vec![c("init", "50m", false)]), (100, 1, 0));
    }

    #[test]
    fn assume_then_forget_on_a_failed_binding() {
        let mut cache = Cache::new();
        cache.set_node(&node("n1", "4", "8Gi", "110"));
        let p = pod("p", "1", "2Gi");
        cache.assume(PodInfo::from_pod(&p), "n1");
        assert!(cache.is_assumed("default/p"));
        assert_eq!(cache.node("n1").map(|n| n.requested.milli_cpu), Some(1000));
        // The pod's own (still unbound) update does not undo the assumption.
        assert!(!cache.update_pod(&p));
        assert!(cache.is_assumed("default/p"));
        cache.forget("default/p");
        assert!(!cache.is_assumed("default/p"));
        assert_eq!(
            cache.node("n1").map(|n| n.requested),
            Some(Resources::default())
        );
    }

    #[test]
    fn the_watch_confirms_an_assumed_pod_and_forget_then_keeps_it() {
        let mut cache = Cache::new();
        cache.set_node(&node("n1", "4", "8Gi", "110"));
        cache.assume(PodInfo::from_pod(&pod("p", "500m", "1Gi")), "n1");
        assert!(!cache.update_pod(&bound("p", "n1")));
        assert!(!cache.is_assumed("default/p"));
        cache.forget("default/p");
        assert_eq!(cache.node_of("default/p"), Some("n1"));
        assert_eq!(cache.node("n1").map(|n| n.requested.pods), Some(1));
        // Deleting it frees the node.
        assert!(cache.remove_pod("default/p"));
        assert_eq!(cache.node("n1").map(|n| n.requested.pods), Some(0));
    }

    #[test]
    fn pods_of_unknown_nodes_wait_for_their_node() {
        let mut cache = Cache::new();
        cache.update_pod(&bound("p", "later"));
        assert_eq!(cache.nodes().len(), 1);
        assert!(!cache.nodes()[0].exists);
        cache.set_node(&node("later", "4", "8Gi", "110"));
        assert!(cache.nodes()[0].exists);
        assert_eq!(cache.nodes()[0].requested.milli_cpu, 500);
        cache.remove_node("later");
        assert!(!cache.nodes()[0].exists);
        cache.remove_pod("default/p");
        assert!(cache.nodes().is_empty());
    }

    #[test]
    fn a_relist_drops_vanished_pods_and_nodes() {
        let mut cache = Cache::new();
        cache.reset_nodes(&[node("n1", "4", "8Gi", "110"), node("n2", "4", "8Gi", "110")]);
        cache.reset_pods(&[bound("a", "n1"), bound("b", "n2")]);
        cache.assume(PodInfo::from_pod(&pod("c", "1m", "1")), "n2");
        cache.assume(PodInfo::from_pod(&pod("gone", "1m", "1")), "n2");
        cache.reset_nodes(&[node("n2", "4", "8Gi", "110")]);
        // c is listed, still unbound: it stays assumed; "gone" was deleted meanwhile.
        cache.reset_pods(&[bound("b", "n2"), pod("c", "1m", "1")]);
        assert_eq!(cache.node("n1"), None);
        assert_eq!(cache.node("n2").map(|n| n.requested.pods), Some(2));
        assert!(cache.is_assumed("default/c"));
        assert_eq!(cache.node_of("default/gone"), None);
    }
}
