//! Resource limits through Linux cgroups, v1 and v2: one cgroup per container under a
//! `flotilla` parent, limits written from a [`Resources`], processes added by pid or joining by
//! themselves ([`join_self`], the cheap way), OOM kills detected from the kernel's counters, and
//! removal that kills what is left first.
//!
//! Written by hand rather than with a cgroups crate: the few files we touch are plain text, the
//! crates available either pull in systemd/dbus or cover only one version, and owning the code
//! lets every error name the file and say what to do.
#![cfg(target_os = "linux")]

mod v1;
mod v2;

use std::os::fd::{OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::spec::Resources;

/// Where cgroup hierarchies are mounted on a normal Linux system.
pub const DEFAULT_CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The directory, under each hierarchy, that holds one cgroup per container.
pub const PARENT: &str = "flotilla";

/// How long [`Cgroup::remove`] waits for killed processes to leave.
pub const REMOVE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// Which cgroup version to use and where its hierarchy (v2) or hierarchies (v1) are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupDriver {
    version: CgroupVersion,
    root: PathBuf,
}

/// One container's cgroup (one directory per controller in v1, one directory in v2).
#[derive(Debug)]
pub struct Cgroup {
    id: String,
    version: CgroupVersion,
    /// v1: (controller, directory) for each mounted controller we use; v2: one ("", directory).
    dirs: Vec<(&'static str, PathBuf)>,
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "no usable cgroup hierarchy at {path}: mount cgroup2 there, or the v1 memory, cpu and pids controllers under it"
    )]
    NoHierarchy { path: PathBuf },
    #[error("{path} is not a cgroup v2 mount (no cgroup.controllers): mount one with `mount -t cgroup2 none {path}` or use the v1 driver")]
    NotCgroup2 { path: PathBuf },
    #[error("invalid cgroup id '{id}': use 1 to 128 letters, digits, '_', '.' or '-'")]
    InvalidId { id: String },
    #[error(
        "cgroup v2 controller {controller} is not enabled at {path} (cgroup.controllers lists: {available}): enable it in the parent's cgroup.subtree_control, or run without a {limit} limit"
    )]
    ControllerNotEnabled {
        controller: &'static str,
        path: PathBuf,
        available: String,
        limit: &'static str,
    },
    #[error(
        "cgroup v1 controller {controller} is not mounted at {path}: mount it (`mount -t cgroup -o {controller} cgroup {path}`), or run without a {limit} limit"
    )]
    ControllerNotMounted {
        controller: &'static str,
        path: PathBuf,
        limit: &'static str,
    },
    #[error(
        "cgroup {path} already exists: remove the old container first or use another container id"
    )]
    Exists { path: PathBuf },
    #[error("no cgroup for container {id} under {root}: it was removed or never created")]
    NotFound { id: String, root: PathBuf },
    #[error("{action} {path}: {source} (are you root, and is the cgroup filesystem mounted read-write?)")]
    Io {
        action: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("processes {pids:?} are still in {path} after {waited:?}: kill them, then remove the cgroup again")]
    Busy {
        path: PathBuf,
        pids: Vec<i32>,
        waited: Duration,
    },
    #[error("cannot parse {path}: unexpected content {content:?}")]
    Parse { path: PathBuf, content: String },
    #[error("invalid signal number {0}: use 1 to 64")]
    InvalidSignal(i32),
}

impl CgroupDriver {
    /// Picks the driver for this machine: v2 when `/sys/fs/cgroup` itself is a cgroup2 mount,
    /// v1 when the memory, cpu or pids controllers are v1 hierarchies under it (a hybrid system
    /// with an empty v2 tree at `/sys/fs/cgroup/unified` is v1 for our purposes).
    pub fn detect() -> Result<CgroupDriver, CgroupError> {
        let root = Path::new(DEFAULT_CGROUP_ROOT);
        if is_fs(root, nix::sys::statfs::CGROUP2_SUPER_MAGIC) {
            return Ok(CgroupDriver::v2_at(root));
        }
        if v1::CONTROLLERS
            .iter()
            .any(|c| is_fs(&root.join(c), nix::sys::statfs::CGROUP_SUPER_MAGIC))
        {
            return Ok(CgroupDriver::v1_at(root));
        }
        Err(CgroupError::NoHierarchy {
            path: root.to_path_buf(),
        })
    }

    /// A v1 driver whose controllers are mounted at `root/<controller>`.
    pub fn v1_at(root: impl Into<PathBuf>) -> CgroupDriver {
        CgroupDriver {
            version: CgroupVersion::V1,
            root: root.into(),
        }
    }

