//! Rebuilding a queue log from its directory.
//!
//! For each segment, oldest first: read its acks file (the events about its messages), then its
//! message records; a record is live unless an Ack names it. A damaged tail of either file is
//! cut off ([`crate::scan`]). Acks files without their segment are left over from a deletion
//! interrupted by a crash and are removed. Appends then go to a new segment numbered after every
//! file present, so no offset in an existing segment is ever written again.
//!
//! With a checkpoint (`checkpoint.rs`), its entries are the live messages as far as it covers
//! each segment, and only what lies past that is read, the same way: events past the covered
//! length of an acks file (applied to the loaded entries and to the new records), records past
//! the covered length of a segment. A covered segment whose file is gone was deleted because
//! all of its messages were acknowledged; its entries are dropped. A segment the checkpoint
//! does not list is read whole. The checkpoint is rejected (logged, deleted, and every file
//! read as without one) when it cannot be read, has a bad checksum or another format version,
//! or claims more of a file than the file holds: the log is trusted over the checkpoint.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Instant;

use tracing::{debug, warn};

use super::checkpoint::CheckpointState;
use super::{Location, LogState, RecoveryStats, Segment};
use crate::checkpoint::{self, Covered, Header};
use crate::files;
use crate::naming::LogFile;
use crate::record::{self, Kind};
use crate::scan::{self, Scanned};
use crate::{StoreError, SyncMode};

/// Whether and how a checkpoint was used when a log was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointOutcome {
    /// The log had no checkpoint: every file was read.
    #[default]
    None,
    /// The checkpoint was loaded and only the log past it was read.
    Loaded {
        /// Live messages it listed (before the events past it were replayed).
        entries: u64,
    },
    /// The checkpoint could not be trusted and was deleted; every file was read.
    Rejected {
        /// Why (also logged as a warning).
        reason: String,
    },
}

/// The files of a queue directory, with their lengths.
#[derive(Default)]
struct Listing {
    segs: BTreeMap<u64, u64>,
    acks: BTreeMap<u64, u64>,
    checkpoint: bool,
}

