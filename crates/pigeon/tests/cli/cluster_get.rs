//! `basic.get`, `queue.purge` and the counts of a classic queue through another node than its
//! home (docs/clustering.md, "Classic queues in a cluster"): asked of the home, so a client on
//! any node sees the queue's messages and counts; while the home is down, 404.
//!
//! Two real `pigeon` processes (the harness of `cluster.rs`), lapin and reqwest.

use super::cluster::{channel, declare_when_ready, until_listed, write_configs, Node};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, QueueDeclareOptions,
    QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::Channel;
use pigeon_tests::http_support::Api;
use pigeon_tests::within;
use std::time::Duration;

const QUEUE: &str = "g";

/// `queue.declare-ok`'s counts of a passive declare through `ch`.
async fn passive(ch: &Channel) -> (u32, u32) {
    let q = ch
        .queue_declare(
            QUEUE.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    (q.message_count(), q.consumer_count())
}

/// `messages_ready` of `GET /api/queues/%2f/g` on `node`, once it equals `want`.
async fn until_ready(node: &Node, want: u64) -> serde_json::Value {
    let api = Api::at(&node.api(), "guest", "guest");
    within(&format!("{want} messages ready on {}", node.api()), async {
        loop {
            let a = api.get(&format!("/api/queues/%2f/{QUEUE}")).await;
            if a.status == 200 && a.body["messages_ready"] == want {
                return a.body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// `basic.get` through `ch`: the body, whether redelivered, the messages left, its tag.
async fn get(ch: &Channel, no_ack: bool) -> (String, bool, u32, u64) {
    let m = ch
        .basic_get(QUEUE.into(), BasicGetOptions { no_ack })
        .await
        .unwrap()
        .expect("a message");
    (
        String::from_utf8(m.delivery.data.clone()).unwrap(),
        m.delivery.redelivered,
        m.message_count,
        m.delivery.delivery_tag,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_get_purge_and_counts_through_another_node_are_the_homes() {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_configs(dir.path(), 2);
    let home = Node::start(&configs[0]).await;
    let other = Node::start(&configs[1]).await;
    declare_when_ready(&home, QUEUE, FieldTable::default()).await;
    until_listed(&other, QUEUE).await;

    // Five persistent messages confirmed through the other node: they are at the home.
    let (_c1, ch) = channel(&other).await;
    super::cluster::publish_confirmed(&ch, QUEUE, 5).await;
    // The other node's declare-ok and /api/queues/{v}/{q} show the home's counts.
    assert_eq!(passive(&ch).await, (5, 0));
    let shown = until_ready(&other, 5).await;
    assert_eq!(shown["node"], "rabbit@n0", "{shown}");
    assert_eq!(shown["messages"], 5, "{shown}");

    // basic.get through the other node takes the home's head, acked there by its tag.
    let (body, redelivered, left, tag) = get(&ch, false).await;
    assert_eq!((body.as_str(), redelivered, left), ("m0", false, 4));
    ch.basic_ack(tag, BasicAckOptions::default()).await.unwrap();
    let (body, _, left, _) = get(&ch, true).await;
    assert_eq!((body.as_str(), left), ("m1", 3));
    // A nack with requeue gives it back at the home, redelivered.
    let (body, _, _, tag) = get(&ch, false).await;
    assert_eq!(body, "m2");
    until_ready(&home, 2).await;
    ch.basic_nack(
        tag,
        BasicNackOptions {
            requeue: true,
            multiple: false,
        },
    )
    .await
    .unwrap();
    until_ready(&home, 3).await;
    let (body, redelivered, left, _) = get(&ch, true).await;
    assert_eq!((body.as_str(), redelivered, left), ("m2", true, 2));
    // The acked one is gone at the home: two left there.
    let (_c0, home_ch) = channel(&home).await;
    assert_eq!(passive(&home_ch).await, (2, 0));

    // A consumer at the home counts in the other node's declare-ok.
    let (_c2, home_ch) = channel(&home).await;
    let _consumer = home_ch
        .basic_consume(
            "g".into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    within(
        "the home's consumer counted through the other node",
        async {
            while passive(&ch).await.1 != 1 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await;
    home_ch
        .basic_cancel("c".into(), Default::default())
        .await
        .unwrap();
    // Whatever the consumer held is back; then a purge through the other node empties the
    // home's queue.
    home_ch.close(200, "bye".into()).await.unwrap();
    until_ready(&home, 2).await;
    let purged = ch
        .queue_purge(QUEUE.into(), QueuePurgeOptions::default())
        .await
        .unwrap();
    assert_eq!(purged, 2);
    let (_c3, home_ch) = channel(&home).await;
    assert_eq!(passive(&home_ch).await, (0, 0));
    assert!(ch
        .basic_get(QUEUE.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .is_none());

    // The home down: basic.get through the other node is RabbitMQ's 404.
    home.kill();
    let e = ch
        .basic_get(QUEUE.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("NOT-FOUND"), "{e}");
    assert!(e.to_string().contains("is down or inaccessible"), "{e}");
}
