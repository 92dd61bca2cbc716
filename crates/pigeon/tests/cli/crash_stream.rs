//! Crash recovery through the RabbitMQ Stream protocol: the real `pigeon` binary on a temporary
//! data directory (fsync on), named publishers of the `rabbitmq-stream-client` crate publishing
//! with their own publishing ids into one stream (1 MiB segments, so that it rolls), a named
//! reader storing its offset as it goes, and a SIGKILL at a random moment. After each restart:
//!
//! - `QueryPublisherSequence` answers, for every publisher, at least its last confirmed id and
//!   at most its last attempted one;
//! - the unconfirmed tail, resent with the same publisher name and ids, is de-duplicated: what
//!   the broker had already stored is confirmed but not stored again;
//! - `QueryOffset` answers an offset the reader stored, no older than the last one a confirmed
//!   publish made durable (a `StoreOffset` has no response: the reader follows it with a
//!   `QueryOffset`, then a confirmed publish into the same log, which is synced in order);
//! - a consumer from `first` reads every message of every publisher exactly once, in
//!   publishing-id order, and nothing else;
//! - half the rounds (by the seed) append the start of a chunk that never finished to the last
//!   segment, and half a record to its index, as a write torn by the crash would leave them:
//!   the stream opens, cuts them and takes new chunks after the last whole one.
//!
//! The kill delays and torn bytes come from a seed that is printed; `PIGEON_CRASH_SEED=<seed>`
//! replays them (the interleaving of the client tasks is of course not replayed).

use crate::crash::{crash_config, within, Pigeon, Rng};
use futures_lite::StreamExt;
use rabbitmq_stream_client::types::{ByteCapacity, Message, OffsetSpecification};
use rabbitmq_stream_client::{Client, ClientOptions, Environment};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

const PUBLISHERS: usize = 3;
/// The reader's own publisher (index in the per-publisher tables): its confirmed publishes make
/// the reader's stored offsets durable.
const SYNC: usize = PUBLISHERS;
const ROUNDS: u32 = 3;
/// Publishes a publisher keeps unconfirmed.
const WINDOW: usize = 200;
/// The reader stores its offset every this many deliveries.
const STORE_EVERY: usize = 300;
const STREAM: &str = "crash.stream";
/// The reader's reference (consumer name) for `StoreOffset` / `QueryOffset`.
const READER: &str = "crash-reader";

fn publisher_name(p: usize) -> String {
    format!("crash-p{p}")
}

// ---------------------------------------------------------------------------------------------
// Messages

/// `p<publisher>:i<id>|` then padding derived from the id (sometimes 48 KiB), which the reader
/// checks.
fn body(p: usize, id: u64) -> Vec<u8> {
    let mut body = format!("p{p}:i{id}|").into_bytes();
    let len = match id % 211 {
        0 => 48 * 1024,
        _ => (id * 7919 % 1500) as usize,
    };
    body.resize(body.len() + len, b'a' + (id % 26) as u8);
    body
}

fn marker(round: u32) -> Vec<u8> {
    format!("marker:r{round}").into_bytes()
}

/// What a body is.
#[derive(Debug, PartialEq)]
enum Body {
    Message(usize, u64),
    Marker(u32),
}

fn parse(data: &[u8]) -> Body {
    let text = String::from_utf8_lossy(data);
    if let Some(round) = text.strip_prefix("marker:r") {
        return Body::Marker(round.parse().unwrap());
    }
    let head = text.split('|').next().unwrap();
    let (p, id) = head
        .strip_prefix('p')
        .and_then(|rest| rest.split_once(":i"))
        .and_then(|(p, id)| Some((p.parse().ok()?, id.parse().ok()?)))
        .unwrap_or_else(|| panic!("not a test message: {head:?}"));
    assert!(data == body(p, id), "the body of p{p}:i{id} is damaged");
    Body::Message(p, id)
}

// ---------------------------------------------------------------------------------------------
// Clients

async fn environment(addr: SocketAddr) -> Environment {
    within(
        "the stream handshake",
        Environment::builder()
            .host(&addr.ip().to_string())
            .port(addr.port())
            .username("guest")
            .password("guest")
            .build(),
    )
    .await
    .unwrap()
}

