//! Queues larger than memory: a plain queue with a log keeps at most a few megabytes of
//! messages in memory (the *head*); what arrives beyond that goes only to the log (the *tail*)
//! and is read back, in order, when the head runs low.
//!
//! - **Page-out** (at enqueue): when the tail is not empty, or the head is at its limit
//!   ([`PagingLimits`]), the message is appended to the log and its body dropped. A transient
//!   message is written too, so that it keeps its place, flagged transient in its record
//!   (`record.rs`): its publisher does not wait for the disk, and a restart drops it.
//! - **Page-in** (whenever the queue is about to look at its head): when the head falls under
//!   half its limits, the next live records from the tail's first seq onward are listed by the
//!   log ([`pigeon_store::QueueLog::live_from`]), read back and decoded as at a restart, in
//!   batches of up to 256 until the head is back over half its limits. The tail only ever
//!   holds messages never delivered since the last start, so their `redelivered` comes from
//!   the log's delivered flag.
//! - **Order**: every head seq is below every tail seq. A new message goes to the tail while
//!   it is not empty; page-in appends to the head in seq order; requeued messages have lower
//!   seqs than the tail and go back into the head by seq. So every live record of the log from
//!   the tail's first seq onward belongs to the tail, which a purge acknowledges as one range.
//! - **Restart**: the whole log is the tail and the head is paged in, so a queue of ten million
//!   messages starts by reading one head-full. Records written before the restart that are
//!   flagged transient are dropped when they are paged in.
//! - **Bytes**: the tail's byte total counts only what is known exactly: the bodies of the
//!   messages paged out since the start. A record written before the start counts 0 bytes
//!   until it is read back (its body length is not known without reading it, and an estimate
//!   from its frame length would count its exchange, routing key and properties as body). So
//!   the total can only under-count, and `x-max-length-bytes` never drops or refuses a
//!   message on an over-estimate: after a restart the byte limit applies to what has been
//!   paged in plus the exact bytes of new messages.
//!
//! A transient (non-durable or exclusive) queue pages out the same way, to a log opened on its
//! first page-out and deleted with it and at start (`volatile.rs`); with no store (a
//! memory-only broker) it keeps every message in memory. Priority queues (`x-max-priority`)
//! page out per priority level (`prio_paging.rs`). Everything here runs under the queue's lock: page-in reads the
//! disk there (a batch of at most the limits, usually from the page cache).

use super::{count, unix_ms, Deadline, Queue, QueuedMessage, State};
use crate::message::{Message, Properties, PropertiesCodec};
use crate::record::{MessageRecord, MessageRecordRef, QueueExtras};
use bytes::Bytes;
use pigeon_store::{QueueLog, RecoveredMessage};
use std::time::{Duration, Instant};

/// Most records read back in one page-in.
pub(super) const PAGE_IN_BATCH: usize = 256;
/// Bytes of a record's frame that are never body: the store's frame header (17) and this
/// crate's version 2 record header (34, the four length prefixes included). So a record's
/// body is at most its frame length minus this (and minus its exchange, routing key and
/// properties, unknown until it is read).
const RECORD_OVERHEAD: u32 = 51;

/// How much of a queue may stay in memory before new messages go only to its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagingLimits {
    /// Most body bytes in memory per queue.
    pub resident_bytes: usize,
    /// Most messages in memory per queue.
    pub resident_messages: usize,
}

impl Default for PagingLimits {
    fn default() -> Self {
        PagingLimits {
            resident_bytes: 8 * 1024 * 1024,
            resident_messages: 16 * 1024,
        }
    }
}

/// A record read back by [`Queue::read_back`].
pub(super) enum ReadBack {
    /// The message, and the body bytes the tail counted for it.
    Message(QueuedMessage, usize),
    /// Skipped and acknowledged; what to take off the tail's bytes.
    Skipped(usize),
}

/// The paged-out messages of a queue: every live record of its log from seq `next` onward.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tail {
    /// The lowest seq that may still be in the tail (the next one to read back).
    pub next: u64,
    /// How many messages it holds.
    pub count: usize,
    /// Their body bytes, never more than the truth: records written before the start count 0
    /// until they are read back (see the module's documentation, **Bytes**).
    pub bytes: usize,
}

impl Tail {
    pub(super) fn take(&mut self, bytes: usize) {
        self.count = self.count.saturating_sub(1);
        self.bytes = if self.count == 0 {
            0
        } else {
            self.bytes.saturating_sub(bytes)
        };
    }
}

/// The instant of an absolute expiry time (ms since the Unix epoch) read from a record, on
/// the clock of a caller at `now` (`unix_now`). One that has passed is strictly before `now`,
/// so that the caller finds the message expired.
fn expiry_instant(expires_at_ms: u64, unix_now: u64, now: Instant) -> Instant {
    match expires_at_ms.checked_sub(unix_now) {
        Some(left) if left > 0 => now + Duration::from_millis(left),
        _ => {
            let overdue = Duration::from_millis(unix_now - expires_at_ms + 1);
            now.checked_sub(overdue).unwrap_or(now)
        }
    }
}

