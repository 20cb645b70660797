//! `ctl`, Flotilla's one command-line tool: kubectl-shaped commands for the cluster and
//! docker-shaped commands for local images and containers.
//!
//! Layout:
//! - [`cli`]: the clap command tree and the global flags.
//! - [`connect`]: global flags + kubeconfig -> an `api::client::Client`.
//! - [`commands`]: one module per verb, each writing to a given output.
//! - [`compose`]: Compose files parsed, interpolated and converted to cluster objects.
//! - [`table`]: kubectl-aligned tables; [`output`]: `-o json|yaml|wide`.
//! - [`jsonpath`]: kubectl's JSONPath templates, for `-o jsonpath=` and `-o custom-columns=`.
//!
//! `main.rs` parses flags, sets up tracing and calls [`run`]. Errors end up on stderr, either as
//! kubectl's `Error from server (Reason): message` or as `error: ...`, with exit status 1.

pub mod cli;
pub mod commands;
pub mod compose;
pub mod connect;
pub mod jsonpath;
pub mod manifest;
pub mod output;
pub mod table;

use std::io::{self, Write};
use std::process::ExitCode;

use api::client::ClientError;

pub use cli::Cli;
use cli::Command;

/// Runs a parsed command line, printing its output and any error; returns the exit status.
pub fn run(cli: Cli) -> ExitCode {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    // The local container commands are synchronous: they start no async runtime, which is part
    // of `ctl run`'s start-up cost (measured against crun, issue 4).
    let result = match execute_container_command(&cli, &mut out) {
        Some(result) => result,
        None => match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime.block_on(execute(&cli, &mut out)),
            Err(error) => return fail(&anyhow::anyhow!("cannot start the async runtime: {error}")),
        },
    };
    let flushed = out.flush();
    match result.and_then(|()| flushed.map_err(anyhow::Error::from)) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that went away (`ctl ... | head`) is not an error worth reporting.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        // Container commands end with docker's exit codes (the container's own, 125, ...).
        Err(error) if error.downcast_ref::<commands::containers::Exit>().is_some() => {
            let Some(exit) = error.downcast_ref::<commands::containers::Exit>() else { return ExitCode::FAILURE };
            if let Some(message) = &exit.message {
                let _ = writeln!(io::stderr(), "{message}");
            }
            ExitCode::from(exit.code)
        }
        Err(error) => fail(&error),
    }
}

/// Runs the docker-shaped container lifecycle commands, which need no async runtime; `None` for
/// every other command.
fn execute_container_command(cli: &Cli, out: &mut dyn Write) -> Option<anyhow::Result<()>> {
    use commands::containers;
    let global = &cli.global;
    Some(match &cli.command {
        Command::Run(args) => containers::run(global, args, out),
        Command::Ps(args) => containers::ps(global, args, out),
        Command::Stop(args) => containers::stop(global, args, out),
        Command::Kill(args) => containers::kill(global, args, out),
        Command::Rm(args) => containers::rm(global, args, out),
        Command::Start(args) => containers::start(global, args, out),
        Command::Restart(args) => containers::restart(global, args, out),
        Command::Logs(args) => containers::logs(global, args, out),
        Command::Exec(args) => containers::exec(global, args, out),
        Command::Inspect(args) => containers::inspect(global, args, out),
        Command::Wait(args) => containers::wait(global, args, out),
        _ => return None,
    })
}

