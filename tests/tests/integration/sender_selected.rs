//! Sender-selected distribution, as RabbitMQ: the `CC` and `BCC` headers (arrays of long
//! strings) add routing keys at every exchange on the way; consumers see `CC` but never `BCC`;
//! any other type in those headers closes the channel with 406. Dead-lettering records the
//! routing key and the `CC` keys in `x-death` and, without a dead-letter routing key, routes
//! with them; with one, the `CC` header goes. On a topic exchange the `CC` and `BCC` keys need
//! the topic write permission, as the routing key does (RabbitMQ 4.0).

use lapin::options::{BasicConsumeOptions, BasicRejectOptions};
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString};
use lapin::{BasicProperties, Channel, ExchangeKind};
use pigeon_broker::permission::Permission;
use pigeon_tests::access::{access, assert_refused, broker_with, connect_user, topic_perm, USER};
use pigeon_tests::lapin_support as lp;
use pigeon_tests::lapin_support::{table, text};
use pigeon_tests::{unique, within, TestBroker};

fn keys(keys: &[&str]) -> AMQPValue {
    AMQPValue::FieldArray(FieldArray::from(
        keys.iter()
            .map(|k| AMQPValue::LongString(LongString::from(k.as_bytes().to_vec())))
            .collect::<Vec<_>>(),
    ))
}

fn headers(pairs: Vec<(&str, AMQPValue)>) -> BasicProperties {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(k.into(), v);
    }
    BasicProperties::default().with_headers(t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cc_and_bcc_reach_their_queues_and_bcc_is_not_delivered() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let exchange = lp::temp_exchange(&channel, ExchangeKind::Direct).await;
    let (main, cc, bcc) = (
        lp::exclusive_queue(&channel).await,
        lp::exclusive_queue(&channel).await,
        lp::exclusive_queue(&channel).await,
    );
    for (q, key) in [(&main, "main"), (&cc, "cc-key"), (&bcc, "bcc-key")] {
        lp::bind(&channel, q, &exchange, key, FieldTable::default()).await;
    }
    let props = headers(vec![("CC", keys(&["cc-key"])), ("BCC", keys(&["bcc-key"]))]);
    assert!(lp::routed_with(&channel, &exchange, "main", b"m", props).await);
    for q in [&main, &cc, &bcc] {
        let got = lp::get(&channel, q).await.expect("a copy in every queue");
        let h = got.delivery.properties.headers().clone().unwrap();
        // Delivered with the routing key it was published with.
        assert_eq!(got.delivery.routing_key.as_str(), "main");
        assert!(h.inner().contains_key("CC"), "CC stays");
        assert!(!h.inner().contains_key("BCC"), "BCC is removed");
    }
    // The default exchange: each key names a queue.
    let props = headers(vec![("CC", keys(&[cc.as_str()]))]);
    assert!(lp::routed_with(&channel, "", &main, b"d", props).await);
    assert_eq!(lp::message_count(&channel, &main).await, 1);
    assert_eq!(lp::message_count(&channel, &cc).await, 1);
    // Only the CC key routes: a mandatory publish whose own key reaches nothing is routed.
    let props = headers(vec![("CC", keys(&["cc-key"]))]);
    assert!(lp::routed_with(&channel, &exchange, "nowhere", b"c", props).await);
    assert_eq!(lp::message_count(&channel, &cc).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cc_header_that_is_not_an_array_closes_the_channel_with_406() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    // basic.publish has no reply: the channel's consumer is told why the channel closed (a
    // method sent after the close may instead find lapin's channel already `Closing`).
    let queue = lp::exclusive_queue(&channel).await;
    let mut witness = lp::consume_acked(&channel, &queue).await;
    let props = headers(vec![("CC", AMQPValue::LongString("q".into()))]);
    let _ = channel
        .basic_publish("".into(), "q".into(), Default::default(), b"x", props)
        .await;
    let text = format!("{:?}", lp::consumer_error(&mut witness).await);
    assert!(
        text.contains("PRECONDITION_FAILED") && text.contains("unacceptable_type_in_header"),
        "{text}"
    );
    assert!(
        conn.status().connected(),
        "a channel error, not a connection error"
    );
}

/// The long strings of an array header (the `routing-keys` of an `x-death` entry, `CC`).
fn strings(value: Option<&AMQPValue>) -> Vec<String> {
    let Some(AMQPValue::FieldArray(a)) = value else {
        panic!("not an array: {value:?}");
    };
    a.as_slice()
        .iter()
        .map(|v| match v {
            AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            other => panic!("not a long string: {other:?}"),
        })
        .collect()
}

/// The `routing-keys` of the one `x-death` entry of `headers`.
fn death_keys(headers: &FieldTable) -> Vec<String> {
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        panic!("no x-death in {headers:?}");
    };
    let [AMQPValue::FieldTable(entry)] = deaths.as_slice() else {
        panic!("not one x-death entry: {deaths:?}");
    };
    strings(entry.inner().get("routing-keys"))
}

