//! Scheduler throughput, run by `cargo bench -p scheduler --bench throughput`.
//!
//! Two measurements for 1,000 and then 5,000 simulated nodes (Ready, large allocatable, nothing
//! runs them) and 10,000 pods (100m cpu, 128Mi, owned by one of 100 ReplicaSet uids):
//! - in-process: the pure decision (digest the pod, filter, score, assume) over a cache of the
//!   nodes, no API at all: decisions per second;
//! - end to end: a one-replica apiserver started through the test harness (deploy/local-cluster),
//!   the nodes and pods created through the API, then the `flotilla-scheduler` binary started;
//!   bindings per second from the first to the last binding, as seen by watching the pods;
//!   and, apart, when the last of the pods' `Scheduled` Events was written (the scheduler writes
//!   them off the bindings' path, so they may land later).
//!
//! The pod creation rate just before each end-to-end cell is printed too: the apiserver's write
//! capacity at that moment bounds the binding rate (a binding is one write, its Event another),
//! and on a shared machine it varies a lot from run to run.
//!
//! kube-scheduler is not run for comparison: there is no kube-scheduler binary (nor a
//! Kubernetes apiserver for it) on this machine. `FLOTILLA_BENCH_PODS` changes the pod count,
//! `FLOTILLA_BENCH_NODES` the node counts (comma-separated, increasing),
//! `FLOTILLA_BENCH_SCHEDULER_ARGS` adds flags to `flotilla-scheduler` (e.g. `--bind-batch 0` to
//! bind pod by pod as before the bulk route), `FLOTILLA_BENCH_SCHEDULER_LOG` its `RUST_LOG`
//! (default `warn`), and `FLOTILLA_BENCH_KEEP_LOGS=DIR` keeps its logs there. The CPU time the apiserver and the scheduler used
//! from the scheduler's start to the last binding is printed (from `/proc`), to tell which one
//! bounds the rate.
//!
//! A hand-written harness rather than criterion: the end-to-end cell drives external processes
//! and the output wanted is one table.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use api::client::watcher::{watcher, Event};
use api::client::{Api, Client, Config, ListParams, PostParams};
use api::core::{Event as CoreEvent, Namespace, Node, Pod};
use futures::{StreamExt as _, TryStreamExt as _};
use scheduler::{select, Cache, PodInfo};
use serde_json::json;

const NODE_COUNTS: [usize; 2] = [1000, 5000];

fn node_counts() -> Vec<usize> {
    let counts: Vec<usize> = std::env::var("FLOTILLA_BENCH_NODES")
        .unwrap_or_default()
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    if counts.is_empty() {
        NODE_COUNTS.to_vec()
    } else {
        counts
    }
}
const OWNERS: usize = 100;
/// Requests in flight while creating objects.
const CREATE_CONCURRENCY: usize = 64;
/// How long all pods of one cell may take to be bound.
const BIND_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the `Scheduled` Events may keep landing after the last binding.
const EVENTS_TIMEOUT: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    let pods = std::env::var("FLOTILLA_BENCH_PODS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(10_000)
        .max(2);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut rows = Vec::new();
    for nodes in node_counts() {
        let rate = in_process(nodes, pods);
        rows.push((nodes, rate, None));
    }
    match runtime.block_on(end_to_end(pods)) {
        Ok(results) => {
            for (row, result) in rows.iter_mut().zip(results) {
                row.2 = Some(result);
            }
        }
        Err(e) => eprintln!("bench: the end-to-end part failed: {e:#}"),
    }
    println!();
    println!("scheduler throughput, {pods} pods (kube-scheduler: not available on this machine, no comparison)");
    println!(
        "{:>6} | {:>22} | {:>24} | {:>22} | {:>28} | {:>20}",
        "nodes",
        "in-process decisions/s",
        "bound/s (first..last)",
        "all bound after start",
        "Scheduled events, last at",
        "apiserver creates/s"
    );
    for (nodes, rate, e2e) in rows {
        let (bound, total, events, creates) = match e2e {
            Some(r) => (
                format!("{:.0} ({}/{})", r.rate, r.bound, pods),
                format!("{:.2} s", r.since_start.as_secs_f64()),
                format!(
                    "{}/{} at {:.2} s",
                    r.events,
                    pods,
                    r.events_last.as_secs_f64()
                ),
                format!("{:.0}", r.create_rate),
            ),
            None => (
                "-".to_string(),
                "-".to_string(),
                "-".to_string(),
                "-".to_string(),
            ),
        };
        println!(
            "{nodes:>6} | {rate:>22.0} | {bound:>24} | {total:>22} | {events:>28} | {creates:>20}"
        );
    }
    ExitCode::SUCCESS
}

