//! The cluster's certificates and the files `apiserver init` writes.
//!
//! `init` makes a private certificate authority for one cluster, one certificate that every
//! apiserver replica uses both to serve (the API port and the peer port) and as its client
//! certificate towards the other replicas (mutual TLS), two bearer tokens (admin and viewer),
//! `tokens.csv` and a kubeconfig that `kubectl` and `ctl` read. `issue` signs further
//! certificates with the same CA, for replicas on other machines or node agents.
//!
//! Layout under the chosen directory:
//! `pki/ca.crt`, `pki/ca.key`, `pki/server.crt`, `pki/server.key`, `tokens.csv`, `kubeconfig`.
//! Private keys and files holding tokens are created with mode 0600.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use serde::Serialize;

use crate::auth::{self, Role};

/// The files `apiserver init` writes under DIR/pki.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PkiPaths {
    pub dir: PathBuf,
}

impl PkiPaths {
    /// `DIR/pki` for the data directory DIR.
    pub fn under(data_dir: &Path) -> PkiPaths {
        PkiPaths {
            dir: data_dir.join("pki"),
        }
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
}

/// What `apiserver init` is asked to make.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// the data directory; `pki/`, `tokens.csv` and `kubeconfig` go under it
    pub dir: PathBuf,
    /// DNS names or IP addresses the replicas are reached at (subject alternative names);
    /// localhost, 127.0.0.1 and ::1 are always added
    pub hosts: Vec<String>,
    /// https URLs of the replicas, written to the kubeconfig (the first one is `server`)
    pub servers: Vec<String>,
}

/// What `init` made. The tokens are secrets: show them to the user once, never log them.
pub struct InitOutput {
    pub admin_token: String,
    pub viewer_token: String,
    pub kubeconfig: PathBuf,
    pub tokens_file: PathBuf,
    pub pki: PkiPaths,
}

impl std::fmt::Debug for InitOutput {
    // Written by hand so that the tokens never end up in a log line through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitOutput")
            .field("admin_token", &"<redacted>")
            .field("viewer_token", &"<redacted>")
            .field("kubeconfig", &self.kubeconfig)
            .field("tokens_file", &self.tokens_file)
            .field("pki", &self.pki)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("a cluster CA already exists at {path}: use another --dir or remove it")]
    CaExists { path: PathBuf },
    #[error("{path} already exists: use another --dir or remove it")]
    Exists { path: PathBuf },
    #[error("no server URL given: pass the https URL of at least one replica")]
    NoServers,
    #[error("server URL {url:?} does not start with https://: replicas serve TLS only")]
    NotHttps { url: String },
    #[error("host {host:?} is neither an IP address nor a valid DNS name: use names like api.example.com or addresses like 10.0.0.5")]
    InvalidHost { host: String },
    #[error("cannot {what}: {source}")]
    Certificate { what: String, source: rcgen::Error },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the kubeconfig: {source}")]
    Kubeconfig { source: serde_yaml::Error },
    #[error(transparent)]
    Tokens(#[from] auth::AuthError),
}

