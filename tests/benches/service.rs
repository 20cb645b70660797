//! Requests per second and latency through a Service's cluster IP against the pod's IP directly,
//! with the client on the server's machine and on another machine: run by
//! `cargo bench -p tests --bench service` after `cargo build --release --bins` (BENCHMARKS.md has
//! the figures). Issue 7's target: the Service path costs under 10% throughput.
//!
//! It starts `deploy/local-cluster up --nodes 2 --machines --registry` through the test harness:
//! one busybox httpd pod on node-2 behind a ClusterIP Service, and an idle client pod on each
//! machine. The client is this process: worker threads that join a client pod's network namespace
//! (setns on /run/flotilla/netns/UID, which moves only the calling thread) and loop for a fixed
//! time over one request per TCP connection (`GET /` HTTP/1.0, read to EOF), as busybox httpd
//! closes every connection anyway. So each request pays for a new connection: the Service's
//! per-connection DNAT is in every measured request, the worst case for it. The two paths
//! alternate in 3 s cells, 3 per path, because the machine is shared and its load varies.
//! The data path is the kernel's and httpd's, so the figures do not depend on the profile the
//! Flotilla binaries were built with (`cargo test -p tests --bench service` runs it against the
//! debug build). Needs root and busybox-static.
//!
//! A hand-written harness, not criterion: one cell is a timed load against external processes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tests::{Cluster, Options};

/// Concurrent connections per cell.
const WORKERS: usize = 4;
const WARMUP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(3);
/// Measured cells per path, alternating between the paths.
const ROUNDS: usize = 3;

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
    let options = Options { replicas: 1, nodes: 2, registry: true, machines: true, env: Vec::new() };
    let c = Cluster::start(&options)?;
    let Some(image) = c.push_busybox("busybox:bench", &["sleep", "3600"])? else {
        bail!("busybox-static is not installed");
    };
    let script = "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www";
    apply(&c, &json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "server", "namespace": "default", "labels": {"app": "server"}},
        "spec": {"nodeName": "node-2", "containers": [{
            "name": "web", "image": image, "command": ["sh", "-c", script],
            "ports": [{"containerPort": 8080}],
            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}
        }]}
    }))?;
    for node in ["node-1", "node-2"] {
        apply(&c, &json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("client-{node}"), "namespace": "default"},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "image": image, "command": ["sleep", "3600"]}]}
        }))?;
    }
    apply(&c, &json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "server", "namespace": "default"},
        "spec": {"selector": {"app": "server"}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))?;
    let server = wait_ready(&c, "server").await?;
    let pod_ip = server["status"]["podIP"].as_str().context("the server pod has no IP")?.to_string();
    let svc = get(&c, "/api/v1/namespaces/default/services/server").await.context("the service")?;
    let cluster_ip = svc["spec"]["clusterIP"].as_str().context("the service has no cluster IP")?.to_string();
    let direct: SocketAddr = format!("{pod_ip}:8080").parse().context("the pod IP")?;
    let service: SocketAddr = format!("{cluster_ip}:80").parse().context("the cluster IP")?;

    println!(
        "service benchmark: {WORKERS} clients, one request per connection, {ROUNDS} x {}s per path, alternating (busybox httpd on node-2)",
        MEASURE.as_secs()
    );
    println!("{:<34} {:>9} {:>9} {:>9} {:>8}", "path", "req/s", "p50 ms", "p99 ms", "errors");
    for (client_node, placement) in [("node-2", "same machine"), ("node-1", "across machines")] {
        let client = wait_ready(&c, &format!("client-{client_node}")).await?;
        let uid = client["metadata"]["uid"].as_str().context("the client pod has no uid")?;
        let netns = PathBuf::from("/run/flotilla/netns").join(uid);
        // The Service rules follow the Endpoints within a second or so; wait until it answers.
        let deadline = Instant::now() + Duration::from_secs(30);
        while load(&netns, service, 1, Duration::from_millis(200))?.ok == 0 {
            if Instant::now() > deadline {
                bail!("the service {service} does not answer from {client_node}'s client pod");
            }
        }
        load(&netns, direct, WORKERS, WARMUP)?;
        // The two paths alternate, ROUNDS times each, so that a burst of load from the other
        // users of this machine hits both about equally.
        let paths = [("pod IP", direct), ("service cluster IP", service)];
        let mut totals: Vec<LoadResult> = paths.iter().map(|_| LoadResult { ok: 0, errors: 0, latencies: Vec::new() }).collect();
        for _ in 0..ROUNDS {
            for ((_, addr), total) in paths.iter().zip(totals.iter_mut()) {
                let r = load(&netns, *addr, WORKERS, MEASURE)?;
                total.ok += r.ok;
                total.errors += r.errors;
                total.latencies.extend(r.latencies);
            }
        }
        let mut cells = Vec::new();
        for ((name, _), total) in paths.iter().zip(totals.iter_mut()) {
            total.latencies.sort();
            println!(
                "{:<34} {:>9.0} {:>9.2} {:>9.2} {:>8}",
                format!("{name}, {placement}"),
                total.ok as f64 / (MEASURE.as_secs_f64() * ROUNDS as f64),
                percentile(&total.latencies, 0.50),
                percentile(&total.latencies, 0.99),
                total.errors
            );
            cells.push(total.ok as f64);
        }
        if let [d, s] = cells[..] {
            println!("{:<34} {:>8.1}%", format!("  service cost, {placement}"), (1.0 - s / d.max(1.0)) * 100.0);
        }
    }
    Ok(())
}

