//! One write-ahead log per node, shared by every Raft group on it.
//!
//! Why our own format rather than redb (which `pigeon-store` uses): a redb write transaction
//! commits with its own fsync and write transactions are serialized, so N groups appending at once
//! cost N fsyncs unless we batch them ourselves above it anyway; and a Raft log is append, truncate
//! the tail, drop the head, which an append-only segment file does with no B-tree work. So the log
//! is segment files of checksummed records ([`record`]), written by one thread that takes every
//! append queued at that moment, from every group, and writes them with one `write` and one
//! `fsync` ([`writer`]): group commit, as RabbitMQ's Ra WAL does for all of a node's Raft groups.
//!
//! Each group's present state (vote, committed id, purged id, entries) is held in memory by its
//! [`GroupLog`], so reads never touch the disk; the files are read only at startup. When the
//! active segment fills, the writer only starts the next one (no group's entries are rewritten,
//! so no append waits on a rotation); an older segment is deleted once no group has live entries
//! left in it ([`segments`]: Raft purges what a snapshot covers), and a group that would keep old
//! segments forever (an idle one that never snapshots) has its few live entries moved forward, a
//! slice per batch ([`relocate`]). That keeps the disk bounded by what the groups keep, plus at
//! most `max_segments` segments.

mod group_log;
pub(crate) mod record;
mod relocate;
mod segments;
#[cfg(test)]
mod tests;
mod writer;

pub use group_log::GroupLog;

use crate::types::GroupId;
use parking_lot::Mutex;
use record::{GroupMem, Op, Record};
use segments::SegmentTable;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

/// What can go wrong with the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// A file operation failed.
    #[error("{context} {}: {source}", path.display())]
    Io {
        /// What was being done.
        context: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A segment other than the newest is damaged: acknowledged writes would be lost by going
    /// on, so the node refuses to start. Restore the folder from a backup or remove the node's
    /// cluster state and let it rejoin from a snapshot.
    #[error("segment {} is damaged at byte {offset} ({reason}); it is not the newest segment, so this is not a torn write", path.display())]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// Where the damage starts.
        offset: usize,
        /// What was found.
        reason: &'static str,
    },
    /// The writer failed earlier or was shut down: nothing more can be made durable.
    #[error("the write-ahead log is closed: {0}")]
    Closed(String),
    /// A value could not be encoded.
    #[error("cannot encode a log record: {0}")]
    Encode(#[from] postcard::Error),
}

/// How the log is written.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// When the active segment grows past this, the writer starts a new one.
    pub segment_bytes: u64,
    /// The most bytes one batch writes before its fsync.
    pub max_batch_bytes: usize,
    /// When more segments than this are kept (the active one included), the live entries that
    /// keep the oldest are moved forward. Busy groups purge on their own long before (a queue
    /// group's unsnapshotted tail is a few segments at full speed); this is for the idle ones.
    pub max_segments: usize,
    /// The most bytes of moved entries written in front of one batch.
    pub relocate_bytes: usize,
    /// Only a group with at most this many bytes of live entries to move out of the oldest
    /// segment is moved (until more than four times `max_segments` are kept): a busy group's
    /// long tail is purged by its next snapshot instead of being written twice.
    pub max_moved_group_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> WalOptions {
        WalOptions {
            segment_bytes: 64 << 20,
            max_batch_bytes: 8 << 20,
            max_segments: 8,
            relocate_bytes: 1 << 20,
            max_moved_group_bytes: 4 << 20,
        }
    }
}

/// Counters of the log's work, read when asked (relaxed atomics).
#[derive(Debug, Default)]
pub struct WalStats {
    /// Records handed to the writer.
    pub submitted: AtomicU64,
    /// fsyncs of segment files: one per batch.
    pub fsyncs: AtomicU64,
    /// Records written.
    pub records: AtomicU64,
    /// Segments started by rotation.
    pub rotations: AtomicU64,
    /// Bytes written to start those segments: the header and every group's restated vote,
    /// committed id and purge point (never entries).
    pub rotation_bytes: AtomicU64,
    /// Bytes of live entries moved forward out of old segments (see `max_segments`).
    pub relocated_bytes: AtomicU64,
    /// Old segments deleted because no group needed them any more.
    pub segments_deleted: AtomicU64,
    /// Bytes cut from a torn tail at the last recovery.
    pub torn_bytes_cut: AtomicU64,
}

