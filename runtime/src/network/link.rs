//! Network links, addresses and routes through rtnetlink, in the current network namespace or
//! in one named by a path (a pod's `/run/flotilla/netns/<uid>`), plus sysctl helpers.
//!
//! A netlink socket belongs to the network namespace it was opened in, so [`Netlink::connect_in`]
//! opens its socket in a thread that has joined the target namespace; every request on the handle
//! then acts there, from any task. Each connection is driven on a thread of its own (with a
//! one-thread tokio runtime) until its last handle is dropped: the kernel serves a netlink request
//! inside the `sendmsg` that sends it, waiting there for the rtnl lock that every link change on
//! the machine takes, so a connection driven by a task would park a runtime worker for as long
//! as other pods' set-ups (and namespaces being destroyed) hold that lock. Everything here is idempotent where the kernel
//! allows it ("ensure" creates what is missing and leaves what is there), so a reconcile loop can
//! call it again after a crash.

use std::collections::HashMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use nix::sched::{setns, CloneFlags};
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType};
use rtnetlink::{Handle, LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth, RouteMessageBuilder};

pub use ipnet::Ipv4Net;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot open a netlink socket in {netns}: {source}: run as root")]
    Connect { netns: String, source: std::io::Error },
    #[error("cannot enter network namespace {path}: {source}: check that it exists and run as root")]
    Netns { path: PathBuf, source: std::io::Error },
    #[error("cannot {action} {name} in {netns}: {source}")]
    Netlink { action: &'static str, name: String, netns: String, source: Box<rtnetlink::Error> },
    #[error("no network interface {name} in {netns}")]
    NotFound { name: String, netns: String },
    #[error("cannot set sysctl {key} to {value}: {source}: run as root")]
    Sysctl { key: String, value: String, source: std::io::Error },
    #[error("cannot turn hairpin mode on for {name} in {netns}: {source}: check that it is a bridge port")]
    Hairpin { name: String, netns: String, source: Box<rtnetlink::Error> },
}

/// A netlink connection bound to one network namespace. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Netlink {
    handle: Handle,
    netns: Option<PathBuf>,
}

/// One network interface as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// The bridge (or other controller) it is attached to.
    pub controller: Option<u32>,
    pub up: bool,
}

/// An IPv4 route of the main table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub destination: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    /// The output interface's name.
    pub device: Option<String>,
}

/// One end of a veth pair moved into a network namespace (a pod's `eth0`), the other end
/// attached to a bridge on the host.
#[derive(Clone, Debug)]
pub struct VethConfig<'a> {
    /// The host end's name, at most 15 bytes (`flv-<8 hex>`).
    pub host_name: &'a str,
    /// The bridge the host end joins.
    pub bridge: &'a str,
    /// The namespace the other end goes to (a bind-mounted namespace file).
    pub netns: &'a Path,
    /// The other end's name inside the namespace (`eth0`).
    pub name: &'a str,
    /// The other end's address with the subnet's prefix length (`10.244.3.2/24`).
    pub address: Ipv4Net,
    /// The default route's gateway inside the namespace, if any.
    pub gateway: Option<Ipv4Addr>,
}

impl Netlink {
    /// Connects in the calling process's network namespace.
    pub fn connect() -> Result<Self, LinkError> {
        let (handle, _thread) = drive_connection(None)?;
        Ok(Self { handle, netns: None })
    }

    /// Connects in the network namespace bind-mounted at `netns`. Blocks while the connection's
    /// thread enters the namespace (see [`Netlink::open_in`] for async callers).
    pub fn connect_in(netns: &Path) -> Result<Self, LinkError> {
        let file = File::open(netns).map_err(|source| LinkError::Netns { path: netns.to_path_buf(), source })?;
        let (handle, _thread) = drive_connection(Some((file, netns.to_path_buf())))?;
        Ok(Self { handle, netns: Some(netns.to_path_buf()) })
    }

