//! Events the agent emits about pods (Pulling, Pulled, Created, Started, Killing, BackOff,
//! Unhealthy, Failed), core/v1 Events named `<object>.<16 hex>`, and de-duplicated as
//! Kubernetes' recorder does: the same reason and message about the same object bumps the
//! count and lastTimestamp of the existing Event instead of creating another.
//!
//! Events are best-effort: a failure to write one is logged, never returned.

use std::collections::HashMap;
use std::sync::Mutex;

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

/// Writes Events for one component on one host.
pub struct Recorder {
    client: Client,
    component: String,
    host: String,
    seen: Mutex<HashMap<EventKey, (String, String, i32)>>,
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
    pub fn new(client: Client, component: &str, host: &str) -> Recorder {
        Recorder { client, component: component.to_string(), host: host.to_string(), seen: Mutex::new(HashMap::new()) }
    }

    /// Records an event about `object`.
    pub async fn emit(&self, object: ObjectReference, type_: EventType, reason: &str, message: &str) {
        let namespace = object.namespace.clone().unwrap_or_else(|| "default".to_string());
        let key = (
            object.uid.clone().unwrap_or_default(),
            object.field_path.clone().unwrap_or_default(),
            reason.to_string(),
            message.to_string(),
        );
        let now = Time(crate::node::seconds(Timestamp::now()));
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let known = self.seen.lock().ok().and_then(|s| s.get(&key).cloned());
        if let Some((ns, name, count)) = known {
            let patch = serde_json::json!({"count": count + 1, "lastTimestamp": now});
            let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
                Ok(_) => {
                    if let Ok(mut seen) = self.seen.lock() {
                        seen.insert(key, (ns, name, count + 1));
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
            message: Some(message.to_string()),
            type_: Some(type_.as_str().to_string()),
            source: Some(EventSource { component: Some(self.component.clone()), host: Some(self.host.clone()) }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.host.clone()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if let Ok(mut seen) = self.seen.lock() {
                    // A bounded cache: old keys only cost a duplicate event once evicted.
                    if seen.len() > 4096 {
                        seen.clear();
                    }
                    seen.insert(key, (namespace, name, 1));
                }
            }
            Err(e) => tracing::debug!(error = %e, reason, "cannot create an event"),
        }
    }

    /// Records an event about a pod, or one of its containers.
    pub async fn pod(&self, pod: &Pod, container: Option<&str>, type_: EventType, reason: &str, message: &str) {
        self.emit(pod_reference(pod, container), type_, reason, message).await
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
    fn container_reference_has_field_path() {
        let pod = Pod { metadata: ObjectMeta { name: Some("p".into()), namespace: Some("ns".into()), uid: Some("u".into()), ..Default::default() }, ..Default::default() };
        let r = pod_reference(&pod, Some("app"));
        assert_eq!(r.field_path.as_deref(), Some("spec.containers{app}"));
        assert_eq!(r.kind.as_deref(), Some("Pod"));
    }
}
