//! The plain-data container spec: everything a container needs (argv, environment, user,
//! mounts, capabilities, limits, stop signal), computed from an image config and the user's
//! `docker run`-style options before anything forks, then checked by [`ContainerSpec::validate`].
//! The process-setup code only executes a spec; all of Docker's merge rules live here, in pure
//! functions tested with tables.
//!
//! The user lookup in the image's `/etc/passwd` and `/etc/group` is hand-written rather than
//! taken from a crate because it must read the *image's* files (resolving symlinks inside the
//! rootfs, never on the host) and follow runc/Docker's exact matching rules and messages.

use std::collections::HashMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};

/// The `PATH` Docker gives a container whose image sets none.
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's smallest accepted memory limit (6 MiB).
pub const MIN_MEMORY_BYTES: i64 = 6 * 1024 * 1024;

/// The CFS period Docker uses for `--cpus`.
pub const DEFAULT_CPU_PERIOD_US: u64 = 100_000;

/// The default stop timeout in seconds, as Docker's.
pub const DEFAULT_STOP_TIMEOUT: u64 = 10;

/// The capabilities Docker grants a non-privileged container.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every Linux capability, in kernel order (0 = CAP_CHOWN .. 40 = CAP_CHECKPOINT_RESTORE).
/// A static list rather than a query of the running kernel keeps the spec pure and the same on
/// every machine; the process setup drops what the kernel does not know.
pub const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Paths Docker hides from a non-privileged container (mounted over with /dev/null or an empty
/// read-only tmpfs).
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths Docker makes read-only in a non-privileged container.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The network a container joins.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// A private network namespace with only a loopback interface.
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// The network namespace bind-mounted at this path (`ip netns` style): the node agent's pod
    /// sandbox, shared by all containers of a pod. Whoever made it sets up its interfaces.
    Join(PathBuf),
    /// A bridge network of `ctl` by name (`bridge`, docker's default, or a user network): the
    /// runtime connects the container when it starts (see [`crate::network::docker`]).
    Network(String),
}

/// The `docker run` options that shape a container, already split into fields (the CLI parses
/// flags; `--env-file` contents are parsed with [`parse_env_file`] and go before `-e` entries in
/// `env`, as Docker orders them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunOptions {
    pub name: Option<String>,
    /// The command after the image name; empty means "use the image's CMD".
    pub cmd: Vec<String>,
    /// `--entrypoint`; `Some(vec![])` or `Some(vec![""])` is `--entrypoint ""`.
    pub entrypoint: Option<Vec<String>>,
    /// `K=V` sets, `K` alone takes K from the caller's environment.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub network: NetworkMode,
    /// `-v` specifications: `NAME:/dst[:ro|rw]`, `/src:/dst[:ro|rw]` or `/dst`.
    pub volumes: Vec<String>,
    /// `--tmpfs` specifications: `/dst[:options]`.
    pub tmpfs: Vec<String>,
    /// Bytes; see [`parse_bytes`].
    pub memory: Option<i64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub read_only: bool,
    pub no_new_privileges: bool,
    pub tty: bool,
    pub interactive: bool,
    pub auto_remove: bool,
    /// Write the container's creation records without fsync, as for `--rm`, and no `spec.json`
    /// copy: for a caller that recreates its containers after a power loss anyway (the node
    /// agent, from the pods in the API). Each fsync at creation costs 0.5-6 ms on a shared disk,
    /// and in a burst of pod starts they queue on the file system's journal.
    #[serde(default)]
    pub unsynced_records: bool,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u64>,
}

/// Everything the process setup needs to run one container; stored as `spec.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The full argv: entrypoint followed by command.
    pub args: Vec<String>,
    /// `K=V` entries in Docker's order (PATH, HOSTNAME, TERM, image and user env, HOME).
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub hostname: String,
    pub network: NetworkMode,
    pub mounts: Vec<Mount>,
    /// `CAP_...` names, for the bounding, effective, permitted and inheritable sets.
    pub capabilities: Vec<String>,
    pub no_new_privileges: bool,
    pub read_only_rootfs: bool,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub resources: Resources,
    pub tty: bool,
    pub stop_signal: i32,
    pub stop_timeout: u64,
    /// `--name`, kept for listing.
    pub name: Option<String>,
    pub interactive: bool,
    pub auto_remove: bool,
    pub privileged: bool,
    /// Ports published on the host (`-p`), for a container on a bridge network.
    #[serde(default)]
    pub ports: Vec<crate::network::ports::PortSpec>,
}

/// One mount in the container, applied in order after the root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute path inside the container.
    pub destination: String,
    pub kind: MountKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum MountKind {
    /// A host path (`-v /src:/dst`).
    Bind { source: PathBuf, readonly: bool },
    /// A tmpfs with mount options (`noexec,nosuid,nodev` merged with the user's).
    Tmpfs { options: Vec<String> },
    /// A named or anonymous volume, `source` = `volumes_root/NAME/_data` (the caller creates it
    /// on first use).
    Volume {
        name: String,
        source: PathBuf,
        readonly: bool,
    },
}

/// Resource limits, applied through cgroups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub memory_bytes: Option<i64>,
    pub cpu_quota_us: Option<i64>,
    pub cpu_period_us: u64,
    pub pids_limit: Option<i64>,
}

impl Default for Resources {
    fn default() -> Resources {
        Resources {
            memory_bytes: None,
            cpu_quota_us: None,
            cpu_period_us: DEFAULT_CPU_PERIOD_US,
            pids_limit: None,
        }
    }
}

/// Why a spec could not be built or is not valid. Messages follow Docker's where Docker has one.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("no command specified: give a command after the image name or use --entrypoint")]
    NoCommand,
    #[error("the working directory '{0}' is invalid, it needs to be an absolute path")]
    RelativeWorkdir(String),
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    #[error("invalid user specification '{0}': use name, uid, name:group or uid:gid")]
    InvalidUser(String),
    #[error("reading {path} from the image: {source}")]
    ReadImageFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unknown capability: \"{0}\"")]
    UnknownCapability(String),
    #[error("invalid volume specification: '{spec}': {reason}")]
    InvalidVolume { spec: String, reason: String },
    #[error("invalid tmpfs specification: '{spec}': {reason}")]
    InvalidTmpfs { spec: String, reason: String },
    #[error("invalid mount path: '{0}' mount path must be absolute")]
    RelativeMountPath(String),
    #[error("invalid mount path: '{0}' must not contain '..' or a NUL byte")]
    BadMountPath(String),
    #[error("invalid specification: destination can't be '/'")]
    RootDestination,
    #[error("duplicate mount point: {0}")]
    DuplicateMount(String),
    #[error("minimum memory limit allowed is 6MB")]
    MemoryTooLow,
    #[error("invalid --cpus {0}: the range of cpus is from 0.01 upwards")]
    InvalidCpus(f64),
    #[error("cpu cfs quota can not be less than 1ms (i.e. 1000), got {0}")]
    CpuQuotaTooLow(i64),
    #[error("cpu cfs period must be between 1000 and 1000000 microseconds, got {0}")]
    InvalidCpuPeriod(u64),
    #[error("invalid pids limit {0}: give a positive number, or -1 for unlimited")]
    InvalidPidsLimit(i64),
    #[error("invalid signal: {0}: use a name like SIGTERM or TERM, or a number from 1 to 64")]
    InvalidSignal(String),
    #[error(
        "invalid network \"{0}\": use bridge, host, none, or the name of a network from `ctl network ls`"
    )]
    UnsupportedNetwork(String),
    #[error("invalid environment variable '{0}': {1}")]
    InvalidEnv(String, String),
    #[error("env file line {line}: {reason}")]
    EnvFile { line: usize, reason: String },
    #[error("invalid hostname '{0}': use 1 to 64 characters without '/', spaces or NUL")]
    InvalidHostname(String),
    #[error("invalid container id '{0}': it must have at least 12 characters")]
    InvalidContainerId(String),
    #[error("invalid size: '{0}': use bytes or a number with a unit like 512m or 1g")]
    InvalidSize(String),
    #[error("invalid argument: {0} contains a NUL byte")]
    NulByte(String),
}

