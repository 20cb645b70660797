//! The monitor: one small, single-threaded process per running container
//! (`flotilla-monitor ROOT ID`). It puts itself in the background, creates the container's
//! cgroup, clones the container's init process into new namespaces (the init process is the
//! command itself, PID 1 inside), relays its stdout and stderr into `container.log`, and records
//! its exit (`exit.json`, `state.json`). The process that started it learns on a pipe whether
//! the command started (and later how it exited).
//!
//! It stays free of threads and async runtimes: `clone` and `fork` are only sound in a
//! single-threaded process, and one process per container must cost little memory.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use jiff::Timestamp;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::logs::{LogWriter, Stream};
use super::state::{self, ContainerState, ExitRecord, Status};
use super::{remove_files, MonitorEvent};
use crate::cgroups::Cgroup;
use crate::spec::NetworkMode;

/// Environment variable naming the inherited fd on which the monitor reports [`MonitorEvent`]s.
pub const EVENTS_FD_ENV: &str = "FLOTILLA_EVENTS_FD";
/// Set when the monitor's stdin is the caller's, to be handed to the container (`run -i`).
pub const ATTACH_STDIN_ENV: &str = "FLOTILLA_ATTACH_STDIN";
/// The caller's terminal size (`ROWSxCOLS`) for a container with a terminal.
pub const TTY_SIZE_ENV: &str = "FLOTILLA_TTY_SIZE";
/// The JSON [`super::ExecOptions`] of `flotilla-monitor --exec`.
pub const EXEC_REQUEST_ENV: &str = "FLOTILLA_EXEC";

/// The monitor's entry point; returns the monitor's own exit status.
pub fn monitor_main(root: &Path, id: &str) -> i32 {
    // SAFETY: the monitor is single-threaded, so the child may do anything after fork.
    match unsafe { nix::unistd::fork() } {
        // The starter reaps this process at once; the child carries on, adopted by init.
        Ok(nix::unistd::ForkResult::Parent { .. }) => return 0,
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(_) => return 1,
    }
    let _ = nix::unistd::setsid();
    let mut events = take_events_fd();
    // Whatever else the starter left open (its callers' pipes) would stay open as long as the
    // container runs, and keep readers of those pipes waiting.
    let keep = events.as_ref().map(|f| f.as_raw_fd());
    for fd in super::setup::open_fds() {
        if fd > 2 && Some(fd) != keep {
            // SAFETY: closes an inherited descriptor nothing in this process owns yet.
            unsafe { libc::close(fd) };
        }
    }
    let dir = root.join("containers").join(id);
    match run(root, id, &dir, &mut events) {
        Ok(()) => 0,
        Err(message) => {
            // A failure before the command ran: docker reports it as exit code 125.
            if let Ok(mut st) = state::load(&dir) {
                st.status = Status::Exited;
                st.exit_code = 125;
                st.pid = 0;
                st.error = message.clone();
                st.finished_at = Some(Timestamp::now());
                let _ = state::save(&dir, &st);
            }
            send(&mut events, &MonitorEvent::Failed { code: 125, message });
            1
        }
    }
}

fn run(root: &Path, id: &str, dir: &Path, events: &mut Option<fs::File>) -> Result<(), String> {
    let mut st = state::load(dir).map_err(|e| e.to_string())?;
    let me = std::process::id() as i32;
    write_file(&dir.join("monitor.pid"), format!("{me}\n").as_bytes())?;
    st.monitor_pid = me;
    state::save(dir, &st).map_err(|e| e.to_string())?;

    let etc = write_etc_files(dir, &st)?;
    let driver = Cgroup::detect().map_err(|e| e.to_string())?;
    if let Ok(stale) = Cgroup::open(&driver, id) {
        stale.remove().map_err(|e| e.to_string())?;
    }
    let cgroup = Cgroup::create(&driver, id, &st.spec.resources).map_err(|e| e.to_string())?;
    let netns = crate::network::docker::netns_path(root, id);
    let ran = start_and_relay(dir, &mut st, &cgroup, &etc, &netns, events);
    // Before the exit is recorded, so whoever waits for it finds the network gone too.
    if let NetworkMode::Network(_) = &st.spec.network {
        if let Err(error) = crate::network::docker::disconnect(root, id) {
            tracing::warn!(%id, %error, "cannot disconnect the container from its network");
        }
    }
    match ran {
        Ok(exit) => finish(root, dir, id, cgroup, exit, events),
        Err(message) => {
            let _ = cgroup.remove();
            Err(message)
        }
    }
}

