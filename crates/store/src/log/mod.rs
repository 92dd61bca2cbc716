//! A durable queue's message log: segment files of message records, an acks file beside each
//! segment, and the in-memory index of live (unacknowledged) messages.
//!
//! This file is the hot path: [`QueueLog::append`], [`QueueLog::ack`] and
//! [`QueueLog::delivered`] only touch memory. `flush.rs` is what the flusher does with a log,
//! `recovery.rs` how a log is rebuilt from its directory (and its checkpoint), `checkpoint.rs`
//! how its index is checkpointed.

mod checkpoint;
#[cfg(test)]
mod checkpoint_tests;
mod flush;
mod index;
mod recovery;

pub use checkpoint::CheckpointWritten;
pub(crate) use flush::ToSync;
pub use recovery::CheckpointOutcome;

use std::collections::BTreeMap;
use std::ops::RangeBounds;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use crate::files::{self, FileCache};
use crate::flusher::Shared;
use crate::naming::LogFile;
use crate::record::{self, Kind};
use crate::scan::Truncation;
use crate::{StoreError, StoreOptions};
use checkpoint::CheckpointState;
use index::LiveIndex;

/// Where a message record lives, so its body can be read back with [`QueueLog::read`] after it
/// was dropped from memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    /// The segment number (its file is `{segment:020}.seg`).
    pub segment: u64,
    /// Byte offset of the record's frame in the segment.
    pub offset: u64,
    /// Length of the whole frame (header included).
    pub len: u32,
}

/// A message found in the log by [`QueueLog::recover`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveredMessage {
    /// The seq it was appended with.
    pub seq: u64,
    /// Where its body is; read it with [`QueueLog::read`].
    pub location: Location,
    /// Whether [`QueueLog::delivered`] was recorded for it (AMQP `redelivered`, MQTT DUP).
    pub delivered: bool,
    /// The tag it was appended with ([`QueueLog::append_tagged`]); `None` for
    /// [`QueueLog::append`].
    pub tag: Option<u8>,
}

impl From<(u64, Location, bool, Option<u8>)> for RecoveredMessage {
    fn from((seq, location, delivered, tag): (u64, Location, bool, Option<u8>)) -> Self {
        RecoveredMessage {
            seq,
            location,
            delivered,
            tag,
        }
    }
}

/// A count of live messages, from [`QueueLog::live_summary`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveSummary {
    /// Live messages counted.
    pub messages: usize,
    /// Total length of their frames (header included): an upper bound of their data.
    pub frame_bytes: u64,
    /// The highest seq counted.
    pub last_seq: Option<u64>,
}

/// The live messages of a log and what opening it took.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Recovery {
    /// Every message appended and not acknowledged, in seq order.
    pub messages: Vec<RecoveredMessage>,
    /// What reading the log's files took when it was opened.
    pub stats: RecoveryStats,
}

/// What opening a queue log found on disk.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct RecoveryStats {
    /// Segment files read.
    pub segments: usize,
    /// Valid records read, in segment and acks files.
    pub records_read: u64,
    /// Bytes cut off damaged tails.
    pub bytes_truncated: u64,
    /// Each damaged tail cut off (also logged as a warning).
    pub truncations: Vec<Truncation>,
    /// Time spent reading and repairing the files.
    pub duration: Duration,
    /// Whether a checkpoint spared reading the files it covers.
    pub checkpoint: CheckpointOutcome,
}

/// One durable queue's log. Get it from [`Store::queue_log`](crate::Store::queue_log).
///
/// Seqs are chosen by the caller and need only be unique among the log's live messages (a seq
/// may be reused once its message is acknowledged); appending a seq that is live replaces that
/// message. All methods take `&self` and may be called from any thread.
pub struct QueueLog {
    id: String,
    dir: PathBuf,
    segment_size: u64,
    /// This log, for putting itself on the flusher's dirty list.
    me: Weak<QueueLog>,
    shared: Arc<Shared>,
    /// Held while a checkpoint of this log is written, and by deletion (`checkpoint.rs`).
    pub(crate) ckpt: Mutex<CheckpointState>,
    /// Set by deletion before it waits for `ckpt`: a checkpoint in progress gives up.
    pub(crate) deleting: AtomicBool,
    /// Held by the flusher while it writes this log's files, and by deletion; see `flusher.rs`.
    pub(crate) io: Mutex<()>,
    state: Mutex<LogState>,
    opened: RecoveryStats,
    /// Its files are written but never synced ([`crate::Store::volatile_queue_log`]).
    pub(crate) volatile: bool,
}

