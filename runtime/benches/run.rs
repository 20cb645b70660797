//! `cargo bench -p runtime --bench run`: start-to-exit latency of `ctl run --rm IMAGE /bin/true`
//! and the memory of one idle container's monitor process, side by side in the same run with
//! `crun run`, `runc run` and, where a Docker engine answers `docker info`, `docker run --rm`.
//! A tool that is missing is skipped with a printed notice.
//!
//! It times the real release binaries (`target/release/ctl` and `flotilla-monitor`, built by
//! `cargo build --release -p ctl -p runtime --bins`) as a user starts them, one process launch per
//! iteration, so the loop is hand-written (`harness = false`): a statistics harness would add
//! nothing to a few dozen launches of milliseconds each. The tools take turns within every
//! round, so load from other work on the machine hits all of them alike.
//!
//! Everything it makes (containers of every tool, the temporary root, mounts) is removed by a
//! guard, also when the bench panics. Knobs: `FLOTILLA_BENCH_RUNS` (rounds, default 50),
//! `FLOTILLA_BENCH_SECS` (time limit of the timed rounds, default 60) and
//! `FLOTILLA_BENCH_GAP_MS` (a pause before every launch, default 0).
//!
//! Why a pause can matter: on cgroup v1, the first process to write a pid into `cgroup.procs`
//! after a quiet spell waits for an RCU grace period (~13 ms here; the kernel's
//! `cgroup_threadgroup_rwsem`), and a write soon after another one does not. Back to back, a
//! tool may thus ride on the previous tool's write; with a gap of ~100 ms every launch starts
//! cold, as a single command on a quiet machine does.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use support::{docker_engine_runs, env_number, on_path};

use std::ffi::CString;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runtime::image::ImageStore;
use runtime::reference::Reference;

const IMAGE: &str = "flotilla-bench/busybox:latest";
const WARMUP_ROUNDS: usize = 3;

fn main() {
    if let Err(message) = bench() {
        eprintln!("run bench: {message}");
        std::process::exit(1);
    }
}

/// One container runtime under test and how to launch it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Tool {
    Ours,
    Crun,
    Runc,
    Docker,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Ours => "ctl run --rm",
            Tool::Crun => "crun run",
            Tool::Runc => "runc run",
            Tool::Docker => "docker run --rm",
        }
    }

    fn binary(self) -> &'static str {
        match self {
            Tool::Ours => "ctl",
            Tool::Crun => "crun",
            Tool::Runc => "runc",
            Tool::Docker => "docker",
        }
    }
}

/// Latencies (ms) and the launcher's peak RSS (KiB) of one tool.
#[derive(Default)]
struct Samples {
    ms: Vec<f64>,
    max_rss_kib: Vec<i64>,
    failures: usize,
    first_error: Option<String>,
}

/// The paths and switches the launches need.
struct Setup {
    ctl: PathBuf,
    root: PathBuf,
    bundle_true: PathBuf,
    bundle_sleep: PathBuf,
    scratch: PathBuf,
    /// crun 1.8 refuses a hybrid cgroup layout whose cgroup2 mount has controllers; it runs in
    /// a private mount namespace without that mount (crun then sees plain cgroup v1, the
    /// hierarchy our runtime and runc use).
    crun_hide_unified: bool,
    prefix: String,
    /// Pause before every launch (`FLOTILLA_BENCH_GAP_MS`).
    gap: Duration,
}

