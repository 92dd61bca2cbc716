//! Paging for priority queues (`x-max-priority`): the same head and tail as a plain queue
//! (`paging.rs`), kept per priority level.
//!
//! - **One log, one seq space.** Every message still gets the queue's next seq and pages out
//!   to the queue's one log, so the store's index stays dense (16 bytes per paged-out
//!   message). Since the levels interleave in the log, each level lists the seqs of its own
//!   paged-out messages ([`SeqList`]), delta-encoded: about one byte per message when the
//!   levels are mixed, as a level's consecutive seqs are close.
//! - **Order per level.** A new message goes to its level's tail while that tail is not
//!   empty, or when the queue's head (all levels together) is at its limits; page-in appends
//!   a level's tail to that level's head in seq order; requeued messages are older than their
//!   level's tail and go back into the head by seq. So within a level every head seq is below
//!   every tail seq, and delivery (highest level first, FIFO within a level) is exact.
//! - **Page-in.** When the head runs low (as for a plain queue), the tail of the highest level
//!   that has one is read back. And whenever the highest level holding messages has an empty
//!   head but a tail, that tail is read back before anything is delivered, even when lower
//!   levels fill the head: a batch of at most `1 / (2 x levels)` of the limits, so the head
//!   never holds more than 1.5 times the limits (plus one message).
//! - **Restart.** A persistent message's record carries its level as the log's tag
//!   ([`QueueLog::append_tagged`]), which the store keeps in its index and checkpoints: at
//!   start the live messages are listed by level from the index alone, every one into its
//!   level's tail, and the head is paged in as usual (a head-full of the highest levels). So a
//!   restart reads no record it does not deliver first, and with a checkpoint it reads no log.
//!   Records without a tag are read at start, as all were before tags: transient messages
//!   (written when they paged out; dropped and acknowledged there, so they are not counted),
//!   and records written by a build without tags (their level is in their properties). As for
//!   a plain queue (`paging.rs`, **Bytes**), a record not read back since the start counts 0
//!   body bytes until it is.
//!
//! RabbitMQ's classic priority queue is one backing queue per priority (`rabbit_priority_queue`),
//! each paging on its own; fetching and drop-head both take the highest priority's oldest
//! message (`find2` over the levels, highest first), as `Ready::pop_front` does here.

use super::paging::{PagingLimits, ReadBack, PAGE_IN_BATCH};
use super::{unix_ms, Queue, State};
use pigeon_store::QueueLog;
use std::collections::VecDeque;
use std::time::Instant;

/// Increasing seqs, each stored as its distance from the previous one in LEB128 (7 bits a
/// byte): one byte for a distance under 128.
#[derive(Debug, Default)]
pub struct SeqList {
    bytes: VecDeque<u8>,
    /// The seq last taken (the first one is stored as its distance from this).
    front: u64,
    /// The seq last pushed.
    back: u64,
    len: usize,
}

impl SeqList {
    /// Appends `seq`, which must be above every seq in the list.
    pub fn push(&mut self, seq: u64) {
        if self.len == 0 {
            self.front = 0;
            self.back = 0;
        }
        let mut delta = seq.wrapping_sub(self.back);
        loop {
            let low = (delta & 0x7f) as u8;
            delta >>= 7;
            if delta == 0 {
                self.bytes.push_back(low);
                break;
            }
            self.bytes.push_back(low | 0x80);
        }
        self.back = seq;
        self.len += 1;
    }

