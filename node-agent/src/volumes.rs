//! A pod's volumes on the node, under `POD_DIR/volumes/NAME`: emptyDir (a directory, or a tmpfs
//! for `medium: Memory`), hostPath (checked or created according to its `type`, as the kubelet
//! does) and ConfigMap/Secret projections (a Secret's files on a tmpfs of their own). Preparing
//! needs root (mounts); [`cleanup`] unmounts.
//!
//! ConfigMap and Secret files are written the way the kubelet's atomic writer writes them, so
//! that a container never sees half an update: the files live in a hidden timestamped directory,
//! `..data` is a symlink to it that is swapped with a rename, and each visible name is a symlink
//! through `..data`. Re-running with changed data writes a new directory and swaps the link.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use api::core::{Pod, Volume};
use api::scheme::parse_quantity_bytes;

use crate::podspec::{PodSpecError, References};

/// The mode of ConfigMap and Secret files when neither the item nor `defaultMode` says (0644).
pub const DEFAULT_FILE_MODE: u32 = 0o644;

/// The link that points at the current data directory of a ConfigMap or Secret volume.
pub const DATA_LINK: &str = "..data";

/// One file of a ConfigMap or Secret volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub content: Vec<u8>,
    pub mode: u32,
}

/// Where volume `volume` of the pod lives on the host: its hostPath, or `pod_dir/volumes/NAME`.
pub fn volume_path(pod_dir: &Path, volume: &Volume) -> Result<PathBuf, PodSpecError> {
    if let Some(host) = &volume.host_path {
        return Ok(PathBuf::from(&host.path));
    }
    if volume.empty_dir.is_some() || volume.config_map.is_some() || volume.secret.is_some() {
        return Ok(pod_dir.join("volumes").join(&volume.name));
    }
    Err(PodSpecError::UnsupportedVolume {
        volume: volume.name.clone(),
        kind: volume_kind(volume),
    })
}

/// Creates or refreshes every volume of the pod. Idempotent: run it on every sync, and changed
/// ConfigMap or Secret data replaces the old files atomically.
pub fn prepare_volumes(pod_dir: &Path, pod: &Pod, refs: &References) -> Result<(), PodSpecError> {
    let spec = pod.spec.as_ref().ok_or(PodSpecError::NoSpec)?;
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    for volume in spec.volumes.iter().flatten() {
        let path = volume_path(pod_dir, volume)?;
        let io_err = |action: &'static str, path: &Path| {
            let volume = volume.name.clone();
            let path = path.to_path_buf();
            move |source| PodSpecError::VolumeIo {
                volume,
                action,
                path,
                source,
            }
        };
        if let Some(src) = &volume.empty_dir {
            fs::create_dir_all(&path).map_err(io_err("creating", &path))?;
            if src.medium.as_deref() == Some("Memory") {
                mount_tmpfs(
                    &volume.name,
                    &path,
                    src.size_limit.as_ref().map(|q| q.0.as_str()),
                )?;
            } else if let Some(medium) = src.medium.as_deref().filter(|m| !m.is_empty()) {
                return Err(PodSpecError::InvalidVolume {
                    volume: volume.name.clone(),
                    message: format!("unsupported emptyDir medium {medium:?}: use \"\" or Memory"),
                });
            }
            // Any user of the pod may write an emptyDir, as with the kubelet.
            fs::set_permissions(&path, fs::Permissions::from_mode(0o777))
                .map_err(io_err("setting the mode of", &path))?;
        } else if let Some(src) = &volume.host_path {
            check_host_path(&volume.name, &path, src.type_.as_deref().unwrap_or(""))?;
        } else if let Some(src) = &volume.config_map {
            let payload = match refs.config_maps.get(&src.name) {
                Some(cm) => {
                    let mut data: BTreeMap<String, Vec<u8>> = cm
                        .data
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                        .collect();
                    for (k, v) in cm.binary_data.iter().flatten() {
                        data.insert(k.clone(), v.0.clone());
                    }
                    let source = ("ConfigMap", namespace, src.name.as_str());
                    project(
                        &volume.name,
                        source,
                        &data,
                        src.items.as_deref(),
                        src.default_mode,
                        src.optional,
                    )?
                }
                None if src.optional.unwrap_or(false) => BTreeMap::new(),
                None => return Err(missing("configmap", namespace, &src.name)),
            };
            write_payload(&path, &payload).map_err(io_err("writing", &path))?;
        } else if let Some(src) = &volume.secret {
            // Secrets live in memory, never on the node's disk, as with the kubelet.
            fs::create_dir_all(&path).map_err(io_err("creating", &path))?;
            mount_tmpfs(&volume.name, &path, None)?;
            let name = src.secret_name.as_deref().unwrap_or("");
            let payload = match refs.secrets.get(name) {
                Some(secret) => {
                    let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
                    for (k, v) in secret.string_data.iter().flatten() {
                        data.insert(k.clone(), v.clone().into_bytes());
                    }
                    for (k, v) in secret.data.iter().flatten() {
                        data.insert(k.clone(), v.0.clone());
                    }
                    let source = ("Secret", namespace, name);
                    project(
                        &volume.name,
                        source,
                        &data,
                        src.items.as_deref(),
                        src.default_mode,
                        src.optional,
                    )?
                }
                None if src.optional.unwrap_or(false) => BTreeMap::new(),
                None => return Err(missing("secret", namespace, name)),
            };
            write_payload(&path, &payload).map_err(io_err("writing", &path))?;
        }
    }
    Ok(())
}

