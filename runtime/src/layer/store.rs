//! The store of extracted layers, `ROOT/layers/<diffid-hex>/`, shared by every image that has the
//! layer. A layer is extracted into `<hex>.tmp-<random>` beside its final place while the
//! uncompressed stream is hashed; only a layer whose hash equals its diff_id is renamed into
//! place, so a directory named after a diff_id is always complete and verified. Two callers
//! extracting the same layer at once both do the work, and the loser of the rename discards its
//! copy.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::{decompress, extract, LayerError};
use crate::image::LayerRef;

/// Extracted layers under `ROOT/layers`.
#[derive(Debug, Clone)]
pub struct LayerStore {
    dir: PathBuf,
}

/// Temporary directories older than this are taken as left behind by a crash and collected.
const STALE_TMP_AGE: Duration = Duration::from_secs(3600);

impl LayerStore {
    /// Opens (creating if needed) the layer store under `root`.
    pub fn open(root: &Path) -> Result<LayerStore, LayerError> {
        let dir = root.join("layers");
        fs::create_dir_all(&dir).map_err(|source| LayerError::Io {
            action: "create layer store directory",
            path: dir.clone(),
            source,
        })?;
        Ok(LayerStore { dir })
    }

    /// `ROOT/layers`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the layer with this diff_id lives (or would live) once extracted.
    pub fn path(&self, diff_id: &str) -> Result<PathBuf, LayerError> {
        Ok(self.dir.join(diff_id_hex(diff_id)?))
    }

    /// Whether the layer with this diff_id is extracted.
    pub fn contains(&self, diff_id: &str) -> bool {
        self.path(diff_id)
            .is_ok_and(|p| p.symlink_metadata().is_ok_and(|m| m.is_dir()))
    }

    /// The extracted dir of a layer, extracting the blob the first time (verifying diff_id).
    pub fn ensure(&self, layer: &LayerRef, blob: &Path) -> Result<PathBuf, LayerError> {
        self.ensure_diff_id(&layer.diff_id, blob)
    }

    /// As [`LayerStore::ensure`], for callers that know only the diff_id.
    pub fn ensure_diff_id(&self, diff_id: &str, blob: &Path) -> Result<PathBuf, LayerError> {
        let hex = diff_id_hex(diff_id)?;
        let final_path = self.dir.join(hex);
        if final_path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            return Ok(final_path);
        }
        let tmp = TmpDir::create(&self.dir, hex)?;
        let wrap = |source: LayerError| LayerError::Extract {
            diff_id: diff_id.to_owned(),
            blob: blob.to_owned(),
            source: Box::new(source),
        };
        let file = File::open(blob).map_err(|source| LayerError::Io {
            action: "open layer blob",
            path: blob.to_owned(),
            source,
        })?;
        let (compression, reader) =
            decompress(BufReader::new(file)).map_err(|source| wrap(LayerError::Tar { source }))?;
        let mut hashing = HashingReader {
            inner: reader,
            hasher: Sha256::new(),
        };
        extract(&mut hashing, &tmp.path).map_err(wrap)?;
        // The diff_id covers the whole stream, including the padding after the end-of-archive
        // marker that tar writers add to fill a record.
        io::copy(&mut hashing, &mut io::sink())
            .map_err(|source| wrap(LayerError::Tar { source }))?;
        let actual = format!("sha256:{}", hex::encode(hashing.hasher.finalize()));
        if actual != diff_id {
            return Err(LayerError::DiffIdMismatch {
                blob: blob.to_owned(),
                expected: diff_id.to_owned(),
                actual,
            });
        }
        match rename_no_replace(&tmp.path, &final_path) {
            Ok(()) => {
                tmp.keep();
                tracing::debug!(diff_id, ?compression, path = %final_path.display(), "extracted layer");
                Ok(final_path)
            }
            // Another caller put the same verified layer in place first; ours is dropped.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST) | Some(libc::ENOTEMPTY)) => {
                Ok(final_path)
            }
            Err(source) => Err(LayerError::Io {
                action: "move extracted layer into place at",
                path: final_path,
                source,
            }),
        }
    }

    /// Removes every extracted layer whose diff_id is not in `keep` ("sha256:..." strings), and
    /// temporary directories left by crashed extractions; returns the diff_ids removed. Must not
    /// run while containers using the removed layers are mounted (the caller's `keep` says
    /// which are in use); temporary directories younger than an hour are spared, so it may run
    /// while other layers are being extracted.
    pub fn remove_unused(&self, keep: &HashSet<String>) -> Result<Vec<String>, LayerError> {
        let listing = fs::read_dir(&self.dir).map_err(|source| LayerError::Io {
            action: "list layer store",
            path: self.dir.clone(),
            source,
        })?;
        let mut removed = Vec::new();
        for item in listing {
            let item = item.map_err(|source| LayerError::Io {
                action: "list layer store",
                path: self.dir.clone(),
                source,
            })?;
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = item.path();
            if let Some((hex, _)) = name.split_once(".tmp-") {
                let stale = is_hex_digest(hex)
                    && item.metadata().and_then(|m| m.modified()).is_ok_and(|t| {
                        SystemTime::now().duration_since(t).unwrap_or_default() > STALE_TMP_AGE
                    });
                if stale {
                    remove_dir(&path)?;
                }
                continue;
            }
            if !is_hex_digest(name) {
                continue;
            }
            let diff_id = format!("sha256:{name}");
            if keep.contains(&diff_id) {
                continue;
            }
            remove_dir(&path)?;
            tracing::debug!(diff_id, "removed unused layer");
            removed.push(diff_id);
        }
        removed.sort();
        Ok(removed)
    }
}

