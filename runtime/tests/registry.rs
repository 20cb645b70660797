//! The registry client against the real CNCF registry (`docker-registry`, started per test on a
//! free loopback port; the tests skip with a notice when it is not installed) and against a small
//! in-test axum server for the bearer-token dance and for corrupt blobs.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runtime::image::ImageStore;
use runtime::reference::Reference;
use runtime::registry::{AuthFile, Credentials, Registry, RegistryOptions};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A bcrypt hash of `s3cret-pass` (cost 5), precomputed so the tests need no bcrypt crate.
const HTPASSWD: &str = "flotilla:$2b$05$rYbORt3a8OXc6/aE.NA7gOijiPDFdLs6RDXAa3gDGU7yvyemF2Ddm\n";

/// A docker-registry child process, killed on drop.
struct RegistryProcess {
    child: Child,
    host: String,
    /// The registry's stderr, where its access log goes.
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Starts docker-registry (with htpasswd auth when `htpasswd`), or None after a notice.
async fn start_registry(test: &str, htpasswd: bool) -> Option<RegistryProcess> {
    if !Path::new(REGISTRY_BIN).is_file() {
        eprintln!("skipping {test}: {REGISTRY_BIN} is missing (apt-get install docker-registry)");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut config = format!(
        "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
        dir.path().join("data").display()
    );
    if htpasswd {
        let path = dir.path().join("htpasswd");
        std::fs::write(&path, HTPASSWD).expect("write htpasswd");
        config.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: flotilla-test\n    path: {}\n",
            path.display()
        ));
    }
    let config_path = dir.path().join("config.yml");
    std::fs::write(&config_path, config).expect("write config");
    let log = dir.path().join("registry.log");
    let child = Command::new(REGISTRY_BIN)
        .arg("serve")
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("create log"))
        .spawn()
        .expect("start docker-registry");
    let process = RegistryProcess {
        child,
        host: format!("127.0.0.1:{port}"),
        log,
        _dir: dir,
    };
    let url = format!("http://{}/v2/", process.host);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(response) = reqwest::get(&url).await {
            // 200 without auth, 401 with it: either way the registry is serving.
            if response.status().is_success() || response.status() == 401 {
                return Some(process);
            }
        }
        assert!(
            Instant::now() < deadline,
            "docker-registry did not come up on {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A store under `dir` holding one image named `name`: busybox-static when installed, plus a
/// file of random (incompressible) bytes so the layer is large enough to be chunked.
fn store_with_image(dir: &Path, name: &str) -> (ImageStore, String) {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
    if let Some(busybox) = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
    {
        std::fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy busybox");
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).expect("symlink");
    }
    let noise: Vec<u8> = (0..96 * 1024).map(|_| rand::random::<u8>()).collect();
    std::fs::write(rootfs.join("noise"), noise).expect("write noise");
    let store = ImageStore::open(&dir.join("root")).expect("open store");
    let image = store
        .import_rootfs_dir(&rootfs, &Reference::parse(name).expect("reference"))
        .expect("import");
    (store, image.id)
}

fn options(dir: &Path) -> RegistryOptions {
    RegistryOptions {
        auth_file: dir.join("auth.json"),
        ..RegistryOptions::default()
    }
}

/// Collects the lines a pull or push prints.
#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl Lines {
    fn push(&self, line: &str) {
        self.0.lock().expect("lines").push(line.to_owned());
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("lines"))
    }
}

