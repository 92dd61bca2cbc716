//! The quorum queue's rules, one scenario each, as a RabbitMQ user sees them.

#![allow(clippy::unwrap_used)]

use super::*;

const C1: ConsumerId = ConsumerId { node: 1, key: 1 };
const C2: ConsumerId = ConsumerId { node: 2, key: 2 };

fn msg(body: &str) -> Message {
    Message {
        header: Vec::new(),
        body: body.as_bytes().to_vec(),
    }
}

fn at(m: &mut QueueMachine, at: u64, op: QueueOp) -> QueueResponse {
    m.apply(QueueCommand { at, op })
}

fn run(m: &mut QueueMachine, op: QueueOp) -> QueueResponse {
    at(m, 0, op)
}

fn publish(m: &mut QueueMachine, body: &str) -> QueueResponse {
    run(
        m,
        QueueOp::Enqueue {
            publisher: None,
            message: msg(body),
            ttl: None,
        },
    )
}

fn deliveries(r: &QueueResponse, to: ConsumerId) -> Vec<Delivery> {
    r.effects
        .iter()
        .filter_map(|e| match e {
            Effect::Deliver {
                consumer,
                deliveries,
            } if *consumer == to => Some(deliveries.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn dead(r: &QueueResponse) -> Vec<(DeadLetterReason, String)> {
    r.effects
        .iter()
        .filter_map(|e| match e {
            Effect::DeadLetter { reason, messages } => Some(
                messages
                    .iter()
                    .map(|m| (*reason, String::from_utf8(m.message.body.clone()).unwrap()))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn the_default_delivery_limit_allows_21_deliveries_then_dead_letters() {
    let mut m = QueueMachine::new(QueueConfig::default());
    run(
        &mut m,
        QueueOp::Checkout {
            consumer: C1,
            prefetch: 1,
        },
    );
    let mut r = publish(&mut m, "m");
    for n in 0..=20u32 {
        let d = deliveries(&r, C1);
        assert_eq!(d.len(), 1, "delivery {n}");
        assert_eq!(d[0].delivery_count, n);
        assert_eq!(d[0].redelivered, n > 0);
        r = run(
            &mut m,
            QueueOp::Return {
                consumer: C1,
                ids: vec![d[0].id],
            },
        );
    }
    assert_eq!(
        dead(&r),
        vec![(DeadLetterReason::DeliveryLimit, "m".into())]
    );
    assert_eq!(
        m.counts(),
        QueueCounts {
            consumers: 1,
            ..QueueCounts::default()
        }
    );
}

#[test]
fn returned_messages_go_before_those_never_delivered() {
    let mut m = QueueMachine::new(QueueConfig::default());
    for b in ["a", "b", "c"] {
        publish(&mut m, b);
    }
    let r = run(
        &mut m,
        QueueOp::Checkout {
            consumer: C1,
            prefetch: 1,
        },
    );
    let a = deliveries(&r, C1);
    run(&mut m, QueueOp::Cancel(C1));
    let r = run(
        &mut m,
        QueueOp::Return {
            consumer: C1,
            ids: vec![a[0].id],
        },
    );
    assert!(r.effects.is_empty());
    let r = run(
        &mut m,
        QueueOp::Checkout {
            consumer: C2,
            prefetch: 0,
        },
    );
    let bodies: Vec<_> = deliveries(&r, C2)
        .iter()
        .map(|d| d.message.body.clone())
        .collect();
    assert_eq!(bodies, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
}

#[test]
fn drop_head_dead_letters_the_oldest_and_reject_publish_refuses() {
    let mut m = QueueMachine::new(QueueConfig {
        max_length: Some(2),
        ..QueueConfig::default()
    });
    publish(&mut m, "1");
    publish(&mut m, "2");
    let r = publish(&mut m, "3");
    assert_eq!(dead(&r), vec![(DeadLetterReason::MaxLen, "1".into())]);
    let mut m = QueueMachine::new(QueueConfig {
        max_length_bytes: Some(4),
        overflow: Overflow::RejectPublish,
        ..QueueConfig::default()
    });
    let p = PublisherId(9);
    let enqueue = |m: &mut QueueMachine, seq, body| {
        run(
            m,
            QueueOp::Enqueue {
                publisher: Some((p, seq)),
                message: msg(body),
                ttl: None,
            },
        )
    };
    assert_eq!(enqueue(&mut m, 1, "abc").reply, Reply::Enqueued(1));
    let r = enqueue(&mut m, 2, "de");
    assert_eq!(r.reply, Reply::RejectedFull);
    assert_eq!(
        r.effects,
        vec![Effect::PublisherRejected {
            publisher: p,
            seq: 2
        }]
    );
    assert_eq!(m.counts().ready, 1);
}

#[test]
fn a_resent_publish_is_confirmed_again_not_enqueued_twice() {
    let mut m = QueueMachine::new(QueueConfig::default());
    let p = PublisherId(3);
    let enqueue = |m: &mut QueueMachine, seq| {
        run(
            m,
            QueueOp::Enqueue {
                publisher: Some((p, seq)),
                message: msg("x"),
                ttl: None,
            },
        )
    };
    assert_eq!(enqueue(&mut m, 5).reply, Reply::Enqueued(1));
    let r = enqueue(&mut m, 5);
    assert_eq!(r.reply, Reply::Duplicate);
    assert_eq!(
        r.effects,
        vec![Effect::PublisherSettled {
            publisher: p,
            seq: 5
        }]
    );
    assert_eq!(m.counts().ready, 1);
}

#[test]
fn messages_expire_at_the_head_with_the_time_in_the_command() {
    let mut m = QueueMachine::new(QueueConfig {
        message_ttl: Some(100),
        ..QueueConfig::default()
    });
    let r = at(
        &mut m,
        1_000,
        QueueOp::Enqueue {
            publisher: None,
            message: msg("a"),
            ttl: Some(50),
        },
    );
    assert!(r.effects.contains(&Effect::Timer { at: 1_050 }));
    at(
        &mut m,
        1_010,
        QueueOp::Enqueue {
            publisher: None,
            message: msg("b"),
            ttl: None,
        },
    );
    assert!(dead(&at(&mut m, 1_049, QueueOp::Tick)).is_empty());
    let r = at(&mut m, 1_050, QueueOp::Tick);
    assert_eq!(dead(&r), vec![(DeadLetterReason::Expired, "a".into())]);
    assert!(r.effects.contains(&Effect::Timer { at: 1_110 }));
    // A clock that goes back (a new leader's) does not bring time back.
    assert!(dead(&at(&mut m, 5, QueueOp::Tick)).is_empty());
    let r = at(&mut m, 1_110, QueueOp::Tick);
    assert_eq!(dead(&r), vec![(DeadLetterReason::Expired, "b".into())]);
}

#[test]
fn a_node_going_down_returns_what_its_consumers_held() {
    let mut m = QueueMachine::new(QueueConfig::default());
    run(
        &mut m,
        QueueOp::Checkout {
            consumer: C1,
            prefetch: 2,
        },
    );
    publish(&mut m, "a");
    publish(&mut m, "b");
    run(
        &mut m,
        QueueOp::Checkout {
            consumer: C2,
            prefetch: 0,
        },
    );
    let r = run(&mut m, QueueOp::NodeDown(1));
    let d = deliveries(&r, C2);
    assert_eq!(d.len(), 2);
    assert!(d.iter().all(|d| d.redelivered && d.delivery_count == 1));
    assert_eq!(m.consumers(), vec![(C2, true)]);
}

#[test]
fn single_active_consumer_hands_over_in_arrival_order() {
    let mut m = QueueMachine::new(QueueConfig {
        single_active_consumer: true,
        ..QueueConfig::default()
    });
    run(
        &mut m,
        QueueOp::Checkout {
            consumer: C1,
            prefetch: 0,
        },
    );
    run(
        &mut m,
        QueueOp::Checkout {
            consumer: C2,
            prefetch: 0,
        },
    );
    let r = publish(&mut m, "a");
    assert_eq!(deliveries(&r, C1).len(), 1);
    assert_eq!(m.consumers(), vec![(C1, true), (C2, false)]);
    let r = run(&mut m, QueueOp::ConsumerDown(C1));
    let d = deliveries(&r, C2);
    assert_eq!((d.len(), d[0].redelivered), (1, true));
}

#[test]
fn discard_dead_letters_and_purge_keeps_what_is_checked_out() {
    let mut m = QueueMachine::new(QueueConfig::default());
    run(
        &mut m,
        QueueOp::Checkout {
            consumer: C1,
            prefetch: 1,
        },
    );
    let r = publish(&mut m, "a");
    publish(&mut m, "b");
    publish(&mut m, "c");
    assert_eq!(run(&mut m, QueueOp::Purge).reply, Reply::Purged(2));
    let id = deliveries(&r, C1)[0].id;
    let r = run(
        &mut m,
        QueueOp::Discard {
            consumer: C1,
            ids: vec![id],
        },
    );
    assert_eq!(dead(&r), vec![(DeadLetterReason::Rejected, "a".into())]);
    assert_eq!(
        run(
            &mut m,
            QueueOp::Settle {
                consumer: C2,
                ids: vec![0]
            }
        )
        .reply,
        Reply::UnknownConsumer
    );
}

#[test]
fn group_ids_come_from_the_queue_identity() {
    assert_eq!(queue_group("/", "q"), queue_group("/", "q"));
    assert_ne!(queue_group("/", "q"), queue_group("/", "r"));
    assert_ne!(queue_group("a", "bc"), queue_group("ab", "c"));
    assert_ne!(queue_group("/", "q"), crate::GroupId::METADATA);
}

/// A batch (one Raft entry carrying a node's waiting operations) ends in the same queue as
/// its operations applied one by one, and answers each in order.
#[test]
fn a_batch_is_its_operations_one_after_the_other() {
    let config = QueueConfig {
        max_length: Some(2),
        overflow: Overflow::RejectPublish,
        ..QueueConfig::default()
    };
    let ops = vec![
        QueueOp::Checkout {
            consumer: C1,
            prefetch: 1,
        },
        QueueOp::Enqueue {
            publisher: None,
            message: msg("a"),
            ttl: None,
        },
        QueueOp::Enqueue {
            publisher: None,
            message: msg("b"),
            ttl: None,
        },
        QueueOp::Enqueue {
            publisher: None,
            message: msg("c"),
            ttl: None,
        },
        // Full (one delivered, two ready): refused.
        QueueOp::Enqueue {
            publisher: None,
            message: msg("d"),
            ttl: None,
        },
        // The first delivery's id (ids count from 0).
        QueueOp::Settle {
            consumer: C1,
            ids: vec![0],
        },
    ];
    let mut one_by_one = QueueMachine::new(config.clone());
    let replies: Vec<Reply> = ops
        .iter()
        .map(|op| run(&mut one_by_one, op.clone()).reply)
        .collect();
    let mut batched = QueueMachine::new(config);
    let r = run(&mut batched, QueueOp::Batch(ops));
    assert_eq!(r.reply, Reply::Batch(replies.clone()));
    assert_eq!(replies[4], Reply::RejectedFull);
    assert_eq!(batched, one_by_one);
    let got: Vec<String> = deliveries(&r, C1)
        .into_iter()
        .map(|d| String::from_utf8(d.message.body).unwrap())
        .collect();
    assert_eq!(got, ["a", "b"]);
}
