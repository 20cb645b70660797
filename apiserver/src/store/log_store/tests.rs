//! The WAL-backed log store against a real directory: what openraft reads back after a reopen,
//! truncation and purge, a torn or damaged chunk file, and the import of an old redb log.

use std::path::Path;

use openraft::storage::RaftLogStorage;
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader, Vote};

use super::*;
use crate::store::types::Command;

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(Command::Create {
            key: format!("/configmaps/default/cm-{index}"),
            object: serde_json::json!({"metadata": {"name": format!("cm-{index}")}, "data": {"term": term}}),
        }),
    }
}

async fn append(store: &LogStore, entries: Vec<Entry>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    store.append_then(entries, Flushed::Wait(tx)).expect("append");
    rx.await.expect("flush thread answers").expect("flush succeeds");
}

async fn indexes(store: &mut LogStore) -> Vec<(u64, u64)> {
    store
        .try_get_log_entries(..)
        .await
        .expect("read")
        .iter()
        .map(|e| (e.log_id.leader_id.term, e.log_id.index))
        .collect()
}

fn chunk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join(WAL_DIR))
        .expect("read the wal dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn entries_vote_and_committed_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = LogStore::open(dir.path().to_path_buf()).await.expect("open");
        store.save_vote(&Vote::new_committed(2, 1)).await.expect("vote");
        append(&store, (1..=5).map(|i| entry(2, i)).collect()).await;
        store.save_committed(Some(log_id(2, 4))).await.expect("commit");
        // a commit beyond the last entry is a hint the store skips, not an error
        store.save_committed(Some(log_id(2, 9))).await.expect("commit beyond");
        append(&store, vec![entry(2, 6)]).await; // carries the committed record to disk
        assert_eq!(indexes(&mut store).await.len(), 6);
    }
    let mut store = LogStore::open(dir.path().to_path_buf()).await.expect("reopen");
    assert_eq!(store.read_vote().await.expect("read vote"), Some(Vote::new_committed(2, 1)));
    assert_eq!(store.read_committed().await.expect("read committed"), Some(log_id(2, 4)));
    let state = store.get_log_state().await.expect("state");
    assert_eq!(state.last_log_id, Some(log_id(2, 6)));
    assert_eq!(state.last_purged_log_id, None);
    assert_eq!(indexes(&mut store).await, (1..=6).map(|i| (2, i)).collect::<Vec<_>>());
    let middle = store.try_get_log_entries(2..4).await.expect("range");
    assert_eq!(middle.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), vec![2, 3]);
    match &middle[0].payload {
        EntryPayload::Normal(Command::Create { key, .. }) => assert_eq!(key, "/configmaps/default/cm-2"),
        other => panic!("unexpected payload {other:?}"),
    }
}

#[tokio::test]
async fn a_truncated_tail_is_replaced_and_a_purge_drops_the_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = LogStore::open(dir.path().to_path_buf()).await.expect("open");
        append(&store, (1..=6).map(|i| entry(1, i)).collect()).await;
        store.truncate(log_id(1, 4)).await.expect("truncate");
        append(&store, vec![entry(3, 4), entry(3, 5)]).await;
        store.purge(log_id(1, 2)).await.expect("purge");
        assert_eq!(indexes(&mut store).await, vec![(1, 3), (3, 4), (3, 5)]);
    }
    let mut store = LogStore::open(dir.path().to_path_buf()).await.expect("reopen");
    assert_eq!(indexes(&mut store).await, vec![(1, 3), (3, 4), (3, 5)]);
    let state = store.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 2)));
    assert_eq!(state.last_log_id, Some(log_id(3, 5)));
    // a snapshot installed past the whole log: the purge point becomes the last log id
    store.purge(log_id(3, 9)).await.expect("purge past the end");
    let state = store.get_log_state().await.expect("state");
    assert_eq!(state.last_log_id, Some(log_id(3, 9)));
    assert!(indexes(&mut store).await.is_empty());
    append(&store, vec![entry(3, 10)]).await;
    assert_eq!(indexes(&mut store).await, vec![(3, 10)]);
}

