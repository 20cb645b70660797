//! Process setup inside a new container (Linux only): runs in the child the monitor cloned into
//! new mount, PID, UTS, IPC (and network) namespaces, and executes a validated
//! [`ContainerSpec`]: private mounts, /proc, a minimal /dev, read-only /sys, the spec's mounts,
//! /etc/hostname, /etc/hosts, /etc/resolv.conf, pivot_root, masked and read-only paths,
//! hostname, read-only root, no_new_privs, user and groups, capabilities, chdir and exec.
//!
//! Hand-written rather than driving runc: the spec is already plain data, the steps are few,
//! and doing them in-process keeps the monitor free of another binary and of OCI bundle files.
//! Every failure becomes a [`SetupError`] carrying docker's exit code (125 for setup, 126 for
//! a command that cannot be executed, 127 for one that does not exist).

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd::{chdir, pivot_root, sethostname, Gid, Uid};

use crate::spec::{ContainerSpec, MountKind};

/// Why a container process could not be started, with the exit code docker reports for it.
#[derive(Debug, Clone)]
pub struct SetupError {
    pub code: i32,
    pub message: String,
}

impl SetupError {
    fn setup(message: impl Into<String>) -> SetupError {
        SetupError { code: 125, message: message.into() }
    }
}

/// Host-side files bind-mounted over the container's /etc/hostname, /etc/hosts and
/// /etc/resolv.conf (kept in the container dir, as docker does, so a read-only root still gets them).
/// `None` where the spec mounts its own file (docker's `-v f:/etc/hosts`, the node agent's
/// per-pod files): that mount wins, and there is nothing of ours to bind.
pub struct EtcFiles {
    pub hostname: Option<PathBuf>,
    pub hosts: Option<PathBuf>,
    pub resolv_conf: Option<PathBuf>,
}

/// Who the process runs as and what it runs: shared by a container's init and `exec`.
pub struct ProcessConfig<'a> {
    pub args: &'a [String],
    pub env: &'a [String],
    pub cwd: &'a str,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: &'a [u32],
    pub capabilities: &'a [String],
    pub no_new_privileges: bool,
}

