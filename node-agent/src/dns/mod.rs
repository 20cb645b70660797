//! The node's DNS server: answers names in `cluster.local` from [`records::Records`] and
//! forwards every other name to the upstream servers of the host's `/etc/resolv.conf`.
//!
//! Hand-written over hickory-proto's message types rather than hickory-server: the server needs
//! one zone computed from a watch channel plus a plain relay for everything else. A relay of
//! the client's own bytes keeps upstream answers (EDNS, DNSSEC bits, truncation) untouched,
//! which hickory-server's forwarder, a full recursive client, would re-encode; and
//! hickory-server's catalog/authority traits change from one release to the next.
//!
//! UDP and TCP are both served on the same address. Forwarding is bounded: each upstream gets
//! [`ServeConfig::upstream_timeout`], at most [`MAX_IN_FLIGHT`] forwards run at once, and a
//! query no upstream answers gets SERVFAIL.

pub mod records;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};

pub use self::records::{Answer, QueryKind, Records};
use crate::proxy::ServiceState;

/// Forwards running at once; queries beyond it get SERVFAIL rather than unbounded tasks.
pub const MAX_IN_FLIGHT: usize = 512;
/// TTL of cluster answers: short, because endpoints move.
pub const TTL: u32 = 5;
/// The UDP payload size this server advertises (the DNS flag day 2020 value).
pub const EDNS_PAYLOAD: u16 = 1232;

/// Why the DNS server could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot listen for DNS on {addr} ({proto}): {source}: is another DNS server using the port?")]
    Bind { addr: SocketAddr, proto: &'static str, source: std::io::Error },
}

/// Where and how to forward names outside the cluster domain.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub upstreams: Vec<SocketAddr>,
    /// How long each upstream gets before the next one is tried.
    pub upstream_timeout: Duration,
}

impl ServeConfig {
    /// The `nameserver` lines of a resolv.conf file (port 53), leaving out `own`, the address
    /// this server listens on, so it never forwards to itself. An unreadable file gives no
    /// upstreams (other names then get SERVFAIL) and a warning.
    pub fn from_resolv_conf(path: &Path, own: SocketAddr) -> ServeConfig {
        let text = std::fs::read_to_string(path).unwrap_or_else(|error| {
            tracing::warn!(path = %path.display(), %error, "cannot read resolv.conf; names outside the cluster will fail");
            String::new()
        });
        let upstreams =
            parse_nameservers(&text).into_iter().map(|ip| SocketAddr::new(ip, 53)).filter(|a| *a != own).collect();
        ServeConfig { upstreams, upstream_timeout: Duration::from_secs(2) }
    }
}

/// Serves DNS on `addr` (UDP and TCP) from `records`, forwarding other names to the servers of
/// `/etc/resolv.conf`. Runs until dropped; if the records' sender goes away, the last records
/// keep being served.
pub async fn serve(addr: SocketAddr, records: watch::Receiver<Arc<Records>>) -> Result<(), DnsError> {
    let udp = UdpSocket::bind(addr).await.map_err(|source| DnsError::Bind { addr, proto: "udp", source })?;
    let tcp = TcpListener::bind(addr).await.map_err(|source| DnsError::Bind { addr, proto: "tcp", source })?;
    let config = ServeConfig::from_resolv_conf(Path::new("/etc/resolv.conf"), addr);
    tracing::info!(%addr, upstreams = ?config.upstreams, "serving cluster DNS");
    serve_on(udp, tcp, records, config, std::future::pending()).await;
    Ok(())
}

/// Serves DNS on already-bound sockets until `shutdown` completes.
pub async fn serve_on(
    udp: UdpSocket,
    tcp: TcpListener,
    records: watch::Receiver<Arc<Records>>,
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
) {
    let udp = Arc::new(udp);
    let config = Arc::new(config);
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    let mut buf = vec![0u8; 65535];
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            received = udp.recv_from(&mut buf) => {
                let (len, peer) = match received {
                    Ok(r) => r,
                    Err(error) => {
                        // ICMP errors from earlier replies surface here on Linux; keep serving.
                        tracing::debug!(%error, "dns udp receive failed");
                        continue;
                    }
                };
                let packet = buf[..len].to_vec();
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    if let Some(reply) = error_reply(&packet, ResponseCode::ServFail) {
                        let _ = udp.send_to(&reply, peer).await;
                    }
                    continue;
                };
                let (udp, records, config) = (udp.clone(), records.borrow().clone(), config.clone());
                tasks.spawn(async move {
                    if let Some(reply) = handle(&packet, &records, &config, Transport::Udp).await {
                        if let Err(error) = udp.send_to(&reply, peer).await {
                            tracing::debug!(%peer, %error, "dns udp reply failed");
                        }
                    }
                    drop(permit);
                });
            }
            accepted = tcp.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (records, config) = (records.clone(), config.clone());
                tasks.spawn(async move { serve_tcp(stream, records, config).await });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    tasks.shutdown().await;
}

