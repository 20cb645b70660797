//! The local image store, kept in the OCI image-layout format under `ROOT/images`:
//! `oci-layout`, `index.json` (one manifest descriptor per name, annotated with
//! `org.opencontainers.image.ref.name` = the full normalised reference; a descriptor without the
//! annotation is a dangling `<none>` image) and `blobs/sha256/<hex>`.
//!
//! An image's id is its config digest, as in docker. Blobs are written through a temp file and
//! renamed into place once their digest checks out; `index.json` is rewritten the same way.
//! Two lock files keep processes apart: `index.lock` (exclusive) around every read-modify-write
//! of `index.json`, and `gc.lock`, held shared by anything writing blobs not yet in the index and
//! exclusively by garbage collection, so a collection never deletes a blob an import is about to
//! reference.
//!
//! Submodules: [`blob`] (hashing, atomic writes), [`import`] (`docker import` of a rootfs),
//! [`archive`] (docker-archive and oci-archive save/load).

mod archive;
mod blob;
mod import;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use oci_spec::image::{
    Descriptor, ImageConfiguration, ImageIndex, ImageIndexBuilder, ImageManifest, MediaType,
};
use serde::Serialize;

use crate::reference::{Reference, ReferenceError};

pub use archive::ArchiveFormat;
pub use import::ImportOptions;

/// The annotation naming an image in `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// The annotation containerd and docker (25+) use for the full image name in archives.
pub const CONTAINERD_NAME_ANNOTATION: &str = "io.containerd.image.name";

/// The image store under `ROOT/images`.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
    root: PathBuf,
}

/// One image: its config, layers and the names pointing at it.
#[derive(Debug, Clone)]
pub struct Image {
    /// The config digest, `sha256:...` (docker's image id).
    pub id: String,
    pub manifest_digest: String,
    /// Full normalised names, e.g. `docker.io/library/busybox:latest`, sorted.
    pub names: Vec<String>,
    pub config: ImageConfiguration,
    pub layers: Vec<LayerRef>,
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRef {
    /// The blob digest, as stored (maybe compressed).
    pub digest: String,
    /// The digest of the uncompressed tar.
    pub diff_id: String,
    pub media_type: String,
    /// The blob's size in bytes.
    pub size: u64,
}

/// One row of `ctl images`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// As docker prints it (`busybox`, `localhost:5000/a/b`), or `<none>`.
    pub repository: String,
    /// The tag, or `<none>`.
    pub tag: String,
    /// The first 12 hex digits of the image id.
    pub id: String,
    /// The full image id, `sha256:...`.
    pub full_id: String,
    pub created: Option<jiff::Timestamp>,
    /// The sum of the layer blob sizes.
    pub size: u64,
}

/// One row of `ctl image history`, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The image id for the newest entry, `<missing>` for the others (as docker shows them).
    pub id: String,
    pub created: Option<jiff::Timestamp>,
    pub created_by: String,
    /// The size of the layer this step made (0 for empty layers).
    pub size: u64,
    pub comment: String,
    pub empty_layer: bool,
}

/// What `remove` did, in order, for `ctl rmi` to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveAction {
    /// A name was removed (full normalised name).
    Untagged(String),
    /// The image itself was deleted (its id).
    Deleted(String),
}

/// `ctl image inspect` output, shaped like docker's.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInspect {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub parent: String,
    pub comment: String,
    pub created: String,
    pub author: String,
    /// The image config's `config` object as stored (docker's key names).
    pub config: serde_json::Value,
    pub architecture: String,
    pub os: String,
    pub size: u64,
    #[serde(rename = "RootFS")]
    pub root_fs: InspectRootFs,
}

