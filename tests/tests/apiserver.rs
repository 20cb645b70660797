//! End-to-end tests of the apiserver: real replica processes on loopback, started and stopped
//! through deploy/local-cluster, reached over HTTPS with the cluster's CA and tokens.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use tests::Cluster;

fn cm(name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": value}})
}

fn cm_path(ns: &str, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("/api/v1/namespaces/{ns}/configmaps/{n}"),
        None => format!("/api/v1/namespaces/{ns}/configmaps"),
    }
}

async fn create(c: &Cluster, via: u64, obj: &Value) -> anyhow::Result<reqwest::Response> {
    Ok(c.http()?.post(c.url(via, &cm_path("default", None))).json(obj).send().await?)
}

/// Waits until the default namespace exists (the cluster makes it right after start).
async fn wait_default_namespace(c: &Cluster, via: u64) {
    for _ in 0..100 {
        if let Ok(r) = c.http().unwrap().get(c.url(via, "/api/v1/namespaces/default")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the default namespace never appeared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_every_replica_are_seen_by_all_and_stale_updates_conflict() {
    let c = Cluster::up(3).expect("cluster up");
    wait_default_namespace(&c, 1).await;
    for id in c.replica_ids() {
        let r = create(&c, id, &cm(&format!("via-{id}"), "1")).await.unwrap();
        assert_eq!(r.status(), 201, "create through replica {id}: {}", r.text().await.unwrap());
    }
    // linearizable reads: every replica sees every write at once
    for id in c.replica_ids() {
        let list: Value = c.http().unwrap().get(c.url(id, &cm_path("default", None))).send().await.unwrap().json().await.unwrap();
        let names: BTreeSet<&str> = list["items"].as_array().unwrap().iter().filter_map(|i| i["metadata"]["name"].as_str()).collect();
        assert_eq!(names, BTreeSet::from(["via-1", "via-2", "via-3"]), "replica {id}");
    }
    // a second create of the same name is 409 AlreadyExists on every replica
    for id in c.replica_ids() {
        let r = create(&c, id, &cm("via-1", "again")).await.unwrap();
        assert_eq!(r.status(), 409);
        let s: Value = r.json().await.unwrap();
        assert_eq!(s["reason"], "AlreadyExists");
        assert_eq!(s["message"], "configmaps \"via-1\" already exists");
    }
    // update with the current revision succeeds; the old revision is then stale everywhere
    let path = cm_path("default", Some("via-1"));
    let cur: Value = c.http().unwrap().get(c.url(1, &path)).send().await.unwrap().json().await.unwrap();
    let mut next = cur.clone();
    next["data"]["v"] = json!("2");
    let r = c.http().unwrap().put(c.url(2, &path)).json(&next).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let updated: Value = r.json().await.unwrap();
    assert_ne!(updated["metadata"]["resourceVersion"], cur["metadata"]["resourceVersion"]);
    for id in c.replica_ids() {
        let mut stale = cur.clone();
        stale["data"]["v"] = json!(format!("stale-{id}"));
        let r = c.http().unwrap().put(c.url(id, &path)).json(&stale).send().await.unwrap();
        assert_eq!(r.status(), 409, "stale update through replica {id}");
        let s: Value = r.json().await.unwrap();
        assert_eq!(s["reason"], "Conflict");
        assert!(s["message"].as_str().unwrap().contains("the object has been modified"), "{s}");
    }
    let now: Value = c.http().unwrap().get(c.url(3, &path)).send().await.unwrap().json().await.unwrap();
    assert_eq!(now["data"]["v"], "2", "no stale update was stored");
}

/// Writers keep writing while the leader is killed with SIGKILL: no acknowledged write may be
/// lost, writes resume under a new leader, and the killed replica rejoins and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_leader_loses_no_acknowledged_write() {
    let c = Cluster::up(3).expect("cluster up");
    wait_default_namespace(&c, 1).await;
    let leader = c.leader(1, Duration::from_secs(10)).await.unwrap();
    let ids = c.replica_ids();
    let http = c.http().unwrap();
    let urls: Vec<String> = ids.iter().map(|id| c.url(*id, &cm_path("default", None))).collect();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (http, urls, stop) = (http.clone(), urls.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let name = format!("w{w}-{i}");
                i += 1;
                // a client fails over between replicas, as ctl does
                for attempt in 0..urls.len() * 20 {
                    let url = &urls[(w + attempt) % urls.len()];
                    match http.post(url).json(&cm(&name, "x")).timeout(Duration::from_secs(5)).send().await {
                        Ok(r) if r.status() == 201 => {
                            acked.push(name.clone());
                            break;
                        }
                        // a retried create whose first try did commit
                        Ok(r) if r.status() == 409 => {
                            acked.push(name.clone());
                            break;
                        }
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.stop_replica(leader, "KILL").unwrap();
    let survivor = *ids.iter().find(|i| **i != leader).unwrap();
    let new_leader = c.leader(survivor, Duration::from_secs(15)).await.unwrap();
    assert_ne!(new_leader, leader);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(acked.len() > 20, "writers made little progress: {}", acked.len());

    let list: Value = http.get(c.url(survivor, &cm_path("default", None))).send().await.unwrap().json().await.unwrap();
    let stored: BTreeSet<String> = list["items"].as_array().unwrap().iter().filter_map(|i| i["metadata"]["name"].as_str().map(String::from)).collect();
    let missing: Vec<&String> = acked.iter().filter(|n| !stored.contains(*n)).collect();
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");

    // the killed replica comes back from its disk and catches up
    c.start_replica(leader).unwrap();
    let rev: u64 = list["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    let mut caught_up = false;
    for _ in 0..100 {
        if let Ok(r) = http.get(c.url(leader, &cm_path("default", None))).send().await {
            if let Ok(v) = r.json::<Value>().await {
                let names: BTreeSet<String> = v["items"].as_array().map(|a| a.iter().filter_map(|i| i["metadata"]["name"].as_str().map(String::from)).collect()).unwrap_or_default();
                let r2: u64 = v["metadata"]["resourceVersion"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
                if r2 >= rev && stored.is_subset(&names) {
                    caught_up = true;
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(caught_up, "restarted replica {leader} did not catch up");
    // and it takes writes again
    let r = create(&c, leader, &cm("after-restart", "1")).await.unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_on_a_follower_sees_every_event_in_order() {
    let c = Cluster::up(3).expect("cluster up");
    wait_default_namespace(&c, 1).await;
    let leader = c.leader(1, Duration::from_secs(10)).await.unwrap();
    let follower = *c.replica_ids().iter().find(|i| **i != leader).unwrap();
    let http = c.http().unwrap();
    let list: Value = http.get(c.url(follower, &cm_path("default", None))).send().await.unwrap().json().await.unwrap();
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let resp = http
        .get(c.url(follower, &format!("{}?watch=true&resourceVersion={rv}", cm_path("default", None))))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();

    // writes through every replica: creates, updates, deletes
    let n = 30;
    for i in 0..n {
        let via = c.replica_ids()[i % 3];
        assert_eq!(create(&c, via, &cm(&format!("e{i}"), "0")).await.unwrap().status(), 201);
    }
    for i in (0..n).step_by(3) {
        let p = cm_path("default", Some(&format!("e{i}")));
        let r = http.patch(c.url(leader, &p)).header("content-type", "application/merge-patch+json").body(r#"{"data":{"v":"1"}}"#).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    for i in (0..n).step_by(5) {
        let r = http.delete(c.url(follower, &cm_path("default", Some(&format!("e{i}"))))).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let expected = n + n.div_ceil(3) + n.div_ceil(5);

    let mut buf = Vec::new();
    let mut events: Vec<(String, String, u64)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while events.len() < expected {
        let chunk = tokio::time::timeout_at(deadline, body.next()).await.expect("watch stalled").expect("watch ended").unwrap();
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let ev: Value = serde_json::from_slice(&line).unwrap();
            let rv: u64 = ev["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
            events.push((ev["type"].as_str().unwrap().to_string(), ev["object"]["metadata"]["name"].as_str().unwrap().to_string(), rv));
        }
    }
    assert_eq!(events.len(), expected);
    assert!(events.windows(2).all(|w| w[0].2 < w[1].2), "events out of order: {events:?}");
    let count = |t: &str| events.iter().filter(|e| e.0 == t).count();
    assert_eq!((count("ADDED"), count("MODIFIED"), count("DELETED")), (n, n.div_ceil(3), n.div_ceil(5)));
    // per object, the order is the order of the writes
    let mut per: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (t, name, _) in &events {
        per.entry(name).or_default().push(t);
    }
    assert_eq!(per["e0"], vec!["ADDED", "MODIFIED", "DELETED"]);
    assert_eq!(per["e1"], vec!["ADDED"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_snapshots_and_a_new_replica_catches_up() {
    let mut c = Cluster::up_with(3, &[("FLOTILLA_SNAPSHOT_EVERY", "50")]).expect("cluster up");
    wait_default_namespace(&c, 1).await;
    for i in 0..200 {
        let r = create(&c, 1 + (i % 3), &cm(&format!("s{i}"), "x")).await.unwrap();
        assert_eq!(r.status(), 201);
    }
    // a replica restarted from its snapshot keeps no history before it: a watch from a revision
    // the log no longer holds is told to re-list (410 Expired)
    c.stop_replica(2, "TERM").unwrap();
    c.start_replica(2).unwrap();
    let http = c.http().unwrap();
    let resp = http.get(c.url(2, &format!("{}?watch=1&resourceVersion=2", cm_path("default", None)))).timeout(Duration::from_secs(10)).send().await.unwrap();
    let text = resp.text().await.unwrap_or_default();
    let first: Value = serde_json::from_str(text.lines().next().unwrap_or("{}")).unwrap();
    assert_eq!(first["type"], "ERROR", "{text}");
    assert_eq!(first["object"]["code"], 410);
    assert_eq!(first["object"]["reason"], "Expired");

    let id = c.add_replica().expect("add replica");
    assert_eq!(id, 4);
    let status = c.status(1).await.unwrap();
    assert_eq!(status["replicas"].as_array().unwrap().len(), 4, "{status}");
    let mut seen = 0;
    for _ in 0..100 {
        if let Ok(r) = http.get(c.url(4, &cm_path("default", None))).send().await {
            if let Ok(v) = r.json::<Value>().await {
                seen = v["items"].as_array().map(Vec::len).unwrap_or(0);
                if seen == 200 {
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(seen, 200, "the new replica did not catch up from the snapshot");
}

/// Bad input gets a 4xx Status with a clear message, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_changes_nothing() {
    let c = Cluster::up(1).expect("cluster up");
    wait_default_namespace(&c, 1).await;
    let http = c.http().unwrap();
    let coll = c.url(1, &cm_path("default", None));
    let deploys = c.url(1, "/apis/apps/v1/namespaces/default/deployments");
    let good_deploy = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "busybox"}]}}}
    });
    let before: Value = http.get(&coll).send().await.unwrap().json().await.unwrap();

    async fn check(req: reqwest::RequestBuilder, code: u16, reason: &str, needle: &str) {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, code, "{body}");
        assert_eq!(body["kind"], "Status", "{body}");
        assert_eq!(body["reason"], reason, "{body}");
        assert!(body["message"].as_str().unwrap_or("").contains(needle), "{body} should mention {needle:?}");
    }
    check(http.post(&coll).header("content-type", "application/json").body("{not json"), 400, "BadRequest", "not valid JSON").await;
    check(http.post(&coll).header("content-type", "application/yaml").body("a: [b"), 400, "BadRequest", "not valid YAML").await;
    check(http.post(&coll).header("content-type", "text/plain").body("{}"), 415, "UnsupportedMediaType", "text/plain").await;
    check(http.post(c.url(1, "/api/v1/namespaces/default/widgets")).json(&json!({})), 404, "NotFound", "could not find").await;
    check(http.post(&coll).json(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}})), 400, "BadRequest", "do not match").await;
    let big = "x".repeat(3 * 1024 * 1024 + 10);
    check(http.post(&coll).json(&cm("big", &big)), 413, "RequestEntityTooLarge", "larger than").await;
    check(http.post(&coll).json(&cm("Bad_Name", "1")), 422, "Invalid", "metadata.name: Invalid value: \"Bad_Name\"").await;
    // The details as kube-apiserver gives them: the Kind, and causes naming the field apart.
    let body: Value = http.post(&coll).json(&cm("Bad_Name", "1")).send().await.unwrap().json().await.unwrap();
    assert_eq!((&body["details"]["kind"], &body["details"]["name"]), (&json!("ConfigMap"), &json!("Bad_Name")), "{body}");
    let cause = &body["details"]["causes"][0];
    assert_eq!((&cause["reason"], &cause["field"]), (&json!("FieldValueInvalid"), &json!("metadata.name")), "{body}");
    assert!(cause["message"].as_str().is_some_and(|m| m.starts_with("Invalid value: \"Bad_Name\": ")), "{body}");
    check(http.post(&coll).json(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}})), 422, "Invalid", "metadata.name: Required value").await;
    let mut typo = good_deploy.clone();
    typo["spec"]["replcas"] = json!(2);
    check(http.post(format!("{deploys}?fieldValidation=Strict")).json(&typo), 400, "BadRequest", "unknown field \"spec.replcas\"").await;
    let mut no_image = good_deploy.clone();
    no_image["spec"]["template"]["spec"]["containers"][0].as_object_mut().unwrap().remove("image");
    check(http.post(&deploys).json(&no_image), 422, "Invalid", "spec.template.spec.containers[0].image: Required value").await;
    check(http.get(format!("{coll}?watch=1&resourceVersion=abc")), 400, "BadRequest", "resourceVersion").await;
    check(http.get(format!("{coll}?labelSelector=a%20in%20(")), 400, "BadRequest", "").await;
    check(http.get(format!("{coll}?fieldSelector=spec.foo=x")), 400, "BadRequest", "field label not supported").await;
    check(http.get(format!("{coll}?limit=-1")), 400, "BadRequest", "limit").await;
    check(http.post(c.url(1, "/api/v1/namespaces/nope/configmaps")).json(&cm("x", "1")), 404, "NotFound", "namespaces \"nope\" not found").await;
    check(http.get(c.url(1, &cm_path("default", Some("absent")))), 404, "NotFound", "configmaps \"absent\" not found").await;
    // unauthenticated and forbidden
    let anon = c.http_with_token(None).unwrap();
    check(anon.post(&coll).json(&cm("anon", "1")), 401, "Unauthorized", "Unauthorized").await;
    let wrong = c.http_with_token(Some("not-a-token")).unwrap();
    check(wrong.get(&coll), 401, "Unauthorized", "").await;
    let viewer_token = std::fs::read_to_string(c.dir().join("tokens.csv")).unwrap()
        .lines().find(|l| l.split(',').nth(2) == Some("viewer")).and_then(|l| l.split(',').next()).unwrap().to_string();
    let viewer = c.http_with_token(Some(&viewer_token)).unwrap();
    assert_eq!(viewer.get(&coll).send().await.unwrap().status(), 200);
    check(viewer.post(&coll).json(&cm("by-viewer", "1")), 403, "Forbidden", "cannot create").await;
    check(viewer.get(c.url(1, "/api/v1/namespaces/default/secrets")), 403, "Forbidden", "secrets").await;

    // the good input next to the bad: accepted, with Warn reporting the unknown field
    let r = http.post(format!("{deploys}?fieldValidation=Warn")).json(&typo).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let warning = r.headers().get("warning").map(|h| h.to_str().unwrap().to_string()).unwrap_or_default();
    assert!(warning.contains("unknown field \\\"spec.replcas\\\"") || warning.contains("spec.replcas"), "{warning}");
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    assert_eq!(created["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(created["spec"]["progressDeadlineSeconds"], 600);
    assert_eq!(created["spec"]["template"]["spec"]["restartPolicy"], "Always");
    assert!(created["spec"].get("replcas").is_none());

    let after: Value = http.get(&coll).send().await.unwrap().json().await.unwrap();
    assert_eq!(before["items"], after["items"], "bad requests changed the stored configmaps");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subresources_patches_selectors_and_graceful_deletion() {
    let c = Cluster::up(1).expect("cluster up");
    wait_default_namespace(&c, 1).await;
    let http = c.http().unwrap();
    let deploys = c.url(1, "/apis/apps/v1/namespaces/default/deployments");
    let d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"tier": "front"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "busybox:1"}]}}}
    });
    assert_eq!(http.post(&deploys).json(&d).send().await.unwrap().status(), 201);
    let web = format!("{deploys}/web");
    // scale subresource, as kubectl scale does it
    let r = http.patch(format!("{web}/scale")).header("content-type", "application/merge-patch+json").body(r#"{"spec":{"replicas":5}}"#).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let scale: Value = r.json().await.unwrap();
    assert_eq!((scale["kind"].as_str(), scale["spec"]["replicas"].as_i64(), scale["status"]["selector"].as_str()), (Some("Scale"), Some(5), Some("app=web")));
    // status writes only touch status, and main writes keep status
    let cur: Value = http.get(&web).send().await.unwrap().json().await.unwrap();
    assert_eq!(cur["metadata"]["generation"], 2, "scaling changes the spec");
    let mut st = cur.clone();
    st["status"] = json!({"replicas": 5, "readyReplicas": 3});
    st["spec"]["replicas"] = json!(9);
    let r = http.put(format!("{web}/status")).json(&st).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let after: Value = r.json().await.unwrap();
    assert_eq!((after["spec"]["replicas"].as_i64(), after["status"]["readyReplicas"].as_i64()), (Some(5), Some(3)));
    assert_eq!(after["metadata"]["generation"], 2, "a status write does not bump generation");
    // strategic merge patch as kubectl sends: containers merge by name
    let r = http.patch(&web).header("content-type", "application/strategic-merge-patch+json")
        .body(r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"busybox:2"}]}}}}"#).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["spec"]["template"]["spec"]["containers"][0]["image"], "busybox:2");
    assert_eq!(v["spec"]["template"]["spec"]["containers"][0]["name"], "web");
    assert_eq!(v["status"]["readyReplicas"], 3);
    // a JSON patch that fails changes nothing
    let r = http.patch(&web).header("content-type", "application/json-patch+json").body(r#"[{"op":"remove","path":"/spec/nope"}]"#).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // immutable selector
    let r = http.patch(&web).header("content-type", "application/merge-patch+json").body(r#"{"spec":{"selector":{"matchLabels":{"app":"other"}},"template":{"metadata":{"labels":{"app":"other"}}}}}"#).send().await.unwrap();
    assert_eq!(r.status(), 422);
    // label and field selectors, and paging
    for (n, tier) in [("a", "front"), ("b", "back"), ("c", "back")] {
        let cmv = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n, "labels": {"tier": tier}}});
        assert_eq!(http.post(c.url(1, &cm_path("default", None))).json(&cmv).send().await.unwrap().status(), 201);
    }
    let names = |v: &Value| v["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    let l: Value = http.get(c.url(1, &format!("{}?labelSelector=tier%3Dback", cm_path("default", None)))).send().await.unwrap().json().await.unwrap();
    assert_eq!(names(&l), vec!["b", "c"]);
    let l: Value = http.get(c.url(1, &format!("{}?labelSelector=tier%20notin%20(back)", cm_path("default", None)))).send().await.unwrap().json().await.unwrap();
    assert_eq!(names(&l), vec!["a"]);
    let l: Value = http.get(c.url(1, &format!("{}?fieldSelector=metadata.name%3Dc", cm_path("default", None)))).send().await.unwrap().json().await.unwrap();
    assert_eq!(names(&l), vec!["c"]);
    let p1: Value = http.get(c.url(1, &format!("{}?limit=2", cm_path("default", None)))).send().await.unwrap().json().await.unwrap();
    assert_eq!(names(&p1), vec!["a", "b"]);
    let tok = p1["metadata"]["continue"].as_str().unwrap();
    let p2: Value = http.get(c.url(1, &format!("{}?limit=2&continue={tok}", cm_path("default", None)))).send().await.unwrap().json().await.unwrap();
    assert_eq!(names(&p2), vec!["c"]);
    assert!(p2["metadata"].get("continue").is_none());
    // pods: binding, then graceful deletion of a bound pod
    let pods = c.url(1, "/api/v1/namespaces/default/pods");
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    assert_eq!(http.post(&pods).json(&pod).send().await.unwrap().status(), 201);
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}});
    assert_eq!(http.post(format!("{pods}/p/binding")).json(&binding).send().await.unwrap().status(), 201);
    let again = http.post(format!("{pods}/p/binding")).json(&binding).send().await.unwrap();
    assert_eq!(again.status(), 409);
    let l: Value = http.get(format!("{}?fieldSelector=spec.nodeName%3Dn1", c.url(1, "/api/v1/pods"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(names(&l), vec!["p"]);
    let r = http.delete(format!("{pods}/p")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let marked: Value = r.json().await.unwrap();
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    let r = http.delete(format!("{pods}/p?gracePeriodSeconds=0")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(http.get(format!("{pods}/p")).send().await.unwrap().status(), 404);
    // delete with a stale precondition is refused
    let a: Value = http.get(c.url(1, &cm_path("default", Some("a")))).send().await.unwrap().json().await.unwrap();
    let r = http.delete(c.url(1, &cm_path("default", Some("a")))).json(&json!({"preconditions": {"uid": "wrong"}})).send().await.unwrap();
    assert_eq!(r.status(), 409);
    let r = http.delete(c.url(1, &cm_path("default", Some("a")))).json(&json!({"preconditions": {"uid": a["metadata"]["uid"]}})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // namespaces: deleting one removes what it holds
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tmp"}});
    assert_eq!(http.post(c.url(1, "/api/v1/namespaces")).json(&ns).send().await.unwrap().status(), 201);
    assert_eq!(http.post(c.url(1, &cm_path("tmp", None))).json(&cm("inside", "1")).send().await.unwrap().status(), 201);
    assert_eq!(http.delete(c.url(1, "/api/v1/namespaces/tmp")).send().await.unwrap().status(), 200);
    let r = http.post(c.url(1, &cm_path("tmp", None))).json(&cm("late", "1")).send().await.unwrap();
    assert!(r.status() == 403 || r.status() == 404, "create in a terminating namespace: {}", r.status());
    let mut gone = false;
    for _ in 0..100 {
        if http.get(c.url(1, "/api/v1/namespaces/tmp")).send().await.unwrap().status() == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "namespace tmp was never removed");
    assert_eq!(http.get(c.url(1, &cm_path("tmp", Some("inside")))).send().await.unwrap().status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_and_version() {
    let c = Cluster::up(1).expect("cluster up");
    let http = c.http().unwrap();
    let v: Value = http.get(c.url(1, "/version")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["major"], "1");
    let apis: Value = http.get(c.url(1, "/apis")).send().await.unwrap().json().await.unwrap();
    assert_eq!(apis["kind"], "APIGroupList");
    let core: Value = http.get(c.url(1, "/api/v1")).send().await.unwrap().json().await.unwrap();
    assert!(core["resources"].as_array().unwrap().iter().any(|r| r["name"] == "pods" && r["shortNames"][0] == "po"));
    let r = http.get(c.url(1, "/apis/batch/v1")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

/// A node's token reaches only its own Node, its Lease and the pods bound to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_tokens_reach_only_their_own_node_lease_and_pods() {
    let c = Cluster::up(1).expect("cluster up");
    wait_default_namespace(&c, 1).await;
    let out = std::process::Command::new(tests::binary("apiserver").unwrap())
        .args(["token", "--dir"])
        .arg(c.dir())
        .args(["--user", "system:node:n1", "--role", "node:n1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let node = c.http_with_token(Some(&token)).unwrap();
    let admin = c.http().unwrap();
    // the replica reloads the token file within a second or two
    let mut ok = false;
    for _ in 0..50 {
        if node.get(c.url(1, "/api/v1/nodes?fieldSelector=metadata.name%3Dn1")).send().await.unwrap().status() == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ok, "the new node token was never accepted");
    let mk_node = |n: &str| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}});
    assert_eq!(node.post(c.url(1, "/api/v1/nodes")).json(&mk_node("n1")).send().await.unwrap().status(), 201);
    assert_eq!(node.post(c.url(1, "/api/v1/nodes")).json(&mk_node("n2")).send().await.unwrap().status(), 403);
    // reading every Node is allowed (agents route to other nodes' pod CIDRs); writing others' is not
    assert_eq!(node.get(c.url(1, "/api/v1/nodes")).send().await.unwrap().status(), 200);
    let mut other_node = mk_node("n2");
    other_node["metadata"]["labels"] = json!({"x": "y"});
    assert_eq!(node.put(c.url(1, "/api/v1/nodes/n2")).json(&other_node).send().await.unwrap().status(), 403);
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1"}});
    let leases = c.url(1, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases");
    assert_eq!(node.post(&leases).json(&lease).send().await.unwrap().status(), 201);
    let mut other = lease.clone();
    other["metadata"]["name"] = json!("n2");
    assert_eq!(node.post(&leases).json(&other).send().await.unwrap().status(), 403);
    // pods: two, bound to n1 and n2 by the admin (the scheduler's role)
    let pods = c.url(1, "/api/v1/namespaces/default/pods");
    for (p, n) in [("on-n1", "n1"), ("on-n2", "n2")] {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": p}, "spec": {"nodeName": n, "containers": [{"name": "c", "image": "busybox"}]}});
        assert_eq!(admin.post(&pods).json(&pod).send().await.unwrap().status(), 201);
    }
    assert_eq!(node.get(format!("{pods}/on-n1")).send().await.unwrap().status(), 200);
    assert_eq!(node.get(format!("{pods}/on-n2")).send().await.unwrap().status(), 403);
    assert_eq!(node.get(c.url(1, "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1")).send().await.unwrap().status(), 200);
    assert_eq!(node.get(c.url(1, "/api/v1/pods")).send().await.unwrap().status(), 403);
    assert_eq!(node.get(c.url(1, "/api/v1/pods?fieldSelector=spec.nodeName%3Dn2")).send().await.unwrap().status(), 403);
    let r = node.patch(format!("{pods}/on-n1/status")).header("content-type", "application/merge-patch+json").body(r#"{"status":{"phase":"Running"}}"#).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = node.patch(format!("{pods}/on-n2/status")).header("content-type", "application/merge-patch+json").body(r#"{"status":{"phase":"Running"}}"#).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(node.get(c.url(1, "/api/v1/namespaces/default/secrets")).send().await.unwrap().status(), 403);
    assert_eq!(node.post(c.url(1, &cm_path("default", None))).json(&cm("x", "1")).send().await.unwrap().status(), 403);
}

/// Five replicas tolerate two failures; `ctl cluster` shows and changes membership.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_replicas_membership_and_ctl_cluster_status() {
    let c = Cluster::up(5).expect("cluster up");
    wait_default_namespace(&c, 1).await;
    let out = c.ctl(&["cluster", "status"]).unwrap();
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{table}{}", String::from_utf8_lossy(&out.stderr));
    let header = table.lines().next().unwrap_or("");
    for col in ["ID", "ADDRESS", "ROLE", "TERM", "APPLIED", "HEALTH"] {
        assert!(header.contains(col), "{table}");
    }
    assert_eq!(table.lines().filter(|l| l.contains("leader")).count(), 1, "{table}");
    assert_eq!(table.lines().filter(|l| l.contains("follower")).count(), 4, "{table}");
    let out = c.ctl(&["cluster", "status", "-o", "json"]).unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["replicas"].as_array().unwrap().len(), 5);

    // remove replica 5 from the membership, then stop two of the remaining four's minority
    let leader = c.leader(1, Duration::from_secs(10)).await.unwrap();
    let victim = if leader == 5 { 4 } else { 5 };
    let out = c.ctl(&["cluster", "remove-replica", &victim.to_string()]).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = c.status(leader).await.unwrap();
    let voters: Vec<u64> = s["replicas"].as_array().unwrap().iter().filter(|r| r["voter"] == true).filter_map(|r| r["id"].as_u64()).collect();
    assert_eq!(voters.len(), 4, "{s}");
    assert!(!voters.contains(&victim));
    c.stop_replica(victim, "KILL").unwrap();
    // one more failure among four voters keeps a majority of three
    let other = *voters.iter().find(|id| **id != leader).unwrap();
    c.stop_replica(other, "KILL").unwrap();
    let r = create(&c, leader, &cm("after-two-failures", "1")).await.unwrap();
    assert_eq!(r.status(), 201);
    // and bad membership requests are refused with a clear message
    let out = c.ctl(&["cluster", "add-replica", "9", "--api-addr", "nonsense", "--peer-addr", "127.0.0.1:1"]).unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HOST:PORT") || String::from_utf8_lossy(&out.stderr).contains("host:port"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A replica that missed more writes than the log keeps in memory catches up from the log on
/// disk (no snapshot in between: the default snapshot interval is far larger).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_far_behind_catches_up_from_the_log_on_disk() {
    let c = Cluster::up(3).expect("cluster up");
    wait_default_namespace(&c, 1).await;
    let leader = c.leader(1, Duration::from_secs(10)).await.unwrap();
    let lagging = *c.replica_ids().iter().find(|i| **i != leader).unwrap();
    let other = *c.replica_ids().iter().find(|i| **i != leader && **i != lagging).unwrap();
    c.stop_replica(lagging, "TERM").unwrap();
    let total = 9_000usize;
    let http = c.http().unwrap();
    let mut tasks = Vec::new();
    for w in 0..16usize {
        let (http, urls) = (http.clone(), [c.url(leader, &cm_path("default", None)), c.url(other, &cm_path("default", None))]);
        tasks.push(tokio::spawn(async move {
            for i in (w..total).step_by(16) {
                let r = http.post(&urls[i % 2]).json(&cm(&format!("far-{i}"), "x")).send().await.unwrap();
                assert_eq!(r.status(), 201);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    c.start_replica(lagging).unwrap();
    let mut seen = 0;
    for _ in 0..150 {
        if let Ok(r) = http.get(c.url(lagging, &format!("{}?resourceVersion=0", cm_path("default", None)))).send().await {
            if let Ok(v) = r.json::<Value>().await {
                seen = v["items"].as_array().map(Vec::len).unwrap_or(0);
                if seen == total {
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(seen, total, "the lagging replica did not catch up");
}
