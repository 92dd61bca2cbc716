//! Matching: part of the `policies` tests (helpers in `mod.rs`).

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_from_the_config_gives_matching_queues_a_ttl_and_dead_letter_exchange() {
    let Some(broker) = broker_with(vec![policy(
        "short-lived",
        r"^ttl\.",
        "queues",
        0,
        &[
            ("message-ttl", n(30)),
            ("dead-letter-exchange", s("policy.dlx")),
        ],
    )])
    .await
    else {
        return;
    };
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let mut dead = dead_letter_target(&channel, "policy.dlx").await;
    declare(&channel, "ttl.orders", FieldTable::default()).await;
    declare(&channel, "orders.ttl", FieldTable::default()).await;
    assert!(publish_confirmed(&channel, "", "orders.ttl", "kept").await);
    assert!(publish_confirmed(&channel, "", "ttl.orders", "expires").await);
    let d = lp::next_delivery(&mut dead).await;
    assert_eq!(lp::body(&d), "expires");
    assert_eq!(deaths(&d), death("expired", "ttl.orders"));
    // Older than the one that expired, yet still there: the pattern did not match its queue.
    let kept = lp::get(&channel, "orders.ttl").await.unwrap();
    assert_eq!(lp::body(&kept.delivery), "kept");
}

/// RabbitMQ resolves a classic queue's settings key by key (rabbit_amqqueue_process
/// `process_args_policy`): the lower of the argument and the policy value for the numeric
/// limits, the argument for the dead-letter keys and `overflow`, the policy for what the
/// arguments leave unset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_and_arguments_resolve_key_by_key() {
    let Some(broker) = broker_with(vec![
        policy(
            "low",
            r"^lim\.",
            "queues",
            0,
            &[
                ("max-length", n(2)),
                ("dead-letter-exchange", s("policy.dlx")),
            ],
        ),
        policy("high", "^loose$", "queues", 0, &[("max-length", n(100))]),
        policy(
            "refuse",
            "^refusing$",
            "queues",
            0,
            &[("max-length", n(1)), ("overflow", s("reject-publish"))],
        ),
    ])
    .await
    else {
        return;
    };
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let mut by_policy = dead_letter_target(&channel, "policy.dlx").await;
    let mut by_argument = dead_letter_target(&channel, "arg.dlx").await;
    let max_length = |n: i32| ("x-max-length", AMQPValue::LongInt(n));
    declare(&channel, "lim.big", args(&[max_length(100)])).await;
    declare(&channel, "loose", args(&[max_length(2)])).await;
    let dlx = (
        "x-dead-letter-exchange",
        AMQPValue::LongString("arg.dlx".into()),
    );
    declare(&channel, "lim.dlx", args(&[dlx])).await;
    declare(&channel, "refusing", args(&[max_length(3)])).await;
    for queue in ["lim.big", "loose", "lim.dlx"] {
        publish_n(&channel, queue, messages(queue, 3)).await;
        assert_eq!(lp::message_count(&channel, queue).await, 2, "{queue}");
    }
    // lim.big's head went to the policy's exchange (it has no argument of its own), lim.dlx's
    // to its argument's, not the policy's.
    let d = lp::next_delivery(&mut by_policy).await;
    assert_eq!(lp::body(&d), "lim.big1");
    let d = lp::next_delivery(&mut by_argument).await;
    assert_eq!(lp::body(&d), "lim.dlx1");
    assert_eq!(deaths(&d), death("maxlen", "lim.dlx"));
    // max-length 1 (lower than the argument's 3), overflow reject-publish from the policy.
    let mut outcomes = Vec::new();
    for body in messages("r", 2) {
        outcomes.push(publish_confirmed(&channel, "", "refusing", &body).await);
    }
    assert_eq!(outcomes, [true, false]);
    assert_eq!(lp::message_count(&channel, "refusing").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_highest_priority_matching_policy_applies() {
    let Some(broker) = broker_with(vec![
        policy(
            "broad",
            r"^prio\.",
            "queues",
            1,
            &[("max-length", n(5)), ("overflow", s("reject-publish"))],
        ),
        policy(
            "narrow",
            r"^prio\.high",
            "queues",
            2,
            &[("max-length", n(1))],
        ),
    ])
    .await
    else {
        return;
    };
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    declare(&channel, "prio.high", FieldTable::default()).await;
    declare(&channel, "prio.other", FieldTable::default()).await;
    // "narrow" wins for prio.high, and its definition is not merged with "broad"'s: drop-head.
    publish_n(&channel, "prio.high", messages("h", 3)).await;
    assert_eq!(lp::message_count(&channel, "prio.high").await, 1);
    let kept = lp::get(&channel, "prio.high").await.unwrap();
    assert_eq!(lp::body(&kept.delivery), "h3");
    // Only "broad" matches prio.other.
    publish_n(&channel, "prio.other", messages("o", 5)).await;
    assert!(!publish_confirmed(&channel, "", "prio.other", "o6").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_to_limits_a_policy_to_queues_or_to_exchanges() {
    let Some(broker) = broker_with(vec![
        policy("x-only", "^both$", "exchanges", 0, &[("max-length", n(1))]),
        policy(
            "q-only",
            "^both$",
            "queues",
            0,
            &[("alternate-exchange", s("ae"))],
        ),
    ])
    .await
    else {
        return;
    };
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let mut caught = dead_letter_target(&channel, "ae").await;
    declare(&channel, "both", FieldTable::default()).await;
    publish_n(&channel, "both", messages("m", 3)).await;
    assert_eq!(
        lp::message_count(&channel, "both").await,
        3,
        "an exchanges-only policy sets no queue limit"
    );
    lp::declare_exchange(
        &channel,
        "both",
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    assert!(
        !lp::routed(&channel, "both", "nowhere", b"lost").await,
        "a queues-only policy sets no alternate exchange"
    );
    set_policies(
        &broker,
        &[policy(
            "all",
            "^both$",
            "all",
            0,
            &[("alternate-exchange", s("ae"))],
        )],
    );
    assert!(lp::routed(&channel, "both", "nowhere", b"caught").await);
    assert_eq!(lp::next_body(&mut caught).await, "caught");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternate_exchange_argument_wins_over_the_policy() {
    let Some(broker) = broker_with(vec![policy(
        "ae",
        r"^src\.",
        "exchanges",
        0,
        &[("alternate-exchange", s("ae.policy"))],
    )])
    .await
    else {
        return;
    };
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let mut by_policy = dead_letter_target(&channel, "ae.policy").await;
    let mut by_argument = dead_letter_target(&channel, "ae.argument").await;
    for (name, arguments) in [
        ("src.plain", FieldTable::default()),
        (
            "src.own",
            args(&[(
                "alternate-exchange",
                AMQPValue::LongString("ae.argument".into()),
            )]),
        ),
    ] {
        lp::declare_exchange(
            &channel,
            name,
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            arguments,
        )
        .await
        .unwrap();
    }
    assert!(lp::routed(&channel, "src.plain", "k", b"to policy ae").await);
    assert_eq!(lp::next_body(&mut by_policy).await, "to policy ae");
    assert!(lp::routed(&channel, "src.own", "k", b"to own ae").await);
    assert_eq!(lp::next_body(&mut by_argument).await, "to own ae");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_are_per_vhost_and_invalid_ones_are_refused() {
    let Some(broker) = broker_with(Vec::new()).await else {
        return;
    };
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    declare(&channel, "vh.q", FieldTable::default()).await;
    let server = broker.server().unwrap();
    let mut elsewhere = policy("elsewhere", ".*", "all", 9, &[("max-length", n(1))]);
    elsewhere.vhost = "other".into();
    let err = server
        .set_policies(&[
            elsewhere,
            policy("here", r"^vh\.", "queues", 0, &[("max-length", n(2))]),
        ])
        .unwrap_err();
    assert!(err.contains("other"), "{err}");
    publish_n(&channel, "vh.q", messages("m", 3)).await;
    assert_eq!(
        lp::message_count(&channel, "vh.q").await,
        2,
        "the valid policy of '/' applies; the other vhost's does not"
    );
    for bad in [
        policy("bad-key", ".*", "all", 0, &[("max-lenght", n(1))]),
        policy("bad-regex", "(", "all", 0, &[("max-length", n(1))]),
        policy("bad-apply", ".*", "topics", 0, &[("max-length", n(1))]),
        policy("bad-value", ".*", "queues", 0, &[("max-length", s("many"))]),
    ] {
        let name = bad.name.clone();
        assert!(server.set_policies(&[bad]).is_err(), "{name} accepted");
    }
}
