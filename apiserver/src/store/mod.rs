//! The apiserver's Raft-replicated, durable store of objects by key.
//!
//! Layout: `types` holds the public data types and openraft's type configuration; `log_store`
//! keeps the Raft log, vote and committed index in a write-ahead log (fsynced before openraft
//! hears that entries are written); `state_machine` applies commands to an in-memory map, publishes watch
//! events and writes snapshots; `network` sends Raft RPCs to peers as JSON over HTTP(S); `peer`
//! is the router that receives them, plus write forwarding, read index, membership changes and
//! status. This module ties them together in [`Store`].
//!
//! Why writes are batched here: openraft 0.9's core awaits each entry's log fsync before it
//! takes the next client write, so one entry per write caps the leader at one write per fsync.
//! [`Store::write`] on the leader therefore queues the command; a batcher task proposes whatever
//! has queued as one [`Command::Batch`] entry while at most [`PROPOSALS_IN_FLIGHT`] proposals are
//! under way, so concurrent writes share each replica's fsync (group commit) and a lone write is
//! proposed at once, from the writer's own task, as a plain command.

mod log_store;
mod network;
mod peer;
mod state_machine;
mod types;
mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use openraft::error::{
    CheckIsLeaderError, ClientWriteError, ForwardToLeader, InitializeError, RaftError,
};
use openraft::{ChangeMembers, Config, ServerState, SnapshotPolicy};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

pub use types::{
    Applied, ApplyResult, ClusterStatus, Command, Event, EventKind, Replica, ReplicaId, ReplicaStatus,
    StoreError, TypeConfig,
};

use log_store::LogStore;
pub use wire::ALPN as RAFT_ALPN;
use peer::{MembershipChange, PeerReply};
use state_machine::{Live, Shared, StateMachine};
use types::Raft;

/// How many batches of writes the leader keeps proposed but not yet applied: two let one batch
/// take its fsync while the previous one is being replicated; more would only split batches.
pub const PROPOSALS_IN_FLIGHT: usize = 2;

/// The most commands one log entry holds, which bounds the entry's size.
pub const MAX_BATCH: usize = 128;

/// A stream of watch events; an `Err` item ends it.
pub type WatchStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<Event, StoreError>> + Send>>;

/// How to open a [`Store`].
pub struct StoreConfig {
    pub id: ReplicaId,
    pub data_dir: PathBuf,
    pub me: Replica,
    /// client for peer RPCs; the lead passes one with mutual TLS, tests may pass a plain one
    pub peer_client: reqwest::Client,
    /// "https" or "http"
    pub peer_scheme: &'static str,
    /// when set, Raft RPCs go as frames on a mutual-TLS connection per peer (see `wire`),
    /// made with this configuration (its ALPN must be [`RAFT_ALPN`]); otherwise as JSON over
    /// HTTP(S) through `peer_client` to the peer router
    pub raft_tls: Option<Arc<rustls::ClientConfig>>,
    /// events kept for watch-from-revision
    pub history_limit: usize,
    /// build a snapshot (and compact the log) after this many entries
    pub snapshot_every: u64,
    /// log entries kept behind the latest snapshot, so that a briefly lagging follower catches
    /// up from the log instead of a whole snapshot
    pub logs_kept_after_snapshot: u64,
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// how long a write or read barrier waits for a leader before failing with Unavailable
    pub leader_wait: Duration,
}

impl StoreConfig {
    /// A configuration with the default limits and timings.
    pub fn new(
        id: ReplicaId,
        data_dir: PathBuf,
        me: Replica,
        peer_client: reqwest::Client,
        peer_scheme: &'static str,
    ) -> Self {
        StoreConfig {
            id,
            data_dir,
            me,
            peer_client,
            peer_scheme,
            raft_tls: None,
            history_limit: 100_000,
            snapshot_every: 100_000,
            logs_kept_after_snapshot: 1_000,
            heartbeat_ms: 100,
            election_min_ms: 500,
            election_max_ms: 1000,
            leader_wait: Duration::from_secs(10),
        }
    }
}