/// Lock order: `Store::queues` → `QueueLog::ckpt` → `QueueLog::io` → `QueueLog::state` → the
/// flusher's state.
pub(crate) struct LogState {
    /// Live messages by seq.
    live: LiveIndex,
    /// Segments that exist or are about to, by number.
    segments: BTreeMap<u64, Segment>,
    /// The segment appends go to. Never deleted while active.
    active: u64,
    /// Message records not yet handed to the flusher, in order.
    pending: Vec<Chunk>,
    /// Message records the flusher is writing; readable from here until they are in the file.
    inflight: Vec<Arc<Chunk>>,
    queued: Queued,
    deleted: bool,
    files: FileCache,
}

#[derive(Debug, Default)]
struct Segment {
    /// Logical length of the `.seg` file: written plus buffered.
    len: u64,
    /// Live messages in it; at zero (and not active) it is deleted.
    live: u64,
    /// Logical length of the `.acks` file: written plus `pending_acks`.
    acks_len: u64,
    /// Events not yet handed to the flusher.
    pending_acks: Vec<u8>,
    seg_on_disk: bool,
    acks_on_disk: bool,
}

/// Bytes bound for one file at one offset.
#[derive(Debug)]
pub(crate) struct Chunk {
    file: LogFile,
    offset: u64,
    bytes: Vec<u8>,
}

/// Whether (and why) the log is on the flusher's dirty list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Queued {
    No,
    /// Only events are buffered.
    Lazy,
    /// A message record is buffered.
    Urgent,
}

impl QueueLog {
    /// Opens (recovers) the log in `dir`.
    pub(crate) fn open(
        id: String,
        dir: PathBuf,
        opts: &StoreOptions,
        shared: Arc<Shared>,
        volatile: bool,
    ) -> Result<Arc<QueueLog>, StoreError> {
        let (state, opened, ckpt) = recovery::open_dir(&dir, shared.sync)?;
        let needs_flush = state.needs_flush();
        let log = Arc::new_cyclic(|me| QueueLog {
            id,
            dir,
            // At most 4 GiB, so that every offset packs into the live index's 32 bits.
            segment_size: opts.segment_size.clamp(1, u64::from(u32::MAX)),
            me: me.clone(),
            shared,
            ckpt: Mutex::new(ckpt),
            deleting: AtomicBool::new(false),
            io: Mutex::new(()),
            state: Mutex::new(state),
            opened,
            volatile,
        });
        if needs_flush {
            // Fully acknowledged segments to delete, or events recovery generated.
            log.mark_dirty(&mut log.state.lock(), Queued::Lazy);
        }
        Ok(log)
    }

    /// The queue id this log belongs to.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of live (unacknowledged) messages.
    pub fn len(&self) -> usize {
        self.state.lock().live.len()
    }

    /// Whether no message is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Buffers a message record and returns where it will be. Not durable yet: read
    /// [`Store::current_epoch`](crate::Store::current_epoch) after this call and wait for that
    /// epoch ([`Store::on_synced`](crate::Store::on_synced)) before confirming the message.
    ///
    /// Fails only when the store can no longer write ([`StoreError::Failed`],
    /// [`StoreError::Closed`], [`StoreError::QueueDeleted`]) or the body cannot be framed
    /// ([`StoreError::TooLarge`]).
    pub fn append(&self, seq: u64, data: &[u8]) -> Result<Location, StoreError> {
        self.append_with(seq, None, data)
    }

    /// [`QueueLog::append`] with a byte of the caller's that the index keeps beside the
    /// message's location: [`QueueLog::live_from`] lists it, and a restart recovers it from
    /// the checkpoint (or from the record header, one byte) without reading the message. A
    /// priority queue keeps each message's priority level there, so that it can sort a long
    /// log by level at start without reading it. [`QueueLog::read`] returns `data` alone.
    pub fn append_tagged(&self, seq: u64, tag: u8, data: &[u8]) -> Result<Location, StoreError> {
        self.append_with(seq, Some(tag), data)
    }

