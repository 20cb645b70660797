//! A registry of Flotilla's own: the OCI distribution API (the subset real clients use: pull,
//! push with monolithic, chunked and cross-repository-mount uploads, tag listing and the
//! catalog) served straight from the local [`ImageStore`].
//!
//! Names: a pushed `<name>:<tag>` is stored as `localhost/<name>:<tag>`, whatever host the
//! client used to reach the server (the `Host` header differs between `localhost:5000`,
//! `127.0.0.1:5000` and a LAN address, so it is no stable key). A lookup of `<name>:<tag>`
//! answers from any store name whose repository is `<name>`, whatever its registry host
//! (`localhost/` first), and a one-component `<name>` also matches `docker.io/library/<name>`;
//! so every image of the store can be pulled, and what was pushed pulls back under any host.
//!
//! There is no authentication in this version: anyone who can connect can push and pull,
//! which is why `ctl registry serve` binds to 127.0.0.1 by default.
//!
//! Upload sessions live in memory (a restart forgets them) with their data in
//! `ROOT/registry-uploads/<uuid>`, outside `images/.tmp` so garbage collection does not delete an
//! upload in flight; a finished upload is hashed as it streams in, checked against the digest
//! the client names, and renamed into `images/blobs/sha256/`. Request bodies go to disk in
//! chunks as they arrive; only manifests (at most 4 MiB) are held in memory.
//!
//! The routing is hand-written over one fallback handler because repository names contain
//! slashes (`team/app/web`) and axum's path patterns cannot put a catch-all before a fixed
//! suffix such as `/manifests/{reference}`.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use oci_spec::image::{ImageConfiguration, ImageManifest};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::image::{ImageError, ImageStore, REF_NAME_ANNOTATION};
use crate::reference::{is_valid_digest, Reference, DEFAULT_REGISTRY};

/// The registry host pushed images are stored under (see the module docs).
pub const STORE_HOST: &str = "localhost";

/// Manifests are small JSON documents; a bigger one is refused instead of held in memory.
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Serves the registry over the image store under `store_root` on `listener` until `shutdown`
/// completes, then finishes the requests in flight.
pub async fn serve(
    store_root: PathBuf,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let store = ImageStore::open(&store_root).map_err(io::Error::other)?;
    // Sessions live in memory, so any upload data from an earlier run is unreachable.
    let uploads = uploads_dir(&store);
    if uploads.exists() {
        tokio::fs::remove_dir_all(&uploads).await?;
    }
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, root = %store_root.display(), "registry listening");
    }
    axum::serve(listener, router(store))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The registry's routes over `store`.
pub fn router(store: ImageStore) -> Router {
    let state = Arc::new(Server {
        uploads_dir: uploads_dir(&store),
        store,
        uploads: Mutex::new(HashMap::new()),
    });
    Router::new()
        .route("/v2/", get(version_check))
        .route("/v2", get(version_check))
        .fallback(dispatch)
        .with_state(state)
}

struct Server {
    store: ImageStore,
    uploads_dir: PathBuf,
    uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Upload>>>>,
}

/// One upload session: its data so far and their running hash.
struct Upload {
    repo: String,
    path: PathBuf,
    file: tokio::fs::File,
    hasher: Sha256,
    size: u64,
}

/// A request path under `/v2/`, with the repository name split off.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Catalog,
    Tags { name: String },
    Manifest { name: String, reference: String },
    Blob { name: String, digest: String },
    UploadStart { name: String },
    Upload { name: String, id: String },
}

/// An error in the distribution spec's JSON shape.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    detail: serde_json::Value,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            detail: serde_json::Value::Null,
        }
    }

    fn detail(mut self, detail: serde_json::Value) -> ApiError {
        self.detail = detail;
        self
    }

    fn internal(what: &str, error: impl std::fmt::Display) -> ApiError {
        tracing::error!(%error, "registry: {what}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            format!("{what}: {error}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "errors": [{"code": self.code, "message": self.message, "detail": self.detail}]
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        response.headers_mut().insert(
            "Docker-Distribution-API-Version",
            HeaderValue::from_static("registry/2.0"),
        );
        response
    }
}

type Answer = Result<Response, ApiError>;

async fn version_check() -> Response {
    let mut response = (StatusCode::OK, axum::Json(serde_json::json!({}))).into_response();
    response.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    response
}