/// Unmounts whatever [`prepare_volumes`] mounted under `pod_dir/volumes` (memory-backed
/// emptyDirs). Idempotent; call it before removing the pod directory.
pub fn cleanup(pod_dir: &Path) -> Result<(), PodSpecError> {
    let dir = pod_dir.join("volumes");
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(PodSpecError::VolumeIo {
                volume: "*".into(),
                action: "listing",
                path: dir,
                source,
            })
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        // Stacked mounts (a tmpfs mounted twice) come off one at a time.
        while runtime::container::is_mount_point(&path) {
            nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH).map_err(|e| {
                PodSpecError::VolumeIo {
                    volume: entry.file_name().to_string_lossy().into_owned(),
                    action: "unmounting",
                    path: path.clone(),
                    source: io::Error::from(e),
                }
            })?;
        }
    }
    Ok(())
}

/// Writes `payload` (relative path → file) into `dir` through a fresh hidden directory and the
/// `..data` link; returns false when the current files already match and nothing was written.
pub fn write_payload(dir: &Path, payload: &BTreeMap<String, FileEntry>) -> io::Result<bool> {
    for path in payload.keys() {
        if !is_clean_relative(path) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid file path {path:?}: use a relative path without '..'"),
            ));
        }
    }
    fs::create_dir_all(dir)?;
    let link = dir.join(DATA_LINK);
    let old = fs::read_link(&link).ok();
    if let Some(old) = &old {
        if matches_payload(&dir.join(old), payload) {
            return Ok(false);
        }
    }

    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let new_name = format!("..{stamp}.{:08x}", rand::random::<u32>());
    let new_dir = dir.join(&new_name);
    fs::create_dir(&new_dir)?;
    for (path, entry) in payload {
        let target = new_dir.join(path);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&target, &entry.content)?;
        fs::set_permissions(&target, fs::Permissions::from_mode(entry.mode & 0o777))?;
    }
    let tmp_link = dir.join("..data_tmp");
    match fs::remove_file(&tmp_link) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::os::unix::fs::symlink(&new_name, &tmp_link)?;
    fs::rename(&tmp_link, &link)?;

    let visible: BTreeSet<String> = payload
        .keys()
        .filter_map(|p| p.split('/').find(|c| !c.is_empty() && *c != "."))
        .map(str::to_string)
        .collect();
    for name in &visible {
        let path = dir.join(name);
        if fs::symlink_metadata(&path).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA_LINK).join(name), &path)?;
        }
    }
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") {
            continue;
        }
        let is_link = entry.file_type().map(|t| t.is_symlink()).unwrap_or(false);
        if is_link && !visible.contains(&name) {
            fs::remove_file(entry.path())?;
        }
    }
    if let Some(old) = old {
        let old_dir = dir.join(old);
        if old_dir != new_dir {
            fs::remove_dir_all(&old_dir).or_else(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
        }
    }
    Ok(true)
}

