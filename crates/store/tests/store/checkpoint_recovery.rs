//! Checkpoints through the public API: written when the store closes, by the background
//! thread and on demand; a restart loads them and reads only what came after, and recovers
//! exactly what was synced. (Crashes at every step of writing one, damaged and stale ones:
//! `src/log/checkpoint_tests.rs`.)

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{contents, copy_dir, fast, open};
use pigeon_store::{CheckpointOutcome, StoreOptions};

fn kib(seq: u64) -> Vec<u8> {
    let mut body = format!("message {seq} ").into_bytes();
    body.resize(1024, b'.');
    body
}

#[test]
fn closing_the_store_checkpoints_and_a_restart_reads_nothing_else() {
    let tmp = common::fresh_dir();
    let mut model = BTreeMap::new();
    {
        let store = open(tmp.path(), fast());
        let log = store.queue_log("q").unwrap();
        for seq in 0..1500 {
            log.append(seq, &kib(seq)).unwrap();
            model.insert(seq, (kib(seq), false));
        }
        for seq in (0..1500).step_by(5) {
            log.ack(seq);
            model.remove(&seq);
        }
        for seq in [1, 2, 1499] {
            log.delivered(seq);
            model.get_mut(&seq).unwrap().1 = true;
        }
        // A small queue is not worth a checkpoint: it is read whole, as before.
        let small = store.queue_log("small").unwrap();
        common::append_all(&small, 0..10);
        store.close().unwrap();
    }
    let store = open(tmp.path(), fast());
    let log = store.queue_log("q").unwrap();
    let recovery = log.recover();
    assert!(
        matches!(
            recovery.stats.checkpoint,
            CheckpointOutcome::Loaded { entries: 1200 }
        ),
        "{:?}",
        recovery.stats.checkpoint
    );
    assert_eq!(recovery.stats.records_read, 0);
    let want: Vec<_> = model.into_iter().map(|(s, (b, d))| (s, b, d)).collect();
    assert_eq!(contents(&log), want);
    let small = store.queue_log("small").unwrap();
    assert_eq!(small.recover().stats.checkpoint, CheckpointOutcome::None);
    assert_eq!(small.len(), 10);
}

#[test]
fn the_background_thread_checkpoints_a_growing_log_and_a_crash_replays_only_the_rest() {
    let tmp = common::fresh_dir();
    let crashed = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        checkpoint_interval: Some(Duration::from_millis(10)),
        // Any uncovered byte: with a larger floor, a checkpoint taken while the appends were
        // still going would leave a remainder under the floor that is never covered.
        checkpoint_bytes: 1,
        ..fast()
    };
    let store = open(tmp.path(), opts);
    let log = store.queue_log("q").unwrap();
    for seq in 0..200 {
        log.append(seq, &kib(seq)).unwrap();
    }
    store.sync().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while log.uncheckpointed_bytes() > 0 {
        assert!(Instant::now() < deadline, "no checkpoint was written");
        std::thread::sleep(Duration::from_millis(5));
    }
    // After the checkpoint: acks of checkpointed messages, new messages, a delivered flag.
    for seq in 0..50 {
        log.ack(seq);
    }
    for seq in 200..230 {
        log.append(seq, &kib(seq)).unwrap();
    }
    log.delivered(100);
    store.sync().unwrap();
    copy_dir(tmp.path(), crashed.path());
    drop(store);

    let store = open(crashed.path(), fast());
    let log = store.queue_log("q").unwrap();
    let recovery = log.recover();
    assert!(
        matches!(recovery.stats.checkpoint, CheckpointOutcome::Loaded { .. }),
        "{:?}",
        recovery.stats.checkpoint
    );
    // Only what came after the checkpoint was read (30 messages, 51 events; the thread may
    // have checkpointed some of them too).
    assert!(recovery.stats.records_read <= 81, "{:?}", recovery.stats);
    let want: Vec<_> = (50..230).map(|s| (s, kib(s), s == 100)).collect();
    assert_eq!(contents(&log), want);
}

#[test]
fn checkpoints_on_demand_skip_volatile_and_deleted_logs() {
    let tmp = common::fresh_dir();
    let store = open(tmp.path(), fast());
    let log = store.queue_log("q").unwrap();
    common::append_all(&log, 0..20);
    let volatile = store.volatile_queue_log("\0transient\0v").unwrap();
    common::append_all(&volatile, 0..20);
    // A checkpoint covers only what the flusher has written (bytes still buffered stay past
    // its cover), so the appends are synced first for "nothing uncovered" to hold.
    store.sync().unwrap();
    assert_eq!(store.checkpoint(0).unwrap(), 1);
    assert_eq!(log.uncheckpointed_bytes(), 0);
    assert_eq!(store.checkpoint(0).unwrap(), 0, "nothing new to cover");
    assert!(volatile.checkpoint().unwrap().is_none());
    assert!(!volatile.dir().join("checkpoint").exists());

    // A queue deleted and declared again starts empty, without its predecessor's checkpoint.
    store.delete_queue_log("q").unwrap();
    assert!(log.checkpoint().unwrap().is_none());
    let again = store.queue_log("q").unwrap();
    assert!(again.is_empty());
    store.close().unwrap();
    let store = open(tmp.path(), fast());
    let again = store.queue_log("q").unwrap();
    assert!(again.is_empty());
    assert_eq!(again.recover().stats.checkpoint, CheckpointOutcome::None);
}