fn bench() -> Result<(), String> {
    if !common::is_root() {
        println!("skipping the run bench: starting containers needs root");
        return Ok(());
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"].into_iter().map(Path::new).find(|p| p.is_file());
    let Some(busybox) = busybox else {
        println!("skipping the run bench: install busybox-static (apt-get install -y busybox-static)");
        return Ok(());
    };
    let release = release_dir()?;
    let ctl = release.join("ctl");
    for binary in [&ctl, &release.join("flotilla-monitor")] {
        if !binary.is_file() {
            return Err(format!(
                "{} is missing: run `cargo build --release -p ctl -p runtime --bins` first",
                binary.display()
            ));
        }
    }
    let rounds: usize = env_number("FLOTILLA_BENCH_RUNS", 50);
    let budget = Duration::from_secs(env_number("FLOTILLA_BENCH_SECS", 60) as u64);
    let gap = Duration::from_millis(env_number("FLOTILLA_BENCH_GAP_MS", 0) as u64);

    let dir = tempfile::Builder::new()
        .prefix("flotilla-run-bench-")
        .tempdir()
        .map_err(|e| format!("creating a temporary directory: {e}"))?;
    let base = dir.path().to_path_buf();
    let prefix = format!("flotilla-bench-{}", std::process::id());
    let mut guard = Guard { ctl: ctl.clone(), root: base.join("root"), prefix: prefix.clone(), crun_hide_unified: false, docker_image: None, dir: Some(dir) };

    // The same busybox tree: imported as our image, and as the OCI bundles' root.
    let rootfs = base.join("busybox-rootfs");
    common::make_rootfs(&rootfs, busybox);
    let store = ImageStore::open(&guard.root).map_err(|e| format!("opening the image store: {e}"))?;
    let reference = Reference::parse(IMAGE).map_err(|e| format!("parsing {IMAGE}: {e}"))?;
    store.import_rootfs_dir(&rootfs, &reference).map_err(|e| format!("importing {}: {e}", rootfs.display()))?;
    let oci_rootfs = base.join("oci-rootfs");
    common::make_rootfs(&oci_rootfs, busybox);

    let mut tools = vec![Tool::Ours];
    for tool in [Tool::Crun, Tool::Runc] {
        if on_path(tool.binary()) {
            tools.push(tool);
        } else {
            println!("notice: {} not found, skipping it (apt-get install -y {})", tool.binary(), tool.binary());
        }
    }
    let spec_tool = tools.iter().copied().find(|t| matches!(t, Tool::Runc | Tool::Crun));
    let (bundle_true, bundle_sleep) = (base.join("bundle-true"), base.join("bundle-sleep"));
    if let Some(spec_tool) = spec_tool {
        make_bundle(spec_tool, &bundle_true, &oci_rootfs, &["/bin/true"])?;
        make_bundle(spec_tool, &bundle_sleep, &oci_rootfs, &["/bin/sleep", "600"])?;
    }
    let crun_hide_unified = hybrid_cgroups_with_v2_controllers();
    guard.crun_hide_unified = crun_hide_unified;
    if docker_engine_runs() {
        let tar = base.join("rootfs.tar");
        run_quiet(Command::new("tar").arg("-C").arg(&rootfs).arg("-cf").arg(&tar).arg("."))?;
        run_quiet(Command::new("docker").arg("import").arg(&tar).arg(IMAGE))?;
        guard.docker_image = Some(IMAGE.to_string());
        tools.push(Tool::Docker);
    } else {
        println!("notice: no Docker engine answers `docker info` here, skipping docker run --rm");
    }
    let setup = Setup { ctl, root: guard.root.clone(), bundle_true, bundle_sleep, scratch: base.clone(), crun_hide_unified, prefix, gap };

    print_header(&setup, &tools, rounds, budget);
    let samples = time_launches(&setup, &tools, rounds, budget)?;
    print_latencies(&tools, &samples);
    measure_memory(&setup, &tools, &mut guard)?;
    drop(guard);
    Ok(())
}

/// target/release: the bench runs as target/release/deps/run-HASH.
fn release_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding the bench executable: {e}"))?;
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("{} has no profile directory above it", exe.display()))
}




/// Whether /sys/fs/cgroup is a v1 layout with a cgroup2 mount at `unified` that has controllers.
fn hybrid_cgroups_with_v2_controllers() -> bool {
    let controllers = fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers").unwrap_or_default();
    Path::new("/sys/fs/cgroup/memory").is_dir() && !controllers.trim().is_empty()
}