    fn append_with(&self, seq: u64, tag: Option<u8>, data: &[u8]) -> Result<Location, StoreError> {
        let frame_len = record::message_frame_len(data.len(), tag.is_some())
            .ok_or(StoreError::TooLarge { len: data.len() })?;
        let mut guard = self.state.lock();
        if guard.deleted {
            return Err(self.deleted_error());
        }
        self.shared.check_writable()?;
        let st = &mut *guard;
        let mut seg_len = st.segments.get(&st.active).map_or(0, |s| s.len);
        if seg_len > 0 && seg_len + u64::from(frame_len) > self.segment_size {
            st.active += 1;
            seg_len = 0;
        }
        let location = Location {
            segment: st.active,
            offset: seg_len,
            len: frame_len,
        };
        let file = LogFile::Segment(location.segment);
        match st.pending.last_mut() {
            Some(chunk) if chunk.file == file => {
                record::encode_message(&mut chunk.bytes, seq, tag, data)
            }
            _ => {
                let mut bytes = Vec::new();
                record::encode_message(&mut bytes, seq, tag, data);
                st.pending.push(Chunk {
                    file,
                    offset: location.offset,
                    bytes,
                });
            }
        }
        let segment = st.segments.entry(location.segment).or_default();
        segment.len += u64::from(frame_len);
        segment.live += 1;
        if let Some(replaced) = st.live.insert_tagged(seq, location, false, tag) {
            st.retire(seq, replaced);
        }
        self.mark_dirty(st, Queued::Urgent);
        Ok(location)
    }

    /// Records that message `seq` was acknowledged: it will not be recovered once this is on
    /// disk, and its segment is deleted when all of the segment's messages are. Lazily durable
    /// (see [`StoreOptions::ack_flush_delay`]). Unknown or already acknowledged seqs are ignored.
    pub fn ack(&self, seq: u64) {
        let mut st = self.state.lock();
        if st.deleted {
            return;
        }
        if let Some(location) = st.live.remove(seq) {
            st.retire(seq, location);
            self.mark_dirty(&mut st, Queued::Lazy);
        }
    }

    /// Records that message `seq` was handed to a consumer, so that after a restart it is
    /// redelivered with AMQP's `redelivered` (MQTT's DUP) flag. Lazily durable, like
    /// [`QueueLog::ack`]; recorded once per message.
    pub fn delivered(&self, seq: u64) {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        if st.deleted {
            return;
        }
        let Some(location) = st.live.mark_delivered(seq) else {
            return;
        };
        st.buffer_event(seq, Kind::Delivered, location);
        self.mark_dirty(st, Queued::Lazy);
    }

