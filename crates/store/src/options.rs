//! How a [`Store`](crate::Store) is opened.

use std::time::Duration;

/// Options for [`Store::open`](crate::Store::open). Start from [`StoreOptions::default`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// A queue log starts a new segment file when appending a record would take the current one
    /// past this many bytes (a single larger record gets a segment of its own). Smaller segments
    /// free disk space sooner; larger ones mean fewer files. Default 64 MiB; at most 4 GiB
    /// (larger values are taken as 4 GiB).
    pub segment_size: u64,
    /// Whether the flusher waits for the disk. Default [`SyncMode::Always`].
    pub sync: SyncMode,
    /// Acknowledgement and delivered events are durable lazily: they ride along with the next
    /// flush of message records, and when nothing else causes a flush they wait at most this long
    /// in memory. A crash loses at most this much of them, which makes a few acknowledged
    /// messages come back (at-least-once), never a message go missing. Default 200 ms.
    pub ack_flush_delay: Duration,
    /// How often a background thread looks for queue logs worth checkpointing (see the crate
    /// documentation, **Checkpoints**); `None`: only [`Store::checkpoint`](crate::Store::checkpoint)
    /// and closing the store write checkpoints. Default 10 s: looking costs a lock per open log,
    /// and a log is checkpointed at most once per interval.
    pub checkpoint_interval: Option<Duration>,
    /// A log is checkpointed by that thread once this many bytes of its files are not covered
    /// by its checkpoint (and at least two per live message, about what the checkpoint
    /// costs to write). A crash then makes a restart read at most about this much of each log
    /// beyond its checkpoint, plus what was written in the last interval. Default 64 MiB.
    pub checkpoint_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            segment_size: 64 * 1024 * 1024,
            sync: SyncMode::Always,
            ack_flush_delay: Duration::from_millis(200),
            checkpoint_interval: Some(Duration::from_secs(10)),
            checkpoint_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The durability level of the message logs.
///
/// Metadata writes ([`Store::meta_put`](crate::Store::meta_put) and friends) are always durable
/// when they return, whatever this says: they are rare, and losing a queue's declaration is worse
/// than losing a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// Each flush writes its batch and `fdatasync`s every file it touched (and the directory
    /// when it created or deleted a file) before it completes its epoch. A record whose epoch
    /// has completed survives a crash of the process and of the machine.
    Always,
    /// Each flush writes its batch to the operating system and completes its epoch without
    /// waiting for the disk. A completed epoch survives a crash of the process but not of the
    /// machine. For tests and benchmarks only.
    Never,
}
