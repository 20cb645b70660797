//! The node's nftables table `inet flotilla-<hash>`: masquerade of pod traffic that leaves the
//! cluster CIDR, and the pods' hostPorts (DNAT from any of the node's addresses, for traffic
//! arriving from outside and for the node's own connections, 127.0.0.1 included).
//!
//! The table is rendered whole from the current pods (pure, [`render_table`]) and applied with
//! one atomic replace. Services live in the proxy's own tables, so nothing here has to merge
//! with them. Connections to a hostPort from 127.0.0.1 are rerouted onto the bridge after the
//! DNAT, which the kernel allows only with `route_localnet` on the bridge; they are masqueraded
//! so the pod answers the gateway instead of a loopback address. Connections from a pod of the
//! same bridge to a hostPort are masqueraded too (hairpin), since without br_netfilter the
//! pod's answer would otherwise bypass conntrack on the bridge.

use std::fmt::Write;
use std::net::Ipv4Addr;

use api::core::Pod;
use runtime::network::ipam::Ipv4Net;

/// One hostPort mapping of a pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostPort {
    pub protocol: Protocol,
    /// Only traffic to this address of the node; any of its addresses when `None`.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub pod_ip: Ipv4Addr,
    pub container_port: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// What the table is rendered for.
#[derive(Clone, Debug)]
pub struct TableConfig {
    /// The node's bridge (`flb-<hash>`).
    pub bridge: String,
    /// This node's podCIDR.
    pub pod_cidr: Ipv4Net,
    /// The whole cluster's pod CIDR (10.244.0.0/16).
    pub cluster_cidr: Ipv4Net,
}

/// The table's body (chains, without `table inet NAME { }`), for `nft::apply_table`.
pub fn render_table(config: &TableConfig, ports: &[HostPort]) -> String {
    let mut ports = ports.to_vec();
    ports.sort();
    ports.dedup();
    let bridge = &config.bridge;
    let mut out = String::new();
    // Numeric priorities (dstnat = -100, srcnat = 100): nftables 1.0.6 refuses the `dstnat`
    // keyword on the output hook. Writing to a String cannot fail.
    let _ = writeln!(out, "chain prerouting {{\n\ttype nat hook prerouting priority -100; policy accept;");
    let _ = writeln!(out, "\tmeta nfproto ipv4 fib daddr type local jump hostports\n}}");
    let _ = writeln!(out, "chain output {{\n\ttype nat hook output priority -100; policy accept;");
    let _ = writeln!(out, "\tmeta nfproto ipv4 fib daddr type local jump hostports\n}}");
    let _ = writeln!(out, "chain hostports {{");
    for p in &ports {
        let only = p.host_ip.map(|ip| format!("ip daddr {ip} ")).unwrap_or_default();
        let _ = writeln!(
            out,
            "\t{only}{proto} dport {} dnat ip to {}:{}",
            p.host_port,
            p.pod_ip,
            p.container_port,
            proto = p.protocol.nft()
        );
    }
    let _ = writeln!(out, "}}");
    let _ = writeln!(out, "chain postrouting {{\n\ttype nat hook postrouting priority 100; policy accept;");
    let _ = writeln!(out, "\tip saddr {} ip daddr != {} masquerade", config.pod_cidr, config.cluster_cidr);
    let _ = writeln!(out, "\toifname \"{bridge}\" ip saddr 127.0.0.0/8 masquerade");
    let _ = writeln!(out, "\toifname \"{bridge}\" ip saddr {} ct status dnat masquerade", config.pod_cidr);
    let _ = write!(out, "}}");
    out
}