#[derive(Debug, Clone, Serialize)]
pub struct InspectRootFs {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no such image: {0}")]
    NotFound(String),
    #[error(
        "image id prefix {prefix:?} is ambiguous: it matches {count} images; give more digits"
    )]
    Ambiguous { prefix: String, count: usize },
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("blob {digest} is corrupt: its content hashes to {actual}")]
    DigestMismatch { digest: String, actual: String },
    #[error(
        "blob {digest} is missing from the image store at {path}; remove the image and load or pull it again"
    )]
    MissingBlob { digest: String, path: PathBuf },
    #[error("invalid {what} {digest}: {message}")]
    InvalidContent {
        what: &'static str,
        digest: String,
        message: String,
    },
    #[error(
        "{path} is not a valid image index: {message}; restore it or remove {path} to start an empty store"
    )]
    InvalidIndex { path: PathBuf, message: String },
    #[error("the rootfs is not a valid tar archive: {0}")]
    InvalidTar(#[source] io::Error),
    #[error("invalid --change {change:?}: {message}")]
    InvalidChange { change: String, message: String },
    #[error("invalid archive: {0}")]
    InvalidArchive(String),
    #[error("cannot tag with {0}: a tag target cannot contain a digest")]
    TagWithDigest(String),
    #[error(
        "conflict: unable to delete {id} (must be forced) - image is referenced in multiple repositories; use -f to remove it"
    )]
    MultipleNames { id: String },
    #[error(
        "conflict: unable to delete {image}: image is being used by a container; use -f to remove it"
    )]
    InUse { image: String },
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl ImageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> ImageError {
        ImageError::Io {
            path: path.into(),
            source,
        }
    }
}

/// One descriptor of `index.json`, with the manifest's config digest.
#[derive(Debug, Clone)]
struct Entry {
    name: Option<Reference>,
    manifest: String,
    id: String,
}

impl ImageStore {
    /// Opens (creating if needed) the store under `root/images`.
    pub fn open(root: &Path) -> Result<ImageStore, ImageError> {
        let dir = root.join("images");
        let store = ImageStore {
            dir: dir.clone(),
            root: root.to_path_buf(),
        };
        let blobs = dir.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(|source| ImageError::io(&blobs, source))?;
        let layout = dir.join("oci-layout");
        if !layout.exists() {
            blob::write_atomic(
                &store.tmp_dir(),
                &layout,
                br#"{"imageLayoutVersion":"1.0.0"}"#,
            )?;
        }
        if !store.index_path().exists() {
            let _lock = store.lock("index.lock", FlockArg::LockExclusive)?;
            if !store.index_path().exists() {
                store.write_index(&empty_index()?)?;
            }
        }
        Ok(store)
    }

