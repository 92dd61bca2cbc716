//! Opening a stream: what is read, and how a damaged tail is cut.
//!
//! Reading is independent of the stream's length:
//!
//! - **Every segment but the last** is whole on disk (rolling syncs it before the next segment
//!   is created), so only its first and last index records are read and checked (checksum, the
//!   first chunk id is the segment's name, the last chunk ends within the file). If that check
//!   fails anyway (damage on disk), the segment gets the last segment's treatment.
//! - **The last segment** is where a crash tears writes. Its index is read in one read; records
//!   count up to the first that fails its checksum, does not follow its predecessor (chunk id and
//!   file position), or points past the end of the segment file. Then the last chunk is read and
//!   checked against its record (header fields, data CRC, CRC of trailer and bloom filter);
//!   while it fails, the one before it is tried. Then the tracking state is rebuilt from the
//!   segment's snapshot, tracking deltas and user chunk trailers (each checked the same way).
//!   Everything from the first bad chunk on is cut off both files (logged, and listed in
//!   [`StreamRecoveryStats::truncations`]).
//! - A segment without its index or the reverse (a crash while rolling, or while retention was
//!   removing it), and an empty last segment after others, are removed.
//!
//! A chunk is confirmed only after `sync` made both its bytes and its index record durable,
//! so cutting never loses a confirmed chunk, and a chunk returned afterwards was fully written.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::warn;

use super::append::create_segment;
use super::chunk::{self, ChunkHeader, ChunkType, HEADER_LEN};
use super::index::{self, IndexRecord, FILE_HEADER_LEN, INDEX_MAGIC, RECORD_LEN, SEGMENT_MAGIC};
use super::tracking::Tracking;
use super::{Segment, StreamConfig};
use crate::files::{open_log_file, remove_if_exists, sync_dir};
use crate::scan::{Truncation, TruncationReason};
use crate::{StoreError, SyncMode};

/// What opening a stream found and read.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct StreamRecoveryStats {
    /// Segments found.
    pub segments: usize,
    /// Read calls on index and segment files.
    pub reads: u64,
    /// Index records read.
    pub index_records_read: u64,
    /// Bytes read from segment files.
    pub segment_bytes_read: u64,
    /// Damaged tails cut off (also logged as warnings).
    pub truncations: Vec<Truncation>,
    /// Incomplete segments removed (a segment without its index or the reverse, an empty last
    /// segment).
    pub segments_removed: usize,
    /// Time it took.
    pub duration: Duration,
}

pub(crate) struct Recovered {
    pub(crate) segments: VecDeque<Segment>,
    pub(crate) next_offset: u64,
    pub(crate) last_user: Option<IndexRecord>,
    pub(crate) tracking: Tracking,
    pub(crate) stats: StreamRecoveryStats,
}

pub(crate) fn recover(dir: &Path, config: &StreamConfig) -> Result<Recovered, StoreError> {
    let started = Instant::now();
    let sync = config.sync;
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    let mut stats = StreamRecoveryStats::default();
    let mut ids = list(dir, sync, &mut stats)?;
    if ids.is_empty() {
        let seg = create_segment(dir, 0, sync)?;
        stats.segments = 1;
        stats.duration = started.elapsed();
        return Ok(Recovered {
            segments: VecDeque::from([seg]),
            next_offset: 0,
            last_user: None,
            tracking: Tracking::default(),
            stats,
        });
    }
    let tail = loop {
        let Some(&id) = ids.last() else {
            return Err(StoreError::Closed);
        };
        let tail = load_tail(dir, id, true, sync, &mut stats)?;
        if tail.segment.chunks == 0 && ids.len() > 1 {
            remove_pair(dir, id, &mut stats);
            ids.pop();
            continue;
        }
        break tail;
    };
    let mut segments = VecDeque::with_capacity(ids.len());
    for &id in &ids[..ids.len() - 1] {
        match load_summary(dir, id, sync, &mut stats)? {
            Some(seg) => segments.push_back(seg),
            None => remove_pair(dir, id, &mut stats),
        }
    }
    let mut last_user = tail.last_user;
    if last_user.is_none() {
        // Rare: the last segment holds tracking chunks only. Look further back.
        for seg in segments.iter().rev() {
            let records = index::read_records(&seg.idx, 0, seg.chunks, &mut stats.reads)
                .map_err(|e| StoreError::io(&seg.idx_path, e))?;
            stats.index_records_read += seg.chunks;
            last_user = records
                .into_iter()
                .flatten()
                .rev()
                .find(|r| r.chunk_type == ChunkType::User);
            if last_user.is_some() {
                break;
            }
        }
    }
    let next_offset = tail
        .segment
        .last
        .map_or(tail.segment.id, |r| r.next_offset());
    segments.push_back(tail.segment);
    if stats.segments_removed > 0 && sync == SyncMode::Always {
        sync_dir(dir).map_err(|e| StoreError::io(dir, e))?;
    }
    stats.segments = segments.len();
    stats.duration = started.elapsed();
    Ok(Recovered {
        segments,
        next_offset,
        last_user,
        tracking: tail.tracking,
        stats,
    })
}

