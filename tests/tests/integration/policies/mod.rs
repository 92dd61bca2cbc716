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

mod definition_keys;
mod matching;