    /// [`Netlink::connect_in`] on tokio's blocking pool: entering the namespace takes a thread of
    /// its own, which a runtime worker must not sit waiting for while other tasks (this
    /// connection's among them) wait for the worker.
    pub async fn open_in(netns: &Path) -> Result<Self, LinkError> {
        let path = netns.to_path_buf();
        tokio::task::spawn_blocking(move || Netlink::connect_in(&path)).await.map_err(|e| LinkError::Netns {
            path: netns.to_path_buf(),
            source: std::io::Error::other(e),
        })?
    }

    /// The interface's index, or `None` when there is no such interface.
    pub async fn link_index(&self, name: &str) -> Result<Option<u32>, LinkError> {
        let mut found = self.handle.link().get().match_name(name.to_string()).execute();
        match found.try_next().await {
            Ok(message) => Ok(message.map(|m| m.header.index)),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
            Err(source) => Err(self.err("look up", name, source)),
        }
    }

    /// Every interface in the namespace.
    pub async fn links(&self) -> Result<Vec<Link>, LinkError> {
        let messages: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|source| self.err("list", "interfaces", source))?;
        Ok(messages.iter().map(to_link).collect())
    }

    /// Makes bridge `name` unless it exists, gives it `address` and brings it up; its index.
    pub async fn ensure_bridge(&self, name: &str, address: Ipv4Net) -> Result<u32, LinkError> {
        if self.link_index(name).await?.is_none() {
            match self.handle.link().add(LinkBridge::new(name).build()).execute().await {
                Ok(()) => tracing::info!(bridge = name, "created bridge"),
                Err(e) if is_errno(&e, libc::EEXIST) => {}
                Err(source) => return Err(self.err("create bridge", name, source)),
            }
        }
        let index = self.require(name).await?;
        self.pin_mac(name, index).await?;
        self.ensure_address(name, address).await?;
        self.set_up(name).await?;
        Ok(index)
    }

    /// Sets the bridge's MAC address to the one it has, which marks it as chosen (the kernel's
    /// `addr_assign_type` becomes "set"). A bridge whose address was not set takes the lowest
    /// MAC of its ports and changes it whenever a port with a lower one joins or that port
    /// leaves; pods would then send to a gateway MAC that no longer answers until their
    /// neighbour entry expires. docker and CNI's bridge plugin pin the address for the same
    /// reason.
    async fn pin_mac(&self, name: &str, index: u32) -> Result<(), LinkError> {
        let Some(mac) = self.mac_address(name).await? else { return Ok(()) };
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).address(mac).build())
            .execute()
            .await
            .map_err(|source| self.err("set the MAC address of", name, source))
    }

    /// The interface's MAC address (`None` for an interface without one, or no interface).
    pub async fn mac_address(&self, name: &str) -> Result<Option<Vec<u8>>, LinkError> {
        let mut found = self.handle.link().get().match_name(name.to_string()).execute();
        let message = match found.try_next().await {
            Ok(message) => message,
            Err(e) if is_errno(&e, libc::ENODEV) => None,
            Err(source) => return Err(self.err("look up", name, source)),
        };
        Ok(message.and_then(|m| {
            m.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::Address(mac) => Some(mac),
                _ => None,
            })
        }))
    }

    /// Deletes interface `name` (a veth's peer goes with it); returns whether it existed.
    pub async fn delete_link(&self, name: &str) -> Result<bool, LinkError> {
        let Some(index) = self.link_index(name).await? else { return Ok(false) };
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(false),
            Err(source) => Err(self.err("delete", name, source)),
        }
    }

    /// Brings interface `name` up.
    pub async fn set_up(&self, name: &str) -> Result<(), LinkError> {
        let index = self.require(name).await?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|source| self.err("bring up", name, source))
    }

    /// Brings interface `name` down.
    pub async fn set_down(&self, name: &str) -> Result<(), LinkError> {
        let index = self.require(name).await?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).down().build())
            .execute()
            .await
            .map_err(|source| self.err("bring down", name, source))
    }

    /// Attaches interface `name` to bridge `bridge`.
    pub async fn set_controller(&self, name: &str, bridge: &str) -> Result<(), LinkError> {
        let index = self.require(name).await?;
        let bridge_index = self.require(bridge).await?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).controller(bridge_index).build())
            .execute()
            .await
            .map_err(|source| self.err("attach to a bridge", name, source))
    }

    /// The IPv4 addresses of interface `name`.
    pub async fn addresses(&self, name: &str) -> Result<Vec<Ipv4Net>, LinkError> {
        let index = self.require(name).await?;
        let messages: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|source| self.err("list addresses of", name, source))?;
        Ok(messages
            .iter()
            .filter(|m| m.header.index == index)
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(std::net::IpAddr::V4(ip)) | AddressAttribute::Address(std::net::IpAddr::V4(ip)) => {
                        Ipv4Net::new(*ip, m.header.prefix_len).ok()
                    }
                    _ => None,
                })
            })
            .collect())
    }

    /// Gives interface `name` the address unless it has it.
    pub async fn ensure_address(&self, name: &str, address: Ipv4Net) -> Result<(), LinkError> {
        if self.addresses(name).await?.contains(&address) {
            return Ok(());
        }
        let index = self.require(name).await?;
        match self.handle.address().add(index, address.addr().into(), address.prefix_len()).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::EEXIST) => Ok(()),
            Err(source) => Err(self.err("add an address to", name, source)),
        }
    }

    /// The unicast IPv4 routes of the main table.
    pub async fn routes(&self) -> Result<Vec<Route>, LinkError> {
        let messages: Vec<RouteMessage> = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(|source| self.err("list", "routes", source))?;
        let names: HashMap<u32, String> = self.links().await?.into_iter().map(|l| (l.index, l.name)).collect();
        Ok(messages.iter().filter_map(|m| to_route(m, &names)).collect())
    }

    /// Adds the route, replacing one to the same destination.
    pub async fn add_route(&self, route: &Route) -> Result<(), LinkError> {
        let message = self.route_message(route).await?;
        self.handle
            .route()
            .add(message)
            .replace()
            .execute()
            .await
            .map_err(|source| self.err("add route to", &route.destination.to_string(), source))
    }

    /// Deletes the route; returns whether it existed.
    pub async fn del_route(&self, route: &Route) -> Result<bool, LinkError> {
        let message = match self.route_message(route).await {
            Ok(message) => message,
            // A route through an interface that is gone went with it.
            Err(LinkError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        match self.handle.route().del(message).execute().await {
            Ok(()) => Ok(true),
            Err(e) if is_errno(&e, libc::ESRCH) => Ok(false),
            Err(source) => Err(self.err("delete route to", &route.destination.to_string(), source)),
        }
    }

    /// Makes a veth pair, one end (`config.name`) in `config.netns` with its address and
    /// default route, the other (`config.host_name`) attached to `config.bridge` here. When both
    /// ends exist already only the settings are ensured; a half-made pair is made again.
    ///
    /// A new pair is made by one request that also puts the host end on the bridge and brings
    /// it up: every link change takes the kernel's one rtnl lock, which all the pods
    /// being set up on the machine (and namespaces being destroyed) queue for, so each request
    /// saved shortens a burst of pod starts.
    pub async fn ensure_veth(&self, config: &VethConfig<'_>) -> Result<(), LinkError> {
        let inside = Netlink::open_in(config.netns).await?;
        let complete = self.link_index(config.host_name).await?.is_some() && inside.link_index(config.name).await?.is_some();
        if complete {
            self.set_controller(config.host_name, config.bridge).await?;
            self.set_hairpin(config.host_name).await?;
            self.set_up(config.host_name).await?;
            inside.set_up(config.name).await?;
        } else {
            self.delete_link(config.host_name).await?;
            let bridge = self.require(config.bridge).await?;
            let netns = File::open(config.netns)
                .map_err(|source| LinkError::Netns { path: config.netns.to_path_buf(), source })?;
            // The peer is created directly inside the namespace under its final name, so no
            // temporary name can clash with another interface on the host.
            let peer = LinkUnspec::new_with_name(config.name).setns_by_fd(netns.as_raw_fd()).build();
            let message = LinkVeth::new(config.host_name, config.name)
                .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
                .controller(bridge)
                .up()
                .build();
            self.handle
                .link()
                .add(message)
                .execute()
                .await
                .map_err(|source| self.err("create veth", config.host_name, source))?;
            tracing::debug!(veth = config.host_name, netns = %config.netns.display(), "created veth pair");
            self.set_hairpin(config.host_name).await?;
            // Not in the request: the kernel configures the peer before the pair is linked, and
            // refuses to bring up a veth end without its peer.
            inside.set_up(config.name).await?;
        }
        inside.ensure_address(config.name, config.address).await?;
        if let Some(gateway) = config.gateway {
            let default = Route { destination: Ipv4Net::default(), gateway: Some(gateway), device: Some(config.name.to_string()) };
            inside.add_route(&default).await?;
        }
        Ok(())
    }

    /// Lets frames leave a bridge port back through the port they came in by, as the kubelet
    /// and docker set it: a pod (or container) that reaches a Service (or published port) which
    /// lands on itself sends and receives through its own port, and bridge netfilter drops that
    /// otherwise. Set through this connection (as `ip link set dev NAME type bridge_slave
    /// hairpin on` does), not sysfs, which shows the interfaces of the namespace that mounted it,
    /// not of the one the agent runs in; and not by running iproute2's `bridge`, a process per
    /// pod.
    pub async fn set_hairpin(&self, name: &str) -> Result<(), LinkError> {
        let index = self.require(name).await?;
        self.handle
            .link()
            .set_port(LinkBridgePort::new(index).hairpin(true).build())
            .execute()
            .await
            .map_err(|source| LinkError::Hairpin { name: name.to_string(), netns: self.where_(), source: Box::new(source) })
    }

    async fn route_message(&self, route: &Route) -> Result<RouteMessage, LinkError> {
        let mut builder = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(route.destination.network(), route.destination.prefix_len());
        if let Some(gateway) = route.gateway {
            builder = builder.gateway(gateway);
        }
        if let Some(device) = &route.device {
            builder = builder.output_interface(self.require(device).await?);
        }
        Ok(builder.build())
    }

    async fn require(&self, name: &str) -> Result<u32, LinkError> {
        self.link_index(name).await?.ok_or_else(|| LinkError::NotFound { name: name.to_string(), netns: self.where_() })
    }

    fn where_(&self) -> String {
        match &self.netns {
            Some(path) => path.display().to_string(),
            None => "the host namespace".to_string(),
        }
    }

    fn err(&self, action: &'static str, name: &str, source: rtnetlink::Error) -> LinkError {
        LinkError::Netlink { action, name: name.to_string(), netns: self.where_(), source: Box::new(source) }
    }
}

/// Writes a sysctl of the calling thread's network namespace, e.g.
/// `set_sysctl("net.ipv4.ip_forward", "1")`.
pub fn set_sysctl(key: &str, value: &str) -> Result<(), LinkError> {
    std::fs::write(sysctl_path(key), value)
        .map_err(|source| LinkError::Sysctl { key: key.to_string(), value: value.to_string(), source })
}

/// Reads a sysctl (trimmed).
pub fn get_sysctl(key: &str) -> Result<String, LinkError> {
    std::fs::read_to_string(sysctl_path(key))
        .map(|s| s.trim().to_string())
        .map_err(|source| LinkError::Sysctl { key: key.to_string(), value: String::new(), source })
}

fn sysctl_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

fn is_errno(error: &rtnetlink::Error, errno: i32) -> bool {
    matches!(error, rtnetlink::Error::NetlinkError(m) if m.raw_code().abs() == errno)
}

fn to_link(message: &LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        controller: None,
        up: message.header.flags.contains(LinkFlags::Up),
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::Controller(index) => link.controller = Some(*index),
            _ => {}
        }
    }
    link
}

