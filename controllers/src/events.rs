//! Recording core/v1 Events the way Kubernetes' event recorder does: one Event per (object,
//! reason, message), named `<object>.<16 hex>`, whose `count` and `lastTimestamp` grow when the
//! same thing happens again.
//!
//! Recording never fails a reconcile: a failed write is logged and dropped, as in Kubernetes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use api::client::{Api, Client, Patch, PatchParams, PostParams};
use api::core::{Event, EventSource, ObjectReference};
use api::meta::{ObjectMeta, Time};

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// Writes Events on behalf of one component (e.g. `node-controller`). Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: String,
    /// (object uid, reason, message) → (namespace, event name, count) of events already written,
    /// so a repeat is a patch of the count rather than a new object.
    seen: Arc<Mutex<Seen>>,
}

/// (object uid, reason, message) → (namespace, event name, count).
type Seen = HashMap<(String, String, String), (String, String, i32)>;

/// Past this many remembered events, the memory is cleared (repeats then start new Events).
const MAX_REMEMBERED: usize = 4096;

impl Recorder {
    pub fn new(client: Client, component: &str) -> Recorder {
        Recorder {
            client,
            component: component.to_string(),
            seen: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Records that `reason` happened to `object`, with a human `message`.
    pub async fn record(
        &self,
        object: &ObjectReference,
        type_: EventType,
        reason: &str,
        message: &str,
    ) {
        let key = (
            object.uid.clone().unwrap_or_default(),
            reason.to_string(),
            message.to_string(),
        );
        let previous = self.seen_lock().get(&key).cloned();
        let now = Time(jiff::Timestamp::now());
        if let Some((namespace, name, count)) = previous {
            let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
            let patch = Patch::Merge(serde_json::json!({
                "count": count + 1,
                "lastTimestamp": now,
            }));
            match api.patch(&name, &PatchParams::default(), &patch).await {
                Ok(_) => {
                    self.seen_lock().insert(key, (namespace, name, count + 1));
                    return;
                }
                Err(error) if error.is_not_found() => {}
                Err(error) => {
                    tracing::warn!(%error, %reason, "cannot update event");
                    return;
                }
            }
        }
        let event = new_event(object, type_, reason, message, &self.component, now);
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let name = event.metadata.name.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                let mut seen = self.seen_lock();
                if seen.len() >= MAX_REMEMBERED {
                    seen.clear();
                }
                seen.insert(key, (namespace, name, 1));
            }
            Err(error) => tracing::warn!(%error, %reason, "cannot record event"),
        }
    }

    fn seen_lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        // Every write is a single insert or clear, so a poisoned map is still consistent.
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
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

/// The Event for a first occurrence. Cluster-scoped objects' events go to `default`, as in
/// Kubernetes.
pub fn new_event(
    object: &ObjectReference,
    type_: EventType,
    reason: &str,
    message: &str,
    component: &str,
    now: Time,
) -> Event {
    let namespace = object
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string());
    let name = format!(
        "{}.{:016x}",
        object.name.as_deref().unwrap_or("unknown"),
        rand::random::<u64>()
    );
    Event {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace),
            ..ObjectMeta::default()
        },
        involved_object: object.clone(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        type_: Some(
            match type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .to_string(),
        ),
        source: Some(EventSource {
            component: Some(component.to_string()),
            host: None,
        }),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_events_are_named_and_placed_like_kubernetes() {
        let node = ObjectMeta {
            name: Some("node-1".into()),
            uid: Some("u1".into()),
            ..ObjectMeta::default()
        };
        let reference = object_reference("v1", "Node", &node);
        let now = Time(jiff::Timestamp::UNIX_EPOCH);
        let event = new_event(
            &reference,
            EventType::Normal,
            "NodeNotReady",
            "Node node-1 status is now: NodeNotReady",
            "node-controller",
            now,
        );
        let name = event.metadata.name.clone().unwrap_or_default();
        let (object, suffix) = name.split_once('.').unwrap_or(("", ""));
        assert_eq!(object, "node-1");
        assert_eq!(suffix.len(), 16);
        assert!(suffix.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(event.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(event.type_.as_deref(), Some("Normal"));
        assert_eq!(event.count, Some(1));
        let value = serde_json::to_value(&event).unwrap_or_default();
        assert_eq!(value["firstTimestamp"], "1970-01-01T00:00:00Z");

        let pod = ObjectMeta {
            name: Some("web".into()),
            namespace: Some("apps".into()),
            ..ObjectMeta::default()
        };
        let event = new_event(
            &object_reference("v1", "Pod", &pod),
            EventType::Warning,
            "x",
            "y",
            "c",
            Time(jiff::Timestamp::UNIX_EPOCH),
        );
        assert_eq!(event.metadata.namespace.as_deref(), Some("apps"));
        assert_eq!(event.type_.as_deref(), Some("Warning"));
    }
}
