//! The agent's main loop: credentials, Node registration and heartbeat, the HTTPS server, and
//! the dispatcher that watches the pods bound to this node (plus a full list every resync
//! period) and keeps one worker per pod (see [`crate::pods`]). After each complete list it
//! removes what belongs to no listed pod: state directories, runtime containers and their
//! sandboxes, and their addresses and veths. Every minute it collects unused images when the disk
//! fills up. The pod network ([`crate::network`]) comes up in the background once the Node has a
//! podCIDR; pods wait for it.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::client::watcher::{watcher, Event};
use api::client::{Api, Client, ListParams};
use api::core::Pod;
use futures::StreamExt;
use runtime::container::Runtime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use api::client::events::Recorder;
use crate::join::{self, CredentialSource};
use crate::network;
use crate::node::{self, NodeConfig};
use crate::pods::{self, PodContext};
use crate::server;

/// The component name in Events.
pub const COMPONENT: &str = "kubelet";
/// Image GC starts above this share of the runtime root's filesystem used...
pub const IMAGE_GC_HIGH: f64 = 0.85;
/// ...and removes images until usage is at or below this one.
pub const IMAGE_GC_LOW: f64 = 0.80;

/// Everything `flotilla-node-agent` is started with.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub data_dir: PathBuf,
    pub node: NodeConfig,
    pub listen: SocketAddr,
    pub credentials: Option<CredentialSource>,
    pub resync: Duration,
    /// Where pod network namespaces are bind-mounted ([`crate::sandbox::NETNS_DIR`]).
    pub netns_dir: PathBuf,
    /// Per-boot state on a tmpfs ([`crate::rundir`]); `DATA_DIR/run` by default.
    pub run_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Join(#[from] join::JoinError),
    #[error("cannot create the API client: {0}")]
    Client(#[from] api::client::ClientError),
    #[error("cannot open the runtime root {path}: {source}")]
    Runtime { path: PathBuf, source: runtime::container::ContainerError },
    #[error("cannot create {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Server(#[from] server::ServerError),
    #[error(transparent)]
    RunDir(#[from] crate::rundir::RunDirError),
}

/// Runs the agent until the process is stopped.
pub async fn run(config: AgentConfig) -> Result<(), AgentError> {
    for dir in [config.data_dir.join("pods"), config.data_dir.join("runtime")] {
        std::fs::create_dir_all(&dir).map_err(|source| AgentError::Io { path: dir.clone(), source })?;
    }
    crate::rundir::ensure(&config.run_dir)?;
    let credentials = join::ensure_credentials(&config.data_dir, &config.node.name, &config.node.ip, config.credentials.as_ref()).await?;
    let client = Client::new(credentials.config.clone())?;
    let runtime_root = config.data_dir.join("runtime");
    let runtime = Runtime::open(&runtime_root).map_err(|source| AgentError::Runtime { path: runtime_root.clone(), source })?;

    let (network_slot, network) = watch::channel(None);
    let ctx = Arc::new(PodContext {
        client: client.clone(),
        runtime: runtime.clone(),
        recorder: Recorder::new(client.clone(), COMPONENT, Some(&config.node.name)),
        data_dir: config.data_dir.clone(),
        netns_dir: config.netns_dir.clone(),
        run_dir: config.run_dir.clone(),
        node_ip: config.node.ip.clone(),
        resync: config.resync,
        image_last_used: Mutex::new(HashMap::new()),
        network,
    });

    let listener = server::bind(config.listen).await?;
    let server_state = server::ServerState { runtime: runtime.clone(), data_dir: config.data_dir.clone(), run_dir: config.run_dir.clone() };
    tokio::spawn(server::serve(listener, server::tls_config(&credentials)?, server_state));

    let capacity = node::detect_capacity(&config.node);
    // Not Ready until the pod network is up (the heartbeat writes Ready=True then).
    let readiness = node::Readiness { ready: false, since: jiff::Timestamp::now() };
    let mut delay = Duration::from_secs(1);
    while let Err(e) = node::register(&client, &config.node, &capacity, readiness).await {
        tracing::warn!(error = %e, "node registration failed; retrying in {}s", delay.as_secs());
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
    tokio::spawn(node::heartbeat(client.clone(), config.node.clone(), capacity, readiness, ctx.network.clone()));
    let dirs = network::StateDirs { data_dir: config.data_dir.clone(), run_dir: config.run_dir.clone() };
    tokio::spawn(network::run(client.clone(), config.node.name.clone(), config.node.ip.clone(), dirs, network_slot));
    tokio::spawn(image_gc_loop(ctx.clone()));

    let api: Api<Pod> = Api::all(client.clone());
    let params = ListParams::default().fields(&format!("spec.nodeName={}", config.node.name));
    let mut events = watcher(api.clone(), params.clone());
    let mut dispatcher = Dispatcher { ctx, workers: HashMap::new() };
    let mut resync = tokio::time::interval(config.resync);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Applied(pod))) => dispatcher.apply(pod),
                Some(Ok(Event::Deleted(pod))) => dispatcher.gone(pod.metadata.uid.as_deref().unwrap_or("")),
                Some(Ok(Event::Restarted(pods))) => dispatcher.restart(pods).await,
                Some(Err(e)) => tracing::debug!(error = %e, "pod watch interrupted; the watcher resumes"),
                None => events = watcher(api.clone(), params.clone()),
            },
            _ = resync.tick() => {
                let mut all = Vec::new();
                let mut page = params.clone().limit(500);
                let listed = loop {
                    match api.list(&page).await {
                        Ok(list) => {
                            all.extend(list.items);
                            match list.metadata.continue_.filter(|c| !c.is_empty()) {
                                Some(token) => page = page.continue_token(&token),
                                None => break true,
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "listing this node's pods failed; the next resync retries");
                            break false;
                        }
                    }
                };
                if listed {
                    dispatcher.restart(all).await;
                }
            }
        }
    }
}

