//! Routes to the other nodes' podCIDRs via their InternalIP, so pods on different machines
//! reach each other without an overlay. A route is installed only when the other node's
//! InternalIP differs from ours: agents that share one network namespace (a single-machine
//! cluster, every node at 127.0.0.1) reach each other's bridges through connected routes.
//!
//! Level-triggered, with a watch for speed: the Nodes are watched, and whenever the peers
//! (name, InternalIP, podCIDR) change, and again every [`RESYNC`] in case someone changed the
//! routes by hand, [`plan`] compares the routes they call for with the gateway routes into the
//! cluster CIDR that exist; only those are ours to remove, so routes of nodes that went away are
//! removed and nothing else is touched. The watch matters: a node's first pods start about a
//! second after it gets its podCIDR, and a poll every few seconds left the other machines without
//! a route to them for that long (a Service's endpoint on that node timed out from elsewhere).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use api::client::watcher::{watcher, Event};
use api::client::{Api, ListParams};
use api::core::Node;
use futures::StreamExt as _;
use runtime::network::ipam::Ipv4Net;
use runtime::network::link::Route;

use super::NodeNetwork;

/// How often the routes are compared with the Nodes even when no Node changed.
pub const RESYNC: Duration = Duration::from_secs(30);

/// What [`plan`] needs of a Node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub internal_ip: Option<Ipv4Addr>,
    pub pod_cidr: Option<Ipv4Net>,
}

/// The routes to add (or replace) and to delete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutePlan {
    pub add: Vec<Route>,
    pub delete: Vec<Route>,
}

/// Compares the routes the peers call for with the `existing` routes of this namespace.
pub fn plan(our_ip: Ipv4Addr, our_cidr: Ipv4Net, cluster_cidr: Ipv4Net, peers: &[Peer], existing: &[Route]) -> RoutePlan {
    let desired: Vec<Route> = peers
        .iter()
        .filter_map(|p| {
            let (ip, cidr) = (p.internal_ip?, p.pod_cidr?);
            (ip != our_ip && cidr != our_cidr && cluster_cidr.contains(&cidr))
                .then_some(Route { destination: cidr, gateway: Some(ip), device: None })
        })
        .collect();
    let same = |a: &Route, b: &Route| a.destination == b.destination && a.gateway == b.gateway;
    let ours = |r: &&Route| r.gateway.is_some() && cluster_cidr.contains(&r.destination) && r.destination != our_cidr;
    RoutePlan {
        add: desired.iter().filter(|d| !existing.iter().any(|e| same(d, e))).cloned().collect(),
        delete: existing.iter().filter(ours).filter(|e| !desired.iter().any(|d| same(d, e))).cloned().collect(),
    }
}

/// The peer view of Nodes other than `ours`.
pub fn peers(nodes: &[Node], ours: &str) -> Vec<Peer> {
    nodes
        .iter()
        .filter(|n| n.metadata.name.as_deref() != Some(ours))
        .map(|n| Peer {
            name: n.metadata.name.clone().unwrap_or_default(),
            internal_ip: n
                .status
                .as_ref()
                .and_then(|s| s.addresses.as_ref())
                .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
                .and_then(|a| a.address.parse().ok()),
            pod_cidr: n.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()).and_then(|c| c.parse().ok()),
        })
        .collect()
}

/// Routes to the pods of the Nodes that exist now, once, so that a node reporting Ready already
/// reaches them; a failure is logged and left to [`run`].
pub async fn sync_now(network: &NodeNetwork) {
    match Api::<Node>::all(network.client.clone()).list(&ListParams::default()).await {
        Ok(list) => {
            if let Err(e) = sync(network, &peers(&list.items, &network.node_name)).await {
                tracing::warn!(error = %e, "cannot add the routes to other nodes' pods yet; retrying");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list the nodes for pod routes yet; retrying"),
    }
}

/// Keeps the routes in line with the Nodes, forever.
pub async fn run(network: Arc<NodeNetwork>) {
    let mut events = watcher(Api::<Node>::all(network.client.clone()), ListParams::default());
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    let mut listed = false;
    // The peers the routes were last made for; None makes the next turn sync.
    let mut synced: Option<Vec<Peer>> = None;
    let mut resync = tokio::time::interval(RESYNC);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Restarted(items))) => {
                    nodes = items.into_iter().map(|n| (n.metadata.name.clone().unwrap_or_default(), n)).collect();
                    listed = true;
                }
                Some(Ok(Event::Applied(node))) => {
                    nodes.insert(node.metadata.name.clone().unwrap_or_default(), node);
                }
                Some(Ok(Event::Deleted(node))) => {
                    nodes.remove(node.metadata.name.as_deref().unwrap_or_default());
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "node watch for pod routes interrupted; the watcher resumes");
                    continue;
                }
                None => return,
            },
            _ = resync.tick() => synced = None,
            _ = retry.tick(), if synced.is_none() => {}
        }
        // Until the first complete list, nodes that exist would look gone.
        if !listed {
            continue;
        }
        let all: Vec<Node> = nodes.values().cloned().collect();
        let wanted = peers(&all, &network.node_name);
        if synced.as_ref() == Some(&wanted) {
            continue;
        }
        match sync(&network, &wanted).await {
            Ok(()) => synced = Some(wanted),
            Err(e) => {
                tracing::warn!(error = %e, "cannot update the routes to other nodes' pods; retrying");
                synced = None;
            }
        }
    }
}

