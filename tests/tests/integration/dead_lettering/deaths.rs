//! Why a message dies, and what x-death says about it: part of the `dead_lettering` tests (helpers
//! in `mod.rs`).

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_without_requeue_dead_letters_with_an_x_death_entry_as_rabbitmq_writes_it() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let (dlx, dlq) = dead_letter_target(&channel).await;
    let src = new_queue(
        &channel,
        "src",
        table(&[("x-dead-letter-exchange", text(&dlx))]),
    )
    .await;
    let mut custom = FieldTable::default();
    custom.insert("app".into(), text("kept"));
    let properties = BasicProperties::default()
        .with_correlation_id("c-1".into())
        .with_headers(custom);
    let from = now_secs();
    lp::publish_with(&channel, "", &src, b"doomed", properties).await;

    let mut work = lp::consume_acked(&channel, &src).await;
    let delivery = lp::next_delivery(&mut work).await;
    nack(&channel, delivery.delivery_tag).await;

    let mut dead = consume_no_ack(&channel, &dlq).await;
    let d = lp::next_delivery(&mut dead).await;
    let to = now_secs();
    assert_eq!(lp::body(&d), "doomed");
    assert_eq!(
        d.exchange.as_str(),
        dlx,
        "republished to the dead-letter exchange"
    );
    assert_eq!(
        d.routing_key.as_str(),
        src,
        "without x-dead-letter-routing-key the original routing key is kept"
    );
    assert!(!d.redelivered);
    assert_eq!(
        d.properties.correlation_id().as_ref().unwrap().as_str(),
        "c-1"
    );
    assert_eq!(
        long_str(headers(&d).inner().get("app")).as_deref(),
        Some("kept")
    );
    let deaths = x_death(&d);
    assert_eq!(deaths.len(), 1, "{deaths:?}");
    assert_death(
        &deaths[0],
        &Death {
            count: 1,
            reason: "rejected",
            queue: &src,
            exchange: "",
            routing_keys: &[&src],
            original_expiration: None,
        },
        (from, to),
    );
    assert_first_death(&d, "rejected", &src, "");
    lp::delete_exchange(&channel, &dlx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_routing_key_replaces_the_key_but_x_death_keeps_the_original_ones() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let published_to = lp::temp_exchange(&channel, ExchangeKind::Topic).await;
    let dlx = lp::temp_exchange(&channel, ExchangeKind::Direct).await;
    let dlq = new_queue(&channel, "dlq", FieldTable::default()).await;
    lp::bind(&channel, &dlq, &dlx, "dead.key", FieldTable::default()).await;
    let src = new_queue(
        &channel,
        "src",
        table(&[
            ("x-dead-letter-exchange", text(&dlx)),
            ("x-dead-letter-routing-key", text("dead.key")),
        ]),
    )
    .await;
    lp::bind(
        &channel,
        &src,
        &published_to,
        "orders.#",
        FieldTable::default(),
    )
    .await;
    let from = now_secs();
    lp::publish(&channel, &published_to, "orders.eu.new", b"order").await;

    let mut work = lp::consume_acked(&channel, &src).await;
    let delivery = lp::next_delivery(&mut work).await;
    channel
        .basic_reject(delivery.delivery_tag, BasicRejectOptions { requeue: false })
        .await
        .unwrap();

    let mut dead = consume_no_ack(&channel, &dlq).await;
    let d = lp::next_delivery(&mut dead).await;
    let to = now_secs();
    assert_eq!(
        (d.exchange.as_str(), d.routing_key.as_str()),
        (dlx.as_str(), "dead.key")
    );
    let deaths = x_death(&d);
    assert_eq!(deaths.len(), 1);
    assert_death(
        &deaths[0],
        &Death {
            count: 1,
            reason: "rejected",
            queue: &src,
            exchange: &published_to,
            routing_keys: &["orders.eu.new"],
            original_expiration: None,
        },
        (from, to),
    );
    assert_first_death(&d, "rejected", &src, &published_to);
    lp::delete_exchange(&channel, &published_to).await;
    lp::delete_exchange(&channel, &dlx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_past_its_own_expiration_dies_expired_and_keeps_it_as_original_expiration() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let (dlx, dlq) = dead_letter_target(&channel).await;
    let src = new_queue(
        &channel,
        "src",
        table(&[("x-dead-letter-exchange", text(&dlx))]),
    )
    .await;
    let mut dead = consume_no_ack(&channel, &dlq).await;
    let from = now_secs();
    let properties = BasicProperties::default().with_expiration("30".into());
    lp::publish_with(&channel, "", &src, b"short-lived", properties).await;

    let d = lp::next_delivery(&mut dead).await;
    let to = now_secs();
    assert_eq!(lp::body(&d), "short-lived");
    assert_eq!(
        d.properties.expiration(),
        &None,
        "the dead letter no longer carries the expiration that killed it"
    );
    let deaths = x_death(&d);
    assert_eq!(deaths.len(), 1);
    assert_death(
        &deaths[0],
        &Death {
            count: 1,
            reason: "expired",
            queue: &src,
            exchange: "",
            routing_keys: &[&src],
            original_expiration: Some("30"),
        },
        (from, to),
    );
    assert_first_death(&d, "expired", &src, "");
    lp::delete_exchange(&channel, &dlx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_past_the_queue_ttl_dies_expired_without_original_expiration() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let (dlx, dlq) = dead_letter_target(&channel).await;
    let src = new_queue(
        &channel,
        "src",
        table(&[
            ("x-dead-letter-exchange", text(&dlx)),
            ("x-message-ttl", int(30)),
        ]),
    )
    .await;
    let mut dead = consume_no_ack(&channel, &dlq).await;
    let from = now_secs();
    for body in ["a", "b"] {
        lp::publish(&channel, "", &src, body.as_bytes()).await;
    }
    let first = lp::next_delivery(&mut dead).await;
    let second = lp::next_delivery(&mut dead).await;
    let to = now_secs();
    assert_eq!(
        (lp::body(&first), lp::body(&second)),
        ("a".into(), "b".into())
    );
    for d in [&first, &second] {
        let deaths = x_death(d);
        assert_eq!(deaths.len(), 1);
        assert_death(
            &deaths[0],
            &Death {
                count: 1,
                reason: "expired",
                queue: &src,
                exchange: "",
                routing_keys: &[&src],
                original_expiration: None,
            },
            (from, to),
        );
    }
    lp::delete_exchange(&channel, &dlx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_head_overflow_dead_letters_the_oldest_with_reason_maxlen() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let (dlx, dlq) = dead_letter_target(&channel).await;
    let src = new_queue(
        &channel,
        "src",
        table(&[
            ("x-dead-letter-exchange", text(&dlx)),
            ("x-max-length", int(2)),
        ]),
    )
    .await;
    let mut dead = consume_no_ack(&channel, &dlq).await;
    let from = now_secs();
    for body in ["1", "2", "3", "4"] {
        lp::publish(&channel, "", &src, body.as_bytes()).await;
    }
    let mut dropped = Vec::new();
    for _ in 0..2 {
        let d = lp::next_delivery(&mut dead).await;
        let deaths = x_death(&d);
        assert_eq!(deaths.len(), 1);
        assert_death(
            &deaths[0],
            &Death {
                count: 1,
                reason: "maxlen",
                queue: &src,
                exchange: "",
                routing_keys: &[&src],
                original_expiration: None,
            },
            (from, now_secs()),
        );
        assert_first_death(&d, "maxlen", &src, "");
        dropped.push(lp::body(&d));
    }
    assert_eq!(dropped, ["1", "2"], "the oldest make room");
    let kept: Vec<String> = [lp::get(&channel, &src).await, lp::get(&channel, &src).await]
        .into_iter()
        .map(|m| lp::body(&m.unwrap().delivery))
        .collect();
    assert_eq!(kept, ["3", "4"]);
    lp::delete_exchange(&channel, &dlx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_publish_dlx_nacks_the_refused_message_and_dead_letters_it() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let (dlx, dlq) = dead_letter_target(&channel).await;
    let src = new_queue(
        &channel,
        "src",
        table(&[
            ("x-dead-letter-exchange", text(&dlx)),
            ("x-max-length", int(1)),
            ("x-overflow", text("reject-publish-dlx")),
        ]),
    )
    .await;
    let mut dead = consume_no_ack(&channel, &dlq).await;
    let from = now_secs();
    let first = publish_confirmed(&channel, "", &src, "fits", BasicProperties::default()).await;
    assert!(first.is_ack(), "{first:?}");
    let second = publish_confirmed(&channel, "", &src, "refused", BasicProperties::default()).await;
    assert!(second.is_nack(), "over the limit: nacked, got {second:?}");

    let d = lp::next_delivery(&mut dead).await;
    assert_eq!(lp::body(&d), "refused");
    let deaths = x_death(&d);
    assert_eq!(deaths.len(), 1);
    assert_death(
        &deaths[0],
        &Death {
            count: 1,
            reason: "maxlen",
            queue: &src,
            exchange: "",
            routing_keys: &[&src],
            original_expiration: None,
        },
        (from, now_secs()),
    );
    assert_eq!(lp::message_count(&channel, &src).await, 1);
    let kept = lp::get(&channel, &src).await.unwrap();
    assert_eq!(lp::body(&kept.delivery), "fits");
    lp::delete_exchange(&channel, &dlx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_death_is_prepended_and_the_first_death_headers_keep_the_first() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let (dlx2, dlq) = dead_letter_target(&channel).await;
    let dlx1 = lp::temp_exchange(&channel, ExchangeKind::Fanout).await;
    // q1 lets messages expire into q2; q2's consumer rejects them into the final queue.
    let q2 = new_queue(
        &channel,
        "q2",
        table(&[("x-dead-letter-exchange", text(&dlx2))]),
    )
    .await;
    lp::bind(&channel, &q2, &dlx1, "", FieldTable::default()).await;
    let q1 = new_queue(
        &channel,
        "q1",
        table(&[
            ("x-dead-letter-exchange", text(&dlx1)),
            ("x-message-ttl", int(20)),
        ]),
    )
    .await;
    let from = now_secs();
    lp::publish(&channel, "", &q1, b"twice dead").await;
    let mut work = lp::consume_acked(&channel, &q2).await;
    let in_q2 = lp::next_delivery(&mut work).await;
    assert_eq!(in_q2.exchange.as_str(), dlx1);
    nack(&channel, in_q2.delivery_tag).await;

    let mut dead = consume_no_ack(&channel, &dlq).await;
    let d = lp::next_delivery(&mut dead).await;
    let to = now_secs();
    let deaths = x_death(&d);
    assert_eq!(deaths.len(), 2, "{deaths:?}");
    assert_death(
        &deaths[0],
        &Death {
            count: 1,
            reason: "rejected",
            queue: &q2,
            exchange: &dlx1,
            routing_keys: &[&q1],
            original_expiration: None,
        },
        (from, to),
    );
    assert_death(
        &deaths[1],
        &Death {
            count: 1,
            reason: "expired",
            queue: &q1,
            exchange: "",
            routing_keys: &[&q1],
            original_expiration: None,
        },
        (from, to),
    );
    assert_first_death(&d, "expired", &q1, "");
    lp::delete_exchange(&channel, &dlx1).await;
    lp::delete_exchange(&channel, &dlx2).await;
}

/// A queue whose dead letters come straight back to it through the default exchange: each
/// rejection bumps the count of the one (queue, reason) entry, which moves to the front.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dying_again_in_the_same_queue_for_the_same_reason_increments_that_entrys_count() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let name = unique("boomerang");
    queue(
        &channel,
        &name,
        table(&[
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text(&name)),
        ]),
    )
    .await;
    let from = now_secs();
    lp::publish(&channel, "", &name, b"again").await;
    let mut work = lp::consume_acked(&channel, &name).await;
    let mut seen = Vec::new();
    for round in 1..=3i64 {
        let d = lp::next_delivery(&mut work).await;
        assert!(
            !d.redelivered,
            "a dead letter is a new message, not a redelivery"
        );
        let count = if round == 1 { None } else { Some(x_death(&d)) };
        seen.push(count);
        if round < 3 {
            nack(&channel, d.delivery_tag).await;
        } else {
            channel
                .basic_ack(d.delivery_tag, BasicAckOptions::default())
                .await
                .unwrap();
            assert_first_death(&d, "rejected", &name, "");
        }
    }
    let to = now_secs();
    assert!(seen[0].is_none());
    for (round, deaths) in seen.iter().skip(1).enumerate() {
        let deaths = deaths.as_ref().unwrap();
        assert_eq!(deaths.len(), 1, "one entry per (queue, reason): {deaths:?}");
        assert_death(
            &deaths[0],
            &Death {
                count: round as i64 + 1,
                reason: "rejected",
                queue: &name,
                exchange: "",
                routing_keys: &[&name],
                original_expiration: None,
            },
            (from, to),
        );
    }
}

/// RabbitMQ updates an existing (queue, reason) entry by incrementing its count only: the
/// exchange, routing keys and time stay those of the first such death.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremented_x_death_entry_keeps_the_exchange_and_routing_keys_of_its_first_death() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let dlx = lp::temp_exchange(&channel, ExchangeKind::Direct).await;
    let name = unique("again");
    queue(
        &channel,
        &name,
        table(&[
            ("x-dead-letter-exchange", text(&dlx)),
            ("x-dead-letter-routing-key", text("retry")),
        ]),
    )
    .await;
    lp::bind(&channel, &name, &dlx, "retry", FieldTable::default()).await;
    let from = now_secs();
    lp::publish(&channel, "", &name, b"m").await;
    let mut work = lp::consume_acked(&channel, &name).await;
    let first = lp::next_delivery(&mut work).await;
    nack(&channel, first.delivery_tag).await;
    let second = lp::next_delivery(&mut work).await;
    assert_eq!(
        (second.exchange.as_str(), second.routing_key.as_str()),
        (dlx.as_str(), "retry")
    );
    nack(&channel, second.delivery_tag).await;
    let third = lp::next_delivery(&mut work).await;
    channel
        .basic_ack(third.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    let deaths = x_death(&third);
    assert_eq!(deaths.len(), 1, "{deaths:?}");
    assert_death(
        &deaths[0],
        &Death {
            count: 2,
            reason: "rejected",
            queue: &name,
            exchange: "",
            routing_keys: &[&name],
            original_expiration: None,
        },
        (from, now_secs()),
    );
    lp::delete_exchange(&channel, &dlx).await;
}
