//! Choosing among feasible nodes, and the whole decision for one pod ([`select`]).
//!
//! The score is compared field by field: first spread (fewest pods of the same controller owner
//! on the node), then fewest untolerated PreferNoSchedule taints, then the least allocated node
//! (free cpu and memory in percent after placing the pod). Ties go to the node met first in a
//! walk that starts where the previous decision stopped, or, when the walk saw every node, just
//! after the node chosen last: pods that score alike everywhere (no owner, no requests) go round
//! the nodes instead of piling onto the first (kube-scheduler picks among ties at random).
//!
//! As kube-scheduler does (`percentageOfNodesToScore`), a large cluster is not filtered in full
//! for every pod: the walk stops once enough feasible nodes are found (all of them below 100
//! nodes, then a share shrinking from 50 % to 5 % of the cluster, at least 100).

use std::cmp::Reverse;

use crate::cache::{NodeInfo, PodInfo};
use crate::filter::{filter, tolerated, FitError};

/// How good a feasible node is; greater is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Score {
    pub spread: Reverse<u32>,
    pub prefer_no_schedule: Reverse<u32>,
    /// Free share of cpu and memory after placing the pod, 0..=100.
    pub least_allocated: i64,
}

/// The decision for one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Index into the nodes given to [`select`].
    pub node: usize,
    /// Where the next decision's walk starts.
    pub next_start: usize,
}

pub fn score(pod: &PodInfo, node: &NodeInfo) -> Score {
    let spread = pod
        .owner
        .as_ref()
        .and_then(|owner| node.owners.get(owner).copied())
        .unwrap_or(0);
    let prefer_no_schedule = node
        .taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule" && !tolerated(&pod.tolerations, t))
        .count();
    Score {
        spread: Reverse(spread),
        prefer_no_schedule: Reverse(u32::try_from(prefer_no_schedule).unwrap_or(u32::MAX)),
        least_allocated: least_allocated(pod, node),
    }
}

/// Kubernetes' LeastAllocated: the mean over cpu and memory of (allocatable - requested) * 100 /
/// allocatable, the pod's own requests included.
pub fn least_allocated(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let free = |allocatable: i64, used: i64, wanted: i64| {
        if allocatable <= 0 {
            return 0;
        }
        let left = (allocatable - used - wanted).max(0);
        // i128: memory in bytes times 100 can exceed i64 on very large nodes.
        (i128::from(left) * 100 / i128::from(allocatable)) as i64
    };
    let cpu = free(
        node.allocatable.milli_cpu,
        node.requested.milli_cpu,
        pod.requests.milli_cpu,
    );
    let memory = free(
        node.allocatable.memory,
        node.requested.memory,
        pod.requests.memory,
    );
    (cpu + memory) / 2
}

/// How many feasible nodes to find before choosing, out of `num_nodes`.
pub fn feasible_nodes_to_find(num_nodes: usize) -> usize {
    const MIN_FEASIBLE: usize = 100;
    if num_nodes < MIN_FEASIBLE {
        return num_nodes;
    }
    let percentage = 50usize.saturating_sub(num_nodes / 125).max(5);
    (num_nodes * percentage / 100).max(MIN_FEASIBLE)
}