/// How the init process ended.
enum Exit {
    /// It ran; its exit status (or 128 + signal).
    Ran(i32),
    /// It could not be started: docker's code and the reason.
    NotStarted(i32, String),
}

fn start_and_relay(
    dir: &Path,
    st: &mut ContainerState,
    cgroup: &Cgroup,
    etc: &super::setup::EtcFiles,
    netns: &Path,
    events: &mut Option<fs::File>,
) -> Result<Exit, String> {
    let mut log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("container.log"))
        .map_err(|e| format!("opening {}: {e}", dir.join("container.log").display()))?;
    let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
    let pipe = || nix::unistd::pipe2(cloexec).map_err(|e| format!("creating a pipe: {e}"));
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (fail_r, fail_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    // `-i` without an attached caller: a pipe nobody writes keeps stdin open, as docker's -d -i.
    let attached = std::env::var_os(ATTACH_STDIN_ENV).is_some();
    let held_stdin = if st.interactive && !attached { Some(pipe()?) } else { None };
    let stdin_fd: RawFd = held_stdin.as_ref().map_or(0, |(r, _)| r.as_raw_fd());

    let rootfs = dir.join("rootfs");
    let mut spec = st.spec.clone();
    if let NetworkMode::Network(_) = &spec.network {
        // The runtime connected the container's namespace before starting this monitor.
        spec.network = NetworkMode::Join(netns.to_path_buf());
    }
    let spec_tty = spec.tty;
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    if spec.network == NetworkMode::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    // `-t`: the command gets a terminal, which its init opens in the container's devpts and
    // passes back on this socket; its output (stdout and stderr alike) comes out of the master
    // side, and an attached caller's input goes in there.
    let console_pair = if spec.tty {
        Some(std::os::unix::net::UnixStream::pair().map_err(|e| format!("creating the console socket: {e}"))?)
    } else {
        None
    };
    let console = console_pair.as_ref().map(|(_, theirs)| super::console::Console {
        socket: theirs.as_raw_fd(),
        size: std::env::var(TTY_SIZE_ENV).ok().and_then(|v| super::console::parse_size(&v)),
    });
    let (out_wr, err_wr, fail_wr, go_rd) = (out_w.as_raw_fd(), err_w.as_raw_fd(), fail_w.as_raw_fd(), go_r.as_raw_fd());
    let child = Box::new(move || -> isize {
        // Wait until the monitor has put us in the cgroup, so nothing runs unlimited.
        let mut byte = [0u8; 1];
        // SAFETY: reads into a local buffer from an fd this process owns.
        unsafe { libc::read(go_rd, byte.as_mut_ptr().cast(), 1) };
        let _ = nix::unistd::setsid();
        // A terminal replaces the standard fds once it exists, inside the container.
        if console.is_none() {
            // SAFETY: dup2 onto the standard fds; the sources stay open until exec.
            unsafe {
                libc::dup2(stdin_fd, 0);
                libc::dup2(out_wr, 1);
                libc::dup2(err_wr, 2);
            }
        }
        let error = super::setup::init_container(&spec, &rootfs, etc, console.as_ref());
        let message = format!("{} {}", error.code, error.message);
        // SAFETY: writes a local buffer to the failure pipe, then ends the child without
        // running the monitor's destructors.
        unsafe {
            libc::write(fail_wr, message.as_ptr().cast(), message.len());
            libc::_exit(error.code);
        }
    });
    // The child only touches the pages it uses: most of this stack is never made resident.
    let mut stack = vec![0u8; 1 << 20];
    // SAFETY: the monitor is single-threaded; the child gets a copy of its memory (no CLONE_VM).
    let pid = unsafe { nix::sched::clone(child, &mut stack, flags, Some(libc::SIGCHLD)) }
        .map_err(|e| format!("creating the container's namespaces: {e}"))?;
    drop((out_w, err_w, fail_w, go_r));
    // Only the init's copy of its end may remain, so a failed init is seen as end of file.
    let console_ours = console_pair.map(|(ours, theirs)| {
        drop(theirs);
        ours
    });
    // Only the write end stays here, unused, so the container's stdin never reaches EOF.
    let held_stdin = held_stdin.map(|(r, w)| {
        drop(r);
        w
    });

    if let Err(error) = cgroup.add_process(pid.as_raw()) {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(pid, None);
        return Err(error.to_string());
    }
    let _ = nix::unistd::write(&go_w, b"g");
    drop(go_w);
    let pty_master = match &console_ours {
        Some(socket) => match super::console::recv_fd(socket.as_raw_fd()) {
            Ok(master) => master,
            Err(error) => {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = waitpid(pid, None);
                return Err(format!("receiving the container's terminal: {error}"));
            }
        },
        None => None,
    };
    drop(console_ours);
    let mut failure = String::new();
    let _ = fs::File::from(fail_r).read_to_string(&mut failure);
    if !failure.is_empty() {
        let status = wait_exit(pid);
        let (code, message) = failure.split_once(' ').unwrap_or(("125", failure.as_str()));
        let code = code.parse().unwrap_or(status);
        return Ok(Exit::NotStarted(code, message.to_string()));
    }

    if spec_tty && pty_master.is_none() {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(pid, None);
        return Err("the container's init started without passing back its terminal".into());
    }

    st.pid = pid.as_raw();
    st.pid_start_time = super::process_start_time(pid.as_raw()).map_or(0, |(t, _)| t);
    st.status = Status::Running;
    st.started_at = Some(Timestamp::now());
    st.finished_at = None;
    state::save(dir, st).map_err(|e| e.to_string())?;
    send(events, &MonitorEvent::Started);

    match pty_master {
        Some(master) => {
            drop((out_r, err_r));
            relay_tty(master, attached, &mut log);
        }
        None => relay(out_r, err_r, &mut log),
    }
    drop(held_stdin);
    Ok(Exit::Ran(wait_exit(pid)))
}

