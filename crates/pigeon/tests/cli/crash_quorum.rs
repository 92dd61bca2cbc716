//! Crash recovery of a quorum queue on a node without `[cluster]` (a cluster of one): the real
//! `pigeon` binary on a temporary data directory, a lapin publisher sending persistent messages
//! to a quorum queue with publisher confirms (a window of them in flight), killed with SIGKILL
//! at a random moment, twice, then restarted and drained. Every message whose confirm arrived
//! is there (its entry was fsynced in the node's write-ahead log before the confirm), none is
//! invented, none comes twice, and each round's messages come in publish order.
//!
//! The random kill delays come from a seed that is printed; `PIGEON_CRASH_SEED=<seed>` replays
//! them.

use super::crash::{crash_config, within, Pigeon, Rng};
use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const QUEUE: &str = "crash.quorum";
const ROUNDS: u32 = 2;
/// Unconfirmed publishes in flight.
const WINDOW: usize = 32;

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args
}

async fn connect(url: &str) -> Connection {
    within(
        "a connection",
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    .unwrap()
}

/// Publishes `r<round>:s<seq>` until the connection dies; returns the confirmed seqs and the
/// number attempted.
async fn produce(
    url: String,
    round: u32,
    first: tokio::sync::oneshot::Sender<()>,
) -> (BTreeSet<u64>, u64) {
    let conn = connect(&url).await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.queue_declare(
        QUEUE.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        quorum(),
    )
    .await
    .unwrap();
    let mut first = Some(first);
    let mut confirmed = BTreeSet::new();
    let mut in_flight = std::collections::VecDeque::new();
    let mut seq = 0u64;
    loop {
        let body = format!("r{round}:s{seq}");
        let sent = ch
            .basic_publish(
                "".into(),
                QUEUE.into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await;
        let Ok(confirm) = sent else {
            return (confirmed, seq);
        };
        in_flight.push_back((seq, confirm));
        seq += 1;
        if in_flight.len() >= WINDOW {
            let Some((s, confirm)) = in_flight.pop_front() else {
                continue;
            };
            match confirm.await {
                Ok(c) if c.is_ack() => {
                    confirmed.insert(s);
                    if let Some(tx) = first.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(c) => panic!("message {s} nacked: {c:?}"),
                Err(_) => return (confirmed, seq),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_messages_of_a_single_node_quorum_queue_survive_sigkill() {
    let mut rng = Rng::from_env("quorum crash test");
    let dir = tempfile::tempdir().unwrap();
    let config = crash_config(dir.path());

    let mut produced: BTreeMap<u32, (BTreeSet<u64>, u64)> = BTreeMap::new();
    let mut broker = Pigeon::start(&config).await;
    for round in 0..ROUNDS {
        let (tx, first) = tokio::sync::oneshot::channel();
        let producer = tokio::spawn(produce(broker.url(), round, tx));
        within("the first confirm", first).await.unwrap();
        tokio::time::sleep(Duration::from_millis(rng.below(500))).await;
        tokio::task::spawn_blocking(move || broker.kill())
            .await
            .unwrap();
        let result = within("the producer to notice the kill", producer)
            .await
            .unwrap();
        println!(
            "round {round}: {} published, {} confirmed before the kill",
            result.1,
            result.0.len()
        );
        produced.insert(round, result);
        broker = Pigeon::start(&config).await;
    }

    // Drain: every confirmed message, nothing invented, nothing twice, in order per round.
    let conn = connect(&broker.url()).await;
    let ch = conn.create_channel().await.unwrap();
    ch.basic_qos(500, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            QUEUE.into(),
            "drain".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut missing: BTreeSet<(u32, u64)> = produced
        .iter()
        .flat_map(|(r, (confirmed, _))| confirmed.iter().map(move |s| (*r, *s)))
        .collect();
    let mut seen: BTreeSet<(u32, u64)> = BTreeSet::new();
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    while !missing.is_empty() {
        let d = within("the next confirmed message", consumer.next())
            .await
            .expect("the consumer ended")
            .expect("a delivery");
        let text = String::from_utf8(d.data.clone()).unwrap();
        let (r, s) = text
            .strip_prefix('r')
            .and_then(|t| t.split_once(":s"))
            .map(|(r, s)| (r.parse::<u32>().unwrap(), s.parse::<u64>().unwrap()))
            .unwrap_or_else(|| panic!("not a test message: {text:?}"));
        let attempted = produced.get(&r).map_or(0, |p| p.1);
        assert!(s < attempted, "{text} was never published");
        assert!(seen.insert((r, s)), "{text} delivered twice");
        if let Some(before) = last.insert(r, s) {
            assert!(before < s, "{text} came after r{r}:s{before}");
        }
        missing.remove(&(r, s));
    }
    let _ = conn.close(200, "ok".into()).await;
    broker.terminate();
}
