//! One-time import of a Raft log kept by an older Flotilla in `DATA_DIR/raft-log.redb` (a redb
//! database with a `logs` table of JSON entries by index and a `meta` table holding the vote,
//! the committed log id and the purge point as JSON) into a new, empty WAL. Once the WAL has it
//! on disk, the old file is renamed to `raft-log.redb.imported`, which the operator may delete.

use std::path::Path;

use raft_log::api::raft_log_writer::RaftLogWriter;
use raft_log::RaftLog;
use redb::{Database, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;

use super::{Flushed, Wal, WalEntry, WalLogId, WalVote};
use crate::store::types::{Entry, LogId, ReplicaId, StoreError};

pub(super) const OLD_FILE: &str = "raft-log.redb";
const IMPORTED_SUFFIX: &str = ".imported";

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Copies the log in the redb file `old` into `wal`, which must be empty, and waits until the
/// WAL has it on disk.
pub(super) fn import(old: &Path, wal: &mut RaftLog<Wal>) -> Result<(), StoreError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        StoreError::Storage(format!(
            "import the raft log of an older version from {}: {what}: {e}; the file is left as it was",
            old.display()
        ))
    };
    let db = Database::open(&old).map_err(|e| fail("open", &e))?;
    let txn = db.begin_read().map_err(|e| fail("read", &e))?;
    let meta = txn.open_table(META).map_err(|e| fail("open its meta table", &e))?;
    let get = |key: &str| -> Result<Option<Vec<u8>>, StoreError> {
        Ok(meta.get(key).map_err(|e| fail(key, &e))?.map(|v| v.value().to_vec()))
    };
    let vote: Option<openraft::Vote<ReplicaId>> = decode(get("vote")?, "vote").map_err(|e| fail("vote", &e))?;
    let committed: Option<LogId> =
        decode::<Option<LogId>>(get("committed")?, "committed").map_err(|e| fail("committed", &e))?.flatten();
    let purged: Option<LogId> = decode(get("last_purged")?, "last_purged").map_err(|e| fail("last_purged", &e))?;

    let logs = txn.open_table(LOGS).map_err(|e| fail("open its logs table", &e))?;
    let floor = purged.map(|p| p.index);
    let mut entries = Vec::new();
    for item in logs.iter().map_err(|e| fail("read entries", &e))? {
        let (k, v) = item.map_err(|e| fail("read entries", &e))?;
        // entries at or below the purge point may have survived a crash between its two steps
        if floor.is_some_and(|f| k.value() <= f) {
            continue;
        }
        let entry: Entry =
            serde_json::from_slice(v.value()).map_err(|e| fail(&format!("decode entry {}", k.value()), &e))?;
        let id = WalLogId(entry.log_id);
        entries.push((id, WalEntry::new(entry).map_err(|e| fail("encode entry", &e))?));
    }
    let count = entries.len();

    if let Some(vote) = vote {
        wal.save_vote(WalVote(vote)).map_err(|e| fail("write the vote", &e))?;
    }
    if let Some(purged) = purged {
        wal.purge(WalLogId(purged)).map_err(|e| fail("write the purge point", &e))?;
    }
    wal.append(entries).map_err(|e| fail("write the entries", &e))?;
    if let Some(committed) = committed.map(WalLogId) {
        if wal.log_state().last() >= Some(&committed) {
            wal.commit(committed).map_err(|e| fail("write the committed index", &e))?;
        }
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    wal.flush(true, Some(Flushed::Wait(tx))).map_err(|e| fail("flush", &e))?;
    match rx.blocking_recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(fail("flush", &e)),
        Err(_) => return Err(fail("flush", &"the raft log's flush thread has stopped")),
    }
    tracing::info!(entries = count, from = %old.display(), "imported the raft log of an older version");
    Ok(())
}

/// Renames the imported file out of the way (to `raft-log.redb.imported`, for the operator to
/// delete).
pub(super) fn retire(old: &Path) -> Result<(), StoreError> {
    let mut renamed = old.as_os_str().to_owned();
    renamed.push(IMPORTED_SUFFIX);
    std::fs::rename(old, &renamed).map_err(|e| {
        StoreError::Storage(format!(
            "rename the imported raft log {} to {}: {e}; check the data directory's permissions",
            old.display(),
            Path::new(&renamed).display()
        ))
    })
}

fn decode<T: DeserializeOwned>(bytes: Option<Vec<u8>>, key: &str) -> Result<Option<T>, String> {
    match bytes {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b).map(Some).map_err(|e| format!("decode {key}: {e}")),
    }
}
