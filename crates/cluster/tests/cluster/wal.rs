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

// --- Segments kept while groups need them (issue 13, helper walseg) ---

/// An entry of about `size` bytes.
fn big_entry(term: u64, index: u64, size: usize) -> Entry<MetaTypes> {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(MetaCommand::AddVhost {
            name: format!("v{index}-{}", "x".repeat(size)),
            metadata: Json::default(),
        }),
    }
}

fn small_segments(max_segments: usize) -> WalOptions {
    WalOptions {
        segment_bytes: 4096,
        max_segments,
        relocate_bytes: 512,
        max_moved_group_bytes: 4096,
        ..WalOptions::default()
    }
}

fn segment_seqs(dir: &std::path::Path) -> Vec<u64> {
    segments(dir)
        .iter()
        .map(|p| {
            p.file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse().ok())
                .unwrap()
        })
        .collect()
}

/// Everything a group's log holds, as openraft reads it.
#[derive(Debug, PartialEq)]
struct Seen {
    entries: Vec<LogId<u64>>,
    purged: Option<LogId<u64>>,
    last: Option<LogId<u64>>,
    vote: Option<Vote<u64>>,
    committed: Option<LogId<u64>>,
}

async fn seen(wal: &Wal, group: u64) -> Seen {
    let mut log = wal.group::<MetaTypes>(GroupId(group));
    let state = log.get_log_state().await.unwrap();
    Seen {
        entries: log
            .try_get_log_entries(0..u64::MAX)
            .await
            .unwrap()
            .iter()
            .map(|e| e.log_id)
            .collect(),
        purged: state.last_purged_log_id,
        last: state.last_log_id,
        vote: log.read_vote().await.unwrap(),
        committed: log.read_committed().await.unwrap(),
    }
}

#[tokio::test]
async fn a_rotation_starts_a_segment_without_rewriting_the_live_log() {
    // One group's live log (never purged) grows to many segments' worth: each rotation must
    // write only a segment header and the group's vote, not the live entries again.
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(1000);
    let appends = 100;
    {
        let wal = Wal::open(dir.path(), options.clone()).unwrap();
        let mut log = wal.group::<MetaTypes>(GroupId(1));
        log.save_vote(&Vote::new(1, 1)).await.unwrap();
        for i in 1..=appends {
            log.blocking_append([big_entry(1, i, 400)]).await.unwrap();
        }
        wal.shutdown();
        let stats = wal.stats();
        let rotations = stats.rotations.load(Ordering::Relaxed);
        let rotation_bytes = stats.rotation_bytes.load(Ordering::Relaxed);
        println!("{rotations} rotations wrote {rotation_bytes} bytes");
        assert!(rotations >= 5, "{rotations} rotations");
        // Before: each rotation wrote the whole live log (up to 40 KB here) as a checkpoint.
        assert!(
            rotation_bytes <= rotations * 128,
            "{rotation_bytes} bytes written by {rotations} rotations"
        );
        assert_eq!(stats.relocated_bytes.load(Ordering::Relaxed), 0);
        assert_eq!(segments(dir.path()).len() as u64, rotations + 1);
    }
    // Every entry is on disk once: the segments together are about one copy of the log.
    let on_disk: u64 = segments(dir.path())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(on_disk < appends * 500, "{on_disk} bytes on disk");
    let wal = Wal::open(dir.path(), options).unwrap();
    let mut log = wal.group::<MetaTypes>(GroupId(1));
    assert_eq!(indexes(&mut log).await, (1..=appends).collect::<Vec<_>>());
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(1, 1)));
}

