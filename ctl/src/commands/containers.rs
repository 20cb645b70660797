//! Docker's container verbs on the local store under `--root`: `run`, `ps`, `stop`, `kill`,
//! `rm`, `start`, `restart`, `logs`, `exec`, `inspect`, `wait` and `volume
//! create|ls|rm|inspect`, with docker's flags, output and exit codes: a container's own exit
//! code where docker passes it through (`run`, `exec`, `start -a`), 125 when the runtime failed
//! before the command ran (126/127 when the command cannot be executed), 1 for other errors.

use std::fmt;
use std::io::{self, Write};

use anyhow::Context;
use clap::{Args, Subcommand};
use jiff::Timestamp;
use runtime::container::{
    ContainerError, ContainerState, ExecOptions, LogOptions, Runtime, StartOptions, Status,
};
use runtime::spec::{MountKind, NetworkMode, RunOptions};
use serde_json::{json, Value};

use crate::cli::GlobalArgs;

/// Ends `ctl` with this exit status after printing `message` (if any) on stderr.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: Option<String>,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.message {
            Some(message) => f.write_str(message),
            None => write!(f, "exit status {}", self.code),
        }
    }
}

impl std::error::Error for Exit {}

fn exit(code: i32, message: Option<String>) -> anyhow::Error {
    Exit { code: u8::try_from(code).unwrap_or(255), message }.into()
}

/// A runtime error as docker's CLI reports it, with 125 (or 126/127 for a command that cannot
/// be executed).
fn runtime_error(error: ContainerError) -> anyhow::Error {
    let code = error.exit_code();
    exit(code, Some(format!("ctl: Error response from daemon: {error}")))
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  # Run a command and see its output\n  ctl run --rm busybox echo hello\n\n  # Run a server in the background with a memory limit\n  ctl run -d --name web --memory 256m nginx\n\n  # Publish container port 80 on host port 8080, on a user network\n  ctl network create backend\n  ctl run -d --name web --network backend -p 8080:80 nginx")]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Automatically remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables (K=V, or K to copy it from this environment)
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<std::path::PathBuf>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Bind mount a volume (NAME:/dst[:ro], /src:/dst[:ro] or /dst)
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    /// Mount a tmpfs directory (/dst[:options])
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Memory limit (e.g. 512m, 1g)
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Container host name
    #[arg(long)]
    pub hostname: Option<String>,
    /// Connect a container to a network: bridge (the default), host, none, or a network from `ctl network ls`
    #[arg(long = "network", alias = "net", default_value = "bridge")]
    pub network: String,
    /// Publish a container's port to the host: [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp] (no HOSTPORT: a random one)
    #[arg(short = 'p', long = "publish", value_name = "PORT")]
    pub publish: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Security options (only no-new-privileges is supported)
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<u64>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The image to run
    pub image: String,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "time", alias = "timeout")]
    pub time: Option<u64>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send to the container (docker's -s is spelled --signal only: -s is ctl's global --server)
    #[arg(long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short = 'i', long)]
    pub interactive: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs ("all" for every line)
    #[arg(long, default_value = "all")]
    pub tail: String,
    /// Show timestamps
    #[arg(short = 't', long)]
    pub timestamps: bool,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    pub container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ContainersArgs {
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `ctl volume ...`
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume
    #[command(after_help = "Examples:\n  ctl volume create data")]
    Create {
        /// The volume's name (random when left out)
        name: Option<String>,
    },
    /// List volumes
    #[command(visible_alias = "list", after_help = "Examples:\n  ctl volume ls -q")]
    Ls {
        /// Only display volume names
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Remove one or more volumes
    #[command(visible_alias = "remove", after_help = "Examples:\n  ctl volume rm data")]
    Rm {
        /// Accepted for docker compatibility; a volume in use is never removed
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Display detailed information on one or more volumes
    #[command(after_help = "Examples:\n  ctl volume inspect data")]
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

fn open(global: &GlobalArgs) -> anyhow::Result<Runtime> {
    let root = global.root_dir();
    Runtime::open(&root).map_err(runtime_error)
}

/// `ctl run`
pub fn run(global: &GlobalArgs, args: &RunArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let rt = open(global)?;
    let opts = run_options(args).map_err(|e| exit(125, Some(format!("ctl: {e:#}"))))?;
    let publish = publish_specs(&args.publish, &opts.network).map_err(|e| exit(125, Some(format!("ctl: {e:#}"))))?;
    let id = rt.create(&args.image, &opts).map_err(runtime_error)?;
    if !publish.is_empty() {
        if let Err(error) = runtime::network::docker::set_published_ports(rt.root(), &id, &publish) {
            let _ = rt.remove(&id, true);
            return Err(runtime_error(error));
        }
    }
    if args.detach {
        drop(rt.start(&id, &StartOptions::default()).map_err(runtime_error)?);
        writeln!(out, "{id}")?;
        return Ok(());
    }
    let attached = rt.attach(&id).map_err(runtime_error)?;
    proxy_signals(&rt, &id);
    // With -t -i the local terminal goes raw: keys reach the container's terminal unchanged.
    let raw = if args.tty && args.interactive { RawTerminal::enter() } else { None };
    let start = StartOptions { attach_stdin: args.interactive, tty_size: if args.tty { terminal_size() } else { None } };
    let started = rt.start(&id, &start).map_err(runtime_error)?;
    let code = stream_to_exit(&rt, &id, attached, started, out);
    drop(raw);
    let code = code?;
    if code != 0 {
        out.flush()?;
        return Err(exit(code, None));
    }
    Ok(())
}

/// Forwards the signals `ctl` gets while attached (Ctrl-C, `kill`) to the container, as docker's
/// sig-proxy does: the container decides whether they end it. The signals are blocked in this
/// thread (and the threads it starts) and collected by one thread with sigwait.
fn proxy_signals(rt: &Runtime, id: &str) {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2] {
        set.add(signal);
    }
    if nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).is_err() {
        return;
    }
    let (rt, id) = (rt.clone(), id.to_string());
    std::thread::spawn(move || {
        while let Ok(signal) = set.wait() {
            if let Err(error) = rt.kill(&id, signal.as_str()) {
                tracing::debug!(%error, "cannot forward {signal} to the container");
            }
        }
    });
}

/// The local terminal in raw mode, restored when dropped.
struct RawTerminal {
    saved: nix::sys::termios::Termios,
}

impl RawTerminal {
    /// None when standard input is not a terminal.
    fn enter() -> Option<RawTerminal> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(io::stdin(), nix::sys::termios::SetArg::TCSANOW, &self.saved);
    }
}

