//! `docker import`: a root filesystem tar (plain, gzip or zstd) becomes a one-layer image. The
//! tar is streamed once: parsed (so a non-tar is refused), hashed for its diff_id, and
//! gzip-compressed into the layer blob at the same time.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, Write};
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;
use nix::fcntl::FlockArg;
use oci_spec::image::{
    Arch, Config, Descriptor, HistoryBuilder, ImageConfigurationBuilder, ImageManifestBuilder,
    MediaType, Os, RootFsBuilder,
};

use super::blob::{HashingReader, HashingWriter, TempFile};
use super::{parse_digest, Image, ImageError, ImageStore};
use crate::reference::Reference;

/// `docker import` options.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Dockerfile instructions applied to the config (`--change`): CMD, ENTRYPOINT, ENV,
    /// EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR.
    pub changes: Vec<String>,
    /// The history comment (`--message`); default `Imported from -`.
    pub message: Option<String>,
}

impl ImageStore {
    /// Imports a root filesystem tar as a one-layer image named `reference`.
    pub fn import_rootfs_tar(
        &self,
        tar: impl Read,
        reference: &Reference,
        options: &ImportOptions,
    ) -> Result<Image, ImageError> {
        if reference.digest.is_some() {
            return Err(ImageError::TagWithDigest(reference.familiar()));
        }
        let mut runtime_config = Config::default();
        for change in &options.changes {
            apply_change(&mut runtime_config, change)?;
        }
        let _gc = self.lock("gc.lock", FlockArg::LockShared)?;

        let mut input = BufReader::new(tar);
        let magic = input
            .fill_buf()
            .map_err(ImageError::InvalidTar)?
            .get(..4)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let decompressed: Box<dyn Read + '_> = if magic.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::MultiGzDecoder::new(input))
        } else if magic == [0x28, 0xb5, 0x2f, 0xfd] {
            Box::new(
                ruzstd::decoding::StreamingDecoder::new(input)
                    .map_err(|e| ImageError::InvalidTar(io::Error::other(e.to_string())))?,
            )
        } else {
            Box::new(input)
        };

        let tmp = TempFile::create(&self.tmp_dir())?;
        let tmp_path = tmp.path().to_path_buf();
        let blob_out = HashingWriter::new(BufWriter::new(tmp.handle()?));
        let gzip = GzEncoder::new(blob_out, Compression::fast());
        let tee = Tee {
            reader: HashingReader::new(decompressed),
            writer: gzip,
        };
        let mut archive = tar::Archive::new(tee);
        let mut files = 0usize;
        for entry in archive.entries().map_err(ImageError::InvalidTar)? {
            let mut entry = entry.map_err(ImageError::InvalidTar)?;
            io::copy(&mut entry, &mut io::sink()).map_err(ImageError::InvalidTar)?;
            files += 1;
        }
        let mut tee = archive.into_inner();
        // The end-of-archive blocks and any padding belong to the layer too.
        io::copy(&mut tee, &mut io::sink()).map_err(ImageError::InvalidTar)?;
        let Tee { reader, writer } = tee;
        let (diff_id, tar_size) = reader.finish().map_err(ImageError::InvalidTar)?;
        if tar_size == 0 {
            return Err(ImageError::InvalidTar(io::Error::other(
                "the input is empty",
            )));
        }
        let blob_out = writer
            .finish()
            .map_err(|source| ImageError::io(&tmp_path, source))?;
        let (mut buffered, layer_digest, layer_size) = blob_out.finish();
        buffered
            .flush()
            .map_err(|source| ImageError::io(&tmp_path, source))?;
        drop(buffered);
        tmp.persist(&self.blob_path(&layer_digest))?;
        tracing::debug!(%diff_id, %layer_digest, files, tar_size, "imported rootfs layer");

