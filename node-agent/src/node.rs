//! The Node object and the heartbeat: registration (create, or update keeping what the server
//! owns such as `spec.unschedulable`), capacity and allocatable, system info, the Ready
//! condition refreshed every 40 s and written at once when it changes, and the node Lease
//! renewed every 10 s.
//!
//! Ready means what it means to a kubelet: the node can run pods. Until its pod network is up
//! (the controllers have given it a podCIDR, the bridge has its address and the routes to the
//! other nodes' pods are in place) the node is `Ready=False` with reason `KubeletNotReady`, so
//! nothing is scheduled to it and `local-cluster up`, which waits for Ready, returns a cluster
//! whose pods can reach each other.
//!
//! Allocatable equals capacity: the agent reserves nothing for itself or the system, since it
//! runs on machines it shares with nothing else the cluster schedules (kubelet's default
//! reservations are zero too).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use api::client::{Api, Client, ClientError, Patch, PatchParams, PostParams};
use api::coordination::{Lease, LeaseSpec};
use api::core::{Namespace, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus, NodeSystemInfo, DaemonEndpoint};
use api::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use api::meta::{MicroTime, ObjectMeta, Time};
use jiff::Timestamp;
use tokio::sync::watch;

use crate::network::NodeNetwork;

/// The kubelet version the node reports.
pub const KUBELET_VERSION: &str = "v1.33.0-flotilla";
/// The namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How long a Lease stays valid without renewal.
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// How often the Lease is renewed.
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
/// How often the Ready condition's heartbeat is refreshed when nothing changed.
pub const STATUS_REFRESH: Duration = Duration::from_secs(40);

/// What the Node says about this machine.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub name: String,
    pub ip: String,
    /// The port of the agent's HTTPS server.
    pub port: u16,
    pub labels: BTreeMap<String, String>,
    pub max_pods: u32,
    /// Overrides of the detected capacity.
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot register node {name}: {source}")]
    Register { name: String, source: ClientError },
    #[error("cannot update the status of node {name}: {source}")]
    Status { name: String, source: ClientError },
    #[error("cannot renew the lease {LEASE_NAMESPACE}/{name}: {source}")]
    Lease { name: String, source: ClientError },
}

/// Detected capacity: CPU in millicores, memory in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub pods: u32,
}

/// The machine's capacity, with the configured overrides applied.
pub fn detect_capacity(config: &NodeConfig) -> Capacity {
    let cpus = std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1);
    let memory = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| parse_meminfo_total(&t)).unwrap_or(0);
    Capacity {
        cpu_millis: config.cpu_millis.unwrap_or(cpus * 1000),
        memory_bytes: config.memory_bytes.unwrap_or(memory),
        pods: config.max_pods,
    }
}

/// `MemTotal` of /proc/meminfo, in bytes.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut fields = line.split_whitespace().skip(1);
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") | None => Some(value * 1024),
        Some(_) => None,
    }
}

/// `PRETTY_NAME` of an os-release file.
pub fn parse_os_release(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
}

/// The Node's resource list: `cpu` in millicores (or whole cores), `memory` in Ki, `pods`.
pub fn resources(capacity: &Capacity) -> BTreeMap<String, Quantity> {
    let cpu = if capacity.cpu_millis.is_multiple_of(1000) {
        (capacity.cpu_millis / 1000).to_string()
    } else {
        format!("{}m", capacity.cpu_millis)
    };
    BTreeMap::from([
        ("cpu".to_string(), Quantity(cpu)),
        ("memory".to_string(), Quantity(format!("{}Ki", capacity.memory_bytes / 1024))),
        ("pods".to_string(), Quantity(capacity.pods.to_string())),
    ])
}

/// The labels the Node carries: the well-known ones, then `--labels` (which may override).
pub fn node_labels(config: &NodeConfig) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), config.name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), "amd64".to_string()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), "amd64".to_string()),
    ]);
    labels.extend(config.labels.clone());
    labels
}

/// The Ready condition's state: whether the node can run pods, and since when that holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub since: Timestamp,
}

impl Readiness {
    /// Moves to `ready` at `now`, keeping the transition time when nothing changed.
    pub fn set(&mut self, ready: bool, now: Timestamp) -> bool {
        let changed = self.ready != ready;
        if changed {
            *self = Readiness { ready, since: now };
        }
        changed
    }
}

fn ready_condition(readiness: Readiness, now: Timestamp) -> NodeCondition {
    let (status, reason, message) = if readiness.ready {
        ("True", "KubeletReady", "flotilla node agent is posting ready status")
    } else {
        (
            "False",
            "KubeletNotReady",
            "the pod network is not up yet: waiting for the node's spec.podCIDR (the controllers allocate it), \
             then the bridge and the routes to other nodes' pods",
        )
    };
    NodeCondition {
        type_: "Ready".into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(Time(seconds(now))),
        last_transition_time: Some(Time(seconds(readiness.since))),
    }
}