async fn dispatch(State(server): State<Arc<Server>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_owned();
    let answer = match parse_route(&path) {
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no such endpoint: {path}"),
        )),
        Some(route) => handle(&server, route, &method, &parts.uri, &parts.headers, body).await,
    };
    let mut response = answer.unwrap_or_else(IntoResponse::into_response);
    response.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    tracing::debug!(%method, %path, status = %response.status(), "registry request");
    response
}

async fn handle(
    server: &Server,
    route: Route,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Answer {
    let query = query_of(uri);
    let head = method == Method::HEAD;
    match (route, method.clone()) {
        (Route::Catalog, Method::GET) => catalog(server, &query),
        (Route::Tags { name }, Method::GET) => tags(server, &name, &query),
        (Route::Manifest { name, reference }, Method::GET | Method::HEAD) => {
            get_manifest(server, &name, &reference, head).await
        }
        (Route::Manifest { name, reference }, Method::PUT) => {
            put_manifest(server, &name, &reference, body).await
        }
        (Route::Blob { name, digest }, Method::GET | Method::HEAD) => {
            get_blob(server, &name, &digest, head).await
        }
        (Route::UploadStart { name }, Method::POST) => {
            start_upload(server, &name, &query, body).await
        }
        (Route::Upload { name, id }, Method::PATCH) => {
            patch_upload(server, &name, &id, headers, body).await
        }
        (Route::Upload { name, id }, Method::PUT) => {
            finish_upload(server, &name, &id, &query, body).await
        }
        (Route::Upload { name, id }, Method::GET) => upload_status(server, &name, &id).await,
        (Route::Upload { name, id }, Method::DELETE) => cancel_upload(server, &name, &id).await,
        (_, method) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            format!("{method} is not supported on this endpoint"),
        )),
    }
}

/// Splits a request path into the endpoint and the repository name; None when it is not one of
/// the registry's endpoints.
fn parse_route(path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/v2/")?;
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let n = segments.len();
    let name_of = |len: usize| -> Option<String> {
        let name = segments.get(..len)?.join("/");
        valid_name(&name).then_some(name)
    };
    if n >= 3 && segments[n - 2] == "tags" && segments[n - 1] == "list" {
        return Some(Route::Tags {
            name: name_of(n - 2)?,
        });
    }
    if n >= 3 && segments[n - 2] == "blobs" && segments[n - 1] == "uploads" {
        return Some(Route::UploadStart {
            name: name_of(n - 2)?,
        });
    }
    if n >= 4 && segments[n - 3] == "blobs" && segments[n - 2] == "uploads" {
        let id = segments[n - 1];
        if id.is_empty() {
            return Some(Route::UploadStart {
                name: name_of(n - 3)?,
            });
        }
        return Some(Route::Upload {
            name: name_of(n - 3)?,
            id: id.to_owned(),
        });
    }
    if n >= 3 && segments[n - 2] == "manifests" && !segments[n - 1].is_empty() {
        return Some(Route::Manifest {
            name: name_of(n - 2)?,
            reference: segments[n - 1].to_owned(),
        });
    }
    if n >= 3 && segments[n - 2] == "blobs" && !segments[n - 1].is_empty() {
        return Some(Route::Blob {
            name: name_of(n - 2)?,
            digest: segments[n - 1].to_owned(),
        });
    }
    None
}

/// The spec's repository name grammar: lower-case alphanumeric components separated by `/`,
/// each component split by single `.`, one or two `_`, or runs of `-`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|component| {
            let bytes = component.as_bytes();
            let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
            !bytes.is_empty()
                && bytes.first().copied().is_some_and(alnum)
                && bytes.last().copied().is_some_and(alnum)
                && bytes
                    .iter()
                    .all(|&b| alnum(b) || matches!(b, b'.' | b'_' | b'-'))
                && !component.contains("..")
                && !component.contains("___")
        })
}

fn query_of(uri: &Uri) -> HashMap<String, String> {
    Query::<HashMap<String, String>>::try_from_uri(uri)
        .map(|Query(q)| q)
        .unwrap_or_default()
}

