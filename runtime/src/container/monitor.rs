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
use super::state::{self, ContainerState, Durability, ExitRecord, Status};
use super::{remove_exited_files, remove_files, MonitorEvent};
use crate::cgroups::Cgroup;
use crate::spec::NetworkMode;

/// Environment variable naming the inherited fd on which the monitor reports [`MonitorEvent`]s.
pub const EVENTS_FD_ENV: &str = "FLOTILLA_EVENTS_FD";
/// Environment variable naming the inherited fd on which the monitor writes a byte whenever it
/// appended the container's output to the log, so a caller following the log (`run` in the
/// foreground) sleeps until there is something to read. A wake-up pipe rather than inotify:
/// closing an inotify instance waits for an RCU grace period (~14 ms measured), which would
/// delay every `run --rm` by as much at exit.
pub const OUTPUT_FD_ENV: &str = "FLOTILLA_OUTPUT_FD";
/// Set when the monitor's stdin is the caller's, to be handed to the container (`run -i`).
pub const ATTACH_STDIN_ENV: &str = "FLOTILLA_ATTACH_STDIN";
/// The caller's terminal size (`ROWSxCOLS`) for a container with a terminal.
pub const TTY_SIZE_ENV: &str = "FLOTILLA_TTY_SIZE";
/// The JSON [`super::ExecOptions`] of `flotilla-monitor --exec`.
pub const EXEC_REQUEST_ENV: &str = "FLOTILLA_EXEC";
/// The inherited fd from which an exec with a terminal reads window sizes, one `ROWSxCOLS` per
/// line, when the caller's streams are not a terminal (the node agent relaying `kubectl exec
/// -t`, whose resize messages arrive over the network).
pub const EXEC_RESIZE_FD_ENV: &str = "FLOTILLA_EXEC_RESIZE_FD";

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
    let mut events = take_inherited_fd(EVENTS_FD_ENV);
    let mut output = Wakeups(take_inherited_fd(OUTPUT_FD_ENV));
    if let Some(file) = &output.0 {
        // A full pipe means the reader has wake-ups pending already: never block on it.
        // SAFETY: F_SETFL on a descriptor this process owns.
        unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    }
    // Whatever else the starter left open (its callers' pipes) would stay open as long as the
    // container runs, and keep readers of those pipes waiting.
    let keep = [events.as_ref().map(|f| f.as_raw_fd()), output.0.as_ref().map(|f| f.as_raw_fd())];
    for fd in super::setup::open_fds() {
        if fd > 2 && !keep.contains(&Some(fd)) {
            // SAFETY: closes an inherited descriptor nothing in this process owns yet.
            unsafe { libc::close(fd) };
        }
    }
    let dir = root.join("containers").join(id);
    match run(root, id, &dir, &mut events, &mut output) {
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

fn run(root: &Path, id: &str, dir: &Path, events: &mut Option<fs::File>, output: &mut Wakeups) -> Result<(), String> {
    let mut st = state::load(dir).map_err(|e| e.to_string())?;
    let me = std::process::id() as i32;
    // Recorded in state.json with `running` (one write fewer: replacing state.json costs a
    // block allocation on ext4); readers only look at it in that status.
    st.monitor_pid = me;

    let etc = write_etc_files(dir, &st)?;
    let driver = Cgroup::detect().map_err(|e| e.to_string())?;
    if let Ok(stale) = Cgroup::open(&driver, id) {
        stale.remove().map_err(|e| e.to_string())?;
    }
    let cgroup = Cgroup::create(&driver, id, &st.spec.resources).map_err(|e| e.to_string())?;
    let netns = crate::network::docker::netns_path(root, id);
    let ran = start_and_relay(dir, &mut st, &cgroup, &etc, &netns, events, output);
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
    output: &mut Wakeups,
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
    // The init moves itself into the cgroup before anything else, so nothing runs unlimited
    // (see `cgroups::join_self` for why not by pid from here).
    let join_files = cgroup.open_join_files().map_err(|e| e.to_string())?;
    let join_fds: Vec<RawFd> = join_files.iter().map(AsRawFd::as_raw_fd).collect();
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
    let (out_wr, err_wr, fail_wr) = (out_w.as_raw_fd(), err_w.as_raw_fd(), fail_w.as_raw_fd());
    let child = Box::new(move || -> isize {
        if let Err(errno) = crate::cgroups::join_self(&join_fds) {
            let message = format!("125 joining the container's cgroup: {errno}");
            // SAFETY: writes a local buffer to the failure pipe, then ends the child without
            // running the monitor's destructors.
            unsafe {
                libc::write(fail_wr, message.as_ptr().cast(), message.len());
                libc::_exit(125);
            }
        }
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
    drop((out_w, err_w, fail_w, join_files));
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
    // Unsynced: pids and `running` belong to this boot, and recovery rewrites them after a
    // reboot.
    state::save_with(dir, st, Durability::Unsynced).map_err(|e| e.to_string())?;
    send(events, &MonitorEvent::Started);
    release_setup_code();

    match pty_master {
        Some(master) => {
            drop((out_r, err_r));
            relay_tty(master, attached, &mut log, output);
        }
        None => relay(out_r, err_r, &mut log, output),
    }
    drop(held_stdin);
    Ok(Exit::Ran(wait_exit(pid)))
}

/// Copies the container's output into the log until both pipes close (when the last process
/// of the PID namespace is gone).
fn relay(out: OwnedFd, err: OwnedFd, log: &mut fs::File, output: &mut Wakeups) {
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
                output.ping();
            } else {
                // A full disk loses log lines but must not stop the container.
                let _ = writer.write(log, stream, &buf[..n]);
                output.ping();
            }
        }
    }
}

