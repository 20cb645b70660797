//! The image store end to end on a real busybox rootfs: import, resolve, tag, rmi, prune, and
//! save/load in docker-archive and oci-archive form, including hand-built archives in the legacy
//! and docker 25+ layouts and, when installed, `skopeo` and `umoci` as judges of our archives.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use runtime::image::{ArchiveFormat, ImageError, ImageStore, ImportOptions, RemoveAction};
use runtime::reference::Reference;
use sha2::{Digest, Sha256};

const BUSYBOX: &str = "/bin/busybox";

/// A rootfs with busybox and its applet links, or None (with a notice) when busybox is absent.
fn busybox_rootfs(parent: &Path) -> Option<PathBuf> {
    if !Path::new(BUSYBOX).exists() {
        eprintln!("NOTICE: {BUSYBOX} is missing (apt-get install busybox-static); test skipped");
        return None;
    }
    let root = parent.join("rootfs");
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "ls", "cat", "echo", "true", "false", "sleep", "id", "hostname",
    ] {
        symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    fs::write(root.join("etc/hostname"), "flotilla\n").unwrap();
    Some(root)
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    store: ImageStore,
}

fn fixture() -> Option<Fixture> {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(tmp.path())?;
    let root = tmp.path().join("root");
    let store = ImageStore::open(&root).unwrap();
    store
        .import_rootfs_dir(&rootfs, &Reference::parse("busybox").unwrap())
        .unwrap();
    Some(Fixture {
        _tmp: tmp,
        root,
        store,
    })
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn never_used(_: &str) -> bool {
    false
}

/// Every member of a tar: (path, content, symlink target).
fn members(archive: &[u8]) -> Vec<(String, Vec<u8>, Option<String>)> {
    let mut out = Vec::new();
    let mut tar = tar::Archive::new(archive);
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let link = entry
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.push((path, data, link));
    }
    out
}

fn build_tar(members: &[(String, Vec<u8>, Option<String>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data, link) in members {
        let mut header = tar::Header::new_ustar();
        header.set_mode(0o644);
        match link {
            Some(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder.append_link(&mut header, path, target).unwrap();
            }
            None if path.ends_with('/') => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder.append_data(&mut header, path, &[][..]).unwrap();
            }
            // The tar crate refuses to write `..`, which is the point of this member: write
            // its name field by hand.
            None if path.contains("..") => {
                header.set_size(data.len() as u64);
                let name = &mut header.as_ustar_mut().unwrap().name;
                name[..path.len()].copy_from_slice(path.as_bytes());
                header.set_cksum();
                builder.append(&header, &data[..]).unwrap();
            }
            None => {
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, path, &data[..]).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

/// The uncompressed layer tar of the imported busybox image.
fn busybox_layer_tar(store: &ImageStore) -> (Vec<u8>, Vec<u8>) {
    let image = store.resolve("busybox").unwrap();
    let config = store.read_blob(&image.id).unwrap();
    let blob = fs::read(store.blob_path(&image.layers[0].digest)).unwrap();
    let mut layer = Vec::new();
    flate2::read::GzDecoder::new(&blob[..])
        .read_to_end(&mut layer)
        .unwrap();
    (config, layer)
}

#[test]
fn import_then_resolve_by_name_and_id() {
    let Some(f) = fixture() else { return };
    let image = f.store.resolve("busybox").unwrap();
    assert_eq!(image.names, ["docker.io/library/busybox:latest"]);
    assert_eq!(image.layers.len(), 1);
    assert_eq!(
        image.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(image.config.os().to_string(), "linux");
    assert_eq!(image.config.architecture().to_string(), "amd64");
    assert_eq!(
        image.config.rootfs().diff_ids(),
        &[image.layers[0].diff_id.clone()]
    );
    assert!(image
        .config
        .config()
        .as_ref()
        .and_then(|c| c.cmd().clone())
        .is_none());
    assert_eq!(image.config.history().as_ref().map(Vec::len), Some(1));

    // The id is the config digest; the layer's diff_id is the digest of the uncompressed tar.
    let (config, layer) = busybox_layer_tar(&f.store);
    assert_eq!(sha256(&config), image.id);
    assert_eq!(sha256(&layer), image.layers[0].diff_id);
    let names: Vec<_> = members(&layer)
        .into_iter()
        .map(|(p, _, l)| (p, l))
        .collect();
    assert!(names.contains(&("bin/busybox".into(), None)), "{names:?}");
    assert!(
        names.contains(&("bin/sh".into(), Some("busybox".into()))),
        "{names:?}"
    );

    let hex = image.id.trim_start_matches("sha256:");
    for query in [
        "busybox",
        "busybox:latest",
        "library/busybox",
        "docker.io/library/busybox:latest",
        &hex[..12],
        &hex[..5],
        hex,
        &image.id,
        &format!("busybox@{}", image.manifest_digest),
    ] {
        let found = f
            .store
            .resolve(query)
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        assert_eq!(found.id, image.id, "{query}");
    }
    match f.store.resolve("busybox:nope") {
        Err(ImageError::NotFound(name)) => assert_eq!(name, "busybox:nope"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        f.store.resolve("0000000"),
        Err(ImageError::NotFound(_))
    ));

    let rows = f.store.list().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].repository.as_str(), rows[0].tag.as_str()),
        ("busybox", "latest")
    );
    assert_eq!(rows[0].id, hex[..12]);
    assert!(rows[0].created.is_some());
    assert_eq!(rows[0].size, image.layers[0].size);

    let history = f.store.history("busybox").unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].id, image.id);
    assert!(history[0].comment.starts_with("Imported from "));

    let inspect = serde_json::to_value(f.store.inspect("busybox").unwrap()).unwrap();
    assert_eq!(inspect["Id"], image.id.as_str());
    assert_eq!(inspect["RepoTags"], serde_json::json!(["busybox:latest"]));
    assert_eq!(
        inspect["RootFS"]["Layers"][0],
        image.layers[0].diff_id.as_str()
    );

    // The store is an OCI layout with the full name as ref.name.
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(f.root.join("images/index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "docker.io/library/busybox:latest"
    );
    assert!(f.root.join("images/oci-layout").exists());
}

