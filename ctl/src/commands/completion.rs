//! `ctl completion SHELL`: the shell completion script, generated from the command tree.

use std::io::Write;

use clap::CommandFactory as _;

use crate::cli::{Cli, CompletionArgs};

pub fn run(args: &CompletionArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "ctl", out);
    Ok(())
}
