//! The Service rules as data and as nftables text: [`service_ports`] turns Services and
//! Endpoints into a flat list of [`ServicePort`]s, and [`render`] turns that list plus the
//! node's addresses into the node's service table ([`ruleset`], [`Ruleset`]). Both are pure, so
//! the whole ruleset is tested as golden text; [`super`] applies it in one `nft -f` transaction,
//! in place ([`Ruleset::sync_script`]) once the table exists.
//!
//! The shape follows kube-proxy's nftables mode:
//! - `nat-prerouting` and `nat-output` (so pods and host processes alike) look the destination
//!   up in the verdict maps `service-ips` (cluster IP . protocol . port) and, for the node's own
//!   addresses, `service-nodeports` (protocol . port), and jump to the service's chain;
//! - a service chain marks the packet for masquerading and picks an endpoint chain with
//!   `numgen random mod N`; an endpoint chain DNATs to that pod's address and port;
//! - `nat-postrouting` masquerades marked packets, so replies come back through this node even
//!   when the client and the endpoint share a bridge (no br_netfilter needed);
//! - the filter chains (priority -110, before DNAT) reject new connections to service ports that
//!   have no ready endpoint: a TCP reset, an ICMP port-unreachable for UDP, as kube-proxy does.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use api::core::{Endpoints, Service};

/// The packet mark bit that asks `nat-postrouting` to masquerade (kube-proxy's bit).
pub const MASQUERADE_MARK: u32 = 0x4000;

/// A Service port protocol the proxy handles (SCTP is skipped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// One port of one Service and the ready endpoints its traffic goes to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServicePort {
    pub namespace: String,
    pub service: String,
    /// The port's name, empty for a single unnamed port.
    pub port_name: String,
    pub protocol: Protocol,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    /// Set for NodePort and LoadBalancer services.
    pub node_port: Option<u16>,
    /// Ready endpoints (pod address, target port), sorted and without duplicates.
    pub endpoints: Vec<(Ipv4Addr, u16)>,
}

impl Protocol {
    /// The name nft and DNS SRV labels use.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    /// Kubernetes' protocol field (absent means TCP); `None` for protocols not handled.
    pub fn from_k8s(value: Option<&str>) -> Option<Protocol> {
        match value.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            _ => None,
        }
    }
}

/// The proxied ports of `services`, with their ready endpoints from `endpoints` (matched by
/// namespace and name, and within a subset by port name and protocol). Services without a
/// cluster IP (headless, ExternalName), non-IPv4 cluster IPs, SCTP ports and names that are
/// not DNS labels are left out. The result is sorted, so equal inputs render equal text.
pub fn service_ports(services: &[Service], endpoints: &[Endpoints]) -> Vec<ServicePort> {
    let mut out = Vec::new();
    for svc in services {
        let (Some(namespace), Some(name)) = (svc.metadata.namespace.as_deref(), svc.metadata.name.as_deref()) else {
            continue;
        };
        let Some(spec) = svc.spec.as_ref() else { continue };
        let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
        if ty == "ExternalName" {
            continue;
        }
        let Some(cluster_ip) = spec.cluster_ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok()) else {
            continue;
        };
        if !is_label(namespace) || !is_label(name) {
            tracing::warn!(namespace, name, "service name is not a DNS label; not proxied");
            continue;
        }
        let eps = endpoints
            .iter()
            .find(|e| e.metadata.namespace.as_deref() == Some(namespace) && e.metadata.name.as_deref() == Some(name));
        for port in spec.ports.iter().flatten() {
            let Some(protocol) = Protocol::from_k8s(port.protocol.as_deref()) else { continue };
            let port_name = port.name.clone().unwrap_or_default();
            let Ok(number) = u16::try_from(port.port) else { continue };
            if number == 0 || !(port_name.is_empty() || is_label(&port_name)) {
                continue;
            }
            let node_port = match ty {
                "NodePort" | "LoadBalancer" => port.node_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0),
                _ => None,
            };
            let endpoints = eps.map(|e| ready_endpoints(e, &port_name, protocol)).unwrap_or_default();
            out.push(ServicePort {
                namespace: namespace.to_string(),
                service: name.to_string(),
                port_name,
                protocol,
                cluster_ip,
                port: number,
                node_port,
                endpoints,
            });
        }
    }
    out.sort();
    out
}

