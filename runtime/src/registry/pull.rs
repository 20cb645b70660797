//! `pull`: fetch a manifest (choosing linux/amd64 from an index or manifest list), then its
//! config and layers, at most three at a time, each verified against its digest while it
//! streams to a temp file and moved into the store only when it matches; then name the image.

use std::io::IsTerminal;
use std::path::PathBuf;

use futures::{StreamExt, TryStreamExt};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use oci_spec::image::ImageManifest;
use reqwest::{Method, StatusCode};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use super::client::{check, Registry, RegistryError};
use super::push::record_sources;
use crate::image::{Image, ImageStore};
use crate::reference::Reference;

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// How many blobs download at once.
const PARALLEL: usize = 3;

/// Manifests are small JSON documents; a bigger answer is refused instead of held in memory.
const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

impl Registry {
    /// Pulls `reference` into `store` and names it; `out` gets docker-like status lines.
    pub async fn pull(
        &self,
        store: &ImageStore,
        reference: &Reference,
        out: &(dyn Fn(&str) + Sync),
    ) -> Result<Image, RegistryError> {
        let registry = reference.registry.as_str();
        let repo = reference.repository.as_str();
        let scopes = vec![format!("repository:{repo}:pull")];
        let wanted = reference
            .digest
            .clone()
            .or_else(|| reference.tag.clone())
            .unwrap_or_else(|| crate::reference::DEFAULT_TAG.to_owned());
        out(&format!("{wanted}: Pulling from {repo}"));
        let (mut bytes, media_type) = self.fetch_manifest(reference, &scopes, &wanted).await?;
        if is_index(&media_type, &bytes) {
            let digest = choose_platform(reference, &bytes)?;
            (bytes, _) = self.fetch_manifest(reference, &scopes, &digest).await?;
        }
        let manifest: ImageManifest =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::InvalidManifest {
                name: reference.familiar(),
                message: e.to_string(),
            })?;
        let manifest_digest = sha256_hex(&bytes);

        let _gc = store.gc_shared()?;
        let bars = (self.options.progress_bars && std::io::stderr().is_terminal())
            .then(MultiProgress::new);
        let mut blobs: Vec<(String, u64, bool)> = manifest
            .layers()
            .iter()
            .map(|l| (l.digest().to_string(), l.size(), true))
            .collect();
        blobs.push((
            manifest.config().digest().to_string(),
            manifest.config().size(),
            false,
        ));
        let mut fetched_any = false;
        let mut missing = Vec::new();
        for (digest, size, is_layer) in blobs.iter().cloned() {
            if store.blob_path(&digest).is_file() {
                if is_layer {
                    out(&format!("{}: Already exists", short(&digest)));
                }
            } else {
                fetched_any = true;
                missing.push((digest, size, is_layer));
            }
        }
        let scopes = &scopes;
        futures::stream::iter(missing.into_iter().map(|(digest, size, is_layer)| {
            let bar = match (&bars, is_layer) {
                (Some(bars), true) => Some(bars.add(new_bar(&digest, size))),
                _ => None,
            };
            async move {
                if is_layer && bar.is_none() {
                    out(&format!("{}: Pulling fs layer", short(&digest)));
                }
                self.fetch_blob(store, reference, scopes, &digest, size, bar.as_ref())
                    .await?;
                match bar {
                    Some(bar) => bar.finish_with_message("Pull complete"),
                    None if is_layer => out(&format!("{}: Pull complete", short(&digest))),
                    None => {}
                }
                Ok::<(), RegistryError>(())
            }
        }))
        .buffer_unordered(PARALLEL)
        .try_collect::<Vec<()>>()
        .await?;

