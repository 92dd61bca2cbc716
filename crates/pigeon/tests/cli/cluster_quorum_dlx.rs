//! At-least-once dead-lettering of quorum queues (helper dlxalo; docs/clustering.md, "Quorum
//! queues in the broker"): `x-dead-letter-strategy: at-least-once` with `x-overflow:
//! reject-publish`. Dead letters stay in the source queue (`messages_dlx` in `/api/queues`)
//! until the leader's worker had them confirmed by their targets; a new leader sends what is
//! still there.
//!
//! Both tests make the dead letters wait deterministically: the dead-letter exchange does not
//! exist when they die. With RabbitMQ's default `at-most-once` (and before this strategy was
//! implemented) the leader drops them then, so they would never reach the target.

use super::cluster::{start_all, until_login, write_configs, Node};
use super::cluster_quorum::{
    consumer, declare, durable, next, publish_confirmed, queue_row, quorum_args,
};
use lapin::options::{
    BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ExchangeKind};
use pigeon_tests::within;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

/// A dead-lettering quorum queue's arguments: to the exchange `dlx`, `at-least-once`,
/// `reject-publish`, and `extra`.
fn at_least_once(extra: &[(&str, AMQPValue)]) -> FieldTable {
    let mut args = vec![
        (
            "x-dead-letter-exchange",
            AMQPValue::LongString("dlx".into()),
        ),
        (
            "x-dead-letter-strategy",
            AMQPValue::LongString("at-least-once".into()),
        ),
        ("x-overflow", AMQPValue::LongString("reject-publish".into())),
    ];
    args.extend(extra.iter().cloned());
    quorum_args(&args)
}

/// `GET /api/queues/%2f/{queue}` on `node` (RabbitMQ's fields).
async fn queue_info(node: &Node, queue: &str) -> Value {
    let reply = reqwest::Client::new()
        .get(format!("{}/api/queues/%2f/{queue}", node.api()))
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .unwrap();
    assert!(reply.status().is_success(), "{}", reply.status());
    reply.json().await.unwrap()
}

