//! Content-addressed blob writing and reading: every blob goes to a temp file while its sha256 is
//! computed, is checked against the digest it is meant to have, and only then renamed into
//! `blobs/sha256/<hex>`, so a crash or a corrupt input never leaves a blob under a wrong name.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::ImageError;

/// A writer that hashes and counts what passes through it.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// The inner writer, the `sha256:<hex>` digest and the byte count.
    pub(crate) fn finish(self) -> (W, String, u64) {
        let digest = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (self.inner, digest, self.written)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts what is read through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            read: 0,
        }
    }

    /// Reads the rest of the stream (so trailing bytes count too), then returns the digest and
    /// the byte count.
    pub(crate) fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.read,
        ))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

pub(crate) fn sha256_bytes(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The hex part of a `sha256:<hex>` digest, if it is one.
pub(crate) fn digest_hex(digest: &str) -> Option<&str> {
    digest.strip_prefix("sha256:").filter(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// A temp file in the store's temp dir that is removed unless persisted.
pub(crate) struct TempFile {
    path: PathBuf,
    file: File,
    persisted: bool,
}

impl TempFile {
    pub(crate) fn create(tmp_dir: &Path) -> Result<TempFile, ImageError> {
        fs::create_dir_all(tmp_dir).map_err(|source| ImageError::io(tmp_dir, source))?;
        for _ in 0..16 {
            let path = tmp_dir.join(format!("tmp-{:016x}", rand::random::<u64>()));
            match File::options()
                .write(true)
                .read(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file,
                        persisted: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(ImageError::io(&path, source)),
            }
        }
        Err(ImageError::io(
            tmp_dir,
            io::Error::other("cannot find a free temp file name"),
        ))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// A second handle on the file, for writers that must own theirs.
    pub(crate) fn handle(&self) -> Result<File, ImageError> {
        self.file
            .try_clone()
            .map_err(|source| ImageError::io(&self.path, source))
    }

    /// Flushes to disk and renames the file to `dest` (atomically replacing it).
    pub(crate) fn persist(mut self, dest: &Path) -> Result<(), ImageError> {
        self.file
            .sync_all()
            .map_err(|source| ImageError::io(&self.path, source))?;
        fs::rename(&self.path, dest).map_err(|source| ImageError::io(dest, source))?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Writes `bytes` to `dest` atomically (temp file in `tmp_dir`, fsync, rename).
pub(crate) fn write_atomic(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let mut tmp = TempFile::create(tmp_dir)?;
    tmp.file()
        .write_all(bytes)
        .map_err(|source| ImageError::io(tmp.path().to_path_buf(), source))?;
    tmp.persist(dest)
}