/// Reads the log in `dir` and returns its state, what it took, and what its checkpoint covers.
pub(crate) fn open_dir(
    dir: &Path,
    sync: SyncMode,
) -> Result<(LogState, RecoveryStats, CheckpointState), StoreError> {
    let started = Instant::now();
    let mut stats = RecoveryStats::default();
    let listing = list(dir, sync)?;
    let loaded = if listing.checkpoint {
        match load_checkpoint(dir, &listing, &mut stats)? {
            Ok(loaded) => Some(loaded),
            Err(reason) => {
                warn!(dir = %dir.display(), %reason, "ignoring a queue log's checkpoint; reading the whole log");
                let path = dir.join(checkpoint::FILE);
                files::remove_if_exists(&path).map_err(|e| StoreError::io(&path, e))?;
                if sync == SyncMode::Always {
                    files::sync_dir(dir).map_err(|e| StoreError::io(dir, e))?;
                }
                stats.checkpoint = CheckpointOutcome::Rejected { reason };
                None
            }
        }
    } else {
        None
    };
    let (mut state, header) = match loaded {
        Some(loaded) => loaded,
        None => (
            LogState::new(next_segment(&listing, None)),
            Header::default(),
        ),
    };

    let orphans: Vec<u64> = listing
        .acks
        .keys()
        .filter(|n| !listing.segs.contains_key(n))
        .copied()
        .collect();
    for &n in &orphans {
        let path = LogFile::Acks(n).path(dir);
        files::remove_if_exists(&path).map_err(|e| StoreError::io(&path, e))?;
    }
    if !orphans.is_empty() && sync == SyncMode::Always {
        files::sync_dir(dir).map_err(|e| StoreError::io(dir, e))?;
    }

    for (&n, &seg_file_len) in &listing.segs {
        let acks_file_len = listing.acks.get(&n).copied();
        let covered = header.segments.get(&n).copied();
        let from = covered.unwrap_or_default();
        if covered.is_some()
            && seg_file_len == from.seg_len
            && acks_file_len.unwrap_or(0) == from.acks_len
        {
            // Nothing past the checkpoint: its entries (loaded) are the whole story.
            state.segments.entry(n).or_default().acks_on_disk = acks_file_len.is_some();
            continue;
        }
        let events = match acks_file_len {
            Some(len) if len > from.acks_len => {
                read_events(dir, n, from.acks_len, sync, &mut stats)?
            }
            Some(_) => Events {
                len: from.acks_len,
                ..Events::default()
            },
            None => Events::default(),
        };
        let segment = state.segments.entry(n).or_default();
        segment.acks_len = events.len;
        segment.seg_on_disk = true;
        segment.acks_on_disk = acks_file_len.is_some();
        // Events past the cover about messages the checkpoint listed.
        for &(offset, seq) in &events.acked {
            let at = Location {
                segment: n,
                offset,
                len: 0,
            };
            if state
                .live
                .get(seq)
                .is_some_and(|(l, _)| same_record(&l, &at))
            {
                state.live.remove(seq);
                if let Some(seg) = state.segments.get_mut(&n) {
                    seg.live -= 1;
                }
            }
        }
        for &(offset, seq) in &events.delivered {
            let at = Location {
                segment: n,
                offset,
                len: 0,
            };
            if state
                .live
                .get(seq)
                .is_some_and(|(l, _)| same_record(&l, &at))
            {
                state.live.mark_delivered(seq);
            }
        }
        let path = LogFile::Segment(n).path(dir);
        let mut found = Vec::new();
        let scanned = scan::scan(
            &path,
            from.seg_len,
            |offset, len, p| match record::message_parts(p.kind, p.body) {
                Some((tag, _)) => {
                    if !events.acked.contains(&(offset, p.seq)) {
                        let delivered = events.delivered.contains(&(offset, p.seq));
                        found.push((p.seq, offset, len, delivered, tag));
                    }
                }
                None => {
                    warn!(file = %path.display(), offset, kind = ?p.kind, "skipping a non-message record in a segment")
                }
            },
        )?;
        let seg_len = finish(scanned, sync, &mut stats)?;
        stats.segments += 1;
        if let Some(segment) = state.segments.get_mut(&n) {
            segment.len = seg_len;
        }
        for (seq, offset, len, delivered, tag) in found {
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
            if let Some(older) = state.live.insert_tagged(seq, location, delivered, tag) {
                state.retire(seq, older);
            }
        }
    }
    stats.duration = started.elapsed();
    if stats.segments > 0 || header != Header::default() {
        debug!(
            dir = %dir.display(),
            messages = state.live.len(),
            segments = stats.segments,
            records = stats.records_read,
            truncated_bytes = stats.bytes_truncated,
            checkpoint = ?stats.checkpoint,
            ms = stats.duration.as_millis() as u64,
            "recovered queue log",
        );
    }
    let ckpt = CheckpointState {
        covered: header.segments,
    };
    Ok((state, stats, ckpt))
}

/// Whether a location names the record at `at`'s segment and offset.
fn same_record(l: &Location, at: &Location) -> bool {
    l.segment == at.segment && l.offset == at.offset
}

/// Lists the log files (removing a checkpoint's temporary file left by a crash).
fn list(dir: &Path, sync: SyncMode) -> Result<Listing, StoreError> {
    let mut listing = Listing::default();
    let mut tmp = false;
    for entry in std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_str();
        let len = || -> Result<u64, StoreError> {
            let meta = entry
                .metadata()
                .map_err(|e| StoreError::io(entry.path(), e))?;
            Ok(meta.len())
        };
        match name.and_then(LogFile::parse) {
            Some(LogFile::Segment(n)) => {
                listing.segs.insert(n, len()?);
            }
            Some(LogFile::Acks(n)) => {
                listing.acks.insert(n, len()?);
            }
            None if name == Some(checkpoint::FILE) => listing.checkpoint = true,
            None if name == Some(checkpoint::TMP_FILE) => tmp = true,
            None => {}
        }
    }
    if tmp {
        let path = dir.join(checkpoint::TMP_FILE);
        files::remove_if_exists(&path).map_err(|e| StoreError::io(&path, e))?;
        if sync == SyncMode::Always {
            files::sync_dir(dir).map_err(|e| StoreError::io(dir, e))?;
        }
    }
    Ok(listing)
}

