//! Services and cluster DNS for real: the proxy's nftables table applied in a private network
//! namespace with two busybox httpd "pods" behind a ClusterIP and a NodePort, and the DNS
//! server on 127.0.0.1 with a fake upstream.
//!
//! The root test runs on a thread of its own that `unshare`s its network namespace, so the
//! host's links and ruleset are never touched and everything it makes (bridge, veths, the
//! pods' namespaces, the table) goes away with the thread and the pod processes, which drop
//! guards kill also when an assertion fails. `lab` is shared with `benches/service.rs`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::core::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use node_agent::dns::{self, Records, ServeConfig};
use node_agent::proxy::{self, ProxyConfig, ServiceState};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;

/// A throwaway node: a private network namespace with a bridge and pods made of busybox httpd.
#[allow(dead_code)]
pub mod lab {
    use std::net::Ipv4Addr;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    pub const BRIDGE: &str = "flb-lab";
    pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
    /// The node's "InternalIP" (on lo).
    pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

    /// Whether the lab can run here (root, with ip, nft, unshare, nsenter and busybox).
    pub fn available() -> bool {
        let tools = ["ip", "nft", "unshare", "nsenter", "busybox"].iter().all(|t| {
            Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {t}"))
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        nix::unistd::Uid::effective().is_root() && tools
    }

    /// Moves the calling thread (and whatever it spawns from now on) into a new, empty network
    /// namespace with the lab's bridge and node address. Call it on a thread of its own.
    pub fn enter_node() -> Result<(), String> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare: {e}"))?;
        for cmd in [
            "ip link set lo up".to_string(),
            format!("ip link add {BRIDGE} type bridge"),
            format!("ip addr add {GATEWAY}/24 dev {BRIDGE}"),
            format!("ip link set {BRIDGE} up"),
            // A real node has a default route; without one a cluster IP fails the route lookup
            // before the output hook could DNAT it.
            format!("ip route add default dev {BRIDGE}"),
            // The kernel may lack the dummy link type; a /32 on lo is just as local.
            format!("ip addr add {NODE_IP}/32 dev lo"),
        ] {
            run(&cmd)?;
        }
        // /proc/sys/net belongs to the network namespace of the thread that opens it.
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(|e| format!("ip_forward: {e}"))?;
        Ok(())
    }

    /// A "pod": busybox httpd on port 8080 in its own network namespace, wired to the bridge,
    /// answering its name. Dropping it kills httpd, which frees the namespace and the veth.
    pub struct Pod {
        pub name: String,
        pub ip: Ipv4Addr,
        child: Child,
        _dir: tempfile::TempDir,
    }

    impl Pod {
        pub fn start(name: &str, ip: Ipv4Addr) -> Result<Pod, String> {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            std::fs::write(dir.path().join("index.html"), name).map_err(|e| e.to_string())?;
            let child = Command::new("unshare")
                .args(["-n", "busybox", "httpd", "-f", "-p", "8080", "-h"])
                .arg(dir.path())
                .stdin(Stdio::null())
                .spawn()
                .map_err(|e| format!("spawn httpd: {e}"))?;
            let pod = Pod { name: name.to_string(), ip, child, _dir: dir };
            let pid = pod.child.id();
            // unshare execs busybox once the namespace exists.
            let deadline = Instant::now() + Duration::from_secs(5);
            while !std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p.ends_with("busybox")) {
                if Instant::now() > deadline {
                    return Err("httpd did not start".into());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let host = format!("flv-{name}");
            run(&format!("ip link add {host} type veth peer name eth0 netns {pid}"))?;
            run(&format!("ip link set {host} master {BRIDGE} up"))?;
            // With br_netfilter loaded, a pod's request that DNATs back to itself is bridged out
            // of the port it came in on, which the bridge allows only in hairpin mode.
            run(&format!("ip link set {host} type bridge_slave hairpin on"))?;
            for cmd in [
                "ip link set lo up".to_string(),
                format!("ip addr add {ip}/24 dev eth0"),
                "ip link set eth0 up".to_string(),
                format!("ip route add default via {GATEWAY}"),
            ] {
                run(&format!("nsenter --net={} {cmd}", pod.netns().display()))?;
            }
            Ok(pod)
        }

        pub fn netns(&self) -> PathBuf {
            PathBuf::from(format!("/proc/{}/ns/net", self.child.id()))
        }
    }

    impl Drop for Pod {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    pub fn run(cmd: &str) -> Result<(), String> {
        let out = Command::new("sh").arg("-c").arg(cmd).output().map_err(|e| format!("{cmd}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{cmd}: {}", String::from_utf8_lossy(&out.stderr).trim()))
        }
    }

    /// One HTTP/1.0 GET (busybox httpd closes after each answer); returns the body.
    pub async fn get(addr: std::net::SocketAddr) -> std::io::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.write_all(b"GET / HTTP/1.0\r\nHost: lab\r\n\r\n").await?;
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out"))??;
        let text = String::from_utf8_lossy(&buf);
        match text.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => Ok(body.to_string()),
            _ => Err(std::io::Error::other(format!("bad response: {text:?}"))),
        }
    }

