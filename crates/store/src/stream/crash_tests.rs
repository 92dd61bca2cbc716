//! Crash tests of the stream log: files cut or damaged the way a crash (or the disk) leaves
//! them; recovery must cut to the last good chunk, never lose a synced one, and never return a
//! chunk that was not fully written. Plus: what opening a long stream reads.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::index::{index_name, segment_name};
use super::tests::{append_n, body, config, read_all};
use super::*;
use crate::scan::TruncationReason;

fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(segment_name(id))
}

fn idx_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(index_name(id))
}

fn len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn cut(path: &Path, at: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(at)
        .unwrap();
}

fn flip(path: &Path, at: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], at).unwrap();
}

/// A copy of the stream directory, to damage.
fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.path().join(e.file_name())).unwrap();
    }
    to
}

/// A stream of five 3-message chunks in one segment; returns the chunks' infos.
fn five_chunks(dir: &Path) -> Vec<ChunkInfo> {
    let log = StreamLog::open(dir, config(1 << 20)).unwrap();
    (0..5)
        .map(|c| append_n(&log, c * 3, 3, 40, c as i64))
        .collect()
}

#[test]
fn a_segment_cut_anywhere_in_the_last_chunk_loses_only_that_chunk() {
    let orig = tempfile::tempdir().unwrap();
    let infos = five_chunks(orig.path());
    let last = infos[4];
    for at in last.position..last.position + last.stored_len {
        let dir = copy_dir(orig.path());
        cut(&seg_path(dir.path(), 0), at);
        let log = StreamLog::open(dir.path(), config(1 << 20)).unwrap();
        assert_eq!(log.next_offset(), 12, "cut at {at}");
        let stats = log.recovery_stats();
        // The index record goes; so do the chunk's bytes, unless the cut took them all.
        let cuts = usize::from(at > last.position) + 1;
        assert_eq!(stats.truncations.len(), cuts, "cut at {at}");
        if at > last.position {
            assert_eq!(stats.truncations[0].offset, last.position);
        }
        let chunks = read_all(&log, OffsetSpec::First);
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[3].1[2], body(11, 40));
        // The log goes on from there.
        append_n(&log, 12, 1, 40, 9);
        drop(log);
        let log = StreamLog::open(dir.path(), config(1 << 20)).unwrap();
        assert!(log.recovery_stats().truncations.is_empty());
        assert_eq!(read_all(&log, OffsetSpec::First).len(), 5);
    }
}

#[test]
fn an_index_cut_anywhere_keeps_the_chunks_of_its_whole_records() {
    let orig = tempfile::tempdir().unwrap();
    five_chunks(orig.path());
    let idx_len = len(&idx_path(orig.path(), 0));
    for at in 0..idx_len {
        let dir = copy_dir(orig.path());
        cut(&idx_path(dir.path(), 0), at);
        let log = StreamLog::open(dir.path(), config(1 << 20)).unwrap();
        let whole = if at < 8 { 0 } else { (at - 8) / 56 };
        assert_eq!(log.next_offset(), whole * 3, "index cut at {at}");
        assert_eq!(read_all(&log, OffsetSpec::First).len() as u64, whole);
    }
}

#[test]
fn a_damaged_last_chunk_is_cut() {
    let orig = tempfile::tempdir().unwrap();
    let infos = five_chunks(orig.path());
    let last = infos[4];
    // Its CRC field, a data byte, its header's chunk id, its index record.
    for (file, at) in [
        (seg_path(orig.path(), 0), last.position + 32),
        (seg_path(orig.path(), 0), last.position + 60),
        (seg_path(orig.path(), 0), last.position + 30),
        (idx_path(orig.path(), 0), 8 + 4 * 56 + 10),
    ] {
        let dir = copy_dir(orig.path());
        flip(&dir.path().join(file.file_name().unwrap()), at);
        let log = StreamLog::open(dir.path(), config(1 << 20)).unwrap();
        assert_eq!(log.next_offset(), 12);
        let t = &log.recovery_stats().truncations;
        assert!(t
            .iter()
            .all(|t| t.reason == TruncationReason::ChecksumMismatch));
        assert_eq!(read_all(&log, OffsetSpec::First).len(), 4);
    }
}

#[test]
fn a_tail_of_zeros_is_cut() {
    let orig = tempfile::tempdir().unwrap();
    five_chunks(orig.path());
    for file in [seg_path(orig.path(), 0), idx_path(orig.path(), 0)] {
        let dir = copy_dir(orig.path());
        let path = dir.path().join(file.file_name().unwrap());
        let l = len(&path);
        cut(&path, l + 4096);
        let log = StreamLog::open(dir.path(), config(1 << 20)).unwrap();
        assert_eq!(log.next_offset(), 15);
        assert_eq!(log.recovery_stats().truncations[0].bytes, 4096);
        assert_eq!(len(&path), l);
    }
}

