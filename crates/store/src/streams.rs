//! Streams kept by a [`Store`]: where their directories live, and their group commit with the
//! queue logs' flusher.
//!
//! A stream queue (AMQP 0-9-1 `x-queue-type: stream`) is a [`StreamLog`] in
//! `<store>/streams/<name>`, `<name>` derived from the queue's id as a queue log's directory
//! name is (`naming.rs`). Its appends are made durable by the store's flusher thread: every
//! round calls the registered [`StreamSyncHook`]s after writing the queue logs and before it
//! publishes its epoch as synced. So a publisher confirm waits for the store's epoch whatever
//! mix of queues and streams the message reached, and one round confirms them all.

use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use crate::stream::{StreamConfig, StreamLog};
use crate::{naming, Store, StoreError};

/// Called by the flusher once per round, before the round's epoch is published as synced:
/// make durable what was appended (usually [`StreamLog::sync`]) and wake readers. An error
/// fails the store, as a queue log's failed write does: nothing more is confirmed.
pub trait StreamSyncHook: Send + Sync {
    /// Syncs the stream. Runs on the flusher thread: never wait for the store here.
    fn sync_round(&self) -> Result<(), StoreError>;
}

/// The registered hooks (weak: a deleted stream's hook goes away with it).
pub(crate) type Hooks = parking_lot::Mutex<Vec<Weak<dyn StreamSyncHook>>>;

/// Runs every live hook; drops dead ones. Returns the first error.
pub(crate) fn run_hooks(hooks: &Hooks) -> Result<(), StoreError> {
    let live: Vec<Arc<dyn StreamSyncHook>> = {
        let mut h = hooks.lock();
        h.retain(|w| w.strong_count() > 0);
        h.iter().filter_map(Weak::upgrade).collect()
    };
    let mut result = Ok(());
    for hook in live {
        if let Err(e) = hook.sync_round() {
            if result.is_ok() {
                result = Err(e);
            }
        }
    }
    result
}

impl Store {
    fn stream_dir(&self, id: &str) -> PathBuf {
        self.dir()
            .join("streams")
            .join(naming::queue_dir_name(id, 0))
    }

    /// Opens (creating it if needed) the stream with `id` (unique per vhost and queue), with
    /// the store's sync mode.
    pub fn open_stream(
        &self,
        id: &str,
        mut config: StreamConfig,
    ) -> Result<Arc<StreamLog>, StoreError> {
        let dir = self.stream_dir(id);
        fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        config.sync = self.shared.sync;
        StreamLog::open(dir, config)
    }

    /// Registers `hook` with the flusher (see [`StreamSyncHook`]).
    pub fn register_stream_hook(&self, hook: Weak<dyn StreamSyncHook>) {
        self.shared.stream_hooks.lock().push(hook);
    }

    /// Asks the flusher for a round within its ack delay (`ack_flush_delay`, 200 ms), so that
    /// a stream's appends get committed (and seen by its readers) even when no publisher waits
    /// for a confirm. Not at once: waking the flusher on every append made it run a round (an
    /// fdatasync) per message, 4x slower than a classic queue; a publisher that waits for a
    /// confirm asks for its epoch anyway, which starts a round at once.
    pub fn stream_appended(&self) {
        self.shared.mark_dirty(None, false);
    }

    /// Deletes the files of the stream with `id` (the stream must be closed by its users).
    pub fn delete_stream(&self, id: &str) -> Result<(), StoreError> {
        let dir = self.stream_dir(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(&dir, e)),
        }
    }
}
