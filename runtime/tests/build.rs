//! `build` for real (as root): a Dockerfile FROM the busybox fixture with ENV, WORKDIR, COPY
//! and RUN builds an image that runs; the cache hits on a rebuild and a changed file
//! invalidates from its COPY on; multi-stage builds with `COPY --from` and `--target`; a
//! failing RUN fails the build and leaves nothing behind; `.dockerignore`; determinism;
//! build args and heredocs in RUN; ADD of a local tar, `--chown`/`--chmod`, ADD of a URL
//! refused; a base image missing locally is pulled (from a docker-registry child process).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use common::{mounts_under, Fixture, IMAGE};
use runtime::build::executor::{build, BuildError, BuildOptions, BuildResult};
use runtime::container::StartOptions;
use runtime::image::ImageStore;
use runtime::spec::RunOptions;

fn context(fx: &Fixture, name: &str, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = fx.dir.path().join(name);
    fs::create_dir_all(&dir).expect("context dir");
    fs::write(dir.join("Dockerfile"), dockerfile).expect("Dockerfile");
    for (path, content) in files {
        let path = dir.join(path);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, content).expect("write");
    }
    dir
}

fn options(fx: &Fixture, dir: &Path, tag: &str) -> BuildOptions {
    BuildOptions {
        context_dir: dir.to_path_buf(),
        tags: vec![tag.to_string()],
        root: fx.root(),
        ..BuildOptions::default()
    }
}

/// An error with its sources, for failure messages.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn run_build(opts: &BuildOptions) -> (Result<BuildResult, BuildError>, String) {
    let mut out = Vec::new();
    let result = build(opts, &mut out);
    (result, String::from_utf8_lossy(&out).into_owned())
}

/// Runs `args` in `image` and returns (exit code, stdout).
fn run_in(fx: &Fixture, image: &str, args: &[&str]) -> (i32, String) {
    let opts = RunOptions { cmd: args.iter().map(|s| s.to_string()).collect(), ..RunOptions::default() };
    let id = fx.runtime.create(image, &opts).expect("create");
    fx.track(&id);
    let code = fx.runtime.start(&id, &StartOptions::default()).expect("start").wait().expect("exit code");
    (code, fx.logs(&id).0)
}

/// The lines of a step that carry its result, e.g. ("COPY a.txt ./", "CACHED").
fn step_results(output: &str) -> Vec<(String, String)> {
    let mut titles: BTreeMap<String, String> = BTreeMap::new();
    let mut results = Vec::new();
    for line in output.lines() {
        let Some((num, rest)) = line.split_once(' ') else { continue };
        if let Some(title) = rest.strip_prefix('[') {
            if let Some((_, instruction)) = title.split_once("] ") {
                titles.insert(num.to_string(), instruction.to_string());
            }
        } else if rest == "CACHED" || rest.starts_with("DONE ") {
            if let Some(title) = titles.get(num) {
                let result = if rest == "CACHED" { "CACHED" } else { "DONE" };
                results.push((title.clone(), result.to_string()));
            }
        }
    }
    results
}

