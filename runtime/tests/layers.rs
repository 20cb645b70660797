//! Layer extraction, the layer store and overlay root filesystems, for real: tars built in
//! memory are extracted into temporary directories and stacked with overlayfs. Tests that need
//! root (ownership, device nodes, trusted xattrs, mounts) skip with a notice when not root.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use runtime::image::LayerRef;
use runtime::layer::{extract, rootfs, LayerError, LayerStore};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

const MTIME: u64 = 1_600_000_000;

fn is_root(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("skipping {test}: needs root");
    }
    root
}

/// Builds a tar in memory. Paths and link names are written raw, so that hostile archives
/// (which the `tar` crate's own setters refuse to produce) can be made too.
struct TarBuilder {
    inner: tar::Builder<Vec<u8>>,
}

impl TarBuilder {
    fn new() -> TarBuilder {
        TarBuilder {
            inner: tar::Builder::new(Vec::new()),
        }
    }

    fn raw(
        &mut self,
        kind: EntryType,
        path: &str,
        link: &str,
        mode: u32,
        owner: (u64, u64),
        data: &[u8],
    ) -> &mut Self {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(owner.0);
        h.set_gid(owner.1);
        h.set_mtime(MTIME);
        h.set_size(data.len() as u64);
        let old = h.as_old_mut();
        old.name[..path.len()].copy_from_slice(path.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        self.inner
            .append(&h, data)
            .expect("append to an in-memory tar");
        self
    }

    fn file(&mut self, path: &str, mode: u32, owner: (u64, u64), data: &[u8]) -> &mut Self {
        self.raw(EntryType::Regular, path, "", mode, owner, data)
    }

    fn dir(&mut self, path: &str, mode: u32, owner: (u64, u64)) -> &mut Self {
        self.raw(EntryType::Directory, path, "", mode, owner, b"")
    }

    fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.raw(EntryType::Symlink, path, target, 0o777, (0, 0), b"")
    }

    fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.raw(EntryType::Link, path, target, 0o644, (0, 0), b"")
    }

    /// PAX records that apply to the next entry.
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (key, value) in records {
            let body_len = 1 + key.len() + 1 + value.len() + 1;
            // The length prefix counts its own digits.
            let mut len = body_len + 1;
            while len.to_string().len() + body_len != len {
                len = len.to_string().len() + body_len;
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        self.raw(
            EntryType::XHeader,
            "PaxHeaders/entry",
            "",
            0o644,
            (0, 0),
            &data,
        )
    }

    fn finish(self) -> Vec<u8> {
        self.inner.into_inner().expect("finish an in-memory tar")
    }
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn layer_ref(blob: &[u8], tar: &[u8]) -> LayerRef {
    LayerRef {
        digest: sha256(blob),
        diff_id: sha256(tar),
        media_type: "application/vnd.oci.image.layer.v1.tar".to_owned(),
        size: blob.len() as u64,
    }
}

/// Unmounts on drop, so a failing assertion does not leave a mount behind.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Err(e) = rootfs::unmount(&self.0) {
            eprintln!("cleanup: {e}");
        }
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .expect("list directory")
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    out.sort();
    out
}