/// Filters `nodes` from `start` (wrapping) and picks the best-scoring feasible one; when none is
/// feasible, says why for every node. Entries for unknown nodes (`exists: false`) are skipped.
pub fn select(pod: &PodInfo, nodes: &[NodeInfo], start: usize) -> Result<Placement, FitError> {
    let total = nodes.len();
    let existing = nodes.iter().filter(|n| n.exists).count();
    let wanted = feasible_nodes_to_find(existing);
    let mut error = FitError {
        num_nodes: existing,
        ..FitError::default()
    };
    let mut best: Option<(Score, usize)> = None;
    let mut found = 0;
    let mut visited = 0;
    let start = if total == 0 { 0 } else { start % total };
    for offset in 0..total {
        let index = (start + offset) % total;
        visited = offset + 1;
        let node = &nodes[index];
        if !node.exists {
            continue;
        }
        match filter(pod, node) {
            Ok(()) => {
                let s = score(pod, node);
                if best.as_ref().is_none_or(|(b, _)| s > *b) {
                    best = Some((s, index));
                }
                found += 1;
                if found >= wanted {
                    break;
                }
            }
            Err(reasons) => error.add(reasons),
        }
    }
    match best {
        Some((_, node)) => Ok(Placement {
            node,
            next_start: if total == 0 {
                0
            } else if visited >= total {
                (node + 1) % total
            } else {
                (start + visited) % total
            },
        }),
        None => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cache::Cache;
    use crate::filter::Reason;
    use crate::testutil::{node, node_from, pod, pod_from, with};

    fn owned(name: &str, owner: &str) -> PodInfo {
        PodInfo::from_pod(&pod_from(with(
            &pod(name, "100m", "100Mi"),
            json!({"metadata": {"ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": owner, "controller": true,
            }]}}),
        )))
    }

    fn three_nodes() -> Cache {
        let mut cache = Cache::new();
        for name in ["n1", "n2", "n3"] {
            cache.set_node(&node(name, "4", "8Gi", "110"));
        }
        cache
    }

    #[test]
    fn pods_that_score_alike_everywhere_go_round_the_nodes() {
        let mut cache = three_nodes();
        let mut start = 0;
        let mut chosen = Vec::new();
        for i in 0..6 {
            // no owner and no requests: every node scores the same, before and after assuming
            let p = PodInfo::from_pod(&pod(&format!("bare-{i}"), "0", "0"));
            let placement = select(&p, cache.nodes(), start).unwrap_or_else(|e| panic!("{e}"));
            let name = cache.nodes()[placement.node].name.clone();
            cache.assume(p, &name);
            chosen.push(name);
            start = placement.next_start;
        }
        assert_eq!(chosen, ["n1", "n2", "n3", "n1", "n2", "n3"]);
    }

    #[test]
    fn pods_of_one_owner_spread_before_filling_the_emptiest_node() {
        let mut cache = three_nodes();
        // n1 is busy with other work, n2 holds one replica of "web".
        cache.assume(PodInfo::from_pod(&pod("other", "3", "6Gi")), "n1");
        cache.assume(owned("web-1", "rs-web"), "n2");
        let placement = select(&owned("web-2", "rs-web"), cache.nodes(), 0);
        let chosen = placement.map(|p| cache.nodes()[p.node].name.clone());
        assert_eq!(chosen.as_deref(), Ok("n3"));
        cache.assume(owned("web-2", "rs-web"), "n3");
        // Now every free node but n1 has a replica: spread wins over n1 being nearly full.
        let placement = select(&owned("web-3", "rs-web"), cache.nodes(), 0);
        let chosen = placement.map(|p| cache.nodes()[p.node].name.clone());
        assert_eq!(chosen.as_deref(), Ok("n1"));
        // A pod of no owner goes to the least allocated node.
        let placement = select(&PodInfo::from_pod(&pod("x", "1", "1Gi")), cache.nodes(), 0);
        let chosen = placement.map(|p| cache.nodes()[p.node].name.clone());
        assert_ne!(chosen.as_deref(), Ok("n1"));
    }

    #[test]
    fn least_allocated_and_prefer_no_schedule() {
        let mut cache = three_nodes();
        cache.assume(PodInfo::from_pod(&pod("a", "2", "4Gi")), "n1");
        let p = PodInfo::from_pod(&pod("p", "0", "0"));
        let n1 = score(&p, &cache.nodes()[0]);
        let n2 = score(&p, &cache.nodes()[1]);
        assert_eq!(n1.least_allocated, 50);
        assert_eq!(n2.least_allocated, 100);
        assert!(n2 > n1);
        let tainted = NodeInfo::from_node(&node_from(with(
            &node("n4", "4", "8Gi", "110"),
            json!({"spec": {"taints": [{"key": "k", "effect": "PreferNoSchedule"}]}}),
        )));
        assert!(score(&p, &tainted) < score(&p, &cache.nodes()[0]));
        let tolerating = PodInfo::from_pod(&pod_from(with(
            &pod("t", "0", "0"),
            json!({"spec": {"tolerations": [{"key": "k", "operator": "Exists"}]}}),
        )));
        assert_eq!(score(&tolerating, &tainted).prefer_no_schedule, Reverse(0));
    }

    #[test]
    fn no_feasible_node_counts_every_node() {
        let mut cache = three_nodes();
        cache.set_node(&node_from(with(
            &node("n3", "4", "8Gi", "110"),
            json!({"spec": {"unschedulable": true}}),
        )));
        let big = PodInfo::from_pod(&pod("big", "1", "16Gi"));
        let error = match select(&big, cache.nodes(), 0) {
            Ok(p) => panic!("expected no fit, got {p:?}"),
            Err(e) => e,
        };
        assert_eq!(error.num_nodes, 3);
        assert_eq!(error.reasons.get(&Reason::Insufficient("memory")), Some(&2));
        assert_eq!(
            error.to_string(),
            "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient memory."
        );
    }

    #[test]
    fn large_clusters_are_sampled_and_the_walk_rotates() {
        assert_eq!(feasible_nodes_to_find(50), 50);
        assert_eq!(feasible_nodes_to_find(1000), 420);
        assert_eq!(feasible_nodes_to_find(5000), 500);
        assert_eq!(feasible_nodes_to_find(100_000), 5000);
        let mut cache = Cache::new();
        for i in 0..1000 {
            cache.set_node(&node(&format!("n{i}"), "4", "8Gi", "110"));
        }
        let p = PodInfo::from_pod(&pod("p", "1m", "1"));
        let first = select(&p, cache.nodes(), 0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first.next_start, 420);
        let second = select(&p, cache.nodes(), first.next_start).unwrap_or_else(|e| panic!("{e}"));
        assert!(second.node >= 420 && second.node < 840, "{second:?}");
    }
}
