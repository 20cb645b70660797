//! The in-memory state machine (objects by key), its event history for watches, and its
//! snapshots on disk.
//!
//! The objects live only in memory; they are made durable by snapshots in
//! `data_dir/snapshots/`, and on open the latest snapshot is loaded and openraft re-applies the
//! log after it. Each snapshot file is one line of JSON metadata followed by the revision and
//! the objects as JSON (`{"revision":N,"objects":{...}}`; older files hold only the objects map);
//! it is written to a temporary file, fsynced, renamed into place, and the directory is fsynced,
//! so a crash leaves either the old or the new snapshot, never half of one.
//!
//! Revisions: every change gets the next revision, and after each log entry the revision is at
//! least the entry's log index. Without batching that makes a change's revision its log index;
//! a [`Command::Batch`] entry gives each of its changes its own revision, so the revision may run
//! ahead of the log index. It is a pure function of the log, so every replica agrees on it.

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
    Applied, ApplyResult, Command, Entry, Event, EventKind, LogId, SnapshotMeta, StorageError, StoreError,
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
    /// the revision of the latest change (see the module doc)
    pub(crate) rev: u64,
    pub(crate) membership: StoredMembership,
    /// the latest events, oldest first
    pub(crate) history: VecDeque<Event>,
    /// every event with a revision above this one is in `history`
    pub(crate) floor: u64,
}

impl Data {
    pub(crate) fn revision(&self) -> u64 {
        self.rev
    }