fn header_value(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Every named image of the store: (reference, manifest digest). `index.json` is replaced by
/// rename, so reading it without the store's lock sees a whole version.
fn named_images(store: &ImageStore) -> Result<Vec<(Reference, String)>, ApiError> {
    let path = store.root().join("images").join("index.json");
    let bytes = std::fs::read(&path)
        .map_err(|e| ApiError::internal(&format!("cannot read {}", path.display()), e))?;
    let index: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::internal(&format!("cannot parse {}", path.display()), e))?;
    let mut out = Vec::new();
    for descriptor in index["manifests"].as_array().into_iter().flatten() {
        let name = descriptor["annotations"][REF_NAME_ANNOTATION].as_str();
        let digest = descriptor["digest"].as_str();
        if let (Some(name), Some(digest)) = (name, digest) {
            if let Ok(reference) = Reference::parse(name) {
                out.push((reference, digest.to_owned()));
            }
        }
    }
    Ok(out)
}

/// Whether a store name answers for the repository `name` (see the module docs).
fn answers_for(reference: &Reference, name: &str) -> bool {
    reference.repository == name
        || (reference.registry == DEFAULT_REGISTRY
            && !name.contains('/')
            && reference.repository.strip_prefix("library/") == Some(name))
}

/// The manifest digest `name:tag` designates, `localhost/` names first.
fn find_tag(store: &ImageStore, name: &str, tag: &str) -> Result<Option<String>, ApiError> {
    let mut matches: Vec<(Reference, String)> = named_images(store)?
        .into_iter()
        .filter(|(r, _)| answers_for(r, name) && r.tag.as_deref() == Some(tag))
        .collect();
    matches.sort_by_key(|(r, _)| (r.registry != STORE_HOST, r.registry.clone()));
    Ok(matches.into_iter().next().map(|(_, digest)| digest))
}

/// `n` and `last` pagination over a sorted list; the second value is whether more follow.
fn paginate(
    items: BTreeSet<String>,
    query: &HashMap<String, String>,
) -> Result<(Vec<String>, bool), ApiError> {
    let after: Vec<String> = match query.get("last") {
        Some(last) => items.into_iter().filter(|i| i > last).collect(),
        None => items.into_iter().collect(),
    };
    match query.get("n") {
        None => Ok((after, false)),
        Some(n) => {
            let n: usize = n.parse().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "PAGINATION_NUMBER_INVALID",
                    format!("invalid n={n}: give a non-negative number"),
                )
            })?;
            let more = after.len() > n;
            Ok((after.into_iter().take(n).collect(), more))
        }
    }
}

fn list_response(
    key: &str,
    items: Vec<String>,
    more: bool,
    link_base: &str,
    name: Option<&str>,
) -> Response {
    let mut body = serde_json::Map::new();
    if let Some(name) = name {
        body.insert("name".into(), name.into());
    }
    body.insert(key.into(), items.clone().into());
    let mut response = (StatusCode::OK, axum::Json(body)).into_response();
    if more {
        if let Some(last) = items.last() {
            let link = format!("<{link_base}?n={}&last={last}>; rel=\"next\"", items.len());
            response
                .headers_mut()
                .insert(header::LINK, header_value(&link));
        }
    }
    response
}

fn catalog(server: &Server, query: &HashMap<String, String>) -> Answer {
    let repositories: BTreeSet<String> = named_images(&server.store)?
        .into_iter()
        .map(|(r, _)| r.repository)
        .collect();
    let (items, more) = paginate(repositories, query)?;
    Ok(list_response(
        "repositories",
        items,
        more,
        "/v2/_catalog",
        None,
    ))
}

fn tags(server: &Server, name: &str, query: &HashMap<String, String>) -> Answer {
    let tags: BTreeSet<String> = named_images(&server.store)?
        .into_iter()
        .filter(|(r, _)| answers_for(r, name))
        .filter_map(|(r, _)| r.tag)
        .collect();
    if tags.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!("repository {name} is not known to this registry"),
        )
        .detail(serde_json::json!({ "name": name })));
    }
    let (items, more) = paginate(tags, query)?;
    let link_base = format!("/v2/{name}/tags/list");
    Ok(list_response("tags", items, more, &link_base, Some(name)))
}

fn manifest_unknown(name: &str, reference: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
        format!("manifest {name}:{reference} is not known to this registry"),
    )
    .detail(serde_json::json!({ "name": name, "reference": reference }))
}

