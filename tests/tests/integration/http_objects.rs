//! Queues, exchanges, bindings and messages through the management HTTP API, checked against
//! what a real AMQP client (lapin) sees: a queue declared by lapin shows in `/api/queues` with
//! its message count, a message published through the API is consumed by lapin, a get with
//! `ack_requeue_true` leaves the message in the queue, and objects declared through the API
//! are there for lapin.

use futures_lite::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use pigeon_server::ServerConfig;
use pigeon_tests::http_support::Api;
use pigeon_tests::lapin_support as lp;
use pigeon_tests::{unique, within, TestBroker};
use serde_json::{json, Value};

async fn broker() -> Option<TestBroker> {
    TestBroker::start_with(ServerConfig::for_tests()).await
}

async fn publish(channel: &lapin::Channel, queue: &str, body: &[u8]) {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_queue_declared_by_lapin_shows_with_its_messages() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let (_conn, channel) = lp::connect_channel(&broker).await;
    let queue = unique("q");
    let args = {
        let mut t = FieldTable::default();
        t.insert("x-max-length".into(), lapin::types::AMQPValue::LongInt(100));
        t
    };
    channel
        .queue_declare(queue.as_str().into(), lp::durable(), args)
        .await
        .unwrap();
    for i in 0..3 {
        publish(&channel, &queue, format!("m{i}").as_bytes()).await;
    }
    // Publishes on one channel are ordered; a synchronous round trip shows they arrived.
    let ok = channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(ok.message_count(), 3);
    let q = api.get(&format!("/api/queues/%2F/{queue}")).await;
    assert_eq!(q.status, 200);
    let q = q.body;
    assert_eq!(q["name"], queue.as_str());
    assert_eq!(q["vhost"], "/");
    assert_eq!(q["durable"], true);
    assert_eq!(q["exclusive"], false);
    assert_eq!(q["messages"], 3);
    assert_eq!(q["messages_ready"], 3);
    assert_eq!(q["messages_unacknowledged"], 0);
    assert_eq!(q["consumers"], 0);
    assert_eq!(q["arguments"], json!({"x-max-length": 100}));
    let listed = api.get("/api/queues/%2F").await.body;
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|q| q["name"] == queue.as_str()));

    // Bindings of the queue: the default exchange's.
    let b = api
        .get(&format!("/api/queues/%2F/{queue}/bindings"))
        .await
        .body;
    assert_eq!(b[0]["source"], "");
    assert_eq!(b[0]["routing_key"], queue.as_str());

    // Purge, then delete with if-empty.
    assert_eq!(
        api.delete(&format!("/api/queues/%2F/{queue}?if-empty=true"))
            .await
            .status,
        400
    );
    assert_eq!(
        api.delete(&format!("/api/queues/%2F/{queue}/contents"))
            .await
            .status,
        204
    );
    assert_eq!(
        api.get(&format!("/api/queues/%2F/{queue}")).await.body["messages"],
        0
    );
    assert_eq!(
        api.delete(&format!("/api/queues/%2F/{queue}?if-empty=true"))
            .await
            .status,
        204
    );
    assert!(!lp::queue_exists(&_conn, &queue).await);
}

#[tokio::test]
async fn queue_lists_are_filtered_sorted_and_paged() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let prefix = unique("page");
    for i in 0..5 {
        let a = api
            .put(
                &format!("/api/queues/%2F/{prefix}-{i}"),
                json!({"durable": false}),
            )
            .await;
        assert_eq!(a.status, 201);
    }
    assert_eq!(
        api.put(
            &format!("/api/queues/%2F/{prefix}-0"),
            json!({"durable": false})
        )
        .await
        .status,
        204
    );
    // Redeclaring with other properties: 400 with the AMQP reason.
    let a = api
        .put(
            &format!("/api/queues/%2F/{prefix}-0"),
            json!({"durable": true}),
        )
        .await;
    assert_eq!(a.status, 400);
    assert!(a.body["reason"]
        .as_str()
        .unwrap()
        .contains("inequivalent arg 'durable'"));

    let page = api
        .get(&format!("/api/queues/%2F?page=2&page_size=2&name={prefix}&sort=name&sort_reverse=true&columns=name,messages"))
        .await;
    assert_eq!(page.status, 200);
    let p = page.body;
    assert_eq!(p["filtered_count"], 5);
    assert_eq!(p["item_count"], 2);
    assert_eq!(p["page"], 2);
    assert_eq!(p["page_count"], 3);
    assert_eq!(p["page_size"], 2);
    assert_eq!(p["total_count"], 5);
    assert_eq!(
        p["items"],
        json!([{"name": format!("{prefix}-2"), "messages": 0}, {"name": format!("{prefix}-1"), "messages": 0}])
    );
    let regex = api
        .get(&format!(
            "/api/queues/%2F?page=1&name=^{prefix}-[34]$&use_regex=true"
        ))
        .await
        .body;
    assert_eq!(regex["filtered_count"], 2);
    assert_eq!(api.get("/api/queues/%2F?page=9").await.status, 400);
}

