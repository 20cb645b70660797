//! `exec`: runs a command in a running container (`flotilla-monitor --exec ROOT ID`, started
//! by [`super::Runtime::exec`] with the caller's standard streams). It joins the container's
//! cgroup and namespaces through /proc/PID/ns/*, forks so the command lands in the PID
//! namespace, and gives it the container's user, capabilities and no_new_privs. With `tty` the
//! command gets a terminal from the container's devpts (see [`super::console`]); this helper
//! then relays between it and the caller's streams, passing on the caller's window size (and
//! its changes), until the command exits.
//!
//! It is a separate single-threaded process because `setns` into a mount namespace is refused
//! to multi-threaded processes such as `ctl` or the node agent.

use std::collections::HashSet;
use std::fs;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::monitor::{EXEC_REQUEST_ENV, EXEC_RESIZE_FD_ENV};
use super::setup::{exec_process, ProcessConfig};
use super::state::{self, Status};
use super::ExecOptions;
use crate::cgroups::Cgroup;

/// The exec helper's entry point; returns the command's exit code (126/127 when it cannot be
/// executed, 125 when the container cannot be entered).
pub fn exec_main(root: &Path, id: &str) -> i32 {
    match enter_and_run(root, id) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("Error response from daemon: {message}");
            125
        }
    }
}

fn enter_and_run(root: &Path, id: &str) -> Result<i32, String> {
    let request: ExecOptions = serde_json::from_str(&std::env::var(EXEC_REQUEST_ENV).unwrap_or_default())
        .map_err(|e| format!("invalid exec request in ${EXEC_REQUEST_ENV}: {e}"))?;
    let resize = resize_source()?;
    let dir = root.join("containers").join(id);
    let st = state::load(&dir).map_err(|e| e.to_string())?;
    if st.status != Status::Running || !super::process_alive(st.pid, st.pid_start_time) {
        return Err(format!("container {id} is not running"));
    }
    if let Ok(driver) = Cgroup::detect() {
        if let Ok(cgroup) = Cgroup::open(&driver, id) {
            // By itself rather than by pid: much cheaper in v1 (see `cgroups::join_self`); this
            // helper is single-threaded.
            let files = cgroup.open_join_files().map_err(|e| e.to_string())?;
            let fds: Vec<i32> = files.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
            crate::cgroups::join_self(&fds).map_err(|e| format!("joining the container's cgroup: {e}"))?;
        }
    }
    // Open every namespace before entering any: once in the mount namespace, the host's /proc
    // is out of sight. The mount namespace goes last for the same reason.
    let kinds = [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ];
    let mut namespaces = Vec::new();
    for (name, flag) in kinds {
        let path = format!("/proc/{}/ns/{name}", st.pid);
        let file = fs::File::open(&path).map_err(|e| format!("opening {path}: {e}"))?;
        namespaces.push((name, flag, file));
    }
    for (name, flag, file) in &namespaces {
        setns(file, *flag).map_err(|e| format!("entering the container's {name} namespace: {e}"))?;
    }
    drop(namespaces);

    let mut env = st.spec.env.clone();
    let overridden: HashSet<&str> = request.env.iter().map(|kv| kv.split('=').next().unwrap_or(kv)).collect();
    env.retain(|kv| !overridden.contains(kv.split('=').next().unwrap_or(kv)));
    env.extend(request.env.iter().cloned());
    let cwd = request.workdir.clone().unwrap_or_else(|| st.spec.cwd.clone());
    let process = ProcessConfig {
        args: &request.args,
        env: &env,
        cwd: &cwd,
        uid: st.spec.uid,
        gid: st.spec.gid,
        additional_gids: &st.spec.additional_gids,
        capabilities: &st.spec.capabilities,
        no_new_privileges: st.spec.no_new_privileges,
    };
    // Inside the mount namespace now: /dev/pts is the container's.
    let terminal = if request.tty {
        Some(super::console::open_in_root(super::console::size_of_any(&[0, 1]).as_ref())?)
    } else {
        None
    };
    // A size the caller sent before the start is the terminal's from the first moment.
    let mut sizes = Vec::new();
    let mut resize = resize;
    if let (Some((master, _)), Some(fd)) = (&terminal, &resize) {
        if !drain_sizes(fd, master, &mut sizes) {
            resize = None;
        }
    }
    // Blocked before the fork so no child exit or resize is missed; the command gets an empty
    // mask back before it executes.
    let signals = match &terminal {
        Some(_) => Some(watch_signals()?),
        None => None,
    };
    // SAFETY: this helper is single-threaded, so the child may allocate after fork.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            if let Some((_, slave)) = &terminal {
                let _ = nix::unistd::setsid();
                if let Err(message) = super::console::make_controlling(slave) {
                    eprintln!("OCI runtime exec failed: {message}");
                    // SAFETY: ends the child without running the parent's destructors.
                    unsafe { libc::_exit(125) }
                }
            }
            let error = exec_process(&process, false);
            eprintln!("OCI runtime exec failed: exec failed: unable to start container process: {}: unknown", error.message);
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(error.code) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => match (terminal, signals) {
            (Some((master, slave)), Some(signals)) => {
                // The master must see end of file once the command's side is closed.
                drop(slave);
                relay_terminal(&master, request.interactive, child, &signals, resize, sizes)
            }
            _ => wait_for(child),
        },
        Err(e) => Err(format!("fork: {e}")),
    }
}

