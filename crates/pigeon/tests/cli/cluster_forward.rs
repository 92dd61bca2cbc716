//! Classic queues across nodes (docs/clustering.md, "Classic queues in a cluster"): a durable
//! queue lives on its home node; publishes through the other nodes are forwarded there and
//! confirmed only once the home has them on disk; while the home is down the queue is
//! unavailable with RabbitMQ's error, and a publish to it is nacked.
//!
//! Three real `pigeon` processes (the harness of `cluster.rs`), lapin clients.

use super::cluster::{
    channel, declare_when_ready, start_all, until_listed, until_login, write_configs, Node,
};
use super::ctl_support::ctl_at;
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::Confirmation;
use lapin::{BasicProperties, Channel, Connection};
use pigeon_tests::within;
use std::time::Duration;

const QUEUE: &str = "fwd";

/// A channel in confirm mode on `conn`.
async fn confirming(conn: &Connection) -> Channel {
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch
}

/// Publishes `bodies` (persistent) to `QUEUE` through the default exchange and waits for
/// every confirm; whether each was acked.
async fn publish_all(ch: &Channel, bodies: &[String]) -> Vec<bool> {
    publish_to(ch, QUEUE, bodies).await
}

/// [`publish_all`] to `queue`.
async fn publish_to(ch: &Channel, queue: &str, bodies: &[String]) -> Vec<bool> {
    let mut pending = Vec::new();
    for b in bodies {
        let confirm = ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                b.as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
        pending.push(confirm);
    }
    let mut out = Vec::new();
    for c in pending {
        let confirmation = within("a publisher confirm", c).await.unwrap();
        out.push(matches!(confirmation, Confirmation::Ack(_)));
    }
    out
}