        let now = jiff::Timestamp::now().to_string();
        let history = HistoryBuilder::default()
            .created(now.clone())
            .comment(
                options
                    .message
                    .clone()
                    .unwrap_or_else(|| "Imported from -".to_owned()),
            )
            .build()
            .map_err(|e| super::invalid("image config", "(new)", e))?;
        let rootfs = RootFsBuilder::default()
            .typ("layers")
            .diff_ids(vec![diff_id])
            .build()
            .map_err(|e| super::invalid("image config", "(new)", e))?;
        let mut config = ImageConfigurationBuilder::default()
            .created(now)
            .architecture(Arch::default())
            .os(Os::Linux)
            .rootfs(rootfs)
            .history(vec![history])
            .build()
            .map_err(|e| super::invalid("image config", "(new)", e))?;
        if runtime_config != Config::default() {
            config.set_config(Some(runtime_config));
        }
        let config_bytes = serde_json::to_vec(&config).map_err(|source| ImageError::Encode {
            what: "image config",
            source,
        })?;
        let config_digest = self.write_blob_bytes(&config_bytes)?;

        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(
                MediaType::ImageConfig,
                config_bytes.len() as u64,
                parse_digest(&config_digest)?,
            ))
            .layers(vec![Descriptor::new(
                MediaType::ImageLayerGzip,
                layer_size,
                parse_digest(&layer_digest)?,
            )])
            .build()
            .map_err(|e| super::invalid("manifest", "(new)", e))?;
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|source| ImageError::Encode {
                what: "manifest",
                source,
            })?;
        let manifest_digest = self.write_blob_bytes(&manifest_bytes)?;

        let _lock = self.lock("index.lock", FlockArg::LockExclusive)?;
        let mut index = self.read_index()?;
        let entries = self.entries(&index)?;
        self.set_name(&mut index, &entries, reference, &manifest_digest)?;
        self.write_index(&index)?;
        let entries = self.entries(&index)?;
        self.image(&entries, &manifest_digest)
    }

    /// Imports a directory as a one-layer image (what `tar -C dir -c . | ctl image import -`
    /// does); symlinks are kept as symlinks, owners and modes as they are on disk.
    pub fn import_rootfs_dir(
        &self,
        dir: &Path,
        reference: &Reference,
    ) -> Result<Image, ImageError> {
        let mut tmp = TempFile::create(&self.tmp_dir())?;
        let tmp_path = tmp.path().to_path_buf();
        {
            let mut builder = tar::Builder::new(BufWriter::new(tmp.file()));
            builder.follow_symlinks(false);
            for item in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
                let item = item.map_err(|e| {
                    let path = e.path().unwrap_or(dir).to_path_buf();
                    ImageError::io(path, io::Error::other(e.to_string()))
                })?;
                let relative = item.path().strip_prefix(dir).unwrap_or(item.path());
                builder
                    .append_path_with_name(item.path(), relative)
                    .map_err(|source| ImageError::io(item.path(), source))?;
            }
            let out = builder
                .into_inner()
                .map_err(|source| ImageError::io(&tmp_path, source))?;
            out.into_inner()
                .map_err(|e| ImageError::io(&tmp_path, e.into_error()))?;
        }
        let file: &mut File = tmp.file();
        file.rewind()
            .map_err(|source| ImageError::io(&tmp_path, source))?;
        let options = ImportOptions {
            changes: Vec::new(),
            message: Some(format!("Imported from {}", dir.display())),
        };
        self.import_rootfs_tar(file, reference, &options)
    }

    /// Writes an in-memory blob (config, manifest) and returns its digest.
    pub(crate) fn write_blob_bytes(&self, bytes: &[u8]) -> Result<String, ImageError> {
        let digest = super::blob::sha256_bytes(bytes);
        let dest = self.blob_path(&digest);
        if !dest.exists() {
            super::blob::write_atomic(&self.tmp_dir(), &dest, bytes)?;
        }
        Ok(digest)
    }
}

/// A reader that copies everything it reads into a writer.
struct Tee<R, W> {
    reader: R,
    writer: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reader.read(buf)?;
        self.writer.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Applies one Dockerfile instruction of `--change` to a runtime config.
fn apply_change(config: &mut Config, change: &str) -> Result<(), ImageError> {
    let bad = |message: &str| ImageError::InvalidChange {
        change: change.to_owned(),
        message: message.to_owned(),
    };
    let trimmed = change.trim();
    let (instruction, rest) = trimmed
        .split_once(char::is_whitespace)
        .map(|(i, r)| (i, r.trim()))
        .unwrap_or((trimmed, ""));
    if rest.is_empty() {
        return Err(bad("the instruction needs an argument"));
    }
    match instruction.to_ascii_uppercase().as_str() {
        "CMD" => {
            config.set_cmd(Some(command_form(rest)));
        }
        "ENTRYPOINT" => {
            config.set_entrypoint(Some(command_form(rest)));
        }
        "WORKDIR" => {
            config.set_working_dir(Some(rest.to_owned()));
        }
        "USER" => {
            config.set_user(Some(rest.to_owned()));
        }
        "STOPSIGNAL" => {
            config.set_stop_signal(Some(rest.to_owned()));
        }
        "ENV" => {
            let mut env = config.env().clone().unwrap_or_default();
            for (key, value) in
                key_values(rest).ok_or_else(|| bad("expected KEY=VALUE or KEY VALUE"))?
            {
                env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key.as_str()));
                env.push(format!("{key}={value}"));
            }
            config.set_env(Some(env));
        }
        "LABEL" => {
            let mut labels = config.labels().clone().unwrap_or_default();
            for (key, value) in key_values(rest).ok_or_else(|| bad("expected KEY=VALUE"))? {
                labels.insert(key, value);
            }
            config.set_labels(Some(labels));
        }
        "EXPOSE" => {
            let mut ports = config.exposed_ports().clone().unwrap_or_default();
            for port in rest.split_whitespace() {
                let (number, proto) = port.split_once('/').unwrap_or((port, "tcp"));
                if number.parse::<u16>().is_err() || !matches!(proto, "tcp" | "udp" | "sctp") {
                    return Err(bad("expected PORT[/tcp|udp|sctp]"));
                }
                let port = format!("{number}/{proto}");
                if !ports.contains(&port) {
                    ports.push(port);
                }
            }
            config.set_exposed_ports(Some(ports));
        }
        "VOLUME" => {
            let mut volumes = config.volumes().clone().unwrap_or_default();
            let new: Vec<String> = match serde_json::from_str::<Vec<String>>(rest) {
                Ok(list) => list,
                Err(_) => rest.split_whitespace().map(str::to_owned).collect(),
            };
            for volume in new {
                if !volumes.contains(&volume) {
                    volumes.push(volume);
                }
            }
            config.set_volumes(Some(volumes));
        }
        _ => {
            return Err(bad(
                "only CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME and WORKDIR are allowed",
            ));
        }
    }
    Ok(())
}