/// Makes the cluster CA (self-signed, 10 years), one certificate for the replicas (SANs: the
/// hosts and localhost, 127.0.0.1, ::1; EKU server and client auth), random admin and viewer
/// tokens, DIR/tokens.csv and DIR/kubeconfig. Refuses to overwrite an existing CA or any other file.
pub fn init(opts: &InitOptions) -> Result<InitOutput, PkiError> {
    if opts.servers.is_empty() {
        return Err(PkiError::NoServers);
    }
    if let Some(url) = opts.servers.iter().find(|u| !u.starts_with("https://")) {
        return Err(PkiError::NotHttps { url: url.clone() });
    }
    let pki = PkiPaths::under(&opts.dir);
    let tokens_file = opts.dir.join("tokens.csv");
    let kubeconfig = opts.dir.join("kubeconfig");
    // Check everything before writing anything, so a refused init leaves no half-made state.
    for path in [pki.ca_cert(), pki.ca_key()] {
        if path.exists() {
            return Err(PkiError::CaExists { path });
        }
    }
    for path in [
        pki.server_cert(),
        pki.server_key(),
        tokens_file.clone(),
        kubeconfig.clone(),
    ] {
        if path.exists() {
            return Err(PkiError::Exists { path });
        }
    }

    let mut hosts = opts.hosts.clone();
    for default in ["localhost", "127.0.0.1", "::1"] {
        if !hosts.iter().any(|h| h == default) {
            hosts.push(default.to_string());
        }
    }
    // Validate hosts before the CA exists on disk.
    let server_params = leaf_params("flotilla-apiserver", &hosts)?;

    let ca_key = KeyPair::generate().map_err(|source| PkiError::Certificate {
        what: "generate the CA key".into(),
        source,
    })?;
    let ca_params = ca_params();
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(|source| PkiError::Certificate {
            what: "sign the CA certificate".into(),
            source,
        })?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let (server_cert_pem, server_key_pem) = sign_leaf(&server_params, &issuer)?;

    create_dir(&opts.dir)?;
    create_dir(&pki.dir)?;
    write_new(&pki.ca_cert(), ca_cert.pem().as_bytes(), 0o644)?;
    write_new(&pki.ca_key(), ca_key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&pki.server_cert(), server_cert_pem.as_bytes(), 0o644)?;
    write_new(&pki.server_key(), server_key_pem.as_bytes(), 0o600)?;

    let admin_token = auth::TokenFile::append(&tokens_file, "admin", &Role::Admin)?;
    let viewer_token = auth::TokenFile::append(&tokens_file, "viewer", &Role::Viewer)?;

    let config = kubeconfig_yaml(&opts.servers, ca_cert.pem().as_bytes(), &admin_token)?;
    write_new(&kubeconfig, config.as_bytes(), 0o600)?;

    tracing::info!(dir = %opts.dir.display(), "made the cluster CA, certificates, tokens and kubeconfig");
    Ok(InitOutput {
        admin_token,
        viewer_token,
        kubeconfig,
        tokens_file,
        pki,
    })
}

/// Signs a further certificate with the cluster CA (for a replica on another machine or a
/// node agent), valid for server and client authentication. Refuses to overwrite files.
pub fn issue(
    pki: &PkiPaths,
    common_name: &str,
    hosts: &[String],
    out_cert: &Path,
    out_key: &Path,
) -> Result<(), PkiError> {
    for path in [out_cert, out_key] {
        if path.exists() {
            return Err(PkiError::Exists {
                path: path.to_path_buf(),
            });
        }
    }
    let (cert_pem, key_pem) = sign_with_ca(pki, common_name, hosts, LeafUsage::ServerAndClient)?;
    write_new(out_cert, cert_pem.as_bytes(), 0o644)?;
    write_new(out_key, key_pem.as_bytes(), 0o600)?;
    Ok(())
}

/// A node agent's serving certificate, signed by the cluster CA and returned as (certificate
/// PEM, key PEM) without touching the disk (the join hands both to the agent). Its EKU is server
/// authentication only: a certificate with client authentication would also open the replicas'
/// peer port, which trusts any client certificate the cluster CA signed.
pub fn node_serving_cert(pki: &PkiPaths, node: &str, hosts: &[String]) -> Result<(String, String), PkiError> {
    sign_with_ca(pki, &format!("system:node:{node}"), hosts, LeafUsage::ServerOnly)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum LeafUsage {
    ServerAndClient,
    ServerOnly,
}

fn sign_with_ca(pki: &PkiPaths, common_name: &str, hosts: &[String], usage: LeafUsage) -> Result<(String, String), PkiError> {
    let ca_cert_pem = read_string(&pki.ca_cert())?;
    let ca_key_pem = read_string(&pki.ca_key())?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|source| PkiError::Certificate {
        what: format!("parse the CA key {}", pki.ca_key().display()),
        source,
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, &ca_key).map_err(|source| {
        PkiError::Certificate {
            what: format!("parse the CA certificate {}", pki.ca_cert().display()),
            source,
        }
    })?;
    let mut params = leaf_params(common_name, hosts)?;
    if usage == LeafUsage::ServerOnly {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    }
    sign_leaf(&params, &issuer)
}

/// How long the CA and the certificates it signs are valid. One long validity for both keeps
/// a self-hosted cluster free of renewal chores; rotating means running `init` into a new dir.
const VALIDITY_DAYS: i64 = 3650;

fn validity() -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    // Start a day early so that machines whose clocks lag a little still accept the certificates.
    (
        now - time::Duration::days(1),
        now + time::Duration::days(VALIDITY_DAYS),
    )
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "flotilla-ca");
    dn.push(DnType::OrganizationName, "flotilla");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (params.not_before, params.not_after) = validity();
    params
}

