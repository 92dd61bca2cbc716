//! Moving a long-pinning group's live entries forward, a slice per batch.
//!
//! A group that never purges (an idle quorum queue that has not reached its snapshot interval)
//! would keep the segment holding its entries, and so every segment after it, forever. When more
//! than `max_segments` segments are kept, the writer rewrites the live entries that keep the
//! oldest one (each pinning group's entries up to its highest index there, for the groups with
//! little there: see [`Relocator::plan`]) into the active
//! segment as ordinary `Append` records: the same entries again, which replay in order simply
//! overwrite with the same bytes. It writes at most `relocate_bytes` of them in front of each
//! batch, sharing that batch's write and fsync, so no append waits for more than one slice; once
//! a group's slices are durable, the older segments no longer need it ([`SegmentTable::release`])
//! and the oldest segment can go.

use super::record::{self, GroupMem, Op, Record};
use super::segments::SegmentTable;
use crate::types::GroupId;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// One group's live entries up to `upto`, being rewritten from `next` on.
#[derive(Debug)]
struct Relocation {
    group: GroupId,
    next: u64,
    upto: u64,
    /// The active segment when it was planned: every slice lands in it or a later one.
    since: u64,
}

/// What a slice wrote, to note in the segment table once it is durable.
#[derive(Debug, Default)]
pub(crate) struct Slice {
    /// Appends written: (group, op).
    pub appends: Vec<(GroupId, Op)>,
    /// Groups whose relocation finished: (group, planned in segment, up to index).
    pub finished: Vec<(GroupId, u64, u64)>,
}

/// The relocations under way, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Relocator {
    queue: VecDeque<Relocation>,
    /// The oldest and active segment when the last plan was made.
    planned: Option<(u64, u64)>,
}

impl Relocator {
    /// Plans the relocation of the groups that keep the oldest segment, when more than
    /// `max_segments` are kept and none is under way. Only groups with little to move there
    /// (at most `small` bytes of live entries up to their highest index in it) are moved: a busy
    /// group's long unsnapshotted tail is purged by its next snapshot anyway, and moving it would
    /// only write it again (and again, while it stays longer than `max_segments` segments). Past
    /// four times `max_segments` every pinning group is moved, so that a large group that went
    /// idle before its snapshot cannot keep segments forever either.
    pub fn plan(
        &mut self,
        table: &SegmentTable,
        state: &BTreeMap<GroupId, GroupMem>,
        max_segments: usize,
        small: u64,
        active: u64,
    ) {
        let max_segments = max_segments.max(2);
        if !self.queue.is_empty() || table.len() <= max_segments {
            return;
        }
        let Some((oldest, pinning)) = table.oldest() else {
            return;
        };
        // Sizing the pinning groups walks their entries: once per oldest and active segment.
        if oldest >= active || self.planned == Some((oldest, active)) {
            return;
        }
        self.planned = Some((oldest, active));
        let all = table.len() > 4 * max_segments;
        let to_move = |group: &GroupId, upto: u64| -> u64 {
            state.get(group).map_or(0, |mem| {
                mem.entries
                    .range(..=upto)
                    .map(|(_, e)| e.len() as u64)
                    .sum()
            })
        };
        let moving: Vec<(GroupId, u64)> = pinning
            .into_iter()
            .filter(|(group, upto)| all || to_move(group, *upto) <= small)
            .collect();
        if moving.is_empty() {
            return;
        }
        tracing::debug!(
            segment = oldest,
            groups = moving.len(),
            kept = table.len(),
            "write-ahead log: moving the live entries that keep the oldest segment"
        );
        self.queue
            .extend(moving.into_iter().map(|(group, upto)| Relocation {
                group,
                next: 0,
                upto,
                since: active,
            }));
    }