impl<'a> ProcessConfig<'a> {
    pub fn from_spec(spec: &'a ContainerSpec) -> ProcessConfig<'a> {
        ProcessConfig {
            args: &spec.args,
            env: &spec.env,
            cwd: &spec.cwd,
            uid: spec.uid,
            gid: spec.gid,
            additional_gids: &spec.additional_gids,
            capabilities: &spec.capabilities,
            no_new_privileges: spec.no_new_privileges,
        }
    }
}

/// Builds the container's filesystem view around `rootfs` and executes the spec's command.
/// With a `console` (`-t`) the command gets a terminal from the container's own devpts, whose
/// master goes back to the monitor. Returns only on failure.
pub fn init_container(
    spec: &ContainerSpec,
    rootfs: &Path,
    etc: &EtcFiles,
    console: Option<&super::console::Console>,
) -> SetupError {
    if let Err(error) = prepare(spec, rootfs, etc) {
        return error;
    }
    // After pivot_root, so /dev/pts is the container's instance.
    if let Some(console) = console {
        if let Err(message) = super::console::attach_init(console) {
            return SetupError::setup(message);
        }
    }
    exec_process(&ProcessConfig::from_spec(spec), true)
}

/// Switches to the process's user, capabilities and directory and executes its command
/// (looked up in the PATH of its environment). Returns only on failure.
pub fn exec_process(process: &ProcessConfig<'_>, create_cwd: bool) -> SetupError {
    if let Err(error) = become_process(process, create_cwd) {
        return error;
    }
    // Descriptors the caller inherited (a test harness's pipes, a shell's fds) must not reach
    // the command; the failure pipe is close-on-exec already.
    mark_fds_cloexec(3);
    execute(process.args, process.env)
}

fn prepare(spec: &ContainerSpec, rootfs: &Path, etc: &EtcFiles) -> Result<(), SetupError> {
    // First, so that the sysfs mounted below shows the joined namespace's interfaces.
    if let crate::spec::NetworkMode::Join(netns) = &spec.network {
        join_netns(netns)?;
    }
    // Nothing mounted from here on may propagate back to the host.
    mnt(None, Path::new("/"), None, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None)?;
    // pivot_root needs the new root to be a mount point of this namespace.
    mnt(Some(rootfs), rootfs, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
    if spec.network == crate::spec::NetworkMode::None {
        loopback_up()?;
    }

    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let proc_dir = dir_in(rootfs, "/proc")?;
    mnt(Some(Path::new("proc")), &proc_dir, Some("proc"), nosuid_nodev_noexec, None)?;

    let dev = dir_in(rootfs, "/dev")?;
    mnt(
        Some(Path::new("tmpfs")),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = dev.join(name);
        touch(&target)?;
        mnt(Some(&Path::new("/dev").join(name)), &target, None, MsFlags::MS_BIND, None)?;
    }
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
        ("core", "/proc/kcore"),
    ] {
        std::os::unix::fs::symlink(to, dev.join(link))
            .map_err(|e| SetupError::setup(format!("creating /dev/{link}: {e}")))?;
    }
    let pts = dir_in(rootfs, "/dev/pts")?;
    mnt(
        Some(Path::new("devpts")),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    let shm = dir_in(rootfs, "/dev/shm")?;
    mnt(Some(Path::new("shm")), &shm, Some("tmpfs"), nosuid_nodev_noexec, Some("mode=1777,size=65536k"))?;
    let mqueue = dir_in(rootfs, "/dev/mqueue")?;
    mnt(Some(Path::new("mqueue")), &mqueue, Some("mqueue"), nosuid_nodev_noexec, None)?;

    let sys = dir_in(rootfs, "/sys")?;
    let sysfs = mnt(
        Some(Path::new("sysfs")),
        &sys,
        Some("sysfs"),
        nosuid_nodev_noexec | MsFlags::MS_RDONLY,
        None,
    );
    if sysfs.is_err() {
        // A host network namespace may refuse a fresh sysfs; the host's, read-only, will do.
        mnt(Some(Path::new("/sys")), &sys, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
        remount_readonly(&sys)?;
    }

    for m in &spec.mounts {
        let target = resolve_in_root(rootfs, &m.destination);
        match &m.kind {
            MountKind::Bind { source, readonly } | MountKind::Volume { source, readonly, .. } => {
                bind(source, &target, *readonly)?
            }
            MountKind::Tmpfs { options } => {
                fs::create_dir_all(&target)
                    .map_err(|e| SetupError::setup(format!("creating {}: {e}", m.destination)))?;
                let (flags, data) = tmpfs_options(options);
                mnt(Some(Path::new("tmpfs")), &target, Some("tmpfs"), flags, data.as_deref())?;
            }
        }
    }

    for (file, dest) in [
        (&etc.hostname, "/etc/hostname"),
        (&etc.hosts, "/etc/hosts"),
        (&etc.resolv_conf, "/etc/resolv.conf"),
    ] {
        if let Some(file) = file {
            bind(file, &resolve_in_root(rootfs, dest), false)?;
        }
    }

    chdir(rootfs).map_err(|e| SetupError::setup(format!("chdir to the root filesystem: {e}")))?;
    // pivot_root(".", ".") stacks the old root under the new one; unmounting "." then drops it.
    pivot_root(".", ".").map_err(|e| SetupError::setup(format!("pivot_root: {e}")))?;
    umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| SetupError::setup(format!("unmounting the old root: {e}")))?;
    chdir("/").map_err(|e| SetupError::setup(format!("chdir /: {e}")))?;

    for path in &spec.masked_paths {
        mask(Path::new(path))?;
    }
    for path in &spec.readonly_paths {
        let path = Path::new(path);
        if path.exists() {
            // After pivot_root "/" is the container's root, so the kernel's own resolution is
            // already confined.
            mnt(Some(path), path, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
            remount_readonly(path)?;
        }
    }
    sethostname(&spec.hostname).map_err(|e| SetupError::setup(format!("sethostname: {e}")))?;
    // The working directory is created as root, before the root may turn read-only.
    let cwd = Path::new(&spec.cwd);
    if !cwd.exists() {
        fs::create_dir_all(cwd)
            .map_err(|e| SetupError::setup(format!("creating the working directory {}: {e}", spec.cwd)))?;
    }
    if spec.read_only_rootfs {
        remount_readonly(Path::new("/"))?;
    }
    Ok(())
}

fn become_process(p: &ProcessConfig<'_>, create_cwd: bool) -> Result<(), SetupError> {
    use caps::{CapSet, Capability, CapsHashSet};

    let mut keep = CapsHashSet::new();
    for name in p.capabilities {
        let cap: Capability = name
            .parse()
            .map_err(|_| SetupError::setup(format!("unknown capability {name}")))?;
        keep.insert(cap);
    }
    // Keep the permitted set across setuid; the bounding set is narrowed while CAP_SETPCAP is
    // still held.
    nix::sys::prctl::set_keepcaps(true).map_err(|e| SetupError::setup(format!("PR_SET_KEEPCAPS: {e}")))?;
    for cap in caps::all() {
        if !keep.contains(&cap) {
            // Capabilities this kernel does not know cannot be dropped, nor held.
            let _ = caps::drop(None, CapSet::Bounding, cap);
        }
    }
    let groups: Vec<Gid> = p.additional_gids.iter().map(|g| Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&groups).map_err(|e| SetupError::setup(format!("setgroups: {e}")))?;
    nix::unistd::setresgid(Gid::from_raw(p.gid), Gid::from_raw(p.gid), Gid::from_raw(p.gid))
        .map_err(|e| SetupError::setup(format!("setgid {}: {e}", p.gid)))?;
    nix::unistd::setresuid(Uid::from_raw(p.uid), Uid::from_raw(p.uid), Uid::from_raw(p.uid))
        .map_err(|e| SetupError::setup(format!("setuid {}: {e}", p.uid)))?;
    for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable] {
        caps::set(None, set, &keep).map_err(|e| SetupError::setup(format!("setting capabilities: {e}")))?;
    }
    let _ = caps::clear(None, CapSet::Ambient);
    if p.no_new_privileges {
        nix::sys::prctl::set_no_new_privs().map_err(|e| SetupError::setup(format!("PR_SET_NO_NEW_PRIVS: {e}")))?;
    }
    let cwd = if p.cwd.is_empty() { "/" } else { p.cwd };
    if create_cwd && !Path::new(cwd).exists() {
        let _ = fs::create_dir_all(cwd);
    }
    chdir(cwd).map_err(|e| SetupError::setup(format!("chdir to cwd (\"{cwd}\") set in config.json failed: {e}")))?;
    reset_signals();
    Ok(())
}

/// Signal dispositions and the mask survive exec; the command must start with the defaults
/// (Rust's runtime in the monitor ignores SIGPIPE, for one).
fn reset_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for signal in Signal::iterator() {
        if signal != Signal::SIGKILL && signal != Signal::SIGSTOP {
            // SAFETY: installing SIG_DFL runs no code of ours in a signal context.
            let _ = unsafe { sigaction(signal, &default) };
        }
    }
    let _ = nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// execve with execvp's PATH search (taken from the container's environment, not ours).
fn execute(args: &[String], env: &[String]) -> SetupError {
    let Some(program) = args.first() else {
        return SetupError::setup("no command specified");
    };
    let to_c = |s: &String| CString::new(s.as_bytes()).map_err(|_| SetupError::setup(format!("argument contains a NUL byte: {s:?}")));
    let argv: Vec<CString> = match args.iter().map(to_c).collect() {
        Ok(v) => v,
        Err(e) => return e,
    };
    let envp: Vec<CString> = match env.iter().map(to_c).collect() {
        Ok(v) => v,
        Err(e) => return e,
    };
    if program.contains('/') {
        let Ok(path) = CString::new(program.as_bytes()) else {
            return SetupError::setup("command contains a NUL byte");
        };
        let error = nix::unistd::execve(&path, &argv, &envp).err();
        return match error {
            Some(nix::errno::Errno::ENOENT) => SetupError {
                code: 127,
                message: format!("exec: \"{program}\": stat {program}: no such file or directory"),
            },
            Some(e) => SetupError { code: 126, message: format!("exec: \"{program}\": {}", errno_text(e)) },
            None => SetupError::setup("execve returned"),
        };
    }
    let path_var = env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let mut denied = None;
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = format!("{dir}/{program}");
        let Ok(c_candidate) = CString::new(candidate.as_bytes()) else { continue };
        match nix::unistd::execve(&c_candidate, &argv, &envp) {
            Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::ENOTDIR) => continue,
            Err(e) => {
                denied.get_or_insert(e);
            }
            Ok(never) => match never {},
        }
    }
    match denied {
        Some(e) => SetupError { code: 126, message: format!("exec: \"{program}\": {}", errno_text(e)) },
        None => SetupError {
            code: 127,
            message: format!("exec: \"{program}\": executable file not found in $PATH"),
        },
    }
}