/// The status the agent reports.
pub fn node_status(config: &NodeConfig, capacity: &Capacity, now: Timestamp, readiness: Readiness) -> NodeStatus {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let os_image = std::fs::read_to_string("/etc/os-release").ok().and_then(|t| parse_os_release(&t)).unwrap_or_else(|| "Linux".to_string());
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim().to_string();
    let machine_id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default().trim().to_string();
    let resources = resources(capacity);
    NodeStatus {
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".into(), address: config.ip.clone() },
            NodeAddress { type_: "Hostname".into(), address: config.name.clone() },
        ]),
        allocatable: Some(resources.clone()),
        capacity: Some(resources),
        conditions: Some(vec![ready_condition(readiness, now)]),
        daemon_endpoints: Some(NodeDaemonEndpoints { kubelet_endpoint: Some(DaemonEndpoint { port: i32::from(config.port) }) }),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".into(),
            boot_id,
            container_runtime_version: "flotilla://0.1.0".into(),
            kernel_version: kernel,
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: machine_id.clone(),
            operating_system: "linux".into(),
            os_image,
            system_uuid: machine_id,
            ..Default::default()
        }),
        phase: None,
        ..Default::default()
    }
}

/// A timestamp truncated to whole seconds, as Kubernetes' `Time` carries it.
pub fn seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// Creates the Node, or updates the labels and status of an existing one (leaving its spec, such
/// as `unschedulable` set by `ctl cordon`, as the server has it), with the Ready condition of
/// `readiness`.
pub async fn register(client: &Client, config: &NodeConfig, capacity: &Capacity, readiness: Readiness) -> Result<(), NodeError> {
    let api: Api<Node> = Api::all(client.clone());
    let err = |source| NodeError::Register { name: config.name.clone(), source };
    let status = node_status(config, capacity, Timestamp::now(), readiness);
    let node = Node {
        metadata: ObjectMeta { name: Some(config.name.clone()), labels: Some(node_labels(config)), ..Default::default() },
        spec: None,
        status: Some(status.clone()),
    };
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => tracing::info!(node = %config.name, "registered the node"),
        Err(e) if e.is_already_exists() => {
            let patch = serde_json::json!({"metadata": {"labels": node_labels(config)}});
            api.patch(&config.name, &PatchParams::default(), &Patch::Merge(patch)).await.map_err(err)?;
            tracing::info!(node = %config.name, "the node was registered before: updated it");
        }
        Err(e) => return Err(err(e)),
    }
    // The create may have dropped the status (status is a subresource): write it there.
    write_status(client, &config.name, &status).await
}

/// Writes the node's status with a merge patch (lists such as conditions are replaced whole).
pub async fn write_status(client: &Client, name: &str, status: &NodeStatus) -> Result<(), NodeError> {
    let api: Api<Node> = Api::all(client.clone());
    let patch = serde_json::json!({ "status": status });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(|_| ())
        .map_err(|source| NodeError::Status { name: name.to_string(), source })
}

/// Renews (creating when missing) the node's Lease in `kube-node-lease`.
pub async fn renew_lease(client: &Client, name: &str) -> Result<(), NodeError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let err = |source| NodeError::Lease { name: name.to_string(), source };
    let now = MicroTime(Timestamp::now());
    let spec = LeaseSpec {
        holder_identity: Some(name.to_string()),
        lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
        renew_time: Some(now),
        ..Default::default()
    };
    match api.get_opt(name).await.map_err(err)? {
        Some(mut lease) => {
            let mut merged = lease.spec.take().unwrap_or_default();
            merged.holder_identity = spec.holder_identity;
            merged.lease_duration_seconds = spec.lease_duration_seconds;
            merged.renew_time = spec.renew_time;
            lease.spec = Some(merged);
            api.replace(name, &PostParams::default(), &lease).await.map_err(err)?;
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(name.to_string()), namespace: Some(LEASE_NAMESPACE.to_string()), ..Default::default() },
                spec: Some(LeaseSpec { acquire_time: spec.renew_time.clone(), ..spec }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {
                    // The namespace itself is missing on a fresh cluster: make it, then retry.
                    let namespaces: Api<Namespace> = Api::all(client.clone());
                    let ns = Namespace { metadata: ObjectMeta { name: Some(LEASE_NAMESPACE.into()), ..Default::default() }, ..Default::default() };
                    match namespaces.create(&PostParams::default(), &ns).await {
                        Ok(_) => {}
                        Err(e) if e.is_already_exists() => {}
                        Err(e) => return Err(err(e)),
                    }
                    api.create(&PostParams::default(), &lease).await.map_err(err)?;
                }
                Err(e) => return Err(err(e)),
            }
        }
    }
    Ok(())
}

