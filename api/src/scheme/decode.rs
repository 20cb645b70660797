//! Decoding a JSON body into its k8s-openapi type, with the path of every field the type does
//! not have (`serde_ignored`) and the path of a value of the wrong type (`serde_path_to_error`),
//! written as Kubernetes writes paths: `spec.template.spec.containers[0].image`.

use super::{quote, AdmitError, FieldError, FieldErrorKind};
use crate::resource::ResourceInfo;

pub(super) struct Decoded<K> {
    pub object: K,
    /// paths of the fields the type does not have, in body order
    pub unknown: Vec<String>,
}

pub(super) fn decode<K>(
    info: &ResourceInfo,
    mut body: serde_json::Value,
) -> Result<Decoded<K>, AdmitError>
where
    K: serde::de::DeserializeOwned,
{
    let fail = |message: String| AdmitError::Decode {
        kind: info.kind.to_string(),
        message,
    };
    let Some(map) = body.as_object_mut() else {
        return Err(fail("the body must be a JSON object".to_string()));
    };
    // k8s-openapi's decoder checks apiVersion and kind when present; fill them when absent and
    // say plainly when they name another kind.
    let api_version = info.api_version();
    match map.get("apiVersion") {
        None | Some(serde_json::Value::Null) => {
            map.insert("apiVersion".into(), api_version.clone().into());
        }
        Some(serde_json::Value::String(v)) if *v == api_version => {}
        Some(other) => {
            return Err(fail(format!(
                "the API version in the data ({}) does not match the expected API version ({api_version})",
                plain(other)
            )))
        }
    }
    match map.get("kind") {
        None | Some(serde_json::Value::Null) => {
            map.insert("kind".into(), info.kind.into());
        }
        Some(serde_json::Value::String(v)) if v == info.kind => {}
        Some(other) => {
            return Err(fail(format!(
                "the kind in the data ({}) does not match the expected kind ({})",
                plain(other),
                info.kind
            )))
        }
    }

    let name = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or("")
        .to_string();
    let mut unknown = Vec::new();
    let mut on_ignored = |path: serde_ignored::Path<'_>| unknown.push(ignored_path(&path));
    let ignoring = serde_ignored::Deserializer::new(body, &mut on_ignored);
    let result: Result<K, _> = serde_path_to_error::deserialize(ignoring);
    match result {
        Ok(object) => Ok(Decoded { object, unknown }),
        Err(e) => {
            let path = tracked_path(e.path());
            let inner = e.into_inner().to_string();
            // k8s-openapi makes Kubernetes' required fields non-optional, so their absence shows
            // up here; report it as Kubernetes' validation does.
            if let Some(field) = inner
                .strip_prefix("missing field `")
                .and_then(|r| r.strip_suffix('`'))
            {
                let path = if path.is_empty() {
                    field.to_string()
                } else {
                    format!("{path}.{field}")
                };
                return Err(AdmitError::Invalid {
                    kind: info.kind.to_string(),
                    qualified_kind: info.qualified_kind(),
                    name,
                    errors: vec![FieldError {
                        path,
                        kind: FieldErrorKind::Required,
                        detail: String::new(),
                    }],
                });
            }
            let message = if path.is_empty() {
                inner
            } else {
                format!("{path}: {inner}")
            };
            Err(fail(message))
        }
    }
}

fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// "spec.template.spec.containers[1].imagee" from serde_ignored's path, leaving out the
/// `Some`/newtype steps it records for `Option` fields.
fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => {
            let parent = ignored_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

fn tracked_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            // keys of maps (labels, data) may hold dots; Kubernetes writes them in brackets
            Segment::Map { key } if key.contains('.') || key.contains('/') => {
                out.push_str(&format!("[{}]", quote(key)));
            }
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Enum { variant } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(variant);
            }
            Segment::Unknown => {}
        }
    }
    out
}
