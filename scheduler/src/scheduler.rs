//! The scheduling loop: watches nodes and pods, keeps the [`Cache`] and the [`Queue`], decides
//! one pod at a time with [`select`], and writes the bindings.
//!
//! One task owns all state, so decisions need no locks and each sees every earlier one: a pod is
//! assumed on its node the moment it is chosen, before its binding is sent. The [`binder`]
//! sends bindings in batches and reports each pod's outcome back over a channel; a failed one is
//! forgotten and the pod is tried again. Status updates and Events are written on the side, off
//! the bindings' path, a few at a time: `Scheduled` Events queue (up to `EVENT_BACKLOG`), wait
//! (up to `EVENT_MAX_DEFER`) while bindings are being written, since both compete for the same
//! Raft log, and are retried when the apiserver is busy rather than dropped, so every one is
//! written. `FailedScheduling` Events, which repeat for a pod at every retry, go through the
//! shared recorder (`api::client::events`) instead, which counts repeats on one Event as
//! Kubernetes does (`kubectl describe` shows `(x5 over 2m)`).
//!
//! [`binder`]: crate::binder

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::client::bindings::BindError;
use api::client::events::{event_name, object_reference, EventType, Recorder};
use api::client::watcher::{watcher, Event as WatchEvent};
use api::client::{Api, Client, ClientError, ListParams, Patch, PatchParams, PostParams};
use api::core::{Event, EventSource, Node, ObjectReference, Pod};
use api::meta::{ObjectMeta, Time};
use futures::{FutureExt as _, StreamExt as _};
use serde_json::json;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::binder::{self, Assignment, BinderOptions, Bound};
use crate::cache::{is_terminated, key_of, Cache, PodInfo, PodKey};
use crate::queue::Queue;
use crate::score::select;

/// The name pods ask for in `spec.schedulerName` (also the default when it is empty).
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// How the loop behaves.
#[derive(Clone, Debug)]
pub struct Options {
    /// Pods whose `spec.schedulerName` is another are left alone.
    pub scheduler_name: String,
    /// Per-pod binding requests in flight at once, against an apiserver without the bulk
    /// binding route.
    pub bind_concurrency: usize,
    /// Pods per bulk binding request at most (the apiserver takes up to 1,000); 0 binds pods
    /// one by one through `pods/NAME/binding`.
    pub bind_batch: usize,
    /// Bulk binding requests in flight at once.
    pub bind_batches: usize,
}

impl Options {
    /// Pods assumed but not yet bound at most: enough for every request slot to be full and the
    /// next batch to gather meanwhile.
    fn max_in_flight(&self) -> usize {
        let bulk = self.bind_batch.max(1) * (self.bind_batches.max(1) + 1);
        bulk.max(self.bind_concurrency).max(1)
    }

    fn binder(&self) -> BinderOptions {
        BinderOptions {
            batch: self.bind_batch,
            batches: self.bind_batches.max(1),
            per_pod: self.bind_concurrency.max(1),
            ..BinderOptions::default()
        }
    }
}

/// Why the loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("the watch of {what} ended; restart the scheduler")]
    WatchEnded { what: &'static str },
}

impl Default for Options {
    fn default() -> Options {
        Options {
            scheduler_name: DEFAULT_SCHEDULER_NAME.to_string(),
            bind_concurrency: 128,
            bind_batch: BinderOptions::default().batch,
            bind_batches: BinderOptions::default().batches,
        }
    }
}