    /// Polls `get` until it succeeds or `limit` passes.
    pub async fn wait_get(addr: std::net::SocketAddr, limit: Duration) -> Result<String, String> {
        let deadline = Instant::now() + limit;
        loop {
            match get(addr).await {
                Ok(body) => return Ok(body),
                Err(e) if Instant::now() > deadline => return Err(format!("{addr}: {e}")),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}

pub fn service(ns: &str, name: &str, ty: &str, ip: &str, port: i32, node_port: Option<i32>) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": ns, "name": name},
        "spec": {"type": ty, "clusterIP": ip,
                 "ports": [{"name": "http", "protocol": "TCP", "port": port, "nodePort": node_port}]}
    }))
    .unwrap_or_default()
}

pub fn endpoints(ns: &str, name: &str, ips: &[Ipv4Addr], port: i32) -> Endpoints {
    Endpoints {
        metadata: api::meta::ObjectMeta { namespace: Some(ns.into()), name: Some(name.into()), ..Default::default() },
        subsets: Some(vec![EndpointSubset {
            addresses: Some(
                ips.iter().map(|ip| EndpointAddress { ip: ip.to_string(), ..Default::default() }).collect(),
            ),
            not_ready_addresses: None,
            ports: Some(vec![EndpointPort {
                name: Some("http".into()),
                port,
                protocol: Some("TCP".into()),
                app_protocol: None,
            }]),
        }]),
    }
}

pub fn state(services: Vec<Service>, eps: Vec<Endpoints>) -> Arc<ServiceState> {
    let key = |m: &api::meta::ObjectMeta| (m.namespace.clone().unwrap_or_default(), m.name.clone().unwrap_or_default());
    Arc::new(ServiceState {
        services: services.into_iter().map(|s| (key(&s.metadata), s)).collect::<BTreeMap<_, _>>(),
        endpoints: eps.into_iter().map(|e| (key(&e.metadata), e)).collect(),
        synced: true,
    })
}

#[test]
fn cluster_ip_spreads_over_pods_and_node_port_answers() {
    if !lab::available() {
        eprintln!("skipping: needs root with ip, nft, unshare, nsenter and busybox");
        return;
    }
    // A thread of its own: the namespace change must not leak into other tests' threads.
    let outcome = std::thread::spawn(|| -> Result<(), String> {
        lab::enter_node()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(proxy_scenario())
    })
    .join();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e}"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