fn sim_node(i: usize) -> Node {
    from_json(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": format!("sim-node-{i:05}"), "labels": {"kubernetes.io/hostname": format!("sim-node-{i:05}")}},
        "status": {
            "capacity": {"cpu": "64", "memory": "256Gi", "pods": "110"},
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "simulated"}],
        },
    }))
}

fn sim_pod(namespace: &str, i: usize) -> Pod {
    from_json(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("p-{i:05}"),
            "namespace": namespace,
            "uid": format!("uid-{i}"),
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("rs-{}", i % OWNERS),
                "uid": format!("00000000-0000-0000-0000-{:012}", i % OWNERS), "controller": true,
            }],
        },
        "spec": {"containers": [{
            "name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        }]},
    }))
}

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    match serde_json::from_value(value) {
        Ok(v) => v,
        Err(e) => panic!("bench object does not decode: {e}"),
    }
}

/// Decisions per second with no API: digest, select, assume.
fn in_process(nodes: usize, pods: usize) -> f64 {
    let mut cache = Cache::new();
    for i in 0..nodes {
        cache.set_node(&sim_node(i));
    }
    let pods: Vec<Pod> = (0..pods).map(|i| sim_pod("bench", i)).collect();
    let started = Instant::now();
    let mut start = 0;
    let mut placed = 0usize;
    for pod in &pods {
        let info = PodInfo::from_pod(pod);
        if let Ok(placement) = select(&info, cache.nodes(), start) {
            start = placement.next_start;
            let node = cache.nodes()[placement.node].name.clone();
            cache.assume(info, &node);
            placed += 1;
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "bench: in-process, {nodes} nodes: {placed} pods placed in {:.3} s",
        elapsed.as_secs_f64()
    );
    placed as f64 / elapsed.as_secs_f64()
}

struct EndToEnd {
    bound: usize,
    /// Bindings per second between the first and the last seen.
    rate: f64,
    /// From starting the scheduler to the last binding.
    since_start: Duration,
    /// Pod creations per second just before, through the same apiserver: what it can write
    /// at the moment, for scale (a binding costs a write, its Scheduled Event another).
    create_rate: f64,
    /// `Scheduled` Events seen for the cell's pods.
    events: usize,
    /// From starting the scheduler to the last of those Events.
    events_last: Duration,
}

async fn end_to_end(pods: usize) -> anyhow::Result<Vec<EndToEnd>> {
    let cluster = tests::Cluster::up(1).context("starting an apiserver")?;
    let config = Config::from_kubeconfig(&cluster.kubeconfig(), None)?;
    let client = Client::new(config)?;
    let scheduler = Path::new(env!("CARGO_BIN_EXE_flotilla-scheduler"));
    let mut results = Vec::new();
    let mut created_nodes = 0;
    for nodes in node_counts() {
        let started = Instant::now();
        create_all(
            (created_nodes..nodes).map(sim_node).collect(),
            Api::<Node>::all(client.clone()),
        )
        .await
        .context("creating nodes")?;
        eprintln!(
            "bench: created {} nodes in {:.1} s",
            nodes - created_nodes,
            started.elapsed().as_secs_f64()
        );
        created_nodes = nodes;
        let namespace = format!("bench-{nodes}");
        let ns: Namespace = from_json(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        );
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .context("creating the namespace")?;
        let started = Instant::now();
        create_all(
            (0..pods).map(|i| sim_pod(&namespace, i)).collect(),
            Api::<Pod>::namespaced(client.clone(), &namespace),
        )
        .await
        .context("creating pods")?;
        let create_rate = pods as f64 / started.elapsed().as_secs_f64();
        eprintln!(
            "bench: created {pods} pods in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let log = std::fs::File::create(cluster.dir().join(format!("scheduler-{nodes}.log")))
            .context("creating the scheduler's log")?;
        let api = Api::<Pod>::namespaced(client.clone(), &namespace);
        let mut watch = watcher(api, ListParams::default());
        // The first answer is the list; after it every binding shows as an event.
        let mut seen: HashSet<String> = HashSet::new();
        match watch.try_next().await? {
            Some(Event::Restarted(list)) => {
                for pod in list {
                    if is_bound(&pod) {
                        seen.insert(pod.metadata.name.unwrap_or_default());
                    }
                }
            }
            other => bail!("the pod watch did not start with a list: {other:?}"),
        }
        let events = tokio::spawn(count_scheduled_events(
            Api::<CoreEvent>::namespaced(client.clone(), &namespace),
            pods,
        ));
        // The Event watch has listed (nothing) before the scheduler starts: give it a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let apiserver_pid = std::fs::read_to_string(cluster.dir().join("run/replica-1.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        let apiserver_cpu_before = apiserver_pid.and_then(cpu_seconds);
        let extra: Vec<String> = std::env::var("FLOTILLA_BENCH_SCHEDULER_ARGS")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let started = Instant::now();
        let child = Command::new(scheduler)
            .arg("--kubeconfig")
            .arg(cluster.kubeconfig())
            .args(["--identity", &format!("bench-{nodes}")])
            .args(&extra)
            .env(
                "RUST_LOG",
                std::env::var("FLOTILLA_BENCH_SCHEDULER_LOG")
                    .unwrap_or_else(|_| "warn".to_string()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting flotilla-scheduler")?;
        let mut child = ChildGuard(Some(child));
        let mut first = None;
        let mut last = started;
        let deadline = started + BIND_TIMEOUT;
        while seen.len() < pods {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let event = match tokio::time::timeout(remaining, watch.next()).await {
                Ok(Some(Ok(event))) => event,
                Ok(Some(Err(e))) => {
                    eprintln!("bench: pod watch error: {e}");
                    continue;
                }
                Ok(None) => bail!("the pod watch ended"),
                Err(_) => {
                    eprintln!("bench: timed out with {} of {pods} pods bound", seen.len());
                    break;
                }
            };
            let pods_seen = match event {
                Event::Applied(pod) => vec![pod],
                Event::Restarted(list) => list,
                Event::Deleted(_) => Vec::new(),
            };
            for pod in pods_seen {
                if is_bound(&pod) && seen.insert(pod.metadata.name.clone().unwrap_or_default()) {
                    let now = Instant::now();
                    first.get_or_insert(now);
                    last = now;
                }
            }
        }
        let bound_cpu = (
            apiserver_pid.and_then(cpu_seconds),
            child.0.as_ref().and_then(|c| cpu_seconds(c.id())),
        );
        let (events_seen, events_at) = match tokio::time::timeout(EVENTS_TIMEOUT, events).await {
            Ok(Ok(Ok(seen))) => seen,
            Ok(Ok(Err(e))) => {
                eprintln!("bench: the event watch failed: {e:#}");
                (0, started)
            }
            Ok(Err(e)) => {
                eprintln!("bench: the event watch stopped: {e}");
                (0, started)
            }
            Err(_) => {
                eprintln!("bench: timed out waiting for the Scheduled events");
                (0, started)
            }
        };
        child.stop();
        if let Ok(keep) = std::env::var("FLOTILLA_BENCH_KEEP_LOGS") {
            let name = format!("scheduler-{nodes}.log");
            if let Err(e) = std::fs::copy(cluster.dir().join(&name), Path::new(&keep).join(&name)) {
                eprintln!("bench: cannot keep the scheduler's log in {keep}: {e}");
            }
        }
        let first = first.unwrap_or(last);
        let span = last.duration_since(first).as_secs_f64();
        let rate = if span > 0.0 {
            (seen.len().saturating_sub(1)) as f64 / span
        } else {
            0.0
        };
        eprintln!(
            "bench: {nodes} nodes: {} pods bound, first after {:.2} s, last after {:.2} s; {events_seen} Scheduled events, last after {:.2} s",
            seen.len(),
            first.duration_since(started).as_secs_f64(),
            last.duration_since(started).as_secs_f64(),
            events_at.saturating_duration_since(started).as_secs_f64()
        );
        let span_since_start = last.duration_since(started).as_secs_f64().max(1e-3);
        match (apiserver_cpu_before, bound_cpu) {
            (Some(before), (Some(after), scheduler_cpu)) => eprintln!(
                "bench: {nodes} nodes: CPU from the scheduler's start to the last binding ({span_since_start:.2} s): apiserver {:.2} s ({:.0} %), scheduler {} (of 2 cores = 200 %)",
                after - before,
                100.0 * (after - before) / span_since_start,
                scheduler_cpu
                    .map(|c| format!("{c:.2} s ({:.0} %)", 100.0 * c / span_since_start))
                    .unwrap_or_else(|| "-".to_string()),
            ),
            _ => eprintln!("bench: cannot read the processes' CPU time from /proc"),
        }
        results.push(EndToEnd {
            bound: seen.len(),
            rate,
            since_start: last.duration_since(started),
            create_rate,
            events: events_seen,
            events_last: events_at.saturating_duration_since(started),
        });
    }
    Ok(results)
}

/// Watches the namespace's Events until `pods` distinct `Scheduled` ones were seen (or the
/// watch gives up); returns how many and when the last arrived.
async fn count_scheduled_events(
    api: Api<CoreEvent>,
    pods: usize,
) -> anyhow::Result<(usize, Instant)> {
    let mut watch = watcher(api, ListParams::default());
    let mut seen: HashSet<String> = HashSet::new();
    let mut last = Instant::now();
    let deadline = Instant::now() + BIND_TIMEOUT + EVENTS_TIMEOUT;
    while seen.len() < pods {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let events = match tokio::time::timeout(remaining, watch.next()).await {
            Ok(Some(Ok(Event::Applied(e)))) => vec![e],
            Ok(Some(Ok(Event::Restarted(list)))) => list,
            Ok(Some(Ok(Event::Deleted(_)))) => Vec::new(),
            Ok(Some(Err(e))) => {
                eprintln!("bench: event watch error: {e}");
                continue;
            }
            Ok(None) => bail!("the event watch ended"),
            Err(_) => break,
        };
        for e in events {
            if e.reason.as_deref() == Some("Scheduled")
                && seen.insert(e.metadata.name.unwrap_or_default())
            {
                last = Instant::now();
            }
        }
    }
    Ok((seen.len(), last))
}

/// User plus system CPU time of a process so far, from `/proc/PID/stat` (Linux only).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name may hold spaces; the fields after its closing parenthesis do not
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// `sysconf(_SC_CLK_TCK)`, through `getconf` to avoid a libc dependency; 100 when unknown.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn is_bound(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

async fn create_all<K>(objects: Vec<K>, api: Api<K>) -> anyhow::Result<()>
where
    K: k8s_openapi::Resource + serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(objects)
        .map(|object| {
            let api = api.clone();
            async move {
                match api.create(&PostParams::default(), &object).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_already_exists() => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Stops the scheduler with SIGTERM (it releases its Lease, so the next one starts at once),
/// also when the benchmark fails half-way.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn stop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            for _ in 0..50 {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}
