//! Benchmark of the apiserver against etcd, run by `cargo bench -p tests --bench apiserver`
//! after `cargo build --release -p apiserver -p ctl` (BENCHMARKS.md at the root has the figures).
//!
//! It starts a 3-replica Flotilla cluster through the test harness and, when `etcd` is on PATH,
//! a 3-member etcd cluster on loopback with TLS on its client and peer ports (the Flotilla
//! cluster's CA and server certificate are reused), then drives the same load at both:
//! creates and updates of ~100-byte objects at 1, 16 and 64 concurrent clients, each client
//! with its own HTTPS connection, spread over the three members and again aimed at the leader
//! only; then watch delivery latency on a follower. Both sides pay HTTPS + JSON: Flotilla
//! through its Kubernetes paths, etcd through its v3 JSON gateway. The two systems' cells are
//! interleaved so that noise from other work on the machine hits both alike.
//!
//! Every loop is bounded by a deadline and a count; all traffic goes to 127.0.0.1. Both
//! clusters are stopped and their data removed by guards, also when the benchmark panics.
//! `FLOTILLA_BENCH_SECS` sets the seconds per cell (default 4); `FLOTILLA_BENCH_CLIENTS` (a
//! comma-separated list such as `1` or `1,16`) runs only those concurrency levels.
//!
//! This is a hand-written harness rather than criterion: a cell is a timed load at a given
//! concurrency against external processes, not a closure to iterate, and the output wanted is
//! a side-by-side table of throughput and tail latency.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine as _;
use futures::StreamExt;
use serde_json::{json, Value};
use tests::Cluster;

/// Concurrent clients per cell.
const LEVELS: [usize; 3] = [1, 16, 64];
/// Upper bound on the operations of one cell, whatever its duration.
const CELL_CAP: usize = 100_000;
/// Writes timed for watch delivery, and the time the whole watch run may take.
const WATCH_WRITES: usize = 300;
const WATCH_BUDGET: Duration = Duration::from_secs(30);
/// How long one watch event may take before it counts as lost.
const EVENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Objects a client cycles through when updating.
const UPDATE_SET: usize = 16;
/// Timeout of one request of the load.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let secs = std::env::var("FLOTILLA_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(4)
        .clamp(1, 60);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(Duration::from_secs(secs))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cell: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    println!(
        "starting a 3-replica Flotilla cluster (binaries from {})",
        tests::bin_dir().display()
    );
    let cluster = tokio::task::block_in_place(|| Cluster::up(3))
        .context("starting the Flotilla cluster; build it first with `cargo build --release -p apiserver -p ctl`")?;
    let leader_id = cluster.leader(1, Duration::from_secs(20)).await?;
    let ca_pem = cluster.ca_pem().to_vec();
    let flotilla = System {
        kind: Kind::Flotilla,
        endpoints: cluster
            .replica_ids()
            .iter()
            .map(|id| cluster.url(*id, ""))
            .collect(),
        leader: cluster
            .replica_ids()
            .iter()
            .position(|id| *id == leader_id)
            .with_context(|| format!("the leader {leader_id} is not among the replicas"))?,
        ca_pem: ca_pem.clone(),
        token: Some(cluster.admin_token().to_string()),
        pids: cluster
            .replica_ids()
            .iter()
            .filter_map(|id| {
                std::fs::read_to_string(cluster.dir().join(format!("run/replica-{id}.pid"))).ok()
            })
            .filter_map(|s| s.trim().parse().ok())
            .collect(),
    };
    println!(
        "flotilla: replicas {:?}, leader {}",
        flotilla.endpoints, flotilla.endpoints[flotilla.leader]
    );

    let etcd_guard = match which("etcd") {
        Some(bin) => {
            let pki = cluster.dir().join("pki");
            let guard = tokio::task::block_in_place(|| EtcdCluster::start(&bin, &pki))?;
            Some(guard)
        }
        None => {
            println!("etcd is not on PATH: skipping the etcd side (on Debian: apt-get install etcd-server etcd-client)");
            None
        }
    };
    let etcd = match &etcd_guard {
        Some(g) => {
            let mut sys = System {
                kind: Kind::Etcd,
                endpoints: g.client_urls.clone(),
                leader: 0,
                ca_pem: ca_pem.clone(),
                token: None,
                pids: g.children.iter().map(Child::id).collect(),
            };
            sys.leader = g.wait_ready(&sys).await?;
            println!(
                "etcd {}: members {:?}, leader {}",
                g.version, sys.endpoints, sys.endpoints[sys.leader]
            );
            Some(sys)
        }
        None => None,
    };

    let levels = levels_from_env()?;
    let mut rows: Vec<Row> = Vec::new();
    for &clients in &levels {
        for op in [Op::Create, Op::Update] {
            for mode in [Mode::Spread, Mode::Leader] {
                let f = cell_run(&flotilla, op, mode, clients, cell).await?;
                print_cell("flotilla", op, mode, clients, &f);
                let e = match &etcd {
                    Some(sys) => {
                        let e = cell_run(sys, op, mode, clients, cell).await?;
                        print_cell("etcd", op, mode, clients, &e);
                        Some(e)
                    }
                    None => None,
                };
                rows.push(Row {
                    op,
                    mode,
                    clients,
                    flotilla: f,
                    etcd: e,
                });
            }
        }
    }

    let fw = watch_run(&flotilla).await?;
    let ew = match &etcd {
        Some(sys) => Some(watch_run(sys).await?),
        None => None,
    };

    println!();
    println!(
        "{}",
        report(
            &rows,
            cell,
            &fw,
            ew.as_ref(),
            etcd_guard.as_ref().map(|g| g.version.as_str())
        )
    );
    println!("total time {:.0} s", started.elapsed().as_secs_f64());
    drop(etcd_guard);
    drop(cluster);
    Ok(())
}

