//! What the flusher does with one queue log in a round: take its buffers, write them, and
//! afterwards delete the segments nothing needs any more.
//!
//! # Why deleting a segment is safe
//!
//! A segment is deleted when it is not the active segment (nothing will be appended to it) and
//! its in-memory live count is zero: every message record in it was acknowledged by the broker,
//! so no reader needs it, and a [`QueueLog::read`] of one of its records is a caller bug answered
//! with [`StoreError::NoSuchRecord`](crate::StoreError::NoSuchRecord).
//!
//! Could a crash bring back a message that was acknowledged? Acks live in the acks file of the
//! message's own segment, never anywhere else, so losing acks can only resurrect messages of a
//! segment that still exists; and deleting a segment removes its messages together with the
//! question. The one order that matters is between the two files of a segment: the `.seg` file is
//! unlinked and the directory synced *before* the `.acks` file is unlinked, so a crash can leave
//! an `.acks` file without its segment (removed at the next open), never a segment without its
//! acks. Deletion is decided after this round's writes and syncs, so the acks that justified it
//! are on disk anyway, and a crash before the unlink is durable only finds a segment whose every
//! record is acknowledged on disk, which recovery deletes again.
//!
//! Acks are exact: an event names its message by segment, offset *and* seq, and after a restart
//! appends go to a new segment, so a cut-off tail's offsets are never reused and an old event
//! can never match a new record.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use tracing::{debug, warn};

use super::{Chunk, LogState, QueueLog, Queued};
use crate::files;
use crate::flusher::{Counters, Failure, Shared};
use crate::naming::LogFile;
use crate::SyncMode;

/// One log's share of a flush round.
pub(crate) struct LogBatch {
    writes: Vec<Write>,
    /// Segments fully acknowledged when the batch was taken.
    doomed: Vec<u64>,
}

struct Write {
    chunk: Arc<Chunk>,
    /// The file does not exist yet; creating it needs a directory sync.
    create: bool,
}

/// Something the round must `fsync` before it completes.
pub(crate) enum ToSync {
    File { path: PathBuf, file: Arc<File> },
    Dir(PathBuf),
}

impl ToSync {
    pub(crate) fn sync(&self, shared: &Shared) -> Result<(), Failure> {
        let start = std::time::Instant::now();
        let (path, result) = match self {
            ToSync::File { path, file } => (path, file.sync_data()),
            ToSync::Dir(path) => (path, files::sync_dir(path)),
        };
        shared.counters.fsync_latency.observe(start.elapsed());
        Counters::add(&shared.counters.fsyncs, 1);
        result.map_err(|e| Failure::new(path.clone(), e))
    }
}

impl QueueLog {
    /// Swaps out everything buffered. Message chunks stay readable (`inflight`) until written.
    pub(crate) fn take_batch(&self) -> LogBatch {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        st.queued = Queued::No;
        if st.deleted {
            return LogBatch {
                writes: Vec::new(),
                doomed: Vec::new(),
            };
        }
        let mut chunks = Vec::new();
        for chunk in std::mem::take(&mut st.pending) {
            let chunk = Arc::new(chunk);
            st.inflight.push(Arc::clone(&chunk));
            chunks.push(chunk);
        }
        for (&n, segment) in &mut st.segments {
            if !segment.pending_acks.is_empty() {
                let bytes = std::mem::take(&mut segment.pending_acks);
                let offset = segment.acks_len - bytes.len() as u64;
                chunks.push(Arc::new(Chunk {
                    file: LogFile::Acks(n),
                    offset,
                    bytes,
                }));
            }
        }
        let writes = chunks
            .into_iter()
            .map(|chunk| {
                let create = st.note_created(chunk.file);
                Write { chunk, create }
            })
            .collect();
        let doomed = st
            .segments
            .iter()
            .filter(|&(&n, s)| s.live == 0 && n != st.active)
            .map(|(&n, _)| n)
            .collect();
        LogBatch { writes, doomed }
    }