/// A handle to this replica of the store; clones share it.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    id: ReplicaId,
    me: Replica,
    raft: Raft,
    shared: Arc<Shared>,
    client: reqwest::Client,
    scheme: &'static str,
    leader_wait: Duration,
    /// writes waiting for the batcher (see the module doc)
    proposals: tokio::sync::mpsc::UnboundedSender<Proposal>,
    /// how many writes are in `proposals` and not yet taken by the batcher
    queued: Arc<AtomicUsize>,
    /// one permit per proposal that may be under way at once
    slots: Arc<tokio::sync::Semaphore>,
    /// set: writes forwarded to the leader go as `wire` frames over TLS made by this connector
    forward_tls: Option<tokio_rustls::TlsConnector>,
    /// idle forwarding connections, by peer address
    forward_pool: std::sync::Mutex<Vec<(String, tokio_rustls::client::TlsStream<tokio::net::TcpStream>)>>,
}

/// Idle forwarding connections kept per replica (more are opened when writes are concurrent).
const FORWARD_POOL_MAX: usize = 64;

/// A write waiting to be proposed, and where its answer goes.
struct Proposal {
    cmd: Command,
    reply: tokio::sync::oneshot::Sender<PeerReply<(u64, ApplyResult)>>,
}

/// Why a forwarded request failed, and whether it may have been delivered.
enum ForwardError {
    /// the request never reached the peer: safe to retry
    NotSent(String),
    /// the peer may have acted on it
    Ambiguous(String),
}