/// Copies the terminal's output into the log (as stdout, as docker does) and the attached
/// caller's input into the terminal, until the last process holding the terminal is gone.
fn relay_tty(master: OwnedFd, attached: bool, log: &mut fs::File, output: &mut Wakeups) {
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
                    output.ping();
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
    output.ping();
}

/// Unmaps the program code the set-up ran (the monitor's and libc's executable pages), now that
/// the monitor settles into relaying output for the container's whole life: set-up touches code
/// all over a large binary (JSON, cgroups, namespaces, mounts), and each page it touched, with
/// its neighbours mapped along by the kernel's fault-around, would otherwise stay in the resident
/// set (measured: 2.5 MiB RSS, 1.6 MiB of it the binary's code, against a target of under 2 MiB
/// for an idle monitor). The relay loop faults back in the few pages it runs.
///
/// Only executable file mappings are released: their pages are never written, so dropping them
/// loses nothing and a later access reads the same bytes from the page cache. (Writable and
/// relocated mappings hold private copies and are left alone.)
fn release_setup_code() {
    let Ok(maps) = fs::read_to_string("/proc/self/maps") else { return };
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms), Some(_offset), Some(_dev), Some(inode), Some(path)) =
            (fields.next(), fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        // r-xp: private, executable, not writable; a file (inode) rather than [vdso] and the like
        if perms != "r-xp" || inode == "0" || !path.starts_with('/') {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) else { continue };
        // SAFETY: the range is an executable, never-written file mapping of this process (from
        // its own maps); MADV_DONTNEED unmaps its pages, which refault unchanged from the file.
        unsafe { libc::madvise(start as *mut libc::c_void, end.saturating_sub(start), libc::MADV_DONTNEED) };
    }
}

/// The caller's output wake-up pipe (see [`OUTPUT_FD_ENV`]), if it gave one.
struct Wakeups(Option<fs::File>);