fn remove_dir(path: &Path) -> Result<(), LayerError> {
    fs::remove_dir_all(path).map_err(|source| LayerError::Io {
        action: "remove layer directory",
        path: path.to_owned(),
        source,
    })
}

fn is_hex_digest(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The hex part of a "sha256:<hex>" diff_id, which also names the layer's directory; checked so
/// that a bad diff_id cannot name a path elsewhere.
fn diff_id_hex(diff_id: &str) -> Result<&str, LayerError> {
    match diff_id.strip_prefix("sha256:") {
        Some(hex) if is_hex_digest(hex) => Ok(hex),
        _ => Err(LayerError::InvalidDiffId {
            diff_id: diff_id.to_owned(),
        }),
    }
}

#[cfg(target_os = "linux")]
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        // File systems without RENAME_NOREPLACE: a plain rename still refuses a non-empty target
        // (ENOTEMPTY); it may replace an empty one, which holds the same empty layer.
        Err(nix::errno::Errno::EINVAL) => fs::rename(from, to),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(target_os = "linux"))]
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)
}

/// A temporary extraction directory, removed on drop unless kept.
struct TmpDir {
    path: PathBuf,
    keep: bool,
}

impl TmpDir {
    fn create(dir: &Path, hex: &str) -> Result<TmpDir, LayerError> {
        use std::os::unix::fs::DirBuilderExt;
        loop {
            let path = dir.join(format!("{hex}.tmp-{:08x}", rand::random::<u32>()));
            match fs::DirBuilder::new().mode(0o755).create(&path) {
                Ok(()) => return Ok(TmpDir { path, keep: false }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => {
                    return Err(LayerError::Io {
                        action: "create temporary layer directory",
                        path,
                        source,
                    });
                }
            }
        }
    }

    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(e) = fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove temporary layer directory");
        }
    }
}

/// Hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_ids_are_checked_before_naming_paths() {
        let hex = "a".repeat(64);
        assert_eq!(
            diff_id_hex(&format!("sha256:{hex}")).ok(),
            Some(hex.as_str())
        );
        for bad in [
            "".to_owned(),
            hex.clone(),
            format!("sha512:{hex}"),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            "sha256:../../etc".to_owned(),
        ] {
            assert!(
                matches!(diff_id_hex(&bad), Err(LayerError::InvalidDiffId { .. })),
                "{bad:?}"
            );
        }
    }
}
