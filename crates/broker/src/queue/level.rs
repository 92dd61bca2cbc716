//! One priority level of a ready list, 16 bytes per message.
//!
//! A [`QueuedMessage`] takes 32 bytes (message handle 8, seq 8, expiry 8, delivery count 4,
//! two flags), and a queue that keeps its messages in memory holds millions of them. Most
//! never have an expiry (no TTL) or a delivery count (never given back), so a level keeps each
//! message as an [`Entry`] of 16 bytes (the handle, and the seq with the two flags packed into
//! one word) and the rare fields in [`Extra`]s of 12 bytes in a second list, in step with the
//! first, which exists only while some message of the level has one: a queue with a TTL costs
//! 28 bytes per message, any other 16 (docs/performance.md, "Memory per message").

use super::{Deadline, QueuedMessage};
use crate::message::Message;
use pigeon_store::Chunked;
use std::time::Instant;

/// Seqs are below this (56 bits): the low byte of an entry's word holds its flags. At a
/// million messages a second into one queue, 2,284 years; `Queue::enqueue` refuses a message
/// rather than wrap.
pub const SEQ_LIMIT: u64 = 1 << 56;

/// Flag: delivered before and given back.
const REDELIVERED: u64 = 1;
/// Flag: in the queue's log.
const PERSISTED: u64 = 2;
const FLAG_BITS: u32 = 8;

/// A ready message: 16 bytes.
struct Entry {
    message: Message,
    /// `seq << 8 | flags`.
    word: u64,
}

impl Entry {
    fn seq(&self) -> u64 {
        self.word >> FLAG_BITS
    }
}

/// The fields most messages do without: 12 bytes (the deadline split in two `u32`s, so the
/// struct is 4-aligned and not padded to 16).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Extra {
    /// `Deadline::to_bits`, 0 for none.
    expires_at: [u32; 2],
    delivery_count: u32,
}

impl Extra {
    fn expires_at(self) -> Option<Deadline> {
        let bits = u64::from(self.expires_at[0]) | u64::from(self.expires_at[1]) << 32;
        (bits != 0).then(|| Deadline::from_bits(bits))
    }
}

/// Splits a message into its entry and its extra fields.
fn split(m: QueuedMessage) -> (Entry, Extra) {
    let mut flags = 0;
    if m.redelivered {
        flags |= REDELIVERED;
    }
    if m.persisted {
        flags |= PERSISTED;
    }
    debug_assert!(m.seq < SEQ_LIMIT);
    let bits = m.expires_at.map_or(0, Deadline::to_bits);
    let extra = Extra {
        expires_at: [bits as u32, (bits >> 32) as u32],
        delivery_count: m.delivery_count,
    };
    let entry = Entry {
        message: m.message,
        word: (m.seq << FLAG_BITS) | flags,
    };
    (entry, extra)
}

fn join(e: Entry, x: Extra) -> QueuedMessage {
    QueuedMessage {
        seq: e.seq(),
        redelivered: e.word & REDELIVERED != 0,
        persisted: e.word & PERSISTED != 0,
        expires_at: x.expires_at(),
        delivery_count: x.delivery_count,
        message: e.message,
    }
}

/// The messages of one priority level, in seq order.
#[derive(Default)]
pub struct Level {
    entries: Chunked<Entry>,
    /// One per entry, in step with `entries`, while any entry has an expiry or a delivery
    /// count; dropped when the level empties.
    extras: Option<Chunked<Extra>>,
}

impl Level {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The extras list, made (with an empty `Extra` for every entry so far) if there is none.
    fn extras_for(&mut self, x: Extra) -> Option<&mut Chunked<Extra>> {
        if self.extras.is_none() && x != Extra::default() {
            let mut list = Chunked::new();
            list.extend_with(self.entries.len(), Extra::default());
            self.extras = Some(list);
        }
        self.extras.as_mut()
    }

    /// Appends a message (it has the highest seq of the level).
    pub fn push_back(&mut self, m: QueuedMessage) {
        let (e, x) = split(m);
        if let Some(extras) = self.extras_for(x) {
            extras.push_back(x);
        }
        self.entries.push_back(e);
    }

