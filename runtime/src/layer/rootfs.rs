//! Overlay root filesystems: the extracted layers of an image stacked read-only under a
//! container's own writable upper directory.
//!
//! mount(2) takes its options in one page (4096 bytes here), and `lowerdir=` with a full path per
//! layer overflows it at around fifty layers. When it would, the mount is made from a helper
//! thread that unshares its working directory (`unshare(CLONE_FS)`, so the rest of the process
//! is unaffected), holds an `O_PATH` descriptor of every lower directory and changes into
//! `/proc/self/fd`; the lower directories are then named by their descriptor numbers, a few bytes
//! each, which fits the kernel's own limit of 500 lowers. Overlayfs resolves the names once, at
//! mount time, so the descriptors may close right after. containerd solves the same problem by
//! chdir'ing into the layers' common parent, and docker with short symbolic links; both still
//! spend tens of bytes per layer.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::stat::Mode;

use super::LayerError;

/// How [`mount_overlay_with`] mounts the writable overlay.
#[derive(Clone, Copy, Debug, Default)]
pub struct OverlayOptions {
    /// Mount with overlayfs's `volatile` option (Linux 5.10 and later; silently a normal mount
    /// on older kernels): overlayfs then never syncs the upper file system. Without it,
    /// unmounting the overlay syncs the whole file system that holds `upper` (`syncfs`), which
    /// costs milliseconds on a busy disk. The price: after a crash the upper directory may have
    /// lost writes, and overlayfs refuses to mount it again (it leaves
    /// `work/work/incompat/volatile` behind, even after a clean unmount). Meant for writable
    /// layers that are thrown away when the container ends (`run --rm`).
    pub volatile: bool,
}

/// Mounts an overlay of `lowers` (top layer first) under the writable `upper`, with `work` as
/// overlayfs's work directory (same file system as `upper`), on `target`.
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), LayerError> {
    mount_overlay_with(lowers, upper, work, target, &OverlayOptions::default())
}

/// [`mount_overlay`] with options.
pub fn mount_overlay_with(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    opts: &OverlayOptions,
) -> Result<(), LayerError> {
    let upper = absolute(upper)?;
    let work = absolute(work)?;
    let mut rest = vec![
        option("upperdir", &upper, target)?,
        option("workdir", &work, target)?,
    ];
    rest.extend(extra_options());
    if opts.volatile {
        let mut volatile = rest.clone();
        volatile.push("volatile".to_owned());
        match mount_lowers(lowers, &volatile, MsFlags::empty(), target) {
            Ok(()) => return Ok(()),
            // Kernels before 5.10 do not know the option; the mount below reports real errors.
            Err(error) => tracing::debug!(%error, "volatile overlay refused, mounting a normal one"),
        }
    }
    mount_lowers(lowers, &rest, MsFlags::empty(), target)
}

/// Mounts `lowers` (top layer first) read-only on `target`, without an upper directory: an
/// overlay of the layers, or a read-only bind mount when there is one layer (overlayfs wants
/// two lowers when it has no upper).
pub fn mount_readonly(lowers: &[PathBuf], target: &Path) -> Result<(), LayerError> {
    if let [only] = lowers {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
        mount(
            Some(only.as_path()),
            target,
            None::<&str>,
            flags,
            None::<&str>,
        )
        .map_err(|e| mount_error(target, e))?;
        let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        if let Err(e) = mount(None::<&str>, target, None::<&str>, remount, None::<&str>) {
            // Never leave a writable view of a shared layer behind.
            let _ = umount2(target, MntFlags::MNT_DETACH);
            return Err(mount_error(target, e));
        }
        return Ok(());
    }
    mount_lowers(lowers, &extra_options(), MsFlags::MS_RDONLY, target)
}

/// Unmounts `target`. A busy mount is detached lazily (MNT_DETACH) instead; a target that is not
/// mounted, or does not exist, is not an error, so that removal can be retried.
pub fn unmount(target: &Path) -> Result<(), LayerError> {
    match umount2(target, MntFlags::empty()) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EBUSY) => {
            tracing::debug!(target = %target.display(), "mount busy, detaching it lazily");
            umount2(target, MntFlags::MNT_DETACH).map_err(|e| LayerError::Unmount {
                target: target.to_owned(),
                source: e.into(),
            })
        }
        Err(e) => Err(LayerError::Unmount {
            target: target.to_owned(),
            source: e.into(),
        }),
    }
}

/// The kernel stops at this many lower layers (OVL_MAX_STACK).
const MAX_LOWERS: usize = 500;