impl Store {
    /// Opens the replica from `cfg.data_dir` (creating it) and starts its Raft node.
    pub async fn open(cfg: StoreConfig) -> Result<Store, StoreError> {
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
            StoreError::Storage(format!(
                "create data directory {}: {e}",
                cfg.data_dir.display()
            ))
        })?;
        let log = LogStore::open(cfg.data_dir.clone()).await?;
        let (sm, shared) =
            StateMachine::open(cfg.data_dir.join("snapshots"), cfg.history_limit).await?;
        let config = Config {
            cluster_name: "flotilla".to_string(),
            heartbeat_interval: cfg.heartbeat_ms,
            election_timeout_min: cfg.election_min_ms,
            election_timeout_max: cfg.election_max_ms,
            install_snapshot_timeout: 5_000,
            snapshot_max_chunk_size: 1 << 20,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_every.max(1)),
            max_in_snapshot_log_to_keep: cfg.logs_kept_after_snapshot,
            ..Default::default()
        }
        .validate()
        .map_err(|e| {
            StoreError::Storage(format!(
                "invalid raft configuration: {e}; check the timing options"
            ))
        })?;
        let network = network::PeerNetwork {
            id: cfg.id,
            client: cfg.peer_client.clone(),
            scheme: cfg.peer_scheme,
            tls: cfg.raft_tls.clone().map(tokio_rustls::TlsConnector::from),
        };
        let raft = Raft::new(cfg.id, Arc::new(config), network, log, sm)
            .await
            .map_err(|e| {
                StoreError::Storage(format!("start raft from {}: {e}", cfg.data_dir.display()))
            })?;
        let (proposals, waiting) = tokio::sync::mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let slots = Arc::new(tokio::sync::Semaphore::new(PROPOSALS_IN_FLIGHT));
        tokio::spawn(batcher(raft.clone(), cfg.id, waiting, queued.clone(), slots.clone()));
        Ok(Store {
            inner: Arc::new(Inner {
                id: cfg.id,
                me: cfg.me,
                raft,
                shared,
                client: cfg.peer_client,
                scheme: cfg.peer_scheme,
                leader_wait: cfg.leader_wait,
                proposals,
                queued,
                slots,
                forward_tls: cfg.raft_tls.clone().map(tokio_rustls::TlsConnector::from),
                forward_pool: std::sync::Mutex::new(Vec::new()),
            }),
        })
    }

    /// This replica's id.
    pub fn id(&self) -> ReplicaId {
        self.inner.id
    }

    /// First start of a cluster: every replica may call it with the same members; a no-op on an
    /// initialized replica.
    pub async fn initialize(
        &self,
        members: BTreeMap<ReplicaId, Replica>,
    ) -> Result<(), StoreError> {
        let initialized = self
            .inner
            .raft
            .is_initialized()
            .await
            .map_err(|e| unavailable(&e))?;
        if initialized {
            return Ok(());
        }
        match self.inner.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotInMembers(e))) => Err(
                StoreError::Membership(format!("{e}; list this replica among the initial members")),
            ),
            Err(RaftError::Fatal(e)) => Err(unavailable(&e)),
        }
    }

    /// The peer router: raft RPCs (append, vote, snapshot), write forwarding, read-index,
    /// membership changes and status. Serve it on the peer listener, apart from the Kubernetes
    /// paths.
    pub fn peer_router(&self) -> axum::Router {
        peer::router(self.clone())
    }

    /// Serves Raft RPC frames on a connection a peer opened with ALPN [`RAFT_ALPN`], until it
    /// closes or `stop` turns true.
    pub async fn serve_raft_connection<S>(
        &self,
        stream: S,
        peer: std::net::SocketAddr,
        stop: tokio::sync::watch::Receiver<bool>,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        wire::serve_connection(self.clone(), stream, peer, stop).await
    }

    /// Proposes `cmd`, forwarded to the leader when this replica is not it; waits out an
    /// election (for up to `leader_wait`) and then fails with Unavailable. Returns the revision
    /// (the change's, or the current one when the command was refused) and the result.
    pub async fn write(&self, cmd: Command) -> Result<(u64, ApplyResult), StoreError> {
        let c = cmd.clone();
        self.on_leader(
            peer::PATH_WRITE,
            &cmd,
            false,
            self.inner.leader_wait,
            || self.write_local(c.clone()),
        )
        .await
    }

    /// Linearizable read barrier (read index): the leader confirms its leadership, a follower
    /// asks the leader for its read index; then this replica waits until it has applied it.
    /// Returns the revision to read at.
    pub async fn read_barrier(&self) -> Result<u64, StoreError> {
        let start = Instant::now();
        let index = self
            .on_leader(
                peer::PATH_READ_INDEX,
                &(),
                true,
                self.inner.leader_wait,
                || self.read_index_local(),
            )
            .await?;
        let left = self
            .inner
            .leader_wait
            .saturating_sub(start.elapsed())
            .max(Duration::from_secs(1));
        self.wait_applied(index, left).await?;
        Ok(self.revision())
    }

    pub fn get(&self, key: &str) -> Option<Arc<serde_json::Value>> {
        self.inner.shared.read().objects.get(key).cloned()
    }

    /// All objects whose key starts with `prefix`, in key order, and the revision (last applied
    /// index) they were read at.
    pub fn list(&self, prefix: &str) -> (Vec<Arc<serde_json::Value>>, u64) {
        let d = self.inner.shared.read();
        let items = d
            .objects
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        (items, d.revision())
    }

    /// The index of the latest snapshot this replica holds (0 when none).
    pub fn snapshot_index(&self) -> u64 {
        self.inner
            .raft
            .metrics()
            .borrow()
            .snapshot
            .map(|l| l.index)
            .unwrap_or(0)
    }

    /// The index up to which this replica's log has been purged (0 when nothing was).
    pub fn purged_index(&self) -> u64 {
        self.inner
            .raft
            .metrics()
            .borrow()
            .purged
            .map(|l| l.index)
            .unwrap_or(0)
    }

    /// The leader this replica currently knows of.
    pub fn leader(&self) -> Option<ReplicaId> {
        self.inner.raft.metrics().borrow().current_leader
    }

    /// The revision of the latest applied change (see `state_machine`: the last applied log
    /// index, or ahead of it once writes were batched).
    pub fn revision(&self) -> u64 {
        self.inner.shared.read().revision()
    }

    /// Every event with revision > `from_revision` whose key starts with `prefix`, in order:
    /// first from the kept history, then live. A revision older than the kept history is Gone; a
    /// live receiver that falls behind (or meets a snapshot install) gets a final Gone item so
    /// that the client lists again.
    pub fn watch(&self, prefix: &str, from_revision: u64) -> Result<WatchStream, StoreError> {
        let shared = self.inner.shared.clone();
        // Subscribing under the read lock makes history and live events meet without a gap or
        // an overlap: apply publishes under the write lock.
        let (backlog, rx, last) = {
            let d = shared.read();
            if from_revision < d.floor {
                return Err(StoreError::Gone {
                    requested: from_revision,
                    oldest: d.floor,
                });
            }
            let backlog: Vec<Result<Event, StoreError>> = d
                .history
                .iter()
                .filter(|e| e.revision > from_revision && e.key.starts_with(prefix))
                .cloned()
                .map(Ok)
                .collect();
            (
                backlog,
                shared.live.subscribe(),
                from_revision.max(d.revision()),
            )
        };
        let prefix = prefix.to_string();
        let live = futures::stream::unfold(Some((rx, last)), move |state| {
            let prefix = prefix.clone();
            let shared = shared.clone();
            async move {
                let (mut rx, mut last) = state?;
                loop {
                    match rx.recv().await {
                        Ok(Live::Event(ev)) => {
                            if ev.revision > from_revision && ev.key.starts_with(&prefix) {
                                last = last.max(ev.revision);
                                return Some((Ok(ev), Some((rx, last))));
                            }
                        }
                        Ok(Live::Reset { revision }) => {
                            return Some((
                                Err(StoreError::Gone {
                                    requested: last,
                                    oldest: revision,
                                }),
                                None,
                            ))
                        }
                        Ok(Live::Closed) | Err(RecvError::Closed) => {
                            return Some((
                                Err(StoreError::Unavailable("the store is shutting down".into())),
                                None,
                            ))
                        }
                        Err(RecvError::Lagged(_)) => {
                            let oldest = shared.read().floor;
                            return Some((
                                Err(StoreError::Gone {
                                    requested: last,
                                    oldest,
                                }),
                                None,
                            ));
                        }
                    }
                }
            }
        });
        Ok(Box::pin(futures::stream::iter(backlog).chain(live)))
    }

    /// Adds a replica: first as a learner (waiting until it has caught up), then as a voter.
    pub async fn add_replica(&self, id: ReplicaId, replica: Replica) -> Result<(), StoreError> {
        let change = MembershipChange::Add { id, replica };
        let c = change.clone();
        // Catching up a learner may take a whole snapshot transfer: allow more than a write.
        let wait = self.inner.leader_wait * 6;
        self.on_leader(peer::PATH_MEMBERSHIP, &change, true, wait, || {
            self.membership_local(c.clone())
        })
        .await
    }

    /// Removes a replica from the cluster (voter or learner).
    pub async fn remove_replica(&self, id: ReplicaId) -> Result<(), StoreError> {
        let change = MembershipChange::Remove { id };
        let c = change.clone();
        self.on_leader(
            peer::PATH_MEMBERSHIP,
            &change,
            true,
            self.inner.leader_wait,
            || self.membership_local(c.clone()),
        )
        .await
    }

    /// This replica's view of the cluster: each member's own status fetched from its peer router
    /// with a short timeout (unreachable -> healthy false with the error).
    pub async fn cluster_status(&self) -> ClusterStatus {
        let metrics = self.inner.raft.metrics().borrow().clone();
        let nodes: Vec<(ReplicaId, Replica)> = metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.clone()))
            .collect();
        let voters: BTreeSet<ReplicaId> =
            metrics.membership_config.membership().voter_ids().collect();
        let fetches = nodes.into_iter().map(|(id, node)| {
            let voter = voters.contains(&id);
            async move {
                if id == self.inner.id {
                    return self.local_status();
                }
                let url = format!(
                    "{}://{}{}",
                    self.inner.scheme,
                    node.peer_addr,
                    peer::PATH_STATUS
                );
                let res = async {
                    let resp = self
                        .inner
                        .client
                        .get(&url)
                        .timeout(Duration::from_secs(1))
                        .send()
                        .await?;
                    resp.error_for_status()?.json::<ReplicaStatus>().await
                }
                .await;
                match res {
                    Ok(s) => s,
                    Err(e) => ReplicaStatus {
                        id,
                        api_addr: node.api_addr,
                        peer_addr: node.peer_addr,
                        role: "unknown".to_string(),
                        voter,
                        term: 0,
                        last_log_index: 0,
                        last_applied: 0,
                        healthy: false,
                        error: Some(format!("fetch {url}: {e}")),
                    },
                }
            }
        });
        let replicas = futures::future::join_all(fetches).await;
        ClusterStatus {
            leader: metrics.current_leader,
            replicas,
        }
    }

    /// Stops the Raft node; watches end with Unavailable. Safe to call more than once.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        let res = self.inner.raft.shutdown().await;
        let _ = self.inner.shared.live.send(Live::Closed);
        res.map_err(|e| StoreError::Storage(format!("stop raft: {e}")))
    }

    // ---- the leader-side operations, run locally or on behalf of a peer ----

    pub(crate) async fn write_local(&self, cmd: Command) -> PeerReply<(u64, ApplyResult)> {
        // A follower that knows the leader sends the write there without a round through its
        // own Raft core, which is busy taking the leader's entries.
        if let Some(leader) = self.known_other_leader() {
            return PeerReply::Retry {
                leader: Some(leader),
                reason: "not the leader".to_string(),
            };
        }
        // A lone write (nothing queued, a proposal slot free) is proposed from the caller's own
        // task: going through the batcher would cost two task hand-offs each way, a good part
        // of a write's latency at one client. (A caller that gives up mid-way frees its slot
        // early; the slots only shape batching, they guard nothing.)
        if self.inner.queued.load(Ordering::Acquire) == 0 {
            if let Ok(slot) = self.inner.slots.clone().try_acquire_owned() {
                let outcome = propose_entry(&self.inner.raft, self.inner.id, vec![cmd]).await;
                drop(slot);
                return match outcome {
                    Ok(mut results) => match results.pop() {
                        Some(result) => PeerReply::Ok(result),
                        None => PeerReply::Unavailable("a write was applied without a result".to_string()),
                    },
                    Err(e) => e,
                };
            }
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let gone = || {
            PeerReply::Unavailable(format!("replica {} is shutting down", self.inner.id))
        };
        self.inner.queued.fetch_add(1, Ordering::AcqRel);
        if self.inner.proposals.send(Proposal { cmd, reply }).is_err() {
            self.inner.queued.fetch_sub(1, Ordering::AcqRel);
            return gone();
        }
        answer.await.unwrap_or_else(|_| gone())
    }

    /// The leader with its address, when this replica follows another one.
    fn known_other_leader(&self) -> Option<(ReplicaId, Replica)> {
        let m = self.inner.raft.metrics().borrow().clone();
        if m.state == ServerState::Leader {
            return None;
        }
        let leader = m.current_leader.filter(|l| *l != self.inner.id)?;
        let node = m.membership_config.membership().get_node(&leader)?.clone();
        Some((leader, node))
    }

    pub(crate) async fn read_index_local(&self) -> PeerReply<u64> {
        match self.inner.raft.get_read_log_id().await {
            Ok((read, _applied)) => PeerReply::Ok(read.map(|l| l.index).unwrap_or(0)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                retry(f, "not the leader")
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => PeerReply::Retry {
                leader: None,
                reason: e.to_string(),
            },
            Err(RaftError::Fatal(e)) => {
                PeerReply::Unavailable(format!("replica {} stopped: {e}", self.inner.id))
            }
        }
    }

    pub(crate) async fn membership_local(&self, change: MembershipChange) -> PeerReply<()> {
        let raft = &self.inner.raft;
        let res = match change {
            MembershipChange::Add { id, replica } => {
                match raft.add_learner(id, replica, true).await {
                    Ok(_) => {
                        raft.change_membership(
                            ChangeMembers::AddVoterIds(BTreeSet::from([id])),
                            false,
                        )
                        .await
                    }
                    Err(e) => Err(e),
                }
            }
            MembershipChange::Remove { id } => {
                let is_voter = raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .voter_ids()
                    .any(|v| v == id);
                let change = if is_voter {
                    ChangeMembers::RemoveVoters(BTreeSet::from([id]))
                } else {
                    ChangeMembers::RemoveNodes(BTreeSet::from([id]))
                };
                raft.change_membership(change, false).await
            }
        };
        match res {
            Ok(_) => PeerReply::Ok(()),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                retry(f, "not the leader")
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                PeerReply::Refused(e.to_string())
            }
            Err(RaftError::Fatal(e)) => {
                PeerReply::Unavailable(format!("replica {} stopped: {e}", self.inner.id))
            }
        }
    }

    pub(crate) fn local_status(&self) -> ReplicaStatus {
        let m = self.inner.raft.metrics().borrow().clone();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        ReplicaStatus {
            id: self.inner.id,
            api_addr: self.inner.me.api_addr.clone(),
            peer_addr: self.inner.me.peer_addr.clone(),
            role: role.to_string(),
            voter: m
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == self.inner.id),
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
            healthy: m.running_state.is_ok() && m.state != ServerState::Shutdown,
            error: m.running_state.err().map(|e| e.to_string()),
        }
    }

    // ---- helpers ----

    /// Runs `local` here, or forwards `req` to the leader it names, retrying through elections
    /// until `wait` has passed. A forwarded request that may have reached the leader is retried
    /// only when `idempotent`.
    async fn on_leader<Req, T, F, Fut>(
        &self,
        path: &str,
        req: &Req,
        idempotent: bool,
        wait: Duration,
        local: F,
    ) -> Result<T, StoreError>
    where
        Req: Serialize,
        T: DeserializeOwned,
        F: Fn() -> Fut,
        Fut: Future<Output = PeerReply<T>>,
    {
        let deadline = Instant::now() + wait;
        let mut why;
        loop {
            let reply = match local().await {
                PeerReply::Retry {
                    leader: Some((id, node)),
                    ..
                } if id != self.inner.id => {
                    match self.forward::<Req, T>(&node, path, req, wait).await {
                        Ok(r) => r,
                        Err(ForwardError::NotSent(e)) => PeerReply::Retry {
                            leader: None,
                            reason: e,
                        },
                        Err(ForwardError::Ambiguous(e)) if idempotent => PeerReply::Retry {
                            leader: None,
                            reason: e,
                        },
                        Err(ForwardError::Ambiguous(e)) => {
                            return Err(StoreError::Unavailable(format!(
                                "{e}; the outcome is unknown, read the object before retrying"
                            )))
                        }
                    }
                }
                other => other,
            };
            match reply {
                PeerReply::Ok(t) => return Ok(t),
                PeerReply::Unavailable(e) => return Err(StoreError::Unavailable(e)),
                PeerReply::Refused(e) => return Err(StoreError::Membership(e)),
                PeerReply::Retry { reason, .. } => why = reason,
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Unavailable(format!(
                    "no leader could be reached within {wait:?} ({why}); check that a majority of replicas is up"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn forward<Req: Serialize, T: DeserializeOwned>(
        &self,
        leader: &Replica,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<PeerReply<T>, ForwardError> {
        if path == peer::PATH_WRITE {
            if let Some(connector) = &self.inner.forward_tls {
                return self.forward_framed(connector, leader, req, timeout).await;
            }
        }
        let url = format!("{}://{}{}", self.inner.scheme, leader.peer_addr, path);
        let resp = self
            .inner
            .client
            .post(&url)
            .timeout(timeout)
            .json(req)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    ForwardError::NotSent(format!("connect to leader at {url}: {e}"))
                } else {
                    ForwardError::Ambiguous(format!("forward to leader at {url}: {e}"))
                }
            })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ForwardError::Ambiguous(format!(
                "leader at {url} answered {status}"
            )));
        }
        resp.json::<PeerReply<T>>().await.map_err(|e| {
            ForwardError::Ambiguous(format!("read the answer of the leader at {url}: {e}"))
        })
    }

    /// Forwards a write to the leader as a [`wire::WRITE`] frame on a pooled connection: the
    /// same exchange as the HTTP route, without HTTP/2's task hand-offs on either side.
    async fn forward_framed<Req: Serialize, T: DeserializeOwned>(
        &self,
        connector: &tokio_rustls::TlsConnector,
        leader: &Replica,
        req: &Req,
        timeout: Duration,
    ) -> Result<PeerReply<T>, ForwardError> {
        let addr = &leader.peer_addr;
        let frame = wire::encode(wire::WRITE, req)
            .map_err(|e| ForwardError::NotSent(format!("encode the write for the leader at {addr}: {e}")))?;
        let pooled = {
            let mut pool = self.inner.forward_pool.lock().unwrap_or_else(|p| p.into_inner());
            let mut found = None;
            while let Some(i) = pool.iter().position(|(a, _)| a == addr) {
                let (_, mut conn) = pool.swap_remove(i);
                // a write is not repeatable, so a connection the leader closed (it restarted)
                // must be noticed before sending, not after
                if wire::looks_open(&mut conn) {
                    found = Some(conn);
                    break;
                }
            }
            found
        };
        let mut conn = match pooled {
            Some(c) => c,
            None => wire::connect(connector, addr, Duration::from_secs(1).min(timeout))
                .await
                .map_err(|e| ForwardError::NotSent(format!("connect to leader at {addr}: {e}")))?,
        };
        let (kind, body) = match tokio::time::timeout(timeout, wire::round_trip(&mut conn, &frame)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return Err(ForwardError::Ambiguous(format!("forward to leader at {addr}: {e}"))),
            Err(_) => return Err(ForwardError::Ambiguous(format!("forward to leader at {addr}: no answer within {timeout:?}"))),
        };
        let reply = wire::decode_answer::<PeerReply<T>>(kind, &body).map_err(|e| match e {
            wire::AnswerError::Refused(reason) => {
                ForwardError::Ambiguous(format!("the leader at {addr} refused the forwarded write: {reason}"))
            }
            wire::AnswerError::Undecodable(e) => {
                ForwardError::Ambiguous(format!("read the answer of the leader at {addr}: {e}"))
            }
        })?;
        let mut pool = self.inner.forward_pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < FORWARD_POOL_MAX {
            pool.push((addr.clone(), conn));
        }
        Ok(reply)
    }

    async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), StoreError> {
        let mut rx = self.inner.shared.applied.subscribe();
        let res = tokio::time::timeout(timeout, rx.wait_for(|a| *a >= index))
            .await
            .map(|r| r.map(|_| ()));
        match res {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(StoreError::Unavailable("the store is shutting down".into())),
            Err(_) => Err(StoreError::Unavailable(format!(
                "this replica did not apply index {index} within {timeout:?}; it may be cut off from the leader"
            ))),
        }
    }
}

