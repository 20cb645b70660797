//! Docker-like networks for `ctl run`: the default `bridge` network (Linux bridge `flotilla0`,
//! 172.30.0.0/16) and user networks (`ctl network create`, bridge `flbr-<8 hex>`, 172.31.N.0/24),
//! each container on one of them connected by a veth pair into the bridge, published ports
//! (`-p`) as DNAT rules, and outbound traffic masqueraded, all in the nftables table
//! `inet flotilla-docker`.
//!
//! On disk, under the runtime's root: `networks/<name>.json` (a [`Network`]),
//! `networks/<name>/ipam.json` (addresses, [`super::ipam`]), `networks/<name>/endpoints/<id>.json`
//! (one [`Endpoint`] per running container) and `networks/.netns/<id>` (the container's network
//! namespace, bind-mounted so it exists before the container's init joins it). The nftables
//! table is rebuilt from these files, whole, on every change, so it never drifts from them.
//! `networks/.lock` serialises every change among processes (`ctl`s and monitors).
//!
//! Names of containers are resolved through hosts files (see [`super::hosts`]), not through
//! docker's embedded DNS server: Flotilla has no daemon to run one.
//!
//! Published ports reached from the host itself through 127.0.0.1 are DNATed in the output
//! hook like any other; `route_localnet=1` on the bridge lets the rewritten packet leave with its
//! loopback source, and a masquerade rule gives it the bridge's address, as kube-proxy does for
//! node ports. That was chosen over docker's userland proxy because it needs no process per port
//! (a monitor relaying would have to be multi-threaded or poll sockets) and treats UDP alike.
//!
//! Teardown ([`disconnect`]) is synchronous and needs no async runtime beyond a short-lived
//! thread, so the single-threaded monitor can call it when the container exits.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use jiff::Timestamp;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::hosts::{self, HostEntry};
use super::ipam::{Ipam, IpamError, Ipv4Net};
use super::link::{LinkError, Netlink, VethConfig};
use super::nft::NftError;
use super::ports::{self, PortError, PortSpec, Protocol, PublishedPort};
use crate::spec::NetworkMode;

/// The network `ctl run` uses without `--network`, as docker's.
pub const DEFAULT_NETWORK: &str = "bridge";
/// The Linux bridge of the default network.
pub const DEFAULT_BRIDGE: &str = "flotilla0";
/// The subnet of the default network.
pub const DEFAULT_SUBNET: &str = "172.30.0.0/16";
/// The nftables table (family `inet`) holding every rule of `ctl` networks.
pub const NFT_TABLE: &str = "flotilla-docker";
/// Network names docker reserves: they always exist and cannot be created or removed.
pub const PREDEFINED: &[&str] = &["bridge", "host", "none"];

/// One network, as saved in `networks/<name>.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    /// 64 hex digits, as docker's network ids.
    pub id: String,
    /// Always `bridge`.
    pub driver: String,
    /// The Linux bridge (`flotilla0`, `flbr-<8 hex>`).
    pub bridge: String,
    /// `172.31.0.0/24`.
    pub subnet: String,
    pub gateway: Ipv4Addr,
    pub created: Timestamp,
}

impl Network {
    /// The parsed subnet.
    pub fn subnet(&self) -> Result<Ipv4Net, NetworkError> {
        parse_subnet(&self.subnet)
    }
}

/// A running container's place on a network, saved as `networks/<name>/endpoints/<id>.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub container_id: String,
    pub container_name: String,
    pub hostname: String,
    pub network: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// The host end of the veth pair, in the bridge.
    pub veth: String,
    /// The container's network namespace file.
    pub netns: PathBuf,
    pub ports: Vec<PublishedPort>,
}

/// What [`connect`] needs to know of a container.
#[derive(Clone, Debug)]
pub struct Attach<'a> {
    /// The full id.
    pub id: &'a str,
    pub name: &'a str,
    pub hostname: &'a str,
    pub network: &'a str,
    pub ports: &'a [PortSpec],
}

