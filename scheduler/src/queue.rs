//! The scheduling queue: pods waiting for a decision, first in first out, and pods that found no
//! node, waiting out a back-off (10 s doubling to 60 s) or until the cluster changes in a way that
//! may make room (a node added or changed, a pod gone from a node).
//!
//! Time is passed in, so the queue is tested without sleeping.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::cache::PodKey;

/// First back-off of an unschedulable pod.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
/// Longest back-off of an unschedulable pod.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Queue {
    /// May hold keys no longer active (removed, or queued twice); `active` is the truth.
    order: VecDeque<PodKey>,
    active: HashSet<PodKey>,
    waiting: HashMap<PodKey, Waiting>,
    /// The waiting pods by due time, so the next one is found without a scan.
    due: BTreeSet<(Instant, PodKey)>,
    /// Failed attempts per pod, for the back-off; cleared when the pod leaves the queue.
    attempts: HashMap<PodKey, u32>,
}

#[derive(Debug, Clone, Copy)]
struct Waiting {
    until: Instant,
    /// Moved back at once by a cluster change (unschedulable), or only by time (a failed bind).
    on_change: bool,
}

impl Queue {
    pub fn new() -> Queue {
        Queue::default()
    }

    /// Queues a pod for a decision, unless it is queued already or waiting out a back-off.
    pub fn push(&mut self, key: &str) {
        if self.active.contains(key) || self.waiting.contains_key(key) {
            return;
        }
        self.active.insert(key.to_string());
        self.order.push_back(key.to_string());
    }

    /// The next pod to decide on.
    pub fn pop(&mut self) -> Option<PodKey> {
        while let Some(key) = self.order.pop_front() {
            if self.active.remove(&key) {
                return Some(key);
            }
        }
        None
    }

    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    pub fn len(&self) -> usize {
        self.active.len() + self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pod fit no node: wait 10 s, 20 s, 40 s, then 60 s per further attempt, or until
    /// [`Queue::cluster_changed`]. Returns the back-off chosen.
    pub fn unschedulable(&mut self, key: &str, now: Instant) -> Duration {
        let attempts = self.attempts.entry(key.to_string()).or_insert(0);
        *attempts += 1;
        let backoff = INITIAL_BACKOFF
            .saturating_mul(1u32 << (*attempts - 1).min(8))
            .min(MAX_BACKOFF);
        self.wait(key, now + backoff, true);
        backoff
    }

    /// Try the pod again after `delay` (after a failed binding), whatever changes meanwhile.
    pub fn retry_after(&mut self, key: &str, now: Instant, delay: Duration) {
        self.wait(key, now + delay, false);
    }

    /// The pod is bound or gone: forget it.
    pub fn remove(&mut self, key: &str) {
        self.active.remove(key);
        self.unwait(key);
        self.attempts.remove(key);
    }

    /// When the next waiting pod is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.first().map(|(until, _)| *until)
    }

    /// Moves pods whose wait is over back to the queue.
    pub fn flush(&mut self, now: Instant) {
        while let Some((until, key)) = self.due.first().cloned() {
            if until > now {
                break;
            }
            self.unwait(&key);
            self.push(&key);
        }
    }

    /// Something changed that may make unschedulable pods fit: queue them all again.
    pub fn cluster_changed(&mut self) {
        let moved: Vec<PodKey> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.on_change)
            .map(|(k, _)| k.clone())
            .collect();
        for key in moved {
            self.unwait(&key);
            self.push(&key);
        }
    }

    fn wait(&mut self, key: &str, until: Instant, on_change: bool) {
        self.active.remove(key);
        self.unwait(key);
        self.waiting
            .insert(key.to_string(), Waiting { until, on_change });
        self.due.insert((until, key.to_string()));
    }

    fn unwait(&mut self, key: &str) {
        if let Some(waiting) = self.waiting.remove(key) {
            self.due.remove(&(waiting.until, key.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_in_first_out_without_duplicates() {
        let mut q = Queue::new();
        q.push("a");
        q.push("b");
        q.push("a");
        q.remove("b");
        q.push("c");
        assert_eq!(q.pop().as_deref(), Some("a"));
        assert_eq!(q.pop().as_deref(), Some("c"));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn unschedulable_pods_back_off_from_10_to_60_seconds() {
        let mut q = Queue::new();
        let now = Instant::now();
        let secs: Vec<u64> = (0..5)
            .map(|_| q.unschedulable("a", now).as_secs())
            .collect();
        assert_eq!(secs, [10, 20, 40, 60, 60]);
        q.push("a");
        assert_eq!(q.pop(), None, "a waiting pod is not queued by a plain push");
        assert_eq!(q.next_due(), Some(now + Duration::from_secs(60)));
        q.flush(now + Duration::from_secs(59));
        assert_eq!(q.pop(), None);
        q.flush(now + Duration::from_secs(60));
        assert_eq!(q.pop().as_deref(), Some("a"));
    }

    #[test]
    fn a_cluster_change_requeues_unschedulable_but_not_failed_bindings() {
        let mut q = Queue::new();
        let now = Instant::now();
        q.unschedulable("a", now);
        q.retry_after("b", now, Duration::from_secs(1));
        q.cluster_changed();
        assert_eq!(q.pop().as_deref(), Some("a"));
        assert_eq!(q.pop(), None);
        q.flush(now + Duration::from_secs(1));
        assert_eq!(q.pop().as_deref(), Some("b"));
        assert!(q.next_due().is_none());
    }
}
