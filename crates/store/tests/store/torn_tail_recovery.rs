//! A crash in the middle of writing the last record leaves it incomplete. Recovery keeps every
//! record before it, cuts the file back to where the torn record began, and says so.

use crate::common;

use std::fs::OpenOptions;
use std::path::Path;

use common::{acks_path, append_all, body, contents, copy_dir, fast, open, segment_path};
use pigeon_store::TruncationReason;

/// A data directory holding queue "q" with messages 0..5 in segment 0, cleanly closed.
/// Returns the queue directory's name and where the last record starts.
fn fixture(dir: &Path) -> (String, u64) {
    let store = open(dir, fast());
    let log = store.queue_log("q").unwrap();
    append_all(&log, 0..4);
    let last = log.append(4, &body(4)).unwrap();
    store.close().unwrap();
    let name = log
        .dir()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    (name, last.offset)
}

fn set_len(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

#[test]
fn a_torn_last_record_is_cut_at_every_possible_cut_point() {
    let original = common::fresh_dir();
    let (name, last_start) = fixture(original.path());
    let seg = segment_path(&original.path().join("queues").join(&name), 0);
    let full_len = std::fs::metadata(&seg).unwrap().len();
    assert!(full_len > last_start + 8);

    for cut_len in last_start..full_len {
        let tmp = common::fresh_dir();
        copy_dir(original.path(), tmp.path());
        let seg = segment_path(&tmp.path().join("queues").join(&name), 0);
        set_len(&seg, cut_len);

        let store = open(tmp.path(), fast());
        let log = store.queue_log("q").unwrap();
        let expected: Vec<_> = (0..4).map(|s| (s, body(s), false)).collect();
        assert_eq!(contents(&log), expected, "cut at {cut_len}");
        let stats = log.recover().stats;
        if cut_len == last_start {
            // Cut exactly between records: nothing is torn.
            assert!(stats.truncations.is_empty());
        } else {
            assert_eq!(stats.truncations.len(), 1, "cut at {cut_len}");
            let t = &stats.truncations[0];
            assert_eq!((t.offset, t.bytes), (last_start, cut_len - last_start));
            assert_eq!(t.reason, TruncationReason::TornRecord);
            assert_eq!(stats.bytes_truncated, cut_len - last_start);
        }
        assert_eq!(
            std::fs::metadata(&seg).unwrap().len(),
            last_start,
            "cut at {cut_len}"
        );
    }
}

#[test]
fn appends_after_a_torn_tail_go_to_a_new_segment_and_survive() {
    let tmp = common::fresh_dir();
    let (name, last_start) = fixture(tmp.path());
    let dir = tmp.path().join("queues").join(&name);
    set_len(&segment_path(&dir, 0), last_start + 3);
    {
        let store = open(tmp.path(), fast());
        let log = store.queue_log("q").unwrap();
        append_all(&log, [4, 5]);
        store.close().unwrap();
    }
    assert!(segment_path(&dir, 1).exists());
    let store = open(tmp.path(), fast());
    let log = store.queue_log("q").unwrap();
    let seqs: Vec<u64> = contents(&log).iter().map(|m| m.0).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4, 5]);
    assert!(log.recover().stats.truncations.is_empty());
}

#[test]
fn a_torn_ack_loses_only_that_ack() {
    let tmp = common::fresh_dir();
    let (name, _) = fixture(tmp.path());
    let dir = tmp.path().join("queues").join(&name);
    {
        let store = open(tmp.path(), fast());
        let log = store.queue_log("q").unwrap();
        log.ack(1);
        log.ack(2);
        store.close().unwrap();
    }
    let acks = acks_path(&dir, 0);
    let len = std::fs::metadata(&acks).unwrap().len();
    set_len(&acks, len - 1);

    let store = open(tmp.path(), fast());
    let log = store.queue_log("q").unwrap();
    let seqs: Vec<u64> = contents(&log).iter().map(|m| m.0).collect();
    assert_eq!(
        seqs,
        vec![0, 2, 3, 4],
        "the ack of 2 was torn, the ack of 1 was not"
    );
    let stats = log.recover().stats;
    assert_eq!(stats.truncations.len(), 1);
    assert_eq!(stats.truncations[0].path, acks);
    assert_eq!(std::fs::metadata(&acks).unwrap().len(), len / 2);
}

#[test]
fn a_tail_of_zeros_is_cut() {
    let tmp = common::fresh_dir();
    let (name, last_start) = fixture(tmp.path());
    let seg = segment_path(&tmp.path().join("queues").join(&name), 0);
    let full_len = std::fs::metadata(&seg).unwrap().len();
    // Some file systems extend the file before its data lands: the tail reads as zeros.
    set_len(&seg, full_len + 4096);

    let store = open(tmp.path(), fast());
    let log = store.queue_log("q").unwrap();
    assert_eq!(log.len(), 5);
    let t = &log.recover().stats.truncations[0];
    assert_eq!(
        (t.offset, t.reason),
        (full_len, TruncationReason::BadLength)
    );
    assert!(last_start < full_len);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), full_len);
}
