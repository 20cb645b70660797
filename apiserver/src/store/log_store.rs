//! The Raft log, vote and committed index, kept in a write-ahead log on disk by the `raft-log`
//! crate (the WAL openraft's author wrote for databend-meta): every change is a CRC-checked
//! record appended to a chunk file; a background thread writes what is queued with one
//! `write` and makes it durable with one `fdatasync`; on open the chunks are replayed and a torn
//! last record is cut off. Whole chunks are deleted once a snapshot has purged every entry in
//! them.
//!
//! Why a WAL and not a B-tree: the log is only ever appended to, truncated at the tail and purged
//! at the head. The redb database this replaced wrote about six pages and fsynced them for each
//! commit (0.45 ms on this project's test machines, against 0.15 ms for one appended record), and
//! at one client a write waits for two log flushes in series (the leader's, then a follower's),
//! because openraft 0.9 replicates an entry only after the leader's own flush.
//!
//! How it meets openraft: openraft 0.9 awaits `append` inside its core loop, so `append` only
//! encodes the entries into the WAL's buffer (they are readable at once, as openraft requires)
//! and queues a synced flush; the flush thread calls the entry's `LogFlushed` callback after the
//! `fdatasync`. openraft counts an entry as held by this replica only after that callback, so a
//! write is still acknowledged only once a majority has it on disk. `save_vote` waits for its own
//! fsync, as Raft requires before a vote is answered. The committed index is a hint for a faster
//! restart: it goes to disk with the next flush and is never waited for.
//!
//! A data directory from before this change holds the log in `raft-log.redb`; [`LogStore::open`]
//! imports it once (see `redb_import`) into a scratch directory, moves that into place, and
//! renames the old file.

mod redb_import;

use std::fmt::{self, Debug};
use std::io::{self, Read, Write};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError, Vote};
use raft_log::api::raft_log_writer::RaftLogWriter;
use raft_log::codeq::{Decode, Encode};
use raft_log::RaftLog;

use super::types::{Entry, LogId, ReplicaId, StorageError, StoreError, TypeConfig};

/// The directory of the WAL's chunk files, inside the replica's data directory.
pub(crate) const WAL_DIR: &str = "raft-wal";

/// Chunk files close at this size, so purged entries free their disk space chunk by chunk.
const CHUNK_MAX_BYTES: usize = 32 << 20;
/// Entries whose payload stays in memory once on disk: enough for any follower that is merely
/// slow; one further behind is read back from the chunk files.
const CACHE_ENTRIES: usize = 8_192;
const CACHE_BYTES: usize = 64 << 20;
/// The largest log entry a record may claim when read back; the apiserver refuses request bodies
/// over 3 MiB and a batch entry holds at most 128 commands.
const MAX_ENTRY_BYTES: usize = 512 << 20;

/// The log store; clones share one WAL.
#[derive(Clone)]
pub(crate) struct LogStore {
    wal: Arc<Mutex<RaftLog<Wal>>>,
}

impl LogStore {
    /// Opens (or creates) the WAL under `data_dir`, importing a log kept by an older version in
    /// `raft-log.redb` first, and starts its flush thread.
    pub(crate) async fn open(data_dir: PathBuf) -> Result<LogStore, StoreError> {
        let dir = data_dir.join(WAL_DIR);
        let wal = tokio::task::spawn_blocking(move || open_blocking(&data_dir, &dir))
            .await
            .map_err(|e| StoreError::Storage(format!("open the raft log: {e}")))??;
        Ok(LogStore { wal: Arc::new(Mutex::new(wal)) })
    }

    /// Appends `entries` and queues a synced flush that tells `flushed` once they are on disk.
    fn append_then<I: IntoIterator<Item = Entry>>(&self, entries: I, flushed: Flushed) -> Result<(), StorageError> {
        let records = entries
            .into_iter()
            .map(|e| {
                let id = WalLogId(e.log_id);
                WalEntry::new(e).map(|p| (id, p))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StorageIOError::new(ErrorSubject::Logs, ErrorVerb::Write, &e))?;
        let mut wal = self.wal();
        wal.append(records).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, &e))?;
        wal.flush(true, Some(flushed)).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, &e))
    }

    fn wal(&self) -> MutexGuard<'_, RaftLog<Wal>> {
        // a panic while holding the lock leaves the WAL's in-memory state as the last call left it
        self.wal.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn open_blocking(data_dir: &Path, dir: &Path) -> Result<RaftLog<Wal>, StoreError> {
    let old = data_dir.join(redb_import::OLD_FILE);
    if !dir.exists() && old.exists() {
        // Import into a scratch directory and move it into place only once complete, so that a
        // crash or an error half-way leaves the old file in charge and the next start retries.
        let scratch = data_dir.join(format!("{WAL_DIR}.importing"));
        if scratch.exists() {
            std::fs::remove_dir_all(&scratch).map_err(|e| create_failed(&scratch, &e))?;
        }
        std::fs::create_dir_all(&scratch).map_err(|e| create_failed(&scratch, &e))?;
        let mut wal = open_wal(&scratch)?;
        redb_import::import(&old, &mut wal)?;
        drop(wal);
        std::fs::rename(&scratch, dir).map_err(|e| create_failed(dir, &e))?;
        sync_dir(data_dir).map_err(|e| create_failed(dir, &e))?;
    }
    if old.exists() && dir.exists() {
        redb_import::retire(&old)?;
    }
    std::fs::create_dir_all(dir).map_err(|e| create_failed(dir, &e))?;
    open_wal(dir)
}