        let before = store
            .resolve(&reference.full_name())
            .ok()
            .map(|i| i.manifest_digest);
        let image = store.store_manifest(reference, &bytes)?;
        let digests: Vec<String> = blobs.iter().map(|b| b.0.clone()).collect();
        record_sources(store, &format!("{registry}/{repo}"), &digests);
        out(&format!("Digest: {manifest_digest}"));
        let status = if fetched_any || before.as_deref() != Some(manifest_digest.as_str()) {
            "Downloaded newer image for"
        } else {
            "Image is up to date for"
        };
        out(&format!("Status: {status} {}", reference.familiar()));
        Ok(image)
    }

    /// GETs a manifest by tag or digest; verifies it when asked by digest.
    async fn fetch_manifest(
        &self,
        reference: &Reference,
        scopes: &[String],
        wanted: &str,
    ) -> Result<(Vec<u8>, String), RegistryError> {
        let url = format!(
            "{}/v2/{}/manifests/{wanted}",
            self.base_url(&reference.registry),
            reference.repository
        );
        let accept = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].join(", ");
        let response = self
            .send(&reference.registry, scopes, Method::GET, &url, &|b| {
                b.header("Accept", accept.as_str())
            })
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::ManifestNotFound {
                name: shown(reference, wanted),
            });
        }
        let response = check(response, "GET", &url).await?;
        let media_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned())
            .unwrap_or_default();
        // Asked by tag, the registry's Docker-Content-Digest (when sent) is what to check.
        let expected = if wanted.starts_with("sha256:") {
            Some(wanted.to_owned())
        } else {
            response
                .headers()
                .get("Docker-Content-Digest")
                .and_then(|v| v.to_str().ok())
                .filter(|d| d.starts_with("sha256:"))
                .map(str::to_owned)
        };
        if response
            .content_length()
            .is_some_and(|n| n > MAX_MANIFEST_BYTES)
        {
            return Err(RegistryError::TooLarge {
                url,
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|source| RegistryError::Http {
                url: url.clone(),
                source: source.without_url(),
            })?;
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(RegistryError::TooLarge {
                url,
                limit: MAX_MANIFEST_BYTES,
            });
        }
        if let Some(expected) = expected {
            let actual = sha256_hex(&bytes);
            if actual != expected {
                return Err(RegistryError::DigestMismatch {
                    what: "manifest".into(),
                    url,
                    expected,
                    actual,
                });
            }
        }
        Ok((bytes.to_vec(), media_type))
    }

    /// Streams one blob into a temp file, hashing as it goes, and moves it into the store when
    /// its digest matches.
    async fn fetch_blob(
        &self,
        store: &ImageStore,
        reference: &Reference,
        scopes: &[String],
        digest: &str,
        size: u64,
        bar: Option<&ProgressBar>,
    ) -> Result<(), RegistryError> {
        let url = format!(
            "{}/v2/{}/blobs/{digest}",
            self.base_url(&reference.registry),
            reference.repository
        );
        let response = self
            .send(&reference.registry, scopes, Method::GET, &url, &|b| b)
            .await?;
        let response = check(response, "GET", &url).await?;
        let dir = store.temp_dir();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|source| RegistryError::Io {
                path: dir.clone(),
                source,
            })?;
        let temp = TempPath(dir.join(format!("pull-{:016x}", rand::random::<u64>())));
        let io = |source| RegistryError::Io {
            path: temp.0.clone(),
            source,
        };
        let mut file = tokio::fs::File::create(&temp.0).await.map_err(io)?;
        let mut hasher = Sha256::new();
        let mut stream = response.bytes_stream();
        let mut received = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| RegistryError::Http {
                url: url.clone(),
                source: source.without_url(),
            })?;
            // The descriptor gives the size: more than that cannot match, so stop early.
            received += chunk.len() as u64;
            if received > size {
                return Err(RegistryError::TooLarge { url, limit: size });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io)?;
            if let Some(bar) = bar {
                bar.inc(chunk.len() as u64);
            }
        }
        file.sync_all().await.map_err(io)?;
        drop(file);
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                what: "blob".into(),
                url,
                expected: digest.to_owned(),
                actual,
            });
        }
        let dest = store.blob_path(digest);
        tokio::fs::rename(&temp.0, &dest)
            .await
            .map_err(|source| RegistryError::Io { path: dest, source })?;
        Ok(())
    }
}

/// A temp file removed on drop (a no-op once it was renamed away).
struct TempPath(PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub(crate) fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}

/// `busybox:latest` or `busybox@sha256:...`, for errors.
fn shown(reference: &Reference, wanted: &str) -> String {
    let sep = if wanted.starts_with("sha256:") {
        '@'
    } else {
        ':'
    };
    format!("{}{sep}{wanted}", reference.familiar_repository())
}

fn is_index(media_type: &str, bytes: &[u8]) -> bool {
    if media_type == OCI_INDEX || media_type == DOCKER_LIST {
        return true;
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return false;
    };
    match value.get("mediaType").and_then(|m| m.as_str()) {
        Some(m) => m == OCI_INDEX || m == DOCKER_LIST,
        None => value.get("manifests").is_some() && value.get("layers").is_none(),
    }
}

/// The digest of the linux/amd64 manifest of an index.
fn choose_platform(reference: &Reference, bytes: &[u8]) -> Result<String, RegistryError> {
    let invalid = |message: String| RegistryError::InvalidManifest {
        name: reference.familiar(),
        message,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    let manifests = value
        .get("manifests")
        .and_then(|m| m.as_array())
        .ok_or_else(|| invalid("the index has no manifests list".into()))?;
    let platform = |m: &serde_json::Value, key: &str| {
        m.get("platform")
            .and_then(|p| p.get(key))
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned()
    };
    let chosen = manifests
        .iter()
        .find(|m| platform(m, "os") == "linux" && platform(m, "architecture") == "amd64");
    match chosen
        .and_then(|m| m.get("digest"))
        .and_then(|d| d.as_str())
    {
        Some(digest) if crate::reference::is_valid_digest(digest) => Ok(digest.to_owned()),
        Some(digest) => Err(invalid(format!("invalid digest {digest:?} in the index"))),
        None => Err(RegistryError::NoPlatform {
            name: reference.familiar(),
            available: manifests
                .iter()
                .map(|m| format!("{}/{}", platform(m, "os"), platform(m, "architecture")))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

fn new_bar(digest: &str, size: u64) -> ProgressBar {
    let bar = ProgressBar::new(size);
    if let Ok(style) =
        ProgressStyle::with_template("{prefix}: {msg} [{bar:40}] {bytes}/{total_bytes}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(short(digest).to_owned());
    bar.set_message("Downloading");
    bar
}