#[tokio::test]
async fn push_then_pull_by_tag_and_digest() {
    let Some(registry_process) = start_registry("push_then_pull_by_tag_and_digest", false).await
    else {
        return;
    };
    let host = &registry_process.host;
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("{host}/test/busybox:v1");
    let (source, id) = store_with_image(&dir.path().join("a"), &name);
    let registry = Registry::new(options(dir.path())).expect("client");
    let lines = Lines::default();
    let reference = Reference::parse(&name).expect("reference");

    let pushed = registry
        .push(&source, &reference, &|l| lines.push(l))
        .await
        .expect("push");
    let printed = lines.take();
    assert!(
        printed.iter().any(|l| l.ends_with(": Pushed")),
        "{printed:?}"
    );
    assert_eq!(
        printed.last().map(String::as_str),
        Some(format!("v1: digest: {} size: {}", pushed.digest, pushed.size).as_str())
    );

    // Pushing again finds everything there.
    registry
        .push(&source, &reference, &|l| lines.push(l))
        .await
        .expect("push again");
    let printed = lines.take();
    assert!(
        printed
            .iter()
            .any(|l| l.ends_with(": Layer already exists")),
        "{printed:?}"
    );
    assert!(
        !printed.iter().any(|l| l.ends_with(": Pushed")),
        "{printed:?}"
    );

    // Pull by tag into an empty store.
    let by_tag = ImageStore::open(&dir.path().join("b")).expect("store b");
    let image = registry
        .pull(&by_tag, &reference, &|l| lines.push(l))
        .await
        .expect("pull by tag");
    assert_eq!(image.id, id);
    assert_eq!(image.manifest_digest, pushed.digest);
    assert_eq!(by_tag.resolve(&name).expect("resolve").id, id);
    let printed = lines.take();
    assert!(
        printed.contains(&format!("Digest: {}", pushed.digest)),
        "{printed:?}"
    );
    assert!(
        printed.iter().any(|l| l.ends_with(": Pull complete")),
        "{printed:?}"
    );

    // Pulling again downloads nothing.
    registry
        .pull(&by_tag, &reference, &|l| lines.push(l))
        .await
        .expect("pull again");
    let printed = lines.take();
    assert!(
        printed.iter().any(|l| l.ends_with(": Already exists")),
        "{printed:?}"
    );
    assert!(
        printed
            .iter()
            .any(|l| l.starts_with("Status: Image is up to date for")),
        "{printed:?}"
    );

    // Pull by digest into another empty store.
    let by_digest = ImageStore::open(&dir.path().join("c")).expect("store c");
    let digest_ref =
        Reference::parse(&format!("{host}/test/busybox@{}", pushed.digest)).expect("reference");
    let image = registry
        .pull(&by_digest, &digest_ref, &|l| lines.push(l))
        .await
        .expect("pull by digest");
    assert_eq!(image.id, id);

    // A second repository of the same registry mounts the blobs instead of uploading them.
    let other = format!("{host}/other/copy:v2");
    source.tag(&name, &other).expect("tag");
    registry
        .push(
            &source,
            &Reference::parse(&other).expect("reference"),
            &|l| lines.push(l),
        )
        .await
        .expect("push to other repository");
    let printed = lines.take();
    assert!(
        printed
            .iter()
            .any(|l| l.ends_with(": Mounted from test/busybox")),
        "{printed:?}"
    );

    // An unknown tag is reported as such.
    let missing = Reference::parse(&format!("{host}/test/busybox:nope")).expect("reference");
    let error = registry
        .pull(&by_tag, &missing, &|l| lines.push(l))
        .await
        .expect_err("unknown tag");
    assert_eq!(
        error.to_string(),
        format!("manifest for {host}/test/busybox:nope not found: manifest unknown")
    );
}

#[tokio::test]
async fn chunked_upload() {
    let Some(registry_process) = start_registry("chunked_upload", false).await else {
        return;
    };
    let host = &registry_process.host;
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("{host}/test/chunked:latest");
    let (source, id) = store_with_image(&dir.path().join("a"), &name);
    let layer_size = source.resolve(&name).expect("resolve").layers[0].size;
    let threshold = 16 * 1024;
    assert!(
        layer_size > 3 * threshold,
        "the layer ({layer_size} bytes) must span several chunks"
    );
    let registry = Registry::new(RegistryOptions {
        chunk_threshold: threshold,
        ..options(dir.path())
    })
    .expect("client");
    let reference = Reference::parse(&name).expect("reference");
    registry
        .push(&source, &reference, &|_| {})
        .await
        .expect("chunked push");
    let log = std::fs::read_to_string(&registry_process.log).expect("registry log");
    let patches = log
        .lines()
        .filter(|l| {
            l.contains("http.request.method=PATCH")
                && l.contains("http.request.uri=\"/v2/test/chunked/blobs/uploads/")
        })
        .count();
    assert!(
        patches as u64 >= layer_size / threshold,
        "expected chunked PATCHes, the registry logged {patches}"
    );
    let target = ImageStore::open(&dir.path().join("b")).expect("store b");
    let image = registry
        .pull(&target, &reference, &|_| {})
        .await
        .expect("pull");
    assert_eq!(image.id, id);
}

