//! Extraction of one layer tar stream into a directory that overlayfs can use as a lower layer.
//!
//! The `tar` crate parses headers (ustar, GNU long names, PAX, sparse files) but every entry is
//! placed by hand here, because its `unpack_in` is not safe for layers: it resolves an entry's
//! parent directories with ordinary path lookups, so a symbolic link planted earlier in the same
//! archive can redirect a later entry (or a hard link) outside the destination, and it knows
//! nothing of OCI whiteouts. Instead, every parent is opened one component at a time with
//! `openat(O_NOFOLLOW | O_DIRECTORY)` from a descriptor of the destination, and the entry itself
//! is created with the `*at` calls relative to its parent's descriptor. Symbolic links are
//! created as they are and never followed: an entry whose parent is a symbolic link is refused,
//! whatever the link points at. Inside a layer directory a link's target means nothing yet (an
//! absolute target refers to the container's root, which the lower layers make up), and a layer
//! produced from a real file system never has entries below one of its own symbolic links.
//!
//! Translation of the OCI layer format to overlayfs:
//! - `DIR/.wh.NAME` (whiteout) becomes `DIR/NAME` as a character device 0:0;
//! - `DIR/.wh..wh..opq` (opaque directory) sets the xattr `trusted.overlay.opaque=y` on `DIR`;
//! - other `.wh..wh.` names (aufs bookkeeping) are skipped, and so are `trusted.overlay.*`
//!   xattrs in the archive, so that overlay metadata comes only from the whiteout translation.
//!
//! Paths are made relative (a leading `/` is dropped, as docker does) and `..` is resolved
//! lexically; a path that climbs above the layer root is refused. Directory times are set once
//! the whole archive is in, since creating entries inside a directory changes its mtime.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, futimens, makedev, mkdirat, mknodat, utimensat, FchmodatFlags, Mode,
    SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use tar::EntryType;
use xattr::FileExt;

use super::LayerError;

/// Extracts one uncompressed layer tar stream into `dest` (created if missing), translating OCI
/// whiteouts into overlayfs ones. Refuses, naming the entry, anything that would write outside
/// `dest`. Ownership and device nodes need root; run as another user, ownership is not applied.
///
/// Reads the archive up to its end-of-archive marker; bytes after it are left in `reader`.
pub fn extract(reader: impl Read, dest: &Path) -> Result<(), LayerError> {
    std::fs::create_dir_all(dest).map_err(|source| LayerError::Io {
        action: "create layer directory",
        path: dest.to_owned(),
        source,
    })?;
    let root = openat(
        nix::fcntl::AT_FDCWD,
        dest,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| LayerError::Io {
        action: "open layer directory",
        path: dest.to_owned(),
        source: e.into(),
    })?;
    let mut ex = Extractor {
        root: Rc::new(root),
        apply_owner: nix::unistd::geteuid().is_root(),
        dir_times: Vec::new(),
        parent_cache: None,
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|source| LayerError::Tar { source })?;
    for entry in entries {
        let mut entry = entry.map_err(|source| LayerError::Tar { source })?;
        ex.entry(&mut entry)?;
    }
    ex.finish_dir_times();
    Ok(())
}

/// What a whiteout-style name means.
#[derive(Debug, PartialEq, Eq)]
enum Whiteout<'a> {
    /// An ordinary name.
    None,
    /// `.wh..wh..opq`: the parent directory hides everything below it in lower layers.
    Opaque,
    /// `.wh.NAME`: NAME is deleted.
    Delete(&'a OsStr),
    /// `.wh..wh.*` other than the opaque marker: aufs bookkeeping, meaningless here.
    Meta,
}

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

fn classify(name: &OsStr) -> Whiteout<'_> {
    let bytes = name.as_bytes();
    if bytes == OPAQUE_MARKER {
        Whiteout::Opaque
    } else if bytes.starts_with(b".wh..wh.") {
        Whiteout::Meta
    } else if let Some(rest) = bytes.strip_prefix(WHITEOUT_PREFIX) {
        Whiteout::Delete(OsStr::from_bytes(rest))
    } else {
        Whiteout::None
    }
}

