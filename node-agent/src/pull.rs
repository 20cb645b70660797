//! Image pulls as the kubelet decides them: `imagePullPolicy` (`Always`, `IfNotPresent`,
//! `Never`, defaulting to `Always` for `:latest` and untagged names), with registry credentials
//! taken from the pod's image pull secrets (`kubernetes.io/dockerconfigjson` and the older
//! `kubernetes.io/dockercfg`) and matched by registry host.
//!
//! The runtime's registry client reads credentials from a docker-style auth file, so the
//! matching credentials are written to a private temporary file for the one pull and removed
//! afterwards; the node's own credentials file is never used for pods.

use std::collections::BTreeMap;
use std::path::Path;

use api::core::Secret;
use base64::Engine;
use runtime::image::ImageStore;
use runtime::reference::Reference;
use runtime::registry::{AuthFile, Credentials, Registry, RegistryOptions};

/// Why an image could not be made present; [`PullError::reason`] is the container's waiting
/// reason.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("failed to pull image \"{image}\": {message}")]
    Pull { image: String, message: String },
    #[error("container image \"{image}\" is not present with pull policy of Never: load it on the node or change imagePullPolicy")]
    NeverPull { image: String },
    #[error("failed to apply default image tag \"{image}\": {message}")]
    InvalidName { image: String, message: String },
    #[error("invalid imagePullPolicy {policy:?} for image \"{image}\": use Always, IfNotPresent or Never")]
    InvalidPolicy { image: String, policy: String },
}

impl PullError {
    /// `ErrImagePull`, `ErrImageNeverPull` or `InvalidImageName`, as the kubelet reports them.
    pub fn reason(&self) -> &'static str {
        match self {
            PullError::Pull { .. } | PullError::InvalidPolicy { .. } => "ErrImagePull",
            PullError::NeverPull { .. } => "ErrImageNeverPull",
            PullError::InvalidName { .. } => "InvalidImageName",
        }
    }
}

/// The pull policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// Makes `image` present in the image store of the runtime root `rt_root`, pulling it as
/// `policy` says (unset: Kubernetes' default for the reference), with credentials from
/// `pull_secrets`.
pub async fn ensure_image(
    rt_root: &Path,
    image: &str,
    policy: Option<&str>,
    pull_secrets: &[Secret],
) -> Result<(), PullError> {
    let reference = Reference::parse(image).map_err(|e| PullError::InvalidName {
        image: image.to_string(),
        message: e.to_string(),
    })?;
    let policy =
        effective_policy(&reference, policy).map_err(|policy| PullError::InvalidPolicy {
            image: image.to_string(),
            policy,
        })?;
    let pull_error = |message: String| PullError::Pull {
        image: image.to_string(),
        message,
    };
    let store = ImageStore::open(rt_root).map_err(|e| pull_error(e.to_string()))?;
    let present = store.resolve(&reference.full_name()).is_ok();
    match (policy, present) {
        (PullPolicy::Never, false) => {
            return Err(PullError::NeverPull {
                image: image.to_string(),
            })
        }
        (PullPolicy::Never, true) | (PullPolicy::IfNotPresent, true) => return Ok(()),
        (PullPolicy::Always, _) | (PullPolicy::IfNotPresent, false) => {}
    }

    let credentials = credentials_for(&reference.registry, pull_secrets);
    // The credentials file lives only as long as this pull, in a private directory (0700).
    let scratch = tempfile::Builder::new()
        .prefix("pull-auth-")
        .tempdir_in(rt_root)
        .map_err(|e| {
            pull_error(format!(
                "creating a temporary directory in {}: {e}",
                rt_root.display()
            ))
        })?;
    let auth_file = scratch.path().join("auth.json");
    if let Some(credentials) = &credentials {
        let mut auth = AuthFile::default();
        auth.set(&reference.registry, credentials);
        auth.save(&auth_file)
            .map_err(|e| pull_error(e.to_string()))?;
    }
    let registry = Registry::new(RegistryOptions {
        auth_file,
        ..RegistryOptions::default()
    })
    .map_err(|e| pull_error(e.to_string()))?;
    let name = reference.familiar();
    let started = std::time::Instant::now();
    let log = |line: &str| tracing::debug!(image = %name, "{line}");
    registry
        .pull(&store, &reference, &log)
        .await
        .map_err(|e| pull_error(e.to_string()))?;
    tracing::info!(image = %name, elapsed_ms = started.elapsed().as_millis() as u64, authenticated = credentials.is_some(), "pulled image");
    Ok(())
}

