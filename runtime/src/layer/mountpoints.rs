//! The mount points every container gets — `/proc`, `/sys`, `/dev`, `/etc/hostname`,
//! `/etc/hosts`, `/etc/resolv.conf` — for images that lack them, in a small lower layer shared
//! by every container whose image lacks the same ones: `ROOT/init-layers/<key>/`, stacked
//! above the image's layers.
//!
//! Without it the container's setup creates them through the overlay, in the container's own
//! writable layer: for an image built from `scratch` (a static binary, busybox) that is four
//! directories and three files per container start, each an inode allocation on the data disk,
//! and as many deletions when the container goes. Docker makes them in a per-container "-init"
//! layer; shared, they cost nothing after the first container. The writable layer then holds
//! only what the container itself wrote, as with docker (`docker diff` does not list them).
//!
//! Only what is absent from every layer is made, and only under directories that are real
//! directories in every layer that has them: an image with a symlinked `/etc` or a whiteout on
//! the way keeps what setup does today (it resolves symlinks inside the root). A layer directory
//! is built under a temporary name and renamed into place, and never changed afterwards (an
//! overlay's lower directories must not change while mounted); they are never removed, being a
//! few empty entries each, one per distinct set of missing paths.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::LayerError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A directory: new, or one of the image's (the parent of a new entry), which the layer
    /// holds with the image's mode and owner, since the topmost layer's win in the overlay.
    Dir { mode: u32, uid: u32, gid: u32 },
    File,
}

const NEW_DIR: Kind = Kind::Dir { mode: 0o755, uid: 0, gid: 0 };

/// What setup mounts on in every container (see `container::setup::prepare`).
const MOUNTPOINTS: [(&str, Kind); 6] = [
    ("proc", NEW_DIR),
    ("sys", NEW_DIR),
    ("dev", NEW_DIR),
    ("etc/hostname", Kind::File),
    ("etc/hosts", Kind::File),
    ("etc/resolv.conf", Kind::File),
];

/// A path as the stack of layers shows it, as far as this module cares.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// In no layer at all.
    Absent,
    /// A real directory in every layer that has it; the topmost one's mode and owner.
    Dir(Kind),
    /// Anything else: a file, a symlink, a whiteout, a mix.
    Other,
}

fn look_up(lowers: &[PathBuf], rel: &Path) -> Seen {
    use std::os::unix::fs::MetadataExt;
    let mut top = None;
    for lower in lowers {
        match fs::symlink_metadata(lower.join(rel)) {
            Ok(meta) if meta.file_type().is_dir() => {
                top.get_or_insert(Kind::Dir { mode: meta.mode() & 0o7777, uid: meta.uid(), gid: meta.gid() });
            }
            Ok(_) => return Seen::Other,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) => return Seen::Other,
        }
    }
    top.map_or(Seen::Absent, Seen::Dir)
}

/// The entries to make for `lowers` (top first): the missing mount points and the directories
/// above them (new ones, or copies of the image's), parents first.
fn missing(lowers: &[PathBuf]) -> Vec<(PathBuf, Kind)> {
    let mut entries: Vec<(PathBuf, Kind)> = Vec::new();
    'mountpoints: for (path, kind) in MOUNTPOINTS {
        let path = Path::new(path);
        let mut parents: Vec<PathBuf> = path.ancestors().skip(1).filter(|p| !p.as_os_str().is_empty()).map(Path::to_path_buf).collect();
        parents.reverse();
        let mut absent = false;
        let mut chain = Vec::new();
        for parent in parents {
            let kind = if absent {
                NEW_DIR
            } else {
                match look_up(lowers, &parent) {
                    Seen::Dir(image) => image,
                    Seen::Other => continue 'mountpoints,
                    Seen::Absent => {
                        absent = true;
                        NEW_DIR
                    }
                }
            };
            chain.push((parent, kind));
        }
        if absent || look_up(lowers, path) == Seen::Absent {
            for (parent, kind) in chain {
                if !entries.iter().any(|(p, _)| *p == parent) {
                    entries.push((parent, kind));
                }
            }
            entries.push((path.to_path_buf(), kind));
        }
    }
    entries
}

