//! Helpers the unit tests of several modules share: typed objects from JSON literals, JSON
//! overlays for variations of one object, and fixed times.

use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// `value` as a typed object; a test's own literal that does not fit is a bug in the test.
pub fn from<T: DeserializeOwned>(value: Value) -> T {
    match serde_json::from_value(value) {
        Ok(object) => object,
        Err(e) => panic!("{e}"),
    }
}

/// Overlays `extra` on `base` as a JSON merge patch does: objects merge key by key, `null`
/// removes a key, anything else replaces.
pub fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                if v.is_null() {
                    b.remove(&k);
                } else {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (b, e) => *b = e,
    }
}

/// An RFC 3339 time written by the test.
pub fn time(rfc3339: &str) -> Timestamp {
    match rfc3339.parse() {
        Ok(t) => t,
        Err(e) => panic!("{rfc3339}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_overlays_removes_and_replaces() {
        let mut base = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        merge(&mut base, json!({"a": {"b": null, "e": 3}, "d": [2]}));
        assert_eq!(base, json!({"a": {"c": 2, "e": 3}, "d": [2]}));
    }
}
