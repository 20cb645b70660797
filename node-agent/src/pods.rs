//! One pod on this node: a worker task that reconciles it, level-triggered, whenever the pod
//! changes and every second: sandbox, references, images, volumes, init containers (one after
//! the other, each to a successful exit, before any other container starts), containers
//! (created, started, restarted with back-off, killed on liveness failure), probes, and the
//! pod's status. On
//! graceful deletion it stops the containers within the grace period and deletes the pod object;
//! when the pod is gone it removes whatever is left.
//!
//! Sidecars (init containers with `restartPolicy: Always`, Kubernetes' native sidecars) take
//! their turn among the init containers but are not waited for to exit: once one has started
//! (its startup probe passed, if it has one) the next init container runs. They keep running
//! beside the pod's containers, restarted whatever the pod's restartPolicy, with probes, and
//! their readiness counts for the pod's. They are stopped after the pod's own containers, last
//! first: on deletion with what remains of the grace period, and in a pod whose containers have
//! all ended for good (restartPolicy Never or OnFailure) as soon as they have.
//!
//! What the worker knows is recorded in `D/pods/<uid>/state.json` before each container starts,
//! so a restarted agent adopts the running containers (same processes, same restart count)
//! instead of starting them again.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api::client::{Api, Client, DeleteParams, Patch, PatchParams};
use api::core::{Container, Pod, PodStatus};
use api::meta::Preconditions;
use api::pods::is_sidecar;
use jiff::Timestamp;
use runtime::container::{ContainerError, Runtime, Status};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use api::client::events::{EventType, Recorder};
use crate::podspec::{self, References};
use crate::probe::{self, ProbeKind, ProbeOutcome, ProbeState, ProbeTarget, Prober};
use crate::status::{self, ContainerView, Observed, PodView, Terminated};
use crate::network::{self, NetworkSlot};
use crate::{pull, sandbox, volumes};

/// First back-off after a crash; it doubles per restart up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A container that ran this long before exiting restarts without back-off.
pub const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// How often a worker looks at its pod when nothing happens.
pub const TICK: Duration = Duration::from_secs(1);
/// Grace period when the pod object is gone (force-deleted) and only leftovers are removed.
pub const ORPHAN_GRACE_SECONDS: u64 = 5;

/// What every pod worker shares.
pub struct PodContext {
    pub client: Client,
    pub runtime: Runtime,
    pub recorder: Recorder,
    pub data_dir: PathBuf,
    pub netns_dir: PathBuf,
    /// Per-boot state ([`crate::rundir`]): the pods' records and network files.
    pub run_dir: PathBuf,
    pub node_ip: String,
    /// How often references are fetched again when the pod does not change.
    pub resync: Duration,
    /// Image id -> last time a container was started from it (for image garbage collection).
    pub image_last_used: Mutex<HashMap<String, Timestamp>>,
    /// The node's pod network, `None` until the Node has a podCIDR and the bridge is up.
    pub network: NetworkSlot,
}

/// `RUN/pods/<uid>/state.json` (the run directory; an older agent kept it in `D/pods/<uid>`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PodRecord {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub start_time: Option<Timestamp>,
    #[serde(default)]
    pub containers: BTreeMap<String, ContainerRecord>,
    /// `spec.initContainers` by name; one that exited 0 is `done` and never runs again.
    #[serde(default)]
    pub init_containers: BTreeMap<String, ContainerRecord>,
}

impl ContainerRecord {
    /// Ended with exit code 0 and is not to run again: a completed init container.
    pub fn completed(&self) -> bool {
        self.done && self.last.as_ref().is_some_and(|t| t.exit_code == 0)
    }
}

/// One container of a [`PodRecord`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// The runtime container of the current run.
    #[serde(default)]
    pub id: Option<String>,
    /// The runtime container of the previous run, kept for `logs --previous`.
    #[serde(default)]
    pub previous_id: Option<String>,
    #[serde(default)]
    pub restart_count: i32,
    /// How many back-offs in a row; 0 restarts at once.
    #[serde(default)]
    pub backoff_level: u32,
    #[serde(default)]
    pub last: Option<Terminated>,
    #[serde(default)]
    pub image_id: String,
    /// The container exited and waits for its back-off until then.
    #[serde(default)]
    pub restart_after: Option<Timestamp>,
    /// The container ended and its restart policy does not restart it.
    #[serde(default)]
    pub done: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("cannot {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("the pod state file {path} is corrupt: {source}: remove it to let the agent start over")]
    Corrupt { path: PathBuf, source: serde_json::Error },
}

/// The runtime name of a container: `k8s_<container>_<pod>_<namespace>_<uid first 8>_<restart>`.
pub fn container_name(container: &str, pod: &str, namespace: &str, uid: &str, restart_count: i32) -> String {
    let short: String = uid.chars().take(8).collect();
    format!("k8s_{container}_{pod}_{namespace}_{short}_{restart_count}")
}

/// The uid prefix in a container name made by [`container_name`], if it is one.
pub fn uid_prefix_of(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("k8s_")?;
    let mut parts = rest.rsplitn(3, '_');
    let _restart = parts.next()?;
    let uid = parts.next()?;
    (uid.len() == 8 && parts.next().is_some()).then_some(uid)
}

/// The wait before restart number `level` (0: none; then 10 s doubling, at most 300 s).
pub fn backoff_delay(level: u32) -> Duration {
    if level == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32.checked_shl(level - 1).unwrap_or(u32::MAX);
    INITIAL_BACKOFF.checked_mul(factor).map_or(MAX_BACKOFF, |d| d.min(MAX_BACKOFF))
}

/// The restart policy of init containers under the pod's `policy`: a failed one runs again
/// unless the pod's policy is Never, and one that succeeded never does.
pub fn init_restart_policy(policy: &str) -> &'static str {
    if policy == "Never" { "Never" } else { "OnFailure" }
}

/// Whether a container gets probes: the pod's own and sidecars; a plain init container runs to
/// its end unprobed (the apiserver refuses probes on one).
fn is_probed(container: &Container, init: bool) -> bool {
    !init || is_sidecar(container)
}

/// The restart policy a container runs under: a sidecar's own, an init container's derived from
/// the pod's, or the pod's.
fn restart_policy_of(pod: &Pod, container: &Container, init: bool) -> String {
    let pod_policy = pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".to_string());
    match (init, is_sidecar(container)) {
        (true, true) => "Always".to_string(),
        (true, false) => init_restart_policy(&pod_policy).to_string(),
        (false, _) => pod_policy,
    }
}