/// Publishes to `src` (through the default exchange) with a `CC` and a `BCC` key, then
/// rejects it without requeue so that it is dead-lettered.
async fn publish_and_reject(channel: &Channel, src: &str) {
    let props = headers(vec![("CC", keys(&["k-cc"])), ("BCC", keys(&["k-bcc"]))]);
    assert!(lp::routed_with(channel, "", src, b"m", props).await);
    let got = lp::get(channel, src).await.expect("the message");
    within(
        "basic.reject",
        channel.basic_reject(
            got.delivery.delivery_tag,
            BasicRejectOptions { requeue: false },
        ),
    )
    .await
    .unwrap();
}

async fn no_ack_consumer(channel: &Channel, queue: &str) -> lapin::Consumer {
    let options = BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    lp::consume(channel, queue, options).await
}

// RabbitMQ 3.10 (compared through pika, interop/python/test_sender_selected.py): x-death
// `routing-keys` = [src, k-cc]; the copy goes to the queues of k-cc (and k-bcc, see below).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_lettered_without_a_routing_key_goes_with_its_cc_keys_listed_in_x_death() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let dlx = lp::temp_exchange(&channel, ExchangeKind::Direct).await;
    let cc = lp::exclusive_queue(&channel).await;
    lp::bind(&channel, &cc, &dlx, "k-cc", FieldTable::default()).await;
    let args = table(&[("x-dead-letter-exchange", text(&dlx))]);
    let src = unique("src");
    within(
        "queue.declare-ok",
        channel.queue_declare(src.as_str().into(), Default::default(), args),
    )
    .await
    .unwrap();
    publish_and_reject(&channel, &src).await;
    let mut consumer = no_ack_consumer(&channel, &cc).await;
    let d = lp::next_delivery(&mut consumer).await;
    // Delivered as dead-lettered: the dead-letter exchange, the original routing key.
    assert_eq!(
        (d.exchange.as_str(), d.routing_key.as_str()),
        (dlx.as_str(), src.as_str())
    );
    let h = d.properties.headers().clone().unwrap();
    assert_eq!(death_keys(&h), [src.as_str(), "k-cc"], "BCC is not listed");
    assert_eq!(strings(h.inner().get("CC")), ["k-cc"], "CC stays");
    assert!(!h.inner().contains_key("BCC"));
    // RabbitMQ also routes the copy with the BCC keys (its stored message keeps them in its
    // routing keys); Pigeon drops BCC at publish, so it is not asserted here.
    lp::delete_queue(&channel, &src).await;
}

