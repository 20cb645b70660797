//! Time from `ctl apply` to Running, per pod, on three node agents with the image cached: run by
//! `cargo bench -p tests --bench orchestration` after `cargo build --release --bins` (BENCHMARKS.md
//! has the figures). Issue 6's target: every pod Running within 1 s p99.
//!
//! It starts `deploy/local-cluster up --nodes 3 --registry` through the test harness, pushes a
//! busybox image, warms each node's image cache with a 3-pod Deployment (spread one per node),
//! then measures two workloads: 100 bare Pods applied in one `ctl apply` of a List (scheduler +
//! agents), and a Deployment of 100 replicas (controllers + scheduler + agents). A pod's latency is
//! the time from the start of `ctl apply` to the first list in which it is Running (the list is
//! polled every 20 ms, so figures are rounded up to that). The whole run is bounded by deadlines.
//! Needs root and busybox-static.
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
    let Some(image) = c.push_busybox("busybox:bench", &["sleep", "3600"])? else {
        bail!("busybox-static is not installed");
    };
    // Warm every node's image cache.
    apply(&c, &deployment("warm", &image, 3))?;
    wait_running(&c, "app=warm", 3, Instant::now()).await?;
    ctl(&c, &["delete", "deployment", "warm"])?;
    wait_gone(&c, "app=warm").await?;

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
    apply(&c, &list)?;
    let times = wait_running(&c, "app=bare", PODS, start).await?;
    report("100 Pods (one apply)", &times);
    ctl(&c, &["delete", "pods", "-l", "app=bare"])?;
    wait_gone(&c, "app=bare").await?;

    let start = Instant::now();
    apply(&c, &deployment("bench", &image, PODS))?;
    let times = wait_running(&c, "app=bench", PODS, start).await?;
    report("Deployment, 100 replicas", &times);
    ctl(&c, &["delete", "deployment", "bench"])?;
    wait_gone(&c, "app=bench").await?;
    Ok(())
}

fn deployment(name: &str, image: &str, replicas: usize) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"terminationGracePeriodSeconds": 1,
                                          "containers": [{"name": "main", "image": image}]}}}})
}

fn report(name: &str, times: &[Duration]) {
    let mut ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
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

/// Polls until `want` pods of the selector are Running; returns each pod's time since `start`.
async fn wait_running(c: &Cluster, selector: &str, want: usize, start: Instant) -> anyhow::Result<Vec<Duration>> {
    let mut seen: BTreeMap<String, Duration> = BTreeMap::new();
    while seen.len() < want {
        if start.elapsed() > DEADLINE {
            bail!("only {} of {want} pods ({selector}) were Running after {DEADLINE:?}", seen.len());
        }
        for p in list(c, selector).await.context("listing pods")? {
            if p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null() {
                let name = p["metadata"]["name"].as_str().unwrap_or_default().to_string();
                seen.entry(name).or_insert_with(|| start.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(seen.into_values().collect())
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
