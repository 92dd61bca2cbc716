//! The writer thread: group commit and segment rotation.
//!
//! One thread owns the active segment. It blocks for a job, then takes every job already queued
//! (from any group, up to `max_batch_bytes`), writes them with one `write_all`, calls `fsync`
//! once, and only then reports each job durable. While that fsync runs, other groups queue their
//! appends, and the next batch carries them all: the cost of an fsync is shared by every group
//! that had something to write at that moment, which is what lets thousands of groups (quorum
//! queues, next) live on one disk.
//!
//! The writer also keeps the state the files hold, group by group (entry bytes are shared with the
//! groups' own copies, not duplicated), so that when the active segment is full it can start a new
//! one with a checkpoint of every group and delete the older segments.

use super::record::{self, GroupMem, Op, Record};
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

/// Creates segment `seq` with its header, durable (the file and its directory entry).
pub(crate) fn create_segment(dir: &Path, seq: u64) -> Result<(u64, File, u64), WalError> {
    let path = dir.join(format!("{seq:020}.wal"));
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
    file.write_all(record::MAGIC).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    sync_dir(dir).map_err(io_err)?;
    Ok((seq, file, record::MAGIC.len() as u64))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Starts the writer thread.
pub(crate) fn spawn(
    rx: mpsc::Receiver<Job>,
    segment: Segment,
    state: BTreeMap<GroupId, GroupMem>,
    options: WalOptions,
    stats: Arc<WalStats>,
    gate: Arc<Mutex<()>>,
) -> io::Result<std::thread::JoinHandle<()>> {
    let mut writer = Writer {
        // A recovered segment's own length: as full as it looks (the checkpoint it may begin
        // with included, which only makes its first rotation come sooner).
        appended: segment.len,
        segment,
        state,
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
    /// Bytes of batches written to the segment since its checkpoint. The segment rotates when
    /// these, not its length, reach `segment_bytes`: a checkpoint holds every group's live log,
    /// which can itself pass `segment_bytes` (4,096 entries of a proposer's batches before a
    /// snapshot lets a group purge), and counting it made every following batch rotate again,
    /// each rotation rewriting and fsyncing the whole live log while no group's append could
    /// complete (confirm stalls of 0.3-10 s, docs/clustering.md, "Next steps" item 6).
    appended: u64,
    state: BTreeMap<GroupId, GroupMem>,
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
            if !batch.is_empty() {
                self.write_batch(batch, &buf);
            }
        }
        if let Some(ack) = stop {
            let _ = ack.send(());
        }
    }

    fn write_batch(&mut self, batch: Vec<(GroupId, Op, Done)>, buf: &[u8]) {
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
        if ok {
            // Counted before anyone is told, so a caller that was told sees its record counted.
            self.stats
                .records
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        for (group, op, done) in batch {
            if ok {
                self.state.entry(group).or_default().apply(&op);
            }
            done(result.clone().map_err(io::Error::other));
        }
        if ok {
            self.appended += buf.len() as u64;
        }
        if ok && self.appended >= self.options.segment_bytes {
            if let Err(e) = self.rotate() {
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

    /// Starts the next segment with a checkpoint of every group, then deletes the older ones.
    /// A crash before the checkpoint is durable leaves the old segments whole (recovery reads them
    /// and the partial new one, whose torn tail it cuts); after it, the new segment alone holds
    /// everything.
    fn rotate(&mut self) -> Result<(), WalError> {
        let started = std::time::Instant::now();
        let (seq, file, len) = create_segment(&self.segment.dir, self.segment.seq + 1)?;
        self.segment = Segment {
            dir: self.segment.dir.clone(),
            seq,
            file,
            len,
        };
        let mut buf = Vec::new();
        for (group, mem) in &self.state {
            let record = Record {
                group: group.0,
                op: Op::Checkpoint(mem.clone()),
            };
            record::encode(&record, &mut buf)?;
        }
        let path = self.segment.dir.clone();
        self.write_and_sync(&buf).map_err(|source| WalError::Io {
            context: "cannot checkpoint into",
            path,
            source,
        })?;
        self.appended = 0;
        self.stats.rotations.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            segment = seq,
            checkpoint_bytes = buf.len(),
            groups = self.state.len(),
            entries = self.state.values().map(|m| m.entries.len()).sum::<usize>(),
            ms = started.elapsed().as_millis() as u64,
            "write-ahead log: rotated"
        );
        for entry in fs::read_dir(&self.segment.dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = entry.path();
            let older = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".wal"))
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|s| s < seq);
            if older {
                if let Err(e) = fs::remove_file(&path) {
                    tracing::warn!(segment = %path.display(), "write-ahead log: cannot delete an old segment: {e}");
                }
            }
        }
        Ok(())
    }
}
