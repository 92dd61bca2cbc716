//! Streams: replayable, append-only logs of chunks (RabbitMQ streams), stored the way osiris
//! stores them, so that a chunk goes to a consumer straight from the page cache.
//!
//! A stream is a directory of segment files, each with an index file beside it:
//!
//! ```text
//! <dir>/00000000000000000000.segment   file header, then chunks back to back (chunk.rs)
//! <dir>/00000000000000000000.index     file header, then a 56-byte record per chunk (index.rs)
//! <dir>/00000000000000012345.segment   the next segment: named by its first chunk id
//! ...
//! ```
//!
//! - **Offsets.** Every record (message) has an offset; a chunk covers a range of them, and its
//!   *chunk id* is the first. Tracking chunks take one offset each, as in osiris, so the offsets
//!   a consumer sees may have gaps.
//! - **Reading.** A chunk's header and data are stored exactly as the stream protocol's `Deliver`
//!   sends them: [`StreamReader::next_chunk`] yields the file and byte range to hand to
//!   `sendfile` (or to read into the socket), with the parsed header. Nothing is done per message.
//! - **Writing.** [`StreamLog::append_chunk`] writes the chunk and its index record to the page
//!   cache at once; [`StreamLog::sync`] makes everything appended so far durable, with group
//!   commit (callers that arrive while a sync runs share the next one). Confirm to a publisher
//!   only after `sync`. Readers see only *committed* chunks: synced ones (all written ones
//!   with [`SyncMode::Never`]), so a consumer never receives a chunk that a crash could take back.
//! - **Segments** roll when the next chunk would take the active one past
//!   [`StreamConfig::max_segment_size_bytes`]; the old one is synced first, so every segment but
//!   the last is whole on disk. Each new segment starts with a tracking snapshot.
//! - **Retention** ([`StreamLog::apply_retention`], also run on each roll) drops whole segments,
//!   oldest first, by [`StreamConfig::max_length_bytes`] and [`StreamConfig::max_age`], never
//!   the last one (`retention.rs`).
//! - **Recovery** ([`StreamLog::open`]) reads the first and last index record of each segment,
//!   and of the last segment its index, its last chunk, and its tracking chunks and trailers:
//!   time independent of the stream's length (`recovery.rs`). A torn or damaged tail is cut.
//! - **Tracking** (`tracking.rs`): consumer offsets and publisher sequences live in the stream.
//! - **Filtering** (`bloom.rs`): each chunk may carry a bloom filter of its entries' filter values.
//!
//! Lock order: a log's sync state, then its state (`sync.rs`); readers take the state only to
//! look up a segment, never across I/O.

mod append;
mod bloom;
mod chunk;
mod index;
mod reader;
mod recovery;
mod retention;
mod sync;
mod tracking;

#[cfg(test)]
mod crash_tests;
#[cfg(test)]
mod tests;

pub use bloom::{BloomMatcher, DEFAULT_BLOOM_SIZE};
pub use chunk::{
    parse_entries, ChunkHeader, ChunkType, Entry, EntryError, HEADER_LEN, MAX_ENTRY_LEN,
};
pub use reader::{ChunkRange, ReadOptions, SeekPosition, StreamReader};
pub use recovery::StreamRecoveryStats;
pub use retention::{RetentionOutcome, StreamRetention};
pub use tracking::{MAX_SEQUENCES, MAX_TRACKING_ID_LEN};

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::{StoreError, SyncMode};
use index::IndexRecord;
use tracking::Tracking;

/// How a stream is stored. Start from [`StreamConfig::default`].
#[derive(Clone, Debug)]
pub struct StreamConfig {
    /// A new segment starts when a chunk would take the active one past this size
    /// (`x-stream-max-segment-size-bytes`; default 500 MB, as RabbitMQ). A chunk larger than
    /// this gets a segment of its own.
    pub max_segment_size_bytes: u64,
    /// Retention by size (`x-max-length-bytes`): the oldest segments are dropped while the
    /// stream is larger. `None`: no limit.
    pub max_length_bytes: Option<u64>,
    /// Retention by age (`x-max-age`): a segment is dropped once its last chunk is older.
    /// `None`: no limit.
    pub max_age: Option<Duration>,
    /// Whether [`StreamLog::sync`] waits for the disk. Default [`SyncMode::Always`].
    pub sync: SyncMode,
    /// The epoch written into each chunk header (the writer's leadership term in a cluster).
    pub epoch: u64,
    /// Bloom filter size in bytes for chunks with filter values, 16 to 255 (`bloom.rs`).
    pub bloom_size: u8,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            max_segment_size_bytes: 500_000_000,
            max_length_bytes: None,
            max_age: None,
            sync: SyncMode::Always,
            epoch: 1,
            bloom_size: DEFAULT_BLOOM_SIZE,
        }
    }
}