nix::ioctl_read_bad!(get_window_size, nix::libc::TIOCGWINSZ, nix::pty::Winsize);

/// The size (rows, columns) of the terminal on standard output, if it is one.
fn terminal_size() -> Option<(u16, u16)> {
    let mut size = nix::pty::Winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ fills the Winsize we pass; fd 1 may not be a terminal, then it fails.
    unsafe { get_window_size(1, &mut size) }.ok()?;
    (size.ws_row > 0).then_some((size.ws_row, size.ws_col))
}

fn stream_to_exit(
    rt: &Runtime,
    id: &str,
    attached: runtime::container::Attached,
    started: runtime::container::Started,
    out: &mut dyn Write,
) -> anyhow::Result<i32> {
    let mut stderr = io::stderr();
    match attached.stream_to_exit(rt, started, out, &mut stderr) {
        Ok(Some(code)) => Ok(code),
        Ok(None) | Err(ContainerError::NotFound(_)) => rt.wait(id).map_err(runtime_error),
        Err(e) => Err(runtime_error(e)),
    }
}

/// `-p` values, parsed and checked against the network mode before anything is created.
fn publish_specs(publish: &[String], network: &NetworkMode) -> anyhow::Result<Vec<runtime::network::ports::PortSpec>> {
    let specs = publish.iter().map(|p| runtime::network::ports::parse_publish(p)).collect::<Result<Vec<_>, _>>()?;
    Ok(runtime::network::docker::check_publish(network, &specs)?)
}

fn run_options(args: &RunArgs) -> anyhow::Result<RunOptions> {
    let mut env = Vec::new();
    for file in &args.env_file {
        let text = std::fs::read_to_string(file).with_context(|| format!("open {}", file.display()))?;
        env.extend(runtime::spec::parse_env_file(&text)?);
    }
    env.extend(args.env.iter().cloned());
    let mut no_new_privileges = false;
    for opt in &args.security_opt {
        match opt.as_str() {
            "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true" => no_new_privileges = true,
            "no-new-privileges:false" | "no-new-privileges=false" => no_new_privileges = false,
            other => anyhow::bail!("invalid --security-opt: {other:?}: only no-new-privileges is supported"),
        }
    }
    let network: NetworkMode = args.network.parse()?;
    Ok(RunOptions {
        name: args.name.clone(),
        cmd: args.command.clone(),
        entrypoint: args.entrypoint.as_ref().map(|e| if e.is_empty() { Vec::new() } else { vec![e.clone()] }),
        env,
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        hostname: args.hostname.clone(),
        network,
        volumes: args.volumes.clone(),
        tmpfs: args.tmpfs.clone(),
        memory: args.memory.as_deref().map(runtime::spec::parse_bytes).transpose()?,
        cpus: args.cpus,
        pids_limit: args.pids_limit,
        privileged: args.privileged,
        cap_add: args.cap_add.clone(),
        cap_drop: args.cap_drop.clone(),
        read_only: args.read_only,
        no_new_privileges,
        tty: args.tty,
        interactive: args.interactive,
        auto_remove: args.rm,
        unsynced_records: false,
        stop_signal: args.stop_signal.clone(),
        stop_timeout: args.stop_timeout,
    })
}