fn create_failed(path: &Path, e: &io::Error) -> StoreError {
    StoreError::Storage(format!(
        "create {}: {e}; check the data directory's permissions and free space",
        path.display()
    ))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Opens the WAL in `dir`. A store shut down a moment ago in this process may still hold the
/// directory's lock while its flush thread ends, so a locked directory is retried briefly.
fn open_wal(dir: &Path) -> Result<RaftLog<Wal>, StoreError> {
    let mut config = raft_log::Config::new(dir.display());
    config.log_cache_max_items = Some(CACHE_ENTRIES);
    config.log_cache_capacity = Some(CACHE_BYTES);
    config.wal.chunk_max_size = Some(CHUNK_MAX_BYTES);
    config.wal.read_buffer_size = Some(1 << 20);
    // The flush thread syncs as soon as a request arrives instead of waiting to gather more:
    // openraft hands over one append at a time, so waiting would only add latency.
    config.wal.flush_batch_wait = Some(Duration::ZERO);
    let config = Arc::new(config);
    let mut attempts = 0;
    loop {
        match RaftLog::<Wal>::open(config.clone()) {
            Ok(wal) => return Ok(wal),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => {
                return Err(StoreError::Storage(format!(
                    "open the raft log in {}: {e}; if another apiserver uses this data directory stop it; \
                     if the log is damaged, remove this replica from the cluster, empty its data directory \
                     and add it back so that it copies the log from the others",
                    dir.display()
                )))
            }
        }
    }
}

/// The WAL's type configuration: openraft's log ids, votes and entries, each with a binary
/// encoding for the WAL's records.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Wal;

impl raft_log::Types for Wal {
    type LogId = WalLogId;
    type LogPayload = WalEntry;
    type Vote = WalVote;
    type Callback = Flushed;
    type UserData = ();

    fn log_index(log_id: &WalLogId) -> u64 {
        log_id.0.index
    }

    fn payload_size(payload: &WalEntry) -> u64 {
        payload.bytes.len() as u64
    }
}

/// An openraft log id, ordered as Raft orders them (by leader, then index) and encoded as three
/// big-endian integers: term, leader, index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WalLogId(pub(crate) LogId);

impl WalLogId {
    fn key(&self) -> (u64, u64, u64) {
        (self.0.leader_id.term, self.0.leader_id.node_id, self.0.index)
    }
}

impl Ord for WalLogId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for WalLogId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Encode for WalLogId {
    fn encode<W: Write>(&self, mut w: W) -> io::Result<usize> {
        let (term, node, index) = self.key();
        w.write_all(&term.to_be_bytes())?;
        w.write_all(&node.to_be_bytes())?;
        w.write_all(&index.to_be_bytes())?;
        Ok(24)
    }
}

impl Decode for WalLogId {
    fn decode<R: Read>(mut r: R) -> io::Result<Self> {
        let term = read_u64(&mut r)?;
        let node_id = read_u64(&mut r)?;
        let index = read_u64(&mut r)?;
        Ok(WalLogId(LogId::new(openraft::CommittedLeaderId::new(term, node_id), index)))
    }
}

/// An openraft vote (term, candidate, committed), ordered as openraft orders votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WalVote(pub(crate) Vote<ReplicaId>);

impl PartialOrd for WalVote {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.0.partial_cmp(&other.0)
    }
}

impl Encode for WalVote {
    fn encode<W: Write>(&self, mut w: W) -> io::Result<usize> {
        w.write_all(&self.0.leader_id.term.to_be_bytes())?;
        w.write_all(&self.0.leader_id.node_id.to_be_bytes())?;
        w.write_all(&[u8::from(self.0.committed)])?;
        Ok(17)
    }
}

impl Decode for WalVote {
    fn decode<R: Read>(mut r: R) -> io::Result<Self> {
        let term = read_u64(&mut r)?;
        let node_id = read_u64(&mut r)?;
        let mut committed = [0u8; 1];
        r.read_exact(&mut committed)?;
        let mut vote = Vote::new(term, node_id);
        match committed[0] {
            0 => {}
            1 => vote.commit(),
            other => return Err(invalid(format!("vote record: committed flag {other} is neither 0 nor 1"))),
        }
        Ok(WalVote(vote))
    }
}