/// Called once the record it came with is durable (or failed).
pub(crate) type Done = Box<dyn FnOnce(io::Result<()>) + Send>;

/// What the writer thread is asked to do.
pub(crate) enum Job {
    /// Write this record, fsync, then call `done`.
    Write { group: GroupId, op: Op, done: Done },
    /// Finish what was queued before, then stop.
    Stop(mpsc::Sender<()>),
}

/// What the log's handles share.
pub(crate) struct Shared {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    closed: AtomicBool,
    groups: Mutex<HashMap<GroupId, Arc<Mutex<GroupMem>>>>,
    pub(crate) stats: Arc<WalStats>,
    /// Held by the writer while it writes a batch; tests hold it to line up concurrent appends.
    pub(crate) gate: Arc<Mutex<()>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Shared {
    /// Queues a record. Called with the group's state locked, right after changing it, so that the
    /// log's order for a group is the order its state changed in.
    pub(crate) fn submit(&self, group: GroupId, op: Op, done: Done) -> Result<(), WalError> {
        let tx = self.tx.lock();
        match tx.as_ref() {
            Some(tx) if !self.closed.load(Ordering::Acquire) => {
                tx.send(Job::Write { group, op, done })
                    .map_err(|_| WalError::Closed("the writer thread has stopped".into()))?;
                self.stats.submitted.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            _ => Err(WalError::Closed("the log was shut down or failed".into())),
        }
    }
}

/// The node's write-ahead log. Cheap to clone.
#[derive(Clone)]
pub struct Wal {
    shared: Arc<Shared>,
}

impl Wal {
    /// Opens (or creates) the log in `dir`, replaying every segment in order: a torn record at
    /// the end of the newest segment is cut off; damage anywhere else is [`WalError::Corrupt`].
    /// A directory written before segments were kept opens too: its newest segment starts with
    /// a `Checkpoint` record per group, which replays like any other record.
    pub fn open(dir: &Path, options: WalOptions) -> Result<Wal, WalError> {
        let io_err = |context, path: &Path| {
            let path = path.to_path_buf();
            move |source| WalError::Io {
                context,
                path,
                source,
            }
        };
        fs::create_dir_all(dir).map_err(io_err("cannot create", dir))?;
        let segments = list_segments(dir)?;
        let stats = Arc::new(WalStats::default());
        let mut state: BTreeMap<GroupId, GroupMem> = BTreeMap::new();
        let mut table = SegmentTable::default();
        for (i, (seq, path)) in segments.iter().enumerate() {
            let bytes = fs::read(path).map_err(io_err("cannot read", path))?;
            let scan = record::scan(&bytes);
            table.open(*seq);
            for Record { group, op } in &scan.records {
                state.entry(GroupId(*group)).or_default().apply(op);
                table.record(*seq, GroupId(*group), op);
            }
            if let Some(reason) = scan.problem {
                if i + 1 != segments.len() {
                    return Err(WalError::Corrupt {
                        path: path.clone(),
                        offset: scan.valid_len,
                        reason,
                    });
                }
                let cut = bytes.len() - scan.valid_len;
                tracing::warn!(segment = %path.display(), offset = scan.valid_len, bytes = cut, reason,
                    "write-ahead log: cutting a torn tail left by a crash (never acknowledged)");
                stats.torn_bytes_cut.store(cut as u64, Ordering::Relaxed);
                truncate_segment(path, scan.valid_len)?;
            }
        }
        let (seq, file, len) = match segments.last() {
            Some((seq, path)) => {
                let file = fs::OpenOptions::new()
                    .append(true)
                    .open(path)
                    .map_err(io_err("cannot open", path))?;
                let len = file.metadata().map_err(io_err("cannot stat", path))?.len();
                (*seq, file, len)
            }
            None => {
                table.open(1);
                writer::create_segment(dir, 1, &[])?
            }
        };
        let groups: HashMap<GroupId, Arc<Mutex<GroupMem>>> = state
            .iter()
            .map(|(g, mem)| (*g, Arc::new(Mutex::new(mem.clone()))))
            .collect();
        let (tx, rx) = mpsc::channel();
        let gate = Arc::new(Mutex::new(()));
        let segment = writer::Segment {
            dir: dir.to_path_buf(),
            seq,
            file,
            len,
        };
        let thread = writer::spawn(
            rx,
            segment,
            state,
            table,
            options,
            stats.clone(),
            gate.clone(),
        )
        .map_err(io_err("cannot start the writer thread for", dir))?;
        Ok(Wal {
            shared: Arc::new(Shared {
                tx: Mutex::new(Some(tx)),
                closed: AtomicBool::new(false),
                groups: Mutex::new(groups),
                stats,
                gate,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// The log of one group (empty if the group has never written). Every handle of a group
    /// shares its state; openraft's `Raft` takes one.
    pub fn group<C>(&self, group: GroupId) -> GroupLog<C>
    where
        C: openraft::RaftTypeConfig,
    {
        let mem = self.shared.groups.lock().entry(group).or_default().clone();
        GroupLog::new(group, mem, self.shared.clone())
    }

    /// The groups that have state in the log (for a node deciding which groups to start).
    pub fn groups(&self) -> Vec<GroupId> {
        let mut groups: Vec<GroupId> = self.shared.groups.lock().keys().copied().collect();
        groups.sort();
        groups
    }

    // --- A deleted quorum queue's log (helper quorumone) ---
    /// Empties `group`'s log, durably: vote, committed id and entries (a deleted queue's group,
    /// so that a queue declared again under the same name starts empty). Written as an empty
    /// checkpoint of the group; the group's Raft must be shut down first.
    pub async fn forget_group(&self, group: GroupId) -> Result<(), WalError> {
        let mem = self.shared.groups.lock().get(&group).cloned();
        let Some(mem) = mem else {
            return Ok(());
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut mem = mem.lock();
            *mem = GroupMem::default();
            self.shared.submit(
                group,
                Op::Checkpoint(GroupMem::default()),
                Box::new(move |r| drop(tx.send(r))),
            )?;
        }
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(WalError::Closed(e.to_string())),
            Err(_) => Err(WalError::Closed("the writer thread stopped".into())),
        }
    }
    // --- end quorumone ---

    /// The log's counters.
    pub fn stats(&self) -> &WalStats {
        &self.shared.stats
    }

    /// fsyncs so far (one per batch of records, however many groups the batch carried).
    pub fn fsync_count(&self) -> u64 {
        self.shared.stats.fsyncs.load(Ordering::Relaxed)
    }

    /// Holds the writer before its next batch until the guard is dropped: what is queued
    /// meanwhile goes out in one batch. For tests that count fsyncs.
    #[doc(hidden)]
    pub fn hold_writer(&self) -> parking_lot::ArcMutexGuard<parking_lot::RawMutex, ()> {
        self.shared.gate.lock_arc()
    }

    /// Writes out what is queued, stops the writer thread and closes the files. Later writes fail
    /// with [`WalError::Closed`].
    pub fn shutdown(&self) {
        self.shared.closed.store(true, Ordering::Release);
        let tx = self.shared.tx.lock().take();
        if let Some(tx) = tx {
            let (ack_tx, ack_rx) = mpsc::channel();
            if tx.send(Job::Stop(ack_tx)).is_ok() {
                let _ = ack_rx.recv();
            }
        }
        if let Some(thread) = self.shared.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

/// Segment files in `dir`, oldest first.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let read = fs::read_dir(dir).map_err(|source| WalError::Io {
        context: "cannot list",
        path: dir.into(),
        source,
    })?;
    let mut segments = Vec::new();
    for entry in read.flatten() {
        let path = entry.path();
        let seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(seq) = seq {
            segments.push((seq, path));
        }
    }
    segments.sort();
    Ok(segments)
}

/// Cuts a segment to its valid prefix (a whole header at least) and makes that durable.
fn truncate_segment(path: &Path, valid_len: usize) -> Result<(), WalError> {
    let io_err = |source| WalError::Io {
        context: "cannot cut the torn tail of",
        path: path.into(),
        source,
    };
    let file = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err)?;
    if valid_len < record::MAGIC.len() {
        // Not even the header made it: rewrite it.
        use std::io::Write;
        file.set_len(0).map_err(io_err)?;
        (&file).write_all(record::MAGIC).map_err(io_err)?;
    } else {
        file.set_len(valid_len as u64).map_err(io_err)?;
    }
    file.sync_all().map_err(io_err)
}
