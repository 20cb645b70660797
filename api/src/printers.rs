//! kubectl's table columns for each kind: the column definitions and the cells of one row, the
//! way Kubernetes' own printers (`pkg/printers/internalversion`) compute them, so that `ctl get`
//! and the apiserver's `as=Table` answers read exactly like kubectl against Kubernetes.
//!
//! Pure functions over `serde_json::Value`: both callers hold objects as JSON, and reading a
//! few fields leniently (a missing field reads as empty or zero) never fails on an object that
//! a typed decode would reject.
//!
//! Column names are spelled as Kubernetes' Table answers spell them ("Name", "Up-to-date",
//! "Nominated Node"); kubectl, and `ctl get`, print them upper-cased.

use serde_json::Value;

use crate::resource::ResourceInfo;
use crate::selector::LabelSelector;

/// One column of a kind's table, as `meta.k8s.io/v1` `TableColumnDefinition` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// "string", "integer" or "date", as the Table type names them
    pub kind: &'static str,
    /// 0: printed by default; 1: printed only with `-o wide`
    pub priority: i32,
    pub description: &'static str,
}

/// The columns of `info`'s kind, wide ones included, in kubectl's order. Kinds without
/// dedicated columns get Name and Age, as Kubernetes' default table does.
pub fn columns(info: &ResourceInfo) -> Vec<Column> {
    let defs: &[(&str, &str, i32, &str)] = match (info.group, info.kind) {
        ("", "Pod") => &[
            NAME,
            ("Ready", STRING, 0, "The aggregate readiness state of this pod for accepting traffic."),
            ("Status", STRING, 0, "The aggregate status of the containers in this pod."),
            ("Restarts", STRING, 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            AGE,
            ("IP", STRING, 1, "IP address allocated to the pod."),
            ("Node", STRING, 1, "The node the pod is bound to."),
            ("Nominated Node", STRING, 1, "The node the scheduler nominated for this pod while preempting others."),
            ("Readiness Gates", STRING, 1, "Readiness gates that are true, of those the pod declares."),
        ],
        ("apps", "Deployment") => &[
            NAME,
            ("Ready", STRING, 0, "Number of the pod with ready state"),
            ("Up-to-date", STRING, 0, "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
            ("Available", STRING, 0, "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
            AGE,
            CONTAINERS,
            IMAGES,
            ("Selector", STRING, 1, "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment."),
        ],
        ("apps", "ReplicaSet") => &[
            NAME,
            ("Desired", INTEGER, 0, "Replicas is the number of desired replicas."),
            ("Current", INTEGER, 0, "Replicas is the most recently observed number of replicas."),
            ("Ready", INTEGER, 0, "The number of ready replicas for this replica set."),
            AGE,
            CONTAINERS,
            IMAGES,
            ("Selector", STRING, 1, "Selector is a label query over pods that should match the replica count."),
        ],
        ("", "Service") => &[
            NAME,
            ("Type", STRING, 0, "type determines how the Service is exposed."),
            ("Cluster-IP", STRING, 0, "clusterIP is the IP address of the service."),
            ("External-IP", STRING, 0, "externalIPs or load-balancer ingress addresses of the service."),
            ("Port(s)", STRING, 0, "The list of ports that are exposed by this service."),
            AGE,
            ("Selector", STRING, 1, "Route service traffic to pods with label keys and values matching this selector."),
        ],
        ("", "Node") => &[
            NAME,
            ("Status", STRING, 0, "The status of the node"),
            ("Roles", STRING, 0, "The roles of the node"),
            AGE,
            ("Version", STRING, 0, "Kubelet Version reported by the node."),
            ("Internal-IP", STRING, 1, "List of addresses reachable to the node."),
            ("External-IP", STRING, 1, "List of addresses reachable to the node."),
            ("OS-Image", STRING, 1, "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
            ("Kernel-Version", STRING, 1, "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
            ("Container-Runtime", STRING, 1, "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
        ],
        ("", "Namespace") => &[
            NAME,
            ("Status", STRING, 0, "The status of the namespace"),
            AGE,
        ],
        ("", "ConfigMap") => &[
            NAME,
            ("Data", INTEGER, 0, "Number of data keys."),
            AGE,
        ],
        ("", "Secret") => &[
            NAME,
            ("Type", STRING, 0, "The type of the secret"),
            ("Data", INTEGER, 0, "The number of data entries in the secret"),
            AGE,
        ],
        ("", "Endpoints") => &[
            NAME,
            ("Endpoints", STRING, 0, "Endpoints of the service"),
            AGE,
        ],
        ("", "Event") => &[
            ("Last Seen", STRING, 0, "The time at which the most recent occurrence of this event was recorded."),
            ("Type", STRING, 0, "Type of this event (Normal, Warning), new types could be added in the future"),
            ("Reason", STRING, 0, "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
            ("Object", STRING, 0, "The object that this event is about."),
            ("Subobject", STRING, 1, "The field of the object the event is about, such as spec.containers{name}."),
            ("Source", STRING, 1, "The component reporting this event."),
            ("Message", STRING, 0, "A human-readable description of the status of this operation."),
            ("First Seen", STRING, 1, "The time at which the event was first recorded."),
            ("Count", STRING, 1, "The number of times this event has occurred."),
            NAME,
        ],
        ("coordination.k8s.io", "Lease") => &[
            NAME,
            ("Holder", STRING, 0, "The holder of the lease"),
            AGE,
        ],
        _ => &[NAME, AGE],
    };
    let mut out: Vec<Column> = defs
        .iter()
        .map(|&(name, kind, priority, description)| Column {
            name,
            kind,
            priority,
            description,
        })
        .collect();
    // Events show their Name only with -o wide, unlike every other kind.
    if info.kind == "Event" && info.group.is_empty() {
        if let Some(last) = out.last_mut() {
            last.priority = 1;
        }
    }
    out
}

/// One row: a cell per column of [`columns`], wide ones included, as kubectl writes them.
/// `now` is the instant ages are measured from.
pub fn row(info: &ResourceInfo, object: &Value, now: jiff::Timestamp) -> Vec<String> {
    let name = text(object, &["metadata", "name"]).to_string();
    let created = object
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str);
    let age_cell = age(created, now);
    match (info.group, info.kind) {
        ("", "Pod") => pod_row(object, name, age_cell, now),
        ("apps", "Deployment") => {
            let (containers, images) = container_cells(object);
            vec![
                name,
                format!(
                    "{}/{}",
                    int(object, &["status", "readyReplicas"]),
                    replicas(object)
                ),
                int(object, &["status", "updatedReplicas"]).to_string(),
                int(object, &["status", "availableReplicas"]).to_string(),
                age_cell,
                containers,
                images,
                selector_cell(object.pointer("/spec/selector")),
            ]
        }
        ("apps", "ReplicaSet") => {
            let (containers, images) = container_cells(object);
            vec![
                name,
                replicas(object).to_string(),
                int(object, &["status", "replicas"]).to_string(),
                int(object, &["status", "readyReplicas"]).to_string(),
                age_cell,
                containers,
                images,
                selector_cell(object.pointer("/spec/selector")),
            ]
        }
        ("", "Service") => service_row(object, name, age_cell),
        ("", "Node") => node_row(object, name, age_cell),
        ("", "Namespace") => vec![
            name,
            text(object, &["status", "phase"]).to_string(),
            age_cell,
        ],
        ("", "ConfigMap") => {
            let count = count_keys(object, "data") + count_keys(object, "binaryData");
            vec![name, count.to_string(), age_cell]
        }
        ("", "Secret") => {
            // A Secret written with stringData only has it folded into data by the server;
            // count both so an object read before that still shows its entries.
            let mut keys: Vec<&String> = ["data", "stringData"]
                .iter()
                .filter_map(|field| object.get(field).and_then(Value::as_object))
                .flat_map(|m| m.keys())
                .collect();
            keys.sort();
            keys.dedup();
            vec![
                name,
                text(object, &["type"]).to_string(),
                keys.len().to_string(),
                age_cell,
            ]
        }
        ("", "Endpoints") => vec![name, format_endpoints(object, None), age_cell],
        ("", "Event") => event_row(object, name, now),
        ("coordination.k8s.io", "Lease") => vec![
            name,
            text(object, &["spec", "holderIdentity"]).to_string(),
            age_cell,
        ],
        _ => vec![name, age_cell],
    }
}

/// The time since `created` (an RFC 3339 timestamp) in kubectl's short form: `45s`, `3m2s`,
/// `12m`, `5h3m`, `20h`, `2d5h`, `45d`, `2y3d`, `9y`; `<unknown>` without a time, `<invalid>`
/// for a time in the future (past two seconds of clock skew).
pub fn age(created: Option<&str>, now: jiff::Timestamp) -> String {
    let Some(created) = created.filter(|s| !s.is_empty()) else {
        return "<unknown>".to_string();
    };
    match created.parse::<jiff::Timestamp>() {
        Ok(then) => human_duration(now.duration_since(then).as_secs()),
        Err(_) => "<unknown>".to_string(),
    }
}

/// `labels.FormatLabels`: `a=b,c=d` sorted by key, `<none>` when empty.
pub fn format_labels(labels: Option<&Value>) -> String {
    let mut pairs: Vec<String> = labels
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    pairs.sort();
    pairs.join(",")
}

/// A `metav1.LabelSelector` in kube's string syntax, requirements sorted by key as
/// `LabelSelectorAsSelector` sorts them; `<none>` without a selector, `<invalid>` for one
/// Kubernetes would refuse.
pub fn selector_cell(selector: Option<&Value>) -> String {
    let Some(selector) = selector.filter(|s| !s.is_null()) else {
        return "<none>".to_string();
    };
    let parsed = serde_json::from_value(selector.clone())
        .ok()
        .and_then(|meta| LabelSelector::from_meta(&meta).ok());
    match parsed {
        Some(mut selector) => {
            selector.requirements.sort_by(|a, b| a.key.cmp(&b.key));
            selector.to_string()
        }
        None => "<invalid>".to_string(),
    }
}

/// A service's ports as kubectl lists them: `80/TCP`, `80:30080/TCP`, comma separated.
pub fn service_ports(ports: Option<&Value>) -> String {
    ports
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .map(|p| {
                    let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                    let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                    match p.get("nodePort").and_then(Value::as_i64) {
                        Some(node_port) if node_port > 0 => {
                            format!("{port}:{node_port}/{protocol}")
                        }
                        _ => format!("{port}/{protocol}"),
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// The STATUS column of a pod, as kubectl computes it.
pub fn pod_status(pod: &Value) -> String {
    pod_summary(pod, jiff::Timestamp::UNIX_EPOCH).status
}

const STRING: &str = "string";
const INTEGER: &str = "integer";
const NAME: (&str, &str, i32, &str) =
    ("Name", STRING, 0, "Name must be unique within a namespace.");
const AGE: (&str, &str, i32, &str) = (
    "Age",
    STRING,
    0,
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
);
const CONTAINERS: (&str, &str, i32, &str) = (
    "Containers",
    STRING,
    1,
    "Names of each container in the template.",
);
const IMAGES: (&str, &str, i32, &str) = (
    "Images",
    STRING,
    1,
    "Images referenced by each container in the template.",
);

/// Go's `duration.HumanDuration`, from whole seconds.
fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn get<'a>(object: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(object, |v, key| v.get(key))
}

fn text<'a>(object: &'a Value, path: &[&str]) -> &'a str {
    get(object, path).and_then(Value::as_str).unwrap_or("")
}

fn int(object: &Value, path: &[&str]) -> i64 {
    get(object, path).and_then(Value::as_i64).unwrap_or(0)
}

fn array<'a>(object: &'a Value, path: &[&str]) -> &'a [Value] {
    get(object, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn count_keys(object: &Value, field: &str) -> usize {
    object
        .get(field)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

/// `spec.replicas`, which Kubernetes defaults to 1.
fn replicas(object: &Value) -> i64 {
    get(object, &["spec", "replicas"])
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

/// The CONTAINERS and IMAGES cells of a workload's pod template.
fn container_cells(object: &Value) -> (String, String) {
    let containers = array(object, &["spec", "template", "spec", "containers"]);
    let names: Vec<&str> = containers.iter().map(|c| text(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

struct PodSummary {
    ready: usize,
    total: usize,
    status: String,
    restarts: String,
}

fn pod_row(pod: &Value, name: String, age_cell: String, now: jiff::Timestamp) -> Vec<String> {
    let summary = pod_summary(pod, now);
    let or_none = |s: &str| {
        if s.is_empty() {
            "<none>".to_string()
        } else {
            s.to_string()
        }
    };
    let ip = array(pod, &["status", "podIPs"])
        .first()
        .map(|p| text(p, &["ip"]))
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| text(pod, &["status", "podIP"]));
    let gates = array(pod, &["spec", "readinessGates"]);
    let gates_cell = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = array(pod, &["status", "conditions"]);
        let true_count = gates
            .iter()
            .filter(|gate| {
                let wanted = text(gate, &["conditionType"]);
                conditions
                    .iter()
                    .find(|c| text(c, &["type"]) == wanted)
                    .is_some_and(|c| text(c, &["status"]) == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };
    vec![
        name,
        format!("{}/{}", summary.ready, summary.total),
        summary.status,
        summary.restarts,
        age_cell,
        or_none(ip),
        or_none(text(pod, &["spec", "nodeName"])),
        or_none(text(pod, &["status", "nominatedNodeName"])),
        gates_cell,
    ]
}

/// kubectl's `printPod`: readiness, STATUS, and restarts with the time of the last one.
fn pod_summary(pod: &Value, now: jiff::Timestamp) -> PodSummary {
    let phase = text(pod, &["status", "phase"]);
    let mut reason = phase.to_string();
    let status_reason = text(pod, &["status", "reason"]);
    if !status_reason.is_empty() {
        reason = status_reason.to_string();
    }
    let conditions = array(pod, &["status", "conditions"]);
    if conditions
        .iter()
        .any(|c| text(c, &["type"]) == "PodScheduled" && text(c, &["reason"]) == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    let init_specs = array(pod, &["spec", "initContainers"]);
    let restartable = |name: &str| {
        init_specs
            .iter()
            .any(|c| text(c, &["name"]) == name && text(c, &["restartPolicy"]) == "Always")
    };
    let total = array(pod, &["spec", "containers"]).len()
        + init_specs
            .iter()
            .filter(|c| text(c, &["restartPolicy"]) == "Always")
            .count();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut restartable_restarts = 0i64;
    let mut last_restart: Option<jiff::Timestamp> = None;
    let mut last_restartable_restart: Option<jiff::Timestamp> = None;

    let mut initializing = false;
    let init_statuses = array(pod, &["status", "initContainerStatuses"]);
    for (i, container) in init_statuses.iter().enumerate() {
        let count = int(container, &["restartCount"]);
        restarts += count;
        let finished = last_termination(container);
        last_restart = later(last_restart, finished);
        let is_restartable = restartable(text(container, &["name"]));
        if is_restartable {
            restartable_restarts += count;
            last_restartable_restart = later(last_restartable_restart, finished);
        }
        let terminated = get(container, &["state", "terminated"]);
        let waiting_reason = text(container, &["state", "waiting", "reason"]);
        if terminated.is_some_and(|t| int(t, &["exitCode"]) == 0) {
            continue;
        }
        if is_restartable && get(container, &["started"]).and_then(Value::as_bool) == Some(true) {
            if get(container, &["ready"]).and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if let Some(terminated) = terminated {
            let why = text(terminated, &["reason"]);
            reason = if !why.is_empty() {
                format!("Init:{why}")
            } else if int(terminated, &["signal"]) != 0 {
                format!("Init:Signal:{}", int(terminated, &["signal"]))
            } else {
                format!("Init:ExitCode:{}", int(terminated, &["exitCode"]))
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    let initialized = conditions
        .iter()
        .any(|c| text(c, &["type"]) == "Initialized" && text(c, &["status"]) == "True");
    if !initializing || initialized {
        restarts = restartable_restarts;
        last_restart = last_restartable_restart;
        let mut has_running = false;
        for container in array(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts += int(container, &["restartCount"]);
            last_restart = later(last_restart, last_termination(container));
            let waiting = text(container, &["state", "waiting", "reason"]);
            let terminated = get(container, &["state", "terminated"]);
            let terminated_reason = terminated.map(|t| text(t, &["reason"])).unwrap_or("");
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if !terminated_reason.is_empty() {
                reason = terminated_reason.to_string();
            } else if let Some(terminated) = terminated {
                reason = if int(terminated, &["signal"]) != 0 {
                    format!("Signal:{}", int(terminated, &["signal"]))
                } else {
                    format!("ExitCode:{}", int(terminated, &["exitCode"]))
                };
            } else if get(container, &["ready"]).and_then(Value::as_bool) == Some(true)
                && get(container, &["state", "running"]).is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = conditions
                .iter()
                .any(|c| text(c, &["type"]) == "Ready" && text(c, &["status"]) == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.to_string();
        }
    }

    let deleting = get(pod, &["metadata", "deletionTimestamp"]).is_some_and(|t| !t.is_null());
    if deleting && status_reason == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(at) if restarts != 0 => {
            format!(
                "{restarts} ({} ago)",
                human_duration(now.duration_since(at).as_secs())
            )
        }
        _ => restarts.to_string(),
    };
    PodSummary {
        ready,
        total,
        status: reason,
        restarts: restarts_cell,
    }
}

fn last_termination(container: &Value) -> Option<jiff::Timestamp> {
    get(container, &["lastState", "terminated", "finishedAt"])
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

fn later(a: Option<jiff::Timestamp>, b: Option<jiff::Timestamp>) -> Option<jiff::Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn service_row(service: &Value, name: String, age_cell: String) -> Vec<String> {
    let service_type = text(service, &["spec", "type"]);
    let cluster_ip = array(service, &["spec", "clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .or_else(|| get(service, &["spec", "clusterIP"]).and_then(Value::as_str))
        .filter(|ip| !ip.is_empty())
        .unwrap_or("<none>");
    let external_ips: Vec<&str> = array(service, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let external = match service_type {
        "ClusterIP" | "NodePort" | "" if !external_ips.is_empty() => external_ips.join(","),
        "ClusterIP" | "NodePort" => "<none>".to_string(),
        "LoadBalancer" => {
            let ingress: Vec<&str> = array(service, &["status", "loadBalancer", "ingress"])
                .iter()
                .map(|i| {
                    let ip = text(i, &["ip"]);
                    if ip.is_empty() {
                        text(i, &["hostname"])
                    } else {
                        ip
                    }
                })
                .filter(|s| !s.is_empty())
                .collect();
            let mut all: Vec<&str> = ingress;
            all.extend(external_ips.iter().copied());
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => text(service, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    };
    let mut ports = service_ports(get(service, &["spec", "ports"]));
    if ports.is_empty() {
        ports = "<none>".to_string();
    }
    vec![
        name,
        service_type.to_string(),
        cluster_ip.to_string(),
        external,
        ports,
        age_cell,
        format_labels(get(service, &["spec", "selector"])),
    ]
}

fn node_row(node: &Value, name: String, age_cell: String) -> Vec<String> {
    let mut status: Vec<String> = array(node, &["status", "conditions"])
        .iter()
        .filter(|c| text(c, &["type"]) == "Ready")
        .take(1)
        .map(|c| {
            if text(c, &["status"]) == "True" {
                "Ready".to_string()
            } else {
                "NotReady".to_string()
            }
        })
        .collect();
    if status.is_empty() {
        status.push("Unknown".to_string());
    }
    if get(node, &["spec", "unschedulable"]).and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled".to_string());
    }
    let mut roles: Vec<String> = get(node, &["metadata", "labels"])
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| {
                    if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                        (!role.is_empty()).then(|| role.to_string())
                    } else if k == "kubernetes.io/role" {
                        v.as_str().filter(|v| !v.is_empty()).map(str::to_string)
                    } else {
                        None
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    roles.dedup();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };
    let address = |kind: &str| {
        array(node, &["status", "addresses"])
            .iter()
            .find(|a| text(a, &["type"]) == kind)
            .map(|a| text(a, &["address"]).to_string())
            .unwrap_or_else(|| "<none>".to_string())
    };
    let info = |field: &str| {
        let value = text(node, &["status", "nodeInfo", field]);
        if value.is_empty() {
            "<unknown>".to_string()
        } else {
            value.to_string()
        }
    };
    vec![
        name,
        status.join(","),
        roles,
        age_cell,
        text(node, &["status", "nodeInfo", "kubeletVersion"]).to_string(),
        address("InternalIP"),
        address("ExternalIP"),
        info("osImage"),
        info("kernelVersion"),
        info("containerRuntimeVersion"),
    ]
}

/// kubectl's `formatEndpoints`: up to three `ip:port`, then `+ N more...`; `<none>` without
/// subsets. With `port_name`, only the ports of that name count (as `describe service` shows
/// each port's endpoints).
pub fn format_endpoints(endpoints: &Value, port_name: Option<&str>) -> String {
    let subsets = array(endpoints, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for subset in subsets {
        let addresses = array(subset, &["addresses"]);
        let ports = array(subset, &["ports"]);
        if ports.is_empty() {
            count += addresses.len();
            for address in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(text(address, &["ip"]).to_string());
            }
            continue;
        }
        for port in ports
            .iter()
            .filter(|p| port_name.is_none_or(|n| text(p, &["name"]) == n))
        {
            count += addresses.len();
            for address in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                let ip = text(address, &["ip"]);
                let port = int(port, &["port"]);
                if ip.contains(':') {
                    list.push(format!("[{ip}]:{port}"));
                } else {
                    list.push(format!("{ip}:{port}"));
                }
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

fn event_row(event: &Value, name: String, now: jiff::Timestamp) -> Vec<String> {
    let stamp = |field: &str| {
        get(event, &[field])
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let first_seen = match stamp("firstTimestamp") {
        Some(t) => age(Some(t), now),
        None => age(stamp("eventTime"), now),
    };
    let mut last_seen = match stamp("lastTimestamp") {
        Some(t) => age(Some(t), now),
        None => first_seen.clone(),
    };
    let mut count = int(event, &["count"]);
    if let Some(series) = get(event, &["series"]).filter(|s| s.is_object()) {
        last_seen = age(
            get(series, &["lastObservedTime"]).and_then(Value::as_str),
            now,
        );
        count = int(series, &["count"]);
    } else if count == 0 {
        count = 1;
    }
    let kind = text(event, &["involvedObject", "kind"]).to_ascii_lowercase();
    let object_name = text(event, &["involvedObject", "name"]);
    let target = if object_name.is_empty() {
        kind
    } else {
        format!("{kind}/{object_name}")
    };
    let component = non_empty_or(
        text(event, &["source", "component"]),
        text(event, &["reportingComponent"]),
    );
    let instance = non_empty_or(
        text(event, &["source", "host"]),
        text(event, &["reportingInstance"]),
    );
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        last_seen,
        text(event, &["type"]).to_string(),
        text(event, &["reason"]).to_string(),
        target,
        text(event, &["involvedObject", "fieldPath"]).to_string(),
        source,
        text(event, &["message"]).trim().to_string(),
        first_seen,
        count.to_string(),
        name,
    ]
}

fn non_empty_or<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::lookup;
    use serde_json::json;

    fn now() -> jiff::Timestamp {
        match "2025-01-10T12:00:00Z".parse() {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    fn ago(seconds: i64) -> String {
        let at = now() - jiff::SignedDuration::from_secs(seconds);
        at.to_string()
    }

    fn info(name: &str) -> &'static ResourceInfo {
        match lookup(name) {
            Some(i) => i,
            None => panic!("no kind {name}"),
        }
    }

    #[test]
    fn ages_like_kubectl() {
        fn check(seconds: i64, expected: &str) {
            assert_eq!(age(Some(&ago(seconds)), now()), expected, "{seconds}s");
        }
        check(0, "0s");
        check(5, "5s");
        check(119, "119s");
        check(120, "2m");
        check(182, "3m2s");
        check(600, "10m");
        check(179 * 60 + 59, "179m");
        check(3 * 3600, "3h");
        check(5 * 3600 + 3 * 60, "5h3m");
        check(20 * 3600, "20h");
        check(47 * 3600, "47h");
        check(2 * 86400 + 5 * 3600, "2d5h");
        check(3 * 86400, "3d");
        check(45 * 86400, "45d");
        check(2 * 365 * 86400, "2y");
        check(2 * 365 * 86400 + 3 * 86400, "2y3d");
        check(9 * 365 * 86400, "9y");
        // a clock a second ahead is "now"; further ahead is invalid
        check(-1, "0s");
        check(-5, "<invalid>");
        assert_eq!(age(None, now()), "<unknown>");
        assert_eq!(age(Some("yesterday"), now()), "<unknown>");
    }

    fn pod(status: Value) -> Value {
        json!({
            "metadata": {"name": "web", "creationTimestamp": ago(300)},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": status,
        })
    }

    #[test]
    fn pod_status_like_kubectl() {
        fn check(pod: Value, expected: &str) {
            assert_eq!(pod_status(&pod), expected, "{pod}");
        }
        check(pod(json!({"phase": "Pending"})), "Pending");
        check(
            pod(json!({"phase": "Running", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
                {"name": "b", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
            ]})),
            "CrashLoopBackOff",
        );
        check(
            pod(json!({"phase": "Pending", "containerStatuses": [
                {"name": "a", "state": {"waiting": {"reason": "ImagePullBackOff"}}},
            ]})),
            "ImagePullBackOff",
        );
        check(
            pod(json!({"phase": "Succeeded", "containerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            ]})),
            "Completed",
        );
        check(
            pod(json!({"phase": "Failed", "containerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 3}}},
            ]})),
            "ExitCode:3",
        );
        check(
            pod(json!({"phase": "Failed", "containerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}},
            ]})),
            "Signal:9",
        );
        // one container completed, the other still running: the pod is Running (or NotReady)
        let mixed = |ready: &str| {
            pod(json!({"phase": "Running",
                "conditions": [{"type": "Ready", "status": ready}],
                "containerStatuses": [
                {"name": "a", "ready": true, "state": {"running": {}}},
                {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            ]}))
        };
        check(mixed("True"), "Running");
        check(mixed("False"), "NotReady");
        let mut deleting = pod(json!({"phase": "Running"}));
        deleting["metadata"]["deletionTimestamp"] = json!(ago(1));
        check(deleting.clone(), "Terminating");
        deleting["status"]["reason"] = json!("NodeLost");
        check(deleting, "Unknown");
        let mut done = pod(json!({"phase": "Succeeded"}));
        done["metadata"]["deletionTimestamp"] = json!(ago(1));
        check(done, "Succeeded");
        check(
            pod(json!({"phase": "Failed", "reason": "Evicted"})),
            "Evicted",
        );
        check(
            pod(json!({"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]})),
            "SchedulingGated",
        );

        let mut init = pod(json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "state": {"terminated": {"exitCode": 0}}},
            {"name": "i2", "state": {"running": {}}},
        ]}));
        init["spec"]["initContainers"] = json!([{"name": "i1"}, {"name": "i2"}]);
        check(init.clone(), "Init:1/2");
        init["status"]["initContainerStatuses"][1]["state"] =
            json!({"waiting": {"reason": "ImagePullBackOff"}});
        check(init.clone(), "Init:ImagePullBackOff");
        init["status"]["initContainerStatuses"][1]["state"] =
            json!({"terminated": {"exitCode": 2}});
        check(init.clone(), "Init:ExitCode:2");
        init["status"]["initContainerStatuses"][1]["state"] =
            json!({"terminated": {"exitCode": 1, "reason": "Error"}});
        check(init, "Init:Error");
    }

    #[test]
    fn pod_rows_count_ready_and_restarts() {
        let p = pod(
            json!({"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(300)}}},
                {"name": "b", "ready": true, "restartCount": 1, "state": {"running": {}}},
            ]}),
        );
        assert_eq!(
            row(info("pods"), &p, now()),
            [
                "web",
                "2/2",
                "Running",
                "3 (5m ago)",
                "5m",
                "10.0.0.5",
                "<none>",
                "<none>",
                "<none>"
            ]
        );
        let fresh = pod(json!({"phase": "Pending"}));
        assert_eq!(
            row(info("po"), &fresh, now())[..4],
            ["web", "0/2", "Pending", "0"]
        );
        assert_eq!(columns(info("po")).len(), 9);
    }

    #[test]
    fn service_ports_and_external_ips() {
        assert_eq!(
            service_ports(Some(&json!([
                {"port": 80, "protocol": "TCP", "nodePort": 30080},
                {"port": 53, "protocol": "UDP"},
                {"port": 443},
            ]))),
            "80:30080/TCP,53/UDP,443/TCP"
        );
        assert_eq!(service_ports(None), "");
        let svc = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(60)},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                     "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}],
                     "selector": {"tier": "fe", "app": "web"}},
        });
        assert_eq!(
            row(info("svc"), &svc, now()),
            [
                "web",
                "NodePort",
                "10.96.0.10",
                "<none>",
                "80:30080/TCP",
                "60s",
                "app=web,tier=fe"
            ]
        );
        let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIP": "None"}});
        assert_eq!(
            row(info("svc"), &lb, now())[1..5],
            ["LoadBalancer", "None", "<pending>", "<none>"]
        );
    }

    #[test]
    fn workloads_nodes_and_the_rest() {
        let deploy = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(7200)},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "env", "operator": "In", "values": ["qa", "prod"]}]},
                "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1"}, {"name": "log", "image": "busybox"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
        });
        assert_eq!(
            row(info("deploy"), &deploy, now()),
            [
                "web",
                "2/3",
                "3",
                "2",
                "120m",
                "web,log",
                "nginx:1,busybox",
                "app=web,env in (prod,qa)"
            ]
        );
        let node = json!({
            "metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "worker"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}],
                       "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                       "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian"}},
        });
        assert_eq!(
            row(info("no"), &node, now())[1..],
            [
                "NotReady,SchedulingDisabled",
                "control-plane,worker",
                "<unknown>",
                "v1.33.0",
                "10.0.0.1",
                "<none>",
                "Debian",
                "<unknown>",
                "<unknown>"
            ]
        );
        let ep = json!({"metadata": {"name": "web"}, "subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]}]});
        assert_eq!(
            row(info("ep"), &ep, now())[1],
            "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more..."
        );
        let event = json!({"metadata": {"name": "web.1"}, "type": "Normal", "reason": "Scheduled",
            "involvedObject": {"kind": "Pod", "name": "web"}, "message": " assigned \n",
            "firstTimestamp": ago(600), "lastTimestamp": ago(30), "count": 4,
            "source": {"component": "scheduler"}});
        assert_eq!(
            row(info("ev"), &event, now()),
            [
                "30s",
                "Normal",
                "Scheduled",
                "pod/web",
                "",
                "scheduler",
                "assigned",
                "10m",
                "4",
                "web.1"
            ]
        );
        let visible: Vec<&str> = columns(info("ev"))
            .iter()
            .filter(|c| c.priority == 0)
            .map(|c| c.name)
            .collect();
        assert_eq!(
            visible,
            ["Last Seen", "Type", "Reason", "Object", "Message"]
        );
        let secret = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "eA=="}, "stringData": {"a": "x", "b": "y"}});
        assert_eq!(row(info("secrets"), &secret, now())[1..3], ["Opaque", "2"]);
        for kind in crate::resource::RESOURCES {
            assert_eq!(
                columns(kind).len(),
                row(kind, &json!({}), now()).len(),
                "{}",
                kind.kind
            );
        }
    }
}
