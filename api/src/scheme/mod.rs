//! The scheme: how a request body becomes a stored object. [`admit`] decodes the body into its
//! k8s-openapi type (reporting unknown fields per `fieldValidation`), defaults it as Kubernetes
//! defaults, validates it, and re-encodes it through the typed struct so the stored JSON has
//! Kubernetes' shape; [`validate_update`] checks what an update may not change.
//!
//! Every message is worded as Kubernetes words it (`spec.replicas: Invalid value: -1: must be
//! greater than or equal to 0`), so kubectl users recognise them.
//!
//! Layout: `decode` (typed decoding with unknown-field paths), `defaults`, `validation` (create
//! and update rules per kind, name syntax), `quantity` (resource quantities).

mod decode;
mod defaults;
mod quantity;
mod validation;

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::resource::ResourceInfo;
use crate::{apps, coordination, core};

pub use quantity::{parse_quantity_bytes, parse_quantity_milli};
pub use validation::{
    validate_config_key, validate_dns1035_label, validate_dns1123_label,
    validate_dns1123_subdomain, validate_label_value, validate_qualified_name,
};

/// Kubernetes' `fieldValidation` query parameter: what to do with fields the kind does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// refuse the request
    Strict,
    /// accept it and return a warning per field (the default when the parameter is absent)
    #[default]
    Warn,
    /// drop the fields silently
    Ignore,
}

impl std::str::FromStr for FieldValidation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Strict" => Ok(FieldValidation::Strict),
            "Warn" => Ok(FieldValidation::Warn),
            "Ignore" => Ok(FieldValidation::Ignore),
            other => Err(format!(
                "fieldValidation: Unsupported value: \"{other}\": supported values: \"Ignore\", \"Strict\", \"Warn\""
            )),
        }
    }
}

/// An object ready to store, and the warnings to return with the response.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    pub object: serde_json::Value,
    pub warnings: Vec<String>,
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdmitError {
    /// the body is not an object of that kind (wrong type at a path, apiVersion/kind mismatch):
    /// HTTP 400
    #[error("{kind} cannot be handled as a {kind}: {message}")]
    Decode { kind: String, message: String },
    /// fieldValidation=Strict and the body has fields the kind does not: HTTP 400
    #[error("strict decoding error: {}", unknown_list(.paths))]
    UnknownFields { kind: String, paths: Vec<String> },
    /// validation failed: HTTP 422
    #[error("{qualified_kind} {name:?} is invalid: {}", error_list(.errors))]
    Invalid {
        kind: String,
        qualified_kind: String,
        name: String,
        errors: Vec<FieldError>,
    },
}

impl AdmitError {
    /// The HTTP status Kubernetes answers with.
    pub fn status_code(&self) -> u16 {
        match self {
            AdmitError::Decode { .. } | AdmitError::UnknownFields { .. } => 400,
            AdmitError::Invalid { .. } => 422,
        }
    }

    /// The `reason` of the Kubernetes `Status` object.
    pub fn reason(&self) -> &'static str {
        match self {
            AdmitError::Decode { .. } | AdmitError::UnknownFields { .. } => "BadRequest",
            AdmitError::Invalid { .. } => "Invalid",
        }
    }
}

/// One broken rule, at a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// "spec.template.spec.containers[0].image"
    pub path: String,
    pub kind: FieldErrorKind,
    /// the explanation after the value, may be empty
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldErrorKind {
    Required,
    /// the value as Kubernetes prints it: `"Web_1"` for strings, `-1` for numbers
    Invalid(String),
    /// the value as printed, and the supported values
    NotSupported(String, Vec<String>),
    /// the value as printed
    Duplicate(String),
    Forbidden,
    /// the limit in bytes
    TooLong(usize),
    TooMany,
    /// the value as printed
    NotFound(String),
}

impl FieldErrorKind {
    /// The cause `reason` of a Kubernetes `Status` (`details.causes[*].reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid(_) => "FieldValueInvalid",
            FieldErrorKind::NotSupported(..) => "FieldValueNotSupported",
            FieldErrorKind::Duplicate(_) => "FieldValueDuplicate",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong(_) => "FieldValueTooLong",
            FieldErrorKind::TooMany => "FieldValueTooMany",
            FieldErrorKind::NotFound(_) => "FieldValueNotFound",
        }
    }
}

impl FieldError {
    /// The error without its field path, as a Status cause's `message` carries it (the path is
    /// the cause's `field`; kubectl prints `field: message`).
    pub fn body(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_body(&mut out);
        out
    }