/// Every path below `dir`, for "nothing changed outside" checks.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.expect("walk").path().to_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn normal_layer_keeps_types_modes_owners_times_and_xattrs() {
    if !is_root("normal_layer_keeps_types_modes_owners_times_and_xattrs") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dest = tmp.path().join("layer");
    let mut t = TarBuilder::new();
    t.dir("./", 0o755, (0, 0))
        .dir("etc/", 0o755, (0, 0))
        .file("etc/hostname", 0o644, (0, 0), b"box\n")
        .dir("home/user/", 0o750, (1000, 1001))
        .pax(&[
            ("SCHILY.xattr.user.flotilla", b"yes"),
            ("mtime", b"1600000000.25"),
        ])
        .file("home/user/notes", 0o600, (1000, 1001), b"secret")
        .file("usr/bin/su", 0o4755, (0, 0), b"#!/bin/true\n")
        .dir("tmp/", 0o1777, (0, 0))
        .symlink("etc/localtime", "/usr/share/zoneinfo/UTC")
        .symlink("home/user/up", "../..")
        .hardlink("usr/bin/su2", "usr/bin/su")
        .raw(EntryType::Fifo, "run/fifo", "", 0o620, (5, 6), b"");
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Char);
    h.set_mode(0o666);
    h.set_uid(0);
    h.set_gid(0);
    h.set_device_major(1).expect("major");
    h.set_device_minor(3).expect("minor");
    h.set_mtime(MTIME);
    h.set_size(0);
    h.set_path("dev/null").expect("path");
    h.set_cksum();
    t.inner.append(&h, &b""[..]).expect("append device");
    let tar = t.finish();

    extract(&tar[..], &dest).expect("extract a normal layer");

    assert_eq!(
        fs::read(dest.join("etc/hostname")).expect("read file"),
        b"box\n"
    );
    let home = fs::symlink_metadata(dest.join("home/user")).expect("stat dir");
    assert!(home.is_dir());
    assert_eq!(
        (home.mode() & 0o7777, home.uid(), home.gid()),
        (0o750, 1000, 1001)
    );
    assert_eq!(
        home.mtime(),
        MTIME as i64,
        "directory times are set after its children"
    );
    // Parents without their own entry are created 0755, root-owned.
    let usr = fs::symlink_metadata(dest.join("usr")).expect("stat implicit parent");
    assert_eq!((usr.mode() & 0o7777, usr.uid()), (0o755, 0));

    let notes = fs::symlink_metadata(dest.join("home/user/notes")).expect("stat notes");
    assert_eq!(
        (notes.mode() & 0o7777, notes.uid(), notes.gid()),
        (0o600, 1000, 1001)
    );
    assert_eq!(
        (notes.mtime(), notes.mtime_nsec()),
        (MTIME as i64, 250_000_000),
        "PAX mtime"
    );
    assert_eq!(
        xattr::get(dest.join("home/user/notes"), "user.flotilla").expect("get xattr"),
        Some(b"yes".to_vec())
    );

    let su = fs::symlink_metadata(dest.join("usr/bin/su")).expect("stat su");
    assert_eq!(su.mode() & 0o7777, 0o4755, "setuid survives chown");
    let su2 = fs::symlink_metadata(dest.join("usr/bin/su2")).expect("stat hard link");
    assert_eq!((su2.ino(), su.nlink()), (su.ino(), 2));
    assert_eq!(
        fs::symlink_metadata(dest.join("tmp"))
            .expect("stat tmp")
            .mode()
            & 0o7777,
        0o1777
    );

    assert_eq!(
        fs::read_link(dest.join("etc/localtime")).expect("readlink"),
        Path::new("/usr/share/zoneinfo/UTC"),
        "symlinks are created as they are"
    );
    assert_eq!(
        fs::read_link(dest.join("home/user/up")).expect("readlink"),
        Path::new("../..")
    );

    let fifo = fs::symlink_metadata(dest.join("run/fifo")).expect("stat fifo");
    assert!(fifo.file_type().is_fifo());
    assert_eq!(
        (fifo.mode() & 0o7777, fifo.uid(), fifo.gid()),
        (0o620, 5, 6)
    );
    let null = fs::symlink_metadata(dest.join("dev/null")).expect("stat device");
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    assert_eq!(null.mode() & 0o7777, 0o666);
}

