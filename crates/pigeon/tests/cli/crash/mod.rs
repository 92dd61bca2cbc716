//! Crash recovery of the real binary: `pigeon` runs as a child process on a temporary data
//! directory (fsync on), several lapin connections publish persistent messages with publisher
//! confirms while a consumer takes and acks some of them, and the broker is killed with SIGKILL
//! at a random moment. It is restarted on the same directory and everything in its queues is
//! consumed. Then:
//!
//! - every message whose publisher confirm arrived is there, unless a consumer acked it before
//!   the kill (nothing confirmed is ever lost);
//! - every message delivered comes from a publish that was attempted (nothing is invented), with
//!   its body intact, at most once per recovery and, per publisher, in publish order;
//! - a message that was never delivered comes back without the redelivered flag (checked on the
//!   queue nobody consumes before a kill: on the other, a delivery the broker sent may have
//!   died with the connection before the client saw it);
//! - the broker's recovery line counts exactly the messages the queues hold.
//!
//! Messages published but not confirmed, or acked but killed before the ack reached the disk,
//! may or may not come back (at-least-once). Several kill/restart rounds run on the same
//! directory; the last one stops the broker with SIGTERM instead and checks that a clean stop
//! loses nothing and brings back nothing.
//!
//! The random kill delays come from a seed that is printed; `PIGEON_CRASH_SEED=<seed>` replays
//! them (the interleaving of the threads is of course not replayed).

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PRODUCERS: u32 = 4;
const ROUNDS: u32 = 3;
/// Unconfirmed publishes a producer keeps in flight.
const WINDOW: usize = 64;
/// The consumer's prefetch; it leaves one message in twenty unacked, so it stalls at this many.
const PREFETCH: u16 = 150;
/// How long any single expected event may take before the test fails.
const TIMEOUT: Duration = Duration::from_secs(20);

const EXCHANGE: &str = "crash.x";
/// Gets every message: half through the default exchange, half through `EXCHANGE`.
const QUEUE: &str = "crash.q";
/// Gets the messages published through `EXCHANGE` only; nobody consumes it before a kill.
const FANOUT_QUEUE: &str = "crash.fan";

mod clients;
mod process;

use clients::*;
pub(crate) use process::{crash_config, within, Pigeon, Rng};

// ---------------------------------------------------------------------------------------------
// Messages

/// A message's identity: which round and producer published it, and its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Id {
    round: u32,
    producer: u32,
    seq: u64,
}

impl Id {
    /// Even seqs go through the default exchange to `QUEUE`; odd ones through `EXCHANGE`, to
    /// both queues.
    fn via_exchange(self) -> bool {
        self.seq % 2 == 1
    }

    /// `r<round>:p<producer>:s<seq>|` then padding derived from the id (sometimes 64 KiB, so
    /// messages span frames), which the reader checks.
    fn body(self) -> Vec<u8> {
        let mut body = format!("r{}:p{}:s{}|", self.round, self.producer, self.seq).into_bytes();
        let len = match self.seq % 97 {
            0 => 64 * 1024,
            _ => (self.seq * 7919 % 2000) as usize,
        };
        let fill = b'a' + (self.seq % 26) as u8;
        body.resize(body.len() + len, fill);
        body
    }

    fn parse(body: &[u8]) -> Id {
        let text = String::from_utf8_lossy(body);
        let head = text.split('|').next().unwrap();
        let mut parts = head.split(':');
        let mut next = |prefix: char| -> u64 {
            parts
                .next()
                .and_then(|p| p.strip_prefix(prefix))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("not a test message: {head:?}"))
        };
        let id = Id {
            round: next('r') as u32,
            producer: next('p') as u32,
            seq: next('s'),
        };
        assert!(
            body == id.body().as_slice(),
            "the body of {id:?} is damaged"
        );
        id
    }
}

/// What one producer did in one round.
#[derive(Debug, Default)]
struct Produced {
    /// Publishes attempted: seqs `0..attempted`.
    attempted: u64,
    confirmed: BTreeSet<u64>,
    nacked: u64,
}

/// What the consumer saw before the kill.
#[derive(Default)]
struct Consumed {
    delivered: HashSet<Id>,
    /// Acks sent (or being sent): the broker may or may not have recorded them.
    acked: HashSet<Id>,
}

