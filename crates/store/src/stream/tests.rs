//! Unit tests of the stream log: appending, reading, seeking, rolling, retention, tracking,
//! filtering and group commit. Crash recovery is in `crash_tests.rs`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::SyncMode;

pub(super) fn config(max_segment: u64) -> StreamConfig {
    StreamConfig {
        max_segment_size_bytes: max_segment,
        sync: SyncMode::Never,
        ..StreamConfig::default()
    }
}

/// The body of message `i`: its number, then `len` filler bytes.
pub(super) fn body(i: u64, len: usize) -> Vec<u8> {
    let mut b = i.to_be_bytes().to_vec();
    b.extend(std::iter::repeat_n((i % 251) as u8, len));
    b
}

/// Appends a chunk of `n` messages starting at message number `first`.
pub(super) fn append_n(log: &StreamLog, first: u64, n: u64, len: usize, ts: i64) -> ChunkInfo {
    let bodies: Vec<_> = (first..first + n).map(|i| body(i, len)).collect();
    let entries: Vec<_> = bodies.iter().map(|b| Entry::Simple(b)).collect();
    log.append(&entries, ts).unwrap()
}

/// Every committed user chunk from `spec`: (header, the message bodies), each checked against
/// its CRC and its `Deliver` bytes.
pub(super) fn read_all(log: &Arc<StreamLog>, spec: OffsetSpec) -> Vec<(ChunkHeader, Vec<Vec<u8>>)> {
    let mut r = log.reader(spec, ReadOptions::default()).unwrap();
    let mut out = Vec::new();
    while let Some(c) = r.next_chunk().unwrap() {
        let deliver = c.read_deliver().unwrap();
        assert_eq!(deliver.len() as u64, c.deliver_len());
        let head: [u8; HEADER_LEN] = deliver[..HEADER_LEN].try_into().unwrap();
        assert_eq!(ChunkHeader::parse(&head), Some(c.header));
        let data = &deliver[HEADER_LEN..];
        assert_eq!(crc32fast::hash(data), c.header.data_crc);
        assert_eq!(data, c.read_data().unwrap());
        let entries = parse_entries(data).unwrap();
        assert_eq!(entries.len(), usize::from(c.header.num_entries));
        let bodies = entries
            .into_iter()
            .map(|e| match e {
                Entry::Simple(b) => b.to_vec(),
                Entry::SubBatch { data, .. } => data.to_vec(),
            })
            .collect();
        out.push((c.header, bodies));
    }
    out
}

fn files(dir: &Path, ext: &str) -> Vec<String> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(ext))
        .collect();
    v.sort();
    v
}

#[test]
fn appended_chunks_are_read_back_as_deliver_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let log = StreamLog::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(
        (log.first_offset(), log.next_offset(), log.last_offset()),
        (0, 0, None)
    );
    let a = append_n(&log, 0, 3, 10, 1000);
    let b = append_n(&log, 3, 2, 10, 1001);
    assert_eq!((a.chunk_id, a.num_records, b.chunk_id), (0, 3, 3));
    assert_eq!((log.next_offset(), log.last_offset()), (5, Some(4)));
    let chunks = read_all(&log, OffsetSpec::First);
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[0].0.chunk_id, 0);
    assert_eq!(chunks[0].0.timestamp, 1000);
    assert_eq!(chunks[1].1, vec![body(3, 10), body(4, 10)]);
    assert_eq!(chunks[0].0.chunk_type, ChunkType::User);
}

#[test]
fn sub_batches_take_one_offset_per_message() {
    let dir = tempfile::tempdir().unwrap();
    let log = StreamLog::open(dir.path(), config(1 << 20)).unwrap();
    let entries = [
        Entry::SubBatch {
            compression: 0,
            records: 10,
            uncompressed_len: 3,
            data: b"abc",
        },
        Entry::Simple(b"x"),
    ];
    let info = log.append(&entries, 1).unwrap();
    assert_eq!(info.num_records, 11);
    assert_eq!(log.next_offset(), 11);
    let mut r = log
        .reader(OffsetSpec::First, ReadOptions::default())
        .unwrap();
    let c = r.next_chunk().unwrap().unwrap();
    assert_eq!(parse_entries(&c.read_data().unwrap()).unwrap(), entries);
}