/// A container to stop: (container name, runtime id).
pub type Stop = (String, String);

/// The order in which a pod's containers are stopped: everything but the sidecars at once, then
/// the sidecars one by one, last first. `sidecars` are the sidecars' names in the order of
/// `spec.initContainers`.
pub fn stop_order(ids: Vec<Stop>, sidecars: &[String]) -> (Vec<Stop>, Vec<Stop>) {
    let (mut later, first): (Vec<_>, Vec<_>) = ids.into_iter().partition(|(name, _)| sidecars.contains(name));
    let position = |name: &str| sidecars.iter().position(|s| s == name).unwrap_or(0);
    later.sort_by_key(|(name, _)| std::cmp::Reverse(position(name)));
    (first, later)
}

/// The least grace period a sidecar is stopped with when the pod's containers used up the rest
/// (kubelet's minimum).
pub const MIN_SIDECAR_GRACE_SECONDS: u64 = 2;

/// Whether a container that ended with `exit_code` is started again under `policy`.
pub fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// The directory of a pod's volumes on the disk (`D/pods/<uid>`).
pub fn pod_dir(data_dir: &Path, uid: &str) -> PathBuf {
    data_dir.join("pods").join(uid)
}

/// The directory of a pod's record and network files in the run directory (`RUN/pods/<uid>`).
pub fn pod_run_dir(run_dir: &Path, uid: &str) -> PathBuf {
    run_dir.join("pods").join(uid)
}

/// The directories holding pods' records, the run directory's first, then the data
/// directory's (where an agent of an earlier version kept them, and where volumes are).
pub fn record_dirs(run_dir: &Path, data_dir: &Path) -> [PathBuf; 2] {
    [run_dir.join("pods"), data_dir.join("pods")]
}

/// Reads a pod's record; `None` when there is none.
pub fn load_record(dir: &Path) -> Result<Option<PodRecord>, PodError> {
    let path = dir.join("state.json");
    match std::fs::read(&path) {
        Ok(data) => serde_json::from_slice(&data).map(Some).map_err(|source| PodError::Corrupt { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PodError::Io { action: "read", path, source }),
    }
}

/// Writes a pod's record atomically.
pub fn save_record(dir: &Path, record: &PodRecord) -> Result<(), PodError> {
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| PodError::Io { action, path, source }
    };
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let path = dir.join("state.json");
    let tmp = dir.join("state.json.tmp");
    let data = serde_json::to_vec_pretty(record).map_err(|source| PodError::Corrupt { path: path.clone(), source })?;
    std::fs::write(&tmp, data).map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("rename", &path))
}

/// Runs the worker of one pod until the pod is deleted (gracefully or not) and cleaned up.
/// `pods` carries the pod's latest version, `None` once it is gone from the API.
pub async fn run_worker(ctx: Arc<PodContext>, uid: String, mut pods: watch::Receiver<Option<Pod>>) {
    let mut worker = Worker::new(ctx, uid);
    loop {
        let latest = pods.borrow_and_update().clone();
        match latest {
            None => {
                worker.teardown(ORPHAN_GRACE_SECONDS, None).await;
                return;
            }
            Some(pod) if pod.metadata.deletion_timestamp.is_some() => {
                if worker.delete_gracefully(&pod).await {
                    return;
                }
            }
            Some(pod) => worker.sync(&pod).await,
        }
        tokio::select! {
            changed = pods.changed() => {
                if changed.is_err() {
                    // The dispatcher dropped the pod: it is gone.
                    worker.teardown(ORPHAN_GRACE_SECONDS, None).await;
                    return;
                }
            }
            () = tokio::time::sleep(TICK) => {}
        }
    }
}

/// `spec.terminationGracePeriodSeconds`, 30 by default.
pub fn grace_seconds(pod: &Pod) -> u64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .and_then(|g| u64::try_from(g).ok())
        .unwrap_or(30)
}

/// Probers of one running container.
struct Probes {
    startup: Option<Prober>,
    liveness: Option<Prober>,
    readiness: Option<Prober>,
}

struct Worker {
    ctx: Arc<PodContext>,
    uid: String,
    /// Volumes, on the disk.
    dir: PathBuf,
    /// The record and network files, in the run directory.
    run: PathBuf,
    record: PodRecord,
    loaded: bool,
    netns: Option<PathBuf>,
    /// The pod's address once its veth is up.
    pod_ip: Option<std::net::Ipv4Addr>,
    refs: Option<(References, Instant, String)>,
    probes: HashMap<String, Probes>,
    /// Per container: why it waits (reason, message), when it is not running.
    waiting: HashMap<String, (String, Option<String>)>,
    /// Per image: (back-off level, not before).
    pull_backoff: HashMap<String, (u32, Instant)>,
    /// Per container: the back-off deadline already reported with a BackOff event.
    reported_backoff: HashMap<String, Timestamp>,
    last_written: Option<(PodStatus, Instant)>,
    /// Where the pod's first start spent its time, logged (debug) once it is reported Running.
    timeline: Option<Timeline>,
}

/// The phases of a pod's first start on this node, from the moment its worker began: what a
/// slow `apply` to Running is made of on the node (see BENCHMARKS.md, "Orchestration").
struct Timeline {
    began: Instant,
    last: Instant,
    phases: Vec<(&'static str, Duration)>,
}

impl Timeline {
    fn new() -> Timeline {
        let now = Instant::now();
        Timeline { began: now, last: now, phases: Vec::new() }
    }

    /// Ends the phase `name` now.
    fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.phases.push((name, now - self.last));
        self.last = now;
    }

    fn render(&self) -> String {
        let phases: Vec<String> = self.phases.iter().map(|(n, d)| format!("{n} {}", d.as_millis())).collect();
        format!("{} ms: {}", self.began.elapsed().as_millis(), phases.join(", "))
    }
}