/// The policy to apply: the given one, else `Always` for `:latest` or a name with neither tag
/// nor digest, else `IfNotPresent`. An unknown policy comes back as the error.
pub fn effective_policy(reference: &Reference, policy: Option<&str>) -> Result<PullPolicy, String> {
    match policy.filter(|p| !p.is_empty()) {
        Some("Always") => Ok(PullPolicy::Always),
        Some("IfNotPresent") => Ok(PullPolicy::IfNotPresent),
        Some("Never") => Ok(PullPolicy::Never),
        Some(other) => Err(other.to_string()),
        None => {
            let latest = match (&reference.tag, &reference.digest) {
                (Some(tag), _) => tag == runtime::reference::DEFAULT_TAG,
                (None, digest) => digest.is_none(),
            };
            Ok(if latest {
                PullPolicy::Always
            } else {
                PullPolicy::IfNotPresent
            })
        }
    }
}

/// The credentials for `registry` (as a reference names it: `docker.io`, `host:port`) from the
/// first secret that has an entry for it. Secrets of other types and entries that cannot be
/// read are skipped with a warning.
pub fn credentials_for(registry: &str, secrets: &[Secret]) -> Option<Credentials> {
    for secret in secrets {
        let entries = match docker_config_entries(secret) {
            Ok(entries) => entries,
            Err(message) => {
                tracing::warn!(
                    secret = secret.metadata.name.as_deref().unwrap_or(""),
                    "skipping image pull secret: {message}"
                );
                continue;
            }
        };
        for (key, credentials) in entries {
            if registry_matches(&key, registry) {
                return Some(credentials);
            }
        }
    }
    None
}

/// The registry keys and credentials of a `kubernetes.io/dockerconfigjson` or
/// `kubernetes.io/dockercfg` secret.
pub fn docker_config_entries(secret: &Secret) -> Result<Vec<(String, Credentials)>, String> {
    let data = |key: &str| -> Option<Vec<u8>> {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|s| s.clone().into_bytes())
            })
    };
    let kind = secret.type_.as_deref().unwrap_or("");
    let auths: BTreeMap<String, serde_json::Value> = match kind {
        "kubernetes.io/dockerconfigjson" => {
            let bytes = data(".dockerconfigjson").ok_or("it has no .dockerconfigjson key")?;
            let value: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| format!(".dockerconfigjson is not JSON: {e}"))?;
            match value.get("auths") {
                Some(auths) => serde_json::from_value(auths.clone())
                    .map_err(|e| format!(".dockerconfigjson auths: {e}"))?,
                None => BTreeMap::new(),
            }
        }
        "kubernetes.io/dockercfg" => {
            let bytes = data(".dockercfg").ok_or("it has no .dockercfg key")?;
            serde_json::from_slice(&bytes)
                .map_err(|e| format!(".dockercfg is not a JSON object: {e}"))?
        }
        other => {
            return Err(format!(
            "its type is {other:?}, not kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg"
        ))
        }
    };
    let mut out = Vec::new();
    for (key, entry) in auths {
        let field = |name: &str| entry.get(name).and_then(|v| v.as_str()).unwrap_or("");
        let from_auth = (!field("auth").is_empty())
            .then(|| {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(field("auth").trim())
                    .ok()?;
                let text = String::from_utf8(decoded).ok()?;
                let (user, pass) = text.split_once(':')?;
                Some(Credentials {
                    username: user.to_string(),
                    password: pass.to_string(),
                })
            })
            .flatten();
        let credentials = match from_auth {
            Some(c) => c,
            None if !field("username").is_empty() => Credentials {
                username: field("username").to_string(),
                password: field("password").to_string(),
            },
            None => {
                tracing::warn!(registry = %key, "image pull secret entry has no usable auth or username; skipping it");
                continue;
            }
        };
        out.push((key, credentials));
    }
    Ok(out)
}

