//! Many appends share one fsync, and every durability callback fires exactly once, after its
//! records are on disk.

use crate::common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use common::{contents, fast, open};
use pigeon_store::{Location, StoreOptions, SyncMode};

const THREADS: u64 = 4;
const PER_THREAD: u64 = 2_500;

#[test]
fn appends_from_four_threads_share_fsyncs_and_every_callback_fires_once_after_its_data() {
    let tmp = common::fresh_dir();
    let opts = StoreOptions {
        sync: SyncMode::Always,
        ..StoreOptions::default()
    };
    let store = Arc::new(open(tmp.path(), opts));
    let (tx, rx) = mpsc::channel::<(u64, Location)>();
    let fired = Arc::new(AtomicU64::new(0));

    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = Arc::clone(&store);
            let tx = tx.clone();
            let fired = Arc::clone(&fired);
            std::thread::spawn(move || {
                let log = store.queue_log(&format!("q{t}")).unwrap();
                let (done_tx, done_rx) = mpsc::channel();
                for i in 0..PER_THREAD {
                    let seq = t * PER_THREAD + i;
                    let location = log.append(seq, &[t as u8; 1024]).unwrap();
                    let epoch = store.current_epoch();
                    let (tx, fired, store2, log2, done_tx) = (
                        tx.clone(),
                        Arc::clone(&fired),
                        Arc::clone(&store),
                        Arc::clone(&log),
                        done_tx.clone(),
                    );
                    store.on_synced(
                        epoch,
                        Box::new(move |outcome| {
                            outcome.unwrap();
                            assert!(store2.synced_epoch() >= epoch);
                            // The record is in its file by now, not only in memory.
                            let path = log2.dir().join(format!("{:020}.seg", location.segment));
                            let len = std::fs::metadata(path).unwrap().len();
                            assert!(len >= location.offset + u64::from(location.len));
                            fired.fetch_add(1, Ordering::SeqCst);
                            tx.send((seq, location)).unwrap();
                            let _ = done_tx.send(());
                        }),
                    );
                    // Like a publisher with a confirm window of 64.
                    if i >= 64 {
                        done_rx.recv().unwrap();
                    }
                }
            })
        })
        .collect();
    drop(tx);
    for t in threads {
        t.join().unwrap();
    }
    let confirmed: Vec<(u64, Location)> = rx.iter().collect();
    let total = THREADS * PER_THREAD;
    assert_eq!(confirmed.len() as u64, total);
    let mut seqs: Vec<u64> = confirmed.iter().map(|c| c.0).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len() as u64, total, "each callback fired exactly once");
    assert_eq!(fired.load(Ordering::SeqCst), total);

    let stats = store.stats();
    assert!(
        stats.fsyncs * 10 < total,
        "{} fsyncs for {total} appends: group commit is not batching",
        stats.fsyncs
    );
    eprintln!(
        "{total} appends, {} epochs, {} fsyncs",
        stats.epochs, stats.fsyncs
    );
}

#[test]
fn waiting_for_an_epoch_with_nothing_to_write_returns() {
    let tmp = common::fresh_dir();
    let store = open(tmp.path(), fast());
    let epoch = store.current_epoch();
    store.wait_synced(epoch).unwrap();
    assert!(store.synced_epoch() >= epoch);
    assert_eq!(store.stats().fsyncs, 0);
}

#[test]
fn a_callback_for_an_epoch_already_synced_runs_at_once() {
    let tmp = common::fresh_dir();
    let store = open(tmp.path(), fast());
    let log = store.queue_log("q").unwrap();
    log.append(1, b"x").unwrap();
    let epoch = store.current_epoch();
    store.wait_synced(epoch).unwrap();
    let (tx, rx) = mpsc::channel();
    store.on_synced(epoch, Box::new(move |r| tx.send(r.is_ok()).unwrap()));
    assert_eq!(rx.try_recv(), Ok(true));
}

#[test]
fn a_callback_registered_without_appending_still_fires() {
    let tmp = common::fresh_dir();
    let store = open(tmp.path(), fast());
    let (tx, rx) = mpsc::channel();
    store.on_synced(
        store.current_epoch(),
        Box::new(move |r| tx.send(r.is_ok()).unwrap()),
    );
    assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(5)), Ok(true));
}

#[test]
fn callbacks_pending_at_close_are_told_the_store_closed_or_synced() {
    let tmp = common::fresh_dir();
    let store = open(tmp.path(), fast());
    let log = store.queue_log("q").unwrap();
    log.append(1, b"x").unwrap();
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    store.on_synced(
        store.current_epoch(),
        Box::new(move |r| tx.send(r.is_ok()).unwrap()),
    );
    // Far in the future: never reached, so it must hear that the store closed.
    store.on_synced(u64::MAX, Box::new(move |r| tx2.send(r.is_ok()).unwrap()));
    store.close().unwrap();
    let mut outcomes: Vec<bool> = rx.iter().collect();
    outcomes.sort_unstable();
    assert_eq!(outcomes, vec![false, true]);
    assert_eq!(contents(&log).len(), 1);
}
