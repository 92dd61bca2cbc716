//! The ready messages of a queue: FIFO per priority level, highest level first.
//!
//! A plain queue has one level. A priority queue (`x-max-priority` = N) has N + 1 levels and
//! puts a message at `min(priority, N)`; within a level order is by sequence number, so
//! requeued messages return to their original place.

use super::QueuedMessage;
use std::collections::VecDeque;
use std::time::Instant;

/// Ready messages, with their count and total body size.
#[derive(Default)]
pub struct Ready {
    levels: Vec<VecDeque<QueuedMessage>>,
    len: usize,
    bytes: usize,
    /// Messages whose own TTL may expire before messages ahead of them.
    pub uneven_expiry: usize,
}

impl Ready {
    /// An empty list with `max_priority + 1` levels (one without priorities).
    pub fn new(max_priority: Option<u8>) -> Ready {
        let levels = max_priority.map_or(1, |p| usize::from(p) + 1);
        Ready {
            levels: (0..levels).map(|_| VecDeque::new()).collect(),
            ..Ready::default()
        }
    }

    fn level(&self, m: &QueuedMessage) -> usize {
        let top = self.levels.len() - 1;
        if top == 0 {
            return 0;
        }
        usize::from(m.message.meta.priority.unwrap_or(0)).min(top)
    }

    /// Number of ready messages.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Total body bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn added(&mut self, m: &QueuedMessage) {
        self.len += 1;
        self.bytes += m.message.body.len();
        if m.message.meta.expiration_ms.is_some() {
            self.uneven_expiry += 1;
        }
    }

    fn removed(&mut self, m: &QueuedMessage) {
        self.len -= 1;
        self.bytes -= m.message.body.len();
        if m.message.meta.expiration_ms.is_some() {
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
        let level = &mut self.levels[l];
        let at = level.partition_point(|r| r.seq < m.seq);
        level.insert(at, m);
    }

    /// The next message to deliver.
    pub fn front(&self) -> Option<&QueuedMessage> {
        self.levels.iter().rev().find_map(|l| l.front())
    }

    /// Takes the next message to deliver.
    pub fn pop_front(&mut self) -> Option<QueuedMessage> {
        let m = self.levels.iter_mut().rev().find_map(|l| l.pop_front())?;
        self.removed(&m);
        Some(m)
    }

    /// Takes every message out.
    pub fn drain(&mut self) -> Vec<QueuedMessage> {
        let out: Vec<QueuedMessage> = self.levels.iter_mut().flat_map(|l| l.drain(..)).collect();
        self.len = 0;
        self.bytes = 0;
        self.uneven_expiry = 0;
        out
    }

    /// Takes out the expired messages at the head of every priority level (where, with only
    /// the queue's TTL, the expired ones of that level are).
    pub fn take_expired_heads(&mut self, now: Instant) -> Vec<QueuedMessage> {
        let mut expired = Vec::new();
        for level in self.levels.iter_mut().rev() {
            while level.front().is_some_and(|m| m.expired(now)) {
                expired.extend(level.pop_front());
            }
        }
        for m in &expired {
            self.removed(m);
        }
        expired
    }

    /// Takes out every message that expired by `now`, wherever it sits.
    pub fn take_expired(&mut self, now: Instant) -> Vec<QueuedMessage> {
        let mut expired = Vec::new();
        for l in 0..self.levels.len() {
            let level = std::mem::take(&mut self.levels[l]);
            let (dead, live): (VecDeque<_>, VecDeque<_>) =
                level.into_iter().partition(|m| m.expired(now));
            self.levels[l] = live;
            expired.extend(dead);
        }
        for m in &expired {
            self.removed(m);
        }
        expired
    }
}
