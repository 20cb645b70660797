//! Cgroup tests against the real kernel: they need root and skip with a notice otherwise.
//! Each test uses its own cgroup id, so they run in parallel. The v1/v2 driver of this machine
//! is detected; the v2 tests also mount a cgroup2 hierarchy of their own in a temp dir.
#![cfg(target_os = "linux")]

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use runtime::cgroups::{Cgroup, CgroupDriver, CgroupError, CgroupVersion, PARENT};
use runtime::spec::Resources;

/// Set in the environment of the child that allocates memory (see `allocating_child`).

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipping: cgroup tests need root");
    false
}

fn unique(name: &str) -> String {
    format!("test-{}-{name}", std::process::id())
}

/// Removes the cgroup even when an assertion fails, so reruns start clean.
struct CgroupGuard(Option<Cgroup>);

impl CgroupGuard {
    fn get(&self) -> &Cgroup {
        self.0.as_ref().expect("cgroup still held by the guard")
    }
    fn take(&mut self) -> Cgroup {
        self.0.take().expect("cgroup still held by the guard")
    }
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if let Some(cg) = self.0.take() {
            let _ = cg.remove();
        }
    }
}

/// Kills and reaps a child even when an assertion fails.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A cgroup2 hierarchy mounted in a temp dir, unmounted on drop.
struct Cgroup2Mount {
    dir: tempfile::TempDir,
}

