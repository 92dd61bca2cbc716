//! Which segments are still needed, and by which groups.
//!
//! A rotation only closes the active segment and opens the next; the older segments stay until no
//! group needs them. A group needs a segment while it may have a live entry (above its purge
//! point, not truncated, not rewritten since) whose latest copy is there. The table keeps, per
//! segment, the groups with entries in it and the highest index each wrote there; a group leaves
//! a segment's list when it purges up to that index, truncates below everything it wrote there,
//! is forgotten, or has its live entries from there rewritten into a newer segment
//! ([`super::relocate`]). A segment with an empty list, and every segment before it, holds
//! nothing recovery needs: the entries in them are dead, and every group's vote, committed id and
//! purge point are restated at the head of every newer segment ([`super::writer`]). (Cf. RabbitMQ's Ra,
//! `docs/internals/INTERNALS.md`, "The Segment Writer": its WAL file is deleted once every
//! server's entries in it are flushed to per-server segments or covered by a snapshot.)
//!
//! Segments are deleted oldest first, one at a time with the directory fsynced after each, so
//! the files on disk are always a suffix of the sequence: replaying a suffix never resurrects an
//! entry a deleted segment's truncation or purge removed, because that truncation or purge came
//! after the entry and so is in the suffix too (or restated at its head).

use super::record::Op;
use crate::types::GroupId;
use std::collections::{BTreeMap, HashMap};

/// The groups with possibly live entries in each segment, and the lowest and highest index each
/// wrote there.
#[derive(Debug, Default)]
pub(crate) struct SegmentTable {
    segments: BTreeMap<u64, HashMap<GroupId, (u64, u64)>>,
}

impl SegmentTable {
    /// Starts tracking segment `seq` (the newest so far).
    pub fn open(&mut self, seq: u64) {
        self.segments.entry(seq).or_default();
    }

    /// Notes `op` of `group`, written (or replayed) in segment `seq`.
    pub fn record(&mut self, seq: u64, group: GroupId, op: &Op) {
        match op {
            Op::Append(entries) => {
                let first = entries.iter().map(|(i, _)| *i).min();
                let last = entries.iter().map(|(i, _)| *i).max();
                if let (Some(first), Some(last)) = (first, last) {
                    self.wrote(seq, group, first, last);
                }
            }
            Op::Truncate(since) => {
                for groups in self.segments.values_mut() {
                    let Some((min, max)) = groups.get_mut(&group) else {
                        continue;
                    };
                    if *min >= *since {
                        groups.remove(&group);
                    } else if *max >= *since {
                        // min < since, so since >= 1.
                        *max = *since - 1;
                    }
                }
            }
            Op::Purge { upto, .. } => self.release(group, u64::MAX, *upto),
            Op::Checkpoint(state) => {
                // The group's whole state is replaced: nothing it wrote before is live.
                self.release(group, u64::MAX, u64::MAX);
                let first = state.entries.first_key_value().map(|(i, _)| *i);
                let last = state.entries.last_key_value().map(|(i, _)| *i);
                if let (Some(first), Some(last)) = (first, last) {
                    self.wrote(seq, group, first, last);
                }
            }
            Op::Vote(_) | Op::Committed(_) => {}
        }
    }

    fn wrote(&mut self, seq: u64, group: GroupId, first: u64, last: u64) {
        let (min, max) = self
            .segments
            .entry(seq)
            .or_default()
            .entry(group)
            .or_insert((first, last));
        *min = (*min).min(first);
        *max = (*max).max(last);
    }

    /// `group` no longer needs the segments before `before` where its highest index is at most
    /// `upto` (purged, or rewritten further on).
    pub fn release(&mut self, group: GroupId, before: u64, upto: u64) {
        for (_, groups) in self.segments.range_mut(..before) {
            if groups.get(&group).is_some_and(|(_, max)| *max <= upto) {
                groups.remove(&group);
            }
        }
    }

    /// The oldest segment, if it is older than `active` and no group needs it.
    pub fn deletable(&self, active: u64) -> Option<u64> {
        let (seq, groups) = self.segments.first_key_value()?;
        (*seq < active && groups.is_empty()).then_some(*seq)
    }

    /// Stops tracking a deleted segment.
    pub fn remove(&mut self, seq: u64) {
        self.segments.remove(&seq);
    }

    /// Segments kept, the active one included.
    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// The oldest segment and the groups that keep it, with their highest index in it.
    pub fn oldest(&self) -> Option<(u64, Vec<(GroupId, u64)>)> {
        let (seq, groups) = self.segments.first_key_value()?;
        let mut pinning: Vec<(GroupId, u64)> =
            groups.iter().map(|(g, (_, max))| (*g, *max)).collect();
        pinning.sort();
        Some((*seq, pinning))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;

    fn append(indexes: std::ops::RangeInclusive<u64>) -> Op {
        Op::Append(indexes.map(|i| (i, Arc::from(vec![0u8]))).collect())
    }

    fn purge(upto: u64) -> Op {
        Op::Purge {
            upto,
            log_id: Arc::from(vec![0u8]),
        }
    }

    #[test]
    fn a_segment_is_free_once_every_group_purged_past_it() {
        let (a, b) = (GroupId(1), GroupId(2));
        let mut table = SegmentTable::default();
        table.open(1);
        table.record(1, a, &append(1..=10));
        table.record(1, b, &append(1..=5));
        table.open(2);
        table.record(2, a, &append(11..=20));
        table.record(2, a, &purge(10));
        assert_eq!(table.deletable(2), None, "b still has entries in 1");
        table.record(2, b, &purge(5));
        assert_eq!(table.deletable(2), Some(1));
        table.remove(1);
        assert_eq!(
            table.deletable(2),
            None,
            "the active segment is never deleted"
        );
    }

    #[test]
    fn truncation_and_forgetting_release_segments() {
        let (a, b) = (GroupId(1), GroupId(2));
        let mut table = SegmentTable::default();
        table.open(1);
        table.record(1, a, &append(5..=10));
        table.record(1, b, &append(1..=3));
        table.open(2);
        // Everything a wrote in 1 is cut: 1 holds none of its live entries.
        table.record(2, a, &Op::Truncate(5));
        table.record(2, a, &append(5..=6));
        table.record(2, b, &Op::Checkpoint(Default::default()));
        assert_eq!(table.deletable(2), Some(1));
        assert_eq!(table.oldest(), Some((1, vec![])));
    }
}
