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

/// Waits until `node` counts `n` nodes in its cluster.
async fn until_members(node: &Node, n: usize) {
    within(&format!("{n} members in the cluster"), async {
        loop {
            let out = ctl_at(&node.api(), &["cluster_status", "--formatter", "json"]).await;
            let status: serde_json::Value =
                serde_json::from_str(&out.stdout).unwrap_or(serde_json::Value::Null);
            if status["disk_nodes"]
                .as_array()
                .is_some_and(|l| l.len() == n)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// The members of `queue`'s group as `node` lists them, once it lists three.
async fn three_members(node: &Node, queue: &str) -> Vec<String> {
    within(&format!("{queue}'s three members"), async {
        loop {
            let out = ctl_at(
                &node.api(),
                &["list_queues", "name", "members", "--formatter", "json"],
            )
            .await;
            let all: serde_json::Value =
                serde_json::from_str(&out.stdout).unwrap_or(serde_json::Value::Null);
            let members: Vec<String> = all
                .as_array()
                .and_then(|l| l.iter().find(|q| q["name"] == queue))
                .and_then(|q| q["members"].as_array())
                .map(|m| {
                    m.iter()
                        .filter_map(|n| n.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            if members.len() == 3 {
                return members;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// A fourth node, without a member of the group, serves a consumer (RabbitMQ's consumers work
/// from any node): deliveries in order within the prefetch, a requeue redelivered with
/// `x-delivery-count`, acks and a reject settled in the group, and basic.get through it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_member_serves_consumers_of_a_quorum_queue() {
    use futures_lite::StreamExt;
    use lapin::options::{BasicConsumeOptions, BasicQosOptions, BasicRejectOptions};
    use lapin::types::FieldTable;

    let dir = tempfile::tempdir().unwrap();
    let configs = write_configs(dir.path(), 4);
    let nodes = start_all(&configs).await;
    until_members(&nodes[0], 4).await;
    let a = within("the cluster to declare qo", async {
        loop {
            let c = until_login(&nodes[0], "guest", "guest").await;
            let ch = c.create_channel().await.unwrap();
            let options = lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            };
            match ch
                .queue_declare("qo".into(), options, quorum_args(&[]))
                .await
            {
                Ok(_) => return c,
                Err(e) if e.to_string().contains("timed out") => continue,
                Err(e) => panic!("queue.declare failed: {e}"),
            }
        }
    })
    .await;
    let members = three_members(&nodes[0], "qo").await;
    let outsider = (0..4)
        .find(|i| !members.contains(&format!("rabbit@n{i}")))
        .expect("a node without a member");

    let o = until_login(&nodes[outsider], "guest", "guest").await;
    let ch = o.create_channel().await.unwrap();
    ch.basic_qos(5, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            "qo".into(),
            "far".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let pub_ch = a.create_channel().await.unwrap();
    pub_ch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for i in 0..20 {
        publish_confirmed(&pub_ch, "qo", &format!("m{i:02}")).await;
    }
    let mut seen = Vec::new();
    let mut requeued = false;
    let mut rejected = false;
    while seen.len() < 19 {
        let d = within("a delivery on the node without a member", consumer.next())
            .await
            .expect("the consumer ended")
            .expect("a delivery");
        let b = String::from_utf8(d.data.clone()).unwrap();
        if b == "m03" && !requeued {
            requeued = true;
            assert!(!d.redelivered);
            d.acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
                .unwrap();
            continue;
        }
        if b == "m07" {
            rejected = true;
            d.acker
                .reject(BasicRejectOptions { requeue: false })
                .await
                .unwrap();
            continue;
        }
        if b == "m03" {
            assert!(d.redelivered);
            assert_eq!(delivery_count(&d), Some(1));
        }
        seen.push(b);
        d.acker.ack(Default::default()).await.unwrap();
    }
    assert!(requeued && rejected);
    seen.sort();
    let want: Vec<String> = (0..20)
        .filter(|i| *i != 7)
        .map(|i| format!("m{i:02}"))
        .collect();
    assert_eq!(seen, want);
    // Every delivery settled in the group: nothing left on a member's replica.
    within("qo empty on a member", async {
        while messages(&nodes[0], "qo").await != Some(0) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    // basic.get through the node without a member.
    publish_confirmed(&pub_ch, "qo", "g1").await;
    ch.basic_cancel("far".into(), Default::default())
        .await
        .unwrap();
    let g = o.create_channel().await.unwrap();
    let got = within("basic.get of g1 on the node without a member", async {
        loop {
            // The consumer may have taken g1 before its cancel: it comes back once the
            // cancelled consumer's channel gives it back (closed below).
            if let Some(m) = get(&g, "qo", false).await {
                return m;
            }
            let _ = ch.close(200, "bye".into()).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(body(&got), "g1");
    got.delivery.acker.ack(Default::default()).await.unwrap();
    within("qo empty after the get's ack", async {
        while messages(&nodes[0], "qo").await != Some(0) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}