#[test]
fn import_tar_applies_changes_and_refuses_garbage() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let tar = build_tar(&[
        ("etc/".into(), Vec::new(), None),
        ("etc/motd".into(), b"hello\n".to_vec(), None),
    ]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let options = ImportOptions {
        changes: vec!["CMD [\"/bin/sh\"]".into(), "ENV A=1".into()],
        message: Some("from a test".into()),
    };
    let image = store
        .import_rootfs_tar(
            &gz[..],
            &Reference::parse("localhost:5000/a/motd:v1").unwrap(),
            &options,
        )
        .unwrap();
    // A gzip input is stored by its uncompressed digest.
    assert_eq!(image.layers[0].diff_id, sha256(&tar));
    let config = image.config.config().clone().unwrap();
    assert_eq!(config.cmd().as_deref(), Some(&["/bin/sh".to_owned()][..]));
    assert_eq!(config.env().as_deref(), Some(&["A=1".to_owned()][..]));
    assert_eq!(
        store.history("localhost:5000/a/motd:v1").unwrap()[0].comment,
        "from a test"
    );

    let garbage = vec![0x42u8; 4000];
    let error = store
        .import_rootfs_tar(
            &garbage[..],
            &Reference::parse("bad").unwrap(),
            &ImportOptions::default(),
        )
        .unwrap_err();
    assert!(matches!(error, ImageError::InvalidTar(_)), "{error}");
    let bad_change = ImportOptions {
        changes: vec!["RUN rm -rf /".into()],
        message: None,
    };
    let error = store
        .import_rootfs_tar(&tar[..], &Reference::parse("bad").unwrap(), &bad_change)
        .unwrap_err();
    assert!(matches!(error, ImageError::InvalidChange { .. }), "{error}");
    assert!(store.resolve("bad").is_err());
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn tag_rmi_and_prune() {
    let Some(f) = fixture() else { return };
    let store = &f.store;
    let image = store.resolve("busybox").unwrap();
    store.tag("busybox", "example.com/team/box:v1").unwrap();
    assert_eq!(
        store.resolve("example.com/team/box:v1").unwrap().names,
        [
            "docker.io/library/busybox:latest",
            "example.com/team/box:v1"
        ]
    );
    assert_eq!(store.list().unwrap().len(), 2);
    assert!(matches!(
        store.tag("busybox", &format!("x@{}", image.manifest_digest)),
        Err(ImageError::TagWithDigest(_))
    ));

    // By id with two names needs -f.
    let error = store.remove(&image.id, false, &never_used).unwrap_err();
    assert!(matches!(error, ImageError::MultipleNames { .. }), "{error}");
    // By one of two names only untags, even when in use.
    let actions = store
        .remove("example.com/team/box:v1", false, &|_| true)
        .unwrap();
    assert_eq!(
        actions,
        [RemoveAction::Untagged("example.com/team/box:v1".into())]
    );

    // The last name of an image a container uses needs -f.
    let error = store
        .remove("busybox", false, &|id| id == image.id)
        .unwrap_err();
    assert!(
        error.to_string().contains("being used by a container"),
        "{error}"
    );
    assert!(error.to_string().contains("use -f"), "{error}");
    assert!(store.resolve("busybox").is_ok());

    // Forced, an image in use loses its names but stays for its container.
    let actions = store.remove("busybox", true, &|id| id == image.id).unwrap();
    assert_eq!(
        actions,
        [RemoveAction::Untagged(
            "docker.io/library/busybox:latest".into()
        )]
    );
    let rows = store.list().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].repository.as_str(), rows[0].tag.as_str()),
        ("<none>", "<none>")
    );
    assert!(store.resolve(&image.id).is_ok());
    assert_eq!(store.prune().unwrap(), 0, "every blob is still referenced");

    // A stray blob is collected by prune.
    let stray = b"stray";
    fs::write(store.blob_path(&sha256(stray)), stray).unwrap();
    assert_eq!(store.prune().unwrap(), stray.len() as u64);

    // Re-tag, then delete for real: the blobs go too.
    store.tag(&image.id, "busybox").unwrap();
    let actions = store.remove("busybox", false, &never_used).unwrap();
    assert_eq!(
        actions,
        [
            RemoveAction::Untagged("docker.io/library/busybox:latest".into()),
            RemoveAction::Deleted(image.id.clone())
        ]
    );
    assert!(store.list().unwrap().is_empty());
    assert!(!store.blob_path(&image.layers[0].digest).exists());
    assert!(!store.blob_path(&image.id).exists());
    assert!(matches!(
        store.remove("busybox", false, &never_used),
        Err(ImageError::NotFound(_))
    ));
}

