//! Each definition key: part of the `policies` tests (helpers in `mod.rs`).

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_and_max_length_bytes_from_a_policy_nack_what_does_not_fit() {
    let Some(broker) = broker_with(vec![policy(
        "bytes",
        "^bytes$",
        "queues",
        0,
        &[
            ("max-length-bytes", n(5)),
            ("overflow", s("reject-publish")),
        ],
    )])
    .await
    else {
        return;
    };
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    declare(&channel, "bytes", FieldTable::default()).await;
    let mut outcomes = Vec::new();
    for body in ["abc", "de", "f"] {
        outcomes.push(publish_confirmed(&channel, "", "bytes", body).await);
    }
    assert_eq!(outcomes, [true, true, false]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_routing_key_and_delivery_limit_from_a_policy() {
    let Some(broker) = broker_with(vec![policy(
        "retry",
        "^work$",
        "queues",
        0,
        &[
            ("dead-letter-exchange", s("")),
            ("dead-letter-routing-key", s("parking")),
            ("delivery-limit", n(1)),
        ],
    )])
    .await
    else {
        return;
    };
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    declare(&channel, "work", FieldTable::default()).await;
    declare(&channel, "parking", FieldTable::default()).await;
    assert!(publish_confirmed(&channel, "", "work", "poison").await);
    let work_channel = lp::open_channel(&conn).await;
    let mut work = lp::consume_acked(&work_channel, "work").await;
    for _ in 0..2 {
        let d = lp::next_delivery(&mut work).await;
        nack(&work_channel, &d, true).await;
    }
    let mut parked = lp::consume_acked(&channel, "parking").await;
    let d = lp::next_delivery(&mut parked).await;
    assert_eq!(
        (lp::body(&d), d.routing_key.as_str()),
        ("poison".into(), "parking")
    );
    assert_eq!(deaths(&d), death("delivery_limit", "work"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expires_from_a_policy_deletes_an_unused_queue() {
    let Some(broker) = broker_with(vec![policy(
        "temp",
        r"^temp\.",
        "queues",
        0,
        &[("expires", n(200))],
    )])
    .await
    else {
        return;
    };
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    declare(&channel, "temp.q", FieldTable::default()).await;
    declare(&channel, "kept.q", FieldTable::default()).await;
    within("temp.q to expire", async {
        while lp::routed(&channel, "", "temp.q", b"probe").await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(!lp::queue_exists(&conn, "temp.q").await);
    assert!(lp::queue_exists(&conn, "kept.q").await);
}

// ---------------------------------------------------------------------------------------------
// Changing policies at runtime

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_length_policy_trims_existing_queues_and_clearing_it_lifts_the_limit() {
    let Some(broker) = broker_with(Vec::new()).await else {
        return;
    };
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    declare(&channel, "live", FieldTable::default()).await;
    publish_n(&channel, "live", messages("m", 5)).await;
    set_policies(
        &broker,
        &[policy(
            "cap",
            "^live$",
            "queues",
            0,
            &[("max-length", n(2))],
        )],
    );
    assert_eq!(
        lp::message_count(&channel, "live").await,
        2,
        "drop-head at once"
    );
    let head = lp::get(&channel, "live").await.unwrap();
    assert_eq!(lp::body(&head.delivery), "m4");
    set_policies(&broker, &[]);
    publish_n(&channel, "live", messages("n", 3)).await;
    assert_eq!(lp::message_count(&channel, "live").await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_dead_letter_policy_redirects_later_dead_letters() {
    let Some(broker) = broker_with(Vec::new()).await else {
        return;
    };
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let mut first = dead_letter_target(&channel, "dlx.first").await;
    let mut second = dead_letter_target(&channel, "dlx.second").await;
    declare(&channel, "jobs", FieldTable::default()).await;
    let dlx = |x: &str| {
        vec![policy(
            "dead",
            "^jobs$",
            "queues",
            0,
            &[("dead-letter-exchange", s(x))],
        )]
    };
    let work_channel = lp::open_channel(&conn).await;
    let mut work = lp::consume_acked(&work_channel, "jobs").await;

    set_policies(&broker, &dlx("dlx.first"));
    assert!(publish_confirmed(&channel, "", "jobs", "one").await);
    let d = lp::next_delivery(&mut work).await;
    nack(&work_channel, &d, false).await;
    assert_eq!(lp::next_body(&mut first).await, "one");

    set_policies(&broker, &dlx("dlx.second"));
    assert!(publish_confirmed(&channel, "", "jobs", "two").await);
    let d = lp::next_delivery(&mut work).await;
    nack(&work_channel, &d, false).await;
    let d = lp::next_delivery(&mut second).await;
    assert_eq!(lp::body(&d), "two");
    assert_eq!(deaths(&d), death("rejected", "jobs"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_policy_set_at_runtime_expires_messages_published_afterwards() {
    let Some(broker) = broker_with(Vec::new()).await else {
        return;
    };
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let mut dead = dead_letter_target(&channel, "dlx.ttl").await;
    declare(&channel, "ttl.later", FieldTable::default()).await;
    set_policies(
        &broker,
        &[policy(
            "ttl",
            r"^ttl\.",
            "queues",
            0,
            &[
                ("message-ttl", n(20)),
                ("dead-letter-exchange", s("dlx.ttl")),
            ],
        )],
    );
    assert!(publish_confirmed(&channel, "", "ttl.later", "expires").await);
    let d = lp::next_delivery(&mut dead).await;
    assert_eq!(lp::body(&d), "expires");
    assert_eq!(deaths(&d), death("expired", "ttl.later"));
}
