//! Tests of `paging.rs`: the tail, page-out and read-back under the queue's lock.

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
        out.push(String::from_utf8_lossy(m.message.body()).into_owned());
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
    assert_eq!(m.message.body(), b"a");
    assert_eq!(take_all(&q), ["b", "c", "d"]);
    // The transient message read back keeps its publisher (MQTT no-local).
    q.enqueue(message("e", true));
    q.enqueue(message("f", true));
    q.enqueue(message("g", false));
    let _ = q.get(true);
    let _ = q.get(true);
    let (g, _) = q.get(true).unwrap();
    assert_eq!((g.message.body(), g.message.origin()), (&b"g"[..], 7));
    assert!(!g.message.meta().persistent);
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
    assert_eq!((a.message.body(), b.message.body()), (&b"a"[..], &b"b"[..]));
    // ("c" was lost with the log.) With the tail empty, a message stays in memory.
    assert!(take_all(&q).is_empty());
    assert_eq!(q.enqueue(message("f", false)), Enqueued::Accepted);
    assert_eq!(take_all(&q), ["f"]);
}

#[test]
fn a_record_at_the_last_seq_is_restored_without_overflow() {
    // The last seq the ready list holds (56 bits) is restored; a larger one (no broker writes
    // one: a damaged log) is skipped. Either way no seq is left for a new message.
    for (last, restored) in [
        (crate::queue::level::SEQ_LIMIT - 1, &["a", "z"][..]),
        (u64::MAX, &["a"]),
    ] {
        last_seq_case(last, restored);
    }
}

fn last_seq_case(last_seq: u64, restored: &[&str]) {
    let dir = TempDir::new(&format!("last-seq-{last_seq}"));
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
            .append(last_seq, &record)
            .unwrap();
    }
    let (_store, q) = queue(&dir, 1);
    assert_eq!(q.message_count(), 2);
    // No seq is left for a new message: it is refused, never given a seq in use.
    assert_eq!(q.enqueue(message("b", true)), Enqueued::Rejected);
    assert_eq!(take_all(&q), restored);
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

#[test]
fn a_message_sent_to_the_queue_by_name_is_logged_with_its_key_and_read_back_without() {
    let dir = TempDir::new("named");
    let named = |body: &'static str| {
        let props = Properties::new(Bytes::from_static(b"p"), &CODEC);
        Message::to_named_queue(props, Bytes::from_static(body.as_bytes()), 7)
    };
    {
        let (_store, q) = queue(&dir, 1);
        assert_eq!(q.enqueue(named("a")), Enqueued::Stored);
        assert_eq!(q.enqueue(named("b")), Enqueued::Stored);
        assert_eq!(q.paged_out_count(), 1);
        // The records name the queue as the routing key, as any other message's would.
        let log = q.log.get().cloned().unwrap();
        for r in log.live_from(0, 10) {
            let bytes = Bytes::from(log.read(&r.location).unwrap());
            let (record, _) = MessageRecord::decode_queued(bytes).unwrap();
            assert_eq!(
                (&record.exchange[..], &record.routing_key[..]),
                (&b""[..], &b"q"[..])
            );
        }
    }
    // Read back after a restart: sent to "q" through the default exchange, so the key is
    // again the queue's name, not stored.
    let (_store, q) = queue(&dir, 10);
    for body in ["a", "b"] {
        let (m, _) = q.get(true).unwrap();
        assert_eq!(m.message.body(), body.as_bytes());
        assert_eq!(m.message.routing_key(), None);
        assert_eq!(m.message.routing_key_in(q.name()), "q");
    }
}
