//! The README's quick start, end to end: `deploy/quickstart up` from a clean state directory
//! starts a one-machine cluster, builds the Debian base image and the example app, deploys it
//! behind a NodePort Service; the test curls the page through that port, runs `up` a second time
//! (it must be idempotent), then `deploy/quickstart down`, and checks that nothing is left:
//! processes, mounts, the node's bridge and nftables tables, pod network namespaces, cgroups.
//!
//! The state lives in a temporary directory (FLOTILLA_QUICKSTART_DIR) and the binaries are this
//! build's (FLOTILLA_BIN_DIR), so /var/lib/flotilla is not touched. It needs root and
//! deb.debian.org (debootstrap and the app's `apt-get install`); without either it prints a notice
//! and passes. The NodePort comes from FLOTILLA_QUICKSTART_NODEPORT or is a random one no
//! nftables rule on the host uses yet.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;

const MIRROR_PROBE: &str = "http://deb.debian.org/debian/dists/bookworm/Release";
/// The node `deploy/quickstart` starts through `deploy/local-cluster --nodes 1`.
const NODE: &str = "node-1";

#[test]
fn quickstart_up_serves_the_app_and_down_leaves_nothing() {
    let test = "quickstart_up_serves_the_app_and_down_leaves_nothing";
    if !is_root() {
        eprintln!("skipping {test}: the quick start needs root");
        return;
    }
    if !mirror_answers() {
        eprintln!("skipping {test}: {MIRROR_PROBE} did not answer within 10 s");
        return;
    }
    let started = Instant::now();
    let tmp = tempfile::Builder::new().prefix("flotilla-quickstart-").tempdir().expect("temp dir");
    // A state directory that does not exist yet, as on a fresh machine: `down` removes it whole.
    let state = tmp.path().join("state");
    let nodeport = nodeport();
    let quickstart = QuickStart { state: state.clone(), nodeport };

    let hash = node_hash(NODE);
    let bridge = format!("flb-{hash}");
    let had_flotilla0 = interfaces().iter().any(|i| i == "flotilla0");

    let out = quickstart.run("up");
    assert!(out.status.success(), "quickstart up failed ({:?}): {}", out.status, tail(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("http://127.0.0.1:{nodeport}/")), "up does not say where the app is: {stdout}");
    assert!(stdout.contains("Try next"), "up does not say what to try next: {stdout}");

    let expected = std::fs::read_to_string(tests::repo_root().join("deploy/examples/app/index.html")).expect("read index.html");
    assert_eq!(page(nodeport).trim_end(), expected.trim_end());

    // A second `up` finds everything in place and must leave the app answering.
    let out = quickstart.run("up");
    assert!(out.status.success(), "a second quickstart up failed ({:?}): {}", out.status, tail(&out.stderr));
    assert_eq!(page(nodeport).trim_end(), expected.trim_end());

    // What the cluster made, to look for after `down`.
    let cluster = state.join("cluster");
    let ctl = tests::binary("ctl").expect("ctl binary");
    let ps = Command::new(&ctl)
        .arg("--root")
        .arg(cluster.join(NODE).join("runtime"))
        .args(["ps", "-a", "-q", "--no-trunc"])
        .output()
        .expect("run ctl ps");
    let containers: Vec<String> = String::from_utf8_lossy(&ps.stdout).lines().map(str::to_string).collect();
    assert!(containers.len() >= 2, "the app's two pods should have containers: {containers:?}");
    // The pods' records are in the agent's run directory (a tmpfs under the node's directory).
    let pods_dir = cluster.join(NODE).join("run").join("pods");
    let pods: Vec<String> = std::fs::read_dir(&pods_dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(!pods.is_empty(), "no pod directories under {}", pods_dir.display());
    assert!(interfaces().contains(&bridge), "the node's bridge {bridge} should exist while the cluster runs");

    let out = quickstart.run("down");
    assert!(out.status.success(), "quickstart down failed ({:?}): {}", out.status, tail(&out.stderr));
    // `down` is idempotent.
    let out = quickstart.run("down");
    assert!(out.status.success(), "a second quickstart down failed ({:?}): {}", out.status, tail(&out.stderr));

    assert!(!state.exists(), "down left {}", state.display());
    let state_text = state.to_string_lossy().into_owned();
    let left: Vec<String> = processes().into_iter().filter(|(_, cmdline)| cmdline.contains(&state_text)).map(|(pid, c)| format!("{pid}: {c}")).collect();
    assert!(left.is_empty(), "processes of the quick start are still running: {left:?}");
    let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&state_text))
        .map(str::to_string)
        .collect();
    assert!(mounts.is_empty(), "mounts left under {}: {mounts:?}", state.display());
    for uid in &pods {
        let netns = Path::new("/run/flotilla/netns").join(uid);
        assert!(!netns.exists(), "the pod network namespace {} is left", netns.display());
    }
    for id in &containers {
        let left = cgroups_of(id);
        assert!(left.is_empty(), "cgroups of container {id} are left: {left:?}");
    }

    // The bridge and tables are named by the node name, which other clusters on this host may
    // share: only judge them when no other node agent with that name is running.
    if other_agent_named(NODE) {
        eprintln!("{test}: another {NODE} agent runs on this host; not checking {bridge} and its nftables tables");
    } else {
        assert!(!interfaces().contains(&bridge), "down left the bridge {bridge}");
        let tables = nft_tables();
        let ours: Vec<&String> = tables.iter().filter(|t| t.starts_with("flotilla-") && t.ends_with(&hash)).collect();
        assert!(ours.is_empty(), "down left nftables tables {ours:?}");
    }
    if !had_flotilla0 && interfaces().iter().any(|i| i == "flotilla0") && !other_flotilla_running() {
        panic!("flotilla0 appeared during the quick start and is still there");
    }
    eprintln!("{test} took {:?}", started.elapsed());
}