/// An OCI bundle from `runc spec` (or `crun spec`): our command, no terminal, `root` as its root.
fn make_bundle(tool: Tool, bundle: &Path, root: &Path, args: &[&str]) -> Result<(), String> {
    fs::create_dir_all(bundle).map_err(|e| format!("creating {}: {e}", bundle.display()))?;
    run_quiet(Command::new(tool.binary()).arg("spec").current_dir(bundle))?;
    let path = bundle.join("config.json");
    let text = fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))?;
    config["process"]["args"] = serde_json::json!(args);
    config["process"]["terminal"] = serde_json::json!(false);
    config["root"]["path"] = serde_json::json!(root.to_string_lossy());
    let namespaces = config["linux"]["namespaces"].as_array().cloned().unwrap_or_default();
    // Our `--network none` is a new network namespace: the generated spec must have one too.
    if !namespaces.iter().any(|n| n["type"] == "network") {
        return Err(format!("{} spec made no network namespace; the comparison would be unfair", tool.binary()));
    }
    let text = serde_json::to_string_pretty(&config).map_err(|e| format!("encoding {}: {e}", path.display()))?;
    fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Runs a helper command to its end, at most 30 s. Its output goes to an unnamed file, not a
/// pipe: a detached container inherits the runtime's stdio and would hold a pipe open.
fn run_quiet(command: &mut Command) -> Result<(), String> {
    use std::io::{Read, Seek};
    let mut stderr = tempfile::tempfile().map_err(|e| format!("creating a temporary file: {e}"))?;
    let stderr_for_child = stderr.try_clone().map_err(|e| format!("duplicating a temporary file: {e}"))?;
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr_for_child);
    let mut child = command.spawn().map_err(|e| format!("starting {command:?}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{command:?} did not finish within 30 s"));
            }
            Err(e) => return Err(format!("waiting for {command:?}: {e}")),
        }
    };
    if !status.success() {
        let mut text = String::new();
        let _ = stderr.rewind().and_then(|()| stderr.read_to_string(&mut text));
        return Err(format!("{command:?} failed ({status}): {}", text.trim()));
    }
    Ok(())
}

/// The command that runs `/bin/true` once with `tool`; `n` makes the OCI container id unique.
fn launch_command(setup: &Setup, tool: Tool, n: usize) -> Command {
    match tool {
        Tool::Ours => {
            let mut c = Command::new(&setup.ctl);
            c.arg("--root").arg(&setup.root).args(["run", "--rm", "--network", "none", IMAGE, "/bin/true"]);
            c
        }
        Tool::Crun | Tool::Runc => {
            let mut c = oci_command(setup, tool);
            c.arg("run").arg("-b").arg(&setup.bundle_true).arg(format!("{}-{}-{n}", setup.prefix, tool.binary()));
            c
        }
        Tool::Docker => {
            let mut c = Command::new("docker");
            c.args(["run", "--rm", "--network", "none", IMAGE, "/bin/true"]);
            c
        }
    }
}

/// `crun`/`runc` with the mount-namespace wrapper crun needs on this cgroup layout.
fn oci_command(setup: &Setup, tool: Tool) -> Command {
    let mut c = Command::new(tool.binary());
    if tool == Tool::Crun && setup.crun_hide_unified {
        hide_unified_cgroup(&mut c);
    }
    c
}

