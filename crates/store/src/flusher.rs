//! Group commit: one flusher thread writes and syncs every dirty queue log, a batch at a time.
//!
//! Appends only copy the record into the log's memory buffer and, if the log was clean, put the
//! log on the dirty list and wake the flusher. A flush round then
//!
//! 1. takes the whole dirty list and numbers the round with the next *epoch*,
//! 2. swaps out each log's buffers ([`QueueLog::take_batch`]),
//! 3. writes them to their files, then `fdatasync`s every file it touched (several at once),
//! 4. deletes segments whose every message is acknowledged,
//! 5. publishes the epoch as synced and runs the callbacks waiting for it.
//!
//! The flusher starts a round as soon as a message is waiting, without a timer: while it waits
//! for one `fdatasync`, every publisher keeps appending to the next batch, so the slower the
//! disk the larger the batches, and an idle store answers a lone publisher after one sync rather
//! than after a timer tick. Acknowledgements alone do not start a round at once; they wait at
//! most [`StoreOptions::ack_flush_delay`](crate::StoreOptions) for one.
//!
//! **Epochs.** [`Shared::current_epoch`] is the number the next round to take the dirty list
//! will get. A record appended before reading it is in that round or an earlier one: the round
//! takes the list and bumps the number under one lock, and a log's buffer is swapped under the
//! log's lock, so an append either lands in a buffer a round has not swapped yet (and whose log
//! is on a list no later than that round's), or re-queues its log on the list after the round
//! took it, in which case the number read afterwards is already the next one.

use std::collections::BTreeMap;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tracing::error;

use crate::log::{QueueLog, ToSync};
use crate::{StoreError, StoreOptions, SyncMode};

/// Called once the epoch it waits for is durable, or with the error that means it never will be.
pub type SyncCallback = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// State shared by the [`Store`](crate::Store), its queue logs and the flusher thread.
pub(crate) struct Shared {
    pub(crate) sync: SyncMode,
    ack_flush_delay: Duration,
    state: Mutex<FlushState>,
    /// The flusher waits here for work.
    work: Condvar,
    /// [`Shared::wait_synced`] waits here for rounds to complete.
    done: Condvar,
    /// Mirrors of the epoch counters in `state`, written under its lock, read without it.
    next_epoch: AtomicU64,
    synced_epoch: AtomicU64,
    /// Set once the store failed or closed: appends are refused from then on.
    stopped: AtomicBool,
    pub(crate) counters: Counters,
    /// Streams synced by every round (`streams.rs`).
    pub(crate) stream_hooks: crate::streams::Hooks,
}

struct FlushState {
    /// Logs with buffered records, each at most once (see `QueueLog::mark_dirty`).
    dirty: Vec<Arc<QueueLog>>,
    /// A message is waiting: flush now.
    urgent: bool,
    /// Since when events alone have been waiting.
    lazy_since: Option<Instant>,
    /// Someone waits for this epoch; flush even if nothing is dirty.
    wanted: u64,
    callbacks: BTreeMap<u64, Vec<SyncCallback>>,
    failure: Option<Failure>,
    shutdown: bool,
    closed: bool,
}

/// The I/O error that failed the store.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub(crate) path: PathBuf,
    pub(crate) source: Arc<io::Error>,
}

impl Failure {
    pub(crate) fn new(path: PathBuf, source: io::Error) -> Self {
        Failure {
            path,
            source: Arc::new(source),
        }
    }

    fn to_error(&self) -> StoreError {
        StoreError::Failed {
            path: self.path.clone(),
            source: Arc::clone(&self.source),
        }
    }
}