/// Errors of network verbs; messages follow docker's where docker has one.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network {0} not found: list networks with `ctl network ls` or create it with `ctl network create {0}`")]
    NotFound(String),
    #[error("network with name {0} already exists")]
    Exists(String),
    #[error("{0} is a pre-defined network and cannot be removed")]
    PredefinedRemove(String),
    #[error("operation is not permitted on predefined {0} network")]
    Predefined(String),
    #[error("invalid network name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    #[error("invalid subnet {subnet}: {reason}")]
    InvalidSubnet { subnet: String, reason: String },
    #[error("Pool overlaps with other one on this address space: {subnet} overlaps network {other} ({other_subnet}); choose another --subnet")]
    Overlap { subnet: String, other: String, other_subnet: String },
    #[error("no free subnet in 172.31.0.0/16 for a new network: remove a network or give --subnet")]
    NoFreeSubnet,
    #[error("error while removing network: network {name} id {id} has active endpoints ({containers}): stop or remove those containers first")]
    InUse { name: String, id: String, containers: String },
    #[error("conflicting options: port publishing and the container type network mode ({0}): publish ports on a bridge network")]
    PublishConflict(String),
    #[error(transparent)]
    Port(#[from] PortError),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error("{path} is damaged ({source}): fix or remove it")]
    Corrupt { path: PathBuf, source: serde_json::Error },
    #[error("creating the network namespace of container {id}: {reason}")]
    Netns { id: String, reason: String },
}

/// The bind-mounted network namespace of container `id`.
pub fn netns_path(root: &Path, id: &str) -> PathBuf {
    root.join("networks").join(".netns").join(id)
}

/// Creates a user network: `subnet` (CIDR) or the next free 172.31.N.0/24.
pub fn create(root: &Path, name: &str, subnet: Option<&str>) -> Result<Network, NetworkError> {
    if PREDEFINED.contains(&name) || name == "default" {
        return Err(if name == DEFAULT_NETWORK { NetworkError::Exists(name.into()) } else { NetworkError::Predefined(name.into()) });
    }
    if !valid_name(name) {
        return Err(NetworkError::InvalidName(name.to_string()));
    }
    let wanted = subnet.map(parse_subnet).transpose()?;
    let _lock = lock(root)?;
    if network_file(root, name).exists() {
        return Err(NetworkError::Exists(name.to_string()));
    }
    let existing = with_default(root, load_networks(root)?)?;
    let subnet = match wanted {
        Some(net) => {
            if let Some(other) = existing.iter().find(|n| n.subnet().is_ok_and(|s| overlaps(s, net))) {
                return Err(NetworkError::Overlap {
                    subnet: net.to_string(),
                    other: other.name.clone(),
                    other_subnet: other.subnet.clone(),
                });
            }
            net
        }
        None => next_free_subnet(&existing)?,
    };
    let id = random_id();
    let network = Network {
        name: name.to_string(),
        driver: "bridge".into(),
        bridge: format!("flbr-{}", &id[..8]),
        subnet: subnet.to_string(),
        gateway: super::ipam::gateway(subnet),
        created: Timestamp::now(),
        id,
    };
    ensure_bridge(&network)?;
    if let Err(error) = write_json(&network_file(root, name), &network) {
        let _ = delete_bridge(&network.bridge);
        return Err(error);
    }
    if let Err(error) = apply_rules(root) {
        tracing::warn!(%error, "cannot update the nftables rules of ctl networks");
    }
    Ok(network)
}

/// Every bridge network (the default one included), by name.
pub fn list(root: &Path) -> Result<Vec<Network>, NetworkError> {
    let _lock = lock(root)?;
    let mut all = with_default(root, load_networks(root)?)?;
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}

/// A network by name, full id or unique id prefix.
pub fn get(root: &Path, name_or_id: &str) -> Result<Network, NetworkError> {
    let _lock = lock(root)?;
    get_locked(root, name_or_id)
}

/// The endpoints (running containers) of a network.
pub fn endpoints(root: &Path, network: &str) -> Result<Vec<Endpoint>, NetworkError> {
    load_endpoints(root, network)
}

