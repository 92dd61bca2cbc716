//! Cycles: part of the `dead_lettering` tests (helpers in `mod.rs`).

use super::*;

/// Two queues that let messages expire into each other, both also dead-lettering into an
/// observer queue. Returns (q1, q2, observer, exchanges to delete).
async fn expiry_cycle(channel: &Channel, ttl: i32) -> (String, String, String, [String; 2]) {
    let x1 = lp::temp_exchange(channel, ExchangeKind::Fanout).await;
    let x2 = lp::temp_exchange(channel, ExchangeKind::Fanout).await;
    let observer = new_queue(channel, "observer", FieldTable::default()).await;
    let q1 = new_queue(
        channel,
        "q1",
        table(&[
            ("x-dead-letter-exchange", text(&x1)),
            ("x-message-ttl", int(ttl)),
        ]),
    )
    .await;
    let q2 = new_queue(
        channel,
        "q2",
        table(&[
            ("x-dead-letter-exchange", text(&x2)),
            ("x-message-ttl", int(ttl)),
        ]),
    )
    .await;
    lp::bind(channel, &q2, &x1, "", FieldTable::default()).await;
    lp::bind(channel, &observer, &x1, "", FieldTable::default()).await;
    lp::bind(channel, &q1, &x2, "", FieldTable::default()).await;
    lp::bind(channel, &observer, &x2, "", FieldTable::default()).await;
    (q1, q2, observer, [x1, x2])
}

fn death_queues(d: &Delivery) -> Vec<String> {
    x_death(d)
        .iter()
        .map(|t| long_str(t.inner().get("queue")).unwrap())
        .collect()
}

/// Waits on the observer until the marker arrives having died in both queues, and returns the
/// bodies and death histories seen until then. Had the cycle gone on, `looping` would have died
/// in q1 a second time one TTL after it re-entered q1, which is before the marker (published
/// after that moment) could die twice: a looping message shows up before the marker's end.
async fn observe_until_marker_died_twice(observer: &mut Consumer) -> Vec<(String, Vec<String>)> {
    let mut seen = Vec::new();
    loop {
        let d = lp::next_delivery(observer).await;
        let entry = (lp::body(&d), death_queues(&d));
        let done = entry.0 == "marker" && entry.1.len() == 2;
        seen.push(entry);
        if done {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_cycle_between_two_queues_is_broken_by_dropping_the_message() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let (q1, q2, observer, exchanges) = expiry_cycle(&channel, 300).await;
    let mut watch = consume_no_ack(&channel, &observer).await;
    lp::publish(&channel, "", &q1, b"looping").await;
    let d = lp::next_delivery(&mut watch).await;
    assert_eq!(
        (lp::body(&d), death_queues(&d)),
        ("looping".into(), vec![q1.clone()])
    );
    let d = lp::next_delivery(&mut watch).await;
    assert_eq!(
        (lp::body(&d), death_queues(&d)),
        ("looping".into(), vec![q2.clone(), q1.clone()])
    );
    // Back to q1 would close the cycle q1 -> q2 -> q1 without a rejection: RabbitMQ drops it.
    lp::publish(&channel, "", &q1, b"marker").await;
    let seen = observe_until_marker_died_twice(&mut watch).await;
    assert_eq!(
        seen,
        [
            ("marker".to_string(), vec![q1.clone()]),
            ("marker".to_string(), vec![q2.clone(), q1.clone()]),
        ],
        "the looping message must not die again"
    );
    assert_eq!(lp::message_count(&channel, &q1).await, 0);
    for x in exchanges {
        lp::delete_exchange(&channel, &x).await;
    }
}

/// RabbitMQ looks for a rejection only in the part of the history since the message last died
/// in the queue it is about to re-enter (`rabbit_dead_letter:is_cycle/2`): a rejection before
/// the cycle began does not make the cycle safe.
///
/// Pigeon only: RabbitMQ 3.10 reverses the older x-death entries whenever the array already
/// holds two or more (`group_by_queue_and_reason/1` folds into a list by prepending), contrary
/// to its documented most-recent-first order; here that puts the rejection in front of q1's
/// entry, so RabbitMQ 3.10 itself loops this message forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_cycle_is_broken_even_after_an_earlier_rejection() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        println!("skipped against an external broker: RabbitMQ 3.10 reorders x-death here");
        return;
    }
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let (q1, q2, observer, exchanges) = expiry_cycle(&channel, 300).await;
    let q0 = new_queue(
        &channel,
        "q0",
        table(&[
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text(&q1)),
        ]),
    )
    .await;
    let mut watch = consume_no_ack(&channel, &observer).await;
    lp::publish(&channel, "", &q0, b"looping").await;
    let mut work = lp::consume_acked(&channel, &q0).await;
    let d = lp::next_delivery(&mut work).await;
    nack(&channel, d.delivery_tag).await;
    let d = lp::next_delivery(&mut watch).await;
    assert_eq!(
        (lp::body(&d), death_queues(&d)),
        ("looping".into(), vec![q1.clone(), q0.clone()])
    );
    let d = lp::next_delivery(&mut watch).await;
    assert_eq!(
        (lp::body(&d), death_queues(&d)),
        ("looping".into(), vec![q2.clone(), q1.clone(), q0.clone()])
    );
    lp::publish(&channel, "", &q1, b"marker").await;
    let seen = observe_until_marker_died_twice(&mut watch).await;
    assert_eq!(
        seen,
        [
            ("marker".to_string(), vec![q1.clone()]),
            ("marker".to_string(), vec![q2.clone(), q1.clone()]),
        ],
        "the looping message must not die again"
    );
    for x in exchanges {
        lp::delete_exchange(&channel, &x).await;
    }
}
