//! Published ports (`docker run -p`): parsing `[IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp]`,
//! choosing host ports (a random free one for `-p CONTAINERPORT`, as docker does), checking
//! that a host port is free, and docker's `ps` PORTS text (`0.0.0.0:8080->80/tcp`).
//!
//! Hand-written: the grammar is docker's and tiny, and the check for a free port is one
//! `bind` on the host, the same test docker's port allocator makes.

use std::collections::HashSet;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A transport protocol a port is published for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One `-p` as the user wrote it: the host port may be left to choose at start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// Only this host address (`-p 127.0.0.1:8080:80`); `None` is every address.
    pub host_ip: Option<Ipv4Addr>,
    /// `None`: a random free port, picked when the container starts.
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub protocol: Protocol,
}

/// A port as published while the container runs: the host port is known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

/// Why a `-p` value or a host port cannot be used. Wording follows docker's.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("invalid publish specification {spec:?}: {reason}; use [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp], e.g. 8080:80 or 127.0.0.1:5353:53/udp")]
    Invalid { spec: String, reason: String },
    #[error("Bind for {addr} failed: port is already allocated: choose another host port or stop what uses it")]
    Allocated { addr: String },
    #[error("no free host port for {container_port}/{protocol}: free some ports or name one with -p HOSTPORT:{container_port}")]
    NoFreePort { container_port: u16, protocol: &'static str },
}

impl FromStr for PortSpec {
    type Err = PortError;
    fn from_str(s: &str) -> Result<PortSpec, PortError> {
        parse_publish(s)
    }
}

/// Parses one `-p` value.
pub fn parse_publish(spec: &str) -> Result<PortSpec, PortError> {
    let invalid = |reason: &str| PortError::Invalid { spec: spec.to_string(), reason: reason.to_string() };
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((rest, "tcp")) => (rest, Protocol::Tcp),
        Some((rest, "udp")) => (rest, Protocol::Udp),
        Some((_, other)) => return Err(invalid(&format!("invalid proto: {other}"))),
        None => (spec, Protocol::Tcp),
    };
    if rest.contains('[') || rest.matches(':').count() > 2 {
        return Err(invalid("only IPv4 host addresses are supported"));
    }
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [container] => (None, None, *container),
        [host, container] => (None, Some(*host), *container),
        [ip, host, container] => (Some(*ip), Some(*host), *container),
        _ => return Err(invalid("too many ':'")),
    };
    let port = |text: &str, what: &str| -> Result<u16, PortError> {
        if text.contains('-') {
            return Err(invalid("port ranges are not supported: publish each port with its own -p"));
        }
        match text.parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(invalid(&format!("invalid {what}: {text}"))),
        }
    };
    let host_ip = match ip.filter(|ip| !ip.is_empty()) {
        None => None,
        Some(text) => {
            let addr: Ipv4Addr = text.parse().map_err(|_| invalid(&format!("invalid IP address: {text}")))?;
            (!addr.is_unspecified()).then_some(addr)
        }
    };
    let host_port = match host.filter(|h| !h.is_empty()) {
        None => None,
        Some(text) => Some(port(text, "hostPort")?),
    };
    Ok(PortSpec { host_ip, host_port, container_port: port(container, "containerPort")?, protocol })
}

impl fmt::Display for PublishedPort {
    /// Docker's `ps` form: `0.0.0.0:8080->80/tcp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        write!(f, "{ip}:{}->{}/{}", self.host_port, self.container_port, self.protocol.as_str())
    }
}

/// The PORTS column of `ps`: every published port, comma-separated.
pub fn ports_column(ports: &[PublishedPort]) -> String {
    ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// Gives every spec a host port: explicit ones are checked free (not published by another
/// container, in `taken`, and bindable on this host), the others get a random free one.
/// Ports handed out here are added to `taken`.
pub fn assign(
    specs: &[PortSpec],
    taken: &mut HashSet<(Protocol, u16)>,
) -> Result<Vec<PublishedPort>, PortError> {
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        let ip = spec.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let host_port = match spec.host_port {
            Some(port) => {
                if taken.contains(&(spec.protocol, port)) || !bindable(spec.protocol, ip, port) {
                    return Err(PortError::Allocated { addr: format!("{ip}:{port}") });
                }
                port
            }
            None => random_port(spec, ip, taken)?,
        };
        taken.insert((spec.protocol, host_port));
        out.push(PublishedPort {
            host_ip: spec.host_ip,
            host_port,
            container_port: spec.container_port,
            protocol: spec.protocol,
        });
    }
    Ok(out)
}