/// Counters for metrics and tests.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) rounds: AtomicU64,
    pub(crate) fsyncs: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) segments_deleted: AtomicU64,
    /// How long each `fdatasync`/`fsync` took.
    pub(crate) fsync_latency: crate::latency::Histogram,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl Shared {
    pub(crate) fn new(opts: &StoreOptions) -> Self {
        Shared {
            sync: opts.sync,
            ack_flush_delay: opts.ack_flush_delay,
            state: Mutex::new(FlushState {
                dirty: Vec::new(),
                urgent: false,
                lazy_since: None,
                wanted: 0,
                callbacks: BTreeMap::new(),
                failure: None,
                shutdown: false,
                closed: false,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            next_epoch: AtomicU64::new(1),
            synced_epoch: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            stream_hooks: parking_lot::Mutex::new(Vec::new()),
            counters: Counters::default(),
        }
    }

    pub(crate) fn current_epoch(&self) -> u64 {
        self.next_epoch.load(Ordering::SeqCst)
    }

    pub(crate) fn synced_epoch(&self) -> u64 {
        self.synced_epoch.load(Ordering::SeqCst)
    }

    /// Refuses writes once the store failed or closed.
    pub(crate) fn check_writable(&self) -> Result<(), StoreError> {
        if !self.stopped.load(Ordering::SeqCst) {
            return Ok(());
        }
        Err(self.stop_error(&self.state.lock()))
    }

    fn stop_error(&self, st: &FlushState) -> StoreError {
        match &st.failure {
            Some(f) => f.to_error(),
            None => StoreError::Closed,
        }
    }

    /// Puts `log` on the dirty list (when `log` is given: it was clean) and wakes the flusher
    /// now (`urgent`) or within the ack delay.
    pub(crate) fn mark_dirty(&self, log: Option<Arc<QueueLog>>, urgent: bool) {
        let mut st = self.state.lock();
        if st.closed {
            return;
        }
        if let Some(log) = log {
            st.dirty.push(log);
        }
        if urgent {
            if !st.urgent {
                st.urgent = true;
                self.work.notify_one();
            }
        } else if st.lazy_since.is_none() {
            st.lazy_since = Some(Instant::now());
            self.work.notify_one();
        }
    }

    /// Makes sure a round will complete `epoch` even if nothing is dirty.
    fn want(&self, st: &mut FlushState, epoch: u64) {
        // An epoch beyond the next one can only be reached by rounds that have data; asking
        // for more would spin empty rounds.
        let epoch = epoch.min(self.current_epoch());
        if epoch > st.wanted {
            st.wanted = epoch;
            self.work.notify_one();
        }
    }

    pub(crate) fn wait_synced(&self, epoch: u64) -> Result<(), StoreError> {
        let mut st = self.state.lock();
        loop {
            if self.synced_epoch() >= epoch {
                return Ok(());
            }
            if st.failure.is_some() || st.closed {
                return Err(self.stop_error(&st));
            }
            self.want(&mut st, epoch);
            self.done.wait(&mut st);
        }
    }

    pub(crate) fn on_synced(&self, epoch: u64, callback: SyncCallback) {
        let mut st = self.state.lock();
        let outcome = if self.synced_epoch() >= epoch {
            Ok(())
        } else if st.failure.is_some() || st.closed {
            Err(self.stop_error(&st))
        } else {
            st.callbacks.entry(epoch).or_default().push(callback);
            self.want(&mut st, epoch);
            return;
        };
        drop(st);
        run_callback(callback, outcome);
    }

    /// Asks the flusher to finish: it flushes what is dirty, then exits.
    pub(crate) fn shutdown(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let mut st = self.state.lock();
        st.shutdown = true;
        self.work.notify_one();
    }

    pub(crate) fn failure(&self) -> Option<StoreError> {
        self.state.lock().failure.as_ref().map(Failure::to_error)
    }
}

/// The flusher thread's body.
pub(crate) fn run(shared: Arc<Shared>) {
    loop {
        let mut st = shared.state.lock();
        while !(st.shutdown || st.urgent || st.wanted >= shared.current_epoch()) {
            match st.lazy_since {
                Some(since) => {
                    let deadline = since + shared.ack_flush_delay;
                    if Instant::now() >= deadline {
                        break;
                    }
                    shared.work.wait_until(&mut st, deadline);
                }
                None => shared.work.wait(&mut st),
            }
        }
        let epoch = shared.current_epoch();
        shared.next_epoch.store(epoch + 1, Ordering::SeqCst);
        let logs = std::mem::take(&mut st.dirty);
        st.urgent = false;
        st.lazy_since = None;
        let failed = st.failure.is_some();
        // Only a round that started after shutdown was asked for is the last one: every
        // append accepted before then, and every epoch handed out, is in it or an earlier one.
        let last_round = st.shutdown;
        drop(st);

        let outcome = if failed {
            discard(&logs);
            Ok(())
        } else {
            flush_round(&shared, &logs).and_then(|()| {
                crate::streams::run_hooks(&shared.stream_hooks).map_err(|e| Failure {
                    path: PathBuf::from("streams"),
                    source: Arc::new(io::Error::other(e.to_string())),
                })
            })
        };
        drop(logs);
        Counters::add(&shared.counters.rounds, 1);

        let mut st = shared.state.lock();
        if let Err(failure) = outcome {
            error!(
                file = %failure.path.display(),
                error = %failure.source,
                "the store failed to write a queue log; it accepts no more writes",
            );
            st.failure = Some(failure);
            shared.stopped.store(true, Ordering::SeqCst);
        }
        let (ready, result) = match &st.failure {
            None => {
                shared.synced_epoch.store(epoch, Ordering::SeqCst);
                let later = st.callbacks.split_off(&(epoch + 1));
                (std::mem::replace(&mut st.callbacks, later), Ok(()))
            }
            Some(f) => {
                let f = f.clone();
                (std::mem::take(&mut st.callbacks), Err(f))
            }
        };
        let exit = last_round && st.dirty.is_empty();
        let leftover = if exit {
            st.closed = true;
            std::mem::take(&mut st.callbacks)
        } else {
            BTreeMap::new()
        };
        shared.done.notify_all();
        drop(st);

        for callback in ready.into_values().flatten() {
            run_callback(callback, result.clone().map_err(|f| f.to_error()));
        }
        for callback in leftover.into_values().flatten() {
            run_callback(callback, Err(StoreError::Closed));
        }
        if exit {
            return;
        }
    }
}

/// One round's I/O for the given logs. Holding every log's I/O lock for the round keeps
/// [`Store::delete_queue_log`](crate::Store::delete_queue_log) from renaming a directory the
/// round is writing into.
fn flush_round(shared: &Shared, logs: &[Arc<QueueLog>]) -> Result<(), Failure> {
    let _io: Vec<_> = logs.iter().map(|log| log.io.lock()).collect();
    let batches: Vec<_> = logs.iter().map(|log| log.take_batch()).collect();
    let mut written = Vec::new();
    for (log, batch) in logs.iter().zip(&batches) {
        log.write_batch(batch, shared, &mut written)?;
    }
    if shared.sync == SyncMode::Always {
        sync_all(shared, &written)?;
    }
    for (log, batch) in logs.iter().zip(batches) {
        log.finish_batch(batch, shared);
    }
    Ok(())
}

/// How many `fdatasync`s a round has in flight at once.
const PARALLEL_SYNCS: usize = 8;

/// Syncs everything a round wrote, several files at a time. A sync waits for the disk, not the
/// CPU, and file systems such as ext4 fold concurrent syncs into one journal commit, so a round
/// that touched many queues costs little more than one sync instead of one per file, one after
/// the other.
fn sync_all(shared: &Shared, to_sync: &[ToSync]) -> Result<(), Failure> {
    if to_sync.len() <= 1 {
        return to_sync.iter().try_for_each(|f| f.sync(shared));
    }
    let per_thread = to_sync.len().div_ceil(PARALLEL_SYNCS);
    let mut chunks = to_sync.chunks(per_thread);
    let first = chunks.next().unwrap_or_default();
    std::thread::scope(|scope| {
        let helpers: Vec<_> = chunks
            .map(|chunk| {
                let work = move || chunk.iter().try_for_each(|f| f.sync(shared));
                // If no thread can be had, sync on this one.
                std::thread::Builder::new()
                    .name("pigeon-store-sync".into())
                    .spawn_scoped(scope, work)
                    .map_err(|_| chunk)
            })
            .collect();
        let mut result = first.iter().try_for_each(|f| f.sync(shared));
        for helper in helpers {
            let outcome = match helper {
                Ok(handle) => handle.join().unwrap_or_else(|_| {
                    Err(Failure::new(
                        std::path::PathBuf::new(),
                        io::Error::other("a sync thread panicked"),
                    ))
                }),
                Err(chunk) => chunk.iter().try_for_each(|f| f.sync(shared)),
            };
            result = result.and(outcome);
        }
        result
    })
}

/// After a failure: drop what is buffered, so memory does not grow while the store is dead.
fn discard(logs: &[Arc<QueueLog>]) {
    for log in logs {
        let batch = log.take_batch();
        log.forget_batch(batch);
    }
}

/// Callbacks are the caller's code: a panicking one must not take the flusher down with it.
fn run_callback(callback: SyncCallback, outcome: Result<(), StoreError>) {
    if catch_unwind(AssertUnwindSafe(move || callback(outcome))).is_err() {
        error!("an on_synced callback panicked");
    }
}
