//! A clean shutdown checkpoints each durable queue's index, and the next start loads it
//! instead of reading the whole log; what comes back is exactly what was confirmed and not
//! acked, in order, with redelivered flags, also for what happened after the checkpoint
//! (docs/architecture.md, "Index checkpoints").
//!
//! Reference mode: these tests need a data directory, so they pass without checking anything
//! against an external broker.

use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicPublishOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation};
use pigeon_tests::lapin_support::{self as lp, confirm_connection, durable};
use pigeon_tests::{unique, within, DataDir};
use std::path::PathBuf;

/// A 1 KiB body that starts with `n`.
fn body(n: u32) -> String {
    format!("{n:<1024}")
}

/// Publishes `range` persistent, all in flight at once, and checks every confirm.
async fn publish(channel: &Channel, queue: &str, range: std::ops::Range<u32>) {
    let mut confirms = Vec::new();
    for n in range {
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body(n).as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
        confirms.push(confirm);
    }
    for confirm in confirms {
        assert_eq!(
            within("a publisher confirm", confirm).await.unwrap(),
            Confirmation::Ack(None)
        );
    }
}

/// Takes `n` deliveries on a fresh consumer (prefetch `n`), cancels it, and acks those
/// `unacked` says no to.
/// Returns (number, redelivered) of each.
async fn consume(
    channel: &Channel,
    queue: &str,
    n: usize,
    unacked: impl Fn(u32) -> bool,
) -> Vec<(u32, bool)> {
    within(
        "basic.qos-ok",
        channel.basic_qos(n.min(u16::MAX as usize) as u16, BasicQosOptions::default()),
    )
    .await
    .unwrap();
    let mut consumer = lp::consume_acked(channel, queue).await;
    let mut got = Vec::new();
    let mut deliveries = Vec::new();
    for _ in 0..n {
        let d = lp::next_delivery(&mut consumer).await;
        let number: u32 = lp::body(&d).trim_end().parse().unwrap();
        got.push((number, d.redelivered));
        deliveries.push((number, d));
    }
    // Cancelled before any ack, so that the prefetch window delivered nothing more.
    within(
        "basic.cancel-ok",
        channel.basic_cancel(consumer.tag(), BasicCancelOptions::default()),
    )
    .await
    .unwrap();
    let mut held = Vec::new();
    for (number, d) in deliveries {
        if unacked(number) {
            held.push(d);
        } else {
            d.acker.ack(BasicAckOptions::default()).await.unwrap();
        }
    }
    // A round trip: the broker has handled the acks before it answers.
    within(
        "basic.qos-ok",
        channel.basic_qos(0, BasicQosOptions::default()),
    )
    .await
    .unwrap();
    drop(held);
    got
}

fn queue_log_dir(data: &DataDir, name: &str) -> PathBuf {
    let id = format!("/\u{0}{name}");
    std::fs::read_dir(data.path().join("queues"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|d| std::fs::read(d.join("id")).is_ok_and(|b| b == id.as_bytes()))
        .expect("the queue's log directory")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_from_a_checkpoint_recovers_exactly_what_was_confirmed_and_not_acked() {
    let data = DataDir::with(|c| c.fsync = true);
    let Some(broker) = data.start().await else {
        return;
    };
    let (conn, ch) = confirm_connection(&broker).await;
    let q = unique("ckpt");
    within(
        "queue.declare-ok",
        ch.queue_declare(q.as_str().into(), durable(), FieldTable::default()),
    )
    .await
    .unwrap();
    // 1.5 MiB: past the 1 MiB a shutdown checkpoints.
    publish(&ch, &q, 0..1500).await;
    // 0..400 delivered; every hundredth left unacked (it comes back redelivered).
    let consumer_ch = lp::open_channel(&conn).await;
    let got = consume(&consumer_ch, &q, 400, |n| n % 100 == 0).await;
    assert_eq!(got, (0..400).map(|n| (n, false)).collect::<Vec<_>>());
    drop(conn);

    let broker = data.restart(broker).await;
    let dir = queue_log_dir(&data, &q);
    assert!(
        dir.join("checkpoint").exists(),
        "the shutdown checkpointed the queue"
    );
    let (conn, ch) = confirm_connection(&broker).await;
    assert_eq!(lp::message_count(&ch, &q).await, 1104);
    // After the checkpoint: new messages, acks of recovered ones (two of the redelivered
    // ones and 400..410), one left delivered.
    publish(&ch, &q, 1500..1510).await;
    let consumer_ch = lp::open_channel(&conn).await;
    let got = consume(&consumer_ch, &q, 14, |n| n == 200 || n == 405).await;
    let mut want = vec![(0, true), (100, true), (200, true), (300, true)];
    want.extend((400..410).map(|n| (n, false)));
    assert_eq!(got, want);
    drop(conn);

    // Too little changed for a new checkpoint: this start loads the old one and replays the
    // log after it.
    let broker = data.restart(broker).await;
    let (_conn, ch) = lp::connect_channel(&broker).await;
    assert_eq!(lp::message_count(&ch, &q).await, 1102);
    let got = consume(&ch, &q, 1102, |_| false).await;
    let mut want = vec![(200, true), (405, true)];
    want.extend((410..1510).map(|n| (n, false)));
    assert_eq!(got, want);
    broker.stop().await;
}
