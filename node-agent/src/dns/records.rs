//! The cluster's DNS records, built from Services and Endpoints, and the lookup of one
//! fully-qualified name in them. Pure: no sockets, no DNS wire format; [`super`] turns a
//! [`Answer`] into a response message.
//!
//! Names follow Kubernetes' DNS specification for Services:
//! - `SVC.NS.svc.cluster.local` A: the cluster IP, or for a headless service the ready
//!   endpoints' addresses;
//! - `_PORT._PROTO.SVC.NS.svc.cluster.local` SRV for each named port (and SRV on the service
//!   name itself lists every named port);
//! - names that exist with other types (AAAA, or the `svc.cluster.local`-style parents) answer
//!   with no data rather than NXDOMAIN, so resolvers that ask A and AAAA together still succeed;
//! - every other name under `cluster.local` is NXDOMAIN, and names outside it are not ours.
//!
//! The short forms (`SVC`, `SVC.NS`, `SVC.NS.svc`) reach this server already expanded by the
//! client's search path (`NS.svc.cluster.local svc.cluster.local cluster.local`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use api::core::{Endpoints, Service};

use crate::proxy::rules::{is_label, Protocol};

/// The cluster domain.
pub const DOMAIN: &str = "cluster.local";

/// Everything the DNS server answers for the cluster domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Records {
    services: BTreeMap<(String, String), ServiceRecord>,
}

/// The record types a lookup distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryKind {
    A,
    Srv,
    /// Any other type: answered with no data for names that exist.
    Other,
}

/// One SRV answer: `0 100 port target`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvTarget {
    pub port: u16,
    /// Fully qualified, with the trailing dot.
    pub target: String,
    /// The addresses of `target`, for the additional section.
    pub addresses: Vec<Ipv4Addr>,
}

/// The outcome of a lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A records.
    Addresses(Vec<Ipv4Addr>),
    /// SRV records.
    Services(Vec<SrvTarget>),
    /// The name exists but has no records of the asked type.
    NoData,
    /// The name is in the cluster domain and does not exist.
    NxDomain,
    /// The name is outside the cluster domain: forward it.
    NotOurs,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ServiceRecord {
    addresses: Vec<Ipv4Addr>,
    /// (port name, protocol) → port number for SRV.
    named_ports: BTreeMap<(String, Protocol), u16>,
}

