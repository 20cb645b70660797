//! `ctl`'s docker-shaped container verbs, run as a user would: the real binary on a busybox
//! image imported into a temporary `--root`. They need root; elsewhere they print a notice and
//! pass. Each test force-removes its containers in a guard that also runs on panic.
//!
//! Each test runs `ctl` in a network namespace of its own (`nsenter --net`), so that the default
//! bridge network and its nftables table that `ctl run` makes stay out of the host's namespace and
//! tests running side by side do not share them; the guard deletes the namespace, and with it
//! everything made inside.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const IMAGE: &str = "local-test/busybox";

struct Root {
    dir: tempfile::TempDir,
    ctl: PathBuf,
    netns: String,
}

impl Root {
    fn new(test: &str) -> Option<Root> {
        if !nix_is_root() {
            eprintln!("skipping {test}: container tests need root");
            return None;
        }
        let Some(busybox) = ["/bin/busybox", "/usr/bin/busybox"].into_iter().map(Path::new).find(|p| p.is_file()) else {
            eprintln!("skipping {test}: install busybox-static");
            return None;
        };
        let ctl = tests::binary("ctl").expect("ctl binary");
        let dir = tempfile::Builder::new().prefix("flotilla-ctl-containers-").tempdir().expect("temp dir");
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
        std::fs::create_dir_all(rootfs.join("etc")).expect("mkdir");
        std::fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy busybox");
        for applet in ["sh", "cat", "echo", "sleep", "true", "ls", "hostname", "ps", "id", "tty", "test"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).expect("symlink");
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
        std::fs::write(rootfs.join("etc/notexec"), "not a program\n").expect("file");
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let netns = format!("flt-lc-{}-{}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let made = Command::new("ip").args(["netns", "add", &netns]).status().expect("ip netns add");
        assert!(made.success(), "ip netns add {netns} failed");
        let root = Root { dir, ctl, netns };
        let tar = Command::new("tar").arg("-C").arg(&rootfs).args(["-c", "."]).output().expect("tar");
        assert!(tar.status.success(), "tar failed");
        let out = root.ctl_with_stdin(&["image", "import", "-", IMAGE], &tar.stdout);
        assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
        Some(root)
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_with_stdin(args, b"")
    }

    /// `ctl --root ROOT` inside this test's network namespace (nsenter execs ctl: same pid).
    fn command(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.netns)).arg(&self.ctl).arg("--root").arg(self.root());
        c
    }

    fn ctl_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ctl");
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin).expect("write stdin");
        }
        child.wait_with_output().expect("wait for ctl")
    }

    /// stdout of a command that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(out.status.success(), "ctl {args:?} failed ({:?}): {}", out.status, String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let out = self.ctl(&["ps", "-a", "-q", "--no-trunc"]);
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = self.ctl(&["rm", "-f", id]);
        }
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
    }
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

#[test]
fn run_streams_output_and_exits_with_the_containers_code() {
    let Some(root) = Root::new("run_streams_output_and_exits_with_the_containers_code") else { return };
    let out = root.ctl(&["run", "--rm", IMAGE, "sh", "-c", "echo $$; echo oops >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    assert_eq!(root.ok(&["ps", "-a", "-q"]), "", "--rm removed the container");

    assert_eq!(root.ctl(&["run", "--rm", IMAGE, "no-such-command"]).status.code(), Some(127));
    assert_eq!(root.ctl(&["run", "--rm", IMAGE, "/etc/notexec"]).status.code(), Some(126));
    let out = root.ctl(&["run", "--rm", "no-such-image"]);
    assert_eq!(out.status.code(), Some(125), "{}", String::from_utf8_lossy(&out.stderr));

    let out = root.ctl_with_stdin(&["run", "-i", "--rm", IMAGE, "cat"], b"from stdin\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from stdin\n");
}

#[test]
fn detached_lifecycle_like_docker() {
    let Some(root) = Root::new("detached_lifecycle_like_docker") else { return };
    let id = root.ok(&["run", "-d", "--name", "web", IMAGE, "sh", "-c", "echo started; exec sleep 1000"]).trim().to_string();
    assert_eq!(id.len(), 64);
    let ps = root.ok(&["ps"]);
    let mut lines = ps.lines();
    assert!(lines.next().expect("header").starts_with("CONTAINER ID   IMAGE"), "{ps}");
    let row = lines.next().expect("one container");
    assert!(row.starts_with(&id[..12]) && row.contains(" Up ") && row.ends_with("web"), "{row}");

    let exec = root.ctl(&["exec", "web", "hostname"]);
    assert_eq!(String::from_utf8_lossy(&exec.stdout).trim(), &id[..12]);
    assert_eq!(root.ctl(&["exec", "web", "sh", "-c", "exit 5"]).status.code(), Some(5));
    assert_eq!(root.ok(&["logs", "web"]), "started\n");

    assert_eq!(root.ok(&["stop", "-t", "1", "web"]), "web\n");
    assert!(root.ok(&["ps", "-a"]).contains("Exited (137)"));
    assert_eq!(root.ok(&["wait", "web"]), "137\n");
    let inspect: serde_json::Value = serde_json::from_str(&root.ok(&["inspect", "web"])).expect("json");
    assert_eq!(inspect[0]["State"]["ExitCode"], 137);
    assert_eq!(inspect[0]["State"]["OOMKilled"], false);
    assert_eq!(inspect[0]["Name"], "/web");
    assert_eq!(inspect[0]["Config"]["Image"], IMAGE);

    let rm = root.ctl(&["rm", "web", "no-such-container"]);
    assert_eq!(rm.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&rm.stdout), "web\n");
    assert!(String::from_utf8_lossy(&rm.stderr).contains("No such container: no-such-container"));
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mountinfo.contains(&id), "no mount left");
    assert!(!root.root().join("containers").join(&id).exists());
}

