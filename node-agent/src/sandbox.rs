//! Pod sandboxes: one network namespace per pod, bind-mounted at `<dir>/<pod uid>` (by default
//! `/run/flotilla/netns`, as `ip netns` keeps them in /run/netns) so that it outlives any
//! process and every container of the pod joins it. Its loopback is brought up here; addresses
//! and veth pairs come with the networking issue.
//!
//! Namespaces are made in a short-lived thread of their own: `unshare(CLONE_NEWNET)` changes
//! only the calling thread, and that thread must not go back to serving the async runtime.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// Where pod network namespaces are bind-mounted.
pub const NETNS_DIR: &str = "/run/flotilla/netns";

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot {action} {path}: {source}: the agent must run as root")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("cannot {action} for {path}: {source}: the agent must run as root")]
    Sys { action: &'static str, path: PathBuf, source: nix::Error },
    #[error("the thread creating the network namespace {0} panicked")]
    Thread(PathBuf),
}

/// The bind mount of a pod's network namespace.
pub fn netns_path(dir: &Path, pod_uid: &str) -> PathBuf {
    dir.join(pod_uid)
}

/// Makes the pod's network namespace unless it is there already; returns its path.
pub fn ensure(dir: &Path, pod_uid: &str) -> Result<PathBuf, SandboxError> {
    let path = netns_path(dir, pod_uid);
    if runtime::container::is_mount_point(&path) {
        return Ok(path);
    }
    fs::create_dir_all(dir).map_err(|source| SandboxError::Io { action: "create", path: dir.to_path_buf(), source })?;
    // A file left without its mount (a crash between the two steps) is reused.
    if !path.exists() {
        fs::File::create(&path).map_err(|source| SandboxError::Io { action: "create", path: path.clone(), source })?;
    }
    let target = path.clone();
    let made = std::thread::spawn(move || -> Result<(), SandboxError> {
        let sys = |action, source| SandboxError::Sys { action, path: target.clone(), source };
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| sys("unshare a network namespace", e))?;
        loopback_up().map_err(|source| SandboxError::Io { action: "bring up loopback in", path: target.clone(), source })?;
        // This thread's own namespace, not the process's (other threads stay in the host's).
        let own = format!("/proc/self/task/{}/ns/net", nix::unistd::gettid());
        mount(Some(Path::new(&own)), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| sys("bind-mount the network namespace", e))
    })
    .join()
    .map_err(|_| SandboxError::Thread(path.clone()))?;
    if let Err(e) = made {
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    tracing::debug!(path = %path.display(), "created the pod's network namespace");
    Ok(path)
}

/// Removes the pod's network namespace (nothing to do when it is gone).
pub fn remove(dir: &Path, pod_uid: &str) -> Result<(), SandboxError> {
    let path = netns_path(dir, pod_uid);
    if runtime::container::is_mount_point(&path) {
        umount2(&path, MntFlags::MNT_DETACH)
            .map_err(|source| SandboxError::Sys { action: "unmount the network namespace", path: path.clone(), source })?;
    }
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SandboxError::Io { action: "remove", path, source }),
    }
}

/// Sets IFF_UP on `lo` in the calling thread's network namespace.
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: socket/ioctl on a zeroed ifreq we own; the descriptor is closed before returning.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut result = libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut req);
        if result == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            result = libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &mut req);
        }
        let error = std::io::Error::last_os_error();
        libc::close(fd);
        if result != 0 {
            return Err(error);
        }
    }
    Ok(())
}
