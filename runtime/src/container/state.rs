//! A container's recorded state: the lifecycle enum with its guards, and `state.json`, which is
//! written atomically (temp file + rename) so a reader never sees half a file, and which lets a
//! restarted process (ctl, the node agent) recover every container. Only the records a later
//! boot needs are synced to disk ([`Durability`]).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::ContainerError;
use crate::spec::ContainerSpec;

/// Where a container is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Exited,
    Removing,
}

impl Status {
    /// Docker's word for the status (`docker inspect` State.Status).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
            Status::Removing => "removing",
        }
    }
}

/// Everything recorded about one container, saved as `containers/<id>/state.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerState {
    /// 64 lower-case hex digits.
    pub id: String,
    /// Unique among the containers of a root, without docker's leading `/`.
    pub name: String,
    /// The image id (`sha256:...`).
    pub image: String,
    /// The image as the user named it (`busybox`, `busybox:1.36`).
    pub image_name: String,
    pub created: Timestamp,
    pub status: Status,
    /// The container's init process as seen from the host; 0 when not running.
    pub pid: i32,
    /// The pid's start time (field 22 of /proc/PID/stat), so a reused pid is not mistaken for it.
    #[serde(default)]
    pub pid_start_time: u64,
    pub monitor_pid: i32,
    pub exit_code: i32,
    pub oom_killed: bool,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// Why the last start failed, or why the exit code is unknown.
    #[serde(default)]
    pub error: String,
    /// The extracted layer dirs of the image, top first, so the overlay can be mounted again.
    pub lowers: Vec<PathBuf>,
    /// `-i`: keep the container's stdin open.
    #[serde(default)]
    pub interactive: bool,
    /// `--rm`: the monitor removes the container once it exits.
    #[serde(default)]
    pub auto_remove: bool,
    #[serde(default)]
    pub restart_count: u32,
    /// The boot (`/proc/sys/kernel/random/boot_id`) the container was created or last started
    /// in: its pid, mounts and cgroup mean nothing in another one. Empty in states written
    /// before it was recorded.
    #[serde(default)]
    pub boot_id: String,
    pub spec: ContainerSpec,
}

impl ContainerState {
    /// Whether `start` may run the container; a running one is left alone (`Ok(false)`).
    pub fn can_start(&self) -> Result<bool, ContainerError> {
        match self.status {
            Status::Created | Status::Exited => Ok(true),
            Status::Running => Ok(false),
            Status::Removing => Err(ContainerError::Conflict(format!(
                "container is marked for removal and cannot be started: {}",
                self.id
            ))),
        }
    }

    /// Whether signals may be sent to the container.
    pub fn can_kill(&self) -> Result<(), ContainerError> {
        match self.status {
            Status::Running => Ok(()),
            _ => Err(ContainerError::Conflict(format!(
                "cannot kill container: {0}: container {0} is not running",
                self.id
            ))),
        }
    }

    /// Whether the container may be removed (`force` stops a running one first).
    pub fn can_delete(&self, force: bool) -> Result<(), ContainerError> {
        match self.status {
            Status::Running if !force => Err(ContainerError::Conflict(format!(
                "You cannot remove a running container {}. Stop the container before attempting removal or force remove",
                self.id
            ))),
            Status::Removing if !force => Err(ContainerError::Conflict(format!(
                "removal of container {} is already in progress",
                self.id
            ))),
            _ => Ok(()),
        }
    }
}

/// What the monitor records when the container's init process ends (`exit.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The process's exit status, or 128 + the signal that killed it.
    pub exit_code: i32,
    pub oom_killed: bool,
    pub finished_at: Timestamp,
}

/// Whether a record must be on disk, not only in the page cache, when its write returns. Every
/// write is atomic (temp file + rename) either way: readers and crashed processes never see half
/// a file. The difference is a power loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// fsync before the rename: a later boot must find this record (a container's creation,
    /// the final exit of one that is kept).
    Synced,
    /// No fsync: for records that a later boot rewrites anyway (pids and `running` of this boot,
    /// which recovery replaces), and for every record of a `--rm` container, which is deleted
    /// when it exits and by recovery after a reboot. An fsync costs 0.5-6 ms on a shared disk,
    /// and a container's start wrote up to seven of them; runc and crun sync none.
    Unsynced,
}

impl Durability {
    /// [`Durability::Synced`] unless the container removes itself when it exits (`--rm`).
    pub fn for_container(auto_remove: bool) -> Durability {
        if auto_remove {
            Durability::Unsynced
        } else {
            Durability::Synced
        }
    }
}

/// Reads `state.json` of the container dir.
pub fn load(dir: &Path) -> Result<ContainerState, ContainerError> {
    read_json(&dir.join("state.json"))
}

/// Writes `state.json` of the container dir atomically, and durably.
pub fn save(dir: &Path, state: &ContainerState) -> Result<(), ContainerError> {
    save_with(dir, state, Durability::Synced)
}

/// Writes `state.json` of the container dir atomically, synced to disk or not.
pub fn save_with(dir: &Path, state: &ContainerState, durability: Durability) -> Result<(), ContainerError> {
    write_json_atomic(&dir.join("state.json"), state, durability)
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ContainerError> {
    let bytes = fs::read(path).map_err(|source| ContainerError::io("reading", path, source))?;
    serde_json::from_slice(&bytes).map_err(|source| ContainerError::Corrupt {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn write_json_atomic<T: Serialize>(
    path: &Path,
    value: &T,
    durability: Durability,
) -> Result<(), ContainerError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| ContainerError::Corrupt {
        path: path.to_path_buf(),
        source,
    })?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        if durability == Durability::Synced {
            file.sync_all()?;
        }
        fs::rename(&tmp, path)
    };
    write().map_err(|source| {
        let _ = fs::remove_file(&tmp);
        ContainerError::io("writing", path, source)
    })
}
