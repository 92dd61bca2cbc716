//! The [`Store`]: one data directory, its metadata database, its queue logs and their flusher.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;
use tracing::warn;

use crate::checkpointer::{self, Control};
use crate::files;
use crate::flusher::{self, Shared, SyncCallback};
use crate::log::QueueLog;
use crate::meta::{Meta, MetaEntry, MetaOp, OwnedMetaOp};
use crate::naming::{self, DELETED_PREFIX, ID_FILE, TMP_PREFIX};
use crate::{StoreError, StoreOptions};

/// Pigeon's durable state in one directory. See the [crate documentation](crate).
///
/// `Store` is `Send + Sync`; share it with an `Arc`. Dropping it flushes what is buffered and
/// stops the flusher, like [`Store::close`] without the error report.
pub struct Store {
    dir: PathBuf,
    opts: StoreOptions,
    meta: Meta,
    pub(crate) shared: Arc<Shared>,
    queues: Arc<Mutex<Queues>>,
    flusher: Option<JoinHandle<()>>,
    checkpointer: Option<(Arc<Control>, JoinHandle<()>)>,
}

/// Closing the store checkpoints the logs with at least this much of their files uncovered:
/// reading less costs a restart about a millisecond, and a checkpoint costs two `fsync`s.
const CLOSE_CHECKPOINT_BYTES: u64 = 1024 * 1024;

/// Known queue directories (on disk) and the logs opened from them.
#[derive(Default)]
struct Queues {
    dirs: HashMap<String, PathBuf>,
    open: HashMap<String, Arc<QueueLog>>,
}

/// Counters since the store was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Flush rounds completed (epochs).
    pub epochs: u64,
    /// `fdatasync`/`fsync` calls made by the flusher, directories included.
    pub fsyncs: u64,
    /// Bytes written to queue log files.
    pub bytes_written: u64,
    /// Fully acknowledged segments deleted.
    pub segments_deleted: u64,
    /// How long the flusher's `fdatasync`/`fsync` calls took.
    pub fsync_latency: crate::LatencyHistogram,
}

