//! Where the client connects and as whom: the kubeconfig file (the same file kubectl reads) and
//! the plain [`Config`] the client is built from.
//!
//! The kubeconfig types are hand-written rather than taken from a crate because Flotilla needs
//! only a few fields (server, certificate authority, token, namespace) plus one extension, and
//! must keep every other field intact when it rewrites a file; unknown fields are carried in
//! `extra` maps. Extra server addresses for fail-over live in a cluster extension that kubectl
//! ignores: `extensions: [{name: flotilla, extension: {servers: [url, ...]}}]`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize};

use super::ClientError;

/// The name of the cluster extension that holds Flotilla's extra server addresses.
pub const EXTENSION_NAME: &str = "flotilla";

/// Everything the client needs to reach the cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// Server base URLs (`https://host:port`), tried in order with fail-over.
    pub servers: Vec<String>,
    /// PEM of the cluster's certificate authority: the only root trusted for HTTPS.
    pub ca_pem: Option<Vec<u8>>,
    /// Bearer token sent with every request.
    pub token: Option<String>,
    /// The namespace commands use when none is given.
    pub namespace: String,
}

impl Config {
    /// A configuration for these servers, without CA or token, in namespace `default`.
    pub fn new(servers: Vec<String>) -> Config {
        Config {
            servers,
            ca_pem: None,
            token: None,
            namespace: "default".to_string(),
        }
    }

    /// Reads a kubeconfig file and resolves `context` (or its current-context).
    pub fn from_kubeconfig(path: &Path, context: Option<&str>) -> Result<Config, ClientError> {
        let kubeconfig = Kubeconfig::read(path)?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        kubeconfig.to_config(path, base_dir, context)
    }

    /// Finds the kubeconfig as kubectl does (the flag, then `$KUBECONFIG`, then
    /// `~/.kube/config`) and resolves `context` in it.
    pub fn infer(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Config, ClientError> {
        match kubeconfig_path(kubeconfig) {
            Some(path) => Config::from_kubeconfig(&path, context),
            None => Err(ClientError::NoKubeconfig),
        }
    }
}

// The token is a credential: keep it out of logs and debug output.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("servers", &self.servers)
            .field(
                "ca_pem",
                &self
                    .ca_pem
                    .as_ref()
                    .map(|pem| format!("<{} bytes>", pem.len())),
            )
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// The kubeconfig file to use: `explicit` if given (even if it does not exist, so that reading
/// it reports the error), else the first existing entry of `$KUBECONFIG` (a `:`-separated list;
/// the files are not merged as kubectl would), else `~/.kube/config` if it exists.
pub fn kubeconfig_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_path_buf());
    }
    if let Some(list) = std::env::var_os("KUBECONFIG") {
        if let Some(found) = std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .find(|p| p.exists())
        {
            return Some(found);
        }
    }
    let home = std::env::var_os("HOME")?;
    let default = PathBuf::from(home).join(".kube").join("config");
    default.exists().then_some(default)
}

/// A kubeconfig file, as kubectl reads and writes it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Kubeconfig {
    #[serde(
        rename = "apiVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub clusters: Vec<NamedCluster>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub users: Vec<NamedUser>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub contexts: Vec<NamedContext>,
    #[serde(
        rename = "current-context",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub current_context: Option<String>,
    /// Fields Flotilla does not use (preferences, extensions, ...), kept for rewriting.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NamedCluster {
    pub name: String,
    #[serde(default)]
    pub cluster: Cluster,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(
        rename = "certificate-authority-data",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub certificate_authority_data: Option<String>,
    #[serde(
        rename = "certificate-authority",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub certificate_authority: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub extensions: Vec<NamedExtension>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamedExtension {
    pub name: String,
    #[serde(default)]
    pub extension: serde_yaml::Value,
}

/// The body of Flotilla's cluster extension.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FlotillaExtension {
    #[serde(default)]
    pub servers: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NamedUser {
    pub name: String,
    #[serde(default)]
    pub user: User,
}

#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(rename = "tokenFile", default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_yaml::Value>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NamedContext {
    pub name: String,
    #[serde(default)]
    pub context: Context,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    #[serde(default)]
    pub cluster: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_yaml::Value>,
}

