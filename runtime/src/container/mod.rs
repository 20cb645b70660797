//! Containers: the lifecycle (create, start, stop, kill, remove, wait, restart), their recorded
//! state, logs, exec and named volumes, behind one [`Runtime`] handle on a root directory.
//!
//! A container is run by its own small monitor process (`flotilla-monitor ROOT ID`), started
//! detached so that neither `ctl` nor the node agent has to stay up while it runs: the monitor
//! creates the cgroup, clones the container's init process into new namespaces
//! ([`setup`] executes the spec there), relays its output into `container.log` and records its
//! exit. Every verb here reads `containers/<id>/state.json`; a state left `running` by a monitor
//! that died is repaired on read (see [`Runtime::inspect`]).
//!
//! Each state records the boot it belongs to (`/proc/sys/kernel/random/boot_id`): after a
//! reboot the processes, mounts and cgroups of a container are gone, so [`Runtime::open`] marks
//! the containers of an earlier boot that were running as exited (255, as docker shows them),
//! clears their leftovers and removes the `--rm` ones.
//!
//! Modules: [`state`] (the status enum and its guards, JSON files), `setup` (process setup,
//! Linux), `console` (terminals from the container's devpts, Linux), [`monitor`] (the
//! monitor's and exec helper's code), [`logs`] (json-file log lines), [`volume`] (named volumes).

#[cfg(target_os = "linux")]
pub mod console;
#[cfg(target_os = "linux")]
pub mod exec;
pub mod logs;
pub mod monitor;
#[cfg(target_os = "linux")]
pub mod setup;
pub mod state;
pub mod volume;

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use logs::{Attached, LogOptions};
pub use state::{ContainerState, ExitRecord, Status};
pub use volume::Volume;

use crate::spec::{MountKind, NetworkMode, RunOptions};

/// Asks ext4 to spread the directories made in `dir` over its block groups, as it does those at
/// the top of the file system (the "top directory" flag, `chattr +T`); best effort, other file
/// systems have no such flag.
///
/// Why: every container start makes a dozen inodes under `containers/` and its removal frees
/// them. Inodes of subdirectories of one directory are allocated in that directory's group, and
/// ext4 without a journal skips, on every allocation, each inode of the group freed in the last
/// minute or more (`recently_deleted`, one buffer lookup each): after a burst of container
/// removals a burst of starts spent a quarter of the machine's CPU there. Spread over many
/// groups, each group holds few recently freed inodes.
fn spread_subdirectories(dir: &Path) {
    #[cfg(target_os = "linux")]
    {
        const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;
        let Ok(file) = fs::File::open(dir) else { return };
        let mut flags: libc::c_int = 0;
        // SAFETY: FS_IOC_GETFLAGS/SETFLAGS read and write one int through a pointer to a local.
        unsafe {
            if libc::ioctl(file.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) != 0 || flags & FS_TOPDIR_FL != 0 {
                return;
            }
            flags |= FS_TOPDIR_FL;
            if libc::ioctl(file.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) != 0 {
                tracing::debug!(dir = %dir.display(), error = %io::Error::last_os_error(), "cannot set the top-directory flag");
            }
        }
    }
}

/// Errors of the container verbs. Messages that users of docker know are worded as docker's.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("No such container: {0}")]
    NotFound(String),
    #[error("Multiple IDs found with provided prefix: {0}")]
    Ambiguous(String),
    /// The container's status forbids the verb (docker's conflict messages).
    #[error("{0}")]
    Conflict(String),
    #[error("Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameInUse { name: String, id: String },
    #[error("Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    /// The command could not be started; `code` is docker's exit code for it (125, 126, 127).
    #[error("failed to start container {id}: unable to start container process: {message}")]
    StartFailed { id: String, code: i32, message: String },
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error("{path} is damaged ({source}); remove the container with `ctl rm -f`")]
    Corrupt { path: PathBuf, source: serde_json::Error },
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Layer(#[from] crate::layer::LayerError),
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
    #[error(transparent)]
    Network(#[from] crate::network::docker::NetworkError),
    #[error("cannot find flotilla-monitor next to {exe}, on PATH or in $FLOTILLA_MONITOR: install it beside ctl")]
    MonitorNotFound { exe: PathBuf },
    #[error("the monitor of container {id} failed: {detail}")]
    Monitor { id: String, detail: String },
    #[error("{what}: {source}")]
    Sys { what: String, source: nix::errno::Errno },
    #[error("get {name}: no such volume")]
    NoSuchVolume { name: String },
    #[error("remove {name}: volume is in use - [{ids}]")]
    VolumeInUse { name: String, ids: String },
    #[error("invalid volume name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidVolumeName(String),
}

impl ContainerError {
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> ContainerError {
        ContainerError::Io { action, path: path.to_path_buf(), source }
    }

    /// The exit code docker's CLI uses for this error: the container's 126/127 for a command
    /// that cannot run, 125 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            ContainerError::StartFailed { code, .. } => *code,
            _ => 125,
        }
    }
}

/// How `start` connects the container's standard input.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// Give the container this process's standard input (`run -i` in the foreground).
    pub attach_stdin: bool,
    /// The size (rows, columns) of the terminal of a container created with `tty`.
    pub tty_size: Option<(u16, u16)>,
}

/// A process to run in a running container (`exec`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ExecOptions {
    pub args: Vec<String>,
    /// `K=V`, added to (and overriding) the container's environment.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    /// `-t`: the command gets a terminal from the container's devpts, sized as the caller's;
    /// everything it prints then comes out on stdout, as a terminal writes it.
    pub tty: bool,
    /// Forward this process's standard input; otherwise the command reads /dev/null.
    pub interactive: bool,
}