fn leaf_params(common_name: &str, hosts: &[String]) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    for host in hosts {
        let san = match host.parse::<IpAddr>() {
            Ok(ip) => rcgen::SanType::IpAddress(ip),
            Err(_) => {
                let invalid = || PkiError::InvalidHost { host: host.clone() };
                // rcgen only checks that the name is ASCII; TLS clients would never match
                // anything else, so refuse it here with a clear message.
                if !valid_dns_name(host) {
                    return Err(invalid());
                }
                rcgen::SanType::DnsName(
                    host.to_ascii_lowercase()
                        .try_into()
                        .map_err(|_| invalid())?,
                )
            }
        };
        params.subject_alt_names.push(san);
    }
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "flotilla");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    (params.not_before, params.not_after) = validity();
    Ok(params)
}

/// Returns (certificate PEM, private key PEM).
fn sign_leaf(
    params: &CertificateParams,
    issuer: &Issuer<'_, &KeyPair>,
) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate().map_err(|source| PkiError::Certificate {
        what: "generate a certificate key".into(),
        source,
    })?;
    let cert = params
        .signed_by(&key, issuer)
        .map_err(|source| PkiError::Certificate {
            what: "sign a certificate with the CA".into(),
            source,
        })?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// kubectl's kubeconfig format, limited to what we write.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig {
    api_version: &'static str,
    kind: &'static str,
    clusters: Vec<Named<Cluster>>,
    users: Vec<NamedUser>,
    contexts: Vec<NamedContext>,
    current_context: &'static str,
}

#[derive(Serialize)]
struct Named<T> {
    name: &'static str,
    cluster: T,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    server: String,
    certificate_authority_data: String,
    extensions: Vec<NamedExtension>,
}

#[derive(Serialize)]
struct NamedExtension {
    name: &'static str,
    extension: ServersExtension,
}

/// Every replica's URL, so that clients can fail over when `server` is down. kubectl keeps
/// unknown cluster extensions as they are (checked with `kubectl config view`).
#[derive(Serialize)]
struct ServersExtension {
    servers: Vec<String>,
}

#[derive(Serialize)]
struct NamedUser {
    name: &'static str,
    user: User,
}

#[derive(Serialize)]
struct User {
    token: String,
}

#[derive(Serialize)]
struct NamedContext {
    name: &'static str,
    context: Context,
}

#[derive(Serialize)]
struct Context {
    cluster: &'static str,
    user: &'static str,
    namespace: &'static str,
}

fn kubeconfig_yaml(servers: &[String], ca_pem: &[u8], token: &str) -> Result<String, PkiError> {
    let config = Kubeconfig {
        api_version: "v1",
        kind: "Config",
        clusters: vec![Named {
            name: "flotilla",
            cluster: Cluster {
                server: servers[0].clone(),
                certificate_authority_data: base64::engine::general_purpose::STANDARD
                    .encode(ca_pem),
                extensions: vec![NamedExtension {
                    name: "flotilla",
                    extension: ServersExtension {
                        servers: servers.to_vec(),
                    },
                }],
            },
        }],
        users: vec![NamedUser {
            name: "admin",
            user: User {
                token: token.to_string(),
            },
        }],
        contexts: vec![NamedContext {
            name: "flotilla",
            context: Context {
                cluster: "flotilla",
                user: "admin",
                namespace: "default",
            },
        }],
        current_context: "flotilla",
    };
    serde_yaml::to_string(&config).map_err(|source| PkiError::Kubeconfig { source })
}

/// A host name as certificates carry it: dot-separated labels of letters, digits and inner
/// hyphens, optionally starting with a `*.` wildcard.
fn valid_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn create_dir(dir: &Path) -> Result<(), PkiError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| PkiError::Write {
            path: dir.to_path_buf(),
            source,
        })
}

/// Creates `path` (failing if it exists) with `mode` from the start, so a key is never readable
/// by others even for a moment.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    file.write_all(contents).map_err(err)?;
    file.sync_all().map_err(err)
}

