//! `POST /flotilla/v1/bindings`, the bulk binding route, against a real one-replica apiserver in
//! this process (127.0.0.1:0, HTTPS): each item answered as `pods/NAME/binding` would answer it,
//! with its effects (nodeName, PodScheduled, one watch event per pod), and bodies refused whole
//! (400, 413) with nothing changed.

use std::time::Duration;

use apiserver::auth::Role;
use futures::StreamExt as _;
use serde_json::{json, Value};

mod common;

use common::Replica1;

const BINDINGS: &str = "/flotilla/v1/bindings";

impl Replica1 {
    async fn create_pod(&self, ns: &str, name: &str) -> Value {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        });
        let resp = self.client(Some(&self.admin)).post(self.url(&format!("/api/v1/namespaces/{ns}/pods"))).json(&pod).send().await.unwrap();
        assert_eq!(resp.status(), 201, "creating pod {name}");
        resp.json().await.unwrap()
    }

    async fn pod(&self, ns: &str, name: &str) -> Value {
        let resp = self.client(Some(&self.admin)).get(self.url(&format!("/api/v1/namespaces/{ns}/pods/{name}"))).send().await.unwrap();
        assert_eq!(resp.status(), 200, "reading pod {name}");
        resp.json().await.unwrap()
    }

    /// Posts a bulk binding body; returns the status and the JSON answer.
    async fn bind(&self, token: &str, body: String) -> (u16, Value) {
        let resp = self.client(Some(token)).post(self.url(BINDINGS)).header("content-type", "application/json").body(body).send().await.unwrap();
        let code = resp.status().as_u16();
        (code, resp.json().await.unwrap_or(Value::Null))
    }
}

fn item(ns: &str, name: &str, node: &str) -> Value {
    json!({"namespace": ns, "name": name, "node": node})
}

fn codes(answer: &Value) -> Vec<(String, u64)> {
    answer["items"]
        .as_array()
        .map(|items| items.iter().map(|i| (i["name"].as_str().unwrap_or("").to_string(), i["code"].as_u64().unwrap_or(0))).collect())
        .unwrap_or_default()
}

fn node_of(pod: &Value) -> Option<&str> {
    pod.pointer("/spec/nodeName").and_then(Value::as_str)
}

#[tokio::test]
async fn a_batch_binds_each_pod_as_the_subresource_does() {
    let r = Replica1::start().await;
    let names = ["a", "b", "c"];
    let mut uids = Vec::new();
    for n in names {
        let pod = r.create_pod("default", n).await;
        uids.push(pod["metadata"]["uid"].as_str().unwrap().to_string());
    }
    // watch from the revision after the creations: the bindings must show as one event each
    let list: Value = r.client(Some(&r.admin)).get(r.url("/api/v1/namespaces/default/pods")).send().await.unwrap().json().await.unwrap();
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let watch = r
        .client(Some(&r.admin))
        .get(r.url(&format!("/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}")))
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .unwrap();
    assert_eq!(watch.status(), 200);

    let mut first = item("default", "a", "n1");
    first["uid"] = json!(uids[0]);
    let body = json!({"items": [first, item("default", "b", "n2"), item("default", "c", "n1")]});
    let (code, answer) = r.bind(&r.admin, body.to_string()).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(codes(&answer), vec![("a".into(), 201), ("b".into(), 201), ("c".into(), 201)]);
    for (n, node) in [("a", "n1"), ("b", "n2"), ("c", "n1")] {
        let pod = r.pod("default", n).await;
        assert_eq!(node_of(&pod), Some(node), "{pod}");
        let conditions = pod.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
        assert!(conditions.iter().any(|c| c["type"] == "PodScheduled" && c["status"] == "True"), "{pod}");
    }

    // exactly one MODIFIED event per pod, each carrying the binding
    let mut stream = watch.bytes_stream();
    let mut buf = Vec::new();
    let mut events: Vec<Value> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while events.len() < 3 {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => buf.extend_from_slice(&chunk),
            other => panic!("the watch stopped after {} events: {}", events.len(), other.is_ok()),
        }
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            if let Ok(e) = serde_json::from_slice::<Value>(&line) {
                if e["type"] != "BOOKMARK" {
                    events.push(e);
                }
            }
        }
    }
    let mut seen: Vec<&str> = events.iter().map(|e| e["object"]["metadata"]["name"].as_str().unwrap_or("")).collect();
    seen.sort();
    assert_eq!(seen, names);
    assert!(events.iter().all(|e| e["type"] == "MODIFIED" && node_of(&e["object"]).is_some()), "{events:?}");
    // and nothing more for these pods
    if let Ok(Some(Ok(chunk))) = tokio::time::timeout(Duration::from_millis(500), stream.next()).await {
        let text = String::from_utf8_lossy(&chunk);
        assert!(text.lines().all(|l| l.contains("BOOKMARK")), "an extra event: {text}");
    }
}

