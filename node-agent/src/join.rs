//! The node's credentials: joining the cluster once with a bootstrap token, or taking a given
//! kubeconfig, and the serving certificate of the agent's HTTPS server.
//!
//! A join answers a node token (written to `D/kubeconfig`, 0600) and a serving certificate
//! signed by the cluster CA (written to `D/pki/`). A restarted agent finds `D/kubeconfig` and
//! does not join again. With `--kubeconfig` (tests, simulations) there is no join: the serving
//! certificate is self-signed, generated once and kept in `D/pki/`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use api::client::{Config, Kubeconfig};
use serde::{Deserialize, Serialize};

/// Where the node's API credential comes from.
#[derive(Clone, Debug)]
pub enum CredentialSource {
    /// `--kubeconfig FILE`.
    Kubeconfig(PathBuf),
    /// `--server URL --ca-file F --bootstrap-token T`.
    Bootstrap { server: String, ca_file: PathBuf, token: String },
}

/// What the agent runs with.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The API client configuration (servers, CA, node token).
    pub config: Config,
    /// PEM of the CA that signs the client certificates the HTTPS server accepts.
    pub client_ca_pem: Vec<u8>,
    /// PEM of the serving certificate chain and its key.
    pub serving_cert_pem: Vec<u8>,
    pub serving_key_pem: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("cannot {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("cannot load the kubeconfig {path}: {source}")]
    Kubeconfig { path: PathBuf, source: api::client::ClientError },
    #[error("the kubeconfig {path} names no certificate authority: add certificate-authority-data so the agent can check the apiserver's client certificates")]
    NoCa { path: PathBuf },
    #[error("no credential: pass --kubeconfig FILE, or --server URL --ca-file F --bootstrap-token T to join")]
    NoSource,
    #[error("joining through {url} failed: {source}: check --server and that the apiserver is up")]
    Request { url: String, source: reqwest::Error },
    #[error("joining through {url} was refused ({status}): {body}: check the bootstrap token")]
    Refused { url: String, status: u16, body: String },
    #[error("the CA file {path} is not a usable certificate: {source}")]
    Ca { path: PathBuf, source: reqwest::Error },
    #[error("cannot generate the serving certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The join request body (the apiserver's `/flotilla/v1/join` contract).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    pub node_name: String,
    pub addresses: Vec<String>,
}

/// The join answer: PEM strings and the node's token.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinResponse {
    pub token: String,
    pub user: String,
    pub ca_cert: String,
    pub serving_cert: String,
    pub serving_key: String,
}

/// `D/kubeconfig`, `D/pki/ca.crt`, `D/pki/serving.crt`, `D/pki/serving.key`.
pub fn kubeconfig_path(data_dir: &Path) -> PathBuf {
    data_dir.join("kubeconfig")
}

/// Finds or makes the node's credentials: `--kubeconfig` wins; else a `D/kubeconfig` of an
/// earlier join; else a join with the bootstrap token.
pub async fn ensure_credentials(
    data_dir: &Path,
    node_name: &str,
    node_ip: &str,
    source: Option<&CredentialSource>,
) -> Result<Credentials, JoinError> {
    let pki = data_dir.join("pki");
    let stored = kubeconfig_path(data_dir);
    let kubeconfig = match source {
        Some(CredentialSource::Kubeconfig(path)) => path.clone(),
        _ if stored.is_file() => stored.clone(),
        Some(CredentialSource::Bootstrap { server, ca_file, token }) => {
            join(data_dir, server, ca_file, token, node_name, node_ip).await?;
            stored.clone()
        }
        None => return Err(JoinError::NoSource),
    };
    let config = Config::from_kubeconfig(&kubeconfig, None)
        .map_err(|source| JoinError::Kubeconfig { path: kubeconfig.clone(), source })?;
    let client_ca_pem = config.ca_pem.clone().ok_or(JoinError::NoCa { path: kubeconfig.clone() })?;
    let (cert_path, key_path) = (pki.join("serving.crt"), pki.join("serving.key"));
    if !cert_path.is_file() || !key_path.is_file() {
        let (cert, key) = self_signed(node_name, node_ip)?;
        tracing::info!(path = %cert_path.display(), "no serving certificate from a join: generated a self-signed one");
        write_private(&cert_path, cert.as_bytes(), 0o644)?;
        write_private(&key_path, key.as_bytes(), 0o600)?;
    }
    let read = |path: &Path| fs::read(path).map_err(|source| JoinError::Io { action: "read", path: path.to_path_buf(), source });
    Ok(Credentials { config, client_ca_pem, serving_cert_pem: read(&cert_path)?, serving_key_pem: read(&key_path)? })
}

