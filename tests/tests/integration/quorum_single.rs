//! Quorum queues on a node without `[cluster]` (a single node is a cluster of one), the vhost's
//! `default_queue_type` and `mqtt_durable_queue_type = quorum`, as a RabbitMQ user of a lone
//! node expects them: `x-queue-type: quorum` is accepted, publishes are confirmed once the
//! entry is in the node's write-ahead log, consumers, requeues (`redelivered`,
//! `x-delivery-count`), the delivery limit and dead-lettering behave as on a cluster, and the
//! messages survive a restart. A broker with no data directory refuses quorum queues.
//!
//! These tests need their own server configuration (a data directory), so they pass without
//! checking anything against an external broker (reference mode).

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Consumer};
use pigeon_server::ServerConfig;
use pigeon_tests::http_support::Api;
use pigeon_tests::lapin_support::{self as lp, durable, table};
use pigeon_tests::mqtt_support::Mqtt4;
use pigeon_tests::reply::PRECONDITION_FAILED;
use pigeon_tests::{unique, within, DataDir, TestBroker};
use serde_json::{json, Value};

fn quorum(extra: &[(&str, AMQPValue)]) -> FieldTable {
    let mut pairs = vec![("x-queue-type", lp::text("quorum"))];
    pairs.extend(extra.iter().cloned());
    table(&pairs)
}

async fn declare(ch: &Channel, name: &str, args: FieldTable) {
    within(
        "queue.declare-ok",
        ch.queue_declare(name.into(), durable(), args),
    )
    .await
    .unwrap();
}

/// Publishes `body` to `queue` through the default exchange and waits for the confirm.
async fn publish(ch: &Channel, queue: &str, body: &str) -> Confirmation {
    let confirm = ch
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap();
    within("the confirm", confirm).await.unwrap()
}

