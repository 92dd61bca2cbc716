//! Appending: user chunks, consumer offsets, and rolling to a new segment.
//!
//! A chunk is encoded once into a reused buffer and written with one positional write, then its
//! index record with another, both into the page cache; [`StreamLog::sync`] makes them durable.
//! The segment is written before its index record, but nothing relies on the order reaching
//! the disk: recovery checks the last indexed chunk against its record (`recovery.rs`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use tracing::error;

use super::chunk::{self, ChunkBody, ChunkType, Entry};
use super::index::{self, IndexRecord, FILE_HEADER_LEN, INDEX_MAGIC, SEGMENT_MAGIC};
use super::tracking::{self, check_id};
use super::{bloom, Append, ChunkInfo, Committed, Inner, Segment, StreamLog};
use crate::files::{open_log_file, sync_dir};
use crate::{StoreError, SyncMode};

impl StreamLog {
    /// Appends a user chunk holding `append.entries`, assigning it the next offsets, and records
    /// the publishers' sequences and the bloom filter of its filter values in it. The chunk is
    /// written to the operating system when this returns, and visible to readers once committed:
    /// call [`StreamLog::sync`] before confirming it.
    ///
    /// Errors: [`StoreError::InvalidChunk`] or [`StoreError::TooLarge`] for a chunk that cannot
    /// be stored (nothing was written); [`StoreError::Failed`] once a write or sync failed.
    pub fn append_chunk(&self, append: &Append<'_>) -> Result<ChunkInfo, StoreError> {
        for (name, _) in append.publishers {
            check_id(name)?;
        }
        let mut inner = self.inner.lock();
        let mut bloom = std::mem::take(&mut inner.bloom);
        bloom::build(
            &mut bloom,
            self.config().bloom_size,
            append.filter_values,
            append.unfiltered,
        );
        let result = self.append_locked(
            &mut inner,
            ChunkType::User,
            append.entries,
            append.publishers,
            &bloom,
            append.timestamp,
        );
        inner.bloom = bloom;
        let (info, deleted) = result?;
        for (name, seq) in append.publishers {
            inner
                .tracking
                .sequences
                .insert(name.to_vec(), (info.chunk_id, *seq));
        }
        drop(inner);
        super::retention::remove_files(&deleted);
        Ok(info)
    }

