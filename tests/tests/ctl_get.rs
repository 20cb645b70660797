//! `ctl get` and `ctl describe` against a real apiserver process: the tables of every kind
//! compared with golden files (ages replaced by a fixed token), the other output formats,
//! selectors, `-A`, `--show-labels`, `-w`, error messages and exit codes, and describe with an
//! Event.
//!
//! Regenerate the golden files with `FLOTILLA_BLESS=1 cargo test -p tests --test ctl_get`, then
//! read the diff before checking them in.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};
use tests::Cluster;

const NS: &str = "golden";

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ctl_ok(c: &Cluster, args: &[&str]) -> String {
    let o = c.ctl(args).expect("running ctl");
    assert!(
        o.status.success(),
        "ctl {args:?} failed:\n{}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

async fn send(
    c: &Cluster,
    method: reqwest::Method,
    path: &str,
    content_type: &str,
    body: &Value,
) -> Value {
    let http = c.http().expect("http client");
    let response = http
        .request(method.clone(), c.url(1, path))
        .header("Content-Type", content_type)
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    serde_json::from_str(&text).expect("json answer")
}

async fn create(c: &Cluster, path: &str, body: Value) -> Value {
    send(c, reqwest::Method::POST, path, "application/json", &body).await
}

async fn set_status(c: &Cluster, path: &str, status: Value) {
    send(
        c,
        reqwest::Method::PATCH,
        &format!("{path}/status"),
        "application/merge-patch+json",
        &json!({ "status": status }),
    )
    .await;
}

/// Waits until the namespace `default` exists (made right after start).
async fn ready(c: &Cluster) {
    for _ in 0..100 {
        if c.ctl(&["get", "namespace", "default"])
            .map(|o| o.status.success())
            .unwrap_or(false)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("namespace default never appeared");
}

/// Replaces the cells of time-dependent columns by `<AGE>` and lays the table out again, so the
/// same objects always give the same text. Columns are found from the header: kubectl separates
/// them by at least three spaces, while a header itself has at most one (`NOMINATED NODE`).
fn normalise(output: &str) -> String {
    // several kinds print several tables, separated by a blank line
    output
        .split("\n\n")
        .map(normalise_table)
        .collect::<Vec<_>>()
        .join("\n")
}

fn normalise_table(table: &str) -> String {
    let mut lines = table.lines();
    let Some(header) = lines.next() else {
        return String::new();
    };
    let mut starts = Vec::new();
    let bytes = header.as_bytes();
    for i in 0..bytes.len() {
        if bytes[i] != b' ' && (i == 0 || (i >= 2 && bytes[i - 1] == b' ' && bytes[i - 2] == b' '))
        {
            starts.push(i);
        }
    }
    let cells = |line: &str| -> Vec<String> {
        starts
            .iter()
            .enumerate()
            .map(|(k, &s)| {
                let end = starts
                    .get(k + 1)
                    .copied()
                    .unwrap_or(line.len())
                    .min(line.len());
                line.get(s.min(line.len())..end)
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .collect()
    };
    let names = cells(header);
    let volatile: Vec<bool> = names
        .iter()
        .map(|n| matches!(n.as_str(), "AGE" | "LAST SEEN" | "FIRST SEEN"))
        .collect();
    let mut rows = vec![names.clone()];
    for line in lines {
        let mut row = cells(line);
        for (cell, v) in row.iter_mut().zip(&volatile) {
            if *v {
                *cell = "<AGE>".to_string();
            }
        }
        rows.push(row);
    }
    let mut widths = vec![0; names.len()];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                line.push_str(&" ".repeat(widths[i] + 3 - cell.len()));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Each run of spaces inside a line becomes one space (leading indentation too).
fn squash(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut last_space = false;
        for ch in line.chars() {
            if ch == ' ' {
                if !last_space {
                    out.push(' ');
                }
                last_space = true;
            } else {
                out.push(ch);
                last_space = false;
            }
        }
        out.push('\n');
    }
    out
}

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.txt"))
}

/// Compares with the golden file, or writes it when FLOTILLA_BLESS=1.
fn check_golden(name: &str, actual: &str) {
    let path = golden_path(name);
    if std::env::var("FLOTILLA_BLESS").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().expect("golden dir")).expect("creating tests/golden");
        std::fs::write(&path, actual).expect("writing golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with FLOTILLA_BLESS=1 to create it",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "ctl output differs from {}",
        path.display()
    );
}

/// The fixed objects of the golden tables, in namespace `golden`.
async fn fixtures(c: &Cluster) {
    create(
        c,
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    )
    .await;
    let ns = |p: &str| format!("/api/v1/namespaces/{NS}/{p}");
    let apps = |p: &str| format!("/apis/apps/v1/namespaces/{NS}/{p}");

    let containers = json!([{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]},
                            {"name": "log", "image": "busybox:1.36"}]);
    create(
        c,
        &ns("pods"),
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-running", "labels": {"app": "web", "tier": "fe"}},
        "spec": {"containers": containers, "nodeName": "node-a"}}),
    )
    .await;
    set_status(c, &ns("pods/web-running"), json!({"phase": "Running", "podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}],
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [
            {"name": "web", "ready": true, "restartCount": 0, "image": "nginx:1.27", "imageID": "", "state": {"running": {"startedAt": "2025-01-01T00:00:00Z"}}},
            {"name": "log", "ready": true, "restartCount": 0, "image": "busybox:1.36", "imageID": "", "state": {"running": {"startedAt": "2025-01-01T00:00:00Z"}}}]})).await;
    create(
        c,
        &ns("pods"),
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-crashing", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}], "nodeName": "node-a"}}),
    )
    .await;
    set_status(c, &ns("pods/web-crashing"), json!({"phase": "Running",
        "containerStatuses": [{"name": "web", "ready": false, "restartCount": 0, "image": "nginx:1.27", "imageID": "",
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]})).await;
    create(c, &ns("pods"), json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "job-done"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "job", "image": "busybox:1.36"}]}})).await;
    set_status(c, &ns("pods/job-done"), json!({"phase": "Succeeded",
        "containerStatuses": [{"name": "job", "ready": false, "restartCount": 0, "image": "busybox:1.36", "imageID": "",
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]})).await;
    create(c, &ns("pods"), json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "pending"}, "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}})).await;

    let template =
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}});
    create(c, &apps("deployments"), json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template}})).await;
    set_status(
        c,
        &apps("deployments/web"),
        json!({"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}),
    )
    .await;
    create(c, &apps("replicasets"), json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-5d4f8", "labels": {"app": "web"}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template}})).await;
    set_status(
        c,
        &apps("replicasets/web-5d4f8"),
        json!({"replicas": 3, "readyReplicas": 2}),
    )
    .await;

    create(
        c,
        &ns("services"),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.80", "selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": 80, "nodePort": 30080}]}}),
    )
    .await;
    create(c, &ns("services"), json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns"},
        "spec": {"clusterIP": "10.96.0.53", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}]}})).await;

    create(
        c,
        "/api/v1/nodes",
        json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-a", "labels": {"node-role.kubernetes.io/control-plane": ""}}}),
    )
    .await;
    set_status(c, "/api/v1/nodes/node-a", json!({"conditions": [{"type": "Ready", "status": "True"}],
        "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
        "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0",
                     "containerRuntimeVersion": "flotilla://0.1.0", "machineID": "", "systemUUID": "", "bootID": "",
                     "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"}})).await;
    create(
        c,
        "/api/v1/nodes",
        json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-b"}, "spec": {"unschedulable": true}}),
    )
    .await;

    create(
        c,
        &ns("configmaps"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
        "data": {"a": "1", "b": "2"}}),
    )
    .await;
    create(
        c,
        &ns("secrets"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token"},
        "type": "Opaque", "data": {"token": "c2VjcmV0"}}),
    )
    .await;
    create(c, &ns("endpoints"), json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"},
        "subsets": [{"addresses": [{"ip": "10.1.0.5"}, {"ip": "10.1.0.6"}], "ports": [{"name": "http", "port": 80}]}]})).await;
    create(c, &ns("events"), json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web-running.1"},
        "involvedObject": {"kind": "Pod", "name": "web-running", "namespace": NS},
        "reason": "Scheduled", "message": "Successfully assigned golden/web-running to node-a", "type": "Normal",
        "source": {"component": "default-scheduler"}, "count": 1,
        "firstTimestamp": "2025-01-01T00:00:00Z", "lastTimestamp": "2025-01-01T00:00:00Z"})).await;
    create(c, &ns("events"), json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web-crashing.1"},
        "involvedObject": {"kind": "Pod", "name": "web-crashing", "namespace": NS, "fieldPath": "spec.containers{web}"},
        "reason": "BackOff", "message": "Back-off restarting failed container web", "type": "Warning",
        "source": {"component": "node-agent", "host": "node-a"}, "count": 5,
        "firstTimestamp": "2025-01-01T00:00:00Z", "lastTimestamp": "2025-01-01T00:05:00Z"})).await;
    create(c, &format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"), json!({"apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease", "metadata": {"name": "controllers"}, "spec": {"holderIdentity": "controllers-1", "leaseDurationSeconds": 15}})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_match_goldens_and_formats_work() {
    let c = Cluster::up(1).expect("cluster up");
    ready(&c).await;
    fixtures(&c).await;

    for (name, args) in [
        ("pods", &["get", "pods"][..]),
        ("pods-wide", &["get", "po", "-o", "wide"]),
        ("deployments", &["get", "deploy"]),
        (
            "deployments-wide",
            &["get", "deployments.apps", "-o", "wide"],
        ),
        ("replicasets", &["get", "rs"]),
        ("replicasets-wide", &["get", "rs", "-o", "wide"]),
        ("services", &["get", "svc"]),
        ("services-wide", &["get", "services", "-o", "wide"]),
        ("nodes", &["get", "no"]),
        ("nodes-wide", &["get", "nodes", "-o", "wide"]),
        ("namespaces", &["get", "ns"]),
        ("configmaps", &["get", "cm"]),
        ("secrets", &["get", "secrets"]),
        ("endpoints", &["get", "ep"]),
        ("events", &["get", "ev"]),
        ("events-wide", &["get", "events", "-o", "wide"]),
        ("leases", &["get", "leases"]),
        (
            "show-labels",
            &["get", "pods", "--show-labels", "-l", "app=web"],
        ),
        ("several-kinds", &["get", "deploy,svc"]),
    ] {
        let mut full = vec!["-n", NS];
        full.extend(args);
        check_golden(name, &normalise(&ctl_ok(&c, &full)));
    }

    // -o name, json, yaml, jsonpath, custom-columns
    assert_eq!(
        ctl_ok(&c, &["-n", NS, "get", "pods", "-o", "name"]),
        "pod/job-done\npod/pending\npod/web-crashing\npod/web-running\n"
    );
    assert_eq!(
        ctl_ok(&c, &["-n", NS, "get", "deploy/web", "-o", "name"]),
        "deployment.apps/web\n"
    );
    let list: Value =
        serde_json::from_str(&ctl_ok(&c, &["-n", NS, "get", "pods", "-o", "json"])).expect("json");
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(4));
    assert_eq!(list["items"][0]["kind"], "Pod");
    let one: Value = serde_json::from_str(&ctl_ok(
        &c,
        &["-n", NS, "get", "pod", "pending", "-o", "json"],
    ))
    .expect("json");
    assert_eq!(one["kind"], "Pod");
    assert_eq!(one["metadata"]["name"], "pending");
    let yaml: serde_yaml::Value = serde_yaml::from_str(&ctl_ok(
        &c,
        &["-n", NS, "get", "deploy", "web", "-o", "yaml"],
    ))
    .expect("yaml");
    assert_eq!(yaml["spec"]["replicas"], serde_yaml::Value::from(3));
    let yaml_list: serde_yaml::Value =
        serde_yaml::from_str(&ctl_ok(&c, &["-n", NS, "get", "cm,secrets", "-o", "yaml"]))
            .expect("yaml");
    assert_eq!(yaml_list["kind"], serde_yaml::Value::from("List"));
    assert_eq!(yaml_list["items"].as_sequence().map(Vec::len), Some(2));
    assert_eq!(
        ctl_ok(
            &c,
            &[
                "-n",
                NS,
                "get",
                "pods",
                "-o",
                r#"jsonpath={range .items[*]}{.metadata.name}{"\t"}{.status.phase}{"\n"}{end}"#
            ]
        ),
        "job-done\tSucceeded\npending\tPending\nweb-crashing\tRunning\nweb-running\tRunning\n"
    );
    assert_eq!(
        ctl_ok(
            &c,
            &[
                "-n",
                NS,
                "get",
                "pods",
                "-o",
                "jsonpath={.items[*].metadata.name}"
            ]
        ),
        "job-done pending web-crashing web-running"
    );
    assert_eq!(
        ctl_ok(
            &c,
            &[
                "-n",
                NS,
                "get",
                "pod",
                "web-running",
                "-o",
                "jsonpath={.spec.containers[*].image}"
            ]
        ),
        "nginx:1.27 busybox:1.36"
    );
    assert_eq!(
        ctl_ok(&c, &["-n", NS, "get", "pods", "-l", "app=web", "-o", "custom-columns=NAME:.metadata.name,IMAGES:.spec.containers[*].image,NODE:.spec.nodeName"]),
        "NAME           IMAGES                    NODE\nweb-crashing   nginx:1.27                node-a\nweb-running    nginx:1.27,busybox:1.36   node-a\n"
    );

    // selectors, -A, --no-headers
    assert_eq!(
        ctl_ok(
            &c,
            &[
                "-n",
                NS,
                "get",
                "pods",
                "-l",
                "app=web,tier=fe",
                "-o",
                "name"
            ]
        ),
        "pod/web-running\n"
    );
    assert_eq!(
        ctl_ok(
            &c,
            &[
                "-n",
                NS,
                "get",
                "pods",
                "--field-selector",
                "metadata.name=pending",
                "-o",
                "name"
            ]
        ),
        "pod/pending\n"
    );
    assert_eq!(
        ctl_ok(
            &c,
            &[
                "-n",
                NS,
                "get",
                "pods",
                "--field-selector",
                "status.phase=Running",
                "-o",
                "name"
            ]
        ),
        "pod/web-crashing\npod/web-running\n"
    );
    create(
        &c,
        "/api/v1/namespaces/default/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}}),
    )
    .await;
    let all = normalise(&ctl_ok(&c, &["get", "cm", "-A"]));
    assert_eq!(all, "NAMESPACE   NAME       DATA   AGE\ndefault     other      0      <AGE>\ngolden      settings   2      <AGE>\n");
    let bare = ctl_ok(&c, &["-n", NS, "get", "cm", "--no-headers"]);
    assert_eq!(
        bare.split_whitespace().take(2).collect::<Vec<_>>(),
        ["settings", "2"],
        "{bare}"
    );
    assert_eq!(bare.lines().count(), 1);

    // raw
    let raw: Value =
        serde_json::from_str(&ctl_ok(&c, &["get", "--raw", "/api/v1/namespaces/golden"]))
            .expect("raw json");
    assert_eq!(raw["metadata"]["name"], NS);

    // messages and exit codes
    let o = c.ctl(&["-n", "empty", "get", "pods"]).expect("ctl");
    assert!(o.status.success());
    assert_eq!(
        (stdout(&o).as_str(), stderr(&o).as_str()),
        ("", "No resources found in empty namespace.\n")
    );
    let o = c.ctl(&["-n", NS, "get", "pods", "nope"]).expect("ctl");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "Error from server (NotFound): pods \"nope\" not found\n"
    );
    let o = c
        .ctl(&["-n", NS, "get", "pods", "pending", "nope"])
        .expect("ctl");
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("pending"), "{}", stdout(&o));
    assert_eq!(
        stderr(&o),
        "Error from server (NotFound): pods \"nope\" not found\n"
    );
    let o = c.ctl(&["get", "widgets"]).expect("ctl");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "error: the server doesn't have a resource type \"widgets\"\n"
    );
    let o = c.ctl(&["get", "pods", "-o", "xml"]).expect("ctl");
    assert_eq!(o.status.code(), Some(1));

    // describe, with the Event about the pod and not the one about another pod; runs of spaces
    // are squashed so that the checks do not hang on column widths
    let text = squash(&ctl_ok(&c, &["-n", NS, "describe", "pod", "web-running"]));
    for expected in ["Name: web-running\n", "Namespace: golden\n", "Node: node-a/\n",
        "Labels: app=web\n tier=fe\n", "Status: Running\n", "IP: 10.1.0.5\n", "Containers:\n web:\n",
        "\n Image: nginx:1.27\n Image ID: \n Port: 80/TCP\n", "\n State: Running\n Started: ", "\n Ready: True\n Restart Count: 0\n",
        "Conditions:\n Type Status\n Ready True \n",
        "Events:\n Type Reason Age From Message\n ---- ------ ---- ---- -------\n Normal Scheduled ",
        " default-scheduler Successfully assigned golden/web-running to node-a\n"] {
        assert!(text.contains(expected), "describe lacks {expected:?}:\n{text}");
    }
    assert!(!text.contains("BackOff"), "{text}");
    let text = squash(&ctl_ok(&c, &["-n", NS, "describe", "pods/web-crashing"]));
    assert!(
        text.contains("\n Warning BackOff ") && text.contains(" (x5 over "),
        "{text}"
    );
    let text = squash(&ctl_ok(&c, &["-n", NS, "describe", "deployment/web"]));
    for expected in [
        "Replicas: 3 desired | 3 updated | 3 total | 2 available | 0 unavailable\n",
        "Selector: app=web\n",
        "Pod Template:\n Labels: app=web\n Containers:\n web:\n Image: nginx:1.27\n",
        "\nEvents: <none>\n",
    ] {
        assert!(
            text.contains(expected),
            "describe lacks {expected:?}:\n{text}"
        );
    }
    let text = squash(&ctl_ok(&c, &["-n", NS, "describe", "svc", "web"]));
    for expected in ["Type: NodePort\n", "IP: 10.96.0.80\n", "Port: http 80/TCP\nTargetPort: 80/TCP\nNodePort: http 30080/TCP\nEndpoints: 10.1.0.5:80,10.1.0.6:80\n"] {
        assert!(text.contains(expected), "describe lacks {expected:?}:\n{text}");
    }
    let text = squash(&ctl_ok(&c, &["describe", "node", "node-a"]));
    for expected in [
        "Roles: control-plane\n",
        "Unschedulable: false\n",
        "\n InternalIP: 10.0.0.1\n",
        "\n Kubelet Version: v1.33.0\n",
    ] {
        assert!(
            text.contains(expected),
            "describe lacks {expected:?}:\n{text}"
        );
    }
    let o = c.ctl(&["-n", NS, "describe", "pod", "nope"]).expect("ctl");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "Error from server (NotFound): pods \"nope\" not found\n"
    );
}