/// Proposes queued writes: what queued while the previous proposals were under way goes out as
/// one entry (see the module doc). Ends when the store is dropped.
async fn batcher(
    raft: Raft,
    id: ReplicaId,
    mut waiting: tokio::sync::mpsc::UnboundedReceiver<Proposal>,
    queued: Arc<AtomicUsize>,
    slots: Arc<tokio::sync::Semaphore>,
) {
    while let Some(first) = waiting.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match waiting.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        queued.fetch_sub(batch.len(), Ordering::AcqRel);
        let raft = raft.clone();
        tokio::spawn(async move {
            propose(&raft, id, batch).await;
            drop(slot);
        });
    }
}

/// Proposes `batch` as one entry and answers each of its writers.
async fn propose(raft: &Raft, id: ReplicaId, batch: Vec<Proposal>) {
    let (cmds, replies): (Vec<Command>, Vec<_>) = batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
    // A writer that gave up waiting has dropped its receiver: nothing to tell it.
    match propose_entry(raft, id, cmds).await {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(PeerReply::Ok(result));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(e.clone());
            }
        }
    }
}

/// Proposes `cmds` as one log entry (a plain command when there is one) and returns one result
/// per command, in order.
async fn propose_entry(
    raft: &Raft,
    id: ReplicaId,
    mut cmds: Vec<Command>,
) -> Result<Vec<(u64, ApplyResult)>, PeerReply<(u64, ApplyResult)>> {
    let n = cmds.len();
    let entry = if n == 1 {
        cmds.remove(0)
    } else {
        Command::Batch(cmds)
    };
    match raft.client_write(entry).await {
        Ok(resp) if resp.data.len() == n => Ok(resp.data),
        Ok(resp) => Err(PeerReply::Unavailable(format!(
            "entry {} was applied with {} results for {n} commands",
            resp.log_id.index,
            resp.data.len()
        ))),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(retry(f, "not the leader"))
        }
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
            Err(PeerReply::Refused(e.to_string()))
        }
        Err(RaftError::Fatal(e)) => Err(PeerReply::Unavailable(format!(
            "replica {id} stopped: {e}"
        ))),
    }
}

fn retry<T>(f: ForwardToLeader<ReplicaId, Replica>, reason: &str) -> PeerReply<T> {
    PeerReply::Retry {
        leader: f.leader_id.zip(f.leader_node),
        reason: reason.to_string(),
    }
}

fn unavailable(e: &dyn std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("the raft node stopped: {e}"))
}
