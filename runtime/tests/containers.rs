//! Containers run for real (as root): namespaces, PID 1, user and environment semantics, exit
//! codes, stop and kill, logs, exec, OOM kills, volumes, terminals, removal that leaves nothing
//! behind, and the clean-up of containers left by an earlier boot.

mod common;

use std::time::{Duration, Instant};

use common::{cgroup_dirs, mounts_under, Fixture, IMAGE};
use runtime::container::{ContainerError, ExecOptions, ExecStdio, Runtime, StartOptions, Status};
use runtime::spec::RunOptions;

fn cmd(args: &[&str]) -> RunOptions {
    RunOptions { cmd: args.iter().map(|s| s.to_string()).collect(), ..RunOptions::default() }
}

/// Runs a container to its end: (id, exit code, stdout, stderr).
fn run_to_end(fx: &Fixture, opts: RunOptions) -> (String, i32, String, String) {
    let id = fx.runtime.create(IMAGE, &opts).expect("create");
    fx.track(&id);
    let started = fx.runtime.start(&id, &StartOptions::default()).expect("start");
    let code = started.wait().expect("exit code from the monitor");
    assert_eq!(fx.runtime.wait(&id).expect("wait"), code);
    let (out, err) = fx.logs(&id);
    (id, code, out, err)
}

fn start_detached(fx: &Fixture, opts: RunOptions) -> String {
    let id = fx.runtime.create(IMAGE, &opts).expect("create");
    fx.track(&id);
    drop(fx.runtime.start(&id, &StartOptions::default()).expect("start"));
    id
}

#[test]
fn pid_one_is_the_command_and_namespaces_are_private() {
    let Some(fx) = Fixture::new("pid_one_is_the_command_and_namespaces_are_private") else { return };
    let (id, code, out, err) = run_to_end(&fx, cmd(&["sh", "-c", "echo $$; hostname; ps -o pid,comm | wc -l; cat /proc/net/dev | grep -c :"]));
    assert_eq!(code, 0, "stderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1", "{out}");
    assert_eq!(lines[1], &id[..12], "hostname is the short id");
    // Header + sh + ps + wc: nothing of the host is visible.
    let processes: usize = lines[2].trim().parse().expect("count");
    assert!(processes <= 4, "ps shows {processes} lines: host processes leak in");
    assert_eq!(lines[3], "1", "only lo in the private network namespace");
    let (_, _, out, _) = run_to_end(&fx, RunOptions { hostname: Some("web-1".into()), ..cmd(&["hostname"]) });
    assert_eq!(out.trim(), "web-1");
}

#[test]
fn env_workdir_user_and_entrypoint() {
    let Some(fx) = Fixture::new("env_workdir_user_and_entrypoint") else { return };
    let opts = RunOptions {
        env: vec!["GREETING=hello there".into()],
        workdir: Some("/work/dir".into()),
        user: Some("app".into()),
        ..cmd(&["sh", "-c", "echo \"$GREETING\"; pwd; id -u; id -g; echo $HOME"])
    };
    let (_, code, out, err) = run_to_end(&fx, opts);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "hello there\n/work/dir\n1000\n1000\n/home/app\n");

    let opts = RunOptions { user: Some("1234:5678".into()), ..cmd(&["id"]) };
    let (_, _, out, _) = run_to_end(&fx, opts);
    assert!(out.starts_with("uid=1234 gid=5678"), "{out}");

    let opts = RunOptions { entrypoint: Some(vec!["echo".into(), "from-entrypoint".into()]), ..cmd(&["arg"]) };
    let (_, _, out, _) = run_to_end(&fx, opts);
    assert_eq!(out, "from-entrypoint arg\n");

    // A non-root user holds no capabilities; root keeps docker's default set only.
    let (_, _, out, _) = run_to_end(&fx, cmd(&["sh", "-c", "grep CapEff /proc/self/status"]));
    assert!(out.contains("00000000a80425fb"), "default capabilities: {out}");
}

