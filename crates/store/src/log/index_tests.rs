//! Tests of the live index (`index.rs`): packing, the dense window and the sparse tree.

use super::*;
use proptest::prelude::*;

fn at(segment: u64, offset: u64, len: u32) -> Location {
    Location {
        segment,
        offset,
        len,
    }
}

#[test]
fn entries_pack_and_wide_locations_round_trip() {
    let mut index = LiveIndex::default();
    let small = at(3, 4096, 100);
    let big_segment = at(u64::from(u32::MAX), 8, 50);
    let big_offset = at(1, u64::from(u32::MAX) + 10, 60);
    assert_eq!(index.insert(1, small, false), None);
    assert_eq!(index.insert(2, big_segment, true), None);
    assert_eq!(index.insert(3, big_offset, false), None);
    assert_eq!(index.wide.len(), 2);
    let listed: Vec<_> = index.from(0).collect();
    assert_eq!(
        listed,
        vec![
            (1, small, false),
            (2, big_segment, true),
            (3, big_offset, false)
        ]
    );
    assert_eq!(index.mark_delivered(3), Some(big_offset));
    assert_eq!(index.mark_delivered(3), None);
    assert_eq!(index.mark_delivered(9), None);

    // Replacing: wide by packed, packed by wide, wide by wide.
    assert_eq!(index.insert(2, small, false), Some(big_segment));
    assert_eq!(index.wide.len(), 1);
    assert_eq!(index.insert(1, big_segment, false), Some(small));
    assert_eq!(index.insert(1, big_offset, false), Some(big_segment));
    assert_eq!(index.remove(1), Some(big_offset));
    assert_eq!(index.remove(3), Some(big_offset));
    assert_eq!(index.remove(3), None);
    assert!(index.wide.is_empty());
    assert_eq!(index.seqs(..), vec![2]);
    assert_eq!(std::mem::size_of::<Entry>(), 16);
}

#[test]
fn a_message_held_at_the_front_does_not_keep_the_window_growing() {
    let mut index = LiveIndex::default();
    for seq in 0..100_000u64 {
        index.insert(seq, at(0, seq * 10, 10), false);
        if seq >= 2 {
            index.remove(seq - 1);
        }
    }
    // Live: 0 (held) and 99,999.
    assert_eq!(index.seqs(..), vec![0, 99_999]);
    assert!(index.dense.capacity() <= 8 * MIN_COMPACT);
    // A long queue drained gives its window's memory back.
    for seq in 100_000..1_000_000u64 {
        index.insert(seq, at(0, seq, 10), false);
    }
    let big = index.dense.capacity();
    for seq in 99_999..1_000_000u64 {
        index.remove(seq);
    }
    assert!(
        index.dense.capacity() * 100 < big,
        "{big} -> {}",
        index.dense.capacity()
    );
    assert_eq!(index.seqs(..), vec![0]);
    assert!(
        index.dense.len() <= MIN_COMPACT + 1,
        "{}",
        index.dense.len()
    );
}

impl LiveIndex {
    /// Checks the invariants the lookups rely on.
    fn check(&self) {
        if let Some(last) = (self.dense.len() as u64).checked_sub(1) {
            let inside = self.sparse.range(self.base..=self.base + last).next();
            assert!(
                inside.is_none(),
                "a sparse seq inside the window: {inside:?}"
            );
        }
        let live = self.dense.iter().filter(|e| !e.is_hole()).count();
        assert_eq!(live, self.dense_live);
    }
}

#[test]
fn seqs_skipped_by_the_broker_do_not_push_later_ones_out_of_the_window() {
    // A durable queue with transient messages between persistent ones (or an MQTT session
    // mixing QoS 0 and QoS 1): the seqs appended have gaps, and the queue flows (acks
    // at the front).
    let mut index = LiveIndex::default();
    let mut model = BTreeMap::new();
    let mut seq = 0u64;
    for n in 0..50_000u64 {
        seq += 1 + n % 3; // gaps of 0, 1 and 2
        index.insert(seq, at(0, seq, 10), false);
        model.insert(seq, at(0, seq, 10));
        if model.len() > 2000 {
            let first = *model.keys().next().unwrap();
            assert_eq!(index.remove(first), model.remove(&first));
        }
    }
    index.check();
    assert_eq!(index.sparse.len(), 0, "every seq is in the packed window");
    assert!(
        index.dense.len() <= 3 * model.len(),
        "{}",
        index.dense.len()
    );
    let got: Vec<_> = index.from(0).map(|(s, l, _)| (s, l)).collect();
    let want: Vec<_> = model.iter().map(|(&s, &l)| (s, l)).collect();
    assert_eq!(got, want);

    // A gap too large for the window goes to the sparse tree; a later seq that extends
    // the window over it takes it back in.
    let mut index = LiveIndex::default();
    for seq in 0..5 {
        index.insert(seq, at(0, seq, 10), false);
    }
    index.insert(100, at(0, 100, 10), false);
    assert_eq!(index.sparse.len(), 1);
    index.insert(60, at(0, 60, 10), false);
    index.insert(110, at(0, 110, 10), false);
    index.check();
    assert_eq!(index.sparse.len(), 0);
    assert_eq!(index.seqs(..), vec![0, 1, 2, 3, 4, 60, 100, 110]);
    assert_eq!(index.remove(100), Some(at(0, 100, 10)));
    assert_eq!(index.len(), 7);
    // Far apart seqs stay sparse: the window never gets less than a quarter full.
    let mut index = LiveIndex::default();
    for n in 0..10_000u64 {
        index.insert(n * 10, at(0, n, 10), false);
    }
    index.check();
    assert!(index.dense.len() <= 4 * index.len().max(MIN_COMPACT));
    assert_eq!(index.len(), 10_000);
    // The last seq: no overflow.
    let mut index = LiveIndex::default();
    index.insert(u64::MAX - 1, at(0, 1, 10), false);
    index.insert(u64::MAX, at(0, 2, 10), false);
    index.insert(3, at(0, 3, 10), false);
    index.check();
    assert_eq!(index.seqs(..), vec![3, u64::MAX - 1, u64::MAX]);
}

