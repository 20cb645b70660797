//! The pod-template-hash: a short, stable name for a Deployment's pod template, used in the
//! ReplicaSet's name, selector and pod labels so each template gets its own ReplicaSet.
//!
//! Hand-written because it is a few lines: FNV-32a over the template's canonical JSON (object
//! keys sorted, so field order never changes the hash) followed by the collision count, then the
//! decimal digits spelled in Kubernetes' "safe" alphabet (no vowels, no look-alike characters),
//! which is what kube's own hashes look like (`web-7d4b9c8f5`).

use serde_json::Value;

use api::core::PodTemplateSpec;

/// The label carrying the hash on ReplicaSets and pods.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// Kubernetes' alphabet for generated names: no vowels (no words), no 0/1/3 (look-alikes).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The hash of `template` (without any pod-template-hash label of its own) and the
/// Deployment's `collision_count`.
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut template = template.clone();
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    // Serialising a typed template cannot fail (no maps with non-string keys); `Null` would
    // still hash deterministically if it ever did.
    let value = serde_json::to_value(&template).unwrap_or(Value::Null);
    let mut bytes = Vec::new();
    write_canonical(&value, &mut bytes);
    if let Some(count) = collision_count {
        bytes.extend_from_slice(&count.to_le_bytes());
    }
    safe_encode(&fnv32a(&bytes).to_string())
}

/// FNV-1a, 32 bits.
pub fn fnv32a(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in bytes {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// Each character mapped into the safe alphabet, as kube's `SafeEncodeString`.
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| char::from(SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()]))
        .collect()
}

/// JSON with object keys in sorted order, so the same template always gives the same bytes.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(key.clone()).to_string().as_bytes());
                out.push(b':');
                write_canonical(&map[key], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(json: Value) -> PodTemplateSpec {
        crate::testing::from(json)
    }

    #[test]
    fn fnv_matches_the_reference_vectors() {
        assert_eq!(fnv32a(b""), 0x811c_9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c_292c);
        assert_eq!(fnv32a(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn safe_encoding_uses_only_the_alphabet() {
        let encoded = safe_encode("4294967295");
        assert_eq!(encoded.len(), 10);
        assert!(encoded.bytes().all(|b| SAFE_ALPHABET.contains(&b)));
        // '0' is 48, 48 % 27 = 21 -> the 22nd character, '4'.
        assert_eq!(safe_encode("0"), "4");
    }

    #[test]
    fn hash_is_stable_and_ignores_its_own_label_and_key_order() {
        let a = template(serde_json::json!({
            "metadata": {"labels": {"app": "web", "tier": "front"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}
        }));
        let b = template(serde_json::json!({
            "metadata": {"labels": {"tier": "front", "app": "web", "pod-template-hash": "xyz"}},
            "spec": {"containers": [{"image": "nginx:1.27", "name": "web"}]}
        }));
        assert_eq!(pod_template_hash(&a, None), pod_template_hash(&b, None));
        assert_eq!(pod_template_hash(&a, None), pod_template_hash(&a, None));
    }

    #[test]
    fn image_restart_annotation_and_collisions_change_the_hash() {
        let base = serde_json::json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}
        });
        let mut other_image = base.clone();
        other_image["spec"]["containers"][0]["image"] = "nginx:1.28".into();
        let mut restarted = base.clone();
        restarted["metadata"]["annotations"] =
            serde_json::json!({"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"});
        let h = pod_template_hash(&template(base.clone()), None);
        assert_ne!(h, pod_template_hash(&template(other_image), None));
        assert_ne!(h, pod_template_hash(&template(restarted), None));
        assert_ne!(h, pod_template_hash(&template(base.clone()), Some(1)));
        assert_ne!(
            pod_template_hash(&template(base.clone()), Some(1)),
            pod_template_hash(&template(base), Some(2))
        );
    }
}
