//! `cargo bench -p runtime --bench build_push`: build time of one Dockerfile (cold, then fully
//! cached) with our builder and, where a Docker engine answers `docker info`, `docker build`; and
//! push/pull time of a ~50 MB three-layer image against a real `docker-registry` on 127.0.0.1
//! with our registry client and with `skopeo copy`, side by side in the same run.
//!
//! Each sample is one whole build or transfer of seconds, so the loop is hand-written
//! (`harness = false`): a statistics harness would add nothing to a handful of long operations.
//! Push and pull take turns within every round, so load from other work on the machine hits both
//! tools alike. Every push goes to a new repository name, so the registry holds none of its blobs
//! and all of them are really uploaded; every pull goes into an empty store or a new archive.
//!
//! A missing tool (docker engine, skopeo, docker-registry) is skipped with a printed notice.
//! Everything the bench makes (temporary root, registry process, docker images) is removed by a
//! guard, also when the bench panics. Knobs: `FLOTILLA_BENCH_BUILDS` (builds of each kind,
//! default 5) and `FLOTILLA_BENCH_TRANSFERS` (push/pull rounds, default 4).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use support::{docker_engine_runs, env_number, on_path};

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use runtime::build::executor::{build, BuildOptions};
use runtime::image::{ArchiveFormat, ImageStore};
use runtime::reference::Reference;
use runtime::registry::{Registry, RegistryOptions};

/// The base image of the benchmark Dockerfile, in our store and (imported) in Docker's.
const BASE_IMAGE: &str = "flotilla-bench/busybox:latest";
/// The ~50 MB image pushed and pulled.
const BIG_IMAGE: &str = "flotilla-bench/big:latest";
const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
/// Upper bound of one external command (skopeo, docker), so a hung tool cannot hang the bench.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

