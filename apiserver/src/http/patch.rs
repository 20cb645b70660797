//! The three patch formats kubectl and controllers send: JSON merge patch (RFC 7386), JSON patch
//! (RFC 6902) and Kubernetes' strategic merge patch.
//!
//! Merge and JSON patch come from the `json-patch` crate. Strategic merge patch is written here:
//! no maintained Rust crate implements it, and kubectl's `apply` depends on it. It follows the
//! rules of Kubernetes' `strategicpatch` package for the fields Flotilla serves: maps merge
//! recursively, `null` deletes, lists of objects with a merge key (containers by `name`, ports
//! by `containerPort` or `port`, volumeMounts by `mountPath`, ...) merge element-wise, other
//! lists are replaced, and the directives `$patch` (replace, delete, merge), `$retainKeys`,
//! `$setElementOrder/FIELD` and `$deleteFromPrimitiveList/FIELD` are honoured.

use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("the patch is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unable to apply the JSON patch: {0}")]
    JsonPatch(String),
    #[error("a {0} patch must be a JSON object")]
    NotAnObject(&'static str),
    #[error("strategic merge patch: {0}")]
    Strategic(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }

    pub const ACCEPTED: &'static [&'static str] = &[
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
    ];
}

/// Applies a patch of the given type to `original`, returning the patched document.
pub fn apply(kind: PatchType, original: &Value, body: &[u8]) -> Result<Value, PatchError> {
    match kind {
        PatchType::Json => {
            let p: json_patch::Patch = serde_json::from_slice(body)?;
            let mut doc = original.clone();
            json_patch::patch(&mut doc, &p).map_err(|e| PatchError::JsonPatch(e.to_string()))?;
            Ok(doc)
        }
        PatchType::Merge => {
            let p: Value = serde_json::from_slice(body)?;
            if !p.is_object() {
                return Err(PatchError::NotAnObject("merge"));
            }
            let mut doc = original.clone();
            json_patch::merge(&mut doc, &p);
            Ok(doc)
        }
        PatchType::Strategic => {
            let p: Value = serde_json::from_slice(body)?;
            strategic_merge(original, &p)
        }
        PatchType::Apply => Err(PatchError::Strategic(
            "server-side apply is not supported; use client-side `apply` (the default of kubectl and ctl)".into(),
        )),
    }
}

/// Kubernetes' strategic merge of `patch` into `original`.
pub fn strategic_merge(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Object(p) = patch else {
        return Err(PatchError::NotAnObject("strategic merge"));
    };
    let o = match original {
        Value::Object(o) => o.clone(),
        _ => Map::new(),
    };
    Ok(merge_map(o, p)?.map(Value::Object).unwrap_or(Value::Null))
}

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const ORDER_PREFIX: &str = "$setElementOrder/";
const DELETE_PRIMITIVE_PREFIX: &str = "$deleteFromPrimitiveList/";

/// The merge key of a list field, by field name; `ports` depends on what it holds.
fn merge_key(field: &str, sample: &[Value]) -> Option<&'static str> {
    Some(match field {
        "containers" | "initContainers" | "ephemeralContainers" | "env" | "volumes" | "imagePullSecrets" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        "addresses" => "type",
        "ports" => {
            if sample.iter().any(|v| v.get("containerPort").is_some()) {
                "containerPort"
            } else {
                "port"
            }
        }
        _ => return None,
    })
}

/// Lists of scalars that merge (union) rather than replace.
fn merges_primitives(field: &str) -> bool {
    matches!(field, "finalizers")
}

