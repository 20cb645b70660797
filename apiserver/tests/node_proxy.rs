//! Joining a node and relaying `pods/log` and `pods/exec` to its agent, end to end: a real
//! one-replica apiserver (in this process, on 127.0.0.1:0) and a fake node agent that serves the
//! agent's two endpoints over TLS with the certificate the join handed out, requiring a client
//! certificate signed by the cluster CA as the real agent does. Where kubectl is installed,
//! `kubectl logs` and `kubectl exec` are the judges; the same paths are also checked with plain
//! HTTP so the test means something without it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use apiserver::auth::Role;
use apiserver::tls;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path as UrlPath, Query};
use axum::routing::get;
use futures::{SinkExt as _, StreamExt as _};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};

mod common;

use common::Replica1;

/// A token added to tokens.csv works within a couple of seconds (the file is polled).
async fn wait_token_works(r: &Replica1, token: &str) {
    let c = r.client(Some(token));
    for _ in 0..50 {
        if let Ok(resp) = c.post(r.url("/flotilla/v1/join")).body("{}").send().await {
            if resp.status() != 401 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the new token was never accepted");
}

/// The fake agent: logs answer with what was asked; exec runs `echo ARGS` and `exit N`.
fn fake_agent_router() -> axum::Router {
    axum::Router::new()
        .route(
            "/containerLogs/{ns}/{pod}/{container}",
            get(|UrlPath((ns, pod, container)): UrlPath<(String, String, String)>, Query(q): Query<BTreeMap<String, String>>| async move {
                let head = format!("log of {ns}/{pod}/{container} tailLines={}\n", q.get("tailLines").map(String::as_str).unwrap_or("-"));
                let follow = q.get("follow").is_some_and(|f| f == "true");
                // while following, lines come one by one, as a running container writes them
                let lines: Vec<String> = if follow { (1..=3).map(|i| format!("line {i}\n")).collect() } else { vec![] };
                let stream = futures::stream::iter(std::iter::once(head).chain(lines)).then(|l| async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, std::io::Error>(bytes::Bytes::from(l))
                });
                axum::body::Body::from_stream(stream)
            }),
        )
        .route(
            "/exec/{ns}/{pod}/{container}",
            get(|ws: WebSocketUpgrade, Query(q): Query<Vec<(String, String)>>| async move {
                let command: Vec<String> = q.into_iter().filter(|(k, _)| k == "command").map(|(_, v)| v).collect();
                ws.protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"]).on_upgrade(move |socket| fake_exec(socket, command))
            }),
        )
}

async fn fake_exec(mut socket: WebSocket, command: Vec<String>) {
    let frame = |channel: u8, data: &[u8]| {
        let mut v = vec![channel];
        v.extend_from_slice(data);
        Message::Binary(v.into())
    };
    let status = match command.first().map(String::as_str) {
        Some("echo") => {
            let _ = socket.send(frame(1, format!("{}\n", command[1..].join(" ")).as_bytes())).await;
            json!({"metadata": {}, "status": "Success"})
        }
        // copies stdin (channel 0) to stdout until kubectl closes stdin ([255, 0] in v5)
        Some("cat") => {
            while let Some(Ok(m)) = socket.recv().await {
                let Message::Binary(data) = m else { continue };
                match data.first() {
                    Some(0) => {
                        let _ = socket.send(frame(1, &data[1..])).await;
                    }
                    Some(255) if data.get(1) == Some(&0) => break,
                    _ => {}
                }
            }
            json!({"metadata": {}, "status": "Success"})
        }
        Some("exit") => {
            let code = command.get(1).cloned().unwrap_or_else(|| "1".into());
            let _ = socket.send(frame(2, b"failing on purpose\n")).await;
            json!({"metadata": {}, "status": "Failure", "message": format!("command terminated with non-zero exit code: {code}"),
                   "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": code}]}})
        }
        _ => json!({"metadata": {}, "status": "Failure", "message": "unknown command"}),
    };
    let _ = socket.send(frame(3, status.to_string().as_bytes())).await;
    let _ = socket.close().await;
}