/// The hostPorts a pod's containers and sidecars ask for (`ports[].hostPort`), mapped to
/// `pod_ip`. Ports with a protocol other than TCP or UDP, or out of range, are left out with a
/// warning.
pub fn pod_host_ports(pod: &Pod, pod_ip: Ipv4Addr) -> Vec<HostPort> {
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or(&[]);
    let inits = pod.spec.as_ref().and_then(|s| s.init_containers.as_deref()).unwrap_or(&[]);
    let sidecars = inits.iter().filter(|c| api::pods::is_sidecar(c));
    let mut out = Vec::new();
    for port in containers.iter().chain(sidecars).flat_map(|c| c.ports.iter().flatten()) {
        let Some(host_port) = port.host_port.filter(|p| *p > 0) else { continue };
        let protocol = match port.protocol.as_deref().unwrap_or("TCP") {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            other => {
                tracing::warn!(pod = ?pod.metadata.name, protocol = other, "hostPort with this protocol is not supported; ignored");
                continue;
            }
        };
        let (Ok(host_port), Ok(container_port)) = (u16::try_from(host_port), u16::try_from(port.container_port)) else {
            tracing::warn!(pod = ?pod.metadata.name, host_port, "hostPort or containerPort out of range; ignored");
            continue;
        };
        let host_ip = port.host_ip.as_deref().filter(|ip| !ip.is_empty() && *ip != "0.0.0.0").and_then(|ip| ip.parse().ok());
        out.push(HostPort { protocol, host_ip, host_port, pod_ip, container_port });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TableConfig {
        TableConfig {
            bridge: "flb-0a1b2c3d".into(),
            pod_cidr: "10.244.3.0/24".parse().unwrap(),
            cluster_cidr: "10.244.0.0/16".parse().unwrap(),
        }
    }

    #[test]
    fn renders_masquerade_and_sorted_deduplicated_hostports() {
        let pod_ip = Ipv4Addr::new(10, 244, 3, 2);
        let ports = vec![
            HostPort { protocol: Protocol::Udp, host_ip: Some(Ipv4Addr::new(10, 0, 0, 5)), host_port: 53, pod_ip, container_port: 5353 },
            HostPort { protocol: Protocol::Tcp, host_ip: None, host_port: 8080, pod_ip, container_port: 80 },
            HostPort { protocol: Protocol::Tcp, host_ip: None, host_port: 8080, pod_ip, container_port: 80 },
        ];
        let text = render_table(&config(), &ports);
        assert_eq!(text.matches("dnat ip to").count(), 2, "{text}");
        assert!(text.contains("\ttcp dport 8080 dnat ip to 10.244.3.2:80\n"), "{text}");
        assert!(text.contains("\tip daddr 10.0.0.5 udp dport 53 dnat ip to 10.244.3.2:5353\n"), "{text}");
        assert!(text.contains("ip saddr 10.244.3.0/24 ip daddr != 10.244.0.0/16 masquerade"), "{text}");
        assert!(text.contains("oifname \"flb-0a1b2c3d\" ip saddr 127.0.0.0/8 masquerade"), "{text}");
        // Base chains hooked where NAT happens, so the table works on its own.
        assert!(text.contains("type nat hook prerouting priority -100"));
        assert!(text.contains("type nat hook output priority -100"));
        assert!(text.contains("type nat hook postrouting priority 100"));
    }

    #[test]
    fn an_empty_node_still_masquerades() {
        let text = render_table(&config(), &[]);
        assert!(text.contains("chain hostports {\n}"), "{text}");
        assert!(text.contains("masquerade"));
    }

    #[tokio::test]
    async fn nft_accepts_the_rendered_table_as_root() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipping: needs root for nftables");
            return;
        }
        let name = format!("flotilla-hostport-test-{}", std::process::id());
        let pod_ip = Ipv4Addr::new(10, 244, 3, 2);
        let ports = [
            HostPort { protocol: Protocol::Tcp, host_ip: None, host_port: 8080, pod_ip, container_port: 80 },
            HostPort { protocol: Protocol::Udp, host_ip: Some(Ipv4Addr::new(10, 0, 0, 5)), host_port: 53, pod_ip, container_port: 53 },
        ];
        let applied = runtime::network::nft::apply_table("inet", &name, &render_table(&config(), &ports)).await;
        let listed = runtime::network::nft::list_table("inet", &name).await;
        let _ = runtime::network::nft::delete_table("inet", &name).await;
        applied.unwrap();
        let listed = listed.unwrap();
        assert!(listed.contains("dnat ip to 10.244.3.2:80"), "{listed}");
    }

    #[test]
    fn host_ports_come_from_the_containers_and_sidecars_ports() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {"containers": [
                {"name": "a", "ports": [
                    {"containerPort": 80, "hostPort": 8080},
                    {"containerPort": 81},
                    {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "10.0.0.5"},
                    {"containerPort": 9, "hostPort": 9, "protocol": "SCTP"}
                ]},
                {"name": "b", "ports": [{"containerPort": 443, "hostPort": 8443, "hostIP": "0.0.0.0"}]}
            ],
            "initContainers": [
                {"name": "setup", "ports": [{"containerPort": 1, "hostPort": 1}]},
                {"name": "proxy", "restartPolicy": "Always", "ports": [{"containerPort": 15001, "hostPort": 15001}]}
            ]}
        }))
        .unwrap();
        let ip = Ipv4Addr::new(10, 244, 3, 9);
        let ports = pod_host_ports(&pod, ip);
        assert_eq!(
            ports,
            vec![
                HostPort { protocol: Protocol::Tcp, host_ip: None, host_port: 8080, pod_ip: ip, container_port: 80 },
                HostPort { protocol: Protocol::Udp, host_ip: Some(Ipv4Addr::new(10, 0, 0, 5)), host_port: 5353, pod_ip: ip, container_port: 53 },
                HostPort { protocol: Protocol::Tcp, host_ip: None, host_port: 8443, pod_ip: ip, container_port: 443 },
                HostPort { protocol: Protocol::Tcp, host_ip: None, host_port: 15001, pod_ip: ip, container_port: 15001 },
            ]
        );
    }
}