/// Turns an archive path into components below the layer root: leading `/` and `.` dropped,
/// `..` resolved lexically. `None` when the path climbs above the root.
fn normalize(path: &Path) -> Option<Vec<OsString>> {
    let mut out: Vec<OsString> = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop()?;
            }
            Component::Normal(name) => out.push(name.to_owned()),
        }
    }
    Some(out)
}

fn join(components: &[OsString]) -> String {
    let parts: Vec<_> = components.iter().map(|c| c.to_string_lossy()).collect();
    parts.join("/")
}

/// Metadata of one entry, taken from its header and PAX records before its data is read.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: TimeSpec,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

struct Extractor {
    root: Rc<OwnedFd>,
    apply_owner: bool,
    /// Directories whose times are set at the end, in archive order.
    dir_times: Vec<(Vec<OsString>, TimeSpec)>,
    /// The parent directory of the previous entry: archives list siblings together, so this
    /// saves walking the same components again. Dropped whenever a directory is removed.
    parent_cache: Option<(Vec<OsString>, Rc<OwnedFd>)>,
}

impl Extractor {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), LayerError> {
        let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let raw_path = entry
            .path()
            .map_err(|source| LayerError::Tar { source })?
            .into_owned();
        let Some(components) = normalize(&raw_path) else {
            return Err(refused(
                &shown,
                "its path climbs out of the layer with '..'",
            ));
        };
        let meta = read_meta(entry, &shown)?;

        let Some((name, parent)) = components.split_last() else {
            // The archive's own root ("./"): only a directory makes sense there.
            if kind != EntryType::Directory {
                return Err(refused(
                    &shown,
                    "it names the layer root but is not a directory",
                ));
            }
            let root = Rc::clone(&self.root);
            self.apply_dir_meta(&shown, &root, &meta)?;
            self.dir_times.push((Vec::new(), meta.mtime));
            return Ok(());
        };

