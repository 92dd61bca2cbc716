//! Super streams (partitioned streams) made through the management API
//! (`PUT /api/stream/super-streams/{vhost}/{name}`, RabbitMQ's), then used by an AMQP 0-9-1
//! client that declares nothing: lapin publishes to the super stream's exchange with routing
//! keys and reads each partition stream from `first`. The layout is RabbitMQ's (a durable
//! direct exchange with `x-super-stream: true`, streams `NAME-0..`, bindings with
//! `x-stream-partition-order`), its refusals have its texts, and Pigeon's `GET` and `DELETE`
//! on the same path list and remove it.

use lapin::Channel;
use pigeon_tests::access::{access, add_user, perm, PASSWORD, USER};
use pigeon_tests::http_support::Api;
use pigeon_tests::lapin_support::{self as lp, text};
use pigeon_tests::streams_support::{confirm_channel, data_dir, next, stream_consumer};
use pigeon_tests::unique;
use serde_json::{json, Value};

fn path(name: &str) -> String {
    format!("/api/stream/super-streams/%2F/{name}")
}

/// The bodies of `count` messages read from `stream` from `first`, with their offsets.
async fn read(conn: &lapin::Connection, stream: &str, count: usize) -> Vec<(String, i64)> {
    let ch = lp::open_channel(conn).await;
    let mut c = stream_consumer(&ch, stream, Some(text("first"))).await;
    let mut got = Vec::new();
    for _ in 0..count {
        got.push(next(&mut c).await);
    }
    ch.close(200, "read".into()).await.unwrap();
    got
}

/// Publishes each `(routing key, body)` to the exchange `x`, waiting for the confirms.
async fn publish(ch: &Channel, x: &str, messages: &[(&str, &str)]) {
    for (key, body) in messages {
        lp::publish(ch, x, key, body.as_bytes()).await;
    }
}

