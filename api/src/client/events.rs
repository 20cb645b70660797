//! Recording core/v1 Events as Kubernetes' event recorder does, for every component (node agent,
//! controllers, scheduler): Events named `<object>.<16 hex>`, and the same reason and message
//! about the same object (and field path) bump the `count` and `lastTimestamp` of the Event
//! already written instead of creating another, so `kubectl describe` shows `(x5 over 2m)`.
//!
//! Events are best-effort and off the caller's path, as the kubelet's event broadcaster keeps
//! them: [`Recorder::emit`] queues the event (with the time it happened) and returns; a
//! background sender writes the queue in batches, up to [`IN_FLIGHT`] at a time. Within a batch
//! the events that are the same are merged into one write (their count added), and batches go
//! one after the other, so two writes about the same Event are never in flight together. A
//! failed write is logged, never returned. Cluster-scoped objects' Events go to `default`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use tokio::sync::mpsc;

use super::{Api, Client, Patch, PatchParams, PostParams};

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Events written at once by the background sender.
pub const IN_FLIGHT: usize = 8;
/// Events queued beyond this many are dropped (logged): the apiserver is not keeping up.
pub const QUEUE: usize = 10_000;
/// Past this many remembered Events the memory is cleared (a repeat then starts a new Event).
const MAX_REMEMBERED: usize = 4096;

/// Writes Events for one component (on one host, for node agents), in the background. Cheap to
/// clone; the sender stops when every clone is gone.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Pending>,
}

/// A reference to an object for `involvedObject`.
pub fn object_reference(api_version: &str, kind: &str, meta: &ObjectMeta) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version.to_string()),
        kind: Some(kind.to_string()),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..ObjectReference::default()
    }
}

/// A reference to a pod, or to one of its containers when `container` names it.
pub fn pod_reference(pod: &Pod, container: Option<&str>) -> ObjectReference {
    ObjectReference { field_path: container.map(|c| format!("spec.containers{{{c}}}")), ..object_reference("v1", "Pod", &pod.metadata) }
}

/// An Event's name: the object's name, a dot, and 16 hex digits.
pub fn event_name(object: &str) -> String {
    let n: u64 = rand::random();
    format!("{object}.{n:016x}")
}

impl Recorder {
    /// A recorder and its background sender (spawned on the current tokio runtime). `host` is
    /// the node a node agent runs on (the Event's `source.host`), `None` for cluster components.
    pub fn new(client: Client, component: &str, host: Option<&str>) -> Recorder {
        let (queue, pending) = mpsc::channel(QUEUE);
        let sender = Sender {
            client,
            component: component.to_string(),
            host: host.map(str::to_string),
            seen: Mutex::new(HashMap::new()),
        };
        tokio::spawn(send_queued(Arc::new(sender), pending));
        Recorder { queue }
    }

    /// Queues an Event saying that `reason` happened to `object`, with a human `message`.
    pub fn emit(&self, object: ObjectReference, type_: EventType, reason: &str, message: &str) {
        let pending = Pending { object, type_, reason: reason.to_string(), message: message.to_string(), at: Timestamp::now() };
        if let Err(e) = self.queue.try_send(pending) {
            let reason = match &e {
                mpsc::error::TrySendError::Full(p) | mpsc::error::TrySendError::Closed(p) => p.reason.clone(),
            };
            tracing::debug!(reason, "dropping an event: {QUEUE} are waiting to be written already");
        }
    }

    /// Queues an Event about a pod, or one of its containers.
    pub fn pod(&self, pod: &Pod, container: Option<&str>, type_: EventType, reason: &str, message: &str) {
        self.emit(pod_reference(pod, container), type_, reason, message)
    }
}

/// An event waiting for the background sender.
struct Pending {
    object: ObjectReference,
    type_: EventType,
    reason: String,
    message: String,
    /// When it happened, not when it is written.
    at: Timestamp,
}

