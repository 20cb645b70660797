//! Small helpers over objects kept as JSON: metadata fields, timestamps, names.

use serde_json::{json, Value};

pub fn meta(obj: &Value) -> &Value {
    obj.get("metadata").unwrap_or(&Value::Null)
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj).get(field).and_then(Value::as_str).filter(|s| !s.is_empty())
}

pub fn name(obj: &Value) -> Option<&str> {
    meta_str(obj, "name")
}

pub fn resource_version(obj: &Value) -> Option<u64> {
    meta_str(obj, "resourceVersion").and_then(|s| s.parse().ok())
}

pub fn set_meta(obj: &mut Value, field: &str, value: Value) {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    if value.is_null() {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove(field);
        }
    } else {
        obj["metadata"][field] = value;
    }
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)
        .get("finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

pub fn is_deleting(obj: &Value) -> bool {
    meta_str(obj, "deletionTimestamp").is_some()
}

/// Everything but metadata and status: what a change of bumps `metadata.generation`.
pub fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    v
}

/// RFC 3339 with second precision, as Kubernetes writes `metav1.Time`.
pub fn timestamp(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn now() -> String {
    timestamp(jiff::Timestamp::now())
}

pub fn now_plus(seconds: i64) -> String {
    let t = jiff::Timestamp::now();
    let later = t.checked_add(jiff::SignedDuration::from_secs(seconds)).unwrap_or(t);
    timestamp(later)
}

/// The suffix kube-apiserver appends to `generateName`: five characters from an alphabet
/// without vowels or look-alikes.
pub fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_helpers() {
        let mut o = json!({"metadata": {"name": "a", "resourceVersion": "12", "finalizers": ["x"]}, "spec": {"r": 1}, "status": {}});
        assert_eq!(name(&o), Some("a"));
        assert_eq!(resource_version(&o), Some(12));
        assert_eq!(finalizers(&o), vec!["x".to_string()]);
        assert!(!is_deleting(&o));
        set_meta(&mut o, "deletionTimestamp", json!("2026-01-01T00:00:00Z"));
        assert!(is_deleting(&o));
        set_meta(&mut o, "deletionTimestamp", Value::Null);
        assert!(!is_deleting(&o));
        assert_eq!(spec_part(&o), json!({"spec": {"r": 1}}));
        let mut bare = json!({});
        set_meta(&mut bare, "name", json!("b"));
        assert_eq!(name(&bare), Some("b"));
        assert_eq!(resource_version(&json!({"metadata": {"resourceVersion": "x"}})), None);
    }

    #[test]
    fn suffix_and_time() {
        let s = random_suffix();
        assert_eq!(s.len(), 5);
        assert!(s.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        let t = now();
        assert!(t.ends_with('Z') && t.len() == 20, "{t}");
    }
}