/// The segment ids with both files, in order; files without their pair are removed.
fn list(
    dir: &Path,
    sync: SyncMode,
    stats: &mut StreamRecoveryStats,
) -> Result<Vec<u64>, StoreError> {
    let io = |e| StoreError::io(dir, e);
    let mut found: BTreeMap<u64, (bool, bool)> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let name = entry.map_err(io)?.file_name();
        let Some(name) = name.to_str() else { continue };
        let (stem, is_seg) = if let Some(s) = name.strip_suffix(".segment") {
            (s, true)
        } else if let Some(s) = name.strip_suffix(".index") {
            (s, false)
        } else {
            continue;
        };
        if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(id) = stem.parse::<u64>() else {
            continue;
        };
        let e = found.entry(id).or_default();
        if is_seg {
            e.0 = true;
        } else {
            e.1 = true;
        }
    }
    let mut ids = Vec::new();
    for (id, (seg, idx)) in found {
        if seg && idx {
            ids.push(id);
        } else {
            remove_pair(dir, id, stats);
        }
    }
    if stats.segments_removed > 0 && sync == SyncMode::Always {
        sync_dir(dir).map_err(|e| StoreError::io(dir, e))?;
    }
    Ok(ids)
}

fn remove_pair(dir: &Path, id: u64, stats: &mut StreamRecoveryStats) {
    warn!(dir = %dir.display(), segment = id, "removing an incomplete stream segment");
    stats.segments_removed += 1;
    for name in [index::segment_name(id), index::index_name(id)] {
        if let Err(e) = remove_if_exists(&dir.join(&name)) {
            warn!(file = name, error = %e, "could not remove a stream segment file");
        }
    }
}

struct Files {
    seg: File,
    idx: File,
    seg_len: u64,
    idx_len: u64,
    /// Both file headers are right.
    headers_ok: bool,
}

fn open_files(dir: &Path, id: u64, stats: &mut StreamRecoveryStats) -> Result<Files, StoreError> {
    let seg_path = dir.join(index::segment_name(id));
    let idx_path = dir.join(index::index_name(id));
    let seg = open_log_file(&seg_path, false).map_err(|e| StoreError::io(&seg_path, e))?;
    let idx = open_log_file(&idx_path, false).map_err(|e| StoreError::io(&idx_path, e))?;
    let seg_len = seg
        .metadata()
        .map_err(|e| StoreError::io(&seg_path, e))?
        .len();
    let idx_len = idx
        .metadata()
        .map_err(|e| StoreError::io(&idx_path, e))?
        .len();
    let mut headers_ok = seg_len >= FILE_HEADER_LEN && idx_len >= FILE_HEADER_LEN;
    if headers_ok {
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        stats.reads += 2;
        seg.read_exact_at(&mut a, 0)
            .map_err(|e| StoreError::io(&seg_path, e))?;
        idx.read_exact_at(&mut b, 0)
            .map_err(|e| StoreError::io(&idx_path, e))?;
        headers_ok = a == SEGMENT_MAGIC && b == INDEX_MAGIC;
    }
    Ok(Files {
        seg,
        idx,
        seg_len,
        idx_len,
        headers_ok,
    })
}