#[test]
fn readers_see_chunks_only_once_synced() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StreamConfig {
        sync: SyncMode::Always,
        ..config(1 << 20)
    };
    let log = StreamLog::open(dir.path(), cfg).unwrap();
    let mut r = log
        .reader(OffsetSpec::First, ReadOptions::default())
        .unwrap();
    append_n(&log, 0, 2, 10, 1);
    assert_eq!(log.committed_chunk_id(), None);
    assert!(r.next_chunk().unwrap().is_none());
    assert_eq!(log.sync().unwrap(), Some(0));
    assert_eq!(log.committed_offset(), 2);
    assert_eq!(r.next_chunk().unwrap().unwrap().header.chunk_id, 0);
    assert!(r.next_chunk().unwrap().is_none());
    append_n(&log, 2, 1, 10, 1);
    assert!(r.next_chunk().unwrap().is_none());
    log.sync().unwrap();
    assert_eq!(r.next_chunk().unwrap().unwrap().header.chunk_id, 2);
}

#[test]
fn concurrent_appenders_share_syncs_and_all_commit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StreamConfig {
        sync: SyncMode::Always,
        ..config(1 << 20)
    };
    let log = StreamLog::open(dir.path(), cfg).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let log = &log;
            s.spawn(move || {
                for i in 0..20 {
                    let info = append_n(log, t * 100 + i, 1, 16, 1);
                    let committed = log.sync().unwrap().unwrap();
                    assert!(committed >= info.chunk_id);
                }
            });
        }
    });
    assert_eq!(log.committed_offset(), 80);
    assert_eq!(read_all(&log, OffsetSpec::First).len(), 80);
}

#[test]
fn seek_follows_rabbitmq_offset_specifications() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments: lookups cross segment boundaries.
    let log = StreamLog::open(dir.path(), config(600)).unwrap();
    for c in 0..20u64 {
        append_n(&log, c * 5, 5, 20, 1000 + c as i64 * 10);
    }
    assert!(log.stats().segments > 3);
    let first = |spec| log.seek(spec).unwrap().chunk_id;
    assert_eq!(first(OffsetSpec::First), 0);
    assert_eq!(first(OffsetSpec::Last), 95);
    assert_eq!(first(OffsetSpec::Next), 100);
    assert_eq!(first(OffsetSpec::Offset(0)), 0);
    assert_eq!(first(OffsetSpec::Offset(37)), 35);
    assert_eq!(first(OffsetSpec::Offset(40)), 40);
    assert_eq!(first(OffsetSpec::Offset(99)), 95);
    assert_eq!(first(OffsetSpec::Offset(100)), 100);
    assert_eq!(first(OffsetSpec::Offset(1_000)), 100);
    assert_eq!(first(OffsetSpec::Timestamp(0)), 0);
    assert_eq!(first(OffsetSpec::Timestamp(1055)), 30);
    assert_eq!(first(OffsetSpec::Timestamp(1060)), 30);
    assert_eq!(first(OffsetSpec::Timestamp(5000)), 100);
    // Reading from an offset in the middle crosses into later segments.
    let chunks = read_all(&log, OffsetSpec::Offset(37));
    assert_eq!(chunks.len(), 13);
    assert_eq!(chunks.last().unwrap().1[4], body(99, 20));
    // A reader at `Next` gets what comes later, in a new segment or not.
    let mut r = log
        .reader(OffsetSpec::Next, ReadOptions::default())
        .unwrap();
    assert!(r.next_chunk().unwrap().is_none());
    append_n(&log, 100, 1, 1000, 2000);
    assert_eq!(r.next_chunk().unwrap().unwrap().header.chunk_id, 100);
}

