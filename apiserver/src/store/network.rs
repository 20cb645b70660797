//! openraft's network: Raft RPCs sent to a peer either as frames on one kept-open mutual-TLS
//! connection per target (`wire`; what replicas use) or as JSON over HTTP(S) to the peer's
//! router (when no TLS client configuration is given, as in the store's in-process tests).
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

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::types::{Replica, ReplicaId, TypeConfig};
use super::wire;

/// Paths of the Raft RPCs on the peer router.
pub(crate) const PATH_APPEND: &str = "/raft/append";
pub(crate) const PATH_VOTE: &str = "/raft/vote";
pub(crate) const PATH_SNAPSHOT: &str = "/raft/snapshot";

/// Creates one [`PeerConnection`] per target.
pub(crate) struct PeerNetwork {
    pub(crate) id: ReplicaId,
    pub(crate) client: reqwest::Client,
    pub(crate) scheme: &'static str,
    /// set: Raft RPCs go as `wire` frames over TLS made by this connector
    pub(crate) tls: Option<tokio_rustls::TlsConnector>,
}

pub(crate) struct PeerConnection {
    id: ReplicaId,
    target: ReplicaId,
    base: String,
    client: reqwest::Client,
    framed: Option<Framed>,
}

/// The framed transport to one peer: its address and the open connection, if any.
struct Framed {
    connector: tokio_rustls::TlsConnector,
    addr: String,
    conn: Option<TlsStream<TcpStream>>,
}

/// Why one framed exchange failed.
enum ExchangeError {
    /// no connection could be made: nothing was sent
    Connect(std::io::Error),
    /// the connection broke during the exchange
    Io(std::io::Error),
}

/// How long opening a connection to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

impl Framed {
    /// One RPC as a frame from replica `id` to `target`, within the RPC's time limit.
    async fn call<Req, Resp, E>(
        &mut self,
        id: ReplicaId,
        target: ReplicaId,
        kind: u8,
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
        let frame = wire::encode(kind, req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let (answer_kind, body) = match tokio::time::timeout(timeout, self.exchange(&frame)).await {
            Err(_) => {
                self.conn = None;
                return Err(RPCError::Timeout(Timeout { action, id, target, timeout }));
            }
            Ok(Err(ExchangeError::Connect(e))) => return Err(RPCError::Unreachable(Unreachable::new(&e))),
            Ok(Err(ExchangeError::Io(e))) => return Err(RPCError::Network(NetworkError::new(&e))),
            Ok(Ok(answer)) => answer,
        };
        let reply: Result<Resp, RaftError<ReplicaId, E>> = match wire::decode_answer(answer_kind, &body) {
            Ok(reply) => reply,
            // the peer could not use the request: report it like a peer that is not there
            Err(wire::AnswerError::Refused(reason)) => {
                self.conn = None;
                return Err(RPCError::Unreachable(Unreachable::new(&std::io::Error::other(format!(
                    "peer {} refused the {action:?} request: {reason}",
                    self.addr
                )))));
            }
            Err(wire::AnswerError::Undecodable(e)) => {
                self.conn = None;
                return Err(RPCError::Network(NetworkError::new(&e)));
            }
        };
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(target, e)))
    }

    async fn connect(&self) -> Result<TlsStream<TcpStream>, std::io::Error> {
        wire::connect(&self.connector, &self.addr, CONNECT_TIMEOUT).await
    }

    /// Sends one request frame and reads its answer. A kept-open connection that turns out to be
    /// dead (the peer restarted) is replaced once by a new one: Raft's RPCs may be repeated.
    async fn exchange(&mut self, frame: &[u8]) -> Result<(u8, Vec<u8>), ExchangeError> {
        let reused = self.conn.is_some();
        match self.exchange_once(frame).await {
            Err(ExchangeError::Io(_)) if reused => self.exchange_once(frame).await,
            other => other,
        }
    }

    async fn exchange_once(&mut self, frame: &[u8]) -> Result<(u8, Vec<u8>), ExchangeError> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect().await.map_err(ExchangeError::Connect)?,
        };
        let answer = wire::round_trip(&mut conn, frame).await.map_err(ExchangeError::Io)?;
        // only a connection that finished its exchange is kept: one dropped mid-way (error,
        // timeout) may still carry a late answer
        self.conn = Some(conn);
        Ok(answer)
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: ReplicaId, node: &Replica) -> Self::Network {
        PeerConnection {
            id: self.id,
            target,
            base: format!("{}://{}", self.scheme, node.peer_addr),
            client: self.client.clone(),
            framed: self.tls.clone().map(|connector| Framed { connector, addr: node.peer_addr.clone(), conn: None }),
        }
    }
}

impl PeerConnection {
    /// One RPC: as a frame when the framed transport is set up, else as an HTTP request.
    async fn call<Req, Resp, E>(
        &mut self,
        kind: u8,
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
        let (id, target) = (self.id, self.target);
        match self.framed.as_mut() {
            Some(framed) => framed.call(id, target, kind, action, req, option).await,
            None => self.call_http(path, action, req, option).await,
        }
    }

    async fn call_http<Req, Resp, E>(
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
        self.call(wire::APPEND, PATH_APPEND, RPCTypes::AppendEntries, &rpc, &option)
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
        self.call(wire::SNAPSHOT, PATH_SNAPSHOT, RPCTypes::InstallSnapshot, &rpc, &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<ReplicaId>,
        option: RPCOption,
    ) -> Result<VoteResponse<ReplicaId>, RPCError<ReplicaId, Replica, RaftError<ReplicaId>>> {
        self.call(wire::VOTE, PATH_VOTE, RPCTypes::Vote, &rpc, &option).await
    }

    fn backoff(&self) -> openraft::network::Backoff {
        // Short enough that a restarted peer is caught up quickly, long enough not to spin.
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}
