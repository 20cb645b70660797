//! Writes the scheduler's bindings: decisions are gathered into batches and sent through the
//! apiserver's bulk route (`POST /flotilla/v1/bindings`), a few batches in flight at once.
//!
//! One HTTPS request per binding bounded scheduling at what the apiserver serves in requests,
//! far below what the scheduler decides; a batch costs one request and lets the store commit
//! its writes together. Batches form by themselves: the next one is gathered when a request
//! slot is free, from whatever decisions are waiting (at most `batch`), after waiting `window`
//! for more when few are. So an idle cluster binds a single pod within a few milliseconds, and a
//! busy one sends full batches.
//!
//! Every item still has its own answer, reported back one [`Bound`] per pod. An apiserver
//! without the route (404) is remembered and the pods go one by one through `pods/NAME/binding`,
//! `per_pod` requests at a time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use api::client::bindings::{BindError, PodBinding};
use api::client::{Api, Client, PostParams};
use api::core::Pod;
use serde_json::json;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::cache::{PodInfo, PodKey};

/// How bindings are sent.
#[derive(Clone, Debug)]
pub struct BinderOptions {
    /// Pods per bulk request at most (the apiserver takes up to 1,000); 0 binds pods one by
    /// one through `pods/NAME/binding`, never trying the bulk route.
    pub batch: usize,
    /// Bulk requests in flight at once.
    pub batches: usize,
    /// How long to wait for more decisions once one is ready and fewer than `batch` are.
    pub window: Duration,
    /// Per-pod requests in flight at once when the apiserver has no bulk route.
    pub per_pod: usize,
}

impl Default for BinderOptions {
    fn default() -> BinderOptions {
        BinderOptions {
            batch: 500,
            batches: 4,
            window: Duration::from_millis(2),
            per_pod: 128,
        }
    }
}

/// A decision to write: this pod on this node.
pub(crate) struct Assignment {
    pub pod: PodInfo,
    pub node: String,
}

/// What became of one binding.
pub(crate) struct Bound {
    pub key: PodKey,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: String,
    /// A whole-request failure is shared by every pod of its batch.
    pub result: Result<(), Arc<BindError>>,
}

/// Sends the assignments arriving on `assignments` until that channel closes, and reports each
/// pod's outcome on `done`. `busy` counts the binding requests in flight, so that lesser
/// writes (Events) can wait for a lull.
pub(crate) async fn run(
    client: Client,
    options: BinderOptions,
    mut assignments: mpsc::UnboundedReceiver<Assignment>,
    done: mpsc::UnboundedSender<Bound>,
    busy: watch::Sender<usize>,
) {
    let busy = Arc::new(busy);
    let batches = Arc::new(Semaphore::new(options.batches.max(1)));
    let per_pod = Arc::new(Semaphore::new(options.per_pod.max(1)));
    let bulk = Arc::new(AtomicBool::new(options.batch > 0));
    // without the bulk route, a batch is only how many pods one sender task takes at a time
    let batch_size = if options.batch > 0 {
        options.batch
    } else {
        options.per_pod.max(1)
    };
    loop {
        // Waiting for a free slot first lets decisions pile up into a fuller batch meanwhile.
        let Ok(slot) = batches.clone().acquire_owned().await else {
            return;
        };
        let batch = collect(&mut assignments, batch_size, options.window).await;
        if batch.is_empty() {
            return;
        }
        let sender = Sender {
            client: client.clone(),
            bulk: bulk.clone(),
            per_pod: per_pod.clone(),
            done: done.clone(),
        };
        busy.send_modify(|n| *n += 1);
        let busy = busy.clone();
        tokio::spawn(async move {
            sender.send(batch).await;
            busy.send_modify(|n| *n = n.saturating_sub(1));
            drop(slot);
        });
    }
}

