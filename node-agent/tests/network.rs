//! Pod networking of one node agent against a real 1-replica cluster: the test gives the Node a
//! podCIDR (no controllers run here), then two pods reach each other by IP, report their podIP,
//! get the pod's resolv.conf and hosts files, and a hostPort answers on 127.0.0.1 and on the
//! host's other address. After the pods are deleted neither their veths nor their addresses are
//! left; after the test neither the bridge nor the table nor the namespaces. Needs root and
//! busybox-static; elsewhere it prints a notice and passes.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use api::client::{Api, Client, Config, DeleteParams, Patch, PatchParams, PostParams};
use api::core::{Node, Pod};
use node_agent::network;

const IMAGE: &str = "local-test/busybox-net:1";

mod common;
use common::{free_port, wait_for, Agent};

/// One HTTP GET over a plain TCP connection; the whole response, or why not.
fn http_get(addr: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr.parse().map_err(|e| format!("{e}"))?, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).map_err(|e| e.to_string())?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    stream.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// The host's first global IPv4 address not on a bridge or veth of ours.
fn host_address() -> Option<Ipv4Addr> {
    let out = Command::new("ip").args(["-4", "-o", "addr", "show", "scope", "global"]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|line| {
        let mut words = line.split_whitespace();
        let device = words.nth(1)?;
        if device.starts_with("fl") {
            return None;
        }
        let cidr = words.skip_while(|w| *w != "inet").nth(1)?;
        cidr.split('/').next()?.parse().ok()
    })
}