fn segment(dir: &Path, id: u64, f: Files, records: &[IndexRecord]) -> Segment {
    Segment {
        id,
        seg: Arc::new(f.seg),
        idx: Arc::new(f.idx),
        seg_path: dir.join(index::segment_name(id)).into(),
        idx_path: dir.join(index::index_name(id)),
        len: records.last().map_or(FILE_HEADER_LEN, IndexRecord::end),
        chunks: records.len() as u64,
        first: records.first().copied(),
        last: records.last().copied(),
    }
}

/// A segment before the last: its first and last index records, checked; the full treatment
/// if they do not pass. `None`: it holds no chunk.
fn load_summary(
    dir: &Path,
    id: u64,
    sync: SyncMode,
    stats: &mut StreamRecoveryStats,
) -> Result<Option<Segment>, StoreError> {
    let f = open_files(dir, id, stats)?;
    let body = f.idx_len.saturating_sub(FILE_HEADER_LEN);
    let n = body / RECORD_LEN;
    if f.headers_ok && n > 0 && body % RECORD_LEN == 0 {
        let io = |e| StoreError::io(dir.join(index::index_name(id)), e);
        let first = index::read_record(&f.idx, 0, &mut stats.reads).map_err(io)?;
        let last = index::read_record(&f.idx, n - 1, &mut stats.reads).map_err(io)?;
        stats.index_records_read += 2;
        if let (Some(first), Some(last)) = (first, last) {
            if first.chunk_id == id && first.position == FILE_HEADER_LEN && last.end() <= f.seg_len
            {
                let mut seg = segment(dir, id, f, &[first]);
                seg.chunks = n;
                seg.last = Some(last);
                seg.len = last.end();
                return Ok(Some(seg));
            }
        }
    }
    drop(f);
    let tail = load_tail(dir, id, false, sync, stats)?;
    Ok((tail.segment.chunks > 0).then_some(tail.segment))
}

struct Tail {
    segment: Segment,
    tracking: Tracking,
    last_user: Option<IndexRecord>,
}

/// The last segment (or a damaged earlier one): validates its tail and cuts what fails.
fn load_tail(
    dir: &Path,
    id: u64,
    with_tracking: bool,
    sync: SyncMode,
    stats: &mut StreamRecoveryStats,
) -> Result<Tail, StoreError> {
    let f = open_files(dir, id, stats)?;
    let seg_path = dir.join(index::segment_name(id));
    let idx_path = dir.join(index::index_name(id));
    if !f.headers_ok {
        // Created but not fully written: a crash while rolling. Make it a valid empty segment.
        for (file, path, magic) in [
            (&f.seg, &seg_path, &SEGMENT_MAGIC),
            (&f.idx, &idx_path, &INDEX_MAGIC),
        ] {
            let io = |e| StoreError::io(path, e);
            file.set_len(0).map_err(io)?;
            file.write_all_at(magic, 0).map_err(io)?;
        }
        return Ok(Tail {
            segment: segment(dir, id, f, &[]),
            tracking: Tracking::default(),
            last_user: None,
        });
    }
    let body = f.idx_len - FILE_HEADER_LEN;
    let n = body / RECORD_LEN;
    let records = index::read_records(&f.idx, 0, n, &mut stats.reads)
        .map_err(|e| StoreError::io(&idx_path, e))?;
    stats.index_records_read += n;
    let mut reason = (body % RECORD_LEN != 0).then_some(TruncationReason::TornRecord);
    let mut keep: Vec<IndexRecord> = Vec::with_capacity(records.len());
    let (mut want_id, mut want_pos) = (id, FILE_HEADER_LEN);
    for r in records {
        let Some(r) = r else {
            reason = Some(TruncationReason::ChecksumMismatch);
            break;
        };
        if r.chunk_id != want_id || r.position != want_pos {
            reason = Some(TruncationReason::BadLength);
            break;
        }
        if r.end() > f.seg_len {
            reason = Some(TruncationReason::TornRecord);
            break;
        }
        (want_id, want_pos) = (r.next_offset(), r.end());
        keep.push(r);
    }
    // The last chunk, checked in full; the ones before it if it fails.
    while let Some(r) = keep.last() {
        if check_chunk(&f.seg, r, stats).map_err(|e| StoreError::io(&seg_path, e))? {
            break;
        }
        keep.pop();
        reason = Some(TruncationReason::ChecksumMismatch);
    }
    let mut tracking = Tracking::default();
    if with_tracking {
        for i in 0..keep.len() {
            if !apply_tracking(&f.seg, &keep[i], &mut tracking, stats)
                .map_err(|e| StoreError::io(&seg_path, e))?
            {
                keep.truncate(i);
                reason = Some(TruncationReason::ChecksumMismatch);
                break;
            }
        }
    }
    let seg_end = keep.last().map_or(FILE_HEADER_LEN, IndexRecord::end);
    let idx_end = index::record_pos(keep.len() as u64);
    let reason = reason.unwrap_or(TruncationReason::TornRecord);
    for (file, path, len, end) in [
        (&f.seg, &seg_path, f.seg_len, seg_end),
        (&f.idx, &idx_path, f.idx_len, idx_end),
    ] {
        if len > end {
            let t = Truncation {
                path: path.clone(),
                offset: end,
                bytes: len - end,
                reason,
            };
            warn!(
                file = %path.display(), offset = end, bytes = len - end, reason = ?reason,
                "cutting a damaged tail off a stream file",
            );
            let io = |e| StoreError::io(path, e);
            file.set_len(end).map_err(io)?;
            if sync == SyncMode::Always {
                file.sync_data().map_err(io)?;
            }
            stats.truncations.push(t);
        }
    }
    let last_user = keep
        .iter()
        .rev()
        .find(|r| r.chunk_type == ChunkType::User)
        .copied();
    Ok(Tail {
        segment: segment(dir, id, f, &keep),
        tracking,
        last_user,
    })
}