/// Runs `deploy/quickstart VERB` against one state directory; dropping it runs `down`, so a
/// failed assertion does not leave a cluster behind.
struct QuickStart {
    state: PathBuf,
    nodeport: u16,
}

impl QuickStart {
    fn run(&self, verb: &str) -> Output {
        Command::new(tests::repo_root().join("deploy/quickstart"))
            .arg(verb)
            .env("FLOTILLA_QUICKSTART_DIR", &self.state)
            .env("FLOTILLA_BIN_DIR", tests::bin_dir())
            .env("FLOTILLA_QUICKSTART_NODEPORT", self.nodeport.to_string())
            // this test is about the local-cluster path; systemd units are not this test's to install
            .env("FLOTILLA_QUICKSTART_SYSTEMD", "0")
            .stdin(Stdio::null())
            .output()
            .expect("run deploy/quickstart")
    }
}

impl Drop for QuickStart {
    fn drop(&mut self) {
        if self.state.exists() {
            let _ = self.run("down");
        }
    }
}

/// The page on the NodePort; the rollout is complete when `up` returns, but give the Service's
/// rules a few seconds on a loaded machine.
fn page(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("curl")
            .args(["-sf", "-m", "3", &format!("http://127.0.0.1:{port}/index.html")])
            .output()
            .expect("run curl");
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if Instant::now() > deadline {
            panic!("http://127.0.0.1:{port}/index.html did not answer within 30 s");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// FLOTILLA_QUICKSTART_NODEPORT, or a random NodePort no nftables rule on this host mentions.
fn nodeport() -> u16 {
    if let Some(p) = std::env::var("FLOTILLA_QUICKSTART_NODEPORT").ok().and_then(|p| p.parse().ok()) {
        return p;
    }
    let rules = Command::new("nft").args(["list", "ruleset"]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let mut rng = rand::rng();
    loop {
        let p: u16 = rng.random_range(30000..=32767);
        if !rules.contains(&format!("dport {p}")) && !rules.contains(&format!("{p} :")) {
            return p;
        }
    }
}

/// The first 8 hex digits of SHA-256 of the node name, as the agent names its bridge and tables.
fn node_hash(node: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", "printf '%s' \"$1\" | sha256sum", "sh", node])
        .output()
        .expect("run sha256sum");
    String::from_utf8_lossy(&out.stdout).chars().take(8).collect()
}

fn interfaces() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

fn nft_tables() -> Vec<String> {
    let out = Command::new("nft").args(["list", "tables"]).output().expect("run nft list tables");
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split_whitespace().nth(2).map(str::to_string)).collect()
}

/// (pid, command line) of every process.
fn processes() -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            Some((pid, String::from_utf8_lossy(&raw).replace('\0', " ")))
        })
        .collect()
}

/// Whether a node agent named NODE runs (another cluster's: ours are stopped when this is asked).
fn other_agent_named(node: &str) -> bool {
    processes().iter().any(|(_, c)| c.contains("flotilla-node-agent") && c.split(' ').any(|w| w == node))
}

/// Whether other Flotilla agents or containers' `ctl` run on this host (they may make flotilla0).
fn other_flotilla_running() -> bool {
    processes().iter().any(|(_, c)| {
        let exe = c.split(' ').next().unwrap_or("");
        exe.ends_with("/ctl") || exe.ends_with("flotilla-node-agent")
    })
}

/// Cgroup directories of a container under the `flotilla` parent, v1 (per controller) or v2.
fn cgroups_of(id: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut found = Vec::new();
    let v2 = root.join("flotilla").join(id);
    if v2.exists() {
        found.push(v2);
    }
    if let Ok(dir) = std::fs::read_dir(root) {
        for controller in dir.filter_map(|e| e.ok()) {
            let p = controller.path().join("flotilla").join(id);
            if p.exists() {
                found.push(p);
            }
        }
    }
    found
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
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
