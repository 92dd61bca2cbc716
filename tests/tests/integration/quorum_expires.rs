//! `x-expires` (and the policy's `expires`) on quorum queues, as RabbitMQ's: a queue unused
//! (no consumer, no `basic.get`, no redeclare) for that long is deleted; a consumer attached
//! keeps it, a redeclare starts the delay again. The group's leader decides from the
//! replicated last activity (server `cluster/quorum/expiry.rs`); on a node without
//! `[cluster]` it deletes through the broker.
//!
//! No timing assertion: "kept" is shown against a control queue with the same delay declared
//! after it and left alone, whose deletion is the event waited for (without what keeps it, the
//! queue declared first would go no later than the control).

use lapin::options::{BasicConsumeOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::Channel;
use pigeon_tests::http_support::Api;
use pigeon_tests::lapin_support::{self as lp, durable, table};
use pigeon_tests::{unique, within, DataDir};
use serde_json::json;
use std::time::Duration;

/// The delay of these tests' queues (the harness waits 10 s for an event; the leader looks
/// every second).
const EXPIRES: i32 = 1_500;

fn quorum_expiring() -> FieldTable {
    table(&[
        ("x-queue-type", lp::text("quorum")),
        ("x-expires", AMQPValue::LongInt(EXPIRES)),
    ])
}

async fn declare(ch: &Channel, name: &str, args: FieldTable) {
    within(
        "queue.declare-ok",
        ch.queue_declare(name.into(), durable(), args),
    )
    .await
    .unwrap();
}

/// Whether the queue exists, asked through the management API (a passive declare would
/// count as a use of the queue, as a redeclare does).
async fn exists(api: &Api, name: &str) -> bool {
    let status = api.get(&format!("/api/queues/%2f/{name}")).await.status;
    assert!(status == 200 || status == 404, "GET queue: {status}");
    status == 200
}

/// Waits until the queue is gone.
async fn gone(api: &Api, name: &str) {
    within("the queue's expiry", async {
        while exists(api, name).await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn an_unused_quorum_queue_is_deleted_after_its_expires() {
    let data = DataDir::with(|_| {});
    let Some(broker) = data.start().await else {
        return;
    };
    let (conn, ch) = lp::connect_channel(&broker).await;
    let api = Api::new(&broker);
    let q = unique("qq-exp");
    declare(&ch, &q, quorum_expiring()).await;
    assert!(exists(&api, &q).await);
    gone(&api, &q).await;
    // Gone for AMQP clients too.
    assert!(!lp::queue_exists(&conn, &q).await);
}

#[tokio::test]
async fn a_policy_expires_applies_to_quorum_queues() {
    let data = DataDir::with(|_| {});
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = lp::connect_channel(&broker).await;
    let prefix = unique("qq-pexp");
    let api = Api::new(&broker);
    let put = api
        .put(
            &format!("/api/policies/%2f/{prefix}"),
            json!({"pattern": format!("^{prefix}"), "definition": {"expires": EXPIRES}, "apply-to": "queues"}),
        )
        .await;
    assert!(put.status < 300, "{put:?}");
    let q = format!("{prefix}-q");
    declare(&ch, &q, table(&[("x-queue-type", lp::text("quorum"))])).await;
    gone(&api, &q).await;
}

#[tokio::test]
async fn a_consumer_keeps_a_quorum_queue_and_its_leaving_starts_the_delay() {
    let data = DataDir::with(|_| {});
    let Some(broker) = data.start().await else {
        return;
    };
    let (conn, ch) = lp::connect_channel(&broker).await;
    let api = Api::new(&broker);
    let control = unique("qq-ctl");
    let kept = unique("qq-kept");
    declare(&ch, &kept, quorum_expiring()).await;
    let consumer_ch = lp::open_channel(&conn).await;
    let _consumer = within(
        "basic.consume-ok",
        consumer_ch.basic_consume(
            kept.as_str().into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    declare(&ch, &control, quorum_expiring()).await;
    // The control, declared last and left alone, goes; the consumed one stays.
    gone(&api, &control).await;
    assert!(exists(&api, &kept).await);
    // The consumer leaves: the delay starts, and the queue goes.
    within("channel.close-ok", consumer_ch.close(200, "done".into()))
        .await
        .unwrap();
    gone(&api, &kept).await;
}

#[tokio::test]
async fn redeclaring_or_getting_from_a_quorum_queue_starts_its_delay_again() {
    let data = DataDir::with(|_| {});
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = lp::connect_channel(&broker).await;
    let api = Api::new(&broker);
    let control = unique("qq-ctl");
    let redeclared = unique("qq-redeclared");
    let got = unique("qq-got");
    declare(&ch, &redeclared, quorum_expiring()).await;
    declare(&ch, &got, quorum_expiring()).await;
    declare(&ch, &control, quorum_expiring()).await;
    // Used again and again (a redeclare, a passive one too, and basic.get, each far more often
    // than the delay) while the control, declared last, is left alone until it goes.
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    within("the control's expiry", async {
        while exists(&api, &control).await {
            declare(&ch, &redeclared, quorum_expiring()).await;
            ch.queue_declare(redeclared.as_str().into(), passive, FieldTable::default())
                .await
                .unwrap();
            ch.basic_get(got.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(exists(&api, &redeclared).await);
    assert!(exists(&api, &got).await);
    // Left alone, they go too.
    gone(&api, &redeclared).await;
    gone(&api, &got).await;
}
