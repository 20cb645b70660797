//! Builders of nodes and pods for the unit tests, from JSON so they read like manifests.

use api::core::{Node, Pod};
use serde_json::{json, Value};

pub(crate) fn node(name: &str, cpu: &str, memory: &str, pods: &str) -> Node {
    node_from(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }))
}

pub(crate) fn node_from(value: Value) -> Node {
    match serde_json::from_value(value) {
        Ok(n) => n,
        Err(e) => panic!("bad test node: {e}"),
    }
}

pub(crate) fn pod(name: &str, cpu: &str, memory: &str) -> Pod {
    pod_from(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"containers": [{
            "name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": cpu, "memory": memory}},
        }]},
    }))
}

pub(crate) fn pod_from(value: Value) -> Pod {
    match serde_json::from_value(value) {
        Ok(p) => p,
        Err(e) => panic!("bad test pod: {e}"),
    }
}

/// Merges `patch` into `base` (JSON merge patch semantics, enough for tests).
pub(crate) fn with(base: &impl serde::Serialize, patch: Value) -> Value {
    let mut value = serde_json::to_value(base).unwrap_or(Value::Null);
    merge(&mut value, patch);
    value
}

fn merge(target: &mut Value, patch: Value) {
    match patch {
        Value::Object(map) => {
            if !target.is_object() {
                *target = json!({});
            }
            for (k, v) in map {
                if let Some(obj) = target.as_object_mut() {
                    merge(obj.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other,
    }
}