#[test]
fn exit_codes_follow_docker() {
    let Some(fx) = Fixture::new("exit_codes_follow_docker") else { return };
    assert_eq!(run_to_end(&fx, cmd(&["true"])).1, 0);
    assert_eq!(run_to_end(&fx, cmd(&["sh", "-c", "exit 3"])).1, 3);

    for (args, code, text) in [
        (vec!["no-such-command"], 127, "executable file not found in $PATH"),
        (vec!["/no/such/file"], 127, "no such file or directory"),
        (vec!["/etc/notexec"], 126, "permission denied"),
    ] {
        let id = fx.runtime.create(IMAGE, &cmd(&args)).expect("create");
        fx.track(&id);
        match fx.runtime.start(&id, &StartOptions::default()) {
            Err(e @ ContainerError::StartFailed { .. }) => {
                assert_eq!(e.exit_code(), code, "{args:?}: {e}");
                assert!(e.to_string().contains(text), "{e}");
            }
            Err(other) => panic!("{args:?}: unexpected error {other}"),
            Ok(_) => panic!("{args:?} started"),
        }
        let st = fx.runtime.inspect(&id).expect("inspect");
        assert_eq!((st.status, st.exit_code), (Status::Exited, code));
    }

    let id = start_detached(&fx, cmd(&["sleep", "1000"]));
    fx.runtime.kill(&id, "KILL").expect("kill");
    assert_eq!(fx.runtime.wait(&id).expect("wait"), 137);
    assert!(matches!(fx.runtime.kill(&id, "KILL"), Err(ContainerError::Conflict(_))));

    // PID 1 ignores signals it has no handler for; any other process dies of SIGTERM: 143.
    let id = start_detached(&fx, cmd(&["sleep", "1000"]));
    let exec = ExecOptions { args: vec!["sh".into(), "-c".into(), "kill -TERM $$".into()], ..Default::default() };
    assert_eq!(fx.runtime.exec(&id, &exec).expect("exec"), 143);
}

#[test]
fn stop_honours_the_grace_period() {
    let Some(fx) = Fixture::new("stop_honours_the_grace_period") else { return };
    let trapping = start_detached(&fx, cmd(&["sh", "-c", "trap 'echo bye; exit 0' TERM; echo ready; while true; do sleep 0.1; done"]));
    // Until the trap is set, PID 1 ignores SIGTERM.
    wait_for_output(&fx, &trapping, "ready\n");
    let begin = Instant::now();
    fx.runtime.stop(&trapping, Some(10)).expect("stop");
    assert!(begin.elapsed() < Duration::from_secs(5), "a trapping shell exits at once");
    let st = fx.runtime.inspect(&trapping).expect("inspect");
    assert_eq!((st.status, st.exit_code), (Status::Exited, 0));
    assert_eq!(fx.logs(&trapping).0, "ready\nbye\n");

    let ignoring = start_detached(&fx, cmd(&["sleep", "1000"]));
    let begin = Instant::now();
    fx.runtime.stop(&ignoring, Some(1)).expect("stop");
    let took = begin.elapsed();
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(6), "took {took:?}");
    assert_eq!(fx.runtime.inspect(&ignoring).expect("inspect").exit_code, 137);

    // Stopped containers start again, keeping their logs.
    drop(fx.runtime.start(&trapping, &StartOptions::default()).expect("restart"));
    assert_eq!(fx.runtime.inspect(&trapping).expect("inspect").status, Status::Running);
    wait_for_output(&fx, &trapping, "ready\nbye\nready\n");
    fx.runtime.stop(&trapping, Some(10)).expect("stop again");
    assert_eq!(fx.logs(&trapping).0, "ready\nbye\nready\nbye\n");
}

