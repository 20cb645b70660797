//! The in-memory state machine (objects by key), its event history for watches, and its
//! snapshots on disk.
//!
//! The objects live only in memory; they are made durable by snapshots in
//! `data_dir/snapshots/`, and on open the latest snapshot is loaded and openraft re-applies the
//! log after it. Each snapshot file is one line of JSON metadata followed by the objects as a
//! JSON map; it is written to a temporary file, fsynced, renamed into place, and the directory is
//! fsynced, so a crash leaves either the old or the new snapshot, never half of one.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, StorageIOError,
};
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use super::types::{
    ApplyResult, Command, Entry, Event, EventKind, LogId, SnapshotMeta, StorageError, StoreError,
    StoredMembership, TypeConfig,
};

/// What the live watch channel carries.
#[derive(Clone, Debug)]
pub(crate) enum Live {
    Event(Event),
    /// The state was replaced by an installed snapshot: live watchers cannot continue.
    Reset {
        revision: u64,
    },
    /// The store shut down.
    Closed,
}

/// The state shared between the state machine (which writes it) and the store's readers.
pub(crate) struct Shared {
    data: RwLock<Data>,
    pub(crate) live: broadcast::Sender<Live>,
    /// the last applied index, for waiting on it
    pub(crate) applied: watch::Sender<u64>,
    history_limit: usize,
}

pub(crate) struct Data {
    pub(crate) objects: BTreeMap<String, Arc<Value>>,
    pub(crate) last_applied: Option<LogId>,
    pub(crate) membership: StoredMembership,
    /// the latest events, oldest first
    pub(crate) history: VecDeque<Event>,
    /// every event with a revision above this one is in `history`
    pub(crate) floor: u64,
}

impl Data {
    pub(crate) fn revision(&self) -> u64 {
        self.last_applied.map(|l| l.index).unwrap_or(0)
    }
}