/// Removes a user network and its bridge; refused while containers are connected.
pub fn remove(root: &Path, name_or_id: &str) -> Result<Network, NetworkError> {
    let _lock = lock(root)?;
    let network = get_locked(root, name_or_id)?;
    if network.name == DEFAULT_NETWORK {
        return Err(NetworkError::PredefinedRemove(network.name));
    }
    let connected = load_endpoints(root, &network.name)?;
    if !connected.is_empty() {
        let containers: Vec<&str> = connected.iter().map(|e| e.container_name.as_str()).collect();
        return Err(NetworkError::InUse { name: network.name.clone(), id: network.id.clone(), containers: containers.join(", ") });
    }
    let file = network_file(root, &network.name);
    fs::remove_file(&file).map_err(io_err("removing", &file))?;
    let dir = network_dir(root, &network.name);
    if let Err(error) = fs::remove_dir_all(&dir) {
        if error.kind() != io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), %error, "cannot remove the network's directory");
        }
    }
    delete_bridge(&network.bridge)?;
    apply_rules(root)?;
    Ok(network)
}

/// Checks, before a container is created, that its network exists (`--network NAME`).
pub fn check_mode(root: &Path, mode: &NetworkMode) -> Result<(), NetworkError> {
    match mode {
        NetworkMode::Network(name) => get(root, name).map(drop),
        _ => Ok(()),
    }
}

/// Checks that ports may be published in this mode: docker refuses them without a network and
/// drops them (with a warning) on the host's, whose ports the container binds directly.
pub fn check_publish(mode: &NetworkMode, ports: &[PortSpec]) -> Result<Vec<PortSpec>, NetworkError> {
    match mode {
        _ if ports.is_empty() => Ok(Vec::new()),
        NetworkMode::Network(_) => Ok(ports.to_vec()),
        NetworkMode::Host => {
            tracing::warn!("published ports are discarded when using host network mode");
            Ok(Vec::new())
        }
        other => Err(NetworkError::PublishConflict(other.to_string())),
    }
}

/// Connects container `attach.id` to its network: its network namespace (at [`netns_path`]),
/// a veth pair into the bridge, an address, a default route, its hosts and resolv.conf files in
/// `ROOT/containers/<id>/`, the other containers' hosts files, its published ports. Undone on
/// failure. Runs in the calling thread's network namespace.
pub fn connect(root: &Path, attach: &Attach<'_>) -> Result<Endpoint, NetworkError> {
    let _lock = lock(root)?;
    // A monitor that died may have left the container connected: start from nothing.
    disconnect_locked(root, attach.id)?;
    let connected = connect_locked(root, attach);
    if connected.is_err() {
        if let Err(error) = disconnect_locked(root, attach.id) {
            tracing::warn!(id = attach.id, %error, "cannot undo a failed network connection");
        }
    }
    connected
}

/// Disconnects container `id` from whatever network it is on; does nothing when it is on none.
/// Idempotent, and safe after a crash at any point of [`connect`] or after a reboot.
pub fn disconnect(root: &Path, id: &str) -> Result<(), NetworkError> {
    if !root.join("networks").exists() {
        return Ok(());
    }
    let _lock = lock(root)?;
    disconnect_locked(root, id)
}

/// The container's endpoint, if it is connected.
pub fn endpoint(root: &Path, id: &str) -> Option<Endpoint> {
    let networks = load_networks(root).ok()?;
    networks.iter().find_map(|n| read_json::<Endpoint>(&endpoint_file(root, &n.name, id)).ok())
}

/// The ports a running container publishes (empty when it is stopped, as in docker).
pub fn published_ports(root: &Path, id: &str) -> Vec<PublishedPort> {
    endpoint(root, id).map(|e| e.ports).unwrap_or_default()
}

/// Records the ports container `id` publishes on its next starts (`-p`), after checking its
/// network mode allows them.
pub fn set_published_ports(root: &Path, id: &str, ports: &[PortSpec]) -> Result<(), crate::container::ContainerError> {
    let dir = root.join("containers").join(id);
    let mut st = crate::container::state::load(&dir)?;
    st.spec.ports = check_publish(&st.spec.network, ports)?;
    crate::container::state::save(&dir, &st)
}