/// Renews the Lease every 10 s, refreshes the status every 40 s and writes it at once when the
/// pod network comes up (`network` gets its value), forever; failures are logged and retried at
/// the next tick. `readiness` is what [`register`] wrote.
pub async fn heartbeat(
    client: Client,
    config: NodeConfig,
    capacity: Capacity,
    mut readiness: Readiness,
    mut network: watch::Receiver<Option<Arc<NodeNetwork>>>,
) {
    let mut lease_tick = tokio::time::interval(LEASE_RENEW);
    lease_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut status_tick = tokio::time::interval(STATUS_REFRESH);
    status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    network.mark_changed();
    let mut watching = true;
    loop {
        tokio::select! {
            _ = lease_tick.tick() => {
                if let Err(e) = renew_lease(&client, &config.name).await {
                    tracing::warn!(error = %e, "lease renewal failed; retrying in 10 s");
                }
                continue;
            }
            _ = status_tick.tick() => {}
            changed = network.changed(), if watching => {
                if changed.is_err() {
                    watching = false;
                    continue;
                }
                let up = network.borrow_and_update().is_some();
                if !readiness.set(up, Timestamp::now()) {
                    continue;
                }
                tracing::info!(ready = up, "the node's Ready condition changed");
            }
        }
        let status = node_status(&config, &capacity, Timestamp::now(), readiness);
        if let Err(e) = write_status(&client, &config.name, &status).await {
            tracing::warn!(error = %e, "node status update failed; retrying in 40 s");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NodeConfig {
        NodeConfig {
            name: "n1".into(),
            ip: "10.0.0.5".into(),
            port: 10250,
            labels: BTreeMap::from([("zone".to_string(), "a".to_string())]),
            max_pods: 110,
            cpu_millis: Some(2500),
            memory_bytes: Some(2 * 1024 * 1024 * 1024),
        }
    }

    #[test]
    fn meminfo_total_is_read_in_bytes() {
        assert_eq!(parse_meminfo_total("MemTotal:       16318412 kB\nMemFree: 1 kB\n"), Some(16318412 * 1024));
        assert_eq!(parse_meminfo_total("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn os_release_pretty_name() {
        assert_eq!(parse_os_release("NAME=Debian\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n").as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
    }

    #[test]
    fn overrides_and_quantities() {
        let c = detect_capacity(&config());
        assert_eq!(c, Capacity { cpu_millis: 2500, memory_bytes: 2 << 30, pods: 110 });
        let r = resources(&c);
        assert_eq!(r["cpu"].0, "2500m");
        assert_eq!(r["memory"].0, "2097152Ki");
        assert_eq!(r["pods"].0, "110");
    }

    #[test]
    fn status_has_addresses_endpoint_and_ready() {
        let now = Timestamp::from_second(1_700_000_000).expect("ts");
        let s = node_status(&config(), &detect_capacity(&config()), now, Readiness { ready: true, since: now });
        let addresses = s.addresses.expect("addresses");
        assert_eq!(addresses[0].type_, "InternalIP");
        assert_eq!(addresses[0].address, "10.0.0.5");
        assert_eq!(addresses[1].type_, "Hostname");
        assert_eq!(s.daemon_endpoints.and_then(|d| d.kubelet_endpoint).map(|e| e.port), Some(10250));
        let ready = &s.conditions.expect("conditions")[0];
        assert_eq!((ready.type_.as_str(), ready.status.as_str()), ("Ready", "True"));
        assert_eq!(s.node_info.expect("info").kubelet_version, KUBELET_VERSION);
        let labels = node_labels(&config());
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
        assert_eq!(labels["zone"], "a");
    }

    #[test]
    fn not_ready_until_the_network_is_up_and_the_transition_time_moves_only_on_change() {
        let t0 = Timestamp::from_second(1_700_000_000).expect("ts");
        let t1 = Timestamp::from_second(1_700_000_060).expect("ts");
        let mut readiness = Readiness { ready: false, since: t0 };
        let s = node_status(&config(), &detect_capacity(&config()), t0, readiness);
        let ready = &s.conditions.expect("conditions")[0];
        assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("False", Some("KubeletNotReady")));
        assert!(ready.message.as_deref().is_some_and(|m| m.contains("podCIDR")), "{ready:?}");
        assert!(!readiness.set(false, t1), "no change, no transition");
        assert_eq!(readiness.since, t0);
        assert!(readiness.set(true, t1));
        let s = node_status(&config(), &detect_capacity(&config()), t1, readiness);
        let ready = &s.conditions.expect("conditions")[0];
        assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("True", Some("KubeletReady")));
        assert_eq!(ready.last_transition_time.as_ref().map(|t| t.0), Some(t1));
    }
}