    /// What follows `path: ` in the whole message.
    fn write_body(&self, f: &mut impl fmt::Write) -> fmt::Result {
        match &self.kind {
            FieldErrorKind::Required => f.write_str("Required value")?,
            FieldErrorKind::Invalid(v) => write!(f, "Invalid value: {v}")?,
            FieldErrorKind::NotSupported(v, supported) => {
                write!(f, "Unsupported value: {v}")?;
                if !supported.is_empty() {
                    let quoted: Vec<String> = supported.iter().map(|s| quote(s)).collect();
                    write!(f, ": supported values: {}", quoted.join(", "))?;
                }
            }
            FieldErrorKind::Duplicate(v) => write!(f, "Duplicate value: {v}")?,
            FieldErrorKind::Forbidden => f.write_str("Forbidden")?,
            FieldErrorKind::TooLong(max) => {
                write!(f, "Too long: may not be more than {max} bytes")?
            }
            FieldErrorKind::TooMany => f.write_str("Too many")?,
            FieldErrorKind::NotFound(v) => write!(f, "Not found: {v}")?,
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.path)?;
        self.write_body(f)
    }
}

/// Decodes `body` per `mode` (unknown-field detection), fills apiVersion/kind when absent,
/// defaults as Kubernetes defaults, validates, and re-encodes through the typed struct so the
/// stored JSON has Kubernetes' shape. The caller has already filled metadata.name (from
/// generateName), namespace, uid and creationTimestamp.
pub fn admit(
    info: &ResourceInfo,
    body: serde_json::Value,
    mode: FieldValidation,
) -> Result<Admitted, AdmitError> {
    match (info.group, info.kind) {
        ("", "Namespace") => admit_as::<core::Namespace>(info, body, mode),
        ("", "Node") => admit_as::<core::Node>(info, body, mode),
        ("", "Pod") => admit_as::<core::Pod>(info, body, mode),
        ("", "Service") => admit_as::<core::Service>(info, body, mode),
        ("", "Endpoints") => admit_as::<core::Endpoints>(info, body, mode),
        ("", "ConfigMap") => admit_as::<core::ConfigMap>(info, body, mode),
        ("", "Secret") => admit_as::<core::Secret>(info, body, mode),
        ("", "Event") => admit_as::<core::Event>(info, body, mode),
        ("apps", "Deployment") => admit_as::<apps::Deployment>(info, body, mode),
        ("apps", "ReplicaSet") => admit_as::<apps::ReplicaSet>(info, body, mode),
        ("coordination.k8s.io", "Lease") => admit_as::<coordination::Lease>(info, body, mode),
        _ => Err(AdmitError::Decode {
            kind: info.kind.to_string(),
            message: format!(
                "the kind {} is not served by this cluster",
                info.qualified_kind()
            ),
        }),
    }
}

/// Checks the fields Kubernetes makes immutable on update: Deployment/ReplicaSet spec.selector,
/// most of a Pod's spec (containers[*].image, initContainers[*].image, activeDeadlineSeconds and
/// added tolerations may change; nodeName may be set once, which is what a binding does),
/// Service spec.clusterIP once set, ConfigMap/Secret data when immutable: true, Secret type,
/// metadata.name/namespace/uid/creationTimestamp. Both objects should have been admitted.
pub fn validate_update(
    info: &ResourceInfo,
    old: &serde_json::Value,
    new: &serde_json::Value,
) -> Result<(), AdmitError> {
    match (info.group, info.kind) {
        ("", "Namespace") => update_as::<core::Namespace>(info, old, new),
        ("", "Node") => update_as::<core::Node>(info, old, new),
        ("", "Pod") => update_as::<core::Pod>(info, old, new),
        ("", "Service") => update_as::<core::Service>(info, old, new),
        ("", "Endpoints") => update_as::<core::Endpoints>(info, old, new),
        ("", "ConfigMap") => update_as::<core::ConfigMap>(info, old, new),
        ("", "Secret") => update_as::<core::Secret>(info, old, new),
        ("", "Event") => update_as::<core::Event>(info, old, new),
        ("apps", "Deployment") => update_as::<apps::Deployment>(info, old, new),
        ("apps", "ReplicaSet") => update_as::<apps::ReplicaSet>(info, old, new),
        ("coordination.k8s.io", "Lease") => update_as::<coordination::Lease>(info, old, new),
        _ => Err(AdmitError::Decode {
            kind: info.kind.to_string(),
            message: format!(
                "the kind {} is not served by this cluster",
                info.qualified_kind()
            ),
        }),
    }
}

