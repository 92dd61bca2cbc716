//! Appended messages come back, bodies intact, from memory before they are written, from the
//! file after, and from a reopened store.

use crate::common;

use common::{append_all, body, contents, fast, open};
use pigeon_store::StoreError;

#[test]
fn appended_messages_are_recovered_after_reopen_in_seq_order() {
    let tmp = common::fresh_dir();
    {
        let store = open(tmp.path(), fast());
        let log = store.queue_log("orders").unwrap();
        append_all(&log, [3, 1, 2]);
        store.sync().unwrap();
    }
    let store = open(tmp.path(), fast());
    assert_eq!(store.queue_log_ids(), vec!["orders".to_owned()]);
    let log = store.queue_log("orders").unwrap();
    let expected: Vec<_> = [1, 2, 3].into_iter().map(|s| (s, body(s), false)).collect();
    assert_eq!(contents(&log), expected);
    let stats = log.recover().stats;
    assert_eq!(
        (stats.segments, stats.records_read, stats.bytes_truncated),
        (1, 3, 0)
    );
}

#[test]
fn a_body_reads_back_before_and_after_it_is_flushed() {
    let tmp = common::fresh_dir();
    let store = open(tmp.path(), fast());
    let log = store.queue_log("q").unwrap();
    let location = log.append(7, b"hello").unwrap();
    // Possibly still buffered in memory: read must find it either way.
    assert_eq!(log.read(&location).unwrap(), b"hello");
    store.wait_synced(store.current_epoch()).unwrap();
    assert_eq!(log.read(&location).unwrap(), b"hello");
    let empty = log.append(8, b"").unwrap();
    store.sync().unwrap();
    assert_eq!(log.read(&empty).unwrap(), b"");
}

#[test]
fn dropping_the_store_flushes_what_was_buffered() {
    let tmp = common::fresh_dir();
    {
        let store = open(tmp.path(), fast());
        let log = store.queue_log("q").unwrap();
        append_all(&log, 0..100);
        log.ack(5);
        log.delivered(6);
    }
    let store = open(tmp.path(), fast());
    let log = store.queue_log("q").unwrap();
    let got = contents(&log);
    assert_eq!(got.len(), 99);
    assert!(!got.iter().any(|(s, _, _)| *s == 5));
    assert!(got.iter().any(|(s, _, d)| *s == 6 && *d));
}

#[test]
fn close_reports_success_and_later_appends_are_refused() {
    let tmp = common::fresh_dir();
    let store = open(tmp.path(), fast());
    let log = store.queue_log("q").unwrap();
    append_all(&log, 0..3);
    store.close().unwrap();
    assert!(matches!(log.append(9, b"late"), Err(StoreError::Closed)));
    let store = open(tmp.path(), fast());
    assert_eq!(store.queue_log("q").unwrap().len(), 3);
}

#[test]
fn a_second_store_on_the_same_directory_is_refused() {
    let tmp = common::fresh_dir();
    let _store = open(tmp.path(), fast());
    let err = pigeon_store::Store::open(tmp.path(), fast()).err().unwrap();
    assert!(matches!(err, StoreError::AlreadyOpen { .. }), "{err:?}");
}

#[test]
fn reading_a_location_of_a_deleted_segment_is_no_such_record() {
    let tmp = common::fresh_dir();
    let store = open(tmp.path(), common::small_segments(64));
    let log = store.queue_log("q").unwrap();
    let first = log.append(1, &[1; 100]).unwrap();
    log.append(2, &[2; 100]).unwrap();
    log.ack(1);
    store.sync().unwrap();
    assert!(matches!(
        log.read(&first),
        Err(StoreError::NoSuchRecord { .. })
    ));
}
