//! Retention: dropping whole segments, oldest first, never the last one. As osiris'
//! `evaluate_retention` (`src/osiris_log.erl`):
//!
//! - **max length bytes** (`x-max-length-bytes`): keep the newest segments while their sizes add
//!   up to at most the limit (the last segment always, whatever its size); drop the rest.
//! - **max age** (`x-max-age`): drop segments, oldest first, whose last chunk's timestamp is
//!   older than now minus the age, stopping at the first one that is not (and at the last).
//!
//! A reader in a dropped segment keeps its open file and finishes the chunk it is on; its next
//! read moves on to the first segment still there. Files are removed segment first, then index:
//! recovery removes an index left without its segment.

use std::path::Path;
use std::sync::Arc;

use tracing::{debug, warn};

use super::{Inner, StreamConfig, StreamLog};

/// The part of a [`StreamConfig`] that can change while the stream is open: RabbitMQ applies
/// a policy's `max-length-bytes`, `max-age` and `stream-max-segment-size-bytes` to a running
/// stream (rabbit_stream_queue `policy_changed` -> osiris `update_retention`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamRetention {
    /// [`StreamConfig::max_segment_size_bytes`]: applies from the next chunk (a smaller size
    /// rolls the active segment at the next append).
    pub max_segment_size_bytes: u64,
    /// [`StreamConfig::max_length_bytes`].
    pub max_length_bytes: Option<u64>,
    /// [`StreamConfig::max_age`].
    pub max_age: Option<std::time::Duration>,
}

impl StreamRetention {
    /// The retention `config` asks for.
    pub fn of(config: &StreamConfig) -> StreamRetention {
        StreamRetention {
            max_segment_size_bytes: config.max_segment_size_bytes,
            max_length_bytes: config.max_length_bytes,
            max_age: config.max_age,
        }
    }
}

/// What [`StreamLog::apply_retention`] dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionOutcome {
    /// Segments dropped.
    pub segments: usize,
    /// Their bytes.
    pub bytes: u64,
    /// The first offset of the stream afterwards.
    pub first_offset: u64,
}

impl StreamLog {
    /// The segment size and retention in force.
    pub fn retention(&self) -> StreamRetention {
        self.inner.lock().retention
    }

    /// Changes the segment size and retention (a policy changed), then applies the new
    /// retention at once as of `now_ms`, as osiris does on `update_retention`. Returns what it
    /// dropped.
    pub fn set_retention(&self, retention: StreamRetention, now_ms: i64) -> RetentionOutcome {
        self.inner.lock().retention = retention;
        self.apply_retention(now_ms)
    }

    /// Applies the retention in force ([`StreamConfig::max_length_bytes`],
    /// [`StreamConfig::max_age`], or what [`StreamLog::set_retention`] set) as of `now_ms` (milliseconds since the Unix epoch). Runs on
    /// every segment roll by itself; a server also calls it periodically, so that age limits
    /// apply to a stream nobody writes to.
    ///
    /// [`StreamConfig::max_length_bytes`]: super::StreamConfig::max_length_bytes
    /// [`StreamConfig::max_age`]: super::StreamConfig::max_age
    pub fn apply_retention(&self, now_ms: i64) -> RetentionOutcome {
        let mut inner = self.inner.lock();
        let before: (usize, u64) = (
            inner.segments.len(),
            inner.segments.iter().map(|s| s.len).sum(),
        );
        let files = self.retain(&mut inner, now_ms);
        let outcome = RetentionOutcome {
            segments: before.0 - inner.segments.len(),
            bytes: before.1 - inner.segments.iter().map(|s| s.len).sum::<u64>(),
            first_offset: inner
                .segments
                .iter()
                .find_map(|s| s.first)
                .map_or(inner.next_offset, |r| r.chunk_id),
        };
        drop(inner);
        remove_files(&files);
        outcome
    }

    /// Deletes the stream: refuses appends and syncs from now on ([`StoreError::Closed`]),
    /// ends every reader (they return `None`; a chunk range already handed out stays readable
    /// until dropped), and removes the directory.
    ///
    /// [`StoreError::Closed`]: crate::StoreError::Closed
    pub fn delete(&self) -> Result<(), crate::StoreError> {
        let mut inner = self.inner.lock();
        inner.failed = Some(crate::StoreError::Closed);
        inner.segments.clear();
        inner.committed = super::Committed::default();
        drop(inner);
        match std::fs::remove_dir_all(self.dir()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(crate::StoreError::io(self.dir(), e))
            }
            _ => Ok(()),
        }
    }

    /// Drops the segments retention rules out from `inner`; returns their files, to remove once
    /// the lock is released.
    pub(crate) fn retain(&self, inner: &mut Inner, now_ms: i64) -> Vec<Arc<Path>> {
        let n = inner.segments.len();
        let mut drop_count = 0;
        if let Some(max) = inner.retention.max_length_bytes {
            let mut total = 0u64;
            let mut keep = 0;
            for (i, s) in inner.segments.iter().enumerate().rev() {
                total = total.saturating_add(s.len);
                if i + 1 < n && total > max {
                    break;
                }
                keep += 1;
            }
            drop_count = n - keep;
        }
        if let Some(age) = inner.retention.max_age {
            let cutoff = now_ms.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
            while drop_count + 1 < n
                && inner.segments[drop_count]
                    .last
                    .is_none_or(|l| l.timestamp < cutoff)
            {
                drop_count += 1;
            }
        }
        let mut files = Vec::new();
        for s in inner.segments.drain(..drop_count) {
            debug!(segment = %s.seg_path.display(), "stream retention drops a segment");
            files.push(Arc::clone(&s.seg_path));
            files.push(Arc::from(s.idx_path.as_path()));
        }
        if !files.is_empty() {
            inner.dir_dirty = true;
        }
        files
    }
}

/// Removes dropped segments' files (segment, then index).
pub(crate) fn remove_files(files: &[Arc<Path>]) {
    for f in files {
        if let Err(e) = crate::files::remove_if_exists(f) {
            // Harmless: recovery removes what is left.
            warn!(file = %f.display(), error = %e, "could not remove a stream segment file");
        }
    }
}