impl Worker {
    fn new(ctx: Arc<PodContext>, uid: String) -> Worker {
        let dir = pod_dir(&ctx.data_dir, &uid);
        let run = pod_run_dir(&ctx.run_dir, &uid);
        Worker {
            ctx,
            uid,
            dir,
            run,
            record: PodRecord::default(),
            loaded: false,
            netns: None,
            pod_ip: None,
            refs: None,
            probes: HashMap::new(),
            waiting: HashMap::new(),
            pull_backoff: HashMap::new(),
            reported_backoff: HashMap::new(),
            last_written: None,
            timeline: Some(Timeline::new()),
        }
    }

    /// Ends the phase `name` of the pod's first start (see [`Timeline`]).
    fn mark(&mut self, name: &'static str) {
        if let Some(t) = self.timeline.as_mut() {
            t.mark(name);
        }
    }

    fn load(&mut self) {
        if self.loaded {
            return;
        }
        // An agent of an earlier version kept the record on the disk.
        let loaded = match load_record(&self.run) {
            Ok(None) => load_record(&self.dir),
            other => other,
        };
        match loaded {
            Ok(Some(record)) => {
                tracing::info!(uid = %self.uid, pod = %record.name, "adopting the pod's containers from the state file");
                self.record = record;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "starting over without the pod's state"),
        }
        self.record.uid = self.uid.clone();
        self.loaded = true;
    }