// ---- the systems under test ----

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Flotilla,
    Etcd,
}

/// One cluster as the load sees it: its members' base URLs and which one leads.
struct System {
    kind: Kind,
    endpoints: Vec<String>,
    leader: usize,
    ca_pem: Vec<u8>,
    token: Option<String>,
    /// the members' process ids, for their CPU time
    pids: Vec<u32>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Update,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Update => "update",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// client i talks to member i mod 3, as clients given every server address do
    Spread,
    /// every client talks to the leader
    Leader,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Spread => "spread",
            Mode::Leader => "leader-only",
        }
    }
}

/// An object a client owns: its name and the version it last saw.
#[derive(Clone)]
struct Obj {
    name: String,
    rv: String,
}

impl System {
    /// A client with its own connection pool, so each simulated client has its own connection.
    fn client(&self, timeout: Option<Duration>) -> anyhow::Result<reqwest::Client> {
        let ca = reqwest::Certificate::from_pem(&self.ca_pem).context("parsing the cluster CA")?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = &self.token {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {t}").parse()?,
            );
        }
        let mut b = reqwest::Client::builder()
            .add_root_certificate(ca)
            .tls_built_in_root_certs(false)
            .default_headers(headers)
            .no_proxy();
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        Ok(b.build()?)
    }
}

/// The requests of the load, which depend only on the kind of system.
impl Kind {
    /// An untimed request that opens the client's connection before a cell starts.
    async fn warm_up(self, http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
        let resp = match self {
            Kind::Flotilla => http.get(format!("{base}/readyz")).send().await?,
            Kind::Etcd => {
                http.post(format!("{base}/v3/maintenance/status"))
                    .json(&json!({}))
                    .send()
                    .await?
            }
        };
        resp.error_for_status()?;
        Ok(())
    }