// RabbitMQ 3.10: with x-dead-letter-routing-key the copy goes with that key alone, x-death
// still lists [src, k-cc], and the CC header is removed (rabbit_dead_letter:make_msg).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_lettered_with_a_routing_key_loses_cc_but_x_death_lists_it() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let dlx = lp::temp_exchange(&channel, ExchangeKind::Direct).await;
    let (cc, dl) = (
        lp::exclusive_queue(&channel).await,
        lp::exclusive_queue(&channel).await,
    );
    lp::bind(&channel, &cc, &dlx, "k-cc", FieldTable::default()).await;
    lp::bind(&channel, &dl, &dlx, "dl-key", FieldTable::default()).await;
    let src = unique("src");
    let args = table(&[
        ("x-dead-letter-exchange", text(&dlx)),
        ("x-dead-letter-routing-key", text("dl-key")),
    ]);
    within(
        "queue.declare-ok",
        channel.queue_declare(src.as_str().into(), Default::default(), args),
    )
    .await
    .unwrap();
    publish_and_reject(&channel, &src).await;
    let mut consumer = no_ack_consumer(&channel, &dl).await;
    let d = lp::next_delivery(&mut consumer).await;
    assert_eq!(d.routing_key.as_str(), "dl-key");
    let h = d.properties.headers().clone().unwrap();
    assert_eq!(death_keys(&h), [src.as_str(), "k-cc"]);
    assert!(!h.inner().contains_key("CC"), "CC is removed: {h:?}");
    // Routed with the dead-letter routing key only (one routing decision, done by now).
    assert_eq!(lp::message_count(&channel, &cc).await, 0);
    lp::delete_queue(&channel, &src).await;
}

fn topic_refused(key: &str) -> String {
    format!("write access to topic '{key}' in exchange 'amq.topic' in vhost '/' refused for user '{USER}'")
}

/// Publishes to amq.topic with `key` and `header` naming `extra` on a new confirm channel.
async fn publish_topic(
    conn: &lapin::Connection,
    key: &str,
    header: &str,
    extra: &str,
) -> lapin::Result<()> {
    let ch = lp::confirm_channel(conn).await;
    let props = headers(vec![(header, keys(&[extra]))]);
    let confirm = ch
        .basic_publish(
            "amq.topic".into(),
            key.into(),
            Default::default(),
            b"m",
            props,
        )
        .await?;
    within("the confirm, or the channel's close", confirm)
        .await
        .map(|_| ())
}

// RabbitMQ 4.0 (rabbit_channel check_write_permitted_on_topics; topic_permission_SUITE
// amqpl_cc_headers / amqpl_bcc_headers): every routing key, CC and BCC included, needs the
// topic write permission; a refusal closes the channel with 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cc_and_bcc_keys_need_topic_write_permission() {
    let Some(broker) = broker_with(Permission::all()).await else {
        return;
    };
    access(&broker).set_topic_permission(USER, "/", topic_perm("amq.topic", "^a\\.", ".*"));
    let conn = connect_user(&broker).await;
    let ch = lp::open_channel(&conn).await;
    let (q1, q2) = (
        lp::exclusive_queue(&ch).await,
        lp::exclusive_queue(&ch).await,
    );
    lp::bind(&ch, &q1, "amq.topic", "a.1", FieldTable::default()).await;
    lp::bind(&ch, &q2, "amq.topic", "a.2", FieldTable::default()).await;
    for header in ["CC", "BCC"] {
        publish_topic(&conn, "a.1", header, "a.2").await.unwrap();
        assert_refused(
            publish_topic(&conn, "x.1", header, "a.2").await,
            &topic_refused("x.1"),
        );
        assert_refused(
            publish_topic(&conn, "a.1", header, "x.2").await,
            &topic_refused("x.2"),
        );
    }
    // Only the two allowed publishes went anywhere.
    assert_eq!(lp::message_count(&ch, &q1).await, 2);
    assert_eq!(lp::message_count(&ch, &q2).await, 2);
    // Another exchange type is not checked.
    let ch = lp::confirm_channel(&conn).await;
    let props = headers(vec![("CC", keys(&["x.2"]))]);
    let routed = lp::routed_with(&ch, "amq.direct", "x.1", b"m", props).await;
    assert!(!routed, "accepted (and unroutable), not refused");
}
