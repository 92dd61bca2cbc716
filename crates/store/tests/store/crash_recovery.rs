//! A crash keeps what was synced. The crash is simulated by copying the data directory while
//! the store runs: the copy holds what had reached the files at that moment, possibly a record
//! half written, and is then opened as a restarted broker would open it.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{body, contents, copy_dir, fast, open};

#[test]
fn records_synced_before_a_crash_are_recovered() {
    let tmp = common::fresh_dir();
    let crashed = tempfile::tempdir().unwrap();
    let store = Arc::new(open(tmp.path(), fast()));
    let log = store.queue_log("q").unwrap();
    for seq in 0..500 {
        log.append(seq, &body(seq)).unwrap();
    }
    log.ack(10);
    log.delivered(11);
    store.sync().unwrap();

    // Keep writing while the "crash" happens.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (log, stop) = (Arc::clone(&log), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut seq = 500;
            while !stop.load(Ordering::SeqCst) {
                log.append(seq, &body(seq)).unwrap();
                seq += 1;
            }
            seq
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(20));
    copy_dir(tmp.path(), crashed.path());
    stop.store(true, Ordering::SeqCst);
    let appended = writer.join().unwrap();

    let recovered_store = open(crashed.path(), fast());
    let recovered = recovered_store.queue_log("q").unwrap();
    let got = contents(&recovered);
    // Everything synced is there, acknowledged 10 is not, 11 remembers its delivery.
    let synced: Vec<_> = (0..500)
        .filter(|&s| s != 10)
        .map(|s| (s, body(s), s == 11))
        .collect();
    assert_eq!(&got[..499], &synced[..]);
    // What was not synced may or may not be there, but what is there is intact and in order.
    for (i, (seq, data, delivered)) in got[499..].iter().enumerate() {
        assert_eq!(*seq, 500 + i as u64);
        assert_eq!(*data, body(*seq));
        assert!(!delivered);
        assert!(*seq < appended);
    }
}

#[test]
fn a_restarted_store_keeps_appending_after_recovered_messages() {
    let tmp = common::fresh_dir();
    let crashed = tempfile::tempdir().unwrap();
    {
        let store = open(tmp.path(), fast());
        let log = store.queue_log("q").unwrap();
        common::append_all(&log, 0..50);
        store.sync().unwrap();
        copy_dir(tmp.path(), crashed.path());
    }
    for round in 0..3u64 {
        let store = open(crashed.path(), fast());
        let log = store.queue_log("q").unwrap();
        assert_eq!(log.len() as u64, 50 + round * 10);
        let next = 50 + round * 10;
        common::append_all(&log, next..next + 10);
        store.sync().unwrap();
    }
    let store = open(crashed.path(), fast());
    let seqs: Vec<u64> = contents(&store.queue_log("q").unwrap())
        .iter()
        .map(|m| m.0)
        .collect();
    assert_eq!(seqs, (0..80).collect::<Vec<_>>());
}