/// The most body bytes a record of `frame_len` bytes can hold: what to take off the tail's
/// total for a record counted there that cannot be read (taking off too much keeps the total
/// an under-count).
pub(super) fn max_body(frame_len: u32) -> usize {
    frame_len.saturating_sub(RECORD_OVERHEAD) as usize
}

impl Queue {
    /// The record of a queued message, for its log.
    pub(super) fn record<'a>(&'a self, m: &'a QueuedMessage, now: Instant) -> MessageRecordRef<'a> {
        let expires_at_ms = m.expires_at.map_or(0, |t| {
            let left = t.instant().saturating_duration_since(now).as_millis() as u64;
            unix_ms().saturating_add(left).max(1)
        });
        MessageRecordRef::in_queue(&m.message, &self.name, expires_at_ms)
    }

    /// Writes a new message to the log only, behind everything else. `Some(stored)` when it is
    /// in the tail (stored: the publisher waits for the disk, as for any persistent message);
    /// `None` when the log refused it: the caller keeps it in memory if the tail is empty, and
    /// refuses it otherwise (it would overtake the tail).
    pub(super) fn page_out(&self, st: &mut State, m: &QueuedMessage, now: Instant) -> Option<bool> {
        let log = self.log_for_paging()?;
        // Only a durable queue's publisher waits for the disk: a transient queue's log promises
        // nothing (it is never synced, and deleted at start).
        let persistent = m.message.meta().persistent && self.volatile.is_none();
        let extras = QueueExtras {
            transient: !persistent,
            origin: m.message.origin(),
        };
        let record = self.record(m, now).encode_queued(extras);
        // A persistent message of a priority queue carries its level in the log's index, so
        // that a restart lists it by level without reading it (`prio_paging.rs`, **Restart**);
        // a transient one does not: a restart reads it to drop it.
        let appended = match st.ready.log_tag(m).filter(|_| persistent) {
            Some(level) => log.append_tagged(m.seq, level, &record),
            None => log.append(m.seq, &record),
        };
        if let Err(e) = appended {
            tracing::error!(queue = %self.name, error = %e, "cannot page a message out");
            return None;
        }
        st.ready.paged_out(m);
        if st.codec.is_none() {
            st.codec = Some(m.message.codec());
        }
        Some(persistent)
    }

    /// Pages the tail in while the head is low (cheap when it is not). `now` is the caller's
    /// clock, against which it will check expiry.
    #[inline]
    pub(super) fn fill(&self, st: &mut State, now: Instant) {
        while st.ready.wants_page_in() {
            let Some(limits) = st.ready.limits() else {
                return;
            };
            if st.ready.pages_by_level() {
                if !self.page_in_level(st, now, limits) {
                    return;
                }
                continue;
            }
            let room = limits
                .resident_messages
                .saturating_sub(st.ready.head_len())
                .clamp(1, PAGE_IN_BATCH);
            if !self.page_in(st, now, room, Some(limits.resident_bytes)) {
                return;
            }
        }
    }

    /// Reads up to `room` messages of the tail back into memory (stopping once the head holds
    /// `max_bytes`). Unreadable records are acknowledged and skipped. False when nothing can be
    /// read (no log or no codec); an inconsistent tail (its records gone) is emptied.
    fn page_in(&self, st: &mut State, now: Instant, room: usize, max_bytes: Option<usize>) -> bool {
        let (Some(log), Some(codec)) = (self.log.get(), st.codec) else {
            tracing::error!(queue = %self.name, "cannot page messages in: no log or codec");
            return false;
        };
        let batch = log.live_from(st.ready.tail.next, room);
        if batch.is_empty() {
            tracing::warn!(queue = %self.name, lost = st.ready.tail.count, "paged-out messages missing from the log");
            st.ready.tail.count = 0;
            st.ready.tail.bytes = 0;
            return true;
        }
        let unix_now = unix_ms();
        let mut last_possible = false;
        for r in batch {
            if st.ready.tail.count == 0 {
                break;
            }
            // Nothing can follow a record at the last seq (a damaged or hostile log).
            last_possible |= r.seq == u64::MAX;
            st.ready.tail.next = r.seq.saturating_add(1);
            match self.read_back(st, log, codec, r, now, unix_now) {
                ReadBack::Message(m, counted) => {
                    st.ready.tail.take(counted);
                    st.ready.push(m);
                }
                ReadBack::Skipped(estimate) => {
                    st.ready.tail.take(estimate);
                    continue;
                }
            }
            if max_bytes.is_some_and(|max| st.ready.resident_bytes() >= max) {
                break;
            }
        }
        if last_possible && st.ready.tail.count > 0 {
            tracing::warn!(queue = %self.name, lost = st.ready.tail.count, "paged-out messages counted past the last possible seq");
            st.ready.tail.count = 0;
            st.ready.tail.bytes = 0;
        }
        true
    }

