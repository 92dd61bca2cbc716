//! Pigeon's durability layer: per-queue message logs with group commit, and a metadata store.
//!
//! The store knows nothing of brokers, messages or protocols. It keeps opaque bytes: the broker
//! encodes its own records (message properties and body, a queue's declaration) and decides
//! what a seq means.
//!
//! # Layout on disk
//!
//! ```text
//! <dir>/meta.redb                              metadata: named tables of key -> value (redb)
//! <dir>/queues/<hash>-<prefix>/id              the queue id, exactly
//! <dir>/queues/<hash>-<prefix>/00000000000000000000.seg    message records
//! <dir>/queues/<hash>-<prefix>/00000000000000000000.acks   events about that segment's messages
//! <dir>/queues/<hash>-<prefix>/checkpoint      the live index as of a log position (optional)
//! ```
//!
//! A queue id can be any string; the directory name is derived from it and the `id` file says
//! which queue a directory belongs to (see `naming.rs`). Directories are created under a hidden
//! name and renamed into place, and deleted by renaming them away first, so a crash never leaves
//! half a queue.
//!
//! # Records
//!
//! Both kinds of log file are a sequence of frames, all integers little endian:
//!
//! ```text
//! [len: u32][crc: u32][seq: u64][kind: u8][body]    len = 9 + body length, crc = CRC-32 of
//!                                                    everything after the crc field
//! kind 1  Message    body = the caller's bytes                 (.seg files)
//! kind 2  Ack        body = offset of the message record: u64  (.acks files)
//! kind 3  Delivered  body = offset of the message record: u64  (.acks files)
//! kind 4  TaggedMessage  body = tag: u8, then the caller's bytes  (.seg files)
//! ```
//!
//! A tag ([`QueueLog::append_tagged`]) is one byte of the caller's kept in the live index
//! beside the message's location and in checkpoints, so that it is known after a restart
//! without reading the record (a priority queue's level).
//!
//! A segment file grows until appending would take it past
//! [`StoreOptions::segment_size`]; then appends go to the next segment. Each segment has its
//! own acks file, holding the events about its messages only, and the two are deleted together
//! once every message of the segment is acknowledged (`log/flush.rs` explains why that is
//! safe). Acks therefore never outlive their segment and need no compaction.
//!
//! # Durability levels
//!
//! - **Metadata** ([`Store::meta_put`], [`Store::meta_batch`], ...): each call is a redb write
//!   transaction, fsynced before it returns.
//! - **Message records** ([`QueueLog::append`]): buffered in memory; durable once the flush epoch
//!   read with [`Store::current_epoch`] after appending is synced ([`Store::on_synced`],
//!   [`Store::wait_synced`]). Confirm a message to its publisher only then. With
//!   [`SyncMode::Never`] "synced" means handed to the operating system.
//! - **Acks and delivered flags** ([`QueueLog::ack`], [`QueueLog::delivered`]): lazily durable,
//!   written with the next flush and at most [`StoreOptions::ack_flush_delay`] later. A crash may
//!   lose the latest of them: acknowledged messages come back and are delivered again
//!   (at-least-once), and a message may come back without its redelivered flag.
//!
//! # Group commit
//!
//! One flusher thread serves every queue log: it writes all dirty buffers, `fdatasync`s each
//! touched file once (several at a time, on short-lived helper threads, so a round that touched
//! many queues waits about as long as for one), then completes an epoch and runs the callbacks
//! waiting for it. It starts a round as soon as a message is buffered, without a timer: appends
//! made while it waits for the disk form the next batch, so the slower the disk, the more
//! appends share one sync (`flusher.rs`). Callbacks are plain closures run on that thread, so async code can wait for
//! durability through a channel without this crate depending on an async runtime.
//!
//! # Recovery
//!
//! [`Store::open`] lists the queue directories; [`Store::queue_log`] reads one log's files the
//! first time it is opened and [`QueueLog::recover`] returns its live messages in seq order
//! ([`QueueLog::live_from`] a page of them, for a caller that keeps only part of a long queue in
//! memory). A torn or corrupt record cuts the file at that record (logged as a warning and
//! listed in [`RecoveryStats::truncations`]): damaged data is never an error and never a panic;
//! only I/O errors are.
//!
//! # Checkpoints
//!
//! Reading a whole log costs a restart time in proportion to what the queue holds (10 GiB for
//! 10 million 1 KiB messages). A log's *checkpoint* is its live index (seq, location, delivered
//! flag and tag of each live message, about a byte each for a queue appended in order) with, for each
//! segment, how much of its `.seg` and `.acks` files the index reflects (`checkpoint.rs` has
//! the format). Opening a log with a checkpoint loads it and reads only the files past those
//! lengths, cutting torn tails there as above; a checkpoint that is damaged, of another format
//! version, or claims more than the files hold is deleted and the whole log is read.
//! Checkpoints are written by a background thread for logs that have grown
//! [`StoreOptions::checkpoint_bytes`] past theirs (every [`StoreOptions::checkpoint_interval`]),
//! by [`Store::checkpoint`] and when the store closes; always to a temporary file, synced,
//! renamed into place and the directory synced, and only once every event the index reflects
//! is on disk, so that whatever a crash interrupts, the log and its checkpoint recover what the
//! log alone would (`log/checkpoint.rs` explains why).
//!
//! # Streams
//!
//! [`StreamLog`] (module [`stream`]) is a different kind of log: an append-only, replayable
//! stream (RabbitMQ streams) of chunks in osiris' format, in a directory of its own chosen by
//! the caller, with its own group commit ([`StreamLog::sync`]) and no flusher thread. Its
//! module documentation describes the files.
//!
//! # Threads and locks
//!
//! Every call may block on the disk except [`QueueLog::append`], [`QueueLog::ack`],
//! [`QueueLog::delivered`], [`QueueLog::live_from`], [`QueueLog::ack_range`],
//! [`QueueLog::live_summary`], [`Store::current_epoch`], [`Store::synced_epoch`] and
//! [`Store::on_synced`], which only take locks (the last three of `QueueLog` walk part of the
//! index under them). Lock order: the store's queue map, a log's I/O lock, a log's state, the
//! flusher's state. Unix only (positional reads and writes).

#![deny(unsafe_code, clippy::unwrap_used, missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod checkpoint;
mod checkpointer;
pub mod chunked;
mod error;
mod files;
mod flusher;
mod latency;
mod log;
mod meta;
mod naming;
mod options;
mod record;
mod scan;
mod store;
pub mod stream;
mod streams;

pub use chunked::Chunked;
pub use error::StoreError;
pub use flusher::SyncCallback;
pub use latency::{LatencyHistogram, LATENCY_BUCKETS_US};
pub use log::{
    CheckpointOutcome, CheckpointWritten, LiveSummary, Location, QueueLog, RecoveredMessage,
    Recovery, RecoveryStats,
};
pub use meta::{MetaEntry, MetaOp, OwnedMetaOp};
pub use options::{StoreOptions, SyncMode};
pub use record::MAX_DATA_LEN;
pub use scan::{Truncation, TruncationReason};
pub use store::{Store, StoreStats};
pub use stream::{OffsetSpec, StreamConfig, StreamLog, StreamRetention};
pub use streams::StreamSyncHook;