/// The table body (chains and rules) for these networks and endpoints: masquerade of each
/// subnet's outbound traffic, DNAT of published ports in prerouting (from outside) and output
/// (from the host itself), masquerade of host-local and hairpin connections to published ports,
/// and no forwarding between different networks.
pub fn rules(networks: &[Network], endpoints: &[Endpoint]) -> String {
    let mut published = String::new();
    let mut ordered: Vec<&Endpoint> = endpoints.iter().collect();
    ordered.sort_by(|a, b| (&a.network, a.ip).cmp(&(&b.network, b.ip)));
    for e in ordered {
        for p in &e.ports {
            let daddr = p.host_ip.map(|ip| format!("ip daddr {ip} ")).unwrap_or_default();
            published.push_str(&format!(
                "    {daddr}{proto} dport {hp} dnat ip to {ip}:{cp}\n",
                proto = p.protocol.as_str(),
                hp = p.host_port,
                ip = e.ip,
                cp = p.container_port
            ));
        }
    }
    let mut post = String::new();
    let mut isolate = String::new();
    let mut sorted: Vec<&Network> = networks.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for n in &sorted {
        post.push_str(&format!(
            "    ip saddr {s} oifname != \"{b}\" masquerade\n    oifname \"{b}\" ip saddr 127.0.0.0/8 masquerade\n    oifname \"{b}\" ct status dnat ip saddr {s} masquerade\n",
            s = n.subnet,
            b = n.bridge
        ));
        // Docker isolates bridge networks from each other; published ports stay reachable.
        for other in sorted.iter().filter(|o| o.bridge != n.bridge) {
            isolate.push_str(&format!("    iifname \"{}\" oifname \"{}\" drop\n", n.bridge, other.bridge));
        }
    }
    format!(
        "  chain prerouting {{\n    type nat hook prerouting priority -100; policy accept;\n    fib daddr type local jump published\n  }}\n\
         \x20 chain output {{\n    type nat hook output priority -100; policy accept;\n    fib daddr type local jump published\n  }}\n\
         \x20 chain published {{\n{published}  }}\n\
         \x20 chain postrouting {{\n    type nat hook postrouting priority 100; policy accept;\n{post}  }}\n\
         \x20 chain forward {{\n    type filter hook forward priority 0; policy accept;\n    ct status dnat accept\n{isolate}  }}"
    )
}

fn get_locked(root: &Path, name_or_id: &str) -> Result<Network, NetworkError> {
    let all = with_default(root, load_networks(root)?)?;
    if let Some(n) = all.iter().find(|n| n.name == name_or_id) {
        return Ok(n.clone());
    }
    let by_id: Vec<&Network> = if !name_or_id.is_empty() && name_or_id.chars().all(|c| c.is_ascii_hexdigit()) {
        all.iter().filter(|n| n.id.starts_with(name_or_id)).collect()
    } else {
        Vec::new()
    };
    match by_id.as_slice() {
        [one] => Ok((*one).clone()),
        _ => Err(NetworkError::NotFound(name_or_id.to_string())),
    }
}