    /// Reads one paged-out record back: the message, with what the tail counted for it, or
    /// what to take off the tail for a record skipped (unreadable, or a transient message
    /// written before the start: both are acknowledged here).
    pub(super) fn read_back(
        &self,
        st: &State,
        log: &QueueLog,
        codec: &'static dyn PropertiesCodec,
        r: RecoveredMessage,
        now: Instant,
        unix_now: u64,
    ) -> ReadBack {
        let estimate = |old: bool| if old { 0 } else { max_body(r.location.len) };
        if r.seq >= super::level::SEQ_LIMIT {
            // The ready list packs seqs into 56 bits, and Pigeon never writes a larger one:
            // a damaged or hostile log. Skipped like an unreadable record.
            tracing::error!(queue = %self.name, seq = r.seq, "skipping a message record with an impossible seq");
            log.ack(r.seq);
            let old = st.restored_through.is_some_and(|last| r.seq <= last);
            return ReadBack::Skipped(estimate(old));
        }
        // Written before the start: it counts 0 bytes in the tail, its origin is stale.
        let old = st.restored_through.is_some_and(|last| r.seq <= last);
        // What the tail counted for it, when it cannot be read: 0 or at least its body.
        let estimate = estimate(old);
        let decoded = match log.read(&r.location) {
            Ok(bytes) => MessageRecord::decode_queued(Bytes::from(bytes)),
            Err(e) => {
                tracing::error!(queue = %self.name, seq = r.seq, error = %e, "cannot read a message back");
                None
            }
        };
        let Some((record, extras)) = decoded else {
            tracing::warn!(queue = %self.name, seq = r.seq, "skipping an unreadable message record");
            log.ack(r.seq);
            return ReadBack::Skipped(estimate);
        };
        if old && extras.transient {
            // A transient message does not survive a restart.
            log.ack(r.seq);
            return ReadBack::Skipped(estimate);
        }
        let counted = if old { 0 } else { record.body.len() };
        let properties = Properties::new(record.properties, codec);
        let origin = if old { 0 } else { extras.origin };
        let message = if record.exchange.is_empty() && *record.routing_key == *self.name.as_bytes()
        {
            // Sent to this queue through the default exchange: its key is the queue's name.
            Message::to_named_queue(properties, record.body, origin)
        } else {
            let routing_key = String::from_utf8_lossy(&record.routing_key);
            Message::new(
                record.exchange,
                &routing_key,
                properties,
                record.body,
                origin,
            )
        };
        let expires_at = (record.expires_at_ms != 0)
            .then(|| Deadline::at(expiry_instant(record.expires_at_ms, unix_now, now)));
        let m = QueuedMessage {
            message,
            seq: r.seq,
            redelivered: r.delivered,
            expires_at,
            delivery_count: 0,
            persisted: true,
        };
        ReadBack::Message(m, counted)
    }

    /// Loads the queue's log (at start): the live messages become the tail and a head-full is
    /// read back (all of them for a queue that does not page), in order, redelivered if they
    /// had been delivered. Returns how many messages the queue holds (records of transient
    /// messages still in the tail are counted until they are paged in and dropped).
    pub fn restore(&self, codec: &'static dyn PropertiesCodec) -> usize {
        self.restore_stream(codec);
        let Some(log) = self.log.get() else {
            return 0;
        };
        let summary = log.live_summary(0);
        let now = Instant::now();
        let mut st = self.state.lock();
        st.codec = Some(codec);
        let Some(last) = summary.last_seq else {
            return 0;
        };
        // Saturating: a log whose last seq is u64::MAX takes no new message (see `enqueue`).
        st.next_seq = st.next_seq.max(last.saturating_add(1));
        st.restored_through = Some(last);
        if st.ready.pages_by_level() {
            self.restore_levels(&mut st, log, now);
            self.fill(&mut st, now);
            return st.ready.len();
        }
        // Bytes 0: the bodies' lengths are not known before the records are read back, and
        // their frame lengths over-count them (see the module's documentation, **Bytes**).
        st.ready.tail = Tail {
            next: 0,
            count: summary.messages,
            bytes: 0,
        };
        if st.ready.limits().is_some() {
            self.fill(&mut st, now);
        } else {
            while st.ready.tail.count > 0 {
                if !self.page_in(&mut st, now, PAGE_IN_BATCH, None) {
                    break;
                }
            }
        }
        st.ready.len()
    }

    /// Body bytes of the ready messages in memory (what the memory alarm counts).
    pub fn resident_bytes(&self) -> usize {
        self.state.lock().ready.resident_bytes()
    }

    /// Ready messages paged out to the log.
    pub fn paged_out_count(&self) -> u32 {
        count(self.state.lock().ready.tail.count)
    }
}

#[cfg(test)]
#[path = "paging_tests.rs"]
mod tests;
