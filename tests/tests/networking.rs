//! Networking end to end on three "machines": `deploy/local-cluster up --nodes 3 --machines
//! --registry` puts each node agent in a network namespace of its own with an address on a test
//! bridge, so pod traffic between nodes really crosses from one machine to another.
//!
//! The scenarios are the ones issue 7 names: a pod on machine A reaches a pod on machine B by IP
//! and by Service name; a NodePort answers on every machine's address and spreads requests over
//! pods on different machines; a machine cut off the network has its pods replaced elsewhere while
//! the Service keeps answering; and a rolling update behind a Service under a client looping for
//! the whole update loses no request.
//!
//! Commands "in a pod" run with `nsenter --target PID --net --mount` into the pod's container
//! (there is no `ctl exec` yet): the image's own busybox, its /etc/resolv.conf and its network.
//! The servers are busybox httpd answering with their pod's name, which tells which pod served.
//!
//! They need root and busybox-static; elsewhere they print a notice and pass. The cluster, its
//! machines and the test bridge are removed by `Cluster`'s Drop, also when an assertion fails.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use tests::e2e::{apply, get, is_ready, pods, three_machines as cluster, wait_for};
use tests::Cluster;

const NODES: [&str; 3] = ["node-1", "node-2", "node-3"];

fn node_of(pod: &Value) -> String {
    pod["spec"]["nodeName"].as_str().unwrap_or_default().to_string()
}

/// A busybox httpd on port 8080 answering `/` with its pod's name. On SIGTERM it keeps serving
/// for 8 s before it stops: the time the Service needs to stop sending it new connections once
/// the pod is Terminating (no preStop hook needed). Kubernetes users pick this drain time the same
/// way; 3 s proved too short when CI ran four three-machine clusters at once (the Endpoints
/// change took longer to reach every node's rules, and one request in 27 000 was cut).
fn server_container(image: &str) -> Value {
    let script = "mkdir -p /www; hostname > /www/index.html; \
                  httpd -f -p 8080 -h /www & pid=$!; \
                  trap 'sleep 8; kill $pid; exit 0' TERM; wait $pid";
    json!({
        "name": "web", "image": image,
        "command": ["sh", "-c", script],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}
    })
}

fn server_pod(name: &str, node: &str, image: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 12, "containers": [server_container(image)]}
    })
}

fn client_pod(name: &str, node: &str, image: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "client"}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", "image": image, "command": ["sleep", "3600"]}]}
    })
}

fn deployment(name: &str, image: &str, replicas: u32, version: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": {"version": version}},
                "spec": {"terminationGracePeriodSeconds": 12, "containers": [server_container(image)]}
            }
        }
    })
}

fn service(name: &str, type_: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": type_, "selector": {"app": name},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    })
}

async fn wait_pod_ready(c: &Cluster, name: &str) -> Value {
    wait_for(&format!("pod {name} to be ready"), Duration::from_secs(60), || async {
        get(c, &format!("/api/v1/namespaces/default/pods/{name}")).await.filter(is_ready)
    })
    .await
}

/// Ready pods of `selector` per node, once there are `count` of them.
async fn wait_ready_pods(c: &Cluster, selector: &str, count: usize, timeout: Duration) -> Vec<Value> {
    wait_for(&format!("{count} ready pods {selector}"), timeout, || async {
        let ready: Vec<Value> = pods(c, selector).await.into_iter().filter(is_ready).collect();
        (ready.len() == count).then_some(ready)
    })
    .await
}

/// Pod IPs in the Service's Endpoints (ready addresses).
async fn endpoint_ips(c: &Cluster, name: &str) -> BTreeSet<String> {
    let Some(ep) = get(c, &format!("/api/v1/namespaces/default/endpoints/{name}")).await else { return BTreeSet::new() };
    ep["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["ip"].as_str().map(str::to_string))
        .collect()
}

async fn node_port(c: &Cluster, name: &str) -> u16 {
    let svc = get(c, &format!("/api/v1/namespaces/default/services/{name}")).await.expect("the service");
    svc["spec"]["ports"][0]["nodePort"].as_u64().and_then(|p| u16::try_from(p).ok()).expect("a nodePort")
}

/// The PID of the pod's (only) running container, from its node's runtime.
fn container_pid(c: &Cluster, node: &str, pod: &str) -> Option<i64> {
    let root = c.node_dir(node).join("runtime");
    let ctl = tests::binary("ctl").ok()?;
    let out = Command::new(&ctl).arg("--root").arg(&root).args(["ps", "-q", "--no-trunc"]).output().ok()?;
    let marker = format!("_{pod}_default_");
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).find_map(|id| {
        let out = Command::new(&ctl).arg("--root").arg(&root).args(["inspect", id]).output().ok()?;
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        let name = v[0]["Name"].as_str().unwrap_or_default();
        (name.contains(&marker) && v[0]["State"]["Running"] == true).then(|| v[0]["State"]["Pid"].as_i64()).flatten()
    })
}

