//! `apiserver`: make a cluster's certificates and credentials (`init`), add tokens (`token`),
//! and run one replica (`serve`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use apiserver::auth::{Role, TokenFile};
use apiserver::pki::{self, InitOptions, PkiPaths};
use apiserver::server::{self, ServeOptions};
use apiserver::store::Replica;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "apiserver", version, about = "Flotilla's API server: Kubernetes REST and watch over a Raft-replicated store")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Make the cluster CA, the replicas' certificate, tokens and an admin kubeconfig
    ///
    /// Example: apiserver init --dir /var/lib/flotilla --server https://127.0.0.1:6443
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// extra DNS names or IPs the replicas' certificate is valid for (localhost and loopback always are)
        #[arg(long = "host", value_delimiter = ',')]
        hosts: Vec<String>,
        /// API URLs written to the kubeconfig (the first is what kubectl uses; ctl fails over between all)
        #[arg(long = "server", value_delimiter = ',', required = true)]
        servers: Vec<String>,
    },
    /// Add a bearer token to DIR/tokens.csv and print it
    ///
    /// Example: apiserver token --dir /var/lib/flotilla --user alice --role viewer
    Token {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        user: String,
        /// admin, viewer, bootstrap (may only join node agents) or node:NODENAME
        #[arg(long)]
        role: String,
    },
    /// Run one replica
    ///
    /// Example: apiserver serve --id 1 --dir /var/lib/flotilla --data-dir /var/lib/flotilla/replica-1
    ///   --listen 127.0.0.1:6443 --peer-listen 127.0.0.1:6444
    ///   --initial-cluster 1=127.0.0.1:6443/127.0.0.1:6444
    Serve {
        #[arg(long)]
        id: u64,
        /// the directory `init` wrote (pki/, tokens.csv)
        #[arg(long)]
        dir: PathBuf,
        /// where this replica keeps its log and snapshots
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        peer_listen: SocketAddr,
        /// address others reach the API at (default: --listen)
        #[arg(long)]
        advertise: Option<String>,
        /// address others reach the peer port at (default: --peer-listen)
        #[arg(long)]
        advertise_peer: Option<String>,
        /// ID=API-HOST:PORT/PEER-HOST:PORT,... : every member of a new cluster
        #[arg(long, default_value = "")]
        initial_cluster: String,
        /// join an existing cluster (then add it with `ctl cluster add-replica`)
        #[arg(long)]
        join: bool,
        /// take a snapshot and compact the log every N entries
        #[arg(long)]
        snapshot_every: Option<u64>,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Init { dir, hosts, servers } => {
            let out = pki::init(&InitOptions { dir: dir.clone(), hosts, servers })?;
            println!("cluster credentials written to {}", dir.display());
            println!("  kubeconfig: {}", out.kubeconfig.display());
            println!("  tokens:     {}", out.tokens_file.display());
            println!("use it with: ctl --kubeconfig {} cluster status", out.kubeconfig.display());
            Ok(())
        }
        Cmd::Token { dir, user, role } => {
            let role = parse_role(&role)?;
            let token = TokenFile::append(&dir.join("tokens.csv"), &user, &role)?;
            println!("{token}");
            Ok(())
        }
        Cmd::Serve { id, dir, data_dir, listen, peer_listen, advertise, advertise_peer, initial_cluster, join, snapshot_every } => {
            let me = Replica {
                api_addr: advertise.unwrap_or_else(|| listen.to_string()),
                peer_addr: advertise_peer.unwrap_or_else(|| peer_listen.to_string()),
            };
            let initial_cluster = server::parse_initial_cluster(&initial_cluster)?;
            if !join && initial_cluster.is_empty() {
                anyhow::bail!("give --initial-cluster for a new cluster, or --join to be added to a running one");
            }
            if !join && !initial_cluster.contains_key(&id) {
                anyhow::bail!("--initial-cluster does not list this replica's id {id}");
            }
            let opts = ServeOptions {
                id,
                data_dir,
                pki: PkiPaths { dir: dir.join("pki") },
                tokens: dir.join("tokens.csv"),
                me,
                initial_cluster,
                join,
                snapshot_every,
            };
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(async move {
                let api = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding the API address {listen}"))?;
                let peer = tokio::net::TcpListener::bind(peer_listen)
                    .await
                    .with_context(|| format!("binding the peer address {peer_listen}"))?;
                server::run(opts, api, peer, shutdown_signal()).await
            })
        }
    }
}

fn parse_role(s: &str) -> anyhow::Result<Role> {
    s.parse::<Role>().map_err(|e| anyhow::anyhow!(e))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
