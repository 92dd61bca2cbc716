//! The shared write-ahead log on its own: recovery, torn tails, rotation, group commit.

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, Vote};
use pigeon_cluster::meta::Json;
use pigeon_cluster::wal::{GroupLog, Wal, WalError, WalOptions};
use pigeon_cluster::{GroupId, MetaCommand, MetaTypes};
use std::sync::atomic::Ordering;
use std::time::Duration;

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64) -> Entry<MetaTypes> {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(MetaCommand::AddVhost {
            name: format!("v{index}"),
            metadata: Json::default(),
        }),
    }
}

async fn indexes(log: &mut GroupLog<MetaTypes>) -> Vec<u64> {
    log.try_get_log_entries(0..u64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

fn segments(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "wal"));
    files.sort();
    files
}

#[tokio::test]
async fn everything_a_group_wrote_is_there_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
        let mut log = wal.group::<MetaTypes>(GroupId(3));
        log.save_vote(&Vote::new(2, 1)).await.unwrap();
        log.blocking_append((1..=10).map(|i| entry(1, i)))
            .await
            .unwrap();
        log.truncate(log_id(1, 8)).await.unwrap();
        log.blocking_append((8..=9).map(|i| entry(2, i)))
            .await
            .unwrap();
        log.purge(log_id(1, 3)).await.unwrap();
        log.save_committed(Some(log_id(2, 8))).await.unwrap();
        // Another group in the same log.
        let mut other = wal.group::<MetaTypes>(GroupId(4));
        other
            .blocking_append((1..=2).map(|i| entry(1, i)))
            .await
            .unwrap();
        wal.shutdown();
    }
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(wal.groups(), vec![GroupId(3), GroupId(4)]);
    let mut log = wal.group::<MetaTypes>(GroupId(3));
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(2, 1)));
    assert_eq!(indexes(&mut log).await, vec![4, 5, 6, 7, 8, 9]);
    let entries = log.try_get_log_entries(8..=9).await.unwrap();
    assert!(
        entries.iter().all(|e| e.log_id.leader_id.term == 2),
        "the truncated suffix was replaced"
    );
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 3)));
    assert_eq!(state.last_log_id, Some(log_id(2, 9)));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(2, 8)));
    assert_eq!(
        indexes(&mut wal.group::<MetaTypes>(GroupId(4))).await,
        vec![1, 2]
    );
    assert_eq!(wal.stats().torn_bytes_cut.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_torn_tail_is_cut_at_recovery_and_writing_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
        let mut log = wal.group::<MetaTypes>(GroupId::METADATA);
        for i in 1..=5 {
            log.blocking_append([entry(1, i)]).await.unwrap();
        }
        wal.shutdown();
    }
    // A crash in the middle of the last write: its record is half on disk.
    let segment = segments(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&segment).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.set_len(len - 7).unwrap();
    drop(file);

    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert!(wal.stats().torn_bytes_cut.load(Ordering::Relaxed) > 0);
    let mut log = wal.group::<MetaTypes>(GroupId::METADATA);
    assert_eq!(
        indexes(&mut log).await,
        vec![1, 2, 3, 4],
        "the torn record is gone, the rest is whole"
    );
    // The file was cut to its last whole record, so new records follow it and read back.
    log.blocking_append([entry(1, 5)]).await.unwrap();
    wal.shutdown();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(wal.stats().torn_bytes_cut.load(Ordering::Relaxed), 0);
    assert_eq!(
        indexes(&mut wal.group::<MetaTypes>(GroupId::METADATA)).await,
        vec![1, 2, 3, 4, 5]
    );
}

#[tokio::test]
async fn damage_in_an_older_segment_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
        let mut log = wal.group::<MetaTypes>(GroupId::METADATA);
        log.blocking_append((1..=3).map(|i| entry(1, i)))
            .await
            .unwrap();
        wal.shutdown();
    }
    let first = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&first).unwrap();
    let at = bytes.len() - 3;
    bytes[at] ^= 0xff;
    std::fs::write(&first, bytes).unwrap();
    // A newer segment exists, so the damage cannot be a torn write.
    std::fs::write(dir.path().join(format!("{:020}.wal", 99)), b"PGNWAL01").unwrap();
    match Wal::open(dir.path(), WalOptions::default()) {
        Err(WalError::Corrupt { reason, .. }) => assert_eq!(reason, "checksum mismatch"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a damaged segment was accepted"),
    }
}

