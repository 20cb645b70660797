//! `push`: for each blob of an image, skip it when the registry has it (HEAD), else mount it
//! from another repository of the same registry it is known to come from, else upload it (one
//! PUT for small blobs, PATCH chunks with Content-Range and a closing PUT for large ones); then
//! PUT the manifest. Where blobs came from is kept in `ROOT/registry-sources.json` beside the
//! image store (digest -> `registry/repository` list), written by pulls and pushes.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use futures::{StreamExt, TryStreamExt};
use oci_spec::image::ImageManifest;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};

use super::client::{check, Registry, RegistryError};
use super::pull::{sha256_hex, short, OCI_MANIFEST};
use crate::image::ImageStore;
use crate::reference::Reference;

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushResult {
    /// The tag pushed to.
    pub tag: String,
    /// The manifest digest.
    pub digest: String,
    /// The manifest size in bytes.
    pub size: u64,
}

/// How many blobs upload at once.
const PARALLEL: usize = 3;

impl Registry {
    /// Pushes the local image named `reference` to its registry; `out` gets docker-like lines.
    pub async fn push(
        &self,
        store: &ImageStore,
        reference: &Reference,
        out: &(dyn Fn(&str) + Sync),
    ) -> Result<PushResult, RegistryError> {
        let image = store.resolve(&reference.full_name())?;
        let manifest_bytes = store.read_blob(&image.manifest_digest)?;
        let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes).map_err(|e| {
            RegistryError::InvalidManifest {
                name: reference.familiar(),
                message: e.to_string(),
            }
        })?;
        let registry = reference.registry.as_str();
        let repo = reference.repository.as_str();
        let tag = reference
            .tag
            .clone()
            .unwrap_or_else(|| crate::reference::DEFAULT_TAG.to_owned());
        out(&format!(
            "The push refers to repository [{registry}/{repo}]"
        ));

        let mut blobs: Vec<(String, u64, bool)> = manifest
            .layers()
            .iter()
            .rev()
            .map(|l| (l.digest().to_string(), l.size(), true))
            .collect();
        blobs.push((
            manifest.config().digest().to_string(),
            manifest.config().size(),
            false,
        ));
        let sources = read_sources(store);
        let mounts: BTreeMap<String, String> = blobs
            .iter()
            .filter_map(|(digest, _, _)| {
                let from = sources.get(digest)?.iter().find_map(|source| {
                    let (source_registry, source_repo) = source.split_once('/')?;
                    (source_registry == registry && source_repo != repo)
                        .then(|| source_repo.to_owned())
                })?;
                Some((digest.clone(), from))
            })
            .collect();
        let mut scopes = vec![format!("repository:{repo}:pull,push")];
        scopes.extend(
            mounts
                .values()
                .map(|from| format!("repository:{from}:pull")),
        );
        scopes.dedup();

        let scopes = &scopes;
        let mounts = &mounts;
        futures::stream::iter(blobs.iter().map(|(digest, size, is_layer)| async move {
            let line = self
                .push_blob(store, reference, scopes, digest, *size, mounts.get(digest))
                .await?;
            if *is_layer {
                out(&format!("{}: {line}", short(digest)));
            }
            Ok::<(), RegistryError>(())
        }))
        .buffer_unordered(PARALLEL)
        .try_collect::<Vec<()>>()
        .await?;