impl FromStr for NetworkMode {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<NetworkMode, SpecError> {
        match s {
            "none" => Ok(NetworkMode::None),
            "host" => Ok(NetworkMode::Host),
            // `ns:/run/netns/NAME`, podman's spelling for joining a bind-mounted namespace.
            other if other.starts_with("ns:/") => Ok(NetworkMode::Join(PathBuf::from(&other[3..]))),
            // docker's `default` is its bridge network.
            "bridge" | "default" => Ok(NetworkMode::Network("bridge".to_string())),
            // Whether the network exists is checked when the container is created.
            name if valid_network_name(name) => Ok(NetworkMode::Network(name.to_string())),
            other => Err(SpecError::UnsupportedNetwork(other.to_string())),
        }
    }
}

/// Docker's rule for network names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn valid_network_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkMode::None => f.write_str("none"),
            NetworkMode::Host => f.write_str("host"),
            NetworkMode::Join(path) => write!(f, "ns:{}", path.display()),
            NetworkMode::Network(name) => f.write_str(name),
        }
    }
}

/// Builds the spec of container `container_id` (64 hex chars; its first 12 are the default
/// hostname) from an image config and run options, then validates it. `rootfs` is the
/// container's root filesystem (only `/etc/passwd` and `/etc/group` are read); named volumes
/// live in `volumes_root/NAME/_data`; `caller_env` resolves `-e K` entries without a value.
pub fn build_spec(
    image: &ImageConfiguration,
    opts: &RunOptions,
    rootfs: &Path,
    volumes_root: &Path,
    container_id: &str,
    caller_env: &HashMap<String, String>,
) -> Result<ContainerSpec, SpecError> {
    let config = image.config().clone().unwrap_or_default();

    let args = merge_args(
        config.entrypoint().as_deref(),
        config.cmd().as_deref(),
        opts.entrypoint.as_deref(),
        &opts.cmd,
    )?;

    let cwd = match opts
        .workdir
        .as_deref()
        .filter(|w| !w.is_empty())
        .or(config.working_dir().as_deref().filter(|w| !w.is_empty()))
    {
        Some(w) => {
            if !w.starts_with('/') {
                return Err(SpecError::RelativeWorkdir(w.to_string()));
            }
            clean_path(w)
        }
        None => "/".to_string(),
    };

    let user_spec = opts
        .user
        .as_deref()
        .filter(|u| !u.is_empty())
        .or(config.user().as_deref().filter(|u| !u.is_empty()));
    let user = resolve_user(rootfs, user_spec.unwrap_or(""))?;

    let hostname = match opts.hostname.as_deref().filter(|h| !h.is_empty()) {
        Some(h) => h.to_string(),
        None => {
            let short: String = container_id.chars().take(12).collect();
            if short.len() < 12 {
                return Err(SpecError::InvalidContainerId(container_id.to_string()));
            }
            // Docker gives a container on the host's network the host's name.
            match opts.network {
                NetworkMode::Host => host_hostname().unwrap_or(short),
                NetworkMode::None | NetworkMode::Join(_) | NetworkMode::Network(_) => short,
            }
        }
    };

    let env = merge_env(
        config.env().as_deref().unwrap_or(&[]),
        &opts.env,
        caller_env,
        &hostname,
        opts.tty,
        &user.home,
    );

    let capabilities = if opts.privileged {
        ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect()
    } else {
        tweak_capabilities(&opts.cap_add, &opts.cap_drop)?
    };
    let (masked_paths, readonly_paths) = if opts.privileged {
        (Vec::new(), Vec::new())
    } else {
        (
            DEFAULT_MASKED_PATHS.iter().map(|p| p.to_string()).collect(),
            DEFAULT_READONLY_PATHS
                .iter()
                .map(|p| p.to_string())
                .collect(),
        )
    };

    let mut mounts = Vec::new();
    for v in &opts.volumes {
        mounts.push(parse_volume(v, volumes_root)?);
    }
    for t in &opts.tmpfs {
        mounts.push(parse_tmpfs(t)?);
    }
    // Image volumes that no user mount covers become anonymous volumes, as in Docker.
    for dest in config.volumes().as_deref().unwrap_or(&[]) {
        let dest = clean_path(dest);
        if !mounts.iter().any(|m| m.destination == dest) {
            let name = random_volume_name();
            let source = volumes_root.join(&name).join("_data");
            mounts.push(Mount {
                destination: dest,
                kind: MountKind::Volume {
                    name,
                    source,
                    readonly: false,
                },
            });
        }
    }

    let cpu_quota_us = match opts.cpus {
        Some(c) if !(c.is_finite() && c > 0.0) => return Err(SpecError::InvalidCpus(c)),
        Some(c) => Some((c * DEFAULT_CPU_PERIOD_US as f64).round() as i64),
        None => None,
    };
    let resources = Resources {
        // Docker treats 0 as "no limit".
        memory_bytes: opts.memory.filter(|m| *m != 0),
        cpu_quota_us,
        cpu_period_us: DEFAULT_CPU_PERIOD_US,
        pids_limit: match opts.pids_limit {
            // Docker: 0 means unset and -1 unlimited.
            Some(0) | Some(-1) | None => None,
            Some(n) => Some(n),
        },
    };

    let stop_signal = match opts
        .stop_signal
        .as_deref()
        .filter(|s| !s.is_empty())
        .or(config.stop_signal().as_deref().filter(|s| !s.is_empty()))
    {
        Some(s) => parse_signal(s)?,
        None => 15,
    };

    let spec = ContainerSpec {
        args,
        env,
        cwd,
        uid: user.uid,
        gid: user.gid,
        additional_gids: user.sgids,
        hostname,
        network: opts.network.clone(),
        mounts,
        capabilities,
        no_new_privileges: opts.no_new_privileges,
        read_only_rootfs: opts.read_only,
        masked_paths,
        readonly_paths,
        resources,
        tty: opts.tty,
        stop_signal,
        stop_timeout: opts.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT),
        name: opts.name.clone(),
        interactive: opts.interactive,
        auto_remove: opts.auto_remove,
        privileged: opts.privileged,
        ports: Vec::new(),
    };
    spec.validate()?;
    Ok(spec)
}

