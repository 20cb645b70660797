//! The ReplicaSet and Deployment controllers against a real, in-process apiserver (one replica
//! on 127.0.0.1:0 with its own CA in a temporary directory). No scheduler or node agent runs:
//! a small stand-in marks pods Running and Ready unless their image says "bad", and pods that
//! are deleted go away at once, as unscheduled pods do.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::apps::{Deployment, ReplicaSet};
use api::client::{Api, Client, Config, ListParams, Patch, PatchParams, PostParams};
use api::core::{Event, Pod};
use apiserver::pki::{self, InitOptions, PkiPaths};
use apiserver::server::{self, ServeOptions};
use apiserver::store::Replica;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

/// A running apiserver and the two controllers; everything stops on drop.
struct Harness {
    client: Client,
    _dir: tempfile::TempDir,
    stop_server: Option<oneshot::Sender<()>>,
    stop_controllers: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.stop_controllers.send(true);
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn start() -> Harness {
    let dir = tempfile::tempdir().expect("temporary directory");
    let api_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind api");
    let peer_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind peer");
    let api_addr = api_listener.local_addr().expect("api address").to_string();
    let peer_addr = peer_listener
        .local_addr()
        .expect("peer address")
        .to_string();
    let out = pki::init(&InitOptions {
        dir: dir.path().to_path_buf(),
        hosts: vec!["127.0.0.1".to_string()],
        servers: vec![format!("https://{api_addr}")],
    })
    .expect("cluster credentials");
    let me = Replica {
        api_addr: api_addr.clone(),
        peer_addr,
    };
    let options = ServeOptions {
        id: 1,
        data_dir: dir.path().join("replica-1"),
        pki: PkiPaths::under(dir.path()),
        tokens: out.tokens_file.clone(),
        me: me.clone(),
        initial_cluster: BTreeMap::from([(1, me)]),
        join: false,
        snapshot_every: None,
    };
    let (stop_server, stopped) = oneshot::channel::<()>();
    let server_task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = server::run(options, api_listener, peer_listener, shutdown).await {
            eprintln!("apiserver stopped: {e:#}");
        }
    });
    let config = Config::from_kubeconfig(&out.kubeconfig, None).expect("kubeconfig");
    let client = Client::new(config).expect("client");
    // Ready once the default namespace exists and the leader answers writes.
    wait_for("the apiserver", Duration::from_secs(20), || {
        let client = client.clone();
        async move {
            let api: Api<Deployment> = Api::namespaced(client, "default");
            api.list(&ListParams::default()).await.is_ok()
        }
    })
    .await;
    let (stop_controllers, shutdown) = watch::channel(false);
    let mut tasks = vec![server_task];
    for which in ["replicaset", "deployment"] {
        let client = client.clone();
        let shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let result = if which == "replicaset" {
                controllers::replicaset::run(client, shutdown).await
            } else {
                controllers::deployment::run(client, shutdown).await
            };
            if let Err(e) = result {
                eprintln!("{which} controller stopped: {e}");
            }
        }));
    }
    {
        let client = client.clone();
        tasks.push(tokio::spawn(fake_kubelet(client)));
    }
    Harness {
        client,
        _dir: dir,
        stop_server: Some(stop_server),
        stop_controllers,
        tasks,
    }
}