async fn proxy_scenario() -> Result<(), String> {
    let a = lab::Pod::start("pod-a", Ipv4Addr::new(10, 244, 0, 2))?;
    let b = lab::Pod::start("pod-b", Ipv4Addr::new(10, 244, 0, 3))?;
    lab::wait_get((a.ip, 8080).into(), Duration::from_secs(5)).await?;
    lab::wait_get((b.ip, 8080).into(), Duration::from_secs(5)).await?;

    let services = vec![
        service("default", "web", "NodePort", "10.96.0.10", 80, Some(30080)),
        service("default", "empty", "ClusterIP", "10.96.0.11", 80, None),
    ];
    let both = vec![endpoints("default", "web", &[a.ip, b.ip], 8080)];
    // Until both kinds are listed the state is partial: nothing may be applied from it.
    let (tx, rx) =
        watch::channel(Arc::new(ServiceState { synced: false, ..(*state(services.clone(), vec![])).clone() }));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let node = format!("lab-{}", std::process::id());
    let config = ProxyConfig::new(&node, vec![lab::NODE_IP, Ipv4Addr::LOCALHOST]);
    let proxy = tokio::spawn(proxy::run_on(rx, config, async {
        let _ = stop_rx.await;
    }));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tables = runtime::network::nft::list_tables().await.map_err(|e| e.to_string())?;
    if tables.iter().any(|(_, n)| *n == proxy::table_name(&node)) {
        return Err(format!("a table was applied from a partial state: {tables:?}"));
    }
    tx.send_replace(state(services.clone(), both));

    let cluster_ip: SocketAddr = ([10, 96, 0, 10], 80).into();
    lab::wait_get(cluster_ip, Duration::from_secs(5)).await?;
    let mut seen = BTreeMap::new();
    for _ in 0..40 {
        let body = lab::get(cluster_ip).await.map_err(|e| format!("cluster ip: {e}"))?;
        *seen.entry(body).or_insert(0) += 1;
    }
    if seen.len() != 2 {
        return Err(format!("40 requests to the cluster IP should reach both pods: {seen:?}"));
    }
    for addr in [SocketAddr::from((lab::NODE_IP, 30080)), SocketAddr::from(([127, 0, 0, 1], 30080))] {
        let body = lab::get(addr).await.map_err(|e| format!("node port {addr}: {e}"))?;
        if !body.starts_with("pod-") {
            return Err(format!("node port {addr} answered {body:?}"));
        }
    }
    // From inside a pod, through the gateway; some requests land on the pod itself (hairpin).
    for _ in 0..8 {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nsenter --net={} busybox nc -w 3 10.96.0.10 80",
                a.netns().display()
            ))
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !(text.starts_with("HTTP/1.1 200") && text.contains("pod-")) {
            return Err(format!("pod to cluster IP: {text:?} {}", String::from_utf8_lossy(&out.stderr)));
        }
    }
    // No ready endpoint: refused at once (TCP reset), not a timeout.
    let started = Instant::now();
    match TcpStream::connect(SocketAddr::from(([10, 96, 0, 11], 80))).await {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused && started.elapsed() < Duration::from_secs(1) => {}
        other => return Err(format!("service without endpoints should refuse: {other:?}")),
    }

    // An endpoint goes away: within a second every request lands on the other pod.
    let changed = Instant::now();
    tx.send_replace(state(services, vec![endpoints("default", "web", &[b.ip], 8080)]));
    loop {
        let mut bodies = Vec::new();
        for _ in 0..10 {
            bodies.push(lab::get(cluster_ip).await.map_err(|e| e.to_string())?);
        }
        if bodies.iter().all(|b| b == "pod-b") {
            break;
        }
        if changed.elapsed() > Duration::from_secs(1) {
            return Err(format!("endpoint change not applied after 1s: {bodies:?}"));
        }
    }

    let _ = stop_tx.send(());
    proxy.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    let tables = runtime::network::nft::list_tables().await.map_err(|e| e.to_string())?;
    if tables.iter().any(|(_, n)| *n == proxy::table_name(&node)) {
        return Err(format!("table left after shutdown: {tables:?}"));
    }
    Ok(())
}

/// A fake upstream resolver: answers every A question with 203.0.113.7.
async fn fake_upstream() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((len, peer)) = socket.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..len]) else { continue };
            let mut reply = query.clone();
            reply.set_message_type(hickory_proto::op::MessageType::Response);
            for q in query.queries() {
                reply.add_answer(Record::from_rdata(
                    q.name().clone(),
                    60,
                    RData::A(hickory_proto::rr::rdata::A::new(203, 0, 113, 7)),
                ));
            }
            let _ = socket.send_to(&reply.to_vec().unwrap(), peer).await;
        }
    });
    addr
}

/// Binds UDP and TCP on one free loopback port (the OS picks the UDP port; TCP may find it
/// taken, then another is tried).
async fn bind_pair() -> (UdpSocket, TcpListener, SocketAddr) {
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(addr).await {
            return (udp, tcp, addr);
        }
    }
    panic!("no free port for both UDP and TCP on 127.0.0.1");
}

async fn ask_udp(server: SocketAddr, name: &str, ty: RecordType) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut q = Message::new();
    q.set_id(4242).set_recursion_desired(true);
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), ty));
    socket.send_to(&q.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (len, _) =
        tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf)).await.expect("dns reply").unwrap();
    let reply = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(reply.id(), 4242);
    reply
}

async fn ask_tcp(server: SocketAddr, name: &str, ty: RecordType) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let mut q = Message::new();
    q.set_id(99);
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), ty));
    let bytes = q.to_vec().unwrap();
    stream.write_u16(bytes.len() as u16).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

fn addresses(m: &Message) -> Vec<String> {
    m.answers().iter().map(|r| r.data().to_string()).collect()
}