/// Where an exec'd command's standard streams come from and go to; `None` keeps this process's
/// own (stdin is /dev/null unless [`ExecOptions::interactive`]). With `tty` they are the
/// caller's terminal, whose window size the command's terminal takes.
#[derive(Debug, Default)]
pub struct ExecStdio {
    pub stdin: Option<Stdio>,
    pub stdout: Option<Stdio>,
    pub stderr: Option<Stdio>,
    /// With `tty` and streams that are not a terminal: where window sizes come from, one
    /// `ROWSxCOLS` line each (the read end of a pipe the caller writes).
    pub resize: Option<std::os::fd::OwnedFd>,
}

/// A container that `start` started: its monitor reports the exit code here, even when the
/// container removes itself (`--rm`).
pub struct Started {
    pub id: String,
    events: Option<BufReader<fs::File>>,
    /// Readable whenever the monitor appended output to the log (see `monitor::OUTPUT_FD_ENV`).
    output: Option<fs::File>,
}

impl Started {
    /// Blocks until the container exits and returns its exit code; `None` when it was already
    /// running before `start` or its monitor died without telling (use [`Runtime::wait`]).
    pub fn wait(mut self) -> Option<i32> {
        let events = self.events.as_mut()?;
        loop {
            match read_event(events)? {
                MonitorEvent::Exited { exit_code } => return Some(exit_code),
                _ => continue,
            }
        }
    }
}

/// The container verbs on one root directory (`/var/lib/flotilla`, `ctl --root`).
#[derive(Clone, Debug)]
pub struct Runtime {
    root: PathBuf,
}

/// The image a container is created from, as [`Runtime::create_from_layers`] needs it.
pub struct ImageInfo {
    /// `sha256:...`
    pub id: String,
    /// As the user named it.
    pub name: String,
    pub config: oci_spec::image::ImageConfiguration,
}