    /// A v2 driver for the cgroup2 hierarchy mounted at `mount`.
    pub fn v2_at(mount: impl Into<PathBuf>) -> CgroupDriver {
        CgroupDriver {
            version: CgroupVersion::V2,
            root: mount.into(),
        }
    }

    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Cgroup {
    /// Same as [`CgroupDriver::detect`].
    pub fn detect() -> Result<CgroupDriver, CgroupError> {
        CgroupDriver::detect()
    }

    /// Creates the cgroup of container `id` under the `flotilla` parent and writes the limits.
    /// A limit whose controller is missing is an error; on any error nothing is left behind.
    pub fn create(driver: &CgroupDriver, id: &str, res: &Resources) -> Result<Cgroup, CgroupError> {
        check_id(id)?;
        let dirs = match driver.version {
            CgroupVersion::V1 => v1::create(&driver.root, id, res)?,
            CgroupVersion::V2 => vec![("", v2::create(&driver.root, id, res)?)],
        };
        tracing::debug!(id, ?dirs, "created cgroup");
        Ok(Cgroup {
            id: id.to_string(),
            version: driver.version,
            dirs,
        })
    }

    /// Re-opens the cgroup of container `id`, e.g. after the agent restarted.
    pub fn open(driver: &CgroupDriver, id: &str) -> Result<Cgroup, CgroupError> {
        check_id(id)?;
        let dirs = match driver.version {
            CgroupVersion::V1 => v1::existing_dirs(&driver.root, id),
            CgroupVersion::V2 => {
                let dir = driver.root.join(PARENT).join(id);
                if dir.is_dir() {
                    vec![("", dir)]
                } else {
                    Vec::new()
                }
            }
        };
        if dirs.is_empty() {
            return Err(CgroupError::NotFound {
                id: id.to_string(),
                root: driver.root.clone(),
            });
        }
        Ok(Cgroup {
            id: id.to_string(),
            version: driver.version,
            dirs,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// The cgroup's directories (one per v1 controller, one for v2).
    pub fn paths(&self) -> Vec<&Path> {
        self.dirs.iter().map(|(_, d)| d.as_path()).collect()
    }

    /// Moves process `pid` (and, in v1 and v2 alike, only that process; its later children
    /// follow it) into the cgroup.
    pub fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        for (_, dir) in &self.dirs {
            write_file(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Opens, for [`join_self`], the file of each of the cgroup's directories through which a
    /// process moves itself in: v1's `tasks`, v2's `cgroup.procs`. The descriptors are
    /// close-on-exec, so a process that joins and then executes its command does not keep them.
    pub fn open_join_files(&self) -> Result<Vec<OwnedFd>, CgroupError> {
        let name = match self.version {
            CgroupVersion::V1 => "tasks",
            CgroupVersion::V2 => "cgroup.procs",
        };
        let mut files = Vec::with_capacity(self.dirs.len());
        for (_, dir) in &self.dirs {
            let path = dir.join(name);
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| io_err("opening to join", &path, e))?;
            files.push(OwnedFd::from(file));
        }
        Ok(files)
    }

    /// Whether the kernel's OOM killer killed a process of this cgroup.
    pub fn oom_killed(&self) -> Result<bool, CgroupError> {
        match self.version {
            CgroupVersion::V1 => match self.dirs.iter().find(|(c, _)| *c == "memory") {
                Some((_, dir)) => v1::oom_killed(dir),
                None => Ok(false),
            },
            CgroupVersion::V2 => v2::oom_killed(&self.dirs[0].1),
        }
    }

    /// The processes in the cgroup, sorted.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = Vec::new();
        for (_, dir) in &self.dirs {
            pids.extend(read_pids(&dir.join("cgroup.procs"))?);
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Sends `signal` to every process in the cgroup, freezing it meanwhile (where a freezer
    /// exists) so no process can fork a child that escapes the signal.
    pub fn kill_all(&self, signal: i32) -> Result<(), CgroupError> {
        let sig = nix::sys::signal::Signal::try_from(signal)
            .map_err(|_| CgroupError::InvalidSignal(signal))?;
        match self.version {
            CgroupVersion::V1 => v1::kill_all(self, sig),
            CgroupVersion::V2 => v2::kill_all(&self.dirs[0].1, sig),
        }
    }

    /// Kills what is left, waits (at most [`REMOVE_TIMEOUT`]) for the cgroup to empty, and
    /// removes its directories; the `flotilla` parent stays.
    pub fn remove(self) -> Result<(), CgroupError> {
        let start = Instant::now();
        let mut last_kill: Option<Instant> = None;
        loop {
            let pids = self.pids()?;
            if pids.is_empty() {
                break;
            }
            if start.elapsed() > REMOVE_TIMEOUT {
                return Err(CgroupError::Busy {
                    path: self.dirs[0].1.clone(),
                    pids,
                    waited: REMOVE_TIMEOUT,
                });
            }
            // Kill again now and then: a process may have been forking while we killed.
            if last_kill.is_none_or(|t| t.elapsed() > Duration::from_millis(200)) {
                self.kill_all(libc::SIGKILL)?;
                last_kill = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for (_, dir) in self.dirs.iter().rev() {
            rmdir_retrying(dir, start)?;
        }
        tracing::debug!(id = self.id, "removed cgroup");
        Ok(())
    }
}

/// Moves the calling process into the cgroup whose [`Cgroup::open_join_files`] are `files`, by
/// writing "0" (this process) to each. It only calls write(2), so a child may call it between
/// clone and exec; the process must be single-threaded, since in v1 it moves the calling thread.
///
/// Why a process joins by itself instead of being added by pid ([`Cgroup::add_process`]): in
/// v1, writing a pid to `cgroup.procs` takes the kernel's global `cgroup_threadgroup_rwsem` for
/// writing, which waits for an RCU grace period unless another writer held it moments before
/// (measured here: 12-16 ms, the largest single cost of starting a container; runc and crun
/// pay it too). A thread moving itself through `tasks` does not take that lock (see
/// `cgroup_procs_write_start` in the kernel). v2 has no such file; there "0" in `cgroup.procs`
/// moves the caller, taking the lock as a pid would.
pub fn join_self(files: &[RawFd]) -> Result<(), nix::errno::Errno> {
    for &fd in files {
        // SAFETY: a write of a static buffer to a descriptor the caller owns.
        let written = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
        if written != 1 {
            return Err(nix::errno::Errno::last());
        }
    }
    Ok(())
}

// ---- helpers shared by v1 and v2 ----

fn check_id(id: &str) -> Result<(), CgroupError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CgroupError::InvalidId { id: id.to_string() })
    }
}

fn is_fs(path: &Path, magic: nix::sys::statfs::FsType) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type() == magic)
}

fn io_err(action: impl Into<String>, path: &Path, source: std::io::Error) -> CgroupError {
    CgroupError::Io {
        action: action.into(),
        path: path.to_path_buf(),
        source,
    }
}

fn read_file(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|e| io_err("reading", path, e))
}

/// Writes `value` in one `write(2)`, without creating or truncating: cgroup files exist or the
/// controller is missing, and the kernel reads each write as one command.
fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io_err(format!("opening to write {value:?} into"), path, e))?;
    f.write_all(value.as_bytes())
        .map_err(|e| io_err(format!("writing {value:?} to"), path, e))
}

fn read_pids(path: &Path) -> Result<Vec<i32>, CgroupError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        // The directory went away: nothing is in it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("reading", path, e)),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim().parse().map_err(|_| CgroupError::Parse {
                path: path.to_path_buf(),
                content: l.to_string(),
            })
        })
        .collect()
}