impl Shared {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Data> {
        // A poisoned lock means a panic while applying; the data is still the best we have.
        self.data.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Data> {
        self.data.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// openraft's state machine: applies entries to [`Shared`] and keeps snapshots in `dir`.
pub(crate) struct StateMachine {
    shared: Arc<Shared>,
    dir: PathBuf,
}

/// Builds a snapshot of [`Shared`] on openraft's behalf, off the apply path.
pub(crate) struct SnapshotBuilder {
    shared: Arc<Shared>,
    dir: PathBuf,
}

impl StateMachine {
    /// Opens the state machine from the latest snapshot in `dir`, if any.
    pub(crate) async fn open(
        dir: PathBuf,
        history_limit: usize,
    ) -> Result<(StateMachine, Arc<Shared>), StoreError> {
        let d = dir.clone();
        let loaded = tokio::task::spawn_blocking(move || -> Result<_, String> {
            std::fs::create_dir_all(&d).map_err(|e| format!("create {}: {e}", d.display()))?;
            match latest_snapshot(&d)? {
                None => Ok(None),
                Some(path) => {
                    let (meta, data) = read_snapshot_file(&path)?;
                    let objects = decode_objects(&data)
                        .map_err(|e| format!("decode {}: {e}", path.display()))?;
                    Ok(Some((meta, objects)))
                }
            }
        })
        .await
        .map_err(|e| StoreError::Storage(format!("load snapshot from {}: {e}", dir.display())))?
        .map_err(|e| {
            StoreError::Storage(format!(
                "load snapshot: {e}; the data directory may be damaged"
            ))
        })?;

        let mut data = Data {
            objects: BTreeMap::new(),
            last_applied: None,
            membership: StoredMembership::default(),
            history: VecDeque::new(),
            floor: 0,
        };
        if let Some((meta, objects)) = loaded {
            tracing::info!(snapshot = %meta.snapshot_id, objects = objects.len(), "loaded snapshot");
            data.objects = objects;
            data.last_applied = meta.last_log_id;
            data.membership = meta.last_membership.clone();
            data.floor = data.revision();
        }
        let (live, _) = broadcast::channel(4096);
        let (applied, _) = watch::channel(data.revision());
        let shared = Arc::new(Shared {
            data: RwLock::new(data),
            live,
            applied,
            history_limit: history_limit.max(1),
        });
        Ok((
            StateMachine {
                shared: shared.clone(),
                dir,
            },
            shared,
        ))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (objects, last_applied, membership) = {
            let d = self.shared.read();
            (d.objects.clone(), d.last_applied, d.membership.clone())
        };
        // Serialising a large map takes tens of milliseconds: keep it off the async workers,
        // which on a small machine are also the ones serving requests.
        let (objects, bytes) = tokio::task::spawn_blocking(move || {
            let bytes = serde_json::to_vec(&objects);
            (objects, bytes)
        })
        .await
        .map_err(|e| StorageIOError::read_state_machine(&openraft::AnyError::error(e.to_string())))?;
        let bytes = bytes.map_err(|e| StorageIOError::read_state_machine(&e))?;
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id: snapshot_id(last_applied),
        };
        write_snapshot(&self.dir, &meta, &bytes).await?;
        tracing::info!(snapshot = %meta.snapshot_id, objects = objects.len(), "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let d = self.shared.read();
        Ok((d.last_applied, d.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Option<ApplyResult>>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut results = Vec::new();
        let revision = {
            let mut d = self.shared.write();
            for entry in entries {
                let index = entry.log_id.index;
                d.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => results.push(None),
                    EntryPayload::Membership(m) => {
                        d.membership = StoredMembership::new(Some(entry.log_id), m);
                        results.push(None);
                    }
                    EntryPayload::Normal(cmd) => {
                        let (result, event) = apply_command(&mut d.objects, index, cmd);
                        if let Some(ev) = event {
                            d.history.push_back(ev.clone());
                            while d.history.len() > self.shared.history_limit {
                                if let Some(old) = d.history.pop_front() {
                                    d.floor = old.revision;
                                }
                            }
                            // No receivers is normal; the event stays in the history.
                            let _ = self.shared.live.send(Live::Event(ev));
                        }
                        results.push(Some(result));
                    }
                }
            }
            d.revision()
        };
        self.shared.applied.send_replace(revision);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
            dir: self.dir.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let objects = decode_objects(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        // Durable first: after a crash the replica must restart from this snapshot, since the log
        // before it may be gone.
        write_snapshot(&self.dir, meta, &bytes).await?;
        let revision = {
            let mut d = self.shared.write();
            d.objects = objects;
            d.last_applied = meta.last_log_id;
            d.membership = meta.last_membership.clone();
            d.history.clear();
            d.floor = d.revision();
            let _ = self.shared.live.send(Live::Reset {
                revision: d.revision(),
            });
            d.revision()
        };
        tracing::info!(snapshot = %meta.snapshot_id, "installed snapshot");
        self.shared.applied.send_replace(revision);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let dir = self.dir.clone();
        let res = tokio::task::spawn_blocking(move || -> Result<_, String> {
            match latest_snapshot(&dir)? {
                None => Ok(None),
                Some(path) => read_snapshot_file(&path).map(Some),
            }
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        match res {
            Ok(None) => Ok(None),
            Ok(Some((meta, data))) => Ok(Some(Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(data)),
            })),
            Err(e) => Err(StorageIOError::new(
                ErrorSubject::Snapshot(None),
                ErrorVerb::Read,
                openraft::AnyError::error(e),
            )
            .into()),
        }
    }
}

/// Applies one command; deterministic (no clock, no randomness).
fn apply_command(
    objects: &mut BTreeMap<String, Arc<Value>>,
    index: u64,
    cmd: Command,
) -> (ApplyResult, Option<Event>) {
    match cmd {
        Command::Create { key, mut object } => {
            if objects.contains_key(&key) {
                return (ApplyResult::AlreadyExists, None);
            }
            set_rv(&mut object, index);
            let stored = Arc::new(object);
            objects.insert(key.clone(), stored.clone());
            let ev = Event {
                revision: index,
                kind: EventKind::Added,
                key,
                object: stored.clone(),
                prev: None,
            };
            (
                ApplyResult::Ok {
                    object: (*stored).clone(),
                },
                Some(ev),
            )
        }
        Command::Update {
            key,
            mut object,
            expected_rv,
        } => {
            let Some(prev) = objects.get(&key).cloned() else {
                return (ApplyResult::NotFound, None);
            };
            let current_rv = rv_of(&prev);
            if current_rv != expected_rv {
                return (ApplyResult::Conflict { current_rv }, None);
            }
            set_rv(&mut object, index);
            let stored = Arc::new(object);
            objects.insert(key.clone(), stored.clone());
            let ev = Event {
                revision: index,
                kind: EventKind::Modified,
                key,
                object: stored.clone(),
                prev: Some(prev),
            };
            (
                ApplyResult::Ok {
                    object: (*stored).clone(),
                },
                Some(ev),
            )
        }
        Command::Delete {
            key,
            expected_rv,
            expected_uid,
        } => {
            let Some(prev) = objects.get(&key).cloned() else {
                return (ApplyResult::NotFound, None);
            };
            let current_rv = rv_of(&prev);
            let rv_ok = expected_rv.is_none_or(|rv| rv == current_rv);
            let uid_ok = expected_uid
                .as_deref()
                .is_none_or(|uid| uid_of(&prev) == Some(uid));
            if !rv_ok || !uid_ok {
                return (ApplyResult::Conflict { current_rv }, None);
            }
            objects.remove(&key);
            let mut last = (*prev).clone();
            set_rv(&mut last, index);
            let last = Arc::new(last);
            let ev = Event {
                revision: index,
                kind: EventKind::Deleted,
                key,
                object: last.clone(),
                prev: Some(prev),
            };
            (
                ApplyResult::Ok {
                    object: (*last).clone(),
                },
                Some(ev),
            )
        }
    }
}

/// The revision stored in an object's metadata.resourceVersion (0 when absent).
pub(crate) fn rv_of(object: &Value) -> u64 {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn uid_of(object: &Value) -> Option<&str> {
    object.pointer("/metadata/uid").and_then(Value::as_str)
}

fn set_rv(object: &mut Value, index: u64) {
    let Some(map) = object.as_object_mut() else {
        return;
    };
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    if !meta.is_object() {
        *meta = Value::Object(Default::default());
    }
    if let Some(m) = meta.as_object_mut() {
        m.insert(
            "resourceVersion".to_string(),
            Value::String(index.to_string()),
        );
    }
}

fn decode_objects(bytes: &[u8]) -> Result<BTreeMap<String, Arc<Value>>, serde_json::Error> {
    serde_json::from_slice(bytes)
}

fn snapshot_id(last: Option<LogId>) -> String {
    match last {
        Some(l) => format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index),
        None => "empty".to_string(),
    }
}

const SNAP_PREFIX: &str = "snapshot-";
const SNAP_SUFFIX: &str = ".snap";

fn snapshot_file_name(meta: &SnapshotMeta) -> String {
    // Zero-padded so that the name sorts like the index.
    format!(
        "{SNAP_PREFIX}{:020}{SNAP_SUFFIX}",
        meta.last_log_id.map(|l| l.index).unwrap_or(0)
    )
}

/// The newest complete snapshot file in `dir`.
fn latest_snapshot(dir: &Path) -> Result<Option<PathBuf>, String> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("read {}: {e}", dir.display())),
    };
    let mut best: Option<(String, PathBuf)> = None;
    for ent in rd {
        let ent = ent.map_err(|e| format!("read {}: {e}", dir.display()))?;
        let name = ent.file_name().to_string_lossy().into_owned();
        if name.starts_with(SNAP_PREFIX)
            && name.ends_with(SNAP_SUFFIX)
            && best.as_ref().is_none_or(|(b, _)| &name > b)
        {
            best = Some((name, ent.path()));
        }
    }
    Ok(best.map(|(_, p)| p))
}

fn read_snapshot_file(path: &Path) -> Result<(SnapshotMeta, Vec<u8>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let nl = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| format!("{} has no metadata line", path.display()))?;
    let meta: SnapshotMeta = serde_json::from_slice(&bytes[..nl])
        .map_err(|e| format!("decode metadata of {}: {e}", path.display()))?;
    Ok((meta, bytes[nl + 1..].to_vec()))
}

async fn write_snapshot(dir: &Path, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
    let sig = meta.signature();
    let mut contents = serde_json::to_vec(meta)
        .map_err(|e| StorageIOError::write_snapshot(Some(sig.clone()), &e))?;
    contents.push(b'\n');
    contents.extend_from_slice(data);
    let dir = dir.to_path_buf();
    let name = snapshot_file_name(meta);
    let res =
        tokio::task::spawn_blocking(move || write_snapshot_blocking(&dir, &name, &contents)).await;
    match res {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(StorageIOError::write_snapshot(Some(sig), &e).into()),
        Err(e) => Err(StorageIOError::write_snapshot(Some(sig), &e).into()),
    }
}

fn write_snapshot_blocking(dir: &Path, name: &str, contents: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{name}"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    let dest = dir.join(name);
    std::fs::rename(&tmp, &dest)?;
    std::fs::File::open(dir)?.sync_all()?;
    // Older snapshots are no longer needed once the new one is durable.
    for ent in std::fs::read_dir(dir)? {
        let ent = ent?;
        let n = ent.file_name().to_string_lossy().into_owned();
        if n.starts_with(SNAP_PREFIX) && n.ends_with(SNAP_SUFFIX) && n.as_str() < name {
            if let Err(e) = std::fs::remove_file(ent.path()) {
                tracing::warn!(path = %ent.path().display(), error = %e, "could not remove an old snapshot");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn create_update_delete_follow_compare_and_set() {
        let mut objs = BTreeMap::new();
        let (r, ev) = apply_command(
            &mut objs,
            3,
            Command::Create {
                key: "a".into(),
                object: json!({"metadata": {"uid": "u1"}}),
            },
        );
        assert_eq!(
            r,
            ApplyResult::Ok {
                object: json!({"metadata": {"uid": "u1", "resourceVersion": "3"}})
            }
        );
        assert_eq!(ev.map(|e| e.kind), Some(EventKind::Added));
        let (r, _) = apply_command(
            &mut objs,
            4,
            Command::Create {
                key: "a".into(),
                object: json!({}),
            },
        );
        assert_eq!(r, ApplyResult::AlreadyExists);
        let (r, _) = apply_command(
            &mut objs,
            5,
            Command::Update {
                key: "a".into(),
                object: json!({"metadata": {"uid": "u1"}}),
                expected_rv: 2,
            },
        );
        assert_eq!(r, ApplyResult::Conflict { current_rv: 3 });
        let (r, ev) = apply_command(
            &mut objs,
            6,
            Command::Update {
                key: "a".into(),
                object: json!({"metadata": {"uid": "u1"}}),
                expected_rv: 3,
            },
        );
        assert_eq!(
            rv_of(match &r {
                ApplyResult::Ok { object } => object,
                _ => &Value::Null,
            }),
            6
        );
        assert_eq!(ev.and_then(|e| e.prev).map(|p| rv_of(&p)), Some(3));
        let (r, _) = apply_command(
            &mut objs,
            7,
            Command::Delete {
                key: "a".into(),
                expected_rv: None,
                expected_uid: Some("other".into()),
            },
        );
        assert_eq!(r, ApplyResult::Conflict { current_rv: 6 });
        let (r, ev) = apply_command(
            &mut objs,
            8,
            Command::Delete {
                key: "a".into(),
                expected_rv: Some(6),
                expected_uid: Some("u1".into()),
            },
        );
        assert!(matches!(r, ApplyResult::Ok { .. }));
        let ev = ev.expect("delete publishes an event");
        assert_eq!((ev.kind, rv_of(&ev.object)), (EventKind::Deleted, 8));
        let (r, _) = apply_command(
            &mut objs,
            9,
            Command::Delete {
                key: "a".into(),
                expected_rv: None,
                expected_uid: None,
            },
        );
        assert_eq!(r, ApplyResult::NotFound);
        let (r, _) = apply_command(
            &mut objs,
            10,
            Command::Update {
                key: "a".into(),
                object: json!({}),
                expected_rv: 8,
            },
        );
        assert_eq!(r, ApplyResult::NotFound);
    }
}