fn connect_locked(root: &Path, attach: &Attach<'_>) -> Result<Endpoint, NetworkError> {
    let network = get_locked(root, attach.network)?;
    let subnet = network.subnet()?;
    let mut taken: HashSet<(Protocol, u16)> = HashSet::new();
    for other in with_default(root, load_networks(root)?)? {
        for e in load_endpoints(root, &other.name)? {
            taken.extend(e.ports.iter().map(|p| (p.protocol, p.host_port)));
        }
    }
    let published = ports::assign(attach.ports, &mut taken)?;
    let mut ipam = Ipam::open(&ipam_file(root, &network.name), subnet)?;
    let ip = ipam.allocate(attach.id)?;
    let netns = netns_path(root, attach.id);
    make_netns(attach.id, &netns)?;
    let endpoint = Endpoint {
        container_id: attach.id.to_string(),
        container_name: attach.name.to_string(),
        hostname: attach.hostname.to_string(),
        network: network.name.clone(),
        ip,
        prefix_len: subnet.prefix_len(),
        gateway: network.gateway,
        veth: veth_name(attach.id),
        netns: netns.clone(),
        ports: published,
    };
    // Saved before the links exist, so a crash from here on is undone by `disconnect`.
    write_json(&endpoint_file(root, &network.name, attach.id), &endpoint)?;
    let address = Ipv4Net::new(ip, subnet.prefix_len()).map_err(|e| NetworkError::InvalidSubnet {
        subnet: network.subnet.clone(),
        reason: e.to_string(),
    })?;
    let gateway = Ipv4Net::new(network.gateway, subnet.prefix_len()).map_err(|e| NetworkError::InvalidSubnet {
        subnet: network.subnet.clone(),
        reason: e.to_string(),
    })?;
    block_on(async {
        let host = Netlink::connect()?;
        host.ensure_bridge(&network.bridge, gateway).await?;
        let veth = VethConfig {
            host_name: &endpoint.veth,
            bridge: &network.bridge,
            netns: &netns,
            name: "eth0",
            address,
            gateway: Some(network.gateway),
        };
        host.ensure_veth(&veth).await?;
        Netlink::connect_in(&netns)?.set_up("lo").await?;
        Ok::<(), NetworkError>(())
    })?;
    super::link::set_sysctl("net.ipv4.ip_forward", "1")?;
    super::link::set_sysctl(&format!("net.ipv4.conf.{}.route_localnet", network.bridge), "1")?;
    let dir = root.join("containers").join(attach.id);
    let resolv = hosts::resolv_conf(&fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
    let resolv_path = dir.join("resolv.conf");
    hosts::write_in_place(&resolv_path, &resolv).map_err(io_err("writing", &resolv_path))?;
    write_hosts(root, &network)?;
    apply_rules(root)?;
    tracing::info!(id = attach.id, network = %network.name, %ip, "connected container");
    Ok(endpoint)
}

fn disconnect_locked(root: &Path, id: &str) -> Result<(), NetworkError> {
    let networks = with_default(root, load_networks(root)?)?;
    let mut touched = Vec::new();
    for network in &networks {
        let file = endpoint_file(root, &network.name, id);
        let had_endpoint = file.exists();
        let mut ipam = Ipam::open(&ipam_file(root, &network.name), network.subnet()?)?;
        let had_ip = ipam.get(id).is_some();
        if !had_endpoint && !had_ip {
            continue;
        }
        // Deleting the host end takes the container's end with it, at once; the namespace
        // itself would take both, but only once the kernel gets to it.
        let veth = veth_name(id);
        block_on(async { Netlink::connect()?.delete_link(&veth).await.map_err(NetworkError::from) })?;
        ipam.release(id)?;
        match fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("removing", &file)(e)),
        }
        touched.push(network.clone());
    }
    remove_netns(&netns_path(root, id))?;
    if touched.is_empty() {
        return Ok(());
    }
    for network in &touched {
        write_hosts(root, network)?;
    }
    apply_rules(root)?;
    tracing::info!(%id, "disconnected container");
    Ok(())
}

/// Rewrites the hosts file of every container on `network`: on user networks each lists the
/// others (by name and short id); on the default bridge, as in docker, only itself.
fn write_hosts(root: &Path, network: &Network) -> Result<(), NetworkError> {
    let members = load_endpoints(root, &network.name)?;
    let user_network = network.name != DEFAULT_NETWORK;
    let peers: Vec<HostEntry> = if user_network {
        members
            .iter()
            .map(|e| HostEntry { ip: e.ip, names: names_of(e) })
            .collect()
    } else {
        Vec::new()
    };
    for e in &members {
        let mut own = vec![e.hostname.clone()];
        if user_network {
            own.extend(names_of(e));
        }
        dedup(&mut own);
        let text = hosts::render(&HostEntry { ip: e.ip, names: own }, &peers);
        let path = root.join("containers").join(&e.container_id).join("hosts");
        if path.parent().is_some_and(Path::exists) {
            hosts::write_in_place(&path, &text).map_err(io_err("writing", &path))?;
        }
    }
    Ok(())
}

fn names_of(e: &Endpoint) -> Vec<String> {
    let short: String = e.container_id.chars().take(12).collect();
    let mut names = vec![e.container_name.clone(), short];
    dedup(&mut names);
    names
}

fn dedup(names: &mut Vec<String>) {
    let mut seen = HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
}

