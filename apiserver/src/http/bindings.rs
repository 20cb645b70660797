//! `POST /flotilla/v1/bindings`: many pod bindings in one request, answered item by item.
//!
//! The scheduler's throughput was bounded by one HTTPS request per binding. Here each item goes
//! through [`resources::dispatch`] as a `POST pods/NAME/binding` would, so authorization (per
//! pod, for the caller), the 409 for a pod already bound or being deleted, the 404, the
//! PodScheduled condition and the one store write (one watch event) per pod are exactly the
//! subresource's. The items' writes are submitted together, so the store commits them in few
//! Raft rounds. The whole request is refused (400, 413, 415) before anything is written when
//! its body is wrong; after that every item has its own result (see `api::client::bindings`).
//!
//! An item's `uid` goes into the Binding's `metadata.uid`, which the subresource checks inside
//! its read-modify-write (409 when the pod was deleted and created again under the same name).

use std::collections::HashSet;

use api::resource::ResourceInfo;
use api::client::bindings::{BindingRequest, BindingResponse, BindingResult, PodBinding, MAX_BINDINGS};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

use super::resources::{self, Query};
use super::status::ApiError;
use super::target::Target;
use super::{AppState, MAX_BODY_BYTES};
use crate::auth::{self, Identity};

/// The handler of `POST /flotilla/v1/bindings`.
pub async fn bind_many(State(st): State<AppState>, Extension(id): Extension<Identity>, headers: HeaderMap, body: Body) -> Response {
    match serve(&st, &id, &headers, body).await {
        Ok(answer) => (StatusCode::OK, Json(answer)).into_response(),
        Err(e) => {
            if e.code >= 500 {
                tracing::warn!(error = %e, "bulk binding failed");
            }
            e.into_response()
        }
    }
}

/// Checks a bulk binding body: JSON `{"items": [{namespace, name, uid?, node}, ...]}`, at most
/// [`MAX_BINDINGS`] items, each naming a pod once.
pub fn parse_request(headers: &HeaderMap, body: &[u8]) -> Result<Vec<PodBinding>, ApiError> {
    let content_type = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let base = content_type.split(';').next().unwrap_or("").trim();
    if !matches!(base, "application/json" | "") {
        return Err(ApiError::unsupported_media_type(base, &["application/json"]));
    }
    let req: BindingRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected a JSON body {{\"items\": [{{\"namespace\": NS, \"name\": POD, \"uid\": UID (optional), \"node\": NODE}}, ...]}}: {e}"
        ))
    })?;
    if req.items.len() > MAX_BINDINGS {
        return Err(ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("{} bindings in one request; send at most {MAX_BINDINGS} per request", req.items.len()),
        ));
    }
    let mut seen = HashSet::new();
    for (i, item) in req.items.iter().enumerate() {
        for (field, value) in [("namespace", &item.namespace), ("name", &item.name), ("node", &item.node)] {
            if value.is_empty() {
                return Err(ApiError::bad_request(format!("items[{i}].{field}: Required value")));
            }
            if !auth::valid_name(value) {
                return Err(ApiError::bad_request(format!(
                    "items[{i}].{field}: Invalid value: {value:?}: must be a lowercase RFC 1123 subdomain (lower case alphanumeric characters, '-' or '.')"
                )));
            }
        }
        if !seen.insert((item.namespace.as_str(), item.name.as_str())) {
            return Err(ApiError::bad_request(format!(
                "items[{i}]: Duplicate value: pod {}/{} is bound twice in one request; send one binding per pod",
                item.namespace, item.name
            )));
        }
    }
    Ok(req.items)
}

async fn serve(st: &AppState, id: &Identity, headers: &HeaderMap, body: Body) -> Result<BindingResponse, ApiError> {
    // one request however many items: the in-flight limit guards the HTTP layer, and the items'
    // writes queue in the store like those of as many single requests would
    let _permit = st.in_flight.clone().try_acquire_owned().map_err(|_| ApiError::too_many_requests())?;
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| ApiError::too_large(MAX_BODY_BYTES))?;
    let items = parse_request(headers, &body)?;
    let pods = api::resource::by_plural("", "v1", "pods").ok_or_else(|| ApiError::internal("the pods resource is not registered"))?;
    let results = futures::future::join_all(items.iter().map(|item| bind_one(st, id, pods, item))).await;
    Ok(BindingResponse { items: results })
}

/// One item, as `POST pods/NAME/binding` with a Binding naming `item.node` would do it.
async fn bind_one(st: &AppState, id: &Identity, pods: &'static ResourceInfo, item: &PodBinding) -> BindingResult {
    let (code, reason, message) = match dispatch(st, id, pods, item).await {
        Ok(()) => (201, None, None),
        Err(e) => (e.code, Some(e.reason.to_string()), Some(e.message)),
    };
    BindingResult { namespace: item.namespace.clone(), name: item.name.clone(), code, reason, message }
}

async fn dispatch(st: &AppState, id: &Identity, pods: &'static ResourceInfo, item: &PodBinding) -> Result<(), ApiError> {
    let mut metadata = json!({ "name": item.name, "namespace": item.namespace });
    if let Some(uid) = &item.uid {
        metadata["uid"] = json!(uid);
    }
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": metadata,
        "target": { "apiVersion": "v1", "kind": "Node", "name": item.node },
    });
    let body = serde_json::to_vec(&binding).map_err(|e| ApiError::internal(format!("encoding a binding: {e}")))?;
    let req = resources::Request {
        identity: id.clone(),
        method: Method::POST,
        target: Target {
            info: pods,
            namespace: Some(item.namespace.clone()),
            name: Some(item.name.clone()),
            subresource: Some("binding".to_string()),
        },
        query: Query::default(),
        headers: HeaderMap::new(),
        body: body.into(),
    };
    resources::dispatch(st, req).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str) -> Result<usize, u16> {
        parse_request(&HeaderMap::new(), body.as_bytes()).map(|items| items.len()).map_err(|e| e.code)
    }

    #[test]
    fn bodies_good_and_bad() {
        let one = r#"{"items":[{"namespace":"default","name":"a","node":"n1"}]}"#;
        assert_eq!(check(one), Ok(1));
        assert_eq!(check(r#"{"items":[{"namespace":"default","name":"a","uid":"u","node":"n1"}]}"#), Ok(1));
        assert_eq!(check(r#"{"items":[]}"#), Ok(0));
        for bad in [
            "",
            "{",
            "[]",
            r#"{"items":{}}"#,
            r#"{"items":[{"namespace":"default","name":"a"}]}"#,
            r#"{"items":[{"namespace":"default","name":"a","node":""}]}"#,
            r#"{"items":[{"namespace":"default","name":"A","node":"n1"}]}"#,
            r#"{"items":[{"namespace":"default","name":"a","node":"n1","extra":1}]}"#,
            r#"{"items":[{"namespace":"default","name":"a","node":"n1"},{"namespace":"default","name":"a","node":"n2"}]}"#,
        ] {
            assert_eq!(check(bad), Err(400), "{bad}");
        }
        let many: Vec<serde_json::Value> = (0..=MAX_BINDINGS).map(|i| json!({"namespace": "default", "name": format!("p{i}"), "node": "n1"})).collect();
        assert_eq!(check(&json!({ "items": many }).to_string()), Err(413));
        let mut yaml = HeaderMap::new();
        yaml.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/yaml"));
        assert_eq!(parse_request(&yaml, one.as_bytes()).err().map(|e| e.code), Some(415));
    }
}
