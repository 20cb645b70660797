//! Orchestration end to end: three node agents on this machine (each with its own data
//! directory and its own "machine", a network namespace), the scheduler and the controllers, all
//! real processes started by `deploy/local-cluster up --nodes 3 --registry --machines`, and a
//! busybox image pushed to that registry.
//!
//! The scenarios are the ones issue 6 names: a Deployment spread 2/2/2, scaled, rolled to a new
//! image without dropping below `replicas - maxUnavailable` ready pods, stalled by a failing image
//! and recovered with `rollout undo`, deleted with everything it owned; and a node that dies (its
//! pods are replaced elsewhere) and an agent that restarts (its containers keep their PIDs).
//!
//! They need root (namespaces, mounts) and busybox-static; elsewhere they print a notice and pass.
//! The cluster is torn down by `Cluster`'s Drop, also when an assertion fails.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Value};
use tests::e2e::{apply, ctl_ok, get, is_ready, pods, three_machines as cluster, wait_for};
use tests::Cluster;

fn urlencode(s: &str) -> String {
    s.replace('=', "%3D").replace(',', "%2C")
}

fn is_running(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null() && pod["status"]["phase"] == "Running"
}

fn per_node(pods: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for p in pods.iter().filter(|p| is_running(p)) {
        *m.entry(p["spec"]["nodeName"].as_str().unwrap_or("").to_string()).or_insert(0) += 1;
    }
    m
}

const CLUSTER_NODES: [&str; 3] = ["node-1", "node-2", "node-3"];

fn deployment(name: &str, image: &str, replicas: u32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": 15,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{
                        "name": "main", "image": image,
                        "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}
                    }]
                }
            }
        }
    })
}

async fn deployment_status(c: &Cluster, name: &str) -> Value {
    get(c, &format!("/apis/apps/v1/namespaces/default/deployments/{name}")).await.unwrap_or(Value::Null)
}