/// Whether a docker config key (`https://index.docker.io/v1/`, `registry.example.com:5000`,
/// `*.example.com`, `http://localhost:5000/v2/`) is for `registry`.
pub fn registry_matches(key: &str, registry: &str) -> bool {
    let host = normalize_registry(key);
    let registry = normalize_registry(registry);
    if host == registry {
        return true;
    }
    // A leading `*.` matches one or more labels of the same depth, as the kubelet's globs do.
    if let Some(suffix) = host.strip_prefix("*.") {
        if let Some(prefix) = registry.strip_suffix(suffix) {
            return prefix.ends_with('.') && !prefix[..prefix.len() - 1].contains('.');
        }
    }
    false
}

fn normalize_registry(key: &str) -> String {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            runtime::reference::DEFAULT_REGISTRY.to_string()
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(kind: &str, key: &str, json: &str) -> Secret {
        let b64 = base64::engine::general_purpose::STANDARD.encode(json);
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s"}, "type": kind, "data": {key: b64}
        }))
        .expect("secret")
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn default_policies() {
        let cases = [
            ("busybox", None, Ok(PullPolicy::Always)),
            ("busybox:latest", None, Ok(PullPolicy::Always)),
            ("busybox:1.36", None, Ok(PullPolicy::IfNotPresent)),
            ("localhost:5000/app", None, Ok(PullPolicy::Always)),
            ("localhost:5000/app:v2", None, Ok(PullPolicy::IfNotPresent)),
            (
                "busybox@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                None,
                Ok(PullPolicy::IfNotPresent),
            ),
            (
                "busybox",
                Some("IfNotPresent"),
                Ok(PullPolicy::IfNotPresent),
            ),
            ("busybox:1", Some("Always"), Ok(PullPolicy::Always)),
            ("busybox:1", Some("Never"), Ok(PullPolicy::Never)),
            ("busybox:1", Some(""), Ok(PullPolicy::IfNotPresent)),
            ("busybox:1", Some("Sometimes"), Err("Sometimes".to_string())),
        ];
        for (image, policy, want) in cases {
            let reference = Reference::parse(image).expect("reference");
            assert_eq!(
                effective_policy(&reference, policy),
                want,
                "{image} {policy:?}"
            );
        }
    }

    #[test]
    fn docker_config_secrets() {
        let json = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "localhost:5000": {{"username": "bob", "password": "pw"}},
                "*.example.com": {{"auth": "{}"}},
                "broken.io": {{"auth": "!!!"}}
            }}}}"#,
            b64("hub:hubpw"),
            b64("wild:card:with:colons")
        );
        let s = secret("kubernetes.io/dockerconfigjson", ".dockerconfigjson", &json);
        let creds = |registry: &str| {
            credentials_for(registry, std::slice::from_ref(&s)).map(|c| (c.username, c.password))
        };
        let pair = |u: &str, p: &str| Some((u.to_string(), p.to_string()));
        assert_eq!(creds("docker.io"), pair("hub", "hubpw"));
        assert_eq!(creds("localhost:5000"), pair("bob", "pw"));
        assert_eq!(creds("localhost:5001"), None);
        assert_eq!(
            creds("registry.example.com"),
            pair("wild", "card:with:colons")
        );
        assert_eq!(creds("a.b.example.com"), None);
        assert_eq!(creds("example.com"), None);
        assert_eq!(creds("broken.io"), None);

        let old = secret(
            "kubernetes.io/dockercfg",
            ".dockercfg",
            &format!(
                r#"{{"http://reg.local:5000/v2/": {{"auth": "{}"}}}}"#,
                b64("o:p")
            ),
        );
        assert_eq!(
            credentials_for("reg.local:5000", &[s.clone(), old]).map(|c| c.username),
            Some("o".to_string())
        );

        let bad = [
            secret("Opaque", ".dockerconfigjson", &json),
            secret("kubernetes.io/dockerconfigjson", ".dockercfg", &json),
            secret(
                "kubernetes.io/dockerconfigjson",
                ".dockerconfigjson",
                "not json",
            ),
            secret("kubernetes.io/dockercfg", ".dockercfg", "[1, 2]"),
        ];
        for b in &bad {
            assert!(docker_config_entries(b).is_err(), "{:?}", b.type_);
        }
        assert_eq!(credentials_for("docker.io", &bad), None);
    }

    #[test]
    fn reasons() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio");
        let never = rt
            .block_on(ensure_image(dir.path(), "busybox:1.36", Some("Never"), &[]))
            .expect_err("absent");
        assert_eq!(never.reason(), "ErrImageNeverPull");
        let invalid = rt
            .block_on(ensure_image(dir.path(), "Not A Name", None, &[]))
            .expect_err("invalid");
        assert_eq!(invalid.reason(), "InvalidImageName");
        // A loopback port nothing listens on: the pull fails quickly and says why.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        let failed = rt
            .block_on(ensure_image(
                dir.path(),
                &format!("127.0.0.1:{port}/app:v1"),
                None,
                &[],
            ))
            .expect_err("unreachable");
        assert_eq!(failed.reason(), "ErrImagePull");
        assert!(
            failed.to_string().contains("failed to pull image"),
            "{failed}"
        );
        // Nothing is left behind by the credentials scratch directory.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("pull-auth-"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[tokio::test]
    async fn pulls_from_a_loopback_registry_by_policy() {
        // A registry serving a store with one imported image.
        let source = tempfile::tempdir().expect("tempdir");
        let rootfs = source.path().join("rootfs");
        std::fs::create_dir_all(&rootfs).expect("mkdir");
        std::fs::write(rootfs.join("hello"), "hi").expect("file");
        let store_root = source.path().join("store");
        let store = ImageStore::open(&store_root).expect("store");
        store
            .import_rootfs_dir(&rootfs, &Reference::parse("app:v1").expect("ref"))
            .expect("import");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(runtime::registry::server::serve(
            store_root,
            listener,
            async {
                let _ = stopped.await;
            },
        ));

        let node = tempfile::tempdir().expect("tempdir");
        let image = format!("127.0.0.1:{port}/app:v1");
        let err = ensure_image(node.path(), &image, Some("Never"), &[])
            .await
            .expect_err("absent");
        assert_eq!(err.reason(), "ErrImageNeverPull");
        // A matching pull secret is written for the pull (this registry asks for none).
        let pull_secret = secret(
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            &format!(
                r#"{{"auths": {{"127.0.0.1:{port}": {{"auth": "{}"}}}}}}"#,
                b64("u:p")
            ),
        );
        ensure_image(
            node.path(),
            &image,
            None,
            std::slice::from_ref(&pull_secret),
        )
        .await
        .expect("pull");
        let local = ImageStore::open(node.path()).expect("store");
        assert!(local.resolve(&image).is_ok());
        ensure_image(node.path(), &image, Some("Never"), &[])
            .await
            .expect("present now");
        ensure_image(node.path(), &image, Some("Always"), &[])
            .await
            .expect("pull again");
        let missing = ensure_image(node.path(), &format!("127.0.0.1:{port}/nope:v1"), None, &[])
            .await
            .expect_err("unknown image");
        assert_eq!(missing.reason(), "ErrImagePull");
        assert!(missing.to_string().contains("not found"), "{missing}");

        let _ = stop.send(());
        let _ = server.await;
    }

    #[test]
    fn ensure_image_is_send() {
        fn assert_send<T: Send>(_: T) {}
        assert_send(ensure_image(
            Path::new("/nonexistent"),
            "busybox",
            None,
            &[],
        ));
    }
}