impl Cgroup2Mount {
    fn new() -> Cgroup2Mount {
        let dir = tempfile::tempdir().expect("tempdir");
        nix::mount::mount(
            Some("none"),
            dir.path(),
            Some("cgroup2"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .expect("mount cgroup2");
        Cgroup2Mount { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cgroup2Mount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .trim()
        .to_string()
}

fn dir_of<'a>(cg: &'a Cgroup, controller: &str) -> &'a Path {
    cg.paths()
        .into_iter()
        .find(|p| {
            p.parent()
                .and_then(Path::parent)
                .is_some_and(|m| m.ends_with(controller))
        })
        .unwrap_or_else(|| panic!("no {controller} directory in {:?}", cg.paths()))
}

fn sleeper() -> ChildGuard {
    ChildGuard(
        Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("spawn sleep"),
    )
}

#[test]
fn limits_are_written_and_read_back() {
    if !is_root() {
        return;
    }
    let driver = CgroupDriver::detect().expect("detect");
    let id = unique("limits");
    let res = Resources {
        memory_bytes: Some(64 << 20),
        cpu_quota_us: Some(50_000),
        cpu_period_us: 100_000,
        pids_limit: Some(20),
    };
    let mut guard = CgroupGuard(Some(Cgroup::create(&driver, &id, &res).expect("create")));
    let cg = guard.get();
    match driver.version() {
        CgroupVersion::V1 => {
            let mem = dir_of(cg, "memory");
            assert_eq!(
                read(mem.join("memory.limit_in_bytes")),
                (64u64 << 20).to_string()
            );
            if mem.join("memory.memsw.limit_in_bytes").exists() {
                assert_eq!(
                    read(mem.join("memory.memsw.limit_in_bytes")),
                    (128u64 << 20).to_string()
                );
            }
            let cpu = dir_of(cg, "cpu");
            assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "50000");
            assert_eq!(read(cpu.join("cpu.cfs_period_us")), "100000");
            assert_eq!(read(dir_of(cg, "pids").join("pids.max")), "20");
        }
        CgroupVersion::V2 => {
            let dir = cg.paths()[0];
            assert_eq!(read(dir.join("memory.max")), (64u64 << 20).to_string());
            assert_eq!(read(dir.join("cpu.max")), "50000 100000");
            assert_eq!(read(dir.join("pids.max")), "20");
        }
    }

    // The same id cannot be created twice, and the first one survives the attempt.
    let again = Cgroup::create(&driver, &id, &res);
    assert!(
        matches!(again, Err(CgroupError::Exists { .. })),
        "{again:?}"
    );
    assert!(cg.paths().iter().all(|p| p.is_dir()));

    // Re-opening finds the same directories.
    let reopened = Cgroup::open(&driver, &id).expect("open");
    assert_eq!(reopened.paths(), cg.paths());

    let paths: Vec<PathBuf> = cg.paths().into_iter().map(Path::to_path_buf).collect();
    guard.take().remove().expect("remove");
    for p in &paths {
        assert!(!p.exists(), "{} still exists", p.display());
        assert!(
            p.parent()
                .is_some_and(|parent| parent.ends_with(PARENT) && parent.is_dir()),
            "the parent stays"
        );
    }
    assert!(matches!(
        Cgroup::open(&driver, &id),
        Err(CgroupError::NotFound { .. })
    ));
}

#[test]
fn processes_are_added_listed_and_killed_on_remove() {
    if !is_root() {
        return;
    }
    let driver = CgroupDriver::detect().expect("detect");
    let mut guard = CgroupGuard(Some(
        Cgroup::create(&driver, &unique("pids"), &Resources::default()).expect("create"),
    ));
    let mut child = sleeper();
    let pid = child.0.id() as i32;
    guard.get().add_process(pid).expect("add");
    assert_eq!(guard.get().pids().expect("pids"), vec![pid]);
    assert!(!guard.get().oom_killed().expect("oom"));

    let paths: Vec<PathBuf> = guard
        .get()
        .paths()
        .into_iter()
        .map(Path::to_path_buf)
        .collect();
    guard.take().remove().expect("remove kills and removes");
    let status = child.0.wait().expect("wait");
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    for p in &paths {
        assert!(!p.exists(), "{} still exists", p.display());
    }
}

#[test]
fn kill_all_sends_the_signal() {
    if !is_root() {
        return;
    }
    let driver = CgroupDriver::detect().expect("detect");
    let guard = CgroupGuard(Some(
        Cgroup::create(&driver, &unique("kill"), &Resources::default()).expect("create"),
    ));
    let mut a = sleeper();
    let mut b = sleeper();
    guard.get().add_process(a.0.id() as i32).expect("add a");
    guard.get().add_process(b.0.id() as i32).expect("add b");
    guard.get().kill_all(libc::SIGTERM).expect("kill_all");
    assert_eq!(a.0.wait().expect("wait a").signal(), Some(libc::SIGTERM));
    assert_eq!(b.0.wait().expect("wait b").signal(), Some(libc::SIGTERM));
    assert!(matches!(
        guard.get().kill_all(0),
        Err(CgroupError::InvalidSignal(0))
    ));
}

#[test]
fn oom_kill_is_reported() {
    if !is_root() {
        return;
    }
    let driver = CgroupDriver::detect().expect("detect");
    let res = Resources {
        memory_bytes: Some(16 << 20),
        ..Resources::default()
    };
    let guard = CgroupGuard(Some(
        Cgroup::create(&driver, &unique("oom"), &res).expect("create"),
    ));
    // a shell that waits for a line on stdin, then becomes a dd whose 100 MiB buffer cannot fit
    let mut child = ChildGuard(
        Command::new("sh")
            .args(["-c", "read go; exec dd if=/dev/zero of=/dev/null bs=100M count=1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child"),
    );
    guard.get().add_process(child.0.id() as i32).expect("add");
    assert!(!guard.get().oom_killed().expect("oom before"));
    // Only now, inside the cgroup, may the child allocate.
    child
        .0
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("release child");
    let status = child.0.wait().expect("wait");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the child should be OOM-killed, got {status:?}"
    );
    assert!(guard.get().oom_killed().expect("oom after"));
}


#[test]
fn bad_ids_and_missing_hierarchies_are_refused() {
    let res = Resources::default();
    let empty = tempfile::tempdir().expect("tempdir");
    for id in ["", "..", "a/b", "x y"] {
        let err = Cgroup::create(&CgroupDriver::v1_at(empty.path()), id, &res);
        assert!(
            matches!(err, Err(CgroupError::InvalidId { .. })),
            "{id:?}: {err:?}"
        );
    }
    let err = Cgroup::create(&CgroupDriver::v1_at(empty.path()), "ok", &res);
    assert!(
        matches!(err, Err(CgroupError::NoHierarchy { .. })),
        "{err:?}"
    );
    let err = Cgroup::create(&CgroupDriver::v2_at(empty.path()), "ok", &res);
    assert!(
        matches!(err, Err(CgroupError::NotCgroup2 { .. })),
        "{err:?}"
    );
    assert!(
        std::fs::read_dir(empty.path())
            .expect("read")
            .next()
            .is_none(),
        "nothing created"
    );
}

#[test]
fn v2_without_controllers_refuses_limits_clearly() {
    if !is_root() {
        return;
    }
    let mount = Cgroup2Mount::new();
    let available = read(mount.path().join("cgroup.controllers"));
    if available.split_whitespace().any(|c| c == "memory") {
        eprintln!("skipping: the memory controller is available in cgroup v2 here");
        return;
    }
    let driver = CgroupDriver::v2_at(mount.path());
    let id = unique("v2-limit");
    let res = Resources {
        memory_bytes: Some(64 << 20),
        ..Resources::default()
    };
    let err = Cgroup::create(&driver, &id, &res).expect_err("memory is not enabled");
    let text = err.to_string();
    assert!(
        matches!(
            err,
            CgroupError::ControllerNotEnabled {
                controller: "memory",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        text.contains("not enabled") && text.contains("subtree_control"),
        "{text}"
    );
    assert!(!mount.path().join(PARENT).join(&id).exists());
}

#[test]
fn v2_limit_free_cgroup_works() {
    if !is_root() {
        return;
    }
    let mount = Cgroup2Mount::new();
    let driver = CgroupDriver::v2_at(mount.path());
    let id = unique("v2-plain");
    let mut guard = CgroupGuard(Some(
        Cgroup::create(&driver, &id, &Resources::default()).expect("create"),
    ));
    let dir = mount.path().join(PARENT).join(&id);
    assert_eq!(guard.get().paths(), vec![dir.as_path()]);

    let mut a = sleeper();
    let mut b = sleeper();
    guard.get().add_process(a.0.id() as i32).expect("add a");
    guard.get().add_process(b.0.id() as i32).expect("add b");
    let mut want = vec![a.0.id() as i32, b.0.id() as i32];
    want.sort_unstable();
    assert_eq!(guard.get().pids().expect("pids"), want);
    assert!(!guard.get().oom_killed().expect("oom"));

    // SIGTERM goes through the freezer path, SIGKILL (in remove) through cgroup.kill.
    guard.get().kill_all(libc::SIGTERM).expect("kill a and b");
    assert_eq!(a.0.wait().expect("wait a").signal(), Some(libc::SIGTERM));
    assert_eq!(b.0.wait().expect("wait b").signal(), Some(libc::SIGTERM));
    let mut c = sleeper();
    guard.get().add_process(c.0.id() as i32).expect("add c");
    assert_eq!(
        Cgroup::open(&driver, &id)
            .expect("open")
            .pids()
            .expect("pids"),
        vec![c.0.id() as i32]
    );
    guard.take().remove().expect("remove");
    assert_eq!(c.0.wait().expect("wait c").signal(), Some(libc::SIGKILL));
    assert!(!dir.exists());
    assert!(mount.path().join(PARENT).is_dir(), "the parent stays");
}
