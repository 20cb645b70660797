//! `ctl run` networks for real (as root): containers on a user network reach each other by
//! name, published ports answer from the host on 127.0.0.1 and on another host address,
//! `--network none` has only lo, a network in use cannot be removed, bad input changes nothing,
//! and removing a container leaves no veth, address, rule or namespace behind.
//!
//! Each test runs in a network namespace of its own (its thread joins it), so the default
//! bridge `flotilla0`, its subnet and the `inet flotilla-docker` table never touch the host's,
//! and tests do not see each other's. The monitors and containers inherit that namespace.

mod common;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use runtime::container::{ContainerError, LogOptions, Runtime, StartOptions};
use runtime::image::ImageStore;
use runtime::network::docker::{self, NetworkError};
use runtime::network::ports::parse_publish;
use runtime::reference::Reference;
use runtime::spec::{NetworkMode, RunOptions};

const IMAGE: &str = "flotilla-test/busybox-net:latest";
const NET_APPLETS: &[&str] = &["httpd", "wget", "nc", "ip", "ifconfig", "cat", "sleep", "cut", "timeout"];

/// A temporary root with a busybox image, and a network namespace the test's thread is in.
/// Dropping it removes the containers and networks, leaves the namespace and deletes it.
struct Fixture {
    /// Kept until the fixture is dropped: the root and image live in it.
    _dir: tempfile::TempDir,
    runtime: Runtime,
    netns: String,
    original: std::fs::File,
    containers: RefCell<Vec<String>>,
    networks: RefCell<Vec<String>>,
}

impl Fixture {
    fn new(test: &str) -> Option<Fixture> {
        if !common::is_root() {
            eprintln!("skipping {test}: network tests need root");
            return None;
        }
        let busybox = ["/bin/busybox", "/usr/bin/busybox"].into_iter().map(Path::new).find(|p| p.is_file());
        let Some(busybox) = busybox else {
            eprintln!("skipping {test}: install busybox-static");
            return None;
        };
        if Command::new("nft").arg("--version").output().is_err() {
            eprintln!("skipping {test}: install nftables (the nft command)");
            return None;
        }
        let unique = format!("{:x}", rand_u32());
        let netns = format!("flt-n4-{}-{unique}", std::process::id());
        let original = std::fs::File::open("/proc/thread-self/ns/net").expect("own netns");
        sh(&["ip", "netns", "add", &netns]);
        sh(&["ip", "-n", &netns, "link", "set", "lo", "up"]);
        let file = std::fs::File::open(format!("/run/netns/{netns}")).expect("test netns");
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("join the test netns");

        let dir = tempfile::Builder::new().prefix("flotilla-networks-").tempdir().expect("temp dir");
        let rootfs = dir.path().join("busybox-rootfs");
        common::make_rootfs(&rootfs, busybox);
        for applet in NET_APPLETS {
            let link = rootfs.join("bin").join(applet);
            if !link.exists() {
                std::os::unix::fs::symlink("busybox", link).expect("applet link");
            }
        }
        let root = dir.path().join("root");
        let store = ImageStore::open(&root).expect("image store");
        store.import_rootfs_dir(&rootfs, &Reference::parse(IMAGE).expect("reference")).expect("import");
        let runtime = Runtime::open(&root).expect("runtime");
        Some(Fixture {
            _dir: dir,
            runtime,
            netns,
            original,
            containers: RefCell::new(Vec::new()),
            networks: RefCell::new(Vec::new()),
        })
    }

    fn root(&self) -> &Path {
        self.runtime.root()
    }

    /// Creates (with `-p` specs) and starts a container in the background.
    fn start(&self, opts: RunOptions, publish: &[&str]) -> Result<String, ContainerError> {
        let id = self.runtime.create(IMAGE, &opts)?;
        self.containers.borrow_mut().push(id.clone());
        let specs: Vec<_> = publish.iter().map(|p| parse_publish(p).expect("valid -p")).collect();
        docker::set_published_ports(self.root(), &id, &specs)?;
        drop(self.runtime.start(&id, &StartOptions::default())?);
        Ok(id)
    }

    fn run_to_end(&self, opts: RunOptions) -> (i32, String, String) {
        let id = self.runtime.create(IMAGE, &opts).expect("create");
        self.containers.borrow_mut().push(id.clone());
        let started = self.runtime.start(&id, &StartOptions::default()).expect("start");
        let code = started.wait().expect("exit code");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        self.runtime.logs(&id, &LogOptions::default(), &mut out, &mut err).expect("logs");
        (code, String::from_utf8_lossy(&out).into_owned(), String::from_utf8_lossy(&err).into_owned())
    }