/// Kills the watching child even when the test fails.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_a_row_per_change() {
    let c = Cluster::up(1).expect("cluster up");
    ready(&c).await;
    create(&c, "/api/v1/namespaces/default/pods", json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "first"}, "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}})).await;

    let mut child = Child(
        Command::new(tests::binary("ctl").expect("ctl binary"))
            .arg("--kubeconfig")
            .arg(c.kubeconfig())
            .args(["get", "pods", "-w"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting ctl get -w"),
    );
    let out = child.0.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| {
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no line with {what}"))
    };
    let header = next("the header");
    assert!(
        header.starts_with("NAME    READY   STATUS    RESTARTS   AGE"),
        "{header}"
    );
    let words = |line: &str| {
        line.split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    // each change is laid out on its own, as kubectl's watch prints it
    assert_eq!(
        words(&next("the first pod"))[..4],
        ["first", "0/1", "Pending", "0"]
    );

    create(&c, "/api/v1/namespaces/default/pods", json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "second"}, "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}})).await;
    let added = next("the added pod");
    assert_eq!(
        words(&added)[..4],
        ["second", "0/1", "Pending", "0"],
        "{added}"
    );
    set_status(&c, "/api/v1/namespaces/default/pods/first", json!({"phase": "Running",
        "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "image": "busybox:1.36", "imageID": "",
            "state": {"running": {"startedAt": "2025-01-01T00:00:00Z"}}}]})).await;
    let changed = next("the changed pod");
    assert_eq!(
        words(&changed)[..4],
        ["first", "1/1", "Running", "0"],
        "{changed}"
    );

    // --watch-only prints no table first, only changes
    let mut only = Child(
        Command::new(tests::binary("ctl").expect("ctl binary"))
            .arg("--kubeconfig")
            .arg(c.kubeconfig())
            .args(["get", "pods", "--watch-only", "-o", "name"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting ctl get --watch-only"),
    );
    let out = only.0.stdout.take().expect("stdout");
    let (tx2, rx2) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx2.send(line).is_err() {
                break;
            }
        }
    });
    // Give the watch a moment to start, then change something it must report.
    tokio::time::sleep(Duration::from_millis(500)).await;
    create(&c, "/api/v1/namespaces/default/pods", json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "third"}, "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}})).await;
    let line = rx2
        .recv_timeout(Duration::from_secs(10))
        .expect("a line from --watch-only");
    assert_eq!(line, "pod/third");
}