    /// Reads a message body back (from memory if it is not written yet) and checks its CRC.
    /// Blocking file I/O: call it from a blocking context.
    pub fn read(&self, location: &Location) -> Result<Vec<u8>, StoreError> {
        let no_such = || StoreError::NoSuchRecord {
            location: *location,
        };
        let file = LogFile::Segment(location.segment);
        let cached = {
            let mut st = self.state.lock();
            let end = location.offset.saturating_add(u64::from(location.len));
            match st.segments.get(&location.segment) {
                Some(seg) if end <= seg.len => {}
                _ => return Err(no_such()),
            }
            if let Some(frame) = st.buffered(file, location.offset, location.len) {
                return self.decode_body(frame, location);
            }
            st.files.get(file)
        };
        let path = file.path(&self.dir);
        let handle = match cached {
            Some(handle) => handle,
            None => {
                let opened = files::open_log_file(&path, false).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        no_such()
                    } else {
                        StoreError::io(&path, e)
                    }
                })?;
                let handle = Arc::new(opened);
                self.state.lock().files.insert(file, Arc::clone(&handle));
                handle
            }
        };
        let mut frame = vec![0; location.len as usize];
        handle
            .read_exact_at(&mut frame, location.offset)
            .map_err(|e| StoreError::io(&path, e))?;
        self.decode_body(&frame, location)
    }

    /// Every live message in seq order, with what opening the log found.
    pub fn recover(&self) -> Recovery {
        let st = self.state.lock();
        let messages = st.live.tagged_from(0).map(RecoveredMessage::from).collect();
        Recovery {
            messages,
            stats: self.opened.clone(),
        }
    }

    /// At most `limit` live messages with a seq of at least `from`, in seq order: the next
    /// ones to read back ([`QueueLog::read`]) when the caller keeps only part of the log in
    /// memory. Only touches memory.
    pub fn live_from(&self, from: u64, limit: usize) -> Vec<RecoveredMessage> {
        let st = self.state.lock();
        st.live
            .tagged_from(from)
            .take(limit)
            .map(RecoveredMessage::from)
            .collect()
    }

    /// Counts the live messages with a seq of at least `from` without listing them. Only
    /// touches memory, but walks the whole index: not for the hot path.
    pub fn live_summary(&self, from: u64) -> LiveSummary {
        let st = self.state.lock();
        let mut summary = LiveSummary::default();
        for (seq, location, _) in st.live.from(from) {
            summary.messages += 1;
            summary.frame_bytes += u64::from(location.len);
            summary.last_seq = Some(seq);
        }
        summary
    }

    /// Acknowledges every live message whose seq is in `range`, as [`QueueLog::ack`] does for
    /// one; returns how many there were.
    pub fn ack_range(&self, range: impl RangeBounds<u64>) -> usize {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        if st.deleted {
            return 0;
        }
        let seqs = st.live.seqs(range);
        for &seq in &seqs {
            if let Some(location) = st.live.remove(seq) {
                st.retire(seq, location);
            }
        }
        if !seqs.is_empty() {
            self.mark_dirty(st, Queued::Lazy);
        }
        seqs.len()
    }

    fn decode_body(&self, frame: &[u8], location: &Location) -> Result<Vec<u8>, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            path: LogFile::Segment(location.segment).path(&self.dir),
            offset: location.offset,
            reason,
        };
        match record::decode_frame(frame) {
            Ok(p) => match record::message_parts(p.kind, p.body) {
                Some((_, data)) => Ok(data.to_vec()),
                None => Err(corrupt(format!("not a message record (kind {:?})", p.kind))),
            },
            Err(damage) => Err(corrupt(format!("{damage:?}"))),
        }
    }

    fn deleted_error(&self) -> StoreError {
        StoreError::QueueDeleted {
            queue_id: self.id.clone(),
        }
    }

    /// Puts this log on the flusher's list unless it is already there for a reason at least as
    /// pressing. Called with the state lock held (lock order: log state, then flusher state).
    fn mark_dirty(&self, st: &mut LogState, why: Queued) {
        if st.queued >= why {
            return;
        }
        let was_clean = st.queued == Queued::No;
        st.queued = why;
        let me = if was_clean { self.me.upgrade() } else { None };
        self.shared.mark_dirty(me, why == Queued::Urgent);
    }

    /// Marks the log deleted: it drops its buffers and refuses appends.
    pub(crate) fn mark_deleted(&self) {
        let mut st = self.state.lock();
        st.deleted = true;
        st.pending.clear();
        st.inflight.clear();
        st.live.clear();
        st.segments.clear();
        st.files.clear();
    }
}

impl LogState {
    fn new(active: u64) -> Self {
        LogState {
            live: LiveIndex::default(),
            segments: BTreeMap::new(),
            active,
            pending: Vec::new(),
            inflight: Vec::new(),
            queued: Queued::No,
            deleted: false,
            files: FileCache::default(),
        }
    }

    /// Takes a message out of the live set's accounting and records its acknowledgement.
    fn retire(&mut self, seq: u64, location: Location) {
        if let Some(segment) = self.segments.get_mut(&location.segment) {
            segment.live -= 1;
        }
        self.buffer_event(seq, Kind::Ack, location);
    }

    fn buffer_event(&mut self, seq: u64, kind: Kind, location: Location) {
        if let Some(segment) = self.segments.get_mut(&location.segment) {
            record::encode_event(&mut segment.pending_acks, seq, kind, location.offset);
            segment.acks_len += record::EVENT_FRAME_LEN as u64;
        }
    }

    /// A whole frame that is still in memory.
    fn buffered(&self, file: LogFile, offset: u64, len: u32) -> Option<&[u8]> {
        let in_memory = self
            .pending
            .iter()
            .chain(self.inflight.iter().map(|c| &**c));
        for chunk in in_memory {
            if chunk.file != file || offset < chunk.offset {
                continue;
            }
            let start = usize::try_from(offset - chunk.offset).ok()?;
            if let Some(frame) = chunk.bytes.get(start..start + len as usize) {
                return Some(frame);
            }
        }
        None
    }

    /// Whether something must be flushed though nothing was appended.
    fn needs_flush(&self) -> bool {
        self.segments
            .iter()
            .any(|(&n, s)| (s.live == 0 && n != self.active) || !s.pending_acks.is_empty())
    }
}