#[test]
fn a_compacted_window_still_lists_removes_and_replaces_everything() {
    let mut index = LiveIndex::default();
    let mut model = BTreeMap::new();
    for seq in 0..5000u64 {
        index.insert(seq, at(1, seq, 30), false);
        model.insert(seq, at(1, seq, 30));
    }
    for seq in (0..5000u64).filter(|s| s % 10 != 0) {
        assert_eq!(index.remove(seq), model.remove(&seq));
    }
    assert!(
        !index.sparse.is_empty(),
        "the front moved to the sparse tree"
    );
    for seq in [0, 10, 4990, 5000, 7000] {
        let new = at(2, seq, 40);
        assert_eq!(index.insert(seq, new, false), model.insert(seq, new));
    }
    assert_eq!(index.mark_delivered(10), Some(at(2, 10, 40)));
    assert_eq!(index.remove(20), model.remove(&20));
    let got: Vec<_> = index.from(0).map(|(s, l, _)| (s, l)).collect();
    let want: Vec<_> = model.iter().map(|(&s, &l)| (s, l)).collect();
    assert_eq!(got, want);
    assert_eq!(index.len(), model.len());
    assert_eq!(
        index.seqs(15..=4990),
        model.range(15..=4990).map(|(&s, _)| s).collect::<Vec<_>>()
    );
}

#[derive(Clone, Debug)]
enum Op {
    Insert(u64, u64, bool),
    Remove(u64),
    Delivered(u64),
}

fn op() -> impl Strategy<Value = Op> {
    // Mostly consecutive seqs, as a broker appends them, with some anywhere.
    prop_oneof![
        4 => (0u64..3000, 0u64..3, any::<bool>()).prop_map(|(s, seg, w)| Op::Insert(s, seg, w)),
        4 => (0u64..3000).prop_map(Op::Remove),
        1 => (0u64..3000).prop_map(Op::Delivered),
    ]
}

proptest! {
    #[test]
    fn behaves_like_a_map(
        ops in prop::collection::vec(op(), 1..3000),
        sequential in 0u64..2500,
        gaps in any::<bool>(),
    ) {
        let mut index = LiveIndex::default();
        let mut model: BTreeMap<u64, (Location, bool)> = BTreeMap::new();
        let mut next = 0u64;
        for (n, op) in ops.into_iter().enumerate() {
            // Every other step appends the next seq, like a broker.
            let op = match op {
                Op::Insert(s, seg, wide) if (n as u64) < sequential => {
                    // With `gaps`, some seqs are skipped (by up to 99, past MAX_GAP).
                    if gaps && s % 4 == 0 {
                        next += s % 100;
                    }
                    next += 1;
                    Op::Insert(next - 1, seg, wide)
                }
                op => op,
            };
            match op {
                Op::Insert(seq, seg, wide) => {
                    let segment = if wide { u64::from(u32::MAX) + seg } else { seg };
                    let location = at(segment, seq, 20 + seg as u32);
                    let old = model.insert(seq, (location, false)).map(|(l, _)| l);
                    prop_assert_eq!(index.insert(seq, location, false), old);
                }
                Op::Remove(seq) => {
                    let old = model.remove(&seq).map(|(l, _)| l);
                    prop_assert_eq!(index.remove(seq), old);
                }
                Op::Delivered(seq) => {
                    let want = match model.get_mut(&seq) {
                        Some((l, d)) if !*d => { *d = true; Some(*l) }
                        _ => None,
                    };
                    prop_assert_eq!(index.mark_delivered(seq), want);
                }
            }
            prop_assert_eq!(index.len(), model.len());
            index.check();
        }
        let got: Vec<_> = index.from(0).collect();
        let want: Vec<_> = model.iter().map(|(&s, &(l, d))| (s, l, d)).collect();
        prop_assert_eq!(got, want);
        let from: Vec<_> = index.from(1500).map(|m| m.0).collect();
        let want: Vec<_> = model.range(1500..).map(|(&s, _)| s).collect();
        prop_assert_eq!(from, want);
        let seqs = index.seqs(100..2000);
        let want: Vec<_> = model.range(100..2000).map(|(&s, _)| s).collect();
        prop_assert_eq!(seqs, want);
    }
}