impl Store {
    /// Opens the data directory `dir`, creating it if needed, and starts the flusher thread.
    ///
    /// Queue logs are not read here: each is recovered when first opened with
    /// [`Store::queue_log`]; [`Store::queue_log_ids`] lists them.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        let queues_dir = dir.join("queues");
        fs::create_dir_all(&queues_dir).map_err(|e| StoreError::io(&queues_dir, e))?;
        // First, since redb's file lock is also the lock on the whole directory.
        let meta = Meta::open(&dir.join("meta.redb"), dir)?;
        let dirs = scan_queue_dirs(&queues_dir)?;
        let shared = Arc::new(Shared::new(&opts));
        let flusher = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("pigeon-store-flusher".into())
                .spawn(move || flusher::run(shared))
                .map_err(|e| StoreError::io(dir, e))?
        };
        let queues = Arc::new(Mutex::new(Queues {
            dirs,
            open: HashMap::new(),
        }));
        let mut store = Store {
            dir: dir.to_path_buf(),
            opts,
            meta,
            shared,
            queues,
            flusher: Some(flusher),
            checkpointer: None,
        };
        if let Some(interval) = store.opts.checkpoint_interval {
            let control = Arc::new(Control::default());
            let queues = Arc::clone(&store.queues);
            let open_logs = move || queues.lock().open.values().cloned().collect();
            let min_bytes = store.opts.checkpoint_bytes;
            let thread = {
                let control = Arc::clone(&control);
                std::thread::Builder::new()
                    .name("pigeon-store-checkpoint".into())
                    .spawn(move || checkpointer::run(control, open_logs, interval, min_bytes))
                    .map_err(|e| StoreError::io(dir, e))?
            };
            store.checkpointer = Some((control, thread));
        }
        Ok(store)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Inserts or replaces `key` in `table`; durable on return.
    pub fn meta_put(&self, table: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.meta.batch(&[MetaOp::Put { table, key, value }])
    }

    /// Removes `key` from `table`; durable on return. Removing an absent key is not an error.
    pub fn meta_delete(&self, table: &str, key: &[u8]) -> Result<(), StoreError> {
        self.meta.batch(&[MetaOp::Delete { table, key }])
    }

    /// The value of `key` in `table`.
    pub fn meta_get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.meta.get(table, key)
    }

    /// Every entry of `table`, in key order.
    pub fn meta_scan(&self, table: &str) -> Result<Vec<MetaEntry>, StoreError> {
        self.meta.scan(table)
    }

    /// Applies all `ops` in one transaction: all or none of them, durable on return.
    pub fn meta_batch(&self, ops: &[MetaOp<'_>]) -> Result<(), StoreError> {
        self.meta.batch(ops)
    }

    /// Runs `f` with every metadata write it makes on this thread ([`Store::meta_put`],
    /// [`Store::meta_delete`], [`Store::meta_batch`]) collected instead of committed, and
    /// returns them, to be committed together in one transaction with
    /// [`Store::meta_commit`]: the cluster's metadata state machine applies a batch of
    /// commands through the broker's usual code this way, and stores the batch with its
    /// applied marker atomically (docs/clustering.md). Reads during `f` see what is committed,
    /// not what `f` wrote. Other threads' writes are not collected.
    pub fn meta_capture<R>(&self, f: impl FnOnce() -> R) -> (R, Vec<OwnedMetaOp>) {
        crate::meta::capture(f)
    }

    /// Commits `ops` in one write transaction (fsynced), even inside [`Store::meta_capture`].
    pub fn meta_commit(&self, ops: &[OwnedMetaOp]) -> Result<(), StoreError> {
        let ops: Vec<MetaOp<'_>> = ops.iter().map(OwnedMetaOp::as_op).collect();
        self.meta.commit(&ops)
    }

    /// The log of queue `queue_id`, created if it does not exist. The first call for a queue in
    /// this process reads (recovers) its files; later calls return the same log.
    pub fn queue_log(&self, queue_id: &str) -> Result<Arc<QueueLog>, StoreError> {
        self.open_queue_log(queue_id, false)
    }

    /// Like [`Store::queue_log`], for a log whose records nobody waits for: a flush round writes
    /// its files but never `fdatasync`s them (its epochs promise nothing about it). For messages
    /// that do not survive a restart anyway, paged out of a transient queue; the caller deletes
    /// such a log at start rather than reading it.
    pub fn volatile_queue_log(&self, queue_id: &str) -> Result<Arc<QueueLog>, StoreError> {
        self.open_queue_log(queue_id, true)
    }

    fn open_queue_log(&self, queue_id: &str, volatile: bool) -> Result<Arc<QueueLog>, StoreError> {
        let mut queues = self.queues.lock();
        if let Some(log) = queues.open.get(queue_id) {
            return Ok(Arc::clone(log));
        }
        let dir = match queues.dirs.get(queue_id) {
            Some(dir) => dir.clone(),
            None => {
                let dir = self.create_queue_dir(queue_id)?;
                queues.dirs.insert(queue_id.to_owned(), dir.clone());
                dir
            }
        };
        let log = QueueLog::open(
            queue_id.to_owned(),
            dir,
            &self.opts,
            Arc::clone(&self.shared),
            volatile,
        )?;
        queues.open.insert(queue_id.to_owned(), Arc::clone(&log));
        Ok(log)
    }

    /// Deletes the log of `queue_id` and its files; returns whether it existed. Handles to it
    /// refuse appends from now on ([`StoreError::QueueDeleted`]).
    pub fn delete_queue_log(&self, queue_id: &str) -> Result<bool, StoreError> {
        let mut queues = self.queues.lock();
        let Some(dir) = queues.dirs.remove(queue_id) else {
            return Ok(false);
        };
        if let Some(log) = queues.open.remove(queue_id) {
            // Waits for a checkpoint being written (told to give up) and for a flush round
            // writing this log to finish; later ones skip it.
            log.deleting
                .store(true, std::sync::atomic::Ordering::Relaxed);
            let _ckpt = log.ckpt.lock();
            let _io = log.io.lock();
            log.mark_deleted();
        }
        // Renamed away first so that a crash never leaves half a queue: the hidden name is
        // removed by the next open if the removal below does not finish.
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        let doomed = self
            .queues_dir()
            .join(format!("{DELETED_PREFIX}{}", name.unwrap_or_default()));
        fs::rename(&dir, &doomed).map_err(|e| StoreError::io(&dir, e))?;
        files::sync_dir(&self.queues_dir()).map_err(|e| StoreError::io(self.queues_dir(), e))?;
        fs::remove_dir_all(&doomed).map_err(|e| StoreError::io(&doomed, e))?;
        Ok(true)
    }

    /// The ids of every queue log in the store, sorted: those on disk at open and those created
    /// since.
    pub fn queue_log_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.queues.lock().dirs.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// The epoch the next flush round will complete. Read it right after appending: once
    /// [`Store::synced_epoch`] reaches it, the appended records are on disk.
    pub fn current_epoch(&self) -> u64 {
        self.shared.current_epoch()
    }

    /// The last epoch whose records are on disk.
    pub fn synced_epoch(&self) -> u64 {
        self.shared.synced_epoch()
    }

    /// Calls `callback` once `epoch` is synced: on the flusher thread right after the round's
    /// `fdatasync`, or at once on this thread if it already is. It gets an error instead if the
    /// store fails or closes first.
    ///
    /// Every round waits for its callbacks, so keep them cheap (send on a channel, wake a task)
    /// and never block in one on the store ([`Store::wait_synced`], [`Store::sync`],
    /// [`Store::close`]): that would wait for the thread running it.
    pub fn on_synced(&self, epoch: u64, callback: SyncCallback) {
        self.shared.on_synced(epoch, callback);
    }

    /// Blocks until `epoch` is synced (for tests and shutdown; async code uses
    /// [`Store::on_synced`]).
    pub fn wait_synced(&self, epoch: u64) -> Result<(), StoreError> {
        self.shared.wait_synced(epoch)
    }

    /// Blocks until everything appended so far is on disk (acks included).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.wait_synced(self.current_epoch())
    }

    /// Checkpoints every open durable queue log with at least `min_bytes` (and at least one)
    /// of its files not covered by its checkpoint, so that a restart reads the checkpoint
    /// instead ([`QueueLog::checkpoint`]); returns how many were written. For a clean
    /// shutdown, after the last writes (closing the store does it too, with a 1 MiB floor).
    /// Blocks on the disk.
    pub fn checkpoint(&self, min_bytes: u64) -> Result<usize, StoreError> {
        let logs: Vec<Arc<QueueLog>> = self.queues.lock().open.values().cloned().collect();
        let mut written = 0;
        for log in logs {
            let uncovered = log.uncheckpointed_bytes();
            if uncovered > 0 && uncovered >= min_bytes {
                written += usize::from(log.checkpoint()?.is_some());
            }
        }
        Ok(written)
    }

    /// Counters since open.
    pub fn stats(&self) -> StoreStats {
        let c = &self.shared.counters;
        StoreStats {
            epochs: c.rounds.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            bytes_written: c.bytes_written.load(Ordering::Relaxed),
            segments_deleted: c.segments_deleted.load(Ordering::Relaxed),
            fsync_latency: c.fsync_latency.snapshot(),
        }
    }

    /// Flushes what is buffered, stops the flusher and reports whether the store had failed.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.stop();
        match self.shared.failure() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn stop(&mut self) {
        let on_flusher = self
            .flusher
            .as_ref()
            .is_some_and(|f| f.thread().id() == std::thread::current().id());
        if let Some((control, thread)) = self.checkpointer.take() {
            control.stop();
            // On the flusher thread (the last handle dropped by a callback), the checkpoint
            // thread may be waiting for this very round: it is left to finish on its own.
            if !on_flusher && thread.join().is_err() {
                warn!("the store's checkpoint thread panicked");
            }
        }
        if let Some(flusher) = self.flusher.take() {
            self.shared.shutdown();
            // The last handle may be dropped by an `on_synced` callback, on the flusher thread
            // itself; it finishes its last round and exits without being joined.
            if flusher.thread().id() == std::thread::current().id() {
                return;
            }
            if flusher.join().is_err() {
                warn!("the store's flusher thread panicked");
                return;
            }
            if self.shared.failure().is_none() {
                self.checkpoint_closed();
            }
        }
    }

    /// After the flusher's last round (everything written and synced): checkpoints the logs
    /// with at least [`CLOSE_CHECKPOINT_BYTES`] uncovered, so that a clean restart reads
    /// little more than the checkpoints. Failures are only logged: the log stays readable.
    fn checkpoint_closed(&self) {
        let logs: Vec<Arc<QueueLog>> = self.queues.lock().open.values().cloned().collect();
        for log in logs {
            if log.uncheckpointed_bytes() < CLOSE_CHECKPOINT_BYTES {
                continue;
            }
            if let Err(e) = log.write_checkpoint(false) {
                warn!(queue = %log.id().replace('\0', "/"), error = %e, "could not checkpoint a queue log");
            }
        }
    }

    fn queues_dir(&self) -> PathBuf {
        self.dir.join("queues")
    }

    /// Creates a queue directory atomically: built under a hidden name with its `id` file
    /// synced, then renamed into place and the parent synced.
    fn create_queue_dir(&self, queue_id: &str) -> Result<PathBuf, StoreError> {
        let parent = self.queues_dir();
        let mut attempt = 0;
        let name = loop {
            let name = naming::queue_dir_name(queue_id, attempt);
            // Taken by another id that collides on hash and prefix.
            if !parent.join(&name).exists() {
                break name;
            }
            attempt += 1;
        };
        let tmp = parent.join(format!("{TMP_PREFIX}{name}"));
        let dir = parent.join(&name);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |e| StoreError::io(path, e)
        };
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        fs::create_dir(&tmp).map_err(io(&tmp))?;
        let id_path = tmp.join(ID_FILE);
        let mut id_file = fs::File::create(&id_path).map_err(io(&id_path))?;
        id_file
            .write_all(queue_id.as_bytes())
            .map_err(io(&id_path))?;
        id_file.sync_all().map_err(io(&id_path))?;
        files::sync_dir(&tmp).map_err(io(&tmp))?;
        fs::rename(&tmp, &dir).map_err(io(&dir))?;
        files::sync_dir(&parent).map_err(io(&parent))?;
        Ok(dir)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads the `id` file of every queue directory and removes leftovers of interrupted creations