/// The body of the service table (what goes inside `table inet NAME { ... }`).
pub fn render(ports: &[ServicePort], node_addresses: &[Ipv4Addr]) -> String {
    ruleset(ports, node_addresses).body()
}

/// The service table as data: its sets and maps, then its chains, in the order they render.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruleset {
    pub sets: Vec<SetDecl>,
    pub chains: Vec<ChainDecl>,
}

/// A named set or verdict map of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetDecl {
    /// `set` or `map`.
    pub kind: &'static str,
    pub name: String,
    /// The key (and for a map, the value) type, in nft's syntax.
    pub ty: &'static str,
    pub elements: Vec<String>,
}

/// A chain of the table; `base` is its hook declaration for a base chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainDecl {
    pub name: String,
    pub base: Option<&'static str>,
    pub rules: Vec<String>,
}

/// The table for `ports` reached on `node_addresses`.
pub fn ruleset(ports: &[ServicePort], node_addresses: &[Ipv4Addr]) -> Ruleset {
    let mut ports: Vec<&ServicePort> = ports.iter().collect();
    ports.sort();
    let (live, dead): (Vec<&ServicePort>, Vec<&ServicePort>) = ports.iter().partition(|p| !p.endpoints.is_empty());
    let node_addresses: BTreeSet<Ipv4Addr> = node_addresses.iter().copied().collect();

    let ips = |ps: &[&ServicePort], target: &dyn Fn(&ServicePort) -> String| -> Vec<String> {
        ps.iter()
            .map(|p| format!("{} . {} . {} : goto {}", p.cluster_ip, p.protocol.as_str(), p.port, target(p)))
            .collect()
    };
    let nodeports = |ps: &[&ServicePort], target: &dyn Fn(&ServicePort) -> String| -> Vec<String> {
        ps.iter()
            .filter_map(|p| p.node_port.map(|np| format!("{} . {np} : goto {}", p.protocol.as_str(), target(p))))
            .collect()
    };
    let reject = |_: &ServicePort| "reject-service".to_string();
    const IPS: &str = "ipv4_addr . inet_proto . inet_service : verdict";
    const PORTS: &str = "inet_proto . inet_service : verdict";
    let set = |kind, name: &str, ty, elements| SetDecl { kind, name: name.to_string(), ty, elements };
    let sets = vec![
        set("set", "node-addresses", "ipv4_addr", node_addresses.iter().map(Ipv4Addr::to_string).collect()),
        set("map", "service-ips", IPS, ips(&live, &service_chain)),
        set("map", "service-nodeports", PORTS, nodeports(&live, &service_chain)),
        set("map", "no-endpoint-services", IPS, ips(&dead, &reject)),
        set("map", "no-endpoint-nodeports", PORTS, nodeports(&dead, &reject)),
    ];

    let chain = |name: &str, base, rules: &[&str]| ChainDecl {
        name: name.to_string(),
        base,
        rules: rules.iter().map(|r| r.to_string()).collect(),
    };
    let check_ips = "ct state new ip daddr . meta l4proto . th dport vmap @no-endpoint-services";
    let check_ports = "ct state new ip daddr @node-addresses meta l4proto . th dport vmap @no-endpoint-nodeports";
    let masq = format!(
        "meta mark & {MASQUERADE_MARK:#x} == {MASQUERADE_MARK:#x} meta mark set meta mark ^ {MASQUERADE_MARK:#x} masquerade fully-random"
    );
    let mut chains = vec![
        chain("reject-service", None, &["meta l4proto tcp reject with tcp reset", "reject"]),
        chain("filter-input", Some("filter hook input priority -110"), &[check_ports]),
        chain("filter-forward", Some("filter hook forward priority -110"), &[check_ips]),
        chain("filter-output", Some("filter hook output priority -110"), &[check_ips]),
        chain(
            "services",
            None,
            &[
                "ip daddr . meta l4proto . th dport vmap @service-ips",
                "ip daddr @node-addresses meta l4proto . th dport vmap @service-nodeports",
            ],
        ),
        chain("nat-prerouting", Some("nat hook prerouting priority dstnat"), &["jump services"]),
        chain("nat-output", Some("nat hook output priority -100"), &["jump services"]),
        chain("nat-postrouting", Some("nat hook postrouting priority srcnat"), &[&masq]),
    ];
    for p in &live {
        let mark = format!("meta mark set meta mark | {MASQUERADE_MARK:#x}");
        let choices: Vec<String> =
            p.endpoints.iter().enumerate().map(|(i, ep)| format!("{i} : goto {}", endpoint_chain(p, *ep))).collect();
        let pick = format!("numgen random mod {} vmap {{ {} }}", p.endpoints.len(), choices.join(", "));
        chains.push(chain(&service_chain(p), None, &[&mark, &pick]));
        for (ip, port) in &p.endpoints {
            let dnat = format!("meta l4proto {} dnat ip to {ip}:{port}", p.protocol.as_str());
            chains.push(chain(&endpoint_chain(p, (*ip, *port)), None, &[&dnat]));
        }
    }
    Ruleset { sets, chains }
}

