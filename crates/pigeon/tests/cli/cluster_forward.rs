//! Classic queues across nodes (docs/clustering.md, "Classic queues in a cluster"): a durable
//! queue lives on its home node; publishes through the other nodes are forwarded there and
//! confirmed only once the home has them on disk; while the home is down the queue is
//! unavailable with RabbitMQ's error, and a publish to it is nacked.
//!
//! Three real `pigeon` processes (the harness of `cluster.rs`), lapin clients.

use super::cluster::{free_port, until_login, until_listed, write_config, Node};
use super::ctl_support::ctl_at;
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::Confirmation;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use pigeon_tests::within;
use std::path::PathBuf;
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
    let mut pending = Vec::new();
    for b in bodies {
        let confirm = ch
            .basic_publish(
                "".into(),
                QUEUE.into(),
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
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let configs: Vec<PathBuf> = (0..3)
        .map(|i| write_config(dir.path(), i, &ports))
        .collect();
    let mut nodes = Vec::new();
    for c in &configs {
        nodes.push(Some(Node::start(c).await));
    }

    // Declared through node 0 (its home), once the cluster has a leader.
    let home = nodes[0].as_ref().unwrap();
    within("the cluster to accept a declare", async {
        loop {
            let c = until_login(home, "guest", "guest").await;
            let ch = c.create_channel().await.unwrap();
            let durable = QueueDeclareOptions {
                durable: true,
                ..Default::default()
            };
            match ch
                .queue_declare(QUEUE.into(), durable, FieldTable::default())
                .await
            {
                Ok(_) => return,
                Err(e) if e.to_string().contains("timed out") => continue,
                Err(e) => panic!("queue.declare failed: {e}\n{}", home.log()),
            }
        }
    })
    .await;
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
    for i in 1..3 {
        until_listed(nodes[i].as_ref().unwrap(), QUEUE).await;
        // Every node shows the queue's home as its `node`.
        assert_eq!(queue_node(nodes[i].as_ref().unwrap(), QUEUE).await, "rabbit@n0");
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
    let (_c0, ch0) = home_channel(home).await;
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
    assert_eq!(
        publish_all(&ch1, &["lost".to_string()]).await,
        vec![false]
    );

    // The home restarts with the confirmed message, and only that one.
    nodes[0] = Some(Node::start(&configs[0]).await);
    let home = nodes[0].as_ref().unwrap();
    let (_c0, ch0) = home_channel(home).await;
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

/// A channel on the home node, once it takes logins.
async fn home_channel(home: &Node) -> (Connection, Channel) {
    let c = until_login(home, "guest", "guest").await;
    let ch = c.create_channel().await.unwrap();
    (c, ch)
}
