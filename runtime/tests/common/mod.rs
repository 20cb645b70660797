//! Fixtures for the container tests: a busybox root filesystem imported as an image into a
//! temporary root, and a guard that force-removes every container a test made, also when the
//! test panics. Tests need root; without it they print a notice and return.

#![allow(dead_code)]

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use runtime::container::{LogOptions, Runtime};
use runtime::image::ImageStore;
use runtime::reference::Reference;

/// The image name every test uses.
pub const IMAGE: &str = "flotilla-test/busybox:latest";

/// The busybox applets linked into the test root filesystem.
const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "true", "false", "sleep", "id", "hostname", "ps", "env", "pwd",
    "mount", "touch", "yes", "head", "dd", "kill", "trap", "wc", "grep", "mkdir", "test",
];

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A temporary root holding the busybox image, and a runtime on it.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub runtime: Runtime,
    containers: RefCell<Vec<String>>,
}

impl Fixture {
    /// None (after a printed notice) when not root or busybox is missing.
    pub fn new(test: &str) -> Option<Fixture> {
        if !is_root() {
            eprintln!("skipping {test}: container tests need root");
            return None;
        }
        let busybox = ["/bin/busybox", "/usr/bin/busybox"].into_iter().map(Path::new).find(|p| p.is_file());
        let Some(busybox) = busybox else {
            eprintln!("skipping {test}: install busybox-static (apt-get install busybox-static)");
            return None;
        };
        let dir = tempfile::Builder::new().prefix("flotilla-containers-").tempdir().expect("temp dir");
        let rootfs = dir.path().join("busybox-rootfs");
        make_rootfs(&rootfs, busybox);
        let root = dir.path().join("root");
        let store = ImageStore::open(&root).expect("image store");
        store.import_rootfs_dir(&rootfs, &Reference::parse(IMAGE).expect("reference")).expect("import busybox");
        let runtime = Runtime::open(&root).expect("runtime");
        Some(Fixture { dir, runtime, containers: RefCell::new(Vec::new()) })
    }

    /// Remembers a container for removal when the fixture is dropped.
    pub fn track(&self, id: &str) {
        self.containers.borrow_mut().push(id.to_string());
    }

    /// All output of a container so far: (stdout, stderr).
    pub fn logs(&self, id: &str) -> (String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        self.runtime.logs(id, &LogOptions::default(), &mut out, &mut err).expect("logs");
        (String::from_utf8_lossy(&out).into_owned(), String::from_utf8_lossy(&err).into_owned())
    }

    pub fn root(&self) -> PathBuf {
        self.runtime.root().to_path_buf()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for id in self.containers.borrow().iter() {
            if let Err(error) = self.runtime.remove(id, true) {
                if !matches!(error, runtime::container::ContainerError::NotFound(_)) {
                    eprintln!("cleanup: removing container {id}: {error}");
                }
            }
        }
    }
}

/// A minimal root filesystem: busybox, its applet links, /etc/passwd and /etc/group.
pub fn make_rootfs(rootfs: &Path, busybox: &Path) {
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir bin");
    std::fs::copy(busybox, bin.join("busybox")).expect("copy busybox");
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("symlink applet");
    }
    let etc = rootfs.join("etc");
    std::fs::create_dir_all(&etc).expect("mkdir etc");
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .expect("passwd");
    std::fs::write(etc.join("group"), "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nextra:x:2000:app\n").expect("group");
    std::fs::write(etc.join("notexec"), "#!/bin/sh\necho hi\n").expect("notexec");
    for d in ["proc", "sys", "dev", "tmp", "root"] {
        std::fs::create_dir_all(rootfs.join(d)).expect("mkdir");
    }
}

/// Whether any mount point lies under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.to_string_lossy().into_owned();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(runtime::container::unescape_mountinfo)
        .filter(|m| m.starts_with(&prefix))
        .collect()
}

/// The cgroup directories a container would have, v1 or v2, that exist.
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let base = Path::new("/sys/fs/cgroup");
    let direct = base.join("flotilla").join(id);
    if direct.exists() {
        found.push(direct);
    }
    if let Ok(entries) = std::fs::read_dir(base) {
        for entry in entries.flatten() {
            let dir = entry.path().join("flotilla").join(id);
            if dir.exists() {
                found.push(dir);
            }
        }
    }
    found
}