/// Marks pods Running and Ready, except those whose image contains "bad".
async fn fake_kubelet(client: Client) {
    let pods: Api<Pod> = Api::namespaced(client, "default");
    loop {
        if let Ok(list) = pods.list(&ListParams::default()).await {
            for pod in list.items {
                let ready = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready"));
                let bad = pod.spec.as_ref().is_some_and(|s| {
                    s.containers
                        .iter()
                        .any(|c| c.image.as_deref().unwrap_or("").contains("bad"))
                });
                if ready || bad || pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let now = jiff::Timestamp::now().to_string();
                let patch = json!({"status": {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
                let name = pod.metadata.name.clone().unwrap_or_default();
                let _ = pods
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Whether the rollout is complete, as `rollout status` judges it.
async fn rolled_out(client: &Client, replicas: i32) -> bool {
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let Ok(d) = api.get("web").await else {
        return false;
    };
    let s = d.status.unwrap_or_default();
    s.observed_generation >= d.metadata.generation
        && s.updated_replicas == Some(replicas)
        && s.replicas == Some(replicas)
        && s.available_replicas == Some(replicas)
}

async fn set_image(client: &Client, image: &str) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}});
    api.patch("web", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .expect("set image");
}

async fn scale(client: &Client, replicas: i32) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": replicas}})),
    )
    .await
    .expect("scale");
}

async fn ready_pods(client: &Client) -> i64 {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let Ok(list) = pods.list(&ListParams::default()).await else {
        return i64::MAX;
    };
    let ready = list.items.iter().filter(|p| {
        p.metadata.deletion_timestamp.is_none()
            && p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    });
    i64::try_from(ready.count()).unwrap_or(i64::MAX)
}

fn revision(d: &Deployment) -> Option<String> {
    d.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("deployment.kubernetes.io/revision"))
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deployment_rolls_out_scales_stalls_and_rolls_back() {
    let h = start().await;
    let client = h.client.clone();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let web: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 3,
            "progressDeadlineSeconds": 4,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "web", "image": "busybox:v1"}]}}
        }
    }))
    .expect("deployment");
    deployments
        .create(&PostParams::default(), &web)
        .await
        .expect("create deployment");
    wait_for("3 available replicas", Duration::from_secs(30), || {
        rolled_out(&client, 3)
    })
    .await;

    scale(&client, 5).await;
    wait_for("5 available replicas", Duration::from_secs(30), || {
        rolled_out(&client, 5)
    })
    .await;
    scale(&client, 4).await;
    wait_for("4 available replicas", Duration::from_secs(30), || {
        rolled_out(&client, 4)
    })
    .await;

    // A rolling update never leaves fewer than replicas - maxUnavailable pods ready.
    let lowest = Arc::new(AtomicI64::new(i64::MAX));
    let sampler = {
        let client = client.clone();
        let lowest = lowest.clone();
        tokio::spawn(async move {
            loop {
                lowest.fetch_min(ready_pods(&client).await, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    set_image(&client, "busybox:v2").await;
    wait_for("the v2 rollout", Duration::from_secs(30), || {
        rolled_out(&client, 4)
    })
    .await;
    sampler.abort();
    let lowest = lowest.load(Ordering::SeqCst);
    assert!(
        lowest >= 3,
        "only {lowest} pods were ready during the rollout"
    );
    let d = deployments.get("web").await.expect("get deployment");
    assert_eq!(revision(&d).as_deref(), Some("2"));

    // A broken image stalls: old pods keep serving and Progressing turns false.
    set_image(&client, "busybox:bad").await;
    wait_for("ProgressDeadlineExceeded", Duration::from_secs(30), || {
        let deployments = deployments.clone();
        async move {
            let Ok(d) = deployments.get("web").await else {
                return false;
            };
            d.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| {
                    c.type_ == "Progressing"
                        && c.status == "False"
                        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
                })
        }
    })
    .await;
    assert!(ready_pods(&client).await >= 3);

    // Undo: the v2 template goes back, its ReplicaSet returns with a new revision.
    set_image(&client, "busybox:v2").await;
    wait_for("the rollback", Duration::from_secs(30), || {
        rolled_out(&client, 4)
    })
    .await;
    let d = deployments.get("web").await.expect("get deployment");
    assert_eq!(revision(&d).as_deref(), Some("4"));
    let list = sets
        .list(&ListParams::default())
        .await
        .expect("list replica sets");
    assert_eq!(list.items.len(), 3, "one ReplicaSet per template");
    let sizes: Vec<(i32, String)> = list
        .items
        .iter()
        .map(|rs| {
            let image = rs
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .and_then(|t| t.spec.as_ref())
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            (
                rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(-1),
                image,
            )
        })
        .filter(|(n, _)| *n > 0)
        .collect();
    assert_eq!(sizes, vec![(4, "busybox:v2".to_string())]);

    // Events are written in the background, a moment after what they tell.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let scaled = || async {
        let messages: Vec<String> = events
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("ScalingReplicaSet"))
            .filter_map(|e| e.message)
            .collect();
        messages.iter().any(|m| m.starts_with("Scaled up replica set web-") && m.ends_with(" from 0 to 3"))
            && messages.iter().any(|m| m.starts_with("Scaled down replica set web-"))
    };
    wait_for("ScalingReplicaSet Events: scaled up from 0 to 3, and scaled down", Duration::from_secs(10), scaled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replica_set_replaces_deleted_pods_and_adopts_orphans() {
    let h = start().await;
    let client = h.client.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "orphan", "labels": {"app": "db"}},
        "spec": {"containers": [{"name": "db", "image": "busybox"}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &orphan)
        .await
        .expect("create orphan");
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "db"}},
                 "template": {"metadata": {"labels": {"app": "db"}},
                              "spec": {"containers": [{"name": "db", "image": "busybox"}]}}}
    }))
    .expect("replica set");
    sets.create(&PostParams::default(), &rs)
        .await
        .expect("create replica set");
    let owned = |pods: Api<Pod>| async move {
        let Ok(list) = pods.list(&ListParams::default().labels("app=db")).await else {
            return Vec::new();
        };
        list.items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                p.metadata.owner_references.as_ref().is_some_and(|r| {
                    r.iter()
                        .any(|r| r.name == "db" && r.controller == Some(true))
                })
            })
            .filter_map(|p| p.metadata.name)
            .collect::<Vec<_>>()
    };
    wait_for(
        "the orphan adopted and one pod created",
        Duration::from_secs(20),
        || {
            let pods = pods.clone();
            async move {
                let names = owned(pods).await;
                names.len() == 2 && names.iter().any(|n| n == "orphan")
            }
        },
    )
    .await;
    pods.delete("orphan", &Default::default())
        .await
        .expect("delete pod");
    wait_for("a replacement pod", Duration::from_secs(20), || {
        let pods = pods.clone();
        async move {
            let names = owned(pods).await;
            names.len() == 2 && !names.iter().any(|n| n == "orphan")
        }
    })
    .await;
    wait_for("status.readyReplicas 2", Duration::from_secs(20), || {
        let sets = sets.clone();
        async move {
            sets.get("db")
                .await
                .ok()
                .and_then(|rs| rs.status)
                .is_some_and(|s| {
                    s.replicas == 2
                        && s.ready_replicas == Some(2)
                        && s.available_replicas == Some(2)
                })
        }
    })
    .await;
}
