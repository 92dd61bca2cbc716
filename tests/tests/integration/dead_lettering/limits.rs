//! Delivery limit (RabbitMQ: quorum queues): part of the `dead_lettering` tests (helpers in
//! `mod.rs`).

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_returned_more_often_than_the_delivery_limit_dies_with_reason_delivery_limit() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let (dlx, dlq) = dead_letter_target(&channel).await;
    let src = unique("limited");
    within(
        "queue.declare-ok",
        channel.queue_declare(
            src.as_str().into(),
            QueueDeclareOptions::durable(),
            table(
                &[
                    lp::delivery_limit(&broker, 1),
                    vec![("x-dead-letter-exchange", text(&dlx))],
                ]
                .concat(),
            ),
        ),
    )
    .await
    .unwrap();
    let from = now_secs();
    lp::publish(&channel, "", &src, b"poison").await;
    let work_channel = lp::open_channel(&conn).await;
    let mut work = lp::consume_acked(&work_channel, &src).await;
    for _ in 0..2 {
        let d = lp::next_delivery(&mut work).await;
        work_channel
            .basic_nack(
                d.delivery_tag,
                BasicNackOptions {
                    multiple: false,
                    requeue: true,
                },
            )
            .await
            .unwrap();
    }
    let mut dead = consume_no_ack(&channel, &dlq).await;
    let d = lp::next_delivery(&mut dead).await;
    assert_eq!(lp::body(&d), "poison");
    let deaths = x_death(&d);
    assert_eq!(deaths.len(), 1);
    assert_death(
        &deaths[0],
        &Death {
            count: 1,
            reason: "delivery_limit",
            queue: &src,
            exchange: "",
            routing_keys: &[&src],
            original_expiration: None,
        },
        (from, now_secs()),
    );
    assert_first_death(&d, "delivery_limit", &src, "");
    lp::delete_queue(&channel, &src).await;
    lp::delete_exchange(&channel, &dlx).await;
}

// ---------------------------------------------------------------------------------------------
// Under concurrent consumers

/// Three consumers on their own connections work through a queue whose messages partly carry a
/// 1 ms TTL; each consumer rejects every third message. Every message ends exactly one way:
/// acked once, or delivered once and dead-lettered as rejected, or never delivered and
/// dead-lettered as expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_and_rejections_under_concurrent_consumers_account_for_every_message_once() {
    const N: usize = 150;
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let (dlx, dlq) = dead_letter_target(&channel).await;
    let work = unique("work");
    within(
        "queue.declare-ok",
        channel.queue_declare(
            work.as_str().into(),
            QueueDeclareOptions::default(),
            table(&[("x-dead-letter-exchange", text(&dlx))]),
        ),
    )
    .await
    .unwrap();

    #[derive(Debug)]
    enum Event {
        Delivered(String),
        Acked(String),
    }
    let (events, mut seen) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let mut workers = Vec::new();
    let mut connections = Vec::new();
    for _ in 0..3 {
        let c = lp::connect(&broker).await;
        let ch = lp::open_channel(&c).await;
        ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
        let mut consumer = lp::consume_acked(&ch, &work).await;
        let events = events.clone();
        workers.push(tokio::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                let body = lp::body(&d);
                let _ = events.send(Event::Delivered(body.clone()));
                tokio::time::sleep(Duration::from_millis(2)).await; // the work
                let i: usize = body[1..].parse().unwrap();
                if i % 3 == 1 {
                    nack(&ch, d.delivery_tag).await;
                } else {
                    ch.basic_ack(d.delivery_tag, BasicAckOptions::default())
                        .await
                        .unwrap();
                    let _ = events.send(Event::Acked(body));
                }
            }
        }));
        connections.push(c);
    }
    drop(events);

    let mut dead = consume_no_ack(&channel, &dlq).await;
    let mut short_lived = BTreeSet::new();
    for i in 0..N {
        let body = format!("m{i}");
        let properties = if i % 2 == 1 {
            short_lived.insert(body.clone());
            BasicProperties::default().with_expiration("1".into())
        } else {
            BasicProperties::default()
        };
        let confirmation = publish_confirmed(&channel, "", &work, &body, properties).await;
        assert!(confirmation.is_ack());
    }

    let mut delivered: BTreeMap<String, usize> = BTreeMap::new();
    let mut acked: BTreeMap<String, usize> = BTreeMap::new();
    let mut died: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let settled = |acked: &BTreeMap<String, usize>, died: &BTreeMap<String, Vec<String>>| {
        acked.values().sum::<usize>() + died.values().map(Vec::len).sum::<usize>()
    };
    while settled(&acked, &died) < N {
        tokio::select! {
            event = seen.recv() => match event.expect("a worker stopped") {
                Event::Delivered(b) => *delivered.entry(b).or_default() += 1,
                Event::Acked(b) => *acked.entry(b).or_default() += 1,
            },
            d = within("the next ack or dead letter", lp::next_delivery(&mut dead)) => {
                let deaths = x_death(&d);
                assert_eq!(deaths.len(), 1);
                let reason = long_str(deaths[0].inner().get("reason")).unwrap();
                died.entry(lp::body(&d)).or_default().push(reason);
            }
        }
    }
    // A delivery is reported before its nack, but may be read after the dead letter.
    while let Ok(event) = seen.try_recv() {
        match event {
            Event::Delivered(b) => *delivered.entry(b).or_default() += 1,
            Event::Acked(b) => *acked.entry(b).or_default() += 1,
        }
    }

    let mut expired = 0;
    let mut rejected = 0;
    for i in 0..N {
        let body = format!("m{i}");
        let times_delivered = delivered.get(&body).copied().unwrap_or(0);
        let times_acked = acked.get(&body).copied().unwrap_or(0);
        let deaths = died.get(&body).cloned().unwrap_or_default();
        match (times_delivered, times_acked, deaths.as_slice()) {
            (1, 1, []) => assert_ne!(i % 3, 1, "{body} should have been rejected"),
            (1, 0, [reason]) if reason == "rejected" => {
                assert_eq!(i % 3, 1, "{body} was not rejected by its consumer");
                rejected += 1;
            }
            (0, 0, [reason]) if reason == "expired" => {
                assert!(short_lived.contains(&body), "{body} had no TTL");
                expired += 1;
            }
            other => panic!("{body}: delivered, acked, died = {other:?}"),
        }
    }
    assert!(expired > 0, "the backlog let some 1 ms messages expire");
    assert!(rejected > 0);
    for w in workers {
        w.abort();
    }
    drop(connections);
    lp::delete_queue(&channel, &work).await;
    lp::delete_exchange(&channel, &dlx).await;
}