/// What the background sender keeps.
struct Sender {
    client: Client,
    component: String,
    host: Option<String>,
    seen: Mutex<HashMap<EventKey, (String, String, i32)>>,
}

/// (object uid, field path, reason, message): what makes two events the same, mapped to the
/// existing Event's (namespace, name, count).
type EventKey = (String, String, String, String);

/// Writes the queue in batches until every [`Recorder`] is gone: the events queued while the
/// previous batch was written, the same ones merged, [`IN_FLIGHT`] at a time.
async fn send_queued(sender: Arc<Sender>, mut pending: mpsc::Receiver<Pending>) {
    let mut batch = Vec::new();
    while pending.recv_many(&mut batch, QUEUE).await > 0 {
        let writes = merge_same(batch.drain(..));
        futures::stream::iter(writes)
            .for_each_concurrent(IN_FLIGHT, |(event, times)| {
                let sender = sender.clone();
                async move { sender.write(event, times).await }
            })
            .await;
    }
}

/// Merges the events of one batch that are the same (see [`EventKey`]) into their first, with
/// how many there were and the time of the last.
fn merge_same(batch: impl Iterator<Item = Pending>) -> Vec<(Pending, i32)> {
    let mut merged: Vec<(Pending, i32)> = Vec::new();
    let mut index: HashMap<EventKey, usize> = HashMap::new();
    for event in batch {
        let key = event_key(&event);
        match index.get(&key) {
            Some(&i) => {
                merged[i].0.at = event.at;
                merged[i].1 += 1;
            }
            None => {
                index.insert(key, merged.len());
                merged.push((event, 1));
            }
        }
    }
    merged
}

fn event_key(event: &Pending) -> EventKey {
    (
        event.object.uid.clone().unwrap_or_default(),
        event.object.field_path.clone().unwrap_or_default(),
        event.reason.clone(),
        event.message.clone(),
    )
}

/// The namespace of an object's Events: its own, or `default` for a cluster-scoped object.
fn event_namespace(object: &ObjectReference) -> String {
    object.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "default".to_string())
}

/// A timestamp truncated to whole seconds, as `Time` carries it.
fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// The Event for a first occurrence, which happened `times` times by `now`.
fn new_event(sender: &Sender, object: ObjectReference, type_: EventType, reason: &str, message: String, now: Time, times: i32) -> Event {
    let namespace = event_namespace(&object);
    Event {
        metadata: ObjectMeta {
            name: Some(event_name(object.name.as_deref().unwrap_or("unknown"))),
            namespace: Some(namespace),
            ..Default::default()
        },
        involved_object: object,
        reason: Some(reason.to_string()),
        message: Some(message),
        type_: Some(type_.as_str().to_string()),
        source: Some(EventSource { component: Some(sender.component.clone()), host: sender.host.clone() }),
        reporting_component: Some(sender.component.clone()),
        reporting_instance: Some(sender.host.clone().unwrap_or_else(|| sender.component.clone())),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(times),
        ..Default::default()
    }
}

