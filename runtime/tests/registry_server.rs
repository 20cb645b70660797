//! Flotilla's own registry server ([`runtime::registry::server`]) on a loopback port over a
//! temporary store holding a busybox image: our client pushes and pulls through it (whole and
//! chunked uploads), bad uploads and manifests are refused without storing anything, tags and
//! the catalog list what is there, and skopeo copies images out of and into it (skipped with a
//! notice when skopeo or busybox is not installed).

mod common;

use std::path::{Path, PathBuf};

use runtime::image::ImageStore;
use runtime::reference::Reference;
use runtime::registry::{server, Registry, RegistryOptions};
use tokio::sync::oneshot;

/// A server task on 127.0.0.1, stopped by [`Running::stop`].
struct Running {
    host: String,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn start(root: &Path) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let host = listener.local_addr().expect("addr").to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(root.to_path_buf(), listener, async {
            let _ = stopped.await;
        }));
        Running { host, stop, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("server task")
            .expect("server result");
    }
}

/// A temp dir whose `root` store holds the busybox image as `name`, and that image's id; None
/// (after a notice) without busybox.
fn busybox_store(test: &str, name: &str) -> Option<(tempfile::TempDir, ImageStore, String)> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file());
    let Some(busybox) = busybox else {
        eprintln!("skipping {test}: install busybox-static (apt-get install busybox-static)");
        return None;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = dir.path().join("rootfs");
    common::make_rootfs(&rootfs, busybox);
    let store = ImageStore::open(&dir.path().join("root")).expect("open store");
    let image = store
        .import_rootfs_dir(&rootfs, &Reference::parse(name).expect("reference"))
        .expect("import busybox");
    Some((dir, store, image.id))
}

fn empty_store(dir: &Path) -> ImageStore {
    ImageStore::open(&dir.join("root")).expect("open store")
}

fn client(dir: &Path, chunk_threshold: u64) -> Registry {
    Registry::new(RegistryOptions {
        auth_file: dir.join("auth.json"),
        chunk_threshold,
        ..RegistryOptions::default()
    })
    .expect("client")
}

fn reference(s: &str) -> Reference {
    Reference::parse(s).expect("reference")
}

fn quiet(_: &str) {}