    fn create_network(&self, name: &str, subnet: Option<&str>) -> docker::Network {
        let network = docker::create(self.root(), name, subnet).expect("network create");
        self.networks.borrow_mut().push(name.to_string());
        network
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for id in self.containers.borrow().iter() {
            match self.runtime.remove(id, true) {
                Ok(()) | Err(ContainerError::NotFound(_)) => {}
                Err(error) => eprintln!("cleanup: removing container {id}: {error}"),
            }
        }
        for name in self.networks.borrow().iter() {
            match docker::remove(self.root(), name) {
                Ok(_) | Err(NetworkError::NotFound(_)) => {}
                Err(error) => eprintln!("cleanup: removing network {name}: {error}"),
            }
        }
        let _ = nix::sched::setns(self.original.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET);
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
    }
}

fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    nanos ^ std::process::id().rotate_left(16)
}

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cmd(args: &[&str], network: NetworkMode) -> RunOptions {
    RunOptions { cmd: args.iter().map(|s| s.to_string()).collect(), network, ..RunOptions::default() }
}

fn bridge() -> NetworkMode {
    NetworkMode::Network("bridge".into())
}

/// A busybox web server answering `body` on port 80.
fn httpd(name: &str, body: &str, network: NetworkMode) -> RunOptions {
    let script = format!("mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 80 -h /www");
    RunOptions { name: Some(name.to_string()), ..cmd(&["sh", "-c", &script], network) }
}