/// The files of a ConfigMap or Secret volume: every key (or the listed `items`), with the item's
/// mode, else `defaultMode`, else 0644.
fn project(
    volume: &str,
    (kind, namespace, name): (&'static str, &str, &str),
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[api::core::KeyToPath]>,
    default_mode: Option<i32>,
    optional: Option<bool>,
) -> Result<BTreeMap<String, FileEntry>, PodSpecError> {
    let mode_of = |mode: Option<i32>| -> Result<u32, PodSpecError> {
        match mode.or(default_mode) {
            None => Ok(DEFAULT_FILE_MODE),
            Some(m) if (0..=0o777).contains(&m) => Ok(m as u32),
            Some(m) => Err(PodSpecError::InvalidVolume {
                volume: volume.to_string(),
                message: format!(
                    "file mode {m} is out of range: use an octal mode from 0000 to 0777"
                ),
            }),
        }
    };
    let mut out = BTreeMap::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (key, content) in data {
                out.insert(
                    key.clone(),
                    FileEntry {
                        content: content.clone(),
                        mode: mode_of(None)?,
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                if !is_clean_relative(&item.path) {
                    return Err(PodSpecError::InvalidVolume {
                        volume: volume.to_string(),
                        message: format!(
                            "item path {:?} must be relative, without '..'",
                            item.path
                        ),
                    });
                }
                match data.get(&item.key) {
                    Some(content) => {
                        out.insert(
                            item.path.clone(),
                            FileEntry {
                                content: content.clone(),
                                mode: mode_of(item.mode)?,
                            },
                        );
                    }
                    None if optional.unwrap_or(false) => {}
                    None => {
                        return Err(PodSpecError::MissingKey {
                            kind,
                            namespace: namespace.to_string(),
                            name: name.to_string(),
                            key: item.key.clone(),
                        })
                    }
                }
            }
        }
    }
    Ok(out)
}

fn matches_payload(dir: &Path, payload: &BTreeMap<String, FileEntry>) -> bool {
    let files = walkdir_files(dir, dir);
    if files.len() != payload.len() {
        return false;
    }
    payload.iter().all(|(path, entry)| {
        let file = dir.join(path);
        let same_mode = fs::metadata(&file)
            .map(|m| m.permissions().mode() & 0o777 == entry.mode & 0o777)
            .unwrap_or(false);
        same_mode && fs::read(&file).map(|c| c == entry.content).unwrap_or(false)
    })
}

/// Regular files under `dir`, relative to `base`.
fn walkdir_files(dir: &Path, base: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => out.extend(walkdir_files(&path, base)),
            Ok(_) => out.push(path.strip_prefix(base).unwrap_or(&path).to_path_buf()),
            Err(_) => {}
        }
    }
    out
}

fn is_clean_relative(path: &str) -> bool {
    let p = Path::new(path);
    !path.is_empty()
        && !path.starts_with("..")
        && p.components().all(|c| matches!(c, Component::Normal(_)))
}

