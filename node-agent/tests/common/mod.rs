//! What the node agent's integration tests share: the [`Agent`] guard, which kills the agent and
//! removes what it made on the host (containers, network namespaces, veths, the bridge, the
//! nftables tables, mounts under its data directory), also when a test panics; and small helpers.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use node_agent::network;

/// A node agent under test and what it made.
pub struct Agent {
    pub child: Option<Child>,
    pub data: tempfile::TempDir,
    pub ctl: PathBuf,
    /// Names the node's bridge and nftables tables.
    pub node_name: String,
    pub pod_uids: Vec<String>,
}

impl Agent {
    /// An agent (not started yet) with a fresh data directory, for node `node_name`.
    pub fn new(node_name: &str) -> Agent {
        Agent {
            child: None,
            data: tempfile::Builder::new().prefix("flotilla-agent-test-").tempdir().expect("tempdir"),
            ctl: tests::binary("ctl").expect("ctl binary"),
            node_name: node_name.to_string(),
            pod_uids: Vec::new(),
        }
    }

    pub fn runtime_root(&self) -> PathBuf {
        self.data.path().join("runtime")
    }

    /// Runs `ctl --root RUNTIME ARGS` with `stdin`.
    pub fn ctl(&self, args: &[&str], stdin: &[u8]) -> std::process::Output {
        let mut child = Command::new(&self.ctl)
            .arg("--root")
            .arg(self.runtime_root())
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

    /// The ids of the runtime's containers (stopped ones too with `all`).
    pub fn containers(&self, all: bool) -> Vec<String> {
        let args: &[&str] = if all { &["ps", "-a", "-q", "--no-trunc"] } else { &["ps", "-q", "--no-trunc"] };
        let out = self.ctl(args, b"");
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
    }

    /// Kills the agent and removes what it made (also what Drop does).
    pub fn cleanup(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for id in self.containers(true) {
            let _ = self.ctl(&["rm", "-f", &id], b"");
        }
        for uid in &self.pod_uids {
            let _ = Command::new("ip").args(["link", "del", &network::veth_name(uid)]).output();
            let path = Path::new(node_agent::sandbox::NETNS_DIR).join(uid);
            let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_file(&path);
        }
        let _ = Command::new("ip").args(["link", "del", &network::bridge_name(&self.node_name)]).output();
        let _ = Command::new("nft").args(["delete", "table", "inet", &network::table_name(&self.node_name)]).output();
        // The Service table the agent's proxy made (a killed agent cannot remove it itself).
        let _ = Command::new("nft").args(["delete", "table", "inet", &node_agent::proxy::table_name(&self.node_name)]).output();
        // Whatever is still mounted under the data directory (overlays, volumes), deepest first.
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let prefix = self.data.path().to_string_lossy().into_owned();
        let mut points: Vec<String> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(runtime::container::unescape_mountinfo)
            .filter(|p| p.starts_with(&prefix))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = nix::mount::umount2(Path::new(&p), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.data.path().join("agent.log")).unwrap_or_default();
            eprintln!("--- the agent's log ---\n{log}--- end of the agent's log ---");
        }
        self.cleanup();
    }
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Polls `check` every 250 ms until it gives a value; panics naming `what` after `timeout`.
pub async fn wait_for<T>(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