#[test]
fn later_entries_replace_earlier_ones() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dest = tmp.path().join("layer");
    let mut t = TarBuilder::new();
    t.file("a", 0o644, (0, 0), b"file first")
        .dir("a/", 0o755, (0, 0))
        .file("a/inner", 0o644, (0, 0), b"x")
        .file("a", 0o644, (0, 0), b"file again")
        .dir("d/", 0o700, (0, 0))
        .file("d/kept", 0o644, (0, 0), b"k")
        .dir("d/", 0o755, (0, 0));
    extract(&t.finish()[..], &dest).expect("extract");
    assert_eq!(fs::read(dest.join("a")).expect("read a"), b"file again");
    assert_eq!(
        fs::read(dest.join("d/kept")).expect("read kept"),
        b"k",
        "a directory entry keeps its contents"
    );
    assert_eq!(
        fs::metadata(dest.join("d")).expect("stat d").mode() & 0o7777,
        0o755
    );
}

#[test]
fn whiteouts_and_opaque_dirs_hide_lower_content_in_overlay() {
    if !is_root("whiteouts_and_opaque_dirs_hide_lower_content_in_overlay") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (lower, upper_layer) = (tmp.path().join("l1"), tmp.path().join("l2"));
    let mut t = TarBuilder::new();
    t.file("gone", 0o644, (0, 0), b"old")
        .file("a/x", 0o644, (0, 0), b"x")
        .file("a/y", 0o644, (0, 0), b"y")
        .file("keep/k", 0o644, (0, 0), b"k");
    extract(&t.finish()[..], &lower).expect("extract lower layer");
    let mut t = TarBuilder::new();
    t.file(".wh.gone", 0o644, (0, 0), b"")
        .dir("a/", 0o755, (0, 0))
        .file("a/.wh..wh..opq", 0o644, (0, 0), b"")
        .file("a/new", 0o644, (0, 0), b"new")
        .file(".wh..wh.plnk", 0o644, (0, 0), b"");
    extract(&t.finish()[..], &upper_layer).expect("extract whiteout layer");

    let wh = fs::symlink_metadata(upper_layer.join("gone")).expect("whiteout exists");
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert_eq!(
        xattr::get(upper_layer.join("a"), "trusted.overlay.opaque").expect("xattr"),
        Some(b"y".to_vec())
    );
    assert!(!upper_layer.join(".wh.gone").exists() && !upper_layer.join("a/.wh..wh..opq").exists());
    assert!(
        !upper_layer.join(".wh..wh.plnk").exists(),
        "aufs metadata is skipped"
    );

    let (upper, work, target) = (
        tmp.path().join("upper"),
        tmp.path().join("work"),
        tmp.path().join("rootfs"),
    );
    for d in [&upper, &work, &target] {
        fs::create_dir(d).expect("mkdir");
    }
    rootfs::mount_overlay(
        &[upper_layer.clone(), lower.clone()],
        &upper,
        &work,
        &target,
    )
    .expect("mount overlay");
    let _guard = MountGuard(target.clone());
    assert!(!target.join("gone").exists(), "whited-out file is gone");
    assert_eq!(
        names(&target.join("a")),
        ["new"],
        "opaque dir hides the lower layer's entries"
    );
    assert_eq!(
        fs::read(target.join("keep/k")).expect("read lower file"),
        b"k"
    );
    fs::write(target.join("written"), b"w").expect("write into the container root");
    assert_eq!(fs::read(upper.join("written")).expect("read upper"), b"w");
    assert!(!lower.join("written").exists() && !upper_layer.join("written").exists());
}

#[test]
fn gzip_and_zstd_blobs_are_sniffed_and_verified() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = LayerStore::open(tmp.path()).expect("open store");
    let mut t = TarBuilder::new();
    t.file("hello.txt", 0o644, (0, 0), b"compressed hello");
    let tar = t.finish();

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).expect("gzip");
    let gz = gz.finish().expect("gzip finish");

    let zst = zstd_blob(&tar, tmp.path());
    for (name, blob) in [("plain", tar.clone()), ("gzip", gz), ("zstd", zst)] {
        // The same content under each compression: remove the previous extraction first.
        store.remove_unused(&HashSet::new()).expect("gc");
        let path = tmp.path().join(format!("blob.{name}"));
        fs::write(&path, &blob).expect("write blob");
        let layer = layer_ref(&blob, &tar);
        let dir = store
            .ensure(&layer, &path)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(
            dir,
            tmp.path()
                .join("layers")
                .join(&layer.diff_id["sha256:".len()..])
        );
        assert_eq!(
            fs::read(dir.join("hello.txt")).expect("read"),
            b"compressed hello",
            "{name}"
        );
        assert_eq!(store.ensure(&layer, &path).expect("second ensure"), dir);
        assert!(store.contains(&layer.diff_id));
    }
}

