//! Tests of the policies that reach streams (`streams.rs`): RabbitMQ's precedence (the policy
//! over the argument), at declaration and when policies change, `apply-to`, operator
//! policies, and the checks of the stream keys.

use super::*;
use crate::message::OpaqueProperties;
use crate::policy::{ApplyTo, Policy, PolicyKind};
use crate::queue::QueueOptions;
use crate::Broker;
use bytes::Bytes;
use pigeon_store::{Store, StoreOptions, SyncMode};
use std::time::Duration;

static CODEC: OpaqueProperties = OpaqueProperties;

/// A directory removed when dropped (the broker crate has no tempfile).
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open(name: &str) -> (TempDir, Arc<Broker>, Arc<VHost>) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "pigeon-stream-policy-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let options = StoreOptions {
        sync: SyncMode::Never,
        ..StoreOptions::default()
    };
    let store = Arc::new(Store::open(&dir, options).unwrap());
    let (broker, _) = Broker::open(store, &CODEC, Default::default()).unwrap();
    let vhost = broker.add_vhost("/", Default::default()).unwrap();
    (TempDir(dir), broker, vhost)
}

fn s(t: &str) -> Value {
    Value::Str(Bytes::copy_from_slice(t.as_bytes()))
}

fn stream(vhost: &VHost, name: &str, extra: Vec<(&str, Value)>) -> Arc<Queue> {
    let mut arguments = vec![("x-queue-type".to_string(), s("stream"))];
    arguments.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
    let options = QueueOptions {
        durable: true,
        arguments: Table(arguments),
        ..QueueOptions::default()
    };
    vhost.declare_queue(name, false, options, 1).unwrap().queue
}

fn policy(name: &str, pattern: &str, apply_to: ApplyTo, def: Vec<(&str, Value)>) -> Policy {
    Policy {
        name: name.into(),
        pattern: pattern.into(),
        apply_to,
        priority: 0,
        definition: Table(def.into_iter().map(|(k, v)| (k.into(), v)).collect()),
    }
}

fn retention(q: &Queue) -> StreamRetention {
    q.stream_log().unwrap().retention()
}

#[test]
fn a_policy_reaches_a_stream_at_declaration_over_its_arguments() {
    let (_dir, _broker, vhost) = open("declare");
    vhost
        .set_policy(policy(
            "retention",
            "^events",
            ApplyTo::Streams,
            vec![
                ("max-length-bytes", Value::Int(5_000_000)),
                ("max-age", s("2D")),
                ("stream-max-segment-size-bytes", Value::Int(1_000_000)),
            ],
        ))
        .unwrap();
    // RabbitMQ 3.10+: the policy's value wins over the argument (`policy_precedence`).
    let q = stream(
        &vhost,
        "events.a",
        vec![("x-max-length-bytes", Value::Int(1_000))],
    );
    let r = retention(&q);
    assert_eq!(r.max_length_bytes, Some(5_000_000));
    assert_eq!(r.max_age, Some(Duration::from_secs(2 * 86_400)));
    assert_eq!(r.max_segment_size_bytes, 1_000_000);
    // A stream the pattern does not match keeps its arguments'.
    let other = stream(&vhost, "other", vec![("x-max-age", s("1h"))]);
    assert_eq!(retention(&other).max_age, Some(Duration::from_secs(3600)));
    assert_eq!(retention(&other).max_length_bytes, None);
    // The management API shows the policy on the stream.
    assert_eq!(
        vhost.queue_policies("events.a").policy.as_deref(),
        Some("retention")
    );
}

