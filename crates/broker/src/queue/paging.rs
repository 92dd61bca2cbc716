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
use crate::record::{MessageRecord, QueueExtras};
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
    pub(super) fn record(m: &QueuedMessage, now: Instant) -> MessageRecord {
        let expires_at_ms = m.expires_at.map_or(0, |t| {
            let left = t.instant().saturating_duration_since(now).as_millis() as u64;
            unix_ms().saturating_add(left).max(1)
        });
        MessageRecord {
            exchange: m.message.exchange.clone(),
            routing_key: m.message.routing_key.clone(),
            properties: m.message.properties.raw().clone(),
            body: m.message.body.clone(),
            expires_at_ms,
        }
    }

    /// Writes a new message to the log only, behind everything else. `Some(stored)` when it is
    /// in the tail (stored: the publisher waits for the disk, as for any persistent message);
    /// `None` when the log refused it: the caller keeps it in memory if the tail is empty, and
    /// refuses it otherwise (it would overtake the tail).
    pub(super) fn page_out(&self, st: &mut State, m: &QueuedMessage, now: Instant) -> Option<bool> {
        let log = self.log_for_paging()?;
        // Only a durable queue's publisher waits for the disk: a transient queue's log promises
        // nothing (it is never synced, and deleted at start).
        let persistent = m.message.meta.persistent && self.volatile.is_none();
        let extras = QueueExtras {
            transient: !persistent,
            origin: m.message.origin,
        };
        let record = Queue::record(m, now).encode_queued(extras);
        if let Err(e) = log.append(m.seq, &record) {
            tracing::error!(queue = %self.name, error = %e, "cannot page a message out");
            return None;
        }
        st.ready.paged_out(m);
        if st.codec.is_none() {
            st.codec = Some(m.message.properties.codec());
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
        // Written before the start: it counts 0 bytes in the tail, its origin is stale.
        let old = st.restored_through.is_some_and(|last| r.seq <= last);
        // What the tail counted for it, when it cannot be read: 0 or at least its body.
        let estimate = if old { 0 } else { max_body(r.location.len) };
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
        let routing_key = String::from_utf8_lossy(&record.routing_key).into_owned();
        let message = Message::new(
            record.exchange,
            &routing_key,
            Properties::new(record.properties, codec),
            record.body,
            if old { 0 } else { extras.origin },
        );
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
mod tests {
    use super::*;
    use crate::message::{Death, MessageMeta, PropertiesView};
    use crate::queue::{Enqueued, QueueOptions};
    use crate::record::QueueExtras;
    use crate::value::{Table, Value};
    use crate::Broker;
    use pigeon_store::{Store, StoreOptions, SyncMode};
    use std::sync::Arc;

    /// Properties `b"p"` are persistent; anything else is transient.
    struct Codec;

    impl PropertiesCodec for Codec {
        fn view(&self, _: &Bytes) -> PropertiesView {
            PropertiesView::default()
        }
        fn meta(&self, raw: &Bytes) -> MessageMeta {
            MessageMeta {
                persistent: raw.as_ref() == b"p",
                ..MessageMeta::default()
            }
        }
        fn dead_lettered(&self, raw: &Bytes, _: &Death) -> Bytes {
            raw.clone()
        }
    }

    static CODEC: Codec = Codec;

    /// A directory removed when dropped (the broker crate has no tempfile).
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "pigeon-paging-{name}-{}-{}",
                std::process::id(),
                unix_ms()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn queue(dir: &TempDir, resident_messages: usize) -> (Arc<Store>, Arc<Queue>) {
        queue_with(dir, resident_messages, Table::default())
    }

    /// Opens (or reopens: a restart) the store in `dir` and declares queue "q" there.
    fn queue_with(
        dir: &TempDir,
        resident_messages: usize,
        arguments: Table,
    ) -> (Arc<Store>, Arc<Queue>) {
        let options = StoreOptions {
            sync: SyncMode::Never,
            ..StoreOptions::default()
        };
        let store = Arc::new(Store::open(&dir.0, options).unwrap());
        let limits = PagingLimits {
            resident_bytes: 1 << 20,
            resident_messages,
        };
        let (broker, _) = Broker::open(Arc::clone(&store), &CODEC, limits).unwrap();
        let options = QueueOptions {
            durable: true,
            arguments,
            ..QueueOptions::default()
        };
        // Idempotent: recorded at the first open, found again at the next.
        let vhost = broker.add_vhost("/", Default::default()).unwrap();
        let q = vhost.declare_queue("q", false, options, 1).unwrap().queue;
        (store, q)
    }

    fn message(body: &str, persistent: bool) -> Message {
        let raw = Bytes::from_static(if persistent { b"p" } else { b"t" });
        Message::new(
            Bytes::new(),
            "q",
            Properties::new(raw, &CODEC),
            Bytes::copy_from_slice(body.as_bytes()),
            7,
        )
    }

    fn take_all(q: &Arc<Queue>) -> Vec<String> {
        let mut out = Vec::new();
        while let Some((m, _)) = q.get(true) {
            out.push(String::from_utf8_lossy(&m.message.body).into_owned());
        }
        out
    }

    #[test]
    fn a_transient_message_paged_out_is_written_but_not_waited_for() {
        let dir = TempDir::new("transient");
        let (_store, q) = queue(&dir, 2);
        assert_eq!(q.enqueue(message("a", true)), Enqueued::Stored);
        assert_eq!(q.enqueue(message("b", false)), Enqueued::Accepted);
        // The head is full: both go to the log only, keeping their place.
        assert_eq!(q.enqueue(message("c", false)), Enqueued::Accepted);
        assert_eq!(q.enqueue(message("d", true)), Enqueued::Stored);
        assert_eq!((q.message_count(), q.paged_out_count()), (4, 2));
        assert_eq!(q.resident_bytes(), 2);
        assert_eq!(q.queued_bytes(), 4);
        let log = q.log.get().cloned().unwrap();
        assert_eq!(log.len(), 3, "a, c and d are in the log; b only in memory");
        let (m, _) = q.get(false).unwrap();
        assert_eq!(&m.message.body[..], b"a");
        assert_eq!(take_all(&q), ["b", "c", "d"]);
        // The transient message read back keeps its publisher (MQTT no-local).
        q.enqueue(message("e", true));
        q.enqueue(message("f", true));
        q.enqueue(message("g", false));
        let _ = q.get(true);
        let _ = q.get(true);
        let (g, _) = q.get(true).unwrap();
        assert_eq!((&g.message.body[..], g.message.origin), (&b"g"[..], 7));
        assert!(!g.message.meta.persistent);
    }

    #[test]
    fn an_unreadable_record_in_the_tail_is_skipped_and_acknowledged() {
        let dir = TempDir::new("unreadable");
        let (_store, q) = queue(&dir, 2);
        for body in ["m0", "m1", "m2", "m3", "m4"] {
            q.enqueue(message(body, true));
        }
        assert_eq!(q.paged_out_count(), 3);
        let log = q.log.get().cloned().unwrap();
        // Replace message 3's record with something that is not a message record.
        log.append(3, b"garbage").unwrap();
        assert_eq!(take_all(&q), ["m0", "m1", "m2", "m4"]);
        assert_eq!(q.message_count(), 0);
        assert_eq!(log.len(), 0, "the unreadable record was acknowledged");
    }

    #[test]
    fn purge_acknowledges_the_tail_in_the_log() {
        let dir = TempDir::new("purge");
        let (_store, q) = queue(&dir, 3);
        for i in 0..10 {
            q.enqueue(message(&format!("m{i}"), i % 2 == 0));
        }
        assert_eq!(q.purge(), 10);
        assert_eq!(q.log.get().cloned().unwrap().len(), 0);
        q.enqueue(message("after", true));
        assert_eq!(take_all(&q), ["after"]);
    }

    /// A persistent message with a small body and a big exchange name (as big routing keys
    /// or headers): its record is much longer than its body.
    fn big_message(body: &str) -> Message {
        Message::new(
            Bytes::from(vec![b'x'; 1000]),
            "q",
            Properties::new(Bytes::from_static(b"p"), &CODEC),
            Bytes::copy_from_slice(body.as_bytes()),
            7,
        )
    }

    #[test]
    fn after_a_restart_drop_head_drops_nothing_on_the_tails_record_lengths() {
        let dir = TempDir::new("limit-bytes");
        let arguments = || {
            Table(vec![
                ("x-max-length-bytes".into(), Value::Int(20)),
                (
                    "x-overflow".into(),
                    Value::Str(Bytes::from_static(b"drop-head")),
                ),
            ])
        };
        let all: Vec<String> = (0..11).map(|i| format!("m{i:x}")).collect();
        {
            let (_store, q) = queue_with(&dir, 2, arguments());
            // Ten 2-byte bodies: exactly at the limit.
            for body in &all[..10] {
                assert_eq!(q.enqueue(big_message(body)), Enqueued::Stored);
            }
            assert_eq!((q.message_count(), q.paged_out_count()), (10, 8));
            assert_eq!(q.dropped_count(), 0);
        }
        let (_store, q) = queue_with(&dir, 2, arguments());
        assert_eq!(q.message_count(), 10);
        assert!(q.queued_bytes() <= 20, "{}", q.queued_bytes());
        // One more: at most the oldest one may go (22 bytes for a limit of 20).
        assert_eq!(q.enqueue(big_message(&all[10])), Enqueued::Stored);
        assert!(q.dropped_count() <= 1, "dropped {}", q.dropped_count());
        let got = take_all(&q);
        assert!(got.len() >= 10, "{got:?}");
        assert_eq!(got[..], all[all.len() - got.len()..]);
    }

    #[test]
    fn a_message_the_log_refuses_is_not_put_ahead_of_the_tail() {
        let dir = TempDir::new("refused");
        let (store, q) = queue(&dir, 2);
        for body in ["a", "b", "c"] {
            assert_eq!(q.enqueue(message(body, true)), Enqueued::Stored);
        }
        assert_eq!(q.paged_out_count(), 1);
        // From now on the log refuses appends (as when the store failed or was closed).
        assert!(store
            .delete_queue_log(&crate::durable::log_id("/", "q"))
            .unwrap());
        // "c" is in the tail: "d" and "e" cannot go ahead of it, nor behind it.
        assert_eq!(q.enqueue(message("d", true)), Enqueued::Rejected);
        assert_eq!(q.enqueue(message("e", false)), Enqueued::Rejected);
        assert_eq!(q.message_count(), 3);
        let (a, _) = q.get(true).unwrap();
        let (b, _) = q.get(true).unwrap();
        assert_eq!(
            (&a.message.body[..], &b.message.body[..]),
            (&b"a"[..], &b"b"[..])
        );
        // ("c" was lost with the log.) With the tail empty, a message stays in memory.
        assert!(take_all(&q).is_empty());
        assert_eq!(q.enqueue(message("f", false)), Enqueued::Accepted);
        assert_eq!(take_all(&q), ["f"]);
    }

    #[test]
    fn a_record_at_the_last_seq_is_restored_without_overflow() {
        let dir = TempDir::new("last-seq");
        {
            let (_store, q) = queue(&dir, 2);
            q.enqueue(message("a", true));
            let last = MessageRecord {
                exchange: Bytes::new(),
                routing_key: Bytes::from_static(b"q"),
                properties: Bytes::from_static(b"p"),
                body: Bytes::from_static(b"z"),
                expires_at_ms: 0,
            };
            let record = last.encode_queued(QueueExtras::default());
            q.log
                .get()
                .cloned()
                .unwrap()
                .append(u64::MAX, &record)
                .unwrap();
        }
        let (_store, q) = queue(&dir, 1);
        assert_eq!(q.message_count(), 2);
        // No seq is left for a new message: it is refused, never given a seq in use.
        assert_eq!(q.enqueue(message("b", true)), Enqueued::Rejected);
        assert_eq!(take_all(&q), ["a", "z"]);
        assert_eq!(q.message_count(), 0);
    }

    #[test]
    fn a_transient_queue_opens_a_log_on_its_first_page_out_and_deletes_it_with_itself() {
        let dir = TempDir::new("volatile");
        let options = StoreOptions {
            sync: SyncMode::Never,
            ..StoreOptions::default()
        };
        let store = Arc::new(Store::open(&dir.0, options).unwrap());
        let limits = PagingLimits {
            resident_bytes: 1 << 20,
            resident_messages: 2,
        };
        let (broker, _) = Broker::open(Arc::clone(&store), &CODEC, limits).unwrap();
        let vhost = broker.add_vhost("/", Default::default()).unwrap();
        let q = vhost
            .declare_queue("t", false, QueueOptions::default(), 1)
            .unwrap()
            .queue;
        let durable_logs = store.queue_log_ids();
        // Under the limit: no log.
        assert_eq!(q.enqueue(message("a", true)), Enqueued::Accepted);
        assert_eq!(q.enqueue(message("b", false)), Enqueued::Accepted);
        assert!(q.log.get().is_none());
        // Past it: a log of its own, holding only what paged out, that nobody waits for.
        for body in ["c", "d", "e"] {
            assert_eq!(q.enqueue(message(body, true)), Enqueued::Accepted);
        }
        assert_eq!((q.message_count(), q.paged_out_count()), (5, 3));
        let log = q.log.get().cloned().unwrap();
        assert_eq!(log.len(), 3);
        assert!(log.id().starts_with(crate::durable::VOLATILE_LOG_PREFIX));
        assert_eq!(store.queue_log_ids().len(), durable_logs.len() + 1);
        assert_eq!(take_all(&q), ["a", "b", "c", "d", "e"]);
        assert_eq!(log.len(), 0, "read back and acknowledged");
        q.enqueue(message("f", true));
        q.enqueue(message("g", true));
        q.enqueue(message("h", true));
        vhost.delete_queue("t", false, false, 1).unwrap();
        assert_eq!(store.queue_log_ids(), durable_logs);
    }

    #[test]
    fn an_expiry_that_passed_is_strictly_before_the_callers_clock() {
        let now = Instant::now();
        assert!(expiry_instant(1_000, 1_000, now) < now);
        assert!(expiry_instant(900, 1_000, now) < now);
        assert_eq!(
            expiry_instant(1_500, 1_000, now),
            now + Duration::from_millis(500)
        );
    }
}