    /// Puts a message at its place by seq.
    pub fn insert(&mut self, m: QueuedMessage) {
        let (e, x) = split(m);
        let seq = e.seq();
        let at = self.entries.partition_point(|r| r.seq() < seq);
        if let Some(extras) = self.extras_for(x) {
            extras.insert(at, x);
        }
        self.entries.insert(at, e);
    }

    /// Takes the first message out.
    pub fn pop_front(&mut self) -> Option<QueuedMessage> {
        let e = self.entries.pop_front()?;
        let x = match &mut self.extras {
            Some(extras) => extras.pop_front().unwrap_or_default(),
            None => Extra::default(),
        };
        if self.entries.is_empty() {
            self.extras = None;
        }
        Some(join(e, x))
    }

    /// Whether there is a first message and its TTL ran out before `now`.
    pub fn front_expired(&self, now: Instant) -> bool {
        !self.entries.is_empty()
            && self
                .extras
                .as_ref()
                .and_then(|x| x.front())
                .and_then(|x| x.expires_at())
                .is_some_and(|t| now > t.instant())
    }

    /// Takes every message out, in order; each chunk of the lists is freed as it is walked.
    pub fn drain(&mut self) -> impl Iterator<Item = QueuedMessage> {
        let mut extras = self.extras.take().map(|mut x| x.drain());
        self.entries.drain().map(move |e| {
            let x = extras.as_mut().and_then(Iterator::next).unwrap_or_default();
            join(e, x)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{OpaqueProperties, Properties};
    use bytes::Bytes;
    use std::time::Duration;

    static CODEC: OpaqueProperties = OpaqueProperties;

    fn msg(seq: u64) -> QueuedMessage {
        QueuedMessage {
            message: Message::new(
                "",
                "k",
                Properties::new(Bytes::new(), &CODEC),
                Bytes::from(seq.to_string()),
                0,
            ),
            seq,
            redelivered: false,
            expires_at: None,
            delivery_count: 0,
            persisted: seq.is_multiple_of(3),
        }
    }

    fn seqs(level: &mut Level) -> Vec<(u64, bool, bool, Option<Deadline>, u32)> {
        level
            .drain()
            .map(|m| {
                assert_eq!(m.message.body(), m.seq.to_string().as_bytes());
                (
                    m.seq,
                    m.redelivered,
                    m.persisted,
                    m.expires_at,
                    m.delivery_count,
                )
            })
            .collect()
    }

    #[test]
    fn entries_are_16_bytes_and_extras_12() {
        assert_eq!(std::mem::size_of::<Entry>(), 16);
        assert_eq!(std::mem::size_of::<Extra>(), 12);
    }

    #[test]
    fn every_field_reads_back_with_or_without_extras() {
        let now = Instant::now();
        let deadline = Deadline::at(now + Duration::from_secs(5));
        let mut level = Level::default();
        for seq in [0, 2, 4, SEQ_LIMIT - 1] {
            level.push_back(msg(seq));
        }
        assert!(level.extras.is_none());
        // A requeued message with a delivery count and an expiry: the extras appear.
        let mut back = msg(3);
        back.redelivered = true;
        back.delivery_count = 7;
        back.expires_at = Some(deadline);
        level.insert(back);
        level.insert(msg(1));
        assert!(level.extras.is_some());
        assert!(!level.front_expired(now));
        assert_eq!(
            seqs(&mut level),
            vec![
                (0, false, true, None, 0),
                (1, false, false, None, 0),
                (2, false, false, None, 0),
                (3, true, true, Some(deadline), 7),
                (4, false, false, None, 0),
                (SEQ_LIMIT - 1, false, true, None, 0),
            ]
        );
        assert!(level.is_empty() && level.extras.is_none());
    }

    #[test]
    fn the_extras_go_when_the_level_empties() {
        let now = Instant::now();
        let mut level = Level::default();
        let mut m = msg(1);
        m.expires_at = Some(Deadline::at(now));
        level.push_back(m);
        level.push_back(msg(2));
        assert!(level.front_expired(now + Duration::from_nanos(1)));
        assert!(level.pop_front().is_some_and(|m| m.expires_at.is_some()));
        assert!(!level.front_expired(now + Duration::from_secs(1)));
        assert!(level.extras.is_some());
        assert!(level.pop_front().is_some_and(|m| m.expires_at.is_none()));
        assert!(level.extras.is_none() && level.pop_front().is_none());
    }
}