const BASIC: &str = "FROM flotilla-test/busybox:latest
ENV GREETING=hello
WORKDIR /app
COPY first.txt ./
RUN echo made > /app/made.txt && busybox rm /etc/notexec
COPY second.txt /app/
CMD [\"cat\", \"/app/made.txt\"]
HEALTHCHECK --interval=5s CMD test -e /app/made.txt
";

#[test]
fn a_dockerfile_builds_an_image_that_runs() {
    let Some(fx) = Fixture::new("a_dockerfile_builds_an_image_that_runs") else { return };
    let dir = context(&fx, "ctx", BASIC, &[("first.txt", "one\n"), ("second.txt", "two\n")]);
    let (result, output) = run_build(&options(&fx, &dir, "built:1"));
    let result = result.unwrap_or_else(|e| panic!("build failed: {}\n{output}", chain(&e)));
    assert!(output.contains("[stage-0 5/8] RUN echo made"), "{output}");
    let store = ImageStore::open(&fx.root()).expect("store");
    let image = store.resolve("built:1").expect("tagged");
    assert_eq!(image.id, result.image_id);
    // busybox + COPY + RUN + COPY
    assert_eq!(image.layers.len(), 4, "{:?}", image.layers);
    let history = image.config.history().clone().unwrap_or_default();
    assert_eq!(history.iter().filter(|h| h.empty_layer() == Some(true)).count(), 4);
    let config: serde_json::Value = serde_json::from_slice(&store.read_blob(&image.id).expect("config blob")).expect("json");
    assert_eq!(config["config"]["Healthcheck"], serde_json::json!({"Test": ["CMD-SHELL", "test -e /app/made.txt"], "Interval": 5_000_000_000u64}));
    assert_eq!(config["config"]["WorkingDir"], "/app");
    // The RUN layer holds the command's changes only: no runtime mount points.
    let blob = store.read_blob(&image.layers[2].digest).expect("RUN layer");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(blob.as_slice()));
    let mut paths: Vec<String> = archive
        .entries()
        .expect("entries")
        .map(|e| e.expect("entry").path().expect("path").to_string_lossy().into_owned())
        .collect();
    paths.sort();
    assert_eq!(paths, ["app/", "app/made.txt", "etc/", "etc/.wh.notexec"]);

    let (code, out) = run_in(
        &fx,
        "built:1",
        &["sh", "-c", "cat made.txt first.txt second.txt; echo $GREETING; pwd; test -e /etc/notexec || echo deleted"],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "made\none\ntwo\nhello\n/app\ndeleted\n");
    let (code, out) = run_in(&fx, "built:1", &[]);
    assert_eq!((code, out.as_str()), (0, "made\n"));
    // The build leaves no containers and no mounts behind.
    assert!(fx.runtime.list(true).expect("list").iter().all(|c| c.image_name != "build"));
}

#[test]
fn the_cache_hits_and_a_changed_file_invalidates_from_its_copy_on() {
    let Some(fx) = Fixture::new("the_cache_hits_and_a_changed_file_invalidates_from_its_copy_on") else { return };
    let dir = context(&fx, "ctx", BASIC, &[("first.txt", "one\n"), ("second.txt", "two\n")]);
    let opts = options(&fx, &dir, "cached:1");
    let (first, output) = run_build(&opts);
    let first = first.unwrap_or_else(|e| panic!("build failed: {}\n{output}", chain(&e)));
    assert_eq!(first.cached, 0, "{output}");

    let (second, output) = run_build(&opts);
    let second = second.unwrap_or_else(|e| panic!("rebuild failed: {}\n{output}", chain(&e)));
    assert_eq!(second.cached, second.steps, "{output}");
    assert_eq!(second.image_id, first.image_id, "a fully cached rebuild gives the same image");
    let results = step_results(&output);
    assert_eq!(results.len(), 8, "{output}");
    assert!(results.iter().filter(|(t, _)| !t.starts_with("FROM")).all(|(_, r)| r == "CACHED"), "{output}");
    let store = ImageStore::open(&fx.root()).expect("store");
    let layers = |name: &str| store.resolve(name).expect("image").layers;
    let before = layers("cached:1");

    fs::write(dir.join("second.txt"), "changed\n").expect("change a file");
    let (third, output) = run_build(&opts);
    third.unwrap_or_else(|e| panic!("build after a change failed: {}\n{output}", chain(&e)));
    let results = step_results(&output);
    let result = |prefix: &str| {
        results.iter().find(|(t, _)| t.starts_with(prefix)).map(|(_, r)| r.clone()).unwrap_or_default()
    };
    assert_eq!(result("COPY first.txt"), "CACHED", "{output}");
    assert_eq!(result("RUN echo made"), "CACHED", "{output}");
    assert_eq!(result("COPY second.txt"), "DONE", "{output}");
    assert_eq!(result("CMD"), "DONE", "{output}");
    let after = layers("cached:1");
    assert_eq!(before[..3], after[..3]);
    assert_ne!(before[3], after[3]);

    // --no-cache runs everything again.
    let (fourth, output) = run_build(&BuildOptions { no_cache: true, ..opts.clone() });
    let fourth = fourth.unwrap_or_else(|e| panic!("--no-cache build failed: {}\n{output}", chain(&e)));
    assert_eq!(fourth.cached, 0, "{output}");
}