fn pairs(v: &[(&str, i64)]) -> Vec<(String, i64)> {
    v.iter().map(|(b, o)| (b.to_string(), *o)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_super_stream_made_over_http_routes_each_key_to_its_partition() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let api = Api::new(&broker);
    let name = unique("invoices");
    let answer = api.put(&path(&name), json!({"partitions": 3})).await;
    assert_eq!(answer.status, 204, "{answer:?}");

    // RabbitMQ's layout, as the API shows it.
    let x = api.get(&format!("/api/exchanges/%2F/{name}")).await.body;
    assert_eq!(x["type"], "direct");
    assert_eq!(x["durable"], true);
    assert_eq!(x["arguments"], json!({"x-super-stream": true}));
    for i in 0..3 {
        let q = api.get(&format!("/api/queues/%2F/{name}-{i}")).await.body;
        assert_eq!(q["type"], "stream", "{q}");
        assert_eq!(q["arguments"]["x-queue-type"], "stream");
        assert_eq!(q["arguments"]["x-queue-leader-locator"], "balanced");
        let b = api
            .get(&format!("/api/bindings/%2F/e/{name}/q/{name}-{i}"))
            .await
            .body;
        assert_eq!(b[0]["routing_key"], i.to_string(), "{b}");
        assert_eq!(b[0]["arguments"], json!({"x-stream-partition-order": i}));
    }
    let shown = api.get(&path(&name)).await;
    assert_eq!(shown.status, 200);
    assert_eq!(
        shown.body["partitions"],
        json!([
            format!("{name}-0"),
            format!("{name}-1"),
            format!("{name}-2")
        ])
    );

    // An AMQP 0-9-1 client that declares nothing: publish by key, read each partition.
    let conn = lp::connect(&broker).await;
    let ch = confirm_channel(&conn).await;
    publish(
        &ch,
        &name,
        &[("0", "a"), ("1", "b"), ("2", "c"), ("1", "d")],
    )
    .await;
    assert_eq!(
        read(&conn, &format!("{name}-0"), 1).await,
        pairs(&[("a", 0)])
    );
    assert_eq!(
        read(&conn, &format!("{name}-1"), 2).await,
        pairs(&[("b", 0), ("d", 1)])
    );
    assert_eq!(
        read(&conn, &format!("{name}-2"), 1).await,
        pairs(&[("c", 0)])
    );
    // A key no partition has is unroutable.
    assert!(!lp::routed(&ch, &name, "3", b"lost").await);
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_keys_name_the_partitions_and_arguments_reach_them() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let api = Api::new(&broker);
    let name = unique("regions");
    let body = json!({
        "binding-keys": "amer, emea,apac",
        "arguments": {"max-length-bytes": 20000000, "max-age": "3600s"},
    });
    let answer = api.put(&path(&name), body).await;
    assert_eq!(answer.status, 204, "{answer:?}");
    let shown = api.get(&path(&name)).await.body;
    assert_eq!(
        shown["partitions"],
        json!([
            format!("{name}-amer"),
            format!("{name}-emea"),
            format!("{name}-apac")
        ])
    );
    let q = api.get(&format!("/api/queues/%2F/{name}-emea")).await.body;
    assert_eq!(q["arguments"]["x-max-length-bytes"], 20_000_000);
    assert_eq!(q["arguments"]["x-max-age"], "3600s");

    let conn = lp::connect(&broker).await;
    let ch = confirm_channel(&conn).await;
    publish(&ch, &name, &[("emea", "paris"), ("apac", "tokyo")]).await;
    assert_eq!(
        read(&conn, &format!("{name}-emea"), 1).await,
        pairs(&[("paris", 0)])
    );
    assert_eq!(
        read(&conn, &format!("{name}-apac"), 1).await,
        pairs(&[("tokyo", 0)])
    );
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_have_rabbitmqs_texts_and_leave_nothing_behind() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let api = Api::new(&broker);
    let name = unique("s");
    let reason = |a: &pigeon_tests::http_support::Answer| {
        assert_eq!(a.status, 400, "{a:?}");
        a.body["reason"].as_str().unwrap_or_default().to_string()
    };
    for (body, text) in [
        (json!({}), "Must specify partitions or binding keys"),
        (
            json!({"partitions": 2, "binding-keys": "a"}),
            "Specify partitions or binding keys, not both",
        ),
        (
            json!({"partitions": 0}),
            "The partition number must be greater than 0",
        ),
        (
            json!({"partitions": "many"}),
            "The partitions must be a number",
        ),
        (
            json!({"partitions": 1001}),
            "The partition number must not exceed 1000",
        ),
        (
            json!({"binding-keys": " , "}),
            "The number of binding keys must be greater than 0",
        ),
    ] {
        assert_eq!(reason(&api.put(&path(&name), body).await), text);
    }
    assert_eq!(
        api.put(
            "/api/stream/super-streams/nowhere/s",
            json!({"partitions": 1})
        )
        .await
        .status,
        404
    );

    // Names taken: the exchange, then a queue (nothing of the new super stream is made).
    assert_eq!(
        api.put(&path(&name), json!({"partitions": 1})).await.status,
        204
    );
    assert_eq!(
        reason(&api.put(&path(&name), json!({"partitions": 1})).await),
        format!("{{reference_already_exists,\"there is already an exchange named {name}\"}}")
    );
    let other = unique("other");
    let (conn, ch) = lp::connect_channel(&broker).await;
    lp::declare(&ch, &format!("{other}-1"), lp::durable()).await;
    assert_eq!(
        reason(&api.put(&path(&other), json!({"partitions": 2})).await),
        format!("{{reference_already_exists,\"there is already a queue named {other}-1\"}}")
    );
    assert!(!lp::exchange_exists(&conn, &other).await);
    assert!(!lp::queue_exists(&conn, &format!("{other}-0")).await);
    // A stream argument a stream refuses: RabbitMQ's `create` fails, everything is undone.
    let bad = unique("bad");
    let answer = api
        .put(
            &path(&bad),
            json!({"partitions": 2, "arguments": {"initial-cluster-size": 0}}),
        )
        .await;
    assert!(
        reason(&answer).starts_with("{internal_error,"),
        "{answer:?}"
    );
    assert_eq!(api.get(&path(&bad)).await.status, 404);
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_exchange_and_the_partition_streams() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let api = Api::new(&broker);
    let name = unique("gone");
    assert_eq!(
        api.put(&path(&name), json!({"partitions": 2})).await.status,
        204
    );
    assert_eq!(api.delete(&path(&name)).await.status, 204);
    assert_eq!(api.get(&path(&name)).await.status, 404);
    assert_eq!(
        api.get(&format!("/api/exchanges/%2F/{name}")).await.status,
        404
    );
    for i in 0..2 {
        assert_eq!(
            api.get(&format!("/api/queues/%2F/{name}-{i}")).await.status,
            404
        );
    }
    assert_eq!(api.delete(&path(&name)).await.status, 404);
    // The names are free for a new one.
    assert_eq!(
        api.put(&path(&name), json!({"partitions": 1})).await.status,
        204
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_super_stream_and_its_messages_survive_a_restart() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let name = unique("kept");
    assert_eq!(
        Api::new(&broker)
            .put(&path(&name), json!({"partitions": 2}))
            .await
            .status,
        204
    );
    {
        let conn = lp::connect(&broker).await;
        let ch = confirm_channel(&conn).await;
        publish(&ch, &name, &[("1", "before")]).await;
        conn.close(200, "bye".into()).await.unwrap();
    }
    let broker = data.restart(broker).await;
    let api = Api::new(&broker);
    assert_eq!(
        api.get(&path(&name)).await.body["partitions"],
        json!([format!("{name}-0"), format!("{name}-1")])
    );
    let conn = lp::connect(&broker).await;
    let ch = confirm_channel(&conn).await;
    publish(&ch, &name, &[("1", "after")]).await;
    assert_eq!(
        read(&conn, &format!("{name}-1"), 2).await,
        pairs(&[("before", 0), ("after", 1)])
    );
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_needs_rabbitmqs_permissions_on_the_exchange_and_every_partition() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    add_user(access(&broker));
    access(&broker)
        .set_tags(USER, vec!["management".into()])
        .unwrap();
    // May configure `ok*` only, and write to `ok-0` only.
    access(&broker).set_permission(USER, "/", perm("^ok.*", "^ok-0$", ".*"));
    let api = Api::new(&broker).with_user(USER, PASSWORD);
    let refused = |a: pigeon_tests::http_support::Answer| {
        assert_eq!(a.status, 401, "{a:?}");
        assert_eq!(a.body["reason"], Value::from("Access refused."));
    };
    refused(api.put(&path("no"), json!({"partitions": 1})).await);
    // Configure is allowed everywhere, but binding to `ok-1` needs write on it.
    refused(api.put(&path("ok"), json!({"partitions": 2})).await);
    assert_eq!(
        api.put(&path("ok"), json!({"partitions": 1})).await.status,
        204
    );
    assert_eq!(api.delete(&path("ok")).await.status, 204);
}