#[test]
fn reimport_leaves_the_old_image_dangling_and_prune_of_dangling() {
    let Some(f) = fixture() else { return };
    let old = f.store.resolve("busybox").unwrap();
    let tar = build_tar(&[("hello".into(), b"hi".to_vec(), None)]);
    f.store
        .import_rootfs_tar(
            &tar[..],
            &Reference::parse("busybox").unwrap(),
            &ImportOptions::default(),
        )
        .unwrap();
    let rows = f.store.list().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows
        .iter()
        .any(|r| r.repository == "<none>" && r.full_id == old.id));
    let removed = f.store.remove_dangling(&never_used).unwrap();
    assert_eq!(removed, std::slice::from_ref(&old.id));
    assert!(f.store.prune().unwrap() >= old.layers[0].size);
    assert_eq!(f.store.list().unwrap().len(), 1);
}

fn load_into_fresh_store(
    archive: &[u8],
) -> (
    tempfile::TempDir,
    ImageStore,
    Result<Vec<String>, ImageError>,
) {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let result = store.load(archive);
    (tmp, store, result)
}

#[test]
fn docker_archive_round_trip() {
    let Some(f) = fixture() else { return };
    f.store.tag("busybox", "busybox:1.36").unwrap();
    let image = f.store.resolve("busybox").unwrap();
    let mut archive = Vec::new();
    f.store
        .save(
            &["busybox", "busybox:1.36"],
            &mut archive,
            ArchiveFormat::Docker,
        )
        .unwrap();

    let items = members(&archive);
    let get = |name: &str| {
        items
            .iter()
            .find(|(p, _, _)| p == name)
            .map(|(_, d, _)| d.clone())
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    let manifest: serde_json::Value = serde_json::from_slice(&get("manifest.json")).unwrap();
    let hex = image.id.trim_start_matches("sha256:");
    let diff_hex = image.layers[0].diff_id.trim_start_matches("sha256:");
    assert_eq!(manifest[0]["Config"], format!("blobs/sha256/{hex}"));
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["busybox:latest", "busybox:1.36"])
    );
    assert_eq!(
        manifest[0]["Layers"],
        serde_json::json!([format!("blobs/sha256/{diff_hex}")])
    );
    // Layers are uncompressed tars, named by their digest.
    let layer = get(&format!("blobs/sha256/{diff_hex}"));
    assert_eq!(sha256(&layer), image.layers[0].diff_id);
    let repositories: serde_json::Value = serde_json::from_slice(&get("repositories")).unwrap();
    assert_eq!(repositories["busybox"]["1.36"], diff_hex);
    assert!(items.iter().any(|(p, _, _)| p == "oci-layout"));
    assert!(items.iter().any(|(p, _, _)| p == "index.json"));

    let (_tmp, store, loaded) = load_into_fresh_store(&archive);
    let mut loaded = loaded.unwrap();
    loaded.sort();
    assert_eq!(
        loaded,
        [
            "docker.io/library/busybox:1.36",
            "docker.io/library/busybox:latest"
        ]
    );
    let copy = store.resolve("busybox:1.36").unwrap();
    assert_eq!(
        copy.id, image.id,
        "the config (and so the id) is kept byte for byte"
    );
    assert_eq!(copy.layers[0].diff_id, image.layers[0].diff_id);
    assert_eq!(
        copy.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar"
    );

    // Saving by id writes no name; loading such an archive gives a dangling image.
    let mut by_id = Vec::new();
    f.store
        .save(&[&image.id[..19]], &mut by_id, ArchiveFormat::Docker)
        .unwrap();
    let (_tmp2, store2, loaded) = load_into_fresh_store(&by_id);
    assert_eq!(loaded.unwrap(), std::slice::from_ref(&image.id));
    assert_eq!(store2.list().unwrap()[0].repository, "<none>");
}