impl Kubeconfig {
    /// A kubeconfig with one cluster, one admin user with `token`, and one context named
    /// `cluster_name` made current. The first server is the cluster's `server` (what kubectl
    /// uses); all of them go into the Flotilla extension for fail-over.
    pub fn new_admin(
        cluster_name: &str,
        servers: &[String],
        ca_pem: &[u8],
        token: &str,
    ) -> Kubeconfig {
        let user_name = format!("{cluster_name}-admin");
        let extension = FlotillaExtension {
            servers: servers.to_vec(),
        };
        let extensions = match serde_yaml::to_value(&extension) {
            Ok(value) if servers.len() > 1 => {
                vec![NamedExtension {
                    name: EXTENSION_NAME.to_string(),
                    extension: value,
                }]
            }
            _ => Vec::new(),
        };
        Kubeconfig {
            api_version: Some("v1".to_string()),
            kind: Some("Config".to_string()),
            clusters: vec![NamedCluster {
                name: cluster_name.to_string(),
                cluster: Cluster {
                    server: servers.first().cloned(),
                    certificate_authority_data: Some(
                        base64::engine::general_purpose::STANDARD.encode(ca_pem),
                    ),
                    extensions,
                    ..Cluster::default()
                },
            }],
            users: vec![NamedUser {
                name: user_name.clone(),
                user: User {
                    token: Some(token.to_string()),
                    ..User::default()
                },
            }],
            contexts: vec![NamedContext {
                name: cluster_name.to_string(),
                context: Context {
                    cluster: cluster_name.to_string(),
                    user: user_name,
                    ..Context::default()
                },
            }],
            current_context: Some(cluster_name.to_string()),
            extra: BTreeMap::new(),
        }
    }

    /// Reads and parses a kubeconfig file.
    pub fn read(path: &Path) -> Result<Kubeconfig, ClientError> {
        let text = std::fs::read_to_string(path).map_err(|error| ClientError::ReadKubeconfig {
            path: path.to_path_buf(),
            error,
        })?;
        Kubeconfig::parse(&text, path)
    }

    /// Parses kubeconfig YAML; `path` only names the file in errors. An empty file is an empty
    /// kubeconfig, as for kubectl.
    pub fn parse(text: &str, path: &Path) -> Result<Kubeconfig, ClientError> {
        if text.trim().is_empty() {
            return Ok(Kubeconfig::default());
        }
        serde_yaml::from_str(text).map_err(|error| ClientError::ParseKubeconfig {
            path: path.to_path_buf(),
            error,
        })
    }

