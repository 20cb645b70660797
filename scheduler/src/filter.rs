//! The filters: whether a pod may go on a node, and if not, why, in kube-scheduler's words, so
//! that `kubectl describe pod` reads the same as on Kubernetes.
//!
//! The filters run in kube-scheduler's default order (NodeUnschedulable, TaintToleration, which
//! here also covers the Ready condition, NodeAffinity, NodePorts, NodeResourcesFit) and the first
//! that fails decides the node's reasons; only the resource fit can give several at once
//! ("Insufficient cpu" and "Insufficient memory"). [`FitError`] counts reasons over all nodes and
//! prints `0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient memory.`.

use std::collections::BTreeMap;
use std::fmt;

use api::core::{NodeSelector, NodeSelectorRequirement, Taint};

use crate::cache::{NodeInfo, PodInfo, TAINT_UNSCHEDULABLE};
pub use api::taints::tolerated;

/// Why a node was not feasible for a pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    Unschedulable,
    UntoleratedTaint {
        key: String,
        value: String,
    },
    NodeAffinity,
    HostPorts,
    TooManyPods,
    /// "cpu", "memory".
    Insufficient(&'static str),
}

/// No node fits: how many nodes were considered and how many failed for each reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FitError {
    pub num_nodes: usize,
    pub reasons: BTreeMap<Reason, usize>,
}

/// Runs every filter; `Err` holds the reasons of the first one that failed.
pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Result<(), Vec<Reason>> {
    let one = |reason: Option<Reason>| reason.map_or(Ok(()), |r| Err(vec![r]));
    one(node_unschedulable(pod, node))?;
    one(taint_toleration(pod, node))?;
    one(node_affinity(pod, node))?;
    one(node_ports(pod, node))?;
    let reasons = resources_fit(pod, node);
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

/// `spec.unschedulable` (cordoned), unless the pod tolerates the unschedulable taint.
pub fn node_unschedulable(pod: &PodInfo, node: &NodeInfo) -> Option<Reason> {
    let taint = Taint {
        key: TAINT_UNSCHEDULABLE.to_string(),
        effect: "NoSchedule".to_string(),
        value: None,
        time_added: None,
    };
    (node.unschedulable && !tolerated(&pod.tolerations, &taint)).then_some(Reason::Unschedulable)
}

/// The first NoSchedule or NoExecute taint the pod does not tolerate (PreferNoSchedule only
/// lowers the score).
pub fn taint_toleration(pod: &PodInfo, node: &NodeInfo) -> Option<Reason> {
    node.taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tolerated(&pod.tolerations, t))
        .map(|t| Reason::UntoleratedTaint {
            key: t.key.clone(),
            value: t.value.clone().unwrap_or_default(),
        })
}

/// `spec.nodeSelector` and the required node affinity.
pub fn node_affinity(pod: &PodInfo, node: &NodeInfo) -> Option<Reason> {
    let selector_ok = pod
        .node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v));
    let affinity_ok = pod
        .required_affinity
        .as_ref()
        .is_none_or(|selector| matches_node_selector(selector, node));
    (!(selector_ok && affinity_ok)).then_some(Reason::NodeAffinity)
}

/// Host ports already taken on the node. Two uses conflict on the same protocol and port when
/// either binds all addresses or both bind the same one.
pub fn node_ports(pod: &PodInfo, node: &NodeInfo) -> Option<Reason> {
    let conflict = pod.host_ports.iter().any(|wanted| {
        node.used_ports.keys().any(|used| {
            used.port == wanted.port
                && used.protocol == wanted.protocol
                && (used.host_ip == wanted.host_ip
                    || used.host_ip == "0.0.0.0"
                    || wanted.host_ip == "0.0.0.0")
        })
    });
    conflict.then_some(Reason::HostPorts)
}