/// Runs `cmd` inside the pod's container (its network and its files); (success, stdout+stderr).
fn in_pod(c: &Cluster, node: &str, pod: &str, cmd: &[&str]) -> (bool, String) {
    let pid = container_pid(c, node, pod).unwrap_or_else(|| panic!("no running container of pod {pod} on {node}"));
    let out = Command::new("nsenter")
        .args(["--target", &pid.to_string(), "--net", "--mount", "--"])
        .args(cmd)
        .output()
        .expect("run nsenter");
    let mut text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        text.push_str(&format!(" ({})", out.status));
    }
    (out.status.success(), text)
}

/// `wget` from inside a pod, retried for a while (rules and routes follow the API within a
/// second or so, not at once); the body.
async fn wget_from_pod(c: &Cluster, node: &str, pod: &str, url: &str) -> String {
    let mut last = String::new();
    for _ in 0..30 {
        // timeout(1), not `wget -T`: busybox 1.35's wget crashes (SIGSEGV) with -T.
        let (ok, text) = in_pod(c, node, pod, &["timeout", "3", "wget", "-q", "-O", "-", url]);
        if ok {
            return text.trim().to_string();
        }
        last = text;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{pod} on {node} could not fetch {url}: {last}");
}

/// An HTTP client for the test process (the host): one connection per request, like the
/// busybox clients, so every request goes through the Service's load balancing again.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(3))
        .build()
        .expect("http client")
}