async fn wait_rolled_out(c: &Cluster, name: &str, replicas: u64, timeout: Duration) {
    wait_for(&format!("deployment {name} to have {replicas} updated, available replicas"), timeout, || async {
        let d = deployment_status(c, name).await;
        let s = &d["status"];
        let done = s["observedGeneration"] == d["metadata"]["generation"]
            && s["updatedReplicas"].as_u64().unwrap_or(0) == replicas
            && s["availableReplicas"].as_u64().unwrap_or(0) == replicas
            && s["replicas"].as_u64().unwrap_or(0) == replicas;
        done.then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_spreads_scales_rolls_stalls_undoes_and_deletes() {
    let test = "deployment_spreads_scales_rolls_stalls_undoes_and_deletes";
    let Some((c, image)) = cluster(test, "") else { return };
    let selector = "app=web";

    // A pod that fits nowhere, left Pending for the whole test (checked at the end).
    apply(
        &c,
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "too-big", "namespace": "default"},
                "spec": {"containers": [{"name": "main", "image": image, "resources": {"requests": {"memory": "1000Gi"}}}]}}),
    );

    // 6 replicas, all Running, spread 2/2/2.
    apply(&c, &deployment("web", &image, 6));
    wait_rolled_out(&c, "web", 6, Duration::from_secs(90)).await;
    let spread = wait_for("6 running pods", Duration::from_secs(30), || async {
        let ps = pods(&c, selector).await;
        let m = per_node(&ps);
        (m.values().sum::<usize>() == 6).then_some(m)
    })
    .await;
    assert_eq!(spread.values().copied().collect::<Vec<_>>(), vec![2, 2, 2], "spread over the nodes: {spread:?}");
    assert_eq!(spread.keys().map(String::as_str).collect::<Vec<_>>(), CLUSTER_NODES.to_vec());

    // `kubectl exec -it` through the apiserver to the pod's agent: the command gets a terminal
    // of kubectl's size (`script` gives kubectl a terminal of 33 rows and 111 columns).
    if let (Some(kubectl), true) = (tests::kubectl(), std::path::Path::new("/usr/bin/script").exists()) {
        let ps = pods(&c, selector).await;
        let pod = ps[0]["metadata"]["name"].as_str().expect("pod name");
        let line = format!(
            "stty rows 33 cols 111; {} --kubeconfig {} exec -it {pod} -- busybox stty size",
            kubectl.display(),
            c.kubeconfig().display()
        );
        let out = std::process::Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env("HOME", c.dir())
            .env("KUBECACHEDIR", c.dir().join("kubecache"))
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run script");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("33 111"), "kubectl exec -it: {:?}\n{text}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    }

    // Scale to 9, then to 2.
    ctl_ok(&c, &["scale", "deployment/web", "--replicas", "9"]);
    wait_rolled_out(&c, "web", 9, Duration::from_secs(60)).await;
    let m = per_node(&pods(&c, selector).await);
    assert_eq!(m.values().copied().collect::<Vec<_>>(), vec![3, 3, 3], "9 pods spread: {m:?}");
    ctl_ok(&c, &["scale", "deployment/web", "--replicas", "2"]);
    wait_for("2 pods left", Duration::from_secs(60), || async {
        let ps = pods(&c, selector).await;
        (ps.len() == 2 && ps.iter().all(is_ready)).then_some(())
    })
    .await;
    ctl_ok(&c, &["scale", "deployment/web", "--replicas", "6"]);
    wait_rolled_out(&c, "web", 6, Duration::from_secs(60)).await;

    // A rolling update to a new image tag; ready pods never drop below replicas - maxUnavailable.
    let image2 = c.push_busybox("busybox:2", &["sleep", "3600"]).expect("push busybox:2").expect("busybox");
    let sampler = {
        let http = c.http().expect("client");
        let url = c.url(1, &format!("/api/v1/namespaces/default/pods?labelSelector={}", urlencode(selector)));
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut min_ready = usize::MAX;
            let mut samples = 0;
            loop {
                if let Ok(resp) = http.get(&url).send().await {
                    if let Ok(list) = resp.json::<Value>().await {
                        let ready = list["items"].as_array().map(|ps| ps.iter().filter(|p| is_ready(p)).count()).unwrap_or(0);
                        min_ready = min_ready.min(ready);
                        samples += 1;
                    }
                }
                tokio::select! {
                    _ = stop_rx.changed() => break,
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
            (min_ready, samples)
        });
        (stop_tx, task)
    };
    ctl_ok(&c, &["set", "image", "deployment/web", &format!("main={image2}")]);
    wait_rolled_out(&c, "web", 6, Duration::from_secs(120)).await;
    let (stop, task) = sampler;
    let _ = stop.send(true);
    let (min_ready, samples) = task.await.expect("sampler");
    assert!(samples >= 5, "too few samples during the rollout: {samples}");
    assert!(min_ready >= 5, "ready pods dropped to {min_ready} during the rolling update (replicas 6, maxUnavailable 1)");
    // The old pods go once their grace period has passed.
    wait_for(&format!("only pods running {image2}"), Duration::from_secs(30), || async {
        let ps = pods(&c, selector).await;
        (ps.len() == 6 && ps.iter().all(|p| p["spec"]["containers"][0]["image"] == image2.as_str())).then_some(())
    })
    .await;

    // An image whose command fails: the rollout stalls, old pods keep serving, Progressing=False.
    let bad = c.push_busybox("busybox:bad", &["false"]).expect("push busybox:bad").expect("busybox");
    ctl_ok(&c, &["set", "image", "deployment/web", &format!("main={bad}")]);
    let reason = wait_for("Progressing=False (ProgressDeadlineExceeded)", Duration::from_secs(90), || async {
        let d = deployment_status(&c, "web").await;
        d["status"]["conditions"].as_array().and_then(|cs| {
            cs.iter()
                .find(|c| c["type"] == "Progressing" && c["status"] == "False")
                .map(|c| c["reason"].as_str().unwrap_or("").to_string())
        })
    })
    .await;
    assert_eq!(reason, "ProgressDeadlineExceeded");
    let ps = pods(&c, selector).await;
    let ready_old = ps.iter().filter(|p| is_ready(p) && p["spec"]["containers"][0]["image"] == image2.as_str()).count();
    assert!(ready_old >= 5, "old pods keep serving while the rollout is stalled: {ready_old} ready");
    let crashing = ps.iter().any(|p| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            || p["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 1
    });
    assert!(crashing, "a new pod shows its failing container: {ps:#?}");

    // rollout undo goes back to the working template.
    ctl_ok(&c, &["rollout", "undo", "deployment/web"]);
    wait_rolled_out(&c, "web", 6, Duration::from_secs(120)).await;
    let ps = wait_for("only pods of the restored template", Duration::from_secs(60), || async {
        let ps = pods(&c, selector).await;
        (ps.len() == 6 && ps.iter().all(|p| p["spec"]["containers"][0]["image"] == image2.as_str())).then_some(ps)
    })
    .await;
    assert!(ps.iter().all(is_ready));

    // Deleting the Deployment removes its ReplicaSets, pods and containers.
    ctl_ok(&c, &["delete", "deployment", "web"]);
    wait_for("the deployment's ReplicaSets and pods to be gone", Duration::from_secs(60), || async {
        let rs = get(&c, "/apis/apps/v1/namespaces/default/replicasets").await?;
        let left_rs = rs["items"].as_array().map(Vec::len).unwrap_or(1);
        let left_pods = pods(&c, selector).await.len();
        (left_rs == 0 && left_pods == 0).then_some(())
    })
    .await;
    wait_for("the containers on every node to be removed", Duration::from_secs(30), || async {
        let all_gone = CLUSTER_NODES.iter().all(|n| node_containers(&c, n).is_empty());
        all_gone.then_some(())
    })
    .await;

    // The pod that fits nowhere stayed Pending with the scheduler's reason, and its repeated
    // FailedScheduling is counted on one Event per message, as `kubectl describe` shows it.
    let big = get(&c, "/api/v1/namespaces/default/pods/too-big").await.expect("the too-big pod");
    assert_eq!(big["status"]["phase"], "Pending", "{big}");
    let scheduled = big["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled").cloned()).expect("PodScheduled");
    assert_eq!((&scheduled["status"], &scheduled["reason"]), (&json!("False"), &json!("Unschedulable")), "{scheduled}");
    assert_eq!(scheduled["message"], "0/3 nodes are available: 3 Insufficient memory.", "{scheduled}");
    let failed = wait_for("the FailedScheduling Event counted at least twice", Duration::from_secs(30), || async {
        let events = get(&c, "/api/v1/namespaces/default/events").await?;
        let failed: Vec<Value> = events["items"]
            .as_array()?
            .iter()
            .filter(|e| e["involvedObject"]["name"] == "too-big" && e["reason"] == "FailedScheduling")
            .cloned()
            .collect();
        failed.iter().any(|e| e["count"].as_i64().unwrap_or(0) >= 2).then_some(failed)
    })
    .await;
    let messages: BTreeSet<&str> = failed.iter().filter_map(|e| e["message"].as_str()).collect();
    assert_eq!(messages.len(), failed.len(), "one Event per message, repeats counted on it: {failed:#?}");
    if tests::kubectl().is_some() {
        let o = c.kubectl(&["describe", "pod", "too-big"], None).expect("kubectl").expect("kubectl present");
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.lines().any(|l| l.contains("FailedScheduling") && l.contains("(x")), "kubectl describe shows the count:\n{text}");
    }
    ctl_ok(&c, &["delete", "pod", "too-big"]);
}