fn wait_for_output(fx: &Fixture, id: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while fx.logs(id).0 != expected {
        assert!(Instant::now() < deadline, "output {:?} never became {expected:?}", fx.logs(id).0);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn logs_keep_streams_apart_and_tail() {
    let Some(fx) = Fixture::new("logs_keep_streams_apart_and_tail") else { return };
    let (id, _, out, err) = run_to_end(&fx, cmd(&["sh", "-c", "echo one; echo oops >&2; echo two; printf three"]));
    assert_eq!(out, "one\ntwo\nthree");
    assert_eq!(err, "oops\n");
    let opts = runtime::container::LogOptions { tail: Some(1), timestamps: true, follow: false };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    fx.runtime.logs(&id, &opts, &mut out, &mut err).expect("logs");
    let out = String::from_utf8(out).expect("utf-8");
    let (time, text) = out.split_once(' ').expect("timestamp prefix");
    assert!(time.parse::<jiff::Timestamp>().is_ok(), "{time}");
    assert_eq!(text, "three");

    // Following ends when the container does, with every line.
    let id = start_detached(&fx, cmd(&["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.2; done"]));
    let opts = runtime::container::LogOptions { follow: true, ..Default::default() };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    fx.runtime.logs(&id, &opts, &mut out, &mut err).expect("logs -f");
    assert_eq!(String::from_utf8_lossy(&out), "1\n2\n3\n");
}

#[test]
fn exec_joins_the_container() {
    let Some(fx) = Fixture::new("exec_joins_the_container") else { return };
    let id = start_detached(&fx, RunOptions { env: vec!["A=1".into()], ..cmd(&["sleep", "1000"]) });
    let out_file = fx.dir.path().join("exec-out");
    // The exec'd command writes where the test can read it: a file in the container's upper dir.
    let exec = ExecOptions {
        args: vec!["sh".into(), "-c".into(), "echo $A $B $(hostname) $(cat /proc/1/comm) > /exec-out".into()],
        env: vec!["B=2".into()],
        ..Default::default()
    };
    assert_eq!(fx.runtime.exec(&id, &exec).expect("exec"), 0);
    let written = std::fs::read_to_string(fx.runtime.container_dir(&id).join("upper/exec-out")).expect("exec output");
    assert_eq!(written, format!("1 2 {} sleep\n", &id[..12]));
    let _ = out_file;
    let missing = ExecOptions { args: vec!["nope".into()], ..Default::default() };
    assert_eq!(fx.runtime.exec(&id, &missing).expect("exec"), 127);
    let failing = ExecOptions { args: vec!["sh".into(), "-c".into(), "exit 7".into()], ..Default::default() };
    assert_eq!(fx.runtime.exec(&id, &failing).expect("exec"), 7);
    fx.runtime.kill(&id, "KILL").expect("kill");
    fx.runtime.wait(&id).expect("wait");
    assert!(fx.runtime.exec(&id, &failing).is_err(), "exec into a stopped container");
}

#[test]
fn memory_limit_oom_kills_and_is_reported() {
    let Some(fx) = Fixture::new("memory_limit_oom_kills_and_is_reported") else { return };
    let opts = RunOptions { memory: Some(16 << 20), ..cmd(&["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"]) };
    let (id, code, _, err) = run_to_end(&fx, opts);
    assert_eq!(code, 137, "{err}");
    let st = fx.runtime.inspect(&id).expect("inspect");
    assert!(st.oom_killed, "OOMKilled must be reported");
    // Without the limit the same command succeeds.
    assert_eq!(run_to_end(&fx, cmd(&["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"])).1, 0);
}

#[test]
fn named_volumes_persist_across_containers() {
    let Some(fx) = Fixture::new("named_volumes_persist_across_containers") else { return };
    let write = RunOptions { volumes: vec!["data:/data".into()], ..cmd(&["sh", "-c", "echo kept > /data/file"]) };
    assert_eq!(run_to_end(&fx, write).1, 0);
    let read = RunOptions { volumes: vec!["data:/data:ro".into()], ..cmd(&["sh", "-c", "cat /data/file; touch /data/x"]) };
    let (id, code, out, err) = run_to_end(&fx, read);
    assert_eq!(out, "kept\n");
    assert_ne!(code, 0, "a read-only volume refuses writes: {err}");
    assert!(matches!(fx.runtime.volume_remove("data"), Err(ContainerError::VolumeInUse { .. })));
    fx.runtime.remove(&id, false).expect("rm");
    let names: Vec<String> = fx.runtime.volume_list().expect("ls").into_iter().map(|v| v.name).collect();
    assert_eq!(names, vec!["data".to_string()]);
}

#[test]
fn read_only_root_and_masked_paths() {
    let Some(fx) = Fixture::new("read_only_root_and_masked_paths") else { return };
    let opts = RunOptions { read_only: true, tmpfs: vec!["/scratch".into()], ..cmd(&["sh", "-c", "touch /x || echo refused; touch /scratch/ok && echo tmpfs; cat /proc/kcore | wc -c; echo > /proc/sys/kernel/hostname || echo ro"]) };
    let (_, _, out, _) = run_to_end(&fx, opts);
    assert_eq!(out, "refused\ntmpfs\n0\nro\n");
}

#[test]
fn remove_leaves_nothing_behind() {
    let Some(fx) = Fixture::new("remove_leaves_nothing_behind") else { return };
    let id = start_detached(&fx, cmd(&["sleep", "1000"]));
    let st = fx.runtime.inspect(&id).expect("inspect");
    assert_eq!(st.status, Status::Running);
    assert!(!cgroup_dirs(&id).is_empty(), "a running container has a cgroup");
    let err = fx.runtime.remove(&id, false).expect_err("running");
    assert!(err.to_string().contains("You cannot remove a running container"), "{err}");
    fx.runtime.remove(&id, true).expect("rm -f");
    let dir = fx.runtime.container_dir(&id);
    assert!(!dir.exists());
    assert_eq!(mounts_under(&dir), Vec::<String>::new());
    assert_eq!(cgroup_dirs(&id), Vec::<std::path::PathBuf>::new());
    assert!(!std::path::Path::new(&format!("/proc/{}", st.pid)).exists() || !runtime_alive(st.pid));
    assert!(matches!(fx.runtime.inspect(&id), Err(ContainerError::NotFound(_))));

    // --rm: the monitor removes the container itself, and still reports the exit code.
    let opts = RunOptions { auto_remove: true, ..cmd(&["sh", "-c", "exit 4"]) };
    let id = fx.runtime.create(IMAGE, &opts).expect("create");
    fx.track(&id);
    let code = fx.runtime.start(&id, &StartOptions::default()).expect("start").wait();
    assert_eq!(code, Some(4));
    let deadline = Instant::now() + Duration::from_secs(5);
    while fx.runtime.container_dir(&id).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!fx.runtime.container_dir(&id).exists(), "--rm container removed");
    assert_eq!(mounts_under(&fx.root()), Vec::<String>::new());
}

/// `run --rm` in the foreground: the output streams to the end, the exit code comes from the
/// monitor, and once that returns nothing of the container is left to see (no directory, name,
/// listing, mount or cgroup); its files leave the trash moments later.
#[test]
fn a_foreground_rm_run_is_gone_when_it_returns() {
    let Some(fx) = Fixture::new("a_foreground_rm_run_is_gone_when_it_returns") else { return };
    let opts = RunOptions {
        auto_remove: true,
        name: Some("fg-rm".into()),
        ..cmd(&["sh", "-c", "echo one; sleep 0.2; echo two >&2; exit 5"])
    };
    let id = fx.runtime.create(IMAGE, &opts).expect("create");
    fx.track(&id);
    let attached = fx.runtime.attach(&id).expect("attach");
    let started = fx.runtime.start(&id, &StartOptions::default()).expect("start");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = attached.stream_to_exit(&fx.runtime, started, &mut out, &mut err).expect("stream");
    assert_eq!(code, Some(5));
    assert_eq!(String::from_utf8_lossy(&out), "one\n");
    assert_eq!(String::from_utf8_lossy(&err), "two\n");
    assert!(!fx.runtime.container_dir(&id).exists(), "no container directory");
    assert!(matches!(fx.runtime.inspect("fg-rm"), Err(ContainerError::NotFound(_))), "name freed");
    assert!(fx.runtime.list(true).expect("list").iter().all(|c| c.id != id), "not listed");
    assert_eq!(mounts_under(&fx.root()), Vec::<String>::new());
    assert_eq!(cgroup_dirs(&id), Vec::<std::path::PathBuf>::new());
    let trash = fx.root().join("containers").join(".trash");
    let deadline = Instant::now() + Duration::from_secs(5);
    let empty = || std::fs::read_dir(&trash).map_or(true, |mut entries| entries.next().is_none());
    while !empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(empty(), "the monitor empties the trash");
}

fn runtime_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.contains("sleep"))
}

