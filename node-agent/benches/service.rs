//! Service path benchmark: requests per second and latency through a ClusterIP (the proxy's
//! nftables rules), through a userspace relay (a small tokio TCP proxy, the alternative design),
//! and straight to the pod IPs, on one machine.
//!
//! Everything runs in a private network namespace (see `tests/services.rs`, whose `lab` module
//! this includes): two busybox httpd pods on a bridge, the rendered service table applied there,
//! the relay listening on 127.0.0.1. Two workloads:
//! - `http`: one HTTP/1.0 GET per TCP connection against busybox httpd (what short-lived
//!   clients do; every request pays connection setup, DNAT or relay accept);
//! - `echo`: 64-byte ping-pong over persistent connections against an echo server in each pod
//!   (what pooled clients do; every message pays the per-packet cost only).
//!
//! Run as root: `cargo bench -p node-agent --bench service`. Knobs: `FLOTILLA_BENCH_SECS`
//! (per path, default 5) and `FLOTILLA_BENCH_CONNS` (concurrent clients, default 8).

#[allow(dead_code, unused_imports)]
#[path = "../tests/services.rs"]
mod services;

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsFd as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use services::lab;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const ECHO_PORT: u16 = 9000;
const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

fn main() {
    if !lab::available() {
        eprintln!("skipping: the service benchmark needs root with ip, nft, unshare, nsenter and busybox");
        return;
    }
    let secs = env_number("FLOTILLA_BENCH_SECS", 5);
    let conns = env_number("FLOTILLA_BENCH_CONNS", 8) as usize;
    let outcome = std::thread::spawn(move || -> Result<(), String> {
        lab::enter_node()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(bench(Duration::from_secs(secs), conns))
    })
    .join();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            eprintln!("service benchmark failed: {e}");
            std::process::exit(1);
        }
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

async fn bench(duration: Duration, conns: usize) -> Result<(), String> {
    let pods = [
        lab::Pod::start("pod-a", Ipv4Addr::new(10, 244, 0, 2))?,
        lab::Pod::start("pod-b", Ipv4Addr::new(10, 244, 0, 3))?,
    ];
    for pod in &pods {
        lab::wait_get((pod.ip, 8080).into(), Duration::from_secs(5)).await?;
        start_echo_server(pod)?;
    }
    let ips: Vec<Ipv4Addr> = pods.iter().map(|p| p.ip).collect();

    // The proxy's real rendering: one service with the http and echo ports.
    let svc: api::core::Service = serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "default", "name": "web"},
        "spec": {"clusterIP": CLUSTER_IP.to_string(), "ports": [
            {"name": "http", "protocol": "TCP", "port": 80},
            {"name": "echo", "protocol": "TCP", "port": ECHO_PORT}]}
    }))
    .map_err(|e| e.to_string())?;
    let mut eps = services::endpoints("default", "web", &ips, 8080);
    if let Some(subset) = eps.subsets.as_mut().and_then(|s| s.first_mut()) {
        subset.ports.get_or_insert_with(Vec::new).push(api::core::EndpointPort {
            name: Some("echo".into()),
            port: i32::from(ECHO_PORT),
            protocol: Some("TCP".into()),
            app_protocol: None,
        });
    }
    let body =
        node_agent::proxy::rules::render(&node_agent::proxy::rules::service_ports(&[svc], &[eps]), &[lab::NODE_IP]);
    runtime::network::nft::apply_table("inet", "flotilla-svc-bench", &body).await.map_err(|e| e.to_string())?;

    let http_relay = start_relay(ips.iter().map(|ip| SocketAddr::from((*ip, 8080))).collect()).await?;
    let echo_relay = start_relay(ips.iter().map(|ip| SocketAddr::from((*ip, ECHO_PORT))).collect()).await?;

    println!("service paths, {conns} concurrent clients, {}s each, one machine (private netns)", duration.as_secs());
    println!("{:<6} {:<22} {:>10} {:>9} {:>9} {:>7}", "load", "path", "req/s", "p50 ms", "p99 ms", "errors");
    let http_direct: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::from((*ip, 8080))).collect();
    let echo_direct: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::from((*ip, ECHO_PORT))).collect();
    let runs: [(&str, &str, Vec<SocketAddr>); 6] = [
        ("http", "direct pod IP", http_direct),
        ("http", "nftables ClusterIP", vec![(CLUSTER_IP, 80).into()]),
        ("http", "userspace relay", vec![http_relay]),
        ("echo", "direct pod IP", echo_direct),
        ("echo", "nftables ClusterIP", vec![(CLUSTER_IP, ECHO_PORT).into()]),
        ("echo", "userspace relay", vec![echo_relay]),
    ];
    for (load, path, targets) in runs {
        let result = if load == "http" {
            run_http(&targets, conns, duration).await
        } else {
            run_echo(&targets, conns, duration).await
        };
        println!(
            "{load:<6} {path:<22} {:>10.0} {:>9.3} {:>9.3} {:>7}",
            result.rps,
            result.p50.as_secs_f64() * 1e3,
            result.p99.as_secs_f64() * 1e3,
            result.errors
        );
    }
    // The table goes with the namespace; deleting it first keeps the rules' lifetime explicit.
    runtime::network::nft::delete_table("inet", "flotilla-svc-bench").await.map_err(|e| e.to_string())?;
    Ok(())
}