/// The home node of `queue` as a node's `/api/queues` shows it (`node`, which `pigeon ctl
/// list_queues pid` shows as `<node.name>`).
async fn queue_node(node: &Node, queue: &str) -> String {
    let out = ctl_at(
        &node.api(),
        &["list_queues", "name", "pid", "--formatter", "json"],
    )
    .await;
    let all: serde_json::Value = serde_json::from_str(&out.ok()).unwrap();
    let pid = all
        .as_array()
        .and_then(|l| l.iter().find(|q| q["name"] == queue))
        .and_then(|q| q["pid"].as_str())
        .unwrap_or_default()
        .to_string();
    pid.trim_start_matches('<')
        .trim_end_matches('>')
        .trim_end_matches(queue)
        .trim_end_matches('.')
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_through_any_node_reach_the_queues_home_and_confirm_after_its_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_configs(dir.path(), 3);
    let mut nodes: Vec<Option<Node>> = start_all(&configs).await.into_iter().map(Some).collect();

    // Declared through node 0 (its home), once the cluster has a leader.
    let home = nodes[0].as_ref().unwrap();
    declare_when_ready(home, QUEUE, FieldTable::default()).await;
    // A queue placed by `x-queue-leader-locator: balanced` goes to a node without queues.
    {
        let c = until_login(home, "guest", "guest").await;
        let ch = c.create_channel().await.unwrap();
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-leader-locator".into(),
            AMQPValue::LongString("balanced".into()),
        );
        ch.queue_declare(
            "placed".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .unwrap();
    }
    for n in nodes[1..].iter().flatten() {
        until_listed(n, QUEUE).await;
        // Every node shows the queue's home as its `node`.
        assert_eq!(queue_node(n, QUEUE).await, "rabbit@n0");
    }
    // n0 has a queue, n1 and n2 none: balanced picks n1 (the fewest, then by name).
    assert_eq!(queue_node(home, "placed").await, "rabbit@n1");

    // Published with confirms through nodes 1 and 2: every confirm is an ack.
    let first: Vec<String> = (0..150).map(|i| format!("b-{i}")).collect();
    let second: Vec<String> = (0..150).map(|i| format!("c-{i}")).collect();
    let c1 = until_login(nodes[1].as_ref().unwrap(), "guest", "guest").await;
    let ch1 = confirming(&c1).await;
    assert!(publish_all(&ch1, &first).await.iter().all(|ok| *ok));
    let c2 = until_login(nodes[2].as_ref().unwrap(), "guest", "guest").await;
    let ch2 = confirming(&c2).await;
    assert!(publish_all(&ch2, &second).await.iter().all(|ok| *ok));

    // Consumed on the home: every message exactly once, in publish order.
    let (_c0, ch0) = channel(home).await;
    let mut consumer = ch0
        .basic_consume(
            QUEUE.into(),
            "drain".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 300 {
        let d = within("a forwarded message", consumer.next())
            .await
            .expect("the consumer ended")
            .expect("a delivery");
        got.push(String::from_utf8(d.data.clone()).unwrap());
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
    }
    let want: Vec<String> = first.iter().chain(&second).cloned().collect();
    assert_eq!(got, want);
    ch0.basic_cancel("drain".into(), Default::default())
        .await
        .unwrap();

    // Confirmed through node 1 means on the home's disk: a SIGKILL of the home right after
    // the confirm loses nothing.
    assert_eq!(publish_all(&ch1, &["last".to_string()]).await, vec![true]);
    nodes[0].take().unwrap().kill();

    // While the home is down, the queue is unavailable through the other nodes, with
    // RabbitMQ's error...
    let other = nodes[1].as_ref().unwrap();
    let refused = within("the queue to become unavailable", async {
        loop {
            let c = until_login(other, "guest", "guest").await;
            let ch = c.create_channel().await.unwrap();
            let passive = QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            match ch
                .queue_declare(QUEUE.into(), passive, FieldTable::default())
                .await
            {
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => return e.to_string(),
            }
        }
    })
    .await;
    assert!(
        refused.contains(
            "NOT_FOUND - home node 'rabbit@n0' of durable queue 'fwd' in vhost '/' is down or inaccessible"
        ),
        "{refused}"
    );
    // ... and a publish to it is dropped and nacked (rabbit_classic_queue: a queue down
    // rejects what was pending there).
    let c1 = until_login(other, "guest", "guest").await;
    let ch1 = confirming(&c1).await;
    assert_eq!(publish_all(&ch1, &["lost".to_string()]).await, vec![false]);

    // The home restarts with the confirmed message, and only that one.
    nodes[0] = Some(Node::start(&configs[0]).await);
    let home = nodes[0].as_ref().unwrap();
    let (_c0, ch0) = channel(home).await;
    let got = within("basic.get on the restarted home", async {
        loop {
            match ch0
                .basic_get(QUEUE.into(), BasicGetOptions { no_ack: true })
                .await
            {
                Ok(Some(m)) => return String::from_utf8(m.delivery.data.clone()).unwrap(),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    assert_eq!(got, "last");
    assert!(ch0
        .basic_get(QUEUE.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .is_none());
}

/// `messages` and `messages_unacknowledged` of `queue` on `node`.
async fn counts(node: &Node, queue: &str) -> (u64, u64) {
    let out = ctl_at(
        &node.api(),
        &[
            "list_queues",
            "name",
            "messages",
            "messages_unacknowledged",
            "--formatter",
            "json",
        ],
    )
    .await;
    let all: serde_json::Value = serde_json::from_str(&out.ok()).unwrap();
    let q = all
        .as_array()
        .and_then(|l| l.iter().find(|q| q["name"] == queue))
        .cloned()
        .unwrap_or_default();
    (
        q["messages"].as_u64().unwrap_or(u64::MAX),
        q["messages_unacknowledged"].as_u64().unwrap_or(u64::MAX),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_on_another_node_gets_the_home_queues_messages_and_settles_them_there() {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_configs(dir.path(), 2);
    let home = Node::start(&configs[0]).await;
    let other = Node::start(&configs[1]).await;
    declare_when_ready(&home, "rc", FieldTable::default()).await;
    until_listed(&other, "rc").await;

    // A consumer on the other node, prefetch 10, manual acks.
    let cc = until_login(&other, "guest", "guest").await;
    let cch = cc.create_channel().await.unwrap();
    cch.basic_qos(10, BasicQosOptions::default()).await.unwrap();
    let mut consumer = cch
        .basic_consume(
            "rc".into(),
            "remote".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    // Published through the home with confirms.
    let hc = until_login(&home, "guest", "guest").await;
    let hch = confirming(&hc).await;
    let bodies: Vec<String> = (0..50).map(|i| format!("m-{i}")).collect();
    assert!(publish_to(&hch, "rc", &bodies).await.iter().all(|ok| *ok));

    // Every message in order; the first 40 acked, 40..45 nacked with requeue (they come
    // back, redelivered, and are acked then), 45..50 rejected.
    let mut got = Vec::new();
    let mut redelivered = Vec::new();
    while got.len() + redelivered.len() < 55 {
        let d = within("a delivery from the home node", consumer.next())
            .await
            .expect("the consumer ended")
            .expect("a delivery");
        let body = String::from_utf8(d.data.clone()).unwrap();
        let i: usize = body[2..].parse().unwrap();
        if d.redelivered {
            redelivered.push(body);
            d.acker.ack(BasicAckOptions::default()).await.unwrap();
            continue;
        }
        got.push(body);
        if i < 40 {
            d.acker.ack(BasicAckOptions::default()).await.unwrap();
        } else if i < 45 {
            d.acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
                .unwrap();
        } else {
            d.acker
                .reject(BasicRejectOptions { requeue: false })
                .await
                .unwrap();
        }
    }
    assert_eq!(got, bodies);
    let mut redelivered_sorted = redelivered.clone();
    redelivered_sorted.sort();
    assert_eq!(
        redelivered_sorted,
        (40..45).map(|i| format!("m-{i}")).collect::<Vec<_>>()
    );
    // The home's queue is empty: every settlement reached it.
    within("the home queue to be empty", async {
        while counts(&home, "rc").await != (0, 0) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    // Unacknowledged messages of a channel closed on the other node go back to the home
    // queue, redelivered.
    let more: Vec<String> = (0..5).map(|i| format!("n-{i}")).collect();
    assert!(publish_to(&hch, "rc", &more).await.iter().all(|ok| *ok));
    for _ in 0..5 {
        within("a delivery", consumer.next())
            .await
            .unwrap()
            .unwrap();
    }
    cch.close(200, "bye".into()).await.unwrap();
    let back = hc.create_channel().await.unwrap();
    let mut again = Vec::new();
    within("the unacknowledged messages back at the home", async {
        while again.len() < 5 {
            match back
                .basic_get("rc".into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
            {
                Some(m) => {
                    assert!(m.delivery.redelivered);
                    again.push(String::from_utf8(m.delivery.data.clone()).unwrap());
                }
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    assert_eq!(again, more);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_publish_reaches_a_queue_homed_on_another_node_and_its_consumer_is_cancelled_when_the_home_goes_down(
) {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_configs(dir.path(), 2);
    let home = Node::start(&configs[0]).await;
    let other = Node::start(&configs[1]).await;
    declare_when_ready(&home, "mq", FieldTable::default()).await;
    let hc = until_login(&home, "guest", "guest").await;
    let hch = hc.create_channel().await.unwrap();
    hch.queue_bind(
        "mq".into(),
        "amq.topic".into(),
        "sensors.#".into(),
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    until_listed(&other, "mq").await;
    within("the binding on the other node", async {
        loop {
            let out = ctl_at(&other.api(), &["list_bindings", "--formatter", "json"])
                .await
                .ok();
            if out.contains("sensors.#") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    // QoS 1 PUBLISHes through the other node: each PUBACK comes once the home has it.
    let mqtt = other
        .log()
        .lines()
        .find_map(|l| super::cluster::addr_after(l, ", MQTT on "))
        .expect("the MQTT address");
    let mut opts = rumqttc::MqttOptions::new("fwd-pub", mqtt.ip().to_string(), mqtt.port());
    opts.set_credentials("guest", "guest");
    let (client, mut events) = rumqttc::AsyncClient::new(opts, 64);
    for i in 0..20 {
        client
            .publish(
                "sensors/t1",
                rumqttc::QoS::AtLeastOnce,
                false,
                format!("t-{i}").into_bytes(),
            )
            .await
            .unwrap();
    }
    within("20 PUBACKs", async {
        let mut acks = 0;
        while acks < 20 {
            if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) =
                events.poll().await.unwrap()
            {
                acks += 1;
            }
        }
    })
    .await;
    let mut got = Vec::new();
    while let Some(m) = hch
        .basic_get("mq".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        got.push(String::from_utf8(m.delivery.data.clone()).unwrap());
    }
    assert_eq!(got, (0..20).map(|i| format!("t-{i}")).collect::<Vec<_>>());

    // A consumer on the other node is cancelled (basic.cancel: lapin announces
    // consumer_cancel_notify) when the queue's home goes down.
    let cc = until_login(&other, "guest", "guest").await;
    let cch = cc.create_channel().await.unwrap();
    let mut consumer = cch
        .basic_consume(
            "mq".into(),
            "doomed".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    home.kill();
    let next = within("the consumer's cancellation", consumer.next()).await;
    assert!(next.is_none(), "{next:?}");
}