/// and deletions.
fn scan_queue_dirs(queues_dir: &Path) -> Result<HashMap<String, PathBuf>, StoreError> {
    let mut dirs = HashMap::new();
    let entries = fs::read_dir(queues_dir).map_err(|e| StoreError::io(queues_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(queues_dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TMP_PREFIX) || name.starts_with(DELETED_PREFIX) {
            fs::remove_dir_all(&path).map_err(|e| StoreError::io(&path, e))?;
            continue;
        }
        if !path.is_dir() {
            warn!(path = %path.display(), "ignoring a stray file among the queue directories");
            continue;
        }
        let id_path = path.join(ID_FILE);
        let corrupt = |reason: &str| StoreError::Corrupt {
            path: id_path.clone(),
            offset: 0,
            reason: reason.to_owned(),
        };
        let bytes = match fs::read(&id_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(corrupt("queue directory without an id file"))
            }
            Err(e) => return Err(StoreError::io(&id_path, e)),
        };
        let id = String::from_utf8(bytes).map_err(|_| corrupt("queue id is not UTF-8"))?;
        if let Some(other) = dirs.insert(id, path.clone()) {
            return Err(corrupt(&format!(
                "the same queue id is also in {}",
                other.display()
            )));
        }
    }
    Ok(dirs)
}