async fn get_manifest(server: &Server, name: &str, reference: &str, head: bool) -> Answer {
    let digest = if reference.contains(':') {
        if !is_valid_digest(reference) {
            return Err(digest_invalid(reference));
        }
        reference.to_owned()
    } else {
        match find_tag(&server.store, name, reference)? {
            Some(digest) => digest,
            None => return Err(manifest_unknown(name, reference)),
        }
    };
    if !is_valid_digest(&digest) {
        return Err(manifest_unknown(name, reference));
    }
    let path = server.store.blob_path(&digest);
    let bytes = match tokio::fs::read(&path).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(manifest_unknown(name, reference))
        }
        Err(e) => {
            return Err(ApiError::internal(
                &format!("cannot read {}", path.display()),
                e,
            ))
        }
    };
    if sha256_of(&bytes) != digest {
        return Err(ApiError::internal(
            "corrupt manifest",
            format!("blob {digest} does not match its digest; pull the image again"),
        ));
    }
    // A digest can name any blob; only JSON documents with a schema version are manifests.
    let json: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| manifest_unknown(name, reference))?;
    if json.get("schemaVersion").is_none() {
        return Err(manifest_unknown(name, reference));
    }
    let media_type = match json["mediaType"].as_str() {
        Some(media_type) => media_type.to_owned(),
        None if json.get("manifests").is_some() => OCI_INDEX.to_owned(),
        None => OCI_MANIFEST.to_owned(),
    };
    let length = bytes.len();
    let body = if head {
        Body::empty()
    } else {
        Body::from(bytes)
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header_value(&media_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert("Docker-Content-Digest", header_value(&digest));
    headers.insert(header::ETAG, header_value(&format!("\"{digest}\"")));
    Ok(response)
}

fn digest_invalid(digest: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
        format!("invalid digest {digest:?}: give sha256:<64 lower-case hex digits>"),
    )
    .detail(serde_json::json!({ "digest": digest }))
}

fn manifest_invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", message)
}

async fn put_manifest(server: &Server, name: &str, reference: &str, body: Body) -> Answer {
    let bytes = axum::body::to_bytes(body, MAX_MANIFEST_BYTES)
        .await
        .map_err(|e| {
            manifest_invalid(format!(
                "cannot read the manifest (at most {MAX_MANIFEST_BYTES} bytes): {e}"
            ))
        })?;
    let digest = sha256_of(&bytes);
    let tag = if reference.contains(':') {
        if !is_valid_digest(reference) {
            return Err(digest_invalid(reference));
        }
        if reference != digest {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                format!("the manifest hashes to {digest}, not {reference}"),
            )
            .detail(serde_json::json!({ "digest": reference })));
        }
        None
    } else {
        Some(reference)
    };
    let manifest: ImageManifest = match serde_json::from_slice(&bytes) {
        Ok(manifest) => manifest,
        Err(error) => {
            let json: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
            let is_index = json.as_ref().is_some_and(|j| {
                j.get("manifests").is_some()
                    || matches!(j["mediaType"].as_str(), Some(OCI_INDEX | DOCKER_LIST))
            });
            return Err(if is_index {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "UNSUPPORTED",
                    "image indexes are not supported by this registry; push one platform's image",
                )
            } else {
                manifest_invalid(format!("not an image manifest: {error}"))
            });
        }
    };
    let config_digest = manifest.config().digest().to_string();
    let mut referenced = vec![config_digest.clone()];
    referenced.extend(manifest.layers().iter().map(|l| l.digest().to_string()));
    for blob in &referenced {
        if !is_valid_digest(blob) {
            return Err(manifest_invalid(format!(
                "the manifest names blob {blob:?}; only sha256 digests are supported"
            )));
        }
        if !server.store.blob_path(blob).is_file() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "MANIFEST_BLOB_UNKNOWN",
                format!("blob {blob} is not in the registry; push it before the manifest"),
            )
            .detail(serde_json::json!({ "digest": blob })));
        }
    }
    // The store describes an image through its config, so check it before naming anything.
    let config_path = server.store.blob_path(&config_digest);
    let config_bytes = tokio::fs::read(&config_path)
        .await
        .map_err(|e| ApiError::internal(&format!("cannot read {}", config_path.display()), e))?;
    let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
        .map_err(|e| manifest_invalid(format!("config {config_digest} is invalid: {e}")))?;
    if config.rootfs().diff_ids().len() != manifest.layers().len() {
        return Err(manifest_invalid(format!(
            "the manifest has {} layers but config {config_digest} lists {} diff_ids",
            manifest.layers().len(),
            config.rootfs().diff_ids().len()
        )));
    }
    let store_ref = match tag {
        Some(tag) => Some(
            Reference::parse(&format!("{STORE_HOST}/{name}:{tag}")).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "TAG_INVALID",
                    format!("invalid tag {tag:?}: {e}"),
                )
            })?,
        ),
        None => None,
    };
    let store = server.store.clone();
    let stored = tokio::task::spawn_blocking(move || match store_ref {
        Some(store_ref) => store.store_manifest(&store_ref, &bytes),
        None => store.store_unnamed(&bytes),
    })
    .await
    .map_err(|e| ApiError::internal("the manifest writer stopped", e))?;
    match stored {
        Ok(_) => {}
        Err(ImageError::MissingBlob { digest, .. }) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "MANIFEST_BLOB_UNKNOWN",
                format!("blob {digest} is not in the registry; push it before the manifest"),
            )
            .detail(serde_json::json!({ "digest": digest })))
        }
        Err(e @ ImageError::InvalidContent { .. }) => return Err(manifest_invalid(e.to_string())),
        Err(e) => return Err(ApiError::internal("cannot store the manifest", e)),
    }
    tracing::info!(%name, %reference, %digest, "manifest stored");
    let mut response = StatusCode::CREATED.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        header_value(&format!("/v2/{name}/manifests/{digest}")),
    );
    headers.insert("Docker-Content-Digest", header_value(&digest));
    Ok(response)
}