impl Records {
    /// The records of `services`; headless services take their ready addresses and target ports
    /// from `endpoints`.
    pub fn build(services: &[Service], endpoints: &[Endpoints]) -> Records {
        let mut out = BTreeMap::new();
        for svc in services {
            let (Some(ns), Some(name)) = (svc.metadata.namespace.as_deref(), svc.metadata.name.as_deref()) else {
                continue;
            };
            let Some(spec) = svc.spec.as_ref() else { continue };
            if !is_label(ns) || !is_label(name) || spec.type_.as_deref() == Some("ExternalName") {
                continue;
            }
            let eps = endpoints
                .iter()
                .find(|e| e.metadata.namespace.as_deref() == Some(ns) && e.metadata.name.as_deref() == Some(name));
            let headless = spec.cluster_ip.as_deref() == Some("None");
            let mut record = ServiceRecord { addresses: Vec::new(), named_ports: BTreeMap::new() };
            if headless {
                let mut ips = BTreeSet::new();
                for subset in eps.iter().flat_map(|e| e.subsets.iter().flatten()) {
                    for a in subset.addresses.iter().flatten() {
                        ips.extend(a.ip.parse::<Ipv4Addr>().ok());
                    }
                    for p in subset.ports.iter().flatten() {
                        let (Some(pn), Some(proto), Ok(port)) =
                            (p.name.as_deref(), Protocol::from_k8s(p.protocol.as_deref()), u16::try_from(p.port))
                        else {
                            continue;
                        };
                        record.named_ports.entry((pn.to_string(), proto)).or_insert(port);
                    }
                }
                record.addresses = ips.into_iter().collect();
            } else {
                let Some(ip) = spec.cluster_ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok()) else {
                    continue;
                };
                record.addresses = vec![ip];
                for p in spec.ports.iter().flatten() {
                    let (Some(pn), Some(proto), Ok(port)) =
                        (p.name.as_deref(), Protocol::from_k8s(p.protocol.as_deref()), u16::try_from(p.port))
                    else {
                        continue;
                    };
                    record.named_ports.insert((pn.to_string(), proto), port);
                }
            }
            out.insert((ns.to_string(), name.to_string()), record);
        }
        Records { services: out }
    }

    /// Looks up a fully-qualified name (case-insensitive, trailing dot optional).
    pub fn lookup(&self, name: &str, kind: QueryKind) -> Answer {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let rest = if name == DOMAIN {
            ""
        } else if let Some(rest) = name.strip_suffix(DOMAIN).and_then(|r| r.strip_suffix('.')) {
            rest
        } else {
            return Answer::NotOurs;
        };
        let labels: Vec<&str> = if rest.is_empty() { Vec::new() } else { rest.split('.').collect() };
        match labels.as_slice() {
            [] | ["svc"] => Answer::NoData,
            [ns, "svc"] => {
                if self.services.keys().any(|(n, _)| n == ns) {
                    Answer::NoData
                } else {
                    Answer::NxDomain
                }
            }
            [svc, ns, "svc"] => {
                let Some(record) = self.services.get(&(ns.to_string(), svc.to_string())) else {
                    return Answer::NxDomain;
                };
                match kind {
                    QueryKind::A if !record.addresses.is_empty() => Answer::Addresses(record.addresses.clone()),
                    QueryKind::Srv if !record.named_ports.is_empty() => {
                        Answer::Services(record.named_ports.values().map(|port| srv(svc, ns, *port, record)).collect())
                    }
                    _ => Answer::NoData,
                }
            }
            [proto, svc, ns, "svc"] if proto.starts_with('_') => {
                match self.services.get(&(ns.to_string(), svc.to_string())) {
                    Some(record)
                        if record.named_ports.keys().any(|(_, p)| Some(p.as_str()) == proto.strip_prefix('_')) =>
                    {
                        Answer::NoData
                    }
                    _ => Answer::NxDomain,
                }
            }
            [port, proto, svc, ns, "svc"] => {
                let (Some(port), Some(proto)) = (port.strip_prefix('_'), proto.strip_prefix('_')) else {
                    return Answer::NxDomain;
                };
                let Some(record) = self.services.get(&(ns.to_string(), svc.to_string())) else {
                    return Answer::NxDomain;
                };
                let found = record.named_ports.iter().find(|((n, p), _)| n == port && p.as_str() == proto);
                match (found, kind) {
                    (Some((_, number)), QueryKind::Srv) => Answer::Services(vec![srv(svc, ns, *number, record)]),
                    (Some(_), _) => Answer::NoData,
                    (None, _) => Answer::NxDomain,
                }
            }
            _ => Answer::NxDomain,
        }
    }
}

