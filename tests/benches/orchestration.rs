//! Time from `ctl apply` to Running, per pod, on three node agents with the image cached: run by
//! `cargo bench -p tests --bench orchestration` after `cargo build --release --bins` (BENCHMARKS.md
//! has the figures). Issue 6's target: every pod Running within 1 s p99.
//!
//! It starts `deploy/local-cluster up --nodes 3 --registry` through the test harness, pushes a
//! busybox image, warms each node's image cache with a 3-pod Deployment (spread one per node),
//! then measures two workloads: 100 bare Pods applied in one `ctl apply` of a List (scheduler +
//! agents), and a Deployment of 100 replicas (controllers + scheduler + agents). A pod's latency is
//! the time from the start of `ctl apply` to the first list in which it is Running (the list is
//! polled every 20 ms, from the start of `ctl apply` on, while it runs, so figures are rounded up
//! to that). The whole run is bounded by deadlines.
//! Needs root and busybox-static.
//!
//! Beside each workload's line it prints where the time went, from the same polls: when the pods
//! were first listed (created by `ctl apply` or the controllers), bound to a node, and Running,
//! and per node how many pods it ran and their p99; and how long each workload took to delete
//! (from `ctl delete` until the last pod is gone from the API). `FLOTILLA_BENCH_LOGS=DIR` copies the
//! cluster's logs (agents, scheduler, controllers, apiserver) to DIR before the cluster goes.
//!
//! A hand-written harness, not criterion: one cell is a timed rollout across external processes.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tests::{Cluster, Options};

const PODS: usize = 100;
const DEADLINE: Duration = Duration::from_secs(180);

fn main() -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let c = Cluster::start(&Options { replicas: 1, nodes: 3, registry: true, ..Options::default() })?;
    let result = measure(&c).await;
    if let Some(dest) = std::env::var_os("FLOTILLA_BENCH_LOGS") {
        copy_logs(&c.dir().join("logs"), std::path::Path::new(&dest))?;
    }
    result
}

async fn measure(c: &Cluster) -> anyhow::Result<()> {
    let Some(image) = c.push_busybox("busybox:bench", &["sleep", "3600"])? else {
        bail!("busybox-static is not installed");
    };
    // Warm every node's image cache.
    apply(c, &deployment("warm", &image, 3))?;
    wait_running(c, "app=warm", 3, Instant::now()).await?;
    ctl(c, &["delete", "deployment", "warm"])?;
    wait_gone(c, "app=warm").await?;

    println!("orchestration benchmark: {PODS} pods on 3 nodes, image cached (times from the start of `ctl apply`)");
    println!("{:<28} {:>9} {:>9} {:>9} {:>9}", "workload", "p50 ms", "p99 ms", "max ms", "all s");

    let items: Vec<Value> = (0..PODS)
        .map(|i| {
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": format!("bare-{i}"), "namespace": "default", "labels": {"app": "bare"}},
                   "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "main", "image": image}]}})
        })
        .collect();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    let start = Instant::now();
    let applying = apply_in_background(c, &list)?;
    let times = wait_running(c, "app=bare", PODS, start).await?;
    finish(applying).await?;
    report("100 Pods (one apply)", &times);
    let mut breakdowns = vec![("100 Pods", times)];
    let start = Instant::now();
    ctl(c, &["delete", "pods", "-l", "app=bare"])?;
    wait_gone(c, "app=bare").await?;
    let mut deletions = vec![("100 Pods", start.elapsed())];
    settle().await;

    let start = Instant::now();
    let applying = apply_in_background(c, &deployment("bench", &image, PODS))?;
    let times = wait_running(c, "app=bench", PODS, start).await?;
    finish(applying).await?;
    report("Deployment, 100 replicas", &times);
    breakdowns.push(("Deployment", times));
    for (name, times) in &breakdowns {
        breakdown(name, times);
    }
    let start = Instant::now();
    ctl(c, &["delete", "deployment", "bench"])?;
    wait_gone(c, "app=bench").await?;
    deletions.push(("Deployment", start.elapsed()));
    // Each pod has a 1 s grace period, which its busybox `sleep` (PID 1, no handler for SIGTERM)
    // uses up: the rest is the agents' teardown (containers, network, sandbox) and the API.
    for (name, took) in deletions {
        println!("  {name}: from `ctl delete` to every pod gone {:.2} s (grace period 1 s)", took.as_secs_f64());
    }
    Ok(())
}

/// When one pod was first listed, bound and Running, since the start of `ctl apply`.
#[derive(Clone, Debug, Default)]
struct PodTimes {
    node: String,
    listed: Duration,
    bound: Option<Duration>,
    running: Duration,
}

