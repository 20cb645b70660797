//! `docker save` / `docker load` archives, in both formats:
//!
//! - docker-archive: `manifest.json` (`[{"Config", "RepoTags", "Layers"}]`), `repositories`,
//!   config json files and uncompressed layer tars. Old docker wrote `<hex>.json` and
//!   `<layer id>/layer.tar` (duplicates as symlinks); docker 25+ writes `blobs/sha256/<hex>` and
//!   also makes the archive an OCI layout (`oci-layout`, `index.json`). We write the docker 25+
//!   shape, which every docker version loads, and read all of them.
//! - oci-archive: a tar of an OCI image layout, names in `io.containerd.image.name` (full) and
//!   `org.opencontainers.image.ref.name` (the tag, as the OCI spec and umoci expect).
//!
//! Loading extracts the archive into a temp dir first (its members come in any order), checks
//! every blob against its digest and every layer against its config's diff_id, and only then
//! touches `index.json`.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::FlockArg;
use oci_spec::image::{
    Descriptor, ImageConfiguration, ImageIndex, ImageIndexBuilder, ImageManifest,
    ImageManifestBuilder, MediaType,
};
use serde::{Deserialize, Serialize};

use super::blob::{digest_hex, sha256_bytes, HashingReader, HashingWriter, TempFile};
use super::{
    parse_digest, Image, ImageError, ImageStore, CONTAINERD_NAME_ANNOTATION, REF_NAME_ANNOTATION,
};
use crate::reference::Reference;

/// The format `save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArchiveFormat {
    /// What `docker save` writes (docker 25+ shape: also an OCI layout, layers uncompressed).
    #[default]
    Docker,
    /// An OCI image layout in a tar (`skopeo`'s `oci-archive:`), blobs as stored.
    Oci,
}