/// The next batch: waits for one assignment, then takes what is already there and what arrives
/// within `window`, up to `max`. Empty only when the channel is closed and drained.
pub(crate) async fn collect<T>(
    rx: &mut mpsc::UnboundedReceiver<T>,
    max: usize,
    window: Duration,
) -> Vec<T> {
    let Some(first) = rx.recv().await else {
        return Vec::new();
    };
    let mut batch = vec![first];
    let deadline = tokio::time::Instant::now() + window;
    while batch.len() < max {
        match rx.try_recv() {
            Ok(next) => batch.push(next),
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(next)) => batch.push(next),
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
    batch
}

struct Sender {
    client: Client,
    /// Cleared for good when the apiserver answers the bulk route with 404.
    bulk: Arc<AtomicBool>,
    per_pod: Arc<Semaphore>,
    done: mpsc::UnboundedSender<Bound>,
}

impl Sender {
    async fn send(self, batch: Vec<Assignment>) {
        if self.bulk.load(Ordering::Relaxed) {
            let items: Vec<PodBinding> = batch
                .iter()
                .map(|a| PodBinding {
                    namespace: a.pod.namespace.clone(),
                    name: a.pod.name.clone(),
                    uid: Some(a.pod.uid.clone()).filter(|u| !u.is_empty()),
                    node: a.node.clone(),
                })
                .collect();
            let sent = std::time::Instant::now();
            let answer = self.client.bind_pods(&items).await;
            tracing::debug!(
                pods = items.len(),
                ms = sent.elapsed().as_millis() as u64,
                ok = answer.is_ok(),
                "bulk binding answered"
            );
            match answer {
                Ok(results) => {
                    for (a, r) in batch.into_iter().zip(results) {
                        let result = r.into_result().map_err(|e| Arc::new(BindError::from(e)));
                        self.report(a, result);
                    }
                    return;
                }
                Err(BindError::NotServed) => {
                    if self.bulk.swap(false, Ordering::Relaxed) {
                        tracing::info!(
                            "the apiserver has no bulk binding route; binding pods one by one"
                        );
                    }
                }
                Err(error) => {
                    let error = Arc::new(error);
                    for a in batch {
                        self.report(a, Err(error.clone()));
                    }
                    return;
                }
            }
        }
        let mut tasks = Vec::with_capacity(batch.len());
        for a in batch {
            let Ok(permit) = self.per_pod.clone().acquire_owned().await else {
                return;
            };
            let client = self.client.clone();
            tasks.push(tokio::spawn(async move {
                let result = bind_one(client, &a).await;
                drop(permit);
                (a, result)
            }));
        }
        for task in tasks {
            if let Ok((a, result)) = task.await {
                self.report(a, result);
            }
        }
    }

    fn report(&self, a: Assignment, result: Result<(), Arc<BindError>>) {
        let Assignment { pod, node } = a;
        // The loop is gone only when the scheduler stops; nobody is left to tell.
        let _ = self.done.send(Bound {
            key: pod.key,
            namespace: pod.namespace,
            name: pod.name,
            uid: pod.uid,
            node,
            result,
        });
    }
}

/// POST pods/NAME/binding, for apiservers without the bulk route.
async fn bind_one(client: Client, a: &Assignment) -> Result<(), Arc<BindError>> {
    let pod = &a.pod;
    let body = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": a.node},
    });
    let api = Api::<Pod>::namespaced(client, &pod.namespace);
    let result = match api.dynamic() {
        Ok(dynamic) => dynamic
            .create_subresource(&pod.name, "binding", &PostParams::default(), &body)
            .await
            .map(|_| ()),
        Err(error) => Err(error),
    };
    result.map_err(|e| Arc::new(BindError::from(e)))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::Value;
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

    use super::*;
    use crate::testutil::pod;

    /// A fake apiserver over plain HTTP/1.1: records each request's path, answers the bulk
    /// route (or 404 without it) with 201 per item except for pods named `taken` (409), and
    /// answers every `pods/NAME/binding` with 201. Hand-written so the scheduler's tests need no
    /// HTTP server crate.
    async fn fake_apiserver(bulk: bool) -> (Client, Arc<Mutex<Vec<String>>>) {
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut conn = BufReader::new(conn);
                    loop {
                        let mut line = String::new();
                        if conn.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let path = line.split(' ').nth(1).unwrap_or("").to_string();
                        let mut length = 0usize;
                        loop {
                            let mut header = String::new();
                            if conn.read_line(&mut header).await.unwrap_or(0) == 0 {
                                return;
                            }
                            let header = header.trim_end().to_ascii_lowercase();
                            if header.is_empty() {
                                break;
                            }
                            if let Some(v) = header.strip_prefix("content-length:") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; length];
                        if conn.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        if let Ok(mut log) = log.lock() {
                            log.push(path.clone());
                        }
                        let (code, answer) = answer(bulk, &path, &body);
                        let head = format!(
                            "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                            answer.len()
                        );
                        if conn.get_mut().write_all(head.as_bytes()).await.is_err()
                            || conn.get_mut().write_all(answer.as_bytes()).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        let client = match Client::new(api::client::Config::new(vec![format!(
            "http://127.0.0.1:{port}"
        )])) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        (client, seen)
    }

    fn answer(bulk: bool, path: &str, body: &[u8]) -> (u16, String) {
        let not_found = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"the server could not find the requested resource"}"#;
        if path == api::client::bindings::BINDINGS_PATH {
            if !bulk {
                return (404, not_found.to_string());
            }
            let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let items: Vec<Value> = request["items"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|item| {
                    let code = if item["name"] == "taken" { 409 } else { 201 };
                    json!({"namespace": item["namespace"], "name": item["name"], "code": code,
                           "reason": if code == 409 { "Conflict" } else { "" }})
                })
                .collect();
            return (200, json!({ "items": items }).to_string());
        }
        if path.ends_with("/binding") {
            return (
                201,
                r#"{"kind":"Status","apiVersion":"v1","status":"Success","code":201}"#.to_string(),
            );
        }
        (404, not_found.to_string())
    }

    fn assignment(name: &str) -> Assignment {
        Assignment {
            pod: PodInfo::from_pod(&pod(name, "1m", "1Mi")),
            node: "n1".to_string(),
        }
    }

    /// Sends `names` through a binder at once and returns each pod's outcome (true: bound).
    async fn bind_all(client: Client, names: &[&str]) -> Vec<(String, bool)> {
        let (assign_tx, assign_rx) = mpsc::unbounded_channel();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let options = BinderOptions {
            window: Duration::from_millis(50),
            ..BinderOptions::default()
        };
        let (busy, _) = watch::channel(0);
        let binder = tokio::spawn(run(client, options, assign_rx, done_tx, busy));
        for name in names {
            assert!(assign_tx.send(assignment(name)).is_ok());
        }
        let mut out = Vec::new();
        while out.len() < names.len() {
            match tokio::time::timeout(Duration::from_secs(10), done_rx.recv()).await {
                Ok(Some(b)) => out.push((b.name, b.result.is_ok())),
                other => panic!("expected a binding result, got {}", other.is_ok()),
            }
        }
        binder.abort();
        out.sort();
        out
    }

    #[tokio::test]
    async fn decisions_go_in_one_request_and_each_pod_gets_its_answer() {
        let (client, seen) = fake_apiserver(true).await;
        let got = bind_all(client, &["a", "b", "taken"]).await;
        assert_eq!(
            got,
            vec![
                ("a".into(), true),
                ("b".into(), true),
                ("taken".into(), false)
            ]
        );
        let paths = seen.lock().map(|p| p.clone()).unwrap_or_default();
        assert_eq!(
            paths,
            vec![api::client::bindings::BINDINGS_PATH.to_string()]
        );
    }

    #[tokio::test]
    async fn without_the_bulk_route_pods_are_bound_one_by_one() {
        let (client, seen) = fake_apiserver(false).await;
        let got = bind_all(client, &["a", "b"]).await;
        assert_eq!(got, vec![("a".into(), true), ("b".into(), true)]);
        let paths = seen.lock().map(|p| p.clone()).unwrap_or_default();
        assert_eq!(paths.len(), 3, "{paths:?}");
        assert_eq!(paths[0], api::client::bindings::BINDINGS_PATH);
        let mut singles = paths[1..].to_vec();
        singles.sort();
        assert_eq!(
            singles,
            vec![
                "/api/v1/namespaces/default/pods/a/binding".to_string(),
                "/api/v1/namespaces/default/pods/b/binding".to_string()
            ]
        );
    }

    #[tokio::test]
    async fn a_batch_takes_what_is_waiting_up_to_its_size() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for i in 0..5 {
            assert!(tx.send(i).is_ok());
        }
        assert_eq!(collect(&mut rx, 3, Duration::ZERO).await, vec![0, 1, 2]);
        assert_eq!(
            collect(&mut rx, 3, Duration::from_millis(10)).await,
            vec![3, 4]
        );
        drop(tx);
        assert!(collect(&mut rx, 3, Duration::from_millis(10))
            .await
            .is_empty());
    }
}
