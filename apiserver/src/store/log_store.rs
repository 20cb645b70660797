//! The Raft log, vote and committed index, kept in a redb database.
//!
//! Every write transaction is committed with `Durability::Immediate` (an fsync) before openraft
//! is told that the entries are on disk: a write is acknowledged only once a majority has it
//! durably. redb calls block, so they run on tokio's blocking pool.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError, Vote};
use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::types::{Entry, LogId, ReplicaId, StorageError, StoreError, TypeConfig};

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";

/// The redb-backed log store; clones share the database.
#[derive(Clone)]
pub(crate) struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    /// Opens (or creates) the log database at `path`.
    pub(crate) async fn open(path: PathBuf) -> Result<LogStore, StoreError> {
        // A store shut down a moment ago in this process may still have a replication task
        // holding the database; redb refuses a second open, so wait briefly for it to go.
        let mut attempts = 0;
        loop {
            let p = path.clone();
            let res = tokio::task::spawn_blocking(move || open_db(&p))
                .await
                .map_err(|e| StoreError::Storage(format!("open {}: {e}", path.display())))?;
            match res {
                Ok(db) => return Ok(LogStore { db: Arc::new(db) }),
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
        }
    }

    async fn blocking<T, F>(
        &self,
        subject: ErrorSubject<ReplicaId>,
        verb: ErrorVerb,
        f: F,
    ) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, String> + Send + 'static,
    {
        let db = self.db.clone();
        let res = tokio::task::spawn_blocking(move || f(&db)).await;
        let res = match res {
            Ok(r) => r,
            Err(e) => Err(e.to_string()),
        };
        res.map_err(|msg| StorageIOError::new(subject, verb, openraft::AnyError::error(msg)).into())
    }

    async fn read_meta<T: DeserializeOwned + Send + 'static>(
        &self,
        key: &'static str,
        subject: ErrorSubject<ReplicaId>,
    ) -> Result<Option<T>, StorageError> {
        self.blocking(subject, ErrorVerb::Read, move |db| get_meta(db, key))
            .await
    }

    async fn write_meta<T: Serialize>(
        &self,
        key: &'static str,
        value: &T,
        subject: ErrorSubject<ReplicaId>,
    ) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| StorageIOError::new(subject.clone(), ErrorVerb::Write, &e))?;
        self.blocking(subject, ErrorVerb::Write, move |db| {
            let txn = begin_durable(db)?;
            {
                let mut t = txn.open_table(META).map_err(|e| e.to_string())?;
                t.insert(key, bytes.as_slice()).map_err(|e| e.to_string())?;
            }
            txn.commit().map_err(|e| e.to_string())
        })
        .await
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
    init().map_err(|e| {
        redb::DatabaseError::Storage(redb::StorageError::Io(std::io::Error::other(e)))
    })?;
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
        Some(v) => serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| format!("decode {key}: {e}")),
    }
}

fn remove_range(db: &Database, range: (Bound<u64>, Bound<u64>)) -> Result<(), String> {
    let txn = begin_durable(db)?;
    {
        let mut t = txn.open_table(LOGS).map_err(|e| e.to_string())?;
        t.retain_in::<u64, _>(range, |_, _| false)
            .map_err(|e| e.to_string())?;
    }
    txn.commit().map_err(|e| e.to_string())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let range = (range.start_bound().cloned(), range.end_bound().cloned());
        self.blocking(ErrorSubject::Logs, ErrorVerb::Read, move |db| {
            let txn = db.begin_read().map_err(|e| e.to_string())?;
            let t = txn.open_table(LOGS).map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            for item in t.range::<u64>(range).map_err(|e| e.to_string())? {
                let (k, v) = item.map_err(|e| e.to_string())?;
                let entry: Entry = serde_json::from_slice(v.value())
                    .map_err(|e| format!("decode log entry {}: {e}", k.value()))?;
                out.push(entry);
            }
            Ok(out)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let (last, purged) = self
            .blocking(ErrorSubject::Logs, ErrorVerb::Read, |db| {
                let purged: Option<LogId> = get_meta(db, KEY_PURGED)?;
                let txn = db.begin_read().map_err(|e| e.to_string())?;
                let t = txn.open_table(LOGS).map_err(|e| e.to_string())?;
                let last = match t.last().map_err(|e| e.to_string())? {
                    None => None,
                    Some((_, v)) => {
                        let e: Entry = serde_json::from_slice(v.value())
                            .map_err(|e| format!("decode last log entry: {e}"))?;
                        Some(e.log_id)
                    }
                };
                Ok((last, purged))
            })
            .await?;
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<ReplicaId>) -> Result<(), StorageError> {
        self.write_meta(KEY_VOTE, vote, ErrorSubject::Vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<ReplicaId>>, StorageError> {
        self.read_meta(KEY_VOTE, ErrorSubject::Vote).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.write_meta(KEY_COMMITTED, &committed, ErrorSubject::Store)
            .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .read_meta::<Option<LogId>>(KEY_COMMITTED, ErrorSubject::Store)
            .await?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for e in entries {
            let bytes = serde_json::to_vec(&e)
                .map_err(|err| StorageIOError::write_log_entry(e.log_id, &err))?;
            encoded.push((e.log_id.index, bytes));
        }
        let res = self
            .blocking(ErrorSubject::Logs, ErrorVerb::Write, move |db| {
                let txn = begin_durable(db)?;
                {
                    let mut t = txn.open_table(LOGS).map_err(|e| e.to_string())?;
                    for (index, bytes) in &encoded {
                        t.insert(*index, bytes.as_slice())
                            .map_err(|e| e.to_string())?;
                    }
                }
                // commit() with Immediate durability returns only after the fsync.
                txn.commit().map_err(|e| e.to_string())
            })
            .await;
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(from = log_id.index, "truncating raft log");
        self.blocking(ErrorSubject::Logs, ErrorVerb::Delete, move |db| {
            remove_range(db, (Bound::Included(log_id.index), Bound::Unbounded))
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(upto = log_id.index, "purging raft log");
        // Record the purge point first: after a crash between the two steps the log state is
        // still consistent (entries at or below last_purged are ignored).
        self.write_meta(KEY_PURGED, &log_id, ErrorSubject::Logs)
            .await?;
        self.blocking(ErrorSubject::Logs, ErrorVerb::Delete, move |db| {
            remove_range(db, (Bound::Unbounded, Bound::Included(log_id.index)))
        })
        .await
    }
}
