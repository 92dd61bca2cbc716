//! Tests of priority queues' paging (`prio_paging.rs`).

use super::SeqList;
use crate::message::{Death, Message, MessageMeta, Properties, PropertiesCodec, PropertiesView};
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
    // Only what was read back counts (the tail's bodies are not read at start: `paging.rs`,
    // **Bytes**).
    let total = persistent.iter().map(|(b, _, _)| b.len()).sum::<usize>();
    assert!(q.queued_bytes() > 0 && q.queued_bytes() < total);
    assert_eq!(take_all(&q), expected(&persistent));
    assert_eq!(q.queued_bytes(), 0);
}

/// Copies the directory tree `from` into `to` (a crash: what is on disk at that moment).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Appends half a record to the newest segment of `log_dir`: a write the crash interrupted
/// (its publisher was never confirmed).
fn tear_newest_segment(log_dir: &std::path::Path) {
    let newest = std::fs::read_dir(log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    bytes.extend_from_slice(&500u32.to_le_bytes());
    bytes.extend_from_slice(&[7; 40]);
    std::fs::write(newest, bytes).unwrap();
}

#[test]
fn a_crashed_priority_queue_restarts_from_its_checkpoint_in_exact_order() {
    let dir = TempDir::new("checkpoint");
    let crashed = TempDir::new("checkpoint-crashed");
    let items: Vec<_> = (0..400).map(mixed).collect();
    // The messages that must come back: persistent, not acknowledged; with redelivered flags.
    let mut live: Vec<(String, u8, bool)> = Vec::new();
    let mut redelivered = std::collections::HashSet::new();
    let (store, q) = queue(&dir, 8, true);
    let log = || q.log.get().cloned().unwrap();
    let take_some = |n: usize,
                     live: &mut Vec<(String, u8, bool)>,
                     redelivered: &mut std::collections::HashSet<String>| {
        // Every third one taken goes back (delivered, so redelivered after the restart); the
        // others are acknowledged.
        let taken: Vec<_> = (0..n).map(|_| q.get(false).unwrap().0).collect();
        let mut back = Vec::new();
        for (i, m) in taken.into_iter().enumerate() {
            let body = String::from_utf8_lossy(m.message.body()).into_owned();
            if i % 3 == 0 {
                redelivered.insert(body);
                back.push(m);
            } else {
                q.settle([&m]);
                live.retain(|(b, _, _)| *b != body);
            }
        }
        q.requeue(back);
    };
    for (body, p, persistent) in &items[..250] {
        q.enqueue(message(body, *p, *persistent));
        if *persistent {
            live.push((body.clone(), *p, true));
        }
    }
    take_some(30, &mut live, &mut redelivered);
    store.sync().unwrap();
    assert!(log().checkpoint().unwrap().is_some());
    // Past the checkpoint: more messages on every level, more acknowledgements (of messages
    // the checkpoint lists and of new ones), more delivered flags.
    for (body, p, persistent) in &items[250..] {
        q.enqueue(message(body, *p, *persistent));
        if *persistent {
            live.push((body.clone(), *p, true));
        }
    }
    take_some(40, &mut live, &mut redelivered);
    store.sync().unwrap();
    // The crash: the files as they are now, and a record torn off the end.
    copy_tree(&dir.0, &crashed.0);
    let log_dir = crashed.0.join(log().dir().strip_prefix(&dir.0).unwrap());
    tear_newest_segment(&log_dir);
    drop(q);
    drop(store);

    let (_store, q) = queue(&crashed, 8, true);
    let log = q.log.get().cloned().unwrap();
    let opened = log.recover().stats;
    assert!(
        matches!(
            opened.checkpoint,
            pigeon_store::CheckpointOutcome::Loaded { .. }
        ),
        "{:?}",
        opened.checkpoint
    );
    assert_eq!(opened.truncations.len(), 1, "the torn record is cut off");
    assert_eq!(q.message_count() as usize, live.len());
    assert!(q.paged_out_count() > 0, "only a head-full is read");
    let mut got = Vec::new();
    while let Some((m, _)) = q.get(true) {
        let body = String::from_utf8_lossy(m.message.body()).into_owned();
        assert_eq!(m.redelivered, redelivered.contains(&body), "{body}");
        got.push(body);
    }
    assert_eq!(got, expected(&live));
    assert_eq!(log.len(), 0, "everything acknowledged");
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