/// Schedules until a watch ends for good (the watcher retries errors by itself, so in practice
/// until the future is dropped, e.g. when leadership is lost).
pub async fn run(client: Client, options: Options) -> Result<(), SchedulerError> {
    let mut nodes = watcher(Api::<Node>::all(client.clone()), ListParams::default());
    let mut pods = watcher(Api::<Pod>::all(client.clone()), ListParams::default());
    let (bind_tx, mut bind_rx) = mpsc::unbounded_channel();
    let (assign_tx, assign_rx) = mpsc::unbounded_channel();
    let (busy_tx, busy_rx) = watch::channel(0);
    let binder = tokio::spawn(binder::run(
        client.clone(),
        options.binder(),
        assign_rx,
        bind_tx,
        busy_tx,
    ));
    let side = Arc::new(Semaphore::new(SIDE_WRITES));
    let (event_tx, event_rx) = mpsc::channel(EVENT_BACKLOG);
    let event_writer = tokio::spawn(write_events(
        client.clone(),
        event_rx,
        side.clone(),
        busy_rx,
    ));
    let recorder = Recorder::new(client.clone(), DEFAULT_SCHEDULER_NAME, None);
    let mut state = State::new(client, options, assign_tx, event_tx, side, recorder);
    let result = 'main: loop {
        let now = Instant::now();
        state.queue.flush(now);
        if state.changed && now >= state.last_change_flush + CHANGE_COALESCE {
            state.queue.cluster_changed();
            state.changed = false;
            state.last_change_flush = now;
        }
        for _ in 0..SCHEDULE_BATCH {
            if !state.can_schedule() {
                break;
            }
            state.schedule_next();
        }
        let mut wake = state.queue.next_due();
        if state.changed {
            let flush_at = state.last_change_flush + CHANGE_COALESCE;
            wake = Some(wake.map_or(flush_at, |w| w.min(flush_at)));
        }
        let can_schedule = state.can_schedule();
        tokio::select! {
            biased;
            Some(done) = bind_rx.recv() => {
                state.on_bound(done);
                while let Ok(done) = bind_rx.try_recv() {
                    state.on_bound(done);
                }
            }
            event = nodes.next() => match event {
                Some(Ok(event)) => state.on_node_event(event),
                Some(Err(error)) => tracing::warn!(%error, "watching nodes failed, retrying"),
                None => break 'main Err(SchedulerError::WatchEnded { what: "nodes" }),
            },
            event = pods.next() => {
                let mut event = event;
                // Take what has already arrived in one go: handling an event costs microseconds.
                for _ in 0..EVENT_BATCH {
                    match event {
                        Some(Ok(e)) => state.on_pod_event(e),
                        Some(Err(error)) => tracing::warn!(%error, "watching pods failed, retrying"),
                        None => break 'main Err(SchedulerError::WatchEnded { what: "pods" }),
                    }
                    match pods.next().now_or_never() {
                        Some(next) => event = next,
                        None => break,
                    }
                }
            }
            () = sleep_until(wake), if wake.is_some() => {}
            () = std::future::ready(()), if can_schedule => {}
        }
    };
    event_writer.abort();
    binder.abort();
    result
}

/// At most this many Event creations and status updates in flight: few, so that they do not
/// take the apiserver's capacity from bindings (Events lag instead).
const SIDE_WRITES: usize = 16;
/// Events waiting to be written; beyond that they are dropped, as a last resort against a
/// scheduler outrunning a stalled apiserver without bound (ten bulk batches' worth of pods).
const EVENT_BACKLOG: usize = 100_000;
/// Tries of one Event creation when the apiserver is busy or unreachable.
const EVENT_TRIES: u32 = 5;
/// How long an Event may wait for the bindings in flight to be written before it is written
/// anyway: a burst of bindings goes first, a steady stream does not starve the Events.
const EVENT_MAX_DEFER: Duration = Duration::from_secs(5);
/// Decisions per turn of the loop before looking at events again.
const SCHEDULE_BATCH: usize = 64;
/// Watch events handled per turn when they are already there.
const EVENT_BATCH: usize = 512;
/// Cluster changes re-queue unschedulable pods at most this often.
const CHANGE_COALESCE: Duration = Duration::from_secs(1);
/// Wait before retrying a pod whose binding failed.
const BIND_RETRY: Duration = Duration::from_secs(1);

struct State {
    client: Client,
    options: Options,
    cache: Cache,
    queue: Queue,
    /// Pods this scheduler should place, as last seen.
    pending: HashMap<PodKey, Pending>,
    /// Where the next decision starts its walk over the nodes.
    start: usize,
    in_flight: usize,
    assign_tx: mpsc::UnboundedSender<Assignment>,
    event_tx: mpsc::Sender<Event>,
    side: Arc<Semaphore>,
    /// For FailedScheduling Events (repeats counted).
    recorder: Recorder,
    /// A node or a pod's placement changed since the last re-queue of unschedulable pods.
    changed: bool,
    last_change_flush: Instant,
    /// Both watches have delivered their first list: before that, a decision would see a
    /// partial cluster (and call a pod unschedulable for want of nodes not listed yet).
    nodes_synced: bool,
    pods_synced: bool,
}

struct Pending {
    info: PodInfo,
    /// The message of the pod's PodScheduled=False condition, to skip rewriting the same one.
    unschedulable_message: Option<String>,
}

