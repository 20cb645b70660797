//! Harness for Flotilla's end-to-end tests: starts real apiserver processes through
//! `deploy/local-cluster` (the same entry point users and benchmarks use), and gives tests
//! HTTPS clients for each replica. With [`Options::machines`] each node agent runs on a
//! "machine" (a network namespace on a test bridge) that a test can run commands on, cut off
//! and plug back in.
//!
//! A [`Cluster`] is torn down when dropped, also when the test panics, so no process or
//! directory outlives a failed test. Binaries are taken from the target directory the test
//! itself was built into (`cargo test --workspace` builds every binary first).

pub mod e2e;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

/// The checkout's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The directory holding the workspace's binaries for the profile this test was built with.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/PROFILE/deps/TEST-HASH -> target/PROFILE
    exe.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default()
}

/// A binary of the workspace; fails with what to do when it was not built.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let p = bin_dir().join(name);
    if !p.exists() {
        bail!("{} is missing: run the tests with `cargo test --workspace` so every binary is built", p.display());
    }
    Ok(p)
}

/// kubectl's path, or None (tests then skip with a printed notice).
pub fn kubectl() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|d| d.join("kubectl")).find(|p| p.is_file())
    })
}

/// What [`Cluster::start`] brings up.
#[derive(Clone, Debug)]
pub struct Options {
    pub replicas: usize,
    pub nodes: usize,
    /// Also serve an image registry on 127.0.0.1 ([`Cluster::registry`]).
    pub registry: bool,
    /// Extra environment for deploy/local-cluster (FLOTILLA_SNAPSHOT_EVERY, FLOTILLA_CONTROLLER_FLAGS).
    pub env: Vec<(String, String)>,
    /// Run each node agent on a "machine" of its own (`up --machines`): a network namespace with
    /// an address on a test bridge, see [`Cluster::machine`], [`Cluster::cut`], [`Cluster::node_ip`].
    pub machines: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options { replicas: 1, nodes: 0, registry: false, env: Vec::new(), machines: false }
    }
}

pub struct Cluster {
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
    token: String,
    ca_pem: Vec<u8>,
}

impl Cluster {
    /// Starts `replicas` apiserver replicas on loopback and waits until each answers.
    pub fn up(replicas: usize) -> anyhow::Result<Cluster> {
        Self::up_with(replicas, &[])
    }