/// Waits until `node`'s replica shows `n` dead letters waiting in `queue`.
async fn until_waiting(node: &Node, queue: &str, n: u64) -> Value {
    within(&format!("{n} dead letters waiting in {queue}"), async {
        loop {
            let q = queue_info(node, queue).await;
            if q["messages_dlx"] == n {
                return q;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// Publishes `body` once with confirms: whether the broker acked it.
async fn publish_once(ch: &Channel, queue: &str, body: &str, props: BasicProperties) -> bool {
    let confirm = ch
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            props,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    matches!(confirm, Confirmation::Ack(_))
}

/// Takes `n` deliveries from `queue` on `conn` and rejects them (no requeue): dead letters.
async fn reject(conn: &Connection, queue: &str, n: usize) -> Channel {
    let (ch, mut c) = consumer(conn, queue, "rejecter", n as u16).await;
    for _ in 0..n {
        let d = next(&mut c, "a delivery to reject").await;
        d.acker
            .nack(BasicNackOptions {
                requeue: false,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    ch
}

/// Declares the fanout exchange `dlx` bound to `target` through `node`, retrying while the
/// metadata group elects a leader.
async fn route_dlx_to(node: &Node, target: &str) {
    within("the dead-letter exchange declared and bound", async {
        loop {
            let conn = until_login(node, "guest", "guest").await;
            let ch = conn.create_channel().await.unwrap();
            let declared = ch
                .exchange_declare(
                    "dlx".into(),
                    ExchangeKind::Fanout,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await;
            if declared.is_ok()
                && ch
                    .queue_bind(
                        target.into(),
                        "dlx".into(),
                        "".into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
}

/// The first `x-death` reason of a delivery.
fn death_reason(d: &lapin::message::Delivery) -> String {
    let headers = d.properties.headers().clone().unwrap_or_default();
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        panic!("no x-death: {headers:?}");
    };
    let Some(AMQPValue::FieldTable(death)) = deaths.as_slice().first() else {
        panic!("{deaths:?}");
    };
    match death.inner().get("reason") {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        other => panic!("reason {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_dead_letters_reach_their_target_after_the_source_leader_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_configs(dir.path(), 3);
    let mut nodes: Vec<Option<Node>> = start_all(&configs).await.into_iter().map(Some).collect();
    let a = declare(nodes[0].as_ref().unwrap(), "dst", quorum_args(&[])).await;
    a.create_channel()
        .await
        .unwrap()
        .queue_declare("src".into(), durable(), at_least_once(&[]))
        .await
        .unwrap();
    // The source's leader, and the two other nodes: one publishes and is asked, the other
    // consumes.
    let leader = within("the source's leader", async {
        loop {
            let q = queue_row(nodes[1].as_ref().unwrap(), "src").await;
            if let Some(name) = q["leader"].as_str().filter(|l| !l.is_empty()) {
                return name
                    .trim_start_matches("rabbit@n")
                    .parse::<usize>()
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let (p, c) = (others[0], others[1]);
    let pconn = until_login(nodes[p].as_ref().unwrap(), "guest", "guest").await;
    let pub_ch = pconn.create_channel().await.unwrap();
    pub_ch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();

    // Five expire (per-message TTL, no consumer yet), twenty are rejected on the third node.
    let mut dead = BTreeSet::new();
    for i in 0..5 {
        let body = format!("e{i}");
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_expiration("50".into());
        assert!(publish_once(&pub_ch, "src", &body, props).await);
        dead.insert(body);
    }
    until_waiting(nodes[p].as_ref().unwrap(), "src", 5).await;
    for i in 0..20 {
        let body = format!("r{i:02}");
        publish_confirmed(&pub_ch, "src", &body).await;
        dead.insert(body);
    }
    let cconn = until_login(nodes[c].as_ref().unwrap(), "guest", "guest").await;
    let rejecting = reject(&cconn, "src", 20).await;
    rejecting.close(200, "done".into()).await.unwrap();
    // Every one waits in the source (the exchange `dlx` does not exist yet), counted.
    let q = until_waiting(nodes[p].as_ref().unwrap(), "src", 25).await;
    assert_eq!(q["messages"], 0, "{q}");
    assert_eq!(q["message_bytes_dlx"], 5 * 2 + 20 * 3, "{q}");

    // The leader is killed; the exchange appears; the new leader's worker routes them all.
    nodes[leader].take().unwrap().kill();
    route_dlx_to(nodes[p].as_ref().unwrap(), "dst").await;
    // A new leader is elected once liveness finds the old one gone; its worker routes them,
    // the target confirms, the worker settles: nothing waits any more.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while queue_info(nodes[p].as_ref().unwrap(), "src").await["messages_dlx"] != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dead letters were not settled after the leader's loss"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_dch, mut target) = consumer(&cconn, "dst", "target", 50).await;
    let mut got = BTreeSet::new();
    let mut reasons = BTreeSet::new();
    while !dead.is_subset(&got) {
        let d = next(&mut target, "the dead letters in dst").await;
        let body = String::from_utf8(d.data.clone()).unwrap();
        reasons.insert((body.chars().next().unwrap(), death_reason(&d)));
        got.insert(body);
        d.acker.ack(Default::default()).await.unwrap();
    }
    assert_eq!(got, dead, "nothing else reached dst");
    assert_eq!(
        reasons,
        [('e', "expired".to_string()), ('r', "rejected".to_string())].into(),
    );
    within("the source's new leader", async {
        loop {
            let q = queue_row(nodes[p].as_ref().unwrap(), "src").await;
            let l = q["leader"].as_str().unwrap_or_default().to_string();
            if !l.is_empty() && l != format!("rabbit@n{leader}") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

/// A plain node (no `[cluster]`): a quorum queue is a group of one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_dead_letters_on_a_single_node_wait_and_count_towards_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config = dir.path().join("pigeon.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = '{}'\nmqtt_sys_interval = 0\n",
            data.display()
        ),
    )
    .unwrap();
    let node = Node::start(&config).await;
    let conn = until_login(&node, "guest", "guest").await;
    let ch = conn.create_channel().await.unwrap();
    // The target is a classic queue; the source holds at most 3 (dead letters included).
    ch.queue_declare("dst".into(), durable(), FieldTable::default())
        .await
        .unwrap();
    ch.queue_declare(
        "src".into(),
        durable(),
        at_least_once(&[("x-max-length", AMQPValue::LongInt(3))]),
    )
    .await
    .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for body in ["a", "b", "c"] {
        publish_confirmed(&ch, "src", body).await;
    }
    let rejecting = reject(&conn, "src", 3).await;
    rejecting.close(200, "done".into()).await.unwrap();
    let q = until_waiting(&node, "src", 3).await;
    assert_eq!(q["messages"], 0, "{q}");
    // The three waiting dead letters fill the queue: reject-publish refuses a fourth.
    assert!(
        !publish_once(&ch, "src", "d", BasicProperties::default()).await,
        "a publish to a queue full of waiting dead letters is nacked"
    );

    // The exchange appears: the worker routes them, confirmed by dst, and settles them.
    route_dlx_to(&node, "dst").await;
    until_waiting(&node, "src", 0).await;
    assert!(publish_once(&ch, "src", "d", BasicProperties::default()).await);
    let taken = ch
        .basic_get("src".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("d");
    assert_eq!(taken.delivery.data, b"d");
    // One more expires (per-message TTL, no consumer): dead-lettered through the exchange.
    let props = BasicProperties::default().with_expiration("50".into());
    assert!(publish_once(&ch, "src", "e", props).await);

    let (_dch, mut target) = consumer(&conn, "dst", "target", 10).await;
    let mut got = Vec::new();
    while got.len() < 4 {
        let d = next(&mut target, "the dead letters in dst").await;
        got.push((String::from_utf8(d.data.clone()).unwrap(), death_reason(&d)));
        d.acker.ack(Default::default()).await.unwrap();
    }
    got.sort();
    let want: Vec<(String, String)> = vec![
        ("a".into(), "rejected".into()),
        ("b".into(), "rejected".into()),
        ("c".into(), "rejected".into()),
        ("e".into(), "expired".into()),
    ];
    assert_eq!(got, want);
    until_waiting(&node, "src", 0).await;

    // A policy turns a running queue's dead-lettering to at-least-once (with reject-publish):
    // a message rejected then waits while its exchange (`dlx2`) does not exist.
    ch.queue_declare(
        "bypolicy".into(),
        durable(),
        quorum_args(&[(
            "x-dead-letter-exchange",
            AMQPValue::LongString("dlx2".into()),
        )]),
    )
    .await
    .unwrap();
    let reply = reqwest::Client::new()
        .put(format!("{}/api/policies/%2f/alo", node.api()))
        .basic_auth("guest", Some("guest"))
        .json(&serde_json::json!({
            "pattern": "^bypolicy$",
            "apply-to": "queues",
            "definition": {"dead-letter-strategy": "at-least-once", "overflow": "reject-publish"},
        }))
        .send()
        .await
        .unwrap();
    assert!(reply.status().is_success(), "{}", reply.status());
    publish_confirmed(&ch, "bypolicy", "p").await;
    reject(&conn, "bypolicy", 1)
        .await
        .close(200, "done".into())
        .await
        .unwrap();
    until_waiting(&node, "bypolicy", 1).await;

    // at-least-once without reject-publish falls back to at-most-once, saying so.
    ch.queue_declare(
        "fallback".into(),
        durable(),
        quorum_args(&[
            (
                "x-dead-letter-exchange",
                AMQPValue::LongString("dlx".into()),
            ),
            (
                "x-dead-letter-strategy",
                AMQPValue::LongString("at-least-once".into()),
            ),
        ]),
    )
    .await
    .unwrap();
    within("the fallback's log line", async {
        while !node.log().contains(
            "Falling back to dead-letter-strategy at-most-once for quorum queue 'fallback'",
        ) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}