struct WorkerHandle {
    pods: watch::Sender<Option<Pod>>,
    task: JoinHandle<()>,
}

struct Dispatcher {
    ctx: Arc<PodContext>,
    workers: HashMap<String, WorkerHandle>,
}

impl Dispatcher {
    fn apply(&mut self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else { return };
        match self.workers.get(&uid) {
            Some(w) if !w.task.is_finished() => {
                w.pods.send_replace(Some(pod));
            }
            _ => self.spawn(uid, Some(pod)),
        }
    }

    fn gone(&mut self, uid: &str) {
        match self.workers.get(uid) {
            Some(w) if !w.task.is_finished() => {
                w.pods.send_replace(None);
            }
            _ => {
                self.workers.remove(uid);
            }
        }
    }

    fn spawn(&mut self, uid: String, pod: Option<Pod>) {
        let (tx, rx) = watch::channel(pod);
        let task = tokio::spawn(pods::run_worker(self.ctx.clone(), uid.clone(), rx));
        self.workers.insert(uid, WorkerHandle { pods: tx, task });
    }

    /// A complete list: every listed pod gets a worker; everything else is torn down.
    async fn restart(&mut self, pods: Vec<Pod>) {
        let listed: HashSet<String> = pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        for pod in pods {
            self.apply(pod);
        }
        let stale: Vec<String> = self.workers.keys().filter(|uid| !listed.contains(*uid)).cloned().collect();
        for uid in stale {
            self.gone(&uid);
        }
        // State left by an earlier run of the agent for pods that are gone: records and network
        // files in the run directory, volumes (and records of older agents) on the disk.
        for pods_dir in pods::record_dirs(&self.ctx.run_dir, &self.ctx.data_dir) {
            let Ok(entries) = std::fs::read_dir(&pods_dir) else { continue };
            for entry in entries.flatten() {
                let uid = entry.file_name().to_string_lossy().into_owned();
                if !listed.contains(&uid) && !self.workers.contains_key(&uid) {
                    tracing::info!(uid, "removing the leftovers of a pod that no longer exists");
                    self.spawn(uid, None);
                }
            }
        }
        self.workers.retain(|_, w| !w.task.is_finished());
        // Addresses, hostPorts and veths of pods that are gone (also from before a restart).
        let network = self.ctx.network.borrow().clone();
        if let Some(network) = network {
            let live: HashSet<String> = listed.iter().chain(self.workers.keys()).cloned().collect();
            if let Err(e) = network.release_missing(&live).await {
                tracing::warn!(error = %e, "cannot free the network of pods that no longer exist");
            }
        }
        // Runtime containers of pods no worker knows (their state file was lost).
        let prefixes: HashSet<String> = listed.iter().chain(self.workers.keys()).map(|u| u.chars().take(8).collect()).collect();
        let runtime = self.ctx.runtime.clone();
        let _ = tokio::task::spawn_blocking(move || remove_orphans(&runtime, &prefixes)).await;
    }
}