impl Wakeups {
    /// Tells a reader of the log that there is more to read. Never blocks: a full pipe holds
    /// wake-ups enough; a reader that went away ends the wake-ups.
    fn ping(&mut self) {
        let Some(file) = self.0.as_mut() else { return };
        match file.write(b"o") {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => self.0 = None,
        }
    }
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
    let cgroup_removed = match cgroup.remove() {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%id, %error, "cannot remove the container's cgroup");
            false
        }
    };
    let finished_at = Timestamp::now();
    let (exit_code, failure) = match exit {
        Exit::Ran(code) => (code, None),
        Exit::NotStarted(code, message) => (code, Some(message)),
    };
    let mut st = state::load(dir).map_err(|e| e.to_string())?;
    // Only what a later boot needs is synced: the exit of a container that is kept. A `--rm`
    // container has no exit.json: it is gone once its exit is reported.
    let durability = Durability::for_container(st.auto_remove);
    if !st.auto_remove {
        let record = ExitRecord { exit_code, oom_killed, finished_at };
        state::write_json_atomic(&dir.join("exit.json"), &record, durability).map_err(|e| e.to_string())?;
    }
    if st.status != Status::Removing {
        st.status = Status::Exited;
    }
    st.pid = 0;
    st.exit_code = exit_code;
    st.oom_killed = oom_killed;
    st.finished_at = Some(finished_at);
    st.error = failure.clone().unwrap_or_default();
    state::save_with(dir, &st, durability).map_err(|e| e.to_string())?;
    // `--rm` is done before the exit is reported, so `run --rm` returns with nothing left: the
    // root unmounted and the container out of sight (moved to the trash, see
    // `remove_exited_files`), its files deleted right after the report. A container on a
    // network, or whose cgroup is still there, takes the full removal instead.
    let auto_remove = st.auto_remove && st.status != Status::Removing;
    let fast_remove = auto_remove && cgroup_removed && !matches!(st.spec.network, NetworkMode::Network(_));
    let mut trash = None;
    let removed = if fast_remove {
        remove_exited_files(root, id, &st.name).map(|t| trash = t).map_err(|e| e.to_string())
    } else if auto_remove {
        remove_files(root, id, Some(&st.name)).map_err(|e| e.to_string())
    } else {
        Ok(())
    };
    match failure {
        Some(message) => send(events, &MonitorEvent::Failed { code: exit_code, message }),
        None => send(events, &MonitorEvent::Exited { exit_code }),
    }
    if let Some(trash) = trash {
        if let Err(error) = fs::remove_dir_all(&trash) {
            // The next `Runtime::open` empties the trash.
            tracing::debug!(%id, %error, "cannot delete the removed container's files");
        }
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

/// The fd named in environment variable `var`, made close-on-exec so the container never
/// holds it.
fn take_inherited_fd(var: &str) -> Option<fs::File> {
    let fd: RawFd = std::env::var(var).ok()?.parse().ok()?;
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

/// Writes the files bind-mounted over /etc/hostname, /etc/hosts and /etc/resolv.conf, except
/// those the spec mounts something else over (the node agent's per-pod files, docker's
/// `-v f:/etc/hosts`): that mount wins, and on ext4 every file created costs an inode
/// allocation.
fn write_etc_files(dir: &Path, st: &ContainerState) -> Result<super::setup::EtcFiles, String> {
    let ours = |dest: &str, name: &str| {
        let mounted = st.spec.mounts.iter().any(|m| Path::new(&m.destination) == Path::new(dest));
        (!mounted).then(|| dir.join(name))
    };
    let etc = super::setup::EtcFiles {
        hostname: ours("/etc/hostname", "hostname"),
        hosts: ours("/etc/hosts", "hosts"),
        resolv_conf: ours("/etc/resolv.conf", "resolv.conf"),
    };
    if let Some(path) = &etc.hostname {
        write_file(path, format!("{}\n", st.spec.hostname).as_bytes())?;
    }
    let hosts = match st.spec.network {
        NetworkMode::Host => Some(fs::read_to_string("/etc/hosts").unwrap_or_default()),
        NetworkMode::None | NetworkMode::Join(_) => Some(format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.0.1\t{}\n",
            st.spec.hostname
        )),
        // Written (and kept up to date) by the network code, which connected the container.
        NetworkMode::Network(_) => None,
    };
    if let (Some(path), Some(hosts)) = (&etc.hosts, hosts) {
        write_file(path, hosts.as_bytes())?;
    }
    // Without a network nothing can be resolved anyway; the host's file keeps search domains.
    if let Some(path) = etc.resolv_conf.as_ref().filter(|_| !matches!(st.spec.network, NetworkMode::Network(_))) {
        let resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        write_file(path, resolv.as_bytes())?;
    }
    Ok(etc)
}
