//! The ready messages of a queue: FIFO per priority level, highest level first.
//!
//! A plain queue has one level. A priority queue (`x-max-priority` = N) has N + 1 levels and
//! puts a message at `min(priority, N)`; within a level order is by sequence number, so
//! requeued messages return to their original place.
//!
//! A plain queue with a log can also page out (`paging.rs`): the messages in memory are then
//! the *head*, and behind it is a *tail* of messages that live only in the log, kept here as a
//! count. Every head seq is below every tail seq, so the head is delivered first and the tail
//! is read back, in order, as the head runs low. Counts and sizes include the tail; only
//! [`Ready::resident_bytes`] and [`Ready::head_len`] do not.
//!
//! A priority queue pages out too, with a tail per level (`prio_paging.rs`): `tail` then
//! holds the count and bytes of all of them, and each level lists its own seqs.

use super::level::Level;
use super::paging::{PagingLimits, Tail};
use super::prio_paging::LevelTail;
use super::QueuedMessage;
use std::time::Instant;

/// Ready messages, with their count and total body size.
///
/// Each level is a [`Level`] (16 bytes per message) of `pigeon_store::Chunked` lists, not a
/// `VecDeque`: a queue that cannot page (a memory-only broker, a priority queue) may hold
/// millions of messages, and a `VecDeque` of them doubles its buffer in one push (copying the
/// whole list into new pages before freeing the old ones), a step the memory alarm cannot
/// anticipate. Chunks grow the list 4096 entries at a time.
#[derive(Default)]
pub struct Ready {
    levels: Vec<Level>,
    /// Messages in memory (the head).
    len: usize,
    /// Body bytes in memory.
    bytes: usize,
    /// Messages whose own TTL may expire before messages ahead of them (in memory).
    pub uneven_expiry: usize,
    /// Messages behind the head that live only in the queue's log.
    pub tail: Tail,
    /// Set when the queue pages out (it has a log, or a store to open one in).
    limits: Option<PagingLimits>,
    /// A priority queue that pages out: the tail of each level (`tail` counts them all).
    level_tails: Option<Box<[LevelTail]>>,
}

impl Ready {
    /// An empty list with `max_priority + 1` levels (one without priorities). `limits` makes
    /// it page out past them (the queue must have a log, or a store to open one in).
    pub fn new(max_priority: Option<u8>, limits: Option<PagingLimits>) -> Ready {
        let levels = max_priority.map_or(1, |p| usize::from(p) + 1);
        Ready {
            levels: (0..levels).map(|_| Level::default()).collect(),
            limits,
            level_tails: (levels > 1 && limits.is_some())
                .then(|| (0..levels).map(|_| LevelTail::default()).collect()),
            ..Ready::default()
        }
    }

    /// The resident limits, if the list pages out.
    pub fn limits(&self) -> Option<PagingLimits> {
        self.limits
    }

    /// Whether a new message goes to the tail: the tail (of its level) is not empty (it must
    /// stay behind the head), or the head is full. Always false for a queue that does not page.
    #[inline]
    pub fn pages_out(&self, m: &QueuedMessage) -> bool {
        self.limits.is_some_and(|l| {
            self.behind_tail(m)
                || self.len >= l.resident_messages
                || self.bytes + m.message.body_len() > l.resident_bytes
        })
    }

    /// Whether a new message must go behind paged-out ones: the tail of its level is not empty.
    #[inline]
    pub fn behind_tail(&self, m: &QueuedMessage) -> bool {
        self.tail.count > 0
            && self
                .level_tails
                .as_ref()
                .is_none_or(|t| t[self.level(m)].seqs.len() > 0)
    }

    /// Records a message written to the log only (its body is not kept): it joins the tail of
    /// the queue, or of its level.
    pub fn paged_out(&mut self, m: &QueuedMessage) {
        let l = self.level(m);
        if let Some(tails) = self.level_tails.as_mut() {
            tails[l].seqs.push(m.seq);
        } else if self.tail.count == 0 {
            self.tail.next = m.seq;
        }
        self.tail.count += 1;
        self.tail.bytes += m.message.body_len();
    }

    /// Whether the head ran low (under half its limits, or empty) while the tail holds more,
    /// or (priority queue) the highest level holding messages has them only in its tail.
    #[inline]
    pub fn wants_page_in(&self) -> bool {
        self.tail.count > 0
            && self.limits.is_some_and(|l| {
                self.len == 0
                    || (self.len < l.resident_messages / 2 && self.bytes < l.resident_bytes / 2)
                    || self.top_level_paged_out()
            })
    }

    /// Whether the highest level holding messages has an empty head and a tail.
    fn top_level_paged_out(&self) -> bool {
        let Some(tails) = self.level_tails.as_ref() else {
            return false;
        };
        for (head, tail) in self.levels.iter().zip(tails.iter()).rev() {
            if !head.is_empty() {
                return false;
            }
            if tail.seqs.len() > 0 {
                return true;
            }
        }
        false
    }

    /// The highest priority level whose tail is not empty (priority queues only).
    pub fn highest_tail_level(&self) -> Option<usize> {
        self.level_tails
            .as_ref()?
            .iter()
            .rposition(|t| t.seqs.len() > 0)
    }

    /// Takes the lowest paged-out seq of `level` (its tail's next one to read back).
    pub fn pop_level_seq(&mut self, level: usize) -> Option<u64> {
        self.level_tails.as_mut()?.get_mut(level)?.seqs.pop()
    }