    /// The root directory this store was opened under (the parent of `images/`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob (`sha256:<hex>`) lives.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join("blobs").join("sha256").join(hex)
    }

    /// Finds an image by reference (`busybox`, `busybox:1.36`, `name@sha256:<manifest>`), by full
    /// id (`sha256:<hex>`) or by a prefix of the id's hex digits.
    pub fn resolve(&self, name_or_id: &str) -> Result<Image, ImageError> {
        let index = self.read_index()?;
        let entries = self.entries(&index)?;
        let manifest = find(&entries, name_or_id)?;
        self.image(&entries, &manifest)
    }

    /// Every name and every dangling image, newest first.
    pub fn list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        let index = self.read_index()?;
        let entries = self.entries(&index)?;
        let mut images: HashMap<String, Image> = HashMap::new();
        let mut rows = Vec::new();
        for entry in &entries {
            if !images.contains_key(&entry.id) {
                images.insert(entry.id.clone(), self.image(&entries, &entry.manifest)?);
            }
            let Some(image) = images.get(&entry.id) else {
                continue;
            };
            // A nameless manifest of an image that has names elsewhere is not a `<none>` image.
            if entry.name.is_none() && !image.names.is_empty() {
                continue;
            }
            let created = created_of(&image.config);
            let size = image.layers.iter().map(|l| l.size).sum();
            let (repository, tag) = match &entry.name {
                Some(name) => (
                    name.familiar_repository(),
                    name.tag.clone().unwrap_or_else(|| "<none>".into()),
                ),
                None => ("<none>".into(), "<none>".into()),
            };
            rows.push(ImageSummary {
                repository,
                tag,
                id: short_id(&image.id),
                full_id: image.id.clone(),
                created,
                size,
            });
        }
        rows.sort_by(|a, b| {
            b.created
                .cmp(&a.created)
                .then_with(|| a.repository.cmp(&b.repository))
                .then_with(|| a.tag.cmp(&b.tag))
        });
        rows.dedup();
        Ok(rows)
    }

    /// Gives the image `source` the name `target` (replacing whatever had that name).
    pub fn tag(&self, source: &str, target: &str) -> Result<Image, ImageError> {
        let target = Reference::parse(target)?;
        if target.digest.is_some() {
            return Err(ImageError::TagWithDigest(target.familiar()));
        }
        let _lock = self.lock("index.lock", FlockArg::LockExclusive)?;
        let mut index = self.read_index()?;
        let entries = self.entries(&index)?;
        let manifest = find(&entries, source)?;
        self.set_name(&mut index, &entries, &target, &manifest)?;
        self.write_index(&index)?;
        self.resolve(&target.full_name())
    }

    /// Removes one name. An image left without names stays as a dangling `<none>` image.
    pub fn untag(&self, reference: &str) -> Result<(), ImageError> {
        let name = Reference::parse(reference)?;
        let _lock = self.lock("index.lock", FlockArg::LockExclusive)?;
        let mut index = self.read_index()?;
        let entries = self.entries(&index)?;
        let Some(entry) = entries.iter().find(|e| e.name.as_ref() == Some(&name)) else {
            return Err(ImageError::NotFound(name.familiar()));
        };
        let manifest = entry.manifest.clone();
        remove_name(&mut index, &name);
        self.add_dangling(&mut index, &manifest)?;
        self.write_index(&index)
    }

    /// `docker rmi`: untags the given name, and deletes the image when no name is left. An image
    /// given by id with several names, or used by a container (`in_use(id)`), needs `force`;
    /// forcing an image in use only removes its names, so the container keeps its image.
    pub fn remove(
        &self,
        name_or_id: &str,
        force: bool,
        in_use: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<RemoveAction>, ImageError> {
        let actions = {
            let _lock = self.lock("index.lock", FlockArg::LockExclusive)?;
            let mut index = self.read_index()?;
            let entries = self.entries(&index)?;
            let manifest = find(&entries, name_or_id)?;
            let id = entries
                .iter()
                .find(|e| e.manifest == manifest)
                .map(|e| e.id.clone())
                .ok_or_else(|| ImageError::NotFound(name_or_id.to_owned()))?;
            let names: Vec<Reference> = entries
                .iter()
                .filter(|e| e.id == id)
                .filter_map(|e| e.name.clone())
                .collect();
            let by_name = Reference::parse(name_or_id)
                .ok()
                .filter(|r| names.iter().any(|n| n == r));
            let mut actions = Vec::new();
            match by_name {
                Some(name) if names.len() > 1 => {
                    remove_name(&mut index, &name);
                    actions.push(RemoveAction::Untagged(name.full_name()));
                }
                _ => {
                    if by_name.is_none() && names.len() > 1 && !force {
                        return Err(ImageError::MultipleNames { id: short_id(&id) });
                    }
                    let used = in_use(&id);
                    if used && !force {
                        return Err(ImageError::InUse {
                            image: by_name
                                .map(|n| n.familiar())
                                .unwrap_or_else(|| short_id(&id)),
                        });
                    }
                    for name in &names {
                        remove_name(&mut index, name);
                        actions.push(RemoveAction::Untagged(name.full_name()));
                    }
                    if used {
                        self.add_dangling(&mut index, &manifest)?;
                    } else {
                        let manifests: BTreeSet<&str> = entries
                            .iter()
                            .filter(|e| e.id == id)
                            .map(|e| e.manifest.as_str())
                            .collect();
                        edit_manifests(&mut index, |m| {
                            m.retain(|d| !manifests.contains(d.digest().as_ref()))
                        });
                        actions.push(RemoveAction::Deleted(id.clone()));
                    }
                }
            }
            self.write_index(&index)?;
            actions
        };
        if actions
            .iter()
            .any(|a| matches!(a, RemoveAction::Deleted(_)))
        {
            // Free the blobs now unless an import or a collection is running; `prune` gets them
            // later otherwise.
            match self.lock("gc.lock", FlockArg::LockExclusiveNonblock) {
                Ok(lock) => {
                    self.collect_garbage()?;
                    drop(lock);
                }
                Err(error) => tracing::debug!(%error, "blob collection skipped after rmi"),
            }
        }
        Ok(actions)
    }

    /// Removes dangling (`<none>`) images that no container uses; returns their ids.
    pub fn remove_dangling(
        &self,
        in_use: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<String>, ImageError> {
        let _lock = self.lock("index.lock", FlockArg::LockExclusive)?;
        let mut index = self.read_index()?;
        let entries = self.entries(&index)?;
        let named: BTreeSet<&str> = entries
            .iter()
            .filter(|e| e.name.is_some())
            .map(|e| e.id.as_str())
            .collect();
        let mut removed = BTreeSet::new();
        for entry in entries.iter().filter(|e| !named.contains(e.id.as_str())) {
            if !in_use(&entry.id) {
                removed.insert(entry.id.clone());
                edit_manifests(&mut index, |m| {
                    m.retain(|d| d.digest().as_ref() != entry.manifest.as_str())
                });
            }
        }
        self.write_index(&index)?;
        Ok(removed.into_iter().collect())
    }

    /// The image's build steps, newest first, as `docker history` shows them.
    pub fn history(&self, name_or_id: &str) -> Result<Vec<HistoryEntry>, ImageError> {
        let image = self.resolve(name_or_id)?;
        let mut layers = image.layers.iter();
        let mut rows: Vec<HistoryEntry> = Vec::new();
        for step in image.config.history().iter().flatten() {
            let empty_layer = step.empty_layer().unwrap_or(false);
            let size = if empty_layer {
                0
            } else {
                layers.next().map(|l| l.size).unwrap_or(0)
            };
            rows.push(HistoryEntry {
                id: "<missing>".into(),
                created: step.created().as_deref().and_then(|c| c.parse().ok()),
                created_by: step.created_by().clone().unwrap_or_default(),
                size,
                comment: step.comment().clone().unwrap_or_default(),
                empty_layer,
            });
        }
        rows.reverse();
        match rows.first_mut() {
            Some(newest) => newest.id = image.id.clone(),
            None => rows.push(HistoryEntry {
                id: image.id.clone(),
                created: created_of(&image.config),
                created_by: String::new(),
                size: image.layers.iter().map(|l| l.size).sum(),
                comment: String::new(),
                empty_layer: false,
            }),
        }
        Ok(rows)
    }

    /// The docker-shaped description of an image.
    pub fn inspect(&self, name_or_id: &str) -> Result<ImageInspect, ImageError> {
        let image = self.resolve(name_or_id)?;
        let raw: serde_json::Value = serde_json::from_slice(&self.read_blob(&image.id)?)
            .map_err(|e| invalid("image config", &image.id, e))?;
        let config = image.config.clone();
        let history = config.history().clone().unwrap_or_default();
        Ok(ImageInspect {
            id: image.id.clone(),
            repo_tags: image
                .names
                .iter()
                .filter_map(|n| Reference::parse(n).ok())
                .map(|r| r.familiar())
                .collect(),
            repo_digests: image
                .names
                .iter()
                .filter_map(|n| Reference::parse(n).ok())
                .map(|r| format!("{}@{}", r.familiar_repository(), image.manifest_digest))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            parent: String::new(),
            comment: history
                .last()
                .and_then(|h| h.comment().clone())
                .unwrap_or_default(),
            created: config.created().clone().unwrap_or_default(),
            author: config.author().clone().unwrap_or_default(),
            config: raw
                .get("config")
                .cloned()
                .unwrap_or(serde_json::Value::Null),
            architecture: config.architecture().to_string(),
            os: config.os().to_string(),
            size: image.layers.iter().map(|l| l.size).sum(),
            root_fs: InspectRootFs {
                kind: "layers".into(),
                layers: image.layers.iter().map(|l| l.diff_id.clone()).collect(),
            },
        })
    }

    /// Deletes every blob no manifest in the index references (and leftover temp files);
    /// returns the bytes freed.
    pub fn prune(&self) -> Result<u64, ImageError> {
        let _gc = self.lock("gc.lock", FlockArg::LockExclusive)?;
        self.collect_garbage()
    }

    /// Reads a blob whole and checks it against its digest.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(digest);
        let bytes = fs::read(&path).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                ImageError::MissingBlob {
                    digest: digest.to_owned(),
                    path: path.clone(),
                }
            } else {
                ImageError::io(&path, source)
            }
        })?;
        let actual = blob::sha256_bytes(&bytes);
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                digest: digest.to_owned(),
                actual,
            });
        }
        Ok(bytes)
    }

    fn tmp_dir(&self) -> PathBuf {
        self.dir.join(".tmp")
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("index.json")
    }

    fn lock(&self, name: &str, mode: FlockArg) -> Result<Flock<File>, ImageError> {
        let path = self.dir.join(format!(".{name}"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| ImageError::io(&path, source))?;
        Flock::lock(file, mode).map_err(|(_, source)| ImageError::Lock { path, source })
    }

    fn read_index(&self) -> Result<ImageIndex, ImageError> {
        let path = self.index_path();
        let bytes = fs::read(&path).map_err(|source| ImageError::io(&path, source))?;
        serde_json::from_slice(&bytes).map_err(|e| ImageError::InvalidIndex {
            path,
            message: e.to_string(),
        })
    }

    fn write_index(&self, index: &ImageIndex) -> Result<(), ImageError> {
        let bytes = serde_json::to_vec(index).map_err(|source| ImageError::Encode {
            what: "index.json",
            source,
        })?;
        blob::write_atomic(&self.tmp_dir(), &self.index_path(), &bytes)
    }

    fn read_manifest(&self, digest: &str) -> Result<ImageManifest, ImageError> {
        serde_json::from_slice(&self.read_blob(digest)?).map_err(|e| invalid("manifest", digest, e))
    }

    fn entries(&self, index: &ImageIndex) -> Result<Vec<Entry>, ImageError> {
        let mut ids: HashMap<String, String> = HashMap::new();
        let mut entries = Vec::new();
        for descriptor in index.manifests() {
            let manifest = descriptor.digest().to_string();
            let id = match ids.get(&manifest) {
                Some(id) => id.clone(),
                None => {
                    let id = self.read_manifest(&manifest)?.config().digest().to_string();
                    ids.insert(manifest.clone(), id.clone());
                    id
                }
            };
            let name = descriptor
                .annotations()
                .as_ref()
                .and_then(|a| a.get(REF_NAME_ANNOTATION))
                .and_then(|n| Reference::parse(n).ok());
            entries.push(Entry { name, manifest, id });
        }
        Ok(entries)
    }

    fn image(&self, entries: &[Entry], manifest_digest: &str) -> Result<Image, ImageError> {
        let manifest = self.read_manifest(manifest_digest)?;
        let id = manifest.config().digest().to_string();
        let config: ImageConfiguration = serde_json::from_slice(&self.read_blob(&id)?)
            .map_err(|e| invalid("image config", &id, e))?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(ImageError::InvalidContent {
                what: "manifest",
                digest: manifest_digest.to_owned(),
                message: format!(
                    "it has {} layers but its config lists {} diff_ids",
                    manifest.layers().len(),
                    diff_ids.len()
                ),
            });
        }
        let layers = manifest
            .layers()
            .iter()
            .zip(diff_ids)
            .map(|(layer, diff_id)| LayerRef {
                digest: layer.digest().to_string(),
                diff_id: diff_id.clone(),
                media_type: layer.media_type().to_string(),
                size: layer.size(),
            })
            .collect();
        let names: BTreeSet<String> = entries
            .iter()
            .filter(|e| e.id == id)
            .filter_map(|e| e.name.as_ref().map(Reference::full_name))
            .collect();
        Ok(Image {
            id,
            manifest_digest: manifest_digest.to_owned(),
            names: names.into_iter().collect(),
            config,
            layers,
        })
    }

    /// Points `name` at `manifest` in `index`, keeping the image it pointed to before as a
    /// dangling image when nothing else refers to it.
    fn set_name(
        &self,
        index: &mut ImageIndex,
        entries: &[Entry],
        name: &Reference,
        manifest: &str,
    ) -> Result<(), ImageError> {
        let new_id = self.read_manifest(manifest)?.config().digest().to_string();
        // The image the name pointed to before, unless it is the same image (maybe by another
        // manifest, e.g. loaded once from a docker and once from an OCI archive).
        let previous = entries
            .iter()
            .find(|e| e.name.as_ref() == Some(name) && e.id != new_id)
            .map(|e| e.manifest.clone());
        remove_name(index, name);
        // The image gets a name, so it is not dangling any more.
        edit_manifests(index, |m| {
            m.retain(|d| d.digest().as_ref() != manifest || ref_name(d).is_some())
        });
        let size = fs::metadata(self.blob_path(manifest))
            .map_err(|source| ImageError::io(self.blob_path(manifest), source))?
            .len();
        let media_type = self
            .read_manifest(manifest)?
            .media_type()
            .clone()
            .unwrap_or(MediaType::ImageManifest);
        let mut descriptor = Descriptor::new(media_type, size, parse_digest(manifest)?);
        descriptor.set_annotations(Some(
            [(REF_NAME_ANNOTATION.to_owned(), name.full_name())].into(),
        ));
        edit_manifests(index, |m| m.push(descriptor));
        if let Some(previous) = previous {
            self.add_dangling(index, &previous)?;
        }
        Ok(())
    }

    /// Adds a dangling (nameless) entry for `manifest` unless a descriptor already points to it,
    /// so an image that lost its last name stays listed as `<none>` instead of vanishing.
    fn add_dangling(&self, index: &mut ImageIndex, manifest: &str) -> Result<(), ImageError> {
        if index
            .manifests()
            .iter()
            .any(|d| d.digest().as_ref() == manifest)
        {
            return Ok(());
        }
        let size = fs::metadata(self.blob_path(manifest))
            .map_err(|source| ImageError::io(self.blob_path(manifest), source))?
            .len();
        let media_type = self
            .read_manifest(manifest)?
            .media_type()
            .clone()
            .unwrap_or(MediaType::ImageManifest);
        let descriptor = Descriptor::new(media_type, size, parse_digest(manifest)?);
        edit_manifests(index, |m| m.push(descriptor));
        Ok(())
    }

    /// Deletes unreferenced blobs and temp files. The caller holds `gc.lock` exclusively.
    fn collect_garbage(&self) -> Result<u64, ImageError> {
        let index = {
            let _lock = self.lock("index.lock", FlockArg::LockShared)?;
            self.read_index()?
        };
        let mut keep: BTreeSet<String> = BTreeSet::new();
        for descriptor in index.manifests() {
            let digest = descriptor.digest().to_string();
            // A manifest that cannot be read could reference anything: refuse to guess.
            let manifest = self.read_manifest(&digest)?;
            keep.insert(digest);
            keep.insert(manifest.config().digest().to_string());
            keep.extend(manifest.layers().iter().map(|l| l.digest().to_string()));
        }
        let mut freed = 0;
        let blobs = self.dir.join("blobs").join("sha256");
        let listing = fs::read_dir(&blobs).map_err(|source| ImageError::io(&blobs, source))?;
        for item in listing {
            let item = item.map_err(|source| ImageError::io(&blobs, source))?;
            let name = item.file_name().to_string_lossy().into_owned();
            if keep.contains(&format!("sha256:{name}")) {
                continue;
            }
            let path = item.path();
            let size = item.metadata().map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&path).map_err(|source| ImageError::io(&path, source))?;
            tracing::debug!(blob = %name, size, "removed unreferenced blob");
            freed += size;
        }
        // Nobody writes blobs while gc.lock is held exclusively, so every temp file is stale.
        if let Ok(listing) = fs::read_dir(self.tmp_dir()) {
            for item in listing.flatten() {
                if item.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = fs::remove_dir_all(item.path());
                } else {
                    let _ = fs::remove_file(item.path());
                }
            }
        }
        Ok(freed)
    }
}