/// `ctl ps`
pub fn ps(global: &GlobalArgs, args: &PsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let rt = open(global)?;
    let containers = rt.list(args.all).map_err(runtime_error)?;
    if args.quiet {
        for c in &containers {
            writeln!(out, "{}", if args.no_trunc { &c.id[..] } else { &c.id[..12] })?;
        }
        return Ok(());
    }
    let now = Timestamp::now();
    let mut rows = vec![["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"].map(String::from).to_vec()];
    for c in &containers {
        let command = c.spec.args.join(" ");
        let command = if args.no_trunc { command } else { ellipsis(&command, 20) };
        rows.push(vec![
            if args.no_trunc { c.id.clone() } else { c.id[..12].to_string() },
            c.image_name.clone(),
            format!("\"{command}\""),
            format!("{} ago", crate::output::human_duration(now, c.created)),
            status_text(c, now),
            runtime::network::ports::ports_column(&runtime::network::docker::published_ports(rt.root(), &c.id)),
            c.name.clone(),
        ]);
    }
    write_table(out, &rows)
}

/// `ctl stop`
pub fn stop(global: &GlobalArgs, args: &StopArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let rt = open(global)?;
    each(&args.containers, out, |c| rt.stop(c, args.time))
}

/// `ctl kill`
pub fn kill(global: &GlobalArgs, args: &KillArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    // `ctl kill -s HUP web` parses as --server HUP and would send KILL: refuse it instead.
    if let Some(server) = global.servers.first() {
        return Err(exit(
            1,
            Some(format!(
                "ctl: kill works on local containers and takes no --server ({server:?} given); \
                 to choose the signal write --signal {server} (-s is the global --server flag, as in kubectl)"
            )),
        ));
    }
    let rt = open(global)?;
    each(&args.containers, out, |c| rt.kill(c, &args.signal))
}

/// `ctl rm`
pub fn rm(global: &GlobalArgs, args: &RmArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let rt = open(global)?;
    each(&args.containers, out, |c| rt.remove(c, args.force))
}

/// `ctl restart`
pub fn restart(global: &GlobalArgs, args: &StopArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let rt = open(global)?;
    each(&args.containers, out, |c| rt.restart(c, args.time).map(drop))
}

/// `ctl start`
pub fn start(global: &GlobalArgs, args: &StartArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let rt = open(global)?;
    if !args.attach {
        return each(&args.containers, out, |c| rt.start(c, &StartOptions::default()).map(drop));
    }
    let [container] = args.containers.as_slice() else {
        return Err(exit(1, Some("ctl: you cannot start and attach multiple containers at once".into())));
    };
    let id = rt.resolve_id(container).map_err(runtime_error)?;
    let attached = rt.attach(&id).map_err(runtime_error)?;
    proxy_signals(&rt, &id);
    let started = rt.start(&id, &StartOptions { attach_stdin: args.interactive, tty_size: terminal_size() }).map_err(runtime_error)?;
    let code = stream_to_exit(&rt, &id, attached, started, out)?;
    if code != 0 {
        return Err(exit(code, None));
    }
    Ok(())
}

/// Applies a verb to every container named, printing each name as docker does; errors are
/// printed as they come and end the command with status 1.
fn each(
    containers: &[String],
    out: &mut dyn Write,
    mut verb: impl FnMut(&str) -> Result<(), ContainerError>,
) -> anyhow::Result<()> {
    let mut failed = false;
    for c in containers {
        match verb(c) {
            Ok(()) => writeln!(out, "{c}")?,
            Err(e) => {
                out.flush()?;
                eprintln!("Error response from daemon: {e}");
                failed = true;
            }
        }
    }
    if failed {
        return Err(exit(1, None));
    }
    Ok(())
}