/// A self-signed serving certificate for the node's name and address (PEM cert, PEM key).
pub fn self_signed(node_name: &str, node_ip: &str) -> Result<(String, String), JoinError> {
    let mut names = vec![node_name.to_string(), "localhost".to_string()];
    if !node_ip.is_empty() {
        names.push(node_ip.to_string());
    }
    let certified = rcgen::generate_simple_self_signed(names)?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

async fn join(
    data_dir: &Path,
    server: &str,
    ca_file: &Path,
    token: &str,
    node_name: &str,
    node_ip: &str,
) -> Result<(), JoinError> {
    let ca_pem = fs::read(ca_file).map_err(|source| JoinError::Io { action: "read", path: ca_file.to_path_buf(), source })?;
    let ca = reqwest::Certificate::from_pem(&ca_pem).map_err(|source| JoinError::Ca { path: ca_file.to_path_buf(), source })?;
    let url = format!("{}/flotilla/v1/join", server.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|source| JoinError::Request { url: url.clone(), source })?;
    let body = JoinRequest { node_name: node_name.to_string(), addresses: vec![node_ip.to_string()] };
    let response = client
        .post(&url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .map_err(|source| JoinError::Request { url: url.clone(), source })?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(JoinError::Refused { url, status: status.as_u16(), body });
    }
    let answer: JoinResponse = response.json().await.map_err(|source| JoinError::Request { url: url.clone(), source })?;
    tracing::info!(user = %answer.user, "joined the cluster");

    let pki = data_dir.join("pki");
    write_private(&pki.join("ca.crt"), answer.ca_cert.as_bytes(), 0o644)?;
    write_private(&pki.join("serving.crt"), answer.serving_cert.as_bytes(), 0o644)?;
    write_private(&pki.join("serving.key"), answer.serving_key.as_bytes(), 0o600)?;
    let cluster_name = "flotilla";
    let mut kubeconfig = Kubeconfig::new_admin(cluster_name, &[server.to_string()], answer.ca_cert.as_bytes(), &answer.token);
    // The user entry is named after the identity the token stands for, not "admin".
    for user in &mut kubeconfig.users {
        user.name = answer.user.clone();
    }
    for context in &mut kubeconfig.contexts {
        context.context.user = answer.user.clone();
    }
    let path = kubeconfig_path(data_dir);
    let text = serde_yaml::to_string(&kubeconfig)
        .map_err(|e| JoinError::Io { action: "serialize", path: path.clone(), source: std::io::Error::other(e) })?;
    // Written last: its presence means the join is complete.
    write_private(&path, text.as_bytes(), 0o600)
}

/// Writes a file atomically with `mode`, creating its directory.
fn write_private(path: &Path, data: &[u8], mode: u32) -> Result<(), JoinError> {
    let io = |action: &'static str, source| JoinError::Io { action, path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| io("create the directory of", e))?;
    }
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).map_err(|e| io("create", e))?;
    file.write_all(data).map_err(|e| io("write", e))?;
    file.sync_all().map_err(|e| io("sync", e))?;
    fs::rename(&tmp, path).map_err(|e| io("rename", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_certificate_is_pem() {
        let (cert, key) = self_signed("node-1", "10.0.0.1").expect("generate");
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.contains("PRIVATE KEY"));
    }

    #[test]
    fn join_request_uses_camel_case() {
        let body = JoinRequest { node_name: "n1".into(), addresses: vec!["10.0.0.1".into()] };
        assert_eq!(serde_json::to_string(&body).expect("json"), r#"{"nodeName":"n1","addresses":["10.0.0.1"]}"#);
    }
}