/// Hooks for the registry client ([`crate::registry`]), which streams blobs in as they arrive.
impl ImageStore {
    /// Holds `gc.lock` shared while a pull writes blobs that `index.json` does not name yet.
    pub(crate) fn gc_shared(&self) -> Result<Flock<File>, ImageError> {
        self.lock("gc.lock", FlockArg::LockShared)
    }

    /// The directory for temp files; garbage collection clears it, so write here only while
    /// holding [`ImageStore::gc_shared`].
    pub(crate) fn temp_dir(&self) -> PathBuf {
        self.tmp_dir()
    }

    /// Writes a manifest (already checked against its digest by the caller) and points `name`
    /// at it; its config and layer blobs must already be in the store.
    pub(crate) fn store_manifest(
        &self,
        name: &Reference,
        manifest_bytes: &[u8],
    ) -> Result<Image, ImageError> {
        let manifest_digest = self.write_blob_bytes(manifest_bytes)?;
        let manifest = self.read_manifest(&manifest_digest)?;
        for digest in std::iter::once(manifest.config().digest())
            .chain(manifest.layers().iter().map(|l| l.digest()))
        {
            let path = self.blob_path(digest.as_ref());
            if !path.exists() {
                return Err(ImageError::MissingBlob {
                    digest: digest.to_string(),
                    path,
                });
            }
        }
        let _lock = self.lock("index.lock", FlockArg::LockExclusive)?;
        let mut index = self.read_index()?;
        let entries = self.entries(&index)?;
        self.set_name(&mut index, &entries, name, &manifest_digest)?;
        self.write_index(&index)?;
        let entries = self.entries(&index)?;
        self.image(&entries, &manifest_digest)
    }
}