impl State {
    fn new(
        client: Client,
        options: Options,
        assign_tx: mpsc::UnboundedSender<Assignment>,
        event_tx: mpsc::Sender<Event>,
        side: Arc<Semaphore>,
        recorder: Recorder,
    ) -> State {
        State {
            client,
            options,
            cache: Cache::new(),
            queue: Queue::new(),
            pending: HashMap::new(),
            start: 0,
            in_flight: 0,
            assign_tx,
            event_tx,
            side,
            recorder,
            changed: false,
            last_change_flush: Instant::now(),
            nodes_synced: false,
            pods_synced: false,
        }
    }

    fn can_schedule(&self) -> bool {
        self.nodes_synced
            && self.pods_synced
            && self.in_flight < self.options.max_in_flight()
            && self.queue.has_active()
    }

    fn wants(&self, pod: &Pod) -> bool {
        let Some(spec) = pod.spec.as_ref() else {
            return false;
        };
        let scheduler = spec
            .scheduler_name
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_SCHEDULER_NAME);
        spec.node_name.as_deref().unwrap_or_default().is_empty()
            && scheduler == self.options.scheduler_name
            && pod.metadata.deletion_timestamp.is_none()
            && !is_terminated(pod)
    }

    fn on_pod_event(&mut self, event: WatchEvent<Pod>) {
        match event {
            WatchEvent::Applied(pod) => self.apply_pod(&pod),
            WatchEvent::Deleted(pod) => {
                let key = key_of(&pod);
                self.pending.remove(&key);
                self.queue.remove(&key);
                if self.cache.remove_pod(&key) {
                    self.changed = true;
                }
            }
            WatchEvent::Restarted(pods) => {
                let listed: std::collections::HashSet<PodKey> = pods.iter().map(key_of).collect();
                let gone: Vec<PodKey> = self
                    .pending
                    .keys()
                    .filter(|k| !listed.contains(*k))
                    .cloned()
                    .collect();
                for key in gone {
                    self.pending.remove(&key);
                    self.queue.remove(&key);
                }
                self.cache.reset_pods(&pods);
                for pod in &pods {
                    self.track(pod);
                }
                self.changed = true;
                self.pods_synced = true;
            }
        }
    }

    fn apply_pod(&mut self, pod: &Pod) {
        self.track(pod);
        if self.cache.update_pod(pod) {
            self.changed = true;
        }
    }

    /// Keeps `pending` and the queue in step with one pod.
    fn track(&mut self, pod: &Pod) {
        let key = key_of(pod);
        if self.wants(pod) {
            let unschedulable_message = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
                .filter(|c| c.status == "False")
                .and_then(|c| c.message.clone());
            self.pending.insert(
                key.clone(),
                Pending {
                    info: PodInfo::from_pod(pod),
                    unschedulable_message,
                },
            );
            if !self.cache.is_assumed(&key) {
                self.queue.push(&key);
            }
        } else {
            self.pending.remove(&key);
            self.queue.remove(&key);
        }
    }

    fn on_node_event(&mut self, event: WatchEvent<Node>) {
        match event {
            WatchEvent::Applied(node) => self.cache.set_node(&node),
            WatchEvent::Deleted(node) => {
                self.cache
                    .remove_node(node.metadata.name.as_deref().unwrap_or_default());
            }
            WatchEvent::Restarted(nodes) => {
                self.cache.reset_nodes(&nodes);
                self.nodes_synced = true;
            }
        }
        self.changed = true;
    }

    fn schedule_next(&mut self) {
        let Some(key) = self.queue.pop() else {
            return;
        };
        if self.cache.is_assumed(&key) {
            return;
        }
        let Some(pending) = self.pending.get_mut(&key) else {
            return;
        };
        match select(&pending.info, self.cache.nodes(), self.start) {
            Ok(placement) => {
                self.start = placement.next_start;
                let node = self.cache.nodes()[placement.node].name.clone();
                let info = pending.info.clone();
                tracing::debug!(pod = %key, %node, "assigning");
                self.cache.assume(info.clone(), &node);
                if self.assign_tx.send(Assignment { pod: info, node }).is_err() {
                    // The binder is gone only when the loop is stopping; nothing will be bound.
                    tracing::debug!(pod = %key, "the binder has stopped");
                    self.cache.forget(&key);
                    return;
                }
                self.in_flight += 1;
            }
            Err(fit) => {
                let message = fit.to_string();
                let backoff = self.queue.unschedulable(&key, Instant::now());
                tracing::info!(pod = %key, %message, ?backoff, "no node fits the pod");
                let info = &pending.info;
                if pending.unschedulable_message.as_deref() != Some(message.as_str()) {
                    pending.unschedulable_message = Some(message.clone());
                    tokio::spawn(set_unschedulable(
                        self.client.clone(),
                        info.namespace.clone(),
                        info.name.clone(),
                        message.clone(),
                        self.side.clone(),
                    ));
                }
                self.recorder.emit(
                    pod_reference(&info.namespace, &info.name, &info.uid),
                    EventType::Warning,
                    "FailedScheduling",
                    &message,
                );
            }
        }
    }

    fn on_bound(&mut self, done: Bound) {
        self.in_flight = self.in_flight.saturating_sub(1);
        match done.result {
            Ok(()) => {
                let message = format!(
                    "Successfully assigned {}/{} to {}",
                    done.namespace, done.name, done.node
                );
                self.emit(scheduled_event(&done.namespace, &done.name, &done.uid, &message));
            }
            Err(error) => {
                // A 409 is the usual race (bound elsewhere, being deleted, re-created): the
                // watch brings the pod's new state, and it is tried again only if still pending.
                let conflict = matches!(&*error, BindError::Client(e) if e.is_conflict());
                if conflict {
                    tracing::debug!(pod = %done.key, node = %done.node, %error, "binding refused, will look again");
                } else {
                    tracing::warn!(pod = %done.key, node = %done.node, %error, "binding failed, will retry");
                }
                self.cache.forget(&done.key);
                self.changed = true;
                if self.pending.contains_key(&done.key) {
                    self.queue
                        .retry_after(&done.key, Instant::now(), BIND_RETRY);
                }
            }
        }
    }

    fn emit(&self, event: Event) {
        if self.event_tx.try_send(event).is_err() {
            tracing::debug!("event backlog full, dropping an event");
        }
    }
}