    /// Records the pod's state, on the blocking pool (see [`crate::network::NodeNetwork::attach`]
    /// for why file writes stay off the runtime's workers).
    async fn save(&self) {
        let (dir, record) = (self.run.clone(), self.record.clone());
        let saved = tokio::task::spawn_blocking(move || save_record(&dir, &record)).await;
        let error = match saved {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::warn!(error, "cannot record the pod's state; a restarted agent may restart its containers");
    }

    async fn sync(&mut self, pod: &Pod) {
        self.load();
        let before = self.record.clone();
        self.record.namespace = pod.metadata.namespace.clone().unwrap_or_default();
        self.record.name = pod.metadata.name.clone().unwrap_or_default();
        if self.record.start_time.is_none() {
            self.record.start_time = Some(Timestamp::now());
        }
        if self.prepare(pod).await {
            let inits = pod.spec.as_ref().and_then(|s| s.init_containers.clone()).unwrap_or_default();
            let sidecars: Vec<Container> = inits.iter().filter(|c| is_sidecar(c)).cloned().collect();
            let containers = pod.spec.as_ref().map(|s| s.containers.clone()).unwrap_or_default();
            let initialized = self.sync_init_containers(pod, &inits).await;
            self.run_probes(pod, &sidecars, true).await;
            if initialized {
                for container in &containers {
                    let policy = restart_policy_of(pod, container, false);
                    self.sync_container(pod, container, false, &policy).await;
                }
                self.run_probes(pod, &containers, false).await;
                let ended = !containers.is_empty() && containers.iter().all(|c| self.record.containers.get(&c.name).is_some_and(|r| r.done));
                if ended {
                    self.stop_sidecars(pod, &sidecars).await;
                }
            } else {
                for container in &containers {
                    self.waiting.insert(container.name.clone(), ("PodInitializing".to_string(), None));
                }
            }
        }
        if self.record != before {
            self.save().await;
        }
        self.write_status(pod).await;
    }

    /// Sandbox, references and volumes; false (with every container waiting) when one failed.
    async fn prepare(&mut self, pod: &Pod) -> bool {
        let containers: Vec<String> = pod.spec.as_ref().map(|s| s.containers.iter().map(|c| c.name.clone()).collect()).unwrap_or_default();
        let fail = |worker: &mut Worker, reason: &str, message: String| {
            for name in &containers {
                worker.waiting.insert(name.clone(), (reason.to_string(), Some(message.clone())));
            }
        };
        if self.netns.is_none() {
            let (dir, uid) = (self.ctx.netns_dir.clone(), self.uid.clone());
            match tokio::task::spawn_blocking(move || sandbox::ensure(&dir, &uid)).await {
                Ok(Ok(path)) => {
                    self.netns = Some(path);
                    self.mark("netns");
                }
                Ok(Err(e)) => {
                    self.ctx.recorder.pod(pod, None, EventType::Warning, "FailedCreatePodSandBox", &format!("Failed to create pod sandbox: {e}"));
                    fail(self, "ContainerCreating", e.to_string());
                    return false;
                }
                Err(e) => {
                    fail(self, "ContainerCreating", e.to_string());
                    return false;
                }
            }
        }
        if self.pod_ip.is_none() {
            let Some(net) = self.ctx.network.borrow().clone() else {
                fail(self, "ContainerCreating", "waiting for the node's pod network: the Node has no spec.podCIDR yet".to_string());
                return false;
            };
            let Some(netns) = self.netns.clone() else { return false };
            match net.attach(pod, &self.uid, &netns, &self.run).await {
                Ok(ip) => {
                    self.pod_ip = Some(ip);
                    self.mark("attach");
                }
                Err(e) => {
                    self.ctx.recorder.pod(pod, None, EventType::Warning, "FailedCreatePodSandBox", &format!("Failed to set up the pod's network: {e}"));
                    fail(self, "ContainerCreating", e.to_string());
                    return false;
                }
            }
        }
        let version = pod.metadata.resource_version.clone().unwrap_or_default();
        let fresh = self.refs.as_ref().is_some_and(|(_, at, rv)| *rv == version && at.elapsed() < self.ctx.resync);
        if !fresh {
            match podspec::fetch_references(&self.ctx.client, pod).await {
                Ok(refs) => {
                    if let Err(e) = volumes::prepare_volumes(&self.dir, pod, &refs) {
                        let reason = e.reason();
                        self.ctx.recorder.pod(pod, None, EventType::Warning, reason, &format!("MountVolume.SetUp failed: {e}"));
                        fail(self, "ContainerCreating", e.to_string());
                        return false;
                    }
                    self.refs = Some((refs, Instant::now(), version));
                    self.mark("references");
                }
                Err(e) => {
                    let reason = e.reason();
                    self.ctx.recorder.pod(pod, None, EventType::Warning, "Failed", &format!("Error: {e}"));
                    fail(self, reason, e.to_string());
                    // Keep what was fetched before: running containers are not disturbed.
                    return self.refs.is_some();
                }
            }
        }
        true
    }

    /// Runs the init containers in order, each to completion, a sidecar until it has started;
    /// true once all have (or once one of the pod's own containers has run: from then on only
    /// the sidecars are kept running).
    async fn sync_init_containers(&mut self, pod: &Pod, inits: &[Container]) -> bool {
        let initialized = self.record.containers.values().any(|r| r.id.is_some() || r.last.is_some());
        for init in inits {
            let policy = restart_policy_of(pod, init, true);
            if is_sidecar(init) {
                self.sync_container(pod, init, true, &policy).await;
                if !initialized && !self.sidecar_started(&init.name) {
                    return false;
                }
                continue;
            }
            if initialized || self.record.init_containers.get(&init.name).is_some_and(ContainerRecord::completed) {
                continue;
            }
            self.sync_container(pod, init, true, &policy).await;
            if !self.record.init_containers.get(&init.name).is_some_and(ContainerRecord::completed) {
                // running, waiting for its back-off, or failed for good (restartPolicy Never)
                return false;
            }
        }
        true
    }

    /// Whether a sidecar runs and its startup probe, if any, has passed.
    fn sidecar_started(&self, name: &str) -> bool {
        let (running, started, _) = self.probed_state(name, self.record.init_containers.get(name));
        running && started
    }

    /// A probed container's (running, started, ready): running once it is up and its probers
    /// exist, started once its startup probe passed, ready once its readiness probe did too.
    fn probed_state(&self, name: &str, rec: Option<&ContainerRecord>) -> (bool, bool, bool) {
        let probes = self.probes.get(name);
        let running = rec.is_some_and(|r| r.id.is_some()) && !self.waiting.contains_key(name) && probes.is_some();
        let started = running && probes.is_some_and(|p| p.startup.as_ref().is_none_or(|s| s.state() == ProbeState::Success));
        let ready = started && probes.is_some_and(|p| p.readiness.as_ref().is_none_or(|r| r.state() == ProbeState::Success));
        (running, started, ready)
    }

    /// Stops the pod's sidecars, last first, once its own containers have all ended for good,
    /// and records them as ended so that they are not restarted.
    async fn stop_sidecars(&mut self, pod: &Pod, sidecars: &[Container]) {
        for sidecar in sidecars.iter().rev() {
            let name = &sidecar.name;
            let Some(rec) = self.record.init_containers.get(name) else { continue };
            if rec.done {
                continue;
            }
            match rec.id.clone() {
                Some(id) => {
                    self.probes.remove(name);
                    self.ctx.recorder.pod(pod, Some(name), EventType::Normal, "Killing", &format!("Stopping container {name}"));
                    let (runtime, grace) = (self.ctx.runtime.clone(), grace_seconds(pod));
                    let stopped = tokio::task::spawn_blocking(move || runtime.stop(&id, Some(grace))).await;
                    if let Ok(Err(e)) = stopped {
                        tracing::warn!(error = %e, container = %name, "cannot stop a sidecar");
                    }
                    // Finds it ended and, under Never, records it done.
                    self.sync_container(pod, sidecar, true, "Never").await;
                }
                None => {
                    // Waiting for its back-off: it is not started again.
                    if let Some(rec) = self.record.init_containers.get_mut(name) {
                        rec.done = true;
                        rec.restart_after = None;
                    }
                    self.waiting.remove(name);
                }
            }
        }
    }

    /// The records of init containers (`init`) or of the pod's containers.
    fn records(&mut self, init: bool) -> &mut BTreeMap<String, ContainerRecord> {
        if init { &mut self.record.init_containers } else { &mut self.record.containers }
    }

    /// Brings one container in line with its restart `policy`: adopts it while it runs, records
    /// its end, restarts it after its back-off, or leaves it ended.
    async fn sync_container(&mut self, pod: &Pod, container: &Container, init: bool, policy: &str) {
        let name = container.name.clone();
        let probed = is_probed(container, init);
        let mut rec = self.records(init).get(&name).cloned().unwrap_or_default();

        if let Some(id) = rec.id.clone() {
            let runtime = self.ctx.runtime.clone();
            let lookup = id.clone();
            let state = tokio::task::spawn_blocking(move || runtime.inspect(&lookup)).await;
            match state {
                Ok(Ok(st)) if st.status == Status::Running => {
                    rec.image_id = st.image.clone();
                    self.waiting.remove(&name);
                    if probed && !self.probes.contains_key(&name) {
                        let probes = new_probes(container, self.ctx.runtime.root(), Some(&st.image));
                        self.probes.insert(name.clone(), probes);
                    }
                    self.records(init).insert(name, rec);
                    return;
                }
                Ok(Ok(st)) if st.status == Status::Created => {
                    // Created but never started (the agent stopped in between): start it now.
                    self.start(pod, container, &mut rec, &id, init).await;
                    self.records(init).insert(name, rec);
                    return;
                }
                other => {
                    let ended = match other {
                        Ok(Ok(st)) => Terminated {
                            exit_code: st.exit_code,
                            reason: status::termination_reason(st.exit_code, st.oom_killed).to_string(),
                            message: (!st.error.is_empty()).then(|| st.error.clone()),
                            started_at: st.started_at,
                            finished_at: st.finished_at,
                            container_id: Some(id.clone()),
                        },
                        _ => Terminated {
                            exit_code: 137,
                            reason: "ContainerStatusUnknown".to_string(),
                            message: Some("the container could not be located when the pod was synced".to_string()),
                            started_at: None,
                            finished_at: Some(Timestamp::now()),
                            container_id: Some(id.clone()),
                        },
                    };
                    self.probes.remove(&name);
                    if let Some(previous) = rec.previous_id.replace(id) {
                        self.remove_container(previous).await;
                    }
                    rec.id = None;
                    let ran = match (ended.started_at, ended.finished_at) {
                        (Some(s), Some(f)) => f.duration_since(s).as_secs(),
                        _ => 0,
                    };
                    if ran >= BACKOFF_RESET.as_secs() as i64 {
                        rec.backoff_level = 0;
                    }
                    if should_restart(policy, ended.exit_code) {
                        let delay = backoff_delay(rec.backoff_level);
                        rec.restart_after = Some(Timestamp::now() + delay);
                        rec.backoff_level = rec.backoff_level.saturating_add(1);
                    } else {
                        rec.done = true;
                    }
                    rec.last = Some(ended);
                }
            }
        }

        if rec.done {
            self.waiting.remove(&name);
            self.records(init).insert(name, rec);
            return;
        }
        if let Some(after) = rec.restart_after {
            let now = Timestamp::now();
            if after > now {
                let secs = after.duration_since(now).as_secs().max(1);
                let pod_name = format!(
                    "{}_{}({})",
                    pod.metadata.name.as_deref().unwrap_or(""),
                    pod.metadata.namespace.as_deref().unwrap_or(""),
                    self.uid
                );
                let message = format!("back-off {}s restarting failed container={name} pod={pod_name}", backoff_delay(rec.backoff_level.saturating_sub(1)).as_secs().max(secs as u64));
                self.waiting.insert(name.clone(), ("CrashLoopBackOff".to_string(), Some(message)));
                if self.reported_backoff.get(&name) != Some(&after) {
                    self.reported_backoff.insert(name.clone(), after);
                    self.ctx.recorder.pod(pod, Some(&name), EventType::Warning, "BackOff", &format!("Back-off restarting failed container {name} in pod {pod_name}"));
                }
                self.records(init).insert(name, rec);
                return;
            }
        }
        self.create_and_start(pod, container, &mut rec, init).await;
        self.records(init).insert(name, rec);
    }

    async fn create_and_start(&mut self, pod: &Pod, container: &Container, rec: &mut ContainerRecord, init: bool) {
        let name = container.name.clone();
        let image = container.image.clone().unwrap_or_default();
        if !self.ensure_image(pod, container, &image).await {
            return;
        }
        self.mark("image");
        let (Some(netns), Some((refs, _, _))) = (self.netns.clone(), self.refs.as_ref()) else {
            return;
        };
        let mut opts = match podspec::run_options(pod, container, &self.dir, refs, &netns) {
            Ok(opts) => opts,
            Err(e) => {
                self.ctx.recorder.pod(pod, Some(&name), EventType::Warning, "Failed", &format!("Error: {e}"));
                self.waiting.insert(name, (e.reason().to_string(), Some(e.to_string())));
                return;
            }
        };
        let binds = network::pod::etc_binds(&self.run, &opts.volumes);
        opts.volumes.extend(binds);
        let restart_count = if rec.last.is_some() { rec.restart_count + 1 } else { rec.restart_count };
        let runtime_name = container_name(
            &name,
            pod.metadata.name.as_deref().unwrap_or(""),
            pod.metadata.namespace.as_deref().unwrap_or(""),
            &self.uid,
            restart_count,
        );
        opts.name = Some(runtime_name.clone());
        let runtime = self.ctx.runtime.clone();
        let created = tokio::task::spawn_blocking(move || {
            // Left by an agent that stopped between creating it and recording it.
            if runtime.resolve_id(&runtime_name).is_ok() {
                let _ = runtime.remove(&runtime_name, true);
            }
            runtime.create(&image, &opts)
        })
        .await;
        let id = match created {
            Ok(Ok(id)) => id,
            Ok(Err(e)) => return self.create_failed(pod, &name, rec, e.to_string()).await,
            Err(e) => return self.create_failed(pod, &name, rec, e.to_string()).await,
        };
        self.mark("create");
        rec.id = Some(id.clone());
        rec.restart_count = restart_count;
        rec.restart_after = None;
        // Recorded before it starts: an agent restarted from here on adopts it.
        self.records(init).insert(name.clone(), rec.clone());
        self.save().await;
        self.mark("save");
        self.ctx.recorder.pod(pod, Some(&name), EventType::Normal, "Created", &format!("Created container: {name}"));
        self.start(pod, container, rec, &id, init).await;
    }

    async fn create_failed(&mut self, pod: &Pod, name: &str, rec: &mut ContainerRecord, message: String) {
        self.ctx.recorder.pod(pod, Some(name), EventType::Warning, "Failed", &format!("Error: {message}"));
        self.waiting.insert(name.to_string(), ("CreateContainerError".to_string(), Some(message)));
        rec.restart_after = Some(Timestamp::now() + backoff_delay(rec.backoff_level.max(1)));
        rec.backoff_level = rec.backoff_level.saturating_add(1);
    }

    async fn start(&mut self, pod: &Pod, container: &Container, rec: &mut ContainerRecord, id: &str, init: bool) {
        let name = container.name.clone();
        let runtime = self.ctx.runtime.clone();
        let start_id = id.to_string();
        let started = tokio::task::spawn_blocking(move || {
            runtime.start(&start_id, &runtime::container::StartOptions::default()).map(|_| runtime.inspect(&start_id))
        })
        .await;
        self.mark("start");
        match started {
            Ok(Ok(state)) => {
                let image_id = state.as_ref().ok().map(|st| st.image.clone());
                if let Ok(st) = state {
                    rec.image_id = st.image.clone();
                    if let Ok(mut used) = self.ctx.image_last_used.lock() {
                        used.insert(st.image, Timestamp::now());
                    }
                }
                self.waiting.remove(&name);
                if is_probed(container, init) {
                    let probes = new_probes(container, self.ctx.runtime.root(), image_id.as_deref());
                    self.probes.insert(name.clone(), probes);
                }
                self.ctx.recorder.pod(pod, Some(&name), EventType::Normal, "Started", &format!("Started container {name}"));
            }
            Ok(Err(e)) => {
                // The next sync finds it not running and applies the restart policy.
                self.ctx.recorder.pod(pod, Some(&name), EventType::Warning, "Failed", &format!("Error: {e}"));
                self.waiting.insert(name, ("RunContainerError".to_string(), Some(e.to_string())));
            }
            Err(e) => {
                self.waiting.insert(name, ("RunContainerError".to_string(), Some(e.to_string())));
            }
        }
    }

    /// Pulls the image when the policy asks; false (with the container waiting) on failure.
    async fn ensure_image(&mut self, pod: &Pod, container: &Container, image: &str) -> bool {
        let name = container.name.clone();
        if let Some((_, until)) = self.pull_backoff.get(image) {
            if Instant::now() < *until {
                self.waiting.insert(name, ("ImagePullBackOff".to_string(), Some(format!("Back-off pulling image \"{image}\""))));
                return false;
            }
        }
        let policy = container.image_pull_policy.clone();
        let root = self.ctx.runtime.root().to_path_buf();
        let reference = runtime::reference::Reference::parse(image).ok();
        let always = reference.as_ref().and_then(|r| pull::effective_policy(r, policy.as_deref()).ok()) == Some(pull::PullPolicy::Always);
        let present = match reference.map(|r| r.full_name()) {
            Some(full) => {
                let root = root.clone();
                tokio::task::spawn_blocking(move || runtime::image::ImageStore::open(&root).and_then(|s| s.resolve(&full)).is_ok())
                    .await
                    .unwrap_or(false)
            }
            None => false,
        };
        if present && !always {
            self.ctx.recorder.pod(pod, Some(&name), EventType::Normal, "Pulled", &format!("Container image \"{image}\" already present on machine"));
            return true;
        }
        let secrets: Vec<api::core::Secret> = self.refs.as_ref().map(|(r, _, _)| r.secrets.values().cloned().collect()).unwrap_or_default();
        self.ctx.recorder.pod(pod, Some(&name), EventType::Normal, "Pulling", &format!("Pulling image \"{image}\""));
        let began = Instant::now();
        match pull::ensure_image(&root, image, policy.as_deref(), &secrets).await {
            Ok(()) => {
                self.pull_backoff.remove(image);
                self.ctx.recorder.pod(pod, Some(&name), EventType::Normal, "Pulled", &format!("Successfully pulled image \"{image}\" in {:.3}s", began.elapsed().as_secs_f64()));
                true
            }
            Err(e) => {
                let level = self.pull_backoff.get(image).map_or(1, |(l, _)| l + 1);
                self.pull_backoff.insert(image.to_string(), (level, Instant::now() + backoff_delay(level)));
                self.ctx.recorder.pod(pod, Some(&name), EventType::Warning, "Failed", &format!("Failed to pull image \"{image}\": {e}"));
                self.waiting.insert(name, (e.reason().to_string(), Some(e.to_string())));
                false
            }
        }
    }

    /// Runs the probes that are due of `containers` (init containers, that is sidecars, when
    /// `init`); a failed liveness or startup probe stops the container for its restart.
    async fn run_probes(&mut self, pod: &Pod, containers: &[Container], init: bool) {
        let now = Instant::now();
        for container in containers {
            let name = &container.name;
            let Some(id) = self.records(init).get(name).and_then(|r| r.id.clone()) else { continue };
            let Some(netns) = self.netns.clone() else { continue };
            let Some(probes) = self.probes.get_mut(name) else { continue };
            let target = ProbeTarget { netns, runtime_root: self.ctx.runtime.root().to_path_buf(), container_id: id.clone() };
            let mut failed: Option<&'static str> = None;
            let mut unhealthy: Vec<String> = Vec::new();
            let mut note = |kind: &str, outcome: ProbeOutcome| {
                if let ProbeOutcome::Failure(message) = outcome {
                    unhealthy.push(format!("{kind} probe failed: {message}"));
                }
            };
            if let Some(p) = probes.startup.as_mut() {
                if p.state() != ProbeState::Success && p.due(now) {
                    note("Startup", p.run(&target).await);
                    if p.state() == ProbeState::Failure {
                        failed = Some("startup");
                    }
                }
            }
            let started = probes.startup.as_ref().is_none_or(|p| p.state() == ProbeState::Success);
            if started && failed.is_none() {
                if let Some(p) = probes.liveness.as_mut() {
                    if p.due(now) {
                        note("Liveness", p.run(&target).await);
                        if p.state() == ProbeState::Failure {
                            failed = Some("liveness");
                        }
                    }
                }
                if let Some(p) = probes.readiness.as_mut() {
                    if p.due(now) {
                        note("Readiness", p.run(&target).await);
                    }
                }
            }
            for message in unhealthy {
                self.ctx.recorder.pod(pod, Some(name), EventType::Warning, "Unhealthy", &message);
            }
            if let Some(kind) = failed {
                self.probes.remove(name);
                self.ctx.recorder.pod(pod, Some(name), EventType::Normal, "Killing", &format!("Container {name} failed {kind} probe, will be restarted"));
                let grace = grace_seconds(pod);
                let runtime = self.ctx.runtime.clone();
                let _ = tokio::task::spawn_blocking(move || runtime.stop(&id, Some(grace))).await;
            }
        }
    }

    fn view(&self, pod: &Pod) -> PodView {
        let inits = pod.spec.as_ref().and_then(|s| s.init_containers.as_deref()).unwrap_or(&[]);
        let init_views = inits
            .iter()
            .map(|c| {
                let rec = self.record.init_containers.get(&c.name).cloned().unwrap_or_default();
                if is_sidecar(c) {
                    let (running, started, ready) = self.probed_state(&c.name, Some(&rec));
                    return ContainerView { sidecar: true, ..self.container_view(c, rec, running, "PodInitializing", ready, started) };
                }
                let running = rec.id.is_some() && !self.waiting.contains_key(&c.name);
                // a completed init container counts as ready, as kubelet reports it
                let ready = rec.completed();
                self.container_view(c, rec, running, "PodInitializing", ready, running)
            })
            .collect();
        let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or(&[]);
        let views = containers
            .iter()
            .map(|c| {
                let rec = self.record.containers.get(&c.name).cloned().unwrap_or_default();
                let (running, started, ready) = self.probed_state(&c.name, Some(&rec));
                self.container_view(c, rec, running, "ContainerCreating", ready, started)
            })
            .collect();
        PodView {
            init_containers: init_views,
            containers: views,
            host_ip: self.ctx.node_ip.clone(),
            pod_ip: self.pod_ip.map(|ip| ip.to_string()),
            start_time: self.record.start_time,
        }
    }

    /// What the status shows of one container (init or not): running, ended for good, or
    /// waiting for the reason recorded, `waiting_reason` when none is.
    fn container_view(
        &self,
        c: &Container,
        rec: ContainerRecord,
        running: bool,
        waiting_reason: &str,
        ready: bool,
        started: bool,
    ) -> ContainerView {
        let waiting = |reason: String, message| Observed::Waiting { reason, message };
        let state = if running {
            let started_at = self.started_at(rec.id.as_deref()).unwrap_or_else(Timestamp::now);
            Observed::Running { started_at }
        } else if rec.done {
            rec.last.clone().map(Observed::Terminated).unwrap_or_else(|| waiting(waiting_reason.to_string(), None))
        } else {
            let (reason, message) = self.waiting.get(&c.name).cloned().unwrap_or((waiting_reason.to_string(), None));
            waiting(reason, message)
        };
        ContainerView {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            image_id: rec.image_id.clone(),
            container_id: rec.id.clone().or_else(|| rec.last.as_ref().and_then(|l| l.container_id.clone())),
            last: if rec.done { None } else { rec.last },
            state,
            restart_count: rec.restart_count,
            ready,
            started,
            sidecar: false,
        }
    }

    fn started_at(&self, id: Option<&str>) -> Option<Timestamp> {
        self.ctx.runtime.inspect(id?).ok()?.started_at
    }

    async fn write_status(&mut self, pod: &Pod) {
        self.mark("sync");
        let computed = status::compute_status(pod, &self.view(pod), Timestamp::now());
        if !status::needs_write(pod.status.as_ref(), &computed) {
            return;
        }
        // Written a moment ago and not seen back yet: wait for the watch, unless it is late.
        if let Some((last, at)) = &self.last_written {
            if *last == computed && at.elapsed() < self.ctx.resync {
                return;
            }
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
        let patch = serde_json::json!({ "status": computed });
        match api.patch_status(pod.metadata.name.as_deref().unwrap_or(""), &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => {
                tracing::debug!(pod = ?pod.metadata.name, phase = ?computed.phase, "wrote the pod's status");
                if computed.phase.as_deref() == Some("Running") {
                    if let Some(mut t) = self.timeline.take() {
                        t.mark("status");
                        tracing::debug!(pod = ?pod.metadata.name, "pod Running after {}", t.render());
                    }
                }
                self.last_written = Some((computed, Instant::now()));
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => tracing::warn!(error = %e, pod = ?pod.metadata.name, "cannot write the pod's status; retrying"),
        }
    }

    async fn remove_container(&self, id: String) {
        let runtime = self.ctx.runtime.clone();
        let _ = tokio::task::spawn_blocking(move || runtime.remove(&id, true)).await;
    }

    /// Stops the pod's containers within its grace period, removes them and the sandbox, then
    /// deletes the pod object; true once the pod object is gone.
    async fn delete_gracefully(&mut self, pod: &Pod) -> bool {
        self.load();
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .and_then(|g| u64::try_from(g).ok())
            .unwrap_or_else(|| grace_seconds(pod));
        self.teardown(grace, Some(pod)).await;
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: Some(self.uid.clone()), resource_version: None }),
            ..Default::default()
        };
        match api.delete(pod.metadata.name.as_deref().unwrap_or(""), &params).await {
            Ok(_) => true,
            Err(e) if e.is_not_found() || e.is_conflict() => true,
            Err(e) => {
                tracing::warn!(error = %e, pod = ?pod.metadata.name, "cannot delete the pod object; retrying");
                false
            }
        }
    }

