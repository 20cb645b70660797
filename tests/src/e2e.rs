//! Helpers the end-to-end tests of pods share (orchestration, networking): a three-machine
//! cluster with a busybox image in its registry, polling with a deadline, and the API reads and
//! `ctl` writes the scenarios are made of. Test-only code: failures panic with what was expected.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Cluster, Options};

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// Three nodes, each in a "machine" of its own (so clusters of tests running side by side share
/// no bridge or table), a registry holding `busybox:1` (CMD sleep), and the controllers started
/// with `controller_flags`; None, with a notice, without root or busybox-static.
pub fn three_machines(test: &str, controller_flags: &str) -> Option<(Cluster, String)> {
    if !is_root() {
        eprintln!("skipping {test}: machines and pods need root");
        return None;
    }
    let options = Options {
        replicas: 1,
        nodes: 3,
        registry: true,
        machines: true,
        env: vec![("FLOTILLA_CONTROLLER_FLAGS".into(), controller_flags.into())],
    };
    let c = Cluster::start(&options).expect("cluster of three machines");
    let image = c.push_busybox("busybox:1", &["sleep", "3600"]).expect("push busybox")?;
    Some((c, image))
}

/// Polls `probe` every 200 ms until it gives a value; panics after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// GET through replica 1 as the admin; None on any failure (callers poll).
pub async fn get(c: &Cluster, path: &str) -> Option<Value> {
    let resp = c.http().ok()?.get(c.url(1, path)).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

/// The pods of namespace default matching a label selector such as `app=web`.
pub async fn pods(c: &Cluster, selector: &str) -> Vec<Value> {
    let path = format!("/api/v1/namespaces/default/pods?labelSelector={}", selector.replace('=', "%3D").replace(',', "%2C"));
    get(c, &path).await.and_then(|l| l["items"].as_array().cloned()).unwrap_or_default()
}

/// Ready and not being deleted.
pub fn is_ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// Runs ctl against the cluster; panics with its output when it fails; returns stdout.
pub fn ctl_ok(c: &Cluster, args: &[&str]) -> String {
    let out = c.ctl(args).expect("run ctl");
    assert!(
        out.status.success(),
        "ctl {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ctl apply -f` of a manifest written to a new file in the cluster's directory.
pub fn apply(c: &Cluster, manifest: &Value) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = c.dir().join(format!("manifest-{n}.json"));
    std::fs::write(&file, serde_json::to_vec_pretty(manifest).expect("json")).expect("write manifest");
    ctl_ok(c, &["apply", "-f", file.to_str().unwrap_or_default()]);
}