fn srv(svc: &str, ns: &str, port: u16, record: &ServiceRecord) -> SrvTarget {
    SrvTarget { port, target: format!("{svc}.{ns}.svc.{DOMAIN}."), addresses: record.addresses.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::core::{EndpointAddress, EndpointPort, EndpointSubset, ServicePort, ServiceSpec};
    use api::meta::ObjectMeta;

    fn meta(ns: &str, name: &str) -> ObjectMeta {
        ObjectMeta { namespace: Some(ns.into()), name: Some(name.into()), ..Default::default() }
    }

    fn records() -> Records {
        let port = |name: Option<&str>, proto: &str, port: i32| ServicePort {
            name: name.map(str::to_string),
            protocol: Some(proto.into()),
            port,
            ..Default::default()
        };
        let svc = |ns: &str, name: &str, ip: &str, ports: Vec<ServicePort>| Service {
            metadata: meta(ns, name),
            spec: Some(ServiceSpec { cluster_ip: Some(ip.into()), ports: Some(ports), ..Default::default() }),
            ..Default::default()
        };
        let services = vec![
            svc("default", "web", "10.96.1.2", vec![port(Some("http"), "TCP", 80), port(Some("dns"), "UDP", 53)]),
            svc("prod", "db", "None", vec![port(Some("pg"), "TCP", 5432)]),
            svc("prod", "plain", "10.96.1.9", vec![port(None, "TCP", 8080)]),
        ];
        let endpoints = vec![Endpoints {
            metadata: meta("prod", "db"),
            subsets: Some(vec![EndpointSubset {
                addresses: Some(
                    ["10.244.1.7", "10.244.0.5"]
                        .iter()
                        .map(|ip| EndpointAddress { ip: ip.to_string(), ..Default::default() })
                        .collect(),
                ),
                not_ready_addresses: Some(vec![EndpointAddress { ip: "10.244.0.9".into(), ..Default::default() }]),
                ports: Some(vec![EndpointPort {
                    name: Some("pg".into()),
                    port: 15432,
                    protocol: Some("TCP".into()),
                    app_protocol: None,
                }]),
            }]),
        }];
        Records::build(&services, &endpoints)
    }

    fn check(name: &str, kind: QueryKind, expected: Answer) {
        assert_eq!(records().lookup(name, kind), expected, "{name} {kind:?}");
    }

    fn ips(list: &[&str]) -> Answer {
        Answer::Addresses(list.iter().map(|ip| ip.parse().unwrap()).collect())
    }

    #[test]
    fn service_names_answer_their_cluster_ip() {
        check("web.default.svc.cluster.local.", QueryKind::A, ips(&["10.96.1.2"]));
        check("WEB.Default.SVC.cluster.local", QueryKind::A, ips(&["10.96.1.2"]));
        check("plain.prod.svc.cluster.local.", QueryKind::A, ips(&["10.96.1.9"]));
    }

    #[test]
    fn headless_services_answer_their_ready_endpoints() {
        check("db.prod.svc.cluster.local.", QueryKind::A, ips(&["10.244.0.5", "10.244.1.7"]));
    }

    #[test]
    fn srv_records_for_named_ports() {
        let web = |port| SrvTarget {
            port,
            target: "web.default.svc.cluster.local.".into(),
            addresses: vec!["10.96.1.2".parse().unwrap()],
        };
        check("_http._tcp.web.default.svc.cluster.local.", QueryKind::Srv, Answer::Services(vec![web(80)]));
        check("_dns._udp.web.default.svc.cluster.local.", QueryKind::Srv, Answer::Services(vec![web(53)]));
        check("web.default.svc.cluster.local.", QueryKind::Srv, Answer::Services(vec![web(53), web(80)]));
        // A headless service's SRV carries the endpoints' (target) port.
        let db = records().lookup("_pg._tcp.db.prod.svc.cluster.local.", QueryKind::Srv);
        assert!(matches!(&db, Answer::Services(s) if s.len() == 1 && s[0].port == 15432), "{db:?}");
    }

    #[test]
    fn existing_names_without_such_records_answer_no_data() {
        check("web.default.svc.cluster.local.", QueryKind::Other, Answer::NoData);
        check("plain.prod.svc.cluster.local.", QueryKind::Srv, Answer::NoData);
        check("_http._tcp.web.default.svc.cluster.local.", QueryKind::A, Answer::NoData);
        check("_tcp.web.default.svc.cluster.local.", QueryKind::Srv, Answer::NoData);
        check("default.svc.cluster.local.", QueryKind::A, Answer::NoData);
        check("svc.cluster.local.", QueryKind::A, Answer::NoData);
        check("cluster.local.", QueryKind::A, Answer::NoData);
    }

    #[test]
    fn unknown_names_in_the_cluster_domain_are_nxdomain() {
        for name in [
            "nope.default.svc.cluster.local.",
            "web.nope.svc.cluster.local.",
            "nope.svc.cluster.local.",
            "web.default.cluster.local.",
            "x.web.default.svc.cluster.local.",
            "_http._udp.web.default.svc.cluster.local.",
            "_nope._tcp.web.default.svc.cluster.local.",
            "http.tcp.web.default.svc.cluster.local.",
            "a.b.c.d.e.f.svc.cluster.local.",
            // What the search path makes of a name that is not a service.
            "example.com.default.svc.cluster.local.",
        ] {
            check(name, QueryKind::A, Answer::NxDomain);
        }
    }

    #[test]
    fn names_outside_the_cluster_domain_are_forwarded() {
        for name in ["example.com.", "web.default.", "notcluster.local.", "cluster.local.example.com.", "."] {
            check(name, QueryKind::A, Answer::NotOurs);
        }
    }
}