#[test]
fn multi_stage_copy_from_and_target() {
    let Some(fx) = Fixture::new("multi_stage_copy_from_and_target") else { return };
    let dockerfile = "FROM flotilla-test/busybox:latest AS build
RUN mkdir -p /out && echo artifact > /out/result.txt
FROM scratch AS final
COPY --from=build /out/result.txt /result.txt
COPY --from=build /bin/busybox /bin/busybox
FROM flotilla-test/busybox:latest AS unused
RUN false
";
    let dir = context(&fx, "ctx", dockerfile, &[]);
    let (result, output) = run_build(&BuildOptions { target: Some("final".into()), ..options(&fx, &dir, "multi:1") });
    result.unwrap_or_else(|e| panic!("build failed: {}\n{output}", chain(&e)));
    assert!(!output.contains("RUN false"), "the unused stage ran: {output}");
    assert!(mounts_under(&fx.root()).is_empty(), "mounts left: {:?}", mounts_under(&fx.root()));
    let (code, out) = run_in(&fx, "multi:1", &["/bin/busybox", "cat", "/result.txt"]);
    assert_eq!((code, out.as_str()), (0, "artifact\n"));
    let store = ImageStore::open(&fx.root()).expect("store");
    assert_eq!(store.resolve("multi:1").expect("image").layers.len(), 2);
}

#[test]
fn a_failing_run_fails_the_build_and_leaves_nothing() {
    let Some(fx) = Fixture::new("a_failing_run_fails_the_build_and_leaves_nothing") else { return };
    let dockerfile = format!("FROM {IMAGE}\nRUN echo before && exit 3\n");
    let dir = context(&fx, "ctx", &dockerfile, &[]);
    let (result, output) = run_build(&options(&fx, &dir, "failed:1"));
    match result {
        Err(error @ BuildError::RunFailed { code: 3, .. }) => {
            assert_eq!(error.to_string(), "RUN echo before && exit 3: exit code 3");
        }
        other => panic!("expected exit code 3, got {other:?}\n{output}"),
    }
    assert!(output.contains("before"), "the RUN output is shown: {output}");
    assert!(fx.runtime.list(true).expect("list").is_empty(), "containers left behind");
    assert!(mounts_under(&fx.root()).is_empty(), "mounts left: {:?}", mounts_under(&fx.root()));
    let store = ImageStore::open(&fx.root()).expect("store");
    assert!(store.resolve("failed:1").is_err());
}

#[test]
fn dockerignore_excludes_files() {
    let Some(fx) = Fixture::new("dockerignore_excludes_files") else { return };
    let dockerfile = format!("FROM {IMAGE}\nCOPY . /ctx/\nWORKDIR /w\nCOPY keep.txt .\n");
    let dir = context(
        &fx,
        "ctx",
        &dockerfile,
        &[("keep.txt", "keep\n"), ("secret.env", "x\n"), ("sub/also.txt", "also\n"), (".dockerignore", "*.env\n")],
    );
    let (result, output) = run_build(&options(&fx, &dir, "ignored:1"));
    result.unwrap_or_else(|e| panic!("build failed: {}\n{output}", chain(&e)));
    let (code, out) = run_in(&fx, "ignored:1", &["sh", "-c", "cat /ctx/keep.txt /ctx/sub/also.txt; test -e /ctx/secret.env && echo present || echo absent; cat /w/keep.txt"]);
    assert_eq!((code, out.as_str()), (0, "keep\nalso\nabsent\nkeep\n"));
}