fn pod_json(name: &str, node: &str, command: &str, ports: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "app",
                "image": IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", command],
                "ports": ports
            }]
        }
    }))
    .expect("pod json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_get_addresses_reach_each_other_and_host_ports() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipping: the pod network test needs root");
        return;
    }
    let Some(busybox) = ["/bin/busybox", "/usr/bin/busybox"].into_iter().map(Path::new).find(|p| p.is_file()) else {
        eprintln!("skipping: install busybox-static");
        return;
    };
    let cluster = tests::Cluster::up(1).expect("cluster up");
    let node_name = format!("net-test-{:08x}", rand::random::<u32>());
    let mut agent = Agent::new(&node_name);

    let rootfs = agent.data.path().join("image-rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
    std::fs::create_dir_all(rootfs.join("etc")).expect("mkdir");
    std::fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy busybox");
    for applet in ["sh", "sleep", "echo", "cat", "mkdir", "httpd", "nc", "printf", "grep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).expect("symlink");
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    let tar = Command::new("tar").arg("-C").arg(&rootfs).args(["-c", "."]).output().expect("tar");
    assert!(tar.status.success(), "tar failed");
    let import = agent.ctl(&["image", "import", "-", IMAGE], &tar.stdout);
    assert!(import.status.success(), "import: {}", String::from_utf8_lossy(&import.stderr));

    let log = std::fs::OpenOptions::new().create(true).append(true).open(agent.data.path().join("agent.log")).expect("log file");
    agent.child = Some(
        Command::new(env!("CARGO_BIN_EXE_flotilla-node-agent"))
            .arg("--data-dir")
            .arg(agent.data.path())
            .args(["--node-name", &node_name, "--node-ip", "127.0.0.1", "--resync-seconds", "2"])
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .arg("--kubeconfig")
            .arg(cluster.kubeconfig())
            .env("RUST_LOG", "info,node_agent=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the agent"),
    );

    let client = Client::new(Config::from_kubeconfig(&cluster.kubeconfig(), None).expect("kubeconfig")).expect("client");
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for("the node to register", Duration::from_secs(60), async || nodes.get_opt(&node_name).await.ok().flatten()).await;
    // A /24 high in the cluster CIDR, unlikely to meet a local cluster's nodes on this host.
    let third = 200 + rand::random::<u8>() % 50;
    let pod_cidr = format!("10.244.{third}.0/24");
    let gateway = format!("10.244.{third}.1");
    let patch = serde_json::json!({"spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]}});
    nodes.patch(&node_name, &PatchParams::default(), &Patch::Merge(patch)).await.expect("set the podCIDR");

    let host_port = free_port();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let server = pod_json(
        "server",
        &node_name,
        "mkdir -p /www && echo hello-from-server > /www/index.html && exec httpd -f -p 80 -h /www",
        serde_json::json!([{"containerPort": 80, "hostPort": host_port}]),
    );
    let server_uid = pods.create(&PostParams::default(), &server).await.expect("create server").metadata.uid.expect("uid");
    agent.pod_uids.push(server_uid.clone());
    let running_ip = async |name: &str| -> Option<String> {
        let status = pods.get(name).await.ok()?.status?;
        (status.phase.as_deref() == Some("Running")).then_some(())?;
        status.pod_ip.filter(|ip| !ip.is_empty())
    };
    let server_ip = wait_for("the server to run with a podIP", Duration::from_secs(60), async || running_ip("server").await).await;
    assert!(server_ip.starts_with(&format!("10.244.{third}.")) && server_ip != gateway, "server podIP {server_ip} not in {pod_cidr}");

    // The client fetches the server's page by pod IP and prints its own network files.
    let client_pod = pod_json(
        "client",
        &node_name,
        // busybox-static's wget crashes on this host; nc speaks enough HTTP.
        &format!(
            "until printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {server_ip} 80 > /page && grep -q hello /page; do sleep 1; done; \
             cat /page /etc/resolv.conf /etc/hosts; echo \"hostname=$(cat /etc/hostname)\"; exec sleep 3600"
        ),
        serde_json::json!([]),
    );
    let client_uid = pods.create(&PostParams::default(), &client_pod).await.expect("create client").metadata.uid.expect("uid");
    agent.pod_uids.push(client_uid.clone());
    let client_ip = wait_for("the client to run with a podIP", Duration::from_secs(60), async || running_ip("client").await).await;
    assert_ne!(client_ip, server_ip);
    let client_id = pods
        .get("client")
        .await
        .expect("get client")
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|cs| cs.into_iter().next())
        .and_then(|c| c.container_id)
        .and_then(|id| id.strip_prefix("flotilla://").map(str::to_string))
        .expect("the client's container id");
    let logs = || {
        let out = agent.ctl(&["logs", &client_id], b"");
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let output = loop {
        let text = logs();
        if text.contains("hello-from-server") {
            break text;
        }
        if Instant::now() > deadline {
            let inside = Command::new("nsenter")
                .arg(format!("--net={}/{client_uid}", node_agent::sandbox::NETNS_DIR))
                .args(["ip", "-br", "addr"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            panic!("the client did not reach the server at {server_ip}; its log:\n{text}\nits interfaces:\n{inside}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // The pod's own files, bind-mounted over the image's.
    let pod_dir = node_agent::pods::pod_run_dir(&agent.data.path().join("run"), &client_uid);
    let resolv = std::fs::read_to_string(network::pod::files_dir(&pod_dir).join("resolv.conf")).expect("the pod's resolv.conf");
    assert!(resolv.contains(&format!("nameserver {gateway}\n")), "{resolv}");
    let hosts = std::fs::read_to_string(network::pod::files_dir(&pod_dir).join("hosts")).expect("the pod's hosts");
    assert!(hosts.contains(&format!("{client_ip}\tclient\n")), "{hosts}");
    // ... and they are what the container sees (a mount at /etc/hosts or /etc/resolv.conf wins
    // over the runtime's own files).
    assert!(
        output.contains("search default.svc.cluster.local svc.cluster.local cluster.local") && output.contains(&format!("{client_ip}\tclient")),
        "the container sees the pod's resolv.conf and hosts:\n{output}"
    );
    // One /etc/hostname for the pod, with its name.
    assert_eq!(std::fs::read_to_string(network::pod::files_dir(&pod_dir).join("hostname")).expect("the pod's hostname"), "client\n");
    assert!(output.contains("hostname=client\n"), "the container sees the pod's hostname file:\n{output}");

    // hostPort: from the node itself at 127.0.0.1, and at the host's other address.
    let page = wait_for("the hostPort on 127.0.0.1", Duration::from_secs(20), async || {
        http_get(&format!("127.0.0.1:{host_port}")).ok().filter(|r| r.contains("hello-from-server"))
    })
    .await;
    assert!(page.starts_with("HTTP/1."), "{page}");
    match host_address() {
        Some(ip) => {
            let page = http_get(&format!("{ip}:{host_port}")).expect("hostPort on the host's address");
            assert!(page.contains("hello-from-server"), "{page}");
        }
        None => eprintln!("notice: the host has no global IPv4 address; hostPort checked on 127.0.0.1 only"),
    }

    // Deletion frees the veths, the addresses and the hostPort.
    let params = DeleteParams { grace_period_seconds: Some(1), ..Default::default() };
    for name in ["server", "client"] {
        pods.delete(name, &params).await.expect("delete pod");
    }
    for name in ["server", "client"] {
        wait_for("the pods to be gone", Duration::from_secs(60), async || pods.get_opt(name).await.ok().and_then(|p| p.is_none().then_some(()))).await;
    }
    let ipam_file = agent.data.path().join("run/network/ipam.json");
    wait_for("the pods' veths, addresses and sandboxes to go", Duration::from_secs(30), async || {
        let links = String::from_utf8_lossy(&Command::new("ip").args(["-o", "link", "show"]).output().ok()?.stdout).into_owned();
        let ipam = std::fs::read_to_string(&ipam_file).unwrap_or_default();
        let netns = Path::new(node_agent::sandbox::NETNS_DIR);
        let gone = [&server_uid, &client_uid].iter().all(|uid| {
            !links.contains(&format!("{}@", network::veth_name(uid))) && !links.contains(&format!("{}:", network::veth_name(uid))) && !ipam.contains(uid.as_str()) && !netns.join(uid).exists()
        });
        gone.then_some(())
    })
    .await;
    let table = runtime::network::nft::list_table("inet", &network::table_name(&node_name)).await.expect("the node's table");
    assert!(!table.contains("dnat ip to"), "the hostPort outlived its pod:\n{table}");
    assert!(http_get(&format!("127.0.0.1:{host_port}")).is_err(), "the hostPort still answers");

    // Nothing of the node is left once the agent is gone.
    agent.cleanup();
    let bridge = network::bridge_name(&node_name);
    let links = String::from_utf8_lossy(&Command::new("ip").args(["-o", "link", "show"]).output().expect("ip").stdout).into_owned();
    assert!(!links.contains(&format!("{bridge}:")), "the bridge {bridge} is left");
    let tables = runtime::network::nft::list_tables().await.expect("nft tables");
    assert!(!tables.iter().any(|(_, n)| *n == network::table_name(&node_name)), "the table is left");
    drop(agent);
    drop(cluster);
}