/// Hooks for the Dockerfile builder ([`crate::build::executor`]), which writes its own blobs.
impl ImageStore {
    /// Writes an in-memory blob and returns its `sha256:` digest.
    pub(crate) fn put_blob(&self, bytes: &[u8]) -> Result<String, ImageError> {
        self.write_blob_bytes(bytes)
    }

    /// Records a manifest (its blobs already stored) as a nameless image, as an untagged
    /// `build` leaves it, unless an index entry already points at it.
    pub(crate) fn store_unnamed(&self, manifest_bytes: &[u8]) -> Result<Image, ImageError> {
        let manifest_digest = self.write_blob_bytes(manifest_bytes)?;
        let _lock = self.lock("index.lock", FlockArg::LockExclusive)?;
        let mut index = self.read_index()?;
        self.add_dangling(&mut index, &manifest_digest)?;
        self.write_index(&index)?;
        let entries = self.entries(&index)?;
        self.image(&entries, &manifest_digest)
    }
}

/// The first 12 hex digits of an id.
pub fn short_id(id: &str) -> String {
    id.strip_prefix("sha256:")
        .unwrap_or(id)
        .chars()
        .take(12)
        .collect()
}

fn created_of(config: &ImageConfiguration) -> Option<jiff::Timestamp> {
    config.created().as_deref().and_then(|c| c.parse().ok())
}