async fn fetch(http: &reqwest::Client, url: &str) -> Result<String, String> {
    let started = std::time::Instant::now();
    let resp = http.get(url).send().await.map_err(|e| {
        // reqwest's message stops at "error sending request": the cause is in the chain
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        format!("{message} (after {} ms)", started.elapsed().as_millis())
    })?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    resp.text().await.map(|t| t.trim().to_string()).map_err(|e| format!("{e:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_reaches_pod_on_another_machine_by_ip_and_service_name() {
    let test = "pod_reaches_pod_on_another_machine_by_ip_and_service_name";
    let Some((c, image)) = cluster(test, "") else { return };
    apply(&c, &server_pod("web-b", "node-2", &image));
    apply(&c, &client_pod("client-a", "node-1", &image));
    apply(&c, &service("web", "ClusterIP"));
    let server = wait_pod_ready(&c, "web-b").await;
    let client = wait_pod_ready(&c, "client-a").await;
    let server_ip = server["status"]["podIP"].as_str().expect("server pod IP").to_string();
    let client_ip = client["status"]["podIP"].as_str().expect("client pod IP").to_string();

    // Addresses come from each node's own pod CIDR.
    for (pod, node) in [(&server, "node-2"), (&client, "node-1")] {
        let n = get(&c, &format!("/api/v1/nodes/{node}")).await.expect("node");
        let cidr = n["spec"]["podCIDR"].as_str().expect("podCIDR").to_string();
        let prefix = cidr.rsplit_once('.').map(|(p, _)| format!("{p}.")).unwrap_or_default();
        let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
        assert!(ip.starts_with(&prefix), "pod IP {ip} on {node} is in its podCIDR {cidr}");
        assert_eq!(pod["status"]["hostIP"].as_str(), c.node_ip(node).as_deref(), "hostIP is the machine's address");
    }
    assert_ne!(server_ip, client_ip);

    // node-1 routes node-2's pod CIDR via node-2's address.
    let cidr2 = get(&c, "/api/v1/nodes/node-2").await.expect("node-2")["spec"]["podCIDR"].as_str().unwrap_or_default().to_string();
    let via = format!("{cidr2} via {}", c.node_ip("node-2").expect("node-2's address"));
    wait_for(&format!("node-1 to route {via}"), Duration::from_secs(15), || async {
        let out = c.machine("node-1", &["ip", "-4", "route"]).ok()?;
        String::from_utf8_lossy(&out.stdout).contains(&via).then_some(())
    })
    .await;

    // By pod IP, across machines.
    let body = wget_from_pod(&c, "node-1", "client-a", &format!("http://{server_ip}:8080/")).await;
    assert_eq!(body, "web-b");

    // By Service name: short, with the namespace, fully qualified; and the name resolves to the
    // Service's cluster IP.
    let svc = get(&c, "/api/v1/namespaces/default/services/web").await.expect("service");
    let cluster_ip = svc["spec"]["clusterIP"].as_str().expect("clusterIP").to_string();
    wait_for("the service to have web-b as endpoint", Duration::from_secs(30), || async {
        endpoint_ips(&c, "web").await.contains(&server_ip).then_some(())
    })
    .await;
    for name in ["web", "web.default", "web.default.svc.cluster.local"] {
        let body = wget_from_pod(&c, "node-1", "client-a", &format!("http://{name}/")).await;
        assert_eq!(body, "web-b", "through http://{name}/");
    }
    let (ok, text) = in_pod(&c, "node-1", "client-a", &["nslookup", "web.default.svc.cluster.local"]);
    assert!(ok && text.contains(&cluster_ip), "nslookup answers the cluster IP {cluster_ip}: {text}");

    // The reply path works the other way too: the server pod reaches the client machine's pod.
    apply(&c, &server_pod("web-a", "node-1", &image));
    let a = wait_pod_ready(&c, "web-a").await;
    let a_ip = a["status"]["podIP"].as_str().expect("pod IP").to_string();
    let body = wget_from_pod(&c, "node-2", "web-b", &format!("http://{a_ip}:8080/")).await;
    assert_eq!(body, "web-a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_port_answers_on_every_machine_and_spreads_over_machines() {
    let test = "node_port_answers_on_every_machine_and_spreads_over_machines";
    let Some((c, image)) = cluster(test, "") else { return };
    for node in NODES {
        apply(&c, &server_pod(&format!("web-{node}"), node, &image));
    }
    apply(&c, &service("web", "NodePort"));
    let ready = wait_ready_pods(&c, "app=web", 3, Duration::from_secs(60)).await;
    let ips: BTreeSet<String> = ready.iter().filter_map(|p| p["status"]["podIP"].as_str().map(str::to_string)).collect();
    wait_for("the 3 pods in the endpoints", Duration::from_secs(30), || async {
        (endpoint_ips(&c, "web").await == ips).then_some(())
    })
    .await;
    let port = node_port(&c, "web").await;
    assert!((30000..=32767).contains(&port), "nodePort {port} in the default range");

    let http = http_client();
    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    for node in NODES {
        let url = format!("http://{}:{port}/", c.node_ip(node).expect("node address"));
        // The rules may land a moment after the Endpoints.
        wait_for(&format!("{url} to answer"), Duration::from_secs(10), || async { fetch(&http, &url).await.ok() }).await;
        let mut here = BTreeSet::new();
        for i in 0..30 {
            let body = fetch(&http, &url).await.unwrap_or_else(|e| panic!("request {i} to {url} failed: {e}"));
            here.insert(body.clone());
            *served.entry(body).or_insert(0) += 1;
        }
        assert!(here.len() >= 2, "requests to {url} were spread over pods: {here:?}");
    }
    assert_eq!(
        served.keys().cloned().collect::<Vec<_>>(),
        vec!["web-node-1", "web-node-2", "web-node-3"],
        "every pod, on every machine, served some of the 90 requests: {served:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_cut_off_has_its_pods_replaced_and_the_service_keeps_answering() {
    let test = "a_machine_cut_off_has_its_pods_replaced_and_the_service_keeps_answering";
    // The agents renew their Lease every 10 s, so the grace period must be longer than that.
    let Some((c, image)) = cluster(test, "--node-monitor-grace-period 15s --pod-eviction-timeout 2s") else { return };
    apply(&c, &deployment("web", &image, 3, "1"));
    apply(&c, &service("web", "NodePort"));
    let ready = wait_ready_pods(&c, "app=web", 3, Duration::from_secs(90)).await;
    let on: BTreeSet<String> = ready.iter().map(node_of).collect();
    assert_eq!(on.len(), 3, "one pod per machine: {on:?}");
    let port = node_port(&c, "web").await;
    let http = http_client();
    let url = format!("http://{}:{port}/", c.node_ip("node-1").expect("node-1's address"));
    wait_for(&format!("{url} to answer"), Duration::from_secs(15), || async { fetch(&http, &url).await.ok() }).await;

    c.cut("node-3").expect("cut node-3 off");
    // node-3 goes NotReady, its pod is evicted and replaced on node-1 or node-2.
    let replaced = wait_for("3 ready pods, none on node-3", Duration::from_secs(90), || async {
        let ps: Vec<Value> = pods(&c, "app=web").await.into_iter().filter(is_ready).collect();
        (ps.len() == 3 && ps.iter().all(|p| node_of(p) != "node-3")).then_some(ps)
    })
    .await;
    let ips: BTreeSet<String> = replaced.iter().filter_map(|p| p["status"]["podIP"].as_str().map(str::to_string)).collect();
    wait_for("the endpoints to be the 3 pods off node-3", Duration::from_secs(30), || async {
        (endpoint_ips(&c, "web").await == ips).then_some(())
    })
    .await;
    // The Service answers every request on both remaining machines, from all three pods.
    let names: BTreeSet<String> = replaced.iter().filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string)).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut served = BTreeSet::new();
    for node in ["node-1", "node-2"] {
        let url = format!("http://{}:{port}/", c.node_ip(node).expect("address"));
        for i in 0..30 {
            let body = fetch(&http, &url).await.unwrap_or_else(|e| panic!("request {i} to {url} after the cut failed: {e}"));
            assert!(names.contains(&body), "{body} is one of the pods off node-3: {names:?}");
            served.insert(body);
        }
    }
    assert!(served.len() >= 2, "requests spread over the remaining pods: {served:?}");

    // Back on the network, node-3 is Ready again.
    c.heal("node-3").expect("heal node-3");
    wait_for("node-3 Ready again", Duration::from_secs(60), || async {
        let n = get(&c, "/api/v1/nodes/node-3").await?;
        n["status"]["conditions"].as_array()?.iter().any(|c| c["type"] == "Ready" && c["status"] == "True").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_behind_a_service_loses_no_request() {
    let test = "a_rolling_update_behind_a_service_loses_no_request";
    let Some((c, image)) = cluster(test, "") else { return };
    apply(&c, &deployment("web", &image, 3, "1"));
    apply(&c, &service("web", "NodePort"));
    let before = wait_ready_pods(&c, "app=web", 3, Duration::from_secs(90)).await;
    let old: BTreeSet<String> = before.iter().filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string)).collect();
    let port = node_port(&c, "web").await;
    let http = http_client();
    let urls: Vec<String> = NODES.iter().map(|n| format!("http://{}:{port}/", c.node_ip(n).expect("address"))).collect();
    for url in &urls {
        wait_for(&format!("{url} to answer"), Duration::from_secs(15), || async { fetch(&http, url).await.ok() }).await;
    }

    // A client loops over the three machines' NodePorts for the whole update.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let client = {
        let http = http.clone();
        let urls = urls.clone();
        tokio::spawn(async move {
            let (mut ok, mut failed, mut served) = (0usize, Vec::new(), BTreeSet::new());
            for i in 0usize.. {
                if *stop_rx.borrow_and_update() {
                    break;
                }
                let url = &urls[i % urls.len()];
                match fetch(&http, url).await {
                    Ok(body) => {
                        ok += 1;
                        served.insert(body);
                    }
                    Err(e) => failed.push(format!("{url}: {e}")),
                }
            }
            (ok, failed, served)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    apply(&c, &deployment("web", &image, 3, "2"));
    let after = wait_for("3 ready pods, all new", Duration::from_secs(120), || async {
        let ps = pods(&c, "app=web").await;
        let ready: Vec<Value> = ps.iter().filter(|p| is_ready(p)).cloned().collect();
        let settled = ps.len() == 3
            && ready.len() == 3
            && ready.iter().all(|p| !old.contains(p["metadata"]["name"].as_str().unwrap_or_default()));
        settled.then_some(ready)
    })
    .await;
    // Keep the client going past the last old pod's grace period.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let _ = stop_tx.send(true);
    let (ok, failed, served) = client.await.expect("client task");
    assert!(failed.is_empty(), "{} of {} requests failed during the rolling update: {failed:?}", failed.len(), ok + failed.len());
    assert!(ok >= 50, "the client made too few requests to prove anything: {ok}");
    let new: BTreeSet<String> = after.iter().filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string)).collect();
    assert!(served.iter().any(|s| old.contains(s)), "old pods served during the update: {served:?}");
    assert!(served.iter().any(|s| new.contains(s)), "new pods served during the update: {served:?}");
}