    /// Encodes into `buf` the next entries to move, up to about `budget` bytes (at least one
    /// entry), from `state` (what the files hold before the batch that follows in `buf`).
    pub fn slice(
        &mut self,
        state: &BTreeMap<GroupId, GroupMem>,
        budget: usize,
        buf: &mut Vec<u8>,
    ) -> Result<Slice, postcard::Error> {
        let mut slice = Slice::default();
        let start = buf.len();
        while let Some(job) = self.queue.front_mut() {
            if buf.len() - start >= budget {
                break;
            }
            let mut entries: Vec<(u64, Arc<[u8]>)> = Vec::new();
            let mut bytes = buf.len() - start;
            let live = state
                .get(&job.group)
                .filter(|_| job.next <= job.upto)
                .map(|mem| mem.entries.range(job.next..=job.upto));
            let mut done = true;
            for (index, entry) in live.into_iter().flatten() {
                if bytes >= budget && !entries.is_empty() {
                    done = false;
                    break;
                }
                bytes += entry.len();
                entries.push((*index, entry.clone()));
                job.next = index + 1;
            }
            if !entries.is_empty() {
                let op = Op::Append(entries);
                let record = Record {
                    group: job.group.0,
                    op,
                };
                record::encode(&record, buf)?;
                slice.appends.push((job.group, record.op));
            }
            if !done {
                break;
            }
            slice.finished.push((job.group, job.since, job.upto));
            self.queue.pop_front();
        }
        Ok(slice)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_pinning_group_moves_in_slices_and_then_releases_the_oldest_segment() {
        let (idle, busy) = (GroupId(1), GroupId(2));
        let mut state: BTreeMap<GroupId, GroupMem> = BTreeMap::new();
        let mut table = SegmentTable::default();
        table.open(1);
        let op = Op::Append((1..=10).map(|i| (i, Arc::from(vec![7u8; 100]))).collect());
        table.record(1, idle, &op);
        state.entry(idle).or_default().apply(&op);
        for seq in 2..=4 {
            table.open(seq);
            table.record(seq, busy, &Op::Append(vec![(seq, Arc::from(vec![1u8]))]));
        }
        let mut relocator = Relocator::default();
        relocator.plan(&table, &state, 3, 4096, 4);
        let mut moved = Vec::new();
        let mut slices = 0;
        loop {
            let mut buf = Vec::new();
            let slice = relocator.slice(&state, 250, &mut buf).unwrap();
            if slice.appends.is_empty() && slice.finished.is_empty() {
                break;
            }
            slices += 1;
            assert!(buf.len() < 250 + 200, "a slice of {} bytes", buf.len());
            for (group, op) in &slice.appends {
                table.record(4, *group, op);
                if let Op::Append(entries) = op {
                    moved.extend(entries.iter().map(|(i, _)| *i));
                }
            }
            for (group, since, upto) in slice.finished {
                table.release(group, since, upto);
            }
        }
        assert_eq!(moved, (1..=10).collect::<Vec<_>>());
        assert!(slices > 1, "the move was sliced");
        assert_eq!(table.deletable(4), Some(1));
    }

    #[test]
    fn a_group_with_a_long_tail_is_left_to_purge_unless_far_too_many_segments_are_kept() {
        let (small, big) = (GroupId(1), GroupId(2));
        let mut state: BTreeMap<GroupId, GroupMem> = BTreeMap::new();
        let mut table = SegmentTable::default();
        table.open(1);
        for (group, size) in [(small, 10), (big, 1000)] {
            let op = Op::Append((1..=10).map(|i| (i, Arc::from(vec![0u8; size]))).collect());
            table.record(1, group, &op);
            state.entry(group).or_default().apply(&op);
        }
        let planned = |segments: u64| {
            let mut table = SegmentTable::default();
            for seq in 1..=segments {
                table.open(seq);
            }
            table.record(1, small, &Op::Append(vec![(10, Arc::from(vec![0u8]))]));
            table.record(1, big, &Op::Append(vec![(10, Arc::from(vec![0u8]))]));
            let mut relocator = Relocator::default();
            relocator.plan(&table, &state, 3, 1000, segments);
            relocator.queue.iter().map(|r| r.group).collect::<Vec<_>>()
        };
        assert_eq!(planned(3), vec![], "not more than max_segments kept");
        assert_eq!(planned(4), vec![small], "the big group purges on its own");
        assert_eq!(
            planned(13),
            vec![small, big],
            "past 4 x max_segments, everyone"
        );
    }
}
