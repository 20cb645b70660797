//! The example app of `deploy/examples/app`, end to end as the README shows it: a Debian base
//! image from `deploy/base-image/debian`, `ctl build` of the app's Dockerfile, the built image's
//! config, and the running container serving its page as the unprivileged user.
//!
//! It needs root and deb.debian.org (debootstrap and the app's `apt-get install` download
//! packages); without either it prints a notice and passes. Everything lives in a temporary
//! `--root` that a guard cleans up, also when the test panics.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const MIRROR_PROBE: &str = "http://deb.debian.org/debian/dists/bookworm/Release";

#[test]
fn example_app_builds_and_serves_its_page() {
    let test = "example_app_builds_and_serves_its_page";
    if !is_root() {
        eprintln!("skipping {test}: building and running images needs root");
        return;
    }
    if !mirror_answers() {
        eprintln!("skipping {test}: {MIRROR_PROBE} did not answer within 10 s");
        return;
    }
    let started = Instant::now();
    let store = Store::new();

    let script = tests::repo_root().join("deploy/base-image/debian");
    let out = Command::new(&script)
        .arg("--root")
        .arg(store.root())
        .env("FLOTILLA_BIN_DIR", tests::bin_dir())
        .stdin(Stdio::null())
        .output()
        .expect("run deploy/base-image/debian");
    assert!(out.status.success(), "base-image script failed ({:?}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    let images = store.ok(&["images"]);
    assert!(images.lines().any(|l| l.starts_with("debian ") && l.contains("bookworm")), "{images}");
    assert!(images.lines().any(|l| l.starts_with("debian ") && l.contains("latest")), "{images}");

    let context = tests::repo_root().join("deploy/examples/app");
    let context = context.to_str().expect("checkout path is UTF-8");
    store.ok(&["build", "-t", "app:1", context]);

    let inspect: Value = serde_json::from_str(&store.ok(&["image", "inspect", "app:1"])).expect("image inspect prints JSON");
    // docker prints an array of images; accept a bare object too
    let image = inspect.as_array().and_then(|a| a.first()).unwrap_or(&inspect);
    let config = image.get("Config").unwrap_or_else(|| panic!("no Config in {image}"));
    assert_eq!(config["User"], "app", "{config}");
    assert!(config["ExposedPorts"].get("8000/tcp").is_some(), "{config}");
    let env = config["Env"].as_array().unwrap_or_else(|| panic!("no Env in {config}"));
    assert!(env.iter().any(|e| e == "GREETING=hello"), "{config}");
    assert!(env.iter().any(|e| e.as_str().is_some_and(|s| s.starts_with("PATH=/usr/local/sbin:"))), "the base image's PATH is inherited: {config}");
    assert_eq!(config["Labels"]["org.opencontainers.image.title"], "flotilla-example", "{config}");
    assert!(config["Volumes"].get("/data").is_some(), "{config}");
    assert_eq!(config["WorkingDir"], "/srv", "{config}");

    store.ok(&["run", "-d", "--name", "web", "--network", "none", "app:1"]);
    // the request runs inside the container, so it reaches the server through the
    // container's own loopback even with --network none
    let fetch = "import urllib.request; \
                 print(urllib.request.urlopen('http://127.0.0.1:8000/index.html', timeout=2).read().decode())";
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let out = store.ctl(&["exec", "web", "python3", "-c", fetch]);
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if Instant::now() > deadline {
            panic!("the page was not served within 10 s: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let expected = std::fs::read_to_string(tests::repo_root().join("deploy/examples/app/index.html")).expect("read index.html");
    assert_eq!(page.trim_end(), expected.trim_end());

    assert_eq!(store.ok(&["exec", "web", "id", "-un"]).trim(), "app");
    assert_eq!(store.ok(&["exec", "web", "sh", "-c", "echo $GREETING"]).trim(), "hello");
    store.ok(&["rm", "-f", "web"]);
    eprintln!("{test} took {:?}", started.elapsed());
}

/// A temporary image and container store; dropping it removes its containers, unmounts what
/// is still mounted below it and deletes it.
struct Store {
    dir: tempfile::TempDir,
    ctl: PathBuf,
}

impl Store {
    fn new() -> Store {
        let ctl = tests::binary("ctl").expect("ctl binary");
        let dir = tempfile::Builder::new().prefix("flotilla-example-app-").tempdir().expect("temp dir");
        Store { dir, ctl }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn ctl(&self, args: &[&str]) -> Output {
        Command::new(&self.ctl)
            .arg("--root")
            .arg(self.root())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctl")
    }

    /// stdout of a command that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(out.status.success(), "ctl {args:?} failed ({:?}): {}", out.status, String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let out = self.ctl(&["ps", "-a", "-q", "--no-trunc"]);
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = self.ctl(&["rm", "-f", id]);
        }
        // deepest first, so a mount inside another is gone before its parent is unmounted;
        // TempDir's delete must never descend into a mount that survived a failed run
        let prefix = format!("{}/", self.dir.path().display());
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/mounts")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        mounts.sort_by(|a, b| b.cmp(a));
        for m in mounts {
            let _ = Command::new("umount").args(["-l", &m]).status();
        }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// Whether the Debian mirror answers an HTTP request within 10 s.
fn mirror_answers() -> bool {
    Command::new("curl")
        .args(["-sf", "-m", "10", "-o", "/dev/null", MIRROR_PROBE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