/// A bare client, for `QueryPublisherSequence` and `QueryOffset` without declaring anything.
async fn client(addr: SocketAddr) -> Client {
    let options = ClientOptions::builder()
        .host(&addr.ip().to_string())
        .port(addr.port())
        .user("guest")
        .password("guest")
        .build();
    within("the stream handshake", Client::connect(options))
        .await
        .unwrap()
}

/// `fut`, or `None` once the test said stop (the broker was killed: a pending request may
/// never be answered).
async fn or_stop<T>(stop: &mut watch::Receiver<bool>, fut: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        value = fut => Some(value),
        _ = stop.wait_for(|stopped| *stopped) => None,
    }
}

/// What one publisher did in one round.
#[derive(Debug, Default)]
struct Produced {
    /// Its ids `first..attempted_end` were handed to the client: those may be stored.
    attempted_end: u64,
    confirmed: BTreeSet<u64>,
}

/// Publishes with ids from `first`, `WINDOW` unconfirmed, until told to stop (or the connection
/// fails). Says on `started` when its first confirm arrived.
async fn produce(
    addr: SocketAddr,
    p: usize,
    first: u64,
    started: mpsc::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> Produced {
    let mut out = Produced {
        attempted_end: first,
        confirmed: BTreeSet::new(),
    };
    let env = environment(addr).await;
    let mut producer = within(
        "DeclarePublisher",
        env.producer().name(&publisher_name(p)).build(STREAM),
    )
    .await
    .unwrap();
    let (tx, mut confirms) = mpsc::unbounded_channel();
    let mut in_flight = 0;
    loop {
        while in_flight < WINDOW {
            let id = out.attempted_end;
            out.attempted_end += 1;
            let tx = tx.clone();
            let message = Message::builder()
                .body(body(p, id))
                .publising_id(id)
                .build();
            let send = producer.send(message, move |status| {
                let _ = tx.send(status.ok().map(|s| (s.publishing_id(), s.confirmed())));
                async {}
            });
            match or_stop(&mut stop, send).await {
                Some(Ok(())) => in_flight += 1,
                _ => return out,
            }
        }
        match or_stop(&mut stop, confirms.recv()).await {
            Some(Some(Some((id, true)))) => {
                out.confirmed.insert(id);
                in_flight -= 1;
                if out.confirmed.len() == 1 {
                    let _ = started.try_send(());
                }
            }
            Some(Some(Some((id, false)))) => panic!("publisher {p}: id {id} was refused"),
            Some(_) => return out,
            None => {
                // Confirms that arrived before the connection died still count.
                while let Ok(Some((id, true))) = confirms.try_recv() {
                    out.confirmed.insert(id);
                }
                return out;
            }
        }
    }
}

/// What the reader saw before the kill.
#[derive(Debug, Default)]
struct Read {
    /// (offset, publisher, id) of each delivery, in delivery order.
    deliveries: Vec<(u64, usize, u64)>,
    /// Offsets it sent a `StoreOffset` for.
    stored: Vec<u64>,
    /// The last stored offset made durable by a confirmed publish after it.
    durable: Option<u64>,
    /// What its sync publisher did.
    sync: Produced,
}

/// Consumes as `READER` from `from`, storing the offset of the last message processed every
/// `STORE_EVERY` deliveries, until told to stop.
async fn read(
    addr: SocketAddr,
    from: OffsetSpecification,
    sync_first: u64,
    ready: tokio::sync::oneshot::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> Read {
    let mut out = Read {
        sync: Produced {
            attempted_end: sync_first,
            confirmed: BTreeSet::new(),
        },
        ..Default::default()
    };
    let env = environment(addr).await;
    let mut consumer = within(
        "Subscribe",
        env.consumer().name(READER).offset(from).build(STREAM),
    )
    .await
    .unwrap();
    let mut sync = within(
        "DeclarePublisher",
        env.producer().name(&publisher_name(SYNC)).build(STREAM),
    )
    .await
    .unwrap();
    // The kill waits for this: a setup the kill interrupted would fail the test for nothing.
    let _ = ready.send(());
    loop {
        let Some(Some(Ok(delivery))) = or_stop(&mut stop, consumer.next()).await else {
            return out;
        };
        let offset = delivery.offset();
        if let Body::Message(p, id) = parse(delivery.message().data().unwrap_or_default()) {
            out.deliveries.push((offset, p, id));
        }
        if out.deliveries.is_empty() || !out.deliveries.len().is_multiple_of(STORE_EVERY) {
            continue;
        }
        if !matches!(
            or_stop(&mut stop, consumer.store_offset(offset)).await,
            Some(Ok(()))
        ) {
            return out;
        }
        out.stored.push(offset);
        // StoreOffset has no response; a QueryOffset on the same connection is served after it.
        match or_stop(&mut stop, consumer.query_offset()).await {
            Some(Ok(stored)) => assert_eq!(stored, offset, "QueryOffset right after StoreOffset"),
            _ => return out,
        }
        let id = out.sync.attempted_end;
        out.sync.attempted_end += 1;
        let message = Message::builder()
            .body(body(SYNC, id))
            .publising_id(id)
            .build();
        match or_stop(&mut stop, sync.send_with_confirm(message)).await {
            Some(Ok(status)) if status.confirmed() => {
                out.sync.confirmed.insert(id);
                out.durable = Some(offset);
            }
            _ => return out,
        }
    }
}

/// Resends `ids` of publisher `p` under its name; every one must be confirmed.
async fn resend(env: &Environment, p: usize, ids: &[u64]) {
    let mut producer = within(
        "DeclarePublisher",
        env.producer().name(&publisher_name(p)).build(STREAM),
    )
    .await
    .unwrap();
    for batch in ids.chunks(100) {
        let messages = batch
            .iter()
            .map(|&id| {
                Message::builder()
                    .body(body(p, id))
                    .publising_id(id)
                    .build()
            })
            .collect();
        let statuses = within(
            "the resent tail's confirms",
            producer.batch_send_with_confirm(messages),
        )
        .await
        .unwrap();
        assert_eq!(statuses.len(), batch.len());
        for s in statuses {
            assert!(
                s.confirmed(),
                "publisher {p}: resent id {} not confirmed",
                s.publishing_id()
            );
        }
    }
    within("the producer's close", producer.close())
        .await
        .unwrap();
}

/// Reads the stream from `first` up to the marker of `round`; checks that it holds exactly ids
/// `1..next_id[p]` of every publisher, once each and in order. Returns how many it read.
async fn check_all(env: &Environment, round: u32, next_id: &[u64]) -> usize {
    let mut consumer = within(
        "Subscribe",
        env.consumer()
            .offset(OffsetSpecification::First)
            .build(STREAM),
    )
    .await
    .unwrap();
    let mut seen: Vec<Vec<u64>> = vec![Vec::new(); next_id.len()];
    let mut markers = Vec::new();
    let mut last_offset = None;
    let mut count = 0;
    loop {
        let delivery = within(
            &format!("message {} from first (up to marker {round})", count + 1),
            consumer.next(),
        )
        .await
        .expect("the consumer is open")
        .unwrap();
        let offset = delivery.offset();
        assert!(
            last_offset.is_none_or(|last| offset > last),
            "offset {offset} after {last_offset:?}"
        );
        last_offset = Some(offset);
        count += 1;
        match parse(delivery.message().data().unwrap_or_default()) {
            Body::Message(p, id) => seen[p].push(id),
            Body::Marker(r) => {
                markers.push(r);
                if r == round {
                    break;
                }
            }
        }
    }
    within("the consumer's close", consumer.handle().close())
        .await
        .unwrap();
    assert_eq!(markers, (0..=round).collect::<Vec<_>>(), "each marker once");
    for (p, ids) in seen.iter().enumerate() {
        let expected: Vec<u64> = (1..next_id[p]).collect();
        if *ids != expected {
            let dups = ids.len() - ids.iter().collect::<BTreeSet<_>>().len();
            let missing: Vec<_> = expected
                .iter()
                .filter(|id| !ids.contains(id))
                .take(5)
                .collect();
            panic!(
                "publisher {p}: {} messages read from first, expected ids 1..{} once each in order; \
                 {dups} duplicates, first missing {missing:?}",
                ids.len(),
                next_id[p]
            );
        }
    }
    count
}

/// Where a write torn by the crash would be: the last segment and index of the stream.
fn last_segment(data: &Path) -> (PathBuf, PathBuf) {
    let mut segments = Vec::new();
    let mut dirs = vec![data.join("streams")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "segment") {
                segments.push(path);
            }
        }
    }
    let segment = segments
        .into_iter()
        .max_by(|a, b| a.file_name().cmp(&b.file_name()))
        .expect("the stream has a segment");
    let index = segment.with_extension("index");
    (segment, index)
}