        let media_type = manifest
            .media_type()
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_else(|| OCI_MANIFEST.to_owned());
        let url = format!("{}/v2/{repo}/manifests/{tag}", self.base_url(registry));
        let response = self
            .send(registry, scopes, Method::PUT, &url, &|b| {
                b.header(CONTENT_TYPE, media_type.as_str())
                    .body(manifest_bytes.clone())
            })
            .await?;
        let response = check(response, "PUT", &url).await?;
        let digest = response
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| sha256_hex(&manifest_bytes));
        let digests: Vec<String> = blobs.iter().map(|b| b.0.clone()).collect();
        record_sources(store, &format!("{registry}/{repo}"), &digests);
        let size = manifest_bytes.len() as u64;
        out(&format!("{tag}: digest: {digest} size: {size}"));
        Ok(PushResult { tag, digest, size })
    }

    /// Pushes one blob; returns what docker prints for it.
    async fn push_blob(
        &self,
        store: &ImageStore,
        reference: &Reference,
        scopes: &[String],
        digest: &str,
        size: u64,
        mount_from: Option<&String>,
    ) -> Result<String, RegistryError> {
        let registry = reference.registry.as_str();
        let base = self.base_url(registry);
        let repo = reference.repository.as_str();
        let url = format!("{base}/v2/{repo}/blobs/{digest}");
        let response = self
            .send(registry, scopes, Method::HEAD, &url, &|b| b)
            .await?;
        if response.status().is_success() {
            return Ok("Layer already exists".into());
        }
        let uploads = format!("{base}/v2/{repo}/blobs/uploads/");
        let mut location = None;
        if let Some(from) = mount_from {
            let url = format!("{uploads}?mount={digest}&from={from}");
            let response = self
                .send(registry, scopes, Method::POST, &url, &|b| {
                    b.header(CONTENT_LENGTH, 0)
                })
                .await?;
            if response.status() == StatusCode::CREATED {
                return Ok(format!("Mounted from {from}"));
            }
            // 202: the registry could not mount and opened an ordinary upload instead.
            let response = check(response, "POST", &url).await?;
            location = Some(location_of(&base, &response, &url)?);
        }
        let mut location = match location {
            Some(location) => location,
            None => {
                let response = self
                    .send(registry, scopes, Method::POST, &uploads, &|b| {
                        b.header(CONTENT_LENGTH, 0)
                    })
                    .await?;
                let response = check(response, "POST", &uploads).await?;
                location_of(&base, &response, &uploads)?
            }
        };
        let path = store.blob_path(digest);
        let io = |source| RegistryError::Io {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::File::open(&path).map_err(io)?;
        let threshold = self.options.chunk_threshold.max(1);
        if size > threshold {
            let mut offset = 0u64;
            loop {
                file.seek(SeekFrom::Start(offset)).map_err(io)?;
                let mut chunk = Vec::new();
                (&mut file)
                    .take(threshold)
                    .read_to_end(&mut chunk)
                    .map_err(io)?;
                if chunk.is_empty() {
                    break;
                }
                let end = offset + chunk.len() as u64 - 1;
                let range = format!("{offset}-{end}");
                let response = self
                    .send(registry, scopes, Method::PATCH, &location, &|b| {
                        b.header(CONTENT_TYPE, "application/octet-stream")
                            .header("Content-Range", range.as_str())
                            .header(CONTENT_LENGTH, chunk.len())
                            .body(chunk.clone())
                    })
                    .await?;
                let response = check(response, "PATCH", &location).await?;
                location = location_of(&base, &response, &location)?;
                offset = end + 1;
            }
            let url = with_digest(&location, digest);
            let response = self
                .send(registry, scopes, Method::PUT, &url, &|b| {
                    b.header(CONTENT_LENGTH, 0)
                })
                .await?;
            check(response, "PUT", &url).await?;
        } else {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map_err(io)?;
            let url = with_digest(&location, digest);
            let response = self
                .send(registry, scopes, Method::PUT, &url, &|b| {
                    b.header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_LENGTH, bytes.len())
                        .body(bytes.clone())
                })
                .await?;
            check(response, "PUT", &url).await?;
        }
        Ok("Pushed".into())
    }
}

/// Remembers that `digests` are in `repository` (`registry/repo`), for later mounts. Best
/// effort: losing this only costs an upload, so errors are logged, not returned.
pub(crate) fn record_sources(store: &ImageStore, repository: &str, digests: &[String]) {
    let mut sources = read_sources(store);
    for digest in digests {
        let list = sources.entry(digest.clone()).or_default();
        if !list.iter().any(|r| r == repository) {
            list.push(repository.to_owned());
        }
    }
    let path = sources_path(store);
    let tmp = path.with_extension(format!("tmp-{:08x}", rand::random::<u32>()));
    let written = serde_json::to_vec(&sources)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(error) = written {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!(path = %path.display(), %error, "cannot record where blobs came from");
    }
}

fn read_sources(store: &ImageStore) -> BTreeMap<String, Vec<String>> {
    std::fs::read(sources_path(store))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fn sources_path(store: &ImageStore) -> PathBuf {
    store.root().join("registry-sources.json")
}

/// The absolute upload URL from a response's `Location` (registries may send a relative one).
fn location_of(
    base: &str,
    response: &reqwest::Response,
    url: &str,
) -> Result<String, RegistryError> {
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| RegistryError::Status {
            method: "POST".into(),
            url: url.to_owned(),
            status: response.status(),
            body: "the response has no Location header".into(),
        })?;
    if location.starts_with("http://") || location.starts_with("https://") {
        Ok(location.to_owned())
    } else if location.starts_with('/') {
        Ok(format!("{base}{location}"))
    } else {
        Ok(format!("{base}/{location}"))
    }
}

fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}