#[test]
fn a_damaged_trailer_cuts_the_chunk_and_its_publisher_sequence() {
    let orig = tempfile::tempdir().unwrap();
    let log = StreamLog::open(orig.path(), config(1 << 20)).unwrap();
    let e = [Entry::Simple(b"message")];
    let mut infos = Vec::new();
    for seq in 1..=3 {
        infos.push(
            log.append_chunk(&Append {
                publishers: &[(b"p", seq)],
                ..Append::new(&e, 1)
            })
            .unwrap(),
        );
    }
    drop(log);
    // The trailer follows the 48-byte header and 11 bytes of data.
    for (chunk, seq_after) in [(2, 2), (1, 1)] {
        let dir = copy_dir(orig.path());
        flip(
            &seg_path(dir.path(), 0),
            infos[chunk].position + 48 + 11 + 3,
        );
        let log = StreamLog::open(dir.path(), config(1 << 20)).unwrap();
        assert_eq!(log.next_offset(), infos[chunk].chunk_id);
        assert_eq!(log.publisher_sequence(b"p"), Some(seq_after));
    }
}

#[test]
fn incomplete_segments_left_by_a_crash_while_rolling_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let log = StreamLog::open(dir.path(), config(500)).unwrap();
    for i in 0..6 {
        append_n(&log, i, 1, 100, 1);
    }
    drop(log);
    let d = dir.path();
    // An index without its segment (the crash came between creating the two files), an
    // empty pair with a torn file header, and a segment whose index retention already removed.
    std::fs::write(idx_path(d, 9), b"PGSI").unwrap();
    std::fs::write(idx_path(d, 6), b"PGSI\0\0\0\x01").unwrap();
    std::fs::write(seg_path(d, 6), b"PGS").unwrap();
    std::fs::remove_file(idx_path(d, 0)).unwrap();
    let log = StreamLog::open(d, config(500)).unwrap();
    assert_eq!(log.recovery_stats().segments_removed, 3);
    assert_eq!((log.first_offset(), log.next_offset()), (3, 6));
    assert!(!seg_path(d, 6).exists() && !idx_path(d, 9).exists() && !seg_path(d, 0).exists());
    assert_eq!(append_n(&log, 6, 1, 100, 1).segment, 6);
    assert_eq!(read_all(&log, OffsetSpec::First).len(), 4);
}

/// Builds a stream of `segments` segments of three 1 KiB chunks each, and reopens it.
fn open_long_stream(segments: u64) -> StreamRecoveryStats {
    let dir = tempfile::tempdir().unwrap();
    // 48 + 4 + 8 + 1024 = 1084 bytes a chunk: three in a segment.
    let cfg = config(8 + 3 * 1084);
    let log = StreamLog::open(dir.path(), cfg.clone()).unwrap();
    for i in 0..segments * 3 {
        append_n(&log, i, 1, 1024, 1);
    }
    assert_eq!(log.stats().segments as u64, segments);
    drop(log);
    let log = StreamLog::open(dir.path(), cfg).unwrap();
    assert_eq!(log.next_offset(), segments * 3);
    log.recovery_stats().clone()
}

#[test]
fn opening_a_stream_reads_the_same_chunk_bytes_however_long_it_is() {
    let short = open_long_stream(10);
    let long = open_long_stream(100);
    // Chunk data: the last chunk, checked in full, whatever the length.
    assert_eq!(short.segment_bytes_read, 1084);
    assert_eq!(long.segment_bytes_read, 1084);
    // Index: two records per earlier segment, the last segment's records.
    assert_eq!(long.index_records_read, 2 * 99 + 3);
    // Reads: file headers and two records per segment, then the last segment's index and chunk.
    assert_eq!(long.reads, 4 * 99 + 2 + 1 + 1);
    assert_eq!(short.reads, 4 * 9 + 2 + 1 + 1);
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        n: u64,
        len: usize,
    },
    StoreOffset(u8),
    Sync,
    /// A crash: the last segment's files cut at fractions of their unsynced tails, and maybe a
    /// byte of the last chunk damaged.
    Crash {
        seg: f64,
        idx: f64,
        flip: Option<f64>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u64..5, 0usize..300).prop_map(|(n, len)| Op::Append { n, len }),
        1 => any::<u8>().prop_map(|r| Op::StoreOffset(r % 3)),
        2 => Just(Op::Sync),
        2 => (0.0..1.0f64, 0.0..1.0f64, proptest::option::of(0.0..1.0f64))
            .prop_map(|(seg, idx, flip)| Op::Crash { seg, idx, flip }),
    ]
}

/// What the test knows it appended.
#[derive(Clone, Debug)]
enum Model {
    User {
        chunk_id: u64,
        first_msg: u64,
        n: u64,
        len: usize,
    },
    Offset {
        chunk_id: u64,
        reference: u8,
        offset: u64,
    },
}