/// Where a consumer starts (the stream protocol's `OffsetSpecification`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The first chunk still in the stream.
    First,
    /// The last user chunk, from its first record (RabbitMQ's `last`).
    Last,
    /// What is appended from now on.
    Next,
    /// The chunk holding this offset; clamped to the first chunk or to `Next` when out of range.
    /// The chunk may start before the offset: the consumer skips the records before it.
    Offset(u64),
    /// The first chunk with a timestamp at or after this one (milliseconds since the epoch),
    /// `Next` when there is none.
    Timestamp(i64),
}

/// A chunk that was appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChunkInfo {
    /// Its first offset.
    pub chunk_id: u64,
    /// Records (offsets) it covers.
    pub num_records: u32,
    /// Its timestamp.
    pub timestamp: i64,
    /// What it holds.
    pub chunk_type: ChunkType,
    /// The segment it is in (the segment's first chunk id).
    pub segment: u64,
    /// Where it starts in the segment file.
    pub position: u64,
    /// Bytes it takes in the file.
    pub stored_len: u64,
}

/// A user chunk to append: see [`StreamLog::append_chunk`].
#[derive(Clone, Copy, Debug)]
pub struct Append<'a> {
    /// Its entries, at least one and at most 65535.
    pub entries: &'a [Entry<'a>],
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Publisher name and last publishing id of each named publisher whose messages the chunk
    /// holds, recorded in the chunk (de-duplication). Names are 1 to 255 bytes.
    pub publishers: &'a [(&'a [u8], u64)],
    /// The distinct filter values of its entries (stream filtering); empty if none has one.
    pub filter_values: &'a [&'a [u8]],
    /// Whether some entry has no filter value (only matters when `filter_values` is not empty).
    pub unfiltered: bool,
}

impl<'a> Append<'a> {
    /// A chunk of `entries` with no publisher names and no filter values.
    pub fn new(entries: &'a [Entry<'a>], timestamp: i64) -> Self {
        Append {
            entries,
            timestamp,
            publishers: &[],
            filter_values: &[],
            unfiltered: false,
        }
    }
}

/// What a stream holds, from [`StreamLog::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamStats {
    /// Segment files.
    pub segments: usize,
    /// Bytes of chunks in them (file headers included).
    pub bytes: u64,
    /// Chunks in them.
    pub chunks: u64,
}

/// One segment, as the log knows it.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Its name: the chunk id of its first chunk.
    pub(crate) id: u64,
    pub(crate) seg: Arc<File>,
    pub(crate) idx: Arc<File>,
    pub(crate) seg_path: Arc<Path>,
    pub(crate) idx_path: PathBuf,
    /// Bytes of the segment file holding whole chunks (its file header included).
    pub(crate) len: u64,
    /// Index records, one per chunk.
    pub(crate) chunks: u64,
    pub(crate) first: Option<IndexRecord>,
    pub(crate) last: Option<IndexRecord>,
}

/// Chunks readers may see.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Committed {
    /// The last committed chunk's id.
    pub(crate) chunk_id: Option<u64>,
    /// The offset after it: readers stop at a chunk with this id.
    pub(crate) next_offset: u64,
}

pub(crate) struct Inner {
    /// Oldest first; the last one is active.
    pub(crate) segments: VecDeque<Segment>,
    pub(crate) next_offset: u64,
    pub(crate) committed: Committed,
    /// The last chunk of user type ([`OffsetSpec::Last`]).
    pub(crate) last_user: Option<IndexRecord>,
    pub(crate) tracking: Tracking,
    /// Chunks appended since open: what [`StreamLog::sync`] waits for.
    pub(crate) appended: u64,
    /// A file was created or removed since the last sync.
    pub(crate) dir_dirty: bool,
    /// Set once a write or sync failed: appends are refused from then on.
    pub(crate) failed: Option<StoreError>,
    /// Segment size and retention in force: the configuration's at open, changed by
    /// [`StreamLog::set_retention`] (a policy).
    pub(crate) retention: StreamRetention,
    /// Reused encoding buffers.
    pub(crate) buf: Vec<u8>,
    pub(crate) trailer: Vec<u8>,
    pub(crate) bloom: Vec<u8>,
}

/// A stream's log. All methods take `&self`; appends are serialised by an internal lock, and any
/// number of readers may read alongside.
pub struct StreamLog {
    dir: PathBuf,
    config: StreamConfig,
    pub(crate) inner: Mutex<Inner>,
    pub(crate) syncer: Mutex<sync::SyncState>,
    pub(crate) synced: Condvar,
    recovery: StreamRecoveryStats,
}

