//! Acknowledged messages stay gone after a restart; delivered flags come back; seqs behave as
//! documented (replacing a live seq, reusing an acknowledged one).

use crate::common;

use common::{append_all, body, contents, fast, open};

#[test]
fn acknowledged_messages_are_not_recovered() {
    let tmp = common::fresh_dir();
    {
        let store = open(tmp.path(), fast());
        let log = store.queue_log("q").unwrap();
        append_all(&log, 0..10);
        store.sync().unwrap();
        for seq in [0, 3, 9] {
            log.ack(seq);
        }
        log.ack(3); // twice
        log.ack(42); // never appended
        assert_eq!(log.len(), 7);
        store.sync().unwrap();
    }
    let store = open(tmp.path(), fast());
    let log = store.queue_log("q").unwrap();
    let seqs: Vec<u64> = contents(&log).iter().map(|m| m.0).collect();
    assert_eq!(seqs, vec![1, 2, 4, 5, 6, 7, 8]);
}

#[test]
fn a_message_appended_and_acknowledged_before_any_flush_is_not_recovered() {
    let tmp = common::fresh_dir();
    {
        let store = open(tmp.path(), fast());
        let log = store.queue_log("q").unwrap();
        append_all(&log, 0..2);
        log.ack(0);
    }
    let store = open(tmp.path(), fast());
    let seqs: Vec<u64> = contents(&store.queue_log("q").unwrap())
        .iter()
        .map(|m| m.0)
        .collect();
    assert_eq!(seqs, vec![1]);
}

#[test]
fn the_delivered_flag_is_recovered() {
    let tmp = common::fresh_dir();
    {
        let store = open(tmp.path(), fast());
        let log = store.queue_log("q").unwrap();
        append_all(&log, 0..4);
        log.delivered(1);
        log.delivered(1);
        log.delivered(2);
        log.ack(2);
        store.sync().unwrap();
    }
    let store = open(tmp.path(), fast());
    let log = store.queue_log("q").unwrap();
    let expected = vec![(0, body(0), false), (1, body(1), true), (3, body(3), false)];
    assert_eq!(contents(&log), expected);
}

#[test]
fn acks_made_lazily_are_written_without_an_explicit_sync() {
    let tmp = common::fresh_dir();
    let store = open(tmp.path(), fast());
    let log = store.queue_log("q").unwrap();
    append_all(&log, 0..2);
    store.sync().unwrap();
    let before = store.synced_epoch();
    log.ack(0);
    // ack_flush_delay (200 ms by default) later, a round writes it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while store.synced_epoch() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the ack was never flushed"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let acks = common::acks_path(log.dir(), 0);
    assert!(std::fs::metadata(acks).unwrap().len() > 0);
}

#[test]
fn appending_a_live_seq_replaces_the_message() {
    let tmp = common::fresh_dir();
    {
        let store = open(tmp.path(), fast());
        let log = store.queue_log("q").unwrap();
        log.append(1, b"first").unwrap();
        log.append(2, b"other").unwrap();
        log.append(1, b"second").unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(contents(&log)[0].1, b"second");
    }
    let store = open(tmp.path(), fast());
    let log = store.queue_log("q").unwrap();
    assert_eq!(
        contents(&log),
        vec![
            (1, b"second".to_vec(), false),
            (2, b"other".to_vec(), false)
        ]
    );
}

#[test]
fn a_seq_can_be_reused_once_acknowledged() {
    let tmp = common::fresh_dir();
    {
        let store = open(tmp.path(), fast());
        let log = store.queue_log("q").unwrap();
        log.append(1, b"old").unwrap();
        log.ack(1);
        log.append(1, b"new").unwrap();
    }
    let store = open(tmp.path(), fast());
    let log = store.queue_log("q").unwrap();
    assert_eq!(contents(&log), vec![(1, b"new".to_vec(), false)]);
}