#[tokio::test]
async fn a_message_published_through_the_api_is_consumed_by_lapin() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let (_conn, channel) = lp::connect_channel(&broker).await;
    let queue = unique("pub");
    channel
        .queue_declare(
            queue.as_str().into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "c".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let body = json!({
        "properties": {"content_type": "text/plain", "headers": {"h": "v", "n": 5}, "delivery_mode": 2},
        "routing_key": queue,
        "payload": "hello from HTTP",
        "payload_encoding": "string",
    });
    let a = api
        .post("/api/exchanges/%2F/amq.default/publish", body)
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, json!({"routed": true}));
    let delivery = within("the delivery", consumer.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivery.data, b"hello from HTTP");
    assert_eq!(
        delivery
            .properties
            .content_type()
            .as_ref()
            .unwrap()
            .as_str(),
        "text/plain"
    );
    assert_eq!(*delivery.properties.delivery_mode(), Some(2));
    let headers = delivery.properties.headers().as_ref().unwrap();
    assert!(headers.inner().contains_key("h"));

    let b64 = json!({"properties": {}, "routing_key": "nowhere", "payload": "aGk=", "payload_encoding": "base64"});
    assert_eq!(
        api.post("/api/exchanges/%2F/amq.default/publish", b64)
            .await
            .body,
        json!({"routed": false})
    );
    let bad = json!({"properties": {}, "routing_key": "k", "payload": "!!", "payload_encoding": "base64"});
    assert_eq!(
        api.post("/api/exchanges/%2F/amq.default/publish", bad)
            .await
            .status,
        400
    );
    let missing = json!({"properties": {}, "payload": "x"});
    assert_eq!(
        api.post("/api/exchanges/%2F/amq.direct/publish", missing)
            .await
            .status,
        400
    );
    let nowhere = json!({"properties": {}, "routing_key": "k", "payload": "x"});
    assert_eq!(
        api.post("/api/exchanges/%2F/no-such/publish", nowhere)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn get_with_ack_requeue_true_leaves_the_message() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let (conn, channel) = lp::connect_channel(&broker).await;
    let queue = unique("get");
    channel
        .queue_declare(
            queue.as_str().into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    publish(&channel, &queue, b"first").await;
    publish(&channel, &queue, &[0xff, 0x00, 0x01]).await;
    lp::open_channel(&conn).await; // a round trip: both publishes are in the queue
    let path = format!("/api/queues/%2F/{queue}/get");
    let req =
        json!({"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 50000});
    let got = api.post(&path, req.clone()).await;
    assert_eq!(got.status, 200);
    let got = got.body;
    assert_eq!(got.as_array().unwrap().len(), 2);
    assert_eq!(got[0]["payload"], "first");
    assert_eq!(got[0]["payload_encoding"], "string");
    assert_eq!(got[0]["payload_bytes"], 5);
    assert_eq!(got[0]["routing_key"], queue.as_str());
    assert_eq!(got[0]["message_count"], 1);
    assert_eq!(got[1]["payload"], "/wAB");
    assert_eq!(got[1]["payload_encoding"], "base64");
    // Still there, now redelivered.
    assert_eq!(
        api.get(&format!("/api/queues/%2F/{queue}")).await.body["messages"],
        2
    );
    let again = api.post(&path, req).await.body;
    assert_eq!(again[0]["redelivered"], true);

    // ack_requeue_false takes one for good (a count as a string, as rabbitmqadmin sends it).
    let take = json!({"count": "1", "ackmode": "ack_requeue_false", "encoding": "auto"});
    assert_eq!(api.post(&path, take).await.body[0]["payload"], "first");
    assert_eq!(
        api.get(&format!("/api/queues/%2F/{queue}")).await.body["messages"],
        1
    );
    let bad = json!({"count": 1, "ackmode": "eat_it", "encoding": "auto"});
    assert_eq!(api.post(&path, bad).await.status, 400);
    assert_eq!(
        api.get(&format!("/api/queues/%2F/{queue}")).await.body["messages"],
        1
    );
}

#[tokio::test]
async fn exchanges_and_bindings_declared_through_the_api_route_lapin_messages() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let (conn, channel) = lp::confirm_connection(&broker).await;
    let x = unique("x");
    let q = unique("q");
    let xa = api
        .put(
            &format!("/api/exchanges/%2F/{x}"),
            json!({"type": "topic", "durable": false, "arguments": {}}),
        )
        .await;
    assert_eq!(xa.status, 201);
    assert_eq!(
        api.put(
            &format!("/api/exchanges/%2F/{x}"),
            json!({"type": "topic", "durable": false})
        )
        .await
        .status,
        204
    );
    assert_eq!(
        api.put(
            &format!("/api/exchanges/%2F/{x}"),
            json!({"type": "fanout", "durable": false})
        )
        .await
        .status,
        400
    );
    assert_eq!(
        api.put(
            &format!("/api/exchanges/%2F/{}", unique("x")),
            json!({"type": "bogus"})
        )
        .await
        .status,
        400
    );
    let shown = api.get(&format!("/api/exchanges/%2F/{x}")).await.body;
    assert_eq!(shown["type"], "topic");
    assert_eq!(shown["durable"], false);
    assert_eq!(
        api.get("/api/exchanges/%2F/amq.default").await.body["name"],
        ""
    );
    assert!(lp::exchange_exists(&conn, &x).await);
    assert_eq!(
        api.put(&format!("/api/queues/%2F/{q}"), json!({"durable": false}))
            .await
            .status,
        201
    );

    let bind = api
        .post(
            &format!("/api/bindings/%2F/e/{x}/q/{q}"),
            json!({"routing_key": "a.*", "arguments": {}}),
        )
        .await;
    assert_eq!(bind.status, 201);
    let location = bind.headers["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!("/api/bindings/%2F/e/{}/q/", x.replace('-', "%2D"))),
        "{location}"
    );
    let listed = api
        .get(&format!("/api/bindings/%2F/e/{x}/q/{q}"))
        .await
        .body;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let props = listed[0]["properties_key"].as_str().unwrap().to_string();
    assert_eq!(listed[0]["routing_key"], "a.*");
    assert_eq!(listed[0]["destination_type"], "queue");
    assert_eq!(
        api.get(&format!("/api/exchanges/%2F/{x}/bindings/source"))
            .await
            .body,
        listed
    );
    assert!(api
        .get("/api/bindings/%2F")
        .await
        .body
        .as_array()
        .unwrap()
        .contains(&listed[0]));

    // lapin publishes through the binding made over HTTP.
    assert!(lp::routed(&channel, &x, "a.b", b"via binding").await);
    let got = api
        .post(
            &format!("/api/queues/%2F/{q}/get"),
            json!({"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}),
        )
        .await;
    assert_eq!(got.body[0]["payload"], "via binding");
    assert_eq!(got.body[0]["exchange"], x.as_str());

    // Exchange-to-exchange bindings.
    let x2 = unique("x2");
    api.put(
        &format!("/api/exchanges/%2F/{x2}"),
        json!({"type": "fanout", "durable": false}),
    )
    .await;
    assert_eq!(
        api.post(
            &format!("/api/bindings/%2F/e/{x2}/e/{x}"),
            json!({"routing_key": ""})
        )
        .await
        .status,
        201
    );
    let dest = api
        .get(&format!("/api/exchanges/%2F/{x}/bindings/destination"))
        .await
        .body;
    assert_eq!(dest[0]["source"], x2.as_str());
    assert_eq!(dest[0]["destination_type"], "exchange");

    // Unbinding by properties key.
    let path = format!(
        "/api/bindings/%2F/e/{x}/q/{q}/{}",
        props.replace('%', "%25")
    );
    assert_eq!(api.get(&path).await.status, 200);
    assert_eq!(api.delete(&path).await.status, 204);
    assert_eq!(api.get(&path).await.status, 404);
    assert!(!lp::routed(&channel, &x, "a.b", b"nowhere").await);
    // Binding to something missing: 404.
    assert_eq!(
        api.post(&format!("/api/bindings/%2F/e/{x}/q/nope"), json!({}))
            .await
            .status,
        404
    );

    // if-unused looks at the exchange's bindings as a source (as RabbitMQ's
    // `rabbit_binding:has_for_source`): x2 has one, x no longer has any.
    assert_eq!(
        api.delete(&format!("/api/exchanges/%2F/{x2}?if-unused=true"))
            .await
            .status,
        400
    );
    assert_eq!(
        api.delete(&format!("/api/exchanges/%2F/{x}?if-unused=true"))
            .await
            .status,
        204
    );
    assert_eq!(
        api.get(&format!("/api/exchanges/%2F/{x}")).await.status,
        404
    );
    assert_eq!(
        api.delete(&format!("/api/exchanges/%2F/{x}")).await.status,
        404
    );
    assert_eq!(
        api.delete("/api/exchanges/%2F/amq.direct").await.status,
        401
    );
}

#[tokio::test]
async fn management_users_act_within_their_permissions_monitors_only_read() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let vhost = unique("vh");
    api.put(&format!("/api/vhosts/{vhost}"), json!({})).await;
    let user = unique("m");
    api.put(
        &format!("/api/users/{user}"),
        json!({"password": "pw", "tags": "management"}),
    )
    .await;
    let perm = json!({"configure": "^mine-", "write": ".*", "read": ".*"});
    api.put(&format!("/api/permissions/{vhost}/{user}"), perm)
        .await;
    let mgmt = api.with_user(&user, "pw");
    assert_eq!(
        mgmt.put(&format!("/api/queues/{vhost}/mine-1"), json!({}))
            .await
            .status,
        201
    );
    let refused = mgmt
        .put(&format!("/api/queues/{vhost}/theirs"), json!({}))
        .await;
    assert_eq!(refused.status, 401);
    assert_eq!(
        api.get(&format!("/api/queues/{vhost}/theirs")).await.status,
        404
    );
    // It sees the queues of its vhost only.
    api.put("/api/queues/%2F/root-queue", json!({"durable": false}))
        .await;
    let seen: Vec<Value> = mgmt
        .get("/api/queues")
        .await
        .body
        .as_array()
        .unwrap()
        .clone();
    assert!(seen.iter().all(|q| q["vhost"] == vhost.as_str()));
    assert_eq!(mgmt.get("/api/queues/%2F").await.status, 401);

    // A monitoring user without permissions sees everything but changes nothing.
    let mon = unique("mon");
    api.put(
        &format!("/api/users/{mon}"),
        json!({"password": "pw", "tags": "monitoring"}),
    )
    .await;
    let monitor = api.with_user(&mon, "pw");
    let all: Vec<Value> = monitor
        .get("/api/queues")
        .await
        .body
        .as_array()
        .unwrap()
        .clone();
    assert!(all.iter().any(|q| q["name"] == "root-queue"));
    assert!(all.iter().any(|q| q["name"] == "mine-1"));
    assert_eq!(
        monitor.delete("/api/queues/%2F/root-queue").await.status,
        401
    );
    assert_eq!(
        monitor
            .put(&format!("/api/queues/{vhost}/mine-2"), json!({}))
            .await
            .status,
        401
    );
    assert_eq!(api.get("/api/queues/%2F/root-queue").await.status, 200);
}
