//! Pod networking on this node: once the Node has `spec.podCIDR` (the node lifecycle controller
//! allocates it), a bridge `flb-<hash>` with the podCIDR's gateway (.1), forwarding on, and the
//! node's nftables table `inet flotilla-<hash>` (masquerade, hostPorts); per pod a veth pair
//! (`flv-<uid prefix>` on the bridge, `eth0` in the pod's namespace), an address from the
//! file-backed IPAM (`ipam.json` in the run directory, [`crate::rundir`]), a default route via the gateway, and the pod's
//! resolv.conf and hosts files. `<hash>` is the first 8 hex digits of sha256(node name), which
//! `deploy/local-cluster` also computes to clean up.
//!
//! Layout: [`pod`] (the pod's files), [`hostport`] (the nftables table, pure), [`routes`]
//! (routes to other nodes' podCIDRs). Services and DNS are the proxy's, in tables of their own.

pub mod hostport;
pub mod pod;
pub mod routes;

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use api::client::{Api, Client};
use api::core::{Node, Pod};
use runtime::network::ipam::{self, Ipam, IpamError, Ipv4Net};
use runtime::network::link::{LinkError, Netlink, VethConfig};
use runtime::network::nft::{self, NftError};
use sha2::{Digest, Sha256};
use tokio::sync::{watch, Mutex};

use hostport::{HostPort, TableConfig};

/// The cluster's pod CIDR; every node's podCIDR is a /24 of it.
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
/// The nftables family of the node's table.
pub const TABLE_FAMILY: &str = "inet";
/// The pod's interface inside its namespace.
pub const POD_INTERFACE: &str = "eth0";

/// The node's network, shared by the pod workers once it is up.
pub type NetworkSlot = watch::Receiver<Option<Arc<NodeNetwork>>>;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error("the node's spec.podCIDR {0:?} is not an IPv4 CIDR: fix the Node or let the controllers allocate one")]
    BadCidr(String),
    #[error("cannot write the pod's network files in {path}: {source}")]
    Files { path: PathBuf, source: std::io::Error },
}