    /// The tag a message's log record carries: its priority level, in a priority queue that
    /// pages by level (`prio_paging.rs`, **Restart**); `None` in a plain queue.
    pub fn log_tag(&self, m: &QueuedMessage) -> Option<u8> {
        self.level_tails.as_ref()?;
        u8::try_from(self.level(m)).ok()
    }

    /// Records a message of `level` that is only in the log (at a restart: its body was not
    /// read), counting `bytes` of body for it.
    pub fn paged_out_seq(&mut self, level: usize, seq: u64, bytes: usize) {
        let top = self.levels.len() - 1;
        if let Some(tails) = self.level_tails.as_mut() {
            tails[level.min(top)].seqs.push(seq);
            self.tail.count += 1;
            self.tail.bytes += bytes;
        }
    }

    /// Number of priority levels.
    pub fn level_count(&self) -> usize {
        self.levels.len()
    }

    /// Whether the tail is kept per level (a priority queue that pages out).
    pub fn pages_by_level(&self) -> bool {
        self.level_tails.is_some()
    }

    /// Empties the tail (its messages are dropped), calling `each` with the seq of every
    /// message of a per-level tail; returns what the tail held.
    pub fn take_tail(&mut self, mut each: impl FnMut(u64)) -> Tail {
        if let Some(tails) = self.level_tails.as_mut() {
            for t in tails.iter_mut() {
                while let Some(seq) = t.seqs.pop() {
                    each(seq);
                }
            }
        }
        std::mem::take(&mut self.tail)
    }

    /// Messages in memory.
    pub fn head_len(&self) -> usize {
        self.len
    }

    /// Body bytes in memory (what the memory alarm counts).
    pub fn resident_bytes(&self) -> usize {
        self.bytes
    }

    fn level(&self, m: &QueuedMessage) -> usize {
        let top = self.levels.len() - 1;
        if top == 0 {
            return 0;
        }
        usize::from(m.message.meta().priority.unwrap_or(0)).min(top)
    }

    /// Number of ready messages in memory (the head).
    pub fn resident_len(&self) -> usize {
        self.len
    }

    /// Number of ready messages, the tail included.
    pub fn len(&self) -> usize {
        self.len + self.tail.count
    }

    /// Total body bytes, the tail included. Never more than the truth (what length limits
    /// need): after a restart, records not read back yet count 0 (`paging.rs`, **Bytes**).
    pub fn bytes(&self) -> usize {
        self.bytes + self.tail.bytes
    }

    fn added(&mut self, m: &QueuedMessage) {
        self.len += 1;
        self.bytes += m.message.body_len();
        if m.message.meta().expiration_ms.is_some() {
            self.uneven_expiry += 1;
        }
    }

    fn removed(&mut self, m: &QueuedMessage) {
        self.len -= 1;
        self.bytes -= m.message.body_len();
        if m.message.meta().expiration_ms.is_some() {
            self.uneven_expiry -= 1;
        }
    }

    /// Appends a new message (it has the highest sequence number so far).
    pub fn push(&mut self, m: QueuedMessage) {
        self.added(&m);
        let l = self.level(&m);
        self.levels[l].push_back(m);
    }

    /// Puts a message back at its place by sequence number.
    pub fn insert(&mut self, m: QueuedMessage) {
        self.added(&m);
        let l = self.level(&m);
        self.levels[l].insert(m);
    }

    /// Whether the next message to deliver is in memory and its TTL ran out before `now`.
    pub fn front_expired(&self, now: Instant) -> bool {
        self.levels
            .iter()
            .rev()
            .find(|l| !l.is_empty())
            .is_some_and(|l| l.front_expired(now))
    }

    /// Takes the next message to deliver, if it is in memory (page the tail in first).
    pub fn pop_front(&mut self) -> Option<QueuedMessage> {
        let m = self.levels.iter_mut().rev().find_map(|l| l.pop_front())?;
        self.removed(&m);
        Some(m)
    }

    /// Drops every message in memory (the caller empties the tail): returns how many there
    /// were, and the seqs of those that are in the queue's log (to acknowledge there). The
    /// messages are dropped as they are walked, and each chunk of the list with them, so a
    /// queue of millions deleted or purged never needs a second copy of its list (collecting
    /// them into a `Vec` first, as before, added up to ~20% of their memory for a moment).
    pub fn clear(&mut self) -> (usize, Vec<u64>) {
        let n = self.len;
        let mut persisted = Vec::new();
        for level in &mut self.levels {
            for m in level.drain() {
                if m.persisted {
                    persisted.push(m.seq);
                }
            }
        }
        self.len = 0;
        self.bytes = 0;
        self.uneven_expiry = 0;
        (n, persisted)
    }

    /// Takes out the expired messages in memory at the head of every priority level (where,
    /// with only the queue's TTL, the expired ones of that level are).
    pub fn take_expired_heads(&mut self, now: Instant) -> Vec<QueuedMessage> {
        let mut expired = Vec::new();
        for level in self.levels.iter_mut().rev() {
            while level.front_expired(now) {
                expired.extend(level.pop_front());
            }
        }
        for m in &expired {
            self.removed(m);
        }
        expired
    }

    /// Takes out every message in memory that expired by `now`, wherever it sits.
    pub fn take_expired(&mut self, now: Instant) -> Vec<QueuedMessage> {
        let mut expired = Vec::new();
        for l in 0..self.levels.len() {
            let mut level = std::mem::take(&mut self.levels[l]);
            let mut live = Level::default();
            for m in level.drain() {
                if m.expired(now) {
                    expired.push(m);
                } else {
                    live.push_back(m);
                }
            }
            self.levels[l] = live;
        }
        for m in &expired {
            self.removed(m);
        }
        expired
    }
}