    /// The index of the last applied log entry (what read barriers wait for).
    pub(crate) fn applied_index(&self) -> u64 {
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
                    let state = decode_state(&data, &meta)
                        .map_err(|e| format!("decode {}: {e}", path.display()))?;
                    Ok(Some((meta, state)))
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
            rev: 0,
            membership: StoredMembership::default(),
            history: VecDeque::new(),
            floor: 0,
        };
        if let Some((meta, state)) = loaded {
            tracing::info!(snapshot = %meta.snapshot_id, objects = state.objects.len(), "loaded snapshot");
            data.objects = state.objects;
            data.rev = state.revision;
            data.last_applied = meta.last_log_id;
            data.membership = meta.last_membership.clone();
            data.floor = data.revision();
        }
        let (live, _) = broadcast::channel(4096);
        let (applied, _) = watch::channel(data.applied_index());
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
        let (objects, revision, last_applied, membership) = {
            let d = self.shared.read();
            (d.objects.clone(), d.rev, d.last_applied, d.membership.clone())
        };
        // Serialising a large map takes tens of milliseconds: keep it off the async workers,
        // which on a small machine are also the ones serving requests.
        let (objects, bytes) = tokio::task::spawn_blocking(move || {
            let bytes = serde_json::to_vec(&SnapshotState {
                revision,
                objects: &objects,
            });
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

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut results = Vec::new();
        let applied = {
            let mut guard = self.shared.write();
            let d = &mut *guard;
            for entry in entries {
                let index = entry.log_id.index;
                d.last_applied = Some(entry.log_id);
                let mut answers = Vec::new();
                match entry.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Membership(m) => {
                        d.membership = StoredMembership::new(Some(entry.log_id), m);
                    }
                    EntryPayload::Normal(cmd) => {
                        let mut cmds = Vec::new();
                        flatten(cmd, &mut cmds);
                        for cmd in cmds {
                            let (revision, result, event) =
                                apply_command(&mut d.objects, &mut d.rev, index, cmd);
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
                            answers.push((revision, result));
                        }
                    }
                }
                d.rev = d.rev.max(index);
                results.push(answers);
            }
            d.applied_index()
        };
        self.shared.applied.send_replace(applied);
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
        let state = decode_state(&bytes, meta)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        // Durable first: after a crash the replica must restart from this snapshot, since the log
        // before it may be gone.
        write_snapshot(&self.dir, meta, &bytes).await?;
        let applied = {
            let mut d = self.shared.write();
            d.objects = state.objects;
            d.rev = state.revision;
            d.last_applied = meta.last_log_id;
            d.membership = meta.last_membership.clone();
            d.history.clear();
            d.floor = d.revision();
            let _ = self.shared.live.send(Live::Reset {
                revision: d.revision(),
            });
            d.applied_index()
        };
        tracing::info!(snapshot = %meta.snapshot_id, "installed snapshot");
        self.shared.applied.send_replace(applied);
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

/// Appends `cmd`'s members to `out` in order (a plain command is its own only member).
fn flatten(cmd: Command, out: &mut Vec<Command>) {
    match cmd {
        Command::Batch(cmds) => {
            for c in cmds {
                flatten(c, out);
            }
        }
        other => out.push(other),
    }
}

/// Applies one command of the entry at log `index`; deterministic (no clock, no randomness).
/// A change takes the next revision (at least `index`) and advances `rev` to it; the answer's
/// revision is the change's, or for a refused command the current one.
fn apply_command(
    objects: &mut BTreeMap<String, Arc<Value>>,
    rev: &mut u64,
    index: u64,
    cmd: Command,
) -> (u64, ApplyResult, Option<Event>) {
    let next = (*rev + 1).max(index);
    let (result, event) = apply_change(objects, next, cmd);
    if event.is_some() {
        *rev = next;
        (next, result, event)
    } else {
        ((*rev).max(index), result, event)
    }
}

/// Applies one plain command as the change at revision `index`.
fn apply_change(
    objects: &mut BTreeMap<String, Arc<Value>>,
    index: u64,
    cmd: Command,
) -> (ApplyResult, Option<Event>) {
    match cmd {
        // `flatten` has taken batches apart; one that got here anyway changes nothing
        Command::Batch(_) => (ApplyResult::NotFound, None),
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

/// A snapshot's data: the revision and the objects.
#[derive(serde::Serialize)]
struct SnapshotState<'a> {
    revision: u64,
    objects: &'a BTreeMap<String, Arc<Value>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadedState {
    revision: u64,
    objects: BTreeMap<String, Arc<Value>>,
}

/// Decodes a snapshot's data; a file from before batching holds only the objects map, and its
/// revision was then the last applied index.
fn decode_state(bytes: &[u8], meta: &SnapshotMeta) -> Result<LoadedState, serde_json::Error> {
    match serde_json::from_slice::<LoadedState>(bytes) {
        Ok(s) => Ok(s),
        Err(e) => match serde_json::from_slice::<BTreeMap<String, Arc<Value>>>(bytes) {
            Ok(objects) => Ok(LoadedState {
                revision: meta.last_log_id.map(|l| l.index).unwrap_or(0),
                objects,
            }),
            Err(_) => Err(e),
        },
    }
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
        let (r, ev) = apply_change(
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
        let (r, _) = apply_change(
            &mut objs,
            4,
            Command::Create {
                key: "a".into(),
                object: json!({}),
            },
        );
        assert_eq!(r, ApplyResult::AlreadyExists);
        let (r, _) = apply_change(
            &mut objs,
            5,
            Command::Update {
                key: "a".into(),
                object: json!({"metadata": {"uid": "u1"}}),
                expected_rv: 2,
            },
        );
        assert_eq!(r, ApplyResult::Conflict { current_rv: 3 });
        let (r, ev) = apply_change(
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
        let (r, _) = apply_change(
            &mut objs,
            7,
            Command::Delete {
                key: "a".into(),
                expected_rv: None,
                expected_uid: Some("other".into()),
            },
        );
        assert_eq!(r, ApplyResult::Conflict { current_rv: 6 });
        let (r, ev) = apply_change(
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
        let (r, _) = apply_change(
            &mut objs,
            9,
            Command::Delete {
                key: "a".into(),
                expected_rv: None,
                expected_uid: None,
            },
        );
        assert_eq!(r, ApplyResult::NotFound);
        let (r, _) = apply_change(
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

    #[test]
    fn a_batch_gives_each_change_its_own_revision() {
        let mut objs = BTreeMap::new();
        let mut rev = 4;
        let mut answers = Vec::new();
        let mut cmds = Vec::new();
        flatten(
            Command::Batch(vec![
                Command::Create { key: "a".into(), object: json!({}) },
                Command::Create { key: "a".into(), object: json!({}) },
                Command::Batch(vec![Command::Create { key: "b".into(), object: json!({}) }]),
                Command::Update { key: "a".into(), object: json!({}), expected_rv: 7 },
            ]),
            &mut cmds,
        );
        for cmd in cmds {
            let (r, result, _) = apply_command(&mut objs, &mut rev, 7, cmd);
            answers.push((r, result));
        }
        // the first change takes the entry's index, later ones count on from it
        assert_eq!(answers[0].0, 7);
        assert_eq!(answers[1], (7, ApplyResult::AlreadyExists));
        assert_eq!(answers[2].0, 8);
        assert_eq!(answers[3].0, 9, "the update saw the first create's revision");
        assert_eq!(rv_of(&objs["a"]), 9);
        assert_eq!(rv_of(&objs["b"]), 8);
        assert_eq!(rev, 9);
        // the next entry's first change comes after the batch, even below its index
        let (r, _, _) = apply_command(&mut objs, &mut rev, 8, Command::Create { key: "c".into(), object: json!({}) });
        assert_eq!(r, 10);
    }

    #[test]
    fn snapshots_of_both_formats_decode() {
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), 12)),
            last_membership: StoredMembership::default(),
            snapshot_id: "s".into(),
        };
        let mut objects = BTreeMap::new();
        objects.insert("a".to_string(), Arc::new(json!({"metadata": {"resourceVersion": "3"}})));
        let new = serde_json::to_vec(&SnapshotState { revision: 40, objects: &objects }).expect("encode");
        let s = decode_state(&new, &meta).expect("new format");
        assert_eq!((s.revision, s.objects.len()), (40, 1));
        let old = serde_json::to_vec(&objects).expect("encode");
        let s = decode_state(&old, &meta).expect("old format");
        assert_eq!((s.revision, s.objects.len()), (12, 1), "an old snapshot's revision is its index");
        assert!(decode_state(b"[1]", &meta).is_err());
    }
}