#[test]
fn volumes_outlive_containers() {
    let Some(root) = Root::new("volumes_outlive_containers") else { return };
    assert_eq!(root.ok(&["volume", "create", "data"]), "data\n");
    root.ok(&["run", "--rm", "-v", "data:/data", IMAGE, "sh", "-c", "echo kept > /data/f"]);
    assert_eq!(root.ok(&["run", "--rm", "-v", "data:/data", IMAGE, "cat", "/data/f"]), "kept\n");
    assert!(root.ok(&["volume", "ls"]).lines().any(|l| l.starts_with("local") && l.ends_with("data")));
    assert_eq!(root.ok(&["volume", "rm", "data"]), "data\n");
    assert_eq!(root.ok(&["volume", "ls", "-q"]), "");
}

#[test]
fn signals_to_an_attached_run_reach_the_container() {
    use std::io::{BufRead, BufReader};
    let Some(root) = Root::new("signals_to_an_attached_run_reach_the_container") else { return };
    let mut child = root
        .command()
        .args(["run", "--rm", IMAGE, "sh", "-c", "trap 'echo got TERM; exit 9' TERM; echo ready; while true; do sleep 0.1; done"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run ctl");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read");
    assert_eq!(line, "ready\n");
    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(kill.success());
    line.clear();
    stdout.read_line(&mut line).expect("read");
    assert_eq!(line, "got TERM\n");
    assert_eq!(child.wait().expect("wait").code(), Some(9));
}

#[test]
fn terminals_come_from_the_containers_devpts() {
    let Some(root) = Root::new("terminals_come_from_the_containers_devpts") else { return };
    let out = root.ctl(&["run", "--rm", "-t", IMAGE, "tty"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "/dev/pts/0\r\n");

    root.ok(&["run", "-d", "--name", "web", IMAGE, "sleep", "1000"]);
    // Without a terminal on ctl's side the command still gets one.
    assert_eq!(root.ok(&["exec", "-t", "web", "sh", "-c", "test -t 0 && echo yes; tty"]), "yes\r\n/dev/pts/0\r\n");

    // As a user types it at a terminal: script(1) gives ctl one.
    if Path::new("/usr/bin/script").is_file() {
        let command = format!(
            "nsenter --net=/run/netns/{} '{}' --root '{}' exec -it web sh -c 'test -t 0 && echo yes; tty; exit 4'",
            root.netns,
            root.ctl.display(),
            root.root().display()
        );
        let out = Command::new("/usr/bin/script")
            .args(["-q", "-e", "-c", &command, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .expect("script");
        assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "yes\r\n/dev/pts/0\r\n");
    } else {
        eprintln!("skipping exec -it at a terminal: install util-linux's script");
    }

    // docker's `kill -s HUP` is `--server HUP` here: refused rather than sending KILL.
    let out = root.ctl(&["kill", "-s", "HUP", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--signal HUP"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(root.ok(&["ps"]).contains(" Up "), "the container still runs");
    assert_eq!(root.ok(&["kill", "--signal", "KILL", "web"]), "web\n");
}