const DOCKERFILE: &str = "FROM flotilla-bench/busybox:latest
ENV GREETING=hello
WORKDIR /app
COPY . /app/
RUN mkdir -p /out && i=0 && while test $i -lt 100; do echo \"$GREETING $i\" > /out/f$i; i=$((i+1)); done
CMD [\"/bin/sh\"]
";

const BIG_DOCKERFILE: &str = "FROM flotilla-bench/busybox:latest
COPY part-a /data/part-a
COPY part-b /data/part-b
";

fn main() {
    if let Err(message) = bench() {
        eprintln!("build_push bench: {message}");
        std::process::exit(1);
    }
}

/// Removes what the bench made outside its temporary directory, also on panic; the directory
/// itself goes last.
struct Guard {
    registry: Option<Child>,
    docker_images: Vec<String>,
    dir: Option<tempfile::TempDir>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.registry.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for image in &self.docker_images {
            let _ = Command::new("docker").args(["rmi", "-f", image]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
        if let Some(dir) = self.dir.take() {
            if let Err(error) = dir.close() {
                eprintln!("cleanup: removing the temporary directory: {error}");
            }
        }
    }
}

fn bench() -> Result<(), String> {
    if !common::is_root() {
        println!("skipping the build_push bench: RUN steps start containers, which needs root");
        return Ok(());
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"].into_iter().map(Path::new).find(|p| p.is_file());
    let Some(busybox) = busybox else {
        println!("skipping the build_push bench: install busybox-static (apt-get install -y busybox-static)");
        return Ok(());
    };
    let builds = env_number("FLOTILLA_BENCH_BUILDS", 5);
    let transfers = env_number("FLOTILLA_BENCH_TRANSFERS", 4);
    let dir = tempfile::Builder::new()
        .prefix("flotilla-build-push-bench-")
        .tempdir()
        .map_err(|e| format!("creating a temporary directory: {e}"))?;
    let base = dir.path().to_path_buf();
    let mut guard = Guard { registry: None, docker_images: Vec::new(), dir: Some(dir) };

    let rootfs = base.join("busybox-rootfs");
    common::make_rootfs(&rootfs, busybox);
    let context = base.join("context");
    make_context(&context)?;
    println!("build_push bench: {builds} builds of each kind, {transfers} push/pull rounds");

    bench_builds(&base, &rootfs, &context, builds, &mut guard)?;
    bench_transfers(&base, &rootfs, transfers, &mut guard)?;
    drop(guard);
    Ok(())
}

/// The build context: the Dockerfile, 200 small files in 10 directories and a 10 MB random file.
fn make_context(context: &Path) -> Result<(), String> {
    let write = |path: &Path, data: &[u8]| fs::write(path, data).map_err(|e| format!("writing {}: {e}", path.display()));
    for d in 0..10 {
        let sub = context.join(format!("src/d{d}"));
        fs::create_dir_all(&sub).map_err(|e| format!("creating {}: {e}", sub.display()))?;
        for f in 0..20 {
            write(&sub.join(format!("file{f}.txt")), format!("file {d}/{f}\n").repeat(40).as_bytes())?;
        }
    }
    write(&context.join("blob.bin"), &random_bytes(10 * 1024 * 1024))?;
    write(&context.join("Dockerfile"), DOCKERFILE.as_bytes())
}

/// A fresh store root holding only the busybox base image.
fn fresh_root(root: &Path, rootfs: &Path) -> Result<(), String> {
    let store = ImageStore::open(root).map_err(|e| format!("opening the image store {}: {e}", root.display()))?;
    let reference = Reference::parse(BASE_IMAGE).map_err(|e| format!("parsing {BASE_IMAGE}: {e}"))?;
    store.import_rootfs_dir(rootfs, &reference).map_err(|e| format!("importing {}: {e}", rootfs.display()))?;
    Ok(())
}

fn build_options(context: &Path, root: &Path, tag: &str, no_cache: bool) -> BuildOptions {
    BuildOptions {
        context_dir: context.to_path_buf(),
        tags: vec![tag.to_string()],
        no_cache,
        quiet: true,
        root: root.to_path_buf(),
        registry: RegistryOptions { auth_file: root.join("auth.json"), ..RegistryOptions::default() },
        ..BuildOptions::default()
    }
}

/// One build with our builder; returns its duration and (steps, cached steps).
fn our_build(opts: &BuildOptions) -> Result<(Duration, usize, usize), String> {
    let started = Instant::now();
    let result = build(opts, &mut std::io::sink()).map_err(|e| format!("building {}: {e}", opts.context_dir.display()))?;
    Ok((started.elapsed(), result.steps, result.cached))
}

fn bench_builds(base: &Path, rootfs: &Path, context: &Path, builds: usize, guard: &mut Guard) -> Result<(), String> {
    let (mut cold, mut cached) = (Vec::new(), Vec::new());
    let (mut steps, mut cached_steps) = (0, 0);
    for n in 0..builds {
        // Cold: a fresh root each time, so no layer or cache entry of an earlier build exists.
        let root = base.join(format!("build-root-{n}"));
        fresh_root(&root, rootfs)?;
        let (elapsed, _, _) = our_build(&build_options(context, &root, "flotilla-bench/app:latest", true))?;
        cold.push(ms(elapsed));
        // Fully cached: the same Dockerfile and context again on the root just built.
        let (elapsed, s, c) = our_build(&build_options(context, &root, "flotilla-bench/app:latest", false))?;
        cached.push(ms(elapsed));
        (steps, cached_steps) = (s, c);
        remove_root(&root);
    }
    println!("\n## build (Dockerfile of 6 steps, context of 200 small files + 10 MB)");
    print_row("ctl build, cold (--no-cache, fresh root)", &cold);
    print_row(&format!("ctl build, fully cached ({cached_steps}/{steps} steps cached)"), &cached);

    if !docker_engine_runs() {
        println!("notice: `docker info` fails (no Docker engine), skipping docker build");
        return Ok(());
    }
    let tar = base.join("busybox-rootfs.tar");
    run_timed(Command::new("tar").arg("-C").arg(rootfs).arg("-cf").arg(&tar).arg("."))?;
    guard.docker_images.push(BASE_IMAGE.to_string());
    run_timed(Command::new("docker").arg("import").arg(&tar).arg(BASE_IMAGE))?;
    let tag = format!("flotilla-bench/app-{}:latest", std::process::id());
    guard.docker_images.push(tag.clone());
    let (mut docker_cold, mut docker_cached) = (Vec::new(), Vec::new());
    for _ in 0..builds {
        let docker_build = |no_cache: bool| {
            let mut command = Command::new("docker");
            command.args(["build", "-q", "-t", &tag]);
            if no_cache {
                command.arg("--no-cache");
            }
            command.arg(context);
            run_timed(&mut command)
        };
        docker_cold.push(ms(docker_build(true)?));
        docker_cached.push(ms(docker_build(false)?));
    }
    print_row("docker build, cold (--no-cache)", &docker_cold);
    print_row("docker build, fully cached", &docker_cached);
    print_ratio("cold: ctl build / docker build", &cold, &docker_cold);
    print_ratio("cached: ctl build / docker build", &cached, &docker_cached);
    Ok(())
}

fn bench_transfers(base: &Path, rootfs: &Path, rounds: usize, guard: &mut Guard) -> Result<(), String> {
    if !Path::new(REGISTRY_BIN).is_file() {
        println!("notice: {REGISTRY_BIN} is missing, skipping push/pull (apt-get install -y docker-registry)");
        return Ok(());
    }
    // The big image: busybox plus two 25 MB random files, one COPY layer each (three layers).
    let big_context = base.join("big-context");
    fs::create_dir_all(&big_context).map_err(|e| format!("creating {}: {e}", big_context.display()))?;
    for part in ["part-a", "part-b"] {
        let path = big_context.join(part);
        fs::write(&path, random_bytes(25 * 1024 * 1024)).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    let dockerfile = big_context.join("Dockerfile");
    fs::write(&dockerfile, BIG_DOCKERFILE).map_err(|e| format!("writing {}: {e}", dockerfile.display()))?;
    let root = base.join("push-root");
    fresh_root(&root, rootfs)?;
    our_build(&build_options(&big_context, &root, BIG_IMAGE, true))?;
    let store = ImageStore::open(&root).map_err(|e| format!("opening the image store {}: {e}", root.display()))?;
    let image = store.resolve(BIG_IMAGE).map_err(|e| format!("resolving {BIG_IMAGE}: {e}"))?;
    let archive = base.join("big.oci.tar");
    {
        let file = fs::File::create(&archive).map_err(|e| format!("creating {}: {e}", archive.display()))?;
        let mut writer = std::io::BufWriter::new(file);
        store.save(&[BIG_IMAGE], &mut writer, ArchiveFormat::Oci).map_err(|e| format!("saving {BIG_IMAGE}: {e}"))?;
        writer.flush().map_err(|e| format!("writing {}: {e}", archive.display()))?;
    }
    let archive_mb = fs::metadata(&archive).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("starting the tokio runtime: {e}"))?;
    let client = Registry::new(RegistryOptions { auth_file: base.join("auth.json"), ..RegistryOptions::default() })
        .map_err(|e| format!("creating the registry client: {e}"))?;
    let skopeo = on_path("skopeo");
    if !skopeo {
        println!("notice: skopeo not found, skipping skopeo copy (apt-get install -y skopeo)");
    }

    let (mut push, mut pull, mut skopeo_push, mut skopeo_pull) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let layer_bytes: u64 = image.layers.iter().map(|l| l.size).sum();
    for n in 0..rounds {
        // Ours: push to a fresh registry (so nothing can be skipped or cross-repository mounted),
        // then pull that into an empty store.
        let host = start_registry(&rt, base, &format!("ours-{n}"), guard)?;
        let target = format!("{host}/bench/big:latest");
        store.tag(BIG_IMAGE, &target).map_err(|e| format!("tagging {target}: {e}"))?;
        let reference = Reference::parse(&target).map_err(|e| format!("parsing {target}: {e}"))?;
        let started = Instant::now();
        rt.block_on(client.push(&store, &reference, &|_| {})).map_err(|e| format!("pushing {target}: {e}"))?;
        push.push(ms(started.elapsed()));
        check_uploaded(base, &format!("ours-{n}"), layer_bytes)?;
        let pull_root = base.join(format!("pull-root-{n}"));
        let pull_store = ImageStore::open(&pull_root).map_err(|e| format!("opening the image store {}: {e}", pull_root.display()))?;
        let started = Instant::now();
        let pulled = rt.block_on(client.pull(&pull_store, &reference, &|_| {})).map_err(|e| format!("pulling {target}: {e}"))?;
        pull.push(ms(started.elapsed()));
        if pulled.id != image.id {
            return Err(format!("pulled {target} has id {}, pushed {}", pulled.id, image.id));
        }
        drop(pull_store);
        remove_root(&pull_root);
        stop_registry(base, &format!("ours-{n}"), guard);
        store.untag(&target).map_err(|e| format!("untagging {target}: {e}"))?;

        if skopeo {
            let host = start_registry(&rt, base, &format!("skopeo-{n}"), guard)?;
            let target = format!("{host}/bench/big:latest");
            let started = Instant::now();
            run_timed(
                Command::new("skopeo")
                    .args(["copy", "--quiet", "--dest-tls-verify=false"])
                    .arg(format!("oci-archive:{}", archive.display()))
                    .arg(format!("docker://{target}")),
            )?;
            skopeo_push.push(ms(started.elapsed()));
            check_uploaded(base, &format!("skopeo-{n}"), layer_bytes)?;
            let out = base.join(format!("skopeo-pull-{n}.tar"));
            let started = Instant::now();
            run_timed(
                Command::new("skopeo")
                    .args(["copy", "--quiet", "--src-tls-verify=false"])
                    .arg(format!("docker://{target}"))
                    .arg(format!("oci-archive:{}", out.display())),
            )?;
            skopeo_pull.push(ms(started.elapsed()));
            let _ = fs::remove_file(&out);
            stop_registry(base, &format!("skopeo-{n}"), guard);
        }
    }
    println!(
        "\n## push/pull of {BIG_IMAGE} ({} layers of {:.1} MB, OCI archive {archive_mb:.1} MB), a fresh docker-registry on 127.0.0.1 per transfer",
        image.layers.len(),
        layer_bytes as f64 / 1e6
    );
    print_row("ctl push (our client)", &push);
    print_row("ctl pull (our client, empty store)", &pull);
    if skopeo {
        print_row("skopeo copy oci-archive: -> docker://", &skopeo_push);
        print_row("skopeo copy docker:// -> oci-archive:", &skopeo_pull);
        print_ratio("push: ours / skopeo", &push, &skopeo_push);
        print_ratio("pull: ours / skopeo", &pull, &skopeo_pull);
    }
    Ok(())
}

/// Starts a docker-registry with its data in `base/registry-NAME` on a free loopback port and
/// waits until it serves; returns `127.0.0.1:PORT`. The guard owns the process.
fn start_registry(rt: &tokio::runtime::Runtime, base: &Path, name: &str, guard: &mut Guard) -> Result<String, String> {
    let dir = base.join(format!("registry-{name}"));
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let host = format!("127.0.0.1:{}", free_port()?);
    let config = dir.join("config.yml");
    fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
            dir.join("data").display()
        ),
    )
    .map_err(|e| format!("writing {}: {e}", config.display()))?;
    let log = fs::File::create(dir.join("registry.log")).map_err(|e| format!("creating the registry log in {}: {e}", dir.display()))?;
    let child = Command::new(REGISTRY_BIN)
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting {REGISTRY_BIN}: {e}"))?;
    guard.registry = Some(child);
    rt.block_on(wait_for_registry(&host))?;
    Ok(host)
}

/// Stops the registry the guard holds and removes its data.
fn stop_registry(base: &Path, name: &str, guard: &mut Guard) {
    if let Some(mut child) = guard.registry.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
    remove_root(&base.join(format!("registry-{name}")));
}

/// Fails unless the registry's blob store holds at least `layer_bytes`: a push that was
/// skipped or mounted instead of uploaded would make the figure meaningless.
fn check_uploaded(base: &Path, name: &str, layer_bytes: u64) -> Result<(), String> {
    let blobs = base.join(format!("registry-{name}/data"));
    let stored: u64 = walkdir::WalkDir::new(&blobs)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    if stored < layer_bytes {
        return Err(format!("registry {name} holds {stored} bytes after the push, less than the {layer_bytes} of the layers"));
    }
    Ok(())
}

async fn wait_for_registry(host: &str) -> Result<(), String> {
    let url = format!("http://{host}/v2/");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(response) = reqwest::get(&url).await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("docker-registry did not come up on {url} within 15 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Removes a store root; a failure only costs disk until the guard removes the whole directory.
fn remove_root(root: &Path) {
    if let Err(error) = fs::remove_dir_all(root) {
        eprintln!("notice: removing {}: {error}", root.display());
    }
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::fill(&mut data[..]);
    data
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding a loopback port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| format!("reading the bound port: {e}"))
}




/// Runs a command to completion (killed after [`COMMAND_TIMEOUT`]); returns how long it took.
fn run_timed(command: &mut Command) -> Result<Duration, String> {
    use std::io::{Read, Seek};
    let mut stderr = tempfile::tempfile().map_err(|e| format!("creating a temporary file: {e}"))?;
    let stderr_for_child = stderr.try_clone().map_err(|e| format!("duplicating a temporary file: {e}"))?;
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr_for_child);
    let started = Instant::now();
    let mut child = command.spawn().map_err(|e| format!("starting {command:?}: {e}"))?;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < COMMAND_TIMEOUT => std::thread::sleep(Duration::from_millis(2)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{command:?} did not finish within {} s", COMMAND_TIMEOUT.as_secs()));
            }
            Err(e) => return Err(format!("waiting for {command:?}: {e}")),
        }
    };
    let elapsed = started.elapsed();
    if !status.success() {
        let mut text = String::new();
        let _ = stderr.rewind().and_then(|()| stderr.read_to_string(&mut text));
        return Err(format!("{command:?} failed ({status}): {}", text.trim()));
    }
    Ok(elapsed)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
}

/// Median (lower middle for an even count) and minimum, in ms.
fn p50_min(values: &[f64]) -> (f64, f64) {
    let sorted = sorted(values);
    if sorted.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    (sorted[(sorted.len() - 1) / 2], sorted[0])
}

fn print_row(name: &str, values: &[f64]) {
    let (p50, min) = p50_min(values);
    println!("{name:<58} n={:<2} p50 {p50:>9.1} ms  min {min:>9.1} ms", values.len());
}

fn print_ratio(name: &str, ours: &[f64], theirs: &[f64]) {
    let (ours_p50, ours_min) = p50_min(ours);
    let (theirs_p50, theirs_min) = p50_min(theirs);
    println!(
        "{name:<58} p50 {:.2}x  min {:.2}x  (below 1 = we are faster)",
        ours_p50 / theirs_p50,
        ours_min / theirs_min
    );
}
