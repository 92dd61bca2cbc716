//! The writer thread: group commit, segment rotation and deletion.
//!
//! One thread owns the active segment. It blocks for a job, then takes every job already queued
//! (from any group, up to `max_batch_bytes`), writes them with one `write_all`, calls `fsync`
//! once, and only then reports each job durable. While that fsync runs, other groups queue their
//! appends, and the next batch carries them all: the cost of an fsync is shared by every group
//! that had something to write at that moment, which is what lets thousands of groups (quorum
//! queues, next) live on one disk.
//!
//! When the active segment has `segment_bytes`, the writer closes it and opens the next, whose
//! head restates every group's vote, committed id and purge point (a few dozen bytes a group,
//! never its entries): a rotation costs one small write and fsync. Older segments stay while some
//! group may have live entries in them ([`super::segments`]) and are deleted, oldest first, once
//! none has; a group that keeps the oldest of too many segments has its live entries there moved
//! forward a slice per batch ([`super::relocate`]). The writer also keeps the state the files
//! hold, group by group (entry bytes are shared with the groups' own copies, not duplicated):
//! what it restates and what it moves.

use super::record::{self, GroupMem, Op, Record};
use super::relocate::{Relocator, Slice};
use super::segments::SegmentTable;
use super::{Done, Job, WalError, WalOptions, WalStats};
use crate::types::GroupId;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};

/// The segment being written.
pub(crate) struct Segment {
    pub dir: PathBuf,
    pub seq: u64,
    pub file: File,
    pub len: u64,
}

/// The file of segment `seq`.
pub(crate) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

