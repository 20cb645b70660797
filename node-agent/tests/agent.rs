//! The node agent against a real 1-replica cluster: a busybox image imported into the agent's
//! runtime root, a pod bound to the agent's node (no scheduler needed), then Running and Ready,
//! a restart after its command exits, init containers and a sidecar, and graceful deletion.
//! Needs root and busybox-static; elsewhere it prints a notice and passes. A guard kills the agent and removes its containers,
//! network namespaces and mounts also when the test panics.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use api::client::{Api, Client, Config, DeleteParams, PostParams};
use api::core::{Node, Pod};

const IMAGE: &str = "local-test/busybox:1";

mod common;
use common::{free_port, wait_for, Agent};

/// Runs a command in a container through the agent's exec endpoint (v5.channel.k8s.io), with
/// `stdin` sent then closed; returns (stdout, stderr, the final Status).
async fn exec_ws(port: u16, client_identity: (&[u8], &[u8]), serving_ca: &[u8], path: &str, stdin: &[u8]) -> (String, String, serde_json::Value) {
    exec_ws_frames(port, client_identity, serving_ca, path, &[], stdin).await
}

/// [`exec_ws`] sending `before` (whole frames, channel byte first) ahead of stdin.
async fn exec_ws_frames(
    port: u16,
    client_identity: (&[u8], &[u8]),
    serving_ca: &[u8],
    path: &str,
    before: &[Vec<u8>],
    stdin: &[u8],
) -> (String, String, serde_json::Value) {
    use futures::{SinkExt, StreamExt};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(serving_ca) {
        roots.add(cert.expect("serving cert")).expect("add root");
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(client_identity.0).collect::<Result<_, _>>().expect("client cert");
    let key = PrivateKeyDer::from_pem_slice(client_identity.1).expect("client key");
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .expect("client auth");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("tls handshake");
    let mut request = format!("wss://localhost:{port}{path}").into_client_request().expect("request");
    request.headers_mut().insert("Sec-WebSocket-Protocol", "v5.channel.k8s.io".parse().expect("header"));
    let (mut ws, response) = tokio_tungstenite::client_async(request, tls).await.expect("websocket handshake");
    assert_eq!(response.headers().get("sec-websocket-protocol").map(|v| v.as_bytes()), Some(&b"v5.channel.k8s.io"[..]));
    for frame in before {
        ws.send(Message::Binary(frame.clone().into())).await.expect("send a frame");
    }
    ws.send(Message::Binary([&[0u8][..], stdin].concat().into())).await.expect("send stdin");
    ws.send(Message::Binary(vec![255u8, 0].into())).await.expect("close stdin");
    let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), serde_json::Value::Null);
    while let Some(Ok(message)) = tokio::time::timeout(Duration::from_secs(20), ws.next()).await.expect("exec output in time") {
        if let Message::Binary(data) = message {
            match data.first() {
                Some(1) => out.extend_from_slice(&data[1..]),
                Some(2) => err.extend_from_slice(&data[1..]),
                Some(3) => status = serde_json::from_slice(&data[1..]).expect("status json"),
                _ => {}
            }
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), String::from_utf8_lossy(&err).into_owned(), status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_runs_restarts_and_deletes_a_pod() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipping: the node agent test needs root");
        return;
    }
    let Some(busybox) = ["/bin/busybox", "/usr/bin/busybox"].into_iter().map(Path::new).find(|p| p.is_file()) else {
        eprintln!("skipping: install busybox-static");
        return;
    };
    let cluster = tests::Cluster::up(1).expect("cluster up");
    let node_name = format!("agent-test-{:08x}", rand::random::<u32>());
    let mut agent = Agent::new(&node_name);

    // The image: busybox and a few applets, imported into the agent's runtime root.
    let rootfs = agent.data.path().join("image-rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
    std::fs::create_dir_all(rootfs.join("etc")).expect("mkdir");
    std::fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy busybox");
    for applet in ["sh", "sleep", "echo", "cat", "true", "touch"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).expect("symlink");
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    let tar = Command::new("tar").arg("-C").arg(&rootfs).args(["-c", "."]).output().expect("tar");
    assert!(tar.status.success(), "tar failed");
    let import = agent.ctl(&["image", "import", "-", IMAGE], &tar.stdout);
    assert!(import.status.success(), "import: {}", String::from_utf8_lossy(&import.stderr));

    let port = free_port();
    let start_agent = |data: &Path| {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(data.join("agent.log")).expect("log file");
        Command::new(env!("CARGO_BIN_EXE_flotilla-node-agent"))
            .arg("--data-dir")
            .arg(data)
            .args(["--node-name", &node_name, "--node-ip", "127.0.0.1", "--resync-seconds", "2"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--kubeconfig")
            .arg(cluster.kubeconfig())
            .env("RUST_LOG", "info,node_agent=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the agent")
    };
    agent.child = Some(start_agent(agent.data.path()));
    let agent_log = agent.data.path().join("agent.log");
    let show_log = move || std::fs::read_to_string(&agent_log).unwrap_or_default();

    let client = Client::new(Config::from_kubeconfig(&cluster.kubeconfig(), None).expect("kubeconfig")).expect("client");
    let nodes: Api<Node> = Api::all(client.clone());
    let ready_of = |node: &Node| {
        node.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == "Ready").cloned())
    };
    let not_ready = wait_for("the node to register with its status", Duration::from_secs(60), async || {
        ready_of(&nodes.get_opt(&node_name).await.ok().flatten()?)
    })
    .await;
    // Without a podCIDR there is no pod network: the node says so and is not Ready.
    assert_eq!((not_ready.status.as_str(), not_ready.reason.as_deref()), ("False", Some("KubeletNotReady")), "agent log:\n{}", show_log());
    // Pods wait for the node's podCIDR, which the controllers (not running here) would allocate.
    let third = 200 + rand::random::<u8>() % 50;
    let cidr = format!("10.244.{third}.0/24");
    let patch = serde_json::json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
    nodes.patch(&node_name, &Default::default(), &api::client::Patch::Merge(patch)).await.expect("set the podCIDR");
    wait_for("the node to be Ready once its network is up", Duration::from_secs(30), async || {
        let node = nodes.get_opt(&node_name).await.ok().flatten()?;
        (ready_of(&node)?.status == "True").then_some(())
    })
    .await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "crasher", "namespace": "default"},
        "spec": {
            "nodeName": node_name,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "app",
                "image": IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", "echo started; sleep 4; exit 3"]
            }]
        }
    }))
    .expect("pod json");
    let created = pods.create(&PostParams::default(), &pod).await.expect("create pod");
    let uid = created.metadata.uid.clone().expect("uid");
    agent.pod_uids.push(uid.clone());

    let status_of = |p: &Pod| p.status.clone().unwrap_or_default();
    let running = wait_for("the pod to be Running and Ready", Duration::from_secs(60), async || {
        let p = pods.get("crasher").await.ok()?;
        let s = status_of(&p);
        let ready = s.conditions.as_ref()?.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        (s.phase.as_deref() == Some("Running") && ready).then_some(p)
    })
    .await;
    let cs = &status_of(&running).container_statuses.expect("container statuses")[0];
    assert!(cs.container_id.as_deref().is_some_and(|id| id.starts_with("flotilla://")), "{cs:?}");
    assert_eq!(status_of(&running).host_ip.as_deref(), Some("127.0.0.1"));
    assert!(Path::new(node_agent::sandbox::NETNS_DIR).join(&uid).exists(), "the pod's network namespace is missing");

    let restarted = wait_for("a restart after the container exits", Duration::from_secs(60), async || {
        let p = pods.get("crasher").await.ok()?;
        let cs = status_of(&p).container_statuses?.into_iter().next()?;
        let last = cs.last_state.as_ref()?.terminated.as_ref()?;
        (cs.restart_count >= 1 && last.exit_code == 3).then_some(cs)
    })
    .await;
    assert_eq!(restarted.last_state.and_then(|l| l.terminated).and_then(|t| t.reason).as_deref(), Some("Error"));

    // Events about the pod, the node's Lease, and the log through the agent's HTTPS server.
    let events: Api<api::core::Event> = Api::namespaced(client.clone(), "default");
    let reasons: Vec<String> = events
        .list(&Default::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.involved_object.uid.as_deref() == Some(uid.as_str()))
        .filter_map(|e| e.reason)
        .collect();
    for reason in ["Pulled", "Created", "Started"] {
        assert!(reasons.iter().any(|r| r == reason), "no {reason} event in {reasons:?}");
    }
    let leases: Api<api::coordination::Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = leases.get(&node_name).await.expect("the node's lease");
    assert_eq!(lease.spec.and_then(|s| s.holder_identity).as_deref(), Some(node_name.as_str()));
    let identity = [std::fs::read(cluster.dir().join("pki/server.crt")).expect("cert"), std::fs::read(cluster.dir().join("pki/server.key")).expect("key")].concat();
    let serving = std::fs::read(agent.data.path().join("pki/serving.crt")).expect("serving cert");
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&serving).expect("serving cert pem"))
        .tls_built_in_root_certs(false)
        .identity(reqwest::Identity::from_pem(&identity).expect("identity"))
        .build()
        .expect("https client");
    let logs = https
        .get(format!("https://localhost:{port}/containerLogs/default/crasher/app?previous=true"))
        .send()
        .await
        .expect("logs request");
    assert!(logs.status().is_success(), "logs: {}", logs.status());
    assert_eq!(logs.text().await.expect("logs body"), "started\n");
    let anonymous = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&serving).expect("serving cert pem"))
        .tls_built_in_root_certs(false)
        .build()
        .expect("client");
    assert!(anonymous.get(format!("https://localhost:{port}/healthz")).send().await.is_err(), "a client without a certificate got in");

    // The agent writes RUN/pods/<uid>/state.json (its run directory, D/run by default, a tmpfs)
    // with the current container.
    let run_dir = agent.data.path().join("run");
    assert_eq!(
        nix::sys::statfs::statfs(&run_dir).expect("statfs").filesystem_type(),
        nix::sys::statfs::TMPFS_MAGIC,
        "the run directory is not a tmpfs"
    );
    let record = node_agent::pods::load_record(&node_agent::pods::pod_run_dir(&run_dir, &uid)).expect("state file").expect("a record");
    assert!(record.containers["app"].restart_count >= 1);

    // A long-running pod with a readiness probe survives a restart of the agent untouched.
    let sleeper: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "sleeper", "namespace": "default"},
        "spec": {
            "nodeName": node_name,
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "app",
                "image": IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sleep", "3600"],
                "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}
            }]
        }
    }))
    .expect("pod json");
    let sleeper_uid = pods.create(&PostParams::default(), &sleeper).await.expect("create pod").metadata.uid.expect("uid");
    agent.pod_uids.push(sleeper_uid.clone());
    let is_ready = |p: &Pod| p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    wait_for("the sleeper to be Ready", Duration::from_secs(60), async || pods.get("sleeper").await.ok().filter(is_ready)).await;
    let sleeper_run = node_agent::pods::pod_run_dir(&run_dir, &sleeper_uid);
    let id_before = node_agent::pods::load_record(&sleeper_run).expect("state").expect("record").containers["app"].id.clone().expect("container id");
    let runtime = runtime::container::Runtime::open(&agent.runtime_root()).expect("runtime");
    let pid_before = runtime.inspect(&id_before).expect("inspect").pid;
    assert!(pid_before > 0);

    if let Some(mut child) = agent.child.take() {
        child.kill().expect("kill the agent");
        child.wait().expect("reap the agent");
    }
    // Leave the pod's record and the IPAM file where an agent of an earlier version kept them,
    // on the disk: the new agent still adopts the container and moves the IPAM file.
    let legacy = node_agent::pods::pod_dir(agent.data.path(), &sleeper_uid);
    std::fs::create_dir_all(&legacy).expect("mkdir");
    let to_disk = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(from, to).expect("copy to the disk");
        std::fs::remove_file(from).expect("remove from the run directory");
    };
    to_disk(&sleeper_run.join("state.json"), &legacy.join("state.json"));
    to_disk(&run_dir.join("network/ipam.json"), &agent.data.path().join("network/ipam.json"));
    agent.child = Some(start_agent(agent.data.path()));
    // Several resyncs of the new agent.
    tokio::time::sleep(Duration::from_secs(6)).await;
    wait_for("the sleeper to be Ready again", Duration::from_secs(30), async || pods.get("sleeper").await.ok().filter(is_ready)).await;
    let ipam = std::fs::read_to_string(run_dir.join("network/ipam.json")).expect("the IPAM file moved to the run directory");
    assert!(ipam.contains(&sleeper_uid), "the sleeper's address was lost: {ipam}");
    assert!(!agent.data.path().join("network/ipam.json").exists());
    let after = match node_agent::pods::load_record(&sleeper_run).expect("state") {
        Some(record) => record,
        None => node_agent::pods::load_record(&legacy).expect("state").expect("record"),
    };
    assert_eq!(after.containers["app"].id.as_deref(), Some(id_before.as_str()), "the restarted agent replaced the container");
    assert_eq!(after.containers["app"].restart_count, 0);
    assert_eq!(runtime.inspect(&id_before).expect("inspect").pid, pid_before, "the container's process changed; agent log:\n{}", show_log());
    // exec into the adopted container: stdin in, stdout and stderr out, the exit code in the Status.
    let cert = std::fs::read(cluster.dir().join("pki/server.crt")).expect("cert");
    let key = std::fs::read(cluster.dir().join("pki/server.key")).expect("key");
    let (out, err, status) = exec_ws(
        port,
        (&cert, &key),
        &serving,
        "/exec/default/sleeper/app?command=sh&command=-c&command=cat%3B%20echo%20oops%20%3E%262%3B%20exit%207&stdin=true&stdout=true&stderr=true",
        b"hello\n",
    )
    .await;
    assert_eq!((out.as_str(), err.as_str()), ("hello\n", "oops\n"));
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["details"]["causes"][0]["message"], "7");
    let (_, _, ok) = exec_ws(port, (&cert, &key), &serving, "/exec/default/sleeper/app?command=true&stdout=true", b"").await;
    assert_eq!(ok["status"], "Success");
    // With a terminal (kubectl exec -t): the size sent on channel 4 reaches the command's
    // terminal, which echoes input and writes everything on stdout.
    let resize = [&[4u8][..], br#"{"Width":100,"Height":30}"#].concat();
    let (out, err, status) = exec_ws_frames(
        port,
        (&cert, &key),
        &serving,
        "/exec/default/sleeper/app?command=sh&command=-c&command=read%20x%3B%20stty%20size%3B%20tty%3B%20echo%20oops%20%3E%262&stdin=true&stdout=true&tty=true",
        &[resize],
        b"go\n",
    )
    .await;
    assert_eq!(status["status"], "Success", "{status}");
    assert!(out.contains("30 100\r\n") && out.contains("/dev/pts/") && out.contains("oops\r\n"), "terminal output: {out:?}");
    assert!(err.is_empty(), "a terminal has no separate stderr: {err:?}");

    let sleeper_status = pods.get("sleeper").await.expect("get").status.and_then(|s| s.container_statuses).expect("statuses");
    assert_eq!(sleeper_status[0].restart_count, 0);

    // The crasher exited a second time by now: it waits in back-off.
    wait_for("the crasher to be in CrashLoopBackOff", Duration::from_secs(30), async || {
        let cs = pods.get("crasher").await.ok()?.status?.container_statuses?.into_iter().next()?;
        let reason = cs.state?.waiting?.reason?;
        (reason == "CrashLoopBackOff" && cs.restart_count >= 1).then_some(())
    })
    .await;

    // Init containers run one after the other, each to a successful exit (init-b fails once and
    // is run again), before the app container starts; they share the pod's volumes.
    let initialized: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "initialized", "namespace": "default"},
        "spec": {
            "nodeName": node_name,
            "terminationGracePeriodSeconds": 1,
            "volumes": [{"name": "work", "emptyDir": {}}],
            "initContainers": [
                {"name": "init-a", "image": IMAGE, "imagePullPolicy": "Never",
                 "command": ["sh", "-c", "echo a >> /work/order; echo init-a ran"],
                 "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
                {"name": "init-b", "image": IMAGE, "imagePullPolicy": "Never",
                 "command": ["sh", "-c", "test -f /work/tried || { echo > /work/tried; exit 1; }; echo b >> /work/order"],
                 "volumeMounts": [{"name": "work", "mountPath": "/work"}]}
            ],
            "containers": [{
                "name": "app", "image": IMAGE, "imagePullPolicy": "Never",
                "command": ["sh", "-c", "cat /work/order; exec sleep 3600"],
                "volumeMounts": [{"name": "work", "mountPath": "/work"}]
            }]
        }
    }))
    .expect("pod json");
    let initialized_uid = pods.create(&PostParams::default(), &initialized).await.expect("create pod").metadata.uid.expect("uid");
    agent.pod_uids.push(initialized_uid.clone());
    let condition = |p: &Pod, type_: &str| {
        p.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == type_)).map(|c| c.status.clone())
    };
    let done = wait_for("the initialized pod to be Running", Duration::from_secs(60), async || {
        let p = pods.get("initialized").await.ok()?;
        (p.status.as_ref()?.phase.as_deref() == Some("Running") && condition(&p, "Ready").as_deref() == Some("True")).then_some(p)
    })
    .await;
    assert_eq!(condition(&done, "Initialized").as_deref(), Some("True"));
    let inits = done.status.as_ref().and_then(|s| s.init_container_statuses.clone()).expect("initContainerStatuses");
    let names: Vec<&str> = inits.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["init-a", "init-b"]);
    for init in &inits {
        let terminated = init.state.as_ref().and_then(|s| s.terminated.as_ref()).expect("terminated");
        assert_eq!((terminated.exit_code, terminated.reason.as_deref()), (0, Some("Completed")), "{init:?}");
        assert!(init.ready, "{init:?}");
    }
    assert_eq!((inits[0].restart_count, inits[1].restart_count), (0, 1));
    let app_log = https.get(format!("https://localhost:{port}/containerLogs/default/initialized/app")).send().await.expect("logs");
    assert_eq!(app_log.text().await.expect("body"), "a\nb\n", "the app did not see both init containers' work, in order");
    let init_log = https.get(format!("https://localhost:{port}/containerLogs/default/initialized/init-a")).send().await.expect("logs");
    assert_eq!(init_log.text().await.expect("body"), "init-a ran\n");

    // With restartPolicy Never a failed init container fails the pod; the app never starts.
    let failing: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "init-fails", "namespace": "default"},
        "spec": {
            "nodeName": node_name,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "initContainers": [{"name": "init", "image": IMAGE, "imagePullPolicy": "Never", "command": ["sh", "-c", "exit 5"]}],
            "containers": [{"name": "app", "image": IMAGE, "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]
        }
    }))
    .expect("pod json");
    let failing_uid = pods.create(&PostParams::default(), &failing).await.expect("create pod").metadata.uid.expect("uid");
    agent.pod_uids.push(failing_uid.clone());
    let failed = wait_for("the init-fails pod to be Failed", Duration::from_secs(60), async || {
        let p = pods.get("init-fails").await.ok()?;
        (p.status.as_ref()?.phase.as_deref() == Some("Failed")).then_some(p)
    })
    .await;
    assert_eq!(condition(&failed, "Initialized").as_deref(), Some("False"));
    let status = failed.status.clone().unwrap_or_default();
    let init = status.init_container_statuses.as_ref().and_then(|c| c.first()).and_then(|c| c.state.as_ref()?.terminated.clone());
    assert_eq!(init.map(|t| t.exit_code), Some(5));
    let app = status.container_statuses.as_ref().and_then(|c| c.first()).and_then(|c| c.state.as_ref()?.waiting.clone());
    assert_eq!(app.and_then(|w| w.reason).as_deref(), Some("PodInitializing"));
    let failing_record = node_agent::pods::load_record(&node_agent::pods::pod_run_dir(&run_dir, &failing_uid)).expect("state").expect("record");
    assert!(!failing_record.containers.contains_key("app"), "the app container was created: {failing_record:?}");

    // A sidecar (an init container with restartPolicy Always) in a restartPolicy Never pod: the
    // next init container waits until it has started (its startup probe passed), it runs beside
    // the app and is restarted after it crashes, and once the app has completed it is stopped and
    // the pod Succeeded.
    let mounts = serde_json::json!([{"name": "work", "mountPath": "/work"}]);
    let sidecar_pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "with-sidecar", "namespace": "default"},
        "spec": {
            "nodeName": node_name,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "volumes": [{"name": "work", "emptyDir": {}}],
            "initContainers": [
                {"name": "side", "image": IMAGE, "imagePullPolicy": "Never", "restartPolicy": "Always",
                 "command": ["sh", "-c", "if test -f /work/up; then exec sleep 3600; fi; sleep 1; echo side >> /work/order; touch /work/up; sleep 2; exit 3"],
                 "startupProbe": {"exec": {"command": ["cat", "/work/up"]}, "periodSeconds": 1},
                 "volumeMounts": mounts},
                {"name": "after", "image": IMAGE, "imagePullPolicy": "Never",
                 "command": ["sh", "-c", "test -f /work/up && echo after >> /work/order"],
                 "volumeMounts": mounts}
            ],
            "containers": [{
                "name": "app", "image": IMAGE, "imagePullPolicy": "Never",
                "command": ["sh", "-c", "cat /work/order; sleep 8"],
                "volumeMounts": mounts
            }]
        }
    }))
    .expect("pod json");
    let sidecar_uid = pods.create(&PostParams::default(), &sidecar_pod).await.expect("create pod").metadata.uid.expect("uid");
    agent.pod_uids.push(sidecar_uid.clone());
    let init_status = |p: &Pod, name: &str| {
        p.status.as_ref().and_then(|s| s.init_container_statuses.as_ref()).and_then(|cs| cs.iter().find(|c| c.name == name).cloned())
    };
    let beside = wait_for("the sidecar restarted and running beside the app", Duration::from_secs(60), async || {
        let p = pods.get("with-sidecar").await.ok()?;
        let side = init_status(&p, "side")?;
        let running = side.state.as_ref()?.running.is_some() && side.started == Some(true) && side.restart_count >= 1;
        (p.status.as_ref()?.phase.as_deref() == Some("Running") && running).then_some(p)
    })
    .await;
    assert_eq!(condition(&beside, "Initialized").as_deref(), Some("True"));
    let after = init_status(&beside, "after").and_then(|c| c.state?.terminated).expect("after terminated");
    assert_eq!(after.exit_code, 0, "the init container after the sidecar ran before it had started: {after:?}");
    let succeeded = wait_for("the sidecar pod to be Succeeded", Duration::from_secs(60), async || {
        let p = pods.get("with-sidecar").await.ok()?;
        (p.status.as_ref()?.phase.as_deref() == Some("Succeeded")).then_some(p)
    })
    .await;
    let side = wait_for("the sidecar stopped after the app", Duration::from_secs(30), async || {
        let p = pods.get("with-sidecar").await.ok()?;
        init_status(&p, "side").filter(|s| s.state.as_ref().is_some_and(|st| st.terminated.is_some()))
    })
    .await;
    let app = succeeded.status.as_ref().and_then(|s| s.container_statuses.as_ref()).and_then(|c| c.first()).and_then(|c| c.state.as_ref()?.terminated.clone());
    assert_eq!(app.map(|t| t.exit_code), Some(0));
    assert!(side.restart_count >= 1, "{side:?}");
    let app_log = https.get(format!("https://localhost:{port}/containerLogs/default/with-sidecar/app")).send().await.expect("logs");
    assert_eq!(app_log.text().await.expect("body"), "side\nafter\n", "the app did not see the sidecar start, then the init container");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = pods.get("with-sidecar").await.expect("pod");
    assert_eq!(init_status(&settled, "side").map(|s| s.restart_count), Some(side.restart_count), "the stopped sidecar was started again");

    let params = DeleteParams { grace_period_seconds: Some(5), ..Default::default() };
    pods.delete("sleeper", &params).await.expect("delete pod");
    pods.delete("crasher", &params).await.expect("delete pod");
    pods.delete("initialized", &params).await.expect("delete pod");
    pods.delete("init-fails", &params).await.expect("delete pod");
    pods.delete("with-sidecar", &params).await.expect("delete pod");
    for name in ["crasher", "sleeper", "initialized", "init-fails", "with-sidecar"] {
        wait_for("the pods to be gone", Duration::from_secs(60), async || pods.get_opt(name).await.ok().and_then(|p| p.is_none().then_some(()))).await;
    }
    wait_for("the pod's containers and sandbox to be removed", Duration::from_secs(30), async || {
        let netns = Path::new(node_agent::sandbox::NETNS_DIR);
        let gone = agent.containers(true).is_empty()
            && [&uid, &sleeper_uid, &initialized_uid, &failing_uid, &sidecar_uid].iter().all(|u| !netns.join(u.as_str()).exists());
        gone.then_some(())
    })
    .await;
    let events_after = events.list(&Default::default()).await.expect("list events").items;
    assert!(
        events_after.iter().any(|e| e.involved_object.uid.as_deref() == Some(sleeper_uid.as_str()) && e.reason.as_deref() == Some("Killing")),
        "no Killing event after deletion"
    );
    drop(agent);
    drop(cluster);
}
