//! Docker's registry verbs on the local image store: `pull`, `push`, `login`, `logout`, with
//! docker's output lines. The protocol lives in `runtime::registry`; this module turns flags
//! into [`RegistryOptions`] and reads passwords from flags, stdin or a no-echo prompt.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use runtime::image::ImageStore;
use runtime::reference::Reference;
use runtime::registry::{default_auth_file, AuthFile, Credentials, Registry, RegistryOptions};

use crate::cli::GlobalArgs;

/// Flags for reaching registries, shared by pull, push and login.
#[derive(Debug, Clone, Args)]
pub struct RegistryFlags {
    /// Talk plain HTTP to this registry (HOST:PORT); loopback registries always use plain HTTP
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// Also trust this CA certificate file (PEM) for registries
    #[arg(
        long = "registry-ca",
        env = "FLOTILLA_REGISTRY_CA",
        value_name = "FILE"
    )]
    pub registry_ca: Vec<PathBuf>,
}

/// `ctl pull`
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image: NAME[:TAG|@DIGEST]
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    pub image: String,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// `ctl push`
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The image: NAME[:TAG]
    #[arg(value_name = "NAME[:TAG]")]
    pub image: String,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// `ctl login`
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry (default: docker.io)
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
    /// Username
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (prefer --password-stdin: a password on the command line is visible to others)
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// `ctl logout`
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry (default: docker.io)
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

pub async fn pull(global: &GlobalArgs, args: &PullArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let reference = Reference::parse(&args.image)?;
    let store = open(global)?;
    let registry = client(&args.registry)?;
    // Status lines go straight to stdout as they happen (pulls run blobs concurrently and
    // `out` is not shareable); flush what `out` holds first to keep the order.
    out.flush()?;
    let quiet = args.quiet;
    registry
        .pull(&store, &reference, &|line| {
            if !quiet {
                let _ = writeln!(io::stdout(), "{line}");
            }
        })
        .await?;
    writeln!(out, "{}", reference.full_name())?;
    Ok(())
}

pub async fn push(global: &GlobalArgs, args: &PushArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let reference = Reference::parse(&args.image)?;
    if reference.digest.is_some() {
        bail!(
            "cannot push a digest reference {:?}: push by tag",
            args.image
        );
    }
    let store = open(global)?;
    let registry = client(&args.registry)?;
    out.flush()?;
    let quiet = args.quiet;
    let result = registry
        .push(&store, &reference, &|line| {
            if !quiet {
                let _ = writeln!(io::stdout(), "{line}");
            }
        })
        .await?;
    if quiet {
        writeln!(out, "{}", reference.full_name())?;
    }
    tracing::debug!(digest = %result.digest, "pushed");
    Ok(())
}

pub async fn login(
    _global: &GlobalArgs,
    args: &LoginArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let server = server_name(args.server.as_deref());
    let username = match &args.username {
        Some(username) => username.clone(),
        None => prompt("Username: ", true)?,
    };
    if username.is_empty() {
        bail!("username is required: give -u USER");
    }
    let password = if args.password_stdin {
        let mut line = String::new();
        io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    } else if let Some(password) = &args.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        password.clone()
    } else {
        prompt("Password: ", false)?
    };
    if password.is_empty() {
        bail!("password is required: give --password-stdin or -p");
    }
    let credentials = Credentials { username, password };
    let registry = client(&args.registry)?;
    registry.login(&server, &credentials).await?;
    let path = default_auth_file();
    let mut file = AuthFile::load(&path)?;
    file.set(&server, &credentials);
    file.save(&path)?;
    writeln!(out, "Login Succeeded")?;
    Ok(())
}

pub async fn logout(
    _global: &GlobalArgs,
    args: &LogoutArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let server = server_name(args.server.as_deref());
    let path = default_auth_file();
    let mut file = AuthFile::load(&path)?;
    if file.remove(&server) {
        file.save(&path)?;
        writeln!(out, "Removing login credentials for {server}")?;
    } else {
        writeln!(out, "Not logged in to {server}")?;
    }
    Ok(())
}

/// The key credentials are stored under: the registry host as references name it, with
/// Docker Hub's several spellings folded into `docker.io`.
fn server_name(server: Option<&str>) -> String {
    let server = server.unwrap_or("docker.io");
    let server = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let host = server.split('/').next().unwrap_or(server);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        host => host.to_owned(),
    }
}

fn client(flags: &RegistryFlags) -> anyhow::Result<Registry> {
    Ok(Registry::new(RegistryOptions {
        insecure_registries: flags.insecure_registries.clone(),
        ca_files: flags.registry_ca.clone(),
        progress_bars: true,
        ..RegistryOptions::default()
    })?)
}

fn open(global: &GlobalArgs) -> anyhow::Result<ImageStore> {
    let root = global.root_dir();
    ImageStore::open(&root).with_context(|| {
        format!(
            "cannot open the image store under {} (set --root or FLOTILLA_ROOT to a directory you can write)",
            root.display()
        )
    })
}

/// Reads one line from the terminal, without echo for passwords.
fn prompt(label: &str, echo: bool) -> anyhow::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "cannot prompt for {}: stdin is not a terminal; give -u and --password-stdin",
            label.trim_end_matches([':', ' ']).to_lowercase()
        );
    }
    eprint!("{label}");
    let saved = if echo { None } else { tcgetattr(&stdin).ok() };
    if let Some(saved) = &saved {
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = &saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, saved);
        eprintln!();
    }
    read.context("cannot read from the terminal")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_spellings() {
        assert_eq!(server_name(None), "docker.io");
        assert_eq!(
            server_name(Some("https://index.docker.io/v1/")),
            "docker.io"
        );
        assert_eq!(server_name(Some("localhost:5000")), "localhost:5000");
    }
}