/// On update, keeps what the cluster allocated and a client sending the whole object may not
/// know: a Service's `clusterIP`, `clusterIPs`, `ipFamilies`, `ipFamilyPolicy`, and the
/// `nodePort` of each port (matched by port and protocol), when `new` leaves them unset. This
/// is what Kubernetes does before validating an update, so `kubectl replace` of a manifest
/// without them does not trip [`validate_update`]'s "field is immutable".
pub fn carry_over_allocated(
    info: &ResourceInfo,
    old: &serde_json::Value,
    new: &mut serde_json::Value,
) {
    if (info.group, info.kind) != ("", "Service") {
        return;
    }
    let (Some(old_spec), Some(new_spec)) = (
        old.get("spec"),
        new.get_mut("spec").and_then(|s| s.as_object_mut()),
    ) else {
        return;
    };
    let unset =
        |v: Option<&serde_json::Value>| v.is_none_or(|v| v.is_null() || v.as_str() == Some(""));
    for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        if let Some(value) = old_spec.get(field).filter(|_| unset(new_spec.get(field))) {
            new_spec.insert(field.to_string(), value.clone());
        }
    }
    let old_ports = old_spec
        .get("ports")
        .and_then(|p| p.as_array())
        .cloned()
        .unwrap_or_default();
    let key = |p: &serde_json::Value| {
        (
            p.get("port").cloned(),
            p.get("protocol")
                .and_then(|v| v.as_str())
                .unwrap_or("TCP")
                .to_string(),
        )
    };
    for port in new_spec
        .get_mut("ports")
        .and_then(|p| p.as_array_mut())
        .into_iter()
        .flatten()
    {
        if !unset(port.get("nodePort")) && port.get("nodePort") != Some(&serde_json::json!(0)) {
            continue;
        }
        let node_port = old_ports
            .iter()
            .find(|o| key(o) == key(port))
            .and_then(|o| o.get("nodePort"))
            .cloned();
        if let (Some(np), Some(map)) = (node_port, port.as_object_mut()) {
            map.insert("nodePort".to_string(), np);
        }
    }
}

/// What the scheme needs of each served type: its metadata, its defaults and its rules.
trait Object: Serialize + DeserializeOwned + k8s_openapi::Resource + Clone {
    fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    fn apply_defaults(&mut self);
    fn validate(&self, info: &ResourceInfo, errs: &mut validation::Errors);
    fn validate_update(&self, old: &Self, errs: &mut validation::Errors);
    /// Required fields that k8s-openapi fills with an empty value when the body lacks them,
    /// where Kubernetes tells "absent" from "empty" (a Deployment's `spec.selector`).
    fn absent_required(_body: &serde_json::Value) -> Vec<&'static str> {
        Vec::new()
    }
}

fn admit_as<K: Object>(
    info: &ResourceInfo,
    body: serde_json::Value,
    mode: FieldValidation,
) -> Result<Admitted, AdmitError> {
    let absent = K::absent_required(&body);
    let decoded = decode::decode::<K>(info, body)?;
    let mut warnings = Vec::new();
    match mode {
        FieldValidation::Strict if !decoded.unknown.is_empty() => {
            return Err(AdmitError::UnknownFields {
                kind: info.kind.to_string(),
                paths: decoded.unknown,
            });
        }
        FieldValidation::Warn => {
            warnings.extend(
                decoded
                    .unknown
                    .iter()
                    .map(|p| format!("unknown field {}", quote(p))),
            );
        }
        _ => {}
    }
    let mut object = decoded.object;
    object.apply_defaults();
    let mut errs = validation::Errors::default();
    object.validate(info, &mut errs);
    for path in absent.into_iter().rev() {
        // what the rules said about the empty value the decoder filled in is noise
        let nested = format!("{path}.");
        errs.0
            .retain(|e| e.path != path && !e.path.starts_with(&nested));
        let required = FieldError {
            path: path.to_string(),
            kind: FieldErrorKind::Required,
            detail: String::new(),
        };
        errs.0.insert(0, required);
    }
    if !errs.0.is_empty() {
        return Err(invalid(info, object.meta(), errs));
    }
    let object = encode(info, &object)?;
    Ok(Admitted { object, warnings })
}

fn update_as<K: Object>(
    info: &ResourceInfo,
    old: &serde_json::Value,
    new: &serde_json::Value,
) -> Result<(), AdmitError> {
    let old_obj = decode::decode::<K>(info, old.clone())?.object;
    let new_obj = decode::decode::<K>(info, new.clone())?.object;
    let mut errs = validation::Errors::default();
    validation::validate_meta_update(old_obj.meta(), new_obj.meta(), &mut errs);
    new_obj.validate_update(&old_obj, &mut errs);
    if errs.0.is_empty() {
        Ok(())
    } else {
        Err(invalid(info, new_obj.meta(), errs))
    }
}

fn invalid(
    info: &ResourceInfo,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    errs: validation::Errors,
) -> AdmitError {
    AdmitError::Invalid {
        kind: info.kind.to_string(),
        qualified_kind: info.qualified_kind(),
        name: meta.name.clone().unwrap_or_default(),
        errors: errs.0,
    }
}

fn encode<K: Serialize>(info: &ResourceInfo, object: &K) -> Result<serde_json::Value, AdmitError> {
    serde_json::to_value(object).map_err(|e| AdmitError::Decode {
        kind: info.kind.to_string(),
        message: format!("cannot encode the object: {e}"),
    })
}

/// A string as Go's `%q` prints it, which is how Kubernetes prints values in messages.
pub(crate) fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn unknown_list(paths: &[String]) -> String {
    paths
        .iter()
        .map(|p| format!("unknown field {}", quote(p)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn error_list(errors: &[FieldError]) -> String {
    match errors {
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests;