impl ImageStore {
    /// Writes the images named (or given by id) to `writer` as one archive. Images given by
    /// name carry that name; images given by id carry none, as with `docker save`.
    pub fn save(
        &self,
        names: &[&str],
        writer: impl Write,
        format: ArchiveFormat,
    ) -> Result<(), ImageError> {
        let _gc = self.lock("gc.lock", FlockArg::LockShared)?;
        // Image id -> (image, names to write), in the order given.
        let mut images: Vec<(Image, Vec<Reference>)> = Vec::new();
        for name in names {
            let image = self.resolve(name)?;
            let tag = Reference::parse(name)
                .ok()
                .filter(|r| r.digest.is_none() && image.names.contains(&r.full_name()));
            match images.iter_mut().find(|(i, _)| i.id == image.id) {
                Some((_, tags)) => tags.extend(tag.filter(|t| !tags.contains(t))),
                None => images.push((image, tag.into_iter().collect())),
            }
        }
        let mut out = ArchiveWriter::new(writer);
        out.dir("blobs/")?;
        out.dir("blobs/sha256/")?;
        let mut descriptors = Vec::new();
        let mut docker_entries = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (image, tags) in &images {
            let config = self.read_blob(&image.id)?;
            out.blob(&image.id, &config)?;
            let manifest_digest = match format {
                ArchiveFormat::Oci => {
                    let manifest = self.read_blob(&image.manifest_digest)?;
                    out.blob(&image.manifest_digest, &manifest)?;
                    for layer in &image.layers {
                        self.copy_layer_blob(&mut out, layer.digest.as_str())?;
                    }
                    image.manifest_digest.clone()
                }
                ArchiveFormat::Docker => {
                    let mut layers = Vec::new();
                    for layer in &image.layers {
                        let size = self.copy_layer_uncompressed(&mut out, layer)?;
                        layers.push(Descriptor::new(
                            MediaType::ImageLayer,
                            size,
                            parse_digest(&layer.diff_id)?,
                        ));
                    }
                    let manifest = ImageManifestBuilder::default()
                        .schema_version(2u32)
                        .media_type(MediaType::ImageManifest)
                        .config(Descriptor::new(
                            MediaType::ImageConfig,
                            config.len() as u64,
                            parse_digest(&image.id)?,
                        ))
                        .layers(layers)
                        .build()
                        .map_err(|e| super::invalid("manifest", &image.manifest_digest, e))?;
                    let bytes = encode("manifest", &manifest)?;
                    let digest = sha256_bytes(&bytes);
                    out.blob(&digest, &bytes)?;
                    docker_entries.push(DockerManifestEntry {
                        config: blob_member(&image.id),
                        repo_tags: (!tags.is_empty())
                            .then(|| tags.iter().map(Reference::familiar).collect()),
                        layers: image
                            .layers
                            .iter()
                            .map(|l| blob_member(&l.diff_id))
                            .collect(),
                    });
                    if let Some(top) = image.layers.last() {
                        for tag in tags {
                            repositories
                                .entry(tag.familiar_repository())
                                .or_default()
                                .insert(
                                    tag.tag.clone().unwrap_or_else(|| "latest".into()),
                                    top.diff_id.trim_start_matches("sha256:").to_owned(),
                                );
                        }
                    }
                    digest
                }
            };
            let size = out.size_of(&manifest_digest);
            let media_type = MediaType::ImageManifest;
            if tags.is_empty() {
                descriptors.push(Descriptor::new(
                    media_type.clone(),
                    size,
                    parse_digest(&manifest_digest)?,
                ));
            }
            for tag in tags {
                let mut descriptor =
                    Descriptor::new(media_type.clone(), size, parse_digest(&manifest_digest)?);
                let mut annotations = HashMap::new();
                annotations.insert(CONTAINERD_NAME_ANNOTATION.to_owned(), tag.full_name());
                if let Some(t) = &tag.tag {
                    annotations.insert(REF_NAME_ANNOTATION.to_owned(), t.clone());
                }
                descriptor.set_annotations(Some(annotations));
                descriptors.push(descriptor);
            }
        }
        if format == ArchiveFormat::Docker {
            out.file("manifest.json", &encode("manifest.json", &docker_entries)?)?;
            if !repositories.is_empty() {
                out.file("repositories", &encode("repositories", &repositories)?)?;
            }
        }
        out.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(descriptors)
            .build()
            .map_err(|e| ImageError::InvalidArchive(e.to_string()))?;
        out.file("index.json", &encode("index.json", &index)?)?;
        out.finish()
    }

    /// Loads a docker-archive or oci-archive (detected from its content). Returns, per image,
    /// the full names it got, or its id (`sha256:...`) when the archive gave it no name.
    pub fn load(&self, reader: impl Read) -> Result<Vec<String>, ImageError> {
        let _gc = self.lock("gc.lock", FlockArg::LockShared)?;
        let dir = ExtractedArchive::extract(reader, &self.tmp_dir())?;
        // (manifest digest, names) of each image, in archive order.
        let loaded = if dir.exists("manifest.json") {
            self.load_docker(&dir)?
        } else if dir.exists("index.json") && dir.exists("oci-layout") {
            self.load_oci(&dir)?
        } else {
            return Err(ImageError::InvalidArchive(
                "found neither manifest.json (docker-archive) nor oci-layout and index.json (oci-archive)"
                    .into(),
            ));
        };
        let _lock = self.lock("index.lock", FlockArg::LockExclusive)?;
        let mut index = self.read_index()?;
        let mut result = Vec::new();
        for (manifest, names) in &loaded {
            if names.is_empty() {
                self.add_dangling(&mut index, manifest)?;
                let id = self.read_manifest(manifest)?.config().digest().to_string();
                result.push(id);
            }
            for name in names {
                let entries = self.entries(&index)?;
                self.set_name(&mut index, &entries, name, manifest)?;
                result.push(name.full_name());
            }
        }
        self.write_index(&index)?;
        Ok(result)
    }

