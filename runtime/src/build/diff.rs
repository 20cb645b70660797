//! Turns the overlayfs upper directory of a RUN container into an OCI layer tar: new and
//! changed files as they are, overlay whiteouts (character device 0:0) as `.wh.NAME`, and
//! opaque directories (xattr `trusted.overlay.opaque=y`) as a `.wh..wh..opq` entry. Entries
//! are sorted and mtimes clamped to 0 so the same changes give the same digest.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Files the runtime itself puts into every container root (bind-mount targets); they do not
/// belong to the image when the command did not create them in a lower layer.
const RUNTIME_FILES: &[&str] = &["etc/hosts", "etc/hostname", "etc/resolv.conf"];
const RUNTIME_DIRS: &[&str] = &["proc", "sys", "dev", "etc"];

/// The layer tar of `upper`, or `None` when the command changed nothing. `lowers` (top first)
/// tell the runtime's own mount points from the command's changes.
pub fn upper_to_tar(upper: &Path, lowers: &[PathBuf]) -> Result<Option<Vec<u8>>, (PathBuf, io::Error)> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    let mut count = 0usize;
    let mut inodes: std::collections::HashMap<(u64, u64), String> = std::collections::HashMap::new();
    for entry in walkdir::WalkDir::new(upper).min_depth(1).sort_by_file_name() {
        let entry = entry.map_err(|e| (upper.to_path_buf(), io::Error::other(e.to_string())))?;
        let path = entry.path();
        let rel = path
            .strip_prefix(upper)
            .map_err(|e| (path.to_path_buf(), io::Error::other(e.to_string())))?
            .to_string_lossy()
            .into_owned();
        let meta = fs::symlink_metadata(path).map_err(|e| (path.to_path_buf(), e))?;
        let in_lower = lowers.iter().any(|l| fs::symlink_metadata(l.join(&rel)).is_ok());
        if !in_lower
            && ((RUNTIME_FILES.contains(&rel.as_str()) && meta.is_file() && meta.len() == 0)
                || (RUNTIME_DIRS.contains(&rel.as_str()) && meta.is_dir() && only_runtime_files(path, &rel)))
        {
            continue;
        }
        if RUNTIME_DIRS.contains(&rel.as_str()) && meta.is_dir() && in_lower && only_runtime_files(path, &rel) {
            // A copied-up dir holding nothing but runtime mount points is no change.
            if lowers.iter().any(|l| fs::symlink_metadata(l.join(&rel)).is_ok_and(|m| m.mode() == meta.mode() && m.uid() == meta.uid())) {
                continue;
            }
        }
        if RUNTIME_FILES.contains(&rel.as_str()) && meta.is_file() && meta.len() == 0 {
            continue;
        }
        let ft = meta.file_type();
        let mut header = tar::Header::new_gnu();
        header.set_mode(meta.mode() & 0o7777);
        header.set_uid(u64::from(meta.uid()));
        header.set_gid(u64::from(meta.gid()));
        header.set_mtime(0);
        let io_err = |e: io::Error| (path.to_path_buf(), e);
        if ft.is_char_device() && meta.rdev() == 0 {
            let name = match rel.rsplit_once('/') {
                Some((dir, base)) => format!("{dir}/.wh.{base}"),
                None => format!(".wh.{rel}"),
            };
            let mut h = marker_header();
            builder.append_data(&mut h, &name, io::empty()).map_err(io_err)?;
        } else if ft.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            builder.append_data(&mut header, format!("{rel}/"), io::empty()).map_err(io_err)?;
            let opaque = xattr::get(path, "trusted.overlay.opaque").ok().flatten().is_some_and(|v| v == b"y")
                || xattr::get(path, "user.overlay.opaque").ok().flatten().is_some_and(|v| v == b"y");
            if opaque {
                let mut h = marker_header();
                builder.append_data(&mut h, format!("{rel}/.wh..wh..opq"), io::empty()).map_err(io_err)?;
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(io_err)?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder.append_link(&mut header, &rel, &target).map_err(io_err)?;
        } else if ft.is_file() {
            // A second name of an inode already written becomes a hard link to the first.
            if meta.nlink() > 1 {
                if let Some(first) = inodes.get(&(meta.dev(), meta.ino())) {
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_size(0);
                    builder.append_link(&mut header, &rel, first).map_err(io_err)?;
                    count += 1;
                    continue;
                }
                inodes.insert((meta.dev(), meta.ino()), rel.clone());
            }
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(meta.len());
            let file = fs::File::open(path).map_err(io_err)?;
            builder.append_data(&mut header, &rel, file).map_err(io_err)?;
        } else if ft.is_fifo() {
            header.set_entry_type(tar::EntryType::Fifo);
            header.set_size(0);
            builder.append_data(&mut header, &rel, io::empty()).map_err(io_err)?;
        } else {
            tracing::debug!(path = %path.display(), "skipping a device or socket in a RUN diff");
            continue;
        }
        count += 1;
    }
    if count == 0 {
        return Ok(None);
    }
    let bytes = builder.into_inner().map_err(|e| (upper.to_path_buf(), e))?;
    Ok(Some(bytes))
}

/// The header of an empty whiteout or opaque marker file.
fn marker_header() -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(0);
    h.set_mtime(0);
    h
}

/// Whether a dir holds only (empty) runtime mount points, recursively.
fn only_runtime_files(dir: &Path, rel: &str) -> bool {
    let Ok(listing) = fs::read_dir(dir) else { return false };
    for item in listing.flatten() {
        let name = format!("{rel}/{}", item.file_name().to_string_lossy());
        let Ok(meta) = item.metadata() else { return false };
        let ok = (RUNTIME_FILES.contains(&name.as_str()) && meta.is_file() && meta.len() == 0)
            || (RUNTIME_DIRS.contains(&name.as_str()) && meta.is_dir() && only_runtime_files(&item.path(), &name));
        if !ok {
            return false;
        }
    }
    true
}