    /// Creates `name` and returns its version.
    async fn create(
        self,
        http: &reqwest::Client,
        base: &str,
        name: &str,
        n: u64,
    ) -> anyhow::Result<String> {
        match self {
            Kind::Flotilla => {
                let body = configmap(name, None, n);
                let resp = http
                    .post(format!("{base}/api/v1/namespaces/default/configmaps"))
                    .json(&body)
                    .send()
                    .await?;
                flotilla_rv(resp).await
            }
            Kind::Etcd => etcd_put(http, base, name, n).await,
        }
    }

    /// Replaces `obj` with new data at its known version, and records the new version.
    async fn update(
        self,
        http: &reqwest::Client,
        base: &str,
        obj: &mut Obj,
        n: u64,
    ) -> anyhow::Result<()> {
        obj.rv = match self {
            Kind::Flotilla => {
                let body = configmap(&obj.name, Some(&obj.rv), n);
                let url = format!("{base}/api/v1/namespaces/default/configmaps/{}", obj.name);
                flotilla_rv(http.put(url).json(&body).send().await?).await?
            }
            Kind::Etcd => etcd_put(http, base, &obj.name, n).await?,
        };
        Ok(())
    }
}

/// A ConfigMap with ~100 bytes of data.
fn configmap(name: &str, rv: Option<&str>, n: u64) -> Value {
    let mut meta = json!({ "name": name, "namespace": "default" });
    if let Some(rv) = rv {
        meta["resourceVersion"] = json!(rv);
    }
    json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": { "payload": payload(n) } })
}

fn payload(n: u64) -> String {
    format!("{n:0>100}")
}

async fn flotilla_rv(resp: reqwest::Response) -> anyhow::Result<String> {
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        bail!("{status}: {}", text.chars().take(200).collect::<String>());
    }
    let v: Value = resp.json().await?;
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string)
        .context("the answer has no metadata.resourceVersion")
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn etcd_key(name: &str) -> String {
    format!("/registry/configmaps/default/{name}")
}

/// A put whose value is the same ConfigMap JSON that Flotilla stores, so both move as many bytes.
async fn etcd_put(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    n: u64,
) -> anyhow::Result<String> {
    let value = configmap(name, None, n).to_string();
    let body = json!({ "key": b64(&etcd_key(name)), "value": b64(&value) });
    let resp = http
        .post(format!("{base}/v3/kv/put"))
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        bail!("{status}: {}", text.chars().take(200).collect::<String>());
    }
    let v: Value = resp.json().await?;
    // the gateway writes int64 fields as JSON strings
    v.pointer("/header/revision")
        .and_then(|r| {
            r.as_str()
                .map(str::to_string)
                .or_else(|| r.as_u64().map(|n| n.to_string()))
        })
        .context("the put answer has no header.revision")
}

// ---- the load ----

/// What one cell measured.
#[derive(Default)]
struct Stats {
    ok: usize,
    errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
    /// sorted
    latencies: Vec<Duration>,
    /// CPU time the three members used in the timed part, per successful operation
    server_cpu_ms_per_op: Option<f64>,
}