impl Sender {
    /// Writes `event`, which happened `times` times: a new Event, or a bump of the existing one.
    async fn write(&self, event: Pending, times: i32) {
        let key = event_key(&event);
        let Pending { object, type_, reason, message, at } = event;
        let reason = reason.as_str();
        let now = Time(whole_seconds(at));
        let known = self.seen.lock().ok().and_then(|s| s.get(&key).cloned());
        if let Some((namespace, name, count)) = known {
            let patch = serde_json::json!({"count": count + times, "lastTimestamp": now});
            let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
                Ok(_) => {
                    if let Ok(mut seen) = self.seen.lock() {
                        seen.insert(key, (namespace, name, count + times));
                    }
                    return;
                }
                // Expired or deleted: write a new one below.
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    tracing::debug!(error = %e, reason, "cannot update an event");
                    return;
                }
            }
        }
        let event = new_event(self, object, type_, reason, message, now, times);
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let name = event.metadata.name.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if let Ok(mut seen) = self.seen.lock() {
                    // A bounded memory: a forgotten key costs one more Event, nothing else.
                    if seen.len() >= MAX_REMEMBERED {
                        seen.clear();
                    }
                    seen.insert(key, (namespace, name, times));
                }
            }
            Err(e) => tracing::debug!(error = %e, reason, "cannot create an event"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta { name: Some("p".into()), namespace: Some("ns".into()), uid: Some("u".into()), ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn names_have_sixteen_hex_digits() {
        let name = event_name("web-1");
        let (object, suffix) = name.rsplit_once('.').expect("dot");
        assert_eq!(object, "web-1");
        assert_eq!(suffix.len(), 16);
        assert!(suffix.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn the_same_events_of_a_batch_are_written_once_with_their_count() {
        let event = |reason: &str, second: i64| Pending {
            object: pod_reference(&pod(), Some("app")),
            type_: EventType::Normal,
            reason: reason.to_string(),
            message: "m".to_string(),
            at: Timestamp::from_second(second).expect("ts"),
        };
        let merged = merge_same([event("Pulled", 1), event("Started", 2), event("Pulled", 3)].into_iter());
        let seen: Vec<(&str, i32, i64)> = merged.iter().map(|(e, n)| (e.reason.as_str(), *n, e.at.as_second())).collect();
        assert_eq!(seen, vec![("Pulled", 2, 3), ("Started", 1, 2)]);
    }

    #[tokio::test]
    async fn first_events_are_named_placed_and_sourced_like_kubernetes() {
        let client = Client::new(crate::client::Config::new(vec!["http://127.0.0.1:9".to_string()])).expect("client");
        let sender = |host: Option<&str>| Sender {
            client: client.clone(),
            component: "node-controller".into(),
            host: host.map(str::to_string),
            seen: Mutex::new(HashMap::new()),
        };
        let node = ObjectMeta { name: Some("node-1".into()), uid: Some("u1".into()), ..Default::default() };
        let now = Time(Timestamp::UNIX_EPOCH);
        let message = "Node node-1 status is now: NodeNotReady".to_string();
        let event = new_event(&sender(None), object_reference("v1", "Node", &node), EventType::Normal, "NodeNotReady", message, now.clone(), 1);
        let name = event.metadata.name.clone().unwrap_or_default();
        assert!(name.starts_with("node-1.") && name.len() == "node-1.".len() + 16, "{name}");
        assert_eq!(event.metadata.namespace.as_deref(), Some("default"));
        assert_eq!((event.type_.as_deref(), event.count), (Some("Normal"), Some(1)));
        assert_eq!(event.source.as_ref().and_then(|s| s.host.clone()), None);
        let value = serde_json::to_value(&event).expect("json");
        assert_eq!(value["firstTimestamp"], "1970-01-01T00:00:00Z");
        let event = new_event(&sender(Some("node-2")), pod_reference(&pod(), None), EventType::Warning, "BackOff", "m".into(), now, 3);
        assert_eq!(event.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(event.source.and_then(|s| s.host).as_deref(), Some("node-2"));
        assert_eq!((event.type_.as_deref(), event.count, event.reporting_instance.as_deref()), (Some("Warning"), Some(3), Some("node-2")));
    }

    #[test]
    fn references_and_namespaces() {
        let r = pod_reference(&pod(), Some("app"));
        assert_eq!(r.field_path.as_deref(), Some("spec.containers{app}"));
        assert_eq!((r.kind.as_deref(), r.api_version.as_deref(), r.uid.as_deref()), (Some("Pod"), Some("v1"), Some("u")));
        assert_eq!(event_namespace(&r), "ns");
        let node = ObjectMeta { name: Some("node-1".into()), uid: Some("u1".into()), ..Default::default() };
        let r = object_reference("v1", "Node", &node);
        assert_eq!((event_namespace(&r), r.field_path), ("default".to_string(), None));
    }
}