impl ContainerSpec {
    /// Checks what the process setup relies on: absolute clean paths, unique mount destinations,
    /// limits the kernel accepts, known capabilities, a valid signal.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.args.is_empty() || self.args[0].is_empty() {
            return Err(SpecError::NoCommand);
        }
        for a in &self.args {
            if a.contains('\0') {
                return Err(SpecError::NulByte(format!("argument {a:?}")));
            }
        }
        for e in &self.env {
            check_env_entry(e)?;
        }
        if !self.cwd.starts_with('/') {
            return Err(SpecError::RelativeWorkdir(self.cwd.clone()));
        }
        check_container_path(&self.cwd)?;
        if self.hostname.is_empty()
            || self.hostname.len() > 64
            || self
                .hostname
                .chars()
                .any(|c| c == '/' || c == '\0' || c.is_whitespace())
        {
            return Err(SpecError::InvalidHostname(self.hostname.clone()));
        }
        let mut seen = std::collections::HashSet::new();
        for m in &self.mounts {
            check_destination(&m.destination)?;
            if !seen.insert(clean_path(&m.destination)) {
                return Err(SpecError::DuplicateMount(m.destination.clone()));
            }
            match &m.kind {
                MountKind::Bind { source, .. } | MountKind::Volume { source, .. } => {
                    if !source.is_absolute() {
                        return Err(SpecError::RelativeMountPath(source.display().to_string()));
                    }
                }
                MountKind::Tmpfs { .. } => {}
            }
        }
        for c in &self.capabilities {
            if !ALL_CAPABILITIES.contains(&c.as_str()) {
                return Err(SpecError::UnknownCapability(c.clone()));
            }
        }
        for p in self.masked_paths.iter().chain(&self.readonly_paths) {
            if !p.starts_with('/') {
                return Err(SpecError::RelativeMountPath(p.clone()));
            }
        }
        let r = &self.resources;
        if let Some(m) = r.memory_bytes {
            if m < MIN_MEMORY_BYTES {
                return Err(SpecError::MemoryTooLow);
            }
        }
        if !(1000..=1_000_000).contains(&r.cpu_period_us) {
            return Err(SpecError::InvalidCpuPeriod(r.cpu_period_us));
        }
        if let Some(q) = r.cpu_quota_us {
            if q < 1000 {
                return Err(SpecError::CpuQuotaTooLow(q));
            }
        }
        if let Some(p) = r.pids_limit {
            if p <= 0 {
                return Err(SpecError::InvalidPidsLimit(p));
            }
        }
        if !(1..=64).contains(&self.stop_signal) {
            return Err(SpecError::InvalidSignal(self.stop_signal.to_string()));
        }
        Ok(())
    }
}

/// Parses an `--env-file` as Docker does: one `K=V` or `K` per line, lines starting with `#`
/// and blank lines skipped, leading whitespace trimmed, values kept verbatim.
pub fn parse_env_file(text: &str) -> Result<Vec<String>, SpecError> {
    let mut out = Vec::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (line.trim_end(), None),
        };
        if key.is_empty() {
            return Err(SpecError::EnvFile {
                line: i + 1,
                reason: format!("no variable name on line '{line}'"),
            });
        }
        if key.chars().any(char::is_whitespace) {
            return Err(SpecError::EnvFile {
                line: i + 1,
                reason: format!("variable '{key}' contains whitespaces"),
            });
        }
        out.push(match value {
            Some(v) => format!("{key}={v}"),
            None => key.to_string(),
        });
    }
    Ok(out)
}

/// Parses a size as Docker does (`go-units` RAMInBytes): bytes, or a number (decimals allowed)
/// with a binary unit `k`, `m`, `g`, `t`, `p`, optionally followed by `b` or `ib`, any case.
pub fn parse_bytes(s: &str) -> Result<i64, SpecError> {
    let bad = || SpecError::InvalidSize(s.to_string());
    let t = s.trim();
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(num_end);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return Err(bad());
    }
    let value: f64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim_start().to_ascii_lowercase();
    let mut chars = unit.chars();
    let mult: f64 = match chars.next() {
        None => 1.0,
        Some('b') if unit.len() == 1 => 1.0,
        Some('k') => 1024.0,
        Some('m') => 1024f64.powi(2),
        Some('g') => 1024f64.powi(3),
        Some('t') => 1024f64.powi(4),
        Some('p') => 1024f64.powi(5),
        Some(_) => return Err(bad()),
    };
    let rest: String = chars.collect();
    if mult != 1.0 && !matches!(rest.as_str(), "" | "b" | "ib" | "i") {
        return Err(bad());
    }
    let bytes = value * mult;
    if !bytes.is_finite() || bytes > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as i64)
}

/// Parses a signal as Docker does: `SIGTERM`, `TERM`, `term`, `15`, `SIGRTMIN+3`.
pub fn parse_signal(s: &str) -> Result<i32, SpecError> {
    let bad = || SpecError::InvalidSignal(s.to_string());
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    // Linux numbers, written out so the spec is the same whichever host compiles it.
    const SIGNALS: &[(&str, i32)] = &[
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("ILL", 4),
        ("TRAP", 5),
        ("ABRT", 6),
        ("IOT", 6),
        ("BUS", 7),
        ("FPE", 8),
        ("KILL", 9),
        ("USR1", 10),
        ("SEGV", 11),
        ("USR2", 12),
        ("PIPE", 13),
        ("ALRM", 14),
        ("TERM", 15),
        ("STKFLT", 16),
        ("CHLD", 17),
        ("CONT", 18),
        ("STOP", 19),
        ("TSTP", 20),
        ("TTIN", 21),
        ("TTOU", 22),
        ("URG", 23),
        ("XCPU", 24),
        ("XFSZ", 25),
        ("VTALRM", 26),
        ("PROF", 27),
        ("WINCH", 28),
        ("IO", 29),
        ("POLL", 29),
        ("PWR", 30),
        ("SYS", 31),
        ("RTMIN", 34),
        ("RTMAX", 64),
    ];
    if let Some((_, n)) = SIGNALS.iter().find(|(k, _)| *k == name) {
        return Ok(*n);
    }
    let offset = |rest: &str| rest.parse::<i32>().map_err(|_| bad());
    let n = if let Some(rest) = name.strip_prefix("RTMIN+") {
        34 + offset(rest)?
    } else if let Some(rest) = name.strip_prefix("RTMAX-") {
        64 - offset(rest)?
    } else {
        return Err(bad());
    };
    if (34..=64).contains(&n) {
        Ok(n)
    } else {
        Err(bad())
    }
}

/// Applies `--cap-add`/`--cap-drop` to Docker's default set with Docker's rules: adding ALL
/// gives every capability except the dropped ones; dropping ALL keeps only the added ones;
/// otherwise defaults minus drops plus adds.
pub fn tweak_capabilities(add: &[String], drop: &[String]) -> Result<Vec<String>, SpecError> {
    let add = normalize_caps(add)?;
    let drop = normalize_caps(drop)?;
    let all = "ALL".to_string();
    let mut caps: Vec<String> = if add.contains(&all) {
        ALL_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    } else if drop.contains(&all) {
        add
    } else {
        let mut caps: Vec<String> = DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .collect();
        caps.extend(add);
        caps
    };
    let mut seen = std::collections::HashSet::new();
    caps.retain(|c| seen.insert(c.clone()));
    Ok(caps)
}

// ---- private helpers ----

fn normalize_caps(names: &[String]) -> Result<Vec<String>, SpecError> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        let mut c = n.trim().to_ascii_uppercase();
        if c != "ALL" {
            if !c.starts_with("CAP_") {
                c = format!("CAP_{c}");
            }
            if !ALL_CAPABILITIES.contains(&c.as_str()) {
                return Err(SpecError::UnknownCapability(c));
            }
        }
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

fn merge_args(
    image_entrypoint: Option<&[String]>,
    image_cmd: Option<&[String]>,
    entrypoint: Option<&[String]>,
    cmd: &[String],
) -> Result<Vec<String>, SpecError> {
    let (entry, cmd): (Vec<String>, Vec<String>) = match entrypoint {
        // `--entrypoint` replaces the image's and, as in Docker, drops the image's CMD.
        Some(e) => {
            let e = if e.len() == 1 && e[0].is_empty() {
                &[][..]
            } else {
                e
            };
            (e.to_vec(), cmd.to_vec())
        }
        None => {
            let c = if cmd.is_empty() {
                image_cmd.unwrap_or(&[]).to_vec()
            } else {
                cmd.to_vec()
            };
            (image_entrypoint.unwrap_or(&[]).to_vec(), c)
        }
    };
    let args: Vec<String> = entry.into_iter().chain(cmd).collect();
    if args.is_empty() || args[0].is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(args)
}

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map(|(k, _)| k).unwrap_or(entry)
}

