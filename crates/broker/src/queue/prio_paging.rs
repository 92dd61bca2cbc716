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
//! - **Restart.** The level of a record is in its properties, which only reading it tells:
//!   a durable priority queue reads its whole log at start (as it did when it kept everything
//!   in memory), keeps a head-full and lists the rest by level without their bodies. So its
//!   tail's byte count is exact, and transient records written before the restart are
//!   dropped there.
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
                // Exact bytes: this queue's tail counted every body (see `restore_levels`).
                ReadBack::Message(m, _) => {
                    st.ready.tail.take(m.message.body_len());
                    st.ready.push(m);
                }
                ReadBack::Skipped(_) => {
                    st.ready.tail.take(super::paging::max_body(r.location.len));
                    continue;
                }
            }
            if st.ready.resident_bytes() >= max_bytes {
                break;
            }
        }
        true
    }

    /// Loads a priority queue's log at start: every live record is read, in seq order (its
    /// level is in its properties); the first ones fill the head, the rest are listed in their
    /// level's tail. Transient records (written before this start) are dropped.
    pub(super) fn restore_levels(&self, st: &mut State, log: &QueueLog, now: Instant) {
        let Some(codec) = st.codec else {
            return;
        };
        let unix_now = unix_ms();
        let mut from = 0u64;
        loop {
            let batch = log.live_from(from, PAGE_IN_BATCH);
            let Some(last) = batch.last() else {
                return;
            };
            let next = last.seq.checked_add(1);
            for r in batch {
                // Counted by nobody yet: `read_back` only says what to take off.
                if let ReadBack::Message(m, _) = self.read_back(st, log, codec, r, now, unix_now) {
                    if st.ready.pages_out(&m) {
                        st.ready.paged_out(&m);
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

#[cfg(test)]
mod tests {
    use super::SeqList;
    use crate::message::{
        Death, Message, MessageMeta, Properties, PropertiesCodec, PropertiesView,
    };
    use crate::queue::{PagingLimits, Queue, QueueOptions};
    use crate::value::{Table, Value};
    use crate::Broker;
    use bytes::Bytes;
    use pigeon_store::{Store, StoreOptions, SyncMode};
    use std::sync::Arc;

    /// Properties `[persistent, priority]`: `persistent` is 1 for a persistent message.
    struct Codec;

    impl PropertiesCodec for Codec {
        fn view(&self, _: &Bytes) -> PropertiesView {
            PropertiesView::default()
        }
        fn meta(&self, raw: &Bytes) -> MessageMeta {
            MessageMeta {
                persistent: raw.first() == Some(&1),
                priority: raw.get(1).copied(),
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
                "pigeon-prio-paging-{name}-{}-{}",
                std::process::id(),
                super::unix_ms()
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

    /// Opens (or reopens: a restart) the store in `dir` and declares priority queue "q"
    /// (durable or not) there, keeping at most `resident` messages in memory.
    fn queue(dir: &TempDir, resident: usize, durable: bool) -> (Arc<Store>, Arc<Queue>) {
        let options = StoreOptions {
            sync: SyncMode::Never,
            ..StoreOptions::default()
        };
        let store = Arc::new(Store::open(&dir.0, options).unwrap());
        let limits = PagingLimits {
            resident_bytes: 1 << 20,
            resident_messages: resident,
        };
        let (broker, _) = Broker::open(Arc::clone(&store), &CODEC, limits).unwrap();
        let options = QueueOptions {
            durable,
            arguments: Table(vec![("x-max-priority".into(), Value::Int(9))]),
            ..QueueOptions::default()
        };
        let vhost = broker.add_vhost("/", Default::default()).unwrap();
        let q = vhost.declare_queue("q", false, options, 1).unwrap().queue;
        (store, q)
    }

    fn message(body: &str, priority: u8, persistent: bool) -> Message {
        let raw = Bytes::from(vec![u8::from(persistent), priority]);
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
            out.push(String::from_utf8_lossy(m.message.body()).into_owned());
        }
        out
    }

    /// Message `i` of a mixed batch: priority `i * 7 % 12` (10 and 11 count as 9), persistent
    /// unless `i % 5 == 0`.
    fn mixed(i: usize) -> (String, u8, bool) {
        (format!("m{i}"), (i * 7 % 12) as u8, !i.is_multiple_of(5))
    }

    /// The order a priority queue delivers `items` in: highest level first, FIFO within one.
    fn expected(items: &[(String, u8, bool)]) -> Vec<String> {
        let mut sorted: Vec<_> = items.iter().enumerate().collect();
        sorted.sort_by_key(|(i, (_, p, _))| (std::cmp::Reverse((*p).min(9)), *i));
        sorted.into_iter().map(|(_, (b, _, _))| b.clone()).collect()
    }

    #[test]
    fn a_priority_queue_pages_out_and_delivers_in_exact_order() {
        for durable in [true, false] {
            let dir = TempDir::new("order");
            let (_store, q) = queue(&dir, 8, durable);
            let items: Vec<_> = (0..300).map(mixed).collect();
            for (body, p, persistent) in &items {
                q.enqueue(message(body, *p, *persistent));
            }
            assert_eq!(q.message_count(), 300);
            assert_eq!(q.paged_out_count(), 292, "all but a head-full");
            assert!(q.resident_bytes() < q.queued_bytes() / 10);
            // Take a few, give one back, publish more at the top and the bottom meanwhile.
            let (first, _) = q.get(false).unwrap();
            let mut all = items.clone();
            all.push(("late-top".into(), 9, true));
            all.push(("late-low".into(), 0, false));
            q.enqueue(message("late-top", 9, true));
            q.enqueue(message("late-low", 0, false));
            q.requeue([first]);
            let got = take_all(&q);
            assert_eq!(got, expected(&all), "durable {durable}");
            assert_eq!((q.message_count(), q.paged_out_count()), (0, 0));
            if let Some(log) = q.log.get() {
                assert_eq!(log.len(), 0, "everything acknowledged");
            }
        }
    }

    #[test]
    fn a_durable_priority_queue_restores_its_persistent_messages_in_order() {
        let dir = TempDir::new("restart");
        let items: Vec<_> = (0..200).map(mixed).collect();
        {
            let (_store, q) = queue(&dir, 8, true);
            for (body, p, persistent) in &items {
                q.enqueue(message(body, *p, *persistent));
            }
            assert!(q.paged_out_count() > 0);
        }
        let (_store, q) = queue(&dir, 8, true);
        let persistent: Vec<_> = items.iter().filter(|(_, _, p)| *p).cloned().collect();
        assert_eq!(q.message_count() as usize, persistent.len());
        assert!(
            q.paged_out_count() > 0,
            "only a head-full is kept in memory"
        );
        assert_eq!(
            q.queued_bytes(),
            persistent.iter().map(|(b, _, _)| b.len()).sum::<usize>()
        );
        assert_eq!(take_all(&q), expected(&persistent));
    }

    #[test]
    fn messages_delivered_before_a_restart_come_back_redelivered_at_their_place() {
        let dir = TempDir::new("redelivered");
        let items: Vec<_> = (0..60)
            .map(|i| (format!("m{i}"), (i % 4) as u8, true))
            .collect();
        let held = {
            let (_store, q) = queue(&dir, 4, true);
            for (body, p, persistent) in &items {
                q.enqueue(message(body, *p, *persistent));
            }
            // Delivered, never settled: the three oldest of priority 3.
            let held: Vec<_> = (0..3).map(|_| q.get(false).unwrap().0).collect();
            held.iter()
                .map(|m| String::from_utf8_lossy(m.message.body()).into_owned())
                .collect::<Vec<_>>()
        };
        let (_store, q) = queue(&dir, 4, true);
        assert_eq!(q.message_count(), 60);
        let mut got = Vec::new();
        while let Some((m, _)) = q.get(true) {
            let body = String::from_utf8_lossy(m.message.body()).into_owned();
            assert_eq!(m.redelivered, held.contains(&body), "{body}");
            got.push(body);
        }
        assert_eq!(got, expected(&items));
        assert_eq!(&got[..3], &held[..]);
    }

    #[test]
    fn the_head_stays_within_one_and_a_half_times_the_limits() {
        let dir = TempDir::new("bound");
        let (_store, q) = queue(&dir, 40, false);
        // A model of the order: one FIFO per level, highest first.
        let mut model: Vec<std::collections::VecDeque<String>> = vec![Default::default(); 10];
        let publish = |model: &mut Vec<std::collections::VecDeque<String>>, body: String, p: u8| {
            q.enqueue(message(&body, p, false));
            model[usize::from(p)].push_back(body);
        };
        // Low priorities fill the head; then every level, lowest first, pages out behind it.
        for i in 0..40 {
            publish(&mut model, format!("low{i}"), 0);
        }
        for p in 1..=9u8 {
            for i in 0..100 {
                publish(&mut model, format!("p{p}-{i}"), p);
            }
        }
        let head = || q.state.lock().ready.head_len();
        // Each level that became the highest read a small batch back (at most 40 / 20 each).
        assert!((40..=60).contains(&head()), "{} in memory", head());
        let mut n = 0;
        while let Some((m, _)) = q.get(true) {
            n += 1;
            let want = model.iter_mut().rev().find_map(|l| l.pop_front());
            assert_eq!(
                Some(String::from_utf8_lossy(m.message.body()).into_owned()),
                want
            );
            assert!(head() <= 60, "{} in memory", head());
            // Now and then new messages arrive at the top and at the bottom.
            if n % 50 == 0 {
                publish(&mut model, format!("top{n}"), 9);
                publish(&mut model, format!("bottom{n}"), 0);
            }
        }
        assert!(model.iter().all(|l| l.is_empty()));
        assert!(n > 940, "{n}");
    }

    #[test]
    fn purge_acknowledges_every_levels_tail() {
        let dir = TempDir::new("purge");
        let (_store, q) = queue(&dir, 4, true);
        for i in 0..50 {
            let (body, p, persistent) = mixed(i);
            q.enqueue(message(&body, p, persistent));
        }
        let (held, _) = q.get(false).unwrap();
        assert_eq!(q.purge(), 49);
        let log = q.log.get().cloned().unwrap();
        // Only the message out for delivery is left (if it was written at all).
        assert!(log.len() <= 1, "{}", log.len());
        q.enqueue(message("after", 3, true));
        q.settle([&held]);
        assert_eq!(take_all(&q), ["after"]);
        assert_eq!(log.len(), 0);
    }

    #[test]
    fn a_seq_list_gives_back_what_it_was_given_in_order() {
        let seqs = [
            0u64,
            1,
            2,
            130,
            131,
            100_000,
            1 << 40,
            u64::MAX - 1,
            u64::MAX,
        ];
        let mut list = SeqList::default();
        for s in seqs {
            list.push(s);
        }
        assert_eq!(list.len(), seqs.len());
        let mut out = Vec::new();
        while let Some(s) = list.pop() {
            out.push(s);
        }
        assert_eq!(out, seqs);
        // Emptied, it starts over from any seq.
        list.push(7);
        list.push(9);
        assert_eq!(
            (list.pop(), list.pop(), list.pop()),
            (Some(7), Some(9), None)
        );
    }

    #[test]
    fn close_seqs_take_a_byte_each() {
        let mut list = SeqList::default();
        for s in (1_000_000..1_010_000).step_by(3) {
            list.push(s);
        }
        // The first one is far from 0; every other one is 3 away from the one before.
        assert!(list.bytes.len() < list.len() + 4, "{}", list.bytes.len());
    }
}