fn errno_text(e: nix::errno::Errno) -> String {
    e.desc().to_lowercase()
}

/// Marks every descriptor from `first` on close-on-exec.
pub fn mark_fds_cloexec(first: i32) {
    for fd in open_fds() {
        if fd >= first {
            // SAFETY: F_SETFD on a descriptor number; a stale one just fails with EBADF.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
}

/// The descriptors open in this process (listed before acting, as the listing opens one too).
pub fn open_fds() -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc/self/fd") else { return Vec::new() };
    entries.flatten().filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok())).collect()
}

fn mnt(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), SetupError> {
    mount(source, target, fstype, flags, data).map_err(|e| {
        SetupError::setup(format!(
            "mounting {} on {}: {e}",
            source.map(|s| s.display().to_string()).unwrap_or_default(),
            target.display()
        ))
    })
}

fn remount_readonly(target: &Path) -> Result<(), SetupError> {
    mnt(
        None,
        target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC,
        None,
    )
}

/// The directory `path` (absolute, container view) under `rootfs`, created when missing.
fn dir_in(rootfs: &Path, path: &str) -> Result<PathBuf, SetupError> {
    let dir = resolve_in_root(rootfs, path);
    fs::create_dir_all(&dir).map_err(|e| SetupError::setup(format!("creating {path}: {e}")))?;
    Ok(dir)
}

