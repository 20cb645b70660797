//! Events the agent emits about pods (Pulling, Pulled, Created, Started, Killing, BackOff,
//! Unhealthy, Failed), core/v1 Events named `<object>.<16 hex>`, and de-duplicated as
//! Kubernetes' recorder does: the same reason and message about the same object bumps the
//! count and lastTimestamp of the existing Event instead of creating another.
//!
//! Events are best-effort: a failure to write one is logged, never returned. They are also off
//! the pod's critical path, as the kubelet's event broadcaster keeps them: [`Recorder::pod`]
//! queues the event (with the time it happened) and returns; a background sender writes the
//! queue in batches, up to [`IN_FLIGHT`] at a time, so a pod's status PATCH does not wait behind
//! its Pulled, Created and Started Events. Within a batch, events that are the same are merged
//! into one write (their count added), and batches go one after the other, so two writes about
//! the same Event are never in flight together.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use api::client::{Api, Client, Patch, PatchParams, PostParams};
use api::core::{Event, EventSource, ObjectReference, Pod};
use api::meta::{ObjectMeta, Time};
use jiff::Timestamp;

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

/// Writes Events for one component on one host, in the background.
pub struct Recorder {
    queue: mpsc::Sender<Pending>,
}

/// A reference to a pod (or one of its containers, when `field_path` names it).
pub fn pod_reference(pod: &Pod, container: Option<&str>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path: container.map(|c| format!("spec.containers{{{c}}}")),
    }
}

/// An Event's name: the object's name, a dot, and 16 hex digits.
pub fn event_name(object: &str) -> String {
    let n: u64 = rand::random();
    format!("{object}.{n:016x}")
}

impl Recorder {
    /// A recorder and its background sender (spawned on the current tokio runtime).
    pub fn new(client: Client, component: &str, host: &str) -> Recorder {
        let (queue, pending) = mpsc::channel(QUEUE);
        let sender = Sender { client, component: component.to_string(), host: host.to_string(), seen: Mutex::new(HashMap::new()) };
        tokio::spawn(send_queued(Arc::new(sender), pending));
        Recorder { queue }
    }

    /// Queues an event about `object`; the background sender writes it.
    pub fn emit(&self, object: ObjectReference, type_: EventType, reason: &str, message: &str) {
        let pending = Pending { object, type_, reason: reason.to_string(), message: message.to_string(), at: Timestamp::now() };
        if let Err(e) = self.queue.try_send(pending) {
            let reason = match &e {
                mpsc::error::TrySendError::Full(p) | mpsc::error::TrySendError::Closed(p) => p.reason.clone(),
            };
            tracing::debug!(reason, "dropping an event: {QUEUE} are waiting to be written already");
        }
    }

    /// Queues an event about a pod, or one of its containers.
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
    host: String,
    seen: Mutex<HashMap<EventKey, (String, String, i32)>>,
}


/// Writes the queue in batches until every [`Recorder`] is gone: the events queued while the
/// previous batch was written, the same ones merged, [`IN_FLIGHT`] at a time.
async fn send_queued(sender: Arc<Sender>, mut pending: mpsc::Receiver<Pending>) {
    use futures::StreamExt;
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

impl Sender {
    /// Writes `event`, which happened `times` times: a new Event, or a bump of the existing one.
    async fn write(&self, event: Pending, times: i32) {
        let key = event_key(&event);
        let Pending { object, type_, reason, message, at } = event;
        let reason = reason.as_str();
        let namespace = object.namespace.clone().unwrap_or_else(|| "default".to_string());
        let now = Time(crate::node::seconds(at));
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let known = self.seen.lock().ok().and_then(|s| s.get(&key).cloned());
        if let Some((ns, name, count)) = known {
            let patch = serde_json::json!({"count": count + times, "lastTimestamp": now});
            let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
                Ok(_) => {
                    if let Ok(mut seen) = self.seen.lock() {
                        seen.insert(key, (ns, name, count + times));
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
        let name = event_name(object.name.as_deref().unwrap_or("unknown"));
        let event = Event {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(namespace.clone()), ..Default::default() },
            involved_object: object,
            reason: Some(reason.to_string()),
            message: Some(message),
            type_: Some(type_.as_str().to_string()),
            source: Some(EventSource { component: Some(self.component.clone()), host: Some(self.host.clone()) }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.host.clone()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(times),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if let Ok(mut seen) = self.seen.lock() {
                    // A bounded cache: old keys only cost a duplicate event once evicted.
                    if seen.len() > 4096 {
                        seen.clear();
                    }
                    seen.insert(key, (namespace, name, times));
                }
            }
            Err(e) => tracing::debug!(error = %e, reason, "cannot create an event"),
        }
    }
}

/// (object uid, field path, reason, message): what makes two events the same, mapped to the
/// existing Event's (namespace, name, count).
type EventKey = (String, String, String, String);

#[cfg(test)]
mod tests {
    use super::*;

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
        let pod = Pod { metadata: ObjectMeta { name: Some("p".into()), uid: Some("u".into()), ..Default::default() }, ..Default::default() };
        let event = |reason: &str, second: i64| Pending {
            object: pod_reference(&pod, Some("app")),
            type_: EventType::Normal,
            reason: reason.to_string(),
            message: "m".to_string(),
            at: Timestamp::from_second(second).expect("ts"),
        };
        let merged = merge_same([event("Pulled", 1), event("Started", 2), event("Pulled", 3)].into_iter());
        let seen: Vec<(&str, i32, i64)> = merged.iter().map(|(e, n)| (e.reason.as_str(), *n, e.at.as_second())).collect();
        assert_eq!(seen, vec![("Pulled", 2, 3), ("Started", 1, 2)]);
    }

    #[test]
    fn container_reference_has_field_path() {
        let pod = Pod { metadata: ObjectMeta { name: Some("p".into()), namespace: Some("ns".into()), uid: Some("u".into()), ..Default::default() }, ..Default::default() };
        let r = pod_reference(&pod, Some("app"));
        assert_eq!(r.field_path.as_deref(), Some("spec.containers{app}"));
        assert_eq!(r.kind.as_deref(), Some("Pod"));
    }
}
