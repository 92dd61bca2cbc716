//! Durability: group commit of a stream's appends.
//!
//! [`StreamLog::sync`] makes every chunk appended before it was called durable. The first caller
//! becomes the *leader*: it notes how many chunks have been appended, `fdatasync`s the active
//! segment and its index (and the directory if a file was created or removed), then commits
//! those chunks (readers may now see them) and wakes the others. A caller that arrives while a
//! sync runs waits for it; if its chunks came after what that sync covered, the next leader
//! covers them. So under load one `fdatasync` confirms every chunk appended while the previous
//! one was in flight, as the queue store's flusher does (`flusher.rs`).
//!
//! Chunks in segments rolled away are already synced: rolling syncs the old segment first.

use super::append::clone_failure;
use super::{Committed, StreamLog};
use crate::files::sync_dir;
use crate::{StoreError, SyncMode};

/// The group commit's state.
#[derive(Debug, Default)]
pub(crate) struct SyncState {
    /// How many appended chunks are durable.
    synced: u64,
    /// A leader is syncing.
    in_progress: bool,
}

impl StreamLog {
    /// Makes every chunk appended so far durable and visible to readers, and returns the id of
    /// the last committed chunk. Blocks on the disk: call it from a blocking thread. Concurrent
    /// callers share syncs (group commit).
    ///
    /// Errors: [`StoreError::Failed`] if a write or sync failed (then or before): do not confirm
    /// the chunks; the log accepts no more appends, and reopening it recovers what is on disk.
    pub fn sync(&self) -> Result<Option<u64>, StoreError> {
        let target = {
            let inner = self.inner.lock();
            if let Some(e) = &inner.failed {
                return Err(clone_failure(e));
            }
            if self.config().sync == SyncMode::Never {
                return Ok(inner.committed.chunk_id);
            }
            inner.appended
        };
        let mut st = self.syncer.lock();
        loop {
            if st.synced >= target {
                drop(st);
                return Ok(self.committed_chunk_id());
            }
            if !st.in_progress {
                break;
            }
            self.synced.wait(&mut st);
        }
        st.in_progress = true;
        drop(st);

        let outcome = self.sync_round();
        let mut st = self.syncer.lock();
        st.in_progress = false;
        if let Ok(covered) = outcome {
            st.synced = st.synced.max(covered);
        }
        self.synced.notify_all();
        drop(st);
        outcome.map(|_| self.committed_chunk_id())
    }

    /// One leader's sync. Returns how many appended chunks it made durable.
    fn sync_round(&self) -> Result<u64, StoreError> {
        let (covered, committed, files, dir_dirty) = {
            let mut inner = self.inner.lock();
            if let Some(e) = &inner.failed {
                return Err(clone_failure(e));
            }
            let files = inner.segments.back().map(|s| {
                (
                    (std::sync::Arc::clone(&s.seg), s.seg_path.to_path_buf()),
                    (std::sync::Arc::clone(&s.idx), s.idx_path.clone()),
                )
            });
            let committed = Committed {
                chunk_id: inner
                    .segments
                    .back()
                    .and_then(|s| s.last)
                    .map(|r| r.chunk_id),
                next_offset: inner.next_offset,
            };
            let dir_dirty = std::mem::take(&mut inner.dir_dirty);
            (inner.appended, committed, files, dir_dirty)
        };
        let mut result = Ok(());
        if let Some(((seg, seg_path), (idx, idx_path))) = files {
            result = seg
                .sync_data()
                .map_err(|e| (seg_path, e))
                .and_then(|()| idx.sync_data().map_err(|e| (idx_path, e)));
        }
        if dir_dirty && result.is_ok() {
            result = sync_dir(self.dir()).map_err(|e| (self.dir().to_path_buf(), e));
        }
        let mut inner = self.inner.lock();
        match result {
            Ok(()) => {
                if committed.next_offset > inner.committed.next_offset {
                    // The active segment's last chunk may be a snapshot with no chunk after it
                    // yet; then the last committed chunk id is still right.
                    inner.committed = Committed {
                        chunk_id: committed.chunk_id.or(inner.committed.chunk_id),
                        next_offset: committed.next_offset,
                    };
                }
                Ok(covered)
            }
            Err((path, e)) => {
                inner.dir_dirty = inner.dir_dirty || dir_dirty;
                Err(super::append::fail(&mut inner, path, e))
            }
        }
    }
}