    /// Appends a chunk of `entries` with no publisher names and no filter values.
    pub fn append(&self, entries: &[Entry<'_>], timestamp: i64) -> Result<ChunkInfo, StoreError> {
        self.append_chunk(&Append::new(entries, timestamp))
    }

    /// Stores the offset of consumer `reference` (1 to 255 bytes) in the stream, as a tracking
    /// delta chunk (`StoreOffset`). Like any chunk it is durable after [`StreamLog::sync`]; the
    /// stream protocol does not confirm `StoreOffset`, so the caller may leave that to the next
    /// sync. [`StreamLog::query_offset`] returns it at once.
    pub fn store_offset(
        &self,
        reference: &[u8],
        offset: u64,
        timestamp: i64,
    ) -> Result<ChunkInfo, StoreError> {
        check_id(reference)?;
        let mut blocks = Vec::new();
        tracking::encode_offset(&mut blocks, reference, offset);
        let entries = [Entry::Simple(&blocks)];
        let mut inner = self.inner.lock();
        let (info, deleted) = self.append_locked(
            &mut inner,
            ChunkType::TrackingDelta,
            &entries,
            &[],
            &[],
            timestamp,
        )?;
        inner.tracking.offsets.insert(reference.to_vec(), offset);
        drop(inner);
        super::retention::remove_files(&deleted);
        Ok(info)
    }

    /// Encodes and writes a chunk, rolling first if it does not fit the active segment. Returns
    /// the files retention dropped on rolling, to be removed once the lock is released.
    fn append_locked(
        &self,
        inner: &mut Inner,
        chunk_type: ChunkType,
        entries: &[Entry<'_>],
        publishers: &[(&[u8], u64)],
        bloom: &[u8],
        timestamp: i64,
    ) -> Result<(ChunkInfo, Vec<Arc<Path>>), StoreError> {
        if let Some(e) = &inner.failed {
            return Err(clone_failure(e));
        }
        let mut buf = std::mem::take(&mut inner.buf);
        let mut trailer = std::mem::take(&mut inner.trailer);
        let mut deleted = Vec::new();
        let mut encode = |buf: &mut Vec<u8>, chunk_id: u64| {
            // The trailer names the chunk that recorded each sequence, as osiris' does.
            trailer.clear();
            for (name, seq) in publishers {
                tracking::encode_sequence(&mut trailer, name, chunk_id, *seq);
            }
            let body = ChunkBody {
                chunk_type,
                entries,
                trailer: &trailer,
                bloom,
            };
            chunk::build(buf, &body, chunk_id, timestamp, self.config().epoch)
        };
        let result = encode(&mut buf, inner.next_offset).and_then(|header| {
            if !self.needs_roll(inner, header.stored_len()) {
                return Ok(header);
            }
            deleted = self.roll(inner, timestamp)?;
            // The roll's snapshot took an offset: encode again with the chunk's new id.
            encode(&mut buf, inner.next_offset)
        });
        let result = result.and_then(|header| self.write(inner, &header, &buf));
        inner.buf = buf;
        inner.trailer = trailer;
        result.map(|info| (info, deleted))
    }

    fn needs_roll(&self, inner: &Inner, len: u64) -> bool {
        inner.segments.back().is_some_and(|s| {
            s.len > FILE_HEADER_LEN && s.len + len > inner.retention.max_segment_size_bytes
        })
    }

    /// Writes an encoded chunk and its index record at the end of the active segment.
    fn write(
        &self,
        inner: &mut Inner,
        header: &chunk::ChunkHeader,
        buf: &[u8],
    ) -> Result<ChunkInfo, StoreError> {
        let Some(seg) = inner.segments.back_mut() else {
            return Err(StoreError::Closed);
        };
        let position = seg.len;
        let record = IndexRecord::new(
            header,
            position,
            chunk::tail_crc(&buf[header.deliver_len() as usize..]),
        );
        let written = seg
            .seg
            .write_all_at(buf, position)
            .map_err(|e| (seg.seg_path.to_path_buf(), e))
            .and_then(|()| {
                seg.idx
                    .write_all_at(&record.encode(), index::record_pos(seg.chunks))
                    .map_err(|e| (seg.idx_path.clone(), e))
            });
        if let Err((path, e)) = written {
            return Err(fail(inner, path, e));
        }
        seg.len += header.stored_len();
        seg.chunks += 1;
        seg.first.get_or_insert(record);
        seg.last = Some(record);
        let info = ChunkInfo {
            chunk_id: header.chunk_id,
            num_records: header.num_records,
            timestamp: header.timestamp,
            chunk_type: header.chunk_type,
            segment: seg.id,
            position,
            stored_len: header.stored_len(),
        };
        inner.next_offset = header.next_offset();
        inner.appended += 1;
        if header.chunk_type == ChunkType::User {
            inner.last_user = Some(record);
        }
        if self.config().sync == SyncMode::Never {
            inner.committed = Committed {
                chunk_id: Some(header.chunk_id),
                next_offset: inner.next_offset,
            };
        }
        Ok(info)
    }

    /// Starts a new segment at the next offset, with a tracking snapshot first if there is
    /// tracking data, and applies retention. Returns the files retention dropped, to be removed
    /// once the lock is released.
    fn roll(&self, inner: &mut Inner, timestamp: i64) -> Result<Vec<Arc<Path>>, StoreError> {
        if let Some(old) = inner.segments.back() {
            // Every segment but the last is whole on disk: recovery reads only the first and last
            // index records of those (`recovery.rs`). Rolling is rare, so one sync here is cheap.
            if self.config().sync == SyncMode::Always {
                let synced = old
                    .seg
                    .sync_data()
                    .map_err(|e| (old.seg_path.to_path_buf(), e))
                    .and_then(|()| old.idx.sync_data().map_err(|e| (old.idx_path.clone(), e)));
                if let Err((path, e)) = synced {
                    return Err(fail(inner, path, e));
                }
            }
        }
        let id = inner.next_offset;
        match create_segment(self.dir(), id, self.config().sync) {
            Ok(seg) => inner.segments.push_back(seg),
            Err(e) => {
                let msg = e.to_string();
                inner.failed = Some(StoreError::Failed {
                    path: self.dir().to_path_buf(),
                    source: Arc::new(std::io::Error::other(msg)),
                });
                return Err(e);
            }
        }
        inner.dir_dirty = true;
        if !inner.tracking.is_empty() {
            let blocks = inner.tracking.snapshot();
            let entries = [Entry::Simple(&blocks)];
            let body = ChunkBody {
                chunk_type: ChunkType::TrackingSnapshot,
                entries: &entries,
                trailer: &[],
                bloom: &[],
            };
            let mut buf = Vec::new();
            let header = chunk::build(&mut buf, &body, id, timestamp, self.config().epoch)?;
            self.write(inner, &header, &buf)?;
        }
        Ok(self.retain(inner, super::now_ms()))
    }
}

/// Creates the index and segment files of a new segment, each with its file header, and syncs
/// the directory. The index is created first: a crash in between leaves an index without a
/// segment, which recovery removes.
pub(crate) fn create_segment(dir: &Path, id: u64, sync: SyncMode) -> Result<Segment, StoreError> {
    let idx_path = dir.join(index::index_name(id));
    let seg_path: Arc<Path> = dir.join(index::segment_name(id)).into();
    let create = |path: &Path, magic: &[u8; 8]| -> Result<File, StoreError> {
        let io = |e| StoreError::io(path, e);
        let f = open_log_file(path, true).map_err(io)?;
        f.set_len(0).map_err(io)?;
        f.write_all_at(magic, 0).map_err(io)?;
        if sync == SyncMode::Always {
            f.sync_data().map_err(io)?;
        }
        Ok(f)
    };
    let idx = create(&idx_path, &INDEX_MAGIC)?;
    let seg = create(&seg_path, &SEGMENT_MAGIC)?;
    if sync == SyncMode::Always {
        sync_dir(dir).map_err(|e| StoreError::io(dir, e))?;
    }
    Ok(Segment {
        id,
        seg: Arc::new(seg),
        idx: Arc::new(idx),
        seg_path,
        idx_path,
        len: FILE_HEADER_LEN,
        chunks: 0,
        first: None,
        last: None,
    })
}

/// Marks the log failed after a write error: since a partial write may be in the file, nothing
/// more is appended. Reopening the log recovers what is on disk.
pub(crate) fn fail(inner: &mut Inner, path: std::path::PathBuf, e: std::io::Error) -> StoreError {
    error!(file = %path.display(), error = %e, "a stream failed to write; it accepts no more writes");
    let err = StoreError::Failed {
        path,
        source: Arc::new(e),
    };
    inner.failed = Some(clone_failure(&err));
    err
}

pub(crate) fn clone_failure(e: &StoreError) -> StoreError {
    match e {
        StoreError::Failed { path, source } => StoreError::Failed {
            path: path.clone(),
            source: Arc::clone(source),
        },
        _ => StoreError::Closed,
    }
}