fn mount_lowers(
    lowers: &[PathBuf],
    rest: &[String],
    flags: MsFlags,
    target: &Path,
) -> Result<(), LayerError> {
    if lowers.is_empty() {
        return Err(config_error(
            target,
            "an overlay needs at least one lower layer".to_owned(),
        ));
    }
    if lowers.len() > MAX_LOWERS {
        return Err(config_error(
            target,
            format!(
                "{} layers are more than overlayfs stacks ({MAX_LOWERS}); squash the image",
                lowers.len()
            ),
        ));
    }
    let lowers = lowers
        .iter()
        .map(|l| absolute(l))
        .collect::<Result<Vec<_>, _>>()?;
    let mut names = Vec::with_capacity(lowers.len());
    for lower in &lowers {
        names.push(escaped(lower, target)?);
    }
    let options = options_string(&names.join(":"), rest);
    if options.len() < page_size() {
        return mount(
            Some("overlay"),
            target,
            Some("overlay"),
            flags,
            Some(options.as_str()),
        )
        .map_err(|e| mount_error(target, e));
    }
    tracing::debug!(
        layers = lowers.len(),
        "overlay options exceed a page, naming lowers by descriptor"
    );
    std::thread::scope(|scope| {
        scope
            .spawn(|| mount_by_descriptors(&lowers, rest, flags, target))
            .join()
            .unwrap_or_else(|_| {
                Err(config_error(
                    target,
                    "the mount helper thread panicked".to_owned(),
                ))
            })
    })
}

/// Runs on a helper thread whose working directory is its own (see the module doc).
fn mount_by_descriptors(
    lowers: &[PathBuf],
    rest: &[String],
    flags: MsFlags,
    target: &Path,
) -> Result<(), LayerError> {
    unshare(CloneFlags::CLONE_FS).map_err(|e| mount_error(target, e))?;
    let mut fds: Vec<OwnedFd> = Vec::with_capacity(lowers.len());
    for lower in lowers {
        let fd = open(
            lower.as_path(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| LayerError::Io {
            action: "open lower layer",
            path: lower.clone(),
            source: e.into(),
        })?;
        fds.push(fd);
    }
    nix::unistd::chdir("/proc/self/fd").map_err(|e| mount_error(target, e))?;
    let names: Vec<String> = fds.iter().map(|fd| fd.as_raw_fd().to_string()).collect();
    let options = options_string(&names.join(":"), rest);
    if options.len() >= page_size() {
        return Err(config_error(
            target,
            format!(
                "the overlay options for {} layers do not fit in a page",
                lowers.len()
            ),
        ));
    }
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        flags,
        Some(options.as_str()),
    )
    .map_err(|e| mount_error(target, e))
}

fn options_string(lowerdir: &str, rest: &[String]) -> String {
    let mut options = format!("lowerdir={lowerdir}");
    for option in rest {
        options.push(',');
        options.push_str(option);
    }
    options
}

/// Options docker adds when the overlay module enables them by default: an inode index makes
/// a lower layer unusable by a second overlay at once, and redirected directories would be
/// invisible to a later diff of the upper directory.
fn extra_options() -> Vec<String> {
    let mut out = Vec::new();
    for (param, option) in [("index", "index=off"), ("redirect_dir", "redirect_dir=off")] {
        let path = format!("/sys/module/overlay/parameters/{param}");
        if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "Y") {
            out.push(option.to_owned());
        }
    }
    out
}

fn option(key: &str, path: &Path, target: &Path) -> Result<String, LayerError> {
    Ok(format!("{key}={}", escaped(path, target)?))
}

/// Paths go into a comma- and colon-separated option string; rather than rely on the kernel's
/// escaping rules, which have changed between versions, such paths are refused.
fn escaped(path: &Path, target: &Path) -> Result<String, LayerError> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.iter().any(|b| matches!(b, b',' | b':' | b'\\')) {
        return Err(config_error(
            target,
            format!("path {} contains ',', ':' or '\\', which overlay options cannot hold; use another root directory", path.display()),
        ));
    }
    path.to_str().map(str::to_owned).ok_or_else(|| {
        config_error(
            target,
            format!("path {} is not UTF-8", OsStr::new(path).to_string_lossy()),
        )
    })
}

fn absolute(path: &Path) -> Result<PathBuf, LayerError> {
    std::path::absolute(path).map_err(|source| LayerError::Io {
        action: "resolve the path of",
        path: path.to_owned(),
        source,
    })
}

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |v| v as usize)
}

fn mount_error(target: &Path, e: Errno) -> LayerError {
    LayerError::Mount {
        target: target.to_owned(),
        source: e.into(),
    }
}

fn config_error(target: &Path, reason: String) -> LayerError {
    LayerError::MountConfig {
        target: target.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_joined() {
        assert_eq!(options_string("a:b", &[]), "lowerdir=a:b");
        assert_eq!(
            options_string("a", &["upperdir=/u".to_owned(), "workdir=/w".to_owned()]),
            "lowerdir=a,upperdir=/u,workdir=/w"
        );
    }

    #[test]
    fn separators_in_paths_are_refused() {
        let target = Path::new("/t");
        assert!(escaped(Path::new("/var/lib/flotilla/layers/ab"), target).is_ok());
        for bad in ["/a,b", "/a:b", "/a\\b"] {
            assert!(
                matches!(
                    escaped(Path::new(bad), target),
                    Err(LayerError::MountConfig { .. })
                ),
                "{bad}"
            );
        }
    }
}