        match classify(name) {
            Whiteout::None => {}
            Whiteout::Meta => {
                tracing::debug!(entry = %shown, "skipping aufs metadata entry");
                return Ok(());
            }
            Whiteout::Opaque => {
                let dir = self.parent(&shown, parent)?;
                return set_fd_xattr(&dir, OsStr::new(OVERLAY_OPAQUE_XATTR), b"y")
                    .map_err(|source| entry_error(&shown, "mark the directory opaque (needs root and a file system with trusted xattrs)", source));
            }
            Whiteout::Delete(target) => {
                if target.is_empty() || target == "." || target == ".." {
                    return Err(refused(&shown, "it is a whiteout without a valid name"));
                }
                let dir = self.parent(&shown, parent)?;
                self.clear(&shown, &dir, target, false)?;
                mknodat(&*dir, target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(
                    |e| entry_error(&shown, "create the overlay whiteout device", e.into()),
                )?;
                return self.chown_at(&shown, &dir, target, &meta);
            }
        }

        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let dir = self.parent(&shown, parent)?;
                self.clear(&shown, &dir, name, false)?;
                let fd = openat(
                    &*dir,
                    name.as_os_str(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| entry_error(&shown, "create the file", e.into()))?;
                let mut file = File::from(fd);
                io::copy(entry, &mut file)
                    .map_err(|source| entry_error(&shown, "write the file's contents", source))?;
                self.apply_fd_meta(&shown, &file, &meta)?;
                futimens(&file, &meta.mtime, &meta.mtime)
                    .map_err(|e| entry_error(&shown, "set the file's times", e.into()))?;
            }
            EntryType::Directory => {
                let dir = self.parent(&shown, parent)?;
                if !self.clear(&shown, &dir, name, true)? {
                    mkdirat(&*dir, name.as_os_str(), Mode::from_bits_truncate(0o700))
                        .map_err(|e| entry_error(&shown, "create the directory", e.into()))?;
                }
                let fd = open_dir(&dir, name)
                    .map_err(|e| entry_error(&shown, "open the directory", e.into()))?;
                self.apply_dir_meta(&shown, &fd, &meta)?;
                self.dir_times.push((components.clone(), meta.mtime));
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|source| LayerError::Tar { source })?
                    .ok_or_else(|| refused(&shown, "it is a symbolic link without a target"))?
                    .into_owned();
                let dir = self.parent(&shown, parent)?;
                self.clear(&shown, &dir, name, false)?;
                symlinkat(&target, &*dir, name.as_os_str())
                    .map_err(|e| entry_error(&shown, "create the symbolic link", e.into()))?;
                self.chown_at(&shown, &dir, name, &meta)?;
                self.set_path_xattrs(&shown, &dir, name, &meta)?;
                utimensat(
                    &*dir,
                    name.as_os_str(),
                    &meta.mtime,
                    &meta.mtime,
                    UtimensatFlags::NoFollowSymlink,
                )
                .map_err(|e| entry_error(&shown, "set the symbolic link's times", e.into()))?;
            }
            EntryType::Link => {
                let target_raw = entry
                    .link_name()
                    .map_err(|source| LayerError::Tar { source })?
                    .ok_or_else(|| refused(&shown, "it is a hard link without a target"))?
                    .into_owned();
                let target = normalize(&target_raw).ok_or_else(|| {
                    refused(
                        &shown,
                        "its hard link target climbs out of the layer with '..'",
                    )
                })?;
                let Some((target_name, target_parent)) = target.split_last() else {
                    return Err(refused(&shown, "it is a hard link to the layer root"));
                };
                if target == components {
                    // A link to itself: the file is already there.
                    return Ok(());
                }
                let target_dir = self.existing_parent(&shown, target_parent, &target)?;
                let dir = self.parent(&shown, parent)?;
                self.clear(&shown, &dir, name, false)?;
                // No AT_SYMLINK_FOLLOW: a link to a symbolic link links the symbolic link itself.
                linkat(
                    &*target_dir,
                    target_name.as_os_str(),
                    &*dir,
                    name.as_os_str(),
                    AtFlags::empty(),
                )
                .map_err(|e| match e {
                    Errno::ENOENT => refused(
                        &shown,
                        &format!(
                            "its hard link target {} is not in this layer",
                            join(&target)
                        ),
                    ),
                    e => entry_error(
                        &shown,
                        &format!("create a hard link to {}", join(&target)),
                        e.into(),
                    ),
                })?;
                // A hard link shares its target's inode, whose metadata its own entry set.
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (sflag, dev) = match kind {
                    EntryType::Fifo => (SFlag::S_IFIFO, 0),
                    _ => {
                        let major = entry
                            .header()
                            .device_major()
                            .map_err(|source| LayerError::Tar { source })?;
                        let minor = entry
                            .header()
                            .device_minor()
                            .map_err(|source| LayerError::Tar { source })?;
                        let dev =
                            makedev(u64::from(major.unwrap_or(0)), u64::from(minor.unwrap_or(0)));
                        (
                            if kind == EntryType::Char {
                                SFlag::S_IFCHR
                            } else {
                                SFlag::S_IFBLK
                            },
                            dev,
                        )
                    }
                };
                let dir = self.parent(&shown, parent)?;
                self.clear(&shown, &dir, name, false)?;
                mknodat(
                    &*dir,
                    name.as_os_str(),
                    sflag,
                    Mode::from_bits_truncate(0o600),
                    dev,
                )
                .map_err(|e| {
                    entry_error(
                        &shown,
                        "create the device node or fifo (needs root)",
                        e.into(),
                    )
                })?;
                self.chown_at(&shown, &dir, name, &meta)?;
                // The node was just created by us, so following is safe: it is not a symlink.
                fchmodat(
                    &*dir,
                    name.as_os_str(),
                    Mode::from_bits_truncate(meta.mode),
                    FchmodatFlags::FollowSymlink,
                )
                .map_err(|e| entry_error(&shown, "set the mode", e.into()))?;
                self.set_path_xattrs(&shown, &dir, name, &meta)?;
                utimensat(
                    &*dir,
                    name.as_os_str(),
                    &meta.mtime,
                    &meta.mtime,
                    UtimensatFlags::NoFollowSymlink,
                )
                .map_err(|e| entry_error(&shown, "set the times", e.into()))?;
            }
            other => {
                return Err(LayerError::UnsupportedEntry {
                    entry: shown,
                    kind: format!("{other:?}"),
                });
            }
        }
        Ok(())
    }

    /// The directory that holds an entry, creating missing directories (0755, as docker does).
    fn parent(&mut self, shown: &str, components: &[OsString]) -> Result<Rc<OwnedFd>, LayerError> {
        if let Some((cached, fd)) = &self.parent_cache {
            if cached.as_slice() == components {
                return Ok(Rc::clone(fd));
            }
        }
        let fd = self.walk(shown, "parent", components, true)?;
        self.parent_cache = Some((components.to_vec(), Rc::clone(&fd)));
        Ok(fd)
    }

    /// The directory that holds a hard link's target, which must already exist.
    fn existing_parent(
        &self,
        shown: &str,
        components: &[OsString],
        target: &[OsString],
    ) -> Result<Rc<OwnedFd>, LayerError> {
        match self.walk(shown, "hard link target's parent", components, false) {
            Ok(fd) => Ok(fd),
            Err(LayerError::Entry { source, .. })
                if source.raw_os_error() == Some(libc::ENOENT) =>
            {
                Err(refused(
                    shown,
                    &format!("its hard link target {} is not in this layer", join(target)),
                ))
            }
            Err(e) => Err(e),
        }
    }

    /// Opens `components` below the root one at a time, never following a symbolic link.
    fn walk(
        &self,
        shown: &str,
        role: &str,
        components: &[OsString],
        create: bool,
    ) -> Result<Rc<OwnedFd>, LayerError> {
        let mut current: Rc<OwnedFd> = Rc::clone(&self.root);
        for (i, component) in components.iter().enumerate() {
            let next = match open_dir(&current, component) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) if create => {
                    match mkdirat(
                        &*current,
                        component.as_os_str(),
                        Mode::from_bits_truncate(0o755),
                    ) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => {
                            return Err(entry_error(
                                shown,
                                &format!("create {role} {}", join(&components[..=i])),
                                e.into(),
                            ));
                        }
                    }
                    open_dir(&current, component).map_err(|e| {
                        entry_error(
                            shown,
                            &format!("open {role} {}", join(&components[..=i])),
                            e.into(),
                        )
                    })?
                }
                Err(e) => {
                    let here = join(&components[..=i]);
                    let is_symlink = fstatat(
                        &*current,
                        component.as_os_str(),
                        AtFlags::AT_SYMLINK_NOFOLLOW,
                    )
                    .is_ok_and(|st| {
                        SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK
                    });
                    if is_symlink {
                        return Err(refused(
                            shown,
                            &format!(
                                "its {role} {here} is a symbolic link, and entries are never placed through symbolic links"
                            ),
                        ));
                    }
                    return Err(entry_error(shown, &format!("open {role} {here}"), e.into()));
                }
            };
            current = Rc::new(next);
        }
        Ok(current)
    }

    /// Makes way for a new entry called `name` in `dir`: removes what is there, except an
    /// existing directory when the new entry is a directory too (then returns true, and the
    /// directory is kept with its contents, as tar does).
    fn clear(
        &mut self,
        shown: &str,
        dir: &OwnedFd,
        name: &OsStr,
        new_is_dir: bool,
    ) -> Result<bool, LayerError> {
        let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(false),
            Err(e) => return Err(entry_error(shown, "inspect the existing entry", e.into())),
        };
        let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        if is_dir && new_is_dir {
            return Ok(true);
        }
        if is_dir {
            self.parent_cache = None;
            remove_all_at(dir, name)
                .map_err(|e| entry_error(shown, "replace the existing directory", e.into()))?;
        } else {
            unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)
                .map_err(|e| entry_error(shown, "replace the existing entry", e.into()))?;
        }
        Ok(false)
    }

    fn apply_dir_meta(&self, shown: &str, fd: &OwnedFd, meta: &Meta) -> Result<(), LayerError> {
        let file = File::from(
            fd.try_clone()
                .map_err(|source| entry_error(shown, "duplicate a descriptor", source))?,
        );
        self.apply_fd_meta(shown, &file, meta)
    }

    /// Owner, then mode (chown clears setuid and setgid bits), then xattrs.
    fn apply_fd_meta(&self, shown: &str, file: &File, meta: &Meta) -> Result<(), LayerError> {
        if self.apply_owner {
            fchown(
                file,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )
            .map_err(|e| entry_error(shown, "set the owner", e.into()))?;
        }
        fchmod(file, Mode::from_bits_truncate(meta.mode))
            .map_err(|e| entry_error(shown, "set the mode", e.into()))?;
        for (key, value) in &meta.xattrs {
            xattr_result(shown, key, file.set_xattr(key, value))?;
        }
        Ok(())
    }

    fn chown_at(
        &self,
        shown: &str,
        dir: &OwnedFd,
        name: &OsStr,
        meta: &Meta,
    ) -> Result<(), LayerError> {
        if !self.apply_owner {
            return Ok(());
        }
        fchownat(
            dir,
            name,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| entry_error(shown, "set the owner", e.into()))
    }

    /// Xattrs on entries that cannot be opened for writing (symlinks, devices, fifos): through
    /// the parent's descriptor in /proc with lsetxattr, which does not follow the final name.
    fn set_path_xattrs(
        &self,
        shown: &str,
        dir: &OwnedFd,
        name: &OsStr,
        meta: &Meta,
    ) -> Result<(), LayerError> {
        if meta.xattrs.is_empty() {
            return Ok(());
        }
        let path = Path::new("/proc/self/fd")
            .join(dir.as_raw_fd().to_string())
            .join(name);
        for (key, value) in &meta.xattrs {
            xattr_result(shown, key, xattr::set(&path, key, value))?;
        }
        Ok(())
    }

    /// Sets directory times last, newest entries first; a directory replaced or removed by a
    /// later entry is skipped.
    fn finish_dir_times(&mut self) {
        self.parent_cache = None;
        for (components, mtime) in self.dir_times.iter().rev() {
            let mut current = match self.root.try_clone() {
                Ok(fd) => fd,
                Err(_) => return,
            };
            let mut found = true;
            for component in components {
                match open_dir(&current, component) {
                    Ok(fd) => current = fd,
                    Err(_) => {
                        found = false;
                        break;
                    }
                }
            }
            if !found {
                continue;
            }
            if let Err(e) = futimens(&current, mtime, mtime) {
                tracing::warn!(dir = %join(components), error = %e, "cannot set directory times");
            }
        }
    }
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, shown: &str) -> Result<Meta, LayerError> {
    let header = entry.header();
    let mode = header.mode().map_err(|source| LayerError::Tar { source })? & 0o7777;
    let uid = header.uid().map_err(|source| LayerError::Tar { source })?;
    let gid = header.gid().map_err(|source| LayerError::Tar { source })?;
    let mtime_secs = header
        .mtime()
        .map_err(|source| LayerError::Tar { source })?;
    let (uid, gid) = match (u32::try_from(uid), u32::try_from(gid)) {
        (Ok(u), Ok(g)) => (u, g),
        _ => return Err(refused(shown, "its owner does not fit in 32 bits")),
    };
    let mut mtime = TimeSpec::new(i64::try_from(mtime_secs).unwrap_or(i64::MAX), 0);
    let mut xattrs = Vec::new();
    if let Some(pax) = entry
        .pax_extensions()
        .map_err(|source| LayerError::Tar { source })?
    {
        for ext in pax {
            let ext = ext.map_err(|source| LayerError::Tar { source })?;
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                if name.starts_with("trusted.overlay.") {
                    tracing::warn!(entry = %shown, xattr = name, "ignoring overlay xattr from the layer tar");
                    continue;
                }
                xattrs.push((OsString::from(name), ext.value_bytes().to_vec()));
            } else if key == "mtime" {
                if let Some(t) = ext.value().ok().and_then(parse_pax_time) {
                    mtime = t;
                }
            }
        }
    }
    Ok(Meta {
        mode,
        uid,
        gid,
        mtime,
        xattrs,
    })
}