/// `ctl logs`
pub fn logs(global: &GlobalArgs, args: &LogsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let rt = open(global)?;
    let tail = match args.tail.as_str() {
        "all" | "-1" => None,
        n => Some(n.parse::<usize>().map_err(|_| exit(1, Some(format!("ctl: invalid --tail {n:?}: give a number of lines or \"all\""))))?),
    };
    let opts = LogOptions { follow: args.follow, tail, timestamps: args.timestamps };
    let mut stderr = io::stderr();
    rt.logs(&args.container, &opts, out, &mut stderr).map_err(|e| exit(1, Some(format!("Error response from daemon: {e}"))))
}

/// `ctl exec`
pub fn exec(global: &GlobalArgs, args: &ExecArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let rt = open(global)?;
    out.flush()?;
    let opts = ExecOptions {
        args: args.command.clone(),
        env: args.env.clone(),
        workdir: args.workdir.clone(),
        tty: args.tty,
        interactive: args.interactive,
    };
    // With -t -i the local terminal goes raw: keys reach the command's terminal unchanged. The
    // exec helper reads the window size (and follows its changes) from the streams it inherits.
    let raw = if args.tty && args.interactive { RawTerminal::enter() } else { None };
    let code = rt.exec(&args.container, &opts);
    drop(raw);
    let code = code.map_err(|e| exit(1, Some(format!("Error response from daemon: {e}"))))?;
    if code != 0 {
        return Err(exit(code, None));
    }
    Ok(())
}

/// `ctl wait`
pub fn wait(global: &GlobalArgs, args: &ContainersArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let rt = open(global)?;
    let mut failed = false;
    for c in &args.containers {
        match rt.wait(c) {
            Ok(code) => writeln!(out, "{code}")?,
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                failed = true;
            }
        }
    }
    if failed {
        return Err(exit(1, None));
    }
    Ok(())
}

/// `ctl inspect`
pub fn inspect(global: &GlobalArgs, args: &ContainersArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let rt = open(global)?;
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for c in &args.containers {
        match rt.inspect(c) {
            Ok(st) => docs.push(inspect_json(&st)),
            Err(e) => errors.push(format!("Error: {e}")),
        }
    }
    serde_json::to_writer_pretty(&mut *out, &docs)?;
    writeln!(out)?;
    if !errors.is_empty() {
        out.flush()?;
        return Err(exit(1, Some(errors.join("\n"))));
    }
    Ok(())
}