#[test]
fn setting_and_clearing_a_policy_changes_a_running_streams_retention() {
    let (_dir, _broker, vhost) = open("change");
    let q = stream(&vhost, "s1", vec![("x-max-age", s("1h"))]);
    assert_eq!(retention(&q).max_age, Some(Duration::from_secs(3600)));
    vhost
        .set_policy(policy(
            "p",
            ".*",
            ApplyTo::Queues,
            vec![
                ("max-age", s("7D")),
                ("max-length-bytes", Value::Int(10_000)),
            ],
        ))
        .unwrap();
    assert_eq!(retention(&q).max_age, Some(Duration::from_secs(7 * 86_400)));
    assert_eq!(retention(&q).max_length_bytes, Some(10_000));
    // Without the policy, the arguments' retention comes back.
    assert!(vhost.clear_policy("p"));
    assert_eq!(retention(&q).max_age, Some(Duration::from_secs(3600)));
    assert_eq!(retention(&q).max_length_bytes, None);
}

#[test]
fn apply_to_picks_streams_or_classic_queues() {
    let (_dir, _broker, vhost) = open("applyto");
    let q = stream(&vhost, "s", vec![]);
    vhost
        .set_policy(policy(
            "classic",
            ".*",
            ApplyTo::ClassicQueues,
            vec![("max-length-bytes", Value::Int(1))],
        ))
        .unwrap();
    assert_eq!(retention(&q).max_length_bytes, None);
    assert_eq!(vhost.queue_policies("s").policy, None);
    let classic = vhost
        .declare_queue("c", false, QueueOptions::default(), 1)
        .unwrap()
        .queue;
    assert_eq!(classic.settings().max_length_bytes, Some(1));
    vhost
        .set_policy(policy(
            "streams",
            ".*",
            ApplyTo::Streams,
            vec![("max-length-bytes", Value::Int(2))],
        ))
        .unwrap();
    assert_eq!(retention(&q).max_length_bytes, Some(2));
    assert_eq!(classic.settings().max_length_bytes, Some(1));
    assert_eq!(vhost.queue_policies("s").policy.as_deref(), Some("streams"));
    assert_eq!(vhost.queue_policies("c").policy.as_deref(), Some("classic"));
}

#[test]
fn an_operator_policy_caps_the_policys_max_length_bytes() {
    let (_dir, _broker, vhost) = open("operator");
    let q = stream(&vhost, "s", vec![]);
    vhost
        .put_policy(
            PolicyKind::Operator,
            policy(
                "cap",
                ".*",
                ApplyTo::Queues,
                vec![("max-length-bytes", Value::Int(100))],
            ),
        )
        .unwrap();
    assert_eq!(retention(&q).max_length_bytes, Some(100));
    vhost
        .set_policy(policy(
            "p",
            ".*",
            ApplyTo::All,
            vec![("max-length-bytes", Value::Int(50))],
        ))
        .unwrap();
    assert_eq!(retention(&q).max_length_bytes, Some(50));
    vhost
        .set_policy(policy(
            "p",
            ".*",
            ApplyTo::All,
            vec![("max-length-bytes", Value::Int(500))],
        ))
        .unwrap();
    assert_eq!(retention(&q).max_length_bytes, Some(100));
}

#[test]
fn stream_keys_are_checked_as_rabbitmq_checks_them() {
    let (_dir, _broker, vhost) = open("checks");
    let refused = |key: &str, value: Value| {
        vhost
            .set_policy(policy("bad", ".*", ApplyTo::All, vec![(key, value)]))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        refused("max-age", s("7 days")),
        "<<\"7 days\">> is not a valid max age"
    );
    assert_eq!(
        refused("stream-max-segment-size-bytes", Value::Int(4_000_000_000)),
        "4000000000 is not a valid segment size"
    );
    assert_eq!(
        refused("stream-filter-size-bytes", Value::Int(300)),
        "300 is not a valid filter size. Valid range is 16-255"
    );
    vhost
        .set_policy(policy(
            "ok",
            ".*",
            ApplyTo::Streams,
            vec![("stream-filter-size-bytes", Value::Int(32))],
        ))
        .unwrap();
    // Applied at declaration (the bloom filter size only at a stream's open).
    let q = stream(&vhost, "f", vec![]);
    assert_eq!(q.stream_log().unwrap().config().bloom_size, 32);
}