impl Stats {
    fn ops_per_sec(&self) -> f64 {
        if self.elapsed.is_zero() {
            return 0.0;
        }
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// The p-quantile (0..=1) in milliseconds, nearest rank.
    fn ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank =
            ((p * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1].as_secs_f64() * 1000.0
    }
}

/// One client's share of a cell.
struct WorkerOut {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
}

/// The concurrency levels to run: `FLOTILLA_BENCH_CLIENTS` if set, else all of [`LEVELS`].
fn levels_from_env() -> anyhow::Result<Vec<usize>> {
    let Ok(list) = std::env::var("FLOTILLA_BENCH_CLIENTS") else {
        return Ok(LEVELS.to_vec());
    };
    list.split(',')
        .map(|n| match n.trim().parse::<usize>() {
            Ok(n) if (1..=1024).contains(&n) => Ok(n),
            _ => bail!("FLOTILLA_BENCH_CLIENTS: {n:?} is not a client count from 1 to 1024; give a list such as 1,16,64"),
        })
        .collect()
}

/// Runs `clients` concurrent clients doing `op` for `dur` (or until the cell's cap).
/// Updates act on objects the client creates before the timed part starts.
async fn cell_run(
    sys: &System,
    op: Op,
    mode: Mode,
    clients: usize,
    dur: Duration,
) -> anyhow::Result<Stats> {
    let barrier = Arc::new(tokio::sync::Barrier::new(clients + 1));
    let start_at = Arc::new(tokio::sync::OnceCell::<Instant>::new());
    let per_client_cap = (CELL_CAP / clients).max(1);
    let sys_kind = if sys.kind == Kind::Flotilla { "f" } else { "e" };
    let mut tasks = Vec::with_capacity(clients);
    for i in 0..clients {
        let http = sys.client(Some(REQUEST_TIMEOUT))?;
        let base = match mode {
            Mode::Spread => sys.endpoints[i % sys.endpoints.len()].clone(),
            Mode::Leader => sys.endpoints[sys.leader].clone(),
        };
        let prefix = format!(
            "bench-{sys_kind}-{}-{}-c{clients}-w{i}",
            op.name(),
            mode.name()
        );
        let barrier = barrier.clone();
        let start_at = start_at.clone();
        let kind = sys.kind;
        tasks.push(tokio::spawn(async move {
            // set up, concurrently but untimed: the connection, and for updates the objects
            let setup = async {
                kind.warm_up(&http, &base)
                    .await
                    .with_context(|| format!("warming up a client of {base}"))?;
                let mut owned = Vec::new();
                if op == Op::Update {
                    for k in 0..UPDATE_SET {
                        let name = format!("{prefix}-{k}");
                        let rv = kind
                            .create(&http, &base, &name, 0)
                            .await
                            .with_context(|| format!("creating {name} on {base}"))?;
                        owned.push(Obj { name, rv });
                    }
                }
                anyhow::Ok(owned)
            }
            .await;
            // every task reaches the barrier, also after a failed set-up, so none waits forever
            barrier.wait().await;
            let mut owned = setup?;
            let t0 = *start_at.get_or_init(|| async { Instant::now() }).await;
            let deadline = t0 + dur;
            let mut out = WorkerOut {
                latencies: Vec::with_capacity(4096),
                errors: 0,
                first_error: None,
            };
            let mut n: u64 = 1;
            while Instant::now() < deadline && out.latencies.len() + out.errors < per_client_cap {
                let t = Instant::now();
                let res = match op {
                    Op::Create => kind
                        .create(&http, &base, &format!("{prefix}-{n}"), n)
                        .await
                        .map(|_| ()),
                    Op::Update => {
                        let k = (n as usize) % owned.len();
                        kind.update(&http, &base, &mut owned[k], n).await
                    }
                };
                match res {
                    Ok(()) => out.latencies.push(t.elapsed()),
                    Err(e) => {
                        out.errors += 1;
                        out.first_error
                            .get_or_insert_with(|| format!("{base}: {e:#}"));
                    }
                }
                n += 1;
            }
            anyhow::Ok(out)
        }));
    }
    barrier.wait().await;
    let t0 = *start_at.get_or_init(|| async { Instant::now() }).await;
    let cpu0 = cpu_ticks(&sys.pids);
    let mut stats = Stats::default();
    for t in tasks {
        let out = t.await.context("a load client panicked")??;
        stats.ok += out.latencies.len();
        stats.errors += out.errors;
        stats.latencies.extend(out.latencies);
        if stats.first_error.is_none() {
            stats.first_error = out.first_error;
        }
    }
    stats.elapsed = t0.elapsed();
    stats.latencies.sort_unstable();
    if let (Some(a), Some(b)) = (cpu0, cpu_ticks(&sys.pids)) {
        if stats.ok > 0 {
            stats.server_cpu_ms_per_op = Some(
                (b.saturating_sub(a)) as f64 * 1000.0 / clock_ticks() as f64 / stats.ok as f64,
            );
        }
    }
    Ok(stats)
}

fn print_cell(who: &str, op: Op, mode: Mode, clients: usize, s: &Stats) {
    println!(
        "{who:>8} {:<6} {:<11} c={clients:<3} {:>8.1} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  server cpu {:>5.2} ms/op  errors {}{}",
        op.name(),
        mode.name(),
        s.ops_per_sec(),
        s.ms(0.50),
        s.ms(0.99),
        s.ms(1.0),
        s.server_cpu_ms_per_op.unwrap_or(f64::NAN),
        s.errors,
        s.first_error.as_deref().map(|e| format!(" (first: {e})")).unwrap_or_default()
    );
}

// ---- watch delivery ----

/// Time from a write's acknowledgement (by the leader) to its event on a follower's watch.
#[derive(Default)]
struct WatchStats {
    /// sorted; an event that arrived before the acknowledgement counts as zero
    latencies: Vec<Duration>,
    /// sorted; from sending the write to the event's arrival
    from_send: Vec<Duration>,
    before_ack: usize,
    lost: usize,
}

impl WatchStats {
    fn ms(&self, p: f64) -> f64 {
        Stats {
            latencies: self.latencies.clone(),
            ..Default::default()
        }
        .ms(p)
    }