/// A log entry: decoded for readers, and its JSON encoding as the WAL stores it (made once, when
/// the entry is appended).
#[derive(Clone)]
pub(crate) struct WalEntry {
    entry: Arc<Entry>,
    bytes: Arc<[u8]>,
}

impl WalEntry {
    pub(crate) fn new(entry: Entry) -> Result<WalEntry, serde_json::Error> {
        let bytes = serde_json::to_vec(&entry)?;
        Ok(WalEntry { entry: Arc::new(entry), bytes: bytes.into() })
    }
}

impl Debug for WalEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // the payload may hold Secrets: never its content
        write!(f, "WalEntry({}, {} bytes)", self.entry.log_id, self.bytes.len())
    }
}

impl Encode for WalEntry {
    fn encode<W: Write>(&self, mut w: W) -> io::Result<usize> {
        let len = u32::try_from(self.bytes.len()).map_err(|_| invalid("log entry over 4 GiB".to_string()))?;
        w.write_all(&len.to_be_bytes())?;
        w.write_all(&self.bytes)?;
        Ok(4 + self.bytes.len())
    }
}

impl Decode for WalEntry {
    fn decode<R: Read>(mut r: R) -> io::Result<Self> {
        let mut len = [0u8; 4];
        r.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_ENTRY_BYTES {
            return Err(invalid(format!("log entry record claims {len} bytes, more than any entry can hold")));
        }
        let mut bytes = vec![0u8; len];
        r.read_exact(&mut bytes)?;
        let entry: Entry = serde_json::from_slice(&bytes).map_err(|e| invalid(format!("decode log entry: {e}")))?;
        Ok(WalEntry { entry: Arc::new(entry), bytes: bytes.into() })
    }
}

/// Who hears that a flush reached the disk: openraft, for appended entries, or a waiting caller.
pub(crate) enum Flushed {
    Log(LogFlushed<TypeConfig>),
    Wait(tokio::sync::oneshot::Sender<io::Result<()>>),
}

impl raft_log::Callback for Flushed {
    fn send(self, res: io::Result<()>) {
        match self {
            Flushed::Log(callback) => callback.log_io_completed(res),
            Flushed::Wait(tx) => {
                let _ = tx.send(res);
            }
        }
    }
}

fn read_u64<R: Read>(r: &mut R) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn io_err(subject: ErrorSubject<ReplicaId>, verb: ErrorVerb, e: &io::Error) -> StorageError {
    StorageIOError::new(subject, verb, e).into()
}

/// The half-open index range `[from, to)` that `range` covers.
fn index_range<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let from = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let to = match range.end_bound() {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => *e,
        Bound::Unbounded => u64::MAX,
    };
    (from, to)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (from, to) = index_range(&range);
        let wal = self.wal();
        wal.read(from, to)
            .map(|item| item.map(|(_, payload)| Entry::clone(&payload.entry)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, &e))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let wal = self.wal();
        let state = wal.log_state();
        let purged = state.purged().map(|id| id.0);
        // the WAL moves `last` up to `purged` when a purge passes the last entry
        Ok(LogState { last_purged_log_id: purged, last_log_id: state.last().map(|id| id.0).or(purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<ReplicaId>) -> Result<(), StorageError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut wal = self.wal();
            wal.save_vote(WalVote(*vote)).map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, &e))?;
            wal.flush(true, Some(Flushed::Wait(tx))).map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, &e))?;
        }
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(io_err(ErrorSubject::Vote, ErrorVerb::Write, &e)),
            Err(_) => Err(io_err(ErrorSubject::Vote, ErrorVerb::Write, &io::Error::other("the raft log's flush thread has stopped"))),
        }
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<ReplicaId>>, StorageError> {
        Ok(self.wal().log_state().vote().map(|v| v.0))
    }

    /// Not waited for, and skipped when it is not ahead of what the WAL holds (a follower that
    /// has just installed a snapshot may be told of a commit beyond its last entry).
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let Some(committed) = committed.map(WalLogId) else { return Ok(()) };
        let mut wal = self.wal();
        let state = wal.log_state();
        if state.committed() >= Some(&committed) || state.last() < Some(&committed) {
            return Ok(());
        }
        // no flush of its own: the record waits in the WAL's buffer for the next append's flush,
        // which saves every replica a wake-up of the flush thread per write
        wal.commit(committed).map(|_| ()).map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, &e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.wal().log_state().committed().map(|id| id.0))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.append_then(entries, Flushed::Log(callback))
    }

    /// The truncation record reaches the disk with the next flush, in order, before any entry
    /// appended after it.
    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(from = log_id.index, "truncating raft log");
        let mut wal = self.wal();
        wal.truncate(log_id.index).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, &e))?;
        wal.flush(false, None).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, &e))
    }

    /// A synced flush: the WAL deletes the purged chunk files only behind one.
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(upto = log_id.index, "purging raft log");
        let mut wal = self.wal();
        wal.purge(WalLogId(log_id)).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, &e))?;
        wal.flush(true, None).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, &e))
    }
}

#[cfg(test)]
mod tests;