/// The host path of container path `path`, following symlinks as the container would see them:
/// an image's symlink (`/etc/resolv.conf -> /run/...`, or a hostile `/data -> /etc`) never
/// leads a mount outside `rootfs`.
pub fn resolve_in_root(rootfs: &Path, path: &str) -> PathBuf {
    use std::path::Component;
    let mut resolved = PathBuf::new();
    let mut pending: Vec<std::ffi::OsString> =
        Path::new(path).components().rev().filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        }).collect();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = rootfs.join(&resolved).join(&part);
        match fs::read_link(&candidate) {
            Ok(target) if hops < 255 => {
                hops += 1;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => pending.push(n.to_os_string()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            }
            _ => resolved.push(&part),
        }
    }
    rootfs.join(resolved)
}

fn touch(path: &Path) -> Result<(), SetupError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| SetupError::setup(format!("creating {}: {e}", parent.display())))?;
    }
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(path)
        .map(drop)
        .map_err(|e| SetupError::setup(format!("creating {}: {e}", path.display())))
}

fn bind(source: &Path, target: &Path, readonly: bool) -> Result<(), SetupError> {
    let meta = fs::metadata(source)
        .map_err(|e| SetupError::setup(format!("bind source path {} does not exist: {e}", source.display())))?;
    if meta.is_dir() {
        fs::create_dir_all(target).map_err(|e| SetupError::setup(format!("creating {}: {e}", target.display())))?;
    } else if !target.exists() {
        touch(target)?;
    }
    mnt(Some(source), target, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
    if readonly {
        remount_readonly(target)?;
    }
    Ok(())
}

/// Hides a path: /dev/null over a file, an empty read-only tmpfs over a directory.
fn mask(path: &Path) -> Result<(), SetupError> {
    let Ok(meta) = fs::symlink_metadata(path) else { return Ok(()) };
    if meta.is_dir() {
        mnt(Some(Path::new("tmpfs")), path, Some("tmpfs"), MsFlags::MS_RDONLY, None)
    } else {
        mnt(Some(Path::new("/dev/null")), path, None, MsFlags::MS_BIND, None)
    }
}

/// Brings up `lo` in a fresh network namespace, as docker's `none` network has it.
/// Enters the network namespace bind-mounted at `path` (the monitor cloned this process without
/// CLONE_NEWNET for this mode, so it starts in the host's).
fn join_netns(path: &Path) -> Result<(), SetupError> {
    let file = fs::File::open(path)
        .map_err(|e| SetupError::setup(format!("opening the network namespace {}: {e}", path.display())))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| SetupError::setup(format!("joining the network namespace {}: {e}", path.display())))
}

fn loopback_up() -> Result<(), SetupError> {
    // SAFETY: plain socket/ioctl calls on a zeroed ifreq we own; the fd is closed below.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(SetupError::setup(format!("socket: {}", std::io::Error::last_os_error())));
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
            return Err(SetupError::setup(format!("bringing up the loopback interface: {error}")));
        }
    }
    Ok(())
}

/// Splits mount options into flags (`noexec`, `ro`, ...) and the tmpfs data (`size=64m`).
fn tmpfs_options(options: &[String]) -> (MsFlags, Option<String>) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for option in options {
        match option.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => flags &= !MsFlags::MS_RDONLY,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "exec" => flags &= !MsFlags::MS_NOEXEC,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "suid" => flags &= !MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "dev" => flags &= !MsFlags::MS_NODEV,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            "async" => flags &= !MsFlags::MS_SYNCHRONOUS,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "nodiratime" => flags |= MsFlags::MS_NODIRATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            other => data.push(other.to_string()),
        }
    }
    (flags, (!data.is_empty()).then(|| data.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("run/real")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("data")).unwrap();
        std::os::unix::fs::symlink("../run/real", root.join("rel")).unwrap();
        std::os::unix::fs::symlink("/../../..", root.join("up")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert_eq!(resolve_in_root(root, "/data/x"), root.join("etc/x"));
        assert_eq!(resolve_in_root(root, "/rel/file"), root.join("run/real/file"));
        assert_eq!(resolve_in_root(root, "/up/etc"), root.join("etc"));
        assert_eq!(resolve_in_root(root, "/../../x"), root.join("x"));
        assert!(resolve_in_root(root, "/loop").starts_with(root));
    }
}
