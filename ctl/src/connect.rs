//! Turning the global flags into a client, with kubectl's precedence: flags override the
//! kubeconfig, and `--server` alone is enough when there is no kubeconfig at all.

use anyhow::Context as _;
use api::client::config::kubeconfig_path;
use api::client::{Client, ClientError, Config};

use crate::cli::GlobalArgs;

/// The client configuration for these flags.
pub fn config(global: &GlobalArgs) -> anyhow::Result<Config> {
    let mut config = match kubeconfig_path(global.kubeconfig.as_deref()) {
        Some(path) => Config::from_kubeconfig(&path, global.context.as_deref())?,
        None if !global.servers.is_empty() => Config::new(Vec::new()),
        None => return Err(ClientError::NoKubeconfig.into()),
    };
    if !global.servers.is_empty() {
        config.servers = global.servers.clone();
    }
    if let Some(token) = &global.token {
        config.token = Some(token.clone());
    }
    if let Some(path) = &global.certificate_authority {
        let pem = std::fs::read(path).with_context(|| {
            format!("cannot read certificate authority file {}", path.display())
        })?;
        config.ca_pem = Some(pem);
    }
    if let Some(namespace) = &global.namespace {
        config.namespace = namespace.clone();
    }
    Ok(config)
}

/// A client for these flags.
pub fn client(global: &GlobalArgs) -> anyhow::Result<Client> {
    Ok(Client::new(config(global)?)?)
}