/// Appends the beginning of a chunk (its magic and version, then random bytes) to the last
/// segment, and part of a 56-byte record to its index.
fn tear(data: &Path, rng: &mut Rng) -> String {
    let (segment, index) = last_segment(data);
    let mut chunk = vec![0x50, 0x00];
    chunk.extend((0..rng.below(300)).map(|_| rng.below(256) as u8));
    let record: Vec<u8> = (0..1 + rng.below(55))
        .map(|_| rng.below(256) as u8)
        .collect();
    for (path, bytes) in [(&segment, &chunk), (&index, &record)] {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
    }
    format!(
        "{} bytes torn onto {}, {} onto its index",
        chunk.len(),
        segment.display(),
        record.len()
    )
}

// ---------------------------------------------------------------------------------------------
// The test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_stream_messages_survive_sigkill_once_and_in_order() {
    let started = Instant::now();
    let mut rng = Rng::from_env("stream crash test");

    let dir = tempfile::tempdir().unwrap();
    let config = crash_config(dir.path());
    let data = dir.path().join("data");

    let mut broker = Pigeon::start(&config).await;
    {
        let env = environment(broker.stream).await;
        within(
            "Create",
            env.stream_creator()
                .max_segment_size(ByteCapacity::MB(1))
                .create(STREAM),
        )
        .await
        .unwrap();
    }
    // The next publishing id of each publisher, the reader's sync publisher last. Ids start at
    // 1: QueryPublisherSequence answers 0 for a publisher the stream does not know.
    let mut next_id = vec![1u64; PUBLISHERS + 1];
    let mut stored_ever = BTreeSet::new();
    let mut durable: Option<u64> = None;
    let mut resume = OffsetSpecification::First;
    for round in 0..ROUNDS {
        let (stop_tx, stop) = watch::channel(false);
        let (ready, reader_ready) = tokio::sync::oneshot::channel();
        let reader = tokio::spawn(read(
            broker.stream,
            resume.clone(),
            next_id[SYNC],
            ready,
            stop.clone(),
        ));
        let (first_confirm, mut confirming) = mpsc::channel(PUBLISHERS);
        let producers: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                tokio::spawn(produce(
                    broker.stream,
                    p,
                    next_id[p],
                    first_confirm.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        drop(first_confirm);
        for _ in 0..PUBLISHERS {
            within("every publisher's first confirm", confirming.recv())
                .await
                .expect("a publisher ended before its first confirm");
        }
        within("the reader's Subscribe and DeclarePublisher", reader_ready)
            .await
            .expect("the reader ended before it was ready");
        let delay = Duration::from_millis(rng.below(1000));
        tokio::time::sleep(delay).await;
        tokio::task::spawn_blocking(move || broker.kill())
            .await
            .unwrap();
        stop_tx.send(true).unwrap();

        let mut produced = Vec::new();
        for task in producers {
            produced.push(within("a publisher to stop", task).await.unwrap());
        }
        let seen = within("the reader to stop", reader).await.unwrap();
        // Live, the reader got offsets in order and each publisher's ids in order.
        let mut last_id = BTreeMap::new();
        for pair in seen.deliveries.windows(2) {
            assert!(pair[1].0 > pair[0].0, "offsets out of order: {pair:?}");
        }
        for &(_, p, id) in &seen.deliveries {
            if let Some(last) = last_id.insert(p, id) {
                assert!(id > last, "publisher {p}: id {id} read after {last}");
            }
        }
        stored_ever.extend(seen.stored.iter().copied());
        durable = seen.durable.or(durable);
        println!(
            "round {round}: killed {delay:?} after the first confirms; attempted/confirmed per \
             publisher {:?}; {} read, {} offsets stored, last durable {durable:?}",
            produced
                .iter()
                .chain([&seen.sync])
                .zip(&next_id)
                .map(|(p, first)| (p.attempted_end - first, p.confirmed.len()))
                .collect::<Vec<_>>(),
            seen.deliveries.len(),
            seen.stored.len(),
        );
        produced.push(seen.sync);

        if rng.below(2) == 0 {
            println!("round {round}: {}", tear(&data, &mut rng));
        }

        broker = Pigeon::start(&config).await;
        let env = environment(broker.stream).await;
        let client = client(broker.stream).await;
        for (p, got) in produced.iter().enumerate() {
            let name = publisher_name(p);
            let sequence = within(
                "QueryPublisherSequence",
                client.query_publisher_sequence(&name, STREAM),
            )
            .await
            .unwrap();
            let last_confirmed = got.confirmed.last().copied().unwrap_or(next_id[p] - 1);
            assert!(
                sequence >= last_confirmed,
                "{name}: sequence {sequence} after the restart, but {last_confirmed} was confirmed"
            );
            assert!(
                sequence < got.attempted_end.max(next_id[p]),
                "{name}: sequence {sequence}, but only ids below {} were published",
                got.attempted_end
            );
            // Everything not confirmed goes again, also what the sequence says is stored.
            let tail: Vec<u64> = (next_id[p]..got.attempted_end)
                .filter(|id| !got.confirmed.contains(id))
                .collect();
            let duplicates = tail.iter().filter(|&&id| id <= sequence).count();
            resend(&env, p, &tail).await;
            next_id[p] = got.attempted_end.max(next_id[p]);
            let after = within(
                "QueryPublisherSequence",
                client.query_publisher_sequence(&name, STREAM),
            )
            .await
            .unwrap();
            assert_eq!(
                after,
                next_id[p] - 1,
                "{name}: the sequence after the resend"
            );
            println!(
                "round {round}: {name}: sequence {sequence} after the restart; {} resent, {duplicates} \
                 of them stored already",
                tail.len()
            );
        }
        match (
            within("QueryOffset", client.query_offset(READER.into(), STREAM)).await,
            durable,
        ) {
            (Ok(offset), _) => {
                assert!(
                    stored_ever.contains(&offset),
                    "QueryOffset answers {offset}, which the reader never stored"
                );
                assert!(
                    durable.is_none_or(|d| offset >= d),
                    "QueryOffset answers {offset}, older than {durable:?}, made durable before the kill"
                );
                println!("round {round}: {READER}'s stored offset {offset}");
                resume = OffsetSpecification::Offset(offset + 1);
            }
            (Err(e), None) => println!("round {round}: no offset stored yet ({e:?})"),
            (Err(e), Some(d)) => panic!("QueryOffset fails ({e:?}) but {d} was made durable"),
        }
        let producer = within("DeclarePublisher", env.producer().build(STREAM))
            .await
            .unwrap();
        let status = within(
            "the marker's confirm",
            producer.send_with_confirm(Message::builder().body(marker(round)).build()),
        )
        .await
        .unwrap();
        assert!(status.confirmed());
        within("the producer's close", producer.close())
            .await
            .unwrap();
        let read = check_all(&env, round, &next_id).await;
        println!("round {round}: {read} messages read from first, each once and in order");
        let _ = client.close().await;
        let _ = env;
    }

    // A clean stop keeps everything too.
    tokio::task::spawn_blocking(move || broker.terminate())
        .await
        .unwrap();
    let broker = Pigeon::start(&config).await;
    let env = environment(broker.stream).await;
    check_all(&env, ROUNDS - 1, &next_id).await;
    drop(env);
    tokio::task::spawn_blocking(move || broker.kill())
        .await
        .unwrap();
    println!("stream crash test done in {:?}", started.elapsed());
}
