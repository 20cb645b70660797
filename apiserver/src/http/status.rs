//! Errors as Kubernetes `Status` objects.
//!
//! Every failure the API returns is one of these, with the HTTP code, the machine-readable
//! `reason` and a message worded as kube-apiserver words it, so kubectl prints
//! `Error from server (NotFound): deployments.apps "web" not found` for our errors too.

use api::resource::ResourceInfo;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;

/// An API error, rendered as a `Status` object.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<serde_json::Value>,
    /// seconds a client should wait before retrying (429, 503)
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None, retry_after: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn not_found(info: &ResourceInfo, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{} \"{}\" not found", info.qualified_name(), name))
            .with_details(info, name)
    }

    pub fn path_not_found(path: &str) -> Self {
        Self::new(404, "NotFound", format!("the server could not find the requested resource ({path})"))
    }

    pub fn method_not_allowed(method: &str, what: &str) -> Self {
        Self::new(405, "MethodNotAllowed", format!("the server does not allow this method on the requested resource ({method} {what})"))
    }

    pub fn already_exists(info: &ResourceInfo, name: &str) -> Self {
        Self::new(409, "AlreadyExists", format!("{} \"{}\" already exists", info.qualified_name(), name))
            .with_details(info, name)
    }

    pub fn conflict(info: &ResourceInfo, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {} \"{}\": {}", info.qualified_name(), name, why),
        )
        .with_details(info, name)
    }

    pub fn modified(info: &ResourceInfo, name: &str) -> Self {
        Self::conflict(
            info,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(413, "RequestEntityTooLarge", format!("the request body is larger than the limit of {limit} bytes"))
    }

    pub fn unsupported_media_type(content_type: &str, accepted: &[&str]) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format ({content_type}), accepted media types include: {}", accepted.join(", ")),
        )
    }

    /// 422 Invalid: unlike the other errors, kube-apiserver names the Kind (not the resource) in
    /// `details.kind`, and each cause's message leaves the field out (kubectl prints
    /// `The Pod "web" is invalid: field: message`).
    pub fn invalid(info: &ResourceInfo, name: &str, message: impl Into<String>, causes: serde_json::Value) -> Self {
        let mut e = Self::new(422, "Invalid", message).with_details(info, name);
        if let Some(d) = e.details.as_mut() {
            d["kind"] = json!(info.kind);
            d["causes"] = causes;
        }
        e
    }

    pub fn too_many_requests() -> Self {
        let mut e = Self::new(429, "TooManyRequests", "too many requests have been sent, please try again later");
        e.retry_after = Some(1);
        e
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", format!("Internal error occurred: {}", message.into()))
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(503, "ServiceUnavailable", message);
        e.retry_after = Some(1);
        e
    }

    fn with_details(mut self, info: &ResourceInfo, name: &str) -> Self {
        let mut d = json!({ "name": name, "kind": info.plural });
        if !info.group.is_empty() {
            d["group"] = json!(info.group);
        }
        self.details = Some(d);
        self
    }

    /// The `Status` object, as it appears in a response body or a watch `ERROR` event.
    pub fn to_status(&self) -> serde_json::Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (code, axum::Json(self.to_status())).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert("retry-after", HeaderValue::from(secs));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(msg) => ApiError::unavailable(format!("the cluster store is unavailable: {msg}")),
            StoreError::Gone { requested, oldest } => {
                ApiError::gone(format!("too old resource version: {requested} ({oldest})"))
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

/// A `Status` for success, as kube returns for some deletes and for bindings.
pub fn success_status(code: u16) -> serde_json::Value {
    json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code })
}