fn hide_unified_cgroup(command: &mut Command) {
    let (Ok(slash), Ok(unified)) = (CString::new("/"), CString::new("/sys/fs/cgroup/unified")) else { return };
    // SAFETY: only unshare, mount and umount2 (plain system calls) run between fork and exec,
    // on strings made before the fork.
    unsafe {
        command.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let flags = libc::MS_REC | libc::MS_PRIVATE;
            if libc::mount(std::ptr::null(), slash.as_ptr(), std::ptr::null(), flags, std::ptr::null()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::umount2(unified.as_ptr(), libc::MNT_DETACH) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs a command to its end: (wall time, its peak RSS in KiB, failure text).
fn timed(mut command: Command, stderr_file: &Path) -> Result<(Duration, i64, Option<String>), String> {
    let stderr = fs::File::create(stderr_file).map_err(|e| format!("creating {}: {e}", stderr_file.display()))?;
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
    let started = Instant::now();
    let child = command.spawn().map_err(|e| format!("starting {command:?}: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // wait4 rather than Child::wait: the same wait also gives the launcher's peak RSS.
    // SAFETY: waits for our own child, writing into the two locals.
    let waited = loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break r;
        }
    };
    let elapsed = started.elapsed();
    if waited < 0 {
        return Err(format!("waiting for {command:?}: {}", std::io::Error::last_os_error()));
    }
    let failure = if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        None
    } else {
        let text = fs::read_to_string(stderr_file).unwrap_or_default();
        Some(format!("{command:?} ended with wait status {status:#x}: {}", text.trim()))
    };
    Ok((elapsed, usage.ru_maxrss, failure))
}

fn time_launches(setup: &Setup, tools: &[Tool], rounds: usize, budget: Duration) -> Result<Vec<Samples>, String> {
    let mut samples: Vec<Samples> = tools.iter().map(|_| Samples::default()).collect();
    let stderr_file = setup.scratch.join("stderr");
    let started = Instant::now();
    for round in 0..WARMUP_ROUNDS + rounds {
        if round >= WARMUP_ROUNDS && started.elapsed() > budget {
            println!("notice: stopped after {} timed rounds, at the {}s limit", round - WARMUP_ROUNDS, budget.as_secs());
            break;
        }
        for (tool, s) in tools.iter().zip(samples.iter_mut()) {
            if !setup.gap.is_zero() {
                std::thread::sleep(setup.gap);
            }
            let (elapsed, max_rss, failure) = timed(launch_command(setup, *tool, round), &stderr_file)?;
            if let Some(failure) = failure {
                s.failures += 1;
                s.first_error.get_or_insert(failure);
                continue;
            }
            if round >= WARMUP_ROUNDS {
                s.ms.push(elapsed.as_secs_f64() * 1000.0);
                s.max_rss_kib.push(max_rss);
            }
        }
        // Every tool failing its first round would only repeat the same error 50 times.
        if round == 0 && samples.iter().all(|s| s.failures > 0) {
            let errors: Vec<String> = samples.iter().filter_map(|s| s.first_error.clone()).collect();
            return Err(format!("every tool failed: {}", errors.join("; ")));
        }
    }
    Ok(samples)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: usize) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

struct Summary {
    p50: f64,
    p95: f64,
    mean: f64,
}

fn summary(ms: &[f64]) -> Summary {
    let mut sorted = ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mean = if sorted.is_empty() { f64::NAN } else { sorted.iter().sum::<f64>() / sorted.len() as f64 };
    Summary { p50: percentile(&sorted, 50), p95: percentile(&sorted, 95), mean }
}

fn print_header(setup: &Setup, tools: &[Tool], rounds: usize, budget: Duration) {
    println!("container start-to-exit latency: one launch of `/bin/true` in a new container per tool per round");
    println!("  ctl:    {} --root {} run --rm --network none {IMAGE} /bin/true", setup.ctl.display(), setup.root.display());
    for tool in tools {
        if matches!(tool, Tool::Crun | Tool::Runc) {
            let wrapper = if *tool == Tool::Crun && setup.crun_hide_unified {
                " (in a private mount namespace without /sys/fs/cgroup/unified: crun refuses this hybrid layout)"
            } else {
                ""
            };
            println!("  {}:   {} run -b {} ID{wrapper}", tool.binary(), tool.binary(), setup.bundle_true.display());
        }
    }
    println!("  rounds: {WARMUP_ROUNDS} warm-up + up to {rounds} timed, at most {}s; tools take turns in each round", budget.as_secs());
    println!("  pause before each launch: {} ms (FLOTILLA_BENCH_GAP_MS)", setup.gap.as_millis());
}

fn print_latencies(tools: &[Tool], samples: &[Samples]) {
    println!();
    println!("| tool | runs | failed | p50 ms | p95 ms | mean ms | min ms | max ms | launcher peak RSS KiB (p50) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut summaries = Vec::new();
    for (tool, s) in tools.iter().zip(samples) {
        let sum = summary(&s.ms);
        let min = s.ms.iter().copied().fold(f64::INFINITY, f64::min);
        let max = s.ms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut rss = s.max_rss_kib.clone();
        rss.sort_unstable();
        let rss_p50 = rss.get(rss.len().saturating_sub(1) / 2).copied().unwrap_or(0);
        println!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {rss_p50} |",
            tool.name(),
            s.ms.len(),
            s.failures,
            sum.p50,
            sum.p95,
            sum.mean,
            min,
            max
        );
        summaries.push((*tool, sum));
    }
    for (tool, s) in tools.iter().zip(samples) {
        if let Some(error) = &s.first_error {
            println!("first failure of {}: {error}", tool.name());
        }
    }
    let Some((_, ours)) = summaries.iter().find(|(t, _)| *t == Tool::Ours) else { return };
    println!();
    println!("| ratio | p50 | p95 | mean |");
    println!("|---|---:|---:|---:|");
    for (tool, other) in summaries.iter().filter(|(t, _)| *t != Tool::Ours) {
        println!(
            "| ours / {} | {:.2} | {:.2} | {:.2} |",
            tool.binary(),
            ours.p50 / other.p50,
            ours.p95 / other.p95,
            ours.mean / other.mean
        );
    }
}

/// VmRSS and VmHWM (/proc/PID/status), Pss and private (Private_Clean + Private_Dirty, from
/// /proc/PID/smaps_rollup) of a process, in KiB.
struct ProcMemory {
    rss: u64,
    hwm: u64,
    pss: u64,
    private: u64,
}

fn proc_memory(pid: i32) -> Result<ProcMemory, String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    let rollup =
        fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).map_err(|e| format!("reading /proc/{pid}/smaps_rollup: {e}"))?;
    let field = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim_start_matches(':').split_whitespace().next()))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(ProcMemory {
        rss: field(&status, "VmRSS"),
        hwm: field(&status, "VmHWM"),
        pss: field(&rollup, "Pss"),
        private: field(&rollup, "Private_Clean") + field(&rollup, "Private_Dirty"),
    })
}