/// Copies the container's output into the log until both pipes close (when the last process
/// of the PID namespace is gone).
fn relay(out: OwnedFd, err: OwnedFd, log: &mut fs::File) {
    let mut writer = LogWriter::new();
    let mut open = [Some(out), Some(err)];
    let mut buf = vec![0u8; 32 * 1024];
    while open.iter().any(Option::is_some) {
        let streams: Vec<(usize, &OwnedFd)> =
            open.iter().enumerate().filter_map(|(i, fd)| fd.as_ref().map(|fd| (i, fd))).collect();
        let mut fds: Vec<PollFd<'_>> = streams.iter().map(|(_, fd)| PollFd::new(fd.as_fd(), PollFlags::POLLIN)).collect();
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let ready: Vec<(usize, bool)> = fds
            .iter()
            .zip(&streams)
            .map(|(p, (i, _))| (*i, p.revents().is_some_and(|r| !r.is_empty())))
            .collect();
        drop(fds);
        for (i, is_ready) in ready {
            if !is_ready {
                continue;
            }
            let stream = if i == 0 { Stream::Stdout } else { Stream::Stderr };
            let n = match open[i].as_ref().map(|fd| nix::unistd::read(fd, &mut buf)) {
                Some(Ok(n)) => n,
                Some(Err(nix::errno::Errno::EINTR)) | Some(Err(nix::errno::Errno::EAGAIN)) => continue,
                _ => 0,
            };
            if n == 0 {
                open[i] = None;
                let _ = writer.finish(log, stream);
            } else {
                // A full disk loses log lines but must not stop the container.
                let _ = writer.write(log, stream, &buf[..n]);
            }
        }
    }
}