/// A zstd blob made by the `zstd` tool when it is installed (the reference encoder), else by
/// ruzstd's encoder.
fn zstd_blob(data: &[u8], tmp: &Path) -> Vec<u8> {
    let input = tmp.join("zstd-input.tar");
    fs::write(&input, data).expect("write zstd input");
    match std::process::Command::new("zstd")
        .arg("-q")
        .arg("-19")
        .arg("-c")
        .arg(&input)
        .output()
    {
        Ok(out) if out.status.success() => out.stdout,
        _ => {
            eprintln!(
                "notice: the zstd tool is not installed; using ruzstd's encoder for the zstd blob"
            );
            ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
        }
    }
}

#[test]
fn hostile_tars_are_refused_and_write_nothing_outside() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).expect("mkdir outside");
    fs::write(outside.join("secret"), b"do not touch").expect("write secret");
    let outside_s = outside.to_str().expect("utf-8 temp path").to_owned();
    let passwd_links = fs::metadata("/etc/passwd").map(|m| m.nlink()).ok();

    type Case = (&'static str, Box<dyn Fn(&mut TarBuilder)>, &'static str);
    let o = outside_s.clone();
    let o2 = outside_s.clone();
    let o3 = outside_s.clone();
    let cases: Vec<Case> = vec![
        (
            "dotdot",
            Box::new(|t| {
                t.file("../../x", 0o644, (0, 0), b"escaped");
            }),
            "../../x",
        ),
        (
            "absolute dotdot",
            Box::new(|t| {
                t.file("/abs/../../x", 0o644, (0, 0), b"escaped");
            }),
            "/abs/../../x",
        ),
        (
            "symlink then file through it",
            Box::new(move |t| {
                t.symlink("evil", &o)
                    .file("evil/file", 0o644, (0, 0), b"escaped");
            }),
            "evil/file",
        ),
        (
            "symlink then hard link placed through it",
            Box::new(move |t| {
                t.file("inside", 0o644, (0, 0), b"i")
                    .symlink("evil", &o2)
                    .hardlink("evil/link", "inside");
            }),
            "evil/link",
        ),
        (
            "symlink then hard link to a target through it",
            Box::new(move |t| {
                t.symlink("evil", &o3).hardlink("stolen", "evil/secret");
            }),
            "stolen",
        ),
        (
            "symlink to a relative escape then file",
            Box::new(|t| {
                t.symlink("up", "../../..")
                    .file("up/x", 0o644, (0, 0), b"escaped");
            }),
            "up/x",
        ),
        (
            "hard link to /etc/passwd",
            Box::new(|t| {
                t.hardlink("pw", "/etc/passwd");
            }),
            "pw",
        ),
        (
            "hard link climbing out",
            Box::new(|t| {
                t.hardlink("pw", "../../../../../../etc/passwd");
            }),
            "pw",
        ),
    ];
    for (name, build, entry) in cases {
        let dest = tmp.path().join("a/b/dest");
        fs::create_dir_all(&dest).expect("mkdir dest");
        let before = tree(tmp.path());
        let mut t = TarBuilder::new();
        build(&mut t);
        let err = extract(&t.finish()[..], &dest).expect_err(name);
        assert!(matches!(err, LayerError::Refused { .. }), "{name}: {err:?}");
        let message = err.to_string();
        eprintln!("{name}: {message}");
        assert!(
            message.contains(&format!("{entry:?}")),
            "{name}: error {message:?} names the entry {entry:?}"
        );
        let after: Vec<PathBuf> = tree(tmp.path())
            .into_iter()
            .filter(|p| !p.starts_with(&dest))
            .collect();
        let before: Vec<PathBuf> = before
            .into_iter()
            .filter(|p| !p.starts_with(&dest))
            .collect();
        assert_eq!(before, after, "{name}: nothing written outside the layer");
        assert_eq!(
            fs::read(outside.join("secret")).expect("read secret"),
            b"do not touch",
            "{name}"
        );
        assert!(
            !Path::new("/x").exists()
                && !tmp.path().join("a/x").exists()
                && !tmp.path().join("x").exists()
        );
        assert_eq!(
            fs::metadata("/etc/passwd").map(|m| m.nlink()).ok(),
            passwd_links,
            "{name}"
        );
        fs::remove_dir_all(tmp.path().join("a")).expect("reset dest");
    }
}

