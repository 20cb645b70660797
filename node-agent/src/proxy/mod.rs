//! The service proxy: keeps the node's nftables table `inet flotilla-svc-<8 hex>` in step with
//! the cluster's Services and Endpoints, so that a ClusterIP (from pods and from the node
//! itself) and a NodePort (on the node's addresses) reach a random ready endpoint.
//!
//! Kernel rules rather than a userspace relay: `benches/service.rs` measures both against the
//! direct pod IP, and DNAT in the kernel costs next to nothing per request while a relay copies
//! every byte twice through the agent (the figures are in ARCHITECTURE.md).
//!
//! [`watch_services`] keeps a [`ServiceState`] from two watchers; [`run_on`] renders it with
//! [`rules`] (a pure function) a short debounce after each change and, when the text changed
//! (and again every resync period in case someone flushed it), brings the table in step in one
//! `nft -f` transaction. The table is made whole the first time; after that it is changed in
//! place (chains and maps flushed and refilled, stale chains deleted), never replaced: replacing
//! it would unregister and register its NAT hooks again, and a connection's first packet that
//! met the table in between would get no DNAT (a lost request during a rolling update). The
//! table is deleted on shutdown.

pub mod rules;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use api::client::watcher::{watcher, Event};
use api::client::{Api, Client, ListParams};
use api::core::{Endpoints, Service};
use futures::StreamExt as _;
use runtime::network::nft::{self, NftError};
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;

/// The nftables family of the service table.
pub const FAMILY: &str = "inet";

/// Why the proxy stopped or could not apply its rules.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot apply service table {table}: {source}")]
    Apply { table: String, source: NftError },
    #[error("cannot delete service table {table}: {source}")]
    Delete { table: String, source: NftError },
    #[error("cannot set {path} (needed for NodePorts on 127.0.0.1): {source}: run the agent as root")]
    Sysctl { path: String, source: std::io::Error },
}

/// What the proxy is started with.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The node's name; the table name is derived from it.
    pub node_name: String,
    /// Addresses on which NodePorts answer. A loopback address here turns on
    /// `net.ipv4.conf.all.route_localnet`, which DNAT from 127.0.0.1 to a pod needs.
    pub node_addresses: Vec<Ipv4Addr>,
    /// How long to wait after a change for more changes before rendering.
    pub debounce: Duration,
    /// How often the table is re-applied even when nothing changed.
    pub resync: Duration,
}

/// Services and Endpoints of the whole cluster, as the watchers last saw them.
#[derive(Clone, Debug, Default)]
pub struct ServiceState {
    /// By (namespace, name).
    pub services: BTreeMap<(String, String), Service>,
    /// By (namespace, name).
    pub endpoints: BTreeMap<(String, String), Endpoints>,
    /// True once both kinds have been listed completely; until then the state is partial and
    /// rendering it would drop rules that are still valid.
    pub synced: bool,
}

impl ProxyConfig {
    pub fn new(node_name: &str, node_addresses: Vec<Ipv4Addr>) -> ProxyConfig {
        ProxyConfig {
            node_name: node_name.to_string(),
            node_addresses,
            debounce: Duration::from_millis(50),
            resync: Duration::from_secs(60),
        }
    }
}

impl ServiceState {
    /// The proxied ports, as [`rules::service_ports`] computes them.
    pub fn service_ports(&self) -> Vec<rules::ServicePort> {
        let services: Vec<Service> = self.services.values().cloned().collect();
        let endpoints: Vec<Endpoints> = self.endpoints.values().cloned().collect();
        rules::service_ports(&services, &endpoints)
    }
}

/// The name of a node's service table: `flotilla-svc-` and the first 8 hex digits of the
/// SHA-256 of the node name (node names can be longer than nft allows, and contain dots).
pub fn table_name(node_name: &str) -> String {
    let digest = Sha256::digest(node_name.as_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("flotilla-svc-{hex}")
}

/// Watches Services and Endpoints and keeps the node's service table in step until `shutdown`
/// completes; then deletes the table.
pub async fn run(
    client: Client,
    node_name: String,
    node_addresses: Vec<Ipv4Addr>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProxyError> {
    let state = watch_services(client);
    run_on(state, ProxyConfig::new(&node_name, node_addresses), shutdown).await
}

/// Starts watching all Services and Endpoints; the returned receiver always holds the latest
/// state. The watching task ends when every receiver is dropped.
pub fn watch_services(client: Client) -> watch::Receiver<Arc<ServiceState>> {
    let (tx, rx) = watch::channel(Arc::new(ServiceState::default()));
    tokio::spawn(async move {
        let mut services = watcher(Api::<Service>::all(client.clone()), ListParams::default());
        let mut endpoints = watcher(Api::<Endpoints>::all(client), ListParams::default());
        let mut state = ServiceState::default();
        let (mut services_listed, mut endpoints_listed) = (false, false);
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                event = services.next() => match event {
                    Some(Ok(event)) => {
                        services_listed |= matches!(event, Event::Restarted(_));
                        apply_event(&mut state.services, event);
                    }
                    Some(Err(error)) => {
                        tracing::debug!(%error, "service watch interrupted; the watcher resumes");
                        continue;
                    }
                    None => return,
                },
                event = endpoints.next() => match event {
                    Some(Ok(event)) => {
                        endpoints_listed |= matches!(event, Event::Restarted(_));
                        apply_event(&mut state.endpoints, event);
                    }
                    Some(Err(error)) => {
                        tracing::debug!(%error, "endpoints watch interrupted; the watcher resumes");
                        continue;
                    }
                    None => return,
                },
            }
            state.synced = services_listed && endpoints_listed;
            tx.send_replace(Arc::new(state.clone()));
        }
    });
    rx
}