#[test]
fn names_are_unique_and_resolve() {
    let Some(fx) = Fixture::new("names_are_unique_and_resolve") else { return };
    let id = fx.runtime.create(IMAGE, &RunOptions { name: Some("web".into()), ..cmd(&["true"]) }).expect("create");
    fx.track(&id);
    let err = fx.runtime.create(IMAGE, &RunOptions { name: Some("web".into()), ..cmd(&["true"]) }).expect_err("conflict");
    assert!(err.to_string().contains("The container name \"/web\" is already in use"), "{err}");
    assert_eq!(fx.runtime.resolve_id("web").expect("by name"), id);
    assert_eq!(fx.runtime.resolve_id(&id[..6]).expect("by prefix"), id);
    assert_eq!(fx.runtime.list(false).expect("ps").len(), 0);
    assert_eq!(fx.runtime.list(true).expect("ps -a").len(), 1);
    fx.runtime.remove("web", false).expect("rm");
    let again = fx.runtime.create(IMAGE, &RunOptions { name: Some("web".into()), ..cmd(&["true"]) }).expect("name is free again");
    fx.track(&again);
}

#[test]
fn a_damaged_state_file_hides_only_its_own_container() {
    let Some(fx) = Fixture::new("a_damaged_state_file_hides_only_its_own_container") else { return };
    let good = fx.runtime.create(IMAGE, &cmd(&["true"])).expect("create");
    fx.track(&good);
    let damaged = fx.runtime.create(IMAGE, &cmd(&["true"])).expect("create");
    fx.track(&damaged);
    // what an unsynced write can leave after a power loss
    std::fs::write(fx.runtime.root().join("containers").join(&damaged).join("state.json"), b"").expect("damage");
    let listed: Vec<String> = fx.runtime.list(true).expect("ps -a still works").into_iter().map(|c| c.id).collect();
    assert_eq!(listed, [good.clone()]);
    assert!(fx.runtime.inspect(&damaged).is_err(), "the damaged container is reported by the verbs that read it");
    assert!(fx.runtime.remove(&damaged, false).is_err(), "only a forced removal takes a damaged container");
    fx.runtime.remove(&damaged, true).expect("rm -f of a damaged container");
    assert!(!mounts_under(fx.runtime.root()).iter().any(|m| m.contains(damaged.as_str())), "its root is still mounted");
    assert!(!fx.runtime.root().join("containers").join(&damaged).exists());
}