/// Whether the chunk `r` points at is whole and is the one `r` describes.
fn check_chunk(
    seg: &File,
    r: &IndexRecord,
    stats: &mut StreamRecoveryStats,
) -> std::io::Result<bool> {
    let mut buf = vec![0u8; r.stored_len() as usize];
    stats.reads += 1;
    stats.segment_bytes_read += buf.len() as u64;
    seg.read_exact_at(&mut buf, r.position)?;
    let Some(header) = parse_header(&buf) else {
        return Ok(false);
    };
    let deliver = header.deliver_len() as usize;
    Ok(r.describes(&header)
        && crc32fast::hash(&buf[HEADER_LEN..deliver]) == header.data_crc
        && chunk::tail_crc(&buf[deliver..]) == r.tail_crc)
}

fn parse_header(buf: &[u8]) -> Option<ChunkHeader> {
    let head: &[u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
    ChunkHeader::parse(head)
}

/// Applies the tracking data of chunk `r` (a tracking chunk's data, a user chunk's trailer),
/// checking it first. `false`: it is damaged.
fn apply_tracking(
    seg: &File,
    r: &IndexRecord,
    tracking: &mut Tracking,
    stats: &mut StreamRecoveryStats,
) -> std::io::Result<bool> {
    match r.chunk_type {
        ChunkType::User if r.trailer_len == 0 => Ok(true),
        ChunkType::User => {
            let mut buf = vec![0u8; r.trailer_len as usize + usize::from(r.bloom_len)];
            stats.reads += 1;
            stats.segment_bytes_read += buf.len() as u64;
            seg.read_exact_at(
                &mut buf,
                r.position + HEADER_LEN as u64 + u64::from(r.data_len),
            )?;
            if chunk::tail_crc(&buf) != r.tail_crc {
                return Ok(false);
            }
            Ok(tracking.apply(&buf[..r.trailer_len as usize]).is_some())
        }
        ChunkType::TrackingDelta | ChunkType::TrackingSnapshot => {
            let mut buf = vec![0u8; HEADER_LEN + r.data_len as usize];
            stats.reads += 1;
            stats.segment_bytes_read += buf.len() as u64;
            seg.read_exact_at(&mut buf, r.position)?;
            let ok = parse_header(&buf).is_some_and(|h| {
                r.describes(&h) && crc32fast::hash(&buf[HEADER_LEN..]) == h.data_crc
            });
            if r.chunk_type == ChunkType::TrackingSnapshot {
                *tracking = Tracking::default();
            }
            Ok(ok && tracking.apply_chunk_data(&buf[HEADER_LEN..]).is_some())
        }
    }
}