#[test]
fn identical_inputs_give_identical_layers() {
    let Some(fx) = Fixture::new("identical_inputs_give_identical_layers") else { return };
    let dockerfile = format!("FROM {IMAGE}\nCOPY a.txt b/ /data/\nRUN echo x > /x.txt\n");
    let files = [("a.txt", "a\n"), ("b/c.txt", "c\n")];
    let one = context(&fx, "one", &dockerfile, &files);
    let two = context(&fx, "two", &dockerfile, &files);
    // Different mtimes must not matter.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fs::write(two.join("a.txt"), "a\n").expect("rewrite");
    let (r1, o1) = run_build(&options(&fx, &one, "det:1"));
    r1.unwrap_or_else(|e| panic!("build failed: {}\n{o1}", chain(&e)));
    let (r2, o2) = run_build(&BuildOptions { no_cache: true, ..options(&fx, &two, "det:2") });
    r2.unwrap_or_else(|e| panic!("build failed: {}\n{o2}", chain(&e)));
    let store = ImageStore::open(&fx.root()).expect("store");
    let l1 = store.resolve("det:1").expect("det:1").layers;
    let l2 = store.resolve("det:2").expect("det:2").layers;
    assert_eq!(l1.len(), 3);
    assert_eq!(l1, l2);
}

#[test]
fn build_args_and_heredocs_reach_run() {
    let Some(fx) = Fixture::new("build_args_and_heredocs_reach_run") else { return };
    let dockerfile = format!("FROM {IMAGE}\nARG FLAVOUR=plain\nRUN <<EOF\necho $FLAVOUR > /flavour\nEOF\nRUN cat <<'X' > /raw\n$FLAVOUR\nX\n");
    let dir = context(&fx, "ctx", &dockerfile, &[]);
    let with = |value: &str| BuildOptions {
        build_args: [("FLAVOUR".to_string(), value.to_string())].into(),
        ..options(&fx, &dir, "args:1")
    };
    let (result, output) = run_build(&with("mint"));
    result.unwrap_or_else(|e| panic!("build failed: {}\n{output}", chain(&e)));
    assert_eq!(run_in(&fx, "args:1", &["cat", "/flavour"]), (0, "mint\n".to_string()));
    let (result, output) = run_build(&with("lemon"));
    let result = result.unwrap_or_else(|e| panic!("build failed: {}\n{output}", chain(&e)));
    assert_eq!(result.cached, 0, "{output}");
    assert_eq!(run_in(&fx, "args:1", &["cat", "/flavour", "/raw"]), (0, "lemon\n$FLAVOUR\n".to_string()));
}

#[test]
fn add_extracts_a_local_tar_and_refuses_urls() {
    let Some(fx) = Fixture::new("add_extracts_a_local_tar_and_refuses_urls") else { return };
    let dir = context(&fx, "ctx", &format!("FROM {IMAGE}\nADD bundle.tar.gz /opt/\nCOPY --chown=app:extra --chmod=0600 a.txt /a.txt\n"), &[("a.txt", "a\n")]);
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let mut header = tar::Header::new_gnu();
    header.set_size(6);
    header.set_mode(0o644);
    builder.append_data(&mut header, "inner/file.txt", &b"inner\n"[..]).expect("append");
    let bytes = builder.into_inner().expect("tar").finish().expect("gzip");
    fs::write(dir.join("bundle.tar.gz"), bytes).expect("write bundle");
    let (result, output) = run_build(&options(&fx, &dir, "add:1"));
    result.unwrap_or_else(|e| panic!("build failed: {}\n{output}", chain(&e)));
    let (code, out) = run_in(&fx, "add:1", &["sh", "-c", "cat /opt/inner/file.txt; ls -ln /a.txt"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("inner\n-rw-------    1 1000     2000"), "{out}");

    let dir = context(&fx, "url", &format!("FROM {IMAGE}\nADD https://example.com/x /x\n"), &[]);
    let (result, _) = run_build(&options(&fx, &dir, "url:1"));
    let error = result.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("ADD from a URL is not supported"), "{error}");
}