    /// Writes the batch to the page cache and lists what must be synced.
    pub(crate) fn write_batch(
        &self,
        batch: &LogBatch,
        shared: &Shared,
        to_sync: &mut Vec<ToSync>,
    ) -> Result<(), Failure> {
        let mut created = false;
        for write in &batch.writes {
            let chunk = &write.chunk;
            let path = chunk.file.path(&self.dir);
            let fail = |e| Failure::new(path.clone(), e);
            let file = self.handle(chunk.file, write.create).map_err(fail)?;
            file.write_all_at(&chunk.bytes, chunk.offset)
                .map_err(fail)?;
            Counters::add(&shared.counters.bytes_written, chunk.bytes.len() as u64);
            created |= write.create;
            if !self.volatile {
                to_sync.push(ToSync::File { path, file });
            }
        }
        if created && !self.volatile {
            to_sync.push(ToSync::Dir(self.dir.clone()));
        }
        Ok(())
    }

    /// After the round's writes and syncs: drops the in-flight copies and deletes the doomed
    /// segments.
    pub(crate) fn finish_batch(&self, batch: LogBatch, shared: &Shared) {
        let doomed = {
            let mut st = self.state.lock();
            st.inflight.clear();
            let mut doomed = Vec::new();
            for n in batch.doomed {
                // The live count cannot rise again (appends only go to the active segment,
                // which was not doomed), but the log may have been deleted meanwhile.
                if st.segments.get(&n).is_some_and(|s| s.live == 0) && n != st.active {
                    st.segments.remove(&n);
                    st.files.remove_segment(n);
                    doomed.push(n);
                }
            }
            doomed
        };
        if !doomed.is_empty() {
            self.delete_segments(&doomed, shared);
        }
    }

    /// After a failure: the batch will never be written.
    pub(crate) fn forget_batch(&self, batch: LogBatch) {
        drop(batch);
        self.state.lock().inflight.clear();
    }

    /// `.seg` files first, a directory sync, then the `.acks` files (see the module doc).
    /// Failures are only logged: a leftover file is found fully acknowledged at the next open
    /// and deleted then.
    fn delete_segments(&self, doomed: &[u64], shared: &Shared) {
        for &n in doomed {
            let path = LogFile::Segment(n).path(&self.dir);
            if let Err(e) = files::remove_if_exists(&path) {
                warn!(file = %path.display(), error = %e, "could not delete a fully acknowledged segment");
            }
        }
        if shared.sync == SyncMode::Always {
            if let Err(e) = ToSync::Dir(self.dir.clone()).sync(shared) {
                warn!(dir = %e.path.display(), error = %e.source, "could not sync a queue directory");
                return;
            }
        }
        for &n in doomed {
            let path = LogFile::Acks(n).path(&self.dir);
            if let Err(e) = files::remove_if_exists(&path) {
                warn!(file = %path.display(), error = %e, "could not delete an acks file");
            }
        }
        Counters::add(&shared.counters.segments_deleted, doomed.len() as u64);
        debug!(queue = %self.id, segments = ?doomed, "deleted fully acknowledged segments");
    }

    /// An open handle on one of this log's files, from the cache or opened now.
    fn handle(&self, file: LogFile, create: bool) -> std::io::Result<Arc<File>> {
        if let Some(handle) = self.state.lock().files.get(file) {
            return Ok(handle);
        }
        let handle = Arc::new(files::open_log_file(&file.path(&self.dir), create)?);
        self.state.lock().files.insert(file, Arc::clone(&handle));
        Ok(handle)
    }
}

impl LogState {
    /// Whether writing `file` creates it; from now on it counts as existing.
    fn note_created(&mut self, file: LogFile) -> bool {
        let Some(segment) = self.segments.get_mut(&file.segment()) else {
            return true;
        };
        let on_disk = match file {
            LogFile::Segment(_) => &mut segment.seg_on_disk,
            LogFile::Acks(_) => &mut segment.acks_on_disk,
        };
        !std::mem::replace(on_disk, true)
    }
}