/// Dispatches to the command's module.
pub async fn execute(cli: &Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    match &cli.command {
        Command::Cluster(command) => commands::cluster::run(&cli.global, command, out).await,
        Command::Version(args) => commands::version::run(&cli.global, args, out).await,
        Command::Completion(args) => commands::completion::run(args, out),
        Command::Apply(args) => commands::apply::run(&cli.global, args, out).await,
        Command::Compose(args) => commands::compose::run(&cli.global, args, out).await,
        Command::Create(args) => commands::create::create(&cli.global, args, out).await,
        Command::Replace(args) => commands::create::replace(&cli.global, args, out).await,
        Command::Delete(args) => commands::delete::run(&cli.global, args, out).await,
        Command::Scale(args) => commands::scale::run(&cli.global, args, out).await,
        Command::Set(command) => commands::set::run(&cli.global, command, out).await,
        Command::Rollout(command) => commands::rollout::run(&cli.global, command, out).await,
        Command::Cordon(args) => commands::node::cordon(&cli.global, args, out).await,
        Command::Uncordon(args) => commands::node::uncordon(&cli.global, args, out).await,
        Command::Drain(args) => commands::node::drain(&cli.global, args, out).await,
        Command::Label(args) => {
            commands::label::run(&cli.global, commands::label::Field::Labels, args, out).await
        }
        Command::Annotate(args) => {
            commands::label::run(&cli.global, commands::label::Field::Annotations, args, out).await
        }
        Command::Config(command) => commands::config::run(&cli.global, command, out).await,
        Command::Get(args) => commands::get::run(&cli.global, args, out).await,
        Command::Describe(args) => commands::describe::run(&cli.global, args, out).await,
        Command::Build(args) => commands::build::build(&cli.global, args, out),
        Command::Images(args) => commands::images::images(&cli.global, args, out),
        Command::Tag(args) => commands::images::tag(&cli.global, args, out),
        Command::Rmi(args) => commands::images::rmi(&cli.global, args, out),
        Command::Save(args) => commands::images::save(&cli.global, args, out),
        Command::Load(args) => commands::images::load(&cli.global, args, out),
        Command::Image(command) => commands::images::run(&cli.global, command, out),
        Command::Pull(args) => commands::registry::pull(&cli.global, args, out).await,
        Command::Push(args) => commands::registry::push(&cli.global, args, out).await,
        Command::Login(args) => commands::registry::login(&cli.global, args, out).await,
        Command::Logout(args) => commands::registry::logout(&cli.global, args, out).await,
        Command::Registry(command) => commands::registry_serve::run(&cli.global, command, out).await,
        Command::Run(args) => commands::containers::run(&cli.global, args, out),
        Command::Ps(args) => commands::containers::ps(&cli.global, args, out),
        Command::Stop(args) => commands::containers::stop(&cli.global, args, out),
        Command::Kill(args) => commands::containers::kill(&cli.global, args, out),
        Command::Rm(args) => commands::containers::rm(&cli.global, args, out),
        Command::Start(args) => commands::containers::start(&cli.global, args, out),
        Command::Restart(args) => commands::containers::restart(&cli.global, args, out),
        Command::Logs(args) => commands::containers::logs(&cli.global, args, out),
        Command::Exec(args) => commands::containers::exec(&cli.global, args, out),
        Command::Inspect(args) => commands::containers::inspect(&cli.global, args, out),
        Command::Wait(args) => commands::containers::wait(&cli.global, args, out),
        Command::Volume(command) => commands::containers::volume(&cli.global, command, out),
        Command::Network(command) => commands::network::run(&cli.global, command, out),
        Command::Port(args) => commands::network::port(&cli.global, args, out),
    }
}

/// Reports a command-line parsing error (or prints help or version, which clap reports the same
/// way): usage errors exit 1, like every other error of `ctl`.
pub fn parse_error(error: clap::Error) -> ExitCode {
    let _ = error.print();
    if error.use_stderr() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// What `ctl` prints for an error: the server's own words in kubectl's form, or `error: ...`
/// followed by every cause.
pub fn error_message(error: &anyhow::Error) -> String {
    // Several errors of one command, each already worded in full.
    if let Some(reported) = error.downcast_ref::<commands::objects::Reported>() {
        return reported.to_string();
    }
    match error.downcast_ref::<ClientError>() {
        Some(api @ ClientError::Api(_)) if error.chain().count() == 1 => api.to_string(),
        _ => format!("error: {error:#}"),
    }
}

fn fail(error: &anyhow::Error) -> ExitCode {
    tracing::debug!(?error, "command failed");
    let _ = writeln!(io::stderr(), "{}", error_message(error));
    ExitCode::FAILURE
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::meta::Status;

    #[test]
    fn errors_print_like_kubectl() {
        let not_found = ClientError::Api(Box::new(Status {
            code: Some(404),
            reason: Some("NotFound".into()),
            message: Some(r#"deployments.apps "web" not found"#.into()),
            ..Status::default()
        }));
        assert_eq!(
            error_message(&not_found.into()),
            r#"Error from server (NotFound): deployments.apps "web" not found"#
        );
        assert_eq!(
            error_message(&ClientError::NoServers.into()),
            "error: no server address configured: set clusters[].cluster.server in the kubeconfig or pass --server URL"
        );
        let with_context =
            anyhow::Error::from(io::Error::other("disk full")).context("cannot write x");
        assert_eq!(
            error_message(&with_context),
            "error: cannot write x: disk full"
        );
    }
}
