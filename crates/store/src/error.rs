//! The one error type of this crate. Each variant says what happened and what the caller should
//! do about it.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::Location;

/// Everything that can go wrong in the store.
///
/// Damaged data found while *recovering* a queue log is not an error: the damaged tail is cut
/// off, reported in [`RecoveryStats::truncations`](crate::RecoveryStats) and logged. Errors are
/// for what the store cannot repair on its own.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O operation on `path` failed; the operation did not take effect. The disk may be
    /// full, read-only or failing: report it, and retry only once the cause is fixed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory the operation was about.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },

    /// The metadata database (redb) failed. Nothing of the failed call was committed.
    #[error("metadata store: {0}")]
    Meta(#[source] Box<redb::Error>),

    /// Another [`Store`](crate::Store), in this process or another, has this data directory
    /// open. Close it first or use another directory.
    #[error("the data directory {path} is already open by another store")]
    AlreadyOpen {
        /// The data directory.
        path: PathBuf,
    },

    /// Data on disk is damaged in a way the store cannot repair by cutting off a log's tail (for
    /// example a queue directory whose `id` file is unreadable), or a record read back by
    /// [`QueueLog::read`](crate::QueueLog::read) failed its checksum. The data is lost: an
    /// operator must restore or remove `path`; a caller of `read` should drop that message.
    #[error("corrupt data in {path} at offset {offset}: {reason}")]
    Corrupt {
        /// The damaged file or directory.
        path: PathBuf,
        /// Where in the file the damage was found.
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    /// The flusher failed to write or `fdatasync` a log. Since a failed `fsync` may have dropped
    /// dirty pages, nothing appended after the last completed epoch can be trusted to be on disk
    /// and the store accepts no more appends. Do not confirm those messages (nack them); restart
    /// the store to recover what is on disk.
    #[error("the store failed writing {path} and accepts no more writes: {source}")]
    Failed {
        /// The file whose write or sync failed.
        path: PathBuf,
        /// The original error, shared by every caller that is told about it.
        source: Arc<io::Error>,
    },

    /// The [`Store`](crate::Store) was closed or dropped; this handle can no longer write.
    #[error("the store is closed")]
    Closed,

    /// The queue log was deleted with
    /// [`Store::delete_queue_log`](crate::Store::delete_queue_log); this handle can no longer
    /// write. Open the queue again with [`Store::queue_log`](crate::Store::queue_log) if it is
    /// being re-created.
    #[error("queue log {queue_id:?} was deleted")]
    QueueDeleted {
        /// The queue id.
        queue_id: String,
    },

    /// A message body is too large to frame (records hold at most
    /// [`MAX_DATA_LEN`](crate::MAX_DATA_LEN) bytes). The broker's own message-size limit should
    /// have refused it earlier.
    #[error("message of {len} bytes is larger than a log record can hold")]
    TooLarge {
        /// The size that was refused.
        len: usize,
    },

    /// A stream append or tracking write was refused before anything was written: a chunk
    /// without entries or with more than 65535 of them, or a consumer reference or publisher name
    /// longer than 255 bytes. A caller bug or a client's invalid request: refuse it.
    #[error("invalid stream chunk: {reason}")]
    InvalidChunk {
        /// What is wrong.
        reason: String,
    },

    /// `location` does not name a live record of this log: its segment was deleted because every
    /// message in it was acknowledged, or it came from another log. A caller bug: a message
    /// must not be read after it was acknowledged.
    #[error("no record at {location:?}")]
    NoSuchRecord {
        /// The location that was asked for.
        location: Location,
    },
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        StoreError::Meta(Box::new(e))
    }
}

impl StoreError {
    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}