fn invalid(what: &'static str, digest: &str, error: impl std::fmt::Display) -> ImageError {
    ImageError::InvalidContent {
        what,
        digest: digest.to_owned(),
        message: error.to_string(),
    }
}

fn empty_index() -> Result<ImageIndex, ImageError> {
    ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(Vec::<Descriptor>::new())
        .build()
        .map_err(|e| ImageError::InvalidIndex {
            path: PathBuf::from("index.json"),
            message: e.to_string(),
        })
}

fn parse_digest(digest: &str) -> Result<oci_spec::image::Digest, ImageError> {
    digest
        .parse()
        .map_err(|e: oci_spec::OciSpecError| invalid("digest", digest, e))
}

fn ref_name(descriptor: &Descriptor) -> Option<&String> {
    descriptor
        .annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME_ANNOTATION))
}

fn remove_name(index: &mut ImageIndex, name: &Reference) {
    let full = name.full_name();
    edit_manifests(index, |m| {
        m.retain(|d| {
            ref_name(d).is_none_or(|n| Reference::parse(n).map_or(true, |r| r.full_name() != full))
        })
    });
}

/// Changes the descriptor list of an index (oci-spec offers no mutable getter for it).
fn edit_manifests(index: &mut ImageIndex, f: impl FnOnce(&mut Vec<Descriptor>)) {
    let mut manifests = index.manifests().clone();
    f(&mut manifests);
    index.set_manifests(manifests);
}