/// A PAX time, "SECONDS[.FRACTION]" (negative times are clamped to the epoch).
fn parse_pax_time(s: &str) -> Option<TimeSpec> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nanos = if digits.is_empty() {
        0
    } else {
        let n: i64 = digits.parse().ok()?;
        n * 10_i64.pow(9 - digits.len() as u32)
    };
    if secs < 0 {
        return Some(TimeSpec::new(0, 0));
    }
    Some(TimeSpec::new(secs, nanos))
}

fn open_dir(dir: &OwnedFd, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn set_fd_xattr(fd: &OwnedFd, name: &OsStr, value: &[u8]) -> io::Result<()> {
    let file = File::from(fd.try_clone()?);
    file.set_xattr(name, value)
}

/// Xattrs the file system does not support or forbids (`user.*` on symlinks) are skipped with a
/// warning, as docker does; anything else fails the entry.
fn xattr_result(shown: &str, key: &OsStr, result: io::Result<()>) -> Result<(), LayerError> {
    match result {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::EPERM)) => {
            tracing::warn!(entry = %shown, xattr = %key.to_string_lossy(), error = %e, "skipping xattr");
            Ok(())
        }
        Err(e) => Err(entry_error(
            shown,
            &format!("set xattr {}", key.to_string_lossy()),
            e,
        )),
    }
}