#[test]
fn wrong_diff_id_is_refused_and_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = LayerStore::open(tmp.path()).expect("open store");
    let mut t = TarBuilder::new();
    t.file("f", 0o644, (0, 0), b"real content");
    let tar = t.finish();
    let blob = tmp.path().join("blob");
    fs::write(&blob, &tar).expect("write blob");
    let mut layer = layer_ref(&tar, &tar);
    let actual = layer.diff_id.clone();
    layer.diff_id = sha256(b"something else");
    let err = store.ensure(&layer, &blob).expect_err("wrong diff_id");
    let message = err.to_string();
    assert!(matches!(err, LayerError::DiffIdMismatch { .. }), "{err:?}");
    assert!(
        message.contains(&layer.diff_id) && message.contains(&actual),
        "{message}"
    );
    assert!(
        names(store.dir()).is_empty(),
        "nothing left in layers/: {:?}",
        names(store.dir())
    );

    // A hostile blob is refused the same way, with nothing left behind.
    let mut t = TarBuilder::new();
    t.file("../escape", 0o644, (0, 0), b"x");
    let tar = t.finish();
    fs::write(&blob, &tar).expect("write blob");
    let err = store
        .ensure(&layer_ref(&tar, &tar), &blob)
        .expect_err("hostile blob");
    assert!(
        matches!(&err, LayerError::Extract { source, .. } if matches!(**source, LayerError::Refused { .. })),
        "{err:?}"
    );
    assert!(names(store.dir()).is_empty());

    let err = store
        .ensure(
            &LayerRef {
                diff_id: "sha256:../../x".to_owned(),
                ..layer
            },
            &blob,
        )
        .expect_err("bad id");
    assert!(matches!(err, LayerError::InvalidDiffId { .. }), "{err:?}");
}

#[test]
fn concurrent_ensure_of_one_layer_yields_one_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = LayerStore::open(tmp.path()).expect("open store");
    let mut t = TarBuilder::new();
    for i in 0..200 {
        t.file(
            &format!("dir{}/file{i}", i % 10),
            0o644,
            (0, 0),
            format!("content {i}").as_bytes(),
        );
    }
    let tar = t.finish();
    let blob = tmp.path().join("blob");
    fs::write(&blob, &tar).expect("write blob");
    let layer = layer_ref(&tar, &tar);
    let barrier = Arc::new(Barrier::new(4));
    let results: Vec<PathBuf> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (store, layer, blob, barrier) = (&store, &layer, &blob, Arc::clone(&barrier));
                s.spawn(move || {
                    barrier.wait();
                    store.ensure(layer, blob)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread").expect("ensure"))
            .collect()
    });
    assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
    assert_eq!(names(store.dir()), [&layer.diff_id["sha256:".len()..]]);
    assert_eq!(
        fs::read(results[0].join("dir3/file123")).expect("read"),
        b"content 123"
    );
}