struct Outcome {
    rps: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
}

/// One GET per connection, `conns` clients in a loop, spreading over `targets` in turn.
async fn run_http(targets: &[SocketAddr], conns: usize, duration: Duration) -> Outcome {
    measure(conns, duration, targets.to_vec(), |targets, i| async move {
        let addr = targets[i % targets.len()];
        lab::get(addr).await.map(|_| ()).map_err(|e| e.to_string())
    })
    .await
}

/// 64-byte ping-pong on one persistent connection per client.
async fn run_echo(targets: &[SocketAddr], conns: usize, duration: Duration) -> Outcome {
    let deadline = Instant::now() + duration;
    let errors = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..conns {
        let addr = targets[c % targets.len()];
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let Ok(mut stream) = TcpStream::connect(addr).await else {
                errors.fetch_add(1, Ordering::Relaxed);
                return latencies;
            };
            let _ = stream.set_nodelay(true);
            let msg = [7u8; 64];
            let mut buf = [0u8; 64];
            while Instant::now() < deadline {
                let t = Instant::now();
                if stream.write_all(&msg).await.is_err() || stream.read_exact(&mut buf).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    summarize(all, duration, errors.load(Ordering::Relaxed))
}

async fn measure<F, Fut>(conns: usize, duration: Duration, targets: Vec<SocketAddr>, op: F) -> Outcome
where
    F: Fn(Arc<Vec<SocketAddr>>, usize) -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let targets = Arc::new(targets);
    let deadline = Instant::now() + duration;
    let errors = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..conns {
        let (targets, errors) = (targets.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = c;
            while Instant::now() < deadline {
                let t = Instant::now();
                match op(targets.clone(), i).await {
                    Ok(()) => latencies.push(t.elapsed()),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += 1;
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    summarize(all, duration, errors.load(Ordering::Relaxed))
}

fn summarize(mut latencies: Vec<Duration>, duration: Duration, errors: usize) -> Outcome {
    latencies.sort();
    let pick =
        |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1))).copied();
    Outcome {
        rps: latencies.len() as f64 / duration.as_secs_f64(),
        p50: pick(0.50).unwrap_or_default(),
        p99: pick(0.99).unwrap_or_default(),
        errors,
    }
}

/// The userspace alternative: accept, pick the next backend round-robin, copy both ways.
async fn start_relay(backends: Vec<SocketAddr>) -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let next = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let backend = backends[next.fetch_add(1, Ordering::Relaxed) % backends.len()];
            tokio::spawn(async move {
                let _ = client.set_nodelay(true);
                let Ok(mut upstream) = TcpStream::connect(backend).await else { return };
                let _ = upstream.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    Ok(addr)
}

/// An echo server on ECHO_PORT inside the pod's network namespace: a thread that joins the
/// namespace (setns is per thread) and serves each connection on a thread of its own.
fn start_echo_server(pod: &lab::Pod) -> Result<(), String> {
    let ns = std::fs::File::open(pod.netns()).map_err(|e| format!("{}: {e}", pod.netns().display()))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let bound = nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| e.to_string())
            .and_then(|()| std::net::TcpListener::bind(("0.0.0.0", ECHO_PORT)).map_err(|e| e.to_string()));
        let listener = match bound {
            Ok(l) => {
                let _ = tx.send(Ok(()));
                l
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut stream = stream;
                let _ = stream.set_nodelay(true);
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    rx.recv_timeout(Duration::from_secs(5)).map_err(|e| e.to_string())?
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