impl Model {
    fn chunk_id(&self) -> u64 {
        match self {
            Model::User { chunk_id, .. } | Model::Offset { chunk_id, .. } => *chunk_id,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn recovery_keeps_what_was_synced_and_returns_only_whole_chunks(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(2048);
        let mut log = StreamLog::open(dir.path(), cfg.clone()).unwrap();
        let mut model: Vec<Model> = Vec::new();
        let mut msg = 0u64;
        // (segment, its file lengths) at the last sync, and how many model chunks were durable.
        let mut synced: (u64, u64, u64) = (0, 8, 8);
        let mut durable = 0usize;
        for op in ops {
            match op {
                Op::Append { n, len } => {
                    let info = append_n(&log, msg, n, len, msg as i64);
                    if info.segment != synced.0 {
                        // Rolling synced everything before this segment.
                        durable = model.len();
                        synced = (info.segment, 0, 0);
                    }
                    model.push(Model::User { chunk_id: info.chunk_id, first_msg: msg, n, len });
                    msg += n;
                }
                Op::StoreOffset(reference) => {
                    let offset = msg;
                    let info = log.store_offset(&[b'r', reference], offset, 0).unwrap();
                    if info.segment != synced.0 {
                        durable = model.len();
                        synced = (info.segment, 0, 0);
                    }
                    model.push(Model::Offset { chunk_id: info.chunk_id, reference, offset });
                }
                Op::Sync => {
                    log.sync().unwrap();
                    let seg = log.inner.lock().segments.back().unwrap().id;
                    synced = (seg, len(&seg_path(dir.path(), seg)), len(&idx_path(dir.path(), seg)));
                    durable = model.len();
                }
                Op::Crash { seg, idx, flip: flip_at } => {
                    let id = log.inner.lock().segments.back().unwrap().id;
                    drop(log);
                    let (from_seg, from_idx) = if id == synced.0 { (synced.1, synced.2) } else { (0, 0) };
                    let sp = seg_path(dir.path(), id);
                    let ip = idx_path(dir.path(), id);
                    let (sl, il) = (len(&sp), len(&ip));
                    let seg_cut = from_seg + ((sl - from_seg) as f64 * seg) as u64;
                    let idx_cut = from_idx + ((il - from_idx) as f64 * idx) as u64;
                    // Damage one of the last bytes written, if they were not synced.
                    if let Some(f) = flip_at {
                        let start = sl.saturating_sub(64).max(from_seg);
                        if start < sl {
                            flip(&sp, start + ((sl - start) as f64 * f) as u64 % (sl - start));
                        }
                    }
                    cut(&sp, seg_cut.max(from_seg));
                    cut(&ip, idx_cut.max(from_idx));
                    log = StreamLog::open(dir.path(), cfg.clone()).unwrap();
                    let next = log.next_offset();
                    let kept = model.iter().take_while(|m| m.chunk_id() < next).count();
                    prop_assert!(kept >= durable, "lost synced chunks: kept {} of {} durable", kept, durable);
                    let boundary = model.get(kept).map(Model::chunk_id);
                    // (Or to a snapshot chunk before it, which the model does not list.)
                    prop_assert!(boundary.is_none_or(|b| next <= b), "recovered into a chunk");
                    model.truncate(kept);
                    durable = kept;
                    // What recovery kept is on disk.
                    let id = log.inner.lock().segments.back().unwrap().id;
                    synced = (id, len(&seg_path(dir.path(), id)), len(&idx_path(dir.path(), id)));
                    msg = model.iter().rev().find_map(|m| match m {
                        Model::User { first_msg, n, .. } => Some(first_msg + n),
                        Model::Offset { .. } => None,
                    }).unwrap_or(0);
                }
            }
            // Whatever happened, the stream holds exactly the model's chunks, intact.
            let chunks = read_all(&log, OffsetSpec::First);
            let users: Vec<_> = model.iter().filter_map(|m| match m {
                Model::User { chunk_id, first_msg, n, len } => Some((*chunk_id, *first_msg, *n, *len)),
                Model::Offset { .. } => None,
            }).collect();
            prop_assert_eq!(chunks.len(), users.len());
            for ((h, bodies), (chunk_id, first_msg, n, len)) in chunks.iter().zip(users) {
                prop_assert_eq!(h.chunk_id, chunk_id);
                prop_assert_eq!(bodies.len() as u64, n);
                prop_assert_eq!(&bodies[0], &body(first_msg, len));
            }
            for reference in 0..3u8 {
                let want = model.iter().rev().find_map(|m| match m {
                    Model::Offset { reference: r, offset, .. } if *r == reference => Some(*offset),
                    _ => None,
                });
                prop_assert_eq!(log.query_offset(&[b'r', reference]), want);
            }
        }
    }
}
