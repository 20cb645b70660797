//! The agent's run directory: state that belongs to this boot of the machine and is rewritten
//! all the time — the pods' records and their resolv.conf and hosts files, the node's IPAM
//! file — on a tmpfs, as containerd keeps its per-task state under /run and the kubelet its
//! secrets on tmpfs.
//!
//! Why not the data disk: none of it outlives a reboot anyway (the pods' containers, addresses
//! and network namespaces are gone then, and the agent recreates the pods from the API), and on
//! a disk each pod start created and replaced eight small files there. On ext4 without a
//! journal every new inode makes the allocator skip the inodes deleted in the last minutes, so
//! a burst of pods after a burst of deletions spent a third of the machine's CPU in the
//! allocator (see BENCHMARKS.md, "Orchestration").
//!
//! By default the run directory is `DATA_DIR/run`, on which the agent mounts a tmpfs unless the
//! directory is on one already (`--run-dir /run/...`). The mount outlives the agent, so a
//! restarted agent finds its pods' records and adopts their containers; it is gone after a
//! reboot, like the containers. Whoever removes the data directory unmounts it first, as it
//! does the containers' overlays (`deploy/local-cluster down` unmounts everything under a
//! node's directory).

use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sys::statfs::{statfs, TMPFS_MAGIC};

/// The size limit of the tmpfs: records and network files are a few KiB per pod.
const TMPFS_OPTIONS: &str = "mode=0700,size=64m";

#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error("cannot create the run directory {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("cannot mount a tmpfs on the run directory {path}: {source}: the agent must run as root, or pass --run-dir on a tmpfs")]
    Mount { path: PathBuf, source: nix::Error },
    #[error("cannot look at the file system of {path}: {source}")]
    Statfs { path: PathBuf, source: nix::Error },
}

/// Makes `dir` and puts it on a tmpfs unless it is on one; returns whether it mounted one.
pub fn ensure(dir: &Path) -> Result<bool, RunDirError> {
    std::fs::create_dir_all(dir).map_err(|source| RunDirError::Create { path: dir.to_path_buf(), source })?;
    let fs = statfs(dir).map_err(|source| RunDirError::Statfs { path: dir.to_path_buf(), source })?;
    if fs.filesystem_type() == TMPFS_MAGIC {
        return Ok(false);
    }
    mount(Some("flotilla-run"), dir, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(TMPFS_OPTIONS))
        .map_err(|source| RunDirError::Mount { path: dir.to_path_buf(), source })?;
    tracing::info!(dir = %dir.display(), "mounted a tmpfs on the run directory");
    Ok(true)
}

/// Moves `file` of the data directory into the run directory unless the run directory has it:
/// state an agent of an earlier version kept on the disk (its pods are still running).
pub fn adopt_file(old: &Path, new: &Path) {
    if new.exists() || !old.exists() {
        return;
    }
    let copied = new.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::copy(old, new));
    match copied {
        Ok(_) => {
            let _ = std::fs::remove_file(old);
            tracing::info!(from = %old.display(), to = %new.display(), "moved state into the run directory");
        }
        Err(e) => tracing::warn!(error = %e, from = %old.display(), "cannot move state into the run directory; starting it afresh"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounted(dir: &Path) -> bool {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        mounts.lines().filter_map(|l| l.split(' ').nth(4)).any(|p| Path::new(&runtime::container::unescape_mountinfo(p)) == dir)
    }

    #[test]
    fn mounts_a_tmpfs_once_as_root() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let base = tempfile::tempdir().expect("tempdir");
        let dir = base.path().join("run");
        // On a tmpfs already (a tempdir may be under /dev/shm): nothing to mount.
        let on_tmpfs = statfs(base.path()).map(|f| f.filesystem_type() == TMPFS_MAGIC).unwrap_or(false);
        let first = ensure(&dir).expect("ensure");
        assert_eq!(first, !on_tmpfs);
        assert!(!ensure(&dir).expect("ensure again"), "a second call mounted another tmpfs");
        assert_eq!(statfs(&dir).expect("statfs").filesystem_type(), TMPFS_MAGIC);
        std::fs::write(dir.join("f"), b"x").expect("write");
        if first {
            assert!(mounted(&dir));
            nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH).expect("umount");
        }
    }

    #[test]
    fn a_file_path_is_refused_and_nothing_is_mounted() {
        let base = tempfile::tempdir().expect("tempdir");
        let file = base.path().join("file");
        std::fs::write(&file, b"x").expect("write");
        assert!(matches!(ensure(&file), Err(RunDirError::Create { .. })));
        assert!(!mounted(&file));
    }

    #[test]
    fn adopts_an_old_file_once() {
        let base = tempfile::tempdir().expect("tempdir");
        let (old, new) = (base.path().join("data/ipam.json"), base.path().join("run/network/ipam.json"));
        std::fs::create_dir_all(old.parent().expect("parent")).expect("mkdir");
        std::fs::write(&old, b"old").expect("write");
        adopt_file(&old, &new);
        assert_eq!(std::fs::read(&new).expect("moved"), b"old");
        assert!(!old.exists());
        // The run directory's own file wins over one found later on the disk.
        std::fs::write(&old, b"older").expect("write");
        adopt_file(&old, &new);
        assert_eq!(std::fs::read(&new).expect("kept"), b"old");
    }
}