/// (id, pid) of the running containers a node's runtime holds.
fn node_containers(c: &Cluster, node: &str) -> Vec<(String, i64)> {
    let root = c.node_dir(node).join("runtime");
    let ctl = tests::binary("ctl").expect("ctl");
    let out = std::process::Command::new(&ctl).arg("--root").arg(&root).args(["ps", "-q", "--no-trunc"]).output().expect("ctl ps");
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).filter(|l| !l.is_empty()).collect();
    ids.into_iter()
        .map(|id| {
            let out = std::process::Command::new(&ctl).arg("--root").arg(&root).args(["inspect", &id]).output().expect("ctl inspect");
            let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            let pid = v[0]["State"]["Pid"].as_i64().unwrap_or(0);
            (id, pid)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_restart_keeps_containers_and_a_dead_node_is_replaced() {
    let test = "agent_restart_keeps_containers_and_a_dead_node_is_replaced";
    // The agents renew their Lease every 10 s, so the grace period must be longer than that.
    let flags = "--node-monitor-grace-period 15s --pod-eviction-timeout 2s";
    let Some((c, image)) = cluster(test, flags) else { return };
    let selector = "app=svc";
    apply(&c, &deployment("svc", &image, 6));
    wait_rolled_out(&c, "svc", 6, Duration::from_secs(90)).await;

    // Restart node-1's agent: its containers keep running with the same PIDs, and no pod restarts.
    let before = node_containers(&c, "node-1");
    assert_eq!(before.len(), 2, "node-1 runs two containers: {before:?}");
    assert!(before.iter().all(|(_, pid)| *pid > 0));
    c.stop_node("node-1", false).expect("stop node-1's agent");
    c.start_node("node-1").expect("start node-1's agent");
    // Give the agent time to resync (it adopts, it must not recreate).
    tokio::time::sleep(Duration::from_secs(8)).await;
    let after = node_containers(&c, "node-1");
    assert_eq!(before, after, "containers (ids and PIDs) after the agent restarted");
    let ps = pods(&c, selector).await;
    assert!(
        ps.iter().all(|p| p["status"]["containerStatuses"][0]["restartCount"] == 0),
        "no container was restarted: {ps:#?}"
    );

    // Kill node-2's agent and its containers: its pods are replaced on node-1 and node-3.
    c.stop_node("node-2", true).expect("kill node-2");
    let m = wait_for("6 running pods on node-1 and node-3", Duration::from_secs(90), || async {
        let ps = pods(&c, selector).await;
        let m = per_node(&ps.into_iter().filter(|p| p["spec"]["nodeName"] != "node-2").collect::<Vec<_>>());
        let ready = pods(&c, selector).await.iter().filter(|p| is_ready(p) && p["spec"]["nodeName"] != "node-2").count();
        (m.values().sum::<usize>() == 6 && ready == 6).then_some(m)
    })
    .await;
    assert_eq!(m.get("node-1").copied().unwrap_or(0) + m.get("node-3").copied().unwrap_or(0), 6, "{m:?}");
    let node2 = get(&c, "/api/v1/nodes/node-2").await.expect("node-2");
    let ready = node2["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == "Ready").cloned());
    assert_ne!(ready.map(|r| r["status"].clone()), Some(json!("True")), "node-2 is no longer Ready");

    ctl_ok(&c, &["delete", "deployment", "svc"]);
}