#[test]
fn a_dead_monitor_is_repaired_on_read() {
    let Some(fx) = Fixture::new("a_dead_monitor_is_repaired_on_read") else { return };
    let id = start_detached(&fx, cmd(&["sleep", "1000"]));
    let st = fx.runtime.inspect(&id).expect("inspect");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(st.monitor_pid), nix::sys::signal::Signal::SIGKILL).expect("kill monitor");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(fx.runtime.inspect(&id).expect("inspect").status, Status::Running, "the container outlives its monitor");
    fx.runtime.kill(&id, "KILL").expect("kill");
    assert_eq!(fx.runtime.wait(&id).expect("wait"), 255, "unknown exit code");
    let st = fx.runtime.inspect(&id).expect("inspect");
    assert_eq!(st.status, Status::Exited);
    assert!(!st.error.is_empty());
}

#[test]
fn a_terminal_is_allocated_for_tty() {
    let Some(fx) = Fixture::new("a_terminal_is_allocated_for_tty") else { return };
    let id = fx.runtime.create(IMAGE, &RunOptions { tty: true, ..cmd(&["sh", "-c", "test -t 0 && test -t 1 && echo terminal; stty size"]) }).expect("create");
    fx.track(&id);
    let started = fx.runtime.start(&id, &StartOptions { attach_stdin: false, tty_size: Some((40, 120)) }).expect("start");
    assert_eq!(started.wait(), Some(0));
    // A terminal turns \n into \r\n, and everything is stdout, as docker logs it.
    assert_eq!(fx.logs(&id), ("terminal\r\n40 120\r\n".to_string(), String::new()));
}