/// Processes whose command name starts with `name` (`runc`, `runc:[2:INIT]`, `crun`).
fn processes_named(name: &str) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with(name)))
        .collect()
}

fn measure_memory(setup: &Setup, tools: &[Tool], guard: &mut Guard) -> Result<(), String> {
    println!();
    println!("idle container (`sleep 600`, detached): memory of the process that stays to watch it, KiB");
    println!("| tool | process | VmRSS | VmHWM | Pss | private |");
    println!("|---|---|---:|---:|---:|---:|");
    let name = format!("{}-idle", setup.prefix);
    let output = Command::new(&setup.ctl)
        .arg("--root")
        .arg(&setup.root)
        .args(["run", "-d", "--name", &name, "--network", "none", IMAGE, "sleep", "600"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("starting ctl run -d: {e}"))?;
    if !output.status.success() {
        return Err(format!("ctl run -d failed: {}", String::from_utf8_lossy(&output.stderr).trim()));
    }
    let id = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let state_file = setup.root.join("containers").join(&id).join("state.json");
    let state: serde_json::Value = fs::read(&state_file)
        .map_err(|e| format!("reading {}: {e}", state_file.display()))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| format!("parsing {}: {e}", state_file.display())))?;
    let pid = state["monitor_pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| format!("{} has no monitor_pid", state_file.display()))?;
    // Let the monitor settle into its poll loop before reading its memory.
    std::thread::sleep(Duration::from_millis(300));
    let m = proc_memory(pid)?;
    println!("| flotilla | flotilla-monitor (pid {pid}) | {} | {} | {} | {} |", m.rss, m.hwm, m.pss, m.private);
    let target = if m.rss < 2048 { "met" } else { "NOT met" };
    println!("monitor RSS target (< 2 MiB = 2048 KiB): {target} ({:.2} MiB)", m.rss as f64 / 1024.0);
    run_quiet(Command::new(&setup.ctl).arg("--root").arg(&setup.root).args(["rm", "-f", &id]))?;

    for tool in tools.iter().copied().filter(|t| matches!(t, Tool::Crun | Tool::Runc)) {
        let id = format!("{}-{}-idle", setup.prefix, tool.binary());
        let mut command = oci_command(setup, tool);
        command.arg("run").arg("-d").arg("-b").arg(&setup.bundle_sleep).arg(&id);
        run_quiet(&mut command)?;
        std::thread::sleep(Duration::from_millis(300));
        let left = processes_named(tool.binary());
        if left.is_empty() {
            println!("| {} | none: `{} run -d` exits once the container runs; nothing of {} stays | - | - | - | - |", tool.binary(), tool.binary(), tool.binary());
        }
        for pid in left {
            match proc_memory(pid) {
                Ok(m) => println!("| {} | {} process left running (pid {pid}) | {} | {} | {} | {} |", tool.binary(), tool.binary(), m.rss, m.hwm, m.pss, m.private),
                Err(e) => println!("| {} | pid {pid} gone while read ({e}) | - | - | - | - |", tool.binary()),
            }
        }
        let mut delete = oci_command(setup, tool);
        delete.args(["delete", "-f", &id]);
        run_quiet(&mut delete)?;
    }
    if tools.contains(&Tool::Docker) {
        println!("| docker | not measured: its per-container process is containerd-shim-runc-v2, outside this bench | - | - | - | - |");
    }
    guard.check_clean();
    Ok(())
}

