//! The apiserver's side of running nodes, against real replicas started by deploy/local-cluster:
//! joining with a bootstrap token (and the node token working on every replica), the node
//! authorizer's graph (ConfigMaps and Secrets that the node's pods reference), and delete
//! propagation policies. pods/log and pods/exec, which need a fake agent serving TLS, are
//! tested in apiserver/tests/node_proxy.rs.

use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use tests::Cluster;

/// Adds a token to the cluster's tokens.csv with `apiserver token`.
fn add_token(c: &Cluster, user: &str, role: &str) -> anyhow::Result<String> {
    let out = std::process::Command::new(tests::binary("apiserver")?)
        .args(["token", "--dir"])
        .arg(c.dir())
        .args(["--user", user, "--role", role])
        .output()?;
    anyhow::ensure!(out.status.success(), "apiserver token failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

async fn send(client: &reqwest::Client, method: reqwest::Method, url: String, body: Option<Value>, content_type: &str) -> anyhow::Result<(u16, Value)> {
    let mut req = client.request(method, url);
    if let Some(b) = body {
        req = req.header("content-type", content_type).body(b.to_string());
    }
    let resp = req.send().await?;
    let code = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((code, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> anyhow::Result<(u16, Value)> {
    send(client, reqwest::Method::POST, url, Some(body), "application/json").await
}

async fn get(client: &reqwest::Client, url: String) -> anyhow::Result<(u16, Value)> {
    send(client, reqwest::Method::GET, url, None, "").await
}

/// Polls `f` until it returns true, for up to 10 s.
async fn eventually<F, Fut>(what: &str, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{what} did not happen within 10 s")
}

/// The node-token Secrets in kube-system.
async fn node_token_secrets(c: &Cluster) -> anyhow::Result<Vec<String>> {
    let (code, list) = get(&c.http()?, c.url(1, "/api/v1/namespaces/kube-system/secrets")).await?;
    anyhow::ensure!(code == 200, "listing secrets: {list}");
    Ok(list["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter(|s| s["type"] == "flotilla.io/node-token")
        .filter_map(|s| s["metadata"]["name"].as_str().map(str::to_string))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_hands_out_a_node_token_every_replica_accepts() -> anyhow::Result<()> {
    let c = Cluster::up(3)?;
    c.leader(1, Duration::from_secs(20)).await?;
    let bootstrap = add_token(&c, "bootstrap-1", "bootstrap")?;
    let b = c.http_with_token(Some(&bootstrap))?;
    let join_url = c.url(1, "/flotilla/v1/join");
    eventually("the bootstrap token being loaded", || async {
        matches!(post(&b, join_url.clone(), json!({})).await, Ok((400, _)))
    })
    .await?;

    // bad input and wrong roles: a clear Status, nothing written
    for (body, needle) in [
        (json!({"addresses": ["10.0.0.1"]}), "nodeName: Required value"),
        (json!({"nodeName": "Not_A_Name"}), "RFC 1123"),
        (json!({"nodeName": "n1", "addresses": ["not-an-ip"]}), "must be an IP address"),
    ] {
        let (code, status) = post(&b, join_url.clone(), body.clone()).await?;
        assert_eq!(code, 400, "{body}: {status}");
        assert_eq!(status["kind"], "Status");
        assert!(status["message"].as_str().unwrap_or("").contains(needle), "{status}");
    }
    let viewer = add_token(&c, "viewer-2", "viewer")?;
    let v = c.http_with_token(Some(&viewer))?;
    eventually("the viewer token being loaded", || async {
        matches!(post(&v, join_url.clone(), json!({"nodeName": "n1"})).await, Ok((403, _)))
    })
    .await?;
    let (code, status) = post(&v, join_url.clone(), json!({"nodeName": "n1"})).await?;
    assert_eq!((code, status["reason"].as_str()), (403, Some("Forbidden")), "{status}");
    assert!(node_token_secrets(&c).await?.is_empty(), "a refused join wrote something");
    // a bootstrap token reaches no resource
    let (code, _) = get(&b, c.url(1, "/api/v1/nodes")).await?;
    assert_eq!(code, 403);

    // a good join, through replica 2
    let (code, joined) = post(&b, c.url(2, "/flotilla/v1/join"), json!({"nodeName": "n1", "addresses": ["127.0.0.1"]})).await?;
    assert_eq!(code, 200, "{joined}");
    assert_eq!(joined["user"], "system:node:n1");
    for field in ["caCert", "servingCert"] {
        assert!(joined[field].as_str().unwrap_or("").starts_with("-----BEGIN CERTIFICATE-----"), "{field}");
    }
    assert!(joined["servingKey"].as_str().unwrap_or("").contains("PRIVATE KEY"));
    assert_eq!(joined["caCert"].as_str().map(str::as_bytes), Some(c.ca_pem()));
    let token = joined["token"].as_str().context("token")?.to_string();
    assert_eq!(node_token_secrets(&c).await?, vec!["node-token-n1".to_string()]);
    let (_, secret) = get(&c.http()?, c.url(3, "/api/v1/namespaces/kube-system/secrets/node-token-n1")).await?;
    assert!(!secret.to_string().contains(&token), "the Secret must hold only a hash");

    // the node token works on every replica, at once: it registers its Node through replica 3
    // and reads it back through each
    let n = c.http_with_token(Some(&token))?;
    let (code, body) = post(&n, c.url(3, "/api/v1/nodes"), json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})).await?;
    assert_eq!(code, 201, "{body}");
    for id in c.replica_ids() {
        let (code, body) = get(&n, c.url(id, "/api/v1/nodes/n1")).await?;
        assert_eq!(code, 200, "replica {id}: {body}");
    }
    // ... and only as node n1
    let (code, _) = post(&n, c.url(1, "/api/v1/nodes"), json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"}})).await?;
    assert_eq!(code, 403);

    // joining again replaces the token: the old one stops working everywhere
    let (code, again) = post(&b, c.url(1, "/flotilla/v1/join"), json!({"nodeName": "n1"})).await?;
    assert_eq!(code, 200, "{again}");
    let new = c.http_with_token(Some(again["token"].as_str().context("token")?))?;
    for id in c.replica_ids() {
        let url = c.url(id, "/api/v1/nodes/n1");
        eventually(&format!("the old token being refused on replica {id}"), || async {
            matches!(get(&n, url.clone()).await, Ok((401, _)))
        })
        .await?;
        let (code, _) = get(&new, url).await?;
        assert_eq!(code, 200, "replica {id}");
    }
    assert_eq!(node_token_secrets(&c).await?.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_read_what_their_pods_reference_and_deletes_propagate() -> anyhow::Result<()> {
    let c = Cluster::up(1)?;
    let admin = c.http()?;
    let bootstrap = add_token(&c, "bootstrap-1", "bootstrap")?;
    let b = c.http_with_token(Some(&bootstrap))?;
    let join_url = c.url(1, "/flotilla/v1/join");
    eventually("the bootstrap token being loaded", || async {
        matches!(post(&b, join_url.clone(), json!({"nodeName": "n1"})).await, Ok((200, _)))
    })
    .await?;
    let (code, joined) = post(&b, join_url.clone(), json!({"nodeName": "n1"})).await?;
    assert_eq!(code, 200);
    let n1 = c.http_with_token(Some(joined["token"].as_str().context("token")?))?;
    let ns = |path: &str| c.url(1, &format!("/api/v1/namespaces/default/{path}"));

    for (kind, plural, name) in [("ConfigMap", "configmaps", "cm-env"), ("ConfigMap", "configmaps", "cm-other"), ("Secret", "secrets", "sec-vol"), ("Secret", "secrets", "sec-other")] {
        let (code, body) = post(&admin, ns(plural), json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": name}, "data": {}})).await?;
        assert_eq!(code, 201, "{body}");
    }
    let pod = |name: &str, node: &str, cm: &str, secret: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
            "nodeName": node,
            "volumes": [{"name": "s", "secret": {"secretName": secret}}],
            "containers": [{"name": "c", "image": "busybox", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": cm, "key": "k"}}}]}]}})
    };
    for p in [pod("mine", "n1", "cm-env", "sec-vol"), pod("theirs", "n2", "cm-other", "sec-other")] {
        let (code, body) = post(&admin, ns("pods"), p).await?;
        assert_eq!(code, 201, "{body}");
    }
    for (path, want) in [
        ("configmaps/cm-env", 200),
        ("secrets/sec-vol", 200),
        ("configmaps/cm-other", 403),
        ("secrets/sec-other", 403),
        ("configmaps", 403),
        ("services", 200),
        ("endpoints", 200),
    ] {
        let (code, body) = get(&n1, ns(path)).await?;
        assert_eq!(code, want, "{path}: {body}");
    }
    let (code, _) = get(&n1, c.url(1, "/api/v1/nodes")).await?;
    assert_eq!(code, 200);
    // Events may be written in any namespace (the node's pods live in many), not read
    for namespace in ["default", "kube-system"] {
        let event = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "mine.0123456789abcdef", "namespace": namespace},
                           "involvedObject": {"kind": "Pod", "namespace": namespace, "name": "mine"}, "reason": "Started", "message": "started", "type": "Normal",
                           "source": {"component": "kubelet", "host": "n1"}});
        let (code, body) = post(&n1, c.url(1, &format!("/api/v1/namespaces/{namespace}/events")), event).await?;
        assert_eq!(code, 201, "{body}");
        let (code, _) = get(&n1, c.url(1, &format!("/api/v1/namespaces/{namespace}/events"))).await?;
        assert_eq!(code, 403);
    }

    // delete propagation: Foreground and Orphan hold the object with their finalizer until the
    // garbage collector removes it; Background deletes at once; bad values change nothing
    let make = |name: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
    for name in ["fg", "orphan", "bg", "kept"] {
        let (code, body) = post(&admin, ns("configmaps"), make(name)).await?;
        assert_eq!(code, 201, "{body}");
    }
    let (code, fg) = send(&admin, reqwest::Method::DELETE, ns("configmaps/fg?propagationPolicy=Foreground"), None, "").await?;
    assert_eq!(code, 200, "{fg}");
    let (code, fg) = get(&admin, ns("configmaps/fg")).await?;
    assert_eq!(code, 200, "{fg}");
    assert_eq!(fg["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    assert!(fg["metadata"]["deletionTimestamp"].is_string());
    let (code, _) = send(&admin, reqwest::Method::DELETE, ns("configmaps/orphan"), Some(json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Orphan"})), "application/json").await?;
    assert_eq!(code, 200);
    let (_, orphan) = get(&admin, ns("configmaps/orphan")).await?;
    assert_eq!(orphan["metadata"]["finalizers"], json!(["orphan"]));
    let (code, _) = send(&admin, reqwest::Method::DELETE, ns("configmaps/bg?propagationPolicy=Background"), None, "").await?;
    assert_eq!(code, 200);
    assert_eq!(get(&admin, ns("configmaps/bg")).await?.0, 404);
    for bad in ["configmaps/kept?propagationPolicy=Sideways", "configmaps/kept?propagationPolicy=foreground"] {
        let (code, status) = send(&admin, reqwest::Method::DELETE, ns(bad), None, "").await?;
        assert_eq!(code, 400, "{bad}: {status}");
        assert!(status["message"].as_str().unwrap_or("").contains("unsupported propagationPolicy"), "{status}");
    }
    let (_, kept) = get(&admin, ns("configmaps/kept")).await?;
    assert!(kept["metadata"]["deletionTimestamp"].is_null() && kept["metadata"]["finalizers"].is_null(), "{kept}");
    // the collector's part, played by hand: removing the finalizer lets the object go
    let (code, body) = send(&admin, reqwest::Method::PATCH, ns("configmaps/fg"), Some(json!({"metadata": {"finalizers": null}})), "application/merge-patch+json").await?;
    assert_eq!(code, 200, "{body}");
    assert_eq!(get(&admin, ns("configmaps/fg")).await?.0, 404);

    // kubectl's --cascade spellings reach the same policies
    if let Some(out) = c.kubectl(&["delete", "configmap", "kept", "--cascade=orphan", "--wait=false"], None)? {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let (_, kept) = get(&admin, ns("configmaps/kept")).await?;
        assert_eq!(kept["metadata"]["finalizers"], json!(["orphan"]), "{kept}");
    } else {
        eprintln!("notice: kubectl is not installed; skipping its --cascade check");
    }
    Ok(())
}