#[test]
fn the_terminal_comes_from_the_containers_devpts() {
    let Some(fx) = Fixture::new("the_terminal_comes_from_the_containers_devpts") else { return };
    for user in [None, Some("app".to_string())] {
        let opts = RunOptions { tty: true, user: user.clone(), ..cmd(&["sh", "-c", "tty; test -e $(tty) && echo exists"]) };
        let id = fx.runtime.create(IMAGE, &opts).expect("create");
        fx.track(&id);
        let started = fx.runtime.start(&id, &StartOptions::default()).expect("start");
        assert_eq!(started.wait(), Some(0), "user {user:?}");
        assert_eq!(fx.logs(&id).0, "/dev/pts/0\r\nexists\r\n", "user {user:?}");
    }
}

/// Runs `args` with exec -t (and -i) in a container, with a pty of the test's own as the
/// caller's terminal; `input` is typed once the output contains `prompt`. Returns the exit code
/// and everything the caller's terminal showed.
fn exec_on_a_terminal(fx: &Fixture, id: &str, args: &[&str], prompt: &str, input: &[u8]) -> (i32, String) {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let size = nix::pty::Winsize { ws_row: 30, ws_col: 100, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = nix::pty::openpty(Some(&size), None).expect("openpty");
    let shown = Arc::new(Mutex::new(Vec::new()));
    let mut master = std::fs::File::from(pty.master);
    let mut typist = master.try_clone().expect("dup master");
    let reader = {
        let shown = Arc::clone(&shown);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once the helper and the test have closed the terminal's other side.
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                shown.lock().expect("lock").extend_from_slice(&buf[..n]);
            }
        })
    };
    let writer = {
        let (shown, prompt, input) = (Arc::clone(&shown), prompt.to_string(), input.to_vec());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !String::from_utf8_lossy(&shown.lock().expect("lock")).contains(&prompt) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = typist.write_all(&input);
        })
    };
    let slave = pty.slave;
    // Raw, as `ctl exec -it` makes the local terminal: what the command's terminal sends shows
    // unchanged.
    let mut raw = nix::sys::termios::tcgetattr(&slave).expect("tcgetattr");
    nix::sys::termios::cfmakeraw(&mut raw);
    nix::sys::termios::tcsetattr(&slave, nix::sys::termios::SetArg::TCSANOW, &raw).expect("tcsetattr");
    let stdio = ExecStdio {
        stdin: Some(slave.try_clone().expect("dup slave").into()),
        stdout: Some(slave.try_clone().expect("dup slave").into()),
        stderr: Some(slave.into()),
        resize: None,
    };
    let opts = ExecOptions { args: args.iter().map(|s| s.to_string()).collect(), tty: true, interactive: true, ..Default::default() };
    let code = fx.runtime.exec_with_stdio(id, &opts, stdio).expect("exec");
    writer.join().expect("typist");
    reader.join().expect("reader");
    let shown = String::from_utf8_lossy(&shown.lock().expect("lock")).into_owned();
    (code, shown)
}

#[test]
fn exec_with_a_terminal() {
    let Some(fx) = Fixture::new("exec_with_a_terminal") else { return };
    let id = start_detached(&fx, cmd(&["sleep", "1000"]));
    let (code, shown) = exec_on_a_terminal(&fx, &id, &["sh", "-c", "test -t 0 && test -t 1 && echo yes; tty; stty size"], "", b"");
    assert_eq!(code, 0, "{shown}");
    // The caller's window size is passed on; the terminal is the container's first one.
    assert_eq!(shown, "yes\r\n/dev/pts/0\r\n30 100\r\n");

    // An interactive shell: what is typed reaches it, its exit code comes back.
    let (code, shown) = exec_on_a_terminal(&fx, &id, &["sh"], "# ", b"echo hi-$((6*7))\nexit 3\n");
    assert_eq!(code, 3, "{shown}");
    assert!(shown.contains("hi-42\r\n"), "{shown}");

    // A command that cannot run reports docker's code, its message on the terminal.
    let (code, shown) = exec_on_a_terminal(&fx, &id, &["no-such-command"], "", b"");
    assert_eq!(code, 127, "{shown}");
    assert!(shown.contains("executable file not found"), "{shown}");
}

