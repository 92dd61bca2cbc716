//! Policies, as `rabbitmqctl set_policy` sets them: named, per vhost, a pattern matched against
//! queue and exchange names, what they apply to, a priority (one policy applies: the matching
//! one with the highest priority) and a definition (`message-ttl`, `expires`, `max-length`,
//! `max-length-bytes`, `overflow`, `dead-letter-exchange`, `dead-letter-routing-key`,
//! `delivery-limit`, `alternate-exchange`). Where declare arguments set the same key, the lower
//! value wins for the numeric limits and the argument for the others, as in RabbitMQ; and
//! changing the policies applies to existing queues and exchanges at once.
//!
//! Pigeon takes policies from `ServerConfig::policies` at start and from
//! `ServerHandle::set_policies` at runtime, so these tests need their own server: they pass
//! without checking anything against an external broker.

use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicNackOptions, BasicPublishOptions};
use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Consumer, ExchangeKind};
use pigeon_server::{PolicyConfig, PolicyValue, ServerConfig};
use pigeon_tests::lapin_support as lp;
use pigeon_tests::{within, TestBroker};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Helpers

fn policy(
    name: &str,
    pattern: &str,
    apply_to: &str,
    priority: i32,
    definition: &[(&str, PolicyValue)],
) -> PolicyConfig {
    PolicyConfig {
        vhost: "/".into(),
        name: name.into(),
        pattern: pattern.into(),
        apply_to: apply_to.into(),
        priority,
        definition: definition
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}

fn n(i: i64) -> PolicyValue {
    PolicyValue::Int(i)
}

fn s(t: &str) -> PolicyValue {
    PolicyValue::Text(t.into())
}

/// Pigeon with `policies` in its configuration, or `None` against an external broker.
async fn broker_with(policies: Vec<PolicyConfig>) -> Option<TestBroker> {
    let mut config = ServerConfig::for_tests();
    config.policies = policies;
    TestBroker::start_with(config).await
}

/// Replaces the running server's policies.
fn set_policies(broker: &TestBroker, policies: &[PolicyConfig]) {
    broker
        .server()
        .expect("an in-process Pigeon")
        .set_policies(policies)
        .unwrap();
}

async fn declare(channel: &Channel, name: &str, args: FieldTable) {
    within(
        "queue.declare-ok",
        channel.queue_declare(name.into(), QueueDeclareOptions::default(), args),
    )
    .await
    .unwrap();
}

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

async fn publish_confirmed(channel: &Channel, exchange: &str, key: &str, body: &str) -> bool {
    let confirm = channel
        .basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default(),
        )
        .await
        .unwrap();
    match within("the publisher confirm", confirm).await.unwrap() {
        Confirmation::Ack(_) => true,
        Confirmation::Nack(_) => false,
        other => panic!("not a confirm channel: {other:?}"),
    }
}

async fn publish_n(channel: &Channel, queue: &str, bodies: impl IntoIterator<Item = String>) {
    for body in bodies {
        assert!(publish_confirmed(channel, "", queue, &body).await);
    }
}

/// A fanout exchange `name` with one queue (`name` + ".q") bound to it; returns a no-ack
/// consumer of that queue.
async fn dead_letter_target(channel: &Channel, name: &str) -> Consumer {
    lp::declare_exchange(
        channel,
        name,
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let queue = format!("{name}.q");
    declare(channel, &queue, FieldTable::default()).await;
    lp::bind(channel, &queue, name, "", FieldTable::default()).await;
    lp::consume(
        channel,
        &queue,
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
    )
    .await
}

/// The (reason, queue) of each `x-death` entry.
fn deaths(d: &Delivery) -> Vec<(String, String)> {
    let headers = d.properties.headers().clone().unwrap_or_default();
    let Some(AMQPValue::FieldArray(entries)) = headers.inner().get("x-death") else {
        panic!("no x-death in {headers:?}");
    };
    let field = |t: &FieldTable, k: &str| match t.inner().get(k) {
        Some(AMQPValue::LongString(v)) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
        other => panic!("{k}: {other:?}"),
    };
    entries
        .as_slice()
        .iter()
        .map(|e| match e {
            AMQPValue::FieldTable(t) => (field(t, "reason"), field(t, "queue")),
            other => panic!("{other:?}"),
        })
        .collect()
}

fn death(reason: &str, queue: &str) -> Vec<(String, String)> {
    vec![(reason.to_string(), queue.to_string())]
}

async fn nack(channel: &Channel, d: &Delivery, requeue: bool) {
    channel
        .basic_nack(
            d.delivery_tag,
            BasicNackOptions {
                multiple: false,
                requeue,
            },
        )
        .await
        .unwrap();
}

fn messages(prefix: &str, count: usize) -> impl Iterator<Item = String> + '_ {
    (1..=count).map(move |i| format!("{prefix}{i}"))
}

// ---------------------------------------------------------------------------------------------
// Matching

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

// ---------------------------------------------------------------------------------------------
// Each definition key

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