#[tokio::test]
async fn dns_answers_cluster_names_and_forwards_the_rest() {
    let web = service("default", "web", "ClusterIP", "10.96.0.10", 80, None);
    let db = service("prod", "db", "ClusterIP", "None", 5432, None);
    let db_eps = endpoints("prod", "db", &[Ipv4Addr::new(10, 244, 1, 5), Ipv4Addr::new(10, 244, 0, 4)], 5432);
    let (records_tx, records_rx) = watch::channel(Arc::new(Records::build(&[web.clone(), db.clone()], &[db_eps])));

    let upstream = fake_upstream().await;
    let (udp, tcp, server) = bind_pair().await;
    let config = ServeConfig { upstreams: vec![upstream], upstream_timeout: Duration::from_secs(1) };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(dns::serve_on(udp, tcp, records_rx, config, async {
        let _ = stop_rx.await;
    }));

    let reply = ask_udp(server, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&reply), ["10.96.0.10"]);
    let reply = ask_tcp(server, "WEB.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&reply), ["10.96.0.10"]);
    let reply = ask_udp(server, "db.prod.svc.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&reply), ["10.244.0.4", "10.244.1.5"]);
    let reply = ask_udp(server, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(addresses(&reply), ["0 100 80 web.default.svc.cluster.local."]);
    let reply = ask_udp(server, "nope.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(reply.response_code(), ResponseCode::NXDomain);
    let reply = ask_udp(server, "web.default.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!((reply.response_code(), reply.answers().len()), (ResponseCode::NoError, 0));

    // Other names go upstream, over UDP.
    let reply = ask_udp(server, "example.com.", RecordType::A).await;
    assert_eq!(addresses(&reply), ["203.0.113.7"]);

    // New records are served without a restart.
    records_tx.send_replace(Arc::new(Records::build(&[], &[])));
    let reply = ask_udp(server, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(reply.response_code(), ResponseCode::NXDomain);

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("graceful shutdown").unwrap();
}

#[tokio::test]
async fn dns_gives_servfail_in_bounded_time_when_upstreams_are_silent() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (udp, tcp, server) = bind_pair().await;
    let config =
        ServeConfig { upstreams: vec![silent.local_addr().unwrap()], upstream_timeout: Duration::from_millis(300) };
    let (_records_tx, records_rx) = watch::channel(Arc::new(Records::default()));
    let task = tokio::spawn(dns::serve_on(udp, tcp, records_rx, config, std::future::pending()));
    let started = Instant::now();
    let reply = ask_udp(server, "example.com.", RecordType::A).await;
    assert_eq!(reply.response_code(), ResponseCode::ServFail);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    task.abort();
}

type Check = dyn Fn(&ServiceState, &Records) -> bool;

/// The watch path end to end against a real apiserver: a Service and its Endpoints created
/// through the API become proxied ports and DNS records, and an Endpoints change follows.
#[tokio::test]
async fn services_from_the_apiserver_become_ports_and_records() {
    use api::client::{Api, Client, Config, DeleteParams, PostParams};
    use node_agent::dns::{Answer, QueryKind};

    let cluster = tests::Cluster::up(1).expect("cluster up");
    let client =
        Client::new(Config::from_kubeconfig(&cluster.kubeconfig(), None).expect("kubeconfig")).expect("client");
    let name = format!("web-{:04x}", rand::random::<u16>());
    let svc = service("default", &name, "NodePort", "", 80, None);
    let created = Api::<Service>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &svc)
        .await
        .expect("create service");
    let cluster_ip: Ipv4Addr =
        created.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).and_then(|ip| ip.parse().ok()).expect("cluster IP");
    let eps_api = Api::<Endpoints>::namespaced(client.clone(), "default");
    eps_api
        .create(&PostParams::default(), &endpoints("default", &name, &[Ipv4Addr::new(10, 244, 0, 2)], 8080))
        .await
        .expect("create endpoints");

    let state = proxy::watch_services(client.clone());
    let records = dns::records_from(state.clone());
    let fqdn = format!("{name}.default.svc.cluster.local.");
    let wait = |what: &'static str, check: Box<Check>| {
        let (state, records) = (state.clone(), records.clone());
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if check(&state.borrow(), &records.borrow()) {
                    return;
                }
                assert!(Instant::now() < deadline, "timed out waiting for {what}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let n = name.clone();
    wait(
        "the service with its endpoint",
        Box::new(move |s, _| {
            s.synced
                && s.service_ports().iter().any(|p| {
                    p.service == n && p.node_port.is_some() && p.endpoints == [(Ipv4Addr::new(10, 244, 0, 2), 8080)]
                })
        }),
    )
    .await;
    let f = fqdn.clone();
    wait("the DNS record", Box::new(move |_, r| r.lookup(&f, QueryKind::A) == Answer::Addresses(vec![cluster_ip])))
        .await;

    eps_api.delete(&name, &DeleteParams::default()).await.expect("delete endpoints");
    let n = name.clone();
    wait(
        "the endpoint to go",
        Box::new(move |s, _| s.service_ports().iter().any(|p| p.service == n && p.endpoints.is_empty())),
    )
    .await;
}