/// `ctl volume ...`
pub fn volume(global: &GlobalArgs, command: &VolumeCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    let rt = open(global)?;
    let daemon = |e: ContainerError| exit(1, Some(format!("Error response from daemon: {e}")));
    match command {
        VolumeCommand::Create { name } => {
            let volume = rt.volume_create(name.as_deref()).map_err(daemon)?;
            writeln!(out, "{}", volume.name)?;
        }
        VolumeCommand::Ls { quiet } => {
            let volumes = rt.volume_list().map_err(daemon)?;
            if *quiet {
                for v in &volumes {
                    writeln!(out, "{}", v.name)?;
                }
            } else {
                let mut rows = vec![vec!["DRIVER".to_string(), "VOLUME NAME".to_string()]];
                rows.extend(volumes.iter().map(|v| vec![v.driver.clone(), v.name.clone()]));
                write_table(out, &rows)?;
            }
        }
        VolumeCommand::Rm { names, .. } => {
            let mut failed = false;
            for name in names {
                match rt.volume_remove(name) {
                    Ok(()) => writeln!(out, "{name}")?,
                    Err(e) => {
                        eprintln!("Error response from daemon: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                return Err(exit(1, None));
            }
        }
        VolumeCommand::Inspect { names } => {
            let mut docs = Vec::new();
            for name in names {
                docs.push(rt.volume_inspect(name).map_err(daemon)?);
            }
            serde_json::to_writer_pretty(&mut *out, &docs)?;
            writeln!(out)?;
        }
    }
    Ok(())
}

/// `docker inspect`'s shape for the fields this runtime has.
fn inspect_json(st: &ContainerState) -> Value {
    const ZERO: &str = "0001-01-01T00:00:00Z";
    let time = |t: Option<Timestamp>| t.map_or_else(|| ZERO.to_string(), |t| t.to_string());
    let spec = &st.spec;
    let mounts: Vec<Value> = spec
        .mounts
        .iter()
        .map(|m| match &m.kind {
            MountKind::Bind { source, readonly } => json!({"Type": "bind", "Source": source, "Destination": m.destination, "Mode": "", "RW": !readonly, "Propagation": "rprivate"}),
            MountKind::Volume { name, source, readonly } => json!({"Type": "volume", "Name": name, "Source": source, "Destination": m.destination, "Driver": "local", "Mode": "z", "RW": !readonly, "Propagation": ""}),
            MountKind::Tmpfs { options } => json!({"Type": "tmpfs", "Source": "", "Destination": m.destination, "Mode": options.join(","), "RW": true, "Propagation": ""}),
        })
        .collect();
    let user = if spec.uid == 0 && spec.gid == 0 { String::new() } else { format!("{}:{}", spec.uid, spec.gid) };
    let nano_cpus = spec.resources.cpu_quota_us.map_or(0, |q| q * 1_000_000_000 / spec.resources.cpu_period_us.max(1) as i64);
    json!({
        "Id": st.id,
        "Created": st.created.to_string(),
        "Path": spec.args.first().cloned().unwrap_or_default(),
        "Args": spec.args.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": st.status.as_str(),
            "Running": st.status == Status::Running,
            "Paused": false,
            "Restarting": false,
            "OOMKilled": st.oom_killed,
            "Dead": false,
            "Pid": st.pid,
            "ExitCode": st.exit_code,
            "Error": st.error,
            "StartedAt": time(st.started_at),
            "FinishedAt": time(st.finished_at),
        },
        "Image": st.image,
        "Name": format!("/{}", st.name),
        "RestartCount": st.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "HostConfig": {
            "NetworkMode": spec.network.to_string(),
            "AutoRemove": st.auto_remove,
            "Privileged": spec.privileged,
            "ReadonlyRootfs": spec.read_only_rootfs,
            "Memory": spec.resources.memory_bytes.unwrap_or(0),
            "NanoCpus": nano_cpus,
            "PidsLimit": spec.resources.pids_limit,
            "CapAdd": Value::Null,
            "SecurityOpt": if spec.no_new_privileges { json!(["no-new-privileges"]) } else { Value::Null },
            "MaskedPaths": spec.masked_paths,
            "ReadonlyPaths": spec.readonly_paths,
        },
        "Mounts": mounts,
        "Config": {
            "Hostname": spec.hostname,
            "User": user,
            "Tty": spec.tty,
            "OpenStdin": st.interactive,
            "Env": spec.env,
            "Cmd": spec.args,
            "Image": st.image_name,
            "WorkingDir": spec.cwd,
            "Entrypoint": Value::Null,
            "StopSignal": spec.stop_signal.to_string(),
            "StopTimeout": spec.stop_timeout,
        },
    })
}

/// docker ps's STATUS column.
fn status_text(c: &ContainerState, now: Timestamp) -> String {
    match c.status {
        Status::Created => "Created".into(),
        Status::Running => format!("Up {}", crate::output::human_duration(now, c.started_at.unwrap_or(c.created))),
        Status::Exited => format!("Exited ({}) {} ago", c.exit_code, crate::output::human_duration(now, c.finished_at.unwrap_or(c.created))),
        Status::Removing => "Removal In Progress".into(),
    }
}


/// Docker's `stringutils.Ellipsis`: at most `max` characters, the last one `…` when cut.
fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// Columns padded to the widest cell plus three spaces, as docker's tabwriter prints them.
pub(crate) fn write_table(out: &mut dyn Write, rows: &[Vec<String>]) -> anyhow::Result<()> {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> =
        (0..columns).map(|i| rows.iter().map(|r| r.get(i).map_or(0, |c| c.chars().count())).max().unwrap_or(0)).collect();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 3));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_docker() {
        let now: Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
        let check = |then: &str, expected: &str| assert_eq!(crate::output::human_duration(now, then.parse().unwrap()), expected, "{then}");
        check("2024-05-01T12:00:00Z", "Less than a second");
        check("2024-05-01T11:59:59Z", "1 second");
        check("2024-05-01T11:59:57Z", "3 seconds");
        check("2024-05-01T11:58:30Z", "About a minute");
        check("2024-05-01T11:10:00Z", "50 minutes");
        check("2024-05-01T10:50:00Z", "About an hour");
        check("2024-05-01T07:00:00Z", "5 hours");
        check("2024-04-25T12:00:00Z", "6 days");
    }

    #[test]
    fn commands_are_cut_with_an_ellipsis() {
        assert_eq!(ellipsis("sleep 10", 20), "sleep 10");
        assert_eq!(ellipsis("sh -c 'echo hello; sleep 100'", 20), "sh -c 'echo hello; …");
    }

    #[test]
    fn tables_pad_like_tabwriter() {
        let mut out = Vec::new();
        let rows = vec![vec!["A".to_string(), "BB".to_string()], vec!["long".to_string(), "x".to_string()]];
        write_table(&mut out, &rows).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "A      BB\nlong   x\n");
    }
}
