//! How many durable appends per second the store sustains with `SyncMode::Always`, and how many
//! fsyncs that takes.
//!
//! ```text
//! cargo run -p pigeon-store --example append_throughput [-- SECONDS [RECORD_BYTES]]
//! ```
//!
//! Each scenario runs publisher threads that append records and count one as done when its
//! epoch is synced, as a broker would send a publisher confirm:
//! - *window 1*: a publisher waits for each record before appending the next (synchronous
//!   publishing); at most one record per thread per fsync.
//! - *window 256*: a publisher keeps up to 256 records in flight (a confirm window), so a round
//!   carries as many records as arrived during the previous fsync.

#![allow(clippy::unwrap_used)] // an example: a failure should stop it loudly

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use pigeon_store::{Store, StoreOptions, SyncMode};

struct Scenario {
    threads: usize,
    /// All threads append to one queue rather than each to its own.
    one_queue: bool,
    window: usize,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().map_or(3.0, |s| s.parse().unwrap());
    let size: usize = args.next().map_or(1024, |s| s.parse().unwrap());
    println!("record {size} B, {secs} s per scenario, SyncMode::Always");
    println!(
        "{:>7} {:>10} {:>7} {:>12} {:>9} {:>9} {:>12}",
        "threads", "queues", "window", "appends/s", "fsyncs/s", "epochs/s", "appends/sync"
    );
    for s in [
        Scenario {
            threads: 1,
            one_queue: true,
            window: 1,
        },
        Scenario {
            threads: 4,
            one_queue: true,
            window: 1,
        },
        Scenario {
            threads: 4,
            one_queue: false,
            window: 1,
        },
        Scenario {
            threads: 1,
            one_queue: true,
            window: 256,
        },
        Scenario {
            threads: 4,
            one_queue: true,
            window: 256,
        },
        Scenario {
            threads: 4,
            one_queue: false,
            window: 256,
        },
    ] {
        run(&s, Duration::from_secs_f64(secs), size);
    }
}

fn run(scenario: &Scenario, duration: Duration, size: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        sync: SyncMode::Always,
        ..StoreOptions::default()
    };
    let store = Arc::new(Store::open(tmp.path(), opts).unwrap());
    let done = Arc::new(AtomicU64::new(0));
    let before = store.stats();
    let started = Instant::now();
    let threads: Vec<_> = (0..scenario.threads)
        .map(|t| {
            let store = Arc::clone(&store);
            let done = Arc::clone(&done);
            let queue = if scenario.one_queue {
                "bench".to_owned()
            } else {
                format!("bench-{t}")
            };
            let window = scenario.window;
            std::thread::spawn(move || {
                let log = store.queue_log(&queue).unwrap();
                let data = vec![0xA5; size];
                let (confirm_tx, confirm_rx) = mpsc::channel::<()>();
                let mut in_flight = 0;
                let mut seq = (t as u64) << 40;
                while started.elapsed() < duration {
                    log.append(seq, &data).unwrap();
                    seq += 1;
                    let (tx, done) = (confirm_tx.clone(), Arc::clone(&done));
                    store.on_synced(
                        store.current_epoch(),
                        Box::new(move |r| {
                            r.unwrap();
                            done.fetch_add(1, Ordering::Relaxed);
                            let _ = tx.send(());
                        }),
                    );
                    in_flight += 1;
                    while in_flight >= window {
                        confirm_rx.recv().unwrap();
                        in_flight -= 1;
                    }
                    // Keep the log from growing without bound: ack what is durable.
                    if seq % 1024 == 0 {
                        for old in seq.saturating_sub(2048)..seq.saturating_sub(1024) {
                            log.ack(old);
                        }
                    }
                }
                while in_flight > 0 {
                    confirm_rx.recv().unwrap();
                    in_flight -= 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = store.stats();
    let appends = done.load(Ordering::Relaxed) as f64;
    let fsyncs = (after.fsyncs - before.fsyncs) as f64;
    let epochs = (after.epochs - before.epochs) as f64;
    println!(
        "{:>7} {:>10} {:>7} {:>12.0} {:>9.0} {:>9.0} {:>12.1}",
        scenario.threads,
        if scenario.one_queue {
            "1".to_owned()
        } else {
            scenario.threads.to_string()
        },
        scenario.window,
        appends / elapsed,
        fsyncs / elapsed,
        epochs / elapsed,
        appends / fsyncs.max(1.0),
    );
}
