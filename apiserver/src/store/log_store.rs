//! The Raft log, vote and committed index: kept in memory for reads, and written to a redb
//! database by one writer thread that commits with `Durability::Immediate` (an fsync).
//!
//! Why a writer thread: openraft 0.9 awaits `append`, `purge` and `save_committed` inside its
//! single core loop, so an fsync there would stall all of Raft. Instead `append` records the
//! entries in memory (openraft requires them readable on return), hands them to the writer, and
//! returns; the writer drains everything queued, applies it in order in one transaction, fsyncs
//! once, and only then calls each append's `LogFlushed` callback. openraft counts an entry as
//! replicated on this replica only after that callback, so a write is still acknowledged only
//! once a majority has it on disk — and concurrent writes share one fsync (group commit).
//! `save_vote` waits for its fsync, as Raft requires before a vote is answered.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::Duration;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError, Vote};
use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;

use super::types::{Entry, LogId, ReplicaId, StorageError, StoreError, TypeConfig};

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";

/// The log store; clones share the memory copy and the writer.
#[derive(Clone)]
pub(crate) struct LogStore {
    mem: Arc<Mutex<Mem>>,
    writer: mpsc::Sender<Op>,
    /// read directly for entries older than the memory copy keeps
    db: Arc<Database>,
    /// the highest index the writer has made durable
    durable: Arc<std::sync::atomic::AtomicU64>,
}

/// How many recent entries stay in memory once they are on disk: enough for any follower that
/// is merely slow; one further behind is served from the database.
const MEM_ENTRIES: usize = 8_192;

/// What the log holds, as openraft last told us (ahead of the disk by at most one batch).
#[derive(Default)]
struct Mem {
    entries: BTreeMap<u64, Entry>,
    vote: Option<Vote<ReplicaId>>,
    committed: Option<LogId>,
    purged: Option<LogId>,
}

/// One change for the writer thread, applied in the order sent.
enum Op {
    Append(Vec<Entry>, LogFlushed<TypeConfig>),
    Truncate(u64),
    Purge(LogId),
    Meta { key: &'static str, value: Vec<u8>, done: Option<tokio::sync::oneshot::Sender<Result<(), String>>> },
}

impl LogStore {
    /// Opens (or creates) the log database at `path`, loads it, and starts its writer thread.
    pub(crate) async fn open(path: PathBuf) -> Result<LogStore, StoreError> {
        // A store shut down a moment ago in this process may still have its writer holding the
        // database; redb refuses a second open, so wait briefly for it to go.
        let mut attempts = 0;
        let (db, mem) = loop {
            let p = path.clone();
            let res = tokio::task::spawn_blocking(move || open_db(&p).map(|db| {
                let mem = load(&db);
                (db, mem)
            }))
            .await
            .map_err(|e| StoreError::Storage(format!("open {}: {e}", path.display())))?;
            match res {
                Ok((db, Ok(mem))) => break (db, mem),
                Ok((_, Err(e))) => {
                    return Err(StoreError::Storage(format!("read raft log {}: {e}", path.display())))
                }
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if attempts < 50 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    return Err(StoreError::Storage(format!(
                        "open raft log {}: {e}; check the data directory's permissions and free space",
                        path.display()
                    )))
                }
            }
        };
        let (tx, rx) = mpsc::channel();
        let db = Arc::new(db);
        let last = mem.entries.keys().next_back().copied().unwrap_or(0);
        let durable = Arc::new(std::sync::atomic::AtomicU64::new(last));
        let (wdb, wdurable) = (db.clone(), durable.clone());
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer(&wdb, rx, &wdurable))
            .map_err(|e| StoreError::Storage(format!("start the raft log writer: {e}")))?;
        Ok(LogStore { mem: Arc::new(Mutex::new(mem)), writer: tx, db, durable })
    }

    fn mem(&self) -> MutexGuard<'_, Mem> {
        // a panic while holding the lock leaves plain data that is still consistent
        self.mem.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, op: Op, subject: ErrorSubject<ReplicaId>) -> Result<(), StorageError> {
        self.writer.send(op).map_err(|_| {
            StorageIOError::new(subject, ErrorVerb::Write, openraft::AnyError::error("the raft log writer has stopped")).into()
        })
    }

    async fn write_meta_durably<T: serde::Serialize>(
        &self,
        key: &'static str,
        value: &T,
        subject: ErrorSubject<ReplicaId>,
    ) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value).map_err(|e| StorageIOError::new(subject.clone(), ErrorVerb::Write, &e))?;
        let (done, wait) = tokio::sync::oneshot::channel();
        self.send(Op::Meta { key, value: bytes, done: Some(done) }, subject.clone())?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(msg)) => Err(StorageIOError::new(subject, ErrorVerb::Write, openraft::AnyError::error(msg)).into()),
            Err(_) => Err(StorageIOError::new(subject, ErrorVerb::Write, openraft::AnyError::error("the raft log writer has stopped")).into()),
        }
    }
}