fn check_host_path(volume: &str, path: &Path, kind: &str) -> Result<(), PodSpecError> {
    let type_error = |message: &str| PodSpecError::HostPathType {
        volume: volume.to_string(),
        path: path.to_path_buf(),
        message: message.to_string(),
    };
    let io_err = |action: &'static str| {
        move |source| PodSpecError::VolumeIo {
            volume: volume.to_string(),
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    if !path.is_absolute() {
        return Err(PodSpecError::InvalidVolume {
            volume: volume.to_string(),
            message: format!("hostPath {} must be absolute", path.display()),
        });
    }
    let meta = fs::metadata(path).ok();
    let file_type = meta.as_ref().map(|m| m.file_type());
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => match file_type {
            None => {
                fs::create_dir_all(path).map_err(io_err("creating"))?;
                fs::set_permissions(path, fs::Permissions::from_mode(0o755))
                    .map_err(io_err("setting the mode of"))
            }
            Some(t) if t.is_dir() => Ok(()),
            Some(_) => Err(type_error("is not a directory")),
        },
        "Directory" => match file_type {
            Some(t) if t.is_dir() => Ok(()),
            Some(_) => Err(type_error("is not a directory")),
            None => Err(type_error("does not exist")),
        },
        "FileOrCreate" => match file_type {
            // Like the kubelet, the parent directory must exist already.
            None => fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .and_then(|f| f.set_permissions(fs::Permissions::from_mode(0o644)))
                .map_err(io_err("creating")),
            Some(t) if t.is_file() => Ok(()),
            Some(_) => Err(type_error("is not a file")),
        },
        "File" => match file_type {
            Some(t) if t.is_file() => Ok(()),
            Some(_) => Err(type_error("is not a file")),
            None => Err(type_error("does not exist")),
        },
        "Socket" => match file_type {
            Some(t) if t.is_socket() => Ok(()),
            Some(_) => Err(type_error("is not a socket file")),
            None => Err(type_error("does not exist")),
        },
        "CharDevice" => match file_type {
            Some(t) if t.is_char_device() => Ok(()),
            Some(_) => Err(type_error("is not a character device")),
            None => Err(type_error("does not exist")),
        },
        "BlockDevice" => match file_type {
            Some(t) if t.is_block_device() => Ok(()),
            Some(_) => Err(type_error("is not a block device")),
            None => Err(type_error("does not exist")),
        },
        other => Err(PodSpecError::InvalidVolume {
            volume: volume.to_string(),
            message: format!(
                "unknown hostPath type {other:?}: use \"\", DirectoryOrCreate, Directory, FileOrCreate, File, Socket, CharDevice or BlockDevice"
            ),
        }),
    }
}