/// A port from the kernel's ephemeral range (docker's allocator uses the same range), found by
/// binding port 0, so nothing listening on the host is shadowed.
fn random_port(spec: &PortSpec, ip: Ipv4Addr, taken: &HashSet<(Protocol, u16)>) -> Result<u16, PortError> {
    for _ in 0..64 {
        let addr = SocketAddrV4::new(ip, 0);
        let port = match spec.protocol {
            Protocol::Tcp => TcpListener::bind(addr).and_then(|l| l.local_addr()).map(|a| a.port()),
            Protocol::Udp => UdpSocket::bind(addr).and_then(|s| s.local_addr()).map(|a| a.port()),
        };
        match port {
            Ok(port) if !taken.contains(&(spec.protocol, port)) => return Ok(port),
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    Err(PortError::NoFreePort { container_port: spec.container_port, protocol: spec.protocol.as_str() })
}

/// Whether nothing on this host holds `ip:port` (a DNAT rule would silently steal its traffic).
fn bindable(protocol: Protocol, ip: Ipv4Addr, port: u16) -> bool {
    let addr = SocketAddrV4::new(ip, port);
    match protocol {
        Protocol::Tcp => TcpListener::bind(addr).is_ok(),
        Protocol::Udp => UdpSocket::bind(addr).is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (host ip, host port, container port, protocol) or a piece of the error.
    type Want<'a> = Result<(Option<&'a str>, Option<u16>, u16, Protocol), &'a str>;

    fn check(spec: &str, want: Want<'_>) {
        match (parse_publish(spec), want) {
            (Ok(p), Ok((ip, host, container, proto))) => {
                assert_eq!(p.host_ip, ip.map(|i| i.parse().expect("test ip")), "{spec}");
                assert_eq!((p.host_port, p.container_port, p.protocol), (host, container, proto), "{spec}");
            }
            (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{spec}: {e}"),
            (got, want) => panic!("{spec}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn publish_specs_parse_like_docker() {
        check("80", Ok((None, None, 80, Protocol::Tcp)));
        check("8080:80", Ok((None, Some(8080), 80, Protocol::Tcp)));
        check("5353:53/udp", Ok((None, Some(5353), 53, Protocol::Udp)));
        check("127.0.0.1:8080:80/tcp", Ok((Some("127.0.0.1"), Some(8080), 80, Protocol::Tcp)));
        check("127.0.0.1::80", Ok((Some("127.0.0.1"), None, 80, Protocol::Tcp)));
        check("0.0.0.0:8080:80", Ok((None, Some(8080), 80, Protocol::Tcp)));
        check(":80", Ok((None, None, 80, Protocol::Tcp)));
        check("80/sctp", Err("invalid proto: sctp"));
        check("abc", Err("invalid containerPort: abc"));
        check("0", Err("invalid containerPort: 0"));
        check("70000:80", Err("invalid hostPort: 70000"));
        check("8080:", Err("invalid containerPort: "));
        check("1.2.3:8080:80", Err("invalid IP address: 1.2.3"));
        check("8000-8010:80", Err("port ranges are not supported"));
        check("[::1]:8080:80", Err("only IPv4"));
        check("a:b:c:d", Err("only IPv4"));
        check("", Err("invalid containerPort"));
    }

    #[test]
    fn ps_column_is_dockers() {
        let ports = vec![
            PublishedPort { host_ip: None, host_port: 8080, container_port: 80, protocol: Protocol::Tcp },
            PublishedPort {
                host_ip: Some(Ipv4Addr::LOCALHOST),
                host_port: 5353,
                container_port: 53,
                protocol: Protocol::Udp,
            },
        ];
        assert_eq!(ports_column(&ports), "0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp");
        assert_eq!(ports_column(&[]), "");
    }

    #[test]
    fn assign_picks_free_ports_and_refuses_taken_ones() {
        let mut taken = HashSet::new();
        let specs = vec![
            parse_publish("80").expect("spec"),
            parse_publish("53/udp").expect("spec"),
        ];
        let got = assign(&specs, &mut taken).expect("assign");
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|p| p.host_port > 0));
        assert_eq!(taken.len(), 2);
        // A port published by another container is refused, as is one held by a socket here.
        let again = PortSpec { host_port: Some(got[0].host_port), ..specs[0].clone() };
        let err = assign(&[again], &mut taken).expect_err("taken");
        assert!(err.to_string().contains("port is already allocated"), "{err}");
        let holder = TcpListener::bind("127.0.0.1:0").expect("bind");
        let held = holder.local_addr().expect("addr").port();
        let spec = PortSpec {
            host_ip: Some(Ipv4Addr::LOCALHOST),
            host_port: Some(held),
            container_port: 80,
            protocol: Protocol::Tcp,
        };
        assert!(assign(&[spec], &mut HashSet::new()).is_err());
    }
}