/// The exec form (`["a","b"]`) as is; the shell form wrapped in `/bin/sh -c`.
fn command_form(rest: &str) -> Vec<String> {
    match serde_json::from_str::<Vec<String>>(rest) {
        Ok(args) => args,
        Err(_) => vec!["/bin/sh".into(), "-c".into(), rest.to_owned()],
    }
}

/// `K=V K2="v 2"` or the legacy single `K V` form.
fn key_values(rest: &str) -> Option<Vec<(String, String)>> {
    let first = rest.split_whitespace().next()?;
    if !first.contains('=') {
        let (key, value) = rest.split_once(char::is_whitespace)?;
        return Some(vec![(key.to_owned(), value.trim().to_owned())]);
    }
    let mut pairs = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        if key.is_empty() || key.contains(char::is_whitespace) {
            return None;
        }
        let mut value = String::new();
        let mut quote = None;
        while let Some(&c) = chars.peek() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => value.push(c),
                None if c == '"' || c == '\'' => quote = Some(c),
                None if c.is_whitespace() => break,
                None => value.push(c),
            }
            chars.next();
        }
        pairs.push((key, value));
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_like_docker_import() {
        let mut config = Config::default();
        for change in [
            "CMD [\"/bin/sh\", \"-c\", \"echo hi\"]",
            "ENTRYPOINT /bin/app --flag",
            "ENV A=1 B=\"two words\"",
            "ENV C 3",
            "ENV A=replaced",
            "LABEL team=infra",
            "EXPOSE 80 53/udp",
            "WORKDIR /srv",
            "USER 1000:1000",
            "VOLUME [\"/data\"]",
            "STOPSIGNAL SIGINT",
        ] {
            apply_change(&mut config, change).unwrap_or_else(|e| panic!("{change}: {e}"));
        }
        assert_eq!(
            config.cmd().as_deref(),
            Some(&["/bin/sh".to_owned(), "-c".into(), "echo hi".into()][..])
        );
        assert_eq!(
            config.entrypoint().as_deref(),
            Some(&["/bin/sh".to_owned(), "-c".into(), "/bin/app --flag".into()][..])
        );
        assert_eq!(
            config.env().as_deref(),
            Some(&["B=two words".to_owned(), "C=3".into(), "A=replaced".into()][..])
        );
        assert_eq!(
            config
                .labels()
                .as_ref()
                .and_then(|l| l.get("team"))
                .map(String::as_str),
            Some("infra")
        );
        assert_eq!(
            config.exposed_ports().as_deref(),
            Some(&["80/tcp".to_owned(), "53/udp".into()][..])
        );
        assert_eq!(config.working_dir().as_deref(), Some("/srv"));
        assert_eq!(config.user().as_deref(), Some("1000:1000"));
        assert_eq!(config.volumes().as_deref(), Some(&["/data".to_owned()][..]));
        assert_eq!(config.stop_signal().as_deref(), Some("SIGINT"));

        for bad in ["RUN make", "CMD", "EXPOSE http", "ENV =x"] {
            assert!(apply_change(&mut config, bad).is_err(), "{bad}");
        }
    }
}
