//! Finding where a consumer starts ([`StreamLog::seek`], osiris' `init_offset_reader`), and
//! reading chunks from there ([`StreamReader`]).
//!
//! A reader does no per-message work: for each chunk it reads the 48-byte header (from the page
//! cache) and hands back the file range of header and data, which a server sends with
//! `sendfile` or one read and one write. With a filter it also reads the chunk's bloom filter.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::bloom::BloomMatcher;
use super::chunk::{ChunkHeader, ChunkType, HEADER_LEN};
use super::index::{self, IndexRecord, FILE_HEADER_LEN};
use super::{Inner, OffsetSpec, Segment, StreamLog};
use crate::StoreError;

/// Where a reader starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeekPosition {
    /// The id of the first chunk it reads (for `Next`, the offset the next chunk will get).
    pub chunk_id: u64,
    /// The segment (its first chunk id) and byte position of that chunk.
    pub segment: u64,
    /// Byte position in the segment file.
    pub position: u64,
}

/// What a reader yields.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// Yield tracking chunks too (osiris' data readers); consumers want user chunks only.
    pub all_chunk_types: bool,
    /// Skip chunks whose bloom filter rules out every wanted filter value.
    pub filter: Option<BloomMatcher>,
}

/// A chunk to send: the header and data are bytes `position .. position + deliver_len` of
/// `file`, exactly the `OsirisChunk` of a stream protocol `Deliver` frame.
#[derive(Clone, Debug)]
pub struct ChunkRange {
    /// The chunk's header, parsed.
    pub header: ChunkHeader,
    /// The segment file, open for reading (it stays readable even if retention deletes it).
    pub file: Arc<File>,
    /// Its path, for error messages.
    pub path: Arc<Path>,
    /// Where the chunk starts in the file.
    pub position: u64,
}

impl ChunkRange {
    /// Bytes to send: header and data.
    pub fn deliver_len(&self) -> u64 {
        self.header.deliver_len()
    }

    /// Reads the header and data (what `Deliver` sends) into a buffer.
    pub fn read_deliver(&self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; self.deliver_len() as usize];
        self.file.read_exact_at(&mut buf, self.position)?;
        Ok(buf)
    }

    /// Reads the data section (the entries), for a server that decodes them itself (AMQP
    /// consumers of a stream).
    pub fn read_data(&self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; self.header.data_len as usize];
        self.file
            .read_exact_at(&mut buf, self.position + HEADER_LEN as u64)?;
        Ok(buf)
    }
}

/// Reads a stream's committed chunks in order from a [`SeekPosition`]. Get one with
/// [`StreamLog::reader`]. When it returns `None` it has caught up: call again once more chunks
/// were committed.
#[derive(Debug)]
pub struct StreamReader {
    log: Arc<StreamLog>,
    segment: u64,
    position: u64,
    next_offset: u64,
    options: ReadOptions,
}

impl StreamLog {
    /// Where a consumer with `spec` starts.
    pub fn seek(&self, spec: OffsetSpec) -> Result<SeekPosition, StoreError> {
        let inner = self.inner.lock();
        let next = next_position(&inner);
        let first = inner
            .segments
            .iter()
            .find_map(|s| s.first.map(|r| (s.id, r)));
        let Some((first_seg, first)) = first else {
            return Ok(next);
        };
        match spec {
            OffsetSpec::First => Ok(SeekPosition {
                chunk_id: first.chunk_id,
                segment: first_seg,
                position: first.position,
            }),
            OffsetSpec::Next => Ok(next),
            OffsetSpec::Last => Ok(match inner.last_user {
                Some(r) => SeekPosition {
                    chunk_id: r.chunk_id,
                    segment: segment_of(&inner, r.chunk_id).map_or(first_seg, |s| s.id),
                    position: r.position,
                },
                None => next,
            }),
            OffsetSpec::Offset(o) if o <= first.chunk_id => Ok(SeekPosition {
                chunk_id: first.chunk_id,
                segment: first_seg,
                position: first.position,
            }),
            OffsetSpec::Offset(o) if o >= inner.next_offset => Ok(next),
            OffsetSpec::Offset(o) => {
                let Some(seg) = segment_of(&inner, o) else {
                    return Ok(next);
                };
                let (idx, path, chunks, id) = (
                    Arc::clone(&seg.idx),
                    seg.idx_path.clone(),
                    seg.chunks,
                    seg.id,
                );
                drop(inner);
                let r = find_offset(&idx, chunks, o).map_err(|e| StoreError::io(&path, e))?;
                Ok(r.map_or(next, |r| SeekPosition {
                    chunk_id: r.chunk_id,
                    segment: id,
                    position: r.position,
                }))
            }
            OffsetSpec::Timestamp(t) => {
                // Timestamps are the appenders' clocks: scan rather than assume they only grow.
                let Some(seg) = inner
                    .segments
                    .iter()
                    .find(|s| s.last.is_some_and(|l| l.timestamp >= t))
                else {
                    return Ok(next);
                };
                let (idx, path, chunks, id) = (
                    Arc::clone(&seg.idx),
                    seg.idx_path.clone(),
                    seg.chunks,
                    seg.id,
                );
                drop(inner);
                let mut reads = 0;
                let records = index::read_records(&idx, 0, chunks, &mut reads)
                    .map_err(|e| StoreError::io(&path, e))?;
                Ok(records
                    .into_iter()
                    .flatten()
                    .find(|r| r.timestamp >= t)
                    .map_or(next, |r| SeekPosition {
                        chunk_id: r.chunk_id,
                        segment: id,
                        position: r.position,
                    }))
            }
        }
    }