/// Removes `name` in `dir` and everything below it, never following symbolic links.
fn remove_all_at(dir: &OwnedFd, name: &OsStr) -> nix::Result<()> {
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::EISDIR) => {}
        Err(e) => return Err(e),
    }
    let fd = open_dir(dir, name)?;
    let mut listing = nix::dir::Dir::from_fd(open_dir(dir, name)?)?;
    let mut children = Vec::new();
    for item in listing.iter() {
        let item = item?;
        let child = item.file_name().to_bytes();
        if child != b"." && child != b".." {
            children.push(OsStr::from_bytes(child).to_owned());
        }
    }
    drop(listing);
    for child in children {
        remove_all_at(&fd, &child)?;
    }
    unlinkat(dir, name, UnlinkatFlags::RemoveDir)
}

fn refused(entry: &str, reason: &str) -> LayerError {
    LayerError::Refused {
        entry: entry.to_owned(),
        reason: reason.to_owned(),
    }
}

fn entry_error(entry: &str, action: &str, source: io::Error) -> LayerError {
    LayerError::Entry {
        entry: entry.to_owned(),
        action: action.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_keeps_paths_inside() {
        let check = |input: &str, expected: Option<&str>| {
            let got = normalize(Path::new(input)).map(|c| join(&c));
            assert_eq!(got.as_deref(), expected, "input {input:?}");
        };
        check("a/b", Some("a/b"));
        check("./a/./b/", Some("a/b"));
        check("/etc/passwd", Some("etc/passwd"));
        check("a/../b", Some("b"));
        check("./", Some(""));
        check("../../etc/x", None);
        check("/abs/../../x", None);
        check("a/../../x", None);
    }

    #[test]
    fn whiteout_names_are_classified() {
        assert_eq!(classify(OsStr::new(".wh..wh..opq")), Whiteout::Opaque);
        assert_eq!(classify(OsStr::new(".wh..wh.plnk")), Whiteout::Meta);
        assert_eq!(
            classify(OsStr::new(".wh.foo")),
            Whiteout::Delete(OsStr::new("foo"))
        );
        assert_eq!(classify(OsStr::new("foo.wh.")), Whiteout::None);
        assert_eq!(classify(OsStr::new("plain")), Whiteout::None);
    }

    #[test]
    fn pax_times_parse() {
        let t = parse_pax_time("1700000000.5").expect("parse");
        assert_eq!((t.tv_sec(), t.tv_nsec()), (1_700_000_000, 500_000_000));
        let t = parse_pax_time("12").expect("parse");
        assert_eq!((t.tv_sec(), t.tv_nsec()), (12, 0));
        assert!(parse_pax_time("x.1").is_none());
    }
}