fn open_db(path: &Path) -> Result<Database, redb::DatabaseError> {
    let db = Database::create(path)?;
    // Create the tables up front so that read transactions never meet a missing table.
    let init = || -> Result<(), String> {
        let txn = begin_durable(&db)?;
        txn.open_table(LOGS).map_err(|e| e.to_string())?;
        txn.open_table(META).map_err(|e| e.to_string())?;
        txn.commit().map_err(|e| e.to_string())
    };
    init().map_err(|e| redb::DatabaseError::Storage(redb::StorageError::Io(std::io::Error::other(e))))?;
    Ok(db)
}

fn begin_durable(db: &Database) -> Result<redb::WriteTransaction, String> {
    let mut txn = db.begin_write().map_err(|e| e.to_string())?;
    txn.set_durability(Durability::Immediate);
    Ok(txn)
}

fn get_meta<T: DeserializeOwned>(db: &Database, key: &str) -> Result<Option<T>, String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let t = txn.open_table(META).map_err(|e| e.to_string())?;
    match t.get(key).map_err(|e| e.to_string())? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(v.value()).map(Some).map_err(|e| format!("decode {key}: {e}")),
    }
}

/// Reads the whole log (what the last snapshot did not purge) and the metadata into memory.
fn load(db: &Database) -> Result<Mem, String> {
    let mut mem = Mem {
        vote: get_meta(db, KEY_VOTE)?,
        committed: get_meta::<Option<LogId>>(db, KEY_COMMITTED)?.flatten(),
        purged: get_meta(db, KEY_PURGED)?,
        ..Mem::default()
    };
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let t = txn.open_table(LOGS).map_err(|e| e.to_string())?;
    let floor = mem.purged.map(|p| p.index);
    for item in t.iter().map_err(|e| e.to_string())? {
        let (k, v) = item.map_err(|e| e.to_string())?;
        // entries at or below the purge point may survive a crash between the two purge steps
        if floor.is_some_and(|f| k.value() <= f) {
            continue;
        }
        let entry: Entry = serde_json::from_slice(v.value()).map_err(|e| format!("decode log entry {}: {e}", k.value()))?;
        mem.entries.insert(k.value(), entry);
    }
    Ok(mem)
}

/// How many purged entries one background transaction deletes, so that a purge after a
/// snapshot (thousands of entries) never holds up appends for long.
const PURGE_CHUNK: u64 = 512;