// ---------------------------------------------------------------------------------------------
// The test

/// Everything known about every message, across rounds.
#[derive(Default)]
struct Ledger {
    produced: BTreeMap<(u32, u32), Produced>,
    /// Ids a consumer has seen (live or while draining): those may come back redelivered.
    ever_delivered: HashSet<Id>,
    /// Ids whose ack may have reached the broker (live consumers and drains).
    ever_acked: HashSet<Id>,
}

impl Ledger {
    fn attempted(&self, id: Id) -> bool {
        self.produced
            .get(&(id.round, id.producer))
            .is_some_and(|p| id.seq < p.attempted)
    }
}

/// Checks one drained queue after a restart, against what `round` published and consumed.
fn check_drain(
    ledger: &Ledger,
    queue: &str,
    round: u32,
    drained: &[(Id, bool)],
    required: impl Fn(Id) -> bool,
    unseen_not_redelivered: bool,
) -> (usize, usize) {
    let mut seen = HashSet::new();
    let mut last: HashMap<(u32, u32), u64> = HashMap::new();
    let mut redelivered_after_ack = (0, 0);
    for &(id, redelivered) in drained {
        assert!(ledger.attempted(id), "{queue}: {id:?} was never published");
        assert!(
            seen.insert(id),
            "{queue}: {id:?} delivered twice in one recovery"
        );
        if let Some(&prev) = last.get(&(id.round, id.producer)) {
            assert!(
                id.seq > prev,
                "{queue}: {id:?} after seq {prev} of the same producer: out of publish order"
            );
        }
        last.insert((id.round, id.producer), id.seq);
        if unseen_not_redelivered && !ledger.ever_delivered.contains(&id) {
            assert!(
                !redelivered,
                "{queue}: {id:?} was never delivered before, yet comes back redelivered"
            );
        }
        if ledger.ever_acked.contains(&id) {
            if redelivered {
                redelivered_after_ack.0 += 1;
            } else {
                redelivered_after_ack.1 += 1;
            }
        }
    }
    let mut missing = Vec::new();
    for p in 0..PRODUCERS {
        let produced = &ledger.produced[&(round, p)];
        for &seq in &produced.confirmed {
            let id = Id {
                round,
                producer: p,
                seq,
            };
            if required(id) && !seen.contains(&id) {
                missing.push(id);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{queue}: {} confirmed messages of round {round} are lost, first {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    redelivered_after_ack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_messages_survive_sigkill_and_nothing_is_invented() {
    let started = Instant::now();
    let mut rng = Rng::from_env("crash test");

    let dir = tempfile::tempdir().unwrap();
    let config = crash_config(dir.path());

    let mut ledger = Ledger::default();
    let mut broker = Pigeon::start(&config).await;
    assert_eq!(broker.recovered.0, 0, "a new data directory is empty");
    for round in 0..ROUNDS {
        let url = broker.url();
        {
            let conn = connect(&url).await;
            let channel = within("channel.open", conn.create_channel()).await.unwrap();
            topology(&channel, round > 0).await;
            let _ = conn.close(200, "ok".into()).await;
        }
        let seen = Arc::new(Mutex::new(Consumed::default()));
        let stage = Arc::new(AtomicU8::new(0));
        let mut consumer = tokio::spawn(consume_some(
            url.clone(),
            Arc::clone(&seen),
            Arc::clone(&stage),
        ));
        let (first_confirm, mut confirming) = tokio::sync::mpsc::channel(PRODUCERS as usize);
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| tokio::spawn(produce(url.clone(), round, p, first_confirm.clone())))
            .collect();
        drop(first_confirm);
        // The kill comes at a random moment once every producer is being confirmed.
        for _ in 0..PRODUCERS {
            within("every producer's first confirm", confirming.recv())
                .await
                .expect("a producer ended before its first confirm");
        }
        let delay = Duration::from_millis(rng.below(1000));
        tokio::time::sleep(delay).await;
        tokio::task::spawn_blocking(move || broker.kill())
            .await
            .unwrap();
        let mut published = 0;
        let mut confirmed = 0;
        for (p, task) in producers.into_iter().enumerate() {
            let produced = within("a producer to notice the kill", task).await.unwrap();
            assert_eq!(
                produced.nacked, 0,
                "producer {p}: the broker nacked messages"
            );
            published += produced.attempted;
            confirmed += produced.confirmed.len();
            ledger.produced.insert((round, p as u32), produced);
        }
        // What it saw is recorded before it acks, so stopping it loses nothing.
        match tokio::time::timeout(Duration::from_secs(5), &mut consumer).await {
            Ok(done) => done.unwrap(),
            Err(_) => {
                consumer.abort();
                let waiting = match stage.load(Ordering::Relaxed) {
                    1 => "the next delivery",
                    2 => "an ack to be sent",
                    _ => "its setup",
                };
                println!(
                    "round {round}: lapin's consumer had not noticed the kill after 5 s \
                     (waiting for {waiting}); stopped"
                );
            }
        }
        {
            let seen = seen.lock().unwrap();
            ledger.ever_delivered.extend(seen.delivered.iter().copied());
            ledger.ever_acked.extend(seen.acked.iter().copied());
            println!(
                "round {round}: killed {delay:?} after the first confirms: {published} publishes attempted, \
                 {confirmed} confirmed; {} delivered to the consumer, {} of them acked",
                seen.delivered.len(),
                seen.acked.len()
            );
        }

        broker = Pigeon::start(&config).await;
        let (messages, ms) = broker.recovered;
        let conn = connect(&broker.url()).await;
        let channel = within("channel.open", conn.create_channel()).await.unwrap();
        within(
            "basic.qos",
            channel.basic_qos(500, BasicQosOptions::default()),
        )
        .await
        .unwrap();
        topology(&channel, true).await;
        let in_queue = ready_count(&channel, QUEUE).await;
        let in_fanout = ready_count(&channel, FANOUT_QUEUE).await;
        println!(
            "round {round}: recovered {messages} messages in {ms} ms \
             ({QUEUE}: {in_queue}, {FANOUT_QUEUE}: {in_fanout})"
        );
        assert_eq!(
            messages,
            u64::from(in_queue + in_fanout),
            "the recovery line counts what the queues hold"
        );
        let drained = drain(&channel, QUEUE, in_queue).await;
        let fanned = drain(&channel, FANOUT_QUEUE, in_fanout).await;
        // What a consumer acked before the kill may be gone; nothing else confirmed may be.
        let acked = ledger.ever_acked.clone();
        let after_ack = check_drain(
            &ledger,
            QUEUE,
            round,
            &drained,
            |id| !acked.contains(&id),
            false,
        );
        check_drain(
            &ledger,
            FANOUT_QUEUE,
            round,
            &fanned,
            Id::via_exchange,
            true,
        );
        let redelivered = drained.iter().filter(|(_, r)| *r).count();
        let unseen_redelivered = drained
            .iter()
            .filter(|(id, r)| *r && !ledger.ever_delivered.contains(id))
            .count();
        println!(
            "round {round}: {QUEUE}: {} back, {redelivered} flagged redelivered \
             ({unseen_redelivered} of them sent but never seen by the client); \
             acked before the kill but back: {} flagged redelivered, {} not",
            drained.len(),
            after_ack.0,
            after_ack.1
        );
        for (id, _) in drained.iter().chain(&fanned) {
            ledger.ever_delivered.insert(*id);
            ledger.ever_acked.insert(*id);
        }
        let _ = conn.close(200, "ok".into()).await;
    }

    // A clean stop after the last drain: its acks reach the disk, so nothing comes back.
    tokio::task::spawn_blocking(move || broker.terminate())
        .await
        .unwrap();
    let broker = Pigeon::start(&config).await;
    assert_eq!(
        broker.recovered.0, 0,
        "nothing comes back after a clean stop"
    );
    let conn = connect(&broker.url()).await;
    let channel = within("channel.open", conn.create_channel()).await.unwrap();
    topology(&channel, true).await;
    assert_eq!(ready_count(&channel, QUEUE).await, 0);
    assert_eq!(ready_count(&channel, FANOUT_QUEUE).await, 0);
    drop(conn);
    broker.kill();
    println!("crash test done in {:?}", started.elapsed());
}