/// Returns None when the patch deletes the whole map.
fn merge_map(mut orig: Map<String, Value>, patch: &Map<String, Value>) -> Result<Option<Map<String, Value>>, PatchError> {
    match patch.get(DIRECTIVE).and_then(Value::as_str) {
        Some("delete") => return Ok(None),
        Some("replace") => {
            let mut m = patch.clone();
            m.remove(DIRECTIVE);
            return Ok(Some(strip_directives(m)));
        }
        Some("merge") | None => {}
        Some(other) => return Err(PatchError::Strategic(format!("unknown $patch directive {other:?}"))),
    }
    for (k, pv) in patch {
        if k == DIRECTIVE || k == RETAIN_KEYS || k.starts_with(ORDER_PREFIX) {
            continue;
        }
        if let Some(field) = k.strip_prefix(DELETE_PRIMITIVE_PREFIX) {
            let remove = pv.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(list)) = orig.get_mut(field) {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        match pv {
            Value::Null => {
                orig.remove(k);
            }
            Value::Object(pm) => {
                let base = match orig.remove(k) {
                    Some(Value::Object(om)) => om,
                    _ => Map::new(),
                };
                if let Some(m) = merge_map(base, pm)? {
                    orig.insert(k.clone(), Value::Object(m));
                }
            }
            Value::Array(pl) => {
                let base = match orig.remove(k) {
                    Some(Value::Array(ol)) => ol,
                    _ => Vec::new(),
                };
                let order = patch.get(&format!("{ORDER_PREFIX}{k}")).and_then(Value::as_array);
                let merged = merge_list(k, base, pl, order)?;
                orig.insert(k.clone(), Value::Array(merged));
            }
            scalar => {
                orig.insert(k.clone(), scalar.clone());
            }
        }
    }
    // a $setElementOrder without the list itself still reorders
    for (k, order) in patch {
        if let Some(field) = k.strip_prefix(ORDER_PREFIX) {
            if patch.contains_key(field) {
                continue;
            }
            if let (Some(Value::Array(list)), Some(order)) = (orig.get(field).cloned(), order.as_array()) {
                let merged = merge_list(field, list, &[], Some(order))?;
                orig.insert(field.to_string(), Value::Array(merged));
            }
        }
    }
    if let Some(Value::Array(keep)) = patch.get(RETAIN_KEYS) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        orig.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(Some(orig))
}

fn merge_list(field: &str, orig: Vec<Value>, patch: &[Value], order: Option<&Vec<Value>>) -> Result<Vec<Value>, PatchError> {
    let all: Vec<Value> = orig.iter().chain(patch.iter()).cloned().collect();
    let Some(key) = merge_key(field, &all) else {
        if merges_primitives(field) {
            let mut out = orig;
            for v in patch {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            return Ok(out);
        }
        // a list without a merge key is replaced, directives removed
        return Ok(patch
            .iter()
            .filter(|v| v.get(DIRECTIVE).is_none())
            .cloned()
            .map(|v| match v {
                Value::Object(m) => Value::Object(strip_directives(m)),
                other => other,
            })
            .collect());
    };
    // a `$patch: replace` element replaces the whole list
    if patch.iter().any(|v| v.get(DIRECTIVE).and_then(Value::as_str) == Some("replace")) {
        return Ok(patch.iter().filter(|v| v.get(DIRECTIVE).is_none()).cloned().collect());
    }
    let mut out = orig;
    for pv in patch {
        let Value::Object(pm) = pv else {
            return Err(PatchError::Strategic(format!("list {field} merges by {key:?} but holds a non-object element")));
        };
        let Some(kv) = pm.get(key) else {
            return Err(PatchError::Strategic(format!("an element of {field} has no merge key {key:?}")));
        };
        let pos = out.iter().position(|o| o.get(key) == Some(kv));
        let delete = pm.get(DIRECTIVE).and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                out.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => {
                let base = match out[i].take() {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                match merge_map(base, pm)? {
                    Some(m) => out[i] = Value::Object(m),
                    None => {
                        out.remove(i);
                    }
                }
            }
            (None, false) => out.push(Value::Object(strip_directives(pm.clone()))),
        }
    }
    if let Some(order) = order {
        let rank = |v: &Value| {
            order.iter().position(|o| o.get(key).is_some() && o.get(key) == v.get(key)).unwrap_or(usize::MAX)
        };
        // stable: elements the order does not name keep their relative place at the end
        out.sort_by_key(rank);
    }
    Ok(out)
}

fn strip_directives(mut m: Map<String, Value>) -> Map<String, Value> {
    m.retain(|k, _| !k.starts_with('$'));
    for v in m.values_mut() {
        if let Value::Object(inner) = v {
            *inner = strip_directives(std::mem::take(inner));
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(orig: Value, patch: Value, want: Value) {
        let got = strategic_merge(&orig, &patch).unwrap();
        assert_eq!(got, want, "patch {patch}");
    }

    #[test]
    fn maps_merge_and_null_deletes() {
        check(json!({"a": 1, "b": {"c": 2, "d": 3}}), json!({"b": {"c": null, "e": 4}}), json!({"a": 1, "b": {"d": 3, "e": 4}}));
        check(json!({"a": {"x": 1}}), json!({"a": {"$patch": "replace", "y": 2}}), json!({"a": {"y": 2}}));
        check(json!({"a": {"x": 1}, "b": 1}), json!({"a": {"$patch": "delete"}}), json!({"b": 1}));
    }

    #[test]
    fn containers_merge_by_name() {
        let orig = json!({"spec": {"containers": [{"name": "a", "image": "x:1", "args": ["1"]}, {"name": "b", "image": "y:1"}]}});
        check(
            orig.clone(),
            json!({"spec": {"containers": [{"name": "b", "image": "y:2"}]}}),
            json!({"spec": {"containers": [{"name": "a", "image": "x:1", "args": ["1"]}, {"name": "b", "image": "y:2"}]}}),
        );
        check(
            orig.clone(),
            json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
            json!({"spec": {"containers": [{"name": "b", "image": "y:1"}]}}),
        );
        check(
            orig,
            json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}], "containers": [{"name": "a", "args": null}]}}),
            json!({"spec": {"containers": [{"name": "b", "image": "y:1"}, {"name": "a", "image": "x:1"}]}}),
        );
    }

    #[test]
    fn lists_without_key_replace_and_finalizers_union() {
        check(json!({"args": ["1", "2"]}), json!({"args": ["3"]}), json!({"args": ["3"]}));
        check(
            json!({"metadata": {"finalizers": ["a"]}}),
            json!({"metadata": {"finalizers": ["b"]}}),
            json!({"metadata": {"finalizers": ["a", "b"]}}),
        );
        check(
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
            json!({"metadata": {"finalizers": ["b"]}}),
        );
    }

    #[test]
    fn ports_key_depends_on_content() {
        check(
            json!({"ports": [{"port": 80, "name": "http"}]}),
            json!({"ports": [{"port": 80, "targetPort": 8080}]}),
            json!({"ports": [{"port": 80, "name": "http", "targetPort": 8080}]}),
        );
    }

    #[test]
    fn retain_keys() {
        check(
            json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}),
            json!({"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}),
            json!({"strategy": {"type": "Recreate"}}),
        );
    }

    #[test]
    fn bad_patches_are_errors() {
        assert!(strategic_merge(&json!({}), &json!([1])).is_err());
        assert!(strategic_merge(&json!({}), &json!({"containers": [{"image": "x"}]})).is_err());
        assert!(strategic_merge(&json!({}), &json!({"containers": [1]})).is_err());
        assert!(strategic_merge(&json!({}), &json!({"a": {"$patch": "explode"}})).is_err());
        assert!(apply(PatchType::Json, &json!({}), b"{not json").is_err());
        assert!(apply(PatchType::Json, &json!({}), br#"[{"op":"remove","path":"/missing"}]"#).is_err());
        assert!(apply(PatchType::Merge, &json!({}), b"[]").is_err());
    }

    #[test]
    fn json_and_merge_patches() {
        let doc = json!({"spec": {"replicas": 1, "paused": true}});
        assert_eq!(
            apply(PatchType::Merge, &doc, br#"{"spec":{"replicas":3,"paused":null}}"#).unwrap(),
            json!({"spec": {"replicas": 3}})
        );
        assert_eq!(
            apply(PatchType::Json, &doc, br#"[{"op":"replace","path":"/spec/replicas","value":5}]"#).unwrap(),
            json!({"spec": {"replicas": 5, "paused": true}})
        );
    }
}