/// Docker's `ReplaceOrAppendEnvValues`: a later `K=V` replaces an earlier K in place, a bare `K`
/// removes it.
fn replace_or_append(env: &mut Vec<String>, entry: String) {
    let key = env_key(&entry).to_string();
    if entry.contains('=') {
        if let Some(slot) = env.iter_mut().find(|e| env_key(e) == key) {
            *slot = entry;
        } else {
            env.push(entry);
        }
    } else {
        env.retain(|e| env_key(e) != key);
    }
}

fn merge_env(
    image_env: &[String],
    user_env: &[String],
    caller_env: &HashMap<String, String>,
    hostname: &str,
    tty: bool,
    home: &str,
) -> Vec<String> {
    let mut config_env: Vec<String> = Vec::new();
    for e in image_env {
        replace_or_append(&mut config_env, e.clone());
    }
    for e in user_env {
        let entry = if e.contains('=') {
            e.clone()
        } else {
            match caller_env.get(e.as_str()) {
                Some(v) => format!("{e}={v}"),
                None => e.clone(),
            }
        };
        replace_or_append(&mut config_env, entry);
    }
    let mut env = Vec::new();
    if !config_env.iter().any(|e| env_key(e) == "PATH") {
        env.push(DEFAULT_PATH_ENV.to_string());
    }
    env.push(format!("HOSTNAME={hostname}"));
    if tty {
        env.push("TERM=xterm".to_string());
    }
    for e in config_env {
        replace_or_append(&mut env, e);
    }
    if !env.iter().any(|e| env_key(e) == "HOME") {
        env.push(format!("HOME={home}"));
    }
    env
}

fn check_env_entry(e: &str) -> Result<(), SpecError> {
    if e.contains('\0') {
        return Err(SpecError::InvalidEnv(
            e.to_string(),
            "it contains a NUL byte".into(),
        ));
    }
    match e.split_once('=') {
        Some((k, _)) if !k.is_empty() => Ok(()),
        Some(_) => Err(SpecError::InvalidEnv(
            e.to_string(),
            "the variable name is empty".into(),
        )),
        None => Err(SpecError::InvalidEnv(e.to_string(), "expected K=V".into())),
    }
}

/// `Path::clean` as Go's `filepath.Clean` for absolute container paths, which is what Docker
/// compares mount destinations with. `..` is kept so validation can refuse it.
fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    if p.starts_with('/') {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".into()
    } else {
        joined
    }
}

fn check_container_path(p: &str) -> Result<(), SpecError> {
    if p.contains('\0') || p.split('/').any(|c| c == "..") {
        return Err(SpecError::BadMountPath(p.to_string()));
    }
    Ok(())
}

fn check_destination(dest: &str) -> Result<(), SpecError> {
    if !dest.starts_with('/') {
        return Err(SpecError::RelativeMountPath(dest.to_string()));
    }
    check_container_path(dest)?;
    if clean_path(dest) == "/" {
        return Err(SpecError::RootDestination);
    }
    Ok(())
}

fn host_hostname() -> Option<String> {
    nix::unistd::gethostname()
        .ok()?
        .into_string()
        .ok()
        .filter(|h| !h.is_empty())
}

fn random_volume_name() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

fn valid_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn parse_volume(spec: &str, volumes_root: &Path) -> Result<Mount, SpecError> {
    let invalid = |reason: &str| SpecError::InvalidVolume {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, dest, mode) = match parts.as_slice() {
        [d] => (None, *d, None),
        [s, d] if d.starts_with('/') || !s.starts_with('/') => (Some(*s), *d, None),
        [d, m] => (None, *d, Some(*m)),
        [s, d, m] => (Some(*s), *d, Some(*m)),
        _ => {
            return Err(invalid(
                "use NAME:/path[:ro], /host/path:/path[:ro|rw] or /path",
            ))
        }
    };
    if dest.is_empty() {
        return Err(invalid("the destination is empty"));
    }
    check_destination(dest)?;
    let readonly = match mode {
        None => false,
        Some(m) => {
            let mut ro = false;
            for flag in m.split(',') {
                match flag {
                    "ro" => ro = true,
                    "rw" => ro = false,
                    other => {
                        return Err(invalid(&format!(
                            "unsupported mode '{other}': use ro or rw"
                        )));
                    }
                }
            }
            ro
        }
    };
    let destination = clean_path(dest);
    let kind = match source {
        None => {
            let name = random_volume_name();
            let source = volumes_root.join(&name).join("_data");
            MountKind::Volume {
                name,
                source,
                readonly,
            }
        }
        Some(s) if s.starts_with('/') => {
            if s.contains('\0') {
                return Err(invalid("the source contains a NUL byte"));
            }
            MountKind::Bind {
                source: PathBuf::from(clean_path(s)),
                readonly,
            }
        }
        Some(s) if valid_volume_name(s) => MountKind::Volume {
            name: s.to_string(),
            source: volumes_root.join(s).join("_data"),
            readonly,
        },
        Some(s) => {
            return Err(invalid(&format!(
                "\"{s}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed; if you intended to pass a host directory, use an absolute path"
            )));
        }
    };
    Ok(Mount { destination, kind })
}

fn parse_tmpfs(spec: &str) -> Result<Mount, SpecError> {
    let (dest, opts) = match spec.split_once(':') {
        Some((d, o)) => (d, Some(o)),
        None => (spec, None),
    };
    if dest.is_empty() {
        return Err(SpecError::InvalidTmpfs {
            spec: spec.to_string(),
            reason: "the destination is empty".into(),
        });
    }
    check_destination(dest)?;
    let mut options: Vec<String> = vec!["noexec".into(), "nosuid".into(), "nodev".into()];
    if let Some(o) = opts {
        for opt in o.split(',').filter(|o| !o.is_empty()) {
            if opt.contains('\0') {
                return Err(SpecError::InvalidTmpfs {
                    spec: spec.to_string(),
                    reason: "an option contains a NUL byte".into(),
                });
            }
            merge_tmpfs_option(&mut options, opt);
        }
    }
    Ok(Mount {
        destination: clean_path(dest),
        kind: MountKind::Tmpfs { options },
    })
}

/// Docker's `MergeTmpfsOptions`: a flag replaces its opposite (`exec` after the default
/// `noexec`), a `key=value` replaces an earlier value of the same key.
fn merge_tmpfs_option(options: &mut Vec<String>, opt: &str) {
    const OPPOSITES: &[(&str, &str)] = &[
        ("exec", "noexec"),
        ("suid", "nosuid"),
        ("dev", "nodev"),
        ("rw", "ro"),
        ("atime", "noatime"),
        ("diratime", "nodiratime"),
        ("relatime", "norelatime"),
    ];
    let opposite = OPPOSITES.iter().find_map(|(a, b)| {
        if *a == opt {
            Some(*b)
        } else if *b == opt {
            Some(*a)
        } else {
            None
        }
    });
    let key = opt.split_once('=').map(|(k, _)| k);
    options.retain(|o| {
        let same_flag = o == opt;
        let is_opposite = opposite == Some(o.as_str());
        let same_key = key.is_some() && o.split_once('=').map(|(k, _)| k) == key;
        !(same_flag || is_opposite || same_key)
    });
    options.push(opt.to_string());
}

