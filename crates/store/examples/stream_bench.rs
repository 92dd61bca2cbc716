//! Stream log micro-benchmark: append throughput and recovery time (docs/performance.md,
//! "Streams").
//!
//! ```text
//! cargo run --release -p pigeon-store --example stream_bench -- DIR [GB]
//! ```
//!
//! Appends chunks of 100 entries of 1 KiB and of 16 B into fresh streams under `DIR`, first
//! without syncing (page cache), then with a `sync` after every chunk (one appender: each chunk
//! waits for its own `fdatasync`). Then fills a stream of `GB` gigabytes (default 1) and times
//! opening it. Removes what it wrote.

use std::path::Path;
use std::time::{Duration, Instant};

use pigeon_store::stream::{Entry, OffsetSpec, ReadOptions};
use pigeon_store::{StreamConfig, StreamLog, SyncMode};

fn config(sync: SyncMode) -> StreamConfig {
    StreamConfig {
        sync,
        ..StreamConfig::default()
    }
}

/// Appends chunks of 100 entries of `len` bytes for about `budget`, or `max_bytes`, from
/// `threads` appenders each syncing after each chunk (with `SyncMode::Always`).
fn append_run(
    dir: &Path,
    len: usize,
    sync: SyncMode,
    threads: u64,
    budget: Duration,
    max_bytes: u64,
) {
    let _ = std::fs::remove_dir_all(dir);
    let log = StreamLog::open(dir, config(sync)).expect("open");
    let started = Instant::now();
    let totals: Vec<(u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let log = &log;
                s.spawn(move || {
                    let body = vec![0x5a_u8; len];
                    let entries: Vec<_> = (0..100).map(|_| Entry::Simple(&body)).collect();
                    let (mut chunks, mut bytes) = (0u64, 0u64);
                    while started.elapsed() < budget && bytes < max_bytes / threads {
                        let info = log.append(&entries, 0).expect("append");
                        if sync == SyncMode::Always {
                            log.sync().expect("sync");
                        }
                        chunks += 1;
                        bytes += info.stored_len;
                    }
                    (chunks, bytes)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let chunks: u64 = totals.iter().map(|t| t.0).sum();
    let bytes: u64 = totals.iter().map(|t| t.1).sum();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "append {len:>5} B entries, chunks of 100, {:<6} x{threads}: {:>10.0} msg/s {:>8.1} MB/s {:>8.0} chunks/s ({chunks} chunks, {:.2} s)",
        format!("{sync:?}"),
        chunks as f64 * 100.0 / secs,
        bytes as f64 / secs / 1e6,
        chunks as f64 / secs,
        secs
    );
    drop(log);
    let _ = std::fs::remove_dir_all(dir);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let root = args.next().expect("usage: stream_bench DIR [GB]");
    let gb: f64 = args.next().map_or(1.0, |a| a.parse().expect("GB"));
    let root = Path::new(&root);
    std::fs::create_dir_all(root).expect("mkdir");
    let budget = Duration::from_secs(5);
    for len in [1024, 16] {
        append_run(
            &root.join("append"),
            len,
            SyncMode::Never,
            1,
            budget,
            2 << 30,
        );
        append_run(
            &root.join("append"),
            len,
            SyncMode::Always,
            1,
            budget,
            2 << 30,
        );
        append_run(
            &root.join("append"),
            len,
            SyncMode::Always,
            8,
            budget,
            2 << 30,
        );
    }

    let dir = root.join("recovery");
    let _ = std::fs::remove_dir_all(&dir);
    let target = (gb * 1e9) as u64;
    {
        let log = StreamLog::open(&dir, config(SyncMode::Never)).expect("open");
        let body = vec![0x5a_u8; 1024];
        let entries: Vec<_> = (0..100).map(|_| Entry::Simple(&body)).collect();
        let mut bytes = 0;
        let mut n = 0u64;
        while bytes < target {
            bytes += log.append(&entries, n as i64).expect("append").stored_len;
            n += 1;
            if n % 1000 == 0 {
                log.store_offset(b"consumer", n * 100, n as i64)
                    .expect("store");
            }
        }
        log.sync().expect("sync");
        let s = log.stats();
        println!(
            "filled: {} segments, {} chunks, {:.2} GB",
            s.segments,
            s.chunks,
            s.bytes as f64 / 1e9
        );
    }
    for run in 0..3 {
        let started = Instant::now();
        let log = StreamLog::open(&dir, config(SyncMode::Always)).expect("open");
        let took = started.elapsed();
        let st = log.recovery_stats();
        println!(
            "open #{run}: {:.2} ms; {} reads, {} index records, {} segment bytes read; next offset {}, consumer at {:?}",
            took.as_secs_f64() * 1e3,
            st.reads,
            st.index_records_read,
            st.segment_bytes_read,
            log.next_offset(),
            log.query_offset(b"consumer"),
        );
        if run == 0 {
            let started = Instant::now();
            let seek = log
                .seek(OffsetSpec::Offset(log.next_offset() / 2))
                .expect("seek");
            let mut r = log.reader_at(seek, ReadOptions::default());
            let mut n = 0;
            while started.elapsed() < Duration::from_secs(2) {
                match r.next_chunk().expect("read") {
                    Some(c) => n += c.deliver_len(),
                    None => break,
                }
            }
            println!(
                "reader: {:.0} MB/s of chunk ranges located (headers read, data not)",
                n as f64 / started.elapsed().as_secs_f64() / 1e6
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
