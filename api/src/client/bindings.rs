//! Flotilla's bulk binding route, `POST /flotilla/v1/bindings`: many `pods/NAME/binding` writes
//! in one request, as Nomad's plan applier commits many placements at once. The wire types are
//! shared by the apiserver that serves them and the client that sends them.
//!
//! Each item gets exactly the checks and effects of the `binding` subresource and its own
//! answer, so one pod bound elsewhere meanwhile (409) or deleted (404) does not fail the others.
//! An apiserver without the route answers 404 for the whole request: callers then fall back to
//! the per-pod subresource ([`BindError::NotServed`]).

use http::Method;
use serde::{Deserialize, Serialize};

use super::{Client, ClientError};
use crate::meta::Status;

/// The path of the bulk binding route.
pub const BINDINGS_PATH: &str = "/flotilla/v1/bindings";
/// At most this many bindings per request; more get 413.
pub const MAX_BINDINGS: usize = 1000;

/// The request body: `{"items": [...]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BindingRequest {
    pub items: Vec<PodBinding>,
}

/// One pod to place on one node, as a `v1.Binding` for `pods/NAME/binding` says it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodBinding {
    pub namespace: String,
    pub name: String,
    /// When set, the binding applies only to the pod with this uid (409 otherwise), so a pod
    /// deleted and created again under the same name is not bound by a stale decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    pub node: String,
}

/// The answer: one result per item, in the order of the request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BindingResponse {
    pub items: Vec<BindingResult>,
}

/// What became of one binding: `code` 201 when it was written, else the status code and the
/// `Status` reason and message `pods/NAME/binding` would have answered with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BindingResult {
    pub namespace: String,
    pub name: String,
    pub code: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl BindingResult {
    /// `Ok` for a written binding, else the error the per-pod subresource would have given,
    /// so callers handle both routes' failures with the same [`ClientError`] predicates.
    pub fn into_result(self) -> Result<(), ClientError> {
        if (200..300).contains(&self.code) {
            return Ok(());
        }
        Err(ClientError::Api(Box::new(Status {
            code: Some(i32::from(self.code)),
            reason: self.reason,
            message: self.message,
            status: Some("Failure".to_string()),
            ..Status::default()
        })))
    }
}

/// Why a bulk binding request as a whole failed.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The server has no bulk route (an older apiserver): use `pods/NAME/binding` instead.
    #[error(
        "the server does not serve {BINDINGS_PATH}; bind pods one by one through pods/NAME/binding"
    )]
    NotServed,
    /// The server answered with a different number of results than bindings sent.
    #[error(
        "the server answered {got} results for {sent} bindings; retry the bindings one by one"
    )]
    Mismatch { sent: usize, got: usize },
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl Client {
    /// Binds many pods in one request; at most [`MAX_BINDINGS`] (the server answers 413 above).
    /// The results are in the order of `items`.
    pub async fn bind_pods(&self, items: &[PodBinding]) -> Result<Vec<BindingResult>, BindError> {
        let body = serde_json::to_vec(&BindingRequest {
            items: items.to_vec(),
        })
        .map_err(|error| ClientError::Encode { error })?;
        let response = match self
            .request(
                Method::POST,
                BINDINGS_PATH,
                Some(("application/json", body)),
            )
            .await
        {
            Ok(r) => r,
            // An apiserver that predates the route falls through to its "path not found".
            Err(e) if e.is_not_found() => return Err(BindError::NotServed),
            Err(e) => return Err(e.into()),
        };
        let answer: BindingResponse = super::decode(BINDINGS_PATH, &response.body)?;
        if answer.items.len() != items.len() {
            return Err(BindError::Mismatch {
                sent: items.len(),
                got: answer.items.len(),
            });
        }
        Ok(answer.items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_format_is_the_documented_one() {
        let req = BindingRequest {
            items: vec![PodBinding {
                namespace: "default".into(),
                name: "web-1".into(),
                uid: None,
                node: "n1".into(),
            }],
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap_or_default(),
            r#"{"items":[{"namespace":"default","name":"web-1","node":"n1"}]}"#
        );
        // Unknown fields are refused rather than ignored: a typo must not bind blindly.
        let typo = r#"{"items":[{"namespace":"default","name":"web-1","nodeName":"n1"}]}"#;
        assert!(serde_json::from_str::<BindingRequest>(typo).is_err());
    }

    #[test]
    fn a_failed_item_reads_like_the_subresource_error() {
        let ok = BindingResult {
            namespace: "default".into(),
            name: "a".into(),
            code: 201,
            ..BindingResult::default()
        };
        assert!(ok.into_result().is_ok());
        let conflict = BindingResult {
            namespace: "default".into(),
            name: "a".into(),
            code: 409,
            reason: Some("Conflict".into()),
            message: Some("pod a is already assigned to node \"n2\"".into()),
        };
        let err = conflict.into_result().err();
        assert!(
            err.as_ref().is_some_and(ClientError::is_conflict),
            "{err:?}"
        );
        let gone = BindingResult {
            code: 404,
            reason: Some("NotFound".into()),
            ..BindingResult::default()
        };
        assert!(gone.into_result().err().is_some_and(|e| e.is_not_found()));
    }
}