#[tokio::test]
async fn basic_auth_against_htpasswd() {
    let Some(registry_process) = start_registry("basic_auth_against_htpasswd", true).await else {
        return;
    };
    let host = registry_process.host.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("{host}/secure/app:v1");
    let (source, id) = store_with_image(&dir.path().join("a"), &name);
    let reference = Reference::parse(&name).expect("reference");

    // Anonymous: refused, with the hint to log in.
    let anonymous = Registry::new(options(dir.path())).expect("client");
    let error = anonymous
        .push(&source, &reference, &|_| {})
        .await
        .expect_err("anonymous push");
    assert_eq!(
        error.to_string(),
        format!("unauthorized: authentication required; run ctl login {host}")
    );

    let wrong = Credentials {
        username: "flotilla".into(),
        password: "wrong".into(),
    };
    let error = anonymous
        .login(&host, &wrong)
        .await
        .expect_err("wrong password");
    assert!(
        error.to_string().contains("incorrect username or password"),
        "{error}"
    );
    let right = Credentials {
        username: "flotilla".into(),
        password: "s3cret-pass".into(),
    };
    anonymous
        .login(&host, &right)
        .await
        .expect("right password");

    let mut file = AuthFile::default();
    file.set(&host, &right);
    file.save(&dir.path().join("auth.json"))
        .expect("save auth file");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("auth.json"))
            .expect("stat")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let registry = Registry::new(options(dir.path())).expect("client");
    registry
        .push(&source, &reference, &|_| {})
        .await
        .expect("push with credentials");
    let target = ImageStore::open(&dir.path().join("b")).expect("store b");
    assert_eq!(
        registry
            .pull(&target, &reference, &|_| {})
            .await
            .expect("pull")
            .id,
        id
    );
}

/// What the in-test token server serves and how it misbehaves.
struct TokenServer {
    repository: String,
    manifest: Vec<u8>,
    manifest_digest: String,
    blobs: HashMap<String, Vec<u8>>,
    /// This blob is served with one byte changed.
    corrupt: Option<String>,
    token_requests: AtomicUsize,
    realm: Mutex<String>,
}

const TOKEN: &str = "tok-3f9a";

