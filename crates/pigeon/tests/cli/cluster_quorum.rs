//! Quorum queues on three `pigeon` processes (docs/clustering.md, "Quorum queues"): declared
//! on one node, published to with confirms through another, consumed on the third; the node
//! that formed the group (its first leader) is killed with SIGKILL, the others elect a new
//! leader, and the consumer on a survivor gets every confirmed message, those the dead node's
//! consumer held redelivered (`redelivered`, `x-delivery-count`). Also: what RabbitMQ refuses
//! for quorum queues, refused with its codes; the delivery limit dead-letters.

use super::cluster::{
    declare_when_ready, start_all, until_login, until_members, write_configs, Node,
};
use super::ctl_support::ctl_at;
use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, Consumer};
use pigeon_tests::within;
use std::collections::BTreeSet;
use std::time::Duration;

pub(crate) fn quorum_args(extra: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    for (k, v) in extra {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

pub(crate) fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

/// Declares a quorum queue once the cluster has its three members (a queue declared sooner
/// would be placed on fewer: on the members known when it is declared).
pub(crate) async fn declare(node: &Node, queue: &str, args: FieldTable) -> Connection {
    until_members(node, 3).await;
    declare_when_ready(node, queue, args).await
}

/// The reply code and text a declare is refused with.
async fn refusal(
    conn: &Connection,
    queue: &str,
    options: QueueDeclareOptions,
    args: FieldTable,
) -> String {
    let ch = conn.create_channel().await.unwrap();
    match ch.queue_declare(queue.into(), options, args).await {
        Ok(_) => panic!("{queue} was declared"),
        Err(e) => e.to_string(),
    }
}

pub(crate) async fn consumer(
    conn: &Connection,
    queue: &str,
    tag: &str,
    prefetch: u16,
) -> (Channel, Consumer) {
    let ch = conn.create_channel().await.unwrap();
    ch.basic_qos(prefetch, BasicQosOptions::default())
        .await
        .unwrap();
    let consumer = ch
        .basic_consume(
            queue.into(),
            tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    (ch, consumer)
}

pub(crate) async fn next(consumer: &mut Consumer, what: &str) -> Delivery {
    within(what, consumer.next())
        .await
        .expect("the consumer ended")
        .expect("a delivery")
}

pub(crate) fn delivery_count(d: &Delivery) -> Option<i64> {
    let headers = d.properties.headers().as_ref()?;
    match headers.inner().get("x-delivery-count")? {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        other => panic!("x-delivery-count {other:?}"),
    }
}

/// Publishes `body` until the broker confirms it (a publish that was not committed, say
/// during an election, is nacked: a publisher sends it again).
pub(crate) async fn publish_confirmed(ch: &Channel, queue: &str, body: &str) {
    within(&format!("a confirm for {body}"), async {
        loop {
            let confirm = ch
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .unwrap()
                .await
                .unwrap();
            match confirm {
                Confirmation::Ack(_) => return,
                Confirmation::Nack(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                Confirmation::NotRequested => panic!("confirms are on"),
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_queue_survives_the_loss_of_its_first_leader() {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_configs(dir.path(), 3);
    let mut nodes: Vec<Option<Node>> = start_all(&configs).await.into_iter().map(Some).collect();
    let node = |i: usize| -> &Node { nodes[i].as_ref().unwrap() };

    // Declared on node A (0): the group's three members are formed by A.
    let a = declare(node(0), "qq", quorum_args(&[])).await;

    // What RabbitMQ refuses for a quorum queue, refused with its codes and texts.
    let text = refusal(&a, "qq.x", QueueDeclareOptions::default(), quorum_args(&[])).await;
    assert!(
        text.contains("PRECONDITION_FAILED")
            && text.contains("invalid property 'non-durable' for queue 'qq.x' in vhost '/'"),
        "{text}"
    );
    let exclusive = QueueDeclareOptions {
        durable: true,
        exclusive: true,
        ..Default::default()
    };
    let text = refusal(&a, "qq.x", exclusive, quorum_args(&[])).await;
    assert!(
        text.contains("invalid property 'exclusive-owner'"),
        "{text}"
    );
    let auto_delete = QueueDeclareOptions {
        durable: true,
        auto_delete: true,
        ..Default::default()
    };
    let text = refusal(&a, "qq.x", auto_delete, quorum_args(&[])).await;
    assert!(text.contains("invalid property 'auto-delete'"), "{text}");
    let dlx = quorum_args(&[(
        "x-overflow",
        AMQPValue::LongString("reject-publish-dlx".into()),
    )]);
    let text = refusal(&a, "qq.x", durable(), dlx).await;
    assert!(
        text.contains("invalid arg 'x-overflow' with value 'reject-publish-dlx'"),
        "{text}"
    );
    let prio = quorum_args(&[("x-max-priority", AMQPValue::LongInt(5))]);
    let text = refusal(&a, "qq.x", durable(), prio).await;
    assert!(
        text.contains("invalid arg 'x-max-priority' for queue 'qq.x' in vhost '/' of queue type rabbit_quorum_queue"),
        "{text}"
    );
    // Global QoS on a channel consuming a quorum queue: 540 NOT_IMPLEMENTED (a connection
    // error).
    let other = until_login(node(0), "guest", "guest").await;
    let ch = other.create_channel().await.unwrap();
    ch.basic_qos(10, BasicQosOptions { global: true })
        .await
        .unwrap();
    let text = ch
        .basic_consume(
            "qq".into(),
            "g".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        text.contains("NOT_IMPLEMENTED") && text.contains("does not support global qos"),
        "{text}"
    );

    // A consumer on A takes five and holds them; a consumer on C (2) acks what it gets.
    let (_a_ch, mut held) = consumer(&a, "qq", "held", 5).await;
    let c = until_login(node(2), "guest", "guest").await;
    let (_c_ch, mut acking) = consumer(&c, "qq", "acking", 50).await;

    // Published with confirms through B (1).
    let b = until_login(node(1), "guest", "guest").await;
    let pub_ch = b.create_channel().await.unwrap();
    pub_ch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut confirmed = BTreeSet::new();
    for i in 0..40 {
        let body = format!("m{i:03}");
        publish_confirmed(&pub_ch, "qq", &body).await;
        confirmed.insert(body);
    }
    let mut held_bodies = BTreeSet::new();
    for _ in 0..5 {
        let d = next(&mut held, "a delivery to the consumer on A").await;
        assert!(!d.redelivered);
        held_bodies.insert(String::from_utf8(d.data).unwrap());
    }
    let mut got = BTreeSet::new();
    while got.len() < 35 {
        let d = next(&mut acking, "a delivery to the consumer on C").await;
        assert!(!d.redelivered, "nothing was returned yet");
        got.insert(String::from_utf8(d.data.clone()).unwrap());
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert!(got.is_disjoint(&held_bodies));

    // Listed as RabbitMQ lists a quorum queue (`pigeon ctl list_queues`, /api/queues).
    let q = queue_row(node(1), "qq").await;
    assert_eq!(q["type"], "quorum", "{q}");
    assert_eq!(q["members"].as_array().map(Vec::len), Some(3), "{q}");
    // B's replica counts the five A holds once it applied C's acks.
    within("five messages left in qq", async {
        while queue_row(node(1), "qq").await["messages"] != 5 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    // A is killed: B and C elect a new leader, A's consumer is down and its five come back.
    nodes[0].take().unwrap().kill();
    for i in 40..60 {
        let body = format!("m{i:03}");
        publish_confirmed(&pub_ch, "qq", &body).await;
        confirmed.insert(body);
    }
    let mut redelivered = BTreeSet::new();
    while !confirmed.is_subset(&got) {
        let d = next(&mut acking, "the confirmed messages on C after A's loss").await;
        let body = String::from_utf8(d.data.clone()).unwrap();
        if held_bodies.contains(&body) {
            assert!(d.redelivered, "{body} was held by A's consumer");
            assert_eq!(delivery_count(&d), Some(1), "{body}");
            redelivered.insert(body.clone());
        }
        got.insert(body);
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_eq!(redelivered, held_bodies);
    within("a new leader and two members online", async {
        loop {
            let q = queue_row(nodes[1].as_ref().unwrap(), "qq").await;
            let leader = q["leader"].as_str().unwrap_or_default().to_string();
            if q["online"].as_array().map(Vec::len) == Some(2)
                && !leader.is_empty()
                && leader != "rabbit@n0"
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

/// The queue's row in `pigeon ctl list_queues name type messages leader members online`, if
/// the node lists it (yet).
pub(crate) async fn listed_row(node: &Node, queue: &str) -> Option<serde_json::Value> {
    let out = ctl_at(
        &node.api(),
        &[
            "list_queues",
            "name",
            "type",
            "messages",
            "leader",
            "members",
            "online",
            "--formatter",
            "json",
        ],
    )
    .await;
    let all: serde_json::Value = serde_json::from_str(&out.ok()).unwrap();
    all.as_array()
        .and_then(|l| l.iter().find(|q| q["name"] == queue).cloned())
}

/// The queue's row, which the node must list.
pub(crate) async fn queue_row(node: &Node, queue: &str) -> serde_json::Value {
    listed_row(node, queue)
        .await
        .unwrap_or_else(|| panic!("{queue} is not listed on {}", node.api()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_delivery_limit_a_message_is_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_configs(dir.path(), 3);
    let nodes = start_all(&configs).await;
    let a = declare(&nodes[0], "dead", quorum_args(&[])).await;
    let limited = quorum_args(&[
        ("x-delivery-limit", AMQPValue::LongInt(1)),
        ("x-dead-letter-exchange", AMQPValue::LongString("".into())),
        (
            "x-dead-letter-routing-key",
            AMQPValue::LongString("dead".into()),
        ),
    ]);
    a.create_channel()
        .await
        .unwrap()
        .queue_declare("limited".into(), durable(), limited)
        .await
        .unwrap();
    let b = until_login(&nodes[1], "guest", "guest").await;
    let ch = b.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    publish_confirmed(&ch, "limited", "poison").await;

    // Returned twice: the second return passes the limit of 1.
    let c = until_login(&nodes[2], "guest", "guest").await;
    let (_ch, mut nacker) = consumer(&c, "limited", "nacker", 1).await;
    for count in [None, Some(1)] {
        let d = next(&mut nacker, "the poison message").await;
        assert_eq!(delivery_count(&d), count);
        assert_eq!(d.redelivered, count.is_some());
        d.acker
            .nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let (_dch, mut dead) = consumer(&c, "dead", "dead", 1).await;
    let d = next(&mut dead, "the dead-lettered message").await;
    assert_eq!(d.data, b"poison");
    let headers = d.properties.headers().clone().unwrap();
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        panic!("no x-death: {headers:?}");
    };
    let Some(AMQPValue::FieldTable(death)) = deaths.as_slice().first() else {
        panic!("{deaths:?}");
    };
    assert_eq!(
        death.inner().get("reason"),
        Some(&AMQPValue::LongString("delivery_limit".into()))
    );
    assert_eq!(
        death.inner().get("queue"),
        Some(&AMQPValue::LongString("limited".into()))
    );

    // An MQTT QoS 1 publish through B reaches a quorum queue bound to amq.topic: PUBACK once
    // committed, consumed on C.
    a.create_channel()
        .await
        .unwrap()
        .queue_declare("mq".into(), durable(), quorum_args(&[]))
        .await
        .unwrap();
    a.create_channel()
        .await
        .unwrap()
        .queue_bind(
            "mq".into(),
            "amq.topic".into(),
            "t.x".into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mqtt = mqtt_addr(&nodes[1]);
    let mut options = rumqttc::MqttOptions::new("qq-publisher", "127.0.0.1", mqtt.port());
    options.set_credentials("guest", "guest");
    let (client, mut events) = rumqttc::AsyncClient::new(options, 10);
    client
        .publish("t/x", rumqttc::QoS::AtLeastOnce, false, &b"over mqtt"[..])
        .await
        .unwrap();
    within("PUBACK", async {
        loop {
            match events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => return,
                Ok(_) => {}
                Err(e) => panic!("mqtt: {e}"),
            }
        }
    })
    .await;
    let (_mch, mut from_mqtt) = consumer(&c, "mq", "mqtt", 1).await;
    let d = next(&mut from_mqtt, "the MQTT message").await;
    assert_eq!(d.data, b"over mqtt");
}

/// The node's MQTT address, from its start-up line.
fn mqtt_addr(node: &Node) -> std::net::SocketAddr {
    let log = node.log();
    let rest = log
        .split(", MQTT on ")
        .nth(1)
        .expect("the start-up line names the MQTT listener");
    rest.split([',', ' ']).next().unwrap().parse().unwrap()
}