async fn consumer(ch: &Channel, queue: &str, prefetch: u16) -> Consumer {
    ch.basic_qos(prefetch, BasicQosOptions::default())
        .await
        .unwrap();
    ch.basic_consume(
        queue.into(),
        unique("c").as_str().into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap()
}

async fn next(consumer: &mut Consumer) -> Delivery {
    within("a delivery", consumer.next())
        .await
        .expect("the consumer ended")
        .expect("a delivery")
}

fn delivery_count(d: &Delivery) -> Option<i64> {
    let headers = d.properties.headers().as_ref()?;
    match headers.inner().get("x-delivery-count")? {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        other => panic!("x-delivery-count {other:?}"),
    }
}

/// The queue as `/api/queues/{vhost}/{name}` shows it, once its group has a leader.
async fn shown(api: &Api, vhost: &str, name: &str) -> Value {
    within("the queue's leader in the API", async {
        loop {
            let a = api.get(&format!("/api/queues/{vhost}/{name}")).await;
            if a.status == 200 && a.body["type"] != "quorum" {
                return a.body;
            }
            if a.status == 200 && a.body["leader"].as_str().is_some_and(|l| !l.is_empty()) {
                return a.body;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn a_quorum_queue_runs_on_a_node_without_a_cluster_and_survives_a_restart() {
    let data = DataDir::with(|c| c.fsync = true);
    let Some(broker) = data.start().await else {
        return;
    };
    let (conn, ch) = lp::confirm_connection(&broker).await;
    let q = unique("qq");
    declare(&ch, &q, quorum(&[])).await;
    // Redeclared as RabbitMQ allows, with the same arguments.
    declare(&ch, &q, quorum(&[])).await;

    // The management API shows a quorum queue led by this node, its only member.
    let api = Api::new(&broker);
    let node = api.get("/api/overview").await.body["node"].clone();
    let listed = shown(&api, "%2f", &q).await;
    assert_eq!(listed["type"], "quorum");
    assert_eq!(listed["leader"], node);
    assert_eq!(listed["members"], json!([node]));

    for i in 0..10 {
        assert!(publish(&ch, &q, &format!("m{i}")).await.is_ack());
    }
    assert_eq!(lp::message_count(&ch, &q).await, 10);

    // A requeued message comes back redelivered, with its delivery count.
    let cch = conn.create_channel().await.unwrap();
    let mut c = consumer(&cch, &q, 1).await;
    let first = next(&mut c).await;
    assert_eq!(first.data, b"m0");
    assert!(!first.redelivered);
    assert_eq!(delivery_count(&first), None);
    first
        .acker
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let again = next(&mut c).await;
    assert_eq!(again.data, b"m0");
    assert!(again.redelivered);
    assert_eq!(delivery_count(&again), Some(1));
    again.acker.ack(Default::default()).await.unwrap();
    for i in 1..5 {
        let d = next(&mut c).await;
        assert_eq!(d.data, format!("m{i}").as_bytes());
        d.acker.ack(Default::default()).await.unwrap();
    }
    cch.close(200, "done".into()).await.unwrap();
    conn.close(200, "done".into()).await.unwrap();

    // A clean restart keeps the five unacknowledged messages, in order.
    let broker = data.restart(broker).await;
    let (conn, ch) = lp::confirm_connection(&broker).await;
    let mut c = consumer(&ch, &q, 10).await;
    for i in 5..10 {
        let d = next(&mut c).await;
        assert_eq!(d.data, format!("m{i}").as_bytes());
        d.acker.ack(Default::default()).await.unwrap();
    }
    conn.close(200, "done".into()).await.unwrap();

    // Deleted and declared again, the queue starts empty (its group's log went with it).
    let (conn, ch) = lp::confirm_connection(&broker).await;
    assert!(publish(&ch, &q, "left behind").await.is_ack());
    ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    declare(&ch, &q, quorum(&[])).await;
    assert_eq!(lp::message_count(&ch, &q).await, 0);
    assert!(publish(&ch, &q, "fresh").await.is_ack());
    let mut c = consumer(&ch, &q, 1).await;
    assert_eq!(next(&mut c).await.data, b"fresh");
    conn.close(200, "done".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn past_its_delivery_limit_a_message_is_dead_lettered_on_a_single_node() {
    let data = DataDir::with(|c| c.fsync = false);
    let Some(broker) = data.start().await else {
        return;
    };
    let (conn, ch) = lp::confirm_connection(&broker).await;
    let (q, dlq) = (unique("limited"), unique("dead"));
    declare(&ch, &dlq, quorum(&[])).await;
    let args = quorum(&[
        ("x-delivery-limit", lp::int(1)),
        ("x-dead-letter-exchange", lp::text("")),
        ("x-dead-letter-routing-key", lp::text(&dlq)),
    ]);
    declare(&ch, &q, args).await;
    assert!(publish(&ch, &q, "poison").await.is_ack());
    let cch = conn.create_channel().await.unwrap();
    let mut c = consumer(&cch, &q, 1).await;
    for count in [None, Some(1)] {
        let d = next(&mut c).await;
        assert_eq!(delivery_count(&d), count);
        d.acker
            .nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let mut dead = consumer(&ch, &dlq, 1).await;
    let d = next(&mut dead).await;
    assert_eq!(d.data, b"poison");
    let headers = d.properties.headers().clone().unwrap();
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        panic!("no x-death: {headers:?}");
    };
    let Some(AMQPValue::FieldTable(death)) = deaths.as_slice().first() else {
        panic!("{deaths:?}");
    };
    assert_eq!(
        death.inner().get("reason"),
        Some(&AMQPValue::LongString("delivery_limit".into()))
    );
    conn.close(200, "done".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn a_broker_without_a_data_directory_refuses_quorum_queues() {
    let Some(broker) = TestBroker::start_with(ServerConfig::for_tests()).await else {
        return;
    };
    let (_conn, ch) = lp::connect_channel(&broker).await;
    let q = unique("qq");
    let refused = ch
        .queue_declare(q.as_str().into(), durable(), quorum(&[]))
        .await;
    let Err(e) = refused else {
        panic!("declared: {refused:?}");
    };
    assert_eq!(lp::reply_code(&e), Some(PRECONDITION_FAILED));
    assert!(
        e.to_string()
            .contains("queue type 'quorum' needs a data directory"),
        "{e}"
    );
}

#[tokio::test]
async fn a_vhost_default_queue_type_makes_durable_declares_quorum_queues() {
    let data = DataDir::with(|c| c.fsync = false);
    let Some(broker) = data.start().await else {
        return;
    };
    let api = Api::new(&broker);
    let v = unique("dqt");
    let a = api
        .put(
            &format!("/api/vhosts/{v}"),
            json!({"description": "quorum by default", "default_queue_type": "quorum"}),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let vhost = api.get(&format!("/api/vhosts/{v}")).await.body;
    assert_eq!(vhost["default_queue_type"], "quorum");
    assert_eq!(vhost["metadata"]["default_queue_type"], "quorum");
    let bad = api
        .put(
            &format!("/api/vhosts/{v}"),
            json!({"default_queue_type": "lazy"}),
        )
        .await;
    assert_eq!(bad.status, 400);
    let p = api
        .put(
            &format!("/api/permissions/{v}/guest"),
            json!({"configure": ".*", "write": ".*", "read": ".*"}),
        )
        .await;
    assert!(p.status == 201 || p.status == 204, "{:?}", p.body);

    let url = format!("amqp://guest:guest@{}/{v}", broker.addr());
    let conn = lp::connect_url(&url).await.unwrap();
    let ch = lp::confirm_channel(&conn).await;
    let kind = |name: String| {
        let api = &api;
        let v = v.clone();
        async move { shown(api, &v, &name).await["type"].clone() }
    };
    // A durable declare naming no type gets the vhost's: a quorum queue.
    let q = unique("dq");
    declare(&ch, &q, FieldTable::default()).await;
    assert_eq!(kind(q.clone()).await, "quorum");
    assert!(publish(&ch, &q, "hello").await.is_ack());
    // Redeclared without the argument (as the application keeps doing), it is the same queue.
    declare(&ch, &q, FieldTable::default()).await;
    // Exclusive, auto-delete and non-durable declares stay classic (RabbitMQ 3.12+).
    let exclusive = lp::exclusive_queue(&ch).await;
    assert_eq!(kind(exclusive).await, "classic");
    let transient = unique("tq");
    ch.queue_declare(
        transient.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    assert_eq!(kind(transient).await, "classic");
    let auto = unique("aq");
    ch.queue_declare(
        auto.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    assert_eq!(kind(auto).await, "classic");
    // An explicit type wins.
    let classic = unique("cq");
    declare(
        &ch,
        &classic,
        table(&[("x-queue-type", lp::text("classic"))]),
    )
    .await;
    assert_eq!(kind(classic).await, "classic");
    // Through the management API too.
    let put = unique("pq");
    let a = api
        .put(&format!("/api/queues/{v}/{put}"), json!({"durable": true}))
        .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    assert_eq!(kind(put).await, "quorum");

    // The definitions carry it (top level and metadata, as RabbitMQ 3.13 exports them).
    let defs = api.get("/api/definitions").await.body;
    let exported = defs["vhosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == v.as_str())
        .cloned()
        .unwrap();
    assert_eq!(exported["default_queue_type"], "quorum");
    assert_eq!(exported["metadata"]["default_queue_type"], "quorum");
    // An import sets it.
    let w = unique("dqt-import");
    let a = api
        .post(
            "/api/definitions",
            json!({"vhosts": [{"name": w, "metadata": {"default_queue_type": "quorum"}}]}),
        )
        .await;
    assert!(a.status < 300, "{:?}", a.body);
    let imported = api.get(&format!("/api/vhosts/{w}")).await.body;
    assert_eq!(imported["default_queue_type"], "quorum");
    conn.close(200, "done".into()).await.unwrap();

    // It survives a restart, and the quorum queue with its message too.
    let broker = data.restart(broker).await;
    let api = Api::new(&broker);
    let vhost = api.get(&format!("/api/vhosts/{v}")).await.body;
    assert_eq!(vhost["default_queue_type"], "quorum");
    let url = format!("amqp://guest:guest@{}/{v}", broker.addr());
    let conn = lp::connect_url(&url).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut c = consumer(&ch, &q, 1).await;
    assert_eq!(next(&mut c).await.data, b"hello");
    conn.close(200, "done".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn mqtt_persistent_sessions_get_quorum_queues_when_configured() {
    let data = DataDir::with(|c| {
        c.fsync = true;
        c.mqtt_durable_queue_type = Some("quorum".into());
    });
    let Some(broker) = data.start().await else {
        return;
    };
    let port = broker.server().unwrap().mqtt_addr().unwrap().port();
    let id = unique("qsess");
    let mut options = rumqttc::MqttOptions::new(&id, "127.0.0.1", port);
    options.set_clean_session(false);
    let mut subscriber = Mqtt4::connect(options.clone()).await;
    subscriber
        .subscribe("quorum/topic", rumqttc::QoS::AtLeastOnce)
        .await;
    subscriber.disconnect().await;

    // The session's queue is a quorum queue.
    let api = Api::new(&broker);
    let queue = format!("mqtt-session-{id}");
    assert_eq!(shown(&api, "%2f", &queue).await["type"], "quorum");

    // A QoS 1 publish is acknowledged once committed, and waits for the session.
    let publisher_options = rumqttc::MqttOptions::new(unique("pub"), "127.0.0.1", port);
    let mut publisher = Mqtt4::connect(publisher_options).await;
    publisher
        .publish("quorum/topic", rumqttc::QoS::AtLeastOnce, false, b"kept")
        .await;
    publisher.disconnect().await;
    let mut subscriber = Mqtt4::connect(options).await;
    assert_eq!(subscriber.next_text().await, "kept");
    subscriber.disconnect().await;
    broker.stop().await;
}