    /// Stops (within `grace` seconds) and removes one container of the pod, on the blocking pool;
    /// with `pod`, the stop of a recorded container is reported with a Killing event.
    fn stop_and_remove(&self, pod: Option<&Pod>, name: String, id: String, grace: u64) -> tokio::task::JoinHandle<()> {
        if let Some(pod) = pod {
            let recorded = self.record.containers.get(&name).or_else(|| self.record.init_containers.get(&name));
            if recorded.and_then(|r| r.id.as_deref()) == Some(id.as_str()) {
                self.ctx.recorder.pod(pod, Some(&name), EventType::Normal, "Killing", &format!("Stopping container {name}"));
            }
        }
        let runtime = self.ctx.runtime.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = runtime.stop(&id, Some(grace)) {
                if !matches!(e, ContainerError::NotFound(_)) {
                    tracing::warn!(error = %e, id, "cannot stop a container");
                }
            }
            if let Err(e) = runtime.remove(&id, true) {
                if !matches!(e, ContainerError::NotFound(_)) {
                    tracing::warn!(error = %e, id, "cannot remove a container");
                }
            }
        })
    }

    /// Stops and removes every container of the pod (those recorded and any other with its uid
    /// in the name), sidecars last, its volumes, sandbox and state directory.
    async fn teardown(&mut self, grace: u64, pod: Option<&Pod>) {
        self.load();
        let runtime = self.ctx.runtime.clone();
        let short: String = self.uid.chars().take(8).collect();
        let mut ids: Vec<(String, String)> = Vec::new();
        for (name, rec) in self.record.containers.iter().chain(&self.record.init_containers) {
            ids.extend(rec.id.iter().chain(rec.previous_id.iter()).map(|id| (name.clone(), id.clone())));
        }
        let listed = {
            let runtime = runtime.clone();
            tokio::task::spawn_blocking(move || runtime.list(true)).await
        };
        if let Ok(Ok(all)) = listed {
            for st in all {
                if uid_prefix_of(&st.name) == Some(short.as_str()) && !ids.iter().any(|(_, id)| *id == st.id) {
                    ids.push((st.name.clone(), st.id.clone()));
                }
            }
        }
        let sidecars: Vec<String> = pod
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.init_containers.as_ref())
            .map(|inits| inits.iter().filter(|c| is_sidecar(c)).map(|c| c.name.clone()).collect())
            .unwrap_or_default();
        let (first, last) = stop_order(ids, &sidecars);
        let began = Instant::now();
        let mut stops = Vec::new();
        for (name, id) in first {
            stops.push(self.stop_and_remove(pod, name, id, grace));
        }
        for stop in stops {
            let _ = stop.await;
        }
        for (name, id) in last {
            let left = grace.saturating_sub(began.elapsed().as_secs());
            let grace = if grace == 0 { 0 } else { left.max(MIN_SIDECAR_GRACE_SECONDS).min(grace) };
            let _ = self.stop_and_remove(pod, name, id, grace).await;
        }
        // Before the namespace goes: the hostPorts and the address (the veth goes with the
        // namespace). Without the network up yet, the next complete pod list frees them
        // (`release_missing`).
        let net = self.ctx.network.borrow().clone();
        if let Some(net) = net {
            if let Err(e) = net.detach(&self.uid).await {
                tracing::warn!(error = %e, uid = %self.uid, "cannot remove the pod's network");
            }
        }
        self.pod_ip = None;
        let (netns_dir, uid, dir, run) = (self.ctx.netns_dir.clone(), self.uid.clone(), self.dir.clone(), self.run.clone());
        let cleaned = tokio::task::spawn_blocking(move || {
            if let Err(e) = volumes::cleanup(&dir) {
                tracing::warn!(error = %e, "cannot unmount the pod's volumes");
            }
            for dir in [&dir, &run] {
                if let Err(e) = std::fs::remove_dir_all(dir) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(error = %e, dir = %dir.display(), "cannot remove the pod's directory");
                    }
                }
            }
            sandbox::remove(&netns_dir, &uid)
        })
        .await;
        if let Ok(Err(e)) = cleaned {
            tracing::warn!(error = %e, "cannot remove the pod's network namespace");
        }
        self.record.containers.clear();
        self.record.init_containers.clear();
        self.probes.clear();
        self.netns = None;
        tracing::info!(uid = %self.uid, "removed the pod's containers and sandbox");
    }
}