/// Copies the terminal's output into the log (as stdout, as docker does) and the attached
/// caller's input into the terminal, until the last process holding the terminal is gone.
fn relay_tty(master: OwnedFd, attached: bool, log: &mut fs::File) {
    let mut writer = LogWriter::new();
    let mut buf = vec![0u8; 32 * 1024];
    let stdin = std::io::stdin();
    let mut stdin_open = attached;
    loop {
        let mut fds = vec![PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let ready: Vec<bool> = fds.iter().map(|p| p.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        if ready[0] {
            match nix::unistd::read(&master, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let _ = writer.write(log, Stream::Stdout, &buf[..n]);
                }
                Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
                // EIO: every process holding the terminal has closed it.
                Err(_) => break,
            }
        }
        if ready.get(1).copied().unwrap_or(false) {
            match nix::unistd::read(&stdin, &mut buf) {
                Ok(0) | Err(nix::errno::Errno::EIO) | Err(nix::errno::Errno::EBADF) => stdin_open = false,
                Ok(n) => {
                    let _ = write_all_fd(&master, &buf[..n]);
                }
                Err(_) => {}
            }
        }
    }
    let _ = writer.finish(log, Stream::Stdout);
}

fn write_all_fd(fd: &OwnedFd, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn finish(
    root: &Path,
    dir: &Path,
    id: &str,
    cgroup: Cgroup,
    exit: Exit,
    events: &mut Option<fs::File>,
) -> Result<(), String> {
    let oom_killed = cgroup.oom_killed().unwrap_or(false);
    if let Err(error) = cgroup.remove() {
        tracing::warn!(%id, %error, "cannot remove the container's cgroup");
    }
    let finished_at = Timestamp::now();
    let (exit_code, failure) = match exit {
        Exit::Ran(code) => (code, None),
        Exit::NotStarted(code, message) => (code, Some(message)),
    };
    let record = ExitRecord { exit_code, oom_killed, finished_at };
    state::write_json_atomic(&dir.join("exit.json"), &record).map_err(|e| e.to_string())?;
    let mut st = state::load(dir).map_err(|e| e.to_string())?;
    if st.status != Status::Removing {
        st.status = Status::Exited;
    }
    st.pid = 0;
    st.exit_code = exit_code;
    st.oom_killed = oom_killed;
    st.finished_at = Some(finished_at);
    st.error = failure.clone().unwrap_or_default();
    state::save(dir, &st).map_err(|e| e.to_string())?;
    // `--rm` is done before the exit is reported, so `run --rm` returns with nothing left.
    let removed = if st.auto_remove && st.status != Status::Removing {
        remove_files(root, id, Some(&st.name)).map_err(|e| e.to_string())
    } else {
        Ok(())
    };
    match failure {
        Some(message) => send(events, &MonitorEvent::Failed { code: exit_code, message }),
        None => send(events, &MonitorEvent::Exited { exit_code }),
    }
    removed
}

fn wait_exit(pid: Pid) -> i32 {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, signal, _)) => return 128 + signal as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}

/// The events fd named in the environment, made close-on-exec so the container never holds it.
fn take_events_fd() -> Option<fs::File> {
    let fd: RawFd = std::env::var(EVENTS_FD_ENV).ok()?.parse().ok()?;
    // SAFETY: F_GETFD only inspects the fd table; a closed fd yields -1.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the starter passed this fd to us alone; we take ownership of it here, once.
    let file = unsafe { fs::File::from_raw_fd(fd) };
    // SAFETY: sets FD_CLOEXEC on an fd we own.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Some(file)
}

fn send(events: &mut Option<fs::File>, event: &MonitorEvent) {
    let Some(file) = events.as_mut() else { return };
    let Ok(mut line) = serde_json::to_vec(event) else { return };
    line.push(b'\n');
    // The starter may be gone (`run -d`, a killed ctl): then nobody listens, and that is fine.
    if file.write_all(&line).is_err() {
        *events = None;
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    fs::write(path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Writes the files bind-mounted over /etc/hostname, /etc/hosts and /etc/resolv.conf.
fn write_etc_files(dir: &Path, st: &ContainerState) -> Result<super::setup::EtcFiles, String> {
    let etc = super::setup::EtcFiles {
        hostname: dir.join("hostname"),
        hosts: dir.join("hosts"),
        resolv_conf: dir.join("resolv.conf"),
    };
    write_file(&etc.hostname, format!("{}\n", st.spec.hostname).as_bytes())?;
    let hosts = match st.spec.network {
        NetworkMode::Host => fs::read_to_string("/etc/hosts").unwrap_or_default(),
        NetworkMode::None | NetworkMode::Join(_) => format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.0.1\t{}\n",
            st.spec.hostname
        ),
        // Written (and kept up to date) by the network code, which connected the container.
        NetworkMode::Network(_) => return Ok(etc),
    };
    write_file(&etc.hosts, hosts.as_bytes())?;
    // Without a network nothing can be resolved anyway; the host's file keeps search domains.
    let resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    write_file(&etc.resolv_conf, resolv.as_bytes())?;
    Ok(etc)
}
