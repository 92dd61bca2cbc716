//! Order and content: part of the `paging` tests (helpers in `mod.rs`).

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_come_back_in_order_with_their_content_across_head_and_tail() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let q = durable_queue(&ch, FieldTable::default()).await;
    publish_persistent(&ch, &q, 0..1000).await;
    let (ready, out) = paged(&broker, &q);
    assert_eq!(ready, 1000);
    assert_eq!(
        out as usize,
        1000 - RESIDENT,
        "all but a head-full are paged out"
    );
    assert_eq!(lp::message_count(&ch, &q).await, 1000);

    ch.basic_qos(50, BasicQosOptions::default()).await.unwrap();
    let mut consumer = lp::consume_acked(&ch, &q).await;
    for i in 0..1000 {
        let d = lp::next_delivery(&mut consumer).await;
        assert_eq!(lp::body(&d), format!("m{i}"));
        assert_eq!(header_i(&d.properties), Some(i as i64));
        assert_eq!(d.properties.delivery_mode(), &Some(2));
        assert!(!d.redelivered);
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_eq!(paged(&broker, &q), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_and_persistent_messages_keep_their_order_in_a_durable_queue() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let q = durable_queue(&ch, FieldTable::default()).await;
    for c in publish_range(&ch, &q, 0..200, |i| i % 3 == 0).await {
        assert_eq!(c, Confirmation::Ack(None));
    }
    assert_eq!(paged(&broker, &q), (200, 200 - RESIDENT as u32));
    let got = drain(&ch, &q).await;
    let want: Vec<(String, Option<i64>, bool)> = (0..200)
        .map(|i| (format!("m{i}"), Some(i as i64), false))
        .collect();
    assert_eq!(got, want);
}

// ---------------------------------------------------------------------------------------------
// Length limits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_head_drops_the_oldest_messages_even_when_the_rest_is_paged_out() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let q = durable_queue(&ch, table(&[("x-max-length", AMQPValue::LongInt(50))])).await;
    publish_persistent(&ch, &q, 0..100).await;
    assert_eq!(lp::message_count(&ch, &q).await, 50);
    let got: Vec<String> = drain(&ch, &q).await.into_iter().map(|m| m.0).collect();
    assert_eq!(got, bodies(50..100));

    // By bytes: "m100".."m199" are 4 bytes each, so 80 bytes hold the last 20.
    let q = durable_queue(
        &ch,
        table(&[("x-max-length-bytes", AMQPValue::LongInt(80))]),
    )
    .await;
    publish_persistent(&ch, &q, 100..200).await;
    assert_eq!(lp::message_count(&ch, &q).await, 20);
    let got: Vec<String> = drain(&ch, &q).await.into_iter().map(|m| m.0).collect();
    assert_eq!(got, bodies(180..200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_publish_counts_the_paged_out_messages() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let args = table(&[
        ("x-max-length", AMQPValue::LongInt(30)),
        ("x-overflow", lp::text("reject-publish")),
    ]);
    let q = durable_queue(&ch, args).await;
    let confirms = publish_range(&ch, &q, 0..40, |_| false).await;
    assert!(confirms[..30].iter().all(|c| *c == Confirmation::Ack(None)));
    assert!(confirms[30..]
        .iter()
        .all(|c| *c == Confirmation::Nack(None)));
    assert_eq!(paged(&broker, &q), (30, 30 - RESIDENT as u32));
    let got: Vec<String> = drain(&ch, &q).await.into_iter().map(|m| m.0).collect();
    assert_eq!(got, bodies(0..30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_byte_limit_does_not_count_headers_as_body() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    // Small bodies ("m100": 4 bytes) with 2 KB of headers each: after a restart, the records'
    // lengths say nothing about the bodies' bytes.
    let pad = "h".repeat(2000);
    let q = {
        let (conn, ch) = confirm_connection(&broker).await;
        let args = table(&[
            ("x-max-length-bytes", AMQPValue::LongInt(80)),
            ("x-overflow", lp::text("drop-head")),
        ]);
        let q = durable_queue(&ch, args).await;
        // 20 messages of 4 bytes: exactly the limit; most of them are paged out.
        publish_padded(&ch, &q, 100..120, &pad).await;
        assert_eq!(paged(&broker, &q), (20, 20 - RESIDENT as u32));
        conn.close(200, "bye".into()).await.unwrap();
        q
    };
    let broker = data.restart(broker).await;
    let (_conn, ch) = confirm_connection(&broker).await;
    assert_eq!(lp::message_count(&ch, &q).await, 20);
    // One more: 84 bytes for a limit of 80, so at most the oldest message may go.
    publish_padded(&ch, &q, 120..121, &pad).await;
    let got: Vec<String> = drain(&ch, &q).await.into_iter().map(|m| m.0).collect();
    assert!(
        got.len() >= 20,
        "messages dropped beyond the limit: {got:?}"
    );
    assert_eq!(got, bodies(121 - got.len()..121));
}

/// Publishes persistent messages `range` to `queue` with a header `pad` beside `i`, one at a
/// time, each confirmed.
async fn publish_padded(channel: &Channel, queue: &str, range: std::ops::Range<usize>, pad: &str) {
    for i in range {
        let headers = table(&[
            ("i", AMQPValue::LongLongInt(i as i64)),
            ("pad", lp::text(pad)),
        ]);
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(headers);
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                format!("m{i}").as_bytes(),
                props,
            )
            .await
            .unwrap();
        let c = within("a publisher confirm", confirm).await.unwrap();
        assert_eq!(c, Confirmation::Ack(None));
    }
}