#[tokio::test]
async fn a_full_segment_is_replaced_by_a_checkpoint_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions {
        segment_bytes: 4096,
        ..WalOptions::default()
    };
    {
        let wal = Wal::open(dir.path(), options.clone()).unwrap();
        let mut log = wal.group::<MetaTypes>(GroupId(1));
        for i in 1..=200 {
            log.blocking_append([entry(1, i)]).await.unwrap();
            if i % 50 == 0 {
                // What a snapshot allows: keep the log short so checkpoints stay small.
                log.purge(log_id(1, i - 10)).await.unwrap();
            }
        }
        assert!(wal.stats().rotations.load(Ordering::Relaxed) > 0);
        wal.shutdown();
    }
    assert_eq!(
        segments(dir.path()).len(),
        1,
        "older segments are deleted after a checkpoint"
    );
    let wal = Wal::open(dir.path(), options).unwrap();
    let mut log = wal.group::<MetaTypes>(GroupId(1));
    assert_eq!(indexes(&mut log).await, (191..=200).collect::<Vec<_>>());
    assert_eq!(
        log.get_log_state().await.unwrap().last_purged_log_id,
        Some(log_id(1, 190))
    );
}

#[tokio::test]
async fn a_checkpoint_larger_than_a_segment_does_not_rotate_at_every_write() {
    // A group's live log (no snapshot, so no purge yet) outgrows `segment_bytes`: every
    // checkpoint is then larger than a segment. Rotations must still come once per
    // `segment_bytes` of new records, not after every write (each rewrites the live log).
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions {
        segment_bytes: 4096,
        ..WalOptions::default()
    };
    let appends = 400;
    {
        let wal = Wal::open(dir.path(), options.clone()).unwrap();
        let mut log = wal.group::<MetaTypes>(GroupId(1));
        for i in 1..=appends {
            log.blocking_append([entry(1, i)]).await.unwrap();
        }
        let rotations = wal.stats().rotations.load(Ordering::Relaxed);
        assert!(rotations > 0);
        assert!(
            rotations * 10 < appends,
            "{rotations} rotations for {appends} appends"
        );
        wal.shutdown();
    }
    let wal = Wal::open(dir.path(), options).unwrap();
    let mut log = wal.group::<MetaTypes>(GroupId(1));
    assert_eq!(indexes(&mut log).await, (1..=appends).collect::<Vec<_>>());
}

/// N groups append at the same moment, M times: each round is one batch and one fsync, not N.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_of_many_groups_share_one_fsync() {
    const GROUPS: u64 = 16;
    const ROUNDS: u64 = 5;
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let logs: Vec<GroupLog<MetaTypes>> = (0..GROUPS).map(|g| wal.group(GroupId(100 + g))).collect();
    let before = wal.fsync_count();
    for round in 1..=ROUNDS {
        // Hold the writer while every group queues its append, as happens when appends arrive
        // during an fsync; then let it go.
        let hold = wal.hold_writer();
        let submitted = wal.stats().submitted.load(Ordering::Relaxed);
        let tasks: Vec<_> = logs
            .iter()
            .map(|log| {
                let mut log = log.clone();
                tokio::spawn(async move { log.blocking_append([entry(1, round)]).await })
            })
            .collect();
        let all_queued = submitted + GROUPS;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while wal.stats().submitted.load(Ordering::Relaxed) < all_queued {
            assert!(
                tokio::time::Instant::now() < deadline,
                "appends were not queued"
            );
            tokio::task::yield_now().await;
        }
        drop(hold);
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    }
    let fsyncs = wal.fsync_count() - before;
    println!(
        "{} appends from {GROUPS} groups took {fsyncs} fsyncs",
        GROUPS * ROUNDS
    );
    assert_eq!(
        fsyncs, ROUNDS,
        "one fsync per round, shared by all {GROUPS} groups"
    );
    assert_eq!(wal.stats().records.load(Ordering::Relaxed), GROUPS * ROUNDS);
    wal.shutdown();
}

/// The same without holding the writer: 32 groups, each appending and waiting for durability 25
/// times over, as 32 Raft groups do. Appends that arrive during an fsync share the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_running_groups_need_fewer_fsyncs_than_appends() {
    const GROUPS: u64 = 32;
    const APPENDS: u64 = 25;
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let before = wal.fsync_count();
    let tasks: Vec<_> = (0..GROUPS)
        .map(|g| {
            let mut log: GroupLog<MetaTypes> = wal.group(GroupId(1000 + g));
            tokio::spawn(async move {
                for i in 1..=APPENDS {
                    log.blocking_append([entry(1, i)]).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let fsyncs = wal.fsync_count() - before;
    println!(
        "{} appends from {GROUPS} groups took {fsyncs} fsyncs",
        GROUPS * APPENDS
    );
    assert!(
        fsyncs < GROUPS * APPENDS,
        "{fsyncs} fsyncs for {} appends",
        GROUPS * APPENDS
    );
    wal.shutdown();
}