    fn load_docker(
        &self,
        dir: &ExtractedArchive,
    ) -> Result<Vec<(String, Vec<Reference>)>, ImageError> {
        let entries: Vec<DockerManifestEntry> = serde_json::from_slice(&dir.read("manifest.json")?)
            .map_err(|e| ImageError::InvalidArchive(format!("manifest.json: {e}")))?;
        let mut loaded = Vec::new();
        for entry in entries {
            let config_bytes = dir.read(&entry.config)?;
            let config_digest = sha256_bytes(&config_bytes);
            if let Some(expected) = member_digest(&entry.config) {
                if expected != config_digest {
                    return Err(ImageError::DigestMismatch {
                        digest: expected,
                        actual: config_digest,
                    });
                }
            }
            let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
                .map_err(|e| super::invalid("image config", &config_digest, e))?;
            let diff_ids = config.rootfs().diff_ids();
            if diff_ids.len() != entry.layers.len() {
                return Err(ImageError::InvalidArchive(format!(
                    "image {} lists {} layers in manifest.json but {} diff_ids in its config",
                    config_digest,
                    entry.layers.len(),
                    diff_ids.len()
                )));
            }
            let mut layers = Vec::new();
            for (member, diff_id) in entry.layers.iter().zip(diff_ids) {
                let (digest, size) =
                    self.copy_blob(&mut dir.open(member)?, member_digest(member).as_deref())?;
                let (media_type, actual_diff_id) = self.layer_diff_id(&digest)?;
                if &actual_diff_id != diff_id {
                    return Err(ImageError::DigestMismatch {
                        digest: diff_id.clone(),
                        actual: actual_diff_id,
                    });
                }
                layers.push(Descriptor::new(media_type, size, parse_digest(&digest)?));
            }
            let config_digest = self.write_blob_bytes(&config_bytes)?;
            let manifest = ImageManifestBuilder::default()
                .schema_version(2u32)
                .media_type(MediaType::ImageManifest)
                .config(Descriptor::new(
                    MediaType::ImageConfig,
                    config_bytes.len() as u64,
                    parse_digest(&config_digest)?,
                ))
                .layers(layers)
                .build()
                .map_err(|e| super::invalid("manifest", &config_digest, e))?;
            let manifest_digest = self.write_blob_bytes(&encode("manifest", &manifest)?)?;
            let names = entry
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|t| Reference::parse(t))
                .collect::<Result<Vec<_>, _>>()?;
            loaded.push((manifest_digest, names));
        }
        Ok(loaded)
    }

    fn load_oci(
        &self,
        dir: &ExtractedArchive,
    ) -> Result<Vec<(String, Vec<Reference>)>, ImageError> {
        let index: ImageIndex = serde_json::from_slice(&dir.read("index.json")?)
            .map_err(|e| ImageError::InvalidArchive(format!("index.json: {e}")))?;
        let mut loaded: Vec<(String, Vec<Reference>)> = Vec::new();
        for descriptor in index.manifests() {
            let manifest_digest = self.oci_manifest_for(dir, descriptor)?;
            let name = descriptor_name(descriptor);
            match loaded.iter_mut().find(|(m, _)| *m == manifest_digest) {
                Some((_, names)) => names.extend(name),
                None => loaded.push((manifest_digest, name.into_iter().collect())),
            }
        }
        Ok(loaded)
    }

    /// Copies the image a descriptor of an archive's index.json points to (choosing the host's
    /// platform in a multi-platform index) into the store; returns the manifest digest.
    fn oci_manifest_for(
        &self,
        dir: &ExtractedArchive,
        descriptor: &Descriptor,
    ) -> Result<String, ImageError> {
        let digest = descriptor.digest().to_string();
        let bytes = dir.read_blob(&digest)?;
        let media_type = descriptor.media_type().to_string();
        if media_type == MediaType::ImageIndex.to_string()
            || media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
        {
            let nested: ImageIndex = serde_json::from_slice(&bytes)
                .map_err(|e| super::invalid("image index", &digest, e))?;
            let host_arch = oci_spec::image::Arch::default();
            let chosen = nested
                .manifests()
                .iter()
                .find(|m| {
                    m.platform().as_ref().is_some_and(|p| {
                        *p.architecture() == host_arch && *p.os() == oci_spec::image::Os::Linux
                    })
                })
                .or_else(|| (nested.manifests().len() == 1).then(|| &nested.manifests()[0]))
                .ok_or_else(|| {
                    ImageError::InvalidArchive(format!(
                        "index {digest} has no manifest for linux/{host_arch}"
                    ))
                })?;
            return self.oci_manifest_for(dir, chosen);
        }
        let manifest: ImageManifest =
            serde_json::from_slice(&bytes).map_err(|e| super::invalid("manifest", &digest, e))?;
        let config_digest = manifest.config().digest().to_string();
        let config_bytes = dir.read_blob(&config_digest)?;
        let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
            .map_err(|e| super::invalid("image config", &config_digest, e))?;
        if config.rootfs().diff_ids().len() != manifest.layers().len() {
            return Err(super::invalid(
                "manifest",
                &digest,
                "its layer count differs from its config's diff_ids",
            ));
        }
        for (layer, diff_id) in manifest.layers().iter().zip(config.rootfs().diff_ids()) {
            let layer_digest = layer.digest().to_string();
            let member = blob_member(&layer_digest);
            self.copy_blob(&mut dir.open(&member)?, Some(&layer_digest))?;
            // An uncompressed layer's digest is its diff_id; compressed ones are checked
            // against their diff_id when extracted.
            let media = layer.media_type().to_string();
            if !media.contains("gzip") && !media.contains("zstd") && &layer_digest != diff_id {
                return Err(ImageError::DigestMismatch {
                    digest: diff_id.clone(),
                    actual: layer_digest,
                });
            }
        }
        self.write_blob_bytes(&config_bytes)?;
        self.write_blob_bytes(&bytes)
    }

    /// Streams `source` into the store, refusing it unless it hashes to `expected` (when given);
    /// returns the digest and size.
    pub(crate) fn copy_blob(
        &self,
        source: &mut dyn Read,
        expected: Option<&str>,
    ) -> Result<(String, u64), ImageError> {
        let tmp = TempFile::create(&self.tmp_dir())?;
        let tmp_path = tmp.path().to_path_buf();
        let mut writer = HashingWriter::new(BufWriter::new(tmp.handle()?));
        io::copy(source, &mut writer).map_err(|source| ImageError::io(&tmp_path, source))?;
        let (mut buffered, digest, size) = writer.finish();
        buffered
            .flush()
            .map_err(|source| ImageError::io(&tmp_path, source))?;
        drop(buffered);
        if let Some(expected) = expected {
            if expected != digest {
                return Err(ImageError::DigestMismatch {
                    digest: expected.to_owned(),
                    actual: digest,
                });
            }
        }
        let dest = self.blob_path(&digest);
        if !dest.exists() {
            tmp.persist(&dest)?;
        }
        Ok((digest, size))
    }

    /// The media type (from the blob's magic) and the diff_id of a stored layer blob.
    fn layer_diff_id(&self, digest: &str) -> Result<(MediaType, String), ImageError> {
        let path = self.blob_path(digest);
        let file = File::open(&path).map_err(|source| ImageError::io(&path, source))?;
        let mut reader = BufReader::new(file);
        let magic = reader
            .fill_buf()
            .map_err(|source| ImageError::io(&path, source))?
            .get(..4)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let (media_type, decoded): (MediaType, Box<dyn Read>) = if magic.starts_with(&[0x1f, 0x8b])
        {
            (
                MediaType::ImageLayerGzip,
                Box::new(flate2::read::MultiGzDecoder::new(reader)),
            )
        } else if magic == [0x28, 0xb5, 0x2f, 0xfd] {
            let decoder = ruzstd::decoding::StreamingDecoder::new(reader)
                .map_err(|e| super::invalid("layer", digest, e))?;
            (MediaType::ImageLayerZstd, Box::new(decoder))
        } else {
            return Ok((MediaType::ImageLayer, digest.to_owned()));
        };
        let (diff_id, _) = HashingReader::new(decoded)
            .finish()
            .map_err(|e| super::invalid("layer", digest, e))?;
        Ok((media_type, diff_id))
    }

    /// Writes a stored blob into the archive as it is, checking its digest on the way.
    fn copy_layer_blob<W: Write>(
        &self,
        out: &mut ArchiveWriter<W>,
        digest: &str,
    ) -> Result<(), ImageError> {
        let path = self.blob_path(digest);
        let file = File::open(&path).map_err(|source| ImageError::io(&path, source))?;
        let size = file
            .metadata()
            .map_err(|source| ImageError::io(&path, source))?
            .len();
        out.stream(&blob_member(digest), digest, size, file)
    }

    /// Writes a layer uncompressed (as docker-archive wants) under its diff_id; returns its size.
    fn copy_layer_uncompressed<W: Write>(
        &self,
        out: &mut ArchiveWriter<W>,
        layer: &super::LayerRef,
    ) -> Result<u64, ImageError> {
        let compressed = layer.media_type.contains("gzip") || layer.media_type.contains("zstd");
        if !compressed {
            self.copy_layer_blob(out, &layer.digest)?;
            return Ok(out.size_of(&layer.diff_id));
        }
        if out.has(&layer.diff_id) {
            return Ok(out.size_of(&layer.diff_id));
        }
        let path = self.blob_path(&layer.digest);
        let file = File::open(&path).map_err(|source| ImageError::io(&path, source))?;
        let decoded: Box<dyn Read> = if layer.media_type.contains("gzip") {
            Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)))
        } else {
            Box::new(
                ruzstd::decoding::StreamingDecoder::new(BufReader::new(file))
                    .map_err(|e| super::invalid("layer", &layer.digest, e))?,
            )
        };
        let tmp = TempFile::create(&self.tmp_dir())?;
        let tmp_path = tmp.path().to_path_buf();
        let mut writer = HashingWriter::new(BufWriter::new(tmp.handle()?));
        io::copy(&mut HashingReader::new(decoded), &mut writer)
            .map_err(|e| super::invalid("layer", &layer.digest, e))?;
        let (mut buffered, diff_id, size) = writer.finish();
        buffered
            .flush()
            .map_err(|source| ImageError::io(&tmp_path, source))?;
        drop(buffered);
        if diff_id != layer.diff_id {
            return Err(ImageError::DigestMismatch {
                digest: layer.diff_id.clone(),
                actual: diff_id,
            });
        }
        let file = File::open(&tmp_path).map_err(|source| ImageError::io(&tmp_path, source))?;
        out.stream(&blob_member(&layer.diff_id), &layer.diff_id, size, file)?;
        Ok(size)
    }
}

