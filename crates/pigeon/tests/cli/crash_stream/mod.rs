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

/// What one publisher did in one round.
#[derive(Debug, Default)]
struct Produced {
    /// Its ids `first..attempted_end` were handed to the client: those may be stored.
    attempted_end: u64,
    confirmed: BTreeSet<u64>,
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

mod clients;

use clients::*;

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