#[test]
fn oci_archive_round_trip() {
    let Some(f) = fixture() else { return };
    let image = f.store.resolve("busybox").unwrap();
    let mut archive = Vec::new();
    f.store
        .save(&["busybox"], &mut archive, ArchiveFormat::Oci)
        .unwrap();
    let items = members(&archive);
    assert!(!items.iter().any(|(p, _, _)| p == "manifest.json"));
    let index: serde_json::Value =
        serde_json::from_slice(&items.iter().find(|(p, _, _)| p == "index.json").unwrap().1)
            .unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        image.manifest_digest.as_str()
    );
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "latest"
    );
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        "docker.io/library/busybox:latest"
    );

    let (_tmp, store, loaded) = load_into_fresh_store(&archive);
    assert_eq!(loaded.unwrap(), ["docker.io/library/busybox:latest"]);
    let copy = store.resolve("busybox").unwrap();
    assert_eq!(copy.manifest_digest, image.manifest_digest);
    assert_eq!(copy.id, image.id);
    assert_eq!(copy.layers, image.layers);

    // The same image loaded from a docker-archive and then an OCI one is listed once.
    let mut docker = Vec::new();
    f.store
        .save(&["busybox"], &mut docker, ArchiveFormat::Docker)
        .unwrap();
    let (_tmp, store, loaded) = load_into_fresh_store(&docker);
    loaded.unwrap();
    store.load(&archive[..]).unwrap();
    let rows = store.list().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        store.resolve("busybox").unwrap().manifest_digest,
        image.manifest_digest
    );
    store.prune().unwrap();
    assert_eq!(store.resolve("busybox").unwrap().layers, image.layers);
}

#[test]
fn corrupted_blobs_are_refused_on_load() {
    let Some(f) = fixture() else { return };
    let image = f.store.resolve("busybox").unwrap();
    for format in [ArchiveFormat::Oci, ArchiveFormat::Docker] {
        let mut archive = Vec::new();
        f.store.save(&["busybox"], &mut archive, format).unwrap();
        let mut items = members(&archive);
        let layer_member = match format {
            ArchiveFormat::Oci => format!(
                "blobs/sha256/{}",
                image.layers[0].digest.trim_start_matches("sha256:")
            ),
            ArchiveFormat::Docker => format!(
                "blobs/sha256/{}",
                image.layers[0].diff_id.trim_start_matches("sha256:")
            ),
        };
        let layer = items
            .iter_mut()
            .find(|(p, _, _)| *p == layer_member)
            .unwrap();
        let middle = layer.1.len() / 2;
        layer.1[middle] ^= 0xff;
        let (_tmp, store, result) = load_into_fresh_store(&build_tar(&items));
        match result {
            Err(ImageError::DigestMismatch { .. }) => {}
            other => panic!("{format:?}: {other:?}"),
        }
        assert!(
            store.list().unwrap().is_empty(),
            "{format:?}: nothing is named after a failed load"
        );
    }

    // A corrupt blob in the store is refused when saving, too.
    let path = f.store.blob_path(&image.layers[0].digest);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&path, bytes).unwrap();
    let error = f
        .store
        .save(&["busybox"], &mut Vec::new(), ArchiveFormat::Oci)
        .unwrap_err();
    assert!(
        matches!(error, ImageError::DigestMismatch { .. }),
        "{error}"
    );

    let (_tmp, _store, result) = load_into_fresh_store(b"not a tar at all, far too short");
    assert!(result.is_err());
}