/// One element of docker's `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

fn encode(what: &'static str, value: &impl Serialize) -> Result<Vec<u8>, ImageError> {
    serde_json::to_vec(value).map_err(|source| ImageError::Encode { what, source })
}

fn blob_member(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

/// The digest an archive member's name promises (`blobs/sha256/<hex>`, `<hex>.json`), if any.
fn member_digest(member: &str) -> Option<String> {
    let name = member
        .strip_prefix("blobs/sha256/")
        .or_else(|| member.strip_suffix(".json"))?;
    let digest = format!("sha256:{name}");
    digest_hex(&digest).is_some().then_some(digest)
}

/// The name an archive's index.json gives a manifest: containerd's full-name annotation, else
/// `ref.name` when it is a whole reference. A bare `ref.name` is only a tag (the OCI spec's
/// usual meaning), which names no repository, so that image loads untagged.
fn descriptor_name(descriptor: &Descriptor) -> Option<Reference> {
    let annotations = descriptor.annotations().as_ref()?;
    if let Some(name) = annotations.get(CONTAINERD_NAME_ANNOTATION) {
        return Reference::parse(name).ok();
    }
    let name = annotations.get(REF_NAME_ANNOTATION)?;
    if name.contains('/') || name.contains(':') {
        return Reference::parse(name).ok();
    }
    tracing::warn!(ref_name = %name, "archive names an image by tag only; loading it untagged");
    None
}

/// A tar writer that remembers which blobs it has written (and their sizes) so shared blobs
/// are written once.
struct ArchiveWriter<W: Write> {
    builder: tar::Builder<W>,
    written: HashMap<String, u64>,
}

impl<W: Write> ArchiveWriter<W> {
    fn new(writer: W) -> Self {
        ArchiveWriter {
            builder: tar::Builder::new(writer),
            written: HashMap::new(),
        }
    }

    fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header
    }

    fn dir(&mut self, path: &str) -> Result<(), ImageError> {
        let mut header = Self::header(tar::EntryType::Directory, 0, 0o755);
        self.builder
            .append_data(&mut header, path, io::empty())
            .map_err(|e| ImageError::io(path, e))
    }

    fn file(&mut self, path: &str, bytes: &[u8]) -> Result<(), ImageError> {
        let mut header = Self::header(tar::EntryType::Regular, bytes.len() as u64, 0o644);
        self.builder
            .append_data(&mut header, path, bytes)
            .map_err(|e| ImageError::io(path, e))
    }

    fn has(&self, digest: &str) -> bool {
        self.written.contains_key(digest)
    }

    fn size_of(&self, digest: &str) -> u64 {
        self.written.get(digest).copied().unwrap_or(0)
    }

    fn blob(&mut self, digest: &str, bytes: &[u8]) -> Result<(), ImageError> {
        if self.has(digest) {
            return Ok(());
        }
        self.file(&blob_member(digest), bytes)?;
        self.written.insert(digest.to_owned(), bytes.len() as u64);
        Ok(())
    }

    /// Appends `size` bytes from `reader` as `path`, failing if they do not hash to `digest`.
    fn stream(
        &mut self,
        path: &str,
        digest: &str,
        size: u64,
        reader: impl Read,
    ) -> Result<(), ImageError> {
        if self.has(digest) {
            return Ok(());
        }
        let mut header = Self::header(tar::EntryType::Regular, size, 0o644);
        let mut hashing = HashingReader::new(reader.take(size));
        self.builder
            .append_data(&mut header, path, &mut hashing)
            .map_err(|e| ImageError::io(path, e))?;
        let (actual, read) = hashing.finish().map_err(|e| ImageError::io(path, e))?;
        if actual != digest || read != size {
            return Err(ImageError::DigestMismatch {
                digest: digest.to_owned(),
                actual,
            });
        }
        self.written.insert(digest.to_owned(), size);
        Ok(())
    }

    fn finish(self) -> Result<(), ImageError> {
        let mut writer = self
            .builder
            .into_inner()
            .map_err(|e| ImageError::io("archive", e))?;
        writer.flush().map_err(|e| ImageError::io("archive", e))
    }
}

