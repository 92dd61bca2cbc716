//! The calls a broker pages a queue with: listing live messages from a seq onward
//! (`live_from`), counting them (`live_summary`) and acknowledging a seq range (`ack_range`).

use crate::common;

use common::{append_all, body, contents, fast, open, small_segments};

#[test]
fn live_from_lists_the_next_live_messages_in_seq_order() {
    let tmp = common::fresh_dir();
    let store = open(tmp.path(), small_segments(256));
    let log = store.queue_log("q").unwrap();
    append_all(&log, 0..20);
    for seq in [3, 4, 10] {
        log.ack(seq);
    }
    log.delivered(5);

    let page: Vec<u64> = log.live_from(2, 4).iter().map(|m| m.seq).collect();
    assert_eq!(page, vec![2, 5, 6, 7]);
    let five = log.live_from(5, 1)[0];
    assert!(five.delivered);
    assert!(!log.live_from(6, 1)[0].delivered);
    // Readable whether still buffered or written.
    assert_eq!(log.read(&five.location).unwrap(), body(5));
    store.sync().unwrap();
    assert_eq!(log.read(&five.location).unwrap(), body(5));

    let rest: Vec<u64> = log.live_from(10, 100).iter().map(|m| m.seq).collect();
    assert_eq!(rest, (11..20).collect::<Vec<_>>());
    assert!(log.live_from(20, 10).is_empty());
    assert!(log.live_from(0, 0).is_empty());
}

#[test]
fn live_summary_counts_from_a_seq() {
    let tmp = common::fresh_dir();
    let store = open(tmp.path(), fast());
    let log = store.queue_log("q").unwrap();
    assert_eq!(log.live_summary(0).messages, 0);
    assert_eq!(log.live_summary(0).last_seq, None);
    append_all(&log, 0..10);
    log.ack(9);
    let all = log.live_summary(0);
    assert_eq!(all.messages, 9);
    assert_eq!(all.last_seq, Some(8));
    let data: u64 = (0..9).map(|s| body(s).len() as u64).sum();
    assert!(all.frame_bytes > data, "frames include their headers");
    let tail = log.live_summary(5);
    assert_eq!(tail.messages, 4);
    assert_eq!(tail.last_seq, Some(8));
}

#[test]
fn ack_range_acknowledges_every_live_message_in_it_durably() {
    let tmp = common::fresh_dir();
    {
        let store = open(tmp.path(), small_segments(300));
        let log = store.queue_log("q").unwrap();
        append_all(&log, 0..30);
        log.ack(12);
        assert_eq!(log.ack_range(10..20), 9);
        assert_eq!(log.ack_range(10..20), 0);
        assert_eq!(log.ack_range(25..), 5);
        assert_eq!(log.len(), 15);
        store.sync().unwrap();
    }
    let store = open(tmp.path(), fast());
    let log = store.queue_log("q").unwrap();
    let seqs: Vec<u64> = contents(&log).iter().map(|m| m.0).collect();
    let want: Vec<u64> = (0..10).chain(20..25).collect();
    assert_eq!(seqs, want);
}

/// Segment numbers past 32 bits do not fit the packed index entries: they are kept whole.
#[test]
fn segments_numbered_past_32_bits_are_indexed_without_loss() {
    let tmp = common::fresh_dir();
    let dir = {
        let store = open(tmp.path(), fast());
        let log = store.queue_log("q").unwrap();
        append_all(&log, 0..5);
        log.delivered(1);
        store.sync().unwrap();
        common::queue_dir(&log)
    };
    let big: u64 = (1 << 32) + 7;
    for ext in ["seg", "acks"] {
        let from = dir.join(format!("{:020}.{ext}", 0));
        if from.exists() {
            std::fs::rename(&from, dir.join(format!("{big:020}.{ext}"))).unwrap();
        }
    }
    {
        let store = open(tmp.path(), fast());
        let log = store.queue_log("q").unwrap();
        let got = contents(&log);
        let want: Vec<(u64, Vec<u8>, bool)> = (0..5).map(|s| (s, body(s), s == 1)).collect();
        assert_eq!(got, want);
        assert_eq!(log.live_from(0, 1)[0].location.segment, big);
        // Appends go to the next segment, past 32 bits too; acks and flags still find them.
        append_all(&log, 5..8);
        log.delivered(6);
        log.ack(0);
        log.ack(7);
        assert_eq!(log.ack_range(2..4), 2);
        store.sync().unwrap();
    }
    let store = open(tmp.path(), fast());
    let log = store.queue_log("q").unwrap();
    let got: Vec<(u64, bool)> = contents(&log).iter().map(|m| (m.0, m.2)).collect();
    assert_eq!(got, vec![(1, true), (4, false), (5, false), (6, true)]);
}