/// Removes everything the bench made, in order: containers of every tool, then mounts left
/// under the temporary directory, then the directory. Runs on panic too (drop on unwind).
struct Guard {
    ctl: PathBuf,
    root: PathBuf,
    prefix: String,
    crun_hide_unified: bool,
    docker_image: Option<String>,
    dir: Option<tempfile::TempDir>,
}

impl Guard {
    /// Our containers still in the root: ids of `containers/<64 hex>`.
    fn our_containers(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.root.join("containers")) else { return Vec::new() };
        entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect()
    }

    /// OCI containers of this run that `tool list -q` still knows.
    fn oci_containers(&self, tool: Tool) -> Vec<String> {
        let mut list = Command::new(tool.binary());
        if tool == Tool::Crun && self.crun_hide_unified {
            hide_unified_cgroup(&mut list);
        }
        let Ok(output) = list.args(["list", "-q"]).stderr(Stdio::null()).output() else { return Vec::new() };
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::trim)
            .filter(|id| id.starts_with(&self.prefix))
            .map(str::to_string)
            .collect()
    }

    /// Says so when a container outlived its own removal (a bug of the tool, not of the bench).
    fn check_clean(&self) {
        let ours = self.our_containers();
        if !ours.is_empty() {
            println!("notice: {} container(s) of ours left in the root after the runs: {ours:?}", ours.len());
        }
        for tool in [Tool::Crun, Tool::Runc] {
            if on_path(tool.binary()) {
                let left = self.oci_containers(tool);
                if !left.is_empty() {
                    println!("notice: {} still lists {left:?}", tool.binary());
                }
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for id in self.our_containers() {
            let removed = Command::new(&self.ctl)
                .arg("--root")
                .arg(&self.root)
                .args(["rm", "-f", &id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if !removed.is_ok_and(|s| s.success()) {
                eprintln!("cleanup: ctl rm -f {id} failed");
            }
        }
        for tool in [Tool::Crun, Tool::Runc] {
            if !on_path(tool.binary()) {
                continue;
            }
            for id in self.oci_containers(tool) {
                let mut delete = Command::new(tool.binary());
                if tool == Tool::Crun && self.crun_hide_unified {
                    hide_unified_cgroup(&mut delete);
                }
                if !delete.args(["delete", "-f", &id]).stderr(Stdio::null()).status().is_ok_and(|s| s.success()) {
                    eprintln!("cleanup: {} delete -f {id} failed", tool.binary());
                }
            }
        }
        if let Some(image) = self.docker_image.take() {
            let _ = Command::new("docker").args(["rmi", "-f", &image]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
        let Some(dir) = self.dir.take() else { return };
        // Deepest first, so a mount inside another comes off before its parent.
        let mut mounts = common::mounts_under(dir.path());
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in mounts {
            if let Ok(path) = CString::new(mount.clone()) {
                // SAFETY: umount2 on a NUL-terminated path we own.
                if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
                    eprintln!("cleanup: unmounting {mount}: {}", std::io::Error::last_os_error());
                }
            }
        }
        let path = dir.path().to_path_buf();
        if let Err(e) = dir.close() {
            eprintln!("cleanup: removing {}: {e}", path.display());
        }
    }
}
