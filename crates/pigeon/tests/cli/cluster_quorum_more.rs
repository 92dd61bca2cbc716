//! More of RabbitMQ's quorum queue behaviour on three `pigeon` processes (docs/clustering.md,
//! "Quorum queues in the broker"): `basic.get` (ack and no-ack, get-ok's `message_count`,
//! `redelivered` and `x-delivery-count` after a requeue, get-empty, a get's message back in the
//! queue when its channel closes, refused on a single-active-consumer queue), `queue.purge`
//! (the count of ready messages, unacknowledged ones kept), `tx.commit` (commit-ok once the
//! group committed: a get through another node finds the messages), and a policy applied to a
//! running queue (`max-length` dropping the oldest).

use super::cluster::{start_all, until_login, write_configs, Node};
use super::cluster_quorum::{declare, delivery_count, publish_confirmed, quorum_args};
use super::ctl_support::ctl_at;
use lapin::message::BasicGetMessage;
use lapin::options::{
    BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions, QueuePurgeOptions,
};
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Channel};
use pigeon_tests::within;
use std::time::Duration;

async fn get(ch: &Channel, queue: &str, no_ack: bool) -> Option<BasicGetMessage> {
    ch.basic_get(queue.into(), BasicGetOptions { no_ack })
        .await
        .unwrap()
}

fn body(m: &BasicGetMessage) -> String {
    String::from_utf8(m.delivery.data.clone()).unwrap()
}

/// The ready messages `node` lists for `queue` (its replica's count).
async fn messages(node: &Node, queue: &str) -> Option<u64> {
    let out = ctl_at(
        &node.api(),
        &["list_queues", "name", "messages", "--formatter", "json"],
    )
    .await;
    let all: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
    all.as_array()?
        .iter()
        .find(|q| q["name"] == queue)
        .and_then(|q| q["messages"].as_u64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_get_purge_tx_and_policies_on_a_quorum_queue() {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_configs(dir.path(), 3);
    let nodes = start_all(&configs).await;

    let a = declare(&nodes[0], "qg", quorum_args(&[])).await;
    let pub_ch = a.create_channel().await.unwrap();
    pub_ch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for b in ["m1", "m2", "m3"] {
        publish_confirmed(&pub_ch, "qg", b).await;
    }

    // basic.get through B (1), acknowledging: the head, with the ready messages left.
    let b = until_login(&nodes[1], "guest", "guest").await;
    let ch = b.create_channel().await.unwrap();
    let m = get(&ch, "qg", false).await.expect("a message");
    assert_eq!((body(&m), m.message_count), ("m1".into(), 2));
    assert!(!m.delivery.redelivered);
    assert_eq!(delivery_count(&m.delivery), None);
    // Requeued: first in line again, redelivered, x-delivery-count 1.
    m.delivery
        .acker
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let m = get(&ch, "qg", false).await.expect("the requeued message");
    assert_eq!((body(&m), m.message_count), ("m1".into(), 2));
    assert!(m.delivery.redelivered);
    assert_eq!(delivery_count(&m.delivery), Some(1));
    m.delivery.acker.ack(Default::default()).await.unwrap();
    // No-ack: taken for good.
    let m = get(&ch, "qg", true).await.expect("m2");
    assert_eq!((body(&m), m.message_count), ("m2".into(), 1));
    // Taken on a channel that closes unacknowledged: back in the queue.
    let other = b.create_channel().await.unwrap();
    let m = get(&other, "qg", false).await.expect("m3");
    assert_eq!((body(&m), m.message_count), ("m3".into(), 0));
    assert!(get(&ch, "qg", true).await.is_none(), "m3 is held");
    other.close(200, "bye".into()).await.unwrap();
    let m = get(&ch, "qg", true).await.expect("m3 back");
    assert_eq!(body(&m), "m3");
    assert!(m.delivery.redelivered);
    assert_eq!(delivery_count(&m.delivery), Some(1));
    assert!(get(&ch, "qg", true).await.is_none());

    // queue.purge through C (2): the ready messages, not the one held unacknowledged.
    for b in ["p1", "p2", "p3", "p4"] {
        publish_confirmed(&pub_ch, "qg", b).await;
    }
    let held = get(&ch, "qg", false).await.expect("p1");
    let c = until_login(&nodes[2], "guest", "guest").await;
    let c_ch = c.create_channel().await.unwrap();
    let purged = c_ch
        .queue_purge("qg".into(), QueuePurgeOptions::default())
        .await
        .unwrap();
    assert_eq!(purged, 3);
    held.delivery.acker.ack(Default::default()).await.unwrap();
    assert!(get(&ch, "qg", true).await.is_none());

    // tx.commit on C: commit-ok once committed, so a get through A finds both.
    c_ch.tx_select().await.unwrap();
    for b in ["t1", "t2"] {
        c_ch.basic_publish(
            "".into(),
            "qg".into(),
            BasicPublishOptions::default(),
            b.as_bytes(),
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap();
    }
    c_ch.tx_commit().await.unwrap();
    let a_ch = a.create_channel().await.unwrap();
    let m = get(&a_ch, "qg", true).await.expect("t1 committed");
    assert_eq!((body(&m), m.message_count), ("t1".into(), 1));
    let m = get(&a_ch, "qg", true).await.expect("t2 committed");
    assert_eq!(body(&m), "t2");

    // A policy on the running queue: max-length 1 drops the oldest (drop-head).
    for b in ["l1", "l2", "l3"] {
        publish_confirmed(&pub_ch, "qg", b).await;
    }
    ctl_at(
        &nodes[0].api(),
        &[
            "set_policy",
            "--apply-to",
            "queues",
            "qmax",
            "^qg$",
            r#"{"max-length":1}"#,
        ],
    )
    .await
    .ok();
    within("the policy to cut qg to one message", async {
        while messages(&nodes[0], "qg").await != Some(1) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let m = get(&a_ch, "qg", true).await.expect("the newest");
    assert_eq!((body(&m), m.message_count), ("l3".into(), 0));

    // Single active consumer: basic.get refused as RabbitMQ refuses it (405).
    let sac = quorum_args(&[("x-single-active-consumer", AMQPValue::Boolean(true))]);
    let s = declare(&nodes[0], "qsac", sac).await;
    let s_ch = s.create_channel().await.unwrap();
    let text = s_ch
        .basic_get("qsac".into(), BasicGetOptions { no_ack: true })
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        text.contains("RESOURCE_LOCKED")
            && text.contains("basic.get operations are not supported by quorum queues with single active consumer"),
        "{text}"
    );
}
