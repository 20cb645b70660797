//! Flotilla's admin routes on the API listener: cluster status and membership. Admin tokens only.
//!
//! They sit on their own router, apart from the Kubernetes paths, under `/flotilla/v1/`.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;

use super::status::{success_status, ApiError};
use super::AppState;
use crate::auth::{Identity, Role};
use crate::store::{Replica, ReplicaId};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/flotilla/v1/cluster", get(status))
        .route("/flotilla/v1/cluster/replicas", post(add))
        .route("/flotilla/v1/cluster/replicas/{id}", delete(remove))
}

fn require_admin(id: &Identity) -> Result<(), ApiError> {
    if id.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("User \"{}\" cannot manage the cluster's replicas: only admins can", id.user)))
    }
}

async fn status(State(st): State<AppState>, Extension(id): Extension<Identity>) -> Response {
    if let Err(e) = require_admin(&id) {
        return e.into_response();
    }
    Json(st.store.cluster_status().await).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AddReplica {
    id: ReplicaId,
    api_addr: String,
    peer_addr: String,
}

async fn add(State(st): State<AppState>, Extension(id): Extension<Identity>, body: axum::body::Bytes) -> Response {
    let result = async {
        require_admin(&id)?;
        let req: AddReplica = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("expected {{\"id\": N, \"apiAddr\": \"host:port\", \"peerAddr\": \"host:port\"}}: {e}")))?;
        for (what, addr) in [("apiAddr", &req.api_addr), ("peerAddr", &req.peer_addr)] {
            if addr.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
                return Err(ApiError::bad_request(format!("{what}: Invalid value: {addr:?}: must be host:port")));
            }
        }
        if req.id == 0 {
            return Err(ApiError::bad_request("id: Invalid value: 0: must be a positive number"));
        }
        st.store
            .add_replica(req.id, Replica { api_addr: req.api_addr, peer_addr: req.peer_addr })
            .await
            .map_err(|e| ApiError::unavailable(format!("adding replica {} failed: {e}", req.id)))?;
        Ok::<_, ApiError>(Json(success_status(200)))
    }
    .await;
    match result {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn remove(State(st): State<AppState>, Extension(id): Extension<Identity>, Path(rid): Path<String>) -> Response {
    let result = async {
        require_admin(&id)?;
        let rid: ReplicaId = rid.parse().map_err(|_| ApiError::bad_request(format!("replica id {rid:?} is not a number")))?;
        st.store
            .remove_replica(rid)
            .await
            .map_err(|e| ApiError::unavailable(format!("removing replica {rid} failed: {e}")))?;
        Ok::<_, ApiError>(Json(success_status(200)))
    }
    .await;
    match result {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}