    /// Like `up`, with extra environment for the script (e.g. FLOTILLA_SNAPSHOT_EVERY).
    ///
    /// The script picks free ports before the replicas bind them, so a test running alongside
    /// can take one in between; a failed start is therefore tried again (see `start`).
    pub fn up_with(replicas: usize, env: &[(&str, &str)]) -> anyhow::Result<Cluster> {
        Self::start(&Options { replicas, env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), ..Options::default() })
    }

    /// Starts a cluster as `options` describe: replicas, and with `nodes > 0` the scheduler, the
    /// controllers and that many node agents (node-1..node-N), waiting until every node is Ready.
    pub fn start(options: &Options) -> anyhow::Result<Cluster> {
        // Up to three attempts: on a loaded machine with tests starting clusters side by side, a
        // start can lose a race for a port; each failure is printed so it is not hidden.
        for attempt in 1..3 {
            match Self::try_up(options) {
                Ok(c) => return Ok(c),
                Err(e) => eprintln!("notice: starting a cluster ({options:?}) failed (attempt {attempt}), trying again: {e:#}"),
            }
        }
        Self::try_up(options)
    }

    fn try_up(options: &Options) -> anyhow::Result<Cluster> {
        binary("apiserver")?;
        binary("ctl")?;
        if options.nodes > 0 {
            for b in ["flotilla-scheduler", "flotilla-controllers", "flotilla-node-agent", "flotilla-monitor"] {
                binary(b)?;
            }
        }
        let dir = tempfile::Builder::new().prefix("flotilla-test-").tempdir().context("making a temporary directory")?;
        let mut cmd = Command::new(repo_root().join("deploy/local-cluster"));
        cmd.args(["up", "--dir"]).arg(dir.path()).args(["--replicas", &options.replicas.to_string()]);
        cmd.args(["--nodes", &options.nodes.to_string()]);
        if options.registry {
            cmd.arg("--registry");
        }
        if options.machines {
            cmd.arg("--machines");
        }
        cmd.env("FLOTILLA_BIN_DIR", bin_dir());
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        let out = cmd.output().context("running deploy/local-cluster up")?;
        let mut cluster = Cluster { dir, env: BTreeMap::new(), token: String::new(), ca_pem: Vec::new() };
        if !out.status.success() {
            bail!(
                "deploy/local-cluster up failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        cluster.reload_env()?;
        let tokens = std::fs::read_to_string(cluster.dir.path().join("tokens.csv")).context("reading tokens.csv")?;
        cluster.token = tokens
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| l.split(',').nth(2) == Some("admin"))
            .and_then(|l| l.split(',').next())
            .context("no admin token in tokens.csv")?
            .to_string();
        cluster.ca_pem = std::fs::read(cluster.dir.path().join("pki/ca.crt")).context("reading the cluster CA")?;
        Ok(cluster)
    }

    fn reload_env(&mut self) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(self.dir.path().join("cluster.env")).context("reading cluster.env")?;
        self.env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    pub fn admin_token(&self) -> &str {
        &self.token
    }

    pub fn ca_pem(&self) -> &[u8] {
        &self.ca_pem
    }

    /// Replica ids, 1..=N.
    pub fn replica_ids(&self) -> Vec<u64> {
        let n = self.env.keys().filter(|k| k.starts_with("REPLICA_") && k.ends_with("_API")).count() as u64;
        (1..=n).collect()
    }

    /// "HOST:PORT" of a replica's API: 127.0.0.1, or the test bridge's address with machines.
    pub fn api_addr(&self, id: u64) -> String {
        self.env.get(&format!("REPLICA_{id}_API")).cloned().unwrap_or_default()
    }

    pub fn url(&self, id: u64, path: &str) -> String {
        format!("https://{}{}", self.api_addr(id), path)
    }

    /// An HTTPS client that trusts the cluster CA and sends the given bearer token.
    pub fn http_with_token(&self, token: Option<&str>) -> anyhow::Result<reqwest::Client> {
        let ca = reqwest::Certificate::from_pem(&self.ca_pem).context("parsing the cluster CA")?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = token {
            headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {t}").parse()?);
        }
        Ok(reqwest::Client::builder()
            .add_root_certificate(ca)
            .tls_built_in_root_certs(false)
            .default_headers(headers)
            .timeout(Duration::from_secs(30))
            .build()?)
    }

    /// An admin HTTPS client.
    pub fn http(&self) -> anyhow::Result<reqwest::Client> {
        self.http_with_token(Some(&self.token))
    }

    /// Stops a replica with a signal ("KILL" for kill -9, "TERM" for a clean stop).
    pub fn stop_replica(&self, id: u64, signal: &str) -> anyhow::Result<()> {
        self.script(&["stop-replica", &id.to_string(), "--signal", signal])
    }

    pub fn start_replica(&self, id: u64) -> anyhow::Result<()> {
        self.script(&["start-replica", &id.to_string()])
    }

    /// Starts one more replica and adds it through the admin API; returns its id.
    pub fn add_replica(&mut self) -> anyhow::Result<u64> {
        self.script(&["add-replica"])?;
        self.reload_env()?;
        Ok(self.replica_ids().len() as u64)
    }

    fn script(&self, args: &[&str]) -> anyhow::Result<()> {
        let out = Command::new(repo_root().join("deploy/local-cluster"))
            .args(&args[..1])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&args[1..])
            .env("FLOTILLA_BIN_DIR", bin_dir())
            .output()
            .with_context(|| format!("running deploy/local-cluster {}", args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "deploy/local-cluster {} failed:\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// "127.0.0.1:PORT" of the registry started with `Options::registry`.
    pub fn registry(&self) -> Option<String> {
        self.env.get("REGISTRY").cloned()
    }

    /// A node agent's data directory (its runtime root is `runtime/` in it).
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.path().join(node)
    }

    /// Kills a node agent (SIGKILL); with `kill_containers`, its containers and pod sandboxes too,
    /// as if the machine had died.
    pub fn stop_node(&self, node: &str, kill_containers: bool) -> anyhow::Result<()> {
        if kill_containers {
            self.script(&["stop-node", node, "--kill-containers"])
        } else {
            self.script(&["stop-node", node])
        }
    }

    pub fn start_node(&self, node: &str) -> anyhow::Result<()> {
        self.script(&["start-node", node])
    }

    /// The node's address (its InternalIP): its machine's address on the test bridge, or
    /// 127.0.0.1 when the agents share the host's network; None when there is no such node.
    pub fn node_ip(&self, node: &str) -> Option<String> {
        if let Some(ip) = self.env.get(&format!("NODE_{node}_IP")) {
            return Some(ip.clone());
        }
        self.env.contains_key(&format!("NODE_{node}_AGENT")).then(|| "127.0.0.1".to_string())
    }

    /// The network namespace of the node's machine (/run/netns/NAME), for a process or thread
    /// that joins it with setns; None without machines.
    pub fn machine_netns(&self, node: &str) -> Option<PathBuf> {
        self.env.get(&format!("NODE_{node}_NETNS")).map(|n| Path::new("/run/netns").join(n))
    }

    /// The test bridge's address (the host as the machines see it), with machines.
    pub fn machines_gateway(&self) -> Option<String> {
        self.env.get("MACHINES_GATEWAY").cloned()
    }

    /// Runs `cmd` on the node's machine (`deploy/local-cluster machine`) and returns its output,
    /// whatever its exit status; an error only when it could not be run at all.
    pub fn machine(&self, node: &str, cmd: &[&str]) -> anyhow::Result<Output> {
        if self.machine_netns(node).is_none() {
            bail!("{node} is not a machine of this cluster: start it with Options::machines");
        }
        Command::new(repo_root().join("deploy/local-cluster"))
            .arg("machine")
            .arg("--dir")
            .arg(self.dir.path())
            .arg(node)
            .arg("--")
            .args(cmd)
            .env("FLOTILLA_BIN_DIR", bin_dir())
            .output()
            .with_context(|| format!("running {} on {node}", cmd.join(" ")))
    }

    /// Cuts the node's machine off the network: its link to the test bridge goes down.
    pub fn cut(&self, node: &str) -> anyhow::Result<()> {
        self.script(&["cut", node])
    }

    /// Plugs a machine that was cut off back in.
    pub fn heal(&self, node: &str) -> anyhow::Result<()> {
        self.script(&["heal", node])
    }

    /// Builds a busybox image (from the host's busybox-static) named `REGISTRY/NAME` in a scratch
    /// store, with `cmd` as its CMD, and pushes it to the cluster's registry; returns the reference.
    /// None (with a notice) when busybox-static is not installed.
    pub fn push_busybox(&self, name: &str, cmd: &[&str]) -> anyhow::Result<Option<String>> {
        let registry = self.registry().context("the cluster was started without a registry")?;
        let Some(busybox) = ["/bin/busybox", "/usr/bin/busybox"].into_iter().map(Path::new).find(|p| p.is_file()) else {
            eprintln!("notice: busybox-static is not installed; skipping");
            return Ok(None);
        };
        let work = tempfile::Builder::new().prefix("flotilla-image-").tempdir()?;
        let rootfs = work.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin"))?;
        std::fs::create_dir_all(rootfs.join("etc"))?;
        std::fs::create_dir_all(rootfs.join("tmp"))?;
        std::fs::copy(busybox, rootfs.join("bin/busybox"))?;
        for applet in [
            "sh", "cat", "echo", "sleep", "true", "false", "ls", "hostname", "httpd", "nc", "wget", "env", "kill", "test",
            "nslookup", "ip", "seq", "timeout", "grep", "date", "mkdir", "ps", "printf", "head", "tail", "wc",
        ] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))?;
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n")?;
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnobody:x:65534:\n")?;
        let reference = format!("{registry}/{name}");
        let store = work.path().join("store");
        let ctl = binary("ctl")?;
        let tar = Command::new("tar").arg("-C").arg(&rootfs).args(["-c", "."]).output().context("running tar")?;
        if !tar.status.success() {
            bail!("tar of the busybox root failed: {}", String::from_utf8_lossy(&tar.stderr));
        }
        let mut import = Command::new(&ctl);
        import.arg("--root").arg(&store).args(["image", "import"]);
        if !cmd.is_empty() {
            import.arg("--change").arg(format!("CMD {}", serde_json::to_string(cmd)?));
        }
        import.args(["-", &reference]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = import.spawn().context("running ctl image import")?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin.write_all(&tar.stdout)?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("ctl image import failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let out = Command::new(&ctl).arg("--root").arg(&store).args(["push", &reference]).output()?;
        if !out.status.success() {
            bail!("ctl push {reference} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        }
        Ok(Some(reference))
    }

    /// The cluster's own view of its replicas (GET /flotilla/v1/cluster on the given replica).
    pub async fn status(&self, via: u64) -> anyhow::Result<Value> {
        let resp = self.http()?.get(self.url(via, "/flotilla/v1/cluster")).send().await?;
        Ok(resp.error_for_status()?.json().await?)
    }

    /// The current leader's id, waiting up to `timeout` for one to be elected and seen by `via`.
    pub async fn leader(&self, via: u64, timeout: Duration) -> anyhow::Result<u64> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(s) = self.status(via).await {
                if let Some(l) = s.get("leader").and_then(Value::as_u64) {
                    let leader_healthy = s["replicas"]
                        .as_array()
                        .is_some_and(|rs| rs.iter().any(|r| r["id"] == l && r["healthy"] == true && r["role"] == "leader"));
                    if leader_healthy {
                        return Ok(l);
                    }
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("no leader seen through replica {via} within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs the `ctl` binary with this cluster's kubeconfig.
    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<Output> {
        Ok(Command::new(binary("ctl")?).arg("--kubeconfig").arg(self.kubeconfig()).args(args).output()?)
    }

    /// Runs kubectl with this cluster's kubeconfig, or None when kubectl is absent.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<Option<Output>> {
        let Some(k) = kubectl() else { return Ok(None) };
        let mut cmd = Command::new(k);
        cmd.arg("--kubeconfig").arg(self.kubeconfig()).args(args);
        cmd.env("KUBECACHEDIR", self.dir.path().join("kubecache"));
        cmd.env("HOME", self.dir.path());
        let out = match stdin {
            Some(input) => {
                use std::io::Write;
                cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
                let mut child = cmd.spawn()?;
                if let Some(mut s) = child.stdin.take() {
                    s.write_all(input.as_bytes())?;
                }
                child.wait_with_output()?
            }
            None => cmd.output()?,
        };
        Ok(Some(out))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("deploy/local-cluster"))
            .arg("down")
            .arg("--dir")
            .arg(self.dir.path())
            .env("FLOTILLA_BIN_DIR", bin_dir())
            .output();
    }
}
