//! The `ctl` binary: parses flags, sets up tracing (stderr, filtered by `RUST_LOG`), and hands
//! over to the library.

use std::process::ExitCode;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = match ctl::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return ctl::parse_error(error),
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    ctl::run(cli)
}