impl Runtime {
    /// Opens (creating when missing) the containers and volumes dirs of `root`.
    /// Containers left from an earlier boot are cleaned up first (see the module doc).
    pub fn open(root: &Path) -> Result<Runtime, ContainerError> {
        for dir in [root.join("containers").join(".names"), root.join("volumes")] {
            fs::create_dir_all(&dir).map_err(|e| ContainerError::io("creating", &dir, e))?;
        }
        spread_subdirectories(&root.join("containers"));
        let runtime = Runtime { root: root.to_path_buf() };
        runtime.recover_after_reboot()?;
        empty_trash(root);
        Ok(runtime)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of a container (by full id).
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    /// Creates a container from an image name or id: resolves the image, extracts its layers,
    /// mounts the overlay root, builds and checks the spec, and records the container.
    pub fn create(&self, image: &str, opts: &RunOptions) -> Result<String, ContainerError> {
        let store = crate::image::ImageStore::open(&self.root)?;
        let resolved = store.resolve(image)?;
        let layers = crate::layer::LayerStore::open(&self.root)?;
        let mut lowers = Vec::with_capacity(resolved.layers.len());
        for layer in &resolved.layers {
            lowers.push(layers.ensure(layer, &store.blob_path(&layer.digest))?);
        }
        // The manifest lists layers bottom first; overlayfs wants the top first.
        lowers.reverse();
        let info = ImageInfo { id: resolved.id.clone(), name: image.to_string(), config: resolved.config.clone() };
        self.create_from_layers(&info, lowers, opts)
    }

    /// Creates a container whose root is the overlay of `lowers` (top first).
    pub fn create_from_layers(
        &self,
        image: &ImageInfo,
        lowers: Vec<PathBuf>,
        opts: &RunOptions,
    ) -> Result<String, ContainerError> {
        // An unknown network is refused before anything is made, as docker does.
        crate::network::docker::check_mode(&self.root, &opts.network)?;
        let id = new_id();
        let name = match &opts.name {
            Some(name) => {
                let name = name.trim_start_matches('/').to_string();
                if !valid_name(&name) {
                    return Err(ContainerError::InvalidName(name));
                }
                self.claim_name(&name, &id)?;
                name
            }
            None => self.claim_random_name(&id)?,
        };
        let dir = self.container_dir(&id);
        let created = self.create_files(&id, &name, &dir, image, lowers, opts);
        if created.is_err() {
            let _ = remove_files(&self.root, &id, Some(&name));
        }
        created.map(|()| id)
    }

    fn create_files(
        &self,
        id: &str,
        name: &str,
        dir: &Path,
        image: &ImageInfo,
        mut lowers: Vec<PathBuf>,
        opts: &RunOptions,
    ) -> Result<(), ContainerError> {
        for sub in ["upper", "work", "rootfs"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).map_err(|e| ContainerError::io("creating", &path, e))?;
        }
        if lowers.is_empty() {
            // overlayfs needs a lower dir even for an image without layers.
            let empty = dir.join("empty");
            fs::create_dir_all(&empty).map_err(|e| ContainerError::io("creating", &empty, e))?;
            lowers.push(empty);
        }
        // The mount points setup needs and the image lacks, from a layer shared by the
        // containers of such images instead of each one's writable layer.
        if let Some(init) = crate::layer::mountpoints::ensure_init_layer(&self.root, &lowers)? {
            lowers.insert(0, init);
        }
        // The log exists from the start, so it can be opened before the container runs.
        let log = dir.join("container.log");
        fs::write(&log, b"").map_err(|e| ContainerError::io("creating", &log, e))?;
        let rootfs = dir.join("rootfs");
        // The writable layer of a `--rm` container dies with it: no need to sync it, ever.
        let overlay = crate::layer::rootfs::OverlayOptions { volatile: opts.auto_remove };
        crate::layer::rootfs::mount_overlay_with(&lowers, &dir.join("upper"), &dir.join("work"), &rootfs, &overlay)?;
        let caller_env: std::collections::HashMap<String, String> = std::env::vars().collect();
        let mut spec =
            crate::spec::build_spec(&image.config, opts, &rootfs, &self.root.join("volumes"), id, &caller_env)?;
        if opts.hostname.is_none() && spec.network == NetworkMode::Host {
            // On the host's network docker keeps the host's name.
            if let Some(host) = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()) {
                spec.hostname = host;
            }
        }
        for mount in &spec.mounts {
            if let MountKind::Volume { source, .. } = &mount.kind {
                let source = Path::new(source);
                fs::create_dir_all(source).map_err(|e| ContainerError::io("creating", source, e))?;
            }
        }
        let durability = state::Durability::for_container(opts.auto_remove || opts.unsynced_records);
        // A copy of what state.json holds, for people and tools that look; not for `--rm`
        // containers, which vanish, nor for those whose records are unsynced (the node
        // agent's, which it recreates from the API): every file created costs (ext4's inode
        // allocator skips the many recently deleted inodes that short containers leave).
        if !opts.auto_remove && !opts.unsynced_records {
            state::write_json_atomic(&dir.join("spec.json"), &spec, durability)?;
        }
        let state = ContainerState {
            id: id.to_string(),
            name: name.to_string(),
            image: image.id.clone(),
            image_name: image.name.clone(),
            created: Timestamp::now(),
            status: Status::Created,
            pid: 0,
            pid_start_time: 0,
            monitor_pid: 0,
            exit_code: 0,
            oom_killed: false,
            started_at: None,
            finished_at: None,
            error: String::new(),
            lowers,
            interactive: opts.interactive,
            auto_remove: opts.auto_remove,
            restart_count: 0,
            boot_id: current_boot_id().unwrap_or_default(),
            spec,
        };
        state::save_with(dir, &state, durability)
    }

    /// Starts a created or exited container and returns once its command runs, or with the
    /// reason it could not (`StartFailed`, carrying 125, 126 or 127).
    pub fn start(&self, name_or_id: &str, opts: &StartOptions) -> Result<Started, ContainerError> {
        let id = self.resolve_id(name_or_id)?;
        let dir = self.container_dir(&id);
        let mut st = self.inspect(&id)?;
        if !st.can_start()? {
            return Ok(Started { id, events: None, output: None });
        }
        let rootfs = dir.join("rootfs");
        if !overlay_mounted(&rootfs) {
            let overlay = crate::layer::rootfs::OverlayOptions { volatile: st.auto_remove };
            if st.auto_remove {
                // Left by the volatile mount of this boot (recovery removes `--rm` containers of
                // earlier ones), so the upper layer is intact and may be mounted again.
                let _ = fs::remove_dir_all(dir.join("work").join("work").join("incompat"));
            }
            crate::layer::rootfs::mount_overlay_with(&st.lowers, &dir.join("upper"), &dir.join("work"), &rootfs, &overlay)?;
        }
        let boot = current_boot_id().unwrap_or_default();
        // A container fresh from `create` (what `run` starts) holds these values already, and
        // replacing state.json is not free (ext4 allocates and writes the blocks at once).
        let unchanged = st.status == Status::Created
            && st.exit_code == 0
            && !st.oom_killed
            && st.error.is_empty()
            && st.boot_id == boot;
        if st.status == Status::Exited {
            let _ = fs::remove_file(dir.join("exit.json"));
            st.restart_count += u32::from(st.started_at.is_some());
        }
        st.exit_code = 0;
        st.oom_killed = false;
        st.error.clear();
        st.boot_id = boot;
        if !unchanged {
            // The monitor records `running` moments later; after a power loss recovery rewrites it.
            state::save_with(&dir, &st, state::Durability::Unsynced)?;
        }

        if let NetworkMode::Network(network) = &st.spec.network {
            let attach = crate::network::docker::Attach {
                id: &id,
                name: &st.name,
                hostname: &st.spec.hostname,
                network,
                ports: &st.spec.ports,
            };
            crate::network::docker::connect(&self.root, &attach)?;
            let launched = self.launch_monitor(id.clone(), opts);
            // The monitor disconnects the container when it ends; without one nobody would.
            if launched.is_err() && !self.inspect(&id).is_ok_and(|s| s.status == Status::Running) {
                if let Err(error) = crate::network::docker::disconnect(&self.root, &id) {
                    tracing::warn!(%id, %error, "cannot disconnect a container that did not start");
                }
            }
            return launched;
        }
        self.launch_monitor(id, opts)
    }

    /// Starts the container's monitor and waits until it reports the command started.
    fn launch_monitor(&self, id: String, opts: &StartOptions) -> Result<Started, ContainerError> {
        let monitor = monitor_binary()?;
        let (events_r, events_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|source| ContainerError::Sys { what: "creating a pipe".into(), source })?;
        let (output_r, output_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|source| ContainerError::Sys { what: "creating a pipe".into(), source })?;
        let fd = events_w.as_raw_fd();
        let output_fd = output_w.as_raw_fd();
        let mut command = Command::new(&monitor);
        command
            .arg(&self.root)
            .arg(&id)
            .env(monitor::EVENTS_FD_ENV, fd.to_string())
            .env(monitor::OUTPUT_FD_ENV, output_fd.to_string())
            .stdin(if opts.attach_stdin { Stdio::inherit() } else { Stdio::null() })
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if opts.attach_stdin {
            command.env(monitor::ATTACH_STDIN_ENV, "1");
        }
        if let Some((rows, cols)) = opts.tty_size {
            command.env(monitor::TTY_SIZE_ENV, format!("{rows}x{cols}"));
        }
        // SAFETY: only fcntl, which is async-signal-safe, runs between fork and exec.
        unsafe {
            command.pre_exec(move || {
                for fd in [fd, output_fd] {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| ContainerError::io("starting", &monitor, e))?;
        drop((events_w, output_w));
        // The monitor forks itself into the background at once; reaping this first process
        // leaves no zombie in long-lived callers.
        let status = child.wait().map_err(|e| ContainerError::io("waiting for", &monitor, e))?;
        if !status.success() {
            return Err(ContainerError::Monitor { id, detail: format!("it exited with {status}") });
        }
        let mut events = BufReader::new(fs::File::from(events_r));
        match read_event(&mut events) {
            Some(MonitorEvent::Started) => Ok(Started { id, events: Some(events), output: Some(fs::File::from(output_r)) }),
            Some(MonitorEvent::Failed { code, message }) => Err(ContainerError::StartFailed { id, code, message }),
            Some(MonitorEvent::Exited { exit_code }) => Err(ContainerError::Monitor {
                id,
                detail: format!("the container exited ({exit_code}) before it was reported started"),
            }),
            None => {
                let detail = self.inspect(&id).map(|s| s.error).unwrap_or_default();
                Err(ContainerError::Monitor { id, detail: format!("it exited without starting the container: {detail}") })
            }
        }
    }

    /// `create` then `start`.
    pub fn run(&self, image: &str, opts: &RunOptions, start: &StartOptions) -> Result<Started, ContainerError> {
        let id = self.create(image, opts)?;
        self.start(&id, start)
    }

    /// Sends the stop signal, then SIGKILL once `timeout` (default: the container's stop
    /// timeout) has passed; returns when the container has exited. Stopping a container that is
    /// not running does nothing, as in docker.
    pub fn stop(&self, name_or_id: &str, timeout: Option<u64>) -> Result<(), ContainerError> {
        let id = self.resolve_id(name_or_id)?;
        let st = self.inspect(&id)?;
        if st.status != Status::Running {
            return Ok(());
        }
        let grace = Duration::from_secs(timeout.unwrap_or(st.spec.stop_timeout));
        signal_pid(&st, st.spec.stop_signal)?;
        if self.wait_until_stopped(&id, grace)? {
            return Ok(());
        }
        let st = self.inspect(&id)?;
        if st.status == Status::Running {
            signal_pid(&st, libc::SIGKILL)?;
        }
        self.wait_until_stopped(&id, Duration::from_secs(30))?;
        Ok(())
    }

    /// Sends a signal (`KILL`, `SIGTERM`, `9`) to the container's init process.
    pub fn kill(&self, name_or_id: &str, signal: &str) -> Result<(), ContainerError> {
        let signal = crate::spec::parse_signal(signal)?;
        let id = self.resolve_id(name_or_id)?;
        let st = self.inspect(&id)?;
        st.can_kill()?;
        signal_pid(&st, signal)
    }

    /// Removes a container: its overlay mount, cgroup, name and directory. `force` kills a
    /// running one first.
    pub fn remove(&self, name_or_id: &str, force: bool) -> Result<(), ContainerError> {
        let id = self.resolve_id(name_or_id)?;
        let dir = self.container_dir(&id);
        let mut st = match self.inspect(&id) {
            Ok(st) => st,
            // A damaged record (see `list`): with force, remove what the id alone leads to;
            // the cgroup's removal kills any process still in it.
            Err(ContainerError::Corrupt { .. }) if force => {
                let names = self.root.join("containers").join(".names");
                let name = fs::read_dir(&names).ok().and_then(|entries| {
                    entries.flatten().find_map(|e| {
                        let owner = fs::read_to_string(e.path()).ok()?;
                        (owner.trim() == id).then(|| e.file_name().to_string_lossy().into_owned())
                    })
                });
                return remove_files(&self.root, &id, name.as_deref());
            }
            Err(e) => return Err(e),
        };
        st.can_delete(force)?;
        if st.status == Status::Running {
            signal_pid(&st, libc::SIGKILL)?;
            self.wait_until_stopped(&id, Duration::from_secs(30))?;
            st = match self.inspect(&id) {
                Ok(st) => st,
                // It was started with --rm and its monitor removed it.
                Err(ContainerError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
        }
        st.status = Status::Removing;
        state::save(&dir, &st)?;
        remove_files(&self.root, &id, Some(&st.name))
    }

    /// Every container (`all`) or the running ones, newest first.
    pub fn list(&self, all: bool) -> Result<Vec<ContainerState>, ContainerError> {
        let containers = self.root.join("containers");
        let entries = fs::read_dir(&containers).map_err(|e| ContainerError::io("reading", &containers, e))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if !is_id(&id) {
                continue;
            }
            match self.inspect(&id) {
                Ok(st) if all || st.status == Status::Running => out.push(st),
                Ok(_) => {}
                // Removed meanwhile, or half created: not listed.
                Err(ContainerError::NotFound(_)) | Err(ContainerError::Io { .. }) => {}
                // A damaged record (a power loss can leave an unsynced one empty) must not hide
                // every other container: reported, and skipped.
                Err(error @ ContainerError::Corrupt { .. }) => {
                    tracing::warn!(%id, %error, "skipping a container whose state cannot be read");
                }
                Err(e) => return Err(e),
            }
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.created));
        Ok(out)
    }

    /// A container's state, repaired when its monitor died: a `running` container whose process
    /// is gone becomes `exited`, with the monitor's recorded exit or an unknown code (255).
    pub fn inspect(&self, name_or_id: &str) -> Result<ContainerState, ContainerError> {
        let id = self.resolve_id(name_or_id)?;
        let dir = self.container_dir(&id);
        let mut st = match state::load(&dir) {
            Err(ContainerError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(ContainerError::NotFound(name_or_id.to_string()))
            }
            other => other?,
        };
        // Left by a sweep in `open` that failed: a pid of an earlier boot may name a process
        // of this one.
        if from_earlier_boot(&st) {
            return self.recover_stale(&id, st)?.ok_or_else(|| ContainerError::NotFound(name_or_id.to_string()));
        }
        if st.status != Status::Running || process_alive(st.pid, st.pid_start_time) {
            return Ok(st);
        }
        // The init process is gone: its monitor is recording the exit right now, or it died.
        let deadline = Instant::now() + Duration::from_secs(5);
        while monitor_alive(st.monitor_pid, &id) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            match state::load(&dir) {
                Ok(fresh) if fresh.status != Status::Running => return Ok(fresh),
                Ok(_) => {}
                Err(_) => return Err(ContainerError::NotFound(name_or_id.to_string())),
            }
        }
        st = state::load(&dir)?;
        if st.status != Status::Running {
            return Ok(st);
        }
        match state::read_json::<ExitRecord>(&dir.join("exit.json")) {
            Ok(exit) => {
                st.exit_code = exit.exit_code;
                st.oom_killed = exit.oom_killed;
                st.finished_at = Some(exit.finished_at);
            }
            Err(_) => {
                st.exit_code = 255;
                st.finished_at = Some(Timestamp::now());
                st.error = "the container's monitor died; its exit code is unknown".into();
            }
        }
        st.status = Status::Exited;
        st.pid = 0;
        tracing::warn!(id = %id, "repairing the state of a container whose monitor died");
        remove_cgroup(&id);
        if let Err(error) = crate::network::docker::disconnect(&self.root, &id) {
            tracing::warn!(%id, %error, "cannot disconnect a container whose monitor died");
        }
        state::save(&dir, &st)?;
        Ok(st)
    }

    /// Blocks until the container is not running and returns its exit code.
    pub fn wait(&self, name_or_id: &str) -> Result<i32, ContainerError> {
        let id = self.resolve_id(name_or_id)?;
        loop {
            let st = self.inspect(&id)?;
            if st.status != Status::Running {
                return Ok(st.exit_code);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops (if running) and starts a container again.
    pub fn restart(&self, name_or_id: &str, timeout: Option<u64>) -> Result<Started, ContainerError> {
        self.stop(name_or_id, timeout)?;
        self.start(name_or_id, &StartOptions::default())
    }

    /// Writes the container's logs, docker-style: stdout lines to `stdout`, stderr lines to
    /// `stderr`; `follow` keeps going until the container stops.
    pub fn logs(
        &self,
        name_or_id: &str,
        opts: &LogOptions,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> Result<(), ContainerError> {
        let id = self.resolve_id(name_or_id)?;
        logs::copy(self, &id, opts, stdout, stderr)
    }

    /// Runs a command in a running container with this process's standard streams, and
    /// returns its exit code (126/127 when it cannot be executed, as docker).
    pub fn exec(&self, name_or_id: &str, opts: &ExecOptions) -> Result<i32, ContainerError> {
        self.exec_with_stdio(name_or_id, opts, ExecStdio::default())
    }

    /// [`Runtime::exec`] with the command's standard streams given by the caller.
    pub fn exec_with_stdio(&self, name_or_id: &str, opts: &ExecOptions, stdio: ExecStdio) -> Result<i32, ContainerError> {
        let id = self.resolve_id(name_or_id)?;
        let st = self.inspect(&id)?;
        if st.status != Status::Running {
            return Err(ContainerError::Conflict(format!("container {id} is not running")));
        }
        let monitor = monitor_binary()?;
        let request = serde_json::to_string(opts).map_err(|source| ContainerError::Corrupt { path: PathBuf::from("exec request"), source })?;
        let mut command = Command::new(&monitor);
        command.arg("--exec").arg(&self.root).arg(&id).env(monitor::EXEC_REQUEST_ENV, request);
        match (opts.interactive, stdio.stdin) {
            (true, Some(stdin)) => command.stdin(stdin),
            (true, None) => command.stdin(Stdio::inherit()),
            (false, _) => command.stdin(Stdio::null()),
        };
        if let Some(stdout) = stdio.stdout {
            command.stdout(stdout);
        }
        if let Some(stderr) = stdio.stderr {
            command.stderr(stderr);
        }
        if let Some(resize) = &stdio.resize {
            const RESIZE_FD: i32 = 3;
            let fd = resize.as_raw_fd();
            command.env(monitor::EXEC_RESIZE_FD_ENV, RESIZE_FD.to_string());
            // SAFETY: only dup2 and fcntl, which are async-signal-safe, run between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    let moved = if fd == RESIZE_FD { libc::fcntl(fd, libc::F_SETFD, 0) } else { libc::dup2(fd, RESIZE_FD) };
                    if moved < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let status = command.status().map_err(|e| ContainerError::io("starting", &monitor, e))?;
        drop(stdio.resize);
        use std::os::unix::process::ExitStatusExt;
        Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }

    /// The full id of a container named by full id, unique id prefix or name.
    pub fn resolve_id(&self, name_or_id: &str) -> Result<String, ContainerError> {
        let key = name_or_id.trim_start_matches('/');
        if key.is_empty() {
            return Err(ContainerError::NotFound(name_or_id.to_string()));
        }
        if is_id(key) && self.container_dir(key).is_dir() {
            return Ok(key.to_string());
        }
        let name_file = self.root.join("containers").join(".names").join(key);
        if valid_name(key) {
            if let Ok(id) = fs::read_to_string(&name_file) {
                if self.container_dir(id.trim()).is_dir() {
                    return Ok(id.trim().to_string());
                }
            }
        }
        let containers = self.root.join("containers");
        let mut found = Vec::new();
        if key.chars().all(|c| c.is_ascii_hexdigit()) {
            let entries = fs::read_dir(&containers).map_err(|e| ContainerError::io("reading", &containers, e))?;
            for entry in entries.flatten() {
                let id = entry.file_name().to_string_lossy().into_owned();
                if is_id(&id) && id.starts_with(&key.to_ascii_lowercase()) {
                    found.push(id);
                }
            }
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(ContainerError::NotFound(name_or_id.to_string())),
            _ => Err(ContainerError::Ambiguous(name_or_id.to_string())),
        }
    }

    /// Cleans up the containers of an earlier boot, once per boot: `containers/.boot_id` holds
    /// the boot last cleaned up for, and a lock on it makes concurrent openers wait for the
    /// one doing it. A container that cannot be cleaned up leaves the marker behind, so the
    /// next open tries again.
    fn recover_after_reboot(&self) -> Result<(), ContainerError> {
        use std::os::unix::fs::FileExt;
        let Some(boot) = current_boot_id() else { return Ok(()) };
        let containers = self.root.join("containers");
        let marker_path = containers.join(".boot_id");
        if fs::read_to_string(&marker_path).is_ok_and(|seen| seen.trim() == boot) {
            return Ok(());
        }
        let marker = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&marker_path)
            .map_err(|e| ContainerError::io("opening", &marker_path, e))?;
        let locked = nix::fcntl::Flock::lock(marker, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, source)| ContainerError::Sys { what: format!("locking {}", marker_path.display()), source })?;
        if fs::read_to_string(&marker_path).is_ok_and(|seen| seen.trim() == boot) {
            return Ok(());
        }
        let mut failed = false;
        let entries = fs::read_dir(&containers).map_err(|e| ContainerError::io("reading", &containers, e))?;
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if !is_id(&id) {
                continue;
            }
            // Half-created or damaged containers are reported by the verbs that read them.
            let Ok(st) = state::load(&self.container_dir(&id)) else { continue };
            if from_earlier_boot(&st) {
                if let Err(error) = self.recover_stale(&id, st) {
                    tracing::warn!(%id, %error, "cannot clean up a container of an earlier boot");
                    failed = true;
                }
            }
        }
        if !failed {
            let write = |file: &fs::File| -> io::Result<()> {
                file.set_len(0)?;
                file.write_all_at(format!("{boot}\n").as_bytes(), 0)
            };
            write(&locked).map_err(|e| ContainerError::io("writing", &marker_path, e))?;
        }
        Ok(())
    }

    /// A container of an earlier boot: its processes, mounts and cgroup died with that boot.
    /// One that was running becomes exited (docker's 255 unless its monitor recorded the exit),
    /// leftovers are cleared, and `--rm` containers and interrupted removals are removed
    /// (`None`). Otherwise the state is saved as this boot's.
    fn recover_stale(&self, id: &str, mut st: ContainerState) -> Result<Option<ContainerState>, ContainerError> {
        let dir = self.container_dir(id);
        tracing::info!(%id, boot = %st.boot_id, "cleaning up a container of an earlier boot");
        let rootfs = dir.join("rootfs");
        if is_mount_point(&rootfs) {
            crate::layer::rootfs::unmount(&rootfs)?;
        }
        remove_cgroup(id);
        // The veth and rules died with the boot; addresses, endpoints and hosts entries remain.
        crate::network::docker::disconnect(&self.root, id)?;
        let removing = st.status == Status::Removing;
        if matches!(st.status, Status::Running | Status::Removing) {
            match state::read_json::<ExitRecord>(&dir.join("exit.json")) {
                Ok(exit) => {
                    st.exit_code = exit.exit_code;
                    st.oom_killed = exit.oom_killed;
                    st.finished_at = Some(exit.finished_at);
                }
                Err(_) => {
                    st.exit_code = 255;
                    st.finished_at = Some(Timestamp::now());
                    st.error = "the machine restarted while the container was running".into();
                }
            }
            st.status = Status::Exited;
        }
        st.pid = 0;
        st.pid_start_time = 0;
        st.monitor_pid = 0;
        if removing || st.auto_remove {
            remove_files(&self.root, id, Some(&st.name))?;
            return Ok(None);
        }
        st.boot_id = current_boot_id().unwrap_or_default();
        state::save(&dir, &st)?;
        Ok(Some(st))
    }

    fn claim_name(&self, name: &str, id: &str) -> Result<(), ContainerError> {
        let path = self.root.join("containers").join(".names").join(name);
        // O_EXCL makes two concurrent creates with one name fail cleanly.
        match fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut file) => file.write_all(id.as_bytes()).map_err(|e| ContainerError::io("writing", &path, e)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let owner = fs::read_to_string(&path).unwrap_or_default().trim().to_string();
                if !owner.is_empty() && !self.container_dir(&owner).is_dir() {
                    // Left behind by a removal that was cut short.
                    let _ = fs::remove_file(&path);
                    return self.claim_name(name, id);
                }
                Err(ContainerError::NameInUse { name: name.to_string(), id: owner })
            }
            Err(e) => Err(ContainerError::io("creating", &path, e)),
        }
    }

    /// A generated name, retried on a clash as docker does (with a digit appended after the
    /// first try): the word lists give only a few hundred names.
    fn claim_random_name(&self, id: &str) -> Result<String, ContainerError> {
        let mut last = None;
        for attempt in 0..32 {
            let mut name = random_name();
            if attempt > 0 {
                name.push_str(&rand::random_range(0..100u32).to_string());
            }
            match self.claim_name(&name, id) {
                Ok(()) => return Ok(name),
                Err(e @ ContainerError::NameInUse { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| ContainerError::InvalidName("no free generated name".into())))
    }

    /// Polls until the container is not running; `Ok(false)` when `limit` passed first.
    fn wait_until_stopped(&self, id: &str, limit: Duration) -> Result<bool, ContainerError> {
        let deadline = Instant::now() + limit;
        loop {
            match self.inspect(id) {
                Ok(st) if st.status != Status::Running => return Ok(true),
                Ok(_) => {}
                Err(ContainerError::NotFound(_)) => return Ok(true),
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// What the monitor tells the process that started it, one JSON object a line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum MonitorEvent {
    Started,
    Failed { code: i32, message: String },
    Exited { exit_code: i32 },
}

fn read_event(reader: &mut BufReader<fs::File>) -> Option<MonitorEvent> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => serde_json::from_str(&line).ok(),
    }
}

/// Unmounts, un-cgroups and deletes a container; also used by the monitor for `--rm`.
pub(crate) fn remove_files(root: &Path, id: &str, name: Option<&str>) -> Result<(), ContainerError> {
    crate::network::docker::disconnect(root, id)?;
    let dir = root.join("containers").join(id);
    let rootfs = dir.join("rootfs");
    if is_mount_point(&rootfs) {
        crate::layer::rootfs::unmount(&rootfs)?;
    }
    remove_cgroup(id);
    if let Some(name) = name {
        let name_file = root.join("containers").join(".names").join(name);
        if fs::read_to_string(&name_file).map(|owner| owner.trim() == id).unwrap_or(false) {
            let _ = fs::remove_file(&name_file);
        }
    }
    match fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ContainerError::io("removing", &dir, e)),
    }
}

/// Removes a `--rm` container whose monitor has recorded its exit, in the few steps that must
/// come before `run --rm` is told: unmount the root, then move the container's directory and
/// name out of sight (`containers/.trash/<id>`, two renames). The returned directory is deleted
/// by the caller after it reported the exit (or by the next [`Runtime::open`]).
///
/// Why not delete at once: on ext4 every rmdir, and every unlink of a file's last name, adds
/// to the orphan list in the superblock, and waits when a journal commit holds that block;
/// on this shared machine that made the dozen removals of a container take 10-25 ms, all
/// between the container's end and `run --rm` returning. containerd's snapshotters rename
/// before they delete for the same reason. Skipped too: [`remove_files`]'s lookups (network,
/// mountinfo, cgroups), since the monitor disconnected the container and removed its cgroup.
pub(crate) fn remove_exited_files(root: &Path, id: &str, name: &str) -> Result<Option<PathBuf>, ContainerError> {
    let containers = root.join("containers");
    let dir = containers.join(id);
    // Not mounted (EINVAL) is fine: a retried removal finds it so.
    crate::layer::rootfs::unmount(&dir.join("rootfs"))?;
    let trash_dir = containers.join(TRASH);
    let trash = trash_dir.join(id);
    let moved = fs::create_dir_all(&trash_dir).and_then(|()| fs::rename(&dir, &trash));
    if let Err(error) = moved {
        tracing::debug!(%id, %error, "cannot move the container to the trash, deleting it in place");
        remove_files(root, id, Some(name))?;
        return Ok(None);
    }
    let name_file = containers.join(".names").join(name);
    if fs::read_to_string(&name_file).map(|owner| owner.trim() == id).unwrap_or(false) {
        if fs::rename(&name_file, trash.join(".name")).is_err() {
            let _ = fs::remove_file(&name_file);
        }
    }
    Ok(Some(trash))
}

/// The directory (under `containers/`) of removed containers whose files are being deleted.
const TRASH: &str = ".trash";

/// Deletes what removed containers left in the trash: a monitor killed before it finished.
/// Entries that vanish meanwhile are being deleted by their monitor.
fn empty_trash(root: &Path) {
    let trash = root.join("containers").join(TRASH);
    let Ok(entries) = fs::read_dir(&trash) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if let Err(error) = fs::remove_dir_all(&path) {
            if error.kind() != io::ErrorKind::NotFound {
                // Quietly: the next open tries again, and a monitor may be deleting it right now.
                tracing::debug!(path = %path.display(), %error, "cannot delete a removed container's files");
            }
        }
    }
}

/// Whether the overlay root of a container is mounted: a mount has a device of its own, which
/// two stat calls tell without reading the whole mount table (large on a busy host).
fn overlay_mounted(rootfs: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(parent) = rootfs.parent() else { return false };
    match (fs::metadata(rootfs), fs::metadata(parent)) {
        (Ok(root), Ok(parent)) => root.dev() != parent.dev(),
        _ => false,
    }
}

/// Removes the container's cgroup if it is still there; failures are logged, since a cgroup
/// that cannot be opened is one that is already gone.
pub(crate) fn remove_cgroup(id: &str) {
    #[cfg(target_os = "linux")]
    {
        let Ok(driver) = crate::cgroups::Cgroup::detect() else { return };
        if let Ok(cgroup) = crate::cgroups::Cgroup::open(&driver, id) {
            if let Err(error) = cgroup.remove() {
                tracing::warn!(%id, %error, "cannot remove the container's cgroup");
            }
        }
    }
}

fn signal_pid(st: &ContainerState, signal: i32) -> Result<(), ContainerError> {
    if !process_alive(st.pid, st.pid_start_time) {
        return Ok(());
    }
    // SAFETY: kill(2) with a pid we checked is still the container's init; no memory involved.
    if unsafe { libc::kill(st.pid, signal) } == 0 {
        return Ok(());
    }
    match nix::errno::Errno::last() {
        nix::errno::Errno::ESRCH => Ok(()),
        source => Err(ContainerError::Sys { what: format!("sending signal {signal} to container {}", st.id), source }),
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), read once; `None` where the kernel has none.
pub fn current_boot_id() -> Option<String> {
    static BOOT_ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    BOOT_ID
        .get_or_init(|| {
            fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()
                .map(|id| id.trim().to_string())
                .filter(|id| !id.is_empty())
        })
        .clone()
}

/// Whether the state was recorded during an earlier boot (states without a boot id, written
/// before it was recorded, cannot tell and are taken as this boot's).
fn from_earlier_boot(st: &ContainerState) -> bool {
    !st.boot_id.is_empty() && current_boot_id().is_some_and(|boot| boot != st.boot_id)
}

/// Whether `pid` is still the process that was started (its start time matches).
pub(crate) fn process_alive(pid: i32, start_time: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    match process_start_time(pid) {
        Some((started, state)) => state != 'Z' && (start_time == 0 || started == start_time),
        None => false,
    }
}

/// Field 22 (start time) and field 3 (state) of /proc/PID/stat.
pub(crate) fn process_start_time(pid: i32) -> Option<(u64, char)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let started = fields.get(19)?.parse().ok()?;
    Some((started, state))
}

fn monitor_alive(pid: i32, id: &str) -> bool {
    if pid <= 0 {
        return false;
    }
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let alive = process_start_time(pid).is_some_and(|(_, state)| state != 'Z');
    alive && String::from_utf8_lossy(&cmdline).contains(id)
}

/// Whether `path` is a mount point (listed in /proc/self/mountinfo).
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(path) = path.canonicalize() else { return false };
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else { return false };
    info.lines().any(|line| {
        line.split(' ').nth(4).is_some_and(|mount_point| Path::new(&unescape_mountinfo(mount_point)) == path)
    })
}

