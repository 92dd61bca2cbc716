//! The read barrier with a follower held behind (helper readwrites; docs/clustering.md,
//! "Writes and what a client sees"): the leader's link to node B delays every byte, so B
//! receives each committed entry well after the leader and the third node acknowledged it and
//! the client got its declare-ok. A lookup through B then always misses at first; with the
//! barrier B asks the leader for its read index, waits until it applied that far, and finds the
//! entity. Without the barrier every lookup of this test misses (passive declare, publish and
//! get, the management API, bind, consume, login).

use super::proxy::Mode;
use super::Cluster;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use std::time::Duration;

const ROUNDS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_behind_the_leader_finds_what_was_declared_through_it() {
    let cluster = Cluster::start(3).await;
    cluster.until_healthy().await;
    let leader = cluster.meta_leader(0).await.unwrap();
    let b = (leader + 1) % 3;
    cluster.declare(leader, "rw.warmup", false).await;
    // The leader's requests to B (AppendEntries, heartbeats) and B's answers to them arrive
    // 100 ms late: a round trip of 200 ms, under openraft's per-request timeout (the heartbeat
    // interval, 1 s), so B follows, always behind.
    cluster
        .links
        .set(leader, b, Mode::Delay(Duration::from_millis(100)));
    let conn_a = Connection::connect(
        &cluster.nodes[leader].url(),
        ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let conn_b = Connection::connect(&cluster.nodes[b].url(), ConnectionProperties::default())
        .await
        .unwrap();
    let ch_a = conn_a.create_channel().await.unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let mut misses = Vec::new();
    for i in 0..ROUNDS {
        let (x, q) = (format!("rw.behind.x.{i}"), format!("rw.behind.q.{i}"));
        let xopts = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch_a.exchange_declare(
            x.as_str().into(),
            ExchangeKind::Fanout,
            xopts,
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch_a.queue_declare(q.as_str().into(), durable, FieldTable::default())
            .await
            .unwrap();
        ch_a.queue_bind(
            q.as_str().into(),
            x.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        // A passive declare through B.
        let ch_b = conn_b.create_channel().await.unwrap();
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        if let Err(e) = ch_b
            .queue_declare(q.as_str().into(), passive, FieldTable::default())
            .await
        {
            misses.push(format!("passive declare of {q} through B: {e}"));
            continue;
        }
        // A publish through B to the exchange, then a get through B.
        ch_b.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let confirmed = match ch_b
            .basic_publish(
                x.as_str().into(),
                "".into(),
                BasicPublishOptions::default(),
                b"behind",
                BasicProperties::default(),
            )
            .await
        {
            Ok(confirm) => confirm.await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = confirmed {
            misses.push(format!("publish to {x} through B: {e}"));
            continue;
        }
        match ch_b
            .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
            .await
        {
            Ok(Some(m)) => assert_eq!(m.delivery.data, b"behind"),
            Ok(None) => misses.push(format!("get from {q} through B: empty")),
            Err(e) => misses.push(format!("get from {q} through B: {e}")),
        }
        // The management API through B.
        let api = super::get(&cluster.nodes[b].api(), &format!("/api/queues/%2f/{q}")).await;
        if api.is_none() {
            misses.push(format!("GET /api/queues/%2f/{q} through B: not found"));
        }
    }
    for i in 0..ROUNDS {
        // queue.bind and basic.consume through B of what was declared through the leader.
        let (x, q) = (format!("rw.bind.x.{i}"), format!("rw.bind.q.{i}"));
        let xopts = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch_a.exchange_declare(
            x.as_str().into(),
            ExchangeKind::Direct,
            xopts,
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch_a.queue_declare(q.as_str().into(), durable, FieldTable::default())
            .await
            .unwrap();
        let ch_b = conn_b.create_channel().await.unwrap();
        if let Err(e) = ch_b
            .queue_bind(
                q.as_str().into(),
                x.as_str().into(),
                "k".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
        {
            misses.push(format!("bind of {q} to {x} through B: {e}"));
            continue;
        }
        let c = format!("rw.consume.{i}");
        ch_a.queue_declare(c.as_str().into(), durable, FieldTable::default())
            .await
            .unwrap();
        if let Err(e) = ch_b
            .basic_consume(
                c.as_str().into(),
                "c".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
        {
            misses.push(format!("consume from {c} through B: {e}"));
        }
        let _ = ch_b.close(200, "bye".into()).await;
    }
    for i in 0..ROUNDS {
        // An AMQP login through B of a user (and its permissions) just made through the
        // leader's API.
        let user = format!("rw-user-{i}");
        let api = cluster.nodes[leader].api();
        let body = serde_json::json!({"password": "secret", "tags": ""});
        let made = super::put(&api, &format!("/api/users/{user}"), body, 10).await;
        assert!(made.is_some_and(|s| s < 300), "PUT user: {made:?}");
        let body = serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"});
        let granted = super::put(&api, &format!("/api/permissions/%2f/{user}"), body, 10).await;
        assert!(
            granted.is_some_and(|s| s < 300),
            "PUT permissions: {granted:?}"
        );
        let url = format!("amqp://{user}:secret@{}/%2f", cluster.nodes[b].amqp);
        match Connection::connect(&url, ConnectionProperties::default()).await {
            Ok(c) => {
                let _ = c.close(200, "bye".into()).await;
            }
            Err(e) => misses.push(format!("login of {user} through B: {e}")),
        }
    }
    assert!(
        misses.is_empty(),
        "{} lookups through the follower missed what the leader had acknowledged:\n{}\n{}",
        misses.len(),
        misses.join("\n"),
        cluster.logs()
    );
}