impl Ruleset {
    /// The table's body in nft's declarative syntax, for a whole-table replace.
    pub fn body(&self) -> String {
        let mut s = String::new();
        for set in &self.sets {
            let _ = writeln!(s, "{} {} {{\n\ttype {}", set.kind, set.name, set.ty);
            if !set.elements.is_empty() {
                let _ = writeln!(s, "\telements = {{\n\t\t{}\n\t}}", set.elements.join(",\n\t\t"));
            }
            s.push_str("}\n");
        }
        for chain in &self.chains {
            let _ = writeln!(s, "chain {} {{", chain.name);
            if let Some(base) = chain.base {
                let _ = writeln!(s, "\ttype {base}; policy accept;");
            }
            for rule in &chain.rules {
                let _ = writeln!(s, "\t{rule}");
            }
            s.push_str("}\n");
        }
        // The caller's wrapper adds the closing brace on its own line.
        s.truncate(s.trim_end().len());
        s
    }

    /// A script that turns table `family table`, whose chains are now `existing`, into this
    /// ruleset in one transaction without replacing the table: declarations are `add`ed (a no-op
    /// for what exists), every chain, set and map is flushed and refilled, and chains that are
    /// no longer wanted are flushed and then deleted (after the maps and rules that jumped to
    /// them are gone). Base chains are never deleted, so their netfilter hooks stay registered
    /// and no packet can pass while the NAT chains are away.
    pub fn sync_script(&self, family: &str, table: &str, existing: &[String]) -> String {
        let t = format!("{family} {table}");
        let mut s = format!("add table {t}\n");
        for set in &self.sets {
            let _ = writeln!(s, "add {} {t} {} {{ type {}; }}", set.kind, set.name, set.ty);
        }
        for chain in &self.chains {
            match chain.base {
                Some(base) => {
                    let _ = writeln!(s, "add chain {t} {} {{ type {base}; policy accept; }}", chain.name);
                }
                None => {
                    let _ = writeln!(s, "add chain {t} {}", chain.name);
                }
            }
        }
        for chain in &self.chains {
            let _ = writeln!(s, "flush chain {t} {}", chain.name);
        }
        for set in &self.sets {
            let _ = writeln!(s, "flush {} {t} {}", set.kind, set.name);
        }
        for set in self.sets.iter().filter(|set| !set.elements.is_empty()) {
            let _ = writeln!(s, "add element {t} {} {{ {} }}", set.name, set.elements.join(", "));
        }
        for chain in &self.chains {
            for rule in &chain.rules {
                let _ = writeln!(s, "add rule {t} {} {rule}", chain.name);
            }
        }
        let wanted: BTreeSet<&str> = self.chains.iter().map(|c| c.name.as_str()).collect();
        let stale: Vec<&String> = existing.iter().filter(|c| !wanted.contains(c.as_str())).collect();
        for name in &stale {
            let _ = writeln!(s, "flush chain {t} {name}");
        }
        for name in &stale {
            let _ = writeln!(s, "delete chain {t} {name}");
        }
        s
    }
}

