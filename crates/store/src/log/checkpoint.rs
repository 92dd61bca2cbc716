//! Writing a queue log's checkpoint (the format is `checkpoint.rs` at the crate root).
//!
//! A checkpoint must describe the log exactly as far as it claims to cover it. It is taken
//! without stopping the log:
//!
//! 1. Under the log's state lock, note how much of every segment and its acks file has been
//!    handed to the flusher (not what is still buffered): the *cover*. Everything appended or
//!    acked from here on lies past it.
//! 2. Walk the live index in seq order, a few thousand entries per hold of the state lock
//!    (appends and acks go on in between), and write each live message whose record lies
//!    inside the cover. An entry acked, replaced or flagged delivered during the walk is
//!    written as the walk finds it, so the file may be *newer* than the cover for those.
//! 3. Wait until everything buffered so far is synced (one flush epoch): then every record
//!    and event the file reflects, inside the cover or past it, is on disk. (When the store
//!    closes, the flusher has already written and synced its last round; an ack arriving
//!    after that is never written, and the checkpoint then keeps that message acknowledged.)
//! 4. `fsync` the temporary file, rename it over `checkpoint`, `fsync` the directory.
//!
//! Why the newer entries are safe: recovery loads the entries, then replays every event past
//! the cover and reads every record past it. An ack seen by the walk is in the acks file past
//! the cover (step 3 made it durable), so replaying it removes what the walk already left
//! out; a replacement's new record is past the cover and is read again, and the old one's Ack
//! is replayed; a delivered flag is replayed too. So loading the checkpoint and replaying
//! gives what reading the whole log gives, for any crash after step 4. A crash before step 4
//! leaves the previous checkpoint (or none) and a stray temporary file, removed at the next
//! open. Deleting the queue waits for a checkpoint in progress (`QueueLog::ckpt`), and asks it
//! to stop early.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::QueueLog;
use crate::checkpoint::{self, Covered, Entry, Header, Writer};
use crate::naming::LogFile;
use crate::{files, StoreError, SyncMode};

/// Live entries copied per hold of the state lock (about 100 KiB, tens of microseconds).
const CHUNK: usize = 4096;

/// What the log's last checkpoint on disk covers. Guarded by `QueueLog::ckpt`, which also
/// serialises checkpoints of one log.
#[derive(Debug, Default)]
pub(crate) struct CheckpointState {
    pub(crate) covered: BTreeMap<u64, Covered>,
}

/// What [`QueueLog::checkpoint`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckpointWritten {
    /// Live messages listed.
    pub entries: u64,
    /// Size of the file.
    pub bytes: u64,
}

impl QueueLog {
    /// Bytes of this log's files that its checkpoint does not cover: what a restart would
    /// read beyond the checkpoint (all of its files when it has none). Only touches memory.
    pub fn uncheckpointed_bytes(&self) -> u64 {
        let ck = self.ckpt.lock();
        let st = self.state.lock();
        st.segments
            .iter()
            .map(|(n, s)| {
                let c = ck.covered.get(n).copied().unwrap_or_default();
                s.len.saturating_sub(c.seg_len) + s.acks_len.saturating_sub(c.acks_len)
            })
            .sum()
    }

    /// Writes a checkpoint of this log's index now, so that a restart reads it instead of the
    /// whole log (see the crate documentation, **Checkpoints**). Blocks on the disk and for
    /// one flush epoch; call it from a blocking context, never from an
    /// [`on_synced`](crate::Store::on_synced) callback. `None` when there is nothing to write
    /// to: the log is volatile or deleted, or the store closed meanwhile.
    pub fn checkpoint(&self) -> Result<Option<CheckpointWritten>, StoreError> {
        self.write_checkpoint(true)
    }

    /// `wait_synced` false: only once the flusher has stopped after flushing everything.
    pub(crate) fn write_checkpoint(
        &self,
        wait_synced: bool,
    ) -> Result<Option<CheckpointWritten>, StoreError> {
        if self.volatile {
            return Ok(None);
        }
        let mut ck = self.ckpt.lock();
        let header = {
            let st = self.state.lock();
            if st.deleted {
                return Ok(None);
            }
            // What is still only buffered stays past the cover: when the flusher has stopped
            // (`wait_synced` false) nothing will write it, and a cover reaching past the
            // files would reject the checkpoint at the next open.
            let mut buffered: BTreeMap<u64, u64> = BTreeMap::new();
            for chunk in &st.pending {
                if let LogFile::Segment(n) = chunk.file {
                    *buffered.entry(n).or_default() += chunk.bytes.len() as u64;
                }
            }
            Header {
                active: st.active,
                segments: st
                    .segments
                    .iter()
                    .map(|(&n, s)| {
                        let c = Covered {
                            seg_len: s.len.saturating_sub(buffered.get(&n).copied().unwrap_or(0)),
                            acks_len: s.acks_len.saturating_sub(s.pending_acks.len() as u64),
                        };
                        (n, c)
                    })
                    .collect(),
            }
        };
        let tmp = self.dir.join(checkpoint::TMP_FILE);
        let written = match self.write_tmp(&tmp, &header, wait_synced) {
            Ok(Some(written)) => written,
            other => {
                // Nothing half done is left behind (the next open would remove it anyway).
                let _ = files::remove_if_exists(&tmp);
                return other;
            }
        };
        let path = self.dir.join(checkpoint::FILE);
        fs::rename(&tmp, &path).map_err(|e| StoreError::io(&path, e))?;
        if self.shared.sync == SyncMode::Always {
            files::sync_dir(&self.dir).map_err(|e| StoreError::io(&self.dir, e))?;
        }
        ck.covered = header.segments;
        Ok(Some(written))
    }

    /// Steps 2 and 3 of the module doc, and the temporary file's `fsync`.
    fn write_tmp(
        &self,
        tmp: &Path,
        header: &Header,
        wait_synced: bool,
    ) -> Result<Option<CheckpointWritten>, StoreError> {
        let io = |e| StoreError::io(tmp, e);
        let file = File::create(tmp).map_err(io)?;
        let mut writer =
            Writer::new(BufWriter::with_capacity(64 * 1024, file), header).map_err(io)?;
        let mut from = 0u64;
        let mut chunk = Vec::with_capacity(CHUNK);
        loop {
            if self.deleting.load(Ordering::Relaxed) {
                return Ok(None);
            }
            chunk.clear();
            {
                let st = self.state.lock();
                if st.deleted {
                    return Ok(None);
                }
                chunk.extend(st.live.tagged_from(from).take(CHUNK));
            }
            let Some(&(last, _, _, _)) = chunk.last() else {
                break;
            };
            for &(seq, location, delivered, tag) in &chunk {
                let inside = header
                    .segments
                    .get(&location.segment)
                    .is_some_and(|c| location.offset + u64::from(location.len) <= c.seg_len);
                if inside {
                    writer
                        .entry(&Entry {
                            seq,
                            segment: location.segment,
                            offset: location.offset,
                            len: location.len,
                            delivered,
                            tag,
                        })
                        .map_err(io)?;
                }
            }
            match last.checked_add(1) {
                Some(next) if chunk.len() == CHUNK => from = next,
                _ => break,
            }
        }
        let (out, entries) = writer.finish().map_err(io)?;
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        if wait_synced {
            match self.shared.wait_synced(self.shared.current_epoch()) {
                Ok(()) => {}
                Err(StoreError::Closed) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        if self.shared.sync == SyncMode::Always {
            file.sync_all().map_err(io)?;
        }
        let bytes = file.metadata().map_err(io)?.len();
        Ok(Some(CheckpointWritten { entries, bytes }))
    }
}