#[test]
fn containers_of_an_earlier_boot_are_cleaned_up_on_open() {
    let Some(fx) = Fixture::new("containers_of_an_earlier_boot_are_cleaned_up_on_open") else { return };
    let running = start_detached(&fx, cmd(&["sleep", "1000"]));
    let auto_removed = start_detached(&fx, RunOptions { auto_remove: true, ..cmd(&["sleep", "1000"]) });
    let created = fx.runtime.create(IMAGE, &cmd(&["true"])).expect("create");
    fx.track(&created);
    let boot = runtime::container::current_boot_id().expect("this kernel has a boot id");
    assert_eq!(fx.runtime.inspect(&running).expect("inspect").boot_id, boot);

    // A reboot, as far as the state can tell: every process dies at once, no monitor records
    // anything, and the states and the root's marker name another boot. The overlay mounts and
    // cgroups stay here (a real reboot leaves none) to show they are cleared too.
    for id in [&running, &auto_removed] {
        let st = fx.runtime.inspect(id).expect("inspect");
        for pid in [st.monitor_pid, st.pid] {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).expect("kill");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(format!("/proc/{}/stat", st.pid)).is_ok_and(|s| !s.contains(") Z ")) {
            assert!(Instant::now() < deadline, "the container's process does not die");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let earlier = "00000000-0000-4000-8000-000000000000";
    for id in [&running, &auto_removed, &created] {
        let path = fx.runtime.container_dir(id).join("state.json");
        let mut state: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("read state")).expect("json");
        state["boot_id"] = earlier.into();
        std::fs::write(&path, serde_json::to_vec(&state).expect("json")).expect("write state");
    }
    std::fs::write(fx.root().join("containers/.boot_id"), earlier).expect("write marker");
    assert!(!mounts_under(&fx.runtime.container_dir(&running)).is_empty(), "a leftover mount to clean up");
    assert!(!cgroup_dirs(&running).is_empty(), "a leftover cgroup to clean up");

    let reopened = Runtime::open(&fx.root()).expect("open after the reboot");
    let st = reopened.inspect(&running).expect("inspect");
    assert_eq!((st.status, st.exit_code, st.pid, st.boot_id.as_str()), (Status::Exited, 255, 0, boot.as_str()));
    assert!(st.finished_at.is_some() && !st.error.is_empty(), "{st:?}");
    assert_eq!(mounts_under(&reopened.container_dir(&running)), Vec::<String>::new());
    assert_eq!(cgroup_dirs(&running), Vec::<std::path::PathBuf>::new());
    assert_eq!(cgroup_dirs(&auto_removed), Vec::<std::path::PathBuf>::new());
    assert!(!reopened.container_dir(&auto_removed).exists(), "--rm container removed");
    assert_eq!(mounts_under(&reopened.container_dir(&auto_removed)), Vec::<String>::new());
    assert!(matches!(reopened.inspect(&auto_removed), Err(ContainerError::NotFound(_))));
    let st = reopened.inspect(&created).expect("inspect");
    assert_eq!((st.status, st.boot_id.as_str()), (Status::Created, boot.as_str()));
    assert_eq!(std::fs::read_to_string(fx.root().join("containers/.boot_id")).expect("marker").trim(), boot);

    // Both containers that are left start again in this boot.
    let started = reopened.start(&created, &StartOptions::default()).expect("start the created one");
    assert_eq!(started.wait(), Some(0));
    drop(reopened.start(&running, &StartOptions::default()).expect("start the recovered one"));
    assert_eq!(reopened.inspect(&running).expect("inspect").status, Status::Running);
}