#[tokio::test]
async fn a_segment_is_deleted_once_every_group_purged_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(1000);
    let (a, b) = (GroupId(1), GroupId(2));
    {
        let wal = Wal::open(dir.path(), options.clone()).unwrap();
        let mut log_a = wal.group::<MetaTypes>(a);
        let mut log_b = wal.group::<MetaTypes>(b);
        log_a.save_vote(&Vote::new(3, 1)).await.unwrap();
        for i in 1..=40 {
            log_a.blocking_append([big_entry(1, i, 200)]).await.unwrap();
            log_b.blocking_append([big_entry(1, i, 200)]).await.unwrap();
        }
        let kept = segments(dir.path()).len();
        assert!(kept >= 4, "{kept} segments");
        log_a.purge(log_id(1, 40)).await.unwrap();
        // A write after the purge: its batch starts after the purge's batch was dealt with.
        log_b.blocking_append([big_entry(1, 41, 10)]).await.unwrap();
        assert_eq!(
            segments(dir.path()).len(),
            kept,
            "b's live entries keep every segment"
        );
        log_b.purge(log_id(1, 39)).await.unwrap();
        log_a.save_committed(Some(log_id(1, 40))).await.unwrap();
        log_a.blocking_append([big_entry(1, 41, 10)]).await.unwrap();
        let left = segment_seqs(dir.path());
        assert!(
            left.len() <= 2,
            "only the segments with b's 40 and 41 are left: {left:?}"
        );
        assert!(wal.stats().segments_deleted.load(Ordering::Relaxed) >= kept as u64 - 2);
        wal.shutdown();
    }
    // The vote was in the first segment, deleted: it was restated in the newer ones.
    let wal = Wal::open(dir.path(), options).unwrap();
    let seen_a = seen(&wal, 1).await;
    assert_eq!(seen_a.vote, Some(Vote::new(3, 1)));
    assert_eq!(seen_a.purged, Some(log_id(1, 40)));
    assert_eq!(seen_a.entries, vec![log_id(1, 41)]);
    assert_eq!(seen_a.committed, Some(log_id(1, 40)));
    let seen_b = seen(&wal, 2).await;
    assert_eq!(seen_b.purged, Some(log_id(1, 39)));
    assert_eq!(seen_b.entries, vec![log_id(1, 40), log_id(1, 41)]);
}

#[tokio::test]
async fn an_idle_group_does_not_keep_old_segments_forever() {
    // An idle group wrote a few entries once and never purges; a busy one writes and purges.
    // Without moving the idle group's entries forward, its first segment and every later one
    // would stay.
    let dir = tempfile::tempdir().unwrap();
    let max_segments = 3;
    let options = small_segments(max_segments);
    let (idle, busy) = (GroupId(1), GroupId(2));
    let busy_appends = 300;
    {
        let wal = Wal::open(dir.path(), options.clone()).unwrap();
        let mut log = wal.group::<MetaTypes>(idle);
        log.save_vote(&Vote::new(5, 2)).await.unwrap();
        log.blocking_append((1..=10).map(|i| big_entry(1, i, 200)))
            .await
            .unwrap();
        let mut log = wal.group::<MetaTypes>(busy);
        for i in 1..=busy_appends {
            log.blocking_append([big_entry(1, i, 200)]).await.unwrap();
            if i % 5 == 0 {
                log.purge(log_id(1, i - 2)).await.unwrap();
            }
        }
        wal.shutdown();
        let stats = wal.stats();
        println!(
            "{} rotations, {} bytes moved, {} segments deleted",
            stats.rotations.load(Ordering::Relaxed),
            stats.relocated_bytes.load(Ordering::Relaxed),
            stats.segments_deleted.load(Ordering::Relaxed)
        );
        assert!(stats.rotations.load(Ordering::Relaxed) > 10);
        assert!(stats.relocated_bytes.load(Ordering::Relaxed) > 0);
    }
    let left = segment_seqs(dir.path());
    assert!(
        left.len() <= max_segments + 1,
        "{} segments kept: {left:?}",
        left.len()
    );
    assert!(left[0] > 1, "the idle group's first segment is gone");
    let wal = Wal::open(dir.path(), options).unwrap();
    let seen_idle = seen(&wal, 1).await;
    assert_eq!(
        seen_idle.entries,
        (1..=10).map(|i| log_id(1, i)).collect::<Vec<_>>()
    );
    assert_eq!(seen_idle.vote, Some(Vote::new(5, 2)));
    let seen_busy = seen(&wal, 2).await;
    assert_eq!(seen_busy.purged, Some(log_id(1, busy_appends - 2)));
    assert_eq!(
        seen_busy.entries,
        vec![log_id(1, busy_appends - 1), log_id(1, busy_appends)]
    );
}