/// The shared layer with the mount points `lowers` (top first) lack, made on first use; `None`
/// when the image has them all.
pub fn ensure_init_layer(root: &Path, lowers: &[PathBuf]) -> Result<Option<PathBuf>, LayerError> {
    let entries = missing(lowers);
    if entries.is_empty() {
        return Ok(None);
    }
    let listing: String = entries
        .iter()
        .map(|(p, k)| match k {
            Kind::Dir { mode, uid, gid } => format!("d {} {mode:o} {uid} {gid}\n", p.display()),
            Kind::File => format!("f {}\n", p.display()),
        })
        .collect();
    let key = hex::encode(&Sha256::digest(listing.as_bytes())[..12]);
    let base = root.join("init-layers");
    let dir = base.join(&key);
    if dir.is_dir() {
        return Ok(Some(dir));
    }
    let io_err = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| LayerError::Io { action, path, source }
    };
    fs::create_dir_all(&base).map_err(io_err("create", &base))?;
    // Unique per call: the containers of one process (the node agent) are created in parallel.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let tmp = base.join(format!(".tmp-{}-{}-{key}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    let build = || -> io::Result<()> {
        fs::DirBuilder::new().mode(0o755).create(&tmp)?;
        for (path, kind) in &entries {
            let target = tmp.join(path);
            // Modes set after creation, not left to the process's umask.
            match *kind {
                Kind::Dir { mode, uid, gid } => {
                    fs::DirBuilder::new().mode(0o700).create(&target)?;
                    std::os::unix::fs::lchown(&target, Some(uid), Some(gid))?;
                    fs::set_permissions(&target, fs::Permissions::from_mode(mode))?;
                }
                Kind::File => {
                    drop(fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&target)?);
                    fs::set_permissions(&target, fs::Permissions::from_mode(0o644))?;
                }
            }
        }
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
    };
    if let Err(source) = build() {
        let _ = fs::remove_dir_all(&tmp);
        return Err(LayerError::Io { action: "build the mount point layer", path: tmp, source });
    }
    if let Err(source) = fs::rename(&tmp, &dir) {
        let _ = fs::remove_dir_all(&tmp);
        // Another container of the same image made it first.
        if !dir.is_dir() {
            return Err(LayerError::Io { action: "rename the mount point layer into", path: dir, source });
        }
    }
    Ok(Some(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(base: &Path, name: &str) -> PathBuf {
        let dir = base.join(name);
        fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    fn names(entries: &[(PathBuf, Kind)]) -> Vec<String> {
        entries.iter().map(|(p, k)| format!("{}{}", p.display(), if *k == Kind::File { "" } else { "/" })).collect()
    }

    #[test]
    fn a_scratch_image_gets_every_mount_point_once() {
        let base = tempfile::tempdir().expect("tempdir");
        let bin = layer(base.path(), "bin");
        fs::create_dir_all(bin.join("bin")).expect("mkdir");
        let lowers = vec![bin];
        assert_eq!(
            names(&missing(&lowers)),
            ["proc/", "sys/", "dev/", "etc/", "etc/hostname", "etc/hosts", "etc/resolv.conf"]
        );
        let root = base.path().join("root");
        let made = ensure_init_layer(&root, &lowers).expect("ensure").expect("a layer");
        assert!(made.join("proc").is_dir() && made.join("etc/hosts").is_file());
        let mode = fs::metadata(made.join("etc/hosts")).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        // The same set of missing paths shares the layer.
        let again = ensure_init_layer(&root, &lowers).expect("ensure").expect("a layer");
        assert_eq!(made, again);
        assert_eq!(fs::read_dir(root.join("init-layers")).expect("list").count(), 1, "a temporary directory was left");
    }

    #[test]
    fn containers_made_at_once_share_one_layer() {
        let base = tempfile::tempdir().expect("tempdir");
        let lowers = vec![layer(base.path(), "empty")];
        let root = base.path().join("root");
        let made: Vec<PathBuf> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| ensure_init_layer(&root, &lowers))).collect();
            handles.into_iter().map(|h| h.join().expect("thread").expect("ensure").expect("a layer")).collect()
        });
        assert!(made.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(fs::read_dir(root.join("init-layers")).expect("list").count(), 1, "a temporary directory was left");
    }

    #[test]
    fn a_full_image_needs_no_layer() {
        let base = tempfile::tempdir().expect("tempdir");
        let full = layer(base.path(), "full");
        for dir in ["proc", "sys", "dev", "etc"] {
            fs::create_dir_all(full.join(dir)).expect("mkdir");
        }
        for file in ["etc/hostname", "etc/hosts", "etc/resolv.conf"] {
            fs::write(full.join(file), b"").expect("write");
        }
        let root = base.path().join("root");
        assert_eq!(ensure_init_layer(&root, &[full]).expect("ensure"), None);
        assert!(!root.join("init-layers").exists());
    }

    #[test]
    fn symlinks_and_whiteouts_on_the_way_are_left_to_setup() {
        let base = tempfile::tempdir().expect("tempdir");
        // Top layer: /etc is a symlink; lower layer: a real /etc with nothing in it, /sys a file.
        let top = layer(base.path(), "top");
        std::os::unix::fs::symlink("/private/etc", top.join("etc")).expect("symlink");
        let bottom = layer(base.path(), "bottom");
        fs::create_dir_all(bottom.join("etc")).expect("mkdir");
        fs::create_dir_all(bottom.join("proc")).expect("mkdir");
        fs::write(bottom.join("sys"), b"not a dir").expect("write");
        // Present in one layer as a directory, in another as a file: not made either.
        fs::write(top.join("dev"), b"").expect("write");
        fs::create_dir_all(bottom.join("dev")).expect("mkdir");
        let lowers = vec![top, bottom];
        assert!(missing(&lowers).is_empty(), "{:?}", names(&missing(&lowers)));
    }

    #[test]
    fn only_what_is_missing_is_made() {
        let base = tempfile::tempdir().expect("tempdir");
        let top = layer(base.path(), "top");
        fs::create_dir_all(top.join("etc")).expect("mkdir");
        fs::write(top.join("etc/hosts"), b"127.0.0.1 localhost\n").expect("write");
        let bottom = layer(base.path(), "bottom");
        for dir in ["proc", "sys", "dev"] {
            fs::create_dir_all(bottom.join(dir)).expect("mkdir");
        }
        fs::set_permissions(top.join("etc"), fs::Permissions::from_mode(0o750)).expect("chmod");
        let lowers = vec![top, bottom];
        assert_eq!(names(&missing(&lowers)), ["etc/", "etc/hostname", "etc/resolv.conf"]);
        // The image's /etc keeps its mode above the image's layers.
        let made = ensure_init_layer(&base.path().join("root"), &lowers).expect("ensure").expect("a layer");
        assert_eq!(fs::metadata(made.join("etc")).expect("stat").permissions().mode() & 0o7777, 0o750);
        assert!(made.join("etc/hostname").is_file() && !made.join("etc/hosts").exists());
    }

    #[test]
    fn an_unwritable_root_is_an_error_and_leaves_nothing() {
        let base = tempfile::tempdir().expect("tempdir");
        let lowers = vec![layer(base.path(), "empty")];
        let root = base.path().join("file");
        fs::write(&root, b"").expect("write");
        assert!(matches!(ensure_init_layer(&root, &lowers), Err(LayerError::Io { .. })));
        assert_eq!(fs::read(&root).expect("read"), b"");
    }
}