/// The probers of a container that just started: its probes, or, with none at all, the image's
/// HEALTHCHECK as a liveness probe (as Docker runs it).
fn new_probes(container: &Container, runtime_root: &Path, image_id: Option<&str>) -> Probes {
    let mut probes = Probes {
        startup: container.startup_probe.as_ref().map(|p| Prober::new(p, ProbeKind::Startup, container)),
        liveness: container.liveness_probe.as_ref().map(|p| Prober::new(p, ProbeKind::Liveness, container)),
        readiness: container.readiness_probe.as_ref().map(|p| Prober::new(p, ProbeKind::Readiness, container)),
    };
    if probes.startup.is_none() && probes.liveness.is_none() && probes.readiness.is_none() {
        if let Some(image) = image_id {
            match probe::image_healthcheck(runtime_root, image) {
                Ok(Some(hc)) => probes.liveness = probe::healthcheck_prober(&hc),
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, image, "cannot read the image's HEALTHCHECK"),
            }
        }
    }
    probes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_ten_seconds_to_five_minutes() {
        let secs: Vec<u64> = (0..9).map(|l| backoff_delay(l).as_secs()).collect();
        assert_eq!(secs, vec![0, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff_delay(1000), MAX_BACKOFF);
    }

    #[test]
    fn init_containers_restart_on_failure_unless_the_pod_says_never() {
        assert_eq!(init_restart_policy("Always"), "OnFailure");
        assert_eq!(init_restart_policy("OnFailure"), "OnFailure");
        assert_eq!(init_restart_policy("Never"), "Never");
        assert!(!should_restart(init_restart_policy("Always"), 0));
        assert!(should_restart(init_restart_policy("Always"), 1));
    }

    #[test]
    fn sidecars_always_restart_and_stop_after_the_other_containers_last_first() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"restartPolicy": "Never",
                     "initContainers": [{"name": "proxy", "restartPolicy": "Always"}, {"name": "setup"}],
                     "containers": [{"name": "app"}]}
        }))
        .expect("pod");
        let spec = pod.spec.as_ref().expect("spec");
        let inits = spec.init_containers.as_ref().expect("inits");
        assert!(is_sidecar(&inits[0]) && !is_sidecar(&inits[1]));
        assert_eq!(restart_policy_of(&pod, &inits[0], true), "Always");
        assert_eq!(restart_policy_of(&pod, &inits[1], true), "Never");
        assert_eq!(restart_policy_of(&pod, &spec.containers[0], false), "Never");

        let pair = |n: &str, id: &str| (n.to_string(), id.to_string());
        let ids = vec![pair("log", "1"), pair("app", "2"), pair("mesh", "3"), pair("log", "0"), pair("k8s_x_p_d_0a1b2c3d_0", "9")];
        let sidecars = ["mesh".to_string(), "log".to_string()];
        let (first, last) = stop_order(ids, &sidecars);
        assert_eq!(first, vec![pair("app", "2"), pair("k8s_x_p_d_0a1b2c3d_0", "9")]);
        assert_eq!(last, vec![pair("log", "1"), pair("log", "0"), pair("mesh", "3")], "the last sidecar stops first");
        let (first, last) = stop_order(vec![pair("app", "2")], &[]);
        assert_eq!((first.len(), last.len()), (1, 0));
    }

    #[test]
    fn restart_policies() {
        assert!(should_restart("Always", 0));
        assert!(should_restart("Always", 1));
        assert!(!should_restart("OnFailure", 0));
        assert!(should_restart("OnFailure", 2));
        assert!(!should_restart("Never", 2));
    }

    #[test]
    fn container_names_carry_the_uid_prefix() {
        let name = container_name("app", "web-7d4f", "default", "0a1b2c3d-4e5f-6789", 3);
        assert_eq!(name, "k8s_app_web-7d4f_default_0a1b2c3d_3");
        assert_eq!(uid_prefix_of(&name), Some("0a1b2c3d"));
        assert_eq!(uid_prefix_of("k8s_my_app_web_default_0a1b2c3d_0"), Some("0a1b2c3d"));
        assert_eq!(uid_prefix_of("web"), None);
        assert_eq!(uid_prefix_of("k8s_x_1"), None);
    }

    #[test]
    fn state_file_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load_record(dir.path()).expect("load"), None);
        let record = PodRecord {
            uid: "u-1".into(),
            namespace: "default".into(),
            name: "web".into(),
            start_time: Some(Timestamp::from_second(1_700_000_000).expect("ts")),
            containers: BTreeMap::from([(
                "app".to_string(),
                ContainerRecord {
                    id: Some("abc".into()),
                    previous_id: Some("old".into()),
                    restart_count: 2,
                    backoff_level: 1,
                    last: Some(Terminated { exit_code: 1, reason: "Error".into(), message: None, started_at: None, finished_at: None, container_id: Some("old".into()) }),
                    image_id: "sha256:1".into(),
                    restart_after: None,
                    done: false,
                },
            )]),
            init_containers: BTreeMap::from([(
                "init".to_string(),
                ContainerRecord {
                    previous_id: Some("i1".into()),
                    last: Some(Terminated { exit_code: 0, reason: "Completed".into(), message: None, started_at: None, finished_at: None, container_id: Some("i1".into()) }),
                    done: true,
                    ..Default::default()
                },
            )]),
        };
        assert!(record.init_containers["init"].completed() && !record.containers["app"].completed());
        save_record(dir.path(), &record).expect("save");
        assert_eq!(load_record(dir.path()).expect("load"), Some(record));
        std::fs::write(dir.path().join("state.json"), b"{not json").expect("write");
        assert!(matches!(load_record(dir.path()), Err(PodError::Corrupt { .. })));
    }
}