#[tokio::test]
async fn a_mixed_batch_answers_item_by_item() {
    let r = Replica1::start().await;
    for n in ["free", "bound", "stale"] {
        r.create_pod("default", n).await;
    }
    let (code, _) = r.bind(&r.admin, json!({"items": [item("default", "bound", "n9")]}).to_string()).await;
    assert_eq!(code, 200);
    let mut stale = item("default", "stale", "n1");
    stale["uid"] = json!("not-the-pods-uid");
    let body = json!({"items": [
        item("default", "free", "n1"),
        item("default", "bound", "n1"),
        item("default", "missing", "n1"),
        stale,
    ]});
    let (code, answer) = r.bind(&r.admin, body.to_string()).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(
        codes(&answer),
        vec![("free".into(), 201), ("bound".into(), 409), ("missing".into(), 404), ("stale".into(), 409)]
    );
    let items = answer["items"].as_array().unwrap();
    assert!(items[1]["message"].as_str().unwrap_or("").contains("already assigned to node \"n9\""), "{answer}");
    assert_eq!(items[2]["reason"], "NotFound");
    assert!(items[3]["message"].as_str().unwrap_or("").contains("Precondition failed: UID"), "{answer}");
    assert_eq!(node_of(&r.pod("default", "free").await), Some("n1"));
    assert_eq!(node_of(&r.pod("default", "bound").await), Some("n9"));
    assert_eq!(node_of(&r.pod("default", "stale").await), None);
}

#[tokio::test]
async fn bad_bodies_are_refused_whole_and_change_nothing() {
    let r = Replica1::start().await;
    r.create_pod("default", "p").await;
    let many: Vec<Value> = (0..1001).map(|i| item("default", if i == 0 { "p" } else { "q" }, "n1")).collect();
    let (code, answer) = r.bind(&r.admin, json!({ "items": many }).to_string()).await;
    assert_eq!(code, 413, "{answer}");
    assert_eq!(answer["reason"], "RequestEntityTooLarge");
    for body in [
        "{".to_string(),
        json!({"items": [item("default", "p", "n1"), {"namespace": "default", "name": "q"}]}).to_string(),
        json!({"items": [item("default", "p", "n1"), item("default", "p", "n2")]}).to_string(),
        json!({"items": [item("default", "p", "N1")]}).to_string(),
        json!({"bindings": [item("default", "p", "n1")]}).to_string(),
    ] {
        let (code, answer) = r.bind(&r.admin, body.clone()).await;
        assert_eq!(code, 400, "{body}: {answer}");
        assert_eq!(answer["kind"], "Status");
    }
    let pod = r.pod("default", "p").await;
    assert_eq!(node_of(&pod), None, "{pod}");
    assert_eq!(pod["metadata"]["resourceVersion"], r.pod("default", "p").await["metadata"]["resourceVersion"]);
}

#[tokio::test]
async fn a_caller_not_allowed_to_bind_gets_403_for_each_pod() {
    let r = Replica1::start().await;
    r.create_pod("default", "a").await;
    r.create_pod("default", "b").await;
    let viewer = r.token("viewer", Role::Viewer);
    // the token file is polled: wait until the new token authenticates
    let mut answer = (401, Value::Null);
    for _ in 0..50 {
        answer = r.bind(&viewer, json!({"items": [item("default", "a", "n1"), item("default", "b", "n1")]}).to_string()).await;
        if answer.0 != 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, answer) = answer;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(codes(&answer), vec![("a".into(), 403), ("b".into(), 403)]);
    assert_eq!(answer["items"][0]["reason"], "Forbidden");
    assert_eq!(node_of(&r.pod("default", "a").await), None);
    assert_eq!(node_of(&r.pod("default", "b").await), None);
    // a node may not bind pods either, not even to itself
    let node = r.token("system:node:n1", Role::Node("n1".into()));
    let mut answer = (401, Value::Null);
    for _ in 0..50 {
        answer = r.bind(&node, json!({"items": [item("default", "a", "n1")]}).to_string()).await;
        if answer.0 != 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(codes(&answer.1), vec![("a".into(), 403)], "{:?}", answer.1);
    assert_eq!(node_of(&r.pod("default", "a").await), None);
}
