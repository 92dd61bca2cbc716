//! Rebuilding a queue log from its directory.
//!
//! For each segment, oldest first: read its acks file (the events about its messages), then its
//! message records; a record is live unless an Ack names it. A damaged tail of either file is
//! cut off ([`crate::scan`]). Acks files without their segment are left over from a deletion
//! interrupted by a crash and are removed. Appends then go to a new segment numbered after every
//! file present, so no offset in an existing segment is ever written again.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::time::Instant;

use tracing::{debug, warn};

use super::{Location, LogState, RecoveryStats, Segment};
use crate::files;
use crate::naming::LogFile;
use crate::record::{self, Kind};
use crate::scan::{self, Scanned};
use crate::{StoreError, SyncMode};

/// Reads every file in `dir` and returns the log's state and what it took.
pub(crate) fn open_dir(
    dir: &Path,
    sync: SyncMode,
) -> Result<(LogState, RecoveryStats), StoreError> {
    let started = Instant::now();
    let mut stats = RecoveryStats::default();
    let mut segs = BTreeSet::new();
    let mut acks = BTreeSet::new();
    for entry in std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        match entry.file_name().to_str().and_then(LogFile::parse) {
            Some(LogFile::Segment(n)) => {
                segs.insert(n);
            }
            Some(LogFile::Acks(n)) => {
                acks.insert(n);
            }
            None => {}
        }
    }
    let next = segs
        .iter()
        .chain(&acks)
        .max()
        .map_or(0, |&n| n.saturating_add(1));
    let mut state = LogState::new(next);

    let orphans: Vec<u64> = acks.difference(&segs).copied().collect();
    for &n in &orphans {
        let path = LogFile::Acks(n).path(dir);
        files::remove_if_exists(&path).map_err(|e| StoreError::io(&path, e))?;
    }
    if !orphans.is_empty() && sync == SyncMode::Always {
        files::sync_dir(dir).map_err(|e| StoreError::io(dir, e))?;
    }

    for &n in &segs {
        let events = if acks.contains(&n) {
            read_events(dir, n, sync, &mut stats)?
        } else {
            Events::default()
        };
        let mut segment = Segment {
            acks_len: events.len,
            seg_on_disk: true,
            acks_on_disk: acks.contains(&n),
            ..Segment::default()
        };
        let path = LogFile::Segment(n).path(dir);
        let mut found = Vec::new();
        let scanned = scan::scan(&path, |offset, len, p| match p.kind {
            Some(Kind::Message) => {
                if !events.acked.contains(&(offset, p.seq)) {
                    let delivered = events.delivered.contains(&(offset, p.seq));
                    found.push((p.seq, offset, len, delivered));
                }
            }
            other => {
                warn!(file = %path.display(), offset, kind = ?other, "skipping a non-message record in a segment")
            }
        })?;
        segment.len = finish(scanned, sync, &mut stats)?;
        stats.segments += 1;
        state.segments.insert(n, segment);
        for (seq, offset, len, delivered) in found {
            let location = Location {
                segment: n,
                offset,
                len,
            };
            if let Some(seg) = state.segments.get_mut(&n) {
                seg.live += 1;
            }
            // The same seq live twice: a replacement whose Ack of the older record was lost in
            // a crash. The later record wins, as it did before the crash; ack the older again.
            if let Some(older) = state.live.insert(seq, location, delivered) {
                state.retire(seq, older);
            }
        }
    }
    stats.duration = started.elapsed();
    if stats.segments > 0 {
        debug!(
            dir = %dir.display(),
            messages = state.live.len(),
            segments = stats.segments,
            records = stats.records_read,
            truncated_bytes = stats.bytes_truncated,
            ms = stats.duration.as_millis() as u64,
            "recovered queue log",
        );
    }
    Ok((state, stats))
}

/// The events of one segment's acks file, keyed by (message offset, seq).
#[derive(Default)]
struct Events {
    acked: HashSet<(u64, u64)>,
    delivered: HashSet<(u64, u64)>,
    /// The acks file's valid length.
    len: u64,
}

fn read_events(
    dir: &Path,
    n: u64,
    sync: SyncMode,
    stats: &mut RecoveryStats,
) -> Result<Events, StoreError> {
    let path = LogFile::Acks(n).path(dir);
    let mut events = Events::default();
    let scanned = scan::scan(&path, |offset, _, p| {
        let target = record::event_offset(p.body).map(|o| (o, p.seq));
        match (p.kind, target) {
            (Some(Kind::Ack), Some(t)) => {
                events.acked.insert(t);
            }
            (Some(Kind::Delivered), Some(t)) => {
                events.delivered.insert(t);
            }
            (kind, _) => {
                warn!(file = %path.display(), offset, ?kind, "skipping an unexpected record in an acks file")
            }
        }
    })?;
    events.len = finish(scanned, sync, stats)?;
    Ok(events)
}

/// Accounts for a scanned file and cuts its damaged tail; returns its valid length.
fn finish(scanned: Scanned, sync: SyncMode, stats: &mut RecoveryStats) -> Result<u64, StoreError> {
    stats.records_read += scanned.records;
    if let Some(t) = scanned.truncation {
        scan::cut_tail(&t, sync)?;
        stats.bytes_truncated += t.bytes;
        stats.truncations.push(t);
    }
    Ok(scanned.valid_len)
}
