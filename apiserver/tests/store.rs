//! Integration tests of the Raft-replicated store: several replicas in one process, each with
//! its peer router served over plain HTTP on 127.0.0.1:0 and its data in a temporary directory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apiserver::store::{
    ApplyResult, Command, EventKind, Replica, ReplicaId, Store, StoreConfig, StoreError,
};
use futures::StreamExt;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One running replica; the server task is aborted on drop so a failed test leaves nothing behind.
struct Running {
    id: ReplicaId,
    store: Store,
    replica: Replica,
    dir: PathBuf,
    server: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("build a plain http client")
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn bind(addr: &str) -> TcpListener {
    // A port released a moment ago can be briefly busy; retry before giving up.
    for _ in 0..50 {
        if let Ok(l) = TcpListener::bind(addr).await {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("could not bind {addr}");
}

async fn start(
    id: ReplicaId,
    dir: &Path,
    listener: TcpListener,
    tune: &dyn Fn(&mut StoreConfig),
) -> Running {
    let addr = listener.local_addr().expect("listener address").to_string();
    let replica = Replica {
        api_addr: format!("api-{id}.invalid:443"),
        peer_addr: addr,
    };
    let mut cfg = StoreConfig::new(id, dir.to_path_buf(), replica.clone(), client(), "http");
    tune(&mut cfg);
    let store = Store::open(cfg).await.expect("open store");
    let router = store.peer_router();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Running {
        id,
        store,
        replica,
        dir: dir.to_path_buf(),
        server,
    }
}

async fn cluster(n: u64, root: &Path, tune: &dyn Fn(&mut StoreConfig)) -> Vec<Running> {
    let mut nodes = Vec::new();
    for id in 1..=n {
        let listener = bind("127.0.0.1:0").await;
        nodes.push(start(id, &root.join(format!("r{id}")), listener, tune).await);
    }
    let members: BTreeMap<ReplicaId, Replica> =
        nodes.iter().map(|r| (r.id, r.replica.clone())).collect();
    for r in &nodes {
        r.store
            .initialize(members.clone())
            .await
            .expect("initialize");
    }
    nodes
}

async fn wait_leader(nodes: &[&Running], not: Option<ReplicaId>) -> ReplicaId {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let leaders: BTreeSet<Option<ReplicaId>> = nodes.iter().map(|r| r.store.leader()).collect();
        if leaders.len() == 1 {
            if let Some(Some(l)) = leaders.into_iter().next() {
                if Some(l) != not && nodes.iter().any(|r| r.id == l) {
                    return l;
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader elected in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_revision(store: &Store, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.revision() < at_least {
        assert!(
            Instant::now() < deadline,
            "replica {} stuck at revision {} < {at_least}",
            store.id(),
            store.revision()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn obj(name: &str) -> serde_json::Value {
    json!({"kind": "ConfigMap", "metadata": {"name": name, "uid": format!("uid-{name}")}, "data": {"k": name}})
}

fn create(key: &str) -> Command {
    Command::Create {
        key: key.to_string(),
        object: obj(key),
    }
}

fn rv(v: &serde_json::Value) -> u64 {
    v.pointer("/metadata/resourceVersion")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_conflicts_watch_and_read_barrier_on_every_replica() {
    init_tracing();
    let tmp = tempfile::tempdir().expect("tempdir");
    let nodes = cluster(3, tmp.path(), &|_| {}).await;
    let refs: Vec<&Running> = nodes.iter().collect();
    let leader = wait_leader(&refs, None).await;
    let follower = nodes.iter().find(|r| r.id != leader).expect("a follower");

    let mut watch = follower.store.watch("/cm/", 0).expect("watch from 0");

    // Writes through every replica, including forwarding from followers.
    let mut expected = Vec::new();
    for i in 0..30 {
        let key = format!("/cm/{i:02}");
        let (index, res) = nodes[i % 3].store.write(create(&key)).await.expect("write");
        let ApplyResult::Ok { object } = res else {
            panic!("create {key}: {res:?}")
        };
        assert_eq!(rv(&object), index, "resourceVersion is the log index");
        expected.push((index, EventKind::Added, key));
    }

    // Creating an existing key fails on every replica.
    for r in &nodes {
        let (_, res) = r.store.write(create("/cm/00")).await.expect("write");
        assert_eq!(res, ApplyResult::AlreadyExists);
    }

    // Compare-and-set: a stale revision is a conflict on every replica.
    let key = "/cm/cas".to_string();
    let (i1, _) = nodes[0].store.write(create(&key)).await.expect("create");
    expected.push((i1, EventKind::Added, key.clone()));
    let (i2, res) = nodes[1]
        .store
        .write(Command::Update {
            key: key.clone(),
            object: obj("cas2"),
            expected_rv: i1,
        })
        .await
        .expect("update");
    assert!(matches!(res, ApplyResult::Ok { .. }), "{res:?}");
    expected.push((i2, EventKind::Modified, key.clone()));
    for r in &nodes {
        let (_, res) = r
            .store
            .write(Command::Update {
                key: key.clone(),
                object: obj("stale"),
                expected_rv: i1,
            })
            .await
            .expect("update");
        assert_eq!(res, ApplyResult::Conflict { current_rv: i2 });
    }
    let (_, res) = nodes[2]
        .store
        .write(Command::Delete {
            key: "/cm/missing".into(),
            expected_rv: None,
            expected_uid: None,
        })
        .await
        .expect("delete");
    assert_eq!(res, ApplyResult::NotFound);
    let (i3, res) = nodes[2]
        .store
        .write(Command::Delete {
            key: "/cm/00".into(),
            expected_rv: None,
            expected_uid: Some("uid-/cm/00".into()),
        })
        .await
        .expect("delete");
    let ApplyResult::Ok { object } = res else {
        panic!("delete: {res:?}")
    };
    assert_eq!(rv(&object), i3);
    expected.push((i3, EventKind::Deleted, "/cm/00".to_string()));

    // A read barrier on a follower covers the last acknowledged write.
    let at = follower.store.read_barrier().await.expect("read barrier");
    assert!(at >= i3, "read barrier {at} < last write {i3}");
    assert!(follower.store.get("/cm/00").is_none());
    let cas = follower
        .store
        .get(&key)
        .expect("updated object on the follower");
    assert_eq!(rv(&cas), i2);
    let (items, list_rv) = follower.store.list("/cm/");
    assert_eq!(items.len(), 30, "29 created keys left plus /cm/cas");
    assert!(list_rv >= i3);

    // The follower's watch saw every change, in order.
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let ev = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("watch event in time")
            .expect("watch stream open")
            .expect("watch event");
        seen.push((ev.revision, ev.kind, ev.key.clone()));
        if ev.kind != EventKind::Added {
            assert!(
                ev.prev.is_some(),
                "{:?} carries the previous object",
                ev.kind
            );
        }
    }
    assert_eq!(seen, expected);

    let status = follower.store.cluster_status().await;
    assert_eq!(status.leader, Some(leader));
    assert_eq!(status.replicas.len(), 3);
    assert!(
        status.replicas.iter().all(|r| r.healthy && r.voter),
        "{status:?}"
    );
    assert_eq!(
        status
            .replicas
            .iter()
            .filter(|r| r.role == "leader")
            .count(),
        1
    );

    for r in &nodes {
        r.store.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_failover_keeps_acknowledged_writes_and_old_leader_catches_up() {
    init_tracing();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut nodes = cluster(3, tmp.path(), &|_| {}).await;
    let refs: Vec<&Running> = nodes.iter().collect();
    let leader = wait_leader(&refs, None).await;

    // A stream of writes through a follower that survives.
    let writer_store = nodes
        .iter()
        .find(|r| r.id != leader)
        .expect("follower")
        .store
        .clone();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) && i < 2000 {
                let key = format!("/w/{i:05}");
                i += 1;
                // An error is an unacknowledged write: it may or may not be there.
                if let Ok((_, ApplyResult::Ok { .. })) = writer_store.write(create(&key)).await {
                    acked.lock().expect("lock").push(key);
                }
            }
        })
    };
    let wait_acks = |n: usize| {
        let acked = acked.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while acked.lock().expect("lock").len() < n {
                assert!(Instant::now() < deadline, "writes did not progress");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_acks(20).await;

    // Kill the leader mid-stream.
    let pos = nodes
        .iter()
        .position(|r| r.id == leader)
        .expect("leader present");
    let old = nodes.remove(pos);
    old.store.shutdown().await.expect("shutdown leader");
    old.server.abort();
    let (old_id, old_dir, old_addr) = (old.id, old.dir.clone(), old.replica.peer_addr.clone());
    drop(old);
    let before = acked.lock().expect("lock").len();

    let survivors: Vec<&Running> = nodes.iter().collect();
    let new_leader = wait_leader(&survivors, Some(old_id)).await;
    assert_ne!(new_leader, old_id);
    wait_acks(before + 20).await;
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("writer task");

    let acked: Vec<String> = acked.lock().expect("lock").clone();
    for r in &nodes {
        r.store
            .read_barrier()
            .await
            .expect("read barrier on a survivor");
        for key in &acked {
            assert!(
                r.store.get(key).is_some(),
                "acknowledged {key} missing on replica {}",
                r.id
            );
        }
    }

    // Writes go on, and the old leader, re-opened from its data directory, catches up.
    let (last, _) = nodes[0]
        .store
        .write(create("/w/after"))
        .await
        .expect("write after failover");
    let listener = bind(&old_addr).await;
    let back = start(old_id, &old_dir, listener, &|_| {}).await;
    wait_revision(&back.store, last).await;
    for key in acked.iter().chain(std::iter::once(&"/w/after".to_string())) {
        assert!(
            back.store.get(key).is_some(),
            "{key} missing on the re-opened replica"
        );
    }
    let at = back
        .store
        .read_barrier()
        .await
        .expect("read barrier on the re-opened replica");
    assert!(at >= last);

    back.store.shutdown().await.expect("shutdown");
    for r in &nodes {
        r.store.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshots_purge_the_log_and_a_new_replica_catches_up_from_one() {
    init_tracing();
    let tmp = tempfile::tempdir().expect("tempdir");
    let tune = |c: &mut StoreConfig| {
        c.snapshot_every = 50;
        c.logs_kept_after_snapshot = 0;
    };
    let nodes = cluster(3, tmp.path(), &tune).await;
    let refs: Vec<&Running> = nodes.iter().collect();
    let leader = wait_leader(&refs, None).await;
    let leader = nodes.iter().find(|r| r.id == leader).expect("leader");

    let mut last = 0;
    for i in 0..130 {
        let (index, res) = leader
            .store
            .write(create(&format!("/s/{i:03}")))
            .await
            .expect("write");
        assert!(matches!(res, ApplyResult::Ok { .. }));
        last = index;
    }
    // Snapshots are built in the background; wait for the purge that follows them.
    let deadline = Instant::now() + Duration::from_secs(10);
    while leader.store.purged_index() < 90 {
        assert!(
            Instant::now() < deadline,
            "log not purged: purged up to {}",
            leader.store.purged_index()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let snaps: Vec<_> = std::fs::read_dir(leader.dir.join("snapshots"))
        .expect("snapshot dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".snap"))
        .collect();
    assert_eq!(snaps.len(), 1, "older snapshots are removed");

    // A new replica, added through a follower, gets a snapshot and then the log after it.
    let listener = bind("127.0.0.1:0").await;
    let new = start(4, &tmp.path().join("r4"), listener, &tune).await;
    let follower = nodes.iter().find(|r| r.id != leader.id).expect("follower");
    follower
        .store
        .add_replica(4, new.replica.clone())
        .await
        .expect("add replica");
    wait_revision(&new.store, last).await;
    assert!(
        new.store.snapshot_index() >= 90,
        "new replica installed a snapshot"
    );
    let (items, _) = new.store.list("/s/");
    assert_eq!(items.len(), 130);

    // History from before the installed snapshot is gone.
    match new.store.watch("/s/", 1) {
        Err(StoreError::Gone {
            requested: 1,
            oldest,
        }) => assert!(oldest >= 90),
        Err(e) => panic!("expected Gone, got {e}"),
        Ok(_) => panic!("expected Gone, got a stream"),
    }

    // The new replica votes and serves writes.
    let (index, _) = new
        .store
        .write(create("/s/new"))
        .await
        .expect("write through the new replica");
    let at = new.store.read_barrier().await.expect("read barrier");
    assert!(at >= index);
    let status = leader.store.cluster_status().await;
    assert_eq!(status.replicas.len(), 4);
    assert!(
        status.replicas.iter().all(|r| r.voter && r.healthy),
        "{status:?}"
    );

    // Removing it again leaves three voters.
    leader
        .store
        .remove_replica(4)
        .await
        .expect("remove replica");
    let status = leader.store.cluster_status().await;
    assert_eq!(status.replicas.len(), 3);

    new.store.shutdown().await.expect("shutdown");
    for r in &nodes {
        r.store.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_revision_trimmed_from_history_is_gone() {
    init_tracing();
    let tmp = tempfile::tempdir().expect("tempdir");
    let nodes = cluster(1, tmp.path(), &|c| c.history_limit = 5).await;
    for i in 0..10 {
        nodes[0]
            .store
            .write(create(&format!("/h/{i}")))
            .await
            .expect("write");
    }
    let rev = nodes[0].store.revision();
    assert!(matches!(
        nodes[0].store.watch("/h/", 0),
        Err(StoreError::Gone { requested: 0, .. })
    ));
    // Within the kept history the stream replays it.
    let mut w = nodes[0]
        .store
        .watch("/h/", rev - 2)
        .expect("watch within history");
    let ev = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("event")
        .expect("open")
        .expect("ok");
    assert_eq!(ev.revision, rev - 1);
    nodes[0].store.shutdown().await.expect("shutdown");
    // Watches end when the store shuts down, with an Unavailable item.
    let last = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match w.next().await {
                Some(Ok(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("watch ends on shutdown");
    assert!(
        matches!(last, Some(Err(StoreError::Unavailable(_)))),
        "{last:?}"
    );
}