struct ExecUser {
    uid: u32,
    gid: u32,
    sgids: Vec<u32>,
    home: String,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// runc's `GetExecUser`, which Docker uses: match the user by name or (if numeric) by uid; a
/// numeric user need not exist; an explicit group sets the primary gid, otherwise the groups
/// listing the user become supplementary groups.
fn resolve_user(rootfs: &Path, spec: &str) -> Result<ExecUser, SpecError> {
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_arg = if user_arg.is_empty() { "0" } else { user_arg };
    if group_arg == Some("") || group_arg.is_some_and(|g| g.contains(':')) {
        return Err(SpecError::InvalidUser(spec.to_string()));
    }
    let uid_arg = user_arg
        .parse::<u32>()
        .ok()
        .filter(|u| *u <= i32::MAX as u32);
    if uid_arg.is_none() && user_arg.chars().all(|c| c.is_ascii_digit()) {
        return Err(SpecError::InvalidUser(spec.to_string()));
    }

    let passwd = read_image_file(rootfs, "etc/passwd")?
        .map(|t| parse_passwd(&t))
        .unwrap_or_default();
    let matched = passwd.into_iter().find(|p| match uid_arg {
        Some(uid) => p.uid == uid,
        None => p.name == user_arg,
    });
    let mut user = ExecUser {
        uid: 0,
        gid: 0,
        sgids: Vec::new(),
        home: "/".to_string(),
    };
    let mut user_name = String::new();
    match (matched, uid_arg) {
        (Some(p), _) => {
            user.uid = p.uid;
            user.gid = p.gid;
            user.home = p.home;
            user_name = p.name;
        }
        (None, Some(uid)) => user.uid = uid,
        (None, None) => return Err(SpecError::UnknownUser(user_arg.to_string())),
    }

    if group_arg.is_some() || !user_name.is_empty() {
        let groups = read_image_file(rootfs, "etc/group")?
            .map(|t| parse_group(&t))
            .unwrap_or_default();
        match group_arg {
            Some(g) => {
                let gid_arg = g.parse::<u32>().ok().filter(|g| *g <= i32::MAX as u32);
                if gid_arg.is_none() && g.chars().all(|c| c.is_ascii_digit()) {
                    return Err(SpecError::InvalidUser(spec.to_string()));
                }
                let found = groups.iter().find(|e| match gid_arg {
                    Some(gid) => e.gid == gid,
                    None => e.name == g,
                });
                user.gid = match (found, gid_arg) {
                    (Some(e), _) => e.gid,
                    (None, Some(gid)) => gid,
                    (None, None) => return Err(SpecError::UnknownGroup(g.to_string())),
                };
            }
            None => {
                for e in groups.iter().filter(|e| e.members.contains(&user_name)) {
                    if !user.sgids.contains(&e.gid) {
                        user.sgids.push(e.gid);
                    }
                }
            }
        }
    }
    Ok(user)
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f
                    .get(5)
                    .filter(|h| !h.is_empty())
                    .unwrap_or(&"/")
                    .to_string(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Reads `rel` (e.g. `etc/passwd`) of the image, resolving symlinks as if `rootfs` were `/`, so
/// an image's `/etc/passwd -> /etc/shadow` cannot make us read the host's files. `Ok(None)` when
/// the file does not exist.
fn read_image_file(rootfs: &Path, rel: &str) -> Result<Option<String>, SpecError> {
    let err = |source| SpecError::ReadImageFile {
        path: rootfs.join(rel),
        source,
    };
    let Some(path) = resolve_in_root(rootfs, Path::new(rel)).map_err(err)? else {
        return Ok(None);
    };
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(e)),
    }
}

fn resolve_in_root(root: &Path, rel: &Path) -> std::io::Result<Option<PathBuf>> {
    // Components still to walk, as a stack (last = next); symlink targets are pushed back.
    let mut todo: Vec<std::ffi::OsString> = rel
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut resolved: Vec<std::ffi::OsString> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let mut candidate: PathBuf = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&c);
        match std::fs::symlink_metadata(&candidate) {
            Ok(md) if md.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(std::io::Error::other("too many levels of symbolic links"));
                }
                let target = std::fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved.clear();
                }
                for comp in target.components().rev() {
                    match comp {
                        Component::Normal(n) => todo.push(n.to_os_string()),
                        Component::ParentDir => todo.push("..".into()),
                        _ => {}
                    }
                }
            }
            Ok(_) => resolved.push(c),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&resolved);
    Ok(Some(out))
}