/// Keeps the table of `config.node_name` equal to the rendering of `state` until `shutdown`
/// completes or the state's sender goes away; then deletes the table. Failures to apply are
/// logged and retried every second.
pub async fn run_on(
    mut state: watch::Receiver<Arc<ServiceState>>,
    config: ProxyConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProxyError> {
    let table = table_name(&config.node_name);
    if config.node_addresses.iter().any(Ipv4Addr::is_loopback) {
        let path = "/proc/sys/net/ipv4/conf/all/route_localnet";
        tokio::fs::write(path, "1").await.map_err(|source| ProxyError::Sysctl { path: path.into(), source })?;
    }
    tokio::pin!(shutdown);
    let mut applied: Option<String> = None;
    let mut resync = tokio::time::interval(config.resync);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    state.mark_changed();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            changed = state.changed() => {
                if changed.is_err() {
                    break;
                }
                // Endpoints of a rollout change in bursts: let them settle, then render once.
                tokio::time::sleep(config.debounce).await;
            }
            _ = resync.tick() => applied = None,
            _ = retry.tick(), if applied.is_none() => {}
        }
        let current = state.borrow_and_update().clone();
        if !current.synced {
            continue;
        }
        let ruleset = rules::ruleset(&current.service_ports(), &config.node_addresses);
        let body = ruleset.body();
        if applied.as_deref() == Some(body.as_str()) {
            continue;
        }
        match sync_table(&table, &ruleset, &body).await {
            Ok(()) => {
                tracing::debug!(table, "service table applied");
                applied = Some(body);
            }
            Err(source) => {
                tracing::warn!(error = %ProxyError::Apply { table: table.clone(), source }, "retrying in 1s");
                applied = None;
            }
        }
    }
    cleanup(&config.node_name).await
}

/// Brings table `table` in step with `ruleset` (whose body is `body`): in place when the table
/// exists, else made whole. A failed in-place change (e.g. a table left by an older agent with
/// other map types) falls back to replacing the table.
async fn sync_table(table: &str, ruleset: &rules::Ruleset, body: &str) -> Result<(), NftError> {
    let existing = match nft::list_table(FAMILY, table).await {
        Ok(listing) => nft::chain_names(&listing),
        Err(_) => return nft::apply_table(FAMILY, table, body).await,
    };
    match nft::apply_script(FAMILY, table, &ruleset.sync_script(FAMILY, table, &existing)).await {
        Ok(()) => Ok(()),
        Err(error) => {
            tracing::warn!(%error, table, "cannot change the service table in place; replacing it");
            nft::apply_table(FAMILY, table, body).await
        }
    }
}

/// Deletes the service table of `node_name` (for shutdown, and for tools that tear a node down).
pub async fn cleanup(node_name: &str) -> Result<(), ProxyError> {
    let table = table_name(node_name);
    nft::delete_table(FAMILY, &table).await.map(|_| ()).map_err(|source| ProxyError::Delete { table, source })
}

fn apply_event<K>(map: &mut BTreeMap<(String, String), K>, event: Event<K>)
where
    K: k8s_openapi::Metadata<Ty = api::meta::ObjectMeta>,
{
    let key = |k: &K| {
        let m = k.metadata();
        (m.namespace.clone().unwrap_or_default(), m.name.clone().unwrap_or_default())
    };
    match event {
        Event::Restarted(items) => {
            map.clear();
            for item in items {
                map.insert(key(&item), item);
            }
        }
        Event::Applied(item) => {
            map.insert(key(&item), item);
        }
        Event::Deleted(item) => {
            map.remove(&key(&item));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_short_stable_and_valid_for_nft() {
        let name = table_name("node-1.example.com");
        assert_eq!(name, table_name("node-1.example.com"));
        assert_ne!(name, table_name("node-2.example.com"));
        assert_eq!(name.len(), "flotilla-svc-".len() + 8);
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'), "{name}");
    }

    #[test]
    fn watch_events_keep_the_map_by_namespace_and_name() {
        let svc = |ns: &str, name: &str| Service {
            metadata: api::meta::ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut map = BTreeMap::new();
        apply_event(&mut map, Event::Restarted(vec![svc("a", "x"), svc("b", "x")]));
        apply_event(&mut map, Event::Applied(svc("a", "y")));
        apply_event(&mut map, Event::Deleted(svc("b", "x")));
        let keys: Vec<String> = map.keys().map(|(n, s)| format!("{n}/{s}")).collect();
        assert_eq!(keys, ["a/x", "a/y"]);
        apply_event(&mut map, Event::Restarted(vec![]));
        assert!(map.is_empty());
    }
}