async fn sleep_until(wake: Option<Instant>) {
    if let Some(wake) = wake {
        tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
    }
}

/// PodScheduled=False, reason Unschedulable, through pods/status.
async fn set_unschedulable(
    client: Client,
    namespace: String,
    name: String,
    message: String,
    side: Arc<Semaphore>,
) {
    let Ok(_permit) = side.acquire_owned().await else {
        return;
    };
    let patch = Patch::Strategic(json!({
        "status": {"conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": jiff::Timestamp::now().to_string(),
        }]}
    }));
    let api = Api::<Pod>::namespaced(client, &namespace);
    if let Err(error) = api
        .patch_status(&name, &PatchParams::default(), &patch)
        .await
    {
        if !error.is_not_found() {
            tracing::warn!(pod = %format!("{namespace}/{name}"), %error, "cannot set PodScheduled=False");
        }
    }
}

/// An Event about a pod, as kube-scheduler writes them.
/// The `involvedObject` of a pod's Events (Scheduled and FailedScheduling alike).
fn pod_reference(namespace: &str, name: &str, uid: &str) -> ObjectReference {
    let meta = ObjectMeta {
        namespace: Some(namespace.to_string()),
        name: Some(name.to_string()),
        uid: Some(uid.to_string()).filter(|u| !u.is_empty()),
        ..ObjectMeta::default()
    };
    object_reference("v1", "Pod", &meta)
}