/// GETs `/` from `addr`, retrying until `limit` passes; the response body.
fn http_get(addr: SocketAddrV4, limit: Duration) -> Result<String, String> {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        match TcpStream::connect_timeout(&addr.into(), Duration::from_secs(2)) {
            Ok(mut stream) => {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
                let _ = stream.write_all(b"GET / HTTP/1.0\r\n\r\n");
                let mut response = String::new();
                let _ = stream.read_to_string(&mut response);
                if let Some((_, body)) = response.split_once("\r\n\r\n") {
                    return Ok(body.to_string());
                }
                last = format!("incomplete response {response:?}");
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("{addr}: {last}"))
}

fn link_exists(name: &str) -> bool {
    Command::new("ip").args(["link", "show", name]).output().is_ok_and(|o| o.status.success())
}

fn nft_table() -> String {
    Command::new("nft")
        .args(["list", "table", "inet", docker::NFT_TABLE])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

#[test]
fn containers_on_a_user_network_reach_each_other_by_name() {
    let Some(fx) = Fixture::new("containers_on_a_user_network_reach_each_other_by_name") else { return };
    let net = format!("n4net-{:x}", rand_u32());
    let network = fx.create_network(&net, None);
    assert!(network.subnet.starts_with("172.31."), "{network:?}");
    assert!(link_exists(&network.bridge), "bridge {} exists once the network does", network.bridge);
    let mode = NetworkMode::Network(net.clone());
    let server = fx.start(httpd("web", "hello-by-name", mode.clone()), &[]).expect("server");
    let short = &server[..12];

    // `timeout` rather than wget's own -T, which crashes the busybox 1.35 of Debian 12.
    let script = format!(
        "for i in 1 2 3 4 5 6 7 8 9 10; do timeout 3 wget -q -O - http://web/ && break; sleep 0.3; done; \
         timeout 3 wget -q -O - http://{short}/; cat /etc/hosts; cat /etc/resolv.conf; ip -4 route"
    );
    let (code, out, err) = fx.run_to_end(RunOptions { name: Some("client".into()), ..cmd(&["sh", "-c", &script], mode) });
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert_eq!(out.matches("hello-by-name").count(), 2, "by name and by short id: {out}\nstderr: {err}");
    assert!(out.contains("web") && out.contains(short), "hosts lists the server: {out}");
    assert!(!out.contains("nameserver 127."), "loopback nameservers are dropped: {out}");
    assert!(out.contains(&format!("default via {}", network.gateway)), "default route: {out}");

    // The server's hosts file followed: the client joined, then left again.
    let hosts = std::fs::read_to_string(fx.root().join("containers").join(&server).join("hosts")).expect("hosts");
    assert!(!hosts.contains("client"), "the client left the network: {hosts}");

    // Another network cannot reach it: bridge networks are isolated from each other.
    let other = format!("n4other-{:x}", rand_u32());
    fx.create_network(&other, None);
    let web_ip = docker::endpoint(fx.root(), &server).expect("server endpoint").ip;
    let probe = format!("timeout 2 wget -q -O - http://{web_ip}/ || echo isolated");
    let (_, out, _) = fx.run_to_end(cmd(&["sh", "-c", &probe], NetworkMode::Network(other)));
    assert!(out.contains("isolated") && !out.contains("hello-by-name"), "{out}");

    // In use: refused with docker's wording, and nothing changes.
    let err = docker::remove(fx.root(), &net).expect_err("in use").to_string();
    assert!(err.contains("has active endpoints") && err.contains("web"), "{err}");
    assert!(link_exists(&network.bridge));
    fx.runtime.remove(&server, true).expect("rm -f");
    docker::remove(fx.root(), &net).expect("network rm once unused");
    assert!(!link_exists(&network.bridge), "the bridge goes with the network");
    assert!(matches!(docker::get(fx.root(), &net), Err(NetworkError::NotFound(_))));
}

#[test]
fn published_ports_answer_on_loopback_and_other_addresses_and_leave_nothing() {
    let Some(fx) = Fixture::new("published_ports_answer_on_loopback_and_other_addresses_and_leave_nothing") else { return };
    let other = Ipv4Addr::new(10, 199, (rand_u32() % 200) as u8, 1);
    // "The host's other address": one end of a veth pair of the test's namespace.
    sh(&["ip", "link", "add", "flt-n4-a", "type", "veth", "peer", "name", "flt-n4-b"]);
    sh(&["ip", "addr", "add", &format!("{other}/24"), "dev", "flt-n4-a"]);
    sh(&["ip", "link", "set", "flt-n4-a", "up"]);
    sh(&["ip", "link", "set", "flt-n4-b", "up"]);

    let id = fx.start(httpd("pub", "hello-published", bridge()), &["18080:80", "80"]).expect("published container");
    let ports = docker::published_ports(fx.root(), &id);
    assert_eq!(ports.len(), 2, "{ports:?}");
    assert_eq!(ports[0].to_string(), "0.0.0.0:18080->80/tcp");
    let random = ports[1].host_port;
    assert!(random > 1024, "a random host port: {ports:?}");

    for addr in [Ipv4Addr::LOCALHOST, other] {
        for port in [18080, random] {
            let body = http_get(SocketAddrV4::new(addr, port), Duration::from_secs(10)).expect("published port answers");
            assert_eq!(body.trim(), "hello-published", "{addr}:{port}");
        }
    }

    // From a container of the same bridge through the host's address (prerouting, hairpin).
    let probe = format!("timeout 3 wget -q -O - http://{other}:18080/");
    let (code, out, err) = fx.run_to_end(cmd(&["sh", "-c", &probe], bridge()));
    assert_eq!((code, out.trim()), (0, "hello-published"), "{err}");

    // A second container cannot take the same host port; it is not left connected.
    let err = fx.start(httpd("clash", "x", bridge()), &["18080:80"]).expect_err("port taken").to_string();
    assert!(err.contains("port is already allocated"), "{err}");

    let endpoint = docker::endpoint(fx.root(), &id).expect("endpoint while running");
    fx.runtime.remove(&id, true).expect("rm -f");
    assert!(docker::endpoint(fx.root(), &id).is_none());
    assert!(!link_exists(&endpoint.veth), "veth {} is gone", endpoint.veth);
    assert!(!endpoint.netns.exists(), "the namespace file is gone");
    let table = nft_table();
    assert!(!table.contains("18080"), "no DNAT left: {table}");
    let ipam = std::fs::read_to_string(fx.root().join("networks/bridge/ipam.json")).unwrap_or_default();
    assert!(!ipam.contains(&id), "address released: {ipam}");
    assert!(http_get(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 18080), Duration::from_millis(300)).is_err());
}

#[test]
fn none_has_only_loopback_and_a_stopped_container_is_disconnected() {
    let Some(fx) = Fixture::new("none_has_only_loopback_and_a_stopped_container_is_disconnected") else { return };
    let (code, out, err) = fx.run_to_end(cmd(&["sh", "-c", "cat /proc/net/dev | grep : | cut -d: -f1"], NetworkMode::None));
    assert_eq!(code, 0, "{err}");
    let ifaces: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(ifaces, ["lo"], "{out}");

    // On the default bridge: eth0 with an address of 172.30.0.0/16; the exit disconnects it.
    let (code, out, err) = fx.run_to_end(cmd(&["sh", "-c", "ip -4 -o addr show eth0"], bridge()));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("inet 172.30."), "{out}");
    let leftovers = std::fs::read_dir(fx.root().join("networks/bridge/endpoints")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(leftovers, 0, "an exited container keeps no endpoint");
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let Some(fx) = Fixture::new("bad_input_is_refused_and_changes_nothing") else { return };
    let err = docker::create(fx.root(), "badnet", Some("10.0.0/8")).expect_err("bad cidr").to_string();
    assert!(err.contains("invalid subnet 10.0.0/8"), "{err}");
    assert!(matches!(docker::get(fx.root(), "badnet"), Err(NetworkError::NotFound(_))));

    let err = fx.runtime.create(IMAGE, &cmd(&["true"], NetworkMode::Network("nosuchnet".into()))).expect_err("unknown");
    assert!(err.to_string().contains("network nosuchnet not found"), "{err}");
    assert!(fx.runtime.list(true).expect("list").is_empty(), "no container was made");

    for bad in ["80/sctp", "x:80", "99999:80", "1-5:80"] {
        assert!(parse_publish(bad).is_err(), "{bad}");
    }
    let id = fx.runtime.create(IMAGE, &cmd(&["true"], NetworkMode::None)).expect("create");
    fx.containers.borrow_mut().push(id.clone());
    let err = docker::set_published_ports(fx.root(), &id, &[parse_publish("80").expect("spec")]).expect_err("none + -p");
    assert!(err.to_string().contains("conflicting options"), "{err}");

    fx.create_network("dup", Some("10.77.0.0/24"));
    let err = docker::create(fx.root(), "dup", None).expect_err("exists").to_string();
    assert!(err.contains("already exists"), "{err}");
    let err = docker::create(fx.root(), "overlap", Some("10.77.0.0/16")).expect_err("overlap").to_string();
    assert!(err.contains("Pool overlaps"), "{err}");
}

#[test]
fn a_dead_monitor_or_a_reboot_leaves_nothing_connected() {
    let Some(fx) = Fixture::new("a_dead_monitor_or_a_reboot_leaves_nothing_connected") else { return };
    let kill_hard = |id: &str| {
        let st = runtime::container::state::load(&fx.runtime.container_dir(id)).expect("state");
        for pid in [st.monitor_pid, st.pid] {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let assert_gone = |id: &str, endpoint: &docker::Endpoint| {
        assert!(docker::endpoint(fx.root(), id).is_none(), "endpoint of {id} remains");
        assert!(!link_exists(&endpoint.veth), "veth {} remains", endpoint.veth);
        assert!(!endpoint.netns.exists(), "namespace file remains");
        let ipam = std::fs::read_to_string(fx.root().join("networks/bridge/ipam.json")).unwrap_or_default();
        assert!(!ipam.contains(id), "address of {id} remains: {ipam}");
        assert!(!nft_table().contains(&endpoint.ip.to_string()), "rules for {} remain", endpoint.ip);
    };

    // The monitor dies with the container: the next look at the container repairs it.
    let id = fx.start(RunOptions { name: Some("crash".into()), ..cmd(&["sleep", "60"], bridge()) }, &["18081:80"]).expect("start");
    let endpoint = docker::endpoint(fx.root(), &id).expect("connected");
    kill_hard(&id);
    assert_eq!(fx.runtime.inspect(&id).expect("inspect").exit_code, 255);
    assert_gone(&id, &endpoint);

    // A container of an earlier boot: opening the runtime cleans up after it.
    let id = fx.start(RunOptions { name: Some("reboot".into()), ..cmd(&["sleep", "60"], bridge()) }, &["18082:80"]).expect("start");
    let endpoint = docker::endpoint(fx.root(), &id).expect("connected");
    kill_hard(&id);
    let dir = fx.runtime.container_dir(&id);
    let mut st = runtime::container::state::load(&dir).expect("state");
    st.boot_id = "an-earlier-boot".into();
    runtime::container::state::save(&dir, &st).expect("save");
    std::fs::remove_file(fx.root().join("containers/.boot_id")).expect("boot marker");
    Runtime::open(fx.root()).expect("open after a reboot");
    assert_gone(&id, &endpoint);
}