/// An archive unpacked into a temp dir (removed on drop). Symlinks and hard links are not
/// created on disk but remembered as aliases, so nothing can point outside the dir.
struct ExtractedArchive {
    dir: PathBuf,
    aliases: HashMap<String, String>,
}

impl ExtractedArchive {
    fn extract(reader: impl Read, tmp_dir: &Path) -> Result<ExtractedArchive, ImageError> {
        let dir = tmp_dir.join(format!("load-{:016x}", rand::random::<u64>()));
        fs::create_dir_all(&dir).map_err(|source| ImageError::io(&dir, source))?;
        let mut extracted = ExtractedArchive {
            dir,
            aliases: HashMap::new(),
        };
        let mut archive = tar::Archive::new(reader);
        let bad = |e: io::Error| ImageError::InvalidArchive(format!("not a readable tar: {e}"));
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let raw = entry.path().map_err(bad)?.into_owned();
            let name = normalise(Path::new(""), &raw).ok_or_else(|| {
                ImageError::InvalidArchive(format!("member {} escapes the archive", raw.display()))
            })?;
            if name.is_empty() {
                continue;
            }
            let kind = entry.header().entry_type();
            match kind {
                tar::EntryType::Directory => {
                    let path = extracted.dir.join(&name);
                    fs::create_dir_all(&path).map_err(|source| ImageError::io(&path, source))?;
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let path = extracted.dir.join(&name);
                    if let Some(parent) = path.parent() {
                        fs::create_dir_all(parent)
                            .map_err(|source| ImageError::io(parent, source))?;
                    }
                    let mut file =
                        File::create(&path).map_err(|source| ImageError::io(&path, source))?;
                    io::copy(&mut entry, &mut file).map_err(bad)?;
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry.link_name().map_err(bad)?.ok_or_else(|| {
                        ImageError::InvalidArchive(format!("link {name} has no target"))
                    })?;
                    // A symlink is relative to its own directory; a hard link to the archive root.
                    let base = if kind == tar::EntryType::Symlink {
                        Path::new(&name)
                            .parent()
                            .unwrap_or(Path::new(""))
                            .to_path_buf()
                    } else {
                        PathBuf::new()
                    };
                    let target = normalise(&base, &target).ok_or_else(|| {
                        ImageError::InvalidArchive(format!(
                            "link {name} points outside the archive"
                        ))
                    })?;
                    extracted.aliases.insert(name, target);
                }
                _ => tracing::debug!(member = %name, ?kind, "ignoring archive member"),
            }
        }
        Ok(extracted)
    }

    fn resolve(&self, member: &str) -> Result<PathBuf, ImageError> {
        let mut name = normalise(Path::new(""), Path::new(member)).ok_or_else(|| {
            ImageError::InvalidArchive(format!("member {member} escapes the archive"))
        })?;
        for _ in 0..32 {
            match self.aliases.get(&name) {
                Some(target) => name = target.clone(),
                None => return Ok(self.dir.join(&name)),
            }
        }
        Err(ImageError::InvalidArchive(format!(
            "member {member} is a link loop"
        )))
    }

    fn exists(&self, member: &str) -> bool {
        self.resolve(member).is_ok_and(|p| p.is_file())
    }

    fn open(&self, member: &str) -> Result<File, ImageError> {
        let path = self.resolve(member)?;
        File::open(&path).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                ImageError::InvalidArchive(format!("member {member} is missing"))
            } else {
                ImageError::io(&path, source)
            }
        })
    }

    fn read(&self, member: &str) -> Result<Vec<u8>, ImageError> {
        let mut bytes = Vec::new();
        self.open(member)?
            .read_to_end(&mut bytes)
            .map_err(|source| ImageError::io(self.dir.join(member), source))?;
        Ok(bytes)
    }

    /// Reads `blobs/sha256/<hex>` and checks it against its digest.
    fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        if digest_hex(digest).is_none() {
            return Err(ImageError::InvalidArchive(format!(
                "unsupported digest {digest}"
            )));
        }
        let bytes = self.read(&blob_member(digest))?;
        let actual = sha256_bytes(&bytes);
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                digest: digest.to_owned(),
                actual,
            });
        }
        Ok(bytes)
    }
}

impl Drop for ExtractedArchive {
    fn drop(&mut self) {
        if let Err(error) = fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), %error, "cannot remove the unpacked archive");
        }
    }
}

/// `base/path` with `.` and `..` resolved, as a relative `a/b/c` string; None when it climbs
/// above the root or is absolute.
fn normalise(base: &Path, path: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for component in base.components().chain(path.components()) {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names() {
        let hex = "a".repeat(64);
        assert_eq!(
            member_digest(&format!("blobs/sha256/{hex}")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(
            member_digest(&format!("{hex}.json")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(member_digest("abc/layer.tar"), None);
        assert_eq!(
            normalise(Path::new("a"), Path::new("../b/layer.tar")).as_deref(),
            Some("b/layer.tar")
        );
        assert_eq!(
            normalise(Path::new(""), Path::new("./x/./y")).as_deref(),
            Some("x/y")
        );
        assert_eq!(normalise(Path::new("a"), Path::new("../../etc")), None);
        assert_eq!(normalise(Path::new(""), Path::new("/etc/passwd")), None);
    }
}