fn read_string(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &Path) -> InitOptions {
        InitOptions {
            dir: dir.to_path_buf(),
            hosts: vec!["api.example.test".into(), "10.0.0.5".into()],
            servers: vec![
                "https://10.0.0.5:6443".into(),
                "https://10.0.0.6:6443".into(),
            ],
        }
    }

    #[test]
    fn init_writes_files_with_private_modes() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let out = init(&opts(tmp.path())).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&out.pki.ca_key()), 0o600);
        assert_eq!(mode(&out.pki.server_key()), 0o600);
        assert_eq!(mode(&out.kubeconfig), 0o600);
        assert_eq!(mode(&out.tokens_file), 0o600);
        assert_eq!(mode(&out.pki.ca_cert()), 0o644);
        assert_eq!(out.admin_token.len(), 64);
        assert_ne!(out.admin_token, out.viewer_token);
        assert!(!format!("{out:?}").contains(&out.admin_token));
    }

    #[test]
    fn kubeconfig_has_every_server_and_the_admin_token() {
        let tmp = tempfile::tempdir().unwrap();
        let out = init(&opts(tmp.path())).unwrap();
        let text = fs::read_to_string(&out.kubeconfig).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let cluster = &doc["clusters"][0]["cluster"];
        assert_eq!(cluster["server"].as_str(), Some("https://10.0.0.5:6443"));
        let servers = &cluster["extensions"][0]["extension"]["servers"];
        assert_eq!(servers[1].as_str(), Some("https://10.0.0.6:6443"));
        let ca = base64::engine::general_purpose::STANDARD
            .decode(cluster["certificate-authority-data"].as_str().unwrap())
            .unwrap();
        assert_eq!(ca, fs::read(out.pki.ca_cert()).unwrap());
        assert_eq!(
            doc["users"][0]["user"]["token"].as_str(),
            Some(out.admin_token.as_str())
        );
        assert_eq!(doc["current-context"].as_str(), Some("flotilla"));
        assert_eq!(
            doc["contexts"][0]["context"]["namespace"].as_str(),
            Some("default")
        );
    }

    #[test]
    fn bad_input_is_refused_before_writing() {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = opts(tmp.path());
        o.hosts.push("not a host!".into());
        let err = init(&o).unwrap_err();
        assert!(matches!(err, PkiError::InvalidHost { .. }), "{err}");
        for bad in ["-a.example", "a..b", "", "a_b.example", "é.example"] {
            assert!(!valid_dns_name(bad), "{bad:?}");
        }
        for good in ["localhost", "api.Example.com", "*.flotilla.test", "n-1"] {
            assert!(valid_dns_name(good), "{good:?}");
        }
        assert!(!PkiPaths::under(tmp.path()).ca_cert().exists());

        let mut o = opts(tmp.path());
        o.servers = vec!["http://10.0.0.5:6443".into()];
        assert!(matches!(init(&o), Err(PkiError::NotHttps { .. })));
        o.servers.clear();
        assert!(matches!(init(&o), Err(PkiError::NoServers)));
        assert!(!PkiPaths::under(tmp.path()).dir.exists());
    }

    #[test]
    fn issue_refuses_to_overwrite_and_needs_a_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = PkiPaths::under(tmp.path());
        let cert = tmp.path().join("n.crt");
        let key = tmp.path().join("n.key");
        assert!(matches!(
            issue(&pki, "n", &[], &cert, &key),
            Err(PkiError::Read { .. })
        ));
        init(&opts(tmp.path())).unwrap();
        issue(&pki, "n", &["node1".into()], &cert, &key).unwrap();
        assert!(matches!(
            issue(&pki, "n", &[], &cert, &key),
            Err(PkiError::Exists { .. })
        ));
    }

    #[test]
    fn node_serving_certs_serve_only() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = PkiPaths::under(tmp.path());
        init(&opts(tmp.path())).unwrap();
        let (cert, key) = node_serving_cert(&pki, "n1", &["n1".into(), "10.0.0.7".into()]).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        use rustls_pki_types::pem::PemObject as _;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        // the DER encodings of the OIDs id-kp-serverAuth and id-kp-clientAuth
        let server_auth = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
        let client_auth = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
        let has = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
        assert!(has(&server_auth));
        assert!(!has(&client_auth));
        assert!(has(&[10, 0, 0, 7]), "the IP address is a subject alternative name");
        let (replica, _) = sign_with_ca(&pki, "r", &[], LeafUsage::ServerAndClient).unwrap();
        let der = rustls_pki_types::CertificateDer::from_pem_slice(replica.as_bytes()).unwrap();
        assert!(der.windows(client_auth.len()).any(|w| w == client_auth));
        assert!(matches!(
            node_serving_cert(&pki, "n1", &["bad host!".into()]),
            Err(PkiError::InvalidHost { .. })
        ));
    }
}