/// Rebuilds the nftables table from the files (see the module doc).
fn apply_rules(root: &Path) -> Result<(), NetworkError> {
    let networks = with_default(root, load_networks(root)?)?;
    let mut all = Vec::new();
    for n in &networks {
        all.extend(load_endpoints(root, &n.name)?);
    }
    let script = super::nft::table_script("inet", NFT_TABLE, &rules(&networks, &all));
    run_nft(&script)
}

/// `nft -f -` run synchronously (the async [`super::nft::apply_table`] needs a runtime the
/// monitor does not have).
fn run_nft(script: &str) -> Result<(), NetworkError> {
    use std::io::Write;
    let table = format!("inet {NFT_TABLE}");
    let spawn = |source| NftError::Spawn { table: table.clone(), source };
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(spawn)?;
    }
    let out = child.wait_with_output().map_err(spawn)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(NftError::Failed { table, stderr }.into());
    }
    Ok(())
}

/// Creates a network namespace bound at `path` (with `lo` brought up later over netlink).
fn make_netns(id: &str, path: &Path) -> Result<(), NetworkError> {
    let err = |reason: String| NetworkError::Netns { id: id.to_string(), reason };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    }
    fs::File::create(path).map_err(io_err("creating", path))?;
    let target = path.to_path_buf();
    // unshare changes only the calling thread's namespace: a thread of its own does it, binds the
    // namespace to the file so it outlives the thread, and ends.
    std::thread::spawn(move || -> Result<(), String> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare: {e}"))?;
        nix::mount::mount(
            Some(Path::new("/proc/thread-self/ns/net")),
            &target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| format!("binding it to {}: {e}", target.display()))
    })
    .join()
    .map_err(|_| err("the thread creating it panicked".into()))?
    .map_err(err)
}

fn remove_netns(path: &Path) -> Result<(), NetworkError> {
    if !path.exists() {
        return Ok(());
    }
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(io_err("unmounting", path)(io::Error::from(e))),
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("removing", path)(e)),
    }
}

fn ensure_bridge(network: &Network) -> Result<(), NetworkError> {
    let subnet = network.subnet()?;
    let address = Ipv4Net::new(network.gateway, subnet.prefix_len())
        .map_err(|e| NetworkError::InvalidSubnet { subnet: network.subnet.clone(), reason: e.to_string() })?;
    block_on(async {
        Netlink::connect()?.ensure_bridge(&network.bridge, address).await?;
        Ok::<(), NetworkError>(())
    })
}

fn delete_bridge(bridge: &str) -> Result<(), NetworkError> {
    block_on(async { Netlink::connect()?.delete_link(bridge).await.map(drop).map_err(NetworkError::from) })
}

/// Runs a netlink future on a current-thread runtime in a thread of its own: callers may be
/// inside an async runtime already (`ctl`) or have none (the monitor). The thread starts in the
/// caller's network namespace.
fn block_on<T: Send>(future: impl std::future::Future<Output = Result<T, NetworkError>> + Send) -> Result<T, NetworkError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|source| NetworkError::Io { action: "starting", path: PathBuf::from("a netlink runtime"), source })?;
                runtime.block_on(future)
            })
            .join()
            .unwrap_or_else(|_| {
                Err(NetworkError::Io {
                    action: "running",
                    path: PathBuf::from("netlink requests"),
                    source: io::Error::other("the netlink thread panicked"),
                })
            })
    })
}

/// The host end of a container's veth: `flc-` and 10 hex digits of its id (15 bytes at most).
fn veth_name(id: &str) -> String {
    format!("flc-{}", &id[..id.len().min(10)])
}

fn lock(root: &Path) -> Result<Flock<fs::File>, NetworkError> {
    let dir = root.join("networks");
    fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
    let path = dir.join(".lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err("opening", &path))?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| io_err("locking", &path)(io::Error::from(e)))
}

fn network_file(root: &Path, name: &str) -> PathBuf {
    root.join("networks").join(format!("{name}.json"))
}

fn network_dir(root: &Path, name: &str) -> PathBuf {
    root.join("networks").join(name)
}

fn ipam_file(root: &Path, name: &str) -> PathBuf {
    network_dir(root, name).join("ipam.json")
}

fn endpoint_file(root: &Path, network: &str, id: &str) -> PathBuf {
    network_dir(root, network).join("endpoints").join(format!("{id}.json"))
}

/// The user networks saved on disk (the default one only once it was first used).
fn load_networks(root: &Path) -> Result<Vec<Network>, NetworkError> {
    let dir = root.join("networks");
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("reading", &dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") {
            out.push(read_json::<Network>(&path)?);
        }
    }
    Ok(out)
}