#[test]
fn loads_hand_built_legacy_docker_archive() {
    let Some(f) = fixture() else { return };
    let (config, layer) = busybox_layer_tar(&f.store);
    let image = f.store.resolve("busybox").unwrap();
    let config_hex = image.id.trim_start_matches("sha256:").to_owned();
    // docker < 25: <v1 id>/layer.tar, <config hex>.json, a duplicate layer as a symlink.
    let v1 = "b".repeat(64);
    let v1_dup = "c".repeat(64);
    let mut config_value: serde_json::Value = serde_json::from_slice(&config).unwrap();
    config_value["rootfs"]["diff_ids"] =
        serde_json::json!([image.layers[0].diff_id, image.layers[0].diff_id]);
    let config2 = serde_json::to_vec(&config_value).unwrap();
    let config2_hex = sha256(&config2).trim_start_matches("sha256:").to_owned();
    let items = vec![
        (format!("{v1}/"), Vec::new(), None),
        (format!("{v1}/VERSION"), b"1.0".to_vec(), None),
        (format!("{v1}/json"), br#"{"id":"x"}"#.to_vec(), None),
        (format!("{v1}/layer.tar"), layer.clone(), None),
        (format!("{v1_dup}/"), Vec::new(), None),
        (format!("{v1_dup}/layer.tar"), Vec::new(), Some(format!("../{v1}/layer.tar"))),
        (format!("{config_hex}.json"), config.clone(), None),
        (format!("{config2_hex}.json"), config2.clone(), None),
        (
            "manifest.json".into(),
            serde_json::to_vec(&serde_json::json!([
                {"Config": format!("{config_hex}.json"), "RepoTags": ["old/box:1"], "Layers": [format!("{v1}/layer.tar")]},
                {"Config": format!("{config2_hex}.json"), "RepoTags": null, "Layers": [format!("{v1}/layer.tar"), format!("{v1_dup}/layer.tar")]}
            ]))
            .unwrap(),
            None,
        ),
        ("repositories".into(), format!(r#"{{"old/box":{{"1":"{v1}"}}}}"#).into_bytes(), None),
    ];
    let (_tmp, store, loaded) = load_into_fresh_store(&build_tar(&items));
    let loaded = loaded.unwrap();
    assert_eq!(loaded, ["docker.io/old/box:1".to_owned(), sha256(&config2)]);
    assert_eq!(store.resolve("old/box:1").unwrap().id, image.id);
    assert_eq!(store.resolve(&config2_hex[..12]).unwrap().layers.len(), 2);

    // A config whose name promises another digest is refused.
    let mut wrong = items.clone();
    wrong[6].1 = config2.clone();
    let (_tmp, _store, result) = load_into_fresh_store(&build_tar(&wrong));
    assert!(
        matches!(result, Err(ImageError::DigestMismatch { .. })),
        "{result:?}"
    );
    // A member that climbs out of the archive is refused.
    let mut escaping = items.clone();
    escaping.push(("../evil".into(), b"x".to_vec(), None));
    let (_tmp, _store, result) = load_into_fresh_store(&build_tar(&escaping));
    assert!(
        matches!(result, Err(ImageError::InvalidArchive(_))),
        "{result:?}"
    );
}

#[test]
fn loads_hand_built_docker25_archive_with_gzip_layer() {
    let Some(f) = fixture() else { return };
    let (config, _layer) = busybox_layer_tar(&f.store);
    let image = f.store.resolve("busybox").unwrap();
    // docker 25+: blobs/sha256/..., manifest.json and an OCI index side by side. Docker keeps
    // layers uncompressed; a gzip one is accepted too, as `docker load` accepts it.
    let gz = fs::read(f.store.blob_path(&image.layers[0].digest)).unwrap();
    let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
    let oci_manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": image.id, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": image.layers[0].digest, "size": gz.len()}]
    }))
    .unwrap();
    let items = vec![
        ("blobs/".into(), Vec::new(), None),
        ("blobs/sha256/".into(), Vec::new(), None),
        (blob(&image.id), config.clone(), None),
        (blob(&image.layers[0].digest), gz.clone(), None),
        (blob(&sha256(&oci_manifest)), oci_manifest.clone(), None),
        ("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(), None),
        (
            "index.json".into(),
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(&oci_manifest), "size": oci_manifest.len(),
                    "annotations": {"io.containerd.image.name": "docker.io/library/newbox:2", "org.opencontainers.image.ref.name": "2"}}]
            }))
            .unwrap(),
            None,
        ),
        (
            "manifest.json".into(),
            serde_json::to_vec(&serde_json::json!([
                {"Config": blob(&image.id), "RepoTags": ["newbox:2"], "Layers": [blob(&image.layers[0].digest)]}
            ]))
            .unwrap(),
            None,
        ),
    ];
    let archive = build_tar(&items);
    let (_tmp, store, loaded) = load_into_fresh_store(&archive);
    assert_eq!(loaded.unwrap(), ["docker.io/library/newbox:2"]);
    let copy = store.resolve("newbox:2").unwrap();
    assert_eq!(copy.id, image.id);
    assert_eq!(copy.layers[0].digest, image.layers[0].digest);
    assert_eq!(
        copy.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    // The same archive read as an OCI layout (without manifest.json) gives the same image.
    let oci_only: Vec<_> = items
        .into_iter()
        .filter(|(p, _, _)| p != "manifest.json")
        .collect();
    let (_tmp, store, loaded) = load_into_fresh_store(&build_tar(&oci_only));
    assert_eq!(loaded.unwrap(), ["docker.io/library/newbox:2"]);
    assert_eq!(
        store.resolve("newbox:2").unwrap().manifest_digest,
        sha256(&oci_manifest)
    );
}