async fn serve_token_registry(state: Arc<TokenServer>) -> String {
    use axum::extract::{Request, State};
    use axum::http::{header, StatusCode};
    use axum::response::{IntoResponse, Response};

    async fn handle(State(s): State<Arc<TokenServer>>, request: Request) -> Response {
        let path = request.uri().path().to_owned();
        if path == "/token" {
            s.token_requests.fetch_add(1, Ordering::SeqCst);
            let query = request.uri().query().unwrap_or_default();
            let expected = format!(
                "service=test-registry&scope=repository%3A{}%3Apull",
                s.repository.replace('/', "%2F")
            );
            if query != expected {
                return (StatusCode::BAD_REQUEST, format!("unexpected query {query}"))
                    .into_response();
            }
            return (
                [(header::CONTENT_TYPE, "application/json")],
                format!(r#"{{"access_token":"{TOKEN}"}}"#),
            )
                .into_response();
        }
        let authorized = request
            .headers()
            .get(header::AUTHORIZATION)
            .is_some_and(|v| v.as_bytes() == format!("Bearer {TOKEN}").as_bytes());
        if !authorized {
            let realm = s.realm.lock().expect("realm").clone();
            let challenge = format!(
                r#"Bearer realm="{realm}",service="test-registry",scope="repository:{}:pull""#,
                s.repository
            );
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, challenge)],
                "",
            )
                .into_response();
        }
        let prefix = format!("/v2/{}/", s.repository);
        let Some(rest) = path.strip_prefix(&prefix) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        if let Some(reference) = rest.strip_prefix("manifests/") {
            // Indexes: a multi-platform OCI index, a docker manifest list, and one without amd64.
            let other = format!("sha256:{}", "ab".repeat(32));
            let entry = |digest: &str, arch: &str, media: &str| {
                format!(
                    r#"{{"mediaType":"{media}","digest":"{digest}","size":{},"platform":{{"os":"linux","architecture":"{arch}"}}}}"#,
                    s.manifest.len()
                )
            };
            let oci = "application/vnd.oci.image.manifest.v1+json";
            let docker = "application/vnd.docker.distribution.manifest.v2+json";
            let multi_body = |entries: String| {
                format!(r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{entries}]}}"#)
            };
            let multi_entries = [entry(&other, "arm64", oci), entry(&s.manifest_digest, "amd64", oci)].join(",");
            let multi_digest = {
                use sha2::Digest;
                format!("sha256:{}", hex::encode(sha2::Sha256::digest(multi_body(multi_entries.clone()).as_bytes())))
            };
            // the multi-platform index is also served by its own digest
            let reference = if reference == multi_digest { "multi" } else { reference };
            let index = match reference {
                "multi" => Some((
                    "application/vnd.oci.image.index.v1+json",
                    [
                        entry(&other, "arm64", oci),
                        entry(&s.manifest_digest, "amd64", oci),
                    ]
                    .join(","),
                )),
                "list" => Some((
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                    [
                        entry(&s.manifest_digest, "amd64", docker),
                        entry(&other, "arm64", docker),
                    ]
                    .join(","),
                )),
                "arm-only" => Some((
                    "application/vnd.oci.image.index.v1+json",
                    entry(&other, "arm64", oci),
                )),
                _ => None,
            };
            if let Some((media_type, entries)) = index {
                let body = format!(
                    r#"{{"schemaVersion":2,"mediaType":"{media_type}","manifests":[{entries}]}}"#
                );
                return ([(header::CONTENT_TYPE, media_type)], body).into_response();
            }
            if reference == "v1" || reference == s.manifest_digest {
                return (
                    [(
                        header::CONTENT_TYPE,
                        "application/vnd.oci.image.manifest.v1+json",
                    )],
                    s.manifest.clone(),
                )
                    .into_response();
            }
        }
        if let Some(digest) = rest.strip_prefix("blobs/") {
            if let Some(blob) = s.blobs.get(digest) {
                let mut blob = blob.clone();
                if s.corrupt.as_deref() == Some(digest) {
                    if let Some(byte) = blob.last_mut() {
                        *byte ^= 0xff;
                    }
                }
                return blob.into_response();
            }
        }
        StatusCode::NOT_FOUND.into_response()
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    *state.realm.lock().expect("realm") = format!("http://{host}/token");
    let app = axum::Router::new().fallback(handle).with_state(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    host
}

/// A token server holding an image made in a temp store; `corrupt_layer` damages its layer.
fn token_server(dir: &Path, corrupt_layer: bool) -> (Arc<TokenServer>, String) {
    let (source, id) = store_with_image(dir, "demo/app:v1");
    let image = source.resolve("demo/app:v1").expect("resolve");
    let mut blobs = HashMap::new();
    blobs.insert(
        image.id.clone(),
        source.read_blob(&image.id).expect("config"),
    );
    for layer in &image.layers {
        blobs.insert(
            layer.digest.clone(),
            source.read_blob(&layer.digest).expect("layer"),
        );
    }
    let state = TokenServer {
        repository: "demo/app".into(),
        manifest: source.read_blob(&image.manifest_digest).expect("manifest"),
        manifest_digest: image.manifest_digest.clone(),
        blobs,
        corrupt: corrupt_layer.then(|| image.layers[0].digest.clone()),
        token_requests: AtomicUsize::new(0),
        realm: Mutex::new(String::new()),
    };
    (Arc::new(state), id)
}