/// The writer thread: batches whatever is queued into one transaction and one fsync.
fn writer(db: &Database, rx: mpsc::Receiver<Op>, durable: &std::sync::atomic::AtomicU64) {
    // Entries at or below a recorded purge point are dead (load skips them), so deleting them
    // from disk can trail behind, a chunk at a time, between batches.
    let mut purge_to: Option<u64> = None;
    let mut purged_on_disk: u64 = 0;
    loop {
        let first = if purge_to.is_some_and(|p| purged_on_disk < p) {
            match rx.recv_timeout(Duration::from_millis(5)) {
                Ok(op) => Some(op),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        } else {
            match rx.recv() {
                Ok(op) => Some(op),
                Err(_) => return,
            }
        };
        let Some(first) = first else {
            if let Some(target) = purge_to {
                match delete_chunk(db, target) {
                    Ok(done_to) => purged_on_disk = done_to,
                    Err(e) => {
                        tracing::warn!(error = %e, "trimming the purged raft log failed; will retry");
                    }
                }
            }
            continue;
        };
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        for op in &batch {
            if let Op::Purge(upto) = op {
                purge_to = Some(purge_to.map_or(upto.index, |p| p.max(upto.index)));
            }
        }
        let result = write_batch(db, &batch);
        if let Err(e) = &result {
            tracing::error!(error = %e, "writing the raft log failed");
        }
        if result.is_ok() {
            for op in &batch {
                match op {
                    Op::Append(entries, _) => {
                        if let Some(last) = entries.last() {
                            durable.store(last.log_id.index, std::sync::atomic::Ordering::Release);
                        }
                    }
                    Op::Truncate(from) => {
                        durable.fetch_min(from.saturating_sub(1), std::sync::atomic::Ordering::AcqRel);
                    }
                    _ => {}
                }
            }
        }
        for op in batch {
            match op {
                Op::Append(_, callback) => {
                    callback.log_io_completed(result.clone().map_err(std::io::Error::other));
                }
                Op::Meta { done: Some(done), .. } => {
                    let _ = done.send(result.clone());
                }
                _ => {}
            }
        }
    }
}

fn write_batch(db: &Database, batch: &[Op]) -> Result<(), String> {
    // The committed index alone is a hint nobody waits for: it need not cost an fsync of its
    // own (followers would otherwise pay one per AppendEntries on top of the entries' fsync); the
    // next durable commit carries it to disk.
    let hint_only = batch.iter().all(|op| matches!(op, Op::Meta { done: None, .. }));
    let txn = if hint_only {
        let mut txn = db.begin_write().map_err(|e| e.to_string())?;
        txn.set_durability(Durability::None);
        txn
    } else {
        begin_durable(db)?
    };
    {
        let mut logs = txn.open_table(LOGS).map_err(|e| e.to_string())?;
        let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
        for op in batch {
            match op {
                Op::Append(entries, _) => {
                    for e in entries {
                        let bytes = serde_json::to_vec(e).map_err(|err| format!("encode log entry {}: {err}", e.log_id.index))?;
                        logs.insert(e.log_id.index, bytes.as_slice()).map_err(|e| e.to_string())?;
                    }
                }
                Op::Truncate(from) => {
                    logs.retain_in::<u64, _>((Bound::Included(*from), Bound::Unbounded), |_, _| false)
                        .map_err(|e| e.to_string())?;
                }
                Op::Purge(upto) => {
                    // only the purge point here; the entries go in chunks (see `writer`)
                    let bytes = serde_json::to_vec(upto).map_err(|e| e.to_string())?;
                    meta.insert(KEY_PURGED, bytes.as_slice()).map_err(|e| e.to_string())?;
                }
                Op::Meta { key, value, .. } => {
                    meta.insert(*key, value.as_slice()).map_err(|e| e.to_string())?;
                }
            }
        }
    }
    // commit() with Immediate durability returns only after the fsync (one: two-phase commit is
    // off, redb's default)
    txn.commit().map_err(|e| e.to_string())
}

fn read_range(db: &Database, range: (Bound<u64>, Bound<u64>)) -> Result<Vec<Entry>, String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let t = txn.open_table(LOGS).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for item in t.range::<u64>(range).map_err(|e| e.to_string())? {
        let (k, v) = item.map_err(|e| e.to_string())?;
        out.push(serde_json::from_slice(v.value()).map_err(|e| format!("decode log entry {}: {e}", k.value()))?);
    }
    Ok(out)
}