#[test]
fn seek_on_an_empty_stream_is_next() {
    let dir = tempfile::tempdir().unwrap();
    let log = StreamLog::open(dir.path(), config(1 << 20)).unwrap();
    for spec in [
        OffsetSpec::First,
        OffsetSpec::Last,
        OffsetSpec::Next,
        OffsetSpec::Offset(5),
        OffsetSpec::Timestamp(0),
    ] {
        assert_eq!(log.seek(spec).unwrap().chunk_id, 0);
    }
    let mut r = log
        .reader(OffsetSpec::Last, ReadOptions::default())
        .unwrap();
    append_n(&log, 0, 1, 1, 1);
    assert_eq!(r.next_chunk().unwrap().unwrap().header.chunk_id, 0);
}

#[test]
fn segments_roll_at_the_size_limit_and_are_named_by_first_chunk_id() {
    let dir = tempfile::tempdir().unwrap();
    let log = StreamLog::open(dir.path(), config(500)).unwrap();
    let mut infos = Vec::new();
    for i in 0..6 {
        // 48 + 4 + 8 + 100 = 160 bytes a chunk: three fit in a 500-byte segment with its header.
        infos.push(append_n(&log, i, 1, 100, 1));
    }
    assert_eq!(
        files(dir.path(), ".segment"),
        [
            "00000000000000000000.segment",
            "00000000000000000003.segment"
        ]
    );
    assert_eq!(infos[3].segment, 3);
    assert_eq!(infos[3].position, 8);
    // A chunk larger than a segment gets one of its own.
    let big = append_n(&log, 6, 1, 2000, 1);
    assert_eq!((big.segment, big.position), (6, 8));
    let after = append_n(&log, 7, 1, 10, 1);
    assert_eq!(after.segment, 7);
    assert_eq!(read_all(&log, OffsetSpec::First).len(), 8);
    assert_eq!(files(dir.path(), ".index").len(), 4);
}

#[test]
fn retention_by_size_drops_whole_old_segments_but_never_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StreamConfig {
        max_length_bytes: Some(1000),
        ..config(500)
    };
    let log = StreamLog::open(dir.path(), cfg).unwrap();
    let mut behind = log
        .reader(OffsetSpec::First, ReadOptions::default())
        .unwrap();
    for i in 0..30 {
        append_n(&log, i, 1, 100, 1);
    }
    // Each roll applied retention, as osiris does, when the new segment was still empty: at
    // most 1000 bytes then, in whole segments of 488 bytes; the new one has grown since.
    let stats = log.stats();
    assert_eq!(stats.segments, 3);
    assert!(stats.bytes <= 1000 + 500);
    assert_eq!(log.first_offset(), 21);
    assert_eq!(files(dir.path(), ".segment").len(), 3);
    // A reader left behind carries on from the first chunk still there.
    assert_eq!(behind.next_chunk().unwrap().unwrap().header.chunk_id, 21);
    // Even a tiny limit keeps the last segment.
    let tiny = StreamConfig {
        max_length_bytes: Some(1),
        ..config(500)
    };
    drop(log);
    let log = StreamLog::open(dir.path(), tiny).unwrap();
    let out = log.apply_retention(now_ms());
    assert_eq!((out.segments, out.first_offset), (2, 27));
    assert_eq!(log.stats().segments, 1);
    assert_eq!(read_all(&log, OffsetSpec::First).len(), 3);
}

#[test]
fn retention_by_age_drops_segments_whose_last_chunk_is_older() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StreamConfig {
        max_age: Some(Duration::from_secs(10)),
        ..config(500)
    };
    let log = StreamLog::open(dir.path(), cfg).unwrap();
    // Far-future timestamps, so the rolls' own retention (by the real clock) drops nothing.
    let base = now_ms() + 3_600_000;
    for i in 0..9 {
        append_n(&log, i, 1, 100, base + i as i64 * 1000);
    }
    assert_eq!(log.stats().segments, 3);
    // Segment 0 ends at base+2000, segment 3 at base+5000.
    let out = log.apply_retention(base + 14_000);
    assert_eq!((out.segments, out.first_offset), (1, 3));
    let out = log.apply_retention(base + 100_000);
    assert_eq!((out.segments, out.first_offset), (1, 6));
    assert_eq!(log.stats().segments, 1);
    drop(log);
    let log = StreamLog::open(dir.path(), config(500)).unwrap();
    assert_eq!(log.first_offset(), 6);
}