fn blob_unknown(digest: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
        format!("blob {digest} is not known to this registry"),
    )
    .detail(serde_json::json!({ "digest": digest }))
}

async fn get_blob(server: &Server, _name: &str, digest: &str, head: bool) -> Answer {
    if !is_valid_digest(digest) {
        return Err(digest_invalid(digest));
    }
    let path = server.store.blob_path(digest);
    let file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(blob_unknown(digest)),
        Err(e) => {
            return Err(ApiError::internal(
                &format!("cannot open {}", path.display()),
                e,
            ))
        }
    };
    let length = file
        .metadata()
        .await
        .map_err(|e| ApiError::internal(&format!("cannot stat {}", path.display()), e))?
        .len();
    let body = if head {
        Body::empty()
    } else {
        Body::from_stream(file_stream(file))
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert("Docker-Content-Digest", header_value(digest));
    headers.insert(header::ETAG, header_value(&format!("\"{digest}\"")));
    Ok(response)
}

/// A file as a stream of 64 KiB chunks, so a blob is never read whole into memory.
fn file_stream(file: tokio::fs::File) -> impl futures::Stream<Item = io::Result<Bytes>> + Send {
    futures::stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 64 * 1024];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), file)))
    })
}

fn blob_upload_unknown(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
        format!("upload {id} is not known to this registry; start a new upload"),
    )
}

async fn start_upload(
    server: &Server,
    name: &str,
    query: &HashMap<String, String>,
    body: Body,
) -> Answer {
    if let Some(mount) = query.get("mount") {
        if is_valid_digest(mount) && server.store.blob_path(mount).is_file() {
            tracing::debug!(%name, digest = %mount, from = ?query.get("from"), "blob mounted");
            return Ok(blob_created(name, mount));
        }
        // Not here: fall back to an ordinary upload, as the spec asks.
    }
    let (id, upload) = new_upload(server, name).await?;
    if let Some(digest) = query.get("digest") {
        // A monolithic upload: the whole blob is this request's body.
        let mut upload = upload.lock().await;
        append(&mut upload, body).await?;
        drop(upload);
        return complete(server, name, &id, digest).await;
    }
    let upload = upload.lock().await;
    Ok(upload_response(
        StatusCode::ACCEPTED,
        name,
        &id,
        upload.size,
    ))
}