/// The `errors[0].code` of a registry error answer.
async fn error_code(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.expect("error body");
    body["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn client_push_then_pull_round_trips() {
    let test = "client_push_then_pull_round_trips";
    let Some((_served_dir, served, served_id)) = busybox_store(test, common::IMAGE) else {
        return;
    };
    let server = Running::start(served.root()).await;
    let work = tempfile::tempdir().expect("tempdir");
    let registry = client(work.path(), RegistryOptions::default().chunk_threshold);

    // The image the server started with pulls into an empty store with the same id.
    let fresh = empty_store(&work.path().join("fresh"));
    let name = format!("{}/flotilla-test/busybox:latest", server.host);
    let pulled = registry
        .pull(&fresh, &reference(&name), &quiet)
        .await
        .expect("pull the served image");
    assert_eq!(pulled.id, served_id);

    // An image pushed from another store lands as localhost/<name>:<tag> ...
    let Some((_source_dir, source, source_id)) = busybox_store(test, "team/app:v1") else {
        return;
    };
    assert_ne!(source_id, served_id, "the two imports should differ");
    let pushed_name = format!("{}/team/app/web:v1", server.host);
    source
        .tag("team/app:v1", &pushed_name)
        .expect("tag for the push");
    let result = registry
        .push(&source, &reference(&pushed_name), &quiet)
        .await
        .expect("push");
    let stored = served
        .resolve("localhost/team/app/web:v1")
        .expect("pushed image");
    assert_eq!(stored.id, source_id);
    assert_eq!(stored.manifest_digest, result.digest);

    // ... and pulls back under another host name for the same server.
    let port = server.host.rsplit(':').next().expect("port");
    let other_name = format!("localhost:{port}/team/app/web:v1");
    let back = empty_store(&work.path().join("back"));
    let image = registry
        .pull(&back, &reference(&other_name), &quiet)
        .await
        .expect("pull the pushed image");
    assert_eq!(image.id, source_id);
    assert_eq!(image.layers, stored.layers);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_push_with_tiny_threshold() {
    let test = "chunked_push_with_tiny_threshold";
    let Some((_served_dir, served, _)) = busybox_store(test, common::IMAGE) else {
        return;
    };
    let server = Running::start(served.root()).await;
    let Some((_source_dir, source, source_id)) = busybox_store(test, "chunked:v1") else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let name = format!("{}/chunked/image:v1", server.host);
    source.tag("chunked:v1", &name).expect("tag");
    // 64 KiB chunks: the busybox layer (about a megabyte) takes many PATCH requests.
    let registry = client(work.path(), 64 * 1024);
    registry
        .push(&source, &reference(&name), &quiet)
        .await
        .expect("chunked push");
    let stored = served
        .resolve("localhost/chunked/image:v1")
        .expect("pushed image");
    assert_eq!(stored.id, source_id);
    for layer in &stored.layers {
        // read_blob checks the content against the digest.
        let bytes = served.read_blob(&layer.digest).expect("layer blob intact");
        assert_eq!(bytes.len() as u64, layer.size);
        assert!(
            layer.size > 64 * 1024,
            "the layer should need several chunks"
        );
    }
    let back = empty_store(&work.path().join("back"));
    let image = registry
        .pull(&back, &reference(&name), &quiet)
        .await
        .expect("pull");
    assert_eq!(image.id, source_id);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_digest_upload_is_refused_and_nothing_stored() {
    let test = "wrong_digest_upload_is_refused_and_nothing_stored";
    let Some((_served_dir, served, _)) = busybox_store(test, common::IMAGE) else {
        return;
    };
    let server = Running::start(served.root()).await;
    let http = reqwest::Client::new();
    let data = b"some blob data".to_vec();
    let right = format!("sha256:{}", sha256_hex(&data));
    let wrong = format!("sha256:{}", "0".repeat(64));

    // Session upload: POST, PATCH, PUT with the wrong digest.
    let response = http
        .post(server.url("/v2/bad/blobs/uploads/"))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["Range"], "0-0");
    let location = response.headers()["Location"]
        .to_str()
        .expect("location")
        .to_owned();
    let response = http
        .patch(server.url(&location))
        .header("Content-Range", format!("0-{}", data.len() - 1))
        .body(data.clone())
        .send()
        .await
        .expect("patch");
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.headers()["Range"].to_str().expect("range"),
        format!("0-{}", data.len() - 1)
    );
    let response = http
        .put(server.url(&format!("{location}?digest={wrong}")))
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "DIGEST_INVALID");
    // The session is gone.
    let response = http
        .get(server.url(&location))
        .send()
        .await
        .expect("status");
    assert_eq!(response.status(), 404);
    assert_eq!(error_code(response).await, "BLOB_UPLOAD_UNKNOWN");

    // Monolithic upload with the wrong digest.
    let response = http
        .post(server.url(&format!("/v2/bad/blobs/uploads/?digest={wrong}")))
        .body(data.clone())
        .send()
        .await
        .expect("monolithic post");
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "DIGEST_INVALID");

    for digest in [&right, &wrong] {
        assert!(
            !served.blob_path(digest).exists(),
            "{digest} must not be stored"
        );
        let response = http
            .head(server.url(&format!("/v2/bad/blobs/{digest}")))
            .send()
            .await
            .expect("head");
        assert_eq!(response.status(), 404);
    }
    let response = http
        .get(server.url(&format!("/v2/bad/blobs/{right}")))
        .send()
        .await
        .expect("get");
    assert_eq!(error_code(response).await, "BLOB_UNKNOWN");
    let uploads = served.root().join("registry-uploads");
    let left = std::fs::read_dir(&uploads).map(|d| d.count()).unwrap_or(0);
    assert_eq!(
        left,
        0,
        "no upload data may be left in {}",
        uploads.display()
    );

    // The right digest is accepted (monolithic), served back, and cancelling works.
    let response = http
        .post(server.url(&format!("/v2/bad/blobs/uploads/?digest={right}")))
        .body(data.clone())
        .send()
        .await
        .expect("monolithic post");
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["Docker-Content-Digest"], right.as_str());
    let response = http
        .get(server.url(&format!("/v2/bad/blobs/{right}")))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.bytes().await.expect("body").as_ref(),
        data.as_slice()
    );
    let response = http
        .post(server.url("/v2/bad/blobs/uploads/"))
        .send()
        .await
        .expect("post");
    let location = response.headers()["Location"]
        .to_str()
        .expect("location")
        .to_owned();
    let response = http
        .delete(server.url(&location))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), 204);
    let response = http
        .get(server.url(&location))
        .send()
        .await
        .expect("status");
    assert_eq!(response.status(), 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_naming_a_missing_blob_is_refused() {
    let test = "manifest_naming_a_missing_blob_is_refused";
    let Some((_served_dir, served, served_id)) = busybox_store(test, common::IMAGE) else {
        return;
    };
    let server = Running::start(served.root()).await;
    let http = reqwest::Client::new();
    let missing = format!("sha256:{}", "ab".repeat(32));
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": served_id,
            "size": served.read_blob(&served_id).expect("config").len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": missing,
            "size": 10,
        }],
    });
    let response = http
        .put(server.url("/v2/broken/manifests/v1"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(serde_json::to_vec(&manifest).expect("json"))
        .send()
        .await
        .expect("put manifest");
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.expect("error body");
    assert_eq!(body["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(body["errors"][0]["detail"]["digest"], missing.as_str());
    assert!(served.resolve("localhost/broken:v1").is_err());
    let response = http
        .get(server.url("/v2/broken/manifests/v1"))
        .send()
        .await
        .expect("get manifest");
    assert_eq!(response.status(), 404);
    assert_eq!(error_code(response).await, "MANIFEST_UNKNOWN");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_catalog_and_manifest_headers() {
    let test = "tags_catalog_and_manifest_headers";
    let Some((_served_dir, served, _)) = busybox_store(test, common::IMAGE) else {
        return;
    };
    served
        .tag(common::IMAGE, "localhost/flotilla-test/busybox:v2")
        .expect("tag");
    served.tag(common::IMAGE, "other/thing:1").expect("tag");
    let server = Running::start(served.root()).await;
    let http = reqwest::Client::new();

    let response = http.get(server.url("/v2/")).send().await.expect("version");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["Docker-Distribution-API-Version"],
        "registry/2.0"
    );

    let tags: serde_json::Value = http
        .get(server.url("/v2/flotilla-test/busybox/tags/list"))
        .send()
        .await
        .expect("tags")
        .json()
        .await
        .expect("tags json");
    assert_eq!(
        tags,
        serde_json::json!({"name": "flotilla-test/busybox", "tags": ["latest", "v2"]})
    );
    let page = http
        .get(server.url("/v2/flotilla-test/busybox/tags/list?n=1"))
        .send()
        .await
        .expect("tags page");
    assert!(page.headers().contains_key("Link"));
    let page: serde_json::Value = page.json().await.expect("page json");
    assert_eq!(page["tags"], serde_json::json!(["latest"]));
    let response = http
        .get(server.url("/v2/nothing/here/tags/list"))
        .send()
        .await
        .expect("unknown tags");
    assert_eq!(response.status(), 404);
    assert_eq!(error_code(response).await, "NAME_UNKNOWN");

    let catalog: serde_json::Value = http
        .get(server.url("/v2/_catalog"))
        .send()
        .await
        .expect("catalog")
        .json()
        .await
        .expect("catalog json");
    assert_eq!(
        catalog,
        serde_json::json!({"repositories": ["flotilla-test/busybox", "other/thing"]})
    );

    let image = served.resolve(common::IMAGE).expect("image");
    let size = std::fs::metadata(served.blob_path(&image.manifest_digest))
        .expect("manifest blob")
        .len();
    for path in [
        "/v2/flotilla-test/busybox/manifests/latest".to_owned(),
        format!(
            "/v2/flotilla-test/busybox/manifests/{}",
            image.manifest_digest
        ),
    ] {
        let response = http.head(server.url(&path)).send().await.expect("head");
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert_eq!(
            headers["Docker-Content-Digest"],
            image.manifest_digest.as_str()
        );
        assert_eq!(
            headers["Content-Type"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(headers["Content-Length"], size.to_string().as_str());
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_copies_out_and_in() {
    let test = "skopeo_copies_out_and_in";
    let skopeo = ["/usr/bin/skopeo", "/usr/local/bin/skopeo"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    let Some(skopeo) = skopeo else {
        eprintln!("skipping {test}: skopeo is missing (apt-get install skopeo)");
        return;
    };
    let Some((_served_dir, served, served_id)) = busybox_store(test, common::IMAGE) else {
        return;
    };
    let server = Running::start(served.root()).await;
    let work = tempfile::tempdir().expect("tempdir");
    let archive = work.path().join("busybox.tar");
    let copy = |from: String, to: String| {
        let skopeo = skopeo.clone();
        async move {
            let output = tokio::process::Command::new(&skopeo)
                .args(["--insecure-policy", "copy", "--src-tls-verify=false"])
                .arg("--dest-tls-verify=false")
                .args([&from, &to])
                .output()
                .await
                .expect("run skopeo");
            assert!(
                output.status.success(),
                "skopeo copy {from} {to}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    };
    copy(
        format!("docker://{}/flotilla-test/busybox:latest", server.host),
        format!("oci-archive:{}", archive.display()),
    )
    .await;
    copy(
        format!("oci-archive:{}", archive.display()),
        format!("docker://{}/copied/busybox:v2", server.host),
    )
    .await;
    let copied = served
        .resolve("localhost/copied/busybox:v2")
        .expect("copied image");
    assert_eq!(copied.id, served_id);

    // What skopeo pushed pulls with our client too.
    let fresh = empty_store(&work.path().join("fresh"));
    let image = client(work.path(), RegistryOptions::default().chunk_threshold)
        .pull(
            &fresh,
            &reference(&format!("{}/copied/busybox:v2", server.host)),
            &quiet,
        )
        .await
        .expect("pull what skopeo pushed");
    assert_eq!(image.id, served_id);
    server.stop().await;
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}
