//! The store's public data types (commands, results, events, status, errors) and the openraft
//! type configuration that ties them together.

use std::io::Cursor;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A replica's id in the Raft cluster.
pub type ReplicaId = u64;

/// openraft's Node type: where a replica serves its Kubernetes API and its peer router, both
/// "host:port".
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Replica {
    pub api_addr: String,
    pub peer_addr: String,
}

/// One entry of the replicated log.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub enum Command {
    Create {
        key: String,
        object: serde_json::Value,
    },
    /// compare-and-set: applied only when the stored object's revision equals expected_rv
    Update {
        key: String,
        object: serde_json::Value,
        expected_rv: u64,
    },
    Delete {
        key: String,
        expected_rv: Option<u64>,
        expected_uid: Option<String>,
    },
    /// several commands proposed as one log entry, applied in order (the leader groups
    /// concurrent writes so that they share one fsync on each replica); each gets its own
    /// revision
    Batch(Vec<Command>),
}

/// What applying one log entry did: one (revision, result) per command, in order (a
/// [`Command::Batch`] gives one per member); empty for Raft's own entries.
pub type Applied = Vec<(u64, ApplyResult)>;

/// What applying a [`Command`] did.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum ApplyResult {
    /// the object as stored, with metadata.resourceVersion set to the log index (as a string);
    /// for Delete the last stored object with resourceVersion set to the delete's index
    Ok {
        object: serde_json::Value,
    },
    NotFound,
    AlreadyExists,
    Conflict {
        current_rv: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

/// A change of one key, as applied at `revision`.
#[derive(Clone, Debug)]
pub struct Event {
    pub revision: u64,
    pub kind: EventKind,
    pub key: String,
    pub object: Arc<serde_json::Value>,
    pub prev: Option<Arc<serde_json::Value>>,
}

/// This replica's view of the cluster.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    pub leader: Option<ReplicaId>,
    pub replicas: Vec<ReplicaStatus>,
}

/// One member's status, as it reports it itself.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    pub id: ReplicaId,
    pub api_addr: String,
    pub peer_addr: String,
    /// leader|follower|candidate|learner|shutdown
    pub role: String,
    pub voter: bool,
    pub term: u64,
    pub last_log_index: u64,
    pub last_applied: u64,
    pub healthy: bool,
    pub error: Option<String>,
}

#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// no leader could be reached in time, or the replica is shutting down (HTTP 503)
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// the requested revision is older than the kept history (HTTP 410)
    #[error("revision {requested} is no longer kept (oldest kept is {oldest}); list again and watch from the list's revision")]
    Gone { requested: u64, oldest: u64 },
    /// the disk or the on-disk data failed (HTTP 500)
    #[error("store storage failed: {0}")]
    Storage(String),
    /// a membership change was refused (HTTP 409)
    #[error("membership change refused: {0}")]
    Membership(String),
}

openraft::declare_raft_types!(
    /// openraft's type configuration for the store.
    pub TypeConfig:
        D = Command,
        R = Applied,
        NodeId = ReplicaId,
        Node = Replica,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub(crate) type LogId = openraft::LogId<ReplicaId>;
pub(crate) type Entry = openraft::Entry<TypeConfig>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<ReplicaId, Replica>;
pub(crate) type StoredMembership = openraft::StoredMembership<ReplicaId, Replica>;
pub(crate) type StorageError = openraft::StorageError<ReplicaId>;
pub(crate) type Raft = openraft::Raft<TypeConfig>;