/// Deletes up to PURGE_CHUNK of the oldest log entries at or below `target`; returns how far
/// the disk is now trimmed. Not fsynced: if lost in a crash the entries are skipped on load
/// anyway, and the next durable commit makes it stick.
fn delete_chunk(db: &Database, target: u64) -> Result<u64, String> {
    let mut txn = db.begin_write().map_err(|e| e.to_string())?;
    txn.set_durability(Durability::None);
    let done_to = {
        let mut logs = txn.open_table(LOGS).map_err(|e| e.to_string())?;
        let first = logs.first().map_err(|e| e.to_string())?.map(|(k, _)| k.value());
        match first {
            Some(k) if k <= target => {
                let upto = target.min(k.saturating_add(PURGE_CHUNK - 1));
                logs.retain_in::<u64, _>((Bound::Included(k), Bound::Included(upto)), |_, _| false)
                    .map_err(|e| e.to_string())?;
                upto
            }
            _ => target,
        }
    };
    txn.commit().map_err(|e| e.to_string())?;
    Ok(done_to)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let range = (range.start_bound().cloned(), range.end_bound().cloned());
        let (first_in_mem, mut from_mem): (Option<u64>, Vec<Entry>) = {
            let m = self.mem();
            (m.entries.keys().next().copied(), m.entries.range(range).map(|(_, e)| e.clone()).collect())
        };
        let wants_older = match (range.0, first_in_mem) {
            (_, None) => false,
            (Bound::Unbounded, Some(_)) => true,
            (Bound::Included(s), Some(f)) => s < f,
            (Bound::Excluded(s), Some(f)) => s + 1 < f,
        };
        if !wants_older {
            return Ok(from_mem);
        }
        // a follower far behind: the older part comes from disk
        let upper = Bound::Excluded(first_in_mem.unwrap_or(0));
        let end = match (range.1, upper) {
            (Bound::Unbounded, u) => u,
            (Bound::Included(e), Bound::Excluded(u)) if e < u => Bound::Included(e),
            (Bound::Excluded(e), Bound::Excluded(u)) if e < u => Bound::Excluded(e),
            (_, u) => u,
        };
        let mut out = read_range(&self.db, (range.0, end))
            .map_err(|e| StorageIOError::new(ErrorSubject::Logs, ErrorVerb::Read, openraft::AnyError::error(e)))?;
        out.append(&mut from_mem);
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let m = self.mem();
        let last = m.entries.values().next_back().map(|e| e.log_id);
        Ok(LogState { last_purged_log_id: m.purged, last_log_id: last.or(m.purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<ReplicaId>) -> Result<(), StorageError> {
        self.write_meta_durably(KEY_VOTE, vote, ErrorSubject::Vote).await?;
        self.mem().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<ReplicaId>>, StorageError> {
        Ok(self.mem().vote)
    }

    /// Not waited for: the committed index is a hint that speeds up recovery, and it reaches the
    /// disk with the next batch.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(&committed).map_err(|e| StorageIOError::new(ErrorSubject::Store, ErrorVerb::Write, &e))?;
        self.mem().committed = committed;
        self.send(Op::Meta { key: KEY_COMMITTED, value: bytes, done: None }, ErrorSubject::Store)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.mem().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        {
            let mut m = self.mem();
            for e in &entries {
                m.entries.insert(e.log_id.index, e.clone());
            }
            // keep memory bounded: drop the oldest entries that are already on disk
            let durable = self.durable.load(std::sync::atomic::Ordering::Acquire);
            while m.entries.len() > MEM_ENTRIES {
                match m.entries.first_key_value() {
                    Some((k, _)) if *k <= durable => {
                        m.entries.pop_first();
                    }
                    _ => break,
                }
            }
        }
        self.send(Op::Append(entries, callback), ErrorSubject::Logs)
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(from = log_id.index, "truncating raft log");
        self.mem().entries.retain(|i, _| *i < log_id.index);
        self.send(Op::Truncate(log_id.index), ErrorSubject::Logs)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(upto = log_id.index, "purging raft log");
        {
            let mut m = self.mem();
            m.entries.retain(|i, _| *i > log_id.index);
            m.purged = Some(log_id);
        }
        self.send(Op::Purge(log_id), ErrorSubject::Logs)
    }
}