/// `networks` with the default bridge network added, saving it on first use.
fn with_default(root: &Path, mut networks: Vec<Network>) -> Result<Vec<Network>, NetworkError> {
    if networks.iter().any(|n| n.name == DEFAULT_NETWORK) {
        return Ok(networks);
    }
    let subnet = parse_subnet(DEFAULT_SUBNET)?;
    let network = Network {
        name: DEFAULT_NETWORK.into(),
        id: random_id(),
        driver: "bridge".into(),
        bridge: DEFAULT_BRIDGE.into(),
        subnet: DEFAULT_SUBNET.into(),
        gateway: super::ipam::gateway(subnet),
        created: Timestamp::now(),
    };
    write_json(&network_file(root, DEFAULT_NETWORK), &network)?;
    networks.push(network);
    Ok(networks)
}

fn load_endpoints(root: &Path, network: &str) -> Result<Vec<Endpoint>, NetworkError> {
    let dir = network_dir(root, network).join("endpoints");
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("reading", &dir)(e)),
    };
    let mut out: Vec<Endpoint> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") {
            out.push(read_json(&path)?);
        }
    }
    out.sort_by_key(|e| e.ip);
    Ok(out)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, NetworkError> {
    let bytes = fs::read(path).map_err(io_err("reading", path))?;
    serde_json::from_slice(&bytes).map_err(|source| NetworkError::Corrupt { path: path.to_path_buf(), source })
}

/// Writes JSON atomically (temporary file and rename).
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), NetworkError> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    }
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| NetworkError::Corrupt { path: path.to_path_buf(), source })?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let write = || -> io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err("writing", path)(e)
    })
}