/// The value of `key` in a flat keyed file such as `memory.events` or `memory.oom_control`.
fn keyed_value(path: &Path, key: &str) -> Result<Option<u64>, CgroupError> {
    let text = read_file(path)?;
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if parts.next() == Some(key) {
            let value = parts.next().unwrap_or("");
            return value.parse().map(Some).map_err(|_| CgroupError::Parse {
                path: path.to_path_buf(),
                content: line.to_string(),
            });
        }
    }
    Ok(None)
}

fn signal_pids(pids: &[i32], sig: nix::sys::signal::Signal) {
    for &pid in pids {
        // ESRCH only means the process already exited.
        if let Err(e) = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig) {
            if e != nix::errno::Errno::ESRCH {
                tracing::warn!(pid, ?sig, error = %e, "could not signal a process of a cgroup");
            }
        }
    }
}

/// rmdir, retrying EBUSY until [`REMOVE_TIMEOUT`] after `start`: the kernel may still be
/// releasing the last exited task.
fn rmdir_retrying(dir: &Path, start: Instant) -> Result<(), CgroupError> {
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && start.elapsed() < REMOVE_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(io_err("removing", dir, e)),
        }
    }
}

/// Creates `dir`, refusing an existing one; the parents are created as needed.
fn create_leaf(dir: &Path) -> Result<(), CgroupError> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_err("creating", parent, e))?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(CgroupError::Exists {
            path: dir.to_path_buf(),
        }),
        Err(e) => Err(io_err("creating", dir, e)),
    }
}

/// Waits until `done()` or `timeout` passes; returns whether it became done.
fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