#[test]
fn remove_unused_keeps_what_is_asked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = LayerStore::open(tmp.path()).expect("open store");
    let mut ids = Vec::new();
    for i in 0..2 {
        let mut t = TarBuilder::new();
        t.file("f", 0o644, (0, 0), format!("layer {i}").as_bytes());
        let tar = t.finish();
        let blob = tmp.path().join(format!("blob{i}"));
        fs::write(&blob, &tar).expect("write blob");
        let layer = layer_ref(&tar, &tar);
        store.ensure(&layer, &blob).expect("ensure");
        ids.push(layer.diff_id);
    }
    fs::create_dir(store.dir().join("unrelated")).expect("mkdir");
    let keep: HashSet<String> = [ids[0].clone()].into();
    assert_eq!(store.remove_unused(&keep).expect("gc"), [ids[1].clone()]);
    assert!(store.contains(&ids[0]) && !store.contains(&ids[1]));
    assert!(
        store.dir().join("unrelated").exists(),
        "names that are not layers are left alone"
    );
}

#[test]
fn overlay_with_a_hundred_lowers_and_read_only_mounts() {
    if !is_root("overlay_with_a_hundred_lowers_and_read_only_mounts") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let layers = tmp
        .path()
        .join("a-rather-long-directory-name-for-the-layer-store/layers");
    let lowers: Vec<PathBuf> = (0..100)
        .map(|i| {
            let dir = layers.join(hex::encode(Sha256::digest(format!("layer {i}"))));
            fs::create_dir_all(&dir).expect("mkdir layer");
            fs::write(dir.join(format!("f{i}")), b"").expect("write own file");
            fs::write(dir.join("common"), i.to_string()).expect("write common file");
            dir
        })
        .collect();
    let joined: usize = lowers.iter().map(|l| l.as_os_str().len() + 1).sum();
    assert!(
        joined > 4096,
        "the test must overflow a page ({joined} bytes)"
    );

    let (upper, work, target) = (
        tmp.path().join("upper"),
        tmp.path().join("work"),
        tmp.path().join("rootfs"),
    );
    for d in [&upper, &work, &target] {
        fs::create_dir(d).expect("mkdir");
    }
    rootfs::mount_overlay(&lowers, &upper, &work, &target).expect("mount 100 lowers");
    let guard = MountGuard(target.clone());
    assert_eq!(
        fs::read_to_string(target.join("common")).expect("read common"),
        "0",
        "the first lower is on top"
    );
    for i in 0..100 {
        assert!(target.join(format!("f{i}")).exists(), "f{i} from lower {i}");
    }
    assert!(
        std::env::current_dir().is_ok_and(|d| d != Path::new("/proc/self/fd")),
        "cwd unchanged"
    );
    drop(guard);
    assert!(!target.join("common").exists(), "unmounted");
    rootfs::unmount(&target).expect("unmounting an unmounted target is not an error");

    // Read-only: many lowers make an overlay, one lower a read-only bind mount.
    for count in [100, 2, 1] {
        rootfs::mount_readonly(&lowers[..count], &target).expect("mount read-only");
        let _guard = MountGuard(target.clone());
        assert_eq!(
            fs::read_to_string(target.join("common")).expect("read common"),
            "0"
        );
        let err = fs::write(target.join("new"), b"x").expect_err("read-only");
        assert_eq!(
            err.raw_os_error(),
            Some(libc::EROFS),
            "{count} lowers: {err}"
        );
    }
}

#[test]
fn mount_errors_name_the_target() {
    if !is_root("mount_errors_name_the_target") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let target = tmp.path().join("rootfs");
    fs::create_dir(&target).expect("mkdir");
    let err = rootfs::mount_overlay(&[], &tmp.path().join("u"), &tmp.path().join("w"), &target)
        .expect_err("no lowers");
    assert!(
        err.to_string().contains(&target.display().to_string()),
        "{err}"
    );
    let missing = vec![tmp.path().join("missing")];
    let err = rootfs::mount_overlay(
        &missing,
        &tmp.path().join("u"),
        &tmp.path().join("w"),
        &target,
    )
    .expect_err("missing");
    assert!(matches!(err, LayerError::Mount { .. }), "{err:?}");
}
