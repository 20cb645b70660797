//! One apiserver replica: the store, the peer listener (Raft, mutual TLS) and the API listener
//! (Kubernetes paths, TLS and bearer tokens), started and stopped together.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::auth::TokenFile;
use crate::http::{self, AppState};
use crate::pki::PkiPaths;
use crate::store::{Replica, ReplicaId, Store, StoreConfig};
use crate::tls;

pub struct ServeOptions {
    pub id: ReplicaId,
    pub data_dir: PathBuf,
    pub pki: PkiPaths,
    pub tokens: PathBuf,
    /// the addresses other replicas and clients use to reach this one
    pub me: Replica,
    /// every member of a new cluster (the same list on each); empty with `join`
    pub initial_cluster: BTreeMap<ReplicaId, Replica>,
    /// start as a new replica that an admin adds with `ctl cluster add-replica`
    pub join: bool,
    pub snapshot_every: Option<u64>,
}

/// Parses `1=127.0.0.1:6443/127.0.0.1:6444,2=...` (id=API-ADDRESS/PEER-ADDRESS).
pub fn parse_initial_cluster(s: &str) -> anyhow::Result<BTreeMap<ReplicaId, Replica>> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addrs) = part
            .split_once('=')
            .with_context(|| format!("--initial-cluster entry {part:?} must look like ID=API-HOST:PORT/PEER-HOST:PORT"))?;
        let id: ReplicaId = id.parse().with_context(|| format!("replica id {id:?} in --initial-cluster is not a number"))?;
        let (api_addr, peer_addr) = addrs
            .split_once('/')
            .with_context(|| format!("--initial-cluster entry {part:?} must give API-HOST:PORT/PEER-HOST:PORT"))?;
        if out.insert(id, Replica { api_addr: api_addr.to_string(), peer_addr: peer_addr.to_string() }).is_some() {
            anyhow::bail!("replica id {id} appears twice in --initial-cluster");
        }
    }
    Ok(out)
}

/// Runs a replica on already-bound listeners until `shutdown` resolves.
pub async fn run(
    opts: ServeOptions,
    api_listener: TcpListener,
    peer_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let tokens = TokenFile::load(&opts.tokens).with_context(|| format!("loading tokens from {}", opts.tokens.display()))?;
    let peer_client = tls::peer_client(&opts.pki).context("setting up the peer client certificate")?;
    let api_tls = tls::api_server_config(&opts.pki).context("loading the API serving certificate")?;
    let peer_tls = tls::peer_server_config(&opts.pki).context("loading the peer serving certificate")?;

    let mut cfg = StoreConfig::new(opts.id, opts.data_dir.clone(), opts.me.clone(), peer_client, "https");
    cfg.raft_tls = Some(tls::raft_client_config(&opts.pki).context("setting up the raft client certificate")?);
    if let Some(n) = opts.snapshot_every {
        cfg.snapshot_every = n;
    }
    let store = Store::open(cfg).await.with_context(|| format!("opening the store in {}", opts.data_dir.display()))?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let raft_store = store.clone();
    let raft = tls::AlpnProtocol {
        alpn: crate::store::RAFT_ALPN,
        handler: Arc::new(move |stream, peer, stop| {
            let store = raft_store.clone();
            Box::pin(async move { store.serve_raft_connection(stream, peer, stop).await })
        }),
    };
    let peer_task = tokio::spawn(tls::serve_with(
        peer_listener,
        Some(peer_tls),
        store.peer_router(),
        Some(raft),
        stopped(stop_rx.clone()),
    ));

    if !opts.join && !opts.initial_cluster.is_empty() {
        store.initialize(opts.initial_cluster.clone()).await.context("initializing the cluster membership")?;
    }

    let st = AppState::new(store.clone(), tokens, opts.me.api_addr.clone())
        .with_pki(opts.pki.clone())
        .context("setting up the client certificate for node agents")?;
    let api_task = tokio::spawn(tls::serve(api_listener, Some(api_tls), http::router(st.clone()), stopped(stop_rx.clone())));
    let background = {
        let st = st.clone();
        let tokens_path = opts.tokens.clone();
        tokio::spawn(async move {
            tokio::join!(
                http::resources::ensure_default_namespaces(&st),
                http::resources::namespace_lifecycle(st.clone()),
                http::watch_token_file(st.clone(), tokens_path),
                http::watch_node_tokens(st.clone()),
            );
        })
    };
    tracing::info!(id = opts.id, api = %opts.me.api_addr, peer = %opts.me.peer_addr, "apiserver replica serving");

    shutdown.await;
    tracing::info!(id = opts.id, "shutting down");
    let _ = stop_tx.send(true);
    background.abort();
    let _ = api_task.await;
    let _ = peer_task.await;
    store.shutdown().await.context("stopping the store")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_cluster_good_and_bad() {
        let m = parse_initial_cluster("1=127.0.0.1:1/127.0.0.1:2, 2=h:3/h:4").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[&2].peer_addr, "h:4");
        assert!(parse_initial_cluster("x=a:1/b:2").is_err());
        assert!(parse_initial_cluster("1=a:1").is_err());
        assert!(parse_initial_cluster("1a:1/b:2").is_err());
        assert!(parse_initial_cluster("1=a:1/b:2,1=c:1/d:2").is_err());
        assert!(parse_initial_cluster("").unwrap().is_empty());
    }
}