/// Mountinfo escapes space, tab, newline and backslash as `\ooo`.
pub fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let value = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `flotilla-monitor` next to the current executable, else on PATH, else $FLOTILLA_MONITOR.
pub fn monitor_binary() -> Result<PathBuf, ContainerError> {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut candidates = Vec::new();
    if let Some(dir) = exe.parent() {
        candidates.push(dir.join("flotilla-monitor"));
        // Test binaries live in target/PROFILE/deps, the binaries one level up.
        if let Some(up) = dir.parent() {
            candidates.push(up.join("flotilla-monitor"));
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&paths).map(|d| d.join("flotilla-monitor")));
    }
    if let Some(explicit) = std::env::var_os("FLOTILLA_MONITOR") {
        candidates.push(PathBuf::from(explicit));
    }
    candidates.into_iter().find(|p| p.is_file()).ok_or(ContainerError::MonitorNotFound { exe })
}

fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub(crate) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A docker-like `adjective_surname` name.
fn random_name() -> String {
    const ADJECTIVES: &[&str] = &[
        "admiring", "bold", "brave", "clever", "eager", "focused", "gallant", "happy", "jolly",
        "keen", "lucid", "modest", "nifty", "quirky", "serene", "sharp", "stoic", "tender",
        "upbeat", "vibrant", "wizardly", "zealous",
    ];
    const NAMES: &[&str] = &[
        "babbage", "curie", "darwin", "euler", "fermi", "galileo", "hopper", "hypatia", "kepler",
        "lovelace", "meitner", "newton", "noether", "pascal", "ritchie", "shannon", "tesla",
        "thompson", "turing", "wozniak",
    ];
    let a = ADJECTIVES[rand::random_range(0..ADJECTIVES.len())];
    let n = NAMES[rand::random_range(0..NAMES.len())];
    format!("{a}_{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_like_docker() {
        assert!(valid_name("web-1.a_b"));
        assert!(!valid_name("-web"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(""));
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo(r"/a\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    #[test]
    fn ids_are_64_hex() {
        let id = new_id();
        assert!(is_id(&id), "{id}");
    }
}