/// Creates segment `seq` with its header and `head` (records), durable (the file and its
/// directory entry).
pub(crate) fn create_segment(
    dir: &Path,
    seq: u64,
    head: &[u8],
) -> Result<(u64, File, u64), WalError> {
    let path = segment_path(dir, seq);
    let io_err = |source| WalError::Io {
        context: "cannot create segment",
        path: path.clone(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(io_err)?;
    let mut bytes = Vec::with_capacity(record::MAGIC.len() + head.len());
    bytes.extend_from_slice(record::MAGIC);
    bytes.extend_from_slice(head);
    file.write_all(&bytes).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    sync_dir(dir).map_err(io_err)?;
    Ok((seq, file, bytes.len() as u64))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Starts the writer thread.
pub(crate) fn spawn(
    rx: mpsc::Receiver<Job>,
    segment: Segment,
    mut state: BTreeMap<GroupId, GroupMem>,
    table: SegmentTable,
    options: WalOptions,
    stats: Arc<WalStats>,
    gate: Arc<Mutex<()>>,
) -> io::Result<std::thread::JoinHandle<()>> {
    state.retain(|_, mem| !mem.is_empty());
    let mut writer = Writer {
        segment,
        state,
        table,
        relocator: Relocator::default(),
        options,
        stats,
        failed: None,
    };
    std::thread::Builder::new()
        .name("pigeon-wal".into())
        .spawn(move || writer.run(rx, gate))
}

struct Writer {
    segment: Segment,
    /// What the files hold, group by group (groups with nothing left are dropped).
    state: BTreeMap<GroupId, GroupMem>,
    /// Which kept segment each group still needs.
    table: SegmentTable,
    relocator: Relocator,
    options: WalOptions,
    stats: Arc<WalStats>,
    /// Set by the first failed write or fsync: after it nothing is reported durable again (the
    /// page cache's state after a failed fsync is unknown; see PostgreSQL's "fsyncgate").
    failed: Option<String>,
}

impl Writer {
    fn run(&mut self, rx: mpsc::Receiver<Job>, gate: Arc<Mutex<()>>) {
        let mut stop: Option<mpsc::Sender<()>> = None;
        while stop.is_none() {
            let Ok(first) = rx.recv() else { break };
            let _gate = gate.lock();
            let mut batch: Vec<(GroupId, Op, Done)> = Vec::new();
            let mut buf: Vec<u8> = Vec::new();
            // Entries being moved forward go first: they are what the files held before this
            // batch, which may truncate or purge them.
            let slice = self.next_slice(&mut buf);
            let moved = buf.len();
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Stop(ack) => {
                        stop = Some(ack);
                        break;
                    }
                    Job::Write { group, op, done } => {
                        let record = Record { group: group.0, op };
                        if let Err(e) = record::encode(&record, &mut buf) {
                            done(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                            continue;
                        }
                        batch.push((group, record.op, done));
                    }
                }
                if buf.len() < self.options.max_batch_bytes {
                    next = rx.try_recv().ok();
                }
            }
            if !buf.is_empty() {
                self.write_batch(batch, slice, moved, &buf);
            }
        }
        if let Some(ack) = stop {
            let _ = ack.send(());
        }
    }

    fn next_slice(&mut self, buf: &mut Vec<u8>) -> Slice {
        if self.failed.is_some() {
            return Slice::default();
        }
        match self
            .relocator
            .slice(&self.state, self.options.relocate_bytes, buf)
        {
            Ok(slice) => slice,
            Err(e) => {
                // Unreachable in practice (the same bytes encoded before); the segment is then
                // kept longer, nothing is lost.
                tracing::warn!("write-ahead log: cannot encode entries to move: {e}");
                self.relocator = Relocator::default();
                buf.clear();
                Slice::default()
            }
        }
    }

    fn write_batch(
        &mut self,
        batch: Vec<(GroupId, Op, Done)>,
        slice: Slice,
        moved: usize,
        buf: &[u8],
    ) {
        let result = match &self.failed {
            Some(reason) => Err(reason.clone()),
            None => self.write_and_sync(buf).map_err(|e| {
                let reason = format!("write or fsync of segment {} failed: {e}", self.segment.seq);
                tracing::error!("write-ahead log: {reason}; the node's Raft groups will stop");
                self.failed = Some(reason.clone());
                reason
            }),
        };
        let ok = result.is_ok();
        let seq = self.segment.seq;
        if ok {
            // Counted before anyone is told, so a caller that was told sees its record counted.
            self.stats
                .records
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            self.stats
                .relocated_bytes
                .fetch_add(moved as u64, Ordering::Relaxed);
            for (group, op) in &slice.appends {
                self.table.record(seq, *group, op);
            }
            for (group, since, upto) in slice.finished {
                self.table.release(group, since, upto);
            }
        }
        for (group, op, done) in batch {
            if ok {
                self.table.record(seq, group, &op);
                let mem = self.state.entry(group).or_default();
                mem.apply(&op);
                if mem.is_empty() {
                    self.state.remove(&group);
                }
            }
            done(result.clone().map_err(io::Error::other));
        }
        if ok {
            if let Err(e) = self.maintain() {
                tracing::error!("write-ahead log: cannot start a new segment: {e}");
                self.failed = Some(e.to_string());
            }
        }
    }

    fn write_and_sync(&mut self, buf: &[u8]) -> io::Result<()> {
        let started = std::time::Instant::now();
        self.segment.file.write_all(buf)?;
        self.segment.file.sync_data()?;
        let took = started.elapsed();
        // The stalls of confirms under load (docs/clustering.md, "Next steps"): a write and
        // fsync that holds every group's appends back for long.
        if took >= std::time::Duration::from_millis(100) {
            tracing::debug!(
                bytes = buf.len(),
                ms = took.as_millis() as u64,
                segment = self.segment.seq,
                "write-ahead log: slow write and fsync"
            );
        }
        self.segment.len += buf.len() as u64;
        self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// After a durable batch: rotates a full segment, deletes what no group needs any more, and
    /// plans moving entries forward when too many segments are kept.
    fn maintain(&mut self) -> Result<(), WalError> {
        if self.segment.len >= self.options.segment_bytes {
            self.rotate()?;
        }
        self.delete_unneeded();
        self.relocator.plan(
            &self.table,
            &self.state,
            self.options.max_segments,
            self.options.max_moved_group_bytes,
            self.segment.seq,
        );
        Ok(())
    }

    /// Closes the active segment and starts the next with every group's vote, committed id and
    /// purge point, so that no older segment is needed for those. A crash before the new
    /// segment is durable leaves a torn newest segment, which recovery cuts; nothing older is
    /// touched here.
    fn rotate(&mut self) -> Result<(), WalError> {
        let started = std::time::Instant::now();
        let mut head = Vec::new();
        for (group, mem) in &self.state {
            for op in mem.restated() {
                record::encode(&Record { group: group.0, op }, &mut head)?;
            }
        }
        let (seq, file, len) = create_segment(&self.segment.dir, self.segment.seq + 1, &head)?;
        self.segment = Segment {
            dir: self.segment.dir.clone(),
            seq,
            file,
            len,
        };
        self.table.open(seq);
        self.stats.rotations.fetch_add(1, Ordering::Relaxed);
        self.stats.rotation_bytes.fetch_add(len, Ordering::Relaxed);
        tracing::debug!(
            segment = seq,
            head_bytes = len,
            groups = self.state.len(),
            kept = self.table.len(),
            ms = started.elapsed().as_millis() as u64,
            "write-ahead log: rotated"
        );
        Ok(())
    }

    /// Deletes the oldest segments while no group needs them, one at a time with the directory
    /// fsynced after each, so that the files left are always a suffix of the sequence.
    fn delete_unneeded(&mut self) {
        while let Some(seq) = self.table.deletable(self.segment.seq) {
            let path = segment_path(&self.segment.dir, seq);
            let removed = match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => sync_dir(&self.segment.dir),
            };
            if let Err(e) = removed {
                // Kept, and so is every later segment: tried again after the next batch.
                tracing::warn!(segment = %path.display(), "write-ahead log: cannot delete an old segment: {e}");
                return;
            }
            self.table.remove(seq);
            self.stats.segments_deleted.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                segment = seq,
                "write-ahead log: deleted a segment no group needs"
            );
        }
    }
}
