//! Policies for stream retention (`max-length-bytes`, `max-age`,
//! `stream-max-segment-size-bytes`), set through the management API and seen by an AMQP 0-9-1
//! consumer reading from `first`: a policy reaches a stream declared after it and one already
//! running (old segments dropped at once), its value wins over the declare argument
//! (RabbitMQ 3.10+), and `apply-to: classic_queues` does not reach a stream.

use lapin::types::AMQPValue;
use pigeon_tests::http_support::Api;
use pigeon_tests::lapin_support::{self as lp, table, text};
use pigeon_tests::streams_support::{
    confirm_channel, data_dir, next, publish_confirmed, stream_consumer,
};
use pigeon_tests::{unique, within};
use serde_json::json;

/// The offset of the first message a consumer from `first` gets.
async fn first_offset(conn: &lapin::Connection, stream: &str) -> i64 {
    let ch = lp::open_channel(conn).await;
    let mut c = stream_consumer(&ch, stream, Some(text("first"))).await;
    let (_, offset) = next(&mut c).await;
    ch.close(200, "read".into()).await.unwrap();
    offset
}

async fn declare(ch: &lapin::Channel, name: &str, segment_bytes: i64) {
    let args = table(&[
        ("x-queue-type", text("stream")),
        (
            "x-stream-max-segment-size-bytes",
            AMQPValue::LongLongInt(segment_bytes),
        ),
    ]);
    within(
        "queue.declare-ok",
        ch.queue_declare(name.into(), lp::durable(), args),
    )
    .await
    .unwrap();
}

fn bodies(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("message {i:04} {}", "x".repeat(100)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_set_on_a_running_stream_drops_its_old_segments_at_once() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let api = Api::new(&broker);
    let conn = lp::connect(&broker).await;
    let ch = confirm_channel(&conn).await;
    let name = unique("events");
    declare(&ch, &name, 1_000).await;
    let all = bodies(40);
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    publish_confirmed(&ch, &name, &refs).await;
    assert_eq!(first_offset(&conn, &name).await, 0);

    let policy = format!("/api/policies/%2F/{}", unique("retention"));
    let answer = api
        .put(
            &policy,
            json!({
                "pattern": format!("^{name}$"),
                "apply-to": "streams",
                "definition": {"max-length-bytes": 1},
            }),
        )
        .await;
    assert_eq!(answer.status, 201, "{answer:?}");
    // Applied before the answer: only the last segment is left.
    let first = first_offset(&conn, &name).await;
    assert!(first > 0 && first < 40, "first offset {first}");
    let q = api.get(&format!("/api/queues/%2F/{name}")).await.body;
    assert_eq!(q["effective_policy_definition"]["max-length-bytes"], 1);
    // The stream goes on from where it was.
    publish_confirmed(&ch, &name, &["after"]).await;
    let ch2 = lp::open_channel(&conn).await;
    let mut c = stream_consumer(&ch2, &name, Some(AMQPValue::LongLongInt(40))).await;
    assert_eq!(next(&mut c).await, ("after".to_string(), 40));
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_reaches_streams_declared_after_it_and_wins_over_their_arguments() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let api = Api::new(&broker);
    let prefix = unique("logs");
    let answer = api
        .put(
            &format!("/api/policies/%2F/{}", unique("p")),
            json!({
                "pattern": format!("^{prefix}"),
                "apply-to": "queues",
                "definition": {
                    "max-length-bytes": 2_000,
                    "stream-max-segment-size-bytes": 1_000,
                    "max-age": "7D",
                },
            }),
        )
        .await;
    assert_eq!(answer.status, 201, "{answer:?}");
    let conn = lp::connect(&broker).await;
    let ch = confirm_channel(&conn).await;
    // The argument asks for 1 GB segments; the policy's 1 kB ones win, and its 2 kB limit
    // drops the oldest as the stream grows.
    let name = format!("{prefix}-a");
    declare(&ch, &name, 1_000_000_000).await;
    let all = bodies(60);
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    publish_confirmed(&ch, &name, &refs).await;
    let first = first_offset(&conn, &name).await;
    assert!(first > 0, "first offset {first}");
    let q = api.get(&format!("/api/queues/%2F/{name}")).await.body;
    assert_eq!(
        q["arguments"]["x-stream-max-segment-size-bytes"],
        1_000_000_000
    );
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_queues_policy_does_not_reach_a_stream() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let api = Api::new(&broker);
    let conn = lp::connect(&broker).await;
    let ch = confirm_channel(&conn).await;
    let name = unique("kept");
    declare(&ch, &name, 1_000).await;
    let all = bodies(30);
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    publish_confirmed(&ch, &name, &refs).await;
    let answer = api
        .put(
            &format!("/api/policies/%2F/{}", unique("classic")),
            json!({
                "pattern": format!("^{name}$"),
                "apply-to": "classic_queues",
                "definition": {"max-length-bytes": 1},
            }),
        )
        .await;
    assert_eq!(answer.status, 201, "{answer:?}");
    assert_eq!(first_offset(&conn, &name).await, 0);
    let q = api.get(&format!("/api/queues/%2F/{name}")).await.body;
    assert_eq!(q["policy"], serde_json::Value::Null);
    conn.close(200, "bye".into()).await.unwrap();
}