/// The `Scheduled` Event of a bound pod, for the scheduler's own deferred writer.
fn scheduled_event(namespace: &str, name: &str, uid: &str, message: &str) -> Event {
    let now = jiff::Timestamp::now();
    Event {
        metadata: ObjectMeta {
            name: Some(event_name(name)),
            namespace: Some(namespace.to_string()),
            ..ObjectMeta::default()
        },
        involved_object: pod_reference(namespace, name, uid),
        reason: Some("Scheduled".to_string()),
        message: Some(message.to_string()),
        type_: Some(EventType::Normal.as_str().to_string()),
        source: Some(EventSource {
            component: Some(DEFAULT_SCHEDULER_NAME.to_string()),
            host: None,
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..Event::default()
    }
}

/// Writes queued Events, a bounded number at a time, after the bindings in flight (`busy`
/// counts them) or once `EVENT_MAX_DEFER` old, retrying those the apiserver was too busy (or too
/// far) to take.
async fn write_events(
    client: Client,
    mut events: mpsc::Receiver<Event>,
    side: Arc<Semaphore>,
    mut busy: watch::Receiver<usize>,
) {
    while let Some(event) = events.recv().await {
        let queued = event.first_timestamp.as_ref().map(|t| t.0);
        let age = queued
            .map(|t| {
                t.duration_until(jiff::Timestamp::now())
                    .as_secs_f64()
                    .max(0.0)
            })
            .unwrap_or(0.0);
        let left = EVENT_MAX_DEFER.saturating_sub(Duration::from_secs_f64(age));
        // A closed channel (binder gone) or the time running out both mean: write it now.
        let _ = tokio::time::timeout(left, busy.wait_for(|n| *n == 0)).await;
        let Ok(permit) = side.clone().acquire_owned().await else {
            return;
        };
        let client = client.clone();
        tokio::spawn(async move {
            let namespace = event.metadata.namespace.clone().unwrap_or_default();
            let api = Api::<Event>::namespaced(client, &namespace);
            for attempt in 1..=EVENT_TRIES {
                match api.create(&PostParams::default(), &event).await {
                    Ok(_) => break,
                    // an earlier try that timed out did get through
                    Err(error) if attempt > 1 && error.is_already_exists() => break,
                    Err(error) if attempt < EVENT_TRIES && retriable(&error) => {
                        tracing::debug!(%error, attempt, "cannot write an event yet, retrying");
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot write an event, dropping it");
                        break;
                    }
                }
            }
            drop(permit);
        });
    }
}

/// Whether trying again later may succeed: the server was busy, failing or unreachable.
fn retriable(error: &ClientError) -> bool {
    match error.status_code() {
        Some(code) => code == 429 || code >= 500,
        None => matches!(
            error,
            ClientError::Connect { .. } | ClientError::Read { .. }
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testutil::{node, pod, pod_from, with};

    /// A client whose every request fails at once: nothing listens on its port.
    async fn unreachable_client() -> Client {
        let port = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l.local_addr().map(|a| a.port()).unwrap_or(1),
            Err(e) => panic!("{e}"),
        };
        match Client::new(api::client::Config::new(vec![format!(
            "http://127.0.0.1:{port}"
        )])) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn a_chosen_pod_is_assumed_at_once_and_forgotten_when_its_binding_fails() {
        let (bind_tx, mut bind_rx) = mpsc::unbounded_channel();
        let (assign_tx, assign_rx) = mpsc::unbounded_channel();
        let (event_tx, _event_rx) = mpsc::channel(16);
        let client = unreachable_client().await;
        let options = Options::default();
        let (busy, _) = watch::channel(0);
        let binder = tokio::spawn(binder::run(
            client.clone(),
            options.binder(),
            assign_rx,
            bind_tx,
            busy,
        ));
        let recorder = Recorder::new(client.clone(), DEFAULT_SCHEDULER_NAME, None);
        let mut state = State::new(
            client,
            options,
            assign_tx,
            event_tx,
            Arc::new(Semaphore::new(1)),
            recorder,
        );
        state.on_pod_event(WatchEvent::Restarted(vec![
            pod("a", "600m", "1Mi"),
            pod("b", "600m", "1Mi"),
            // Another scheduler's pod and a bound pod are not queued.
            pod_from(with(
                &pod("c", "1m", "1"),
                json!({"spec": {"schedulerName": "other"}}),
            )),
            pod_from(with(
                &pod("d", "1m", "1"),
                json!({"spec": {"nodeName": "n1"}}),
            )),
        ]));
        assert_eq!(state.pending.len(), 2);
        assert!(
            !state.can_schedule(),
            "no decision before the nodes are listed"
        );
        state.on_node_event(WatchEvent::Restarted(vec![node("n1", "1", "1Gi", "110")]));
        assert!(state.can_schedule());
        state.schedule_next();
        assert!(state.cache.is_assumed("default/a"));
        assert_eq!(state.in_flight, 1);
        // b no longer fits next to the assumed a.
        state.schedule_next();
        assert!(!state.cache.is_assumed("default/b"));
        let why = state.pending.get("default/b").and_then(|p| p.unschedulable_message.clone());
        assert!(why.is_some_and(|m| m.starts_with("0/1 nodes are available")), "b is marked unschedulable");

        let done = match tokio::time::timeout(Duration::from_secs(10), bind_rx.recv()).await {
            Ok(Some(done)) => done,
            other => panic!("expected a binding result, got {}", other.is_ok()),
        };
        assert!(done.result.is_err());
        state.on_bound(done);
        assert!(!state.cache.is_assumed("default/a"));
        assert_eq!(state.in_flight, 0);
        assert_eq!(state.cache.node("n1").map(|n| n.requested.pods), Some(1));
        // a waits out the retry delay before it is tried again.
        assert!(!state.queue.has_active());
        state.queue.flush(Instant::now() + BIND_RETRY);
        assert_eq!(state.queue.pop().as_deref(), Some("default/a"));
        binder.abort();
    }
}