async fn new_upload(
    server: &Server,
    name: &str,
) -> Result<(String, Arc<tokio::sync::Mutex<Upload>>), ApiError> {
    tokio::fs::create_dir_all(&server.uploads_dir)
        .await
        .map_err(|e| {
            ApiError::internal(
                &format!("cannot create {}", server.uploads_dir.display()),
                e,
            )
        })?;
    let id = new_uuid();
    let path = server.uploads_dir.join(&id);
    let file = tokio::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&path)
        .await
        .map_err(|e| ApiError::internal(&format!("cannot create {}", path.display()), e))?;
    let upload = Arc::new(tokio::sync::Mutex::new(Upload {
        repo: name.to_owned(),
        path,
        file,
        hasher: Sha256::new(),
        size: 0,
    }));
    lock_sessions(server).insert(id.clone(), upload.clone());
    Ok((id, upload))
}

fn lock_sessions(
    server: &Server,
) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<Upload>>>> {
    // A panic while holding this lock cannot leave the map half-changed (single inserts and
    // removes), so a poisoned lock is still usable.
    server
        .uploads
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The session `id`; the handlers check under its lock that it belongs to their repository.
fn session(server: &Server, id: &str) -> Result<Arc<tokio::sync::Mutex<Upload>>, ApiError> {
    lock_sessions(server)
        .get(id)
        .cloned()
        .ok_or_else(|| blob_upload_unknown(id))
}

/// Appends a request body to the upload, hashing it on the way.
async fn append(upload: &mut Upload, body: Body) -> Result<(), ApiError> {
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "BLOB_UPLOAD_INVALID",
                format!("the upload body was cut short: {e}"),
            )
        })?;
        upload.file.write_all(&chunk).await.map_err(|e| {
            ApiError::internal(&format!("cannot write {}", upload.path.display()), e)
        })?;
        upload.hasher.update(&chunk);
        upload.size += chunk.len() as u64;
    }
    Ok(())
}

async fn patch_upload(
    server: &Server,
    name: &str,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Answer {
    let upload = session(server, id)?;
    let mut upload = upload.lock().await;
    if upload.repo != name {
        return Err(blob_upload_unknown(id));
    }
    if let Some(range) = headers.get("Content-Range").and_then(|v| v.to_str().ok()) {
        let start = range
            .trim_start_matches("bytes ")
            .split('-')
            .next()
            .and_then(|s| s.trim().parse::<u64>().ok());
        if start != Some(upload.size) {
            let mut response = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "BLOB_UPLOAD_INVALID",
                format!(
                    "chunk range {range} does not continue the upload at byte {}",
                    upload.size
                ),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RANGE, header_value(&range_of(upload.size)));
            return Ok(response);
        }
    }
    append(&mut upload, body).await?;
    Ok(upload_response(StatusCode::ACCEPTED, name, id, upload.size))
}

async fn finish_upload(
    server: &Server,
    name: &str,
    id: &str,
    query: &HashMap<String, String>,
    body: Body,
) -> Answer {
    let upload = session(server, id)?;
    let Some(digest) = query.get("digest") else {
        return Err(digest_invalid(""));
    };
    {
        let mut upload = upload.lock().await;
        if upload.repo != name {
            return Err(blob_upload_unknown(id));
        }
        append(&mut upload, body).await?;
    }
    complete(server, name, id, digest).await
}

/// Ends upload `id`: checks the data against `digest` and moves it into the store, or drops
/// it. The session is gone either way.
async fn complete(server: &Server, name: &str, id: &str, digest: &str) -> Answer {
    let upload = lock_sessions(server)
        .remove(id)
        .ok_or_else(|| blob_upload_unknown(id))?;
    let mut upload = upload.lock().await;
    let path = upload.path.clone();
    let discard = |path: PathBuf| async move {
        if let Err(error) = tokio::fs::remove_file(&path).await {
            tracing::warn!(path = %path.display(), %error, "cannot remove upload data");
        }
    };
    if !is_valid_digest(digest) {
        discard(path).await;
        return Err(digest_invalid(digest));
    }
    let actual = format!("sha256:{}", hex::encode(upload.hasher.clone().finalize()));
    if actual != digest {
        discard(path).await;
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            format!("the uploaded data hashes to {actual}, not {digest}; nothing was stored"),
        )
        .detail(serde_json::json!({ "digest": digest })));
    }
    if let Err(e) = async {
        upload.file.flush().await?;
        upload.file.sync_all().await
    }
    .await
    {
        discard(path.clone()).await;
        return Err(ApiError::internal(
            &format!("cannot write {}", path.display()),
            e,
        ));
    }
    let store = server.store.clone();
    let dest = store.blob_path(digest);
    let moved = tokio::task::spawn_blocking(move || -> Result<(), String> {
        // Shared gc.lock: a collection running now would not know this blob yet.
        let _gc = store.gc_shared().map_err(|e| e.to_string())?;
        std::fs::rename(&path, &dest).map_err(|e| format!("{}: {e}", dest.display()))
    })
    .await
    .map_err(|e| ApiError::internal("the blob writer stopped", e))?;
    if let Err(e) = moved {
        discard(upload.path.clone()).await;
        return Err(ApiError::internal("cannot store the blob", e));
    }
    tracing::debug!(%name, %digest, size = upload.size, "blob stored");
    Ok(blob_created(name, digest))
}

