//! `flotilla-controllers`: runs the reconcile loops of the control plane (ReplicaSet, Deployment,
//! Endpoints, node lifecycle, garbage collection) in one process, each as a task, while this
//! process holds the `kube-system/flotilla-controllers` Lease.
//!
//! SIGTERM or SIGINT sets the shutdown signal: the tasks return, the Lease is released and the
//! process exits 0. Losing the Lease exits 1 at once so a supervisor restarts it as a stand-by.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use api::client::leader::LeaderElector;
use api::client::{Client, Config};
use clap::Parser;
use controllers::{deployment, endpoints, gc, nodelifecycle, replicaset, ControllerError};
use tokio::sync::watch;
use tokio::task::JoinSet;

const LEASE_NAME: &str = "flotilla-controllers";
/// Kubernetes components' default lease duration.
const LEASE_DURATION: Duration = Duration::from_secs(15);
const ALL: [&str; 5] = [
    "replicaset",
    "deployment",
    "endpoints",
    "nodelifecycle",
    "gc",
];

#[derive(Parser, Debug)]
#[command(name = "flotilla-controllers", about = "Runs Flotilla's controllers")]
struct Args {
    /// Kubeconfig with the controllers' credential (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Name under which this instance campaigns for the Lease (default: hostname and pid).
    #[arg(long)]
    identity: Option<String>,
    /// Namespace of the leader-election Lease.
    #[arg(long, default_value = "kube-system")]
    lease_namespace: String,
    /// How long a node's Lease may go unrenewed before the node is marked NotReady.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: Duration,
    /// How long pods stay on an unreachable node before they are evicted (unless they tolerate it).
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pod_eviction_timeout: Duration,
    /// The IPv4 range node pod CIDRs are taken from.
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: String,
    /// Prefix length of each node's pod CIDR.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// `all`, or a comma-separated list of replicaset,deployment,endpoints,nodelifecycle,gc.
    #[arg(long, default_value = "all")]
    controllers: String,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let enabled = parse_controllers(&args.controllers)?;
    // Check the flags before campaigning, so a typo fails at once rather than after election.
    nodelifecycle::CidrAllocator::new(&args.cluster_cidr, args.node_cidr_mask_size)?;
    let config =
        Config::infer(args.kubeconfig.as_deref(), None).context("cannot load the kubeconfig")?;
    let client = Client::new(config).context("cannot build the API client")?;
    let identity = args.identity.clone().unwrap_or_else(default_identity);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        shutdown_tx.send_replace(true);
    });

    let elector = LeaderElector::new(
        client.clone(),
        &args.lease_namespace,
        LEASE_NAME,
        &identity,
        LEASE_DURATION,
    );
    tracing::info!(%identity, lease = %format!("{}/{LEASE_NAME}", args.lease_namespace), "campaigning for leadership");
    let mut leadership = {
        let mut shutdown = shutdown_rx.clone();
        tokio::select! {
            leadership = elector.acquire() => leadership.context("cannot campaign for the controllers' lease")?,
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
        }
    };

    let node_config = nodelifecycle::Config {
        node_monitor_grace_period: args.node_monitor_grace_period,
        pod_eviction_timeout: args.pod_eviction_timeout,
        cluster_cidr: args.cluster_cidr.clone(),
        node_cidr_mask_size: args.node_cidr_mask_size,
    };
    let mut tasks: JoinSet<(&'static str, Result<(), ControllerError>)> = JoinSet::new();
    for name in enabled {
        let client = client.clone();
        let shutdown = shutdown_rx.clone();
        let node_config = node_config.clone();
        tasks.spawn(async move {
            let result = match name {
                "replicaset" => replicaset::run(client, shutdown).await,
                "deployment" => deployment::run(client, shutdown).await,
                "endpoints" => endpoints::run(client, shutdown).await,
                "nodelifecycle" => nodelifecycle::run(client, node_config, shutdown).await,
                _ => gc::run(client, shutdown).await,
            };
            (name, result)
        });
        tracing::info!(controller = name, "started");
    }

    let mut shutdown = shutdown_rx.clone();
    loop {
        tokio::select! {
            _ = leadership.lost() => {
                tracing::error!("lost the controllers' lease, exiting so that a stand-by takes over");
                std::process::exit(1);
            }
            _ = shutdown.wait_for(|s| *s) => break,
            finished = tasks.join_next() => match finished {
                None => break,
                Some(Ok((name, Ok(())))) => tracing::info!(controller = name, "stopped"),
                // A controller that fails is fatal: running without it would silently leave
                // its objects unreconciled, so a supervisor restart is better.
                Some(Ok((name, Err(error)))) => {
                    anyhow::bail!("controller {name} failed: {error}");
                }
                Some(Err(error)) => anyhow::bail!("a controller task panicked: {error}"),
            }
        }
    }
    // Shutting down: let the controllers return, but not forever.
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        tracing::warn!("controllers did not stop within 10 s");
    }
    if let Err(error) = leadership.release().await {
        tracing::warn!(%error, "cannot release the lease; a stand-by takes over when it expires");
    }
    Ok(())
}

/// `all` or a comma-separated list of known controller names.
fn parse_controllers(value: &str) -> anyhow::Result<Vec<&'static str>> {
    let mut chosen = BTreeSet::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name == "all" {
            chosen.extend(ALL);
            continue;
        }
        match ALL.iter().find(|known| **known == name) {
            Some(known) => {
                chosen.insert(*known);
            }
            None => anyhow::bail!(
                "unknown controller {name:?} in --controllers; use all or some of {}",
                ALL.join(",")
            ),
        }
    }
    if chosen.is_empty() {
        anyhow::bail!(
            "--controllers names no controller; use all or some of {}",
            ALL.join(",")
        );
    }
    Ok(ALL.iter().copied().filter(|n| chosen.contains(n)).collect())
}

/// `40s`, `5m`, `1h30m`, `300` (seconds), via jiff's friendly duration format.
fn parse_duration(value: &str) -> Result<Duration, String> {
    let text = value.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let signed: jiff::SignedDuration = text
        .parse()
        .map_err(|e| format!("expected a duration such as 40s or 5m: {e}"))?;
    Duration::try_from(signed).map_err(|_| "the duration must not be negative".to_string())
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "controllers".to_string());
    format!("{host}-{}", std::process::id())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the controllers");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_flag() {
        assert_eq!(parse_controllers("all").ok(), Some(ALL.to_vec()));
        assert_eq!(
            parse_controllers("gc, endpoints").ok(),
            Some(vec!["endpoints", "gc"])
        );
        assert!(parse_controllers("gc,bogus").is_err());
        assert!(parse_controllers(",").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("40s"), Ok(Duration::from_secs(40)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("300"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
