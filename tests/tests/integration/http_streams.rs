//! A stream as the management API shows it (`/api/queues`, `/api/queues/{vhost}/{name}`): the
//! fields RabbitMQ 3.13 shows for a stream (`type`, `leader`, `members`, `online`,
//! `segments`, `first_timestamp`, `committed_offset`, `committed_chunk_id`; its messages all
//! ready, none unacknowledged, consumers holding deliveries or not) and Pigeon's
//! `first_offset`, `last_offset`, `stream_bytes`, checked against what lapin published.

use pigeon_tests::http_support::Api;
use pigeon_tests::lapin_support::{self as lp, text};
use pigeon_tests::streams_support::{data_dir, new_stream, publish_confirmed, stream_consumer};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_shows_its_offsets_segments_and_messages() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let api = Api::new(&broker);
    let conn = lp::connect(&broker).await;
    let (ch, s) = new_stream(&conn).await;
    let path = format!("/api/queues/%2F/{s}");

    // Empty.
    let q = api.get(&path).await.body;
    assert_eq!(q["type"], "stream");
    assert_eq!(q["messages"], 0);
    assert_eq!(q["committed_offset"], -1);
    assert_eq!(q["committed_chunk_id"], -1);
    assert_eq!(q["last_offset"], Value::Null);
    assert_eq!(q["first_offset"], 0);
    assert_eq!(q["first_timestamp"], 0);
    let node = q["node"].clone();
    assert_eq!(q["leader"], node);
    assert_eq!(q["members"], json!([node.clone()]));
    assert_eq!(q["online"], json!([node.clone()]));

    publish_confirmed(&ch, &s, &["a", "b", "c"]).await;
    // A consumer holding all three unacknowledged: a stream still counts them as ready.
    let cch = lp::open_channel(&conn).await;
    let mut c = stream_consumer(&cch, &s, Some(text("first"))).await;
    for _ in 0..3 {
        lp::next_delivery(&mut c).await;
    }
    let q = api.get(&path).await.body;
    assert_eq!(q["messages"], 3, "{q}");
    assert_eq!(q["messages_ready"], 3);
    assert_eq!(q["messages_unacknowledged"], 0);
    assert_eq!(q["consumers"], 1);
    assert_eq!(q["readers"][node.as_str().unwrap()], 1);
    assert_eq!(q["segments"], 1);
    assert_eq!(q["first_offset"], 0);
    assert_eq!(q["last_offset"], 2);
    assert_eq!(q["committed_offset"], 2);
    // One chunk per message published over AMQP 0-9-1: the last one starts at offset 2.
    assert_eq!(q["committed_chunk_id"], 2);
    assert!(
        q["first_timestamp"].as_i64().unwrap() > 1_600_000_000_000,
        "{q}"
    );
    assert!(q["stream_bytes"].as_u64().unwrap() > 0);

    // The list shows the same fields.
    let all = api.get("/api/queues/%2F").await.body;
    let listed = all
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == s.as_str())
        .unwrap()
        .clone();
    assert_eq!(listed["type"], "stream");
    assert_eq!(listed["messages"], 3);
    assert_eq!(listed["last_offset"], 2);
    conn.close(200, "bye".into()).await.unwrap();
}
