//! `flotilla-scheduler`: waits to hold the `flotilla-scheduler` Lease, then schedules until it
//! loses it (exit status 1, so a supervisor restarts it as a stand-by) or is told to stop
//! (SIGTERM or Ctrl-C: the Lease is released so a stand-by takes over at once).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use api::client::leader::LeaderElector;
use api::client::{Client, Config};
use clap::Parser;
use scheduler::{Options, DEFAULT_SCHEDULER_NAME};

/// Binds pending pods to nodes; one instance acts at a time, the others stand by.
#[derive(Debug, Parser)]
#[command(name = "flotilla-scheduler", version)]
struct Args {
    /// The kubeconfig with the scheduler's credentials.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// This instance's name in the Lease (default: HOSTNAME_RANDOM).
    #[arg(long)]
    identity: Option<String>,
    /// The namespace of the `flotilla-scheduler` Lease.
    #[arg(long, default_value = "kube-system")]
    lease_namespace: String,
    /// How long a leader that stopped renewing keeps the Lease, in seconds.
    #[arg(long, default_value_t = 15)]
    lease_duration_seconds: u64,
    /// Per-pod binding requests in flight at once, against an apiserver without the bulk
    /// binding route.
    #[arg(long, default_value_t = 128)]
    bind_concurrency: usize,
    /// Pods per bulk binding request at most (up to 1000); 0 binds pods one by one through
    /// pods/NAME/binding, as against an apiserver without the bulk route.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(0..=1000))]
    bind_batch: u16,
    /// Bulk binding requests in flight at once.
    #[arg(long, default_value_t = 4)]
    bind_batches: usize,
}

const LEASE_NAME: &str = "flotilla-scheduler";

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(error) => {
            eprintln!("flotilla-scheduler: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("flotilla-scheduler: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::infer(args.kubeconfig.as_deref(), None)?;
    let client = Client::new(config)?;
    let identity = args.identity.unwrap_or_else(default_identity);
    let elector = LeaderElector::new(
        client.clone(),
        &args.lease_namespace,
        LEASE_NAME,
        &identity,
        Duration::from_secs(args.lease_duration_seconds.max(1)),
    );
    let options = Options {
        scheduler_name: DEFAULT_SCHEDULER_NAME.to_string(),
        bind_concurrency: args.bind_concurrency.max(1),
        bind_batch: usize::from(args.bind_batch),
        bind_batches: args.bind_batches.max(1),
    };
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tracing::info!(%identity, lease = %format!("{}/{LEASE_NAME}", args.lease_namespace), "waiting to become the leader");
    let mut leadership = tokio::select! {
        held = elector.acquire() => held?,
        _ = terminate.recv() => return Ok(ExitCode::SUCCESS),
        _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
    };
    tracing::info!(%identity, "leading: scheduling pods");
    let outcome = tokio::select! {
        result = scheduler::run(client, options) => Some(result),
        () = leadership.lost() => None,
        _ = terminate.recv() => Some(Ok(())),
        _ = tokio::signal::ctrl_c() => Some(Ok(())),
    };
    match outcome {
        None => {
            tracing::error!("lost the lease; exiting so that a supervisor restarts this instance");
            Ok(ExitCode::FAILURE)
        }
        Some(result) => {
            if let Err(error) = leadership.release().await {
                tracing::warn!(%error, "cannot release the lease; it expires by itself");
            }
            result?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Kubernetes' default: the host name and a random suffix, so two instances on one host differ.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "scheduler".to_string());
    format!("{host}_{:08x}", rand::random::<u32>())
}