#[cfg(test)]
#[allow(clippy::type_complexity)] // the case tables read best inline
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn image(config: serde_json::Value) -> ImageConfiguration {
        let full = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": config,
        });
        serde_json::from_value(full).expect("test image config is valid")
    }

    /// A rootfs with a small /etc/passwd and /etc/group.
    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("etc")).expect("mkdir etc");
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n# comment\nalice:x:1000:1000::/home/alice:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
        )
        .expect("write passwd");
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:root\nwheel:x:10:root,alice\nalice:x:1000:\nstaff:x:50:alice\naudio:x:29:bob\n",
        )
        .expect("write group");
        dir
    }

    fn build_with(img: &ImageConfiguration, opts: &RunOptions) -> Result<ContainerSpec, SpecError> {
        let root = rootfs();
        let caller: HashMap<String, String> =
            [("FROM_CALLER".to_string(), "yes".to_string())].into();
        build_spec(
            img,
            opts,
            root.path(),
            Path::new("/var/lib/flotilla/volumes"),
            ID,
            &caller,
        )
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn args_follow_docker_entrypoint_and_cmd_rules() {
        // (image entrypoint, image cmd, --entrypoint, command line) -> args or error
        type Case = (
            Option<Vec<&'static str>>,
            Option<Vec<&'static str>>,
            Option<Vec<&'static str>>,
            Vec<&'static str>,
            Option<Vec<&'static str>>,
        );
        let cases: Vec<Case> = vec![
            (None, Some(vec!["sh"]), None, vec![], Some(vec!["sh"])),
            (
                None,
                Some(vec!["sh"]),
                None,
                vec!["echo", "hi"],
                Some(vec!["echo", "hi"]),
            ),
            (
                Some(vec!["/entry"]),
                Some(vec!["a"]),
                None,
                vec![],
                Some(vec!["/entry", "a"]),
            ),
            (
                Some(vec!["/entry"]),
                Some(vec!["a"]),
                None,
                vec!["b"],
                Some(vec!["/entry", "b"]),
            ),
            // --entrypoint drops the image CMD
            (
                Some(vec!["/entry"]),
                Some(vec!["a"]),
                Some(vec!["/other"]),
                vec![],
                Some(vec!["/other"]),
            ),
            (
                Some(vec!["/entry"]),
                Some(vec!["a"]),
                Some(vec!["/other"]),
                vec!["x"],
                Some(vec!["/other", "x"]),
            ),
            // --entrypoint "" clears it, and the image CMD with it
            (
                Some(vec!["/entry"]),
                Some(vec!["a"]),
                Some(vec![""]),
                vec!["ls"],
                Some(vec!["ls"]),
            ),
            (
                Some(vec!["/entry"]),
                Some(vec!["a"]),
                Some(vec![]),
                vec!["ls"],
                Some(vec!["ls"]),
            ),
            (
                Some(vec!["/entry"]),
                Some(vec!["a"]),
                Some(vec![""]),
                vec![],
                None,
            ),
            (None, None, None, vec![], None),
            (None, Some(vec![""]), None, vec![], None),
        ];
        for (ie, ic, e, c, want) in cases {
            let img = image(serde_json::json!({"Entrypoint": ie, "Cmd": ic}));
            let opts = RunOptions {
                entrypoint: e.clone().map(|v| s(&v)),
                cmd: s(&c),
                ..Default::default()
            };
            let got = build_with(&img, &opts);
            match (want, got) {
                (Some(w), Ok(spec)) => {
                    assert_eq!(spec.args, s(&w), "case {ie:?} {ic:?} {e:?} {c:?}")
                }
                (None, Err(SpecError::NoCommand)) => {}
                (w, g) => panic!("case {ie:?} {ic:?} {e:?} {c:?}: want {w:?}, got {g:?}"),
            }
        }
        assert!(SpecError::NoCommand
            .to_string()
            .starts_with("no command specified"));
    }

    #[test]
    fn env_merges_like_docker() {
        let cmd = s(&["sh"]);
        // image without PATH: the default comes first, then HOSTNAME, then the image env
        let img = image(serde_json::json!({"Env": ["A=1", "B=2"]}));
        let spec = build_with(
            &img,
            &RunOptions {
                cmd: cmd.clone(),
                ..Default::default()
            },
        )
        .expect("spec");
        assert_eq!(
            spec.env,
            s(&[
                DEFAULT_PATH_ENV,
                "HOSTNAME=0123456789ab",
                "A=1",
                "B=2",
                "HOME=/root"
            ])
        );

        // image PATH kept; -e overrides in place, -e K from the caller, -e K missing removes it
        let img = image(serde_json::json!({"Env": ["PATH=/bin", "A=1", "B=2", "C=3"]}));
        let opts = RunOptions {
            cmd: cmd.clone(),
            env: s(&["A=x", "FROM_CALLER", "C", "D=4", "HOME=/h"]),
            tty: true,
            user: Some("alice".into()),
            ..Default::default()
        };
        let spec = build_with(&img, &opts).expect("spec");
        assert_eq!(
            spec.env,
            s(&[
                "HOSTNAME=0123456789ab",
                "TERM=xterm",
                "PATH=/bin",
                "A=x",
                "B=2",
                "FROM_CALLER=yes",
                "D=4",
                "HOME=/h"
            ])
        );

        // HOME from the passwd entry, "/" when the numeric user has none
        let img = image(serde_json::json!({"Env": ["PATH=/bin"]}));
        let home = |user: &str| {
            let spec = build_with(
                &img,
                &RunOptions {
                    cmd: cmd.clone(),
                    user: Some(user.into()),
                    ..Default::default()
                },
            )
            .expect("spec");
            spec.env.iter().find(|e| e.starts_with("HOME=")).cloned()
        };
        assert_eq!(home("alice").as_deref(), Some("HOME=/home/alice"));
        assert_eq!(home("4242").as_deref(), Some("HOME=/"));

        // a user-given HOSTNAME wins, as ReplaceOrAppendEnvValues does
        let spec = build_with(
            &img,
            &RunOptions {
                cmd,
                env: s(&["HOSTNAME=mine"]),
                ..Default::default()
            },
        )
        .expect("spec");
        assert!(spec.env.contains(&"HOSTNAME=mine".to_string()));
        assert!(!spec.env.iter().any(|e| e == "HOSTNAME=0123456789ab"));
    }

    #[test]
    fn env_file_parsing() {
        let good = "\u{feff}# comment\n\n  A=1\nB= spaced value \nC\nD=\nE=a=b\n";
        assert_eq!(
            parse_env_file(good).expect("parse"),
            s(&["A=1", "B= spaced value ", "C", "D=", "E=a=b"])
        );
        for (bad, needle) in [
            ("=x\n", "no variable name"),
            ("A B=1\n", "contains whitespaces"),
            ("ok=1\nmy var\n", "line 2"),
        ] {
            let err = parse_env_file(bad).expect_err(bad).to_string();
            assert!(err.contains(needle), "{bad:?}: {err}");
        }
    }

    #[test]
    fn workdir_rules() {
        let cases: &[(Option<&str>, Option<&str>, Result<&str, ()>)] = &[
            (None, None, Ok("/")),
            (Some("/app"), None, Ok("/app")),
            (Some("/app"), Some("/work/"), Ok("/work")),
            (None, Some("/a//b/./c"), Ok("/a/b/c")),
            (None, Some("rel"), Err(())),
            (Some("rel"), None, Err(())),
            (Some("/x/../../etc"), None, Err(())),
        ];
        for (img_wd, opt_wd, want) in cases {
            let img = image(serde_json::json!({"Cmd": ["sh"], "WorkingDir": img_wd}));
            let got = build_with(
                &img,
                &RunOptions {
                    workdir: opt_wd.map(String::from),
                    ..Default::default()
                },
            );
            match (want, got) {
                (Ok(w), Ok(spec)) => assert_eq!(spec.cwd, *w),
                (Err(()), Err(SpecError::RelativeWorkdir(_) | SpecError::BadMountPath(_))) => {}
                (w, g) => panic!("{img_wd:?} {opt_wd:?}: want {w:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn user_resolution_matches_runc() {
        // (image User, -u) -> (uid, gid, supplementary gids) or error text
        let cases: &[(
            Option<&str>,
            Option<&str>,
            Result<(u32, u32, Vec<u32>), &str>,
        )] = &[
            (None, None, Ok((0, 0, vec![0, 10]))),
            (Some("alice"), None, Ok((1000, 1000, vec![10, 50]))),
            (None, Some("alice"), Ok((1000, 1000, vec![10, 50]))),
            (Some("nobody"), Some("1000"), Ok((1000, 1000, vec![10, 50]))),
            (None, Some("4242"), Ok((4242, 0, vec![]))),
            (None, Some("alice:staff"), Ok((1000, 50, vec![]))),
            (None, Some("1000:29"), Ok((1000, 29, vec![]))),
            (None, Some("4242:777"), Ok((4242, 777, vec![]))),
            (
                None,
                Some("bob"),
                Err("unable to find user bob: no matching entries in passwd file"),
            ),
            (
                None,
                Some("alice:nogroup"),
                Err("unable to find group nogroup: no matching entries in group file"),
            ),
            (None, Some("alice:"), Err("invalid user specification")),
            (None, Some("99999999999"), Err("invalid user specification")),
        ];
        for (img_user, opt_user, want) in cases {
            let img = image(serde_json::json!({"Cmd": ["sh"], "User": img_user}));
            let got = build_with(
                &img,
                &RunOptions {
                    user: opt_user.map(String::from),
                    ..Default::default()
                },
            );
            match (want, got) {
                (Ok((u, g, sg)), Ok(spec)) => {
                    assert_eq!(
                        (spec.uid, spec.gid, &spec.additional_gids),
                        (*u, *g, sg),
                        "{img_user:?} {opt_user:?}"
                    )
                }
                (Err(text), Err(e)) => {
                    assert!(e.to_string().starts_with(text), "{opt_user:?}: {e}")
                }
                (w, g) => panic!("{img_user:?} {opt_user:?}: want {w:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn user_lookup_without_files_and_through_symlinks() {
        let empty = tempfile::tempdir().expect("tempdir");
        let caller = HashMap::new();
        let img = image(serde_json::json!({"Cmd": ["sh"]}));
        let run = |root: &Path, user: &str| {
            build_spec(
                &img,
                &RunOptions {
                    user: Some(user.into()),
                    ..Default::default()
                },
                root,
                Path::new("/v"),
                ID,
                &caller,
            )
        };
        let spec = run(empty.path(), "123:456").expect("numeric ids need no files");
        assert_eq!((spec.uid, spec.gid), (123, 456));
        assert!(matches!(
            run(empty.path(), "alice"),
            Err(SpecError::UnknownUser(_))
        ));

        // an absolute symlink is resolved inside the rootfs, never on the host
        let root = rootfs();
        std::fs::create_dir(root.path().join("data")).expect("mkdir");
        std::fs::rename(
            root.path().join("etc/passwd"),
            root.path().join("data/passwd"),
        )
        .expect("move");
        std::os::unix::fs::symlink("/data/passwd", root.path().join("etc/passwd"))
            .expect("symlink");
        assert_eq!(
            run(root.path(), "alice").expect("through symlink").uid,
            1000
        );
        std::fs::remove_file(root.path().join("etc/passwd")).expect("rm");
        std::os::unix::fs::symlink(
            "../../../../../../../../etc/passwd",
            root.path().join("etc/passwd"),
        )
        .expect("symlink");
        // the escape resolves to rootfs/etc/passwd, the link itself: a loop, not the host file
        assert!(run(root.path(), "root").is_err());
    }

    #[test]
    fn hostname_defaults_to_short_id() {
        let img = image(serde_json::json!({"Cmd": ["sh"]}));
        assert_eq!(
            build_with(&img, &RunOptions::default())
                .expect("spec")
                .hostname,
            "0123456789ab"
        );
        let opts = RunOptions {
            hostname: Some("web-1".into()),
            ..Default::default()
        };
        assert_eq!(build_with(&img, &opts).expect("spec").hostname, "web-1");
        let opts = RunOptions {
            network: NetworkMode::Host,
            ..Default::default()
        };
        assert_eq!(
            Some(build_with(&img, &opts).expect("spec").hostname),
            host_hostname()
        );
        let opts = RunOptions {
            hostname: Some("a/b".into()),
            ..Default::default()
        };
        assert!(matches!(
            build_with(&img, &opts),
            Err(SpecError::InvalidHostname(_))
        ));
        let caller = HashMap::new();
        let short = build_spec(
            &img,
            &RunOptions::default(),
            Path::new("/nonexistent"),
            Path::new("/v"),
            "abc",
            &caller,
        );
        assert!(matches!(short, Err(SpecError::InvalidContainerId(_))));
    }

    #[test]
    fn capabilities_follow_docker() {
        let defaults: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
        let all: Vec<String> = ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect();
        let without = |drop: &[&str]| -> Vec<String> {
            defaults
                .iter()
                .filter(|c| !drop.contains(&c.as_str()))
                .cloned()
                .collect()
        };
        let cases: Vec<(Vec<&str>, Vec<&str>, Result<Vec<String>, &str>)> = vec![
            (vec![], vec![], Ok(defaults.clone())),
            (
                vec![],
                vec!["net_raw", "CAP_MKNOD"],
                Ok(without(&["CAP_NET_RAW", "CAP_MKNOD"])),
            ),
            (
                vec!["SYS_ADMIN"],
                vec![],
                Ok([defaults.clone(), s(&["CAP_SYS_ADMIN"])].concat()),
            ),
            (vec!["chown"], vec![], Ok(defaults.clone())),
            (
                vec!["NET_ADMIN", "KILL"],
                vec!["ALL"],
                Ok(s(&["CAP_NET_ADMIN", "CAP_KILL"])),
            ),
            (vec!["ALL"], vec![], Ok(all.clone())),
            (
                vec!["all"],
                vec!["SYS_ADMIN"],
                Ok(all
                    .iter()
                    .filter(|c| *c != "CAP_SYS_ADMIN")
                    .cloned()
                    .collect()),
            ),
            (
                vec!["CAP_BOGUS"],
                vec![],
                Err("unknown capability: \"CAP_BOGUS\""),
            ),
            (
                vec![],
                vec!["nope"],
                Err("unknown capability: \"CAP_NOPE\""),
            ),
        ];
        let img = image(serde_json::json!({"Cmd": ["sh"]}));
        for (add, drop, want) in cases {
            let opts = RunOptions {
                cap_add: s(&add),
                cap_drop: s(&drop),
                ..Default::default()
            };
            match (want, build_with(&img, &opts)) {
                (Ok(w), Ok(spec)) => assert_eq!(spec.capabilities, w, "add {add:?} drop {drop:?}"),
                (Err(text), Err(e)) => assert_eq!(e.to_string(), text),
                (w, g) => panic!("add {add:?} drop {drop:?}: want {w:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn privileged_gets_everything_and_no_masks() {
        let img = image(serde_json::json!({"Cmd": ["sh"]}));
        let plain = build_with(&img, &RunOptions::default()).expect("spec");
        assert_eq!(plain.masked_paths, s(DEFAULT_MASKED_PATHS));
        assert_eq!(plain.readonly_paths, s(DEFAULT_READONLY_PATHS));
        assert_eq!(plain.resources, Resources::default());
        assert_eq!((plain.stop_signal, plain.stop_timeout), (15, 10));
        let opts = RunOptions {
            privileged: true,
            cap_drop: s(&["ALL"]),
            ..Default::default()
        };
        let spec = build_with(&img, &opts).expect("spec");
        assert_eq!(spec.capabilities.len(), ALL_CAPABILITIES.len());
        assert!(spec.masked_paths.is_empty() && spec.readonly_paths.is_empty());
    }

    #[test]
    fn volumes_binds_and_tmpfs() {
        let vroot = Path::new("/var/lib/flotilla/volumes");
        let good: &[(&str, &str, MountKind)] = &[
            (
                "data:/data",
                "/data",
                MountKind::Volume {
                    name: "data".into(),
                    source: vroot.join("data/_data"),
                    readonly: false,
                },
            ),
            (
                "my.vol-1:/d:ro",
                "/d",
                MountKind::Volume {
                    name: "my.vol-1".into(),
                    source: vroot.join("my.vol-1/_data"),
                    readonly: true,
                },
            ),
            (
                "/srv:/srv",
                "/srv",
                MountKind::Bind {
                    source: "/srv".into(),
                    readonly: false,
                },
            ),
            (
                "/srv/:/x/y/:rw",
                "/x/y",
                MountKind::Bind {
                    source: "/srv".into(),
                    readonly: false,
                },
            ),
            (
                "/etc/hosts:/h:ro",
                "/h",
                MountKind::Bind {
                    source: "/etc/hosts".into(),
                    readonly: true,
                },
            ),
        ];
        for (spec, dest, kind) in good {
            let m = parse_volume(spec, vroot).unwrap_or_else(|e| panic!("{spec}: {e}"));
            assert_eq!((&m.destination[..], &m.kind), (*dest, kind), "{spec}");
        }
        // `-v /path` and `/path:ro` are anonymous volumes
        for spec in ["/anon", "/anon:ro"] {
            let m = parse_volume(spec, vroot).expect("anonymous");
            let MountKind::Volume {
                name,
                source,
                readonly,
            } = &m.kind
            else {
                panic!("{spec}: {m:?}")
            };
            assert_eq!(name.len(), 64);
            assert!(name.chars().all(|c| c.is_ascii_hexdigit()));
            assert_eq!(source, &vroot.join(name).join("_data"));
            assert_eq!(*readonly, spec.ends_with(":ro"));
        }
        let bad = [
            "./rel:/x",
            "data:rel",
            "data:/x:bogus",
            "a:/b:ro:extra",
            "",
            "/",
            "data:/",
            "x:/a/../b",
            "v:/x:z",
        ];
        for spec in bad {
            assert!(
                parse_volume(spec, vroot).is_err(),
                "{spec} should be refused"
            );
        }
        let err = parse_volume("./rel:/x", vroot)
            .expect_err("relative")
            .to_string();
        assert!(err.contains("use an absolute path"), "{err}");

        let m = parse_tmpfs("/run:exec,size=64m,mode=1777,size=32m").expect("tmpfs");
        assert_eq!(m.destination, "/run");
        assert_eq!(
            m.kind,
            MountKind::Tmpfs {
                options: s(&["nosuid", "nodev", "exec", "mode=1777", "size=32m"])
            }
        );
        assert_eq!(
            parse_tmpfs("/tmp").expect("tmpfs").kind,
            MountKind::Tmpfs {
                options: s(&["noexec", "nosuid", "nodev"])
            }
        );
        for bad in ["tmp", "/", ":size=1"] {
            assert!(parse_tmpfs(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn image_volumes_become_anonymous_unless_covered() {
        let img = image(
            serde_json::json!({"Cmd": ["sh"], "Volumes": {"/data": {}, "/cache": {}, "/logs/": {}}}),
        );
        let opts = RunOptions {
            volumes: s(&["named:/data"]),
            tmpfs: s(&["/logs"]),
            ..Default::default()
        };
        let spec = build_with(&img, &opts).expect("spec");
        let dests: Vec<&str> = spec.mounts.iter().map(|m| m.destination.as_str()).collect();
        assert_eq!(dests, vec!["/data", "/logs", "/cache"]);
        assert!(matches!(&spec.mounts[2].kind, MountKind::Volume { name, .. } if name.len() == 64));

        let dup = RunOptions {
            volumes: s(&["a1:/x", "/srv:/x/"]),
            ..Default::default()
        };
        assert!(matches!(
            build_with(&img, &dup),
            Err(SpecError::DuplicateMount(_))
        ));
    }

    #[test]
    fn resources_and_sizes() {
        let img = image(serde_json::json!({"Cmd": ["sh"]}));
        let opts = RunOptions {
            memory: Some(512 * 1024 * 1024),
            cpus: Some(1.5),
            pids_limit: Some(100),
            ..Default::default()
        };
        let r = build_with(&img, &opts).expect("spec").resources;
        assert_eq!(
            r,
            Resources {
                memory_bytes: Some(512 << 20),
                cpu_quota_us: Some(150_000),
                cpu_period_us: 100_000,
                pids_limit: Some(100)
            }
        );
        let unlimited = RunOptions {
            pids_limit: Some(-1),
            memory: Some(0),
            ..Default::default()
        };
        assert_eq!(
            build_with(&img, &unlimited).expect("spec").resources,
            Resources::default()
        );

        let bad: Vec<(RunOptions, &str)> = vec![
            (
                RunOptions {
                    memory: Some(4 << 20),
                    ..Default::default()
                },
                "minimum memory limit allowed is 6MB",
            ),
            (
                RunOptions {
                    cpus: Some(0.0),
                    ..Default::default()
                },
                "invalid --cpus",
            ),
            (
                RunOptions {
                    cpus: Some(-1.0),
                    ..Default::default()
                },
                "invalid --cpus",
            ),
            (
                RunOptions {
                    cpus: Some(f64::NAN),
                    ..Default::default()
                },
                "invalid --cpus",
            ),
            (
                RunOptions {
                    cpus: Some(0.001),
                    ..Default::default()
                },
                "less than 1ms",
            ),
            (
                RunOptions {
                    pids_limit: Some(-5),
                    ..Default::default()
                },
                "invalid pids limit",
            ),
        ];
        for (opts, text) in bad {
            let err = build_with(&img, &opts).expect_err(text).to_string();
            assert!(err.contains(text), "{err}");
        }
        assert!(build_with(
            &img,
            &RunOptions {
                memory: Some(MIN_MEMORY_BYTES),
                ..Default::default()
            }
        )
        .is_ok());

        let sizes: &[(&str, Option<i64>)] = &[
            ("1024", Some(1024)),
            ("512m", Some(512 << 20)),
            ("1g", Some(1 << 30)),
            ("1G", Some(1 << 30)),
            ("10k", Some(10240)),
            ("10KB", Some(10240)),
            ("2MiB", Some(2 << 20)),
            ("1.5g", Some(3 << 29)),
            ("100b", Some(100)),
            ("1 m", Some(1 << 20)),
            ("", None),
            ("m", None),
            ("1x", None),
            ("-1m", None),
            ("1.m", None),
            ("1mbb", None),
        ];
        for (text, want) in sizes {
            assert_eq!(parse_bytes(text).ok(), *want, "{text:?}");
        }
    }

    #[test]
    fn stop_signal_sources_and_names() {
        let cases: &[(Option<&str>, Option<&str>, Result<i32, ()>)] = &[
            (None, None, Ok(15)),
            (Some("SIGQUIT"), None, Ok(3)),
            (Some("SIGQUIT"), Some("int"), Ok(2)),
            (None, Some("9"), Ok(9)),
            (None, Some("SIGRTMIN+3"), Ok(37)),
            (None, Some("RTMAX-1"), Ok(63)),
            (Some("SIGNOPE"), None, Err(())),
            (None, Some("0"), Err(())),
            (None, Some("65"), Err(())),
            (None, Some("RTMIN+40"), Err(())),
        ];
        for (img_sig, opt_sig, want) in cases {
            let img = image(serde_json::json!({"Cmd": ["sh"], "StopSignal": img_sig}));
            let opts = RunOptions {
                stop_signal: opt_sig.map(String::from),
                stop_timeout: Some(3),
                ..Default::default()
            };
            match (want, build_with(&img, &opts)) {
                (Ok(n), Ok(spec)) => assert_eq!((spec.stop_signal, spec.stop_timeout), (*n, 3)),
                (Err(()), Err(SpecError::InvalidSignal(_))) => {}
                (w, g) => panic!("{img_sig:?} {opt_sig:?}: want {w:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn network_modes() {
        assert_eq!(
            "none".parse::<NetworkMode>().expect("none"),
            NetworkMode::None
        );
        assert_eq!(
            "host".parse::<NetworkMode>().expect("host"),
            NetworkMode::Host
        );
        for (text, name) in [("bridge", "bridge"), ("default", "bridge"), ("my-net.1", "my-net.1")] {
            assert_eq!(
                text.parse::<NetworkMode>().expect(text),
                NetworkMode::Network(name.into())
            );
        }
        for other in ["container:abc", "", "-x", "a/b"] {
            let err = other.parse::<NetworkMode>().expect_err(other).to_string();
            assert!(err.contains("invalid network") && err.contains("ctl network ls"), "{err}");
        }
        assert_eq!(NetworkMode::Network("mynet".into()).to_string(), "mynet");
        assert_eq!(NetworkMode::Host.to_string(), "host");
        let joined = "ns:/run/flotilla/netns/u1".parse::<NetworkMode>().expect("ns:");
        assert_eq!(joined, NetworkMode::Join(PathBuf::from("/run/flotilla/netns/u1")));
        assert_eq!(joined.to_string(), "ns:/run/flotilla/netns/u1");
    }

    #[test]
    fn validate_catches_hand_made_specs() {
        let img = image(serde_json::json!({"Cmd": ["sh"]}));
        let good = build_with(&img, &RunOptions::default()).expect("spec");
        assert!(good.validate().is_ok());
        let json = serde_json::to_string(&good).expect("serialize");
        assert_eq!(
            serde_json::from_str::<ContainerSpec>(&json).expect("deserialize"),
            good
        );

        let bind = |dest: &str, src: &str| Mount {
            destination: dest.into(),
            kind: MountKind::Bind {
                source: src.into(),
                readonly: false,
            },
        };
        let mutations: Vec<(&str, Box<dyn Fn(&mut ContainerSpec)>)> = vec![
            ("relative cwd", Box::new(|s| s.cwd = "app".into())),
            ("empty args", Box::new(|s| s.args.clear())),
            ("env without =", Box::new(|s| s.env.push("NOPE".into()))),
            (
                "relative destination",
                Box::new(move |s| s.mounts.push(bind("x", "/y"))),
            ),
            (
                "relative source",
                Box::new(move |s| s.mounts.push(bind("/x", "y"))),
            ),
            (
                "duplicate destination",
                Box::new(move |s| s.mounts.extend([bind("/x", "/a"), bind("/x/", "/b")])),
            ),
            (
                "root destination",
                Box::new(move |s| s.mounts.push(bind("/", "/a"))),
            ),
            (
                "low memory",
                Box::new(|s| s.resources.memory_bytes = Some(1024)),
            ),
            ("bad period", Box::new(|s| s.resources.cpu_period_us = 10)),
            (
                "unknown capability",
                Box::new(|s| s.capabilities.push("CAP_FLY".into())),
            ),
            ("bad signal", Box::new(|s| s.stop_signal = 0)),
        ];
        for (what, mutate) in mutations {
            let mut spec = good.clone();
            mutate(&mut spec);
            assert!(spec.validate().is_err(), "{what} should be refused");
        }
    }
}
