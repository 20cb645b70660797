//! `ctl registry serve`: runs Flotilla's own registry ([`runtime::registry::server`]) over the
//! local image store (`--root`) until Ctrl-C or SIGTERM. There is no authentication, so it
//! binds to 127.0.0.1 unless told otherwise.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::cli::GlobalArgs;

/// `ctl registry ...`
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Serve the local image store as an OCI registry (no authentication)
    #[command(
        after_help = "Examples:\n  # Serve on 127.0.0.1:5000, then push to it\n  ctl registry serve &\n  ctl tag busybox localhost:5000/tools/busybox:1\n  ctl push localhost:5000/tools/busybox:1\n\n  # Serve on every interface (anyone who can connect can push)\n  ctl registry serve --addr 0.0.0.0:5000"
    )]
    Serve(ServeArgs),
}

/// `ctl registry serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:5000", value_name = "HOST:PORT")]
    pub addr: SocketAddr,
}

/// Runs a `ctl registry` subcommand.
pub async fn run(
    global: &GlobalArgs,
    command: &RegistryCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        RegistryCommand::Serve(args) => serve(global, args, out).await,
    }
}

async fn serve(global: &GlobalArgs, args: &ServeArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let root = global.root_dir();
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; pick another address with --addr",
                args.addr
            )
        })?;
    let addr = listener.local_addr().unwrap_or(args.addr);
    writeln!(
        out,
        "Serving the image store in {} as a registry on http://{addr} (no authentication); Ctrl-C stops it",
        root.display()
    )?;
    out.flush()?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot watch for SIGTERM")?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("registry stopping");
    };
    runtime::registry::server::serve(root.clone(), listener, shutdown)
        .await
        .with_context(|| format!("registry over {} failed", root.display()))
}