    /// Writes the file with mode 0600 (it holds a credential), replacing it atomically so a
    /// reader never sees half a file. Creates the parent directory if needed.
    pub fn write(&self, path: &Path) -> Result<(), ClientError> {
        let fail = |error: String| ClientError::WriteKubeconfig {
            path: path.to_path_buf(),
            error,
        };
        let yaml = serde_yaml::to_string(self).map_err(|e| fail(e.to_string()))?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(|e| fail(e.to_string()))?;
        let file_name = path
            .file_name()
            .ok_or_else(|| fail("the path has no file name".to_string()))?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            file_name.to_string_lossy(),
            std::process::id()
        ));
        let result =
            write_private(&tmp, yaml.as_bytes()).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(error) = result {
            // Best effort: do not leave a stray copy of the credential behind.
            let _ = std::fs::remove_file(&tmp);
            return Err(fail(error.to_string()));
        }
        Ok(())
    }

    /// Resolves `context` (or the current context) into a [`Config`]. `path` names the file in
    /// errors; `base_dir` is where relative file references are resolved from (kubectl resolves
    /// them against the kubeconfig's directory).
    pub fn to_config(
        &self,
        path: &Path,
        base_dir: &Path,
        context: Option<&str>,
    ) -> Result<Config, ClientError> {
        let content = |reason: String| ClientError::KubeconfigContent {
            path: path.to_path_buf(),
            reason,
        };
        let context_name = match context
            .or(self.current_context.as_deref())
            .filter(|c| !c.is_empty())
        {
            Some(name) => name,
            None => {
                return Err(content(
                    "no current-context is set; pass --context NAME".to_string(),
                ))
            }
        };
        let context = self
            .contexts
            .iter()
            .find(|c| c.name == context_name)
            .ok_or_else(|| content(format!("context {context_name:?} not found")))?;
        let cluster = self
            .clusters
            .iter()
            .find(|c| c.name == context.context.cluster)
            .ok_or_else(|| {
                content(format!(
                    "cluster {:?} of context {context_name:?} not found",
                    context.context.cluster
                ))
            })?;
        let servers = cluster_servers(cluster).map_err(content)?;
        if servers.is_empty() {
            return Err(content(format!("cluster {:?} has no server", cluster.name)));
        }

        let ca_pem = if let Some(data) = &cluster.cluster.certificate_authority_data {
            let cleaned: String = data.chars().filter(|c| !c.is_whitespace()).collect();
            let pem = base64::engine::general_purpose::STANDARD
                .decode(cleaned)
                .map_err(|e| {
                    content(format!(
                        "certificate-authority-data of cluster {:?} is not base64: {e}",
                        cluster.name
                    ))
                })?;
            Some(pem)
        } else if let Some(file) = &cluster.cluster.certificate_authority {
            let file = base_dir.join(file);
            let pem = std::fs::read(&file).map_err(|error| ClientError::ReadFile {
                what: "certificate authority file",
                path: file.clone(),
                error,
            })?;
            Some(pem)
        } else {
            None
        };

        let token = if context.context.user.is_empty() {
            None
        } else {
            let user = self
                .users
                .iter()
                .find(|u| u.name == context.context.user)
                .ok_or_else(|| {
                    content(format!(
                        "user {:?} of context {context_name:?} not found",
                        context.context.user
                    ))
                })?;
            if let Some(token) = &user.user.token {
                Some(token.clone())
            } else if let Some(file) = &user.user.token_file {
                let file = base_dir.join(file);
                let text =
                    std::fs::read_to_string(&file).map_err(|error| ClientError::ReadFile {
                        what: "token file",
                        path: file.clone(),
                        error,
                    })?;
                Some(text.trim().to_string())
            } else {
                None
            }
        };

        let namespace = context
            .context
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_string());
        Ok(Config {
            servers,
            ca_pem,
            token,
            namespace,
        })
    }
}

