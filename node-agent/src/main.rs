//! `flotilla-node-agent`: one per machine. Joins the cluster (or uses a kubeconfig), registers
//! the Node, and runs the pods the scheduler binds to it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use node_agent::agent::{self, AgentConfig};
use node_agent::join::CredentialSource;
use node_agent::node::NodeConfig;

/// The Flotilla node agent.
#[derive(Debug, Parser)]
#[command(name = "flotilla-node-agent", version)]
struct Args {
    /// The agent's state: credentials, pod state, the container runtime root (D/runtime).
    #[arg(long)]
    data_dir: PathBuf,
    /// Per-boot state (pod records, pod network files, IPAM), on a tmpfs: the agent mounts one
    /// here unless the directory is on one already. Default: D/run.
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// The Node's name.
    #[arg(long)]
    node_name: String,
    /// The node's address in the cluster (InternalIP, and the pods' hostIP).
    #[arg(long)]
    node_ip: IpAddr,
    /// The HTTPS server's address for logs and exec (default NODEIP:10250).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// A kubeconfig with the node's credential (instead of joining).
    #[arg(long, conflicts_with = "bootstrap_token")]
    kubeconfig: Option<PathBuf>,
    /// The apiserver to join through (with --ca-file and --bootstrap-token).
    #[arg(long)]
    server: Option<String>,
    /// The cluster CA certificate to trust when joining.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// The bootstrap token; used once, the node credential is kept in D/kubeconfig.
    #[arg(long, env = "FLOTILLA_BOOTSTRAP_TOKEN", hide_env_values = true)]
    bootstrap_token: Option<String>,
    /// Extra node labels: k=v,k2=v2.
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// CPU capacity in millicores (default: the CPUs this process may use).
    #[arg(long)]
    cpu: Option<u64>,
    /// Memory capacity in bytes (default: MemTotal).
    #[arg(long)]
    memory: Option<u64>,
    /// Seconds between full lists of this node's pods.
    #[arg(long, default_value_t = 10)]
    resync_seconds: u64,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = config(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(agent::run(config)).context("the node agent stopped")
}

fn config(args: Args) -> anyhow::Result<AgentConfig> {
    let credentials = match (args.kubeconfig, args.server, args.ca_file, args.bootstrap_token) {
        (Some(k), None, None, None) => Some(CredentialSource::Kubeconfig(k)),
        (None, Some(server), Some(ca_file), Some(token)) => Some(CredentialSource::Bootstrap { server, ca_file, token }),
        // A node that joined before needs nothing but its data directory.
        (None, None, None, None) => None,
        _ => bail!("pass either --kubeconfig FILE, or all of --server URL --ca-file F --bootstrap-token T"),
    };
    let mut labels = BTreeMap::new();
    for pair in args.labels.iter().filter(|l| !l.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else { bail!("--labels: {pair:?} is not key=value") };
        labels.insert(k.trim().to_string(), v.trim().to_string());
    }
    if args.resync_seconds == 0 {
        bail!("--resync-seconds must be at least 1");
    }
    let listen = args.listen.unwrap_or(SocketAddr::new(args.node_ip, 10250));
    let run_dir = args.run_dir.unwrap_or_else(|| args.data_dir.join("run"));
    Ok(AgentConfig {
        run_dir,
        data_dir: args.data_dir,
        node: NodeConfig {
            name: args.node_name,
            ip: args.node_ip.to_string(),
            port: listen.port(),
            labels,
            max_pods: args.max_pods,
            cpu_millis: args.cpu,
            memory_bytes: args.memory,
        },
        listen,
        credentials,
        resync: Duration::from_secs(args.resync_seconds),
        netns_dir: PathBuf::from(node_agent::sandbox::NETNS_DIR),
    })
}
