//! Flotilla's apiserver: the Kubernetes REST and watch API over a Raft-replicated, durable store.
//!
//! Layout:
//! - [`store`]: the replicated store: openraft over a log kept in redb and a state machine made
//!   durable by snapshots; write forwarding to the leader, read-index reads, watch history, and
//!   the peer router that carries Raft's RPCs between replicas.
//! - [`http`]: the API router: Kubernetes paths, discovery, watch, patch formats, `Status`
//!   errors, the admin routes for cluster membership, node joins, and the pods/log and pods/exec
//!   relays to node agents.
//! - [`auth`]: bearer tokens (tokens.csv, and node tokens that joins record in the store) and
//!   the roles admin, viewer, bootstrap and node, with the node authorizer's graph.
//! - [`pki`]: `apiserver init`: the cluster CA, certificates, tokens and an admin kubeconfig.
//! - [`tls`]: rustls configurations and `serve(listener, tls, router, shutdown)`.
//! - [`server`]: one replica: the store and both listeners, started and stopped together.
//!
//! **Only this crate knows openraft; everything else reaches the store through the API.**

pub mod auth;
pub mod http;
pub mod pki;
pub mod server;
pub mod store;
pub mod tls;