#[tokio::test]
async fn a_torn_last_record_is_cut_off_and_damage_before_it_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = LogStore::open(dir.path().to_path_buf()).await.expect("open");
        append(&store, (1..=3).map(|i| entry(1, i)).collect()).await;
    }
    {
        let store = LogStore::open(dir.path().to_path_buf()).await.expect("reopen");
        append(&store, vec![entry(1, 4)]).await;
    }
    // a crash in the middle of a write leaves only the first part of the last record
    let last_chunk = chunk_files(dir.path()).pop().expect("a chunk file");
    let torn_len = std::fs::metadata(&last_chunk).expect("stat").len() - 10;
    std::fs::OpenOptions::new().write(true).open(&last_chunk).expect("open chunk").set_len(torn_len).expect("tear");
    {
        let mut store = LogStore::open(dir.path().to_path_buf()).await.expect("reopen after a torn write");
        assert_eq!(indexes(&mut store).await, vec![(1, 1), (1, 2), (1, 3)]);
        append(&store, vec![entry(1, 4)]).await;
    }
    let mut store = LogStore::open(dir.path().to_path_buf()).await.expect("reopen");
    assert_eq!(indexes(&mut store).await.len(), 4);
    drop(store);

    // a flipped byte inside an earlier record is not a torn tail: refuse, and change nothing
    let chunk = chunk_files(dir.path()).into_iter().next().expect("a chunk file");
    let mut bytes = std::fs::read(&chunk).expect("read chunk");
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&chunk, &bytes).expect("damage");
    let err = LogStore::open(dir.path().to_path_buf()).await.err().expect("a damaged log must not open");
    assert!(err.to_string().contains("open the raft log"), "{err}");
    assert_eq!(std::fs::read(&chunk).expect("read chunk"), bytes, "a refused open must not rewrite the file");
}

/// Writes a log in the layout the apiserver kept in redb before the WAL.
fn write_old_redb(path: &Path, entries: &[Entry], vote: Vote<ReplicaId>, committed: LogId, purged: LogId) {
    let logs: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("logs");
    let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
    let db = redb::Database::create(path).expect("create redb");
    let txn = db.begin_write().expect("begin");
    {
        let mut t = txn.open_table(logs).expect("logs");
        for e in entries {
            t.insert(e.log_id.index, serde_json::to_vec(e).expect("encode").as_slice()).expect("insert");
        }
        let mut m = txn.open_table(meta).expect("meta");
        m.insert("vote", serde_json::to_vec(&vote).expect("vote").as_slice()).expect("vote");
        m.insert("committed", serde_json::to_vec(&Some(committed)).expect("c").as_slice()).expect("c");
        m.insert("last_purged", serde_json::to_vec(&purged).expect("p").as_slice()).expect("p");
    }
    txn.commit().expect("commit");
}

#[tokio::test]
async fn an_old_redb_log_is_imported_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = dir.path().join(redb_import::OLD_FILE);
    // entry 1 survived a crash between the purge point's write and its deletion: it stays purged
    let entries: Vec<Entry> = (1..=5).map(|i| entry(4, i)).collect();
    write_old_redb(&old, &entries, Vote::new_committed(4, 1), log_id(4, 3), log_id(4, 1));

    let mut store = LogStore::open(dir.path().to_path_buf()).await.expect("open imports");
    assert_eq!(indexes(&mut store).await, (2..=5).map(|i| (4, i)).collect::<Vec<_>>());
    assert_eq!(store.read_vote().await.expect("vote"), Some(Vote::new_committed(4, 1)));
    assert_eq!(store.read_committed().await.expect("committed"), Some(log_id(4, 3)));
    assert_eq!(store.get_log_state().await.expect("state").last_purged_log_id, Some(log_id(4, 1)));
    assert!(!old.exists(), "the old file is renamed once imported");
    assert!(dir.path().join("raft-log.redb.imported").exists());
    drop(store);
    let mut store = LogStore::open(dir.path().to_path_buf()).await.expect("reopen");
    assert_eq!(indexes(&mut store).await.len(), 4);
}

#[tokio::test]
async fn a_damaged_old_redb_log_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = dir.path().join(redb_import::OLD_FILE);
    std::fs::write(&old, b"this is not a redb database").expect("write");
    let err = LogStore::open(dir.path().to_path_buf()).await.err().expect("must refuse");
    let msg = err.to_string();
    assert!(msg.contains("import the raft log of an older version") && msg.contains("left as it was"), "{msg}");
    assert_eq!(std::fs::read(&old).expect("read"), b"this is not a redb database");
}