/// Prints p50/p99 of each phase and, per node, the pods it ran and their Running p99.
fn breakdown(name: &str, times: &[PodTimes]) {
    let pick = |mut v: Vec<Duration>, q: f64| -> f64 {
        v.sort();
        v.get(((v.len() as f64 * q).ceil() as usize).saturating_sub(1)).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let listed: Vec<Duration> = times.iter().map(|t| t.listed).collect();
    let to_bound: Vec<Duration> = times.iter().filter_map(|t| t.bound.map(|b| b.saturating_sub(t.listed))).collect();
    let to_running: Vec<Duration> = times.iter().map(|t| t.running.saturating_sub(t.bound.unwrap_or(t.listed))).collect();
    println!(
        "  {name}: listed p50/p99 {:.0}/{:.0} ms; listed -> bound {:.0}/{:.0} ms; bound -> Running {:.0}/{:.0} ms",
        pick(listed.clone(), 0.5),
        pick(listed, 0.99),
        pick(to_bound.clone(), 0.5),
        pick(to_bound, 0.99),
        pick(to_running.clone(), 0.5),
        pick(to_running, 0.99)
    );
    let mut nodes: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for t in times {
        nodes.entry(t.node.as_str()).or_default().push(t.running);
    }
    let per_node: Vec<String> =
        nodes.into_iter().map(|(node, v)| format!("{node} {} pods, p99 {:.0} ms", v.len(), pick(v, 0.99))).collect();
    println!("  {name} per node: {}", per_node.join("; "));
}

fn copy_logs(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))
            .with_context(|| format!("copying {} to {}", entry.path().display(), to.display()))?;
    }
    Ok(())
}

/// Waits `FLOTILLA_BENCH_SETTLE_MS` (default 0) between the workloads.
async fn settle() {
    let ms = std::env::var("FLOTILLA_BENCH_SETTLE_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

fn deployment(name: &str, image: &str, replicas: usize) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"terminationGracePeriodSeconds": 1,
                                          "containers": [{"name": "main", "image": image}]}}}})
}

fn report(name: &str, times: &[PodTimes]) {
    let mut ms: Vec<f64> = times.iter().map(|t| t.running.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let pick = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).saturating_sub(1).min(ms.len() - 1)];
    let all = ms.last().copied().unwrap_or(0.0) / 1000.0;
    println!("{name:<28} {:>9.0} {:>9.0} {:>9.0} {:>9.2}", pick(0.50), pick(0.99), ms.last().copied().unwrap_or(0.0), all);
}

fn apply(c: &Cluster, manifest: &Value) -> anyhow::Result<()> {
    let file = c.dir().join("bench-manifest.json");
    std::fs::write(&file, serde_json::to_vec(manifest)?)?;
    ctl(c, &["apply", "-f", &file.to_string_lossy()])
}

/// Starts `ctl apply` of `manifest` and returns at once, so that the pods are polled while it
/// runs (a List of 100 Pods takes `ctl` about a second to create).
fn apply_in_background(c: &Cluster, manifest: &Value) -> anyhow::Result<tokio::process::Child> {
    let file = c.dir().join("bench-manifest.json");
    std::fs::write(&file, serde_json::to_vec(manifest)?)?;
    let child = tokio::process::Command::new(tests::binary("ctl")?)
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .args(["apply", "-f"])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("starting ctl apply")?;
    Ok(child)
}

async fn finish(applying: tokio::process::Child) -> anyhow::Result<()> {
    let out = applying.wait_with_output().await.context("waiting for ctl apply")?;
    if !out.status.success() {
        bail!("ctl apply failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn ctl(c: &Cluster, args: &[&str]) -> anyhow::Result<()> {
    let out = c.ctl(args)?;
    if !out.status.success() {
        bail!("ctl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

async fn list(c: &Cluster, selector: &str) -> anyhow::Result<Vec<Value>> {
    let url = c.url(1, &format!("/api/v1/namespaces/default/pods?labelSelector={}", selector.replace('=', "%3D")));
    let v: Value = c.http()?.get(url).send().await?.error_for_status()?.json().await?;
    Ok(v["items"].as_array().cloned().unwrap_or_default())
}

/// Polls until `want` pods of the selector are Running; returns each pod's times since `start`.
async fn wait_running(c: &Cluster, selector: &str, want: usize, start: Instant) -> anyhow::Result<Vec<PodTimes>> {
    let mut seen: BTreeMap<String, PodTimes> = BTreeMap::new();
    let mut running = 0;
    while running < want {
        if start.elapsed() > DEADLINE {
            bail!("only {running} of {want} pods ({selector}) were Running after {DEADLINE:?}");
        }
        let items = list(c, selector).await.context("listing pods")?;
        let now = start.elapsed();
        for p in items {
            if !p["metadata"]["deletionTimestamp"].is_null() {
                continue;
            }
            let name = p["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let t = seen.entry(name).or_insert_with(|| PodTimes { listed: now, ..PodTimes::default() });
            if let Some(node) = p["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                if t.bound.is_none() {
                    t.bound = Some(now);
                    t.node = node.to_string();
                }
            }
            if p["status"]["phase"] == "Running" && t.running.is_zero() {
                t.running = now;
                running += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(seen.into_values().filter(|t| !t.running.is_zero()).collect())
}

async fn wait_gone(c: &Cluster, selector: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    while !list(c, selector).await?.is_empty() {
        if start.elapsed() > DEADLINE {
            bail!("pods ({selector}) still exist after {DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