    /// A reader of committed chunks from where `spec` points.
    pub fn reader(
        self: &Arc<Self>,
        spec: OffsetSpec,
        options: ReadOptions,
    ) -> Result<StreamReader, StoreError> {
        let at = self.seek(spec)?;
        Ok(self.reader_at(at, options))
    }

    /// A reader from a position returned by [`StreamLog::seek`] (or a reader's own
    /// [`StreamReader::position`]).
    pub fn reader_at(self: &Arc<Self>, at: SeekPosition, options: ReadOptions) -> StreamReader {
        StreamReader {
            log: Arc::clone(self),
            segment: at.segment,
            position: at.position,
            next_offset: at.chunk_id,
            options,
        }
    }
}

fn next_position(inner: &Inner) -> SeekPosition {
    let (segment, position) = inner
        .segments
        .back()
        .map_or((inner.next_offset, FILE_HEADER_LEN), |s| (s.id, s.len));
    SeekPosition {
        chunk_id: inner.next_offset,
        segment,
        position,
    }
}

/// The segment that would hold `offset`: the last one starting at or before it.
fn segment_of(inner: &Inner, offset: u64) -> Option<&Segment> {
    let i = inner.segments.partition_point(|s| s.id <= offset);
    i.checked_sub(1).map(|i| &inner.segments[i])
}

/// Binary search of an index file for the chunk holding `offset`: the last chunk whose id is at
/// or before it. `log2(chunks)` reads of one record, from the page cache once warm.
fn find_offset(idx: &File, chunks: u64, offset: u64) -> io::Result<Option<IndexRecord>> {
    let (mut lo, mut hi) = (0u64, chunks);
    let mut found = None;
    let mut reads = 0;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let Some(r) = index::read_record(idx, mid, &mut reads)? else {
            return Err(io::Error::other("damaged index record"));
        };
        if r.chunk_id <= offset {
            found = Some(r);
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(found)
}

impl StreamReader {
    /// Where the next chunk would be read.
    pub fn position(&self) -> SeekPosition {
        SeekPosition {
            chunk_id: self.next_offset,
            segment: self.segment,
            position: self.position,
        }
    }

    /// The offset the next chunk starts at.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The next committed chunk (skipping tracking chunks and filtered-out chunks as asked),
    /// or `None` when the reader has caught up with the committed chunks.
    ///
    /// A reader left behind by retention (its segment was deleted before it got there) carries
    /// on from the first chunk still in the stream, as a RabbitMQ consumer does.
    pub fn next_chunk(&mut self) -> Result<Option<ChunkRange>, StoreError> {
        loop {
            let (file, path) = {
                let inner = self.log.inner.lock();
                if self.next_offset >= inner.committed.next_offset {
                    return Ok(None);
                }
                let i = inner.segments.partition_point(|s| s.id < self.segment);
                match inner.segments.get(i) {
                    Some(s) if s.id == self.segment && self.position < s.len => {
                        (Arc::clone(&s.seg), Arc::clone(&s.seg_path))
                    }
                    // Past the end of its segment, or its segment is gone: the next one.
                    Some(s) if s.id != self.segment || i + 1 < inner.segments.len() => {
                        let next = if s.id == self.segment {
                            &inner.segments[i + 1]
                        } else {
                            s
                        };
                        self.segment = next.id;
                        self.position = FILE_HEADER_LEN;
                        self.next_offset = self.next_offset.max(next.id);
                        continue;
                    }
                    _ => return Ok(None),
                }
            };
            let mut head = [0u8; HEADER_LEN];
            file.read_exact_at(&mut head, self.position)
                .map_err(|e| StoreError::io(path.to_path_buf(), e))?;
            let corrupt = |reason: &str| StoreError::Corrupt {
                path: path.to_path_buf(),
                offset: self.position,
                reason: reason.to_string(),
            };
            let header = ChunkHeader::parse(&head).ok_or_else(|| corrupt("bad chunk header"))?;
            if header.chunk_id != self.next_offset {
                return Err(corrupt("the chunk is not the one expected there"));
            }
            let range = ChunkRange {
                header,
                file,
                path,
                position: self.position,
            };
            self.position += header.stored_len();
            self.next_offset = header.next_offset();
            if header.chunk_type != ChunkType::User && !self.options.all_chunk_types {
                continue;
            }
            if let Some(filter) = &self.options.filter {
                let mut bloom = vec![0u8; usize::from(header.bloom_len)];
                let at = range.position + header.deliver_len() + u64::from(header.trailer_len);
                range
                    .file
                    .read_exact_at(&mut bloom, at)
                    .map_err(|e| StoreError::io(range.path.to_path_buf(), e))?;
                if !filter.matches(&bloom) {
                    continue;
                }
            }
            return Ok(Some(range));
        }
    }
}