struct LoadResult {
    ok: usize,
    errors: usize,
    latencies: Vec<Duration>,
}

/// `workers` threads in `netns`, each looping one request per connection to `addr` for `time`.
fn load(netns: &std::path::Path, addr: SocketAddr, workers: usize, time: Duration) -> anyhow::Result<LoadResult> {
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let netns = netns.to_path_buf();
            std::thread::spawn(move || -> anyhow::Result<LoadResult> {
                let f = std::fs::File::open(&netns).with_context(|| format!("opening {}", netns.display()))?;
                nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("joining the network namespace {}", netns.display()))?;
                let mut r = LoadResult { ok: 0, errors: 0, latencies: Vec::new() };
                let end = Instant::now() + time;
                let mut buf = Vec::with_capacity(512);
                while Instant::now() < end {
                    let began = Instant::now();
                    buf.clear();
                    match request(addr, &mut buf) {
                        Ok(()) if buf.starts_with(b"HTTP/1.") && buf.windows(3).any(|w| w == b"200") => {
                            r.ok += 1;
                            r.latencies.push(began.elapsed());
                        }
                        _ => r.errors += 1,
                    }
                }
                Ok(r)
            })
        })
        .collect();
    let mut all = LoadResult { ok: 0, errors: 0, latencies: Vec::new() };
    for t in threads {
        let r = t.join().map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        all.ok += r.ok;
        all.errors += r.errors;
        all.latencies.extend(r.latencies);
    }
    all.latencies.sort();
    Ok(all)
}

fn request(addr: SocketAddr, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")?;
    s.read_to_end(buf)?;
    Ok(())
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

async fn get(c: &Cluster, path: &str) -> Option<Value> {
    let resp = c.http().ok()?.get(c.url(1, path)).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

async fn wait_ready(c: &Cluster, name: &str) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(p) = get(c, &format!("/api/v1/namespaces/default/pods/{name}")).await {
            let ready = p["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
            if ready && p["status"]["podIP"].is_string() {
                return Ok(p);
            }
        }
        if Instant::now() > deadline {
            bail!("pod {name} was not ready with an IP within 90 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn apply(c: &Cluster, manifest: &Value) -> anyhow::Result<()> {
    let name = manifest["metadata"]["name"].as_str().unwrap_or("manifest");
    let kind = manifest["kind"].as_str().unwrap_or("object");
    let file = c.dir().join(format!("bench-{kind}-{name}.json"));
    std::fs::write(&file, serde_json::to_vec_pretty(manifest)?).with_context(|| format!("writing {}", file.display()))?;
    let out = c.ctl(&["apply", "-f", &file.to_string_lossy()])?;
    if !out.status.success() {
        bail!("ctl apply of {kind} {name} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}