    fn send_ms(&self, p: f64) -> f64 {
        Stats {
            latencies: self.from_send.clone(),
            ..Default::default()
        }
        .ms(p)
    }
}

/// A watch event: the version it carries and when its bytes arrived.
type Arrival = (u64, Instant);

async fn watch_run(sys: &System) -> anyhow::Result<WatchStats> {
    let follower = (sys.leader + 1) % sys.endpoints.len();
    let leader_base = sys.endpoints[sys.leader].clone();
    let follower_base = sys.endpoints[follower].clone();
    let http = sys.client(Some(REQUEST_TIMEOUT))?;
    // the watch stream lives for the whole run: no overall timeout on its client
    let watch_http = sys.client(None)?;
    let name = "bench-watch-probe";
    let mut obj = Obj {
        name: name.to_string(),
        rv: sys.kind.create(&http, &leader_base, name, 0).await?,
    };
    let from: u64 = obj
        .rv
        .parse()
        .context("the probe's version is not a number")?;

    let resp = match sys.kind {
        Kind::Flotilla => {
            let url = format!(
                "{follower_base}/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={from}&fieldSelector=metadata.name%3D{name}"
            );
            watch_http.get(url).send().await?
        }
        Kind::Etcd => {
            let body = json!({ "create_request": { "key": b64(&etcd_key(name)), "start_revision": (from + 1).to_string() } });
            watch_http
                .post(format!("{follower_base}/v3/watch"))
                .json(&body)
                .send()
                .await?
        }
    };
    if !resp.status().is_success() {
        bail!(
            "opening the watch on {follower_base} answered {}",
            resp.status()
        );
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<Arrival, String>>();
    let kind = sys.kind;
    let reader = tokio::spawn(async move {
        let mut body = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = body.next().await {
            let at = Instant::now();
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(format!("reading the watch: {e}")));
                    return;
                }
            };
            buf.extend_from_slice(&chunk);
            let values = match drain_json(&mut buf) {
                Ok(v) => v,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            for v in values {
                for rv in event_versions(kind, &v) {
                    if tx.send(Ok((rv, at))).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.send(Err("the watch stream ended".to_string()));
    });

    // let the watch register before the first timed write
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut stats = WatchStats::default();
    let budget_end = Instant::now() + WATCH_BUDGET;
    let mut n = 1;
    while n <= WATCH_WRITES as u64 && Instant::now() < budget_end {
        let sent = Instant::now();
        sys.kind
            .update(&http, &leader_base, &mut obj, n)
            .await
            .context("writing the watch probe through the leader")?;
        let acked = Instant::now();
        let want: u64 = obj
            .rv
            .parse()
            .context("the probe's version is not a number")?;
        let wait_end = acked + EVENT_TIMEOUT;
        loop {
            match tokio::time::timeout_at(wait_end.into(), rx.recv()).await {
                Ok(Some(Ok((rv, at)))) if rv >= want => {
                    if at < acked {
                        stats.before_ack += 1;
                    }
                    stats.latencies.push(at.saturating_duration_since(acked));
                    stats.from_send.push(at.saturating_duration_since(sent));
                    break;
                }
                Ok(Some(Ok(_older))) => continue,
                Ok(Some(Err(e))) => {
                    reader.abort();
                    bail!("the watch on {follower_base} failed: {e}");
                }
                Ok(None) => {
                    bail!("the watch reader on {follower_base} stopped");
                }
                Err(_) => {
                    stats.lost += 1;
                    break;
                }
            }
        }
        n += 1;
    }
    reader.abort();
    stats.latencies.sort_unstable();
    stats.from_send.sort_unstable();
    println!(
        "{:>8} watch  {} writes: after ack p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms; after send p50 {:.2} ms  p99 {:.2} ms; before ack {}  lost {}",
        if sys.kind == Kind::Flotilla { "flotilla" } else { "etcd" },
        stats.latencies.len(),
        stats.ms(0.5),
        stats.ms(0.99),
        stats.ms(1.0),
        stats.send_ms(0.5),
        stats.send_ms(0.99),
        stats.before_ack,
        stats.lost
    );
    Ok(stats)
}

/// Takes every complete JSON value off the front of `buf`, leaving a partial one in place.
/// Both watch formats are a sequence of JSON documents (newline-separated or not).
fn drain_json(buf: &mut Vec<u8>) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    let consumed;
    {
        let mut it = serde_json::Deserializer::from_slice(buf).into_iter::<Value>();
        loop {
            let before = it.byte_offset();
            match it.next() {
                Some(Ok(v)) => out.push(v),
                Some(Err(e)) if e.is_eof() => {
                    consumed = before;
                    break;
                }
                Some(Err(e)) => return Err(format!("the watch sent malformed JSON: {e}")),
                None => {
                    consumed = it.byte_offset();
                    break;
                }
            }
        }
    }
    buf.drain(..consumed);
    Ok(out)
}

/// The versions of the changes a watch message carries.
fn event_versions(kind: Kind, v: &Value) -> Vec<u64> {
    let num = |x: &Value| {
        x.as_str()
            .and_then(|s| s.parse().ok())
            .or_else(|| x.as_u64())
    };
    match kind {
        Kind::Flotilla => v
            .pointer("/object/metadata/resourceVersion")
            .and_then(num)
            .into_iter()
            .collect(),
        Kind::Etcd => v
            .pointer("/result/events")
            .and_then(Value::as_array)
            .map(|evs| {
                evs.iter()
                    .filter_map(|e| e.pointer("/kv/mod_revision").and_then(num))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

// ---- the report ----

struct Row {
    op: Op,
    mode: Mode,
    clients: usize,
    flotilla: Stats,
    etcd: Option<Stats>,
}

fn report(
    rows: &[Row],
    cell: Duration,
    fw: &WatchStats,
    ew: Option<&WatchStats>,
    etcd_version: Option<&str>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Flotilla (3 replicas) vs etcd {} (3 members), {} s per cell, HTTPS + JSON on 127.0.0.1; latencies in ms",
        etcd_version.unwrap_or("(not run)"),
        cell.as_secs()
    );
    for op in [Op::Create, Op::Update] {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{}: {}",
            op.name(),
            match op {
                Op::Create => "POST configmaps vs POST /v3/kv/put of a new key",
                Op::Update => "PUT configmaps/NAME at its resourceVersion vs POST /v3/kv/put of an existing key",
            }
        );
        let _ = writeln!(
            s,
            "| clients | target      | flotilla ops/s | etcd ops/s | ratio | flotilla p50 | flotilla p99 | etcd p50 | etcd p99 | p99 ratio | flotilla max | etcd max | server cpu ms/op f/e | errors f/e |"
        );
        let _ = writeln!(
            s,
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
        );
        for r in rows.iter().filter(|r| r.op == op) {
            let f = &r.flotilla;
            let (eops, ep50, ep99, emax, ecpu, eerr) = match &r.etcd {
                Some(e) => (
                    e.ops_per_sec(),
                    e.ms(0.5),
                    e.ms(0.99),
                    e.ms(1.0),
                    e.server_cpu_ms_per_op.unwrap_or(f64::NAN),
                    e.errors.to_string(),
                ),
                None => (
                    f64::NAN,
                    f64::NAN,
                    f64::NAN,
                    f64::NAN,
                    f64::NAN,
                    "-".to_string(),
                ),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {:.2}/{:.2} | {}/{} |",
                r.clients,
                r.mode.name(),
                f.ops_per_sec(),
                eops,
                f.ops_per_sec() / eops,
                f.ms(0.5),
                f.ms(0.99),
                ep50,
                ep99,
                f.ms(0.99) / ep99,
                f.ms(1.0),
                emax,
                f.server_cpu_ms_per_op.unwrap_or(f64::NAN),
                ecpu,
                f.errors,
                eerr
            );
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "watch delivery: write acknowledged by the leader -> event read from a watch on a follower, one write at a time");
    let _ = writeln!(s, "(after ack: from the write's answer, 0 when the event came first; after send: from sending the write)");
    let _ = writeln!(s, "| system | events | after ack p50 | after ack p99 | after ack max | after send p50 | after send p99 | after send max | before ack | lost |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut line = |who: &str, w: &WatchStats| {
        let _ = writeln!(
            s,
            "| {who} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} |",
            w.latencies.len(),
            w.ms(0.5),
            w.ms(0.99),
            w.ms(1.0),
            w.send_ms(0.5),
            w.send_ms(0.99),
            w.send_ms(1.0),
            w.before_ack,
            w.lost
        );
    };
    line("flotilla", fw);
    if let Some(ew) = ew {
        line("etcd", ew);
    }
    s
}

// ---- etcd ----

/// User + system CPU ticks of the given processes, from /proc (None where that is unreadable).
fn cpu_ticks(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    let mut total = 0;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // the fields after the parenthesised command name; utime and stime are the 14th and
        // 15th fields of the whole line, so the 12th and 13th after the name
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        total += f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Clock ticks per second (USER_HZ), as getconf tells; 100 on every common Linux build.
fn clock_ticks() -> u64 {
    static HZ: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    })
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// A free port on 127.0.0.1 (bound and released; etcd binds it a moment later).
fn free_port() -> anyhow::Result<u16> {
    let l =
        std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port on 127.0.0.1")?;
    Ok(l.local_addr()?.port())
}

/// A 3-member etcd cluster on loopback; dropping it kills the members and removes their data.
struct EtcdCluster {
    children: Vec<Child>,
    dir: tempfile::TempDir,
    client_urls: Vec<String>,
    version: String,
}

impl EtcdCluster {
    /// Starts the members with TLS on client and peer ports, using the Flotilla cluster's
    /// server certificate (SANs for 127.0.0.1, server and client usages) and CA.
    fn start(bin: &Path, pki: &Path) -> anyhow::Result<EtcdCluster> {
        let version = Command::new(bin)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(|l| l.trim_start_matches("etcd Version: ").to_string())
            })
            .unwrap_or_else(|| "(unknown version)".to_string());
        let dir = tempfile::Builder::new()
            .prefix("flotilla-bench-etcd-")
            .tempdir()
            .context("making a directory for etcd")?;
        let mut cluster = EtcdCluster {
            children: Vec::new(),
            dir,
            client_urls: Vec::new(),
            version,
        };
        let mut peers = Vec::new();
        for _ in 0..3 {
            cluster
                .client_urls
                .push(format!("https://127.0.0.1:{}", free_port()?));
            peers.push(format!("https://127.0.0.1:{}", free_port()?));
        }
        let initial = peers
            .iter()
            .enumerate()
            .map(|(i, p)| format!("m{i}={p}"))
            .collect::<Vec<_>>()
            .join(",");
        let (cert, key, ca) = (
            pki.join("server.crt"),
            pki.join("server.key"),
            pki.join("ca.crt"),
        );
        for (i, peer) in peers.iter().enumerate() {
            let log = std::fs::File::create(cluster.dir.path().join(format!("m{i}.log")))
                .context("creating an etcd log file")?;
            let log2 = log.try_clone()?;
            let child = Command::new(bin)
                .arg(format!("--name=m{i}"))
                .arg(format!(
                    "--data-dir={}",
                    cluster.dir.path().join(format!("m{i}")).display()
                ))
                .arg(format!("--listen-client-urls={}", cluster.client_urls[i]))
                .arg(format!(
                    "--advertise-client-urls={}",
                    cluster.client_urls[i]
                ))
                .arg(format!("--listen-peer-urls={peer}"))
                .arg(format!("--initial-advertise-peer-urls={peer}"))
                .arg(format!("--initial-cluster={initial}"))
                .arg("--initial-cluster-state=new")
                .arg("--initial-cluster-token=flotilla-bench")
                .arg(format!("--cert-file={}", cert.display()))
                .arg(format!("--key-file={}", key.display()))
                .arg(format!("--peer-cert-file={}", cert.display()))
                .arg(format!("--peer-key-file={}", key.display()))
                .arg(format!("--peer-trusted-ca-file={}", ca.display()))
                .arg("--peer-client-cert-auth")
                .arg("--logger=zap")
                .arg("--log-level=warn")
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            cluster.children.push(child);
        }
        Ok(cluster)
    }

    /// Waits until every member answers and a leader is known; returns the leader's index.
    async fn wait_ready(&self, sys: &System) -> anyhow::Result<usize> {
        let http = sys.client(Some(Duration::from_secs(2)))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut why = String::new();
        while Instant::now() < deadline {
            match self.leader_index(&http).await {
                Ok(Some(i)) => return Ok(i),
                Ok(None) => why = "no leader yet".to_string(),
                Err(e) => why = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!(
            "etcd did not elect a leader within 30 s ({why}); logs:\n{}",
            self.log_tail()
        )
    }

    async fn leader_index(&self, http: &reqwest::Client) -> anyhow::Result<Option<usize>> {
        let mut ids = Vec::new();
        let mut leader = None;
        for url in &self.client_urls {
            let v: Value = http
                .post(format!("{url}/v3/maintenance/status"))
                .json(&json!({}))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let id = v
                .pointer("/header/member_id")
                .map(Value::to_string)
                .unwrap_or_default();
            let l = v.get("leader").map(Value::to_string).unwrap_or_default();
            if l != "\"0\"" && !l.is_empty() {
                leader = Some(l);
            }
            ids.push(id);
        }
        Ok(leader.and_then(|l| ids.iter().position(|id| *id == l)))
    }

    fn log_tail(&self) -> String {
        let mut out = String::new();
        for i in 0..3 {
            let text = std::fs::read_to_string(self.dir.path().join(format!("m{i}.log")))
                .unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let _ = writeln!(
                out,
                "--- m{i}:\n{}",
                lines[lines.len().saturating_sub(10)..].join("\n")
            );
        }
        out
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            // only the processes this benchmark started, by their handles
            let _ = c.kill();
            let _ = c.wait();
        }
        // the TempDir field removes the data directories after this
    }
}