#[tokio::test]
async fn reopening_after_rotations_gives_every_group_the_same_log_even_with_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(4);
    let groups = [1u64, 2, 3, 4];
    let expected;
    {
        let wal = Wal::open(dir.path(), options.clone()).unwrap();
        let mut logs: Vec<GroupLog<MetaTypes>> =
            groups.iter().map(|g| wal.group(GroupId(*g))).collect();
        for (n, log) in logs.iter_mut().enumerate() {
            log.save_vote(&Vote::new(1 + n as u64, 1)).await.unwrap();
        }
        for i in 1..=60 {
            for log in logs.iter_mut() {
                log.blocking_append([big_entry(1, i, 60)]).await.unwrap();
            }
            if i % 10 == 0 {
                // Group 1 purges as a snapshotting group does; the others keep everything.
                logs[0].purge(log_id(1, i - 5)).await.unwrap();
                logs[0].save_committed(Some(log_id(1, i))).await.unwrap();
            }
        }
        // Group 2: a new leader's log replaces a suffix written many segments ago.
        logs[1].truncate(log_id(1, 20)).await.unwrap();
        logs[1]
            .blocking_append((20..=25).map(|i| big_entry(2, i, 60)))
            .await
            .unwrap();
        logs[1].save_vote(&Vote::new(7, 2)).await.unwrap();
        // Group 3: deleted (its queue was), after writing in many segments.
        wal.forget_group(GroupId(3)).await.unwrap();
        // Group 4: more rotations after all that.
        for i in 61..=120 {
            logs[3]
                .blocking_append([big_entry(1, i, 60)])
                .await
                .unwrap();
        }
        let mut seen_now = Vec::new();
        for g in groups {
            seen_now.push(seen(&wal, g).await);
        }
        // A last append, then a crash in the middle of writing it. Whether it rotated depends
        // on how the unwaited committed ids fell into batches: if it did, the crash tears the
        // new segment's head (restated votes and purge points), which the older segments hold.
        let rotations = wal.stats().rotations.load(Ordering::Relaxed);
        logs[0]
            .blocking_append([big_entry(1, 61, 10)])
            .await
            .unwrap();
        let mut seen_after = Vec::new();
        for g in groups {
            seen_after.push(seen(&wal, g).await);
        }
        wal.shutdown();
        let rotated = wal.stats().rotations.load(Ordering::Relaxed) > rotations;
        assert!(rotations > 8, "{rotations} rotations");
        expected = if rotated { seen_after } else { seen_now };
    }
    assert!(segments(dir.path()).len() > 1);
    let newest = segments(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&newest).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap();
    file.set_len(len - 3).unwrap();
    drop(file);
    for reopen in 0..2 {
        let wal = Wal::open(dir.path(), options.clone()).unwrap();
        assert_eq!(
            wal.stats().torn_bytes_cut.load(Ordering::Relaxed) > 0,
            reopen == 0
        );
        for (g, expected) in groups.iter().zip(&expected) {
            assert_eq!(
                &seen(&wal, *g).await,
                expected,
                "group {g}, reopen {reopen}"
            );
        }
        wal.shutdown();
    }
    // What those were, so the comparison above cannot pass on empty logs.
    assert_eq!(expected[1].entries.last(), Some(&log_id(2, 25)));
    assert_eq!(expected[1].vote, Some(Vote::new(7, 2)));
    assert_eq!(
        expected[2],
        Seen {
            entries: vec![],
            purged: None,
            last: None,
            vote: None,
            committed: None
        }
    );
    assert_eq!(expected[3].entries.len(), 120);
    assert_eq!(expected[0].purged, Some(log_id(1, 55)));
    assert!(expected[0].entries.len() >= 5);
}