fn tool(name: &str) -> bool {
    let found = Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!(
            "NOTICE: {name} is not installed (apt-get install {name}); that check is skipped"
        );
    }
    found
}

#[test]
fn skopeo_and_umoci_read_our_archives() {
    let Some(f) = fixture() else { return };
    let image = f.store.resolve("busybox").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let oci = dir.path().join("busybox-oci.tar");
    let docker = dir.path().join("busybox-docker.tar");
    f.store
        .save(
            &["busybox"],
            fs::File::create(&oci).unwrap(),
            ArchiveFormat::Oci,
        )
        .unwrap();
    f.store
        .save(
            &["busybox"],
            fs::File::create(&docker).unwrap(),
            ArchiveFormat::Docker,
        )
        .unwrap();

    if tool("skopeo") {
        for source in [
            format!("oci-archive:{}", oci.display()),
            format!("docker-archive:{}", docker.display()),
        ] {
            let output = Command::new("skopeo")
                .args(["inspect", "--config", &source])
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{source}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let config: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
            assert_eq!(
                config["rootfs"]["diff_ids"][0],
                image.layers[0].diff_id.as_str(),
                "{source}"
            );
            let output = Command::new("skopeo")
                .args(["inspect", &source])
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{source}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    if tool("umoci") {
        let layout = dir.path().join("layout");
        fs::create_dir(&layout).unwrap();
        tar::Archive::new(fs::File::open(&oci).unwrap())
            .unpack(&layout)
            .unwrap();
        let bundle = dir.path().join("bundle");
        let output = Command::new("umoci")
            .args(["unpack", "--image", &format!("{}:latest", layout.display())])
            .arg(&bundle)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "umoci: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let unpacked = fs::read(bundle.join("rootfs/bin/busybox")).unwrap();
        assert_eq!(unpacked, fs::read(BUSYBOX).unwrap());
        assert_eq!(
            fs::read_link(bundle.join("rootfs/bin/sh")).unwrap(),
            Path::new("busybox")
        );
    }

    // And a round trip through skopeo: its docker-archive of our oci-archive loads here.
    if tool("skopeo") {
        let copied = dir.path().join("copied.tar");
        let output = Command::new("skopeo")
            .args([
                "copy",
                &format!("oci-archive:{}", oci.display()),
                &format!("docker-archive:{}:copied/box:1", copied.display()),
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let (_tmp, store, loaded) = load_into_fresh_store(&fs::read(&copied).unwrap());
        assert_eq!(loaded.unwrap(), ["docker.io/copied/box:1"]);
        assert_eq!(
            store.resolve("copied/box:1").unwrap().layers[0].diff_id,
            image.layers[0].diff_id
        );
    }
}