/// Serves the fake agent with the join's certificate, requiring a client certificate signed
/// by the cluster CA.
async fn start_fake_agent(ca_pem: &str, cert_pem: &str, key_pem: &str) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().unwrap();
    let certs: Vec<_> = CertificateDer::pem_slice_iter(cert_pem.as_bytes()).map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(tls::serve(listener, Some(Arc::new(config)), fake_agent_router(), async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

async fn send_json(c: &reqwest::Client, method: reqwest::Method, url: String, body: Value, content_type: &str) -> (u16, Value) {
    let resp = c.request(method, url).header("content-type", content_type).body(body.to_string()).send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

fn kubectl_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("kubectl")).find(|p| p.is_file())
}

fn kubectl(kubeconfig: &Path, home: &Path, args: &[&str]) -> Option<std::process::Output> {
    let bin = kubectl_path()?;
    Some(
        std::process::Command::new(bin)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .env("HOME", home)
            .env("KUBECACHEDIR", home.join("kubecache"))
            .output()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn join_then_logs_and_exec_reach_the_agent() {
    let r = Replica1::start().await;
    let admin = r.client(Some(&r.admin));

    // join with a bootstrap token: the answer carries a node token and a serving certificate
    let bootstrap = r.token("bootstrap", Role::Bootstrap);
    wait_token_works(&r, &bootstrap).await;
    let b = r.client(Some(&bootstrap));
    let (code, joined) = send_json(&b, reqwest::Method::POST, r.url("/flotilla/v1/join"), json!({"nodeName": "n1", "addresses": ["127.0.0.1"]}), "application/json").await;
    assert_eq!(code, 200, "{joined}");
    assert_eq!(joined["user"], "system:node:n1");
    let node_token = joined["token"].as_str().unwrap().to_string();
    // the bootstrap token reaches nothing else
    let resp = b.get(r.url("/api/v1/nodes")).send().await.unwrap();
    assert_eq!(resp.status(), 403);

    // the node registers itself with the new token, pointing at the fake agent
    let (agent_addr, _agent_stop) =
        start_fake_agent(joined["caCert"].as_str().unwrap(), joined["servingCert"].as_str().unwrap(), joined["servingKey"].as_str().unwrap()).await;
    let node = r.client(Some(&node_token));
    let (code, body) = send_json(&node, reqwest::Method::POST, r.url("/api/v1/nodes"), json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}), "application/json").await;
    assert_eq!(code, 201, "{body}");
    let status = json!({"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "n1"}],
                                   "daemonEndpoints": {"kubeletEndpoint": {"Port": agent_addr.port()}}}});
    let (code, body) = send_json(&node, reqwest::Method::PATCH, r.url("/api/v1/nodes/n1/status"), status, "application/merge-patch+json").await;
    assert_eq!(code, 200, "{body}");

    // the agent really insists on a client certificate
    let no_cert = reqwest::Client::builder().use_preconfigured_tls(tls::api_client_config(&r.pki().ca_cert()).unwrap()).build().unwrap();
    assert!(no_cert.get(format!("https://{agent_addr}/containerLogs/default/web/app")).send().await.is_err());

    let pod = |name: &str, containers: &[&str]| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
               "spec": {"nodeName": "n1", "containers": containers.iter().map(|c| json!({"name": c, "image": "busybox"})).collect::<Vec<_>>()}})
    };
    for p in [pod("web", &["app"]), pod("two", &["a", "b"])] {
        let (code, body) = send_json(&admin, reqwest::Method::POST, r.url("/api/v1/namespaces/default/pods"), p, "application/json").await;
        assert_eq!(code, 201, "{body}");
    }
    let (code, body) = send_json(&admin, reqwest::Method::POST, r.url("/api/v1/namespaces/default/pods"), json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pending"}, "spec": {"containers": [{"name": "a", "image": "busybox"}]}}), "application/json").await;
    assert_eq!(code, 201, "{body}");

    // logs over plain HTTP: default container, query passed on, streamed while following
    let text = admin.get(r.url("/api/v1/namespaces/default/pods/web/log?tailLines=5")).send().await.unwrap().text().await.unwrap();
    assert_eq!(text, "log of default/web/app tailLines=5\n");
    let text = admin.get(r.url("/api/v1/namespaces/default/pods/web/log?follow=true")).send().await.unwrap().text().await.unwrap();
    assert_eq!(text, "log of default/web/app tailLines=-\nline 1\nline 2\nline 3\n");
    let resp = admin.get(r.url("/api/v1/namespaces/default/pods/two/log")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let status: Value = resp.json().await.unwrap();
    assert_eq!(status["message"], "a container name must be specified for pod two, choose one of: [a b]");
    let text = admin.get(r.url("/api/v1/namespaces/default/pods/two/log?container=b")).send().await.unwrap().text().await.unwrap();
    assert_eq!(text, "log of default/two/b tailLines=-\n");
    for (path, code) in [
        ("/api/v1/namespaces/default/pods/two/log?container=zz", 400),
        ("/api/v1/namespaces/default/pods/web/log?tailLines=-3", 400),
        ("/api/v1/namespaces/default/pods/pending/log", 400),
        ("/api/v1/namespaces/default/pods/missing/log", 404),
    ] {
        let resp = admin.get(r.url(path)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), code, "{path}");
        let s: Value = resp.json().await.unwrap();
        assert_eq!(s["kind"], "Status", "{path}");
    }
    // viewers read logs but may not exec; a plain GET on exec is refused with a clear message
    let viewer = r.client(Some(&r.token("viewer2", Role::Viewer)));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(viewer.get(r.url("/api/v1/namespaces/default/pods/web/log")).send().await.unwrap().status(), 200);
    assert_eq!(viewer.get(r.url("/api/v1/namespaces/default/pods/web/exec?command=echo")).send().await.unwrap().status(), 403);
    let resp = admin.get(r.url("/api/v1/namespaces/default/pods/web/exec?command=echo")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("Upgrade request required"));
    // the node itself may not read another pod's logs through the apiserver
    assert_eq!(node.get(r.url("/api/v1/namespaces/default/pods/web/log")).send().await.unwrap().status(), 403);

    let home = r.dir.path().to_path_buf();
    let Some(out) = kubectl(&r.kubeconfig(), &home, &["logs", "web"]) else {
        eprintln!("notice: kubectl is not installed; skipping the kubectl half of this test");
        return;
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "log of default/web/app tailLines=-\n");
    let out = kubectl(&r.kubeconfig(), &home, &["logs", "two", "-c", "a", "--tail=2"]).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "log of default/two/a tailLines=2\n", "{}", String::from_utf8_lossy(&out.stderr));

    let out = kubectl(&r.kubeconfig(), &home, &["exec", "web", "--", "echo", "hi", "there"]).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi there\n");
    // stdin goes the other way through the relay
    let mut child = std::process::Command::new(kubectl_path().unwrap())
        .arg("--kubeconfig")
        .arg(r.kubeconfig())
        .args(["exec", "-i", "web", "--", "cat"])
        .env("HOME", &home)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"from stdin\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from stdin\n");
    let out = kubectl(&r.kubeconfig(), &home, &["exec", "two", "-c", "b", "--", "exit", "3"]).unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("failing on purpose"));
}