/// Pod count, cpu and memory against allocatable minus what is placed on the node. Like
/// kube-scheduler, a resource the pod does not request is not checked.
pub fn resources_fit(pod: &PodInfo, node: &NodeInfo) -> Vec<Reason> {
    let mut reasons = Vec::new();
    let (wanted, used, allocatable) = (pod.requests, node.requested, node.allocatable);
    if used.pods + 1 > allocatable.pods {
        reasons.push(Reason::TooManyPods);
    }
    if wanted.milli_cpu > 0 && used.milli_cpu + wanted.milli_cpu > allocatable.milli_cpu {
        reasons.push(Reason::Insufficient("cpu"));
    }
    if wanted.memory > 0 && used.memory + wanted.memory > allocatable.memory {
        reasons.push(Reason::Insufficient("memory"));
    }
    reasons
}

/// Node selector terms are ORed, the requirements of one term ANDed; a term without
/// requirements matches nothing, as in Kubernetes.
fn matches_node_selector(selector: &NodeSelector, node: &NodeInfo) -> bool {
    selector.node_selector_terms.iter().any(|term| {
        let expressions = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        if expressions.is_empty() && fields.is_empty() {
            return false;
        }
        expressions
            .iter()
            .all(|r| requirement_matches(r, node.labels.get(&r.key).map(String::as_str)))
            && fields.iter().all(|r| {
                r.key == "metadata.name" && requirement_matches(r, Some(node.name.as_str()))
            })
    })
}

fn requirement_matches(requirement: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = requirement.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match requirement.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), [bound]) = (value.and_then(number), values) else {
                return false;
            };
            let Some(bound) = number(bound) else {
                return false;
            };
            if requirement.operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

impl FitError {
    pub fn add(&mut self, reasons: Vec<Reason>) {
        for reason in reasons {
            *self.reasons.entry(reason).or_insert(0) += 1;
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Unschedulable => f.write_str("node(s) were unschedulable"),
            Reason::UntoleratedTaint { key, value } => {
                write!(f, "node(s) had untolerated taint {{{key}: {value}}}")
            }
            Reason::NodeAffinity => {
                f.write_str("node(s) didn't match Pod's node affinity/selector")
            }
            Reason::HostPorts => {
                f.write_str("node(s) didn't have free ports for the requested pod ports")
            }
            Reason::TooManyPods => f.write_str("Too many pods"),
            Reason::Insufficient(resource) => write!(f, "Insufficient {resource}"),
        }
    }
}