/// The cluster's `server`, then the extension's servers that are not the same address.
fn cluster_servers(cluster: &NamedCluster) -> Result<Vec<String>, String> {
    let mut servers: Vec<String> = Vec::new();
    if let Some(server) = cluster.cluster.server.as_deref().filter(|s| !s.is_empty()) {
        servers.push(server.trim_end_matches('/').to_string());
    }
    for ext in cluster
        .cluster
        .extensions
        .iter()
        .filter(|e| e.name == EXTENSION_NAME)
    {
        let parsed: FlotillaExtension =
            serde_yaml::from_value(ext.extension.clone()).map_err(|e| {
                format!(
                    "extension {EXTENSION_NAME:?} of cluster {:?} is invalid: {e}",
                    cluster.name
                )
            })?;
        for server in parsed.servers {
            let server = server.trim_end_matches('/').to_string();
            if !server.is_empty() && !servers.contains(&server) {
                servers.push(server);
            }
        }
    }
    Ok(servers)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// kubectl writes `clusters: null` for an empty list; treat null like a missing field.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn ca_b64() -> String {
        base64::engine::general_purpose::STANDARD.encode(CA)
    }

    fn parse(text: &str) -> Kubeconfig {
        match Kubeconfig::parse(text, Path::new("/test/config")) {
            Ok(k) => k,
            Err(e) => panic!("parse failed: {e}"),
        }
    }

    fn resolve(text: &str, context: Option<&str>) -> Result<Config, ClientError> {
        parse(text).to_config(Path::new("/test/config"), Path::new("/test"), context)
    }

    fn good() -> String {
        format!(
            r#"
apiVersion: v1
kind: Config
preferences: {{}}
clusters:
- name: prod
  cluster:
    server: https://10.0.0.1:6443/
    certificate-authority-data: {ca}
    extensions:
    - name: other
      extension: {{foo: bar}}
    - name: flotilla
      extension:
        servers: [https://10.0.0.1:6443, https://10.0.0.2:6443, https://10.0.0.3:6443]
- name: dev
  cluster:
    server: http://127.0.0.1:8080
users:
- name: admin
  user:
    token: s3cret
    client-certificate-data: AAAA
contexts:
- name: prod
  context: {{cluster: prod, user: admin, namespace: web}}
- name: dev
  context: {{cluster: dev}}
current-context: prod
"#,
            ca = ca_b64()
        )
    }

    #[test]
    fn resolves_current_context_with_extension_servers() {
        let config = match resolve(&good(), None) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            config.servers,
            [
                "https://10.0.0.1:6443",
                "https://10.0.0.2:6443",
                "https://10.0.0.3:6443"
            ]
        );
        assert_eq!(config.ca_pem.as_deref(), Some(CA.as_bytes()));
        assert_eq!(config.token.as_deref(), Some("s3cret"));
        assert_eq!(config.namespace, "web");
    }

    #[test]
    fn resolves_named_context_without_user_or_namespace() {
        let config = match resolve(&good(), Some("dev")) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(config.servers, ["http://127.0.0.1:8080"]);
        assert_eq!(config.ca_pem, None);
        assert_eq!(config.token, None);
        assert_eq!(config.namespace, "default");
    }

    #[test]
    fn bad_kubeconfigs_give_clear_errors() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("clusters: []\n", None, "no current-context is set; pass --context NAME"),
            ("current-context: x\ncontexts: null\n", None, r#"context "x" not found"#),
            (
                "current-context: c\ncontexts: [{name: c, context: {cluster: gone}}]\n",
                None,
                r#"cluster "gone" of context "c" not found"#,
            ),
            (
                "current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\nclusters: [{name: k, cluster: {}}]\n",
                None,
                r#"cluster "k" has no server"#,
            ),
            (
                "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\nclusters: [{name: k, cluster: {server: 'https://a'}}]\n",
                None,
                r#"user "u" of context "c" not found"#,
            ),
            (
                "current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\nclusters: [{name: k, cluster: {server: 'https://a', certificate-authority-data: '!!notbase64'}}]\n",
                None,
                r#"certificate-authority-data of cluster "k" is not base64"#,
            ),
            (
                "current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\nclusters: [{name: k, cluster: {server: 'https://a', extensions: [{name: flotilla, extension: {servers: 3}}]}}]\n",
                None,
                r#"extension "flotilla" of cluster "k" is invalid"#,
            ),
        ];
        for (text, context, expected) in cases {
            match resolve(text, *context) {
                Ok(config) => panic!("{text}: expected an error, got {config:?}"),
                Err(e) => {
                    let message = e.to_string();
                    assert!(
                        message.starts_with("kubeconfig /test/config: "),
                        "{message}"
                    );
                    assert!(
                        message.contains(expected),
                        "{message} should contain {expected}"
                    );
                }
            }
        }
    }

    #[test]
    fn invalid_yaml_and_missing_files_name_the_path() {
        let err = Kubeconfig::parse("clusters: {not: [a list", Path::new("/x/kc"));
        assert!(
            matches!(&err, Err(ClientError::ParseKubeconfig { .. })),
            "{err:?}"
        );
        let err = Kubeconfig::parse("clusters: 3\n", Path::new("/x/kc"));
        assert!(
            matches!(&err, Err(ClientError::ParseKubeconfig { .. })),
            "{err:?}"
        );

        let dir = tempdir();
        let missing = dir.path().join("nope");
        match Config::from_kubeconfig(&missing, None) {
            Err(e @ ClientError::ReadKubeconfig { .. }) => {
                assert!(e
                    .to_string()
                    .starts_with(&format!("cannot read kubeconfig {}: ", missing.display())))
            }
            other => panic!("expected a read error, got {other:?}"),
        }
        assert!(
            matches!(Kubeconfig::parse("  \n", Path::new("/x")), Ok(k) if k == Kubeconfig::default())
        );
    }

    #[test]
    fn relative_files_resolve_against_the_kubeconfig_directory() {
        let dir = tempdir();
        std::fs::create_dir(dir.path().join("pki")).unwrap();
        std::fs::write(dir.path().join("pki/ca.crt"), CA).unwrap();
        std::fs::write(dir.path().join("token"), "tok\n").unwrap();
        let text = "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n\
                    clusters: [{name: k, cluster: {server: 'https://a', certificate-authority: pki/ca.crt}}]\n\
                    users: [{name: u, user: {tokenFile: token}}]\n";
        let path = dir.path().join("config");
        std::fs::write(&path, text).unwrap();
        let config = match Config::from_kubeconfig(&path, None) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(config.ca_pem.as_deref(), Some(CA.as_bytes()));
        assert_eq!(config.token.as_deref(), Some("tok"));

        std::fs::remove_file(dir.path().join("token")).unwrap();
        match Config::from_kubeconfig(&path, None) {
            Err(e @ ClientError::ReadFile { .. }) => {
                assert!(e.to_string().starts_with("cannot read token file "))
            }
            other => panic!("expected a token file error, got {other:?}"),
        }
    }

    #[test]
    fn new_admin_round_trips_through_a_private_file() {
        let dir = tempdir();
        let path = dir.path().join("sub/admin.conf");
        let servers = vec![
            "https://127.0.0.1:6443".to_string(),
            "https://127.0.0.1:7443".to_string(),
        ];
        let kubeconfig = Kubeconfig::new_admin("flotilla", &servers, CA.as_bytes(), "tok");
        if let Err(e) = kubeconfig.write(&path) {
            panic!("{e}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let config = match Config::from_kubeconfig(&path, None) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(config.servers, servers);
        assert_eq!(config.ca_pem.as_deref(), Some(CA.as_bytes()));
        assert_eq!(config.token.as_deref(), Some("tok"));
        assert_eq!(config.namespace, "default");
        // Unknown fields survive a rewrite.
        let mut reread = Kubeconfig::read(&path).unwrap();
        assert_eq!(reread, kubeconfig);
        reread.extra.insert(
            "preferences".into(),
            serde_yaml::Value::Mapping(Default::default()),
        );
        reread.write(&path).unwrap();
        assert!(Kubeconfig::read(&path)
            .unwrap()
            .extra
            .contains_key("preferences"));
    }

    #[test]
    fn debug_output_hides_the_token() {
        let config = Config {
            token: Some("s3cret".into()),
            ..Config::new(vec!["https://a".into()])
        };
        assert!(!format!("{config:?}").contains("s3cret"));
        let user = User {
            token: Some("s3cret".into()),
            ..User::default()
        };
        assert!(!format!("{user:?}").contains("s3cret"));
    }

    fn tempdir() -> tempfile::TempDir {
        match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("cannot create a temporary directory: {e}"),
        }
    }
}
