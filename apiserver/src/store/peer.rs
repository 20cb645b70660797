//! The peer router: Raft RPCs (append, vote, snapshot) and the store's own replica-to-replica
//! calls (write forwarding, read index, membership changes, status), all JSON.

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use super::network::{PATH_APPEND, PATH_SNAPSHOT, PATH_VOTE};
use super::types::{ApplyResult, Command, Replica, ReplicaId, ReplicaStatus, TypeConfig};
use super::Store;

pub(crate) const PATH_WRITE: &str = "/store/write";
pub(crate) const PATH_READ_INDEX: &str = "/store/read-index";
pub(crate) const PATH_MEMBERSHIP: &str = "/store/membership";
pub(crate) const PATH_STATUS: &str = "/store/status";

/// Raft batches and snapshot chunks are larger than axum's 2 MB default body limit.
const BODY_LIMIT: usize = 256 << 20;

/// The answer of an operation that only the leader can do.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) enum PeerReply<T> {
    Ok(T),
    /// not the leader (or leadership not confirmed): try the named leader, or wait and retry
    Retry {
        leader: Option<(ReplicaId, Replica)>,
        reason: String,
    },
    /// the replica cannot serve (shutting down); the outcome of a write is unknown
    Unavailable(String),
    /// the request was refused for good (a membership change that is not allowed)
    Refused(String),
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) enum MembershipChange {
    Add { id: ReplicaId, replica: Replica },
    Remove { id: ReplicaId },
}

pub(crate) fn router(store: Store) -> Router {
    Router::new()
        .route(PATH_APPEND, post(append))
        .route(PATH_VOTE, post(vote))
        .route(PATH_SNAPSHOT, post(snapshot))
        .route(PATH_WRITE, post(write))
        .route(PATH_READ_INDEX, post(read_index))
        .route(PATH_MEMBERSHIP, post(membership))
        .route(PATH_STATUS, get(status))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(store)
}

async fn append(
    State(store): State<Store>,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Json<Result<AppendEntriesResponse<ReplicaId>, RaftError<ReplicaId>>> {
    Json(store.inner.raft.append_entries(req).await)
}

async fn vote(
    State(store): State<Store>,
    Json(req): Json<VoteRequest<ReplicaId>>,
) -> Json<Result<VoteResponse<ReplicaId>, RaftError<ReplicaId>>> {
    Json(store.inner.raft.vote(req).await)
}

async fn snapshot(
    State(store): State<Store>,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Json<Result<InstallSnapshotResponse<ReplicaId>, RaftError<ReplicaId, InstallSnapshotError>>> {
    Json(store.inner.raft.install_snapshot(req).await)
}

async fn write(
    State(store): State<Store>,
    Json(cmd): Json<Command>,
) -> Json<PeerReply<(u64, ApplyResult)>> {
    Json(store.write_local(cmd).await)
}

async fn read_index(State(store): State<Store>) -> Json<PeerReply<u64>> {
    Json(store.read_index_local().await)
}

async fn membership(
    State(store): State<Store>,
    Json(change): Json<MembershipChange>,
) -> Json<PeerReply<()>> {
    Json(store.membership_local(change).await)
}

async fn status(State(store): State<Store>) -> Json<ReplicaStatus> {
    Json(store.local_status())
}