/// Keeps DNS records built from a watch of the cluster's services (see
/// [`crate::proxy::watch_services`]); the mapping task ends with `state`'s sender.
pub fn records_from(mut state: watch::Receiver<Arc<ServiceState>>) -> watch::Receiver<Arc<Records>> {
    let (tx, rx) = watch::channel(Arc::new(Records::default()));
    tokio::spawn(async move {
        loop {
            let current = state.borrow_and_update().clone();
            let services: Vec<_> = current.services.values().cloned().collect();
            let endpoints: Vec<_> = current.endpoints.values().cloned().collect();
            tx.send_replace(Arc::new(Records::build(&services, &endpoints)));
            tokio::select! {
                changed = state.changed() => if changed.is_err() { return },
                _ = tx.closed() => return,
            }
        }
    });
    rx
}

/// The DNS answer for one query message, or `None` when it is not a cluster name and must be
/// forwarded. Pure, for tests.
pub fn answer(query: &Message, records: &Records) -> Option<Message> {
    let mut reply = Message::new();
    reply
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true);
    if query.op_code() != OpCode::Query || query.message_type() != MessageType::Query {
        reply.set_response_code(ResponseCode::NotImp);
        return Some(reply);
    }
    let [q] = query.queries() else {
        reply.set_response_code(ResponseCode::FormErr);
        return Some(reply);
    };
    let kind = match q.query_type() {
        RecordType::A => QueryKind::A,
        RecordType::SRV => QueryKind::Srv,
        _ => QueryKind::Other,
    };
    let outcome = records.lookup(&q.name().to_ascii(), kind);
    if outcome == Answer::NotOurs {
        return None;
    }
    reply.add_query(q.clone()).set_authoritative(true);
    let name = q.name().clone();
    match outcome {
        Answer::Addresses(ips) => {
            reply.add_answers(ips.into_iter().map(|ip| Record::from_rdata(name.clone(), TTL, RData::A(A(ip)))));
        }
        Answer::Services(targets) => {
            for t in targets {
                let Ok(target) = Name::from_ascii(&t.target) else { continue };
                let srv = SRV::new(0, 100, t.port, target.clone());
                reply.add_answer(Record::from_rdata(name.clone(), TTL, RData::SRV(srv)));
                reply.add_additionals(
                    t.addresses.iter().map(|ip| Record::from_rdata(target.clone(), TTL, RData::A(A(*ip)))),
                );
            }
        }
        Answer::NoData | Answer::NxDomain => {
            if outcome == Answer::NxDomain {
                reply.set_response_code(ResponseCode::NXDomain);
            }
            // The zone's SOA lets resolvers cache the negative answer (RFC 2308) for TTL.
            if let Some(soa) = soa() {
                reply.add_name_server(soa);
            }
        }
        Answer::NotOurs => return None,
    }
    Some(reply)
}

/// The nameserver addresses of a resolv.conf text.
pub fn parse_nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(addr)) => addr.split('%').next().and_then(|a| a.parse().ok()),
                _ => None,
            }
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

async fn serve_tcp(mut stream: TcpStream, records: watch::Receiver<Arc<Records>>, config: Arc<ServeConfig>) {
    // An idle connection is closed, as RFC 7766 suggests, so clients cannot pin tasks forever.
    let idle = Duration::from_secs(10);
    loop {
        let Ok(Ok(packet)) = tokio::time::timeout(idle, read_framed(&mut stream)).await else { return };
        let snapshot = records.borrow().clone();
        let Some(reply) = handle(&packet, &snapshot, &config, Transport::Tcp).await else { return };
        if write_framed(&mut stream, &reply).await.is_err() {
            return;
        }
    }
}

async fn handle(packet: &[u8], records: &Records, config: &ServeConfig, transport: Transport) -> Option<Vec<u8>> {
    let query = match Message::from_vec(packet) {
        Ok(q) => q,
        Err(error) => {
            tracing::debug!(%error, "undecodable dns query");
            return error_reply(packet, ResponseCode::FormErr);
        }
    };
    match answer(&query, records) {
        Some(mut reply) => {
            let limit = if transport == Transport::Udp { usize::from(query.max_payload().max(512)) } else { 65535 };
            if query.extensions().is_some() {
                // Our own OPT record, not the client's echoed back (its options are not ours).
                let mut edns = Edns::new();
                edns.set_max_payload(EDNS_PAYLOAD);
                reply.set_edns(edns);
            }
            let bytes = reply.to_vec().ok()?;
            if bytes.len() <= limit {
                return Some(bytes);
            }
            // Too big for the client's UDP buffer: an empty truncated reply makes it retry on TCP.
            reply.answers_mut().clear();
            reply.additionals_mut().clear();
            reply.set_truncated(true);
            reply.to_vec().ok()
        }
        None => match forward(packet, query.id(), config, transport).await {
            Some(bytes) => Some(bytes),
            None => error_reply(packet, ResponseCode::ServFail),
        },
    }
}

