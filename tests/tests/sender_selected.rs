//! Sender-selected distribution, as RabbitMQ: the `CC` and `BCC` headers (arrays of long
//! strings) add routing keys at every exchange on the way; consumers see `CC` but never `BCC`;
//! any other type in those headers closes the channel with 406.

#![allow(clippy::unwrap_used)] // a failed step fails the test at its own line

use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString};
use lapin::{BasicProperties, ExchangeKind};
use pigeon_tests::lapin_support as lp;
use pigeon_tests::TestBroker;

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
    let props = headers(vec![("CC", AMQPValue::LongString("q".into()))]);
    let _ = channel
        .basic_publish("".into(), "q".into(), Default::default(), b"x", props)
        .await;
    // The next method on the channel finds it closed by the broker, with the reason.
    let err = pigeon_tests::within(
        "the channel's closing",
        channel.basic_qos(1, Default::default()),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("PRECONDITION_FAILED") && text.contains("unacceptable_type_in_header"),
        "{text}"
    );
    assert!(
        conn.status().connected(),
        "a channel error, not a connection error"
    );
}