/// A docker-registry child process on a free loopback port, killed on drop.
struct RegistryProcess(std::process::Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_missing_base_is_pulled() {
    let Some(fx) = Fixture::new("a_missing_base_is_pulled") else { return };
    let bin = Path::new("/usr/bin/docker-registry");
    if !bin.is_file() {
        eprintln!("skipping a_missing_base_is_pulled: install docker-registry");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
        dir.path().join("data").display()
    );
    fs::write(dir.path().join("config.yml"), config).expect("config");
    let child = std::process::Command::new(bin)
        .arg("serve")
        .arg(dir.path().join("config.yml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start docker-registry");
    let _registry = RegistryProcess(child, dir);
    let remote = format!("127.0.0.1:{port}/test/busybox:1");
    let store = ImageStore::open(&fx.root()).expect("store");
    store.tag(IMAGE, &remote).expect("tag");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    let registry = runtime::registry::Registry::new(runtime::registry::RegistryOptions {
        auth_file: fx.dir.path().join("auth.json"),
        ..Default::default()
    })
    .expect("client");
    let reference = runtime::reference::Reference::parse(&remote).expect("reference");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while let Err(error) = rt.block_on(registry.push(&store, &reference, &|_: &str| {})) {
        assert!(std::time::Instant::now() < deadline, "push: {error}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // A fresh root without the base image.
    let root = fx.dir.path().join("root2");
    let ctx = context(&fx, "ctx", &format!("FROM {remote}\nRUN echo pulled > /p\n"), &[]);
    let opts = BuildOptions {
        root: root.clone(),
        registry: runtime::registry::RegistryOptions { auth_file: fx.dir.path().join("auth.json"), ..Default::default() },
        ..options(&fx, &ctx, "pulled:1")
    };
    let (result, output) = run_build(&opts);
    result.unwrap_or_else(|e| panic!("build failed: {}\n{output}", chain(&e)));
    let other = runtime::container::Runtime::open(&root).expect("runtime");
    let id = other.create("pulled:1", &RunOptions { cmd: vec!["cat".into(), "/p".into()], ..RunOptions::default() }).expect("create");
    let code = other.start(&id, &StartOptions::default()).expect("start").wait();
    let mut out = Vec::new();
    other.logs(&id, &runtime::container::LogOptions::default(), &mut out, &mut Vec::new()).expect("logs");
    other.remove(&id, true).expect("remove");
    assert_eq!((code, String::from_utf8_lossy(&out).into_owned()), (Some(0), "pulled\n".to_string()));
}

#[test]
fn onbuild_triggers_are_recorded_and_run_in_the_child_build() {
    let Some(fx) = Fixture::new("onbuild") else { return };
    let parent = context(
        &fx,
        "parent",
        &format!("FROM {IMAGE}\nONBUILD COPY marker.txt /marker.txt\nonbuild RUN echo triggered > /triggered.txt\nCMD [\"cat\", \"/marker.txt\"]\n"),
        &[],
    );
    let (result, output) = run_build(&options(&fx, &parent, "parent:1"));
    result.unwrap_or_else(|e| panic!("{}\n{output}", chain(&e)));
    let store = ImageStore::open(&fx.root()).expect("store");
    let image = store.resolve("parent:1").expect("parent image");
    let raw: serde_json::Value = serde_json::from_slice(&store.read_blob(&image.id).expect("config")).expect("json");
    assert_eq!(
        raw["config"]["OnBuild"],
        serde_json::json!(["COPY marker.txt /marker.txt", "RUN echo triggered > /triggered.txt"]),
        "{raw}"
    );
    // the triggers do not run in the build that declares them
    let (code, _) = run_in(&fx, "parent:1", &["test", "-e", "/triggered.txt"]);
    assert_eq!(code, 1);

    let child = context(&fx, "child", "FROM parent:1\n", &[("marker.txt", "from the child's context\n")]);
    let (result, output) = run_build(&options(&fx, &child, "child:1"));
    result.unwrap_or_else(|e| panic!("{}\n{output}", chain(&e)));
    assert!(output.contains("[stage-0 onbuild] COPY marker.txt /marker.txt"), "{output}");
    let (code, out) = run_in(&fx, "child:1", &["cat", "/marker.txt", "/triggered.txt"]);
    assert_eq!((code, out.as_str()), (0, "from the child's context\ntriggered\n"));
    // Docker drops the triggers from the child's config
    let child_image = store.resolve("child:1").expect("child image");
    let raw: serde_json::Value = serde_json::from_slice(&store.read_blob(&child_image.id).expect("config")).expect("json");
    assert!(raw["config"].get("OnBuild").is_none(), "{raw}");

    // a child whose context lacks the file a trigger copies fails that step
    let bad = context(&fx, "bad", "FROM parent:1\n", &[]);
    let (result, output) = run_build(&options(&fx, &bad, "bad:1"));
    assert!(result.is_err(), "{output}");
}
