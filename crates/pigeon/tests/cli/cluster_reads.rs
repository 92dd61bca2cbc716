//! Read your writes across nodes (issue 13 item 2; docs/clustering.md, "Writes and what a
//! client sees"): an entity declared through node A, once its declare-ok arrived, is found
//! through node B at once, with no wait and no retry by the client. Node B applies committed
//! entries only when it learns of their commit (the leader's next heartbeat), so each of these
//! loops found the entity missing on B in most iterations before the read barrier (a lookup
//! that misses catches up with the leader first, `cluster/barrier.rs`).
//!
//! A is the metadata leader (it answers a declare as soon as it has applied it, the followers
//! a heartbeat later: the widest gap). Every step runs right after the previous one answered;
//! nothing sleeps. Each loop counts its misses and the test reports them all at the end.

use super::cluster::{start_all, until_login, write_configs, Node};
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use pigeon_tests::http_support::Api;
use pigeon_tests::within;
use serde_json::json;
use std::time::Duration;

/// Iterations of each loop.
const ROUNDS: usize = 8;

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

/// The metadata leader's index in `nodes`, as node 0 knows it.
async fn leader(nodes: &[Node]) -> usize {
    let api = Api::at(&nodes[0].api(), "guest", "guest");
    within("a leader to be elected", async {
        loop {
            let a = api.get("/api/pigeon/cluster").await;
            if let Some(l) = a.body["leader"].as_str() {
                return l.trim_start_matches("rabbit@n").parse().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_declared_through_one_node_is_found_through_another_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_configs(dir.path(), 3);
    let nodes = start_all(&configs).await;
    let a = leader(&nodes).await;
    let (node_a, node_b) = (&nodes[a], &nodes[(a + 1) % 3]);
    let conn_a = until_login(node_a, "guest", "guest").await;
    let conn_b = until_login(node_b, "guest", "guest").await;
    let ch_a = conn_a.create_channel().await.unwrap();
    let mut misses: Vec<String> = Vec::new();
    let no_args = FieldTable::default;

    // queue.declare passive through B.
    for i in 0..ROUNDS {
        let q = format!("rw.passive.{i}");
        ch_a.queue_declare(q.as_str().into(), durable(), no_args())
            .await
            .unwrap();
        let ch_b = conn_b.create_channel().await.unwrap();
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        if let Err(e) = ch_b
            .queue_declare(q.as_str().into(), passive, no_args())
            .await
        {
            misses.push(format!("passive declare of {q} through B: {e}"));
        }
    }

    // queue.bind through B of a queue and an exchange declared through A.
    for i in 0..ROUNDS {
        let (x, q) = (format!("rw.bind.x.{i}"), format!("rw.bind.q.{i}"));
        let xopts = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch_a.exchange_declare(x.as_str().into(), ExchangeKind::Direct, xopts, no_args())
            .await
            .unwrap();
        ch_a.queue_declare(q.as_str().into(), durable(), no_args())
            .await
            .unwrap();
        let ch_b = conn_b.create_channel().await.unwrap();
        let bound = ch_b
            .queue_bind(
                q.as_str().into(),
                x.as_str().into(),
                "k".into(),
                QueueBindOptions::default(),
                no_args(),
            )
            .await;
        if let Err(e) = bound {
            misses.push(format!("bind of {q} to {x} through B: {e}"));
        }
    }

    // basic.consume through B.
    for i in 0..ROUNDS {
        let q = format!("rw.consume.{i}");
        ch_a.queue_declare(q.as_str().into(), durable(), no_args())
            .await
            .unwrap();
        let ch_b = conn_b.create_channel().await.unwrap();
        let consumed = ch_b
            .basic_consume(
                q.as_str().into(),
                "c".into(),
                BasicConsumeOptions::default(),
                no_args(),
            )
            .await;
        if let Err(e) = consumed {
            misses.push(format!("consume from {q} through B: {e}"));
        }
        let _ = ch_b.close(200, "bye".into()).await;
    }

    // A publish (mandatory=false) through B to an exchange just declared and bound through A,
    // then a get through B: the message is there.
    for i in 0..ROUNDS {
        let (x, q) = (format!("rw.pub.x.{i}"), format!("rw.pub.q.{i}"));
        let xopts = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch_a.exchange_declare(x.as_str().into(), ExchangeKind::Fanout, xopts, no_args())
            .await
            .unwrap();
        ch_a.queue_declare(q.as_str().into(), durable(), no_args())
            .await
            .unwrap();
        ch_a.queue_bind(
            q.as_str().into(),
            x.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            no_args(),
        )
        .await
        .unwrap();
        let ch_b = conn_b.create_channel().await.unwrap();
        ch_b.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let published = ch_b
            .basic_publish(
                x.as_str().into(),
                "".into(),
                BasicPublishOptions::default(),
                b"hello",
                BasicProperties::default(),
            )
            .await;
        let confirmed = match published {
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
            Ok(Some(m)) => assert_eq!(m.delivery.data, b"hello"),
            Ok(None) => misses.push(format!(
                "get from {q} through B after a publish to {x}: empty"
            )),
            Err(e) => misses.push(format!("get from {q} through B: {e}")),
        }
    }

    // GET /api/queues/%2F/<name> through B.
    let api_b = Api::at(&node_b.api(), "guest", "guest");
    for i in 0..ROUNDS {
        let q = format!("rw.api.{i}");
        ch_a.queue_declare(q.as_str().into(), durable(), no_args())
            .await
            .unwrap();
        let got = api_b.get(&format!("/api/queues/%2F/{q}")).await;
        if got.status != 200 {
            misses.push(format!("GET /api/queues/%2F/{q} through B: {}", got.status));
        }
    }

    // An AMQP login through B of a user just added (with its permissions) through A's API.
    let api_a = Api::at(&node_a.api(), "guest", "guest");
    for i in 0..ROUNDS {
        let user = format!("rw-user-{i}");
        let made = api_a
            .put(
                &format!("/api/users/{user}"),
                json!({"password": "secret", "tags": ""}),
            )
            .await;
        assert!(made.status < 300, "PUT user: {}", made.status);
        let granted = api_a
            .put(
                &format!("/api/permissions/%2F/{user}"),
                json!({"configure": ".*", "write": ".*", "read": ".*"}),
            )
            .await;
        assert!(granted.status < 300, "PUT permissions: {}", granted.status);
        match Connection::connect(
            &node_b.url(&user, "secret"),
            ConnectionProperties::default(),
        )
        .await
        {
            Ok(c) => {
                let _ = c.close(200, "bye".into()).await;
            }
            Err(e) => misses.push(format!("login of {user} through B: {e}")),
        }
    }

    assert!(
        misses.is_empty(),
        "{} lookups through B missed what A had acknowledged:\n{}",
        misses.len(),
        misses.join("\n")
    );
}