/// The manifest digest that `name_or_id` designates among `entries`.
fn find(entries: &[Entry], name_or_id: &str) -> Result<String, ImageError> {
    if let Ok(reference) = Reference::parse(name_or_id) {
        let found = match &reference.digest {
            // a name recorded with its digest (a pull by the digest of an index names the
            // platform manifest under the index's digest), else any name of the repository
            // whose manifest has that digest
            Some(digest) => entries.iter().find(|e| e.name.as_ref() == Some(&reference)).or_else(|| {
                entries.iter().find(|e| {
                    &e.manifest == digest && e.name.as_ref().is_some_and(|n| n.name() == reference.name())
                })
            }),
            None => entries.iter().find(|e| e.name.as_ref() == Some(&reference)),
        };
        if let Some(entry) = found {
            return Ok(entry.manifest.clone());
        }
    }
    let hex = name_or_id.strip_prefix("sha256:").unwrap_or(name_or_id);
    if !hex.is_empty()
        && hex.len() <= 64
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        let mut matches: BTreeMap<&str, &str> = BTreeMap::new();
        for entry in entries {
            let id_hex = entry.id.strip_prefix("sha256:").unwrap_or(&entry.id);
            if id_hex.starts_with(hex) {
                matches.entry(&entry.id).or_insert(&entry.manifest);
            }
        }
        match matches.len() {
            0 => {}
            1 => {
                if let Some(manifest) = matches.values().next() {
                    return Ok((*manifest).to_owned());
                }
            }
            count => {
                return Err(ImageError::Ambiguous {
                    prefix: name_or_id.to_owned(),
                    count,
                });
            }
        }
    }
    let shown = Reference::parse(name_or_id)
        .map(|r| r.familiar())
        .unwrap_or_else(|_| name_or_id.to_owned());
    Err(ImageError::NotFound(shown))
}