fn mount_tmpfs(volume: &str, path: &Path, size_limit: Option<&str>) -> Result<(), PodSpecError> {
    if runtime::container::is_mount_point(path) {
        return Ok(());
    }
    let mut options = "mode=0777".to_string();
    if let Some(limit) = size_limit {
        let bytes = parse_quantity_bytes(limit).map_err(|message| PodSpecError::InvalidVolume {
            volume: volume.to_string(),
            message: format!("invalid sizeLimit {limit:?}: {message}"),
        })?;
        if bytes > 0 {
            options.push_str(&format!(",size={bytes}"));
        }
    }
    use nix::mount::{mount, MsFlags};
    mount(
        Some("tmpfs"),
        path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .map_err(|e| PodSpecError::VolumeIo {
        volume: volume.to_string(),
        action: "mounting a tmpfs on",
        path: path.to_path_buf(),
        source: io::Error::from(e),
    })
}

fn missing(kind: &'static str, namespace: &str, name: &str) -> PodSpecError {
    PodSpecError::MissingObject {
        kind,
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

/// The name of the volume source that is set, e.g. `nfs` or `persistentVolumeClaim`.
fn volume_kind(volume: &Volume) -> String {
    let json = serde_json::to_value(volume).unwrap_or_default();
    let kinds: Vec<String> = json
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| *k != "name" && !v.is_null())
        .map(|(k, _)| k.clone())
        .collect();
    if kinds.is_empty() {
        "(none)".to_string()
    } else {
        kinds.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::core::{ConfigMap, Secret};

    fn pod(volumes: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"volumes": volumes, "containers": [{"name": "c"}]}
        }))
        .expect("test pod")
    }

    fn refs(cm_data: serde_json::Value) -> References {
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "cfg"}, "data": cm_data, "binaryData": {"blob": "AAEC"}
        }))
        .expect("cm");
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "tls"}, "data": {"tls.key": "a2V5"}
        }))
        .expect("secret");
        References {
            config_maps: BTreeMap::from([("cfg".to_string(), cm)]),
            secrets: BTreeMap::from([("tls".to_string(), secret)]),
        }
    }

    /// A temporary pod directory whose mounts come off on drop, also when a test fails.
    struct PodDir(tempfile::TempDir);

    impl PodDir {
        fn new() -> PodDir {
            PodDir(tempfile::tempdir().expect("tempdir"))
        }

        fn path(&self) -> &Path {
            self.0.path()
        }
    }

    impl Drop for PodDir {
        fn drop(&mut self) {
            let _ = cleanup(self.0.path());
        }
    }

    fn is_root() -> bool {
        let root = nix::unistd::Uid::effective().is_root();
        if !root {
            eprintln!("skipping: volume mounts need root");
        }
        root
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn config_map_and_secret_files_update_atomically() {
        if !is_root() {
            return;
        }
        let dir = PodDir::new();
        let p = pod(serde_json::json!([
            {"name": "all", "configMap": {"name": "cfg", "defaultMode": 0o600}},
            {"name": "some", "configMap": {"name": "cfg", "items": [
                {"key": "a", "path": "sub/dir/a.txt", "mode": 0o400}]}},
            {"name": "key", "secret": {"secretName": "tls"}},
            {"name": "opt", "secret": {"secretName": "absent", "optional": true}}
        ]));
        prepare_volumes(
            dir.path(),
            &p,
            &refs(serde_json::json!({"a": "one", "b": "two"})),
        )
        .expect("prepare");
        let vols = dir.path().join("volumes");
        assert_eq!(fs::read_to_string(vols.join("all/a")).expect("a"), "one");
        assert_eq!(
            fs::read(vols.join("all/blob")).expect("blob"),
            vec![0, 1, 2]
        );
        assert_eq!(mode(&vols.join("all/b")), 0o600);
        assert!(fs::symlink_metadata(vols.join("all/a"))
            .expect("a")
            .is_symlink());
        assert_eq!(
            fs::read_to_string(vols.join("some/sub/dir/a.txt")).expect("item"),
            "one"
        );
        assert_eq!(mode(&vols.join("some/sub/dir/a.txt")), 0o400);
        assert!(!vols.join("some/b").exists());
        assert_eq!(
            fs::read_to_string(vols.join("key/tls.key")).expect("key"),
            "key"
        );
        assert_eq!(mode(&vols.join("key/tls.key")), 0o644);
        assert!(vols.join("opt").is_dir());

        let first = fs::read_link(vols.join("all/..data")).expect("link");
        // Same data: nothing is rewritten.
        prepare_volumes(
            dir.path(),
            &p,
            &refs(serde_json::json!({"a": "one", "b": "two"})),
        )
        .expect("again");
        assert_eq!(fs::read_link(vols.join("all/..data")).expect("link"), first);
        // Changed data: a new directory, a removed key disappears, the old directory is gone.
        prepare_volumes(dir.path(), &p, &refs(serde_json::json!({"a": "uno"}))).expect("update");
        let second = fs::read_link(vols.join("all/..data")).expect("link");
        assert_ne!(second, first);
        assert_eq!(fs::read_to_string(vols.join("all/a")).expect("a"), "uno");
        assert!(fs::symlink_metadata(vols.join("all/b")).is_err());
        assert!(!vols.join("all").join(&first).exists());

        assert!(
            runtime::container::is_mount_point(&vols.join("key")),
            "secrets are on a tmpfs"
        );
        cleanup(dir.path()).expect("cleanup");
        assert!(!runtime::container::is_mount_point(&vols.join("key")));
    }

    #[test]
    fn bad_projections_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases = [
            (
                serde_json::json!([{"name": "v", "configMap": {"name": "cfg", "items": [{"key": "zz", "path": "z"}]}}]),
                "couldn't find key zz",
            ),
            (
                serde_json::json!([{"name": "v", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "../x"}]}}]),
                "must be relative",
            ),
            (
                serde_json::json!([{"name": "v", "configMap": {"name": "cfg", "defaultMode": 4096}}]),
                "out of range",
            ),
            (
                serde_json::json!([{"name": "v", "configMap": {"name": "gone"}}]),
                "not found",
            ),
            (
                serde_json::json!([{"name": "v", "nfs": {"server": "s", "path": "/"}}]),
                "unsupported volume type nfs",
            ),
            (
                serde_json::json!([{"name": "v", "emptyDir": {"medium": "HugePages"}}]),
                "unsupported emptyDir medium",
            ),
            (
                serde_json::json!([{"name": "v", "hostPath": {"path": "/x", "type": "Weird"}}]),
                "unknown hostPath type",
            ),
        ];
        for (volumes, text) in cases {
            let err = prepare_volumes(
                dir.path(),
                &pod(volumes),
                &refs(serde_json::json!({"a": "1"})),
            )
            .expect_err(text);
            assert!(err.to_string().contains(text), "{text}: {err}");
        }
        // An optional missing item is skipped.
        let ok = pod(
            serde_json::json!([{"name": "v", "configMap": {"name": "cfg", "optional": true, "items": [{"key": "zz", "path": "z"}]}}]),
        );
        prepare_volumes(dir.path(), &ok, &refs(serde_json::json!({}))).expect("optional");
    }

    #[test]
    fn host_path_types() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        fs::write(d.join("file"), "x").expect("file");
        let cases: Vec<(PathBuf, &str, Result<(), &str>)> = vec![
            (d.join("new/dir"), "DirectoryOrCreate", Ok(())),
            (d.join("new/dir"), "Directory", Ok(())),
            (
                d.join("file"),
                "DirectoryOrCreate",
                Err("is not a directory"),
            ),
            (d.join("absent"), "Directory", Err("does not exist")),
            (d.join("made"), "FileOrCreate", Ok(())),
            (d.join("made"), "File", Ok(())),
            (d.join("no/parent"), "FileOrCreate", Err("creating")),
            (d.join("new"), "File", Err("is not a file")),
            (d.join("file"), "Socket", Err("is not a socket")),
            (d.join("anything"), "", Ok(())),
            (PathBuf::from("/dev/null"), "CharDevice", Ok(())),
            (d.join("file"), "BlockDevice", Err("is not a block device")),
        ];
        for (path, kind, want) in cases {
            let got = check_host_path("v", &path, kind);
            match (want, got) {
                (Ok(()), Ok(())) => {}
                (Err(text), Err(e)) => assert!(e.to_string().contains(text), "{kind}: {e}"),
                (w, g) => panic!("{} {kind}: want {w:?}, got {g:?}", path.display()),
            }
        }
        assert!(d.join("new/dir").is_dir());
        assert_eq!(mode(&d.join("made")), 0o644);
    }

    #[test]
    fn empty_dirs_and_memory_backed_ones() {
        let dir = PodDir::new();
        let p = pod(serde_json::json!([
            {"name": "disk", "emptyDir": {}},
            {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "4Mi"}}
        ]));
        let root = nix::unistd::Uid::effective().is_root();
        let result = prepare_volumes(dir.path(), &p, &References::default());
        let mem = dir.path().join("volumes/mem");
        if !root {
            eprintln!("skipping the tmpfs half: not root");
            assert!(result.is_err());
            return;
        }
        result.expect("prepare");
        assert_eq!(mode(&dir.path().join("volumes/disk")), 0o777);
        assert!(runtime::container::is_mount_point(&mem));
        let stat = nix::sys::statvfs::statvfs(&mem).expect("statvfs");
        assert_eq!(stat.blocks() * stat.fragment_size(), 4 << 20);
        // Preparing twice does not stack a second mount.
        prepare_volumes(dir.path(), &p, &References::default()).expect("again");
        cleanup(dir.path()).expect("cleanup");
        assert!(!runtime::container::is_mount_point(&mem));
        cleanup(dir.path()).expect("cleanup is idempotent");
    }
}