/// Force-removes the `k8s_` containers whose pod uid prefix is not in `known`.
fn remove_orphans(runtime: &Runtime, known: &HashSet<String>) {
    let Ok(all) = runtime.list(true) else { return };
    for st in all {
        if let Some(prefix) = pods::uid_prefix_of(&st.name) {
            if !known.contains(prefix) {
                tracing::info!(name = %st.name, "removing a container whose pod no longer exists");
                if let Err(e) = runtime.remove(&st.id, true) {
                    tracing::warn!(error = %e, name = %st.name, "cannot remove an orphaned container");
                }
            }
        }
    }
}

/// The share of the filesystem holding `path` that is used.
pub fn disk_usage(path: &Path) -> Option<f64> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    let total = s.blocks() as f64;
    if total == 0.0 {
        return None;
    }
    Some((total - s.blocks_free() as f64) / total)
}

/// Orders image ids for collection: least recently used first (never used: by creation time).
pub fn collection_order(candidates: &mut [(String, Option<jiff::Timestamp>)]) {
    candidates.sort_by_key(|(_, t)| t.map(|t| t.as_second()).unwrap_or(i64::MIN));
}

async fn image_gc_loop(ctx: Arc<PodContext>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let ctx = ctx.clone();
        let _ = tokio::task::spawn_blocking(move || collect_images(&ctx)).await;
    }
}

fn collect_images(ctx: &PodContext) {
    let root = ctx.runtime.root().to_path_buf();
    if disk_usage(&root).is_none_or(|u| u <= IMAGE_GC_HIGH) {
        return;
    }
    let Ok(store) = runtime::image::ImageStore::open(&root) else { return };
    let Ok(images) = store.list() else { return };
    let in_use: HashSet<String> = ctx.runtime.list(true).map(|cs| cs.into_iter().map(|c| c.image).collect()).unwrap_or_default();
    let last_used = ctx.image_last_used.lock().map(|m| m.clone()).unwrap_or_default();
    let mut candidates: Vec<(String, Option<jiff::Timestamp>)> = images
        .iter()
        .filter(|i| !in_use.contains(&i.full_id))
        .map(|i| (i.full_id.clone(), last_used.get(&i.full_id).copied().or(i.created)))
        .collect();
    candidates.dedup_by(|a, b| a.0 == b.0);
    collection_order(&mut candidates);
    for (id, _) in candidates {
        if disk_usage(&root).is_some_and(|u| u <= IMAGE_GC_LOW) {
            break;
        }
        let in_use_check = |image: &str| in_use.contains(image);
        match store.remove(&id, true, &in_use_check) {
            Ok(_) => {
                tracing::info!(image = %id, "removed an unused image: the disk is filling up");
                let _ = store.prune();
            }
            Err(e) => tracing::warn!(error = %e, image = %id, "cannot remove an unused image"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_first() {
        let t = |s| Some(jiff::Timestamp::from_second(s).expect("ts"));
        let mut c = vec![("b".to_string(), t(200)), ("a".to_string(), t(100)), ("never".to_string(), None)];
        collection_order(&mut c);
        let order: Vec<&str> = c.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(order, vec!["never", "a", "b"]);
    }
}