/// kube-scheduler's FitError text: each reason as "COUNT REASON", the strings sorted (Go's
/// `sort.Strings`, so by count's first digit, then text), joined with ", ".
impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.num_nodes == 0 {
            return f.write_str("no nodes available to schedule pods");
        }
        let mut parts: Vec<String> = self
            .reasons
            .iter()
            .map(|(reason, count)| format!("{count} {reason}"))
            .collect();
        parts.sort();
        write!(f, "0/{} nodes are available:", self.num_nodes)?;
        if !parts.is_empty() {
            write!(f, " {}.", parts.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cache::{Cache, NodeInfo, PodInfo};
    use crate::testutil::{node, node_from, pod, pod_from, with};

    fn node_of(cache: &Cache) -> NodeInfo {
        cache
            .node("n1")
            .cloned()
            .unwrap_or_else(|| panic!("no node"))
    }

    fn info(value: serde_json::Value) -> PodInfo {
        PodInfo::from_pod(&pod_from(value))
    }

    fn small_pod() -> serde_json::Value {
        with(&pod("p", "100m", "64Mi"), json!({}))
    }

    fn node_with(patch: serde_json::Value) -> NodeInfo {
        NodeInfo::from_node(&node_from(with(&node("n1", "4", "8Gi", "110"), patch)))
    }

    #[test]
    fn a_plain_pod_fits_a_plain_node() {
        assert_eq!(filter(&info(small_pod()), &node_with(json!({}))), Ok(()));
    }

    #[test]
    fn cordoned_nodes_are_skipped_unless_tolerated() {
        let cordoned = node_with(json!({"spec": {"unschedulable": true}}));
        assert_eq!(
            filter(&info(small_pod()), &cordoned),
            Err(vec![Reason::Unschedulable])
        );
        let tolerating = info(with(
            &pod("p", "100m", "64Mi"),
            json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}}),
        ));
        assert_eq!(filter(&tolerating, &cordoned), Ok(()));
    }

    #[test]
    fn taints_need_tolerations_and_prefer_no_schedule_does_not_filter() {
        let tainted = node_with(json!({"spec": {"taints": [
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
        ]}}));
        assert_eq!(
            filter(&info(small_pod()), &tainted),
            Err(vec![Reason::UntoleratedTaint {
                key: "dedicated".into(),
                value: "gpu".into()
            }])
        );
        let equal = json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}});
        assert_eq!(
            filter(&info(with(&pod("p", "1m", "1"), equal)), &tainted),
            Ok(())
        );
        let wrong_value = json!({"spec": {"tolerations": [{"key": "dedicated", "value": "cpu"}]}});
        assert!(filter(&info(with(&pod("p", "1m", "1"), wrong_value)), &tainted).is_err());
        let everything = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        assert_eq!(
            filter(&info(with(&pod("p", "1m", "1"), everything)), &tainted),
            Ok(())
        );

        let no_execute =
            node_with(json!({"spec": {"taints": [{"key": "k", "effect": "NoExecute"}]}}));
        assert!(filter(&info(small_pod()), &no_execute).is_err());
        let prefer =
            node_with(json!({"spec": {"taints": [{"key": "k", "effect": "PreferNoSchedule"}]}}));
        assert_eq!(filter(&info(small_pod()), &prefer), Ok(()));
    }

    #[test]
    fn nodes_that_are_not_ready_are_tainted() {
        let not_ready =
            node_with(json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}));
        assert_eq!(
            filter(&info(small_pod()), &not_ready),
            Err(vec![Reason::UntoleratedTaint {
                key: "node.kubernetes.io/not-ready".into(),
                value: String::new()
            }])
        );
        let unknown =
            node_with(json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}));
        let tolerating = json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists"}]}});
        assert_eq!(
            filter(
                &info(with(&pod("p", "1m", "1"), tolerating.clone())),
                &unknown
            ),
            Ok(())
        );
        assert!(filter(&info(with(&pod("p", "1m", "1"), tolerating)), &not_ready).is_err());
    }

    #[test]
    fn node_selector_and_required_affinity() {
        let labelled = node_with(json!({"metadata": {"labels": {"disk": "ssd", "cores": "8"}}}));
        let selector = json!({"spec": {"nodeSelector": {"disk": "ssd"}}});
        assert_eq!(
            filter(&info(with(&pod("p", "1m", "1"), selector)), &labelled),
            Ok(())
        );
        let other = json!({"spec": {"nodeSelector": {"disk": "hdd"}}});
        assert_eq!(
            filter(&info(with(&pod("p", "1m", "1"), other)), &labelled),
            Err(vec![Reason::NodeAffinity])
        );
        let affinity = |expressions: serde_json::Value| {
            info(with(
                &pod("p", "1m", "1"),
                json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": expressions}]
                }}}}}),
            ))
        };
        for (expressions, fits) in [
            (
                json!([{"key": "disk", "operator": "In", "values": ["ssd", "nvme"]}]),
                true,
            ),
            (
                json!([{"key": "disk", "operator": "NotIn", "values": ["ssd"]}]),
                false,
            ),
            (json!([{"key": "gpu", "operator": "DoesNotExist"}]), true),
            (json!([{"key": "gpu", "operator": "Exists"}]), false),
            (
                json!([{"key": "cores", "operator": "Gt", "values": ["4"]}]),
                true,
            ),
            (
                json!([{"key": "cores", "operator": "Lt", "values": ["4"]}]),
                false,
            ),
        ] {
            assert_eq!(
                filter(&affinity(expressions.clone()), &labelled).is_ok(),
                fits,
                "{expressions}"
            );
        }
    }

    #[test]
    fn host_ports_conflict_on_the_same_address_or_any() {
        let mut cache = Cache::new();
        cache.set_node(&node("n1", "4", "8Gi", "110"));
        let with_port = |name: &str, ip: Option<&str>| {
            let mut port = json!({"containerPort": 80, "hostPort": 8080});
            if let Some(ip) = ip {
                port["hostIP"] = json!(ip);
            }
            pod_from(with(
                &pod(name, "1m", "1"),
                json!({"spec": {"containers": [{"name": "c", "image": "i", "ports": [port]}]}}),
            ))
        };
        cache.assume(PodInfo::from_pod(&with_port("a", Some("10.0.0.1"))), "n1");
        let node = || {
            cache
                .node("n1")
                .cloned()
                .unwrap_or_else(|| panic!("no node"))
        };
        assert_eq!(
            filter(&PodInfo::from_pod(&with_port("b", None)), &node()),
            Err(vec![Reason::HostPorts])
        );
        assert_eq!(
            filter(
                &PodInfo::from_pod(&with_port("c", Some("10.0.0.1"))),
                &node()
            ),
            Err(vec![Reason::HostPorts])
        );
        assert_eq!(
            filter(
                &PodInfo::from_pod(&with_port("d", Some("10.0.0.2"))),
                &node()
            ),
            Ok(())
        );
    }

    #[test]
    fn resources_count_what_is_placed_and_every_shortage_is_named() {
        let mut cache = Cache::new();
        cache.set_node(&node("n1", "1", "1Gi", "2"));
        cache.assume(PodInfo::from_pod(&pod("a", "600m", "600Mi")), "n1");
        assert_eq!(
            filter(
                &PodInfo::from_pod(&pod("b", "400m", "400Mi")),
                &node_of(&cache)
            ),
            Ok(())
        );
        assert_eq!(
            filter(
                &PodInfo::from_pod(&pod("b", "500m", "500Mi")),
                &node_of(&cache)
            ),
            Err(vec![
                Reason::Insufficient("cpu"),
                Reason::Insufficient("memory")
            ])
        );
        cache.assume(PodInfo::from_pod(&pod("b", "1m", "1")), "n1");
        assert_eq!(
            filter(&PodInfo::from_pod(&pod("c", "1m", "1")), &node_of(&cache)),
            Err(vec![Reason::TooManyPods])
        );
        // A terminated pod holds nothing.
        let done = with(
            &pod("b", "1m", "1"),
            json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Succeeded"}}),
        );
        cache.update_pod(&pod_from(done));
        assert_eq!(
            filter(&PodInfo::from_pod(&pod("c", "1m", "1")), &node_of(&cache)),
            Ok(())
        );
    }

    #[test]
    fn the_message_counts_reasons_like_kube_scheduler() {
        let mut error = FitError {
            num_nodes: 3,
            ..FitError::default()
        };
        error.add(vec![Reason::Insufficient("memory")]);
        error.add(vec![Reason::Insufficient("memory")]);
        error.add(vec![Reason::Unschedulable]);
        assert_eq!(
            error.to_string(),
            "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient memory."
        );
        let mut error = FitError {
            num_nodes: 4,
            ..FitError::default()
        };
        error.add(vec![
            Reason::Insufficient("cpu"),
            Reason::Insufficient("memory"),
        ]);
        error.add(vec![Reason::Insufficient("cpu")]);
        error.add(vec![Reason::UntoleratedTaint {
            key: "node-role.kubernetes.io/control-plane".into(),
            value: String::new(),
        }]);
        error.add(vec![Reason::NodeAffinity]);
        assert_eq!(
            error.to_string(),
            "0/4 nodes are available: 1 Insufficient memory, 1 node(s) didn't match Pod's node affinity/selector, \
             1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu."
        );
        assert_eq!(
            FitError::default().to_string(),
            "no nodes available to schedule pods"
        );
    }
}