async fn forward(packet: &[u8], id: u16, config: &ServeConfig, transport: Transport) -> Option<Vec<u8>> {
    for upstream in &config.upstreams {
        let attempt = async {
            match transport {
                Transport::Udp => forward_udp(packet, id, *upstream).await,
                Transport::Tcp => forward_tcp(packet, *upstream).await,
            }
        };
        match tokio::time::timeout(config.upstream_timeout, attempt).await {
            Ok(Ok(reply)) => return Some(reply),
            Ok(Err(error)) => tracing::debug!(%upstream, %error, "dns upstream failed"),
            Err(_) => tracing::debug!(%upstream, "dns upstream timed out"),
        }
    }
    None
}

async fn forward_udp(packet: &[u8], id: u16, upstream: SocketAddr) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    // connect() makes the kernel drop datagrams from anyone but the upstream.
    socket.connect(upstream).await?;
    socket.send(packet).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let len = socket.recv(&mut buf).await?;
        // A reply to someone else's id (a late answer to a reused port) is not ours.
        if len >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            buf.truncate(len);
            return Ok(buf);
        }
    }
}

async fn forward_tcp(packet: &[u8], upstream: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    write_framed(&mut stream, packet).await?;
    read_framed(&mut stream).await
}

async fn read_framed(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_framed(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(bytes.len()).map_err(|_| std::io::Error::other("dns message longer than 65535 bytes"))?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await
}

/// A header-only reply with `code` to a packet that may not decode: its id, the QR bit, and
/// its question when it has one that decodes.
fn error_reply(packet: &[u8], code: ResponseCode) -> Option<Vec<u8>> {
    if packet.len() < 12 {
        return None;
    }
    let mut reply = Message::new();
    reply
        .set_id(u16::from_be_bytes([packet[0], packet[1]]))
        .set_message_type(MessageType::Response)
        .set_recursion_available(true)
        .set_response_code(code);
    if let Ok(query) = Message::from_vec(packet) {
        reply.set_op_code(query.op_code()).set_recursion_desired(query.recursion_desired());
        reply.add_queries(query.queries().to_vec());
    }
    reply.to_vec().ok()
}

fn soa() -> Option<Record> {
    let zone = Name::from_ascii(format!("{}.", records::DOMAIN)).ok()?;
    let mname = Name::from_ascii(format!("ns.dns.{}.", records::DOMAIN)).ok()?;
    let rname = Name::from_ascii(format!("hostmaster.{}.", records::DOMAIN)).ok()?;
    let soa = SOA::new(mname, rname, 1, 7200, 1800, 86400, TTL);
    Some(Record::from_rdata(zone, TTL, RData::SOA(soa)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    fn query(name: &str, ty: RecordType) -> Message {
        let mut m = Message::new();
        m.set_id(7).set_recursion_desired(true);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), ty));
        m
    }

    fn records() -> Records {
        let svc: api::core::Service = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "default", "name": "web"},
            "spec": {"clusterIP": "10.96.1.2", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
        }))
        .unwrap();
        Records::build(&[svc], &[])
    }

    #[test]
    fn answers_a_records_with_the_query_id_and_question() {
        let reply = answer(&query("web.default.svc.cluster.local.", RecordType::A), &records()).unwrap();
        assert_eq!(reply.id(), 7);
        assert_eq!(reply.response_code(), ResponseCode::NoError);
        assert!(reply.authoritative());
        assert_eq!(reply.queries().len(), 1);
        let got: Vec<String> = reply.answers().iter().map(|r| r.data().to_string()).collect();
        assert_eq!(got, ["10.96.1.2"]);
    }

    #[test]
    fn srv_answers_carry_the_target_address() {
        let reply = answer(&query("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV), &records()).unwrap();
        let srv: Vec<String> = reply.answers().iter().map(|r| r.data().to_string()).collect();
        assert_eq!(srv, ["0 100 80 web.default.svc.cluster.local."]);
        assert_eq!(reply.additionals().len(), 1);
    }

    #[test]
    fn unknown_cluster_names_are_nxdomain_with_an_soa_and_others_are_forwarded() {
        let reply = answer(&query("nope.default.svc.cluster.local.", RecordType::A), &records()).unwrap();
        assert_eq!(reply.response_code(), ResponseCode::NXDomain);
        assert_eq!(reply.name_servers().len(), 1);
        let reply = answer(&query("web.default.svc.cluster.local.", RecordType::AAAA), &records()).unwrap();
        assert_eq!(reply.response_code(), ResponseCode::NoError);
        assert!(reply.answers().is_empty());
        assert!(answer(&query("example.com.", RecordType::A), &records()).is_none());
    }

    #[test]
    fn malformed_packets_get_formerr_or_nothing() {
        assert!(error_reply(&[1, 2, 3], ResponseCode::FormErr).is_none());
        let junk = [0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff];
        let reply = Message::from_vec(&error_reply(&junk, ResponseCode::FormErr).unwrap()).unwrap();
        assert_eq!(reply.id(), 0xabcd);
        assert_eq!(reply.response_code(), ResponseCode::FormErr);
    }

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# comment\nsearch example.com\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver bogus\noptions ndots:5\n";
        assert_eq!(parse_nameservers(text), ["10.0.0.2".parse::<IpAddr>().unwrap(), "fe80::1".parse().unwrap()]);
    }
}
