//! openraft's network: Raft RPCs sent as JSON over HTTP(S) to the peers' routers.
//!
//! Connection failures are reported as `Unreachable` so that openraft backs off instead of
//! retrying a dead peer in a tight loop.

use std::error::Error;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::RPCTypes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::types::{Replica, ReplicaId, TypeConfig};

/// Paths of the Raft RPCs on the peer router.
pub(crate) const PATH_APPEND: &str = "/raft/append";
pub(crate) const PATH_VOTE: &str = "/raft/vote";
pub(crate) const PATH_SNAPSHOT: &str = "/raft/snapshot";

/// Creates one [`PeerConnection`] per target.
pub(crate) struct PeerNetwork {
    pub(crate) id: ReplicaId,
    pub(crate) client: reqwest::Client,
    pub(crate) scheme: &'static str,
}

pub(crate) struct PeerConnection {
    id: ReplicaId,
    target: ReplicaId,
    base: String,
    client: reqwest::Client,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: ReplicaId, node: &Replica) -> Self::Network {
        PeerConnection {
            id: self.id,
            target,
            base: format!("{}://{}", self.scheme, node.peer_addr),
            client: self.client.clone(),
        }
    }
}

impl PeerConnection {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        action: RPCTypes,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<ReplicaId, Replica, RaftError<ReplicaId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: Error + DeserializeOwned,
    {
        let timeout = option.hard_ttl();
        let url = format!("{}{}", self.base, path);
        let to_err = |e: reqwest::Error| -> RPCError<ReplicaId, Replica, RaftError<ReplicaId, E>> {
            if e.is_connect() {
                RPCError::Unreachable(Unreachable::new(&e))
            } else if e.is_timeout() {
                RPCError::Timeout(Timeout {
                    action,
                    id: self.id,
                    target: self.target,
                    timeout,
                })
            } else {
                RPCError::Network(NetworkError::new(&e))
            }
        };
        let resp = self
            .client
            .post(&url)
            .timeout(timeout)
            .json(req)
            .send()
            .await
            .map_err(to_err)?;
        if !resp.status().is_success() {
            // A peer that answers but not with a Raft reply (shutting down, wrong listener) is
            // treated like an unreachable one.
            let status = resp.status();
            let msg = resp.text().await.unwrap_or_default();
            return Err(RPCError::Unreachable(Unreachable::new(
                &std::io::Error::other(format!("{url} answered {status}: {msg}")),
            )));
        }
        let reply: Result<Resp, RaftError<ReplicaId, E>> = resp.json().await.map_err(to_err)?;
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<ReplicaId>, RPCError<ReplicaId, Replica, RaftError<ReplicaId>>>
    {
        self.call(PATH_APPEND, RPCTypes::AppendEntries, &rpc, &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<ReplicaId>,
        RPCError<ReplicaId, Replica, RaftError<ReplicaId, InstallSnapshotError>>,
    > {
        self.call(PATH_SNAPSHOT, RPCTypes::InstallSnapshot, &rpc, &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<ReplicaId>,
        option: RPCOption,
    ) -> Result<VoteResponse<ReplicaId>, RPCError<ReplicaId, Replica, RaftError<ReplicaId>>> {
        self.call(PATH_VOTE, RPCTypes::Vote, &rpc, &option).await
    }

    fn backoff(&self) -> openraft::network::Backoff {
        // Short enough that a restarted peer is caught up quickly, long enough not to spin.
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}
