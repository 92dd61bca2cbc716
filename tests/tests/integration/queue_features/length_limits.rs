//! Length limits: part of the `queue_features` tests (helpers in `mod.rs`).

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_length_drop_head_keeps_the_newest_messages() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let queue = new_queue(&channel, table(&[("x-max-length", int(3))])).await;
    for i in 1..=5 {
        let c = publish_confirmed(&channel, &queue, &i.to_string(), Default::default()).await;
        assert!(c.is_ack(), "drop-head accepts every publish: {c:?}");
    }
    assert_eq!(lp::message_count(&channel, &queue).await, 3);
    assert_eq!(drain(&channel, &queue).await, ["3", "4", "5"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_length_bytes_drop_head_counts_body_bytes() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let queue = new_queue(&channel, table(&[("x-max-length-bytes", int(10))])).await;
    for body in ["aaaa", "bbbb", "cccc"] {
        lp::publish(&channel, "", &queue, body.as_bytes()).await;
    }
    assert_eq!(
        lp::message_count(&channel, &queue).await,
        2,
        "12 bytes > 10"
    );
    lp::publish(&channel, "", &queue, b"dd").await;
    assert_eq!(
        lp::message_count(&channel, &queue).await,
        3,
        "exactly 10 bytes fit"
    );
    assert_eq!(drain(&channel, &queue).await, ["bbbb", "cccc", "dd"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_publish_nacks_what_does_not_fit_until_there_is_room() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let queue = new_queue(
        &channel,
        table(&[
            ("x-max-length", int(2)),
            ("x-overflow", text("reject-publish")),
        ]),
    )
    .await;
    for body in ["1", "2"] {
        assert!(
            publish_confirmed(&channel, &queue, body, Default::default())
                .await
                .is_ack()
        );
    }
    let refused = publish_confirmed(&channel, &queue, "3", Default::default()).await;
    assert!(refused.is_nack(), "over the limit: {refused:?}");
    assert_eq!(lp::message_count(&channel, &queue).await, 2);
    // A delivered (even unacked) message no longer counts against the limit.
    let taken = lp::get(&channel, &queue).await.unwrap();
    assert_eq!(lp::body(&taken.delivery), "1");
    assert!(publish_confirmed(&channel, &queue, "4", Default::default())
        .await
        .is_ack());
    assert_eq!(drain(&channel, &queue).await, ["2", "4"]);
    assert!(
        channel.status().connected(),
        "a nack does not close the channel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_publish_applies_to_max_length_bytes_too() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let queue = new_queue(
        &channel,
        table(&[
            ("x-max-length-bytes", int(5)),
            ("x-overflow", text("reject-publish")),
        ]),
    )
    .await;
    let outcomes: Vec<bool> = {
        let mut v = Vec::new();
        for body in ["abc", "de", "f"] {
            v.push(
                publish_confirmed(&channel, &queue, body, Default::default())
                    .await
                    .is_ack(),
            );
        }
        v
    };
    assert_eq!(outcomes, [true, true, false]);
    assert_eq!(drain(&channel, &queue).await, ["abc", "de"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_queue_arguments_are_refused_with_406() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let cases: [(&str, &[(&str, AMQPValue)]); 9] = [
        ("negative ttl", &[("x-message-ttl", int(-1))]),
        ("zero expires", &[("x-expires", int(0))]),
        ("negative max-length", &[("x-max-length", int(-1))]),
        ("unknown overflow", &[("x-overflow", text("drop-tail"))]),
        ("priority above 255", &[("x-max-priority", int(256))]),
        (
            "non-boolean single active consumer",
            &[("x-single-active-consumer", text("yes"))],
        ),
        (
            "non-string dead-letter exchange",
            &[("x-dead-letter-exchange", int(5))],
        ),
        (
            "routing key without exchange",
            &[("x-dead-letter-routing-key", text("k"))],
        ),
        ("ttl as text", &[("x-message-ttl", text("1000"))]),
    ];
    for (what, args) in cases {
        let channel = lp::open_channel(&conn).await;
        let result = within(
            "queue.declare answer",
            channel.queue_declare(
                unique("bad").into(),
                QueueDeclareOptions::exclusive(),
                table(args),
            ),
        )
        .await;
        match result {
            Ok(q) => panic!("{what}: declared {q:?}"),
            Err(e) => assert_eq!(
                lp::reply_code(&e),
                Some(PRECONDITION_FAILED),
                "{what}: {e:?}"
            ),
        }
    }
    // RabbitMQ accepts x-max-priority 0 (one level) and x-max-length 0.
    let channel = lp::open_channel(&conn).await;
    new_queue(&channel, table(&[("x-max-priority", int(0))])).await;
    new_queue(&channel, table(&[("x-max-length", int(0))])).await;
}