#[test]
fn set_retention_applies_at_once_and_the_segment_size_from_the_next_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let log = StreamLog::open(dir.path(), config(10_000)).unwrap();
    for i in 0..6 {
        append_n(&log, i, 1, 100, 1);
    }
    assert_eq!(log.stats().segments, 1);
    assert_eq!(log.retention(), StreamRetention::of(&config(10_000)));
    // A smaller segment size: the next appends roll.
    let small = StreamRetention {
        max_segment_size_bytes: 500,
        ..log.retention()
    };
    let out = log.set_retention(small, now_ms());
    assert_eq!(out.segments, 0);
    for i in 6..12 {
        append_n(&log, i, 1, 100, 1);
    }
    assert!(log.stats().segments >= 3, "{:?}", log.stats());
    // A size limit: old segments go at once, the last stays.
    let limited = StreamRetention {
        max_length_bytes: Some(1),
        ..small
    };
    let out = log.set_retention(limited, now_ms());
    assert!(out.segments >= 2);
    assert_eq!(log.stats().segments, 1);
    assert_eq!(log.retention(), limited);
    // The configuration as opened is unchanged.
    assert_eq!(log.config().max_length_bytes, None);
}

#[test]
fn tracking_survives_restart_rolling_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StreamConfig {
        max_length_bytes: Some(600),
        ..config(500)
    };
    let log = StreamLog::open(dir.path(), cfg.clone()).unwrap();
    let bodies = [body(0, 100)];
    let entries = [Entry::Simple(&bodies[0])];
    let info = log
        .append_chunk(&Append {
            publishers: &[(b"producer-1", 41)],
            ..Append::new(&entries, 1)
        })
        .unwrap();
    log.store_offset(b"app-1", info.chunk_id, 1).unwrap();
    assert_eq!(log.query_offset(b"app-1"), Some(0));
    assert_eq!(log.publisher_sequence(b"producer-1"), Some(41));
    assert_eq!(log.query_offset(b"other"), None);
    // The tracking chunk took offset 1, and consumers do not see it.
    assert_eq!(log.next_offset(), 2);
    assert_eq!(read_all(&log, OffsetSpec::First).len(), 1);
    assert_eq!(log.seek(OffsetSpec::Last).unwrap().chunk_id, 0);
    let mut all = log
        .reader(
            OffsetSpec::First,
            ReadOptions {
                all_chunk_types: true,
                ..ReadOptions::default()
            },
        )
        .unwrap();
    all.next_chunk().unwrap().unwrap();
    assert_eq!(
        all.next_chunk().unwrap().unwrap().header.chunk_type,
        ChunkType::TrackingDelta
    );
    // Roll past the first segments; retention drops them; the snapshots carry the tracking on.
    for i in 1..12 {
        append_n(&log, i, 1, 100, 1);
    }
    log.store_offset(b"app-1", 7, 1).unwrap();
    assert!(log.first_offset() > 2);
    drop(log);
    let log = StreamLog::open(dir.path(), cfg).unwrap();
    assert_eq!(log.query_offset(b"app-1"), Some(7));
    assert_eq!(log.publisher_sequence(b"producer-1"), Some(41));
    let snapshots = log
        .reader(
            OffsetSpec::First,
            ReadOptions {
                all_chunk_types: true,
                ..ReadOptions::default()
            },
        )
        .unwrap()
        .next_chunk()
        .unwrap()
        .unwrap();
    assert_eq!(snapshots.header.chunk_type, ChunkType::TrackingSnapshot);
}