/// `sha256(node name)`'s first 8 hex digits, which names the node's bridge and table.
pub fn node_hash(node_name: &str) -> String {
    let digest = Sha256::digest(node_name.as_bytes());
    digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// The node's bridge: `flb-<hash>`.
pub fn bridge_name(node_name: &str) -> String {
    format!("flb-{}", node_hash(node_name))
}

/// The node's nftables table (family [`TABLE_FAMILY`]): `flotilla-<hash>`.
pub fn table_name(node_name: &str) -> String {
    format!("flotilla-{}", node_hash(node_name))
}

/// A pod's host-side veth: `flv-` and the first 8 hex digits of its uid.
pub fn veth_name(pod_uid: &str) -> String {
    let hex: String = pod_uid.chars().filter(char::is_ascii_hexdigit).take(8).collect();
    format!("flv-{}", hex.to_ascii_lowercase())
}

/// What [`NodeNetwork::setup`] needs.
#[derive(Clone)]
pub struct NetworkConfig {
    pub client: Client,
    pub node_name: String,
    /// The node's InternalIP (`None` when it is not IPv4: then no routes to other nodes).
    pub node_ip: Option<Ipv4Addr>,
    pub pod_cidr: Ipv4Net,
    pub dirs: StateDirs,
}

/// Where the agent keeps state: the IPAM file lives in the run directory (addresses die with
/// the pods' namespaces at a reboot); an older agent kept it in the data directory.
#[derive(Clone, Debug)]
pub struct StateDirs {
    pub data_dir: PathBuf,
    pub run_dir: PathBuf,
}

/// This node's pod network.
pub struct NodeNetwork {
    pub client: Client,
    pub node_name: String,
    pub node_ip: Option<Ipv4Addr>,
    pub pod_cidr: Ipv4Net,
    pub cluster_cidr: Ipv4Net,
    /// The podCIDR's .1: the bridge's address, the pods' default gateway and DNS server.
    pub gateway: Ipv4Addr,
    pub bridge: String,
    pub table: String,
    pub netlink: Netlink,
    state: Mutex<State>,
}

struct State {
    ipam: Ipam,
    host_ports: BTreeMap<String, Vec<HostPort>>,
    /// The table body last applied, to skip identical re-applies.
    applied: Option<String>,
}

impl NodeNetwork {
    /// Brings up the bridge, forwarding and the node's table; idempotent.
    pub async fn setup(config: NetworkConfig) -> Result<Arc<Self>, NetworkError> {
        let cluster_cidr: Ipv4Net = CLUSTER_CIDR.parse().map_err(|_| NetworkError::BadCidr(CLUSTER_CIDR.into()))?;
        let gateway = ipam::gateway(config.pod_cidr);
        let bridge = bridge_name(&config.node_name);
        let netlink = Netlink::connect()?;
        let gateway_net = Ipv4Net::new(gateway, config.pod_cidr.prefix_len()).map_err(|_| NetworkError::BadCidr(config.pod_cidr.to_string()))?;
        netlink.ensure_bridge(&bridge, gateway_net).await?;
        runtime::network::link::set_sysctl("net.ipv4.ip_forward", "1")?;
        // hostPorts reached at 127.0.0.1 are rerouted onto the bridge after DNAT.
        runtime::network::link::set_sysctl(&format!("net.ipv4.conf.{bridge}.route_localnet"), "1")?;
        // On the run directory's tmpfs, unsynced: pods' addresses die with their namespaces at a
        // reboot, and a burst of pods would otherwise allocate one disk flush after the other.
        let ipam_file = config.dirs.run_dir.join("network").join("ipam.json");
        crate::rundir::adopt_file(&config.dirs.data_dir.join("network").join("ipam.json"), &ipam_file);
        let ipam = Ipam::open(&ipam_file, config.pod_cidr)?.without_fsync();
        let network = Arc::new(NodeNetwork {
            client: config.client,
            table: table_name(&config.node_name),
            node_name: config.node_name,
            node_ip: config.node_ip,
            pod_cidr: config.pod_cidr,
            cluster_cidr,
            gateway,
            bridge,
            netlink,
            state: Mutex::new(State { ipam, host_ports: BTreeMap::new(), applied: None }),
        });
        {
            let mut state = network.state.lock().await;
            network.apply_table(&mut state).await?;
        }
        tracing::info!(bridge = %network.bridge, pod_cidr = %network.pod_cidr, table = %network.table, "pod network is up");
        Ok(network)
    }

    /// Connects the pod: its address, veth and default route, its files under `pod_dir`, and
    /// its hostPorts; idempotent, so it is safe after an agent restart. Returns the pod's IP.
    ///
    /// The node's state (addresses, hostPorts, the table) is locked only to allocate the address
    /// and to change the hostPorts: the veth pair and what is set up inside the pod's namespace
    /// belong to this pod alone (the veth is named after its uid, and a pod's worker attaches
    /// and detaches it one at a time), so the pods of a burst set theirs up side by side instead
    /// of one after the other.
    pub async fn attach(&self, pod: &Pod, uid: &str, netns: &Path, pod_dir: &Path) -> Result<Ipv4Addr, NetworkError> {
        let ip = self.state.lock().await.ipam.allocate(uid)?;
        let address = Ipv4Net::new(ip, self.pod_cidr.prefix_len()).map_err(|_| NetworkError::BadCidr(self.pod_cidr.to_string()))?;
        let host_name = veth_name(uid);
        let veth = VethConfig {
            host_name: &host_name,
            bridge: &self.bridge,
            netns,
            name: POD_INTERFACE,
            address,
            gateway: Some(self.gateway),
        };
        self.netlink.ensure_veth(&veth).await?;
        // Off the runtime's workers: creating files can wait on the disk (ext4's inode
        // allocator reads bitmaps), and every pod's netlink requests wait for those workers.
        let (dir, pod_copy, gateway) = (pod_dir.to_path_buf(), pod.clone(), self.gateway);
        let written = tokio::task::spawn_blocking(move || pod::write_files(&dir, &pod_copy, ip, gateway))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        written.map_err(|source| NetworkError::Files { path: pod::files_dir(pod_dir), source })?;
        let ports = hostport::pod_host_ports(pod, ip);
        let mut state = self.state.lock().await;
        if state.host_ports.get(uid).map(Vec::as_slice).unwrap_or(&[]) != ports.as_slice() {
            state.host_ports.insert(uid.to_string(), ports);
            self.apply_table(&mut state).await?;
        }
        Ok(ip)
    }

    /// Disconnects the pod: hostPorts dropped, address freed (under the lock, as in
    /// [`NodeNetwork::attach`]). The veth is left to go with the pod's network namespace, which
    /// the caller removes next: the kernel then destroys the pair in its batched namespace
    /// clean-up, about 2 ms of the rtnl lock per pod where deleting the link by itself holds it
    /// for 21-23 ms (measured for 100 pairs with `ip`), which serialized a burst of deletions on
    /// every agent of the machine. A namespace kept alive by something else leaves its veth on
    /// the bridge until [`NodeNetwork::release_missing`] removes it.
    pub async fn detach(&self, uid: &str) -> Result<(), NetworkError> {
        let mut state = self.state.lock().await;
        if state.host_ports.remove(uid).is_some() {
            self.apply_table(&mut state).await?;
        }
        if let Some(ip) = state.ipam.release(uid)? {
            tracing::debug!(uid, %ip, "released the pod's address");
        }
        Ok(())
    }

    /// Frees what belongs to no pod in `live`: addresses, hostPorts, and veths on this node's
    /// bridge (what a crashed agent or a force-deleted pod left).
    pub async fn release_missing(&self, live: &HashSet<String>) -> Result<(), NetworkError> {
        let mut state = self.state.lock().await;
        for (ip, uid) in state.ipam.release_missing(live)? {
            tracing::info!(uid, %ip, "released the address of a pod that no longer exists");
        }
        let before = state.host_ports.len();
        state.host_ports.retain(|uid, _| live.contains(uid));
        if state.host_ports.len() != before {
            self.apply_table(&mut state).await?;
        }
        let wanted: HashSet<String> = live.iter().map(|uid| veth_name(uid)).collect();
        let Some(bridge) = self.netlink.link_index(&self.bridge).await? else { return Ok(()) };
        for link in self.netlink.links().await? {
            if link.name.starts_with("flv-") && link.controller == Some(bridge) && !wanted.contains(&link.name) {
                tracing::info!(veth = %link.name, "removing the veth of a pod that no longer exists");
                self.netlink.delete_link(&link.name).await?;
            }
        }
        Ok(())
    }

    async fn apply_table(&self, state: &mut State) -> Result<(), NftError> {
        let config = TableConfig { bridge: self.bridge.clone(), pod_cidr: self.pod_cidr, cluster_cidr: self.cluster_cidr };
        let ports: Vec<HostPort> = state.host_ports.values().flatten().cloned().collect();
        let body = hostport::render_table(&config, &ports);
        if state.applied.as_deref() == Some(body.as_str()) {
            return Ok(());
        }
        nft::apply_table(TABLE_FAMILY, &self.table, &body).await?;
        state.applied = Some(body);
        Ok(())
    }
}

/// Waits for the Node's podCIDR, sets the network up (retrying with back-off), routes to the
/// pods of the nodes known now, publishes the network in `slot` (for the pod workers, and the
/// heartbeat, which then reports the node Ready), then keeps the routes to other nodes.
pub async fn run(client: Client, node_name: String, node_ip: String, dirs: StateDirs, slot: watch::Sender<Option<Arc<NodeNetwork>>>) {
    let pod_cidr = wait_for_pod_cidr(&client, &node_name).await;
    let config = NetworkConfig { client, node_name, node_ip: node_ip.parse().ok(), pod_cidr, dirs };
    let mut delay = Duration::from_secs(1);
    let network = loop {
        match NodeNetwork::setup(config.clone()).await {
            Ok(network) => break network,
            Err(e) => {
                tracing::warn!(error = %e, "cannot set up the pod network; retrying in {}s", delay.as_secs());
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    };
    routes::sync_now(&network).await;
    slot.send_replace(Some(network.clone()));
    start_services(&network);
    routes::run(network).await;
}

/// Services for the pods of this node, once the bridge has its gateway address: the Service
/// rules (NodePorts on the node's address and on 127.0.0.1) and the cluster DNS server on the
/// gateway, which the pods' resolv.conf names.
fn start_services(network: &NodeNetwork) {
    let services = crate::proxy::watch_services(network.client.clone());
    let records = crate::dns::records_from(services.clone());
    let mut addresses: Vec<Ipv4Addr> = network.node_ip.into_iter().collect();
    if !addresses.contains(&Ipv4Addr::LOCALHOST) {
        addresses.push(Ipv4Addr::LOCALHOST);
    }
    let config = crate::proxy::ProxyConfig::new(&network.node_name, addresses);
    tokio::spawn(async move {
        if let Err(e) = crate::proxy::run_on(services, config, std::future::pending::<()>()).await {
            tracing::error!(error = %e, "the service proxy stopped; Services no longer follow their endpoints on this node");
        }
    });
    let dns = std::net::SocketAddr::new(network.gateway.into(), 53);
    tokio::spawn(async move {
        if let Err(e) = crate::dns::serve(dns, records).await {
            tracing::error!(error = %e, %dns, "the cluster DNS server stopped");
        }
    });
}

/// Polls the Node until it has a valid IPv4 `spec.podCIDR`.
pub async fn wait_for_pod_cidr(client: &Client, node_name: &str) -> Ipv4Net {
    let api: Api<Node> = Api::all(client.clone());
    let mut told = false;
    loop {
        match api.get_opt(node_name).await {
            Ok(Some(node)) => match node.spec.and_then(|s| s.pod_cidr) {
                Some(cidr) => match cidr.parse::<Ipv4Net>() {
                    Ok(net) => return net.trunc(),
                    Err(_) => tracing::warn!(%cidr, "{}", NetworkError::BadCidr(cidr.clone())),
                },
                None if !told => {
                    tracing::info!("waiting for the node's spec.podCIDR (allocated by the node lifecycle controller)");
                    told = true;
                }
                None => {}
            },
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "cannot read the node for its podCIDR; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_deploy_local_cluster_and_fit_interface_limits() {
        // printf '%s' node-1 | sha256sum | cut -c1-8
        assert_eq!(node_hash("node-1"), "35971be6");
        assert_eq!(bridge_name("node-1"), "flb-35971be6");
        assert_eq!(table_name("node-1"), "flotilla-35971be6");
        assert!(bridge_name("a-very-long-node-name-indeed").len() <= 15);
        assert_eq!(veth_name("0A1B2C3D-4e5f-6789-aaaa-bbbbccccdddd"), "flv-0a1b2c3d");
        assert!(veth_name("0a1b2c3d-4e5f").len() <= 15);
    }
}