#[tokio::test]
async fn bearer_token_flow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, id) = token_server(&dir.path().join("src"), false);
    let host = serve_token_registry(state.clone()).await;
    let registry = Registry::new(options(dir.path())).expect("client");
    let target = ImageStore::open(&dir.path().join("b")).expect("store");
    let reference = Reference::parse(&format!("{host}/demo/app:v1")).expect("reference");
    let image = registry
        .pull(&target, &reference, &|_| {})
        .await
        .expect("pull through the token flow");
    assert_eq!(image.id, id);
    // One token, cached for the scope and reused for the manifest and every blob.
    assert_eq!(state.token_requests.load(Ordering::SeqCst), 1);

    // From an OCI index and from a docker manifest list, linux/amd64 is chosen.
    for tag in ["multi", "list"] {
        let target = ImageStore::open(&dir.path().join(tag)).expect("store");
        let name = format!("{host}/demo/app:{tag}");
        let reference = Reference::parse(&name).expect("reference");
        let image = registry
            .pull(&target, &reference, &|_| {})
            .await
            .expect("pull from an index");
        assert_eq!(image.id, id, "{tag}");
        assert_eq!(target.resolve(&name).expect("resolve").id, id);
    }
    // by the digest of the index: the name it is stored under resolves afterwards
    let index_body = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{},{}]}}"#,
        format_args!(r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{}","size":{},"platform":{{"os":"linux","architecture":"arm64"}}}}"#, "ab".repeat(32), state.manifest.len()),
        format_args!(r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"platform":{{"os":"linux","architecture":"amd64"}}}}"#, state.manifest_digest, state.manifest.len()),
    );
    let index_digest = {
        use sha2::Digest;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(index_body.as_bytes())))
    };
    let by_digest = ImageStore::open(&dir.path().join("by-index-digest")).expect("store");
    let name = format!("{host}/demo/app@{index_digest}");
    let image = registry
        .pull(&by_digest, &Reference::parse(&name).expect("reference"), &|_| {})
        .await
        .expect("pull by the index's digest");
    assert_eq!(image.id, id);
    assert_eq!(by_digest.resolve(&name).expect("resolve by the index digest").id, id);

    let reference = Reference::parse(&format!("{host}/demo/app:arm-only")).expect("reference");
    let error = registry
        .pull(&target, &reference, &|_| {})
        .await
        .expect_err("no amd64");
    assert!(
        error.to_string().contains("no manifest for linux/amd64"),
        "{error}"
    );
    assert!(error.to_string().contains("linux/arm64"), "{error}");
}

#[tokio::test]
async fn corrupt_blob_is_refused_and_not_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, _id) = token_server(&dir.path().join("src"), true);
    let bad = state.corrupt.clone().expect("corrupt digest");
    let host = serve_token_registry(state).await;
    let registry = Registry::new(options(dir.path())).expect("client");
    let target = ImageStore::open(&dir.path().join("b")).expect("store");
    let name = format!("{host}/demo/app:v1");
    let reference = Reference::parse(&name).expect("reference");
    let error = registry
        .pull(&target, &reference, &|_| {})
        .await
        .expect_err("corrupt layer");
    let message = error.to_string();
    assert!(
        message.contains(&format!("expected digest {bad}")),
        "{message}"
    );
    assert!(message.contains("got sha256:"), "{message}");
    assert!(
        !target.blob_path(&bad).exists(),
        "the corrupt blob was stored"
    );
    assert!(target.resolve(&name).is_err(), "the image was named");
    assert!(target.list().expect("list").is_empty());
    let leftovers: Vec<PathBuf> = std::fs::read_dir(dir.path().join("b/images/.tmp"))
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}