fn to_route(message: &RouteMessage, names: &HashMap<u32, String>) -> Option<Route> {
    let table = message
        .attributes
        .iter()
        .find_map(|a| if let RouteAttribute::Table(t) = a { Some(*t) } else { None })
        .unwrap_or(u32::from(message.header.table));
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) || message.header.kind != RouteType::Unicast {
        return None;
    }
    let mut destination = Ipv4Addr::UNSPECIFIED;
    let mut gateway = None;
    let mut device = None;
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => destination = *ip,
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
            RouteAttribute::Oif(index) => device = names.get(index).cloned(),
            _ => {}
        }
    }
    // Kernel-made connected routes are listed too; callers tell theirs apart by destination.
    Some(Route { destination: Ipv4Net::new(destination, message.header.destination_prefix_length).ok()?, gateway, device })
}

/// Starts a thread that enters `netns` (when given), opens a netlink socket there and drives
/// its connection on a one-thread runtime until every handle is dropped; returns the handle and
/// the thread (callers let it run detached).
fn drive_connection(netns: Option<(File, PathBuf)>) -> Result<(Handle, std::thread::JoinHandle<()>), LinkError> {
    let (opened_tx, opened_rx) = std::sync::mpsc::channel();
    let where_ = netns.as_ref().map_or_else(|| "the host".to_string(), |(_, p)| p.display().to_string());
    let thread_error = |what: &str| LinkError::Connect { netns: where_.clone(), source: std::io::Error::other(what.to_string()) };
    let thread = std::thread::Builder::new()
        .name("netlink".into())
        .spawn(move || {
            let opened = (|| {
                if let Some((file, path)) = &netns {
                    // Only this thread moves; the socket stays in the namespace it is opened in.
                    setns(file, CloneFlags::CLONE_NEWNET)
                        .map_err(|e| LinkError::Netns { path: path.clone(), source: std::io::Error::from(e) })?;
                }
                let where_ = || netns.as_ref().map_or_else(|| "the host".to_string(), |(_, p)| p.display().to_string());
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                    .map_err(|source| LinkError::Connect { netns: where_(), source })?;
                let connection = {
                    let _entered = runtime.enter();
                    rtnetlink::new_connection().map_err(|source| LinkError::Connect { netns: where_(), source })?
                };
                Ok::<_, LinkError>((runtime, connection))
            })();
            match opened {
                Ok((runtime, (connection, handle, unsolicited))) => {
                    // Nobody listens for unsolicited messages; the connection ends only with
                    // this receiver gone too.
                    drop(unsolicited);
                    if opened_tx.send(Ok(handle)).is_ok() {
                        // Ends once the last handle (and so the request channel) is dropped.
                        runtime.block_on(connection);
                    }
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                }
            }
        })
        .map_err(|source| LinkError::Connect { netns: where_.clone(), source })?;
    let handle = opened_rx.recv().map_err(|_| thread_error("the thread opening the netlink socket ended without one"))??;
    Ok((handle, thread))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The thread driving a connection ends with its last handle (one thread per pod attached
    /// must not stay behind).
    #[test]
    fn a_connection_thread_ends_with_its_handle() {
        let (handle, thread) = drive_connection(None).unwrap();
        let second = handle.clone();
        drop(handle);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!thread.is_finished(), "a handle is left");
        drop(second);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(thread.is_finished());
    }
    use std::process::Command;

    /// Removes the test's namespace and links even when an assertion fails.
    struct Cleanup {
        netns: String,
        links: Vec<String>,
    }

    impl Drop for Cleanup {
        fn drop(&mut self) {
            for link in &self.links {
                let _ = Command::new("ip").args(["link", "del", link]).output();
            }
            let _ = Command::new("ip").args(["netns", "del", &self.netns]).output();
        }
    }

    #[tokio::test]
    async fn bridge_and_veth_into_a_namespace_as_root() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipping: needs root for network namespaces");
            return;
        }
        let pid = std::process::id();
        let netns = format!("flt-link-{pid}");
        let bridge = format!("flbt{:x}", pid);
        let veth = format!("flvt{:x}", pid);
        let _cleanup = Cleanup { netns: netns.clone(), links: vec![veth.clone(), bridge.clone()] };
        let made = Command::new("ip").args(["netns", "add", &netns]).status().unwrap();
        assert!(made.success());
        let netns_path = PathBuf::from(format!("/run/netns/{netns}"));
        let third = 100 + (pid % 100) as u8;
        let gateway = Ipv4Addr::new(10, 251, third, 1);
        let subnet_gateway = Ipv4Net::new(gateway, 24).unwrap();
        let pod = Ipv4Net::new(Ipv4Addr::new(10, 251, third, 2), 24).unwrap();

        let host = Netlink::connect().unwrap();
        let bridge_index = host.ensure_bridge(&bridge, subnet_gateway).await.unwrap();
        // Idempotent: a second call changes nothing and returns the same bridge.
        assert_eq!(host.ensure_bridge(&bridge, subnet_gateway).await.unwrap(), bridge_index);
        assert_eq!(host.addresses(&bridge).await.unwrap(), vec![subnet_gateway]);

        let config = VethConfig {
            host_name: &veth,
            bridge: &bridge,
            netns: &netns_path,
            name: "eth0",
            address: pod,
            gateway: Some(gateway),
        };
        let bridge_mac = host.mac_address(&bridge).await.unwrap();
        assert!(bridge_mac.is_some());
        host.ensure_veth(&config).await.unwrap();
        // Hairpin set by netlink on the new port (sysfs shows this test's namespace: the host's).
        let hairpin = std::fs::read_to_string(format!("/sys/class/net/{veth}/brport/hairpin_mode")).unwrap();
        assert_eq!(hairpin.trim(), "1");
        host.ensure_veth(&config).await.unwrap();
        // Ports joining do not move the bridge's MAC (a lower port MAC would, unpinned).
        let low = "02:00:00:00:00:01";
        let set = Command::new("ip").args(["link", "set", "dev", &veth, "address", low]).status().unwrap();
        assert!(set.success());
        assert_eq!(host.mac_address(&bridge).await.unwrap(), bridge_mac);

        let host_end = host.links().await.unwrap().into_iter().find(|l| l.name == veth).unwrap();
        assert_eq!(host_end.controller, Some(bridge_index));
        assert!(host_end.up);
        let inside = Netlink::connect_in(&netns_path).unwrap();
        assert_eq!(inside.addresses("eth0").await.unwrap(), vec![pod]);
        let routes = inside.routes().await.unwrap();
        assert!(
            routes.contains(&Route { destination: Ipv4Net::default(), gateway: Some(gateway), device: Some("eth0".into()) }),
            "{routes:?}"
        );
        // The pod end answers from the host across the bridge.
        let ping = Command::new("busybox").args(["ping", "-c", "1", "-W", "3", &pod.addr().to_string()]).output().unwrap();
        assert!(ping.status.success(), "{}", String::from_utf8_lossy(&ping.stdout));

        // Host routes: add, list, delete.
        let extra = Route { destination: "10.252.0.0/24".parse().unwrap(), gateway: None, device: Some(bridge.clone()) };
        host.add_route(&extra).await.unwrap();
        assert!(host.routes().await.unwrap().contains(&extra));
        assert!(host.del_route(&extra).await.unwrap());
        assert!(!host.del_route(&extra).await.unwrap());

        // Deleting the host end takes the namespace's end with it.
        assert!(host.delete_link(&veth).await.unwrap());
        assert_eq!(inside.link_index("eth0").await.unwrap(), None);
        assert!(!host.delete_link(&veth).await.unwrap());
        assert!(host.delete_link(&bridge).await.unwrap());
        assert_eq!(host.link_index(&bridge).await.unwrap(), None);
    }

    #[test]
    fn sysctl_keys_map_to_proc_paths() {
        assert_eq!(sysctl_path("net.ipv4.ip_forward"), PathBuf::from("/proc/sys/net/ipv4/ip_forward"));
    }
}