impl std::fmt::Debug for StreamLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamLog")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl StreamLog {
    /// Opens the stream in `dir`, creating it if needed, and recovers it: cuts a torn or damaged
    /// tail (logged as a warning, listed in [`StreamLog::recovery_stats`]), and reads the
    /// tracking data. Errors are I/O errors only.
    pub fn open(
        dir: impl Into<PathBuf>,
        config: StreamConfig,
    ) -> Result<Arc<StreamLog>, StoreError> {
        let dir = dir.into();
        let r = recovery::recover(&dir, &config)?;
        let retention = StreamRetention::of(&config);
        let committed = Committed {
            chunk_id: r
                .segments
                .iter()
                .rev()
                .find_map(|s| s.last)
                .map(|l| l.chunk_id),
            next_offset: r.next_offset,
        };
        Ok(Arc::new(StreamLog {
            dir,
            config,
            inner: Mutex::new(Inner {
                segments: r.segments,
                next_offset: r.next_offset,
                committed,
                last_user: r.last_user,
                tracking: r.tracking,
                appended: 0,
                dir_dirty: false,
                failed: None,
                retention,
                buf: Vec::new(),
                trailer: Vec::new(),
                bloom: Vec::new(),
            }),
            syncer: Mutex::new(sync::SyncState::default()),
            synced: Condvar::new(),
            recovery: r.stats,
        }))
    }

    /// The stream's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its configuration as opened (the segment size and retention in force may have changed
    /// since: [`StreamLog::retention`]).
    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// What opening the log found and read.
    pub fn recovery_stats(&self) -> &StreamRecoveryStats {
        &self.recovery
    }

    /// The offset of the first chunk still in the stream (the next offset when it is empty).
    pub fn first_offset(&self) -> u64 {
        let inner = self.inner.lock();
        inner
            .segments
            .iter()
            .find_map(|s| s.first)
            .map_or(inner.next_offset, |r| r.chunk_id)
    }

    /// The timestamp (ms since the Unix epoch) of the first chunk still in the stream, `None`
    /// when it is empty (osiris' `first_timestamp` counter).
    pub fn first_timestamp(&self) -> Option<i64> {
        let inner = self.inner.lock();
        inner
            .segments
            .iter()
            .find_map(|s| s.first)
            .map(|r| r.timestamp)
    }

    /// The offset the next appended record gets.
    pub fn next_offset(&self) -> u64 {
        self.inner.lock().next_offset
    }

    /// The last offset written (committed or not), `None` for an empty stream.
    pub fn last_offset(&self) -> Option<u64> {
        let inner = self.inner.lock();
        inner
            .segments
            .iter()
            .rev()
            .find_map(|s| s.last)
            .map(|_| inner.next_offset - 1)
    }

    /// The id of the last chunk written (committed or not; osiris' `last_chunk_id`), `None`
    /// for an empty stream.
    pub fn last_chunk_id(&self) -> Option<u64> {
        let inner = self.inner.lock();
        inner
            .segments
            .iter()
            .rev()
            .find_map(|s| s.last)
            .map(|r| r.chunk_id)
    }

    /// The id of the last committed chunk (durable, visible to readers), `None` if none is.
    pub fn committed_chunk_id(&self) -> Option<u64> {
        self.inner.lock().committed.chunk_id
    }

    /// The offset after the last committed record: readers stop there.
    pub fn committed_offset(&self) -> u64 {
        self.inner.lock().committed.next_offset
    }

    /// The offset stored for consumer `reference` with [`StreamLog::store_offset`] (`QueryOffset`).
    pub fn query_offset(&self, reference: &[u8]) -> Option<u64> {
        self.inner.lock().tracking.offsets.get(reference).copied()
    }

    /// The last publishing id recorded for publisher `name` (`QueryPublisherSequence`).
    pub fn publisher_sequence(&self, name: &[u8]) -> Option<u64> {
        self.inner
            .lock()
            .tracking
            .sequences
            .get(name)
            .map(|&(_, seq)| seq)
    }

    /// Segments, bytes and chunks held.
    pub fn stats(&self) -> StreamStats {
        let inner = self.inner.lock();
        StreamStats {
            segments: inner.segments.len(),
            bytes: inner.segments.iter().map(|s| s.len).sum(),
            chunks: inner.segments.iter().map(|s| s.chunks).sum(),
        }
    }
}

/// Milliseconds since the Unix epoch, by the system clock.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