fn wait_for(child: Pid) -> Result<i32, String> {
    loop {
        match waitpid(child, None) {
            Ok(status) => {
                if let Some(code) = exit_code(status) {
                    return Ok(code);
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("waiting for the exec'd process: {e}")),
        }
    }
}

/// The descriptor named by `$FLOTILLA_EXEC_RESIZE_FD`, if any, made close-on-exec so the command
/// does not inherit it.
fn resize_source() -> Result<Option<OwnedFd>, String> {
    let Ok(text) = std::env::var(EXEC_RESIZE_FD_ENV) else { return Ok(None) };
    let fd: i32 = text.parse().map_err(|_| format!("${EXEC_RESIZE_FD_ENV} is not a descriptor number: {text:?}"))?;
    // SAFETY: F_SETFD on a number checks it is an open descriptor (EBADF otherwise); the
    // descriptor is read without blocking (sizes already sent are applied before the command
    // starts, see `drain_sizes`).
    if fd <= 2 || unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) } < 0 {
        return Err(format!("${EXEC_RESIZE_FD_ENV}={fd} is not an open descriptor"));
    }
    // SAFETY: an open descriptor handed to this process for it alone.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Reads the sizes waiting in `resize` and applies them to the terminal; false once the writer
/// closed it (or it failed).
fn drain_sizes(resize: &OwnedFd, master: &OwnedFd, pending: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match nix::unistd::read(resize, &mut buf) {
            Ok(0) => return false,
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                apply_sizes(master, pending);
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => return true,
            Err(_) => return false,
        }
    }
}

/// Applies every complete `ROWSxCOLS` line of `pending` to the terminal and keeps the rest.
fn apply_sizes(master: &OwnedFd, pending: &mut Vec<u8>) {
    while let Some(end) = pending.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = pending.drain(..=end).collect();
        if let Some(size) = std::str::from_utf8(&line).ok().and_then(|l| super::console::parse_size(l.trim())) {
            super::console::set_size(master, &size);
        }
    }
    // A line longer than any size is garbage: dropped, not buffered without end.
    if pending.len() > 64 {
        pending.clear();
    }
}

fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, signal, _) => Some(128 + signal as i32),
        _ => None,
    }
}

/// SIGCHLD (the command exited) and SIGWINCH (the caller's terminal was resized), blocked and
/// read from a signalfd, so the relay's poll sees them.
fn watch_signals() -> Result<SignalFd, String> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    set.add(Signal::SIGWINCH);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|e| format!("blocking signals: {e}"))?;
    SignalFd::with_flags(&set, nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK)
        .map_err(|e| format!("creating a signalfd: {e}"))
}

/// Copies the terminal's output to this process's stdout and (`interactive`) its stdin to the
/// terminal, follows the caller's window size (of its terminal, or the sizes read from
/// `resize`), and returns the command's exit code. Output still buffered when the command
/// exits is drained; a background process that keeps the terminal open does not hold the
/// caller.
fn relay_terminal(
    master: &OwnedFd,
    interactive: bool,
    child: Pid,
    signals: &SignalFd,
    mut resize: Option<OwnedFd>,
    mut sizes: Vec<u8>,
) -> Result<i32, String> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut stdin_open = interactive;
    let mut buf = vec![0u8; 32 * 1024];
    let mut exited = None;
    loop {
        let mut fds = vec![PollFd::new(master.as_fd(), PollFlags::POLLIN), PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        // Before stdin: a size sent ahead of input is applied before the command reads it.
        let resize_at = resize.as_ref().map(|fd| {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let stdin_at = stdin_open.then(|| {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let timeout = if exited.is_some() { PollTimeout::ZERO } else { PollTimeout::NONE };
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("waiting for terminal output: {e}")),
        }
        let ready: Vec<bool> = fds.iter().map(|p| p.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        if ready[0] {
            match nix::unistd::read(master, &mut buf) {
                // EIO: every process holding the command's side has closed it.
                Ok(0) | Err(nix::errno::Errno::EIO) => break,
                Ok(n) => {
                    // A caller that stopped reading loses output; the command must not block.
                    let _ = write_all(stdout.as_fd(), &buf[..n]);
                }
                Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
                Err(e) => return Err(format!("reading the terminal: {e}")),
            }
        } else if exited.is_some() {
            // The command is gone and nothing more is buffered.
            break;
        }
        if ready[1] {
            while let Ok(Some(info)) = signals.read_signal() {
                if info.ssi_signo == Signal::SIGWINCH as u32 {
                    if let Some(size) = super::console::size_of_any(&[0, 1]) {
                        super::console::set_size(master, &size);
                    }
                } else if exited.is_none() {
                    if let Ok(status) = waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                        exited = exit_code(status);
                    }
                }
            }
        }
        if let Some(fd) = resize_at.filter(|&i| ready[i]).and(resize.as_ref()) {
            if !drain_sizes(fd, master, &mut sizes) {
                resize = None;
            }
        }
        if stdin_at.is_some_and(|i| ready[i]) {
            match nix::unistd::read(&stdin, &mut buf) {
                Ok(0) => stdin_open = false,
                Ok(n) => {
                    if write_all(master.as_fd(), &buf[..n]).is_err() {
                        stdin_open = false;
                    }
                }
                Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
                Err(_) => stdin_open = false,
            }
        }
    }
    match exited {
        Some(code) => Ok(code),
        None => wait_for(child),
    }
}

fn write_all(fd: std::os::fd::BorrowedFd<'_>, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