fn ready_endpoints(eps: &Endpoints, port_name: &str, protocol: Protocol) -> Vec<(Ipv4Addr, u16)> {
    let mut out = BTreeSet::new();
    for subset in eps.subsets.iter().flatten() {
        let Some(port) = subset.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name && Protocol::from_k8s(p.protocol.as_deref()) == Some(protocol)
        }) else {
            continue;
        };
        let Ok(number) = u16::try_from(port.port) else { continue };
        for address in subset.addresses.iter().flatten() {
            if let Ok(ip) = address.ip.parse::<Ipv4Addr>() {
                out.insert((ip, number));
            }
        }
    }
    out.into_iter().collect()
}

/// A DNS label (RFC 1123): what namespaces, service and port names are. Anything else is kept
/// out of chain names so that API data can never change the meaning of the nft script.
pub(crate) fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn service_chain(p: &ServicePort) -> String {
    format!("svc/{}/{}/{}/{}", p.namespace, p.service, p.protocol.as_str(), p.port)
}

fn endpoint_chain(p: &ServicePort, (ip, port): (Ipv4Addr, u16)) -> String {
    format!("ep/{}/{}/{}/{}/{ip}/{port}", p.namespace, p.service, p.protocol.as_str(), p.port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::core::{EndpointAddress, EndpointPort, EndpointSubset, ServicePort as K8sPort, ServiceSpec};
    use api::meta::ObjectMeta;

    fn meta(ns: &str, name: &str) -> ObjectMeta {
        ObjectMeta { namespace: Some(ns.into()), name: Some(name.into()), ..Default::default() }
    }

    fn service(ns: &str, name: &str, ty: &str, ip: &str, ports: &[(&str, &str, i32, Option<i32>)]) -> Service {
        Service {
            metadata: meta(ns, name),
            spec: Some(ServiceSpec {
                type_: Some(ty.into()),
                cluster_ip: Some(ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, proto, port, np)| K8sPort {
                            name: (!n.is_empty()).then(|| n.to_string()),
                            protocol: Some(proto.to_string()),
                            port: *port,
                            node_port: *np,
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn endpoints(ns: &str, name: &str, ready: &[&str], not_ready: &[&str], ports: &[(&str, &str, i32)]) -> Endpoints {
        let addr = |ips: &[&str]| {
            (!ips.is_empty())
                .then(|| ips.iter().map(|ip| EndpointAddress { ip: ip.to_string(), ..Default::default() }).collect())
        };
        Endpoints {
            metadata: meta(ns, name),
            subsets: Some(vec![EndpointSubset {
                addresses: addr(ready),
                not_ready_addresses: addr(not_ready),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, proto, port)| EndpointPort {
                            name: (!n.is_empty()).then(|| n.to_string()),
                            protocol: Some(proto.to_string()),
                            port: *port,
                            app_protocol: None,
                        })
                        .collect(),
                ),
            }]),
        }
    }

    fn fixture() -> (Vec<Service>, Vec<Endpoints>) {
        let services = vec![
            service(
                "default",
                "web",
                "NodePort",
                "10.96.1.2",
                &[("http", "TCP", 80, Some(30080)), ("dns", "UDP", 53, None)],
            ),
            service("default", "empty", "ClusterIP", "10.96.1.3", &[("", "TCP", 8080, None)]),
            service("default", "headless", "ClusterIP", "None", &[("", "TCP", 80, None)]),
            service("default", "ext", "ExternalName", "", &[]),
            service("other", "sctp", "ClusterIP", "10.96.1.4", &[("", "SCTP", 9, None)]),
        ];
        let endpoints = vec![
            endpoints(
                "default",
                "web",
                &["10.244.0.3", "10.244.0.2"],
                &["10.244.0.9"],
                &[("http", "TCP", 8080), ("dns", "UDP", 5353)],
            ),
            endpoints("default", "empty", &[], &["10.244.0.4"], &[("", "TCP", 8080)]),
            endpoints("default", "headless", &["10.244.0.5"], &[], &[("", "TCP", 80)]),
        ];
        (services, endpoints)
    }

    #[test]
    fn service_ports_match_endpoint_ports_by_name_and_keep_only_ready_addresses() {
        let (services, eps) = fixture();
        let ports = service_ports(&services, &eps);
        let summary: Vec<String> = ports
            .iter()
            .map(|p| {
                format!(
                    "{}/{}:{} {:?} np={:?} {:?}",
                    p.namespace, p.service, p.port, p.protocol, p.node_port, p.endpoints
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                "default/empty:8080 Tcp np=None []",
                "default/web:53 Udp np=None [(10.244.0.2, 5353), (10.244.0.3, 5353)]",
                "default/web:80 Tcp np=Some(30080) [(10.244.0.2, 8080), (10.244.0.3, 8080)]",
            ]
        );
    }

    #[test]
    fn node_ports_of_cluster_ip_services_are_ignored_and_bad_names_skipped() {
        let services = vec![
            service("default", "a", "ClusterIP", "10.96.0.5", &[("", "TCP", 80, Some(30001))]),
            service("default", "B;flush", "ClusterIP", "10.96.0.6", &[("", "TCP", 80, None)]),
            service("default", "c", "ClusterIP", "10.96.0.7", &[("bad name", "TCP", 80, None)]),
        ];
        let ports = service_ports(&services, &[]);
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].node_port, None);
    }

    #[test]
    fn renders_the_golden_table() {
        let (services, eps) = fixture();
        let body =
            render(&service_ports(&services, &eps), &["192.0.2.10".parse().unwrap(), "127.0.0.1".parse().unwrap()]);
        let golden = "\
set node-addresses {
	type ipv4_addr
	elements = {
		127.0.0.1,
		192.0.2.10
	}
}
map service-ips {
	type ipv4_addr . inet_proto . inet_service : verdict
	elements = {
		10.96.1.2 . udp . 53 : goto svc/default/web/udp/53,
		10.96.1.2 . tcp . 80 : goto svc/default/web/tcp/80
	}
}
map service-nodeports {
	type inet_proto . inet_service : verdict
	elements = {
		tcp . 30080 : goto svc/default/web/tcp/80
	}
}
map no-endpoint-services {
	type ipv4_addr . inet_proto . inet_service : verdict
	elements = {
		10.96.1.3 . tcp . 8080 : goto reject-service
	}
}
map no-endpoint-nodeports {
	type inet_proto . inet_service : verdict
}
chain reject-service {
	meta l4proto tcp reject with tcp reset
	reject
}
chain filter-input {
	type filter hook input priority -110; policy accept;
	ct state new ip daddr @node-addresses meta l4proto . th dport vmap @no-endpoint-nodeports
}
chain filter-forward {
	type filter hook forward priority -110; policy accept;
	ct state new ip daddr . meta l4proto . th dport vmap @no-endpoint-services
}
chain filter-output {
	type filter hook output priority -110; policy accept;
	ct state new ip daddr . meta l4proto . th dport vmap @no-endpoint-services
}
chain services {
	ip daddr . meta l4proto . th dport vmap @service-ips
	ip daddr @node-addresses meta l4proto . th dport vmap @service-nodeports
}
chain nat-prerouting {
	type nat hook prerouting priority dstnat; policy accept;
	jump services
}
chain nat-output {
	type nat hook output priority -100; policy accept;
	jump services
}
chain nat-postrouting {
	type nat hook postrouting priority srcnat; policy accept;
	meta mark & 0x4000 == 0x4000 meta mark set meta mark ^ 0x4000 masquerade fully-random
}
chain svc/default/web/udp/53 {
	meta mark set meta mark | 0x4000
	numgen random mod 2 vmap { 0 : goto ep/default/web/udp/53/10.244.0.2/5353, 1 : goto ep/default/web/udp/53/10.244.0.3/5353 }
}
chain ep/default/web/udp/53/10.244.0.2/5353 {
	meta l4proto udp dnat ip to 10.244.0.2:5353
}
chain ep/default/web/udp/53/10.244.0.3/5353 {
	meta l4proto udp dnat ip to 10.244.0.3:5353
}
chain svc/default/web/tcp/80 {
	meta mark set meta mark | 0x4000
	numgen random mod 2 vmap { 0 : goto ep/default/web/tcp/80/10.244.0.2/8080, 1 : goto ep/default/web/tcp/80/10.244.0.3/8080 }
}
chain ep/default/web/tcp/80/10.244.0.2/8080 {
	meta l4proto tcp dnat ip to 10.244.0.2:8080
}
chain ep/default/web/tcp/80/10.244.0.3/8080 {
	meta l4proto tcp dnat ip to 10.244.0.3:8080
}";
        assert_eq!(body, golden, "rendered:\n{body}");
    }

    #[test]
    fn an_empty_cluster_renders_maps_without_elements() {
        let body = render(&[], &[]);
        assert!(!body.contains("elements"), "{body}");
        assert!(body.contains("chain nat-postrouting"), "{body}");
    }

    /// nft itself is the judge of the syntax: the golden table is loaded into a private network
    /// namespace (`unshare -n`), so the host's ruleset is never touched.
    #[test]
    fn nft_accepts_the_rendered_table_as_root() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipping: needs root for nftables");
            return;
        }
        let (services, eps) = fixture();
        let body = render(&service_ports(&services, &eps), &["192.0.2.10".parse().unwrap()]);
        let script = runtime::network::nft::table_script("inet", "flotilla-svc-test", &body);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.nft");
        std::fs::write(&path, script).unwrap();
        let out = std::process::Command::new("unshare").arg("-n").arg("nft").arg("-f").arg(&path).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// Changing the table in place gives the same table as replacing it, and keeps the base
    /// chains (their handles, hence their hook registrations) as they were. In a private
    /// network namespace (`unshare -n`), so the host's ruleset is never touched.
    #[test]
    fn an_in_place_sync_matches_a_replace_and_keeps_the_base_chains_as_root() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipping: needs root for nftables");
            return;
        }
        let (services, eps) = fixture();
        let addrs = ["192.0.2.10".parse().unwrap()];
        let first = ruleset(&service_ports(&services, &eps), &addrs);
        // the second state: web's ready endpoints collapse to one new pod (10.244.0.9)
        let (services2, mut eps2) = fixture();
        for ep in &mut eps2 {
            for subset in ep.subsets.iter_mut().flatten() {
                for address in subset.addresses.iter_mut().flatten() {
                    address.ip = "10.244.0.9".to_string();
                }
            }
        }
        let second = ruleset(&service_ports(&services2, &eps2), &addrs);
        assert_ne!(first, second);
        let table = "flotilla-svc-sync";
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let create = write("create.nft", &runtime::network::nft::table_script("inet", table, &first.body()));
        let existing: Vec<String> = first.chains.iter().map(|c| c.name.clone()).collect();
        let sync = write("sync.nft", &second.sync_script("inet", table, &existing));
        let replace = write("replace.nft", &runtime::network::nft::table_script("inet", table, &second.body()));
        let script = format!(
            "set -e; nft -f {create}; nft -a list table inet {table}; echo ===; nft -f {sync}; nft -a list table inet {table}; \
             echo ===; nft -f {replace}; nft list table inet {table}"
        );
        let out = std::process::Command::new("unshare").args(["-n", "sh", "-c", &script]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
        let parts: Vec<&str> = stdout.split("===\n").collect();
        assert_eq!(parts.len(), 3, "{stdout}");
        let handle = |listing: &str, chain: &str| {
            listing.lines().find(|l| l.trim().starts_with(&format!("chain {chain} {{"))).map(str::to_string)
        };
        for base in ["nat-prerouting", "nat-output", "nat-postrouting", "filter-input"] {
            let before = handle(parts[0], base);
            assert!(before.is_some(), "{base} missing: {}", parts[0]);
            assert_eq!(before, handle(parts[1], base), "{base} was replaced");
        }
        // without handles, the synced table and the replaced one hold the same lines
        let strip = |listing: &str| -> Vec<String> {
            let mut lines: Vec<String> = listing
                .lines()
                .map(|l| l.split(" # handle").next().unwrap_or("").trim().to_string())
                .filter(|l| !l.is_empty())
                .collect();
            lines.sort();
            lines
        };
        assert_eq!(strip(parts[1]), strip(parts[2]));
        assert!(!parts[1].contains("10.244.0.2"), "a stale endpoint chain is left: {}", parts[1]);
    }
}