async fn sync(network: &NodeNetwork, peers: &[Peer]) -> Result<(), runtime::network::link::LinkError> {
    // With no address of ours to compare, every peer would look remote: leave routes alone.
    let Some(our_ip) = network.node_ip else { return Ok(()) };
    let existing = network.netlink.routes().await?;
    let plan = plan(our_ip, network.pod_cidr, network.cluster_cidr, peers, &existing);
    // Deletions first: a node whose address changed has its old route removed, then re-added.
    for route in &plan.delete {
        network.netlink.del_route(route).await?;
        tracing::info!(destination = %route.destination, gateway = ?route.gateway, "removed a route to a node's pods");
    }
    for route in &plan.add {
        network.netlink.add_route(route).await?;
        tracing::info!(destination = %route.destination, gateway = ?route.gateway, "added a route to a node's pods");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn peer(name: &str, ip: &str, cidr: &str) -> Peer {
        Peer { name: name.into(), internal_ip: ip.parse().ok(), pod_cidr: cidr.parse().ok() }
    }

    fn route(cidr: &str, gw: &str) -> Route {
        Route { destination: net(cidr), gateway: Some(gw.parse().unwrap()), device: Some("eth0".into()) }
    }

    fn check(peers: &[Peer], existing: &[Route], add: &[(&str, &str)], delete: &[(&str, &str)]) {
        let got = plan("10.123.1.10".parse().unwrap(), net("10.244.0.0/24"), net("10.244.0.0/16"), peers, existing);
        let pairs = |rs: &[Route]| -> Vec<(String, String)> {
            rs.iter().map(|r| (r.destination.to_string(), r.gateway.map(|g| g.to_string()).unwrap_or_default())).collect()
        };
        let want = |v: &[(&str, &str)]| -> Vec<(String, String)> { v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect() };
        assert_eq!(pairs(&got.add), want(add), "add");
        assert_eq!(pairs(&got.delete), want(delete), "delete");
    }

    #[test]
    fn routes_other_machines_and_skips_same_address_and_incomplete_nodes() {
        let peers = [
            peer("b", "10.123.1.11", "10.244.1.0/24"),
            peer("c", "10.123.1.10", "10.244.2.0/24"), // same machine as us
            peer("d", "10.123.1.12", ""),              // no podCIDR yet
            peer("e", "", "10.244.4.0/24"),            // no InternalIP
            peer("f", "10.123.1.13", "192.168.0.0/24"), // outside the cluster CIDR
        ];
        check(&peers, &[], &[("10.244.1.0/24", "10.123.1.11")], &[]);
    }

    #[test]
    fn keeps_correct_routes_replaces_moved_ones_and_removes_gone_nodes() {
        let peers = [peer("b", "10.123.1.11", "10.244.1.0/24"), peer("c", "10.123.1.14", "10.244.2.0/24")];
        let existing = [
            route("10.244.1.0/24", "10.123.1.11"), // correct
            route("10.244.2.0/24", "10.123.1.12"), // node c moved
            route("10.244.9.0/24", "10.123.1.19"), // node gone
            route("0.0.0.0/0", "10.123.1.1"),      // not ours: default route
            Route { destination: net("10.244.0.0/24"), gateway: None, device: Some("flb-1".into()) }, // our bridge
        ];
        check(
            &peers,
            &existing,
            &[("10.244.2.0/24", "10.123.1.14")],
            &[("10.244.2.0/24", "10.123.1.12"), ("10.244.9.0/24", "10.123.1.19")],
        );
    }

    #[test]
    fn peers_read_internal_ip_and_pod_cidr() {
        let nodes: Vec<Node> = serde_json::from_value(serde_json::json!([
            {"metadata": {"name": "me"}, "spec": {"podCIDR": "10.244.0.0/24"}},
            {"metadata": {"name": "b"}, "spec": {"podCIDR": "10.244.1.0/24"},
             "status": {"addresses": [{"type": "Hostname", "address": "b"}, {"type": "InternalIP", "address": "10.123.1.11"}]}}
        ]))
        .unwrap();
        assert_eq!(peers(&nodes, "me"), vec![peer("b", "10.123.1.11", "10.244.1.0/24")]);
    }
}