async fn upload_status(server: &Server, name: &str, id: &str) -> Answer {
    let upload = session(server, id)?;
    let upload = upload.lock().await;
    if upload.repo != name {
        return Err(blob_upload_unknown(id));
    }
    Ok(upload_response(
        StatusCode::NO_CONTENT,
        name,
        id,
        upload.size,
    ))
}

async fn cancel_upload(server: &Server, name: &str, id: &str) -> Answer {
    let upload = session(server, id)?;
    if upload.lock().await.repo != name {
        return Err(blob_upload_unknown(id));
    }
    let upload = lock_sessions(server)
        .remove(id)
        .ok_or_else(|| blob_upload_unknown(id))?;
    let upload = upload.lock().await;
    if let Err(error) = tokio::fs::remove_file(&upload.path).await {
        tracing::warn!(path = %upload.path.display(), %error, "cannot remove upload data");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn blob_created(name: &str, digest: &str) -> Response {
    let mut response = StatusCode::CREATED.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        header_value(&format!("/v2/{name}/blobs/{digest}")),
    );
    headers.insert("Docker-Content-Digest", header_value(digest));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    response
}

fn upload_response(status: StatusCode, name: &str, id: &str, size: u64) -> Response {
    let mut response = status.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        header_value(&format!("/v2/{name}/blobs/uploads/{id}")),
    );
    headers.insert(header::RANGE, header_value(&range_of(size)));
    headers.insert("Docker-Upload-UUID", header_value(id));
    if status != StatusCode::NO_CONTENT {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    }
    response
}

/// The `Range` header of an upload holding `size` bytes (inclusive end, `0-0` when empty, as
/// docker's registry sends it).
fn range_of(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn uploads_dir(store: &ImageStore) -> PathBuf {
    store.root().join("registry-uploads")
}

fn sha256_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A random version-4 UUID, the upload session id.
fn new_uuid() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_split_names_with_slashes() {
        assert_eq!(
            parse_route("/v2/a/b/c/manifests/v1"),
            Some(Route::Manifest {
                name: "a/b/c".into(),
                reference: "v1".into()
            })
        );
        assert_eq!(
            parse_route("/v2/a/blobs/b/manifests/latest"),
            Some(Route::Manifest {
                name: "a/blobs/b".into(),
                reference: "latest".into()
            })
        );
        assert_eq!(
            parse_route("/v2/team/app/blobs/uploads/"),
            Some(Route::UploadStart {
                name: "team/app".into()
            })
        );
        assert_eq!(
            parse_route("/v2/team/app/blobs/uploads/abc"),
            Some(Route::Upload {
                name: "team/app".into(),
                id: "abc".into()
            })
        );
        assert_eq!(
            parse_route("/v2/x/tags/list"),
            Some(Route::Tags { name: "x".into() })
        );
        assert_eq!(parse_route("/v2/_catalog"), Some(Route::Catalog));
        assert_eq!(parse_route("/v2/Bad/manifests/v1"), None);
        assert_eq!(parse_route("/v2/../manifests/v1"), None);
        assert_eq!(parse_route("/v2/manifests/v1"), None);
    }

    #[test]
    fn range_is_inclusive() {
        assert_eq!(range_of(0), "0-0");
        assert_eq!(range_of(10), "0-9");
    }
}