#[test]
fn filtered_readers_skip_chunks_without_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let log = StreamLog::open(dir.path(), config(1 << 20)).unwrap();
    let e = [Entry::Simple(b"m")];
    for (values, unfiltered) in [
        (&[b"eu".as_slice()][..], false),
        (&[b"us".as_slice()][..], false),
        (&[][..], true),
        (&[b"us".as_slice()][..], true),
    ] {
        log.append_chunk(&Append {
            filter_values: values,
            unfiltered,
            ..Append::new(&e, 1)
        })
        .unwrap();
    }
    let ids = |values: &[&[u8]], match_unfiltered| {
        let filter = BloomMatcher::new(
            values.iter().map(|v| v.to_vec()).collect(),
            match_unfiltered,
        );
        let mut r = log
            .reader(
                OffsetSpec::First,
                ReadOptions {
                    filter: Some(filter),
                    ..ReadOptions::default()
                },
            )
            .unwrap();
        let mut ids = Vec::new();
        while let Some(c) = r.next_chunk().unwrap() {
            ids.push(c.header.chunk_id);
        }
        ids
    };
    assert_eq!(ids(&[b"eu"], false), [0]);
    assert_eq!(ids(&[b"us"], false), [1, 3]);
    assert_eq!(ids(&[b"eu"], true), [0, 2, 3]);
    assert_eq!(read_all(&log, OffsetSpec::First).len(), 4);
}

#[test]
fn invalid_appends_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = StreamLog::open(dir.path(), config(1 << 20)).unwrap();
    assert!(matches!(
        log.append(&[], 1),
        Err(StoreError::InvalidChunk { .. })
    ));
    let long = vec![b'x'; 256];
    assert!(matches!(
        log.store_offset(&long, 1, 1),
        Err(StoreError::InvalidChunk { .. })
    ));
    let e = [Entry::Simple(b"m")];
    assert!(matches!(
        log.append_chunk(&Append {
            publishers: &[(b"", 1)],
            ..Append::new(&e, 1)
        }),
        Err(StoreError::InvalidChunk { .. })
    ));
    assert_eq!(log.next_offset(), 0);
    append_n(&log, 0, 1, 1, 1);
    assert_eq!(read_all(&log, OffsetSpec::First).len(), 1);
}

#[test]
fn reopening_continues_the_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = StreamLog::open(dir.path(), config(400)).unwrap();
    for i in 0..10 {
        append_n(&log, i * 2, 2, 50, i as i64);
    }
    drop(log);
    let log = StreamLog::open(dir.path(), config(400)).unwrap();
    assert!(log.recovery_stats().truncations.is_empty());
    assert_eq!(log.next_offset(), 20);
    assert_eq!(log.committed_offset(), 20);
    assert_eq!(log.seek(OffsetSpec::Last).unwrap().chunk_id, 18);
    assert_eq!(log.seek(OffsetSpec::Offset(13)).unwrap().chunk_id, 12);
    append_n(&log, 20, 1, 50, 11);
    let chunks = read_all(&log, OffsetSpec::First);
    assert_eq!(chunks.len(), 11);
    for (i, (h, bodies)) in chunks.iter().enumerate().take(10) {
        assert_eq!(h.chunk_id, i as u64 * 2);
        assert_eq!(bodies[1], body(i as u64 * 2 + 1, 50));
    }
}

#[test]
fn a_deleted_stream_refuses_appends_and_ends_its_readers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let log = StreamLog::open(&path, config(1 << 20)).unwrap();
    append_n(&log, 0, 1, 10, 1);
    let mut r = log
        .reader(OffsetSpec::First, ReadOptions::default())
        .unwrap();
    let held = r.next_chunk().unwrap().unwrap();
    append_n(&log, 1, 1, 10, 1);
    log.delete().unwrap();
    assert!(!path.exists());
    assert!(r.next_chunk().unwrap().is_none());
    assert_eq!(
        held.read_deliver().unwrap().len() as u64,
        held.deliver_len()
    );
    assert!(matches!(
        log.append(&[Entry::Simple(b"x")], 1),
        Err(StoreError::Closed)
    ));
    assert!(matches!(log.sync(), Err(StoreError::Closed)));
}