fn parse_subnet(text: &str) -> Result<Ipv4Net, NetworkError> {
    let invalid = |reason: String| NetworkError::InvalidSubnet { subnet: text.to_string(), reason };
    let net: Ipv4Net = text
        .parse()
        .map_err(|_| invalid("invalid CIDR address: use an IPv4 network such as 10.10.0.0/24".into()))?;
    if net.trunc() != net {
        return Err(invalid(format!("it should be {}", net.trunc())));
    }
    if net.prefix_len() > 30 {
        return Err(invalid("it is too small: use a /30 or larger".into()));
    }
    Ok(net)
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn next_free_subnet(existing: &[Network]) -> Result<Ipv4Net, NetworkError> {
    let used: Vec<Ipv4Net> = existing.iter().filter_map(|n| n.subnet().ok()).collect();
    (0..=255u8)
        .filter_map(|n| Ipv4Net::new(Ipv4Addr::new(172, 31, n, 0), 24).ok())
        .find(|candidate| !used.iter().any(|u| overlaps(*u, *candidate)))
        .ok_or(NetworkError::NoFreeSubnet)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name.len() <= 64
}

fn random_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> NetworkError {
    let path = path.to_path_buf();
    move |source| NetworkError::Io { action, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(name: &str, subnet: &str, bridge: &str) -> Network {
        let net: Ipv4Net = subnet.parse().expect("subnet");
        Network {
            name: name.into(),
            id: "ab".repeat(32),
            driver: "bridge".into(),
            bridge: bridge.into(),
            subnet: subnet.into(),
            gateway: super::super::ipam::gateway(net),
            created: Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn subnets_are_checked_and_picked_without_overlap() {
        assert!(parse_subnet("10.10.0.0/24").is_ok());
        for (bad, text) in [
            ("10.10.0/24", "invalid CIDR"),
            ("10.10.0.5/24", "it should be 10.10.0.0/24"),
            ("nonsense", "invalid CIDR"),
            ("10.0.0.0/31", "too small"),
        ] {
            let err = parse_subnet(bad).expect_err(bad).to_string();
            assert!(err.contains(text), "{bad}: {err}");
        }
        let existing = vec![
            network("bridge", DEFAULT_SUBNET, DEFAULT_BRIDGE),
            network("a", "172.31.0.0/24", "flbr-1"),
            network("b", "172.31.2.0/24", "flbr-2"),
        ];
        assert_eq!(next_free_subnet(&existing).expect("free").to_string(), "172.31.1.0/24");
        assert!(overlaps("172.31.0.0/16".parse().expect("net"), "172.31.2.0/24".parse().expect("net")));
        assert!(!overlaps("172.31.0.0/24".parse().expect("net"), "172.31.1.0/24".parse().expect("net")));
    }

    #[test]
    fn rules_publish_and_masquerade() {
        let networks = vec![network("bridge", DEFAULT_SUBNET, DEFAULT_BRIDGE)];
        let endpoints = vec![Endpoint {
            container_id: "c".repeat(64),
            container_name: "web".into(),
            hostname: "cccccccccccc".into(),
            network: "bridge".into(),
            ip: Ipv4Addr::new(172, 30, 0, 2),
            prefix_len: 16,
            gateway: Ipv4Addr::new(172, 30, 0, 1),
            veth: "flc-cccccccccc".into(),
            netns: PathBuf::from("/x"),
            ports: vec![
                PublishedPort { host_ip: None, host_port: 8080, container_port: 80, protocol: Protocol::Tcp },
                PublishedPort {
                    host_ip: Some(Ipv4Addr::LOCALHOST),
                    host_port: 5353,
                    container_port: 53,
                    protocol: Protocol::Udp,
                },
            ],
        }];
        let body = rules(&networks, &endpoints);
        assert!(body.contains("    tcp dport 8080 dnat ip to 172.30.0.2:80\n"), "{body}");
        assert!(body.contains("    ip daddr 127.0.0.1 udp dport 5353 dnat ip to 172.30.0.2:53\n"), "{body}");
        assert!(body.contains("ip saddr 172.30.0.0/16 oifname != \"flotilla0\" masquerade"), "{body}");
        assert!(body.contains("oifname \"flotilla0\" ip saddr 127.0.0.0/8 masquerade"), "{body}");
        assert_eq!(body.matches("fib daddr type local jump published").count(), 2);
        let two = vec![networks[0].clone(), network("a", "172.31.0.0/24", "flbr-1")];
        let body = rules(&two, &[]);
        assert!(body.contains("iifname \"flbr-1\" oifname \"flotilla0\" drop"), "{body}");
        assert!(body.contains("iifname \"flotilla0\" oifname \"flbr-1\" drop"), "{body}");
    }

    #[test]
    fn names_and_veths() {
        assert!(valid_name("my-net_1.a"));
        assert!(!valid_name("-x") && !valid_name("a/b") && !valid_name(""));
        let id = "0123456789abcdef".repeat(4);
        assert_eq!(veth_name(&id), "flc-0123456789");
        assert!(veth_name(&id).len() <= 15);
    }

    #[test]
    fn predefined_and_bad_networks_are_refused_without_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let cases = [
            ("bridge", None, "already exists"),
            ("host", None, "predefined host"),
            ("none", None, "predefined none"),
            ("bad/name", None, "invalid network name"),
            ("ok", Some("10.1.2.3/24"), "it should be 10.1.2.0/24"),
            ("ok", Some("172.30.5.0/24"), "Pool overlaps"),
        ];
        for (name, subnet, text) in cases {
            let err = create(root, name, subnet).expect_err(name).to_string();
            assert!(err.contains(text), "{name}: {err}");
        }
        assert!(!network_file(root, "ok").exists());
        let err = get(root, "nope").expect_err("unknown").to_string();
        assert!(err.contains("network nope not found"), "{err}");
        assert!(remove(root, "bridge").expect_err("default").to_string().contains("pre-defined"));
        assert!(matches!(
            check_publish(&NetworkMode::None, &[ports::parse_publish("80").expect("spec")]),
            Err(NetworkError::PublishConflict(_))
        ));
    }
}