    /// Takes the lowest seq.
    pub fn pop(&mut self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        let mut delta = 0u64;
        let mut shift = 0u32;
        while let Some(b) = self.bytes.pop_front() {
            delta |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        self.len -= 1;
        self.front = self.front.wrapping_add(delta);
        if self.len == 0 {
            self.bytes = VecDeque::new();
        } else if self.bytes.capacity() > 4096 && self.bytes.len() < self.bytes.capacity() / 4 {
            // Give back what a drained backlog left (a deque never shrinks by itself).
            self.bytes.shrink_to(self.bytes.capacity() / 2);
        }
        Some(self.front)
    }

    /// How many seqs it holds.
    pub fn len(&self) -> usize {
        self.len
    }
}

/// The tail of one priority level: its paged-out messages, by seq.
#[derive(Debug, Default)]
pub struct LevelTail {
    pub seqs: SeqList,
}

impl Queue {
    /// Pages in the tail of the highest level that has one: a head-full when the head is low,
    /// else (the highest level holding messages has only a tail) a small batch. False when
    /// nothing can be read (no log or codec).
    pub(super) fn page_in_level(&self, st: &mut State, now: Instant, limits: PagingLimits) -> bool {
        let Some(level) = st.ready.highest_tail_level() else {
            return false;
        };
        let (Some(log), Some(codec)) = (self.log.get().cloned(), st.codec) else {
            tracing::error!(queue = %self.name, "cannot page messages in: no log or codec");
            return false;
        };
        let head = st.ready.head_len();
        let low = head == 0
            || (head < limits.resident_messages / 2
                && st.ready.resident_bytes() < limits.resident_bytes / 2);
        let (room, max_bytes) = if low {
            (
                limits
                    .resident_messages
                    .saturating_sub(head)
                    .clamp(1, PAGE_IN_BATCH),
                limits.resident_bytes,
            )
        } else {
            let share = st.ready.level_count() * 2;
            (
                (limits.resident_messages / share).clamp(1, PAGE_IN_BATCH),
                st.ready.resident_bytes() + limits.resident_bytes / share,
            )
        };
        let unix_now = unix_ms();
        for _ in 0..room {
            let Some(seq) = st.ready.pop_level_seq(level) else {
                break;
            };
            let found = log.live_from(seq, 1).into_iter().find(|r| r.seq == seq);
            let Some(r) = found else {
                // Acknowledged behind the queue's back (a damaged log): nothing to deliver.
                tracing::warn!(queue = %self.name, seq, "a paged-out message is missing from the log");
                st.ready.tail.take(0);
                continue;
            };
            match self.read_back(st, &log, codec, r, now, unix_now) {
                ReadBack::Message(m, counted) => {
                    st.ready.tail.take(counted);
                    st.ready.push(m);
                }
                ReadBack::Skipped(estimate) => {
                    st.ready.tail.take(estimate);
                    continue;
                }
            }
            if st.ready.resident_bytes() >= max_bytes {
                break;
            }
        }
        true
    }

    /// Loads a priority queue's log at start: every live record goes to its level's tail (the
    /// caller then pages the head in), in seq order, so each level stays FIFO. A tagged record's
    /// level is its tag, from the index (no read); an untagged one is read to find its level
    /// (a transient message written before this start is dropped there). The ones read keep
    /// their place in the head while it has room and their level's tail is empty.
    pub(super) fn restore_levels(&self, st: &mut State, log: &QueueLog, now: Instant) {
        let Some(codec) = st.codec else {
            return;
        };
        let unix_now = unix_ms();
        let mut from = 0u64;
        loop {
            let batch = log.live_from(from, RESTORE_BATCH);
            let Some(last) = batch.last() else {
                return;
            };
            let next = last.seq.checked_add(1);
            for r in batch {
                if let Some(level) = r.tag {
                    // Written before this start: counts 0 bytes until read (`paging.rs`).
                    st.ready.paged_out_seq(usize::from(level), r.seq, 0);
                    continue;
                }
                // Counted by nobody yet: `read_back` only says what to take off.
                if let ReadBack::Message(m, _) = self.read_back(st, log, codec, r, now, unix_now) {
                    if st.ready.pages_out(&m) {
                        let level = usize::from(st.ready.log_tag(&m).unwrap_or(0));
                        st.ready.paged_out_seq(level, m.seq, 0);
                    } else {
                        st.ready.push(m);
                    }
                }
            }
            match next {
                Some(next) => from = next,
                None => return,
            }
        }
    }
}

/// Index entries listed per hold of the log's lock at start (no record is read for most).
const RESTORE_BATCH: usize = 4096;

#[cfg(test)]
#[path = "prio_paging_tests.rs"]
mod tests;