/// The segment appends go to after opening: after every file present and every segment the
/// checkpoint names, so that no segment number the checkpoint covers is ever used again for
/// other records.
fn next_segment(listing: &Listing, header: Option<&Header>) -> u64 {
    let files = listing.segs.keys().chain(listing.acks.keys()).max();
    let named = header.and_then(|h| h.segments.keys().max().copied().max(Some(h.active)));
    files.copied().max(named).map_or(0, |n| n.saturating_add(1))
}

/// Reads and checks the checkpoint against the files: its entries become the live index and
/// its covered segments the segment table. `Ok(Err(reason))` when it cannot be trusted.
fn load_checkpoint(
    dir: &Path,
    listing: &Listing,
    stats: &mut RecoveryStats,
) -> Result<Result<(LogState, Header), String>, StoreError> {
    let path = dir.join(checkpoint::FILE);
    let bytes = std::fs::read(&path).map_err(|e| StoreError::io(&path, e))?;
    let parsed = match checkpoint::parse(&bytes) {
        Ok(parsed) => parsed,
        Err(invalid) => return Ok(Err(invalid.to_string())),
    };
    for (&n, c) in &parsed.header.segments {
        let Some(&seg_len) = listing.segs.get(&n) else {
            // Deleted since: every message in it was acknowledged, on disk.
            continue;
        };
        if seg_len < c.seg_len {
            return Ok(Err(format!(
                "segment {n} holds {seg_len} bytes, the checkpoint covers {}",
                c.seg_len
            )));
        }
        let acks_len = listing.acks.get(&n).copied().unwrap_or(0);
        if acks_len < c.acks_len {
            return Ok(Err(format!(
                "the acks file of segment {n} holds {acks_len} bytes, the checkpoint covers {}",
                c.acks_len
            )));
        }
    }
    let mut state = LogState::new(next_segment(listing, Some(&parsed.header)));
    for (&n, c) in &parsed.header.segments {
        if listing.segs.contains_key(&n) {
            state.segments.insert(n, covered_segment(c));
        }
    }
    let mut entries = 0u64;
    // Runs of entries share a segment: count them, and look the segment up, once per run.
    let mut run: Option<(u64, u64)> = None;
    let mut exists: Option<(u64, bool)> = None;
    let decoded = parsed.entries(|e| {
        entries += 1;
        let present = match exists {
            Some((n, present)) if n == e.segment => present,
            _ => {
                let present = listing.segs.contains_key(&e.segment);
                exists = Some((e.segment, present));
                present
            }
        };
        if !present {
            return;
        }
        let location = Location {
            segment: e.segment,
            offset: e.offset,
            len: e.len,
        };
        state
            .live
            .insert_tagged(e.seq, location, e.delivered, e.tag);
        run = match run {
            Some((n, count)) if n == e.segment => Some((n, count + 1)),
            other => {
                if let Some((n, count)) = other {
                    add_live(&mut state, n, count);
                }
                Some((e.segment, 1))
            }
        };
    });
    if let Err(invalid) = decoded {
        return Ok(Err(invalid.to_string()));
    }
    if let Some((n, count)) = run {
        add_live(&mut state, n, count);
    }
    stats.checkpoint = CheckpointOutcome::Loaded { entries };
    Ok(Ok((state, parsed.header)))
}

fn covered_segment(c: &Covered) -> Segment {
    Segment {
        len: c.seg_len,
        acks_len: c.acks_len,
        seg_on_disk: true,
        ..Segment::default()
    }
}

fn add_live(state: &mut LogState, n: u64, count: u64) {
    if let Some(seg) = state.segments.get_mut(&n) {
        seg.live += count;
    }
}

/// The events of one segment's acks file from `from` on, keyed by (message offset, seq).
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
    from: u64,
    sync: SyncMode,
    stats: &mut RecoveryStats,
) -> Result<Events, StoreError> {
    let path = LogFile::Acks(n).path(dir);
    let mut events = Events::default();
    let scanned = scan::scan(&path, from, |offset, _, p| {
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
